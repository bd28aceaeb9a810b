//! The command line: what `cargo bench --bench load -- …` may pass, the defaults a plain
//! `cargo bench --bench load` runs with, and the hidden mode in which the benchmark's own
//! binary becomes the floor writer (see [`crate::floor`]).

use crate::transport::Transport;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Connection counts run when `--ladder` is not given. The top rung is the target:
/// a 20,000 open-files limit less [`FD_HEADROOM`].
pub const DEFAULT_LADDER: [usize; 4] = [1_000, 5_000, 10_000, 19_500];

/// The ladder of a run of more than one transport without `--ladder`: the one
/// figure per transport, at the top rung.
pub const SIDE_BY_SIDE_LADDER: [usize; 1] = [19_500];

/// Descriptors kept free below the open-files limit in each process: listener, epoll,
/// eventfd, the stats and poster sockets, stdio, the floor's control socket, with room to
/// spare. The top rung is clamped to `limit - FD_HEADROOM`.
pub const FD_HEADROOM: u64 = 500;

/// Most shards `--shards` starts: each is a redis-server process, and a subscription for
/// every worker.
pub const MAX_SHARDS: usize = 16;

/// The `--help` text.
pub const USAGE: &str = "\
load: connection and fan-out load benchmark for comet-chat

USAGE: cargo bench --bench load [-- OPTIONS]

Without --bench (cargo test --benches) the defaults shrink to a smoke run:
ladder 200, 2 rounds, idle 1 s, all three transports, results in
$TMPDIR/comet-chat-load-smoke; a rung with any error then fails the run.
The workers scenario has one too, e.g. cargo test --release --bench load --
--workers 2 --sentinel (or --shards 3): real Redis processes, about 10 s.

OPTIONS:
  --ladder N,N,...        connection counts to hold      [default: 1000,5000,10000,19500;
                          19500 with --transport all]
  --transport T           how the clients wait: poll (GET /chat, again after each
                          answer), sse (GET /rooms/lobby/events), ws (WebSocket,
                          GET /rooms/lobby/ws), or all: the three one after another
                          at each N, in one run and one table  [default: poll]
                          (a server it starts has --heartbeat 600; give an attached
                          one as long, or its pings drop the silent ws clients)
  --rounds R              fan-out rounds per rung        [default: 5]
  --single-rounds R       one-subscriber rounds          [default: 200]
  --idle SECS             idle CPU window per rung       [default: 5]
  --addr HOST:PORT        attach to a running server on loopback (needs --pid)
  --pid PID               that server's process id, for its RSS and CPU
  --server-bin PATH       server binary to start         [default: the bench build's comet-chat]
  --per-source N          client sockets per source address 127.0.0.x [default: 5000]
  --message-bytes N       chat message length            [default: 100]
  --no-pin                let the scheduler place processes (default: server and
                          floor writer on the first allowed CPU, load generator on
                          the second)
  --budget SECS           time for the whole run; later rungs are skipped [default: 540]
  --workers W             run the workers scenario instead: Redis and --workers W on
                          one port beside one process (see benches/load/workers.rs);
                          --ladder then counts clients held over all workers
                          [default ladder: 19500, 39000, ... up to 3/4 of W x 19500;
                          ladder 200 without --bench]
  --sentinel              with --workers: a master, one replica and three
                          redis-sentinel instead of one Redis; the server gets
                          --redis redis+sentinel://...
  --replicas N            with --sentinel: the server's --redis-replicas N
  --shards N              with --workers: N redis-server, one --redis each (rooms
                          spread over them by the server) [at most 16]
  --admin                 start the server with --admin-addr 127.0.0.1:0: its admin
                          listener on and idle, to compare with a run without it
  --out DIR               results directory              [default: bench-results]
  -h, --help              print this help

Results: DIR/load.json, DIR/table.txt, DIR/rss.svg, DIR/fanout.svg.
";

/// Settings of one load run.
pub struct Options {
    /// Connection counts, in the order run (before clamping to the open-files limit).
    pub ladder: Vec<usize>,
    /// Broadcasts per rung; percentiles pool all of their deliveries.
    pub rounds: usize,
    /// Broadcasts in the one-subscriber phase.
    pub single_rounds: usize,
    /// How long each rung sits idle holding its polls while the server's CPU is sampled.
    pub idle: Duration,
    /// A server to measure instead of starting one: its address and PID.
    pub attach: Option<(SocketAddr, u32)>,
    /// The server binary started when not attaching.
    pub server_bin: PathBuf,
    /// Client sockets bound to one source address before moving to the next.
    pub sockets_per_source: usize,
    /// Length of every broadcast message, so server and floor write equal byte counts.
    pub message_bytes: usize,
    /// Wall-clock budget for the whole run.
    pub budget: Duration,
    /// Where results are written.
    pub out_dir: PathBuf,
    /// Pin the server (and floor writer) and the load generator to different CPUs.
    pub pin: bool,
    /// `--workers W`: the workers scenario with W workers (0: the plain ladder).
    pub workers: usize,
    /// Whether `--ladder` was given (the workers scenario has a default of its own).
    pub ladder_given: bool,
    /// The transports measured at each rung, in order (`--transport`; one unless `all`).
    pub transports: Vec<Transport>,
    /// `--sentinel`: the workers scenario's Redis is a master, a replica and three
    /// Sentinels (see [`crate::backplane`]).
    pub sentinel: bool,
    /// `--replicas N`: with `--sentinel`, the server's `--redis-replicas N`.
    pub replicas: u32,
    /// `--shards N`: the workers scenario's Redis is N shards (0: not asked for).
    pub shards: usize,
    /// `--admin`: the started server has its admin listener on (and nobody looking).
    pub admin: bool,
    /// A smoke run (no `--bench`): small, and a test: any rung's error fails it.
    pub smoke: bool,
}

/// Settings of the hidden child modes: the floor's writer and reader ([`crate::floor`])
/// and a load generator ([`crate::fleet`], which uses `source_start`, `per_source`,
/// `message_bytes` and `budget`).
pub struct FloorArgs {
    /// Sockets between writer and reader.
    pub count: usize,
    /// The writer's port (reader only).
    pub port: u16,
    /// Where the reader's source addresses start in the run's sequence (reader only).
    pub source_start: u64,
    /// Sockets per source address, as in [`Options::sockets_per_source`].
    pub per_source: usize,
    /// Time for the reader to connect its sockets (reader only).
    pub connect_budget: Duration,
    /// Message length, as in [`Options::message_bytes`].
    pub message_bytes: usize,
    /// The writer exits by itself after this long, whatever its parent does.
    pub budget: Duration,
    /// How the floor's reader waits, so what the writer writes (floor only).
    pub transport: Transport,
    /// Readers a spread floor writer serves (writer only; 0: a paired writer, one reader
    /// whose control socket arrives first on the one port).
    pub readers: usize,
    /// Every writer's (data port, control port) of a spread floor (reader only; empty:
    /// a paired reader of `port`).
    pub spread_ports: Vec<(u16, u16)>,
    /// The writer a spread reader's first socket goes to; the rest go round-robin
    /// (reader only), so the readers do not all start on the same writer.
    pub first_writer: usize,
}

/// What the command line asked for.
pub enum Mode {
    /// Run the benchmark.
    Load(Options),
    /// Be the floor writer for a parent benchmark.
    FloorWriter(FloorArgs),
    /// Be the floor reader for a parent benchmark.
    FloorReader(FloorArgs),
    /// Be one load generator of a fleet.
    Generator(FloorArgs),
    /// Print usage.
    Help,
}

/// Parses the arguments after the program name.
///
/// `cargo bench` passes `--bench`; `cargo test --benches` (or `--all-targets`) runs the
/// binary without it, and then the defaults shrink to a smoke run of a few seconds that
/// writes to the temporary directory instead of `bench-results/`, as criterion does in
/// test mode. Flags given explicitly apply either way.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Mode, String> {
    use lexopt::prelude::*;
    let args: Vec<OsString> = args.into_iter().collect();
    let smoke = !args.iter().any(|arg| arg == "--bench");
    let mut parser = lexopt::Parser::from_args(args);
    let mut options = Options {
        ladder: DEFAULT_LADDER.to_vec(),
        rounds: 5,
        single_rounds: 200,
        idle: Duration::from_secs(5),
        attach: None,
        server_bin: PathBuf::from(env!("CARGO_BIN_EXE_comet-chat")),
        sockets_per_source: 5_000,
        message_bytes: 100,
        budget: Duration::from_secs(540),
        out_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-results"),
        pin: true,
        workers: 0,
        ladder_given: false,
        sentinel: false,
        replicas: 0,
        shards: 0,
        admin: false,
        transports: vec![Transport::Poll],
        smoke,
    };
    if smoke {
        options.ladder = vec![200];
        options.rounds = 2;
        options.single_rounds = 20;
        options.idle = Duration::from_secs(1);
        options.budget = Duration::from_secs(60);
        options.out_dir = std::env::temp_dir().join("comet-chat-load-smoke");
        // Every kind of client the bench speaks, so a test run exercises them all.
        options.transports = Transport::ALL.to_vec();
    }
    let mut addr: Option<SocketAddr> = None;
    let mut pid: Option<u32> = None;
    let mut floor_mode: Option<&str> = None;
    let mut count = 0;
    let mut port = 0;
    let mut source_start = 0;
    let mut connect_secs = 40;
    let mut readers = 0;
    let mut spread_ports = Vec::new();
    let mut first_writer = 0;
    let mut transport_given = false;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("ladder") => {
                options.ladder = parse_list(&text(&mut parser, "--ladder")?)?;
                options.ladder_given = true;
            }
            Long("workers") => options.workers = number(&mut parser, "--workers")?,
            Long("sentinel") => options.sentinel = true,
            Long("replicas") => options.replicas = number(&mut parser, "--replicas")?,
            Long("shards") => options.shards = number(&mut parser, "--shards")?,
            Long("rounds") => options.rounds = number(&mut parser, "--rounds")?,
            Long("single-rounds") => {
                options.single_rounds = number(&mut parser, "--single-rounds")?
            }
            Long("idle") => options.idle = Duration::from_secs(number(&mut parser, "--idle")?),
            Long("addr") => {
                let value = text(&mut parser, "--addr")?;
                let parsed: SocketAddr = value
                    .parse()
                    .map_err(|_| format!("--addr: '{value}' is not HOST:PORT"))?;
                // Load goes to this machine only; anything else is a mistake worth stopping.
                if !parsed.ip().is_loopback() {
                    return Err(format!("--addr: {parsed} is not a loopback address"));
                }
                addr = Some(parsed);
            }
            Long("pid") => pid = Some(number(&mut parser, "--pid")?),
            Long("server-bin") => options.server_bin = text(&mut parser, "--server-bin")?.into(),
            Long("per-source") => options.sockets_per_source = number(&mut parser, "--per-source")?,
            Long("message-bytes") => {
                options.message_bytes = number(&mut parser, "--message-bytes")?
            }
            Long("budget") => {
                options.budget = Duration::from_secs(number(&mut parser, "--budget")?)
            }
            Long("out") => options.out_dir = text(&mut parser, "--out")?.into(),
            Long("no-pin") => options.pin = false,
            Long("admin") => options.admin = true,
            Long("transport") => {
                transport_given = true;
                let value = text(&mut parser, "--transport")?;
                options.transports = match value.as_str() {
                    "all" => Transport::ALL.to_vec(),
                    one => vec![Transport::parse(one).ok_or_else(|| {
                        format!("--transport: '{one}' is not poll, sse, ws or all")
                    })?],
                };
            }
            Long("floor-writer") => floor_mode = Some("writer"),
            Long("floor-reader") => floor_mode = Some("reader"),
            Long("generator") => floor_mode = Some("generator"),
            Long("count") => count = number(&mut parser, "--count")?,
            Long("port") => port = number(&mut parser, "--port")?,
            Long("source-start") => source_start = number(&mut parser, "--source-start")?,
            Long("connect-secs") => connect_secs = number(&mut parser, "--connect-secs")?,
            Long("readers") => readers = number(&mut parser, "--readers")?,
            Long("spread-ports") => {
                spread_ports = parse_ports(&text(&mut parser, "--spread-ports")?)?
            }
            Long("first-writer") => first_writer = number(&mut parser, "--first-writer")?,
            // `cargo bench` passes --bench to every bench binary.
            Long("bench") => {}
            Short('h') | Long("help") => return Ok(Mode::Help),
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    // Room for the token that tells rounds apart, e.g. "n19500-r4-1234567".
    if options.message_bytes < 32 {
        return Err("--message-bytes: at least 32".into());
    }
    if options.rounds == 0 || options.sockets_per_source == 0 {
        return Err("--rounds and --per-source must be at least 1".into());
    }
    if let Some(mode) = floor_mode {
        // A child is one writer or reader: one transport.
        let [transport] = options.transports[..] else {
            return Err("--transport: a floor child takes one transport".into());
        };
        let floor = FloorArgs {
            count,
            port,
            source_start,
            per_source: options.sockets_per_source,
            connect_budget: Duration::from_secs(connect_secs),
            message_bytes: options.message_bytes,
            budget: options.budget,
            transport,
            readers,
            spread_ports,
            first_writer,
        };
        return Ok(match mode {
            "writer" => Mode::FloorWriter(floor),
            "generator" => Mode::Generator(floor),
            _ => Mode::FloorReader(floor),
        });
    }
    if options.transports.len() > 1 && !options.ladder_given && !smoke {
        options.ladder = SIDE_BY_SIDE_LADDER.to_vec();
    }
    // A smoke run's default of every transport does not apply to the workers scenario,
    // which holds polls only.
    if smoke && options.workers > 0 && !transport_given {
        options.transports = vec![Transport::Poll];
    }
    if options.transports != [Transport::Poll] && options.workers > 0 {
        return Err("--transport: the workers scenario measures polls only".into());
    }
    if (options.sentinel || options.shards > 0) && options.workers == 0 {
        return Err("--sentinel and --shards go with --workers W".into());
    }
    if options.sentinel && options.shards > 0 {
        return Err("--sentinel or --shards, not both".into());
    }
    if options.replicas > 0 && !options.sentinel {
        return Err("--replicas goes with --sentinel".into());
    }
    if options.shards > MAX_SHARDS {
        return Err(format!("--shards: at most {MAX_SHARDS}"));
    }
    options.attach = match (addr, pid) {
        (Some(addr), Some(pid)) => Some((addr, pid)),
        (None, None) => None,
        _ => return Err("--addr and --pid go together".into()),
    };
    Ok(Mode::Load(options))
}

/// Caps every rung at `limit - FD_HEADROOM` and drops duplicates the cap creates. Returns
/// the ladder to run and, if anything changed, a sentence saying so.
pub fn clamp_ladder(ladder: &[usize], limit: u64) -> (Vec<usize>, Option<String>) {
    let cap = limit.saturating_sub(FD_HEADROOM) as usize;
    let mut out: Vec<usize> = Vec::new();
    let mut clamped = Vec::new();
    for &n in ladder {
        let n2 = n.min(cap);
        if n2 != n {
            clamped.push(n);
        }
        if n2 > 0 && !out.contains(&n2) {
            out.push(n2);
        }
    }
    let note = (!clamped.is_empty()).then(|| {
        format!(
            "rungs {clamped:?} clamped to {cap} (open-files limit {limit} - {FD_HEADROOM} headroom)"
        )
    });
    (out, note)
}

/// The value of `flag` as text.
pub fn text(parser: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| format!("{flag}: not valid UTF-8"))
}

/// The value of `flag` as a number.
pub fn number<T: std::str::FromStr>(parser: &mut lexopt::Parser, flag: &str) -> Result<T, String> {
    let value = text(parser, flag)?;
    value
        .parse()
        .map_err(|_| format!("{flag}: '{value}' is not a whole number"))
}

/// A spread floor's writers' ports, "D:C,D:C,…" (data port, control port each).
fn parse_ports(value: &str) -> Result<Vec<(u16, u16)>, String> {
    let bad = || format!("--spread-ports: '{value}' is not a list like 4000:4001,4002:4003");
    value
        .split(',')
        .map(|pair| {
            let (data, control) = pair.split_once(':').ok_or_else(bad)?;
            Ok((
                data.parse().map_err(|_| bad())?,
                control.parse().map_err(|_| bad())?,
            ))
        })
        .collect()
}

fn parse_list(value: &str) -> Result<Vec<usize>, String> {
    let list: Vec<usize> = value
        .split(',')
        .map(|part| part.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("--ladder: '{value}' is not a list like 1000,5000"))?;
    if list.is_empty() || list.contains(&0) {
        return Err("--ladder: counts must be positive".into());
    }
    Ok(list)
}
