//! The kernel settings a million loopback connections need, raised for the run and put
//! back afterwards: on the normal path, on an error path and on a panic (the guard's
//! `Drop`; benchmarks unwind), each change printed both ways. A value already at least
//! what the run needs is left alone. If the run is killed outright, the restore commands
//! printed at the start put the box back by hand.

use std::fs;

/// One setting and the least the run needs (every field, for `tcp_mem`'s three).
pub struct Want {
    /// Dotted name, as `sysctl` spells it.
    pub name: &'static str,
    /// Least values, one per field.
    pub least: Vec<u64>,
    /// Why the run needs it, for the report.
    pub why: &'static str,
}

/// What the run changed, to be put back.
pub struct Sysctls {
    /// (name, old value, new value), in the order changed.
    pub changed: Vec<(&'static str, String, String)>,
    /// Settings that could not be read or written, with the reason.
    pub failed: Vec<String>,
}

/// What a run holding up to `top` clients (2 × `top` sockets) on a machine with
/// `mem_total` bytes needs.
pub fn wants(top: usize, mem_total: u64) -> Vec<Want> {
    let top = top as u64;
    let mut out = Vec::new();
    if top <= 20_000 {
        return out; // the defaults hold what one process holds
    }
    out.push(Want {
        name: "net.core.somaxconn",
        least: vec![65_535],
        why: "every worker's accept queue takes a burst from dozens of load generators",
    });
    out.push(Want {
        name: "net.ipv4.tcp_max_syn_backlog",
        least: vec![65_535],
        why: "half-open connections of the same burst; a dropped SYN costs a 1 s retry",
    });
    out.push(Want {
        name: "net.core.netdev_max_backlog",
        least: vec![top.clamp(10_000, 1_000_000)],
        why: "loopback packets queue per CPU; at 1000 a wide broadcast drops packets and \
              retransmits add 200 ms steps to the tail",
    });
    if top > 100_000 {
        let pages = mem_total / 4096;
        out.push(Want {
            name: "net.ipv4.tcp_mem",
            least: vec![pages / 4, pages / 2, pages * 3 / 4],
            why: "a broadcast leaves one answer in every client socket's receive queue at once",
        });
        out.push(Want {
            name: "fs.file-max",
            least: vec![4 * top + 500_000],
            why: "two descriptors per client (server and client side) plus the two floors'",
        });
    }
    out
}

fn path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

/// The fields of a setting now.
fn read(name: &str) -> Result<(String, Vec<u64>), String> {
    let text = fs::read_to_string(path(name)).map_err(|e| format!("{name}: {e}"))?;
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let fields = text
        .split(' ')
        .map(|f| f.parse::<u64>().map_err(|_| format!("{name}: {text:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((text, fields))
}

fn write(name: &str, value: &str) -> Result<(), String> {
    fs::write(path(name), value).map_err(|e| format!("{name} = {value}: {e}"))
}

impl Sysctls {
    /// Raises every setting of `wants` that is below it; prints each change, and the
    /// commands that would undo them by hand.
    pub fn apply(wants: &[Want]) -> Sysctls {
        let mut out = Sysctls {
            changed: Vec::new(),
            failed: Vec::new(),
        };
        for want in wants {
            let (old, fields) = match read(want.name) {
                Ok(now) => now,
                Err(e) => {
                    out.failed.push(e);
                    continue;
                }
            };
            if fields.len() != want.least.len()
                || fields
                    .iter()
                    .zip(&want.least)
                    .all(|(now, least)| now >= least)
            {
                continue;
            }
            let new = fields
                .iter()
                .zip(&want.least)
                .map(|(now, least)| (*now).max(*least).to_string())
                .collect::<Vec<_>>()
                .join(" ");
            match write(want.name, &new) {
                Ok(()) => {
                    say!("sysctl {}: {old} -> {new} ({})", want.name, want.why);
                    out.changed.push((want.name, old, new));
                }
                Err(e) => {
                    say!("sysctl {}: cannot raise it: {e}", want.name);
                    out.failed.push(e);
                }
            }
        }
        if !out.changed.is_empty() {
            let undo: Vec<String> = out
                .changed
                .iter()
                .map(|(name, old, _)| format!("sysctl -w {name}='{old}'"))
                .collect();
            say!(
                "if this run is killed, restore by hand: {}",
                undo.join("; ")
            );
        }
        out
    }

    /// Puts every changed setting back, last change first.
    pub fn restore(&mut self) {
        while let Some((name, old, _)) = self.changed.pop() {
            match write(name, &old) {
                Ok(()) => say!("sysctl {name}: restored to {old}"),
                Err(e) => say!("sysctl {name}: cannot restore: {e}"),
            }
        }
    }
}

impl Drop for Sysctls {
    fn drop(&mut self) {
        self.restore();
    }
}
