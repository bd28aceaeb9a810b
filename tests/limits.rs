//! The per-client flood limits as a client meets them: posts past the bucket get 429 and
//! when to come back, and get through again once it has refilled; a client's connections
//! past `--max-conns-per-client` are refused at accept; what the limiter holds is freed
//! and shown in `/stats`. Clients are told apart by source address (127.0.0.2, ...).

mod common;

use comet_chat::token::{self, Secret};
use comet_chat::Config;
use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

fn post_from(addr: SocketAddr, source: &str, body: &str) -> Reply {
    post_form_from(addr, source, "/rooms/r/messages", body)
}

#[test]
fn posts_past_the_burst_wait_for_the_bucket_to_refill() {
    let server = start(Config {
        post_rate: 2,
        post_burst: 3,
        ..test_config()
    });
    let addr = server.addr;
    for i in 0..3 {
        assert_eq!(
            post_from(addr, "127.0.0.2", &format!("from=ann&text=m{i}")).status,
            201
        );
    }
    let refused = post_from(addr, "127.0.0.2", "from=ann&text=one too many");
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(
        refused.header("Retry-After"),
        Some("1"),
        "a permit comes back in 0.5 s"
    );
    assert!(refused.json()["error"]
        .as_str()
        .unwrap()
        .contains("--post-rate"));
    // Changing the name buys nothing: the address is the client.
    assert_eq!(post_from(addr, "127.0.0.2", "from=bob&text=hi").status, 429);
    // Another client is not held back.
    assert_eq!(post_from(addr, "127.0.0.3", "from=cy&text=hi").status, 201);
    // Half a second later one permit is back, and one post gets through.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        post_from(addr, "127.0.0.2", "from=ann&text=again").status,
        201
    );
    assert_eq!(
        post_from(addr, "127.0.0.2", "from=ann&text=and again").status,
        429
    );
    // The classic POST /chat is a post like any other.
    let mut classic = Client::connect_from(addr, "127.0.0.2");
    classic.post_message("message=hi");
    assert_eq!(classic.read_reply().status, 429);
    let stats = get(addr, "/stats").json();
    assert_eq!(stats["limits"]["posts_refused"], 4, "{stats}");
    assert_eq!(stats["messages"], 5, "refused posts were never stored");
}

/// With tokens the client is the token's name: limited wherever it posts from, and never
/// holding back the others who share its address (an office behind one NAT).
#[test]
fn with_tokens_a_name_is_limited_from_any_address_and_alone() {
    let secret = Secret::from_bytes(b"a test secret that is long enough for HS256");
    let now = token::now_secs();
    let ann = token::mint(&secret, "ann", &["*".into()], 60, now);
    let bob = token::mint(&secret, "bob", &["*".into()], 60, now);
    let server = start(Config {
        token_secret: Some(Arc::new(secret)),
        post_rate: 1,
        post_burst: 2,
        ..test_config()
    });
    let post = |token: &str, source: &str| {
        let mut client = Client::connect_from(server.addr, source);
        client.send(
            format!(
                "POST /rooms/r/messages HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\ntext=hi"
            )
            .as_bytes(),
        );
        client.read_reply().status
    };
    assert_eq!(post(&ann, "127.0.0.2"), 201);
    assert_eq!(post(&ann, "127.0.0.3"), 201);
    assert_eq!(
        post(&ann, "127.0.0.4"),
        429,
        "ann's bucket is empty wherever she posts from"
    );
    assert_eq!(
        post(&bob, "127.0.0.2"),
        201,
        "bob, behind ann's address, is not held back"
    );
    assert_eq!(post(&bob, "127.0.0.2"), 201);
}

#[test]
fn typing_is_limited_per_client_not_per_connection() {
    let server = start_default();
    let typing = |source: &str, from: &str| {
        post_form_from(
            server.addr,
            source,
            "/rooms/r/typing",
            &format!("from={from}"),
        )
    };
    assert_eq!(typing("127.0.0.2", "ann").status, 202);
    // A new connection is the same client.
    let again = typing("127.0.0.2", "ann");
    assert_eq!(again.status, 429);
    assert_eq!(again.header("Retry-After"), Some("1"));
    // Another name from the same address, and the same name from another address, are
    // other people; but rotating names from one address runs out after a few.
    assert_eq!(typing("127.0.0.3", "ann").status, 202);
    let statuses: Vec<u16> = ["bob", "cy", "dee", "eve"]
        .iter()
        .map(|name| typing("127.0.0.2", name).status)
        .collect();
    assert_eq!(statuses, [202, 202, 429, 429]);
    let stats = get(server.addr, "/stats").json();
    assert_eq!(stats["limits"]["typing_refused"], 3, "{stats}");
}

#[test]
fn connections_past_the_per_address_cap_are_refused_at_accept() {
    let server = start(Config {
        max_conns_per_client: 5,
        ..test_config()
    });
    let addr = server.addr;
    let mut held: Vec<Client> = (0..5)
        .map(|_| Client::connect_from(addr, "127.0.0.2"))
        .collect();
    for client in held.iter_mut() {
        client.get("/chat");
    }
    wait_parked(&server, 5);
    // The sixth is answered 503 before it sends a byte, and closed.
    let mut sixth = Client::connect_from(addr, "127.0.0.2");
    let refused = sixth.read_reply();
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("Retry-After"), Some("5"));
    assert!(refused.text().contains("--max-conns-per-client"));
    assert!(sixth.closed_by_server());
    // Someone else still gets in.
    let mut other = Client::connect_from(addr, "127.0.0.3");
    other.get("/stats");
    let stats = other.read_reply().json();
    assert_eq!(stats["limits"]["connections_refused"], 1);
    // Once one of the five goes, the address may connect again.
    drop(held.pop());
    wait_until(
        Duration::from_secs(5),
        "the closed poll to be reaped",
        || counter(&server, |s| &s.pending_polls) == 4,
    );
    let mut seventh = Client::connect_from(addr, "127.0.0.2");
    seventh.get("/stats");
    assert_eq!(seventh.read_reply().status, 200);
}

#[test]
fn the_limiter_forgets_clients_whose_buckets_refilled() {
    let server = start(Config {
        post_rate: 10,
        post_burst: 2,
        ..test_config()
    });
    for n in 2..12 {
        let source = format!("127.0.0.{n}");
        assert_eq!(
            post_from(server.addr, &source, "from=ann&text=hi").status,
            201
        );
    }
    let entries = || get(server.addr, "/stats").json()["limits"]["limiter_entries"].as_u64();
    assert_eq!(entries(), Some(10), "one bucket per client that posted");
    // A bucket is full again 0.1 s after one post; the sweep runs every second.
    wait_until(Duration::from_secs(10), "the buckets to be freed", || {
        entries() == Some(0)
    });
}

/// A post of `text` to `room` from the source address `source`: another client, as far as
/// per-client limits go.
fn pin(addr: std::net::SocketAddr, source: &str, room: &str, text: &str) -> Reply {
    let body = format!("from=x&text={text}");
    post_form_from(addr, source, &format!("/rooms/{room}/messages"), &body)
}

/// Regression: a room with a message keeps its place in `--max-rooms` for good, so one
/// client posting once into enough made-up rooms took every place, and nobody could make a
/// room again until a restart. One address may give at most `--max-rooms-per-client` rooms
/// their first message; rooms that already have messages, and reads, stay open to it.
#[test]
fn one_address_cannot_take_every_room() {
    let server = start(Config {
        max_rooms: 10,
        max_rooms_per_client: 3,
        ..test_config()
    });
    let addr = server.addr;
    let post = |source: &str, room: &str| pin(addr, source, room, "pin");
    for room in ["a", "b", "c"] {
        assert_eq!(post("127.0.0.2", room).status, 201, "{room}");
    }
    let refused = post("127.0.0.2", "d");
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(refused.text().contains("--max-rooms-per-client"));
    // Rooms that have messages already, and reading new ones, are still fine.
    assert_eq!(post("127.0.0.2", "a").status, 201);
    assert_eq!(post("127.0.0.3", "e").status, 201, "another address");
    assert_eq!(post("127.0.0.2", "e").status, 201, "e has a message now");
    let mut reader = Client::connect_from(addr, "127.0.0.2");
    reader.get("/rooms/new/presence");
    assert_eq!(reader.read_reply().status, 200);
    // So a room is left for others to make, whatever one address did.
    assert_eq!(post("127.0.0.4", "f").status, 201);
}

/// Regression: with every place taken by rooms with history, a few addresses at their
/// `--max-rooms-per-client` filled the cap for good. Now the idle room unused longest gives
/// way to a calm client's new room, and a room that gave way no longer counts against its
/// maker's limit.
#[test]
fn a_few_addresses_cannot_fill_the_room_cap_for_good() {
    let server = start(Config {
        max_rooms: 8, // the lobby and seven more
        max_rooms_per_client: 3,
        ..test_config()
    });
    let addr = server.addr;
    let post = |source: &str, room: &str| pin(addr, source, room, "pin");
    for (source, rooms) in [
        ("127.0.0.2", ["a", "b", "c"]),
        ("127.0.0.3", ["d", "e", "f"]),
    ] {
        for room in rooms {
            assert_eq!(post(source, room).status, 201, "{source} {room}");
        }
    }
    assert_eq!(post("127.0.0.9", "calm").status, 201, "the last free place");
    assert_eq!(post("127.0.0.2", "g").status, 429, "127.0.0.2 holds three");
    let calm = post("127.0.0.9", "calm-too");
    assert_eq!(calm.status, 201, "{}", calm.text());
    // All within a burst: of the two heaviest keepers' rooms, f gave way, made last.
    assert_eq!(counter(&server, |s| &s.rooms_given_way), 1, "f");
    // 127.0.0.3 holds two rooms now, so it may give one more its first message.
    assert_eq!(
        post("127.0.0.2", "g").status,
        429,
        "127.0.0.2 still holds three"
    );
    assert_eq!(post("127.0.0.3", "g").status, 201);
    assert_eq!(post("127.0.0.9", "calm").status, 201, "still there");
}

/// The hostile bench's room case, small: more addresses than the cap has places each make
/// as many rooms as they may, all within a minute. The rooms that give way are theirs (the
/// rooms of whoever holds the most), so a calm client's idle rooms used in the last minute
/// keep their history, and it can still make a new room and chat.
#[test]
fn a_burst_of_rooms_from_many_addresses_spares_a_calm_clients_rooms() {
    let server = start(Config {
        max_rooms: 20,
        max_rooms_per_client: 5,
        ..test_config()
    });
    let addr = server.addr;
    let post = |source: &str, room: &str, text: &str| pin(addr, source, room, text);
    for room in ["calm-1", "calm-2"] {
        assert_eq!(post("127.0.0.9", room, "mine").status, 201);
    }
    for n in 0..8 {
        let source = format!("127.0.1.{}", n + 1);
        for room in 0..5 {
            let reply = post(&source, &format!("a{n}-{room}"), "pin");
            assert_eq!(reply.status, 201, "{source} {room}: {}", reply.text());
        }
    }
    assert!(counter(&server, |s| &s.rooms_given_way) >= 20);
    for room in ["calm-1", "calm-2"] {
        let read = get(addr, &format!("/rooms/{room}/messages?since=0"));
        assert_eq!(read.texts(), ["mine"], "{room}");
    }
    assert_eq!(post("127.0.0.9", "calm-3", "new").status, 201);
    assert_eq!(get(addr, "/rooms/calm-3/messages?since=0").texts(), ["new"]);
}

/// Regression: in a burst, keepers that weigh the same (nobody pushed a room out yet, each
/// holds one) gave up the room used longest ago, which is the calm client's, made before
/// the burst: the first room from any new address, or one read of a made-up room, took its
/// history. Among equals the room made last gives way, so the rooms there before the burst
/// keep their places, however often anyone reads them.
#[test]
fn a_burst_of_one_room_addresses_spares_a_room_made_before_it() {
    let server = start(Config {
        max_rooms: 6, // the lobby and five more
        max_rooms_per_client: 5,
        ..test_config()
    });
    let addr = server.addr;
    let post = |source: &str, room: &str, text: &str| {
        post_form_from(
            addr,
            source,
            &format!("/rooms/{room}/messages"),
            &format!("from=x&text={text}"),
        )
    };
    assert_eq!(post("127.0.0.9", "calm", "mine").status, 201);
    for n in 1..=4 {
        let reply = post(&format!("127.0.1.{n}"), &format!("fill-{n}"), "pin");
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    // Full. A newcomer's room, then a read of a made-up room from yet another address.
    assert_eq!(post("127.0.2.1", "new", "hi").status, 201);
    let mut reader = Client::connect_from(addr, "127.0.3.1");
    reader.get("/rooms/made-up/messages?since=00000000-1");
    assert_eq!(reader.read_reply().status, 200);
    assert_eq!(counter(&server, |s| &s.rooms_given_way), 2);
    let read = get(addr, "/rooms/calm/messages?since=0");
    assert_eq!(
        read.texts(),
        ["mine"],
        "the calm client's room kept its history"
    );
}
