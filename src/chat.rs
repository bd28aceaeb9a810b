//! The chat: rooms by name, created on first use up to a cap. Knows no sockets.

use crate::room::{HistoryLimits, Room, Sync};
use crate::waitlist::{ListKind, WaitList};
use std::collections::HashMap;

/// The room cap was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyRooms;

/// The name `/chat` answers to.
pub const LOBBY: &str = "lobby";

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
    /// Rooms by id (index); rooms are never removed, the cap bounds their number.
    rooms: Vec<Room>,
    by_name: HashMap<Box<str>, u32>,
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
        };
        chat.room_id(LOBBY).expect("the lobby fits under any cap");
        chat
    }

    /// The id of room `name` if it exists here (never creates it).
    pub fn find(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
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
        let mut room = Room::new(name);
        if self.shared {
            room.sync = Sync::Unloaded;
        }
        self.rooms.push(room);
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

#[cfg(test)]
mod tests {
    use super::*;

    const HISTORY: HistoryLimits = HistoryLimits {
        messages: 10,
        bytes: 1 << 16,
    };

    #[test]
    fn rooms_are_created_on_first_use_up_to_the_cap() {
        let mut chat = Chat::new(1, HISTORY, 3, false);
        assert_eq!(chat.room_id(LOBBY), Ok(0));
        assert_eq!(chat.room_id("a"), Ok(1));
        assert_eq!(chat.room_id("b"), Ok(2));
        assert_eq!(chat.room_id("c"), Err(TooManyRooms));
        assert_eq!(chat.room_id("a"), Ok(1), "existing rooms are still found");
        assert_eq!(chat.room_count(), 3);
    }
}
