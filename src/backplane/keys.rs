//! What lives in Redis, and under which names. Every key starts with `comet:`; room names
//! are `[A-Za-z0-9_-]{1,64}` (checked before they get here), so they can go into a key
//! as they are.
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `comet:epoch` | string | the epoch of every position: made once, at random; a new one means Redis lost its data |
//! | `comet:r:{room}:seq` | string | the room's last sequence number (`INCR`) |
//! | `comet:r:{room}:log` | stream | the room's history: entry id `{seq}-0`, fields `f` (from), `t` (text), `ts` (time, Unix ms), `w` (its weight for the byte cap) |
//! | `comet:r:{room}:bytes` | string | what the history's messages weigh, for the byte cap |
//! | `comet:r:{room}:cid:{n}:{from}{client_id}` | string | a `client_id` its sender (`from`, `n` bytes long) already posted: its seq, for an hour after its last post or retry |
//! | `comet:r:{room}:names` | sorted set | names present on some node: score = when each expires (Redis's clock, ms) |
//!
//! Posts and events are announced on the channel `comet:{db}:r:{room}` (channels are not
//! per database in Redis, so the database is in the name).

/// The key of the one epoch.
pub const EPOCH: &str = "comet:epoch";

/// How long a `client_id` is remembered, in seconds: a client retrying a post (through a
/// Redis outage, say) is told "duplicate" for this long.
pub const CLIENT_ID_TTL_SECS: u64 = 3600;

/// One room's keys.
pub fn room(room: &str, what: &str) -> String {
    format!("comet:r:{room}:{what}")
}

/// The key remembering one `client_id` of one sender (`room::idempotency_key`).
pub fn client_id(room: &str, idempotency_key: &str) -> String {
    format!("comet:r:{room}:cid:{idempotency_key}")
}

/// The channel a room's posts and events are announced on.
pub fn channel(db: u32, room: &str) -> String {
    format!("{}{room}", channel_prefix(db))
}

/// What every room's channel starts with; the subscription is this followed by `*`.
pub fn channel_prefix(db: u32) -> String {
    format!("comet:{db}:r:")
}
