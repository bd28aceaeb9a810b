//! What the chat asks of the world: the effects of its decisions, queued in order for the
//! shell (`src/server.rs`) to carry out in one place, and the moment an input happened.
//! The chat itself touches no socket, wheel or clock: it says "these bytes to k", "k waits
//! here", "this command to Redis", and the shell does it.

use super::pending::Command;
use crate::conn::Membership;
use crate::outgoing::{Outgoing, Piece, Response};
use crate::waitlist::{ListKind, Waiter};
use std::rc::Rc;
use std::time::Duration;

/// How long a WebSocket opened without `?since=` waits for its first frame (`resume`, which
/// says where its replay starts) before its replay starts from the beginning, as an event
/// stream's would. A browser sends `resume` as soon as the socket opens: one round trip.
pub const RESUME_WAIT: Duration = Duration::from_secs(1);

/// When an input happened, read once by the shell: the chat never reads a clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Milliseconds on the loop's clock (since start; it never jumps): presence windows,
    /// rate limits, the room cap's order.
    pub ms: u64,
    /// Milliseconds since 1970: a message's time, a token's end.
    pub unix_ms: u64,
}

impl Now {
    /// A wall-clock time (seconds since 1970, as tokens say) on the loop's clock: now if it
    /// has passed.
    pub fn loop_ms_at(self, unix_secs: u64) -> u64 {
        let ahead = unix_secs.saturating_mul(1000).saturating_sub(self.unix_ms);
        self.ms.saturating_add(ahead)
    }
}

/// One of the chat's own deadlines, kept on the shell's wheel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Tell rooms which names left.
    Presence,
    /// Free the rate limiter's full buckets.
    Limiter,
}

/// One thing the shell must do. Effects of one input are carried out in the order they
/// were queued, before the next input reaches the chat.
#[derive(Debug)]
pub enum Effect {
    /// Answer `to` with `response` and hang up after it if `close`. A parked poll leaves
    /// its list first (the shell asks [`super::Chat::left`]).
    Answer {
        /// The connection.
        to: Waiter,
        /// The whole response, headers included (`Connection` is the shell's to add).
        response: Response,
        /// Hang up once it is out.
        close: bool,
    },
    /// The same bytes to every poll in `to`, already taken out of their list: a broadcast,
    /// encoded once. O(waiters) writes, no copy per client.
    AnswerAll {
        /// The polls, as they were parked.
        to: Vec<Waiter>,
        /// The one encoding they all get.
        response: Rc<[u8]>,
        /// The room and list they were taken from: the shell gives the list back
        /// ([`super::Chat::recycle`]), so its allocation serves the next broadcast.
        from: (u32, ListKind),
    },
    /// `to` waits in a room's list, at `at`, for a message, an event or its timeout.
    Park {
        /// The connection.
        to: Waiter,
        /// Where in which list.
        at: Membership,
        /// Hang up after the answer.
        close: bool,
    },
    /// `to` becomes an event stream at `at`, its first bytes `output` (head and replay).
    Stream {
        /// The connection.
        to: Waiter,
        /// Where in the room's stream list.
        at: Membership,
        /// The head, the retry hint and the replay's first page.
        output: Outgoing,
        /// A WebSocket whose replay waits for its first frame (`resume`), at most
        /// [`RESUME_WAIT`]: the shell calls [`super::Chat::stream_due`] then.
        hold: bool,
    },
    /// Stream `to`'s replay starts (a WebSocket that said where from): queued behind
    /// whatever it is owed, then paged from the room as it drains.
    Replay {
        /// The stream.
        to: Waiter,
        /// The first page.
        pieces: Vec<Piece>,
        /// More history after this message.
        more_after: Option<u64>,
    },
    /// One frame to each stream in `to`, which stay in their list. `message`: the frame is
    /// a stored message, which a stream still replaying reaches in the history instead.
    /// `replay_again`: the history started over (a gap), so a stream still replaying the
    /// old one replays the new one from its start.
    Frames {
        /// The streams.
        to: Vec<Waiter>,
        /// The frame, encoded once.
        frame: Rc<[u8]>,
        /// A stored message (see above).
        message: bool,
        /// Replay from the start (see above).
        replay_again: bool,
    },
    /// Stream `to` ends with `frame` (its token ran out, or the server shuts down); the
    /// connection closes once that is out.
    EndStream {
        /// The stream.
        to: Waiter,
        /// Its last frame.
        frame: Rc<[u8]>,
    },
    /// `to`'s request waits for Redis, at most `REPLY_WAIT`; nothing more is read from it.
    Await {
        /// The connection.
        to: Waiter,
        /// Hang up after the answer.
        close: bool,
    },
    /// `to` waited for Redis and is Reading again; its request's effects follow.
    CarryOn {
        /// The connection.
        to: Waiter,
    },
    /// A command for Redis (with `--redis`), to the shard that holds its room.
    Redis {
        /// The shard, an index into `--redis` as given.
        shard: usize,
        /// What to send.
        command: Command,
    },
    /// Put one of the chat's sweeps on the wheel, `after` from now.
    Schedule {
        /// Which.
        sweep: Sweep,
        /// When.
        after: Duration,
    },
    /// A message went out to `delivered` waiters of room `room` (for the loop's metrics).
    Delivered {
        /// The room's name.
        room: Box<str>,
        /// Waiters it reached.
        delivered: u64,
    },
}
