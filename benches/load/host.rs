//! What the benchmark asks the operating system: open-files limits, another process's
//! resident memory and CPU time, and the machine facts the report records so that two
//! results files can be compared honestly.

#![allow(dead_code)] // shared by benches/load and benches/million, each using a subset

use crate::procfs::{kib_field, status_bytes};
use serde_json::{json, Value};
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// This process's open-files limits, before and after raising the soft one.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Soft limit at start.
    pub soft_before: u64,
    /// Soft limit after raising it to the hard one (children inherit this).
    pub soft: u64,
    /// Hard limit, which an unprivileged process cannot raise.
    pub hard: u64,
}

/// Raises the soft open-files limit to the hard one, since every client socket costs a
/// descriptor. On failure the limits are reported as they are.
pub fn raise_open_files_limit() -> Limits {
    let (soft_before, hard) = comet_chat::sys::open_files_limit().unwrap_or((0, 0));
    let soft = match comet_chat::sys::raise_open_files_limit() {
        Ok((_, after)) => after,
        Err(e) => {
            say!("cannot raise the open-files limit: {e}");
            soft_before
        }
    };
    Limits {
        soft_before,
        soft,
        hard,
    }
}

/// The anonymous part of [`crate::procfs::rss_bytes`] (`RssAnon`): heap and stacks, what the process
/// itself allocated. The rest is file pages — the binary's text and libc — shared with
/// every other process that maps them.
pub fn rss_anon_bytes(pid: u32) -> io::Result<u64> {
    status_bytes(pid, "RssAnon:")
}

/// Proportional memory of process `pid` (`Pss` in /proc/PID/smaps_rollup), bytes: its
/// private pages plus its share of pages mapped by others too, so that summing it over 64
/// workers counts the binary and libc once rather than 64 times.
pub fn pss_bytes(pid: u32) -> io::Result<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    kib_field(&rollup, "Pss:")
        .map(|kib| kib * 1024)
        .ok_or_else(|| io::Error::other(format!("no Pss in /proc/{pid}/smaps_rollup")))
}

/// Context switches of process `pid` so far (voluntary + involuntary): a loop that sleeps
/// in `epoll_wait` and is woken makes one voluntary switch per wake-up.
pub fn context_switches(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let count = |field: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().parse::<u64>().ok())
            .ok_or_else(|| io::Error::other(format!("no {field} in /proc/{pid}/status")))
    };
    Ok(count("voluntary_ctxt_switches:")? + count("nonvoluntary_ctxt_switches:")?)
}

/// `at` as nanoseconds of CLOCK_MONOTONIC, the clock `Instant` reads on Linux, so that
/// instants taken in different processes (a post here, deliveries in the load-generator
/// children) can be compared.
pub fn mono_ns(at: Instant) -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the variable we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let back = Instant::now().saturating_duration_since(at).as_nanos() as u64;
    (now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64).saturating_sub(back)
}

/// CPU time (user + system) of process `pid` from /proc/PID/stat, in clock ticks.
///
/// A tick is 10 ms on nearly every kernel, so this is for windows of seconds (the idle
/// phase); [`cpu_time`] is for the millisecond windows of a fan-out.
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces and parentheses; fields after the last
    // ')' are plain. utime and stime are fields 14 and 15, i.e. 12 and 13 after it.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))
    };
    Ok(field(11)? + field(12)?)
}

/// Clock ticks per second, the unit of [`cpu_ticks`].
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no side effects and _SC_CLK_TCK is always valid.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// CPU time of process `pid` with nanosecond resolution, from its CPU-time clock
/// (`clock_getcpuclockid`); `None` where the kernel will not give it.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock_getcpuclockid writes one clockid_t into the variable we pass.
    if unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) } != 0 {
        return None;
    }
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the variable we pass.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    Some(Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
}

/// Restricts the calling process (or, between fork and exec, a child) to one CPU; the
/// shared launcher pins the server with the same function.
pub use crate::server::pin_to_cpu;

/// CPU time all CPUs spent stolen by the hypervisor, and in total, in ticks, from the
/// first line of /proc/stat. Two readings give the share of a window a noisy neighbour
/// took.
pub fn steal_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guests are
    // already counted in user and nice.
    let total = fields.iter().take(8).sum();
    Some((*fields.get(7)?, total))
}

/// Writes each (file name, text) into `dir`, creating it, and says where they went.
pub fn write_results(dir: &std::path::Path, files: &[(&str, String)]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let names: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
    say!("wrote {} in {}", names.join(", "), dir.display());
    Ok(())
}

/// Sleeps in short steps until `deadline`; used where a phase must simply let time pass.
pub fn sleep_until(deadline: Instant) {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Facts about the machine a result was measured on.
pub struct Machine {
    /// CPUs this process may run on.
    pub nproc: usize,
    /// `uname -r`.
    pub kernel: String,
    /// CPU model name from /proc/cpuinfo.
    pub cpu: String,
    /// Load averages at start: the machine is shared, and a busy neighbour shows here.
    pub loadavg: String,
    /// UTC start time, ISO 8601.
    pub date: String,
}

impl Machine {
    /// "machine: 2 CPUs (model), kernel …, load average at start …", for reports.
    pub fn line(&self) -> String {
        format!(
            "machine: {} CPUs ({}), kernel {}, load average at start {}",
            self.nproc, self.cpu, self.kernel, self.loadavg
        )
    }

    /// As a JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "nproc": self.nproc,
            "kernel": self.kernel,
            "cpu": self.cpu,
            "loadavg": self.loadavg,
            "date": self.date,
        })
    }
}

/// Reads the machine facts.
pub fn machine() -> Machine {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        cpu,
        loadavg: loadavg(),
        date: utc_now(),
    }
}

/// The 1, 5 and 15 minute load averages now, e.g. "1.34 0.98 5.64" (empty if unreadable).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`, without a date crate: days since the
/// epoch to a civil date is Howard Hinnant's `civil_from_days`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}
