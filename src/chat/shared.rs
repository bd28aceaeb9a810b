//! With `--redis`: rooms as copies of Redis's, and the requests that wait for Redis (how
//! the copies are kept true is `copies.rs`). The chat sends commands as effects
//! ([`Command`]) and hears back through [`Chat::redis`]; the connections to Redis are the
//! shell's (`src/server/redis.rs`).
//!
//! - A post goes to Redis (one script stores, trims and announces it); the poster is
//!   answered once Redis confirms, and everyone — the poster's own node included — gets
//!   the message from the announcement, delivered exactly as a local post is.
//! - A read of a room (a poll, a stream, presence) is answered from the node's copy of the
//!   room; a room not copied yet is loaded first, and the request waits. So does one whose
//!   position is ahead of the copy (another node gave it out, and this one has not heard of
//!   it yet), while the copy reads what it missed: only a position still ahead after that
//!   read is one Redis never issued, and refused.
//! - A copy stays true by sequence numbers: an announcement that is not the next one
//!   expected, or Redis coming back after an outage, makes the room read what it missed.
//! - Redis down: posts are answered 503 at once, or after [`REPLY_WAIT`] without an answer
//!   (the shell's timer); waiting polls and open streams stay.

use super::asked::Asked;
use super::effect::{Effect, Now};
use super::fanout::NAMES_SWEPT_PER_PASS;
use super::pending::{Command, Copy, Deferred, Shared, Sync, Then};
use super::state::Chat;
use crate::answer::Also;
use crate::backplane::{Incoming, Trim};
use crate::http::Status;
use crate::limits::Act;
use crate::routes::Action;
use crate::waitlist::Waiter;

impl Chat {
    /// The shared state; only called where rooms are shared.
    pub(super) fn shared(&mut self) -> &mut Shared {
        self.shared.as_mut().expect("called with --redis only")
    }

    /// Room `room`'s copy.
    pub(super) fn copy(&mut self, room: u32) -> &mut Copy {
        self.shared().copy(room)
    }

    /// Whether the shard that holds room `room` is up now.
    pub(super) fn shard_up(&self, room: u32) -> bool {
        let Some(shared) = self.shared.as_ref() else {
            return false;
        };
        shared.shards[shared.shard_of(room)].up
    }

    /// Something came from shard `shard` (an index into `--redis`): a reply, an
    /// announcement, or its connections coming up or going down.
    pub fn redis(&mut self, now: Now, shard: usize, incoming: Incoming<Then>) {
        if self.shared.as_ref().is_none_or(|s| shard >= s.shards.len()) {
            return;
        }
        match incoming {
            Incoming::Up => self.on_redis_up(shard),
            Incoming::Down(_) => self.on_redis_down(shard),
            Incoming::Reply(then, answer) => self.on_reply(now, shard, then, answer),
            Incoming::News { room, news } => self.on_news(now, shard, &room, news),
        }
    }

    /// The rooms here that live on shard `shard`: what its coming up, going down or losing
    /// its data concerns. O(rooms here), once per such event.
    pub(super) fn rooms_on(&self, shard: usize) -> Vec<u32> {
        let Some(shared) = self.shared.as_ref() else {
            return Vec::new();
        };
        (self.rooms.room_ids())
            .filter(|&room| shared.shard_of(room) == shard)
            .collect()
    }

    /// Sends `command`, about room `room`, to the shard that holds the room.
    pub(super) fn send_to_shard(&mut self, room: u32, command: Command) {
        let shard = self.shared().shard_of(room);
        self.effects.push(Effect::Redis { shard, command });
    }

    /// Connection `conn` waited for Redis for [`REPLY_WAIT`]: it is told to come back.
    pub fn redis_wait_over(&mut self, conn: Waiter) {
        if let Some(shared) = self.shared.as_mut() {
            shared.forget(conn);
        }
        self.redis_unavailable(conn, false);
    }

    /// `503` with `Retry-After: 1`: Redis cannot be reached just now (or, with
    /// `--redis-replicas`, too few of its replicas hold the post). A client that retries
    /// a post with the same `client_id` is never stored twice.
    pub(super) fn redis_unavailable(&mut self, conn: Waiter, close: bool) {
        let message =
            "the message store (Redis) cannot be reached, or cannot keep this safe, just now; \
             try again";
        let also = Also::RetryAfter(1);
        let bytes = self
            .replies
            .error(Status::SERVICE_UNAVAILABLE, message, also, false);
        self.answer(conn, bytes, close);
    }

    /// `asked` waits for Redis: the wait's number.
    fn wait_for_redis(&mut self, asked: Asked) -> u64 {
        let wait = self.shared().begin_wait(asked.conn);
        self.effects.push(Effect::Await {
            to: asked.conn,
            close: asked.close,
        });
        wait
    }

    /// Shard `shard` is up (again): every room of it copied here reads what it missed, and
    /// its rooms requests wait on are loaded. O(rooms here), one small command for each of
    /// the shard's, once per (re)connection: with the default `--max-rooms` of 1,000 a few
    /// milliseconds; Redis answers them in order and the replies are taken
    /// `FRAMES_PER_PASS` a pass.
    fn on_redis_up(&mut self, shard: usize) {
        self.shared().shards[shard].up = true;
        let lobby = self.rooms.lobby();
        for room in self.rooms_on(shard) {
            let sync = self.copy(room).sync;
            match sync {
                Sync::Loaded | Sync::CatchingUp => {
                    self.copy(room).sync = Sync::Loaded;
                    self.catch_up(room);
                }
                Sync::Unloaded if room == lobby || self.shared().holds(room) => self.load(room),
                _ => {}
            }
        }
        self.schedule_presence_sweep();
    }

    /// Shard `shard` is gone: copies of its rooms being read stay as they were, and every
    /// request that waited for one of its rooms is told to come back (503), all at once:
    /// O(rooms here + requests waiting), each one small answer, once per outage, and
    /// bounded by the connections held. Rooms on other shards go on as they were.
    fn on_redis_down(&mut self, shard: usize) {
        self.shared().shards[shard].up = false;
        let rooms = self.rooms_on(shard);
        for &room in &rooms {
            let room = self.copy(room);
            room.sync = match room.sync {
                Sync::Loading => Sync::Unloaded,
                Sync::CatchingUp => Sync::Loaded,
                other => other,
            };
        }
        // Requests that waited for a room of the shard to load: it will not, now.
        let shared = self.shared();
        let deferred: Vec<Deferred> = (rooms.into_iter())
            .filter_map(|room| shared.deferred.remove(&room))
            .flatten()
            .collect();
        for waiting in deferred {
            if self.shared().end_wait(waiting.asked.conn, waiting.wait) {
                self.redis_unavailable(waiting.asked.conn, false);
            }
        }
    }

    /// A read of a room waits until the room's copy is loaded, and, if it names a position
    /// ahead of the copy, until the copy has read Redis past it. Returns the action when
    /// it can go ahead now; otherwise the request waits (or was answered).
    pub(super) fn when_room_ready(
        &mut self,
        now: Now,
        asked: Asked,
        action: Action,
    ) -> Option<Action> {
        let Some(name) = action.room_to_read() else {
            return Some(action); // a post or typing goes straight to Redis
        };
        let room = match self.room_named(now, asked, name) {
            Ok(room) => room,
            Err(_) => return Some(action), // the handler answers the room cap
        };
        let ready = self.is_ready(room);
        let ahead = ready && self.ahead_of_copy(asked, room, &action);
        if ready && !ahead {
            return Some(action);
        }
        if !self.shard_up(room) {
            self.redis_unavailable(asked.conn, asked.close);
            return None;
        }
        if ahead && !self.may_read_for(now, asked) {
            return None;
        }
        let wait = self.wait_for_redis(asked);
        let after_read = self.shared().reads_sent + 1;
        let waiting = Deferred {
            asked,
            action,
            wait,
            after_read,
        };
        self.shared()
            .deferred
            .entry(room)
            .or_default()
            .push(waiting);
        match self.copy(room).sync {
            Sync::Unloaded => self.load(room),
            // Catching up already: that read may have left before the position was given
            // out, so the next one is sent when it is back (`catch_up_if_behind`).
            Sync::Loaded => self.catch_up(room),
            _ => {}
        }
        None
    }

    /// Whether the client may have the room's copy read from Redis for a position ahead
    /// of it; if not, answers 429. Each such read costs Redis a command, as a post does, so
    /// it is charged to the client's `--post-rate`: nothing else bounded how often a client
    /// could ask (one client's 247,520 requests with made-up positions in 5 s made the
    /// node read Redis 66,254 times). A client whose node only lags asks a few times.
    fn may_read_for(&mut self, now: Now, asked: Asked) -> bool {
        let address = self.clients.address(asked.client);
        match self.limiter.allow(Act::Post, address, ("", false), now.ms) {
            Ok(()) => {
                self.schedule_limiter_sweep();
                true
            }
            Err(refused) => {
                let message = "since: this position is ahead of what this node has seen, and \
                               your address has had Redis read for such positions as often as \
                               --post-rate allows; try again after Retry-After";
                self.too_many(asked, refused, message);
                false
            }
        }
    }

    /// Whether the request names a position of the current epoch beyond the newest
    /// message of the room's copy: another node gave it out, and this one has not heard of
    /// it yet. Once the copy has read Redis for it (`Asked::caught_up`), no longer: a
    /// position still ahead then is one Redis never issued, and the handler refuses it.
    fn ahead_of_copy(&mut self, asked: Asked, room: u32, action: &Action) -> bool {
        let epoch = self.epoch(room);
        let last = self.rooms.room(room).last_seq();
        action
            .since()
            .is_some_and(|p| !asked.caught_up && p.epoch == epoch && p.seq > last)
    }

    /// A post, stored and announced by Redis; the poster is answered when Redis confirms.
    /// Returns false when Redis is down (answered 503 at once).
    pub(super) fn post_through_redis(
        &mut self,
        now: Now,
        asked: Asked,
        room: u32,
        (from, text, client_id): (&str, &str, Option<&str>),
        classic: bool,
    ) -> bool {
        if !self.shard_up(room) {
            self.redis_unavailable(asked.conn, asked.close);
            return false;
        }
        self.copy(room).posted_here = true;
        let wait = self.wait_for_redis(asked);
        let command = Command::Post {
            room: self.rooms.room(room).name.clone(),
            from: from.to_owned(),
            text: text.to_owned(),
            time_ms: now.unix_ms,
            client_id: client_id.map(str::to_owned),
            trim: Trim {
                messages: self.config.history_messages,
                bytes: self.config.history_bytes,
            },
            new_epoch: self.random.next_u64() as u32,
            then: Then::Post {
                conn: asked.conn,
                wait,
                classic,
            },
        };
        self.send_to_shard(room, command);
        true
    }

    /// A typing event, announced through Redis; false when Redis is down.
    pub(super) fn typing_through_redis(&mut self, room: u32, from: &str) -> bool {
        if !self.shard_up(room) {
            return false;
        }
        let (name, from) = (self.rooms.room(room).name.clone(), from.to_owned());
        self.send_to_shard(room, Command::Typing { room: name, from });
        true
    }

    /// A name that just became present here: tell every node (it announces the join
    /// if the name was not present anywhere). Down: the renewal after reconnecting does.
    pub(super) fn announce_name(&mut self, room: u32, name: &str) {
        if !self.shard_up(room) {
            return;
        }
        let window = self.presence_window_ms();
        let names = vec![(name.to_owned(), window)];
        let name = self.rooms.room(room).name.clone();
        self.send_to_shard(room, Command::Presence { room: name, names });
    }

    /// The presence sweep's part with Redis: renew every name held here (so it stays while
    /// this node lives) and announce the names whose time is up everywhere. Once a second
    /// while anyone is named: O(rooms here) to find the named ones, one command per named
    /// room (its names in it), like the local sweep's walk in `fanout.rs`.
    pub(super) fn sweep_shared_presence(&mut self, now: Now) -> bool {
        if self.shared.is_none() {
            return false;
        }
        let window = self.presence_window_ms();
        let mut still_named = false;
        for id in self.rooms.room_ids() {
            if !self.shard_up(id) {
                still_named = true; // swept once its shard is back
                continue;
            }
            if !self.is_ready(id) {
                continue;
            }
            let others = !self.copy(id).everyone.is_empty();
            let room = self.rooms.room(id);
            let name = room.name.clone();
            let held: Vec<(String, u64)> = (room.names.held(now.ms, window).into_iter())
                .map(|(name, ms)| (name.to_owned(), ms))
                .collect();
            still_named |= !held.is_empty() || others;
            // Renew what is held here, then announce what left everywhere.
            if !held.is_empty() {
                let renew = Command::Presence {
                    room: name.clone(),
                    names: held,
                };
                self.send_to_shard(id, renew);
            }
            if others {
                let limit = NAMES_SWEPT_PER_PASS;
                let sweep = Command::Sweep { room: name, limit };
                self.send_to_shard(id, sweep);
            }
        }
        still_named
    }
}
