//! Accepting clients, and shedding load when the server cannot hold more: over the
//! connection cap, or out of file descriptors. A refused client gets a `503` and is closed
//! at once, before any parsing, so refusing costs one accept and one small write.

use super::budget::ACCEPTS_PER_PASS;
use super::timers::Due;
use super::{Server, LISTENER};
use crate::clients::ClientId;
use crate::conn::{Conn, Deadline, Flags};
use crate::stats;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};
use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// When accept fails for lack of descriptors and no spare is left to shed load with, the
/// listener is taken out of the poll set for this long instead of failing again at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The listener, and how clients are refused when the server cannot hold more.
pub(super) struct Accepting {
    /// `None` once shutdown began: new clients are refused by the kernel from then on.
    pub listener: Option<TcpListener>,
    /// What `listener` is bound to (port 0 becomes a real port).
    pub local_addr: SocketAddr,
    /// Connections held at most; past it, new ones are refused with 503.
    pub max_conns: usize,
    /// A descriptor held in reserve: when accept fails with EMFILE we close it, accept the
    /// waiting client, answer 503 and close that, then take the spare back. Without it the
    /// client would stay in the kernel's queue and the edge-triggered listener would never
    /// report it again (or, level-triggered, report it forever: the classic 100% CPU spin).
    pub spare_descriptor: Option<File>,
    /// True from the first EMFILE until an accept succeeds: log once per episode.
    pub out_of_descriptors: bool,
    /// The 503 written to clients refused at accept (over `max_conns`, out of descriptors).
    pub refusal: Vec<u8>,
    /// The 503 written to clients refused at accept for `--max-conns-per-client`.
    pub refusal_per_client: Vec<u8>,
    /// The last accept stopped at [`ACCEPTS_PER_PASS`] with clients maybe still in the
    /// kernel's queue: accept again without waiting for an event.
    pub more: bool,
    /// Accepts tried this pass, on the public listener and on the admin one: each stops at
    /// [`ACCEPTS_PER_PASS`] however many events or steps ask it to accept.
    pub taken: (usize, usize),
}

impl Accepting {
    /// A new pass: each listener may take a pass's worth again.
    pub fn new_pass(&mut self) {
        self.taken = (0, 0);
    }
}

impl Server {
    /// Accepts until the kernel's queue is empty, or [`ACCEPTS_PER_PASS`] clients were
    /// taken this pass (then `Accepting::more`: step 3 of the next pass goes on, since the
    /// edge-triggered listener would not report the rest again).
    pub(super) fn accept_all(&mut self) {
        self.accepting.more = false;
        while self.accepting.taken.0 < ACCEPTS_PER_PASS {
            self.accepting.taken.0 += 1;
            let Some(listener) = self.accepting.listener.as_ref() else {
                return;
            };
            self.metrics.syscalls.accept += 1;
            match listener.accept() {
                Ok((socket, addr)) => {
                    if self.accepting.out_of_descriptors {
                        self.accepting.out_of_descriptors = false;
                        log::info!("descriptors available again; accepting");
                    }
                    let per_client = self.config.max_conns_per_client;
                    let open = self.public_conns();
                    if open >= self.accepting.max_conns {
                        stats::add(&self.stats.refused_over_cap, 1);
                        log::debug!("refusing {addr}: {open} connections open");
                        self.metrics.syscalls.write += 1;
                        refuse(socket, &self.accepting.refusal);
                    } else if per_client > 0
                        && self.chat.clients().connections_from(addr.ip()) as usize >= per_client
                        // A trusted proxy's address is every visitor's: see proxied.rs.
                        && !self.config.trusted_proxies.contains(addr.ip())
                    {
                        // Before any parsing: one lookup, one small write, one close.
                        stats::add(&self.stats.refused_per_client, 1);
                        log::debug!("refusing {addr}: it holds {per_client} connections");
                        self.metrics.syscalls.write += 1;
                        refuse(socket, &self.accepting.refusal_per_client);
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
        // A pass's worth taken: the rest of the queue in step 3, and in the next passes
        // (the listener is edge-triggered, so nobody would report them again).
        self.accepting.more = true;
    }

    /// Step 3: a listener whose last accept stopped at [`ACCEPTS_PER_PASS`] goes on.
    pub(super) fn accept_more(&mut self) {
        if self.accepting.more {
            self.accept_all();
        }
        if self.admin.as_ref().is_some_and(|admin| admin.more) {
            self.accept_admin();
        }
    }

    /// Whether a listener has clients left from its last accept.
    pub(super) fn more_to_accept(&self) -> bool {
        self.accepting.more || self.admin.as_ref().is_some_and(|admin| admin.more)
    }

    /// Out of descriptors with clients waiting in the kernel's queue. Frees the spare,
    /// accepts one client, answers it 503 and closes it, then takes the spare back. Returns
    /// whether accepting may go on (false: the queue is empty, or we had to pause).
    fn shed_one_client(&mut self, error: &io::Error) -> bool {
        if !self.accepting.out_of_descriptors {
            self.accepting.out_of_descriptors = true;
            log::warn!(
                "out of file descriptors ({error}; limit {}): answering new clients 503 until some close",
                stats::get(&self.stats.open_files_limit)
            );
        }
        let Some(listener) = self.accepting.listener.as_ref() else {
            return false;
        };
        if let Some(spare) = self.accepting.spare_descriptor.take() {
            drop(spare);
            self.metrics.syscalls.accept += 1;
            let shed = match listener.accept() {
                Ok((socket, _)) => {
                    stats::add(&self.stats.refused_emfile, 1);
                    self.metrics.syscalls.write += 1;
                    refuse(socket, &self.accepting.refusal);
                    true
                }
                Err(_) => false,
            };
            self.accepting.spare_descriptor = open_spare_descriptor();
            if self.accepting.spare_descriptor.is_some() {
                return shed;
            }
        }
        // No spare to shed load with: stop listening for a moment rather than spin.
        if let Some(listener) = self.accepting.listener.as_mut() {
            let _ = self.poll.registry().deregister(listener);
        }
        self.schedule(Due::ResumeAccepting, ACCEPT_BACKOFF);
        stats::add(&self.stats.refused_emfile, 1);
        false
    }

    /// The pause after running out of descriptors is over: listen again, and accept what
    /// queued meanwhile.
    pub(super) fn resume_accepting(&mut self) {
        self.accepting.spare_descriptor = self
            .accepting
            .spare_descriptor
            .take()
            .or_else(open_spare_descriptor);
        let Some(listener) = self.accepting.listener.as_mut() else {
            return; // shut down meanwhile
        };
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

    /// The public port's connections held (open, or closed this pass and not yet freed):
    /// what `--max-conns` caps. The admin port's are capped on their own.
    pub(super) fn public_conns(&self) -> usize {
        self.conns.len() - self.admin.as_ref().map_or(0, |admin| admin.held())
    }

    fn add_connection(&mut self, socket: TcpStream, addr: SocketAddr) {
        let flags = self.proxy_flags(addr.ip());
        let client = self.chat.clients_mut().connected(addr.ip());
        let Some(key) = self.insert_conn(socket, flags, client) else {
            self.chat.clients_mut().disconnected(client);
            return;
        };
        stats::add(&self.stats.connections, 1);
        stats::add(&self.stats.accepted, 1);
        log::debug!("#{key} accepted from {addr}");
    }

    /// Puts an accepted socket in the slab, registered with the poll, waiting for its first
    /// request under the idle timer: the one way in for every connection, the admin
    /// port's too. `None` when the poll would not take it (the socket is then dropped).
    pub(super) fn insert_conn(
        &mut self,
        mut socket: TcpStream,
        flags: Flags,
        client: ClientId,
    ) -> Option<usize> {
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
            log::warn!("cannot register a connection: {e}");
            return None;
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let mut conn = Conn::new(socket, generation, client);
        conn.flags = flags;
        entry.insert(conn);
        self.metrics.report.accepted += 1;
        self.set_timer(key, Deadline::Idle);
        Some(key)
    }
}

/// A listening socket with `SO_REUSEADDR` (restart without waiting out TIME_WAIT) and the
/// configured backlog, handed to mio. `reuse_port` (workers only) adds `SO_REUSEPORT`: every
/// worker binds the same address and the kernel spreads new connections over them. An
/// error names the address, since it reaches the user as the reason start-up failed.
pub(super) fn listen(addr: SocketAddr, backlog: i32, reuse_port: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let in_context =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).map_err(in_context)?;
    socket.listen(backlog).map_err(in_context)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// The descriptor held in reserve for shedding load when accept hits EMFILE (any file
/// will do; `/dev/null` always exists). `None` if even that cannot be opened.
pub(super) fn open_spare_descriptor() -> Option<File> {
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
fn refuse(mut socket: TcpStream, refusal: &[u8]) {
    let _ = socket.write(refusal);
}
