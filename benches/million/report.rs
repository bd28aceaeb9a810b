//! The million run, three ways: the table printed at the end (`million.txt`),
//! `million.json`, and `million.svg` (memory per client and fan-out time against clients
//! held). The targets are printed PASS/MISS beside the figures, never asserted.

use crate::dist::{self, Check};
use crate::scale::{median, ms};
use crate::svg::{self, Axis, Series};
use crate::{Run, Rung};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// The targets.
const TARGET_HELD: usize = 1_000_000;
const TARGET_SERVER_BYTES_PER_CLIENT: f64 = 256.0;
const TARGET_IDLE_CPU_PCT: f64 = 1.0;
const TARGET_FLOOR_RATIO: f64 = 1.3;

/// Bytes per held client of `bytes`.
fn per_client(bytes: u64, r: &Rung) -> f64 {
    bytes as f64 / r.held.open.max(1) as f64
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / 1_048_576.0)
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn to_ms(d: Duration) -> String {
    ms(d)
}

fn checks(run: &Run<'_>) -> Vec<Check> {
    let top = run.rungs.last();
    let million = run.rungs.iter().find(|r| r.held.n >= TARGET_HELD);
    let at = |r: &Rung| format!("N={}", r.held.n);
    let mut out = vec![Check {
        goal: "1,000,000 waiting polls held, 0 errors, 0 lost deliveries".into(),
        value: match (million, top) {
            (Some(r), _) => format!(
                "{} parked of {} asked, {} errors ({} lost deliveries)",
                r.held.parked,
                r.held.n,
                r.errors(),
                r.rounds.delivery_errors
            ),
            (None, Some(r)) => format!("not reached: top rung {} ({})", at(r), run.stop.reason),
            (None, None) => "not reached: no rung ran".into(),
        },
        pass: million.map(|r| r.held.parked >= TARGET_HELD as u64 && r.errors() == 0),
    }];
    let judged = million.or(top);
    let server = judged.map(|r| per_client(r.memory.workers_rss.1, r));
    out.push(Check {
        goal: format!(
            "server user memory <= {TARGET_SERVER_BYTES_PER_CLIENT} B per waiting client"
        ),
        value: judged.zip(server).map_or("not measured".into(), |(r, b)| {
            format!(
                "{b:.0} B (growth of the workers' summed RSS; anonymous {:.0} B; {})",
                per_client(r.memory.workers_anon.1, r),
                at(r)
            )
        }),
        pass: server.map(|b| b <= TARGET_SERVER_BYTES_PER_CLIENT),
    });
    let idle = judged.and_then(|r| r.idle.cpu_pct.map(|p| (r, p)));
    out.push(Check {
        goal: format!("idle CPU of all workers <= {TARGET_IDLE_CPU_PCT}% of one core"),
        value: idle.map_or("not measured".into(), |(r, p)| {
            format!(
                "{p:.3}% over {:.0} s ({})",
                r.idle.window.as_secs_f64(),
                at(r)
            )
        }),
        pass: idle.map(|(_, p)| p <= TARGET_IDLE_CPU_PCT),
    });
    let wakeups = judged.and_then(|r| r.idle.switches.map(|s| (r, s)));
    out.push(Check {
        goal: "no wake-ups while nothing is due".into(),
        value: wakeups.map_or("not measured".into(), |(r, s)| {
            format!(
                "{s} context switches of {} workers in {:.0} s ({})",
                run.workers,
                r.idle.window.as_secs_f64(),
                at(r)
            )
        }),
        pass: wakeups.map(|(_, s)| s == 0),
    });
    // Judged against the spread floor: it makes the same writes in a worker's kind of
    // order (to every receiving process, in no order), so on loopback it pays the same
    // wake-up of the receiver a worker pays; the paired floor pays a quarter of it by
    // writing one reader's sockets in a row (docs/results/million-spread-floor-*.txt).
    // The paired ratio is shown beside it.
    let ratio = judged.and_then(|r| r.rounds.spread_ratio().map(|x| (r, x)));
    let shown = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.2}x"));
    out.push(Check {
        goal: format!("one broadcast to all within {TARGET_FLOOR_RATIO}x the kernel floor"),
        value: ratio.map_or("not measured".into(), |(r, x)| {
            format!(
                "{x:.2}x the spread floor (best round {}; paired floor {}, best {}; {})",
                shown(r.rounds.best_spread_ratio()),
                shown(r.rounds.floor_ratio()),
                shown(r.rounds.best_floor_ratio()),
                at(r)
            )
        }),
        pass: ratio.map(|(_, x)| x <= TARGET_FLOOR_RATIO),
    });
    out.push(Check {
        goal: "poll timeouts at the top rung drop no client".into(),
        value: run.timeouts.as_ref().map_or("not measured".into(), |t| {
            format!(
                "{} of {} open at the end, {} failed",
                t.open_after, t.n, t.churned.failed
            )
        }),
        pass: run
            .timeouts
            .as_ref()
            .map(|t| t.open_after == t.n && t.churned.failed == 0),
    });
    out
}

/// The human-readable report.
pub fn table(run: &Run<'_>) -> String {
    let o = run.options;
    let m = &run.machine;
    let mut t = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        t,
        "comet-chat: a million waiting clients on one box ({} run), {}",
        o.mode, m.date
    );
    let _ = writeln!(t, "{}; {} memory", m.line(), gib(run.before.total));
    let _ = writeln!(t, "{}", crate::ehash::describe());
    let _ = writeln!(
        t,
        "server: redis-server + comet-chat --workers {} --redis on one port (127.0.0.1), ladder poll timeout {} s; \
         open files capped at {} per process, so load generators of {} clients each; nothing pinned",
        run.workers,
        o.ladder_poll_timeout,
        run.per_process + crate::args::FD_HEADROOM as usize,
        run.per_process
    );
    let _ = writeln!(
        t,
        "{} broadcasts per rung of {}-byte messages; idle window {} s; kernel floors (paired, spread) at most {} sockets at once each; run took {:.0} s",
        o.rounds,
        o.message_bytes,
        o.idle.as_secs(),
        o.floor_sockets,
        run.elapsed.as_secs_f64()
    );
    if run.sysctls.0.is_empty() {
        let _ = writeln!(t, "sysctls: none changed");
    }
    for (name, old, new) in &run.sysctls.0 {
        let _ = writeln!(
            t,
            "sysctl {name}: {old} -> {new} for the run, restored after"
        );
    }
    for failed in &run.sysctls.1 {
        let _ = writeln!(t, "sysctl not changed: {failed}");
    }

    let _ = writeln!(
        t,
        "\nHolding N waiting polls (rungs add clients; nothing closes between them)"
    );
    let _ = writeln!(
        t,
        "{:>9} {:>9} {:>6} {:>8} {:>10} {:>34} {:>9} {:>12}",
        "N",
        "parked",
        "errors",
        "open s",
        "clients/s",
        "spread over workers (pending)",
        "idle CPU",
        "wake-ups"
    );
    for r in &run.rungs {
        let spread = r.spread.as_ref().map_or("-".into(), |s| {
            let (min, max, over) = s.summary();
            format!("{min}..{max} (max {over:.3}x mean)")
        });
        let _ = writeln!(
            t,
            "{:>9} {:>9} {:>6} {:>8.1} {:>10.0} {:>34} {:>9} {:>12}",
            r.held.n,
            r.held.parked,
            r.errors(),
            r.held.park_time.as_secs_f64(),
            // Clients added in this rung over the time it took.
            (r.held.n as f64 - previous_n(run, r) as f64)
                / r.held.park_time.as_secs_f64().max(1e-9),
            spread,
            r.idle.cpu_pct.map_or("-".into(), |p| format!("{p:.3}%")),
            r.idle.switches.map_or("-".into(), |s| format!(
                "{s} in {:.0} s",
                r.idle.window.as_secs_f64()
            ))
        );
    }
    let _ = writeln!(
        t,
        "idle CPU and wake-ups: all workers together over the idle window (CPU clock; voluntary +\n\
         involuntary context switches from /proc/PID/status), with no request sent at all."
    );

    let _ = writeln!(
        t,
        "\nMemory per waiting client (growth since before the run, / clients held)"
    );
    let _ = writeln!(
        t,
        "{:>9} {:>10} {:>8} {:>11} {:>22} {:>10} {:>12} {:>11} {:>9}",
        "N",
        "box used",
        "box B/cl",
        "workers RSS",
        "server B/cl RSS/PSS/anon",
        "gens B/cl",
        "kernel slab",
        "slab B/sock",
        "TCP bufs"
    );
    for r in &run.rungs {
        let mm = &r.memory;
        let _ = writeln!(
            t,
            "{:>9} {:>10} {:>8.0} {:>11} {:>22} {:>10.0} {:>12} {:>11.0} {:>9}",
            r.held.n,
            gib(mm.box_used),
            per_client(mm.box_used, r),
            mib(mm.workers_rss.0),
            format!(
                "{:.0} / {:.0} / {:.0}",
                per_client(mm.workers_rss.1, r),
                per_client(mm.workers_pss.1, r),
                per_client(mm.workers_anon.1, r)
            ),
            per_client(mm.generators_rss, r),
            gib(mm.slab),
            per_client(mm.slab, r) / 2.0,
            mib(mm.snapshot.tcp_buffers)
        );
    }
    let _ = writeln!(
        t,
        "box used = MemTotal - MemAvailable; server = growth of the workers' RSS (PSS, anonymous)\n\
         summed over all {} workers since they held no client (idle: {} RSS, {} PSS); gens = the\n\
         load generators' RSS; kernel slab = growth of Slab in /proc/meminfo, per socket = / 2 (a\n\
         client is two loopback sockets, the server's and the load generator's); TCP bufs = sockstat\n\
         TCP mem (buffers holding unread data; none while clients wait).",
        run.workers,
        mib(run.workers_idle.0),
        mib(run.workers_idle.1)
    );
    if let Some(r) = run.rungs.last() {
        let caches: Vec<String> = r
            .memory
            .top_caches
            .iter()
            .map(|(name, bytes)| {
                format!(
                    "{name} {:.0} B",
                    *bytes as f64 / (2 * r.held.open.max(1)) as f64
                )
            })
            .collect();
        let _ = writeln!(
            t,
            "What the kernel spends per socket at N={} (slab caches that grew most, per socket): {}",
            r.held.n,
            caches.join(", ")
        );
    }

    let _ = writeln!(
        t,
        "\nOne post -> every waiting poll answered (rounds pooled)"
    );
    let _ = writeln!(
        t,
        "{:>9} {:>8} {:>8} {:>8} {:>9} {:>12} {:>15} {:>9} {:>6} {:>6} {:>9} {:>6} {:>6} {:>9} {:>17} {:>10} {:>8}",
        "N",
        "p50 ms",
        "p99 ms",
        "max ms",
        "to all ms",
        "deliveries/s",
        "floor sockets",
        "floor ms",
        "ratio",
        "best",
        "spread ms",
        "ratio",
        "best",
        "cycle ms",
        "CPU/deliv/floor",
        "spread CPU",
        "post ms"
    );
    for r in &run.rungs {
        let f = &r.rounds;
        let floor = f.floor.as_ref();
        let _ = writeln!(
            t,
            "{:>9} {:>8} {:>8} {:>8} {:>9} {:>12} {:>15} {:>9} {:>6} {:>6} {:>9} {:>6} {:>6} {:>9} {:>17} {:>10} {:>8}",
            r.held.n,
            dist::ms(f.latency.p50_us),
            dist::ms(f.latency.p99_us),
            dist::ms(f.latency.max_us),
            median(&f.lasts).map_or("-".into(), to_ms),
            dist::thousands(f.deliveries_per_sec),
            floor.map_or("-".into(), |fl| format!("{} x {}", fl.sockets, fl.passes)),
            floor
                .and_then(|fl| median(&fl.totals))
                .map_or("-".into(), to_ms),
            f.floor_ratio().map_or("-".into(), |x| format!("{x:.2}x")),
            f.best_floor_ratio()
                .map_or("-".into(), |x| format!("{x:.2}x")),
            f.spread
                .as_ref()
                .and_then(|fl| median(&fl.totals))
                .map_or("-".into(), to_ms),
            f.spread_ratio().map_or("-".into(), |x| format!("{x:.2}x")),
            f.best_spread_ratio()
                .map_or("-".into(), |x| format!("{x:.2}x")),
            median(&f.cycles).map_or("-".into(), to_ms),
            f.cpu_cell(),
            f.spread_cpu_cell(),
            median(&f.acks).map_or("-".into(), to_ms)
        );
    }
    let _ = writeln!(
        t,
        "to all = post -> last delivery (median of rounds); floor = the same answer bytes written to\n\
         as many sockets by plain loops in writer processes (pairs of at most one process's share;\n\
         'S x P' = S sockets, P passes one after another when the box cannot hold a second set of N),\n\
         go -> last answer, passes summed; ratio = to all / floor (medians), best = fastest / fastest.\n\
         cycle = post -> every client answered, polling again and parked again: the full cycle.\n\
         CPU/deliv/floor = CPU of all workers over the post -> last windows per delivery / a floor\n\
         writer's CPU per write; post = post -> 200.\n\
         floor = the paired floor: each writer writes only its own reader's sockets, in that reader's\n\
         connect order. spread = the same writes with every writer holding sockets of every reader\n\
         and writing them in a shuffled order, as a worker writes to every load generator in no\n\
         order; both floors run each round, taking turns to go first; spread CPU = a spread\n\
         writer's CPU per write. The goal line judges the spread floor."
    );

    if let Some(tm) = &run.timeouts {
        let _ = writeln!(
            t,
            "\nThe poll timeout at N={} (workers restarted with --poll-timeout {}; each client polls again\n\
             as soon as its poll times out, as the page does)",
            tm.n, tm.poll_timeout
        );
        let _ = writeln!(
            t,
            "  opened again: {} of {}; over {:.0} s after one timeout period: {:.0} timeouts/s answered \
             (N / poll timeout = {:.0}/s), CPU of all workers {}",
            tm.opened,
            tm.n,
            tm.window.as_secs_f64(),
            tm.timeouts_per_sec,
            tm.n as f64 / tm.poll_timeout as f64,
            tm.cpu_pct.map_or("-".into(), |p| format!("{p:.1}% of one core"))
        );
        let _ = writeln!(
            t,
            "  as the clients saw the whole phase ({:.0} s): {} timeouts ({:.0}/s), {} other answers, \
             {} failed; {} still open at the end; the workers held {} client connections",
            tm.churn_time.as_secs_f64(),
            tm.churned.timeouts,
            tm.churned.timeouts as f64 / tm.churn_time.as_secs_f64().max(1e-9),
            tm.churned.other,
            tm.churned.failed,
            tm.open_after,
            tm.server_connections
        );
        let _ = writeln!(
            t,
            "  (the window's rate counts the workers' own timeout counters; polls opened again over \
             many seconds make the first periods uneven, so the clients' rate over the phase is the \
             steady one)"
        );
        if let Some(e) = &tm.churned.first_error {
            let _ = writeln!(t, "  first problem: {e}");
        }
    }

    let _ = writeln!(t, "\nWhere this box stopped");
    let _ = writeln!(
        t,
        "  top rung: {}; next: {}: {}",
        run.rungs
            .last()
            .map_or("none".into(), |r| r.held.n.to_string()),
        run.stop.next.map_or("-".into(), |n| n.to_string()),
        run.stop.reason
    );
    if let Some(r) = run.rungs.last() {
        let per = per_client(r.memory.box_used, r);
        let room = run
            .before
            .available
            .saturating_sub(crate::MEMORY_RESERVE_BYTES);
        let _ = writeln!(
            t,
            "  memory: at {per:.0} B of box memory per client (N={}), the {} available before \
             the run (less {} kept free) would hold about {} clients",
            r.held.n,
            gib(run.before.available),
            gib(crate::MEMORY_RESERVE_BYTES),
            dist::thousands(room as f64 / per.max(1.0))
        );
    }
    if let Some(after) = &run.after {
        let _ = writeln!(
            t,
            "  after teardown: {} used, {} before the run ({} sockets in use, {} before; slab {}, \
             {} before: socket inodes and dentries the kernel frees lazily)",
            gib(after.used()),
            gib(run.before.used()),
            after.sockets,
            run.before.sockets,
            gib(after.slab),
            gib(run.before.slab)
        );
    }

    t.push_str(&dist::targets(&checks(run), 62));

    let mut notes = run.notes.clone();
    for r in &run.rungs {
        let floor_error = r.rounds.floor.as_ref().and_then(|f| f.first_error.clone());
        let spread_error = r.rounds.spread.as_ref().and_then(|f| f.first_error.clone());
        notes.extend(
            r.rounds
                .notes
                .iter()
                .cloned()
                .chain(r.held.first_error.clone())
                .chain(floor_error.map(|e| format!("floor: {e}")))
                .chain(spread_error.map(|e| format!("spread floor: {e}")))
                .map(|n| format!("N={}: {n}", r.held.n)),
        );
    }
    if !notes.is_empty() {
        let _ = writeln!(t, "\nNotes");
        for note in notes {
            let _ = writeln!(t, "  - {note}");
        }
    }
    t
}

/// The rung before `r` (0 for the first).
fn previous_n(run: &Run<'_>, r: &Rung) -> usize {
    run.rungs
        .iter()
        .take_while(|x| x.held.n < r.held.n)
        .last()
        .map_or(0, |x| x.held.n)
}

fn to_json(run: &Run<'_>) -> Value {
    json!({
        "benchmark": "comet-chat million",
        "mode": run.options.mode,
        "machine": run.machine.to_json(),
        "memory_total_bytes": run.before.total,
        "workers": run.workers,
        "clients_per_load_generator": run.per_process,
        "sysctls_changed": run.sysctls.0.iter().map(|(n, old, new)| json!({"name": n, "old": old, "new": new})).collect::<Vec<_>>(),
        "rungs": run.rungs.iter().map(|r| json!({
            "n": r.held.n,
            "open": r.held.open,
            "parked": r.held.parked,
            "errors": r.errors(),
            "connect_errors": r.held.failed,
            "open_and_park_secs": dist::round2(r.held.park_time.as_secs_f64()),
            "spread": r.spread.as_ref().map(|s| s.per_worker.iter().map(|&(w, p)| json!([w, p])).collect::<Vec<_>>()),
            "memory": {
                "box_used_growth_bytes": r.memory.box_used,
                "box_bytes_per_client": dist::round2(per_client(r.memory.box_used, r)),
                "workers_rss_bytes": r.memory.workers_rss.0,
                "workers_rss_growth_per_client": dist::round2(per_client(r.memory.workers_rss.1, r)),
                "workers_pss_growth_per_client": dist::round2(per_client(r.memory.workers_pss.1, r)),
                "workers_anon_growth_per_client": dist::round2(per_client(r.memory.workers_anon.1, r)),
                "generators_rss_bytes": r.memory.generators_rss,
                "redis_rss_bytes": r.memory.redis_rss,
                "slab_growth_bytes": r.memory.slab,
                "slab_bytes_per_socket": dist::round2(per_client(r.memory.slab, r) / 2.0),
                "tcp_buffer_bytes": r.memory.snapshot.tcp_buffers,
                "sockets_used": r.memory.snapshot.sockets,
                "top_slab_caches": r.memory.top_caches.iter().map(|(n, b)| json!({"cache": n, "growth_bytes": b})).collect::<Vec<_>>(),
            },
            "idle": r.idle.to_json(),
            "broadcasts": r.rounds.to_json(),
        })).collect::<Vec<_>>(),
        "timeouts": run.timeouts.as_ref().map(|t| json!({
            "n": t.n,
            "poll_timeout_secs": t.poll_timeout,
            "opened": t.opened,
            "window_secs": dist::round2(t.window.as_secs_f64()),
            "timeouts_per_sec": t.timeouts_per_sec.round(),
            "workers_cpu_pct": t.cpu_pct.map(dist::round2),
            "client_timeouts": t.churned.timeouts,
            "client_other_answers": t.churned.other,
            "client_failed": t.churned.failed,
            "client_phase_secs": dist::round2(t.churn_time.as_secs_f64()),
            "open_after": t.open_after,
            "server_connections_after": t.server_connections,
        })),
        "stop": {"next": run.stop.next, "reason": run.stop.reason},
        "box_used_after_bytes": run.after.as_ref().map(|a| a.used()),
        "box_used_before_bytes": run.before.used(),
        "targets": dist::targets_json(checks(run)),
        "notes": run.notes,
        "elapsed_secs": dist::round2(run.elapsed.as_secs_f64()),
    })
}

/// Writes million.txt, million.json and million.svg into `dir`.
pub fn write_files(run: &Run<'_>, table: &str, dir: &Path) -> Result<(), String> {
    let json = serde_json::to_string_pretty(&to_json(run)).map_err(|e| e.to_string())?;
    crate::host::write_results(
        dir,
        &[
            ("million.txt", table.to_owned()),
            ("million.json", json + "\n"),
            ("million.svg", plot(run)),
        ],
    )
}

/// Two charts side by side: memory per client, and fan-out time beside the floor, both
/// against clients held.
fn plot(run: &Run<'_>) -> String {
    let x_max = run.rungs.iter().map(|r| r.held.n).max().unwrap_or(1) as f64;
    let x = Axis {
        label: "waiting clients held".into(),
        min: 0.0,
        max: x_max * 1.05,
        log: false,
        kilo: true,
    };
    let points = |f: &dyn Fn(&Rung) -> Option<f64>| -> Vec<(f64, f64)> {
        run.rungs
            .iter()
            .filter_map(|r| Some((r.held.n as f64, f(r)?)))
            .collect()
    };
    let memory = [
        (
            "whole box",
            0,
            (|r: &Rung| Some(per_client(r.memory.box_used, r))) as fn(&Rung) -> Option<f64>,
        ),
        ("kernel slab (2 sockets)", 1, |r: &Rung| {
            Some(per_client(r.memory.slab, r))
        }),
        ("load generators", 2, |r: &Rung| {
            Some(per_client(r.memory.generators_rss, r))
        }),
        ("server (all workers, RSS)", 3, |r: &Rung| {
            Some(per_client(r.memory.workers_rss.1, r))
        }),
    ];
    let memory_series: Vec<Series> = memory
        .iter()
        .map(|(label, color, f)| Series {
            label: (*label).into(),
            color: svg::PALETTE[*color],
            dashed: false,
            markers: true,
            points: points(f),
        })
        .chain([Series {
            label: "target: server 256 B".into(),
            color: svg::PALETTE[3],
            dashed: true,
            markers: false,
            points: vec![
                (0.0, TARGET_SERVER_BYTES_PER_CLIENT),
                (x_max * 1.05, TARGET_SERVER_BYTES_PER_CLIENT),
            ],
        }])
        .collect();
    let y_mem_max = memory_series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let left = svg::chart(
        "Memory per waiting client",
        &x,
        &Axis {
            label: "bytes per client".into(),
            min: 0.0,
            max: y_mem_max * 1.1,
            log: false,
            kilo: false,
        },
        &memory_series,
    );
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
    let fanout_series = vec![
        Series {
            label: "post -> all answered".into(),
            color: svg::PALETTE[0],
            dashed: false,
            markers: true,
            points: points(&|r: &Rung| secs(median(&r.rounds.lasts))),
        },
        Series {
            label: "kernel floor".into(),
            color: svg::PALETTE[0],
            dashed: true,
            markers: true,
            points: points(&|r: &Rung| {
                secs(r.rounds.floor.as_ref().and_then(|f| median(&f.totals)))
            }),
        },
        Series {
            label: "spread floor".into(),
            color: svg::PALETTE[1],
            dashed: true,
            markers: true,
            points: points(&|r: &Rung| {
                secs(r.rounds.spread.as_ref().and_then(|f| median(&f.totals)))
            }),
        },
        Series {
            label: "p50 delivery".into(),
            color: svg::PALETTE[2],
            dashed: false,
            markers: true,
            points: points(&|r: &Rung| Some(r.rounds.latency.p50_us / 1e3)),
        },
    ];
    let y_ms_max = fanout_series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let right = svg::chart(
        "One post to every waiting client",
        &x,
        &Axis {
            label: "milliseconds (median of rounds)".into(),
            min: 0.0,
            max: y_ms_max * 1.1,
            log: false,
            kilo: false,
        },
        &fanout_series,
    );
    side_by_side(&left, &right)
}

/// Two SVG documents of [`svg::chart`]'s size as one, the second to the right.
fn side_by_side(left: &str, right: &str) -> String {
    let width = 760;
    let height = 460;
    let inner = |doc: &str, x: u32| doc.replacen("<svg ", &format!("<svg x=\"{x}\" y=\"0\" "), 1);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\">\n{}{}</svg>\n",
        inner(left, 0),
        inner(right, width),
        w = 2 * width
    )
}
