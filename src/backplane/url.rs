//! Where Redis is: `redis://[user:password@]host:port[/db]`, `unix:///path/to/socket`
//! (with `?db=N`), or `redis+sentinel://[user:password@]host:port[,host:port...]/MASTER[/db]`
//! (the Sentinels to ask for the master named `MASTER`: the scheme RedisVL, LangChain,
//! Prefect and Python's Redis-Sentinel-Url read), as `--redis` takes it. A user and
//! password are the master's; Sentinels are asked without `AUTH`. Parsed once at start-up, with an error that says
//! what is wrong, so a typo stops the server instead of a reconnect loop.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// A parsed `--redis` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisUrl {
    /// Where to connect, or whom to ask where.
    pub at: Where,
    /// `AUTH` user, if given (Redis 6 ACLs); `None` with a password means `default`.
    pub user: Option<String>,
    /// `AUTH` password, if given.
    pub password: Option<String>,
    /// `SELECT` this database (0 unless given).
    pub db: u32,
    /// The URL as typed, with any password masked, for log lines.
    pub shown: String,
}

/// Where the Redis to use is found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Where {
    /// At this address, always (`redis://`, `unix://`).
    Direct(Target),
    /// Wherever these Sentinels say the master is (`redis+sentinel://`); asked again each
    /// time the connection is made, so a failover moves the node to the new master.
    Sentinel {
        /// The Sentinels' addresses, resolved at start-up, in the order given.
        sentinels: Vec<SocketAddr>,
        /// The name the Sentinels monitor the master under.
        master: String,
    },
}

/// The port a Sentinel listens on unless the URL says otherwise.
const SENTINEL_PORT: u16 = 26379;

/// The longest master name taken, in bytes: Sentinel's own names are short words, and this
/// one goes into a command and log lines.
const MASTER_NAME_BYTES_MAX: usize = 128;

/// A TCP address (resolved at start-up) or a Unix socket path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `redis://host:port`.
    Tcp(SocketAddr),
    /// `unix:///path`.
    Unix(PathBuf),
}

/// Parses (and for TCP, resolves) a `--redis` value. Every error quotes the value with
/// its password masked ([`masked`]): start-up errors land in terminals and service logs.
pub fn parse(raw: &str) -> Result<RedisUrl, String> {
    let text = &masked(raw);
    let usage = "use redis://[user:password@]host:port[/db], unix:///path/to/socket[?db=N] or \
                 redis+sentinel://[user:password@]host:port[,host:port...]/MASTER[/db]";
    if let Some(rest) = raw.strip_prefix("unix://") {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if !path.starts_with('/') {
            return Err(format!(
                "'{text}': a unix socket path must be absolute; {usage}"
            ));
        }
        let db = match query.strip_prefix("db=") {
            Some(db) => parse_db(db, text)?,
            None if query.is_empty() => 0,
            None => return Err(format!("'{text}': unknown query '{query}'; {usage}")),
        };
        return Ok(RedisUrl {
            at: Where::Direct(Target::Unix(PathBuf::from(path))),
            user: None,
            password: None,
            db,
            shown: text.to_owned(),
        });
    }
    let (rest, sentinel) = match (
        raw.strip_prefix("redis://"),
        raw.strip_prefix("redis+sentinel://"),
    ) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => return Err(format!("'{text}': {usage}")),
    };
    let (userinfo, hostpart) = match rest.rsplit_once('@') {
        Some((userinfo, hostpart)) => (Some(userinfo), hostpart),
        None => (None, rest),
    };
    let (authority, path) = hostpart.split_once('/').unwrap_or((hostpart, ""));
    let (user, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, password) = info.split_once(':').unwrap_or(("", info));
            let decode = |part: &str| {
                crate::http::percent_decode(part.as_bytes(), false)
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| {
                        format!("'{text}': the user or password is not URL-encoded UTF-8")
                    })
            };
            let user = (!user.is_empty()).then(|| decode(user)).transpose()?;
            (user, Some(decode(password)?))
        }
    };
    if authority.is_empty() {
        return Err(format!("'{text}': no host; {usage}"));
    }
    let (at, db) = if sentinel {
        let (master, db) = match path.split_once('/') {
            Some((master, "")) => (master, 0),
            Some((master, db)) => (master, parse_db(db, text)?),
            None => (path, 0),
        };
        let named = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
        if master.is_empty() || master.len() > MASTER_NAME_BYTES_MAX || !master.chars().all(named) {
            return Err(format!(
                "'{text}': the master's name must be 1 to {MASTER_NAME_BYTES_MAX} of \
                 A-Z a-z 0-9 . _ -; {usage}"
            ));
        }
        let sentinels = authority
            .split(',')
            .map(|one| resolve(one, SENTINEL_PORT, text))
            .collect::<Result<Vec<_>, _>>()?;
        let master = master.to_owned();
        (Where::Sentinel { sentinels, master }, db)
    } else {
        let db = match path {
            "" => 0,
            db => parse_db(db, text)?,
        };
        (
            Where::Direct(Target::Tcp(resolve(authority, 6379, text)?)),
            db,
        )
    };
    Ok(RedisUrl {
        at,
        user,
        password,
        db,
        shown: text.to_owned(),
    })
}

/// `text` with whatever stands where a password would (`scheme://user:PASSWORD@` or
/// `scheme://PASSWORD@`) replaced by `***`, for log lines and error messages. Done on the
/// raw text, before anything is parsed, so that no error about any other part of the URL
/// can quote the password. A `unix://` path carries none, and is left as it is.
pub fn masked(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://").filter(|(s, _)| *s != "unix") else {
        return text.to_owned();
    };
    let Some((userinfo, hostpart)) = rest.rsplit_once('@') else {
        return text.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{hostpart}"),
        None => format!("{scheme}://***@{hostpart}"),
    }
}

/// `host[:port]` (the port `default` when none is given) resolved to one address.
fn resolve(authority: &str, default: u16, text: &str) -> Result<SocketAddr, String> {
    if authority.is_empty() {
        return Err(format!("'{text}': an empty host in the list"));
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_owned()
    } else {
        format!("{authority}:{default}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("'{text}': cannot resolve {with_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("'{text}': {with_port} resolves to no address"))
}

fn parse_db(db: &str, text: &str) -> Result<u32, String> {
    db.parse()
        .map_err(|_| format!("'{text}': the database '{db}' is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let plain = parse("redis://127.0.0.1:6380").unwrap();
        let tcp = |a: &str| Where::Direct(Target::Tcp(a.parse().unwrap()));
        assert_eq!(plain.at, tcp("127.0.0.1:6380"));
        assert_eq!((plain.user, plain.password, plain.db), (None, None, 0));

        let full = parse("redis://ann:s%40cret@127.0.0.1:7000/3").unwrap();
        assert_eq!(full.user.as_deref(), Some("ann"));
        assert_eq!(full.password.as_deref(), Some("s@cret"));
        assert_eq!(full.db, 3);
        assert!(!full.shown.contains("cret"), "{}", full.shown);

        let password_only = parse("redis://:pw@localhost").unwrap();
        assert_eq!(password_only.user, None);
        assert_eq!(password_only.password.as_deref(), Some("pw"));
        assert!(matches!(password_only.at, Where::Direct(Target::Tcp(a)) if a.port() == 6379));

        let unix = parse("unix:///run/redis.sock?db=2").unwrap();
        assert_eq!(
            unix.at,
            Where::Direct(Target::Unix("/run/redis.sock".into()))
        );
        assert_eq!(unix.db, 2);

        for (typed, shown) in [
            ("redis://ann:s3cret@h:1/2", "redis://ann:***@h:1/2"),
            ("redis://s3cret@h", "redis://***@h"),
            ("redis://:s3cret@h", "redis://:***@h"),
            ("redis://ann:p@ss:w0rd@h", "redis://ann:***@h"),
            ("http://ann:s3cret@h", "http://ann:***@h"),
            ("redis://h:6379", "redis://h:6379"),
            ("unix:///run/a@b.sock", "unix:///run/a@b.sock"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(masked(typed), shown);
        }

        for bad in [
            "",
            "127.0.0.1:6379",
            "http://127.0.0.1",
            "redis://",
            "redis://127.0.0.1:6379/x",
            "unix://relative.sock",
            "unix:///a.sock?dbx=1",
            "redis://no-such-host.invalid:6379",
            "redis+sentinel://127.0.0.1:26379",
            "redis+sentinel://127.0.0.1:26379/",
            "redis+sentinel://127.0.0.1:26379//2",
            "redis+sentinel://127.0.0.1:26379/my master",
            "redis+sentinel://127.0.0.1:26379/m/x",
            "redis+sentinel://127.0.0.1:1,,127.0.0.1:2/m",
            "redis+sentinel://127.0.0.1:1,no-such-host.invalid/m",
            "redis+sentinel:///m",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sentinel_urls() {
        let sentinels = |list: &[&str]| list.iter().map(|a| a.parse().unwrap()).collect();
        for (typed, listed, master, db, user, password) in [
            (
                "redis+sentinel://127.0.0.1:26380/mymaster",
                &["127.0.0.1:26380"][..],
                "mymaster",
                0,
                None,
                None,
            ),
            (
                "redis+sentinel://127.0.0.1,127.0.0.2:7,[::1]:8/chat.main-1/4",
                &["127.0.0.1:26379", "127.0.0.2:7", "[::1]:8"],
                "chat.main-1",
                4,
                None,
                None,
            ),
            (
                "redis+sentinel://ann:s%40cret@127.0.0.1:1,127.0.0.1:2/m/",
                &["127.0.0.1:1", "127.0.0.1:2"],
                "m",
                0,
                Some("ann"),
                Some("s@cret"),
            ),
        ] {
            let url = parse(typed).unwrap_or_else(|e| panic!("{typed}: {e}"));
            let want = Where::Sentinel {
                sentinels: sentinels(listed),
                master: master.to_owned(),
            };
            assert_eq!(url.at, want, "{typed}");
            assert_eq!(url.db, db, "{typed}");
            assert_eq!(url.user.as_deref(), user, "{typed}");
            assert_eq!(url.password.as_deref(), password, "{typed}");
            assert!(!url.shown.contains("cret"), "{}", url.shown);
        }
    }
}
