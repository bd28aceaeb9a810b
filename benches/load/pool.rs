//! The client side: N non-blocking sockets in one `mio::Poll`, driven by one thread, the
//! way the server drives its own. A pool opens its sockets in a burst (timing each
//! connect), sends one request on each, and collects one answer from each, noting when
//! every answer completed.
//!
//! Each socket binds a source address before connecting — 127.0.0.2, 127.0.0.3, … with
//! [`Sources`]' `per_address` sockets each — because one source address has only ~28k
//! ephemeral ports (net.ipv4.ip_local_port_range) and a run opens about 70,000 sockets.
//! Every socket has SO_LINGER 0: dropping a pool resets its connections at once, so no
//! TIME_WAIT is left holding ports into the next rung.
//!
//! A pool speaks one [`Transport`]: polls get one answer per request, stream clients (SSE,
//! WebSocket) read their head once ([`Pool::await_heads`]) and then an event or frame per
//! broadcast. The same code reads the server's broadcast and the floor writer's bytes, so
//! whatever the client itself costs is the same on both sides of the server/floor ratio.

use crate::transport::{self, Transport, Unit};
use crate::wire::{self, Frame};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Connects issued between two looks at completed ones. One: a loopback `connect` costs
/// tens of microseconds, so with a batch of 16 the last completion of a batch waited half
/// a millisecond for us to look, and connect latency measured our loop instead of the
/// handshake and the server's accept queue. A zero-timeout poll per connect is cheaper.
const CONNECT_BATCH: usize = 1;

/// Events taken from the kernel per poll.
const EVENTS_PER_POLL: usize = 4096;

/// One read's worth of bytes; answers are a few hundred.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Longest single poll wait, so deadlines are checked even when nothing happens.
const POLL_SLICE: Duration = Duration::from_millis(20);

/// Hands out source addresses: `per_address` sockets on 127.0.0.2, then 127.0.0.3, and on.
pub struct Sources {
    /// Sockets handed an address so far, over the whole run.
    issued: u64,
    /// Sockets per address; well under the ephemeral port range.
    per_address: u64,
}

impl Sources {
    /// Starts at 127.0.0.2 (127.0.0.1 is left to the stats and poster sockets).
    pub fn new(per_address: usize) -> Sources {
        Sources {
            issued: 0,
            per_address: per_address.max(1) as u64,
        }
    }

    /// Continues a sequence another process started: its next socket is the
    /// `issued`-th of the run (see [`reserve`](Sources::reserve)).
    pub fn starting_at(issued: u64, per_address: usize) -> Sources {
        Sources {
            issued,
            per_address: per_address.max(1) as u64,
        }
    }

    /// Sets aside `n` addresses' worth of sockets for another process (the floor reader)
    /// and returns where its sequence starts.
    pub fn reserve(&mut self, n: usize) -> u64 {
        let start = self.issued;
        self.issued += n as u64;
        start
    }

    /// Sockets per source address.
    pub fn per_address(&self) -> u64 {
        self.per_address
    }

    /// The source address for the next socket.
    pub fn next_addr(&mut self) -> Ipv4Addr {
        let index = self.issued / self.per_address;
        self.issued += 1;
        // 127.0.0.0/8 is all loopback; 16 million addresses will not run out.
        let addr = u32::from(Ipv4Addr::new(127, 0, 0, 2)) + index as u32;
        debug_assert!(addr < u32::from(Ipv4Addr::new(127, 255, 255, 255)));
        Ipv4Addr::from(addr)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `connect` issued, completion not yet seen.
    Connecting,
    /// Connected; requests may be sent.
    Open,
    /// Refused, reset, closed or garbled; never used again.
    Failed,
}

struct Client {
    /// Registered once, edge-triggered, for READABLE | WRITABLE: WRITABLE reports the
    /// connect completing, READABLE every answer after it.
    stream: TcpStream,
    /// Only `Open` clients send and are waited for.
    phase: Phase,
    /// When `connect` was called, for connect latency.
    started: Instant,
    /// Bytes of an answer that has not fully arrived.
    input: Vec<u8>,
    /// Whether this round's answer (or failure) has been counted.
    answered: bool,
    /// Whether a stream client has read its stream's head; what follows it is events or
    /// frames, not HTTP. Never set for a poll.
    head_seen: bool,
}

/// What opening a pool found.
pub struct Opened {
    /// When the first `connect` was issued.
    pub started: Instant,
    /// When the last completion was seen.
    pub finished: Instant,
    /// Connected sockets.
    pub open: usize,
    /// Sockets that could not be created, were refused or reset, or were still connecting
    /// at the deadline; and sockets whose first request could not be sent.
    pub failed: usize,
    /// `connect` call → completion seen, per connected socket.
    pub latencies: Vec<Duration>,
    /// The first failure, for the report.
    pub first_error: Option<String>,
}

/// What one round of answers brought.
#[derive(Default)]
pub struct Received {
    /// When each expected answer completed (arrival order).
    pub times: Vec<Instant>,
    /// Complete answers that were not the expected one (wrong status or token, extra bytes).
    pub unexpected: usize,
    /// Clients that were closed, reset or sent something unframeable.
    pub failed: usize,
    /// Clients with no answer at the deadline.
    pub missing: usize,
    /// The first problem, for the report.
    pub first_error: Option<String>,
}

impl Received {
    /// Every client that did not get the expected answer.
    pub fn errors(&self) -> usize {
        self.unexpected + self.failed + self.missing
    }

    fn note(&mut self, error: String) {
        self.first_error.get_or_insert(error);
    }
}

/// N client sockets and the poll that drives them. Dropping it resets every connection.
pub struct Pool {
    /// Every client's socket, keyed by its index as the mio token.
    poll: Poll,
    /// Reused between polls.
    events: Events,
    /// Indexed by mio token.
    clients: Vec<Client>,
    /// Shared landing area for reads.
    chunk: Box<[u8]>,
    /// How every client of this pool waits, so how its input is framed.
    transport: Transport,
}

impl Pool {
    /// An empty pool of polls, with room for `capacity` clients.
    pub fn new(capacity: usize) -> io::Result<Pool> {
        Ok(Pool {
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS_PER_POLL),
            clients: Vec::with_capacity(capacity),
            chunk: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
            transport: Transport::Poll,
        })
    }

    /// Opens `n` clients of `transport` as [`open`](Pool::open) does, each sending
    /// `request`; a stream client's head is then read by [`await_heads`](Pool::await_heads).
    pub fn open_as(
        transport: Transport,
        n: usize,
        dst: SocketAddr,
        sources: &mut Sources,
        request: &[u8],
        deadline: Instant,
    ) -> io::Result<(Pool, Opened)> {
        Pool::open_spread(transport, n, (&[dst], 0), sources, request, deadline)
    }

    /// Opens `n` connections to `dst` in one burst, sending `first_request` on each as
    /// soon as it connects (a browser sends its poll right away too). Stops issuing at
    /// `deadline` and counts whatever has not connected by then as failed.
    pub fn open(
        n: usize,
        dst: SocketAddr,
        sources: &mut Sources,
        first_request: Option<&[u8]>,
        deadline: Instant,
    ) -> io::Result<(Pool, Opened)> {
        let mut pool = Pool::new(n)?;
        let opened = pool.grow(n, dst, sources, first_request, deadline)?;
        Ok((pool, opened))
    }

    /// Adds `n` connections to the pool in one burst, as [`open`](Pool::open) does; the
    /// clients already open are left alone (an answer that reaches one meanwhile stays in
    /// its socket until the next [`receive`](Pool::receive) or [`churn`](Pool::churn)).
    pub fn grow(
        &mut self,
        n: usize,
        dst: SocketAddr,
        sources: &mut Sources,
        first_request: Option<&[u8]>,
        deadline: Instant,
    ) -> io::Result<Opened> {
        self.grow_over(n, (&[dst], 0), sources, first_request, deadline)
    }

    /// Opens `n` connections of `transport` in one burst, as [`open_as`](Pool::open_as)
    /// does, but round-robin over `dsts`: the first to `dsts[first]`, the next to the
    /// destination after it, and so on (the spread floor's readers, [`crate::floor`]).
    pub fn open_spread(
        transport: Transport,
        n: usize,
        (dsts, first): (&[SocketAddr], usize),
        sources: &mut Sources,
        request: &[u8],
        deadline: Instant,
    ) -> io::Result<(Pool, Opened)> {
        let mut pool = Pool::new(n)?;
        pool.transport = transport;
        let opened = pool.grow_over(n, (dsts, first), sources, Some(request), deadline)?;
        Ok((pool, opened))
    }

    /// [`grow`](Pool::grow) to destinations taken round-robin from `dsts`, starting at
    /// `dsts[first]`.
    fn grow_over(
        &mut self,
        n: usize,
        (dsts, first): (&[SocketAddr], usize),
        sources: &mut Sources,
        first_request: Option<&[u8]>,
        deadline: Instant,
    ) -> io::Result<Opened> {
        if dsts.is_empty() {
            return Err(io::Error::other("no destination to connect to"));
        }
        let first_new = self.clients.len();
        self.clients.reserve(n);
        let started = Instant::now();
        let mut opened = Opened {
            started,
            finished: started,
            open: 0,
            failed: 0,
            latencies: Vec::with_capacity(n),
            first_error: None,
        };
        let mut attempted = 0;
        let mut connecting = 0;
        loop {
            let now = Instant::now();
            if (attempted == n && connecting == 0) || now >= deadline {
                break;
            }
            for _ in 0..CONNECT_BATCH.min(n - attempted) {
                let dst = dsts[(first + attempted) % dsts.len()];
                attempted += 1;
                match self.start_connect(sources.next_addr(), dst) {
                    Ok(()) => connecting += 1,
                    Err(e) => {
                        opened.failed += 1;
                        opened.first_error.get_or_insert(format!("connect: {e}"));
                    }
                }
            }
            // While connects remain to be issued, only look at completions; afterwards wait.
            let wait = if attempted < n {
                Duration::ZERO
            } else {
                POLL_SLICE.min(deadline.saturating_duration_since(now))
            };
            if let Err(e) = self.poll.poll(&mut self.events, Some(wait)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let seen = Instant::now();
            for event in self.events.iter() {
                let Some(client) = self.clients.get_mut(event.token().0) else {
                    continue;
                };
                if client.phase != Phase::Connecting {
                    continue;
                }
                match connect_outcome(&client.stream) {
                    // A wake-up before the handshake finished; the next edge will come.
                    Ok(false) => continue,
                    Ok(true) => {
                        connecting -= 1;
                        opened.latencies.push(seen - client.started);
                        opened.finished = seen;
                        client.phase = Phase::Open;
                        if let Some(request) = first_request {
                            if let Err(e) = write_whole(&mut client.stream, request) {
                                client.phase = Phase::Failed;
                                opened.failed += 1;
                                opened
                                    .first_error
                                    .get_or_insert(format!("first request: {e}"));
                                continue;
                            }
                        }
                        opened.open += 1;
                    }
                    Err(e) => {
                        connecting -= 1;
                        client.phase = Phase::Failed;
                        opened.failed += 1;
                        opened.first_error.get_or_insert(format!("connect: {e}"));
                    }
                }
            }
        }
        // Whatever is still connecting or was never issued missed the deadline.
        let late = connecting + (n - attempted);
        if late > 0 {
            opened.failed += late;
            opened
                .first_error
                .get_or_insert(format!("{late} connects unfinished at the deadline"));
            for client in &mut self.clients[first_new..] {
                if client.phase == Phase::Connecting {
                    client.phase = Phase::Failed;
                }
            }
        }
        Ok(opened)
    }

    /// Creates, binds and connects one socket and registers it.
    fn start_connect(&mut self, source: Ipv4Addr, dst: SocketAddr) -> io::Result<()> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        socket.set_nodelay(true)?;
        socket.set_linger(Some(Duration::ZERO))?;
        bind_address_no_port(&socket)?;
        socket.bind(&SocketAddr::from((source, 0)).into())?;
        let started = Instant::now();
        match socket.connect(&dst.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let mut stream = TcpStream::from_std(socket.into());
        let token = Token(self.clients.len());
        self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.clients.push(Client {
            stream,
            phase: Phase::Connecting,
            started,
            input: Vec::new(),
            answered: false,
            head_seen: false,
        });
        Ok(())
    }

    /// Connected clients that have not failed.
    pub fn open_count(&self) -> usize {
        self.clients
            .iter()
            .filter(|c| c.phase == Phase::Open)
            .count()
    }

    /// Sends `request` on every open client. A request is a few dozen bytes into an empty
    /// socket buffer, so a short write means something is wrong: that client fails.
    /// Returns the number that failed.
    pub fn send_all(&mut self, request: &[u8]) -> usize {
        let mut failed = 0;
        for client in &mut self.clients {
            if client.phase == Phase::Open && write_whole(&mut client.stream, request).is_err() {
                client.phase = Phase::Failed;
                failed += 1;
            }
        }
        failed
    }

    /// Waits for one answer on every open client until `deadline`. An answer is expected
    /// if its status is 200 and its body contains `needle`. A stream's head, retry hint,
    /// comments and pings are read past.
    pub fn receive(&mut self, needle: &[u8], deadline: Instant) -> Received {
        self.wait(Some(needle), deadline)
    }

    /// Waits until every open stream client has read its stream's head (`200` for SSE,
    /// `101` for WebSocket) or `deadline` passes; the time each head completed is in
    /// `times`. A poll pool has no heads: nothing to wait for.
    ///
    /// Starts by reading every client once: the heads arrive while [`grow`](Pool::grow)
    /// is still connecting, and the edge that announced one may have been taken there.
    pub fn await_heads(&mut self, deadline: Instant) -> Received {
        if self.transport.head_status().is_none() {
            return Received::default();
        }
        self.wait(None, deadline)
    }

    /// [`receive`](Pool::receive) with a needle; [`await_heads`](Pool::await_heads)
    /// without one.
    fn wait(&mut self, needle: Option<&[u8]>, deadline: Instant) -> Received {
        let mut got = Received::default();
        let mut waiting = 0;
        for client in &mut self.clients {
            client.answered = client.phase != Phase::Open || (needle.is_none() && client.head_seen);
            if !client.answered {
                waiting += 1;
            }
        }
        got.times.reserve(waiting);
        if needle.is_none() {
            for client in &mut self.clients {
                if !client.answered {
                    waiting -=
                        on_readable(client, &mut self.chunk, self.transport, needle, &mut got);
                }
            }
        }
        while waiting > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let wait = POLL_SLICE.min(deadline - now);
            if let Err(e) = self.poll.poll(&mut self.events, Some(wait)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                got.note(format!("poll: {e}"));
                break;
            }
            for event in self.events.iter() {
                let Some(client) = self.clients.get_mut(event.token().0) else {
                    continue;
                };
                if client.phase != Phase::Open {
                    continue;
                }
                waiting -= on_readable(client, &mut self.chunk, self.transport, needle, &mut got);
            }
        }
        got.missing = waiting;
        if waiting > 0 {
            let what = if needle.is_some() {
                "answers"
            } else {
                "stream heads"
            };
            got.note(format!("{waiting} {what} missing at the deadline"));
        }
        got
    }
}

/// What [`Pool::churn`] saw: browsers that poll again as soon as each answer arrives.
#[derive(Default)]
pub struct Churned {
    /// Answers that were `{"error":"timeout"}`: the poll timeout doing its job.
    pub timeouts: usize,
    /// Any other complete answer (a message, or an error status).
    pub other: usize,
    /// Clients closed, reset or garbled, or whose new poll could not be sent.
    pub failed: usize,
    /// The first problem, for the report.
    pub first_error: Option<String>,
}

impl Pool {
    /// Until `deadline`, answers every answer with a new `GET /chat` on the same socket,
    /// as a page does, and counts the answers. Starts by reading every open client once,
    /// so an answer that arrived while the pool was busy elsewhere (and whose edge was
    /// consumed) is not left unread.
    pub fn churn(&mut self, deadline: Instant) -> Churned {
        let mut churned = Churned::default();
        for index in 0..self.clients.len() {
            churn_client(&mut self.clients[index], &mut self.chunk, &mut churned);
        }
        loop {
            let now = Instant::now();
            if now >= deadline {
                return churned;
            }
            let wait = POLL_SLICE.min(deadline - now);
            if let Err(e) = self.poll.poll(&mut self.events, Some(wait)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                churned.first_error.get_or_insert(format!("poll: {e}"));
                return churned;
            }
            for event in self.events.iter() {
                if let Some(client) = self.clients.get_mut(event.token().0) {
                    churn_client(client, &mut self.chunk, &mut churned);
                }
            }
        }
    }
}

/// Reads what one open client has; every complete answer is counted and followed by a new
/// poll.
fn churn_client(client: &mut Client, chunk: &mut [u8], churned: &mut Churned) {
    if client.phase != Phase::Open {
        return;
    }
    fn broken(client: &mut Client, churned: &mut Churned, error: String) {
        client.phase = Phase::Failed;
        client.input = Vec::new();
        churned.failed += 1;
        churned.first_error.get_or_insert(error);
    }
    loop {
        match client.stream.read(chunk) {
            Ok(0) => return broken(client, churned, "server closed a connection".into()),
            Ok(n) => {
                client.input.extend_from_slice(&chunk[..n]);
                loop {
                    match wire::frame(&client.input) {
                        // Normal flow: the rest of the answer is still on its way.
                        Frame::Partial => break,
                        Frame::Invalid => {
                            return broken(client, churned, "unframeable answer".into())
                        }
                        Frame::Complete { len, .. } => {
                            if wire::contains(wire::body(&client.input[..len]), wire::TIMEOUT) {
                                churned.timeouts += 1;
                            } else {
                                churned.other += 1;
                            }
                            client.input.drain(..len);
                            if let Err(e) = write_whole(&mut client.stream, wire::GET_CHAT) {
                                return broken(client, churned, format!("poll again: {e}"));
                            }
                        }
                    }
                }
                if n < chunk.len() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return broken(client, churned, format!("read: {e}")),
        }
    }
}

/// Reads what `client` has and takes the whole units off its input. Returns 1 if this
/// client's answer for the round (with `needle`) or its head (without), or its failure, was
/// counted now, else 0.
///
/// Stops at a short read instead of reading again for `WouldBlock`: with edge-triggered
/// epoll on Linux, bytes arriving after a read that left the socket empty raise a new
/// edge, so the extra `read` per socket (19,500 syscalls per round) buys nothing. nginx's
/// `ngx_unix_recv` relies on the same rule.
fn on_readable(
    client: &mut Client,
    chunk: &mut [u8],
    transport: Transport,
    needle: Option<&[u8]>,
    got: &mut Received,
) -> usize {
    let settled_before = client.answered;
    let settled_now = |client: &Client| usize::from(!settled_before && client.answered);
    loop {
        match client.stream.read(chunk) {
            Ok(0) => {
                got.note("server closed a connection".into());
                fail(client, got);
                return settled_now(client);
            }
            Ok(n) => {
                let at = Instant::now();
                client.input.extend_from_slice(&chunk[..n]);
                if let Err(e) = take_units(client, transport, needle, at, got) {
                    got.note(e);
                    fail(client, got);
                    return settled_now(client);
                }
                if n < chunk.len() {
                    return settled_now(client);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return settled_now(client),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                got.note(format!("read: {e}"));
                fail(client, got);
                return settled_now(client);
            }
        }
    }
}

/// Takes every whole unit off the front of `client.input` (read at `at`) and counts it;
/// an error means the client cannot go on.
fn take_units(
    client: &mut Client,
    transport: Transport,
    needle: Option<&[u8]>,
    at: Instant,
    got: &mut Received,
) -> Result<(), String> {
    loop {
        let len = match transport::unit(transport, client.head_seen, &client.input) {
            // Normal flow: the rest of the unit is still on its way.
            Unit::Partial => return Ok(()),
            Unit::Invalid(why) => return Err(why.into()),
            Unit::Closed => return Err("server closed the stream".into()),
            Unit::Skip { len } => len,
            Unit::Head { len, status } => {
                if Some(status) != transport.head_status() {
                    return Err(format!("stream refused with status {status}"));
                }
                client.head_seen = true;
                if needle.is_none() && !client.answered {
                    client.answered = true;
                    got.times.push(at);
                }
                len
            }
            Unit::Item { len, status, body } => {
                let body = &client.input[body];
                let expected = needle.is_some_and(|n| status == 200 && wire::contains(body, n));
                if client.answered || needle.is_none() {
                    got.unexpected += 1;
                    got.note(format!(
                        "more than one answer in a round, or one before any post: {:?}",
                        String::from_utf8_lossy(&body[..body.len().min(120)])
                    ));
                } else {
                    client.answered = true;
                    if expected {
                        got.times.push(at);
                    } else {
                        got.unexpected += 1;
                        got.note(format!(
                            "unexpected answer (status {status}): {:?}",
                            String::from_utf8_lossy(&body[..body.len().min(120)])
                        ));
                    }
                }
                len
            }
        };
        client.input.drain(..len);
    }
}

/// Marks `client` failed, which settles its answer for the round.
fn fail(client: &mut Client, got: &mut Received) {
    client.phase = Phase::Failed;
    client.input = Vec::new();
    got.failed += 1;
    client.answered = true;
}

/// Sets IP_BIND_ADDRESS_NO_PORT, so that binding the source address leaves the port to
/// `connect`, which only needs the four-tuple to be unique. Without it every `bind` must
/// find a port free on its address against every socket bound so far, which grows slow
/// with a million sockets bound over a few hundred addresses.
fn bind_address_no_port(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int from the pointer and length we pass; the
    // descriptor is this socket's own.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a non-blocking connect has finished: `Ok(true)` connected, `Ok(false)` still
/// going, `Err` failed.
fn connect_outcome(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes all of `bytes` in one go or fails; a would-block counts as failure (see
/// [`Pool::send_all`]).
fn write_whole(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    loop {
        match stream.write(bytes) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => return Err(io::Error::other(format!("short write: {n} bytes"))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
