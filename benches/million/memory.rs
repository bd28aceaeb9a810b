//! Where the box's memory goes: /proc/meminfo for the whole box, /proc/net/sockstat for
//! the kernel's TCP buffers, /proc/slabinfo (root only) for the kernel objects behind each
//! socket, and the processes' own resident memory. A rung's figures are differences from
//! the box before the run started, divided by the clients held.

use crate::procfs;
use std::collections::BTreeMap;

/// The box at one moment.
#[derive(Clone, Default)]
pub struct Snapshot {
    /// MemTotal, bytes.
    pub total: u64,
    /// MemAvailable, bytes.
    pub available: u64,
    /// Slab (reclaimable and not), bytes.
    pub slab: u64,
    /// Pages of TCP buffers (sockstat `TCP: mem`), in bytes.
    pub tcp_buffers: u64,
    /// Sockets in use (sockstat `sockets: used`).
    pub sockets: u64,
    /// Bytes per slab cache (slabs × pages per slab × 4 KiB); empty if unreadable.
    pub caches: BTreeMap<String, u64>,
}

impl Snapshot {
    /// Memory in use: MemTotal − MemAvailable.
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }
}

/// Reads the box now.
pub fn snapshot() -> Snapshot {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |field: &str| procfs::kib_field(&meminfo, field).unwrap_or(0) * 1024;
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let sockstat_field = |line: &str, field: &str| -> u64 {
        sockstat
            .lines()
            .find(|l| l.starts_with(line))
            .and_then(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                let at = words.iter().position(|w| *w == field)?;
                words.get(at + 1)?.parse().ok()
            })
            .unwrap_or(0)
    };
    Snapshot {
        total: kib("MemTotal:"),
        available: kib("MemAvailable:"),
        slab: kib("Slab:"),
        tcp_buffers: sockstat_field("TCP:", "mem") * 4096,
        sockets: sockstat_field("sockets:", "used"),
        caches: slab_caches(),
    }
}

/// Bytes held by each slab cache, from /proc/slabinfo (version 2.1: name, active_objs,
/// num_objs, objsize, objperslab, pagesperslab, then ": tunables …", ": slabdata
/// active_slabs num_slabs …").
fn slab_caches() -> BTreeMap<String, u64> {
    let Ok(text) = std::fs::read_to_string("/proc/slabinfo") else {
        return BTreeMap::new();
    };
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let pages_per_slab: u64 = words.get(5)?.parse().ok()?;
            let at = words.iter().position(|w| *w == "slabdata")?;
            let slabs: u64 = words.get(at + 2)?.parse().ok()?;
            Some((words[0].to_owned(), slabs * pages_per_slab * 4096))
        })
        .collect()
}

/// The slab caches that grew most from `before` to `after`: (name, bytes grown), largest
/// first, at most `count`.
pub fn slab_growth(before: &Snapshot, after: &Snapshot, count: usize) -> Vec<(String, u64)> {
    let mut grown: Vec<(String, u64)> = after
        .caches
        .iter()
        .filter_map(|(name, &bytes)| {
            let was = before.caches.get(name).copied().unwrap_or(0);
            (bytes > was).then(|| (name.clone(), bytes - was))
        })
        .collect();
    grown.sort_by_key(|g| std::cmp::Reverse(g.1));
    grown.truncate(count);
    grown
}

/// Resident memory summed over `pids` (processes that are gone count nothing).
pub fn rss_of(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|&pid| procfs::rss_bytes(pid).ok())
        .sum()
}
