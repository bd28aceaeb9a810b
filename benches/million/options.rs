//! The command line of `cargo bench --bench million`, its defaults, and the two lighter
//! runs: `--quick` (under a minute) and the smoke run `cargo test --benches` makes (no
//! `--bench` among the arguments), which still starts a real Redis and real workers.

use crate::args::{number, text};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The ladder of the issue: clients held, rung by rung, without closing any between rungs.
pub const LADDER: [usize; 5] = [100_000, 250_000, 500_000, 750_000, 1_000_000];

/// Rungs tried past the million, each only while the box has the memory and the workers
/// the descriptors for it.
pub const BEYOND: [usize; 4] = [1_500_000, 2_000_000, 3_000_000, 4_000_000];

/// The `--help` text.
pub const USAGE: &str = "\
million: a million waiting long-polls on one box, through one address

USAGE: cargo bench --bench million [-- OPTIONS]

Starts redis-server and comet-chat --workers W --redis on one port, then load-generator
processes that hold a ladder of waiting polls: 100k, 250k, 500k, 750k, 1M, then 1.5M,
2M, 3M, 4M while the box allows: each rung first checks memory (2 GiB kept free), the
kernel's open-files table and the workers' connection caps, and the ladder stops with
the reason at the first rung one of them cannot take. Raises the sysctls it needs and
puts them back. Without --bench (cargo test --benches): a smoke run of 2 workers and
2,000 clients, results in $TMPDIR/comet-chat-million-smoke.

OPTIONS:
  --target N              climb the ladder to N clients (rungs past 1M: 1.5M, 2M, 3M, 4M
                          below N, then N)       [default: go past 1,000,000]
  --ladder N,N,...        the rungs, instead of the issue's
  --workers W             worker processes [default: enough for the top rung, at most 256]
  --quick                 10k and 50k clients on 4 workers, short windows (under a minute)
  --rounds R              broadcasts per rung                [default: 3]
  --idle SECS             idle window per rung               [default: 10]
  --floor-sockets N       most sockets each kernel floor (paired, spread; both held at
                          once) holds; more writes are made in passes [default: 250000]
  --ladder-poll-timeout SECS
                          the workers' --poll-timeout while the ladder runs; longer
                          than the run, so the idle window has nothing due [default: 3600]
  --timeout-window SECS   window of the poll-timeout phase   [default: 20]
  --no-timeouts           skip the poll-timeout phase
  --per-source N          client sockets per source address 127.0.0.x [default: 5000]
  --message-bytes N       chat message length                [default: 100]
  --as-booted             keep the box's own established-connections hash; without it a
                          full run started as root runs in a network namespace of its
                          own whose hash is sized for its sockets, as docs/DEPLOY.md
                          says to size it on a box that holds a million
  --server-bin PATH       server binary [default: the bench build's comet-chat]
  --budget SECS           time for the whole run             [default: 3000]
  --out DIR               results directory                  [default: bench-results]
  -h, --help              print this help

Results: DIR/million.json, DIR/million.txt, DIR/million.svg.
";

/// Settings of one run.
pub struct Options {
    /// Rungs, in order (the ladder up to `--target`).
    pub ladder: Vec<usize>,
    /// Whether to try [`BEYOND`] after the ladder.
    pub beyond: bool,
    /// Workers; 0 = chosen from the top rung.
    pub workers: usize,
    /// Broadcasts per rung.
    pub rounds: usize,
    /// Idle window per rung.
    pub idle: Duration,
    /// Most floor sockets at once.
    pub floor_sockets: usize,
    /// The workers' `--poll-timeout` during the ladder.
    pub ladder_poll_timeout: u64,
    /// The poll-timeout phase: the server's `--poll-timeout` (the default 20 s) and the
    /// window measured; `None` skips it.
    pub timeouts: Option<(u64, Duration)>,
    /// Client sockets per source address.
    pub per_source: usize,
    /// Message length.
    pub message_bytes: usize,
    /// The server binary.
    pub server_bin: PathBuf,
    /// Time for the whole run.
    pub budget: Duration,
    /// Where results go.
    pub out_dir: PathBuf,
    /// "full", "quick" or "smoke", for the report.
    pub mode: &'static str,
    /// Keep the box's established hash instead of a sized one of the run's own.
    pub as_booted: bool,
}

/// What the command line asked for.
pub enum Parsed {
    /// Run the benchmark.
    Run(Options),
    /// Print usage.
    Help,
}

/// Parses the arguments after the program name.
pub fn parse(args: Vec<OsString>) -> Result<Parsed, String> {
    use lexopt::prelude::*;
    let smoke = !args.iter().any(|arg| arg == "--bench");
    let quick = args.iter().any(|arg| arg == "--quick");
    let mut o = Options {
        ladder: LADDER.to_vec(),
        beyond: true,
        workers: 0,
        rounds: 3,
        idle: Duration::from_secs(10),
        floor_sockets: 250_000,
        ladder_poll_timeout: 3_600,
        timeouts: Some((20, Duration::from_secs(20))),
        per_source: 5_000,
        message_bytes: 100,
        server_bin: PathBuf::from(env!("CARGO_BIN_EXE_comet-chat")),
        budget: Duration::from_secs(3_000),
        out_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-results"),
        mode: "full",
        as_booted: false,
    };
    if quick {
        o.ladder = vec![10_000, 50_000];
        o.beyond = false;
        o.workers = 4;
        o.rounds = 2;
        o.idle = Duration::from_secs(3);
        o.timeouts = Some((2, Duration::from_secs(4)));
        o.budget = Duration::from_secs(120);
        o.mode = "quick";
    } else if smoke {
        o.ladder = vec![2_000];
        o.beyond = false;
        o.workers = 2;
        o.rounds = 1;
        o.idle = Duration::from_secs(1);
        o.timeouts = Some((1, Duration::from_secs(2)));
        o.budget = Duration::from_secs(60);
        o.out_dir = std::env::temp_dir().join("comet-chat-million-smoke");
        o.mode = "smoke";
    }
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("target") => {
                let target: usize = number(&mut parser, "--target")?;
                o.ladder = LADDER.iter().chain(&BEYOND).copied().collect();
                o.ladder.retain(|&n| n < target);
                o.ladder.push(target);
                o.beyond = false;
            }
            Long("ladder") => {
                o.ladder = text(&mut parser, "--ladder")?
                    .split(',')
                    .map(|n| n.trim().parse::<usize>().ok().filter(|&n| n > 0))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("--ladder: positive counts like 100000,250000")?;
                o.beyond = false;
            }
            Long("workers") => o.workers = number(&mut parser, "--workers")?,
            Long("quick") | Long("bench") => {}
            Long("rounds") => o.rounds = number(&mut parser, "--rounds")?,
            Long("idle") => o.idle = Duration::from_secs(number(&mut parser, "--idle")?),
            Long("floor-sockets") => o.floor_sockets = number(&mut parser, "--floor-sockets")?,
            Long("timeout-window") => {
                let secs = number(&mut parser, "--timeout-window")?;
                o.timeouts = o.timeouts.map(|(t, _)| (t, Duration::from_secs(secs)));
            }
            Long("no-timeouts") => o.timeouts = None,
            Long("as-booted") => o.as_booted = true,
            Long("ladder-poll-timeout") => {
                o.ladder_poll_timeout = number(&mut parser, "--ladder-poll-timeout")?
            }
            Long("per-source") => o.per_source = number(&mut parser, "--per-source")?,
            Long("message-bytes") => o.message_bytes = number(&mut parser, "--message-bytes")?,
            Long("server-bin") => o.server_bin = text(&mut parser, "--server-bin")?.into(),
            Long("budget") => o.budget = Duration::from_secs(number(&mut parser, "--budget")?),
            Long("out") => o.out_dir = text(&mut parser, "--out")?.into(),
            Short('h') | Long("help") => return Ok(Parsed::Help),
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    o.ladder.sort_unstable();
    o.ladder.dedup();
    if o.rounds == 0 || o.per_source == 0 || o.floor_sockets == 0 {
        return Err("--rounds, --per-source and --floor-sockets must be at least 1".into());
    }
    if o.message_bytes < 32 {
        return Err("--message-bytes: at least 32".into());
    }
    if o.workers > crate::MAX_WORKERS {
        return Err(format!(
            "--workers: comet-chat runs at most {}",
            crate::MAX_WORKERS
        ));
    }
    Ok(Parsed::Run(o))
}
