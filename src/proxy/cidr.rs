//! One network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, or a bare address, which is
//! a network of one), and whether an address is in it. A few lines of bit arithmetic, so
//! no crate: `ipnet` would do it too, with a dozen types, iterators and subnet arithmetic
//! around the two operations `--trusted-proxy` needs, parse and contains.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A network: its first address and how many leading bits every member shares.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network's address as 128 bits (IPv4 in the low 32), host bits cleared, so that
    /// membership is one mask and one compare.
    network: u128,
    /// Leading bits that must match: 0 to 32 for IPv4, 0 to 128 for IPv6.
    prefix: u8,
    /// IPv4 or IPv6: a network of one family never holds an address of the other (an
    /// IPv4-mapped IPv6 address counts as the IPv4 address it is, see [`Cidr::contains`]).
    v4: bool,
}

impl Cidr {
    /// Whether `addr` is in this network. An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`,
    /// how a dual-stack listener sees an IPv4 peer) is matched as its IPv4 address.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let (bits, v4) = match addr.to_canonical() {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), true),
            IpAddr::V6(v6) => (u128::from(v6), false),
        };
        v4 == self.v4 && bits & self.mask() == self.network
    }

    /// The prefix's mask, over the family's width (IPv4: the low 32 bits).
    fn mask(&self) -> u128 {
        match (self.v4, u32::from(self.prefix)) {
            (_, 0) => 0,
            (true, p) => u128::from(u32::MAX << (32 - p)),
            (false, p) => u128::MAX << (128 - p),
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDRESS` or `ADDRESS/PREFIX`. Host bits set below the prefix (`10.1.2.3/8`) are an
    /// error rather than silently cleared: such a typo usually means a wrong prefix, and
    /// trusting a network far larger than meant is the mistake that matters here.
    fn from_str(text: &str) -> Result<Cidr, String> {
        let wrong =
            || format!("'{text}' is not an address or a network like 10.0.0.0/8 or fd00::/8");
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| wrong())?;
        let (bits, v4, width) = match addr {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), true, 32),
            IpAddr::V6(v6) => (u128::from(v6), false, 128),
        };
        let prefix = match prefix {
            None => width,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= width)
                .ok_or_else(wrong)?,
            Some(_) => return Err(wrong()),
        };
        let cidr = Cidr {
            network: bits,
            prefix,
            v4,
        };
        if bits & !cidr.mask() != 0 {
            return Err(format!(
                "'{text}' has bits set past its /{prefix}; did you mean {}?",
                Cidr {
                    network: bits & cidr.mask(),
                    ..cidr
                }
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = if self.v4 {
            IpAddr::from((self.network as u32).to_be_bytes())
        } else {
            IpAddr::from(self.network.to_be_bytes())
        };
        write!(f, "{addr}/{}", self.prefix)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_hold_what_their_prefix_says() {
        let cases = [
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("192.168.1.0/24", "::ffff:192.168.1.9", true),
            ("0.0.0.0/0", "203.0.113.5", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::1", "::1", true),
            ("::/0", "fe80::1", true),
            ("::/0", "10.0.0.1", false),
            ("fd00::/8", "fdff::1", true),
            ("172.16.0.0/12", "172.31.255.255", true),
            ("172.16.0.0/12", "172.32.0.0", false),
        ];
        for (cidr, addr, inside) in cases {
            let parsed: Cidr = cidr.parse().unwrap_or_else(|e| panic!("{cidr}: {e}"));
            assert_eq!(parsed.contains(ip(addr)), inside, "{addr} in {cidr}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "localhost",
            "10.0.0.0/8/8",
            "[::1]/128",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} was accepted");
        }
        let err = "10.1.2.3/8".parse::<Cidr>().unwrap_err();
        assert!(err.contains("10.0.0.0/8"), "{err}");
        let err = "2001:db8::1/32".parse::<Cidr>().unwrap_err();
        assert!(err.contains("2001:db8::/32"), "{err}");
    }

    #[test]
    fn shown_as_typed() {
        for text in [
            "10.0.0.0/8",
            "127.0.0.1/32",
            "2001:db8::/32",
            "::/0",
            "0.0.0.0/0",
        ] {
            assert_eq!(text.parse::<Cidr>().unwrap().to_string(), text);
        }
    }
}
