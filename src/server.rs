//! The event loop: one thread, one `mio::Poll`, every connection in one `Slab`.
//!
//! One pass of the loop, always in this order (see [`Server::run`]):
//!
//! 1. **sleep**: ask the timer wheel for its next deadline and poll until then (rounded up,
//!    so the loop never wakes a hair early and spins; not at all while connections are in
//!    the ready queue);
//! 2. **dispatch**: accept every pending connection; give every readable one its turn
//!    (read, parse, answer); continue writes on every writable one;
//! 3. **ready**: a turn for each connection that had work left when its turn ended
//!    (requests pipelined behind a response, input beyond one turn's budget, a FIN to look
//!    for after hanging up);
//! 4. **expire**: answer every poll whose timeout passed, drop idle, slow and stalled
//!    clients, close lingering connections;
//! 5. **sweep**: tell rooms which names left (a bounded number per pass);
//! 6. **reap**: free the connections marked closed during this pass;
//! 7. **exit?**: when stopping, or draining after SIGINT/SIGTERM and done (or out of grace).
//!
//! Whatever one client sends, one pass does a bounded amount of work for it: a turn
//! answers at most [`REQUESTS_PER_TURN`] requests and causes at most about
//! [`DELIVERIES_PER_TURN`] deliveries to others (one broadcast always completes), and a
//! sweep takes at most [`NAMES_SWEPT_PER_PASS`] names; what is left waits its turn.
//!
//! Connections are marked closed and freed only in step 6 so that a slab key is never
//! reused while this pass may still hold it (a later event in the same batch, a waiter
//! list being broadcast to).

mod rooms;

use crate::assets::Assets;
use crate::chat::{self, Chat};
use crate::clients::Clients;
use crate::config::{Config, RESERVED_DESCRIPTORS};
use crate::conn::{Conn, Deadline, Membership, State, Timer};
use crate::http::{self, Status};
use crate::outgoing::{Flushed, Outgoing, Response};
use crate::random::Random;
use crate::room::HistoryLimits;
use crate::routes::{self, Action, Next};
use crate::stats::{self, Stats};
use crate::sys;
use crate::timer::{self, TimerWheel};
use crate::waitlist::{ListKind, Waiter};
use mio::event::Event;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The listener's token; connection tokens are slab keys, which never reach this high.
const LISTENER: Token = Token(usize::MAX);
/// The token of the waker other threads use to ask the loop to stop.
const WAKER: Token = Token(usize::MAX - 1);
/// The token of the SIGINT/SIGTERM pipe.
const SIGNALS: Token = Token(usize::MAX - 2);

/// When accept fails for lack of descriptors and no spare is left to shed load with, the
/// listener is taken out of the poll set for this long instead of failing again at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Bytes of events that may queue behind a stream's socket before the stream is dropped as
/// too slow: a reader this far behind would only fall further behind.
const STREAM_BACKLOG_BYTES: usize = 256 * 1024;

/// How often presence is swept for names whose window has passed.
const PRESENCE_SWEEP: Duration = Duration::from_secs(1);

/// A client told to come back after shutdown waits a random delay in this range (ms), so
/// that thousands of browsers do not return in one wave.
const RETRY_DELAY_MS: std::ops::RangeInclusive<u64> = 500..=5_000;

/// Events taken from the kernel per poll. More are simply returned by the next poll.
const EVENTS_PER_POLL: usize = 1024;

/// Requests one connection may have answered in one turn. A client that pipelines more
/// (20,000 tiny posts in one send froze everyone else for seconds) goes back in line.
pub const REQUESTS_PER_TURN: usize = 16;

/// Deliveries to other clients that one connection's requests may cause in one turn. A
/// post to a room of thousands ends its poster's turn at once; a broadcast is never cut
/// short, because "everyone waiting gets it in one pass" is the point of the server.
pub const DELIVERIES_PER_TURN: u64 = 1024;

/// Bytes read per turn, only to be discarded, from a stream or a connection we are hanging
/// up on: a client sending as fast as loopback allows cannot keep the loop reading.
const DISCARD_BYTES_PER_TURN: usize = 64 * 1024;

/// Names one presence sweep may take (and announce as leave events) per pass; the rest
/// go in the next pass, which comes at once.
pub const NAMES_SWEPT_PER_PASS: usize = 256;

/// Whether the loop goes on after a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Run another pass.
    Continue,
    /// Stopped, or shut down gracefully: return from `run`.
    Exit,
}

/// One read's worth of bytes. Reads land here first and only a partial request is copied
/// into the connection, so idle connections own no read buffer.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// How long a connection we are hanging up on may keep sending before we close it anyway.
const LINGER: Duration = Duration::from_secs(2);

/// What a timer carries: the connection's slab key and generation, so a timer whose
/// connection is gone (and whose key was reused) is recognised and ignored.
type TimerPayload = (u32, u32);

/// A handle other threads (tests, benchmarks, signal handlers) keep to a running server.
#[derive(Clone)]
pub struct ServerHandle {
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    drain: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ServerHandle {
    /// The server's live counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Asks the loop to stop now; it returns from [`Server::run`] at the end of its pass,
    /// dropping every connection.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        // A failed wake only means the loop is already gone.
        let _ = self.waker.wake();
    }

    /// Asks for a graceful shutdown, as SIGTERM does: stop accepting, tell every waiting
    /// client to come back later, flush, and return once done or after the grace period.
    pub fn shutdown(&self) {
        self.drain.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }
}

/// Counts of what one loop pass did, for the trace log a learner reads.
#[derive(Default)]
struct PassReport {
    events: usize,
    accepted: usize,
    timers_fired: usize,
    bytes_written: usize,
    closed: usize,
}

/// The server: listener, connections, timers and the chat room, driven by one loop.
pub struct Server {
    poll: Poll,
    /// `None` once shutdown began: new clients are refused by the kernel from then on.
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    /// Every live connection; the key is the connection's mio token.
    conns: Slab<Conn>,
    /// Poll timeouts and linger deadlines, in ticks since `started`.
    wheel: TimerWheel<TimerPayload>,
    chat: Chat,
    assets: Assets,
    config: Config,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    drain: Arc<AtomicBool>,
    waker: Arc<Waker>,
    /// SIGINT/SIGTERM as events, when `config.handle_signals`.
    signals: Option<signal_hook_mio::v1_0::Signals>,
    /// Connections held at most; past it, new ones are refused with 503.
    max_conns: usize,
    /// A descriptor held in reserve: when accept fails with EMFILE we close it, accept the
    /// waiting client, answer 503 and close that, then take the spare back. Without it the
    /// client would stay in the kernel's queue and the edge-triggered listener would never
    /// report it again (or, level-triggered, report it forever: the classic 100% CPU spin).
    spare_descriptor: Option<File>,
    /// True from the first EMFILE until an accept succeeds: log once per episode.
    out_of_descriptors: bool,
    /// Set while the listener is out of the poll set after EMFILE with no spare.
    accept_paused_until: Option<Instant>,
    /// Set once shutdown began: the moment to give up flushing and exit.
    draining_until: Option<Instant>,
    /// Picks the epoch and each client's retry delay after shutdown.
    random: Random,
    /// Tick 0 of the timer wheel.
    started: Instant,
    /// Shared landing area for reads (see [`READ_CHUNK_BYTES`]).
    read_chunk: Box<[u8]>,
    /// Handed out to each accepted connection, then incremented (wrapping is fine: a slab
    /// key would have to be reused 2^32 times while one stale timer waits).
    next_generation: u32,
    /// Connections marked `Closed` this pass, freed in the reap step.
    closing: Vec<usize>,
    /// Connections with work left when their turn ended, served in step 3 of the next
    /// pass (each at most once: `Conn::ready`).
    ready: Vec<TimerPayload>,
    /// The line as it stood when this pass began: served in step 3 of this pass.
    ready_batch: Vec<TimerPayload>,
    /// Deliveries caused by the requests of the connection whose turn it is.
    turn_deliveries: u64,
    /// What each client address holds, for limits per client.
    clients: Clients,
    /// The kernel's events, reused by every poll.
    events: Events,
    /// Reused buffer for the timers one expire step fires.
    fired: Vec<TimerPayload>,
    /// `{"error":"timeout"}`, encoded once and shared by every poll that times out.
    timeout_response: Rc<[u8]>,
    /// Names of event streams opened with `?name=`, by connection key, for presence.
    stream_names: HashMap<usize, String>,
    /// When presence next needs sweeping for names that left; `None` while nobody is named.
    presence_due: Option<Instant>,
    /// `: keep-alive`, shared by every stream's heartbeat.
    heartbeat_frame: Rc<[u8]>,
    /// The 503 written to clients refused at accept (over `max_conns`, out of descriptors).
    refusal: Vec<u8>,
    report: PassReport,
}

impl Server {
    /// Binds the listening socket and loads the static files. Nothing runs until [`run`].
    ///
    /// [`run`]: Server::run
    pub fn bind(config: Config) -> io::Result<Server> {
        let assets = match &config.www {
            Some(dir) => Assets::load(dir).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot read www dir {}: {e}", dir.display()),
                )
            })?,
            None => Assets::empty(),
        };
        let mut listener = listen(config.addr, config.listen_backlog)?;
        let local_addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let signals = if config.handle_signals {
            let mut signals = signal_hook_mio::v1_0::Signals::new([libc::SIGINT, libc::SIGTERM])?;
            poll.registry()
                .register(&mut signals, SIGNALS, Interest::READABLE)?;
            Some(signals)
        } else {
            None
        };
        let stats = Arc::new(Stats::default());
        let (soft_limit, _) = sys::open_files_limit()?;
        let max_conns = config
            .max_conns
            .unwrap_or_else(|| soft_limit.saturating_sub(RESERVED_DESCRIPTORS).max(1) as usize);
        stats.open_files_limit.store(soft_limit, Ordering::Relaxed);
        stats.max_conns.store(max_conns as u64, Ordering::Relaxed);
        stats.rooms.store(1, Ordering::Relaxed);
        let mut random = Random::from_clock();
        Ok(Server {
            poll,
            listener: Some(listener),
            local_addr,
            conns: Slab::new(),
            wheel: TimerWheel::new(),
            chat: Chat::new(
                random.next_u64() as u32,
                HistoryLimits {
                    messages: config.history_messages,
                    bytes: config.history_bytes,
                },
                config.max_rooms,
            ),
            assets,
            config,
            stats,
            stop: Arc::new(AtomicBool::new(false)),
            drain: Arc::new(AtomicBool::new(false)),
            waker,
            signals,
            max_conns,
            spare_descriptor: open_spare_descriptor(),
            out_of_descriptors: false,
            accept_paused_until: None,
            draining_until: None,
            random,
            started: Instant::now(),
            read_chunk: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
            next_generation: 1,
            closing: Vec::new(),
            ready: Vec::new(),
            ready_batch: Vec::new(),
            turn_deliveries: 0,
            clients: Clients::default(),
            events: Events::with_capacity(EVENTS_PER_POLL),
            fired: Vec::new(),
            timeout_response: chat::timeout_response(),
            stream_names: HashMap::new(),
            presence_due: None,
            heartbeat_frame: Rc::from(&b": keep-alive\n\n"[..]),
            refusal: {
                let headers = [("Retry-After", "1")];
                let mut refusal =
                    http::error_response(Status::SERVICE_UNAVAILABLE, &headers, false);
                http::insert_header_line(&mut refusal, b"Connection: close\r\n");
                refusal
            },
            report: PassReport::default(),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The connection cap in force.
    pub fn max_conns(&self) -> usize {
        self.max_conns
    }

    /// Number of static paths loaded from the www directory.
    pub fn asset_count(&self) -> usize {
        self.assets.len()
    }

    /// A handle for other threads: counters and a way to stop the loop.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            stats: Arc::clone(&self.stats),
            stop: Arc::clone(&self.stop),
            drain: Arc::clone(&self.drain),
            waker: Arc::clone(&self.waker),
        }
    }

    /// Runs the loop until [`ServerHandle::stop`], or until a graceful shutdown (SIGINT,
    /// SIGTERM, [`ServerHandle::shutdown`]) has flushed. Only a failing `poll` ends it with
    /// an error; anything a client does affects that client alone.
    pub fn run(mut self) -> io::Result<()> {
        while self.pass(None)? == Flow::Continue {}
        Ok(())
    }

    /// One pass of the loop, in the order the module docs give. `max_wait` caps the sleep,
    /// for tests and embedders that step the loop; `run` passes `None`.
    pub fn pass(&mut self, max_wait: Option<Duration>) -> io::Result<Flow> {
        // 1. sleep until the next event or the next timer.
        let timeout = match (self.poll_timeout(), max_wait) {
            (Some(due), Some(cap)) => Some(due.min(cap)),
            (due, cap) => due.or(cap),
        };
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        match self.poll.poll(&mut events, timeout) {
            Ok(()) => {}
            // A signal interrupted the wait; timers may still be due, so carry on.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        // Those in line now are served in step 3; whoever joins the line during this pass
        // waits for the next, so no connection gets two turns in one pass.
        debug_assert!(self.ready_batch.is_empty());
        std::mem::swap(&mut self.ready, &mut self.ready_batch);
        // 2. dispatch.
        for event in events.iter() {
            self.report.events += 1;
            match event.token() {
                LISTENER => self.accept_all(),
                WAKER => {
                    if self.drain.load(Ordering::Acquire) {
                        self.begin_shutdown("shutdown requested");
                    }
                }
                SIGNALS => self.on_signal(),
                Token(key) => self.on_conn_event(key, event),
            }
        }
        self.events = events;
        self.resume_accepting_if_due();
        // 3. give a turn to connections that had work left when theirs ended, 4. expire
        // timers, 5. sweep presence, 6. reap.
        self.serve_ready();
        self.expire_timers();
        self.sweep_presence_if_due();
        self.reap_closed();
        self.trace_pass();
        // 7. exit?
        if self.stop.load(Ordering::Acquire) {
            log::info!("stopping with {} connections open", self.conns.len());
            return Ok(Flow::Exit);
        }
        if let Some(until) = self.draining_until {
            if self.conns.is_empty() {
                log::info!("shutdown complete: every client answered");
                return Ok(Flow::Exit);
            }
            if Instant::now() >= until {
                log::warn!(
                    "shutdown grace over with {} connections still open; closing them",
                    self.conns.len()
                );
                return Ok(Flow::Exit);
            }
        }
        Ok(Flow::Continue)
    }

    /// How long poll may sleep: until the wheel's next deadline, rounded up to a whole
    /// millisecond; forever when nothing is scheduled; not at all when work is queued.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let timer = self.wheel.next_deadline().map(|tick| {
            let deadline = Duration::from_nanos(tick * timer::TICK.as_nanos() as u64);
            deadline.saturating_sub(now - self.started)
        });
        // The few deadlines that are not per connection.
        let others = [
            self.accept_paused_until,
            self.draining_until,
            self.presence_due,
        ]
        .into_iter()
        .flatten()
        .map(|at| at.saturating_duration_since(now));
        let wait = timer.into_iter().chain(others).min()?;
        Some(Duration::from_millis(
            wait.as_nanos().div_ceil(1_000_000) as u64
        ))
    }

    /// The tick a timer of `after` from now is due at, rounded up so it is never early.
    fn deadline_after(&self, after: Duration) -> u64 {
        timer::ticks_ceil(self.started.elapsed() + after)
    }

    fn trace_pass(&mut self) {
        let report = std::mem::take(&mut self.report);
        if log::log_enabled!(log::Level::Trace) {
            log::trace!(
                "pass: {} events, {} accepted, {} timers fired, {} bytes written, {} closed; \
                 {} connections, {} polls waiting, next timer in {:?}",
                report.events,
                report.accepted,
                report.timers_fired,
                report.bytes_written,
                report.closed,
                self.conns.len(),
                self.chat.waiting(),
                self.poll_timeout(),
            );
        }
    }

    // ----- step 2: accept and dispatch --------------------------------------------------

    /// Accepts until the kernel's queue is empty: the listener is edge-triggered, so a
    /// connection left in the queue would not be reported again.
    fn accept_all(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((socket, addr)) => {
                    if self.out_of_descriptors {
                        self.out_of_descriptors = false;
                        log::info!("descriptors available again; accepting");
                    }
                    if self.conns.len() >= self.max_conns {
                        stats::add(&self.stats.refused_over_cap, 1);
                        log::debug!("refusing {addr}: {} connections open", self.conns.len());
                        refuse(socket, &self.refusal);
                    } else {
                        self.add_connection(socket, addr);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The client gave up between SYN and accept; the next one may be fine.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) if is_out_of_descriptors(&e) => {
                    if !self.shed_one_client(&e) {
                        return;
                    }
                }
                Err(e) => {
                    // Nothing else is expected; retrying now would likely fail the same way.
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Out of descriptors with clients waiting in the kernel's queue. Frees the spare,
    /// accepts one client, answers it 503 and closes it, then takes the spare back. Returns
    /// whether accepting may go on (false: the queue is empty, or we had to pause).
    fn shed_one_client(&mut self, error: &io::Error) -> bool {
        if !self.out_of_descriptors {
            self.out_of_descriptors = true;
            log::warn!(
                "out of file descriptors ({error}; limit {}): answering new clients 503 until some close",
                stats::get(&self.stats.open_files_limit)
            );
        }
        let Some(listener) = self.listener.as_ref() else {
            return false;
        };
        if let Some(spare) = self.spare_descriptor.take() {
            drop(spare);
            let shed = match listener.accept() {
                Ok((socket, _)) => {
                    stats::add(&self.stats.refused_emfile, 1);
                    refuse(socket, &self.refusal);
                    true
                }
                Err(_) => false,
            };
            self.spare_descriptor = open_spare_descriptor();
            if self.spare_descriptor.is_some() {
                return shed;
            }
        }
        // No spare to shed load with: stop listening for a moment rather than spin.
        if let Some(listener) = self.listener.as_mut() {
            let _ = self.poll.registry().deregister(listener);
        }
        self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
        stats::add(&self.stats.refused_emfile, 1);
        false
    }

    fn resume_accepting_if_due(&mut self) {
        let Some(until) = self.accept_paused_until else {
            return;
        };
        if Instant::now() < until {
            return;
        }
        self.accept_paused_until = None;
        self.spare_descriptor = self.spare_descriptor.take().or_else(open_spare_descriptor);
        if let Some(listener) = self.listener.as_mut() {
            if let Err(e) = self
                .poll
                .registry()
                .register(listener, LISTENER, Interest::READABLE)
            {
                log::error!("cannot resume accepting: {e}");
                return;
            }
            // Edge-triggered: clients that queued while we were away raise no new edge.
            self.accept_all();
        }
    }

    fn add_connection(&mut self, mut socket: mio::net::TcpStream, addr: SocketAddr) {
        // Responses are written whole; Nagle would only delay the next one.
        let _ = socket.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        // Registered once for both directions, edge-triggered: a write that completes at
        // once (nearly all of them) then costs no epoll_ctl, and a slow reader's socket
        // reports WRITABLE by itself when it drains.
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut socket, Token(key), interest)
        {
            log::warn!("cannot register {addr}: {e}");
            return;
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let client = self.clients.connected(addr.ip());
        entry.insert(Conn::new(socket, generation, client));
        stats::add(&self.stats.connections, 1);
        stats::add(&self.stats.accepted, 1);
        self.report.accepted += 1;
        self.set_timer(key, Deadline::Idle);
        log::debug!("#{key} accepted from {addr}");
    }

    fn on_conn_event(&mut self, key: usize, event: &Event) {
        // Never trust a token: the connection may have been closed earlier in this pass.
        match self.conns.get(key) {
            None => return,
            Some(conn) if conn.state == State::Closed => return,
            Some(_) => {}
        }
        if event.is_writable() && self.conns[key].output.is_some() {
            self.write_output(key);
        }
        // A connection already in line gets its turn there; edge-triggered, nothing it
        // sent is lost meanwhile, because its turn reads until `WouldBlock`.
        let in_line = self.conns[key].ready;
        if !in_line && (event.is_readable() || event.is_read_closed() || event.is_error()) {
            self.turn(key);
        }
    }

    /// One connection's turn: read what it sent (up to its input cap), answer up to a
    /// turn's worth of its requests, and if it has more of either, put it back in line
    /// behind everyone else (the ready queue, served in step 3 of a later pass). Whatever
    /// one client sends, its turn is bounded: [`REQUESTS_PER_TURN`] requests,
    /// [`DELIVERIES_PER_TURN`] deliveries to others, one input buffer of bytes.
    fn turn(&mut self, key: usize) {
        let more_to_read = self.read_input(key);
        let more_to_answer = self.process_input(key);
        self.arm_reading_timer(key);
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        // Writing or parked: the response's end puts it back in line (`response_done`).
        let can_go_on = matches!(
            conn.state,
            State::Reading | State::Lingering | State::Streaming(_)
        );
        if can_go_on && (more_to_read || more_to_answer) {
            self.queue_ready(key);
        }
    }

    /// Puts a connection in the ready queue, once.
    fn queue_ready(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.ready {
            conn.ready = true;
            self.ready.push((key as u32, conn.generation));
        }
    }

    /// Step 3: a turn for each connection that was in line when this pass began; those
    /// that still have work go back in line for the next pass, after everyone's events.
    fn serve_ready(&mut self) {
        let mut batch = std::mem::take(&mut self.ready_batch);
        for &(key, generation) in &batch {
            let key = key as usize;
            match self.conns.get_mut(key) {
                Some(conn) if conn.generation == generation && conn.state != State::Closed => {
                    conn.ready = false;
                }
                _ => continue,
            }
            self.turn(key);
        }
        batch.clear();
        self.ready_batch = batch;
    }

    /// Reads what the socket holds into the connection's input, until `WouldBlock` or the
    /// input cap (then more may wait in the kernel: returns true). Streams and lingering
    /// connections read only to discard, at most [`DISCARD_BYTES_PER_TURN`] a turn.
    fn read_input(&mut self, key: usize) -> bool {
        let cap = self.config.limits.request_bytes();
        let mut discarded = 0;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return false;
            };
            // Nothing a stream sends is a request (its response never ends), and we are
            // hanging up on a lingering client: read only to see the FIN.
            let discarding = matches!(conn.state, State::Lingering | State::Streaming(_));
            match conn.state {
                State::Closed => return false,
                _ if discarding && discarded >= DISCARD_BYTES_PER_TURN => return true,
                // A full request's worth is buffered: leave the rest in the kernel until
                // this has been answered.
                _ if !discarding && conn.input.len() >= cap => {
                    conn.input_paused = true;
                    return true;
                }
                _ => {}
            }
            match conn.socket.read(&mut self.read_chunk) {
                Ok(0) => {
                    conn.peer_closed = true;
                    conn.input_paused = false;
                    self.on_peer_closed(key);
                    return false;
                }
                Ok(n) if discarding => discarded += n,
                Ok(n) => {
                    conn.input.extend_from_slice(&self.read_chunk[..n]);
                    // We stop reading at the cap, so one chunk over it is the most a
                    // client can make us hold.
                    debug_assert!(conn.input.len() <= cap + READ_CHUNK_BYTES);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.input_paused = false;
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("#{key} read error: {e}");
                    self.close(key);
                    return false;
                }
            }
        }
    }

    /// The client will send nothing more. A parked poll whose client left is dropped at once
    /// (this is how a vanished browser frees its slot); a response in flight is finished.
    fn on_peer_closed(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        match conn.state {
            State::Writing => conn.close_after_write = true,
            State::Closed => {}
            State::Reading | State::Parked(_) | State::Streaming(_) | State::Lingering => {
                self.close(key)
            }
        }
    }

    /// Answers the complete requests in the connection's input, in order, until the turn's
    /// budget is spent or the connection leaves `Reading` (parked, or a response is still
    /// being written). Returns true when the budget ran out with input left to answer.
    fn process_input(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if conn.state != State::Reading || conn.input.is_empty() {
            return false;
        }
        // Taken out while its requests are answered (the handlers need all of `self`) and
        // put back once, minus what was answered: one move of the leftover bytes per turn,
        // not one per request.
        let input = std::mem::take(&mut conn.input);
        let mut used = 0;
        let mut answered = 0;
        self.turn_deliveries = 0;
        let out_of_budget = loop {
            if answered == REQUESTS_PER_TURN || self.turn_deliveries >= DELIVERIES_PER_TURN {
                break used < input.len();
            }
            let conn = &self.conns[key]; // closing only marks it; it is freed in step 6
            if conn.state != State::Reading || used == input.len() {
                break false;
            }
            let context = routes::Context {
                assets: &self.assets,
                max_message_bytes: self.config.max_message_bytes,
                cors_origin: self.config.cors_origin.as_deref(),
            };
            match routes::next(&input[used..], &self.config.limits, &context) {
                // Normal flow: the rest of the request has not arrived yet.
                Next::NeedMore { awaits_continue } => {
                    let conn = &mut self.conns[key];
                    if awaits_continue && !conn.continue_sent {
                        conn.continue_sent = true;
                        if let Err(e) = conn.write_interim(http::CONTINUE) {
                            log::debug!("#{key} cannot send 100 Continue: {e}");
                            self.close(key);
                        }
                    }
                    break false;
                }
                Next::Reject(status) => {
                    log::debug!("#{key} {} → {} {}", conn.peer(), status.code, status.reason);
                    used = input.len();
                    self.reject(key, status);
                    break false;
                }
                Next::Request {
                    action,
                    close,
                    http10,
                    consumed,
                } => {
                    stats::add(&self.stats.requests, 1);
                    if log::log_enabled!(log::Level::Debug) {
                        let request = input[used..used + consumed].trim_ascii_start();
                        let line = request.split(|&b| b == b'\r').next();
                        let line = String::from_utf8_lossy(line.unwrap_or_default());
                        log::debug!("#{key} {line}");
                    }
                    used += consumed;
                    answered += 1;
                    let conn = &mut self.conns[key];
                    conn.continue_sent = false;
                    conn.http10 = http10;
                    // While draining for shutdown every response is the connection's last.
                    let close = close || self.draining_until.is_some();
                    self.apply(key, action, close);
                }
            }
        };
        let conn = &mut self.conns[key];
        debug_assert!(
            conn.input.is_empty(),
            "nothing reads while requests are answered"
        );
        // A closed or lingering connection discards what it sent; an emptied input gives
        // its buffer back, so a parked poll owns no heap memory.
        let keep = !matches!(conn.state, State::Closed | State::Lingering) && used < input.len();
        if keep {
            let mut input = input;
            input.drain(..used);
            conn.input = input;
        }
        out_of_budget
    }

    /// Answers an invalid request and hangs up: what follows it cannot be trusted to start
    /// at a request boundary.
    fn reject(&mut self, key: usize, status: Status) {
        if status == Status::REQUEST_TIMEOUT {
            stats::add(&self.stats.dropped_request_timeout, 1);
        }
        let response = http::error_response(status, &[], false);
        self.respond(key, Response::Owned(response), true);
    }

    fn apply(&mut self, key: usize, action: Action, close: bool) {
        match action {
            Action::Reply {
                response,
                close: reply_close,
            } => self.respond(key, response, close || reply_close),
            Action::Park if self.draining_until.is_some() => {
                let response = self.retry_later_response();
                self.respond(key, response, true);
            }
            Action::Park => {
                let lobby = self.chat.lobby();
                self.park(key, lobby, ListKind::Classic, close);
            }
            Action::Broadcast { from, message } => {
                let lobby = self.chat.lobby();
                self.post(lobby, &from, &message, None);
                let response = Response::Owned(chat::posted_response());
                self.respond(key, response, close);
            }
            Action::Stats => {
                let body = self.stats.to_json(sys::rss_bytes());
                let response = http::encode_response(
                    http::Status::OK,
                    http::JSON,
                    &[],
                    body.as_bytes(),
                    false,
                );
                self.respond(key, Response::Owned(response), close);
            }
            Action::RoomPoll { room, since, name } => {
                self.room_poll(key, &room, since, name, close)
            }
            Action::RoomPost { room, message } => self.room_post(key, &room, message, close),
            Action::Typing { room, from } => self.typing(key, &room, from, close),
            Action::Presence { room } => self.presence(key, &room, close),
            Action::Stream { room, since, name } => {
                self.open_stream(key, &room, since, name, close)
            }
        }
    }

    // ----- parking and broadcasting -----------------------------------------------------

    /// Holds the connection as a pending poll in `room` until a message, an event or its
    /// timeout.
    fn park(&mut self, key: usize, room: u32, list: ListKind, close: bool) {
        let membership = self.join(key, room, list);
        self.conns[key].close_after_write = close;
        self.conns[key].state = State::Parked(membership);
        self.set_timer(key, Deadline::Poll);
        stats::add(&self.stats.pending_polls, 1);
    }

    /// Adds the connection to one of a room's lists.
    fn join(&mut self, key: usize, room: u32, list: ListKind) -> Membership {
        let waiter = Waiter {
            key: key as u32,
            generation: self.conns[key].generation,
        };
        let index = self.chat.list(room, list).join(waiter);
        Membership { room, list, index }
    }

    /// Takes a parked poll or a stream out of its room's list (answered, timed out, gone).
    fn unpark(&mut self, key: usize) {
        let membership = match self.conns[key].state {
            State::Parked(m) => {
                stats::sub(&self.stats.pending_polls, 1);
                m
            }
            State::Streaming(m) => {
                stats::sub(&self.stats.streams, 1);
                if let Some(name) = self.stream_names.remove(&key) {
                    let (now, window) = (self.now_ms(), self.presence_window_ms());
                    self.chat
                        .room(m.room)
                        .names
                        .stream_closed(&name, now, window);
                    self.schedule_presence_sweep();
                }
                m
            }
            _ => return,
        };
        let list = self.chat.list(membership.room, membership.list);
        debug_assert_eq!(list.at(membership.index).map(|w| w.key as usize), Some(key));
        if let Some(moved) = list.leave(membership.index) {
            // The last waiter now sits where this one was; tell its connection.
            match &mut self.conns[moved.key as usize].state {
                State::Parked(m) | State::Streaming(m) => m.index = membership.index,
                other => debug_assert!(false, "waiter in state {other:?}"),
            }
        }
    }

    /// Answers every poll parked in `room`'s `list` with `response`: encoded once, shared
    /// by all of them, one `write` each. Parked connections are registered for WRITABLE
    /// already, so delivery needs no `epoll_ctl`; the only allocation is the response.
    ///
    /// O(waiting clients), which is the point: every one of them must be written to. A
    /// socket whose buffer is full keeps its unwritten tail and waits for WRITABLE; it never
    /// holds up the ones after it.
    fn answer_parked(&mut self, room: u32, list: ListKind, response: &Rc<[u8]>) -> u64 {
        let waiters = self.chat.list(room, list).take();
        let mut answered = 0;
        for waiter in &waiters {
            let key = waiter.key as usize;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            // Leaving the list always updates it, so a mismatch would be a bug; skip the
            // entry rather than write to a stranger.
            if conn.generation != waiter.generation || !matches!(conn.state, State::Parked(_)) {
                debug_assert!(false, "stale waiter {waiter:?}");
                continue;
            }
            // The whole list was taken, so there is no index to fix: just leave the state.
            conn.state = State::Writing;
            let close = conn.close_after_write;
            stats::sub(&self.stats.pending_polls, 1);
            self.respond(key, Response::Shared(Rc::clone(response)), close);
            answered += 1;
        }
        self.chat.list(room, list).recycle(waiters);
        answered
    }

    // ----- writing ----------------------------------------------------------------------

    /// Starts sending `response` and writes as much as the socket takes right away. The
    /// one place a response meets its connection, so the one place that says what becomes
    /// of the connection after it (responses are encoded without it, to be shareable).
    fn respond(&mut self, key: usize, response: Response, close: bool) {
        let conn = &mut self.conns[key];
        debug_assert!(conn.output.is_none(), "one response at a time");
        conn.close_after_write |= close;
        let response = match http::connection_line(conn.close_after_write, conn.http10) {
            Some(line) => response.with_header_line(line),
            None => response,
        };
        conn.output = Some(Outgoing::new(response));
        conn.state = State::Writing;
        self.clear_timer(key);
        self.write_output(key);
    }

    fn write_output(&mut self, key: usize) {
        loop {
            match self.conns[key].flush() {
                Ok((flushed, sent)) => {
                    stats::add(&self.stats.bytes_out, sent as u64);
                    self.report.bytes_written += sent;
                    match flushed {
                        // The WRITABLE edge will bring us back here. The write deadline
                        // bounds how long a client may go without taking a byte: any
                        // progress starts it over, so a slow but steady reader of a long
                        // response is never taken for a stalled one.
                        Flushed::Blocked => {
                            if sent > 0 || self.conns[key].timer.is_none() {
                                self.set_timer(key, Deadline::Write);
                            }
                            return;
                        }
                        // A stream replaying history: its page is out, queue the next.
                        Flushed::Refill(after) => {
                            self.refill_stream(key, after);
                            continue;
                        }
                        Flushed::Done if matches!(self.conns[key].state, State::Streaming(_)) => {
                            self.stream_drained(key);
                            return;
                        }
                        Flushed::Done => {
                            self.response_done(key);
                            return;
                        }
                    }
                }
                Err(e) => {
                    log::debug!("#{key} write error: {e}");
                    self.close(key);
                    return;
                }
            }
        }
    }

    /// The whole response is with the kernel: hang up, or get ready for the next request
    /// (which may already be buffered: then the connection goes in line for its turn).
    fn response_done(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.close_after_write || conn.peer_closed {
            self.linger(key);
            return;
        }
        conn.state = State::Reading;
        if !conn.input.is_empty() || conn.input_paused {
            self.queue_ready(key);
        }
        self.clear_timer(key);
        self.arm_reading_timer(key);
    }

    // ----- closing ----------------------------------------------------------------------

    /// Shuts our side down and waits briefly for the client to close, reading and
    /// discarding what it still sends (see [`State::Lingering`]).
    fn linger(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.peer_closed || conn.socket.shutdown(Shutdown::Write).is_err() {
            self.close(key);
            return;
        }
        conn.state = State::Lingering;
        conn.input = Vec::new();
        self.set_timer(key, Deadline::Linger);
        // The client may have closed already; its FIN was reported only once, so look for
        // it on the connection's next turn.
        self.queue_ready(key);
    }

    /// Marks a connection closed: it leaves the waiter list and the wheel now, and its slot
    /// is freed in the reap step.
    fn close(&mut self, key: usize) {
        if self.conns[key].state == State::Closed {
            return;
        }
        self.unpark(key);
        self.clear_timer(key);
        let conn = &mut self.conns[key];
        conn.state = State::Closed;
        conn.output = None;
        conn.input = Vec::new();
        self.closing.push(key);
    }

    /// Step 5. Dropping the socket closes the descriptor, which also removes it from the
    /// epoll set, so no `deregister` call is needed.
    fn reap_closed(&mut self) {
        for key in self.closing.drain(..) {
            let conn = self.conns.remove(key);
            debug_assert_eq!(conn.state, State::Closed);
            debug_assert!(conn.timer.is_none());
            self.clients.disconnected(conn.client);
            stats::sub(&self.stats.connections, 1);
            self.report.closed += 1;
            log::debug!("#{key} closed");
        }
    }

    // ----- step 4: timers ---------------------------------------------------------------

    fn expire_timers(&mut self) {
        let now = timer::ticks_floor(self.started.elapsed());
        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.expire(now, &mut fired);
        self.report.timers_fired += fired.len();
        for &(key, generation) in &fired {
            let key = key as usize;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.generation != generation {
                continue; // the timer's connection is gone and its key reused
            }
            let Some(timer) = conn.timer.take() else {
                continue;
            };
            self.on_deadline(key, timer.deadline);
        }
        fired.clear();
        self.fired = fired;
    }

    fn on_deadline(&mut self, key: usize, deadline: Deadline) {
        let conn = &self.conns[key];
        match (deadline, conn.state) {
            (Deadline::Poll, State::Parked(membership)) => {
                let close = conn.close_after_write;
                self.unpark(key);
                stats::add(&self.stats.timeouts, 1);
                let response = match membership.list {
                    ListKind::Classic => Response::Shared(Rc::clone(&self.timeout_response)),
                    _ => Response::Owned(self.poll_timeout_answer(membership.room)),
                };
                self.respond(key, response, close);
            }
            (Deadline::Heartbeat, State::Streaming(_)) => {
                let frame = Rc::clone(&self.heartbeat_frame);
                self.stream_send(key, &frame, false);
            }
            (Deadline::Write, State::Streaming(_)) => {
                stats::add(&self.stats.dropped_slow, 1);
                log::debug!("#{key} {} stream too slow to read; dropping", conn.peer());
                self.close(key);
            }
            (Deadline::Idle, State::Reading) => {
                stats::add(&self.stats.dropped_idle, 1);
                log::debug!("#{key} idle for {:?}; closing", self.config.idle_timeout);
                self.close(key);
            }
            (Deadline::Request, State::Reading) => {
                log::debug!("#{key} {} sent no whole request in time", conn.peer());
                self.reject(key, Status::REQUEST_TIMEOUT);
            }
            (Deadline::Write, State::Writing) => {
                stats::add(&self.stats.dropped_slow, 1);
                log::debug!(
                    "#{key} {} too slow to read its response; dropping",
                    conn.peer()
                );
                self.close(key);
            }
            (Deadline::Linger, _) => self.close(key),
            (deadline, state) => {
                debug_assert!(false, "#{key}: {deadline:?} timer fired in {state:?}");
            }
        }
    }

    // ----- timers per connection --------------------------------------------------------

    /// Replaces the connection's timer with one for `deadline`, due after its configured
    /// duration.
    fn set_timer(&mut self, key: usize, deadline: Deadline) {
        let after = match deadline {
            Deadline::Idle => self.config.idle_timeout,
            Deadline::Request => self.config.request_timeout,
            Deadline::Poll => self.config.poll_timeout,
            Deadline::Write => self.config.write_timeout,
            Deadline::Linger => LINGER,
            Deadline::Heartbeat => self.config.heartbeat,
        };
        self.clear_timer(key);
        let at = self.deadline_after(after);
        let conn = &mut self.conns[key];
        let id = self.wheel.insert(at, (key as u32, conn.generation));
        conn.timer = Some(Timer { id, deadline });
    }

    fn clear_timer(&mut self, key: usize) {
        if let Some(timer) = self.conns[key].timer.take() {
            self.wheel.cancel(timer.id);
        }
    }

    /// A connection reading requests has an idle timer while nothing is buffered, and a
    /// request timer from the first byte of a request until it is complete. The request
    /// timer is not reset by later bytes: trickling a byte at a time buys nothing.
    fn arm_reading_timer(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if conn.state != State::Reading {
            return;
        }
        let wanted = if conn.input.is_empty() {
            Deadline::Idle
        } else {
            Deadline::Request
        };
        if conn.timer.map(|t| t.deadline) != Some(wanted) {
            self.set_timer(key, wanted);
        }
    }

    // ----- graceful shutdown ------------------------------------------------------------

    fn on_signal(&mut self) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let received: Vec<i32> = signals.pending().collect();
        for signal in received {
            if self.draining_until.is_some() {
                log::warn!("signal {signal} during shutdown: stopping now");
                self.stop.store(true, Ordering::Release);
            } else {
                self.begin_shutdown(&format!("signal {signal}"));
            }
        }
    }

    /// Stops accepting, tells every waiting poll to come back after a random delay, closes
    /// idle keep-alive connections, and lets responses in flight finish; the loop exits when
    /// every connection is gone or `shutdown_grace` has passed.
    fn begin_shutdown(&mut self, why: &str) {
        if self.draining_until.is_some() {
            return;
        }
        log::info!(
            "{why}: shutting down; answering {} waiting polls, up to {:?} to flush",
            self.chat.waiting(),
            self.config.shutdown_grace
        );
        self.draining_until = Some(Instant::now() + self.config.shutdown_grace);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_paused_until = None;
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            match self.conns[key].state {
                State::Parked(_) => {
                    self.unpark(key);
                    let response = self.retry_later_response();
                    self.respond(key, response, true);
                }
                State::Streaming(_) => self.end_stream_for_shutdown(key),
                State::Reading if self.conns[key].input.is_empty() => self.close(key),
                State::Reading | State::Writing => self.conns[key].close_after_write = true,
                State::Lingering | State::Closed => {}
            }
        }
    }

    /// `503` with `Retry-After` and the same delay in milliseconds in the body, random per
    /// client so they do not all come back at once.
    fn retry_later_response(&mut self) -> Response {
        let delay_ms = self.random.in_range(RETRY_DELAY_MS);
        let body = format!("{{\"error\":\"shutting down\",\"retry_after_ms\":{delay_ms}}}");
        let retry_after = delay_ms.div_ceil(1000).to_string();
        Response::Owned(http::encode_response(
            Status::SERVICE_UNAVAILABLE,
            http::JSON,
            &[("Retry-After", &retry_after)],
            body.as_bytes(),
            false,
        ))
    }

    /// Milliseconds since start: the clock rooms use for presence and rate limits.
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// The descriptor held in reserve for shedding load when accept hits EMFILE (any file
/// will do; `/dev/null` always exists). `None` if even that cannot be opened.
fn open_spare_descriptor() -> Option<File> {
    File::open("/dev/null").ok()
}

/// EMFILE (this process) or ENFILE (the whole system) out of descriptors.
fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE)
    )
}

/// `503` for a client we cannot hold, written straight to its new socket and then closed.
/// One small write into an empty socket buffer; if even that fails, closing is the answer.
fn refuse(mut socket: mio::net::TcpStream, refusal: &[u8]) {
    let _ = socket.write(refusal);
}
/// A listening socket with `SO_REUSEADDR` (restart without waiting out TIME_WAIT) and the
/// configured backlog, handed to mio.
fn listen(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// A server running on its own thread, for tests, benchmarks and embedding.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Counters and stop.
    pub handle: ServerHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Running {
    /// Stops the loop and waits for its thread.
    pub fn stop(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<()> {
        self.handle.stop();
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("server thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Binds a server and runs it on a new thread (the server itself is single-threaded and
/// not `Send`, so it is built on the thread that runs it).
pub fn spawn(config: Config) -> io::Result<Running> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("comet-chat".into())
        .spawn(move || {
            let server = match Server::bind(config) {
                Ok(server) => server,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return Ok(());
                }
            };
            let _ = ready_tx.send(Ok((server.local_addr(), server.handle())));
            server.run()
        })?;
    let (addr, handle) = ready_rx
        .recv()
        .map_err(|_| io::Error::other("server thread died during start-up"))??;
    Ok(Running {
        addr,
        handle,
        thread: Some(thread),
    })
}
