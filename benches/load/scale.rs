//! The steps of a rung held over many processes: a [`Fleet`] of load generators holding N
//! polls on a [`Cluster`] of workers. The workers scenario (`--workers W`) and the
//! million benchmark (`benches/million.rs`) run the same steps and add their own:
//!
//! 1. [`hold`]: the fleet grows to N clients (each sends `GET /chat` as it connects) and
//!    the workers' `pending_polls` add up to every open client. Rungs add to the clients
//!    of the rung before; nothing is closed between rungs.
//! 2. [`spread`]: each worker's share, as its kept `/stats` connection reports it.
//! 3. [`idle`]: the workers' CPU time and context switches over a window in which no
//!    request is sent at all (not even `/stats`).
//! 4. [`broadcasts`]: R rounds of one post → every client answered, each followed by
//!    every client polling again and every poll parked again, and, between the server's
//!    rounds, a round of the kernel floor for the same number of writes ([`FloorSet`]):
//!    the paired floor, and where asked for the spread floor too ([`Layout`]), their
//!    order alternating from round to round.

#![allow(dead_code)] // shared by benches/load and benches/million, each using a subset

use crate::cluster::Cluster;
use crate::dist::{self, Dist};
use crate::fleet::Fleet;
use crate::floor::{FloorSet, Layout};
use crate::host;
use crate::pool::Sources;
use crate::wire;
use serde_json::{json, Value};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// Time for one broadcast to reach everyone, and for everyone to park again: 1,000,000
/// deliveries take seconds on two cores, and a rung must never hang.
pub const ROUND_CAP: Duration = Duration::from_secs(120);

/// Time for the floor's children to start and connect their sockets.
const FLOOR_START_CAP: Duration = Duration::from_secs(300);

/// Pause between rounds, so one round's stragglers (ACKs, the poster's answer) are not in
/// the next round's window.
const ROUND_GAP: Duration = Duration::from_millis(50);

/// What holding N polls took.
pub struct Held {
    /// Clients asked for.
    pub n: usize,
    /// Clients open over the fleet.
    pub open: usize,
    /// Connects (or first polls) that failed in this rung.
    pub failed: usize,
    /// Polls parked over all workers.
    pub parked: u64,
    /// Start of the burst → every new client connected.
    pub open_time: Duration,
    /// Start of the burst → every poll parked.
    pub park_time: Duration,
    /// The first problem, if any.
    pub first_error: Option<String>,
}

/// Grows the fleet to `n` clients and waits until the workers have them all parked.
pub fn hold(
    cluster: &mut Cluster,
    fleet: &mut Fleet,
    sources: &mut Sources,
    n: usize,
    cap: Duration,
) -> Result<Held, String> {
    let started = Instant::now();
    let deadline = started + cap;
    let grown = fleet.grow_to(n, sources, deadline)?;
    let open_time = started.elapsed();
    let open = fleet.open();
    let (parked, at, _) = cluster
        .wait_pending(
            open as u64,
            deadline.max(Instant::now() + Duration::from_secs(10)),
        )
        .map_err(|e| format!("/stats: {e}"))?;
    Ok(Held {
        n,
        open,
        failed: grown.failed,
        parked,
        open_time,
        park_time: at - started,
        first_error: grown.first_error,
    })
}

/// Polls parked on each worker.
pub struct Spread {
    /// (worker, pending polls), in worker order.
    pub per_worker: Vec<(u64, u64)>,
}

impl Spread {
    /// Fewest, most, and most over the mean (1.0 is perfectly even).
    pub fn summary(&self) -> (u64, u64, f64) {
        let counts = self.per_worker.iter().map(|&(_, p)| p);
        let (min, max) = (counts.clone().min().unwrap_or(0), counts.max().unwrap_or(0));
        let total: u64 = self.per_worker.iter().map(|&(_, p)| p).sum();
        let mean = total as f64 / self.per_worker.len().max(1) as f64;
        (min, max, if mean > 0.0 { max as f64 / mean } else { 0.0 })
    }

    /// "min 14,9xx / max 15,2xx (1.02x the mean)".
    pub fn describe(&self) -> String {
        let (min, max, over) = self.summary();
        format!(
            "{} workers: min {min}, max {max} ({over:.3}x the mean)",
            self.per_worker.len()
        )
    }
}

/// Each worker's share of the parked polls.
pub fn spread(cluster: &mut Cluster) -> io::Result<Spread> {
    Ok(Spread {
        per_worker: cluster
            .per_worker()?
            .iter()
            .map(|w| (w.worker, w.stats.pending_polls))
            .collect(),
    })
}

/// The workers' cost while nothing is due.
pub struct Idle {
    /// Length of the window.
    pub window: Duration,
    /// CPU of all workers together, % of one core.
    pub cpu_pct: Option<f64>,
    /// Context switches of all workers together over the window: wake-ups.
    pub switches: Option<u64>,
}

impl Idle {
    /// As JSON: the window, the workers' CPU and their context switches.
    pub fn to_json(&self) -> Value {
        json!({
            "window_secs": dist::round2(self.window.as_secs_f64()),
            "workers_cpu_pct": self.cpu_pct.map(|p| (p * 1e4).round() / 1e4),
            "workers_context_switches": self.switches,
        })
    }
}

/// Sleeps `window` without a request to the server, and reads the workers' CPU time and
/// context switches before and after.
pub fn idle(cluster: &Cluster, window: Duration) -> Idle {
    let cpu_before = cluster.cpu_time();
    let switches_before = cluster.context_switches().ok();
    let start = Instant::now();
    host::sleep_until(start + window);
    let wall = start.elapsed();
    let cpu = cluster
        .cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    Idle {
        window: wall,
        cpu_pct: cpu.map(|cpu| 100.0 * cpu.as_secs_f64() / wall.as_secs_f64()),
        switches: cluster
            .context_switches()
            .ok()
            .zip(switches_before)
            .map(|(after, before)| after.saturating_sub(before)),
    }
}

/// The kernel floor beside a rung's broadcasts.
pub struct FloorFigures {
    /// Sockets written per pass, over all writer/reader pairs.
    pub sockets: usize,
    /// Passes per round (more than one when the box cannot hold a second set of N).
    pub passes: usize,
    /// go → last answer, per round (passes summed).
    pub totals: Vec<Duration>,
    /// go → each answer, rounds pooled.
    pub latency: Dist,
    /// Errors counted by the pairs.
    pub errors: usize,
    /// The first of them.
    pub first_error: Option<String>,
    /// A floor writer's CPU time per write, beside the workers' per delivery.
    pub cpu_per_write: Option<Duration>,
}

/// R broadcasts and what they cost.
pub struct Rounds {
    /// Rounds run.
    pub rounds: usize,
    /// Post → each delivery, rounds pooled.
    pub latency: Dist,
    /// Post → each delivery, sorted, for plots.
    pub sorted: Vec<Duration>,
    /// Post → last delivery, per round: the fan-out time to all.
    pub lasts: Vec<Duration>,
    /// Post → its 200, per round: the post's round trip.
    pub acks: Vec<Duration>,
    /// The post's 200 → the first delivery, per round, ms (negative: delivered first).
    pub ack_to_first_ms: Vec<f64>,
    /// Post → every client answered, polling again and parked, per round that made it.
    pub cycles: Vec<Duration>,
    /// Deliveries per second of post → last, median over rounds.
    pub deliveries_per_sec: f64,
    /// CPU of all workers per delivery, over the post → last windows.
    pub cpu_per_delivery: Option<Duration>,
    /// Deliveries missing or wrong, over all rounds.
    pub delivery_errors: usize,
    /// Polls not parked again, over all rounds.
    pub repark_errors: usize,
    /// The floor, if it ran: paired writers and readers ([`Layout::Paired`]).
    pub floor: Option<FloorFigures>,
    /// The spread floor, if it ran ([`Layout::Spread`]): every writer writes to every
    /// reader in a shuffled order, as a worker writes to every load generator.
    pub spread: Option<FloorFigures>,
    /// Problems, in the words of whoever noticed them.
    pub notes: Vec<String>,
}

impl Rounds {
    /// Median fan-out time over median floor time.
    pub fn floor_ratio(&self) -> Option<f64> {
        self.ratio_to(self.floor.as_ref())
    }

    /// Median fan-out time over median spread-floor time.
    pub fn spread_ratio(&self) -> Option<f64> {
        self.ratio_to(self.spread.as_ref())
    }

    /// Median fan-out time over the median time of `floor`.
    fn ratio_to(&self, floor: Option<&FloorFigures>) -> Option<f64> {
        let server = median(&self.lasts)?;
        let floor = median(&floor?.totals)?;
        (!floor.is_zero()).then(|| server.as_secs_f64() / floor.as_secs_f64())
    }

    /// The broadcasts, the floor beside them and their ratios, as JSON.
    pub fn to_json(&self) -> Value {
        let millis = |list: &[Duration]| -> Vec<f64> {
            list.iter()
                .map(|d| dist::round2(dist::us(*d) / 1e3))
                .collect()
        };
        let ratio = |x: Option<f64>| x.map(|x| (x * 1e3).round() / 1e3);
        json!({
            "rounds": self.rounds,
            "latency": self.latency.to_json(),
            "post_to_last_ms": millis(&self.lasts),
            "post_to_200_ms": millis(&self.acks),
            "ack_to_first_delivery_ms": self.ack_to_first_ms,
            "deliveries_per_sec": self.deliveries_per_sec.round(),
            "cycle_ms": millis(&self.cycles),
            "workers_cpu_ns_per_delivery": self.cpu_per_delivery.map(|d| d.as_nanos() as u64),
            "delivery_errors": self.delivery_errors,
            "repark_errors": self.repark_errors,
            "floor": self.floor.as_ref().map(|f| floor_json(f, millis)),
            "fanout_to_floor_ratio": ratio(self.floor_ratio()),
            "fanout_to_floor_best_ratio": ratio(self.best_floor_ratio()),
            "spread_floor": self.spread.as_ref().map(|f| floor_json(f, millis)),
            "fanout_to_spread_floor_ratio": ratio(self.spread_ratio()),
            "fanout_to_spread_floor_best_ratio": ratio(self.best_spread_ratio()),
            "notes": self.notes,
        })
    }

    /// "workers' CPU per delivery / a floor writer's CPU per write", e.g. "6.9 / 5.2 us".
    pub fn cpu_cell(&self) -> String {
        let us = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.1}", dist::us(d)));
        let floor = self.floor.as_ref().and_then(|f| f.cpu_per_write);
        format!("{} / {} us", us(self.cpu_per_delivery), us(floor))
    }

    /// "a spread floor writer's CPU per write", e.g. "5.6 us".
    pub fn spread_cpu_cell(&self) -> String {
        let cpu = self.spread.as_ref().and_then(|f| f.cpu_per_write);
        cpu.map_or("-".into(), |d| format!("{:.1} us", dist::us(d)))
    }

    /// Fastest fan-out over fastest floor round: noise only adds time.
    pub fn best_floor_ratio(&self) -> Option<f64> {
        self.best_ratio_to(self.floor.as_ref())
    }

    /// Fastest fan-out over fastest spread-floor round.
    pub fn best_spread_ratio(&self) -> Option<f64> {
        self.best_ratio_to(self.spread.as_ref())
    }

    /// Fastest fan-out over the fastest round of `floor`.
    fn best_ratio_to(&self, floor: Option<&FloorFigures>) -> Option<f64> {
        let server = self.lasts.iter().min()?;
        let floor = floor?.totals.iter().min()?;
        (!floor.is_zero()).then(|| server.as_secs_f64() / floor.as_secs_f64())
    }
}

/// One floor's figures as JSON, durations in ms by `millis`.
fn floor_json(f: &FloorFigures, millis: impl Fn(&[Duration]) -> Vec<f64>) -> Value {
    json!({
        "sockets": f.sockets,
        "passes": f.passes,
        "go_to_last_ms": millis(&f.totals),
        "latency": f.latency.to_json(),
        "errors": f.errors,
        "first_error": f.first_error,
        "writer_cpu_ns_per_write": f.cpu_per_write.map(|d| d.as_nanos() as u64),
    })
}

/// How a rung's broadcasts run.
pub struct Plan<'a> {
    /// For tokens and progress lines.
    pub label: &'a str,
    /// Broadcasts.
    pub rounds: usize,
    /// Message length (the floor writes the same bytes).
    pub message_bytes: usize,
    /// The floor to alternate with, if any.
    pub floor: Option<FloorPlan<'a>>,
}

/// The kernel floor beside a rung: as many writes per round as the fan-out makes.
pub struct FloorPlan<'a> {
    /// This binary, re-run as the floor's writers and readers.
    pub exe: &'a Path,
    /// Source addresses for the readers' sockets.
    pub sources: &'a mut Sources,
    /// Most sockets at once over all pairs (more writes are made in passes).
    pub max_sockets: usize,
    /// Most sockets in one pair: a process's share of the open-files cap.
    pub per_pair: usize,
    /// The floor's children exit by themselves after this long.
    pub budget: Duration,
    /// Run the spread floor too, beside the paired one.
    pub spread: bool,
}

/// A rung's R broadcasts beside a kernel floor of at most `max_sockets` sockets at once, in
/// pairs of at most one process's share of the open-files cap; with `spread`, the spread
/// floor too (as many sockets again, held at the same time).
pub fn broadcasts_beside_floor(
    cluster: &mut Cluster,
    fleet: &mut Fleet,
    (exe, sources): (&Path, &mut Sources),
    (rounds, message_bytes): (usize, usize),
    (max_sockets, budget, spread): (usize, Duration, bool),
) -> Rounds {
    let n = fleet.open();
    let label = format!("n{n}");
    say!(
        "{label}: kernel floor{} for {n} writes (at most {max_sockets} sockets at once{})",
        if spread { "s, paired and spread," } else { "" },
        if spread { " each" } else { "" }
    );
    let limit = comet_chat::sys::open_files_limit().map_or(20_000, |(soft, _)| soft);
    let plan = Plan {
        label: &label,
        rounds,
        message_bytes,
        floor: Some(FloorPlan {
            exe,
            sources,
            max_sockets,
            per_pair: (limit as usize).saturating_sub(crate::args::FD_HEADROOM as usize),
            budget,
            spread,
        }),
    };
    broadcasts(cluster, fleet, plan)
}

/// Starts the `layout` floor of `plan` for `writes` writes a round; `None` (and a
/// progress line) if it cannot start.
fn start_floor(
    label: &str,
    plan: &mut FloorPlan<'_>,
    layout: Layout,
    writes: usize,
    message_bytes: usize,
) -> Option<FloorRun> {
    let deadlines = (
        Instant::now() + FLOOR_START_CAP,
        Instant::now() + plan.budget,
    );
    let sizes = (writes, plan.max_sockets, plan.per_pair);
    match FloorSet::start(
        plan.exe,
        sizes,
        layout,
        message_bytes,
        plan.sources,
        deadlines,
    ) {
        Ok(set) => Some(FloorRun {
            layout,
            figures: FloorFigures {
                sockets: set.sockets(),
                passes: set.passes(),
                totals: Vec::new(),
                latency: Dist::default(),
                errors: 0,
                first_error: None,
                cpu_per_write: None,
            },
            set: Some(set),
            sorted: Vec::new(),
        }),
        Err(e) => {
            say!("{label}: {} floor failed: {e}", layout.name());
            None
        }
    }
}

/// One floor beside a rung's broadcasts, while they run.
struct FloorRun {
    /// How its writers meet its readers.
    layout: Layout,
    /// Its children; `None` once a round failed (no more rounds of it).
    set: Option<FloorSet>,
    /// What its rounds measured so far.
    figures: FloorFigures,
    /// Every answer's latency, rounds pooled, for the distribution at the end.
    sorted: Vec<Duration>,
}

impl FloorRun {
    /// Runs round `round` (numbered from 0), if the floor is still up.
    fn round(&mut self, label: &str, round: usize, notes: &mut Vec<String>) {
        let Some(set) = self.set.as_mut() else {
            return;
        };
        let name = self.layout.name();
        match set.round(round, Instant::now() + ROUND_CAP) {
            Ok(r) => {
                say!(
                    "{label}: {name} floor round {}: {} writes in {:.1} ms",
                    round + 1,
                    r.latencies.len(),
                    r.total.as_secs_f64() * 1e3
                );
                self.figures.totals.push(r.total);
                self.sorted.extend(r.latencies);
            }
            Err(e) => {
                notes.push(format!("{name} floor round {round} failed: {e}"));
                say!(
                    "{label}: {name} floor round {} failed: {e}; no more",
                    round + 1
                );
                self.set = None; // dropping it stops its children
            }
        }
    }

    /// Stops the children and returns the figures.
    fn finish(mut self) -> FloorFigures {
        let f = &mut self.figures;
        f.latency = Dist::of(&mut self.sorted);
        if let Some(set) = self.set {
            (f.errors, f.first_error, f.cpu_per_write) = set.finish();
        }
        self.figures
    }
}

/// R rounds: arm the fleet, post, collect every delivery, every client polls again, wait
/// until every poll is parked again; then one floor round.
pub fn broadcasts(cluster: &mut Cluster, fleet: &mut Fleet, plan: Plan<'_>) -> Rounds {
    let Plan {
        label,
        rounds,
        message_bytes,
        floor,
    } = plan;
    let mut floors: Vec<FloorRun> = Vec::new();
    if let Some(mut plan) = floor {
        let writes = fleet.open();
        floors.extend(start_floor(
            label,
            &mut plan,
            Layout::Paired,
            writes,
            message_bytes,
        ));
        if plan.spread {
            floors.extend(start_floor(
                label,
                &mut plan,
                Layout::Spread,
                writes,
                message_bytes,
            ));
        }
    }
    let mut out = Rounds {
        rounds: 0,
        latency: Dist::default(),
        sorted: Vec::new(),
        lasts: Vec::new(),
        acks: Vec::new(),
        ack_to_first_ms: Vec::new(),
        cycles: Vec::new(),
        deliveries_per_sec: 0.0,
        cpu_per_delivery: None,
        delivery_errors: 0,
        repark_errors: 0,
        floor: None,
        spread: None,
        notes: Vec::new(),
    };
    let mut rates = Vec::new();
    let (mut cpu, mut delivered) = (Some(Duration::ZERO), 0usize);
    let nonce = std::process::id();
    let expected = fleet.open();
    for round in 0..rounds {
        let token = format!("{label}-r{round}-{nonce}");
        if let Err(e) = one_round(cluster, fleet, &token, message_bytes, &mut out, &mut cpu) {
            out.notes.push(format!("round {round}: {e}"));
            say!("{label}: round {} failed: {e}", round + 1);
            break;
        }
        out.rounds += 1;
        if let Some(&last) = out.lasts.last() {
            let got = out.sorted.len() - delivered;
            delivered = out.sorted.len();
            rates.push(got as f64 / last.as_secs_f64().max(1e-9));
            say!(
                "{label}: round {}: {got} of {expected} delivered, post→last {:.1} ms, \
                 cycle {}",
                round + 1,
                last.as_secs_f64() * 1e3,
                out.cycles
                    .last()
                    .map_or("-".into(), |c| format!("{:.1} ms", c.as_secs_f64() * 1e3))
            );
        }
        // Two floors take turns going first, so neither always runs right after the
        // server's round (its re-polls still in the air) or in the same part of a
        // neighbour's build.
        if round > 0 {
            floors.reverse();
        }
        for (i, floor) in floors.iter_mut().enumerate() {
            if i > 0 {
                std::thread::sleep(ROUND_GAP); // the first floor's stragglers
            }
            floor.round(label, round, &mut out.notes);
        }
        std::thread::sleep(ROUND_GAP);
    }
    for floor in floors {
        match floor.layout {
            Layout::Paired => out.floor = Some(floor.finish()),
            Layout::Spread => out.spread = Some(floor.finish()),
        }
    }
    out.latency = Dist::of(&mut out.sorted);
    rates.sort_by(f64::total_cmp);
    out.deliveries_per_sec = rates.get(rates.len() / 2).copied().unwrap_or(0.0);
    out.cpu_per_delivery = cpu
        .filter(|_| delivered > 0)
        .map(|cpu| cpu / delivered as u32);
    out
}

/// One broadcast and the re-park after it.
fn one_round(
    cluster: &mut Cluster,
    fleet: &mut Fleet,
    token: &str,
    message_bytes: usize,
    out: &mut Rounds,
    cpu: &mut Option<Duration>,
) -> Result<(), String> {
    let message = wire::message(token, message_bytes);
    let deadline = Instant::now() + ROUND_CAP;
    fleet.arm(token, deadline)?;
    let cpu_before = cluster.cpu_time();
    let posted = cluster.post(&message).map_err(|e| format!("post: {e}"))?;
    let acked = cluster.finish_post().map_err(|e| format!("post: {e}"))?;
    let delivered = fleet.collect()?;
    let cpu_after = cluster.cpu_time();
    out.delivery_errors += delivered.errors;
    if let Some(e) = &delivered.first_error {
        out.notes
            .push(format!("{} delivery errors: {e}", delivered.errors));
    }
    let posted_ns = host::mono_ns(posted);
    let acked_ns = host::mono_ns(acked);
    let (Some(&first), Some(&last)) = (
        delivered.arrivals_ns.iter().min(),
        delivered.arrivals_ns.iter().max(),
    ) else {
        return Err("nothing was delivered".into());
    };
    out.acks.push(acked - posted);
    out.ack_to_first_ms
        .push((first as f64 - acked_ns as f64) / 1e6);
    out.lasts
        .push(Duration::from_nanos(last.saturating_sub(posted_ns)));
    out.sorted.extend(
        delivered
            .arrivals_ns
            .iter()
            .map(|&t| Duration::from_nanos(t.saturating_sub(posted_ns))),
    );
    *cpu = cpu
        .zip(cpu_before.zip(cpu_after))
        .map(|(sum, (before, after))| sum + after.saturating_sub(before));

    // Everyone polls again; the cycle ends when the workers have them all parked.
    out.repark_errors += fleet.repoll()?;
    let want = fleet.open() as u64;
    let (parked, at, ok) = cluster
        .wait_pending(want, Instant::now() + ROUND_CAP)
        .map_err(|e| format!("/stats: {e}"))?;
    if ok {
        out.cycles.push(at - posted);
    } else {
        out.repark_errors += want.saturating_sub(parked) as usize;
        out.notes.push(format!(
            "{} polls not parked again",
            want.saturating_sub(parked)
        ));
    }
    Ok(())
}

/// The median of a list of durations.
pub fn median(values: &[Duration]) -> Option<Duration> {
    dist::median(&mut values.to_vec())
}

/// A duration in milliseconds with two decimals, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", dist::us(d) / 1e3)
}
