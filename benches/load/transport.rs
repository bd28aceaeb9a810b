//! The three ways a client waits for a broadcast — `--transport poll|sse|ws` — as the load
//! generator speaks them: what a client sends when it connects, and how the bytes that come
//! back divide into units (an answer, a stream's head, an event, a frame). Knows no
//! sockets, like [`crate::wire`], whose HTTP framing the poll uses.
//!
//! - **poll**: `GET /chat`, answered once per broadcast; the client polls again after each.
//! - **sse**: `GET /rooms/lobby/events?since=HEAD`: one `200` head, then an event per
//!   broadcast (`id:`, `event: message`, `data:`), and comments or the retry hint between.
//! - **ws**: `GET /rooms/lobby/ws?since=HEAD` with the upgrade: one `101` head, then a text
//!   frame per broadcast. Server frames are unmasked: a 2-, 4- or 10-byte header, then the
//!   payload. The client sends nothing after the upgrade: a ping is read past, unanswered
//!   (the bench's server runs with a heartbeat longer than any rung, so none comes).
//!
//! `/chat` is the room `lobby`, so one `POST /chat` reaches all three kinds of client, and
//! the stream clients start at the room's head so nothing is replayed to them.

use crate::wire::{self, Frame};
use std::ops::Range;

/// A fixed, valid `Sec-WebSocket-Key` (RFC 6455's own example): the server only checks it
/// is 16 bytes of base64, and the bench never checks the accept it gets back.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The room every transport's clients wait in: `/chat` is this room.
pub const ROOM: &str = "lobby";

/// How a client waits for a broadcast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The classic long poll, `GET /chat`, sent again after every answer.
    Poll,
    /// Server-Sent Events, `GET /rooms/lobby/events`.
    Sse,
    /// WebSocket, `GET /rooms/lobby/ws`.
    Ws,
}

impl Transport {
    /// All three, in the order a side-by-side run measures them.
    pub const ALL: [Transport; 3] = [Transport::Poll, Transport::Sse, Transport::Ws];

    /// `poll`, `sse` or `ws`, as on the command line.
    pub fn parse(text: &str) -> Option<Transport> {
        match text {
            "poll" => Some(Transport::Poll),
            "sse" => Some(Transport::Sse),
            "ws" => Some(Transport::Ws),
            _ => None,
        }
    }

    /// The name the command line and the report use.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Poll => "poll",
            Transport::Sse => "sse",
            Transport::Ws => "ws",
        }
    }

    /// What a client sends when it connects. A stream starts after `since` (the room's
    /// head, so nothing is replayed); a poll has no position.
    pub fn request(self, since: &str) -> Vec<u8> {
        match self {
            Transport::Poll => wire::GET_CHAT.to_vec(),
            Transport::Sse => {
                format!("GET /rooms/{ROOM}/events?since={since} HTTP/1.1\r\nHost: bench\r\n\r\n")
                    .into_bytes()
            }
            Transport::Ws => format!(
                "GET /rooms/{ROOM}/ws?since={since} HTTP/1.1\r\nHost: bench\r\n\
                 Upgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .into_bytes(),
        }
    }

    /// Whether a client must ask again after every broadcast (only the poll does).
    pub fn repolls(self) -> bool {
        self == Transport::Poll
    }

    /// The status of the head that opens a stream; `None` for the poll, whose every answer
    /// is a whole response.
    pub fn head_status(self) -> Option<u16> {
        match self {
            Transport::Poll => None,
            Transport::Sse => Some(200),
            Transport::Ws => Some(101),
        }
    }
}

/// What the front of a client's input holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Unit {
    /// Not a whole unit yet; normal between reads.
    Partial,
    /// Nothing a client can read past; it gives up on the connection.
    Invalid(&'static str),
    /// The server closed the stream (a WebSocket close frame).
    Closed,
    /// A stream's HTTP head, `len` bytes, with its status.
    Head {
        /// Bytes, through the blank line.
        len: usize,
        /// The status code.
        status: u16,
    },
    /// What a broadcast arrives in: a poll's answer, an SSE event with data, a text frame.
    Item {
        /// Bytes of the whole unit.
        len: usize,
        /// The HTTP status of a poll's answer; 200 for a stream's items.
        status: u16,
        /// Where the text to look for the round's token in lies.
        body: Range<usize>,
    },
    /// Something a client reads past: the SSE retry hint or a comment, a ping or a pong.
    Skip {
        /// Bytes of the whole unit.
        len: usize,
    },
}

/// The unit at the front of `buf`, for a client of `transport` that has (`head_seen`) or
/// has not yet read its stream's head.
pub fn unit(transport: Transport, head_seen: bool, buf: &[u8]) -> Unit {
    match transport {
        Transport::Poll => match wire::frame(buf) {
            Frame::Partial => Unit::Partial,
            Frame::Invalid => Unit::Invalid("unframeable answer"),
            Frame::Complete { len, status } => {
                let body_len = wire::body(&buf[..len]).len();
                Unit::Item {
                    len,
                    status,
                    body: len - body_len..len,
                }
            }
        },
        _ if !head_seen => stream_head(buf),
        Transport::Sse => sse_event(buf),
        Transport::Ws => ws_frame(buf),
    }
}

/// A stream's head: a status line and headers, no body.
fn stream_head(buf: &[u8]) -> Unit {
    let Some(end) = wire::find(buf, b"\r\n\r\n") else {
        return if buf.len() > wire::RESPONSE_CAP_BYTES {
            Unit::Invalid("stream head over the cap")
        } else {
            Unit::Partial
        };
    };
    let status = buf
        .get(..12)
        .filter(|line| line.starts_with(b"HTTP/1.1 "))
        .and_then(|line| std::str::from_utf8(&line[9..12]).ok())
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(status) => Unit::Head {
            len: end + 4,
            status,
        },
        None => Unit::Invalid("no status line"),
    }
}

/// One SSE event: lines up to a blank line. One with a `data:` line is an item; the retry
/// hint and comments (`: keep-alive`) have none. The server ends lines with LF alone.
fn sse_event(buf: &[u8]) -> Unit {
    let Some(end) = wire::find(buf, b"\n\n") else {
        return if buf.len() > wire::RESPONSE_CAP_BYTES {
            Unit::Invalid("event over the cap")
        } else {
            Unit::Partial
        };
    };
    let len = end + 2;
    let has_data = buf[..len]
        .split(|&b| b == b'\n')
        .any(|line| line.starts_with(b"data:"));
    if has_data {
        Unit::Item {
            len,
            status: 200,
            body: 0..len,
        }
    } else {
        Unit::Skip { len }
    }
}

/// One server frame: FIN and opcode, then the unmasked length (7 bits, or 126 and 16 bits,
/// or 127 and 64 bits), then the payload.
fn ws_frame(buf: &[u8]) -> Unit {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Unit::Partial;
    };
    if b1 & 0x80 != 0 {
        return Unit::Invalid("masked server frame");
    }
    if b0 & 0x70 != 0 {
        return Unit::Invalid("reserved bits set");
    }
    let (header, payload) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(ext) => (4, u64::from(u16::from_be_bytes([ext[0], ext[1]]))),
            None => return Unit::Partial,
        },
        127 => match buf.get(2..10) {
            Some(ext) => {
                let mut bytes = [0; 8];
                bytes.copy_from_slice(ext);
                (10, u64::from_be_bytes(bytes))
            }
            None => return Unit::Partial,
        },
        short => (2, u64::from(short)),
    };
    // Judged from the header, before the payload is waited for.
    let Some(len) = usize::try_from(payload)
        .ok()
        .and_then(|p| p.checked_add(header))
        .filter(|&len| len <= wire::RESPONSE_CAP_BYTES)
    else {
        return Unit::Invalid("frame over the cap");
    };
    if buf.len() < len {
        return Unit::Partial;
    }
    let fin = b0 & 0x80 != 0;
    match b0 & 0x0f {
        0x1 if fin => Unit::Item {
            len,
            status: 200,
            body: header..len,
        },
        0x1 => Unit::Invalid("fragmented text frame"),
        0x8 => Unit::Closed,
        0x9 | 0xA => Unit::Skip { len },
        _ => Unit::Invalid("unexpected opcode"),
    }
}

/// The bytes the server writes one client for a broadcast of `text`, for the kernel
/// floor to write the same: encoded by the server's own functions, with a position, name
/// and time of the lengths a fresh server's first messages have.
pub fn broadcast_bytes(transport: Transport, text: &str) -> Vec<u8> {
    use comet_chat::{answer, position::Position, sse, websocket};
    let id = Position {
        epoch: 0x5f3a_09c2,
        seq: 1,
    };
    let time_ms = 1_796_000_000_000;
    let json = answer::message_json(id, "anonymous", text, time_ms);
    match transport {
        Transport::Poll => answer::classic_message(text).to_vec(),
        Transport::Sse => sse::message_frame(id, &json).0.into_bytes(),
        Transport::Ws => websocket::message(json.as_bytes()).to_vec(),
    }
}

/// What opens each of the floor's streams: the head (and SSE's retry hint) a server sends
/// before its first broadcast. Nothing for the poll.
pub fn stream_opening(transport: Transport) -> Vec<u8> {
    match transport {
        Transport::Poll => Vec::new(),
        Transport::Sse => {
            let mut out = comet_chat::answer::stream_head(&[]);
            out.extend_from_slice(comet_chat::sse::RETRY_HINT);
            out
        }
        Transport::Ws => format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            comet_chat::ws::accept_key(WS_KEY)
        )
        .into_bytes(),
    }
}
