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

/// The `--help` text.
pub const USAGE: &str = "\
comet-chat: a Comet (HTTP long-polling) chat server on one mio event loop

USAGE: comet-chat [OPTIONS]

OPTIONS:
  --addr ADDR           listen address            [default: 127.0.0.1:8080]
  --www DIR             static files to serve     [default: www]
  --no-www              serve only the API
  --poll-timeout SECS   how long GET /chat waits  [default: 20; fractions allowed]
  --max-body BYTES      largest request body      [default: 65536]
  --max-head BYTES      largest request head      [default: 8192]
  --backlog N           listen backlog            [default: 65535, capped by somaxconn]
  --max-conns N         connections held at once; past it: 503 [default: open files - 32]
  --open-files N        set the soft open-files limit [default: raise to the hard limit]
  --request-timeout S   time to send a whole request, else 408 [default: 10]
  --idle-timeout S      idle keep-alive connections close      [default: 30]
  --write-timeout S     a client slower than this to read a response is dropped [default: 10]
  --shutdown-grace S    on SIGINT/SIGTERM, time to flush before exit [default: 5]
  --max-names-per-room N    names present in one room; past it: 507  [default: 1000]
  --max-names-per-client N  names one client address may have present; past it: 429 [default: 32]
  --log-level LEVEL     off|error|warn|info|debug|trace [default: info]
  -h, --help            print this help
";

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
                    parse_number("--max-body", &value(&mut parser, "--max-body")?)?
            }
            Long("max-head") => {
                config.limits.head_bytes =
                    parse_number("--max-head", &value(&mut parser, "--max-head")?)?
            }
            Long("backlog") => {
                let n: usize = parse_number("--backlog", &value(&mut parser, "--backlog")?)?;
                config.listen_backlog = i32::try_from(n).map_err(|_| "--backlog: too large")?;
            }
            Long("max-conns") => {
                config.max_conns = Some(parse_number(
                    "--max-conns",
                    &value(&mut parser, "--max-conns")?,
                )?)
            }
            Long("open-files") => {
                config.open_files =
                    Some(parse_number("--open-files", &value(&mut parser, "--open-files")?)? as u64)
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
                config.history_messages =
                    parse_number("--history", &value(&mut parser, "--history")?)?
            }
            Long("history-bytes") => {
                config.history_bytes =
                    parse_number("--history-bytes", &value(&mut parser, "--history-bytes")?)?
            }
            Long("max-rooms") => {
                config.max_rooms = parse_number("--max-rooms", &value(&mut parser, "--max-rooms")?)?
            }
            Long("max-message") => {
                config.max_message_bytes =
                    parse_number("--max-message", &value(&mut parser, "--max-message")?)?
            }
            Long("max-names-per-room") => {
                config.max_names_per_room = parse_number(
                    "--max-names-per-room",
                    &value(&mut parser, "--max-names-per-room")?,
                )?
            }
            Long("max-names-per-client") => {
                config.max_names_per_client = parse_number(
                    "--max-names-per-client",
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

fn parse_number(flag: &str, text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{flag}: '{text}' is not a positive whole number")),
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
}
