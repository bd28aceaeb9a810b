//! Fan-out: storing a message and everything that reaches the clients waiting in a room
//! (parked polls and open streams). Each kind of waiter gets one encoding, built once for
//! all of them, handed to the shell in one effect with the whole list: the shell writes it
//! to each socket, no copy and no allocation per client. Events (typing, join, leave) go
//! the same way; the presence sweep is here too, since what it does is tell rooms who left.

use super::effect::{Effect, Now, Sweep};
use super::state::Chat;
use crate::answer;
use crate::event::Event;
use crate::room::Framing;
use crate::room::Posted;
use crate::sse;
use crate::stats;
use crate::waitlist::{ListKind, Waiter};
use crate::websocket;
use std::rc::Rc;
use std::time::Duration;

/// How often presence is swept for names whose window has passed.
const PRESENCE_SWEEP: Duration = Duration::from_secs(1);

/// Names one presence sweep may take (and announce as leave events) per pass; the rest
/// go in the next sweep, one tick later.
pub const NAMES_SWEPT_PER_PASS: usize = 256;

impl Chat {
    /// Stores a message and delivers it to everyone waiting in the room.
    pub(super) fn post(
        &mut self,
        now: Now,
        room: u32,
        from: &str,
        text: &str,
        client_id: Option<&str>,
    ) -> Posted {
        let (epoch, history) = (self.epoch(room), self.rooms.history);
        let posted =
            self.rooms
                .room(room)
                .post(epoch, from, text, client_id, now.unix_ms, &history);
        if let Posted::New(seq) = posted {
            self.deliver(now, room, seq, text);
        }
        posted
    }

    /// Delivers stored message `seq` (the room's newest) to everyone waiting in the room,
    /// each kind of waiter with its own encoding, built once: classic polls `{"ok":text}`,
    /// JSON polls the message with its position, streams its stored SSE frame itself. A
    /// local post, or, with `--redis`, one Redis announced.
    pub(super) fn deliver(&mut self, now: Now, room: u32, seq: u64, text: &str) {
        let epoch = self.epoch(room);
        stats::add(&self.stats.messages, 1);
        let (mut polls, mut streams, mut sockets) = (0, 0, 0);
        if !self.rooms.room(room).classic.is_empty() {
            let response = answer::classic_message(text);
            polls += self.answer_parked(room, ListKind::Classic, response);
        }
        if !self.rooms.room(room).polls.is_empty() {
            let r = self.rooms.room(room);
            let (messages, head) = (r.messages_after(seq - 1), r.head(epoch));
            let response: Rc<[u8]> = self.replies.poll_answer(messages, head, &[]).into();
            polls += self.answer_parked(room, ListKind::Poll, response);
        }
        if !self.rooms.room(room).streams.is_empty() {
            let frame = self.rooms.room(room).sse_message(seq);
            streams = self.send_to_streams((room, ListKind::Stream), frame, Some(now), false);
        }
        if !self.rooms.room(room).sockets.is_empty() {
            let r = self.rooms.room(room);
            let json = r.messages_after(seq - 1).next().unwrap_or_default();
            let frame = websocket::message(json);
            sockets = self.send_to_streams((room, ListKind::Socket), frame, Some(now), false);
        }
        let delivered = polls + streams + sockets;
        stats::add(&self.stats.deliveries, delivered);
        stats::add(&self.stats.deliveries_poll, polls);
        stats::add(&self.stats.deliveries_sse, streams);
        stats::add(&self.stats.deliveries_ws, sockets);
        self.deliveries += delivered;
        let name = self.rooms.room(room).name.clone();
        log::debug!("message {seq} in {name} delivered to {delivered}");
        self.effects.push(Effect::Delivered {
            room: name,
            delivered,
        });
    }

    /// Ephemeral events to everyone waiting in the room (not classic polls, which only
    /// know messages), in one answer or one frame each however many events there are. JSON
    /// polls are answered with them and come back; streams get them as one write.
    pub(super) fn broadcast_events(&mut self, room: u32, events: &[Event]) {
        let epoch = self.epoch(room);
        let mut delivered = 0;
        if !self.rooms.room(room).polls.is_empty() {
            let head = self.rooms.room(room).head(epoch);
            let response = self.replies.poll_answer(std::iter::empty(), head, events);
            delivered += self.answer_parked(room, ListKind::Poll, response.into());
        }
        if !self.rooms.room(room).streams.is_empty() {
            let frame: Rc<[u8]> = sse::event_frames(events).into_bytes().into();
            delivered += self.send_to_streams((room, ListKind::Stream), frame, None, false);
        }
        if !self.rooms.room(room).sockets.is_empty() {
            let frame: Rc<[u8]> = websocket::events(events).into();
            delivered += self.send_to_streams((room, ListKind::Socket), frame, None, false);
        }
        self.deliveries += delivered;
    }

    /// The store started a new epoch (with `--redis`, Redis lost its data) and the room's
    /// copy starts again: everyone waiting in it is told of the gap now, as a fresh request
    /// from their old position would be, before anything of the new epoch reaches them.
    /// Parked JSON polls are answered `gap: true` with the new head; streams get a `gap`
    /// event, and one still replaying the old history replays the new one from its start.
    /// Classic polls carry no position, so there is nothing to tell them.
    pub(super) fn tell_of_gap(&mut self, room: u32) {
        let epoch = self.epoch(room);
        let head = self.rooms.room(room).head(epoch);
        let mut told = 0;
        if !self.rooms.room(room).polls.is_empty() {
            let response = self.replies.poll_gap_answer(head);
            told += self.answer_parked(room, ListKind::Poll, response.into());
        }
        if !self.rooms.room(room).streams.is_empty() {
            let frame: Rc<[u8]> = sse::gap_frame(head).into_bytes().into();
            told += self.send_to_streams((room, ListKind::Stream), frame, None, true);
        }
        if !self.rooms.room(room).sockets.is_empty() {
            let frame: Rc<[u8]> = websocket::gap(head).into();
            told += self.send_to_streams((room, ListKind::Socket), frame, None, true);
        }
        self.deliveries += told;
    }

    /// Answers every poll parked in `room`'s `list` with `response`, encoded once: the
    /// whole list leaves at once, so nobody's index needs fixing. O(waiting clients),
    /// which is the point: every one of them must be written to.
    fn answer_parked(&mut self, room: u32, list: ListKind, response: Rc<[u8]>) -> u64 {
        let waiters = self.rooms.list(room, list).take();
        let answered = waiters.len() as u64;
        stats::sub(&self.stats.pending_polls, answered);
        self.effects.push(Effect::AnswerAll {
            to: waiters,
            response,
            from: (room, list),
        });
        answered
    }

    /// One frame to every stream of a room's list (SSE or WebSocket), which stay in it.
    /// `message`: the frame is a stored message, posted at that moment, which does not
    /// reach a stream whose token ran out (its timer may not have said so yet, if the
    /// stream was too busy): that stream ends instead; nor a WebSocket whose replay waits
    /// for its first frame (the replay will bring it). Returns how many streams got it.
    fn send_to_streams(
        &mut self,
        (room, list): (u32, ListKind),
        frame: Rc<[u8]>,
        message: Option<Now>,
        again: bool,
    ) -> u64 {
        let mut streams: Vec<Waiter> = self.rooms.list(room, list).iter().collect();
        if message.is_some() && !self.held.is_empty() {
            streams.retain(|s| !self.held.contains(&s.key));
        }
        if let Some(now) = message.filter(|_| self.config.token_secret.is_some()) {
            let (live, ended): (Vec<Waiter>, Vec<Waiter>) = streams
                .into_iter()
                .partition(|s| !self.stream_expired(now, s.key));
            let framing = Framing::of(list);
            for stream in ended {
                self.expire_stream(stream, framing);
            }
            streams = live;
        }
        let sent = streams.len() as u64;
        self.effects.push(Effect::Frames {
            to: streams,
            frame,
            message: message.is_some(),
            replay_again: again,
        });
        sent
    }

    /// Puts the presence sweep on the wheel, a second from now, unless it is there.
    pub(super) fn schedule_presence_sweep(&mut self) {
        self.schedule_presence_sweep_in(PRESENCE_SWEEP);
    }

    fn schedule_presence_sweep_in(&mut self, after: Duration) {
        if !self.presence_sweep_due {
            self.presence_sweep_due = true;
            self.effects.push(Effect::Schedule {
                sweep: Sweep::Presence,
                after,
            });
        }
    }

    /// Once a second while anyone is named, tell rooms who left, each room's leavers in
    /// one event batch. At most [`NAMES_SWEPT_PER_PASS`] names per sweep: 60,000 names
    /// expiring together once froze the loop for 18 s writing leave events; now the rest
    /// wait for the next sweep, one tick later. Nothing at all happens while nobody uses
    /// names; while someone does, finding the rooms with names is a walk of every room
    /// (O(`--max-rooms`), a flag test each: 1,000 by default) once a second.
    pub(super) fn sweep_presence(&mut self, now: Now) {
        let mut budget = NAMES_SWEPT_PER_PASS;
        let mut still_named = false;
        for room in self.rooms.room_ids() {
            if !self.rooms.room(room).has_presence() {
                continue;
            }
            if budget == 0 {
                break;
            }
            let left = self.rooms.room(room).names.sweep(now.ms, budget);
            budget -= left.len();
            let mut events = Vec::with_capacity(left.len());
            for gone in left {
                self.clients.name_removed(gone.owner);
                events.push(Event::Leave {
                    name: gone.name.to_string(),
                });
            }
            if !events.is_empty() {
                self.announce(room, events);
            }
            still_named |= self.rooms.room(room).has_presence();
        }
        still_named |= self.sweep_shared_presence(now);
        if budget == 0 {
            // More may be due: sweep again at the next tick, after everyone else's turn.
            self.schedule_presence_sweep_in(Duration::ZERO);
        } else if still_named {
            self.schedule_presence_sweep();
        }
    }
}
