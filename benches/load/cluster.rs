//! The servers of the workers scenario: a Redis of the benchmark's own, and comet-chat
//! started by the shared launcher (`benches/shared/server.rs`) as one process or as a
//! supervisor with `--workers W` on one port. Every process is known by its PID (the
//! supervisor's workers are its children in /proc), each worker by one kept `/stats`
//! connection, so what the workers hold, and how the kernel spread them, can be read
//! worker by worker.
//!
//! A new connection lands on whichever worker SO_REUSEPORT's hash picks, so finding every
//! worker means opening `/stats` connections until each one has answered (bounded in
//! count and time), keeping the first to reach each worker and closing the rest. The
//! server runs with a long `--idle-timeout`, so the kept connections stay with their
//! workers for the whole run.

#![allow(dead_code)] // shared by benches/load and benches/million, each using a subset

use crate::api::{HttpConn, Stats};
use crate::child::Child;
use crate::host;
use crate::procfs;
use crate::server::{self, Launch, Output, Server};
use crate::wire;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long Redis may take to answer its first PING.
const REDIS_START: Duration = Duration::from_secs(10);

/// How long every worker may take to answer once, and how many `/stats` connections
/// finding them may cost per worker (coupon collecting over 64 workers takes ~300).
const FIND_WORKERS: Duration = Duration::from_secs(30);
const FIND_ATTEMPTS_PER_WORKER: usize = 100;

/// Kept connections never idle out: longer than any run.
const IDLE_TIMEOUT_SECS: &str = "86400";

/// Time for the supervisor to stop its workers after SIGTERM (their shutdown grace is 5 s).
const STOP_GRACE: Duration = Duration::from_secs(15);

/// A redis-server of the benchmark's own: loopback, a free port, no persistence, and a
/// scratch directory of its own (a replica writes the master's snapshot there while it
/// syncs), removed when it stops.
pub struct Redis {
    /// Killed by its PID when dropped (before `dir` goes).
    child: Child,
    /// Where it listens on 127.0.0.1.
    port: u16,
    /// Its working directory, removed on drop.
    dir: ScratchDir,
}

impl Redis {
    /// Starts `redis-server` (from `PATH`) and waits for its PONG.
    pub fn start() -> Result<Redis, String> {
        Redis::start_with(&[])
    }

    /// As [`start`](Redis::start), with `extra` arguments (e.g. `--replicaof HOST PORT`).
    pub fn start_with(extra: &[&str]) -> Result<Redis, String> {
        let mut last = String::from("redis-server did not start");
        for _ in 0..server::START_ATTEMPTS {
            let port = free_port().map_err(|e| e.to_string())?;
            let dir = ScratchDir::new("redis", port)?;
            let mut command = Command::new("redis-server");
            command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
                .arg("--dir")
                .arg(dir.path())
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            let mut child = Child::spawn(command, "redis-server", None).map_err(|e| {
                format!("{e} (is redis-server installed? apt-get install redis-server)")
            })?;
            let deadline = Instant::now() + REDIS_START;
            while Instant::now() < deadline && child.exited().is_none() {
                if ping(port).is_ok() {
                    return Ok(Redis { child, port, dir });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last = format!("redis-server on port {port} did not answer PING");
        }
        Err(last)
    }

    /// The `--redis` URL of this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server arguments that share rooms through this Redis alone.
    pub fn args(&self) -> Vec<String> {
        vec!["--redis".into(), self.url()]
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// A directory under the system's temporary directory for one helper process of this
/// benchmark (named by what it is, the benchmark's PID and the helper's port), removed
/// when dropped.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `$TMPDIR/comet-bench-{what}-{pid}-{port}`.
    pub fn new(what: &str, port: u16) -> Result<ScratchDir, String> {
        let dir =
            std::env::temp_dir().join(format!("comet-bench-{what}-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(ScratchDir(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// PING over a fresh connection; Ok on `+PONG`.
fn ping(port: u16) -> io::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(b"PING\r\n")?;
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer)?;
    if &answer == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(io::Error::other("no PONG"))
    }
}

/// A port on 127.0.0.1 that was free a moment ago (a start that loses the race retries).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One worker's counters, as its kept connection read them.
#[derive(Clone, Copy, Debug)]
pub struct WorkerStats {
    /// The worker's index, 1 to W (0 for a lone process).
    pub worker: u64,
    /// Its counters.
    pub stats: Stats,
}

/// comet-chat as one process or a supervisor and its workers.
pub struct Cluster {
    /// The process started: the lone server, or the supervisor. Dropping it kills it (and
    /// the workers get SIGTERM from the kernel, as their supervisor asked).
    server: Server,
    /// Where every worker listens.
    pub addr: SocketAddr,
    /// The worker processes (the lone server itself when there are none).
    pids: Vec<u32>,
    /// One kept `/stats` connection per worker, in worker order.
    workers: Vec<(u64, HttpConn)>,
    /// For `POST /chat`; lands on whichever worker.
    poster: HttpConn,
}

impl Cluster {
    /// Starts `bin` with `workers` workers (1: a lone process) sharing rooms through the
    /// Redis that `redis` names, as server arguments (`--redis URL`, once per shard, and
    /// any `--redis-replicas`; none: rooms in memory; more than one worker needs Redis),
    /// and waits until every worker has answered `/stats` on a connection it keeps.
    pub fn start(
        bin: &Path,
        workers: usize,
        redis: &[String],
        poll_timeout_secs: u64,
    ) -> Result<Cluster, String> {
        let poll_timeout = poll_timeout_secs.to_string();
        let workers_text = workers.to_string();
        let shared = !redis.is_empty();
        let mut args: Vec<&str> = vec![
            "--no-www",
            "--poll-timeout",
            &poll_timeout,
            "--idle-timeout",
            IDLE_TIMEOUT_SECS,
            "--log-level",
            "warn",
        ];
        if shared {
            args.extend(redis.iter().map(String::as_str));
            args.extend(["--workers", &workers_text]);
        }
        args.extend(server::unlimited_per_client(bin));
        let launch = Launch {
            bin,
            args: &args,
            cpu: None,
            output: Output::Inherit,
        };
        let server = Server::start(launch).map_err(|e| e.to_string())?;
        let addr = server.addr();
        let deadline = Instant::now() + FIND_WORKERS;
        let pids = if shared && workers > 1 {
            worker_pids(server.pid(), workers, deadline)?
        } else {
            vec![server.pid()]
        };
        let workers = find_workers(addr, pids.len(), deadline)?;
        let poster = HttpConn::connect(addr).map_err(|e| e.to_string())?;
        Ok(Cluster {
            server,
            addr,
            pids,
            workers,
            poster,
        })
    }

    /// The worker processes.
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// The process started (supervisor or lone server).
    pub fn main_pid(&self) -> u32 {
        self.server.pid()
    }

    /// Every worker's counters now, in worker order.
    pub fn per_worker(&mut self) -> io::Result<Vec<WorkerStats>> {
        self.workers
            .iter_mut()
            .map(|(worker, conn)| {
                Ok(WorkerStats {
                    worker: *worker,
                    stats: conn.stats()?,
                })
            })
            .collect()
    }

    /// Polls parked over all workers.
    pub fn pending(&mut self) -> io::Result<u64> {
        Ok(self
            .per_worker()?
            .iter()
            .map(|w| w.stats.pending_polls)
            .sum())
    }

    /// Every worker's kept connection waits up to `wait` for an answer from now on (see
    /// [`HttpConn::wait_answers_up_to`]).
    pub fn wait_answers_up_to(&mut self, wait: Duration) -> io::Result<()> {
        for (_, conn) in &mut self.workers {
            conn.wait_answers_up_to(wait)?;
        }
        Ok(())
    }

    /// Poll answers that timed out, over all workers, since they started.
    pub fn timeouts(&mut self) -> io::Result<u64> {
        Ok(self.per_worker()?.iter().map(|w| w.stats.timeouts).sum())
    }

    /// Reads [`pending`](Cluster::pending) until it reaches `at_least` or `deadline`
    /// passes; returns the last sum, when it was read, and whether it got there.
    pub fn wait_pending(
        &mut self,
        at_least: u64,
        deadline: Instant,
    ) -> io::Result<(u64, Instant, bool)> {
        loop {
            let pending = self.pending()?;
            let now = Instant::now();
            if pending >= at_least || now >= deadline {
                return Ok((pending, now, pending >= at_least));
            }
            // One round of W requests; a pause as long keeps /stats a small load.
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// CPU time of all workers together.
    pub fn cpu_time(&self) -> Option<Duration> {
        self.pids.iter().map(|&pid| host::cpu_time(pid)).sum()
    }

    /// Context switches of all workers together: about one per wake-up of an idle loop.
    pub fn context_switches(&self) -> io::Result<u64> {
        self.pids
            .iter()
            .map(|&pid| host::context_switches(pid))
            .sum()
    }

    /// Resident memory of all workers together (shared pages counted once per worker).
    pub fn rss(&self) -> io::Result<u64> {
        self.pids.iter().map(|&pid| procfs::rss_bytes(pid)).sum()
    }

    /// Anonymous resident memory (heap, stacks) of all workers together.
    pub fn rss_anon(&self) -> io::Result<u64> {
        self.pids.iter().map(|&pid| host::rss_anon_bytes(pid)).sum()
    }

    /// Proportional memory of all workers together (shared pages counted once).
    pub fn pss(&self) -> io::Result<u64> {
        self.pids.iter().map(|&pid| host::pss_bytes(pid)).sum()
    }

    /// Sends `POST /chat` with `message`; returns the instant just before the write.
    pub fn post(&mut self, message: &str) -> io::Result<Instant> {
        // A replaced connection must not be made inside the timed window.
        self.poster.refresh()?;
        let sent = Instant::now();
        self.poster.send(&wire::post(message))?;
        Ok(sent)
    }

    /// Reads the answer to the last post, which must be 200; returns when it was read.
    pub fn finish_post(&mut self) -> io::Result<Instant> {
        match self.poster.read_answer()? {
            (200, _) => Ok(Instant::now()),
            (status, body) => Err(io::Error::other(format!(
                "POST /chat answered {status}: {}",
                String::from_utf8_lossy(&body)
            ))),
        }
    }

    /// SIGTERM to the supervisor (or lone server), which stops its workers; killed by its
    /// PID if it takes longer than the grace.
    pub fn stop(mut self) {
        drop(self.workers.drain(..));
        self.server.terminate(STOP_GRACE);
    }
}

/// The supervisor's children, once all `count` are there.
fn worker_pids(supervisor: u32, count: usize, deadline: Instant) -> Result<Vec<u32>, String> {
    let path = format!("/proc/{supervisor}/task/{supervisor}/children");
    loop {
        let pids: Vec<u32> = std::fs::read_to_string(&path)
            .map_err(|e| format!("{path}: {e}"))?
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .collect();
        if pids.len() >= count {
            return Ok(pids);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the supervisor has {} of {count} workers",
                pids.len()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens `/stats` connections until each of `count` workers has answered one, keeping that
/// one; a lone process (no `worker` in `/stats`) is worker 0.
fn find_workers(
    addr: SocketAddr,
    count: usize,
    deadline: Instant,
) -> Result<Vec<(u64, HttpConn)>, String> {
    let mut found: Vec<(u64, HttpConn)> = Vec::with_capacity(count);
    let mut attempts = 0;
    while found.len() < count {
        attempts += 1;
        if attempts > FIND_ATTEMPTS_PER_WORKER * count || Instant::now() >= deadline {
            return Err(format!(
                "{} of {count} workers answered /stats in {attempts} connections",
                found.len()
            ));
        }
        let Ok(mut conn) = HttpConn::connect_kept(addr) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let Ok(stats) = conn.stats() else { continue };
        let worker = stats.worker.unwrap_or(0);
        if found.iter().all(|(w, _)| *w != worker) {
            found.push((worker, conn));
        } else {
            // A worker still starting (with Sentinel it asks the Sentinels and its master
            // first) has no socket in the port's group yet, and every connection lands on
            // the others: spread the attempts over the time allowed instead of spending
            // them all in the first milliseconds.
            std::thread::sleep(FIND_WORKERS / (FIND_ATTEMPTS_PER_WORKER * count) as u32);
        }
    }
    found.sort_by_key(|(worker, _)| *worker);
    Ok(found)
}
