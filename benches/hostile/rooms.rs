//! Phase e, the room-cap fillers: 50 source addresses (127.0.0.10 … 127.0.0.59), one
//! connection each, each pipeline 64 posts into rooms of their own (`x<i>-<j>`), all at
//! once: 3,200 new rooms against the server's default `--max-rooms 1000` and
//! `--max-rooms-per-client 64`. The post rate is lifted (the common flags'
//! `--post-rate`/`--post-burst`), so every address makes its rooms as fast as the loop
//! takes them: a true burst, not 20 posts and a wait.
//!
//! At the cap a room must give way for each new one (docs/PROTOCOL.md, "At most
//! `--max-rooms` rooms"): one that holds nothing first, else the idle room unused longest,
//! history and all, but if every idle room was used within the last minute (a burst, as
//! here), the idle room whose keeper (the address that gave it its first message) holds
//! the most rooms. Issue 16 asks that such a burst cost a calm client nothing: just before
//! the attack the calm client (127.0.0.1, like the probe) gives 20 rooms `calm-0` …
//! `calm-19` one message each and leaves them idle; afterwards the bench counts the ones
//! that still hold their message, and the calm client makes room `calm-new` and reads its
//! message back. The target, "calm rooms kept 20/20 and the new room chats", is reported
//! PASS or MISS beside the probe's latency, never asserted.

use crate::args::Phase;
use crate::attacker::{self, Pipelined};
use crate::http::{self, counter, Conn, ONE_OFF_TIMEOUT};
use crate::stage::{Ctx, PhaseResult, Stage};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

/// The last octet of the first attacker's source address (127.0.0.`FIRST_SOURCE`): clear
/// of 127.0.0.1, which the probe and the calm client share.
const FIRST_SOURCE: u8 = 10;
/// The calm client's rooms: `calm-0`, `calm-1`, ... (the probe's own room is `calm`).
const CALM_PREFIX: &str = "calm-";
/// The room the calm client makes after the attack.
const NEW_ROOM: &str = "calm-new";

/// Runs phase e on a fresh server.
pub fn run(ctx: &Ctx) -> Result<PhaseResult, String> {
    let sizes = &ctx.sizes;
    let sources = sources(sizes.room_sources)?;
    let max_rooms = sizes.max_rooms.map(|n| n.to_string());
    let flags: Vec<&str> = match &max_rooms {
        Some(n) => vec!["--max-rooms", n],
        None => Vec::new(),
    };
    let mut stage = Stage::start(ctx, Phase::Rooms, &flags)?;
    let addr = stage.server.addr();

    // The calm client: one keep-alive connection from 127.0.0.1, used before and after.
    let mut calm = Conn::connect(addr, ONE_OFF_TIMEOUT).map_err(|e| e.to_string())?;
    for i in 0..sizes.calm_rooms {
        let room = format!("{CALM_PREFIX}{i}");
        match calm.request(&http::post(&room, "calm", &calm_text(i))) {
            Ok((201, _)) => {}
            other => return Err(format!("the calm post to {room}: {other:?}")),
        }
    }
    let calm_made = Instant::now();
    stage.quiet("baseline", sizes.baseline);

    let total = sizes.room_sources * sizes.rooms_per_source;
    say!(
        "phase e: {} addresses x {} posts into rooms of their own ({total} new rooms, \
         --max-rooms {}), all at once",
        sources.len(),
        sizes.rooms_per_source,
        max_rooms.as_deref().unwrap_or("default")
    );
    let deadline = Instant::now() + sizes.attack_cap;
    let attackers: Vec<_> = sources
        .iter()
        .enumerate()
        .map(|(i, &source)| {
            let mut requests = Vec::new();
            for j in 0..sizes.rooms_per_source {
                requests.extend_from_slice(&http::post(&format!("x{i}-{j}"), "x", "y"));
            }
            let count = sizes.rooms_per_source;
            std::thread::Builder::new()
                .name(format!("filler-{i}"))
                .spawn(move || attacker::run_from(addr, Some(source), requests, count, deadline))
        })
        .collect();
    let mut runs = Vec::new();
    let mut failed = Vec::new();
    for (i, handle) in attackers.into_iter().enumerate() {
        let joined = handle.map_err(|e| e.to_string()).and_then(|h| {
            h.join()
                .map_err(|_| "the attacker panicked".to_string())
                .and_then(|run| run.map_err(|e| e.to_string()))
        });
        match joined {
            Ok(run) => runs.push(run),
            Err(e) => failed.push(format!("{}: {e}", sources[i])),
        }
    }
    let started = runs.iter().filter_map(|r| r.started).min();
    let ended = runs.iter().filter_map(|r| r.ended).max();
    let (started, ended) = (
        started.unwrap_or_else(Instant::now),
        ended.unwrap_or_else(Instant::now),
    );
    stage.window("attack", started, ended);
    let after_attack = stage.stats()?;

    // Asked one at a time on the calm connection. A room that gave way is made anew by the
    // read (at the cap, in the place of another room, maybe a calm one not yet asked);
    // its read waits the poll timeout and leaves an empty room, whose place the next such
    // read takes, so the reads make at most one room give way in all.
    let checked = Instant::now();
    let age = checked - calm_made;
    let mut kept = 0;
    let mut lost = Vec::new();
    for i in 0..sizes.calm_rooms {
        let room = format!("{CALM_PREFIX}{i}");
        match holds(&mut calm, &room, &calm_text(i)) {
            Ok(true) => kept += 1,
            Ok(false) => lost.push(room),
            Err(e) => lost.push(format!("{room} ({e})")),
        }
    }
    let checks_took = checked.elapsed();
    let new_room = chat_in_new_room(&mut calm);
    drop(calm);
    stage.quiet("after", sizes.after);
    stage.settle();

    let statuses = sum_statuses(&runs);
    let count = |status: u16| statuses.get(&status).copied().unwrap_or(0);
    let others: u64 = statuses
        .iter()
        .filter(|(s, _)| ![201, 429, 507].contains(*s))
        .map(|(_, n)| n)
        .sum();
    let cut_short: Vec<&String> = runs.iter().filter_map(|r| r.cut_short.as_ref()).collect();
    let answered: usize = runs.iter().map(|r| r.answered).sum();
    stage.note(format!(
        "attack: {} addresses x {} posts, {answered} of {total} answered in {:.2} s: \
         201 x {}, 429 x {}, 507 x {}, other {others}; {} connections failed, {} cut short{}",
        sources.len(),
        sizes.rooms_per_source,
        (ended - started).as_secs_f64(),
        count(201),
        count(429),
        count(507),
        failed.len(),
        cut_short.len(),
        failed
            .first()
            .or(cut_short.first().copied())
            .map(|why| format!(" (first: {why})"))
            .unwrap_or_default()
    ));
    stage.note(format!(
        "post rate lifted by the common flags, so the attack is a true burst; --max-rooms {}, \
         --max-rooms-per-client default (64)",
        max_rooms.as_deref().unwrap_or("default (1000)")
    ));
    stage.note(format!(
        "/stats after the attack: rooms {}, rooms_given_way {}, drops.room_history {}",
        counter(&after_attack, "rooms"),
        counter(&after_attack, "rooms_given_way"),
        counter(&after_attack, "drops.room_history")
    ));
    // Why a calm room may go in a burst: the idle room whose keeper holds the most rooms
    // goes first, and the calm client's address holds its calm rooms and the probe's room.
    let calm_holds = sizes.calm_rooms as u64 + 1;
    let share = counter(&after_attack, "rooms").saturating_sub(1 + calm_holds) as f64
        / sources.len().max(1) as f64;
    stage.note(format!(
        "127.0.0.1 went in keeping {calm_holds} rooms (the calm rooms and the probe's); \
         the places left at the cap, spread evenly over the attacking addresses, are \
         {share:.1} each"
    ));
    stage.note(format!(
        "calm rooms kept {kept}/{} (made {:.1} s before they were asked, asked one at a time \
         in {:.1} s){}",
        sizes.calm_rooms,
        age.as_secs_f64(),
        checks_took.as_secs_f64(),
        if lost.is_empty() {
            String::new()
        } else {
            format!("; gone: {}", lost.join(", "))
        }
    ));
    stage.note(match &new_room {
        Ok(()) => format!("calm client's new room {NEW_ROOM}: posted 201 and read back"),
        Err(e) => format!("calm client's new room {NEW_ROOM}: {e}"),
    });
    let stats = stage.stats()?;
    stage.note(format!(
        "/stats at the end: rooms {}, rooms_given_way {}, drops.room_history {}",
        counter(&stats, "rooms"),
        counter(&stats, "rooms_given_way"),
        counter(&stats, "drops.room_history")
    ));
    let met = kept == sizes.calm_rooms && new_room.is_ok();
    stage.target(
        met,
        format!(
            "calm rooms kept {0}/{0} and the new room chats: kept {kept}/{0}, new room {1}",
            sizes.calm_rooms,
            if new_room.is_ok() { "chats" } else { "failed" }
        ),
    );
    stage.figure(
        "attack",
        json!({
            "sources": sources.len(),
            "rooms_per_source": sizes.rooms_per_source,
            "posts": total,
            "answered": answered,
            "seconds": (ended - started).as_secs_f64(),
            "statuses": statuses,
            "connections_failed": failed,
            "cut_short": cut_short,
        }),
    );
    stage.figure(
        "calm",
        json!({
            "rooms": sizes.calm_rooms,
            "kept": kept,
            "gone": lost,
            "age_when_asked_seconds": age.as_secs_f64(),
            "asking_took_seconds": checks_took.as_secs_f64(),
            "new_room_chats": new_room.is_ok(),
            "new_room_error": new_room.err(),
        }),
    );
    stage.figure("target_met", Value::Bool(met));
    stage.figure("stats_after_attack", after_attack);
    stage.figure("stats_at_end", stats);
    Ok(stage.finish())
}

/// The attackers' source addresses: 127.0.0.10 onwards, one per attacker.
fn sources(n: usize) -> Result<Vec<IpAddr>, String> {
    attacker::loopback_sources(FIRST_SOURCE, n)
}

/// What the calm client posts to calm room `i`.
fn calm_text(i: usize) -> String {
    format!("calm-{i}-hello")
}

/// Whether `room` still holds a message with `text` (`GET …/messages?since=0`: at once if
/// it has messages; after the poll timeout, empty, if it gave way and was made anew).
fn holds(conn: &mut Conn, room: &str, text: &str) -> Result<bool, String> {
    let path = format!("/rooms/{room}/messages?since=0");
    match conn.request(&http::get(&path)) {
        Ok((200, body)) => {
            let answer: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            Ok(answer["messages"]
                .as_array()
                .is_some_and(|ms| ms.iter().any(|m| m["text"] == text)))
        }
        Ok((status, _)) => Err(format!("answered {status}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The calm client posts to [`NEW_ROOM`] and reads its message back.
fn chat_in_new_room(conn: &mut Conn) -> Result<(), String> {
    let text = "calm-new-hello";
    match conn.request(&http::post(NEW_ROOM, "calm", text)) {
        Ok((201, _)) => {}
        Ok((status, body)) => {
            return Err(format!(
                "the post answered {status} {}",
                String::from_utf8_lossy(&body).trim()
            ))
        }
        Err(e) => return Err(format!("the post: {e}")),
    }
    match holds(conn, NEW_ROOM, text) {
        Ok(true) => Ok(()),
        Ok(false) => Err("posted 201, but the read back lacks the message".into()),
        Err(e) => Err(format!("the read back: {e}")),
    }
}

/// Every attacker's answers by status, added up.
fn sum_statuses(runs: &[Pipelined]) -> BTreeMap<u16, u64> {
    let mut all = BTreeMap::new();
    for run in runs {
        for (&status, &n) in &run.statuses {
            *all.entry(status).or_default() += n;
        }
    }
    all
}
