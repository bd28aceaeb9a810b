//! Everything a user can tune, with the defaults a newcomer gets from `cargo run`, and the
//! command line that sets them. Tests build a `Config` directly with short timeouts.

use crate::http::Limits;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Server settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen. Port 0 picks a free port (tests read it back from the server).
    pub addr: SocketAddr,
    /// Directory served as static files; `None` serves only the API.
    pub www: Option<PathBuf>,
    /// How long `GET /chat` waits for a message before answering `{"error":"timeout"}`.
    pub poll_timeout: Duration,
    /// Caps on what one request may make us buffer.
    pub limits: Limits,
    /// Listen backlog asked of the kernel (which caps it at net.core.somaxconn). Deep,
    /// because a burst of thousands of browsers reconnecting must not overflow the accept
    /// queue: an overflowed SYN waits a full second for the client's retransmit.
    pub listen_backlog: i32,
    /// A client must send a whole request (head and body) within this long of its first
    /// byte, or it is answered 408 and closed: the slowloris defence.
    pub request_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this long.
    /// Also reaps clients that vanished without a FIN once their poll has been answered.
    pub idle_timeout: Duration,
    /// A response the client does not take within this long is abandoned and the
    /// connection dropped, so a stalled reader costs nothing beyond its one response.
    pub write_timeout: Duration,
    /// Most connections held at once; past it a new connection is answered 503 and closed.
    /// `None`: the open-files limit less [`RESERVED_DESCRIPTORS`].
    pub max_conns: Option<usize>,
    /// On SIGINT/SIGTERM, how long pending polls and responses get to flush before exit.
    pub shutdown_grace: Duration,
    /// Whether `run` installs SIGINT/SIGTERM handlers. The binary does; embedders and
    /// in-process tests, which share the process, do not.
    pub handle_signals: bool,
    /// Soft open-files limit to set before start-up (`main` only); `None` raises it to the
    /// hard limit. Lowering it is how tests provoke descriptor exhaustion.
    pub open_files: Option<u64>,
    /// Messages each room keeps for clients that resume (`--history`).
    pub history_messages: usize,
    /// Bytes of encoded messages each room keeps, at most (`--history-bytes`).
    pub history_bytes: usize,
    /// Rooms that may exist at once; past it, a new room name is refused with 507.
    pub max_rooms: usize,
    /// Longest message text in bytes (`--max-message`); past it, 413.
    pub max_message_bytes: usize,
    /// `Access-Control-Allow-Origin` for the room API, if cross-origin pages may use it.
    pub cors_origin: Option<String>,
    /// A name stays present this long after its last poll, on top of the poll timeout.
    pub presence_grace: Duration,
    /// Names present in one room at most (`--max-names-per-room`); past it, a request
    /// with a new name is refused with 507. Bounds what one room's presence costs.
    pub max_names_per_room: usize,
    /// Names one client address may have present at once, over all rooms
    /// (`--max-names-per-client`); past it, a new name is refused with 429.
    pub max_names_per_client: usize,
    /// How often an idle event stream gets a comment line, so proxies keep it open.
    pub heartbeat: Duration,
    /// Log verbosity for `main`; the library itself only calls `log`.
    pub log_level: log::LevelFilter,
}

/// Descriptors kept back from `max_conns` for everything that is not a client: stdio, the
/// epoll instance, listener, waker, signal pipe, and the spare kept for EMFILE.
pub const RESERVED_DESCRIPTORS: u64 = 32;

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            www: Some(PathBuf::from("www")),
            poll_timeout: Duration::from_secs(20),
            limits: Limits::default(),
            listen_backlog: 65_535,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_conns: None,
            shutdown_grace: Duration::from_secs(5),
            handle_signals: false,
            open_files: None,
            history_messages: 1000,
            history_bytes: 1 << 20,
            max_rooms: 1000,
            max_message_bytes: 4096,
            cors_origin: None,
            presence_grace: Duration::from_secs(5),
            max_names_per_room: 1000,
            max_names_per_client: 32,
            heartbeat: Duration::from_secs(15),
            log_level: log::LevelFilter::Info,
        }
    }
}

/// The `--help` text. Its OPTIONS lines are the README's flags block, word for word (a test
/// checks), and every range in it is one of the [`NumericFlag`] constants below.
pub const USAGE: &str = "\
comet-chat: a Comet (HTTP long-polling) chat server on one mio event loop

USAGE: comet-chat [OPTIONS]

OPTIONS:
  --addr ADDR           listen address            [default: 127.0.0.1:8080]
  --www DIR             static files to serve     [default: www]
  --no-www              serve only the API
  --poll-timeout SECS   how long GET /chat waits  [default: 20; fractions allowed]
  --max-body BYTES      largest request body, at most 64 MiB        [default: 65536]
  --max-head BYTES      largest request head, 1 KiB to 1 MiB        [default: 8192]
  --backlog N           listen backlog, at most 2147483647 [default: 65535, capped by somaxconn]
  --max-conns N         connections held at once, at most 10000000; past it: 503
                        [default: open files - 32]
  --open-files N        set the soft open-files limit, at most 10000000
                        [default: raise to the hard limit]
  --request-timeout S   time to send a whole request, else 408 [default: 10]
  --idle-timeout S      idle keep-alive connections close      [default: 30]
  --write-timeout S     a client slower than this to read a response is dropped [default: 10]
  --shutdown-grace S    on SIGINT/SIGTERM, time to flush before exit [default: 5]
  --history N           messages each room keeps for resuming clients, at most 1000000
                        [default: 1000]
  --history-bytes N     bytes each room's history may hold, at most 1 GiB [default: 1048576]
  --max-rooms N         rooms at once, at most 1000000; past it: 507 [default: 1000]
  --max-message BYTES   longest message text, at most --max-body; past it: 413
                        [default: 4096, or --max-body if that is smaller]
  --cors-origin ORIGIN  allow this origin to use the room API [default: none]
  --heartbeat S         comment line on idle event streams  [default: 15]
  --max-names-per-room N    names present in one room, at most 1000000; past it: 507
                            [default: 1000]
  --max-names-per-client N  names one client address may have present, at most 1000000;
                            past it: 429 [default: 32]
  --log-level LEVEL     off|error|warn|info|debug|trace [default: info]
  -h, --help            print this help

Times (SECS, S) are seconds from 0.01 to 86400; counts and sizes are whole numbers
from 1 (1 KiB for --max-head) up to the ceiling shown; anything else stops start-up.
";

/// A numeric flag and the values it accepts. Every flag has a ceiling: far above any real
/// deployment, low enough that no size sum can wrap and no start-up allocation is absurd,
/// so a typo fails at start-up with the flag's name instead of misbehaving under load.
#[derive(Clone, Copy, Debug)]
pub struct NumericFlag {
    /// The flag as typed, e.g. `--max-body`.
    pub name: &'static str,
    /// Smallest accepted value.
    pub min: usize,
    /// Largest accepted value.
    pub max: usize,
    /// What the number counts, for the error message.
    pub unit: &'static str,
}

/// `--max-body`, bytes. A chat post is a few KiB; 64 MiB leaves embedders room while one
/// connection can never be told to buffer more than that (plus its head).
pub const MAX_BODY: NumericFlag = NumericFlag {
    name: "--max-body",
    min: 1,
    max: 64 << 20,
    unit: "bytes (64 MiB)",
};
/// `--max-head`, bytes. Below 1 KiB a browser's ordinary headers do not fit; above 1 MiB
/// is no longer a request head but a way to make us buffer.
pub const MAX_HEAD: NumericFlag = NumericFlag {
    name: "--max-head",
    min: 1 << 10,
    max: 1 << 20,
    unit: "bytes (1 KiB to 1 MiB)",
};
/// `--max-message`, bytes; also at most `--max-body`, since the text travels in the body.
pub const MAX_MESSAGE: NumericFlag = NumericFlag {
    name: "--max-message",
    min: 1,
    max: MAX_BODY.max,
    unit: "bytes (64 MiB)",
};
/// `--history`, messages per room.
pub const HISTORY: NumericFlag = NumericFlag {
    name: "--history",
    min: 1,
    max: 1_000_000,
    unit: "messages",
};
/// `--history-bytes`, bytes per room.
pub const HISTORY_BYTES: NumericFlag = NumericFlag {
    name: "--history-bytes",
    min: 1,
    max: 1 << 30,
    unit: "bytes (1 GiB)",
};
/// `--max-rooms`, rooms.
pub const MAX_ROOMS: NumericFlag = NumericFlag {
    name: "--max-rooms",
    min: 1,
    max: 1_000_000,
    unit: "rooms",
};
/// `--max-names-per-room`, names.
pub const MAX_NAMES_PER_ROOM: NumericFlag = NumericFlag {
    name: "--max-names-per-room",
    min: 1,
    max: 1_000_000,
    unit: "names",
};
/// `--max-names-per-client`, names.
pub const MAX_NAMES_PER_CLIENT: NumericFlag = NumericFlag {
    name: "--max-names-per-client",
    min: 1,
    max: 1_000_000,
    unit: "names",
};
/// `--max-conns`, connections: well past what one loop can serve.
pub const MAX_CONNS: NumericFlag = NumericFlag {
    name: "--max-conns",
    min: 1,
    max: 10_000_000,
    unit: "connections",
};
/// `--backlog`, queued connections: `listen(2)` takes an `int`.
pub const BACKLOG: NumericFlag = NumericFlag {
    name: "--backlog",
    min: 1,
    max: i32::MAX as usize,
    unit: "connections",
};
/// `--open-files`, descriptors: Linux's own ceiling (`fs.nr_open`) defaults to 1048576.
pub const OPEN_FILES: NumericFlag = NumericFlag {
    name: "--open-files",
    min: 1,
    max: 10_000_000,
    unit: "descriptors",
};

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    /// Run the server with this configuration (boxed: it is large and the enum is not).
    Run(Box<Config>),
    /// Print usage and exit.
    Help,
}

/// Parses command-line arguments (without the program name).
pub fn parse_args<I>(args: I) -> Result<Command, String>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    use lexopt::prelude::*;
    let mut config = Config::default();
    // Checked against --max-body once every flag is read, whatever their order.
    let mut max_message: Option<usize> = None;
    let mut parser = lexopt::Parser::from_iter(
        std::iter::once("comet-chat".into()).chain(args.into_iter().map(Into::into)),
    );
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("addr") => {
                let text = value(&mut parser, "--addr")?;
                config.addr = text.parse().map_err(|_| {
                    format!("--addr: '{text}' is not an address like 127.0.0.1:8080")
                })?;
            }
            Long("www") => config.www = Some(PathBuf::from(value(&mut parser, "--www")?)),
            Long("no-www") => config.www = None,
            Long("poll-timeout") => {
                config.poll_timeout =
                    parse_seconds("--poll-timeout", &value(&mut parser, "--poll-timeout")?)?
            }
            Long("max-body") => {
                config.limits.body_bytes =
                    parse_number(MAX_BODY, &value(&mut parser, "--max-body")?)?
            }
            Long("max-head") => {
                config.limits.head_bytes =
                    parse_number(MAX_HEAD, &value(&mut parser, "--max-head")?)?
            }
            Long("backlog") => {
                let n = parse_number(BACKLOG, &value(&mut parser, "--backlog")?)?;
                // BACKLOG's range ends at i32::MAX, so this cannot fail.
                config.listen_backlog = i32::try_from(n).unwrap_or(i32::MAX);
            }
            Long("max-conns") => {
                config.max_conns = Some(parse_number(
                    MAX_CONNS,
                    &value(&mut parser, "--max-conns")?,
                )?)
            }
            Long("open-files") => {
                config.open_files =
                    Some(parse_number(OPEN_FILES, &value(&mut parser, "--open-files")?)? as u64)
            }
            Long("request-timeout") => {
                config.request_timeout = parse_seconds(
                    "--request-timeout",
                    &value(&mut parser, "--request-timeout")?,
                )?
            }
            Long("idle-timeout") => {
                config.idle_timeout =
                    parse_seconds("--idle-timeout", &value(&mut parser, "--idle-timeout")?)?
            }
            Long("write-timeout") => {
                config.write_timeout =
                    parse_seconds("--write-timeout", &value(&mut parser, "--write-timeout")?)?
            }
            Long("shutdown-grace") => {
                config.shutdown_grace =
                    parse_seconds("--shutdown-grace", &value(&mut parser, "--shutdown-grace")?)?
            }
            Long("history") => {
                config.history_messages = parse_number(HISTORY, &value(&mut parser, "--history")?)?
            }
            Long("history-bytes") => {
                config.history_bytes =
                    parse_number(HISTORY_BYTES, &value(&mut parser, "--history-bytes")?)?
            }
            Long("max-rooms") => {
                config.max_rooms = parse_number(MAX_ROOMS, &value(&mut parser, "--max-rooms")?)?
            }
            Long("max-message") => {
                max_message = Some(parse_number(
                    MAX_MESSAGE,
                    &value(&mut parser, "--max-message")?,
                )?)
            }
            Long("max-names-per-room") => {
                config.max_names_per_room = parse_number(
                    MAX_NAMES_PER_ROOM,
                    &value(&mut parser, "--max-names-per-room")?,
                )?
            }
            Long("max-names-per-client") => {
                config.max_names_per_client = parse_number(
                    MAX_NAMES_PER_CLIENT,
                    &value(&mut parser, "--max-names-per-client")?,
                )?
            }
            Long("cors-origin") => config.cors_origin = Some(value(&mut parser, "--cors-origin")?),
            Long("heartbeat") => {
                config.heartbeat =
                    parse_seconds("--heartbeat", &value(&mut parser, "--heartbeat")?)?
            }
            Long("log-level") => {
                let text = value(&mut parser, "--log-level")?;
                config.log_level = text.parse().map_err(|_| {
                    format!("--log-level: '{text}' is not off|error|warn|info|debug|trace")
                })?;
            }
            Short('h') | Long("help") => return Ok(Command::Help),
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    let body_bytes = config.limits.body_bytes;
    config.max_message_bytes = match max_message {
        Some(n) if n > body_bytes => {
            return Err(format!(
                "--max-message: {n} is more than --max-body ({body_bytes}); \
                 a text travels in the body, so it must fit"
            ))
        }
        Some(n) => n,
        // Only the default: a small --max-body should not fail over a flag nobody typed.
        None => config.max_message_bytes.min(body_bytes),
    };
    Ok(Command::Run(Box::new(config)))
}

fn value(parser: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| format!("{flag}: not valid UTF-8"))
}

fn parse_seconds(flag: &str, text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{flag}: '{text}' is not a number of seconds"))?;
    // The wheel's horizon is 41 s per turn but it handles longer; a day is a sane ceiling.
    if !(0.01..=86_400.0).contains(&secs) {
        return Err(format!("{flag}: {secs} is outside 0.01..=86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_number(flag: NumericFlag, text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (flag.min..=flag.max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{}: '{text}' is not a whole number from {} to {} {}",
            flag.name, flag.min, flag.max, flag.unit
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse_args(args.iter().copied())? {
            Command::Run(config) => Ok(*config),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults() {
        let config = run(&[]).unwrap();
        assert_eq!(config.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.poll_timeout, Duration::from_secs(20));
        assert_eq!(config.www, Some(PathBuf::from("www")));
    }

    #[test]
    fn flags() {
        let config = run(&[
            "--addr",
            "0.0.0.0:9000",
            "--poll-timeout",
            "0.5",
            "--max-body=100",
            "--no-www",
            "--log-level",
            "debug",
            "--max-conns",
            "7",
            "--request-timeout",
            "1.5",
            "--shutdown-grace",
            "2",
        ])
        .unwrap();
        assert_eq!(config.addr.to_string(), "0.0.0.0:9000");
        assert_eq!(config.poll_timeout, Duration::from_millis(500));
        assert_eq!(config.limits.body_bytes, 100);
        assert_eq!(config.www, None);
        assert_eq!(config.log_level, log::LevelFilter::Debug);
        assert_eq!(config.max_conns, Some(7));
        assert_eq!(config.request_timeout, Duration::from_millis(1500));
        assert_eq!(config.shutdown_grace, Duration::from_secs(2));
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        let cases = [
            (&["--addr", "nope"][..], "--addr"),
            (&["--poll-timeout", "abc"][..], "--poll-timeout"),
            (&["--poll-timeout", "0"][..], "--poll-timeout"),
            (&["--max-body", "-3"][..], "--max-body"),
            (&["--log-level", "loud"][..], "--log-level"),
            (&["--frobnicate"][..], "frobnicate"),
        ];
        for (args, needle) in cases {
            let err = run(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
        assert_eq!(run(&["--help"]).unwrap_err(), "help");
    }

    /// The README's flags block is the `--help` text's OPTIONS, so neither can drift.
    #[test]
    fn readme_flags_block_is_the_usage_text() {
        let readme = include_str!("../README.md");
        let block = readme
            .split("## Flags\n\n```\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("README has a flags block");
        let options: String = USAGE
            .split("OPTIONS:\n")
            .nth(1)
            .unwrap()
            .lines()
            .take_while(|line| !line.is_empty())
            .map(|line| format!("{}\n", &line[2..]))
            .collect();
        assert_eq!(block, options);
    }

    /// Every numeric flag has a ceiling, and going past it is a start-up error that names
    /// the flag and the range, never a wrapped sum or a panic later.
    #[test]
    fn numeric_flags_are_range_checked() {
        let huge = "18446744073709551615";
        let refused: &[(&[&str], &str)] = &[
            (&["--max-body", huge], "--max-body"),
            (&["--max-body", "67108865"], "1 to 67108864"),
            (&["--max-body", "0"], "--max-body"),
            (&["--max-head", "1048577"], "--max-head"),
            (&["--max-head", "1023"], "1024 to 1048576"),
            (
                &["--max-message", "100", "--max-body", "99"],
                "--max-message",
            ),
            (&["--max-message", "67108865"], "--max-message"),
            (&["--history", "1000001"], "--history"),
            (&["--history-bytes", "1073741825"], "--history-bytes"),
            (&["--max-rooms", "1000001"], "--max-rooms"),
            (&["--max-conns", "10000001"], "--max-conns"),
            (&["--backlog", "2147483648"], "--backlog"),
            (&["--open-files", "10000001"], "--open-files"),
            (&["--open-files", huge], "--open-files"),
        ];
        for (args, needle) in refused {
            let err = run(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
        let at_the_ceiling = run(&[
            "--max-body",
            "67108864",
            "--max-head",
            "1048576",
            "--max-message",
            "67108864",
            "--history",
            "1000000",
            "--history-bytes",
            "1073741824",
            "--max-rooms",
            "1000000",
            "--max-conns",
            "10000000",
            "--backlog",
            "2147483647",
            "--open-files",
            "10000000",
        ])
        .unwrap();
        assert_eq!(at_the_ceiling.limits.body_bytes, 64 << 20);
        assert_eq!(at_the_ceiling.max_message_bytes, 64 << 20);
        assert_eq!(at_the_ceiling.listen_backlog, i32::MAX);
        // A small --max-body lowers the default --max-message with it instead of failing.
        let small = run(&["--max-body", "1000"]).unwrap();
        assert_eq!(small.max_message_bytes, 1000);
    }
}
