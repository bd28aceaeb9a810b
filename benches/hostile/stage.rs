//! What every phase shares: a fresh server with the phase's flags, the probes and the RSS
//! sampler running against it from start to end, named windows of time, and at the end
//! each window's figures. A phase only says when its windows begin and end and adds notes;
//! how a window is measured lives here.

use crate::args::{Phase, Sizes};
use crate::dist::round2;
use crate::http;
use crate::probe::{Probes, Seen};
use crate::rss::{RssSampler, RssSeen};
use crate::server::{Launch, Output, Server};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The server's `--poll-timeout` in every phase: short, so that names made by polls
/// expire within the run (the presence window is this plus the server's 5 s grace). A
/// phase that needs longer (f) passes its own after it: the server takes the last of a
/// repeated flag.
pub const POLL_TIMEOUT_SECS: u64 = 2;

/// Flags every phase's server gets (then `--poll-timeout`, then the phase's own).
/// The per-client post limits are lifted: every client here (probe and attackers) shares
/// 127.0.0.1, and the question is what the loop does with what reaches it. With the
/// defaults, the pipelining flood's posts past the 20th would be answered 429 instead.
const COMMON_FLAGS: &[&str] = &[
    "--no-www",
    "--log-level",
    "warn",
    "--post-rate",
    "1000000",
    "--post-burst",
    "1000000",
];

/// Longest a phase waits, after its last window, for the probes' requests sent in it to
/// be answered: a frozen loop answers them late, and those are the samples that matter.
const DRAIN_CAP: Duration = Duration::from_secs(90);

/// After SIGTERM, how long the server gets to exit by itself before SIGKILL.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// Server log lines kept (and echoed) per phase.
const LOG_LINES_KEPT: usize = 20;

/// What every phase needs from the run.
pub struct Ctx {
    /// The server binary.
    pub bin: PathBuf,
    /// Counts and windows.
    pub sizes: Sizes,
    /// The CPU the server is pinned to, if pinning.
    pub server_cpu: Option<usize>,
}

/// One phase in progress.
pub struct Stage {
    /// Which one.
    pub phase: Phase,
    /// Its own fresh server.
    pub server: Server,
    /// The well-behaved client.
    probes: Probes,
    /// The server's RSS, all along.
    rss: RssSampler,
    /// Every flag the server got after `--addr`.
    flags: Vec<String>,
    /// `(name, from, to)`, in order.
    windows: Vec<(&'static str, Instant, Instant)>,
    /// Lines printed under the table.
    notes: Vec<String>,
    /// Figures for the JSON.
    figures: Map<String, Value>,
    /// The phase's own targets beside the latency one: (met, what).
    targets: Vec<(bool, String)>,
    /// The window end [`settle`](Stage::settle) last waited for.
    settled: Option<Instant>,
}

/// One window's figures.
pub struct WindowResult {
    /// Its name ("baseline", "flood", ...).
    pub name: &'static str,
    /// How long it lasted.
    pub seconds: f64,
    /// What the probes saw of requests sent in it.
    pub seen: Seen,
    /// The server's RSS over it.
    pub rss: RssSeen,
}

/// One phase's results.
pub struct PhaseResult {
    /// Which one.
    pub phase: Phase,
    /// The server's flags after `--addr`.
    pub flags: Vec<String>,
    /// Its windows, in order.
    pub windows: Vec<WindowResult>,
    /// Lines for under the table.
    pub notes: Vec<String>,
    /// Figures for the JSON.
    pub figures: Map<String, Value>,
    /// The phase's own targets beside the latency one: (met, what), shown with PASS or
    /// MISS and never asserted.
    pub targets: Vec<(bool, String)>,
    /// What the server logged.
    pub server_log: Vec<String>,
    /// How the server ended after SIGTERM.
    pub exit: String,
}

/// Echoes a server log line as it arrives (it logs warnings only).
fn echo_server_line(line: &str) {
    say!("server: {line}");
}

impl Stage {
    /// Starts a fresh server with the common flags and `flags`, and the probes against it.
    pub fn start(ctx: &Ctx, phase: Phase, flags: &[&str]) -> Result<Stage, String> {
        let poll_timeout = POLL_TIMEOUT_SECS.to_string();
        let all: Vec<&str> = COMMON_FLAGS
            .iter()
            .copied()
            .chain(["--poll-timeout", &poll_timeout])
            .chain(flags.iter().copied())
            .collect();
        let server = Server::start(Launch {
            bin: &ctx.bin,
            args: &all,
            cpu: ctx.server_cpu,
            output: Output::Collect {
                keep: LOG_LINES_KEPT,
                echo: echo_server_line,
            },
        })
        .map_err(|e| format!("cannot start the server: {e}"))?;
        say!(
            "phase {} ({}): server pid {} on {}: {}",
            phase.letter(),
            phase.title(),
            server.pid(),
            server.addr(),
            all.join(" ")
        );
        let rss = RssSampler::start(server.pid()).map_err(|e| format!("RSS: {e}"))?;
        let probes = Probes::start(server.addr()).map_err(|e| format!("probes: {e}"))?;
        Ok(Stage {
            phase,
            server,
            probes,
            rss,
            flags: all.iter().map(|s| s.to_string()).collect(),
            windows: Vec::new(),
            notes: Vec::new(),
            figures: Map::new(),
            targets: Vec::new(),
            settled: None,
        })
    }

    /// A window of `length` in which the bench only measures.
    pub fn quiet(&mut self, name: &'static str, length: Duration) -> (Instant, Instant) {
        let from = Instant::now();
        crate::sleep_until(from + length);
        let to = Instant::now();
        self.window(name, from, to);
        (from, to)
    }

    /// Names the window `from..to`.
    pub fn window(&mut self, name: &'static str, from: Instant, to: Instant) {
        self.windows.push((name, from, to));
        let seen = self.probes.seen(from, to);
        say!(
            "phase {} {name}: {:.1} s, round trip p99 {:.1} ms max {:.1} ms so far",
            self.phase.letter(),
            (to - from).as_secs_f64(),
            seen.rtt.p99_ms,
            seen.rtt.max_ms
        );
    }

    /// A line for under the table (also printed as progress).
    pub fn note(&mut self, line: String) {
        say!("phase {}: {line}", self.phase.letter());
        self.notes.push(line);
    }

    /// A figure for the JSON.
    pub fn figure(&mut self, name: &str, value: Value) {
        self.figures.insert(name.to_owned(), value);
    }

    /// A target of the phase's own, met or not, for the table's targets (reported, never
    /// asserted).
    pub fn target(&mut self, met: bool, what: String) {
        say!(
            "phase {}: {} {what}",
            self.phase.letter(),
            if met { "PASS" } else { "MISS" }
        );
        self.targets.push((met, what));
    }

    /// What the probes saw of requests sent in `from..to` so far (all of it once
    /// [`settle`](Stage::settle) has waited past `to`).
    pub fn seen(&self, from: Instant, to: Instant) -> Seen {
        self.probes.seen(from, to)
    }

    /// The server's RSS over `from..to`.
    pub fn rss(&self, from: Instant, to: Instant) -> RssSeen {
        self.rss.seen(from, to)
    }

    /// `/stats` now (answered by the loop, so it waits out a freeze).
    pub fn stats(&self) -> Result<Value, String> {
        http::stats(self.server.addr()).map_err(|e| format!("/stats: {e}"))
    }

    /// Waits until `/stats` says at least `n` streams are open.
    pub fn wait_streams(&self, n: u64, cap: Duration) -> Result<(), String> {
        let deadline = Instant::now() + cap;
        loop {
            let stats = self.stats()?;
            if http::counter(&stats, "streams") >= n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "only {} of {n} streams open after {cap:?}",
                    http::counter(&stats, "streams")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (up to [`DRAIN_CAP`]) until the probes have finished a request sent after
    /// the last window, so every window has all the samples it will ever get.
    pub fn settle(&mut self) {
        let last = self.windows.last().map_or(Instant::now(), |w| w.2);
        if self.settled == Some(last) {
            return;
        }
        self.settled = Some(last);
        if !self.probes.wait_past(last, DRAIN_CAP) {
            self.note(format!(
                "the probes had no answer to a request sent after the last window within {} s",
                DRAIN_CAP.as_secs()
            ));
        }
    }

    /// Ends the phase: waits for the probes' late answers, computes every window, stops
    /// the probes and the server.
    pub fn finish(mut self) -> PhaseResult {
        self.settle();
        for error in self.probes.first_errors() {
            self.notes.push(format!("probe error: {error}"));
        }
        let windows = self
            .windows
            .iter()
            .map(|&(name, from, to)| WindowResult {
                name,
                seconds: (to - from).as_secs_f64(),
                seen: self.probes.seen(from, to),
                rss: self.rss.seen(from, to),
            })
            .collect();
        self.probes.stop();
        let exit = match self.server.terminate(EXIT_GRACE) {
            Some(status) => status.to_string(),
            None => "did not exit after SIGTERM, killed".into(),
        };
        PhaseResult {
            phase: self.phase,
            flags: self.flags,
            windows,
            notes: self.notes,
            figures: self.figures,
            targets: self.targets,
            server_log: self.server.log_lines(),
            exit,
        }
    }
}

impl WindowResult {
    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "window": self.name,
            "seconds": round2(self.seconds),
            "round_trip": self.seen.rtt.to_json(),
            "round_trip_errors": self.seen.rtt_errors,
            "delivery": self.seen.delivery.to_json(),
            "delivery_errors": self.seen.delivery_errors,
            "undelivered": self.seen.undelivered,
            "rss_last_bytes": self.rss.last,
            "rss_peak_bytes": self.rss.peak,
        })
    }
}
