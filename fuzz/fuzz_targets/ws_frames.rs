//! Arbitrary bytes, split at arbitrary points, through the WebSocket message assembler
//! (`ws::Assembler::read`, as the transport will call it on a connection's input buffer).
//! It must never panic, and must keep the promises the transport relies on: each step
//! takes at least one byte and no more than is buffered, "partial" never comes with
//! `input_bytes_cap()` bytes buffered (so a client cannot make us hold more), no message
//! is larger than the cap, and the outcome does not depend on how the bytes were split.
//!
//! Input layout: the first byte says how many split points follow (up to 15); each split
//! point is one byte, a chunk length. The next two bytes pick the message cap (0 to 65535
//! bytes), so the fuzzer explores tiny caps too. The rest is what the client sent.
//! `ws-seeds/` holds a few such inputs (no split points, a 256-byte cap, valid frames):
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run ws_frames corpus/ws_frames ws-seeds`.

#![no_main]

use comet_chat::ws::{Assembler, Event, Step};
use libfuzzer_sys::fuzz_target;

#[path = "../split.rs"]
mod split;

/// Reads `chunks` one after another as a connection would; returns the events and the
/// close code, if the stream was refused, or the bytes still buffered.
fn read(cap: usize, chunks: &[&[u8]]) -> (Vec<Event>, Result<usize, u16>) {
    let mut assembler = Assembler::new(cap);
    let mut buf = Vec::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match assembler.read(&mut buf) {
                Step::Took { consumed, event } => {
                    assert!(consumed > 0 && consumed <= buf.len());
                    buf.drain(..consumed);
                    match &event {
                        Some(Event::Text(text)) => assert!(text.len() <= cap),
                        Some(Event::Binary(bytes)) => assert!(bytes.len() <= cap),
                        Some(Event::Ping(p) | Event::Pong(p)) => assert!(p.len() <= 125),
                        _ => {}
                    }
                    events.extend(event);
                }
                Step::Partial => {
                    assert!(buf.len() < assembler.input_bytes_cap());
                    break;
                }
                Step::Invalid(code) => return (events, Err(code.0)),
            }
        }
    }
    (events, Ok(buf.len()))
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = split::split(data) else {
        return;
    };
    let cap = usize::from(u16::from_be_bytes(input.params));
    let whole: Vec<u8> = input.chunks.concat();
    assert_eq!(read(cap, &input.chunks), read(cap, &[&whole]));
});
