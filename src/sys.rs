//! The few things we ask the operating system directly: the open-files limit (which decides
//! how many clients one process can hold) and our own resident memory (for `/stats`).

use std::io;

/// The soft and hard `RLIMIT_NOFILE`.
pub fn open_files_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we pass; it has no other effects.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // rlim_t is u64 on every platform we build for.
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Raises the soft open-files limit to the hard one, since every waiting client costs one
/// descriptor. Returns the soft limit before and after.
pub fn raise_open_files_limit() -> io::Result<(u64, u64)> {
    let (_, hard) = open_files_limit()?;
    set_open_files_limit(hard)
}

/// Sets the soft open-files limit (up to the hard limit, which stays as it is). Returns the
/// soft limit before and after.
pub fn set_open_files_limit(soft: u64) -> io::Result<(u64, u64)> {
    let (before, hard) = open_files_limit()?;
    let limit = libc::rlimit {
        rlim_cur: soft.min(hard),
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the struct we pass; a soft limit at or below the hard
    // one is always permitted.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((before, open_files_limit()?.0))
}

/// A process's state letter from `/proc/PID/stat` (`S` asleep, `R` running, `T` stopped,
/// ...). `None` where there is no such process or no /proc.
pub fn process_state(pid: libc::pid_t) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the state follows it.
    stat.get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// CPU time (user and system) process `pid` has used, from /proc/PID/stat; `None` if it
/// is gone or unreadable.
pub fn process_cpu(pid: libc::pid_t) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised name: state (field 3), …, utime (14), stime (15), in ticks.
    let mut fields = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no side effects and _SC_CLK_TCK is always valid.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(std::time::Duration::from_millis(
        (utime + stime) * 1000 / hz,
    ))
}

/// Resident set size of this process in bytes, from /proc/self/statm (0 where unavailable).
pub fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no side effects and _SC_PAGESIZE is always valid.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process's state and CPU time, read the way the supervisor reads its workers': a
    /// child asleep in `sleep` is `S`, stopped it is `T`, and gone once reaped.
    #[test]
    fn process_states_are_read_from_proc() {
        use std::process::Command;
        let me = std::process::id() as libc::pid_t;
        assert!(process_state(me).is_some(), "our own /proc entry");
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let pid = child.id() as libc::pid_t;
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(process_state(pid), Some('S'));
        // SAFETY: kill takes no pointers; the pid is our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(process_state(pid), Some('T'));
        assert!(process_cpu(pid).is_some_and(|cpu| cpu < std::time::Duration::from_secs(1)));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(process_state(pid), None, "reaped");
    }

    #[test]
    fn limits_are_readable_and_ordered() {
        let (soft, hard) = open_files_limit().unwrap();
        assert!(soft <= hard && soft > 0);
    }

    #[test]
    fn rss_is_nonzero_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(rss_bytes() > 0);
        }
    }
}
