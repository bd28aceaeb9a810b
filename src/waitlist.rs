//! Lists of connections waiting in a room: parked polls and open streams. A waiter is a
//! connection's slab key and generation, never a socket, so this module knows no sockets;
//! joining and leaving are O(1), and a broadcast takes the whole list at once.

/// A waiting connection, named the way the server's slab names it.
///
/// The generation guards against slab reuse: if the connection at `key` closed and a new
/// one took its place, the generations differ and the entry is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// `GET /rooms/{room}/ws`.
    Socket,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parked poll's place in its room's list: docs/ARCHITECTURE.md counts it in what a
    /// waiting poll costs.
    #[test]
    fn a_waiter_stays_small() {
        let size = std::mem::size_of::<Waiter>();
        println!("Waiter: {size} bytes");
        assert_eq!(size, 8, "a Waiter grew to {size} bytes");
    }

    fn waiter(key: u32) -> Waiter {
        Waiter { key, generation: 1 }
    }

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
}
