//! Frames → messages: the [`Assembler`] reads frames from a connection's buffer and yields
//! whole text and binary messages, and control frames as they come (between fragments
//! too). It holds the one piece of state framing needs, the message under way, and judges
//! the sequence of frames and the size of the message from each frame's header alone.

use super::frame::MAX_HEADER_BYTES;
use super::frame::{self, CloseCode, Decoded, Header, Opcode, MAX_CONTROL_PAYLOAD_BYTES};

/// What a client said, one whole message or control frame at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole text message, checked to be UTF-8.
    Text(String),
    /// A whole binary message.
    Binary(Vec<u8>),
    /// A ping: answer with a pong carrying the same payload.
    Ping(Vec<u8>),
    /// A pong (solicited or not): proof of life, nothing to answer.
    Pong(Vec<u8>),
    /// A close frame: `None` if it carried no code (a valid, empty close).
    Close(Option<Close>),
}

/// The code and reason of a peer's close frame, both checked (RFC 6455 §5.5.1, §7.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    /// A code a peer may send ([`CloseCode::valid_on_wire()`]).
    pub code: CloseCode,
    /// The reason, UTF-8, at most 123 bytes.
    pub reason: String,
}

/// The outcome of one [`Assembler::read()`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A frame was taken: drop `consumed` bytes from the buffer. `event` is `None` when the
    /// frame was a fragment of a message still under way.
    Took {
        /// How many bytes of the buffer the frame used (never 0).
        consumed: usize,
        /// What the frame completed, if anything.
        event: Option<Event>,
    },
    /// More bytes are needed; nothing is wrong.
    Partial,
    /// The stream can never become valid: send a close frame with this code and close.
    Invalid(CloseCode),
}

/// A message whose first fragments have arrived.
#[derive(Debug)]
struct Fragmented {
    /// Text (checked as UTF-8 as it grows) or binary.
    text: bool,
    /// The payload so far; never longer than the assembler's cap.
    bytes: Vec<u8>,
    /// How much of `bytes` is known to be valid UTF-8: a code point split across two
    /// fragments is waited for, anything that can never become valid fails at once, and
    /// each byte is checked once.
    checked: usize,
}

/// Reads a client's frames into messages, with the message size capped.
///
/// Memory at the worst: the connection buffers up to [`Assembler::input_bytes_cap()`] to
/// get a decision, and the assembler holds up to `max_message_bytes` of a fragmented
/// message, so one client costs at most about twice the cap.
#[derive(Debug)]
pub struct Assembler {
    /// The largest message (the sum of its fragments' payloads), in bytes, that is accepted;
    /// anything larger is refused with 1009 as soon as a header announces it.
    max_message_bytes: usize,
    /// The message under way, between its first and its final fragment.
    partial: Option<Fragmented>,
}

impl Assembler {
    /// An assembler that accepts messages of up to `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Assembler {
        Assembler {
            max_message_bytes,
            partial: None,
        }
    }

    /// The most bytes a connection ever needs to buffer before [`Assembler::read()`]
    /// decides: [`Step::Partial`] is only ever returned below this.
    pub fn input_bytes_cap(&self) -> usize {
        // Saturating: a cap of usize::MAX means "no cap", never a wrapped, tiny one.
        MAX_HEADER_BYTES.saturating_add(self.max_message_bytes.max(MAX_CONTROL_PAYLOAD_BYTES))
    }

    /// Whether a fragmented message is under way (for the transport's own bookkeeping).
    pub fn in_message(&self) -> bool {
        self.partial.is_some()
    }

    /// Reads the frame at the start of `buf` (unmasking it in place; the caller drops
    /// `consumed` bytes before the next call). Cost: one pass over the payload to unmask,
    /// one copy into the message, one UTF-8 check of each text byte. After
    /// [`Step::Invalid`] the stream is over: send the close frame and stop reading.
    pub fn read(&mut self, buf: &mut [u8]) -> Step {
        let head = match frame::header(buf) {
            Err(code) => return Step::Invalid(code),
            // Normal flow: the rest of the header is still on the wire.
            Ok(None) => return Step::Partial,
            Ok(Some(head)) => head,
        };
        let room = match self.sequence(&head) {
            Ok(room) => room,
            Err(code) => return Step::Invalid(code),
        };
        let frame = match frame::payload(buf, &head, room) {
            Decoded::Complete(frame) => frame,
            // Normal flow: the payload is still on the wire (and within the cap).
            Decoded::Partial => return Step::Partial,
            Decoded::Invalid(code) => return Step::Invalid(code),
        };
        let payload = &buf[frame.payload.clone()];
        match self.take(frame.opcode, frame.fin, payload) {
            Ok(event) => Step::Took {
                consumed: frame.consumed,
                event,
            },
            Err(code) => Step::Invalid(code),
        }
    }

    /// Whether this frame may come now, and if so how many payload bytes it may carry.
    fn sequence(&self, head: &Header) -> Result<usize, CloseCode> {
        match (head.opcode, &self.partial) {
            (op, _) if op.is_control() => Ok(MAX_CONTROL_PAYLOAD_BYTES),
            // A continuation with nothing to continue, or a new message before the last
            // one's final fragment (RFC 6455 §5.4).
            (Opcode::Continuation, None) | (Opcode::Text | Opcode::Binary, Some(_)) => {
                Err(CloseCode::PROTOCOL_ERROR)
            }
            (Opcode::Continuation, Some(partial)) => {
                Ok(self.max_message_bytes.saturating_sub(partial.bytes.len()))
            }
            _ => Ok(self.max_message_bytes),
        }
    }

    /// Folds one whole, in-sequence frame into the message state.
    fn take(
        &mut self,
        opcode: Opcode,
        fin: bool,
        payload: &[u8],
    ) -> Result<Option<Event>, CloseCode> {
        let event = match opcode {
            Opcode::Ping => Event::Ping(payload.to_vec()),
            Opcode::Pong => Event::Pong(payload.to_vec()),
            Opcode::Close => Event::Close(close_payload(payload)?),
            Opcode::Text if fin => Event::Text(utf8(payload.to_vec())?),
            Opcode::Binary if fin => Event::Binary(payload.to_vec()),
            Opcode::Text | Opcode::Binary => {
                let mut partial = Fragmented {
                    text: opcode == Opcode::Text,
                    bytes: payload.to_vec(),
                    checked: 0,
                };
                partial.check()?;
                self.partial = Some(partial);
                return Ok(None);
            }
            Opcode::Continuation => {
                let Some(mut partial) = self.partial.take() else {
                    // sequence() refused this already; stay safe if it ever does not.
                    return Err(CloseCode::PROTOCOL_ERROR);
                };
                partial.bytes.extend_from_slice(payload);
                partial.check()?;
                if !fin {
                    self.partial = Some(partial);
                    return Ok(None);
                }
                if partial.text {
                    Event::Text(utf8(partial.bytes)?)
                } else {
                    Event::Binary(partial.bytes)
                }
            }
        };
        Ok(Some(event))
    }
}

impl Fragmented {
    /// Fails fast on text that can never become UTF-8, whatever fragments follow; a code
    /// point cut at the end of this fragment is left for the next one to finish.
    fn check(&mut self) -> Result<(), CloseCode> {
        if !self.text {
            return Ok(());
        }
        match std::str::from_utf8(&self.bytes[self.checked..]) {
            Ok(_) => self.checked = self.bytes.len(),
            Err(e) if e.error_len().is_none() => self.checked += e.valid_up_to(),
            Err(_) => return Err(CloseCode::INVALID_DATA),
        }
        Ok(())
    }
}

/// A whole text message's bytes as a `String`, or 1007. For a fragmented message this
/// checks once more what `check()` saw in pieces (one more pass, in exchange for no
/// `unsafe`), and catches a code point the final fragment left unfinished.
fn utf8(bytes: Vec<u8>) -> Result<String, CloseCode> {
    String::from_utf8(bytes).map_err(|_| CloseCode::INVALID_DATA)
}

/// A close frame's payload: empty, or a 2-byte code a peer may send and a UTF-8 reason.
fn close_payload(payload: &[u8]) -> Result<Option<Close>, CloseCode> {
    let (code, reason) = match payload {
        [] => return Ok(None),
        [hi, lo, reason @ ..] => (CloseCode(u16::from_be_bytes([*hi, *lo])), reason),
        // One byte is half a code.
        [_] => return Err(CloseCode::PROTOCOL_ERROR),
    };
    if !code.valid_on_wire() {
        return Err(CloseCode::PROTOCOL_ERROR);
    }
    let reason = std::str::from_utf8(reason).map_err(|_| CloseCode::INVALID_DATA)?;
    Ok(Some(Close {
        code,
        reason: reason.to_owned(),
    }))
}
