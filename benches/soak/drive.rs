//! Phases 2 and 3 of the run: every thread started, progress lines while the load runs,
//! then stop the load, let the readers catch up, stop them, and wait for the server to
//! settle.

use crate::args::Args;
use crate::churn::{churn_driver, ChurnReport, CHURN_DRIVERS};
use crate::posters::{poster, PosterReport};
use crate::readers::{long_poller, sse_reader, ReaderReport};
use crate::server::Server;
use crate::state::Shared;
use crate::stats::{fetch_stats, wait_for, Stats};
use crate::{mib, LONG_POLLERS, POSTERS, POSTS_PER_SEC, SSE_READERS};
use std::io;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often the main thread prints a progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// After posting stops, how long well-behaved clients get to reach the last posted id.
const CATCH_UP: Duration = Duration::from_secs(10);

/// After every client is gone, how long the server gets to return to its baseline.
const SETTLE: Duration = Duration::from_secs(20);

/// Everything the run produced, for the verdicts and the report.
pub struct Outcome {
    pub baseline: Stats,
    /// `/stats` once settled (or when settling gave up).
    pub after: Stats,
    /// The highest RSS the progress lines saw.
    pub rss_peak: u64,
    /// Every message answered 201 (or 200 after a failed first attempt), from all posters.
    pub posted: Vec<(String, u64, String)>,
    pub posters: Vec<PosterReport>,
    /// Long-pollers first, then SSE readers.
    pub readers: Vec<ReaderReport>,
    pub churn: ChurnReport,
    /// How the server ended if it ended before the checks.
    pub died: Option<ExitStatus>,
}

/// Phases 2 and 3: the load with progress lines, then stop, catch up and settle.
pub fn drive(args: &Args, server: &mut Server, baseline: Stats) -> io::Result<Outcome> {
    let addr = server.addr();
    let readers = LONG_POLLERS + SSE_READERS;
    let shared = Arc::new(Shared {
        addr,
        stop_load: AtomicBool::new(false),
        stop_readers: AtomicBool::new(false),
        head: Mutex::new(None),
        posted: AtomicU64::new(0),
        churn_opened: AtomicU64::new(0),
        churn_open: AtomicUsize::new(0),
        progress: (0..readers).map(|_| AtomicU64::new(0)).collect(),
        sockets: (0..readers).map(|_| Mutex::new(None)).collect(),
    });

    // Readers first, and parked before the first post, so each sees the run from seq 1.
    let mut reader_threads = Vec::new();
    for slot in 0..readers {
        let shared = Arc::clone(&shared);
        let body = move || {
            if slot < LONG_POLLERS {
                long_poller(shared, slot)
            } else {
                sse_reader(shared, slot)
            }
        };
        reader_threads.push(spawn(format!("reader-{slot}"), body)?);
    }
    wait_for(addr, Duration::from_secs(10), |s| {
        s.pending_polls >= LONG_POLLERS as u64 && s.streams >= SSE_READERS as u64
    });

    let load_start = Instant::now();
    let mut poster_threads = Vec::new();
    for idx in 0..POSTERS {
        let shared = Arc::clone(&shared);
        poster_threads.push(spawn(format!("poster-{idx}"), move || poster(shared, idx))?);
    }
    let mut churn_threads = Vec::new();
    for driver in 0..CHURN_DRIVERS {
        let shared = Arc::clone(&shared);
        let (total, run) = (args.churn_clients, args.run);
        let body = move || churn_driver(shared, driver, total, load_start, run);
        churn_threads.push(spawn(format!("churn-{driver}"), body)?);
    }
    say!(
        "load running for {} s: {LONG_POLLERS} long-pollers, {SSE_READERS} SSE readers, \
         {POSTERS} posters at {POSTS_PER_SEC}/s, {} churn clients",
        args.run.as_secs(),
        args.churn_clients
    );

    // Progress until the run is over, or the server dies.
    let mut rss_peak = baseline.rss_bytes;
    let mut next_progress = load_start + PROGRESS_EVERY;
    let mut died = None;
    while load_start.elapsed() < args.run {
        if let Some(status) = server.exited() {
            say!("the server exited during the run: {status}");
            died = Some(status);
            break;
        }
        if Instant::now() >= next_progress {
            next_progress += PROGRESS_EVERY;
            match fetch_stats(addr) {
                Ok(s) => {
                    rss_peak = rss_peak.max(s.rss_bytes);
                    say!(
                        "{:4.0} s: posted {} | connections {} pending_polls {} streams {} | \
                         rss {} | churn opened {} (open {}) | drops {}",
                        load_start.elapsed().as_secs_f64(),
                        shared.posted.load(Relaxed),
                        s.connections,
                        s.pending_polls,
                        s.streams,
                        mib(s.rss_bytes),
                        shared.churn_opened.load(Relaxed),
                        shared.churn_open.load(Relaxed),
                        s.drops()
                    );
                }
                Err(e) => say!("/stats failed: {e}"),
            }
        }
        thread::sleep(Duration::from_millis(100));
    }

    // Stop the load; the drivers drop every churn socket on their way out.
    shared.stop_load.store(true, Relaxed);
    let posters: Vec<PosterReport> = poster_threads.into_iter().map(join_thread).collect();
    let mut churn = ChurnReport::default();
    for report in churn_threads.into_iter().map(join_thread) {
        churn.merge(report);
    }
    let posted: Vec<(String, u64, String)> = posters
        .iter()
        .flat_map(|p| p.posted.iter().cloned())
        .collect();
    let last_seq = posted.iter().map(|(_, seq, _)| *seq).max().unwrap_or(0);
    say!(
        "load stopped: {} posted (last seq {last_seq}), {} churn clients opened",
        posted.len(),
        shared.churn_opened.load(Relaxed)
    );

    // Catch up, then stop the readers.
    let behind = || {
        shared
            .progress
            .iter()
            .filter(|p| p.load(Relaxed) < last_seq)
            .count()
    };
    let catch_up_until = Instant::now() + CATCH_UP;
    while Instant::now() < catch_up_until && behind() > 0 {
        thread::sleep(Duration::from_millis(50));
    }
    say!("readers caught up ({} behind); stopping them", behind());
    shared.stop_readers();
    let readers: Vec<ReaderReport> = reader_threads.into_iter().map(join_thread).collect();

    // Back to baseline?
    say!(
        "waiting up to {} s for the server to settle",
        SETTLE.as_secs()
    );
    let settled = wait_for(addr, SETTLE, |s| {
        s.connections == baseline.connections && s.pending_polls == 0 && s.streams == 0
    });
    let after = match settled {
        Some(s) => s,
        None => fetch_stats(addr).unwrap_or_default(),
    };
    let died = died.or_else(|| server.exited());
    Ok(Outcome {
        baseline,
        after,
        rss_peak,
        posted,
        posters,
        readers,
        churn,
        died,
    })
}

/// A named thread (names show in a panic message).
fn spawn<T: Send + 'static>(
    name: String,
    body: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    thread::Builder::new().name(name).spawn(body)
}

/// Joins a thread, turning a panic into an empty report (the panic message is printed by
/// the panic hook, and the empty report fails the checks that depend on it).
fn join_thread<T: Default>(handle: JoinHandle<T>) -> T {
    let name = handle.thread().name().unwrap_or("?").to_owned();
    handle.join().unwrap_or_else(|_| {
        say!("thread {name} panicked");
        T::default()
    })
}
