//! Rooms by name ([`Rooms`]), created on first use up to a cap, past which a vacant room
//! gives its place to a new one, or else the idle room unused longest. Knows no sockets.

use crate::recency::Recency;
use crate::room::{HistoryLimits, Room};
use crate::waitlist::{ListKind, WaitList};
use std::collections::HashMap;

/// The room cap was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyRooms;

/// A room found or made for a name.
pub struct Opened {
    /// Its id.
    pub id: u32,
    /// The room that gave its place (and id) to it, if the cap made one give way: its
    /// history is gone from this process, and its keeper gets its place back.
    pub gave_way: Option<Room>,
    /// The room was made by this call (new, or in the place of one that gave way).
    pub made: bool,
}

/// What the chat asks of the world outside the rooms when one must give way: whether a
/// room is held, whether a store keeps messages of it, and how much a keeper weighs.
pub struct Places<H, S, K> {
    /// Whether the room with this id is held by something outside: requests wait on it,
    /// or (with `--redis`) a read of it is on its way. A held room never gives way.
    pub held: H,
    /// Whether a store outside holds messages of the room with this id (with `--redis`:
    /// a post went to Redis from here, or one was announced): then it is not vacant, and
    /// gives way only as the idle room unused longest.
    pub stored: S,
    /// What the client with this id (`Room::keeper`) weighs in a burst, heaviest first:
    /// how many rooms its requests pushed out at the cap, then how many rooms it keeps.
    pub keeper_weight: K,
}

/// [`Places`] with nothing held, nothing stored outside and no keepers: the lobby's, and
/// the tests'.
pub type NoPlacesHeld = Places<fn(u32) -> bool, fn(u32) -> bool, fn(u32) -> (u32, u32)>;

impl Default for NoPlacesHeld {
    fn default() -> Self {
        Places {
            held: |_| false,
            stored: |_| false,
            keeper_weight: |_| (0, 0),
        }
    }
}

/// The closures a [`Places`] is made of, as `room_id` takes them.
type PlacesRef<'a, H, S, K> = &'a Places<H, S, K>;

/// The name `/chat` answers to.
pub const LOBBY: &str = "lobby";

/// Rooms looked at, at most, for a vacant one when a new room meets the cap: a bound on
/// what one request can cost the loop however large `--max-rooms` is. The search goes
/// on from where the last one stopped, so every room is looked at in turn.
const VACANCY_SEARCH: usize = 1024;

/// After every room was looked at in turn and none was vacant, the search for a vacant
/// room rests this long (new rooms take the idle room unused longest meanwhile); after
/// every room was found in use, new rooms are refused this long without looking again: a
/// flood of new names at a full server costs one map lookup each, not a search.
const NO_VACANCY_PAUSE_MS: u64 = 1000;

/// An idle room used this recently gives way only if every idle room was (a burst of new
/// rooms), and then the keeper that pushed the most rooms out gives up its own first (then
/// the one that holds the most; among equals, the room made last): addresses making rooms
/// as fast as they may take each other's places, not those of clients whose rooms were
/// there before the burst.
const RECENT_MS: u64 = 60_000;

/// What an idle room weighs in a burst, heaviest first: its keeper's weight
/// ([`Places::keeper_weight`]), then when it was made (`Age::made`).
type Weight = ((u32, u32), u64);

/// When a room was made and last used: the order in which rooms give way.
#[derive(Clone, Copy, Debug, Default)]
struct Age {
    /// Counted in rooms made: in a burst, of rooms whose keepers weigh the same, the one
    /// made last gives way. Not the one used longest ago: that is a room made before the
    /// burst (a calm client's), and a read of it makes it look new, so neither order of
    /// use protects it; nobody can make a room older.
    made: u64,
    /// The loop's milliseconds.
    used_ms: u64,
}

/// All rooms.
pub struct Rooms {
    /// Changes every start, so positions from an earlier run are recognised. With
    /// `--redis` a room's epoch is its shard's instead (`Chat::epoch`), the same on every
    /// node, changing only if that Redis lost its data; this one stands in until a shard's
    /// is known.
    pub epoch: u32,
    /// History caps for every room.
    pub history: HistoryLimits,
    max_rooms: usize,
    /// Rooms by id (index). A room is never removed, only replaced in its place by a new
    /// one once it is vacant (`Room::is_vacant`), so an id stays valid while named.
    rooms: Vec<Room>,
    by_name: HashMap<Box<str>, u32>,
    /// Where the next search for a vacant room starts.
    search_from: u32,
    /// Rooms looked at since a vacant one was last found.
    looked_in_vain: usize,
    /// Until when (the loop's milliseconds) no search for a vacant room is made, after a
    /// whole round of the rooms found none vacant.
    no_search_until_ms: u64,
    /// Rooms but the lobby, least recently used first: who gives way when none is vacant.
    recency: Recency,
    /// Each room's age, by id: it grows with `rooms`.
    ages: Vec<Age>,
    /// Rooms made so far, the lobby included: the next room's `Age::made`.
    rooms_made: u64,
    /// Rooms taken from the old end of `recency` and found in use, since one was last
    /// found idle.
    in_use_in_vain: usize,
    /// Until when new rooms are refused without looking, after every room was in use.
    no_room_until_ms: u64,
}

impl Rooms {
    /// A chat with only the lobby. `shared`: with `--redis`.
    pub fn new(epoch: u32, history: HistoryLimits, max_rooms: usize) -> Rooms {
        let mut chat = Rooms {
            epoch,
            history,
            max_rooms: max_rooms.max(1),
            rooms: Vec::new(),
            by_name: HashMap::new(),
            search_from: 1,
            looked_in_vain: 0,
            no_search_until_ms: 0,
            recency: Recency::default(),
            ages: Vec::new(),
            rooms_made: 0,
            in_use_in_vain: 0,
            no_room_until_ms: 0,
        };
        chat.room_id(LOBBY, Places::default(), 0)
            .expect("the lobby fits under any cap");
        chat
    }

    /// The id of room `name` if it exists here (never creates it).
    pub fn find(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    /// Room `name`, created on first use; the name must already be valid. Every call counts
    /// as a use of the room. At the cap a room gives its place and its id to the new one:
    /// a vacant room, else the idle room unused longest, history and all, unless every
    /// idle room was used within `RECENT_MS`; then the one whose keeper weighs the most
    /// (`Places::keeper_weight`), of those the one made last. Never the lobby, nor a room
    /// `places` says is held. `now_ms` is the loop's
    /// clock.
    pub fn room_id(
        &mut self,
        name: &str,
        places: Places<impl Fn(u32) -> bool, impl Fn(u32) -> bool, impl Fn(u32) -> (u32, u32)>,
        now_ms: u64,
    ) -> Result<Opened, TooManyRooms> {
        if let Some(&id) = self.by_name.get(name) {
            self.used(id, now_ms);
            return Ok(Opened {
                id,
                gave_way: None,
                made: false,
            });
        }
        let (id, gave_way) = if self.rooms.len() < self.max_rooms {
            self.rooms.push(Room::new(name));
            self.ages.push(Age::default());
            (self.rooms.len() as u32 - 1, None)
        } else {
            let id = self
                .find_vacant(&places, now_ms)
                .or_else(|| self.least_recently_used(&places, now_ms))
                .ok_or(TooManyRooms)?;
            let room = Room::new(name);
            let old = std::mem::replace(&mut self.rooms[id as usize], room);
            self.by_name.remove(&old.name);
            (id, Some(old))
        };
        self.by_name.insert(name.into(), id);
        self.ages[id as usize].made = self.rooms_made;
        self.rooms_made += 1;
        self.used(id, now_ms);
        Ok(Opened {
            id,
            gave_way,
            made: true,
        })
    }

    /// Room `id` was used at `now_ms` (a request, or a message another node announced).
    /// O(1).
    pub fn used(&mut self, id: u32, now_ms: u64) {
        self.ages[id as usize].used_ms = now_ms;
        if id != self.lobby() {
            self.recency.use_now(id);
        }
    }

    /// A vacant room's id, looking at no more than `VACANCY_SEARCH` rooms. With more rooms
    /// than that, a call may miss a vacant room further on (the next call goes on from
    /// there), and the idle room unused longest gives way instead.
    fn find_vacant(
        &mut self,
        places: PlacesRef<impl Fn(u32) -> bool, impl Fn(u32) -> bool, impl Fn(u32) -> (u32, u32)>,
        now_ms: u64,
    ) -> Option<u32> {
        if now_ms < self.no_search_until_ms {
            return None;
        }
        let others = self.rooms.len() - 1; // all but the lobby, id 0
        for _ in 0..VACANCY_SEARCH.min(others) {
            let id = self.search_from;
            self.search_from = if id as usize >= others { 1 } else { id + 1 };
            let vacant = self.rooms[id as usize].is_vacant();
            if vacant && !(places.held)(id) && !(places.stored)(id) {
                self.looked_in_vain = 0;
                return Some(id);
            }
            self.looked_in_vain += 1;
        }
        if self.looked_in_vain >= others {
            self.looked_in_vain = 0;
            self.no_search_until_ms = now_ms + NO_VACANCY_PAUSE_MS;
        }
        None
    }

    /// The idle room unused longest, walking no more than `VACANCY_SEARCH` rooms from the
    /// old end of the list; if it was used within `RECENT_MS`, the idle room walked past
    /// whose keeper weighs the most (of those, the one made last). A room found in use is in
    /// use now, so it moves to the new end: the next call does not walk past it again.
    fn least_recently_used(
        &mut self,
        places: PlacesRef<impl Fn(u32) -> bool, impl Fn(u32) -> bool, impl Fn(u32) -> (u32, u32)>,
        now_ms: u64,
    ) -> Option<u32> {
        if now_ms < self.no_room_until_ms {
            return None;
        }
        let others = self.rooms.len() - 1;
        let mut heaviest: Option<(Weight, u32)> = None; // (what it weighs, id)
        let mut walked = self.recency.oldest();
        for _ in 0..VACANCY_SEARCH.min(others) {
            let Some(id) = walked else { break };
            walked = self.recency.newer(id);
            let room = &self.rooms[id as usize];
            if !room.is_idle() || (places.held)(id) {
                self.recency.use_now(id);
                self.in_use_in_vain += 1;
                continue;
            }
            self.in_use_in_vain = 0;
            let age = self.ages[id as usize];
            if now_ms.saturating_sub(age.used_ms) >= RECENT_MS {
                // Only the first idle room can get here: the ones after it are newer.
                return Some(id);
            }
            let weight = room.keeper.map_or((0, 0), &places.keeper_weight);
            let weight = (weight, age.made);
            if heaviest.is_none_or(|(most, _)| weight > most) {
                heaviest = Some((weight, id));
            }
        }
        if heaviest.is_none() && self.in_use_in_vain >= others {
            self.in_use_in_vain = 0;
            self.no_room_until_ms = now_ms + NO_VACANCY_PAUSE_MS;
        }
        heaviest.map(|(_, id)| id)
    }

    /// The id of the lobby.
    pub fn lobby(&self) -> u32 {
        0
    }

    /// A room by id.
    pub fn room(&mut self, id: u32) -> &mut Room {
        &mut self.rooms[id as usize]
    }

    /// Room ids, for sweeps.
    pub fn room_ids(&self) -> std::ops::Range<u32> {
        0..self.rooms.len() as u32
    }

    /// Number of rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// A room's list of one kind.
    pub fn list(&mut self, room: u32, kind: ListKind) -> &mut WaitList {
        let room = self.room(room);
        match kind {
            ListKind::Classic => &mut room.classic,
            ListKind::Poll => &mut room.polls,
            ListKind::Stream => &mut room.streams,
            ListKind::Socket => &mut room.sockets,
        }
    }

    /// Parked polls (classic and JSON) in all rooms.
    pub fn waiting(&self) -> usize {
        self.rooms
            .iter()
            .map(|r| r.classic.len() + r.polls.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waitlist::Waiter;

    const HISTORY: HistoryLimits = HistoryLimits {
        messages: 10,
        bytes: 1 << 16,
    };

    const FREE: NoPlacesHeld = Places {
        held: |_| false,
        stored: |_| false,
        keeper_weight: |_| (0, 0),
    };

    const WAITER: Waiter = Waiter {
        key: 7,
        generation: 1,
    };

    /// The id `room_id` gives, whether or not a room gave way for it.
    fn open(chat: &mut Rooms, name: &str, now_ms: u64) -> Result<u32, TooManyRooms> {
        chat.room_id(name, FREE, now_ms).map(|opened| opened.id)
    }

    fn post(chat: &mut Rooms, id: u32) {
        let room = chat.room(id);
        room.post(1, "ann", "hi", None, 0, &HISTORY);
    }

    #[test]
    fn rooms_are_created_on_first_use_up_to_the_cap() {
        let mut chat = Rooms::new(1, HISTORY, 3);
        assert_eq!(open(&mut chat, LOBBY, 0), Ok(0));
        for name in ["a", "b"] {
            let id = open(&mut chat, name, 0).unwrap();
            post(&mut chat, id);
        }
        assert_eq!(open(&mut chat, "a", 0), Ok(1), "existing rooms are found");
        assert_eq!(chat.room_count(), 3);
        let opened = chat.room_id("c", FREE, 0).unwrap();
        assert!(opened.gave_way.is_some(), "at the cap a room gives way");
        assert_eq!(chat.room_count(), 3);
    }

    /// Regression (a few addresses that gave rooms their first message filled `--max-rooms`
    /// for good, and every new room was refused 507 until a restart): at the cap the idle
    /// room unused longest gives way, history and all. The lobby never does.
    #[test]
    fn at_the_cap_the_idle_room_unused_longest_gives_way_history_and_all() {
        let mut chat = Rooms::new(1, HISTORY, 4);
        for name in ["a", "b", "c"] {
            let id = open(&mut chat, name, 0).unwrap();
            post(&mut chat, id);
        }
        open(&mut chat, "a", 0).unwrap(); // a is used again: b is now unused longest
        let opened = chat.room_id("new", FREE, RECENT_MS).unwrap();
        assert_eq!(opened.id, 2, "b's id");
        let gone = opened.gave_way.expect("b gave way");
        assert_eq!((&*gone.name, gone.stored()), ("b", 1), "with its history");
        assert_eq!(chat.find("b"), None);
        assert_eq!(chat.find("new"), Some(2));
        assert_eq!(chat.room(2).stored(), 0, "the new room starts empty");
        post(&mut chat, 2);
        // Then c, then a, then new: the order they were used in (each a minute after the
        // last, so no burst; each posted to, so none is vacant). Never the lobby.
        let later = 3 * RECENT_MS;
        for (minute, (name, place)) in [("d", 3), ("e", 1), ("f", 2), ("g", 3)].iter().enumerate() {
            let now = later + minute as u64 * RECENT_MS;
            assert_eq!(open(&mut chat, name, now), Ok(*place), "{name}");
            post(&mut chat, *place);
        }
        assert_eq!(chat.find(LOBBY), Some(0));
    }

    /// A room that holds nothing gives its place first, before any room unused longer that
    /// holds messages: reads of made-up rooms cannot push history out.
    #[test]
    fn a_room_that_holds_nothing_gives_way_before_one_with_history() {
        let mut chat = Rooms::new(1, HISTORY, 3);
        let posted = open(&mut chat, "posted", 0).unwrap();
        post(&mut chat, posted);
        let read_only = open(&mut chat, "read-only", 0).unwrap();
        let opened = chat.room_id("fresh", FREE, 0).unwrap();
        assert_eq!(opened.id, read_only, "its id, not a new one");
        assert_eq!(opened.gave_way.map(|room| room.stored()), Some(0));
        assert_eq!(chat.find("read-only"), None);
        assert_eq!(chat.find("posted"), Some(posted));
        assert_eq!(&*chat.room(read_only).name, "fresh");
    }

    #[test]
    fn a_room_with_a_waiter_a_stream_a_name_or_an_outside_holder_keeps_its_place() {
        let occupy: [fn(&mut Room); 4] = [
            |room| {
                room.classic.join(WAITER);
            },
            |room| {
                room.polls.join(WAITER);
            },
            |room| {
                room.streams.join(WAITER);
            },
            |room| {
                room.names.seen("ann", 1, 0, 1000);
            },
        ];
        for with_history in [false, true] {
            for occupy in occupy {
                let mut chat = Rooms::new(1, HISTORY, 2);
                let id = open(&mut chat, "busy", 0).unwrap();
                if with_history {
                    post(&mut chat, id);
                }
                occupy(chat.room(id));
                assert_eq!(open(&mut chat, "new", 0), Err(TooManyRooms));
                assert_eq!(chat.find("busy"), Some(id));
            }
        }
        let mut chat = Rooms::new(1, HISTORY, 2);
        let id = open(&mut chat, "held", 0).unwrap();
        post(&mut chat, id);
        let places = Places {
            held: |room| room == id,
            stored: |_| false,
            keeper_weight: |_| (0, 0),
        };
        let held = chat.room_id("new", places, 0);
        assert!(matches!(held, Err(TooManyRooms)));
        // (A whole round found nothing free: the next search waits a moment.)
        assert_eq!(open(&mut chat, "new", 1000), Ok(id), "once let go");
    }

    /// With Redis, a copy that holds nothing of Redis's gives way first; one Redis holds
    /// messages of (posted to from here, announced, or loaded with messages) gives way as
    /// the idle room unused longest (Redis keeps its history, read back on its next use);
    /// one being read from Redis (held) never does.
    #[test]
    fn with_redis_a_copy_gives_way_unless_it_is_being_read() {
        // (being read, stored in Redis, a message in the copy) -> vacant, or gives way at all
        let cases = [
            ((false, false, false), Some(true)), // made by typing, or read while Redis was down
            ((true, false, false), None),
            ((false, true, false), Some(false)),
            ((false, false, true), Some(false)),
        ];
        for (n, ((being_read, stored, message), vacant)) in cases.into_iter().enumerate() {
            let mut chat = Rooms::new(1, HISTORY, 2);
            let id = open(&mut chat, "copy", 0).unwrap();
            if message {
                chat.room(id).post(1, "ann", "hi", None, 0, &HISTORY);
            }
            let places = Places {
                held: move |room| being_read && room == id,
                stored: move |room| stored && room == id,
                keeper_weight: |_| (0, 0),
            };
            let opened = chat.room_id("new", places, 0);
            assert_eq!(opened.is_ok(), vacant.is_some(), "case {n}");
            if let Ok(opened) = opened {
                let gone = opened.gave_way.expect("the copy gave way");
                assert_eq!(
                    gone.is_vacant() && !stored,
                    vacant == Some(true),
                    "case {n}"
                );
            }
        }
    }

    #[test]
    fn a_fruitless_round_pauses_the_search_for_a_moment() {
        let mut chat = Rooms::new(1, HISTORY, 3);
        for name in ["a", "b"] {
            let id = open(&mut chat, name, 0).unwrap();
            chat.room(id).polls.join(Waiter {
                key: id,
                generation: 1,
            });
        }
        assert_eq!(open(&mut chat, "new", 0), Err(TooManyRooms));
        chat.room(1).polls.leave(0); // room a is vacant now
        assert_eq!(open(&mut chat, "new", 999), Err(TooManyRooms), "paused");
        assert_eq!(open(&mut chat, "new", 1000), Ok(1));
    }

    /// One request at the cap looks at no more than `VACANCY_SEARCH` rooms for a vacant one
    /// (the room unused longest gives way if none is among them); the next goes on from
    /// there, so a vacant room further on is still found.
    #[test]
    fn the_search_for_a_vacant_room_is_bounded_and_goes_round() {
        let rooms = VACANCY_SEARCH + 100;
        let mut chat = Rooms::new(1, HISTORY, rooms + 1);
        for n in 0..rooms {
            let id = open(&mut chat, &format!("r{n}"), 0).unwrap();
            if id as usize != rooms {
                post(&mut chat, id); // all but the last hold a message
            }
        }
        // A minute on, so the room unused longest gives way (not a burst's rule).
        assert_eq!(
            open(&mut chat, "new", RECENT_MS),
            Ok(1),
            "r0, unused longest"
        );
        assert_eq!(
            open(&mut chat, "newer", RECENT_MS),
            Ok(rooms as u32),
            "the vacant one"
        );
    }

    /// When every idle room was used within `RECENT_MS` (a burst of new rooms), the rooms of
    /// the keeper that pushed the most rooms out give way first, then of the one that holds
    /// the most, the one made last of those: addresses making rooms as fast as they may take each
    /// other's places, not those of a calm client that was there before, however many
    /// rooms it keeps.
    #[test]
    fn in_a_burst_the_rooms_of_whoever_pushes_the_most_out_give_way() {
        let mut chat = Rooms::new(1, HISTORY, 7);
        let keep = |chat: &mut Rooms, name: &str, keeper: u32| {
            let id = open(chat, name, 1_000).unwrap();
            post(chat, id);
            chat.room(id).keeper = Some(keeper);
            id
        };
        let calm: Vec<u32> = ["c1", "c2", "c3"]
            .iter()
            .map(|name| keep(&mut chat, name, 9))
            .collect();
        let early = keep(&mut chat, "e1", 3); // an attacker that pushed nothing out yet
        let late: Vec<u32> = ["l1", "l2"]
            .iter()
            .map(|name| keep(&mut chat, name, 2))
            .collect();
        // (rooms pushed out, rooms held) of each keeper.
        let weight = |keeper: u32| match keeper {
            9 => (0, 3),
            3 => (0, 1),
            _ => (1, 2),
        };
        let places = Places {
            held: |_| false,
            stored: |_| false,
            keeper_weight: weight,
        };
        let opened = chat.room_id("l3", places, 2_000).unwrap();
        assert_eq!(opened.id, late[1], "the pusher's, not calm's");
        post(&mut chat, opened.id);
        let nobody_pushed = |keeper: u32| if keeper == 9 { (0, 3) } else { (0, 1) };
        let places = Places {
            held: |_| false,
            stored: |_| false,
            keeper_weight: nobody_pushed,
        };
        let opened = chat.room_id("x", places, 2_000).unwrap();
        assert_eq!(opened.id, calm[2], "then whoever holds the most");
        post(&mut chat, opened.id);
        assert!(chat.find("e1").is_some());
        // A minute after its last use, the room unused longest gives way whoever keeps it.
        let places = Places {
            held: |_| false,
            stored: |_| false,
            keeper_weight: weight,
        };
        let opened = chat.room_id("new", places, 1_000 + RECENT_MS).unwrap();
        assert_eq!(opened.id, calm[0]);
        assert_ne!(early, calm[0]);
    }

    /// Regression: in a burst, of rooms whose keepers weigh the same the one used longest
    /// ago gave way, which is the room made before the burst; now the one made last does,
    /// and reading the older room (which makes it the newest used) changes nothing.
    #[test]
    fn in_a_burst_among_equals_the_room_made_last_gives_way() {
        let mut chat = Rooms::new(1, HISTORY, 4);
        let mut keep = |name: &str, keeper: u32| {
            let id = open(&mut chat, name, 1_000).unwrap();
            post(&mut chat, id);
            chat.room(id).keeper = Some(keeper);
            id
        };
        let calm = keep("calm", 9);
        let fillers = [keep("f1", 1), keep("f2", 2)];
        let equals = || Places {
            held: |_| false,
            stored: |_| false,
            keeper_weight: |_| (0, 1),
        };
        let opened = chat.room_id("new", equals(), 2_000).unwrap();
        assert_eq!(opened.id, fillers[1], "the room made last, not calm");
        open(&mut chat, "calm", 3_000).unwrap(); // read: calm is the newest used
        let opened = chat.room_id("newer", equals(), 3_000).unwrap();
        assert_ne!(opened.id, calm, "calm still has its place");
        assert_eq!(chat.find("calm"), Some(calm));
    }

    /// Rooms in use at the old end are moved to the new end as they are found, so a flood
    /// of new rooms takes each idle room in turn and looks at each busy one once a round.
    #[test]
    fn busy_rooms_are_passed_over_once_and_idle_ones_give_way_in_turn() {
        let mut chat = Rooms::new(1, HISTORY, 11);
        for n in 0..10 {
            let id = open(&mut chat, &format!("r{n}"), 0).unwrap();
            post(&mut chat, id);
            if n < 5 {
                chat.room(id).streams.join(WAITER); // r0..r4 are in use
            }
        }
        let places: Vec<u32> = (0..5)
            .map(|n| open(&mut chat, &format!("new{n}"), RECENT_MS).unwrap())
            .collect();
        assert_eq!(places, [6, 7, 8, 9, 10], "r5..r9, oldest first");
        for n in 0..5 {
            assert!(chat.find(&format!("r{n}")).is_some(), "busy r{n} stays");
        }
    }
}
