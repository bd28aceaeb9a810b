//! The admin listener in the loop (`--admin-addr`): a second listening socket and a handful
//! of connections of its own, registered with the same `Poll`, answered from the same
//! pass. What it says is spelled in `src/admin.rs`; this file owns the sockets, the
//! snapshot each scrape reads, and the X-ray's frames.
//!
//! An admin connection lives a short life, each step in [`Phase`]: one request (read under
//! `--idle-timeout` until its first byte, then `--request-timeout`, as on the public port),
//! its answer (under `--write-timeout`), and the hang-up (our side shut, what the client
//! still sends read and discarded, for at most [`LINGER`]); or, for an X-ray viewer,
//! frames for as long as it watches. It is the public port's life without keep-alive,
//! kept here rather than in `Conn` because these few connections need none of a chat
//! client's machinery.
//!
//! At most [`MAX_ADMIN_CONNS`] are open at once. Past that a newcomer does not wait behind
//! connections that say nothing: the oldest one that has had its answer (lingering) or has
//! not sent a whole request gives way, and only when every place holds a viewer or an
//! answer being written is the newcomer refused (503). So a scrape gets in however many
//! idle connections sit there, and viewers ([`MAX_VIEWERS`]) cannot take every place.
//!
//! A closed connection is only marked so, and freed in the loop's reap step (step 5), so
//! that no later event of the same pass can reach a newcomer given the same key.
//!
//! It is built to cost nothing while nobody looks: no timer runs for it unless an admin
//! connection is open, the X-ray's frames are computed only while a viewer is connected,
//! and a scrape reads counters the loop keeps anyway.

use super::timers::{Due, LINGER};
use super::Server;
use crate::admin::exposition::{self, Snapshot, States};
use crate::admin::{self, xray, Route};
use crate::conn::State;
use crate::http::{self, Limits, Parse, Status};
use crate::metrics::Syscalls;
use crate::stats;
use crate::sys;
use crate::timer::{self, TimerId};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};
use slab::Slab;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

/// The admin listener's token.
pub(super) const ADMIN_LISTENER: Token = Token(usize::MAX - 5);

/// Admin connections' tokens are this plus their key: far above any client's slab key, far
/// below the server's own tokens.
pub(super) const ADMIN_BASE: usize = 1 << 40;

/// Admin connections open at once at most. A scraper needs one at a time and a viewer one
/// each, so 32 leaves room for a few scrapers and every viewer; past it the oldest idle one
/// gives way (see the module docs). It bounds what the admin port can hold: 32 sockets and
/// at most 32 request buffers of [`ADMIN_REQUEST_BYTES`] and a read.
const MAX_ADMIN_CONNS: usize = 32;

/// X-ray viewers at once at most, so that viewers can never take every admin connection
/// and lock a scraper out; one more is answered 503.
const MAX_VIEWERS: usize = 8;

/// An admin request longer than this is refused (431).
const ADMIN_REQUEST_BYTES: usize = 8 * 1024;

/// What one read takes from an admin socket; a request needs at most three.
const ADMIN_READ_BYTES: usize = 4096;

/// Bytes read and discarded, in one event, from a connection whose answer is decided (being
/// written, or lingering): enough for the rest of any request a client sent in one go, so
/// that it reads its answer rather than a reset. One that sends more is closed: the loop
/// does not read without end for a client that keeps sending after its answer.
const ADMIN_DISCARD_BYTES: usize = 64 * 1024;

/// A viewer this far behind on frames (about 15 s of them) is dropped; reloading the page
/// starts it afresh.
const VIEWER_BACKLOG_BYTES: usize = 256 * 1024;

/// The listener, its connections, and what the X-ray needs between frames.
pub(super) struct Admin {
    listener: TcpListener,
    addr: SocketAddr,
    /// Every open admin connection, and those closed this pass until the reap step; the
    /// key (plus [`ADMIN_BASE`]) is the connection's token.
    conns: Slab<AdminConn>,
    /// Keys marked closed this pass: freed in the reap step, never earlier, so that a key
    /// is not handed to a newcomer while an event of this pass may still name it.
    closing: Vec<usize>,
    /// The X-ray's tick is on the wheel (at most once).
    ticking: bool,
    /// The one sweep of admin deadlines on the wheel, and when it falls: never later than
    /// the earliest connection's deadline. Forgotten the moment it fires (the wheel reuses
    /// the id), and `None` while no connection has a deadline.
    sweep: Option<(TimerId, Instant)>,
    /// The counters as the previous frame saw them, for rates.
    previous: Option<Previous>,
}

/// Where an admin connection is in its life; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) its one request: idle until its first byte, then under
    /// the request timeout.
    Reading,
    /// Its answer is being written; then it hangs up.
    Writing,
    /// The answer is out and our side is shut. What the client still sends is read and
    /// discarded until it closes: closing with unread input would make the kernel send a
    /// reset, which can destroy the answer before the client reads it.
    Lingering,
    /// Watching the X-ray: a frame every tick, never hung up on by us unless too far behind.
    Viewing,
    /// Freed in the reap step; events still naming it are ignored.
    Closed,
}

struct AdminConn {
    socket: TcpStream,
    /// The request so far; never longer than [`ADMIN_REQUEST_BYTES`] plus one read.
    input: Vec<u8>,
    /// What is owed: the answer, or a viewer's frames not yet taken by the socket.
    output: Vec<u8>,
    /// How much of `output` is out.
    written: usize,
    phase: Phase,
    /// When it was accepted: past the cap, the oldest idle connection gives way.
    opened: Instant,
    /// When its phase ends badly (idle, no whole request, answer not taken, lingered
    /// enough); `None` for a viewer and a closed connection.
    deadline: Option<Instant>,
    /// The client has sent all it will (read returned 0).
    peer_closed: bool,
}

/// Counters at the previous frame.
struct Previous {
    at: Instant,
    passes: u64,
    events: u64,
    pass_sum_micros: u64,
    syscalls: Syscalls,
    bytes_in: u64,
    bytes_out: u64,
}

impl Admin {
    /// Listens on `addr`.
    pub(super) fn bind(addr: SocketAddr) -> io::Result<Admin> {
        let listener = super::accept::listen(addr, 128, false)?;
        let addr = listener.local_addr()?;
        Ok(Admin {
            listener,
            addr,
            conns: Slab::new(),
            closing: Vec::new(),
            ticking: false,
            sweep: None,
            previous: None,
        })
    }

    /// Where it listens.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Registers the listener with the loop's poll.
    pub(super) fn register(&mut self, registry: &mio::Registry) -> io::Result<()> {
        registry.register(&mut self.listener, ADMIN_LISTENER, Interest::READABLE)
    }

    /// The connection at `key`, unless it is gone or closed (never trust a token).
    fn live(&mut self, key: usize) -> Option<&mut AdminConn> {
        self.conns.get_mut(key).filter(|c| c.phase != Phase::Closed)
    }

    /// Makes room for one more connection: closes the one that loses least by it, the
    /// oldest lingering one (its answer is out), else the oldest that has not sent a whole
    /// request. False when every place holds a viewer or an answer being written. O(n) in
    /// admin connections, which are at most [`MAX_ADMIN_CONNS`].
    fn make_room(&mut self) -> bool {
        let victim = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Lingering | Phase::Reading))
            .min_by_key(|(_, c)| (c.phase == Phase::Reading, c.opened))
            .map(|(key, _)| key);
        match victim {
            Some(key) => {
                self.close(key);
                true
            }
            None => false,
        }
    }

    /// Marks a connection closed; its slot is freed in the reap step.
    fn close(&mut self, key: usize) {
        let Some(conn) = self.live(key) else {
            return;
        };
        conn.phase = Phase::Closed;
        conn.deadline = None;
        conn.input = Vec::new();
        conn.output = Vec::new();
        self.closing.push(key);
    }
}

impl Server {
    /// Accepts every admin connection waiting.
    pub(super) fn accept_admin(&mut self) {
        let Some(admin) = self.admin.as_mut() else {
            return;
        };
        let idle_until = Instant::now() + self.config.idle_timeout;
        let mut accepted = false;
        loop {
            let (mut socket, _) = match admin.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock, or nothing we can do now
            };
            let open = admin.conns.len() - admin.closing.len();
            if open >= MAX_ADMIN_CONNS && !admin.make_room() {
                let bytes = admin::answer(Err(Status::SERVICE_UNAVAILABLE));
                let _ = socket.write(&bytes);
                continue;
            }
            let entry = admin.conns.vacant_entry();
            let token = Token(ADMIN_BASE + entry.key());
            let interest = Interest::READABLE | Interest::WRITABLE;
            if self
                .poll
                .registry()
                .register(&mut socket, token, interest)
                .is_err()
            {
                continue;
            }
            entry.insert(AdminConn {
                socket,
                input: Vec::new(),
                output: Vec::new(),
                written: 0,
                phase: Phase::Reading,
                opened: Instant::now(),
                deadline: Some(idle_until),
                peer_closed: false,
            });
            accepted = true;
        }
        if accepted {
            self.admin_sweep_by(idle_until);
        }
    }

    /// An admin connection is readable or writable.
    pub(super) fn on_admin_event(&mut self, key: usize, event: &Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.admin_read(key);
        }
        if event.is_writable() {
            self.admin_write(key);
        }
    }

    /// Reads until `WouldBlock`: a request, answered once it is whole; or, from a connection
    /// whose answer is decided, bytes to discard (at most [`ADMIN_DISCARD_BYTES`]) and the
    /// client's FIN. Reading always to the end means no edge of the socket is lost.
    fn admin_read(&mut self, key: usize) {
        let mut chunk = [0u8; ADMIN_READ_BYTES];
        let mut discarded = 0;
        let request_until = Instant::now() + self.config.request_timeout;
        loop {
            let Some(conn) = self.admin.as_mut().and_then(|a| a.live(key)) else {
                return;
            };
            match conn.socket.read(&mut chunk) {
                // The client has sent all it will (a half-close): answer what it asked, if
                // it asked something whole, then close.
                Ok(0) => {
                    conn.peer_closed = true;
                    break;
                }
                // A viewer has nothing more to say (EventSource never does): one that sends
                // anything is hung up on, rather than read and discarded without end, which
                // would hold the loop for as long as the viewer cares to send.
                Ok(_) if conn.phase == Phase::Viewing => return self.admin_close(key),
                Ok(n) if conn.phase == Phase::Reading => {
                    if conn.input.is_empty() {
                        // The request timer runs from the first byte, and later bytes do
                        // not reset it: trickling a byte at a time buys nothing.
                        conn.deadline = Some(request_until);
                        self.admin_sweep_by(request_until);
                    }
                    let conn = self.admin_conn(key);
                    conn.input.extend_from_slice(&chunk[..n]);
                    if conn.input.len() > ADMIN_REQUEST_BYTES {
                        // Answered now; the rest of the request is read and discarded by
                        // the next rounds of this loop, so the client can read the 431.
                        self.admin_send(key, admin::answer(Err(Status::HEADERS_TOO_LARGE)));
                    }
                }
                // Writing or lingering: what the client still sends is not a request.
                Ok(n) => {
                    discarded += n;
                    if discarded > ADMIN_DISCARD_BYTES {
                        return self.admin_close(key);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.admin_close(key),
            }
        }
        let conn = self.admin_conn(key);
        match conn.phase {
            Phase::Reading => {}
            // A viewer that hangs up is done, and so is a client we were hanging up on.
            Phase::Viewing | Phase::Lingering if conn.peer_closed => return self.admin_close(key),
            // An answer being written is finished first (then we hang up at once, since
            // the client closed its side).
            _ => return,
        }
        let peer_closed = conn.peer_closed;
        let route = match http::parse_request(&conn.input, &Limits::default()) {
            // Half a request is normal flow: more comes, or the request timer fires.
            Parse::Partial { .. } if peer_closed => return self.admin_close(key),
            Parse::Partial { .. } => return,
            Parse::Invalid(status) => Err(status),
            Parse::Complete(request) => admin::route(&request),
        };
        let bytes = match route {
            Ok(Route::Metrics) => admin::metrics(&self.metrics_text()),
            Ok(Route::Feed) if self.viewers() >= MAX_VIEWERS => {
                admin::answer(Err(Status::SERVICE_UNAVAILABLE))
            }
            Ok(Route::Feed) if !peer_closed => {
                self.start_viewing(key);
                admin::answer(route)
            }
            route => admin::answer(route),
        };
        self.admin_send(key, bytes);
    }

    /// The live connection at `key`, which the caller has just seen live in this call.
    fn admin_conn(&mut self, key: usize) -> &mut AdminConn {
        self.admin
            .as_mut()
            .and_then(|a| a.live(key))
            .expect("a connection seen live in this call")
    }

    /// Queues `bytes` on an admin connection and writes what the socket takes. A request's
    /// answer starts the write timer; a viewer's frames do not (its backlog cap drops it).
    fn admin_send(&mut self, key: usize, bytes: Vec<u8>) {
        let write_until = Instant::now() + self.config.write_timeout;
        let Some(conn) = self.admin.as_mut().and_then(|a| a.live(key)) else {
            return;
        };
        conn.output.extend_from_slice(&bytes);
        if conn.phase == Phase::Reading {
            conn.phase = Phase::Writing;
            conn.input = Vec::new();
            conn.deadline = Some(write_until);
            self.admin_sweep_by(write_until);
        }
        self.admin_write(key);
    }

    /// Writes what is owed; a finished answer hangs up, a viewer stays.
    fn admin_write(&mut self, key: usize) {
        let Some(conn) = self.admin.as_mut().and_then(|a| a.live(key)) else {
            return;
        };
        let before = conn.written;
        while conn.written < conn.output.len() {
            match conn.socket.write(&conn.output[conn.written..]) {
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A client that takes its answer, however slowly, is not stalled.
                    if conn.phase == Phase::Writing && conn.written > before {
                        conn.deadline = Some(Instant::now() + self.config.write_timeout);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.admin_close(key),
            }
        }
        if conn.output.is_empty() {
            return; // nothing was owed: an early WRITABLE edge
        }
        conn.output.clear();
        conn.written = 0;
        if conn.phase == Phase::Writing {
            self.admin_hang_up(key);
        }
    }

    /// The answer is all out: shut our side and linger, as the public port does (see
    /// [`Phase::Lingering`]); at once closed if the client has closed already. The client's
    /// FIN, or what it still sends, comes as a new readable edge: every read so far went
    /// to `WouldBlock` or the end.
    fn admin_hang_up(&mut self, key: usize) {
        let linger_until = Instant::now() + LINGER;
        let Some(conn) = self.admin.as_mut().and_then(|a| a.live(key)) else {
            return;
        };
        if conn.peer_closed || conn.socket.shutdown(Shutdown::Write).is_err() {
            return self.admin_close(key);
        }
        conn.phase = Phase::Lingering;
        conn.deadline = Some(linger_until);
        self.admin_sweep_by(linger_until);
    }

    fn admin_close(&mut self, key: usize) {
        if let Some(admin) = self.admin.as_mut() {
            admin.close(key);
        }
    }

    /// Step 5 for admin connections: frees those marked closed this pass. Dropping the
    /// socket closes it, which takes it out of the poll set.
    pub(super) fn reap_admin(&mut self) {
        if let Some(admin) = self.admin.as_mut() {
            for key in admin.closing.drain(..) {
                admin.conns.remove(key);
            }
        }
    }

    /// Makes sure the sweep comes no later than `at`: the one sweep on the wheel is moved
    /// earlier if need be, never later (a sweep that comes early finds nothing due and
    /// files the next).
    fn admin_sweep_by(&mut self, at: Instant) {
        let Some(admin) = self.admin.as_mut() else {
            return;
        };
        if admin.sweep.is_some_and(|(_, when)| when <= at) {
            return;
        }
        if let Some((id, _)) = admin.sweep.take() {
            self.timers.wheel.cancel(id);
        }
        let id = self.schedule(
            Due::SweepAdmin,
            at.saturating_duration_since(Instant::now()),
        );
        if let Some(admin) = self.admin.as_mut() {
            admin.sweep = Some((id, at));
        }
    }

    /// The sweep is due: each admin connection whose deadline passed meets the end its
    /// phase gives it, as on the public port: idle, closed quietly; half a request, 408;
    /// an answer not taken, or lingered long enough, closed. Then the next sweep is filed
    /// for the earliest deadline left. O(n) in admin connections (at most
    /// [`MAX_ADMIN_CONNS`] and this pass's closed ones), which costs less to read than a
    /// timer each with generations to check.
    pub(super) fn sweep_admin(&mut self) {
        let Some(admin) = self.admin.as_mut() else {
            return;
        };
        admin.sweep = None; // it fired: the wheel may hand its id out again
        let now = Instant::now();
        let due: Vec<(usize, Phase, bool)> = admin
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|at| at <= now))
            .map(|(key, c)| (key, c.phase, c.input.is_empty()))
            .collect();
        for (key, phase, idle) in due {
            match phase {
                Phase::Reading if !idle => {
                    log::debug!("admin #{key} sent no whole request in time");
                    self.admin_send(key, admin::answer(Err(Status::REQUEST_TIMEOUT)));
                }
                _ => self.admin_close(key),
            }
        }
        let next = self
            .admin
            .as_ref()
            .and_then(|a| a.conns.iter().filter_map(|(_, c)| c.deadline).min());
        if let Some(next) = next {
            self.admin_sweep_by(next);
        }
    }

    /// Connections watching the X-ray.
    fn viewers(&self) -> usize {
        self.admin.as_ref().map_or(0, |a| {
            a.conns
                .iter()
                .filter(|(_, c)| c.phase == Phase::Viewing)
                .count()
        })
    }

    /// A connection asked for the X-ray's feed: it gets frames from the next tick on.
    fn start_viewing(&mut self, key: usize) {
        let Some(admin) = self.admin.as_mut() else {
            return;
        };
        let Some(conn) = admin.live(key) else {
            return;
        };
        conn.phase = Phase::Viewing;
        conn.deadline = None;
        conn.input = Vec::new();
        if !admin.ticking {
            admin.ticking = true;
            admin.previous = None;
            self.schedule(Due::XrayTick, Duration::ZERO);
        }
    }

    /// Four times a second while anyone watches: one frame, written to every viewer.
    pub(super) fn xray_tick(&mut self) {
        let viewers: Vec<usize> = match self.admin.as_ref() {
            Some(admin) => admin
                .conns
                .iter()
                .filter(|(_, c)| c.phase == Phase::Viewing)
                .map(|(k, _)| k)
                .collect(),
            None => return,
        };
        let admin = self.admin.as_mut().expect("checked above");
        if viewers.is_empty() {
            admin.ticking = false;
            return;
        }
        let bytes = xray::event(&self.xray_frame());
        for key in viewers {
            let behind = self.admin.as_ref().map_or(0, |a| a.conns[key].output.len());
            if behind > VIEWER_BACKLOG_BYTES {
                self.admin_close(key);
                continue;
            }
            self.admin_send(key, bytes.clone());
        }
        self.schedule(Due::XrayTick, Duration::from_millis(xray::FRAME_EVERY_MS));
    }

    /// What `/metrics` says now.
    fn metrics_text(&self) -> String {
        let mut states = States::default();
        for (_, conn) in &self.conns {
            let count = match conn.state() {
                State::Reading => &mut states.reading,
                State::Parked(_) => &mut states.parked,
                State::Streaming(_) => &mut states.streaming,
                State::Writing => &mut states.writing,
                State::Lingering => &mut states.lingering,
                State::Awaiting => &mut states.awaiting,
                State::Closed => continue,
            };
            *count += 1;
        }
        exposition::render(&Snapshot {
            stats: &self.stats,
            metrics: &self.metrics,
            timers: (self.timers.wheel.totals(), self.timers.wheel.len()),
            states,
            rss_bytes: sys::rss_bytes(),
            worker: self.config.worker,
            redis: self.chat.is_shared(),
        })
    }

    /// One picture of the loop for the X-ray (see `admin::xray` for each field).
    fn xray_frame(&mut self) -> xray::Frame {
        let now = Instant::now();
        let current = self.counters_at(now);
        let previous = self
            .admin
            .as_mut()
            .and_then(|a| a.previous.replace(current))
            .unwrap_or_else(|| self.counters_at(now));
        let m = &self.metrics;
        let elapsed_ms = now.duration_since(previous.at).as_millis().max(1) as u64;
        let per_s = |now: u64, before: u64| now.saturating_sub(before) * 1000 / elapsed_ms;
        let passes = m.passes - previous.passes;
        let frame = xray::Frame {
            t_ms: self.now().ms,
            interval_ms: elapsed_ms,
            connections: stats::get(&self.stats.connections),
            polls: stats::get(&self.stats.pending_polls),
            streams: stats::get(&self.stats.streams),
            wheel: self.wheel_picture(),
            slab: self.slab_picture(),
            passes,
            events: m.events - previous.events,
            pass_us_max: m.longest_pass_micros,
            pass_us_mean: (m.pass_seconds.sum_micros - previous.pass_sum_micros)
                .checked_div(passes)
                .unwrap_or(0),
            syscalls_per_s: xray::Syscalls {
                accept: per_s(m.syscalls.accept, previous.syscalls.accept),
                read: per_s(m.syscalls.read, previous.syscalls.read),
                write: per_s(m.syscalls.write, previous.syscalls.write),
                epoll_wait: per_s(m.syscalls.epoll_wait, previous.syscalls.epoll_wait),
            },
            bytes_in_per_s: per_s(m.bytes_in, previous.bytes_in),
            bytes_out_per_s: per_s(stats::get(&self.stats.bytes_out), previous.bytes_out),
            broadcasts: m
                .broadcasts
                .iter()
                .map(|b| xray::Broadcast {
                    room: b.room.to_string(),
                    fanout: b.fanout,
                    micros: b.micros,
                    ago_ms: self.now().ms.saturating_sub(b.at_ms),
                })
                .collect(),
        };
        self.metrics.longest_pass_micros = 0;
        frame
    }

    /// The counters now (the first frame's "previous": its rates are over nothing).
    fn counters_at(&self, at: Instant) -> Previous {
        let m = &self.metrics;
        Previous {
            at,
            passes: m.passes,
            events: m.events,
            pass_sum_micros: m.pass_seconds.sum_micros,
            syscalls: m.syscalls,
            bytes_in: m.bytes_in,
            bytes_out: stats::get(&self.stats.bytes_out),
        }
    }

    /// The wheel as arcs of [`xray::SLOTS_PER_ARC`] slots, from `TimerWheel::slot_counts()`.
    fn wheel_picture(&self) -> xray::Wheel {
        let counts = self.timers.wheel.slot_counts();
        xray::Wheel {
            slots: counts.len(),
            cursor: timer::slot_of(self.timers.wheel.now() + 1),
            arcs: counts
                .chunks(xray::SLOTS_PER_ARC)
                .map(|arc| arc.iter().sum())
                .collect(),
            timers: self.timers.wheel.len(),
        }
    }

    /// The slab as at most [`xray::SLAB_CELLS`] cells, each the commonest state of a few
    /// sampled slots: a fixed cost per frame however many connections there are.
    fn slab_picture(&self) -> xray::Slab {
        let capacity = self.conns.capacity().max(1);
        let per_cell = capacity.div_ceil(xray::SLAB_CELLS);
        let letter = |key: usize| match self.conns.get(key).map(|c| c.state()) {
            None | Some(State::Closed) => b'.',
            Some(State::Reading) => b'r',
            Some(State::Parked(_)) => b'p',
            Some(State::Streaming(_)) => b's',
            Some(State::Writing) => b'w',
            Some(State::Lingering) => b'l',
            Some(State::Awaiting) => b'a',
        };
        let step = per_cell.div_ceil(xray::SAMPLES_PER_CELL).max(1);
        let cells = (0..capacity)
            .step_by(per_cell)
            .map(|start| {
                let end = (start + per_cell).min(capacity);
                let samples: Vec<u8> = (start..end).step_by(step).map(letter).collect();
                xray::commonest(&samples) as char
            })
            .collect();
        xray::Slab {
            capacity,
            per_cell,
            cells,
        }
    }
}
