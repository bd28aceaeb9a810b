//! The admin listener in the loop (`--admin-addr`): a second listening socket and a handful
//! of connections of its own, registered with the same `Poll`, answered from the same
//! pass. What it says is spelled in `src/admin.rs`; this file owns the sockets, the
//! snapshot each scrape reads, and the X-ray's frames.
//!
//! It is built to cost nothing while nobody looks: no timer runs for it unless an admin
//! connection is open, the X-ray's frames are computed only while a viewer is connected,
//! and a scrape reads counters the loop keeps anyway.

use super::timers::Due;
use super::Server;
use crate::admin::exposition::{self, Snapshot, States};
use crate::admin::{self, xray, Route};
use crate::conn::State;
use crate::http::{self, Limits, Parse, Status};
use crate::metrics::Syscalls;
use crate::stats;
use crate::sys;
use crate::timer;
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};
use slab::Slab;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The admin listener's token.
pub(super) const ADMIN_LISTENER: Token = Token(usize::MAX - 5);

/// Admin connections' tokens are this plus their key: far above any client's slab key, far
/// below the server's own tokens.
pub(super) const ADMIN_BASE: usize = 1 << 40;

/// Admin connections open at once at most; one more is answered 503 and closed.
const MAX_ADMIN_CONNS: usize = 64;

/// X-ray viewers at once at most, so that viewers can never take every admin connection
/// and lock a scraper out; one more is answered 503.
const MAX_VIEWERS: usize = 8;

/// An admin request longer than this is refused (431).
const ADMIN_REQUEST_BYTES: usize = 8 * 1024;

/// A viewer this far behind on frames (about 15 s of them) is dropped; reloading the page
/// starts it afresh.
const VIEWER_BACKLOG_BYTES: usize = 256 * 1024;

/// An admin connection that has not sent a whole request by then is closed.
const ADMIN_REQUEST_WAIT: Duration = Duration::from_secs(5);

/// The listener, its connections, and what the X-ray needs between frames.
pub(super) struct Admin {
    listener: TcpListener,
    addr: SocketAddr,
    conns: Slab<AdminConn>,
    /// The X-ray's tick is on the wheel (at most once).
    ticking: bool,
    /// The sweep of stuck admin connections is on the wheel (at most once).
    sweeping: bool,
    /// The counters as the previous frame saw them, for rates.
    previous: Option<Previous>,
}

struct AdminConn {
    socket: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    /// Watching the X-ray: gets a frame every tick, never closed by us.
    viewer: bool,
    opened: Instant,
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
            ticking: false,
            sweeping: false,
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
}

impl Server {
    /// Accepts every admin connection waiting.
    pub(super) fn accept_admin(&mut self) {
        let Some(admin) = self.admin.as_mut() else {
            return;
        };
        loop {
            let (mut socket, _) = match admin.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock, or nothing we can do now
            };
            if admin.conns.len() >= MAX_ADMIN_CONNS {
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
                viewer: false,
                opened: Instant::now(),
            });
        }
        if !admin.sweeping && !admin.conns.is_empty() {
            admin.sweeping = true;
            self.schedule(Due::SweepAdmin, ADMIN_REQUEST_WAIT);
        }
    }

    /// An admin connection is readable or writable.
    pub(super) fn on_admin_event(&mut self, key: usize, event: &Event) {
        if event.is_readable() {
            self.admin_read(key);
        }
        if event.is_writable() {
            self.admin_write(key);
        }
    }

    /// Reads an admin request and answers it once it is whole.
    fn admin_read(&mut self, key: usize) {
        let Some(conn) = self.admin.as_mut().and_then(|a| a.conns.get_mut(key)) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        let mut peer_done = false;
        loop {
            match conn.socket.read(&mut chunk) {
                // The client has sent all it will (a half-close): answer what it asked, if
                // it asked something whole, then close.
                Ok(0) => {
                    peer_done = true;
                    break;
                }
                // A viewer has nothing more to say (EventSource never does): one that sends
                // anything is hung up on, rather than read and discarded without end, which
                // would hold the loop for as long as the viewer cares to send.
                Ok(_) if conn.viewer => return self.admin_close(key),
                Ok(n) => conn.input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.admin_close(key),
            }
            if conn.input.len() > ADMIN_REQUEST_BYTES {
                return self.admin_send(key, admin::answer(Err(Status::HEADERS_TOO_LARGE)));
            }
        }
        if conn.viewer || !conn.output.is_empty() {
            // A viewer that hangs up is done; an answer being written is finished first
            // (and then closes the connection anyway).
            if peer_done && conn.viewer {
                self.admin_close(key);
            }
            return;
        }
        let route = match http::parse_request(&conn.input, &Limits::default()) {
            Parse::Partial { .. } if peer_done => return self.admin_close(key),
            Parse::Partial { .. } => return,
            Parse::Invalid(status) => Err(status),
            Parse::Complete(request) => admin::route(&request),
        };
        let bytes = match route {
            Ok(Route::Metrics) => admin::metrics(&self.metrics_text()),
            Ok(Route::Feed) if self.viewers() >= MAX_VIEWERS => {
                admin::answer(Err(Status::SERVICE_UNAVAILABLE))
            }
            Ok(Route::Feed) if !peer_done => {
                self.start_viewing(key);
                admin::answer(route)
            }
            route => admin::answer(route),
        };
        self.admin_send(key, bytes);
    }

    /// Queues `bytes` on an admin connection and writes what the socket takes.
    fn admin_send(&mut self, key: usize, bytes: Vec<u8>) {
        let Some(conn) = self.admin.as_mut().and_then(|a| a.conns.get_mut(key)) else {
            return;
        };
        conn.output.extend_from_slice(&bytes);
        self.admin_write(key);
    }

    /// Writes what is owed; a finished answer closes the connection, a viewer stays.
    fn admin_write(&mut self, key: usize) {
        let Some(conn) = self.admin.as_mut().and_then(|a| a.conns.get_mut(key)) else {
            return;
        };
        while conn.written < conn.output.len() {
            match conn.socket.write(&conn.output[conn.written..]) {
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.admin_close(key),
            }
        }
        if conn.output.is_empty() {
            return; // nothing was owed: an early WRITABLE edge
        }
        conn.output.clear();
        conn.written = 0;
        if !conn.viewer {
            self.admin_close(key);
        }
    }

    fn admin_close(&mut self, key: usize) {
        if let Some(admin) = self.admin.as_mut() {
            // Dropping the socket closes it, which takes it out of the poll set.
            admin.conns.try_remove(key);
        }
    }

    /// Closes admin connections that have sent no whole request in time; comes back while
    /// any are left that could be stuck.
    pub(super) fn sweep_admin(&mut self) {
        let Some(admin) = self.admin.as_mut() else {
            return;
        };
        admin.sweeping = false;
        let stuck: Vec<usize> = admin
            .conns
            .iter()
            .filter(|(_, c)| !c.viewer && c.opened.elapsed() >= ADMIN_REQUEST_WAIT)
            .map(|(key, _)| key)
            .collect();
        for key in stuck {
            self.admin_close(key);
        }
        let admin = self.admin.as_mut().expect("checked above");
        if admin.conns.iter().any(|(_, c)| !c.viewer) {
            admin.sweeping = true;
            self.schedule(Due::SweepAdmin, ADMIN_REQUEST_WAIT);
        }
    }

    /// Connections watching the X-ray.
    fn viewers(&self) -> usize {
        self.admin
            .as_ref()
            .map_or(0, |a| a.conns.iter().filter(|(_, c)| c.viewer).count())
    }

    /// A connection asked for the X-ray's feed: it gets frames from the next tick on.
    fn start_viewing(&mut self, key: usize) {
        let Some(admin) = self.admin.as_mut() else {
            return;
        };
        admin.conns[key].viewer = true;
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
                .filter(|(_, c)| c.viewer)
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
            timers: (self.wheel.totals(), self.wheel.len()),
            states,
            rss_bytes: sys::rss_bytes(),
            worker: self.config.worker,
            redis: self.shared(),
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
            t_ms: self.now_ms(),
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
                    ago_ms: self.now_ms().saturating_sub(b.at_ms),
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
        let counts = self.wheel.slot_counts();
        xray::Wheel {
            slots: counts.len(),
            cursor: timer::slot_of(self.wheel.now() + 1),
            arcs: counts
                .chunks(xray::SLOTS_PER_ARC)
                .map(|arc| arc.iter().sum())
                .collect(),
            timers: self.wheel.len(),
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
