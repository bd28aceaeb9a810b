//! WebSocket (RFC 6455, version 13) without a socket: bytes in, frames and messages out,
//! as [`crate::http`] does for HTTP. The transport that owns the socket feeds what it read
//! to an [`Assembler`] and carries out what comes back; nothing here reads a clock or
//! touches a connection, so every rule below is a table test.
//!
//! - `frame.rs` — one frame ↔ bytes: [`decode()`] with three outcomes ([`Decoded`]:
//!   complete, partial, invalid with the close code to send) and [`encode()`] for the
//!   server's own (unmasked) frames.
//! - `message.rs` — frames → messages: the [`Assembler`] joins fragments, lets control
//!   frames through between them, checks UTF-8 and close payloads, and caps a message's
//!   size from each frame's header, before its payload is buffered.
//! - `handshake.rs` — the key and version checks and `Sec-WebSocket-Accept`.
//!
//! What a client can cost: it never makes the connection buffer more than
//! [`Assembler::input_bytes_cap()`] of input (14 bytes of header plus the message cap), nor
//! the assembler hold more than the message cap; each input byte is unmasked once, copied
//! once and (text) checked as UTF-8 at most twice.
//!
//! ## The Autobahn testsuite, ported
//!
//! The Autobahn testsuite (the reference conformance test, which needs Python 2 and so
//! cannot run here) drives a live server. Its cases that judge what a server's *codec* must
//! accept or refuse are table tests in `autobahn.rs`, named after them:
//!
//! - 1.1.1–1.1.8, 1.2.1–1.2.8: text and binary payloads of 0, 125, 126, 127, 128, 65535
//!   and 65536 bytes (7- 16- and 64-bit lengths), also fed in 997-byte chops.
//! - 2.1–2.8: pings and pongs, empty, text, binary, 125 bytes, 126 bytes (1002), chopped
//!   into 1-byte pieces, unsolicited pongs.
//! - 3.1–3.7: each reserved bit and combinations, on text, binary, ping and close (1002),
//!   after a valid frame that must still come through.
//! - 4.1.1–4.1.5, 4.2.1–4.2.5: reserved opcodes 3–7 and 11–15, with and without payload.
//! - 5.1–5.20: fragmented pings and pongs, fragmented text with pings between the
//!   fragments, continuations with nothing to continue, a new message inside a fragmented
//!   one, all also fed one byte at a time.
//! - 6.1–6.23: every UTF-8 case (the empty text, valid text split at every byte, code
//!   points split across fragments, the boundary code points, overlongs, surrogates,
//!   unexpected continuation bytes, lonely start bytes, truncated sequences, fe/ff,
//!   noncharacters that are valid) (1007), invalid text failing as soon as the fragment
//!   that makes it invalid arrives (6.4.1, 6.4.2).
//! - 7.3.1–7.3.6, 7.5.1, 7.7.1–7.7.13, 7.9.1–7.9.9, 7.13.1–7.13.2: close payloads: empty,
//!   1 byte (1002), code only, code and reason, 123- and 124-byte reasons (1002), an
//!   invalid UTF-8 reason (1007), each valid and invalid code.
//! - 9.1–9.6, as limits: messages and fragmented messages just at and one byte over the
//!   cap; over it is refused (1009) from the header alone, with none of the payload sent.
//!
//! Left out, and why: 1.x and 9.x as *echo* and *throughput* (a codec test checks decoding,
//! 64 KiB–16 MiB round trips belong to the transport's tests and the load bench); 2.10,
//! 2.11 and 7.1.x (answering pings in order, what follows a close: the transport decides
//! what to send and when to stop reading); 6.4.3 and 6.4.4 (failing *within* a frame whose
//! payload is still arriving: we judge a frame's text once it is whole, at most the
//! message cap later, which Autobahn grades "non-strict"); 9.7, 9.8 (round-trip time: not a
//! thing to assert); 10 (auto-fragmentation: we send each message as one frame); 12, 13
//! (permessage-deflate: no extension is negotiated, which is why any reserved bit is 1002).

mod frame;
mod handshake;
mod message;

#[cfg(test)]
mod autobahn;
#[cfg(test)]
mod tests;

pub use frame::MAX_SERVER_HEADER_BYTES;
pub use frame::{decode, encode, encode_close, encode_into, header};
pub use frame::{CloseCode, Decoded, Frame, Header, Opcode, ServerHeader};
pub use frame::{MAX_CLOSE_REASON_BYTES, MAX_CONTROL_PAYLOAD_BYTES, MAX_HEADER_BYTES};
pub use handshake::{accept, accept_key, valid_key, Refusal, KEY_BYTES, VERSION};
pub use message::{Assembler, Close, Event, Step};
