//! With `--redis`: rooms as copies of Redis's, and the requests that wait for Redis. The
//! chat sends commands as effects ([`Command`]) and hears back through
//! [`Chat::redis`]; the connections to Redis are the shell's (`src/server/redis.rs`).
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
use super::pending::{Command, Copy, Deferred, RoomAt, Shared, Sync, Then};
use super::state::Chat;
use crate::answer::{self, Also};
use crate::backplane::news::{News, Snapshot, Stored};
use crate::backplane::{Answer, Incoming, Trim};
use crate::event::Event;
use crate::http::Status;
use crate::limits::Act;
use crate::position::Position;
use crate::routes::Action;
use crate::stats;
use crate::waitlist::Waiter;

impl Chat {
    /// The shared state; only called where rooms are shared.
    fn shared(&mut self) -> &mut Shared {
        self.shared.as_mut().expect("called with --redis only")
    }

    /// Room `room`'s copy.
    fn copy(&mut self, room: u32) -> &mut Copy {
        self.shared().copy(room)
    }

    /// Whether Redis is up now.
    fn redis_up(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| s.up)
    }

    /// Something came from Redis: a reply, an announcement, or the connections coming up
    /// or going down.
    pub fn redis(&mut self, now: Now, incoming: Incoming<Then>) {
        match incoming {
            Incoming::Up => self.on_redis_up(),
            Incoming::Down(_) => self.on_redis_down(),
            Incoming::Reply(then, answer) => self.on_reply(now, then, answer),
            Incoming::News { room, news } => self.on_news(now, &room, news),
        }
    }

    /// Connection `conn` waited for Redis for [`REPLY_WAIT`]: it is told to come back.
    pub fn redis_wait_over(&mut self, conn: Waiter) {
        if let Some(shared) = self.shared.as_mut() {
            shared.forget(conn);
        }
        self.redis_unavailable(conn, false);
    }

    /// `503` with `Retry-After: 1`: Redis cannot be reached just now. A client that retries
    /// a post with the same `client_id` is never stored twice.
    pub(super) fn redis_unavailable(&mut self, conn: Waiter, close: bool) {
        let message = "the message store (Redis) cannot be reached just now; try again";
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

    /// Redis is up (again): every room copied here reads what it missed, and the rooms
    /// requests wait on are loaded. O(rooms here), one small command each, once per
    /// (re)connection: with the default `--max-rooms` of 1,000 a few milliseconds; Redis
    /// answers them in order and the replies are taken `FRAMES_PER_PASS` a pass.
    fn on_redis_up(&mut self) {
        self.shared().up = true;
        let lobby = self.rooms.lobby();
        for room in self.rooms.room_ids() {
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

    /// Redis is gone: copies being read stay as they were, and every request that waited
    /// for a room is told to come back (503), all at once: O(requests waiting), each one
    /// small answer, once per outage, and bounded by the connections held.
    fn on_redis_down(&mut self) {
        self.shared().up = false;
        for room in self.rooms.room_ids() {
            let room = self.copy(room);
            room.sync = match room.sync {
                Sync::Loading => Sync::Unloaded,
                Sync::CatchingUp => Sync::Loaded,
                other => other,
            };
        }
        // Requests that waited for a room to load: it will not, now.
        let deferred: Vec<Deferred> = self
            .shared()
            .deferred
            .drain()
            .flat_map(|(_, d)| d)
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
        if !self.redis_up() {
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
        let epoch = self.rooms.epoch;
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
        if !self.redis_up() {
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
        self.effects.push(Effect::Redis(command));
        true
    }

    /// A typing event, announced through Redis; false when Redis is down.
    pub(super) fn typing_through_redis(&mut self, room: u32, from: &str) -> bool {
        if !self.redis_up() {
            return false;
        }
        let room = self.rooms.room(room).name.clone();
        let from = from.to_owned();
        self.effects
            .push(Effect::Redis(Command::Typing { room, from }));
        true
    }

    /// A name that just became present here: tell every node (it announces the join
    /// if the name was not present anywhere). Down: the renewal after reconnecting does.
    pub(super) fn announce_name(&mut self, room: u32, name: &str) {
        if !self.redis_up() {
            return;
        }
        let window = self.presence_window_ms();
        let room = self.rooms.room(room).name.clone();
        let names = vec![(name.to_owned(), window)];
        self.effects
            .push(Effect::Redis(Command::Presence { room, names }));
    }

    /// The presence sweep's part with Redis: renew every name held here (so it stays while
    /// this node lives) and announce the names whose time is up everywhere. Once a second
    /// while anyone is named: O(rooms here) to find the named ones, one command per named
    /// room (its names in it), like the local sweep's walk in `fanout.rs`.
    pub(super) fn sweep_shared_presence(&mut self, now: Now) -> bool {
        if self.shared.is_none() {
            return false;
        }
        if !self.redis_up() {
            return true;
        }
        let window = self.presence_window_ms();
        let mut still_named = false;
        for id in self.rooms.room_ids() {
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
                self.effects.push(Effect::Redis(renew));
            }
            if others {
                let limit = NAMES_SWEPT_PER_PASS;
                let sweep = Command::Sweep { room: name, limit };
                self.effects.push(Effect::Redis(sweep));
            }
        }
        still_named
    }

    // ----- keeping the copies true --------------------------------------------------------

    /// Reads room `room`'s copy from Redis whole, names present included.
    fn load(&mut self, room: u32) {
        self.copy(room).sync = Sync::Loading;
        self.read_history(room, 1, true);
    }

    /// Sends a read of room `room`'s history from `first_seq` on: a load (`whole`, with the
    /// names present and a sweep of expired ones) or a catch-up. Each read is numbered
    /// (`Shared::reads_sent`), so a request waits for a read sent after it came.
    fn read_history(&mut self, room: u32, first_seq: u64, whole: bool) {
        let name = self.rooms.room(room).name.clone();
        let new_epoch = self.random.next_u64() as u32;
        let shared = self.shared();
        shared.reads_sent += 1;
        let at = RoomAt {
            id: room,
            name: name.clone(),
            read: shared.reads_sent,
        };
        let (then, sweep_limit) = match whole {
            true => (Then::Load(at), NAMES_SWEPT_PER_PASS),
            false => (Then::CatchUp(at), 0),
        };
        self.effects.push(Effect::Redis(Command::History {
            room: name,
            first_seq,
            with_names: whole,
            sweep_limit,
            new_epoch,
            then,
        }));
    }

    /// Announcements heard while a read was on its way were set aside (the read was
    /// to bring them); if one went further than the read did, or requests still wait for
    /// a read sent after they came, read again from there.
    fn catch_up_if_behind(&mut self, room: u32) {
        let waiting = self.shared().holds(room);
        let last = self.rooms.room(room).last_seq();
        if waiting || self.copy(room).heard > last {
            self.catch_up(room);
        }
    }

    /// Reads what room `room`'s loaded copy missed, unless a read is on its way already.
    fn catch_up(&mut self, room: u32) {
        if self.copy(room).sync != Sync::Loaded || !self.redis_up() {
            return; // loading, or already catching up: that read includes what is missing
        }
        self.copy(room).sync = Sync::CatchingUp;
        stats::add(&self.stats.redis_catch_ups, 1);
        let first_seq = self.rooms.room(room).last_seq() + 1;
        self.read_history(room, first_seq, false);
    }

    fn on_reply(&mut self, now: Now, then: Then, answer: Result<Answer, String>) {
        match (then, answer) {
            (
                Then::Post {
                    conn,
                    wait,
                    classic,
                },
                answer,
            ) => {
                if !self.shared().end_wait(conn, wait) {
                    return; // answered 503 already (Redis was slow), or gone
                }
                let posted = match answer {
                    Ok(Answer::Posted(posted)) => posted,
                    Ok(_) | Err(_) => return self.redis_unavailable(conn, false),
                };
                self.learn_epoch(posted.epoch);
                let bytes = if classic {
                    answer::classic_posted()
                } else {
                    let id = Position {
                        epoch: posted.epoch,
                        seq: posted.seq,
                    };
                    self.replies.posted(id, posted.duplicate)
                };
                self.answer(conn, bytes, false);
            }
            (Then::Load(at) | Then::CatchUp(at), _) if !self.still_here(&at) => {}
            (Then::Load(at), Ok(Answer::Snapshot(snapshot))) => self.on_loaded(&at, snapshot),
            (Then::Load(RoomAt { id: room, .. }), _) => {
                self.copy(room).sync = Sync::Unloaded;
                let deferred = self.shared().deferred.remove(&room).unwrap_or_default();
                for waiting in deferred {
                    if self.shared().end_wait(waiting.asked.conn, waiting.wait) {
                        self.redis_unavailable(waiting.asked.conn, false);
                    }
                }
            }
            (Then::CatchUp(at), Ok(Answer::Snapshot(snapshot))) => {
                let room = at.id;
                self.copy(room).sync = Sync::Loaded;
                // A new epoch: every room reads again, and its waiters go on after that.
                if self.learn_epoch(snapshot.epoch) {
                    for message in &snapshot.messages {
                        self.take(now, room, message, true);
                    }
                    self.caught_up(room, at.read);
                    self.catch_up_if_behind(room);
                }
            }
            (Then::CatchUp(at), _) => {
                self.copy(at.id).sync = Sync::Loaded;
                for waiting in self.waiting_for_read(at.id, at.read) {
                    if self.shared().end_wait(waiting.asked.conn, waiting.wait) {
                        self.redis_unavailable(waiting.asked.conn, false);
                    }
                }
            }
            (Then::Presence, _) => {}
        }
    }

    /// Whether the room a read was for still has its id.
    fn still_here(&mut self, at: &RoomAt) -> bool {
        self.rooms.room(at.id).name == at.name
    }

    /// A room's copy is loaded: everything Redis has, then whatever was announced while
    /// the load was on its way, then the requests that waited for it.
    fn on_loaded(&mut self, at: &RoomAt, snapshot: Snapshot) {
        let room = at.id;
        self.learn_epoch(snapshot.epoch);
        let (epoch, limits) = (self.rooms.epoch, self.rooms.history);
        let copy = self.rooms.room(room);
        let first = snapshot
            .messages
            .first()
            .map_or(snapshot.seq, |m| m.seq - 1);
        copy.restart_after(first);
        for m in &snapshot.messages {
            copy.append(epoch, m.seq, &m.from, &m.text, m.time_ms, &limits);
        }
        let copy = self.copy(room);
        copy.everyone = snapshot.names.into_iter().collect();
        copy.sync = Sync::Loaded;
        if !copy.everyone.is_empty() {
            // Names present elsewhere: when their node stops renewing them (it died),
            // this node's sweep may be the one to announce that they left.
            self.schedule_presence_sweep();
        }
        let deferred = self.shared().deferred.remove(&room).unwrap_or_default();
        for waiting in deferred {
            let caught_up = waiting.after_read <= at.read;
            self.go_on(waiting, caught_up);
        }
        self.catch_up_if_behind(room);
    }

    /// A read of the room, numbered `read`, is back and its messages are in the copy: the
    /// requests that waited for it go on, and a position still ahead of the copy now is
    /// one Redis never issued.
    fn caught_up(&mut self, room: u32, read: u64) {
        for waiting in self.waiting_for_read(room, read) {
            self.go_on(waiting, true);
        }
    }

    /// Takes out the requests waiting in `room` for a read numbered `read` or earlier.
    fn waiting_for_read(&mut self, room: u32, read: u64) -> Vec<Deferred> {
        let shared = self.shared();
        let Some(waiting) = shared.deferred.remove(&room) else {
            return Vec::new();
        };
        let (due, later): (Vec<Deferred>, Vec<Deferred>) =
            waiting.into_iter().partition(|d| d.after_read <= read);
        if !later.is_empty() {
            shared.deferred.insert(room, later);
        }
        due
    }

    /// A request that waited for Redis goes in line to be handled again, now that its room
    /// is ready (`Chat::resume_next`).
    fn go_on(&mut self, waiting: Deferred, caught_up: bool) {
        self.shared().resuming.push_back((waiting, caught_up));
    }

    /// Handles again the first of the requests whose room became ready, in the order they
    /// came (one that was answered meanwhile, or whose connection is gone, is dropped
    /// instead); returns whether more are in line (the shell calls again, at most
    /// `REQUESTS_RESUMED_PER_PASS` times a pass). It costs what the request cost when
    /// first made: an answer from the copy, or a wait in the room's list.
    ///
    /// One request per call, because its effects must be carried out before the next
    /// request is handled, as for any input: a `Park` or `Stream` names a place in a
    /// room's list that holds only until the list changes. Handling a batch first let a
    /// stream of the batch leave (its client gone, its write failing) while a later one
    /// had joined but not started, so that one was moved without knowing where to.
    pub fn resume_next(&mut self, now: Now) -> bool {
        let Some(shared) = self.shared.as_mut() else {
            return false;
        };
        let Some((waiting, caught_up)) = shared.resuming.pop_front() else {
            return false;
        };
        let Deferred {
            asked,
            action,
            wait,
            ..
        } = waiting;
        if shared.end_wait(asked.conn, wait) {
            self.effects.push(Effect::CarryOn { to: asked.conn });
            let asked = Asked { caught_up, ..asked };
            self.handle(now, asked, action);
        } // else answered already (Redis was slow), or gone
        self.is_resuming()
    }

    /// Whether requests are in line to be handled again (`Chat::resume_next`).
    pub fn is_resuming(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| !s.resuming.is_empty())
    }

    /// Redis's epoch, learned or checked. A different one means Redis lost its data: every
    /// room starts again (clients waiting in it, and clients resuming with old positions,
    /// are told of the gap) and reads what Redis has now. Returns false in that case. That
    /// is O(rooms here) answers and commands in one go, once per loss of Redis's data,
    /// which is rare and must reach every waiting client before anything of the new epoch.
    fn learn_epoch(&mut self, epoch: u32) -> bool {
        if !self.shared().epoch_known {
            self.shared().epoch_known = true;
            self.rooms.epoch = epoch;
            return true;
        }
        if self.rooms.epoch == epoch {
            return true;
        }
        log::warn!(
            "Redis lost its data (epoch {:08x} is now {epoch:08x}): every room starts again",
            self.rooms.epoch
        );
        self.rooms.epoch = epoch;
        for room in self.rooms.room_ids() {
            self.rooms.room(room).restart_after(0);
            let copy = self.copy(room);
            copy.heard = 0;
            copy.everyone.clear();
            if copy.sync == Sync::CatchingUp {
                copy.sync = Sync::Loaded;
            }
            self.tell_of_gap(room);
            self.catch_up(room);
        }
        false
    }

    /// One stored message for a room's copy, announced (`read` false) or read from Redis
    /// (`read` true): the next one expected is kept and delivered; one already had is
    /// ignored. One further on means some are missing: an announcement makes the room read
    /// them (unless a read is on its way, which brings them); a read that skipped ahead
    /// means what lies between is gone from Redis too, so the copy starts again from this
    /// one, and clients resuming from before it are told of the gap.
    fn take(&mut self, now: Now, room: u32, message: &Stored, read: bool) {
        let (epoch, limits) = (self.rooms.epoch, self.rooms.history);
        let copy = self.rooms.room(room);
        let last = copy.last_seq();
        if message.seq <= last {
            return;
        }
        if message.seq > last + 1 {
            if read {
                copy.restart_after(message.seq - 1);
            } else {
                self.catch_up(room);
                return;
            }
        }
        let copy = self.rooms.room(room);
        copy.append(
            epoch,
            message.seq,
            &message.from,
            &message.text,
            message.time_ms,
            &limits,
        );
        self.deliver(now, room, message.seq, &message.text);
    }

    fn on_news(&mut self, now: Now, room: &str, news: News) {
        let Some(room) = self.rooms.find(room) else {
            return; // nobody here has asked for this room
        };
        if let News::Message { .. } = &news {
            self.rooms.used(room, now.ms); // a post anywhere is a use, for the room cap's order
        }
        let copy = self.copy(room);
        if let News::Message { message, .. } = &news {
            copy.heard = copy.heard.max(message.seq);
        }
        if !copy.is_ready() {
            return; // its load (or the catch-up after it) brings this
        }
        match news {
            News::Message { epoch, message } => {
                if self.learn_epoch(epoch) {
                    self.take(now, room, &message, false);
                }
            }
            News::Typing(from) => self.broadcast_events(room, &[Event::Typing { from }]),
            News::Joined(names) => {
                let copy = self.copy(room);
                let events: Vec<Event> = names
                    .into_iter()
                    .filter(|name| copy.everyone.insert(name.clone()))
                    .map(|name| Event::Join { name })
                    .collect();
                if !events.is_empty() {
                    self.broadcast_events(room, &events);
                    self.schedule_presence_sweep();
                }
            }
            News::Left(names) => {
                let copy = self.copy(room);
                let events: Vec<Event> = names
                    .into_iter()
                    .filter(|name| copy.everyone.remove(name))
                    .map(|name| Event::Leave { name })
                    .collect();
                if !events.is_empty() {
                    self.broadcast_events(room, &events);
                }
            }
        }
    }
}
