//! What a request does, once routing has said which it is: the per-client rate limits,
//! the one `match` over [`Action`], the classic protocol's three handlers (poll, post,
//! stats) and a hand-off to the room API's handlers in `rooms.rs`.

use super::timers::Due;
use super::Server;
use crate::answer;
use crate::http::Status;
use crate::limits::{Act, Refused};
use crate::outgoing::Response;
use crate::routes::{Action, Denial};
use crate::stats;
use crate::sys;
use crate::waitlist::ListKind;
use std::time::Duration;

/// How often the rate limiter forgets clients whose buckets are full again, while it
/// holds any.
const LIMITER_SWEEP: Duration = Duration::from_secs(1);

impl Server {
    /// Carries out what routing decided for the request just read.
    pub(super) fn apply(&mut self, key: usize, action: Action, close: bool) {
        if !self.within_rate(key, &action, close) {
            return;
        }
        // With --redis, a read waits for its room's copy to be loaded.
        let action = match self.shared() {
            true => match self.when_room_ready(key, action, close) {
                Some(action) => action,
                None => return,
            },
            false => action,
        };
        match action {
            Action::Reply {
                response,
                close: reply_close,
            } => self.respond(key, response, close || reply_close),
            Action::Denied {
                response,
                close: reply_close,
                denial,
            } => {
                let counter = match denial {
                    Denial::Unauthorized => &self.stats.unauthorized,
                    Denial::Forbidden => &self.stats.forbidden,
                };
                stats::add(counter, 1);
                self.respond(key, response, close || reply_close);
            }
            Action::Park => {
                let lobby = self.chat.lobby();
                self.park(key, lobby, ListKind::Classic, close);
            }
            Action::Broadcast { from, message } if self.shared() => {
                let lobby = self.chat.lobby();
                self.post_through_redis(key, lobby, (&from, &message, None), true, close);
            }
            Action::Broadcast { from, message } => {
                let lobby = self.chat.lobby();
                self.post(lobby, &from, &message, None);
                let response = Response::Owned(answer::classic_posted());
                self.respond(key, response, close);
            }
            Action::Stats { head_only } => {
                let (worker, redis) = (self.config.worker, self.shared());
                let rss = sys::rss_bytes();
                let bytes = answer::stats(&self.stats, rss, worker, redis, head_only);
                self.respond(key, Response::Owned(bytes), close);
            }
            Action::RoomPoll { room, since, name } => {
                self.room_poll(key, &room, since, name, close)
            }
            Action::RoomPost { room, message } => self.room_post(key, &room, message, close),
            Action::Typing { room, from } => self.typing(key, &room, from, close),
            Action::Presence { room } => self.presence(key, &room, close),
            Action::Stream {
                room,
                since,
                name,
                expires,
            } => self.open_stream(key, &room, since, (name, expires), close),
        }
    }

    /// Whether this client may post or type now ([`crate::limits`]); if not, answers 429
    /// with when to try again, and counts the refusal.
    fn within_rate(&mut self, key: usize, action: &Action, close: bool) -> bool {
        let signed = self.config.token_secret.is_some();
        let (act, name) = match action {
            Action::Broadcast { from, .. } => (Act::Post, from),
            Action::RoomPost { message, .. } => (Act::Post, &message.from),
            Action::Typing { from, .. } => (Act::Typing, from),
            _ => return true,
        };
        // With tokens the name is the token's sub (routing saw to it).
        let name = (name.as_str(), signed);
        let address = self.clients.address(self.conns[key].client);
        let now = self.now_ms();
        let refused = match self.limiter.allow(act, address, name, now) {
            Ok(()) => {
                self.schedule_limiter_sweep();
                return true;
            }
            Err(refused) => refused,
        };
        let (counter, message) = match act {
            Act::Post => (
                &self.stats.posts_refused,
                "slow down: more posts than --post-rate allows; try again after Retry-After",
            ),
            Act::Typing => (
                &self.stats.typing_refused,
                "typing: at most one event per --typing-interval",
            ),
        };
        stats::add(counter, 1);
        self.too_many(key, refused, message, close);
        false
    }

    /// Answers 429 with `message` and, in `Retry-After`, when the limiter will let the
    /// client in again.
    pub(super) fn too_many(&mut self, key: usize, refused: Refused, message: &str, close: bool) {
        let retry_after = match refused {
            Refused::Flooding(wait) => wait.as_secs_f64().ceil().max(1.0) as u64,
            Refused::Crowded => 1,
        };
        let retry_after = retry_after.to_string();
        let mut headers = answer::cors(self.config.cors_origin.as_deref());
        headers.push(("Retry-After", &retry_after));
        let bytes = answer::error(Status::TOO_MANY_REQUESTS, &headers, message, false);
        self.respond(key, Response::Owned(bytes), close);
    }

    /// Puts the rate limiter's sweep on the wheel, unless it is there.
    pub(super) fn schedule_limiter_sweep(&mut self) {
        if !self.limiter_sweep_scheduled {
            self.limiter_sweep_scheduled = true;
            self.schedule(Due::SweepLimiter, LIMITER_SWEEP);
        }
        self.count_limiter_entries();
    }

    /// Frees full buckets; comes back while any are left.
    pub(super) fn sweep_limiter(&mut self) {
        self.limiter_sweep_scheduled = false;
        self.limiter.sweep(self.now_ms());
        if self.limiter.entries() > 0 {
            self.schedule_limiter_sweep();
        }
        self.count_limiter_entries();
    }

    fn count_limiter_entries(&self) {
        stats::set(&self.stats.limiter_entries, self.limiter.entries() as u64);
    }
}
