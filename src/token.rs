//! Signed identities (`--token-secret-file`): a site that knows its users vouches for them
//! with a JSON Web Token signed with a secret it shares with comet-chat (HS256), and
//! comet-chat believes nothing else. The token's `sub` is the user's name, its `rooms` the
//! rooms they may read and write, its `exp` when it stops being good.
//!
//! Verification is strict and in this order: the token's size and shape; its header, which
//! must say HS256 and nothing else (no `none`, no RS256 a key could be confused with); the
//! signature, compared in constant time (`hmac`'s `verify_slice`) before a byte of the
//! claims is read; then the claims, each validated like any other input (a `sub` that is
//! not a valid name makes the token invalid, never cleaned up into another name).

use crate::api;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

/// How far past its `exp` a token is still accepted, for clocks that differ a little
/// between the site that minted it and this server. Some libraries default to 60 s; a token
/// is meant to stop working when it says it does.
pub const LEEWAY_SECS: u64 = 5;

/// The longest token read: a JWT with a name and a list of rooms is a few hundred bytes; a
/// longer one is refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The shortest secret accepted: HS256 is as strong as its key, and RFC 7518 asks for a
/// key at least as long as the hash (32 bytes).
pub const MIN_SECRET_BYTES: usize = 32;

/// The shared secret, read from a file (never from a flag, which `ps` shows).
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Secret {
    /// Reads the secret: the file's bytes, less trailing whitespace (an editor's newline).
    pub fn load(path: &Path) -> Result<Secret, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the token secret {}: {e}", path.display()))?;
        let len = bytes.trim_ascii_end().len();
        if len < MIN_SECRET_BYTES {
            return Err(format!(
                "the token secret {} holds {len} bytes; it needs at least {MIN_SECRET_BYTES} \
                 (e.g. head -c 48 /dev/urandom | base64 > {})",
                path.display(),
                path.display()
            ));
        }
        Ok(Secret(bytes[..len].to_vec()))
    }

    /// A secret from bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> Secret {
        Secret(bytes.to_vec())
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length.
        HmacSha256::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }
}

/// Who a token says its bearer is, and what they may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user's name: the `from` of their posts, their name in presence and typing.
    pub sub: String,
    /// When the token stops being good, in seconds since the Unix epoch.
    pub exp: u64,
    /// The rooms it names; `*` stands for every room that is not private.
    pub rooms: Vec<String>,
}

impl Identity {
    /// Whether the token grants `room`. Rooms whose name starts with `private_prefix` are
    /// granted only by name, never by `*`.
    pub fn may_enter(&self, room: &str, private_prefix: Option<&str>) -> bool {
        let private = private_prefix.is_some_and(|prefix| room.starts_with(prefix));
        self.rooms
            .iter()
            .any(|granted| granted == room || (granted == "*" && !private))
    }
}

/// Why a token was refused; each is a 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No token at all.
    Missing,
    /// Not a JWT, not HS256, or claims of the wrong shape.
    Malformed(&'static str),
    /// The signature does not match: not minted with our secret, or altered since.
    BadSignature,
    /// Past its `exp` (and the leeway).
    Expired,
}

impl Refusal {
    /// The sentence for the error body.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "token: this server needs a token (Authorization: Bearer <token>, or ?token=)"
            }
            Refusal::Malformed(what) => what,
            Refusal::BadSignature => "token: the signature does not match; it was not made with this server's secret, or was altered",
            Refusal::Expired => "token: expired; ask the site for a new one",
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    /// Extensions the token says must be understood (RFC 7515 §4.1.11): we understand
    /// none, so a header that has a `crit` at all is refused, whatever its value. `Some`
    /// exactly when the key is there: a plain `Option` would read `"crit": null` as no
    /// `crit`, and let it pass (see [`present`]).
    #[serde(default, deserialize_with = "present")]
    crit: Option<serde_json::Value>,
}

/// Deserializes a field that is there as `Some`, even when its value is `null`; with
/// `#[serde(default)]`, only a field that is not there at all is `None`.
fn present<'de, D: serde::Deserializer<'de>>(
    field: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(field).map(Some)
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
    #[serde(default)]
    rooms: Option<serde_json::Value>,
}

/// Checks a token, as of `now` (seconds since the Unix epoch).
pub fn verify(token: &str, secret: &Secret, now: u64) -> Result<Identity, Refusal> {
    use Refusal::Malformed;
    if token.is_empty() {
        return Err(Refusal::Missing);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Malformed("token: too long"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed("token: not a JWT (header.claims.signature)"));
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).ok();
    let header: Header = decode(header)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(Malformed("token: the header is not base64url JSON"))?;
    if header.alg != "HS256" {
        return Err(Malformed("token: only HS256 tokens are accepted"));
    }
    match header.crit {
        None => {}
        Some(serde_json::Value::Array(names)) if !names.is_empty() => {
            return Err(Malformed(
                "token: crit names extensions this server does not know",
            ));
        }
        Some(_) => {
            return Err(Malformed(
                "token: crit must be a non-empty list of extension names (RFC 7515)",
            ));
        }
    }
    let signature = decode(signature).ok_or(Malformed("token: the signature is not base64url"))?;
    let signed_len = token.len() - token.rsplit('.').next().map_or(0, str::len) - 1;
    let mut mac = secret.mac();
    mac.update(&token.as_bytes()[..signed_len]);
    mac.verify_slice(&signature)
        .map_err(|_| Refusal::BadSignature)?;
    // From here on the claims are the site's own words.
    let claims: Claims = decode(claims)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(Malformed("token: the claims are not base64url JSON"))?;
    let exp = claims.exp.and_then(|exp| exp.as_u64()).ok_or(Malformed(
        "token: exp is required, in whole seconds since 1970",
    ))?;
    // RFC 7519 §4.1.4: not accepted "on or after" exp (here, exp and the leeway).
    if now >= exp.saturating_add(LEEWAY_SECS) {
        return Err(Refusal::Expired);
    }
    // A token cannot be revoked before its exp: one that lives for ever is refused.
    if exp > now.saturating_add(MAX_TTL_SECS) {
        return Err(Malformed(
            "token: exp is more than 366 days ahead; tokens are meant to be short-lived",
        ));
    }
    // RFC 7519 §4.1.5: not accepted before nbf (less the leeway), when there is one.
    match claims.nbf.map(|nbf| nbf.as_u64()) {
        None => {}
        Some(None) => return Err(Malformed("token: nbf must be whole seconds since 1970")),
        Some(Some(nbf)) if now.saturating_add(LEEWAY_SECS) < nbf => {
            return Err(Malformed("token: not valid yet (nbf)"));
        }
        Some(Some(_)) => {}
    }
    let sub = match claims.sub {
        Some(serde_json::Value::String(sub)) if api::check_name(&sub).is_ok() => sub,
        _ => {
            return Err(Malformed(
                "token: sub must be a name by the rules of from (1 to 40 characters; nothing \
                 invisible, combining or direction-changing; single spaces, none at either end)",
            ))
        }
    };
    let rooms = match claims.rooms {
        None => Vec::new(),
        Some(serde_json::Value::Array(rooms)) => rooms
            .into_iter()
            .map(|room| match room {
                serde_json::Value::String(room) if room == "*" || api::valid_room(&room) => {
                    Ok(room)
                }
                _ => Err(Malformed("token: rooms must be room names or \"*\"")),
            })
            .collect::<Result<_, _>>()?,
        // PROTOCOL.md allows "*" alone, not only in a list.
        Some(serde_json::Value::String(star)) if star == "*" => vec![star],
        Some(_) => {
            return Err(Malformed(
                "token: rooms must be a list of room names, or \"*\"",
            ))
        }
    };
    Ok(Identity { sub, exp, rooms })
}

/// Makes a token for `sub`, good for `rooms` until `now + ttl_secs` (what `comet-chat token`
/// prints, and what a site's own code would do with any JWT library).
pub fn mint(secret: &Secret, sub: &str, rooms: &[String], ttl_secs: u64, now: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "sub": sub,
        "rooms": rooms,
        "iat": now,
        "exp": now + ttl_secs,
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = secret.mac();
    mac.update(format!("{header}.{claims}").as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{claims}.{signature}")
}

/// `comet-chat token --secret-file PATH --sub NAME [--rooms a,b] [--ttl 1h]`: the token
/// (or the usage, for `--help`), or why not. `--rooms` defaults to `*` (every public room), `--ttl` to an hour.
pub fn mint_command<I>(args: I) -> Result<Minted, String>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    use lexopt::Arg::Long;
    let mut parser = lexopt::Parser::from_iter(
        std::iter::once("token".into()).chain(args.into_iter().map(Into::into)),
    );
    let (mut secret_file, mut sub, mut rooms, mut ttl) = (None, None, vec!["*".to_owned()], 3600);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let flag = match arg {
            Long(flag) => flag.to_owned(),
            lexopt::Arg::Short('h') => return Ok(Minted::Usage),
            other => return Err(format!("{}\n{MINT_USAGE}", other.unexpected())),
        };
        let mut value = || -> Result<String, String> {
            let value = parser.value().map_err(|e| format!("--{flag}: {e}"))?;
            value
                .into_string()
                .map_err(|_| "values must be UTF-8".to_owned())
        };
        match flag.as_str() {
            "secret-file" => secret_file = Some(value()?),
            "sub" => {
                let name = value()?;
                api::check_name(&name).map_err(|e| format!("--sub: {}", e.message))?;
                sub = Some(name);
            }
            "rooms" => {
                rooms = value()?.split(',').map(str::to_owned).collect();
                if let Some(bad) = rooms.iter().find(|r| *r != "*" && !api::valid_room(r)) {
                    return Err(format!(
                        "--rooms: '{bad}' is not a room name (A-Z a-z 0-9 _ -) or *"
                    ));
                }
            }
            "ttl" => ttl = parse_ttl(&value()?)?,
            "help" => return Ok(Minted::Usage),
            other => return Err(format!("unknown option --{other}\n{MINT_USAGE}")),
        }
    }
    let secret_file = secret_file.ok_or(format!("--secret-file is required\n{MINT_USAGE}"))?;
    let sub = sub.ok_or(format!("--sub is required\n{MINT_USAGE}"))?;
    let secret = Secret::load(Path::new(&secret_file))?;
    Ok(Minted::Token(mint(&secret, &sub, &rooms, ttl, now_secs())))
}

/// What `comet-chat token` prints, to stdout.
#[derive(Debug, PartialEq, Eq)]
pub enum Minted {
    /// A token, as asked.
    Token(String),
    /// `--help` or `-h`: how it is used.
    Usage,
}

/// How `comet-chat token` is used.
pub const MINT_USAGE: &str = "USAGE: comet-chat token --secret-file PATH --sub NAME \
                              [--rooms ROOM,ROOM|*] [--ttl 1h|30m|90s]";

/// The longest a token may live, from now to its `exp`: a year (and the longest `--ttl`).
/// Tokens are meant to be short-lived and renewed, since none can be revoked.
pub const MAX_TTL_SECS: u64 = 366 * 24 * 3600;

/// `90`, `90s`, `30m`, `1h`, `2d`: seconds.
fn parse_ttl(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("--ttl: '{text}' is not like 90s, 30m, 1h or 2d")),
    };
    match digits.parse::<u64>() {
        Ok(n) if n > 0 && n.saturating_mul(scale) <= MAX_TTL_SECS => Ok(n * scale),
        _ => Err(format!("--ttl: '{text}' is not a time from 1s to 366d")),
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn secret() -> Secret {
        Secret::from_bytes(&[7u8; 32])
    }

    fn rooms(list: &[&str]) -> Vec<String> {
        list.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn a_minted_token_verifies_and_grants_its_rooms() {
        let token = mint(&secret(), "ann", &rooms(&["garden", "*"]), 60, NOW);
        let who = verify(&token, &secret(), NOW).unwrap();
        assert_eq!(who.sub, "ann");
        assert_eq!(who.exp, NOW + 60);
        assert!(who.may_enter("garden", Some("p-")));
        assert!(who.may_enter("lobby", Some("p-")), "* covers public rooms");
        assert!(!who.may_enter("p-board", Some("p-")), "never a private one");
        let named = verify(
            &mint(&secret(), "ann", &rooms(&["p-board"]), 60, NOW),
            &secret(),
            NOW,
        )
        .unwrap();
        assert!(
            named.may_enter("p-board", Some("p-")),
            "a private room named outright"
        );
        assert!(!named.may_enter("garden", Some("p-")));
    }

    #[test]
    fn expiry_has_a_five_second_leeway_and_no_more() {
        let token = mint(&secret(), "ann", &rooms(&["*"]), 10, NOW);
        assert!(verify(&token, &secret(), NOW + 10 + LEEWAY_SECS - 1).is_ok());
        assert_eq!(
            verify(&token, &secret(), NOW + 10 + LEEWAY_SECS),
            Err(Refusal::Expired)
        );
    }

    fn forge(header: &str, claims: &str, key: &[u8]) -> String {
        let (h, c) = (
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims),
        );
        let mut mac = HmacSha256::new_from_slice(key).unwrap();
        mac.update(format!("{h}.{c}").as_bytes());
        format!(
            "{h}.{c}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn rooms_may_be_a_list_or_the_star_alone() {
        let good = r#"{"alg":"HS256","typ":"JWT"}"#;
        let key = [7u8; 32];
        for (rooms, granted) in [
            (r#""*""#, vec!["*"]),
            (r#"["*"]"#, vec!["*"]),
            (r#"["a","b"]"#, vec!["a", "b"]),
        ] {
            let claims = format!(r#"{{"sub":"ann","rooms":{rooms},"exp":{}}}"#, NOW + 60);
            let who = verify(&forge(good, &claims, &key), &secret(), NOW).unwrap();
            assert_eq!(who.rooms, granted, "{rooms}");
            assert!(
                who.may_enter("lobby", Some("p-")) == granted.contains(&"*"),
                "{rooms}"
            );
        }
    }

    #[test]
    fn what_is_refused_and_why() {
        let claims = format!(r#"{{"sub":"ann","rooms":["*"],"exp":{}}}"#, NOW + 60);
        let good = r#"{"alg":"HS256","typ":"JWT"}"#;
        let key = [7u8; 32];
        assert!(verify(&forge(good, &claims, &key), &secret(), NOW).is_ok());
        // alg none, with no signature or an empty one.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(&claims)
        );
        assert!(matches!(
            verify(&none, &secret(), NOW),
            Err(Refusal::Malformed(_))
        ));
        // An extension we would have to understand, and every other `crit`: RFC 7515
        // §4.1.11 allows only a non-empty list of names, and we understand none, so
        // whatever its value (`null`, which serde would read as "absent", included), a
        // header that has a `crit` is refused.
        for crit in [
            r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
            r#"{"alg":"HS256","crit":null}"#,
            r#"{"alg":"HS256","crit":[]}"#,
            r#"{"alg":"HS256","crit":"b64"}"#,
            r#"{"alg":"HS256","crit":[null]}"#,
            r#"{"alg":"HS256","crit":{}}"#,
            r#"{"alg":"HS256","crit":false}"#,
        ] {
            let refused = verify(&forge(crit, &claims, &key), &secret(), NOW);
            assert!(
                matches!(refused, Err(Refusal::Malformed(m)) if m.contains("crit")),
                "{crit}: {refused:?}"
            );
        }
        // nbf within the leeway is fine.
        let soon = format!(
            r#"{{"sub":"ann","rooms":["*"],"exp":{},"nbf":{}}}"#,
            NOW + 60,
            NOW + 5
        );
        assert!(verify(&forge(good, &soon, &key), &secret(), NOW).is_ok());
        // Another algorithm, even signed with our secret (the RS/HS confusion).
        assert!(matches!(
            verify(&forge(r#"{"alg":"RS256"}"#, &claims, &key), &secret(), NOW),
            Err(Refusal::Malformed(_))
        ));
        // Signed with another secret.
        assert_eq!(
            verify(&forge(good, &claims, &[8u8; 32]), &secret(), NOW),
            Err(Refusal::BadSignature)
        );
        // Claims that break the rules, correctly signed.
        for bad in [
            r#"{"sub":"ann","rooms":["*"]}"#.to_owned(),
            format!(r#"{{"sub":"a\nb","rooms":["*"],"exp":{}}}"#, NOW + 60),
            format!(
                r#"{{"sub":"a\r\nX-Injected: 1","rooms":["*"],"exp":{}}}"#,
                NOW + 60
            ),
            format!(r#"{{"sub":"","rooms":["*"],"exp":{}}}"#, NOW + 60),
            format!(r#"{{"sub":5,"rooms":["*"],"exp":{}}}"#, NOW + 60),
            format!(r#"{{"sub":"ann","rooms":["a/b"],"exp":{}}}"#, NOW + 60),
            format!(r#"{{"sub":"ann","rooms":"lobby","exp":{}}}"#, NOW + 60),
            format!(r#"{{"sub":"ann","rooms":5,"exp":{}}}"#, NOW + 60),
            format!(r#"{{"sub":"ann","rooms":["*"],"exp":"{}"}}"#, NOW + 60),
            format!(r#"{{"sub":"ann","rooms":["*"],"exp":{}}}"#, u64::MAX),
            format!(
                r#"{{"sub":"ann","rooms":["*"],"exp":{}}}"#,
                NOW + MAX_TTL_SECS + 1
            ),
            format!(
                r#"{{"sub":"ann","rooms":["*"],"exp":{},"nbf":{}}}"#,
                NOW + 60,
                NOW + 6
            ),
            format!(
                r#"{{"sub":"ann","rooms":["*"],"exp":{},"nbf":"x"}}"#,
                NOW + 60
            ),
        ] {
            let refused = verify(&forge(good, &bad, &key), &secret(), NOW);
            assert!(
                matches!(refused, Err(Refusal::Malformed(_))),
                "{bad}: {refused:?}"
            );
        }
        for shape in ["", "a.b", "a.b.c.d", "!!!.!!!.!!!"] {
            assert!(verify(shape, &secret(), NOW).is_err(), "{shape:?}");
        }
        assert_eq!(
            verify(&"a".repeat(MAX_TOKEN_BYTES + 1), &secret(), NOW),
            Err(Refusal::Malformed("token: too long"))
        );
    }

    #[test]
    fn a_short_secret_is_refused_at_start_up() {
        let dir = std::env::temp_dir().join(format!("comet-secret-{}", std::process::id()));
        std::fs::write(&dir, "short\n").unwrap();
        assert!(Secret::load(&dir).unwrap_err().contains("at least 32"));
        std::fs::write(&dir, format!("{}\n", "k".repeat(40))).unwrap();
        assert_eq!(
            format!("{:?}", Secret::load(&dir).unwrap()),
            "Secret(40 bytes)"
        );
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn the_mint_command() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        for bad in ["", "0", "1w", "h", "367d", "-1"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
        let path = std::env::temp_dir().join(format!("comet-mint-{}", std::process::id()));
        std::fs::write(&path, "k".repeat(32)).unwrap();
        let file = path.to_str().unwrap();
        let minted = mint_command(["--secret-file", file, "--sub", "ann", "--rooms", "a,b"]);
        let Ok(Minted::Token(token)) = minted else {
            panic!("{minted:?}")
        };
        let who = verify(&token, &Secret::load(&path).unwrap(), now_secs()).unwrap();
        assert_eq!((who.sub.as_str(), who.rooms.len()), ("ann", 2));
        assert!(who.exp >= now_secs() + 3590, "an hour by default");
        assert!(mint_command(["--secret-file", file])
            .unwrap_err()
            .contains("--sub"));
        assert!(mint_command(["--secret-file", file, "--sub", "a\nb"]).is_err());
        assert!(mint_command(["--secret-file", file, "--sub", "ann", "--rooms", "a/b"]).is_err());
        assert_eq!(mint_command(["--help"]), Ok(Minted::Usage));
        assert_eq!(mint_command(["-h"]), Ok(Minted::Usage));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn every_single_byte_change_is_refused() {
        // Exhaustive, where tests/properties.rs samples through the whole request path.
        let good = mint(&secret(), "ann", &rooms(&["r"]), 60, NOW);
        assert!(verify(&good, &secret(), NOW).is_ok());
        for i in 0..good.len() {
            for byte in 0..=255u8 {
                let mut changed = good.clone().into_bytes();
                if changed[i] == byte {
                    continue;
                }
                changed[i] = byte;
                if let Ok(changed) = std::str::from_utf8(&changed) {
                    assert!(
                        verify(changed, &secret(), NOW).is_err(),
                        "byte {i} → {byte}"
                    );
                }
            }
        }
    }
}
