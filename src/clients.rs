//! Who is on the other end, by address (an IPv6 client by its /64, as every per-client
//! limit counts it: [`crate::limits::client_key`]): how many connections each address holds, how
//! many presence names it has made, and how many rooms it gave their first message. Limits that must hold "per client" are counted here,
//! because one client can open many connections and a connection can make many names.
//!
//! An address has an entry while it holds a connection, a name or a room, and not a moment
//! longer, so the table is bounded by the connections, names and rooms the server holds
//! anyway. A
//! connection keeps its entry's id (4 bytes) rather than its address (up to 16). Behind a
//! trusted proxy a connection moves from the proxy's entry to the one of the client the
//! proxy names ([`Clients::moved`]), and on to the next request's client.

use slab::Slab;
use std::collections::HashMap;
use std::net::IpAddr;

/// An entry in the table; stable while the address holds a connection or a name.
pub type ClientId = u32;

/// What one address holds.
#[derive(Debug)]
struct Client {
    addr: IpAddr,
    /// Connections open from this address.
    connections: u32,
    /// Presence names this address made that are still present in some room.
    names: u32,
    /// Rooms this address gave their first message that are still here (each names this
    /// entry as its keeper, so the entry stays while they do).
    rooms: u32,
    /// Rooms with something in them that gave their places to rooms this address's
    /// requests made at `--max-rooms`: in a burst, the rooms of whoever pushed the most out
    /// give way first (`Chat::room_id`). Forgotten with the entry.
    pushed_out: u32,
}

/// Every address that holds something.
#[derive(Default)]
pub struct Clients {
    entries: Slab<Client>,
    by_addr: HashMap<IpAddr, ClientId>,
}

impl Clients {
    /// Connections the client at `addr` holds now.
    pub fn connections_from(&self, addr: IpAddr) -> u32 {
        let addr = crate::limits::client_key(addr);
        self.by_addr
            .get(&addr)
            .map_or(0, |&id| self.entries[id as usize].connections)
    }

    /// A connection from `addr` was accepted.
    pub fn connected(&mut self, addr: IpAddr) -> ClientId {
        let addr = crate::limits::client_key(addr);
        let id = match self.by_addr.get(&addr) {
            Some(&id) => id,
            None => {
                let id = self.entries.insert(Client {
                    addr,
                    connections: 0,
                    names: 0,
                    rooms: 0,
                    pushed_out: 0,
                }) as ClientId;
                self.by_addr.insert(addr, id);
                id
            }
        };
        self.entries[id as usize].connections += 1;
        id
    }

    /// A connection of `id` turned out to be `addr`'s (a trusted proxy said so): it counts
    /// for `addr` from now on, and no longer for `id`. Returns `addr`'s entry.
    pub fn moved(&mut self, id: ClientId, addr: IpAddr) -> ClientId {
        if self.entries[id as usize].addr == crate::limits::client_key(addr) {
            return id;
        }
        let to = self.connected(addr);
        self.disconnected(id);
        to
    }

    /// A connection of `id` closed.
    pub fn disconnected(&mut self, id: ClientId) {
        let client = &mut self.entries[id as usize];
        client.connections -= 1;
        self.forget_if_idle(id);
    }

    /// The address of `id`, as limits count it (an IPv6 client's /64).
    pub fn address(&self, id: ClientId) -> IpAddr {
        self.entries[id as usize].addr
    }

    /// Names `id` holds.
    pub fn names(&self, id: ClientId) -> u32 {
        self.entries[id as usize].names
    }

    /// `id` made a new name.
    pub fn name_added(&mut self, id: ClientId) {
        self.entries[id as usize].names += 1;
    }

    /// A name `id` made has left its room.
    pub fn name_removed(&mut self, id: ClientId) {
        let client = &mut self.entries[id as usize];
        client.names -= 1;
        self.forget_if_idle(id);
    }

    /// Rooms `id` gave their first message.
    pub fn rooms(&self, id: ClientId) -> u32 {
        self.entries[id as usize].rooms
    }

    /// `id` gave a room its first message: the room counts for `id` until it gives way.
    pub fn room_kept(&mut self, id: ClientId) {
        self.entries[id as usize].rooms += 1;
    }

    /// A room `id` gave its first message gave its place to another.
    pub fn room_given_back(&mut self, id: ClientId) {
        let client = &mut self.entries[id as usize];
        client.rooms -= 1;
        self.forget_if_idle(id);
    }

    /// Rooms with something in them that gave way to rooms `id` made.
    pub fn pushed_out(&self, id: ClientId) -> u32 {
        self.entries[id as usize].pushed_out
    }

    /// A room `id` made took the place of a room that held something.
    pub fn pushed_one_out(&mut self, id: ClientId) {
        let client = &mut self.entries[id as usize];
        client.pushed_out = client.pushed_out.saturating_add(1);
    }

    /// Addresses holding something.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nobody holds anything.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn forget_if_idle(&mut self, id: ClientId) {
        let client = &self.entries[id as usize];
        if client.connections == 0 && client.names == 0 && client.rooms == 0 {
            let addr = client.addr;
            self.entries.remove(id as usize);
            self.by_addr.remove(&addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_kept_while_it_holds_a_connection_a_name_or_a_room() {
        let mut clients = Clients::default();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        let one = clients.connected(a);
        assert_eq!(clients.connected(a), one, "one entry per address");
        let other = clients.connected(b);
        assert_ne!(one, other);
        assert_eq!(clients.connections_from(a), 2);
        assert_eq!(clients.connections_from("2001:db8::1".parse().unwrap()), 0);
        clients.name_added(one);
        clients.disconnected(one);
        clients.disconnected(one);
        assert_eq!(clients.len(), 2, "a's name keeps its entry");
        assert_eq!(clients.names(one), 1);
        clients.name_removed(one);
        assert_eq!(clients.len(), 1);
        clients.room_kept(other);
        clients.disconnected(other);
        assert_eq!(clients.len(), 1, "a room keeps its maker's entry");
        assert_eq!(clients.rooms(other), 1);
        // A connection moves to the address a trusted proxy names; an entry left holding
        // nothing goes.
        let proxy: IpAddr = "127.0.0.9".parse().unwrap();
        let via = clients.connected(proxy);
        let named = clients.moved(via, "203.0.113.1".parse().unwrap());
        assert_eq!(clients.moved(named, "203.0.113.1".parse().unwrap()), named);
        assert_eq!(clients.connections_from(proxy), 0);
        assert_eq!(clients.connections_from("203.0.113.1".parse().unwrap()), 1);
        clients.disconnected(named);
        assert_eq!(clients.len(), 1);
        // A freed entry starts from zero for whoever gets it next.
        let again = clients.connected(a);
        assert_eq!(clients.names(again), 0);
    }
}
