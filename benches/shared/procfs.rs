//! What the benchmarks read about processes from the kernel: the CPUs this one may use, and
//! another's resident memory from /proc. Shared by `benches/load`, `benches/million` and
//! `benches/hostile` (each includes this file by path), so that every report reads these
//! figures the same way.

#![allow(dead_code)] // each bench uses a subset

use std::io;

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most the size we pass into `set`.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: cpu < CPU_SETSIZE, so CPU_ISSET stays inside the set.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Resident memory of process `pid` in bytes: `VmRSS` in /proc/PID/status.
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    status_bytes(pid, "VmRSS:")
}

/// A `kB` field of /proc/PID/status, in bytes.
pub fn status_bytes(pid: u32, field: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = kib_field(&status, field)
        .ok_or_else(|| io::Error::other(format!("no {field} in /proc/{pid}/status")))?;
    Ok(kib * 1024)
}

/// The number of a `Name:   1234 kB` line, in KiB (/proc status, smaps_rollup, meminfo).
pub fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
}
