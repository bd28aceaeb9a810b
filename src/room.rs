//! One chat room: its message history (a ring capped by count and bytes), who is waiting in
//! it, and who is present by name. Knows no sockets and reads no
//! clock: times come in as milliseconds from the caller.
//!
//! Every message is encoded once, when it is posted, as its SSE frame, whose `data:` line
//! is the message's JSON; the frame is shared (`Rc`) by the history, by every stream it is
//! broadcast to and by every replay that carries it, and a poll answer points into it for
//! the JSON. So a client that resumes costs a page of pointers into the history, never a
//! copy of it, however much it asks for (`poll_page`, `stream_page`).

use crate::answer;
use crate::outgoing::Piece;
use crate::position::Position;
use crate::presence::Names;
use crate::sse;
use crate::waitlist::{ListKind, WaitList};
use crate::websocket;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// How much history a room keeps.
#[derive(Clone, Copy, Debug)]
pub struct HistoryLimits {
    /// Most messages kept (`--history`).
    pub messages: usize,
    /// Most bytes of encoded messages kept; the newest message is always kept.
    pub bytes: usize,
}

/// Most messages in one poll answer or one page of a stream's replay. A client that is
/// further behind gets the rest on its next poll (at once), or its stream's next page once
/// this one is out; so what one resuming client holds is bounded whatever it asks for.
pub const PAGE_MESSAGES: usize = 64;

/// What each stored message weighs for `--history-bytes`, on top of its name and text:
/// what holding it costs besides them: its frame's id, event and field names and time, the
/// frame's shared allocation, and its entry in the history ring, with room for the
/// allocator's rounding (a test checks that a message weighs at least what these hold). With `--redis` the
/// post script trims Redis's copy by the same weight, so every node's copy of the history
/// ends where Redis's does.
pub const MESSAGE_OVERHEAD_BYTES: usize = 200;

/// What remembering a message's `client_id` adds to its weight, besides twice the key's
/// length (the history entry and the map from key to message each hold one): the map's
/// entry and the two allocations. Only a room that checks ids itself remembers them (with
/// `--redis`, Redis does, in keys that expire after an hour).
pub const CLIENT_ID_OVERHEAD_BYTES: usize = 64;

/// What a `client_id` is remembered by: the id within its sender's name, so that one
/// sender's ids never stand for another's posts (two clients that both number their
/// messages 1, 2, 3 would otherwise drop each other's; with tokens, nobody can suppress
/// another's post by guessing its id). The name's length comes first, so no two
/// (name, id) pairs make the same key.
pub fn idempotency_key(from: &str, client_id: &str) -> String {
    format!("{}:{from}{client_id}", from.len())
}

/// What a message weighs for `--history-bytes`: its name and text as its stored frame
/// holds them, JSON-escaped (a `"`, `\`, newline or tab takes two bytes there; every
/// other control character is refused at the door), so the cap bounds the memory it says.
/// The post script computes the same in Lua.
pub fn message_weight(from: &str, text: &str) -> usize {
    let escaped = |s: &str| {
        s.len()
            + s.bytes()
                .filter(|b| matches!(b, b'"' | b'\\' | b'\n' | b'\t'))
                .count()
    };
    escaped(from) + escaped(text) + MESSAGE_OVERHEAD_BYTES
}

/// A stored message, already encoded.
#[derive(Debug)]
struct Stored {
    seq: u64,
    /// What it counts for against `--history-bytes` ([`message_weight`]).
    weight: u32,
    /// `id: <position>\nevent: message\ndata: {"id":…,"from":…,"text":…,"time":…}\n\n`,
    /// shared by the history and every answer, broadcast and replay that carries it.
    frame: Rc<[u8]>,
    /// Where the JSON starts in `frame`; it ends before the frame's final blank line.
    json_start: u32,
    /// For idempotent retries ([`idempotency_key`]); forgotten when the message leaves
    /// the history.
    client_id: Option<Box<str>>,
}

impl Stored {
    /// The message's JSON, as a piece of its frame.
    fn json(&self) -> Piece {
        Piece::slice(&self.frame, self.json_start as usize..self.frame.len() - 2)
    }

    fn json_bytes(&self) -> &[u8] {
        &self.frame[self.json_start as usize..self.frame.len() - 2]
    }
}

/// A poll answer from history: the messages as pieces of their stored frames, the position
/// to poll from next, and whether messages the client never saw are gone.
#[derive(Debug)]
pub struct Page {
    /// Each message's JSON, oldest first, shared with the history.
    pub messages: Vec<Piece>,
    /// The last message included: the head, unless the client is more than a page behind.
    pub next: Position,
    /// Messages after the client's position are gone (evicted, or another epoch).
    pub gap: bool,
}

/// A page of a stream's replay: frames to send, and where the replay goes on.
#[derive(Debug)]
pub struct StreamPage {
    /// A `gap` event if messages were lost to this client, then message frames.
    pub pieces: Vec<Piece>,
    /// `Some(seq)`: more history follows after message `seq`; `None`: caught up.
    pub more_after: Option<u64>,
}

/// How a stream's frames are spelled: Server-Sent Events or WebSocket text frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `GET /rooms/{room}/events` ([`crate::sse`]).
    Sse,
    /// `GET /rooms/{room}/ws` ([`crate::websocket`]).
    WebSocket,
}

impl Framing {
    /// How a list's waiters are written to: SSE for event streams (and, where it does not
    /// matter, polls, which get answers rather than frames).
    pub fn of(list: ListKind) -> Framing {
        match list {
            ListKind::Socket => Framing::WebSocket,
            ListKind::Classic | ListKind::Poll | ListKind::Stream => Framing::Sse,
        }
    }
}

/// The result of a post.
#[derive(Debug, PartialEq, Eq)]
pub enum Posted {
    /// Stored under this sequence number.
    New(u64),
    /// A retry of an earlier post with the same `client_id`; nothing stored.
    Duplicate(u64),
}

/// What a client at some position should get.
#[derive(Debug)]
pub enum Since {
    /// Nothing after its position yet: park it.
    Wait,
    /// Answer now with this JSON body.
    Answer(Page),
}

/// A position that cannot be answered.
#[derive(Debug, PartialEq, Eq)]
pub enum SinceError {
    /// Same epoch but beyond the last message: the client made it up.
    Ahead,
}

/// A chat room.
pub struct Room {
    /// The room's name, `[A-Za-z0-9_-]{1,64}`.
    pub name: Box<str>,
    history: VecDeque<Stored>,
    history_bytes: usize,
    /// Sequence number of the newest message ever posted (0: none yet).
    last_seq: u64,
    /// [`idempotency_key`] → seq, for messages still in history.
    by_client_id: HashMap<Box<str>, u64>,
    /// Classic `GET /chat` polls (lobby only), answered `{"ok":"<text>"}`.
    pub classic: WaitList,
    /// `GET /rooms/{room}/messages` polls, all at the newest position.
    pub polls: WaitList,
    /// `GET /rooms/{room}/events` streams.
    pub streams: WaitList,
    /// `GET /rooms/{room}/ws` WebSockets.
    pub sockets: WaitList,
    /// Who is in the room by name (`?name=`).
    pub names: Names,
    /// The client (by [`crate::clients::ClientId`]) whose post gave the room its first
    /// message and counts it against `--max-rooms-per-client`: given back when the room
    /// gives way, so that the limit bounds the rooms an address holds now, not ever.
    pub keeper: Option<u32>,
}

impl Room {
    /// An empty room.
    pub fn new(name: &str) -> Room {
        Room {
            name: name.into(),
            history: VecDeque::new(),
            history_bytes: 0,
            last_seq: 0,
            by_client_id: HashMap::new(),
            classic: WaitList::default(),
            polls: WaitList::default(),
            streams: WaitList::default(),
            sockets: WaitList::default(),
            names: Names::default(),
            keeper: None,
        }
    }

    /// The newest sequence number this copy has.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Messages in history.
    pub fn stored(&self) -> usize {
        self.history.len()
    }

    /// The newest position in this room.
    pub fn head(&self, epoch: u32) -> Position {
        Position {
            epoch,
            seq: self.last_seq,
        }
    }

    /// Stores a message (unless its sender posted this `client_id` already) and returns
    /// its sequence number.
    pub fn post(
        &mut self,
        epoch: u32,
        from: &str,
        text: &str,
        client_id: Option<&str>,
        time_ms: u64,
        limits: &HistoryLimits,
    ) -> Posted {
        let key = client_id.map(|id| idempotency_key(from, id));
        if let Some(seq) = key.as_deref().and_then(|key| self.by_client_id.get(key)) {
            return Posted::Duplicate(*seq);
        }
        let seq = self.last_seq + 1;
        self.store(epoch, seq, from, text, time_ms, key, limits);
        Posted::New(seq)
    }

    /// With `--redis`: a message Redis stored under `seq`, which must be the next this
    /// copy expects (Redis did the `client_id` check).
    pub fn append(
        &mut self,
        epoch: u32,
        seq: u64,
        from: &str,
        text: &str,
        time_ms: u64,
        limits: &HistoryLimits,
    ) {
        debug_assert_eq!(seq, self.last_seq + 1, "appended out of order");
        self.store(epoch, seq, from, text, time_ms, None, limits);
    }

    /// With `--redis`: forgets the history and starts this copy again after `seq`, before
    /// the messages Redis holds are appended (loading a room), or at 0 (Redis lost its
    /// data: a new epoch).
    pub fn restart_after(&mut self, seq: u64) {
        self.history.clear();
        self.history_bytes = 0;
        self.by_client_id.clear();
        self.last_seq = seq;
    }

    /// Encodes a message once and keeps it; then trims the history to its caps.
    #[allow(clippy::too_many_arguments)]
    fn store(
        &mut self,
        epoch: u32,
        seq: u64,
        from: &str,
        text: &str,
        time_ms: u64,
        key: Option<String>,
        limits: &HistoryLimits,
    ) {
        self.last_seq = seq;
        let position = Position { epoch, seq };
        let json = answer::message_json(position, from, text, time_ms);
        let (frame, json_start) = sse::message_frame(position, &json);
        let remembered = key
            .as_ref()
            .map_or(0, |key| 2 * key.len() + CLIENT_ID_OVERHEAD_BYTES);
        let weight = message_weight(from, text) + remembered;
        self.history_bytes += weight;
        let key: Option<Box<str>> = key.map(Into::into);
        if let Some(key) = &key {
            self.by_client_id.insert(key.clone(), seq);
        }
        self.history.push_back(Stored {
            seq,
            weight: weight as u32,
            frame: frame.into_bytes().into(),
            json_start: json_start as u32,
            client_id: key,
        });
        self.evict(limits);
    }

    fn evict(&mut self, limits: &HistoryLimits) {
        while self.history.len() > limits.messages.max(1)
            || (self.history.len() > 1 && self.history_bytes > limits.bytes)
        {
            let Some(old) = self.history.pop_front() else {
                break;
            };
            self.history_bytes -= old.weight as usize;
            if let Some(id) = old.client_id {
                self.by_client_id.remove(&id);
            }
        }
    }

    /// Where a client that last saw `since` resumes: the seq to send messages after, and
    /// whether messages it has not seen were lost to it. The one place the rules of
    /// docs/PROTOCOL.md live; polls and streams both ask here.
    fn resume_point(&self, epoch: u32, since: Option<Position>) -> Result<(u64, bool), SinceError> {
        let first_kept = self.history.front().map_or(self.last_seq + 1, |m| m.seq);
        match since {
            // A new client: everything we have.
            None => Ok((0, false)),
            // The server restarted since: start again from what we have, and say so.
            Some(p) if p.epoch != epoch => Ok((0, true)),
            Some(p) if p.seq > self.last_seq => Err(SinceError::Ahead),
            // Messages after its position were evicted: what is left, flagged as a gap.
            Some(p) if p.seq + 1 < first_kept => Ok((0, true)),
            Some(p) => Ok((p.seq, false)),
        }
    }

    /// Stored messages after sequence number `after`, oldest first. Sequence numbers in
    /// the history are consecutive, so this is arithmetic, not a search.
    fn stored_after(&self, after: u64) -> std::collections::vec_deque::Iter<'_, Stored> {
        let first = self.history.front().map_or(self.last_seq + 1, |m| m.seq);
        let skip = (after + 1)
            .saturating_sub(first)
            .min(self.history.len() as u64);
        self.history.range(skip as usize..)
    }

    /// What a poll that last saw `since` gets: an answer now, or wait when it has seen
    /// everything (a gap is always answered at once, even with no messages).
    pub fn since(&self, epoch: u32, since: Option<Position>) -> Result<Since, SinceError> {
        let (after, gap) = self.resume_point(epoch, since)?;
        if after >= self.last_seq && !gap {
            return Ok(Since::Wait);
        }
        Ok(Since::Answer(self.poll_page(epoch, after, gap)))
    }

    /// A poll answer from history: at most [`PAGE_MESSAGES`] messages after `after`, each
    /// a piece of its stored frame. `next` is the last message included, which is the head
    /// unless the client is more than a page behind (then its next poll is answered at
    /// once with the following page).
    pub fn poll_page(&self, epoch: u32, after: u64, gap: bool) -> Page {
        let mut next = self.last_seq;
        let mut messages = Vec::new();
        for message in self.stored_after(after).take(PAGE_MESSAGES) {
            messages.push(message.json());
            next = message.seq;
        }
        Page {
            messages,
            next: Position { epoch, seq: next },
            gap,
        }
    }

    /// The JSON of the stored messages after `after`, oldest first: for the answer that
    /// polls waiting at the previous head share when a message arrives (just that one).
    pub fn messages_after(&self, after: u64) -> impl Iterator<Item = &[u8]> {
        self.stored_after(after).map(Stored::json_bytes)
    }

    /// The first page of a stream resuming from `since`: `gap` first if the position is
    /// from another epoch or older than the history, then stored frames.
    pub fn stream_replay(
        &self,
        epoch: u32,
        since: Option<Position>,
        framing: Framing,
    ) -> Result<StreamPage, SinceError> {
        let (after, gap) = self.resume_point(epoch, since)?;
        Ok(self.stream_page(epoch, after, gap, framing))
    }

    /// The next page of a stream's replay, after message `after`. Messages it has not
    /// been sent yet may have been evicted meanwhile: then it gets a `gap` first.
    pub fn stream_refill(&self, epoch: u32, after: u64, framing: Framing) -> StreamPage {
        let first_kept = self.history.front().map_or(self.last_seq + 1, |m| m.seq);
        let evicted = after + 1 < first_kept;
        self.stream_page(epoch, after, evicted, framing)
    }

    fn stream_page(&self, epoch: u32, after: u64, gap: bool, framing: Framing) -> StreamPage {
        let mut pieces = Vec::new();
        if gap {
            let frame = match framing {
                Framing::Sse => sse::gap_frame(self.head(epoch)).into_bytes(),
                Framing::WebSocket => websocket::gap(self.head(epoch)),
            };
            pieces.push(Piece::Owned(frame));
        }
        let mut last = after;
        for message in self.stored_after(after).take(PAGE_MESSAGES) {
            match framing {
                Framing::Sse => pieces.push(Piece::shared(&message.frame)),
                Framing::WebSocket => pieces.extend(websocket::message_pieces(message.json())),
            }
            last = message.seq;
        }
        StreamPage {
            pieces,
            more_after: (last < self.last_seq).then_some(last),
        }
    }

    /// The SSE frame of stored message `seq` (which must be the newest): the very buffer
    /// the history keeps, shared by every stream it is written to.
    pub fn sse_message(&self, seq: u64) -> Rc<[u8]> {
        let message = self.history.back().expect("a message was just posted");
        debug_assert_eq!(message.seq, seq);
        Rc::clone(&message.frame)
    }

    // ----- presence --------------------------------------------------------------------

    /// Whether anything here needs sweeping later.
    pub fn has_presence(&self) -> bool {
        !self.names.is_empty()
    }

    // ----- giving its place up ---------------------------------------------------------

    /// Whether this room gives its place to another first, before any room unused longer:
    /// it is [idle](Room::is_idle) and no message was ever posted to it (a room made only
    /// by reads, or typing, which then ended), so forgetting it loses nothing. With
    /// `--redis` the store also has its say (`Places::stored`).
    pub fn is_vacant(&self) -> bool {
        self.is_idle() && self.last_seq == 0
    }

    /// Whether nobody uses the room right now: no poll waits in it, no stream is open and
    /// no name is present here. At the `--max-rooms` cap, when no room is
    /// [`vacant`](Room::is_vacant), the idle room unused longest gives way, history and all
    /// (with Redis its history stays there, and comes back on its next use).
    pub fn is_idle(&self) -> bool {
        self.classic.is_empty()
            && self.polls.is_empty()
            && self.streams.is_empty()
            && self.sockets.is_empty()
            && self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: u32 = 0xabcd_0001;
    const LIMITS: HistoryLimits = HistoryLimits {
        messages: 3,
        bytes: 1 << 20,
    };

    fn at(seq: u64) -> Option<Position> {
        Some(Position { epoch: EPOCH, seq })
    }

    fn room_with(n: u64) -> Room {
        let mut room = Room::new("r");
        for i in 1..=n {
            room.post(EPOCH, "ann", &format!("m{i}"), None, 1000 + i, &LIMITS);
        }
        room
    }

    /// Regression: a text of quotes took twice the memory `--history-bytes` counted for
    /// it (the frame holds it JSON-escaped), so the cap understated memory by up to 2x.
    /// A message now weighs what its frame holds, within the fixed overhead.
    #[test]
    fn a_message_weighs_what_its_stored_frame_holds() {
        for text in [
            "plain",
            "\"quoted\"",
            "back\\slash",
            "two\nlines",
            "é ☃ 𝄞",
            &"\"".repeat(4000),
        ] {
            let mut room = Room::new("r");
            room.post(EPOCH, "a\"nn", text, None, 0, &LIMITS);
            let frame = room.sse_message(1);
            let weight = message_weight("a\"nn", text);
            let escaped = serde_json::to_string(text).unwrap().len() - 2 + "a\\\"nn".len();
            assert_eq!(weight - MESSAGE_OVERHEAD_BYTES, escaped, "{text:?}");
            assert!(
                frame.len() <= weight + 64,
                "{text:?}: frame {} vs weight {weight}",
                frame.len()
            );
        }
    }

    /// `--history-bytes` bounds memory: a message weighs at least what holding it takes,
    /// its history entry and its frame with the frame's reference counts.
    #[test]
    fn a_message_weighs_at_least_what_holding_it_takes() {
        for (from, text) in [("a", "x"), ("ann", &"y".repeat(4000) as &str)] {
            let mut room = Room::new("r");
            room.post(EPOCH, from, text, None, 1_795_714_825_045, &LIMITS);
            let frame = room.sse_message(1);
            let held =
                std::mem::size_of::<Stored>() + frame.len() + 2 * std::mem::size_of::<usize>();
            let weight = message_weight(from, text);
            assert!(weight >= held, "{from}: weight {weight} < {held} held");
        }
    }

    fn texts(answer: &str) -> Vec<String> {
        let value: serde_json::Value = serde_json::from_str(answer).unwrap();
        value["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The body of the answer a page becomes, checked against its Content-Length.
    fn answer(since: Result<Since, SinceError>) -> String {
        let Ok(Since::Answer(page)) = since else {
            panic!("expected an answer, got {since:?}")
        };
        let pieces = answer::Replies::default().poll_page(page.messages, page.next, page.gap);
        let bytes: Vec<u8> = pieces.iter().flat_map(|p| p.as_bytes()).copied().collect();
        let response = String::from_utf8(bytes).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        body.to_owned()
    }

    #[test]
    fn ids_increase_by_one_and_encode_exactly() {
        let mut room = Room::new("r");
        assert_eq!(
            room.post(EPOCH, "a\"n", "hi\n€", None, 5, &LIMITS),
            Posted::New(1)
        );
        assert_eq!(
            room.post(EPOCH, "bob", "yo", None, 6, &LIMITS),
            Posted::New(2)
        );
        let body = answer(room.since(EPOCH, None));
        assert_eq!(
            body,
            "{\"messages\":[{\"id\":\"abcd0001-1\",\"from\":\"a\\\"n\",\"text\":\"hi\\n€\",\"time\":5},\
             {\"id\":\"abcd0001-2\",\"from\":\"bob\",\"text\":\"yo\",\"time\":6}],\
             \"next\":\"abcd0001-2\",\"gap\":false,\"events\":[]}"
        );
    }

    #[test]
    fn since_rules() {
        let room = room_with(5); // keeps m3..m5
        assert_eq!(texts(&answer(room.since(EPOCH, None))), ["m3", "m4", "m5"]);
        assert_eq!(texts(&answer(room.since(EPOCH, at(3)))), ["m4", "m5"]);
        assert_eq!(texts(&answer(room.since(EPOCH, at(2)))), ["m3", "m4", "m5"]);
        assert!(
            answer(room.since(EPOCH, at(2))).contains("\"gap\":false"),
            "m3 is next after 2: no gap"
        );
        let evicted = answer(room.since(EPOCH, at(1)));
        assert!(evicted.contains("\"gap\":true"), "m2 was evicted");
        assert_eq!(texts(&evicted), ["m3", "m4", "m5"]);
        assert!(matches!(room.since(EPOCH, at(5)), Ok(Since::Wait)));
        assert!(matches!(room.since(EPOCH, at(6)), Err(SinceError::Ahead)));
        // A position from the previous run of the server.
        let old_run = Some(Position {
            epoch: EPOCH - 1,
            seq: 5,
        });
        let restarted = answer(room.since(EPOCH, old_run));
        assert!(restarted.contains("\"gap\":true"));
        assert!(restarted.contains("\"next\":\"abcd0001-5\""));
        assert!(matches!(Room::new("e").since(EPOCH, None), Ok(Since::Wait)));
        assert!(matches!(
            Room::new("e").since(EPOCH, at(0)),
            Ok(Since::Wait)
        ));
    }

    #[test]
    fn byte_cap_evicts_but_keeps_the_newest() {
        let limits = HistoryLimits {
            messages: 100,
            bytes: 150,
        };
        let mut room = Room::new("r");
        for i in 0..5 {
            room.post(EPOCH, "ann", &"x".repeat(60 + i), None, 1, &limits);
        }
        assert_eq!(room.stored(), 1);
        room.post(EPOCH, "ann", &"y".repeat(500), None, 1, &limits);
        assert_eq!(
            room.stored(),
            1,
            "a message over the cap alone is still kept"
        );
    }

    #[test]
    fn client_id_makes_posts_idempotent_while_in_history() {
        let mut room = Room::new("r");
        assert_eq!(
            room.post(EPOCH, "a", "one", Some("c1"), 1, &LIMITS),
            Posted::New(1)
        );
        assert_eq!(
            room.post(EPOCH, "a", "one", Some("c1"), 2, &LIMITS),
            Posted::Duplicate(1)
        );
        assert_eq!(room.stored(), 1);
        for i in 0..3 {
            room.post(EPOCH, "a", &format!("f{i}"), None, 3, &LIMITS);
        }
        // c1 left the history, and with it the memory of its id.
        assert_eq!(
            room.post(EPOCH, "a", "one", Some("c1"), 4, &LIMITS),
            Posted::New(5)
        );
    }

    /// Regression: a `client_id` was remembered for the room, not for its sender, so two
    /// clients numbering their messages alike dropped each other's posts as duplicates.
    #[test]
    fn a_client_id_stands_only_for_its_own_senders_post() {
        let mut room = Room::new("r");
        let post = |room: &mut Room, from: &str, id: &str| {
            room.post(EPOCH, from, "hi", Some(id), 1, &LIMITS)
        };
        assert_eq!(post(&mut room, "ann", "1"), Posted::New(1));
        assert_eq!(post(&mut room, "bob", "1"), Posted::New(2));
        assert_eq!(post(&mut room, "ann", "1"), Posted::Duplicate(1));
        // The name's length keeps ("a", "b1") and ("ab", "1") apart.
        assert_eq!(post(&mut room, "a", "b1"), Posted::New(3));
        assert_eq!(post(&mut room, "ab", "1"), Posted::New(4));
    }

    fn stream_text(page: &StreamPage) -> String {
        let bytes: Vec<u8> = page
            .pieces
            .iter()
            .flat_map(|p| p.as_bytes())
            .copied()
            .collect();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn sse_replay_and_frames() {
        let room = room_with(4); // keeps m2..m4
        let replay = room.stream_replay(EPOCH, at(3), Framing::Sse).unwrap();
        assert_eq!(
            stream_text(&replay),
            "id: abcd0001-4\nevent: message\ndata: {\"id\":\"abcd0001-4\",\"from\":\"ann\",\"text\":\"m4\",\"time\":1004}\n\n"
        );
        assert_eq!(replay.more_after, None, "caught up");
        let gap = stream_text(&room.stream_replay(EPOCH, at(0), Framing::Sse).unwrap());
        assert!(gap.starts_with("event: gap\ndata: {\"next\":\"abcd0001-4\"}\n\n"));
        assert_eq!(gap.matches("event: message").count(), 3);
        assert_eq!(
            stream_text(&room.stream_replay(EPOCH, at(4), Framing::Sse).unwrap()),
            ""
        );
        assert_eq!(
            room.stream_replay(EPOCH, at(9), Framing::Sse).unwrap_err(),
            SinceError::Ahead
        );
        // The live frame is the stored one, not a copy.
        let frame = room.sse_message(4);
        assert!(std::ptr::eq(
            frame.as_ptr(),
            room.history.back().unwrap().frame.as_ptr()
        ));
    }

    /// However far behind a client is, one answer or one page of replay carries at most
    /// PAGE_MESSAGES messages, as pieces of the stored frames (shared, not copied).
    #[test]
    fn answers_and_replays_are_pages_of_shared_pieces() {
        let limits = HistoryLimits {
            messages: 1000,
            bytes: 1 << 20,
        };
        let mut room = Room::new("r");
        for i in 1..=150u64 {
            room.post(EPOCH, "ann", &format!("m{i}"), None, i, &limits);
        }
        let first = answer(room.since(EPOCH, None));
        assert_eq!(texts(&first).len(), PAGE_MESSAGES);
        assert!(first.contains(&format!("\"next\":\"abcd0001-{PAGE_MESSAGES}\"")));
        let second = answer(room.since(EPOCH, at(PAGE_MESSAGES as u64)));
        assert_eq!(texts(&second)[0], format!("m{}", PAGE_MESSAGES + 1));
        let last = answer(room.since(EPOCH, at(128)));
        assert_eq!(texts(&last).len(), 22);
        assert!(last.contains("\"next\":\"abcd0001-150\""));

        let page = room.stream_replay(EPOCH, None, Framing::Sse).unwrap();
        assert_eq!(page.pieces.len(), PAGE_MESSAGES);
        assert_eq!(page.more_after, Some(PAGE_MESSAGES as u64));
        assert!(page
            .pieces
            .iter()
            .all(|p| matches!(p, Piece::Shared { .. })));
        let next = room.stream_refill(EPOCH, 128, Framing::Sse);
        assert_eq!(next.pieces.len(), 22);
        assert_eq!(next.more_after, None);
        // Messages evicted before a page was sent make that page start with a gap.
        for i in 151..=1200u64 {
            room.post(EPOCH, "ann", &format!("m{i}"), None, i, &limits);
        }
        let after_eviction = stream_text(&room.stream_refill(EPOCH, 64, Framing::Sse));
        assert!(
            after_eviction.starts_with("event: gap\n"),
            "{}",
            &after_eviction[..40]
        );
        assert!(after_eviction.contains("\"text\":\"m201\""));
    }
}
