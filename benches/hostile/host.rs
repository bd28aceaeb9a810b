//! What the bench asks the operating system: a lower priority for attacker threads, and
//! the machine facts the report records (the CPUs it may use: `benches/shared/procfs.rs`).

use serde_json::{json, Value};
use std::io;
use std::process::Command;

/// Gives the calling thread nice 10, so that on the bench's own CPU an attacker or a
/// watcher busy reading megabytes never delays the probe's wake-up: what the probe
/// measures must be the server, not the bench. Raising one's own nice value needs no
/// privilege.
pub fn lower_priority() -> io::Result<()> {
    // SAFETY: gettid has no effects; setpriority with PRIO_PROCESS and a thread id changes
    // only that thread's nice value (Linux keeps nice per thread).
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Facts about the machine a result was measured on: a shared, noisy machine makes every
/// run a sample, and these say which one.
pub fn machine() -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "cpu": cpu,
        "loadavg": read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "date": date,
    })
}
