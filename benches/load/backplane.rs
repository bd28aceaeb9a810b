//! The Redis side of the workers scenario, as the command line chose it: one
//! `redis-server` (the default), N of them as shards (`--shards N`: the server gets one
//! `--redis` per shard and spreads rooms over them), or a master, one replica and three
//! Sentinels (`--sentinel`: the server gets `redis+sentinel://` naming the three, and
//! `--redis-replicas N` with `--replicas N`). Every process is the benchmark's own, on a
//! free loopback port, in a scratch directory, started and stopped by its PID (as
//! `tests/common/sentinel.rs` does for the tests).
//!
//! Nothing here fails over: the Sentinels are there so that the workers find the master
//! through them and pay whatever that costs; the failover itself is tested in
//! `tests/sentinel.rs`.

use crate::child::Child;
use crate::cluster::{free_port, Redis, ScratchDir};
use crate::server;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The name the Sentinels monitor the master under, as in the tests.
const MASTER_NAME: &str = "chat";

/// Sentinels in the deployment: three, the smallest number that agrees on a failover
/// with one of them gone (quorum 2).
const SENTINELS: usize = 3;

/// How long a Sentinel or the replica may take to be ready: the replica's first sync of
/// an empty master takes milliseconds; this only bounds a broken start.
const READY_CAP: Duration = Duration::from_secs(20);

/// Longest wait for one answer from a Redis or a Sentinel.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest reply read from a Redis here (`INFO replication`, `DBSIZE`, a master's
/// address): a few hundred bytes; more means something else is answering.
const REPLY_CAP_BYTES: usize = 64 * 1024;

/// What the command line asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One redis-server.
    One,
    /// This many redis-servers, one `--redis` each.
    Shards(usize),
    /// A master, a replica and three Sentinels; posts wait for this many replicas.
    Sentinel {
        /// `--redis-replicas` given to the server (0: not given).
        replicas: u32,
    },
}

/// The running Redis processes of one run.
pub struct Backplane {
    /// What was asked for.
    kind: Kind,
    /// The shards (one for [`Kind::One`]), or the master then its replica.
    redis: Vec<Redis>,
    /// The Sentinels ([`Kind::Sentinel`] only). Dropped before the Redis they watch, so
    /// none of them sees the master go and tries a failover.
    sentinels: Vec<Sentinel>,
}

impl Backplane {
    /// Starts what `kind` needs and waits until it is ready: every Redis answers, and for
    /// a Sentinel deployment the replica is in sync and every Sentinel names the master.
    pub fn start(kind: Kind) -> Result<Backplane, String> {
        let mut backplane = Backplane {
            kind,
            redis: Vec::new(),
            sentinels: Vec::new(),
        };
        match kind {
            Kind::One => backplane.redis.push(Redis::start()?),
            Kind::Shards(n) => {
                for _ in 0..n {
                    backplane.redis.push(Redis::start()?);
                }
            }
            Kind::Sentinel { .. } => {
                let master = Redis::start()?;
                let master_port = master.port();
                let replica =
                    Redis::start_with(&["--replicaof", "127.0.0.1", &master_port.to_string()])?;
                let replica_port = replica.port();
                backplane.redis.extend([master, replica]);
                wait_for(READY_CAP, "the replica to sync", || {
                    info_field(replica_port, "master_link_status").as_deref() == Some("up")
                })?;
                for _ in 0..SENTINELS {
                    backplane.sentinels.push(Sentinel::start(master_port)?);
                }
            }
        }
        Ok(backplane)
    }

    /// For table rows: "Redis", "3 shards", "Sentinel", "Sentinel, 1 replica".
    pub fn label(&self) -> String {
        match self.kind {
            Kind::One => "Redis".into(),
            Kind::Shards(1) => "1 shard".into(),
            Kind::Shards(n) => format!("{n} shards"),
            Kind::Sentinel { replicas: 0 } => "Sentinel".into(),
            Kind::Sentinel { replicas } => format!("Sentinel, {replicas} repl."),
        }
    }

    /// The server's arguments: `--redis URL` once per shard, or the Sentinels' URL (and
    /// `--redis-replicas N` when asked for).
    pub fn server_args(&self) -> Vec<String> {
        match self.kind {
            Kind::One | Kind::Shards(_) => self.redis.iter().flat_map(Redis::args).collect(),
            Kind::Sentinel { replicas } => {
                let list: Vec<String> = (self.sentinels.iter())
                    .map(|s| format!("127.0.0.1:{}", s.port))
                    .collect();
                let mut args = vec![
                    "--redis".to_owned(),
                    format!("redis+sentinel://{}/{MASTER_NAME}", list.join(",")),
                ];
                if replicas > 0 {
                    args.extend(["--redis-replicas".to_owned(), replicas.to_string()]);
                }
                args
            }
        }
    }

    /// One line per process: what it is, its PID and port.
    pub fn describe(&self) -> Vec<String> {
        let role = |i: usize| match self.kind {
            Kind::Sentinel { .. } if i == 0 => "master".to_owned(),
            Kind::Sentinel { .. } => "replica".to_owned(),
            Kind::Shards(_) => format!("shard {}", i + 1),
            Kind::One => "redis-server".to_owned(),
        };
        let redis = self.redis.iter().enumerate().map(|(i, r)| {
            format!(
                "{}: redis-server pid {} on 127.0.0.1:{}",
                role(i),
                r.pid(),
                r.port()
            )
        });
        let sentinels = self.sentinels.iter().map(|s| {
            format!(
                "sentinel: redis-sentinel pid {} on 127.0.0.1:{}",
                s.child.pid(),
                s.port
            )
        });
        redis.chain(sentinels).collect()
    }

    /// Keys in each shard (`DBSIZE`), in shard order; `None` where a shard did not
    /// answer. For a run that posted to many rooms, a shard with none was never used.
    /// Empty unless this is a set of shards.
    pub fn keys_per_shard(&self) -> Vec<(u16, Option<u64>)> {
        if !matches!(self.kind, Kind::Shards(_)) {
            return Vec::new();
        }
        (self.redis.iter())
            .map(|r| {
                let keys = command(r.port(), &["DBSIZE"]).ok().and_then(|reply| {
                    let text = String::from_utf8_lossy(&reply).into_owned();
                    text.strip_prefix(':')?.trim().parse().ok()
                });
                (r.port(), keys)
            })
            .collect()
    }
}

impl Drop for Backplane {
    fn drop(&mut self) {
        // Sentinels first (see the field), then the replica, then the master.
        self.sentinels.clear();
        while self.redis.pop().is_some() {}
    }
}

/// One redis-sentinel of the benchmark's own, with its configuration file (which it
/// rewrites) in a scratch directory.
struct Sentinel {
    /// Killed by its PID when dropped (before `dir` goes).
    child: Child,
    /// Where it listens on 127.0.0.1.
    port: u16,
    /// Its directory and configuration, removed on drop.
    _dir: ScratchDir,
}

impl Sentinel {
    /// Starts a Sentinel monitoring the master on `master_port` (quorum 2), and waits
    /// until it names that master.
    fn start(master_port: u16) -> Result<Sentinel, String> {
        let mut last = String::from("redis-sentinel did not start");
        for _ in 0..server::START_ATTEMPTS {
            let port = free_port().map_err(|e| e.to_string())?;
            let dir = ScratchDir::new("sentinel", port)?;
            let conf = dir.path().join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\ndaemonize no\nloglevel warning\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n",
                    dir = dir.path().display()
                ),
            )
            .map_err(|e| format!("{}: {e}", conf.display()))?;
            let mut command = Command::new("redis-sentinel");
            command
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            let mut child = Child::spawn(command, "redis-sentinel", None).map_err(|e| {
                format!("{e} (is redis-sentinel installed? apt-get install redis-sentinel)")
            })?;
            let deadline = Instant::now() + READY_CAP;
            while Instant::now() < deadline && child.exited().is_none() {
                if master_port_of(port) == Some(master_port) {
                    return Ok(Sentinel {
                        child,
                        port,
                        _dir: dir,
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last = format!("redis-sentinel on port {port} did not name the master");
        }
        Err(last)
    }
}

/// The master's port as the Sentinel on `port` names it.
fn master_port_of(port: u16) -> Option<u16> {
    let reply = command(port, &["SENTINEL", "get-master-addr-by-name", MASTER_NAME]).ok()?;
    // *2\r\n$9\r\n127.0.0.1\r\n$5\r\n12345\r\n: the port is the last line.
    let text = String::from_utf8_lossy(&reply).into_owned();
    text.lines().rfind(|l| !l.is_empty())?.parse().ok()
}

/// One field of `INFO replication` of the Redis on `port`.
fn info_field(port: u16, name: &str) -> Option<String> {
    let reply = command(port, &["INFO", "replication"]).ok()?;
    let text = String::from_utf8_lossy(&reply).into_owned();
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim().to_owned())
    })
}

/// Sends one command to the Redis (or Sentinel) on `port` over a fresh connection and
/// returns its whole reply, raw.
fn command(port: u16, args: &[&str]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes())?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(len) = reply_len(&reply) {
            reply.truncate(len);
            return Ok(reply);
        }
        if reply.len() > REPLY_CAP_BYTES {
            return Err(io::Error::other("reply over the cap"));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The length of the whole RESP reply at the start of `buf`, if it has all arrived.
fn reply_len(buf: &[u8]) -> Option<usize> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let head = std::str::from_utf8(buf.get(1..line_end)?).ok()?;
    let after_head = line_end + 2;
    match buf.first()? {
        b'+' | b'-' | b':' => Some(after_head),
        b'$' => {
            let len: i64 = head.parse().ok()?;
            if len < 0 {
                return Some(after_head); // the null bulk string
            }
            let end = after_head + len as usize + 2;
            (buf.len() >= end).then_some(end)
        }
        b'*' => {
            let count: i64 = head.parse().ok()?;
            let mut at = after_head;
            for _ in 0..count.max(0) {
                at += reply_len(buf.get(at..)?)?;
            }
            Some(at)
        }
        _ => None,
    }
}

/// Waits until `ready` holds, checking every 50 ms, for at most `cap`.
fn wait_for(cap: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + cap;
    while !ready() {
        if Instant::now() >= deadline {
            return Err(format!(
                "timed out after {} s waiting for {what}",
                cap.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
