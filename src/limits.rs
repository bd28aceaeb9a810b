//! Flood limits per client: how fast one client may post and send typing events. Without
//! tokens a client is its address (an IPv6 client its /64, which one subscriber usually
//! holds whole), so that making up names gets around nothing. With tokens a client is the
//! name its token vouches for, wherever it comes from: one hostile user behind a NAT must
//! not use up the allowance of everyone else behind it.
//!
//! Each limit is a token bucket (nginx's `limit_req` with `burst`): it holds up to `burst`
//! permits, refills at `rate` a second, and each post takes one. A bucket exists only while
//! it is not full, which is at most `burst / rate` seconds after its client's last post, so
//! the limiter holds an entry per recently active client and no more; the sweep frees the
//! rest. However many clients come, a table never holds more than [`MAX_ENTRIES`]: past
//! that, a newcomer is refused as if its bucket were empty, since the alternative (forgetting
//! someone's empty bucket) would hand a flooder a fresh one.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Duration;

/// Entries one table holds at most (about 64 bytes each).
pub const MAX_ENTRIES: usize = 65_536;

/// Typing events one address may send per `--typing-interval` (and at once): a few people
/// behind one NAT who type at the same time. Each name gets one per interval.
pub const TYPING_PER_ADDRESS: f64 = 3.0;

/// The key every per-client limit uses for an address: IPv4 as it is, IPv6 by its /64
/// (an IPv4-mapped IPv6 address as the IPv4 address it is).
pub fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(network.into())
            }
        },
    }
}

/// One client's bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Permits left as of `at_ms`.
    permits: f64,
    at_ms: u64,
}

/// Buckets for one limit, by client.
struct Buckets<K> {
    entries: HashMap<K, Bucket>,
    /// Permits a second.
    rate: f64,
    burst: f64,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(rate: f64, burst: f64) -> Buckets<K> {
        Buckets {
            entries: HashMap::new(),
            rate,
            burst,
        }
    }

    /// Permits `key` has now: a missing bucket is a full one.
    fn permits(&self, key: &K, now_ms: u64) -> f64 {
        match self.entries.get(key) {
            None => self.burst,
            Some(bucket) => {
                let refilled = now_ms.saturating_sub(bucket.at_ms) as f64 / 1000.0 * self.rate;
                (bucket.permits + refilled).min(self.burst)
            }
        }
    }

    /// How long until `key` has a permit; zero if it has one now. `None`: the table is
    /// full and `key` is not in it.
    fn wait(&self, key: &K, now_ms: u64) -> Option<Duration> {
        if !self.entries.contains_key(key) && self.entries.len() >= MAX_ENTRIES {
            return None;
        }
        let missing = 1.0 - self.permits(key, now_ms);
        Some(match missing > 0.0 {
            true => Duration::from_secs_f64(missing / self.rate),
            false => Duration::ZERO,
        })
    }

    /// Takes a permit `key` has (checked with [`Buckets::wait`]).
    fn take(&mut self, key: &K, now_ms: u64) {
        let permits = self.permits(key, now_ms) - 1.0;
        self.entries.insert(
            key.clone(),
            Bucket {
                permits,
                at_ms: now_ms,
            },
        );
    }

    /// Forgets every full bucket: a client that comes back gets a full one anyway.
    fn sweep(&mut self, now_ms: u64) {
        let (rate, burst) = (self.rate, self.burst);
        self.entries.retain(|_, bucket| {
            let refilled = now_ms.saturating_sub(bucket.at_ms) as f64 / 1000.0 * rate;
            bucket.permits + refilled < burst
        });
    }
}

/// What a client wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Post a message (`POST /chat`, `POST /rooms/{room}/messages`).
    Post,
    /// Say it is typing (`POST /rooms/{room}/typing`).
    Typing,
}

/// Why an act was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Over the rate: come back after this long.
    Flooding(Duration),
    /// The limiter holds as many clients as it may; come back shortly.
    Crowded,
}

/// Every per-client rate limit.
pub struct Limiter {
    posts_by_address: Buckets<IpAddr>,
    posts_by_name: Buckets<Box<str>>,
    typing_by_address: Buckets<IpAddr>,
    typing_by_name: Buckets<Box<str>>,
}

impl Limiter {
    /// Posts: `post_rate` a second with bursts of `post_burst`; typing: one per
    /// `typing_interval` per name, [`TYPING_PER_ADDRESS`] per address.
    pub fn new(post_rate: usize, post_burst: usize, typing_interval: Duration) -> Limiter {
        let per_interval = 1.0 / typing_interval.as_secs_f64().max(0.001);
        Limiter {
            posts_by_address: Buckets::new(post_rate as f64, post_burst as f64),
            posts_by_name: Buckets::new(post_rate as f64, post_burst as f64),
            typing_by_address: Buckets::new(per_interval * TYPING_PER_ADDRESS, TYPING_PER_ADDRESS),
            typing_by_name: Buckets::new(per_interval, 1.0),
        }
    }

    /// Whether the client at `address`, acting as `name`, may `act` now; if so, the act
    /// is counted against it. `signed`: the name is a token's `sub`, vouched for, so it
    /// alone is the client. An unsigned name is anyone's to type: the address is the client
    /// (and for typing, the address with the name, so that two people behind one NAT can
    /// both be seen typing). Every bucket that applies must have a permit, and a refused
    /// act takes none, so a client kept waiting is not charged for asking.
    pub fn allow(
        &mut self,
        act: Act,
        address: IpAddr,
        (name, signed): (&str, bool),
        now_ms: u64,
    ) -> Result<(), Refused> {
        let address = client_key(address);
        let (by_address, by_name) = match act {
            Act::Post => (&mut self.posts_by_address, &mut self.posts_by_name),
            Act::Typing => (&mut self.typing_by_address, &mut self.typing_by_name),
        };
        let name: Option<Box<str>> = match (act, signed) {
            (_, true) => Some(name.into()),
            (Act::Typing, false) => Some(format!("{address}/{name}").into()),
            (Act::Post, false) => None,
        };
        let mut wait = Duration::ZERO;
        if !signed {
            wait = by_address.wait(&address, now_ms).ok_or(Refused::Crowded)?;
        }
        if let Some(name) = &name {
            wait = wait.max(by_name.wait(name, now_ms).ok_or(Refused::Crowded)?);
        }
        if !wait.is_zero() {
            return Err(Refused::Flooding(wait));
        }
        if !signed {
            by_address.take(&address, now_ms);
        }
        if let Some(name) = &name {
            by_name.take(name, now_ms);
        }
        Ok(())
    }

    /// Frees the buckets that have filled up again.
    pub fn sweep(&mut self, now_ms: u64) {
        self.posts_by_address.sweep(now_ms);
        self.posts_by_name.sweep(now_ms);
        self.typing_by_address.sweep(now_ms);
        self.typing_by_name.sweep(now_ms);
    }

    /// Buckets held, over every limit.
    pub fn entries(&self) -> usize {
        self.posts_by_address.entries.len()
            + self.posts_by_name.entries.len()
            + self.typing_by_address.entries.len()
            + self.typing_by_name.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANON: (&str, bool) = ("anonymous", false);

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_burst_then_the_rate_then_a_full_bucket_again() {
        let mut limiter = Limiter::new(10, 20, Duration::from_secs(1));
        let ann = ip("192.0.2.1");
        for _ in 0..20 {
            assert_eq!(limiter.allow(Act::Post, ann, ANON, 0), Ok(()));
        }
        let Err(Refused::Flooding(wait)) = limiter.allow(Act::Post, ann, ANON, 0) else {
            panic!("the 21st post at once is refused")
        };
        assert_eq!(
            wait,
            Duration::from_millis(100),
            "one permit comes back in 1/rate"
        );
        assert!(limiter.allow(Act::Post, ann, ANON, 99).is_err());
        assert_eq!(limiter.allow(Act::Post, ann, ANON, 100), Ok(()));
        // Someone else is not held back by ann.
        assert_eq!(limiter.allow(Act::Post, ip("192.0.2.2"), ANON, 100), Ok(()));
        assert_eq!(limiter.entries(), 2);
        limiter.sweep(1000);
        assert_eq!(
            limiter.entries(),
            1,
            "the newcomer's bucket is full again by 1 s"
        );
        limiter.sweep(100 + 2000);
        assert_eq!(
            limiter.entries(),
            0,
            "ann's is full again 2 s after her last post"
        );
        assert_eq!(limiter.allow(Act::Post, ann, ANON, 2100), Ok(()));
    }

    #[test]
    fn a_signed_name_is_limited_across_addresses_and_alone() {
        let mut limiter = Limiter::new(1, 2, Duration::from_secs(1));
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let ok = |l: &mut Limiter, at, who| l.allow(Act::Post, at, who, 0).is_ok();
        assert!(ok(&mut limiter, a, ("ann", true)));
        assert!(ok(&mut limiter, b, ("ann", true)));
        assert!(
            !ok(&mut limiter, b, ("ann", true)),
            "ann is spent wherever she is"
        );
        // bob and cy behind ann's address are not held back by her.
        assert!(ok(&mut limiter, a, ("bob", true)));
        assert!(ok(&mut limiter, a, ("cy", true)));
        assert!(ok(&mut limiter, a, ("cy", true)));
        assert!(!ok(&mut limiter, a, ("cy", true)), "cy is spent");
        // Unsigned, the address is the client, whatever the names.
        let c = ip("192.0.2.3");
        assert!(ok(&mut limiter, c, ("dee", false)));
        assert!(ok(&mut limiter, c, ("eve", false)));
        assert!(!ok(&mut limiter, c, ("fay", false)), "c is spent");
    }

    #[test]
    fn typing_is_one_per_interval_per_name() {
        let mut limiter = Limiter::new(10, 20, Duration::from_secs(1));
        let a = ip("192.0.2.1");
        assert!(limiter.allow(Act::Typing, a, ("ann", true), 0).is_ok());
        assert!(limiter.allow(Act::Typing, a, ("ann", true), 500).is_err());
        assert!(limiter.allow(Act::Typing, a, ("bob", true), 500).is_ok());
        assert!(limiter.allow(Act::Typing, a, ("ann", true), 1000).is_ok());
        // Unsigned names: one per interval each, a few per address at once.
        let b = ip("192.0.2.2");
        assert!(
            limiter.allow(Act::Typing, b, ("ann", false), 0).is_ok(),
            "not a's ann"
        );
        assert!(limiter.allow(Act::Typing, b, ("ann", false), 0).is_err());
        assert!(limiter.allow(Act::Typing, b, ("bob", false), 0).is_ok());
        assert!(limiter.allow(Act::Typing, b, ("cy", false), 0).is_ok());
        assert!(
            limiter.allow(Act::Typing, b, ("dee", false), 0).is_err(),
            "b is out of typing for now: rotating names buys nothing"
        );
        assert!(limiter.allow(Act::Typing, b, ("dee", false), 334).is_ok());
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa::1")),
            client_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        let mut limiter = Limiter::new(1, 1, Duration::from_secs(1));
        assert!(limiter.allow(Act::Post, ip("2001:db8::1"), ANON, 0).is_ok());
        assert!(limiter
            .allow(Act::Post, ip("2001:db8::2"), ANON, 0)
            .is_err());
    }

    #[test]
    fn the_tables_are_bounded() {
        let mut limiter = Limiter::new(1, 1, Duration::from_secs(1));
        for n in 0..MAX_ENTRIES as u32 {
            let addr = IpAddr::V4(n.into());
            assert!(limiter.allow(Act::Post, addr, ANON, 0).is_ok());
        }
        let newcomer = IpAddr::V4(u32::MAX.into());
        assert_eq!(
            limiter.allow(Act::Post, newcomer, ANON, 0),
            Err(Refused::Crowded)
        );
        limiter.sweep(1000);
        assert_eq!(limiter.entries(), 0);
        assert!(limiter.allow(Act::Post, newcomer, ANON, 1000).is_ok());
    }
}
