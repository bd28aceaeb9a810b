//! A WebSocket's side of the shell: its input read as frames (the codec, `ws`, turns bytes
//! into whole messages and control frames), control frames answered here (ping, close),
//! text messages handed to the chat ([`crate::chat::Chat::socket_said`]), and the answers
//! to its posts turned into ack frames. Everything else a socket is — a stream in its
//! room's list, written to, timed, dropped when too slow, ended for shutdown or expiry —
//! it shares with the event stream: `State::Streaming` in a `ListKind::Socket` list.
//!
//! What a client can cost: its input buffer holds at most one message and its header
//! ([`Assembler::input_bytes_cap`]); a message arriving in fragments is held aside, at most
//! the same cap, only while it arrives; each turn answers at most [`REQUESTS_PER_TURN`]
//! messages; what we write it (acks, pongs) queues on its stream's backlog cap like any
//! frame, so a client that sends pings and never reads is dropped as too slow.

use super::budget::{DELIVERIES_PER_TURN, REQUESTS_PER_TURN};
use super::Server;
use crate::conn::{Deadline, Flags, Membership, State};
use crate::outgoing::Response;
use crate::waitlist::{ListKind, Waiter};
use crate::ws::{self, Assembler, CloseCode, Event, Opcode, Step};
use std::collections::HashMap;
use std::rc::Rc;

/// JSON a frame may carry beyond its text (type, `client_id`, escapes' room): a message
/// is refused 1009 past twice `--max-message` (every escape doubles a character at
/// most, for the characters a text may hold) plus this.
const FRAME_JSON_BYTES: usize = 1024;

/// The largest message a client may send over a socket, for `--max-message` of
/// `max_message_bytes`: what a post of the longest text takes, in JSON.
pub(super) fn message_cap(max_message_bytes: usize) -> usize {
    max_message_bytes
        .saturating_mul(2)
        .saturating_add(FRAME_JSON_BYTES)
}

/// Messages arriving in fragments, by connection key (with its generation): the only
/// per-socket state the codec needs, held only while such a message is under way, so an
/// idle socket costs nothing here.
#[derive(Default)]
pub(super) struct Sockets {
    under_way: HashMap<u32, (u32, Assembler)>,
}

/// Whether a connection is a WebSocket in its room's list, and where.
pub(super) fn socket_at(state: State) -> Option<Membership> {
    match state {
        State::Streaming(at) if at.list == ListKind::Socket => Some(at),
        _ => None,
    }
}

impl Server {
    /// A socket's input: whole messages handed on, control frames answered, until the
    /// turn's budget is spent, a post waits for Redis, or the socket ends. Returns true
    /// when the budget ran out with input left.
    pub(super) fn socket_input(&mut self, key: usize, at: Membership) -> bool {
        let conn = &mut self.conns[key];
        if conn.flags.has(Flags::SOCKET_WAITS) || conn.input.is_empty() {
            return false;
        }
        let waiter = Waiter {
            key: key as u32,
            generation: conn.generation,
        };
        let client = conn.client;
        let mut input = std::mem::take(&mut conn.input);
        let cap = message_cap(self.config.max_message_bytes);
        let mut assembler = match self.sockets.under_way.remove(&waiter.key) {
            Some((generation, assembler)) if generation == waiter.generation => assembler,
            _ => Assembler::new(cap),
        };
        let (mut used, mut answered, mut delivered) = (0, 0, 0);
        self.chat.take_deliveries();
        let out_of_budget = loop {
            if answered == REQUESTS_PER_TURN || delivered >= DELIVERIES_PER_TURN {
                break used < input.len();
            }
            let conn = &self.conns[key];
            let still = socket_at(conn.state()).is_some() && !conn.flags.has(Flags::SOCKET_WAITS);
            if !still || used == input.len() {
                break false;
            }
            let (consumed, event) = match assembler.read(&mut input[used..]) {
                // Normal flow: the rest of the frame is on its way.
                Step::Partial => break false,
                Step::Invalid(code) => {
                    used = input.len();
                    self.end_socket(waiter, code, "");
                    break false;
                }
                Step::Took { consumed, event } => (consumed, event),
            };
            used += consumed;
            // Anything at all from the client proves it is there (see the heartbeat).
            self.conns[key].flags.set(Flags::UNHEARD, false);
            match event {
                None | Some(Event::Pong(_)) => {}
                Some(Event::Text(text)) => {
                    answered += 1;
                    let now = self.now();
                    self.chat.socket_said(now, waiter, (at, client), &text);
                    self.carry_out();
                    delivered += self.chat.take_deliveries();
                }
                Some(Event::Binary(_)) => {
                    used = input.len();
                    let why = "binary frames are not spoken here: send JSON text";
                    self.end_socket(waiter, CloseCode::UNSUPPORTED, why);
                }
                Some(Event::Ping(payload)) => {
                    let pong: Rc<[u8]> = ws::encode(Opcode::Pong, &payload).into();
                    self.stream_send(waiter, &pong, false, false);
                }
                Some(Event::Close(close)) => {
                    used = input.len();
                    // Answered with the client's own code (RFC 6455 §5.5.1), then closed.
                    let code = close.map_or(CloseCode::NORMAL, |close| close.code);
                    self.end_socket(waiter, code, "");
                }
            }
        };
        if assembler.in_message() {
            let entry = (waiter.generation, assembler);
            self.sockets.under_way.insert(waiter.key, entry);
        }
        let conn = &mut self.conns[key];
        if socket_at(conn.state()).is_some() && used < input.len() {
            input.drain(..used);
            conn.input = input;
        }
        out_of_budget
    }

    /// Ends a socket with a close frame (`code`, `reason`): written after what it is
    /// owed, then the connection closes.
    pub(super) fn end_socket(&mut self, to: Waiter, code: CloseCode, reason: &str) {
        let frame: Rc<[u8]> = ws::encode_close(code, reason).into();
        self.end_stream_with(to, &frame);
    }

    /// The chat's answer to a socket's post or typing event: its ack frame, and the
    /// socket reads on. Returns false when `to` asked nothing over a socket.
    pub(super) fn ack(&mut self, key: usize, to: Waiter, response: &Response) -> bool {
        let bytes: std::borrow::Cow<[u8]> = match response {
            Response::Owned(bytes) => bytes.into(),
            Response::Shared(bytes) => (&bytes[..]).into(),
            Response::Pieces(_) => return false, // never the answer to a post
        };
        let Some(frame) = self.chat.take_ack(to, &bytes) else {
            return false;
        };
        let conn = &mut self.conns[key];
        if conn.flags.has(Flags::SOCKET_WAITS) {
            conn.flags.set(Flags::SOCKET_WAITS, false);
            // Its wait for Redis is over: back to its stream's own deadline.
            self.rearm_stream_timer(key);
        }
        self.stream_send(to, &frame.into(), false, false);
        // Frames that came behind the post are read on its next turn.
        if self.live(to).is_some() && !self.conns[key].input.is_empty() {
            self.queue_ready(key);
        }
        true
    }

    /// A socket's post waits for Redis: nothing more of its input is acted on until the
    /// answer (or `REPLY_WAIT`), as an HTTP request's would not be.
    pub(super) fn socket_awaits(&mut self, key: usize) {
        self.conns[key].flags.set(Flags::SOCKET_WAITS, true);
        self.set_timer(key, Deadline::Backplane);
    }

    /// A stream's deadline after something else used its timer: its write deadline if it
    /// owes bytes, else its heartbeat.
    pub(super) fn rearm_stream_timer(&mut self, key: usize) {
        let deadline = match self.conns[key].output {
            Some(_) => Deadline::Write,
            None => Deadline::Heartbeat,
        };
        self.set_timer(key, deadline);
    }

    /// A socket's slot is freed: forget any message it had under way.
    pub(super) fn forget_socket(&mut self, key: usize) {
        self.sockets.under_way.remove(&(key as u32));
    }
}
