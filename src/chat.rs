//! The chat room: who is waiting for the next message, and what the answer to them looks
//! like. Knows no sockets — a waiter is just a connection key and generation, and a message
//! becomes one encoded response that the server writes to every waiter.

use crate::http::{self, Status};
use crate::json;
use std::rc::Rc;

/// A parked poll, named the way the server's slab names it.
///
/// The generation guards against slab reuse: if the connection at `key` closed and a new
/// one took its place, the generations differ and the entry is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiter {
    /// The connection's slab key (also its mio token).
    pub key: u32,
    /// The connection's generation at the time it parked.
    pub generation: u32,
}

/// The lobby: the classic Comet chat has exactly one room.
#[derive(Default)]
pub struct Chat {
    /// Every parked poll, in no particular order. A connection remembers its index here so
    /// that leaving (timeout, disconnect) is an O(1) swap-remove rather than a search.
    waiters: Vec<Waiter>,
    /// A spare list kept to swap with `waiters` on broadcast, so broadcasting allocates
    /// nothing once both have grown to the number of waiting clients.
    spare: Vec<Waiter>,
    /// Messages posted since start, for /stats.
    posted: u64,
}

impl Chat {
    /// An empty room.
    pub fn new() -> Chat {
        Chat::default()
    }

    /// Number of parked polls.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// Messages posted since start.
    pub fn posted(&self) -> u64 {
        self.posted
    }

    /// Adds a waiter and returns its index, which the caller keeps to [`leave`](Self::leave).
    pub fn park(&mut self, waiter: Waiter) -> u32 {
        self.waiters.push(waiter);
        (self.waiters.len() - 1) as u32
    }

    /// Removes the waiter at `index`. The last waiter moves into the hole; if that happened,
    /// it is returned so the caller can update that connection's index.
    pub fn leave(&mut self, index: u32) -> Option<Waiter> {
        let index = index as usize;
        debug_assert!(index < self.waiters.len());
        self.waiters.swap_remove(index);
        self.waiters.get(index).copied()
    }

    /// The waiter stored at `index`, for consistency checks.
    pub fn waiter_at(&self, index: u32) -> Option<Waiter> {
        self.waiters.get(index as usize).copied()
    }

    /// Takes every waiter out of the room for a broadcast. Give the list back with
    /// [`recycle`](Self::recycle) once done so its capacity is reused.
    pub fn take_waiters(&mut self) -> Vec<Waiter> {
        self.posted += 1;
        let fresh = std::mem::take(&mut self.spare);
        std::mem::replace(&mut self.waiters, fresh)
    }

    /// Returns a list taken by [`take_waiters`](Self::take_waiters).
    pub fn recycle(&mut self, mut list: Vec<Waiter>) {
        list.clear();
        if list.capacity() > self.spare.capacity() {
            self.spare = list;
        }
    }
}

/// The answer to every waiting poll when `message` is posted: `{"ok":"<message>"}`.
///
/// Built once per broadcast and shared (`Rc`) by every connection it is written to.
pub fn message_response(message: &str) -> Rc<[u8]> {
    let body = json::object1("ok", message);
    http::encode_response(Status::OK, http::JSON, &[], body.as_bytes(), false, false).into()
}

/// The answer to a poll that waited the whole poll timeout: `{"error":"timeout"}`.
pub fn timeout_response() -> Rc<[u8]> {
    let body = json::object1("error", "timeout");
    http::encode_response(Status::OK, http::JSON, &[], body.as_bytes(), false, false).into()
}

/// The answer to the poster: `{"ok":"posted"}`.
pub fn posted_response(close: bool) -> Vec<u8> {
    let body = json::object1("ok", "posted");
    http::encode_response(Status::OK, http::JSON, &[], body.as_bytes(), false, close)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(key: u32) -> Waiter {
        Waiter { key, generation: 1 }
    }

    #[test]
    fn leave_moves_the_last_waiter_into_the_hole() {
        let mut chat = Chat::new();
        for key in 0..4 {
            assert_eq!(chat.park(waiter(key)), key);
        }
        assert_eq!(chat.leave(1), Some(waiter(3)));
        assert_eq!(chat.waiter_at(1), Some(waiter(3)));
        assert_eq!(chat.leave(2), None, "removing the last one moves nothing");
        assert_eq!(chat.waiting(), 2);
    }

    #[test]
    fn broadcast_takes_everyone_and_recycles_the_list() {
        let mut chat = Chat::new();
        for key in 0..3 {
            chat.park(waiter(key));
        }
        let taken = chat.take_waiters();
        assert_eq!(taken.len(), 3);
        assert_eq!(chat.waiting(), 0);
        assert_eq!(chat.posted(), 1);
        chat.recycle(taken);
        chat.park(waiter(9));
        let taken = chat.take_waiters();
        assert_eq!(taken, vec![waiter(9)]);
        assert!(taken.capacity() >= 1);
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
