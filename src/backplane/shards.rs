//! Which Redis holds a room, when `--redis` is given more than once: rooms are spread over
//! the shards by a stable hash of the room's name, so every node, whatever its version or
//! platform, sends a room's posts, reads and announcements to the same Redis. A room lives
//! on one shard whole (its stream, ids, `client_id`s, names, channel); nothing spans two.
//!
//! The hash is 64-bit FNV-1a of the name, then Lamping and Veach's jump consistent hash
//! ("A Fast, Minimal Memory, Consistent Hash Algorithm", 2014) to pick the shard. Jump
//! hashing is what makes growing cheap: going from `n` shards to `n + 1` moves about one
//! room in `n + 1`, and only onto the new shard; every other room stays where it was.
//! Removing or reordering shards moves far more (see docs/SCALING.md, "Changing the
//! shards"). Both functions are fixed forever: changing either would move rooms, so the
//! table test below pins their values.
//!
//! Nodes must agree on the list. With more than one shard, each Redis is told which shard
//! it is (`SET comet:shard i/n NX GET`, [`Place::marker`]), and a node that lists it
//! otherwise is refused by it ([`other_place`]): two nodes with different lists would split
//! a room's posts over two Redis, each side seeing half of the conversation.

use super::news::Malformed;
use redis_protocol::resp2::types::OwnedFrame;

/// The most `--redis` shards a node takes. Each shard is two connections (three with
/// Sentinel) and three poll tokens; 32 Redis is far past what a chat needs (one Redis
/// stores and announces tens of thousands of posts a second) and keeps the tokens a
/// small, fixed range.
pub const SHARDS_MAX: usize = 32;

/// The shard of room `name` among `shards` (at least 1).
pub fn shard_of(name: &str, shards: usize) -> usize {
    jump(fnv1a(name.as_bytes()), shards.max(1))
}

/// 64-bit FNV-1a: tiny, stable and well spread over short names.
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

/// Jump consistent hash: a bucket in `0..buckets` for `key`, as in the paper.
fn jump(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

/// The key each shard's Redis keeps its place in, with more than one shard.
pub const MARKER_KEY: &str = "comet:shard";

/// Bytes of a marker not ours that [`other_place`] shows. Ours is `i/n`, a few bytes; one
/// written by someone else may be as long as a reply may be (megabytes), and would be
/// logged whole at every outage.
const MARKER_SHOWN_BYTES: usize = 64;

/// Which shard a `Backplane` is, of how many (`--redis` given `shards` times).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// Its index in `--redis` as given.
    pub shard: usize,
    /// How many `--redis` there are.
    pub shards: usize,
}

impl Place {
    /// What this shard writes into [`MARKER_KEY`]: `"{shard}/{shards}"`.
    pub fn marker(self) -> String {
        format!("{}/{}", self.shard, self.shards)
    }
}

/// Reads Redis's reply to `SET comet:shard {ours} NX GET`: nil when it had no marker (it
/// is ours now) or ours again; otherwise the marker it had, for a log line. Whoever can
/// write to that Redis wrote it, so it is shown short, and on one line (escaped), however
/// long it is or whatever it holds.
pub fn other_place(reply: &OwnedFrame, ours: Place) -> Result<Option<String>, Malformed> {
    let had = match reply {
        OwnedFrame::Null => return Ok(None),
        OwnedFrame::BulkString(had) => had,
        _ => return Err(Malformed("SET ... GET answers nil or a string")),
    };
    if had.as_slice() == ours.marker().as_bytes() {
        return Ok(None);
    }
    Ok(Some(super::resp::shown(had, MARKER_SHOWN_BYTES)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_pinned_so_rooms_never_move_between_versions() {
        // FNV-1a's published test vectors, and jump hash's as other implementations
        // (ClickHouse's `jumpConsistentHash`) give them; then what they make of a few names.
        // A change here moves rooms between shards on every deployment.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        let vectors = [
            (1, 1, 0),
            (42, 57, 43),
            (256, 1024, 520),
            (3_735_883_980, 1, 0),
            (3_735_883_980, 666, 361),
            (16_045_690_984_833_335_023, 255, 237),
        ];
        for (key, buckets, bucket) in vectors {
            assert_eq!(jump(key, buckets), bucket, "jump({key}, {buckets})");
        }
        let pinned = [
            ("lobby", [0, 1, 2, 2]),
            ("room-1", [0, 1, 2, 2]),
            ("room-2", [0, 0, 2, 2]),
            ("kitchen", [0, 0, 0, 3]),
        ];
        for (name, expected) in pinned {
            let got: Vec<usize> = (1..=4).map(|n| shard_of(name, n)).collect();
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn rooms_spread_evenly_over_the_shards() {
        for shards in [2, 3, 5, 8] {
            let mut count = vec![0usize; shards];
            for i in 0..30_000 {
                count[shard_of(&format!("room-{i}"), shards)] += 1;
            }
            let mean = 30_000 / shards;
            for (shard, &n) in count.iter().enumerate() {
                let off = n.abs_diff(mean) as f64 / mean as f64;
                assert!(off < 0.05, "{shards} shards: shard {shard} has {n}");
            }
        }
    }

    #[test]
    fn adding_a_shard_moves_only_rooms_onto_the_new_one_about_one_in_n() {
        for shards in 1..8 {
            let mut moved = 0usize;
            for i in 0..20_000 {
                let name = format!("r{i}");
                let (before, after) = (shard_of(&name, shards), shard_of(&name, shards + 1));
                if before != after {
                    assert_eq!(after, shards, "{name} moved between old shards");
                    moved += 1;
                }
            }
            let expected = 20_000 / (shards + 1);
            assert!(
                moved.abs_diff(expected) < expected / 10,
                "{shards} -> {}: {moved} moved",
                shards + 1
            );
        }
    }

    #[test]
    fn a_marker_reply_is_ours_another_or_nonsense() {
        let ours = Place {
            shard: 1,
            shards: 3,
        };
        let bulk = |b: &[u8]| OwnedFrame::BulkString(b.to_vec());
        assert_eq!(ours.marker(), "1/3");
        assert_eq!(other_place(&OwnedFrame::Null, ours), Ok(None));
        assert_eq!(other_place(&bulk(b"1/3"), ours), Ok(None));
        assert_eq!(other_place(&bulk(b"0/3"), ours), Ok(Some("0/3".into())));
        assert_eq!(other_place(&bulk(b"1/2"), ours), Ok(Some("1/2".into())));
        // Someone else's: short, and on one line.
        let long = [b"x\n".as_slice(), &[b'y'; 5000]].concat();
        let shown = other_place(&bulk(&long), ours).unwrap().unwrap();
        assert!(
            shown.starts_with("x\\ny") && shown.ends_with("..."),
            "{shown}"
        );
        assert!(shown.len() < 80 && !shown.contains('\n'), "{shown}");
        assert!(other_place(&OwnedFrame::Array(vec![]), ours).is_err());
    }

    #[test]
    fn one_shard_holds_every_room() {
        for name in ["lobby", "a", "x-y_z", &"9".repeat(64)] {
            assert_eq!(shard_of(name, 1), 0);
            assert_eq!(shard_of(name, 0), 0);
        }
    }
}
