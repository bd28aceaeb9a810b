//! Who the client is when a reverse proxy stands between it and us (`--trusted-proxy`,
//! `--proxy-protocol`). Every per-client limit counts an address; behind nginx, Caddy or
//! HAProxy the connection's address is the proxy's, shared by everyone. A proxy we trust
//! says whose request it carries, in one of two ways:
//!
//! - **`X-Forwarded-For`**, on every request (HTTP proxies): the client is the right-most
//!   address in the list that is not itself a trusted proxy, which is nginx's
//!   `real_ip_recursive on`. Everything left of it was written by someone we do not trust
//!   (the client may send any `X-Forwarded-For` it likes; a proxy appends to it), so it is
//!   never read. One upstream connection carries many clients' requests in turn, so the
//!   client is decided per request.
//! - **The PROXY protocol** ([`protocol`]), once, before the first request (TCP proxies,
//!   and nginx's `proxy_protocol`): one client per connection.
//!
//! Nothing any other peer says is believed: with no `--trusted-proxy`, no header is read.
//! What this costs: a trusted peer's `X-Forwarded-For` is one string per request, already
//! bounded by `--max-head`, walked from the right without allocating; a PROXY header is
//! at most [`protocol::V2_MAX_BYTES`], held before the first request like a request head.

pub mod cidr;
pub mod protocol;

pub use cidr::Cidr;
use std::net::{IpAddr, SocketAddr};

/// The networks whose connections may say who the client is (`--trusted-proxy`, any
/// number of times). Empty by default: then every client is the address it connects from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trusted(Vec<Cidr>);

impl Trusted {
    /// Trusts `network` too.
    pub fn add(&mut self, network: Cidr) {
        if !self.0.contains(&network) {
            self.0.push(network);
        }
    }

    /// Whether no network is trusted (no header is ever read).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `addr` is a trusted proxy. Linear in the networks given, which are a handful
    /// (the proxies' own addresses); it runs once per connection and once per hop of a
    /// trusted peer's `X-Forwarded-For`.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(addr))
    }

    /// The client an `X-Forwarded-For` value (several headers joined with commas, in
    /// order) names, sent by a trusted peer: the right-most address that is not trusted;
    /// if every one is trusted, the left-most (as nginx does). `None` when the list names
    /// no one, or the entry that would be the client is not an address (`unknown`, an
    /// obfuscated name, garbage): then the peer's own address counts, since nothing to
    /// its left can be trusted either.
    pub fn forwarded_client(&self, x_forwarded_for: &str) -> Option<IpAddr> {
        let mut found = None;
        // Empty elements (`a,,b`, a trailing comma) are allowed in HTTP lists and mean nothing.
        let hops = x_forwarded_for
            .rsplit(',')
            .map(str::trim)
            .filter(|hop| !hop.is_empty());
        for hop in hops {
            let addr = hop_address(hop)?;
            found = Some(addr);
            if !self.contains(addr) {
                break;
            }
        }
        found
    }
}

/// One hop of `X-Forwarded-For`: an address, or an address with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`), as some proxies write it.
fn hop_address(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(networks: &[&str]) -> Trusted {
        let mut t = Trusted::default();
        for n in networks {
            t.add(n.parse().unwrap());
        }
        t
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop() {
        let proxies = trusted(&["127.0.0.1", "10.0.0.0/8", "fd00::/8"]);
        let cases: &[(&str, Option<&str>)] = &[
            ("203.0.113.7", Some("203.0.113.7")),
            // nginx's $proxy_add_x_forwarded_for: whatever the client sent, then the client.
            ("1.1.1.1, 203.0.113.7", Some("203.0.113.7")),
            // A chain of our own proxies in front: skipped.
            ("203.0.113.7, 10.0.0.2, 10.1.1.1", Some("203.0.113.7")),
            ("198.51.100.1,203.0.113.7,fd00::5", Some("203.0.113.7")),
            // Two headers, joined in order.
            ("9.9.9.9, 198.51.100.4, 10.0.0.3", Some("198.51.100.4")),
            ("2001:db8::7", Some("2001:db8::7")),
            ("[2001:db8::7]:4711", Some("2001:db8::7")),
            ("203.0.113.7:4711", Some("203.0.113.7")),
            (" 203.0.113.7 ,, ", Some("203.0.113.7")),
            // Everyone trusted: the left-most.
            ("10.0.0.9, 127.0.0.1", Some("10.0.0.9")),
            // Forged junk left of the client is never read.
            ("<script>, 203.0.113.7", Some("203.0.113.7")),
            // Junk where the client should be: the peer counts.
            ("203.0.113.7, unknown", None),
            ("203.0.113.7, _hidden, 10.0.0.1", None),
            ("", None),
            (" , ", None),
        ];
        for &(header, client) in cases {
            let expected = client.map(|c| c.parse::<IpAddr>().unwrap());
            assert_eq!(proxies.forwarded_client(header), expected, "{header:?}");
        }
    }

    #[test]
    fn trust_is_by_network() {
        let proxies = trusted(&["10.0.0.0/8", "::1"]);
        assert!(proxies.contains("10.9.8.7".parse().unwrap()));
        assert!(proxies.contains("::ffff:10.9.8.7".parse().unwrap()));
        assert!(proxies.contains("::1".parse().unwrap()));
        assert!(!proxies.contains("127.0.0.1".parse().unwrap()));
        assert!(!Trusted::default().contains("127.0.0.1".parse().unwrap()));
        assert!(Trusted::default().is_empty());
    }
}
