//! One attacker connection that pipelines: every request written at once (the kernel takes
//! what fits, the rest follows as the server reads), every answer read as fast as it
//! comes, statuses counted. Used by the presence flood (phase a), the pipelining flood
//! (phase b) and the room-cap fillers (phase e, each from a source address of its own: the
//! server counts rooms per client address). Two threads — a writer and a reader on the
//! same socket — both at a lower priority than the probe, and both bounded by a deadline.
//! Phase f's polls connect through [`connect_from`] too, spread over source addresses.

use crate::host;
use crate::http::{self, Frame, CONNECT_TIMEOUT};
use socket2::{Domain, Socket, Type};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Socket timeouts of the attacker's reads and writes: how often each thread looks at the
/// deadline while the server is not taking or giving anything.
const STEP: Duration = Duration::from_millis(200);

/// What one pipelined run got.
#[derive(Debug, Default)]
pub struct Pipelined {
    /// Requests in the run.
    pub requests: usize,
    /// Bytes in the run, and how many the server took.
    pub bytes: usize,
    /// Bytes the server took before the run ended.
    pub bytes_sent: usize,
    /// Answers by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Answers read.
    pub answered: usize,
    /// When the first byte was written.
    pub started: Option<Instant>,
    /// When the last answer was read (or the run gave up).
    pub ended: Option<Instant>,
    /// Why it stopped early, if it did: the server closed, or the deadline passed.
    pub cut_short: Option<String>,
}

impl Pipelined {
    /// Answers with `status`.
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// Answers with any status not in `known`.
    pub fn others(&self, known: &[u16]) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| !known.contains(s))
            .map(|(_, n)| n)
            .sum()
    }

    /// `201 x 19,000, 429 x 1,000` style.
    pub fn statuses_text(&self) -> String {
        if self.statuses.is_empty() {
            return "none".into();
        }
        let parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s} x {n}"))
            .collect();
        parts.join(", ")
    }

    /// First byte written → last answer read.
    pub fn seconds(&self) -> f64 {
        match (self.started, self.ended) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// Connects to `addr`, writes `requests` (`count` of them, already concatenated) and reads
/// `count` answers, or stops at `deadline` or when the server closes.
pub fn run(
    addr: SocketAddr,
    requests: Vec<u8>,
    count: usize,
    deadline: Instant,
) -> io::Result<Pipelined> {
    run_from(addr, None, requests, count, deadline)
}

/// [`run`], from `source` if given (bound before connecting, so the server sees that
/// address; any 127.x.y.z reaches a loopback listener on Linux), else from whatever
/// address the kernel picks.
pub fn run_from(
    addr: SocketAddr,
    source: Option<IpAddr>,
    requests: Vec<u8>,
    count: usize,
    deadline: Instant,
) -> io::Result<Pipelined> {
    let stream = match source {
        Some(source) => connect_from(source, addr)?,
        None => TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?,
    };
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(STEP))?;
    stream.set_read_timeout(Some(STEP))?;
    let mut writer_stream = stream.try_clone()?;
    let bytes = requests.len();
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let (sent2, stop2) = (Arc::clone(&sent), Arc::clone(&stop));
    let writer = thread::Builder::new()
        .name("attack-writer".into())
        .spawn(move || {
            let _ = host::lower_priority();
            let mut at = 0;
            while at < requests.len() && !stop2.load(Relaxed) && Instant::now() < deadline {
                match writer_stream.write(&requests[at..]) {
                    Ok(0) => break,
                    Ok(n) => {
                        at += n;
                        sent2.store(at, Relaxed);
                    }
                    Err(e) if transient(&e) => {}
                    Err(_) => break, // the server closed; the reader says why
                }
            }
        })?;
    let reader = thread::Builder::new()
        .name("attack-reader".into())
        .spawn(move || {
            let _ = host::lower_priority();
            read_answers(stream, count, deadline)
        })?;
    let mut result = reader
        .join()
        .map_err(|_| io::Error::other("the attack's reader panicked"))?;
    stop.store(true, Relaxed);
    let _ = writer.join();
    result.requests = count;
    result.bytes = bytes;
    result.bytes_sent = sent.load(Relaxed);
    result.started = Some(started);
    Ok(result)
}

/// A connection to `addr` from `source` (port chosen by the kernel), within
/// [`CONNECT_TIMEOUT`].
pub fn connect_from(source: IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&addr.into(), CONNECT_TIMEOUT)?;
    Ok(socket.into())
}

/// Reads and frames answers until `count`, the deadline, or the end of the connection.
fn read_answers(mut stream: TcpStream, count: usize, deadline: Instant) -> Pipelined {
    let mut result = Pipelined::default();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    while result.answered < count {
        // Every whole answer in the buffer, then drop them at once (not one drain each:
        // 60,000 answers would make that quadratic).
        let mut at = 0;
        loop {
            match http::frame(&buf[at..]) {
                Ok(Frame::Complete { status, len }) => {
                    *result.statuses.entry(status).or_default() += 1;
                    result.answered += 1;
                    at += len;
                }
                Ok(Frame::Partial) => break,
                Err(e) => {
                    result.cut_short = Some(format!("unframeable answer: {e}"));
                    result.ended = Some(Instant::now());
                    return result;
                }
            }
        }
        buf.drain(..at);
        if result.answered >= count {
            break;
        }
        if Instant::now() >= deadline {
            result.cut_short = Some(format!(
                "out of time with {} of {count} answered",
                result.answered
            ));
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                result.cut_short = Some(format!(
                    "the server closed the connection after {} answers",
                    result.answered
                ));
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if transient(&e) => {}
            Err(e) => {
                result.cut_short = Some(format!(
                    "connection failed after {} answers: {e}",
                    result.answered
                ));
                break;
            }
        }
    }
    result.ended = Some(Instant::now());
    let _ = stream.shutdown(Shutdown::Both);
    result
}

/// A read or write that found nothing to do yet (the socket's timeout, or a signal): try
/// again, the attack is not over.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// `n` loopback source addresses, 127.0.0.`first` onwards, one each: spread over many
/// addresses, client sockets never run out of ephemeral ports, and each address is a
/// client of its own to the server's per-address limits.
pub fn loopback_sources(first: u8, n: usize) -> Result<Vec<IpAddr>, String> {
    (0..n)
        .map(|i| {
            u8::try_from(i)
                .ok()
                .and_then(|i| first.checked_add(i))
                .filter(|&last| last < 255)
                .map(|last| IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, last)))
                .ok_or_else(|| format!("{n} source addresses do not fit in 127.0.0.{first}-254"))
        })
        .collect()
}
