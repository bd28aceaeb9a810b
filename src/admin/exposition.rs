//! `/metrics`: everything `/stats` says and what the loop records about itself, in the
//! Prometheus text exposition format 0.0.4. Spelled here and nowhere else.
//!
//! Names follow Prometheus's conventions: the `comet_chat_` prefix, `_total` on counters,
//! base units (`_seconds`, `_bytes`), a `# HELP` and a `# TYPE` line per family, and labels
//! for what would otherwise be a family per value (`state`, `reason`, `kind`).

use crate::metrics::{Histogram, LoopMetrics, BUCKET_BOUNDS_MICROS};
use crate::stats::{self, Stats};
use crate::timer::Totals;
use std::fmt::Write as _;

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Connections by state, counted when the metrics are asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct States {
    /// Reading a request, or idle between requests.
    pub reading: u64,
    /// A long poll waiting for a message.
    pub parked: u64,
    /// An open event stream.
    pub streaming: u64,
    /// A response being written.
    pub writing: u64,
    /// Being hung up on, draining what the client still sends.
    pub lingering: u64,
    /// Waiting for Redis's answer (`--redis`).
    pub awaiting: u64,
}

/// What one scrape reports.
pub struct Snapshot<'a> {
    /// The counters `/stats` shows.
    pub stats: &'a Stats,
    /// What the loop records about itself.
    pub metrics: &'a LoopMetrics,
    /// Deadlines set, due and cleared; entries the timer wheel has filed in all; and how
    /// many entries it holds now.
    pub timers: (Totals, u64, usize),
    /// Connections by state.
    pub states: States,
    /// Resident memory of the process.
    pub rss_bytes: u64,
    /// `--workers`: which worker this is.
    pub worker: Option<usize>,
    /// `--redis` is on: report its state too.
    pub redis: bool,
}

/// A label value as the exposition format spells it: `\`, `"` and a line break escaped.
/// Only the Redis address needs it (a `unix://` path is the operator's text).
fn escaped(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes families of samples, each with its HELP and TYPE lines.
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                let comma = if i > 0 { "," } else { "" };
                // Label values here are our own words (states, reasons, numbers) or
                // escaped (`escaped`); nothing a client sent ever becomes one.
                let _ = write!(self.0, "{comma}{label}=\"{text}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn labelled(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        values: &[(&str, u64)],
    ) {
        self.family(name, kind, help);
        for (text, value) in values {
            self.sample(name, &[(label, text)], value);
        }
    }

    fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, count) in BUCKET_BOUNDS_MICROS.iter().zip(&histogram.counts) {
            cumulative += count;
            let le = (*bound as f64 / 1e6).to_string();
            self.sample(&bucket, &[("le", &le)], cumulative);
        }
        self.sample(&bucket, &[("le", "+Inf")], histogram.count());
        let sum = histogram.sum_micros as f64 / 1e6;
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], histogram.count());
    }
}

/// The whole exposition.
pub fn render(snapshot: &Snapshot) -> String {
    let s = snapshot.stats;
    let get = stats::get;
    let m = snapshot.metrics;
    let mut text = Text(String::with_capacity(8192));
    let worker = snapshot.worker.map_or(String::new(), |w| w.to_string());
    text.family(
        "comet_chat_info",
        "gauge",
        "Always 1; the labels say which process this is.",
    );
    let version = env!("CARGO_PKG_VERSION");
    text.sample(
        "comet_chat_info",
        &[("version", version), ("worker", &worker)],
        1,
    );

    // What /stats says.
    let st = snapshot.states;
    text.labelled(
        "comet_chat_connections",
        "gauge",
        "Client connections open, by state.",
        "state",
        &[
            ("reading", st.reading),
            ("parked", st.parked),
            ("streaming", st.streaming),
            ("writing", st.writing),
            ("lingering", st.lingering),
            ("awaiting", st.awaiting),
        ],
    );
    text.one(
        "comet_chat_connections_accepted_total",
        "counter",
        "Client connections accepted.",
        get(&s.accepted),
    );
    text.one(
        "comet_chat_waiting_polls",
        "gauge",
        "Long polls waiting for a message.",
        get(&s.pending_polls),
    );
    text.one(
        "comet_chat_streams",
        "gauge",
        "Event streams open.",
        get(&s.streams),
    );
    text.labelled(
        "comet_chat_transport_clients",
        "gauge",
        "Clients waiting for what comes next, by transport: long polls parked, event \
         streams and WebSockets open.",
        "transport",
        &[
            ("poll", get(&s.pending_polls)),
            ("sse", get(&s.streams)),
            ("ws", get(&s.sockets)),
        ],
    );
    text.labelled(
        "comet_chat_transport_deliveries_total",
        "counter",
        "Messages written to waiting clients, by transport.",
        "transport",
        &[
            ("poll", get(&s.deliveries_poll)),
            ("sse", get(&s.deliveries_sse)),
            ("ws", get(&s.deliveries_ws)),
        ],
    );
    text.one(
        "comet_chat_rooms",
        "gauge",
        "Chat rooms in memory.",
        get(&s.rooms),
    );
    text.one(
        "comet_chat_requests_total",
        "counter",
        "Complete requests parsed.",
        get(&s.requests),
    );
    text.one(
        "comet_chat_messages_total",
        "counter",
        "Messages posted (with --redis: delivered here).",
        get(&s.messages),
    );
    text.one(
        "comet_chat_deliveries_total",
        "counter",
        "Waiting polls and streams a message was written to.",
        get(&s.deliveries),
    );
    text.one(
        "comet_chat_poll_timeouts_total",
        "counter",
        "Long polls answered with the timeout.",
        get(&s.timeouts),
    );
    text.one(
        "comet_chat_rooms_given_way_total",
        "counter",
        "Rooms that gave their place to a new one at the --max-rooms cap.",
        get(&s.rooms_given_way),
    );
    text.one(
        "comet_chat_room_histories_dropped_total",
        "counter",
        "Without Redis: rooms that gave way holding messages, which went with them.",
        get(&s.dropped_room_history),
    );
    text.labelled(
        "comet_chat_drops_total",
        "counter",
        "Connections dropped or refused, by reason.",
        "reason",
        &[
            ("slow", get(&s.dropped_slow)),
            ("idle", get(&s.dropped_idle)),
            ("request_timeout", get(&s.dropped_request_timeout)),
            ("over_cap", get(&s.refused_over_cap)),
            ("emfile", get(&s.refused_emfile)),
            ("per_client", get(&s.refused_per_client)),
        ],
    );
    text.labelled(
        "comet_chat_refusals_total",
        "counter",
        "Requests refused by a limit or for their token, by reason.",
        "reason",
        &[
            ("post_rate", get(&s.posts_refused)),
            ("typing_rate", get(&s.typing_refused)),
            ("unauthorized", get(&s.unauthorized)),
            ("forbidden", get(&s.forbidden)),
        ],
    );
    text.one(
        "comet_chat_streams_expired_total",
        "counter",
        "Event streams ended with their token.",
        get(&s.streams_expired),
    );
    text.one(
        "comet_chat_limiter_entries",
        "gauge",
        "Rate-limit buckets held.",
        get(&s.limiter_entries),
    );
    text.one(
        "comet_chat_client_addresses",
        "gauge",
        "Client addresses holding a connection or a name.",
        get(&s.client_addresses),
    );
    text.one(
        "comet_chat_open_files_limit",
        "gauge",
        "The soft open-files limit the process runs under.",
        get(&s.open_files_limit),
    );
    text.one(
        "comet_chat_max_connections",
        "gauge",
        "The connection cap in force.",
        get(&s.max_conns),
    );
    text.one(
        "comet_chat_resident_memory_bytes",
        "gauge",
        "Resident memory of the process.",
        snapshot.rss_bytes,
    );
    if snapshot.redis {
        text.one(
            "comet_chat_redis_connected",
            "gauge",
            "1 while both connections to Redis are up (to every shard's, with several).",
            get(&s.redis_connected),
        );
        let shards = s
            .redis_shards
            .lock()
            .map_or_else(|_| Vec::new(), |shards| shards.clone());
        text.one(
            "comet_chat_redis_shards",
            "gauge",
            "Redis shards this node spreads rooms over (--redis given).",
            shards.len() as u64,
        );
        text.one(
            "comet_chat_redis_shards_up",
            "gauge",
            "Redis shards whose connections are up; rooms on the others answer 503.",
            get(&s.redis_shards_up),
        );
        text.one(
            "comet_chat_redis_reconnects_total",
            "counter",
            "Times the connection to Redis was made again.",
            get(&s.redis_reconnects),
        );
        text.family(
            "comet_chat_redis_master",
            "gauge",
            "The Redis in use (with Sentinel, the master it named), by address, one per \
             shard reached so far; 1.",
        );
        // A shard never reached has no master yet: no sample, rather than one with an
        // empty address (the same series again for every other such shard).
        for shard in shards.iter().filter(|shard| !shard.master.is_empty()) {
            let address = escaped(&shard.master);
            text.sample("comet_chat_redis_master", &[("address", &address)], 1);
        }
        text.one(
            "comet_chat_redis_failovers_total",
            "counter",
            "Times the connection to Redis came up at another master than the last one.",
            get(&s.redis_failovers),
        );
        text.one(
            "comet_chat_redis_in_flight",
            "gauge",
            "Commands sent to Redis and not yet answered.",
            get(&s.redis_in_flight),
        );
        text.one(
            "comet_chat_redis_catch_ups_total",
            "counter",
            "Times a room read from Redis what it had missed.",
            get(&s.redis_catch_ups),
        );
    }

    // The loop itself.
    text.one(
        "comet_chat_loop_passes_total",
        "counter",
        "Passes of the event loop.",
        m.passes,
    );
    text.one(
        "comet_chat_loop_events_total",
        "counter",
        "Readiness events the loop handled.",
        m.events,
    );
    let calls = m.syscalls;
    text.labelled(
        "comet_chat_syscalls_total",
        "counter",
        "System calls on the client path, by kind.",
        "kind",
        &[
            ("accept", calls.accept),
            ("read", calls.read),
            ("write", calls.write),
            ("epoll_wait", calls.epoll_wait),
        ],
    );
    text.one(
        "comet_chat_received_bytes_total",
        "counter",
        "Bytes read from clients.",
        m.bytes_in,
    );
    text.one(
        "comet_chat_sent_bytes_total",
        "counter",
        "Bytes written to clients.",
        get(&s.bytes_out),
    );
    let (totals, filed, armed_now) = snapshot.timers;
    text.one(
        "comet_chat_timers",
        "gauge",
        "Entries on the timer wheel: at most one per connection, plus the server's own.",
        armed_now as u64,
    );
    text.one(
        "comet_chat_timer_entries_filed_total",
        "counter",
        "Entries filed on the timer wheel. A connection's new deadline reuses its entry \
         unless it is sooner, so a delivery and a re-park file none.",
        filed,
    );
    text.one(
        "comet_chat_timers_armed_total",
        "counter",
        "Deadlines set (a connection's and the server's own); most reuse a wheel entry.",
        totals.armed,
    );
    text.one(
        "comet_chat_timers_fired_total",
        "counter",
        "Deadlines that came due.",
        totals.fired,
    );
    text.one(
        "comet_chat_timers_cancelled_total",
        "counter",
        "Deadlines cleared or replaced before they were due.",
        totals.cancelled,
    );
    text.histogram(
        "comet_chat_loop_pass_duration_seconds",
        "How long one pass of the loop took, from epoll_wait returning to the next.",
        &m.pass_seconds,
    );
    text.histogram(
        "comet_chat_fanout_duration_seconds",
        "From the start of a message's delivery to its last waiting client's write.",
        &m.fanout_seconds,
    );
    text.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn families_have_help_and_type_and_histograms_are_cumulative() {
        let stats = Stats::default();
        stats::add(&stats.accepted, 7);
        let mut metrics = LoopMetrics::default();
        metrics.pass_done(3, Duration::from_micros(40));
        metrics.pass_done(1, Duration::from_millis(3));
        let text = render(&Snapshot {
            stats: &stats,
            metrics: &metrics,
            timers: (Totals::default(), 0, 0),
            states: States {
                parked: 2,
                ..States::default()
            },
            rss_bytes: 1 << 20,
            worker: None,
            redis: false,
        });
        assert!(text.contains("# TYPE comet_chat_connections_accepted_total counter\ncomet_chat_connections_accepted_total 7\n"));
        assert!(text.contains("comet_chat_connections{state=\"parked\"} 2\n"));
        assert!(text.contains("comet_chat_loop_pass_duration_seconds_bucket{le=\"0.00005\"} 1\n"));
        assert!(text.contains("comet_chat_loop_pass_duration_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("comet_chat_loop_pass_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("comet_chat_loop_pass_duration_seconds_sum 0.00304\n"));
        assert!(
            !text.contains("comet_chat_redis"),
            "no Redis family without --redis"
        );
        // Every sample belongs to a family declared just before it.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_owned();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(&family), "{line} outside {family}");
            }
        }
    }

    #[test]
    fn a_shard_never_reached_names_no_master() {
        // Three shards, one reached: one master, not two more with an empty address (the
        // same series twice, which the format forbids, each saying a Redis is in use).
        let stats = Stats::default();
        let shard = |master: &str| crate::stats::RedisShard {
            url: "redis://somewhere".into(),
            connected: !master.is_empty(),
            master: master.to_owned(),
        };
        *stats.redis_shards.lock().unwrap() = vec![shard(""), shard("10.0.0.7:6380"), shard("")];
        let text = render(&Snapshot {
            stats: &stats,
            metrics: &LoopMetrics::default(),
            timers: (Totals::default(), 0, 0),
            states: States::default(),
            rss_bytes: 0,
            worker: None,
            redis: true,
        });
        let masters: Vec<&str> = (text.lines())
            .filter(|line| line.starts_with("comet_chat_redis_master"))
            .collect();
        assert_eq!(
            masters,
            ["comet_chat_redis_master{address=\"10.0.0.7:6380\"} 1"]
        );
        assert!(text.contains("comet_chat_redis_shards 3\n"));
    }

    #[test]
    fn the_redis_families_name_the_master_and_count_failovers() {
        let stats = Stats::default();
        stats::add(&stats.redis_failovers, 2);
        let metrics = LoopMetrics::default();
        for (master, label) in [
            ("10.0.0.7:6380", "10.0.0.7:6380"),
            // A unix:// path is the operator's text: escaped as the format says.
            ("/run/a \"b\"\\c", "/run/a \\\"b\\\"\\\\c"),
        ] {
            *stats.redis_shards.lock().unwrap() = vec![crate::stats::RedisShard {
                url: "redis://somewhere".into(),
                connected: true,
                master: master.to_owned(),
            }];
            let text = render(&Snapshot {
                stats: &stats,
                metrics: &metrics,
                timers: (Totals::default(), 0, 0),
                states: States::default(),
                rss_bytes: 0,
                worker: None,
                redis: true,
            });
            let sample = format!("comet_chat_redis_master{{address=\"{label}\"}} 1\n");
            assert!(text.contains(&sample), "{sample} in {text}");
            assert!(text.contains(
                "# TYPE comet_chat_redis_failovers_total counter\ncomet_chat_redis_failovers_total 2\n"
            ));
        }
    }
}
