//! The command line into a [`Config`]: lexopt splits it, each flag is looked up in
//! [`FLAGS`], and its value is read as the flag's [`Kind`] says (plain seconds, a whole
//! number within its [`Bounds`], or text its setter parses) with the flag's name put in
//! front of any error. Kept apart from the table so the table stays data, and apart from
//! `check` so one flag's reading never depends on another's.

use super::check::{between_flags, Typed};
use super::flags::{Bounds, Kind, FLAGS, SECONDS};
use super::settings::Config;
use std::time::Duration;

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
    let mut typed = Typed::default();
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
        // The rules between flags, kept out of the table, depend on these: see `check`.
        typed.max_message |= name == "max-message";
    }
    between_flags(&mut config, typed)?;
    Ok(Command::Run(Box::new(config)))
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

/// The command line as the binary reads it, for the tests of every module here: a
/// configuration, or the error text; `--help` comes back as the error `help`.
#[cfg(test)]
pub(super) fn run(args: &[&str]) -> Result<Config, String> {
    match parse_args(args.iter().copied())? {
        Command::Run(config) => Ok(*config),
        Command::Help => Err("help".into()),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse::run;
    use crate::config::Www;
    use std::time::Duration;

    #[test]
    fn defaults() {
        let config = run(&[]).unwrap();
        assert_eq!(config.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.poll_timeout, Duration::from_secs(20));
        assert_eq!(config.www, Www::BuiltIn);
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
        assert_eq!(config.www, Www::Off);
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
}
