//! The room protocol carried out on the loop: polls that resume from a position, posts
//! that reach classic polls, JSON polls and event streams in one pass, typing and presence
//! events, and the streams themselves. The rules live in `room.rs`; this file only moves
//! bytes between them and connections. See docs/PROTOCOL.md for the wire format.

use super::{stats, Server, NAMES_SWEPT_PER_PASS, PRESENCE_SWEEP, STREAM_BACKLOG_BYTES};
use crate::api::NewMessage;
use crate::chat::{self, TooManyRooms};
use crate::conn::{Deadline, State};
use crate::http::{self, Status};
use crate::json;
use crate::outgoing::{Outgoing, Piece, Pieces, Response};
use crate::position::Position;
use crate::room::{Event, Page, Posted, Since, SinceError};
use crate::routes;
use crate::waitlist::ListKind;
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

impl Server {
    // ----- answering --------------------------------------------------------------------

    /// A JSON response of the room API.
    fn api_response(&self, status: Status, body: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        let cors = self.config.cors_origin.as_deref();
        routes::api_response(cors, status, body, extra, false)
    }

    fn api_reply(&mut self, key: usize, status: Status, body: &str, close: bool) {
        let response = self.api_response(status, body, &[]);
        self.respond(key, Response::Owned(response), close);
    }

    fn api_error(&mut self, key: usize, status: Status, message: &str, close: bool) {
        self.api_reply(key, status, &json::object1("error", message), close);
    }

    /// The room's id, creating it on first use; answers 507 past `--max-rooms`.
    fn room_or_refuse(&mut self, key: usize, room: &str, close: bool) -> Option<u32> {
        match self.chat.room_id(room) {
            Ok(id) => {
                let rooms = self.chat.room_count() as u64;
                self.stats
                    .rooms
                    .store(rooms, std::sync::atomic::Ordering::Relaxed);
                Some(id)
            }
            Err(TooManyRooms) => {
                self.api_error(
                    key,
                    Status::INSUFFICIENT_STORAGE,
                    "room limit reached (--max-rooms)",
                    close,
                );
                None
            }
        }
    }

    /// How long a name stays present after its last poll.
    pub(super) fn presence_window_ms(&self) -> u64 {
        (self.config.poll_timeout + self.config.presence_grace).as_millis() as u64
    }

    // ----- polls and posts --------------------------------------------------------------

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
        if let Some(name) = name {
            if !self.admit_name(key, room, &name, close) {
                return;
            }
            let (now, window) = (self.now_ms(), self.presence_window_ms());
            let client = self.conns[key].client;
            if self.chat.room(room).names.seen(&name, client, now, window) {
                self.clients.name_added(client);
                self.broadcast_events(room, &[Event::Join(name)]);
            }
            self.schedule_presence_sweep();
        }
        let epoch = self.chat.epoch;
        match self.chat.room(room).since(epoch, since) {
            Ok(Since::Answer(page)) => self.answer_with_page(key, page, close),
            Ok(Since::Wait) if self.draining_until.is_some() => {
                let response = self.retry_later_response();
                self.respond(key, response, true);
            }
            Ok(Since::Wait) => self.park(key, room, ListKind::Poll, close),
            Err(SinceError::Ahead) => self.api_error(
                key,
                Status::BAD_REQUEST,
                "since: this position is ahead of the room; poll without since to start again",
                close,
            ),
        }
    }

    /// Answers a poll from history with a page of shared pieces behind its own head.
    fn answer_with_page(&mut self, key: usize, page: Page, close: bool) {
        let cors = routes::api_headers(self.config.cors_origin.as_deref());
        let head = http::encode_head(Status::OK, http::JSON, &cors, page.len);
        let pieces = std::iter::once(Piece::Owned(head)).chain(page.pieces);
        let response = Response::Pieces(Box::new(Pieces::new(pieces)));
        self.respond(key, response, close);
    }

    /// Whether `name` may be present in `room` for this connection's client: a name already
    /// present always may; a new one only under `--max-names-per-room` and the client's
    /// `--max-names-per-client`. Otherwise answers why not, and returns false.
    fn admit_name(&mut self, key: usize, room: u32, name: &str, close: bool) -> bool {
        let names = &self.chat.room(room).names;
        if names.contains(name) {
            return true;
        }
        if names.len() >= self.config.max_names_per_room {
            let message = "name: this room has as many names present as it may hold \
                           (--max-names-per-room); come back without a name, or later";
            self.api_error(key, Status::INSUFFICIENT_STORAGE, message, close);
            return false;
        }
        if self.clients.names(self.conns[key].client) as usize >= self.config.max_names_per_client {
            let retry_after = self.presence_window_ms().div_ceil(1000).to_string();
            let body = json::object1(
                "error",
                "name: your address has as many names present as it may \
                 (--max-names-per-client); reuse one of them, or wait for one to leave",
            );
            let response = self.api_response(
                Status::TOO_MANY_REQUESTS,
                &body,
                &[("Retry-After", &retry_after)],
            );
            self.respond(key, Response::Owned(response), close);
            return false;
        }
        true
    }

    /// The answer to a JSON poll whose timeout passed: no messages, the same position.
    pub(super) fn poll_timeout_answer(&mut self, room: u32) -> Vec<u8> {
        let epoch = self.chat.epoch;
        let room = self.chat.room(room);
        let body = room.poll_answer(epoch, room.head(epoch).seq, false, &[]);
        self.api_response(Status::OK, &body, &[])
    }

    /// `POST /rooms/{room}/messages`: 201 with the id, or 200 with the original id for a
    /// retry with the same `client_id`.
    pub(super) fn room_post(&mut self, key: usize, room: &str, message: NewMessage, close: bool) {
        let Some(room) = self.room_or_refuse(key, room, close) else {
            return;
        };
        let epoch = self.chat.epoch;
        match self.post(
            room,
            &message.from,
            &message.text,
            message.client_id.as_deref(),
        ) {
            Posted::New(seq) => {
                let body = format!("{{\"id\":\"{}\"}}", Position { epoch, seq });
                self.api_reply(key, Status::CREATED, &body, close);
            }
            Posted::Duplicate(seq) => {
                let body = format!(
                    "{{\"id\":\"{}\",\"duplicate\":true}}",
                    Position { epoch, seq }
                );
                self.api_reply(key, Status::OK, &body, close);
            }
        }
    }

    /// Stores a message and delivers it to everyone waiting in the room, each kind of
    /// waiter getting its own encoding, built once: classic polls `{"ok":text}`, JSON polls
    /// the message with its position, streams an SSE frame.
    pub(super) fn post(
        &mut self,
        room: u32,
        from: &str,
        text: &str,
        client_id: Option<&str>,
    ) -> Posted {
        let epoch = self.chat.epoch;
        let history = self.chat.history;
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let posted = self
            .chat
            .room(room)
            .post(epoch, from, text, client_id, time_ms, &history);
        let Posted::New(seq) = posted else {
            return posted;
        };
        stats::add(&self.stats.messages, 1);
        let mut delivered = 0;
        if !self.chat.room(room).classic.is_empty() {
            delivered += self.answer_parked(room, ListKind::Classic, &chat::message_response(text));
        }
        if !self.chat.room(room).polls.is_empty() {
            let body = self.chat.room(room).poll_answer_for_new(epoch, seq);
            let response: Rc<[u8]> = self.api_response(Status::OK, &body, &[]).into();
            delivered += self.answer_parked(room, ListKind::Poll, &response);
        }
        if !self.chat.room(room).streams.is_empty() {
            let frame = self.chat.room(room).sse_message(seq);
            delivered += self.send_to_streams(room, &frame, true);
        }
        stats::add(&self.stats.deliveries, delivered);
        self.turn_deliveries += delivered;
        log::debug!(
            "message {seq} in {} delivered to {delivered}",
            self.chat.room(room).name
        );
        posted
    }

    /// Ephemeral events to everyone waiting in the room (not classic polls, which only
    /// know messages), in one answer or one frame each however many events there are. JSON
    /// polls are answered with them and come back; streams get them as one write.
    fn broadcast_events(&mut self, room: u32, events: &[Event]) {
        let epoch = self.chat.epoch;
        let mut delivered = 0;
        if !self.chat.room(room).polls.is_empty() {
            let r = self.chat.room(room);
            let body = r.poll_answer(epoch, r.head(epoch).seq, false, events);
            let response: Rc<[u8]> = self.api_response(Status::OK, &body, &[]).into();
            delivered += self.answer_parked(room, ListKind::Poll, &response);
        }
        if !self.chat.room(room).streams.is_empty() {
            let frames: String = events.iter().map(Event::sse).collect();
            let frame: Rc<[u8]> = frames.into_bytes().into();
            delivered += self.send_to_streams(room, &frame, false);
        }
        self.turn_deliveries += delivered;
    }

    /// `POST /rooms/{room}/typing`: 202, or 429 past one event per name per second.
    pub(super) fn typing(&mut self, key: usize, room: &str, from: String, close: bool) {
        let Some(room) = self.room_or_refuse(key, room, close) else {
            return;
        };
        let now = self.now_ms();
        if !self
            .chat
            .room(room)
            .typing_allowed(&from, now, TYPING_INTERVAL_MS)
        {
            let body = json::object1("error", "typing: at most one event per name per second");
            let response =
                self.api_response(Status::TOO_MANY_REQUESTS, &body, &[("Retry-After", "1")]);
            self.respond(key, Response::Owned(response), close);
            return;
        }
        self.schedule_presence_sweep();
        self.broadcast_events(room, &[Event::Typing(from)]);
        self.api_reply(key, Status::ACCEPTED, "{\"ok\":true}", close);
    }

    /// `GET /rooms/{room}/presence`: `{"room":…,"present":[names]}`.
    pub(super) fn presence(&mut self, key: usize, room: &str, close: bool) {
        let Some(id) = self.room_or_refuse(key, room, close) else {
            return;
        };
        let mut body = String::from("{\"room\":\"");
        json::escape_into(&mut body, room);
        body.push_str("\",\"present\":[");
        for (i, name) in self.chat.room(id).names.present().iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push('"');
            json::escape_into(&mut body, name);
            body.push('"');
        }
        body.push_str("]}");
        self.api_reply(key, Status::OK, &body, close);
    }

    pub(super) fn schedule_presence_sweep(&mut self) {
        if self.presence_due.is_none() {
            self.presence_due = Some(Instant::now() + PRESENCE_SWEEP);
        }
    }

    /// Step 5 of the loop: once a second while anyone is named, tell rooms who left, each
    /// room's leavers in one event batch. At most [`NAMES_SWEPT_PER_PASS`] names per pass:
    /// 60,000 names expiring together once froze the loop for 18 s writing leave events;
    /// now the rest wait for the next pass, which comes at once. Nothing at all happens
    /// while nobody uses names.
    pub(super) fn sweep_presence_if_due(&mut self) {
        match self.presence_due {
            Some(due) if Instant::now() >= due => {}
            _ => return,
        }
        self.presence_due = None;
        let now = self.now_ms();
        let mut budget = NAMES_SWEPT_PER_PASS;
        let mut still_named = false;
        for room in self.chat.room_ids() {
            if !self.chat.room(room).has_presence() {
                continue;
            }
            if budget == 0 {
                // More may be due in this room: come back next pass.
                self.presence_due = Some(Instant::now());
                return;
            }
            self.chat.room(room).forget_typing(now, TYPING_INTERVAL_MS);
            let left = self.chat.room(room).names.sweep(now, budget);
            budget -= left.len();
            let mut events = Vec::with_capacity(left.len());
            for gone in left {
                self.clients.name_removed(gone.owner);
                events.push(Event::Leave(gone.name.to_string()));
            }
            if !events.is_empty() {
                self.broadcast_events(room, &events);
            }
            still_named |= self.chat.room(room).has_presence();
        }
        if budget == 0 {
            self.presence_due = Some(Instant::now());
        } else if still_named {
            self.schedule_presence_sweep();
        }
    }

    // ----- event streams ----------------------------------------------------------------

    /// `GET /rooms/{room}/events`: the head, a `retry:` hint, what the client missed, then
    /// the connection stays in the room's stream list until either side closes.
    pub(super) fn open_stream(
        &mut self,
        key: usize,
        room: &str,
        since: Option<Position>,
        name: Option<String>,
        close: bool,
    ) {
        let Some(id) = self.room_or_refuse(key, room, close) else {
            return;
        };
        if self.draining_until.is_some() {
            let response = self.retry_later_response();
            self.respond(key, response, true);
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
                return self.api_error(key, Status::BAD_REQUEST, message, close);
            }
        };
        let mut head =
            http::encode_stream_head(&routes::api_headers(self.config.cors_origin.as_deref()));
        // EventSource reconnects by itself after this many ms, resuming from the last id.
        head.extend_from_slice(b"retry: 2000\n\n");
        let pieces = std::iter::once(Piece::Owned(head))
            .chain(replay.pieces)
            .collect();
        let membership = self.join(key, id, ListKind::Stream);
        let conn = &mut self.conns[key];
        conn.state = State::Streaming(membership);
        conn.close_after_write = false;
        // The head goes first: a join broadcast below reaches this stream too, and must
        // queue behind its status line, not go out before it.
        conn.output = Some(Outgoing::replay(pieces, replay.more_after));
        self.clear_timer(key);
        stats::add(&self.stats.streams, 1);
        if let Some(name) = name {
            let (now, window) = (self.now_ms(), self.presence_window_ms());
            let client = self.conns[key].client;
            let joined = self
                .chat
                .room(id)
                .names
                .stream_opened(&name, client, now, window);
            self.stream_names.insert(key, name.clone());
            if joined {
                self.clients.name_added(client);
                self.broadcast_events(id, &[Event::Join(name)]);
            }
            self.schedule_presence_sweep();
        }
        self.write_output(key);
    }

    /// Writes one frame to every stream in the room (each keeps its own queue only if its
    /// socket is full). `message`: the frame is a stored message, which a stream still
    /// replaying history will reach there, in order. Returns how many streams got it.
    fn send_to_streams(&mut self, room: u32, frame: &Rc<[u8]>, message: bool) -> u64 {
        // Streams stay in the list while being written to, so walk a copy of the keys: a
        // stream dropped as too slow leaves the list in the middle of the walk.
        let waiters: Vec<_> = self.chat.room(room).streams.iter().collect();
        let mut sent = 0;
        for waiter in waiters {
            let key = waiter.key as usize;
            match self.conns.get(key) {
                Some(conn) if conn.generation == waiter.generation => {}
                _ => continue,
            }
            self.stream_send(key, frame, message);
            sent += 1;
        }
        sent
    }

    /// Queues one frame on a stream and writes what the socket takes.
    pub(super) fn stream_send(&mut self, key: usize, frame: &Rc<[u8]>, message: bool) {
        let conn = &mut self.conns[key];
        if !matches!(conn.state, State::Streaming(_)) {
            return;
        }
        if let Some(output) = conn.output.as_mut() {
            if message && output.is_replaying() {
                return; // the replay reaches this message in the history, in order
            }
            let queued = output.push_live(frame);
            if queued > STREAM_BACKLOG_BYTES {
                stats::add(&self.stats.dropped_slow, 1);
                log::debug!("#{key} stream fell {queued} bytes behind; dropping");
                self.close(key);
            }
            return;
        }
        conn.output = Some(Outgoing::new(Response::Shared(Rc::clone(frame))));
        self.clear_timer(key);
        self.write_output(key);
    }

    /// A stream's page of replayed history is out: queue the next one from the room.
    pub(super) fn refill_stream(&mut self, key: usize, after: u64) {
        let State::Streaming(membership) = self.conns[key].state else {
            return;
        };
        let epoch = self.chat.epoch;
        let page = self.chat.room(membership.room).stream_refill(epoch, after);
        self.conns[key].output = Some(Outgoing::replay(page.pieces, page.more_after));
    }

    /// Everything queued on a stream is out: wait with a heartbeat timer, or close a stream
    /// that was being ended for shutdown.
    pub(super) fn stream_drained(&mut self, key: usize) {
        if self.conns[key].close_after_write {
            self.unpark(key);
            self.conns[key].state = State::Writing;
            self.response_done(key);
            return;
        }
        self.set_timer(key, Deadline::Heartbeat);
    }

    /// Shutdown: tell the stream when to reconnect (random, like the polls' Retry-After),
    /// then close it once that is written.
    pub(super) fn end_stream_for_shutdown(&mut self, key: usize) {
        let delay_ms = self.random.in_range(super::RETRY_DELAY_MS);
        let frame = format!(
            "retry: {delay_ms}\nevent: shutdown\ndata: {{\"retry_after_ms\":{delay_ms}}}\n\n"
        );
        // Written now, or queued behind a write in progress; either way stream_drained
        // closes the stream once it is out.
        self.conns[key].close_after_write = true;
        self.stream_send(key, &frame.into_bytes().into(), false);
    }
}

/// One typing event per name per this many milliseconds.
const TYPING_INTERVAL_MS: u64 = 1000;
