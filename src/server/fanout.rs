//! Fan-out: the clients waiting in rooms (parked polls and open streams), and everything
//! that reaches them. A post is stored, then answered to every waiter of each kind with one
//! encoding built once for all of them, one `write` each: no `epoll_ctl` (every socket is
//! registered for both directions once), no allocation or copy per client. Events (typing,
//! join, leave) go the same way; the presence sweep is here too, since what it does is
//! tell rooms who left.

use super::timers::Due;
use super::Server;
use crate::answer;
use crate::conn::{Deadline, Membership, State};
use crate::event::Event;
use crate::outgoing::{Outgoing, Response};
use crate::room::Posted;
use crate::sse;
use crate::stats;
use crate::waitlist::{ListKind, Waiter};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes of frames that may queue behind a stream's socket before the stream is dropped as
/// too slow: a reader this far behind would only fall further behind.
const STREAM_BACKLOG_BYTES: usize = 256 * 1024;

/// Who holds an event stream: kept only for streams opened with a name or a token.
pub(super) struct StreamHolder {
    /// The name the stream made present (`?name=`, or the token's `sub`).
    pub name: Option<String>,
    /// When the token it was opened with runs out, in the loop's milliseconds.
    pub expires_ms: Option<u64>,
}

/// How often presence is swept for names whose window has passed.
const PRESENCE_SWEEP: Duration = Duration::from_secs(1);

/// Names one presence sweep may take (and announce as leave events) per pass; the rest
/// go in the next sweep, one tick later.
pub const NAMES_SWEPT_PER_PASS: usize = 256;

impl Server {
    /// Holds the connection as a pending poll in `room` until a message, an event or its
    /// timeout; or, while the server shuts down, tells it to come back later.
    pub(super) fn park(&mut self, key: usize, room: u32, list: ListKind, close: bool) {
        if self.told_to_come_back(key) {
            return;
        }
        let membership = self.join(key, room, list);
        self.conns[key].park(membership, close);
        self.set_timer(key, Deadline::Poll);
        stats::add(&self.stats.pending_polls, 1);
    }

    /// Adds the connection to one of a room's lists.
    pub(super) fn join(&mut self, key: usize, room: u32, list: ListKind) -> Membership {
        let waiter = Waiter {
            key: key as u32,
            generation: self.conns[key].generation,
        };
        let index = self.chat.list(room, list).join(waiter);
        Membership { room, list, index }
    }

    /// Takes a parked poll or a stream out of its room's list (answered, timed out, gone).
    pub(super) fn unpark(&mut self, key: usize) {
        let membership = match self.conns[key].state() {
            State::Parked(m) => {
                stats::sub(&self.stats.pending_polls, 1);
                m
            }
            State::Streaming(m) => {
                stats::sub(&self.stats.streams, 1);
                let holder = self.stream_holders.remove(&key);
                if let Some(name) = holder.and_then(|holder| holder.name) {
                    let (now, window) = (self.now_ms(), self.presence_window_ms());
                    let names = &mut self.chat.room(m.room).names;
                    names.stream_closed(&name, now, window);
                    self.schedule_presence_sweep();
                }
                m
            }
            _ => return,
        };
        let list = self.chat.list(membership.room, membership.list);
        debug_assert_eq!(list.at(membership.index).map(|w| w.key as usize), Some(key));
        if let Some(moved) = list.leave(membership.index) {
            // The last waiter now sits where this one was; tell its connection.
            self.conns[moved.key as usize].moved_in_list(membership.index);
        }
    }

    /// Stores a message and delivers it to everyone waiting in the room, each kind of
    /// waiter getting its own encoding, built once: classic polls `{"ok":text}`, JSON polls
    /// the message with its position, streams its stored SSE frame itself.
    pub(super) fn post(
        &mut self,
        room: u32,
        from: &str,
        text: &str,
        client_id: Option<&str>,
    ) -> Posted {
        let epoch = self.chat.epoch;
        let history = self.chat.history;
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let posted = self
            .chat
            .room(room)
            .post(epoch, from, text, client_id, time_ms, &history);
        if let Posted::New(seq) = posted {
            self.deliver(room, seq, text);
        }
        posted
    }

    /// Delivers stored message `seq` (the room's newest) to everyone waiting in the room:
    /// a local post, or, with `--redis`, one Redis announced.
    pub(super) fn deliver(&mut self, room: u32, seq: u64, text: &str) {
        let started = Instant::now();
        let epoch = self.chat.epoch;
        stats::add(&self.stats.messages, 1);
        let mut delivered = 0;
        if !self.chat.room(room).classic.is_empty() {
            let response = answer::classic_message(text);
            delivered += self.answer_parked(room, ListKind::Classic, &response);
        }
        if !self.chat.room(room).polls.is_empty() {
            let r = self.chat.room(room);
            let (messages, head) = (r.messages_after(seq - 1), r.head(epoch));
            let cors = answer::cors(self.config.cors_origin.as_deref());
            let response: Rc<[u8]> = answer::poll_answer(&cors, messages, head, &[]).into();
            delivered += self.answer_parked(room, ListKind::Poll, &response);
        }
        if !self.chat.room(room).streams.is_empty() {
            let frame = self.chat.room(room).sse_message(seq);
            delivered += self.send_to_streams(room, &frame, true);
        }
        stats::add(&self.stats.deliveries, delivered);
        self.turn_deliveries += delivered;
        let (took, at_ms) = (started.elapsed(), self.now_ms());
        let name = &self.chat.room(room).name;
        self.metrics.broadcast_done(name, delivered, took, at_ms);
        log::debug!(
            "message {seq} in {} delivered to {delivered}",
            self.chat.room(room).name
        );
    }

    /// Ephemeral events to everyone waiting in the room (not classic polls, which only
    /// know messages), in one answer or one frame each however many events there are. JSON
    /// polls are answered with them and come back; streams get them as one write.
    pub(super) fn broadcast_events(&mut self, room: u32, events: &[Event]) {
        let epoch = self.chat.epoch;
        let mut delivered = 0;
        if !self.chat.room(room).polls.is_empty() {
            let head = self.chat.room(room).head(epoch);
            let cors = answer::cors(self.config.cors_origin.as_deref());
            let response: Rc<[u8]> =
                answer::poll_answer(&cors, std::iter::empty(), head, events).into();
            delivered += self.answer_parked(room, ListKind::Poll, &response);
        }
        if !self.chat.room(room).streams.is_empty() {
            let frame: Rc<[u8]> = sse::event_frames(events).into_bytes().into();
            delivered += self.send_to_streams(room, &frame, false);
        }
        self.turn_deliveries += delivered;
    }

    /// The store started a new epoch (with `--redis`, Redis lost its data) and the room's
    /// copy starts again: everyone waiting in it is told of the gap now, as a fresh request
    /// from their old position would be, before anything of the new epoch reaches them.
    /// Parked JSON polls are answered `gap: true` with the new head; streams get a `gap`
    /// event, and one still replaying the old history replays the new one from its start.
    /// Classic polls carry no position, so there is nothing to tell them.
    pub(super) fn tell_of_gap(&mut self, room: u32) {
        let epoch = self.chat.epoch;
        let head = self.chat.room(room).head(epoch);
        let mut told = 0;
        if !self.chat.room(room).polls.is_empty() {
            let cors = answer::cors(self.config.cors_origin.as_deref());
            let response: Rc<[u8]> = answer::poll_gap_answer(&cors, head).into();
            told += self.answer_parked(room, ListKind::Poll, &response);
        }
        if !self.chat.room(room).streams.is_empty() {
            let frame: Rc<[u8]> = sse::gap_frame(head).into_bytes().into();
            told += self.send_to_streams(room, &frame, false);
            for waiter in self.chat.room(room).streams.iter() {
                let conn = self.conns.get_mut(waiter.key as usize);
                let conn = conn.filter(|conn| conn.generation == waiter.generation);
                if let Some(output) = conn.and_then(|conn| conn.output.as_mut()) {
                    output.restart_replay();
                }
            }
        }
        self.turn_deliveries += told;
    }

    /// Answers every poll parked in `room`'s `list` with `response`: encoded once, shared
    /// by all of them, one `write` each.
    ///
    /// O(waiting clients), which is the point: every one of them must be written to. A
    /// socket whose buffer is full keeps its unwritten tail and waits for WRITABLE; it never
    /// holds up the ones after it.
    fn answer_parked(&mut self, room: u32, list: ListKind, response: &Rc<[u8]>) -> u64 {
        // The whole list at once: nobody is left in it, so nobody's index needs fixing.
        let waiters = self.chat.list(room, list).take();
        let mut answered = 0;
        for waiter in &waiters {
            let key = waiter.key as usize;
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            // Leaving the list always updates it, so a mismatch would be a bug; skip the
            // entry rather than write to a stranger.
            if conn.generation != waiter.generation || !matches!(conn.state(), State::Parked(_)) {
                debug_assert!(false, "stale waiter {waiter:?}");
                continue;
            }
            stats::sub(&self.stats.pending_polls, 1);
            self.respond(key, Response::Shared(Rc::clone(response)), false);
            answered += 1;
        }
        self.chat.list(room, list).recycle(waiters);
        answered
    }

    /// Writes one frame to every stream in the room (each keeps its own queue only if its
    /// socket is full). `message`: the frame is a stored message, which a stream still
    /// replaying history will reach there, in order. Returns how many streams got it.
    fn send_to_streams(&mut self, room: u32, frame: &Rc<[u8]>, message: bool) -> u64 {
        // Streams stay in the list while being written to, so walk a copy of the keys: a
        // stream dropped as too slow leaves the list in the middle of the walk.
        let waiters: Vec<_> = self.chat.room(room).streams.iter().collect();
        let mut sent = 0;
        for waiter in waiters {
            let key = waiter.key as usize;
            match self.conns.get(key) {
                Some(conn) if conn.generation == waiter.generation => {}
                _ => continue,
            }
            self.stream_send(key, frame, message);
            sent += 1;
        }
        sent
    }

    /// Queues one frame on a stream and writes what the socket takes.
    pub(super) fn stream_send(&mut self, key: usize, frame: &Rc<[u8]>, message: bool) {
        if !matches!(self.conns[key].state(), State::Streaming(_)) {
            return;
        }
        // Its token ran out while the stream was too busy for its timer to say so (a
        // stream behind on its writes has a write deadline, not a heartbeat): nothing
        // posted after the token's end reaches it.
        if message && self.stream_expired(key) {
            return self.expire_stream(key);
        }
        let conn = &mut self.conns[key];
        if let Some(output) = conn.output.as_mut() {
            if message && output.is_replaying() {
                return; // the replay reaches this message in the history, in order
            }
            let queued = output.push_live(frame);
            if queued > STREAM_BACKLOG_BYTES {
                stats::add(&self.stats.dropped_slow, 1);
                log::debug!("#{key} stream fell {queued} bytes behind; dropping");
                self.close(key);
            }
            return;
        }
        conn.output = Some(Outgoing::new(Response::Shared(Rc::clone(frame))));
        self.clear_timer(key);
        self.write_output(key);
    }

    /// Ends a stream with a last `frame` (shutdown, expiry): written now or queued behind
    /// what is in progress; the connection closes once it is out.
    pub(super) fn end_stream_with(&mut self, key: usize, frame: &Rc<[u8]>) {
        self.stream_send(key, frame, false);
        if self.conns[key].state() == State::Closed {
            return; // it was too far behind to take even that
        }
        self.unpark(key);
        self.conns[key].end_stream();
        // What is left of it goes out now; once all is out (perhaps already), hang up.
        self.write_output(key);
    }

    /// When the stream's token runs out, in the loop's milliseconds; `None` without one.
    pub(super) fn stream_expiry_ms(&self, key: usize) -> Option<u64> {
        // No lookup per delivery when tokens are off.
        self.config.token_secret.as_ref()?;
        self.stream_holders.get(&key)?.expires_ms
    }

    /// The stream's token has run out.
    pub(super) fn stream_expired(&self, key: usize) -> bool {
        self.stream_expiry_ms(key)
            .is_some_and(|expiry| expiry <= self.now_ms())
    }

    /// The token a stream was opened with has run out: tell its page, which fetches a new
    /// token and reconnects, and close. Until then it heard everything it was entitled to.
    pub(super) fn expire_stream(&mut self, key: usize) {
        stats::add(&self.stats.streams_expired, 1);
        log::debug!("#{key} stream's token expired; closing");
        let frame: Rc<[u8]> = sse::EXPIRED.into();
        self.end_stream_with(key, &frame);
    }

    /// A stream's page of replayed history is out: queue the next one from the room.
    pub(super) fn refill_stream(&mut self, key: usize, after: u64) {
        let State::Streaming(membership) = self.conns[key].state() else {
            return;
        };
        let epoch = self.chat.epoch;
        let page = self.chat.room(membership.room).stream_refill(epoch, after);
        self.conns[key].output = Some(Outgoing::replay(page.pieces, page.more_after));
    }

    // ----- presence ---------------------------------------------------------------------

    /// How long a name stays present after its last poll.
    pub(super) fn presence_window_ms(&self) -> u64 {
        (self.config.poll_timeout + self.config.presence_grace).as_millis() as u64
    }

    /// Puts the presence sweep on the wheel, a second from now, unless it is there.
    pub(super) fn schedule_presence_sweep(&mut self) {
        if !self.sweep_scheduled {
            self.sweep_scheduled = true;
            self.schedule(Due::SweepPresence, PRESENCE_SWEEP);
        }
    }

    /// Once a second while anyone is named, tell rooms who left, each room's leavers in
    /// one event batch. At most [`NAMES_SWEPT_PER_PASS`] names per sweep: 60,000 names
    /// expiring together once froze the loop for 18 s writing leave events; now the rest
    /// wait for the next sweep, one tick later. Nothing at all happens while nobody uses
    /// names.
    pub(super) fn sweep_presence(&mut self) {
        let now = self.now_ms();
        let mut budget = NAMES_SWEPT_PER_PASS;
        let mut still_named = false;
        for room in self.chat.room_ids() {
            if !self.chat.room(room).has_presence() {
                continue;
            }
            if budget == 0 {
                break;
            }
            let left = self.chat.room(room).names.sweep(now, budget);
            budget -= left.len();
            let mut events = Vec::with_capacity(left.len());
            for gone in left {
                self.clients.name_removed(gone.owner);
                events.push(Event::Leave {
                    name: gone.name.to_string(),
                });
            }
            // With --redis a name that left this node may be present on another: what
            // leaves everywhere is announced by Redis (see `sweep_shared_presence`).
            if !events.is_empty() && !self.shared() {
                self.broadcast_events(room, &events);
            }
            still_named |= self.chat.room(room).has_presence();
        }
        still_named |= self.sweep_shared_presence();
        if budget == 0 {
            // More may be due: sweep again at the next tick, after everyone else's turn.
            self.sweep_scheduled = true;
            self.schedule(Due::SweepPresence, Duration::ZERO);
        } else if still_named {
            self.schedule_presence_sweep();
        }
    }
}
