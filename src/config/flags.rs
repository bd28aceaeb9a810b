//! [`FLAGS`], the one list of command-line flags, and the types that describe one: its
//! spelling, its help line, the default `--help` shows, what its value must be ([`Kind`],
//! [`Bounds`]) and the [`Config`] field it sets. The parser reads the command line through
//! this table and `--help` is printed from it, so neither can name a flag the other lacks;
//! the tests here hold every entry to its own promises (its default parses back to the
//! default, its range is the one enforced, it sets its own field).

use super::origin::check_origin;
use super::settings::{Config, Www};
use crate::backplane::{shards, url};
use std::path::PathBuf;
use std::time::Duration;

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

/// `--workers`' ceiling. A worker holds its open-files limit less 32 connections (its
/// `--max-conns` default), so under a per-process cap of 20,000 open files it is the
/// number of workers, not memory, that bounds the clients one port holds: 256 × 19,968 is
/// 5.1 million, past what 24 GiB holds at ~6.7 KB of box memory a waiting client (mostly
/// the kernel's state for its two loopback sockets: about 3.3 million). A box whose limit
/// is higher needs fewer workers for as many clients, not more. Each worker costs
/// ~3 MiB of RSS (~0.4 MiB of it its own), a pipe to the supervisor and two connections to
/// Redis, so 256 of them cost ~100 MiB of private memory and 512 Redis clients (of
/// Redis's default 10,000); far more would be a typo.
pub const WORKERS_MAX: usize = 256;

/// The table's shorthand: one constructor per [`Kind`], so an entry says only what is
/// particular to its flag. The value's name follows from the kind where it can (`SECS`,
/// `BYTES`, `N`, none for a switch), and a flag has no one-letter alias, no default shown
/// and no note unless [`Flag::default`] or [`Flag::note`] adds one.
impl Flag {
    /// A flag with everything `--help` may show left out; the constructors below start here.
    const fn new(long: &'static str, value: &'static str, help: &'static str, kind: Kind) -> Flag {
        Flag {
            long,
            short: None,
            value,
            help,
            default: None,
            default_note: "",
            kind,
        }
    }

    /// A flag that takes no value: `--no-www`.
    const fn switch(long: &'static str, help: &'static str, set: fn(&mut Config)) -> Flag {
        Flag::new(long, "", help, Kind::Switch(set))
    }

    /// A time in seconds within [`SECONDS`]: `--poll-timeout SECS`.
    const fn seconds(
        long: &'static str,
        help: &'static str,
        set: fn(&mut Config, Duration),
    ) -> Flag {
        Flag::new(long, "SECS", help, Kind::Seconds(set))
    }

    /// A whole number within `bounds`: `--max-body BYTES` when it counts bytes, else
    /// `--history N`.
    const fn number(
        long: &'static str,
        help: &'static str,
        bounds: Bounds,
        set: fn(&mut Config, usize),
    ) -> Flag {
        let value = match bounds.unit {
            Unit::Bytes => "BYTES",
            Unit::Count(_) => "N",
        };
        Flag::new(long, value, help, Kind::Number(bounds, set))
    }

    /// Any other value, named by `value` (`ADDR`, `URL`), which `set` parses.
    const fn text(
        long: &'static str,
        value: &'static str,
        help: &'static str,
        set: fn(&mut Config, &str) -> Result<(), String>,
    ) -> Flag {
        Flag::new(long, value, help, Kind::Text(set))
    }

    /// Shows `value` as the default: what typing it gives is `Config::default()`'s (a
    /// test checks).
    const fn default(self, value: &'static str) -> Flag {
        Flag {
            default: Some(value),
            ..self
        }
    }

    /// Says `note` after the default, or instead of it when there is none.
    const fn note(self, note: &'static str) -> Flag {
        Flag {
            default_note: note,
            ..self
        }
    }
}

/// Every flag the command line accepts, in `--help` order.
pub static FLAGS: &[Flag] = &[
    Flag::text("addr", "ADDR", "listen address", |config, text| {
        config.addr = text
            .parse()
            .map_err(|_| format!("'{text}' is not an address like 127.0.0.1:8080"))?;
        Ok(())
    })
    .default("127.0.0.1:8080"),
    Flag::text(
        "admin-addr",
        "ADDR",
        "also listen here for /metrics (Prometheus) and /loop (the live X-ray); \
         keep it private (e.g. 127.0.0.1:9080); with --workers, worker i takes port + i - 1",
        |config, text| {
            config.admin_addr = Some(
                text.parse()
                    .map_err(|_| format!("'{text}' is not an address like 127.0.0.1:9080"))?,
            );
            Ok(())
        },
    )
    .note("none: no admin listener"),
    // No typed value gives the default (the page built in), so it is a note, not a default.
    Flag::text(
        "www",
        "DIR",
        "serve DIR (read at start-up) instead of the page built in",
        |config, text| {
            config.www = Www::Dir(PathBuf::from(text));
            Ok(())
        },
    )
    .note("www/ as it was at build time"),
    Flag::switch("no-www", "serve only the API", |config| {
        config.www = Www::Off
    }),
    Flag::seconds(
        "poll-timeout",
        "how long GET /chat waits",
        |config, time| config.poll_timeout = time,
    )
    .default("20"),
    Flag::number(
        "max-body",
        "largest request body; past it: 413",
        Bounds::bytes(1, BODY_BYTES_MAX),
        |config, n| config.limits.body_bytes = n,
    )
    .default("65536"),
    // Below 1 KiB a browser's ordinary headers do not fit; above 1 MiB is no longer a
    // request head but a way to make us buffer.
    Flag::number(
        "max-head",
        "largest request head; past it: 431",
        Bounds::bytes(1 << 10, 1 << 20),
        |config, n| config.limits.head_bytes = n,
    )
    .default("8192"),
    // `listen(2)` takes an `int`; with i32::MAX as the ceiling, the setter cannot fail.
    Flag::number(
        "backlog",
        "listen backlog",
        Bounds::count(1, i32::MAX as usize, "connections"),
        |config, n| config.listen_backlog = i32::try_from(n).unwrap_or(i32::MAX),
    )
    .default("65535")
    .note("capped by somaxconn"),
    // The ceiling is well past what one loop can serve. The note's 32 is
    // RESERVED_DESCRIPTORS (a test checks).
    Flag::number(
        "max-conns",
        "connections held at once; past it: 503",
        Bounds::count(1, 10_000_000, "connections"),
        |config, n| config.max_conns = Some(n),
    )
    .note("open files - 32"),
    // Linux's own ceiling (`fs.nr_open`) defaults to 1048576.
    Flag::number(
        "open-files",
        "set the soft open-files limit",
        Bounds::count(1, 10_000_000, "descriptors"),
        |config, n| config.open_files = Some(n as u64),
    )
    .note("raise to the hard limit"),
    Flag::seconds(
        "request-timeout",
        "time to send a whole request, else 408",
        |config, time| config.request_timeout = time,
    )
    .default("10"),
    Flag::seconds(
        "idle-timeout",
        "idle keep-alive connections close",
        |config, time| config.idle_timeout = time,
    )
    .default("30"),
    Flag::seconds(
        "write-timeout",
        "a client slower than this to read a response is dropped",
        |config, time| config.write_timeout = time,
    )
    .default("10"),
    Flag::seconds(
        "shutdown-grace",
        "on SIGINT/SIGTERM, time to flush before exit",
        |config, time| config.shutdown_grace = time,
    )
    .default("5"),
    Flag::number(
        "history",
        "messages each room keeps for resuming clients",
        Bounds::count(1, 1_000_000, "messages"),
        |config, n| config.history_messages = n,
    )
    .default("1000"),
    Flag::number(
        "history-bytes",
        "bytes each room's history may hold",
        Bounds::bytes(1, 1 << 30),
        |config, n| config.history_bytes = n,
    )
    .default("1048576"),
    Flag::number(
        "max-rooms",
        "rooms at once; past it, an empty room gives way, else the idle room unused \
         longest (history and all), else 507",
        Bounds::count(1, 1_000_000, "rooms"),
        |config, n| config.max_rooms = n,
    )
    .default("1000"),
    // Checked against --max-body (and the Redis cap) once every flag is read, whatever
    // their order: see `check`.
    Flag::number(
        "max-message",
        "longest message text, no longer than --max-body (nor 1 MiB with --redis); \
         past it: 413",
        Bounds::bytes(1, BODY_BYTES_MAX),
        |config, n| config.max_message_bytes = n,
    )
    .default("4096")
    .note("or --max-body if smaller"),
    Flag::text(
        "cors-origin",
        "ORIGIN",
        "allow this origin (scheme://host[:port], as browsers send it) to use the room API",
        |config, text| {
            check_origin(text)?;
            config.cors_origin = Some(text.to_owned());
            Ok(())
        },
    )
    .note("none"),
    Flag::seconds(
        "heartbeat",
        "comment line on idle event streams",
        |config, time| config.heartbeat = time,
    )
    .default("15"),
    Flag::number(
        "max-names-per-room",
        "names present in one room; past it: 507",
        Bounds::count(1, 1_000_000, "names"),
        |config, n| config.max_names_per_room = n,
    )
    .default("1000"),
    Flag::number(
        "max-names-per-client",
        "names one client address may have present; past it: 429",
        Bounds::count(1, 1_000_000, "names"),
        |config, n| config.max_names_per_client = n,
    )
    .default("32"),
    Flag::number(
        "max-rooms-per-client",
        "rooms one client address may give their first message; past it: 429; 0: no limit",
        Bounds::count(0, 1_000_000, "rooms"),
        |config, n| config.max_rooms_per_client = n,
    )
    .default("64"),
    Flag::number(
        "max-conns-per-client",
        "connections one client address may hold at once; past it: 503; 0: no limit",
        Bounds::count(0, 10_000_000, "connections"),
        |config, n| config.max_conns_per_client = n,
    )
    .default("256"),
    Flag::text(
        "trusted-proxy",
        "CIDR",
        "a reverse proxy at this address or network (repeatable): its X-Forwarded-For \
         (or PROXY header) names the client every per-client limit counts",
        |config, text| {
            config.trusted_proxies.add(text.parse()?);
            Ok(())
        },
    )
    .note("none: every client is the address it connects from"),
    Flag::switch(
        "proxy-protocol",
        "trusted proxies start each connection with a PROXY header (v1 or v2), as \
         HAProxy's send-proxy and nginx's proxy_protocol do; one without it is closed",
        |config| config.proxy_protocol = true,
    ),
    Flag::switch(
        "no-websocket",
        "turn off GET /rooms/{room}/ws (it answers 404), for a site whose proxy drops \
         WebSocket; clients fall back to /events and /messages",
        |config| config.websocket = false,
    ),
    Flag::number(
        "post-rate",
        "posts per second one client may make, on average; past it: 429",
        Bounds::count(1, 1_000_000, "posts"),
        |config, n| config.post_rate = n,
    )
    .default("10"),
    Flag::number(
        "post-burst",
        "posts one client may make at once before --post-rate applies",
        Bounds::count(1, 1_000_000, "posts"),
        |config, n| config.post_burst = n,
    )
    .default("20"),
    Flag::seconds(
        "typing-interval",
        "one typing event per client per this long; more: 429",
        |config, time| config.typing_interval = time,
    )
    .default("1"),
    Flag::text(
        "token-secret-file",
        "PATH",
        "require HS256 tokens signed with the secret in this file (see comet-chat token)",
        |config, text| {
            let secret = crate::token::Secret::load(std::path::Path::new(text))?;
            config.token_secret = Some(std::sync::Arc::new(secret));
            Ok(())
        },
    )
    .note("none: no tokens, anyone may post under any name"),
    Flag::text(
        "private-rooms",
        "PREFIX",
        "rooms named with this prefix need a token naming them; * never covers them; \
         needs --token-secret-file",
        |config, text| {
            if !crate::api::valid_room(text) {
                return Err(format!(
                    "'{text}' is not the start of a room name (A-Z a-z 0-9 _ -)"
                ));
            }
            config.private_rooms = Some(text.to_owned());
            Ok(())
        },
    )
    .note("none"),
    Flag::text(
        "redis",
        "URL",
        "share rooms through this Redis: redis://[user:pass@]host:port[/db], \
         unix:///path or redis+sentinel://host:port[,host:port...]/MASTER[/db]; repeatable: \
         each is a shard, rooms spread over them by name (same list, same order on every node)",
        |config, text| {
            if config.redis.len() == shards::SHARDS_MAX {
                return Err(format!("at most {} shards", shards::SHARDS_MAX));
            }
            config.redis.push(url::parse(text)?);
            Ok(())
        },
    )
    .note("none: rooms live in this process"),
    Flag::number(
        "redis-replicas",
        "with --redis, a post is answered 201 only once this many Redis replicas hold it \
         (WAIT), else 503 to retry with its client_id",
        Bounds::count(0, 16, "replicas"),
        |config, n| config.redis_replicas = n as u32,
    )
    .default("0"),
    Flag::number(
        "workers",
        "worker processes on one port, each one loop holding up to its open-files limit \
         - 32 connections; above 1 needs --redis; the cap holds 5.1 million clients at a \
         20,000 limit, more than memory allows (a client costs the box ~6.7 KB)",
        Bounds::count(1, WORKERS_MAX, "workers"),
        |config, n| config.workers = n,
    )
    .default("1"),
    Flag::text(
        "log-level",
        "LEVEL",
        "off|error|warn|info|debug|trace",
        |config, text| {
            config.log_level = text
                .parse()
                .map_err(|_| format!("'{text}' is not off|error|warn|info|debug|trace"))?;
            Ok(())
        },
    )
    .default("info"),
    Flag {
        short: Some('h'),
        ..Flag::new("help", "", "print this help", Kind::Help)
    },
];

impl Bounds {
    /// A number of bytes from `min` to `max`.
    const fn bytes(min: usize, max: usize) -> Bounds {
        Bounds {
            min,
            max,
            unit: Unit::Bytes,
        }
    }

    /// A number of `unit` (plural: `rooms`) from `min` to `max`.
    const fn count(min: usize, max: usize, unit: &'static str) -> Bounds {
        Bounds {
            min,
            max,
            unit: Unit::Count(unit),
        }
    }

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
    pub(super) fn unit_after_range(&self) -> String {
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
    use crate::config::parse::run;

    /// `Config` has no `PartialEq` (nor has `http::Limits`); its `Debug` shows every field.
    fn same(a: &Config, b: &Config) -> bool {
        format!("{a:?}") == format!("{b:?}")
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
        // All but --no-www, --proxy-protocol, --no-websocket, --help and the nine whose
        // default is "unset" or not a value one could type (--www: the page built in).
        assert_eq!(checked, FLAGS.len() - 13);
    }

    /// Each range in the table is the one the parser enforces: both ends are accepted, one
    /// past either end is refused with the flag's name and the range.
    #[test]
    fn every_range_in_the_table_is_enforced() {
        // --max-message must also fit in --max-body (and stays under 1 MiB with Redis),
        // and more than one worker needs Redis: give every flag the most room.
        for flag in FLAGS {
            let room = match flag.long {
                "workers" | "redis-replicas" => [
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
            ("www", Some("src"), |c| {
                c.www == Www::Dir(PathBuf::from("src"))
            }),
            ("no-www", None, |c| c.www == Www::Off),
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
            ("no-websocket", None, |c| !c.websocket),
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
                c.redis.first().map(|r| r.shown.as_str()) == Some("redis://127.0.0.1:7")
            }),
            ("redis-replicas", Some("2"), |c| c.redis_replicas == 2),
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
            if name == "--redis-replicas" {
                args.extend(["--redis", "redis://127.0.0.1:6379"]);
            }
            let config = run(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(check(&config), "{args:?} gave {config:#?}");
        }
    }
}
