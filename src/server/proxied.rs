//! Who the client is behind a trusted proxy ([`crate::proxy`]): the PROXY header a
//! connection starts with (`--proxy-protocol`), or each request's `X-Forwarded-For`. The
//! client found takes the connection's place in the table of addresses
//! ([`crate::clients::Clients::moved`]), so every per-client limit after it (post and
//! typing rates, names, rooms, and `/stats`' count of addresses) counts that client
//! without knowing a proxy exists. Nothing here is read from a peer that is not trusted.
//!
//! The connection cap per client (`--max-conns-per-client`) is checked at accept, before
//! anyone is named, so it is not applied to a trusted proxy's address (every visitor's
//! connections come from it). With the PROXY protocol it is checked again once the header
//! names the client, one client per connection. With `X-Forwarded-For` it is not: one
//! upstream keep-alive connection carries many clients' requests in turn, and an idle one
//! still counts for whoever used it last, so a count would refuse the wrong people; the
//! proxy, which sees one client per connection, caps them (docs/DEPLOY.md: nginx's
//! `limit_conn`).

use super::Server;
use crate::answer;
use crate::conn::Flags;
use crate::outgoing::Response;
use crate::proxy::protocol::{self, Header};
use crate::stats;
use std::net::IpAddr;

impl Server {
    /// At accept: what trusting the peer at `addr` makes of its connection.
    pub(super) fn proxy_flags(&self, addr: IpAddr) -> Flags {
        let mut flags = Flags::default();
        if self.config.trusted_proxies.contains(addr) {
            flags.set(Flags::PROXIED, true);
            flags.set(Flags::PROXY_HEADER_DUE, self.config.proxy_protocol);
        }
        flags
    }

    /// With `--proxy-protocol`, a trusted peer's connection: takes the PROXY header off the
    /// front of its input, and the client it names. Returns whether requests may be read
    /// now; false while the header is partial (the request timer bounds the wait, as for
    /// a request head), and when the connection is closed (a broken header) or refused
    /// (the client holds `--max-conns-per-client` connections).
    pub(super) fn take_proxy_header(&mut self, key: usize) -> bool {
        let conn = &mut self.conns[key];
        let (source, consumed) = match protocol::parse(&conn.input) {
            // Normal flow: the rest of the header is on the wire.
            Header::Partial => return false,
            Header::Invalid(why) => {
                // Nothing after it can be trusted to start anywhere: no answer, just close.
                log::debug!("#{key} {}: {why}; closing", conn.peer());
                self.close(key);
                return false;
            }
            Header::Complete { source, consumed } => (source, consumed),
        };
        conn.flags.set(Flags::PROXY_HEADER_DUE, false);
        conn.input.drain(..consumed);
        let Some(source) = source else {
            // The proxy's own connection (a health check): the proxy is the client.
            conn.flags.set(Flags::PROXIED, false);
            return true;
        };
        let per_client = self.config.max_conns_per_client;
        if per_client > 0 && self.chat.clients().connections_from(source) as usize >= per_client {
            stats::add(&self.stats.refused_per_client, 1);
            log::debug!("#{key} refusing {source}: it holds {per_client} connections");
            let response = Response::Owned(answer::too_many_connections());
            self.respond(key, response, true);
            return false;
        }
        conn.client = self.chat.clients_mut().moved(conn.client, source);
        true
    }

    /// A request from a trusted proxy without `--proxy-protocol`: its client is the one
    /// its `X-Forwarded-For` names, or, with none named, the proxy itself. Called for each
    /// request, since one upstream connection carries many clients' requests in turn.
    pub(super) fn forwarded(&mut self, key: usize, forwarded_for: Option<&str>) {
        let named =
            forwarded_for.and_then(|list| self.config.trusted_proxies.forwarded_client(list));
        let conn = &mut self.conns[key];
        // The peer's address again, with a system call: only for a trusted proxy's request
        // that names nobody, which nginx as configured in docs/DEPLOY.md never sends.
        let Some(addr) = named.or_else(|| conn.socket.peer_addr().ok().map(|peer| peer.ip()))
        else {
            return; // gone: the connection is about to close anyway
        };
        conn.client = self.chat.clients_mut().moved(conn.client, addr);
    }

    /// The client's address for log lines: the one a trusted proxy named (an IPv6 client
    /// by its /64, as the limits count it), or the peer's address and port (a system call,
    /// so only when logging).
    pub(super) fn client_name(&self, key: usize) -> String {
        let conn = &self.conns[key];
        match conn.flags.has(Flags::PROXIED) {
            true => self.chat.clients().address(conn.client).to_string(),
            false => conn.peer(),
        }
    }
}
