//! # The soak test
//!
//! ```sh
//! cargo bench --bench soak                                # 180 s, 5,000 churn clients
//! cargo bench --bench soak -- --seconds 20 --clients 800  # a quick look
//! ```
//!
//! Owns one question: after minutes of well-behaved traffic mixed with thousands of clients
//! that misbehave and vanish, is the server still correct and back where it started? It
//! builds the release server (`cargo build --release --bin comet-chat`), starts it as a
//! child process on a free loopback port with short timeouts (so churn is reaped within
//! seconds) and a history of the last 2,000 messages (40 s of posting: a client that keeps
//! up never needs more, and memory cannot grow with the run's length), records a
//! baseline from `/stats`, and then for `--seconds` (default 180, at most 1800) runs at once:
//!
//! - **24 long-pollers** looping `GET /rooms/soak/messages?since=<next>` on keep-alive
//!   connections, and **8 SSE readers** on `GET /rooms/soak/events` that reconnect with
//!   `Last-Event-ID` like an `EventSource`; all record every message id and text;
//! - **4 posters**, about 50 messages/s in all, each message with a unique `client_id`;
//!   one post in 20 is sent again at once and must be answered `200` with the original id;
//! - **churn**: `--clients` (default 5,000) short-lived clients spread over the run and over
//!   source addresses 127.0.0.2–127.0.0.33, at most 2,000 open at once, each held a few
//!   seconds at most: park a poll and vanish; half a request head and vanish; slowloris (a
//!   header byte every 500 ms until the server answers 408 and closes); a slow reader
//!   (4 KiB receive buffer, an event stream or a parked poll, never read); connect and send
//!   nothing; classic `GET /chat` and vanish.
//!
//! A progress line every 10 s. Then posters and churn stop, the well-behaved clients get up
//! to 10 s to catch up with the last posted id and stop, and the server gets up to 20 s to
//! return to its baseline.
//!
//! ## What it checks
//!
//! A table with PASS/FAIL per check; the exit status is non-zero if any fails: connections
//! back to baseline; no pending polls; no streams; RSS within baseline + 2 MiB plus the
//! memory the last 2,000 messages legitimately occupy in the history (see [`rss_allowance`]);
//! every well-behaved client saw every successfully posted id exactly once, in increasing
//! order, with the text that was posted; every post was answered 201 with a distinct id and
//! the server's `messages` counter agrees; every deliberate retry was answered 200 with the
//! original id; every slowloris that was hung up on got its 408; the server is still alive;
//! the drop counters show churn was reaped (`request_timeout` > 0, `idle` > 0). The machine
//! (nproc, kernel, date) and open-files limits are printed with it.
//!
//! A well-behaved client that is disconnected reconnects and resumes, as the protocol
//! intends; that is reported (reconnects, and the first reason) but only a lost, repeated,
//! reordered or altered message fails its check.
//!
//! `drops.slow` is reported, not checked: on loopback the kernel autotunes a socket's send
//! buffer to megabytes (64 KiB segments), so a slow reader held a few seconds at 50
//! messages/s never fills it and the server's write timeout never starts.
//!
//! ## What it deliberately is not
//!
//! Not a benchmark of speed: nothing is timed except to bound the run. Loopback only, every
//! loop bounded in count and in time, about 45 threads with blocking sockets (the churn is
//! four threads stepping non-blocking sockets on a 20 ms tick). Besides `cargo build` and
//! the one-shot `nproc`, `uname` and `date`, the server is the only process it starts,
//! and it is stopped by its own PID on every path: SIGTERM at the end,
//! SIGKILL from `Drop` on an error or panic, and `PR_SET_PDEATHSIG` if the soak itself is
//! killed (the launcher all benchmarks share, `benches/shared/server.rs`, keeps these
//! promises). Besides that launcher it shares nothing with `tests/` or the other
//! benchmarks.

#[path = "shared/parent_death.rs"]
mod parent_death;
#[path = "shared/server.rs"]
mod server;

use serde_json::Value;
use server::{Launch, Output, Server};
use socket2::{Domain, SockAddr, Socket, Type};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::process::{Command, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

// ----- the shape of the run -----------------------------------------------------------------

/// Default run length, and the most `--seconds` may ask for: the soak must stop by itself.
const DEFAULT_RUN_SECS: u64 = 180;
const MAX_RUN_SECS: u64 = 1800;
/// Default churn clients over the run, and the most `--clients` may ask for (100 a second
/// over the longest run; far more than the open cap needs).
const DEFAULT_CHURN_CLIENTS: usize = 5000;
const MAX_CHURN_CLIENTS: usize = 200_000;

/// The room everything happens in.
const ROOM: &str = "soak";
const LONG_POLLERS: usize = 24;
const SSE_READERS: usize = 8;
const POSTERS: usize = 4;
/// All posters together; modest, so the run measures staying power, not throughput.
const POSTS_PER_SEC: f64 = 50.0;
/// One post in this many is sent a second time with the same `client_id`.
const RETRY_ONE_IN: u64 = 20;
/// Attempts per post when the connection fails; the retry keeps its `client_id`, which is
/// what makes it safe.
const POST_ATTEMPTS: usize = 3;

/// Threads stepping churn sockets, and how often each steps its sockets.
const CHURN_DRIVERS: usize = 4;
const CHURN_TICK: Duration = Duration::from_millis(20);
/// Churn sockets open at once, across drivers: well under the 20,000 open files the
/// machine allows, and the server's descriptors are on the same loopback.
const CHURN_OPEN_MAX: usize = 2000;
/// Churn binds to 127.0.0.2 … 127.0.0.(1 + this): each source address has its own
/// ephemeral ports, so thousands of short connections never exhaust one address's range.
const CHURN_SOURCE_ADDRS: usize = 32;
/// A slowloris sends one header byte this often.
const SLOWLORIS_BYTE_EVERY: Duration = Duration::from_millis(500);
/// A slowloris the server has not hung up on by then is given up (and counted: the request
/// timeout is 2 s, so this means the defence failed).
const SLOWLORIS_GIVE_UP: Duration = Duration::from_secs(10);
/// Receive buffer of a slow reader (the kernel doubles it): small, so the server's writes
/// block quickly and its write timeout has something to do.
const SLOW_READER_RCVBUF_BYTES: usize = 4096;
/// Bytes of a churn client's answer kept, to tell a 408 from anything else.
const CHURN_KEEP_BYTES: usize = 512;

/// How often the main thread prints a progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// After posting stops, how long well-behaved clients get to reach the last posted id.
const CATCH_UP: Duration = Duration::from_secs(10);
/// After every client is gone, how long the server gets to return to its baseline.
const SETTLE: Duration = Duration::from_secs(20);
/// Pause between two `/stats` while waiting for the baseline.
const SETTLE_POLL: Duration = Duration::from_millis(250);
/// Warm-up before the baseline is taken: the server's first allocations are made.
const WARM_UP: Duration = Duration::from_secs(1);

/// RSS may end this far above its baseline without counting as growth: the allocator keeps
/// some freed pages rather than returning them, so "exactly back" is not a fair demand.
const RSS_SLACK_BYTES: u64 = 2 * 1024 * 1024;
/// What one stored message costs the server beyond its encoded JSON and `client_id`: the
/// history slot, the `client_id` index entry, allocator headers, and each table's
/// power-of-two growth. An estimate on the generous side; see [`rss_allowance`].
const HISTORY_OVERHEAD_BYTES_PER_MESSAGE: u64 = 160;

/// Connect timeout for every client: loopback connects in microseconds unless the accept
/// queue is full.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a well-behaved client waits on a read: polls are answered within the 2 s poll
/// timeout and streams get a heartbeat every second, so this means the server is stuck.
const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before a well-behaved client reconnects after an error.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// Longest an SSE reader honours the server's `retry:` before reconnecting.
const SSE_RETRY_CAP: Duration = Duration::from_secs(2);
/// Errors kept per thread for the report; the rest are only counted.
const ERRORS_KEPT: usize = 5;

/// After SIGTERM, how long the server gets to exit by itself before SIGKILL.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// Server log lines kept (and echoed) for the report; the rest are counted.
const LOG_LINES_KEPT: usize = 50;

/// Messages the server's history keeps. Bounded, so that memory must come back to where it
/// started whatever the run's length; large enough (40 s of posting at 50/s) that a
/// well-behaved client, which re-polls at once, never falls out of it — if one did, it
/// would miss messages and fail its check, as it should.
const HISTORY_KEPT: usize = 2000;

/// The server's flags: short timeouts so churn is reaped within seconds, a bounded history
/// (see [`HISTORY_KEPT`]), and warnings only.
const SERVER_FLAGS: &[&str] = &[
    "--no-www",
    "--log-level",
    "warn",
    "--poll-timeout",
    "2",
    "--idle-timeout",
    "3",
    "--request-timeout",
    "2",
    "--write-timeout",
    "2",
    "--heartbeat",
    "1",
    "--history",
    "2000",
    "--history-bytes",
    "16000000",
];

// ----- output -------------------------------------------------------------------------------

static STARTED: OnceLock<Instant> = OnceLock::new();

fn elapsed_secs() -> f64 {
    STARTED.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// One line on stderr, stamped with the seconds since the soak began.
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("[{:7.1} s] {}", elapsed_secs(), format!($($arg)*))
    };
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

// ----- command line -------------------------------------------------------------------------

const USAGE: &str = "\
soak: long-running correctness soak for comet-chat

USAGE: cargo bench --bench soak [-- OPTIONS]

OPTIONS:
  --seconds N   how long to run the load          [default: 180; at most 1800]
  --clients N   short-lived churn clients in all  [default: 5000]
  -h, --help    print this help
";

/// The defaults when run by `cargo test --benches` rather than `cargo bench`.
const SMOKE_RUN_SECS: u64 = 5;
const SMOKE_CHURN_CLIENTS: usize = 200;

/// What the command line asked for.
struct Args {
    run: Duration,
    churn_clients: usize,
}

/// Parses the arguments; `Ok(None)` for `--help`.
fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        run: Duration::from_secs(DEFAULT_RUN_SECS),
        churn_clients: DEFAULT_CHURN_CLIENTS,
    };
    // `cargo bench` passes --bench; `cargo test --benches` runs this binary without it,
    // and then a few-second smoke run is the right default, not three minutes.
    if !std::env::args().any(|a| a == "--bench") {
        args.run = Duration::from_secs(SMOKE_RUN_SECS);
        args.churn_clients = SMOKE_CHURN_CLIENTS;
    }
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (word.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| words.next())
                .ok_or(format!("{name} needs a value"))
        };
        match flag.as_str() {
            // `cargo bench` passes --bench to every bench binary.
            "--bench" => {}
            "-h" | "--help" => return Ok(None),
            "--seconds" => {
                let text = value("--seconds")?;
                match text.parse::<u64>() {
                    Ok(n) if (1..=MAX_RUN_SECS).contains(&n) => args.run = Duration::from_secs(n),
                    _ => return Err(format!("--seconds: '{text}' is not 1..={MAX_RUN_SECS}")),
                }
            }
            "--clients" => {
                let text = value("--clients")?;
                match text.parse::<usize>() {
                    Ok(n) if n <= MAX_CHURN_CLIENTS => args.churn_clients = n,
                    _ => {
                        return Err(format!(
                            "--clients: '{text}' is not 0..={MAX_CHURN_CLIENTS}"
                        ))
                    }
                }
            }
            _ => return Err(format!("unknown argument '{word}'")),
        }
    }
    Ok(Some(args))
}

// ----- the server process -------------------------------------------------------------------

/// Echoes one of the server's log lines as it arrives (it logs warnings only, so each one
/// matters); the shared launcher keeps the first [`LOG_LINES_KEPT`] for the report.
fn echo_server_line(line: &str) {
    say!("server: {line}");
}

// ----- /stats -------------------------------------------------------------------------------

/// The counters of one `/stats` answer the soak looks at.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    connections: u64,
    accepted: u64,
    pending_polls: u64,
    streams: u64,
    messages: u64,
    rss_bytes: u64,
    open_files_limit: u64,
    drop_slow: u64,
    drop_idle: u64,
    drop_request_timeout: u64,
    drop_over_cap: u64,
    drop_emfile: u64,
}

impl Stats {
    fn from_json(v: &Value) -> Stats {
        let n = |v: &Value, name: &str| v.get(name).and_then(Value::as_u64).unwrap_or(0);
        let drops = v.get("drops").cloned().unwrap_or(Value::Null);
        Stats {
            connections: n(v, "connections"),
            accepted: n(v, "accepted"),
            pending_polls: n(v, "pending_polls"),
            streams: n(v, "streams"),
            messages: n(v, "messages"),
            rss_bytes: n(v, "rss_bytes"),
            open_files_limit: n(v, "open_files_limit"),
            drop_slow: n(&drops, "slow"),
            drop_idle: n(&drops, "idle"),
            drop_request_timeout: n(&drops, "request_timeout"),
            drop_over_cap: n(&drops, "over_cap"),
            drop_emfile: n(&drops, "emfile"),
        }
    }

    fn drops(&self) -> String {
        format!(
            "slow {} idle {} request_timeout {} over_cap {} emfile {}",
            self.drop_slow,
            self.drop_idle,
            self.drop_request_timeout,
            self.drop_over_cap,
            self.drop_emfile
        )
    }
}

/// `GET /stats` on a fresh connection that the server closes after answering. The soak's
/// own connection is counted in `connections`, which is why the baseline is 1.
fn fetch_stats(addr: SocketAddr) -> io::Result<Stats> {
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(CLIENT_READ_TIMEOUT))?;
    stream.write_all(b"GET /stats HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("no head in the /stats answer"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(io::Error::other(format!("/stats answered {head:?}")));
    }
    let json: Value = serde_json::from_str(body).map_err(io::Error::other)?;
    Ok(Stats::from_json(&json))
}

// ----- HTTP for well-behaved clients ---------------------------------------------------------

/// One keep-alive connection carrying one request at a time.
struct HttpConn {
    stream: TcpStream,
    /// Bytes read past the last complete response.
    buf: Vec<u8>,
}

impl HttpConn {
    fn connect(addr: SocketAddr) -> io::Result<HttpConn> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        stream.set_read_timeout(Some(CLIENT_READ_TIMEOUT))?;
        stream.set_write_timeout(Some(CLIENT_READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(HttpConn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends `request` and reads its answer: status and body.
    fn request(&mut self, request: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        self.stream.write_all(request)?;
        self.read_response()
    }

    /// Reads one `Content-Length` framed response.
    fn read_response(&mut self) -> io::Result<(u16, Vec<u8>)> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buf).map_err(io::Error::other)? {
                httparse::Status::Complete(head_len) => {
                    let length = response
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                        .ok_or_else(|| io::Error::other("a response without Content-Length"))?;
                    let status = response.code.unwrap_or(0);
                    if self.buf.len() >= head_len + length {
                        let body = self.buf[head_len..head_len + length].to_vec();
                        self.buf.drain(..head_len + length);
                        return Ok((status, body));
                    }
                }
                // Normal flow: the rest of the response has not arrived yet.
                httparse::Status::Partial => {}
            }
            self.fill()?;
        }
    }

    /// Reads what the socket has into `buf`; the end of the stream is an error, since every
    /// caller is waiting for more.
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ))
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// `<epoch>-<seq>` split, for ordering by `seq` and checking that the epoch never changes.
fn parse_id(id: &str) -> Option<(String, u64)> {
    let (epoch, seq) = id.split_once('-')?;
    Some((epoch.to_owned(), seq.parse().ok()?))
}

/// `application/x-www-form-urlencoded`, every byte but the unreserved ones as `%XX`.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        for b in value.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b as char);
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

// ----- shared state -------------------------------------------------------------------------

/// What every thread of the soak shares. Threads report their results through `join`;
/// only what must be seen while they run lives here.
struct Shared {
    addr: SocketAddr,
    /// Posters and churn stop when this is set.
    stop_load: AtomicBool,
    /// Well-behaved clients stop when this is set (after they caught up).
    stop_readers: AtomicBool,
    /// The newest id posted, `(seq, id)`: churn polls ask from it so they park instead of
    /// fetching the whole history.
    head: Mutex<Option<(u64, String)>>,
    /// Posts answered 201 so far, for progress lines.
    posted: AtomicU64,
    /// Churn clients connected so far, and open right now (held under [`CHURN_OPEN_MAX`]).
    churn_opened: AtomicU64,
    churn_open: AtomicUsize,
    /// Per well-behaved client: the highest seq it has seen, for the catch-up wait.
    progress: Vec<AtomicU64>,
    /// Per well-behaved client: a handle on its current socket, so stopping can shut it
    /// down instead of waiting for a poll or a heartbeat to end a blocking read.
    sockets: Vec<Mutex<Option<TcpStream>>>,
}

impl Shared {
    fn head_id(&self) -> Option<String> {
        self.head.lock().ok()?.as_ref().map(|(_, id)| id.clone())
    }

    fn note_posted(&self, seq: u64, id: &str) {
        self.posted.fetch_add(1, Relaxed);
        if let Ok(mut head) = self.head.lock() {
            if head.as_ref().is_none_or(|(newest, _)| seq > *newest) {
                *head = Some((seq, id.to_owned()));
            }
        }
    }

    /// Remembers a well-behaved client's socket; shuts it at once if stopping already began.
    fn register(&self, slot: usize, stream: &TcpStream) {
        if let (Ok(mut held), Ok(clone)) = (self.sockets[slot].lock(), stream.try_clone()) {
            *held = Some(clone);
        }
        if self.stop_readers.load(Relaxed) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn stop_readers(&self) {
        self.stop_readers.store(true, Relaxed);
        for slot in &self.sockets {
            if let Ok(held) = slot.lock() {
                if let Some(stream) = held.as_ref() {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            }
        }
    }
}

/// Errors one thread met: the first few in full, all of them counted.
#[derive(Default)]
struct Errors {
    kept: Vec<String>,
    count: u64,
}

impl Errors {
    fn push(&mut self, error: String) {
        self.count += 1;
        if self.kept.len() < ERRORS_KEPT {
            self.kept.push(error);
        }
    }
}

// ----- well-behaved readers -----------------------------------------------------------------

/// What one long-poller or SSE reader saw.
struct ReaderReport {
    name: String,
    /// Every message, in arrival order: `(epoch, seq, text)`.
    seen: Vec<(String, u64, String)>,
    /// Answers or frames that said messages were lost.
    gaps: u64,
    /// Connections it had to make again after the first.
    reconnects: u64,
    /// Why connections ended or could not be made: reported, not failed on, since
    /// reconnecting and resuming is the protocol's own recovery (and a lost message still
    /// fails the check).
    disconnects: Errors,
    /// Answers that break the protocol: these fail the check.
    errors: Errors,
}

impl ReaderReport {
    fn new(name: String) -> ReaderReport {
        ReaderReport {
            name,
            seen: Vec::new(),
            gaps: 0,
            reconnects: 0,
            disconnects: Errors::default(),
            errors: Errors::default(),
        }
    }

    fn record(&mut self, shared: &Shared, slot: usize, id: &str, text: String) {
        match parse_id(id) {
            Some((epoch, seq)) => {
                shared.progress[slot].fetch_max(seq, Relaxed);
                self.seen.push((epoch, seq, text));
            }
            None => self.errors.push(format!("malformed id {id:?}")),
        }
    }
}

/// Loops `GET /rooms/soak/messages?since=<next>` on one keep-alive connection, as the
/// protocol's four-line client loop does, until told to stop.
fn long_poller(shared: Arc<Shared>, slot: usize) -> ReaderReport {
    let mut report = ReaderReport::new(format!("long-poller {slot}"));
    let mut next: Option<String> = None;
    let mut conn: Option<HttpConn> = None;
    let mut connected_once = false;
    while !shared.stop_readers.load(Relaxed) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match HttpConn::connect(shared.addr) {
                Ok(c) => {
                    shared.register(slot, &c.stream);
                    report.reconnects += u64::from(connected_once);
                    connected_once = true;
                    conn.insert(c)
                }
                Err(e) => {
                    report.disconnects.push(format!("connect: {e}"));
                    thread::sleep(RECONNECT_PAUSE);
                    continue;
                }
            },
        };
        let since = next
            .as_ref()
            .map(|n| format!("?since={n}"))
            .unwrap_or_default();
        let request = format!("GET /rooms/{ROOM}/messages{since} HTTP/1.1\r\nHost: soak\r\n\r\n");
        match c.request(request.as_bytes()) {
            Ok((200, body)) => match serde_json::from_slice::<Value>(&body) {
                Ok(answer) => {
                    for message in answer["messages"].as_array().into_iter().flatten() {
                        let id = message["id"].as_str().unwrap_or_default();
                        let text = message["text"].as_str().unwrap_or_default().to_owned();
                        report.record(&shared, slot, id, text);
                    }
                    if answer["gap"].as_bool() != Some(false) {
                        report.gaps += 1;
                    }
                    match answer["next"].as_str() {
                        Some(n) => next = Some(n.to_owned()),
                        None => report.errors.push("an answer without next".into()),
                    }
                }
                Err(e) => report.errors.push(format!("bad JSON: {e}")),
            },
            Ok((status, body)) => {
                let body = String::from_utf8_lossy(&body);
                report.errors.push(format!("status {status}: {body}"));
                thread::sleep(RECONNECT_PAUSE);
            }
            Err(e) => {
                if shared.stop_readers.load(Relaxed) {
                    break;
                }
                report.disconnects.push(format!("poll: {e}"));
                conn = None;
                thread::sleep(RECONNECT_PAUSE);
            }
        }
    }
    report
}

/// Reads `GET /rooms/soak/events` frame by frame, and on any disconnect reconnects the way
/// an `EventSource` does: after the server's `retry:` delay, with `Last-Event-ID`.
fn sse_reader(shared: Arc<Shared>, slot: usize) -> ReaderReport {
    let mut report = ReaderReport::new(format!("SSE reader {}", slot - LONG_POLLERS));
    let mut last_id: Option<String> = None;
    let mut retry = SSE_RETRY_CAP;
    let mut first = true;
    while !shared.stop_readers.load(Relaxed) {
        if !first {
            report.reconnects += 1;
            thread::sleep(retry);
        }
        first = false;
        let mut conn = match HttpConn::connect(shared.addr) {
            Ok(c) => c,
            Err(e) => {
                report.disconnects.push(format!("connect: {e}"));
                continue;
            }
        };
        shared.register(slot, &conn.stream);
        let resume = last_id
            .as_ref()
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /rooms/{ROOM}/events HTTP/1.1\r\nHost: soak\r\nAccept: text/event-stream\r\n\
             {resume}\r\n"
        );
        if let Err(e) = conn.stream.write_all(request.as_bytes()) {
            report.disconnects.push(format!("send: {e}"));
            continue;
        }
        if let Err(e) = read_stream_head(&mut conn) {
            if e.kind() == io::ErrorKind::InvalidData {
                report.errors.push(format!("stream head: {e}"));
            } else if !shared.stop_readers.load(Relaxed) {
                report.disconnects.push(format!("stream head: {e}"));
            }
            continue;
        }
        // Frames until the stream ends; what ends it decides whether it was an error.
        let ended = loop {
            while let Some(at) = conn.buf.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = conn.buf.drain(..at + 2).collect();
                let frame = String::from_utf8_lossy(&frame).into_owned();
                handle_frame(&shared, slot, &frame, &mut report, &mut last_id, &mut retry);
            }
            if let Err(e) = conn.fill() {
                break e;
            }
        };
        if !shared.stop_readers.load(Relaxed) {
            report.disconnects.push(format!("stream ended: {ended}"));
        }
    }
    report
}

/// Reads the stream's response head and checks it is a 200 event stream.
fn read_stream_head(conn: &mut HttpConn) -> io::Result<()> {
    loop {
        if let Some(at) = conn.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = conn.buf.drain(..at + 4).collect();
            let head = String::from_utf8_lossy(&head);
            if head.starts_with("HTTP/1.1 200")
                && head.to_ascii_lowercase().contains("text/event-stream")
            {
                return Ok(());
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an event stream: {head:?}"),
            ));
        }
        conn.fill()?;
    }
}

/// One SSE frame: `id:`, `event:`, `data:` and `retry:` fields, or a comment (heartbeat).
fn handle_frame(
    shared: &Shared,
    slot: usize,
    frame: &str,
    report: &mut ReaderReport,
    last_id: &mut Option<String>,
    retry: &mut Duration,
) {
    let (mut id, mut event, mut data) = (None, "message", String::new());
    for line in frame.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value.to_owned()),
            "event" => event = value,
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            "retry" => {
                if let Ok(ms) = value.parse::<u64>() {
                    *retry = Duration::from_millis(ms).min(SSE_RETRY_CAP);
                }
            }
            _ => {} // a comment (`: keep-alive`) or an empty line
        }
    }
    match event {
        "message" if !data.is_empty() => {
            let message: Value = match serde_json::from_str(&data) {
                Ok(v) => v,
                Err(e) => return report.errors.push(format!("bad JSON in a frame: {e}")),
            };
            let data_id = message["id"].as_str().unwrap_or_default();
            if id.as_deref() != Some(data_id) {
                report.errors.push(format!(
                    "frame id {id:?} differs from its data's {data_id:?}"
                ));
            }
            let text = message["text"].as_str().unwrap_or_default().to_owned();
            report.record(shared, slot, data_id, text);
            *last_id = Some(data_id.to_owned());
        }
        "gap" => report.gaps += 1,
        "message" => {} // `retry:` alone, or a comment
        other => report.errors.push(format!("unexpected event {other:?}")),
    }
}

// ----- posters ------------------------------------------------------------------------------

/// What one poster did.
#[derive(Default)]
struct PosterReport {
    /// Every message stored: `(epoch, seq, text)`.
    posted: Vec<(String, u64, String)>,
    /// Deliberate retries sent, and those answered 200 with the original id.
    dup_sent: u64,
    dup_ok: u64,
    /// Posts sent again after a connection failed (same `client_id`).
    network_retries: u64,
    /// Posts whose fate is unknown: every attempt failed.
    unresolved: u64,
    /// Why attempts failed (the post was then re-sent): reported, not failed on.
    disconnects: Errors,
    /// Answers that are wrong: these fail the check.
    errors: Errors,
}

/// The text of poster `idx`'s `k`th message: unique, of varying length, with characters
/// that must survive form decoding, JSON escaping and both transports (non-ASCII, `+`,
/// `&`, `%`, quotes, and now and then a newline).
fn message_text(idx: usize, k: u64) -> String {
    let pad = "x".repeat((k % 40) as usize);
    let newline = if k.is_multiple_of(9) {
        "\nsecond line"
    } else {
        ""
    };
    format!("soak {idx}/{k}: héllo wörld ✓ 1+1=2 & 100% \"q\" {pad}{newline}")
}

/// Posts at a steady rate with a unique `client_id` each, re-sending one in
/// [`RETRY_ONE_IN`] at once to check it is recognised as a duplicate.
fn poster(shared: Arc<Shared>, idx: usize) -> PosterReport {
    let mut report = PosterReport::default();
    let interval = Duration::from_secs_f64(POSTERS as f64 / POSTS_PER_SEC);
    // Staggered, so the posters' messages interleave instead of arriving in bursts of four.
    let start = Instant::now() + interval.mul_f64(idx as f64 / POSTERS as f64);
    let mut conn: Option<HttpConn> = None;
    let from = format!("poster{idx}");
    for k in 0u64.. {
        let due = start + interval.mul_f64(k as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        if shared.stop_load.load(Relaxed) {
            break;
        }
        let client_id = format!("soak-{idx}-{k}");
        let text = message_text(idx, k);
        let body = form_encode(&[("from", &from), ("text", &text), ("client_id", &client_id)]);
        let request = format!(
            "POST /rooms/{ROOM}/messages HTTP/1.1\r\nHost: soak\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, answer, retried) = match post(&shared, &mut conn, &request, &mut report) {
            Some(result) => result,
            None => {
                report.unresolved += 1;
                report
                    .errors
                    .push(format!("{client_id}: every attempt failed"));
                continue;
            }
        };
        let id = answer["id"].as_str().unwrap_or_default().to_owned();
        let duplicate = answer["duplicate"].as_bool() == Some(true);
        // 201 is a new message; after a failed attempt, 200 duplicate means the failed
        // attempt had stored it. Anything else is wrong.
        let stored = (status == 201 && !duplicate) || (retried && status == 200 && duplicate);
        let Some((epoch, seq)) = parse_id(&id).filter(|_| stored) else {
            report
                .errors
                .push(format!("{client_id}: answered {status} {answer}"));
            continue;
        };
        shared.note_posted(seq, &id);
        report.posted.push((epoch, seq, text));
        if k % RETRY_ONE_IN == RETRY_ONE_IN - 1 {
            report.dup_sent += 1;
            match post(&shared, &mut conn, &request, &mut report) {
                Some((200, again, _))
                    if again["id"].as_str() == Some(id.as_str())
                        && again["duplicate"].as_bool() == Some(true) =>
                {
                    report.dup_ok += 1
                }
                Some((status, again, _)) => report.errors.push(format!(
                    "{client_id} retried: answered {status} {again}, original {id}"
                )),
                None => report
                    .errors
                    .push(format!("{client_id} retried: no answer")),
            }
        }
    }
    report
}

/// Sends one post, reconnecting and re-sending (same bytes, same `client_id`) when the
/// connection fails. Returns status, JSON answer, and whether a re-send was needed.
fn post(
    shared: &Shared,
    conn: &mut Option<HttpConn>,
    request: &str,
    report: &mut PosterReport,
) -> Option<(u16, Value, bool)> {
    for attempt in 0..POST_ATTEMPTS {
        if attempt > 0 {
            report.network_retries += 1;
            thread::sleep(RECONNECT_PAUSE);
        }
        if conn.is_none() {
            match HttpConn::connect(shared.addr) {
                Ok(c) => *conn = Some(c),
                Err(e) => {
                    report.disconnects.push(format!("connect: {e}"));
                    continue;
                }
            }
        }
        let c = conn.as_mut()?;
        match c.request(request.as_bytes()) {
            Ok((status, body)) => {
                let answer = serde_json::from_slice(&body).unwrap_or(Value::Null);
                return Some((status, answer, attempt > 0));
            }
            Err(e) => {
                report.disconnects.push(format!("post: {e}"));
                *conn = None;
            }
        }
    }
    None
}

// ----- churn --------------------------------------------------------------------------------

/// The ways a short-lived client misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Parks a poll, then drops the socket without reading.
    ParkVanish,
    /// Sends half a request head, then drops the socket (some after the request timeout).
    HalfHead,
    /// Sends a header byte every 500 ms; the server must answer 408 and close.
    Slowloris,
    /// A 4 KiB receive buffer, an event stream or a parked poll, never read.
    SlowReader,
    /// Connects and sends nothing; the server's idle timeout must close it.
    Idle,
    /// Classic `GET /chat`, then drops the socket.
    ClassicVanish,
}

const KINDS: [Kind; 6] = [
    Kind::ParkVanish,
    Kind::HalfHead,
    Kind::Slowloris,
    Kind::SlowReader,
    Kind::Idle,
    Kind::ClassicVanish,
];

/// A churn client in flight.
struct Live {
    kind: Kind,
    /// Non-blocking.
    stream: TcpStream,
    /// When it is dropped (or, for a slowloris, given up).
    until: Instant,
    /// When a slowloris sends its next byte.
    next_byte: Instant,
    /// The start of what the server sent, for kinds that read.
    got: Vec<u8>,
}

/// What the churn drivers did.
#[derive(Default)]
struct ChurnReport {
    opened: [u64; KINDS.len()],
    connect_errors: Errors,
    /// Slowloris clients the server hung up on with a 408 first, without one, or not at all.
    slowloris_408: u64,
    slowloris_no_408: Errors,
    slowloris_gave_up: u64,
    /// Idle clients the server closed, and those still open when we dropped them.
    idle_reaped: u64,
    idle_not_reaped: u64,
    /// Idle clients that were sent something: the server should say nothing to them.
    idle_unexpected: Errors,
    /// Ticks in which a start waited because [`CHURN_OPEN_MAX`] sockets were open.
    cap_waits: u64,
}

impl ChurnReport {
    fn merge(&mut self, other: ChurnReport) {
        for (mine, theirs) in self.opened.iter_mut().zip(other.opened) {
            *mine += theirs;
        }
        merge_errors(&mut self.connect_errors, other.connect_errors);
        self.slowloris_408 += other.slowloris_408;
        merge_errors(&mut self.slowloris_no_408, other.slowloris_no_408);
        self.slowloris_gave_up += other.slowloris_gave_up;
        self.idle_reaped += other.idle_reaped;
        self.idle_not_reaped += other.idle_not_reaped;
        merge_errors(&mut self.idle_unexpected, other.idle_unexpected);
        self.cap_waits += other.cap_waits;
    }
}

fn merge_errors(into: &mut Errors, from: Errors) {
    let count = into.count + from.count;
    for error in from.kept {
        into.push(error);
    }
    into.count = count;
}

/// xorshift64*: hold times need to be spread, not unpredictable, and this needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A duration in `lo_ms..=hi_ms`.
    fn millis(&mut self, lo_ms: u64, hi_ms: u64) -> Duration {
        Duration::from_millis(lo_ms + self.next() % (hi_ms - lo_ms + 1))
    }
}

/// One churn thread: starts clients `driver`, `driver + CHURN_DRIVERS`, … of `total`, each
/// at its slot in the run, and steps the open ones every [`CHURN_TICK`].
fn churn_driver(
    shared: Arc<Shared>,
    driver: usize,
    total: usize,
    start: Instant,
    run: Duration,
) -> ChurnReport {
    let mut report = ChurnReport::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((driver as u64 + 1) << 32));
    let mut next = driver;
    let mut live: Vec<Live> = Vec::new();
    while !shared.stop_load.load(Relaxed) {
        let now = Instant::now();
        while next < total && start + run.mul_f64(next as f64 / total as f64) <= now {
            if shared.churn_open.load(Relaxed) >= CHURN_OPEN_MAX {
                report.cap_waits += 1;
                break;
            }
            let kind = KINDS[(next / CHURN_DRIVERS) % KINDS.len()];
            match open_churn(&shared, next, kind, &mut rng) {
                Ok(client) => {
                    live.push(client);
                    shared.churn_open.fetch_add(1, Relaxed);
                    shared.churn_opened.fetch_add(1, Relaxed);
                    report.opened[kind as usize] += 1;
                }
                Err(e) => report.connect_errors.push(format!("{kind:?}: {e}")),
            }
            next += CHURN_DRIVERS;
        }
        live.retain_mut(|client| {
            let keep = step_churn(client, now, &mut report);
            if !keep {
                shared.churn_open.fetch_sub(1, Relaxed);
            }
            keep // a client not kept is dropped here, which closes its socket
        });
        if next >= total && live.is_empty() {
            break;
        }
        thread::sleep(CHURN_TICK);
    }
    shared.churn_open.fetch_sub(live.len(), Relaxed);
    report
}

/// Connects churn client `index` from its source address and sends its opening bytes.
fn open_churn(shared: &Shared, index: usize, kind: Kind, rng: &mut Rng) -> io::Result<Live> {
    let source = Ipv4Addr::new(127, 0, 0, 2 + (index % CHURN_SOURCE_ADDRS) as u8);
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if kind == Kind::SlowReader {
        // Before connecting, so the window it advertises is small from the first byte.
        socket.set_recv_buffer_size(SLOW_READER_RCVBUF_BYTES)?;
    }
    socket.bind(&SockAddr::from(SocketAddr::from((source, 0))))?;
    socket.connect_timeout(&SockAddr::from(shared.addr), CONNECT_TIMEOUT)?;
    let mut stream: TcpStream = socket.into();
    stream.set_write_timeout(Some(CONNECT_TIMEOUT))?;
    // From the newest id, a poll parks; without one it would fetch the whole history.
    let since = shared
        .head_id()
        .map(|id| format!("?since={id}"))
        .unwrap_or_default();
    let poll = format!("GET /rooms/{ROOM}/messages{since} HTTP/1.1\r\nHost: churn\r\n\r\n");
    let (opening, hold) = match kind {
        Kind::ParkVanish => (poll, rng.millis(300, 3000)),
        // Some are held past the 2 s request timeout and get a 408 nobody reads.
        Kind::HalfHead => (
            format!("GET /rooms/{ROOM}/messages HTTP/1.1\r\nHost: churn\r\nX-Half: "),
            rng.millis(500, 4000),
        ),
        Kind::Slowloris => (
            "GET /chat HTTP/1.1\r\nHost: churn\r\nX-Slow: ".to_owned(),
            SLOWLORIS_GIVE_UP,
        ),
        Kind::SlowReader if rng.next().is_multiple_of(2) => (
            format!("GET /rooms/{ROOM}/events{since} HTTP/1.1\r\nHost: churn\r\n\r\n"),
            rng.millis(3000, 6000),
        ),
        Kind::SlowReader => (poll, rng.millis(3000, 6000)),
        // Held past the 3 s idle timeout, so the server is the one to close it.
        Kind::Idle => (String::new(), rng.millis(3500, 5000)),
        Kind::ClassicVanish => (
            "GET /chat HTTP/1.1\r\nHost: churn\r\n\r\n".to_owned(),
            rng.millis(300, 4000),
        ),
    };
    stream.write_all(opening.as_bytes())?;
    stream.set_nonblocking(true)?;
    let now = Instant::now();
    Ok(Live {
        kind,
        stream,
        until: now + hold,
        next_byte: now + SLOWLORIS_BYTE_EVERY,
        got: Vec::new(),
    })
}

/// What a non-blocking read found.
enum ReadState {
    /// Nothing more for now.
    Pending,
    /// The server closed (FIN or reset).
    Closed,
}

/// Reads what is there, keeping the first [`CHURN_KEEP_BYTES`].
fn read_churn(client: &mut Live) -> ReadState {
    let mut chunk = [0u8; 4096];
    loop {
        match client.stream.read(&mut chunk) {
            Ok(0) => return ReadState::Closed,
            Ok(n) => {
                let room = CHURN_KEEP_BYTES.saturating_sub(client.got.len());
                client.got.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadState::Pending,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return ReadState::Closed,
        }
    }
}

/// Advances one churn client; false when it is done and should be dropped.
fn step_churn(client: &mut Live, now: Instant, report: &mut ChurnReport) -> bool {
    match client.kind {
        Kind::Idle => {
            if let ReadState::Closed = read_churn(client) {
                if client.got.is_empty() {
                    report.idle_reaped += 1;
                } else {
                    let got = String::from_utf8_lossy(&client.got).into_owned();
                    report.idle_unexpected.push(got);
                }
                return false;
            }
            if now >= client.until {
                report.idle_not_reaped += 1;
                return false;
            }
            true
        }
        Kind::Slowloris => {
            if let ReadState::Closed = read_churn(client) {
                finish_slowloris(client, report);
                return false;
            }
            if now >= client.next_byte {
                match client.stream.write(b"a") {
                    Ok(_) => client.next_byte += SLOWLORIS_BYTE_EVERY,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        // Hung up on; whatever it sent first is already in `got` or the
                        // socket.
                        let _ = read_churn(client);
                        finish_slowloris(client, report);
                        return false;
                    }
                }
            }
            if now >= client.until {
                report.slowloris_gave_up += 1;
                return false;
            }
            true
        }
        // The rest never read: they are held, then dropped.
        _ => now < client.until,
    }
}

fn finish_slowloris(client: &Live, report: &mut ChurnReport) {
    if client.got.starts_with(b"HTTP/1.1 408") {
        report.slowloris_408 += 1;
    } else {
        let got = String::from_utf8_lossy(&client.got);
        let first_line = got.lines().next().unwrap_or("(nothing)").to_owned();
        report.slowloris_no_408.push(first_line);
    }
}

// ----- the checks ---------------------------------------------------------------------------

/// One row of the final table.
struct Check {
    name: String,
    pass: bool,
    detail: String,
}

fn check(checks: &mut Vec<Check>, name: &str, pass: bool, detail: String) {
    checks.push(Check {
        name: name.to_owned(),
        pass,
        detail,
    });
}

/// The RSS the server may end at: its baseline, plus what the last [`HISTORY_KEPT`] posted
/// messages occupy in the history by design, plus
/// [`RSS_SLACK_BYTES`] for pages the allocator keeps. The history part is the encoded
/// JSON the server keeps per message (`{"id":…,"from":…,"text":…,"time":…}`, text
/// JSON-escaped), its `client_id` twice (history and index), and a per-message overhead.
/// Measured once on the release server: 9,000 of these posts and no other traffic grew a
/// fresh server's RSS by 3.0 MB, 335 bytes a message; this estimate gives about 334.
fn rss_allowance(baseline: u64, posted: &[(String, u64, String)]) -> (u64, u64) {
    let kept = posted.len().saturating_sub(HISTORY_KEPT);
    let history: u64 = posted[kept..]
        .iter()
        .map(|(epoch, seq, text)| {
            let escaped = serde_json::to_string(text).map_or(text.len(), |s| s.len());
            // {"id":"<epoch>-<seq>","from":"posterN","text":<escaped>,"time":<13 digits>}
            let json = 40 + epoch.len() + 1 + seq.to_string().len() + 7 + escaped + 13;
            let client_id = 2 * "soak-0-00000".len();
            (json + client_id) as u64 + HISTORY_OVERHEAD_BYTES_PER_MESSAGE
        })
        .sum();
    (history, baseline + history + RSS_SLACK_BYTES)
}

/// Whether `report` saw exactly `posted` (seq → text), once each, in increasing order, in
/// `epoch`. `Err` says how it did not.
fn verify_reader(
    report: &ReaderReport,
    epoch: &str,
    posted: &BTreeMap<u64, &str>,
) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut last = 0;
    let mut out_of_order = 0;
    let mut wrong_text = 0;
    let mut wrong_epoch = 0;
    let mut seen = BTreeMap::new();
    for (e, seq, text) in &report.seen {
        if e != epoch {
            wrong_epoch += 1;
        }
        if *seq <= last {
            out_of_order += 1;
        }
        last = last.max(*seq);
        *seen.entry(*seq).or_insert(0u64) += 1;
        if posted.get(seq).is_some_and(|t| t != text) {
            wrong_text += 1;
        }
    }
    let repeated = seen.values().filter(|&&n| n > 1).count();
    let missing: Vec<u64> = posted
        .keys()
        .filter(|seq| !seen.contains_key(seq))
        .copied()
        .collect();
    let unknown = seen.keys().filter(|seq| !posted.contains_key(seq)).count();
    for (n, what) in [
        (out_of_order, "out of order"),
        (repeated, "seen twice"),
        (missing.len(), "missing"),
        (unknown, "never posted"),
        (wrong_text, "with the wrong text"),
        (wrong_epoch, "in another epoch"),
    ] {
        if n > 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    if let Some(first) = missing.first() {
        problems.push(format!("first missing seq {first}"));
    }
    if report.gaps > 0 {
        problems.push(format!("{} gaps", report.gaps));
    }
    if report.errors.count > 0 {
        problems.push(format!(
            "{} protocol errors, first: {}",
            report.errors.count,
            report.errors.kept.first().map_or("", String::as_str)
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {}", report.name, problems.join(", ")))
    }
}

/// A row for one group of readers: all must verify.
fn reader_check(
    checks: &mut Vec<Check>,
    name: &str,
    reports: &[ReaderReport],
    epoch: &str,
    posted: &BTreeMap<u64, &str>,
) {
    let failures: Vec<String> = reports
        .iter()
        .filter_map(|r| verify_reader(r, epoch, posted).err())
        .collect();
    let reconnects: u64 = reports.iter().map(|r| r.reconnects).sum();
    let disconnects: u64 = reports.iter().map(|r| r.disconnects.count).sum();
    let first_disconnect = reports
        .iter()
        .find_map(|r| r.disconnects.kept.first())
        .map(|why| format!(", first: {why}"))
        .unwrap_or_default();
    let connections =
        format!("{reconnects} reconnects, {disconnects} disconnects{first_disconnect}");
    let detail = if failures.is_empty() {
        format!(
            "{}/{} saw all {} once, in order, texts intact ({connections})",
            reports.len(),
            reports.len(),
            posted.len()
        )
    } else {
        // The first few are enough to start from; the rest usually say the same.
        let shown: Vec<&str> = failures.iter().take(3).map(String::as_str).collect();
        format!(
            "{} of {} failed: {}{} ({connections})",
            failures.len(),
            reports.len(),
            shown.join("; "),
            if failures.len() > shown.len() {
                "; …"
            } else {
                ""
            }
        )
    };
    check(
        checks,
        name,
        failures.is_empty() && !posted.is_empty(),
        detail,
    );
}

// ----- the run ------------------------------------------------------------------------------

fn main() -> ExitCode {
    STARTED.get_or_init(Instant::now);
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("soak: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            say!("soak failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the soak; `Ok(false)` when a check failed. The server is stopped before this
/// returns, whichever way it returns (its handle is dropped).
fn run(args: &Args) -> io::Result<bool> {
    print_machine();
    say!("cargo build --release --bin comet-chat");
    let bin = server::build_release()?;
    let mut server = Server::start(Launch {
        bin: &bin,
        args: SERVER_FLAGS,
        cpu: None,
        output: Output::Collect {
            keep: LOG_LINES_KEPT,
            echo: echo_server_line,
        },
    })?;
    say!(
        "server pid {} on {}: {}",
        server.pid(),
        server.addr(),
        SERVER_FLAGS.join(" ")
    );
    thread::sleep(WARM_UP);
    let baseline = fetch_stats(server.addr())?;
    say!(
        "baseline: connections {} pending_polls {} streams {} rss {} (open files {})",
        baseline.connections,
        baseline.pending_polls,
        baseline.streams,
        mib(baseline.rss_bytes),
        baseline.open_files_limit
    );
    let outcome = drive(args, &mut server, baseline)?;
    let checks = judge(&outcome, server.pid());
    let exit = server.terminate(EXIT_GRACE);
    print_report(args, &outcome, &server, exit, &checks);
    Ok(checks.iter().all(|c| c.pass))
}

/// Everything the run produced, for the verdicts and the report.
struct Outcome {
    baseline: Stats,
    /// `/stats` once settled (or when settling gave up).
    after: Stats,
    /// The highest RSS the progress lines saw.
    rss_peak: u64,
    /// Every message answered 201 (or 200 after a failed first attempt), from all posters.
    posted: Vec<(String, u64, String)>,
    posters: Vec<PosterReport>,
    /// Long-pollers first, then SSE readers.
    readers: Vec<ReaderReport>,
    churn: ChurnReport,
    /// How the server ended if it ended before the checks.
    died: Option<ExitStatus>,
}

/// Phases 2 and 3: the load with progress lines, then stop, catch up and settle.
fn drive(args: &Args, server: &mut Server, baseline: Stats) -> io::Result<Outcome> {
    let addr = server.addr();
    let readers = LONG_POLLERS + SSE_READERS;
    let shared = Arc::new(Shared {
        addr,
        stop_load: AtomicBool::new(false),
        stop_readers: AtomicBool::new(false),
        head: Mutex::new(None),
        posted: AtomicU64::new(0),
        churn_opened: AtomicU64::new(0),
        churn_open: AtomicUsize::new(0),
        progress: (0..readers).map(|_| AtomicU64::new(0)).collect(),
        sockets: (0..readers).map(|_| Mutex::new(None)).collect(),
    });

    // Readers first, and parked before the first post, so each sees the run from seq 1.
    let mut reader_threads = Vec::new();
    for slot in 0..readers {
        let shared = Arc::clone(&shared);
        let body = move || {
            if slot < LONG_POLLERS {
                long_poller(shared, slot)
            } else {
                sse_reader(shared, slot)
            }
        };
        reader_threads.push(spawn(format!("reader-{slot}"), body)?);
    }
    wait_for(addr, Duration::from_secs(10), |s| {
        s.pending_polls >= LONG_POLLERS as u64 && s.streams >= SSE_READERS as u64
    });

    let load_start = Instant::now();
    let mut poster_threads = Vec::new();
    for idx in 0..POSTERS {
        let shared = Arc::clone(&shared);
        poster_threads.push(spawn(format!("poster-{idx}"), move || poster(shared, idx))?);
    }
    let mut churn_threads = Vec::new();
    for driver in 0..CHURN_DRIVERS {
        let shared = Arc::clone(&shared);
        let (total, run) = (args.churn_clients, args.run);
        let body = move || churn_driver(shared, driver, total, load_start, run);
        churn_threads.push(spawn(format!("churn-{driver}"), body)?);
    }
    say!(
        "load running for {} s: {LONG_POLLERS} long-pollers, {SSE_READERS} SSE readers, \
         {POSTERS} posters at {POSTS_PER_SEC}/s, {} churn clients",
        args.run.as_secs(),
        args.churn_clients
    );

    // Progress until the run is over, or the server dies.
    let mut rss_peak = baseline.rss_bytes;
    let mut next_progress = load_start + PROGRESS_EVERY;
    let mut died = None;
    while load_start.elapsed() < args.run {
        if let Some(status) = server.exited() {
            say!("the server exited during the run: {status}");
            died = Some(status);
            break;
        }
        if Instant::now() >= next_progress {
            next_progress += PROGRESS_EVERY;
            match fetch_stats(addr) {
                Ok(s) => {
                    rss_peak = rss_peak.max(s.rss_bytes);
                    say!(
                        "{:4.0} s: posted {} | connections {} pending_polls {} streams {} | \
                         rss {} | churn opened {} (open {}) | drops {}",
                        load_start.elapsed().as_secs_f64(),
                        shared.posted.load(Relaxed),
                        s.connections,
                        s.pending_polls,
                        s.streams,
                        mib(s.rss_bytes),
                        shared.churn_opened.load(Relaxed),
                        shared.churn_open.load(Relaxed),
                        s.drops()
                    );
                }
                Err(e) => say!("/stats failed: {e}"),
            }
        }
        thread::sleep(Duration::from_millis(100));
    }

    // Stop the load; the drivers drop every churn socket on their way out.
    shared.stop_load.store(true, Relaxed);
    let posters: Vec<PosterReport> = poster_threads.into_iter().map(join_thread).collect();
    let mut churn = ChurnReport::default();
    for report in churn_threads.into_iter().map(join_thread) {
        churn.merge(report);
    }
    let posted: Vec<(String, u64, String)> = posters
        .iter()
        .flat_map(|p| p.posted.iter().cloned())
        .collect();
    let last_seq = posted.iter().map(|(_, seq, _)| *seq).max().unwrap_or(0);
    say!(
        "load stopped: {} posted (last seq {last_seq}), {} churn clients opened",
        posted.len(),
        shared.churn_opened.load(Relaxed)
    );

    // Catch up, then stop the readers.
    let behind = || {
        shared
            .progress
            .iter()
            .filter(|p| p.load(Relaxed) < last_seq)
            .count()
    };
    let catch_up_until = Instant::now() + CATCH_UP;
    while Instant::now() < catch_up_until && behind() > 0 {
        thread::sleep(Duration::from_millis(50));
    }
    say!("readers caught up ({} behind); stopping them", behind());
    shared.stop_readers();
    let readers: Vec<ReaderReport> = reader_threads.into_iter().map(join_thread).collect();

    // Back to baseline?
    say!(
        "waiting up to {} s for the server to settle",
        SETTLE.as_secs()
    );
    let settled = wait_for(addr, SETTLE, |s| {
        s.connections == baseline.connections && s.pending_polls == 0 && s.streams == 0
    });
    let after = match settled {
        Some(s) => s,
        None => fetch_stats(addr).unwrap_or_default(),
    };
    let died = died.or_else(|| server.exited());
    Ok(Outcome {
        baseline,
        after,
        rss_peak,
        posted,
        posters,
        readers,
        churn,
        died,
    })
}

/// Phase 4: one row per check.
fn judge(o: &Outcome, pid: u32) -> Vec<Check> {
    let (baseline, after, churn) = (&o.baseline, &o.after, &o.churn);
    let mut checks = Vec::new();
    check(
        &mut checks,
        "connections back to baseline",
        after.connections == baseline.connections,
        format!(
            "baseline {}, after {}",
            baseline.connections, after.connections
        ),
    );
    check(
        &mut checks,
        "pending_polls 0",
        after.pending_polls == 0,
        format!("after {}", after.pending_polls),
    );
    check(
        &mut checks,
        "streams 0",
        after.streams == 0,
        format!("after {}", after.streams),
    );
    let (history_bytes, rss_limit) = rss_allowance(baseline.rss_bytes, &o.posted);
    check(
        &mut checks,
        "RSS back near baseline",
        after.rss_bytes > 0 && after.rss_bytes <= rss_limit,
        format!(
            "baseline {}, after {}, peak seen {}; allowed {} = baseline + {} history of {} \
             messages (kept by design) + {} the allocator may keep; baseline + {} alone: {}",
            mib(baseline.rss_bytes),
            mib(after.rss_bytes),
            mib(o.rss_peak),
            mib(rss_limit),
            mib(history_bytes),
            o.posted.len().min(HISTORY_KEPT),
            mib(RSS_SLACK_BYTES),
            mib(RSS_SLACK_BYTES),
            if after.rss_bytes <= baseline.rss_bytes + RSS_SLACK_BYTES {
                "within"
            } else {
                "over"
            }
        ),
    );
    let epoch = o
        .posted
        .first()
        .map(|(e, _, _)| e.clone())
        .unwrap_or_default();
    let texts: BTreeMap<u64, &str> = o
        .posted
        .iter()
        .map(|(_, seq, text)| (*seq, text.as_str()))
        .collect();
    let last_seq = texts.keys().next_back().copied().unwrap_or(0);
    let post_errors: u64 = o.posters.iter().map(|p| p.errors.count).sum();
    let first_post_error = o
        .posters
        .iter()
        .find_map(|p| p.errors.kept.first().cloned());
    let network_retries: u64 = o.posters.iter().map(|p| p.network_retries).sum();
    let unresolved: u64 = o.posters.iter().map(|p| p.unresolved).sum();
    check(
        &mut checks,
        "every post stored once",
        post_errors == 0
            && unresolved == 0
            && !texts.is_empty()
            && texts.len() == o.posted.len()
            && after.messages == o.posted.len() as u64,
        format!(
            "{} answered 201 with distinct ids (last seq {last_seq}); server counted {} \
             messages; {network_retries} network re-sends{}; {unresolved} unresolved; \
             {post_errors} wrong answers{}",
            o.posted.len(),
            after.messages,
            o.posters
                .iter()
                .find_map(|p| p.disconnects.kept.first())
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
            first_post_error
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default()
        ),
    );
    let (polls, streams) = o.readers.split_at(LONG_POLLERS.min(o.readers.len()));
    reader_check(
        &mut checks,
        "long-pollers: every id once, in order",
        polls,
        &epoch,
        &texts,
    );
    reader_check(
        &mut checks,
        "SSE readers: every id once, in order",
        streams,
        &epoch,
        &texts,
    );
    let dup_sent: u64 = o.posters.iter().map(|p| p.dup_sent).sum();
    let dup_ok: u64 = o.posters.iter().map(|p| p.dup_ok).sum();
    check(
        &mut checks,
        "retries answered 200, original id",
        dup_sent > 0 && dup_ok == dup_sent,
        format!("{dup_ok} of {dup_sent} retries"),
    );
    check(
        &mut checks,
        "slowloris answered 408",
        churn.slowloris_408 > 0
            && churn.slowloris_no_408.count == 0
            && churn.slowloris_gave_up == 0,
        format!(
            "{} got 408; {} closed without it{}; {} not closed within {} s",
            churn.slowloris_408,
            churn.slowloris_no_408.count,
            churn
                .slowloris_no_408
                .kept
                .first()
                .map(|e| format!(" (first: {e:?})"))
                .unwrap_or_default(),
            churn.slowloris_gave_up,
            SLOWLORIS_GIVE_UP.as_secs()
        ),
    );
    check(
        &mut checks,
        "server still alive",
        o.died.is_none(),
        match o.died {
            Some(status) => format!("exited: {status}"),
            None => format!("pid {pid} running"),
        },
    );
    check(
        &mut checks,
        "churn reaped: request_timeout > 0",
        after.drop_request_timeout > 0,
        format!("drops: {}", after.drops()),
    );
    check(
        &mut checks,
        "churn reaped: idle > 0",
        after.drop_idle > 0,
        format!(
            "{} idle clients closed by the server, {} still open at their 3.5-5 s hold",
            churn.idle_reaped, churn.idle_not_reaped
        ),
    );
    checks
}

/// The summary lines and the table, on stdout.
fn print_report(
    args: &Args,
    o: &Outcome,
    server: &Server,
    exit: Option<ExitStatus>,
    checks: &[Check],
) {
    let (after, churn) = (&o.after, &o.churn);
    println!();
    println!(
        "soak: {} s, {} churn clients",
        args.run.as_secs(),
        args.churn_clients
    );
    print_machine_line(after);
    println!(
        "churn opened: {} of {} planned (park+vanish {}, half head {}, slowloris {}, \
         slow reader {}, idle {}, classic+vanish {}); connect errors {}{}; cap waits {}",
        churn.opened.iter().sum::<u64>(),
        args.churn_clients,
        churn.opened[0],
        churn.opened[1],
        churn.opened[2],
        churn.opened[3],
        churn.opened[4],
        churn.opened[5],
        churn.connect_errors.count,
        churn
            .connect_errors
            .kept
            .first()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        churn.cap_waits
    );
    if churn.idle_unexpected.count > 0 {
        println!(
            "idle clients sent bytes: {} (first: {:?})",
            churn.idle_unexpected.count,
            churn.idle_unexpected.kept.first()
        );
    }
    println!(
        "server: accepted {} connections, {} messages; drops {}; {} log lines at warn+; \
         after SIGTERM: {}",
        after.accepted,
        after.messages,
        after.drops(),
        server.log_count(),
        exit.map_or("did not exit, killed".to_owned(), |s| s.to_string())
    );
    for line in server.log_lines().iter().take(5) {
        println!("  server log: {line}");
    }
    println!();
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    println!("{:<width$}  {:<6}  detail", "check", "result");
    println!("{}", "-".repeat(width + 16));
    for c in checks {
        let verdict = if c.pass { "PASS" } else { "FAIL" };
        println!("{:<width$}  {verdict:<6}  {}", c.name, c.detail);
    }
    let failed = checks.iter().filter(|c| !c.pass).count();
    println!();
    if failed == 0 {
        println!("soak: all checks passed");
    } else {
        println!("soak: {failed} check(s) FAILED");
    }
}

/// A named thread (names show in a panic message).
fn spawn<T: Send + 'static>(
    name: String,
    body: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    thread::Builder::new().name(name).spawn(body)
}

/// Polls `/stats` until `done` holds or `limit` passes; the last stats that held, if any.
fn wait_for(addr: SocketAddr, limit: Duration, done: impl Fn(&Stats) -> bool) -> Option<Stats> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(stats) = fetch_stats(addr) {
            if done(&stats) {
                return Some(stats);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(SETTLE_POLL);
    }
}

/// Joins a thread, turning a panic into an empty report (the panic message is printed by
/// the panic hook, and the empty report fails the checks that depend on it).
fn join_thread<T: Default>(handle: JoinHandle<T>) -> T {
    let name = handle.thread().name().unwrap_or("?").to_owned();
    handle.join().unwrap_or_else(|_| {
        say!("thread {name} panicked");
        T::default()
    })
}

impl Default for ReaderReport {
    fn default() -> ReaderReport {
        // A panicked reader: one error, so it fails its check rather than passing empty.
        let mut report = ReaderReport::new("a reader that panicked".to_owned());
        report.errors.push("panicked".to_owned());
        report
    }
}

/// The machine, as the brief asks: cores, kernel, date, open-files limits.
fn print_machine() {
    let (soft, hard) = open_files_limit();
    say!(
        "machine: nproc {}, kernel {}, {}; open files (soak) soft {soft} hard {hard}",
        command_output("nproc", &[]),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| command_output("uname", &["-r"])),
        command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
    );
}

fn print_machine_line(after: &Stats) {
    let (soft, hard) = open_files_limit();
    println!(
        "machine: nproc {}, uname -r {}, date {}; open files: soak soft {soft} hard {hard}, \
         server {}",
        command_output("nproc", &[]),
        command_output("uname", &["-r"]),
        command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        after.open_files_limit
    );
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("({program}: {e})"))
}

/// This process's soft and hard `RLIMIT_NOFILE` (the server raises its own soft limit).
fn open_files_limit() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we pass and has no other effects.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return (0, 0);
    }
    (limit.rlim_cur, limit.rlim_max)
}
