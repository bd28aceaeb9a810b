//! docs/DEPLOY.md, run. Its nginx site: Debian's nginx with that very block (taken from
//! the doc, so the doc cannot drift from what is tested) in front of a server trusting it.
//! Two visitors behind it are two clients (one flooding gets 429, the other still posts),
//! a long poll and an event stream pass through it as they happen, and upstream
//! connections are kept alive and reused. Its systemd unit: `systemd-analyze verify`
//! knows every key and value in it.

mod common;
#[path = "common/nginx.rs"]
mod nginx;

use comet_chat::proxy::Trusted;
use comet_chat::Config;
use common::*;
use nginx::Nginx;
use std::time::Duration;

/// The one block of docs/DEPLOY.md fenced as `language` that contains `marker`.
fn deploy_block(language: &str, marker: &str) -> String {
    let doc = include_str!("../docs/DEPLOY.md");
    let blocks: Vec<&str> = doc
        .split(&format!("```{language}\n"))
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .filter(|block| block.contains(marker))
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "DEPLOY.md has one {language} block with {marker:?}"
    );
    blocks[0].to_owned()
}

/// The nginx site (the block with an `upstream`).
fn deploy_site() -> String {
    deploy_block("nginx", "upstream ")
}

/// `text` with `from` replaced by `to`, where `from` must occur exactly once: if the doc
/// changes under the test, the test says so instead of testing something else.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "DEPLOY.md's site has one {from:?}"
    );
    text.replacen(from, to, 1)
}

/// A TCP connection to `to` from the loopback address `source`.
fn connect_from_source(to: std::net::SocketAddr, source: &str) -> std::net::TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

/// A request through nginx, as a browser on `source` sends it.
fn form_post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: chat.example.org\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn behind_the_deploy_docs_nginx_visitors_are_told_apart_and_nothing_is_buffered() {
    let server = start(Config {
        post_rate: 1,
        post_burst: 2,
        trusted_proxies: {
            let mut trusted = Trusted::default();
            trusted.add("127.0.0.1".parse().unwrap());
            trusted
        },
        ..test_config()
    });
    let site = deploy_site();
    // What the doc promises about timeouts holds for the defaults a newcomer runs.
    let read_timeout: u64 = site
        .split("proxy_read_timeout ")
        .nth(1)
        .and_then(|rest| rest.split("s;").next())
        .and_then(|secs| secs.parse().ok())
        .expect("the site sets proxy_read_timeout in seconds");
    let defaults = Config::default();
    assert!(Duration::from_secs(read_timeout) > defaults.poll_timeout);
    assert!(Duration::from_secs(read_timeout) > defaults.heartbeat);
    let port = free_port();
    let site = replace_once(
        &site,
        "server 127.0.0.1:8080;",
        &format!("server {};", server.addr),
    );
    let site = replace_once(&site, "listen 80;", &format!("listen 127.0.0.1:{port};"));
    let nginx = Nginx::start(&site, port);
    let front = nginx.addr;

    // Two visitors, from two addresses, through nginx: Ann floods, Bob still posts.
    let mut ann = Client::connect_from(front, "127.0.0.2");
    let mut bob = Client::connect_from(front, "127.0.0.3");
    let mut statuses = Vec::new();
    for i in 0..3 {
        ann.send(form_post("/rooms/r/messages", &format!("from=ann&text=a{i}")).as_bytes());
        statuses.push(ann.read_reply().status);
    }
    assert_eq!(statuses, [201, 201, 429], "{}", nginx.error_log());
    bob.send(form_post("/rooms/r/messages", "from=bob&text=hi").as_bytes());
    let reply = bob.read_reply();
    assert_eq!(reply.status, 201, "{}", reply.text());

    // A long poll waits in the server, through nginx, and is answered by a post.
    let mut poller = Client::connect_from(front, "127.0.0.4");
    poller.get("/chat");
    wait_parked(&server, 1);
    bob.send(form_post("/chat", "message=for the poll").as_bytes());
    assert_eq!(bob.read_reply().status, 200);
    let answer = poller.read_reply();
    assert_eq!(answer.status, 200);
    assert!(answer.text().contains("for the poll"), "{}", answer.text());

    // An event stream: its head, then an event as soon as it is posted, while the
    // stream stays open (nginx passes bytes on, it does not wait for an end).
    let mut listener = Client::connect_from(front, "127.0.0.5");
    listener.get("/rooms/s/events");
    let head = listener.read_stream_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Type"), Some("text/event-stream"));
    let mut carol = Client::connect_from(front, "127.0.0.6");
    carol.send(form_post("/rooms/s/messages", "from=carol&text=live").as_bytes());
    assert_eq!(carol.read_reply().status, 201);
    // (Before it, the stream's `retry:` line; nginx frames both as chunks.)
    let event = listener.read_until("\"live\"");
    assert!(
        event.contains("event: message") || event.contains("data:"),
        "{event}"
    );

    // A WebSocket through the site: the upgrade passes, a page of the site's own origin
    // may open it, another site's may not, and frames flow both ways as they happen.
    let socket_from = |source: &str, origin: &str| {
        let stream = connect_from_source(front, source);
        let extra = format!("Origin: {origin}\r\n");
        common::ws::handshake_on(stream, "chat.example.org", "/rooms/w/ws?since=0", &extra)
    };
    let (mut dave, opened) = socket_from("127.0.0.7", "https://chat.example.org");
    assert_eq!(opened.status, 101, "{}{}", opened.head, opened.body);
    let (_, foreign) = socket_from("127.0.0.8", "https://evil.example");
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    dave.send_json(serde_json::json!({"type":"post","text":"through nginx","from":"dave"}));
    assert_eq!(dave.until("message")["text"], "through nginx");
    assert_eq!(dave.until("ack")["status"], 201);

    // Upstream keep-alive: nginx reused its connections to the server rather than
    // opening one per request (8 requests; the poll and the stream held one each).
    let accepted = counter(&server, |s| &s.accepted);
    let requests = counter(&server, |s| &s.requests);
    assert!(
        accepted < requests,
        "{accepted} connections for {requests} requests"
    );
    let stats = get(server.addr, "/stats").json();
    assert_eq!(stats["limits"]["posts_refused"], 1, "{stats}");
}

/// The unit file parses, with every key and value known to systemd: `systemd-analyze
/// verify` (Debian's `systemd` package) warns about any it would ignore, and a unit
/// whose `KillMode` or `LimitNOFILE` is silently ignored is not the unit DEPLOY.md says.
#[test]
fn the_deploy_docs_systemd_unit_verifies() {
    let unit = deploy_block("ini", "[Service]");
    let binary = env!("CARGO_BIN_EXE_comet-chat");
    let unit = replace_once(&unit, "/usr/local/bin/comet-chat ", &format!("{binary} "));
    let dir = std::env::temp_dir().join(format!("comet-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("comet-chat.service");
    std::fs::write(&path, unit).unwrap();
    let output = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect(
            "systemd-analyze is not installed: apt-get install systemd (tests/run-all.sh does)",
        );
    let _ = std::fs::remove_dir_all(&dir);
    let complaints = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{complaints}");
    assert!(complaints.trim().is_empty(), "{complaints}");
}
