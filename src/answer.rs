//! Every HTTP response the server sends is spelled here, and nowhere else: the status line,
//! the headers every response carries (`Cache-Control: no-store`, `nosniff`), CORS for the
//! room API, `Retry-After`, the `Connection` line, and the JSON bodies. Handlers say *what*
//! to answer; this module says how it is spelled (SSE frames have their own module,
//! [`crate::sse`]).
//!
//! Bodies are JSON written by serde_json, except the one body on the hot path: a message,
//! encoded once when it is posted ([`message_json`]) and then only copied into the one
//! answer a broadcast shares, or pointed at by answers from history.
//!
//! No response says anything about its connection when it is built, so one encoding can be
//! shared by every connection it goes to; the line a connection needs is added where the
//! response meets it ([`for_connection`], used by `Conn::respond`). The room API's answers
//! are built through [`Replies`], which holds the `--cors-origin` once. The `/stats` body,
//! long and shaped by the counters rather than by HTTP, is in [`counters`].

use crate::event::Event;
use crate::http::Status;
use crate::outgoing::{Piece, Pieces, Response};
use crate::position::Position;
use serde::Serialize;
use std::fmt::Write as _;
use std::rc::Rc;

/// The JSON content type every API response uses.
pub const JSON: &str = "application/json";

pub mod counters;

/// The interim response to `Expect: 100-continue`: a status line and nothing else.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Headers as name and value.
pub type Headers<'a> = [(&'a str, &'a str)];

/// A 1xx or 204 response has no body by definition, and RFC 9110 §8.6 forbids it a
/// Content-Length; it gets no Content-Type either.
fn bodiless(status: Status) -> bool {
    status.code < 200 || status == Status::NO_CONTENT
}

/// A complete response. `head_only` leaves the body out but keeps its length (HEAD).
pub fn response(
    status: Status,
    content_type: &str,
    headers: &Headers,
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    debug_assert!(
        !bodiless(status) || body.is_empty(),
        "a {} has no body",
        status.code
    );
    let mut out = head(status, content_type, headers, body.len());
    if !head_only && !bodiless(status) {
        out.extend_from_slice(body);
    }
    out
}

/// A response head for a body of `body_len` bytes that goes separately (an answer made of
/// shared pieces of the history) or not at all (HEAD).
pub fn head(status: Status, content_type: &str, headers: &Headers, body_len: usize) -> Vec<u8> {
    let mut head = String::with_capacity(160);
    // Writing to a String cannot fail.
    let _ = write!(head, "HTTP/1.1 {} {}\r\n", status.code, status.reason);
    if !bodiless(status) {
        let _ = write!(
            head,
            "Content-Type: {content_type}\r\nContent-Length: {body_len}\r\n"
        );
    }
    head.push_str("Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The head of a `text/event-stream` response. It has no Content-Length: the stream's body
/// ends when the connection closes, which HTTP/1.1 allows for responses.
pub fn stream_head(headers: &Headers) -> Vec<u8> {
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\nX-Accel-Buffering: no\r\n",
    );
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// `response` as it goes out on one connection: with the line that connection needs
/// ([`connection_line`]) at the end of its head. Responses are built saying nothing about
/// their connection, so one encoding can be shared by every connection it goes to; this is
/// the one place that line is written. A shared response is not copied: it goes out as its
/// head, the line, and its body, three pieces of one `writev`.
pub fn for_connection(response: Response, close: bool, http10: bool) -> Response {
    let Some(line) = connection_line(close, http10) else {
        return response; // HTTP/1.1 keep-alive, the common case: nothing to add
    };
    match response {
        Response::Owned(mut bytes) => {
            insert_header_line(&mut bytes, line);
            Response::Owned(bytes)
        }
        Response::Shared(bytes) => {
            let at = head_end(&bytes).unwrap_or(bytes.len());
            Response::Pieces(Box::new(Pieces::new([
                Piece::slice(&bytes, 0..at),
                Piece::Static(line),
                Piece::slice(&bytes, at..bytes.len()),
            ])))
        }
        Response::Pieces(mut pieces) => {
            // Multi-piece answers start with a head of their own.
            match pieces.front_mut() {
                Some(Piece::Owned(head)) => insert_header_line(head, line),
                _ => debug_assert!(false, "a multi-piece answer without a head of its own"),
            }
            Response::Pieces(pieces)
        }
    }
}

/// Where a response's head ends, before its blank line: a header line inserted here is the
/// head's last.
fn head_end(response: &[u8]) -> Option<usize> {
    response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 2)
}

/// Adds a header line at the end of an encoded response's head.
fn insert_header_line(response: &mut Vec<u8>, line: &[u8]) {
    let at = head_end(response).unwrap_or(response.len());
    response.splice(at..at, line.iter().copied());
}

/// The line a response must carry about its connection, if any: `Connection: close` when
/// the server hangs up after it, `Connection: keep-alive` for an HTTP/1.0 client that asked
/// to keep it (HTTP/1.0 closes by default, so saying nothing would end it), nothing for
/// HTTP/1.1 keep-alive, the common case.
fn connection_line(close: bool, http10: bool) -> Option<&'static [u8]> {
    match (close, http10) {
        (true, _) => Some(b"Connection: close\r\n"),
        (false, true) => Some(b"Connection: keep-alive\r\n"),
        (false, false) => None,
    }
}

/// The headers of every room-API response for a `--cors-origin` (none without one).
fn cors(origin: Option<&str>) -> Vec<(&str, &str)> {
    match origin {
        // Expose-Headers: a page on another origin may read when to retry (429, 503)
        // and why its token was refused (401, 403); browsers hide both otherwise.
        Some(origin) => vec![
            ("Access-Control-Allow-Origin", origin),
            (
                "Access-Control-Expose-Headers",
                "Retry-After, WWW-Authenticate",
            ),
            ("Vary", "Origin"),
        ],
        None => Vec::new(),
    }
}

/// What an answer of the room API says besides its body, spelled here: when to come back
/// (`Retry-After`, seconds), or which token would do (`WWW-Authenticate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Also<'a> {
    /// Nothing more.
    Nothing,
    /// `Retry-After: <seconds>`.
    RetryAfter(u64),
    /// `WWW-Authenticate: <challenge>`.
    Challenge(&'a str),
    /// `Allow: <methods>` (a 405).
    Allow(&'a str),
    /// `Upgrade: websocket` and `Sec-WebSocket-Version: 13` (a 426 from the WebSocket
    /// endpoint: what to send instead).
    Upgrade,
}

/// How this server answers the room API: the CORS headers of its `--cors-origin`, held
/// once, so that a handler says what to answer and never passes a header (habit 15).
/// Every room-API response is built by one of these methods.
#[derive(Clone, Debug, Default)]
pub struct Replies {
    /// `--cors-origin`, if any.
    origin: Option<Box<str>>,
}

impl Replies {
    /// Answers for a server with this `--cors-origin` (none: no CORS headers).
    pub fn new(origin: Option<&str>) -> Replies {
        Replies {
            origin: origin.map(Into::into),
        }
    }

    /// The CORS headers, and what `also` adds.
    fn headers<'a>(&'a self, also: Also<'a>, seconds: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut headers = cors(self.origin.as_deref());
        match also {
            Also::Nothing => {}
            Also::RetryAfter(_) => headers.push(("Retry-After", seconds)),
            Also::Challenge(challenge) => headers.push(("WWW-Authenticate", challenge)),
            Also::Allow(methods) => headers.push(("Allow", methods)),
            Also::Upgrade => {
                headers.push(("Upgrade", "websocket"));
                headers.push(("Sec-WebSocket-Version", crate::ws::VERSION));
            }
        }
        headers
    }

    /// `{"error":"<message>"}` with `status`, and what `also` says.
    pub fn error(&self, status: Status, message: &str, also: Also, head_only: bool) -> Vec<u8> {
        let seconds = match also {
            Also::RetryAfter(secs) => secs.to_string(),
            _ => String::new(),
        };
        error(status, &self.headers(also, &seconds), message, head_only)
    }

    /// See [`posted`].
    pub fn posted(&self, id: Position, duplicate: bool) -> Vec<u8> {
        posted(&self.headers(Also::Nothing, ""), id, duplicate)
    }

    /// See [`accepted`].
    pub fn accepted(&self) -> Vec<u8> {
        accepted(&self.headers(Also::Nothing, ""))
    }

    /// See [`presence`].
    pub fn presence(&self, room: &str, present: &[&str]) -> Vec<u8> {
        presence(&self.headers(Also::Nothing, ""), room, present)
    }

    /// See [`poll_answer`].
    pub fn poll_answer<'a>(
        &self,
        messages: impl Iterator<Item = &'a [u8]>,
        next: Position,
        events: &[Event],
    ) -> Vec<u8> {
        poll_answer(&self.headers(Also::Nothing, ""), messages, next, events)
    }

    /// See [`poll_gap_answer`].
    pub fn poll_gap_answer(&self, next: Position) -> Vec<u8> {
        poll_gap_answer(&self.headers(Also::Nothing, ""), next)
    }

    /// See [`poll_page`].
    pub fn poll_page(&self, messages: Vec<Piece>, next: Position, gap: bool) -> Vec<Piece> {
        poll_page(&self.headers(Also::Nothing, ""), messages, next, gap)
    }

    /// See [`stream_head`].
    pub fn stream_head(&self) -> Vec<u8> {
        stream_head(&self.headers(Also::Nothing, ""))
    }

    /// See [`retry_later`].
    pub fn retry_later(&self, delay_ms: u64) -> Vec<u8> {
        retry_later(delay_ms, &self.headers(Also::Nothing, ""))
    }

    /// What a CORS preflight is answered (only with an origin).
    pub fn preflight(&self) -> Option<Vec<u8>> {
        self.origin.as_deref().map(|origin| preflight(Some(origin)))
    }
}

/// What a CORS preflight is answered: 204, the methods and headers the room API takes.
fn preflight(origin: Option<&str>) -> Vec<u8> {
    let mut headers = cors(origin);
    headers.extend_from_slice(&[
        ("Access-Control-Allow-Methods", "GET, POST"),
        (
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type, Last-Event-ID",
        ),
        ("Access-Control-Max-Age", "600"),
    ]);
    response(Status::NO_CONTENT, JSON, &headers, b"", false)
}

/// A JSON response; `body` is JSON already.
pub fn json(status: Status, headers: &Headers, body: &str, head_only: bool) -> Vec<u8> {
    response(status, JSON, headers, body.as_bytes(), head_only)
}

/// Any serializable value as JSON text.
fn to_json(value: &impl Serialize) -> String {
    // Serializing strings, numbers and bools into a String cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// `{"error":"<message>"}` with `status`: every refusal, of every route.
pub fn error(status: Status, headers: &Headers, message: &str, head_only: bool) -> Vec<u8> {
    #[derive(Serialize)]
    struct Refusal<'a> {
        error: &'a str,
    }
    json(
        status,
        headers,
        &to_json(&Refusal { error: message }),
        head_only,
    )
}

/// An error whose message is the status's own reason (`{"error":"not found"}`): what the
/// parser refuses, before there is anything more to say.
pub fn status_error(status: Status, headers: &Headers, head_only: bool) -> Vec<u8> {
    error(
        status,
        headers,
        &status.reason.to_ascii_lowercase(),
        head_only,
    )
}

/// `503` for a client that cannot be served because the server is stopping: come back
/// after `delay_ms` (random per client, so they do not all return at once), in the
/// `Retry-After` header and, to the millisecond, in the body.
fn retry_later(delay_ms: u64, headers: &Headers) -> Vec<u8> {
    #[derive(Serialize)]
    struct ComeBack {
        error: &'static str,
        retry_after_ms: u64,
    }
    let retry_after = delay_ms.div_ceil(1000).to_string();
    let mut headers = headers.to_vec();
    headers.push(("Retry-After", &retry_after));
    let body = to_json(&ComeBack {
        error: "shutting down",
        retry_after_ms: delay_ms,
    });
    json(Status::SERVICE_UNAVAILABLE, &headers, &body, false)
}

/// The `503` written straight to a client refused at accept (over the connection cap, out
/// of descriptors), which is then closed: the one response that says `Connection: close`
/// itself, because it never goes through a connection.
pub fn refusal() -> Vec<u8> {
    let mut bytes = status_error(Status::SERVICE_UNAVAILABLE, &[("Retry-After", "1")], false);
    insert_header_line(&mut bytes, b"Connection: close\r\n");
    bytes
}

/// The `503` written straight to a client refused at accept because its address holds
/// `--max-conns-per-client` connections already; closed like [`refusal`].
pub fn refusal_per_client() -> Vec<u8> {
    let mut bytes = too_many_connections();
    insert_header_line(&mut bytes, b"Connection: close\r\n");
    bytes
}

/// The `503` for a client whose address holds `--max-conns-per-client` connections
/// already: written at accept ([`refusal_per_client`]), or answered on the connection
/// once its PROXY header named such a client (`--proxy-protocol`), before it is closed.
pub fn too_many_connections() -> Vec<u8> {
    let message = "too many connections from your address (--max-conns-per-client); \
                   close some, or try again later";
    error(
        Status::SERVICE_UNAVAILABLE,
        &[("Retry-After", "5")],
        message,
        false,
    )
}

/// A file from `www/`, GET or HEAD.
pub fn file(content_type: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    response(Status::OK, content_type, &[], body, head_only)
}

/// `{"ok":"<message>"}`, the classic answer to every waiting `GET /chat`. Built once per
/// broadcast and shared (`Rc`) by every connection.
pub fn classic_message(message: &str) -> Rc<[u8]> {
    #[derive(Serialize)]
    struct Ok<'a> {
        ok: &'a str,
    }
    json(Status::OK, &[], &to_json(&Ok { ok: message }), false).into()
}

/// `{"error":"timeout"}`, the classic answer to a poll that waited the whole poll timeout.
pub fn classic_timeout() -> Rc<[u8]> {
    error(Status::OK, &[], "timeout", false).into()
}

/// `{"ok":"posted"}`, the classic answer to the poster.
pub fn classic_posted() -> Vec<u8> {
    (*classic_message("posted")).to_vec()
}

// ----- the room protocol ------------------------------------------------------------------

/// A stored message: `{"id":…,"from":…,"text":…,"time":…}`. Encoded once, when it is
/// posted; every answer and frame that carries it shares this encoding.
pub fn message_json(id: Position, from: &str, text: &str, time_ms: u64) -> String {
    #[derive(Serialize)]
    struct Message<'a> {
        id: Position,
        from: &'a str,
        text: &'a str,
        time: u64,
    }
    to_json(&Message {
        id,
        from,
        text,
        time: time_ms,
    })
}

/// An ephemeral event: `{"type":"typing","from":"ann"}`, `{"type":"join","name":"bob"}`.
pub fn event_json(event: &Event) -> String {
    to_json(event)
}

/// `201 {"id":…}` for a stored post, or `200 {"id":…,"duplicate":true}` for a retry with a
/// `client_id` already stored.
fn posted(headers: &Headers, id: Position, duplicate: bool) -> Vec<u8> {
    #[derive(Serialize)]
    struct Posted {
        id: Position,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    }
    let status = if duplicate {
        Status::OK
    } else {
        Status::CREATED
    };
    json(status, headers, &to_json(&Posted { id, duplicate }), false)
}

/// `202 {"ok":true}`: a typing event went out.
fn accepted(headers: &Headers) -> Vec<u8> {
    json(Status::ACCEPTED, headers, "{\"ok\":true}", false)
}

/// `{"room":…,"present":[names]}`.
fn presence(headers: &Headers, room: &str, present: &[&str]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Presence<'a> {
        room: &'a str,
        present: &'a [&'a str],
    }
    let body = to_json(&Presence { room, present });
    json(Status::OK, headers, &body, false)
}

/// The answer to polls waiting at a room's head, shared by all of them: `messages` (JSON
/// already, at most the one just posted), the head as `next`, and ephemeral `events`.
fn poll_answer<'a>(
    headers: &Headers,
    messages: impl Iterator<Item = &'a [u8]>,
    next: Position,
    events: &[Event],
) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    body.extend_from_slice(b"{\"messages\":[");
    for (i, message) in messages.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(message);
    }
    body.extend_from_slice(&poll_tail(next, false, events));
    response(Status::OK, JSON, headers, &body, false)
}

/// The answer to polls that were waiting when the store started a new epoch (with
/// `--redis`, Redis lost its data): no messages, `gap: true`, and the room's head in the
/// new epoch as `next`, from which the client carries on.
fn poll_gap_answer(headers: &Headers, next: Position) -> Vec<u8> {
    let mut body = b"{\"messages\":[".to_vec();
    body.extend_from_slice(&poll_tail(next, true, &[]));
    response(Status::OK, JSON, headers, &body, false)
}

/// A poll answer from history, as pieces: its own head, then the messages as slices of
/// their stored frames (shared with the history, never copied), then its own tail.
fn poll_page(headers: &Headers, messages: Vec<Piece>, next: Position, gap: bool) -> Vec<Piece> {
    let mut pieces = Vec::with_capacity(2 * messages.len() + 3);
    pieces.push(Piece::Static(b"{\"messages\":["));
    for (i, message) in messages.into_iter().enumerate() {
        if i > 0 {
            pieces.push(Piece::Static(b","));
        }
        pieces.push(message);
    }
    pieces.push(Piece::Owned(poll_tail(next, gap, &[])));
    let len = pieces.iter().map(Piece::len).sum();
    pieces.insert(0, Piece::Owned(head(Status::OK, JSON, headers, len)));
    pieces
}

/// `],"next":…,"gap":…,"events":[…]}`: how every poll answer ends.
fn poll_tail(next: Position, gap: bool, events: &[Event]) -> Vec<u8> {
    let mut tail = format!("],\"next\":\"{next}\",\"gap\":{gap},\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            tail.push(',');
        }
        tail.push_str(&event_json(event));
    }
    tail.push_str("]}");
    tail.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn every_response_has_the_same_shape() {
        let out = json(Status::OK, &[("Allow", "GET")], "{}", false);
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nAllow: GET\r\n\
             \r\n{}"
        );
        let head_only = text(&response(Status::OK, "text/html", &[], b"<p>", true));
        assert!(head_only.contains("Content-Length: 3\r\n"));
        assert!(head_only.ends_with("\r\n\r\n"));
    }

    #[test]
    fn bodiless_statuses_carry_no_length_or_type() {
        let out = text(&response(
            Status::NO_CONTENT,
            JSON,
            &[("Allow", "GET")],
            b"",
            false,
        ));
        assert!(!out.contains("\r\nContent-Length:"), "{out}");
        assert!(!out.contains("\r\nContent-Type:"), "{out}");
        assert!(out.ends_with("Allow: GET\r\n\r\n"));
        assert!(!text(&preflight(Some("https://a.example"))).contains("\r\nContent-"));
    }

    #[test]
    fn errors_and_bodies_are_exact_json() {
        let out = text(&status_error(Status::NOT_FOUND, &[], false));
        assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(out.ends_with("\r\n\r\n{\"error\":\"not found\"}"));
        assert!(
            !out.contains("Connection:"),
            "connections are not its business"
        );
        let out = text(&error(Status::BAD_REQUEST, &[], "say \"hi\"\n€", false));
        assert!(out.ends_with("{\"error\":\"say \\\"hi\\\"\\n€\"}"));
        let id = Position { epoch: 1, seq: 2 };
        assert!(text(&posted(&[], id, false)).ends_with("\r\n\r\n{\"id\":\"00000001-2\"}"));
        assert!(text(&posted(&[], id, true))
            .ends_with("\r\n\r\n{\"id\":\"00000001-2\",\"duplicate\":true}"));
        assert_eq!(
            message_json(id, "a\"n", "hi\n€\u{1}", 5),
            "{\"id\":\"00000001-2\",\"from\":\"a\\\"n\",\"text\":\"hi\\n€\\u0001\",\"time\":5}"
        );
        let out = text(&retry_later(1500, &[]));
        assert!(out.starts_with("HTTP/1.1 503 "));
        assert!(out.contains("\r\nRetry-After: 2\r\n"));
        assert!(out.ends_with("{\"error\":\"shutting down\",\"retry_after_ms\":1500}"));
        assert!(text(&refusal()).contains("Connection: close\r\n\r\n"));
        let per_client = text(&refusal_per_client());
        assert!(per_client.starts_with("HTTP/1.1 503 "));
        assert!(per_client.contains("Connection: close\r\n"));
        assert!(per_client.contains("--max-conns-per-client"));
    }

    #[test]
    fn classic_answers_are_exact() {
        let bytes = classic_message("say \"hi\"\n€");
        let out = text(&bytes);
        let body = "{\"ok\":\"say \\\"hi\\\"\\n€\"}";
        assert!(out.starts_with("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"));
        assert!(out.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(out.ends_with(&format!("\r\n\r\n{body}")));
        assert!(text(&classic_timeout()).ends_with("{\"error\":\"timeout\"}"));
        assert!(text(&classic_posted()).ends_with("{\"ok\":\"posted\"}"));
    }

    #[test]
    fn a_header_line_goes_at_the_end_of_the_head() {
        let mut out = json(Status::OK, &[], "{\"a\":\"\\r\\n\\r\\n\"}", false);
        insert_header_line(&mut out, b"Connection: close\r\n");
        assert!(text(&out).contains("nosniff\r\nConnection: close\r\n\r\n{"));
    }
}
