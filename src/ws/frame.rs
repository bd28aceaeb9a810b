//! One WebSocket frame (RFC 6455 §5.2) ↔ bytes: [`decode()`] reads a client's frame from
//! the connection's buffer, [`encode()`] spells a server's frame. Sans-I/O, like
//! [`crate::http`]: bytes in, and out one of three outcomes, [`Decoded`].
//!
//! A frame on the wire:
//!
//! ```text
//!  byte 0: FIN RSV1 RSV2 RSV3 opcode(4)
//!  byte 1: MASK len7(7)           len7 ≤ 125: the length; 126: 16-bit length follows;
//!                                 127: 64-bit length follows (top bit 0)
//!  [2 or 8 bytes extended length, network order]
//!  [4 bytes masking key]          every client frame has one; no server frame does
//!  payload                        client: XOR-ed with the key, byte i with key[i % 4]
//! ```
//!
//! Everything that makes a frame invalid is visible in its first 14 bytes, so a frame is
//! judged (and a too-large one refused) before a byte of its payload is waited for.

use std::ops::Range;

/// The longest frame header a client may send: 2 bytes, 8 of extended length, 4 of mask.
/// A header is always judged once this many bytes are buffered.
pub const MAX_HEADER_BYTES: usize = 14;

/// The longest header a server frame has: no mask, so 2 + 8 bytes.
pub const MAX_SERVER_HEADER_BYTES: usize = 10;

/// A control frame's payload may be at most this long (RFC 6455 §5.5), so that a ping can
/// always be answered between two fragments of a large message.
pub const MAX_CONTROL_PAYLOAD_BYTES: usize = 125;

/// A close frame's reason may be at most this long: the control cap less the 2-byte code.
pub const MAX_CLOSE_REASON_BYTES: usize = MAX_CONTROL_PAYLOAD_BYTES - 2;

/// A status code in a close frame (RFC 6455 §7.4). The constants are the ones this server
/// sends; [`CloseCode::valid_on_wire()`] says which a peer may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the server is going away (shutdown).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol (framing, masking, sequencing, close payload).
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a kind of message we do not accept (binary, where we speak JSON text).
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1007: a text message (or a close reason) that is not UTF-8.
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    /// 1008: a message against policy (for example an expired token).
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a frame or message larger than we accept.
    pub const TOO_BIG: CloseCode = CloseCode(1009);

    /// Whether a peer may put this code in a close frame. 1004 is reserved, 1005 and 1006
    /// mean "no code" and "no close frame" and exist only inside an endpoint, 1015 is for a
    /// failed TLS handshake: none may be sent. 1012–1014 were registered with IANA after
    /// RFC 6455 (restart, try again later, bad gateway); 3000–4999 are for libraries and
    /// applications. Anything else below 5000 is unassigned, and 5000 and up do not exist.
    pub fn valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// The kind of a frame. Opcodes 3–7 and 11–15 are reserved: a frame with one is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    /// 0: the next fragment of the message under way.
    Continuation,
    /// 1: the first (or only) frame of a UTF-8 text message.
    Text,
    /// 2: the first (or only) frame of a binary message.
    Binary,
    /// 8: close, with an optional code and reason.
    Close,
    /// 9: ping; answered by a pong with the same payload.
    Ping,
    /// 10: pong; unsolicited ones are allowed (a heartbeat) and ignored.
    Pong,
}

impl Opcode {
    /// The opcode a frame's low nibble names, or `None` for a reserved one.
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            10 => Opcode::Pong,
            _ => return None,
        })
    }

    /// The four bits that name this opcode on the wire.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0,
            Opcode::Text => 1,
            Opcode::Binary => 2,
            Opcode::Close => 8,
            Opcode::Ping => 9,
            Opcode::Pong => 10,
        }
    }

    /// Close, ping and pong: never fragmented, at most [`MAX_CONTROL_PAYLOAD_BYTES`], and
    /// allowed between the fragments of a message.
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// What a frame's header says, read before any of its payload is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The last frame of its message (always set on a control frame).
    pub fin: bool,
    /// What kind of frame this is.
    pub opcode: Opcode,
    /// The payload's length as declared; a client controls it, so it is judged against a
    /// cap before it is ever used as a size.
    pub payload_bytes: u64,
    /// The client's masking key.
    mask: [u8; 4],
    /// Where the payload starts: the header's own length, 6 to 14 bytes.
    header_bytes: usize,
}

/// The header at the start of `buf`: `Ok(None)` while it is not all here (normal flow),
/// `Err` with the close code for a header that can never be valid. Judges everything that
/// needs no state: reserved bits, opcode, mask, control-frame rules, length encoding.
pub fn header(buf: &[u8]) -> Result<Option<Header>, CloseCode> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    // No extension is ever negotiated, so no reserved bit may be set (§5.2).
    if b0 & 0x70 != 0 {
        return Err(CloseCode::PROTOCOL_ERROR);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = Opcode::from_bits(b0 & 0x0f).ok_or(CloseCode::PROTOCOL_ERROR)?;
    // A server must close on an unmasked client frame (§5.1): masking is what keeps a
    // script from steering the bytes an intermediary cache sees.
    if b1 & 0x80 == 0 {
        return Err(CloseCode::PROTOCOL_ERROR);
    }
    let len7 = b1 & 0x7f;
    if opcode.is_control() && (!fin || usize::from(len7) > MAX_CONTROL_PAYLOAD_BYTES) {
        return Err(CloseCode::PROTOCOL_ERROR);
    }
    let (payload_bytes, length_bytes) = match len7 {
        126 => {
            let Some(&[a, b]) = buf.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([a, b])), 2)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut be = [0; 8];
            be.copy_from_slice(bytes);
            (u64::from_be_bytes(be), 8)
        }
        short => (u64::from(short), 0),
    };
    // §5.2: the top bit of a 64-bit length must be 0, and "the minimal number of bytes
    // MUST be used": a length spelled longer than needed is a sender we do not trust.
    let minimal = match length_bytes {
        2 => payload_bytes >= 126,
        8 => payload_bytes > u64::from(u16::MAX) && payload_bytes >> 63 == 0,
        _ => true,
    };
    if !minimal {
        return Err(CloseCode::PROTOCOL_ERROR);
    }
    let header_bytes = 2 + length_bytes + 4;
    let Some(key) = buf.get(2 + length_bytes..header_bytes) else {
        return Ok(None);
    };
    let mut mask = [0; 4];
    mask.copy_from_slice(key);
    Ok(Some(Header {
        fin,
        opcode,
        payload_bytes,
        mask,
        header_bytes,
    }))
}

/// A whole client frame, its payload unmasked in place in the caller's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The last frame of its message.
    pub fin: bool,
    /// What kind of frame this is.
    pub opcode: Opcode,
    /// Where the (unmasked) payload lies in the buffer that was decoded.
    pub payload: Range<usize>,
    /// How many bytes of the buffer this frame used; the next frame starts here.
    pub consumed: usize,
}

/// The outcome of decoding what a connection has buffered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole frame is in the buffer.
    Complete(Frame),
    /// More bytes are needed; nothing is wrong.
    Partial,
    /// The stream can never become valid: send a close frame with this code and close.
    Invalid(CloseCode),
}

/// Decodes the frame at the start of `buf`, refusing a data frame whose payload would be
/// longer than `max_payload_bytes` from its header alone (1009), so a client can never make
/// the caller buffer more than [`MAX_HEADER_BYTES`] + `max_payload_bytes` (or + 125 for a
/// control frame) to reach a decision.
///
/// On [`Decoded::Complete`] the payload has been unmasked in place: the caller must drop
/// `consumed` bytes before decoding again, as decoding the same bytes twice would mask
/// them back.
pub fn decode(buf: &mut [u8], max_payload_bytes: usize) -> Decoded {
    match header(buf) {
        Err(code) => Decoded::Invalid(code),
        Ok(None) => Decoded::Partial,
        Ok(Some(head)) => payload(buf, &head, max_payload_bytes),
    }
}

/// The rest of [`decode()`] once the header is judged (the message assembler judges the
/// sequence of frames in between, from the header too).
pub(crate) fn payload(buf: &mut [u8], head: &Header, max_payload_bytes: usize) -> Decoded {
    // usize → u64 never truncates on the targets we build for; saturate to be sure.
    let cap = u64::try_from(max_payload_bytes).unwrap_or(u64::MAX);
    if !head.opcode.is_control() && head.payload_bytes > cap {
        return Decoded::Invalid(CloseCode::TOO_BIG);
    }
    // Fits in usize: at most max_payload_bytes, or 125 for a control frame.
    let len = usize::try_from(head.payload_bytes).unwrap_or(usize::MAX);
    let end = head.header_bytes.saturating_add(len);
    let Some(payload) = buf.get_mut(head.header_bytes..end) else {
        return Decoded::Partial;
    };
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= head.mask[i % 4];
    }
    Decoded::Complete(Frame {
        fin: head.fin,
        opcode: head.opcode,
        payload: head.header_bytes..end,
        consumed: end,
    })
}

/// The header of a server frame (final, unmasked) carrying `payload_bytes`: 2, 4 or 10
/// bytes, so a shared payload (one broadcast) can be written behind its own small header
/// without copying it per client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerHeader {
    /// The bytes, of which the first `len` are the header.
    bytes: [u8; MAX_SERVER_HEADER_BYTES],
    /// How many of `bytes` are used.
    len: usize,
}

impl ServerHeader {
    /// The header for a final frame of `opcode` with `payload_bytes` of payload.
    pub fn new(opcode: Opcode, payload_bytes: usize) -> ServerHeader {
        let mut bytes = [0; MAX_SERVER_HEADER_BYTES];
        bytes[0] = 0x80 | opcode.bits();
        let len = match payload_bytes {
            0..=125 => {
                bytes[1] = payload_bytes as u8; // ≤ 125: fits
                2
            }
            126..=0xffff => {
                bytes[1] = 126;
                bytes[2..4].copy_from_slice(&(payload_bytes as u16).to_be_bytes()); // ≤ 0xffff
                4
            }
            _ => {
                bytes[1] = 127;
                bytes[2..10].copy_from_slice(&(payload_bytes as u64).to_be_bytes());
                10
            }
        };
        ServerHeader { bytes, len }
    }

    /// The header's bytes, to write before the payload.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Appends a final, unmasked frame to `out`. A control frame's payload is cut to
/// [`MAX_CONTROL_PAYLOAD_BYTES`], as no peer would accept a longer one; the server's own
/// pings and pongs (an echo of a ping, itself at most 125 bytes) never reach that cut.
pub fn encode_into(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    let payload = if opcode.is_control() {
        &payload[..payload.len().min(MAX_CONTROL_PAYLOAD_BYTES)]
    } else {
        payload
    };
    out.extend_from_slice(ServerHeader::new(opcode, payload.len()).as_bytes());
    out.extend_from_slice(payload);
}

/// One final, unmasked server frame.
pub fn encode(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_SERVER_HEADER_BYTES + payload.len());
    encode_into(&mut out, opcode, payload);
    out
}

/// A close frame with `code` and `reason`, the reason cut at a character boundary to
/// [`MAX_CLOSE_REASON_BYTES`] so the frame stays valid whatever the caller passes.
pub fn encode_close(code: CloseCode, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CLOSE_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.0.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(Opcode::Close, &payload)
}
