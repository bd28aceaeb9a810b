//! Churn: thousands of short-lived clients that misbehave and vanish (park and vanish,
//! half a request head, slowloris, slow readers, idle, classic `GET /chat` and vanish),
//! stepped by a few threads on non-blocking sockets.

use crate::http::CONNECT_TIMEOUT;
use crate::state::{Errors, Shared};
use crate::ROOM;
use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Threads stepping churn sockets, and how often each steps its sockets.
pub const CHURN_DRIVERS: usize = 4;
const CHURN_TICK: Duration = Duration::from_millis(20);

/// Churn sockets open at once, across drivers: well under the 20,000 open files the
/// machine allows, and the server's descriptors are on the same loopback.
pub const CHURN_OPEN_MAX: usize = 2000;

/// Churn binds to 127.0.0.2 … 127.0.0.(1 + this): each source address has its own
/// ephemeral ports, so thousands of short connections never exhaust one address's range.
const CHURN_SOURCE_ADDRS: usize = 32;

/// A slowloris sends one header byte this often.
const SLOWLORIS_BYTE_EVERY: Duration = Duration::from_millis(500);

/// A slowloris the server has not hung up on by then is given up (and counted: the request
/// timeout is 2 s, so this means the defence failed).
pub const SLOWLORIS_GIVE_UP: Duration = Duration::from_secs(10);

/// Receive buffer of a slow reader (the kernel doubles it): small, so the server's writes
/// block quickly and its write timeout has something to do.
const SLOW_READER_RCVBUF_BYTES: usize = 4096;

/// Bytes of a churn client's answer kept, to tell a 408 from anything else.
const CHURN_KEEP_BYTES: usize = 512;

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
pub struct ChurnReport {
    pub opened: [u64; KINDS.len()],
    pub connect_errors: Errors,
    /// Slowloris clients the server hung up on with a 408 first, without one, or not at all.
    pub slowloris_408: u64,
    pub slowloris_no_408: Errors,
    pub slowloris_gave_up: u64,
    /// Idle clients the server closed, and those still open when we dropped them.
    pub idle_reaped: u64,
    pub idle_not_reaped: u64,
    /// Idle clients that were sent something: the server should say nothing to them.
    pub idle_unexpected: Errors,
    /// Ticks in which a start waited because [`CHURN_OPEN_MAX`] sockets were open.
    pub cap_waits: u64,
}

impl ChurnReport {
    pub fn merge(&mut self, other: ChurnReport) {
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
    pub fn next(&mut self) -> u64 {
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
pub fn churn_driver(
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
