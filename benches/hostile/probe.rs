//! The well-behaved client, whose experience is what this bench reports. It lives in room
//! `calm`, which no attacker touches, so everything it sees of an attack is what the
//! attack does to the one loop they share. Two probes, each on its own thread and its own
//! keep-alive connection:
//!
//! - **round trip**: `GET /rooms/calm/presence` every [`RTT_EVERY`], one at a time;
//!   request written → whole answer read.
//! - **delivery**: `POST /rooms/calm/messages` (text `d<seq>`) every [`DELIVERY_EVERY`],
//!   and a third thread reading `GET /rooms/calm/events`; post written → the message's
//!   frame read on the stream.
//!
//! Every sample keeps the instant its request was sent, so a phase can ask afterwards for
//! the samples of any window. A request that fails (or times out after
//! [`PROBE_TIMEOUT`]) is an error, counted in its window, and the probe reconnects.

use crate::dist::Dist;
use crate::http::{self, Conn};
use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The round-trip probe's schedule: one small request this often.
pub const RTT_EVERY: Duration = Duration::from_millis(10);
/// The delivery probe's schedule: one post this often (50 messages/s, a lively room).
pub const DELIVERY_EVERY: Duration = Duration::from_millis(20);
/// Longest a probe waits for one answer before counting an error and reconnecting: far
/// longer than any freeze seen so far (20 s), so a freeze is measured, not cut short.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause before a probe reconnects after an error, so a refusing server is not spun on.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);
/// Longest the probes may take to connect and see their first answers.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The probes' room.
const ROOM: &str = "calm";
/// Errors kept in full per probe; the rest are only counted.
const ERRORS_KEPT: usize = 5;

/// One measured request.
#[derive(Clone, Copy)]
struct Sample {
    /// When its request was written.
    sent: Instant,
    /// Written → answered (or delivered).
    latency: Duration,
}

/// What one probe measured so far.
#[derive(Default)]
struct Series {
    /// Every answered request.
    samples: Vec<Sample>,
    /// When each failure happened (its request's send time).
    errors: Vec<Instant>,
    /// The first few failures, in words.
    kept: Vec<String>,
}

impl Series {
    fn error(&mut self, at: Instant, what: String) {
        self.errors.push(at);
        if self.kept.len() < ERRORS_KEPT {
            self.kept.push(what);
        }
    }
}

/// What the probes saw in one window.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Round trips sent in the window.
    pub rtt: Dist,
    /// Round trips sent in the window that failed.
    pub rtt_errors: usize,
    /// Deliveries of posts sent in the window.
    pub delivery: Dist,
    /// Posts sent in the window that failed, or whose stream failed.
    pub delivery_errors: usize,
    /// Posts sent in the window never seen on the stream.
    pub undelivered: usize,
}

/// A probe thread's current socket, so stopping can shut it down instead of waiting out
/// a blocking read.
type Slot = Arc<Mutex<Option<TcpStream>>>;

/// The running probes.
pub struct Probes {
    /// Set to stop every probe thread.
    stop: Arc<AtomicBool>,
    /// Round trips.
    rtt: Arc<Mutex<Series>>,
    /// Post → frame on the stream.
    delivery: Arc<Mutex<Series>>,
    /// Posts not yet seen on the stream, by seq: when each was sent.
    in_flight: Arc<Mutex<HashMap<u64, Instant>>>,
    /// One per thread.
    slots: Vec<Slot>,
    threads: Vec<JoinHandle<()>>,
}

impl Probes {
    /// Starts the three threads against `addr` and waits until the stream is open and
    /// both probes have had an answer.
    pub fn start(addr: SocketAddr) -> io::Result<Probes> {
        let mut probes = Probes {
            stop: Arc::new(AtomicBool::new(false)),
            rtt: Arc::default(),
            delivery: Arc::default(),
            in_flight: Arc::default(),
            slots: (0..3).map(|_| Slot::default()).collect(),
            threads: Vec::new(),
        };
        let stream_open = Arc::new(AtomicBool::new(false));
        let (stop, series, slot) = (
            Arc::clone(&probes.stop),
            Arc::clone(&probes.delivery),
            Arc::clone(&probes.slots[0]),
        );
        let (in_flight, open) = (Arc::clone(&probes.in_flight), Arc::clone(&stream_open));
        probes.threads.push(spawn("probe-stream", move || {
            stream_reader(addr, &stop, &series, &in_flight, &slot, &open)
        })?);
        let deadline = Instant::now() + READY_TIMEOUT;
        while !stream_open.load(Relaxed) {
            if Instant::now() >= deadline {
                return Err(io::Error::other("the probe's event stream did not open"));
            }
            thread::sleep(Duration::from_millis(5));
        }
        let (stop, series, slot) = (
            Arc::clone(&probes.stop),
            Arc::clone(&probes.rtt),
            Arc::clone(&probes.slots[1]),
        );
        probes.threads.push(spawn("probe-rtt", move || {
            round_trips(addr, &stop, &series, &slot)
        })?);
        let (stop, series, slot) = (
            Arc::clone(&probes.stop),
            Arc::clone(&probes.delivery),
            Arc::clone(&probes.slots[2]),
        );
        let in_flight = Arc::clone(&probes.in_flight);
        probes.threads.push(spawn("probe-post", move || {
            poster(addr, &stop, &series, &in_flight, &slot)
        })?);
        let ready = |s: &Mutex<Series>| s.lock().is_ok_and(|s| !s.samples.is_empty());
        while !(ready(&probes.rtt) && ready(&probes.delivery)) {
            if Instant::now() >= deadline {
                return Err(io::Error::other("the probes got no answer"));
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok(probes)
    }

    /// What the probes saw of requests sent (or, see [`Dist::of`], kept from being sent)
    /// in `from..to`.
    pub fn seen(&self, from: Instant, to: Instant) -> Seen {
        let within = |t: &Instant| (from..to).contains(t);
        let pick = |series: &Mutex<Series>, every: Duration| -> (Dist, usize) {
            let s = series.lock().expect("a probe thread panicked");
            let samples: Vec<(Instant, Duration)> =
                s.samples.iter().map(|x| (x.sent, x.latency)).collect();
            let errors = s.errors.iter().filter(|t| within(t)).count();
            (Dist::of(&samples, every, from, to), errors)
        };
        let (rtt, rtt_errors) = pick(&self.rtt, RTT_EVERY);
        let (delivery, delivery_errors) = pick(&self.delivery, DELIVERY_EVERY);
        let undelivered = self
            .in_flight
            .lock()
            .map_or(0, |m| m.values().filter(|t| within(t)).count());
        Seen {
            rtt,
            rtt_errors,
            delivery,
            delivery_errors,
            undelivered,
        }
    }

    /// Whether both probes have finished a request sent after `t` (answered or failed):
    /// then every window ending at `t` has all the samples it will ever get.
    pub fn past(&self, t: Instant) -> bool {
        let done = |series: &Mutex<Series>| {
            series.lock().is_ok_and(|s| {
                s.samples.last().is_some_and(|x| x.sent >= t)
                    || s.errors.last().is_some_and(|&e| e >= t)
            })
        };
        done(&self.rtt) && done(&self.delivery)
    }

    /// Waits (up to `cap`) until [`past`](Probes::past) `t`; false if it never was.
    pub fn wait_past(&self, t: Instant, cap: Duration) -> bool {
        let deadline = Instant::now() + cap;
        while !self.past(t) {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// The first few errors of each probe, for the report.
    pub fn first_errors(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, series) in [("round trip", &self.rtt), ("delivery", &self.delivery)] {
            if let Ok(s) = series.lock() {
                out.extend(s.kept.iter().map(|e| format!("{name}: {e}")));
            }
        }
        out
    }

    /// Stops every probe thread (shutting their sockets so no read holds them) and waits
    /// for them.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Probes {
    /// Stopping lives here so that a phase failing half-way (the probes started, the
    /// server did not answer) leaves no probe thread reconnecting for the rest of the run.
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for slot in &self.slots {
            if let Some(stream) = slot.lock().ok().as_ref().and_then(|s| s.as_ref()) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    thread::Builder::new().name(name.to_owned()).spawn(body)
}

/// Connects a probe and remembers its socket in `slot`.
fn connect(addr: SocketAddr, slot: &Slot, stop: &AtomicBool) -> io::Result<Conn> {
    let conn = Conn::connect(addr, PROBE_TIMEOUT)?;
    if let (Ok(mut held), Ok(clone)) = (slot.lock(), conn.stream.try_clone()) {
        *held = Some(clone);
    }
    if stop.load(Relaxed) {
        let _ = conn.stream.shutdown(Shutdown::Both);
    }
    Ok(conn)
}

/// Sleeps until `at` in short steps, returning early if told to stop.
fn sleep_until(at: Instant, stop: &AtomicBool) {
    while !stop.load(Relaxed) {
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// The next slot on an `every` schedule; after a stall, the schedule restarts from now
/// (the requests the stall kept from being sent are accounted for in [`Dist::of`]).
fn next_slot(previous: Instant, every: Duration) -> Instant {
    (previous + every).max(Instant::now())
}

/// The probe's connection, made again if it was lost; `None` (the failure recorded, after
/// a pause) when connecting failed.
fn connection<'a>(
    conn: &'a mut Option<Conn>,
    addr: SocketAddr,
    slot: &Slot,
    series: &Mutex<Series>,
    stop: &AtomicBool,
) -> Option<&'a mut Conn> {
    if conn.is_none() {
        match connect(addr, slot, stop) {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                record_error(series, stop, Instant::now(), format!("connect: {e}"));
                thread::sleep(RECONNECT_PAUSE);
                return None;
            }
        }
    }
    conn.as_mut()
}

/// The round-trip probe.
fn round_trips(addr: SocketAddr, stop: &AtomicBool, series: &Mutex<Series>, slot: &Slot) {
    let request = http::get(&format!("/rooms/{ROOM}/presence"));
    let mut conn: Option<Conn> = None;
    let mut due = Instant::now();
    while !stop.load(Relaxed) {
        sleep_until(due, stop);
        due = next_slot(due, RTT_EVERY);
        let Some(c) = connection(&mut conn, addr, slot, series, stop) else {
            continue;
        };
        let sent = Instant::now();
        match c.request(&request) {
            Ok((200, _)) => record(series, sent),
            Ok((status, body)) => {
                let body = String::from_utf8_lossy(&body).into_owned();
                record_error(series, stop, sent, format!("status {status}: {body}"));
            }
            Err(e) => {
                record_error(series, stop, sent, format!("presence: {e}"));
                conn = None;
                thread::sleep(RECONNECT_PAUSE);
            }
        }
    }
}

/// The delivery probe's poster.
fn poster(
    addr: SocketAddr,
    stop: &AtomicBool,
    series: &Mutex<Series>,
    in_flight: &Mutex<HashMap<u64, Instant>>,
    slot: &Slot,
) {
    let mut conn: Option<Conn> = None;
    let mut due = Instant::now();
    let mut seq = 0u64;
    while !stop.load(Relaxed) {
        sleep_until(due, stop);
        due = next_slot(due, DELIVERY_EVERY);
        let Some(c) = connection(&mut conn, addr, slot, series, stop) else {
            continue;
        };
        seq += 1;
        let request = http::post(ROOM, "probe", &format!("d{seq}"));
        let sent = Instant::now();
        if let Ok(mut m) = in_flight.lock() {
            m.insert(seq, sent);
        }
        match c.request(&request) {
            Ok((201, _)) => {}
            Ok((status, body)) => {
                let body = String::from_utf8_lossy(&body).into_owned();
                record_error(series, stop, sent, format!("post: status {status}: {body}"));
            }
            Err(e) => {
                record_error(series, stop, sent, format!("post: {e}"));
                conn = None;
                thread::sleep(RECONNECT_PAUSE);
            }
        }
    }
}

/// The delivery probe's reader: `GET /rooms/calm/events`, and for every frame carrying a
/// probe post, the time since that post was sent. Reconnects without a position after an
/// error; the replay then repeats messages already seen, which are no longer in flight
/// and are skipped.
fn stream_reader(
    addr: SocketAddr,
    stop: &AtomicBool,
    series: &Mutex<Series>,
    in_flight: &Mutex<HashMap<u64, Instant>>,
    slot: &Slot,
    open: &AtomicBool,
) {
    let request = http::get(&format!("/rooms/{ROOM}/events"));
    while !stop.load(Relaxed) {
        let opened = connect(addr, slot, stop).and_then(|mut c| {
            c.stream.write_all(&request)?;
            c.read_stream_head()?;
            Ok(c)
        });
        let mut conn = match opened {
            Ok(conn) => conn,
            Err(e) => {
                record_error(series, stop, Instant::now(), format!("stream: {e}"));
                thread::sleep(RECONNECT_PAUSE);
                continue;
            }
        };
        open.store(true, Relaxed);
        let mut buf = conn.take_buffered();
        let ended = loop {
            while let Some(at) = buf.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = buf.drain(..at + 2).collect();
                if let Some(seq) = probe_seq(&frame) {
                    let now = Instant::now();
                    let sent = in_flight.lock().ok().and_then(|mut m| m.remove(&seq));
                    if let (Some(sent), Ok(mut s)) = (sent, series.lock()) {
                        s.samples.push(Sample {
                            sent,
                            latency: now - sent,
                        });
                    }
                }
            }
            if let Err(e) = conn.fill() {
                break e;
            }
            buf.extend(conn.take_buffered());
        };
        record_error(
            series,
            stop,
            Instant::now(),
            format!("stream ended: {ended}"),
        );
        thread::sleep(RECONNECT_PAUSE);
    }
}

/// The seq of a probe post carried by an SSE frame (`data: {..."text":"d<seq>"...}`).
fn probe_seq(frame: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(frame).ok()?;
    let data = text.lines().find_map(|l| l.strip_prefix("data: "))?;
    let message: serde_json::Value = serde_json::from_str(data).ok()?;
    if message["from"] != "probe" {
        return None;
    }
    message["text"].as_str()?.strip_prefix('d')?.parse().ok()
}

fn record(series: &Mutex<Series>, sent: Instant) {
    let latency = sent.elapsed();
    if let Ok(mut s) = series.lock() {
        s.samples.push(Sample { sent, latency });
    }
}

/// Counts a failure, unless it is only the probe being stopped.
fn record_error(series: &Mutex<Series>, stop: &AtomicBool, at: Instant, what: String) {
    if stop.load(Relaxed) {
        return;
    }
    if let Ok(mut s) = series.lock() {
        s.error(at, what);
    }
}
