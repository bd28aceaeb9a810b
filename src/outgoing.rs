//! Bytes owed to one client, and how they reach its socket.
//!
//! Most responses are one buffer: built for this request ([`Response::Owned`]) or built once
//! and shared by every connection sending it ([`Response::Shared`]: a broadcast, a static
//! file, the timeout answer). Two kinds of response are several buffers, kept as a queue of
//! [`Piece`]s and written with one `writev` per round:
//!
//! - a **replay** from a room's history: the stored messages are immutable and shared with
//!   the room (and every other client replaying them), so a client that asks for the whole
//!   history and never reads costs its queue of pointers, not a copy of the history;
//! - a **stream whose socket is full**: frames broadcast meanwhile queue behind the one
//!   being written, up to a cap the server enforces with [`Outgoing::push_live`].

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// The most pieces one `writev` is handed; the rest wait for the next round (IOV_MAX is
/// 1024 on Linux; 64 covers a page of replayed messages and their separators).
const PIECES_PER_WRITE: usize = 64;

/// What a response consists of.
#[derive(Debug)]
pub enum Response {
    /// Encoded for this request alone.
    Owned(Vec<u8>),
    /// Encoded once and shared: static files, broadcasts, timeouts.
    Shared(Rc<[u8]>),
    /// Several pieces, most of them shared (replays, and streams that fell behind).
    Pieces(Box<Pieces>),
}

/// A run of bytes in a multi-piece response.
#[derive(Clone, Debug)]
pub enum Piece {
    /// Built for this response alone: a head, the end of a JSON answer.
    Owned(Vec<u8>),
    /// Part of a buffer shared with others, such as a stored message inside its SSE frame.
    Shared {
        /// The whole shared buffer.
        bytes: Rc<[u8]>,
        /// Where the piece starts in it.
        start: u32,
        /// Where the piece ends in it.
        end: u32,
    },
    /// A constant, such as the comma between two messages of a JSON answer.
    Static(&'static [u8]),
    /// A live frame broadcast to a stream while its socket was full, shared by every
    /// stream it went to; counted toward that stream's backlog cap until it is out.
    Live(Rc<[u8]>),
}

impl Piece {
    /// The whole of a shared buffer.
    pub fn shared(bytes: &Rc<[u8]>) -> Piece {
        Piece::slice(bytes, 0..bytes.len())
    }

    /// Part of a shared buffer (buffers are far below 4 GiB: requests and messages are
    /// capped at start-up).
    pub fn slice(bytes: &Rc<[u8]>, range: std::ops::Range<usize>) -> Piece {
        debug_assert!(range.end <= bytes.len() && bytes.len() <= u32::MAX as usize);
        Piece::Shared {
            bytes: Rc::clone(bytes),
            start: range.start as u32,
            end: range.end as u32,
        }
    }

    /// The bytes of the piece.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Piece::Owned(bytes) => bytes,
            Piece::Shared { bytes, start, end } => &bytes[*start as usize..*end as usize],
            Piece::Static(bytes) => bytes,
            Piece::Live(bytes) => bytes,
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// True for an empty piece.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The queue of a multi-piece response.
#[derive(Clone, Debug, Default)]
pub struct Pieces {
    /// What is left to write, front first; the front may be partly written.
    queue: VecDeque<Piece>,
    /// Bytes of live stream frames in `queue`, which the server caps: a stream this far
    /// behind is dropped rather than allowed to pin ever more broadcasts in memory.
    live_bytes: usize,
    /// A stream replaying history: the sequence number of the last message queued. When
    /// the queue drains, the next page of history is queued after it.
    replay_after: Option<u64>,
}

impl Pieces {
    /// A queue holding `pieces`.
    pub fn new(pieces: impl IntoIterator<Item = Piece>) -> Pieces {
        Pieces {
            queue: pieces.into_iter().collect(),
            ..Pieces::default()
        }
    }

    /// Total bytes queued.
    pub fn len(&self) -> usize {
        self.queue.iter().map(Piece::len).sum()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The first piece, nothing of it written yet: a response's own head.
    pub fn front_mut(&mut self) -> Option<&mut Piece> {
        self.queue.front_mut()
    }
}

/// The response being written to a connection, and how far it got.
#[derive(Debug)]
pub struct Outgoing {
    /// The bytes.
    bytes: Response,
    /// How much the kernel has taken: of the whole buffer, or of the front piece.
    written: usize,
}

/// What writing achieved.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Every byte is with the kernel.
    Done,
    /// Everything queued is out, and a stream's replay continues after this sequence
    /// number: queue the next page of history and write again.
    Refill(u64),
    /// The socket buffer is full; wait for a WRITABLE event.
    Blocked,
}

impl Outgoing {
    /// A response, nothing written yet.
    pub fn new(bytes: Response) -> Outgoing {
        Outgoing { bytes, written: 0 }
    }

    /// A stream replaying history: `pieces` now, and more after message `after` once
    /// they are out (`None`: the replay is complete).
    pub fn replay(pieces: Vec<Piece>, after: Option<u64>) -> Outgoing {
        let mut queue = Pieces::new(pieces);
        queue.replay_after = after;
        Outgoing::new(Response::Pieces(Box::new(queue)))
    }

    /// The pieces of this response, turning a one-buffer response into a queue first (the
    /// allocation happens only for a stream whose socket is full).
    fn pieces(&mut self) -> &mut Pieces {
        if !matches!(self.bytes, Response::Pieces(_)) {
            let first = match std::mem::replace(&mut self.bytes, Response::Owned(Vec::new())) {
                Response::Owned(mut bytes) => {
                    bytes.drain(..self.written);
                    Piece::Owned(bytes)
                }
                Response::Shared(bytes) => Piece::slice(&bytes, self.written..bytes.len()),
                Response::Pieces(_) => unreachable!("checked above"),
            };
            self.written = 0;
            self.bytes = Response::Pieces(Box::new(Pieces::new([first])));
        }
        match &mut self.bytes {
            Response::Pieces(pieces) => pieces,
            _ => unreachable!("made a queue above"),
        }
    }

    /// Queues a live stream frame behind what is being written. Returns the bytes of live
    /// frames now queued, for the server's backlog cap.
    pub fn push_live(&mut self, frame: &Rc<[u8]>) -> usize {
        let pieces = self.pieces();
        pieces.queue.push_back(Piece::Live(Rc::clone(frame)));
        pieces.live_bytes += frame.len();
        pieces.live_bytes
    }

    /// A replay that starts behind what is queued (a WebSocket that said where from):
    /// `pieces` after the rest, then the history paged on after message `after`.
    pub fn append_replay(&mut self, pieces: Vec<Piece>, after: Option<u64>) {
        let queue = self.pieces();
        queue.queue.extend(pieces);
        queue.replay_after = after;
    }

    /// A stream replaying a history the store has forgotten (a new epoch): its replay
    /// goes on from the start of the new history instead.
    pub fn restart_replay(&mut self) {
        if let Response::Pieces(pieces) = &mut self.bytes {
            if pieces.replay_after.is_some() {
                pieces.replay_after = Some(0);
            }
        }
    }

    /// True while a stream is still replaying history (live messages then come from the
    /// history in order, not from the broadcast).
    pub fn is_replaying(&self) -> bool {
        matches!(&self.bytes, Response::Pieces(p) if p.replay_after.is_some())
    }

    /// Writes as much as the socket takes. Returns what that achieved and how many bytes
    /// went. Retries on `Interrupted`; stops at `WouldBlock`.
    pub fn write_to(&mut self, socket: &mut impl Write) -> io::Result<(Flushed, usize)> {
        let mut sent = 0;
        loop {
            let result = match &self.bytes {
                Response::Owned(bytes) => socket.write(&bytes[self.written..]),
                Response::Shared(bytes) => socket.write(&bytes[self.written..]),
                Response::Pieces(pieces) => {
                    let mut slices = [IoSlice::new(&[]); PIECES_PER_WRITE];
                    let mut count = 0;
                    for (i, piece) in pieces.queue.iter().take(PIECES_PER_WRITE).enumerate() {
                        let bytes = piece.as_bytes();
                        slices[i] = IoSlice::new(if i == 0 {
                            &bytes[self.written..]
                        } else {
                            bytes
                        });
                        count += 1;
                    }
                    if count == 0 {
                        return Ok((self.finished(), sent));
                    }
                    socket.write_vectored(&slices[..count])
                }
            };
            match result {
                Ok(0) if self.remaining() > 0 => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    sent += n;
                    if self.advance(n) {
                        return Ok((self.finished(), sent));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok((Flushed::Blocked, sent))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// What is left to write (of the queue, not of a replay still to come).
    fn remaining(&self) -> usize {
        match &self.bytes {
            Response::Owned(bytes) => bytes.len() - self.written,
            Response::Shared(bytes) => bytes.len() - self.written,
            Response::Pieces(pieces) => pieces.len() - self.written,
        }
    }

    /// Marks `n` more bytes as written. True when everything queued is out.
    fn advance(&mut self, mut n: usize) -> bool {
        let Response::Pieces(pieces) = &mut self.bytes else {
            self.written += n;
            return self.remaining() == 0;
        };
        while let Some(front) = pieces.queue.front() {
            let left = front.len() - self.written;
            if n < left {
                self.written += n;
                return false;
            }
            n -= left;
            self.written = 0;
            if let Some(Piece::Live(frame)) = pieces.queue.pop_front() {
                pieces.live_bytes -= frame.len();
            }
        }
        true
    }

    /// Everything queued is out: done, or more history to replay.
    fn finished(&self) -> Flushed {
        match &self.bytes {
            Response::Pieces(pieces) => match pieces.replay_after {
                Some(after) => Flushed::Refill(after),
                None => Flushed::Done,
            },
            _ => Flushed::Done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket stand-in that takes at most `room` bytes per call, then blocks.
    struct Sink {
        got: Vec<u8>,
        per_call: usize,
        calls_left: usize,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.calls_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_left -= 1;
            let n = buf.len().min(self.per_call);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        /// Like writev: takes from several slices in one call, up to `per_call` bytes.
        fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
            let all: Vec<u8> = slices.iter().flat_map(|s| s.iter()).copied().collect();
            self.write(&all)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn sink(per_call: usize, calls: usize) -> Sink {
        Sink {
            got: Vec::new(),
            per_call,
            calls_left: calls,
        }
    }

    #[test]
    fn pieces_come_out_in_order_across_partial_writes() {
        let shared: Rc<[u8]> = Rc::from(&b"xxHELLOxx"[..]);
        let mut out = Outgoing::new(Response::Pieces(Box::new(Pieces::new([
            Piece::Owned(b"[".to_vec()),
            Piece::slice(&shared, 2..7),
            Piece::Static(b","),
            Piece::shared(&shared),
            Piece::Owned(b"]".to_vec()),
        ]))));
        let mut socket = sink(3, 2);
        assert_eq!(out.write_to(&mut socket).unwrap(), (Flushed::Blocked, 6));
        socket.calls_left = 100;
        assert_eq!(out.write_to(&mut socket).unwrap(), (Flushed::Done, 11));
        assert_eq!(socket.got, b"[HELLO,xxHELLOxx]");
    }

    #[test]
    fn live_frames_queue_behind_a_partly_written_buffer() {
        let first: Rc<[u8]> = Rc::from(&b"abcdef"[..]);
        let mut out = Outgoing::new(Response::Shared(Rc::clone(&first)));
        let mut socket = sink(4, 1);
        assert_eq!(out.write_to(&mut socket).unwrap(), (Flushed::Blocked, 4));
        let frame: Rc<[u8]> = Rc::from(&b"123"[..]);
        assert_eq!(out.push_live(&frame), 3);
        assert_eq!(out.push_live(&frame), 6);
        socket.calls_left = 100;
        assert_eq!(out.write_to(&mut socket).unwrap(), (Flushed::Done, 8));
        assert_eq!(socket.got, b"abcdef123123");
    }

    #[test]
    fn a_replay_asks_for_more_when_its_page_is_out() {
        let mut out = Outgoing::replay(vec![Piece::Static(b"page")], Some(64));
        assert!(out.is_replaying());
        let mut socket = sink(100, 100);
        assert_eq!(out.write_to(&mut socket).unwrap(), (Flushed::Refill(64), 4));
    }

    /// A replay of a history the store forgot (a new epoch) goes on from the new start,
    /// after what was already queued; a response that is no replay stays one.
    #[test]
    fn a_restarted_replay_asks_for_the_new_history_from_its_start() {
        let mut out = Outgoing::replay(vec![Piece::Static(b"page")], Some(64));
        out.restart_replay();
        let mut socket = sink(100, 100);
        assert_eq!(out.write_to(&mut socket).unwrap(), (Flushed::Refill(0), 4));
        let mut done = Outgoing::replay(vec![Piece::Static(b"last")], None);
        done.restart_replay();
        assert!(!done.is_replaying());
    }
}
