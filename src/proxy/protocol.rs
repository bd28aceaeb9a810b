//! The PROXY protocol header (HAProxy's `send-proxy` / `send-proxy-v2`, nginx's
//! `proxy_protocol on` in its stream module): what a TCP proxy writes before the client's
//! first byte to say whose connection this is. Both versions, parsed from whatever the
//! connection has buffered, with the three outcomes every parser here has: a complete
//! header, a partial one (normal flow: the rest is on the wire), or an invalid one, after
//! which the connection is closed (its bytes cannot be trusted to start anywhere).
//!
//! Version 1 is one text line, at most [`V1_MAX_BYTES`]:
//!
//! ```text
//! PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n      (or TCP6; or "PROXY UNKNOWN ...\r\n")
//! ```
//!
//! Version 2 is binary: a 12-byte signature, a version/command byte, a family/transport
//! byte, a big-endian length, then that many bytes (the addresses, then optional TLVs,
//! which we skip):
//!
//! ```text
//! \r\n\r\n\0\r\nQUIT\n | 0x2C (v2, PROXY) or 0x20 (LOCAL) | 0x11 (TCP/IPv4) or 0x21 (TCP/IPv6) | len
//! ```
//!
//! Source: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The v1 line's length at most, CRLF included, as the specification sets it: a receiver
/// that has this many bytes and no CRLF has an invalid header, not a partial one.
pub const V1_MAX_BYTES: usize = 107;

/// A v2 header's length at most, the 16 fixed bytes included. The format allows 64 KiB of
/// TLVs; what proxies send (an SSL summary, a unique id, an authority) is well under 1 KiB.
/// Past this the connection is closed rather than made to hold 64 KiB before its first
/// request: a header is held whole before it is parsed. It is also no more than the
/// smallest `--max-head`, so the connection's input cap never stops such a header arriving.
pub const V2_MAX_BYTES: usize = 1024;

/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The v1 prefix.
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// What the start of a connection's input says.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// A whole header of `consumed` bytes. `source`: the client's address; `None` when the
    /// proxy says the connection is its own (v2 `LOCAL`, v1 `UNKNOWN`, a v2 family we do
    /// not route by, such as a Unix socket), and then the proxy's address counts.
    Complete {
        /// The client's address, if the header names one.
        source: Option<IpAddr>,
        /// Bytes of the header; the first request starts after them.
        consumed: usize,
    },
    /// Not all of the header is here yet; nothing is wrong.
    Partial,
    /// Not a PROXY header, or a broken one: why, for the log.
    Invalid(&'static str),
}

/// Parses the PROXY header at the start of `buf` (either version).
pub fn parse(buf: &[u8]) -> Header {
    let n = buf.len();
    if buf.starts_with(V2_SIGNATURE) {
        return parse_v2(buf);
    }
    if buf.starts_with(V1_PREFIX) {
        return parse_v1(buf);
    }
    // Too short to tell yet, but so far a prefix of one of them.
    if n < V2_SIGNATURE.len() && (V2_SIGNATURE.starts_with(buf) || V1_PREFIX.starts_with(buf)) {
        return Header::Partial;
    }
    Header::Invalid("no PROXY header")
}

fn parse_v1(buf: &[u8]) -> Header {
    let window = &buf[..buf.len().min(V1_MAX_BYTES)];
    let Some(cr) = window.windows(2).position(|pair| pair == b"\r\n") else {
        return match buf.len() >= V1_MAX_BYTES {
            true => Header::Invalid("PROXY v1 line longer than 107 bytes"),
            false => Header::Partial,
        };
    };
    let consumed = cr + 2;
    let Ok(line) = std::str::from_utf8(&buf[V1_PREFIX.len()..cr]) else {
        return Header::Invalid("PROXY v1 line is not text");
    };
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or_default();
    if family == "UNKNOWN" {
        // The rest of the line, if any, is to be ignored (the specification says so).
        return Header::Complete {
            source: None,
            consumed,
        };
    }
    let (Some(source), Some(dest), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Header::Invalid("PROXY v1 line does not have five fields");
    };
    let addresses = match family {
        "TCP4" => source
            .parse::<Ipv4Addr>()
            .ok()
            .zip(dest.parse::<Ipv4Addr>().ok())
            .map(|(s, _)| IpAddr::V4(s)),
        "TCP6" => source
            .parse::<Ipv6Addr>()
            .ok()
            .zip(dest.parse::<Ipv6Addr>().ok())
            .map(|(s, _)| IpAddr::V6(s)),
        _ => return Header::Invalid("PROXY v1 family is not TCP4, TCP6 or UNKNOWN"),
    };
    let Some(source) = addresses else {
        return Header::Invalid("PROXY v1 address does not match its family");
    };
    if !(port(sport) && port(dport)) {
        return Header::Invalid("PROXY v1 port is not a number from 0 to 65535");
    }
    Header::Complete {
        source: Some(source),
        consumed,
    }
}

/// A v1 port: digits only (no sign, no spaces), 0 to 65535.
fn port(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && text.parse::<u16>().is_ok()
}

fn parse_v2(buf: &[u8]) -> Header {
    /// Signature, version/command, family/transport, length.
    const FIXED: usize = 16;
    if buf.len() < FIXED {
        return Header::Partial;
    }
    let version = buf[12] >> 4;
    let command = buf[12] & 0x0f;
    let family = buf[13] >> 4;
    let length = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if version != 2 {
        return Header::Invalid("PROXY v2 header with a version other than 2");
    }
    if command > 1 {
        return Header::Invalid("PROXY v2 command is neither LOCAL nor PROXY");
    }
    let consumed = FIXED + length;
    if consumed > V2_MAX_BYTES {
        return Header::Invalid("PROXY v2 header longer than we hold");
    }
    // The address block's size for the family: the header must hold at least that.
    let needed = match family {
        0 => 0,   // AF_UNSPEC
        1 => 12,  // AF_INET: two addresses of 4 bytes, two ports
        2 => 36,  // AF_INET6: two addresses of 16 bytes, two ports
        3 => 216, // AF_UNIX: two paths of 108 bytes
        _ => return Header::Invalid("PROXY v2 family is unknown"),
    };
    if length < needed {
        return Header::Invalid("PROXY v2 length is shorter than its addresses");
    }
    if buf.len() < consumed {
        return Header::Partial;
    }
    let block = &buf[FIXED..consumed];
    // LOCAL: the proxy's own connection (a health check); its addresses mean nothing.
    let source = match (command, family) {
        (1, 1) => {
            let octets: [u8; 4] = block[..4].try_into().unwrap_or_default();
            Some(IpAddr::from(octets))
        }
        (1, 2) => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&block[..16]);
            Some(IpAddr::from(octets))
        }
        _ => None,
    };
    Header::Complete { source, consumed }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 header: `command` (0 LOCAL, 1 PROXY), `family_transport`, address block, TLVs.
    pub(crate) fn v2(command: u8, family_transport: u8, block: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family_transport);
        header.extend_from_slice(&(block.len() as u16).to_be_bytes());
        header.extend_from_slice(block);
        header
    }

    fn v2_tcp4(source: [u8; 4], tlvs: &[u8]) -> Vec<u8> {
        let mut block = source.to_vec();
        block.extend_from_slice(&[192, 0, 2, 1]);
        block.extend_from_slice(&51234u16.to_be_bytes());
        block.extend_from_slice(&443u16.to_be_bytes());
        block.extend_from_slice(tlvs);
        v2(1, 0x11, &block)
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn complete(source: Option<IpAddr>, consumed: usize) -> Header {
        Header::Complete { source, consumed }
    }

    #[test]
    fn v1_complete() {
        let cases: &[(&str, Option<IpAddr>)] = &[
            (
                "PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n",
                ip("203.0.113.7"),
            ),
            (
                "PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n",
                ip("2001:db8::7"),
            ),
            ("PROXY UNKNOWN\r\n", None),
            (
                "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
                None,
            ),
        ];
        for &(line, source) in cases {
            let mut input = line.as_bytes().to_vec();
            input.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(parse(&input), complete(source, line.len()), "{line:?}");
        }
        // The longest line the specification allows is still one line.
        let longest = format!("PROXY UNKNOWN {}\r\n", "x".repeat(V1_MAX_BYTES - 16));
        assert_eq!(longest.len(), V1_MAX_BYTES);
        assert_eq!(parse(longest.as_bytes()), complete(None, V1_MAX_BYTES));
    }

    #[test]
    fn v2_complete() {
        let tcp4 = v2_tcp4([203, 0, 113, 7], &[]);
        assert_eq!(parse(&tcp4), complete(ip("203.0.113.7"), 28));
        // TLVs after the addresses are skipped, and the request after them is not eaten.
        let mut with_tlvs = v2_tcp4([198, 51, 100, 2], &[0x05, 0x00, 0x02, b'i', b'd']);
        let len = with_tlvs.len();
        with_tlvs.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(parse(&with_tlvs), complete(ip("198.51.100.2"), len));
        let mut block = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        block.extend_from_slice(&[0; 16 + 4]);
        assert_eq!(parse(&v2(1, 0x21, &block)), complete(ip("2001:db8::7"), 52));
        // LOCAL (a health check), UNSPEC and Unix sockets: the proxy's own address counts.
        assert_eq!(parse(&v2(0, 0x11, &[0; 12])), complete(None, 28));
        assert_eq!(parse(&v2(1, 0x00, &[])), complete(None, 16));
        assert_eq!(parse(&v2(1, 0x31, &[0; 216])), complete(None, 232));
    }

    /// Every prefix of a valid header is partial: a header may arrive a byte at a time.
    #[test]
    fn every_prefix_is_partial() {
        let headers = [
            b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n".to_vec(),
            v2_tcp4([203, 0, 113, 7], &[1, 0, 1, 0]),
        ];
        for header in headers {
            for end in 0..header.len() {
                assert_eq!(parse(&header[..end]), Header::Partial, "{end} bytes");
            }
            assert!(matches!(parse(&header), Header::Complete { .. }));
        }
    }

    #[test]
    fn invalid() {
        let too_long = format!("PROXY UNKNOWN {}", "x".repeat(V1_MAX_BYTES));
        let mut v3 = v2_tcp4([1, 2, 3, 4], &[]);
        v3[12] = 0x31;
        let mut command_2 = v2_tcp4([1, 2, 3, 4], &[]);
        command_2[12] = 0x22;
        let mut family_5 = v2_tcp4([1, 2, 3, 4], &[]);
        family_5[13] = 0x51;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"GET / HTTP/1.1\r\n\r\n".to_vec(), "HTTP instead"),
            (
                b"PROXY".to_vec().into_iter().chain(*b"\r\n").collect(),
                "no space",
            ),
            (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), "lower case"),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"
                    .to_vec()
                    .into_iter()
                    .chain([b'x'; 110])
                    .collect(),
                "LF only",
            ),
            (too_long.into_bytes(), "no CRLF in 107 bytes"),
            (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), "family"),
            (
                b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n".to_vec(),
                "v6 in TCP4",
            ),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n".to_vec(), "v4 in TCP6"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n".to_vec(), "port"),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n".to_vec(),
                "signed port",
            ),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n".to_vec(), "four fields"),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n".to_vec(),
                "six fields",
            ),
            (
                b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                "two spaces",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\xff\r\n".to_vec(),
                "not text",
            ),
            (v3, "version 3"),
            (command_2, "command 2"),
            (family_5, "family 5"),
            (v2(1, 0x11, &[0; 11]), "IPv4 block too short"),
            (v2(1, 0x21, &[0; 35]), "IPv6 block too short"),
            (v2(1, 0x11, &vec![0; V2_MAX_BYTES]), "longer than we hold"),
        ];
        for (input, what) in cases {
            assert!(
                matches!(parse(&input), Header::Invalid(_)),
                "{what}: {:?}",
                parse(&input)
            );
        }
    }
}
