//! The chat's whole state, and the inputs the shell gives it: one method per kind of
//! input, each queuing effects. What each request does is in `requests.rs`, what reaches
//! waiting clients in `fanout.rs`, Redis's side in `shared.rs` and `copies.rs`.

use super::asked::Asked;
use super::effect::{Effect, Now, Sweep};
use super::pending::Shared;
use super::rooms::Rooms;
use crate::answer::{self, Replies};
use crate::clients::Clients;
use crate::config::Config;
use crate::conn::Membership;
use crate::limits::Limiter;
use crate::random::Random;
use crate::room::Framing;
use crate::room::{HistoryLimits, StreamPage};
use crate::routes::Action;
use crate::sse;
use crate::stats::{self, Stats};
use crate::waitlist::{ListKind, Waiter};
use crate::websocket;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

/// A client told to come back after shutdown waits a random delay in this range (ms), so
/// that thousands of browsers do not return in one wave.
const RETRY_DELAY_MS: std::ops::RangeInclusive<u64> = 500..=5_000;

/// Who holds an event stream: kept only for streams opened with a name or a token.
pub(super) struct StreamHolder {
    /// The name the stream made present (`?name=`, or the token's `sub`).
    pub name: Option<String>,
    /// When the token it was opened with runs out, in the loop's milliseconds.
    pub expires_ms: Option<u64>,
    /// Told to end (its token ran out): it stays in its room's list until the shell has
    /// carried the end out, and a later message of the same input (a catch-up brings
    /// several) must not end it, or count it, again.
    pub ended: bool,
}

/// The chat's whole state, and the queue of what it asks the shell to do.
pub struct Chat {
    /// The rooms: history, waiting lists, presence.
    pub(super) rooms: Rooms,
    /// What each client address holds, for limits per client.
    pub(super) clients: Clients,
    /// How fast each client may post and type.
    pub(super) limiter: Limiter,
    /// Who holds each event stream opened with a name or a token, by connection key.
    /// Streams with neither have no entry, so most cost nothing here.
    pub(super) holders: HashMap<u32, StreamHolder>,
    /// WebSockets opened without `?since=`, whose replay waits for their first frame
    /// (`resume` says from where) or a moment (then from the start). Live messages skip
    /// them meanwhile: the replay, when it starts, reaches them in order.
    pub(super) held: HashSet<u32>,
    /// What each WebSocket's request under way was (a post or typing, and its
    /// `client_id`), for the ack its answer becomes; by connection key.
    pub(super) acks: HashMap<u32, (websocket::Asked, Option<String>)>,
    /// With `--redis`: the requests waiting for Redis, the reads on their way, whether
    /// Redis is up. `None` without: rooms live here alone.
    pub(super) shared: Option<Shared>,
    /// What the user asked for: limits, timeouts, CORS, tokens.
    pub(super) config: Config,
    /// Counters for `/stats`.
    pub(super) stats: Arc<Stats>,
    /// Picks each client's retry delay after shutdown, and epochs offered to Redis.
    pub(super) random: Random,
    /// How the room API's answers are spelled (CORS for `--cors-origin`, held once).
    pub(super) replies: Replies,
    /// The classic `{"error":"timeout"}`, encoded once and shared by every classic poll
    /// that times out.
    pub(super) classic_timeout: Rc<[u8]>,
    /// `: keep-alive`, shared by every stream's heartbeat.
    pub(super) heartbeat: Rc<[u8]>,
    /// An empty ping, shared by every WebSocket's heartbeat.
    pub(super) ping: Rc<[u8]>,
    /// Shutting down: a request that would wait is told to come back later.
    pub(super) draining: bool,
    /// The presence sweep is on the wheel (at most once).
    pub(super) presence_sweep_due: bool,
    /// The limiter's sweep is on the wheel (at most once).
    pub(super) limiter_sweep_due: bool,
    /// Deliveries to waiting clients since the shell last asked ([`Chat::take_deliveries`]):
    /// what one connection's requests cost the others, for the turn's budget.
    pub(super) deliveries: u64,
    /// What the shell is asked to do, in order; it drains this after every input.
    pub effects: Vec<Effect>,
}

impl Chat {
    /// A chat with only the lobby. With `config.redis`, rooms are copies of Redis's,
    /// loaded on first use, and the epoch is Redis's (learned from its first answer).
    pub fn new(config: &Config, stats: Arc<Stats>, mut random: Random) -> Chat {
        let history = HistoryLimits {
            messages: config.history_messages,
            bytes: config.history_bytes,
        };
        let shards = config.redis.len();
        let epoch = random.next_u64() as u32;
        Chat {
            rooms: Rooms::new(epoch, history, config.max_rooms),
            clients: Clients::default(),
            limiter: Limiter::new(config.post_rate, config.post_burst, config.typing_interval),
            holders: HashMap::new(),
            held: HashSet::new(),
            acks: HashMap::new(),
            shared: (shards > 0).then(|| Shared::new(shards)),
            config: config.clone(),
            stats,
            random,
            replies: Replies::new(config.cors_origin.as_deref()),
            classic_timeout: answer::classic_timeout(),
            heartbeat: Rc::from(sse::HEARTBEAT),
            ping: websocket::ping().into(),
            draining: false,
            presence_sweep_due: false,
            limiter_sweep_due: false,
            deliveries: 0,
            effects: Vec::new(),
        }
    }

    // ----- inputs -------------------------------------------------------------------------

    /// A request parsed on connection `conn`, from client `client`: decides what it does
    /// and queues the effects. `close`: the connection hangs up after the answer.
    pub fn request(&mut self, now: Now, conn: Waiter, client: u32, action: Action, close: bool) {
        let asked = Asked {
            conn,
            client,
            close,
            caught_up: false,
        };
        self.handle(now, asked, action);
    }

    /// Connection `conn` left the list it waited in at `at` (answered by the shell, timed
    /// out, gone, told to come back). Returns the waiter that moved into its place, and
    /// where it now is, for the shell to note on that connection.
    pub fn left(&mut self, now: Now, conn: Waiter, at: Membership) -> Option<(Waiter, u32)> {
        match at.list {
            ListKind::Classic | ListKind::Poll => stats::sub(&self.stats.pending_polls, 1),
            ListKind::Stream | ListKind::Socket => {
                let open = match at.list {
                    ListKind::Socket => &self.stats.sockets,
                    _ => &self.stats.streams,
                };
                stats::sub(open, 1);
                self.held.remove(&conn.key);
                self.acks.remove(&conn.key);
                let holder = self.holders.remove(&conn.key);
                if let Some(name) = holder.and_then(|holder| holder.name) {
                    let window = self.presence_window_ms();
                    let names = &mut self.rooms.room(at.room).names;
                    names.stream_closed(&name, now.ms, window);
                    self.schedule_presence_sweep();
                }
            }
        }
        let list = self.rooms.list(at.room, at.list);
        debug_assert_eq!(list.at(at.index), Some(conn));
        list.leave(at.index).map(|moved| (moved, at.index))
    }

    /// Connection `conn`, which waited for Redis, is gone: forget its request.
    pub fn gave_up_waiting(&mut self, conn: Waiter) {
        if let Some(shared) = self.shared.as_mut() {
            shared.forget(conn);
        }
    }

    /// The poll timeout of `conn`, parked at `at`, passed: answer that nothing came, at the
    /// same position (the shell takes it out of its list as it carries the answer out).
    pub fn poll_timed_out(&mut self, conn: Waiter, at: Membership) {
        stats::add(&self.stats.timeouts, 1);
        let response = match at.list {
            ListKind::Classic => {
                crate::outgoing::Response::Shared(Rc::clone(&self.classic_timeout))
            }
            _ => {
                let epoch = self.epoch(at.room);
                let head = self.rooms.room(at.room).head(epoch);
                let bytes = self.replies.poll_answer(std::iter::empty(), head, &[]);
                crate::outgoing::Response::Owned(bytes)
            }
        };
        self.effects.push(Effect::Answer {
            to: conn,
            response,
            close: false,
        });
    }

    /// A deadline of stream `conn` passed: it was quiet (`writing` false: send a
    /// heartbeat) or behind on its writes (`writing`: the shell checks on it). Either way a
    /// stream whose token ran out is ended, and true returned.
    /// A WebSocket gets a ping, and one still waiting for its first frame starts its
    /// replay from the start.
    pub fn stream_due(&mut self, now: Now, conn: Waiter, at: Membership, writing: bool) -> bool {
        let framing = Framing::of(at.list);
        if self.stream_expired(now, conn.key) {
            self.expire_stream(conn, framing);
            return true;
        }
        if self.held.contains(&conn.key) {
            self.release(conn, at, None);
        }
        if !writing {
            let frame = match framing {
                Framing::Sse => &self.heartbeat,
                Framing::WebSocket => &self.ping,
            };
            self.effects.push(Effect::Frames {
                to: vec![conn],
                frame: Rc::clone(frame),
                message: false,
                replay_again: false,
            });
        }
        false
    }

    /// How long until stream `conn`'s token runs out, if it has one: its deadlines come no
    /// later than that.
    pub fn stream_ends_in_ms(&self, now: Now, conn: u32) -> Option<u64> {
        self.stream_expiry_ms(conn)
            .map(|expiry| expiry.saturating_sub(now.ms))
    }

    /// The server begins to shut down: from now on a request that would wait is told to
    /// come back later.
    pub fn shutting_down(&mut self) {
        self.draining = true;
    }

    /// While shutting down: poll `conn` is told to come back later (the shell takes it out
    /// of its list as it carries the answer out).
    pub fn come_back_later(&mut self, conn: Waiter) {
        let delay_ms = self.random.in_range(RETRY_DELAY_MS);
        let bytes = self.replies.retry_later(delay_ms);
        self.effects.push(Effect::Answer {
            to: conn,
            response: crate::outgoing::Response::Owned(bytes),
            close: true,
        });
    }

    /// While shutting down: stream `conn` ends with a frame that tells its EventSource
    /// when to come back (random, like the polls' Retry-After).
    /// A WebSocket is sent the same hint in a frame, then closed with 1001.
    pub fn end_stream_for_shutdown(&mut self, conn: Waiter, framing: Framing) {
        let delay_ms = self.random.in_range(RETRY_DELAY_MS);
        let frame = match framing {
            Framing::Sse => sse::shutdown_frame(delay_ms).into_bytes(),
            Framing::WebSocket => websocket::shutdown(delay_ms),
        };
        let frame = frame.into();
        self.effects.push(Effect::EndStream { to: conn, frame });
    }

    /// The shell answered every poll of a list the chat emptied (`Effect::AnswerAll`): the
    /// list comes back, so that its allocation serves the room's next broadcast and a
    /// broadcast allocates nothing but its one answer.
    pub fn recycle(&mut self, (room, list): (u32, ListKind), waiters: Vec<Waiter>) {
        self.rooms.list(room, list).recycle(waiters);
    }

    /// A stream's page of replayed history is out: the next page after message `after`.
    pub fn stream_refill(&mut self, at: Membership, after: u64) -> StreamPage {
        let epoch = self.epoch(at.room);
        let framing = Framing::of(at.list);
        self.rooms
            .room(at.room)
            .stream_refill(epoch, after, framing)
    }

    /// One of the chat's sweeps is due.
    pub fn sweep(&mut self, now: Now, sweep: Sweep) {
        match sweep {
            Sweep::Presence => {
                self.presence_sweep_due = false;
                self.sweep_presence(now);
            }
            Sweep::Limiter => self.sweep_limiter(now),
        }
    }

    // ----- what the shell reads -----------------------------------------------------------

    /// How the room API's answers are spelled: routing refuses with the same words.
    pub fn replies(&self) -> &Replies {
        &self.replies
    }

    /// The table of client addresses.
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// The table of client addresses, to change: the shell counts connections in it at
    /// accept and close, and moves a connection to the client a trusted proxy names.
    pub fn clients_mut(&mut self) -> &mut Clients {
        &mut self.clients
    }

    /// Deliveries made since the last call, whatever caused them. The shell calls it as a
    /// turn begins (to drop what no turn caused) and after each request of the turn, so
    /// that it learns what that connection's requests cost everyone else.
    pub fn take_deliveries(&mut self) -> u64 {
        std::mem::take(&mut self.deliveries)
    }

    /// Parked polls (classic and JSON) in all rooms.
    pub fn waiting(&self) -> usize {
        self.rooms.waiting()
    }

    /// Rooms held now.
    pub fn room_count(&self) -> usize {
        self.rooms.room_count()
    }

    /// Whether rooms are shared through Redis.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    // ----- small rules used throughout ----------------------------------------------------

    /// How long a name stays present after its last poll.
    pub(super) fn presence_window_ms(&self) -> u64 {
        (self.config.poll_timeout + self.config.presence_grace).as_millis() as u64
    }

    /// When stream `key`'s token runs out, in the loop's milliseconds; `None` without one.
    pub(super) fn stream_expiry_ms(&self, key: u32) -> Option<u64> {
        // No lookup per delivery when tokens are off.
        self.config.token_secret.as_ref()?;
        self.holders.get(&key)?.expires_ms
    }

    /// Whether stream `key`'s token has run out.
    pub(super) fn stream_expired(&self, now: Now, key: u32) -> bool {
        self.stream_expiry_ms(key)
            .is_some_and(|expiry| expiry <= now.ms)
    }

    /// The token a stream was opened with has run out: tell its page, which fetches a new
    /// token and reconnects, and close. Until then it heard everything it was entitled to.
    pub(super) fn expire_stream(&mut self, conn: Waiter, framing: Framing) {
        match self.holders.get_mut(&conn.key) {
            Some(holder) if !holder.ended => holder.ended = true,
            _ => return, // ended already
        }
        stats::add(&self.stats.streams_expired, 1);
        log::debug!("#{} stream's token expired; closing", conn.key);
        let frame = match framing {
            Framing::Sse => sse::EXPIRED.into(),
            Framing::WebSocket => websocket::expired().into(),
        };
        self.effects.push(Effect::EndStream { to: conn, frame });
    }

    /// Queues an answer built for one request.
    pub(super) fn answer(&mut self, to: Waiter, bytes: Vec<u8>, close: bool) {
        self.effects.push(Effect::Answer {
            to,
            response: crate::outgoing::Response::Owned(bytes),
            close,
        });
    }
}
