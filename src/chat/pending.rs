//! What is on its way to Redis and who waits for it (`--redis`): the commands the chat
//! asks the shell to send ([`Command`]), what each reply is for ([`Then`]), and the
//! requests waiting for a reply or a room's copy ([`Shared`]). What the chat does with
//! replies is in `shared.rs` and `copies.rs`.

use super::asked::Asked;
use super::rooms::LOBBY;
use crate::backplane::shards::shard_of;
use crate::backplane::Trim;
use crate::routes::Action;
use crate::waitlist::Waiter;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

/// How long a request waits for Redis before it is told to come back: "posts answer 503
/// within a second, never hang until Redis returns".
pub const REPLY_WAIT: Duration = Duration::from_secs(1);

/// What a command's reply is for.
#[derive(Debug)]
pub enum Then {
    /// A post by `conn`: answer it.
    Post {
        /// The poster.
        conn: Waiter,
        /// Which of the poster's waits this is (`Shared::awaiting`).
        wait: u64,
        /// The classic `POST /chat`, answered `{"ok":"posted"}`.
        classic: bool,
    },
    /// Loading this room.
    Load(RoomAt),
    /// Catching this room up.
    CatchUp(RoomAt),
    /// Renewing or sweeping names: the announcements are what matters.
    Presence,
}

/// The room a read of Redis is for: its id, and its name, to tell it from a room that took
/// the id over while the read was on its way (a room that holds nothing gives its place to
/// a new one: `Rooms::room_id`). A reply for a room no longer here is dropped.
#[derive(Debug)]
pub struct RoomAt {
    pub(super) id: u32,
    pub(super) name: Box<str>,
    /// Its number among the reads sent (`Shared::reads_sent`).
    pub(super) read: u64,
}

/// A command for Redis, carried out by the shell's backplane (`crate::backplane`). One
/// the shell cannot send comes back as a failed reply.
#[derive(Debug)]
pub enum Command {
    /// Store and announce a message (see `Backplane::post`).
    Post {
        /// The room.
        room: Box<str>,
        /// Who.
        from: String,
        /// What.
        text: String,
        /// When, milliseconds since 1970.
        time_ms: u64,
        /// The poster's idempotency id.
        client_id: Option<String>,
        /// The history caps Redis trims to.
        trim: Trim,
        /// The epoch to start if Redis has none.
        new_epoch: u32,
        /// What the reply is for.
        then: Then,
    },
    /// Read a room's messages from `first_seq` on (see `Backplane::history`).
    History {
        /// The room.
        room: Box<str>,
        /// The first message wanted.
        first_seq: u64,
        /// With the names present (a load).
        with_names: bool,
        /// Expired names swept on the way, at most.
        sweep_limit: usize,
        /// The epoch to start if Redis has none.
        new_epoch: u32,
        /// What the reply is for.
        then: Then,
    },
    /// Renew or announce names present here (see `Backplane::presence`).
    Presence {
        /// The room.
        room: Box<str>,
        /// Each name with how much longer it is present, in ms.
        names: Vec<(String, u64)>,
    },
    /// Announce names whose time is up, at most `limit` (see `Backplane::sweep`).
    Sweep {
        /// The room.
        room: Box<str>,
        /// How many at most.
        limit: usize,
    },
    /// Announce that `from` is typing.
    Typing {
        /// The room.
        room: Box<str>,
        /// Who.
        from: String,
    },
}

#[cfg(test)]
impl RoomAt {
    /// The read numbered `read` of room `name` at `id`, as the chat would have sent it.
    pub(super) fn for_tests(id: u32, name: &str, read: u64) -> RoomAt {
        RoomAt {
            id,
            name: name.into(),
            read,
        }
    }
}

/// A request that waits for its room's copy to be loaded, or to catch up.
pub(super) struct Deferred {
    pub asked: Asked,
    pub action: Action,
    /// Which of its connection's waits this is (`Shared::awaiting`).
    pub wait: u64,
    /// The number the first read of its room sent after it came has (or will have): that
    /// read holds everything Redis issued before, so once it is back, a position still
    /// ahead of the copy was never issued. A catch-up waiter goes on when that read is
    /// back; every load waiter goes on with the load, and asks again if the load was
    /// older than it.
    pub after_read: u64,
}

/// With `--redis`, a node keeps each room it serves as a copy of Redis's: its history, its
/// head, who is present. This says how far that copy can be trusted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Sync {
    /// Not loaded: requests that need it wait while it is.
    #[default]
    Unloaded,
    /// Its history is being read from Redis.
    Loading,
    /// A faithful copy, kept so by the announcements.
    Loaded,
    /// Loaded, and reading what it missed (an announcement came out of order, or Redis
    /// came back); announcements meanwhile are caught up by that read.
    CatchingUp,
}

/// How one room's copy stands against Redis's: what the room itself (`crate::room::Room`,
/// the same with or without Redis) does not hold.
#[derive(Debug, Default)]
pub(super) struct Copy {
    /// How far the copy can be trusted.
    pub sync: Sync,
    /// The shard (`--redis`, in the order given) that holds the room: its name's
    /// [`shard_of`], kept here so a delivery does not hash the name again.
    pub shard: u16,
    /// Every name present in the room on any node, as announced.
    pub everyone: BTreeSet<String>,
    /// The highest sequence number announced, heard even while the copy was being read,
    /// so a read that ended short of it is followed by another.
    pub heard: u64,
    /// A post to this room went to Redis from here, so Redis holds its messages.
    pub posted_here: bool,
    /// While the copy loads: names announced as joined, and as left, since the load was
    /// sent. The load may have been read before them, so they are applied over what it
    /// brings (a name both joined and left counts as its last announcement says).
    /// Bounded by the names the room can hold.
    pub while_loading: (BTreeSet<String>, BTreeSet<String>),
}

impl Copy {
    /// Whether requests can be answered from this copy now.
    pub fn is_ready(&self) -> bool {
        matches!(self.sync, Sync::Loaded | Sync::CatchingUp)
    }

    /// A read of Redis for it is on its way: it keeps its place until the read is back.
    pub fn being_read(&self) -> bool {
        matches!(self.sync, Sync::Loading | Sync::CatchingUp)
    }

    /// Redis holds messages of this room that this node knows of: a copy that gives way
    /// then is read back on its next use, so it is not vacant (`Places::stored`).
    pub fn stored(&self) -> bool {
        self.posted_here || self.heard > 0
    }
}

/// How one shard (one `--redis`) stands, as the chat sees it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Shard {
    /// Both its connections are ready: commands go out, announcements come in. A shard
    /// down refuses only its own rooms' posts.
    pub(super) up: bool,
    /// Its epoch, once known (from its first answer). Each shard has its own: a position
    /// is a room's, and each room lives on one shard, so a shard that loses its data
    /// starts its own rooms again and no other.
    pub(super) epoch: Option<u32>,
}

/// The chat's side of Redis.
#[derive(Default)]
pub(super) struct Shared {
    /// Each shard, in the order of `--redis`.
    pub(super) shards: Vec<Shard>,
    /// Requests waiting for their room's copy, by room id.
    pub(super) deferred: HashMap<u32, Vec<Deferred>>,
    /// Every connection waiting for Redis (a post's reply, or a room's copy), with the
    /// number of its wait: one the shell answered meanwhile (Redis was slow) or lost is
    /// taken out, so a late reply finds nobody to answer. The number, because a keep-alive
    /// connection told to come back may ask again and wait again: a late reply for its
    /// first request must not answer its second (a poll of one room answered with
    /// another room's messages, a post with another post's id).
    pub(super) awaiting: HashMap<Waiter, u64>,
    /// Waits begun so far: each wait's number.
    pub(super) waits: u64,
    /// Reads of a room's history sent so far: each read is numbered, so that a request
    /// waits for a read sent after it came, not one already on its way.
    pub(super) reads_sent: u64,
    /// Each room's copy, by room id (grown as rooms are made; a room made in another's
    /// place starts a fresh copy).
    pub(super) copies: Vec<Copy>,
    /// Requests whose room is ready now, each with whether its copy read Redis for it
    /// (`Asked::caught_up`), handled a pass's worth at a time (`Chat::resume_next`): one load
    /// can release every request that waited on a room, thousands of them.
    pub(super) resuming: VecDeque<(Deferred, bool)>,
}

impl Shared {
    /// The chat's side of `shards` Redis, each down until it says it is up; the lobby,
    /// made before this, is put on its shard.
    pub(super) fn new(shards: usize) -> Shared {
        let mut shared = Shared {
            shards: vec![Shard::default(); shards.max(1)],
            ..Shared::default()
        };
        shared.made(0, LOBBY);
        shared
    }

    /// The shard room `id` lives on.
    pub(super) fn shard_of(&self, id: u32) -> usize {
        self.peek(id).map_or(0, |copy| usize::from(copy.shard))
    }

    /// Whether requests wait on room `id` (so it may not give its place away).
    pub(super) fn holds(&self, id: u32) -> bool {
        self.deferred.contains_key(&id)
    }

    /// Room `id`'s copy.
    pub(super) fn copy(&mut self, id: u32) -> &mut Copy {
        let at = id as usize;
        if self.copies.len() <= at {
            self.copies.resize_with(at + 1, Copy::default);
        }
        &mut self.copies[at]
    }

    /// Room `id`'s copy, if it was ever looked at (a copy never looked at is unloaded).
    pub(super) fn peek(&self, id: u32) -> Option<&Copy> {
        self.copies.get(id as usize)
    }

    /// Room `name` was made at `id`: its copy starts unloaded, on its shard.
    pub(super) fn made(&mut self, id: u32, name: &str) {
        let shard = shard_of(name, self.shards.len()) as u16;
        *self.copy(id) = Copy {
            shard,
            ..Copy::default()
        };
    }

    /// `conn` no longer waits (answered by the shell, or gone).
    pub(super) fn forget(&mut self, conn: Waiter) {
        self.awaiting.remove(&conn);
    }

    /// `conn` begins to wait: the wait's number.
    pub(super) fn begin_wait(&mut self, conn: Waiter) -> u64 {
        self.waits += 1;
        self.awaiting.insert(conn, self.waits);
        self.waits
    }

    /// Whether `conn` still waits in wait number `wait`; if so, it waits no more.
    pub(super) fn end_wait(&mut self, conn: Waiter, wait: u64) -> bool {
        let current = self.awaiting.get(&conn) == Some(&wait);
        if current {
            self.awaiting.remove(&conn);
        }
        current
    }
}
