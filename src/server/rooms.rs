//! The room API's handlers (docs/PROTOCOL.md): each takes a request routing has already
//! validated and decides what to answer, or that the connection waits. The rules live in
//! `room.rs` and `presence.rs`, the bytes in `answer.rs` and `sse.rs`, the waiting and
//! delivering in `fanout.rs`; these functions only handle.

use super::fanout::StreamHolder;
use super::Server;
use crate::answer;
use crate::api::NewMessage;
use crate::chat::{Places, TooManyRooms};
use crate::event::Event;
use crate::http::Status;
use crate::outgoing::{Outgoing, Piece, Pieces, Response};
use crate::position::Position;
use crate::room::{Posted, Since, SinceError};
use crate::sse;
use crate::stats;
use crate::waitlist::ListKind;

impl Server {
    /// The CORS headers every room-API answer carries.
    fn cors(&self) -> Vec<(&str, &str)> {
        answer::cors(self.config.cors_origin.as_deref())
    }

    /// Answers with bytes built for this request.
    fn reply(&mut self, key: usize, bytes: Vec<u8>, close: bool) {
        self.respond(key, Response::Owned(bytes), close);
    }

    /// Answers `{"error":…}` with CORS and `extra` headers.
    fn refuse(
        &mut self,
        key: usize,
        status: Status,
        message: &str,
        extra: &[(&str, &str)],
        close: bool,
    ) {
        let mut headers = self.cors();
        headers.extend_from_slice(extra);
        let bytes = answer::error(status, &headers, message, false);
        self.reply(key, bytes, close);
    }

    /// The id of room `name` for the request of connection `key`, creating it on first
    /// use (see `Chat::room_id`). A room that requests wait on to be loaded from Redis is
    /// held, idle or not.
    pub(super) fn room_named(&mut self, key: usize, name: &str) -> Result<u32, TooManyRooms> {
        let now = self.now_ms();
        let (deferred, clients) = (&self.deferred, &self.clients);
        let places = Places {
            held: |room| deferred.contains_key(&room),
            keeper_weight: |keeper| (clients.pushed_out(keeper), clients.rooms(keeper)),
        };
        let opened = self.chat.room_id(name, places, now)?;
        if let Some(gone) = opened.gave_way {
            if !gone.is_vacant() {
                // A room that held something: this client pushes others out.
                self.clients.pushed_one_out(self.conns[key].client);
            }
            self.gave_way(gone, name);
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
        if !self.shared() && gone.stored() > 0 {
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
    fn room_or_refuse(&mut self, key: usize, room: &str, close: bool) -> Option<u32> {
        match self.room_named(key, room) {
            Ok(id) => {
                let rooms = self.chat.room_count() as u64;
                self.stats
                    .rooms
                    .store(rooms, std::sync::atomic::Ordering::Relaxed);
                Some(id)
            }
            Err(TooManyRooms) => {
                let message = "room limit reached (--max-rooms)";
                self.refuse(key, Status::INSUFFICIENT_STORAGE, message, &[], close);
                None
            }
        }
    }

    /// Whether `name` may be present in `room` for this connection's client: a name already
    /// present always may; a new one only under `--max-names-per-room` and the client's
    /// `--max-names-per-client`. Otherwise answers why not, and returns false.
    fn admit_name(&mut self, key: usize, room: u32, name: &str, close: bool) -> bool {
        let shared = self.shared();
        let copy = self.chat.room(room);
        if copy.names.contains(name) || (shared && copy.everyone.contains(name)) {
            return true;
        }
        // With --redis the room's names are everyone's, on every node.
        let present = copy.names.len().max(copy.everyone.len());
        if present >= self.config.max_names_per_room {
            let message = "name: this room has as many names present as it may hold \
                           (--max-names-per-room); come back without a name, or later";
            self.refuse(key, Status::INSUFFICIENT_STORAGE, message, &[], close);
            return false;
        }
        // With tokens every name is a token's sub, which nobody can invent: the cap on
        // names per address (against one client making names up) would only stop people
        // behind one NAT from being present.
        let signed = self.config.token_secret.is_some();
        let held = self.clients.names(self.conns[key].client) as usize;
        if !signed && held >= self.config.max_names_per_client {
            let retry_after = self.presence_window_ms().div_ceil(1000).to_string();
            let message = "name: your address has as many names present as it may \
                           (--max-names-per-client); reuse one of them, or wait for one to leave";
            let extra = [("Retry-After", retry_after.as_str())];
            self.refuse(key, Status::TOO_MANY_REQUESTS, message, &extra, close);
            return false;
        }
        true
    }

    /// A poll named `name` (already admitted): present now; announced if it just joined.
    fn seen(&mut self, key: usize, room: u32, name: String) {
        let (now, window) = (self.now_ms(), self.presence_window_ms());
        let client = self.conns[key].client;
        if self.chat.room(room).names.seen(&name, client, now, window) {
            self.clients.name_added(client);
            self.joined(room, name);
        }
        self.schedule_presence_sweep();
    }

    /// A name that just became present here is announced: at once to this room's waiters,
    /// or, with `--redis`, through Redis to every node's (if it is new there too).
    fn joined(&mut self, room: u32, name: String) {
        if self.shared() {
            self.announce_name(room, &name);
        } else {
            self.broadcast_events(room, &[Event::Join { name }]);
        }
    }

    /// `GET /rooms/{room}/messages?since=…`: answer from history at once, or park.
    pub(super) fn room_poll(
        &mut self,
        key: usize,
        room: &str,
        since: Option<Position>,
        name: Option<String>,
        close: bool,
    ) {
        let Some(room) = self.room_or_refuse(key, room, close) else {
            return;
        };
        let epoch = self.chat.epoch;
        // The position is checked first: a refused poll makes no name present.
        let since = match self.chat.room(room).since(epoch, since) {
            Ok(since) => since,
            Err(SinceError::Ahead) => {
                let message =
                    "since: this position is ahead of the room; poll without since to start again";
                return self.refuse(key, Status::BAD_REQUEST, message, &[], close);
            }
        };
        if let Some(name) = name {
            if !self.admit_name(key, room, &name, close) {
                return;
            }
            self.seen(key, room, name);
        }
        match since {
            Since::Answer(page) => {
                // Its own head, then the messages as pieces shared with the history.
                let pieces = answer::poll_page(&self.cors(), page.messages, page.next, page.gap);
                let response = Response::Pieces(Box::new(Pieces::new(pieces)));
                self.respond(key, response, close);
            }
            Since::Wait => self.park(key, room, ListKind::Poll, close),
        }
    }

    /// The answer to a JSON poll whose timeout passed: no messages, the same position.
    pub(super) fn poll_timeout_answer(&mut self, room: u32) -> Vec<u8> {
        let epoch = self.chat.epoch;
        let head = self.chat.room(room).head(epoch);
        answer::poll_answer(&self.cors(), std::iter::empty(), head, &[])
    }

    /// `POST /rooms/{room}/messages`: 201 with the id, or 200 with the original id for a
    /// retry with the same `client_id`.
    pub(super) fn room_post(&mut self, key: usize, name: &str, message: NewMessage, close: bool) {
        // Checked before the room is made, so a refused post makes no other room give way.
        let keeps = self.would_keep_its_place(name);
        let client = self.conns[key].client;
        if keeps && self.clients.rooms(client) as usize >= self.config.max_rooms_per_client {
            let message = "room: your address has given as many rooms their first message as \
                           it may (--max-rooms-per-client); post in a room that has messages";
            return self.refuse(key, Status::TOO_MANY_REQUESTS, message, &[], close);
        }
        let Some(room) = self.room_or_refuse(key, name, close) else {
            return;
        };
        let client_id = message.client_id.as_deref();
        if self.shared() {
            let message = (message.from.as_str(), message.text.as_str(), client_id);
            self.post_through_redis(key, room, message, false, close);
            // Sent to Redis (not refused for Redis being down): the room counts as kept.
            if keeps && self.chat.room(room).posted_here {
                self.keep_room(room, client);
            }
            return;
        }
        if keeps {
            self.keep_room(room, client);
        }
        let (seq, duplicate) = match self.post(room, &message.from, &message.text, client_id) {
            Posted::New(seq) => (seq, false),
            Posted::Duplicate(seq) => (seq, true),
        };
        let id = Position {
            epoch: self.chat.epoch,
            seq,
        };
        let bytes = answer::posted(&self.cors(), id, duplicate);
        self.reply(key, bytes, close);
    }

    /// `client` gave `room` its first message: the room counts against its
    /// `--max-rooms-per-client` until the room gives way.
    fn keep_room(&mut self, room: u32, client: crate::clients::ClientId) {
        self.clients.room_kept(client);
        self.chat.room(room).keeper = Some(client);
    }

    /// Whether a post to `room` would give it its first message (from this node), after
    /// which the room is no longer vacant (`Room::is_vacant`) and gives way only as the
    /// idle room unused longest: such posts count against the poster's
    /// `--max-rooms-per-client` while the room is here, so that no one client can take
    /// every place. Never the lobby, which always has its place; not with tokens, whose
    /// site vouches for its users; not when the limit is off.
    fn would_keep_its_place(&mut self, name: &str) -> bool {
        let shared = self.shared();
        let counted = self.config.max_rooms_per_client > 0 && self.config.token_secret.is_none();
        if name == crate::chat::LOBBY || !counted {
            return false;
        }
        let Some(room) = self.chat.find(name) else {
            return true; // a room not made yet
        };
        let copy = self.chat.room(room);
        if shared {
            !copy.posted_here
        } else {
            copy.last_seq() == 0
        }
    }

    /// `POST /rooms/{room}/typing` (within `--typing-interval`, checked before): 202.
    pub(super) fn typing(&mut self, key: usize, room: &str, from: String, close: bool) {
        let Some(room) = self.room_or_refuse(key, room, close) else {
            return;
        };
        if !self.shared() {
            self.broadcast_events(room, &[Event::Typing { from }]);
        } else if !self.typing_through_redis(room, &from) {
            let close = close
                || self.conns[key]
                    .flags
                    .has(crate::conn::Flags::CLOSE_AFTER_WRITE);
            return self.respond_unavailable(key, close);
        }
        let bytes = answer::accepted(&self.cors());
        self.reply(key, bytes, close);
    }

    /// `GET /rooms/{room}/presence`: `{"room":…,"present":[names]}`.
    pub(super) fn presence(&mut self, key: usize, room: &str, close: bool) {
        let Some(id) = self.room_or_refuse(key, room, close) else {
            return;
        };
        let cors = answer::cors(self.config.cors_origin.as_deref());
        let copy = self.chat.room(id);
        let present: Vec<&str> = match self.backplane.is_some() {
            // With --redis: everyone present on any node, as announced (sorted).
            true => copy.everyone.iter().map(String::as_str).collect(),
            false => copy.names.present(),
        };
        let bytes = answer::presence(&cors, room, &present);
        self.reply(key, bytes, close);
    }

    /// `GET /rooms/{room}/events`: the head, a `retry:` hint, what the client missed, then
    /// the connection stays in the room's stream list until either side closes, or the
    /// token it was opened with (`expires`, seconds since 1970) runs out.
    pub(super) fn open_stream(
        &mut self,
        key: usize,
        room: &str,
        since: Option<Position>,
        (name, expires): (Option<String>, Option<u64>),
        close: bool,
    ) {
        let Some(id) = self.room_or_refuse(key, room, close) else {
            return;
        };
        if self.told_to_come_back(key) {
            return;
        }
        if let Some(name) = &name {
            if !self.admit_name(key, id, name, close) {
                return;
            }
        }
        let epoch = self.chat.epoch;
        let replay = match self.chat.room(id).stream_replay(epoch, since) {
            Ok(replay) => replay,
            Err(SinceError::Ahead) => {
                let message = "since: this position is ahead of the room; reconnect without it";
                return self.refuse(key, Status::BAD_REQUEST, message, &[], close);
            }
        };
        let mut head = answer::stream_head(&self.cors());
        head.extend_from_slice(sse::RETRY_HINT);
        let pieces = std::iter::once(Piece::Owned(head))
            .chain(replay.pieces)
            .collect();
        // The head goes first: a join broadcast below reaches this stream too, and must
        // queue behind its status line, not go out before it.
        let membership = self.join(key, id, ListKind::Stream);
        let output = Outgoing::replay(pieces, replay.more_after);
        self.conns[key].start_stream(membership, output);
        self.clear_timer(key);
        stats::add(&self.stats.streams, 1);
        if name.is_some() || expires.is_some() {
            // The token is accepted until exp and the leeway for clock skew; the stream
            // ends then, never before a reconnect with the same token would be refused.
            let ends = |exp: u64| exp.saturating_add(crate::token::LEEWAY_SECS);
            let expires_ms = expires.map(|exp| self.loop_ms_at(ends(exp)));
            let holder = StreamHolder {
                name: name.clone(),
                expires_ms,
            };
            self.stream_holders.insert(key, holder);
        }
        if let Some(name) = name {
            let (now, window) = (self.now_ms(), self.presence_window_ms());
            let client = self.conns[key].client;
            let joined = self
                .chat
                .room(id)
                .names
                .stream_opened(&name, client, now, window);
            if joined {
                self.clients.name_added(client);
                self.joined(id, name);
            }
            self.schedule_presence_sweep();
        }
        self.write_output(key);
    }
}
