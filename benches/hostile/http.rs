//! HTTP as every client of this bench speaks it: the requests (built in one place) and
//! `/stats`, over the keep-alive connection the benches share
//! (`benches/shared/http_conn.rs`).

pub use crate::http_conn::{frame, Conn, Frame, CONNECT_TIMEOUT};
use serde_json::Value;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Longest a one-off request (`/stats`, presence of the attacked room, a fill post) waits
/// for its answer. Generous on purpose: the point of the bench is that the server's loop
/// may freeze for many seconds, and such a request should then report how long, not fail.
pub const ONE_OFF_TIMEOUT: Duration = Duration::from_secs(90);

/// `GET <path>` on a keep-alive connection.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: hostile\r\n\r\n").into_bytes()
}

/// `POST /rooms/<room>/messages` with a form body; `text` and `from` must need no
/// %-encoding (letters, digits, `-`, `_`). No Content-Type: the server reads a form then,
/// and the pipelining flood wants each request small.
pub fn post(room: &str, from: &str, text: &str) -> Vec<u8> {
    let body = format!("from={from}&text={text}");
    format!(
        "POST /rooms/{room}/messages HTTP/1.1\r\nHost: hostile\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `GET <path>` on a fresh connection, answer as JSON: for one-off questions between
/// windows (`/stats`, who is present in the attacked room).
pub fn get_json(addr: SocketAddr, path: &str) -> io::Result<(u16, Value)> {
    let mut conn = Conn::connect(addr, ONE_OFF_TIMEOUT)?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: hostile\r\nConnection: close\r\n\r\n").into_bytes();
    let (status, body) = conn.request(&request)?;
    let json = serde_json::from_slice(&body).map_err(io::Error::other)?;
    Ok((status, json))
}

/// The server's `/stats`.
pub fn stats(addr: SocketAddr) -> io::Result<Value> {
    match get_json(addr, "/stats")? {
        (200, json) => Ok(json),
        (status, _) => Err(io::Error::other(format!("/stats answered {status}"))),
    }
}

/// One counter of a `/stats` answer (`drops.slow` reaches into `drops`); 0 if absent, so
/// a server with other counters still runs the bench.
pub fn counter(stats: &Value, name: &str) -> u64 {
    name.split('.')
        .try_fold(stats, |v, part| v.get(part))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}
