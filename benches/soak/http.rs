//! HTTP as the well-behaved clients speak it: the benches' shared keep-alive connection
//! (`benches/shared/http_conn.rs`) with this bench's timeouts, message ids and form
//! bodies.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Connect timeout for every client: loopback connects in microseconds unless the accept
/// queue is full.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest a well-behaved client waits on a read: polls are answered within the 2 s poll
/// timeout and streams get a heartbeat every second, so this means the server is stuck.
pub const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One keep-alive connection carrying one request at a time: the benches' shared one,
/// with this bench's timeouts.
pub type HttpConn = crate::http_conn::Conn;

/// A well-behaved client's connection.
pub fn connect(addr: SocketAddr) -> io::Result<HttpConn> {
    HttpConn::connect_within(addr, CONNECT_TIMEOUT, CLIENT_READ_TIMEOUT)
}

/// `<epoch>-<seq>` split, for ordering by `seq` and checking that the epoch never changes.
pub fn parse_id(id: &str) -> Option<(String, u64)> {
    let (epoch, seq) = id.split_once('-')?;
    Some((epoch.to_owned(), seq.parse().ok()?))
}

/// `application/x-www-form-urlencoded`, every byte but the unreserved ones as `%XX`.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
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
