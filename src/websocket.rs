//! Every frame the chat writes over WebSocket (`GET /rooms/{room}/ws`) is spelled here, as
//! `sse.rs` spells the event stream's: the same events, each one JSON object in one text
//! frame, with its `type` inside (a WebSocket has no `event:` line). The frames that only
//! this transport has are here too: the ack of a post or typing event, sent with the very
//! status and error text the HTTP API would have answered (read back from that answer, so
//! the two can never disagree), and the closes that end the shutdown and expiry notices.

use crate::answer;
use crate::event::Event;
use crate::outgoing::Piece;
use crate::position::Position;
use crate::ws::{self, CloseCode, Opcode, ServerHeader};
use serde::Serialize;
use std::rc::Rc;

/// What a stored message's JSON (`{"id":…,…}`) is preceded by in its frame: the type,
/// which then runs on into the message's own fields.
const MESSAGE_START: &[u8] = b"{\"type\":\"message\",";

/// A text frame carrying `json`.
pub fn text(json: &[u8]) -> Vec<u8> {
    ws::encode(Opcode::Text, json)
}

/// The frame of a stored message, from its JSON as the history keeps it: built once per
/// broadcast and shared by every WebSocket in the room.
pub fn message(json: &[u8]) -> Rc<[u8]> {
    let mut frame = Vec::with_capacity(json.len() + 32);
    let pieces = message_head(json.len());
    frame.extend_from_slice(&pieces);
    frame.extend_from_slice(&json[1..]);
    frame.into()
}

/// A stored message in a replay: its frame's head, built here, and the rest of its JSON
/// shared with the history (no copy of the message per client).
pub fn message_pieces(json: Piece) -> [Piece; 2] {
    let Piece::Shared { bytes, start, end } = json else {
        // The history's messages are always shared; copy anything else whole.
        let frame = message(json.as_bytes());
        return [Piece::Owned(frame.to_vec()), Piece::Static(b"")];
    };
    let head = message_head((end - start) as usize);
    let rest = Piece::Shared {
        bytes,
        start: start + 1,
        end,
    };
    [Piece::Owned(head), rest]
}

/// The frame header and the `{"type":"message",` that replaces the `{` of a message's
/// JSON of `json_len` bytes.
fn message_head(json_len: usize) -> Vec<u8> {
    let payload = json_len - 1 + MESSAGE_START.len();
    let header = ServerHeader::new(Opcode::Text, payload);
    let mut head = Vec::with_capacity(ws::MAX_SERVER_HEADER_BYTES + MESSAGE_START.len());
    head.extend_from_slice(header.as_bytes());
    head.extend_from_slice(MESSAGE_START);
    head
}

/// Ephemeral events, one frame each, back to back: one write however many there are.
pub fn events(events: &[Event]) -> Vec<u8> {
    let mut frames = Vec::new();
    for event in events {
        ws::encode_into(
            &mut frames,
            Opcode::Text,
            answer::event_json(event).as_bytes(),
        );
    }
    frames
}

/// Messages this socket was owed are gone; `next` is the room's head.
pub fn gap(next: Position) -> Vec<u8> {
    text(format!("{{\"type\":\"gap\",\"next\":\"{next}\"}}").as_bytes())
}

/// The token ran out: say so, then close with 1008 (a policy: this token no longer
/// grants the room). The client fetches a new token and reconnects from its last id.
pub fn expired() -> Vec<u8> {
    let mut frames = text(b"{\"type\":\"expired\",\"error\":\"token expired\"}");
    frames.extend_from_slice(&ws::encode_close(CloseCode::POLICY, "token expired"));
    frames
}

/// The server is stopping: come back after `delay_ms` (random per client), then close
/// with 1001, going away.
pub fn shutdown(delay_ms: u64) -> Vec<u8> {
    let notice = format!("{{\"type\":\"shutdown\",\"retry_after_ms\":{delay_ms}}}");
    let mut frames = text(notice.as_bytes());
    frames.extend_from_slice(&ws::encode_close(
        CloseCode::GOING_AWAY,
        "server shutting down",
    ));
    frames
}

/// A client frame we cannot act on (not JSON, an unknown type): said, and the socket
/// stays open.
pub fn error(status: u16, message: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Error<'a> {
        r#type: &'static str,
        status: u16,
        error: &'a str,
    }
    let error = Error {
        r#type: "error",
        status,
        error: message,
    };
    text(serde_json::to_string(&error).unwrap_or_default().as_bytes())
}

/// What a post or typing frame was for, said in its ack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Asked {
    /// `{"type":"post",…}`.
    Post,
    /// `{"type":"typing"}`.
    Typing,
}

/// The ack of a post or typing frame, read from the HTTP answer the same request would
/// have had (`response`, a whole response the server built): its status, its `id` (a
/// post taken), its `error` (a refusal) and its `Retry-After`. `client_id` is echoed.
pub fn ack(response: &[u8], asked: Asked, client_id: Option<&str>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Ack<'a> {
        r#type: &'static str,
        r#for: Asked,
        status: u16,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<&'a str>,
    }
    let answer = read_answer(response);
    let field = |name: &str| {
        answer.body.as_ref().and_then(|body| {
            body.get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        })
    };
    let ack = Ack {
        r#type: "ack",
        r#for: asked,
        status: answer.status,
        id: field("id"),
        error: field("error"),
        retry_after: answer.retry_after,
        client_id,
    };
    text(serde_json::to_string(&ack).unwrap_or_default().as_bytes())
}

/// The parts of one of our own HTTP answers an ack repeats.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Option<serde_json::Value>,
}

/// Reads back an answer this server built (never a client's bytes): its status line,
/// `Retry-After`, and JSON body. Anything unreadable (which would be our bug) reads as a
/// 500 with no body rather than a panic.
fn read_answer(response: &[u8]) -> Answer {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = parsed.parse(response) else {
        debug_assert!(false, "an answer we built does not parse");
        return Answer {
            status: 500,
            retry_after: None,
            body: None,
        };
    };
    let retry_after = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok());
    Answer {
        status: parsed.code.unwrap_or(500),
        retry_after,
        body: serde_json::from_slice(&response[head_len..]).ok(),
    }
}

/// The server's ping, empty: sent on the heartbeat interval to a quiet socket.
pub fn ping() -> Vec<u8> {
    ws::encode(Opcode::Ping, b"")
}

/// The 101 that turns the request into a WebSocket.
pub fn switching_protocols(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::{Also, Replies};
    use crate::http::Status;

    /// Decodes one server frame (unmasked) for the tests: its opcode bits and payload.
    fn unframe(bytes: &[u8]) -> (u8, Vec<u8>, usize) {
        let len7 = (bytes[1] & 0x7f) as usize;
        let (len, at) = match len7 {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n, 2),
        };
        (bytes[0] & 0x0f, bytes[at..at + len].to_vec(), at + len)
    }

    fn json(bytes: &[u8]) -> serde_json::Value {
        let (opcode, payload, used) = unframe(bytes);
        assert_eq!(opcode, 1, "a text frame");
        assert_eq!(used, bytes.len(), "one frame");
        serde_json::from_slice(&payload).unwrap()
    }

    #[test]
    fn a_message_frame_is_its_json_with_a_type() {
        let stored: Rc<[u8]> = Rc::from(&b"xx{\"id\":\"1-2\",\"text\":\"hi\"}yy"[..]);
        let piece = Piece::slice(&stored, 2..stored.len() - 2);
        let whole = message(piece.as_bytes());
        let value = json(&whole);
        assert_eq!(value["type"], "message");
        assert_eq!(value["id"], "1-2");
        assert_eq!(value["text"], "hi");
        let pieces = message_pieces(piece);
        let joined: Vec<u8> = pieces.iter().flat_map(|p| p.as_bytes().to_vec()).collect();
        assert_eq!(joined, whole.to_vec(), "a replay sends the same bytes");
        // Long messages take the 16-bit length.
        let long = format!("{{\"text\":\"{}\"}}", "a".repeat(300));
        assert_eq!(
            json(&message(long.as_bytes()))["text"]
                .as_str()
                .unwrap()
                .len(),
            300
        );
    }

    #[test]
    fn an_ack_repeats_the_http_answer() {
        let replies = Replies::default();
        let id = Position { epoch: 7, seq: 3 };
        let taken = json(&ack(&replies.posted(id, false), Asked::Post, Some("c1")));
        assert_eq!(
            taken,
            serde_json::json!({"type":"ack","for":"post","status":201,"id":"00000007-3","client_id":"c1"})
        );
        let again = json(&ack(&replies.posted(id, true), Asked::Post, None));
        assert_eq!(
            (again["status"].as_u64(), again["id"].as_str()),
            (Some(200), Some("00000007-3"))
        );
        let slow = replies.error(
            Status::TOO_MANY_REQUESTS,
            "slow down",
            Also::RetryAfter(3),
            false,
        );
        let refused = json(&ack(&slow, Asked::Post, None));
        assert_eq!(
            refused,
            serde_json::json!({"type":"ack","for":"post","status":429,"error":"slow down","retry_after":3})
        );
        let typing = json(&ack(&replies.accepted(), Asked::Typing, None));
        assert_eq!(
            typing,
            serde_json::json!({"type":"ack","for":"typing","status":202})
        );
    }

    #[test]
    fn notices_end_with_their_close() {
        let frames = shutdown(1234);
        let (_, notice, used) = unframe(&frames);
        assert_eq!(notice, b"{\"type\":\"shutdown\",\"retry_after_ms\":1234}");
        let (opcode, close, _) = unframe(&frames[used..]);
        assert_eq!((opcode, &close[..2]), (8, &1001u16.to_be_bytes()[..]));
        let frames = expired();
        let (_, _, used) = unframe(&frames);
        let (opcode, close, _) = unframe(&frames[used..]);
        assert_eq!((opcode, &close[..2]), (8, &1008u16.to_be_bytes()[..]));
        let gap = json(&gap(Position { epoch: 1, seq: 2 }));
        assert_eq!(gap, serde_json::json!({"type":"gap","next":"00000001-2"}));
    }
}
