//! # The connection and fan-out load benchmark
//!
//! `cargo bench --bench load [-- OPTIONS]` measures the release server the way the issue
//! asks: how many parked polls it holds and what each costs in memory and idle CPU, how
//! fast one message reaches every one of them, how that compares with the kernel's own
//! floor for writing the same bytes to the same number of sockets, and how fast it accepts
//! a burst of connections. `-- --help` lists the options.
//!
//! ## What it deliberately is not
//!
//! Not a test: targets are printed with PASS/MISS next to the figures, never asserted.
//! Not async and not threaded: the load generator is one `mio::Poll` on one thread, like
//! the server it measures, and runs in its own process so each side has its own open-files
//! budget. It only ever talks to loopback addresses, and every loop in it is bounded in
//! count and in time; a phase that runs out of time is reported as errors and the run moves
//! on.
//!
//! ## A tour, in reading order
//!
//! - [`ladder`] — one rung of N connections: open, park, idle, fan-out rounds, floor.
//!   Start here.
//! - [`transport`] — `--transport poll|sse|ws|all`: what each kind of client sends and
//!   how what it reads is framed (HTTP answers, SSE events, WebSocket frames); `all`
//!   runs the three one after another at each N, each on a fresh server, into one table.
//! - [`single`] — post → delivery latency with one parked client.
//! - [`workers`] — `--workers W`: W worker processes and Redis beside one process, run
//!   through [`scale`]'s steps with a [`fleet`] of load-generator processes, against a
//!   [`cluster`] (Redis, supervisor, one `/stats` connection per worker), with posts
//!   spread over many [`rooms`]; [`backplane`] starts its Redis: one, `--shards N`, or a
//!   master, a replica and three Sentinels (`--sentinel`).
//! - [`pool`] — the N client sockets and their single-threaded event loop.
//! - [`floor`] — the kernel floor: a child process writes the same bytes to N sockets in a
//!   plain loop, no HTTP, no server; another child reads them. Its rounds alternate with
//!   the server's.
//! - [`target`] — the server under test: started as a child process by the launcher all
//!   benchmarks share ([`server`], `benches/shared/server.rs`), or attached to.
//! - [`api`] — `/stats` and `POST /chat` over plain blocking sockets.
//! - [`wire`] — the few bytes of HTTP the clients send and recognise.
//! - [`child`] — the floor's child processes, always stopped by their own PID.
//! - [`host`] — open-files limits, a process's RSS and CPU time, machine facts.
//! - [`dist`] — samples → percentiles.
//! - [`report`] — the table, the JSON and the targets; [`svg`] draws the two plots.
//! - [`args`] — the command line.
//!
//! ## Running it
//!
//! The default ladder (1,000 to 19,500 connections, 5 rounds each) takes under a minute
//! on two cores; `--transport all` (19,500 of each transport) about two; `--budget` caps
//! the whole run. With two or more CPUs the server and the
//! floor writer run on one and the load generator on another (see `place_processes`).
//! Results land in `bench-results/`: `table.txt` (what is printed), `load.json`,
//! `rss.svg` (server RSS against polls held) and `fanout.svg` (latency CDF per N).

#[macro_use]
#[path = "load/progress.rs"]
mod progress;

// The modules live in benches/load/; a bench root looks for them beside itself.
#[path = "load/api.rs"]
mod api;
#[path = "load/args.rs"]
mod args;
#[path = "load/backplane.rs"]
mod backplane;
#[path = "load/child.rs"]
mod child;
#[path = "load/cluster.rs"]
mod cluster;
#[path = "load/dist.rs"]
mod dist;
#[path = "load/fleet.rs"]
mod fleet;
#[path = "load/floor.rs"]
mod floor;
#[path = "load/host.rs"]
mod host;
#[path = "load/ladder.rs"]
mod ladder;
#[path = "shared/parent_death.rs"]
mod parent_death;
#[path = "load/pool.rs"]
mod pool;
#[path = "shared/procfs.rs"]
mod procfs;
#[path = "load/report.rs"]
mod report;
#[path = "load/rooms.rs"]
mod rooms;
#[path = "load/scale.rs"]
mod scale;
#[path = "shared/server.rs"]
mod server;
#[path = "load/single.rs"]
mod single;
#[path = "load/svg.rs"]
mod svg;
#[path = "load/target.rs"]
mod target;
#[path = "load/transport.rs"]
mod transport;
#[path = "load/wire.rs"]
mod wire;
#[path = "load/workers.rs"]
mod workers;

use args::{Mode, Options, FD_HEADROOM};
use progress::elapsed_secs;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let mode = match args::parse(std::env::args_os().skip(1)) {
        Ok(mode) => mode,
        Err(message) => {
            eprintln!("load: {message}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    match mode {
        Mode::Help => {
            print!("{}", args::USAGE);
            ExitCode::SUCCESS
        }
        Mode::FloorWriter(floor_args) => floor::writer_main(&floor_args),
        Mode::FloorReader(floor_args) => floor::reader_main(&floor_args),
        Mode::Generator(generator_args) => fleet::generator_main(&generator_args),
        Mode::Load(options) => match run(options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                say!("load benchmark failed: {message}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The whole run: limits, the one-subscriber phase, every rung, then the report.
fn run(options: Options) -> Result<(), String> {
    elapsed_secs();
    let started = Instant::now();
    let deadline = started + options.budget;
    if options.attach.is_none() && !options.server_bin.exists() {
        return Err(format!(
            "server binary {} is missing (cargo bench builds it; so does cargo build --release)",
            options.server_bin.display()
        ));
    }
    if options.workers > 0 {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
        host::raise_open_files_limit();
        return workers::run(&options, &exe);
    }
    let limits = host::raise_open_files_limit();
    say!(
        "open files: soft {} (was {}), hard {}",
        limits.soft,
        limits.soft_before,
        limits.hard
    );
    let machine = host::machine();
    let steal_before = host::steal_ticks();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let mut ctx = ladder::Ctx {
        options: &options,
        sources: pool::Sources::new(options.sockets_per_source),
        deadline,
        exe,
        server_limit: None,
        server_cpu: None,
        client_cpu: None,
    };

    // One subscriber twice when pinning: first where the scheduler puts the two processes
    // (for a ping-pong it usually shares one CPU), then pinned apart like the rest of the
    // run, where every delivery is a wake-up across CPUs (see `place_processes`).
    let run_single = |ctx: &mut ladder::Ctx<'_>, label: &str| match single::run(ctx, label) {
        Ok(single) => Some(single),
        Err(e) => {
            say!("one-subscriber phase ({label}) failed: {e}");
            None
        }
    };
    let single_unpinned = if options.pin && options.single_rounds > 0 {
        run_single(&mut ctx, "unpinned")
    } else {
        None
    };
    let placement = place_processes(&options);
    ctx.server_cpu = placement.map(|(server, _)| server);
    ctx.client_cpu = placement.map(|(_, client)| client);
    let label = if placement.is_some() {
        "pinned"
    } else {
        "unpinned"
    };
    let single = if options.single_rounds > 0 {
        run_single(&mut ctx, label)
    } else {
        None
    };

    // The server's own limit is known once it has answered /stats; both processes must fit
    // the rung, with headroom for listeners, the stats and poster sockets, epoll and stdio.
    let limit = ctx
        .server_limit
        .map_or(limits.soft, |server| server.min(limits.soft));
    let (ladder, clamp_note) = args::clamp_ladder(&options.ladder, limit);
    if let Some(note) = &clamp_note {
        say!("{note}");
    }

    let mut rungs = Vec::new();
    let mut notes = Vec::new();
    for &n in &ladder {
        // The transports of one N back to back, so they share the machine's mood.
        for &transport in &options.transports {
            // A rung needs time to open, idle, fan out and run the floor; starting one
            // that cannot finish would only produce a row of timeouts.
            let left = deadline.saturating_duration_since(Instant::now());
            let needed = ladder::time_needed(&options, n);
            if left < needed {
                let note = format!(
                    "N={n} {} skipped: {:.0} s of the {} s budget left, about {:.0} s needed",
                    transport.name(),
                    left.as_secs_f64(),
                    options.budget.as_secs(),
                    needed.as_secs_f64()
                );
                say!("{note}");
                notes.push(note);
                continue;
            }
            rungs.push(ladder::run_rung(&mut ctx, n, transport));
        }
    }

    let steal_pct = host::steal_ticks()
        .zip(steal_before)
        .and_then(|(after, before)| {
            let total = after.1.saturating_sub(before.1);
            (total > 0).then(|| 100.0 * after.0.saturating_sub(before.0) as f64 / total as f64)
        });
    let run = report::Run {
        machine,
        placement,
        steal_pct,
        limits,
        server_limit: ctx.server_limit,
        requested_ladder: options.ladder.clone(),
        ladder,
        clamp_note,
        fd_headroom: FD_HEADROOM,
        options: &options,
        single,
        single_unpinned,
        rungs,
        notes,
        elapsed: started.elapsed(),
    };
    let table = report::table(&run);
    println!("{table}");
    report::write_files(&run, &table, &options.out_dir)?;
    if options.smoke {
        smoke_verdict(&run.rungs, run.ladder.len() * options.transports.len())?;
    }
    Ok(())
}

/// A smoke run is a test of the benchmark itself: every rung asked for must have run,
/// held every client and seen no error, or the run fails.
fn smoke_verdict(rungs: &[ladder::RungResult], expected: usize) -> Result<(), String> {
    let mut failed: Vec<String> = rungs
        .iter()
        .filter(|r| r.errors.total() > 0 || r.held < r.n as u64 || r.fanout.is_none())
        .map(|r| {
            format!(
                "N={} {}: {} held, {} errors",
                r.n,
                r.transport.name(),
                r.held,
                r.errors.total()
            )
        })
        .collect();
    if rungs.len() < expected {
        failed.push(format!("{} of {expected} rungs ran", rungs.len()));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("smoke run: {}", failed.join("; ")))
    }
}

/// Pins the load generator (and later the floor reader) to the second allowed CPU and returns (server CPU, load
/// generator CPU), or `None` when not pinning.
///
/// Unpinned, the scheduler's wake-affine logic pulls the client onto the CPU of the
/// server that wakes it with every write: during a fan-out the two then share one core
/// (server ~60 % + client ~40 %) while the other idles, and the figures measure the
/// scheduler. Pinned, each side has a core of its own, as a server in production would.
fn place_processes(options: &Options) -> Option<(usize, usize)> {
    let cpus = procfs::allowed_cpus();
    if !options.pin || cpus.len() < 2 {
        return None;
    }
    let (server, client) = (cpus[0], cpus[1]);
    match host::pin_to_cpu(client) {
        Ok(()) => {
            say!(
                "pinned: server and floor writer on CPU {server}, \
                 load generator and floor reader on CPU {client}"
            );
            Some((server, client))
        }
        Err(e) => {
            say!("cannot pin to CPU {client}: {e}; running unpinned");
            None
        }
    }
}
