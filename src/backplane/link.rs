//! One connection to Redis, non-blocking and registered in the server's own `mio::Poll`:
//! commands go out as RESP arrays, replies come back as RESP frames (encoded and decoded by
//! the `redis-protocol` crate; the buffering is ours, and so is finding where a frame ends,
//! within caps: see [`super::resp`]). Knows nothing about rooms.

use super::resp::{Caps, Scanner};
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

/// Bytes read from one connection in one loop pass, like a client's: a Redis (or whatever
/// answers in its place) that sends without pause cannot hold the loop or fill memory; the
/// rest waits in the socket for the next pass. Four chunks: a few thousand announcements.
pub const READ_BYTES_PER_PASS: usize = 4 * READ_CHUNK_BYTES;

/// One Redis connection.
pub struct Link {
    stream: Stream,
    /// Encoded commands not yet taken by the kernel.
    out: Vec<u8>,
    /// What was received and not yet taken as frames.
    inbox: Inbox,
}

impl Link {
    /// Starts connecting (non-blocking) and registers the socket for both directions,
    /// edge-triggered, once for its whole life, like a client's.
    pub fn connect(
        target: &Target,
        registry: &mio::Registry,
        token: mio::Token,
        caps: Caps,
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
            inbox: Inbox::new(caps),
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

    /// Reads what the socket holds, at most [`READ_BYTES_PER_PASS`]. Err when Redis closed
    /// the connection or it failed.
    pub fn read(&mut self) -> io::Result<()> {
        self.inbox.fill(&mut self.stream)
    }

    /// The next complete frame, if any (a partial one stays for later). When what was read
    /// ends in a partial frame and the socket may hold more, reads once more first. Err when
    /// the frame breaks [`Caps`] or is not RESP2.
    pub fn next_frame(&mut self) -> io::Result<Option<OwnedFrame>> {
        match self.inbox.next_frame()? {
            None if self.inbox.unread => {
                self.inbox.fill(&mut self.stream)?;
                self.inbox.next_frame()
            }
            found => Ok(found),
        }
    }

    /// Whether frames may be waiting, read or still in the socket.
    pub fn has_input(&self) -> bool {
        self.inbox.has_input()
    }

    /// Whether the socket may hold more than was read: the last read stopped at
    /// [`READ_BYTES_PER_PASS`], so no readiness edge will come for it, and the next pass
    /// must read on even when what was read ends in a partial frame.
    pub fn unread(&self) -> bool {
        self.inbox.unread
    }
}

/// Bytes received on one connection. Frames are taken from the front by moving an offset;
/// what is left is moved to the front once per read, not once per frame (moving the rest of
/// the buffer for each frame cost quadratic time: 100,000 queued announcements, 3.8 s).
/// Holds at most one frame's cap and two passes' reads: see [`Inbox::fill`].
struct Inbox {
    /// Received bytes; those before `start` are taken.
    buf: Vec<u8>,
    /// Where the first frame not taken yet begins.
    start: usize,
    /// How far into that frame the scan has come.
    scanner: Scanner,
    /// What one frame may hold.
    caps: Caps,
    /// What is pending was scanned and ends in a partial frame: only a read can help.
    partial: bool,
    /// The last read stopped at [`READ_BYTES_PER_PASS`], not at `WouldBlock`: the socket
    /// may hold more, and no new readiness edge will say so.
    unread: bool,
    /// Bytes moved to the front so far, so a test can show the work stays linear.
    moved_bytes: u64,
}

impl Inbox {
    fn new(caps: Caps) -> Inbox {
        Inbox {
            buf: Vec::new(),
            start: 0,
            scanner: Scanner::default(),
            caps,
            partial: false,
            unread: false,
            moved_bytes: 0,
        }
    }

    /// Bytes read and not taken.
    fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Compacts, then reads until `WouldBlock` or [`READ_BYTES_PER_PASS`]. Reads nothing
    /// while a pass's worth is still waiting to be taken (the server takes a bounded number
    /// of frames a pass, and a burst of small announcements is many frames) unless what
    /// waits is a partial frame: so the buffer holds at most the frame being scanned (its
    /// cap) and two passes' reads.
    fn fill(&mut self, from: &mut impl Read) -> io::Result<()> {
        if self.pending() >= READ_BYTES_PER_PASS && !self.partial {
            self.unread = true;
            return Ok(());
        }
        self.compact();
        let mut read = 0;
        self.unread = false;
        while read < READ_BYTES_PER_PASS {
            let at = self.buf.len();
            self.grow_for(at + READ_CHUNK_BYTES);
            self.buf.resize(at + READ_CHUNK_BYTES, 0);
            let result = from.read(&mut self.buf[at..]);
            self.buf.truncate(at + *result.as_ref().unwrap_or(&0));
            match result {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => read += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.unread = true;
        Ok(())
    }

    /// Room for `wanted` bytes: doubling, as a `Vec` would, but never past what one frame
    /// at its cap and a pass's reads can need, so a frame at the cap holds its cap once and
    /// not up to twice (32 MiB of capacity for an 18 MiB reply).
    fn grow_for(&mut self, wanted: usize) {
        if wanted <= self.buf.capacity() {
            return;
        }
        let most = self
            .caps
            .frame_bytes
            .saturating_add(READ_BYTES_PER_PASS + READ_CHUNK_BYTES)
            .max(wanted);
        let grown = self.buf.capacity().saturating_mul(2).clamp(wanted, most);
        self.buf.reserve_exact(grown - self.buf.len());
    }

    /// Moves what is not taken yet to the front (the scanner counts from the frame's start,
    /// so its place stays right), and lets a buffer that a large reply grew go.
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        self.moved_bytes += self.pending() as u64;
        self.buf.drain(..self.start);
        self.start = 0;
        if self.buf.is_empty() && self.buf.capacity() > 2 * READ_BYTES_PER_PASS {
            self.buf = Vec::new();
        }
    }

    /// The next complete frame already read, decoded; None while it is partial.
    fn next_frame(&mut self) -> io::Result<Option<OwnedFrame>> {
        let input = &self.buf[self.start..];
        let whole = match self.scanner.scan(input, &self.caps) {
            Ok(Some(whole)) => whole,
            Ok(None) => {
                self.partial = true;
                return Ok(None);
            }
            Err(breach) => return Err(io::Error::other(format!("bad reply: {breach}"))),
        };
        // The scanner found a whole frame within the caps; the decoder now sees exactly it.
        match decode(&input[..whole]) {
            Ok(Some((frame, used))) if used == whole => {
                self.start += whole;
                self.partial = false;
                Ok(Some(frame))
            }
            Ok(_) => Err(io::Error::other("bad reply: its frame's end is unclear")),
            Err(e) => Err(io::Error::other(format!("bad reply: {e}"))),
        }
    }

    /// Whether frames may be waiting, read or still in the socket.
    fn has_input(&self) -> bool {
        self.pending() > 0 || self.unread
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        frame_bytes: 1 << 20,
        depth: super::super::resp::DEPTH_MAX,
    };

    /// A socket's worth of bytes: given `piece` bytes at a time, then `WouldBlock`.
    struct Socket {
        data: Vec<u8>,
        at: usize,
        piece: usize,
    }

    impl Read for Socket {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == self.data.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.piece).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    /// A peer that never stops sending: `head` once, then `body` over and over.
    struct Endless {
        head: Vec<u8>,
        body: Vec<u8>,
        sent: usize,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let mut n = 0;
            while n < buf.len() {
                let (source, at) = if self.sent < self.head.len() {
                    (&self.head, self.sent)
                } else {
                    (&self.body, (self.sent - self.head.len()) % self.body.len())
                };
                let take = (source.len() - at).min(buf.len() - n);
                buf[n..n + take].copy_from_slice(&source[at..at + take]);
                n += take;
                self.sent += take;
            }
            Ok(n)
        }
    }

    fn announcement(i: usize) -> Vec<u8> {
        let text = format!("t someone-{i}");
        format!(
            "*4\r\n$8\r\npmessage\r\n$11\r\ncomet:0:r:*\r\n$11\r\ncomet:0:r:x\r\n${}\r\n{text}\r\n",
            text.len()
        )
        .into_bytes()
    }

    #[test]
    fn a_burst_of_frames_is_taken_with_linear_work() {
        // 50,000 announcements queued at once, taken 1,024 a pass as the server does.
        const FRAMES: usize = 50_000;
        let data: Vec<u8> = (0..FRAMES).flat_map(announcement).collect();
        let total = data.len() as u64;
        let mut socket = Socket {
            data,
            at: 0,
            piece: usize::MAX,
        };
        let mut inbox = Inbox::new(CAPS);
        let mut taken = 0;
        let mut passes = 0;
        while taken < FRAMES {
            passes += 1;
            assert!(passes < 10 * FRAMES, "no progress");
            inbox.fill(&mut socket).unwrap();
            for _ in 0..1024 {
                match inbox.next_frame().unwrap() {
                    Some(OwnedFrame::Array(parts)) => {
                        assert_eq!(parts.len(), 4);
                        taken += 1;
                    }
                    Some(other) => panic!("{other:?}"),
                    None => break,
                }
            }
        }
        assert!(!inbox.has_input());
        // Each byte is moved at most once by a compaction (what a read left partial, or a
        // pass's worth left waiting), never once per frame taken before it.
        assert!(
            inbox.moved_bytes <= total,
            "moved {} bytes to take {total}",
            inbox.moved_bytes
        );
    }

    #[test]
    fn a_frame_in_pieces_is_found_once_it_is_whole() {
        let data: Vec<u8> = (0..3).flat_map(announcement).collect();
        let mut socket = Socket {
            data,
            at: 0,
            piece: 7,
        };
        let mut inbox = Inbox::new(CAPS);
        let mut taken = 0;
        for _ in 0..1000 {
            // A socket that gives 7 bytes at a time and then WouldBlock, like a slow peer.
            let piece = Socket {
                data: socket.data[socket.at..].iter().copied().take(7).collect(),
                at: 0,
                piece: 7,
            };
            socket.at += piece.data.len();
            let mut piece = piece;
            inbox.fill(&mut piece).unwrap();
            while inbox.next_frame().unwrap().is_some() {
                taken += 1;
            }
        }
        assert_eq!(taken, 3);
    }

    #[test]
    fn reads_stop_at_the_per_pass_cap_and_memory_stays_bounded() {
        // A peer that floods small frames: each pass reads at most its cap, and reads
        // nothing more while a pass's worth waits to be taken.
        let mut peer = Endless {
            head: Vec::new(),
            body: announcement(7),
            sent: 0,
        };
        let mut inbox = Inbox::new(CAPS);
        inbox.fill(&mut peer).unwrap();
        assert_eq!(peer.sent, READ_BYTES_PER_PASS);
        assert!(inbox.unread && inbox.has_input());
        let mut most = 0;
        for _ in 0..200 {
            inbox.fill(&mut peer).unwrap();
            for _ in 0..100 {
                inbox.next_frame().unwrap().expect("a whole announcement");
            }
            most = most.max(inbox.buf.len());
        }
        assert!(most <= 2 * READ_BYTES_PER_PASS, "held {most} bytes");
    }

    #[test]
    fn a_peer_breaking_the_caps_is_refused_before_it_costs_memory() {
        for (head, says) in [
            (
                b"$9999999999\r\n".to_vec(),
                "bulk string of 9999999999 bytes",
            ),
            (b"*2147483647\r\n".to_vec(), "array of 2147483647"),
            (b"*1\r\n".repeat(30_000), "nested more than 8"),
            // Within the per-bulk cap, but more than one frame may hold altogether.
            (b"*4\r\n$600000\r\n".to_vec(), "longer than"),
        ] {
            let mut peer = Endless {
                head,
                body: b"x".repeat(4096),
                sent: 0,
            };
            let mut inbox = Inbox::new(CAPS);
            let mut why = None;
            for _ in 0..100 {
                inbox.fill(&mut peer).unwrap();
                match inbox.next_frame() {
                    Ok(Some(frame)) => panic!("{frame:?}"),
                    Ok(None) => {}
                    Err(e) => {
                        why = Some(e.to_string());
                        break;
                    }
                }
            }
            let why = why.unwrap_or_else(|| panic!("{says}: never refused"));
            assert!(why.contains(says), "{why}");
            assert!(
                inbox.buf.len() <= CAPS.frame_bytes + READ_BYTES_PER_PASS,
                "held {}",
                inbox.buf.len()
            );
        }
    }
}
