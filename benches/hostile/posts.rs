//! Phase b, the pipelining flood: 20,000 tiny posts (`from=x&text=y`) written in one send
//! on one connection into room `garden`, which holds event streams that read everything;
//! the attacker reads its 201s as fast as it can.
//!
//! Each post is cheap, but each is a message written to every stream, and a server that
//! keeps taking requests from one connection for as long as its socket has bytes does all
//! 20,000 of them, times the streams, before anyone else gets a turn.

use crate::args::Phase;
use crate::attacker;
use crate::http::{self, counter};
use crate::stage::{Ctx, PhaseResult, Stage};
use crate::watchers::Watchers;
use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// The attacked room.
const ROOM: &str = "garden";
/// Time for the watchers' streams to open.
const STREAMS_OPEN_CAP: Duration = Duration::from_secs(20);

/// Runs phase b on a fresh server.
pub fn run(ctx: &Ctx) -> Result<PhaseResult, String> {
    let sizes = &ctx.sizes;
    let mut stage = Stage::start(ctx, Phase::Pipeline, &[])?;
    let addr = stage.server.addr();
    let watchers = Watchers::start(addr, ROOM, sizes.watchers).map_err(|e| e.to_string())?;
    // The probe's own stream is open already.
    stage.wait_streams(1 + sizes.watchers as u64, STREAMS_OPEN_CAP)?;
    stage.quiet("baseline", sizes.baseline);

    let one = http::post(ROOM, "x", "y");
    let requests = one.repeat(sizes.posts);
    say!(
        "phase b: {} posts of {} bytes, {:.2} MB in one send, into {ROOM} with {} streams",
        sizes.posts,
        one.len(),
        requests.len() as f64 / 1e6,
        sizes.watchers
    );
    let deadline = Instant::now() + sizes.attack_cap;
    let flood = attacker::run(addr, requests, sizes.posts, deadline).map_err(|e| e.to_string())?;
    let (started, ended) = (
        flood.started.unwrap_or_else(Instant::now),
        flood.ended.unwrap_or_else(Instant::now),
    );
    stage.window("flood", started, ended);
    stage.quiet("after", sizes.after);
    stage.settle();
    stage.note(format!(
        "flood: {} posts ({} bytes), {} answered in {:.1} s ({:.0}/s): {}{}",
        flood.requests,
        flood.bytes,
        flood.answered,
        flood.seconds(),
        flood.answered as f64 / flood.seconds().max(1e-9),
        flood.statuses_text(),
        flood
            .cut_short
            .as_ref()
            .map(|why| format!(" ({why})"))
            .unwrap_or_default()
    ));
    stage.note(format!(
        "watchers ({} streams on {ROOM}): {}",
        sizes.watchers,
        watchers.summary()
    ));
    let stats = stage.stats()?;
    stage.note(format!(
        "/stats at the end: messages {}, deliveries {}, streams {}, drops.slow {}",
        counter(&stats, "messages"),
        counter(&stats, "deliveries"),
        counter(&stats, "streams"),
        counter(&stats, "drops.slow")
    ));
    stage.figure(
        "flood",
        json!({
            "posts": flood.requests,
            "bytes": flood.bytes,
            "answered": flood.answered,
            "seconds": flood.seconds(),
            "statuses": flood.statuses,
            "cut_short": flood.cut_short,
        }),
    );
    stage.figure(
        "watchers",
        json!({
            "streams": sizes.watchers,
            "bytes": watchers.counts.bytes.load(Relaxed),
            "frames": watchers.counts.frames.load(Relaxed),
            "closed_by_server": watchers.counts.closed_by_server.load(Relaxed),
        }),
    );
    stage.figure("stats_at_end", stats);
    drop(watchers);
    Ok(stage.finish())
}
