//! The request path of one connection without its socket, driven the way the server drives
//! it (bytes arrive in chunks; after each chunk every complete request is taken), with the
//! invariants checked at every step. Shared by the property tests and the fuzz target
//! (fuzz/ includes this file by path).

use comet_chat::answer;
use comet_chat::api;
use comet_chat::assets::Assets;
use comet_chat::http::Limits;
use comet_chat::outgoing::Response;
use comet_chat::routes::{self, Action, Next};

/// What one connection's input amounted to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Complete requests taken, in order, as (first line of the request) strings.
    pub requests: Vec<String>,
    /// The status the input was rejected with, if it was (the connection then closes).
    pub rejected: Option<u16>,
    /// Bytes left over, waiting for more.
    pub leftover: usize,
}

/// Feeds `chunks` in order through `routes::next`, as `Server::process_input` does.
///
/// Panics (failing the test or fuzz run) if an invariant breaks: the buffer outgrows the
/// request cap plus one chunk; a request claims more bytes than are buffered or none at all;
/// a response is not a well-formed HTTP response whose Content-Length matches its body.
pub fn run(chunks: &[&[u8]], limits: &Limits) -> Outcome {
    let assets = Assets::empty();
    let context = routes::Context {
        assets: &assets,
        max_message_bytes: 4096,
        replies: &comet_chat::answer::Replies::new(Some("https://example.org")),
        auth: None,
        websocket: true,
        cors_origin: Some("https://example.org"),
    };
    let mut input: Vec<u8> = Vec::new();
    let mut outcome = Outcome::default();
    for chunk in chunks {
        input.extend_from_slice(chunk);
        loop {
            match routes::next(&input, limits, &context) {
                Next::NeedMore { .. } => {
                    assert!(
                        input.len() <= limits.request_bytes() + chunk.len(),
                        "buffered {} bytes waiting for a request; cap {} + chunk {}",
                        input.len(),
                        limits.request_bytes(),
                        chunk.len()
                    );
                    break;
                }
                Next::Reject(status) => {
                    assert!(
                        (400..500).contains(&status.code),
                        "rejected with {}",
                        status.code
                    );
                    outcome.rejected = Some(status.code);
                    outcome.leftover = input.len();
                    return outcome;
                }
                Next::Request {
                    action, consumed, ..
                } => {
                    assert!(
                        consumed > 0 && consumed <= input.len(),
                        "consumed {consumed} of {}",
                        input.len()
                    );
                    // httparse skips empty lines before a request line, as RFC 9112 allows.
                    let request = input[..consumed].trim_ascii_start();
                    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
                    check_action(&action, line.starts_with(b"HEAD "));
                    outcome
                        .requests
                        .push(String::from_utf8_lossy(line).into_owned());
                    input.drain(..consumed);
                }
            }
        }
    }
    outcome.leftover = input.len();
    outcome
}

fn check_action(action: &Action, head: bool) {
    match action {
        Action::Reply { response, .. } | Action::Denied { response, .. } => {
            let bytes: &[u8] = match response {
                Response::Owned(bytes) => bytes,
                Response::Shared(bytes) => bytes,
                Response::Pieces(_) => panic!("routing never answers with pieces"),
            };
            check_response(bytes, head)
        }
        Action::Broadcast { from, message } => {
            // Classic posts obey the room rules too.
            assert!(api::check_name(from).is_ok());
            // Already normalised: normalising again changes nothing and refuses nothing.
            assert_eq!(
                api::normalize_text(message.clone(), 4096).as_ref(),
                Ok(message)
            );
            let bytes = answer::classic_message(message);
            check_response(&bytes, false);
            // The body is exact JSON: it decodes back to the very message.
            let body = &bytes[bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
            let json: serde_json::Value = serde_json::from_slice(body).expect("JSON body");
            assert_eq!(json["ok"].as_str(), Some(message.as_str()));
        }
        // What the room API let through must already be valid.
        Action::RoomPost { room, message } => {
            assert!(api::valid_room(room));
            assert!(api::check_name(&message.from).is_ok());
            assert_eq!(
                api::normalize_text(message.text.clone(), 4096).as_ref(),
                Ok(&message.text)
            );
        }
        Action::Typing { room, from } => {
            assert!(api::valid_room(room));
            assert!(api::check_name(from).is_ok());
        }
        Action::RoomPoll { room, name, .. }
        | Action::Stream { room, name, .. }
        | Action::Socket { room, name, .. } => {
            assert!(api::valid_room(room));
            assert!(name.as_deref().is_none_or(|n| api::check_name(n).is_ok()));
        }
        Action::Presence { room } => assert!(api::valid_room(room)),
        Action::Park | Action::Stats { .. } => {}
    }
}

/// A response parses as HTTP and carries exactly Content-Length body bytes (none for HEAD);
/// a 1xx or 204 carries neither a Content-Length nor a body.
pub fn check_response(bytes: &[u8], head: bool) {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        other => panic!(
            "unparseable response {other:?}: {:?}",
            String::from_utf8_lossy(bytes)
        ),
    };
    let length: Option<usize> = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap());
    let code = response.code.unwrap();
    if code < 200 || code == 204 {
        assert_eq!(length, None, "a {code} has no Content-Length");
        assert_eq!(bytes.len(), head_len, "a {code} has no body");
        return;
    }
    let length = length.expect("Content-Length");
    let expected = if head { 0 } else { length };
    assert_eq!(
        bytes.len() - head_len,
        expected,
        "body length matches Content-Length"
    );
}
