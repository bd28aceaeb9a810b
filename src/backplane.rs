//! The Redis backplane (`--redis`): how processes on one machine or many serve the same
//! rooms. Rooms, their history, positions, `client_id`s and presence live in Redis (see
//! [`keys`]); each step that changes them is one Lua script ([`scripts`]), so it either
//! happened whole or not at all. Every process keeps the rooms it serves in memory as a copy
//! of Redis's, and hears every post and event through one subscription, then delivers it to
//! its own clients exactly as a post made locally: one encoding, one write per socket.
//!
//! Redis is reached from inside the event loop: two non-blocking connections ([`link`])
//! registered in the server's own `mio::Poll`, one for commands (replies come back in the
//! order commands went out, so each command leaves a note of what its reply is for) and one
//! subscribed to the room channels. No thread, no runtime. See docs/SCALING.md.
//!
//! With `redis+sentinel://` a third connection comes first, to ask the Sentinels where the
//! master is ([`sentinel`] for the pure parts, `finding.rs` for the asking); each
//! reconnection asks again, so after a failover the node moves to the new master. With
//! `--redis-replicas N` every post is followed by `WAIT N`, and answered only once that
//! many replicas hold it (`replicas.rs`). The commands themselves, one method each, are in
//! `commands.rs`; this file is the engine that sends them and reads their replies.
//!
//! One `Backplane` is one Redis (or one Sentinel-watched master): with `--redis` given
//! several times, rooms are spread over several ([`shards`]), one `Backplane` each.

mod commands;
mod finding;
pub mod keys;
mod link;
pub mod news;
mod replicas;
pub mod resp;
pub mod scripts;
pub mod sentinel;
pub mod shards;
pub mod url;

use link::Link;
use news::{Malformed, News, Posted, Snapshot};
use redis_protocol::resp2::types::OwnedFrame;
use sentinel::{Asking, Sentinels};
pub use shards::Place;
use std::collections::VecDeque;
use std::time::Instant;
use url::{RedisUrl, Target, Where};

/// What the server gets from the backplane.
#[derive(Debug)]
pub enum Incoming<T> {
    /// The reply to a command sent with `then`, or why there is none (Redis answered an
    /// error, or the connection was lost before it answered).
    Reply(T, Result<Answer, String>),
    /// An announcement on a room's channel.
    News {
        /// The room.
        room: String,
        /// What happened in it.
        news: News,
    },
    /// Both connections are ready: commands may go, announcements arrive.
    Up,
    /// Redis cannot be reached (now, or any more): every command in flight has failed.
    Down(String),
}

/// A decoded reply.
#[derive(Debug)]
pub enum Answer {
    /// To a post.
    Posted(Posted),
    /// To a history request.
    Snapshot(Snapshot),
    /// To anything else: it was done.
    Done,
}

/// How a reply is to be decoded.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Posted,
    Snapshot,
    Done,
}

/// What a reply on the command connection is for.
enum Note<T> {
    /// A step of setting up the connection.
    Setup(Step),
    /// The server's command.
    For(T, Expect),
    /// With `--redis-replicas`, a post's script or a history read: its reply waits in
    /// [`Backplane::held`] for the `WAIT` after it. A post names its room's channel, for
    /// the announcement the node publishes once replicas hold the post.
    Hold(T, Expect, Option<String>),
    /// `WAIT`: how many replicas hold every post held so far.
    Replicas,
    /// A command whose reply does not matter (PUBLISH of a typing event).
    Ignore,
}

/// A step of setting up the command connection.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// AUTH or SELECT went through.
    Done,
    /// The script of this index was loaded.
    Script(usize),
    /// `ROLE`: the node is the master (with Sentinel only).
    Role,
    /// `SET comet:shard i/n NX GET`: this Redis is the shard we take it for (with several
    /// shards only).
    Shard,
}

/// What a command in flight was, kept until its reply comes: its name, for a log line, and
/// for a script, what it takes to send it again should Redis have forgotten the script.
struct Sent {
    /// The script's name ([`scripts::NAMES`]) or the command's.
    name: &'static str,
    /// For `EVALSHA`: the script's index in [`scripts::ALL`] and the arguments after its
    /// SHA1 (one copy of them, which lives as long as the command is in flight).
    again: Option<(usize, Vec<Vec<u8>>)>,
}

impl Sent {
    const SETUP: Sent = Sent {
        name: "set-up",
        again: None,
    };
}

/// Where the connections stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not connected; `since` is when the current outage began.
    Down { since: Option<Instant> },
    /// Asking a Sentinel where the master is.
    Asking,
    /// Connecting and setting up, since then.
    Starting { since: Instant },
    /// Ready.
    Up,
}

/// A reply waiting for replicas ([`Note::Hold`]).
struct Held<T> {
    /// Whom it is for.
    then: T,
    /// What it says.
    answer: Result<Answer, String>,
    /// For a post: the channel and what to announce on it once replicas hold the post.
    announce: Option<(String, Vec<u8>)>,
}

/// The tokens of the backplane's connections in the server's poll.
#[derive(Clone, Copy, Debug)]
pub struct Tokens {
    /// Commands and their replies.
    pub commands: mio::Token,
    /// The subscription.
    pub events: mio::Token,
    /// The question to a Sentinel (with `redis+sentinel://` only).
    pub sentinel: mio::Token,
}

/// How long a `WAIT` may block, in milliseconds. `WAIT` holds the command connection (Redis
/// answers nothing after it until it returns), so while a replica is missing each `WAIT`
/// costs every command behind it this long; posts sent meanwhile share the next `WAIT`
/// ([`Backplane::post`]), so a post is answered within about twice this, well inside the
/// chat's one-second `REPLY_WAIT`. A healthy replica on the same network acknowledges in
/// well under a millisecond.
pub const REPLICAS_WAIT_MS: u64 = 250;

/// The connections to Redis and what is in flight on them.
pub struct Backplane<T> {
    url: RedisUrl,
    /// Which shard this is: with more than one, each connection first checks that the
    /// Redis agrees ([`Place::marker`]).
    place: Place,
    /// What one reply, and one announcement, may hold: see [`link_caps`].
    caps: LinkCaps,
    /// Tokens of the connections in the server's poll.
    tokens: Tokens,
    commands: Option<Link>,
    events: Option<Link>,
    /// With Sentinel: whom to ask where the master is (`None`: the URL says where Redis is).
    sentinels: Option<Sentinels>,
    /// The question to a Sentinel on its way, while [`Phase::Asking`].
    asking: Option<Asking>,
    /// Where the two connections go (or went last): the URL's address, or the master a
    /// Sentinel named.
    master: Option<Target>,
    /// `--redis-replicas`: replicas that must hold a post before it is answered (0: none,
    /// no `WAIT`).
    replicas: u32,
    /// Answers whose command has replied, waiting for the `WAIT` that covers them, oldest
    /// first. Bounded by the commands in flight.
    held: Vec<Held<T>>,
    /// A `WAIT` is in flight (at most one is: posts sent meanwhile wait for the next).
    waiting_replicas: bool,
    /// Posts went since the `WAIT` in flight did: another is owed when it returns.
    wait_owed: bool,
    phase: Phase,
    /// One note per command in flight, oldest first, with when it was sent and what it was.
    notes: VecDeque<(Instant, Note<T>, Sent)>,
    /// The loaded scripts' SHA1s, in the order of [`scripts::ALL`].
    shas: Vec<String>,
    /// Setup replies still expected on the command connection.
    setup_left: usize,
    /// The event connection's subscription is confirmed.
    subscribed: bool,
}

/// The longest `--max-message` allowed with `--redis`, in bytes. Every message is
/// announced to every node through Redis's pub/sub, and Redis cuts a subscriber whose
/// pending output passes its `client-output-buffer-limit` (by default 32 MB at once, or
/// 8 MB for a minute): one 40 MB post was stored, then cut every node's subscription, and
/// its poster was told 503. At 1 MiB a message stays far under both limits, and far above
/// what a chat line needs (the default is 4096).
pub const MESSAGE_BYTES_MAX: usize = 1 << 20;

/// Room in a reply beyond its messages, in bytes: the names present in a room, which a
/// load reads with its history. Each is at most 40 characters (up to 160 bytes in UTF-8)
/// plus its framing, under 180 bytes; 1,000 of them (`--max-names-per-room`) on each of 64
/// nodes is 11 MiB. An error or a status line is nothing beside that.
const REPLY_SLACK_BYTES: usize = 16 << 20;

/// What one frame may hold on each of the two connections: a reply to a command, and an
/// announcement on the subscription. Each connection buffers at most one frame within its
/// cap (and a pass's reads), so these bound a node's memory for Redis, whatever answers at
/// the `--redis` address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkCaps {
    /// The command connection: [`reply_caps`].
    pub replies: resp::Caps,
    /// The subscription: [`announcement_caps`].
    pub announcements: resp::Caps,
}

/// Both connections' caps, from the configuration.
pub fn link_caps(config: &crate::Config) -> LinkCaps {
    LinkCaps {
        replies: reply_caps(config),
        announcements: announcement_caps(config),
    }
}

/// What one reply from Redis may hold, from the configuration. Nothing the backplane
/// stores is bigger than a message (`--max-message`), and nothing it reads is bigger than a
/// room's history: Redis trims it to `--history-bytes` by the weights the nodes count (each
/// entry's framing is smaller than the 200 bytes its weight adds), and keeps the newest
/// message even when it alone is heavier (one `--max-message` more). That is doubled, for
/// entries weighed before weights were stored and for nodes that run with other caps for a
/// while during a rolling change, and [`REPLY_SLACK_BYTES`] added for the names. With the
/// defaults: 18 MiB, where Redis's own `proto-max-bulk-len` is 512 MB.
pub fn reply_caps(config: &crate::Config) -> resp::Caps {
    let messages = config
        .history_bytes
        .saturating_add(config.max_message_bytes);
    resp::Caps {
        frame_bytes: messages.saturating_mul(2).saturating_add(REPLY_SLACK_BYTES),
        depth: resp::DEPTH_MAX,
    }
}

/// Bytes one name takes in an announcement, at most: 40 characters of up to 4 bytes, a
/// separator, and room to spare.
const ANNOUNCED_NAME_BYTES: usize = 180;

/// Room in an announcement beyond its message or names: the `pmessage` framing, the
/// channel, the sequence numbers and times. A few hundred bytes; this is generous.
const ANNOUNCEMENT_SLACK_BYTES: usize = 64 * 1024;

/// What one announcement on the subscription may hold: the largest is a message
/// (`--max-message` and its name), or a batch of joins or leaves, at most a room's
/// `--max-names-per-room` names. With the defaults about 240 KB: the subscription never
/// needs the reply cap's megabytes, and a peer that sends a long frame there is cut off
/// early.
pub fn announcement_caps(config: &crate::Config) -> resp::Caps {
    let names = config
        .max_names_per_room
        .saturating_mul(ANNOUNCED_NAME_BYTES);
    resp::Caps {
        frame_bytes: config
            .max_message_bytes
            .max(names)
            .saturating_add(ANNOUNCEMENT_SLACK_BYTES),
        depth: resp::DEPTH_MAX,
    }
}

/// Bytes in `--history-bytes` and messages in `--history` a room keeps, for the scripts.
#[derive(Clone, Copy, Debug)]
pub struct Trim {
    /// `--history`.
    pub messages: usize,
    /// `--history-bytes`.
    pub bytes: usize,
}

impl<T> Backplane<T> {
    /// A backplane not yet connected: call [`Backplane::connect`]. `caps` bound each
    /// reply and announcement ([`link_caps`]); each post waits for `replicas` replicas.
    pub fn new(url: RedisUrl, caps: LinkCaps, replicas: u32, tokens: Tokens) -> Backplane<T> {
        let sentinels = match &url.at {
            Where::Direct(_) => None,
            Where::Sentinel { sentinels, master } => {
                Some(Sentinels::new(sentinels.clone(), master.clone()))
            }
        };
        Backplane {
            url,
            place: Place {
                shard: 0,
                shards: 1,
            },
            caps,
            tokens,
            commands: None,
            events: None,
            sentinels,
            asking: None,
            master: None,
            replicas,
            held: Vec::new(),
            waiting_replicas: false,
            wait_owed: false,
            phase: Phase::Down { since: None },
            notes: VecDeque::new(),
            shas: Vec::new(),
            setup_left: 0,
            subscribed: false,
        }
    }

    /// The same, as shard `place.shard` of `place.shards`.
    pub fn with_place(self, place: Place) -> Backplane<T> {
        Backplane { place, ..self }
    }

    /// Where Redis is, for log lines: the URL with any password masked, and with Sentinel
    /// the master in use.
    pub fn shown(&self) -> String {
        match (&self.sentinels, self.master_in_use()) {
            (Some(_), Some(master)) => format!("{} (master {master})", self.url.shown),
            _ => self.url.shown.clone(),
        }
    }

    /// The URL as given, any password masked.
    pub fn url_shown(&self) -> &str {
        &self.url.shown
    }

    /// The address the connections go to (or went to last): the master in use.
    pub fn master_in_use(&self) -> Option<String> {
        match self.master.as_ref()? {
            Target::Tcp(addr) => Some(addr.to_string()),
            Target::Unix(path) => Some(path.display().to_string()),
        }
    }

    /// Both connections are ready.
    pub fn is_up(&self) -> bool {
        self.phase == Phase::Up
    }

    /// Since when a connection attempt has been under way (asking the Sentinels, or
    /// connecting and setting up).
    pub fn starting_since(&self) -> Option<Instant> {
        match self.phase {
            Phase::Starting { since } => Some(since),
            Phase::Asking => self.asking.as_ref().map(|asking| asking.since),
            _ => None,
        }
    }

    /// Commands sent whose replies have not come yet.
    pub fn in_flight(&self) -> usize {
        self.notes.len()
    }

    /// When the oldest command in flight was sent.
    pub fn oldest(&self) -> Option<Instant> {
        self.notes.front().map(|(at, _, _)| *at)
    }

    /// Starts connecting: to the URL's address, or, with Sentinel, first asks where the
    /// master is ([`Backplane::on_event`] goes on when a Sentinel answers).
    pub fn connect(&mut self, registry: &mio::Registry) -> Result<(), String> {
        match &self.url.at {
            Where::Direct(target) => {
                let target = target.clone();
                self.open(registry, target)
            }
            Where::Sentinel { .. } => {
                if let Some(sentinels) = self.sentinels.as_mut() {
                    sentinels.start_round();
                }
                self.ask_next(registry)
            }
        }
    }

    /// Opens both connections to `target` and sends what sets them up (AUTH, SELECT, with
    /// Sentinel `ROLE`, the scripts, the subscription); they are up once every reply to
    /// that has come.
    fn open(&mut self, registry: &mio::Registry, target: Target) -> Result<(), String> {
        let at = match &target {
            Target::Tcp(addr) => addr.to_string(),
            Target::Unix(path) => path.display().to_string(),
        };
        self.master = Some(target);
        let fail = |e: std::io::Error| format!("cannot connect to Redis at {at}: {e}");
        let (target, caps) = (self.master.as_ref().expect("just set"), self.caps);
        let mut commands =
            Link::connect(target, registry, self.tokens.commands, caps.replies).map_err(fail)?;
        let mut events = Link::connect(target, registry, self.tokens.events, caps.announcements)
            .map_err(fail)?;
        let now = Instant::now();
        self.notes.clear();
        self.shas.clear();
        self.setup_left = 0;
        self.subscribed = false;
        self.held.clear();
        self.waiting_replicas = false;
        self.wait_owed = false;
        let (check_role, place) = (self.sentinels.is_some(), self.place);
        let mut setup = |link: &mut Link, args: &[&[u8]], note: Option<Note<T>>| {
            let sent = link.send(args);
            if let Some(note) = note {
                self.setup_left += 1;
                self.notes.push_back((now, note, Sent::SETUP));
            }
            sent
        };
        let auth: Option<Vec<Vec<u8>>> = self.url.password.as_ref().map(|password| {
            let mut args = vec![b"AUTH".to_vec()];
            if let Some(user) = &self.url.user {
                args.push(user.as_bytes().to_vec());
            }
            args.push(password.as_bytes().to_vec());
            args
        });
        let result = (|| {
            if let Some(auth) = &auth {
                let args: Vec<&[u8]> = auth.iter().map(Vec::as_slice).collect();
                setup(&mut commands, &args, Some(Note::Setup(Step::Done)))?;
                // The event connection's AUTH reply is read and checked there.
                events.send(&args)?;
            }
            if self.url.db != 0 {
                let db = self.url.db.to_string();
                setup(
                    &mut commands,
                    &[b"SELECT", db.as_bytes()],
                    Some(Note::Setup(Step::Done)),
                )?;
            }
            if check_role {
                // A Sentinel may name a master that was demoted a moment ago.
                setup(&mut commands, &[b"ROLE"], Some(Note::Setup(Step::Role)))?;
            }
            if place.shards > 1 {
                let marker = place.marker();
                let key = shards::MARKER_KEY.as_bytes();
                let set = [b"SET", key, marker.as_bytes(), b"NX", b"GET"];
                setup(&mut commands, &set, Some(Note::Setup(Step::Shard)))?;
            }
            for (i, script) in scripts::ALL.iter().enumerate() {
                setup(
                    &mut commands,
                    &[b"SCRIPT", b"LOAD", script.as_bytes()],
                    Some(Note::Setup(Step::Script(i))),
                )?;
            }
            let pattern = format!("{}*", keys::channel_prefix(self.url.db));
            events.send(&[b"PSUBSCRIBE", pattern.as_bytes()])
        })();
        result.map_err(fail)?;
        self.shas = vec![String::new(); scripts::ALL.len()];
        self.commands = Some(commands);
        self.events = Some(events);
        self.phase = Phase::Starting { since: now };
        Ok(())
    }

    /// Drops both connections: every command in flight fails, and the server hears why.
    pub fn disconnect(&mut self, why: String, out: &mut Vec<Incoming<T>>) {
        self.commands = None; // closing the descriptors takes them out of the poll
        self.events = None;
        self.asking = None;
        let lost = || Err("the connection to Redis was lost".to_owned());
        // Posts whose script replied but whose WAIT did not: not known to be replicated.
        for held in self.held.drain(..) {
            out.push(Incoming::Reply(held.then, lost()));
        }
        (self.waiting_replicas, self.wait_owed) = (false, false);
        for (_, note, _) in self.notes.drain(..) {
            if let Note::For(then, _) | Note::Hold(then, ..) = note {
                out.push(Incoming::Reply(then, lost()));
            }
        }
        let since = match self.phase {
            Phase::Down { since: Some(since) } => since,
            _ => Instant::now(),
        };
        self.phase = Phase::Down { since: Some(since) };
        out.push(Incoming::Down(why));
    }

    /// An event on one of the connections: write what waits, read what came, and hand
    /// the server at most `max` decoded frames (the rest wait for the next call: returns
    /// true when some do). On the Sentinel's connection, an answer opens the two others.
    pub fn on_event(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        out: &mut Vec<Incoming<T>>,
        max: usize,
    ) -> bool {
        if token == self.tokens.sentinel {
            self.on_sentinel_event(registry, out);
            return false;
        }
        let commands = token == self.tokens.commands;
        let link = if commands {
            self.commands.as_mut()
        } else {
            self.events.as_mut()
        };
        let Some(link) = link else {
            return false;
        };
        if let Err(e) = link.flush().and_then(|()| link.read()) {
            self.disconnect(format!("Redis at {}: {e}", self.shown()), out);
            return false;
        }
        self.drain(commands, out, max)
    }

    /// Decodes up to `max` frames already read on one connection. True when more wait.
    pub fn drain(&mut self, commands: bool, out: &mut Vec<Incoming<T>>, max: usize) -> bool {
        for _ in 0..max {
            let link = if commands {
                self.commands.as_mut()
            } else {
                self.events.as_mut()
            };
            let Some(link) = link else {
                return false;
            };
            let frame = match link.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return link.unread(), // partial: more may wait in the socket

                Err(e) => {
                    self.disconnect(format!("Redis at {}: {e}", self.shown()), out);
                    return false;
                }
            };
            let handled = if commands {
                self.on_reply(frame, out)
            } else {
                self.on_announcement(frame, out)
            };
            if let Err(Malformed(what)) = handled {
                // Which Redis: with several shards, the one to look at.
                let why = format!("unexpected answer from Redis at {}: {what}", self.shown());
                self.disconnect(why, out);
                return false;
            }
        }
        let left = |link: &Option<Link>| link.as_ref().is_some_and(Link::has_input);
        left(if commands {
            &self.commands
        } else {
            &self.events
        })
    }

    fn on_reply(&mut self, frame: OwnedFrame, out: &mut Vec<Incoming<T>>) -> Result<(), Malformed> {
        let Some((_, note, sent)) = self.notes.pop_front() else {
            return Err(Malformed("a reply nobody asked for"));
        };
        // With Sentinel, a write refused because the node is a replica now means a
        // failover demoted it under us: ask the Sentinels again.
        let mut demoted = false;
        if let (OwnedFrame::Error(e), Note::For(..) | Note::Hold(..) | Note::Ignore) =
            (&frame, &note)
        {
            let e_shown = resp::shown(e.as_bytes(), resp::SHOWN_BYTES_MAX);
            log::warn!(
                "Redis at {} answered {}: {e_shown}",
                self.shown(),
                sent.name
            );
            demoted = self.sentinels.is_some() && e.starts_with("READONLY");
            if let (true, Some((script, args))) = (e.starts_with("NOSCRIPT"), sent.again) {
                self.send_again(script, &args, note, out);
                return Ok(());
            }
        }
        match note {
            Note::Setup(step) => {
                if let OwnedFrame::Error(e) = &frame {
                    let e = resp::shown(e.as_bytes(), resp::SHOWN_BYTES_MAX);
                    let why = format!("Redis at {} refused the set-up: {e}", self.shown());
                    self.disconnect(why, out);
                    return Ok(());
                }
                match step {
                    Step::Done => {}
                    Step::Script(i) => {
                        let sha = match &frame {
                            OwnedFrame::BulkString(s) | OwnedFrame::SimpleString(s) => s,
                            _ => return Err(Malformed("SCRIPT LOAD answers a SHA1")),
                        };
                        self.shas[i] = String::from_utf8_lossy(sha).into_owned();
                    }
                    Step::Shard => {
                        if let Some(why) = self.other_shard(&frame)? {
                            self.disconnect(why, out);
                            return Ok(());
                        }
                    }
                    Step::Role => {
                        if !sentinel::is_master(&frame)? {
                            if let Some(sentinels) = self.sentinels.as_mut() {
                                sentinels.misled();
                            }
                            let why = format!(
                                "Redis at {} is not the master (a failover may be under way)",
                                self.master_in_use().unwrap_or_default()
                            );
                            self.disconnect(why, out);
                            return Ok(());
                        }
                    }
                }
                self.setup_left -= 1;
                self.maybe_up(out);
            }
            Note::For(then, expect) => {
                let answer = match (&frame, expect) {
                    (OwnedFrame::Error(e), _) => Err(e.clone()),
                    (_, Expect::Posted) => Ok(Answer::Posted(news::posted(&frame)?)),
                    (_, Expect::Snapshot) => Ok(Answer::Snapshot(news::snapshot(&frame)?)),
                    (_, Expect::Done) => Ok(Answer::Done),
                };
                out.push(Incoming::Reply(then, answer));
            }
            Note::Hold(then, expect, channel) => {
                let (answer, announce) = match (&frame, expect) {
                    (OwnedFrame::Error(e), _) => (Err(e.clone()), None),
                    (_, Expect::Posted) => {
                        let said = news::announcement(&frame)?;
                        let announce = channel.zip(said);
                        (Ok(Answer::Posted(news::posted(&frame)?)), announce)
                    }
                    (_, Expect::Snapshot) => (Ok(Answer::Snapshot(news::snapshot(&frame)?)), None),
                    (_, Expect::Done) => (Ok(Answer::Done), None),
                };
                self.held.push(Held {
                    then,
                    answer,
                    announce,
                });
            }
            Note::Replicas => self.on_replicas(&frame, out),
            Note::Ignore => {}
        }
        if demoted && self.commands.is_some() {
            let why = format!("Redis at {} is a replica now", self.shown());
            self.disconnect(why, out);
        }
        Ok(())
    }

    fn on_announcement(
        &mut self,
        frame: OwnedFrame,
        out: &mut Vec<Incoming<T>>,
    ) -> Result<(), Malformed> {
        let parts = match &frame {
            OwnedFrame::Array(parts) => parts,
            OwnedFrame::SimpleString(ok) if ok == b"OK" => return Ok(()), // AUTH
            OwnedFrame::Error(e) => {
                let e = resp::shown(e.as_bytes(), resp::SHOWN_BYTES_MAX);
                let why = format!("Redis at {} refused the subscription: {e}", self.shown());
                self.disconnect(why, out);
                return Ok(());
            }
            _ => return Err(Malformed("an announcement is an array")),
        };
        let bytes = |i: usize| match parts.get(i) {
            Some(OwnedFrame::BulkString(b)) => Ok(b.as_slice()),
            _ => Err(Malformed("an announcement's parts are strings")),
        };
        match bytes(0)? {
            b"psubscribe" => {
                self.subscribed = true;
                self.maybe_up(out);
            }
            b"pmessage" => {
                let channel = bytes(2)?;
                let prefix = keys::channel_prefix(self.url.db);
                let room = channel
                    .strip_prefix(prefix.as_bytes())
                    .ok_or(Malformed("a channel outside ours"))?;
                out.push(Incoming::News {
                    room: String::from_utf8_lossy(room).into_owned(),
                    news: news::news(bytes(3)?)?,
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// The reply to the shard marker's `SET ... NX GET`: when it names another place (the
    /// nodes' `--redis` lists differ, or changed), why this node must not use this Redis.
    fn other_shard(&self, frame: &OwnedFrame) -> Result<Option<String>, Malformed> {
        let Some(theirs) = shards::other_place(frame, self.place)? else {
            return Ok(None);
        };
        Ok(Some(format!(
            "Redis at {} is shard \"{theirs}\" (its {} key), but this node's --redis list \
             makes it shard {}: every node must list the same Redis in the same order, \
             and a changed list needs its rooms moved first (docs/SCALING.md, \"Changing \
             the shards\")",
            self.shown(),
            shards::MARKER_KEY,
            self.place.marker(),
        )))
    }

    fn maybe_up(&mut self, out: &mut Vec<Incoming<T>>) {
        let starting = matches!(self.phase, Phase::Starting { .. });
        if starting && self.setup_left == 0 && self.subscribed {
            self.phase = Phase::Up;
            out.push(Incoming::Up);
        }
    }

    /// Sends a command; `then` comes back with its reply. Gives `then` back at once when
    /// Redis is not up, so the caller can answer without waiting.
    fn command(&mut self, args: &[&[u8]], note: Note<T>) -> Result<(), Note<T>> {
        if self.phase != Phase::Up {
            return Err(note);
        }
        let Some(link) = self.commands.as_mut() else {
            return Err(note);
        };
        if link.send(args).is_err() {
            // The event for this connection reports the failure and drops it.
            return Err(note);
        }
        let sent = self.sent(args);
        self.notes.push_back((Instant::now(), note, sent));
        Ok(())
    }

    /// What to remember of a command until its reply comes.
    fn sent(&self, args: &[&[u8]]) -> Sent {
        match args {
            [b"EVALSHA", sha, rest @ ..] => {
                match self.shas.iter().position(|s| s.as_bytes() == *sha) {
                    Some(i) => Sent {
                        name: scripts::NAMES[i],
                        again: Some((i, rest.iter().map(|arg| arg.to_vec()).collect())),
                    },
                    None => Sent {
                        name: "a script",
                        again: None,
                    },
                }
            }
            [b"PUBLISH", ..] => Sent {
                name: "PUBLISH",
                again: None,
            },
            _ => Sent {
                name: "a command",
                again: None,
            },
        }
    }

    /// A script Redis had forgotten, sent once more with its text (`EVAL`, which also
    /// caches it again); if that fails too, its reply says so like any other error.
    fn send_again(
        &mut self,
        script: usize,
        args: &[Vec<u8>],
        note: Note<T>,
        out: &mut Vec<Incoming<T>>,
    ) {
        let mut again: Vec<&[u8]> = vec![b"EVAL", scripts::ALL[script].as_bytes()];
        again.extend(args.iter().map(Vec::as_slice));
        let sent = self.commands.as_mut().map(|link| link.send(&again));
        if !matches!(sent, Some(Ok(()))) {
            if let Note::For(then, _) | Note::Hold(then, ..) = note {
                out.push(Incoming::Reply(
                    then,
                    Err("the connection to Redis was lost".into()),
                ));
            }
            return;
        }
        let hold = matches!(note, Note::Hold(..));
        let sent = Sent {
            name: scripts::NAMES[script],
            again: None,
        };
        self.notes.push_back((Instant::now(), note, sent));
        if hold {
            // The WAIT sent after the first try comes back before this reply does.
            self.cover_with_wait();
        }
    }

    fn script(&self, which: &str) -> Vec<u8> {
        let index = scripts::ALL.iter().position(|s| *s == which).unwrap_or(0);
        self.shas
            .get(index)
            .cloned()
            .unwrap_or_default()
            .into_bytes()
    }

    fn give_back(result: Result<(), Note<T>>) -> Result<(), T> {
        match result {
            Ok(()) => Ok(()),
            Err(Note::For(then, _) | Note::Hold(then, ..)) => Err(then),
            Err(_) => unreachable!("only the server's notes are given back"),
        }
    }
}
