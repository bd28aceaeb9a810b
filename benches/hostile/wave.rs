//! Phase f, a timeout wave: 19,500 long polls time out in the same 10 ms tick beside the
//! calm client, as they do in production when a loop is held up (a stop by the scheduler,
//! a swap storm, a debugger) while their deadlines pass.
//!
//! The polls are `GET /rooms/wave/messages?since=<head>`, `head` being the position of the
//! one message the room holds, so each parks, and each timeout is its own JSON answer
//! encoded and written (classic `GET /chat` timeouts share one prepared answer, which would
//! make the wave cheaper than a room's). They come from 127.0.0.2, 127.0.0.3, ... (2,000
//! per address), so that no source address runs out of ephemeral ports, and the server gets
//! `--max-conns-per-client 0` so the per-address cap does not refuse them. The bench holds
//! its 19,500 sockets and the server its own 19,500, each under its own open-files cap.
//!
//! Parking them takes a second or so, so their deadlines spread over a hundred ticks. To
//! make them fall due together, the bench stops the server (SIGSTOP to its own child's
//! PID) a little before the first deadline and lets it go on (SIGCONT) a little after the
//! last: when it wakes, every one of them is due at once. Before the loop bounded the
//! timers one pass fires (`TIMERS_FIRED_PER_PASS`, src/server/timers.rs), one pass
//! answered all of them before anybody else was served.
//!
//! Windows: `baseline` (quiet), `parking` (the polls arrive), `wave` (from SIGCONT for a
//! couple of seconds, while the wave is answered: the target, p99 ≤ 50 ms, is this row's)
//! and `after` (quiet). No window covers the stop itself, which is slow by construction;
//! the notes say how the probe's requests sent during it are counted. Besides: the time from SIGCONT until the last poll's answer reached
//! the bench, the timeouts `/stats` counted, and from the admin `/metrics` the timers fired,
//! the passes of the loop and how long the longest of them took.

use crate::args::Phase;
use crate::attacker::{self, connect_from};
use crate::host;
use crate::http::{self, counter, frame, Conn, Frame, ONE_OFF_TIMEOUT};
use crate::report::TARGET_P99_MS;
use crate::stage::{Ctx, PhaseResult, Stage};
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

/// The last octet of the first poller's source address (127.0.0.`FIRST_SOURCE`): clear of
/// 127.0.0.1, which the probe and the calm client share.
const FIRST_SOURCE: u8 = 2;
/// The room the polls wait in.
const ROOM: &str = "wave";
/// SIGSTOP this long before the first poll can fall due: its deadline is at least the
/// poll timeout after the bench wrote it, so a stop this much earlier comes before it.
const STOP_BEFORE_FIRST_DEADLINE: Duration = Duration::from_millis(200);
/// SIGCONT this long after the last poll fell due: the last parked before `/stats` said
/// all were parked, and its deadline is rounded up to the next 10 ms tick, so this margin
/// leaves every one of them past due when the loop wakes.
const CONT_AFTER_LAST_DEADLINE: Duration = Duration::from_millis(300);
/// `/stats` and `/metrics` are read this long before the stop, so that the loop's counters
/// compared across the wave hold little else.
const SCRAPE_LEAD: Duration = Duration::from_millis(100);
/// How often the bench asks `/stats` whether every poll is parked.
const PARKED_EVERY: Duration = Duration::from_millis(50);
/// Readiness events the answer reader takes per `poll` call.
const EVENTS_PER_POLL: usize = 1024;
/// Bytes the answer reader reads at once; an answer to an empty poll is ~150 bytes.
const READ_CHUNK_BYTES: usize = 4096;
/// Largest answer the reader buffers for one poll before calling it a failure: a timeout
/// answer holds no message, so anything near this is not one.
const ANSWER_CAP_BYTES: usize = 64 * 1024;
/// How often the answer reader looks at its deadline when nothing arrives.
const READER_STEP: Duration = Duration::from_millis(200);

/// Runs phase f on a fresh server.
pub fn run(ctx: &Ctx) -> Result<PhaseResult, String> {
    let sizes = &ctx.sizes;
    let polls = sizes.wave_polls;
    let sources = sources(polls, sizes.wave_polls_per_source)?;
    let source_count = sources.len();
    let poll_timeout = sizes.wave_poll_timeout;
    let poll_timeout_flag = format!("{}", poll_timeout.as_secs_f64());
    let admin = free_loopback_port()?;
    let admin_flag = admin.to_string();
    let flags = [
        // Overrides the common 2 s (the server takes the last of a repeated flag): every
        // poll must park before the first one times out.
        "--poll-timeout",
        &poll_timeout_flag,
        "--max-conns-per-client",
        "0",
        "--admin-addr",
        &admin_flag,
    ];
    let mut stage = Stage::start(ctx, Phase::Wave, &flags)?;
    let addr = stage.server.addr();

    // The room's one message: its position is the head every poll waits after.
    let mut calm = Conn::connect(addr, ONE_OFF_TIMEOUT).map_err(|e| e.to_string())?;
    let head = match calm.request(&http::post(ROOM, "calm", "wave-head")) {
        Ok((201, body)) => serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .ok_or("the head post's answer has no id")?,
        other => return Err(format!("the head post: {other:?}")),
    };
    drop(calm);
    stage.quiet("baseline", sizes.baseline);

    say!(
        "phase f: {polls} polls after {head} in room {ROOM} from {} addresses \
         (127.0.0.{FIRST_SOURCE}-{}), --poll-timeout {poll_timeout_flag}",
        sources.len(),
        FIRST_SOURCE as usize + sources.len() - 1
    );
    let request = http::get(&format!("/rooms/{ROOM}/messages?since={head}"));
    let parking_cap = Instant::now() + sizes.attack_cap;
    let opened = thread::Builder::new()
        .name("wave-connect".into())
        .spawn(move || open_polls(addr, &sources, polls, &request))
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|_| "the poll opener panicked".to_string())?;
    let Opened {
        streams,
        first_sent,
        last_sent,
    } = opened.map_err(|e| format!("opening the polls: {e}"))?;
    let parked_at = wait_parked(&stage, polls as u64, parking_cap)?;
    stage.window("parking", first_sent, parked_at);

    // The first poll's deadline is at least the poll timeout after it was written; the
    // last one's at most a tick past the poll timeout after /stats saw it parked.
    let stop_at = first_sent + poll_timeout - STOP_BEFORE_FIRST_DEADLINE;
    let cont_at = parked_at + poll_timeout + CONT_AFTER_LAST_DEADLINE;
    if Instant::now() + SCRAPE_LEAD >= stop_at {
        return Err(format!(
            "parking took {:.1} s, too long to stop the server before the first poll's \
             deadline (--poll-timeout {poll_timeout_flag})",
            (parked_at - first_sent).as_secs_f64()
        ));
    }
    let reader_deadline = cont_at + sizes.attack_cap;
    let reader = thread::Builder::new()
        .name("wave-answers".into())
        .spawn(move || read_answers(streams, reader_deadline))
        .map_err(|e| e.to_string())?;
    crate::sleep_until(stop_at - SCRAPE_LEAD);
    let before = stage.stats()?;
    let metrics_before = metrics(admin)?;
    crate::sleep_until(stop_at);
    let stopped = Instant::now();
    stage
        .server
        .signal(libc::SIGSTOP)
        .map_err(|e| format!("SIGSTOP: {e}"))?;
    crate::sleep_until(cont_at);
    let resumed = Instant::now();
    // Nothing fallible between the two signals: a server left stopped would hang the
    // rest of the phase (dropping it would still kill it).
    stage
        .server
        .signal(libc::SIGCONT)
        .map_err(|e| format!("SIGCONT: {e}"))?;
    say!(
        "phase f: server stopped {:.2} s ({:.2} s after the first poll was written), \
         then continued",
        (resumed - stopped).as_secs_f64(),
        (stopped - first_sent).as_secs_f64()
    );
    let answers = reader
        .join()
        .map_err(|_| "the answer reader panicked".to_string())?
        .map_err(|e| format!("reading the answers: {e}"))?;
    let metrics_after = metrics(admin)?;
    let scraped = Instant::now();
    crate::sleep_until(resumed + sizes.wave_window);
    let wave_end = Instant::now().max(resumed + sizes.wave_window);
    stage.window("wave", resumed, wave_end);
    let after_wave = stage.stats()?;
    stage.quiet("after", sizes.after);
    stage.settle();
    let Answers {
        streams,
        arrivals,
        statuses,
        failed,
        first_error,
    } = answers;
    // Held open until every window is measured: closing 19,500 sockets is a burst of its
    // own for the loop.
    drop(streams);

    let early = arrivals.iter().filter(|&&t| t < resumed).count();
    let last = arrivals.iter().max().copied();
    let answered = arrivals.len();
    let since_cont = |t: Instant| t.saturating_duration_since(resumed).as_secs_f64() * 1e3;
    stage.note(format!(
        "{polls} polls (GET /rooms/{ROOM}/messages?since=<head>, each parked, each timing out \
         into its own JSON answer) from {} addresses, written in {:.2} s, all parked {:.2} s \
         after the first (/stats pending_polls {})",
        source_count,
        (last_sent - first_sent).as_secs_f64(),
        (parked_at - first_sent).as_secs_f64(),
        counter(&before, "pending_polls")
    ));
    stage.note(format!(
        "server SIGSTOPped {:.2} s after the first poll was written ({} ms before the first \
         deadline) and SIGCONTinued {:.2} s later ({} ms past the last): every poll was due \
         when the loop woke",
        (stopped - first_sent).as_secs_f64(),
        STOP_BEFORE_FIRST_DEADLINE.as_millis(),
        (resumed - stopped).as_secs_f64(),
        CONT_AFTER_LAST_DEADLINE.as_millis()
    ));
    stage.note(
        "the stop itself is excluded: the wave window starts at SIGCONT, and no window \
         covers the stop. A probe request sent during the stop waited out the rest of it \
         and is in no window; by the coordinated-omission accounting it also stands for one \
         request per interval (10 ms round trip, 20 ms delivery) it kept from being sent, \
         each waiting what was left of its wait: those due before SIGCONT are in no window \
         either, those due after it count in the wave row, waiting only what was left after \
         SIGCONT, as a request sent then would have"
            .into(),
    );
    stage.note(format!(
        "answers: {answered} of {polls} in {}, {early} before SIGCONT; first {:.1} ms, \
         last {} after SIGCONT (read on the bench, at nice 10); {failed} failed{}",
        statuses_text(&statuses),
        arrivals.iter().min().map_or(f64::NAN, |&t| since_cont(t)),
        last.map_or("none".into(), |t| format!("{:.1} ms", since_cont(t))),
        first_error
            .as_ref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    ));
    let timeouts = counter(&after_wave, "timeouts").saturating_sub(counter(&before, "timeouts"));
    stage.note(format!(
        "/stats: timeouts {} before the stop, {} after the wave (+{timeouts}); \
         pending_polls {} after the wave",
        counter(&before, "timeouts"),
        counter(&after_wave, "timeouts"),
        counter(&after_wave, "pending_polls")
    ));
    let loop_delta = metrics_after.since(&metrics_before);
    stage.note(format!(
        "admin /metrics from just before the stop to {:.1} ms after SIGCONT (the scrape just \
         after the last answer): timers fired {}, loop passes {} (the probe's included), \
         passes over 10 ms {}, longest pass {}",
        since_cont(scraped),
        loop_delta.timers_fired,
        loop_delta.passes,
        loop_delta.passes_over_10ms,
        loop_delta.longest_text()
    ));

    let results = stage.seen(resumed, wave_end);
    let worst = results.rtt.p99_ms.max(results.delivery.p99_ms);
    let met = results.rtt.raw > 0 && results.delivery.raw > 0 && worst <= TARGET_P99_MS;
    stage.target(
        met,
        format!(
            "the calm client in the wave, p99 <= {TARGET_P99_MS} ms: round trip p50 {:.1} / p99 {:.1} / \
             max {:.1} ms, delivery p50 {:.1} / p99 {:.1} / max {:.1} ms",
            results.rtt.p50_ms,
            results.rtt.p99_ms,
            results.rtt.max_ms,
            results.delivery.p50_ms,
            results.delivery.p99_ms,
            results.delivery.max_ms
        ),
    );
    stage.figure(
        "wave",
        json!({
            "polls": polls,
            "sources": source_count,
            "poll_timeout_seconds": poll_timeout.as_secs_f64(),
            "written_seconds": (last_sent - first_sent).as_secs_f64(),
            "parked_seconds": (parked_at - first_sent).as_secs_f64(),
            "stopped_seconds": (resumed - stopped).as_secs_f64(),
            "answered": answered,
            "answered_before_sigcont": early,
            "statuses": statuses,
            "failed": failed,
            "first_error": first_error,
            "last_answer_after_sigcont_ms": last.map(since_cont),
            "timeouts_counted": timeouts,
            "timers_fired": loop_delta.timers_fired,
            "loop_passes": loop_delta.passes,
            "passes_over_10ms": loop_delta.passes_over_10ms,
            "longest_pass_at_most_seconds": loop_delta.longest_at_most,
            "metrics_scraped_after_sigcont_ms": since_cont(scraped),
        }),
    );
    stage.figure("target_met", Value::Bool(met));
    stage.figure("stats_before_stop", before);
    stage.figure("stats_after_wave", after_wave);
    Ok(stage.finish())
}

/// The pollers' source addresses: 127.0.0.2 onwards, one per `per_source` polls.
fn sources(polls: usize, per_source: usize) -> Result<Vec<IpAddr>, String> {
    attacker::loopback_sources(FIRST_SOURCE, polls.div_ceil(per_source.max(1)))
}

/// A loopback address whose port was free a moment ago, for the admin listener.
fn free_loopback_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port for --admin-addr: {e}"))
}

/// The polls, written and waiting.
struct Opened {
    /// One socket per poll, non-blocking.
    streams: Vec<MioStream>,
    /// When the first poll was written: its deadline is at least the poll timeout later.
    first_sent: Instant,
    /// When the last one was written.
    last_sent: Instant,
}

/// Connects `polls` sockets, spread over `sources` in runs of equal length, and writes
/// `request` on each; stops at the first failure (e.g. out of descriptors), which is then
/// the phase's error.
fn open_polls(
    addr: SocketAddr,
    sources: &[IpAddr],
    polls: usize,
    request: &[u8],
) -> io::Result<Opened> {
    let _ = host::lower_priority();
    let per_source = polls.div_ceil(sources.len().max(1));
    let mut streams = Vec::with_capacity(polls);
    let mut first_sent = None;
    for i in 0..polls {
        let source = sources[i / per_source];
        let opened = connect_from(source, addr).and_then(|mut stream| {
            stream.set_nodelay(true)?;
            stream.write_all(request)?;
            stream.set_nonblocking(true)?;
            Ok(stream)
        });
        let stream =
            opened.map_err(|e| io::Error::new(e.kind(), format!("poll {i} from {source}: {e}")))?;
        first_sent.get_or_insert_with(Instant::now);
        streams.push(MioStream::from_std(stream));
    }
    let last_sent = Instant::now();
    Ok(Opened {
        streams,
        first_sent: first_sent.unwrap_or(last_sent),
        last_sent,
    })
}

/// Waits until `/stats` says `polls` polls are parked, and returns when it saw it.
fn wait_parked(stage: &Stage, polls: u64, cap: Instant) -> Result<Instant, String> {
    loop {
        let stats = stage.stats()?;
        let now = Instant::now();
        let parked = counter(&stats, "pending_polls");
        if parked >= polls {
            return Ok(now);
        }
        if now >= cap {
            return Err(format!("only {parked} of {polls} polls parked in time"));
        }
        thread::sleep(PARKED_EVERY);
    }
}

/// What the answer reader got.
struct Answers {
    /// The sockets, kept open until the phase is measured.
    streams: Vec<MioStream>,
    /// When each answered poll's whole answer had arrived.
    arrivals: Vec<Instant>,
    /// Answers by status.
    statuses: BTreeMap<u16, u64>,
    /// Polls whose connection failed or closed, or whose answer was not HTTP.
    failed: usize,
    /// The first such failure, in words.
    first_error: Option<String>,
}

/// Reads one answer from each socket as it arrives (one thread, one epoll, at nice 10),
/// until every poll has one or failed, or `deadline`.
fn read_answers(mut streams: Vec<MioStream>, deadline: Instant) -> io::Result<Answers> {
    let _ = host::lower_priority();
    let mut poll = Poll::new()?;
    for (i, stream) in streams.iter_mut().enumerate() {
        poll.registry()
            .register(stream, Token(i), Interest::READABLE)?;
    }
    let n = streams.len();
    let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); n];
    let mut done = vec![false; n];
    let mut left = n;
    let mut answers = Answers {
        streams: Vec::new(),
        arrivals: Vec::with_capacity(n),
        statuses: BTreeMap::new(),
        failed: 0,
        first_error: None,
    };
    let fail = |answers: &mut Answers, i: usize, what: String| {
        answers.failed += 1;
        answers
            .first_error
            .get_or_insert(format!("poll {i}: {what}"));
    };
    let mut events = Events::with_capacity(EVENTS_PER_POLL);
    let mut chunk = [0u8; READ_CHUNK_BYTES];
    while left > 0 {
        let now = Instant::now();
        if now >= deadline {
            answers.failed += left;
            answers.first_error.get_or_insert(format!(
                "{left} polls had no answer by the reader's deadline"
            ));
            break;
        }
        match poll.poll(&mut events, Some((deadline - now).min(READER_STEP))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in &events {
            let i = event.token().0;
            if i >= n || done[i] {
                continue;
            }
            // Edge-triggered: read until WouldBlock, then frame what arrived.
            let outcome = loop {
                match streams[i].read(&mut chunk) {
                    Ok(0) => break Err("the server closed the connection".to_string()),
                    Ok(k) => {
                        bufs[i].extend_from_slice(&chunk[..k]);
                        if bufs[i].len() > ANSWER_CAP_BYTES {
                            break Err(format!("over {ANSWER_CAP_BYTES} bytes"));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e.to_string()),
                }
            };
            let outcome = outcome.and_then(|()| frame(&bufs[i]).map_err(|e| e.to_string()));
            match outcome {
                Ok(Frame::Complete { status, .. }) => {
                    answers.arrivals.push(Instant::now());
                    *answers.statuses.entry(status).or_default() += 1;
                }
                // Normal flow: the rest of the answer has not arrived yet.
                Ok(Frame::Partial) => continue,
                Err(what) => fail(&mut answers, i, what),
            }
            done[i] = true;
            bufs[i] = Vec::new();
            left -= 1;
        }
    }
    answers.streams = streams;
    Ok(answers)
}

/// `200 x 19500` style.
fn statuses_text(statuses: &BTreeMap<u16, u64>) -> String {
    if statuses.is_empty() {
        return "no answer".into();
    }
    let parts: Vec<String> = statuses.iter().map(|(s, n)| format!("{s} x {n}")).collect();
    parts.join(", ")
}

/// The loop's counters from the admin `/metrics`, as far as this phase reads them.
#[derive(Clone, Debug, Default)]
struct LoopMetrics {
    /// `comet_chat_loop_passes_total`.
    passes: u64,
    /// `comet_chat_timers_fired_total`.
    timers_fired: u64,
    /// `comet_chat_loop_pass_duration_seconds_bucket`: (upper bound in seconds, passes at
    /// most that long, cumulative), `+Inf` as infinity.
    buckets: Vec<(f64, u64)>,
}

/// What the loop did between two scrapes.
struct LoopDelta {
    /// Passes.
    passes: u64,
    /// Timers fired.
    timers_fired: u64,
    /// Passes longer than 10 ms.
    passes_over_10ms: u64,
    /// The smallest histogram bound no pass exceeded, in seconds (infinite: above every
    /// bound).
    longest_at_most: Option<f64>,
}

impl LoopMetrics {
    /// Counters since `earlier`.
    fn since(&self, earlier: &LoopMetrics) -> LoopDelta {
        let at = |m: &LoopMetrics, le: f64| {
            m.buckets
                .iter()
                .find(|(bound, _)| *bound == le)
                .map_or(0, |(_, n)| *n)
        };
        let total = |m: &LoopMetrics| at(m, f64::INFINITY);
        let passes_in = total(self).saturating_sub(total(earlier));
        let within = |le: f64| at(self, le).saturating_sub(at(earlier, le));
        let longest_at_most = self
            .buckets
            .iter()
            .map(|(bound, _)| *bound)
            .find(|&bound| within(bound) >= passes_in);
        LoopDelta {
            passes: self.passes.saturating_sub(earlier.passes),
            timers_fired: self.timers_fired.saturating_sub(earlier.timers_fired),
            passes_over_10ms: passes_in.saturating_sub(within(0.01)),
            longest_at_most,
        }
    }
}

impl LoopDelta {
    /// "≤ 5 ms" style.
    fn longest_text(&self) -> String {
        match self.longest_at_most {
            Some(s) if s.is_finite() => format!("<= {} ms", s * 1e3),
            Some(_) => "over every bucket".into(),
            None => "unknown".into(),
        }
    }
}

/// Scrapes the admin `/metrics` (served by the same loop as everything else).
fn metrics(admin: SocketAddr) -> Result<LoopMetrics, String> {
    let mut conn = Conn::connect(admin, ONE_OFF_TIMEOUT).map_err(|e| format!("/metrics: {e}"))?;
    let body = match conn.request(&http::get("/metrics")) {
        Ok((200, body)) => body,
        other => return Err(format!("/metrics: {other:?}")),
    };
    let text = String::from_utf8_lossy(&body);
    let mut out = LoopMetrics::default();
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        if name == "comet_chat_loop_passes_total" {
            out.passes = value as u64;
        } else if name == "comet_chat_timers_fired_total" {
            out.timers_fired = value as u64;
        } else if let Some(le) = name
            .strip_prefix("comet_chat_loop_pass_duration_seconds_bucket{le=\"")
            .and_then(|rest| rest.strip_suffix("\"}"))
        {
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::NAN)
            };
            out.buckets.push((bound, value as u64));
        }
    }
    Ok(out)
}
