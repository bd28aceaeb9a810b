//! What a WebSocket says, once its frames are whole messages (the shell's codec, `ws`, saw
//! to that): `resume` starts its replay, `post` and `typing` become the very requests the
//! HTTP API has (`Action::RoomPost`, `Action::Typing`), judged by the same rules, limits
//! and tokens in `requests.rs`; their answer comes back to the shell as any answer does,
//! and the shell turns it into an ack frame ([`Chat::take_ack`]). Nothing here is new
//! policy: a socket is one more way to ask.

use super::asked::Asked;
use super::effect::{Effect, Now};
use super::state::Chat;
use crate::answer::Also;
use crate::api;
use crate::conn::Membership;
use crate::position::Position;
use crate::room::{Framing, SinceError};
use crate::routes::Action;
use crate::waitlist::Waiter;
use crate::websocket;
use serde_json::Value;
use std::rc::Rc;

impl Chat {
    /// WebSocket `conn`, in its room's list at `at`, from client `client`, sent the text
    /// message `text` (whole, UTF-8, within the size cap).
    pub fn socket_said(
        &mut self,
        now: Now,
        conn: Waiter,
        (at, client): (Membership, u32),
        text: &str,
    ) {
        let Ok(Value::Object(mut frame)) = serde_json::from_str::<Value>(text) else {
            let message = "a frame is one JSON object, such as {\"type\":\"post\",\"text\":\"hi\"}";
            return self.tell_socket(conn, websocket::error(400, message));
        };
        let kind = frame.get("type").and_then(Value::as_str).map(str::to_owned);
        if self.held.contains(&conn.key) {
            // The first frame: a `resume` says where the replay starts; anything else
            // starts it from the beginning, before it is acted on.
            let since = match kind.as_deref() {
                Some("resume") => match frame.get("since") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if s.is_empty() || s == "0" => None,
                    Some(Value::String(s)) => match Position::parse(s) {
                        Ok(at) => Some(at),
                        Err(_) => {
                            let message = "since: a position looks like 5f3a09c2-42";
                            return self.tell_socket(conn, websocket::error(400, message));
                        }
                    },
                    Some(_) => {
                        let message = "since: a position is a string, such as \"5f3a09c2-42\"";
                        return self.tell_socket(conn, websocket::error(400, message));
                    }
                },
                _ => None,
            };
            self.release(conn, at, since);
            if kind.as_deref() == Some("resume") {
                return;
            }
        }
        let room = self.rooms.room(at.room).name.to_string();
        let name = self.holders.get(&conn.key).and_then(|h| h.name.clone());
        // With tokens the socket's name is the token's `sub`, which a frame may repeat but
        // not contradict; without, a frame may name anyone, as an HTTP post may.
        let signed = name
            .as_deref()
            .filter(|_| self.config.token_secret.is_some());
        if let (false, Some(name)) = (frame.contains_key("from"), &name) {
            frame.insert("from".to_owned(), Value::String(name.clone()));
        }
        // Echoed in the ack of a post refused before it is read as one.
        let client_id = frame
            .get("client_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let body = Value::Object(frame).to_string();
        let json = Some("application/json");
        let asked = Asked {
            conn,
            client,
            close: false,
            caught_up: false,
        };
        match kind.as_deref() {
            Some("post") => {
                let max = self.config.max_message_bytes;
                match api::parse_message(json, body.as_bytes(), max, signed) {
                    Ok(message) => {
                        let ack = (websocket::Asked::Post, message.client_id.clone());
                        self.acks.insert(conn.key, ack);
                        self.handle(now, asked, Action::RoomPost { room, message });
                    }
                    Err(refused) => {
                        let answer = self.replies.error(
                            refused.status,
                            refused.message,
                            Also::Nothing,
                            false,
                        );
                        let ack =
                            websocket::ack(&answer, websocket::Asked::Post, client_id.as_deref());
                        self.tell_socket(conn, ack);
                    }
                }
            }
            Some("typing") => match api::parse_typing(json, body.as_bytes(), signed) {
                Ok(from) => {
                    self.acks.insert(conn.key, (websocket::Asked::Typing, None));
                    self.handle(now, asked, Action::Typing { room, from });
                }
                Err(refused) => {
                    let answer =
                        self.replies
                            .error(refused.status, refused.message, Also::Nothing, false);
                    let ack = websocket::ack(&answer, websocket::Asked::Typing, None);
                    self.tell_socket(conn, ack);
                }
            },
            Some("resume") => {
                let message = "resume: only as the first frame, and only on a socket opened \
                               without ?since=";
                self.tell_socket(conn, websocket::error(400, message));
            }
            _ => {
                let message = "type: a frame is a post, typing or resume";
                self.tell_socket(conn, websocket::error(400, message));
            }
        }
    }

    /// The answer to WebSocket `conn`'s post or typing event is `response` (the HTTP
    /// answer it would have had): its ack frame. `None` when `conn` asked nothing over a
    /// socket (an ordinary HTTP connection: answer it as such).
    pub fn take_ack(&mut self, conn: Waiter, response: &[u8]) -> Option<Vec<u8>> {
        let (asked, client_id) = self.acks.remove(&conn.key)?;
        Some(websocket::ack(response, asked, client_id.as_deref()))
    }

    /// A WebSocket waiting for its first frame starts its replay after `since` (`None`:
    /// from the start). One whose position is ahead of the room is told, and closed.
    pub(super) fn release(&mut self, conn: Waiter, at: Membership, since: Option<Position>) {
        if !self.held.remove(&conn.key) {
            return;
        }
        let epoch = self.epoch(at.room);
        let room = self.rooms.room(at.room);
        match room.stream_replay(epoch, since, Framing::WebSocket) {
            Ok(page) => self.effects.push(Effect::Replay {
                to: conn,
                pieces: page.pieces,
                more_after: page.more_after,
            }),
            Err(SinceError::Ahead) => {
                let message = "since: this position is ahead of the room; resume without it";
                let mut frame = websocket::error(400, message);
                let close = crate::ws::encode_close(crate::ws::CloseCode::POLICY, "since ahead");
                frame.extend_from_slice(&close);
                self.effects.push(Effect::EndStream {
                    to: conn,
                    frame: frame.into(),
                });
            }
        }
    }

    /// WebSocket `conn` said nothing for [`super::RESUME_WAIT`] after it opened without
    /// `?since=`: its replay starts from the beginning, as an event stream's would.
    pub fn resume_wait_over(&mut self, conn: Waiter, at: Membership) {
        self.release(conn, at, None);
    }

    /// One frame for one socket (an error, an ack), behind whatever it is owed.
    fn tell_socket(&mut self, conn: Waiter, frame: Vec<u8>) {
        let frame: Rc<[u8]> = frame.into();
        self.effects.push(Effect::Frames {
            to: vec![conn],
            frame,
            message: false,
            replay_again: false,
        });
    }
}
