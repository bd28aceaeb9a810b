//! The posters: a steady rate of messages, each with a unique `client_id`, one in
//! [`RETRY_ONE_IN`] sent again at once, and a re-send with the same `client_id` after a
//! connection fails.

use crate::http::{self, form_encode, parse_id, HttpConn};
use crate::state::{Errors, Shared};
use crate::{POSTERS, POSTS_PER_SEC, RECONNECT_PAUSE, ROOM};
use serde_json::Value;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// One post in this many is sent a second time with the same `client_id`.
const RETRY_ONE_IN: u64 = 20;

/// Attempts per post when the connection fails; the retry keeps its `client_id`, which is
/// what makes it safe.
const POST_ATTEMPTS: usize = 3;

/// What one poster did.
#[derive(Default)]
pub struct PosterReport {
    /// Every message stored: `(epoch, seq, text)`.
    pub posted: Vec<(String, u64, String)>,
    /// Deliberate retries sent, and those answered 200 with the original id.
    pub dup_sent: u64,
    pub dup_ok: u64,
    /// Posts sent again after a connection failed (same `client_id`).
    pub network_retries: u64,
    /// Posts whose fate is unknown: every attempt failed.
    pub unresolved: u64,
    /// Why attempts failed (the post was then re-sent): reported, not failed on.
    pub disconnects: Errors,
    /// Answers that are wrong: these fail the check.
    pub errors: Errors,
}

/// The text of poster `idx`'s `k`th message: unique, of varying length, with characters
/// that must survive form decoding, JSON escaping and both transports (non-ASCII, `+`,
/// `&`, `%`, quotes, and now and then a newline).
fn message_text(idx: usize, k: u64) -> String {
    let pad = "x".repeat((k % 40) as usize);
    let newline = if k.is_multiple_of(9) {
        "\nsecond line"
    } else {
        ""
    };
    format!("soak {idx}/{k}: héllo wörld ✓ 1+1=2 & 100% \"q\" {pad}{newline}")
}

/// Posts at a steady rate with a unique `client_id` each, re-sending one in
/// [`RETRY_ONE_IN`] at once to check it is recognised as a duplicate.
pub fn poster(shared: Arc<Shared>, idx: usize) -> PosterReport {
    let mut report = PosterReport::default();
    let interval = Duration::from_secs_f64(POSTERS as f64 / POSTS_PER_SEC);
    // Staggered, so the posters' messages interleave instead of arriving in bursts of four.
    let start = Instant::now() + interval.mul_f64(idx as f64 / POSTERS as f64);
    let mut conn: Option<HttpConn> = None;
    let from = format!("poster{idx}");
    for k in 0u64.. {
        let due = start + interval.mul_f64(k as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        if shared.stop_load.load(Relaxed) {
            break;
        }
        let client_id = format!("soak-{idx}-{k}");
        let text = message_text(idx, k);
        let body = form_encode(&[("from", &from), ("text", &text), ("client_id", &client_id)]);
        let request = format!(
            "POST /rooms/{ROOM}/messages HTTP/1.1\r\nHost: soak\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, answer, retried) = match post(&shared, &mut conn, &request, &mut report) {
            Some(result) => result,
            None => {
                report.unresolved += 1;
                report
                    .errors
                    .push(format!("{client_id}: every attempt failed"));
                continue;
            }
        };
        let id = answer["id"].as_str().unwrap_or_default().to_owned();
        let duplicate = answer["duplicate"].as_bool() == Some(true);
        // 201 is a new message; after a failed attempt, 200 duplicate means the failed
        // attempt had stored it. Anything else is wrong.
        let stored = (status == 201 && !duplicate) || (retried && status == 200 && duplicate);
        let Some((epoch, seq)) = parse_id(&id).filter(|_| stored) else {
            report
                .errors
                .push(format!("{client_id}: answered {status} {answer}"));
            continue;
        };
        shared.note_posted(seq, &id);
        report.posted.push((epoch, seq, text));
        if k % RETRY_ONE_IN == RETRY_ONE_IN - 1 {
            report.dup_sent += 1;
            match post(&shared, &mut conn, &request, &mut report) {
                Some((200, again, _))
                    if again["id"].as_str() == Some(id.as_str())
                        && again["duplicate"].as_bool() == Some(true) =>
                {
                    report.dup_ok += 1
                }
                Some((status, again, _)) => report.errors.push(format!(
                    "{client_id} retried: answered {status} {again}, original {id}"
                )),
                None => report
                    .errors
                    .push(format!("{client_id} retried: no answer")),
            }
        }
    }
    report
}

/// Sends one post, reconnecting and re-sending (same bytes, same `client_id`) when the
/// connection fails. Returns status, JSON answer, and whether a re-send was needed.
pub fn post(
    shared: &Shared,
    conn: &mut Option<HttpConn>,
    request: &str,
    report: &mut PosterReport,
) -> Option<(u16, Value, bool)> {
    for attempt in 0..POST_ATTEMPTS {
        if attempt > 0 {
            report.network_retries += 1;
            thread::sleep(RECONNECT_PAUSE);
        }
        if conn.is_none() {
            match http::connect(shared.addr) {
                Ok(c) => *conn = Some(c),
                Err(e) => {
                    report.disconnects.push(format!("connect: {e}"));
                    continue;
                }
            }
        }
        let c = conn.as_mut()?;
        match c.request(request.as_bytes()) {
            Ok((status, body)) => {
                let answer = serde_json::from_slice(&body).unwrap_or(Value::Null);
                return Some((status, answer, attempt > 0));
            }
            Err(e) => {
                report.disconnects.push(format!("post: {e}"));
                *conn = None;
            }
        }
    }
    None
}
