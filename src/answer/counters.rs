//! The `/stats` body: every counter the loop keeps, in the order the README documents,
//! spelled here beside the rest of the answers (`crate::answer`), apart only because it is
//! long and changes with the counters, not with HTTP.

use super::{json, to_json};
use crate::http::Status;
use crate::stats::{self, Stats};
use serde::Serialize;

/// `/stats`: the server's counters, and its resident memory (read by the caller, since it
/// is a property of the process, not of the loop). Field names and order are documented in
/// the README; scripts and the benchmarks read them. A worker (`--workers`) names itself
/// first, since each connection may reach a different worker's counters; with `--redis`
/// a `redis` object comes last.
pub fn stats(
    stats: &Stats,
    rss_bytes: u64,
    worker: Option<usize>,
    redis: bool,
    head_only: bool,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Drops {
        slow: u64,
        idle: u64,
        request_timeout: u64,
        over_cap: u64,
        emfile: u64,
        room_history: u64,
    }
    #[derive(Serialize)]
    struct Limits {
        client_addresses: u64,
        limiter_entries: u64,
        posts_refused: u64,
        typing_refused: u64,
        connections_refused: u64,
        unauthorized: u64,
        forbidden: u64,
        streams_expired: u64,
    }
    #[derive(Serialize)]
    struct Redis {
        connected: bool,
        master: String,
        reconnects: u64,
        failovers: u64,
        in_flight: u64,
        catch_ups: u64,
        shards: Vec<Shard>,
    }
    #[derive(Serialize)]
    struct Shard {
        url: String,
        connected: bool,
        master: String,
    }
    #[derive(Serialize)]
    struct Transport {
        open: u64,
        deliveries: u64,
    }
    #[derive(Serialize)]
    struct Transports {
        poll: Transport,
        sse: Transport,
        ws: Transport,
    }
    #[derive(Serialize)]
    struct View {
        #[serde(skip_serializing_if = "Option::is_none")]
        worker: Option<usize>,
        connections: u64,
        accepted: u64,
        pending_polls: u64,
        requests: u64,
        messages: u64,
        deliveries: u64,
        timeouts: u64,
        bytes_out: u64,
        streams: u64,
        rooms: u64,
        rooms_given_way: u64,
        open_files_limit: u64,
        max_conns: u64,
        rss_bytes: u64,
        transports: Transports,
        drops: Drops,
        limits: Limits,
        #[serde(skip_serializing_if = "Option::is_none")]
        redis: Option<Redis>,
    }
    let get = stats::get;
    let view = View {
        worker,
        connections: get(&stats.connections),
        accepted: get(&stats.accepted),
        pending_polls: get(&stats.pending_polls),
        requests: get(&stats.requests),
        messages: get(&stats.messages),
        deliveries: get(&stats.deliveries),
        timeouts: get(&stats.timeouts),
        bytes_out: get(&stats.bytes_out),
        streams: get(&stats.streams),
        rooms: get(&stats.rooms),
        rooms_given_way: get(&stats.rooms_given_way),
        open_files_limit: get(&stats.open_files_limit),
        max_conns: get(&stats.max_conns),
        rss_bytes,
        transports: Transports {
            poll: Transport {
                open: get(&stats.pending_polls),
                deliveries: get(&stats.deliveries_poll),
            },
            sse: Transport {
                open: get(&stats.streams),
                deliveries: get(&stats.deliveries_sse),
            },
            ws: Transport {
                open: get(&stats.sockets),
                deliveries: get(&stats.deliveries_ws),
            },
        },
        drops: Drops {
            slow: get(&stats.dropped_slow),
            idle: get(&stats.dropped_idle),
            request_timeout: get(&stats.dropped_request_timeout),
            over_cap: get(&stats.refused_over_cap),
            emfile: get(&stats.refused_emfile),
            room_history: get(&stats.dropped_room_history),
        },
        limits: Limits {
            client_addresses: get(&stats.client_addresses),
            limiter_entries: get(&stats.limiter_entries),
            posts_refused: get(&stats.posts_refused),
            typing_refused: get(&stats.typing_refused),
            connections_refused: get(&stats.refused_per_client),
            unauthorized: get(&stats.unauthorized),
            forbidden: get(&stats.forbidden),
            streams_expired: get(&stats.streams_expired),
        },
        redis: redis.then(|| {
            let shards = stats
                .redis_shards
                .lock()
                .map_or_else(|_| Vec::new(), |shards| shards.clone());
            let masters: Vec<&str> = (shards.iter())
                .map(|s| s.master.as_str())
                .filter(|master| !master.is_empty())
                .collect();
            Redis {
                connected: get(&stats.redis_connected) == 1,
                master: masters.join(", "),
                reconnects: get(&stats.redis_reconnects),
                failovers: get(&stats.redis_failovers),
                in_flight: get(&stats.redis_in_flight),
                catch_ups: get(&stats.redis_catch_ups),
                shards: (shards.into_iter())
                    .map(|s| Shard {
                        url: s.url,
                        connected: s.connected,
                        master: s.master,
                    })
                    .collect(),
            }
        }),
    };
    json(Status::OK, &[], &to_json(&view), head_only)
}

// ----- the classic protocol ---------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn stats_lists_every_counter() {
        let counters = Stats::default();
        stats::add(&counters.connections, 3);
        stats::sub(&counters.connections, 1);
        stats::add(&counters.deliveries, 7);
        let out = text(&stats(&counters, 4096, None, false, false));
        let body = out.split("\r\n\r\n").nth(1).unwrap();
        assert!(body.starts_with("{\"connections\":2,"), "{body}");
        assert!(body.contains("\"deliveries\":7"));
        assert!(body.contains("\"rss_bytes\":4096,"));
        assert!(body.contains(
            "\"drops\":{\"slow\":0,\"idle\":0,\"request_timeout\":0,\"over_cap\":0,\"emfile\":0,\
             \"room_history\":0},"
        ));
        stats::add(&counters.posts_refused, 2);
        let out = text(&stats(&counters, 4096, None, false, false));
        assert!(
            out.ends_with(
                "\"limits\":{\"client_addresses\":0,\"limiter_entries\":0,\"posts_refused\":2,\
             \"typing_refused\":0,\"connections_refused\":0,\"unauthorized\":0,\"forbidden\":0,\
             \"streams_expired\":0}}"
            ),
            "{out}"
        );
        // Only a worker names itself, first.
        let out = text(&stats(&counters, 4096, Some(3), false, false));
        assert!(
            out.contains("\r\n\r\n{\"worker\":3,\"connections\":2,"),
            "{out}"
        );
    }
}
