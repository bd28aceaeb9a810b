//! Property tests of the request path: random requests, random bytes, random splits.
//! Invariants: no panic; exactly one outcome per complete request, in order; buffers never
//! exceed their caps; every response is well-formed; bad input is refused, never hung on.

mod common;
#[path = "common/request_path.rs"]
mod request_path;

use comet_chat::http::Limits;
use common::*;
use proptest::prelude::*;
use std::time::Duration;

/// One valid request and the first line the server should see for it.
fn valid_request() -> impl Strategy<Value = (Vec<u8>, String)> {
    // A valid text: not blank (the leading `m`), no control characters but newline.
    let text_char =
        any::<char>().prop_filter("a valid text character", |c| !c.is_control() || *c == '\n');
    let message = proptest::collection::vec(text_char, 0..40)
        .prop_map(|chars| std::iter::once('m').chain(chars).collect::<String>());
    prop_oneof![
        Just((
            b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "GET /stats HTTP/1.1".to_owned()
        )),
        Just((
            b"GET /missing HTTP/1.1\r\n\r\n".to_vec(),
            "GET /missing HTTP/1.1".to_owned()
        )),
        Just((
            b"HEAD / HTTP/1.1\r\nAccept: */*\r\n\r\n".to_vec(),
            "HEAD / HTTP/1.1".to_owned()
        )),
        Just((
            b"DELETE /chat HTTP/1.1\r\n\r\n".to_vec(),
            "DELETE /chat HTTP/1.1".to_owned()
        )),
        message.prop_map(|text| {
            let body = format!("message={}", percent_encode(&text));
            let raw = format!(
                "POST /chat HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            (raw.into_bytes(), "POST /chat HTTP/1.1".to_owned())
        }),
    ]
}

fn percent_encode(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Splits `bytes` at the given cut points (taken modulo the length).
fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn pipelined_valid_requests_split_anywhere_each_get_one_outcome(
        requests in proptest::collection::vec(valid_request(), 1..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let stream: Vec<u8> = requests.iter().flat_map(|(raw, _)| raw.clone()).collect();
        let outcome = request_path::run(&split(&stream, &cuts), &Limits::default());
        let expected: Vec<String> = requests.iter().map(|(_, line)| line.clone()).collect();
        prop_assert_eq!(outcome.rejected, None);
        prop_assert_eq!(outcome.requests, expected);
        prop_assert_eq!(outcome.leftover, 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_within_caps(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        head_bytes in 64usize..2048,
        body_bytes in 1usize..1024,
    ) {
        let limits = Limits { head_bytes, body_bytes, ..Limits::default() };
        // run() asserts the caps and the response shapes itself.
        let outcome = request_path::run(&split(&bytes, &cuts), &limits);
        prop_assert!(outcome.leftover <= bytes.len());
    }

    #[test]
    fn garbage_after_a_valid_request_is_refused_not_mistaken_for_a_request(
        (first, _) in valid_request(),
        garbage in proptest::collection::vec(any::<u8>(), 1..200),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        // Garbage that happens to be a valid request prefix may wait for more bytes.
        let mut stream = first.clone();
        stream.extend_from_slice(b"\x01");
        stream.extend_from_slice(&garbage);
        let outcome = request_path::run(&split(&stream, &cuts), &Limits::default());
        prop_assert_eq!(outcome.requests.len(), 1);
        prop_assert_eq!(outcome.rejected, Some(400));
    }
}

/// The same property over a real socket: the server itself answers every pipelined request
/// exactly once, in order, however the bytes are split.
#[test]
fn the_server_answers_every_pipelined_request_once_in_order() {
    // Hundreds of posts from one address: not what the rate limits are tested with.
    let server = start(without_client_limits(test_config()));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    let strategy = (
        proptest::collection::vec(valid_request(), 1..6),
        proptest::collection::vec(any::<usize>(), 0..8),
    );
    runner
        .run(&strategy, |(requests, cuts)| {
            let stream: Vec<u8> = requests.iter().flat_map(|(raw, _)| raw.clone()).collect();
            let mut client = Client::connect(server.addr);
            for chunk in split(&stream, &cuts) {
                client.send(chunk);
                std::thread::sleep(Duration::from_micros(200));
            }
            for (_, line) in &requests {
                let reply = client.read_reply_with(line.starts_with("HEAD"));
                let expected = match line.as_str() {
                    "GET /stats HTTP/1.1" | "POST /chat HTTP/1.1" => 200,
                    "GET /missing HTTP/1.1" | "HEAD / HTTP/1.1" => 404,
                    _ => 405,
                };
                prop_assert_eq!(reply.status, expected, "{}", line);
            }
            prop_assert!(
                client.silent_for(Duration::from_millis(20)),
                "no extra response"
            );
            Ok(())
        })
        .unwrap();
}

/// Found by the fuzzer: empty lines before a request line are skipped (RFC 9112 allows it),
/// so a HEAD request preceded by CRLF must still get a body-less answer.
#[test]
fn head_after_leading_empty_lines_gets_no_body() {
    let outcome = request_path::run(
        &[b"\r\nHEAD / HT", b"TP/1.0\r\nConnection:\r\n\r\n"],
        &Limits::default(),
    );
    assert_eq!(outcome.requests, vec!["HEAD / HTTP/1.0".to_owned()]);
    assert_eq!(outcome.rejected, None);
}

/// A token's every byte counts: the header, the claims (a name, a room, a time) and the
/// signature. Whatever single byte of a good token is changed, to whatever value, the
/// request that carries it never reaches a room.
mod tokens {
    use comet_chat::assets::Assets;
    use comet_chat::http::Limits;
    use comet_chat::routes::{self, Action, Next};
    use comet_chat::token::{self, Secret};
    use proptest::prelude::*;

    fn route(token: &[u8], secret: &Secret, now: u64) -> Next {
        let assets = Assets::empty();
        let context = routes::Context {
            assets: &assets,
            max_message_bytes: 4096,
            replies: &comet_chat::answer::Replies::default(),
            auth: Some(routes::Auth {
                secret,
                private_prefix: None,
                now,
            }),
            websocket: true,
            cors_origin: None,
        };
        let raw = [
            b"GET /rooms/r/messages HTTP/1.1\r\nAuthorization: Bearer ".as_slice(),
            token,
            b"\r\n\r\n",
        ]
        .concat();
        routes::next(&raw, &Limits::default(), &context)
    }

    proptest! {
        #[test]
        fn a_token_with_any_byte_changed_is_refused(
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let secret = Secret::from_bytes(b"a test secret that is long enough for HS256");
            let now = 1_800_000_000;
            let good = token::mint(&secret, "ann", &["r".into()], 60, now);
            // The unchanged token is let in, so a refusal below is the change's doing.
            let let_in = matches!(
                route(good.as_bytes(), &secret, now),
                Next::Request { action: Action::RoomPoll { .. }, .. }
            );
            prop_assert!(let_in);
            let mut changed = good.into_bytes();
            let i = at.index(changed.len());
            prop_assume!(changed[i] != byte);
            changed[i] = byte;
            match route(&changed, &secret, now) {
                Next::Request { action: Action::Denied { .. }, .. }
                | Next::Reject(_)
                | Next::NeedMore { .. } => {}
                Next::Request { action, .. } => {
                    prop_assert!(false, "byte {i} set to {byte:#04x} let in: {action:?}")
                }
            }
        }
    }
}
