//! Every Server-Sent Events frame the server writes is spelled here: a stored message (with
//! its position as the event id, so an EventSource resumes after it), ephemeral events, the
//! `gap` notice, the shutdown notice, the reconnect hint and the heartbeat. The stream's
//! HTTP head is an HTTP response like any other ([`crate::answer::stream_head`]).

use crate::answer;
use crate::event::Event;
use crate::position::Position;

/// The first frame of every stream: an EventSource that loses the stream reconnects after
/// this many milliseconds, sending the id of the last event it saw.
pub const RETRY_HINT: &[u8] = b"retry: 2000\n\n";

/// A comment line written to a stream with nothing else to say, so proxies keep it open.
pub const HEARTBEAT: &[u8] = b": keep-alive\n\n";

/// The frame of a stored message: `id: <position>`, `event: message`, and its JSON as the
/// one `data:` line (JSON escapes every newline, so it is one line). Returns the frame and
/// where the JSON starts in it, so answers from history can point at the JSON alone.
pub fn message_frame(id: Position, json: &str) -> (String, usize) {
    let mut frame = format!("id: {id}\nevent: message\ndata: ");
    let json_start = frame.len();
    frame.push_str(json);
    frame.push_str("\n\n");
    (frame, json_start)
}

/// Ephemeral events as frames, back to back: one write however many there are.
pub fn event_frames(events: &[Event]) -> String {
    events
        .iter()
        .map(|event| {
            format!(
                "event: {}\ndata: {}\n\n",
                event.kind(),
                answer::event_json(event)
            )
        })
        .collect()
}

/// Messages this stream was owed are gone (evicted, or the server restarted); `next` is the
/// room's newest position when that was noticed.
pub fn gap_frame(next: Position) -> String {
    format!("event: gap\ndata: {{\"next\":\"{next}\"}}\n\n")
}

/// The token the stream was opened with has run out; the server closes the stream after
/// this. The page asks its site for a new token and reconnects with it (from where it
/// was: its last event id). Browsers drop an event without a `data:` line, so it has one.
pub const EXPIRED: &[u8] = b"event: expired\ndata: {\"error\":\"token expired\"}\n\n";

/// The server is stopping: reconnect after `delay_ms` (random per client). The `retry:`
/// line makes EventSource wait that long; browsers drop an event without a `data:` line,
/// so the delay is in the data too.
pub fn shutdown_frame(delay_ms: u64) -> String {
    format!("retry: {delay_ms}\nevent: shutdown\ndata: {{\"retry_after_ms\":{delay_ms}}}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_exact() {
        let id = Position {
            epoch: 0xabcd_0001,
            seq: 4,
        };
        let (frame, at) = message_frame(id, "{\"a\":1}");
        assert_eq!(frame, "id: abcd0001-4\nevent: message\ndata: {\"a\":1}\n\n");
        assert_eq!(&frame[at..frame.len() - 2], "{\"a\":1}");
        assert_eq!(
            event_frames(&[
                Event::Join { name: "ann".into() },
                Event::Typing {
                    from: "a\"b".into()
                }
            ]),
            "event: join\ndata: {\"type\":\"join\",\"name\":\"ann\"}\n\n\
             event: typing\ndata: {\"type\":\"typing\",\"from\":\"a\\\"b\"}\n\n"
        );
        assert_eq!(
            gap_frame(id),
            "event: gap\ndata: {\"next\":\"abcd0001-4\"}\n\n"
        );
        assert_eq!(
            shutdown_frame(1500),
            "retry: 1500\nevent: shutdown\ndata: {\"retry_after_ms\":1500}\n\n"
        );
    }
}
