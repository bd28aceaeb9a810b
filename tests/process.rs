//! Tests that need the server as its own process: a lowered descriptor limit, CPU time,
//! and real signals.

mod common;

use common::*;
use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Reads what the server sends within `wait`: its bytes, or None if it sent nothing.
fn read_some(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut bytes = Vec::new();
    match stream.read_to_end(&mut bytes) {
        Ok(_) => Some(bytes),
        Err(_) if !bytes.is_empty() => Some(bytes),
        Err(_) => None,
    }
}

#[test]
fn out_of_descriptors_the_loop_does_not_spin_and_recovers() {
    // About 40 descriptors: ~10 for the server itself, ~30 for clients. max-conns is set
    // high so that the kernel's limit, not our cap, is what runs out.
    let server = ChildServer::start(&["--open-files", "40", "--max-conns", "1000"]);
    let mut clients: Vec<TcpStream> = Vec::new();
    for _ in 0..60 {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        use std::io::Write;
        stream.write_all(b"GET /chat HTTP/1.1\r\n\r\n").unwrap();
        clients.push(stream);
    }
    // Sort clients into parked (silent) and refused (answered 503, or reset).
    let mut parked = Vec::new();
    let mut refused = 0;
    for mut stream in clients {
        match read_some(&mut stream, Duration::from_millis(100)) {
            None => parked.push(stream),
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    text.is_empty() || text.starts_with("HTTP/1.1 503"),
                    "{text}"
                );
                refused += 1;
            }
        }
    }
    assert!(
        parked.len() >= 20,
        "only {} clients were held",
        parked.len()
    );
    assert!(refused >= 20, "only {refused} clients were refused");

    // A flood while exhausted, bounded to 1.5 s: a spinning accept loop would burn the
    // whole interval; shedding each client costs microseconds.
    let cpu_before = server.cpu_time();
    let flood_started = Instant::now();
    let mut attempts = 0;
    while flood_started.elapsed() < Duration::from_millis(1500) && attempts < 300 {
        if let Ok(mut stream) = TcpStream::connect(server.addr) {
            let _ = read_some(&mut stream, Duration::from_millis(50));
        }
        attempts += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let cpu_used = server.cpu_time() - cpu_before;
    assert!(
        cpu_used < Duration::from_millis(700),
        "server used {cpu_used:?} of CPU during a {:?} flood",
        flood_started.elapsed()
    );

    // It still serves the clients it holds, and accepts again once some leave.
    for stream in parked.drain(..10) {
        drop(stream);
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut poster = Client::connect(server.addr);
    poster.post_message("still+serving");
    assert_eq!(poster.read_reply().status, 200);
    for stream in &mut parked {
        let mut client = Client::from_stream(stream.try_clone().unwrap());
        assert_eq!(client.read_reply().text(), r#"{"ok":"still serving"}"#);
    }
    assert!(server.stat("emfile") >= refused as u64);

    let episodes = server
        .log_lines()
        .iter()
        .filter(|line| line.contains("out of file descriptors"))
        .count();
    assert_eq!(episodes, 1, "logged once per episode, not per attempt");
}

#[test]
fn sigterm_tells_waiting_clients_to_come_back_later_and_exits_0() {
    let mut server = ChildServer::start(&["--shutdown-grace", "3"]);
    let mut polls: Vec<Client> = (0..10).map(|_| Client::connect(server.addr)).collect();
    for poll in &mut polls {
        poll.get("/chat");
    }
    wait_until(Duration::from_secs(5), "10 parked polls", || {
        server.stat("pending_polls") == 10
    });
    let idle = Client::connect(server.addr);

    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let mut delays = Vec::new();
    for poll in &mut polls {
        let reply = poll.read_reply();
        assert_eq!(reply.status, 503);
        let retry_after: u64 = reply.header("Retry-After").unwrap().parse().unwrap();
        let text = reply.text();
        let delay: u64 = text
            .split("\"retry_after_ms\":")
            .nth(1)
            .and_then(|rest| rest.trim_end_matches('}').parse().ok())
            .unwrap_or_else(|| panic!("no retry_after_ms in {text}"));
        assert!((500..=5000).contains(&delay), "{delay}");
        assert_eq!(retry_after, delay.div_ceil(1000));
        assert!(poll.closed_by_server());
        delays.push(delay);
    }
    delays.dedup();
    assert!(
        delays.len() > 1,
        "every client got the same delay: they would return in one wave"
    );

    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("exits within the grace");
    assert!(status.success(), "{status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(5));
    drop(idle);
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "nothing listens any more"
    );
}

#[test]
fn sigint_with_no_clients_exits_0_at_once() {
    let mut server = ChildServer::start(&[]);
    server.signal(libc::SIGINT);
    let status = server.wait_exit(Duration::from_secs(5)).expect("exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_second_signal_during_the_grace_period_stops_at_once() {
    let mut server = ChildServer::start(&["--shutdown-grace", "60"]);
    // A client that keeps a response pending (it never finishes its request) holds the
    // drain open for the whole grace period.
    let mut slow = Client::connect(server.addr);
    slow.send(b"POST /chat HTTP/1.1\r\nContent-Length: 100\r\n\r\nmess");
    wait_until(Duration::from_secs(5), "the connection", || {
        server.stat("connections") == 2
    });
    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.child.try_wait().unwrap().is_none(), "still draining");
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("exits at once");
    assert!(status.success());
}

/// An absurd size flag is refused at start-up with the flag and its range, instead of a
/// server that later wraps a length sum and aborts on the first large request.
#[test]
fn an_out_of_range_flag_is_a_start_up_error_naming_it() {
    let args = [
        "--addr",
        "127.0.0.1:0",
        "--no-www",
        "--max-body",
        "18446744073709551615",
    ];
    let (status, stderr) = run_to_exit(&args, Duration::from_secs(5))
        .expect("the server started with --max-body 18446744073709551615");
    assert_eq!(status.code(), Some(2), "{stderr}");
    let first_line = stderr.lines().next().unwrap_or_default();
    assert!(
        first_line.contains("--max-body") && first_line.contains("64 MiB"),
        "{first_line}"
    );
}

/// The binary prints the usage text made from the flag table on `--help` to stdout with
/// exit 0; a flag it does not know gets the error and a pointer to `--help`, nothing more,
/// so the error does not scroll away, with exit 2.
#[test]
fn help_and_unknown_flags_print_the_usage_from_the_flag_table() {
    use std::process::Command;
    let binary = server_binary();
    let usage = comet_chat::config::usage();

    let help = Command::new(&binary).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert_eq!(String::from_utf8(help.stdout).unwrap(), usage);

    let unknown = Command::new(&binary).arg("--frobnicate").output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8(unknown.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].contains("--frobnicate"), "{stderr}");
    assert_eq!(lines[1], "see comet-chat --help");
}

/// Start-up errors a newcomer meets each name the flag to change, exit 2 like every other
/// bad flag, and say what to do instead.
#[test]
fn start_up_errors_name_the_flag_and_the_way_out() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--private-rooms", "p-"],
            &["--private-rooms", "--token-secret-file"],
        ),
        (
            &["--www", "/nonexistent"],
            &["--www", "/nonexistent", "--no-www"],
        ),
        (
            &["--addr", &addr, "--admin-addr", &addr],
            &["--admin-addr", "--addr"],
        ),
        (
            &["--cors-origin", "not an origin"],
            &["--cors-origin", "scheme://host"],
        ),
        (&["--history", "+5"], &["--history", "whole number"]),
    ];
    for (args, says) in cases {
        let (status, stderr) =
            run_to_exit(args, Duration::from_secs(5)).unwrap_or_else(|| panic!("{args:?} started"));
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        for needle in *says {
            assert!(
                stderr.contains(needle),
                "{args:?} should say {needle}: {stderr}"
            );
        }
    }
}

/// An admin port someone else holds is named as `--admin-addr`'s, not as a bare address.
#[test]
fn an_admin_address_in_use_names_its_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = taken.local_addr().unwrap().to_string();
    let args = ["--no-www", "--addr", "127.0.0.1:0", "--admin-addr", &admin];
    let (status, stderr) =
        run_to_exit(&args, Duration::from_secs(5)).expect("the server started on a port in use");
    assert!(!status.success(), "{status:?}");
    assert!(
        stderr.starts_with(&format!(
            "comet-chat: --admin-addr: cannot listen on {admin}: "
        )),
        "{stderr}"
    );
}

/// A port someone else holds stops start-up with the reason on stderr (not only in the log,
/// which goes to stdout) and a failing status.
#[test]
fn an_address_in_use_is_a_start_up_error_on_stderr() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, stderr) = run_to_exit(&["--no-www", "--addr", &addr], Duration::from_secs(5))
        .expect("the server started on a port in use");
    assert!(!status.success(), "{status:?}");
    assert!(
        stderr.starts_with(&format!("comet-chat: --addr: cannot listen on {addr}: ")),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("in use"), "{stderr}");
}

/// Regression (CI): a read with a timeout fails with `Interrupted` when the process is
/// stopped and continued, which a shared machine may do to a test run at any moment. The
/// test client's reads must wait on for the answer instead of failing the test.
#[test]
fn the_test_client_rides_out_a_stop_and_continue() {
    use std::process::Command;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = Client::connect(listener.local_addr().unwrap());
    let (mut peer, _) = listener.accept().unwrap();
    let me = std::process::id().to_string();
    // The shell stops and continues this whole process while the read below waits.
    let mut pauser = Command::new("sh")
        .args([
            "-c",
            "sleep 0.3; kill -STOP $0; sleep 0.2; kill -CONT $0",
            &me,
        ])
        .spawn()
        .expect("start sh");
    let answer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1000));
        std::io::Write::write_all(&mut peer, b"pong").unwrap();
        peer
    });
    let mut got = [0u8; 4];
    let n = read_retrying(&mut client.stream, &mut got).expect("a read that waits on");
    assert_eq!(&got[..n], b"pong");
    assert!(pauser.wait().unwrap().success());
    drop(answer.join());
}
