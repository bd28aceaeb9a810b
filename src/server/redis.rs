//! The shell's side of the Redis backplane (`--redis`): the two connections, reconnecting
//! with backoff, the watchdog that drops a Redis that stopped answering, and the commands
//! the chat asks for ([`crate::chat::Command`]). What a reply or an announcement means for
//! the rooms is the chat's to decide (`src/chat/shared.rs`); this file only carries
//! frames both ways. Without `--redis` none of this runs.

use super::budget::REQUESTS_RESUMED_PER_PASS;
use super::timers::Due;
use super::Server;
use crate::backplane::{Backplane, Incoming};
use crate::chat::{Command, Then};
use crate::stats;
use std::time::{Duration, Instant};

/// Frames from Redis handled per pass; the rest wait for the next pass (which comes at
/// once), so a burst of announcements cannot hold the loop.
const FRAMES_PER_PASS: usize = 1024;

/// Redis that has not answered anything for this long is taken for gone: the connections
/// are dropped and made again.
const STALL: Duration = Duration::from_secs(3);

/// First and longest wait between attempts to reach Redis again.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MOST: Duration = Duration::from_secs(2);

/// The connections to Redis and how they stand.
pub(super) struct RedisLink {
    /// The two connections and what is in flight on them.
    pub backplane: Backplane<Then>,
    /// Reused buffer for what the backplane hands over in one go.
    incoming: Vec<Incoming<Then>>,
    /// Frames from Redis were left for the next pass (at most so many a pass).
    pub more: bool,
    /// The watchdog is on the wheel (at most once).
    watchdog: bool,
    /// Failed attempts to reach Redis in the current outage (0: up, or never tried).
    attempts: u32,
    /// Redis was up at least once, so a connection now is a reconnection.
    was_up: bool,
    /// The master the last connection that came up went to: one that comes up elsewhere
    /// is a failover.
    last_master: Option<String>,
    /// When the current outage began (`None` while Redis is up).
    outage: Option<Instant>,
}

impl RedisLink {
    /// Not connected yet: [`Server::connect_redis`] starts.
    pub(super) fn new(backplane: Backplane<Then>) -> RedisLink {
        RedisLink {
            backplane,
            incoming: Vec::new(),
            more: false,
            watchdog: false,
            attempts: 0,
            was_up: false,
            last_master: None,
            outage: None,
        }
    }
}

impl Server {
    /// Step 2 for one of the two Redis connections.
    pub(super) fn on_backplane_event(&mut self, token: mio::Token) {
        let Some(link) = self.redis.as_mut() else {
            return;
        };
        let mut incoming = std::mem::take(&mut link.incoming);
        let registry = self.poll.registry();
        link.more |= link
            .backplane
            .on_event(registry, token, &mut incoming, FRAMES_PER_PASS);
        self.take_incoming(&mut incoming);
    }

    /// Step 3: frames read in an earlier pass and not handled yet.
    pub(super) fn serve_backplane(&mut self) {
        let Some(link) = self.redis.as_mut() else {
            return;
        };
        if !std::mem::take(&mut link.more) {
            return;
        }
        let mut incoming = std::mem::take(&mut link.incoming);
        let mut more = link.backplane.drain(true, &mut incoming, FRAMES_PER_PASS);
        more |= link.backplane.drain(false, &mut incoming, FRAMES_PER_PASS);
        link.more = more;
        self.take_incoming(&mut incoming);
    }

    /// Step 3 too: requests whose room became ready are handled again, at most
    /// [`REQUESTS_RESUMED_PER_PASS`] a pass; the rest in the next passes.
    pub(super) fn resume_waiting(&mut self) {
        if !self.chat.is_resuming() {
            return;
        }
        // One request at a time, each one's effects carried out before the next is handled
        // (see `Chat::resume_next`).
        for _ in 0..REQUESTS_RESUMED_PER_PASS {
            let now = self.now();
            let more = self.chat.resume_next(now);
            self.carry_out();
            if !more {
                return;
            }
        }
    }

    /// Hands what came from Redis to the chat, one item at a time, carrying out each
    /// one's effects before the next.
    fn take_incoming(&mut self, incoming: &mut Vec<Incoming<Then>>) {
        for item in incoming.drain(..) {
            match &item {
                Incoming::Up => self.on_redis_up(),
                Incoming::Down(why) => self.on_redis_down(why),
                _ => {}
            }
            let now = self.now();
            self.chat.redis(now, item);
            self.carry_out();
        }
        if let Some(link) = self.redis.as_mut() {
            link.incoming = std::mem::take(incoming);
            let in_flight = link.backplane.in_flight() as u64;
            stats::set(&self.stats.redis_in_flight, in_flight);
        }
    }

    /// A command the chat asked for. One that cannot be sent (Redis went down) comes back
    /// to the chat as a failed reply, in the same queue, never by recursion.
    pub(super) fn send_to_redis(&mut self, command: Command) {
        let Some(link) = self.redis.as_mut() else {
            return;
        };
        let backplane = &mut link.backplane;
        let failed = match command {
            Command::Post {
                room,
                from,
                text,
                time_ms,
                client_id,
                trim,
                new_epoch,
                then,
            } => {
                let client_id = client_id.as_deref();
                let sent = backplane.post(
                    &room, &from, &text, time_ms, client_id, trim, new_epoch, then,
                );
                sent.err()
            }
            Command::History {
                room,
                first_seq,
                with_names,
                sweep_limit,
                new_epoch,
                then,
            } => backplane
                .history(&room, first_seq, with_names, sweep_limit, new_epoch, then)
                .err(),
            Command::Presence { room, names } => {
                let names: Vec<(&str, u64)> =
                    names.iter().map(|(n, ms)| (n.as_str(), *ms)).collect();
                backplane.presence(&room, &names, Then::Presence).err()
            }
            Command::Sweep { room, limit } => backplane.sweep(&room, limit, Then::Presence).err(),
            Command::Typing { room, from } => {
                backplane.typing(&room, &from);
                None
            }
        };
        match failed {
            Some(then) => {
                let why = Err("the command could not be sent to Redis".to_owned());
                let now = self.now();
                self.chat.redis(now, Incoming::Reply(then, why));
            }
            None => self.arm_redis_watchdog(Duration::from_secs(1)),
        }
    }

    /// Connects, or schedules the next attempt.
    pub(super) fn connect_redis(&mut self) {
        let Some(link) = self.redis.as_mut() else {
            return;
        };
        match link.backplane.connect(self.poll.registry()) {
            Ok(()) => {
                // Asking a Sentinel: checked when its time is up; then the whole attempt.
                let check = link.backplane.sentinel_time_left().unwrap_or(STALL);
                self.arm_redis_watchdog(check);
            }
            Err(why) => {
                let mut incoming = Vec::new();
                link.backplane.disconnect(why, &mut incoming);
                self.take_incoming(&mut incoming);
            }
        }
    }

    /// Checks on Redis: reconnects when it is down, skips a Sentinel that has not answered
    /// in time, and drops connections that have stopped answering.
    pub(super) fn on_redis_watchdog(&mut self) {
        let Some(link) = self.redis.as_mut() else {
            return;
        };
        link.watchdog = false;
        if link.backplane.sentinel_time_left().is_some() {
            let mut incoming = Vec::new();
            let registry = self.poll.registry();
            link.backplane.on_sentinel_overdue(registry, &mut incoming);
            let next = link.backplane.sentinel_time_left();
            self.take_incoming(&mut incoming);
            // Down now (every Sentinel asked): `on_redis_down` armed the retry.
            let up_to = next.map_or(STALL, |left| left.max(Duration::from_millis(1)));
            return self.arm_redis_watchdog(up_to);
        }
        let stalled = if link.backplane.is_up() {
            link.backplane.oldest().map(|sent| sent.elapsed() >= STALL)
        } else if let Some(began) = link.backplane.starting_since() {
            Some(began.elapsed() >= STALL)
        } else {
            self.connect_redis();
            return;
        };
        match stalled {
            Some(true) => {
                let why = format!("Redis at {} stopped answering", link.backplane.shown());
                let mut incoming = Vec::new();
                link.backplane.disconnect(why, &mut incoming);
                self.take_incoming(&mut incoming);
            }
            Some(false) => self.arm_redis_watchdog(Duration::from_secs(1)),
            None => {}
        }
    }

    fn arm_redis_watchdog(&mut self, after: Duration) {
        let Some(link) = self.redis.as_mut() else {
            return;
        };
        if !link.watchdog {
            link.watchdog = true;
            self.schedule(Due::RedisWatchdog, after);
        }
    }

    fn on_redis_up(&mut self) {
        let Some(link) = self.redis.as_mut() else {
            return;
        };
        match link.outage.take() {
            Some(since) if link.was_up => {
                log::info!(
                    "Redis at {} is back after {:.1} s; catching up every room served here",
                    link.backplane.shown(),
                    since.elapsed().as_secs_f64()
                );
                stats::add(&self.stats.redis_reconnects, 1);
            }
            _ => log::info!("Redis at {} connected", link.backplane.shown()),
        }
        let master = link.backplane.master_in_use();
        if let (Some(before), Some(now)) = (&link.last_master, &master) {
            if before != now {
                log::warn!("Redis's master moved from {before} to {now} (a failover)");
                stats::add(&self.stats.redis_failovers, 1);
            }
        }
        if let (Some(now), Ok(mut shown)) = (&master, self.stats.redis_master.lock()) {
            now.clone_into(&mut shown);
        }
        link.last_master = master;
        link.was_up = true;
        link.attempts = 0;
        stats::set(&self.stats.redis_connected, 1);
    }

    fn on_redis_down(&mut self, why: &str) {
        let Some(link) = self.redis.as_mut() else {
            return;
        };
        if link.attempts == 0 {
            // Once per outage, not once per attempt.
            log::warn!("{why}; posts are answered 503 until Redis is back");
        }
        link.attempts += 1;
        link.outage.get_or_insert_with(Instant::now);
        stats::set(&self.stats.redis_connected, 0);
        let shift = link.attempts.min(8) - 1;
        let wait = (RETRY_FIRST * (1 << shift)).min(RETRY_MOST);
        link.watchdog = false; // a pending check is moot; this one retries
        self.arm_redis_watchdog(wait);
    }
}
