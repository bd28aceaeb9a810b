//! The server's own counters, `GET /stats`, as the soak reads them: for the baseline, the
//! progress lines, and the wait until everything is back.

use crate::http::{CLIENT_READ_TIMEOUT, CONNECT_TIMEOUT};
use serde_json::Value;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Pause between two `/stats` while waiting for the baseline.
const SETTLE_POLL: Duration = Duration::from_millis(250);

/// The counters of one `/stats` answer the soak looks at.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub connections: u64,
    pub accepted: u64,
    pub pending_polls: u64,
    pub streams: u64,
    pub messages: u64,
    pub rss_bytes: u64,
    pub open_files_limit: u64,
    pub drop_slow: u64,
    pub drop_idle: u64,
    pub drop_request_timeout: u64,
    pub drop_over_cap: u64,
    pub drop_emfile: u64,
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

    pub fn drops(&self) -> String {
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
pub fn fetch_stats(addr: SocketAddr) -> io::Result<Stats> {
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

/// Polls `/stats` until `done` holds or `limit` passes; the last stats that held, if any.
pub fn wait_for(addr: SocketAddr, limit: Duration, done: impl Fn(&Stats) -> bool) -> Option<Stats> {
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
