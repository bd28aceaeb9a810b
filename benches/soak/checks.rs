//! Phase 4: the verdicts. One row per check, PASS or FAIL, each with the figures behind
//! it.

use crate::churn::SLOWLORIS_GIVE_UP;
use crate::drive::Outcome;
use crate::readers::ReaderReport;
use crate::{mib, HISTORY_KEPT, LONG_POLLERS};
use std::collections::BTreeMap;

/// RSS may end this far above its baseline without counting as growth: the allocator keeps
/// some freed pages rather than returning them, so "exactly back" is not a fair demand.
const RSS_SLACK_BYTES: u64 = 2 * 1024 * 1024;

/// What one stored message costs the server beyond its encoded JSON and `client_id`: the
/// history slot, the `client_id` index entry, allocator headers, and each table's
/// power-of-two growth. An estimate on the generous side; see [`rss_allowance`].
const HISTORY_OVERHEAD_BYTES_PER_MESSAGE: u64 = 160;

/// One row of the final table.
pub struct Check {
    pub name: String,
    pub pass: bool,
    pub detail: String,
}

pub fn check(checks: &mut Vec<Check>, name: &str, pass: bool, detail: String) {
    checks.push(Check {
        name: name.to_owned(),
        pass,
        detail,
    });
}

/// The RSS the server may end at: its baseline, plus what the last [`HISTORY_KEPT`] posted
/// messages occupy in the history by design, plus
/// [`RSS_SLACK_BYTES`] for pages the allocator keeps. The history part is the encoded
/// JSON the server keeps per message (`{"id":…,"from":…,"text":…,"time":…}`, text
/// JSON-escaped), its `client_id` twice (history and index), and a per-message overhead.
/// Measured once on the release server: 9,000 of these posts and no other traffic grew a
/// fresh server's RSS by 3.0 MB, 335 bytes a message; this estimate gives about 334.
pub fn rss_allowance(baseline: u64, posted: &[(String, u64, String)]) -> (u64, u64) {
    let kept = posted.len().saturating_sub(HISTORY_KEPT);
    let history: u64 = posted[kept..]
        .iter()
        .map(|(epoch, seq, text)| {
            let escaped = serde_json::to_string(text).map_or(text.len(), |s| s.len());
            // {"id":"<epoch>-<seq>","from":"posterN","text":<escaped>,"time":<13 digits>}
            let json = 40 + epoch.len() + 1 + seq.to_string().len() + 7 + escaped + 13;
            let client_id = 2 * "soak-0-00000".len();
            (json + client_id) as u64 + HISTORY_OVERHEAD_BYTES_PER_MESSAGE
        })
        .sum();
    (history, baseline + history + RSS_SLACK_BYTES)
}

/// Whether `report` saw exactly `posted` (seq → text), once each, in increasing order, in
/// `epoch`. `Err` says how it did not.
fn verify_reader(
    report: &ReaderReport,
    epoch: &str,
    posted: &BTreeMap<u64, &str>,
) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut last = 0;
    let mut out_of_order = 0;
    let mut wrong_text = 0;
    let mut wrong_epoch = 0;
    let mut seen = BTreeMap::new();
    for (e, seq, text) in &report.seen {
        if e != epoch {
            wrong_epoch += 1;
        }
        if *seq <= last {
            out_of_order += 1;
        }
        last = last.max(*seq);
        *seen.entry(*seq).or_insert(0u64) += 1;
        if posted.get(seq).is_some_and(|t| t != text) {
            wrong_text += 1;
        }
    }
    let repeated = seen.values().filter(|&&n| n > 1).count();
    let missing: Vec<u64> = posted
        .keys()
        .filter(|seq| !seen.contains_key(seq))
        .copied()
        .collect();
    let unknown = seen.keys().filter(|seq| !posted.contains_key(seq)).count();
    for (n, what) in [
        (out_of_order, "out of order"),
        (repeated, "seen twice"),
        (missing.len(), "missing"),
        (unknown, "never posted"),
        (wrong_text, "with the wrong text"),
        (wrong_epoch, "in another epoch"),
    ] {
        if n > 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    if let Some(first) = missing.first() {
        problems.push(format!("first missing seq {first}"));
    }
    if report.gaps > 0 {
        problems.push(format!("{} gaps", report.gaps));
    }
    if report.errors.count > 0 {
        problems.push(format!(
            "{} protocol errors, first: {}",
            report.errors.count,
            report.errors.kept.first().map_or("", String::as_str)
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {}", report.name, problems.join(", ")))
    }
}

/// A row for one group of readers: all must verify.
fn reader_check(
    checks: &mut Vec<Check>,
    name: &str,
    reports: &[ReaderReport],
    epoch: &str,
    posted: &BTreeMap<u64, &str>,
) {
    let failures: Vec<String> = reports
        .iter()
        .filter_map(|r| verify_reader(r, epoch, posted).err())
        .collect();
    let reconnects: u64 = reports.iter().map(|r| r.reconnects).sum();
    let disconnects: u64 = reports.iter().map(|r| r.disconnects.count).sum();
    let first_disconnect = reports
        .iter()
        .find_map(|r| r.disconnects.kept.first())
        .map(|why| format!(", first: {why}"))
        .unwrap_or_default();
    let connections =
        format!("{reconnects} reconnects, {disconnects} disconnects{first_disconnect}");
    let detail = if failures.is_empty() {
        format!(
            "{}/{} saw all {} once, in order, texts intact ({connections})",
            reports.len(),
            reports.len(),
            posted.len()
        )
    } else {
        // The first few are enough to start from; the rest usually say the same.
        let shown: Vec<&str> = failures.iter().take(3).map(String::as_str).collect();
        format!(
            "{} of {} failed: {}{} ({connections})",
            failures.len(),
            reports.len(),
            shown.join("; "),
            if failures.len() > shown.len() {
                "; …"
            } else {
                ""
            }
        )
    };
    check(
        checks,
        name,
        failures.is_empty() && !posted.is_empty(),
        detail,
    );
}

/// Phase 4: one row per check.
pub fn judge(o: &Outcome, pid: u32) -> Vec<Check> {
    let (baseline, after, churn) = (&o.baseline, &o.after, &o.churn);
    let mut checks = Vec::new();
    check(
        &mut checks,
        "connections back to baseline",
        after.connections == baseline.connections,
        format!(
            "baseline {}, after {}",
            baseline.connections, after.connections
        ),
    );
    check(
        &mut checks,
        "pending_polls 0",
        after.pending_polls == 0,
        format!("after {}", after.pending_polls),
    );
    check(
        &mut checks,
        "streams 0",
        after.streams == 0,
        format!("after {}", after.streams),
    );
    let (history_bytes, rss_limit) = rss_allowance(baseline.rss_bytes, &o.posted);
    check(
        &mut checks,
        "RSS back near baseline",
        after.rss_bytes > 0 && after.rss_bytes <= rss_limit,
        format!(
            "baseline {}, after {}, peak seen {}; allowed {} = baseline + {} history of {} \
             messages (kept by design) + {} the allocator may keep; baseline + {} alone: {}",
            mib(baseline.rss_bytes),
            mib(after.rss_bytes),
            mib(o.rss_peak),
            mib(rss_limit),
            mib(history_bytes),
            o.posted.len().min(HISTORY_KEPT),
            mib(RSS_SLACK_BYTES),
            mib(RSS_SLACK_BYTES),
            if after.rss_bytes <= baseline.rss_bytes + RSS_SLACK_BYTES {
                "within"
            } else {
                "over"
            }
        ),
    );
    let epoch = o
        .posted
        .first()
        .map(|(e, _, _)| e.clone())
        .unwrap_or_default();
    let texts: BTreeMap<u64, &str> = o
        .posted
        .iter()
        .map(|(_, seq, text)| (*seq, text.as_str()))
        .collect();
    let last_seq = texts.keys().next_back().copied().unwrap_or(0);
    let post_errors: u64 = o.posters.iter().map(|p| p.errors.count).sum();
    let first_post_error = o
        .posters
        .iter()
        .find_map(|p| p.errors.kept.first().cloned());
    let network_retries: u64 = o.posters.iter().map(|p| p.network_retries).sum();
    let unresolved: u64 = o.posters.iter().map(|p| p.unresolved).sum();
    check(
        &mut checks,
        "every post stored once",
        post_errors == 0
            && unresolved == 0
            && !texts.is_empty()
            && texts.len() == o.posted.len()
            && after.messages == o.posted.len() as u64,
        format!(
            "{} answered 201 with distinct ids (last seq {last_seq}); server counted {} \
             messages; {network_retries} network re-sends{}; {unresolved} unresolved; \
             {post_errors} wrong answers{}",
            o.posted.len(),
            after.messages,
            o.posters
                .iter()
                .find_map(|p| p.disconnects.kept.first())
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
            first_post_error
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default()
        ),
    );
    let (polls, streams) = o.readers.split_at(LONG_POLLERS.min(o.readers.len()));
    reader_check(
        &mut checks,
        "long-pollers: every id once, in order",
        polls,
        &epoch,
        &texts,
    );
    reader_check(
        &mut checks,
        "SSE readers: every id once, in order",
        streams,
        &epoch,
        &texts,
    );
    let dup_sent: u64 = o.posters.iter().map(|p| p.dup_sent).sum();
    let dup_ok: u64 = o.posters.iter().map(|p| p.dup_ok).sum();
    check(
        &mut checks,
        "retries answered 200, original id",
        dup_sent > 0 && dup_ok == dup_sent,
        format!("{dup_ok} of {dup_sent} retries"),
    );
    check(
        &mut checks,
        "slowloris answered 408",
        churn.slowloris_408 > 0
            && churn.slowloris_no_408.count == 0
            && churn.slowloris_gave_up == 0,
        format!(
            "{} got 408; {} closed without it{}; {} not closed within {} s",
            churn.slowloris_408,
            churn.slowloris_no_408.count,
            churn
                .slowloris_no_408
                .kept
                .first()
                .map(|e| format!(" (first: {e:?})"))
                .unwrap_or_default(),
            churn.slowloris_gave_up,
            SLOWLORIS_GIVE_UP.as_secs()
        ),
    );
    check(
        &mut checks,
        "server still alive",
        o.died.is_none(),
        match o.died {
            Some(status) => format!("exited: {status}"),
            None => format!("pid {pid} running"),
        },
    );
    check(
        &mut checks,
        "churn reaped: request_timeout > 0",
        after.drop_request_timeout > 0,
        format!("drops: {}", after.drops()),
    );
    check(
        &mut checks,
        "churn reaped: idle > 0",
        after.drop_idle > 0,
        format!(
            "{} idle clients closed by the server, {} still open at their 3.5-5 s hold",
            churn.idle_reaped, churn.idle_not_reaped
        ),
    );
    checks
}
