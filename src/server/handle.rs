//! Running a server from other threads: tests, benchmarks and programs that embed it. The
//! server itself is single-threaded and not `Send`; other threads hold a [`ServerHandle`]
//! (counters, stop, graceful shutdown) that reaches the loop through its waker.

use super::Server;
use crate::config::Config;
use crate::stats::Stats;
use mio::Waker;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

/// A handle other threads (tests, benchmarks, embedders) keep to a running server.
#[derive(Clone)]
pub struct ServerHandle {
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    drain: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ServerHandle {
    /// The server's live counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Asks the loop to stop now; it returns from [`Server::run`] at the end of its pass,
    /// dropping every connection.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        // A failed wake only means the loop is already gone.
        let _ = self.waker.wake();
    }

    /// Asks for a graceful shutdown, as SIGTERM does: stop accepting, tell every waiting
    /// client to come back later, flush, and return once done or after the grace period.
    pub fn shutdown(&self) {
        self.drain.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }
}

impl Server {
    /// A handle for other threads: counters and a way to stop the loop.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            stats: Arc::clone(&self.stats),
            stop: Arc::clone(&self.control.stop),
            drain: Arc::clone(&self.control.drain),
            waker: Arc::clone(&self.control.waker),
        }
    }
}

/// A server running on its own thread.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// With `--admin-addr`: where the admin listener listens.
    pub admin_addr: Option<SocketAddr>,
    /// Counters and stop.
    pub handle: ServerHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Running {
    /// Stops the loop and waits for its thread.
    pub fn stop(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<()> {
        self.handle.stop();
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("server thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Binds a server and runs it on a new thread (the server is built on the thread that runs
/// it, since it is not `Send`).
pub fn spawn(config: Config) -> io::Result<Running> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("comet-chat".into())
        .spawn(move || {
            let server = match Server::bind(config) {
                Ok(server) => server,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return Ok(());
                }
            };
            let addrs = (server.local_addr(), server.admin_addr());
            let _ = ready_tx.send(Ok((addrs, server.handle())));
            server.run()
        })?;
    let ((addr, admin_addr), handle) = ready_rx
        .recv()
        .map_err(|_| io::Error::other("server thread died during start-up"))??;
    Ok(Running {
        addr,
        admin_addr,
        handle,
        thread: Some(thread),
    })
}
