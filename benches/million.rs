//! # A million waiting clients on one box
//!
//! `cargo bench --bench million [-- OPTIONS]`: Redis and comet-chat `--workers W --redis`
//! on one port, load-generator processes holding a ladder of waiting long-polls (100k,
//! 250k, 500k, 750k, 1M, then on past the million while the box allows), and at each
//! rung: every poll held with no error, where the box's memory went per client, the
//! workers' idle CPU and wake-ups, and one post → every client answered beside the kernel
//! floor for as many writes, in two layouts: paired (each floor writer writes its own
//! reader's sockets in order) and spread (every writer writes to every reader in a
//! shuffled order, as a worker does). At the top rung, the steady cost of the default 20 s poll
//! timeout. `-- --help` lists the options; `--quick` is a run of under a minute, and
//! `cargo test --benches` runs a smoke version with real Redis and real workers.
//!
//! ## What it deliberately is not
//!
//! Not a test: the targets are printed PASS/MISS, never asserted. Traffic goes to
//! loopback only; every loop is bounded in count and time; every process it starts is
//! stopped by its PID (and killed by the kernel if the benchmark dies); the sysctls it
//! raises are put back. A full run started as root runs in a network namespace of its own
//! whose established-connections hash is sized for its sockets, as docs/DEPLOY.md sizes a
//! real box's (`--as-booted` keeps the box's).
//!
//! ## A tour
//!
//! - this file: the run, rung by rung, and why the ladder stops where it stops.
//! - [`options`] — the command line, `--quick`, the smoke run.
//! - [`sysctl`] — the kernel settings raised for the run, and restored.
//! - [`ehash`] — the run's own network namespace, its established hash sized for its sockets.
//! - [`memory`] — /proc/meminfo, /proc/net/sockstat, /proc/slabinfo.
//! - [`report`] — the table, `million.json` and `million.svg`.
//! - From the load benchmark (`benches/load/`): [`scale`] (the steps of a rung),
//!   [`fleet`] (load-generator processes), [`cluster`] (Redis, supervisor, per-worker
//!   `/stats`), [`floor`] (the kernel floors), [`pool`], [`host`], [`dist`], [`svg`].

#[macro_use]
#[path = "load/progress.rs"]
mod progress;

#[allow(dead_code)]
#[path = "load/api.rs"]
mod api;
// The load bench's command line: the hidden child modes (floor writer and reader, load
// generator) are parsed by it, in this binary as in that one.
#[allow(dead_code)]
#[path = "load/args.rs"]
mod args;
#[path = "load/child.rs"]
mod child;
#[path = "load/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "load/dist.rs"]
mod dist;
#[path = "million/ehash.rs"]
mod ehash;
#[path = "load/fleet.rs"]
mod fleet;
#[allow(dead_code)]
#[path = "load/floor.rs"]
mod floor;
#[path = "load/host.rs"]
mod host;
#[path = "million/memory.rs"]
mod memory;
#[path = "million/options.rs"]
mod options;
#[path = "shared/parent_death.rs"]
mod parent_death;
#[allow(dead_code)]
#[path = "load/pool.rs"]
mod pool;
#[path = "shared/procfs.rs"]
mod procfs;
#[path = "million/report.rs"]
mod report;
#[path = "load/scale.rs"]
mod scale;
#[path = "shared/server.rs"]
mod server;
#[allow(dead_code)]
#[path = "load/svg.rs"]
mod svg;
#[path = "million/sysctl.rs"]
mod sysctl;
#[allow(dead_code)]
#[path = "load/transport.rs"]
mod transport;
#[allow(dead_code)]
#[path = "load/wire.rs"]
mod wire;

use cluster::{Cluster, Redis};
use fleet::Fleet;
use memory::Snapshot;
use options::{Options, Parsed};
use pool::Sources;
use scale::{Held, Idle, Rounds, Spread};
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use sysctl::Sysctls;

/// Descriptors a worker keeps for itself (listener, epoll, signals, Redis, stdio): its
/// connection cap is the open-files limit less this (`--max-conns` default).
const WORKER_OWN_FDS: usize = 32;

/// Share of W workers' connection caps a rung may fill: SO_REUSEPORT hashes connections
/// over the workers, and at 1M over 64 workers the fullest is ~1 % above the mean.
const SPREAD_HEADROOM: f64 = 0.95;

/// Memory left free whatever the next rung needs: the box is shared.
const MEMORY_RESERVE_BYTES: u64 = 2 << 30;

/// comet-chat runs at most this many workers (`--workers`).
const MAX_WORKERS: usize = comet_chat::config::WORKERS_MAX;

/// Time to open and park one rung's new clients: connects run at tens of thousands a
/// second, and a rung must never hang.
const HOLD_CAP: Duration = Duration::from_secs(300);

/// How long the poll-timeout phase waits for a worker's `/stats`, where the load bench's
/// usual 5 s means trouble. At 2,000,000 clients and the default 20 s poll timeout, 100,000
/// polls time out a second over ~106 workers on two cores: a worker may take longer than
/// 5 s to come to its `/stats` connection, and the 2M run of 2026-12-04 lost the phase to
/// that read timeout (EAGAIN). The phase measures what the box keeps up with, so it waits.
const BUSY_ANSWER_WAIT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    // This binary is also the floor's writer and reader and the load generator.
    let child_mode = ["--floor-writer", "--floor-reader", "--generator"];
    if argv.iter().any(|a| child_mode.iter().any(|m| a == m)) {
        return match args::parse(argv) {
            Ok(args::Mode::FloorWriter(a)) => floor::writer_main(&a),
            Ok(args::Mode::FloorReader(a)) => floor::reader_main(&a),
            Ok(args::Mode::Generator(a)) => fleet::generator_main(&a),
            Ok(_) => ExitCode::from(2),
            Err(e) => {
                eprintln!("million: {e}");
                ExitCode::from(2)
            }
        };
    }
    match options::parse(argv.clone()) {
        Ok(Parsed::Help) => {
            print!("{}", options::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Parsed::Run(options)) => match ehash::run_in_own_namespace(&options, &argv) {
            Some(code) => code,
            None => match run(&options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    say!("million failed: {e}");
                    ExitCode::FAILURE
                }
            },
        },
        Err(e) => {
            eprintln!("million: {e}\n\n{}", options::USAGE);
            ExitCode::from(2)
        }
    }
}

/// One rung's figures.
pub struct Rung {
    /// The clients asked for, open and parked.
    pub held: Held,
    /// Each worker's `pending_polls`.
    pub spread: Option<Spread>,
    /// Where the memory went.
    pub memory: RungMemory,
    /// The idle window.
    pub idle: Idle,
    /// The broadcasts and the floor.
    pub rounds: Rounds,
}

impl Rung {
    /// Every error of the rung: connects, polls not parked, deliveries, re-parks.
    pub fn errors(&self) -> usize {
        self.held.failed
            + (self.held.open as u64).saturating_sub(self.held.parked) as usize
            + self.rounds.delivery_errors
            + self.rounds.repark_errors
    }
}

/// Memory at a rung, against the box before the run and the workers before any client.
pub struct RungMemory {
    /// The box now.
    pub snapshot: Snapshot,
    /// MemTotal − MemAvailable now, less the same before the run.
    pub box_used: u64,
    /// Σ worker RSS now, and its growth since the workers held no client.
    pub workers_rss: (u64, u64),
    /// Σ worker PSS now, and its growth.
    pub workers_pss: (u64, u64),
    /// Σ worker anonymous RSS now, and its growth.
    pub workers_anon: (u64, u64),
    /// Σ load-generator RSS.
    pub generators_rss: u64,
    /// Redis's RSS.
    pub redis_rss: u64,
    /// Slab growth since the run began, bytes.
    pub slab: u64,
    /// The slab caches that grew most.
    pub top_caches: Vec<(String, u64)>,
}

/// The poll-timeout phase at the top rung.
pub struct Timeouts {
    /// The server's `--poll-timeout`, seconds.
    pub poll_timeout: u64,
    /// Clients asked for, and opened again on the restarted workers.
    pub n: usize,
    /// Opened again.
    pub opened: usize,
    /// Length of the measured window.
    pub window: Duration,
    /// Timeouts the workers answered in the window, per second.
    pub timeouts_per_sec: f64,
    /// CPU of all workers in the window, % of one core.
    pub cpu_pct: Option<f64>,
    /// Over the whole phase, as the clients saw it: timeouts, other answers, failures.
    pub churned: pool::Churned,
    /// How long the clients answered timeouts (the whole phase).
    pub churn_time: Duration,
    /// Clients still open at the end.
    pub open_after: usize,
    /// Connections the workers still held at the end (less the benchmark's own).
    pub server_connections: u64,
}

/// Why the ladder stopped where it did.
pub struct Stop {
    /// The first rung not run, if any.
    pub next: Option<usize>,
    /// In words.
    pub reason: String,
}

/// Everything the run produced.
pub struct Run<'a> {
    /// The command line.
    pub options: &'a Options,
    /// Where it ran.
    pub machine: host::Machine,
    /// Workers.
    pub workers: usize,
    /// Clients one process holds (server worker cap; load-generator share).
    pub per_process: usize,
    /// Sysctls changed (name, old, new) and those that could not be.
    pub sysctls: (Vec<(&'static str, String, String)>, Vec<String>),
    /// The box before anything started.
    pub before: Snapshot,
    /// The box after everything stopped.
    pub after: Option<Snapshot>,
    /// Σ worker RSS/PSS/anon with no client.
    pub workers_idle: (u64, u64, u64),
    /// The rungs run.
    pub rungs: Vec<Rung>,
    /// Why it stopped.
    pub stop: Stop,
    /// The poll-timeout phase.
    pub timeouts: Option<Timeouts>,
    /// Problems outside a rung.
    pub notes: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

fn run(options: &Options) -> Result<(), String> {
    progress::elapsed_secs();
    let started = Instant::now();
    let deadline = started + options.budget;
    let machine = host::machine();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let limits = host::raise_open_files_limit();
    let per_process = per_process();
    let worker_cap = (limits.soft as usize).saturating_sub(WORKER_OWN_FDS);
    let planned_top = if options.beyond {
        options::BEYOND[options::BEYOND.len() - 1]
    } else {
        options.ladder.iter().copied().max().unwrap_or(0)
    };
    let workers = if options.workers > 0 {
        options.workers
    } else {
        let per_worker = (worker_cap as f64 * SPREAD_HEADROOM) as usize;
        planned_top
            .div_ceil(per_worker.max(1))
            .clamp(2, MAX_WORKERS)
    };
    let capacity = (workers as f64 * worker_cap as f64 * SPREAD_HEADROOM) as usize;
    say!(
        "{} run: {workers} workers (each capped at {worker_cap} connections by the open-files \
         limit of {}; at most {capacity} clients with headroom for uneven spread), \
         load generators of {per_process} clients each",
        options.mode,
        limits.soft
    );

    let before = memory::snapshot();
    let top_wanted = planned_top.min(capacity);
    let mut wants = sysctl::wants(top_wanted, before.total);
    // In a namespace of its own the run cannot reach the global settings: its parent
    // raised them (ehash.rs).
    wants.retain(|w| !(ehash::inside() && ehash::GLOBAL.contains(&w.name)));
    let mut sysctls = Sysctls::apply(&wants);
    let sysctl_record = (sysctls.changed.clone(), sysctls.failed.clone());

    let redis = Redis::start()?;
    say!("redis-server pid {} at {}", redis.pid(), redis.url());
    let mut cluster = Cluster::start(
        &options.server_bin,
        workers,
        &redis.args(),
        options.ladder_poll_timeout,
    )?;
    say!(
        "comet-chat --workers {workers}: supervisor pid {}, on {}",
        cluster.main_pid(),
        cluster.addr
    );
    let workers_idle = (
        cluster.rss().unwrap_or(0),
        cluster.pss().unwrap_or(0),
        cluster.rss_anon().unwrap_or(0),
    );
    let mut sources = Sources::new(options.per_source);
    let mut fleet = Fleet::new(
        &exe,
        cluster.addr,
        per_process,
        options.message_bytes,
        options.budget + Duration::from_secs(60),
    );

    let mut rungs: Vec<Rung> = Vec::new();
    let mut notes = Vec::new();
    let mut candidates = options.ladder.clone();
    if options.beyond {
        candidates.extend(options::BEYOND);
    }
    let mut stop = Stop {
        next: None,
        reason: "the ladder asked for ran to its end".into(),
    };
    let mut ran_capacity_rung = false;
    for (index, &asked) in candidates.iter().enumerate() {
        let mut n = asked;
        if n > capacity {
            // The workers cannot take this rung; the most they can is the box's last rung.
            let last = rungs.last().map_or(0, |r| r.held.n);
            let most = capacity / 10_000 * 10_000;
            let reason = format!(
                "{n} clients need more than {workers} workers × {worker_cap} connections \
                 (the open-files cap of {} per process, less {WORKER_OWN_FDS} of the worker's \
                 own) with {:.0} % headroom for uneven spread = {capacity}{}",
                limits.soft,
                (1.0 - SPREAD_HEADROOM) * 100.0,
                if workers == MAX_WORKERS {
                    format!("; --workers is capped at {MAX_WORKERS}")
                } else {
                    String::new()
                }
            );
            if ran_capacity_rung || most <= last {
                stop = Stop {
                    next: Some(n),
                    reason,
                };
                break;
            }
            say!("N={n}: {reason}; running {most} instead, the most the workers can hold");
            notes.push(format!("N={n} replaced by {most}: {reason}"));
            ran_capacity_rung = true;
            n = most;
        }
        let short = memory_short(rungs.last(), n, options.floor_sockets)
            .or_else(|| files_short(fleet.open(), n, options.floor_sockets))
            .or_else(|| ports_short(options.per_source));
        if let Some(reason) = short {
            stop = Stop {
                next: Some(n),
                reason,
            };
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let needed = time_needed(options, n);
        if left < needed {
            stop = Stop {
                next: Some(n),
                reason: format!(
                    "{:.0} s of the --budget left, about {:.0} s needed",
                    left.as_secs_f64(),
                    needed.as_secs_f64()
                ),
            };
            break;
        }
        let rung = match rung(
            options,
            &exe,
            &mut cluster,
            &mut fleet,
            &mut sources,
            n,
            &redis,
        ) {
            Ok(mut rung) => {
                rung.memory.box_used = rung.memory.snapshot.used().saturating_sub(before.used());
                rung.memory.slab = rung.memory.snapshot.slab.saturating_sub(before.slab);
                rung.memory.top_caches = memory::slab_growth(&before, &rung.memory.snapshot, 6);
                for (rss, idle) in [
                    (&mut rung.memory.workers_rss, workers_idle.0),
                    (&mut rung.memory.workers_pss, workers_idle.1),
                    (&mut rung.memory.workers_anon, workers_idle.2),
                ] {
                    rss.1 = rss.0.saturating_sub(idle);
                }
                rung
            }
            Err(e) => {
                stop = Stop {
                    next: Some(n),
                    reason: format!("the rung could not run: {e}"),
                };
                break;
            }
        };
        let errors = rung.errors();
        say!("N={n}: done, {errors} errors");
        rungs.push(rung);
        if errors > 0 {
            stop = Stop {
                next: candidates.get(index + 1).copied(),
                reason: format!("{errors} errors at N={n}"),
            };
            break;
        }
    }
    say!("ladder stopped: {}", stop.reason);

    let top = rungs.last().map(|r| r.held.open);
    let timeouts = match (options.timeouts, top) {
        (Some((poll_timeout, window)), Some(n)) if n > 0 => {
            match timeout_phase(
                options,
                (cluster, &mut fleet, &mut sources),
                &redis,
                (workers, n),
                (poll_timeout, window),
            ) {
                Ok(t) => Some(t),
                Err(e) => {
                    notes.push(format!("poll-timeout phase: {e}"));
                    say!("poll-timeout phase failed: {e}");
                    None
                }
            }
        }
        (_, _) => {
            cluster.stop();
            None
        }
    };

    say!("tearing down: load generators, Redis, sysctls");
    drop(fleet);
    drop(redis);
    sysctls.restore();
    // The kernel frees a million sockets in the background; wait (bounded) until the
    // sockets in use are back to where they were.
    let settle = Instant::now() + Duration::from_secs(60);
    let mut after = memory::snapshot();
    while after.sockets > before.sockets + 100 && Instant::now() < settle {
        host::sleep_until(Instant::now() + Duration::from_millis(500));
        after = memory::snapshot();
    }
    let after = Some(after);

    let run = Run {
        options,
        machine,
        workers,
        per_process,
        sysctls: sysctl_record,
        before,
        after,
        workers_idle,
        rungs,
        stop,
        timeouts,
        notes,
        elapsed: started.elapsed(),
    };
    let table = report::table(&run);
    println!("{table}");
    report::write_files(&run, &table, &options.out_dir)?;
    // The smoke run is what `cargo test --benches` runs: a rung that could not run, or lost
    // a client, fails it, so a broken load generator cannot pass as a short ladder.
    match &run.stop.next {
        Some(_) if options.mode == "smoke" => Err(format!("smoke run: {}", run.stop.reason)),
        _ => Ok(()),
    }
}

/// Whether the box lacks the memory for a rung of `n`, judged by what the rung before
/// cost per client (the first rung is judged at 12 KiB a client); a sentence if so.
fn memory_short(last: Option<&Rung>, n: usize, floor_sockets: usize) -> Option<String> {
    let now = memory::snapshot();
    let (held, per_client) = match last {
        Some(r) if r.held.open > 0 => (r.held.open, r.memory.box_used as f64 / r.held.open as f64),
        _ => (0, 12_288.0),
    };
    // New clients, plus the two floors' sockets (paired and spread, held at once; a
    // client's worth each), plus 15 %.
    let more = n.saturating_sub(held) + 2 * floor_sockets.min(n);
    let need = (more as f64 * per_client * 1.15) as u64 + MEMORY_RESERVE_BYTES;
    (now.available < need).then(|| {
        format!(
            "memory: {n} clients need about {:.1} GiB more ({:.0} B per client as measured, \
             the floors' sockets, and {} GiB kept free), and {:.1} GiB is available",
            need as f64 / (1u64 << 30) as f64,
            per_client,
            MEMORY_RESERVE_BYTES >> 30,
            now.available as f64 / (1u64 << 30) as f64
        )
    })
}

/// Whether the kernel's table of open files (`fs.file-max`, which the run raises when it
/// may) lacks room for a rung of `n`: two descriptors per new client (the worker's and
/// the load generator's) and two per socket of each floor (paired and spread, held at
/// once); a sentence if so.
fn files_short(held: usize, n: usize, floor_sockets: usize) -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/fs/file-nr").ok()?;
    let fields: Vec<u64> = text
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [allocated, _, max] = fields[..] else {
        return None;
    };
    let need = 2 * (n.saturating_sub(held) + 2 * floor_sockets.min(n)) as u64;
    (allocated + need > max).then(|| {
        format!(
            "file limits: {n} clients need {need} more open files, and the kernel's table \
             (fs.file-max) has {} left of {max}",
            max.saturating_sub(allocated)
        )
    })
}

/// Whether a source address would need more ports than the kernel's ephemeral range:
/// clients connect from 127.0.0.2 upwards, `per_source` from each, so ports run out only
/// if one address is given more than the range (the 16 million addresses of 127.0.0.0/8
/// never run out); a sentence if so.
fn ports_short(per_source: usize) -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let ends: Vec<usize> = text
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [low, high] = ends[..] else {
        return None;
    };
    let range = high.saturating_sub(low) + 1;
    (per_source > range).then(|| {
        format!(
            "ports: --per-source {per_source} is more than the {range} ephemeral ports \
             ({low}-{high}) one source address has"
        )
    })
}

/// A rough time a rung of `n` needs, to decide whether to start it.
fn time_needed(options: &Options, n: usize) -> Duration {
    // Opening ~20k/s, each round (fan-out, re-park, floor) ~30 µs a client, doubled.
    let per_client = Duration::from_micros(50 + 30 * options.rounds as u64);
    options.idle + per_client * n as u32 * 2 + Duration::from_secs(20)
}

/// One rung: hold, spread, memory, idle, floor, broadcasts.
fn rung(
    options: &Options,
    exe: &Path,
    cluster: &mut Cluster,
    fleet: &mut Fleet,
    sources: &mut Sources,
    n: usize,
    redis: &Redis,
) -> Result<Rung, String> {
    let before = fleet.open();
    say!("N={n}: opening {} more clients", n.saturating_sub(before));
    let held = scale::hold(cluster, fleet, sources, n, HOLD_CAP)?;
    let spread = scale::spread(cluster).ok();
    say!(
        "N={n}: {} open, {} failed, {} parked in {:.1} s ({:.0} clients/s) over {} load generators; {}",
        held.open,
        held.failed,
        held.parked,
        held.park_time.as_secs_f64(),
        held.open.saturating_sub(before) as f64 / held.park_time.as_secs_f64().max(1e-9),
        fleet.len(),
        spread.as_ref().map_or("-".into(), Spread::describe)
    );
    let snapshot = memory::snapshot();
    let memory = RungMemory {
        box_used: 0,
        workers_rss: (cluster.rss().unwrap_or(0), 0),
        workers_pss: (cluster.pss().unwrap_or(0), 0),
        workers_anon: (cluster.rss_anon().unwrap_or(0), 0),
        generators_rss: memory::rss_of(&fleet.pids()),
        redis_rss: memory::rss_of(&[redis.pid()]),
        slab: 0,
        top_caches: Vec::new(),
        snapshot,
    };
    say!("N={n}: idle for {} s", options.idle.as_secs());
    let idle = scale::idle(cluster, options.idle);
    say!(
        "N={n}: idle CPU of all workers {}, {} context switches",
        idle.cpu_pct.map_or("-".into(), |p| format!("{p:.3}%")),
        idle.switches.map_or("-".into(), |s| s.to_string())
    );
    let rounds = scale::broadcasts_beside_floor(
        cluster,
        fleet,
        (exe, sources),
        (options.rounds, options.message_bytes),
        (options.floor_sockets, options.budget, true),
    );
    Ok(Rung {
        held,
        spread,
        memory,
        idle,
        rounds,
    })
}

/// Clients (or floor sockets) one process of the benchmark's holds: the open-files limit
/// less the load bench's headroom.
fn per_process() -> usize {
    let limit = comet_chat::sys::open_files_limit().map_or(20_000, |(soft, _)| soft);
    (limit as usize).saturating_sub(args::FD_HEADROOM as usize)
}

/// The steady cost of the poll timeout at the top rung: the workers start again with
/// `--poll-timeout` (the default 20 s), the same clients connect again, and every one of
/// them answers each timeout with a new poll, as a page does. Measured over `window`
/// after one full timeout period: the workers' CPU and the timeouts they answered; and at
/// the end, whether every client is still connected.
fn timeout_phase(
    options: &Options,
    (cluster, fleet, sources): (Cluster, &mut Fleet, &mut Sources),
    redis: &Redis,
    (workers, n): (usize, usize),
    (poll_timeout, window): (u64, Duration),
) -> Result<Timeouts, String> {
    say!("poll timeouts: closing {n} clients and restarting the workers with --poll-timeout {poll_timeout}");
    fleet.close_all()?;
    cluster.stop();
    let mut cluster = Cluster::start(&options.server_bin, workers, &redis.args(), poll_timeout)?;
    cluster
        .wait_answers_up_to(BUSY_ANSWER_WAIT)
        .map_err(|e| format!("poll timeouts: the workers' /stats connections: {e}"))?;
    fleet.retarget(cluster.addr);
    let started = Instant::now();
    let grown = fleet.grow_to(n, sources, started + HOLD_CAP)?;
    say!(
        "poll timeouts: {} clients open again in {:.1} s ({} failed); each answers every \
         timeout with a new poll",
        grown.opened,
        started.elapsed().as_secs_f64(),
        grown.failed
    );
    let warm = Duration::from_secs(poll_timeout);
    let tail = Duration::from_secs(2);
    let churn_time = warm + window + tail;
    fleet.churn_start(churn_time)?;
    host::sleep_until(Instant::now() + warm);
    let read = |e: std::io::Error| format!("poll timeouts: reading the workers' /stats: {e}");
    let t0 = cluster.timeouts().map_err(read)?;
    let cpu0 = cluster.cpu_time();
    let at0 = Instant::now();
    host::sleep_until(at0 + window);
    let t1 = cluster.timeouts().map_err(read)?;
    let cpu1 = cluster.cpu_time();
    let measured = at0.elapsed();
    let (churned, open_after) = fleet.churn_finish()?;
    let connections: u64 = cluster
        .per_worker()
        .map_err(read)?
        .iter()
        .map(|w| w.stats.connections)
        .sum();
    // Each worker counts its own kept /stats connection, and one of them the poster's.
    let server_connections = connections.saturating_sub(workers as u64 + 1);
    let timeouts = Timeouts {
        poll_timeout,
        n,
        opened: grown.opened,
        window: measured,
        timeouts_per_sec: t1.saturating_sub(t0) as f64 / measured.as_secs_f64(),
        cpu_pct: cpu1
            .zip(cpu0)
            .map(|(a, b)| 100.0 * a.saturating_sub(b).as_secs_f64() / measured.as_secs_f64()),
        churned,
        churn_time,
        open_after,
        server_connections,
    };
    say!(
        "poll timeouts: {:.0} timeouts/s answered (expected {:.0}), workers' CPU {}, {} clients \
         open at the end, {} failed",
        timeouts.timeouts_per_sec,
        n as f64 / poll_timeout as f64,
        timeouts
            .cpu_pct
            .map_or("-".into(), |p| format!("{p:.1}% of a core")),
        open_after,
        timeouts.churned.failed
    );
    cluster.stop();
    Ok(timeouts)
}
