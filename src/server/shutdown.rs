//! Graceful shutdown (SIGINT, SIGTERM, or `ServerHandle::shutdown`): stop accepting, tell
//! every waiting client when to come back (a random delay each, so thousands of browsers do
//! not return in one wave), let responses in flight finish, and exit when every client is
//! answered or the grace period (`--shutdown-grace`) is over. A second signal exits at once.

use super::timers::Due;
use super::Server;
use crate::conn::{Flags, State};
use crate::waitlist::Waiter;
use mio::Waker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How the world outside tells the loop to stop, and how far a shutdown has got.
pub(super) struct Control {
    /// Set by another thread: stop at the end of this pass.
    pub stop: Arc<AtomicBool>,
    /// Set by another thread: begin a graceful shutdown.
    pub drain: Arc<AtomicBool>,
    /// How other threads wake the loop to see `stop` or `drain`.
    pub waker: Arc<Waker>,
    /// SIGINT/SIGTERM as events, when `config.handle_signals`.
    pub signals: Option<signal_hook_mio::v1_0::Signals>,
    /// With `--workers`: the channel on which the supervisor pings this worker's loop.
    pub supervisor: Option<mio::net::UnixStream>,
    /// Shutting down: no new clients; every response is a connection's last.
    pub draining: bool,
    /// The shutdown's grace is over: exit with whatever is still open.
    pub grace_over: bool,
}

impl Server {
    /// The waker: another thread asked to stop (seen in step 6) or to shut down.
    pub(super) fn on_wake(&mut self) {
        if self.control.drain.load(Ordering::Acquire) {
            self.begin_shutdown("shutdown requested");
        }
    }

    /// SIGINT/SIGTERM arrived.
    pub(super) fn on_signal(&mut self) {
        let Some(signals) = self.control.signals.as_mut() else {
            return;
        };
        let received: Vec<i32> = signals.pending().collect();
        for signal in received {
            if self.control.draining {
                log::warn!("signal {signal} during shutdown: stopping now");
                self.control.stop.store(true, Ordering::Release);
            } else {
                self.begin_shutdown(&format!("signal {signal}"));
            }
        }
    }

    /// Stops accepting, tells every waiting client to come back later, closes idle
    /// keep-alive connections, and lets responses in flight finish.
    fn begin_shutdown(&mut self, why: &str) {
        if self.control.draining {
            return;
        }
        log::info!(
            "{why}: shutting down; answering {} waiting polls, up to {:?} to flush",
            self.chat.waiting(),
            self.config.shutdown_grace
        );
        self.control.draining = true;
        self.chat.shutting_down();
        self.schedule(Due::GraceOver, self.config.shutdown_grace);
        if let Some(mut listener) = self.accepting.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            // The admin port is no client's: it answers until the loop exits.
            if self.conns[key].flags.has(Flags::ADMIN) {
                continue;
            }
            let waiter = Waiter {
                key: key as u32,
                generation: self.conns[key].generation,
            };
            match self.conns[key].state() {
                State::Parked(_) => self.chat.come_back_later(waiter),
                State::Streaming(_) => self.chat.end_stream_for_shutdown(waiter),
                State::Reading if self.conns[key].input.is_empty() => self.close(key),
                State::Reading | State::Writing | State::Awaiting => {
                    self.conns[key].flags.set(Flags::CLOSE_AFTER_WRITE, true)
                }
                State::Lingering | State::Viewing | State::Closed => {}
            }
            // Bounded by the connections held, once per shutdown.
            self.carry_out();
        }
    }
}
