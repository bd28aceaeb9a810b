//! One rung of the ladder: hold N waiting clients of one transport (parked polls, event
//! streams or WebSockets: [`crate::transport`]) and measure what they cost and how fast a
//! message reaches them. In order:
//!
//! 1. **start**: a fresh server (or the attached one); read its idle RSS.
//! 2. **open**: N connections in one burst, each sending its request (`GET /chat`, or a
//!    stream's from the lobby's head) as it connects; connect latency per socket; accept
//!    rate from the server's `accepted` counter.
//! 3. **park**: polls: wait until `/stats` says `pending_polls` grew by every open
//!    connection; streams: until every client has read its stream's head (which the
//!    server writes once the stream is in the room), and the server's own count agrees
//!    (`streams`, `transports.ws.open`).
//! 4. **hold**: RSS with N waiting; then idle for `--idle` seconds and sample the server's
//!    CPU, which should be nothing.
//! 5. **floor**: start the kernel floor for N sockets ([`crate::floor`]), writing what
//!    this transport's clients are sent.
//! 6. **fan-out**, R rounds: post a token, time post → each delivery; then every poll
//!    asks again, and the cycle ends when `pending_polls` is back at N (a stream is ready
//!    for the next message as soon as it has this one: its cycle ends at the last
//!    delivery). After each server round, one floor round.
//! 7. **close**: reset every connection, read the server's RSS once it has let go of
//!    them, stop the server and the floor.
//!
//! The re-polls of step 6 are sent after the last delivery, not as each arrives, so the
//! fan-out window holds the same client work (one read per socket) as the floor's and the
//! ratio compares the two writers, not two clients.
//!
//! A phase that runs out of time is counted as errors and the rung moves on; a rung that
//! cannot go on (the server died) keeps what it measured and says why in its notes.

use crate::api::Stats;
use crate::args::Options;
use crate::dist::Dist;
use crate::floor::{Floor, FloorResult};
use crate::host;
use crate::pool::{Pool, Sources};
use crate::target::Target;
use crate::transport::{self, Transport};
use crate::wire;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Time allowed to open one rung's connections. A burst of 19,500 takes about a second;
/// SYNs dropped by a full accept queue are retried after 1 s, 3 s, 7 s.
const OPEN_CAP: Duration = Duration::from_secs(40);
/// Time for the server to report every connection accepted and every poll parked.
const PARK_CAP: Duration = Duration::from_secs(20);
/// Time for one broadcast to reach everyone, and for everyone to park again.
const ROUND_CAP: Duration = Duration::from_secs(20);
/// Time for the server to notice N reset connections.
const CLOSE_CAP: Duration = Duration::from_secs(20);
/// Time for the floor's children to start and connect N sockets.
const FLOOR_START_CAP: Duration = Duration::from_secs(40);
/// Pause between rounds, so one round's stragglers (ACKs, the poster's answer) are not
/// in the next round's window.
pub const ROUND_GAP: Duration = Duration::from_millis(50);

/// What every rung shares.
pub struct Ctx<'a> {
    /// The command line.
    pub options: &'a Options,
    /// Source addresses for every client socket of the run.
    pub sources: Sources,
    /// End of the run's time budget.
    pub deadline: Instant,
    /// This binary, re-run as the floor writer.
    pub exe: PathBuf,
    /// The server's open-files limit, once known.
    pub server_limit: Option<u64>,
    /// The CPU the server and the floor writer are pinned to, if pinning.
    pub server_cpu: Option<usize>,
    /// The CPU the load generator and the floor reader are pinned to, if pinning.
    pub client_cpu: Option<usize>,
}

impl Ctx<'_> {
    /// A fresh server, or the attached one.
    pub fn target(&mut self) -> io::Result<Target> {
        let target = match self.options.attach {
            Some((addr, pid)) => Target::attach(addr, pid)?,
            None => Target::start(
                &self.options.server_bin,
                self.server_cpu,
                self.options.admin,
            )?,
        };
        Ok(target)
    }

    /// What [`target`](Ctx::target) is about to do, for progress lines.
    pub fn server_verb(&self) -> &'static str {
        match self.options.attach {
            Some(_) => "connecting to the attached server",
            None => "starting a fresh server",
        }
    }

    /// `now + cap`, but never past the run's deadline.
    pub fn phase_deadline(&self, cap: Duration) -> Instant {
        (Instant::now() + cap).min(self.deadline)
    }
}

/// A rough time a rung of `n` needs, to decide whether to start it at all.
pub fn time_needed(options: &Options, n: usize) -> Duration {
    // Opening, parking and floor connecting run at roughly 20k connections per second,
    // each fan-out round and cycle well under a second at 20k; doubled for a noisy machine.
    let per_conn = Duration::from_micros(100) * n as u32;
    let rounds = (Duration::from_millis(300) + ROUND_GAP) * options.rounds as u32 * 2;
    options.idle + (per_conn + rounds) * 2 + Duration::from_secs(5)
}

/// Errors of a rung, by phase, so a reader knows where they came from.
#[derive(Clone, Copy, Debug, Default)]
pub struct Errors {
    /// Connects that failed or did not finish in time.
    pub connect: usize,
    /// Open connections the server never reported parked.
    pub park: usize,
    /// Deliveries missing, wrong or on a dead connection, over all rounds.
    pub delivery: usize,
    /// Polls not parked again after a round, over all rounds.
    pub repark: usize,
}

impl Errors {
    /// All of them.
    pub fn total(&self) -> usize {
        self.connect + self.park + self.delivery + self.repark
    }
}

/// The burst of connections.
pub struct Open {
    /// Sockets connected.
    pub opened: usize,
    /// `connect` → completion, per connected socket.
    pub connect: Dist,
    /// Client-side rate: connections completed per second of the burst.
    pub connects_per_sec: f64,
    /// Server-side rate: N over the time until `/stats` counted them all accepted.
    pub accepts_per_sec: f64,
    /// First connect → all accepted.
    pub accept_time: Duration,
}

/// The idle window.
pub struct Idle {
    /// Length of the window.
    pub window: Duration,
    /// Server CPU from /proc/PID/stat ticks, % of one core.
    pub cpu_pct_ticks: f64,
    /// Server CPU from its CPU-time clock, % of one core.
    pub cpu_pct: Option<f64>,
}

/// The fan-out rounds.
pub struct Fanout {
    /// Rounds run.
    pub rounds: usize,
    /// Post → each delivery, all rounds pooled.
    pub latency: Dist,
    /// First → last delivery, per round.
    pub spans: Vec<Duration>,
    /// Post → last delivery, per round.
    pub lasts: Vec<Duration>,
    /// Deliveries per second of the post → last window, median over rounds.
    pub deliveries_per_sec: f64,
    /// Post → every poll parked again, per round that made it.
    pub cycles: Vec<Duration>,
    /// Server CPU over the post → last windows, % of one core.
    pub server_cpu_pct: Option<f64>,
    /// Server CPU per delivery.
    pub server_cpu_per_delivery: Option<Duration>,
    /// Benchmark (client) CPU over the same windows, % of one core.
    pub client_cpu_pct: Option<f64>,
    /// All latencies, sorted, for the CDF plot.
    pub sorted: Vec<Duration>,
}

/// Everything one rung measured.
pub struct RungResult {
    /// Connections asked for.
    pub n: usize,
    /// How the clients waited.
    pub transport: Transport,
    /// Clients waiting: polls the server reported parked (over its count before the
    /// rung), or streams whose head the client read.
    pub held: u64,
    /// Errors by phase.
    pub errors: Errors,
    /// Server RSS before any connection, bytes.
    pub rss_before: Option<u64>,
    /// The anonymous (heap, stack) part of `rss_before`, bytes.
    pub rss_anon_before: Option<u64>,
    /// Server RSS holding `held` polls, bytes.
    pub rss_held: Option<u64>,
    /// Server RSS after every connection closed, bytes: what it kept.
    pub rss_closed: Option<u64>,
    /// The connection burst.
    pub open: Option<Open>,
    /// The idle window.
    pub idle: Option<Idle>,
    /// The fan-out rounds.
    pub fanout: Option<Fanout>,
    /// The kernel floor for the same N.
    pub floor: Option<FloorResult>,
    /// Problems, in the words of whoever noticed them.
    pub notes: Vec<String>,
}

impl RungResult {
    /// Bytes of server RSS per held poll.
    pub fn rss_per_poll(&self) -> Option<f64> {
        let (before, held) = (self.rss_before?, self.rss_held?);
        (self.held > 0).then(|| (held as f64 - before as f64) / self.held as f64)
    }

    /// Fastest server fan-out span over fastest floor span: noise only ever adds time, so
    /// the best rounds are the least disturbed comparison.
    pub fn best_floor_ratio(&self) -> Option<f64> {
        let server = self.fanout.as_ref()?.spans.iter().min()?;
        let floor = self.floor.as_ref()?.spans.iter().min()?;
        (!floor.is_zero()).then(|| server.as_secs_f64() / floor.as_secs_f64())
    }

    /// Server CPU per delivery over floor-writer CPU per write: CPU time a process did
    /// not get is not counted, so a neighbour that steals the pinned CPU cannot inflate it.
    pub fn cpu_floor_ratio(&self) -> Option<f64> {
        let server = self.fanout.as_ref()?.server_cpu_per_delivery?;
        let floor = self.floor.as_ref()?.writer_cpu_per_write?;
        (!floor.is_zero()).then(|| server.as_secs_f64() / floor.as_secs_f64())
    }

    /// Median server fan-out span over median floor span.
    pub fn floor_ratio(&self) -> Option<f64> {
        let server = median(&self.fanout.as_ref()?.spans)?;
        let floor = median(&self.floor.as_ref()?.spans)?;
        (!floor.is_zero()).then(|| server.as_secs_f64() / floor.as_secs_f64())
    }
}

pub use crate::scale::median;

/// Runs one rung of `transport` clients; never fails as a whole, but records what went
/// wrong.
pub fn run_rung(ctx: &mut Ctx<'_>, n: usize, transport: Transport) -> RungResult {
    let mut rung = RungResult {
        n,
        transport,
        held: 0,
        errors: Errors::default(),
        rss_before: None,
        rss_anon_before: None,
        rss_held: None,
        rss_closed: None,
        open: None,
        idle: None,
        fanout: None,
        floor: None,
        notes: Vec::new(),
    };
    say!("N={n} {}: {}", transport.name(), ctx.server_verb());
    match ctx.target() {
        Ok(mut target) => {
            if let Err(e) = hold_and_fan_out(ctx, &mut target, &mut rung) {
                rung.notes.push(format!("server phases stopped: {e}"));
                say!("N={n}: server phases stopped: {e}");
            }
            target.stop();
        }
        Err(e) => {
            rung.notes.push(format!("no server: {e}"));
            say!("N={n}: no server: {e}");
        }
    }

    rung
}

/// Steps 1–7 against one server.
fn hold_and_fan_out(
    ctx: &mut Ctx<'_>,
    target: &mut Target,
    rung: &mut RungResult,
) -> io::Result<()> {
    let n = rung.n;
    let base = target.stats()?;
    ctx.server_limit = Some(base.open_files_limit);
    rung.rss_before = target.rss().ok();
    rung.rss_anon_before = host::rss_anon_bytes(target.pid).ok();

    // 2. open; a stream starts at the lobby's head, so nothing is replayed to it.
    let t = rung.transport;
    let since = match t.head_status() {
        Some(_) => target.head(transport::ROOM)?,
        None => String::new(),
    };
    let request = t.request(&since);
    say!(
        "N={n}: opening {n} connections, {} on each",
        String::from_utf8_lossy(request.split(|&b| b == b'\r').next().unwrap_or_default())
    );
    let deadline = ctx.phase_deadline(OPEN_CAP);
    let (mut pool, opened) =
        Pool::open_as(t, n, target.addr, &mut ctx.sources, &request, deadline)?;
    rung.errors.connect = opened.failed;
    if let Some(e) = &opened.first_error {
        rung.notes
            .push(format!("connect: {} failed: {e}", opened.failed));
    }
    let expected = opened.open as u64;
    let deadline = ctx.phase_deadline(PARK_CAP);
    let (_, accepted_at, all_accepted) =
        target.wait_until(deadline, |s| s.accepted >= base.accepted + expected)?;
    let mut latencies = opened.latencies;
    let burst = opened.finished.saturating_duration_since(opened.started);
    let accept_time = accepted_at.saturating_duration_since(opened.started);
    let open = Open {
        opened: opened.open,
        connect: Dist::of(&mut latencies),
        connects_per_sec: per_sec(opened.open, burst),
        accepts_per_sec: per_sec(opened.open, accept_time),
        accept_time,
    };
    if !all_accepted {
        rung.notes
            .push("server did not count every connection accepted".into());
    }
    say!(
        "N={n}: {} open, {} failed in {:.2} s; connect p50 {:.2} ms p99 {:.2} ms; \
         {:.0} accepts/s",
        open.opened,
        opened.failed,
        burst.as_secs_f64(),
        open.connect.p50_us / 1e3,
        open.connect.p99_us / 1e3,
        open.accepts_per_sec
    );
    rung.open = Some(open);

    // 3. park
    if t.repolls() {
        let parked = |s: &Stats| s.pending_polls >= base.pending_polls + expected;
        let deadline = ctx.phase_deadline(PARK_CAP);
        let (stats, _, all_parked) = target.wait_until(deadline, parked)?;
        rung.held = stats.pending_polls.saturating_sub(base.pending_polls);
        if !all_parked {
            rung.errors.park = expected.saturating_sub(rung.held) as usize;
            rung.notes.push(format!(
                "only {} of {expected} polls parked within {PARK_CAP:?}",
                rung.held
            ));
        }
    } else {
        let heads = pool.await_heads(ctx.phase_deadline(PARK_CAP));
        rung.held = heads.times.len() as u64;
        rung.errors.park = heads.errors();
        if let Some(e) = &heads.first_error {
            rung.notes.push(format!(
                "only {} of {expected} streams opened within {PARK_CAP:?}: {e}",
                rung.held
            ));
        }
        // The server's own count should agree with the clients'.
        let open = move |s: &Stats| match t {
            Transport::Ws => s.websockets.unwrap_or(0),
            _ => s.streams,
        };
        let (held, before) = (rung.held, open(&base));
        let deadline = ctx.phase_deadline(PARK_CAP);
        let (stats, _, counted) = target.wait_until(deadline, |s| open(s) >= before + held)?;
        if !counted {
            rung.notes.push(format!(
                "the server counts {} {} clients, the clients {held}",
                open(&stats).saturating_sub(before),
                t.name()
            ));
        }
    }

    // 4. hold: memory now, then CPU while nothing happens.
    rung.rss_held = target.rss().ok();
    say!(
        "N={n}: {} {} clients held; RSS {:.2} → {:.2} MiB; idle for {} s",
        rung.held,
        t.name(),
        mib(rung.rss_before),
        mib(rung.rss_held),
        ctx.options.idle.as_secs()
    );
    rung.idle = measure_idle(target.pid, ctx.options.idle.min(left(ctx)));
    let stats = target.stats()?;
    if t.repolls() && stats.pending_polls < base.pending_polls + rung.held {
        rung.notes.push(format!(
            "{} polls left while idle ({} timeouts)",
            base.pending_polls + rung.held - stats.pending_polls,
            stats.timeouts.saturating_sub(base.timeouts)
        ));
    }
    if !t.repolls() && stats.connections < base.connections + rung.held {
        rung.notes.push(format!(
            "{} connections closed while idle",
            base.connections + rung.held - stats.connections
        ));
    }

    // 5. floor
    say!("N={n}: kernel floor: connecting {n} sockets between writer and reader");
    let deadlines = (ctx.phase_deadline(FLOOR_START_CAP), ctx.deadline);
    let mut floor = match Floor::start(
        &ctx.exe,
        (ctx.server_cpu, ctx.client_cpu),
        t,
        n,
        ctx.options.message_bytes,
        &mut ctx.sources,
        deadlines,
    ) {
        Ok(floor) => Some(floor),
        Err(e) => {
            rung.notes.push(format!("floor failed: {e}"));
            say!("N={n}: floor failed: {e}");
            None
        }
    };

    // 6. fan-out rounds, floor rounds between them
    let fanout = fan_out(
        ctx,
        target,
        (&mut pool, &request),
        floor.as_mut(),
        rung,
        &base,
    );
    rung.floor = floor.map(Floor::finish);
    if let Some(floor) = &rung.floor {
        if let Some(e) = &floor.first_error {
            rung.notes
                .push(format!("floor: {} errors: {e}", floor.errors));
        }
    }
    rung.fanout = Some(fanout?);

    // 7. close
    drop(pool);
    let deadline = ctx.phase_deadline(CLOSE_CAP);
    let (_, _, closed) = target.wait_until(deadline, |s| s.connections <= base.connections)?;
    if !closed {
        rung.notes
            .push("server still held connections after the pool closed".into());
    }
    rung.rss_closed = target.rss().ok();
    Ok(())
}

/// Server CPU over an idle window of `window`.
fn measure_idle(pid: u32, window: Duration) -> Option<Idle> {
    let ticks_before = host::cpu_ticks(pid).ok()?;
    let clock_before = host::cpu_time(pid);
    let start = Instant::now();
    host::sleep_until(start + window);
    let wall = start.elapsed();
    let ticks = host::cpu_ticks(pid).ok()? - ticks_before;
    let clock = host::cpu_time(pid)
        .zip(clock_before)
        .map(|(after, before)| after.saturating_sub(before));
    let tick_secs = ticks as f64 / host::ticks_per_second() as f64;
    Some(Idle {
        window: wall,
        cpu_pct_ticks: 100.0 * tick_secs / wall.as_secs_f64(),
        cpu_pct: clock.map(|cpu| pct(cpu, wall)),
    })
}

/// Step 6: R broadcasts, and the polls' re-parks (`request` is what a poll sends again).
fn fan_out(
    ctx: &mut Ctx<'_>,
    target: &mut Target,
    (pool, request): (&mut Pool, &[u8]),
    mut floor: Option<&mut Floor>,
    rung: &mut RungResult,
    base: &Stats,
) -> io::Result<Fanout> {
    let n = rung.n;
    let rounds = ctx.options.rounds;
    let me = std::process::id();
    let mut fanout = Fanout {
        rounds: 0,
        latency: Dist::default(),
        spans: Vec::new(),
        lasts: Vec::new(),
        deliveries_per_sec: 0.0,
        cycles: Vec::new(),
        server_cpu_pct: None,
        server_cpu_per_delivery: None,
        client_cpu_pct: None,
        sorted: Vec::new(),
    };
    let mut rates = Vec::new();
    let (mut server_cpu, mut client_cpu, mut window) =
        (Some(Duration::ZERO), Some(Duration::ZERO), Duration::ZERO);
    let mut delivered = 0;
    // Makes this run's tokens unlike any earlier run's on an attached server.
    let nonce = std::process::id();
    for round in 0..rounds {
        if Instant::now() >= ctx.deadline {
            rung.notes.push(format!("out of time after {round} rounds"));
            break;
        }
        let token = format!("n{n}-r{round}-{nonce}");
        let message = wire::message(&token, ctx.options.message_bytes);
        let needle = wire::needle(&token, ctx.options.message_bytes);
        let expected = pool.open_count();
        let server_before = host::cpu_time(target.pid);
        let client_before = host::cpu_time(me);
        let posted = target.post(&message)?;
        let got = pool.receive(&needle, ctx.phase_deadline(ROUND_CAP));
        let server_after = host::cpu_time(target.pid);
        let client_after = host::cpu_time(me);
        target.finish_post()?;
        fanout.rounds += 1;
        rung.errors.delivery += got.errors();
        if let Some(e) = &got.first_error {
            rung.notes
                .push(format!("round {round}: {} errors: {e}", got.errors()));
        }
        let delivered_now = got.times.len();
        let timing = got.times.iter().min().zip(got.times.iter().max());
        if let Some((&first, &last)) = timing {
            let post_to_last = last - posted;
            fanout.spans.push(last - first);
            fanout.lasts.push(post_to_last);
            fanout.sorted.extend(
                got.times
                    .iter()
                    .map(|&t| t.saturating_duration_since(posted)),
            );
            rates.push(per_sec(delivered_now, post_to_last));
            delivered += delivered_now;
            window += post_to_last;
            server_cpu = add_cpu(server_cpu, server_before, server_after);
            client_cpu = add_cpu(client_cpu, client_before, client_after);
        }

        // The cycle: every poll asks again (also after a round that went wrong, or the next
        // round has no one to deliver to); it ends when the server has them all parked. A
        // stream is ready for the next message once it has this one: its cycle ends at the
        // last delivery, if every client got one.
        let cycle = if !rung.transport.repolls() {
            match timing {
                Some((_, &last)) if delivered_now == expected => {
                    fanout.cycles.push(last - posted);
                    format!("{:.2} ms", (last - posted).as_secs_f64() * 1e3)
                }
                _ => "not complete".into(),
            }
        } else {
            rung.errors.repark += pool.send_all(request);
            let parked_again = pool.open_count() as u64;
            let deadline = ctx.phase_deadline(ROUND_CAP);
            let (stats, parked_at, ok) = target.wait_until(deadline, |s| {
                s.pending_polls >= base.pending_polls + parked_again
            })?;
            if ok {
                fanout.cycles.push(parked_at - posted);
                format!("{:.2} ms", (parked_at - posted).as_secs_f64() * 1e3)
            } else {
                let short = (base.pending_polls + parked_again).saturating_sub(stats.pending_polls);
                rung.errors.repark += short as usize;
                rung.notes
                    .push(format!("round {round}: {short} polls not parked again"));
                "not complete".into()
            }
        };
        let (post_to_last, span) = timing.map_or((0.0, 0.0), |(&first, &last)| {
            (
                (last - posted).as_secs_f64() * 1e3,
                (last - first).as_secs_f64() * 1e3,
            )
        });
        say!(
            "N={n}: round {}: {delivered_now} of {expected} delivered, post→last {post_to_last:.2} ms, \
             span {span:.2} ms, cycle {cycle}",
            round + 1
        );
        std::thread::sleep(ROUND_GAP);

        if let Some(f) = floor.as_deref_mut() {
            match f.round(round, ctx.phase_deadline(ROUND_CAP)) {
                Ok((last, span)) => say!(
                    "N={n}: floor round {}: go→last {:.2} ms, span {:.2} ms",
                    round + 1,
                    last.as_secs_f64() * 1e3,
                    span.as_secs_f64() * 1e3
                ),
                Err(e) => {
                    rung.notes.push(format!("floor round {round} failed: {e}"));
                    say!(
                        "N={n}: floor round {} failed: {e}; no more floor rounds",
                        round + 1
                    );
                    floor = None;
                }
            }
            std::thread::sleep(ROUND_GAP);
        }
    }
    fanout.latency = Dist::of(&mut fanout.sorted);
    rates.sort_by(f64::total_cmp);
    fanout.deliveries_per_sec = rates.get(rates.len() / 2).copied().unwrap_or(0.0);
    if !window.is_zero() {
        fanout.server_cpu_pct = server_cpu.map(|cpu| pct(cpu, window));
        fanout.client_cpu_pct = client_cpu.map(|cpu| pct(cpu, window));
        fanout.server_cpu_per_delivery = server_cpu
            .filter(|_| delivered > 0)
            .map(|cpu| cpu / delivered as u32);
    }
    Ok(fanout)
}

fn add_cpu(
    sum: Option<Duration>,
    before: Option<Duration>,
    after: Option<Duration>,
) -> Option<Duration> {
    Some(sum? + after?.saturating_sub(before?))
}

/// `count` per second of `over`.
fn per_sec(count: usize, over: Duration) -> f64 {
    if over.is_zero() {
        0.0
    } else {
        count as f64 / over.as_secs_f64()
    }
}

/// `cpu` as a percentage of one core over `wall`.
fn pct(cpu: Duration, wall: Duration) -> f64 {
    100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9)
}

fn mib(bytes: Option<u64>) -> f64 {
    bytes.map_or(0.0, |b| b as f64 / (1024.0 * 1024.0))
}

fn left(ctx: &Ctx<'_>) -> Duration {
    ctx.deadline.saturating_duration_since(Instant::now())
}
