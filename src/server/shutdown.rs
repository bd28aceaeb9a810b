//! Graceful shutdown (SIGINT, SIGTERM, or `ServerHandle::shutdown`): stop accepting, tell
//! every waiting client when to come back (a random delay each, so thousands of browsers do
//! not return in one wave), let responses in flight finish, and exit when every client is
//! answered or the grace period (`--shutdown-grace`) is over. A second signal exits at once.

use super::timers::Due;
use super::Server;
use crate::answer;
use crate::conn::{Flags, State};
use crate::outgoing::Response;
use crate::sse;
use std::sync::atomic::Ordering;

/// A client told to come back after shutdown waits a random delay in this range (ms), so
/// that thousands of browsers do not return in one wave.
const RETRY_DELAY_MS: std::ops::RangeInclusive<u64> = 500..=5_000;

impl Server {
    /// The waker: another thread asked to stop (seen in step 6) or to shut down.
    pub(super) fn on_wake(&mut self) {
        if self.drain.load(Ordering::Acquire) {
            self.begin_shutdown("shutdown requested");
        }
    }

    /// SIGINT/SIGTERM arrived.
    pub(super) fn on_signal(&mut self) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let received: Vec<i32> = signals.pending().collect();
        for signal in received {
            if self.draining {
                log::warn!("signal {signal} during shutdown: stopping now");
                self.stop.store(true, Ordering::Release);
            } else {
                self.begin_shutdown(&format!("signal {signal}"));
            }
        }
    }

    /// Stops accepting, tells every waiting client to come back later, closes idle
    /// keep-alive connections, and lets responses in flight finish.
    fn begin_shutdown(&mut self, why: &str) {
        if self.draining {
            return;
        }
        log::info!(
            "{why}: shutting down; answering {} waiting polls, up to {:?} to flush",
            self.chat.waiting(),
            self.config.shutdown_grace
        );
        self.draining = true;
        self.schedule(Due::GraceOver, self.config.shutdown_grace);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            match self.conns[key].state() {
                State::Parked(_) => {
                    self.unpark(key);
                    self.come_back_later(key);
                }
                State::Streaming(_) => self.end_stream(key),
                State::Reading if self.conns[key].input.is_empty() => self.close(key),
                State::Reading | State::Writing | State::Awaiting => {
                    self.conns[key].flags.set(Flags::CLOSE_AFTER_WRITE, true)
                }
                State::Lingering | State::Closed => {}
            }
        }
    }

    /// The rule for a request that would wait (a poll, a stream): while the server shuts
    /// down it is told to come back later instead. Returns true when it was.
    pub(super) fn told_to_come_back(&mut self, key: usize) -> bool {
        if self.draining {
            self.come_back_later(key);
        }
        self.draining
    }

    /// `503` with a random `Retry-After`, and the connection's last response.
    fn come_back_later(&mut self, key: usize) {
        let delay_ms = self.random.in_range(RETRY_DELAY_MS);
        let cors = answer::cors(self.config.cors_origin.as_deref());
        let bytes = answer::retry_later(delay_ms, &cors);
        self.respond(key, Response::Owned(bytes), true);
    }

    /// A stream's response ends with a frame that tells its EventSource when to come back
    /// (random, like the polls' Retry-After); the connection closes once that is written.
    fn end_stream(&mut self, key: usize) {
        let delay_ms = self.random.in_range(RETRY_DELAY_MS);
        let frame = sse::shutdown_frame(delay_ms).into_bytes().into();
        self.end_stream_with(key, &frame);
    }
}
