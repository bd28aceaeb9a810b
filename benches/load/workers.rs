//! The workers scenario (`--workers W`): N waiting clients on W worker processes sharing
//! one port and one Redis, beside one process on its own, in the same run on the same
//! machine. Nothing is pinned: the workers, Redis, the load generators and the floor all
//! share the machine's cores, as they would in production. With `--sentinel [--replicas
//! N]` or `--shards N` the Redis is that instead ([`crate::backplane`]), and every step
//! that uses Redis uses it.
//!
//! 1. **Post latency, one waiting client**, three ways: one process (rooms in memory),
//!    one process with `--redis`, and W workers with `--redis`: the post's round trip
//!    (post → its 200), post → delivery, and the 200 → the first delivery. The first two
//!    differ by Redis alone: its script, two loopback round trips and the announcement
//!    coming back on the subscription.
//!
//!    1b. **Posts spread over rooms** on the W workers ([`crate::rooms`]): one at a time,
//!    then one per room at once; with shards, each shard's keys afterwards (a shard with
//!    none stops the run: the server did not spread the rooms).
//! 2. **One process at its ceiling**: 19,500 waiting clients (its open-files cap less
//!    headroom), the rung of the plain ladder.
//! 3. **W workers**, a rung at a time without closing anything between rungs: clients
//!    held, how SO_REUSEPORT spread them over the workers (each worker's `pending_polls`),
//!    the workers' idle CPU and wake-ups, and R broadcasts: one post → every waiting poll
//!    answered (p50/p99/max), deliveries per second, and the kernel floor for the same
//!    number of writes.
//!
//! The load generator is a [`Fleet`] of child processes, each under its own open-files
//! cap; the steps are [`crate::scale`]'s, which the million benchmark runs too.

use crate::args::{Options, FD_HEADROOM};
use crate::backplane::{Backplane, Kind};
use crate::cluster::Cluster;
use crate::dist::{self, Dist};
use crate::dist::{ms, thousands};
use crate::fleet::Fleet;
use crate::host::{self, Machine};
use crate::ladder::median;
use crate::pool::Sources;
use crate::report::ratio;
use crate::rooms::{self, RoomPosts};
use crate::scale::{self, Held, Idle, Plan, Rounds, Spread};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// The poll timeout of every server here: longer than the run, so every answer a waiting
/// client gets is a broadcast and the idle window has nothing due.
const POLL_TIMEOUT_SECS: u64 = 3_600;

/// Clients one process (server or load generator) holds at most.
const PER_PROCESS: usize = 19_500;

/// Time to open and park one rung.
const HOLD_CAP: Duration = Duration::from_secs(120);

/// The one-waiting-client rounds of step 1, per configuration.
const LATENCY_ROUNDS_CAP: usize = 100;

/// Step 1b's posts per room one at a time (640 over 32 rooms, ~0.1 s), and its rounds of
/// one post per room at once (3,200 posts: ~0.1 s at 30,000 a second, long enough that
/// one scheduling hiccup does not make the figure). The smoke run's are just enough to
/// see every room.
const POSTS_PER_ROOM: usize = 20;
const AT_ONCE_ROUNDS: usize = 100;
const SMOKE_POSTS_PER_ROOM: usize = 2;

/// The default ladder for W workers: multiples of 19,500 up to three quarters of what W
/// workers can hold, so uneven spread never pushes one worker past its cap.
pub fn default_ladder(workers: usize) -> Vec<usize> {
    let top = workers * PER_PROCESS * 3 / 4;
    let mut ladder: Vec<usize> = (1..)
        .map(|k| k * PER_PROCESS)
        .take_while(|&n| n <= top)
        .collect();
    if ladder.is_empty() {
        ladder.push(top.max(1));
    }
    ladder
}

/// One configuration's post latency with one waiting client.
struct Latency {
    /// "one process", "one process + Redis", "4 workers + Redis".
    label: String,
    /// Its rounds.
    rounds: Rounds,
}

/// One rung on one configuration.
struct Rung {
    /// "one process" or "4 workers + Redis".
    config: String,
    held: Held,
    spread: Option<Spread>,
    rss: Option<u64>,
    idle: Idle,
    rounds: Rounds,
}

/// The whole scenario.
pub fn run(options: &Options, exe: &Path) -> Result<(), String> {
    let started = Instant::now();
    let machine = host::machine();
    let w = options.workers;
    // A smoke run (no --bench) keeps the small ladder it was given.
    let ladder = if options.ladder_given || options.smoke {
        options.ladder.clone()
    } else {
        default_ladder(w)
    };
    let mut sources = Sources::new(options.sockets_per_source);
    let backplane = Backplane::start(backplane_kind(options))?;
    for line in backplane.describe() {
        say!("{line}");
    }
    let redis_args = backplane.server_args();
    let cluster_label = format!("{w} workers + {}", backplane.label());
    let configs: [(String, usize, &[String]); 3] = [
        ("one process".into(), 1, &[]),
        (
            format!("one process + {}", backplane.label()),
            1,
            &redis_args,
        ),
        (cluster_label.clone(), w, &redis_args),
    ];

    let mut latencies = Vec::new();
    let mut room_posts = None;
    let single_rounds = options.single_rounds.min(LATENCY_ROUNDS_CAP);
    for (label, workers, redis) in &configs {
        say!("{label}: one waiting client, {single_rounds} posts");
        let mut cluster = Cluster::start(&options.server_bin, *workers, redis, POLL_TIMEOUT_SECS)?;
        let mut fleet = fleet_for(options, exe, &cluster);
        scale::hold(&mut cluster, &mut fleet, &mut sources, 1, HOLD_CAP)?;
        let plan = Plan {
            label: "one",
            rounds: single_rounds,
            message_bytes: options.message_bytes,
            floor: None,
        };
        let rounds = scale::broadcasts(&mut cluster, &mut fleet, plan);
        if *label == cluster_label {
            room_posts = Some(posts_over_rooms(options, &cluster, label));
        }
        drop(fleet);
        cluster.stop();
        latencies.push(Latency {
            label: label.clone(),
            rounds,
        });
    }
    let shard_keys = backplane.keys_per_shard();
    // Figures labelled "3 shards" from a server that used one of them would mislead: stop
    // here (a server without shards keeps the last --redis it was given).
    if let Some((port, _)) = shard_keys.iter().find(|(_, keys)| keys.unwrap_or(0) == 0) {
        return Err(format!(
            "the shard on port {port} holds no key after posts to {} rooms: the server did \
             not spread rooms over every --redis (does it take --redis more than once?)",
            rooms::ROOMS
        ));
    }

    let mut rungs = Vec::new();
    let lone_top = PER_PROCESS.min(options.ladder.iter().copied().max().unwrap_or(PER_PROCESS));
    for (label, workers, redis, ladder) in [
        (&configs[0].0, 1, &[][..], vec![lone_top]),
        (&cluster_label, w, &redis_args[..], ladder.clone()),
    ] {
        if Instant::now() + Duration::from_secs(30) > started + options.budget {
            say!("{label}: skipped, out of time");
            continue;
        }
        say!("{label}: starting");
        let mut cluster = Cluster::start(&options.server_bin, workers, redis, POLL_TIMEOUT_SECS)?;
        let mut fleet = fleet_for(options, exe, &cluster);
        for &n in &ladder {
            match rung(
                options,
                exe,
                &mut cluster,
                &mut fleet,
                &mut sources,
                label,
                n,
            ) {
                Ok(r) => rungs.push(r),
                Err(e) => {
                    say!("{label}: N={n} stopped: {e}");
                    break;
                }
            }
        }
        drop(fleet);
        cluster.stop();
    }
    let backplane_lines = backplane.describe();
    drop(backplane);

    let report = Report {
        machine: &machine,
        options,
        backplane: &backplane_lines,
        latencies: &latencies,
        rooms: room_posts.as_ref().map(|r| (cluster_label.as_str(), r)),
        shard_keys: &shard_keys,
        rungs: &rungs,
        elapsed: started.elapsed(),
        load_at_end: host::loadavg(),
    };
    let table = table(&report);
    println!("{table}");
    let json = to_json(&report);
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())? + "\n";
    host::write_results(
        &options.out_dir,
        &[("workers.txt", table), ("workers.json", text)],
    )?;
    if options.smoke {
        smoke_verdict(&report, ladder.len() + 1)?;
    }
    Ok(())
}

/// The Redis the command line asked for.
fn backplane_kind(options: &Options) -> Kind {
    if options.sentinel {
        Kind::Sentinel {
            replicas: options.replicas,
        }
    } else if options.shards > 0 {
        Kind::Shards(options.shards)
    } else {
        Kind::One
    }
}

/// Step 1b: posts spread over [`rooms::ROOMS`] rooms on the W workers.
fn posts_over_rooms(options: &Options, cluster: &Cluster, label: &str) -> RoomPosts {
    let plan = if options.smoke {
        rooms::Plan {
            sequential: rooms::ROOMS * SMOKE_POSTS_PER_ROOM,
            rounds: SMOKE_POSTS_PER_ROOM,
            message_bytes: options.message_bytes,
        }
    } else {
        rooms::Plan {
            sequential: rooms::ROOMS * POSTS_PER_ROOM,
            rounds: AT_ONCE_ROUNDS,
            message_bytes: options.message_bytes,
        }
    };
    say!(
        "{label}: {} posts over {} rooms one at a time, then {} rounds of one per room at once",
        plan.sequential,
        rooms::ROOMS,
        plan.rounds
    );
    rooms::run(cluster.addr, &plan)
}

/// A smoke run is a test of the benchmark: every step must have run without an error.
fn smoke_verdict(report: &Report<'_>, expected_rungs: usize) -> Result<(), String> {
    let mut failed = Vec::new();
    for l in report.latencies {
        let errors = l.rounds.delivery_errors + l.rounds.repark_errors;
        if errors > 0 || l.rounds.rounds == 0 {
            failed.push(format!(
                "{}: {} rounds, {errors} errors",
                l.label, l.rounds.rounds
            ));
        }
    }
    match report.rooms {
        Some((_, r)) if r.errors > 0 => failed.push(format!(
            "rooms: {} errors, first: {}",
            r.errors,
            r.first_error.as_deref().unwrap_or("-")
        )),
        Some(_) => {}
        None => failed.push("rooms: did not run".into()),
    }
    for r in report.rungs {
        let errors = r.held.failed + r.rounds.delivery_errors + r.rounds.repark_errors;
        if errors > 0 || r.held.parked < r.held.n as u64 || r.rounds.rounds == 0 {
            failed.push(format!(
                "{} N={}: {} parked, {errors} errors",
                r.config, r.held.n, r.held.parked
            ));
        }
    }
    if report.rungs.len() < expected_rungs {
        failed.push(format!(
            "{} of {expected_rungs} rungs ran",
            report.rungs.len()
        ));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("smoke run: {}", failed.join("; ")))
    }
}

fn fleet_for(options: &Options, exe: &Path, cluster: &Cluster) -> Fleet {
    let per_generator = host::raise_open_files_limit()
        .soft
        .saturating_sub(FD_HEADROOM) as usize;
    Fleet::new(
        exe,
        cluster.addr,
        per_generator.min(PER_PROCESS),
        options.message_bytes,
        options.budget,
    )
}

/// One rung: hold, spread, idle, floor and broadcasts.
fn rung(
    options: &Options,
    exe: &Path,
    cluster: &mut Cluster,
    fleet: &mut Fleet,
    sources: &mut Sources,
    config: &str,
    n: usize,
) -> Result<Rung, String> {
    say!("{config}: N={n}: opening");
    let held = scale::hold(cluster, fleet, sources, n, HOLD_CAP)?;
    let spread = scale::spread(cluster).ok();
    say!(
        "{config}: N={n}: {} open, {} failed, {} parked in {:.1} s over {} generators; {}",
        held.open,
        held.failed,
        held.parked,
        held.park_time.as_secs_f64(),
        fleet.len(),
        spread.as_ref().map_or("-".into(), Spread::describe)
    );
    let rss = cluster.rss().ok();
    let idle = scale::idle(cluster, options.idle);
    let rounds = scale::broadcasts_beside_floor(
        cluster,
        fleet,
        (exe, sources),
        (options.rounds, options.message_bytes),
        (n, options.budget, false),
    );
    Ok(Rung {
        config: config.to_owned(),
        held,
        spread,
        rss,
        idle,
        rounds,
    })
}

/// Everything the table and the JSON say.
struct Report<'a> {
    machine: &'a Machine,
    options: &'a Options,
    /// The Redis processes, one line each.
    backplane: &'a [String],
    latencies: &'a [Latency],
    /// Step 1b on the W workers: their label and what it measured.
    rooms: Option<(&'a str, &'a RoomPosts)>,
    /// Keys in each shard after step 1b (shards only).
    shard_keys: &'a [(u16, Option<u64>)],
    rungs: &'a [Rung],
    elapsed: Duration,
    /// The load average as the run ended, beside the machine line's from its start: the
    /// machine is shared, and a figure measured under load says so here.
    load_at_end: String,
}

fn table(report: &Report<'_>) -> String {
    let &Report {
        machine,
        options,
        latencies,
        rungs,
        elapsed,
        ..
    } = report;
    let mut t = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(t, "comet-chat workers scenario, {}", machine.date);
    let _ = writeln!(t, "{}", machine.line());
    let _ = writeln!(
        t,
        "--workers {}; nothing pinned; {}-byte messages; {} rounds per rung; idle window {} s; run took {:.0} s",
        options.workers,
        options.message_bytes,
        options.rounds,
        options.idle.as_secs(),
        elapsed.as_secs_f64()
    );
    let _ = writeln!(t, "load average at end {}", report.load_at_end);
    for line in report.backplane {
        let _ = writeln!(t, "{line}");
    }

    let _ = writeln!(t, "\nOne waiting client: a post's latency");
    let _ = writeln!(
        t,
        "{:<32} {:>6} {:>16} {:>16} {:>16} {:>7}",
        "server", "posts", "post->200 p50/p99", "post->deliv p50/p99", "200->1st deliv", "errors"
    );
    for l in latencies {
        let r = &l.rounds;
        let mut acks = r.acks.clone();
        let acks = Dist::of(&mut acks);
        let mut to_first = r.ack_to_first_ms.clone();
        to_first.sort_by(f64::total_cmp);
        let _ = writeln!(
            t,
            "{:<32} {:>6} {:>16} {:>16} {:>16} {:>7}",
            l.label,
            r.rounds,
            format!("{} / {} ms", ms(acks.p50_us), ms(acks.p99_us)),
            format!("{} / {} ms", ms(r.latency.p50_us), ms(r.latency.p99_us)),
            to_first
                .get(to_first.len() / 2)
                .map_or("-".into(), |m| format!("{m:.3} ms")),
            r.delivery_errors + r.repark_errors
        );
    }
    if let (Some(alone), Some(redis)) = (latencies.first(), latencies.get(1)) {
        let p50 = |r: &Rounds| {
            let mut acks = r.acks.clone();
            Dist::of(&mut acks).p50_us
        };
        let (a, b) = (p50(&alone.rounds), p50(&redis.rounds));
        let (da, db) = (alone.rounds.latency.p50_us, redis.rounds.latency.p50_us);
        let _ = writeln!(
            t,
            "Redis's share: post round trip {} -> {} ms (+{} ms, {:.0}% of it); post -> delivery {} -> {} ms (+{} ms, {:.0}% of it)",
            ms(a),
            ms(b),
            ms(b - a),
            100.0 * (b - a) / b.max(1e-9),
            ms(da),
            ms(db),
            ms(db - da),
            100.0 * (db - da) / db.max(1e-9)
        );
    }

    if let Some((label, r)) = report.rooms {
        let dist = Dist::of(&mut r.round_trips.clone());
        let _ = writeln!(
            t,
            "\nPosts spread over {} rooms, nobody waiting in them ({label})",
            rooms::ROOMS
        );
        let _ = writeln!(
            t,
            "  one at a time: {} posts, post->201 p50 {} ms, p99 {} ms, max {} ms",
            dist.count,
            ms(dist.p50_us),
            ms(dist.p99_us),
            ms(dist.max_us)
        );
        let _ = writeln!(
            t,
            "  one per room at once: {} posts in {:.3} s, {} posts/s (median round: {}/s); errors {}",
            r.posted_at_once,
            r.at_once_time.as_secs_f64(),
            thousands(r.posts_per_sec()),
            r.median_round_posts_per_sec().map_or("-".into(), thousands),
            r.errors
        );
        if let Some(e) = &r.first_error {
            let _ = writeln!(t, "  first error: {e}");
        }
    }
    if !report.shard_keys.is_empty() {
        let keys: Vec<String> = (report.shard_keys.iter())
            .map(|(port, keys)| {
                format!(
                    "{port}: {}",
                    keys.map_or("no answer".into(), |k| k.to_string())
                )
            })
            .collect();
        let _ = writeln!(t, "  keys per shard (port: DBSIZE): {}", keys.join(", "));
    }

    let _ = writeln!(t, "\nWaiting clients held");
    let _ = writeln!(
        t,
        "{:<32} {:>7} {:>7} {:>6} {:>9} {:>34} {:>10} {:>9} {:>10}",
        "server",
        "N",
        "held",
        "errors",
        "open s",
        "spread (pending_polls per worker)",
        "RSS sum",
        "idle CPU",
        "wake-ups/s"
    );
    for r in rungs {
        let errors = r.held.failed
            + (r.held.open as u64).saturating_sub(r.held.parked) as usize
            + r.rounds.delivery_errors
            + r.rounds.repark_errors;
        let spread = r.spread.as_ref().map_or("-".into(), |s| {
            let (min, max, over) = s.summary();
            format!("{min}..{max} ({over:.3}x mean)")
        });
        let _ = writeln!(
            t,
            "{:<32} {:>7} {:>7} {:>6} {:>9.1} {:>34} {:>10} {:>9} {:>10}",
            r.config,
            r.held.n,
            r.held.parked,
            errors,
            r.held.park_time.as_secs_f64(),
            spread,
            r.rss
                .map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
            r.idle.cpu_pct.map_or("-".into(), |p| format!("{p:.3}%")),
            r.idle.switches.map_or("-".into(), |s| format!(
                "{:.1}",
                s as f64 / r.idle.window.as_secs_f64()
            ))
        );
    }
    for r in rungs.iter().filter(|r| r.spread.is_some()) {
        if let Some(s) = &r.spread {
            let list: Vec<String> = s
                .per_worker
                .iter()
                .map(|(w, p)| format!("w{w}:{p}"))
                .collect();
            let _ = writeln!(
                t,
                "  spread at N={} ({}): {}",
                r.held.n,
                r.config,
                list.join(" ")
            );
        }
    }

    let _ = writeln!(
        t,
        "\nFan-out: one post -> every waiting poll answered (rounds pooled)"
    );
    let _ = writeln!(
        t,
        "{:<32} {:>7} {:>7} {:>7} {:>8} {:>9} {:>12} {:>10} {:>6} {:>9} {:>17}",
        "server",
        "N",
        "p50 ms",
        "p99 ms",
        "max ms",
        "to all ms",
        "deliveries/s",
        "floor ms",
        "ratio",
        "cycle ms",
        "CPU/deliv/floor"
    );
    for r in rungs {
        let f = &r.rounds;
        let _ = writeln!(
            t,
            "{:<32} {:>7} {:>7} {:>7} {:>8} {:>9} {:>12} {:>10} {:>6} {:>9} {:>17}",
            r.config,
            r.held.n,
            ms(f.latency.p50_us),
            ms(f.latency.p99_us),
            ms(f.latency.max_us),
            median(&f.lasts).map_or("-".into(), scale::ms),
            thousands(f.deliveries_per_sec),
            f.floor
                .as_ref()
                .and_then(|fl| median(&fl.totals))
                .map_or("-".into(), scale::ms),
            ratio(f.floor_ratio()),
            median(&f.cycles).map_or("-".into(), scale::ms),
            f.cpu_cell()
        );
    }
    let _ = writeln!(
        t,
        "to all = post -> last delivery (median of rounds); floor = the same bytes written to as many\n\
         sockets by plain loops in writer processes (as many pairs as the open-files cap needs), go ->\n\
         last answer; ratio = to all / floor. cycle = post -> every client answered, polling again and\n\
         parked. CPU/deliv/floor = CPU of all workers over the post -> last windows per delivery / a\n\
         floor writer's CPU per write.\n\
         Wake-ups = context switches of all workers over the idle window, per second."
    );
    let notes: Vec<String> = latencies
        .iter()
        .flat_map(|l| {
            l.rounds
                .notes
                .iter()
                .map(move |n| format!("{}: {n}", l.label))
        })
        .chain(rungs.iter().flat_map(|r| {
            let floor = r.rounds.floor.as_ref().and_then(|f| f.first_error.clone());
            r.rounds
                .notes
                .iter()
                .cloned()
                .chain(r.held.first_error.clone())
                .chain(floor.map(|e| format!("floor: {e}")))
                .map(move |n| format!("{} N={}: {n}", r.config, r.held.n))
        }))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(t, "\nNotes");
        for note in notes {
            let _ = writeln!(t, "  - {note}");
        }
    }
    t
}

fn to_json(report: &Report<'_>) -> Value {
    let &Report {
        machine,
        options,
        latencies,
        rungs,
        ..
    } = report;
    let millis = |list: &[Duration]| -> Vec<f64> {
        list.iter()
            .map(|d| dist::round2(dist::us(*d) / 1e3))
            .collect()
    };
    json!({
        "benchmark": "comet-chat load --workers",
        "machine": machine.to_json(),
        "workers": options.workers,
        "redis": report.backplane,
        "load_average_at_end": report.load_at_end,
        "message_bytes": options.message_bytes,
        "post_latency": latencies.iter().map(|l| json!({
            "server": l.label,
            "posts": l.rounds.rounds,
            "post_to_200_ms": millis(&l.rounds.acks),
            "post_to_delivery": l.rounds.latency.to_json(),
            "ack_to_first_delivery_ms": l.rounds.ack_to_first_ms,
            "errors": l.rounds.delivery_errors + l.rounds.repark_errors,
        })).collect::<Vec<_>>(),
        "posts_over_rooms": report.rooms.map(|(server, r)| {
            let mut value = r.to_json();
            value["server"] = json!(server);
            value
        }),
        "keys_per_shard": report.shard_keys.iter()
            .map(|(port, keys)| json!({"port": port, "keys": keys}))
            .collect::<Vec<_>>(),
        "rungs": rungs.iter().map(|r| json!({
            "server": r.config,
            "n": r.held.n,
            "open": r.held.open,
            "connect_errors": r.held.failed,
            "parked": r.held.parked,
            "park_secs": dist::round2(r.held.park_time.as_secs_f64()),
            "spread": r.spread.as_ref().map(|s| s.per_worker.iter()
                .map(|&(w, p)| json!({"worker": w, "pending_polls": p}))
                .collect::<Vec<_>>()),
            "workers_rss_bytes": r.rss,
            "idle": r.idle.to_json(),
            "broadcasts": r.rounds.to_json(),
        })).collect::<Vec<_>>(),
    })
}
