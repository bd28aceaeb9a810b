//! The well-behaved readers: long-pollers looping `GET /rooms/soak/messages?since=<next>`
//! and SSE readers on `GET /rooms/soak/events` that reconnect like an `EventSource`. Each
//! records every message it sees, for the checks.

use crate::http::{self, parse_id, HttpConn};
use crate::state::{Errors, Shared};
use crate::{LONG_POLLERS, RECONNECT_PAUSE, ROOM};
use serde_json::Value;
use std::io::{self, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Longest an SSE reader honours the server's `retry:` before reconnecting.
const SSE_RETRY_CAP: Duration = Duration::from_secs(2);

/// What one long-poller or SSE reader saw.
pub struct ReaderReport {
    pub name: String,
    /// Every message, in arrival order: `(epoch, seq, text)`.
    pub seen: Vec<(String, u64, String)>,
    /// Answers or frames that said messages were lost.
    pub gaps: u64,
    /// Connections it had to make again after the first.
    pub reconnects: u64,
    /// Why connections ended or could not be made: reported, not failed on, since
    /// reconnecting and resuming is the protocol's own recovery (and a lost message still
    /// fails the check).
    pub disconnects: Errors,
    /// Answers that break the protocol: these fail the check.
    pub errors: Errors,
}

impl ReaderReport {
    pub fn new(name: String) -> ReaderReport {
        ReaderReport {
            name,
            seen: Vec::new(),
            gaps: 0,
            reconnects: 0,
            disconnects: Errors::default(),
            errors: Errors::default(),
        }
    }

    pub fn record(&mut self, shared: &Shared, slot: usize, id: &str, text: String) {
        match parse_id(id) {
            Some((epoch, seq)) => {
                shared.progress[slot].fetch_max(seq, Relaxed);
                self.seen.push((epoch, seq, text));
            }
            None => self.errors.push(format!("malformed id {id:?}")),
        }
    }
}

impl Default for ReaderReport {
    fn default() -> ReaderReport {
        // A panicked reader: one error, so it fails its check rather than passing empty.
        let mut report = ReaderReport::new("a reader that panicked".to_owned());
        report.errors.push("panicked".to_owned());
        report
    }
}

/// Loops `GET /rooms/soak/messages?since=<next>` on one keep-alive connection, as the
/// protocol's four-line client loop does, until told to stop.
pub fn long_poller(shared: Arc<Shared>, slot: usize) -> ReaderReport {
    let mut report = ReaderReport::new(format!("long-poller {slot}"));
    let mut next: Option<String> = None;
    let mut conn: Option<HttpConn> = None;
    let mut connected_once = false;
    while !shared.stop_readers.load(Relaxed) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match http::connect(shared.addr) {
                Ok(c) => {
                    shared.register(slot, &c.stream);
                    report.reconnects += u64::from(connected_once);
                    connected_once = true;
                    conn.insert(c)
                }
                Err(e) => {
                    report.disconnects.push(format!("connect: {e}"));
                    thread::sleep(RECONNECT_PAUSE);
                    continue;
                }
            },
        };
        let since = next
            .as_ref()
            .map(|n| format!("?since={n}"))
            .unwrap_or_default();
        let request = format!("GET /rooms/{ROOM}/messages{since} HTTP/1.1\r\nHost: soak\r\n\r\n");
        match c.request(request.as_bytes()) {
            Ok((200, body)) => match serde_json::from_slice::<Value>(&body) {
                Ok(answer) => {
                    for message in answer["messages"].as_array().into_iter().flatten() {
                        let id = message["id"].as_str().unwrap_or_default();
                        let text = message["text"].as_str().unwrap_or_default().to_owned();
                        report.record(&shared, slot, id, text);
                    }
                    if answer["gap"].as_bool() != Some(false) {
                        report.gaps += 1;
                    }
                    match answer["next"].as_str() {
                        Some(n) => next = Some(n.to_owned()),
                        None => report.errors.push("an answer without next".into()),
                    }
                }
                Err(e) => report.errors.push(format!("bad JSON: {e}")),
            },
            Ok((status, body)) => {
                let body = String::from_utf8_lossy(&body);
                report.errors.push(format!("status {status}: {body}"));
                thread::sleep(RECONNECT_PAUSE);
            }
            Err(e) => {
                if shared.stop_readers.load(Relaxed) {
                    break;
                }
                report.disconnects.push(format!("poll: {e}"));
                conn = None;
                thread::sleep(RECONNECT_PAUSE);
            }
        }
    }
    report
}

/// Reads `GET /rooms/soak/events` frame by frame, and on any disconnect reconnects the way
/// an `EventSource` does: after the server's `retry:` delay, with `Last-Event-ID`.
pub fn sse_reader(shared: Arc<Shared>, slot: usize) -> ReaderReport {
    let mut report = ReaderReport::new(format!("SSE reader {}", slot - LONG_POLLERS));
    let mut last_id: Option<String> = None;
    let mut retry = SSE_RETRY_CAP;
    let mut first = true;
    while !shared.stop_readers.load(Relaxed) {
        if !first {
            report.reconnects += 1;
            thread::sleep(retry);
        }
        first = false;
        let mut conn = match http::connect(shared.addr) {
            Ok(c) => c,
            Err(e) => {
                report.disconnects.push(format!("connect: {e}"));
                continue;
            }
        };
        shared.register(slot, &conn.stream);
        let resume = last_id
            .as_ref()
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /rooms/{ROOM}/events HTTP/1.1\r\nHost: soak\r\nAccept: text/event-stream\r\n\
             {resume}\r\n"
        );
        if let Err(e) = conn.stream.write_all(request.as_bytes()) {
            report.disconnects.push(format!("send: {e}"));
            continue;
        }
        if let Err(e) = conn.read_stream_head() {
            if e.kind() == io::ErrorKind::InvalidData {
                report.errors.push(format!("stream head: {e}"));
            } else if !shared.stop_readers.load(Relaxed) {
                report.disconnects.push(format!("stream head: {e}"));
            }
            continue;
        }
        // Frames until the stream ends; what ends it decides whether it was an error.
        let ended = loop {
            while let Some(at) = conn.buf.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = conn.buf.drain(..at + 2).collect();
                let frame = String::from_utf8_lossy(&frame).into_owned();
                handle_frame(&shared, slot, &frame, &mut report, &mut last_id, &mut retry);
            }
            if let Err(e) = conn.fill() {
                break e;
            }
        };
        if !shared.stop_readers.load(Relaxed) {
            report.disconnects.push(format!("stream ended: {ended}"));
        }
    }
    report
}

/// One SSE frame: `id:`, `event:`, `data:` and `retry:` fields, or a comment (heartbeat).
fn handle_frame(
    shared: &Shared,
    slot: usize,
    frame: &str,
    report: &mut ReaderReport,
    last_id: &mut Option<String>,
    retry: &mut Duration,
) {
    let (mut id, mut event, mut data) = (None, "message", String::new());
    for line in frame.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value.to_owned()),
            "event" => event = value,
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            "retry" => {
                if let Ok(ms) = value.parse::<u64>() {
                    *retry = Duration::from_millis(ms).min(SSE_RETRY_CAP);
                }
            }
            _ => {} // a comment (`: keep-alive`) or an empty line
        }
    }
    match event {
        "message" if !data.is_empty() => {
            let message: Value = match serde_json::from_str(&data) {
                Ok(v) => v,
                Err(e) => return report.errors.push(format!("bad JSON in a frame: {e}")),
            };
            let data_id = message["id"].as_str().unwrap_or_default();
            if id.as_deref() != Some(data_id) {
                report.errors.push(format!(
                    "frame id {id:?} differs from its data's {data_id:?}"
                ));
            }
            let text = message["text"].as_str().unwrap_or_default().to_owned();
            report.record(shared, slot, data_id, text);
            *last_id = Some(data_id.to_owned());
        }
        "gap" => report.gaps += 1,
        "message" => {} // `retry:` alone, or a comment
        other => report.errors.push(format!("unexpected event {other:?}")),
    }
}
