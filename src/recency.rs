//! Rooms in the order they were last used, so that at the `--max-rooms` cap the one unused
//! longest can give way in O(1) rather than after a search of every room.
//!
//! A doubly linked list threaded through two arrays indexed by room id (8 bytes a room, no
//! allocation per use): `use_now` moves an id to the newest end, `oldest` reads the other
//! end. Ids are the chat's room ids, dense from 0; an id joins the list the first time it
//! is used and never leaves it (a room that gives way hands its id to the new room, which
//! is used at once).
//!
//! ```text
//!   oldest                                   newest
//!     3  ⇄  1  ⇄  4  ⇄  2        newer[3] = 1, older[1] = 3, newer[2] = NONE
//! ```

/// "No room": the end of the list, and the links of an id not yet in it.
const NONE: u32 = u32::MAX;

/// Room ids from least to most recently used.
#[derive(Debug)]
pub struct Recency {
    /// `older[id]`: the id used just before `id`, or `NONE` at the oldest end.
    older: Vec<u32>,
    /// `newer[id]`: the id used just after `id`, or `NONE` at the newest end.
    newer: Vec<u32>,
    /// The end that gives way first; `NONE` while the list is empty.
    oldest: u32,
    /// The end `use_now` moves ids to.
    newest: u32,
}

impl Default for Recency {
    fn default() -> Self {
        Recency {
            older: Vec::new(),
            newer: Vec::new(),
            oldest: NONE,
            newest: NONE,
        }
    }
}

impl Recency {
    /// `id` was used just now: it becomes the newest. O(1).
    pub fn use_now(&mut self, id: u32) {
        let at = id as usize;
        if at >= self.older.len() {
            self.older.resize(at + 1, NONE);
            self.newer.resize(at + 1, NONE);
        }
        if self.newest == id {
            return;
        }
        if self.is_listed(id) {
            self.unlink(id);
        }
        self.older[at] = self.newest;
        self.newer[at] = NONE;
        match self.newest {
            NONE => self.oldest = id,
            newest => self.newer[newest as usize] = id,
        }
        self.newest = id;
    }

    /// The id unused longest, if any.
    pub fn oldest(&self) -> Option<u32> {
        (self.oldest != NONE).then_some(self.oldest)
    }

    /// The id used just after `id`, walking from the oldest end towards the newest.
    pub fn newer(&self, id: u32) -> Option<u32> {
        let newer = *self.newer.get(id as usize)?;
        (newer != NONE).then_some(newer)
    }

    /// Whether `id` is in the list (an id not at either end has both links set; one at an
    /// end is that end).
    fn is_listed(&self, id: u32) -> bool {
        let at = id as usize;
        at < self.older.len()
            && (self.older[at] != NONE || self.newer[at] != NONE || self.oldest == id)
    }

    fn unlink(&mut self, id: u32) {
        let (older, newer) = (self.older[id as usize], self.newer[id as usize]);
        match older {
            NONE => self.oldest = newer,
            older => self.newer[older as usize] = newer,
        }
        match newer {
            NONE => self.newest = older,
            newer => self.older[newer as usize] = older,
        }
    }

    /// Ids from oldest to newest.
    #[cfg(test)]
    fn in_order(&self) -> Vec<u32> {
        std::iter::successors(self.oldest(), |&id| self.newer(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_is_the_one_unused_longest() {
        let mut recency = Recency::default();
        assert_eq!(recency.oldest(), None);
        for id in [3, 1, 4, 2] {
            recency.use_now(id);
        }
        assert_eq!(recency.in_order(), [3, 1, 4, 2]);
        recency.use_now(1);
        assert_eq!(recency.in_order(), [3, 4, 2, 1]);
        recency.use_now(3);
        assert_eq!(recency.in_order(), [4, 2, 1, 3]);
        recency.use_now(3);
        assert_eq!(recency.in_order(), [4, 2, 1, 3], "the newest stays");
        assert_eq!(recency.oldest(), Some(4));
    }

    /// The list against a plain vector under random uses, including the ends, a single id
    /// and ids far past the ones seen.
    #[test]
    fn agrees_with_a_naive_model() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64; // a fixed seed: a failure reproduces
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..200 {
            let ids = 1 + round % 20;
            let mut recency = Recency::default();
            let mut model: Vec<u32> = Vec::new();
            for _ in 0..300 {
                let id = (next() % ids as u64) as u32;
                recency.use_now(id);
                model.retain(|&other| other != id);
                model.push(id);
                assert_eq!(recency.in_order(), model, "round {round}");
                assert_eq!(recency.oldest(), model.first().copied());
            }
        }
    }
}
