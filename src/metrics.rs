//! What the loop records about itself for `--admin-addr` (`/metrics`, the `/loop` X-ray):
//! passes, events, system calls by kind, bytes read, how long passes and fan-outs take, and
//! the last few broadcasts.
//!
//! Everything here is a plain integer the loop bumps as it goes (it is the only reader and
//! writer, so no atomics), and a histogram is a fixed array of counts: recording costs an
//! add, or a short scan of 18 bounds, whether anyone looks or not. Nothing is computed
//! until the admin listener is asked.

use std::collections::VecDeque;
use std::time::Duration;

/// Upper bounds of the duration histograms' buckets, in microseconds (Prometheus `le`
/// labels, in seconds, are these over a million); one more bucket counts everything above.
pub const BUCKET_BOUNDS_MICROS: [u64; 17] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000,
];

/// Broadcasts remembered for the X-ray.
pub const RECENT_BROADCASTS: usize = 8;

/// A distribution of durations, as Prometheus histograms count them.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is "above every bound".
    pub counts: [u64; BUCKET_BOUNDS_MICROS.len() + 1],
    /// The sum of every observation, in microseconds.
    pub sum_micros: u64,
}

impl Histogram {
    /// Counts one duration.
    pub fn observe(&mut self, duration: Duration) {
        let micros = duration.as_micros().min(u64::MAX as u128) as u64;
        let bucket = BUCKET_BOUNDS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(BUCKET_BOUNDS_MICROS.len());
        self.counts[bucket] += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// How many durations were counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// One broadcast, as the X-ray lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broadcast {
    /// The room's name.
    pub room: Box<str>,
    /// Waiting clients written to.
    pub fanout: u64,
    /// From the start of the delivery to the last client's write.
    pub micros: u64,
    /// When it happened, in milliseconds since the server started.
    pub at_ms: u64,
}

/// System calls the loop makes, by kind: the whole cost of a request, in kernel crossings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Syscalls {
    /// `accept4` on the listeners, the last one of each batch answering "no more".
    pub accept: u64,
    /// `read` on client sockets.
    pub read: u64,
    /// `write` and `writev` on client sockets.
    pub write: u64,
    /// `epoll_wait`: one per pass of the loop.
    pub epoll_wait: u64,
}

/// Everything the loop records about itself.
#[derive(Debug, Default)]
pub struct LoopMetrics {
    /// Passes of the loop since start.
    pub passes: u64,
    /// Readiness events handled since start.
    pub events: u64,
    /// System calls on the client path.
    pub syscalls: Syscalls,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// How long each pass took, from `epoll_wait` returning to the next `epoll_wait`.
    pub pass_seconds: Histogram,
    /// The longest pass since the X-ray last looked (reset by it).
    pub longest_pass_micros: u64,
    /// How long each message took to reach every waiting client.
    pub fanout_seconds: Histogram,
    /// The last [`RECENT_BROADCASTS`] broadcasts, newest last.
    pub broadcasts: VecDeque<Broadcast>,
    /// What the pass under way has done so far, for the trace log.
    pub report: PassReport,
}

/// Counts of what one loop pass did, for the trace log a learner reads.
#[derive(Debug, Default)]
pub struct PassReport {
    /// Readiness events.
    pub events: usize,
    /// Connections accepted.
    pub accepted: usize,
    /// Deadlines that fired.
    pub timers_fired: usize,
    /// Bytes written to clients.
    pub bytes_written: usize,
    /// Connections freed.
    pub closed: usize,
}

impl LoopMetrics {
    /// A pass that handled `events` readiness events took `took`.
    pub fn pass_done(&mut self, events: usize, took: Duration) {
        self.passes += 1;
        self.events += events as u64;
        self.pass_seconds.observe(took);
        let micros = took.as_micros().min(u64::MAX as u128) as u64;
        self.longest_pass_micros = self.longest_pass_micros.max(micros);
    }

    /// A message reached `fanout` waiting clients of `room` in `took`.
    pub fn broadcast_done(&mut self, room: &str, fanout: u64, took: Duration, at_ms: u64) {
        self.fanout_seconds.observe(took);
        if self.broadcasts.len() == RECENT_BROADCASTS {
            self.broadcasts.pop_front();
        }
        self.broadcasts.push_back(Broadcast {
            room: room.into(),
            fanout,
            micros: took.as_micros().min(u64::MAX as u128) as u64,
            at_ms,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_that_holds_them() {
        let mut histogram = Histogram::default();
        histogram.observe(Duration::from_micros(10));
        histogram.observe(Duration::from_micros(11));
        histogram.observe(Duration::from_secs(3));
        assert_eq!(histogram.counts[0], 1, "le 10 µs holds 10 µs");
        assert_eq!(histogram.counts[1], 1, "11 µs is in le 25 µs");
        assert_eq!(
            histogram.counts[BUCKET_BOUNDS_MICROS.len()],
            1,
            "above every bound"
        );
        assert_eq!(histogram.count(), 3);
        assert_eq!(histogram.sum_micros, 3_000_021);
    }

    #[test]
    fn the_x_ray_keeps_the_last_few_broadcasts() {
        let mut metrics = LoopMetrics::default();
        for i in 0..RECENT_BROADCASTS as u64 + 3 {
            metrics.broadcast_done("r", i, Duration::from_micros(i), i);
        }
        assert_eq!(metrics.broadcasts.len(), RECENT_BROADCASTS);
        assert_eq!(
            metrics.broadcasts.back().unwrap().fanout,
            RECENT_BROADCASTS as u64 + 2
        );
        assert_eq!(metrics.fanout_seconds.count(), RECENT_BROADCASTS as u64 + 3);
        metrics.pass_done(5, Duration::from_millis(2));
        metrics.pass_done(1, Duration::from_millis(1));
        assert_eq!((metrics.passes, metrics.events), (2, 6));
        assert_eq!(metrics.longest_pass_micros, 2000);
    }
}
