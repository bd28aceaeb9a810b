//! Counters the loop keeps for `/stats` (spelled in [`crate::answer::counters::stats`]), for tests (through [`crate::ServerHandle`]) and for
//! the benchmark, which waits on them instead of sleeping and hoping.
//!
//! They are atomics only because a test or benchmark thread reads them while the loop runs;
//! the loop is their single writer, so every access is `Relaxed` and an update is a plain
//! load and store ([`add`]), which costs what a plain add costs on x86.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Live counters of one server.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections currently in the slab (accepted and not yet freed).
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Polls parked right now, waiting for a message or their timeout.
    pub pending_polls: AtomicU64,
    /// Complete requests parsed since start.
    pub requests: AtomicU64,
    /// Messages posted since start.
    pub messages: AtomicU64,
    /// Poll answers carrying a message, since start.
    pub deliveries: AtomicU64,
    /// Polls answered with the timeout, since start.
    pub timeouts: AtomicU64,
    /// Response bytes handed to the kernel since start.
    pub bytes_out: AtomicU64,
    /// Event streams open (SSE); 0 until streams exist.
    pub streams: AtomicU64,
    /// WebSockets open in a room (`GET /rooms/{room}/ws`).
    pub sockets: AtomicU64,
    /// Deliveries to long polls (classic and JSON), since start: part of `deliveries`.
    pub deliveries_poll: AtomicU64,
    /// Deliveries to event streams, since start: part of `deliveries`.
    pub deliveries_sse: AtomicU64,
    /// Deliveries to WebSockets, since start: part of `deliveries`.
    pub deliveries_ws: AtomicU64,
    /// Chat rooms in memory.
    pub rooms: AtomicU64,
    /// Connections dropped because they did not take a response within the write timeout.
    pub dropped_slow: AtomicU64,
    /// Keep-alive connections closed after the idle timeout.
    pub dropped_idle: AtomicU64,
    /// Connections answered 408 for not finishing a request in time (slowloris).
    pub dropped_request_timeout: AtomicU64,
    /// Rooms that gave their place to a new one at the `--max-rooms` cap.
    pub rooms_given_way: AtomicU64,
    /// Without Redis: rooms that gave way holding messages, which are gone with them.
    pub dropped_room_history: AtomicU64,
    /// Connections refused with 503 because `max_conns` were open.
    pub refused_over_cap: AtomicU64,
    /// Connections refused because the process ran out of descriptors (EMFILE/ENFILE).
    pub refused_emfile: AtomicU64,
    /// The soft open-files limit the process runs under (set once at start).
    pub open_files_limit: AtomicU64,
    /// The connection cap in force (set once at start).
    pub max_conns: AtomicU64,
    /// Posts refused with 429 by the per-client rate (`--post-rate`, `--post-burst`).
    pub posts_refused: AtomicU64,
    /// Typing events refused with 429 (`--typing-interval`).
    pub typing_refused: AtomicU64,
    /// Connections refused with 503 at accept for `--max-conns-per-client`.
    pub refused_per_client: AtomicU64,
    /// Buckets the rate limiter holds right now (one per recently active client and limit).
    pub limiter_entries: AtomicU64,
    /// Client addresses holding a connection or a presence name right now.
    pub client_addresses: AtomicU64,
    /// Requests refused with 401: no token, or a malformed, forged or expired one.
    pub unauthorized: AtomicU64,
    /// Requests refused with 403: a good token that does not grant the room.
    pub forbidden: AtomicU64,
    /// Event streams told `expired` and closed when their token ran out.
    pub streams_expired: AtomicU64,
    /// With `--redis`: 1 while both connections to every shard's Redis are up.
    pub redis_connected: AtomicU64,
    /// With `--redis`: shards whose connections are both up (of `--redis` given).
    pub redis_shards_up: AtomicU64,
    /// With `--redis`: times the connection to Redis was made again after it was lost.
    pub redis_reconnects: AtomicU64,
    /// With `--redis`: commands sent to Redis and not yet answered.
    pub redis_in_flight: AtomicU64,
    /// With `--redis`: times a room's copy read what it had missed from Redis (after an
    /// outage, or an announcement that came out of order).
    pub redis_catch_ups: AtomicU64,
    /// With `--redis`: times the connection came up at another master than the last one
    /// (with `redis+sentinel://`, a failover).
    pub redis_failovers: AtomicU64,
    /// With `--redis`: each shard, in the order given: where it is, whether it is up, and
    /// the address in use (with Sentinel, the master it named), set each time a connection
    /// comes up or goes down. A lock, not atomics, because it is text; the loop takes it
    /// once per connection, a reader once per `/stats` or scrape.
    pub redis_shards: Mutex<Vec<RedisShard>>,
}

/// One `--redis` shard as `/stats` and `/metrics` show it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisShard {
    /// The URL as given, any password masked.
    pub url: String,
    /// Both its connections are up.
    pub connected: bool,
    /// The address in use: the URL's, or with Sentinel the master it named (empty until
    /// first connected).
    pub master: String,
}

/// Sets a gauge.
pub fn set(counter: &AtomicU64, n: u64) {
    counter.store(n, Relaxed);
}

/// Reads one counter.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Relaxed)
}

/// Adds to one counter. A load and a store rather than `fetch_add`: the loop is the only
/// writer, so no add can be lost, and on x86 this is a plain `add` to memory where
/// `fetch_add` would be a locked one (tens of cycles, on every request and delivery).
pub fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Subtracts from one counter (the loop is the only writer; see [`add`]).
pub fn sub(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_sub(n), Relaxed);
}
