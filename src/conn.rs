//! One client connection: its socket, the bytes it sent that are not yet handled, the bytes
//! we owe it, and where it is in its life. The server moves it between states; this module
//! only knows how to push bytes out of it.
//!
//! ```text
//!            accept
//!              |
//!              v         a poll                message, event or timeout
//!   +-----> Reading ---------------> Parked ---------------------+
//!   |          |                                                  |
//!   |          | any other request                                v
//!   |          +----------------------------------------------> Writing
//!   |          |
//!   |          | GET /rooms/{room}/events
//!   |          +----------------> Streaming (until either side closes)
//!   |                                                             |
//!   +------------------- keep-alive ------------------------------+
//!                                                                 | close / HTTP/1.0
//!                                                                 v
//!                                         Closed <---------- Lingering
//! ```
//!
//! Memory is the point of this struct: tens of thousands of them sit parked at once, so a
//! parked connection owns no heap buffer (`input` is an empty `Vec`, `output` is `None`).

use crate::clients::ClientId;
use crate::outgoing::{Flushed, Outgoing};
use crate::timer::TimerId;
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
    /// A response is being written; the rest of it is in `output`.
    Writing,
    /// The last response is out and our side is shut down. We read and discard until the
    /// client closes or a short timer fires: closing with unread input would make the kernel
    /// send RST, which can destroy the response before the client reads it.
    Lingering,
    /// Freed at the end of this loop pass; events still naming it are ignored.
    Closed,
}

/// Why a connection's timer is set; decides what happens when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// Reading, nothing buffered: close quietly (idle keep-alive, or a vanished client).
    Idle,
    /// Reading, part of a request buffered: answer 408 and close (slowloris).
    Request,
    /// Parked: answer `{"error":"timeout"}`.
    Poll,
    /// Writing, the socket is full: the client is too slow to read, drop it.
    Write,
    /// Lingering: stop waiting for the client's FIN and close.
    Linger,
    /// Streaming, nothing to send: write a comment line so proxies keep the stream open.
    Heartbeat,
}

/// A connection's pending timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    /// The wheel's handle, to cancel it.
    pub id: TimerId,
    /// What it is for.
    pub deadline: Deadline,
}

/// One client.
pub struct Conn {
    /// Non-blocking, registered once for READABLE | WRITABLE, edge-triggered.
    pub socket: TcpStream,
    /// Distinguishes this client from earlier occupants of the same slab key.
    pub generation: u32,
    /// The client's address, as an entry in the server's table of addresses, for limits
    /// that hold per client rather than per connection.
    pub client: ClientId,
    /// Where the connection is in its life.
    pub state: State,
    /// Bytes received and not yet consumed by a complete request: a partial request, or
    /// requests pipelined behind one still being answered. Empty (and unallocated) between
    /// requests; never longer than the request cap plus one read.
    pub input: Vec<u8>,
    /// The response being written, if any.
    pub output: Option<Outgoing>,
    /// The connection's one pending timer; every state but `Closed` has one (see [`Deadline`]).
    pub timer: Option<Timer>,
    /// Hang up once the current response is written (HTTP/1.0, `Connection: close`, errors).
    pub close_after_write: bool,
    /// The request being answered is HTTP/1.0: if the connection stays open, the response
    /// must say `Connection: keep-alive`, or the client takes it for closed.
    pub http10: bool,
    /// The client closed its sending side (read returned 0).
    pub peer_closed: bool,
    /// We stopped reading before the socket said `WouldBlock` (`input` is full, or the
    /// turn's reading is done); the socket must be read again without waiting for an
    /// event, because an edge-triggered poll will not report the bytes still in it.
    pub input_paused: bool,
    /// In the server's ready queue: it has work left after its turn ended.
    pub ready: bool,
    /// `100 Continue` went out for the request now in `input`: it is sent once per
    /// request, and cleared when that request completes.
    pub continue_sent: bool,
}

impl Conn {
    /// A freshly accepted client, waiting for its first request.
    pub fn new(socket: TcpStream, generation: u32, client: ClientId) -> Conn {
        Conn {
            socket,
            generation,
            client,
            state: State::Reading,
            input: Vec::new(),
            output: None,
            timer: None,
            close_after_write: false,
            http10: false,
            peer_closed: false,
            input_paused: false,
            ready: false,
            continue_sent: false,
        }
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

    /// Writes as much of `output` as the socket takes; once it is all out, `output` is
    /// gone. Returns what that achieved and how many bytes went this time.
    pub fn flush(&mut self) -> io::Result<(Flushed, usize)> {
        let Some(out) = self.output.as_mut() else {
            return Ok((Flushed::Done, 0));
        };
        let (flushed, sent) = out.write_to(&mut self.socket)?;
        if flushed != Flushed::Blocked {
            self.output = None;
        }
        Ok((flushed, sent))
    }

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

    /// The connection record is what tens of thousands of parked polls cost in user space
    /// (with one slab slot, one wheel entry and one waiter each); docs/ARCHITECTURE.md lists
    /// it field by field. Growing it should be a decision, not an accident.
    #[test]
    fn connection_record_stays_small() {
        let size = std::mem::size_of::<Conn>();
        println!(
            "Conn: {size} bytes; slab slot {} bytes",
            std::mem::size_of::<slab::Slab<Conn>>()
        );
        assert!(size <= 112, "Conn grew to {size} bytes");
    }
}
