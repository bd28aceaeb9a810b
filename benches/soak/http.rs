//! HTTP as the well-behaved clients speak it: one keep-alive connection carrying one
//! request at a time, `Content-Length` framing through httparse, message ids and form
//! bodies. Blocking std sockets with timeouts.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Connect timeout for every client: loopback connects in microseconds unless the accept
/// queue is full.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest a well-behaved client waits on a read: polls are answered within the 2 s poll
/// timeout and streams get a heartbeat every second, so this means the server is stuck.
pub const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One keep-alive connection carrying one request at a time.
pub struct HttpConn {
    pub stream: TcpStream,
    /// Bytes read past the last complete response.
    pub buf: Vec<u8>,
}

impl HttpConn {
    pub fn connect(addr: SocketAddr) -> io::Result<HttpConn> {
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
    pub fn request(&mut self, request: &[u8]) -> io::Result<(u16, Vec<u8>)> {
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
    pub fn fill(&mut self) -> io::Result<()> {
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
