//! The loop's side of the Redis backplane (`--redis`): what the server does with each reply
//! and announcement, the requests that wait for Redis, and keeping each room's copy true to
//! Redis's. Without `--redis` none of this runs.
//!
//! - A post goes to Redis (one script stores, trims and announces it); the poster is
//!   answered once Redis confirms, and everyone — the poster's own node included — gets
//!   the message from the announcement, delivered exactly as a local post is.
//! - A read of a room (a poll, a stream, presence) is answered from the node's copy of the
//!   room; a room not copied yet is loaded first, and the request waits (`Awaiting`). So
//!   does one whose position is ahead of the copy (another node gave it out, and this one
//!   has not heard of it yet), while the copy reads what it missed: only a position still
//!   ahead after that read is one Redis never issued, and refused.
//! - A copy stays true by sequence numbers: an announcement that is not the next one
//!   expected, or Redis coming back after an outage, makes the room read what it missed.
//! - Redis down: posts are answered 503 at once, or after [`REPLY_WAIT`] without an answer;
//!   waiting polls and open streams stay; the node reconnects with backoff and catches up.

use super::fanout::NAMES_SWEPT_PER_PASS;
use super::timers::Due;
use super::Server;
use crate::answer;
use crate::backplane::news::{News, Snapshot, Stored};
use crate::backplane::{Answer, Incoming, Trim};
use crate::conn::{Deadline, Flags, State};
use crate::event::Event;
use crate::http::Status;
use crate::limits::Act;
use crate::outgoing::Response;
use crate::position::Position;
use crate::room::Sync;
use crate::routes::Action;
use crate::stats;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Frames from Redis handled per pass; the rest wait for the next pass (which comes at
/// once), so a burst of announcements cannot hold the loop.
const FRAMES_PER_PASS: usize = 1024;

/// How long a request waits for Redis before it is told to come back: "posts answer 503
/// within a second, never hang until Redis returns".
pub(super) const REPLY_WAIT: Duration = Duration::from_secs(1);

/// Redis that has not answered anything for this long is taken for gone: the connections
/// are dropped and made again.
const STALL: Duration = Duration::from_secs(3);

/// First and longest wait between attempts to reach Redis again.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MOST: Duration = Duration::from_secs(2);

/// What a command's reply is for.
#[derive(Debug)]
pub enum Then {
    /// A post by the connection at `key`: answer it.
    Post {
        /// Slab key.
        key: usize,
        /// Its generation when it posted.
        generation: u32,
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
/// a new one: `Chat::room_id`). A reply for a room no longer here is dropped.
#[derive(Debug)]
pub struct RoomAt {
    id: u32,
    name: Box<str>,
    /// Its number among the reads sent (`Server::reads_sent`).
    read: u64,
}

/// A request that waits for its room's copy to be loaded, or to catch up.
pub struct Deferred {
    key: usize,
    generation: u32,
    action: Action,
    close: bool,
    /// The number the first read of its room sent after it came has (or will have): that
    /// read holds everything Redis issued before, so once it is back, a position still
    /// ahead of the copy was never issued. A catch-up waiter goes on when that read is
    /// back; every load waiter goes on with the load, and asks again if the load was
    /// older than it.
    after_read: u64,
}

impl Server {
    /// Whether rooms are shared through Redis.
    pub(super) fn shared(&self) -> bool {
        self.backplane.is_some()
    }

    /// Step 2 for one of the two Redis connections.
    pub(super) fn on_backplane_event(&mut self, token: mio::Token) {
        let Some(backplane) = self.backplane.as_mut() else {
            return;
        };
        let mut incoming = std::mem::take(&mut self.incoming);
        self.backplane_more |= backplane.on_event(token, &mut incoming, FRAMES_PER_PASS);
        self.take_incoming(&mut incoming);
        self.incoming = incoming;
    }

    /// Step 3: frames read in an earlier pass and not handled yet.
    pub(super) fn serve_backplane(&mut self) {
        if !std::mem::take(&mut self.backplane_more) {
            return;
        }
        let Some(backplane) = self.backplane.as_mut() else {
            return;
        };
        let mut incoming = std::mem::take(&mut self.incoming);
        let mut more = backplane.drain(true, &mut incoming, FRAMES_PER_PASS);
        more |= backplane.drain(false, &mut incoming, FRAMES_PER_PASS);
        self.backplane_more = more;
        self.take_incoming(&mut incoming);
        self.incoming = incoming;
    }

    fn take_incoming(&mut self, incoming: &mut Vec<Incoming<Then>>) {
        for item in incoming.drain(..) {
            match item {
                Incoming::Up => self.on_redis_up(),
                Incoming::Down(why) => self.on_redis_down(why),
                Incoming::Reply(then, answer) => self.on_reply(then, answer),
                Incoming::News { room, news } => self.on_news(&room, news),
            }
        }
        if let Some(backplane) = &self.backplane {
            stats::set(&self.stats.redis_in_flight, backplane.in_flight() as u64);
        }
    }

    // ----- the connections ----------------------------------------------------------------

    /// Connects, or schedules the next attempt.
    pub(super) fn connect_redis(&mut self) {
        let Some(backplane) = self.backplane.as_mut() else {
            return;
        };
        match backplane.connect(self.poll.registry()) {
            Ok(()) => {
                self.redis_starting = Some(Instant::now());
                self.arm_redis_watchdog(STALL);
            }
            Err(why) => {
                let mut incoming = Vec::new();
                backplane.disconnect(why, &mut incoming);
                self.take_incoming(&mut incoming);
            }
        }
    }

    /// Checks on Redis: reconnects when it is down, and drops connections that have
    /// stopped answering.
    pub(super) fn on_redis_watchdog(&mut self) {
        self.redis_watchdog = false;
        let Some(backplane) = self.backplane.as_mut() else {
            return;
        };
        let stalled = if backplane.is_up() {
            backplane.oldest().map(|sent| sent.elapsed() >= STALL)
        } else if backplane.is_starting() {
            self.redis_starting.map(|began| began.elapsed() >= STALL)
        } else {
            self.connect_redis();
            return;
        };
        match stalled {
            Some(true) => {
                let why = format!("Redis at {} stopped answering", backplane.shown());
                let mut incoming = Vec::new();
                backplane.disconnect(why, &mut incoming);
                self.take_incoming(&mut incoming);
            }
            Some(false) => self.arm_redis_watchdog(Duration::from_secs(1)),
            None => {}
        }
    }

    fn arm_redis_watchdog(&mut self, after: Duration) {
        if !self.redis_watchdog {
            self.redis_watchdog = true;
            self.schedule(Due::RedisWatchdog, after);
        }
    }

    fn on_redis_up(&mut self) {
        let Some(backplane) = &self.backplane else {
            return;
        };
        match self.redis_outage.take() {
            Some(since) if self.redis_was_up => {
                log::info!(
                    "Redis at {} is back after {:.1} s; catching up every room served here",
                    backplane.shown(),
                    since.elapsed().as_secs_f64()
                );
                stats::add(&self.stats.redis_reconnects, 1);
            }
            _ => log::info!("Redis at {} connected", backplane.shown()),
        }
        self.redis_was_up = true;
        self.redis_attempts = 0;
        self.redis_starting = None;
        stats::set(&self.stats.redis_connected, 1);
        let lobby = self.chat.lobby();
        for room in self.chat.room_ids() {
            let sync = self.chat.room(room).sync;
            match sync {
                Sync::Loaded | Sync::CatchingUp => {
                    self.chat.room(room).sync = Sync::Loaded;
                    self.catch_up(room);
                }
                Sync::Unloaded if room == lobby || self.deferred.contains_key(&room) => {
                    self.load(room)
                }
                _ => {}
            }
        }
        self.schedule_presence_sweep();
    }

    fn on_redis_down(&mut self, why: String) {
        if self.redis_attempts == 0 {
            // Once per outage, not once per attempt.
            log::warn!("{why}; posts are answered 503 until Redis is back");
        }
        self.redis_attempts += 1;
        self.redis_outage.get_or_insert_with(Instant::now);
        self.redis_starting = None;
        stats::set(&self.stats.redis_connected, 0);
        for room in self.chat.room_ids() {
            let room = self.chat.room(room);
            room.sync = match room.sync {
                Sync::Loading => Sync::Unloaded,
                Sync::CatchingUp => Sync::Loaded,
                other => other,
            };
        }
        // Requests that waited for a room to load: it will not, now.
        let deferred: Vec<Deferred> = self.deferred.drain().flat_map(|(_, d)| d).collect();
        for waiting in deferred {
            if self.is_awaiting(waiting.key, waiting.generation) {
                self.redis_unavailable(waiting.key);
            }
        }
        let shift = self.redis_attempts.min(8) - 1;
        let wait = (RETRY_FIRST * (1 << shift)).min(RETRY_MOST);
        self.redis_watchdog = false; // a pending check is moot; this one retries
        self.arm_redis_watchdog(wait);
    }

    // ----- requests that go to Redis ------------------------------------------------------

    fn is_awaiting(&self, key: usize, generation: u32) -> bool {
        self.conns
            .get(key)
            .is_some_and(|c| c.generation == generation && c.state() == State::Awaiting)
    }

    /// [`Server::redis_unavailable`] for a request that asked to close afterwards.
    pub(super) fn respond_unavailable(&mut self, key: usize, close: bool) {
        self.conns[key]
            .flags
            .set(crate::conn::Flags::CLOSE_AFTER_WRITE, close);
        self.redis_unavailable(key);
    }

    /// `503` with `Retry-After: 1`: Redis cannot be reached just now. A client that retries
    /// a post with the same `client_id` is never stored twice.
    pub(super) fn redis_unavailable(&mut self, key: usize) {
        let cors = answer::cors(self.config.cors_origin.as_deref());
        let mut headers = cors;
        headers.push(("Retry-After", "1"));
        let message = "the message store (Redis) cannot be reached just now; try again";
        let bytes = answer::error(Status::SERVICE_UNAVAILABLE, &headers, message, false);
        self.respond(key, Response::Owned(bytes), false);
    }

    /// With `--redis`, a read of a room waits until the room's copy is loaded, and, if it
    /// names a position ahead of the copy, until the copy has read Redis past it. Returns
    /// the action when it can go ahead now; otherwise the request waits (or was answered).
    pub(super) fn when_room_ready(
        &mut self,
        key: usize,
        action: Action,
        close: bool,
    ) -> Option<Action> {
        let Some(name) = action.room_to_read() else {
            return Some(action); // a post or typing goes straight to Redis
        };
        let room = match self.room_named(key, name) {
            Ok(room) => room,
            Err(_) => return Some(action), // the handler answers the room cap
        };
        let ready = self.chat.room(room).is_ready();
        let ahead = ready && self.ahead_of_copy(key, room, &action);
        if ready && !ahead {
            return Some(action);
        }
        if !self.backplane.as_ref().is_some_and(|b| b.is_up()) {
            self.respond_unavailable(key, close);
            return None;
        }
        if ahead && !self.may_read_for(key, close) {
            return None;
        }
        let conn = &mut self.conns[key];
        let generation = conn.generation;
        conn.await_backplane(close);
        self.set_timer(key, Deadline::Backplane);
        self.deferred.entry(room).or_default().push(Deferred {
            key,
            generation,
            action,
            close,
            after_read: self.reads_sent + 1,
        });
        match self.chat.room(room).sync {
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
    fn may_read_for(&mut self, key: usize, close: bool) -> bool {
        let address = self.clients.address(self.conns[key].client);
        let now = self.now_ms();
        match self.limiter.allow(Act::Post, address, ("", false), now) {
            Ok(()) => {
                self.schedule_limiter_sweep();
                true
            }
            Err(refused) => {
                let message = "since: this position is ahead of what this node has seen, and \
                               your address has had Redis read for such positions as often as \
                               --post-rate allows; try again after Retry-After";
                self.too_many(key, refused, message, close);
                false
            }
        }
    }

    /// Whether the request names a position of the current epoch beyond the newest
    /// message of the room's copy: another node gave it out, and this one has not heard of
    /// it yet. Once the copy has read Redis for it (`Flags::CAUGHT_UP`), no longer: a
    /// position still ahead then is one Redis never issued, and the handler refuses it.
    fn ahead_of_copy(&mut self, key: usize, room: u32, action: &Action) -> bool {
        let caught_up = self.conns[key].flags.has(Flags::CAUGHT_UP);
        let epoch = self.chat.epoch;
        let last = self.chat.room(room).last_seq();
        action
            .since()
            .is_some_and(|p| !caught_up && p.epoch == epoch && p.seq > last)
    }

    /// A post, stored and announced by Redis; the poster is answered when Redis confirms.
    pub(super) fn post_through_redis(
        &mut self,
        key: usize,
        room: u32,
        message: (&str, &str, Option<&str>),
        classic: bool,
        close: bool,
    ) {
        let (from, text, client_id) = message;
        let then = Then::Post {
            key,
            generation: self.conns[key].generation,
            classic,
        };
        let trim = Trim {
            messages: self.config.history_messages,
            bytes: self.config.history_bytes,
        };
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let candidate = self.random.next_u64() as u32;
        let name = self.chat.room(room).name.clone();
        let Some(backplane) = self.backplane.as_mut() else {
            return;
        };
        match backplane.post(&name, from, text, time_ms, client_id, trim, candidate, then) {
            Ok(()) => {
                self.chat.room(room).posted_here = true;
                self.conns[key].await_backplane(close);
                self.set_timer(key, Deadline::Backplane);
                self.arm_redis_watchdog(Duration::from_secs(1));
            }
            Err(_) => self.respond_unavailable(key, close),
        }
    }

    /// A typing event, announced through Redis; false when Redis is down.
    pub(super) fn typing_through_redis(&mut self, room: u32, from: &str) -> bool {
        let name = self.chat.room(room).name.clone();
        self.backplane
            .as_mut()
            .is_some_and(|backplane| backplane.typing(&name, from))
    }

    /// A name that just became present here: tell every node (it announces the join
    /// if the name was not present anywhere).
    pub(super) fn announce_name(&mut self, room: u32, name: &str) {
        let window = self.presence_window_ms();
        let room_name = self.chat.room(room).name.clone();
        if let Some(backplane) = self.backplane.as_mut() {
            // Down: the renewal after reconnecting announces it.
            let _ = backplane.presence(&room_name, &[(name, window)], Then::Presence);
        }
    }

    /// The presence sweep's part with Redis: renew every name held here (so it stays while
    /// this node lives) and announce the names whose time is up everywhere.
    pub(super) fn sweep_shared_presence(&mut self) -> bool {
        let Some(backplane) = self.backplane.as_mut() else {
            return false;
        };
        if !backplane.is_up() {
            return true;
        }
        let (now, window) = (
            self.started.elapsed().as_millis() as u64,
            (self.config.poll_timeout + self.config.presence_grace).as_millis() as u64,
        );
        let mut still_named = false;
        for room in self.chat.room_ids() {
            let room = self.chat.room(room);
            if !room.is_ready() {
                continue;
            }
            let held = room.names.held(now, window);
            if !held.is_empty() {
                let _ = backplane.presence(&room.name, &held, Then::Presence);
            }
            if !room.everyone.is_empty() {
                let _ = backplane.sweep(&room.name, NAMES_SWEPT_PER_PASS, Then::Presence);
            }
            still_named |= !held.is_empty() || !room.everyone.is_empty();
        }
        still_named
    }

    // ----- keeping the copies true --------------------------------------------------------

    fn load(&mut self, room: u32) {
        let candidate = self.random.next_u64() as u32;
        let name = self.chat.room(room).name.clone();
        let Some(backplane) = self.backplane.as_mut() else {
            return;
        };
        self.reads_sent += 1;
        let then = Then::Load(RoomAt {
            id: room,
            name: name.clone(),
            read: self.reads_sent,
        });
        match backplane.history(&name, 1, true, NAMES_SWEPT_PER_PASS, candidate, then) {
            Ok(()) => {
                self.chat.room(room).sync = Sync::Loading;
                self.arm_redis_watchdog(Duration::from_secs(1));
            }
            Err(_) => self.chat.room(room).sync = Sync::Unloaded,
        }
    }

    /// Announcements heard while a read was on its way were set aside (the read was
    /// to bring them); if one went further than the read did, or requests still wait for
    /// a read sent after they came, read again from there.
    fn catch_up_if_behind(&mut self, room: u32) {
        let waiting = self.deferred.contains_key(&room);
        let copy = self.chat.room(room);
        if waiting || copy.heard > copy.last_seq() {
            self.catch_up(room);
        }
    }

    fn catch_up(&mut self, room: u32) {
        if self.chat.room(room).sync != Sync::Loaded {
            return; // loading, or already catching up: that read includes what is missing
        }
        let candidate = self.random.next_u64() as u32;
        let (name, first) = {
            let room = self.chat.room(room);
            (room.name.clone(), room.last_seq() + 1)
        };
        let Some(backplane) = self.backplane.as_mut() else {
            return;
        };
        let then = Then::CatchUp(RoomAt {
            id: room,
            name: name.clone(),
            read: self.reads_sent + 1,
        });
        if backplane
            .history(&name, first, false, 0, candidate, then)
            .is_ok()
        {
            self.reads_sent += 1;
            self.chat.room(room).sync = Sync::CatchingUp;
            stats::add(&self.stats.redis_catch_ups, 1);
            self.arm_redis_watchdog(Duration::from_secs(1));
        }
    }

    fn on_reply(&mut self, then: Then, answer: Result<Answer, String>) {
        match (then, answer) {
            (
                Then::Post {
                    key,
                    generation,
                    classic,
                },
                answer,
            ) => {
                if !self.is_awaiting(key, generation) {
                    return; // answered 503 already (Redis was slow), or gone
                }
                let posted = match answer {
                    Ok(Answer::Posted(posted)) => posted,
                    Ok(_) | Err(_) => return self.redis_unavailable(key),
                };
                self.learn_epoch(posted.epoch);
                let bytes = if classic {
                    answer::classic_posted()
                } else {
                    let id = Position {
                        epoch: posted.epoch,
                        seq: posted.seq,
                    };
                    let cors = answer::cors(self.config.cors_origin.as_deref());
                    answer::posted(&cors, id, posted.duplicate)
                };
                self.respond(key, Response::Owned(bytes), false);
            }
            (Then::Load(at) | Then::CatchUp(at), _) if !self.still_here(&at) => {}
            (Then::Load(at), Ok(Answer::Snapshot(snapshot))) => self.on_loaded(&at, snapshot),
            (Then::Load(RoomAt { id: room, .. }), _) => {
                self.chat.room(room).sync = Sync::Unloaded;
                let deferred = self.deferred.remove(&room).unwrap_or_default();
                for waiting in deferred {
                    if self.is_awaiting(waiting.key, waiting.generation) {
                        self.redis_unavailable(waiting.key);
                    }
                }
            }
            (Then::CatchUp(at), Ok(Answer::Snapshot(snapshot))) => {
                let room = at.id;
                self.chat.room(room).sync = Sync::Loaded;
                // A new epoch: every room reads again, and its waiters go on after that.
                if self.learn_epoch(snapshot.epoch) {
                    for message in &snapshot.messages {
                        self.take(room, message, true);
                    }
                    self.caught_up(room, at.read);
                    self.catch_up_if_behind(room);
                }
            }
            (Then::CatchUp(at), _) => {
                self.chat.room(at.id).sync = Sync::Loaded;
                for waiting in self.waiting_for_read(at.id, at.read) {
                    if self.is_awaiting(waiting.key, waiting.generation) {
                        self.redis_unavailable(waiting.key);
                    }
                }
            }
            (Then::Presence, _) => {}
        }
    }

    /// Whether the room a read was for still has its id.
    fn still_here(&mut self, at: &RoomAt) -> bool {
        self.chat.room(at.id).name == at.name
    }

    /// A room's copy is loaded: everything Redis has, then whatever was announced while
    /// the load was on its way, then the requests that waited for it.
    fn on_loaded(&mut self, at: &RoomAt, snapshot: Snapshot) {
        let room = at.id;
        self.learn_epoch(snapshot.epoch);
        let (epoch, limits) = (self.chat.epoch, self.chat.history);
        let copy = self.chat.room(room);
        let first = snapshot
            .messages
            .first()
            .map_or(snapshot.seq, |m| m.seq - 1);
        copy.restart_after(first);
        for m in &snapshot.messages {
            copy.append(epoch, m.seq, &m.from, &m.text, m.time_ms, &limits);
        }
        copy.everyone = snapshot.names.into_iter().collect();
        copy.sync = Sync::Loaded;
        if !copy.everyone.is_empty() {
            // Names present elsewhere: when their node stops renewing them (it died),
            // this node's sweep may be the one to announce that they left.
            self.schedule_presence_sweep();
        }
        let deferred = self.deferred.remove(&room).unwrap_or_default();
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
        let Some(waiting) = self.deferred.remove(&room) else {
            return Vec::new();
        };
        let (due, later): (Vec<Deferred>, Vec<Deferred>) =
            waiting.into_iter().partition(|d| d.after_read <= read);
        if !later.is_empty() {
            self.deferred.insert(room, later);
        }
        due
    }

    /// A request that waited for Redis is handled again, now that its room is ready.
    fn go_on(&mut self, waiting: Deferred, caught_up: bool) {
        let Deferred {
            key,
            generation,
            action,
            close,
            ..
        } = waiting;
        if !self.is_awaiting(key, generation) {
            return; // answered already (Redis was slow), or gone
        }
        self.conns[key].carry_on();
        self.clear_timer(key);
        self.conns[key].flags.set(Flags::CAUGHT_UP, caught_up);
        self.apply(key, action, close);
        self.conns[key].flags.set(Flags::CAUGHT_UP, false);
        self.after_carrying_on(key);
    }

    /// Redis's epoch, learned or checked. A different one means Redis lost its data: every
    /// room starts again (clients waiting in it, and clients resuming with old positions,
    /// are told of the gap) and reads what Redis has now. Returns false in that case.
    fn learn_epoch(&mut self, epoch: u32) -> bool {
        if !self.epoch_known {
            self.epoch_known = true;
            self.chat.epoch = epoch;
            return true;
        }
        if self.chat.epoch == epoch {
            return true;
        }
        log::warn!(
            "Redis lost its data (epoch {:08x} is now {epoch:08x}): every room starts again",
            self.chat.epoch
        );
        self.chat.epoch = epoch;
        for room in self.chat.room_ids() {
            let copy = self.chat.room(room);
            copy.restart_after(0);
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
    fn take(&mut self, room: u32, message: &Stored, read: bool) {
        let (epoch, limits) = (self.chat.epoch, self.chat.history);
        let copy = self.chat.room(room);
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
        let copy = self.chat.room(room);
        copy.append(
            epoch,
            message.seq,
            &message.from,
            &message.text,
            message.time_ms,
            &limits,
        );
        self.deliver(room, message.seq, &message.text);
    }

    fn on_news(&mut self, room: &str, news: News) {
        let Some(room) = self.chat.find(room) else {
            return; // nobody here has asked for this room
        };
        if let News::Message { .. } = &news {
            let now = self.now_ms();
            self.chat.used(room, now); // a post anywhere is a use, for the room cap's order
        }
        let copy = self.chat.room(room);
        if let News::Message { message, .. } = &news {
            copy.heard = copy.heard.max(message.seq);
        }
        if !copy.is_ready() {
            return; // its load (or the catch-up after it) brings this
        }
        match news {
            News::Message { epoch, message } => {
                if self.learn_epoch(epoch) {
                    self.take(room, &message, false);
                }
            }
            News::Typing(from) => self.broadcast_events(room, &[Event::Typing { from }]),
            News::Joined(names) => {
                let copy = self.chat.room(room);
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
                let copy = self.chat.room(room);
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
