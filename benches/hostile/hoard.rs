//! Phase c, the replay hoarders: room `garden` holds about 4 MiB of history (1,000
//! messages of 4,000 bytes, under `--history-bytes 4194304`), and 100 clients each ask for
//! all of it — half as a poll without `since` (`GET /rooms/garden/messages`), half as a
//! stream replaying from the start (`GET /rooms/garden/events?since=0`) — with a 4 KiB
//! receive buffer, set before connecting so the window they advertise is small from the
//! first byte, and never read a byte.
//!
//! Whatever the server keeps per hoarder until `--write-timeout 2` drops it shows in its
//! RSS, read from /proc every 50 ms: a server that copies the history into every answer
//! holds 100 copies; one that shares the immutable history holds one.

use crate::args::Phase;
use crate::http::{self, counter, Conn, CONNECT_TIMEOUT, ONE_OFF_TIMEOUT};
use crate::stage::{Ctx, PhaseResult, Stage};
use serde_json::json;
use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The attacked room.
const ROOM: &str = "garden";
/// The server's flags for this phase: room for the whole history, and a short write
/// timeout so the hoarders are dropped within the run.
const FLAGS: &[&str] = &["--history-bytes", "4194304", "--write-timeout", "2"];
/// A hoarder's receive buffer (the kernel doubles it).
const HOARDER_RCVBUF_BYTES: usize = 4096;
/// How often `/stats` is asked whether the hoarders are gone.
const GONE_POLL: Duration = Duration::from_millis(250);

/// Runs phase c on a fresh server.
pub fn run(ctx: &Ctx) -> Result<PhaseResult, String> {
    let sizes = &ctx.sizes;
    let mut stage = Stage::start(ctx, Phase::Hoard, FLAGS)?;
    let addr = stage.server.addr();

    let history = fill(addr, sizes.history_messages, sizes.history_text_bytes)?;
    say!(
        "phase c: {ROOM} holds {} messages, {:.2} MiB of text",
        sizes.history_messages,
        history as f64 / (1024.0 * 1024.0)
    );
    let (base_from, base_to) = stage.quiet("baseline", sizes.baseline);
    let before = stage.stats()?;
    let connections_before = counter(&before, "connections");

    say!(
        "phase c: {} hoarders ask for the whole history with a {HOARDER_RCVBUF_BYTES}-byte \
         receive buffer and never read",
        sizes.hoarders
    );
    let started = Instant::now();
    let mut hoarders = Vec::new();
    let mut open_errors = Vec::new();
    for i in 0..sizes.hoarders {
        let path = if i % 2 == 0 {
            format!("/rooms/{ROOM}/messages")
        } else {
            format!("/rooms/{ROOM}/events?since=0")
        };
        match hoard(addr, &http::get(&path)) {
            Ok(stream) => hoarders.push(stream),
            Err(e) => open_errors.push(e.to_string()),
        }
    }
    // Gone when the server holds no more connections than before they came (the /stats
    // connection that asks is counted both times).
    let deadline = Instant::now() + sizes.hoard_cap;
    let mut held = None;
    while Instant::now() < deadline {
        std::thread::sleep(GONE_POLL);
        let now = counter(&stage.stats()?, "connections");
        held = Some(now.saturating_sub(connections_before));
        if held == Some(0) {
            break;
        }
    }
    let ended = Instant::now();
    stage.window("hoard", started, ended);
    drop(hoarders);
    let (after_from, after_to) = stage.quiet("after", sizes.after);
    stage.settle();

    let after = stage.stats()?;
    let rss_before = stage.rss(base_from, base_to).last;
    let rss_peak = stage.rss(started, ended).peak;
    let rss_after = stage.rss(after_from, after_to).last;
    let slow = counter(&after, "drops.slow").saturating_sub(counter(&before, "drops.slow"));
    stage.note(format!(
        "hoarders: {} opened ({} failed{}), {} polls + {} streams; {:.1} s later the server \
         still held {} of them (drops.slow +{slow})",
        sizes.hoarders - open_errors.len(),
        open_errors.len(),
        open_errors
            .first()
            .map(|e| format!(", first: {e}"))
            .unwrap_or_default(),
        sizes.hoarders.div_ceil(2),
        sizes.hoarders / 2,
        (ended - started).as_secs_f64(),
        held.map_or("?".into(), |h| h.to_string())
    ));
    stage.note(format!(
        "server RSS: {} before, {} peak while hoarded, {} after they were dropped",
        mib(rss_before),
        mib(rss_peak),
        mib(rss_after)
    ));
    stage.figure(
        "hoard",
        json!({
            "history_messages": sizes.history_messages,
            "history_text_bytes": history,
            "hoarders": sizes.hoarders,
            "open_errors": open_errors.len(),
            "receive_buffer_bytes": HOARDER_RCVBUF_BYTES,
            "seconds_until_dropped": (ended - started).as_secs_f64(),
            "still_held_at_cap": held,
            "drops_slow": slow,
            "rss_before_bytes": rss_before,
            "rss_peak_bytes": rss_peak,
            "rss_after_bytes": rss_after,
        }),
    );
    stage.figure("stats_at_end", after);
    Ok(stage.finish())
}

/// Posts `messages` messages of `text_bytes` each to the room; returns the text bytes
/// stored.
fn fill(addr: SocketAddr, messages: usize, text_bytes: usize) -> Result<usize, String> {
    let mut conn = Conn::connect(addr, ONE_OFF_TIMEOUT).map_err(|e| e.to_string())?;
    let mut total = 0;
    for i in 0..messages {
        let mut text = format!("h{i:05}");
        text.push_str(&"x".repeat(text_bytes.saturating_sub(text.len())));
        match conn.request(&http::post(ROOM, "filler", &text)) {
            Ok((201, _)) => total += text.len(),
            other => return Err(format!("filling {ROOM}, post {i}: {other:?}")),
        }
    }
    Ok(total)
}

/// One hoarder: a small receive buffer, set before connecting; the request; then nothing.
fn hoard(addr: SocketAddr, request: &[u8]) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_recv_buffer_size(HOARDER_RCVBUF_BYTES)?;
    socket.connect_timeout(&SockAddr::from(addr), CONNECT_TIMEOUT)?;
    let mut stream: TcpStream = socket.into();
    stream.set_write_timeout(Some(CONNECT_TIMEOUT))?;
    stream.write_all(request)?;
    Ok(stream)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
