//! Who is in one room: the names clients give with `?name=`, who made each (so names can be
//! capped per client), and when each leaves. Knows no sockets and reads no clock.
//!
//! A name is present from its first poll or stream until its last stream closes and the
//! presence window (poll timeout + grace) has passed since it was last seen. Names with no
//! open stream are also kept in expiry order, so the sweep that says who left takes them
//! from the front: its work is the names that actually leave, capped per pass by the
//! caller, never a walk over every name.

use crate::clients::ClientId;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

/// One present name.
#[derive(Debug)]
struct Entry {
    /// When the name leaves if no stream holds it (ms since the server started).
    expires_ms: u64,
    /// Event streams open with this name: present for as long as any is.
    streams: u32,
    /// Who made the name, for the per-client cap; it stays theirs until it leaves.
    owner: ClientId,
}

/// The names present in one room.
#[derive(Debug, Default)]
pub struct Names {
    entries: HashMap<Rc<str>, Entry>,
    /// `(expires_ms, name)` of every name with no open stream, soonest first.
    expiring: BTreeSet<(u64, Rc<str>)>,
}

/// A name that left, and who had made it.
#[derive(Debug, PartialEq, Eq)]
pub struct Left {
    /// The name.
    pub name: Rc<str>,
    /// Its maker.
    pub owner: ClientId,
}

impl Names {
    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// How many names are present.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nobody is named.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A poll named `name` (made by `owner` if it is new): present until `window_ms` after
    /// `now_ms`, or longer if a stream holds it. Returns true when the name just joined.
    pub fn seen(&mut self, name: &str, owner: ClientId, now_ms: u64, window_ms: u64) -> bool {
        let expires_ms = now_ms + window_ms;
        let Some(key) = self.key(name) else {
            let name: Rc<str> = Rc::from(name);
            let entry = Entry {
                expires_ms,
                streams: 0,
                owner,
            };
            self.entries.insert(Rc::clone(&name), entry);
            self.expiring.insert((expires_ms, name));
            return true;
        };
        let entry = self.entries.get_mut(name).expect("found above");
        if entry.streams == 0 {
            self.expiring.remove(&(entry.expires_ms, Rc::clone(&key)));
            self.expiring.insert((expires_ms, key));
        }
        entry.expires_ms = expires_ms;
        false
    }

    /// A stream opened with `name`: present while it is open. Returns true when the name
    /// just joined.
    pub fn stream_opened(
        &mut self,
        name: &str,
        owner: ClientId,
        now_ms: u64,
        window_ms: u64,
    ) -> bool {
        let joined = self.seen(name, owner, now_ms, window_ms);
        let key = self.key(name).expect("seen just now");
        let entry = self.entries.get_mut(name).expect("seen just now");
        if entry.streams == 0 {
            self.expiring.remove(&(entry.expires_ms, key));
        }
        entry.streams += 1;
        joined
    }

    /// A stream with `name` closed; when it was the last, the window starts now.
    pub fn stream_closed(&mut self, name: &str, now_ms: u64, window_ms: u64) {
        let Some(key) = self.key(name) else {
            return;
        };
        let entry = self.entries.get_mut(name).expect("found above");
        entry.streams = entry.streams.saturating_sub(1);
        if entry.streams == 0 {
            entry.expires_ms = now_ms + window_ms;
            self.expiring.insert((entry.expires_ms, key));
        }
    }

    /// The shared name as stored, to find its place in `expiring` without allocating.
    fn key(&self, name: &str) -> Option<Rc<str>> {
        self.entries
            .get_key_value(name)
            .map(|(key, _)| Rc::clone(key))
    }

    /// Every name present, with how much longer it is present from `now_ms` on: a name
    /// held by a stream for a whole `window_ms` more (renewed while the stream lasts).
    pub fn held(&self, now_ms: u64, window_ms: u64) -> Vec<(&str, u64)> {
        self.entries
            .iter()
            .map(|(name, entry)| {
                let left = if entry.streams > 0 {
                    window_ms
                } else {
                    entry.expires_ms.saturating_sub(now_ms)
                };
                (&**name, left)
            })
            .collect()
    }

    /// Names present now, sorted.
    pub fn present(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.entries.keys().map(|name| &**name).collect();
        names.sort_unstable();
        names
    }

    /// Takes up to `max` names whose time is up, soonest first, and forgets them.
    pub fn sweep(&mut self, now_ms: u64, max: usize) -> Vec<Left> {
        let mut left = Vec::new();
        while left.len() < max {
            match self.expiring.first() {
                Some((expires_ms, _)) if *expires_ms <= now_ms => {}
                _ => break,
            }
            let Some((_, name)) = self.expiring.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&name) {
                left.push(Left {
                    name,
                    owner: entry.owner,
                });
            }
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(left: &[Left]) -> Vec<&str> {
        left.iter().map(|l| &*l.name).collect()
    }

    #[test]
    fn names_join_once_and_leave_after_the_window() {
        let mut room = Names::default();
        assert!(room.seen("ann", 1, 0, 100));
        assert!(!room.seen("ann", 2, 50, 100), "a refresh is not a join");
        assert!(room.stream_opened("bob", 2, 60, 100));
        assert_eq!(room.present(), ["ann", "bob"]);
        assert!(room.sweep(149, 10).is_empty(), "ann was seen again at 50");
        let left = room.sweep(150, 10);
        assert_eq!(names(&left), ["ann"]);
        assert_eq!(left[0].owner, 1, "the name stays its first maker's");
        assert!(
            room.sweep(10_000, 10).is_empty(),
            "an open stream keeps bob"
        );
        room.stream_closed("bob", 10_000, 100);
        assert_eq!(names(&room.sweep(10_100, 10)), ["bob"]);
        assert!(room.is_empty());
    }

    #[test]
    fn a_name_held_by_two_streams_stays_until_both_close() {
        let mut room = Names::default();
        room.stream_opened("ann", 1, 0, 100);
        room.stream_opened("ann", 1, 0, 100);
        room.stream_closed("ann", 10, 100);
        assert!(room.sweep(1_000, 10).is_empty());
        room.stream_closed("ann", 1_000, 100);
        assert_eq!(names(&room.sweep(1_100, 10)), ["ann"]);
    }

    /// The bound the loop relies on: one sweep takes at most `max` names, however many
    /// are due, and the rest wait for the next.
    #[test]
    fn one_sweep_takes_at_most_max_names_soonest_first() {
        let mut room = Names::default();
        for i in 0..1000u64 {
            room.seen(&format!("n{i:04}"), 0, i, 100);
        }
        let first = room.sweep(5_000, 256);
        assert_eq!(first.len(), 256);
        assert_eq!(first[0].name.as_ref(), "n0000");
        assert_eq!(first[255].name.as_ref(), "n0255");
        assert_eq!(room.len(), 744);
        let mut rest = 0;
        for _ in 0..10 {
            rest += room.sweep(5_000, 256).len();
        }
        assert_eq!(rest, 744);
        assert!(room.is_empty());
    }
}
