//! One promise every benchmark makes: a process it starts never outlives it. Shared by
//! `benches/load`, `benches/soak` and `benches/hostile` (each includes this file by path);
//! the server launcher (`benches/shared/server.rs`) and load's floor children call it.

use std::io;

/// To be called in a forked child before exec (`CommandExt::pre_exec`): asks the kernel to
/// SIGKILL this process when its parent dies, and fails if the parent (`parent_pid`) has
/// already died, because then nobody would.
///
/// Only async-signal-safe syscalls (prctl, getppid); allocates nothing, takes no locks.
/// PR_SET_PDEATHSIG is tied to the forking thread, so fork from a thread that lives as long
/// as the child should.
pub fn die_with_parent(parent_pid: u32) -> io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG and getppid take no pointers and only change this
    // (child) process's own state.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() as u32 != parent_pid {
            return Err(io::Error::other("parent exited during spawn"));
        }
    }
    Ok(())
}
