//! Shared helpers for the socket-level tests: start a server on 127.0.0.1:0 on its own
//! thread, and speak raw HTTP to it over blocking std sockets with short timeouts.

#![allow(dead_code)] // each test binary uses a different subset

pub mod redis;
pub mod sentinel;
pub mod ws;

use comet_chat::config::Www;
use comet_chat::{Config, Running};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long any single read may block before the test fails instead of hanging.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One `read`, tried again when a signal interrupts it. A socket with a read timeout returns
/// `Interrupted` when the test process is stopped and continued (SIGSTOP/SIGCONT, as a
/// shared CI machine may do), even with no signal handler of ours (signal(7)); that is no
/// answer from the server, so it must not fail a test.
pub fn read_retrying(stream: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A config for tests: free port, short poll timeout, no static files.
pub fn test_config() -> Config {
    Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        www: Www::Off,
        poll_timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

/// `config` without the per-client limits, for tests that flood on purpose from one
/// address (every test client is 127.0.0.1): posts at any rate, into any number of new
/// rooms, over any number of connections.
pub fn without_client_limits(config: Config) -> Config {
    Config {
        post_rate: 1_000_000,
        post_burst: 1_000_000,
        max_conns_per_client: 0,
        max_rooms_per_client: 0,
        ..config
    }
}

/// The same, as flags for a [`ChildServer`].
pub const NO_CLIENT_LIMITS: [&str; 8] = [
    "--max-conns-per-client",
    "0",
    "--max-rooms-per-client",
    "0",
    "--post-rate",
    "1000000",
    "--post-burst",
    "1000000",
];

/// The repository's www/ directory.
/// A port nobody listens on right now, for a helper process the test starts (Redis, nginx,
/// Prometheus, a Sentinel) to bind.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory for one helper process (`what`, on `port`) of this test process.
pub fn scratch_dir(what: &str, port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("comet-{what}-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn www_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("www")
}

/// Starts a server with `config` and returns it running on its own thread.
pub fn start(config: Config) -> Running {
    comet_chat::spawn(config).expect("server starts")
}

/// Starts a server with the test defaults.
pub fn start_default() -> Running {
    start(test_config())
}

/// A parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    /// The `text` of each message in a poll's answer, in order.
    pub fn texts(&self) -> Vec<String> {
        self.json()["messages"]
            .as_array()
            .expect("an answer with messages")
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The `id` a post was answered with.
    pub fn id(&self) -> String {
        self.json()["id"].as_str().expect("an id").to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// One client connection with its own read buffer (responses may arrive back to back).
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects from a source address of our choosing (127.0.0.2, 127.0.0.3, ... are all
    /// loopback), to be another client as far as per-address limits go.
    pub fn connect_from(addr: SocketAddr, source: &str) -> Client {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let source: SocketAddr = format!("{source}:0").parse().unwrap();
        socket
            .bind(&source.into())
            .expect("bind the source address");
        socket.connect(&addr.into()).expect("connect");
        let stream: TcpStream = socket.into();
        stream.set_nodelay(true).unwrap();
        Client::from_stream(stream)
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends bytes, returning false if the server has closed the connection.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    pub fn get(&mut self, path: &str) {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }

    pub fn post_message(&mut self, message_field: &str) {
        let body = format!("message={message_field}");
        self.send(
            format!(
                "POST /chat HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }

    /// Reads one complete response (Content-Length framed). `head_only` for HEAD requests.
    pub fn read_reply_with(&mut self, head_only: bool) -> Reply {
        loop {
            if let Some(reply) = self.try_parse(head_only) {
                return reply;
            }
            let mut chunk = [0u8; 4096];
            let n = read_retrying(&mut self.stream, &mut chunk).expect("read a response");
            assert!(
                n > 0,
                "connection closed before a full response; have {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads one complete response, or `None` if the connection fails or closes first (for
    /// clients that ride out a server or Redis going away, as a browser does).
    pub fn try_read_reply(&mut self) -> Option<Reply> {
        loop {
            if let Some(reply) = self.try_parse(false) {
                return Some(reply);
            }
            let mut chunk = [0u8; 4096];
            match read_retrying(&mut self.stream, &mut chunk) {
                Ok(n) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// The status of the response that starts arriving: an event stream's head or a whole
    /// response alike.
    pub fn read_reply_head_status(&mut self) -> u16 {
        let head = self.read_until("\r\n");
        head[9..12].parse().expect("a status line")
    }

    /// Reads an event-stream head (no Content-Length) and returns it.
    pub fn read_stream_head(&mut self) -> Reply {
        let text = self.read_until("\r\n\r\n");
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        response.parse(text.as_bytes()).expect("valid head");
        Reply {
            status: response.code.unwrap(),
            headers: response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            body: Vec::new(),
        }
    }

    /// Reads until `needle` has arrived and returns everything up to and including it.
    pub fn read_until(&mut self, needle: &str) -> String {
        loop {
            if let Some(at) = self
                .buf
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
            {
                let taken: Vec<u8> = self.buf.drain(..at + needle.len()).collect();
                return String::from_utf8(taken).expect("UTF-8");
            }
            let mut chunk = [0u8; 4096];
            let n = read_retrying(&mut self.stream, &mut chunk).expect("read");
            assert!(
                n > 0,
                "closed before {needle:?}; have {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads one SSE frame (up to the blank line that ends it).
    pub fn read_event(&mut self) -> String {
        self.read_until("\n\n")
    }

    pub fn read_reply(&mut self) -> Reply {
        self.read_reply_with(false)
    }

    fn try_parse(&mut self, head_only: bool) -> Option<Reply> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(&self.buf).expect("valid response") {
            httparse::Status::Complete(len) => len,
            httparse::Status::Partial => return None,
        };
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let status = response.code.unwrap();
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse::<usize>().expect("numeric Content-Length"));
        // 1xx and 204 have no body and must not say otherwise (RFC 9110 §8.6).
        let bodiless = status < 200 || status == 204;
        let length = match length {
            Some(_) if bodiless => panic!("a {status} response with a Content-Length"),
            None if bodiless => 0,
            Some(length) => length,
            None => panic!("a {status} response without Content-Length"),
        };
        let body_len = if head_only { 0 } else { length };
        if self.buf.len() < head_len + body_len {
            return None;
        }
        let body = self.buf[head_len..head_len + body_len].to_vec();
        self.buf.drain(..head_len + body_len);
        Some(Reply {
            status,
            headers,
            body,
        })
    }

    /// True when the server closes the connection (EOF) within the read timeout, after any
    /// bytes still buffered.
    pub fn closed_by_server(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        loop {
            match read_retrying(&mut self.stream, &mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    /// Nothing arrives for `wait`.
    pub fn silent_for(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut byte = [0u8; 1];
        let silent = matches!(read_retrying(&mut self.stream, &mut byte), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut);
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        silent && self.buf.is_empty()
    }
}

/// A form-encoded POST.
pub fn post_form(addr: SocketAddr, path: &str, body: &str) -> Reply {
    request(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// A form-encoded POST from a source address of our choosing (see
/// [`Client::connect_from`]): another client, as far as per-client limits go.
pub fn post_form_from(addr: SocketAddr, source: &str, path: &str, body: &str) -> Reply {
    let mut client = Client::connect_from(addr, source);
    client.send(
        format!(
            "POST {path} HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    client.read_reply()
}

/// A GET on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, &format!("GET {path} HTTP/1.1\r\n\r\n"))
}

/// One request on a fresh connection, returning the reply.
pub fn request(addr: SocketAddr, raw: &str) -> Reply {
    let mut client = Client::connect(addr);
    client.send(raw.as_bytes());
    client.read_reply_with(raw.starts_with("HEAD "))
}

/// Waits until `condition` holds, failing the test after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads a server counter.
pub fn counter(
    running: &Running,
    pick: fn(&comet_chat::stats::Stats) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    comet_chat::stats::get(pick(running.handle.stats()))
}

/// Waits until `n` polls are parked.
pub fn wait_parked(running: &Running, n: u64) {
    wait_until(
        Duration::from_secs(10),
        &format!("{n} parked polls"),
        || counter(running, |s| &s.pending_polls) == n,
    );
}

/// Waits until exactly `n` connections are open.
pub fn wait_connections(running: &Running, n: u64) {
    wait_until(
        Duration::from_secs(10),
        &format!("{n} open connections"),
        || counter(running, |s| &s.connections) == n,
    );
}

/// The server binary the process-level tests start: `COMET_CHAT_BIN` if set, else the one
/// cargo built for this test run. `.ci/small-static.sh` points it at the small static
/// build, so that the file a user copies is run through the same process tests (its libc
/// is musl, not the glibc of an ordinary build).
pub fn server_binary() -> std::path::PathBuf {
    std::env::var_os("COMET_CHAT_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_comet-chat")))
}

/// Runs the server binary with `args` (and nothing else) and waits up to `limit` for it to
/// exit: its status and what it wrote to stderr, or None (after killing it) if it ran on.
/// For start-ups that must fail.
pub fn run_to_exit(args: &[&str], limit: Duration) -> Option<(std::process::ExitStatus, String)> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(server_binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server binary");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Some((status, stderr))
}

/// The server binary, started as a child process: for what only a whole process can show
/// (signals, its own descriptor limit, its CPU time).
pub struct ChildServer {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ChildServer {
    /// Starts `comet-chat --addr 127.0.0.1:0 --no-www <args>` and waits for its address.
    pub fn start(args: &[&str]) -> ChildServer {
        let mut command = std::process::Command::new(server_binary());
        command
            .args(["--addr", "127.0.0.1:0", "--no-www"])
            .args(args);
        ChildServer::spawn(command)
    }

    /// Starts `command` (a comet-chat binary with its flags, which must include
    /// `--addr 127.0.0.1:0`) and waits for the address it logs.
    pub fn spawn(mut command: std::process::Command) -> ChildServer {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server binary");
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            let addr_tx = addr_tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap().to_owned();
                        let _ = addr_tx.send(addr);
                    }
                    output.lock().unwrap().push(line);
                }
            });
        }
        let Ok(addr) = addr_rx.recv_timeout(Duration::from_secs(10)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not start: {:?}", output.lock().unwrap());
        };
        ChildServer {
            child,
            addr: addr.parse().unwrap(),
            output,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Lines the server logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// User plus system CPU time the server has used.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name (which may contain spaces) start after ") ".
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
    }

    /// A counter from /stats (0 if the server cannot be reached).
    pub fn stat(&self, name: &str) -> u64 {
        let mut client = Client::connect(self.addr);
        client.send(b"GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n");
        let text = client.read_reply().text();
        let needle = format!("\"{name}\":");
        let start = text
            .find(&needle)
            .unwrap_or_else(|| panic!("{name} in {text}"))
            + needle.len();
        text[start..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Sends a signal to the server.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory effects; the pid is our own child, still unreaped.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits up to `limit` for the process to exit and returns its status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that polls from its last position until it has seen `until` (or 30 s pass),
/// riding out errors the way the page does: wait a little, ask again from the same place.
pub fn resume_until(
    addr: std::net::SocketAddr,
    room: &str,
    until: &std::sync::Mutex<Option<String>>,
) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    let mut next = String::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Some(last) = until.lock().unwrap().clone() {
            if seen.iter().any(|(id, _): &(String, String)| *id == last) {
                break;
            }
        }
        let mut client = match std::net::TcpStream::connect(addr) {
            Ok(stream) => Client::from_stream(stream),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if !client.try_send(
            format!("GET /rooms/{room}/messages?since={next} HTTP/1.1\r\n\r\n").as_bytes(),
        ) {
            continue;
        }
        let Some(reply) = client.try_read_reply().filter(|r| r.status == 200) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let json = reply.json();
        for m in json["messages"].as_array().unwrap() {
            seen.push((
                m["id"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            ));
        }
        next = json["next"].as_str().unwrap().to_owned();
    }
    seen
}
