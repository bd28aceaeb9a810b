//! What each request does, once routing has said which it is (docs/PROTOCOL.md): the
//! per-client rate limits, the one `match` over [`Action`], and each handler's rule —
//! positions, names, the room caps — ending in an answer, a wait, or a post. The rules of
//! history live in `room.rs` and `presence.rs`, the bytes in `answer.rs` and `sse.rs`;
//! these functions decide which of them applies.

use super::asked::Asked;
use super::effect::{Effect, Now, Sweep};
use super::rooms::{Places, TooManyRooms, LOBBY};
use super::state::{Chat, StreamHolder};
use super::store::Outside;
use crate::answer::Also;
use crate::api::NewMessage;
use crate::clients::ClientId;
use crate::conn::Membership;
use crate::event::Event;
use crate::http::Status;
use crate::limits::{Act, Refused};
use crate::outgoing::{Outgoing, Piece, Pieces, Response};
use crate::position::Position;
use crate::room::{Framing, Since, SinceError, StreamPage};
use crate::routes::{Action, Denial};
use crate::sse;
use crate::stats;
use crate::waitlist::{ListKind, Waiter};
use crate::websocket;
use std::time::Duration;

/// Which kind of stream a request opens.
enum Opening {
    /// Server-Sent Events.
    Sse,
    /// A WebSocket, answered 101 with this `Sec-WebSocket-Accept`.
    Socket {
        /// The handshake's answer to the client's key.
        accept: String,
    },
}

/// How often the rate limiter forgets clients whose buckets are full again, while it
/// holds any.
const LIMITER_SWEEP: Duration = Duration::from_secs(1);

impl Chat {
    /// Carries out what routing decided for one request.
    pub(super) fn handle(&mut self, now: Now, asked: Asked, action: Action) {
        if !self.within_rate(now, asked, &action) {
            return;
        }
        // With --redis, a read waits for its room's copy to be loaded.
        let Some(action) = self.when_ready(now, asked, action) else {
            return;
        };
        let close = asked.close;
        match action {
            Action::Reply {
                response,
                close: reply_close,
            } => self.effects.push(Effect::Answer {
                to: asked.conn,
                response,
                close: close || reply_close,
            }),
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
                self.effects.push(Effect::Answer {
                    to: asked.conn,
                    response,
                    close: close || reply_close,
                });
            }
            Action::Park => {
                let lobby = self.rooms.lobby();
                self.park(asked, lobby, ListKind::Classic);
            }
            Action::Broadcast { from, message } => {
                let lobby = self.rooms.lobby();
                self.store_post(now, asked, lobby, (&from, &message, None), true);
            }
            // Answered by the shell, which reads the process's memory for it.
            Action::Stats { .. } => debug_assert!(false, "the shell answers /stats"),
            Action::RoomPoll { room, since, name } => {
                self.room_poll(now, asked, &room, since, name)
            }
            Action::RoomPost { room, message } => self.room_post(now, asked, &room, message),
            Action::Typing { room, from } => self.typing(now, asked, &room, from),
            Action::Presence { room } => self.presence(now, asked, &room),
            Action::Stream {
                room,
                since,
                name,
                expires,
            } => self.open_stream(now, asked, &room, since, (name, expires), Opening::Sse),
            Action::Socket {
                room,
                since,
                name,
                expires,
                accept,
            } => {
                let opening = Opening::Socket { accept };
                self.open_stream(now, asked, &room, since, (name, expires), opening)
            }
        }
    }

    /// Whether this client may post or type now ([`crate::limits`]); if not, answers 429
    /// with when to try again, and counts the refusal.
    fn within_rate(&mut self, now: Now, asked: Asked, action: &Action) -> bool {
        let signed = self.config.token_secret.is_some();
        let (act, name) = match action {
            Action::Broadcast { from, .. } => (Act::Post, from),
            Action::RoomPost { message, .. } => (Act::Post, &message.from),
            Action::Typing { from, .. } => (Act::Typing, from),
            _ => return true,
        };
        // With tokens the name is the token's sub (routing saw to it).
        let name = (name.as_str(), signed);
        let address = self.clients.address(asked.client);
        let refused = match self.limiter.allow(act, address, name, now.ms) {
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
        self.too_many(asked, refused, message);
        false
    }

    /// Answers 429 with `message` and, in `Retry-After`, when the limiter will let the
    /// client in again.
    pub(super) fn too_many(&mut self, asked: Asked, refused: Refused, message: &str) {
        let retry_after = match refused {
            Refused::Flooding(wait) => wait.as_secs_f64().ceil().max(1.0) as u64,
            Refused::Crowded => 1,
        };
        let also = Also::RetryAfter(retry_after);
        self.refuse(asked, Status::TOO_MANY_REQUESTS, message, also);
    }

    /// Puts the rate limiter's sweep on the wheel, unless it is there.
    pub(super) fn schedule_limiter_sweep(&mut self) {
        if !self.limiter_sweep_due {
            self.limiter_sweep_due = true;
            self.effects.push(Effect::Schedule {
                sweep: Sweep::Limiter,
                after: LIMITER_SWEEP,
            });
        }
        stats::set(&self.stats.limiter_entries, self.limiter.entries() as u64);
    }

    /// Frees full buckets; comes back while any are left.
    pub(super) fn sweep_limiter(&mut self, now: Now) {
        self.limiter_sweep_due = false;
        self.limiter.sweep(now.ms);
        if self.limiter.entries() > 0 {
            self.schedule_limiter_sweep();
        }
        stats::set(&self.stats.limiter_entries, self.limiter.entries() as u64);
    }

    /// Answers `{"error":…}`, and what `also` says.
    pub(super) fn refuse(&mut self, asked: Asked, status: Status, message: &str, also: Also) {
        let bytes = self.replies.error(status, message, also, false);
        self.answer(asked.conn, bytes, asked.close);
    }

    /// Holds the connection as a pending poll in `room` until a message, an event or its
    /// timeout; or, while the server shuts down, tells it to come back later.
    fn park(&mut self, asked: Asked, room: u32, list: ListKind) {
        if self.told_to_come_back(asked) {
            return;
        }
        let at = self.join(asked.conn, room, list);
        self.effects.push(Effect::Park {
            to: asked.conn,
            at,
            close: asked.close,
        });
        stats::add(&self.stats.pending_polls, 1);
    }

    /// Adds the connection to one of a room's lists.
    fn join(&mut self, conn: Waiter, room: u32, list: ListKind) -> Membership {
        let index = self.rooms.list(room, list).join(conn);
        Membership { room, list, index }
    }

    /// The rule for a request that would wait (a poll, a stream): while the server shuts
    /// down it is told to come back later instead. Returns true when it was.
    fn told_to_come_back(&mut self, asked: Asked) -> bool {
        if self.draining {
            self.come_back_later(asked.conn);
        }
        self.draining
    }

    /// The id of room `name` for this request, creating it on first use (see
    /// `Rooms::room_id`). A room that requests wait on to be loaded from Redis is held,
    /// idle or not.
    pub(super) fn room_named(
        &mut self,
        now: Now,
        asked: Asked,
        name: &str,
    ) -> Result<u32, TooManyRooms> {
        let clients = &self.clients;
        let store = Outside(&self.shared);
        let places = Places {
            held: |room| store.holds(room),
            stored: |room| store.stored(room),
            keeper_weight: |keeper| (clients.pushed_out(keeper), clients.rooms(keeper)),
        };
        let opened = self.rooms.room_id(name, places, now.ms)?;
        if let Some(gone) = opened.gave_way {
            if !gone.is_vacant() || store.stored(opened.id) {
                // A room that held something: this client pushes others out.
                self.clients.pushed_one_out(asked.client);
            }
            self.gave_way(gone, name);
        }
        if opened.made {
            self.room_made(opened.id, name);
        }
        Ok(opened.id)
    }

    /// A room gave its place to `to` at the `--max-rooms` cap. Its keeper may give another
    /// room its first message. Without Redis its history is gone, which is counted and
    /// logged; with Redis, Redis keeps it and the room's next use reads it back.
    fn gave_way(&mut self, gone: crate::room::Room, to: &str) {
        if let Some(keeper) = gone.keeper {
            self.clients.room_given_back(keeper);
        }
        stats::add(&self.stats.rooms_given_way, 1);
        if !self.history_kept_elsewhere() && gone.stored() > 0 {
            stats::add(&self.stats.dropped_room_history, 1);
            log::info!(
                "room {} gave its place to {to} (--max-rooms): its {} messages are gone",
                gone.name,
                gone.stored()
            );
        } else {
            log::debug!("room {} gave its place to {to} (--max-rooms)", gone.name);
        }
    }

    /// The room's id, creating it on first use; answers 507 past `--max-rooms`.
    fn room_or_refuse(&mut self, now: Now, asked: Asked, room: &str) -> Option<u32> {
        match self.room_named(now, asked, room) {
            Ok(id) => {
                stats::set(&self.stats.rooms, self.rooms.room_count() as u64);
                Some(id)
            }
            Err(TooManyRooms) => {
                let message = "room limit reached (--max-rooms)";
                self.refuse(asked, Status::INSUFFICIENT_STORAGE, message, Also::Nothing);
                None
            }
        }
    }

    /// Whether `name` may be present in `room` for this client: a name already present
    /// always may; a new one only under `--max-names-per-room` and the client's
    /// `--max-names-per-client`. Otherwise answers why not, and returns false.
    fn admit_name(&mut self, asked: Asked, room: u32, name: &str) -> bool {
        let everyone = self.everyone(room);
        let anywhere = everyone.is_some_and(|all| all.contains(name));
        // With --redis the room's names are everyone's, on every node.
        let elsewhere = everyone.map_or(0, |all| all.len());
        let names = &self.rooms.room(room).names;
        if names.contains(name) || anywhere {
            return true;
        }
        let present = names.len().max(elsewhere);
        if present >= self.config.max_names_per_room {
            let message = "name: this room has as many names present as it may hold \
                           (--max-names-per-room); come back without a name, or later";
            self.refuse(asked, Status::INSUFFICIENT_STORAGE, message, Also::Nothing);
            return false;
        }
        // With tokens every name is a token's sub, which nobody can invent: the cap on
        // names per address (against one client making names up) would only stop people
        // behind one NAT from being present.
        let signed = self.config.token_secret.is_some();
        let held = self.clients.names(asked.client) as usize;
        if !signed && held >= self.config.max_names_per_client {
            let retry_after = self.presence_window_ms().div_ceil(1000);
            let message = "name: your address has as many names present as it may \
                           (--max-names-per-client); reuse one of them, or wait for one to leave";
            let also = Also::RetryAfter(retry_after);
            self.refuse(asked, Status::TOO_MANY_REQUESTS, message, also);
            return false;
        }
        true
    }

    /// A poll named `name` (already admitted): present now; announced if it just joined.
    fn seen(&mut self, now: Now, asked: Asked, room: u32, name: String) {
        let window = self.presence_window_ms();
        let names = &mut self.rooms.room(room).names;
        if names.seen(&name, asked.client, now.ms, window) {
            self.clients.name_added(asked.client);
            self.joined(room, name);
        }
        self.schedule_presence_sweep();
    }

    /// A name that just became present here is announced: at once to this room's waiters,
    /// or, with `--redis`, through Redis to every node's (if it is new there too).
    fn joined(&mut self, room: u32, name: String) {
        self.announce(room, vec![Event::Join { name }]);
    }

    /// `GET /rooms/{room}/messages?since=…`: answer from history at once, or park.
    fn room_poll(
        &mut self,
        now: Now,
        asked: Asked,
        room: &str,
        since: Option<Position>,
        name: Option<String>,
    ) {
        let Some(room) = self.room_or_refuse(now, asked, room) else {
            return;
        };
        let epoch = self.epoch(room);
        // The position is checked first: a refused poll makes no name present.
        let since = match self.rooms.room(room).since(epoch, since) {
            Ok(since) => since,
            Err(SinceError::Ahead) => {
                let message =
                    "since: this position is ahead of the room; poll without since to start again";
                return self.refuse(asked, Status::BAD_REQUEST, message, Also::Nothing);
            }
        };
        if let Some(name) = name {
            if !self.admit_name(asked, room, &name) {
                return;
            }
            self.seen(now, asked, room, name);
        }
        match since {
            Since::Answer(page) => {
                // Its own head, then the messages as pieces shared with the history.
                let pieces = self.replies.poll_page(page.messages, page.next, page.gap);
                self.effects.push(Effect::Answer {
                    to: asked.conn,
                    response: Response::Pieces(Box::new(Pieces::new(pieces))),
                    close: asked.close,
                });
            }
            Since::Wait => self.park(asked, room, ListKind::Poll),
        }
    }

    /// `POST /rooms/{room}/messages`: 201 with the id, or 200 with the original id for a
    /// retry with the same `client_id`.
    fn room_post(&mut self, now: Now, asked: Asked, name: &str, message: NewMessage) {
        // Checked before the room is made, so a refused post makes no other room give way.
        let keeps = self.would_keep_its_place(name);
        let client = asked.client;
        if keeps && self.clients.rooms(client) as usize >= self.config.max_rooms_per_client {
            let message = "room: your address has given as many rooms their first message as \
                           it may (--max-rooms-per-client); post in a room that has messages";
            return self.refuse(asked, Status::TOO_MANY_REQUESTS, message, Also::Nothing);
        }
        let Some(room) = self.room_or_refuse(now, asked, name) else {
            return;
        };
        let post = (
            message.from.as_str(),
            message.text.as_str(),
            message.client_id.as_deref(),
        );
        // Taken (not refused for Redis being down): the room counts as kept.
        if self.store_post(now, asked, room, post, false) && keeps {
            self.keep_room(room, client);
        }
    }

    /// `client` gave `room` its first message: the room counts against its
    /// `--max-rooms-per-client` until the room gives way.
    fn keep_room(&mut self, room: u32, client: ClientId) {
        self.clients.room_kept(client);
        self.rooms.room(room).keeper = Some(client);
    }

    /// Whether a post to `room` would give it its first message (from this node), after
    /// which the room is no longer vacant (`Room::is_vacant`) and gives way only as the
    /// idle room unused longest: such posts count against the poster's
    /// `--max-rooms-per-client` while the room is here, so that no one client can take
    /// every place. Never the lobby, which always has its place; not with tokens, whose
    /// site vouches for its users; not when the limit is off.
    fn would_keep_its_place(&mut self, name: &str) -> bool {
        let counted = self.config.max_rooms_per_client > 0 && self.config.token_secret.is_none();
        if name == LOBBY || !counted {
            return false;
        }
        let Some(room) = self.rooms.find(name) else {
            return true; // a room not made yet
        };
        self.first_post_here(room)
    }

    /// `POST /rooms/{room}/typing` (within `--typing-interval`, checked before): 202.
    fn typing(&mut self, now: Now, asked: Asked, room: &str, from: String) {
        let Some(room) = self.room_or_refuse(now, asked, room) else {
            return;
        };
        if !self.announce(room, vec![Event::Typing { from }]) {
            return self.redis_unavailable(asked.conn, asked.close);
        }
        let bytes = self.replies.accepted();
        self.answer(asked.conn, bytes, asked.close);
    }

    /// `GET /rooms/{room}/presence`: `{"room":…,"present":[names]}`.
    fn presence(&mut self, now: Now, asked: Asked, room: &str) {
        let Some(id) = self.room_or_refuse(now, asked, room) else {
            return;
        };
        let present: Vec<&str> = match self.everyone(id) {
            // With --redis: everyone present on any node, as announced (sorted).
            Some(all) => all.iter().map(String::as_str).collect(),
            None => self.rooms.room(id).names.present(),
        };
        let bytes = self.replies.presence(room, &present);
        self.answer(asked.conn, bytes, asked.close);
    }

    /// `GET /rooms/{room}/events`: the head, a `retry:` hint, what the client missed, then
    /// the connection stays in the room's stream list until either side closes, or the
    /// token it was opened with (`expires`, seconds since 1970) runs out.
    /// `GET /rooms/{room}/ws` the same, with a 101 for a head and WebSocket frames; opened
    /// without `?since=`, its replay waits for its first frame ([`Chat::release`]).
    fn open_stream(
        &mut self,
        now: Now,
        asked: Asked,
        room: &str,
        since: Option<Position>,
        (name, expires): (Option<String>, Option<u64>),
        opening: Opening,
    ) {
        let Some(id) = self.room_or_refuse(now, asked, room) else {
            return;
        };
        if self.told_to_come_back(asked) {
            return;
        }
        if let Some(name) = &name {
            if !self.admit_name(asked, id, name) {
                return;
            }
        }
        let epoch = self.epoch(id);
        let (framing, list) = match opening {
            Opening::Sse => (Framing::Sse, ListKind::Stream),
            Opening::Socket { .. } => (Framing::WebSocket, ListKind::Socket),
        };
        let hold = framing == Framing::WebSocket && since.is_none();
        let replay = match self.rooms.room(id).stream_replay(epoch, since, framing) {
            Ok(_) if hold => StreamPage {
                pieces: Vec::new(),
                more_after: None,
            },
            Ok(replay) => replay,
            Err(SinceError::Ahead) => {
                let message = "since: this position is ahead of the room; reconnect without it";
                return self.refuse(asked, Status::BAD_REQUEST, message, Also::Nothing);
            }
        };
        let head = match opening {
            Opening::Sse => {
                let mut head = self.replies.stream_head();
                head.extend_from_slice(sse::RETRY_HINT);
                head
            }
            Opening::Socket { accept } => websocket::switching_protocols(&accept),
        };
        let pieces = std::iter::once(Piece::Owned(head))
            .chain(replay.pieces)
            .collect();
        // The stream starts before anything below is broadcast: a join reaches this
        // stream too, and must queue behind its status line, not go out before it.
        let at = self.join(asked.conn, id, list);
        self.effects.push(Effect::Stream {
            to: asked.conn,
            at,
            output: Outgoing::replay(pieces, replay.more_after),
            hold,
        });
        if hold {
            self.held.insert(asked.conn.key);
        }
        let open = match list {
            ListKind::Socket => &self.stats.sockets,
            _ => &self.stats.streams,
        };
        stats::add(open, 1);
        if name.is_some() || expires.is_some() {
            // The token is accepted until exp and the leeway for clock skew; the stream
            // ends then, never before a reconnect with the same token would be refused.
            let ends = |exp: u64| exp.saturating_add(crate::token::LEEWAY_SECS);
            let expires_ms = expires.map(|exp| now.loop_ms_at(ends(exp)));
            let holder = StreamHolder {
                name: name.clone(),
                expires_ms,
                ended: false,
            };
            self.holders.insert(asked.conn.key, holder);
        }
        if let Some(name) = name {
            let window = self.presence_window_ms();
            let names = &mut self.rooms.room(id).names;
            if names.stream_opened(&name, asked.client, now.ms, window) {
                self.clients.name_added(asked.client);
                self.joined(id, name);
            }
            self.schedule_presence_sweep();
        }
    }
}
