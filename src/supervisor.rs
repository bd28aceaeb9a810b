//! `--workers N`: one port served by N worker processes, each the same single-threaded server
//! a lone process is, watched by a supervisor that serves nothing itself.
//!
//! The process the user starts becomes the supervisor. It binds the address first, with
//! `SO_REUSEPORT` and without listening: that turns port 0 into a real port, and keeps the
//! port ours for the supervisor's whole life, also while a worker restarts. Then it runs its
//! own binary N times with the user's arguments and `--addr <that address>` after them (the
//! last flag wins). A child learns that it is worker `i`, and where to say that it listens,
//! from two environment variables ([`WORKER_ENV`], [`READY_FD_ENV`]) rather than flags:
//! `--help` lists every flag there is, and these are not for users. Each worker binds the
//! address with `SO_REUSEPORT` too, and the kernel spreads new connections over their
//! listeners (never to the supervisor's socket, which does not listen).
//!
//! After that the supervisor sleeps on one `mio::Poll` for three things: a worker writing
//! on its channel (its one byte to say it listens, then its answers to pings), a worker
//! exiting (SIGCHLD, then `waitpid`), and SIGINT/SIGTERM, which it passes on to every
//! worker. It logs `listening on` once, when every worker listens; restarts a worker that
//! dies (at most once a second each); and exits when every worker has exited after a
//! signal, with status 0 if each shut down cleanly. A worker that exits before every worker
//! listens is a failed start: the supervisor stops the others and exits with the reason.
//!
//! It also watches that each listening worker's loop still comes round: every
//! [`PING_EVERY`] it writes a byte on the channel of each worker it does not see asleep in
//! `/proc` (an idle worker is not woken), which the worker's loop answers
//! (`src/server/heartbeat.rs`). A worker that has answered nothing for [`SILENCE_LIMIT`]
//! (stopped by SIGSTOP, stuck in a pass) still holds its listener, and the kernel would go
//! on handing it its share of new connections, to hang there: it is killed (SIGKILL) and
//! restarted like any worker that dies. That is all it watches: not whether a worker
//! answers HTTP, reaches Redis, or starts up in time (see docs/SCALING.md).
//!
//! Workers share nothing but the port: rooms are shared through Redis (`--redis`), which is
//! why more than one worker needs it.

use crate::config::Config;
use mio::{Events, Interest, Poll, Token};
use signal_hook_mio::v1_0::Signals;
use socket2::{Domain, Socket, Type};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Set by the supervisor in a worker's environment to its index, 1 to N. A process that
/// finds it set is a worker.
pub const WORKER_ENV: &str = "COMET_CHAT_WORKER";

/// Set by the supervisor in a worker's environment to the descriptor of its channel: the
/// worker writes one byte on it once it listens, then answers the supervisor's pings.
pub const READY_FD_ENV: &str = "COMET_CHAT_READY_FD";

/// A worker that dies is started again no sooner than this after its previous start, so a
/// worker that cannot stay up costs a fork a second rather than a busy loop.
const RESTART_INTERVAL: Duration = Duration::from_secs(1);

/// How often the supervisor pings each listening worker's loop: one byte each way.
const PING_EVERY: Duration = Duration::from_secs(1);

/// A listening worker that has answered no ping for this long is killed and restarted (one
/// running only if it also used [`SILENT_CPU_LIMIT`] of CPU meanwhile). A working loop
/// answers within a pass, and every pass does bounded work (milliseconds, a broadcast to
/// tens of thousands a fraction of a second of CPU), so ten seconds of silence is a loop
/// that has stopped; and it is short enough that the clients it strands (its share of new
/// connections meanwhile) see a reset soon rather than wait for ever.
const SILENCE_LIMIT: Duration = Duration::from_secs(10);

/// A worker seen running that has been silent for [`SILENCE_LIMIT`] is killed only once it
/// has also used this much CPU since it was last heard from. A pass's work is bounded in
/// CPU, not in time: a broadcast to a worker's 19,000 clients is ~0.2 s of CPU, but with a
/// hundred workers and as many load generators runnable on two cores it took longer than
/// ten seconds to get that much, and workers busy with a broadcast were killed (the
/// million bench at 1,000,000 lost 900,000 clients so). A loop that spins for ever uses
/// CPU and is still killed; one starved by a busy box is not.
const SILENT_CPU_LIMIT: Duration = Duration::from_secs(10);

/// What a ping round does about one listening worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// It is asleep, waiting for work: healthy, and not to be woken.
    Idle,
    /// Ask it to answer.
    Ping,
    /// Its loop has stopped: kill it.
    Kill,
}

/// The verdict on a worker in state `state` (/proc: `S` asleep, `R` running or runnable,
/// `T` stopped, ...; `None` unreadable), silent for `silent`, having used `cpu` since it was
/// last heard from (`None`: unknown).
fn verdict(state: Option<char>, silent: Duration, cpu: Option<Duration>) -> Verdict {
    match state {
        Some('S') => Verdict::Idle,
        _ if silent < SILENCE_LIMIT => Verdict::Ping,
        Some('R') if cpu.is_some_and(|cpu| cpu < SILENT_CPU_LIMIT) => Verdict::Ping,
        _ => Verdict::Kill,
    }
}

/// The token of the SIGINT/SIGTERM/SIGCHLD pipe; a worker's readiness socket is its slot.
const SIGNALS: Token = Token(usize::MAX);

/// The part this process plays, decided once at start-up.
pub enum Role {
    /// The whole server in this one process (`--workers 1`).
    Alone,
    /// Started by the user with `--workers` above 1: start and watch the workers.
    Supervisor,
    /// Started by a supervisor.
    Worker(Worker),
}

/// What a supervisor told the worker it started.
pub struct Worker {
    /// Which worker this is, 1 to N: in its log lines and its `/stats`.
    pub index: usize,
    /// Its channel to the supervisor, until it has said that it listens (`None` if no
    /// supervisor is waiting).
    ready: Option<UnixStream>,
}

impl Worker {
    /// Tells the supervisor this worker listens: one byte. Said after binding, so the
    /// supervisor's `listening on` is true when it is logged. Returns the channel, on which
    /// the supervisor then pings the worker's loop: give it to `Server::answer_supervisor`.
    pub fn listening(&mut self) -> io::Result<Option<UnixStream>> {
        match self.ready.take() {
            Some(mut ready) => ready.write_all(b"!").map(|()| Some(ready)),
            None => Ok(None),
        }
    }
}

/// Which part this process plays: a worker if its supervisor said so in the environment,
/// else a supervisor if `--workers` is above 1, else the lone server.
pub fn role(config: &Config) -> Result<Role, String> {
    let Some(index) = std::env::var_os(WORKER_ENV) else {
        return Ok(match config.workers {
            1 => Role::Alone,
            _ => Role::Supervisor,
        });
    };
    let index = index
        .to_str()
        .and_then(|text| text.parse().ok())
        .filter(|i| (1..=config.workers).contains(i))
        .ok_or_else(|| {
            format!(
                "{WORKER_ENV}={index:?} is not a worker from 1 to {}",
                config.workers
            )
        })?;
    let ready = match std::env::var_os(READY_FD_ENV) {
        Some(fd) => Some(ready_socket(&fd)?),
        None => None,
    };
    Ok(Role::Worker(Worker { index, ready }))
}

/// The worker's end of its readiness socket, from the descriptor number its supervisor
/// left open across exec.
fn ready_socket(text: &OsStr) -> Result<UnixStream, String> {
    let fd: RawFd = text
        .to_str()
        .and_then(|text| text.parse().ok())
        .filter(|fd| *fd > 2)
        .ok_or_else(|| format!("{READY_FD_ENV}={text:?} is not a descriptor"))?;
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails exactly when `fd` is not
    // open, so we never take ownership of a number that names nothing.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        let error = io::Error::last_os_error();
        return Err(format!("{READY_FD_ENV}={fd}: {error}"));
    }
    // SAFETY: the descriptor is open (checked above) and is the socket the supervisor left
    // open across exec for this alone; nothing else in this process knows of it.
    Ok(unsafe { UnixStream::from_raw_fd(fd) })
}

/// Runs the supervisor until every worker has exited after SIGINT/SIGTERM. `args` are the
/// user's arguments, given to every worker. Ok when every worker shut down cleanly; an error
/// says which did not, or why start-up failed (the address, a worker that could not start).
pub fn run(config: &Config, args: &[OsString]) -> io::Result<()> {
    Supervisor::start(config, args)?.run()
}

/// The supervisor's state: its workers and what it waits on.
struct Supervisor {
    /// The workers' channels and the signal pipe; nothing else.
    poll: Poll,
    /// SIGINT and SIGTERM (passed on), SIGCHLD (a worker exited).
    signals: Signals,
    /// Bound with `SO_REUSEPORT`, never listening: it holds the port while a worker
    /// restarts, and takes no connections, since the kernel hands them only to listeners.
    _reserved: Socket,
    /// The concrete address (port 0 resolved) every worker is given.
    addr: SocketAddr,
    /// This binary, run again for every worker.
    exe: PathBuf,
    /// The user's arguments, then `--addr <addr>`.
    args: Vec<OsString>,
    /// Worker `i` is `slots[i - 1]`; a slot outlives the processes that fill it.
    slots: Vec<Slot>,
    /// Set by the first SIGINT/SIGTERM, or by a failed start: nothing is restarted, and the
    /// supervisor exits once no worker is left.
    stopping: bool,
    /// Why start-up failed, if it did; the supervisor's error once every worker is gone.
    failure: Option<String>,
    /// `listening on` was logged: every worker listened once. Until then, a worker that
    /// exits is a failed start rather than a crash to restart.
    announced: bool,
    /// When the workers are pinged next.
    next_ping: Instant,
}

/// One worker's place: the process filling it now, and its history.
struct Slot {
    /// The worker's process while it runs. Signals go only to a pid held here, which is
    /// not yet reaped, so the kernel cannot have given it to another process.
    pid: Option<libc::pid_t>,
    /// Our end of its channel while its current process runs: the byte that says it
    /// listens, then its answers to pings. Dropped when it is killed for its silence, so
    /// that it is pinged and killed once.
    channel: Option<mio::net::UnixStream>,
    /// Its current process has said it listens.
    listening: bool,
    /// When its current process last said anything on its channel (that it listens, or an
    /// answer to a ping), or was last seen asleep.
    last_heard: Instant,
    /// Its CPU time when last heard from, taken at the next ping round (`None` until then):
    /// what it has used since tells a spinning loop from a starved one.
    cpu_when_heard: Option<Duration>,
    /// When its current (or last) process was started: restarts are spaced from this.
    started: Instant,
    /// When to start it again after it died.
    restart_at: Option<Instant>,
    /// How its last process ended; after a shutdown, whether that was cleanly.
    last_exit: Option<ExitStatus>,
}

impl Supervisor {
    /// Reserves the address, installs the signal handlers (before any child exists, so no
    /// exit can be missed), and starts every worker.
    fn start(config: &Config, args: &[OsString]) -> io::Result<Supervisor> {
        let addr = config.addr;
        let in_context = |e: io::Error| {
            io::Error::new(e.kind(), format!("--addr: cannot listen on {addr}: {e}"))
        };
        let reserved = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        reserved.set_reuse_address(true)?;
        reserved.set_reuse_port(true)?;
        reserved.bind(&addr.into()).map_err(in_context)?;
        let addr = reserved
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("bound address is not an IP address"))?;
        let poll = Poll::new()?;
        let mut signals = Signals::new([libc::SIGINT, libc::SIGTERM, libc::SIGCHLD])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let mut args = args.to_vec();
        args.extend(["--addr".into(), addr.to_string().into()]);
        let now = Instant::now();
        let slots = (0..config.workers)
            .map(|_| Slot {
                pid: None,
                channel: None,
                listening: false,
                last_heard: now,
                cpu_when_heard: None,
                started: now,
                restart_at: None,
                last_exit: None,
            })
            .collect();
        let mut supervisor = Supervisor {
            poll,
            signals,
            _reserved: reserved,
            addr,
            exe: std::env::current_exe()?,
            args,
            slots,
            stopping: false,
            failure: None,
            announced: false,
            next_ping: now + PING_EVERY,
        };
        log::info!(
            "supervisor (pid {}): starting {} workers on {addr}",
            std::process::id(),
            config.workers
        );
        for i in 0..supervisor.slots.len() {
            if let Err(e) = supervisor.spawn(i) {
                supervisor.fail(format!("cannot start worker {}: {e}", i + 1));
                break;
            }
        }
        Ok(supervisor)
    }

    /// The loop. One pass, in this order: sleep until an event, the next restart or the
    /// next ping → channel bytes → signals (exits first, then SIGINT/SIGTERM) → restarts
    /// due → pings due (and silent workers killed) → `listening on`, the first time every
    /// worker listens. Checked before each pass (a start can fail before any worker runs):
    /// stopping, and no worker left? Then exit.
    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(self.slots.len() + 1);
        while !(self.stopping && self.slots.iter().all(|slot| slot.pid.is_none())) {
            let pings = (!self.stopping).then_some(self.next_ping);
            let timeout = (self.slots.iter())
                .filter_map(|slot| slot.restart_at)
                .chain(pings)
                .min()
                .map(|at| at.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            let mut signalled = false;
            for event in events.iter() {
                match event.token() {
                    SIGNALS => signalled = true,
                    Token(i) => self.read_channel(i),
                }
            }
            if signalled {
                self.on_signals();
            }
            self.restart_due();
            self.ping_due();
            self.announce();
        }
        self.outcome()
    }

    /// Starts worker `i + 1` in slot `i`: this binary again, with the worker's index and
    /// its end of a new channel in its environment.
    fn spawn(&mut self, i: usize) -> io::Result<()> {
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let mut ours = mio::net::UnixStream::from_std(ours);
        self.poll
            .registry()
            .register(&mut ours, Token(i), Interest::READABLE)?;
        let fd = theirs.as_raw_fd();
        let supervisor = std::process::id();
        let mut command = Command::new(&self.exe);
        command
            .args(&self.args)
            .env(WORKER_ENV, (i + 1).to_string())
            .env(READY_FD_ENV, fd.to_string())
            .stdin(Stdio::null())
            // A group of its own, so that Ctrl-C in a terminal (SIGINT to the whole
            // foreground group) reaches the supervisor alone and each worker gets it once,
            // passed on; twice would mean "stop at once" instead of a graceful shutdown.
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and makes only
        // async-signal-safe calls (fcntl, prctl, getppid); it allocates nothing.
        unsafe {
            command.pre_exec(move || prepare_worker(fd, supervisor));
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = self.poll.registry().deregister(&mut ours);
                return Err(e);
            }
        };
        // Only the worker holds its end now, so its exit closes the socket.
        drop(theirs);
        // `Child` neither waits nor kills when dropped: we reap by pid with waitpid.
        let pid = child.id() as libc::pid_t;
        let slot = &mut self.slots[i];
        slot.pid = Some(pid);
        slot.channel = Some(ours);
        slot.listening = false;
        slot.started = Instant::now();
        slot.last_heard = slot.started;
        slot.cpu_when_heard = None;
        slot.restart_at = None;
        log::debug!("worker {} started: pid {pid}", i + 1);
        Ok(())
    }

    /// Reads worker `i + 1`'s channel to `WouldBlock`: its first byte means it listens,
    /// any later one answers a ping; the end of the stream means it exited (its exit,
    /// reaped separately, says how).
    fn read_channel(&mut self, i: usize) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let Some(channel) = slot.channel.as_mut() else {
            return;
        };
        // A byte a second from our own child: a few bytes of work a pass.
        let mut bytes = [0u8; 64];
        let (mut heard, mut ended) = (false, false);
        loop {
            match channel.read(&mut bytes) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(_) => heard = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("worker {}: channel: {e}", i + 1);
                    ended = true;
                    break;
                }
            }
        }
        if ended {
            if let Some(mut channel) = slot.channel.take() {
                let _ = self.poll.registry().deregister(&mut channel);
            }
        }
        if heard {
            slot.last_heard = Instant::now();
            slot.cpu_when_heard = None;
            if !slot.listening {
                slot.listening = true;
                if self.announced {
                    let pid = slot.pid.unwrap_or_default();
                    log::info!("worker {} restarted: pid {pid} listens again", i + 1);
                }
            }
        }
    }

    /// The signal pipe is readable: reap every worker that exited, then pass SIGINT and
    /// SIGTERM on, so that a worker that already died is not signalled.
    fn on_signals(&mut self) {
        let received: Vec<i32> = self.signals.pending().collect();
        self.reap();
        for signal in received {
            if signal != libc::SIGCHLD {
                self.pass_on(signal);
            }
        }
    }

    /// Collects the exit of every worker that has exited. SIGCHLD says only that some child
    /// did, and several exits may share one signal, so every running worker is asked: N
    /// non-blocking `waitpid` calls, and N is at most `--workers`' ceiling,
    /// [`crate::config::WORKERS_MAX`] (256).
    fn reap(&mut self) {
        for i in 0..self.slots.len() {
            let Some(pid) = self.slots[i].pid else {
                continue;
            };
            let mut status = 0;
            // SAFETY: waitpid writes one int through the pointer, which is to a local;
            // WNOHANG makes it return at once. The pid is our own unreaped child.
            let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            match rc {
                0 => {} // still running
                -1 => {
                    let error = io::Error::last_os_error();
                    if error.kind() != io::ErrorKind::Interrupted {
                        // ECHILD: not ours to wait for any more, so as good as gone.
                        log::warn!("worker {} (pid {pid}): waitpid: {error}", i + 1);
                        self.exited(i, pid, None);
                    }
                }
                _ => self.exited(i, pid, Some(ExitStatus::from_raw(status))),
            }
        }
    }

    /// Worker `i + 1` (pid `pid`) exited: record how, and decide what follows. While
    /// stopping, nothing; before every worker listened, a failed start; after, a restart.
    fn exited(&mut self, i: usize, pid: libc::pid_t, status: Option<ExitStatus>) {
        // A byte it wrote before exiting is still in the socket: read it first.
        self.read_channel(i);
        let slot = &mut self.slots[i];
        slot.pid = None;
        if let Some(mut channel) = slot.channel.take() {
            let _ = self.poll.registry().deregister(&mut channel);
        }
        slot.last_exit = status;
        let how = status.map_or("status unknown".to_owned(), |status| status.to_string());
        let worker = i + 1;
        if self.stopping {
            log::info!("worker {worker} (pid {pid}) exited ({how})");
        } else if !self.announced {
            self.fail(format!(
                "worker {worker} (pid {pid}) exited before every worker was listening ({how})"
            ));
        } else {
            let now = Instant::now();
            let at = (slot.started + RESTART_INTERVAL).max(now);
            slot.restart_at = Some(at);
            let when = match at - now {
                wait if wait.is_zero() => "now".to_owned(),
                wait => format!("in {:.1} s", wait.as_secs_f64()),
            };
            log::warn!("worker {worker} (pid {pid}) died ({how}); restarting it {when}");
        }
    }

    /// Starts again every worker whose restart is due.
    fn restart_due(&mut self) {
        if self.stopping {
            return;
        }
        let now = Instant::now();
        for i in 0..self.slots.len() {
            if self.slots[i].restart_at.is_some_and(|at| at <= now) {
                if let Err(e) = self.spawn(i) {
                    log::error!("cannot restart worker {}: {e}; trying again", i + 1);
                    self.slots[i].started = now;
                    self.slots[i].restart_at = Some(now + RESTART_INTERVAL);
                }
            }
        }
    }

    /// Every [`PING_EVERY`], a byte to each listening worker; one that has answered nothing
    /// for [`SILENCE_LIMIT`] is killed, and restarted when its exit is reaped, as any
    /// worker that dies is. Not while stopping: a draining worker is left to finish.
    ///
    /// A worker asleep (`S` in /proc: its loop waits in `epoll_wait`) is not pinged: its
    /// loop is waiting for work, which is healthy, and a ping would wake it (idle workers
    /// are meant not to wake at all: the million bench counts their wake-ups). So only a
    /// worker seen running (`R`) or stopped (`T`) is asked to answer. One blocked for good
    /// in a syscall while asleep would be taken for idle; the loop makes no blocking calls
    /// but its log writes.
    fn ping_due(&mut self) {
        let now = Instant::now();
        if self.stopping || now < self.next_ping {
            return;
        }
        self.next_ping = now + PING_EVERY;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let (Some(pid), true) = (slot.pid, slot.listening) else {
                continue;
            };
            let Some(channel) = slot.channel.as_mut() else {
                continue;
            };
            let cpu = crate::sys::process_cpu(pid);
            let silent = now.duration_since(slot.last_heard);
            // The CPU it had when last heard from is taken at the first ping after.
            let cpu_then = *slot.cpu_when_heard.get_or_insert(cpu.unwrap_or_default());
            let used = cpu.map(|cpu| cpu.saturating_sub(cpu_then));
            match verdict(crate::sys::process_state(pid), silent, used) {
                Verdict::Idle => {
                    slot.last_heard = now;
                    slot.cpu_when_heard = cpu;
                    continue;
                }
                Verdict::Ping => {
                    // A full socket (nothing written) means it has not read the pings
                    // before: its silence is counted already.
                    let _ = channel.write(b"?");
                    continue;
                }
                Verdict::Kill => {}
            }
            log::warn!(
                "worker {} (pid {pid}) has not answered for {} s; killing it",
                i + 1,
                silent.as_secs()
            );
            // SAFETY: kill takes no pointers. The pid is our child, not yet reaped, so it
            // still names that process (see `Slot::pid`).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            if let Some(mut channel) = slot.channel.take() {
                let _ = self.poll.registry().deregister(&mut channel);
            }
        }
    }

    /// The one `listening on` line, once every worker has said it listens: what a user,
    /// a script or a test waits for.
    fn announce(&mut self) {
        if self.announced || self.stopping || !self.slots.iter().all(|slot| slot.listening) {
            return;
        }
        self.announced = true;
        let pids: Vec<String> = self
            .slots
            .iter()
            .filter_map(|slot| slot.pid.map(|pid| pid.to_string()))
            .collect();
        log::info!(
            "listening on http://{} ({} workers: pids {})",
            self.addr,
            self.slots.len(),
            pids.join(" ")
        );
    }

    /// SIGINT or SIGTERM: passed on to every running worker, which shuts down gracefully
    /// (the first time) or at once (the second), as a lone process does.
    fn pass_on(&mut self, signal: i32) {
        let name = if signal == libc::SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        if self.stopping {
            log::warn!("{name} again: passing it on; workers stop at once");
        } else {
            log::info!("{name}: passing it on to every worker; exiting once they have");
        }
        self.stop(signal);
    }

    /// No more restarts; `signal` to every running worker.
    fn stop(&mut self, signal: i32) {
        self.stopping = true;
        for slot in &mut self.slots {
            slot.restart_at = None;
            if let Some(pid) = slot.pid {
                // SAFETY: kill takes no pointers. The pid is our child, not yet reaped, so
                // it still names that process (see `Slot::pid`).
                unsafe { libc::kill(pid, signal) };
            }
        }
    }

    /// Start-up failed: say so now, stop the workers that did start, and exit with the
    /// reason once they are gone.
    fn fail(&mut self, reason: String) {
        log::error!("{reason}; stopping the other workers");
        self.failure.get_or_insert(reason);
        self.stop(libc::SIGTERM);
    }

    /// Every worker is gone: Ok if each one's last exit was clean.
    fn outcome(&mut self) -> io::Result<()> {
        if let Some(failure) = self.failure.take() {
            return Err(io::Error::other(failure));
        }
        let unclean: Vec<String> = (self.slots.iter().enumerate())
            .filter(|(_, slot)| !slot.last_exit.is_some_and(|status| status.success()))
            .map(|(i, slot)| match slot.last_exit {
                Some(status) => format!("worker {} ({status})", i + 1),
                None => format!("worker {} (status unknown)", i + 1),
            })
            .collect();
        if !unclean.is_empty() {
            let which = unclean.join(", ");
            return Err(io::Error::other(format!(
                "not every worker shut down cleanly: {which}"
            )));
        }
        log::info!("every worker shut down cleanly");
        Ok(())
    }
}

/// In the forked worker, before exec: keeps its readiness socket open across exec, and asks
/// the kernel for SIGTERM should the supervisor die (so that no worker outlives it),
/// failing if it already has. Only async-signal-safe calls, and no allocation: even the
/// errors are built from OS error codes.
fn prepare_worker(fd: RawFd, supervisor: u32) -> io::Result<()> {
    // SAFETY: F_SETFD changes only the flags of a descriptor this process holds; 0 clears
    // FD_CLOEXEC on it alone (every other descriptor still closes at exec).
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid take no pointers and change only this
        // process's own state. The supervisor is single-threaded, and PR_SET_PDEATHSIG
        // follows the thread that forked, which lives as long as the supervisor.
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() as u32 != supervisor {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = supervisor;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Who is killed: a worker asleep never; one stopped or unreadable after ten silent
    /// seconds; one running after ten silent seconds only if it also used ten seconds of
    /// CPU meanwhile (a loop spinning), not if a busy box gave it little (a long pass).
    #[test]
    fn a_starved_worker_is_not_taken_for_a_stopped_one() {
        let s = Duration::from_secs;
        let cases = [
            (Some('S'), s(60), Some(s(0)), Verdict::Idle),
            (Some('R'), s(3), Some(s(3)), Verdict::Ping),
            (Some('T'), s(9), None, Verdict::Ping),
            (Some('T'), s(10), Some(s(0)), Verdict::Kill),
            (Some('D'), s(30), Some(s(0)), Verdict::Kill),
            (None, s(10), None, Verdict::Kill),
            (
                Some('R'),
                s(16),
                Some(Duration::from_millis(200)),
                Verdict::Ping,
            ),
            (Some('R'), s(120), Some(s(9)), Verdict::Ping),
            (Some('R'), s(10), Some(s(10)), Verdict::Kill),
            (Some('R'), s(12), None, Verdict::Kill),
        ];
        for (state, silent, cpu, expected) in cases {
            assert_eq!(
                verdict(state, silent, cpu),
                expected,
                "{state:?} {silent:?} {cpu:?}"
            );
        }
    }
}
