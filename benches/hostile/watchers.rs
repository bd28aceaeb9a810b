//! The audience an attack is aimed through: event streams on the attacked room that read
//! everything as fast as they can, so every join, leave and message the attack causes is
//! a real write the server must make to each of them. One thread, one `mio::Poll`,
//! edge-triggered reads until `WouldBlock`. A stream the server closes is counted and
//! opened again after the `retry:` delay the server advertises, as an `EventSource` would.

use crate::http::CONNECT_TIMEOUT;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// An `EventSource` comes back this long after its stream ends (the server's `retry:`).
const RECONNECT_AFTER: Duration = Duration::from_millis(2000);
/// How long one poll waits, so the stop flag and reconnects are looked at this often.
const POLL_TICK: Duration = Duration::from_millis(50);
/// One read's worth.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// What the watchers have done so far (counters only, so reading them never stalls them).
#[derive(Default)]
pub struct Counts {
    /// Bytes read from every stream.
    pub bytes: AtomicU64,
    /// Blank lines read (`\n\n`): one per SSE frame.
    pub frames: AtomicU64,
    /// `join` events read.
    pub joins: AtomicU64,
    /// `leave` events read.
    pub leaves: AtomicU64,
    /// Streams the server closed (or reset).
    pub closed_by_server: AtomicU64,
    /// Streams opened again after that.
    pub reopened: AtomicU64,
    /// Opens that failed.
    pub connect_errors: AtomicU64,
}

/// The running watchers.
pub struct Watchers {
    /// Set to stop the thread, which then drops every stream.
    stop: Arc<AtomicBool>,
    /// Shared with the thread.
    pub counts: Arc<Counts>,
    thread: Option<JoinHandle<()>>,
}

impl Watchers {
    /// Opens `n` streams on `room` at `addr` (on the watchers' thread) and keeps reading
    /// them. Returns at once; wait on `/stats` for them to be open.
    pub fn start(addr: SocketAddr, room: &str, n: usize) -> io::Result<Watchers> {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let request = format!("GET /rooms/{room}/events HTTP/1.1\r\nHost: hostile\r\n\r\n");
        let (stop2, counts2) = (Arc::clone(&stop), Arc::clone(&counts));
        let thread = thread::Builder::new()
            .name("watchers".into())
            .spawn(move || {
                let _ = crate::host::lower_priority();
                if let Err(e) = watch(addr, request.as_bytes(), n, &stop2, &counts2) {
                    say!("watchers stopped: {e}");
                }
            })?;
        Ok(Watchers {
            stop,
            counts,
            thread: Some(thread),
        })
    }

    /// A one-line account of what they read.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        format!(
            "{:.1} MiB, {} frames read ({} joins, {} leaves); {} closed by the server, \
             {} reopened, {} failed opens",
            c.bytes.load(Relaxed) as f64 / (1024.0 * 1024.0),
            c.frames.load(Relaxed),
            c.joins.load(Relaxed),
            c.leaves.load(Relaxed),
            c.closed_by_server.load(Relaxed),
            c.reopened.load(Relaxed),
            c.connect_errors.load(Relaxed)
        )
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One stream.
struct Watcher {
    /// `None` while waiting to reopen.
    stream: Option<TcpStream>,
    /// When to reopen a closed stream.
    reopen_at: Option<Instant>,
    /// Whether the last byte read was `\n`, to count frames across reads.
    after_newline: bool,
    /// The last bytes read, so an event name split across two reads is still counted.
    tail: Vec<u8>,
}

/// The event lines counted, each with its counter.
const JOIN: &[u8] = b"event: join\n";
const LEAVE: &[u8] = b"event: leave\n";

/// The watchers' thread.
fn watch(
    addr: SocketAddr,
    request: &[u8],
    n: usize,
    stop: &AtomicBool,
    counts: &Counts,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut watchers: Vec<Watcher> = (0..n)
        .map(|_| Watcher {
            stream: None,
            reopen_at: Some(Instant::now()),
            after_newline: false,
            tail: Vec::new(),
        })
        .collect();
    while !stop.load(Relaxed) {
        let now = Instant::now();
        for (i, w) in watchers.iter_mut().enumerate() {
            if w.reopen_at.is_some_and(|at| at <= now) {
                w.reopen_at = None;
                match open(addr, request, &poll, Token(i)) {
                    Ok(stream) => w.stream = Some(stream),
                    Err(_) => {
                        counts.connect_errors.fetch_add(1, Relaxed);
                        w.reopen_at = Some(now + RECONNECT_AFTER);
                    }
                }
            }
        }
        poll.poll(&mut events, Some(POLL_TICK))?;
        for event in events.iter() {
            let Some(w) = watchers.get_mut(event.token().0) else {
                continue;
            };
            if w.stream.is_some() && !drain(w, &mut chunk, counts) {
                // The server closed it: an EventSource comes back after `retry:`.
                w.stream = None;
                w.reopen_at = Some(Instant::now() + RECONNECT_AFTER);
                counts.closed_by_server.fetch_add(1, Relaxed);
                counts.reopened.fetch_add(1, Relaxed);
            }
        }
    }
    Ok(())
}

/// Opens one stream: connect (blocking, bounded), send the request, hand it to the poll.
fn open(addr: SocketAddr, request: &[u8], poll: &Poll, token: Token) -> io::Result<TcpStream> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_write_timeout(Some(CONNECT_TIMEOUT))?;
    stream.write_all(request)?;
    stream.set_nonblocking(true)?;
    let mut stream = TcpStream::from_std(stream);
    poll.registry()
        .register(&mut stream, token, Interest::READABLE)?;
    Ok(stream)
}

/// Reads a stream until `WouldBlock`, counting; false once it is closed.
fn drain(w: &mut Watcher, chunk: &mut [u8], counts: &Counts) -> bool {
    let Some(stream) = w.stream.as_mut() else {
        return false;
    };
    loop {
        match stream.read(chunk) {
            Ok(0) => return false,
            Ok(n) => {
                counts.bytes.fetch_add(n as u64, Relaxed);
                let mut frames = 0;
                for &b in &chunk[..n] {
                    if b == b'\n' {
                        frames += u64::from(w.after_newline);
                        w.after_newline = true;
                    } else {
                        w.after_newline = false;
                    }
                }
                counts.frames.fetch_add(frames, Relaxed);
                // Searched in the end of the last read plus this one, counting only lines
                // that end in this one, so a line split across reads counts once.
                let old = w.tail.len();
                w.tail.extend_from_slice(&chunk[..n]);
                counts
                    .joins
                    .fetch_add(ending_after(&w.tail, JOIN, old), Relaxed);
                counts
                    .leaves
                    .fetch_add(ending_after(&w.tail, LEAVE, old), Relaxed);
                let keep = LEAVE.len().max(JOIN.len()) - 1;
                let cut = w.tail.len().saturating_sub(keep);
                w.tail.drain(..cut);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// How many times `needle` occurs in `haystack` ending past its first `boundary` bytes.
fn ending_after(haystack: &[u8], needle: &[u8], boundary: usize) -> u64 {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(at, w)| at + needle.len() > boundary && *w == needle)
        .count() as u64
}
