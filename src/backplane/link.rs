//! One connection to Redis, non-blocking and registered in the server's own `mio::Poll`:
//! commands go out as RESP arrays, replies come back as RESP frames (encoded and decoded by
//! the `redis-protocol` crate; the buffering is ours). Knows nothing about rooms.

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, OwnedFrame};
use std::io::{self, Read, Write};

use super::url::Target;

/// A TCP or Unix-socket stream.
pub enum Stream {
    /// `redis://`.
    Tcp(mio::net::TcpStream),
    /// `unix://`.
    Unix(mio::net::UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Bytes read from Redis per read call.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// One Redis connection.
pub struct Link {
    stream: Stream,
    /// Encoded commands not yet taken by the kernel.
    out: Vec<u8>,
    /// Bytes received and not yet decoded into frames (a reply may arrive in pieces).
    input: Vec<u8>,
}

impl Link {
    /// Starts connecting (non-blocking) and registers the socket for both directions,
    /// edge-triggered, once for its whole life, like a client's.
    pub fn connect(
        target: &Target,
        registry: &mio::Registry,
        token: mio::Token,
    ) -> io::Result<Link> {
        let mut stream = match target {
            Target::Tcp(addr) => {
                let stream = mio::net::TcpStream::connect(*addr)?;
                let _ = stream.set_nodelay(true);
                Stream::Tcp(stream)
            }
            Target::Unix(path) => Stream::Unix(mio::net::UnixStream::connect(path)?),
        };
        let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
        match &mut stream {
            Stream::Tcp(s) => registry.register(s, token, interest)?,
            Stream::Unix(s) => registry.register(s, token, interest)?,
        }
        Ok(Link {
            stream,
            out: Vec::new(),
            input: Vec::new(),
        })
    }

    /// Queues one command (its arguments as bulk strings) and writes what the socket takes.
    pub fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        let parts: Vec<BorrowedFrame> = args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
        let frame = BorrowedFrame::Array(&parts);
        let at = self.out.len();
        self.out.resize(at + frame.encode_len(false), 0);
        encode_borrowed(&mut self.out[at..], &frame, false)
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.flush()
    }

    /// Writes queued commands until they are all out or the socket is full (then the
    /// WRITABLE edge brings us back). A connection still being made is not an error.
    pub fn flush(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads everything the socket holds (until `WouldBlock`). Err when Redis closed the
    /// connection or it failed.
    pub fn read(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next complete frame already read, if any (a partial one stays for later).
    pub fn next_frame(&mut self) -> io::Result<Option<OwnedFrame>> {
        match decode(&self.input) {
            Ok(Some((frame, used))) => {
                self.input.drain(..used);
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(io::Error::other(format!("bad reply from Redis: {e}"))),
        }
    }

    /// Whether frames may be waiting in what was read.
    pub fn has_input(&self) -> bool {
        !self.input.is_empty()
    }
}
