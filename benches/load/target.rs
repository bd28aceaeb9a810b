//! The server under test: a fresh `comet-chat` child process per rung, started by the
//! shared launcher (`benches/shared/server.rs`; so each rung's "RSS before" is a fresh
//! server's, not the high-water mark of the rung before), or a
//! server the user runs, attached to with `--addr` and `--pid`. Either way it is known by
//! address and PID, and reached through two keep-alive connections: one for `/stats`, one
//! for posting.

use crate::api::{HttpConn, Stats};
use crate::procfs;
use crate::server::{Launch, Output, Server};
use crate::wire;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

/// The server's poll timeout. Longer than any rung, so no poll times out while the
/// benchmark holds it and every answer a client gets is a broadcast.
const POLL_TIMEOUT_SECS: u64 = 600;

/// The server's heartbeat, for the same reason: no SSE comment or WebSocket ping lands in
/// an idle window or a round, and no WebSocket client (which never answers a ping) is
/// dropped for silence, so the three transports are measured doing the same work.
const HEARTBEAT_SECS: u64 = 600;

/// A server being measured.
pub struct Target {
    /// Where it listens (loopback).
    pub addr: SocketAddr,
    /// Its process id, for RSS and CPU.
    pub pid: u32,
    /// The server process when we started it; dropping it kills the server.
    server: Option<Server>,
    /// Keep-alive connection used only for `/stats`.
    stats: HttpConn,
    /// Keep-alive connection used only for `POST /chat`.
    poster: HttpConn,
}

impl Target {
    /// Starts `bin` on a free loopback port (pinned to `cpu` if given) with the shared
    /// launcher, and waits until it answers `/stats` on what becomes the stats connection.
    /// `admin`: with its admin listener on a free port (and nobody looking).
    pub fn start(bin: &Path, cpu: Option<usize>, admin: bool) -> io::Result<Target> {
        let poll_timeout = POLL_TIMEOUT_SECS.to_string();
        let heartbeat = HEARTBEAT_SECS.to_string();
        let mut args = vec![
            "--no-www",
            "--poll-timeout",
            &poll_timeout,
            "--heartbeat",
            &heartbeat,
            "--log-level",
            "warn",
        ];
        args.extend(crate::server::unlimited_per_client(bin));
        if admin {
            args.extend(["--admin-addr", "127.0.0.1:0"]);
        }
        let launch = Launch {
            bin,
            // No per-client limits: 19,500 clients from 60 addresses is over 256 an address,
            // and one poster posts as fast as the fan-out allows.
            args: &args,
            cpu,
            // Warnings (e.g. accept failing with EMFILE) show up in the bench output.
            output: Output::Inherit,
        };
        let (server, stats) = Server::start_probing(launch, |addr| {
            let mut conn = HttpConn::connect(addr)?;
            conn.stats()?;
            Ok(conn)
        })?;
        let poster = connect_poster(server.addr())?;
        Ok(Target {
            addr: server.addr(),
            pid: server.pid(),
            server: Some(server),
            stats,
            poster,
        })
    }

    /// Attaches to a server someone else runs.
    pub fn attach(addr: SocketAddr, pid: u32) -> io::Result<Target> {
        procfs::rss_bytes(pid).map_err(|e| io::Error::new(e.kind(), format!("pid {pid}: {e}")))?;
        let stats = HttpConn::connect(addr)?;
        let poster = connect_poster(addr)?;
        let mut target = Target {
            addr,
            pid,
            server: None,
            stats,
            poster,
        };
        target.stats()?;
        Ok(target)
    }

    /// The server's counters now.
    pub fn stats(&mut self) -> io::Result<Stats> {
        self.stats.stats()
    }

    /// Waits on the server's counters; see [`HttpConn::wait_until`].
    pub fn wait_until(
        &mut self,
        deadline: Instant,
        done: impl Fn(&Stats) -> bool,
    ) -> io::Result<(Stats, Instant, bool)> {
        self.stats.wait_until(deadline, done)
    }

    /// The newest position of `room` (see [`HttpConn::head`]).
    pub fn head(&mut self, room: &str) -> io::Result<String> {
        self.stats.head(room)
    }

    /// The server's resident memory now.
    pub fn rss(&self) -> io::Result<u64> {
        procfs::rss_bytes(self.pid)
    }

    /// Sends `POST /chat` with `message` and returns the instant just before the write:
    /// time zero of the broadcast. The poster's own answer is read by [`finish_post`].
    ///
    /// [`finish_post`]: Target::finish_post
    pub fn post(&mut self, message: &str) -> io::Result<Instant> {
        let request = wire::post(message);
        // A replaced connection must not be made inside the timed window.
        self.poster.refresh()?;
        let sent = Instant::now();
        self.poster.send(&request)?;
        Ok(sent)
    }

    /// Reads the answer to the last [`post`](Target::post), which must be 200.
    pub fn finish_post(&mut self) -> io::Result<()> {
        match self.poster.read_answer()? {
            (200, _) => Ok(()),
            (status, body) => Err(io::Error::other(format!(
                "POST /chat answered {status}: {}",
                String::from_utf8_lossy(&body)
            ))),
        }
    }

    /// Stops a server we started (by its PID); leaves an attached one running.
    pub fn stop(self) {
        if let Some(server) = self.server {
            drop(server); // SIGKILL to its PID, then reaped
        }
    }
}

/// Connects the poster and has it ask one question, so the server has surely accepted it
/// before anyone reads `connections` as a baseline (a connected socket may still sit in
/// the accept queue).
fn connect_poster(addr: SocketAddr) -> io::Result<HttpConn> {
    let mut poster = HttpConn::connect(addr)?;
    poster.stats()?;
    Ok(poster)
}
