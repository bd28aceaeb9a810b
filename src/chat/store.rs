//! Where rooms live, chosen once at start-up: in this process alone, or in Redis with this
//! process keeping copies of the rooms it serves (`--redis`, `shared.rs`). This file is the
//! one place the chat asks which; every rule elsewhere calls these few functions and reads
//! the same either way (STYLE.md habit 19).
//!
//! | what                         | in this process                 | in Redis                                     |
//! |------------------------------|---------------------------------|----------------------------------------------|
//! | a read of a room             | answered now                    | waits for the room's copy (`when_room_ready`) |
//! | a post                       | stored, delivered, answered now | sent; answered when Redis confirms            |
//! | typing, a join               | delivered now                   | published; delivered when Redis announces it  |
//! | names that left              | delivered now                   | Redis announces those gone everywhere         |
//! | names present                | this room's                     | everyone's, on every node                     |
//! | a room's first post          | its first message               | its first post from this node                 |
//! | a room that gives way        | its history is gone             | Redis keeps it                                |

use super::asked::Asked;
use super::effect::Now;
use super::pending::Shared;
use super::state::Chat;
use crate::answer;
use crate::event::Event;
use crate::position::Position;
use crate::room::Posted;
use crate::routes::Action;
use std::collections::BTreeSet;

/// What the store says of a room when the room cap needs a place (`Places`): whether it
/// is held (with Redis: requests wait for its copy, or a read of it is on its way), and
/// whether messages of it are stored outside (with Redis: posted from here, or announced).
/// Without Redis, neither.
#[derive(Clone, Copy)]
pub(super) struct Outside<'a>(pub &'a Option<Shared>);

impl Outside<'_> {
    /// Whether room `id` is held by the store.
    pub fn holds(&self, id: u32) -> bool {
        self.0.as_ref().is_some_and(|shared| {
            let being_read = shared.peek(id).is_some_and(|copy| copy.being_read());
            shared.holds(id) || being_read
        })
    }

    /// Whether the store keeps messages of room `id`.
    pub fn stored(&self, id: u32) -> bool {
        let copy = self.0.as_ref().and_then(|shared| shared.peek(id));
        copy.is_some_and(|copy| copy.stored())
    }
}

/// A post to store: who, what, and the poster's idempotency id.
pub(super) type Post<'a> = (&'a str, &'a str, Option<&'a str>);

impl Chat {
    /// The request if it can be answered now; otherwise it waits for its room's copy (or
    /// was answered), and `None`.
    pub(super) fn when_ready(&mut self, now: Now, asked: Asked, action: Action) -> Option<Action> {
        match self.shared {
            None => Some(action),
            Some(_) => self.when_room_ready(now, asked, action),
        }
    }

    /// Stores a post and answers it: at once here, or once Redis confirms. `classic`: the
    /// classic `POST /chat`, answered `{"ok":"posted"}`. Returns false when it was refused
    /// (Redis down: answered 503).
    pub(super) fn store_post(
        &mut self,
        now: Now,
        asked: Asked,
        room: u32,
        post: Post,
        classic: bool,
    ) -> bool {
        if self.shared.is_some() {
            return self.post_through_redis(now, asked, room, post, classic);
        }
        let (from, text, client_id) = post;
        let (seq, duplicate) = match self.post(now, room, from, text, client_id) {
            Posted::New(seq) => (seq, false),
            Posted::Duplicate(seq) => (seq, true),
        };
        let bytes = match classic {
            true => answer::classic_posted(),
            false => {
                let id = Position {
                    epoch: self.epoch(room),
                    seq,
                };
                self.replies.posted(id, duplicate)
            }
        };
        self.answer(asked.conn, bytes, asked.close);
        true
    }

    /// Ephemeral events (typing, join, leave) for everyone waiting in `room`: here, or on
    /// every node. Returns false when they could not go (Redis down).
    pub(super) fn announce(&mut self, room: u32, events: Vec<Event>) -> bool {
        if self.shared.is_none() {
            self.broadcast_events(room, &events);
            return true;
        }
        let mut sent = true;
        for event in events {
            match event {
                Event::Typing { from } => sent &= self.typing_through_redis(room, &from),
                Event::Join { name } => self.announce_name(room, &name),
                // A name that left this node may be present on another: what leaves
                // everywhere is announced by Redis (`Chat::sweep_shared_presence`).
                Event::Leave { .. } => {}
            }
        }
        sent
    }

    /// Whether a post to `room` gives it its first message (with Redis: its first from this
    /// node), which makes the room count against its poster's `--max-rooms-per-client`.
    pub(super) fn first_post_here(&mut self, room: u32) -> bool {
        match self.shared.as_mut() {
            Some(shared) => !shared.copy(room).posted_here,
            None => self.rooms.room(room).last_seq() == 0,
        }
    }

    /// Whether a room's history outlives its place here (with Redis, Redis keeps it).
    pub(super) fn history_kept_elsewhere(&self) -> bool {
        self.shared.is_some()
    }

    /// Room `name` was made at `id` (new, or in another's place): with Redis, its copy
    /// starts unloaded, on the shard its name picks.
    pub(super) fn room_made(&mut self, id: u32, name: &str) {
        if let Some(shared) = self.shared.as_mut() {
            shared.made(id, name);
        }
    }

    /// The epoch of room `id`'s positions: this run's without Redis; with it, the epoch of
    /// the shard that holds the room, once known.
    pub(super) fn epoch(&self, id: u32) -> u32 {
        let shared = self.shared.as_ref();
        let shard = shared.and_then(|shared| shared.shards[shared.shard_of(id)].epoch);
        shard.unwrap_or(self.rooms.epoch)
    }

    /// Whether room `id` can be answered from here now: always without Redis; with it,
    /// once its copy is loaded.
    pub(super) fn is_ready(&self, id: u32) -> bool {
        match &self.shared {
            None => true,
            Some(shared) => shared.peek(id).is_some_and(|copy| copy.is_ready()),
        }
    }

    /// With `--redis`: every name present in room `id` on any node, as announced.
    pub(super) fn everyone(&self, id: u32) -> Option<&BTreeSet<String>> {
        static NOBODY: BTreeSet<String> = BTreeSet::new();
        let shared = self.shared.as_ref()?;
        Some(shared.peek(id).map_or(&NOBODY, |copy| &copy.everyone))
    }
}
