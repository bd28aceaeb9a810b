//! The event loop: one thread, one `mio::Poll`, every connection in one `Slab`.
//!
//! One pass of the loop, always in this order ([`Server::pass`]):
//!
//! 1. **sleep**: poll until the timer wheel's next deadline, rounded up so the loop never
//!    wakes a hair early and spins; not at all while connections wait in the ready queue;
//! 2. **dispatch**: accept pending connections; continue writes on every writable
//!    one; give every readable one its turn (read, parse, answer);
//! 3. **ready**: a turn for each connection that was in line when the pass began
//!    (requests pipelined behind a response, input beyond one turn's budget, a FIN to look
//!    for after hanging up); clients left in a listener's queue by the last accept (at most
//!    [`ACCEPTS_PER_PASS`] a pass); with `--redis`, frames left from an earlier pass, and at most
//!    [`REQUESTS_RESUMED_PER_PASS`] requests whose room's copy became ready; while a
//!    shutdown tells every connection, [`SHUTDOWN_SLOTS_PER_PASS`] more of them;
//! 4. **expire**: the deadlines that passed, at most [`TIMERS_FIRED_PER_PASS`] (the rest
//!    next pass, without sleeping): the connections' (poll timeouts, idle, slow and
//!    stalled clients, lingering, heartbeats) and the server's own (accepting again after
//!    running out of descriptors, the presence sweep, the end of a shutdown's grace);
//! 5. **reap**: free the connections marked closed during this pass;
//! 6. **exit?**: when stopped, or shutting down and done (or out of grace).
//!
//! Whatever one client sends, one pass does a bounded amount of work for it: a turn
//! answers at most [`REQUESTS_PER_TURN`] requests and causes at most about
//! [`DELIVERIES_PER_TURN`] deliveries to others (one broadcast always completes), a
//! presence sweep announces at most [`NAMES_SWEPT_PER_PASS`] names, and at most
//! [`TIMERS_FIRED_PER_PASS`] deadlines fire; the rest waits its turn.
//!
//! Connections are marked closed and freed only in step 5, so that a slab key is never
//! reused while this pass may still hold it (a later event in the same batch, a waiter
//! list being broadcast to).
//!
//! This file is the loop and what it owns: the shell around the chat ([`crate::chat`]),
//! which makes every decision and touches no socket. Each of the shell's jobs has a file
//! of its own under `src/server/`, in the order a request meets them: `setup.rs`
//! (binding, limits), `accept.rs` (accepting and shedding load), `proxied.rs` (who the
//! client is behind a trusted proxy), `io.rs` (a connection's turn: reading, handing each
//! request to the chat, writing, hanging up), `effects.rs` (the one place the chat's
//! effects meet the sockets), `budget.rs` (what one pass may do for any one cause),
//! `timers.rs` (deadlines), `shutdown.rs`, `handle.rs` (running a server from other
//! threads), `redis.rs` (with `--redis`: the connections to Redis), `admin.rs` (the admin
//! listener and what it answers; its connections are ordinary ones, flagged
//! `Flags::ADMIN`) and `heartbeat.rs` (with `--workers`: answering the supervisor's pings).

mod accept;
mod admin;
mod budget;
mod effects;
pub mod handle;
mod heartbeat;
mod io;
mod proxied;
mod redis;
mod setup;
mod shutdown;
mod socket;
mod timers;

pub use crate::chat::NAMES_SWEPT_PER_PASS;
pub use budget::{
    ACCEPTS_PER_PASS, DELIVERIES_PER_TURN, REQUESTS_PER_TURN, REQUESTS_RESUMED_PER_PASS,
    SHUTDOWN_SLOTS_PER_PASS, TIMERS_FIRED_PER_PASS,
};

use crate::assets::Assets;
use crate::chat::Chat;
use crate::config::Config;
use crate::conn::Conn;
use crate::metrics::LoopMetrics;
use crate::stats::Stats;
use crate::timer;
use mio::{Events, Poll, Token};
use slab::Slab;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The listener's token; connection tokens are slab keys, which never reach this high.
const LISTENER: Token = Token(usize::MAX);
/// The token of the waker other threads use to ask the loop to stop.
const WAKER: Token = Token(usize::MAX - 1);
/// The token of the SIGINT/SIGTERM pipe.
const SIGNALS: Token = Token(usize::MAX - 2);

/// Events taken from the kernel per poll. More are simply returned by the next poll.
const EVENTS_PER_POLL: usize = 1024;

/// Whether the loop goes on after a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Run another pass.
    Continue,
    /// Stopped, or shut down gracefully: return from `run`.
    Exit,
}

/// The server: the shell around the chat. It owns the poll, the sockets, the wheel and
/// the bytes on their way out; the chat ([`Chat`]) decides, and what it decides is
/// carried out in one place (`effects.rs`).
pub struct Server {
    /// The kernel's readiness queue; every socket is registered once, for its whole life.
    poll: Poll,
    /// The kernel's events, reused by every poll.
    events: Events,
    /// The listener, and how clients are refused when the server cannot hold more.
    accepting: accept::Accepting,
    /// Every live connection, the admin port's too (`Flags::ADMIN`); the key is the
    /// connection's mio token.
    conns: Slab<Conn>,
    /// Handed out to each accepted connection, then incremented (wrapping is fine: a slab
    /// key would have to be reused 2^32 times while one stale timer waits).
    next_generation: u32,
    /// Connections owed something later in this pass or the next: the ready queue, and
    /// those marked closed, freed in the reap step.
    line: io::Line,
    /// Shared landing area for reads (see [`io::READ_CHUNK_BYTES`]), so idle connections
    /// own no read buffer.
    read_chunk: Box<[u8]>,
    /// Every deadline, the connections' and the server's own, and the clock they count.
    timers: timers::Timers,
    /// The chat's state and decisions: rooms, history, waiting lists, presence, limits,
    /// identities. It touches no socket; what it decides comes back as effects.
    chat: Chat,
    /// `www/`, in memory.
    assets: Assets,
    /// What the user asked for.
    config: Config,
    /// Counters for `/stats`, shared with other threads (tests, benchmarks).
    stats: Arc<Stats>,
    /// What the loop records about itself, for `/metrics`, the X-ray and the trace log.
    metrics: LoopMetrics,
    /// How the world outside tells the loop to stop: other threads, signals, the
    /// supervisor; and how far a shutdown has got.
    control: shutdown::Control,
    /// With `--admin-addr`: the admin listener, and which connections it accepted.
    admin: Option<admin::Admin>,
    /// With `--redis`: the connections to each shard's Redis and how they stand (empty
    /// without).
    redis: Vec<redis::RedisLink>,
    /// WebSocket messages arriving in fragments (the codec's only state).
    sockets: socket::Sockets,
}

impl Server {
    /// Runs the loop until [`ServerHandle::stop`], or until a graceful shutdown (SIGINT,
    /// SIGTERM, [`ServerHandle::shutdown`]) has flushed. Only a failing `poll` ends it with
    /// an error; anything a client does affects that client alone.
    pub fn run(mut self) -> std::io::Result<()> {
        while self.pass(None)? == Flow::Continue {}
        Ok(())
    }

    /// One pass of the loop, in the order the module docs give. `max_wait` caps the sleep,
    /// for tests and embedders that step the loop; `run` passes `None`.
    pub fn pass(&mut self, max_wait: Option<Duration>) -> std::io::Result<Flow> {
        // 1. sleep until the next event or the next deadline.
        let timeout = match (self.poll_timeout(), max_wait) {
            (Some(due), Some(cap)) => Some(due.min(cap)),
            (due, cap) => due.or(cap),
        };
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        self.metrics.syscalls.epoll_wait += 1;
        match self.poll.poll(&mut events, timeout) {
            Ok(()) => {}
            // A signal interrupted the wait; deadlines may still be due, so carry on.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let awake = Instant::now();
        self.accepting.new_pass();
        // Those in line now are served in step 3; whoever joins the line during this pass
        // waits for the next, so no connection gets two turns in one pass.
        debug_assert!(self.line.ready_batch.is_empty());
        std::mem::swap(&mut self.line.ready, &mut self.line.ready_batch);
        // 2. dispatch.
        for event in events.iter() {
            self.metrics.report.events += 1;
            match event.token() {
                LISTENER => self.accept_all(),
                WAKER => self.on_wake(),
                SIGNALS => self.on_signal(),
                admin::ADMIN_LISTENER => self.accept_admin(),
                heartbeat::SUPERVISOR => self.on_supervisor(),
                token if redis::shard_of_token(token).is_some() => self.on_backplane_event(token),
                Token(key) => self.on_conn_event(key, event),
            }
        }
        self.events = events;
        // 3. ready, 4. expire, 5. reap.
        self.serve_ready();
        self.accept_more();
        self.serve_backplane();
        self.resume_waiting();
        self.tell_of_shutdown();
        self.expire_timers();
        self.reap_closed();
        self.metrics
            .pass_done(self.metrics.report.events, awake.elapsed());
        self.trace_pass();
        // 6. exit?
        Ok(self.flow())
    }

    /// How long poll may sleep: until the wheel's next deadline, rounded up to a whole
    /// millisecond; forever when nothing is scheduled; not at all when work is in line.
    fn poll_timeout(&mut self) -> Option<Duration> {
        let redis_more = self.backplane_has_more();
        let shutting = self.control.told_up_to.is_some();
        let more = redis_more || self.chat.is_resuming() || shutting || self.more_to_accept();
        if !self.line.ready.is_empty() || more {
            return Some(Duration::ZERO);
        }
        let tick = self.timers.wheel.next_deadline()?;
        let deadline = Duration::from_nanos(tick * timer::TICK.as_nanos() as u64);
        let wait = deadline.saturating_sub(self.timers.started.elapsed());
        Some(Duration::from_millis(
            wait.as_nanos().div_ceil(1_000_000) as u64
        ))
    }

    /// Step 6: whether the loop goes on.
    fn flow(&self) -> Flow {
        if self.control.stop.load(Ordering::Acquire) {
            log::info!("stopping with {} connections open", self.conns.len());
            return Flow::Exit;
        }
        if self.control.draining && self.public_conns() == 0 {
            log::info!("shutdown complete: every client answered");
            return Flow::Exit;
        }
        if self.control.grace_over {
            log::warn!(
                "shutdown grace over with {} connections still open; closing them",
                self.conns.len()
            );
            return Flow::Exit;
        }
        Flow::Continue
    }

    fn trace_pass(&mut self) {
        let report = std::mem::take(&mut self.metrics.report);
        if log::log_enabled!(log::Level::Trace) {
            log::trace!(
                "pass: {} events, {} accepted, {} timers fired, {} bytes written, {} closed; \
                 {} connections, {} polls waiting, {} in line, next deadline in {:?}",
                report.events,
                report.accepted,
                report.timers_fired,
                report.bytes_written,
                report.closed,
                self.conns.len(),
                self.chat.waiting(),
                self.line.ready.len(),
                self.poll_timeout(),
            );
        }
    }
}
