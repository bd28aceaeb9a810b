//! The pure parts of the opening handshake (RFC 6455 §4.2): whether a request's
//! `Sec-WebSocket-Key` and `Sec-WebSocket-Version` are acceptable, and the
//! `Sec-WebSocket-Accept` that proves to the client that we read its key. Which path,
//! `Origin` and `Upgrade`/`Connection` headers are accepted is routing's business.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};

/// The only protocol version this server speaks (RFC 6455 §4.1); any other is refused
/// with 426 and a `Sec-WebSocket-Version: 13` header.
pub const VERSION: &str = "13";

/// A `Sec-WebSocket-Key` is a random 16-byte nonce, base64-encoded (24 characters).
pub const KEY_BYTES: usize = 16;

/// The GUID every server appends to the key before hashing it (RFC 6455 §1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request's WebSocket headers are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `Sec-WebSocket-Version`, or not 13: answer 426 with `Sec-WebSocket-Version: 13`
    /// so the client can retry with a version we speak.
    Version,
    /// No `Sec-WebSocket-Key`, or not 16 bytes of canonical base64: answer 400.
    Key,
}

/// Checks the version and key headers (as sent, surrounding spaces allowed) and returns
/// the `Sec-WebSocket-Accept` value for the response. The version is judged first: a
/// client speaking another version may well send another kind of key.
pub fn accept(key: Option<&str>, version: Option<&str>) -> Result<String, Refusal> {
    if version.map(str::trim) != Some(VERSION) {
        return Err(Refusal::Version);
    }
    match key.map(str::trim) {
        Some(key) if valid_key(key) => Ok(accept_key(key)),
        _ => Err(Refusal::Key),
    }
}

/// Whether `key` is [`KEY_BYTES`] bytes in canonical, padded base64. The length is checked
/// before decoding, so a long header costs nothing.
pub fn valid_key(key: &str) -> bool {
    key.len() == 24
        && STANDARD
            .decode(key)
            .is_ok_and(|nonce| nonce.len() == KEY_BYTES)
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2 item 5.4).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_example_key_is_accepted_with_the_rfc_answer() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            accept(Some(" dGhlIHNhbXBsZSBub25jZQ== "), Some("13")),
            Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_owned())
        );
    }

    #[test]
    fn versions_other_than_13_are_refused_first() {
        for version in [
            None,
            Some(""),
            Some("8"),
            Some("12"),
            Some("13, 8"),
            Some("14"),
        ] {
            assert_eq!(
                accept(Some("dGhlIHNhbXBsZSBub25jZQ=="), version),
                Err(Refusal::Version),
                "{version:?}"
            );
        }
        assert_eq!(accept(None, Some("7")), Err(Refusal::Version));
    }

    #[test]
    fn keys_must_be_sixteen_bytes_of_canonical_base64() {
        let bad = [
            "",
            "dGhlIHNhbXBsZSBub25jZQ",     // unpadded
            "dGhlIHNhbXBsZSBub25jZR==",   // non-canonical trailing bits
            "dGhlIHNhbXBsZSBub25jZQ==AA", // 18 bytes
            "dGhlIHNhbXBsZSBub24=",       // 14 bytes
            "dGhlIHNhbXBsZSBub25j!Q==",   // not base64
            "dGhlIHNhbXBsZSBub25jZQ-_",   // base64url alphabet
        ];
        for key in bad {
            assert!(!valid_key(key), "{key:?}");
            assert_eq!(accept(Some(key), Some("13")), Err(Refusal::Key), "{key:?}");
        }
        assert_eq!(accept(None, Some("13")), Err(Refusal::Key));
        assert!(valid_key("AAAAAAAAAAAAAAAAAAAAAA=="));
    }
}
