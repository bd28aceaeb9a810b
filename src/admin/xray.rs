//! The X-ray's feed: one [`Frame`] of the loop's state, four times a second, as one SSE
//! `data:` line of JSON. What each field shows, and which function makes it, is said again
//! beside each panel of the page (`www/admin/loop.html`).

use serde::Serialize;

/// How often a frame goes out while someone watches.
pub const FRAME_EVERY_MS: u64 = 250;

/// Slots of the timer wheel drawn as one arc of the ring.
pub const SLOTS_PER_ARC: usize = 16;

/// Cells of the slab strip at most; past that, each cell stands for a run of slots.
pub const SLAB_CELLS: usize = 1024;

/// Slots looked at per cell of the strip, when a cell stands for more than one.
pub const SAMPLES_PER_CELL: usize = 8;

/// One picture of the loop.
#[derive(Serialize, Debug, Default)]
pub struct Frame {
    /// Milliseconds since the server started.
    pub t_ms: u64,
    /// Milliseconds since the previous frame (rates below are over this).
    pub interval_ms: u64,
    /// Client connections open, polls waiting, streams open, rooms.
    pub connections: u64,
    /// Long polls waiting.
    pub polls: u64,
    /// Event streams open.
    pub streams: u64,
    /// The timer wheel.
    pub wheel: Wheel,
    /// The connection slab.
    pub slab: Slab,
    /// Passes of the loop since the previous frame.
    pub passes: u64,
    /// Readiness events since the previous frame.
    pub events: u64,
    /// The longest pass since the previous frame, in microseconds.
    pub pass_us_max: u64,
    /// The mean pass since the previous frame, in microseconds.
    pub pass_us_mean: u64,
    /// System calls per second since the previous frame, by kind.
    pub syscalls_per_s: Syscalls,
    /// Bytes read and written per second.
    pub bytes_in_per_s: u64,
    /// Bytes written per second.
    pub bytes_out_per_s: u64,
    /// The last few broadcasts, newest last.
    pub broadcasts: Vec<Broadcast>,
}

/// The timer wheel, as a ring.
#[derive(Serialize, Debug, Default)]
pub struct Wheel {
    /// Slots in the wheel.
    pub slots: usize,
    /// The slot the loop expires next.
    pub cursor: usize,
    /// Timers held, per arc of [`SLOTS_PER_ARC`] slots.
    pub arcs: Vec<u32>,
    /// Timers held in all.
    pub timers: usize,
}

/// The connection slab, as a strip.
#[derive(Serialize, Debug, Default)]
pub struct Slab {
    /// Slots the slab has room for.
    pub capacity: usize,
    /// Slots each cell of the strip stands for.
    pub per_cell: usize,
    /// One letter per cell: `.` free, `r` reading, `p` parked, `s` streaming, `w` writing,
    /// `l` lingering, `a` awaiting Redis; the commonest among the cell's samples.
    pub cells: String,
}

/// System calls per second.
#[derive(Serialize, Debug, Default, Clone, Copy)]
pub struct Syscalls {
    /// `accept4`.
    pub accept: u64,
    /// `read`.
    pub read: u64,
    /// `write` and `writev`.
    pub write: u64,
    /// `epoll_wait`.
    pub epoll_wait: u64,
}

/// One broadcast.
#[derive(Serialize, Debug)]
pub struct Broadcast {
    /// The room.
    pub room: String,
    /// Waiting clients it was written to.
    pub fanout: u64,
    /// From the start of the delivery to the last write, in microseconds.
    pub micros: u64,
    /// How long ago, in milliseconds.
    pub ago_ms: u64,
}

/// A frame as an SSE event (`data:` and the JSON, one line: JSON escapes newlines).
pub fn event(frame: &Frame) -> Vec<u8> {
    let json = serde_json::to_string(frame).unwrap_or_default();
    format!("data: {json}\n\n").into_bytes()
}

/// The letter of the commonest of `samples` (ties go to the busier state: anything but
/// free).
pub fn commonest(samples: &[u8]) -> u8 {
    let mut best = (0, b'.');
    for &letter in samples {
        let count = samples.iter().filter(|&&l| l == letter).count();
        let busier = letter != b'.' && best.1 == b'.';
        if count > best.0 || (count == best.0 && busier) {
            best = (count, letter);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_one_data_line() {
        let frame = Frame {
            broadcasts: vec![Broadcast {
                room: "a\nb".into(),
                fanout: 3,
                micros: 40,
                ago_ms: 10,
            }],
            ..Frame::default()
        };
        let bytes = String::from_utf8(event(&frame)).unwrap();
        assert!(bytes.starts_with("data: {\"t_ms\":0,"));
        assert_eq!(bytes.matches('\n').count(), 2, "{bytes}");
        assert!(bytes.ends_with("}\n\n"));
    }

    #[test]
    fn a_cell_shows_its_commonest_state() {
        assert_eq!(commonest(b"pppr...."), b'.');
        assert_eq!(commonest(b"pppp...."), b'p', "a tie goes to the busy state");
        assert_eq!(commonest(b"rrs"), b'r');
        assert_eq!(commonest(b""), b'.');
    }
}
