//! Connection I/O: a connection's turn (read what it sent, answer a turn's worth of its
//! requests), writing what it is owed, and its end (linger, close, reap). Nothing here
//! calls back up: a connection with more to do after its turn goes in line (the ready
//! queue), and the loop gives it its next turn in step 3 of the next pass.
//!
//! The admin listener's connections (`Flags::ADMIN`) go the same way; only what their
//! requests are answered with differs (`Server::answer_admin`, in `admin.rs`).

use super::budget::{DELIVERIES_PER_TURN, REQUESTS_PER_TURN};
use super::socket::socket_at;
use super::Server;
use crate::answer;
use crate::conn::{AfterResponse, Deadline, Flags, State};
use crate::http::Status;
use crate::outgoing::{Flushed, Response};
use crate::routes::{self, Action, Next};
use crate::stats;
use crate::sys;
use crate::waitlist::Waiter;
use mio::event::Event;
use std::io::{self, Read};
use std::net::Shutdown;

/// One read's worth of bytes. Reads land in one buffer shared by every connection, so idle
/// connections own no read buffer.
pub(super) const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Bytes read per turn, only to be discarded, from a stream or a connection we are hanging
/// up on: a client sending as fast as loopback allows cannot keep the loop reading.
const DISCARD_BYTES_PER_TURN: usize = 64 * 1024;

/// Connections owed a step later: a turn in step 3 (each at most once: `Flags::READY`), or
/// freeing in step 5.
#[derive(Default)]
pub(super) struct Line {
    /// Connections with work left when their turn ended, served in step 3 of the next
    /// pass, as (key, generation).
    pub ready: Vec<(u32, u32)>,
    /// The line as it stood when this pass began: served in step 3 of this pass.
    pub ready_batch: Vec<(u32, u32)>,
    /// Connections marked closed this pass, freed in the reap step, so that no key is
    /// reused while this pass may still hold it.
    pub closing: Vec<usize>,
}

impl Server {
    /// Step 2 for a connection's token.
    pub(super) fn on_conn_event(&mut self, key: usize, event: &Event) {
        // Never trust a token: the connection may have been closed earlier in this pass.
        match self.conns.get(key) {
            None => return,
            Some(conn) if conn.state() == State::Closed => return,
            Some(_) => {}
        }
        if event.is_writable() && self.conns[key].output.is_some() {
            self.write_output(key);
        }
        // A connection already in line gets its turn there; edge-triggered, nothing it
        // sent is lost meanwhile, because its turn reads until `WouldBlock`.
        let in_line = self.conns[key].flags.has(Flags::READY);
        if !in_line && (event.is_readable() || event.is_read_closed() || event.is_error()) {
            self.turn(key);
        }
    }

    /// One connection's turn: read what it sent (up to its input cap), answer up to a
    /// turn's worth of its requests, and if it has more of either, put it back in line
    /// behind everyone else. Whatever one client sends, its turn is bounded:
    /// [`REQUESTS_PER_TURN`] requests, [`DELIVERIES_PER_TURN`] deliveries to others, one
    /// input buffer of bytes.
    fn turn(&mut self, key: usize) {
        let more_to_read = self.read_input(key);
        let more_to_answer = self.process_input(key);
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let (state, peer_closed) = (conn.state(), conn.flags.has(Flags::PEER_CLOSED));
        // The client has sent all it will and what it asked is answered, or can never be
        // whole: nothing is left to wait for. (A poll or a stream is for a client that
        // still listens; one that has closed its side is dropped, as on its FIN later.)
        let waits = matches!(
            state,
            State::Reading | State::Parked(_) | State::Streaming(_) | State::Viewing
        );
        if peer_closed && waits && !more_to_answer {
            return self.close(key);
        }
        self.arm_reading_timer(key);
        // Writing or parked: the response's end puts it back in line (`response_done`).
        let can_go_on = matches!(
            state,
            State::Reading | State::Lingering | State::Streaming(_)
        );
        if can_go_on && (more_to_read || more_to_answer) {
            self.queue_ready(key);
        }
    }

    /// Puts a connection in the ready queue, once.
    pub(super) fn queue_ready(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.flags.has(Flags::READY) {
            conn.flags.set(Flags::READY, true);
            self.line.ready.push((key as u32, conn.generation));
        }
    }

    /// Step 3: a turn for each connection that was in line when this pass began; those
    /// that still have work go back in line for the next pass, after everyone's events.
    pub(super) fn serve_ready(&mut self) {
        let mut batch = std::mem::take(&mut self.line.ready_batch);
        for &(key, generation) in &batch {
            let key = key as usize;
            match self.conns.get_mut(key) {
                Some(conn) if conn.generation == generation && conn.state() != State::Closed => {
                    conn.flags.set(Flags::READY, false);
                }
                _ => continue,
            }
            self.turn(key);
        }
        batch.clear();
        self.line.ready_batch = batch;
    }

    /// Reads what the socket holds into the connection's input, until `WouldBlock` or the
    /// input cap (then more may wait in the kernel: returns true). Streams and lingering
    /// connections read only to discard, at most [`DISCARD_BYTES_PER_TURN`] a turn.
    fn read_input(&mut self, key: usize) -> bool {
        let mut discarded = 0;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return false;
            };
            let admin = conn.flags.has(Flags::ADMIN);
            let socket = socket_at(conn.state()).is_some();
            let cap = match (admin, socket) {
                (true, _) => super::admin::ADMIN_REQUEST_BYTES,
                // A WebSocket's input is frames: one message and its header at most.
                (_, true) => {
                    let cap = super::socket::message_cap(self.config.max_message_bytes);
                    crate::ws::Assembler::new(cap).input_bytes_cap()
                }
                _ => self.config.limits.request_bytes(),
            };
            // Nothing an event stream sends is a request (its response never ends), and
            // we are hanging up on a lingering client: read only to see the FIN.
            let discarding =
                !socket && matches!(conn.state(), State::Lingering | State::Streaming(_));
            match conn.state() {
                State::Closed => return false,
                _ if discarding && discarded >= DISCARD_BYTES_PER_TURN => return true,
                // A full request's worth is buffered: leave the rest in the kernel until
                // this has been answered.
                _ if !discarding && conn.input.len() >= cap => {
                    conn.flags.set(Flags::INPUT_PAUSED, true);
                    return true;
                }
                _ => {}
            }
            // `/metrics` counts the client path's system calls and bytes: the admin
            // port's own are left out, so that watching the loop does not move it.
            self.metrics.syscalls.read += u64::from(!admin);
            match conn.socket.read(&mut self.read_chunk) {
                Ok(0) => {
                    conn.flags.set(Flags::PEER_CLOSED, true);
                    conn.flags.set(Flags::INPUT_PAUSED, false);
                    self.on_peer_closed(key);
                    return false;
                }
                // A viewer has nothing more to say (EventSource never does): one that sends
                // anything is hung up on, rather than read without end.
                Ok(_) if conn.state() == State::Viewing => {
                    self.close(key);
                    return false;
                }
                Ok(n) if discarding => {
                    self.metrics.bytes_in += if admin { 0 } else { n as u64 };
                    discarded += n;
                }
                Ok(n) => {
                    self.metrics.bytes_in += if admin { 0 } else { n as u64 };
                    conn.input.extend_from_slice(&self.read_chunk[..n]);
                    // We stop reading at the cap, so one chunk over it is the most a
                    // client can make us hold.
                    debug_assert!(conn.input.len() <= cap + READ_CHUNK_BYTES);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.flags.set(Flags::INPUT_PAUSED, false);
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("#{key} read error: {e}");
                    self.close(key);
                    return false;
                }
            }
        }
    }

    /// The client will send nothing more. A parked poll whose client left is dropped at once
    /// (this is how a vanished browser frees its slot); a response in flight is finished,
    /// and so are the requests it sent before its FIN (a half-close: `printf … | nc -N`):
    /// the turn answers what is whole, then hangs up.
    fn on_peer_closed(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        match conn.state() {
            // A response is on its way (or Redis's answer is): finish it, then hang up.
            State::Writing | State::Awaiting => conn.flags.set(Flags::CLOSE_AFTER_WRITE, true),
            State::Reading if !conn.input.is_empty() => {
                conn.flags.set(Flags::CLOSE_AFTER_WRITE, true)
            }
            State::Closed => {}
            State::Reading
            | State::Parked(_)
            | State::Streaming(_)
            | State::Viewing
            | State::Lingering => self.close(key),
        }
    }

    /// Answers the complete requests in the connection's input, in order, until the turn's
    /// budget is spent or the connection leaves `Reading` (parked, or a response is still
    /// being written). Returns true when the budget ran out with input left to answer.
    fn process_input(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if let Some(at) = socket_at(conn.state()) {
            return self.socket_input(key, at);
        }
        if conn.state() != State::Reading || conn.input.is_empty() {
            return false;
        }
        if conn.flags.has(Flags::ADMIN) {
            // One request per connection, answered from the admin routes.
            self.answer_admin(key);
            return false;
        }
        if conn.flags.has(Flags::PROXY_HEADER_DUE) && !self.take_proxy_header(key) {
            return false;
        }
        let conn = &mut self.conns[key];
        // Taken out while its requests are answered (the handlers need all of `self`) and
        // put back once, minus what was answered: one move of the leftover bytes per turn,
        // not one per request.
        let input = std::mem::take(&mut conn.input);
        let mut used = 0;
        let mut answered = 0;
        let mut delivered = 0;
        // Deliveries that no turn caused (a sweep, a Redis announcement, requests resumed
        // after a load) are counted too; they are not this connection's to pay for.
        self.chat.take_deliveries();
        let out_of_budget = loop {
            if answered == REQUESTS_PER_TURN || delivered >= DELIVERIES_PER_TURN {
                break used < input.len();
            }
            let conn = &mut self.conns[key]; // closing only marks it; it is freed in step 5
            if conn.state() != State::Reading || used == input.len() {
                break false;
            }
            let context = routes::Context {
                assets: &self.assets,
                max_message_bytes: self.config.max_message_bytes,
                replies: self.chat.replies(),
                auth: self
                    .config
                    .token_secret
                    .as_deref()
                    .map(|secret| routes::Auth {
                        secret,
                        private_prefix: self.config.private_rooms.as_deref(),
                        now: crate::token::now_secs(),
                    }),
                websocket: self.config.websocket,
                cors_origin: self.config.cors_origin.as_deref(),
            };
            match routes::next(&input[used..], &self.config.limits, &context) {
                // Normal flow: the rest of the request has not arrived yet.
                Next::NeedMore { awaits_continue } => {
                    if awaits_continue && !conn.flags.has(Flags::CONTINUE_SENT) {
                        conn.flags.set(Flags::CONTINUE_SENT, true);
                        self.metrics.syscalls.write += 1;
                        if let Err(e) = conn.write_interim(answer::CONTINUE) {
                            log::debug!("#{key} cannot send 100 Continue: {e}");
                            self.close(key);
                        }
                    }
                    break false;
                }
                Next::Reject(status) => {
                    // Through a proxy, a request we cannot read names nobody: the proxy's.
                    if conn.flags.has(Flags::PROXIED) && !self.config.proxy_protocol {
                        self.forwarded(key, None);
                    }
                    let client = self.client_name(key);
                    log::debug!("#{key} {client} → {} {}", status.code, status.reason);
                    used = input.len();
                    self.reject(key, status);
                    break false;
                }
                Next::Request {
                    action,
                    close,
                    http10,
                    consumed,
                    forwarded_for,
                } => {
                    stats::add(&self.stats.requests, 1);
                    // Behind a trusted proxy, each request says whose it is.
                    if conn.flags.has(Flags::PROXIED) && !self.config.proxy_protocol {
                        self.forwarded(key, forwarded_for.as_deref());
                    }
                    if log::log_enabled!(log::Level::Debug) {
                        let request = input[used..used + consumed].trim_ascii_start();
                        let line = request.split(|&b| b == b'\r').next();
                        let line = String::from_utf8_lossy(line.unwrap_or_default());
                        let tokens = self.config.token_secret.is_some();
                        let client = self.client_name(key);
                        log::debug!("#{key} {client} {}", loggable(&line, tokens));
                    }
                    let conn = &mut self.conns[key];
                    used += consumed;
                    answered += 1;
                    conn.flags.set(Flags::CONTINUE_SENT, false);
                    conn.flags.set(Flags::HTTP10, http10);
                    // While shutting down every response is the connection's last.
                    let close = close || self.control.draining;
                    self.hand_to_chat(key, action, close);
                    delivered += self.chat.take_deliveries();
                }
            }
        };
        let conn = &mut self.conns[key];
        debug_assert!(
            conn.input.is_empty(),
            "nothing reads while requests are answered"
        );
        // A closed or lingering connection discards what it sent; an emptied input gives
        // its buffer back, so a parked poll owns no heap memory.
        let keep = !matches!(conn.state(), State::Closed | State::Lingering) && used < input.len();
        if keep {
            let mut input = input;
            input.drain(..used);
            conn.input = input;
        }
        // A client that sent frames right behind its upgrade (before our 101 reached it):
        // they are a socket's input now, read on its next turn, not at its next packet.
        let became_socket = socket_at(conn.state()).is_some();
        out_of_budget || (keep && became_socket)
    }

    /// A request routing has read: `/stats` is answered here (it reads the process's
    /// memory); everything else is the chat's to decide, and its effects are carried out
    /// before the next request is read.
    fn hand_to_chat(&mut self, key: usize, action: Action, close: bool) {
        if let Action::Stats { head_only } = action {
            let (worker, redis) = (self.config.worker, self.chat.is_shared());
            let rss = sys::rss_bytes();
            let bytes = answer::counters::stats(&self.stats, rss, worker, redis, head_only);
            return self.respond(key, Response::Owned(bytes), close);
        }
        let conn = &self.conns[key];
        let asker = Waiter {
            key: key as u32,
            generation: conn.generation,
        };
        let now = self.now();
        self.chat.request(now, asker, conn.client, action, close);
        self.carry_out();
    }

    /// Answers an invalid request and hangs up: what follows it cannot be trusted to start
    /// at a request boundary.
    pub(super) fn reject(&mut self, key: usize, status: Status) {
        let response = answer::status_error(status, &[], false);
        self.respond(key, Response::Owned(response), true);
    }

    /// Starts sending `response` (see [`crate::conn::Conn::respond`]) and writes as much as
    /// the socket takes right away.
    pub(super) fn respond(&mut self, key: usize, response: Response, close: bool) {
        self.conns[key].respond(response, close);
        self.clear_timer(key);
        self.write_output(key);
    }

    /// Writes what the connection is owed until it is all out or the socket is full.
    /// Returns the bytes the kernel took: any at all is progress for a slow client.
    pub(super) fn write_output(&mut self, key: usize) -> usize {
        let mut progress = 0;
        // `/stats` and `/metrics` count the public port's writes and bytes.
        let admin = self.conns[key].flags.has(Flags::ADMIN);
        loop {
            let mut writes = 0;
            let flushed = self.conns[key].flush(&mut writes);
            self.metrics.syscalls.write += if admin { 0 } else { writes };
            match flushed {
                Ok((flushed, sent)) => {
                    progress += sent;
                    if !admin {
                        stats::add(&self.stats.bytes_out, sent as u64);
                    }
                    self.metrics.report.bytes_written += sent;
                    match flushed {
                        // The WRITABLE edge will bring us back here. The write deadline
                        // bounds how long a client may go without taking a byte: any
                        // progress starts it over, so a slow but steady reader of a long
                        // response is never taken for a stalled one.
                        Flushed::Blocked => {
                            let restart = sent > 0 || self.conns[key].timer.deadline.is_none();
                            if restart && !self.awaits_resume(key) {
                                self.set_timer(key, Deadline::Write);
                            }
                            return progress;
                        }
                        // A stream replaying history: its page is out, queue the next.
                        Flushed::Refill(after) => {
                            self.refill_stream(key, after);
                            continue;
                        }
                        Flushed::Done if matches!(self.conns[key].state(), State::Streaming(_)) => {
                            if !self.awaits_resume(key) {
                                self.set_timer(key, Deadline::Heartbeat);
                            }
                            return progress;
                        }
                        // A viewer caught up: its next frame comes with the next tick.
                        Flushed::Done if self.conns[key].state() == State::Viewing => {
                            self.clear_timer(key);
                            return progress;
                        }
                        Flushed::Done => {
                            self.response_done(key);
                            return progress;
                        }
                    }
                }
                Err(e) => {
                    log::debug!("#{key} write error: {e}");
                    self.close(key);
                    return progress;
                }
            }
        }
    }

    /// The whole response is with the kernel: hang up, or get ready for the next request
    /// (which may already be buffered: then the connection goes in line for its turn).
    fn response_done(&mut self, key: usize) {
        match self.conns[key].response_done() {
            AfterResponse::HangUp => self.linger(key),
            AfterResponse::NextRequest { ready } => {
                if ready {
                    self.queue_ready(key);
                }
                self.clear_timer(key);
                self.arm_reading_timer(key);
            }
        }
    }

    /// Shuts our side down and waits briefly for the client to close, reading and
    /// discarding what it still sends (see [`State::Lingering`]).
    fn linger(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.flags.has(Flags::PEER_CLOSED) || conn.socket.shutdown(Shutdown::Write).is_err() {
            self.close(key);
            return;
        }
        conn.linger();
        self.set_timer(key, Deadline::Linger);
        // The client may have closed already; its FIN was reported only once, so look for
        // it on the connection's next turn.
        self.queue_ready(key);
    }

    /// Marks a connection closed: it leaves its room's list and the wheel now, and its slot
    /// is freed in the reap step.
    pub(super) fn close(&mut self, key: usize) {
        if self.conns[key].state() == State::Closed {
            return;
        }
        self.unpark(key);
        self.drop_timer(key);
        if socket_at(self.conns[key].state()).is_some() {
            self.forget_socket(key);
        }
        self.conns[key].close();
        self.line.closing.push(key);
    }

    /// Step 5. Dropping the socket closes the descriptor, which also removes it from the
    /// epoll set, so no `deregister` call is needed.
    pub(super) fn reap_closed(&mut self) {
        let mut closing = std::mem::take(&mut self.line.closing);
        for key in closing.drain(..) {
            let conn = self.conns.remove(key);
            debug_assert_eq!(conn.state(), State::Closed);
            debug_assert!(conn.timer.deadline.is_none() && conn.timer.filed.is_none());
            if conn.flags.has(Flags::ADMIN) {
                self.forget_admin(key);
            } else {
                self.chat.clients_mut().disconnected(conn.client);
                stats::sub(&self.stats.connections, 1);
            }
            self.metrics.report.closed += 1;
            log::debug!("#{key} closed");
        }
        self.line.closing = closing;
        let addresses = self.chat.clients().len() as u64;
        stats::set(&self.stats.client_addresses, addresses);
    }
}

/// A request line fit for the log. With tokens on, its query string may carry one (under
/// any spelling the form decoder accepts, `tok%65n=` included), and a token is a
/// credential, which logs are read by more people than should hold: the query is left out.
fn loggable(line: &str, tokens: bool) -> std::borrow::Cow<'_, str> {
    let Some(query) = line.find('?').filter(|_| tokens) else {
        return line.into();
    };
    let end = line[query..].find(' ').map_or(line.len(), |n| query + n);
    format!("{}?…{}", &line[..query], &line[end..]).into()
}

#[cfg(test)]
mod tests {
    use super::loggable;

    #[test]
    fn tokens_never_reach_the_log() {
        for line in [
            "GET /rooms/a/events?token=eyJ.x.y&since=0 HTTP/1.1",
            "GET /rooms/a/events?xtoken=1&tok%65n=eyJ.x.y HTTP/1.1",
        ] {
            assert_eq!(loggable(line, true), "GET /rooms/a/events?… HTTP/1.1");
        }
        let plain = "GET /rooms/a/messages?since=0 HTTP/1.1";
        assert_eq!(loggable(plain, false), plain, "without tokens, all of it");
        assert_eq!(loggable("GET /chat HTTP/1.1", true), "GET /chat HTTP/1.1");
    }
}
