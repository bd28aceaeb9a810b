//! The command line: `--seconds` and `--clients`, the defaults a plain
//! `cargo bench --bench soak` runs with, and the few-second smoke run that
//! `cargo test --benches` gets instead.

use std::time::Duration;

/// Default run length, and the most `--seconds` may ask for: the soak must stop by itself.
const DEFAULT_RUN_SECS: u64 = 180;
const MAX_RUN_SECS: u64 = 1800;

/// Default churn clients over the run, and the most `--clients` may ask for (100 a second
/// over the longest run; far more than the open cap needs).
const DEFAULT_CHURN_CLIENTS: usize = 5000;
const MAX_CHURN_CLIENTS: usize = 200_000;

pub const USAGE: &str = "\
soak: long-running correctness soak for comet-chat

USAGE: cargo bench --bench soak [-- OPTIONS]

OPTIONS:
  --seconds N   how long to run the load          [default: 180; at most 1800]
  --clients N   short-lived churn clients in all  [default: 5000]
  -h, --help    print this help
";

/// The defaults when run by `cargo test --benches` rather than `cargo bench`.
const SMOKE_RUN_SECS: u64 = 5;
const SMOKE_CHURN_CLIENTS: usize = 200;

/// What the command line asked for.
pub struct Args {
    pub run: Duration,
    pub churn_clients: usize,
}

/// Parses the arguments; `Ok(None)` for `--help`.
pub fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        run: Duration::from_secs(DEFAULT_RUN_SECS),
        churn_clients: DEFAULT_CHURN_CLIENTS,
    };
    // `cargo bench` passes --bench; `cargo test --benches` runs this binary without it,
    // and then a few-second smoke run is the right default, not three minutes.
    if !std::env::args().any(|a| a == "--bench") {
        args.run = Duration::from_secs(SMOKE_RUN_SECS);
        args.churn_clients = SMOKE_CHURN_CLIENTS;
    }
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (word.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| words.next())
                .ok_or(format!("{name} needs a value"))
        };
        match flag.as_str() {
            // `cargo bench` passes --bench to every bench binary.
            "--bench" => {}
            "-h" | "--help" => return Ok(None),
            "--seconds" => {
                let text = value("--seconds")?;
                match text.parse::<u64>() {
                    Ok(n) if (1..=MAX_RUN_SECS).contains(&n) => args.run = Duration::from_secs(n),
                    _ => return Err(format!("--seconds: '{text}' is not 1..={MAX_RUN_SECS}")),
                }
            }
            "--clients" => {
                let text = value("--clients")?;
                match text.parse::<usize>() {
                    Ok(n) if n <= MAX_CHURN_CLIENTS => args.churn_clients = n,
                    _ => {
                        return Err(format!(
                            "--clients: '{text}' is not 0..={MAX_CHURN_CLIENTS}"
                        ))
                    }
                }
            }
            _ => return Err(format!("unknown argument '{word}'")),
        }
    }
    Ok(Some(args))
}
