//! With `redis+sentinel://`: finding the master. Before each connection the node asks the
//! Sentinels, one at a time, `SENTINEL get-master-addr-by-name MASTER`, on a connection of
//! its own in the server's poll like the other two (non-blocking, its reply read within
//! the reply caps); a Sentinel that refuses, hangs up, answers nonsense or nothing within
//! [`SENTINEL_ANSWER`] is skipped for the next. The first answer wins, and the Sentinel
//! that gave it is asked first next time (what the Sentinel client guidelines advise: it
//! is the one most likely to be up). The master found is then checked with `ROLE` once
//! connected ([`is_master`]): a Sentinel may still name a master that has just been
//! demoted.
//!
//! The order of asking ([`Sentinels`]) and the reading of replies ([`master_address`],
//! [`is_master`]) are pure, and tested here; [`Asking`] is the connection.

use super::link::Link;
use super::news::Malformed;
use super::resp::Caps;
use super::url::Target;
use redis_protocol::resp2::types::OwnedFrame;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long one Sentinel has to answer before the next is asked. A Sentinel answers from
/// memory at once; one that has not in half a second is down, cut off or stopped, and the
/// posts refused meanwhile are better spent on the next.
pub const SENTINEL_ANSWER: Duration = Duration::from_millis(500);

/// The longest reply a Sentinel's answer may be, in bytes: two short strings, an IP and a
/// port. Anything longer is not the answer.
pub const SENTINEL_REPLY_BYTES: usize = 1024;

/// The Sentinels, and which to ask next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentinels {
    /// As the URL listed them.
    addrs: Vec<SocketAddr>,
    /// The master's name.
    master: String,
    /// Where each round starts: the Sentinel that answered last (the first listed, before
    /// any did).
    first: usize,
    /// Sentinels asked so far in this round.
    tried: usize,
}

impl Sentinels {
    /// The Sentinels of a URL, none asked yet.
    pub fn new(addrs: Vec<SocketAddr>, master: String) -> Sentinels {
        Sentinels {
            addrs,
            master,
            first: 0,
            tried: 0,
        }
    }

    /// The master's name.
    pub fn master(&self) -> &str {
        &self.master
    }

    /// Starts a round: each Sentinel is asked at most once in it, beginning with the one
    /// that answered last.
    pub fn start_round(&mut self) {
        self.tried = 0;
    }

    /// The next Sentinel to ask in this round; `None` once every one has been.
    pub fn next_to_ask(&mut self) -> Option<SocketAddr> {
        if self.tried >= self.addrs.len() {
            return None;
        }
        let at = (self.first + self.tried) % self.addrs.len();
        self.tried += 1;
        Some(self.addrs[at])
    }

    /// The Sentinel asked last answered: the next round starts with it.
    pub fn answered(&mut self) {
        if self.tried > 0 {
            self.first = (self.first + self.tried - 1) % self.addrs.len();
        }
    }

    /// The Sentinel that answered last named a node that is not the master (it has not
    /// heard of a failover yet, or is wrong): the next round starts with the one after it,
    /// so that one stale Sentinel listed first cannot keep the node away from the master.
    pub fn misled(&mut self) {
        self.first = (self.first + 1) % self.addrs.len();
    }
}

/// The master's address from a reply to `SENTINEL get-master-addr-by-name`: `[ip, port]`,
/// or a null when the Sentinel monitors no master of that name (`Ok(None)`). A host name
/// instead of an IP (Sentinel's `resolve-hostnames`) is refused: resolving it would block
/// the loop.
pub fn master_address(frame: &OwnedFrame) -> Result<Option<SocketAddr>, Malformed> {
    let parts = match frame {
        OwnedFrame::Null => return Ok(None),
        OwnedFrame::Array(parts) => parts,
        OwnedFrame::Error(_) => return Err(Malformed("the Sentinel answered an error")),
        _ => return Err(Malformed("a master's address is an array")),
    };
    let [OwnedFrame::BulkString(ip), OwnedFrame::BulkString(port)] = parts.as_slice() else {
        return Err(Malformed("a master's address is an IP and a port"));
    };
    let ip: IpAddr = std::str::from_utf8(ip)
        .ok()
        .and_then(|ip| ip.parse().ok())
        .ok_or(Malformed(
            "the Sentinel named the master by a host name, not an IP",
        ))?;
    let port: u16 = std::str::from_utf8(port)
        .ok()
        .and_then(|port| port.parse().ok())
        .filter(|port| *port != 0)
        .ok_or(Malformed("the master's port is not a port"))?;
    Ok(Some(SocketAddr::new(ip, port)))
}

/// Whether a reply to `ROLE` says the node is a master (`["master", offset, replicas]`),
/// and not a replica or a Sentinel.
pub fn is_master(frame: &OwnedFrame) -> Result<bool, Malformed> {
    match frame {
        OwnedFrame::Array(parts) => match parts.first() {
            Some(OwnedFrame::BulkString(role)) => Ok(role == b"master"),
            _ => Err(Malformed("ROLE answers an array that starts with the role")),
        },
        _ => Err(Malformed("ROLE answers an array")),
    }
}

/// What came of asking.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// No whole reply yet.
    Nothing,
    /// The master is here.
    Master(SocketAddr),
    /// This Sentinel cannot help: ask the next one.
    Skip(String),
}

/// Asking one Sentinel: the connection, whom it goes to, and since when.
pub struct Asking {
    /// The connection to the Sentinel.
    link: Link,
    /// The Sentinel's address, for log lines.
    pub sentinel: SocketAddr,
    /// When the question went: [`SENTINEL_ANSWER`] after this the Sentinel is skipped.
    pub since: Instant,
}

impl Asking {
    /// Connects to `sentinel` and sends the question (it goes once the connection is made).
    pub fn start(
        sentinel: SocketAddr,
        master: &str,
        registry: &mio::Registry,
        token: mio::Token,
        caps: Caps,
    ) -> std::io::Result<Asking> {
        let mut link = Link::connect(&Target::Tcp(sentinel), registry, token, caps)?;
        link.send(&[b"SENTINEL", b"get-master-addr-by-name", master.as_bytes()])?;
        Ok(Asking {
            link,
            sentinel,
            since: Instant::now(),
        })
    }

    /// An event on the connection: writes the question, reads what came.
    pub fn on_event(&mut self) -> Found {
        let step = self.link.flush().and_then(|()| self.link.read());
        // Whatever was read before an error (a Sentinel that answers and hangs up) counts.
        let frame = match self.link.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                return match step {
                    Ok(()) => Found::Nothing,
                    Err(e) => Found::Skip(format!("Sentinel at {}: {e}", self.sentinel)),
                }
            }
            Err(e) => return Found::Skip(format!("Sentinel at {}: {e}", self.sentinel)),
        };
        match master_address(&frame) {
            Ok(Some(master)) => Found::Master(master),
            Ok(None) => Found::Skip(format!(
                "the Sentinel at {} knows no such master",
                self.sentinel
            )),
            Err(Malformed(what)) => Found::Skip(format!("Sentinel at {}: {what}", self.sentinel)),
        }
    }

    /// Whether the Sentinel has had its time.
    pub fn overdue(&self) -> bool {
        self.since.elapsed() >= SENTINEL_ANSWER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> OwnedFrame {
        OwnedFrame::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn each_round_asks_every_sentinel_once_starting_with_the_last_that_answered() {
        let addrs: Vec<SocketAddr> = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let mut sentinels = Sentinels::new(addrs.clone(), "m".into());
        let round = |s: &mut Sentinels, answers_at: Option<usize>| {
            s.start_round();
            let mut asked = Vec::new();
            while let Some(addr) = s.next_to_ask() {
                asked.push(addr.port());
                if Some(asked.len()) == answers_at {
                    s.answered();
                    break;
                }
            }
            asked
        };
        // Nobody answers: each asked once, in the order given, then the round is over.
        assert_eq!(round(&mut sentinels, None), [1, 2, 3]);
        assert_eq!(sentinels.next_to_ask(), None);
        // The second one asked answers: it is asked first from then on.
        assert_eq!(round(&mut sentinels, Some(2)), [1, 2]);
        assert_eq!(round(&mut sentinels, None), [2, 3, 1]);
        assert_eq!(round(&mut sentinels, Some(3)), [2, 3, 1]);
        assert_eq!(round(&mut sentinels, Some(1)), [1]);
        // The one that answered named a replica: the next round starts after it.
        sentinels.misled();
        assert_eq!(round(&mut sentinels, Some(1)), [2]);
        assert_eq!(round(&mut sentinels, Some(2)), [2, 3]);
        sentinels.misled();
        assert_eq!(round(&mut sentinels, None), [1, 2, 3]);
        // One Sentinel alone.
        let mut one = Sentinels::new(addrs[..1].to_vec(), "m".into());
        assert_eq!(round(&mut one, Some(1)), [1]);
        assert_eq!(round(&mut one, None), [1]);
    }

    #[test]
    fn a_sentinels_reply_names_the_master_or_is_refused() {
        let addr = |ip: &str, port: &str| OwnedFrame::Array(vec![bulk(ip), bulk(port)]);
        for (reply, want) in [
            (addr("10.0.0.7", "6380"), Ok(Some("10.0.0.7:6380"))),
            (addr("::1", "7000"), Ok(Some("[::1]:7000"))),
            (OwnedFrame::Null, Ok(None)),
            (addr("redis-1.internal", "6379"), Err("host name")),
            (addr("10.0.0.7", "0"), Err("not a port")),
            (addr("10.0.0.7", "65536"), Err("not a port")),
            (addr("10.0.0.7", "-1"), Err("not a port")),
            (
                OwnedFrame::Array(vec![bulk("10.0.0.7")]),
                Err("an IP and a port"),
            ),
            (
                OwnedFrame::Array(vec![bulk("10.0.0.7"), OwnedFrame::Integer(6379)]),
                Err("an IP and a port"),
            ),
            (
                OwnedFrame::Error("ERR unknown command".into()),
                Err("error"),
            ),
            (bulk("10.0.0.7:6379"), Err("an array")),
        ] {
            let got = master_address(&reply);
            match want {
                Ok(addr) => {
                    let addr = addr.map(|a| a.parse::<SocketAddr>().unwrap());
                    assert_eq!(got, Ok(addr), "{reply:?}");
                }
                Err(says) => {
                    let Err(Malformed(why)) = got else {
                        panic!("{reply:?} gave {got:?}")
                    };
                    assert!(why.contains(says), "{reply:?}: {why}");
                }
            }
        }
    }

    #[test]
    fn only_a_master_is_taken_for_one() {
        let role = |parts: Vec<OwnedFrame>| OwnedFrame::Array(parts);
        let master = role(vec![
            bulk("master"),
            OwnedFrame::Integer(3129),
            role(vec![]),
        ]);
        let replica = role(vec![
            bulk("slave"),
            bulk("127.0.0.1"),
            OwnedFrame::Integer(6380),
            bulk("connected"),
            OwnedFrame::Integer(3129),
        ]);
        let sentinel = role(vec![bulk("sentinel"), role(vec![bulk("m")])]);
        assert_eq!(is_master(&master), Ok(true));
        assert_eq!(is_master(&replica), Ok(false));
        assert_eq!(is_master(&sentinel), Ok(false));
        assert!(is_master(&role(vec![])).is_err());
        assert!(is_master(&bulk("master")).is_err());
        assert!(is_master(&OwnedFrame::Error("NOPERM".into())).is_err());
    }
}
