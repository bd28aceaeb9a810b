//! Graceful shutdown (SIGINT, SIGTERM, or `ServerHandle::shutdown`): stop accepting, tell
//! every waiting client when to come back (a random delay each, so thousands of browsers do
//! not return in one wave), let responses in flight finish, and exit when every client is
//! answered or the grace period (`--shutdown-grace`) is over. A second signal exits at once.

use super::budget::SHUTDOWN_SLOTS_PER_PASS;
use super::timers::Due;
use super::Server;
use crate::conn::{Flags, State};
use crate::room::Framing;
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
    /// Shutting down, and the connections from this slab key on are still to be told.
    pub told_up_to: Option<usize>,
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
        // Every connection is told in step 3, a pass's worth at a time, from this one on.
        self.control.told_up_to = Some(0);
    }

    /// Goes on telling the connections of the shutdown, from where the last pass stopped,
    /// at most [`SHUTDOWN_SLOTS_PER_PASS`] slots of the slab a pass (the rest next pass,
    /// without sleeping): a parked poll is told when to come back, a stream ends with
    /// that, an idle keep-alive connection closes, and one with a response in flight
    /// closes once it is out. No connection is accepted meanwhile, and none can start
    /// waiting (the chat tells such a request to come back later), so one sweep reaches
    /// every connection.
    pub(super) fn tell_of_shutdown(&mut self) {
        let Some(from) = self.control.told_up_to else {
            return;
        };
        let to = (from + SHUTDOWN_SLOTS_PER_PASS).min(self.conns.capacity());
        for key in from..to {
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            // The admin port is no client's: it answers until the loop exits.
            if conn.flags.has(Flags::ADMIN) {
                continue;
            }
            let waiter = Waiter {
                key: key as u32,
                generation: conn.generation,
            };
            match conn.state() {
                State::Parked(_) => self.chat.come_back_later(waiter),
                State::Streaming(at) => {
                    let framing = Framing::of(at.list);
                    self.chat.end_stream_for_shutdown(waiter, framing)
                }
                State::Reading if conn.input.is_empty() => self.close(key),
                State::Reading | State::Writing | State::Awaiting => {
                    self.conns[key].flags.set(Flags::CLOSE_AFTER_WRITE, true)
                }
                State::Lingering | State::Viewing | State::Closed => {}
            }
            self.carry_out();
        }
        self.control.told_up_to = (to < self.conns.capacity()).then_some(to);
    }
}
