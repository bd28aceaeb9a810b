//! The codec's own rules and its properties under random input; `autobahn.rs` holds the
//! conformance cases. The helpers here play the client: they mask and frame bytes, and
//! feed them to an [`Assembler`] in chops the way a socket would deliver them, checking at
//! every step the invariants the transport will rely on.

use super::frame::{self, CloseCode, Decoded, Opcode, ServerHeader};
use super::message::{Assembler, Close, Event, Step};
use proptest::prelude::*;

/// The FIN bit of a frame's first byte.
pub(super) const FIN: u8 = 0x80;

/// A masking key with every byte different, so a payload left masked shows.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame: first byte `b0` as given (FIN, reserved bits, opcode), masked, with the
/// shortest length encoding.
pub(super) fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&KEY);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    out
}

/// How a run of input ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum End {
    /// Every byte was taken.
    Clean,
    /// Waiting for more: this many bytes are buffered.
    Waiting(usize),
    /// The stream was refused with this code.
    Closed(CloseCode),
}

/// What the assembler made of some input: the events in order, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Run {
    /// Every event, in order.
    pub events: Vec<Event>,
    /// How the input ended.
    pub end: End,
}

/// Feeds `input` to a fresh assembler capped at `cap`, `chop` bytes at a time, as a
/// connection would, checking the invariants the transport relies on: each step takes at
/// least one byte and no more than it has, "partial" never comes with the cap's worth
/// buffered, and no message is larger than the cap.
pub(super) fn run_chopped(cap: usize, input: &[u8], chop: usize) -> Run {
    let mut assembler = Assembler::new(cap);
    let mut buf = Vec::new();
    let mut events = Vec::new();
    for piece in input.chunks(chop.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match assembler.read(&mut buf) {
                Step::Took { consumed, event } => {
                    assert!(
                        consumed > 0 && consumed <= buf.len(),
                        "{consumed} of {}",
                        buf.len()
                    );
                    buf.drain(..consumed);
                    if let Some(Event::Text(ref text)) = event {
                        assert!(text.len() <= cap);
                    }
                    if let Some(Event::Binary(ref bytes)) = event {
                        assert!(bytes.len() <= cap);
                    }
                    events.extend(event);
                }
                Step::Partial => {
                    assert!(
                        buf.len() < assembler.input_bytes_cap(),
                        "{} buffered",
                        buf.len()
                    );
                    break;
                }
                Step::Invalid(code) => {
                    return Run {
                        events,
                        end: End::Closed(code),
                    }
                }
            }
        }
    }
    let end = if buf.is_empty() {
        End::Clean
    } else {
        End::Waiting(buf.len())
    };
    Run { events, end }
}

/// [`run_chopped()`] whole, one byte at a time and in Autobahn's 997-byte chops: how a
/// stream is read must not depend on how the network cut it.
pub(super) fn run(cap: usize, input: &[u8]) -> Run {
    let whole = run_chopped(cap, input, input.len());
    for chop in [1, 2, 3, 7, 997] {
        assert_eq!(run_chopped(cap, input, chop), whole, "chopped into {chop}");
    }
    whole
}

/// A stream refused with `code` after `events`.
pub(super) fn closed(events: Vec<Event>, code: u16) -> Run {
    Run {
        events,
        end: End::Closed(CloseCode(code)),
    }
}

/// A stream read to its end.
pub(super) fn clean(events: Vec<Event>) -> Run {
    Run {
        events,
        end: End::Clean,
    }
}

/// A text event.
pub(super) fn text(s: &str) -> Event {
    Event::Text(s.to_owned())
}

#[test]
fn decode_has_three_outcomes() {
    let mut whole = frame(FIN | 1, b"Hello");
    assert_eq!(
        frame::decode(&mut whole, 5),
        Decoded::Complete(frame::Frame {
            fin: true,
            opcode: Opcode::Text,
            payload: 6..11,
            consumed: 11,
        })
    );
    assert_eq!(&whole[6..11], b"Hello", "the payload is unmasked in place");
    let bytes = frame(FIN | 1, b"Hello");
    for cut in 0..bytes.len() {
        let mut prefix = bytes[..cut].to_vec();
        assert_eq!(frame::decode(&mut prefix, 5), Decoded::Partial, "{cut}");
    }
    let mut big = frame(FIN | 1, b"Hello");
    assert_eq!(
        frame::decode(&mut big, 4),
        Decoded::Invalid(CloseCode::TOO_BIG)
    );
}

#[test]
fn lengths_must_be_spelled_minimally_and_fit_63_bits() {
    let mut short_as_16 = vec![FIN | 2, 0x80 | 126, 0, 125, 0, 0, 0, 0];
    short_as_16.extend([0; 125]);
    let mut short_as_64 = vec![
        FIN | 2,
        0x80 | 127,
        0,
        0,
        0,
        0,
        0,
        0,
        0xff,
        0xff,
        0,
        0,
        0,
        0,
    ];
    short_as_64.extend(vec![0; 0xffff]);
    let mut top_bit = vec![FIN | 2, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    for bytes in [&mut short_as_16, &mut short_as_64, &mut top_bit] {
        assert_eq!(
            frame::decode(bytes, usize::MAX),
            Decoded::Invalid(CloseCode::PROTOCOL_ERROR)
        );
    }
    // The largest length there is, against no cap: waits (for ever), no overflow.
    let mut huge = vec![
        FIN | 2,
        0x80 | 127,
        0x7f,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
    ];
    huge.extend(KEY);
    assert_eq!(frame::decode(&mut huge, usize::MAX), Decoded::Partial);
    assert_eq!(
        frame::decode(&mut huge, 1 << 20),
        Decoded::Invalid(CloseCode::TOO_BIG)
    );
}

#[test]
fn server_frames_use_the_shortest_length_and_no_mask() {
    for (len, head) in [
        (0, vec![0x81, 0]),
        (125, vec![0x81, 125]),
        (126, vec![0x81, 126, 0, 126]),
        (127, vec![0x81, 126, 0, 127]),
        (128, vec![0x81, 126, 0, 128]),
        (65535, vec![0x81, 126, 0xff, 0xff]),
        (65536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        let payload = vec![b'*'; len];
        let bytes = frame::encode(Opcode::Text, &payload);
        assert_eq!(bytes[..head.len()], head[..], "{len}");
        assert_eq!(bytes[head.len()..], payload[..], "{len}");
        assert_eq!(ServerHeader::new(Opcode::Text, len).as_bytes(), &head[..]);
    }
    assert_eq!(frame::encode(Opcode::Ping, b"hi"), [0x89, 2, b'h', b'i']);
    assert_eq!(frame::encode(Opcode::Pong, b""), [0x8a, 0]);
    assert_eq!(frame::encode(Opcode::Binary, &[7]), [0x82, 1, 7]);
    // A control payload past 125 bytes is cut, so the frame stays one a peer accepts.
    assert_eq!(frame::encode(Opcode::Ping, &[1; 200]).len(), 2 + 125);
}

#[test]
fn close_frames_carry_a_code_and_a_reason_cut_at_a_character() {
    assert_eq!(
        frame::encode_close(CloseCode::GOING_AWAY, "bye"),
        [0x88, 5, 0x03, 0xe9, b'b', b'y', b'e']
    );
    // 61 two-byte characters are 122 bytes; the 62nd would make 124 > 123.
    let long = "é".repeat(100);
    let bytes = frame::encode_close(CloseCode::TOO_BIG, &long);
    assert_eq!(bytes[1], 2 + 122);
    assert!(std::str::from_utf8(&bytes[4..]).is_ok());
}

/// What the server encodes, a client masks and the server reads back: the two halves
/// agree. (Re-masking a server frame is what a client library does to echo it.)
#[test]
fn encoded_frames_read_back_once_masked() {
    for (opcode, payload) in [
        (Opcode::Text, "κόσμε".as_bytes().to_vec()),
        (Opcode::Binary, vec![0xfe; 70_000]),
        (Opcode::Ping, b"ping".to_vec()),
        (Opcode::Pong, vec![]),
    ] {
        let server = frame::encode(opcode, &payload);
        let client = frame(server[0], &payload);
        let expected = match opcode {
            Opcode::Text => Event::Text(String::from_utf8(payload.clone()).unwrap()),
            Opcode::Binary => Event::Binary(payload.clone()),
            Opcode::Ping => Event::Ping(payload.clone()),
            _ => Event::Pong(payload.clone()),
        };
        assert_eq!(run(1 << 20, &client), clean(vec![expected]));
    }
    let close = frame::encode_close(CloseCode::NORMAL, "done");
    assert_eq!(
        run(0, &frame(close[0], &close[2..])),
        clean(vec![Event::Close(Some(Close {
            code: CloseCode::NORMAL,
            reason: "done".to_owned()
        }))])
    );
}

#[test]
fn a_message_cap_of_zero_still_passes_control_frames() {
    let mut input = frame(FIN | 9, &[1; 125]);
    input.extend(frame(FIN | 1, b""));
    input.extend(frame(FIN | 1, b"x"));
    assert_eq!(
        run(0, &input),
        closed(vec![Event::Ping(vec![1; 125]), text("")], 1009)
    );
}

#[test]
fn the_fragment_that_crosses_the_cap_is_refused_from_its_header() {
    let mut input = frame(1, b"abc");
    input.extend(frame(0, b"de"));
    // Only the header of the fragment that would make 7 > 6 bytes: no payload follows.
    input.extend(&frame(FIN, b"fg")[..6]);
    assert_eq!(run(6, &input), closed(vec![], 1009));
}

/// A frame of random shape: mostly valid opcodes, sometimes a reserved bit, a reserved
/// opcode or a missing mask, so random streams reach deep into the assembler.
fn random_frame() -> impl Strategy<Value = Vec<u8>> {
    let b0 = prop_oneof![
        8 => (any::<bool>(), prop::sample::select(vec![0u8, 1, 2, 8, 9, 10]))
            .prop_map(|(fin, op)| if fin { FIN | op } else { op }),
        1 => any::<u8>(),
    ];
    let payload = prop_oneof![
        3 => "\\PC{0,40}".prop_map(String::into_bytes),
        2 => prop::collection::vec(any::<u8>(), 0..300),
    ];
    (b0, payload, 0u8..20).prop_map(|(b0, payload, unmasked)| {
        let mut bytes = frame(b0, &payload);
        if unmasked == 0 {
            bytes[1] &= 0x7f;
        }
        bytes
    })
}

proptest! {
    /// Any bytes at all, cut anywhere: no panic, the invariants of `run_chopped()`, and
    /// the same outcome however the bytes were cut.
    #[test]
    fn random_bytes_never_panic_nor_overbuffer(
        input in prop::collection::vec(any::<u8>(), 0..400),
        cap in 0usize..300,
        chop in 1usize..50,
    ) {
        let whole = run_chopped(cap, &input, input.len());
        prop_assert_eq!(run_chopped(cap, &input, chop), whole);
    }

    /// Streams of plausible frames, valid or not, cut anywhere: the same checks, deeper.
    #[test]
    fn random_frames_read_the_same_however_cut(
        frames in prop::collection::vec(random_frame(), 0..12),
        cut in 0usize..4000,
        cap in 0usize..400,
        chop in 1usize..64,
    ) {
        let mut input: Vec<u8> = frames.concat();
        input.truncate(cut.max(input.len() / 2));
        let whole = run_chopped(cap, &input, input.len());
        prop_assert_eq!(run_chopped(cap, &input, chop), whole);
    }

    /// Valid messages, fragmented anywhere (code points split too) with pings between the
    /// fragments: exactly those messages and pings come out, in order.
    #[test]
    fn fragmented_messages_come_out_whole(
        messages in prop::collection::vec(("\\PC{0,30}", prop::collection::vec(0usize..40, 0..4), any::<bool>()), 1..6),
    ) {
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for (i, (message, cuts, binary)) in messages.iter().enumerate() {
            let bytes = message.as_bytes();
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut start = 0;
            let mut first = true;
            for end in cuts.into_iter().chain([bytes.len()]) {
                let last = end == bytes.len();
                let opcode = match (first, binary) {
                    (false, _) => 0,
                    (true, true) => 2,
                    (true, false) => 1,
                };
                input.extend(frame(if last { FIN | opcode } else { opcode }, &bytes[start..end]));
                if !last {
                    input.extend(frame(FIN | 9, &[i as u8]));
                    expected.push(Event::Ping(vec![i as u8]));
                }
                if last {
                    break;
                }
                start = end;
                first = false;
            }
            expected.push(if *binary {
                Event::Binary(bytes.to_vec())
            } else {
                Event::Text(message.clone())
            });
        }
        prop_assert_eq!(run_chopped(1 << 10, &input, 5), clean(expected));
    }
}

/// RFC 6455 §5.1: a server must close on a client frame without a mask, whatever it is.
#[test]
fn unmasked_client_frames_are_refused() {
    for b0 in [FIN | 1, FIN | 2, 1, FIN | 8, FIN | 9, FIN | 10] {
        let mut bytes = frame(b0, b"payload");
        bytes[1] &= 0x7f;
        bytes.drain(2..6);
        assert_eq!(run(1 << 10, &bytes), closed(vec![], 1002), "{b0:#x}");
    }
    // Even its first two bytes are enough to say so.
    assert_eq!(run(1 << 10, &[FIN | 1, 100]), closed(vec![], 1002));
}

/// A cap of `usize::MAX` ("no cap") neither overflows nor refuses what it should take.
#[test]
fn a_cap_of_usize_max_does_not_overflow() {
    assert_eq!(Assembler::new(usize::MAX).input_bytes_cap(), usize::MAX);
    let input = [frame(1, b"ab"), frame(FIN, b"c")].concat();
    assert_eq!(run(usize::MAX, &input), clean(vec![text("abc")]));
}
