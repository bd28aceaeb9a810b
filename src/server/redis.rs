//! The shell's side of the Redis backplane (`--redis`): the two connections, reconnecting
//! with backoff, the watchdog that drops a Redis that stopped answering, and the commands
//! the chat asks for ([`crate::chat::Command`]). What a reply or an announcement means for
//! the rooms is the chat's to decide (`src/chat/shared.rs`); this file only carries
//! frames both ways. Without `--redis` none of this runs.
//!
//! With `--redis` given several times, each is a shard with its own [`RedisLink`]: its own
//! connections, tokens, watchdog and backoff, so one shard down or slow leaves the others
//! as they were. The chat names the shard of every command (by its room); the shell only
//! carries it there, and tells the chat which shard each reply came from.

use super::budget::REQUESTS_RESUMED_PER_PASS;
use super::timers::{Due, WATCHDOG_TURNS};
use super::Server;
use crate::backplane::shards::SHARDS_MAX;
use crate::backplane::{Backplane, Incoming, Tokens};
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

/// The highest poll token a Redis connection takes; shard `i` has the three below
/// `REDIS_TOKENS_TOP - 3 * i` ([`tokens`]). Slab keys (connections) never get near, and
/// the server's own tokens sit above.
const REDIS_TOKENS_TOP: usize = usize::MAX - 8;

/// The poll tokens of shard `shard`'s connections.
pub(super) fn tokens(shard: usize) -> Tokens {
    let top = REDIS_TOKENS_TOP - 3 * shard;
    Tokens {
        commands: mio::Token(top),
        events: mio::Token(top - 1),
        sentinel: mio::Token(top - 2),
    }
}

/// The shard whose connection has this token, if it is one of the Redis connections'.
pub(super) fn shard_of_token(token: mio::Token) -> Option<usize> {
    let below_top = REDIS_TOKENS_TOP.checked_sub(token.0)?;
    let shard = below_top / 3;
    (shard < SHARDS_MAX).then_some(shard)
}

/// The connections to one Redis (one shard) and how they stand.
pub(super) struct RedisLink {
    /// The two connections and what is in flight on them.
    pub backplane: Backplane<Then>,
    /// Reused buffer for what the backplane hands over in one go.
    incoming: Vec<Incoming<Then>>,
    /// Frames from Redis were left for the next pass (at most so many a pass).
    pub more: bool,
    /// The watchdog is on the wheel: at most one entry that counts, the one of turn
    /// `watchdog_turn`.
    watchdog: bool,
    /// The turn of the watchdog last filed. A drop files a new one at once, for the
    /// backoff, in place of the one on the wheel: that one, when it fires, is of an earlier
    /// turn and ignored. Acted on, each such entry filed one more, so every refused attempt
    /// added an entry and the attempts multiplied (136 connections in 12 s where the
    /// backoff allows 14).
    watchdog_turn: u32,
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
            watchdog_turn: 0,
            attempts: 0,
            was_up: false,
            last_master: None,
            outage: None,
        }
    }
}

impl Server {
    /// Step 2 for one of the Redis connections (of the shard its token names).
    pub(super) fn on_backplane_event(&mut self, token: mio::Token) {
        let Some(shard) = shard_of_token(token) else {
            return;
        };
        let Some(link) = self.redis.get_mut(shard) else {
            return;
        };
        let mut incoming = std::mem::take(&mut link.incoming);
        let registry = self.poll.registry();
        link.more |= link
            .backplane
            .on_event(registry, token, &mut incoming, FRAMES_PER_PASS);
        self.take_incoming(shard, &mut incoming);
    }

    /// Step 3: frames read in an earlier pass and not handled yet, each shard's.
    pub(super) fn serve_backplane(&mut self) {
        for shard in 0..self.redis.len() {
            let link = &mut self.redis[shard];
            if !std::mem::take(&mut link.more) {
                continue;
            }
            let mut incoming = std::mem::take(&mut link.incoming);
            let mut more = link.backplane.drain(true, &mut incoming, FRAMES_PER_PASS);
            more |= link.backplane.drain(false, &mut incoming, FRAMES_PER_PASS);
            link.more = more;
            self.take_incoming(shard, &mut incoming);
        }
    }

    /// Frames from Redis wait for the next pass (on some shard).
    pub(super) fn backplane_has_more(&self) -> bool {
        self.redis.iter().any(|link| link.more)
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

    /// Hands what came from shard `shard` to the chat, one item at a time, carrying out
    /// each one's effects before the next.
    fn take_incoming(&mut self, shard: usize, incoming: &mut Vec<Incoming<Then>>) {
        for item in incoming.drain(..) {
            match &item {
                Incoming::Up => self.on_redis_up(shard),
                Incoming::Down(why) => self.on_redis_down(shard, why),
                _ => {}
            }
            let now = self.now();
            self.chat.redis(now, shard, item);
            self.carry_out();
        }
        if let Some(link) = self.redis.get_mut(shard) {
            link.incoming = std::mem::take(incoming);
        }
        let in_flight = self
            .redis
            .iter()
            .map(|l| l.backplane.in_flight())
            .sum::<usize>();
        stats::set(&self.stats.redis_in_flight, in_flight as u64);
    }

    /// A command the chat asked for, to shard `shard`. One that cannot be sent (Redis went
    /// down) comes back to the chat as a failed reply, in the same queue, never by
    /// recursion.
    pub(super) fn send_to_redis(&mut self, shard: usize, command: Command) {
        let Some(link) = self.redis.get_mut(shard) else {
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
                self.chat.redis(now, shard, Incoming::Reply(then, why));
            }
            None => self.arm_redis_watchdog(shard, Duration::from_secs(1)),
        }
    }

    /// Connects every shard (at start).
    pub(super) fn connect_every_shard(&mut self) {
        for shard in 0..self.redis.len() {
            self.connect_redis(shard);
        }
    }

    /// Connects shard `shard`, or schedules its next attempt.
    fn connect_redis(&mut self, shard: usize) {
        let Some(link) = self.redis.get_mut(shard) else {
            return;
        };
        match link.backplane.connect(self.poll.registry()) {
            Ok(()) => {
                // Asking a Sentinel: checked when its time is up; then the whole attempt.
                let check = link.backplane.sentinel_time_left().unwrap_or(STALL);
                self.arm_redis_watchdog(shard, check);
            }
            Err(why) => {
                let mut incoming = Vec::new();
                link.backplane.disconnect(why, &mut incoming);
                self.take_incoming(shard, &mut incoming);
            }
        }
    }

    /// Checks on shard `shard`: reconnects when it is down, skips a Sentinel that has not
    /// answered in time, and drops connections that have stopped answering.
    pub(super) fn on_redis_watchdog(&mut self, shard: usize, turn: u32) {
        let Some(link) = self.redis.get_mut(shard) else {
            return;
        };
        if !link.watchdog || turn != link.watchdog_turn {
            return; // replaced by a later one (`on_redis_down`)
        }
        link.watchdog = false;
        if link.backplane.sentinel_time_left().is_some() {
            let mut incoming = Vec::new();
            let registry = self.poll.registry();
            link.backplane.on_sentinel_overdue(registry, &mut incoming);
            let next = link.backplane.sentinel_time_left();
            self.take_incoming(shard, &mut incoming);
            // Down now (every Sentinel asked): `on_redis_down` armed the retry.
            let up_to = next.map_or(STALL, |left| left.max(Duration::from_millis(1)));
            return self.arm_redis_watchdog(shard, up_to);
        }
        let stalled = if link.backplane.is_up() {
            link.backplane.oldest().map(|sent| sent.elapsed() >= STALL)
        } else if let Some(began) = link.backplane.starting_since() {
            Some(began.elapsed() >= STALL)
        } else {
            self.connect_redis(shard);
            return;
        };
        match stalled {
            Some(true) => {
                let why = format!("Redis at {} stopped answering", link.backplane.shown());
                let mut incoming = Vec::new();
                link.backplane.disconnect(why, &mut incoming);
                self.take_incoming(shard, &mut incoming);
            }
            Some(false) => self.arm_redis_watchdog(shard, Duration::from_secs(1)),
            None => {}
        }
    }

    fn arm_redis_watchdog(&mut self, shard: usize, after: Duration) {
        let Some(link) = self.redis.get_mut(shard) else {
            return;
        };
        if !link.watchdog {
            link.watchdog = true;
            link.watchdog_turn = (link.watchdog_turn + 1) % WATCHDOG_TURNS;
            let (shard, turn) = (shard as u32, link.watchdog_turn);
            self.schedule(Due::RedisWatchdog { shard, turn }, after);
        }
    }

    /// What `/stats` and `/metrics` show of the shards: whether each is up, and where.
    pub(super) fn show_shards(&mut self) {
        let up = self.redis.iter().filter(|l| l.backplane.is_up()).count();
        stats::set(&self.stats.redis_shards_up, up as u64);
        stats::set(
            &self.stats.redis_connected,
            u64::from(up == self.redis.len()),
        );
        if let Ok(mut shown) = self.stats.redis_shards.lock() {
            shown.resize_with(self.redis.len(), Default::default);
            for (shown, link) in shown.iter_mut().zip(&self.redis) {
                link.backplane.url_shown().clone_into(&mut shown.url);
                shown.connected = link.backplane.is_up();
                if let Some(master) = &link.last_master {
                    shown.master.clone_from(master);
                }
            }
        }
    }

    fn on_redis_up(&mut self, shard: usize) {
        let Some(link) = self.redis.get_mut(shard) else {
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
        link.last_master = master;
        link.was_up = true;
        link.attempts = 0;
        self.show_shards();
    }

    fn on_redis_down(&mut self, shard: usize, why: &str) {
        let rooms = if self.redis.len() > 1 {
            " in its rooms"
        } else {
            ""
        };
        let Some(link) = self.redis.get_mut(shard) else {
            return;
        };
        if link.attempts == 0 {
            // Once per outage, not once per attempt.
            log::warn!("{why}; posts{rooms} are answered 503 until Redis is back");
        }
        link.attempts += 1;
        link.outage.get_or_insert_with(Instant::now);
        let shift = link.attempts.min(8) - 1;
        let wait = (RETRY_FIRST * (1 << shift)).min(RETRY_MOST);
        link.watchdog = false; // a pending check is moot (ignored when it fires); this retries
        self.show_shards();
        self.arm_redis_watchdog(shard, wait);
    }
}
