//! The few bytes of HTTP the load generator speaks: three requests, and just enough
//! response framing (status line, `Content-Length`) to know when one answer has fully
//! arrived. Knows no sockets, like the server's own `http` module.

/// The long poll every client parks, as small as a valid HTTP/1.1 request gets.
pub const GET_CHAT: &[u8] = b"GET /chat HTTP/1.1\r\nHost: bench\r\n\r\n";

/// What a poll that timed out is answered with (`{"error":"timeout"}`).
pub const TIMEOUT: &[u8] = b"\"timeout\"";

/// The counters the benchmark waits on.
pub const GET_STATS: &[u8] = b"GET /stats HTTP/1.1\r\nHost: bench\r\n\r\n";

/// Largest response the clients accept: the chat answers are a few hundred bytes, so
/// anything near this is a framing bug, not a message.
pub const RESPONSE_CAP_BYTES: usize = 64 * 1024;

/// `POST /chat` carrying `message`, which must need no %-encoding (see [`message`]).
pub fn post(message: &str) -> Vec<u8> {
    let body = format!("message={message}");
    let mut out = format!(
        "POST /chat HTTP/1.1\r\nHost: bench\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// A message of exactly `bytes` characters that starts with `token` and is padded with
/// `x`, so every round (and the floor) writes the same number of bytes. `token` is made of
/// letters, digits and `-`, which form encoding leaves alone.
pub fn message(token: &str, bytes: usize) -> String {
    debug_assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let mut out = String::with_capacity(bytes.max(token.len()));
    out.push_str(token);
    while out.len() < bytes {
        out.push('x');
    }
    out
}

/// The marker a client looks for in its answer: the token followed by the first pad
/// character or the closing quote, so token `r1` does not match `r12`.
pub fn needle(token: &str, bytes: usize) -> Vec<u8> {
    let next = if token.len() < bytes { b'x' } else { b'"' };
    let mut out = token.as_bytes().to_vec();
    out.push(next);
    out
}

/// How much of a response a buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not all of it yet; normal between reads.
    Partial,
    /// A whole response of this many bytes, with this status code, starts the buffer.
    Complete {
        /// Head plus body, in bytes.
        len: usize,
        /// The status code.
        status: u16,
    },
    /// Not a response we can frame (no status line, no length, over the cap).
    Invalid,
}

/// Frames the response at the start of `buf`.
pub fn frame(buf: &[u8]) -> Frame {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > RESPONSE_CAP_BYTES {
            Frame::Invalid
        } else {
            Frame::Partial
        };
    };
    let head = &buf[..head_end];
    let status = match head.get(..12) {
        Some(line) if line.starts_with(b"HTTP/1.1 ") => std::str::from_utf8(&line[9..12])
            .ok()
            .and_then(|code| code.parse::<u16>().ok()),
        _ => None,
    };
    let length = head.split(|&b| b == b'\n').find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = line.split_at(colon);
        if !name.eq_ignore_ascii_case(b"content-length") {
            return None;
        }
        std::str::from_utf8(&value[1..])
            .ok()?
            .trim()
            .parse::<usize>()
            .ok()
    });
    match (status, length) {
        (Some(status), Some(length)) if head_end + 4 + length <= RESPONSE_CAP_BYTES => {
            let len = head_end + 4 + length;
            if buf.len() < len {
                Frame::Partial
            } else {
                Frame::Complete { len, status }
            }
        }
        _ => Frame::Invalid,
    }
}

/// The body of a complete response (everything after the blank line).
pub fn body(response: &[u8]) -> &[u8] {
    find(response, b"\r\n\r\n").map_or(&[][..], |end| &response[end + 4..])
}

/// Whether `needle` occurs in `haystack`. Answers are a few hundred bytes; a naive search
/// is as fast as anything cleverer at that size.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// Where `needle` first occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}
