//! One keep-alive HTTP/1.1 connection over a blocking std socket, as the well-behaved
//! clients of the hostile and soak benchmarks speak it: a request and its answer
//! (`Content-Length` framing through httparse), a pipelined run of answers, or the head of
//! an event stream and the frames after it. The load bench's generator has its own
//! allocation-free framer (`benches/load/wire.rs`), built for a hundred thousand sockets.

#![allow(dead_code)] // each bench uses a subset

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Connect timeout: loopback connects in microseconds unless the accept queue is full,
/// and a server whose loop is frozen still completes the handshake in the kernel.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer anyone here reads whole: the presence list of a flooded room is about
/// 10 bytes a name, and nothing else comes near it.
const ANSWER_CAP_BYTES: usize = 16 * 1024 * 1024;

/// Where the response at the start of a buffer stands.
pub enum Frame {
    /// Not all of it yet (normal between reads).
    Partial,
    /// A whole response: its status, and how many bytes it takes (head and body).
    Complete {
        /// The status code.
        status: u16,
        /// Head plus body, in bytes.
        len: usize,
    },
}

/// Frames the response at the start of `buf`.
pub fn frame(buf: &[u8]) -> io::Result<Frame> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf).map_err(io::Error::other)? {
        // Normal flow: the rest of the head has not arrived yet.
        httparse::Status::Partial => Ok(Frame::Partial),
        httparse::Status::Complete(head_len) => {
            let length = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .ok_or_else(|| io::Error::other("a response without Content-Length"))?;
            if length > ANSWER_CAP_BYTES {
                return Err(io::Error::other(format!("a {length}-byte answer")));
            }
            let status = response.code.unwrap_or(0);
            if buf.len() < head_len + length {
                return Ok(Frame::Partial);
            }
            Ok(Frame::Complete {
                status,
                len: head_len + length,
            })
        }
    }
}

/// A keep-alive connection carrying one request at a time (or reading a pipelined run of
/// answers, one [`read_answer`](Conn::read_answer) each).
pub struct Conn {
    /// Blocking, with the read timeout given at connect.
    pub stream: TcpStream,
    /// Bytes read past the last whole answer (an event stream's reader takes its frames
    /// from here).
    pub buf: Vec<u8>,
}

impl Conn {
    /// Connects to `addr` within [`CONNECT_TIMEOUT`]; reads and writes give up after
    /// `timeout`.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        Conn::connect_within(addr, CONNECT_TIMEOUT, timeout)
    }

    /// Connects to `addr` within `connect_timeout`; reads and writes give up after
    /// `timeout`.
    pub fn connect_within(
        addr: SocketAddr,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, connect_timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends `request` and reads its answer: status and body.
    pub fn request(&mut self, request: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        self.stream.write_all(request)?;
        self.read_answer()
    }

    /// Reads one whole answer: status and body.
    pub fn read_answer(&mut self) -> io::Result<(u16, Vec<u8>)> {
        loop {
            if let Frame::Complete { status, len } = frame(&self.buf)? {
                let answer: Vec<u8> = self.buf.drain(..len).collect();
                let body = answer
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(Vec::new(), |end| answer[end + 4..].to_vec());
                return Ok((status, body));
            }
            self.fill()?;
        }
    }

    /// Reads the head of an event stream, which must be a 200 `text/event-stream`; what
    /// follows it stays in [`take_buffered`](Conn::take_buffered).
    pub fn read_stream_head(&mut self) -> io::Result<()> {
        loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..at + 4).collect();
                let head = String::from_utf8_lossy(&head);
                if head.starts_with("HTTP/1.1 200")
                    && head.to_ascii_lowercase().contains("text/event-stream")
                {
                    return Ok(());
                }
                let first = head.lines().next().unwrap_or_default().to_owned();
                return Err(io::Error::other(format!("not an event stream: {first}")));
            }
            self.fill()?;
        }
    }

    /// Bytes read but not yet consumed.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Reads what the socket has into the buffer; the end of the stream is an error, since
    /// every caller is waiting for more.
    pub fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 64 * 1024];
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
