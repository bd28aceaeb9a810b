//! Samples reduced to the numbers the reports print, and how they print them. Percentiles are nearest-rank: p99 of
//! 1,000 samples is the 990th smallest, so every value reported was really measured.

use serde_json::{json, Value};
use std::time::Duration;

/// Summary of a set of durations, in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dist {
    /// Number of samples; zero means the other fields mean nothing.
    pub count: usize,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest sample.
    pub max_us: f64,
    /// Arithmetic mean, for throughput arithmetic rather than for reading.
    pub mean_us: f64,
}

impl Dist {
    /// Summarises `samples`, sorting them in place.
    pub fn of(samples: &mut [Duration]) -> Dist {
        if samples.is_empty() {
            return Dist::default();
        }
        samples.sort_unstable();
        let total: Duration = samples.iter().sum();
        Dist {
            count: samples.len(),
            p50_us: us(percentile(samples, 0.50)),
            p99_us: us(percentile(samples, 0.99)),
            max_us: us(samples[samples.len() - 1]),
            mean_us: us(total) / samples.len() as f64,
        }
    }

    /// The summary as a JSON object (microseconds).
    pub fn to_json(self) -> Value {
        json!({
            "count": self.count,
            "p50_us": round2(self.p50_us),
            "p99_us": round2(self.p99_us),
            "max_us": round2(self.max_us),
            "mean_us": round2(self.mean_us),
        })
    }
}

/// The nearest-rank `q` quantile of `sorted` (ascending, non-empty).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    debug_assert!(!sorted.is_empty() && (0.0..=1.0).contains(&q));
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `values` (upper median for an even count), sorting them in place.
pub fn median(values: &mut [Duration]) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(values[values.len() / 2])
}

/// At most `points` (latency µs, fraction ≤) pairs tracing the empirical CDF of `sorted`,
/// enough to draw it and small enough to keep in the JSON.
pub fn cdf(sorted: &[Duration], points: usize) -> Vec<(f64, f64)> {
    if sorted.is_empty() || points == 0 {
        return Vec::new();
    }
    let n = sorted.len();
    let step = n.div_ceil(points).max(1);
    let mut out: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (us(sorted[i]), (i + 1) as f64 / n as f64))
        .collect();
    if out.last().map(|&(_, f)| f) != Some(1.0) {
        out.push((us(sorted[n - 1]), 1.0));
    }
    out
}

/// A duration in microseconds.
pub fn us(duration: Duration) -> f64 {
    duration.as_nanos() as f64 / 1_000.0
}

/// Two decimals are plenty for microseconds and keep the JSON readable.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Microseconds as milliseconds: two decimals, none from 100 ms up.
pub fn ms(us: f64) -> String {
    if us >= 100_000.0 {
        format!("{:.0}", us / 1e3)
    } else {
        format!("{:.2}", us / 1e3)
    }
}

/// A rate or count with thousands separators: 1,234,567.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// One target of an issue: what was asked, what was measured, and whether it was met.
pub struct Check {
    /// The target, in words.
    pub goal: String,
    /// What was measured.
    pub value: String,
    /// `None` when the run did not measure it.
    pub pass: Option<bool>,
}

/// The targets as a report section: PASS, MISS or ---- before each goal (padded to
/// `width`) and its value.
pub fn targets(checks: &[Check], width: usize) -> String {
    let mut out = String::from("\nTargets (reported, not enforced)\n");
    for c in checks {
        let verdict = match c.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "----",
        };
        out.push_str(&format!("  {verdict}  {:<width$} {}\n", c.goal, c.value));
    }
    out
}

/// The targets as JSON.
pub fn targets_json(checks: Vec<Check>) -> Vec<Value> {
    checks
        .into_iter()
        .map(|c| json!({"goal": c.goal, "value": c.value, "pass": c.pass}))
        .collect()
}
