//! The Redis backplane (`--redis`): how many processes on one machine or many serve the
//! same rooms. Rooms, their history, positions, idempotency keys and presence live in
//! Redis; every process keeps what it serves in memory as a cache of it, and hears every
//! post and event through one Redis subscription. See docs/SCALING.md.

pub mod url;
