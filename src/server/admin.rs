//! The admin listener in the loop (`--admin-addr`): a second listening socket, registered
//! with the same `Poll`, whose connections are ordinary [`Conn`](crate::conn::Conn)s in the
//! same slab, flagged [`Flags::ADMIN`]. They are read, written, timed, closed and reaped by
//! the same code as the public port's (`io.rs`, `timers.rs`): `--idle-timeout` until the
//! first byte, `--request-timeout` for the rest (408), `--write-timeout` for the answer, a
//! hang-up that lingers, and a closed connection freed only in the reap step. What differs
//! is what their requests are answered with: [`Server::answer_admin`] instead of the chat.
//! What it says is spelled in `src/admin.rs`; this file owns the listener, the cap, the
//! snapshot each scrape reads, and the X-ray's frames.
//!
//! Each admin connection gets one request (`Connection: close` on every answer), or, for
//! an X-ray viewer, frames for as long as it watches ([`State::Viewing`]), pushed by
//! [`Server::xray_tick`] through the same path as an event stream's, dropped when too far
//! behind.
//!
//! At most [`MAX_ADMIN_CONNS`] are open at once, counted apart from `--max-conns`: the
//! public port cannot fill the admin port, nor the admin port the public one. Past the cap
//! a newcomer does not wait behind connections that say nothing: the oldest one that has
//! had its answer (lingering) or has not sent a whole request gives way, and only when
//! every place holds a viewer or an answer being written is the newcomer refused (503). So
//! a scrape gets in however many idle connections sit there, and viewers
//! ([`MAX_VIEWERS`]) cannot take every place.
//!
//! It is built to cost nothing while nobody looks: no timer runs for it unless an admin
//! connection is open, the X-ray's frames are computed only while a viewer is connected,
//! and a scrape reads counters the loop keeps anyway, which leave the admin port's own
//! system calls and bytes out. No proxy is trusted on this port.

use super::budget::ACCEPTS_PER_PASS;
use super::timers::Due;
use super::Server;
use crate::admin::exposition::{self, Snapshot, States};
use crate::admin::{self, xray, Route};
use crate::clients::ClientId;
use crate::conn::{Flags, State};
use crate::http::{self, Limits, Parse, Status};
use crate::metrics::Syscalls;
use crate::outgoing::{Outgoing, Response};
use crate::stats;
use crate::sys;
use crate::timer;
use crate::waitlist::Waiter;
use mio::net::TcpListener;
use mio::{Interest, Token};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The admin listener's token; its connections' tokens are slab keys, like everyone's.
pub(super) const ADMIN_LISTENER: Token = Token(usize::MAX - 5);

/// Admin connections open at once at most. A scraper needs one at a time and a viewer one
/// each, so 32 leaves room for a few scrapers and every viewer; past it the oldest idle one
/// gives way (see the module docs). It bounds what the admin port can hold: 32 sockets and
/// at most 32 request buffers of [`ADMIN_REQUEST_BYTES`] and a read.
const MAX_ADMIN_CONNS: usize = 32;

/// X-ray viewers at once at most, so that viewers can never take every admin connection
/// and lock a scraper out; one more is answered 503.
const MAX_VIEWERS: usize = 8;

/// An admin request longer than this is refused (431): its input cap, in place of the
/// public port's `Limits::request_bytes()`. Its routes take no body.
pub(super) const ADMIN_REQUEST_BYTES: usize = 8 * 1024;

/// Admin connections are nobody's in the table of client addresses: the per-address
/// limits are the public port's. Never looked up: no proxy is trusted on the admin port
/// (so log lines name the peer), nothing of theirs reaches the chat, and the reap step
/// does not hand it back.
const ADMIN_CLIENT: ClientId = ClientId::MAX;

/// The listener, which connections are its, and what the X-ray needs between frames.
pub(super) struct Admin {
    listener: TcpListener,
    addr: SocketAddr,
    /// The admin connections in the slab, oldest first, as (key, generation): open ones
    /// and those closed this pass, until the reap step frees them (`forget_admin`). At
    /// most [`MAX_ADMIN_CONNS`] open, plus what one pass closed.
    conns: Vec<Waiter>,
    /// The X-ray's tick is on the wheel (at most once).
    ticking: bool,
    /// The last accept stopped at [`ACCEPTS_PER_PASS`]: accept again without an event.
    pub more: bool,
    /// The counters as the previous frame saw them, for rates.
    previous: Option<Previous>,
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
            conns: Vec::new(),
            ticking: false,
            more: false,
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

    /// Slab entries that are the admin port's, closed ones not yet freed included.
    pub(super) fn held(&self) -> usize {
        self.conns.len()
    }
}

impl Server {
    /// Accepts the admin connections waiting, into the common slab: at most
    /// [`ACCEPTS_PER_PASS`] a pass (then `Admin::more`, and step 3 goes on), since each one
    /// past the cap may close another to make room.
    pub(super) fn accept_admin(&mut self) {
        if let Some(admin) = self.admin.as_mut() {
            admin.more = false;
        }
        while self.accepting.taken.1 < ACCEPTS_PER_PASS {
            self.accepting.taken.1 += 1;
            let Some(admin) = self.admin.as_mut() else {
                return;
            };
            let mut socket = match admin.listener.accept() {
                Ok((socket, _)) => socket,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return, // WouldBlock, or nothing we can do now
            };
            if self.admin_live().count() >= MAX_ADMIN_CONNS && !self.make_room() {
                let _ = socket.write(&admin::refusal());
                continue;
            }
            let mut flags = Flags::default();
            flags.set(Flags::ADMIN, true);
            if let Some(key) = self.insert_conn(socket, flags, ADMIN_CLIENT) {
                let generation = self.conns[key].generation;
                let waiter = Waiter {
                    key: key as u32,
                    generation,
                };
                if let Some(admin) = self.admin.as_mut() {
                    admin.conns.push(waiter);
                }
                log::debug!("#{key} accepted on the admin port");
            }
        }
        if let Some(admin) = self.admin.as_mut() {
            admin.more = true;
        }
    }

    /// The admin connections not closed, oldest first, as (key, state). O(n) in admin
    /// connections, which are at most [`MAX_ADMIN_CONNS`] and this pass's closed ones.
    fn admin_live(&self) -> impl Iterator<Item = (usize, State)> + '_ {
        let admin = self.admin.as_ref().map_or(&[][..], |a| &a.conns[..]);
        admin
            .iter()
            .filter_map(|&conn| self.live(conn))
            .map(|key| (key, self.conns[key].state()))
    }

    /// Makes room for one more admin connection: closes the one that loses least by it,
    /// the oldest lingering one (its answer is out), else the oldest that has not sent a
    /// whole request. False when every place holds a viewer or an answer being written.
    /// Its slot is freed in the reap step, like any closed connection's.
    fn make_room(&mut self) -> bool {
        let victim = self
            .admin_live()
            .enumerate()
            .filter(|(_, (_, state))| matches!(state, State::Lingering | State::Reading))
            .min_by_key(|&(age, (_, state))| (state == State::Reading, age))
            .map(|(_, (key, _))| key);
        match victim {
            Some(key) => {
                log::debug!("#{key} gives way to a newer admin connection");
                self.close(key);
                true
            }
            None => false,
        }
    }

    /// The reap step freed admin connection `key`.
    pub(super) fn forget_admin(&mut self, key: usize) {
        if let Some(admin) = self.admin.as_mut() {
            admin.conns.retain(|conn| conn.key as usize != key);
        }
    }

    /// Answers the one request of admin connection `key` (its turn's `process_input`):
    /// the route's answer, then the hang-up every admin answer ends with; or, for the
    /// X-ray's feed, frames from the next tick on.
    pub(super) fn answer_admin(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let peer_closed = conn.flags.has(Flags::PEER_CLOSED);
        let route = match http::parse_request(&conn.input, &Limits::default()) {
            // Half a request is normal flow: more comes, or the request timer fires (or,
            // if the client has closed its side, the turn closes it).
            Parse::Partial { .. } if conn.input.len() < ADMIN_REQUEST_BYTES => return,
            Parse::Partial { .. } => Err(Status::HEADERS_TOO_LARGE),
            Parse::Invalid(status) => Err(status),
            Parse::Complete(request) => admin::route(&request),
        };
        // One request per connection: what follows it is not read as another.
        conn.input = Vec::new();
        let bytes = match route {
            Ok(Route::Metrics) => admin::metrics(&self.metrics_text()),
            Ok(Route::Feed) if self.viewers() >= MAX_VIEWERS => {
                admin::answer(Err(Status::SERVICE_UNAVAILABLE))
            }
            Ok(Route::Feed) if !peer_closed => return self.start_viewing(key),
            route => admin::answer(route),
        };
        self.respond(key, Response::Owned(bytes), true);
    }

    /// Connections watching the X-ray.
    fn viewers(&self) -> usize {
        self.admin_live()
            .filter(|&(_, state)| state == State::Viewing)
            .count()
    }

    /// A connection asked for the X-ray's feed: the stream's head now, and frames from the
    /// next tick on.
    fn start_viewing(&mut self, key: usize) {
        let head = admin::answer(Ok(Route::Feed));
        self.conns[key].start_viewing(Outgoing::new(Response::Owned(head)));
        self.clear_timer(key);
        self.write_output(key);
        let Some(admin) = self.admin.as_mut() else {
            return;
        };
        if !admin.ticking {
            admin.ticking = true;
            admin.previous = None;
            self.schedule(Due::XrayTick, Duration::ZERO);
        }
    }

    /// Four times a second while anyone watches: one frame, shared by every viewer and
    /// sent as an event stream's frames are (queued behind a full socket, the viewer
    /// dropped once too far behind).
    pub(super) fn xray_tick(&mut self) {
        let viewers: Vec<Waiter> = self
            .admin_live()
            .filter(|&(_, state)| state == State::Viewing)
            .map(|(key, _)| Waiter {
                key: key as u32,
                generation: self.conns[key].generation,
            })
            .collect();
        let Some(admin) = self.admin.as_mut() else {
            return;
        };
        if viewers.is_empty() {
            admin.ticking = false;
            return;
        }
        let frame: Rc<[u8]> = xray::event(&self.xray_frame()).into();
        for viewer in viewers {
            self.stream_send(viewer, &frame, false, false);
        }
        self.schedule(Due::XrayTick, Duration::from_millis(xray::FRAME_EVERY_MS));
    }

    /// What `/metrics` says now.
    fn metrics_text(&self) -> String {
        let mut states = States::default();
        for (_, conn) in &self.conns {
            // The public port's connections: the admin port's are not what it watches.
            if conn.flags.has(Flags::ADMIN) {
                continue;
            }
            let count = match conn.state() {
                State::Reading => &mut states.reading,
                State::Parked(_) => &mut states.parked,
                State::Streaming(_) => &mut states.streaming,
                State::Writing => &mut states.writing,
                State::Lingering => &mut states.lingering,
                State::Awaiting => &mut states.awaiting,
                State::Viewing | State::Closed => continue,
            };
            *count += 1;
        }
        exposition::render(&Snapshot {
            stats: &self.stats,
            metrics: &self.metrics,
            timers: (
                self.timers.deadlines,
                self.timers.wheel.totals().armed,
                self.timers.wheel.len(),
            ),
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
            // A viewer is the admin port's stream.
            Some(State::Streaming(_) | State::Viewing) => b's',
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
