//! Where Redis is: `redis://[user:password@]host:port[/db]` or `unix:///path/to/socket`
//! (with `?db=N`), as `--redis` takes it. Parsed once at start-up, with an error that says
//! what is wrong, so a typo stops the server instead of a reconnect loop.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// A parsed `--redis` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisUrl {
    /// Where to connect.
    pub target: Target,
    /// `AUTH` user, if given (Redis 6 ACLs); `None` with a password means `default`.
    pub user: Option<String>,
    /// `AUTH` password, if given.
    pub password: Option<String>,
    /// `SELECT` this database (0 unless given).
    pub db: u32,
    /// The URL as typed, with any password masked, for log lines.
    pub shown: String,
}

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
    let usage = "use redis://[user:password@]host:port[/db] or unix:///path/to/socket[?db=N]";
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
            target: Target::Unix(PathBuf::from(path)),
            user: None,
            password: None,
            db,
            shown: text.to_owned(),
        });
    }
    let Some(rest) = raw.strip_prefix("redis://") else {
        return Err(format!("'{text}': {usage}"));
    };
    let (userinfo, hostpart) = match rest.rsplit_once('@') {
        Some((userinfo, hostpart)) => (Some(userinfo), hostpart),
        None => (None, rest),
    };
    let (authority, db) = match hostpart.split_once('/') {
        Some((authority, "")) => (authority, 0),
        Some((authority, db)) => (authority, parse_db(db, text)?),
        None => (hostpart, 0),
    };
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
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_owned()
    } else {
        format!("{authority}:6379")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("'{text}': cannot resolve {with_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("'{text}': {with_port} resolves to no address"))?;
    Ok(RedisUrl {
        target: Target::Tcp(addr),
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
        assert_eq!(plain.target, Target::Tcp("127.0.0.1:6380".parse().unwrap()));
        assert_eq!((plain.user, plain.password, plain.db), (None, None, 0));

        let full = parse("redis://ann:s%40cret@127.0.0.1:7000/3").unwrap();
        assert_eq!(full.user.as_deref(), Some("ann"));
        assert_eq!(full.password.as_deref(), Some("s@cret"));
        assert_eq!(full.db, 3);
        assert!(!full.shown.contains("cret"), "{}", full.shown);

        let password_only = parse("redis://:pw@localhost").unwrap();
        assert_eq!(password_only.user, None);
        assert_eq!(password_only.password.as_deref(), Some("pw"));
        assert!(matches!(password_only.target, Target::Tcp(a) if a.port() == 6379));

        let unix = parse("unix:///run/redis.sock?db=2").unwrap();
        assert_eq!(unix.target, Target::Unix("/run/redis.sock".into()));
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
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
