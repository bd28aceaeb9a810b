//! Counters the loop keeps for `/stats`, for tests (through [`crate::ServerHandle`]) and for
//! the benchmark, which waits on them instead of sleeping and hoping.
//!
//! They are atomics only because a test or benchmark thread reads them while the loop runs;
//! the loop is their single writer, so every access is `Relaxed` and costs what a plain add
//! costs on x86.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters of one server.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections currently in the slab (accepted and not yet freed).
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Polls parked right now, waiting for a message or their timeout.
    pub pending_polls: AtomicU64,
    /// Complete requests parsed since start.
    pub requests: AtomicU64,
    /// Messages posted since start.
    pub messages: AtomicU64,
    /// Poll answers carrying a message, since start.
    pub deliveries: AtomicU64,
    /// Polls answered with the timeout, since start.
    pub timeouts: AtomicU64,
    /// Response bytes handed to the kernel since start.
    pub bytes_out: AtomicU64,
    /// Event streams open (SSE); 0 until streams exist.
    pub streams: AtomicU64,
    /// Chat rooms in memory.
    pub rooms: AtomicU64,
    /// Connections dropped because they did not take a response within the write timeout.
    pub dropped_slow: AtomicU64,
    /// Keep-alive connections closed after the idle timeout.
    pub dropped_idle: AtomicU64,
    /// Connections answered 408 for not finishing a request in time (slowloris).
    pub dropped_request_timeout: AtomicU64,
    /// Connections refused with 503 because `max_conns` were open.
    pub refused_over_cap: AtomicU64,
    /// Connections refused because the process ran out of descriptors (EMFILE/ENFILE).
    pub refused_emfile: AtomicU64,
    /// The soft open-files limit the process runs under (set once at start).
    pub open_files_limit: AtomicU64,
    /// The connection cap in force (set once at start).
    pub max_conns: AtomicU64,
}

/// Reads one counter.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Relaxed)
}

/// Adds to one counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

/// Subtracts from one counter.
pub fn sub(counter: &AtomicU64, n: u64) {
    counter.fetch_sub(n, Relaxed);
}

impl Stats {
    /// The counters as the JSON object `/stats` returns. `rss_bytes` is read by the caller
    /// because it is a property of the process, not of the loop.
    pub fn to_json(&self, rss_bytes: u64) -> String {
        let fields = [
            ("connections", get(&self.connections)),
            ("accepted", get(&self.accepted)),
            ("pending_polls", get(&self.pending_polls)),
            ("requests", get(&self.requests)),
            ("messages", get(&self.messages)),
            ("deliveries", get(&self.deliveries)),
            ("timeouts", get(&self.timeouts)),
            ("bytes_out", get(&self.bytes_out)),
            ("streams", get(&self.streams)),
            ("rooms", get(&self.rooms)),
            ("open_files_limit", get(&self.open_files_limit)),
            ("max_conns", get(&self.max_conns)),
            ("rss_bytes", rss_bytes),
        ];
        let drops = [
            ("slow", get(&self.dropped_slow)),
            ("idle", get(&self.dropped_idle)),
            ("request_timeout", get(&self.dropped_request_timeout)),
            ("over_cap", get(&self.refused_over_cap)),
            ("emfile", get(&self.refused_emfile)),
        ];
        format!(
            "{{{},\"drops\":{{{}}}}}",
            join_fields(&fields),
            join_fields(&drops)
        )
    }
}

fn join_fields(fields: &[(&str, u64)]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("\"{name}\":{value}"))
        .collect();
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lists_every_counter() {
        let stats = Stats::default();
        add(&stats.connections, 3);
        sub(&stats.connections, 1);
        add(&stats.deliveries, 7);
        let json = stats.to_json(4096);
        assert!(json.starts_with("{\"connections\":2,"), "{json}");
        assert!(json.contains("\"deliveries\":7"));
        assert!(json.contains("\"rss_bytes\":4096,"));
        assert!(json.ends_with(
            "\"drops\":{\"slow\":0,\"idle\":0,\"request_timeout\":0,\"over_cap\":0,\"emfile\":0}}"
        ));
    }
}
