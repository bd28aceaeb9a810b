//! What a request does, once routing has said which it is: the one `match` over
//! [`Action`], the classic protocol's three handlers (poll, post, stats) and a hand-off to
//! the room API's handlers in `rooms.rs`.

use super::Server;
use crate::answer;
use crate::outgoing::Response;
use crate::routes::Action;
use crate::sys;
use crate::waitlist::ListKind;

impl Server {
    /// Carries out what routing decided for the request just read.
    pub(super) fn apply(&mut self, key: usize, action: Action, close: bool) {
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
            Action::Stats => {
                let (worker, redis) = (self.config.worker, self.shared());
                let bytes = answer::stats(&self.stats, sys::rss_bytes(), worker, redis);
                self.respond(key, Response::Owned(bytes), close);
            }
            Action::RoomPoll { room, since, name } => {
                self.room_poll(key, &room, since, name, close)
            }
            Action::RoomPost { room, message } => self.room_post(key, &room, message, close),
            Action::Typing { room, from } => self.typing(key, &room, from, close),
            Action::Presence { room } => self.presence(key, &room, close),
            Action::Stream { room, since, name } => {
                self.open_stream(key, &room, since, name, close)
            }
        }
    }
}
