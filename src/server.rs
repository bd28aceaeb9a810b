//! The event loop: one thread, one `mio::Poll`, every connection in one `Slab`.
//!
//! One pass of the loop, always in this order (see [`Server::run`]):
//!
//! 1. **sleep**: ask the timer wheel for its next deadline and poll until then (rounded up,
//!    so the loop never wakes a hair early and spins);
//! 2. **dispatch**: accept every pending connection; read, parse and answer every readable
//!    one; continue writes on every writable one;
//! 3. **resume**: handle requests that were pipelined behind a response that just finished;
//! 4. **expire**: answer every poll whose timeout passed, close lingering connections;
//! 5. **reap**: free the connections marked closed during this pass.
//!
//! Connections are marked closed and freed only in step 5 so that a slab key is never
//! reused while this pass may still hold it (a later event in the same batch, a waiter
//! list being broadcast to).

use crate::assets::Assets;
use crate::chat::{self, Chat, Waiter};
use crate::config::Config;
use crate::conn::{Conn, Flushed, Outgoing, State};
use crate::http::{self, Parse};
use crate::routes::{self, Action, Response};
use crate::stats::{self, Stats};
use crate::sys;
use crate::timer::{self, TimerWheel};
use mio::event::Event;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io::{self, Read};
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

/// Events taken from the kernel per poll. More are simply returned by the next poll.
const EVENTS_PER_POLL: usize = 1024;

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
    waker: Arc<Waker>,
}

impl ServerHandle {
    /// The server's live counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Asks the loop to stop; it returns from [`Server::run`] at the end of its pass.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        // A failed wake only means the loop is already gone.
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
    listener: TcpListener,
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
    waker: Arc<Waker>,
    /// Tick 0 of the timer wheel.
    started: Instant,
    /// Shared landing area for reads (see [`READ_CHUNK_BYTES`]).
    read_chunk: Box<[u8]>,
    /// Handed out to each accepted connection, then incremented (wrapping is fine: a slab
    /// key would have to be reused 2^32 times while one stale timer waits).
    next_generation: u32,
    /// Connections marked `Closed` this pass, freed in the reap step.
    closing: Vec<usize>,
    /// Connections whose response finished with requests still buffered behind it.
    resume: Vec<TimerPayload>,
    /// Reused buffer for the timers one expire step fires.
    fired: Vec<TimerPayload>,
    /// `{"error":"timeout"}`, encoded once and shared by every poll that times out.
    timeout_response: Rc<[u8]>,
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
        let stats = Arc::new(Stats::default());
        let (soft_limit, _) = sys::open_files_limit()?;
        stats.open_files_limit.store(soft_limit, Ordering::Relaxed);
        Ok(Server {
            poll,
            listener,
            local_addr,
            conns: Slab::new(),
            wheel: TimerWheel::new(),
            chat: Chat::new(),
            assets,
            config,
            stats,
            stop: Arc::new(AtomicBool::new(false)),
            waker,
            started: Instant::now(),
            read_chunk: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
            next_generation: 1,
            closing: Vec::new(),
            resume: Vec::new(),
            fired: Vec::new(),
            timeout_response: chat::timeout_response(),
            report: PassReport::default(),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
            waker: Arc::clone(&self.waker),
        }
    }

    /// Runs the loop until [`ServerHandle::stop`] is called. Only a failing `poll` ends it
    /// with an error; anything a client does affects that client alone.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        loop {
            // 1. sleep until the next event or the next timer.
            let timeout = self.poll_timeout();
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                // A signal interrupted the wait; timers may still be due, so carry on.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            // 2. dispatch.
            for event in events.iter() {
                self.report.events += 1;
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    Token(key) => self.on_conn_event(key, event),
                }
            }
            // 3. resume pipelined requests, 4. expire timers (which can also finish responses
            // with requests queued behind them), 5. reap.
            self.resume_pipelined();
            self.expire_timers();
            self.resume_pipelined();
            self.reap_closed();
            self.trace_pass();
            if self.stop.load(Ordering::Acquire) {
                log::info!("stopping with {} connections open", self.conns.len());
                return Ok(());
            }
        }
    }

    /// How long poll may sleep: until the wheel's next deadline, rounded up to a whole
    /// millisecond; forever when nothing is scheduled; not at all when work is queued.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.resume.is_empty() {
            return Some(Duration::ZERO);
        }
        let deadline_tick = self.wheel.next_deadline()?;
        let deadline = Duration::from_nanos(deadline_tick * timer::TICK.as_nanos() as u64);
        let wait = deadline.saturating_sub(self.started.elapsed());
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
            match self.listener.accept() {
                Ok((socket, addr)) => self.add_connection(socket, addr),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The client gave up between SYN and accept; the next one may be fine.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // EMFILE/ENFILE and the like: retrying now would fail the same way.
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
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
        entry.insert(Conn::new(socket, generation));
        stats::add(&self.stats.connections, 1);
        stats::add(&self.stats.accepted, 1);
        self.report.accepted += 1;
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
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read_input(key);
        }
    }

    /// Reads until `WouldBlock` (edge-triggered), handling complete requests as they arrive.
    fn read_input(&mut self, key: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let reading = matches!(conn.state, State::Reading | State::Lingering);
            match conn.state {
                State::Closed => return,
                // A response is pending and the client has already sent a full request's
                // worth more; leave the rest in the kernel until we are ready for it.
                _ if !reading && conn.input.len() >= self.config.limits.request_bytes() => {
                    conn.input_paused = true;
                    return;
                }
                _ => {}
            }
            match conn.socket.read(&mut self.read_chunk) {
                Ok(0) => {
                    conn.peer_closed = true;
                    self.on_peer_closed(key);
                    return;
                }
                Ok(n) => {
                    if conn.state == State::Lingering {
                        continue; // discarded: we are hanging up on this client
                    }
                    conn.input.extend_from_slice(&self.read_chunk[..n]);
                    if conn.state == State::Reading {
                        self.process_input(key);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("#{key} read error: {e}");
                    self.close(key);
                    return;
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
            State::Reading | State::Parked { .. } | State::Lingering => self.close(key),
        }
    }

    /// Parses and handles every complete request in the connection's buffer, stopping when
    /// the connection leaves `Reading` (parked, or a response is still being written): its
    /// remaining input waits for the `resume` step.
    fn process_input(&mut self, key: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.state != State::Reading || conn.input.is_empty() {
                return;
            }
            match http::parse_request(&conn.input, &self.config.limits) {
                // Normal flow: the rest of the request has not arrived yet.
                Parse::Partial => return,
                Parse::Invalid(status) => {
                    log::debug!("#{key} {} → {} {}", conn.peer(), status.code, status.reason);
                    conn.input = Vec::new();
                    let response = http::error_response(status, &[], true);
                    self.respond(key, Response::Owned(response), true);
                    return;
                }
                Parse::Complete(request) => {
                    stats::add(&self.stats.requests, 1);
                    log::debug!("#{key} {:?} {}", request.method, request.path);
                    let body = &conn.input[request.body.clone()];
                    let action = routes::route(&request, body, &self.assets);
                    conn.input.drain(..request.consumed);
                    if conn.input.is_empty() {
                        // Give the buffer back: a parked poll should own no heap memory.
                        conn.input = Vec::new();
                    }
                    self.apply(key, action, !request.keep_alive);
                }
            }
        }
    }

    fn apply(&mut self, key: usize, action: Action, close: bool) {
        match action {
            Action::Reply { response, close } => self.respond(key, response, close),
            Action::Park => self.park(key, close),
            Action::Broadcast { message } => {
                self.broadcast(&message);
                let Action::Reply { response, close } = routes::posted(close) else {
                    unreachable!("routes::posted always replies")
                };
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
                    close,
                );
                self.respond(key, Response::Owned(response), close);
            }
        }
    }

    // ----- parking and broadcasting -----------------------------------------------------

    /// Holds the connection as a pending poll until a message or its timeout.
    fn park(&mut self, key: usize, close: bool) {
        let deadline = self.deadline_after(self.config.poll_timeout);
        let conn = &mut self.conns[key];
        let waiter = Waiter {
            key: key as u32,
            generation: conn.generation,
        };
        conn.close_after_write = close;
        conn.state = State::Parked {
            waiter: self.chat.park(waiter),
        };
        conn.timer = Some(self.wheel.insert(deadline, (waiter.key, waiter.generation)));
        stats::add(&self.stats.pending_polls, 1);
    }

    /// Takes a parked connection out of the waiter list (timeout or disconnect).
    fn unpark(&mut self, key: usize) {
        let State::Parked { waiter } = self.conns[key].state else {
            return;
        };
        debug_assert_eq!(
            self.chat.waiter_at(waiter).map(|w| w.key as usize),
            Some(key)
        );
        if let Some(moved) = self.chat.leave(waiter) {
            // The last waiter now sits where this one was; tell its connection.
            self.conns[moved.key as usize].state = State::Parked { waiter };
        }
        stats::sub(&self.stats.pending_polls, 1);
    }

    /// Sends `message` to every parked poll: the response is encoded once and each
    /// connection gets a reference to it plus one `write`. Parked connections are
    /// registered for WRITABLE already, so delivery needs no `epoll_ctl`; the only
    /// allocation is the shared response itself.
    ///
    /// O(waiting clients), which is the point: every one of them must be written to. A
    /// socket whose buffer is full keeps its unwritten tail and waits for WRITABLE; it never
    /// holds up the ones after it.
    fn broadcast(&mut self, message: &str) {
        let response = chat::message_response(message);
        let waiters = self.chat.take_waiters();
        stats::add(&self.stats.messages, 1);
        log::debug!(
            "broadcast of {} bytes to {} polls",
            response.len(),
            waiters.len()
        );
        for waiter in &waiters {
            let key = waiter.key as usize;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            // Leaving the list always updates it, so a mismatch would be a bug; skip the
            // entry rather than write to a stranger.
            if conn.generation != waiter.generation || !matches!(conn.state, State::Parked { .. }) {
                debug_assert!(false, "stale waiter {waiter:?}");
                continue;
            }
            if let Some(timer) = conn.timer.take() {
                self.wheel.cancel(timer);
            }
            let close = conn.close_after_write;
            stats::sub(&self.stats.pending_polls, 1);
            stats::add(&self.stats.deliveries, 1);
            self.respond(key, Response::Shared(Rc::clone(&response)), close);
        }
        self.chat.recycle(waiters);
    }

    // ----- writing ----------------------------------------------------------------------

    /// Starts sending `response` and writes as much as the socket takes right away.
    fn respond(&mut self, key: usize, response: Response, close: bool) {
        let conn = &mut self.conns[key];
        debug_assert!(conn.output.is_none(), "one response at a time");
        conn.output = Some(Outgoing {
            bytes: response,
            written: 0,
        });
        conn.state = State::Writing;
        conn.close_after_write |= close;
        self.write_output(key);
    }

    fn write_output(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        match conn.flush() {
            Ok((flushed, sent)) => {
                stats::add(&self.stats.bytes_out, sent as u64);
                self.report.bytes_written += sent;
                if flushed == Flushed::Done {
                    self.response_done(key);
                }
                // Blocked: the WRITABLE edge will bring us back here.
            }
            Err(e) => {
                log::debug!("#{key} write error: {e}");
                self.close(key);
            }
        }
    }

    /// The whole response is with the kernel: hang up, or get ready for the next request.
    fn response_done(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.close_after_write || conn.peer_closed {
            self.linger(key);
            return;
        }
        conn.state = State::Reading;
        if !conn.input.is_empty() || conn.input_paused {
            self.resume.push((key as u32, conn.generation));
        }
    }

    /// Step 3: requests that waited behind a response, and sockets we stopped reading.
    fn resume_pipelined(&mut self) {
        while let Some((key, generation)) = self.resume.pop() {
            let key = key as usize;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.generation != generation || conn.state != State::Reading {
                continue;
            }
            let paused = std::mem::take(&mut conn.input_paused);
            self.process_input(key);
            if paused {
                // Edge-triggered: the bytes we left in the kernel will not be reported again.
                self.read_input(key);
            }
        }
    }

    // ----- closing ----------------------------------------------------------------------

    /// Shuts our side down and waits briefly for the client to close, reading and
    /// discarding what it still sends (see [`State::Lingering`]).
    fn linger(&mut self, key: usize) {
        let deadline = self.deadline_after(LINGER);
        let conn = &mut self.conns[key];
        if conn.peer_closed || conn.socket.shutdown(Shutdown::Write).is_err() {
            self.close(key);
            return;
        }
        conn.state = State::Lingering;
        conn.input = Vec::new();
        conn.timer = Some(self.wheel.insert(deadline, (key as u32, conn.generation)));
        // The client may have closed already; its FIN would be reported only once.
        self.read_input(key);
    }

    /// Marks a connection closed: it leaves the waiter list and the wheel now, and its slot
    /// is freed in the reap step.
    fn close(&mut self, key: usize) {
        if self.conns[key].state == State::Closed {
            return;
        }
        self.unpark(key);
        let conn = &mut self.conns[key];
        if let Some(timer) = conn.timer.take() {
            self.wheel.cancel(timer);
        }
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
            conn.timer = None;
            match conn.state {
                State::Parked { .. } => {
                    let close = conn.close_after_write;
                    self.unpark(key);
                    stats::add(&self.stats.timeouts, 1);
                    let response = Response::Shared(Rc::clone(&self.timeout_response));
                    self.respond(key, response, close);
                }
                State::Lingering => self.close(key),
                State::Reading | State::Writing | State::Closed => {}
            }
        }
        fired.clear();
        self.fired = fired;
    }
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
