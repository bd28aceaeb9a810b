//! Phase a, the presence flood: one connection makes as many distinct names as it can in
//! room `garden` while the room holds event streams that read everything; then the bench
//! keeps measuring while every one of those names expires and the server sweeps them.
//!
//! Each attempt is `GET /rooms/garden/messages?name=n<i>&since=0`, pipelined. The room
//! holds one message, so each poll is answered at once from history (a poll with nothing
//! to answer would park, and the pipeline would stall behind it: see docs/PROTOCOL.md),
//! and every new name is a `join` written to every stream. A name stays present for the
//! poll timeout plus a 5 s grace after its last poll; the server sweeps once a second and
//! writes one `leave` per expired name to every stream. Without caps, 60,000 names make
//! 60,000 joins and then 60,000 leaves times the streams; a server that caps names per
//! client or per room answers the excess with 429 or 507, which is counted, not judged.

use crate::args::Phase;
use crate::attacker;
use crate::http::{self, counter, Conn, ONE_OFF_TIMEOUT};
use crate::stage::{Ctx, PhaseResult, Stage, POLL_TIMEOUT_SECS};
use crate::watchers::Watchers;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// The attacked room.
const ROOM: &str = "garden";
/// How long a name stays present after its last poll, on top of the poll timeout: the
/// server's fixed grace (docs/PROTOCOL.md, Presence).
const PRESENCE_GRACE: Duration = Duration::from_secs(5);
/// Beyond expiry: the sweep runs once a second, and then it must write its leaves.
const SWEEP_MARGIN: Duration = Duration::from_secs(3);
/// Time for the watchers' streams to open.
const STREAMS_OPEN_CAP: Duration = Duration::from_secs(20);
/// After expiry, the sweep is taken as over once the watchers have read no new `leave`
/// for this long...
const SWEEP_QUIET: Duration = Duration::from_secs(3);
/// ...or every leave expected, or this long after the names expired, whichever is first.
const SWEEP_CAP: Duration = Duration::from_secs(120);

/// Runs phase a on a fresh server.
pub fn run(ctx: &Ctx) -> Result<PhaseResult, String> {
    let sizes = &ctx.sizes;
    let mut stage = Stage::start(ctx, Phase::Names, &[])?;
    let addr = stage.server.addr();

    // One message, so that `since=0` is answered at once instead of parking.
    let mut conn = Conn::connect(addr, ONE_OFF_TIMEOUT).map_err(|e| e.to_string())?;
    match conn.request(&http::post(ROOM, "host", "welcome")) {
        Ok((201, _)) => {}
        other => return Err(format!("the first post to {ROOM}: {other:?}")),
    }
    drop(conn);
    let watchers = Watchers::start(addr, ROOM, sizes.watchers).map_err(|e| e.to_string())?;
    // The probe's own stream is open already.
    stage.wait_streams(1 + sizes.watchers as u64, STREAMS_OPEN_CAP)?;
    stage.quiet("baseline", sizes.baseline);

    let mut requests = Vec::new();
    for i in 0..sizes.names {
        requests.extend_from_slice(&http::get(&format!(
            "/rooms/{ROOM}/messages?name=n{i}&since=0"
        )));
    }
    say!(
        "phase a: {} polls with distinct names, {:.1} MiB pipelined on one connection, \
         into {ROOM} with {} streams",
        sizes.names,
        requests.len() as f64 / (1024.0 * 1024.0),
        sizes.watchers
    );
    let deadline = Instant::now() + sizes.attack_cap;
    let flood = attacker::run(addr, requests, sizes.names, deadline).map_err(|e| e.to_string())?;
    let (started, ended) = (
        flood.started.unwrap_or_else(Instant::now),
        flood.ended.unwrap_or_else(Instant::now),
    );
    stage.window("flood", started, ended);
    stage.note(format!(
        "flood: {} attempts, {} answered in {:.1} s: 200 x {}, 429 x {}, 507 x {}, other {}{}",
        flood.requests,
        flood.answered,
        flood.seconds(),
        flood.count(200),
        flood.count(429),
        flood.count(507),
        flood.others(&[200, 429, 507]),
        flood
            .cut_short
            .as_ref()
            .map(|why| format!(" ({why})"))
            .unwrap_or_default()
    ));
    // Asked at once, on a connection of its own: the answer says how many names the
    // flood left in the room, and how long it took says whether the loop was free.
    let asked = Instant::now();
    let present_after_flood = present(addr);
    let present_took = asked.elapsed();
    if sizes.await_expiry {
        let expected = flood.count(200) * sizes.watchers as u64;
        let complete = await_sweep(&watchers, ended, expected);
        stage.window("expiry+sweep", ended, Instant::now());
        stage.note(format!(
            "sweep: {} leave events read by the watchers, {expected} expected (one per name \
             that got in, per stream){}",
            watchers.counts.leaves.load(Relaxed),
            if complete {
                ""
            } else {
                "; stopped waiting for the rest"
            }
        ));
    }
    stage.quiet("after", sizes.after);
    stage.settle();
    let present_at_end = present(addr);
    stage.note(format!(
        "names present in {ROOM}: {} when asked right after the flood (the answer took \
         {:.1} s), {} at the end{}",
        show(&present_after_flood),
        present_took.as_secs_f64(),
        show(&present_at_end),
        if sizes.await_expiry {
            ""
        } else {
            " (smoke run: expiry not awaited)"
        }
    ));
    stage.note(format!(
        "watchers ({} streams on {ROOM}): {}",
        sizes.watchers,
        watchers.summary()
    ));
    let stats = stage.stats()?;
    stage.note(format!(
        "/stats at the end: streams {}, connections {}, drops.slow {}, requests {}",
        counter(&stats, "streams"),
        counter(&stats, "connections"),
        counter(&stats, "drops.slow"),
        counter(&stats, "requests")
    ));
    stage.figure(
        "flood",
        json!({
            "attempts": flood.requests,
            "bytes": flood.bytes,
            "answered": flood.answered,
            "seconds": flood.seconds(),
            "statuses": flood.statuses,
            "cut_short": flood.cut_short,
            "present_after_flood": present_after_flood.ok(),
            "present_after_flood_answer_seconds": present_took.as_secs_f64(),
            "present_at_end": present_at_end.ok(),
            "expiry_awaited": sizes.await_expiry,
            "leaves_read": watchers.counts.leaves.load(Relaxed),
        }),
    );
    stage.figure(
        "watchers",
        json!({
            "streams": sizes.watchers,
            "bytes": watchers.counts.bytes.load(Relaxed),
            "frames": watchers.counts.frames.load(Relaxed),
            "joins": watchers.counts.joins.load(Relaxed),
            "leaves": watchers.counts.leaves.load(Relaxed),
            "closed_by_server": watchers.counts.closed_by_server.load(Relaxed),
        }),
    );
    stage.figure("stats_at_end", stats);
    drop(watchers);
    Ok(stage.finish())
}

/// Waits until every name the flood made has expired and its `leave` has reached the
/// watchers: at least the presence window (poll timeout + grace + a sweep's margin) after
/// the flood, then until `expected` leaves were read, or none for [`SWEEP_QUIET`], or
/// [`SWEEP_CAP`]. True if every expected leave arrived.
fn await_sweep(watchers: &Watchers, flood_ended: Instant, expected: u64) -> bool {
    let expired = flood_ended + Duration::from_secs(POLL_TIMEOUT_SECS) + PRESENCE_GRACE;
    let earliest = expired + SWEEP_MARGIN;
    say!(
        "phase a: measuring while the names expire ({:.0} s after the flood) and are swept",
        (expired - flood_ended).as_secs_f64()
    );
    let mut last = (watchers.counts.leaves.load(Relaxed), Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        let leaves = watchers.counts.leaves.load(Relaxed);
        if leaves != last.0 {
            last = (leaves, now);
        }
        if leaves >= expected && now >= earliest {
            return true;
        }
        if now >= earliest && now - last.1 >= SWEEP_QUIET {
            return false;
        }
        if now >= expired + SWEEP_CAP {
            return false;
        }
    }
}

/// How many names `GET /rooms/garden/presence` lists.
fn present(addr: SocketAddr) -> Result<usize, String> {
    match http::get_json(addr, &format!("/rooms/{ROOM}/presence")) {
        Ok((200, json)) => json["present"]
            .as_array()
            .map(Vec::len)
            .ok_or_else(|| "no present list".into()),
        Ok((status, _)) => Err(format!("presence answered {status}")),
        Err(e) => Err(format!("presence: {e}")),
    }
}

fn show(count: &Result<usize, String>) -> String {
    match count {
        Ok(n) => n.to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}
