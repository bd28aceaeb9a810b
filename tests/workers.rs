//! `--workers N`: the binary as a supervisor of N worker processes on one port. What a user
//! sees: one `listening on` line, `/stats` answered by every worker, a killed worker back
//! under a new pid, SIGTERM ending them all with status 0, and a failed start that leaves
//! nothing running. No Redis runs here: these are the process mechanics, and the URL only
//! has to parse.

mod common;

use common::redis::RedisServer;
use common::*;
use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Parses, and is never connected to in these tests.
/// Where no Redis answers: enough for the tests where start-up fails before it matters.
const REDIS: &str = "redis://127.0.0.1:1";

/// New connections tried before concluding that a worker does not answer. The kernel picks
/// a worker per connection by a hash, so each of three is missed by all 300 with odds of
/// (2/3)^300.
const ATTEMPTS: usize = 300;

/// A supervisor started with `--workers n`, and the pids of the workers it announced. On
/// drop it gets SIGTERM, so a failing test leaves no worker behind either.
struct Supervised {
    server: ChildServer,
    workers: Vec<i32>,
    /// The Redis they share; stopped after them.
    _redis: RedisServer,
}

impl Supervised {
    fn start(n: usize, args: &[&str]) -> Supervised {
        let redis = RedisServer::start(&[]);
        let (n_text, url) = (n.to_string(), redis.url());
        let mut all = vec!["--workers", &n_text, "--redis", &url];
        all.extend(args);
        let server = ChildServer::start(&all);
        // ChildServer learns the address a moment before the line reaches its log.
        let announced = || {
            let lines = server.log_lines();
            lines
                .into_iter()
                .find(|line| line.contains("listening on http://"))
        };
        wait_until(Duration::from_secs(5), "the listening line", || {
            announced().is_some()
        });
        let line = announced().unwrap();
        let workers: Vec<i32> = line
            .split("pids ")
            .nth(1)
            .unwrap_or_else(|| panic!("no pids in {line}"))
            .trim_end_matches(')')
            .split(' ')
            .map(|pid| pid.parse().unwrap())
            .collect();
        assert_eq!(workers.len(), n, "{line}");
        // A worker listens before it has reached Redis, and answers reads 503 until it
        // has: tests that count parked polls start once every worker is connected.
        wait_until(
            Duration::from_secs(10),
            "every worker to reach Redis",
            || {
                stats_of_each_worker(server.addr, n)
                    .iter()
                    .all(|stats| stats["redis"]["connected"] == true)
            },
        );
        Supervised {
            server,
            workers,
            _redis: redis,
        }
    }

    fn pid(&self) -> i32 {
        self.server.pid()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Ok(None) = self.server.child.try_wait() {
            self.server.signal(libc::SIGTERM);
            self.server.wait_exit(Duration::from_secs(10));
        }
    }
}

/// `/stats` from each of `n` workers, in worker order: new connections until every worker
/// has answered one.
fn stats_of_each_worker(addr: SocketAddr, n: usize) -> Vec<serde_json::Value> {
    let mut seen = vec![serde_json::Value::Null; n];
    for _ in 0..ATTEMPTS {
        let stats = request(addr, "GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n").json();
        let worker = stats["worker"]
            .as_u64()
            .unwrap_or_else(|| panic!("no worker in {stats}")) as usize;
        assert!((1..=n).contains(&worker), "{stats}");
        seen[worker - 1] = stats;
        if seen.iter().all(|stats| !stats.is_null()) {
            return seen;
        }
    }
    let answered: Vec<usize> = (1..=n).filter(|w| !seen[w - 1].is_null()).collect();
    panic!("after {ATTEMPTS} connections only workers {answered:?} had answered");
}

/// The fields of /proc/<pid>/stat after the command name: state, then parent pid. None once
/// the process is gone.
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Live (not zombie) children of `parent`.
fn children_of(parent: i32) -> BTreeSet<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| matches!(proc_stat(pid), Some((state, p)) if p == parent && state != 'Z'))
        .collect()
}

/// Processes with `arg` as one of their command-line arguments: how to find workers whose
/// supervisor is gone (they would have a new parent).
fn processes_with_arg(arg: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            cmdline
                .split(|&b| b == 0)
                .any(|word| word == arg.as_bytes())
                .then_some(pid)
        })
        .collect()
}

#[test]
fn more_than_one_worker_without_redis_is_refused_with_the_reason() {
    let args = ["--no-www", "--addr", "127.0.0.1:0", "--workers", "2"];
    let (status, stderr) = run_to_exit(&args, Duration::from_secs(5)).expect("refused");
    assert_eq!(status.code(), Some(2), "{stderr}");
    let first_line = stderr.lines().next().unwrap_or_default();
    assert!(
        first_line.starts_with("comet-chat: --workers: 2 workers need --redis"),
        "{first_line}"
    );
}

#[test]
fn three_workers_serve_one_port_each_a_child_of_the_supervisor() {
    let supervised = Supervised::start(3, &[]);
    // Returns only once workers 1, 2 and 3 have each answered a connection.
    stats_of_each_worker(supervised.server.addr, 3);
    let workers: BTreeSet<i32> = supervised.workers.iter().copied().collect();
    assert_eq!(workers.len(), 3);
    for &worker in &workers {
        let (_, parent) = proc_stat(worker).expect("the worker runs");
        assert_eq!(parent, supervised.pid(), "worker {worker}'s parent");
    }
    assert_eq!(children_of(supervised.pid()), workers);
    let lines = supervised.server.log_lines();
    let announced = lines.iter().filter(|l| l.contains("listening on")).count();
    assert_eq!(announced, 1, "{lines:#?}");
    let ready = lines.iter().filter(|l| l.contains(" ready on ")).count();
    assert_eq!(ready, 3, "{lines:#?}");
}

#[test]
fn a_killed_worker_is_restarted_and_the_port_keeps_serving() {
    let supervised = Supervised::start(3, &[]);
    let killed = supervised.workers[0];
    // SAFETY: kill takes no pointers; the pid is a worker our own child announced.
    assert_eq!(unsafe { libc::kill(killed, libc::SIGKILL) }, 0);
    let supervisor = supervised.pid();
    wait_until(Duration::from_secs(10), "a new worker 1", || {
        let children = children_of(supervisor);
        children.len() == 3 && !children.contains(&killed)
    });
    let restarted: Vec<i32> = children_of(supervisor)
        .into_iter()
        .filter(|pid| !supervised.workers.contains(pid))
        .collect();
    assert_eq!(restarted.len(), 1, "one new worker");
    wait_until(Duration::from_secs(10), "the new worker to listen", || {
        let line = format!("worker 1 restarted: pid {} listens again", restarted[0]);
        supervised
            .server
            .log_lines()
            .iter()
            .any(|l| l.contains(&line))
    });
    // Worker 1 answers again, beside the two that never stopped.
    stats_of_each_worker(supervised.server.addr, 3);
    let lines = supervised.server.log_lines();
    let died = format!("worker 1 (pid {killed}) died (signal: 9");
    assert!(lines.iter().any(|l| l.contains(&died)), "{lines:#?}");
    let announced = lines.iter().filter(|l| l.contains("listening on")).count();
    assert_eq!(announced, 1, "a restart is not a new start: {lines:#?}");
}

/// Sends SIGCONT to a stopped process when dropped, so that a failing test leaves no
/// stopped worker behind (a stopped process does not act on SIGTERM).
struct Continue(i32);

impl Drop for Continue {
    fn drop(&mut self) {
        // SAFETY: kill takes no pointers; the pid is a worker our own child announced.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// Regression: a worker stopped with SIGSTOP still held its listener, so the kernel went
/// on handing it its share of new connections, and they hung (13 of 30), while the
/// supervisor, which watched only for exits, saw nothing wrong. It now pings each worker's
/// loop, and kills and restarts one that has not answered for 10 s.
#[test]
fn a_stopped_worker_is_killed_and_restarted_and_no_connection_hangs() {
    let supervised = Supervised::start(2, &[]);
    let stopped = supervised.workers[0];
    // SAFETY: kill takes no pointers; the pid is a worker our own child announced.
    assert_eq!(unsafe { libc::kill(stopped, libc::SIGSTOP) }, 0);
    let _continue = Continue(stopped);
    let supervisor = supervised.pid();
    wait_until(Duration::from_secs(20), "a new worker 1", || {
        let children = children_of(supervisor);
        children.len() == 2 && !children.contains(&stopped)
    });
    wait_until(Duration::from_secs(10), "the new worker to listen", || {
        let lines = supervised.server.log_lines();
        lines.iter().any(|l| l.contains("worker 1 restarted: pid"))
    });
    // Every new connection is answered (one that hung would fail the read), by both.
    let mut workers = BTreeSet::new();
    for _ in 0..30 {
        let stats = request(
            supervised.server.addr,
            "GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n",
        )
        .json();
        workers.insert(stats["worker"].as_u64().unwrap());
    }
    assert_eq!(workers.len(), 2, "{workers:?}");
    let lines = supervised.server.log_lines();
    let silent = format!("worker 1 (pid {stopped}) has not answered for 10 s; killing it");
    assert!(lines.iter().any(|l| l.contains(&silent)), "{lines:#?}");
}

#[test]
fn sigterm_drains_every_worker_and_the_supervisor_exits_0() {
    let mut supervised = Supervised::start(3, &["--shutdown-grace", "5"]);
    let addr = supervised.server.addr;
    let mut polls: Vec<Client> = (0..9).map(|_| Client::connect(addr)).collect();
    for poll in &mut polls {
        poll.get("/chat");
    }
    wait_until(Duration::from_secs(10), "9 parked polls", || {
        let stats = stats_of_each_worker(addr, 3);
        let parked: u64 = stats
            .iter()
            .map(|s| s["pending_polls"].as_u64().unwrap())
            .sum();
        parked == 9
    });

    supervised.server.signal(libc::SIGTERM);
    for poll in &mut polls {
        let reply = poll.read_reply();
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert!(reply.header("Retry-After").is_some());
    }
    let status = supervised
        .server
        .wait_exit(Duration::from_secs(10))
        .expect("the supervisor exits");
    assert!(status.success(), "{status:?}");
    for &worker in &supervised.workers {
        assert_eq!(proc_stat(worker), None, "worker {worker} is gone");
    }
    assert_eq!(processes_with_arg(&addr.to_string()), Vec::<i32>::new());
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens any more"
    );
}

#[test]
fn a_second_sigterm_stops_a_draining_worker_at_once() {
    let mut supervised = Supervised::start(3, &["--shutdown-grace", "60"]);
    let addr = supervised.server.addr;
    // A client in the middle of a request holds its worker's drain open for the whole
    // grace. Asking for /stats on the same connection first says which worker that is.
    let mut slow = Client::connect(addr);
    slow.send(b"GET /stats HTTP/1.1\r\n\r\n");
    let holder = slow.read_reply().json()["worker"].as_u64().unwrap();
    slow.send(b"POST /chat HTTP/1.1\r\nContent-Length: 100\r\n\r\nmess");
    // The holder answering a later connection means it has read those bytes: loopback
    // delivers them before the later connection's SYN.
    let mut answered = false;
    for _ in 0..ATTEMPTS {
        let stats = request(addr, "GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n").json();
        if stats["worker"] == holder {
            answered = true;
            break;
        }
    }
    assert!(answered, "worker {holder} answered no new connection");

    supervised.server.signal(libc::SIGTERM);
    // Every worker has taken the first signal (two signals that reach a worker before it
    // looks are one, as in a lone process), and the two idle ones are done.
    wait_until(Duration::from_secs(10), "the first signal taken", || {
        let lines = supervised.server.log_lines();
        let count = |text: &str| lines.iter().filter(|l| l.contains(text)).count();
        count("signal 15: shutting down") == 3 && count(") exited (exit status: 0)") == 2
    });
    assert!(
        supervised.server.child.try_wait().unwrap().is_none(),
        "the supervisor waits for worker {holder}"
    );
    supervised.server.signal(libc::SIGTERM);
    let status = supervised
        .server
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running: {:#?}", supervised.server.log_lines()));
    assert!(status.success(), "{status:?}");
}

#[test]
fn an_address_in_use_stops_start_up_and_no_worker_is_left() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let args = [
        "--no-www",
        "--addr",
        &addr,
        "--workers",
        "2",
        "--redis",
        REDIS,
    ];
    let (status, stderr) = run_to_exit(&args, Duration::from_secs(10)).expect("start-up fails");
    assert!(!status.success(), "{status:?}");
    assert!(
        stderr.starts_with(&format!("comet-chat: --addr: cannot listen on {addr}: ")),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("in use"), "{stderr}");
    assert_eq!(processes_with_arg(&addr), Vec::<i32>::new());
}

#[test]
fn a_worker_that_cannot_start_stops_the_others_and_the_supervisor_says_why() {
    // The first worker's admin port is taken (the supervisor checks flags, not ports a
    // worker binds), so it fails; the first to exit stops the rest. (Another worker's port,
    // the next one up, may be taken by chance too: whichever fails first is the one named.)
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let missing = taken.local_addr().unwrap().to_string();
    let args = [
        "--no-www",
        "--admin-addr",
        &missing,
        "--addr",
        "127.0.0.1:0",
        "--workers",
        "3",
        "--redis",
        REDIS,
    ];
    let (status, stderr) = run_to_exit(&args, Duration::from_secs(10)).expect("start-up fails");
    assert!(!status.success(), "{status:?}");
    assert!(
        stderr.contains("--admin-addr: cannot listen on 127.0.0.1:"),
        "{stderr}"
    );
    let last_line = stderr.lines().last().unwrap_or_default();
    assert!(
        last_line.starts_with("comet-chat: worker ")
            && last_line.contains("exited before every worker was listening"),
        "{stderr}"
    );
    assert_eq!(processes_with_arg(&missing), Vec::<i32>::new());
}

/// Issue 10: `--workers 3` on one port, 300 long polls spread over the workers by the
/// kernel, and one post reaches every one of them, whichever worker took it.
#[test]
fn three_hundred_polls_spread_over_three_workers_all_get_one_broadcast() {
    let supervised = Supervised::start(3, &[]);
    let addr = supervised.server.addr;
    let head = post_form(addr, "/rooms/lobby/messages", "from=ann&text=first");
    assert_eq!(head.status, 201, "{}", head.text());
    let head = head.id();
    let mut polls: Vec<Client> = (0..300).map(|_| Client::connect(addr)).collect();
    for poll in &mut polls {
        poll.get(&format!("/rooms/lobby/messages?since={head}"));
    }
    let mut parked = Vec::new();
    wait_until(Duration::from_secs(20), "300 parked polls", || {
        parked = stats_of_each_worker(addr, 3)
            .iter()
            .map(|s| s["pending_polls"].as_u64().unwrap())
            .collect();
        parked.iter().sum::<u64>() == 300
    });
    assert!(
        parked.iter().all(|&n| n > 0),
        "every worker holds some: {parked:?}"
    );
    let posted = post_form(addr, "/rooms/lobby/messages", "from=bob&text=to+everyone");
    assert_eq!(posted.status, 201);
    for poll in &mut polls {
        let json = poll.read_reply().json();
        let texts: Vec<&str> = json["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["to everyone"]);
    }
}

/// Issue 10: a worker killed while clients poll and others post loses nothing that was
/// acknowledged, for clients that resume on the workers left (or the one restarted).
#[test]
fn a_killed_worker_loses_no_acknowledged_message() {
    use std::sync::{Arc, Mutex};
    let supervised = Supervised::start(3, &[]);
    let addr = supervised.server.addr;
    let last = Arc::new(Mutex::new(None::<String>));
    let readers: Vec<_> = (0..12)
        .map(|_| {
            let last = Arc::clone(&last);
            std::thread::spawn(move || resume_until(addr, "kill", &last))
        })
        .collect();
    let mut acknowledged = Vec::new();
    for i in 0..150 {
        if i == 50 {
            // SAFETY: kill has no memory effects; the pid is a worker this test's
            // supervisor started and announced.
            unsafe { libc::kill(supervised.workers[0], libc::SIGKILL) };
        }
        let body = format!("from=ann&text=k{i}&client_id=kill-{i}");
        let id = loop {
            let Ok(stream) = TcpStream::connect(addr) else {
                continue;
            };
            let mut client = Client::from_stream(stream);
            let request = format!(
                "POST /rooms/kill/messages HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if !client.try_send(request.as_bytes()) {
                continue;
            }
            match client.try_read_reply() {
                Some(reply) if matches!(reply.status, 200 | 201) => break reply.id(),
                // The worker that took it was killed: retry with the same client_id.
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        acknowledged.push((id, format!("k{i}")));
    }
    *last.lock().unwrap() = acknowledged.last().map(|(id, _)| id.clone());
    for reader in readers {
        assert_eq!(reader.join().unwrap(), acknowledged);
    }
}

/// `--admin-addr` with workers: worker i listens on the admin port + i - 1, and its
/// `/metrics` says which worker it is, so every worker's figures can be scraped.
#[test]
fn each_worker_has_its_own_admin_port() {
    // Two free ports in a row (the kernel hands out ports in no order; try a few).
    let base = (0..50)
        .find_map(|_| {
            let first = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
            let port = first.local_addr().ok()?.port();
            let second = std::net::TcpListener::bind(("127.0.0.1", port.checked_add(1)?)).ok()?;
            drop((first, second));
            Some(port)
        })
        .expect("two free ports in a row");
    let admin = format!("127.0.0.1:{base}");
    let supervised = Supervised::start(2, &["--admin-addr", &admin]);
    for worker in 1..=2u16 {
        let addr: SocketAddr = format!("127.0.0.1:{}", base + worker - 1).parse().unwrap();
        let text = get(addr, "/metrics").text();
        assert!(
            text.contains(&format!(
                "comet_chat_info{{version=\"{}\",worker=\"{worker}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "port {} is worker {worker}'s:\n{}",
            addr.port(),
            &text[..300.min(text.len())]
        );
        assert!(text.contains("comet_chat_redis_connected "));
    }
    let lines = supervised.server.log_lines();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("admin on http://"))
            .count(),
        2,
        "{lines:#?}"
    );
}
