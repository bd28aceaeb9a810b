//! The chat: rooms by name, created on first use up to a cap, past which a vacant room
//! gives its place to a new one. Knows no sockets.

use crate::room::{HistoryLimits, Room, Sync};
use crate::waitlist::{ListKind, WaitList};
use std::collections::HashMap;

/// The room cap was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyRooms;

/// The name `/chat` answers to.
pub const LOBBY: &str = "lobby";

/// Rooms looked at, at most, for a vacant one when a new room meets the cap: a bound on
/// what one request can cost the loop however large `--max-rooms` is. The search goes
/// on from where the last one stopped, so every room is looked at in turn.
const VACANCY_SEARCH: usize = 1024;

/// After every room was looked at in turn and none was vacant, new rooms are refused for
/// this long without looking again: a flood of new names at a full server costs one map
/// lookup each, not a search.
const NO_VACANCY_PAUSE_MS: u64 = 1000;

/// All rooms.
pub struct Chat {
    /// Changes every start, so positions from an earlier run are recognised. With
    /// `--redis` it is Redis's, the same on every node, and changes only if Redis lost its
    /// data.
    pub epoch: u32,
    /// With `--redis`: rooms are copies of Redis's, created unloaded.
    shared: bool,
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
    /// Until when (the loop's milliseconds) no search is made, after a whole round of the
    /// rooms found none vacant.
    no_search_until_ms: u64,
}

impl Chat {
    /// A chat with only the lobby. `shared`: with `--redis`.
    pub fn new(epoch: u32, history: HistoryLimits, max_rooms: usize, shared: bool) -> Chat {
        let mut chat = Chat {
            epoch,
            shared,
            history,
            max_rooms: max_rooms.max(1),
            rooms: Vec::new(),
            by_name: HashMap::new(),
            search_from: 1,
            looked_in_vain: 0,
            no_search_until_ms: 0,
        };
        chat.room_id(LOBBY, |_| false, 0)
            .expect("the lobby fits under any cap");
        chat
    }

    /// The id of room `name` if it exists here (never creates it).
    pub fn find(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    /// The id of room `name`, creating it on first use. The name must already be valid.
    /// At the cap, a vacant room (never the lobby, and not one `held` says something
    /// outside the chat still points at) gives its place and its id to the new one.
    /// `now_ms` is the loop's clock, for the pause after a fruitless round.
    pub fn room_id(
        &mut self,
        name: &str,
        held: impl Fn(u32) -> bool,
        now_ms: u64,
    ) -> Result<u32, TooManyRooms> {
        if let Some(&id) = self.by_name.get(name) {
            return Ok(id);
        }
        let id = if self.rooms.len() < self.max_rooms {
            self.rooms.push(self.new_room(name));
            self.rooms.len() as u32 - 1
        } else {
            let id = self.find_vacant(held, now_ms).ok_or(TooManyRooms)?;
            let room = self.new_room(name);
            let old = std::mem::replace(&mut self.rooms[id as usize], room);
            self.by_name.remove(&old.name);
            id
        };
        self.by_name.insert(name.into(), id);
        Ok(id)
    }

    fn new_room(&self, name: &str) -> Room {
        let mut room = Room::new(name);
        if self.shared {
            room.sync = Sync::Unloaded;
        }
        room
    }

    /// A vacant room's id, looking at no more than `VACANCY_SEARCH` rooms.
    fn find_vacant(&mut self, held: impl Fn(u32) -> bool, now_ms: u64) -> Option<u32> {
        if now_ms < self.no_search_until_ms {
            return None;
        }
        let others = self.rooms.len() - 1; // all but the lobby, id 0
        for _ in 0..VACANCY_SEARCH.min(others) {
            let id = self.search_from;
            self.search_from = if id as usize >= others { 1 } else { id + 1 };
            if self.rooms[id as usize].is_vacant() && !held(id) {
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

    const HISTORY: HistoryLimits = HistoryLimits {
        messages: 10,
        bytes: 1 << 16,
    };

    const FREE: fn(u32) -> bool = |_| false;

    #[test]
    fn rooms_are_created_on_first_use_up_to_the_cap() {
        let mut chat = Chat::new(1, HISTORY, 3, false);
        assert_eq!(chat.room_id(LOBBY, FREE, 0), Ok(0));
        for name in ["a", "b"] {
            let id = chat.room_id(name, FREE, 0).unwrap();
            post(&mut chat, id);
        }
        assert_eq!(chat.room_id("c", FREE, 0), Err(TooManyRooms));
        assert_eq!(
            chat.room_id("a", FREE, 0),
            Ok(1),
            "existing rooms are still found"
        );
        assert_eq!(chat.room_count(), 3);
    }

    fn post(chat: &mut Chat, id: u32) {
        let room = chat.room(id);
        room.post(1, "ann", "hi", None, 0, &HISTORY);
    }

    /// Regression (an attacker's reads of made-up rooms used to fill `--max-rooms` for
    /// good, and every new room was refused 507 until a restart).
    #[test]
    fn at_the_cap_a_room_that_holds_nothing_gives_its_place_to_a_new_one() {
        let mut chat = Chat::new(1, HISTORY, 3, false);
        let read_only = chat.room_id("read-only", FREE, 0).unwrap();
        let posted = chat.room_id("posted", FREE, 0).unwrap();
        post(&mut chat, posted);
        let fresh = chat
            .room_id("fresh", FREE, 0)
            .expect("the vacant room's place");
        assert_eq!(fresh, read_only, "its id, not a new one");
        assert_eq!(chat.find("read-only"), None);
        assert_eq!(chat.find("fresh"), Some(fresh));
        assert_eq!(&*chat.room(fresh).name, "fresh");
        assert_eq!(chat.room_count(), 3);
        // Now every room holds a message, or is the lobby, which never gives way.
        post(&mut chat, fresh);
        assert_eq!(chat.room_id("more", FREE, 0), Err(TooManyRooms));
        assert_eq!(chat.find(LOBBY), Some(0));
    }

    #[test]
    fn a_room_with_a_waiter_a_stream_a_name_or_an_outside_holder_keeps_its_place() {
        use crate::waitlist::Waiter;
        const WAITER: Waiter = Waiter {
            key: 7,
            generation: 1,
        };
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
        for occupy in occupy {
            let mut chat = Chat::new(1, HISTORY, 2, false);
            let id = chat.room_id("busy", FREE, 0).unwrap();
            occupy(chat.room(id));
            assert_eq!(chat.room_id("new", FREE, 0), Err(TooManyRooms));
            assert_eq!(chat.find("busy"), Some(id));
        }
        let mut chat = Chat::new(1, HISTORY, 2, false);
        let id = chat.room_id("held", FREE, 0).unwrap();
        assert_eq!(chat.room_id("new", |room| room == id, 0), Err(TooManyRooms));
        // (A whole round found nothing vacant: the next search waits a moment.)
        assert_eq!(chat.room_id("new", FREE, 1000), Ok(id), "once let go");
    }

    /// With Redis, a copy gives way unless a read of Redis is on its way, a post went to
    /// Redis from here (the cap bounds what this node can make Redis hold), or it is loaded
    /// with messages (which the next request would read back whole).
    #[test]
    fn with_redis_a_copy_gives_way_unless_read_posted_to_or_holding_messages() {
        type Make = fn(&mut Room);
        let cases: [(Make, bool); 6] = [
            (|_| {}, true), // made by typing, or by a read while Redis was down
            (|room| room.sync = Sync::Loading, false),
            (|room| room.sync = Sync::CatchingUp, false),
            (|room| room.sync = Sync::Loaded, true), // read, and empty
            (|room| room.posted_here = true, false),
            (
                |room| {
                    room.sync = Sync::Loaded;
                    room.post(1, "ann", "hi", None, 0, &HISTORY);
                },
                false,
            ),
        ];
        for (n, (make, gives_way)) in cases.into_iter().enumerate() {
            let mut chat = Chat::new(1, HISTORY, 2, true);
            let id = chat.room_id("copy", FREE, 0).unwrap();
            assert_eq!(chat.room(id).sync, Sync::Unloaded);
            make(chat.room(id));
            assert_eq!(chat.room_id("new", FREE, 0).is_ok(), gives_way, "case {n}");
        }
    }

    /// Once a whole round of the rooms found none vacant, new names are refused for a
    /// moment without a search (a flood of new names at a full server costs a lookup each),
    /// and then a room that was let go meanwhile is found.
    #[test]
    fn a_fruitless_round_pauses_the_search_for_a_moment() {
        let mut chat = Chat::new(1, HISTORY, 3, false);
        for name in ["a", "b"] {
            let id = chat.room_id(name, FREE, 0).unwrap();
            chat.room(id).polls.join(crate::waitlist::Waiter {
                key: id,
                generation: 1,
            });
        }
        assert_eq!(chat.room_id("new", FREE, 0), Err(TooManyRooms));
        chat.room(1).polls.leave(0); // room a is vacant now
        assert_eq!(chat.room_id("new", FREE, 999), Err(TooManyRooms), "paused");
        assert_eq!(chat.room_id("new", FREE, 1000), Ok(1));
    }

    /// One request at the cap looks at no more than `VACANCY_SEARCH` rooms; the next goes
    /// on from there, so a vacant room further on is still found.
    #[test]
    fn the_search_for_a_vacant_room_is_bounded_and_goes_round() {
        let rooms = VACANCY_SEARCH + 100;
        let mut chat = Chat::new(1, HISTORY, rooms + 1, false);
        for n in 0..rooms {
            let id = chat.room_id(&format!("r{n}"), FREE, 0).unwrap();
            if id as usize != rooms {
                post(&mut chat, id); // all but the last hold a message
            }
        }
        assert_eq!(chat.room_id("new", FREE, 0), Err(TooManyRooms));
        assert_eq!(chat.room_id("new", FREE, 0), Ok(rooms as u32));
    }
}
