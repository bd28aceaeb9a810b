//! Deadlines: every one the server keeps is an entry in the one timer wheel, so step 4 of a
//! pass (expire) is the only place anything happens because time passed, and the loop
//! sleeps exactly until the next of them. A connection has one timer at a time, whose
//! purpose ([`Deadline`]) follows its state; the server has a few of its own ([`Due`]).

use super::budget::TIMERS_FIRED_PER_PASS;
use super::Server;
use crate::backplane::shards::SHARDS_MAX;
use crate::chat::Sweep;
use crate::conn::{Deadline, Flags, State};
use crate::stats;
use crate::timer::{self, ShortTick, TimerWheel};
use crate::waitlist::{ListKind, Waiter};
use std::time::{Duration, Instant};

/// How long a connection we are hanging up on may keep sending before we close it anyway.
pub(super) const LINGER: Duration = Duration::from_secs(2);

/// What a wheel entry carries: 8 bytes, so that tens of thousands of parked polls cost
/// little (see [`Due`] for what they mean).
pub type Payload = (u32, u32);

/// The key under which the server's own deadlines are filed: slab keys never get near it
/// (as with the listener's token), so no connection can be mistaken for one.
const SERVER_KEY: u32 = u32::MAX;

/// Under [`SERVER_KEY`], the generations from here on are the Redis watchdogs, shard `n`'s
/// of turn `t` at `REDIS_WATCHDOGS + n + SHARDS_MAX * t`; the ones below name the server's
/// other deadlines.
const REDIS_WATCHDOGS: u32 = 16;

/// Watchdog turns told apart ([`Due::RedisWatchdog`]); they count round modulo this, which
/// fills the rest of the generation's range. A watchdog fires within seconds of being
/// filed, so an entry this many turns old is never still on the wheel.
pub(super) const WATCHDOG_TURNS: u32 = (u32::MAX - REDIS_WATCHDOGS) / SHARDS_MAX as u32;

/// What a timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// The connection at `key`, if it is still the one of `generation` (a key is reused
    /// once its connection is freed; a stale timer must not fire on the newcomer).
    Conn {
        /// Slab key.
        key: usize,
        /// The connection's generation when the timer was set.
        generation: u32,
    },
    /// Out of descriptors, the listener paused: listen again.
    ResumeAccepting,
    /// One of the chat's sweeps (presence, the rate limiter's buckets).
    Sweep(Sweep),
    /// A shutdown's grace is over: exit with whatever is still open.
    GraceOver,
    /// With `--redis`: reconnect shard `shard`, or check that its Redis still answers, if
    /// this is still its watchdog's `turn` (one replaced meanwhile is ignored).
    RedisWatchdog {
        /// The shard, an index into `--redis`.
        shard: u32,
        /// Its watchdog's turn when this was filed, below [`WATCHDOG_TURNS`].
        turn: u32,
    },
    /// Send the X-ray's next frame to its viewers.
    XrayTick,
}

impl Due {
    /// Packs into a wheel entry's payload.
    fn pack(self) -> Payload {
        match self {
            Due::Conn { key, generation } => (key as u32, generation),
            Due::ResumeAccepting => (SERVER_KEY, 0),
            Due::Sweep(Sweep::Presence) => (SERVER_KEY, 1),
            Due::GraceOver => (SERVER_KEY, 2),
            Due::RedisWatchdog { shard, turn } => {
                let shards = SHARDS_MAX as u32;
                (SERVER_KEY, REDIS_WATCHDOGS + shard + shards * turn)
            }
            Due::Sweep(Sweep::Limiter) => (SERVER_KEY, 4),
            Due::XrayTick => (SERVER_KEY, 5),
        }
    }

    /// Unpacks a fired entry's payload.
    fn unpack((key, generation): Payload) -> Due {
        match (key, generation) {
            (SERVER_KEY, 0) => Due::ResumeAccepting,
            (SERVER_KEY, 1) => Due::Sweep(Sweep::Presence),
            (SERVER_KEY, 2) => Due::GraceOver,
            (SERVER_KEY, n) if n >= REDIS_WATCHDOGS => {
                let (n, shards) = (n - REDIS_WATCHDOGS, SHARDS_MAX as u32);
                Due::RedisWatchdog {
                    shard: n % shards,
                    turn: n / shards,
                }
            }
            (SERVER_KEY, 4) => Due::Sweep(Sweep::Limiter),
            (SERVER_KEY, 5) => Due::XrayTick,
            (key, generation) => Due::Conn {
                key: key as usize,
                generation,
            },
        }
    }
}

/// Every deadline, the connections' and the server's own, and the clock they count.
pub(super) struct Timers {
    /// The wheel, in ticks since `started`.
    pub wheel: TimerWheel<Payload>,
    /// Tick 0 of the wheel: the loop's clock, which the chat is given as `Now`.
    pub started: Instant,
    /// Reused buffer for the timers one expire step fires.
    pub fired: Vec<Payload>,
    /// Deadlines set, come due and cleared before due, the connections' and the server's,
    /// for `/metrics`. Not the wheel's own totals: a connection's deadline comes and goes
    /// without a wheel entry (see [`crate::conn::Timer`]).
    pub deadlines: timer::Totals,
}

impl Server {
    /// Step 4: fires the timers whose deadline passed, at most [`TIMERS_FIRED_PER_PASS`];
    /// the rest stay in the wheel, due, so the next poll does not sleep and the next pass
    /// goes on with them after everyone else's events.
    pub(super) fn expire_timers(&mut self) {
        let now = timer::ticks_floor(self.timers.started.elapsed());
        let mut fired = std::mem::take(&mut self.timers.fired);
        self.timers
            .wheel
            .expire_at_most(now, TIMERS_FIRED_PER_PASS, &mut fired);
        self.metrics.report.timers_fired += fired.len();
        for &payload in &fired {
            let due = Due::unpack(payload);
            if !matches!(due, Due::Conn { .. }) {
                self.timers.deadlines.fired += 1; // a connection's counts in on_conn_timer
            }
            match due {
                Due::Conn { key, generation } => self.on_conn_timer(key, generation, now),
                Due::ResumeAccepting => self.resume_accepting(),
                Due::Sweep(sweep) => {
                    let now = self.now();
                    self.chat.sweep(now, sweep);
                    self.carry_out();
                }
                Due::GraceOver => self.control.grace_over = true,
                Due::RedisWatchdog { shard, turn } => self.on_redis_watchdog(shard as usize, turn),
                Due::XrayTick => self.xray_tick(),
            }
        }
        fired.clear();
        self.timers.fired = fired;
    }

    /// Files one of the server's own deadlines, `after` from now; the id cancels it until
    /// it fires.
    pub(super) fn schedule(&mut self, due: Due, after: Duration) -> timer::TimerId {
        debug_assert!(
            !matches!(due, Due::Conn { .. }),
            "connections use set_timer"
        );
        let at = self.deadline_after(after);
        self.timers.deadlines.armed += 1;
        self.timers.wheel.insert(at, due.pack())
    }

    /// A connection's wheel entry fired at tick `now`: its deadline is due, or moved later
    /// since the entry was filed (the entry is filed again for it), or was cleared.
    fn on_conn_timer(&mut self, key: usize, generation: u32, now: u64) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.generation != generation {
            return; // the timer's connection is gone and its key reused
        }
        conn.timer.filed = None;
        let Some(deadline) = conn.timer.deadline else {
            return; // cleared since it was filed
        };
        let at = conn.timer.at.widen(now);
        if at > now {
            let due = Due::Conn { key, generation };
            conn.timer.filed = Some(self.timers.wheel.insert(at, due.pack()));
            conn.timer.filed_at = ShortTick::of(at);
            return;
        }
        conn.timer.deadline = None;
        self.timers.deadlines.fired += 1;
        self.on_deadline(key, deadline);
    }

    fn on_deadline(&mut self, key: usize, deadline: Deadline) {
        let conn = &self.conns[key];
        let waiter = Waiter {
            key: key as u32,
            generation: conn.generation,
        };
        let now = self.now();
        match (deadline, conn.state()) {
            (Deadline::Poll, State::Parked(at)) => {
                self.chat.poll_timed_out(waiter, at);
                self.carry_out();
            }
            // A WebSocket pinged last time and silent since is gone, or as good as.
            (Deadline::Heartbeat, State::Streaming(_)) if conn.flags.has(Flags::UNHEARD) => {
                self.count_drop(key, &self.stats.dropped_idle);
                log::debug!("#{key} WebSocket answered no ping for a heartbeat; dropping");
                self.close(key);
            }
            (Deadline::Heartbeat, State::Streaming(at)) => {
                if at.list == ListKind::Socket {
                    self.conns[key].flags.set(Flags::UNHEARD, true);
                }
                self.chat.stream_due(now, waiter, at, false);
                self.carry_out();
            }
            (Deadline::Resume, State::Streaming(at)) => {
                self.chat.resume_wait_over(waiter, at);
                self.carry_out();
                if self.live(waiter).is_some() && self.conns[key].timer.deadline.is_none() {
                    self.rearm_stream_timer(key);
                }
            }
            (Deadline::Backplane, State::Streaming(_)) => {
                log::debug!("#{key} Redis did not answer a WebSocket's post in time");
                self.chat.redis_wait_over(waiter);
                self.carry_out();
                if self.live(waiter).is_some() && self.conns[key].timer.deadline.is_none() {
                    self.rearm_stream_timer(key);
                }
            }
            (Deadline::Write, State::Streaming(at)) => {
                if !self.chat.stream_due(now, waiter, at, true) {
                    self.write_or_drop(key);
                }
                self.carry_out();
            }
            (Deadline::Write, State::Writing | State::Viewing) => self.write_or_drop(key),
            (Deadline::Idle, State::Reading) => {
                self.count_drop(key, &self.stats.dropped_idle);
                log::debug!("#{key} idle for {:?}; closing", self.config.idle_timeout);
                self.close(key);
            }
            (Deadline::Request, State::Reading) => {
                log::debug!(
                    "#{key} {} sent no whole request in time",
                    self.client_name(key)
                );
                self.count_drop(key, &self.stats.dropped_request_timeout);
                self.reject(key, crate::http::Status::REQUEST_TIMEOUT);
            }
            (Deadline::Linger, _) => self.close(key),
            (Deadline::Backplane, State::Awaiting) => {
                log::debug!("#{key} Redis did not answer in time");
                self.chat.redis_wait_over(waiter);
                self.carry_out();
            }
            (deadline, state) => {
                debug_assert!(false, "#{key}: {deadline:?} timer fired in {state:?}");
            }
        }
    }

    /// `--write-timeout` passed without the kernel saying the socket is writable. That is
    /// not proof of a stalled client: the kernel says so only once a good part of the send
    /// buffer is free (a third or so, megabytes once it has grown), which a slow but steady
    /// reader may take longer than the timeout to free. So try a write: any progress starts
    /// the deadline over; none at all, and the client is dropped as too slow.
    fn write_or_drop(&mut self, key: usize) {
        let stalled = self.write_output(key) == 0;
        if stalled
            && matches!(
                self.conns[key].state(),
                State::Writing | State::Streaming(_) | State::Viewing
            )
        {
            self.count_drop(key, &self.stats.dropped_slow);
            log::debug!(
                "#{key} {} took nothing for {:?}; dropping",
                self.client_name(key),
                self.config.write_timeout
            );
            self.close(key);
        }
    }

    /// Counts a client dropped for `why` (idle, too slow, …) in `/stats`, which counts the
    /// public port's clients: an admin connection is not one.
    pub(super) fn count_drop(&self, key: usize, why: &std::sync::atomic::AtomicU64) {
        if !self.conns[key].flags.has(Flags::ADMIN) {
            stats::add(why, 1);
        }
    }

    /// A WebSocket opened without `?since=` still waits (at most [`crate::chat::RESUME_WAIT`])
    /// for its first frame. Its writes (its own join, say) must not replace that deadline
    /// with a heartbeat or a write deadline, or it would never be replayed; when it fires,
    /// the stream's own timer is armed again.
    pub(super) fn awaits_resume(&self, key: usize) -> bool {
        self.conns[key].timer.deadline == Some(Deadline::Resume)
    }

    /// Replaces the connection's timer with one for `deadline`, due after its configured
    /// duration.
    pub(super) fn set_timer(&mut self, key: usize, deadline: Deadline) {
        let streaming = matches!(self.conns[key].state(), State::Streaming(_));
        let after = match deadline {
            Deadline::Idle => self.config.idle_timeout,
            Deadline::Request => self.config.request_timeout,
            Deadline::Poll => self.config.poll_timeout,
            // A stream behind on its writes still ends when its token does.
            Deadline::Write if streaming => {
                match self.chat.stream_ends_in_ms(self.now(), key as u32) {
                    Some(left) => self.config.write_timeout.min(Duration::from_millis(left)),
                    None => self.config.write_timeout,
                }
            }
            Deadline::Write => self.config.write_timeout,
            Deadline::Linger => LINGER,
            // A quiet stream's next heartbeat, or the end of its token if that comes first.
            Deadline::Heartbeat => match self.chat.stream_ends_in_ms(self.now(), key as u32) {
                Some(left) => self.config.heartbeat.min(Duration::from_millis(left)),
                None => self.config.heartbeat,
            },
            Deadline::Backplane => crate::chat::REPLY_WAIT,
            Deadline::Resume => crate::chat::RESUME_WAIT,
        };
        self.clear_timer(key);
        let elapsed = self.timers.started.elapsed();
        let (at, now) = (
            timer::ticks_ceil(elapsed + after),
            timer::ticks_floor(elapsed),
        );
        self.timers.deadlines.armed += 1;
        let conn = &mut self.conns[key];
        conn.timer.deadline = Some(deadline);
        conn.timer.at = ShortTick::of(at);
        // The entry already filed wakes the loop in time for this deadline too: nothing
        // to do in the wheel. This is the common case: a delivery moves a poll's deadline
        // to a later idle one, and a re-park moves it back to a poll deadline later than
        // the entry filed at the last park.
        if let Some(filed) = conn.timer.filed {
            if conn.timer.filed_at.widen(now) <= at {
                return;
            }
            // Sooner than the entry: file a sooner one (a request deadline after an idle
            // one, say, or a shorter timeout).
            self.timers.wheel.cancel(filed);
        }
        let due = Due::Conn {
            key,
            generation: conn.generation,
        };
        conn.timer.filed = Some(self.timers.wheel.insert(at, due.pack()));
        // The wheel files a deadline that is already due at its next tick.
        conn.timer.filed_at = ShortTick::of(at.max(self.timers.wheel.now() + 1));
    }

    /// Clears the connection's deadline, if it has one. Its wheel entry stays filed (so
    /// that setting the next deadline can reuse it) and fires for nothing if none is set
    /// by then: at most one wake-up, never a late deadline.
    pub(super) fn clear_timer(&mut self, key: usize) {
        if self.conns[key].timer.deadline.take().is_some() {
            self.timers.deadlines.cancelled += 1;
        }
    }

    /// A connection is closing: its deadline and its wheel entry both go, so that a
    /// closed connection holds no entry until it would have fired.
    pub(super) fn drop_timer(&mut self, key: usize) {
        self.clear_timer(key);
        if let Some(filed) = self.conns[key].timer.filed.take() {
            self.timers.wheel.cancel(filed);
        }
    }

    /// A connection reading requests has an idle timer while nothing is buffered, and a
    /// request timer from the first byte of a request until it is complete. The request
    /// timer is not reset by later bytes: trickling a byte at a time buys nothing.
    pub(super) fn arm_reading_timer(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if conn.state() != State::Reading {
            return;
        }
        let wanted = if conn.input.is_empty() {
            Deadline::Idle
        } else {
            Deadline::Request
        };
        if conn.timer.deadline != Some(wanted) {
            self.set_timer(key, wanted);
        }
    }

    /// The tick a deadline `after` from now falls in, rounded up so it is never early.
    fn deadline_after(&self, after: Duration) -> u64 {
        timer::ticks_ceil(self.timers.started.elapsed() + after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_timer_is_for_survives_the_wheel() {
        let cases = [
            Due::Conn {
                key: 0,
                generation: 0,
            },
            Due::Conn {
                key: 19_999,
                generation: u32::MAX,
            },
            Due::ResumeAccepting,
            Due::Sweep(Sweep::Presence),
            Due::GraceOver,
            Due::RedisWatchdog { shard: 0, turn: 0 },
            Due::RedisWatchdog { shard: 31, turn: 1 },
            Due::RedisWatchdog {
                shard: 31,
                turn: WATCHDOG_TURNS - 1,
            },
            Due::Sweep(Sweep::Limiter),
            Due::XrayTick,
        ];
        for due in cases {
            assert_eq!(Due::unpack(due.pack()), due);
        }
    }
}
