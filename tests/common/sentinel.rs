//! Real Redis Sentinels for a test (Debian's `redis-sentinel` package, or `redis-server
//! --sentinel`, the same program): each on its own free port with its own directory and
//! configuration file (a Sentinel rewrites it), started and stopped by its PID. Short
//! timings, so that a failover takes seconds: a master is down for a Sentinel after
//! [`DOWN_AFTER_MS`] without an answer.

use super::redis::RedisServer;
use super::{free_port, scratch_dir};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The name the Sentinels monitor the master under.
pub const MASTER_NAME: &str = "chat";

/// How long a master may not answer before a Sentinel takes it for down, in ms.
pub const DOWN_AFTER_MS: u64 = 600;

/// A running Sentinel, stopped when dropped.
pub struct Sentinel {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
}

impl Sentinel {
    /// Starts a Sentinel monitoring the master at `master_port` (quorum 2).
    pub fn start(master_port: u16) -> Sentinel {
        let port = free_port();
        let dir = scratch_dir("sentinel", port);
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\ndaemonize no\nloglevel warning\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {MASTER_NAME} 4000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        // Debian's redis-sentinel is redis-server under another name; either will do.
        let conf = conf.to_str().unwrap();
        let mut command = if Command::new("redis-sentinel")
            .arg("--version")
            .output()
            .is_ok()
        {
            let mut command = Command::new("redis-sentinel");
            command.arg(conf);
            command
        } else {
            let mut command = Command::new("redis-server");
            command.args([conf, "--sentinel"]);
            command
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-sentinel (apt-get install redis-sentinel; tests/run-all.sh does)");
        let sentinel = Sentinel {
            child: Some(child),
            port,
            dir,
        };
        let started = Instant::now();
        while sentinel.master().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the Sentinel on port {port} did not answer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sentinel
    }

    /// The master's port as this Sentinel names it now.
    pub fn master(&self) -> Option<u16> {
        let reply = cli(
            self.port,
            &["SENTINEL", "get-master-addr-by-name", MASTER_NAME],
        )?;
        reply.get(1)?.parse().ok()
    }

    /// One field of `SENTINEL master` (e.g. `num-slaves`, `num-other-sentinels`).
    pub fn field(&self, name: &str) -> Option<String> {
        let reply = cli(self.port, &["SENTINEL", "master", MASTER_NAME])?;
        let at = reply.iter().position(|line| line == name)?;
        reply.get(at + 1).cloned()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One command with `redis-cli` (Debian's redis-tools, which redis-server depends on) to
/// 127.0.0.1:`port`, its reply one element a line; `None` when it could not answer.
pub fn cli(port: u16, args: &[&str]) -> Option<Vec<String>> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() || text.starts_with("ERR") || text.contains("Could not connect") {
        return None;
    }
    Some(text.lines().map(str::to_owned).collect())
}

/// The replication link between a master and its replica, through this test: a network
/// that can go slow. Stalled, it stops carrying what the master sends (the replica falls
/// behind, its connection still open, as across a congested link); cut, it drops what it
/// held. The replica's acknowledgements still go up. The point is a misbehaving link, so
/// it is a small forwarder of the test's own, not a real component.
pub struct SlowLink {
    /// The port the replica connects to, as if it were the master's.
    pub port: u16,
    stalled: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl SlowLink {
    /// A link to the master at `master_port`.
    pub fn start(master_port: u16) -> SlowLink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (stalled, cut) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let open = Arc::new(Mutex::new(Vec::new()));
        let (stalled_, cut_, open_) = (stalled.clone(), cut.clone(), open.clone());
        std::thread::spawn(move || {
            while !cut_.load(Ordering::Relaxed) {
                let Ok((replica, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                replica.set_nonblocking(false).unwrap();
                let Ok(master) = TcpStream::connect(("127.0.0.1", master_port)) else {
                    continue; // the master is gone: so is this connection
                };
                let mut sockets = open_.lock().unwrap();
                sockets.extend([replica.try_clone().unwrap(), master.try_clone().unwrap()]);
                let never = Arc::new(AtomicBool::new(false));
                forward(
                    master.try_clone().unwrap(),
                    replica.try_clone().unwrap(),
                    stalled_.clone(),
                );
                forward(replica, master, never);
            }
        });
        SlowLink {
            port,
            stalled,
            cut,
            open,
        }
    }

    /// Stops carrying what the master sends.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::Relaxed);
    }

    /// Carries again what the master sends, from where it stopped.
    pub fn resume(&self) {
        self.stalled.store(false, Ordering::Relaxed);
    }

    /// Drops every connection and what it held, and takes no more.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
        for socket in self.open.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Copies `from` to `to` on a thread of its own, except while `stalled`: what arrives then
/// (a read may be under way as the stall begins) is held until it ends.
fn forward(mut from: TcpStream, mut to: TcpStream, stalled: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        from.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let mut held = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            if stalled.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            if !held.is_empty() {
                if to.write_all(&held).is_err() {
                    break;
                }
                held.clear();
            }
            match from.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    held.extend_from_slice(&chunk[..n]);
                    if !stalled.load(Ordering::Relaxed) {
                        if to.write_all(&held).is_err() {
                            break;
                        }
                        held.clear();
                    }
                }
                Err(e) if is_quiet(&e) => {}
                Err(_) => break,
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

fn is_quiet(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
    matches!(e.kind(), WouldBlock | TimedOut | Interrupted)
}

/// A master, a replica of it (through a [`SlowLink`]), and three Sentinels that know both
/// and each other.
pub struct Deployment {
    /// The master at the start.
    pub master: RedisServer,
    /// Its replica at the start.
    pub replica: RedisServer,
    /// The replica's link to the master.
    pub link: SlowLink,
    /// The Sentinels.
    pub sentinels: Vec<Sentinel>,
}

impl Deployment {
    /// Starts it all and waits (bounded) until the replica is in sync and every Sentinel
    /// knows the replica and the two other Sentinels, so a failover can be agreed.
    pub fn start() -> Deployment {
        let master = RedisServer::start(&[]);
        let link = SlowLink::start(master.port);
        let port = link.port.to_string();
        let replica = RedisServer::start(&["--replicaof", "127.0.0.1", &port]);
        wait(Duration::from_secs(10), "the replica to sync", || {
            info_field(replica.port, "master_link_status").as_deref() == Some("up")
        });
        let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(master.port)).collect();
        // Sentinels find each other through the master's hello channel, every 2 s.
        wait(
            Duration::from_secs(20),
            "the Sentinels to know everyone",
            || {
                sentinels.iter().all(|s| {
                    s.field("num-slaves").as_deref() == Some("1")
                        && s.field("num-other-sentinels").as_deref() == Some("2")
                })
            },
        );
        Deployment {
            master,
            replica,
            link,
            sentinels,
        }
    }

    /// `redis+sentinel://` naming every Sentinel.
    pub fn url(&self) -> String {
        let list: Vec<String> = (self.sentinels.iter())
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", list.join(","))
    }
}

/// One field of `INFO replication` of the Redis at `port`.
pub fn info_field(port: u16, name: &str) -> Option<String> {
    let reply = cli(port, &["INFO", "replication"])?;
    reply.iter().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim().to_owned())
    })
}

/// Waits until `condition` holds, failing the test after `limit`.
pub fn wait(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
