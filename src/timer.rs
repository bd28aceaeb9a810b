//! The timer wheel: every deadline the server keeps lives here — each connection's one
//! timer (idle, request, poll, write, linger, heartbeat) and the server's own (resume
//! accepting, the presence sweep, the end of a shutdown's grace) — so the kernel never
//! holds a timer per connection and the event loop can ask one question — "when is the
//! next thing due?" — before it sleeps.
//!
//! Everything is integer arithmetic over *ticks* (a `u64` count of [`TICK`]s since the
//! server started); this module never reads a clock, which is what makes it testable.
//!
//! ```text
//!   slot = tick % SLOT_COUNT            (SLOT_COUNT = 4096, one tick = 10 ms → 40.96 s per turn)
//!
//!   heads:    [ s0 | s1 | s2 | ... | s4095 ]      one doubly linked list per slot
//!                     |
//!                     v
//!   entries:  e7 <-> e3 <-> e12                    slab of entries, linked by slab key
//!
//!   occupied: 64 × u64 bitmap, bit s set ⇔ heads[s] is non-empty
//! ```
//!
//! An entry whose deadline is more than one turn away sits in the right slot and is skipped
//! (left in place) until its turn comes round. Cancelling is O(1): unlink from its slot's
//! list. The bitmap makes "next occupied slot" a scan of at most 64 words, and each slot
//! keeps the soonest deadline it may hold, so the loop sleeps until something is really
//! due: a poll timeout longer than a turn no longer wakes it every time its slot comes
//! round.

use slab::Slab;
use std::num::NonZeroU32;
use std::time::Duration;

/// How long one tick lasts. 10 ms is coarser than any timeout we keep and fine enough that
/// tests can use half-second poll timeouts.
pub const TICK: Duration = Duration::from_millis(10);

/// Number of slots; a power of two so the slot is a mask, and large enough (40.96 s) that the
/// default 20 s poll timeout fires on its first visit.
pub const SLOT_COUNT: usize = 4096;

const WORD_BITS: usize = 64;
const WORD_COUNT: usize = SLOT_COUNT / WORD_BITS;

/// Marks "no entry" in the intrusive lists. Entry keys are `u32` to keep entries small.
const NIL: u32 = u32::MAX;

/// Handle to a scheduled timer, returned by [`TimerWheel::insert`] and needed to cancel it.
///
/// The wheel reuses handles once a timer fired or was cancelled, so the owner must forget its
/// handle at that moment; the payload (which carries a generation) guards against mistakes.
/// It holds the entry's key plus one, so that `Option<TimerId>` costs four bytes in every
/// connection record, not eight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerId(NonZeroU32);

impl TimerId {
    /// The slab key of the entry.
    fn key(self) -> usize {
        self.0.get() as usize - 1
    }
}

/// A tick kept in 32 bits, for records that hold many of them (a connection's deadline
/// and its wheel entry's): 2^32 ticks of 10 ms are 497 days, less than a server may run,
/// so the tick is kept modulo 2^32 and widened again next to the wheel's clock. That is
/// exact for any tick within 2^31 ticks (248 days) of the clock, and every deadline the
/// server keeps is within a day of it ([`crate::config::SECONDS`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShortTick(u32);

impl ShortTick {
    /// `tick`, modulo 2^32.
    pub fn of(tick: u64) -> ShortTick {
        ShortTick(tick as u32)
    }

    /// The tick within 2^31 ticks of `near` (the wheel's clock) that this one is.
    pub fn widen(self, near: u64) -> u64 {
        let offset = self.0.wrapping_sub(near as u32) as i32;
        near.wrapping_add_signed(i64::from(offset))
    }
}

struct Entry<T> {
    /// Absolute tick at which the entry fires; `slot_of(deadline)` is the list it is in.
    deadline: u64,
    /// What the owner wants back when the timer fires.
    payload: T,
    prev: u32,
    next: u32,
}

/// A hashed timer wheel with O(1) insert and cancel. See the module docs for the layout.
pub struct TimerWheel<T> {
    /// Head entry of each slot's list, or `NIL`.
    heads: Box<[u32]>,
    /// Bit per slot, set while the slot's list is non-empty.
    occupied: Box<[u64]>,
    /// Per slot, no later than its soonest deadline (`u64::MAX` when empty). Exact after
    /// inserts and after the slot is walked; a cancel may leave it early, which costs at
    /// most one wake-up for nothing, after which the walk makes it exact again.
    soonest: Box<[u64]>,
    entries: Slab<Entry<T>>,
    /// Every entry with `deadline <= now` has fired; new deadlines are clamped to `now + 1`.
    now: u64,
    /// Entries per slot, for the X-ray's picture of the wheel: kept as entries come and
    /// go (an add each), so drawing the wheel never walks its lists.
    counts: Box<[u32]>,
    /// Timers armed, fired and cancelled since the wheel was made.
    totals: Totals,
    /// What [`TimerWheel::next_deadline`] last found, kept until something may have made it
    /// late: an expire that fired entries or passed it. An insert lowers it to the new
    /// deadline if that is sooner; a cancel leaves it, which can only make it early (one
    /// wake-up for nothing). Without it, a wheel whose every deadline lies beyond one turn
    /// (a poll timeout over 41 s) was scanned slot by slot on every pass of the loop.
    next: Option<u64>,
    /// Walks made by `next_deadline` (the cache's test counts them).
    #[cfg(test)]
    scans: u64,
}

/// What a wheel has done since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Timers inserted.
    pub armed: u64,
    /// Timers that came due and were handed out by `expire`.
    pub fired: u64,
    /// Timers cancelled before they were due.
    pub cancelled: u64,
}

/// The slot a tick hashes to.
pub fn slot_of(tick: u64) -> usize {
    (tick % SLOT_COUNT as u64) as usize
}

/// Converts a duration to whole ticks, rounding up so that a deadline is never early.
pub fn ticks_ceil(duration: Duration) -> u64 {
    let tick_nanos = TICK.as_nanos();
    duration.as_nanos().div_ceil(tick_nanos) as u64
}

/// Converts a duration to whole ticks, rounding down: the tick that `duration` lies within.
pub fn ticks_floor(duration: Duration) -> u64 {
    (duration.as_nanos() / TICK.as_nanos()) as u64
}

impl<T: Copy> TimerWheel<T> {
    /// An empty wheel whose clock reads tick 0.
    pub fn new() -> Self {
        TimerWheel {
            heads: vec![NIL; SLOT_COUNT].into_boxed_slice(),
            occupied: vec![0; WORD_COUNT].into_boxed_slice(),
            soonest: vec![u64::MAX; SLOT_COUNT].into_boxed_slice(),
            entries: Slab::new(),
            now: 0,
            counts: vec![0; SLOT_COUNT].into_boxed_slice(),
            totals: Totals::default(),
            next: None,
            #[cfg(test)]
            scans: 0,
        }
    }

    /// Timers armed, fired and cancelled so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// How many entries each slot holds, slot 0 first.
    pub fn slot_counts(&self) -> &[u32] {
        &self.counts
    }

    /// Number of timers scheduled.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The last tick that [`expire`](Self::expire) processed.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Schedules `payload` to fire at `deadline` (an absolute tick). A deadline in the past
    /// fires on the next `expire`.
    pub fn insert(&mut self, deadline: u64, payload: T) -> TimerId {
        let deadline = deadline.max(self.now + 1);
        let slot = slot_of(deadline);
        let head = self.heads[slot];
        let key = self.entries.insert(Entry {
            deadline,
            payload,
            prev: NIL,
            next: head,
        });
        let key = u32::try_from(key).expect("more than u32::MAX timers");
        debug_assert_ne!(key, NIL);
        // NIL is u32::MAX, so key + 1 neither wraps nor is zero.
        let id = NonZeroU32::new(key + 1).expect("key + 1 is not zero");
        if head != NIL {
            self.entries[head as usize].prev = key;
        }
        self.heads[slot] = key;
        self.occupied[slot / WORD_BITS] |= 1 << (slot % WORD_BITS);
        self.soonest[slot] = self.soonest[slot].min(deadline);
        self.counts[slot] += 1;
        self.totals.armed += 1;
        self.next = self.next.map(|next| next.min(deadline));
        TimerId(id)
    }

    /// Removes a scheduled timer and returns its payload, or `None` if the handle is not live.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let entry = self.entries.try_remove(id.key())?;
        self.unlink(slot_of(entry.deadline), entry.prev, entry.next);
        self.totals.cancelled += 1;
        Some(entry.payload)
    }

    fn unlink(&mut self, slot: usize, prev: u32, next: u32) {
        self.counts[slot] -= 1;
        if prev == NIL {
            self.heads[slot] = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        if self.heads[slot] == NIL {
            self.occupied[slot / WORD_BITS] &= !(1 << (slot % WORD_BITS));
            self.soonest[slot] = u64::MAX;
        }
    }

    /// The earliest tick at which something is due, or `None` when the wheel is empty. Never
    /// late; early only after a cancel left a slot's soonest deadline behind (see
    /// [`TimerWheel::soonest`]), and then once.
    ///
    /// Occupied slots are taken in the order their ticks come in this turn. The first one
    /// holding a deadline of this turn is the answer: a slot's entries of this turn are all
    /// due at its one tick of the turn. Slots holding only later turns are passed over,
    /// keeping the soonest of them for when no slot holds anything this turn. O(occupied
    /// slots) at worst, which is at most 4096, and usually one.
    pub fn next_deadline(&mut self) -> Option<u64> {
        if self.entries.is_empty() {
            return None;
        }
        if let Some(next) = self.next {
            return Some(next);
        }
        #[cfg(test)]
        {
            self.scans += 1;
        }
        let next = self.scan_for_next()?;
        self.next = Some(next);
        Some(next)
    }

    /// The walk [`TimerWheel::next_deadline`] caches.
    fn scan_for_next(&self) -> Option<u64> {
        let turn_ends = self.now + SLOT_COUNT as u64;
        let start = slot_of(self.now + 1);
        let mut later = u64::MAX;
        let mut passed = 0;
        while passed < SLOT_COUNT {
            let distance =
                passed + self.distance_to_occupied(slot_of(self.now + 1 + passed as u64))?;
            if distance >= SLOT_COUNT {
                break;
            }
            let slot = (start + distance) % SLOT_COUNT;
            let soonest = self.soonest[slot];
            if soonest <= turn_ends {
                return Some((self.now + 1 + distance as u64).min(later));
            }
            later = later.min(soonest);
            passed = distance + 1;
        }
        Some(later)
    }

    /// How many slots past `start` (0 = `start` itself) the first occupied slot lies.
    fn distance_to_occupied(&self, start: usize) -> Option<usize> {
        let first_word = start / WORD_BITS;
        // Bits at or after `start` in its own word, then whole words, wrapping round to the
        // bits before `start` in the first word.
        let masked = self.occupied[first_word] & (!0u64 << (start % WORD_BITS));
        if masked != 0 {
            return Some(first_word * WORD_BITS + masked.trailing_zeros() as usize - start);
        }
        for step in 1..=WORD_COUNT {
            let word = (first_word + step) % WORD_COUNT;
            let bits = self.occupied[word];
            if bits != 0 {
                let slot = word * WORD_BITS + bits.trailing_zeros() as usize;
                return Some((slot + SLOT_COUNT - start) % SLOT_COUNT);
            }
        }
        None
    }

    /// Advances the clock to `to` and appends the payload of every entry with
    /// `deadline <= to` to `fired`, in slot order.
    ///
    /// Visits each slot between the old and new `now` once, at most one full turn; a slot's
    /// list is walked only if its bit is set.
    pub fn expire(&mut self, to: u64, fired: &mut Vec<T>) {
        self.expire_at_most(to, usize::MAX, fired);
    }

    /// [`TimerWheel::expire`], firing no more than `budget` entries: when the budget runs
    /// out, `now` stays on the last tick whose entries all fired, and the rest stay in the
    /// wheel (still cancellable) for the next call. Returns true when everything due by `to`
    /// fired. This is what bounds the work of one loop pass when thousands of deadlines
    /// fall in one tick.
    pub fn expire_at_most(&mut self, to: u64, budget: usize, fired: &mut Vec<T>) -> bool {
        if to <= self.now {
            return true;
        }
        let fired_before = fired.len();
        let limit = fired_before.saturating_add(budget);
        let steps = (to - self.now).min(SLOT_COUNT as u64);
        let mut tick = self.now + 1;
        let mut remaining = steps;
        let mut done = true;
        while remaining > 0 {
            let slot = slot_of(tick);
            let distance = match self.distance_to_occupied(slot) {
                Some(d) if (d as u64) < remaining => d as u64,
                _ => break,
            };
            tick += distance;
            remaining -= distance;
            if !self.fire_slot(slot_of(tick), to, fired, limit) {
                done = false;
                break;
            }
            tick += 1;
            remaining -= 1;
        }
        // Stopped short: every tick before the unfinished slot's is done, not that one.
        self.now = if done { to } else { tick - 1 };
        if !done || fired.len() > fired_before || self.next.is_some_and(|next| next <= to) {
            self.next = None;
        }
        debug_assert!(fired.len() <= limit);
        done
    }

    /// Fires the slot's entries due by `to` until `fired` holds `limit`; true when the
    /// whole list was walked.
    fn fire_slot(&mut self, slot: usize, to: u64, fired: &mut Vec<T>, limit: usize) -> bool {
        let mut key = self.heads[slot];
        let mut soonest = u64::MAX;
        while key != NIL {
            let entry = &self.entries[key as usize];
            let next = entry.next;
            if entry.deadline <= to {
                if fired.len() >= limit {
                    // The slot's old soonest is still no later than what is left in it.
                    return false;
                }
                let entry = self.entries.remove(key as usize);
                self.unlink(slot, entry.prev, entry.next);
                self.totals.fired += 1;
                fired.push(entry.payload);
            } else {
                soonest = soonest.min(entry.deadline);
            }
            key = next;
        }
        // The walk saw every entry left: the slot's soonest is exact again.
        self.soonest[slot] = soonest;
        true
    }
}

impl<T: Copy> Default for TimerWheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parked poll's timer is one entry: docs/ARCHITECTURE.md counts it in what a
    /// waiting poll costs (plus the slab's 8-byte tag).
    #[test]
    fn a_timer_entry_stays_small() {
        let size = std::mem::size_of::<Entry<(u32, u32)>>();
        println!("timer entry: {size} bytes (+8 slab tag)");
        assert!(size <= 24, "a timer entry grew to {size} bytes");
    }

    fn expire_all(wheel: &mut TimerWheel<u32>, to: u64) -> Vec<u32> {
        let mut fired = Vec::new();
        wheel.expire(to, &mut fired);
        fired
    }

    /// A tick kept in 32 bits comes back whole next to the clock, on either side of it
    /// and across the 2^32 boundary: (tick, clock).
    #[test]
    fn a_short_tick_widens_back_to_the_tick() {
        let wrap = 1u64 << 32;
        let day = 8_640_000; // ticks of 10 ms
        let cases = [
            (0, 0),
            (day, 0),
            (5, 7),
            (wrap - 1, wrap + 3),
            (wrap + 3, wrap - 1),
            (3 * wrap + day, 3 * wrap - 10),
            (7 * wrap - day, 7 * wrap + 10),
            (1 << 40, (1 << 40) - (1 << 31) + 1),
        ];
        for (tick, clock) in cases {
            assert_eq!(
                ShortTick::of(tick).widen(clock),
                tick,
                "{tick} near {clock}"
            );
        }
    }

    #[test]
    fn slot_of_wraps_every_slot_count_ticks() {
        // Exhaustive over three turns: the slot is the tick modulo the slot count.
        for tick in 0..(3 * SLOT_COUNT as u64) {
            let slot = slot_of(tick);
            assert!(slot < SLOT_COUNT);
            assert_eq!(slot as u64, tick % SLOT_COUNT as u64);
            assert_eq!(slot_of(tick + SLOT_COUNT as u64), slot);
        }
    }

    #[test]
    fn tick_rounding() {
        let cases = [
            (Duration::ZERO, 0, 0),
            (Duration::from_millis(1), 1, 0),
            (Duration::from_millis(10), 1, 1),
            (Duration::from_millis(11), 2, 1),
            (Duration::from_millis(500), 50, 50),
            (Duration::from_secs(20), 2000, 2000),
        ];
        for (duration, ceil, floor) in cases {
            assert_eq!(ticks_ceil(duration), ceil, "ceil {duration:?}");
            assert_eq!(ticks_floor(duration), floor, "floor {duration:?}");
        }
    }

    #[test]
    fn fires_at_deadline_not_before() {
        let mut wheel = TimerWheel::new();
        wheel.insert(5, 1);
        wheel.insert(3, 2);
        assert_eq!(wheel.next_deadline(), Some(3));
        assert!(expire_all(&mut wheel, 2).is_empty());
        assert_eq!(expire_all(&mut wheel, 3), vec![2]);
        assert_eq!(wheel.next_deadline(), Some(5));
        assert!(expire_all(&mut wheel, 4).is_empty());
        assert_eq!(expire_all(&mut wheel, 9), vec![1]);
        assert_eq!(wheel.next_deadline(), None);
        assert!(wheel.is_empty());
    }

    #[test]
    fn past_deadline_fires_on_next_expire() {
        let mut wheel = TimerWheel::new();
        expire_all(&mut wheel, 100);
        wheel.insert(7, 1);
        assert_eq!(wheel.next_deadline(), Some(101));
        assert_eq!(expire_all(&mut wheel, 101), vec![1]);
    }

    #[test]
    fn entry_more_than_a_turn_away_waits_for_its_turn() {
        let mut wheel = TimerWheel::new();
        let far = 2 * SLOT_COUNT as u64 + 10;
        wheel.insert(far, 1);
        // The loop is not woken when the slot comes round in the turns before.
        assert_eq!(wheel.next_deadline(), Some(far));
        // Visits before its turn (a jump, or a neighbour due) leave it in place.
        assert!(expire_all(&mut wheel, 10).is_empty());
        assert!(expire_all(&mut wheel, SLOT_COUNT as u64 + 10).is_empty());
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.next_deadline(), Some(far));
        assert_eq!(expire_all(&mut wheel, far), vec![1]);
    }

    /// What issue 11 measured: with deadlines spread over many turns (long poll timeouts),
    /// the loop sleeps until the soonest one, not until the next occupied slot.
    #[test]
    fn sleeps_until_something_is_really_due() {
        let mut wheel = TimerWheel::new();
        let turn = SLOT_COUNT as u64;
        // Every slot occupied by entries of later turns, and one due sooner than all.
        for i in 0..SLOT_COUNT as u64 {
            wheel.insert(3 * turn + i, i as u32);
        }
        wheel.insert(2 * turn + 7, 99_999);
        assert_eq!(wheel.next_deadline(), Some(2 * turn + 7));
        // One of this turn wins over all of them.
        wheel.insert(500, 7);
        assert_eq!(wheel.next_deadline(), Some(500));
        assert_eq!(expire_all(&mut wheel, 500), vec![7]);
        assert_eq!(wheel.next_deadline(), Some(2 * turn + 7));
        // A cancelled soonest leaves its slot's bound early: at most one wake-up for
        // nothing, after which the walk makes it exact.
        let id = wheel.insert(2 * turn + 3, 1);
        wheel.cancel(id);
        let early = wheel.next_deadline().unwrap();
        assert!(early <= 2 * turn + 7);
        assert!(expire_all(&mut wheel, early).is_empty() || early == 2 * turn + 7);
        assert_eq!(wheel.next_deadline(), Some(2 * turn + 7));
    }

    #[test]
    fn long_jump_fires_everything_due() {
        let mut wheel = TimerWheel::new();
        for i in 0..100u32 {
            wheel.insert(u64::from(i) * 97 + 1, i);
        }
        let mut fired = expire_all(&mut wheel, 10 * SLOT_COUNT as u64);
        fired.sort_unstable();
        assert_eq!(fired, (0..100).collect::<Vec<_>>());
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn cancel_removes_only_that_entry() {
        let mut wheel = TimerWheel::new();
        let a = wheel.insert(4, 1);
        let b = wheel.insert(4, 2);
        let c = wheel.insert(4, 3);
        assert_eq!(wheel.cancel(b), Some(2));
        assert_eq!(wheel.cancel(b), None, "a second cancel is a no-op");
        assert_eq!(wheel.cancel(a), Some(1));
        assert_eq!(expire_all(&mut wheel, 4), vec![3]);
        assert_eq!(wheel.cancel(c), None);
    }

    #[test]
    fn cancelling_last_entry_clears_the_slot() {
        let mut wheel = TimerWheel::new();
        let a = wheel.insert(4, 1);
        wheel.insert(9, 2);
        wheel.cancel(a);
        assert_eq!(wheel.next_deadline(), Some(9));
    }

    /// The trap from slab reuse: a connection closes, its slot is handed to a new client,
    /// and the old client's timer must not fire on the newcomer.
    #[test]
    fn reused_connection_slot_is_not_fired_by_the_old_timer() {
        // Payload = (connection key, generation), as the server uses it.
        let mut wheel: TimerWheel<(u32, u32)> = TimerWheel::new();
        let old = wheel.insert(5, (7, 1));
        // The old occupant of slot 7 closes: its timer is cancelled on close.
        assert_eq!(wheel.cancel(old), Some((7, 1)));
        // A new client takes connection slot 7 and parks with a later deadline.
        let new = wheel.insert(50, (7, 2));
        assert_eq!(
            new, old,
            "the wheel reuses the entry too, which is why payloads carry a generation"
        );
        let mut fired = Vec::new();
        wheel.expire(5, &mut fired);
        assert!(fired.is_empty(), "nothing fires at the old deadline");
        wheel.expire(50, &mut fired);
        assert_eq!(fired, vec![(7, 2)]);
    }

    #[test]
    fn next_deadline_wraps_round_the_wheel() {
        let mut wheel = TimerWheel::new();
        expire_all(&mut wheel, SLOT_COUNT as u64 - 3);
        wheel.insert(SLOT_COUNT as u64 + 2, 1);
        assert_eq!(wheel.next_deadline(), Some(SLOT_COUNT as u64 + 2));
        assert!(expire_all(&mut wheel, SLOT_COUNT as u64 + 1).is_empty());
        assert_eq!(expire_all(&mut wheel, SLOT_COUNT as u64 + 2), vec![1]);
    }

    /// Regression: with every deadline beyond one turn (a poll timeout over 41 s), each pass
    /// of the loop walked the wheel's occupied slots to find the next deadline; 12 % of the
    /// CPU at 250,000 waiting polls. Now the answer is kept until an expire changes it.
    #[test]
    fn the_next_deadline_is_found_once_until_something_changes() {
        let mut wheel = TimerWheel::new();
        for i in 0..1000u64 {
            wheel.insert(3 * SLOT_COUNT as u64 + i * 7, i as u32);
        }
        let first = wheel.next_deadline();
        assert_eq!(first, Some(3 * SLOT_COUNT as u64));
        for tick in 1..100 {
            assert!(expire_all(&mut wheel, tick).is_empty());
            assert_eq!(wheel.next_deadline(), first);
        }
        assert_eq!(wheel.scans, 1, "one walk for a hundred passes");
        // A sooner deadline is taken at once; a cancel may leave the answer early, never late.
        let soon = wheel.insert(200, 9999);
        assert_eq!(wheel.next_deadline(), Some(200));
        wheel.cancel(soon);
        assert_eq!(
            wheel.next_deadline(),
            Some(200),
            "early by one wake-up, never late"
        );
        assert!(expire_all(&mut wheel, 200).is_empty());
        assert_eq!(
            wheel.next_deadline(),
            first,
            "found again after the empty wake-up"
        );
        assert_eq!(wheel.scans, 2);
    }

    /// A randomised cross-check against a plain list: whatever we insert, cancel and expire,
    /// the wheel fires exactly what a sorted list would.
    #[test]
    fn matches_a_naive_model() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut wheel = TimerWheel::new();
        let mut model: Vec<(u64, u32, TimerId)> = Vec::new();
        let mut payload = 0u32;
        for _ in 0..20_000 {
            match next() % 4 {
                0 | 1 => {
                    let deadline = wheel.now() + 1 + next() % (3 * SLOT_COUNT as u64);
                    payload += 1;
                    let id = wheel.insert(deadline, payload);
                    model.push((deadline, payload, id));
                }
                2 if !model.is_empty() => {
                    let (_, p, id) = model.swap_remove((next() % model.len() as u64) as usize);
                    assert_eq!(wheel.cancel(id), Some(p));
                }
                3 if next() % 3 == 0 => {
                    // A budget: the earliest ticks fire first, and whatever is left over
                    // was due after `now`, which stops on the last tick that fired whole.
                    let to = wheel.now() + next() % 700;
                    let budget = 1 + (next() % 40) as usize;
                    let due = model.iter().filter(|(d, _, _)| *d <= to).count();
                    let mut fired = Vec::new();
                    let done = wheel.expire_at_most(to, budget, &mut fired);
                    assert_eq!(fired.len(), due.min(budget));
                    assert_eq!(done, due <= budget);
                    assert_eq!(wheel.now() == to, done);
                    for p in &fired {
                        let at = model.iter().position(|(_, q, _)| q == p).unwrap();
                        let (deadline, _, _) = model.swap_remove(at);
                        assert!(deadline <= to);
                    }
                    assert!(
                        model.iter().all(|(d, _, _)| *d > wheel.now()),
                        "everything due by now fired"
                    );
                }
                _ => {
                    let to = wheel.now() + next() % 700;
                    let mut fired = expire_all(&mut wheel, to);
                    let mut expected: Vec<u32> = model
                        .iter()
                        .filter(|(d, _, _)| *d <= to)
                        .map(|(_, p, _)| *p)
                        .collect();
                    model.retain(|(d, _, _)| *d > to);
                    fired.sort_unstable();
                    expected.sort_unstable();
                    assert_eq!(fired, expected);
                }
            }
            // After every kind of step, cached or not: never late, and never before now.
            if let Some(next_due) = wheel.next_deadline() {
                let earliest = model.iter().map(|(d, _, _)| *d).min().unwrap();
                assert!(next_due <= earliest, "next_deadline must never be late");
                assert!(next_due > wheel.now(), "nothing is due in the past");
            }
            assert_eq!(wheel.len(), model.len());
            // The X-ray's picture agrees with the model: entries per slot, and the totals.
            let counted: u32 = wheel.slot_counts().iter().sum();
            assert_eq!(counted as usize, model.len());
            let totals = wheel.totals();
            assert_eq!(
                totals.armed - totals.fired - totals.cancelled,
                model.len() as u64
            );
        }
        for (deadline, _, _) in &model {
            assert!(wheel.slot_counts()[slot_of(*deadline)] > 0);
        }
    }
}
