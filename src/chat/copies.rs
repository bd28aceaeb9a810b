//! With `--redis`: keeping each room's copy true to Redis's. A room is loaded when a request
//! first needs it, and read again from where it stands when an announcement comes out of
//! order or Redis comes back; a new epoch (Redis lost its data) starts every room again.
//! Requests that waited for a copy are released one at a time (`Chat::resume_next`).
//! What waits, and the requests' side of Redis, are in `shared.rs`.

use super::asked::Asked;
use super::effect::{Effect, Now};
use super::fanout::NAMES_SWEPT_PER_PASS;
use super::pending::{Command, Deferred, RoomAt, Sync, Then};
use super::state::Chat;
use crate::answer;
use crate::backplane::news::{News, Snapshot, Stored};
use crate::backplane::Answer;
use crate::event::Event;
use crate::position::Position;
use crate::stats;

impl Chat {
    /// Reads room `room`'s copy from Redis whole, names present included.
    pub(super) fn load(&mut self, room: u32) {
        let copy = self.copy(room);
        copy.sync = Sync::Loading;
        copy.while_loading = Default::default(); // what an earlier, failed load heard
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
        let command = Command::History {
            room: name,
            first_seq,
            with_names: whole,
            sweep_limit,
            new_epoch,
            then,
        };
        self.send_to_shard(room, command);
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
    pub(super) fn catch_up(&mut self, room: u32) {
        if self.copy(room).sync != Sync::Loaded || !self.shard_up(room) {
            return; // loading, or already catching up: that read includes what is missing
        }
        self.copy(room).sync = Sync::CatchingUp;
        stats::add(&self.stats.redis_catch_ups, 1);
        let first_seq = self.rooms.room(room).last_seq() + 1;
        self.read_history(room, first_seq, false);
    }

    /// A reply from shard `shard`.
    pub(super) fn on_reply(
        &mut self,
        now: Now,
        shard: usize,
        then: Then,
        answer: Result<Answer, String>,
    ) {
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
                self.learn_epoch(shard, posted.epoch);
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
            (Then::Load(at), Ok(Answer::Snapshot(snapshot))) => {
                self.on_loaded(&at, shard, snapshot)
            }
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
                if self.learn_epoch(shard, snapshot.epoch) {
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
    fn on_loaded(&mut self, at: &RoomAt, shard: usize, snapshot: Snapshot) {
        let room = at.id;
        self.learn_epoch(shard, snapshot.epoch);
        let (epoch, limits) = (self.epoch(room), self.rooms.history);
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
        let (joined, left) = std::mem::take(&mut copy.while_loading);
        copy.everyone.extend(joined);
        copy.everyone.retain(|name| !left.contains(name));
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

    /// Shard `shard`'s epoch, learned or checked. A different one means that Redis lost
    /// its data: every room of the shard starts again (clients waiting in it, and clients
    /// resuming with old positions, are told of the gap) and reads what Redis has now.
    /// Returns false in that case. That is O(rooms here) answers and commands in one go,
    /// once per loss of a shard's data, which is rare and must reach every waiting client
    /// before anything of the new epoch.
    fn learn_epoch(&mut self, shard: usize, epoch: u32) -> bool {
        let known = &mut self.shared().shards[shard].epoch;
        let Some(before) = known.replace(epoch) else {
            return true;
        };
        if before == epoch {
            return true;
        }
        let shown = match self.config.redis.get(shard) {
            Some(url) if self.config.redis.len() > 1 => format!(" ({})", url.shown),
            _ => String::new(),
        };
        log::warn!(
            "Redis{shown} lost its data (epoch {before:08x} is now {epoch:08x}): every room \
             on it starts again"
        );
        for room in self.rooms_on(shard) {
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
        let (epoch, limits) = (self.epoch(room), self.rooms.history);
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

    /// An announcement on shard `shard`'s subscription.
    pub(super) fn on_news(&mut self, now: Now, shard: usize, room: &str, news: News) {
        let Some(room) = self.rooms.find(room) else {
            return; // nobody here has asked for this room
        };
        if self.shared().shard_of(room) != shard {
            // Another node put this room on another shard: its `--redis` list differs
            // from ours, which the shard marker refuses; never mix the two rooms.
            return;
        }
        if let News::Message { .. } = &news {
            self.rooms.used(room, now.ms); // a post anywhere is a use, for the room cap's order
        }
        let copy = self.copy(room);
        if let News::Message { message, .. } = &news {
            copy.heard = copy.heard.max(message.seq);
        }
        if copy.sync == Sync::Loading {
            // The load may have been read before this was announced: keep who came and
            // went, to apply over what the load brings (`Chat::on_loaded`).
            let (joined, left) = &mut copy.while_loading;
            match &news {
                News::Joined(names) => names.iter().for_each(|name| {
                    left.remove(name);
                    joined.insert(name.clone());
                }),
                News::Left(names) => names.iter().for_each(|name| {
                    joined.remove(name);
                    left.insert(name.clone());
                }),
                _ => {}
            }
        }
        if !copy.is_ready() {
            return; // its load (or the catch-up after it) brings this
        }
        match news {
            News::Message { epoch, message } => {
                if self.learn_epoch(shard, epoch) {
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
