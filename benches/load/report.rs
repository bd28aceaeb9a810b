//! The results of a run, three ways: the table printed at the end (and saved as
//! `table.txt`), `load.json` for tools, and the two SVG plots. The targets are
//! printed beside the figures with PASS or MISS; they are never asserted, because a shared,
//! noisy two-core machine makes any single run a sample, not a verdict.

use crate::args::Options;
use crate::dist::{self, ms, thousands, Check};
use crate::host::{Limits, Machine};
use crate::ladder::{median, RungResult};
use crate::single::Single;
use crate::svg::{self, Axis, Series};
use crate::transport::{self, Transport};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// The targets.
const TARGET_HELD: u64 = 19_500;
const TARGET_RSS_PER_POLL_BYTES: f64 = 256.0;
const TARGET_IDLE_RSS_BYTES: u64 = 2 * 1024 * 1024;
/// "Idle CPU ≈ 0", made checkable: at most this share of one core while holding N.
const TARGET_IDLE_CPU_PCT: f64 = 0.5;
const TARGET_FLOOR_RATIO: f64 = 1.15;
const TARGET_CONNECT_P99_US: f64 = 20_000.0;
const TARGET_SINGLE_P50_US: f64 = 100.0;
/// Issue 18: what a WebSocket client may cost the server, as a poll may.
const TARGET_WS_RSS_PER_CLIENT_BYTES: f64 = 256.0;

/// Points kept per CDF in the JSON and the plot.
const CDF_POINTS: usize = 200;

/// Everything a run produced.
pub struct Run<'a> {
    /// Where it ran.
    pub machine: Machine,
    /// (server CPU, load generator CPU) when pinned.
    pub placement: Option<(usize, usize)>,
    /// Share of all CPU time the hypervisor stole during the run.
    pub steal_pct: Option<f64>,
    /// The benchmark's open-files limits.
    pub limits: Limits,
    /// The server's soft open-files limit, from `/stats`.
    pub server_limit: Option<u64>,
    /// The ladder asked for.
    pub requested_ladder: Vec<usize>,
    /// The ladder after clamping.
    pub ladder: Vec<usize>,
    /// What clamping changed, if anything.
    pub clamp_note: Option<String>,
    /// Descriptors kept free below the limit.
    pub fd_headroom: u64,
    /// The command line.
    pub options: &'a Options,
    /// The one-subscriber phase, placed like the rest of the run.
    pub single: Option<Single>,
    /// The one-subscriber phase where the scheduler placed both processes (when the rest
    /// of the run is pinned).
    pub single_unpinned: Option<Single>,
    /// The rungs that ran.
    pub rungs: Vec<RungResult>,
    /// Run-level problems (skipped rungs).
    pub notes: Vec<String>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

/// The transport the ladder's targets are judged on: the poll when it ran (the issue's
/// targets were set for it), else the one transport asked for.
fn primary(run: &Run<'_>) -> Transport {
    let ran = &run.options.transports;
    if ran.contains(&Transport::Poll) {
        Transport::Poll
    } else {
        ran.first().copied().unwrap_or(Transport::Poll)
    }
}

/// What one of `transport`'s clients is called in the report.
fn client_word(transport: Transport) -> &'static str {
    match transport {
        Transport::Poll => "waiting poll",
        Transport::Sse => "SSE stream",
        Transport::Ws => "WebSocket",
    }
}

fn checks(run: &Run<'_>) -> Vec<Check> {
    let main = primary(run);
    let word = client_word(main);
    let top = run
        .rungs
        .iter()
        .filter(|r| r.transport == main)
        .max_by_key(|r| r.n);
    let top_n = top.map_or(0, |r| r.n);
    let mut out = Vec::new();

    let asked_top = run
        .requested_ladder
        .iter()
        .any(|&n| n as u64 >= TARGET_HELD);
    out.push(match top {
        Some(r) if asked_top => Check {
            goal: format!(
                "{} {word}s held with 0 errors",
                thousands(TARGET_HELD as f64)
            ),
            value: format!("{} held, {} errors (N={})", r.held, r.errors.total(), r.n),
            pass: Some(r.held >= TARGET_HELD && r.errors.total() == 0),
        },
        _ => Check {
            goal: format!(
                "{} {word}s held with 0 errors",
                thousands(TARGET_HELD as f64)
            ),
            value: format!("not measured: top rung N={top_n}"),
            pass: None,
        },
    });

    let per_poll = top.and_then(RungResult::rss_per_poll);
    out.push(Check {
        goal: format!("RSS per {word} <= {TARGET_RSS_PER_POLL_BYTES} B"),
        value: per_poll.map_or("not measured".into(), |b| format!("{b:.0} B (N={top_n})")),
        pass: per_poll.map(|b| b <= TARGET_RSS_PER_POLL_BYTES),
    });

    let idle = run.rungs.iter().find(|r| r.rss_before.is_some());
    let idle_rss = idle.and_then(|r| r.rss_before);
    let anon = idle
        .and_then(|r| r.rss_anon_before)
        .map_or(String::new(), |b| {
            format!(", {} KiB of it anonymous", b / 1024)
        });
    out.push(Check {
        goal: "idle RSS of the whole server <= 2 MiB".into(),
        value: idle_rss.map_or("not measured".into(), |b| {
            let server = if run.options.attach.is_some() {
                "attached server"
            } else {
                "fresh server"
            };
            format!("{:.2} MiB VmRSS ({server}{anon})", b as f64 / 1048576.0)
        }),
        pass: idle_rss.map(|b| b <= TARGET_IDLE_RSS_BYTES),
    });

    let idle_cpu = run
        .rungs
        .iter()
        .filter_map(|r| r.idle.as_ref())
        .map(|i| i.cpu_pct.unwrap_or(i.cpu_pct_ticks))
        .fold(None, |max: Option<f64>, v| {
            Some(max.map_or(v, |m| m.max(v)))
        });
    out.push(Check {
        goal: format!("idle CPU ~ 0 (<= {TARGET_IDLE_CPU_PCT}% of a core)"),
        value: idle_cpu.map_or("not measured".into(), |v| format!("{v:.3}% (worst rung)")),
        pass: idle_cpu.map(|v| v <= TARGET_IDLE_CPU_PCT),
    });

    let ratio = top.and_then(RungResult::floor_ratio);
    out.push(Check {
        goal: format!("fan-out within {TARGET_FLOOR_RATIO}x of the kernel floor"),
        value: ratio.map_or("not measured".into(), |r| format!("{r:.2}x (N={top_n})")),
        pass: ratio.map(|r| r <= TARGET_FLOOR_RATIO),
    });

    let connect = top.and_then(|r| r.open.as_ref()).map(|o| o.connect.p99_us);
    out.push(Check {
        goal: "burst connect p99 <= 20 ms".into(),
        value: connect.map_or("not measured".into(), |us| {
            format!("{:.2} ms (N={top_n})", us / 1e3)
        }),
        pass: connect.map(|us| us <= TARGET_CONNECT_P99_US),
    });

    let single = run
        .single
        .as_ref()
        .filter(|s| s.latency.count > 0)
        .map(|s| s.latency.p50_us);
    out.push(Check {
        goal: "one-subscriber post->delivery p50 <= 100 us".into(),
        value: single.map_or("not measured".into(), |us| {
            let placed = match (run.placement, run.options.attach) {
                (Some(_), None) => "pinned apart",
                (Some(_), Some(_)) => "client pinned, attached server not",
                (None, _) => "unpinned",
            };
            format!("{us:.1} us ({placed})")
        }),
        pass: single.map(|us| us <= TARGET_SINGLE_P50_US),
    });
    out.extend(ws_checks(run));
    out
}

/// Issue 18's targets for the WebSocket transport, at the top N it ran: its RSS per
/// client, and its deliveries per second against the poll's in the same run.
fn ws_checks(run: &Run<'_>) -> Vec<Check> {
    let at = |t: Transport, n: usize| run.rungs.iter().find(|r| r.transport == t && r.n == n);
    let Some(ws) = run
        .rungs
        .iter()
        .filter(|r| r.transport == Transport::Ws)
        .max_by_key(|r| r.n)
    else {
        return Vec::new();
    };
    let n = ws.n;
    let mut out = Vec::new();
    if primary(run) != Transport::Ws {
        let per_client = ws.rss_per_poll();
        out.push(Check {
            goal: format!("RSS per WebSocket <= {TARGET_WS_RSS_PER_CLIENT_BYTES} B"),
            value: per_client.map_or("not measured".into(), |b| format!("{b:.0} B (N={n})")),
            pass: per_client.map(|b| b <= TARGET_WS_RSS_PER_CLIENT_BYTES),
        });
    }
    let rate = |r: Option<&RungResult>| {
        r.and_then(|r| r.fanout.as_ref())
            .map(|f| f.deliveries_per_sec)
            .filter(|&d| d > 0.0)
    };
    let (ws_rate, poll_rate) = (rate(Some(ws)), rate(at(Transport::Poll, n)));
    out.push(Check {
        goal: "ws deliveries/s >= poll's (same run)".into(),
        value: match (ws_rate, poll_rate) {
            (Some(w), Some(p)) => format!(
                "{} vs {} ({:.2}x, N={n})",
                thousands(w),
                thousands(p),
                w / p
            ),
            _ => "not measured: needs ws and poll at the same N (--transport all)".into(),
        },
        pass: ws_rate.zip(poll_rate).map(|(w, p)| w >= p),
    });
    out
}

/// The transports that ran at `n`, side by side: one column each, the figures as
/// rows. Empty unless more than one transport ran at `n`.
fn side_by_side(run: &Run<'_>, n: usize) -> String {
    let rungs: Vec<&RungResult> = run.rungs.iter().filter(|r| r.n == n).collect();
    if rungs.len() < 2 {
        return String::new();
    }
    let o = run.options;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nTransports side by side at N={n} (one run; each on a fresh server, one after another)"
    );
    let mut row = |label: &str, cell: &dyn Fn(&RungResult) -> String| {
        let _ = write!(t, "{label:<46}");
        for r in &rungs {
            let _ = write!(t, " {:>20}", cell(r));
        }
        t.push('\n');
    };
    row("figure", &|r| r.transport.name().to_owned());
    row("bytes written per delivery", &|r| {
        let text = crate::wire::message("n19500-r0-1234567", o.message_bytes);
        transport::broadcast_bytes(r.transport, &text)
            .len()
            .to_string()
    });
    row("held, errors", &|r| {
        format!("{}, {}", r.held, r.errors.total())
    });
    row("server RSS holding them", &|r| mib(r.rss_held));
    row("RSS per client", &|r| {
        r.rss_per_poll().map_or("-".into(), |b| format!("{b:.0} B"))
    });
    row(&format!("idle CPU ({} s)", o.idle.as_secs()), &|r| {
        r.idle.as_ref().map_or("-".into(), |i| {
            format!("{:.2}%", i.cpu_pct.unwrap_or(i.cpu_pct_ticks))
        })
    });
    row("fan-out post -> every client, p50 / p99", &|r| {
        r.fanout
            .as_ref()
            .filter(|f| f.latency.count > 0)
            .map_or("-".into(), |f| {
                format!("{} / {} ms", ms(f.latency.p50_us), ms(f.latency.p99_us))
            })
    });
    row("fan-out time / kernel floor (median span)", &|r| {
        ratio(r.floor_ratio())
    });
    row("  best span / best floor span", &|r| {
        ratio(r.best_floor_ratio())
    });
    row("deliveries/s (post -> last delivery)", &|r| {
        r.fanout
            .as_ref()
            .map_or("-".into(), |f| thousands(f.deliveries_per_sec))
    });
    row("deliveries/s sustained (N / full cycle)", &|r| {
        r.fanout
            .as_ref()
            .and_then(|f| median(&f.cycles))
            .map_or("-".into(), |c| thousands(r.held as f64 / c.as_secs_f64()))
    });
    row("server CPU per delivery (floor: per write)", &|r| {
        let server = r.fanout.as_ref().and_then(|f| f.server_cpu_per_delivery);
        let floor = r.floor.as_ref().and_then(|f| f.writer_cpu_per_write);
        match (server, floor) {
            (Some(s), Some(f)) => format!("{:.1} us ({:.1})", dist::us(s), dist::us(f)),
            (Some(s), None) => format!("{:.1} us", dist::us(s)),
            _ => "-".into(),
        }
    });
    let _ = writeln!(
        t,
        "The floor is the same bytes per transport written by a plain loop to N bare sockets.\n\
         A full cycle: post -> every client ready for the next message; a poll must ask again\n\
         and be parked (pending_polls back at N), a stream is ready once it has the message."
    );
    t
}

/// The human-readable report.
pub fn table(run: &Run<'_>) -> String {
    let o = run.options;
    let m = &run.machine;
    let mut t = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(t, "comet-chat load benchmark, {}", m.date);
    let _ = writeln!(t, "{}", m.line());
    let _ = writeln!(
        t,
        "open files: bench soft {} (raised from {}), hard {}; server soft {}; rungs capped at limit - {}",
        run.limits.soft,
        run.limits.soft_before,
        run.limits.hard,
        run.server_limit.map_or("?".into(), |l| l.to_string()),
        run.fd_headroom
    );
    if let Some(note) = &run.clamp_note {
        let _ = writeln!(t, "CLAMPED: {note}");
    }
    let server = match o.attach {
        Some((addr, pid)) => format!("attached to {addr} (pid {pid})"),
        None if o.admin => format!(
            "{} started fresh for each rung, admin listener on and idle (--admin)",
            o.server_bin.display()
        ),
        None => format!("{} started fresh for each rung", o.server_bin.display()),
    };
    let _ = writeln!(t, "server: {server}");
    let placement = match (run.placement, o.attach) {
        (Some((server, client)), None) => format!(
            "server and floor writer pinned to CPU {server}, load generator and floor reader to CPU {client}"
        ),
        (Some((server, client)), Some(_)) => format!(
            "floor writer pinned to CPU {server}, load generator and floor reader to CPU {client}; \
             the attached server is left where it is"
        ),
        (None, _) => "unpinned".into(),
    };
    let _ = writeln!(
        t,
        "cpus: {placement}; hypervisor steal during the run {}",
        run.steal_pct
            .map_or("unknown".into(), |s| format!("{s:.1}%"))
    );
    let _ = writeln!(
        t,
        "ladder: {}; {} fan-out rounds per rung; {}-byte messages; idle window {} s; run took {:.0} s",
        list(&run.ladder),
        o.rounds,
        o.message_bytes,
        o.idle.as_secs(),
        run.elapsed.as_secs_f64()
    );

    let _ = writeln!(
        t,
        "transports: {}",
        o.transports
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let _ = writeln!(
        t,
        "\nHolding N waiting clients (poll: parked GET /chat; sse, ws: open streams)"
    );
    let _ = writeln!(
        t,
        "{:>6} {:>4} {:>6} {:>6} {:>9} {:>9} {:>8} {:>10} {:>8} {:>10} {:>17}",
        "N",
        "via",
        "held",
        "errors",
        "RSS idle",
        "RSS held",
        "B/client",
        "RSS closed",
        "idle CPU",
        "accepts/s",
        "connect p50/p99"
    );
    for r in &run.rungs {
        let (accepts, connect) = match &r.open {
            Some(o) => (
                thousands(o.accepts_per_sec),
                format!("{} / {} ms", ms(o.connect.p50_us), ms(o.connect.p99_us)),
            ),
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            t,
            "{:>6} {:>4} {:>6} {:>6} {:>9} {:>9} {:>8} {:>10} {:>8} {:>10} {:>17}",
            r.n,
            r.transport.name(),
            r.held,
            r.errors.total(),
            mib(r.rss_before),
            mib(r.rss_held),
            r.rss_per_poll().map_or("-".into(), |b| format!("{b:.0}")),
            mib(r.rss_closed),
            r.idle.as_ref().map_or("-".into(), |i| format!(
                "{:.2}%",
                i.cpu_pct.unwrap_or(i.cpu_pct_ticks)
            )),
            accepts,
            connect
        );
    }

    let _ = writeln!(
        t,
        "accepts/s = N / (first connect -> /stats counts all accepted); one client thread issues\n\
         the connects one by one, so this is a floor on the server's accept rate, not a ceiling.\n\
         B/client = (RSS held - RSS idle) / held; RSS closed = after every connection was reset.\n\
         RSS is VmRSS: it counts the shared pages of the binary and libc that the server maps."
    );

    let _ = writeln!(
        t,
        "\nFan-out: post -> every waiting client has it ({} rounds, latencies pooled)",
        o.rounds
    );
    let _ = writeln!(
        t,
        "{:>6} {:>4} {:>7} {:>7} {:>7} {:>12} {:>8} {:>10} {:>6} {:>9} {:>8} {:>8} {:>9}",
        "N",
        "via",
        "p50 ms",
        "p99 ms",
        "max ms",
        "deliveries/s",
        "span ms",
        "floor span",
        "ratio",
        "cycles/s",
        "srv CPU",
        "cli CPU",
        "srv/deliv"
    );
    for r in &run.rungs {
        let Some(f) = &r.fanout else {
            let _ = writeln!(
                t,
                "{:>6} {:>4} (no fan-out: see notes)",
                r.n,
                r.transport.name()
            );
            continue;
        };
        let floor_span = r.floor.as_ref().and_then(|fl| median(&fl.spans));
        let _ = writeln!(
            t,
            "{:>6} {:>4} {:>7} {:>7} {:>7} {:>12} {:>8} {:>10} {:>6} {:>9} {:>8} {:>8} {:>9}",
            r.n,
            r.transport.name(),
            ms(f.latency.p50_us),
            ms(f.latency.p99_us),
            ms(f.latency.max_us),
            thousands(f.deliveries_per_sec),
            median(&f.spans).map_or("-".into(), |d| ms(dist::us(d))),
            floor_span.map_or("-".into(), |d| ms(dist::us(d))),
            r.floor_ratio().map_or("-".into(), |x| format!("{x:.2}x")),
            median(&f.cycles).map_or("-".into(), |c| format!("{:.1}", 1.0 / c.as_secs_f64())),
            pct(f.server_cpu_pct),
            pct(f.client_cpu_pct),
            f.server_cpu_per_delivery
                .map_or("-".into(), |d| format!("{:.2} us", dist::us(d))),
        );
    }
    let _ = writeln!(
        t,
        "span = first -> last delivery, median of rounds; floor span = the same bytes written to N\n\
         sockets by a plain loop in another process (no HTTP, no event loop); ratio = span / floor span.\n\
         cycle = post -> every client ready for the next message: a poll answered, polling again\n\
         and parked (pending_polls back at N); a stream once it has the message.\n\
         CPU = share of one core over the post -> last delivery windows; srv/deliv = server CPU per delivery.\n\
         A pinned writer (server or floor) well under 100% at large N was sharing its CPU with\n\
         something else: this machine is shared, so compare the best ratio too."
    );

    let _ = writeln!(
        t,
        "\nFloor detail (go -> delivery, read by the same client code; rounds alternate with the server's)"
    );
    let _ = writeln!(
        t,
        "{:>6} {:>4} {:>7} {:>7} {:>9} {:>11} {:>10} {:>12} {:>9} {:>9} {:>10} {:>6}",
        "N",
        "via",
        "p50 ms",
        "p99 ms",
        "go->last",
        "writer loop",
        "writer CPU",
        "writer/write",
        "srv/deliv",
        "CPU ratio",
        "best ratio",
        "errors"
    );
    for r in &run.rungs {
        let Some(f) = &r.floor else {
            let _ = writeln!(
                t,
                "{:>6} {:>4} (no floor: see notes)",
                r.n,
                r.transport.name()
            );
            continue;
        };
        let server_cpu = r.fanout.as_ref().and_then(|f| f.server_cpu_per_delivery);
        let _ = writeln!(
            t,
            "{:>6} {:>4} {:>7} {:>7} {:>9} {:>11} {:>10} {:>12} {:>9} {:>9} {:>10} {:>6}",
            r.n,
            r.transport.name(),
            ms(f.latency.p50_us),
            ms(f.latency.p99_us),
            median(&f.lasts).map_or("-".into(), |d| ms(dist::us(d))),
            median(&f.write_loops).map_or("-".into(), |d| ms(dist::us(d))),
            pct(f.writer_cpu_pct),
            micros(f.writer_cpu_per_write),
            micros(server_cpu),
            ratio(r.cpu_floor_ratio()),
            ratio(r.best_floor_ratio()),
            f.errors
        );
    }
    let _ = writeln!(
        t,
        "writer loop = the writer's own time for N writes (median); CPU ratio = server CPU per\n\
         delivery / writer CPU per write, which a busy neighbour cannot inflate; best ratio =\n\
         fastest server round / fastest floor round."
    );

    for &n in &run.ladder {
        t.push_str(&side_by_side(run, n));
    }

    let _ = writeln!(t, "\nOne subscriber (a long poll): post -> delivery");
    let placed = if run.placement.is_some() {
        "pinned to separate CPUs"
    } else {
        "unpinned"
    };
    for (label, single) in [
        (placed, &run.single),
        ("unpinned (scheduler's choice)", &run.single_unpinned),
    ] {
        match single {
            Some(s) => {
                let _ = writeln!(
                    t,
                    "  {label:<30} {} rounds: p50 {:.1} us, p99 {:.1} us, max {:.1} us; {} errors",
                    s.rounds, s.latency.p50_us, s.latency.p99_us, s.latency.max_us, s.errors
                );
            }
            None if label == placed => {
                let _ = writeln!(t, "  {label:<30} not measured (see progress output)");
            }
            None => {}
        }
    }

    t.push_str(&dist::targets(&checks(run), 46));

    let mut notes: Vec<String> = run.notes.clone();
    if let Some(e) = run.single.as_ref().and_then(|s| s.first_error.as_ref()) {
        notes.push(format!("one subscriber: {e}"));
    }
    for r in &run.rungs {
        notes.extend(
            r.notes
                .iter()
                .map(|n| format!("N={} {}: {n}", r.n, r.transport.name())),
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

/// The run as JSON.
fn to_json(run: &Run<'_>) -> Value {
    let o = run.options;
    let rungs: Vec<Value> = run.rungs.iter().map(rung_json).collect();
    let targets = dist::targets_json(checks(run));
    json!({
        "benchmark": "comet-chat load",
        "machine": run.machine.to_json(),
        "steal_pct": run.steal_pct.map(dist::round2),
        "open_files": {
            "bench_soft_before": run.limits.soft_before,
            "bench_soft": run.limits.soft,
            "bench_hard": run.limits.hard,
            "server_soft": run.server_limit,
            "headroom": run.fd_headroom,
            "clamped": run.clamp_note,
        },
        "options": {
            "ladder_requested": run.requested_ladder,
            "ladder": run.ladder,
            "rounds": o.rounds,
            "single_rounds": o.single_rounds,
            "idle_secs": o.idle.as_secs(),
            "message_bytes": o.message_bytes,
            "transports": o.transports.iter().map(|t| t.name()).collect::<Vec<_>>(),
            "sockets_per_source_address": o.sockets_per_source,
            "pinned_cpus": run.placement.map(|(server, client)| json!({
                "server_and_floor_writer": server,
                "load_generator": client,
            })),
            "server": match o.attach {
                Some((addr, pid)) => json!({"attached": addr.to_string(), "pid": pid}),
                None => json!({
                    "started": o.server_bin.display().to_string(),
                    "admin_listener": o.admin,
                }),
            },
        },
        "single": run.single.as_ref().map(single_json),
        "single_unpinned": run.single_unpinned.as_ref().map(single_json),
        "rungs": rungs,
        "targets": targets,
        "notes": run.notes,
        "elapsed_secs": dist::round2(run.elapsed.as_secs_f64()),
    })
}

fn single_json(s: &Single) -> Value {
    json!({
        "rounds": s.rounds,
        "errors": s.errors,
        "latency": s.latency.to_json(),
        "first_error": s.first_error,
    })
}

fn rung_json(r: &RungResult) -> Value {
    let millis = |list: &[Duration]| -> Vec<f64> {
        list.iter()
            .map(|d| dist::round2(dist::us(*d) / 1e3))
            .collect()
    };
    let cdf = |sorted: &[Duration]| -> Vec<[f64; 2]> {
        dist::cdf(sorted, CDF_POINTS)
            .into_iter()
            .map(|(us, f)| [dist::round2(us), (f * 1e4).round() / 1e4])
            .collect()
    };
    json!({
        "n": r.n,
        "transport": r.transport.name(),
        "held": r.held,
        "errors": {
            "connect": r.errors.connect,
            "park": r.errors.park,
            "delivery": r.errors.delivery,
            "repark": r.errors.repark,
            "total": r.errors.total(),
        },
        "rss": {
            "before_bytes": r.rss_before,
            "before_anon_bytes": r.rss_anon_before,
            "held_bytes": r.rss_held,
            "closed_bytes": r.rss_closed,
            "per_client_bytes": r.rss_per_poll().map(dist::round2),
        },
        "open": r.open.as_ref().map(|o| json!({
            "opened": o.opened,
            "connect": o.connect.to_json(),
            "connects_per_sec": o.connects_per_sec.round(),
            "accepts_per_sec": o.accepts_per_sec.round(),
            "accept_ms": dist::round2(o.accept_time.as_secs_f64() * 1e3),
        })),
        "idle": r.idle.as_ref().map(|i| json!({
            "window_secs": dist::round2(i.window.as_secs_f64()),
            "cpu_pct_from_stat_ticks": dist::round2(i.cpu_pct_ticks * 100.0) / 100.0,
            "cpu_pct": i.cpu_pct.map(|p| (p * 1e4).round() / 1e4),
        })),
        "fanout": r.fanout.as_ref().map(|f| json!({
            "rounds": f.rounds,
            "latency": f.latency.to_json(),
            "span_ms": millis(&f.spans),
            "post_to_last_ms": millis(&f.lasts),
            "deliveries_per_sec": f.deliveries_per_sec.round(),
            "cycle_ms": millis(&f.cycles),
            "cycles_per_sec": median(&f.cycles).map(|c| dist::round2(1.0 / c.as_secs_f64())),
            "sustained_deliveries_per_sec":
                median(&f.cycles).map(|c| (r.held as f64 / c.as_secs_f64()).round()),
            "server_cpu_pct": f.server_cpu_pct.map(dist::round2),
            "server_cpu_ns_per_delivery": f.server_cpu_per_delivery.map(|d| d.as_nanos() as u64),
            "client_cpu_pct": f.client_cpu_pct.map(dist::round2),
            "cdf_us": cdf(&f.sorted),
        })),
        "floor": r.floor.as_ref().map(|f| json!({
            "connected": f.connected,
            "errors": f.errors,
            "first_error": f.first_error,
            "latency": f.latency.to_json(),
            "span_ms": millis(&f.spans),
            "go_to_last_ms": millis(&f.lasts),
            "write_loop_ms": millis(&f.write_loops),
            "writer_cpu_pct": f.writer_cpu_pct.map(dist::round2),
            "writer_cpu_ns_per_write": f.writer_cpu_per_write.map(|d| d.as_nanos() as u64),
            "cdf_us": cdf(&f.sorted),
        })),
        "server_to_floor_span_ratio": r.floor_ratio().map(|x| (x * 1e3).round() / 1e3),
        "server_to_floor_best_span_ratio": r.best_floor_ratio().map(|x| (x * 1e3).round() / 1e3),
        "server_to_floor_cpu_ratio": r.cpu_floor_ratio().map(|x| (x * 1e3).round() / 1e3),
        "notes": r.notes,
    })
}

/// Writes table.txt, load.json, rss.svg and fanout.svg into `dir`.
pub fn write_files(run: &Run<'_>, table: &str, dir: &Path) -> Result<(), String> {
    let json = serde_json::to_string_pretty(&to_json(run)).map_err(|e| e.to_string())?;
    crate::host::write_results(
        dir,
        &[
            ("table.txt", table.to_owned()),
            ("load.json", json + "\n"),
            ("rss.svg", rss_plot(run)),
            ("fanout.svg", fanout_plot(run)),
        ],
    )
}

/// Server RSS against polls held, with the target slope for comparison.
fn rss_plot(run: &Run<'_>) -> String {
    let mb = |b: u64| b as f64 / 1_048_576.0;
    let idle = run.rungs.iter().find_map(|r| r.rss_before).map_or(0.0, mb);
    // One line per transport, each from the idle server.
    let held: Vec<(Transport, Vec<(f64, f64)>)> = run
        .options
        .transports
        .iter()
        .map(|&t| {
            let mut points = vec![(0.0, idle)];
            points.extend(
                run.rungs
                    .iter()
                    .filter(|r| r.transport == t)
                    .filter_map(|r| Some((r.held as f64, mb(r.rss_held?)))),
            );
            (t, points)
        })
        .collect();
    let closed: Vec<(f64, f64)> = run
        .rungs
        .iter()
        .filter_map(|r| Some((r.n as f64, mb(r.rss_closed?))))
        .collect();
    let max_n = run.rungs.iter().map(|r| r.n).max().unwrap_or(1) as f64;
    let target = vec![
        (0.0, idle),
        (
            max_n,
            idle + max_n * TARGET_RSS_PER_POLL_BYTES / 1_048_576.0,
        ),
    ];
    let max_y = held
        .iter()
        .flat_map(|(_, points)| points)
        .chain(&closed)
        .chain(&target)
        .map(|p| p.1)
        .fold(1.0, f64::max);
    let mut series: Vec<Series> = held
        .into_iter()
        .enumerate()
        .map(|(i, (t, points))| Series {
            label: format!("holding N clients ({})", t.name()),
            color: [svg::PALETTE[0], svg::PALETTE[3], svg::PALETTE[4]][i % 3],
            dashed: false,
            markers: true,
            points,
        })
        .collect();
    series.extend([
        Series {
            label: "after closing them (at x = N)".into(),
            color: svg::PALETTE[2],
            dashed: false,
            markers: true,
            points: closed,
        },
        Series {
            label: "target: idle + 256 B/client".into(),
            color: "#888888",
            dashed: true,
            markers: false,
            points: target,
        },
    ]);
    svg::chart(
        &format!(
            "comet-chat server RSS vs clients held ({})",
            run.machine.date
        ),
        &Axis {
            label: "connections held (waiting clients)".into(),
            min: 0.0,
            max: max_n * 1.05,
            log: false,
            kilo: true,
        },
        &Axis {
            label: "RSS (MiB)".into(),
            min: 0.0,
            max: max_y * 1.15,
            log: false,
            kilo: false,
        },
        &series,
    )
}

/// CDF of post → delivery latency per N (solid) and the floor's go → delivery (dashed).
fn fanout_plot(run: &Run<'_>) -> String {
    let ms_points = |sorted: &[Duration]| -> Vec<(f64, f64)> {
        dist::cdf(sorted, CDF_POINTS)
            .into_iter()
            .map(|(us, f)| (us / 1e3, f))
            .collect()
    };
    let mut series = Vec::new();
    for (i, r) in run.rungs.iter().enumerate() {
        let color = svg::PALETTE[i % svg::PALETTE.len()];
        if let Some(f) = r.fanout.as_ref().filter(|f| !f.sorted.is_empty()) {
            series.push(Series {
                label: format!("server N={} {}", r.n, r.transport.name()),
                color,
                dashed: false,
                markers: false,
                points: ms_points(&f.sorted),
            });
        }
        if let Some(f) = r.floor.as_ref().filter(|f| !f.sorted.is_empty()) {
            series.push(Series {
                label: format!("floor N={} {}", r.n, r.transport.name()),
                color,
                dashed: true,
                markers: false,
                points: ms_points(&f.sorted),
            });
        }
    }
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (lo, hi) = xs.fold((f64::MAX, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (lo, hi) = if hi > 0.0 {
        (
            10f64.powf(lo.max(1e-3).log10().floor()),
            10f64.powf(hi.log10().ceil()),
        )
    } else {
        (0.01, 100.0)
    };
    svg::chart(
        &format!(
            "fan-out latency CDF, {} rounds per N ({})",
            run.options.rounds, run.machine.date
        ),
        &Axis {
            label: "post -> delivery (ms, log scale); dashed: kernel floor".into(),
            min: lo,
            max: hi,
            log: true,
            kilo: false,
        },
        &Axis {
            label: "fraction of deliveries".into(),
            min: 0.0,
            max: 1.0,
            log: false,
            kilo: false,
        },
        &series,
    )
}

/// Microseconds with two decimals, or "-".
pub fn micros(value: Option<Duration>) -> String {
    value.map_or("-".into(), |d| format!("{:.2} us", dist::us(d)))
}

/// "1.07x", or "-".
pub fn ratio(value: Option<f64>) -> String {
    value.map_or("-".into(), |x| format!("{x:.2}x"))
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| format!("{:.2} MiB", b as f64 / 1_048_576.0))
}

fn pct(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.0}%"))
}

fn list(values: &[usize]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
