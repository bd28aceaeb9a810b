//! The chat: rooms by name, created on first use up to a cap, and the lists of connections
//! waiting in them. Knows no sockets — a waiter is a connection key and generation, and a
//! message becomes one encoded response that the server writes to every waiter.

use crate::http::{self, Status};
use crate::json;
use crate::room::{HistoryLimits, Room};
use std::collections::HashMap;
use std::rc::Rc;

/// A waiting connection, named the way the server's slab names it.
///
/// The generation guards against slab reuse: if the connection at `key` closed and a new
/// one took its place, the generations differ and the entry is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiter {
    /// The connection's slab key (also its mio token).
    pub key: u32,
    /// The connection's generation at the time it started waiting.
    pub generation: u32,
}

/// An unordered list of waiting connections with O(1) join and leave.
///
/// A connection remembers its index here so that leaving (timeout, disconnect) is a
/// swap-remove rather than a search; the waiter moved into the hole is returned so its
/// connection can update its index.
#[derive(Default)]
pub struct WaitList {
    waiters: Vec<Waiter>,
    /// A spare list swapped in when the waiters are taken for a broadcast, so broadcasting
    /// allocates nothing once both have grown to the number of waiting clients.
    spare: Vec<Waiter>,
}

impl WaitList {
    /// Number of waiters.
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    /// True when nobody waits.
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Adds a waiter and returns its index.
    pub fn join(&mut self, waiter: Waiter) -> u32 {
        self.waiters.push(waiter);
        (self.waiters.len() - 1) as u32
    }

    /// Removes the waiter at `index`. If the last waiter moved into the hole, returns it.
    pub fn leave(&mut self, index: u32) -> Option<Waiter> {
        let index = index as usize;
        debug_assert!(index < self.waiters.len());
        self.waiters.swap_remove(index);
        self.waiters.get(index).copied()
    }

    /// The waiter at `index`, for consistency checks.
    pub fn at(&self, index: u32) -> Option<Waiter> {
        self.waiters.get(index as usize).copied()
    }

    /// Every waiter, in index order (streams stay in the list while they are written to).
    pub fn iter(&self) -> impl Iterator<Item = Waiter> + '_ {
        self.waiters.iter().copied()
    }

    /// Takes every waiter out of the list. Give the list back with
    /// [`recycle`](Self::recycle) once done so its capacity is reused.
    pub fn take(&mut self) -> Vec<Waiter> {
        let fresh = std::mem::take(&mut self.spare);
        std::mem::replace(&mut self.waiters, fresh)
    }

    /// Returns a list taken by [`take`](Self::take).
    pub fn recycle(&mut self, mut list: Vec<Waiter>) {
        list.clear();
        if list.capacity() > self.spare.capacity() {
            self.spare = list;
        }
    }
}

/// Which of a room's lists a waiting connection is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// Classic `GET /chat`.
    Classic,
    /// `GET /rooms/{room}/messages`.
    Poll,
    /// `GET /rooms/{room}/events`.
    Stream,
}

/// The room cap was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyRooms;

/// The name `/chat` answers to.
pub const LOBBY: &str = "lobby";

/// All rooms.
pub struct Chat {
    /// Changes every start, so positions from an earlier run are recognised.
    pub epoch: u32,
    /// History caps for every room.
    pub history: HistoryLimits,
    max_rooms: usize,
    /// Rooms by id (index); rooms are never removed, the cap bounds their number.
    rooms: Vec<Room>,
    by_name: HashMap<Box<str>, u32>,
}

impl Chat {
    /// A chat with only the lobby.
    pub fn new(epoch: u32, history: HistoryLimits, max_rooms: usize) -> Chat {
        let mut chat = Chat {
            epoch,
            history,
            max_rooms: max_rooms.max(1),
            rooms: Vec::new(),
            by_name: HashMap::new(),
        };
        chat.room_id(LOBBY).expect("the lobby fits under any cap");
        chat
    }

    /// The id of room `name`, creating it on first use. The name must already be valid.
    pub fn room_id(&mut self, name: &str) -> Result<u32, TooManyRooms> {
        if let Some(&id) = self.by_name.get(name) {
            return Ok(id);
        }
        if self.rooms.len() >= self.max_rooms {
            return Err(TooManyRooms);
        }
        let id = self.rooms.len() as u32;
        self.rooms.push(Room::new(name));
        self.by_name.insert(name.into(), id);
        Ok(id)
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

/// The classic answer to every waiting `GET /chat` when `message` is posted:
/// `{"ok":"<message>"}`. Built once per broadcast and shared (`Rc`) by every connection.
pub fn message_response(message: &str) -> Rc<[u8]> {
    let body = json::object1("ok", message);
    http::encode_response(Status::OK, http::JSON, &[], body.as_bytes(), false).into()
}

/// The classic answer to a poll that waited the whole poll timeout: `{"error":"timeout"}`.
pub fn timeout_response() -> Rc<[u8]> {
    let body = json::object1("error", "timeout");
    http::encode_response(Status::OK, http::JSON, &[], body.as_bytes(), false).into()
}

/// The classic answer to the poster: `{"ok":"posted"}`.
pub fn posted_response() -> Vec<u8> {
    let body = json::object1("ok", "posted");
    http::encode_response(Status::OK, http::JSON, &[], body.as_bytes(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(key: u32) -> Waiter {
        Waiter { key, generation: 1 }
    }

    const HISTORY: HistoryLimits = HistoryLimits {
        messages: 10,
        bytes: 1 << 16,
    };

    #[test]
    fn leave_moves_the_last_waiter_into_the_hole() {
        let mut list = WaitList::default();
        for key in 0..4 {
            assert_eq!(list.join(waiter(key)), key);
        }
        assert_eq!(list.leave(1), Some(waiter(3)));
        assert_eq!(list.at(1), Some(waiter(3)));
        assert_eq!(list.leave(2), None, "removing the last one moves nothing");
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn take_empties_and_recycle_reuses_the_list() {
        let mut list = WaitList::default();
        for key in 0..3 {
            list.join(waiter(key));
        }
        let taken = list.take();
        assert_eq!(taken.len(), 3);
        assert!(list.is_empty());
        list.recycle(taken);
        list.join(waiter(9));
        let taken = list.take();
        assert_eq!(taken, vec![waiter(9)]);
    }

    #[test]
    fn rooms_are_created_on_first_use_up_to_the_cap() {
        let mut chat = Chat::new(1, HISTORY, 3);
        assert_eq!(chat.room_id(LOBBY), Ok(0));
        assert_eq!(chat.room_id("a"), Ok(1));
        assert_eq!(chat.room_id("b"), Ok(2));
        assert_eq!(chat.room_id("c"), Err(TooManyRooms));
        assert_eq!(chat.room_id("a"), Ok(1), "existing rooms are still found");
        assert_eq!(chat.room_count(), 3);
    }

    #[test]
    fn message_response_is_exact() {
        let bytes = message_response("say \"hi\"\n€");
        let text = std::str::from_utf8(&bytes).unwrap();
        let body = "{\"ok\":\"say \\\"hi\\\"\\n€\"}";
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"));
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(text.ends_with(&format!("\r\n\r\n{body}")));
    }
}
