//! # The hostile-client benchmark
//!
//! ```sh
//! cargo bench --bench hostile                 # every phase, two or three minutes
//! cargo bench --bench hostile -- --phase b    # one of them
//! ```
//!
//! Owns one question: while hostile clients attack the server, how long does a
//! well-behaved client in another room wait? One loop serves everybody, so any request
//! that makes the loop do unbounded work in one pass, or hold unbounded memory, is felt by
//! everyone. The bench builds the release server (`cargo build --release --bin
//! comet-chat`), and for each phase starts a fresh one on a free loopback port with a 2 s
//! `--poll-timeout` (so presence expires within the run), runs the well-behaved client
//! against it from start to end, measures a quiet baseline, then attacks:
//!
//! - **a, presence flood**: up to 60,000 distinct names made in one room by pipelined
//!   polls, while 100 event streams in that room read everything; then the wait while all
//!   those names expire and the server sweeps them.
//! - **b, pipelining flood**: 20,000 tiny posts in one send into a room with 100 streams.
//! - **c, replay hoarders**: 100 clients ask for 4 MiB of history each and never read;
//!   the server's RSS is reported before, during and after `--write-timeout` drops them.
//! - **d, announcement burst**: the server runs with `--redis` (a redis-server the bench
//!   starts), and 100,000 typing announcements are `PUBLISH`ed into Redis on the channel
//!   it subscribes to, as typists on many nodes would make them; the server's CPU time
//!   for the burst is reported.
//! - **e, room-cap fillers**: 50 source addresses give 64 rooms each their first message at
//!   once, past `--max-rooms`; then: do 20 calm rooms made just before still hold their
//!   message, and can a calm client make a new room and chat in it?
//! - **f, timeout wave**: 19,500 room polls from 127.0.0.2–11 park with a 10 s
//!   `--poll-timeout`; the bench SIGSTOPs the server just before the first deadline and
//!   SIGCONTs it just after the last, so all fall due in the same tick, as when a loop is
//!   held up in production; the calm client's latency is measured from SIGCONT, and the
//!   time until the last poll's answer reaches the bench is reported.
//!
//! It prints one row per window (baseline, attack, aftermath) with the client's round trip
//! and delivery latency, p50 / p99 / max, and the target **p99 ≤ 50 ms** as PASS or MISS;
//! then what each attack got (statuses, names, streams, RSS). `bench-results/hostile.json`
//! holds the same. Without `--bench` (`cargo test --benches`) every count shrinks to a
//! smoke run of a few seconds. `-- --help` lists the options.
//!
//! ## What it deliberately is not
//!
//! Not a test: the target is printed, never asserted; the machine is shared and noisy.
//! It only talks to loopback, every loop in it is bounded in count and in time (an attack
//! that runs out of time is reported as such and the run moves on), and the servers are
//! the only processes it starts besides `cargo build`, `date` and phase d's redis-server,
//! each stopped by its own PID (the servers through the launcher all benchmarks share,
//! `benches/shared/server.rs`, which phase f also uses to SIGSTOP and SIGCONT its server).
//!
//! ## A tour, in reading order
//!
//! - [`names`], [`posts`], [`hoard`], [`announce`], [`rooms`], [`wave`] — the phases, one
//!   attack each. Start here.
//! - [`stage`] — what every phase shares: a fresh server, the probes and the RSS sampler
//!   running all along, named windows of time, and each window's figures.
//! - [`probe`] — the well-behaved client: round trips and deliveries, on their schedule.
//! - [`dist`] — latencies → p50 / p99 / max, corrected for coordinated omission.
//! - [`attacker`] — one connection that pipelines everything and counts the answers.
//! - [`watchers`] — event streams in the attacked room that read everything.
//! - [`rss`] — the server's RSS from /proc, sampled on its own thread.
//! - [`http`] — requests, response framing, `/stats`; [`host`] — CPUs, priorities and
//!   machine facts; [`args`] — the command line and the sizes of every attack.
//! - [`report`] — the table and `hostile.json`.
//! - [`server`] — the shared launcher.

/// Prints one progress line on stderr, stamped with the seconds since the run began.
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("[{:7.1} s] {}", $crate::elapsed_secs(), format!($($arg)*))
    };
}

// The modules live in benches/hostile/ (and benches/shared/); a bench root looks for them
// beside itself.
#[path = "hostile/announce.rs"]
mod announce;
#[path = "hostile/args.rs"]
mod args;
#[path = "hostile/attacker.rs"]
mod attacker;
#[path = "hostile/dist.rs"]
mod dist;
#[path = "hostile/hoard.rs"]
mod hoard;
#[path = "hostile/host.rs"]
mod host;
#[path = "hostile/http.rs"]
mod http;
#[path = "shared/http_conn.rs"]
mod http_conn;
#[path = "hostile/names.rs"]
mod names;
#[path = "shared/parent_death.rs"]
mod parent_death;
#[path = "hostile/posts.rs"]
mod posts;
#[path = "hostile/probe.rs"]
mod probe;
#[path = "shared/procfs.rs"]
mod procfs;
#[path = "hostile/report.rs"]
mod report;
#[path = "hostile/rooms.rs"]
mod rooms;
#[path = "hostile/rss.rs"]
mod rss;
#[path = "shared/server.rs"]
mod server;
#[path = "hostile/stage.rs"]
mod stage;
#[path = "hostile/watchers.rs"]
mod watchers;
#[path = "hostile/wave.rs"]
mod wave;

use args::{Options, Phase};
use stage::Ctx;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// When the run began, for the progress stamps.
static START: OnceLock<Instant> = OnceLock::new();

/// Seconds since the run began (the first call).
fn elapsed_secs() -> f64 {
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn main() -> ExitCode {
    elapsed_secs();
    let options = match args::parse(std::env::args_os().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("hostile: {message}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            say!("hostile benchmark failed: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The whole run: placement, the binary, each phase on its own server, the report. A phase
/// that fails is reported as such and the next one runs.
fn run(options: &Options) -> Result<(), String> {
    let started = Instant::now();
    let machine = host::machine();
    let bin = match &options.server_bin {
        Some(bin) => bin.clone(),
        None => {
            say!("cargo build --release --bin comet-chat");
            server::build_release().map_err(|e| format!("cannot build the server: {e}"))?
        }
    };
    // After the build (which should have every CPU) and before any thread exists, so
    // every thread of the bench inherits the placement.
    let placement = place_processes(options.pin);
    let ctx = Ctx {
        bin: bin.clone(),
        sizes: options.sizes.clone(),
        server_cpu: placement.map(|(server, _)| server),
    };
    let mut phases = Vec::new();
    for &phase in &options.phases {
        let result = match phase {
            Phase::Names => names::run(&ctx),
            Phase::Pipeline => posts::run(&ctx),
            Phase::Hoard => hoard::run(&ctx),
            Phase::Announce => announce::run(&ctx),
            Phase::Rooms => rooms::run(&ctx),
            Phase::Wave => wave::run(&ctx),
        };
        phases.push(result.map_err(|e| {
            say!("phase {} failed: {e}", phase.letter());
            (phase.letter(), e)
        }));
    }
    let run = report::Run {
        options,
        machine,
        bin: bin.display().to_string(),
        placement,
        phases,
        seconds: started.elapsed().as_secs_f64(),
    };
    println!("{}", report::table(&run));
    report::write(&run, &options.out_dir)?;
    say!(
        "wrote {}/hostile.json",
        options.out_dir.display().to_string()
    );
    // A phase that could not run is reported in the table; the exit status says so too,
    // so that `cargo test --benches` (the smoke sizes) fails when a phase breaks.
    let failed: Vec<String> = run
        .phases
        .iter()
        .filter_map(|phase| phase.as_ref().err())
        .map(|(letter, e)| format!("phase {letter}: {e}"))
        .collect();
    if !failed.is_empty() {
        return Err(failed.join("; "));
    }
    Ok(())
}

/// Pins the bench to the second allowed CPU and returns (server CPU, bench CPU), or `None`
/// when not pinning. The server gets a core of its own, as in production; the bench's
/// attackers and watchers share the other with the probe, at a lower priority than it
/// (see [`host::lower_priority`]).
fn place_processes(pin: bool) -> Option<(usize, usize)> {
    let cpus = procfs::allowed_cpus();
    if !pin || cpus.len() < 2 {
        return None;
    }
    let (server, bench) = (cpus[0], cpus[1]);
    match server::pin_to_cpu(bench) {
        Ok(()) => {
            say!("pinned: server on CPU {server}, bench on CPU {bench}");
            Some((server, bench))
        }
        Err(e) => {
            say!("cannot pin to CPU {bench}: {e}; running unpinned");
            None
        }
    }
}

/// Sleeps in short steps until `deadline`.
fn sleep_until(deadline: Instant) {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}
