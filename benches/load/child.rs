//! Processes the benchmark starts besides the server — the floor writer and reader — and
//! the promise that each one is stopped by its own PID: on the normal path, on an error
//! path (dropping the handle kills it) and on a panic (unwinding drops it). If the
//! benchmark itself is killed, the kernel kills the children (`PR_SET_PDEATHSIG`), so no
//! floor is ever left holding 19,500 sockets behind a dead benchmark. The server makes the
//! same promise through the shared launcher (`benches/shared/server.rs`).

use crate::host;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// A child process that is killed when this handle is dropped.
pub struct Child {
    /// The std handle; its `kill` signals this PID only.
    inner: std::process::Child,
    /// For messages: "floor writer", "floor reader".
    name: &'static str,
}

impl Child {
    /// Spawns `command`, asking the kernel to SIGKILL the child if the benchmark dies, and
    /// pins it to `cpu` if given.
    pub fn spawn(
        mut command: Command,
        name: &'static str,
        cpu: Option<usize>,
    ) -> io::Result<Child> {
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe syscalls (prctl, getppid, sched_setaffinity); it allocates
        // nothing and takes no locks.
        unsafe {
            command.pre_exec(move || {
                crate::parent_death::die_with_parent(parent)?;
                match cpu {
                    Some(cpu) => host::pin_to_cpu(cpu),
                    None => Ok(()),
                }
            });
        }
        let inner = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {name}: {e}")))?;
        Ok(Child { inner, name })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// The child's exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.inner.try_wait().ok().flatten()
    }

    /// The child's stdin, if it was piped (once).
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.inner.stdin.take()
    }

    /// The child's stdout, if it was piped (once).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.inner.stdout.take()
    }

    /// Gives the child `grace` to exit by itself (it was told to, e.g. its control socket
    /// closed), then kills it. Returns how it ended, if it ended by itself.
    pub fn finish(mut self, grace: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None // dropped here, which kills it
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // Child::kill sends SIGKILL to this child's PID and nothing else.
        if let Err(e) = self.inner.kill() {
            eprintln!("cannot kill {} (pid {}): {e}", self.name, self.inner.id());
        }
        // Reap it so it leaves no zombie; SIGKILL cannot be ignored, so this returns.
        let _ = self.inner.wait();
    }
}
