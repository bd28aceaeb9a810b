//! Latency samples reduced to p50 / p99 / max, honestly.
//!
//! The probe sends one request at a time, every [`crate::probe::RTT_EVERY`]. When the
//! server's loop freezes for 18 s, the probe's request waits 18 s — one sample — and the
//! 1,800 requests a client on that schedule would have sent meanwhile are never sent, so
//! one slow sample among a thousand fast ones leaves p99 looking fine ("coordinated
//! omission"). Each sample slower than the interval therefore also stands for the requests
//! that should have gone out while it waited: one every interval after it was sent, each
//! waiting what was left of the freeze (`L - interval`, `L - 2 x interval`, ..., as
//! HdrHistogram's `recordValueWithExpectedInterval` does), and each counted in the window
//! it would have been sent in. Percentiles are nearest-rank over all of them; `raw` says
//! how many were really measured.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Summary of a window's samples, in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dist {
    /// Samples really measured; zero means the other fields mean nothing.
    pub raw: usize,
    /// Samples after the correction above.
    pub count: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest sample, ms.
    pub max_ms: f64,
}

impl Dist {
    /// Summarises the requests of a probe on a schedule of one every `interval` that were
    /// (or would have been) sent in `from..to`, given every `(sent, latency)` it measured.
    pub fn of(
        samples: &[(Instant, Duration)],
        interval: Duration,
        from: Instant,
        to: Instant,
    ) -> Dist {
        let within = |t: Instant| from <= t && t < to;
        let mut raw = 0;
        let mut all = Vec::new();
        for &(sent, latency) in samples {
            if within(sent) {
                raw += 1;
                all.push(latency);
            }
            // The requests it kept from being sent: one every interval while it waited.
            let mut k = 1;
            while latency >= interval * (k + 1) {
                if within(sent + interval * k) {
                    all.push(latency - interval * k);
                }
                k += 1;
            }
        }
        if all.is_empty() {
            return Dist::default();
        }
        all.sort_unstable();
        Dist {
            raw,
            count: all.len(),
            p50_ms: ms(percentile(&all, 0.50)),
            p99_ms: ms(percentile(&all, 0.99)),
            max_ms: ms(all[all.len() - 1]),
        }
    }

    /// The summary as a JSON object.
    pub fn to_json(self) -> Value {
        json!({
            "raw_samples": self.raw,
            "corrected_samples": self.count,
            "p50_ms": round2(self.p50_ms),
            "p99_ms": round2(self.p99_ms),
            "max_ms": round2(self.max_ms),
        })
    }
}

/// The nearest-rank `q` quantile of `sorted` (ascending, non-empty).
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A duration in milliseconds.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// Two decimals are plenty for milliseconds and keep the JSON readable.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
