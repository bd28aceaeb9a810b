//! The one place the chat's decisions meet the sockets: [`Server::carry_out`] drains the
//! chat's queue of effects ([`crate::chat::Effect`]) in order, after every input the
//! loop gives the chat. Whatever a connection is asked to do here, it may already be gone
//! (closed earlier in this pass, its key reused): every effect names `(key, generation)`
//! and is skipped for a stranger.

use super::socket::socket_at;
use super::Server;
use crate::chat::{Effect, Now};
use crate::conn::{Deadline, Flags, Membership, State};
use crate::outgoing::{Outgoing, Piece, Response};
use crate::waitlist::Waiter;
use std::rc::Rc;
use std::time::Instant;

/// Bytes of frames that may queue behind a stream's socket before the stream is dropped as
/// too slow: a reader this far behind would only fall further behind. (An X-ray viewer
/// too: about 15 s of frames; reloading the page starts it afresh.)
const STREAM_BACKLOG_BYTES: usize = 256 * 1024;

impl Server {
    /// Carries out what the chat asked for, in order, until its queue is empty (an effect
    /// may lead to another input, such as a stream dropped as too slow leaving its list:
    /// those effects join the queue and are carried out in the same call, never by
    /// calling back into this one).
    ///
    /// What must stay true: the chat queues `Effect::Park` or `Effect::Stream` in the same
    /// call that puts the connection in a list, before anything that could make the shell
    /// take another waiter out of that list (`Chat::left()` moves the last waiter into
    /// the hole, and that connection must already know its place to be told the new one).
    pub(super) fn carry_out(&mut self) {
        // A broadcast's effects (one per kind of waiter) are timed together, for the
        // loop's metrics: from the first of them to the `Delivered` that ends it.
        let mut fanout_began: Option<Instant> = None;
        while !self.chat.effects.is_empty() {
            let mut effects = std::mem::take(&mut self.chat.effects);
            for effect in effects.drain(..) {
                match effect {
                    Effect::Answer {
                        to,
                        response,
                        close,
                    } => self.answer(to, response, close),
                    Effect::AnswerAll { to, response, from } => {
                        fanout_began.get_or_insert_with(Instant::now);
                        self.answer_all(&to, &response);
                        self.chat.recycle(from, to);
                    }
                    Effect::Park { to, at, close } => self.park(to, at, close),
                    Effect::Stream {
                        to,
                        at,
                        output,
                        hold,
                    } => {
                        self.start_stream(to, at, output);
                        if let Some(key) = self.live(to).filter(|_| hold) {
                            self.set_timer(key, Deadline::Resume);
                        }
                    }
                    Effect::Replay {
                        to,
                        pieces,
                        more_after,
                    } => self.start_replay(to, pieces, more_after),
                    Effect::Frames {
                        to,
                        frame,
                        message,
                        replay_again,
                    } => {
                        fanout_began.get_or_insert_with(Instant::now);
                        for stream in to {
                            self.stream_send(stream, &frame, message, replay_again);
                        }
                    }
                    Effect::EndStream { to, frame } => self.end_stream_with(to, &frame),
                    Effect::Await { to, close } => match self.live(to) {
                        Some(key) if socket_at(self.conns[key].state()).is_some() => {
                            self.socket_awaits(key)
                        }
                        Some(key) => {
                            self.conns[key].await_backplane(close);
                            self.set_timer(key, Deadline::Backplane);
                        }
                        None => {}
                    },
                    Effect::CarryOn { to } => {
                        let awaiting =
                            |s: &Self, key: usize| s.conns[key].state() == State::Awaiting;
                        if let Some(key) = self.live(to).filter(|&key| awaiting(self, key)) {
                            self.conns[key].carry_on();
                            self.clear_timer(key);
                            // Input may wait behind the request: its next turn reads it.
                            self.queue_ready(key);
                        }
                    }
                    Effect::Redis { shard, command } => self.send_to_redis(shard, command),
                    Effect::Schedule { sweep, after } => {
                        self.schedule(super::timers::Due::Sweep(sweep), after);
                    }
                    Effect::Delivered { room, delivered } => {
                        let took = fanout_began
                            .take()
                            .map_or_else(Default::default, |t| t.elapsed());
                        let at_ms = self.now().ms;
                        self.metrics.broadcast_done(&room, delivered, took, at_ms);
                    }
                }
            }
            // The queue's allocation goes back to the chat (unless the effects just carried
            // out queued more), so an input costs no allocation for its effects.
            if self.chat.effects.is_empty() {
                self.chat.effects = effects;
            }
        }
    }

    /// The connection `conn` names, if it is still that one and not closed.
    pub(super) fn live(&self, conn: Waiter) -> Option<usize> {
        let key = conn.key as usize;
        let live = self
            .conns
            .get(key)
            .is_some_and(|c| c.generation == conn.generation && c.state() != State::Closed);
        live.then_some(key)
    }

    /// The moment, for the chat: read once per input.
    pub(super) fn now(&self) -> Now {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Now {
            ms: self.timers.started.elapsed().as_millis() as u64,
            unix_ms,
        }
    }

    /// An answer for one connection. A parked poll leaves its list first; a WebSocket
    /// stays in its list, and gets its answer as an ack frame.
    fn answer(&mut self, to: Waiter, response: Response, close: bool) {
        let Some(key) = self.live(to) else {
            return;
        };
        if socket_at(self.conns[key].state()).is_some() {
            let acked = self.ack(key, to, &response);
            debug_assert!(acked, "#{key}: an answer for a socket that asked nothing");
            return;
        }
        self.unpark(key);
        self.respond(key, response, close);
    }

    /// The same bytes to every poll of a list the chat emptied: one `write` each. A socket
    /// whose buffer is full keeps its unwritten tail and waits for WRITABLE; it never
    /// holds up the ones after it.
    fn answer_all(&mut self, polls: &[Waiter], response: &Rc<[u8]>) {
        for &poll in polls {
            let Some(key) = self.live(poll) else {
                continue;
            };
            // The chat took it out of its list: nothing to leave. One that is not parked
            // would be a bug; skip it rather than overwrite an answer on its way.
            if !matches!(self.conns[key].state(), State::Parked(_)) {
                debug_assert!(false, "#{key} answered while not parked");
                continue;
            }
            self.respond(key, Response::Shared(Rc::clone(response)), false);
        }
    }

    /// A poll waits in a room's list.
    fn park(&mut self, to: Waiter, at: Membership, close: bool) {
        let Some(key) = self.live(to) else {
            // Gone since it asked: the chat must not keep it in the list.
            let moved = self.chat.left(self.now(), to, at);
            return self.moved(moved);
        };
        self.conns[key].park(at, close);
        self.set_timer(key, Deadline::Poll);
    }

    /// A connection becomes an event stream, and its first bytes go out.
    fn start_stream(&mut self, to: Waiter, at: Membership, output: Outgoing) {
        let Some(key) = self.live(to) else {
            let moved = self.chat.left(self.now(), to, at);
            return self.moved(moved);
        };
        self.conns[key].start_stream(at, output);
        self.clear_timer(key);
        self.write_output(key);
    }

    /// The waiter that sat last in a list moved into a hole: its connection notes where.
    fn moved(&mut self, moved: Option<(Waiter, u32)>) {
        if let Some((waiter, index)) = moved {
            self.conns[waiter.key as usize].moved_in_list(index);
        }
    }

    /// Takes a parked poll or a stream out of its room's list (answered, timed out, gone),
    /// or tells the chat that a connection waiting for Redis waits no more.
    pub(super) fn unpark(&mut self, key: usize) {
        let conn = &self.conns[key];
        let waiter = Waiter {
            key: key as u32,
            generation: conn.generation,
        };
        match conn.state() {
            State::Parked(at) | State::Streaming(at) => {
                if conn.flags.has(Flags::SOCKET_WAITS) {
                    self.chat.gave_up_waiting(waiter);
                }
                let moved = self.chat.left(self.now(), waiter, at);
                self.moved(moved);
            }
            State::Awaiting => self.chat.gave_up_waiting(waiter),
            _ => {}
        }
    }

    /// Queues one frame on a stream (or an X-ray viewer: `Server::xray_tick`) and writes
    /// what the socket takes. `message`: a stored message, which a stream still replaying
    /// history reaches there, in order. `replay_again`: the history started over; a replay
    /// in progress starts over with it.
    pub(super) fn stream_send(
        &mut self,
        to: Waiter,
        frame: &Rc<[u8]>,
        message: bool,
        replay_again: bool,
    ) {
        let Some(key) = self.live(to) else {
            return;
        };
        if !matches!(
            self.conns[key].state(),
            State::Streaming(_) | State::Viewing
        ) {
            return;
        }
        let conn = &mut self.conns[key];
        if let Some(output) = conn.output.as_mut() {
            if message && output.is_replaying() {
                return; // the replay reaches this message in the history, in order
            }
            let queued = output.push_live(frame);
            if replay_again {
                output.restart_replay();
            }
            if queued > STREAM_BACKLOG_BYTES {
                self.count_drop(key, &self.stats.dropped_slow);
                log::debug!("#{key} stream fell {queued} bytes behind; dropping");
                self.close(key);
            }
            return;
        }
        conn.output = Some(Outgoing::new(Response::Shared(Rc::clone(frame))));
        // A socket's wait for its first frame outlives the frames written meanwhile (its
        // own join, say): see `awaits_resume`.
        if !self.awaits_resume(key) {
            self.clear_timer(key);
        }
        self.write_output(key);
    }

    /// Ends a stream with a last `frame` (shutdown, expiry): written now or queued behind
    /// what is in progress; the connection closes once it is out.
    pub(super) fn end_stream_with(&mut self, to: Waiter, frame: &Rc<[u8]>) {
        self.stream_send(to, frame, false, false);
        let Some(key) = self.live(to) else {
            return; // it was too far behind to take even that
        };
        if !matches!(self.conns[key].state(), State::Streaming(_)) {
            return;
        }
        self.unpark(key);
        self.conns[key].end_stream();
        // What is left of it goes out now; once all is out (perhaps already), hang up.
        self.write_output(key);
    }

    /// A WebSocket said where its replay starts: the replay queues behind what it is owed
    /// (its 101, events meanwhile), and pages on from the room as it drains.
    fn start_replay(&mut self, to: Waiter, pieces: Vec<Piece>, more_after: Option<u64>) {
        let Some(key) = self.live(to) else {
            return;
        };
        if socket_at(self.conns[key].state()).is_none() {
            return;
        }
        match self.conns[key].output.as_mut() {
            Some(output) => output.append_replay(pieces, more_after),
            None => {
                self.conns[key].output = Some(Outgoing::replay(pieces, more_after));
                self.write_output(key);
            }
        }
    }

    /// A stream's page of replayed history is out: queue the next one from the room.
    pub(super) fn refill_stream(&mut self, key: usize, after: u64) {
        let State::Streaming(at) = self.conns[key].state() else {
            return;
        };
        let page = self.chat.stream_refill(at, after);
        self.conns[key].output = Some(Outgoing::replay(page.pieces, page.more_after));
    }
}
