//! The command line, and the sizes of every attack: the full ones `cargo bench --bench
//! hostile` runs, and the smoke ones `cargo test --benches` runs (without `--bench`), so
//! the bench is exercised on every test run and cannot rot.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The `--help` text.
pub const USAGE: &str = "\
hostile: one well-behaved client's latency while hostile clients attack comet-chat

USAGE: cargo bench --bench hostile [-- OPTIONS]

Without --bench (cargo test --benches) every count and window shrinks to a smoke run of a
few seconds, with results in $TMPDIR/comet-chat-hostile-smoke.

Phases (each on a fresh server, each with a quiet baseline first):
  a  presence flood: up to 60,000 distinct names in one room holding 100 event streams,
     then the wait while the names expire and the server sweeps them
  b  pipelining flood: 20,000 tiny posts in one send into a room with 100 streams
  c  replay hoarders: 100 clients ask for 4 MiB of history and never read
  d  announcement burst: 100,000 typing announcements PUBLISHed into the Redis a
     --redis server subscribes to (needs redis-server; the bench starts its own)

  e  room-cap fillers: 50 source addresses (127.0.0.10-59) give 64 rooms each their
     first message at once, past --max-rooms 1000; do 20 calm rooms made just before
     keep their messages, and can a calm client still make a room and chat?
  f  timeout wave: 19,500 room polls from 127.0.0.2-11 (--poll-timeout 10,
     --max-conns-per-client 0) fall due in the same tick: the bench SIGSTOPs the
     server before the first deadline and SIGCONTs it after the last


OPTIONS:
  --phase a|b|c|d|e|f run one phase                  [default: all of them]
  --server-bin PATH   server binary to start         [default: cargo build --release]
  --no-pin            let the scheduler place the server (default: the server on the
                      first allowed CPU, the bench on the second)
  --out DIR           results directory              [default: bench-results]
  -h, --help          print this help

Results: DIR/hostile.json; the table is printed on stdout, progress on stderr.
";

/// The attacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Presence flood, then the sweep of every name it made.
    Names,
    /// Pipelined posts into a room with many streams.
    Pipeline,
    /// Clients that ask for the whole history and never read it.
    Hoard,
    /// A burst of announcements on the Redis channel a `--redis` server subscribes to.
    Announce,
    /// Many addresses give rooms their first message, past the room cap.
    Rooms,
    /// Thousands of long polls time out in the same tick.
    Wave,
}

impl Phase {
    /// All of them, in the order a plain run takes them.
    pub const ALL: [Phase; 6] = [
        Phase::Names,
        Phase::Pipeline,
        Phase::Hoard,
        Phase::Announce,
        Phase::Rooms,
        Phase::Wave,
    ];

    /// The letter `--phase` takes and the table shows.
    pub fn letter(self) -> char {
        match self {
            Phase::Names => 'a',
            Phase::Pipeline => 'b',
            Phase::Hoard => 'c',
            Phase::Announce => 'd',
            Phase::Rooms => 'e',
            Phase::Wave => 'f',
        }
    }

    /// What it is, in a few words.
    pub fn title(self) -> &'static str {
        match self {
            Phase::Names => "presence flood",
            Phase::Pipeline => "pipelining flood",
            Phase::Hoard => "replay hoarders",
            Phase::Announce => "announcement burst",
            Phase::Rooms => "room-cap fillers",
            Phase::Wave => "timeout wave",
        }
    }
}

/// How big each attack is and how long each window lasts.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Quiet measurement before each attack.
    pub baseline: Duration,
    /// Quiet measurement after an attack (phases b and c).
    pub after: Duration,
    /// Event streams that read everything, open in the attacked room (phases a and b).
    pub watchers: usize,
    /// Distinct names the presence flood tries (phase a).
    pub names: usize,
    /// Whether phase a waits for the names to expire and be swept (poll timeout + grace +
    /// a margin); the smoke run does not.
    pub await_expiry: bool,
    /// Pipelined posts (phase b).
    pub posts: usize,
    /// Messages of history the hoarders ask for (phase c)...
    pub history_messages: usize,
    /// ...each with a text this long.
    pub history_text_bytes: usize,
    /// Clients that ask for the whole history and never read (phase c).
    pub hoarders: usize,
    /// Longest the bench waits for the server to drop the hoarders before closing them
    /// itself (phase c).
    pub hoard_cap: Duration,
    /// Announcements published into Redis in one burst (phase d).
    pub announcements: usize,
    /// Longest an attack may run before it is stopped and what is left counted.
    pub attack_cap: Duration,
    /// Rooms the calm client gives a message just before the room-cap attack, and counts
    /// afterwards (phase e).
    pub calm_rooms: usize,
    /// Attacker source addresses, one connection each (phase e)...
    pub room_sources: usize,
    /// ...each giving this many rooms of its own their first message: the server's default
    /// `--max-rooms-per-client`, so none of them is refused for that (phase e).
    pub rooms_per_source: usize,
    /// `--max-rooms` for phase e; `None`: the server's default (1000). Sources times rooms
    /// per source must exceed it, or there is no attack.
    pub max_rooms: Option<usize>,
    /// Long polls that time out in the same tick (phase f)...
    pub wave_polls: usize,
    /// ...this many from each source address, 127.0.0.2 onwards, so that no address runs
    /// out of ephemeral ports (phase f).
    pub wave_polls_per_source: usize,
    /// `--poll-timeout` for phase f: long enough that every poll parks before the first
    /// one falls due.
    pub wave_poll_timeout: Duration,
    /// The window from SIGCONT in which the wave is answered (phase f).
    pub wave_window: Duration,
}

impl Sizes {
    /// The figures the brief asks for.
    pub fn full() -> Sizes {
        Sizes {
            baseline: Duration::from_secs(3),
            after: Duration::from_secs(3),
            watchers: 100,
            names: 60_000,
            await_expiry: true,
            posts: 20_000,
            history_messages: 1_000,
            history_text_bytes: 4_000,
            hoarders: 100,
            hoard_cap: Duration::from_secs(30),
            announcements: 100_000,
            attack_cap: Duration::from_secs(90),
            calm_rooms: 20,
            room_sources: 50,
            rooms_per_source: 64,
            max_rooms: None,
            wave_polls: 19_500,
            wave_polls_per_source: 2_000,
            wave_poll_timeout: Duration::from_secs(10),
            wave_window: Duration::from_secs(2),
        }
    }

    /// As JSON, for the results file.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "baseline_seconds": self.baseline.as_secs_f64(),
            "after_seconds": self.after.as_secs_f64(),
            "watchers": self.watchers,
            "names": self.names,
            "await_expiry": self.await_expiry,
            "posts": self.posts,
            "history_messages": self.history_messages,
            "history_text_bytes": self.history_text_bytes,
            "hoarders": self.hoarders,
            "hoard_cap_seconds": self.hoard_cap.as_secs_f64(),
            "announcements": self.announcements,
            "attack_cap_seconds": self.attack_cap.as_secs_f64(),
            "calm_rooms": self.calm_rooms,
            "room_sources": self.room_sources,
            "rooms_per_source": self.rooms_per_source,
            "max_rooms": self.max_rooms,
            "wave_polls": self.wave_polls,
            "wave_polls_per_source": self.wave_polls_per_source,
            "wave_poll_timeout_seconds": self.wave_poll_timeout.as_secs_f64(),
            "wave_window_seconds": self.wave_window.as_secs_f64(),
        })
    }

    /// A few seconds in all: every code path, small counts.
    pub fn smoke() -> Sizes {
        Sizes {
            baseline: Duration::from_millis(500),
            after: Duration::from_millis(500),
            watchers: 10,
            names: 2_000,
            await_expiry: false,
            posts: 1_000,
            // As many as the full run: a smaller history fits in the kernel's socket
            // buffers, and the hoarders would never block the server's writes.
            history_messages: 1_000,
            history_text_bytes: 4_000,
            hoarders: 10,
            hoard_cap: Duration::from_secs(6),
            announcements: 2_000,
            attack_cap: Duration::from_secs(20),
            calm_rooms: 20,
            // 640 rooms against a cap of 200: still five times too many.
            room_sources: 10,
            rooms_per_source: 64,
            max_rooms: Some(200),
            // Still several source addresses, so that path runs too.
            wave_polls: 2_000,
            wave_polls_per_source: 500,
            wave_poll_timeout: Duration::from_secs(3),
            wave_window: Duration::from_secs(1),
        }
    }
}

/// What the command line asked for.
pub struct Options {
    /// Phases to run, in order.
    pub phases: Vec<Phase>,
    /// A server binary to use instead of building the release one.
    pub server_bin: Option<PathBuf>,
    /// Pin the server and the bench to different CPUs.
    pub pin: bool,
    /// Where `hostile.json` goes.
    pub out_dir: PathBuf,
    /// Run without `--bench`: smoke sizes.
    pub smoke: bool,
    /// Counts and windows.
    pub sizes: Sizes,
}

/// Parses the arguments after the program name; `Ok(None)` for `--help`.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Option<Options>, String> {
    use lexopt::prelude::*;
    let args: Vec<OsString> = args.into_iter().collect();
    // `cargo bench` passes --bench; `cargo test --benches` runs the binary without it.
    let smoke = !args.iter().any(|arg| arg == "--bench");
    let mut options = Options {
        phases: Phase::ALL.to_vec(),
        server_bin: None,
        pin: true,
        out_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-results"),
        smoke,
        sizes: if smoke { Sizes::smoke() } else { Sizes::full() },
    };
    if smoke {
        options.out_dir = std::env::temp_dir().join("comet-chat-hostile-smoke");
    }
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("phase") => {
                let value = text(&mut parser, "--phase")?;
                let phase = Phase::ALL
                    .into_iter()
                    .find(|p| value.len() == 1 && value.starts_with(p.letter()))
                    .ok_or_else(|| format!("--phase: '{value}' is not a, b, c, d, e or f"))?;
                options.phases = vec![phase];
            }
            Long("server-bin") => {
                options.server_bin = Some(text(&mut parser, "--server-bin")?.into())
            }
            Long("no-pin") => options.pin = false,
            Long("out") => options.out_dir = text(&mut parser, "--out")?.into(),
            // `cargo bench` passes --bench to every bench binary.
            Long("bench") => {}
            Short('h') | Long("help") => return Ok(None),
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    Ok(Some(options))
}

fn text(parser: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| format!("{flag}: not valid UTF-8"))
}
