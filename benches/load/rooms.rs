//! Posts spread over many rooms, for the workers scenario: with shards (`--shards N`) the
//! server spreads rooms over its Redis by a hash of the room's name that the benchmark
//! does not compute, so it posts to [`ROOMS`] rooms, enough that every shard of a few
//! holds some (the run then counts each shard's keys to show it). Two measures:
//!
//! - **one at a time**: posts one after another on one connection, rooms in turn, each
//!   timed from its write to its `201`: the round trip of a post when nothing else is
//!   going on;
//! - **one per room at once**: rounds of one post to every room, each on a connection of
//!   its own (spread over the workers by `SO_REUSEPORT`), all written before any answer
//!   is read: posts per second with [`ROOMS`] in flight, where Redis's own work (one
//!   script per post, on one core per Redis) may show.
//!
//! Nobody waits in these rooms: what is measured is the post and Redis, not a fan-out.

use crate::api::HttpConn;
use crate::dist::{self, Dist};
use crate::wire;
use serde_json::{json, Value};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Rooms posted to. With 3 shards and a fair hash, the chance that one shard gets none of
/// 32 rooms is 3 x (2/3)^32, about 1 in 130,000.
pub const ROOMS: usize = 32;

/// How the phase runs.
pub struct Plan {
    /// Posts one after another (rooms in turn).
    pub sequential: usize,
    /// Rounds of one post per room at once.
    pub rounds: usize,
    /// Length of each post's text.
    pub message_bytes: usize,
}

/// What the phase measured.
pub struct RoomPosts {
    /// Write → `201`, per post one at a time.
    pub round_trips: Vec<Duration>,
    /// Posts answered `201` in the rounds at once.
    pub posted_at_once: usize,
    /// First write → last answer, summed over the rounds at once.
    pub at_once_time: Duration,
    /// First write → last answer, per round at once: on a shared machine one descheduled
    /// round can weigh on the sum, and the median round says what a round usually costs.
    pub round_times: Vec<Duration>,
    /// Posts not answered `201`, or not answered.
    pub errors: usize,
    /// The first of them.
    pub first_error: Option<String>,
}

impl RoomPosts {
    /// Posts per second with one post per room in flight, over all the rounds.
    pub fn posts_per_sec(&self) -> f64 {
        self.posted_at_once as f64 / self.at_once_time.as_secs_f64().max(1e-9)
    }

    /// [`ROOMS`] posts over the median round's time.
    pub fn median_round_posts_per_sec(&self) -> Option<f64> {
        let median = dist::median(&mut self.round_times.clone())?;
        Some(ROOMS as f64 / median.as_secs_f64().max(1e-9))
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "rooms": ROOMS,
            "one_at_a_time": Dist::of(&mut self.round_trips.clone()).to_json(),
            "at_once_posts": self.posted_at_once,
            "at_once_secs": dist::round2(self.at_once_time.as_secs_f64() * 1e3) / 1e3,
            "at_once_posts_per_sec": self.posts_per_sec().round(),
            "at_once_median_round_posts_per_sec":
                self.median_round_posts_per_sec().map(f64::round),
            "at_once_round_ms": self.round_times.iter()
                .map(|d| dist::round2(dist::us(*d) / 1e3))
                .collect::<Vec<_>>(),
            "errors": self.errors,
            "first_error": self.first_error,
        })
    }

    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

/// The room of post `i`: `bench-0` … `bench-31`.
fn room(i: usize) -> String {
    format!("bench-{}", i % ROOMS)
}

/// Runs `plan` against the server at `addr`.
pub fn run(addr: SocketAddr, plan: &Plan) -> RoomPosts {
    let mut out = RoomPosts {
        round_trips: Vec::with_capacity(plan.sequential),
        posted_at_once: 0,
        at_once_time: Duration::ZERO,
        round_times: Vec::with_capacity(plan.rounds),
        errors: 0,
        first_error: None,
    };
    let text = wire::message("rooms", plan.message_bytes);
    match HttpConn::connect(addr) {
        Ok(mut conn) => {
            for i in 0..plan.sequential {
                let request = post_to_room(&room(i), &text);
                // A replaced connection must not be made inside the timed window.
                if let Err(e) = conn.refresh() {
                    out.error(format!("reconnect: {e}"));
                    break;
                }
                let sent = Instant::now();
                match conn.send(&request).and_then(|()| created(&mut conn)) {
                    Ok(()) => out.round_trips.push(sent.elapsed()),
                    Err(e) => out.error(format!("post to {}: {e}", room(i))),
                }
            }
        }
        Err(e) => out.error(format!("connect: {e}")),
    }

    let mut conns = Vec::with_capacity(ROOMS);
    for _ in 0..ROOMS {
        match HttpConn::connect(addr) {
            Ok(conn) => conns.push(conn),
            Err(e) => {
                out.error(format!("connect: {e}"));
                return out;
            }
        }
    }
    let requests: Vec<Vec<u8>> = (0..ROOMS).map(|i| post_to_room(&room(i), &text)).collect();
    for _ in 0..plan.rounds {
        if let Some(e) = conns.iter_mut().find_map(|c| c.refresh().err()) {
            out.error(format!("reconnect: {e}"));
            break;
        }
        let started = Instant::now();
        let sent: Vec<bool> = (conns.iter_mut().zip(&requests))
            .map(|(conn, request)| match conn.send(request) {
                Ok(()) => true,
                Err(e) => {
                    out.error(format!("send: {e}"));
                    false
                }
            })
            .collect();
        for (i, conn) in conns.iter_mut().enumerate().filter(|(i, _)| sent[*i]) {
            match created(conn) {
                Ok(()) => out.posted_at_once += 1,
                Err(e) => out.error(format!("post to {}: {e}", room(i))),
            }
        }
        let took = started.elapsed();
        out.at_once_time += took;
        out.round_times.push(took);
    }
    out
}

/// `POST /rooms/{room}/messages` carrying `text` from `bench`; `room` and `text` must need
/// no %-encoding (see [`wire::message`]).
fn post_to_room(room: &str, text: &str) -> Vec<u8> {
    let body = format!("from=bench&text={text}");
    let mut out = format!(
        "POST /rooms/{room}/messages HTTP/1.1\r\nHost: bench\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Reads one answer, which must be `201`.
fn created(conn: &mut HttpConn) -> io::Result<()> {
    match conn.read_answer()? {
        (201, _) => Ok(()),
        (status, body) => Err(io::Error::other(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(&body)
        ))),
    }
}
