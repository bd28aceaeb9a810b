//! HTTP/1.x requests on top of `httparse`: bytes in, a [`Request`] out, and the statuses
//! the server answers with. Knows no sockets — the connection hands it whatever it has
//! buffered so far. (Responses are spelled in [`crate::answer`].)
//!
//! Parsing has three outcomes, as in httparse's own `Status`: a complete request, a partial
//! one (normal flow: the rest is still on the wire), or an invalid one, which carries the
//! status to answer with before closing. Every buffer the parser lets a client grow is capped
//! by [`Limits`], and the caps are checked *before* waiting for more bytes, so a client can
//! never make us hold more than `head_bytes + body_bytes` of its input.

use std::ops::Range;

/// How much of a request we are willing to hold. Each cap answers a different status.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Request line plus headers, in bytes. Over it: 431. 8 KiB is what nginx and most
    /// proxies allow by default; browsers send well under 2 KiB.
    pub head_bytes: usize,
    /// Number of header lines. Over it: 431. httparse needs a fixed array of this size.
    pub header_count: usize,
    /// Request target (path and query), in bytes. Over it: 414.
    pub uri_bytes: usize,
    /// Body, in bytes, judged from Content-Length before any body byte is read. Over it: 413.
    pub body_bytes: usize,
}

/// Largest header count anyone may configure: httparse parses into a stack array this big.
pub const MAX_HEADER_COUNT: usize = 100;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            head_bytes: 8 * 1024,
            header_count: 32,
            uri_bytes: 2 * 1024,
            body_bytes: 64 * 1024,
        }
    }
}

impl Limits {
    /// The most bytes of one request a connection may buffer. Saturating: a cap past the
    /// address space means "no cap", never a wrapped, tiny one.
    pub fn request_bytes(&self) -> usize {
        self.head_bytes.saturating_add(self.body_bytes)
    }
}

/// Request methods the routes care about; anything else is kept only to answer 405.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `OPTIONS`, for CORS preflights.
    Options,
    /// Any other method: a known path answers 405, an unknown one 404.
    Other,
}

/// A complete request whose head and body are in the caller's buffer.
#[derive(Debug)]
pub struct Request {
    /// The method, reduced to what routing needs.
    pub method: Method,
    /// Path without the query string, exactly as sent (not percent-decoded); for an
    /// absolute-form target, its path alone.
    pub path: String,
    /// The query string after `?`, if any.
    pub query: Option<String>,
    /// The Content-Type header, if any (decides form or JSON bodies).
    pub content_type: Option<String>,
    /// The Last-Event-ID header an EventSource sends when it reconnects.
    pub last_event_id: Option<String>,
    /// The token of an `Authorization: Bearer <token>` header (with `--token-secret-file`).
    pub bearer: Option<String>,
    /// Every `X-Forwarded-For` header's value, joined with commas in the order sent (one
    /// list, as RFC 9110 §5.3 reads repeated headers). Read only when the connection comes
    /// from a trusted proxy ([`crate::proxy`]); anyone else's is ignored.
    pub forwarded_for: Option<String>,
    /// What the request says about becoming a WebSocket: `None` without
    /// `Upgrade: websocket` (boxed: most requests have none, and stay small).
    pub upgrade: Option<Box<Upgrade>>,
    /// Whether the connection may carry another request after this one's response:
    /// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// An HTTP/1.0 request: a response that keeps the connection must say so.
    pub http10: bool,
    /// Where the body lies in the buffer that was parsed.
    pub body: Range<usize>,
    /// How many bytes of the buffer this request used; the next request starts here.
    pub consumed: usize,
}

/// The headers of a WebSocket opening handshake (RFC 6455 §4.1), as sent: routing judges
/// them (`routes.rs`), the codec checks the key and version (`ws::accept`).
#[derive(Debug, Default)]
pub struct Upgrade {
    /// `Upgrade: websocket` (the token, in any case, among others).
    pub websocket: bool,
    /// `Connection: Upgrade` (the token, among others such as `keep-alive`).
    pub connection: bool,
    /// `Sec-WebSocket-Key`.
    pub key: Option<String>,
    /// `Sec-WebSocket-Version`.
    pub version: Option<String>,
    /// `Origin`: the page that opened it, for the cross-site check.
    pub origin: Option<String>,
    /// `Host`: the server's own origin is `http://` + this.
    pub host: Option<String>,
}

/// The outcome of parsing what a connection has buffered.
#[derive(Debug)]
pub enum Parse {
    /// A whole request (head and body) is in the buffer.
    Complete(Request),
    /// More bytes are needed; nothing is wrong. `awaits_continue`: the head is complete
    /// and acceptable, the body is not all here, and the client (HTTP/1.1 with
    /// `Expect: 100-continue`) holds the body back until it hears `100 Continue`.
    Partial {
        /// Answer [`crate::answer::CONTINUE`] (once per request) or the client waits out its own timer.
        awaits_continue: bool,
    },
    /// The request can never become valid; answer this status and close.
    Invalid(Status),
}

/// A response status with its reason phrase and a short explanation for the JSON body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// The numeric code, e.g. 404.
    pub code: u16,
    /// The reason phrase on the status line.
    pub reason: &'static str,
}

macro_rules! statuses {
    ($($name:ident = $code:literal $reason:literal;)*) => {
        impl Status {
            $(
                #[doc = concat!("`", stringify!($code), " ", $reason, "`")]
                pub const $name: Status = Status { code: $code, reason: $reason };
            )*
        }
    };
}

statuses! {
    OK = 200 "OK";
    CREATED = 201 "Created";
    ACCEPTED = 202 "Accepted";
    NO_CONTENT = 204 "No Content";
    BAD_REQUEST = 400 "Bad Request";
    UNAUTHORIZED = 401 "Unauthorized";
    FORBIDDEN = 403 "Forbidden";
    NOT_FOUND = 404 "Not Found";
    METHOD_NOT_ALLOWED = 405 "Method Not Allowed";
    REQUEST_TIMEOUT = 408 "Request Timeout";
    LENGTH_REQUIRED = 411 "Length Required";
    PAYLOAD_TOO_LARGE = 413 "Payload Too Large";
    URI_TOO_LONG = 414 "URI Too Long";
    UPGRADE_REQUIRED = 426 "Upgrade Required";
    TOO_MANY_REQUESTS = 429 "Too Many Requests";
    HEADERS_TOO_LARGE = 431 "Request Header Fields Too Large";
    SERVICE_UNAVAILABLE = 503 "Service Unavailable";
    INSUFFICIENT_STORAGE = 507 "Insufficient Storage";
}

/// Parses the request at the start of `buf`.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADER_COUNT];
    let header_slots = limits.header_count.clamp(1, MAX_HEADER_COUNT);
    let mut req = httparse::Request::new(&mut headers[..header_slots]);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return partial_head(buf, limits),
        Err(httparse::Error::TooManyHeaders) => return Parse::Invalid(Status::HEADERS_TOO_LARGE),
        Err(_) => return Parse::Invalid(Status::BAD_REQUEST),
    };
    if head_len > limits.head_bytes {
        return Parse::Invalid(Status::HEADERS_TOO_LARGE);
    }
    // httparse fills these on Complete.
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Parse::Invalid(Status::BAD_REQUEST);
    };
    if target.len() > limits.uri_bytes {
        return Parse::Invalid(Status::URI_TOO_LONG);
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "OPTIONS" => Method::Options,
        _ => Method::Other,
    };
    let head = match read_headers(req.headers, minor) {
        Ok(head) => head,
        Err(status) => return Parse::Invalid(status),
    };
    let body_len = match head.content_length {
        Some(len) => len,
        None if method == Method::Post => return Parse::Invalid(Status::LENGTH_REQUIRED),
        None => 0,
    };
    if body_len > limits.body_bytes as u64 {
        return Parse::Invalid(Status::PAYLOAD_TOO_LARGE);
    }
    // Checked: under a huge body cap a Content-Length near u64::MAX would wrap the sum (a
    // panic, and the release profile aborts on panic). Such a request could never be held.
    let consumed = usize::try_from(body_len)
        .ok()
        .and_then(|body_len| head_len.checked_add(body_len));
    let Some(consumed) = consumed else {
        return Parse::Invalid(Status::PAYLOAD_TOO_LARGE);
    };
    if buf.len() < consumed {
        // The head is here and sane; the body is still arriving, or held back until we say
        // 100 Continue. HTTP/1.0 clients must never get a 1xx (RFC 9110 §15.2).
        return Parse::Partial {
            awaits_continue: head.expect_continue && minor == 1,
        };
    }
    let Some((path, query)) = split_target(target) else {
        return Parse::Invalid(Status::BAD_REQUEST);
    };
    Parse::Complete(Request {
        method,
        path,
        query,
        content_type: head.content_type,
        last_event_id: head.last_event_id,
        bearer: head.bearer,
        forwarded_for: head.forwarded_for,
        upgrade: head.upgrade,
        keep_alive: head.keep_alive,
        http10: minor == 0,
        body: head_len..consumed,
        consumed,
    })
}

/// A request target's path and query. An absolute-form target (`http://host/path?query`,
/// what clients send to a proxy) must be accepted by servers too (RFC 9112 §3.2.2): its
/// scheme and authority are dropped, like the Host header they repeat, and an empty path
/// is `/`. `None` for an `http(s)` URI with no host, which RFC 9110 §4.2.1 says to reject.
/// Anything else (origin-form, `*`) is split as sent and left for routing to 404.
fn split_target(target: &str) -> Option<(String, Option<String>)> {
    let after_scheme = ["http://", "https://"].iter().find_map(|scheme| {
        let prefix = target.as_bytes().get(..scheme.len())?;
        // ASCII prefix: slicing after it is on a character boundary.
        prefix
            .eq_ignore_ascii_case(scheme.as_bytes())
            .then(|| &target[scheme.len()..])
    });
    let (path, query) = match after_scheme {
        Some(rest) => {
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            if authority_end == 0 {
                return None;
            }
            let (path, query) = split_query(&rest[authority_end..]);
            (if path.is_empty() { "/" } else { path }, query)
        }
        None => split_query(target),
    };
    Some((path.to_owned(), query.map(str::to_owned)))
}

fn split_query(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// Decides whether an incomplete head is worth waiting for.
fn partial_head(buf: &[u8], limits: &Limits) -> Parse {
    let line_end = buf.iter().position(|&b| b == b'\n');
    // A request line longer than method + URI cap + version can only be an over-long URI.
    let request_line_cap = limits.uri_bytes + 32;
    match line_end {
        None if buf.len() > request_line_cap => Parse::Invalid(Status::URI_TOO_LONG),
        _ if buf.len() > limits.head_bytes => Parse::Invalid(Status::HEADERS_TOO_LARGE),
        _ => Parse::Partial {
            awaits_continue: false,
        },
    }
}

/// What the headers tell us about framing and the connection.
struct Head {
    content_length: Option<u64>,
    keep_alive: bool,
    content_type: Option<String>,
    last_event_id: Option<String>,
    bearer: Option<String>,
    forwarded_for: Option<String>,
    upgrade: Option<Box<Upgrade>>,
    /// `Expect: 100-continue`: the client waits for `100 Continue` before its body.
    expect_continue: bool,
}

fn read_headers(headers: &[httparse::Header<'_>], minor_version: u8) -> Result<Head, Status> {
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut content_type = None;
    let mut last_event_id = None;
    let mut bearer = None;
    let mut forwarded_for: Option<String> = None;
    let mut expect_continue = false;
    let mut upgrade = Upgrade::default();
    let text = |value: &[u8]| String::from_utf8_lossy(value).trim().to_owned();
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            let len = parse_content_length(header.value).ok_or(Status::BAD_REQUEST)?;
            // Two different lengths is the classic smuggling set-up: refuse, never pick one.
            if content_length.is_some_and(|seen| seen != len) {
                return Err(Status::BAD_REQUEST);
            }
            content_length = Some(len);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
        } else if header.name.eq_ignore_ascii_case("content-type") {
            content_type = Some(text(header.value));
        } else if header.name.eq_ignore_ascii_case("last-event-id") {
            last_event_id = Some(text(header.value));
        } else if header.name.eq_ignore_ascii_case("authorization") {
            // The scheme is case-insensitive (RFC 9110 §11.1). Another scheme (a proxy's
            // Basic credentials, which browsers repeat on every request) is not ours: it
            // neither carries a token nor hides one sent in the query.
            let value = text(header.value);
            if let Some((scheme, token)) = value.split_once(' ') {
                if scheme.eq_ignore_ascii_case("bearer") {
                    bearer = Some(token.trim().to_owned());
                }
            }
        } else if header.name.eq_ignore_ascii_case("x-forwarded-for") {
            // Bounded by the head cap, like every header; one string however many lines.
            let value = String::from_utf8_lossy(header.value);
            match forwarded_for.as_mut() {
                Some(list) => {
                    list.push(',');
                    list.push_str(&value);
                }
                None => forwarded_for = Some(value.into_owned()),
            }
        } else if header.name.eq_ignore_ascii_case("expect") {
            // Any other expectation is ignored: RFC 9110 §10.1.1 allows answering 417, but
            // going ahead is just as correct for a server with nothing else to offer.
            expect_continue |= header
                .value
                .trim_ascii()
                .eq_ignore_ascii_case(b"100-continue");
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                upgrade.connection |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            let tokens = header.value.split(|&b| b == b',');
            upgrade.websocket |= tokens
                .map(<[u8]>::trim_ascii)
                .any(|token| token.eq_ignore_ascii_case(b"websocket"));
        } else if header.name.eq_ignore_ascii_case("sec-websocket-key") {
            upgrade.key = Some(text(header.value));
        } else if header.name.eq_ignore_ascii_case("sec-websocket-version") {
            upgrade.version = Some(text(header.value));
        } else if header.name.eq_ignore_ascii_case("origin") {
            upgrade.origin = Some(text(header.value));
        } else if header.name.eq_ignore_ascii_case("host") {
            upgrade.host = Some(text(header.value));
        }
    }
    if transfer_encoding {
        // Both framings at once could be read two ways by two servers in a chain.
        if content_length.is_some() {
            return Err(Status::BAD_REQUEST);
        }
        // We do not decode chunked bodies (chat bodies are small and browsers always send a
        // length); 411 tells the client exactly what to send instead.
        return Err(Status::LENGTH_REQUIRED);
    }
    let keep_alive = match minor_version {
        0 => keep_alive_token && !close,
        _ => !close,
    };
    Ok(Head {
        content_length,
        keep_alive,
        content_type,
        last_event_id,
        bearer,
        forwarded_for,
        upgrade: upgrade.websocket.then(|| Box::new(upgrade)),
        expect_continue,
    })
}

/// Content-Length is 1*DIGIT: no sign, no spaces inside, no overflow.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A form body (or query string) that is not URL-encoded UTF-8: a `%` not followed by two
/// hex digits, or decoded bytes that are not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MalformedForm;

/// Decodes an `application/x-www-form-urlencoded` body and returns the value of the first
/// `field`: `+` is a space, `%XX` a byte, and the result must be UTF-8. `Ok(None)` when the
/// field is absent.
///
/// The whole body is checked, not just the field asked for: a body is URL-encoded or it is
/// not, and refusing it the same way whichever field is broken tells the client the truth.
/// WHATWG's parser would keep a stray `%` as is; we refuse it instead, because a client that
/// sends `100%` unescaped has an encoding bug that would otherwise corrupt some other text.
pub fn form_field(body: &[u8], field: &str) -> Result<Option<String>, MalformedForm> {
    let mut found = None;
    for pair in body.split(|&b| b == b'&') {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &[][..]),
        };
        let name = form_decode(name)?;
        let value = form_decode(value)?;
        if found.is_none() && name == field {
            found = Some(value);
        }
    }
    Ok(found)
}

fn form_decode(raw: &[u8]) -> Result<String, MalformedForm> {
    let bytes = percent_decode(raw, true).ok_or(MalformedForm)?;
    String::from_utf8(bytes).map_err(|_| MalformedForm)
}

/// Strict percent-decoding: every `%` must start `%XX` with two hex digits, else `None`.
/// `plus_is_space` is for form bodies only; in a path `+` is a literal plus.
pub fn percent_decode(raw: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'%' => {
                let [hi, lo, ..] = *rest else { return None };
                let hex = |d: u8| (d as char).to_digit(16);
                out.push((hex(hi)? * 16 + hex(lo)?) as u8);
                rest = &rest[2..];
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Parse {
        parse_request(raw.as_bytes(), &Limits::default())
    }

    fn status_of(raw: &str) -> u16 {
        match parse(raw) {
            Parse::Invalid(status) => status.code,
            Parse::Complete(_) => 0,
            Parse::Partial { .. } => 1,
        }
    }

    /// Raw request, method, path, query, keep-alive, body length.
    type CompleteCase<'a> = (&'a str, Method, &'a str, Option<&'a str>, bool, usize);

    /// Repeated `X-Forwarded-For` lines are one list, in order (whether to believe it is
    /// decided by who sent it, in `proxy`).
    #[test]
    fn forwarded_for_headers_are_one_list() {
        let cases = [
            ("GET / HTTP/1.1\r\n\r\n", None),
            (
                "GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
                Some("1.2.3.4"),
            ),
            (
                "GET / HTTP/1.1\r\nx-forwarded-for: a, b\r\nHost: h\r\nX-FORWARDED-FOR: c\r\n\r\n",
                Some("a, b,c"),
            ),
        ];
        for (raw, list) in cases {
            let Parse::Complete(request) = parse(raw) else {
                panic!("{raw:?} is a request");
            };
            assert_eq!(request.forwarded_for.as_deref(), list, "{raw:?}");
        }
    }

    #[test]
    fn complete_requests() {
        let cases: &[CompleteCase] = &[
            (
                "GET /chat HTTP/1.1\r\nHost: x\r\n\r\n",
                Method::Get,
                "/chat",
                None,
                true,
                0,
            ),
            (
                "GET /a?b=c HTTP/1.0\r\n\r\n",
                Method::Get,
                "/a",
                Some("b=c"),
                false,
                0,
            ),
            (
                "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
                Method::Get,
                "/",
                None,
                true,
                0,
            ),
            (
                "GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n",
                Method::Get,
                "/",
                None,
                false,
                0,
            ),
            (
                "POST /chat HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
                Method::Post,
                "/chat",
                None,
                true,
                5,
            ),
            ("HEAD / HTTP/1.1\r\n\r\n", Method::Head, "/", None, true, 0),
            (
                "DELETE /chat HTTP/1.1\r\n\r\n",
                Method::Other,
                "/chat",
                None,
                true,
                0,
            ),
            (
                "POST /x HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc",
                Method::Post,
                "/x",
                None,
                true,
                3,
            ),
        ];
        for (raw, method, path, query, keep_alive, body_len) in cases {
            let Parse::Complete(req) = parse(raw) else {
                panic!("not complete: {raw:?}")
            };
            assert_eq!(req.method, *method, "{raw:?}");
            assert_eq!(req.path, *path, "{raw:?}");
            assert_eq!(req.query.as_deref(), *query, "{raw:?}");
            assert_eq!(req.keep_alive, *keep_alive, "{raw:?}");
            assert_eq!(req.body.len(), *body_len, "{raw:?}");
            assert_eq!(req.consumed, raw.len(), "{raw:?}");
        }
    }

    /// RFC 9112 §3.2.2: a server must accept the absolute form a client sends to proxies.
    #[test]
    fn absolute_form_targets_are_their_path_and_query() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("http://example.org/stats", "/stats", None),
            ("HTTP://Example.org:8080/a/b?c=d", "/a/b", Some("c=d")),
            ("https://example.org/chat", "/chat", None),
            ("hTTpS://h", "/", None),
            ("http://h?since=0", "/", Some("since=0")),
            ("http://user@h:1/x?y", "/x", Some("y")),
            // Not absolute-form: taken as sent, and no file or route has such a path.
            ("*", "*", None),
            ("/http://h/x", "/http://h/x", None),
            ("ftp://h/x", "ftp://h/x", None),
        ];
        for (target, path, query) in cases {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let Parse::Complete(req) = parse(&raw) else {
                panic!("not complete: {raw:?}")
            };
            assert_eq!(
                (req.path.as_str(), req.query.as_deref()),
                (*path, *query),
                "{target}"
            );
        }
        // An http URI with an empty host is invalid (RFC 9110 §4.2.1).
        assert_eq!(status_of("GET http:///stats HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status_of("GET http:// HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn every_prefix_of_a_request_is_partial() {
        let raw = "POST /chat HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nmessage=x";
        for end in 0..raw.len() {
            assert!(
                matches!(
                    parse(&raw[..end]),
                    Parse::Partial {
                        awaits_continue: false
                    }
                ),
                "prefix of {end} bytes"
            );
        }
        assert!(matches!(parse(raw), Parse::Complete(_)));
    }

    /// The client waits for `100 Continue` only when its head is complete and acceptable,
    /// it is HTTP/1.1, it asked, and its body is not all here yet.
    #[test]
    fn expect_continue_is_flagged_while_the_body_is_awaited() {
        let awaits = |raw: &str| match parse(raw) {
            Parse::Partial { awaits_continue } => Some(awaits_continue),
            Parse::Complete(_) => None,
            Parse::Invalid(status) => panic!("{raw:?}: {}", status.code),
        };
        let head = "POST /chat HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n";
        assert_eq!(awaits(head), Some(true));
        assert_eq!(awaits(&format!("{head}mess")), Some(true));
        assert_eq!(
            awaits(&format!("{head}message=x")),
            None,
            "the body is here"
        );
        let cases: &[(&str, Option<bool>)] = &[
            (
                "POST / HTTP/1.1\r\nEXPECT:  100-Continue \r\nContent-Length: 1\r\n\r\n",
                Some(true),
            ),
            ("POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\n", Some(false)),
            (
                "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
                Some(false),
            ),
            (
                "POST / HTTP/1.1\r\nExpect: something-else\r\nContent-Length: 1\r\n\r\n",
                Some(false),
            ),
            // The head is not complete yet.
            ("POST / HTTP/1.1\r\nExpect: 100-continue\r\n", Some(false)),
            // Nothing to send: complete at once.
            ("GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(awaits(raw), *expected, "{raw:?}");
        }
        // Refused from the head alone: the refusal, never a 100 first.
        let too_big = "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 65537\r\n\r\n";
        assert_eq!(status_of(too_big), 413);
    }

    #[test]
    fn pipelined_requests_are_taken_one_at_a_time() {
        let raw = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let Parse::Complete(first) = parse(raw) else {
            panic!()
        };
        assert_eq!(first.path, "/a");
        let Parse::Complete(second) = parse(&raw[first.consumed..]) else {
            panic!()
        };
        assert_eq!(second.path, "/b");
    }

    #[test]
    fn invalid_requests() {
        let long_uri = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(3000));
        let long_uri_partial = format!("GET /{}", "a".repeat(3000));
        let long_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        let long_header_partial = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(9000));
        let many_headers = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(40));
        let cases: &[(&str, u16)] = &[
            ("garbage\r\n\r\n", 400),
            ("GET /\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\n\r\n", 400),
            ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400),
            ("POST /chat HTTP/1.1\r\n\r\n", 411),
            (
                "POST /chat HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                411,
            ),
            (
                "POST /chat HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                400,
            ),
            (
                "POST /chat HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                400,
            ),
            ("POST /chat HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            ("POST /chat HTTP/1.1\r\nContent-Length: +1\r\n\r\n", 400),
            ("POST /chat HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400),
            ("POST /chat HTTP/1.1\r\nContent-Length: \r\n\r\n", 400),
            (
                "POST /chat HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                400,
            ),
            ("POST /chat HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", 413),
            (&long_uri, 414),
            (&long_uri_partial, 414),
            (&long_header, 431),
            (&long_header_partial, 431),
            (&many_headers, 431),
        ];
        for (raw, code) in cases {
            assert_eq!(status_of(raw), *code, "{:?}", &raw[..raw.len().min(60)]);
        }
    }

    #[test]
    fn body_limit_is_inclusive() {
        let at_limit = "POST /chat HTTP/1.1\r\nContent-Length: 65536\r\n\r\n";
        assert!(matches!(parse(at_limit), Parse::Partial { .. }));
    }

    /// A body cap of usize::MAX (only reachable by building Limits by hand; the command line
    /// caps --max-body at 64 MiB) must not make the length sums wrap and panic.
    #[test]
    fn huge_caps_and_lengths_do_not_overflow() {
        let limits = Limits {
            body_bytes: usize::MAX,
            ..Limits::default()
        };
        assert_eq!(limits.request_bytes(), usize::MAX);
        let raw = format!(
            "POST /chat HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            u64::MAX
        );
        assert!(matches!(
            parse_request(raw.as_bytes(), &limits),
            Parse::Invalid(Status::PAYLOAD_TOO_LARGE)
        ));
        let raw = format!(
            "POST /chat HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            u64::MAX - 10
        );
        assert!(matches!(
            parse_request(raw.as_bytes(), &limits),
            Parse::Invalid(Status::PAYLOAD_TOO_LARGE)
        ));
    }

    #[test]
    fn form_fields() {
        let cases: &[(&str, Result<Option<&str>, MalformedForm>)] = &[
            ("message=hello", Ok(Some("hello"))),
            ("a=1&message=hi+there%21", Ok(Some("hi there!"))),
            ("message=%E2%82%AC%20", Ok(Some("€ "))),
            ("message=", Ok(Some(""))),
            ("message", Ok(Some(""))),
            ("other=1", Ok(None)),
            ("", Ok(None)),
            ("message=%FF", Err(MalformedForm)),
            ("mess%61ge=x", Ok(Some("x"))),
            ("message=%41%6a", Ok(Some("Aj"))),
            ("message=a+%2B+b", Ok(Some("a + b"))),
            // `%` must start an escape of two hex digits, wherever it is.
            ("message=100%", Err(MalformedForm)),
            ("message=a%2", Err(MalformedForm)),
            ("message=%zz", Err(MalformedForm)),
            ("message=%%41", Err(MalformedForm)),
            // The body as a whole is either well formed or refused, whichever field is bad.
            ("message=ok&other=%zz", Err(MalformedForm)),
            ("other=%zz&message=ok", Err(MalformedForm)),
            ("other=%FF&message=ok", Err(MalformedForm)),
        ];
        for (body, expected) in cases {
            let got = form_field(body.as_bytes(), "message");
            assert_eq!(got, expected.map(|v| v.map(str::to_owned)), "{body:?}");
        }
    }
}
