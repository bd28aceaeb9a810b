//! What the soak prints: the machine it ran on, the summary lines and the table of checks.

use crate::args::Args;
use crate::checks::Check;
use crate::drive::Outcome;
use crate::server::Server;
use crate::stats::Stats;
use std::process::{Command, ExitStatus};

/// The summary lines and the table, on stdout.
pub fn print_report(
    args: &Args,
    o: &Outcome,
    server: &Server,
    exit: Option<ExitStatus>,
    checks: &[Check],
) {
    let (after, churn) = (&o.after, &o.churn);
    println!();
    println!(
        "soak: {} s, {} churn clients",
        args.run.as_secs(),
        args.churn_clients
    );
    print_machine_line(after);
    println!(
        "churn opened: {} of {} planned (park+vanish {}, half head {}, slowloris {}, \
         slow reader {}, idle {}, classic+vanish {}); connect errors {}{}; cap waits {}",
        churn.opened.iter().sum::<u64>(),
        args.churn_clients,
        churn.opened[0],
        churn.opened[1],
        churn.opened[2],
        churn.opened[3],
        churn.opened[4],
        churn.opened[5],
        churn.connect_errors.count,
        churn
            .connect_errors
            .kept
            .first()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        churn.cap_waits
    );
    if churn.idle_unexpected.count > 0 {
        println!(
            "idle clients sent bytes: {} (first: {:?})",
            churn.idle_unexpected.count,
            churn.idle_unexpected.kept.first()
        );
    }
    println!(
        "server: accepted {} connections, {} messages; drops {}; {} log lines at warn+; \
         after SIGTERM: {}",
        after.accepted,
        after.messages,
        after.drops(),
        server.log_count(),
        exit.map_or("did not exit, killed".to_owned(), |s| s.to_string())
    );
    for line in server.log_lines().iter().take(5) {
        println!("  server log: {line}");
    }
    println!();
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    println!("{:<width$}  {:<6}  detail", "check", "result");
    println!("{}", "-".repeat(width + 16));
    for c in checks {
        let verdict = if c.pass { "PASS" } else { "FAIL" };
        println!("{:<width$}  {verdict:<6}  {}", c.name, c.detail);
    }
    let failed = checks.iter().filter(|c| !c.pass).count();
    println!();
    if failed == 0 {
        println!("soak: all checks passed");
    } else {
        println!("soak: {failed} check(s) FAILED");
    }
}

/// The machine, as the brief asks: cores, kernel, date, open-files limits.
pub fn print_machine() {
    let (soft, hard) = open_files_limit();
    say!(
        "machine: nproc {}, kernel {}, {}; open files (soak) soft {soft} hard {hard}",
        command_output("nproc", &[]),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| command_output("uname", &["-r"])),
        command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
    );
}

fn print_machine_line(after: &Stats) {
    let (soft, hard) = open_files_limit();
    println!(
        "machine: nproc {}, uname -r {}, date {}; open files: soak soft {soft} hard {hard}, \
         server {}",
        command_output("nproc", &[]),
        command_output("uname", &["-r"]),
        command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        after.open_files_limit
    );
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("({program}: {e})"))
}

/// This process's soft and hard `RLIMIT_NOFILE` (the server raises its own soft limit).
pub fn open_files_limit() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we pass and has no other effects.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return (0, 0);
    }
    (limit.rlim_cur, limit.rlim_max)
}
