//! The established-connections hash the run holds its sockets in: sized for them, as
//! docs/DEPLOY.md tells a box that holds a million connections to size it, in a network
//! namespace of the run's own. The box's own hash is sized at boot from its memory
//! (262,144 buckets on a 24 GiB box), so at a million clients, two loopback sockets each,
//! plus both kernel floors, a bucket holds ~11 sockets and every delivery walks a chain
//! of them to find the receiving socket; the floors' sockets, opened last, head those
//! chains, so they are found first and the comparison tilts their way. A namespace made
//! after `net.ipv4.tcp_child_ehash_entries` is set gets a hash of its own that size.
//!
//! So a full run (not `--quick`, not the smoke run) started as root runs itself again
//! under `unshare --net`, with loopback up, and waits: the parent raises the child hash
//! size and the two settings that are global (a child namespace cannot raise them:
//! `tcp_mem`, `netdev_max_backlog`) and puts all three back when the run ends (the same
//! [`Sysctls`] guard as the run's own settings). `--as-booted` keeps the box's hash.

use crate::options::Options;
use crate::sysctl::{Sysctls, Want};
use std::ffi::OsString;
use std::process::{Command, ExitCode};

/// Set in the run's environment once it is inside its namespace, so it does not start
/// another.
const INSIDE_ENV: &str = "COMET_MILLION_OWN_EHASH";

/// The run's settings that are global, not per namespace: raised by the parent.
pub const GLOBAL: [&str; 2] = ["net.ipv4.tcp_mem", "net.core.netdev_max_backlog"];

/// Whether this process is a run inside its own namespace.
pub fn inside() -> bool {
    std::env::var_os(INSIDE_ENV).is_some()
}

/// The largest child hash the kernel makes (`tcp_child_ehash_entries` is at most 2^24).
const BUCKETS_MAX: u64 = 1 << 24;

/// Buckets for a run whose top rung is `top` clients: two sockets a client, plus both
/// floors' (two a floor socket), at no more than 0.75 sockets a bucket, rounded up to the
/// power of two the kernel would round it to anyway.
pub fn buckets_for(top: usize, floor_sockets: usize) -> u64 {
    let sockets = 2 * top as u64 + 4 * floor_sockets.min(top) as u64;
    (sockets * 4 / 3).next_power_of_two().min(BUCKETS_MAX)
}

/// The top rung the run may reach: its ladder's last, or the last rung past it.
fn top_rung(options: &Options) -> usize {
    let last = options.ladder.last().copied().unwrap_or(0);
    if options.beyond {
        last.max(crate::options::BEYOND[crate::options::BEYOND.len() - 1])
    } else {
        last
    }
}

/// Runs this bench again in a namespace of its own with a hash sized for `options`, and
/// returns its exit status; `None` when the run should go on here: already inside, not a
/// full run, `--as-booted`, not root, or no `unshare` (each but the first said why).
pub fn run_in_own_namespace(options: &Options, argv: &[OsString]) -> Option<ExitCode> {
    if inside() || options.mode != "full" {
        return None;
    }
    if options.as_booted {
        say!("--as-booted: the box's own established hash, shared with everything on it");
        return None;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        say!("not root: the box's own established hash (sizing one needs root; see --as-booted)");
        return None;
    }
    let top = top_rung(options);
    let buckets = buckets_for(top, options.floor_sockets);
    let mem_total = crate::memory::snapshot().total;
    let mut wants = vec![Want {
        name: "net.ipv4.tcp_child_ehash_entries",
        least: vec![buckets],
        why: "the run's own network namespace gets an established hash this size",
    }];
    // The run's own wants for these two cannot be met from inside its namespace.
    wants.extend(
        crate::sysctl::wants(top, mem_total)
            .into_iter()
            .filter(|w| GLOBAL.contains(&w.name)),
    );
    let guard = Sysctls::apply(&wants);
    if !guard.failed.is_empty() {
        say!(
            "cannot size the established hash ({}): the box's own",
            guard.failed.join("; ")
        );
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    say!("running in a network namespace of its own with {buckets} established-hash buckets");
    let status = Command::new("unshare")
        .arg("--net")
        .args(["sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
        .arg(exe)
        .args(argv)
        .env(INSIDE_ENV, buckets.to_string())
        .status();
    drop(guard);
    match status {
        Ok(status) => Some(ExitCode::from(
            status.code().unwrap_or(1).clamp(0, 255) as u8
        )),
        Err(e) => {
            say!("unshare: {e}: the box's own established hash");
            None
        }
    }
}

/// The established hash this process's sockets are in, for the report: its buckets and
/// whether it is the box's (a negative `tcp_ehash_entries` is a namespace sharing it).
pub fn describe() -> String {
    let read = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_ehash_entries");
    match read.ok().and_then(|t| t.trim().parse::<i64>().ok()) {
        Some(n) if inside() => format!(
            "established hash: {n} buckets, the run's own network namespace's \
             (tcp_mem and netdev_max_backlog raised by the run's parent)"
        ),
        Some(n) => format!(
            "established hash: {} buckets, the box's own (as booted)",
            n.unsigned_abs()
        ),
        None => "established hash: size unknown".into(),
    }
}
