//! The one way a benchmark starts the server under test. Shared by `benches/load`,
//! `benches/soak` and `benches/hostile` (each includes this file by path, next to
//! `parent_death.rs`, which it uses).
//!
//! It owns every step between "a binary on disk" and "a server answering `/stats` on
//! loopback", and the promise that the server never outlives the benchmark:
//!
//! 1. [`build_release`] runs `cargo build --release --bin comet-chat` (or the caller names
//!    a binary, which [`Server::start`] checks exists);
//! 2. a free loopback port, asked of the kernel by binding port 0 and letting go;
//! 3. the server spawned with `--addr` and the caller's flags, optionally pinned to one
//!    CPU, killed by the kernel if the benchmark dies (`PR_SET_PDEATHSIG`), its output
//!    either inherited or collected line by line;
//! 4. a probe until it answers (`GET /stats` by default), or it exits, or
//!    [`START_TIMEOUT`] passes;
//! 5. steps 2–4 again, up to [`START_ATTEMPTS`] times: another process may take the port
//!    between our probe and the server's bind, which costs one retry;
//! 6. [`Server::terminate`] sends SIGTERM to its PID and gives it a grace period; dropping
//!    the handle sends SIGKILL to its PID and reaps it, on every path, panics included.

#![allow(dead_code)] // each benchmark uses a different subset

use std::ffi::OsStr;
use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a started server may take to answer its first request.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Start attempts: the free port we pick can be taken by someone else before the server
/// binds it, which costs one retry.
pub const START_ATTEMPTS: usize = 3;

/// Pause between two readiness probes, and between two looks at an exiting server.
const PROBE_PAUSE: Duration = Duration::from_millis(10);

/// Longest the default probe waits for `/stats`: it answers in microseconds once the
/// server listens, so this only matters for a server that is stuck.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What becomes of the server's stdout and stderr.
pub enum Output {
    /// stdout discarded, stderr shared with the benchmark: its warnings (e.g. accept
    /// failing with EMFILE) show up in the benchmark's output as they happen.
    Inherit,
    /// Both piped and read line by line on two threads (which end when the server's pipes
    /// close). The first `keep` lines are kept for the report and passed to `echo` as
    /// they arrive; the rest are only counted.
    Collect {
        /// Lines kept (and echoed).
        keep: usize,
        /// Called with each kept line, e.g. to print it with the benchmark's time stamp.
        echo: fn(&str),
    },
}

/// How to start a server.
pub struct Launch<'a> {
    /// The server binary.
    pub bin: &'a Path,
    /// Flags after `--addr <free loopback port>`.
    pub args: &'a [&'a str],
    /// Pin the server to this CPU, so it has a core of its own.
    pub cpu: Option<usize>,
    /// Its stdout and stderr.
    pub output: Output,
}

/// Lines a server logged, when its output is collected.
#[derive(Default)]
struct Log {
    /// The first lines, up to the launch's `keep`.
    kept: Mutex<Vec<String>>,
    /// All lines, kept or not.
    count: AtomicU64,
}

/// A running server. Dropping it kills it (SIGKILL to its PID, then reaped), so no path
/// out of a benchmark leaves it running.
pub struct Server {
    /// The std handle: its `kill` signals this PID only, and `try_wait` reaps it, so the
    /// PID cannot be reused by another process while we hold it unreaped.
    child: Child,
    /// Where it listens (loopback).
    addr: SocketAddr,
    /// What it logged, when collected.
    log: Arc<Log>,
}

impl Server {
    /// Starts `launch` and waits until it answers `GET /stats`.
    pub fn start(launch: Launch<'_>) -> io::Result<Server> {
        Server::start_probing(launch, stats_answers).map(|(server, ())| server)
    }

    /// Starts `launch` and waits until `probe(addr)` succeeds, retrying on a fresh port if
    /// the server exits at start or does not answer in [`START_TIMEOUT`]. Returns the
    /// server and what the probe returned (e.g. the connection it used, kept open).
    ///
    /// Call it from a thread that lives as long as the server should: `PR_SET_PDEATHSIG`
    /// fires when the forking *thread* ends.
    pub fn start_probing<T>(
        launch: Launch<'_>,
        mut probe: impl FnMut(SocketAddr) -> io::Result<T>,
    ) -> io::Result<(Server, T)> {
        if !launch.bin.exists() {
            return Err(io::Error::other(format!(
                "server binary {} is missing (cargo bench builds it; \
                 or run cargo build --release)",
                launch.bin.display()
            )));
        }
        let mut last_error = io::Error::other("server did not start");
        for _ in 0..START_ATTEMPTS {
            // Ask the kernel for a free port, then hand it to the server.
            let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            let mut server = Server::spawn(&launch, addr)?;
            match server.wait_ready(&mut probe) {
                Ok(answer) => return Ok((server, answer)),
                Err(e) => last_error = e, // dropped: killed by its PID
            }
        }
        Err(last_error)
    }

    fn spawn(launch: &Launch<'_>, addr: SocketAddr) -> io::Result<Server> {
        let mut command = Command::new(launch.bin);
        command
            .arg("--addr")
            .arg(addr.to_string())
            .args(launch.args.iter().map(OsStr::new))
            .stdin(Stdio::null());
        match launch.output {
            Output::Inherit => command.stdout(Stdio::null()).stderr(Stdio::inherit()),
            Output::Collect { .. } => command.stdout(Stdio::piped()).stderr(Stdio::piped()),
        };
        let parent = std::process::id();
        let cpu = launch.cpu;
        // SAFETY: the closure runs in the forked child before exec and makes only
        // async-signal-safe syscalls (prctl, getppid, sched_setaffinity); it allocates
        // nothing and takes no locks.
        unsafe {
            command.pre_exec(move || {
                crate::parent_death::die_with_parent(parent)?;
                match cpu {
                    Some(cpu) => pin_to_cpu(cpu),
                    None => Ok(()),
                }
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start the server: {e}")))?;
        let log = Arc::new(Log::default());
        if let Output::Collect { keep, echo } = launch.output {
            let outputs: [Option<Box<dyn Read + Send>>; 2] = [
                child
                    .stdout
                    .take()
                    .map(|o| Box::new(o) as Box<dyn Read + Send>),
                child
                    .stderr
                    .take()
                    .map(|o| Box::new(o) as Box<dyn Read + Send>),
            ];
            for output in outputs.into_iter().flatten() {
                let log = Arc::clone(&log);
                // Ends by itself when the server's pipe closes.
                thread::spawn(move || collect_log(output, &log, keep, echo));
            }
        }
        Ok(Server { child, addr, log })
    }

    fn wait_ready<T>(
        &mut self,
        probe: &mut impl FnMut(SocketAddr) -> io::Result<T>,
    ) -> io::Result<T> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.exited() {
                return Err(io::Error::other(format!(
                    "server exited at start: {status}"
                )));
            }
            if let Ok(answer) = probe(self.addr) {
                return Ok(answer);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "server did not answer on {} within {START_TIMEOUT:?}",
                    self.addr
                )));
            }
            thread::sleep(PROBE_PAUSE);
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How it exited, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM to its PID (a graceful shutdown), then up to `grace` for it to exit. `None`
    /// if it did not; dropping the handle then kills it.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        // SAFETY: kill has no memory effects; the PID is our own child, not yet reaped (so
        // it cannot have been reused by another process).
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            thread::sleep(PROBE_PAUSE);
        }
        None
    }

    /// Sends `signal` (e.g. SIGSTOP, SIGCONT) to its PID and nothing else; refused once it
    /// has exited, since its PID may then belong to another process.
    pub fn signal(&mut self, signal: libc::c_int) -> io::Result<()> {
        if let Some(status) = self.exited() {
            return Err(io::Error::other(format!("the server has exited: {status}")));
        }
        // SAFETY: kill has no memory effects; the PID is our own child, not yet reaped (so
        // it cannot have been reused by another process).
        if unsafe { libc::kill(self.pid() as libc::pid_t, signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The lines kept from its output (none unless collected).
    pub fn log_lines(&self) -> Vec<String> {
        self.log.kept.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// How many lines it wrote (0 unless collected).
    pub fn log_count(&self) -> u64 {
        self.log.count.load(Relaxed)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // Child::kill sends SIGKILL to this child's PID and nothing else.
        if let Err(e) = self.child.kill() {
            eprintln!("cannot kill the server (pid {}): {e}", self.pid());
        }
        // Reap it so it leaves no zombie; SIGKILL cannot be ignored, so this returns.
        let _ = self.child.wait();
    }
}

/// Keeps (and echoes) the first lines of one of the server's outputs and counts them all.
fn collect_log(output: Box<dyn Read + Send>, log: &Log, keep: usize, echo: fn(&str)) {
    for line in io::BufReader::new(output).lines() {
        let Ok(line) = line else { break };
        if (log.count.fetch_add(1, Relaxed) as usize) < keep {
            echo(&line);
            if let Ok(mut kept) = log.kept.lock() {
                kept.push(line);
            }
        }
    }
}

/// The default readiness probe: `GET /stats` on a fresh connection the server closes
/// after answering, which must be a 200.
pub fn stats_answers(addr: SocketAddr) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.write_all(b"GET /stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        return Err(io::Error::other("/stats did not answer 200"));
    }
    Ok(())
}

/// The flags that lift the per-client limits, for those `bin --help` lists (so a benchmark
/// runs against builds from before and after them): `--max-conns-per-client 0` (a load
/// generator puts thousands of clients on one source address), `--max-rooms-per-client 0`
/// (a bench may post into many rooms from one address) and a post rate no poster reaches
/// (one poster posts as fast as the fan-out allows).
pub fn unlimited_per_client(bin: &Path) -> Vec<&'static str> {
    let help = Command::new(bin)
        .arg("--help")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let Ok(out) = help else {
        return Vec::new();
    };
    let help = String::from_utf8_lossy(&out.stdout);
    let mut args = Vec::new();
    if help.contains("--max-conns-per-client") {
        args.extend(["--max-conns-per-client", "0"]);
    }
    if help.contains("--max-rooms-per-client") {
        args.extend(["--max-rooms-per-client", "0"]);
    }
    if help.contains("--post-rate") {
        args.extend(["--post-rate", "1000000", "--post-burst", "1000000"]);
    }
    args
}

/// Builds the release server (`cargo build --release --bin comet-chat`, with the cargo
/// that runs the benchmark) and returns the binary's path.
pub fn build_release() -> io::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--bin", "comet-chat"])
        .current_dir(root)
        .stdin(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!("cargo build failed: {status}")));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release").join("comet-chat");
    if !bin.exists() {
        return Err(io::Error::other(format!("{} is missing", bin.display())));
    }
    Ok(bin)
}

/// Restricts the calling process (or, between fork and exec, the child) to one CPU.
/// Allocates nothing and makes one syscall, so it is safe in a `pre_exec` hook.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit array; CPU_ZERO/CPU_SET only write bits of `set`,
    // and sched_setaffinity reads the size we pass.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
