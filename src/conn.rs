//! One client connection: its socket, the bytes it sent that are not yet handled, the bytes
//! we owe it, and where it is in its life. Every change of state is one of the methods
//! below, and each goes through `Conn::enter`, which knows the diagram; none of them
//! touches a socket, so the whole life of a connection is tested without one.
//!
//! ```text
//!            accept
//!              |
//!              v         a poll                  message, event or timeout
//!   +-----> Reading -----------------> Parked ---------------------+
//!   |        | | ^                                                  |
//!   |        | | |    carry on (--redis: its room is now loaded)    |
//!   |        | | +------------------+                               v
//!   |        | +---> Awaiting ------+---------- the answer ----> Writing
//!   |        |   a post, or a read of a room not yet loaded        ^  |
//!   |        |                                                     |  |
//!   |        +-------------------- any other request --------------+  |
//!   |        |                                                     |  |
//!   |        +-- GET /rooms/{room}/events --> Streaming -----------+  |
//!   |        |                                 ended for shutdown     |
//!   |        +-- (admin port) GET /loop/events --> Viewing            |
//!   +------------------------------ keep-alive -----------------------+
//!                                                                     | close / HTTP/1.0
//!                                                                     v
//!                    any state -----------------> Closed <-------- Lingering
//!                    (error, timeout, client gone)
//! ```
//!
//! Memory is the point of this struct: tens of thousands of them sit parked at once, so a
//! parked connection owns no heap buffer (`input` is an empty `Vec`, `output` is `None`).

use crate::answer;
use crate::clients::ClientId;
use crate::outgoing::{Flushed, Outgoing, Response};
use crate::timer::{ShortTick, TimerId};
use crate::waitlist::ListKind;
use mio::net::TcpStream;
use std::io::{self, Write};

/// Which waiting list a connection is in, and where: kept so that leaving is O(1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Membership {
    /// The room's id in the chat.
    pub room: u32,
    /// Which of the room's lists.
    pub list: ListKind,
    /// Index in that list.
    pub index: u32,
}

/// Where a connection is in its life. See the module diagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting for (the rest of) a request.
    Reading,
    /// A pending poll (classic `GET /chat` or `GET /rooms/{room}/messages`), waiting for a
    /// message, an event or its timeout.
    Parked(Membership),
    /// An SSE stream: its response never ends; events are written as they happen.
    Streaming(Membership),
    /// With `--redis`: the request waits for Redis (a post until it is stored, a read until
    /// its room is loaded). Nothing more is read from it until it is answered or carries on.
    Awaiting,
    /// A response is being written; the rest of it is in `output`.
    Writing,
    /// The last response is out and our side is shut down. We read and discard until the
    /// client closes or a short timer fires: closing with unread input would make the kernel
    /// send RST, which can destroy the response before the client reads it.
    Lingering,
    /// Admin port only: an X-ray viewer, sent a frame every tick until it leaves, falls
    /// too far behind, or takes nothing for the write timeout. Like `Streaming`, but in no
    /// room's list: nothing of the chat's reaches it.
    Viewing,
    /// Freed at the end of this loop pass; events still naming it are ignored.
    Closed,
}

impl State {
    /// The arrows of the diagram, and no others.
    pub fn may_become(self, next: State) -> bool {
        use State::*;
        matches!(
            (self, next),
            (
                Reading,
                Parked(_) | Streaming(_) | Viewing | Writing | Awaiting
            ) | (Parked(_) | Streaming(_) | Awaiting, Writing)
                | (Awaiting, Reading)
                | (Writing, Reading | Lingering)
        ) || (next == Closed && self != Closed)
    }
}

/// Why a connection's timer is set; decides what happens when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// Reading, nothing buffered: close quietly (idle keep-alive, or a vanished client).
    Idle,
    /// Reading, part of a request buffered: answer 408 and close (slowloris).
    Request,
    /// Parked: answer that nothing came.
    Poll,
    /// Writing, the socket is full: the client took no byte for this long, drop it.
    Write,
    /// Lingering: stop waiting for the client's FIN and close.
    Linger,
    /// Streaming, nothing to send: write a comment line so proxies keep the stream open.
    Heartbeat,
    /// Awaiting (or a WebSocket whose post waits): Redis did not answer in time; tell the
    /// client to come back.
    Backplane,
    /// A WebSocket opened without `?since=` has not said where to resume: replay from the
    /// start ([`crate::chat::RESUME_WAIT`]).
    Resume,
}

/// A connection's deadline, kept here rather than in the wheel, and the wheel entry that
/// wakes the loop for it. Setting, moving or clearing the deadline writes these 16 bytes
/// and nothing else, so a delivery (poll deadline cleared, idle deadline set) and a
/// re-park (idle cleared, poll set) touch no wheel entry: the entry filed for an earlier
/// deadline still fires no later than the new one, and when it fires `at` says whether
/// the deadline is due or the entry is filed again for `at` (see `src/server/timers.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timer {
    /// What the deadline is for; `None`: no deadline (a filed entry then fires for
    /// nothing, once, and is not filed again).
    pub deadline: Option<Deadline>,
    /// When the deadline is due, in wheel ticks; meaningful while `deadline` is set.
    pub at: ShortTick,
    /// The wheel entry filed for this connection, if any. While both this and `deadline`
    /// are set, the entry is due at `filed_at`, no later than `at`: a deadline is never
    /// late, at worst the loop wakes once early for it.
    pub filed: Option<TimerId>,
    /// When the filed entry is due; meaningful while `filed` is set.
    pub filed_at: ShortTick,
}

/// What follows a response that is all out.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterResponse {
    /// Back to reading; `ready` when input is waiting (buffered or left in the kernel), so
    /// the connection must get a turn without waiting for an event.
    NextRequest {
        /// Input is waiting.
        ready: bool,
    },
    /// The server hangs up: shut our side and linger.
    HangUp,
}

/// One client. `S` is the socket: a `mio::net::TcpStream` in the server, anything (even
/// `()`) in tests of the state machine.
pub struct Conn<S = TcpStream> {
    /// Non-blocking, registered once for READABLE | WRITABLE, edge-triggered.
    pub socket: S,
    /// Distinguishes this client from earlier occupants of the same slab key.
    pub generation: u32,
    /// The client's address, as an entry in the server's table of addresses, for limits
    /// that hold per client rather than per connection. Behind a trusted proxy, the client
    /// it named (see [`Flags::PROXIED`]), which may change from one request to the next.
    pub client: ClientId,
    /// Where the connection is in its life; changed only by `Conn::enter`.
    state: State,
    /// Bytes received and not yet consumed by a complete request: a partial request, or
    /// requests pipelined behind one still being answered. Empty (and unallocated) between
    /// requests; never longer than the request cap plus one read.
    pub input: Vec<u8>,
    /// The response being written, if any.
    pub output: Option<Outgoing>,
    /// The connection's one deadline; every state but `Closed` has one (see
    /// [`Deadline`]), save a viewer that is not behind.
    pub timer: Timer,
    /// Yes-or-no facts about the connection (see [`Flags`]), two bytes between them.
    pub flags: Flags,
}

/// Yes-or-no facts about a connection, one bit each, so that they cost two bytes between
/// them rather than one each: tens of thousands of connections sit parked, and nine bools
/// would grow every one of them by 16 bytes (two bytes of flags fit in padding the record
/// has anyway: see `connection_record_stays_small`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(u16);

impl Flags {
    /// Hang up once the current response is written (HTTP/1.0, `Connection: close`, errors).
    pub const CLOSE_AFTER_WRITE: Flags = Flags(1);
    /// The request being answered is HTTP/1.0: if the connection stays open, the response
    /// must say `Connection: keep-alive`, or the client takes it for closed.
    pub const HTTP10: Flags = Flags(1 << 1);
    /// The client closed its sending side (read returned 0).
    pub const PEER_CLOSED: Flags = Flags(1 << 2);
    /// We stopped reading before the socket said `WouldBlock` (`input` is full, or the
    /// turn's reading is done); the socket must be read again without waiting for an
    /// event, because an edge-triggered poll will not report the bytes still in it.
    pub const INPUT_PAUSED: Flags = Flags(1 << 3);
    /// In the server's ready queue: it has work left after its turn ended.
    pub const READY: Flags = Flags(1 << 4);
    /// `100 Continue` went out for the request now in `input`: it is sent once per
    /// request, and cleared when that request completes.
    pub const CONTINUE_SENT: Flags = Flags(1 << 5);
    /// The peer is a trusted proxy (`--trusted-proxy`): `client` is whom it named, not the
    /// peer. Without `--proxy-protocol` each request's `X-Forwarded-For` names it anew.
    pub const PROXIED: Flags = Flags(1 << 6);
    /// With `--proxy-protocol`, from a trusted peer: a PROXY header is due before the
    /// first request, and nothing is parsed as HTTP until it is in.
    pub const PROXY_HEADER_DUE: Flags = Flags(1 << 7);
    /// Accepted on the admin listener (`--admin-addr`): its requests go to the admin
    /// routes, never to the chat, and it counts against the admin port's cap alone, not
    /// `--max-conns`. Everything else about it (reading, writing, timers, closing,
    /// reaping) is every connection's.
    pub const ADMIN: Flags = Flags(1 << 8);
    /// A WebSocket whose post waits for Redis: nothing more of its input is acted on
    /// until the answer, as with an HTTP request in `Awaiting`.
    pub const SOCKET_WAITS: Flags = Flags(1 << 9);
    /// A WebSocket sent a ping for being quiet and has said nothing since: if its next
    /// heartbeat finds it still so, it is dropped.
    pub const UNHEARD: Flags = Flags(1 << 10);

    /// Whether `flag` is set.
    pub fn has(self, flag: Flags) -> bool {
        self.0 & flag.0 != 0
    }

    /// Sets or clears `flag`.
    pub fn set(&mut self, flag: Flags, on: bool) {
        if on {
            self.0 |= flag.0;
        } else {
            self.0 &= !flag.0;
        }
    }
}

impl<S> Conn<S> {
    /// A freshly accepted client, waiting for its first request.
    pub fn new(socket: S, generation: u32, client: ClientId) -> Conn<S> {
        Conn {
            socket,
            generation,
            client,
            state: State::Reading,
            input: Vec::new(),
            output: None,
            timer: Timer::default(),
            flags: Flags::default(),
        }
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> State {
        self.state
    }

    /// The one place a connection changes state: every arrow of the diagram, no other.
    fn enter(&mut self, next: State) {
        debug_assert!(
            self.state.may_become(next),
            "no arrow from {:?} to {next:?}",
            self.state
        );
        self.state = next;
    }

    /// Reading → Parked: a poll waits in a room's list until a message, an event or its
    /// timeout.
    pub fn park(&mut self, membership: Membership, close: bool) {
        self.flags.set(Flags::CLOSE_AFTER_WRITE, close);
        self.enter(State::Parked(membership));
    }

    /// Reading → Streaming: an event stream, whose first bytes (head and replay) are
    /// `output`. Its response never ends, so nothing it sends afterwards is a request.
    pub fn start_stream(&mut self, membership: Membership, output: Outgoing) {
        debug_assert!(self.output.is_none(), "one response at a time");
        self.flags.set(Flags::CLOSE_AFTER_WRITE, false);
        self.output = Some(output);
        self.enter(State::Streaming(membership));
    }

    /// Reading → Viewing (admin port): an X-ray viewer, whose first bytes (the stream's
    /// head) are `output`; frames follow every tick, never a request.
    pub fn start_viewing(&mut self, output: Outgoing) {
        debug_assert!(self.output.is_none(), "one response at a time");
        debug_assert!(self.flags.has(Flags::ADMIN), "viewers are the admin port's");
        self.flags.set(Flags::CLOSE_AFTER_WRITE, false);
        self.input = Vec::new();
        self.output = Some(output);
        self.enter(State::Viewing);
    }

    /// Reading → Awaiting: the request waits for Redis.
    pub fn await_backplane(&mut self, close: bool) {
        self.flags.set(Flags::CLOSE_AFTER_WRITE, close);
        self.enter(State::Awaiting);
    }

    /// Awaiting → Reading: what the request waited for is here; it is handled again.
    pub fn carry_on(&mut self) {
        self.enter(State::Reading);
    }

    /// A waiter that sat at the end of the list moved into a hole at `index` (not a change
    /// of state: the connection still waits, elsewhere in the same list).
    pub fn moved_in_list(&mut self, index: u32) {
        match &mut self.state {
            State::Parked(m) | State::Streaming(m) => m.index = index,
            other => debug_assert!(false, "a waiter in state {other:?}"),
        }
    }

    /// Reading, Parked, Streaming or Awaiting → Writing: the response is `response`. It goes out
    /// saying what becomes of the connection after it (`close`, or what the request asked),
    /// which is where that line is added: responses are encoded without it, to be shared.
    pub fn respond(&mut self, response: Response, close: bool) {
        debug_assert!(self.output.is_none(), "one response at a time");
        if close {
            self.flags.set(Flags::CLOSE_AFTER_WRITE, true);
        }
        let closing = self.flags.has(Flags::CLOSE_AFTER_WRITE);
        let response = answer::for_connection(response, closing, self.flags.has(Flags::HTTP10));
        self.output = Some(Outgoing::new(response));
        self.enter(State::Writing);
    }

    /// Streaming → Writing: the stream's response ends with what is queued (the server is
    /// stopping and has told it when to come back); then the server hangs up.
    pub fn end_stream(&mut self) {
        self.flags.set(Flags::CLOSE_AFTER_WRITE, true);
        self.enter(State::Writing);
    }

    /// Writing → Reading, once the response is all out; or the server hangs up.
    pub fn response_done(&mut self) -> AfterResponse {
        if self.flags.has(Flags::CLOSE_AFTER_WRITE) || self.flags.has(Flags::PEER_CLOSED) {
            return AfterResponse::HangUp;
        }
        self.enter(State::Reading);
        AfterResponse::NextRequest {
            ready: !self.input.is_empty() || self.flags.has(Flags::INPUT_PAUSED),
        }
    }

    /// Writing → Lingering: our side is shut; what the client still sends is discarded.
    pub fn linger(&mut self) {
        self.input = Vec::new();
        self.enter(State::Lingering);
    }

    /// Any state → Closed: freed at the end of the pass. What it owed and was owed is
    /// dropped now.
    pub fn close(&mut self) {
        self.output = None;
        self.input = Vec::new();
        self.enter(State::Closed);
    }
}

impl<S: Write> Conn<S> {
    /// Writes as much of `output` as the socket takes; once it is all out, `output` is
    /// gone. Returns what that achieved and how many bytes went this time; adds the
    /// `write`/`writev` calls it made to `writes`.
    pub fn flush(&mut self, writes: &mut u64) -> io::Result<(Flushed, usize)> {
        let Some(out) = self.output.as_mut() else {
            return Ok((Flushed::Done, 0));
        };
        let mut counted = Counted {
            inner: &mut self.socket,
            calls: writes,
        };
        let (flushed, sent) = out.write_to(&mut counted)?;
        if flushed != Flushed::Blocked {
            self.output = None;
        }
        Ok((flushed, sent))
    }

    /// Writes an interim (1xx) response straight to the socket. Only called while Reading,
    /// when nothing of ours is queued (`output` is empty), so it cannot overtake anything.
    /// A full socket buffer (nothing written) is fine: the interim response is advisory, and
    /// a client waiting for it sends its body anyway after its own timeout. Err when only
    /// part went out, or the socket failed: the connection must then close, since a torn
    /// status line would corrupt the next response.
    pub fn write_interim(&mut self, bytes: &[u8]) -> io::Result<()> {
        debug_assert!(
            self.output.is_none(),
            "an interim response would overtake output"
        );
        loop {
            match self.socket.write(bytes) {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(_) => return Err(io::ErrorKind::WriteZero.into()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A writer that counts the calls made to it: each is one system call on a socket.
struct Counted<'a, W> {
    inner: &'a mut W,
    calls: &'a mut u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        *self.calls += 1;
        self.inner.write(bytes)
    }

    fn write_vectored(&mut self, slices: &[io::IoSlice<'_>]) -> io::Result<usize> {
        *self.calls += 1;
        self.inner.write_vectored(slices)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Conn<TcpStream> {
    /// The client's address for log lines; a syscall, so only call it when logging.
    pub fn peer(&self) -> String {
        match self.socket.peer_addr() {
            Ok(addr) => addr.to_string(),
            Err(_) => "(gone)".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Conn<()> {
        Conn::new((), 1, 0)
    }

    fn member() -> Membership {
        Membership {
            room: 0,
            list: ListKind::Poll,
            index: 3,
        }
    }

    fn answer(status_line: &str) -> Response {
        Response::Owned(format!("{status_line}\r\nContent-Length: 0\r\n\r\n").into_bytes())
    }

    /// Every arrow of the diagram, in the order a client meets them.
    #[test]
    fn a_poll_a_request_a_stream_and_a_hang_up() {
        let mut c = conn();
        assert_eq!(c.state(), State::Reading);
        // Reading → Parked → Writing → Reading (keep-alive).
        c.park(member(), false);
        assert_eq!(c.state(), State::Parked(member()));
        c.moved_in_list(1);
        assert!(matches!(c.state(), State::Parked(m) if m.index == 1));
        c.respond(answer("HTTP/1.1 200 OK"), false);
        assert_eq!(c.state(), State::Writing);
        c.output = None; // written
        assert_eq!(
            c.response_done(),
            AfterResponse::NextRequest { ready: false }
        );
        assert_eq!(c.state(), State::Reading);
        // Reading → Writing with input behind it: the next request is ready at once.
        c.input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        c.respond(answer("HTTP/1.1 200 OK"), false);
        c.output = None;
        assert_eq!(
            c.response_done(),
            AfterResponse::NextRequest { ready: true }
        );
        c.input.clear();
        // Reading → Streaming → Writing (ended for shutdown) → Lingering → Closed.
        c.start_stream(member(), Outgoing::new(Response::Owned(b"head".to_vec())));
        assert_eq!(c.state(), State::Streaming(member()));
        c.end_stream();
        assert_eq!(c.state(), State::Writing);
        c.output = None;
        assert_eq!(c.response_done(), AfterResponse::HangUp);
        c.linger();
        assert_eq!(c.state(), State::Lingering);
        c.close();
        assert_eq!(c.state(), State::Closed);
    }

    /// With --redis: a request waits for Redis, then either carries on or is answered.
    #[test]
    fn a_request_awaits_the_backplane() {
        let mut c = conn();
        c.await_backplane(false);
        assert_eq!(c.state(), State::Awaiting);
        c.carry_on();
        assert_eq!(c.state(), State::Reading);
        c.await_backplane(true);
        c.respond(answer("HTTP/1.1 201 Created"), false);
        assert_eq!(c.state(), State::Writing);
        c.output = None;
        assert_eq!(
            c.response_done(),
            AfterResponse::HangUp,
            "it asked to close"
        );
    }

    /// Any state can close, and closing drops what was owed either way.
    #[test]
    fn any_state_closes() {
        let reading = conn();
        let mut parked = conn();
        parked.park(member(), false);
        let mut streaming = conn();
        streaming.start_stream(member(), Outgoing::new(Response::Owned(b"x".to_vec())));
        let mut writing = conn();
        writing.respond(answer("HTTP/1.1 200 OK"), false);
        let mut awaiting = conn();
        awaiting.await_backplane(false);
        let mut lingering = conn();
        lingering.respond(answer("HTTP/1.1 200 OK"), true);
        lingering.output = None;
        assert_eq!(lingering.response_done(), AfterResponse::HangUp);
        lingering.linger();
        let mut viewing = conn();
        viewing.flags.set(Flags::ADMIN, true);
        viewing.start_viewing(Outgoing::new(Response::Owned(b"head".to_vec())));
        for mut c in [
            reading, parked, streaming, viewing, awaiting, writing, lingering,
        ] {
            let from = c.state();
            c.close();
            assert_eq!(c.state(), State::Closed, "from {from:?}");
            assert!(c.output.is_none() && c.input.is_empty());
        }
    }

    #[test]
    fn only_the_arrows_of_the_diagram_are_allowed() {
        let parked = State::Parked(member());
        let streaming = State::Streaming(member());
        use State::*;
        let allowed = [
            (Reading, parked),
            (Reading, streaming),
            (Reading, Viewing),
            (Reading, Writing),
            (Reading, Awaiting),
            (parked, Writing),
            (streaming, Writing),
            (Awaiting, Writing),
            (Awaiting, Reading),
            (Writing, Reading),
            (Writing, Lingering),
        ];
        let all = [
            Reading, parked, streaming, Viewing, Awaiting, Writing, Lingering, Closed,
        ];
        for from in all {
            for to in all {
                let expected = allowed.contains(&(from, to)) || (to == Closed && from != Closed);
                assert_eq!(from.may_become(to), expected, "{from:?} → {to:?}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "no arrow from Parked")]
    #[cfg(debug_assertions)]
    fn a_missing_arrow_is_caught() {
        let mut c = conn();
        c.park(member(), false);
        c.start_stream(member(), Outgoing::new(Response::Owned(Vec::new())));
    }

    /// A response says what becomes of its connection: the line is added here, where it
    /// meets the connection, so responses shared by many stay the same bytes.
    #[test]
    fn a_response_gets_the_connection_line_its_connection_needs() {
        let cases = [
            (false, false, false, None),
            (true, false, false, Some("Connection: close")),
            (false, true, false, Some("Connection: keep-alive")),
            (false, false, true, Some("Connection: close")),
        ];
        for (close, http10, asked_close, line) in cases {
            let mut c = Conn::new(Vec::<u8>::new(), 1, 0);
            c.flags.set(Flags::HTTP10, http10);
            c.flags.set(Flags::CLOSE_AFTER_WRITE, asked_close);
            let shared: std::rc::Rc<[u8]> =
                std::rc::Rc::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"[..]);
            c.respond(Response::Shared(shared), close);
            c.flush(&mut 0).unwrap();
            let sent = String::from_utf8(c.socket.clone()).unwrap();
            match line {
                Some(line) => assert!(sent.contains(&format!("\r\n{line}\r\n\r\n{{}}")), "{sent}"),
                None => assert!(!sent.contains("Connection:"), "{sent}"),
            }
        }
    }

    /// The connection record is what tens of thousands of parked polls cost in user space
    /// (with one slab slot, one wheel entry and one waiter each); docs/ARCHITECTURE.md lists
    /// it field by field. Growing it should be a decision, not an accident. (In a debug
    /// build mio's socket also carries a registry id, which makes it 16 bytes, not 4.)
    #[test]
    fn connection_record_stays_small() {
        let size = std::mem::size_of::<Conn>();
        println!("Conn: {size} bytes");
        // 104: the deadline kept beside its wheel entry (`Timer`, 16 bytes, was 8) saves
        // two wheel operations per delivery and two per re-park, for 8 bytes a connection.
        let limit = if cfg!(debug_assertions) { 120 } else { 104 };
        assert!(size <= limit, "Conn grew to {size} bytes");
    }
}
