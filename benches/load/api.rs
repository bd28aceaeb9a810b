//! The server's own API as the benchmark uses it: `/stats`, to know when every poll is
//! parked instead of sleeping and hoping, and `POST /chat`, to start a broadcast. Plain
//! blocking std sockets with timeouts: each carries one request at a time, from 127.0.0.1,
//! outside the measured client pool.

use crate::wire::{self, Frame};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest wait for one answer; /stats answers in microseconds, so this means trouble.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A keep-alive connection unused for longer than this is replaced before its next
/// request: servers close idle keep-alive connections (comet-chat after `--idle-timeout`),
/// and finding out by a failed request in the middle of a measured round would cost the
/// round. Well under any sane idle timeout, and reconnecting is cheap.
const MAX_IDLE: Duration = Duration::from_secs(1);

/// Pause between two /stats requests while waiting for a condition: short enough to time
/// a re-park cycle to a fraction of a millisecond, long enough not to load the server.
const STATS_POLL_INTERVAL: Duration = Duration::from_micros(250);

/// The counters of one `/stats` answer that the benchmark uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Connections the server holds right now (the benchmark's own two included).
    pub connections: u64,
    /// Connections accepted since the server started.
    pub accepted: u64,
    /// Polls parked right now.
    pub pending_polls: u64,
    /// Poll answers that timed out, since start.
    pub timeouts: u64,
    /// Event streams open right now (SSE).
    pub streams: u64,
    /// WebSockets open right now (`transports.ws.open`; `None` from a server without
    /// the transport).
    pub websockets: Option<u64>,
    /// The server's soft open-files limit.
    pub open_files_limit: u64,
    /// Which worker answered (`--workers`); `None` from a lone process.
    pub worker: Option<u64>,
}

/// One keep-alive HTTP connection to the server.
pub struct HttpConn {
    /// Where to reconnect.
    addr: SocketAddr,
    /// Blocking, with read and write timeouts of [`ANSWER_TIMEOUT`].
    stream: TcpStream,
    /// Bytes of the answer read so far.
    input: Vec<u8>,
    /// When the last answer was read (or the connection made).
    last_used: Instant,
    /// Replace the connection after this long unused ([`MAX_IDLE`]); `None` keeps it for
    /// good, for a connection that must stay with the worker that accepted it.
    max_idle: Option<Duration>,
}

impl HttpConn {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> io::Result<HttpConn> {
        Ok(HttpConn {
            addr,
            stream: open(addr)?,
            input: Vec::new(),
            last_used: Instant::now(),
            max_idle: Some(MAX_IDLE),
        })
    }

    /// Connects to `addr` and never replaces the connection: with `--workers` a new one
    /// may land on another worker, and a worker's own counters are what this one is for
    /// (the server must then keep idle connections: `--idle-timeout` longer than the run).
    pub fn connect_kept(addr: SocketAddr) -> io::Result<HttpConn> {
        let mut conn = HttpConn::connect(addr)?;
        conn.max_idle = None;
        Ok(conn)
    }

    /// Waits up to `wait` for each answer from now on, instead of [`ANSWER_TIMEOUT`]: for a
    /// server that is busy on purpose (every client's poll timing out at once, at the top
    /// of the million ladder), where a slow `/stats` is what is measured, not trouble.
    pub fn wait_answers_up_to(&mut self, wait: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(wait))?;
        self.stream.set_write_timeout(Some(wait))
    }

    /// Replaces the connection if it sat idle too long (see [`MAX_IDLE`]), and has the new
    /// one answer `/stats` once so the server has surely accepted it before it is used for
    /// anything timed.
    pub fn refresh(&mut self) -> io::Result<()> {
        match self.max_idle {
            Some(max_idle) if self.last_used.elapsed() > max_idle => {}
            _ => return Ok(()),
        }
        self.stream = open(self.addr)?;
        self.input.clear();
        self.last_used = Instant::now();
        self.stats().map(|_| ())
    }

    /// Sends a whole request (after [`refresh`](HttpConn::refresh)).
    pub fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.refresh()?;
        self.stream.write_all(request)
    }

    /// Reads one whole answer and returns its status and body.
    pub fn read_answer(&mut self) -> io::Result<(u16, Vec<u8>)> {
        let mut chunk = [0u8; 4096];
        loop {
            match wire::frame(&self.input) {
                Frame::Complete { len, status } => {
                    let answer: Vec<u8> = self.input.drain(..len).collect();
                    self.last_used = Instant::now();
                    return Ok((status, wire::body(&answer).to_vec()));
                }
                Frame::Invalid => return Err(io::Error::other("unframeable answer")),
                // Normal flow: the rest has not arrived yet.
                Frame::Partial => {}
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Fetches `/stats`.
    pub fn stats(&mut self) -> io::Result<Stats> {
        self.send(wire::GET_STATS)?;
        let (status, body) = self.read_answer()?;
        if status != 200 {
            return Err(io::Error::other(format!("/stats answered {status}")));
        }
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| io::Error::other(format!("/stats is not JSON: {e}")))?;
        let field = |name: &str| -> io::Result<u64> {
            json.get(name)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| io::Error::other(format!("/stats has no {name}")))
        };
        Ok(Stats {
            connections: field("connections")?,
            accepted: field("accepted")?,
            pending_polls: field("pending_polls")?,
            timeouts: field("timeouts")?,
            streams: field("streams")?,
            websockets: json
                .pointer("/transports/ws/open")
                .and_then(serde_json::Value::as_u64),
            open_files_limit: field("open_files_limit")?,
            worker: json.get("worker").and_then(serde_json::Value::as_u64),
        })
    }

    /// The newest position of `room`: what a stream client resumes after so that nothing
    /// is replayed to it. Asked with a position of another epoch, which the server
    /// answers at once (with a gap) whatever the room holds.
    pub fn head(&mut self, room: &str) -> io::Result<String> {
        let request =
            format!("GET /rooms/{room}/messages?since=00000000-0 HTTP/1.1\r\nHost: bench\r\n\r\n");
        self.send(request.as_bytes())?;
        let (status, body) = self.read_answer()?;
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| io::Error::other(format!("room answer is not JSON: {e}")))?;
        match (status, json.get("next").and_then(serde_json::Value::as_str)) {
            (200, Some(next)) => Ok(next.to_owned()),
            _ => Err(io::Error::other(format!(
                "GET /rooms/{room}/messages answered {status}: {}",
                String::from_utf8_lossy(&body)
            ))),
        }
    }

    /// Polls `/stats` until `done` holds or `deadline` passes. Returns the last counters,
    /// when they were read, and whether `done` held.
    pub fn wait_until(
        &mut self,
        deadline: Instant,
        done: impl Fn(&Stats) -> bool,
    ) -> io::Result<(Stats, Instant, bool)> {
        loop {
            let stats = self.stats()?;
            let now = Instant::now();
            if done(&stats) {
                return Ok((stats, now, true));
            }
            if now >= deadline {
                return Ok((stats, now, false));
            }
            std::thread::sleep(STATS_POLL_INTERVAL);
        }
    }
}

fn open(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, ANSWER_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    Ok(stream)
}
