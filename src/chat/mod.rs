//! The chat: every decision the server makes about rooms, messages and the clients waiting
//! for them, with no socket, no `mio`, no clock read and no Redis connection in it.
//!
//! Inputs come in as method calls from the shell (`src/server.rs`), each with the moment it
//! happened ([`Now`]): a request parsed on connection k ([`Chat::request`]), a deadline of
//! k due ([`Chat::poll_timed_out`], [`Chat::stream_due`], [`Chat::redis_wait_over`]), k
//! gone from a list ([`Chat::left`]), a sweep's tick, a Redis reply or announcement
//! ([`Chat::redis`]). Effects go out on a queue ([`Chat::effects`]): these bytes to k,
//! these shared bytes to every poll in a list, k waits here, this frame to these streams,
//! this command to Redis, this sweep in a second. The shell carries them out in one place
//! per input, in order; so every rule here is a plain unit test (`tests.rs`), and every
//! transport or store is an adapter outside.
//!
//! Connections are named as the shell's slab names them, `(key, generation)`
//! ([`Waiter`]): the chat holds them in its waiting lists and in its table of requests
//! waiting for Redis, and nowhere else. A connection's state (parked, streaming, awaiting)
//! is the shell's ([`crate::conn`]); the chat is told when one leaves a list.
//!
//! The files, in the order a request meets them: `state.rs` (the chat's state and its
//! inputs), `requests.rs` (what each request does: limits, names, rooms, answers),
//! `fanout.rs` (storing a message and everything that reaches waiting clients, presence),
//! `shared.rs` (with `--redis`: the requests that wait for Redis), `copies.rs` (keeping
//! each room's copy true to Redis's) and `pending.rs`
//! (what is on its way to Redis, and who waits for it), `store.rs` (the one place that
//! asks whether rooms live here or in Redis), `rooms.rs` (rooms by name, up to a cap),
//! `effect.rs` (what the shell is asked to do), `asked.rs` (who asked). `requests.rs`,
//! `fanout.rs`, `shared.rs`, `copies.rs` and `store.rs` each add methods to `Chat` and so import
//! `state.rs`, which imports none of them; no file imports `mod.rs`: the module has no
//! import circle.

mod asked;
mod copies;
mod effect;
mod fanout;
mod pending;
mod requests;
mod rooms;
mod shared;
mod socket;
mod state;
mod store;
#[cfg(test)]
mod tests;

pub use effect::{Effect, Now, Sweep, RESUME_WAIT};
pub use fanout::NAMES_SWEPT_PER_PASS;
pub use pending::{Command, Then, REPLY_WAIT};
pub use rooms::LOBBY;
pub use state::Chat;
