//! Everything a user can tune, with the defaults a newcomer gets from `cargo run`, and the
//! command line that sets them. Tests build a `Config` directly with short timeouts.
//!
//! Every flag is one entry in [`FLAGS`]: [`parse_args`] reads the command line through it
//! and [`usage`] prints `--help` from it, so the two cannot disagree.

use crate::backplane::url::{self, RedisUrl};
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
    /// `--admin-addr`: a second listener for `/metrics` and the `/loop` X-ray, never the
    /// public one. `None`: no admin listener, and nothing of it runs.
    pub admin_addr: Option<SocketAddr>,
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
    /// Rooms one client address may give their first message (`--max-rooms-per-client`):
    /// a room with a message keeps its place in `--max-rooms` for good, so without this one
    /// client could take every place. Past it, such a post is refused with 429; 0 turns it
    /// off. Not applied with tokens, whose site vouches for its users.
    pub max_rooms_per_client: usize,
    /// How often an idle event stream gets a comment line, so proxies keep it open.
    pub heartbeat: Duration,
    /// Log verbosity for `main`; the library itself only calls `log`.
    pub log_level: log::LevelFilter,
    /// `--redis`: rooms, history, positions, idempotency keys and presence live in this
    /// Redis, shared by every process pointed at it. `None`: all in this process's memory,
    /// and no Redis code runs.
    pub redis: Option<RedisUrl>,
    /// `--workers`: worker processes on one port (`main` only; needs `redis`).
    pub workers: usize,
    /// `--token-secret-file`: every room request needs an HS256 token signed with this.
    /// `None`: anyone may post as anyone and read any room (the demo, benchmarks).
    pub token_secret: Option<std::sync::Arc<crate::token::Secret>>,
    /// `--private-rooms`: rooms whose name starts with this are granted only by name,
    /// never by a token's `*`.
    pub private_rooms: Option<String>,
    /// `--post-rate`: posts one client may make per second, on average.
    pub post_rate: usize,
    /// `--post-burst`: posts one client may make at once before the rate applies.
    pub post_burst: usize,
    /// `--typing-interval`: one typing event per client per this long.
    pub typing_interval: Duration,
    /// `--max-conns-per-client`: connections one client address may hold at once; past
    /// it, 503 at accept. 0: unlimited (load benchmarks, whose clients share addresses).
    pub max_conns_per_client: usize,
    /// `--trusted-proxy`: peers in these networks may say who the client is (see
    /// [`crate::proxy`]); every per-client limit then counts that client. Empty: nobody's
    /// word is taken, every client is the address it connects from.
    pub trusted_proxies: crate::proxy::Trusted,
    /// `--proxy-protocol`: a trusted peer starts each connection with a PROXY header
    /// (v1 or v2), which names the client for the whole connection; its requests'
    /// `X-Forwarded-For` is then not read. A trusted peer that sends none is closed.
    pub proxy_protocol: bool,
    /// Which worker this process is (1 to `workers`), set only in a process the supervisor
    /// started, never by a flag. A worker binds with SO_REUSEPORT, so that its siblings can
    /// bind the same port, and says in `/stats` which worker answered.
    pub worker: Option<usize>,
}

/// Descriptors kept back from `max_conns` for everything that is not a client: stdio, the
/// epoll instance, listener, waker, signal pipe, and the spare kept for EMFILE.
pub const RESERVED_DESCRIPTORS: u64 = 32;

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            www: Some(PathBuf::from("www")),
            admin_addr: None,
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
            max_rooms_per_client: 64,
            heartbeat: Duration::from_secs(15),
            log_level: log::LevelFilter::Info,
            redis: None,
            workers: 1,
            token_secret: None,
            private_rooms: None,
            post_rate: 10,
            post_burst: 20,
            typing_interval: Duration::from_secs(1),
            max_conns_per_client: 256,
            trusted_proxies: crate::proxy::Trusted::default(),
            proxy_protocol: false,
            worker: None,
        }
    }
}

/// One command-line flag: everything the parser and `--help` know about it. [`FLAGS`] is
/// the only list of flags; a flag that is not in it cannot be typed.
#[derive(Clone, Copy, Debug)]
pub struct Flag {
    /// The name without its dashes: `max-body` is typed `--max-body`.
    pub long: &'static str,
    /// A one-letter alias typed as `-h`; only help has one.
    pub short: Option<char>,
    /// What the value is, in capitals (`ADDR`, `SECS`, `BYTES`, `N`). Empty exactly when
    /// the flag takes no value (a test checks), so `--help` never shows a value the parser
    /// would not read.
    pub value: &'static str,
    /// One line of help. The range and the default are added after it, so it names neither.
    pub help: &'static str,
    /// The default spelled as a user would type it. Typing it gives back
    /// `Config::default()` (a test checks), so what `--help` promises is what runs.
    pub default: Option<&'static str>,
    /// Said after the default (`capped by somaxconn`), or instead of it when no typed value
    /// is the default (`open files - 32`).
    pub default_note: &'static str,
    /// What the value must be, and the part of [`Config`] it sets.
    pub kind: Kind,
}

/// How a flag's value is checked and where it goes.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `-h/--help`: stop and print the usage text.
    Help,
    /// Takes no value.
    Switch(fn(&mut Config)),
    /// Seconds within [`SECONDS`], fractions allowed.
    Seconds(fn(&mut Config, Duration)),
    /// A whole number within these bounds.
    Number(Bounds, fn(&mut Config, usize)),
    /// Any other text. The setter parses it and says what is wrong with it; the parser puts
    /// the flag's name in front.
    Text(fn(&mut Config, &str) -> Result<(), String>),
}

/// The values a numeric flag accepts. Every numeric flag has a ceiling: far above any real
/// deployment, low enough that no size sum can wrap and no start-up allocation is absurd, so
/// a typo fails at start-up with the flag's name instead of misbehaving under load.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Smallest accepted value.
    pub min: usize,
    /// Largest accepted value.
    pub max: usize,
    /// What the number counts, for messages.
    pub unit: Unit,
}

/// What a numeric flag counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes: messages also show the bounds in KiB, MiB or GiB.
    Bytes,
    /// Anything else, named in the plural (`rooms`).
    Count(&'static str),
}

/// Every time flag (`SECS`) accepts seconds in this range. The timer wheel's horizon is 41 s
/// per turn but it handles longer; a day is a sane ceiling, and 10 ms a sane floor.
pub const SECONDS: std::ops::RangeInclusive<f64> = 0.01..=86_400.0;

/// `--max-body`'s ceiling in bytes, which `--max-message` shares since a text travels in a
/// body. A chat post is a few KiB; 64 MiB leaves embedders room while one connection can
/// never be told to buffer more than that (plus its head).
const BODY_BYTES_MAX: usize = 64 << 20;

/// Every flag the command line accepts, in `--help` order.
pub static FLAGS: &[Flag] = &[
    Flag {
        long: "addr",
        short: None,
        value: "ADDR",
        help: "listen address",
        default: Some("127.0.0.1:8080"),
        default_note: "",
        kind: Kind::Text(|config, text| {
            config.addr = text
                .parse()
                .map_err(|_| format!("'{text}' is not an address like 127.0.0.1:8080"))?;
            Ok(())
        }),
    },
    Flag {
        long: "admin-addr",
        short: None,
        value: "ADDR",
        help: "also listen here for /metrics (Prometheus) and /loop (the live X-ray); \
               keep it private (e.g. 127.0.0.1:9080); with --workers, worker i takes port + i - 1",
        default: None,
        default_note: "none: no admin listener",
        kind: Kind::Text(|config, text| {
            config.admin_addr = Some(
                text.parse()
                    .map_err(|_| format!("'{text}' is not an address like 127.0.0.1:9080"))?,
            );
            Ok(())
        }),
    },
    Flag {
        long: "www",
        short: None,
        value: "DIR",
        help: "static files to serve",
        default: Some("www"),
        default_note: "",
        kind: Kind::Text(|config, text| {
            config.www = Some(PathBuf::from(text));
            Ok(())
        }),
    },
    Flag {
        long: "no-www",
        short: None,
        value: "",
        help: "serve only the API",
        default: None,
        default_note: "",
        kind: Kind::Switch(|config| config.www = None),
    },
    Flag {
        long: "poll-timeout",
        short: None,
        value: "SECS",
        help: "how long GET /chat waits",
        default: Some("20"),
        default_note: "",
        kind: Kind::Seconds(|config, time| config.poll_timeout = time),
    },
    Flag {
        long: "max-body",
        short: None,
        value: "BYTES",
        help: "largest request body; past it: 413",
        default: Some("65536"),
        default_note: "",
        kind: Kind::Number(
            Bounds {
                min: 1,
                max: BODY_BYTES_MAX,
                unit: Unit::Bytes,
            },
            |config, n| config.limits.body_bytes = n,
        ),
    },
    Flag {
        long: "max-head",
        short: None,
        value: "BYTES",
        help: "largest request head; past it: 431",
        default: Some("8192"),
        default_note: "",
        // Below 1 KiB a browser's ordinary headers do not fit; above 1 MiB is no longer a
        // request head but a way to make us buffer.
        kind: Kind::Number(
            Bounds {
                min: 1 << 10,
                max: 1 << 20,
                unit: Unit::Bytes,
            },
            |config, n| config.limits.head_bytes = n,
        ),
    },
    Flag {
        long: "backlog",
        short: None,
        value: "N",
        help: "listen backlog",
        default: Some("65535"),
        default_note: "capped by somaxconn",
        // `listen(2)` takes an `int`.
        kind: Kind::Number(
            Bounds {
                min: 1,
                max: i32::MAX as usize,
                unit: Unit::Count("connections"),
            },
            // The ceiling is i32::MAX, so this cannot fail.
            |config, n| config.listen_backlog = i32::try_from(n).unwrap_or(i32::MAX),
        ),
    },
    Flag {
        long: "max-conns",
        short: None,
        value: "N",
        help: "connections held at once; past it: 503",
        default: None,
        // RESERVED_DESCRIPTORS (a test checks).
        default_note: "open files - 32",
        // Well past what one loop can serve.
        kind: Kind::Number(
            Bounds {
                min: 1,
                max: 10_000_000,
                unit: Unit::Count("connections"),
            },
            |config, n| config.max_conns = Some(n),
        ),
    },
    Flag {
        long: "open-files",
        short: None,
        value: "N",
        help: "set the soft open-files limit",
        default: None,
        default_note: "raise to the hard limit",
        // Linux's own ceiling (`fs.nr_open`) defaults to 1048576.
        kind: Kind::Number(
            Bounds {
                min: 1,
                max: 10_000_000,
                unit: Unit::Count("descriptors"),
            },
            |config, n| config.open_files = Some(n as u64),
        ),
    },
    Flag {
        long: "request-timeout",
        short: None,
        value: "SECS",
        help: "time to send a whole request, else 408",
        default: Some("10"),
        default_note: "",
        kind: Kind::Seconds(|config, time| config.request_timeout = time),
    },
    Flag {
        long: "idle-timeout",
        short: None,
        value: "SECS",
        help: "idle keep-alive connections close",
        default: Some("30"),
        default_note: "",
        kind: Kind::Seconds(|config, time| config.idle_timeout = time),
    },
    Flag {
        long: "write-timeout",
        short: None,
        value: "SECS",
        help: "a client slower than this to read a response is dropped",
        default: Some("10"),
        default_note: "",
        kind: Kind::Seconds(|config, time| config.write_timeout = time),
    },
    Flag {
        long: "shutdown-grace",
        short: None,
        value: "SECS",
        help: "on SIGINT/SIGTERM, time to flush before exit",
        default: Some("5"),
        default_note: "",
        kind: Kind::Seconds(|config, time| config.shutdown_grace = time),
    },
    Flag {
        long: "history",
        short: None,
        value: "N",
        help: "messages each room keeps for resuming clients",
        default: Some("1000"),
        default_note: "",
        kind: Kind::Number(
            Bounds {
                min: 1,
                max: 1_000_000,
                unit: Unit::Count("messages"),
            },
            |config, n| config.history_messages = n,
        ),
    },
    Flag {
        long: "history-bytes",
        short: None,
        value: "BYTES",
        help: "bytes each room's history may hold",
        default: Some("1048576"),
        default_note: "",
        kind: Kind::Number(
            Bounds {
                min: 1,
                max: 1 << 30,
                unit: Unit::Bytes,
            },
            |config, n| config.history_bytes = n,
        ),
    },
    Flag {
        long: "max-rooms",
        short: None,
        value: "N",
        help: "rooms at once; past it, an empty room gives way, else the idle room unused \
               longest (history and all), else 507",
        default: Some("1000"),
        default_note: "",
        kind: Kind::Number(
            Bounds {
                min: 1,
                max: 1_000_000,
                unit: Unit::Count("rooms"),
            },
            |config, n| config.max_rooms = n,
        ),
    },
    Flag {
        long: "max-message",
        short: None,
        value: "BYTES",
        help: "longest message text, no longer than --max-body (nor 1 MiB with --redis); \
               past it: 413",
        default: Some("4096"),
        default_note: "or --max-body if smaller",
        // Checked against --max-body once every flag is read, whatever their order: see
        // `parse_args`.
        kind: Kind::Number(
            Bounds {
                min: 1,
                max: BODY_BYTES_MAX,
                unit: Unit::Bytes,
            },
            |config, n| config.max_message_bytes = n,
        ),
    },
    Flag {
        long: "cors-origin",
        short: None,
        value: "ORIGIN",
        help: "allow this origin (scheme://host[:port], as browsers send it) to use the room API",
        default: None,
        default_note: "none",
        kind: Kind::Text(|config, text| {
            check_origin(text)?;
            config.cors_origin = Some(text.to_owned());
            Ok(())
        }),
    },
    Flag {
        long: "heartbeat",
        short: None,
        value: "SECS",
        help: "comment line on idle event streams",
        default: Some("15"),
        default_note: "",
        kind: Kind::Seconds(|config, time| config.heartbeat = time),
    },
    Flag {
        long: "max-names-per-room",
        short: None,
        value: "N",
        help: "names present in one room; past it: 507",
        default: Some("1000"),
        default_note: "",
        kind: Kind::Number(
            Bounds {
                min: 1,
                max: 1_000_000,
                unit: Unit::Count("names"),
            },
            |config, n| config.max_names_per_room = n,
        ),
    },
    Flag {
        long: "max-names-per-client",
        short: None,
        value: "N",
        help: "names one client address may have present; past it: 429",
        default: Some("32"),
        default_note: "",
        kind: Kind::Number(
            Bounds {
                min: 1,
                max: 1_000_000,
                unit: Unit::Count("names"),
            },
            |config, n| config.max_names_per_client = n,
        ),
    },
    Flag {
        long: "max-rooms-per-client",
        short: None,
        value: "N",
        help: "rooms one client address may give their first message; past it: 429; 0: no limit",
        default: Some("64"),
        default_note: "",
        kind: Kind::Number(
            Bounds {
                min: 0,
                max: 1_000_000,
                unit: Unit::Count("rooms"),
            },
            |config, n| config.max_rooms_per_client = n,
        ),
    },
    Flag {
        long: "max-conns-per-client",
        short: None,
        value: "N",
        help: "connections one client address may hold at once; past it: 503; 0: no limit",
        default: Some("256"),
        default_note: "",
        kind: Kind::Number(
            Bounds {
                min: 0,
                max: 10_000_000,
                unit: Unit::Count("connections"),
            },
            |config, n| config.max_conns_per_client = n,
        ),
    },
    Flag {
        long: "trusted-proxy",
        short: None,
        value: "CIDR",
        help: "a reverse proxy at this address or network (repeatable): its X-Forwarded-For \
               (or PROXY header) names the client every per-client limit counts",
        default: None,
        default_note: "none: every client is the address it connects from",
        kind: Kind::Text(|config, text| {
            config.trusted_proxies.add(text.parse()?);
            Ok(())
        }),
    },
    Flag {
        long: "proxy-protocol",
        short: None,
        value: "",
        help: "trusted proxies start each connection with a PROXY header (v1 or v2), as \
               HAProxy's send-proxy and nginx's proxy_protocol do; one without it is closed",
        default: None,
        default_note: "",
        kind: Kind::Switch(|config| config.proxy_protocol = true),
    },
    Flag {
        long: "post-rate",
        short: None,
        value: "N",
        help: "posts per second one client may make, on average; past it: 429",
        default: Some("10"),
        default_note: "",
        kind: Kind::Number(
            Bounds {
                min: 1,
                max: 1_000_000,
                unit: Unit::Count("posts"),
            },
            |config, n| config.post_rate = n,
        ),
    },
    Flag {
        long: "post-burst",
        short: None,
        value: "N",
        help: "posts one client may make at once before --post-rate applies",
        default: Some("20"),
        default_note: "",
        kind: Kind::Number(
            Bounds {
                min: 1,
                max: 1_000_000,
                unit: Unit::Count("posts"),
            },
            |config, n| config.post_burst = n,
        ),
    },
    Flag {
        long: "typing-interval",
        short: None,
        value: "SECS",
        help: "one typing event per client per this long; more: 429",
        default: Some("1"),
        default_note: "",
        kind: Kind::Seconds(|config, time| config.typing_interval = time),
    },
    Flag {
        long: "token-secret-file",
        short: None,
        value: "PATH",
        help: "require HS256 tokens signed with the secret in this file (see comet-chat token)",
        default: None,
        default_note: "none: no tokens, anyone may post under any name",
        kind: Kind::Text(|config, text| {
            let secret = crate::token::Secret::load(std::path::Path::new(text))?;
            config.token_secret = Some(std::sync::Arc::new(secret));
            Ok(())
        }),
    },
    Flag {
        long: "private-rooms",
        short: None,
        value: "PREFIX",
        help: "rooms named with this prefix need a token naming them; * never covers them; \
               needs --token-secret-file",
        default: None,
        default_note: "none",
        kind: Kind::Text(|config, text| {
            if !crate::api::valid_room(text) {
                return Err(format!(
                    "'{text}' is not the start of a room name (A-Z a-z 0-9 _ -)"
                ));
            }
            config.private_rooms = Some(text.to_owned());
            Ok(())
        }),
    },
    Flag {
        long: "redis",
        short: None,
        value: "URL",
        help: "share rooms through this Redis: redis://[user:pass@]host:port[/db] or \
               unix:///path",
        default: None,
        default_note: "none: rooms live in this process",
        kind: Kind::Text(|config, text| {
            config.redis = Some(url::parse(text)?);
            Ok(())
        }),
    },
    Flag {
        long: "workers",
        short: None,
        value: "N",
        help: "worker processes on one port, each one loop; above 1 needs --redis",
        default: Some("1"),
        default_note: "",
        kind: Kind::Number(
            Bounds {
                min: 1,
                max: 64,
                unit: Unit::Count("workers"),
            },
            |config, n| config.workers = n,
        ),
    },
    Flag {
        long: "log-level",
        short: None,
        value: "LEVEL",
        help: "off|error|warn|info|debug|trace",
        default: Some("info"),
        default_note: "",
        kind: Kind::Text(|config, text| {
            config.log_level = text
                .parse()
                .map_err(|_| format!("'{text}' is not off|error|warn|info|debug|trace"))?;
            Ok(())
        }),
    },
    Flag {
        long: "help",
        short: Some('h'),
        value: "",
        help: "print this help",
        default: None,
        default_note: "",
        kind: Kind::Help,
    },
];

/// `--help` is wrapped to this many columns.
pub const USAGE_COLUMNS: usize = 92;

/// The `--help` text, made from [`FLAGS`] and nothing else, so it lists exactly the flags
/// the parser reads. Its OPTIONS lines are the README's flags block, word for word (a test
/// checks).
pub fn usage() -> String {
    let mut text = String::from(
        "comet-chat: a Comet (HTTP long-polling) chat server on one mio event loop\n\n\
         USAGE: comet-chat [OPTIONS]\n       \
         comet-chat token --secret-file PATH --sub NAME [--rooms ROOM,ROOM|*] [--ttl 1h]\n\n\
         OPTIONS:\n",
    );
    // Every description starts in one column, just past the widest `--flag VALUE`.
    let widest = FLAGS.iter().map(|flag| flag.spelled().len()).max();
    let column = 2 + widest.unwrap_or(0) + 2;
    for flag in FLAGS {
        let mut words: Vec<String> = flag.help.split_whitespace().map(str::to_owned).collect();
        words.extend(flag.range_and_default());
        wrap(&mut text, format!("  {}", flag.spelled()), column, &words);
    }
    text.push('\n');
    let note = format!(
        "Times (SECS) are seconds from {} to {}, fractions allowed; counts and sizes (N, \
         BYTES) are whole numbers from 1 up to the ceiling shown, or within the range shown; \
         anything else stops start-up.",
        SECONDS.start(),
        SECONDS.end()
    );
    let words: Vec<String> = note.split_whitespace().map(str::to_owned).collect();
    wrap(&mut text, String::new(), 0, &words);
    text
}

/// Appends `first`, then `words` from column `indent` on, breaking lines before
/// [`USAGE_COLUMNS`] and starting each further line `indent` columns in. A "word" may hold
/// spaces (the bracket with a flag's range and default) and is kept on one line, unless no
/// line could hold it.
fn wrap(text: &mut String, first: String, indent: usize, words: &[String]) {
    let words = words.iter().flat_map(|word| {
        let fits = indent + word.len() <= USAGE_COLUMNS;
        let pieces: Vec<&str> = if fits {
            vec![word]
        } else {
            word.split_whitespace().collect()
        };
        pieces
    });
    let mut line = format!("{first:<indent$}");
    if line.len() > indent {
        // No room to line up: one space after `first` instead.
        line.push(' ');
    }
    let mut line_is_empty = true;
    for word in words {
        if !line_is_empty && line.len() + 1 + word.len() > USAGE_COLUMNS {
            text.push_str(&line);
            text.push('\n');
            line = " ".repeat(indent);
            line_is_empty = true;
        }
        if !line_is_empty {
            line.push(' ');
        }
        line.push_str(word);
        line_is_empty = false;
    }
    text.push_str(line.trim_end());
    text.push('\n');
}

impl Flag {
    /// `--max-body BYTES`, `--no-www`, `-h, --help`: the flag as `--help` shows it.
    pub fn spelled(&self) -> String {
        let mut spelled = match self.short {
            Some(letter) => format!("-{letter}, --{}", self.long),
            None => format!("--{}", self.long),
        };
        if !self.value.is_empty() {
            spelled.push(' ');
            spelled.push_str(self.value);
        }
        spelled
    }

    /// `[at most 64 MiB; default: 65536]`: what `--help` says after the help line, if
    /// anything.
    pub fn range_and_default(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Kind::Number(bounds, _) = self.kind {
            parts.push(bounds.shown());
        }
        match (self.default, self.default_note) {
            (None, "") => {}
            (None, note) => parts.push(format!("default: {note}")),
            (Some(value), "") => parts.push(format!("default: {value}")),
            (Some(value), note) => parts.push(format!("default: {value}, {note}")),
        }
        (!parts.is_empty()).then(|| format!("[{}]", parts.join("; ")))
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    /// Run the server with this configuration (boxed: it is large and the enum is not).
    Run(Box<Config>),
    /// Print usage and exit.
    Help,
}

/// Parses command-line arguments (without the program name): each one is looked up in
/// [`FLAGS`], and its value checked and stored by that entry. `--flag value` and
/// `--flag=value` both work. An error names the flag and what it accepts.
pub fn parse_args<I>(args: I) -> Result<Command, String>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    let mut config = Config::default();
    let mut max_message_typed = false;
    let mut www_typed = false;
    let mut parser = lexopt::Parser::from_iter(
        std::iter::once("comet-chat".into()).chain(args.into_iter().map(Into::into)),
    );
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let found = match arg {
            lexopt::Arg::Long(name) => FLAGS.iter().find(|flag| flag.long == name),
            lexopt::Arg::Short(letter) => FLAGS.iter().find(|flag| flag.short == Some(letter)),
            lexopt::Arg::Value(_) => None,
        };
        let Some(flag) = found else {
            return Err(arg.unexpected().to_string());
        };
        let name = flag.long;
        let named = move |problem: String| format!("--{name}: {problem}");
        match flag.kind {
            Kind::Help => return Ok(Command::Help),
            Kind::Switch(set) => set(&mut config),
            Kind::Seconds(set) => {
                let time = parse_seconds(&value(&mut parser, name)?).map_err(named)?;
                set(&mut config, time);
            }
            Kind::Number(bounds, set) => {
                let n = parse_number(bounds, &value(&mut parser, name)?).map_err(named)?;
                set(&mut config, n);
            }
            Kind::Text(set) => set(&mut config, &value(&mut parser, name)?).map_err(named)?,
        }
        // The one rule between two flags, kept out of the table: see below.
        max_message_typed |= name == "max-message";
        www_typed |= name == "www";
    }
    let body_bytes = config.limits.body_bytes;
    let max_message = config.max_message_bytes;
    if !max_message_typed {
        // Only the default: a small --max-body should not fail over a flag nobody typed.
        config.max_message_bytes = max_message.min(body_bytes);
    } else if max_message > body_bytes {
        return Err(format!(
            "--max-message: {max_message} is more than --max-body ({body_bytes}); \
             a text travels in the body, so it must fit"
        ));
    }
    if config.private_rooms.is_some() && config.token_secret.is_none() {
        return Err(
            "--private-rooms: private rooms need --token-secret-file: without a \
                    secret there are no tokens, so anyone could read and post in them"
                .to_owned(),
        );
    }
    if let Some(admin) = config.admin_addr {
        check_admin_ports(admin, config.addr, config.workers)?;
    }
    if let Some(dir) = &config.www {
        if let Err(e) = std::fs::read_dir(dir) {
            let hint = if www_typed {
                "give --www the page's directory, or --no-www to serve only the API"
            } else {
                "the page is served from ./www by default: run from the checkout, give --www \
                 the page's directory, or --no-www to serve only the API"
            };
            return Err(format!(
                "--www: cannot read the directory {} ({e}); {hint}",
                dir.display()
            ));
        }
    }
    if config.proxy_protocol && config.trusted_proxies.is_empty() {
        return Err(
            "--proxy-protocol: no --trusted-proxy is given, so no peer may send a \
                    PROXY header; name the proxies' addresses with --trusted-proxy"
                .to_owned(),
        );
    }
    let backplane_cap = crate::backplane::MESSAGE_BYTES_MAX;
    if config.redis.is_some() && config.max_message_bytes > backplane_cap {
        return Err(format!(
            "--max-message: {} is more than {backplane_cap} with --redis: every message is \
             announced to every node through Redis's pub/sub, whose output limit (by default \
             32 MB at once, 8 MB for a minute) would cut every node's subscription",
            config.max_message_bytes
        ));
    }
    if config.workers > 1 && config.redis.is_none() {
        return Err(format!(
            "--workers: {} workers need --redis: each worker is its own process with its own \
             rooms, so without a shared Redis a message posted to one would never reach \
             clients of another",
            config.workers
        ));
    }
    Ok(Command::Run(Box::new(config)))
}

/// `--admin-addr` against `--addr`: with `--workers N` worker i takes the admin port + i - 1
/// (`server::setup`), so every one of those ports must exist and none may be `--addr`'s, or
/// a worker would fail to bind after the others had started.
/// The admin port of worker `worker` (counted from 1) of `--workers`: `--admin-addr`'s
/// port plus `worker - 1`, so that every worker's figures can be scraped; `None` past
/// 65535. Start-up checks the last worker's against `--addr` and 65535; each worker binds
/// its own.
pub fn worker_admin_port(port: u16, worker: usize) -> Option<u16> {
    u16::try_from(worker.checked_sub(1)?)
        .ok()
        .and_then(|offset| port.checked_add(offset))
}

fn check_admin_ports(admin: SocketAddr, addr: SocketAddr, workers: usize) -> Result<(), String> {
    if admin.port() == 0 {
        // Each worker takes a free port of its own and logs it.
        return Ok(());
    }
    let Some(last) = worker_admin_port(admin.port(), workers) else {
        return Err(format!(
            "--admin-addr: worker {workers} would listen on port {} + {workers} - 1, past \
             65535; give --admin-addr a lower port",
            admin.port()
        ));
    };
    // A wildcard address holds the port on every address of its family, so it meets them.
    let wildcard = admin.ip().is_unspecified() || addr.ip().is_unspecified();
    let same_host = admin.ip() == addr.ip() || (wildcard && admin.is_ipv4() == addr.is_ipv4());
    if !same_host || !(admin.port()..=last).contains(&addr.port()) {
        return Ok(());
    }
    if workers == 1 {
        return Err(format!(
            "--admin-addr: {admin} is --addr too; the admin listener needs an address \
             of its own (keep it private, e.g. 127.0.0.1:9080)"
        ));
    }
    let worker = addr.port() - admin.port() + 1;
    Err(format!(
        "--admin-addr: worker {worker} would listen for admin on port {}, which is --addr's \
         ({addr}); with --workers {workers} the admin ports are {}..={last}, so give \
         --admin-addr a port outside --addr's",
        addr.port(),
        admin.port()
    ))
}

/// The value after a flag: lexopt's own error if there is none (it names the flag).
fn value(parser: &mut lexopt::Parser, name: &str) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| format!("--{name}: not valid UTF-8"))
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    // Plain decimals only: Rust's float syntax would also take `+5`, `1e3` and `inf`.
    let plain = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let decimal = match text.split_once('.') {
        Some((whole, fraction)) => plain(whole) && plain(fraction),
        None => plain(text),
    };
    let secs: f64 = text.parse().ok().filter(|_| decimal).ok_or_else(|| {
        format!(
            "'{text}' is not a plain number of seconds in {}..={} (like 20 or 0.5)",
            SECONDS.start(),
            SECONDS.end()
        )
    })?;
    if !SECONDS.contains(&secs) {
        return Err(format!(
            "{secs} is outside {}..={} seconds",
            SECONDS.start(),
            SECONDS.end()
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_number(bounds: Bounds, text: &str) -> Result<usize, String> {
    // Digits only: Rust's integer syntax would also take a leading `+`.
    let digits = text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<usize>() {
        Ok(n) if digits && (bounds.min..=bounds.max).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{text}' is not a whole number from {} to {} {}",
            bounds.min,
            bounds.max,
            bounds.unit_after_range()
        )),
    }
}

impl Bounds {
    /// `at most 64 MiB` or `1 KiB to 1 MiB`: the range as `--help` shows it.
    pub fn shown(&self) -> String {
        let show = |n| match self.unit {
            Unit::Bytes => binary_size(n),
            Unit::Count(_) => n.to_string(),
        };
        if self.min == 1 {
            format!("at most {}", show(self.max))
        } else {
            format!("{} to {}", show(self.min), show(self.max))
        }
    }

    /// What follows `from 1 to 67108864` in an error: `bytes (64 MiB)`, or `rooms`.
    fn unit_after_range(&self) -> String {
        match self.unit {
            Unit::Bytes if self.min == 1 => format!("bytes ({})", binary_size(self.max)),
            Unit::Bytes => format!(
                "bytes ({} to {})",
                binary_size(self.min),
                binary_size(self.max)
            ),
            Unit::Count(unit) => unit.to_owned(),
        }
    }
}

/// An origin as a browser sends it in `Origin`: `scheme://host[:port]`, nothing after it,
/// since `Access-Control-Allow-Origin` must match that header byte for byte.
fn check_origin(text: &str) -> Result<(), String> {
    let wrong = |why: &str| {
        Err(format!(
            "'{text}' is not an origin ({why}); an origin is scheme://host[:port], \
             like https://chat.example or http://localhost:3000"
        ))
    };
    let Some((scheme, rest)) = text.split_once("://") else {
        return wrong("no scheme://");
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return wrong("the scheme is not a scheme");
    }
    if rest.contains(['/', '?', '#']) {
        return wrong("an origin has no path, query or fragment, not even a trailing /");
    }
    // A bracketed IPv6 host holds colons of its own; the port is what follows the `]`.
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, port)) => match port.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return wrong("something follows the IPv6 address"),
            },
            None => return wrong("an unclosed ["),
        },
        None => match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
    if !host_ok {
        return wrong("the host is empty or holds characters a host cannot");
    }
    if let Some(port) = port {
        let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
        if !digits || port.parse::<u16>().is_err() {
            return wrong("the port is not a number from 0 to 65535");
        }
    }
    // Browsers serialize an origin in lower case and without the scheme's default port;
    // any other spelling would start fine and then never match a page's `Origin`.
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => Some("80"),
        "https" => Some("443"),
        _ => None,
    };
    let host = host.to_ascii_lowercase();
    let host = if rest.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let port = port
        .filter(|port| Some(*port) != default_port)
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    let browsers_send = format!("{scheme}://{host}{port}");
    if browsers_send != text {
        return Err(format!(
            "'{text}' is not how a browser sends this origin: give '{browsers_send}' (lower \
             case, no default port), since Access-Control-Allow-Origin must match the \
             page's Origin byte for byte"
        ));
    }
    Ok(())
}

/// `67108864` → `64 MiB`: the largest binary unit that divides `n` exactly, else plain bytes.
fn binary_size(n: usize) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    n.to_string()
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
            (&["--history", "+5"][..], "--history"),
            (&["--history", " 5"][..], "--history"),
            (&["--poll-timeout", "+5"][..], "--poll-timeout"),
            (&["--poll-timeout", "1e3"][..], "--poll-timeout"),
            (&["--poll-timeout", "inf"][..], "--poll-timeout"),
            (&["--poll-timeout", ".5"][..], "--poll-timeout"),
            (&["--cors-origin", "not an origin"][..], "--cors-origin"),
            (
                &["--cors-origin", "https://a.example/"][..],
                "--cors-origin",
            ),
            (
                &["--cors-origin", "https://a.example/chat"][..],
                "--cors-origin",
            ),
            (
                &["--cors-origin", "https://a.example:99999"][..],
                "--cors-origin",
            ),
            (&["--cors-origin", "https://"][..], "--cors-origin"),
            (&["--cors-origin", "a.example"][..], "--cors-origin"),
            (&["--cors-origin", "https://a b"][..], "--cors-origin"),
            (&["--cors-origin", "https://a\r\nX: 1"][..], "--cors-origin"),
            (&["--private-rooms", "p-"][..], "--token-secret-file"),
            (&["--www", "/nonexistent"][..], "--no-www"),
            (
                &["--addr", "127.0.0.1:9", "--admin-addr", "127.0.0.1:9"][..],
                "--admin-addr",
            ),
        ];
        for (args, needle) in cases {
            let err = run(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
        assert_eq!(run(&["--help"]).unwrap_err(), "help");
        for origin in [
            "https://a.example",
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "app+x://host",
        ] {
            let config = run(&["--cors-origin", origin]).unwrap();
            assert_eq!(config.cors_origin.as_deref(), Some(origin));
        }
        assert_eq!(
            run(&["--poll-timeout", "0.25"])
                .unwrap()
                .poll_timeout
                .as_millis(),
            250
        );
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
        let options: String = usage()
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
            (
                &[
                    "--max-body",
                    "2097152",
                    "--max-message",
                    "1048577",
                    "--redis",
                    "redis://127.0.0.1:6379",
                ],
                "more than 1048576 with --redis",
            ),
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
        let redis = "redis://127.0.0.1:6379";
        let largest_with_redis = ["--max-body", "2097152", "--max-message", "1048576"];
        let with_redis = run(&[&largest_with_redis[..], &["--redis", redis]].concat()).unwrap();
        assert_eq!(with_redis.max_message_bytes, 1 << 20);
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

    /// `Config` has no `PartialEq` (nor has `http::Limits`); its `Debug` shows every field.
    fn same(a: &Config, b: &Config) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    /// Every entry in the table shows up in `--help`: its spelling, its help line, its range
    /// and its default, each flag starting exactly one line, in table order.
    #[test]
    fn every_flag_is_in_the_usage_text() {
        let text = usage();
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for flag in FLAGS {
            let help = flag.help.split_whitespace().collect::<Vec<_>>().join(" ");
            let line = format!("{} {help}", flag.spelled());
            assert!(flat.contains(&line), "{line}");
            if let Some(value) = flag.default {
                assert!(flat.contains(&format!("default: {value}")), "{}", flag.long);
            }
            assert!(flat.contains(flag.default_note), "{}", flag.long);
            if let Kind::Number(bounds, _) = flag.kind {
                assert!(flat.contains(&bounds.shown()), "{}", flag.long);
            }
        }
        let starts: Vec<&str> = text.lines().filter(|l| l.starts_with("  -")).collect();
        assert_eq!(starts.len(), FLAGS.len(), "{starts:#?}");
        for (line, flag) in starts.iter().zip(FLAGS) {
            assert!(
                line[2..].starts_with(&format!("{} ", flag.spelled())),
                "{line}"
            );
        }
        for line in text.lines() {
            assert!(line.chars().count() <= USAGE_COLUMNS, "too wide: {line}");
        }
        assert!(flat.contains("-h, --help print this help"));
        assert!(flat.contains("--no-www serve only the API"));
        assert!(flat.contains("Times (SECS) are seconds from 0.01 to 86400"));
        assert!(flat.contains(&format!("open files - {RESERVED_DESCRIPTORS}")));
        assert!(flat.contains(
            "--max-body BYTES largest request body; past it: 413 [at most 64 MiB; default: 65536]"
        ));
        assert!(flat.contains(
            "--max-head BYTES largest request head; past it: 431 [1 KiB to 1 MiB; default: 8192]"
        ));
    }

    /// The table is consistent with itself: no name twice (the second would never be
    /// reached), and a value shown exactly for the flags that read one, named as the note
    /// at the end of `--help` explains.
    #[test]
    fn the_table_is_well_formed() {
        for (i, flag) in FLAGS.iter().enumerate() {
            for other in &FLAGS[i + 1..] {
                assert_ne!(flag.long, other.long);
                assert!(
                    flag.short.is_none() || flag.short != other.short,
                    "{}",
                    flag.long
                );
            }
            let expected = match flag.kind {
                Kind::Help | Kind::Switch(_) => Some(""),
                Kind::Seconds(_) => Some("SECS"),
                Kind::Number(bounds, _) if bounds.unit == Unit::Bytes => Some("BYTES"),
                Kind::Number(..) => Some("N"),
                Kind::Text(_) => None,
            };
            match expected {
                Some(value) => assert_eq!(flag.value, value, "{}", flag.long),
                None => assert!(!flag.value.is_empty(), "{}", flag.long),
            }
            if let Kind::Number(bounds, _) = flag.kind {
                assert!(bounds.min < bounds.max, "{}", flag.long);
            }
            if matches!(flag.kind, Kind::Seconds(_) | Kind::Number(..)) {
                let shows_one = flag.default.is_some() || !flag.default_note.is_empty();
                assert!(shows_one, "{} shows no default", flag.long);
            }
        }
    }

    /// What `--help` shows as the default is the default: typing it, either way a value
    /// can be given, changes nothing.
    #[test]
    fn every_default_shown_parses_back_to_the_default() {
        let default = Config::default();
        let mut checked = 0;
        for flag in FLAGS {
            let Some(value) = flag.default else { continue };
            let name = format!("--{}", flag.long);
            let joined = format!("{name}={value}");
            for args in [&[name.as_str(), value][..], &[joined.as_str()][..]] {
                let config = run(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
                assert!(same(&config, &default), "{args:?} gave {config:#?}");
            }
            checked += 1;
        }
        // All but --no-www, --proxy-protocol, --help and the eight whose default is "unset".
        assert_eq!(checked, FLAGS.len() - 11);
    }

    /// Each range in the table is the one the parser enforces: both ends are accepted, one
    /// past either end is refused with the flag's name and the range.
    #[test]
    fn every_range_in_the_table_is_enforced() {
        // --max-message must also fit in --max-body (and stays under 1 MiB with Redis),
        // and more than one worker needs Redis: give every flag the most room.
        for flag in FLAGS {
            let room = match flag.long {
                "workers" => [
                    "--max-body",
                    "67108864",
                    "--redis",
                    "redis://127.0.0.1:6379",
                ],
                _ => ["--max-body", "67108864", "--history", "1000"],
            };
            let name = format!("--{}", flag.long);
            let (good, bad, range) = match flag.kind {
                Kind::Number(bounds, _) => (
                    vec![bounds.min.to_string(), bounds.max.to_string()],
                    bounds
                        .min
                        .checked_sub(1)
                        .into_iter()
                        .chain([bounds.max + 1])
                        .map(|n| n.to_string())
                        .collect(),
                    format!("from {} to {}", bounds.min, bounds.max),
                ),
                Kind::Seconds(_) => (
                    vec!["0.01".into(), "86400".into(), "1.5".into()],
                    vec!["0.009".into(), "86400.5".into(), "NaN".into(), "inf".into()],
                    "0.01..=86400".into(),
                ),
                _ => continue,
            };
            for value in &good {
                let args = [room[0], room[1], room[2], room[3], &name, value];
                run(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            }
            for value in &bad {
                let args = [room[0], room[1], room[2], room[3], &name, value];
                let err = run(&args).unwrap_err();
                let named = err.starts_with(&format!("{name}: "));
                assert!(named && err.contains(&range), "{args:?}: {err}");
            }
        }
    }

    /// A secret file for the `--token-secret-file` case, made once per test run.
    fn secret_file() -> &'static str {
        static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        PATH.get_or_init(|| {
            let path =
                std::env::temp_dir().join(format!("comet-config-secret-{}", std::process::id()));
            std::fs::write(&path, "s".repeat(40)).unwrap();
            path.to_string_lossy().into_owned()
        })
    }

    /// Each flag sets its own field, not a neighbour's with the same default; and every
    /// flag in the table has a case here, so a new one cannot skip this check.
    #[test]
    fn every_flag_sets_its_own_field() {
        type Check = fn(&Config) -> bool;
        let cases: &[(&str, Option<&str>, Check)] = &[
            ("addr", Some("0.0.0.0:9000"), |c| {
                c.addr.to_string() == "0.0.0.0:9000"
            }),
            ("www", Some("src"), |c| c.www == Some(PathBuf::from("src"))),
            ("no-www", None, |c| c.www.is_none()),
            ("poll-timeout", Some("1.5"), |c| {
                c.poll_timeout.as_millis() == 1500
            }),
            ("max-body", Some("7000"), |c| c.limits.body_bytes == 7000),
            ("max-head", Some("7000"), |c| c.limits.head_bytes == 7000),
            ("backlog", Some("7"), |c| c.listen_backlog == 7),
            ("max-conns", Some("7"), |c| c.max_conns == Some(7)),
            ("open-files", Some("7"), |c| c.open_files == Some(7)),
            ("request-timeout", Some("1.5"), |c| {
                c.request_timeout.as_millis() == 1500
            }),
            ("idle-timeout", Some("1.5"), |c| {
                c.idle_timeout.as_millis() == 1500
            }),
            ("write-timeout", Some("1.5"), |c| {
                c.write_timeout.as_millis() == 1500
            }),
            ("shutdown-grace", Some("1.5"), |c| {
                c.shutdown_grace.as_millis() == 1500
            }),
            ("history", Some("7"), |c| c.history_messages == 7),
            ("history-bytes", Some("7"), |c| c.history_bytes == 7),
            ("max-rooms", Some("7"), |c| c.max_rooms == 7),
            ("max-message", Some("7"), |c| c.max_message_bytes == 7),
            ("cors-origin", Some("https://a.example"), |c| {
                c.cors_origin.as_deref() == Some("https://a.example")
            }),
            ("heartbeat", Some("1.5"), |c| {
                c.heartbeat.as_millis() == 1500
            }),
            ("max-names-per-room", Some("7"), |c| {
                c.max_names_per_room == 7
            }),
            ("max-names-per-client", Some("7"), |c| {
                c.max_names_per_client == 7
            }),
            ("max-rooms-per-client", Some("0"), |c| {
                c.max_rooms_per_client == 0
            }),
            ("admin-addr", Some("127.0.0.1:9080"), |c| {
                c.admin_addr == Some("127.0.0.1:9080".parse().unwrap())
            }),
            ("max-conns-per-client", Some("0"), |c| {
                c.max_conns_per_client == 0
            }),
            ("trusted-proxy", Some("10.0.0.0/8"), |c| {
                let inside = c.trusted_proxies.contains([10, 1, 2, 3].into());
                inside && !c.trusted_proxies.contains([127, 0, 0, 1].into())
            }),
            // Needs a --trusted-proxy (see the loop below).
            ("proxy-protocol", None, |c| c.proxy_protocol),
            ("post-rate", Some("7"), |c| c.post_rate == 7),
            ("post-burst", Some("7"), |c| c.post_burst == 7),
            ("typing-interval", Some("1.5"), |c| {
                c.typing_interval.as_millis() == 1500
            }),
            ("private-rooms", Some("p-"), |c| {
                c.private_rooms.as_deref() == Some("p-")
            }),
            ("log-level", Some("trace"), |c| {
                c.log_level == log::LevelFilter::Trace
            }),
            ("redis", Some("redis://127.0.0.1:7"), |c| {
                c.redis.as_ref().map(|r| r.shown.as_str()) == Some("redis://127.0.0.1:7")
            }),
            ("workers", Some("1"), |c| c.workers == 1),
            ("token-secret-file", Some(secret_file()), |c| {
                format!("{:?}", c.token_secret) == "Some(Secret(40 bytes))"
            }),
        ];
        for flag in FLAGS {
            let is_case = cases.iter().any(|(name, _, _)| *name == flag.long);
            assert!(
                is_case || flag.long == "help",
                "no case for --{}",
                flag.long
            );
        }
        for (name, value, check) in cases {
            let name = format!("--{name}");
            let mut args = vec![name.as_str()];
            args.extend(value);
            if name == "--private-rooms" {
                // Private rooms need tokens, and tokens a secret.
                args.extend(["--token-secret-file", secret_file()]);
            }
            if name == "--proxy-protocol" {
                args.extend(["--trusted-proxy", "127.0.0.1"]);
            }
            let config = run(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(check(&config), "{args:?} gave {config:#?}");
        }
    }

    /// `--trusted-proxy` adds up; a PROXY header needs someone trusted to send it.
    #[test]
    fn trusted_proxies_are_repeatable_and_checked() {
        let config = run(&["--trusted-proxy", "10.0.0.0/8", "--trusted-proxy=::1"]).unwrap();
        assert!(config.trusted_proxies.contains([10, 9, 9, 9].into()));
        assert!(config
            .trusted_proxies
            .contains(std::net::Ipv6Addr::LOCALHOST.into()));
        assert!(!config.proxy_protocol);
        let err = run(&["--trusted-proxy", "10.0.0.1/8"]).unwrap_err();
        assert!(
            err.starts_with("--trusted-proxy: ") && err.contains("10.0.0.0/8"),
            "{err}"
        );
        let err = run(&["--trusted-proxy", "nginx"]).unwrap_err();
        assert!(
            err.starts_with("--trusted-proxy: 'nginx' is not an address"),
            "{err}"
        );
        let err = run(&["--proxy-protocol"]).unwrap_err();
        assert!(
            err.starts_with("--proxy-protocol: ") && err.contains("--trusted-proxy"),
            "{err}"
        );
    }

    /// A browser's `Origin` is lower case and leaves out the scheme's default port, and
    /// `Access-Control-Allow-Origin` must match it byte for byte: an origin spelled any
    /// other way would start fine and then never let a page in, so it is refused with the
    /// spelling that works.
    #[test]
    fn a_cors_origin_is_refused_unless_spelled_as_browsers_send_it() {
        for (origin, suggestion) in [
            ("HTTPS://a.example", "https://a.example"),
            ("https://Chat.Example", "https://chat.example"),
            ("https://a.example:443", "https://a.example"),
            ("http://a.example:80", "http://a.example"),
            ("http://[::1]:80", "http://[::1]"),
        ] {
            let err = run(&["--cors-origin", origin]).unwrap_err();
            assert!(
                err.starts_with("--cors-origin: ") && err.contains(&format!("'{suggestion}'")),
                "{origin}: {err}"
            );
        }
        for origin in ["https://a.example:8443", "http://a.example:443"] {
            let config = run(&["--cors-origin", origin]).unwrap();
            assert_eq!(config.cors_origin.as_deref(), Some(origin));
        }
    }

    /// With `--workers N` worker i listens for admin on port + i - 1: a range that runs
    /// past 65535 or over `--addr` is refused at start-up, not by a worker failing to bind.
    #[test]
    fn worker_admin_ports_must_fit_and_miss_addr() {
        let workers = ["--workers", "3", "--redis", "redis://127.0.0.1:6379"];
        let with = |extra: &[&'static str]| {
            let mut args = workers.to_vec();
            args.extend_from_slice(extra);
            run(&args)
        };
        let err =
            with(&["--addr", "127.0.0.1:9082", "--admin-addr", "127.0.0.1:9080"]).unwrap_err();
        assert!(
            err.starts_with("--admin-addr: ") && err.contains("worker 3") && err.contains("--addr"),
            "{err}"
        );
        let err = with(&["--addr", "127.0.0.1:9081", "--admin-addr", "0.0.0.0:9080"]).unwrap_err();
        assert!(
            err.starts_with("--admin-addr: ") && err.contains("worker 2"),
            "{err}"
        );
        let err = with(&["--admin-addr", "127.0.0.1:65534"]).unwrap_err();
        assert!(
            err.starts_with("--admin-addr: ") && err.contains("65535"),
            "{err}"
        );
        with(&["--addr", "127.0.0.1:9083", "--admin-addr", "127.0.0.1:9080"]).unwrap();
        with(&["--addr", "127.0.0.2:9081", "--admin-addr", "127.0.0.1:9080"]).unwrap();
        with(&["--admin-addr", "127.0.0.1:65533"]).unwrap();
        with(&["--admin-addr", "127.0.0.1:0"]).unwrap();
    }

    /// The table is the whole command line: anything not in it is refused.
    #[test]
    fn a_flag_missing_from_the_table_cannot_be_parsed() {
        let refused: &[&[&str]] = &[
            &["--frobnicate"],
            &["--max-bod", "1"],
            &["--max-body-bytes", "1"],
            &["--ADDR", "127.0.0.1:1"],
            &["-a", "127.0.0.1:1"],
            &["-H"],
            &["stray"],
            // Flags in the table, used the wrong way.
            &["--no-www=yes"],
            &["--addr"],
        ];
        for args in refused {
            let err = run(args).unwrap_err();
            let typed = args[0].split('=').next().unwrap();
            assert!(err.contains(typed), "{args:?}: {err}");
        }
        assert_eq!(run(&["-h"]).unwrap_err(), "help");
        assert_eq!(
            run(&["--addr", "127.0.0.1:1", "--help"]).unwrap_err(),
            "help"
        );
    }

    /// A "word" too long for any line (a bracket with a long note) is broken at its spaces
    /// rather than overflow the 92 columns.
    #[test]
    fn wrapping_never_passes_the_column_limit() {
        let mut text = String::new();
        let long = format!("[{}]", "default word ".repeat(20).trim_end());
        wrap(
            &mut text,
            "  --flag N".into(),
            28,
            &["help".into(), long.clone()],
        );
        assert!(text.lines().count() > 2, "{text}");
        for line in text.lines() {
            assert!(line.len() <= USAGE_COLUMNS, "{line}");
        }
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(flat, format!("--flag N help {long}"));
    }
}
