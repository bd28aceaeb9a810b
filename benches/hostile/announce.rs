//! Phase d, an announcement burst: the server runs with `--redis` (a redis-server of the
//! bench's own on a free loopback port, stopped by its PID), a few event streams watch room
//! `garden`, and 100,000 typing announcements from 1,000 names, as many nodes' typists
//! would make, are `PUBLISH`ed straight into Redis on the channel every node subscribes
//! to, pipelined on one connection.
//!
//! Each is one frame on the server's subscription, read in one burst. A link that moved
//! the rest of its input buffer for every frame it took spent 3.8 s of CPU on 100,000 of
//! them (99 % in memmove), and the loop was the link's for that long. The note under the
//! table gives the server's CPU time for the burst beside the calm client's p99.

use crate::args::Phase;
use crate::stage::{Ctx, PhaseResult, Stage};
use crate::watchers::Watchers;
use serde_json::json;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// The attacked room.
const ROOM: &str = "garden";
/// Streams in it: few, so that the burst measures the link, not the fan-out.
const WATCHERS: usize = 10;
/// Distinct names typing.
const TYPISTS: usize = 1_000;
/// Time for the watchers' streams to open, and for redis-server to answer.
const OPEN_CAP: Duration = Duration::from_secs(20);

/// A redis-server of the bench's own, killed by its PID when dropped.
struct Redis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    fn start() -> io::Result<Redis> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("comet-hostile-redis-{port}"));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::other(format!("redis-server: {e} (apt-get install redis-server)"))
            })?;
        let redis = Redis { child, port, dir };
        let deadline = Instant::now() + OPEN_CAP;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(io::Error::other("redis-server did not listen"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// User plus system CPU seconds process `pid` has used (/proc/PID/stat).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after ") ".
    let after = stat.rfind(')').map_or("", |at| &stat[at + 2..]);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0 // USER_HZ is 100 on Linux
}

/// `PUBLISH`es `n` typing announcements pipelined on one connection and reads Redis's
/// `n` replies; returns how many came back before `deadline`.
fn publish(port: u16, n: usize, deadline: Instant) -> io::Result<usize> {
    let channel = format!("comet:0:r:{ROOM}");
    let mut requests = Vec::new();
    for i in 0..n {
        let payload = format!("t typist-{}", i % TYPISTS);
        requests.extend_from_slice(
            format!(
                "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n{payload}\r\n",
                channel.len(),
                payload.len()
            )
            .as_bytes(),
        );
    }
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut writer = stream.try_clone()?;
    // Written on its own thread: Redis's replies fill our socket while we send.
    let sender = std::thread::spawn(move || writer.write_all(&requests));
    let (mut replies, mut chunk) = (0, [0u8; 64 * 1024]);
    while replies < n && Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(got) => replies += chunk[..got].iter().filter(|&&b| b == b'\n').count(),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    Ok(replies)
}

/// Runs phase d on a fresh server and a fresh redis-server.
pub fn run(ctx: &Ctx) -> Result<PhaseResult, String> {
    let sizes = &ctx.sizes;
    let redis = Redis::start().map_err(|e| e.to_string())?;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let mut stage = Stage::start(ctx, Phase::Announce, &["--redis", &url])?;
    let addr = stage.server.addr();
    let watchers = Watchers::start(addr, ROOM, WATCHERS).map_err(|e| e.to_string())?;
    stage.wait_streams(1 + WATCHERS as u64, OPEN_CAP)?;
    stage.quiet("baseline", sizes.baseline);

    let n = sizes.announcements;
    say!("phase d: {n} typing announcements PUBLISHed into Redis on {ROOM}'s channel");
    let pid = stage.server.pid();
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let published =
        publish(redis.port, n, started + sizes.attack_cap).map_err(|e| e.to_string())?;
    let ended = Instant::now();
    stage.window("burst", started, ended);
    stage.quiet("after", sizes.after);
    stage.settle();
    let cpu = cpu_seconds(pid) - cpu_before;
    stage.note(format!(
        "burst: {published} of {n} announcements published in {:.2} s; the server used \
         {cpu:.2} s of CPU from the burst to the end of the quiet window after it",
        (ended - started).as_secs_f64()
    ));
    stage.note(format!(
        "watchers ({WATCHERS} streams on {ROOM}): {}",
        watchers.summary()
    ));
    stage.figure(
        "burst",
        json!({
            "announcements": n,
            "published": published,
            "seconds": (ended - started).as_secs_f64(),
            "server_cpu_seconds": cpu,
            "watchers": WATCHERS,
            "watcher_frames": watchers.counts.frames.load(Relaxed),
        }),
    );
    drop(watchers);
    let result = stage.finish();
    drop(redis);
    Ok(result)
}
