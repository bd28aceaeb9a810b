//! The chat's rules (docs/PROTOCOL.md), one test each, without a socket: requests and
//! other inputs go in, and each test reads the effects that come out, the bytes of an
//! answer included. The socket tests in `tests/` check the same rules on the wire.

use super::*;
use crate::api::NewMessage;
use crate::backplane::news::{News, Posted as Stored, Snapshot, Stored as Message};
use crate::backplane::{Answer, Incoming};
use crate::config::Config;
use crate::conn::Membership;
use crate::outgoing::{Outgoing, Response};
use crate::position::Position;
use crate::random::Random;
use crate::routes::Action;
use crate::stats::Stats;
use crate::waitlist::{ListKind, Waiter};
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// A chat and the connections that talk to it.
struct Bench {
    chat: Chat,
    now: Now,
    next_key: u32,
    client: u32,
}

impl Bench {
    fn new(config: Config) -> Bench {
        let mut chat = Chat::new(&config, Arc::new(Stats::default()), Random::from_clock());
        let client = chat
            .clients_mut()
            .connected(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        Bench {
            chat,
            now: Now {
                ms: 1_000,
                unix_ms: 1_800_000_000_000,
            },
            next_key: 0,
            client,
        }
    }

    fn local() -> Bench {
        Bench::new(Config::default())
    }

    /// A new connection.
    fn conn(&mut self) -> Waiter {
        self.next_key += 1;
        Waiter {
            key: self.next_key,
            generation: 1,
        }
    }

    /// `action` on `conn`; the effects it had.
    fn ask(&mut self, conn: Waiter, action: Action) -> Vec<Effect> {
        self.chat
            .request(self.now, conn, self.client, action, false);
        std::mem::take(&mut self.chat.effects)
    }

    /// `action` on a new connection, which must be answered at once: the answer's bytes.
    fn answer(&mut self, action: Action) -> String {
        let conn = self.conn();
        let effects = self.ask(conn, action);
        answer_to(conn, &effects).unwrap_or_else(|| panic!("no answer in {effects:?}"))
    }

    fn later(&mut self, ms: u64) {
        self.now.ms += ms;
        self.now.unix_ms += ms;
    }
}

fn poll(room: &str, since: Option<Position>, name: Option<&str>) -> Action {
    Action::RoomPoll {
        room: room.into(),
        since,
        name: name.map(str::to_owned),
    }
}

fn post(room: &str, from: &str, text: &str, client_id: Option<&str>) -> Action {
    Action::RoomPost {
        room: room.into(),
        message: NewMessage {
            from: from.into(),
            text: text.into(),
            client_id: client_id.map(str::to_owned),
        },
    }
}

/// The bytes a response puts on the wire.
fn bytes(response: Response) -> String {
    let mut out = Outgoing::new(response);
    let mut wire = Vec::new();
    out.write_to(&mut wire).expect("a Vec takes everything");
    String::from_utf8(wire).expect("answers are text")
}

/// The answer `conn` got, if any.
fn answer_to(conn: Waiter, effects: &[Effect]) -> Option<String> {
    effects.iter().find_map(|effect| match effect {
        Effect::Answer { to, response, .. } if *to == conn => Some(bytes(clone(response))),
        Effect::AnswerAll { to, response, .. } if to.contains(&conn) => {
            Some(String::from_utf8_lossy(response).into_owned())
        }
        _ => None,
    })
}

fn clone(response: &Response) -> Response {
    match response {
        Response::Owned(bytes) => Response::Owned(bytes.clone()),
        Response::Shared(bytes) => Response::Shared(Rc::clone(bytes)),
        Response::Pieces(pieces) => Response::Pieces(pieces.clone()),
    }
}

fn parked(effects: &[Effect]) -> Option<Membership> {
    effects.iter().find_map(|effect| match effect {
        Effect::Park { at, .. } => Some(*at),
        _ => None,
    })
}

/// The JSON body of an answer.
fn body(answer: &str) -> serde_json::Value {
    let (_, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    serde_json::from_str(body).expect("a JSON body")
}

fn status(answer: &str) -> u16 {
    answer[9..12].parse().expect("a status line")
}

fn position(text: &serde_json::Value) -> Position {
    text.as_str()
        .and_then(|t| Position::parse(t).ok())
        .expect("a position")
}

#[test]
fn positions_count_up_from_one_in_each_room() {
    let mut bench = Bench::local();
    let first = body(&bench.answer(post("a", "ann", "one", None)));
    let second = body(&bench.answer(post("a", "ann", "two", None)));
    let other = body(&bench.answer(post("b", "ann", "one", None)));
    let (first, second, other) = (
        position(&first["id"]),
        position(&second["id"]),
        position(&other["id"]),
    );
    assert_eq!((first.seq, second.seq, other.seq), (1, 2, 1));
    assert_eq!(first.epoch, second.epoch, "one epoch per run");
}

#[test]
fn a_post_reaches_every_waiting_poll_with_one_encoding() {
    let mut bench = Bench::local();
    let (ann, bob) = (bench.conn(), bench.conn());
    assert!(
        parked(&bench.ask(ann, poll("a", None, None))).is_some(),
        "an empty room waits"
    );
    assert!(parked(&bench.ask(bob, poll("a", None, None))).is_some());
    let poster = bench.conn();
    let effects = bench.ask(poster, post("a", "cat", "hello", None));
    let everyone = effects.iter().find_map(|effect| match effect {
        Effect::AnswerAll { to, response, .. } => Some((to.clone(), Rc::clone(response))),
        _ => None,
    });
    let (to, response) = everyone.expect("one answer for all");
    assert_eq!(to, vec![ann, bob]);
    let got = body(&String::from_utf8_lossy(&response));
    assert_eq!(got["messages"][0]["text"], "hello");
    assert_eq!(status(&answer_to(poster, &effects).unwrap()), 201);
    assert_eq!(bench.chat.waiting(), 0, "answered polls leave the list");
}

#[test]
fn a_poll_is_answered_at_once_from_its_position_and_waits_at_the_head() {
    let mut bench = Bench::local();
    for text in ["one", "two", "three"] {
        bench.answer(post("a", "ann", text, None));
    }
    let all = body(&bench.answer(poll("a", None, None)));
    assert_eq!(all["messages"].as_array().unwrap().len(), 3);
    assert_eq!(all["gap"], false);
    let head = position(&all["next"]);
    let after_first = Position { seq: 1, ..head };
    let rest = body(&bench.answer(poll("a", Some(after_first), None)));
    assert_eq!(rest["messages"][0]["text"], "two");
    let conn = bench.conn();
    assert!(parked(&bench.ask(conn, poll("a", Some(head), None))).is_some());
}

#[test]
fn a_position_from_another_epoch_is_a_gap_and_one_ahead_is_refused() {
    let mut bench = Bench::local();
    bench.answer(post("a", "ann", "one", None));
    let head = position(&body(&bench.answer(poll("a", None, None)))["next"]);
    let old = Position {
        epoch: head.epoch.wrapping_add(1),
        seq: 7,
    };
    let gap = body(&bench.answer(poll("a", Some(old), None)));
    assert_eq!(gap["gap"], true);
    assert_eq!(position(&gap["next"]), head);
    let ahead = Position { seq: 9, ..head };
    assert_eq!(status(&bench.answer(poll("a", Some(ahead), None))), 400);
}

#[test]
fn a_retry_with_the_same_client_id_is_stored_once() {
    let mut bench = Bench::local();
    let first = bench.answer(post("a", "ann", "hi", Some("7f3c")));
    assert_eq!(status(&first), 201);
    let waiting = bench.conn();
    bench.ask(
        waiting,
        poll("a", Some(position(&body(&first)["id"])), None),
    );
    let retry_conn = bench.conn();
    let effects = bench.ask(retry_conn, post("a", "ann", "hi", Some("7f3c")));
    let retry = answer_to(retry_conn, &effects).unwrap();
    assert_eq!(status(&retry), 200);
    assert_eq!(body(&retry)["duplicate"], true);
    assert_eq!(body(&retry)["id"], body(&first)["id"]);
    assert!(
        answer_to(waiting, &effects).is_none(),
        "nothing new reached anyone"
    );
    let other = bench.answer(post("a", "bob", "hi", Some("7f3c")));
    assert_eq!(status(&other), 201, "the id is per sender");
}

#[test]
fn a_poll_that_times_out_gets_no_messages_and_the_same_position() {
    let mut bench = Bench::local();
    bench.answer(post("a", "ann", "one", None));
    let head = position(&body(&bench.answer(poll("a", None, None)))["next"]);
    let conn = bench.conn();
    let at = parked(&bench.ask(conn, poll("a", Some(head), None))).unwrap();
    assert_eq!(bench.chat.left(bench.now, conn, at), None);
    bench.chat.poll_timed_out(conn, at);
    let answer = answer_to(conn, &bench.chat.effects).unwrap();
    assert_eq!(body(&answer)["messages"].as_array().unwrap().len(), 0);
    assert_eq!(position(&body(&answer)["next"]), head);
}

#[test]
fn the_classic_chat_is_the_lobby() {
    let mut bench = Bench::local();
    let waiting = bench.conn();
    assert!(parked(&bench.ask(waiting, Action::Park)).is_some());
    let poster = bench.conn();
    let classic = Action::Broadcast {
        from: "anonymous".into(),
        message: "hi all".into(),
    };
    let effects = bench.ask(poster, classic);
    assert!(answer_to(waiting, &effects)
        .unwrap()
        .ends_with(r#"{"ok":"hi all"}"#));
    assert!(answer_to(poster, &effects)
        .unwrap()
        .ends_with(r#"{"ok":"posted"}"#));
    let lobby = body(&bench.answer(poll(LOBBY, None, None)));
    assert_eq!(lobby["messages"][0]["from"], "anonymous");
}

#[test]
fn leaving_a_list_moves_the_last_waiter_into_the_hole() {
    let mut bench = Bench::local();
    let (a, b, c) = (bench.conn(), bench.conn(), bench.conn());
    let at_a = parked(&bench.ask(a, poll("r", None, None))).unwrap();
    bench.ask(b, poll("r", None, None));
    let at_c = parked(&bench.ask(c, poll("r", None, None))).unwrap();
    assert_eq!(at_c.index, 2);
    assert_eq!(bench.chat.left(bench.now, a, at_a), Some((c, 0)));
    assert_eq!(bench.chat.waiting(), 2);
}

#[test]
fn a_named_poll_is_present_until_its_window_passes_then_leaves() {
    let mut bench = Bench::local();
    let watcher = bench.conn();
    bench.ask(watcher, poll("r", None, None));
    let carl = bench.conn();
    let effects = bench.ask(carl, poll("r", None, Some("carl")));
    let joined = body(&answer_to(watcher, &effects).expect("the join reaches the waiting poll"));
    assert_eq!(
        joined["events"][0],
        serde_json::json!({"type":"join","name":"carl"})
    );
    let present = body(&bench.answer(Action::Presence { room: "r".into() }));
    assert_eq!(present["present"], serde_json::json!(["carl"]));
    let watcher = bench.conn();
    bench.ask(watcher, poll("r", None, None));
    bench.later(20_000 + 5_000 + 1);
    bench.chat.sweep(bench.now, Sweep::Presence);
    let left = answer_to(watcher, &bench.chat.effects).expect("the leave reaches waiters");
    assert_eq!(
        body(&left)["events"][0],
        serde_json::json!({"type":"leave","name":"carl"})
    );
}

#[test]
fn names_are_capped_per_room_and_per_client() {
    let mut bench = Bench::new(Config {
        max_names_per_room: 2,
        max_names_per_client: 3,
        ..Config::default()
    });
    assert_eq!(
        status(&bench.answer(Action::Presence { room: "r".into() })),
        200
    );
    for name in ["a", "b"] {
        let conn = bench.conn();
        assert!(parked(&bench.ask(conn, poll("r", None, Some(name)))).is_some());
    }
    assert_eq!(
        status(&bench.answer(poll("r", None, Some("c")))),
        507,
        "the room is full"
    );
    let again = bench.conn();
    assert!(
        parked(&bench.ask(again, poll("r", None, Some("a")))).is_some(),
        "a name present"
    );
    let conn = bench.conn();
    assert!(parked(&bench.ask(conn, poll("s", None, Some("d")))).is_some());
    let refused = bench.answer(poll("t", None, Some("e")));
    assert_eq!(status(&refused), 429, "the client has three names");
    assert!(refused.contains("Retry-After: 25\r\n"), "{refused}");
}

#[test]
fn typing_reaches_waiters_is_never_stored_and_is_rate_limited() {
    let mut bench = Bench::local();
    let watcher = bench.conn();
    bench.ask(watcher, poll("r", None, None));
    let typist = bench.conn();
    let typing = || Action::Typing {
        room: "r".into(),
        from: "ann".into(),
    };
    let effects = bench.ask(typist, typing());
    assert_eq!(status(&answer_to(typist, &effects).unwrap()), 202);
    let event = body(&answer_to(watcher, &effects).unwrap());
    assert_eq!(
        event["events"][0],
        serde_json::json!({"type":"typing","from":"ann"})
    );
    let again = bench.answer(typing());
    assert_eq!(status(&again), 429, "one per --typing-interval");
    assert!(again.contains("Retry-After: 1\r\n"));
    let reader = bench.conn();
    let since = Some(position(&event["next"]));
    assert!(
        parked(&bench.ask(reader, poll("r", since, None))).is_some(),
        "nothing stored"
    );
}

#[test]
fn posts_past_the_burst_are_refused_with_when_to_come_back() {
    let mut bench = Bench::new(Config {
        post_rate: 1,
        post_burst: 3,
        ..Config::default()
    });
    for n in 0..3 {
        assert_eq!(
            status(&bench.answer(post("r", "ann", &format!("{n}"), None))),
            201
        );
    }
    let refused = bench.answer(post("r", "bob", "one more", None));
    assert_eq!(
        status(&refused),
        429,
        "the address is the client, whatever the name"
    );
    assert!(refused.contains("Retry-After: 1\r\n"), "{refused}");
    bench.later(1_000);
    assert_eq!(status(&bench.answer(post("r", "ann", "later", None))), 201);
}

#[test]
fn at_the_room_cap_an_idle_room_gives_way_and_rooms_in_use_are_kept() {
    let mut bench = Bench::new(Config {
        max_rooms: 3,
        ..Config::default()
    });
    bench.answer(post("old", "ann", "kept?", None));
    let waiting = bench.conn();
    bench.ask(waiting, poll("busy", None, None));
    bench.later(61_000);
    assert_eq!(status(&bench.answer(post("new", "ann", "hi", None))), 201);
    let reader = bench.conn();
    let effects = bench.ask(reader, poll("old", None, None));
    assert!(
        parked(&effects).is_some(),
        "the idle room gave way, with its history"
    );
    assert_eq!(bench.chat.room_count(), 3);
    let refused = bench.answer(poll("another", None, None));
    assert_eq!(status(&refused), 507, "every room is in use: {refused}");
}

#[test]
fn one_client_gives_at_most_its_share_of_rooms_their_first_message() {
    let mut bench = Bench::new(Config {
        max_rooms_per_client: 2,
        ..Config::default()
    });
    assert_eq!(status(&bench.answer(post("a", "ann", "1", None))), 201);
    assert_eq!(status(&bench.answer(post("b", "ann", "1", None))), 201);
    assert_eq!(status(&bench.answer(post("c", "ann", "1", None))), 429);
    assert_eq!(
        status(&bench.answer(post("a", "ann", "2", None))),
        201,
        "a room with messages"
    );
    assert_eq!(bench.chat.room_count(), 3, "a refused post made no room");
}

#[test]
fn a_stream_starts_with_its_head_then_hears_its_own_join() {
    let mut bench = Bench::local();
    let conn = bench.conn();
    let stream = Action::Stream {
        room: "r".into(),
        since: None,
        name: Some("ann".into()),
        expires: None,
    };
    let effects = bench.ask(conn, stream);
    let Effect::Stream { to, at, .. } = &effects[0] else {
        panic!("the stream starts first: {effects:?}");
    };
    assert_eq!((*to, at.list), (conn, ListKind::Stream));
    let join = effects.iter().find_map(|effect| match effect {
        Effect::Frames { to, frame, .. } if to.contains(&conn) => Some(frame.clone()),
        _ => None,
    });
    let join = String::from_utf8_lossy(&join.expect("its own join")).into_owned();
    assert!(join.starts_with("event: join\n"), "{join}");
}

#[test]
fn a_stream_whose_token_ran_out_gets_no_more_messages() {
    let mut bench = Bench::new(Config {
        token_secret: Some(Arc::new(crate::token::Secret::from_bytes(
            b"0123456789abcdef0123456789abcdef",
        ))),
        ..Config::default()
    });
    let conn = bench.conn();
    let exp_secs = bench.now.unix_ms / 1000 + 10;
    let stream = Action::Stream {
        room: "r".into(),
        since: None,
        name: Some("ann".into()),
        expires: Some(exp_secs),
    };
    let effects = bench.ask(conn, stream);
    let Some(Effect::Stream { at, .. }) = effects.first() else {
        panic!("the stream starts first: {effects:?}");
    };
    let at = *at;
    bench.later(9_000);
    assert!(
        !bench.chat.stream_due(bench.now, conn, at, false),
        "not yet: a heartbeat"
    );
    bench.chat.effects.clear();
    bench.later(1_000 + crate::token::LEEWAY_SECS * 1000);
    let poster = bench.conn();
    let effects = bench.ask(poster, post("r", "bob", "too late", None));
    let ended = effects
        .iter()
        .any(|e| matches!(e, Effect::EndStream { to, .. } if *to == conn));
    assert!(ended, "{effects:?}");
    let reached = effects
        .iter()
        .any(|e| matches!(e, Effect::Frames { to, message: true, .. } if to.contains(&conn)));
    assert!(!reached, "nothing posted after the token's end reaches it");
}

#[test]
fn while_shutting_down_a_request_that_would_wait_is_told_to_come_back() {
    let mut bench = Bench::local();
    bench.chat.shutting_down();
    let answer = bench.answer(poll("r", None, None));
    assert_eq!(status(&answer), 503);
    let retry: u64 = answer
        .split("Retry-After: ")
        .nth(1)
        .and_then(|rest| rest.split("\r\n").next())
        .and_then(|secs| secs.parse().ok())
        .expect("a Retry-After");
    assert!((1..=5).contains(&retry), "{retry}");
}

/// The same rules with `--redis`: what goes to Redis, and what its replies do.
mod redis;
