//! The results of a run, two ways: the table printed on stdout (one row per window, the
//! target beside each p99 with PASS or MISS, then what each attack got) and
//! `hostile.json`. The target is never asserted: a shared, noisy two-core machine makes
//! any single run a sample, not a verdict.

use crate::args::Options;
use crate::dist::{round2, Dist};
use crate::probe::{DELIVERY_EVERY, RTT_EVERY};
use crate::stage::PhaseResult;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;

/// The well-behaved client's target: round trip and delivery p99 within this, whatever
/// the attack.
pub const TARGET_P99_MS: f64 = 50.0;

/// Everything a run produced.
pub struct Run<'a> {
    /// The command line.
    pub options: &'a Options,
    /// Where it ran.
    pub machine: Value,
    /// The server binary.
    pub bin: String,
    /// (server CPU, bench CPU) when pinned.
    pub placement: Option<(usize, usize)>,
    /// Each phase asked for: its results, or why it could not run.
    pub phases: Vec<Result<PhaseResult, (char, String)>>,
    /// The whole run, seconds.
    pub seconds: f64,
}

/// PASS, MISS, or `----` when nothing was measured.
fn verdict(dist: &Dist) -> &'static str {
    if dist.raw == 0 {
        "----"
    } else if dist.p99_ms <= TARGET_P99_MS {
        "PASS"
    } else {
        "MISS"
    }
}

/// The text printed at the end of a run.
pub fn table(run: &Run<'_>) -> String {
    let mut out = String::new();
    let m = &run.machine;
    let _ = writeln!(
        out,
        "comet-chat hostile-client benchmark, {}{}",
        m["date"].as_str().unwrap_or("?"),
        if run.options.smoke {
            " (smoke run: small counts)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "machine: {} CPUs ({}), kernel {}, load average at start {}",
        m["nproc"],
        m["cpu"].as_str().unwrap_or("?"),
        m["kernel"].as_str().unwrap_or("?"),
        m["loadavg"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "server: {} started fresh for each phase; {}",
        run.bin,
        match run.placement {
            Some((server, bench)) => format!(
                "pinned to CPU {server}, the bench to CPU {bench} (attackers and watchers at nice 10)"
            ),
            None => "not pinned".into(),
        }
    );
    let _ = writeln!(
        out,
        "well-behaved client, in room calm: round trip = GET /rooms/calm/presence every {} ms \
         on one keep-alive connection;\n  delivery = POST /rooms/calm/messages every {} ms -> \
         its frame on the client's own GET /rooms/calm/events. Target: p99 <= {TARGET_P99_MS} ms.",
        RTT_EVERY.as_millis(),
        DELIVERY_EVERY.as_millis()
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "ph window        secs | round trip: n  p50 ms   p99 ms    max ms target | \
         delivery: n  p50 ms   p99 ms    max ms target | errors | RSS peak"
    );
    for phase in run.phases.iter().flatten() {
        for w in &phase.windows {
            let (r, d) = (&w.seen.rtt, &w.seen.delivery);
            let errors = w.seen.rtt_errors + w.seen.delivery_errors + w.seen.undelivered;
            let _ = writeln!(
                out,
                "{}  {:<12} {:>5.1} | {:>13} {:>7.2} {:>8.1} {:>9.1} {:>6} | {:>11} {:>7.2} {:>8.1} \
                 {:>9.1} {:>6} | {:>6} | {:>6.1} MiB",
                phase.phase.letter(),
                w.name,
                w.seconds,
                r.raw,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                verdict(r),
                d.raw,
                d.p50_ms,
                d.p99_ms,
                d.max_ms,
                verdict(d),
                errors,
                w.rss.peak as f64 / (1024.0 * 1024.0)
            );
        }
    }
    let _ = writeln!(
        out,
        "n = requests really sent in the window. A request that waited L ms also stands for \
         the requests its client\ncould not send meanwhile (one per interval, waiting L - {0} \
         ms, L - {1} ms, ...: coordinated omission), each\ncounted in the window it would have \
         been sent in, so a frozen loop shows in p99 and in every window it\nspans, not only \
         in one max. errors = failed or timed-out requests + posts never delivered.",
        RTT_EVERY.as_millis(),
        2 * RTT_EVERY.as_millis()
    );
    for phase in &run.phases {
        let _ = writeln!(out);
        match phase {
            Ok(p) => {
                let _ = writeln!(
                    out,
                    "{}  {}: server {}",
                    p.phase.letter(),
                    p.phase.title(),
                    p.flags.join(" ")
                );
                for note in &p.notes {
                    let _ = writeln!(out, "   {note}");
                }
                for line in p.server_log.iter().take(3) {
                    let _ = writeln!(out, "   server log: {line}");
                }
                let _ = writeln!(out, "   server after SIGTERM: {}", p.exit);
            }
            Err((letter, why)) => {
                let _ = writeln!(out, "{letter}  did not run: {why}");
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Targets (reported, not enforced)");
    for phase in run.phases.iter().flatten() {
        for w in phase.windows.iter().filter(|w| w.name != "baseline") {
            let (r, d) = (&w.seen.rtt, &w.seen.delivery);
            let _ = writeln!(
                out,
                "  {}  {} {:<12} round trip p99 <= {TARGET_P99_MS} ms: {:.1} ms; {}  delivery: {:.1} ms",
                verdict(r),
                phase.phase.letter(),
                w.name,
                r.p99_ms,
                verdict(d),
                d.p99_ms
            );
        }
        for (met, what) in &phase.targets {
            let verdict = if *met { "PASS" } else { "MISS" };
            let _ = writeln!(out, "  {verdict}  {} {what}", phase.phase.letter());
        }
    }
    let _ = writeln!(out, "run took {:.0} s", run.seconds);
    out
}

/// `hostile.json`.
pub fn json(run: &Run<'_>) -> Value {
    let phases: Vec<Value> = run
        .phases
        .iter()
        .map(|phase| match phase {
            Ok(p) => json!({
                "phase": p.phase.letter().to_string(),
                "title": p.phase.title(),
                "server_flags": p.flags,
                "windows": p.windows.iter().map(|w| {
                    let mut v = w.to_json();
                    v["round_trip_target"] = verdict(&w.seen.rtt).into();
                    v["delivery_target"] = verdict(&w.seen.delivery).into();
                    v
                }).collect::<Vec<_>>(),
                "figures": p.figures,
                "targets": p.targets.iter().map(|(met, what)| json!({
                    "target": what,
                    "verdict": if *met { "PASS" } else { "MISS" },
                })).collect::<Vec<_>>(),
                "notes": p.notes,
                "server_log": p.server_log,
                "server_exit": p.exit,
            }),
            Err((letter, why)) => json!({ "phase": letter.to_string(), "error": why }),
        })
        .collect();
    json!({
        "machine": run.machine,
        "smoke": run.options.smoke,
        "server_bin": run.bin,
        "placement": run.placement.map(|(s, b)| json!({"server_cpu": s, "bench_cpu": b})),
        "probe": {
            "room": "calm",
            "round_trip_every_ms": RTT_EVERY.as_millis() as u64,
            "delivery_every_ms": DELIVERY_EVERY.as_millis() as u64,
            "coordinated_omission_corrected": true,
        },
        "target_p99_ms": TARGET_P99_MS,
        "sizes": run.options.sizes.to_json(),
        "phases": phases,
        "seconds": round2(run.seconds),
    })
}

/// Writes `hostile.json` into `dir`.
pub fn write(run: &Run<'_>, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("hostile.json");
    let text = serde_json::to_string_pretty(&json(run)).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}
