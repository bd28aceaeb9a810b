//! [`FLAGS`], the one list of command-line flags, and the types that describe one: its
//! spelling, its help line, the default `--help` shows, what its value must be ([`Kind`],
//! [`Bounds`]) and the [`Config`] field it sets. The parser reads the command line through
//! this table and `--help` is printed from it, so neither can name a flag the other lacks;
//! the tests here hold every entry to its own promises (its default parses back to the
//! default, its range is the one enforced, it sets its own field).

use super::origin::check_origin;
use super::Config;
use crate::backplane::url;
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
    use crate::config::run;

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
}
