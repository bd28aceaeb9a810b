//! # The soak test
//!
//! ```sh
//! cargo bench --bench soak                                # 180 s, 5,000 churn clients
//! cargo bench --bench soak -- --seconds 20 --clients 800  # a quick look
//! ```
//!
//! Owns one question: after minutes of well-behaved traffic mixed with thousands of clients
//! that misbehave and vanish, is the server still correct and back where it started? It
//! builds the release server (`cargo build --release --bin comet-chat`), starts it as a
//! child process on a free loopback port with short timeouts (so churn is reaped within
//! seconds) and a history of the last 2,000 messages (40 s of posting: a client that keeps
//! up never needs more, and memory cannot grow with the run's length), records a
//! baseline from `/stats`, and then for `--seconds` (default 180, at most 1800) runs at once:
//!
//! - **24 long-pollers** looping `GET /rooms/soak/messages?since=<next>` on keep-alive
//!   connections, and **8 SSE readers** on `GET /rooms/soak/events` that reconnect with
//!   `Last-Event-ID` like an `EventSource`; all record every message id and text;
//! - **4 posters**, about 50 messages/s in all, each message with a unique `client_id`;
//!   one post in 20 is sent again at once and must be answered `200` with the original id;
//! - **churn**: `--clients` (default 5,000) short-lived clients spread over the run and over
//!   source addresses 127.0.0.2–127.0.0.33, at most 2,000 open at once, each held a few
//!   seconds at most: park a poll and vanish; half a request head and vanish; slowloris (a
//!   header byte every 500 ms until the server answers 408 and closes); a slow reader
//!   (4 KiB receive buffer, an event stream or a parked poll, never read); connect and send
//!   nothing; classic `GET /chat` and vanish.
//!
//! A progress line every 10 s. Then posters and churn stop, the well-behaved clients get up
//! to 10 s to catch up with the last posted id and stop, and the server gets up to 20 s to
//! return to its baseline.
//!
//! ## What it checks
//!
//! A table with PASS/FAIL per check; the exit status is non-zero if any fails: connections
//! back to baseline; no pending polls; no streams; RSS within baseline + 2 MiB plus the
//! memory the last 2,000 messages legitimately occupy in the history (see
//! [`checks::rss_allowance`]);
//! every well-behaved client saw every successfully posted id exactly once, in increasing
//! order, with the text that was posted; every post was answered 201 with a distinct id and
//! the server's `messages` counter agrees; every deliberate retry was answered 200 with the
//! original id; every slowloris that was hung up on got its 408; the server is still alive;
//! the drop counters show churn was reaped (`request_timeout` > 0, `idle` > 0). The machine
//! (nproc, kernel, date) and open-files limits are printed with it.
//!
//! A well-behaved client that is disconnected reconnects and resumes, as the protocol
//! intends; that is reported (reconnects, and the first reason) but only a lost, repeated,
//! reordered or altered message fails its check.
//!
//! `drops.slow` is reported, not checked: on loopback the kernel autotunes a socket's send
//! buffer to megabytes (64 KiB segments), so a slow reader held a few seconds at 50
//! messages/s never fills it and the server's write timeout never starts.
//!
//! ## What it deliberately is not
//!
//! Not a benchmark of speed: nothing is timed except to bound the run. Loopback only, every
//! loop bounded in count and in time, about 45 threads with blocking sockets (the churn is
//! four threads stepping non-blocking sockets on a 20 ms tick). Besides `cargo build` and
//! the one-shot `nproc`, `uname` and `date`, the server is the only process it starts,
//! and it is stopped by its own PID on every path: SIGTERM at the end,
//! SIGKILL from `Drop` on an error or panic, and `PR_SET_PDEATHSIG` if the soak itself is
//! killed (the launcher all benchmarks share, `benches/shared/server.rs`, keeps these
//! promises). Besides that launcher it shares nothing with `tests/` or the other
//! benchmarks.
//!
//! ## A tour, in reading order
//!
//! - this file — the shape of the run (the room, how many of each client, the server's
//!   flags), `main`, and [`run`]: build, start, baseline, drive, judge, report.
//! - [`drive`] — the threads, the progress lines, stopping, catching up, settling.
//! - [`readers`] — the well-behaved long-pollers and SSE readers.
//! - [`posters`] — the posters and their deliberate retries.
//! - [`churn`] — the short-lived clients that misbehave and vanish.
//! - [`checks`] — the verdicts; [`report`] prints them with the machine's facts.
//! - [`state`] — what the threads share while they run; [`http`] — the clients' HTTP;
//!   [`stats`] — `/stats`; [`args`] — the command line.
//! - [`server`] — the server process, through the launcher all benchmarks share
//!   (`benches/shared/server.rs`).

/// One line on stderr, stamped with the seconds since the soak began.
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("[{:7.1} s] {}", $crate::elapsed_secs(), format!($($arg)*))
    };
}

// The modules live in benches/soak/ (and benches/shared/); a bench root looks for them
// beside itself.
#[path = "soak/args.rs"]
mod args;
#[path = "soak/checks.rs"]
mod checks;
#[path = "soak/churn.rs"]
mod churn;
#[path = "soak/drive.rs"]
mod drive;
#[path = "soak/http.rs"]
mod http;
#[path = "shared/http_conn.rs"]
mod http_conn;
#[path = "shared/parent_death.rs"]
mod parent_death;
#[path = "soak/posters.rs"]
mod posters;
#[path = "soak/readers.rs"]
mod readers;
#[path = "soak/report.rs"]
mod report;
#[path = "shared/server.rs"]
mod server;
#[path = "soak/state.rs"]
mod state;
#[path = "soak/stats.rs"]
mod stats;

use args::{parse_args, Args, USAGE};
use checks::judge;
use drive::drive;
use report::{print_machine, print_report};
use server::{Launch, Output, Server};
use stats::fetch_stats;
use std::io;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

// ----- the shape of the run -----------------------------------------------------------------

/// The room everything happens in.
const ROOM: &str = "soak";
const LONG_POLLERS: usize = 24;
const SSE_READERS: usize = 8;
const POSTERS: usize = 4;
/// All posters together; modest, so the run measures staying power, not throughput.
const POSTS_PER_SEC: f64 = 50.0;

/// Pause before a well-behaved client reconnects after an error.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Warm-up before the baseline is taken: the server's first allocations are made.
const WARM_UP: Duration = Duration::from_secs(1);

/// After SIGTERM, how long the server gets to exit by itself before SIGKILL.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// Server log lines kept (and echoed) for the report; the rest are counted.
const LOG_LINES_KEPT: usize = 50;

/// Messages the server's history keeps. Bounded, so that memory must come back to where it
/// started whatever the run's length; large enough (40 s of posting at 50/s) that a
/// well-behaved client, which re-polls at once, never falls out of it — if one did, it
/// would miss messages and fail its check, as it should.
const HISTORY_KEPT: usize = 2000;

/// The server's flags: short timeouts so churn is reaped within seconds, a bounded history
/// (see [`HISTORY_KEPT`]), warnings only, and a post rate for the four posters, which share
/// one address (50 posts/s in all, over the default `--post-rate` of 10 per client).
const SERVER_FLAGS: &[&str] = &[
    "--no-www",
    "--post-rate",
    "200",
    "--post-burst",
    "200",
    "--log-level",
    "warn",
    "--poll-timeout",
    "2",
    "--idle-timeout",
    "3",
    "--request-timeout",
    "2",
    "--write-timeout",
    "2",
    "--heartbeat",
    "1",
    "--history",
    "2000",
    "--history-bytes",
    "16000000",
];

// ----- output -------------------------------------------------------------------------------

static STARTED: OnceLock<Instant> = OnceLock::new();

fn elapsed_secs() -> f64 {
    STARTED.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Echoes one of the server's log lines as it arrives (it logs warnings only, so each one
/// matters); the shared launcher keeps the first [`LOG_LINES_KEPT`] for the report.
fn echo_server_line(line: &str) {
    say!("server: {line}");
}

// ----- the run ------------------------------------------------------------------------------

fn main() -> ExitCode {
    STARTED.get_or_init(Instant::now);
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("soak: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            say!("soak failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the soak; `Ok(false)` when a check failed. The server is stopped before this
/// returns, whichever way it returns (its handle is dropped).
fn run(args: &Args) -> io::Result<bool> {
    print_machine();
    say!("cargo build --release --bin comet-chat");
    let bin = server::build_release()?;
    let mut server = Server::start(Launch {
        bin: &bin,
        args: SERVER_FLAGS,
        cpu: None,
        output: Output::Collect {
            keep: LOG_LINES_KEPT,
            echo: echo_server_line,
        },
    })?;
    say!(
        "server pid {} on {}: {}",
        server.pid(),
        server.addr(),
        SERVER_FLAGS.join(" ")
    );
    thread::sleep(WARM_UP);
    let baseline = fetch_stats(server.addr())?;
    say!(
        "baseline: connections {} pending_polls {} streams {} rss {} (open files {})",
        baseline.connections,
        baseline.pending_polls,
        baseline.streams,
        mib(baseline.rss_bytes),
        baseline.open_files_limit
    );
    let outcome = drive(args, &mut server, baseline)?;
    let checks = judge(&outcome, server.pid());
    let exit = server.terminate(EXIT_GRACE);
    print_report(args, &outcome, &server, exit, &checks);
    Ok(checks.iter().all(|c| c.pass))
}
