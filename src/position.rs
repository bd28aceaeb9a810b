//! Positions in a room's message sequence: `<epoch>-<seq>`, e.g. `5f3a09c2-42`.
//!
//! The epoch is chosen at random when the server starts, so a client can tell "the server
//! restarted and forgot everything" (different epoch) from "nothing new" (same epoch, same
//! seq). Sequence numbers start at 1 in every room; position `<epoch>-0` is "before the
//! first message". The client keeps the last position it got and sends it back: the server
//! keeps no per-client session.

use std::fmt;

/// A point in one room's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The server run this position belongs to.
    pub epoch: u32,
    /// The sequence number of the last message seen (0: none).
    pub seq: u64,
}

/// A position string that is not `<8 hex digits>-<decimal>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadPosition;

impl Position {
    /// Parses `<epoch>-<seq>`. The epoch is exactly eight hex digits, so positions compare
    /// as plain strings too.
    pub fn parse(text: &str) -> Result<Position, BadPosition> {
        let (epoch, seq) = text.split_once('-').ok_or(BadPosition)?;
        if epoch.len() != 8 || seq.is_empty() || seq.len() > 20 {
            return Err(BadPosition);
        }
        if !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadPosition);
        }
        Ok(Position {
            epoch: u32::from_str_radix(epoch, 16).map_err(|_| BadPosition)?,
            seq: seq.parse().map_err(|_| BadPosition)?,
        })
    }
}

/// In JSON a position is its string form, `"5f3a09c2-42"`.
impl serde::Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}-{}", self.epoch, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for (epoch, seq) in [(0, 0), (0x5f3a_09c2, 42), (u32::MAX, u64::MAX)] {
            let position = Position { epoch, seq };
            assert_eq!(Position::parse(&position.to_string()), Ok(position));
        }
        assert_eq!(Position { epoch: 10, seq: 7 }.to_string(), "0000000a-7");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "-",
            "0",
            "abc-1",
            "0000000a",
            "0000000a-",
            "0000000g-1",
            "0000000a--1",
            "0000000a-+1",
            "0000000a-1x",
            "000000000a-1",
            "0000000a-99999999999999999999999",
        ] {
            assert_eq!(Position::parse(bad), Err(BadPosition), "{bad:?}");
        }
    }
}
