//! The link to Redis when something is wrong with it: a `--redis` URL that cannot work, a
//! peer at the `--redis` address that answers what Redis never would (a wrong port, a
//! proxy, a bug), and a Redis that forgot its scripts. Each must cost a refusal at start-up
//! or a reconnect, never the node. The fake peers here are small threads of this test:
//! the point is a misbehaving peer; everything else runs on a real redis-server.

mod common;

use common::redis::RedisServer;
use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn a_bad_redis_url_is_refused_without_printing_its_password() {
    for url in [
        "redis://ann:SECRET@bad-host.invalid:6379",
        "redis://ann:SECRET@127.0.0.1:notaport",
        "redis://ann:SECRET@127.0.0.1:99999",
        "redis://ann:SECRET@127.0.0.1:6379/x",
        "redis://ann:SECRET%FF@127.0.0.1:6379",
        "redis://:SECRET@127.0.0.1:6379?x",
        "redis://SECRET@[::1",
        "rediss://ann:SECRET@127.0.0.1:6379",
    ] {
        let (status, stderr) = run_to_exit(&["--no-www", "--redis", url], Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{url}: the server should refuse to start"));
        assert_eq!(status.code(), Some(2), "{url}: {stderr}");
        assert!(
            stderr.contains("--redis"),
            "{url}: says which flag: {stderr}"
        );
        assert!(
            !stderr.contains("SECRET"),
            "{url}: printed the password: {stderr}"
        );
    }
}

/// What a fake peer at the `--redis` address does with every connection the node makes.
struct Hostile {
    /// Sent first, once the test says go.
    head: Vec<u8>,
    /// Then sent over and over, until the node hangs up or `budget` bytes are spent
    /// (nothing more if empty).
    body: Vec<u8>,
}

/// Bytes the fake peer sends in all, so that a node that buffers everything (as one did)
/// costs this machine a bounded amount.
const PEER_BUDGET_BYTES: usize = 384 << 20;

/// A fake Redis: accepts every connection and, once `go` is set, sends `hostile` on it.
/// Returns its port and a count of the connections it accepted.
fn fake_redis(
    hostile: Hostile,
    go: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let hostile = Arc::new(hostile);
    let counter = accepted.clone();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let (hostile, go, stop, sent) =
                (hostile.clone(), go.clone(), stop.clone(), sent.clone());
            std::thread::spawn(move || {
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_write_timeout(Some(Duration::from_secs(1)))
                    .unwrap();
                while !go.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if stream.write_all(&hostile.head).is_err() {
                    return;
                }
                while !hostile.body.is_empty()
                    && !stop.load(Ordering::Relaxed)
                    && sent.fetch_add(hostile.body.len(), Ordering::Relaxed) < PEER_BUDGET_BYTES
                {
                    if stream.write_all(&hostile.body).is_err() {
                        return;
                    }
                }
                // Out of budget: hold the connection open, as a stuck peer would.
                let mut sink = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) && stream.read(&mut sink).is_ok_and(|n| n > 0) {
                }
            });
        }
    });
    (port, accepted)
}

fn kib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{field} in {status}"))
}

fn memory_kib(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    (kib(&status, "VmRSS:"), kib(&status, "VmHWM:"))
}

/// `/stats` answers within a couple of seconds: the loop is not held.
fn stats_answer(node: &ChildServer) {
    let mut client = Client::connect(node.addr);
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    client.send(b"GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n");
    let reply = client
        .try_read_reply()
        .expect("/stats answers while Redis misbehaves");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["redis"]["connected"],
        false,
        "{}",
        reply.text()
    );
}

/// Points a node at a peer sending `hostile` and checks that it costs reconnects only: the
/// node lives, answers `/stats` throughout, stays within bounded memory, logs why it
/// dropped the connection (`says`) and comes back for more. Returns what it logged.
fn survives(hostile: Hostile, says: &str) -> Vec<String> {
    let (go, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (port, accepted) = fake_redis(hostile, go.clone(), stop.clone());
    let url = format!("redis://127.0.0.1:{port}");
    let mut node = ChildServer::start(&["--redis", &url]);
    let (before, _) = memory_kib(node.pid());
    go.store(true, Ordering::Relaxed);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        assert!(
            node.child.try_wait().unwrap().is_none(),
            "the node died: {:?}",
            node.log_lines()
        );
        stats_answer(&node);
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, peak) = memory_kib(node.pid());
    stop.store(true, Ordering::Relaxed);
    assert!(
        peak < before + 64 * 1024,
        "the node grew from {before} KiB to a peak of {peak} KiB"
    );
    // Every attempt opens two connections: more than two means it dropped and came back.
    assert!(
        accepted.load(Ordering::Relaxed) > 2,
        "reconnected: {} connections",
        accepted.load(Ordering::Relaxed)
    );
    let logged = node.log_lines();
    assert!(
        logged
            .iter()
            .any(|line| line.contains("WARN") && line.contains(says)),
        "logged why ({says}): {logged:?}"
    );
    assert!(node.wait_exit(Duration::ZERO).is_none());
    logged
}

#[test]
fn a_peer_sending_deeply_nested_arrays_costs_a_reconnect_not_the_node() {
    survives(
        Hostile {
            head: b"*1\r\n".repeat(30_000),
            body: b"*1\r\n".repeat(1024),
        },
        "nested more than",
    );
}

#[test]
fn a_peer_announcing_a_huge_bulk_string_costs_a_reconnect_not_the_memory() {
    survives(
        Hostile {
            head: b"$9999999999\r\n".to_vec(),
            body: vec![b'x'; 64 * 1024],
        },
        "bulk string of 9999999999 bytes",
    );
}

#[test]
fn a_peer_announcing_a_huge_array_costs_a_reconnect_not_the_memory() {
    survives(
        Hostile {
            head: b"*2147483647\r\n".to_vec(),
            body: b"$1\r\nx\r\n".repeat(8192),
        },
        "array of 2147483647 elements",
    );
}

#[test]
fn a_reply_longer_than_any_the_node_asks_for_costs_a_reconnect() {
    // Each bulk string is allowed, but together they pass what one reply may hold.
    let mut body = Vec::new();
    for _ in 0..64 {
        body.extend_from_slice(b"$65536\r\n");
        body.extend_from_slice(&[b'x'; 65536]);
        body.extend_from_slice(b"\r\n");
    }
    survives(
        Hostile {
            // Few enough elements that the count alone passes either connection's cap.
            head: b"*1000\r\n".to_vec(),
            body,
        },
        "a reply longer than",
    );
}

#[test]
fn a_peers_error_text_is_logged_on_one_line_escaped_and_cut() {
    // A simple error ends at CRLF, but a bare LF inside it is just a byte: logged as it
    // came, it would forge a log line of its own (and 60 KiB of it, flood the log).
    let mut head = b"-ERR refused\n2026-12-04T00:00:00Z INFO  [comet_chat] forged\x1b[31m".to_vec();
    head.extend_from_slice(&[b'x'; 60 * 1024]);
    head.extend_from_slice(b"\r\n");
    let logged = survives(
        Hostile {
            head,
            body: Vec::new(),
        },
        "refused the set-up",
    );
    for line in &logged {
        assert!(
            !line.contains("forged") || line.contains("refused\\n2026"),
            "{line:?}"
        );
        assert!(!line.contains('\x1b'), "{line:?}");
        assert!(line.len() < 1024, "a log line of {} bytes", line.len());
    }
    assert!(logged.iter().any(|l| l.contains("...")), "{logged:?}");
}

#[test]
fn a_history_longer_than_one_pass_reads_loads_whole() {
    // The load's reply is read over several passes (the link reads at most 256 KiB a
    // pass) and must still come whole, within the reply cap.
    let redis = RedisServer::start(&[]);
    let url = redis.url();
    let writer = ChildServer::start(&["--redis", &url, "--post-burst", "1000"]);
    // A node listens before it reaches Redis, and answers posts 503 until it does.
    wait_until(Duration::from_secs(10), "the writer reaches Redis", || {
        get(writer.addr, "/stats").json()["redis"]["connected"] == true
    });
    let text = "y".repeat(4000);
    for i in 0..100 {
        let reply = post_form(
            writer.addr,
            "/rooms/big/messages",
            &format!("from=ann&text={i}-{text}"),
        );
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    let reader = ChildServer::start(&["--redis", &url]);
    wait_until(
        Duration::from_secs(10),
        "the second node loads the room",
        || get(reader.addr, "/rooms/big/messages").status == 200,
    );
    // Page through the copy: every message, in order (a poll from the head would wait).
    let (mut loaded, mut since) = (Vec::new(), String::new());
    while loaded.len() < 100 {
        let page = get(reader.addr, &format!("/rooms/big/messages?since={since}"));
        assert!(!page.texts().is_empty(), "after {} messages", loaded.len());
        loaded.extend(page.texts());
        since = page.json()["next"].as_str().unwrap().to_owned();
    }
    assert_eq!(loaded.len(), 100);
    for (i, text) in loaded.iter().enumerate() {
        assert!(text.starts_with(&format!("{i}-")), "{}", &text[..8]);
    }
}

#[test]
fn posts_and_loads_go_on_after_redis_forgets_its_scripts() {
    let redis = RedisServer::start(&[]);
    let node = ChildServer::start(&["--redis", &redis.url()]);
    let post = |room: &str, text: &str| {
        post_form(
            node.addr,
            &format!("/rooms/{room}/messages"),
            &format!("from=ann&text={text}"),
        )
    };
    wait_until(Duration::from_secs(10), "the node reaches Redis", || {
        post("r", "before").status == 201
    });
    assert_eq!(redis.command(&["SCRIPT", "FLUSH"]).as_deref(), Some("+OK"));
    let after = post("r", "after");
    assert_eq!(after.status, 201, "{}", after.text());
    // A room this node has not loaded: its load runs the history script, flushed too.
    assert_eq!(redis.command(&["SCRIPT", "FLUSH"]).as_deref(), Some("+OK"));
    let other = get(node.addr, "/rooms/elsewhere/presence");
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(
        get(node.addr, "/rooms/r/messages").texts(),
        ["before", "after"]
    );

    // An error Redis answers is logged with the command it answered.
    assert_eq!(
        redis
            .command(&["CONFIG", "SET", "maxmemory", "1"])
            .as_deref(),
        Some("+OK")
    );
    let refused = post("r", "too-much");
    assert_eq!(refused.status, 503, "{}", refused.text());
    // The log is read by a thread of the test: the line may reach it a moment later.
    let logged = || {
        node.log_lines()
            .iter()
            .any(|line| line.contains("WARN") && line.contains("post") && line.contains("OOM"))
    };
    wait_until(Duration::from_secs(5), "the refusal logged", logged);
}

#[test]
fn a_message_too_large_for_the_backplane_is_refused_at_start_up() {
    // Redis's pub/sub output limit (32 MB at once, 8 MB for a minute) cuts every node's
    // subscription for one announcement this large: the post was stored, yet its poster
    // was told 503. With --redis, --max-message stops at 1 MiB, and says why.
    let args = [
        "--no-www",
        "--redis",
        "redis://127.0.0.1:6379",
        "--max-body",
        "67108864",
        "--max-message",
        "41943040",
    ];
    let (status, stderr) = run_to_exit(&args, Duration::from_secs(10)).expect("refused");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--max-message") && stderr.contains("--redis"),
        "{stderr}"
    );
}

#[test]
fn the_largest_message_allowed_with_redis_reaches_every_node() {
    let redis = RedisServer::start(&[]);
    let url = redis.url();
    let flags = [
        "--redis",
        &url,
        "--max-body",
        "2097152",
        "--max-message",
        "1048576",
    ];
    let (a, b) = (ChildServer::start(&flags), ChildServer::start(&flags));
    let text = "z".repeat(1 << 20);
    let body = format!("from=ann&text={text}");
    let mut posted = post_form(a.addr, "/rooms/big/messages", &body);
    for _ in 0..100 {
        if posted.status != 503 {
            break; // 503 until the node has reached Redis
        }
        std::thread::sleep(Duration::from_millis(50));
        posted = post_form(a.addr, "/rooms/big/messages", &body);
    }
    assert_eq!(posted.status, 201, "{}", posted.text());
    wait_until(Duration::from_secs(10), "B reaches Redis", || {
        get(b.addr, "/stats").json()["redis"]["connected"] == true
    });
    // B loads the room (a history reply of 1 MiB), then hears the next one announced.
    assert_eq!(
        get(b.addr, "/rooms/big/messages").texts(),
        std::slice::from_ref(&text)
    );
    let mut poll = Client::connect(b.addr);
    poll.get(&format!("/rooms/big/messages?since={}", posted.id()));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(post_form(a.addr, "/rooms/big/messages", &body).status, 201);
    assert_eq!(poll.read_reply().texts(), [text]);
}
