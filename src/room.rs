//! One chat room: its message history (a ring capped by count and bytes), who is waiting in
//! it, who is present, and the encodings of what it sends. Knows no sockets and reads no
//! clock: times come in as milliseconds from the caller.
//!
//! Every message is encoded to JSON once, when it is posted, and kept that way: a replay
//! to a client that resumes is string concatenation, and a broadcast encodes its response
//! once for every waiter (`poll_answer`, `sse_message`).

use crate::chat::WaitList;
use crate::json;
use crate::position::Position;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::rc::Rc;

/// How much history a room keeps.
#[derive(Clone, Copy, Debug)]
pub struct HistoryLimits {
    /// Most messages kept (`--history`).
    pub messages: usize,
    /// Most bytes of encoded messages kept; the newest message is always kept.
    pub bytes: usize,
}

/// A stored message, already encoded.
#[derive(Debug)]
struct Stored {
    seq: u64,
    /// `{"id":…,"from":…,"text":…,"time":…}`, shared by every answer that carries it.
    json: Rc<str>,
    /// For idempotent retries; forgotten when the message leaves the history.
    client_id: Option<Box<str>>,
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
#[derive(Debug, PartialEq, Eq)]
pub enum Since {
    /// Nothing after its position yet: park it.
    Wait,
    /// Answer now with this JSON body.
    Answer(String),
}

/// A position that cannot be answered.
#[derive(Debug, PartialEq, Eq)]
pub enum SinceError {
    /// Same epoch but beyond the last message: the client made it up.
    Ahead,
}

/// An ephemeral event: delivered to whoever is waiting, never stored or replayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `from` is typing.
    Typing(String),
    /// `name` appeared in the room.
    Join(String),
    /// `name` has not been seen for the presence window.
    Leave(String),
}

impl Event {
    /// `{"type":"typing","from":"ann"}` and the like.
    pub fn json(&self) -> String {
        let (kind, field, who) = match self {
            Event::Typing(who) => ("typing", "from", who),
            Event::Join(who) => ("join", "name", who),
            Event::Leave(who) => ("leave", "name", who),
        };
        let mut out = format!("{{\"type\":\"{kind}\",\"{field}\":\"");
        json::escape_into(&mut out, who);
        out.push_str("\"}");
        out
    }

    /// The SSE form: `event: typing` with the same JSON as data.
    pub fn sse(&self) -> String {
        let kind = match self {
            Event::Typing(_) => "typing",
            Event::Join(_) => "join",
            Event::Leave(_) => "leave",
        };
        format!("event: {kind}\ndata: {}\n\n", self.json())
    }
}

/// One name's presence.
#[derive(Debug)]
struct Presence {
    /// Last poll with this name, in ms since start.
    last_seen_ms: u64,
    /// Event streams open with this name: present for as long as any is.
    streams: u32,
}

/// A chat room.
pub struct Room {
    /// The room's name, `[A-Za-z0-9_-]{1,64}`.
    pub name: Box<str>,
    history: VecDeque<Stored>,
    history_bytes: usize,
    /// Sequence number of the newest message ever posted (0: none yet).
    last_seq: u64,
    /// `client_id` → seq, for messages still in history.
    by_client_id: HashMap<Box<str>, u64>,
    /// Classic `GET /chat` polls (lobby only), answered `{"ok":"<text>"}`.
    pub classic: WaitList,
    /// `GET /rooms/{room}/messages` polls, all at the newest position.
    pub polls: WaitList,
    /// `GET /rooms/{room}/events` streams.
    pub streams: WaitList,
    presence: HashMap<Box<str>, Presence>,
    /// When each name last sent a typing event, for the rate limit.
    typing_ms: HashMap<Box<str>, u64>,
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
            presence: HashMap::new(),
            typing_ms: HashMap::new(),
        }
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

    /// Stores a message (unless `client_id` was seen) and returns its sequence number.
    pub fn post(
        &mut self,
        epoch: u32,
        from: &str,
        text: &str,
        client_id: Option<&str>,
        time_ms: u64,
        limits: &HistoryLimits,
    ) -> Posted {
        if let Some(seq) = client_id.and_then(|id| self.by_client_id.get(id)) {
            return Posted::Duplicate(*seq);
        }
        self.last_seq += 1;
        let seq = self.last_seq;
        let mut out = String::with_capacity(text.len() + from.len() + 64);
        let _ = write!(out, "{{\"id\":\"{}\",\"from\":\"", Position { epoch, seq });
        json::escape_into(&mut out, from);
        out.push_str("\",\"text\":\"");
        json::escape_into(&mut out, text);
        let _ = write!(out, "\",\"time\":{time_ms}}}");
        self.history_bytes += out.len();
        if let Some(id) = client_id {
            self.by_client_id.insert(id.into(), seq);
        }
        self.history.push_back(Stored {
            seq,
            json: out.into(),
            client_id: client_id.map(Into::into),
        });
        self.evict(limits);
        Posted::New(seq)
    }

    fn evict(&mut self, limits: &HistoryLimits) {
        while self.history.len() > limits.messages.max(1)
            || (self.history.len() > 1 && self.history_bytes > limits.bytes)
        {
            let Some(old) = self.history.pop_front() else {
                break;
            };
            self.history_bytes -= old.json.len();
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

    /// What a poll that last saw `since` gets: an answer now, or wait when it has seen
    /// everything (a gap is always answered at once, even with no messages).
    pub fn since(&self, epoch: u32, since: Option<Position>) -> Result<Since, SinceError> {
        let (after, gap) = self.resume_point(epoch, since)?;
        if after >= self.last_seq && !gap {
            return Ok(Since::Wait);
        }
        Ok(Since::Answer(self.poll_answer(epoch, after, gap, &[])))
    }

    /// The JSON answer to a poll: stored messages after `after`, the position to send next,
    /// the gap flag, and ephemeral events.
    pub fn poll_answer(&self, epoch: u32, after: u64, gap: bool, events: &[Event]) -> String {
        let mut out = String::from("{\"messages\":[");
        let mut first = true;
        for message in self.history.iter().filter(|m| m.seq > after) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&message.json);
        }
        let _ = write!(
            out,
            "],\"next\":\"{}\",\"gap\":{gap},\"events\":[",
            self.head(epoch)
        );
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&event.json());
        }
        out.push_str("]}");
        out
    }

    /// The answer for every poll waiting when message `seq` arrives: all of them were at
    /// the previous head, so they all get exactly this one message.
    pub fn poll_answer_for_new(&self, epoch: u32, seq: u64) -> String {
        self.poll_answer(epoch, seq - 1, false, &[])
    }

    /// SSE frames replaying what a stream resuming from `since` missed, plus `gap` first if
    /// the position is from another epoch or older than the history.
    pub fn sse_replay(&self, epoch: u32, since: Option<Position>) -> Result<String, SinceError> {
        let (after, gap) = self.resume_point(epoch, since)?;
        let mut out = String::new();
        if gap {
            let _ = write!(
                out,
                "event: gap\ndata: {{\"next\":\"{}\"}}\n\n",
                self.head(epoch)
            );
        }
        for message in self.history.iter().filter(|m| m.seq > after) {
            out.push_str(&sse_frame(epoch, message.seq, &message.json));
        }
        Ok(out)
    }

    /// The SSE frame for stored message `seq` (which must be the newest).
    pub fn sse_message(&self, epoch: u32, seq: u64) -> String {
        let message = self.history.back().expect("a message was just posted");
        debug_assert_eq!(message.seq, seq);
        sse_frame(epoch, seq, &message.json)
    }

    // ----- presence and typing --------------------------------------------------------

    /// A poll arrived with `name`. Returns a join event if the name was not present.
    pub fn seen(&mut self, name: &str, now_ms: u64, window_ms: u64) -> Option<Event> {
        let present_before = self.is_present(name, now_ms, window_ms);
        let entry = self.presence.entry(name.into()).or_insert(Presence {
            last_seen_ms: now_ms,
            streams: 0,
        });
        entry.last_seen_ms = now_ms;
        (!present_before).then(|| Event::Join(name.to_owned()))
    }

    /// A stream opened with `name`: present until it closes (and the window passes).
    pub fn stream_opened(&mut self, name: &str, now_ms: u64, window_ms: u64) -> Option<Event> {
        let join = self.seen(name, now_ms, window_ms);
        if let Some(entry) = self.presence.get_mut(name) {
            entry.streams += 1;
        }
        join
    }

    /// A stream with `name` closed; the name stays present for the window after.
    pub fn stream_closed(&mut self, name: &str, now_ms: u64) {
        if let Some(entry) = self.presence.get_mut(name) {
            entry.streams = entry.streams.saturating_sub(1);
            entry.last_seen_ms = now_ms;
        }
    }

    fn is_present(&self, name: &str, now_ms: u64, window_ms: u64) -> bool {
        self.presence
            .get(name)
            .is_some_and(|p| p.streams > 0 || now_ms.saturating_sub(p.last_seen_ms) <= window_ms)
    }

    /// Names present now, sorted.
    pub fn present(&self, now_ms: u64, window_ms: u64) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .presence
            .keys()
            .map(|name| &**name)
            .filter(|name| self.is_present(name, now_ms, window_ms))
            .collect();
        names.sort_unstable();
        names
    }

    /// Forgets names whose window has passed and returns a leave event for each; also
    /// forgets old typing timestamps. O(names in the room).
    pub fn sweep(&mut self, now_ms: u64, window_ms: u64, typing_interval_ms: u64) -> Vec<Event> {
        let mut left = Vec::new();
        self.presence.retain(|name, p| {
            let present = p.streams > 0 || now_ms.saturating_sub(p.last_seen_ms) <= window_ms;
            if !present {
                left.push(Event::Leave(name.to_string()));
            }
            present
        });
        self.typing_ms
            .retain(|_, at| now_ms.saturating_sub(*at) < typing_interval_ms);
        left.sort_unstable_by_key(Event::json);
        left
    }

    /// Whether anything here needs sweeping later.
    pub fn has_presence(&self) -> bool {
        !self.presence.is_empty() || !self.typing_ms.is_empty()
    }

    /// Allows one typing event per name per `interval_ms`.
    pub fn typing_allowed(&mut self, name: &str, now_ms: u64, interval_ms: u64) -> bool {
        match self.typing_ms.get_mut(name) {
            Some(at) if now_ms.saturating_sub(*at) < interval_ms => false,
            Some(at) => {
                *at = now_ms;
                true
            }
            None => {
                self.typing_ms.insert(name.into(), now_ms);
                true
            }
        }
    }
}

fn sse_frame(epoch: u32, seq: u64, json: &str) -> String {
    format!(
        "id: {}\nevent: message\ndata: {json}\n\n",
        Position { epoch, seq }
    )
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

    fn texts(answer: &str) -> Vec<String> {
        let value: serde_json::Value = serde_json::from_str(answer).unwrap();
        value["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    }

    fn answer(since: Result<Since, SinceError>) -> String {
        match since {
            Ok(Since::Answer(body)) => body,
            other => panic!("expected an answer, got {other:?}"),
        }
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
        assert_eq!(room.since(EPOCH, at(5)), Ok(Since::Wait));
        assert_eq!(room.since(EPOCH, at(6)), Err(SinceError::Ahead));
        // A position from the previous run of the server.
        let old_run = Some(Position {
            epoch: EPOCH - 1,
            seq: 5,
        });
        let restarted = answer(room.since(EPOCH, old_run));
        assert!(restarted.contains("\"gap\":true"));
        assert!(restarted.contains("\"next\":\"abcd0001-5\""));
        assert_eq!(Room::new("e").since(EPOCH, None), Ok(Since::Wait));
        assert_eq!(Room::new("e").since(EPOCH, at(0)), Ok(Since::Wait));
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

    #[test]
    fn sse_replay_and_frames() {
        let room = room_with(4); // keeps m2..m4
        let replay = room.sse_replay(EPOCH, at(3)).unwrap();
        assert_eq!(
            replay,
            "id: abcd0001-4\nevent: message\ndata: {\"id\":\"abcd0001-4\",\"from\":\"ann\",\"text\":\"m4\",\"time\":1004}\n\n"
        );
        let gap = room.sse_replay(EPOCH, at(0)).unwrap();
        assert!(gap.starts_with("event: gap\ndata: {\"next\":\"abcd0001-4\"}\n\n"));
        assert_eq!(gap.matches("event: message").count(), 3);
        assert_eq!(room.sse_replay(EPOCH, at(4)).unwrap(), "");
        assert_eq!(room.sse_replay(EPOCH, at(9)), Err(SinceError::Ahead));
    }

    #[test]
    fn presence_joins_and_leaves() {
        let mut room = Room::new("r");
        assert_eq!(room.seen("ann", 0, 100), Some(Event::Join("ann".into())));
        assert_eq!(room.seen("ann", 50, 100), None);
        assert_eq!(
            room.stream_opened("bob", 60, 100),
            Some(Event::Join("bob".into()))
        );
        assert_eq!(room.present(120, 100), ["ann", "bob"]);
        assert!(room.sweep(140, 100, 1000).is_empty());
        assert_eq!(room.sweep(151, 100, 1000), [Event::Leave("ann".into())]);
        assert_eq!(
            room.present(1000, 100),
            ["bob"],
            "an open stream keeps its name present"
        );
        room.stream_closed("bob", 1000);
        assert_eq!(room.sweep(1101, 100, 1000), [Event::Leave("bob".into())]);
        assert!(!room.has_presence());
    }

    #[test]
    fn typing_is_rate_limited_per_name() {
        let mut room = Room::new("r");
        assert!(room.typing_allowed("ann", 0, 1000));
        assert!(!room.typing_allowed("ann", 999, 1000));
        assert!(room.typing_allowed("bob", 999, 1000));
        assert!(room.typing_allowed("ann", 1000, 1000));
    }

    #[test]
    fn event_encodings() {
        assert_eq!(
            Event::Typing("a\"b".into()).json(),
            r#"{"type":"typing","from":"a\"b"}"#
        );
        assert_eq!(
            Event::Join("ann".into()).sse(),
            "event: join\ndata: {\"type\":\"join\",\"name\":\"ann\"}\n\n"
        );
    }
}
