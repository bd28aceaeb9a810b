//! `--token-secret-file` as a client meets it: each way a token can be missing, wrong or
//! not enough gets its own status and a sentence saying why, a token's `sub` is the only
//! name its bearer may use, and a stream ends when its token does, to be resumed with a
//! new one from where it was.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use comet_chat::token::{self, Secret};
use comet_chat::{Config, Running};
use common::*;
use hmac::{Hmac, Mac};
use std::sync::Arc;

const KEY: &[u8] = b"a test secret that is long enough for HS256";

fn secret() -> Secret {
    Secret::from_bytes(KEY)
}

/// A server that wants tokens, with `p-` rooms private.
fn server() -> Running {
    start(Config {
        token_secret: Some(Arc::new(secret())),
        private_rooms: Some("p-".into()),
        ..test_config()
    })
}

fn mint(sub: &str, rooms: &[&str], ttl: u64) -> String {
    let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
    token::mint(&secret(), sub, &rooms, ttl, token::now_secs())
}

/// A token with these exact header and claims, signed with `key`.
fn forge(header: &str, claims: &str, key: &[u8]) -> String {
    let (h, c) = (
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims),
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{h}.{c}").as_bytes());
    format!(
        "{h}.{c}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn with_bearer(raw_head: &str, token: &str) -> String {
    raw_head.replacen("\r\n", &format!("\r\nAuthorization: Bearer {token}\r\n"), 1)
}

fn post_as(addr: std::net::SocketAddr, room: &str, token: &str, body: &str) -> Reply {
    let raw = format!(
        "POST /rooms/{room}/messages HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    request(addr, &with_bearer(&raw, token))
}

fn get_as(addr: std::net::SocketAddr, path: &str, token: &str) -> Reply {
    request(
        addr,
        &with_bearer(&format!("GET {path} HTTP/1.1\r\n\r\n"), token),
    )
}

fn assert_refused(reply: &Reply, status: u16, says: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    let error = reply.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains(says), "{error:?} should say {says:?}");
    assert!(
        reply
            .header("WWW-Authenticate")
            .unwrap()
            .starts_with("Bearer"),
        "a refusal says which scheme to use"
    );
}

#[test]
fn every_bad_token_is_refused_with_its_reason() {
    let server = server();
    let addr = server.addr;
    let exp = token::now_secs() + 60;
    let claims = format!(r#"{{"sub":"ann","rooms":["*"],"exp":{exp}}}"#);
    let hs256 = r#"{"alg":"HS256","typ":"JWT"}"#;

    // No token at all, on every way into a room.
    let missing = get(addr, "/rooms/r/messages");
    assert_refused(&missing, 401, "needs a token");
    assert_eq!(
        missing.header("WWW-Authenticate"),
        Some(r#"Bearer realm="comet-chat""#)
    );
    assert_refused(
        &post_form(addr, "/rooms/r/messages", "from=ann&text=hi"),
        401,
        "needs a token",
    );
    assert_refused(
        &post_form(addr, "/chat", "message=hi"),
        401,
        "needs a token",
    );
    assert_refused(&get(addr, "/chat"), 401, "needs a token");
    assert_refused(&get(addr, "/rooms/r/presence"), 401, "needs a token");
    let mut stream = Client::connect(addr);
    stream.get("/rooms/r/events");
    assert_refused(&stream.read_reply(), 401, "needs a token");

    // Malformed, forged, alg none, and expired.
    assert_refused(
        &get_as(addr, "/rooms/r/messages", "not-a-jwt"),
        401,
        "not a JWT",
    );
    let forged = forge(hs256, &claims, b"some other secret, just as long as ours");
    let reply = get_as(addr, "/rooms/r/messages", &forged);
    assert_refused(&reply, 401, "signature");
    assert!(reply
        .header("WWW-Authenticate")
        .unwrap()
        .contains("invalid_token"));
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(&claims)
    );
    assert_refused(&get_as(addr, "/rooms/r/messages", &none), 401, "only HS256");
    let confused = forge(r#"{"alg":"RS256","typ":"JWT"}"#, &claims, KEY);
    assert_refused(
        &get_as(addr, "/rooms/r/messages", &confused),
        401,
        "only HS256",
    );
    let old = format!(r#"{{"sub":"ann","rooms":["*"],"exp":{}}}"#, exp - 60 - 6);
    assert_refused(
        &get_as(addr, "/rooms/r/messages", &forge(hs256, &old, KEY)),
        401,
        "expired",
    );
    // Regression: `"crit": null` was taken for no `crit` at all and let in. RFC 7515
    // wants a non-empty list there, and we understand no extension: any `crit` is refused.
    for header in [
        r#"{"alg":"HS256","typ":"JWT","crit":null}"#,
        r#"{"alg":"HS256","typ":"JWT","crit":["exp"]}"#,
    ] {
        assert_refused(
            &get_as(addr, "/rooms/r/messages", &forge(header, &claims, KEY)),
            401,
            "crit",
        );
    }
    let no_exp = r#"{"sub":"ann","rooms":["*"]}"#;
    assert_refused(
        &get_as(addr, "/rooms/r/messages", &forge(hs256, no_exp, KEY)),
        401,
        "exp",
    );
    // A sub no name may be is no identity at all, never cleaned up into another name.
    // Nor one that passes for another name (a right-to-left override, a zero-width space).
    for sub in [
        r#""ann\r\nX-Evil: 1""#,
        r#""a\nb""#,
        r#""""#,
        "7",
        r#""ann\u202e""#,
        r#""a\u200bnn""#,
    ] {
        let claims = format!(r#"{{"sub":{sub},"rooms":["*"],"exp":{exp}}}"#);
        let reply = get_as(addr, "/rooms/r/messages", &forge(hs256, &claims, KEY));
        assert_refused(&reply, 401, "sub");
        assert!(reply.header("X-Evil").is_none());
    }

    // The same token, good, is let in: by header, or by ?token= for EventSource.
    let good = forge(hs256, &claims, KEY);
    assert_eq!(get_as(addr, "/rooms/r/presence", &good).status, 200);
    assert_eq!(
        get(addr, &format!("/rooms/r/presence?token={good}")).status,
        200
    );
    // Without tokens nothing else changed: the page, /stats.
    assert_eq!(get(addr, "/stats").status, 200);
    let stats = get(addr, "/stats").json();
    assert!(
        stats["limits"]["unauthorized"].as_u64().unwrap() >= 16,
        "{stats}"
    );
}

#[test]
fn a_token_grants_its_rooms_and_never_a_private_one_by_star() {
    let server = server();
    let addr = server.addr;
    let garden = mint("ann", &["garden"], 60);
    assert_eq!(post_as(addr, "garden", &garden, "text=hi").status, 201);
    let other = post_as(addr, "kitchen", &garden, "text=hi");
    assert_refused(&other, 403, "does not grant");
    assert!(other
        .header("WWW-Authenticate")
        .unwrap()
        .contains("insufficient_scope"));
    // The classic /chat is the lobby: it needs a token that grants the lobby.
    assert_refused(&get_as(addr, "/chat", &garden), 403, "does not grant");

    let star = mint("bob", &["*"], 60);
    assert_eq!(post_as(addr, "kitchen", &star, "text=hi").status, 201);
    assert_refused(
        &post_as(addr, "p-board", &star, "text=hi"),
        403,
        "does not grant",
    );
    assert_refused(
        &get_as(addr, "/rooms/p-board/events", &star),
        403,
        "does not grant",
    );
    let board = mint("cy", &["p-board"], 60);
    assert_eq!(post_as(addr, "p-board", &board, "text=hi").status, 201);
    let stats = get(addr, "/stats").json();
    assert_eq!(stats["limits"]["forbidden"], 4, "{stats}");
}

#[test]
fn the_tokens_sub_is_the_only_name_its_bearer_may_use() {
    let server = server();
    let addr = server.addr;
    let ann = mint("ann", &["*"], 60);
    // Left out: the post is ann's.
    let posted = post_as(addr, "r", &ann, "text=hello");
    assert_eq!(posted.status, 201);
    // Another name: refused, never silently replaced.
    let spoofed = post_as(addr, "r", &ann, "from=bob&text=I am bob");
    assert_eq!(spoofed.status, 400, "{}", spoofed.text());
    assert!(spoofed.json()["error"].as_str().unwrap().contains("token"));
    assert_eq!(
        post_as(addr, "r", &ann, "from=ann&text=still me").status,
        201
    );
    let history = get_as(addr, "/rooms/r/messages", &ann).json();
    let from: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["from"].as_str().unwrap())
        .collect();
    assert_eq!(from, ["ann", "ann"], "bob never spoke");
    // Presence and typing take the sub too.
    let mut poll = Client::connect(addr);
    poll.send(with_bearer("GET /rooms/r/messages?since=0 HTTP/1.1\r\n\r\n", &ann).as_bytes());
    poll.read_reply();
    let present = get_as(addr, "/rooms/r/presence", &ann).json();
    assert_eq!(present["present"], serde_json::json!(["ann"]));
    let typing = request(
        addr,
        &with_bearer(
            "POST /rooms/r/typing HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"from\":\"eve\"}\n",
            &ann,
        ),
    );
    assert_eq!(typing.status, 400);
    let named = get_as(addr, "/rooms/r/messages?since=0&name=eve", &ann);
    assert_eq!(named.status, 400);
    // The classic post is the sub's, never "anonymous".
    let raw = "POST /chat HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\nmessage=yo";
    assert_eq!(request(addr, &with_bearer(raw, &ann)).status, 200);
    let lobby = get_as(addr, "/rooms/lobby/messages", &ann).json();
    assert_eq!(lobby["messages"][0]["from"], "ann");
}

#[test]
fn a_stream_ends_with_its_token_and_resumes_with_a_new_one() {
    // Heartbeats more often than the test's read timeout, while the token runs out.
    let server = start(Config {
        token_secret: Some(Arc::new(secret())),
        heartbeat: std::time::Duration::from_secs(2),
        ..test_config()
    });
    let addr = server.addr;
    let poster = mint("bot", &["*"], 60);
    assert_eq!(post_as(addr, "r", &poster, "text=before").status, 201);
    // A token that runs out in a second, and is accepted for the 5 s leeway after.
    let short = mint("ann", &["r"], 1);
    let mut stream = Client::connect(addr);
    stream.get(&format!("/rooms/r/events?token={short}"));
    assert_eq!(stream.read_stream_head().status, 200);
    let first = stream.read_until("\"text\":\"before\"");
    let last_id = first
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("id: "))
        .unwrap()
        .to_owned();
    let expired = stream.read_until("event: expired\n");
    assert!(!expired.contains("text"), "nothing else came meanwhile");
    let data = stream.read_event();
    assert!(
        data.starts_with("data: "),
        "browsers drop an event without data: {data:?}"
    );
    assert!(stream.closed_by_server(), "and the stream is over");
    // Posted while the page fetched a new token.
    assert_eq!(post_as(addr, "r", &poster, "text=meanwhile").status, 201);
    // Reconnecting with the old token is refused; with a new one it resumes.
    let mut again = Client::connect(addr);
    again.get(&format!("/rooms/r/events?token={short}&since={last_id}"));
    let refused = again.read_reply();
    assert_eq!(refused.status, 401, "{}", refused.text());
    let fresh = mint("ann", &["r"], 60);
    let mut resumed = Client::connect(addr);
    resumed.get(&format!("/rooms/r/events?token={fresh}&since={last_id}"));
    assert_eq!(resumed.read_stream_head().status, 200);
    let caught_up = resumed.read_until("\"text\":\"meanwhile\"");
    assert!(!caught_up.contains("\"text\":\"before\""), "{caught_up}");
    let stats = get_as(addr, "/stats", &fresh).json();
    assert_eq!(stats["limits"]["streams_expired"], 1);
}

#[test]
fn a_preflight_needs_no_token_and_allows_the_authorization_header() {
    let server = start(Config {
        token_secret: Some(Arc::new(secret())),
        cors_origin: Some("https://site.example".into()),
        ..test_config()
    });
    let reply = request(
        server.addr,
        "OPTIONS /rooms/r/messages HTTP/1.1\r\nOrigin: https://site.example\r\n\
         Access-Control-Request-Headers: authorization\r\n\r\n",
    );
    assert_eq!(reply.status, 204);
    assert!(reply
        .header("Access-Control-Allow-Headers")
        .unwrap()
        .contains("Authorization"));
    // A refusal carries CORS too, so a page on the site can read why.
    let refused = get(server.addr, "/rooms/r/messages");
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("Access-Control-Allow-Origin"),
        Some("https://site.example")
    );
}

#[test]
fn comet_chat_token_prints_a_token_the_server_accepts() {
    let dir = std::env::temp_dir().join(format!("comet-token-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, format!("{}\n", String::from_utf8_lossy(KEY))).unwrap();
    let output = std::process::Command::new(server_binary())
        .args([
            "token",
            "--secret-file",
            secret_file.to_str().unwrap(),
            "--sub",
            "ann",
        ])
        .args(["--rooms", "r", "--ttl", "5m"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    let server = server();
    assert_eq!(
        post_as(server.addr, "r", printed.trim(), "text=hi").status,
        201
    );
    let refused = std::process::Command::new(server_binary())
        .args(["token", "--secret-file", secret_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--sub is required"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn with_tokens_everyone_behind_one_address_may_be_present() {
    // Without tokens one address may make 32 names (it could make them up); with tokens a
    // name is vouched for, and an office behind one NAT is many people.
    let server = server();
    let addr = server.addr;
    // A message, so that each poll from the start is answered at once.
    assert_eq!(
        post_as(addr, "r", &mint("bot", &["r"], 60), "text=hi").status,
        201
    );
    for n in 0..40 {
        let token = mint(&format!("user{n}"), &["r"], 60);
        let reply = get_as(addr, "/rooms/r/messages?since=0", &token);
        assert_eq!(reply.status, 200, "user{n}: {}", reply.text());
    }
    let token = mint("ann", &["r"], 60);
    let present = get_as(addr, "/rooms/r/presence", &token).json();
    assert_eq!(
        present["present"].as_array().unwrap().len(),
        40,
        "bot only posted"
    );
}

/// Regression: a stream behind on its writes has a write deadline instead of a heartbeat,
/// and its token's end was noticed only at the heartbeat: a stream still replaying a long
/// history to a client that reads slowly went on to replay messages posted long after its
/// token had run out.
#[test]
fn a_stream_behind_on_its_writes_still_ends_with_its_token() {
    let server = start(without_client_limits(Config {
        token_secret: Some(Arc::new(secret())),
        write_timeout: std::time::Duration::from_secs(60),
        history_messages: 5000,
        history_bytes: 32 << 20,
        ..test_config()
    }));
    let addr = server.addr;
    let poster = mint("bot", &["*"], 60);
    // More history than the socket buffers hold: the stream's replay falls behind.
    let text = "x".repeat(4000);
    let mut client = Client::connect(addr);
    for _ in 0..2500 {
        let body = format!("text={text}");
        let raw = format!(
            "POST /rooms/r/messages HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        client.send(with_bearer(&raw, &poster).as_bytes());
        assert_eq!(client.read_reply().status, 201);
    }
    // A reader that asks for all of it, and reads nothing for now.
    let mut reader = Client::connect(addr);
    reader.get(&format!(
        "/rooms/r/events?since=0&token={}",
        mint("ann", &["r"], 1)
    ));
    // Past the token's end (1 s, and the 5 s leeway).
    std::thread::sleep(std::time::Duration::from_millis(6500));
    assert_eq!(
        post_as(addr, "r", &poster, "text=after the end").status,
        201
    );
    let mut everything = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match std::io::Read::read(&mut reader.stream, &mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => everything.extend_from_slice(&chunk[..n]),
        }
    }
    let everything = String::from_utf8_lossy(&everything);
    assert!(everything.contains("event: expired\n"), "no expired event");
    assert!(
        !everything.contains("after the end"),
        "a message posted after the token's end arrived"
    );
    assert_eq!(counter(&server, |s| &s.dropped_slow), 0);
}

/// Regression: an `Authorization` header of another scheme (a proxy's Basic credentials,
/// which browsers repeat on EventSource requests) hid the token sent in the query, and the
/// refusal then said no token was sent.
#[test]
fn a_token_in_the_query_works_beside_another_authorization_scheme() {
    let server = server();
    let token = mint("ann", &["r"], 60);
    for authorization in ["Basic YTpi", "", "Negotiate abc"] {
        let raw = format!(
            "GET /rooms/r/presence?token={token} HTTP/1.1\r\nAuthorization: {authorization}\r\n\r\n"
        );
        let reply = request(server.addr, &raw);
        assert_eq!(
            reply.status,
            200,
            "Authorization: {authorization:?}: {}",
            reply.text()
        );
    }
    // A Bearer header still wins over the query.
    let raw = format!(
        "GET /rooms/r/presence?token={token} HTTP/1.1\r\nAuthorization: Bearer nonsense\r\n\r\n"
    );
    assert_eq!(request(server.addr, &raw).status, 401);
}

/// PROTOCOL.md allows the `rooms` claim to be `"*"` alone as well as a list: a token a
/// site's own JWT library made that way posts in every public room, and no private one.
#[test]
fn a_rooms_claim_of_the_star_alone_grants_every_public_room() {
    let server = server();
    let claims = format!(
        r#"{{"sub":"ann","rooms":"*","exp":{}}}"#,
        token::now_secs() + 60
    );
    let star = forge(r#"{"alg":"HS256","typ":"JWT"}"#, &claims, KEY);
    let reply = post_as(server.addr, "garden", &star, "text=hi");
    assert_eq!(reply.status, 201, "{}", reply.text());
    let private = post_as(server.addr, "p-board", &star, "text=hi");
    assert_eq!(private.status, 403, "{}", private.text());
}
