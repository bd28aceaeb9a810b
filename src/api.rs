//! The inputs of every way into a room — room names, query strings, post bodies (form or
//! JSON, and the classic `POST /chat` form), names and texts — checked once, here, by one set
//! of rules, so that everything past this module can trust them. Every refusal carries the
//! status and a sentence a client author can act on.

use crate::http::{self, Status};
use crate::position::Position;

/// Longest name (`from`), in characters.
pub const MAX_NAME_CHARS: usize = 40;
/// Longest `client_id`, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 64;
/// Longest room name, in bytes.
pub const MAX_ROOM_BYTES: usize = 64;

/// The name a classic `POST /chat` is stored under when it sends no `from`. The 2008
/// protocol had no names; an empty one would show as nobody in room clients.
pub const ANONYMOUS: &str = "anonymous";

/// A refused input: the status and what was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The status to answer.
    pub status: Status,
    /// Goes into `{"error":"…"}`.
    pub message: &'static str,
}

const fn bad(message: &'static str) -> ApiError {
    ApiError {
        status: Status::BAD_REQUEST,
        message,
    }
}

/// A message a client wants to post.
#[derive(Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// Who says it.
    pub from: String,
    /// What they say.
    pub text: String,
    /// A client-chosen id that makes retries safe.
    pub client_id: Option<String>,
}

/// `[A-Za-z0-9_-]{1,64}`.
pub fn valid_room(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ROOM_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Characters that show nothing (Unicode's default-ignorable code points, and the blank
/// fillers), or turn the text around them (bidi marks, overrides and isolates): with them
/// one name can pass for another in presence and in `from`. The few invisible characters
/// that emoji and some scripts need are [`situational`] instead.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{34F}'
            | '\u{61C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'
            | '\u{200E}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E001F}'
            | '\u{E0080}'..='\u{E0FFF}'
    )
}

/// Characters that show nothing by themselves, or only change the one before them, and
/// that a name may hold only where they do what they are for ([`in_its_place`]): the
/// joiners, the variation selectors, the tag characters, and the combining marks of Latin,
/// Greek and Cyrillic.
fn situational(c: char) -> bool {
    matches!(
        c,
        '\u{200C}'
            | '\u{200D}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{E0020}'..='\u{E007F}'
            | '\u{300}'..='\u{36F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE20}'..='\u{FE2F}'
    )
}

/// Whether the [`situational`] character `c`, between `before` and `after`, does what it
/// is for: a joiner between two characters of a non-Latin script or emoji (`👩‍💻`,
/// Persian's non-joiner), an emoji presentation selector after a symbol or emoji (`❤️`), a
/// tag character after the black flag or another tag (a subdivision flag). Anywhere else
/// it only hides (`Zoë` and `Zoë` with a joiner after it look the same), and so do the
/// other variation selectors and the combining marks, whose letters all have precomposed
/// forms in the names people write.
fn in_its_place(before: Option<char>, c: char, after: Option<char>) -> bool {
    let non_latin = |c: Option<char>| {
        c.is_some_and(|c| {
            !matches!(c, '\0'..='\u{24F}' | '\u{1E00}'..='\u{1EFF}')
                && !invisible(c)
                && !situational(c)
        })
    };
    let symbol_or_emoji = |c: Option<char>| {
        matches!(
            c,
            Some('\u{2000}'..='\u{2BFF}' | '\u{3030}' | '\u{303D}' | '\u{3297}' | '\u{3299}')
                | Some('\u{1F000}'..='\u{1FAFF}')
        )
    };
    match c {
        '\u{200C}' | '\u{200D}' => non_latin(before) && non_latin(after),
        '\u{FE0E}' | '\u{FE0F}' => symbol_or_emoji(before),
        '\u{E0020}'..='\u{E007F}' => {
            matches!(before, Some('\u{1F3F4}' | '\u{E0020}'..='\u{E007E}'))
        }
        _ => false,
    }
}

/// A name: 1 to 40 characters, none a control character, none invisible or changing the
/// direction of the text except where emoji and scripts need it, no combining mark that a
/// precomposed letter spells, and no space but the plain one, one at a time and never at
/// either end: so no two names that differ look alike for those reasons.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(bad("from: a name is required"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(bad("from: names are at most 40 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("from: control characters are not allowed in names"));
    }
    if name.trim() != name || name.contains("  ") {
        return Err(bad(
            "from: a name cannot start or end with a space, nor hold two in a row",
        ));
    }
    if name.chars().any(|c| c.is_whitespace() && c != ' ') {
        return Err(bad(
            "from: the only space allowed in names is the plain one",
        ));
    }
    let chars: Vec<char> = name.chars().collect();
    for (at, &c) in chars.iter().enumerate() {
        let before = at.checked_sub(1).map(|b| chars[b]);
        let after = chars.get(at + 1).copied();
        if invisible(c) || (situational(c) && !in_its_place(before, c, after)) {
            return Err(bad(
                "from: invisible, combining or direction-changing characters are not allowed \
                 in names, but where emoji and scripts need them",
            ));
        }
    }
    Ok(())
}

/// A text as it is stored and delivered: line breaks made LF (a `<textarea>` submits CRLF,
/// and old Macs wrote a lone CR), so the same text is the same whichever way it came; then
/// not blank, at most `max_bytes` (413 past it) once normalised, and no control characters
/// but newline and TAB (people paste code).
pub fn normalize_text(text: String, max_bytes: usize) -> Result<String, ApiError> {
    let text = if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text
    };
    check_text(&text, max_bytes)?;
    Ok(text)
}

/// The rules of [`normalize_text`] for a text already normalised.
fn check_text(text: &str, max_bytes: usize) -> Result<(), ApiError> {
    if text.len() > max_bytes {
        return Err(ApiError {
            status: Status::PAYLOAD_TOO_LARGE,
            message: "text: longer than the server's --max-message",
        });
    }
    if text.trim().is_empty() {
        return Err(bad("text: a message cannot be empty"));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(bad(
            "text: control characters other than newline and tab are not allowed",
        ));
    }
    Ok(())
}

fn check_client_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_CLIENT_ID_BYTES || id.chars().any(char::is_control) {
        return Err(bad("client_id: 1 to 64 bytes, no control characters"));
    }
    Ok(())
}

/// One query-string parameter, form-decoded.
pub fn query_param(query: Option<&str>, key: &str) -> Result<Option<String>, ApiError> {
    match query {
        None => Ok(None),
        Some(query) => http::form_field(query.as_bytes(), key)
            .map_err(|_| bad("query string is not valid URL-encoded UTF-8")),
    }
}

/// The position a client resumes from: `Last-Event-ID` if sent, else `?since=`. An
/// EventSource keeps the URL it was opened with (and so its original `since`) but sends the
/// id of the last event it saw when it reconnects, which is the newer of the two. Empty or
/// `0` means "from the start".
pub fn resume_position(
    query: Option<&str>,
    last_event_id: Option<&str>,
) -> Result<Option<Position>, ApiError> {
    let since = query_param(query, "since")?;
    match last_event_id.or(since.as_deref()) {
        None | Some("") | Some("0") => Ok(None),
        Some(text) => Position::parse(text)
            .map(Some)
            .map_err(|_| bad("since: a position looks like 5f3a09c2-42")),
    }
}

/// The optional `name` of a poll or stream, for presence. With a token (`signed` is its
/// `sub`) the name is the token's: `name=` may be left out, and may not differ.
pub fn presence_name(
    query: Option<&str>,
    signed: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let given = query_param(query, "name")?.filter(|name| !name.is_empty());
    match (given, signed) {
        (None, None) => Ok(None),
        (given, signed) => signed_name(given, signed, "name").map(Some),
    }
}

/// The name a request acts under: what the client sent, or, with a token, the token's
/// `sub`, which the client may leave out but not contradict. A name that disagrees is
/// refused rather than replaced, so a client that tries to post as someone else finds out.
fn signed_name(
    given: Option<String>,
    signed: Option<&str>,
    field: &'static str,
) -> Result<String, ApiError> {
    match (given, signed) {
        (Some(given), Some(signed)) if given != signed => Err(bad(match field {
            "name" => "name: your token names you otherwise; leave name out, or send the token's",
            _ => "from: your token names you otherwise; leave from out, or send the token's",
        })),
        // The token's sub passed the same rules when the token was checked.
        (_, Some(signed)) => Ok(signed.to_owned()),
        (Some(given), None) => check_name(&given).map(|()| given),
        (None, None) => Err(bad("from: a name is required")),
    }
}

/// The body of `POST /rooms/{room}/messages`: form (`from`, `text`, `client_id`) or JSON
/// (`{"from":…,"text":…,"client_id":…}`), chosen by Content-Type.
pub fn parse_message(
    content_type: Option<&str>,
    body: &[u8],
    max_text_bytes: usize,
    signed: Option<&str>,
) -> Result<NewMessage, ApiError> {
    let [from, text, client_id] = string_fields(content_type, body, ["from", "text", "client_id"])?;
    let from = signed_name(from, signed, "from")?;
    let text = normalize_text(
        text.ok_or(bad("text: a message is required"))?,
        max_text_bytes,
    )?;
    if let Some(id) = &client_id {
        check_client_id(id)?;
    }
    Ok(NewMessage {
        from,
        text,
        client_id,
    })
}

/// The body of a classic `POST /chat`: always a form, `message` (the text) and an optional
/// `from`, which is [`ANONYMOUS`] when absent (the token's `sub` with a token). The same
/// rules as a room post, so every way into a room stores only valid names and texts.
pub fn parse_classic_post(
    body: &[u8],
    max_text_bytes: usize,
    signed: Option<&str>,
) -> Result<NewMessage, ApiError> {
    // No content type: the classic protocol has only ever been form-encoded.
    let [text, from] = string_fields(None, body, ["message", "from"])?;
    let text = text.ok_or(bad("text: a message is required"))?;
    let from = match (from, signed) {
        (None, None) => ANONYMOUS.to_owned(),
        (from, signed) => signed_name(from, signed, "from")?,
    };
    let text = normalize_text(text, max_text_bytes)?;
    Ok(NewMessage {
        from,
        text,
        client_id: None,
    })
}

/// The `from` of `POST /rooms/{room}/typing` (form or JSON; the token's `sub` with a token).
pub fn parse_typing(
    content_type: Option<&str>,
    body: &[u8],
    signed: Option<&str>,
) -> Result<String, ApiError> {
    let [from] = string_fields(content_type, body, ["from"])?;
    signed_name(from, signed, "from")
}

/// The named string fields of a post body: a JSON object when the Content-Type says JSON,
/// form fields otherwise. An absent field (or JSON null) is `None`.
fn string_fields<const N: usize>(
    content_type: Option<&str>,
    body: &[u8],
    names: [&str; N],
) -> Result<[Option<String>; N], ApiError> {
    if !is_json(content_type) {
        return each_field(names, |name| {
            http::form_field(body, name).map_err(|_| bad("body is not valid URL-encoded UTF-8"))
        });
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| bad("body is not valid JSON"))?;
    if !value.is_object() {
        return Err(bad("body must be a JSON object"));
    }
    each_field(names, |name| match value.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad("fields must be JSON strings")),
    })
}

fn each_field<const N: usize>(
    names: [&str; N],
    mut read: impl FnMut(&str) -> Result<Option<String>, ApiError>,
) -> Result<[Option<String>; N], ApiError> {
    let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
    for (value, name) in values.iter_mut().zip(names) {
        *value = read(name)?;
    }
    Ok(values)
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        for good in ["lobby", "a", "Room_1-x", &"r".repeat(64)] {
            assert!(valid_room(good), "{good}");
        }
        for bad in ["", "a b", "a/b", "ü", "..", &"r".repeat(65), "a%20"] {
            assert!(!valid_room(bad), "{bad}");
        }
    }

    #[test]
    fn names_and_texts() {
        assert!(check_name("ann").is_ok());
        assert!(check_name("Ann Éclair 😀").is_ok());
        assert!(
            check_name("👩\u{200D}💻 dev").is_ok(),
            "emoji need the joiner"
        );
        for bad in [
            "",
            "  ",
            "a\nb",
            "a\u{7}",
            &"n".repeat(41),
            "ann\u{202E}",         // right-to-left override
            "a\u{200B}nn",         // zero-width space
            "\u{2066}ann\u{2069}", // an isolate
            "\u{FEFF}ann",
            "a\u{200D}nn", // a joiner inside a Latin name hides
            "ann\u{FE0F}",
            "\u{3164}", // a Hangul filler, which shows nothing
            "ann ",     // the same as "ann" to the eye
            " ann",
            "ann\u{A0}b", // a no-break space
            "a\u{E0041}", // a tag character after ASCII
        ] {
            assert_eq!(
                check_name(bad).unwrap_err().status,
                Status::BAD_REQUEST,
                "{bad:?}"
            );
        }
        assert!(check_text("two\nlines", 100).is_ok());
        let text = |t: &str, max| normalize_text(t.to_owned(), max);
        assert_eq!(text("x\ty", 100).as_deref(), Ok("x\ty"), "tabs are text");
        for (sent, stored) in [("a\r\nb", "a\nb"), ("a\rb", "a\nb"), ("a\r\r\nb", "a\n\nb")] {
            assert_eq!(text(sent, 100).as_deref(), Ok(stored), "{sent:?}");
        }
        assert!(
            text("ab\r\n", 3).is_ok(),
            "the byte count runs after CRLF becomes LF"
        );
        for refused in ["a\u{7}b", "a\0b", "a\u{1B}[31m", "a\u{85}b", "\r\n\t"] {
            assert_eq!(
                text(refused, 100).unwrap_err().status,
                Status::BAD_REQUEST,
                "{refused:?}"
            );
        }
        assert_eq!(
            check_text(" \n ", 100).unwrap_err().status,
            Status::BAD_REQUEST
        );
        assert_eq!(
            check_text("é", 1).unwrap_err().status,
            Status::PAYLOAD_TOO_LARGE
        );
        assert!(check_text(&"x".repeat(100), 100).is_ok());
    }

    #[test]
    fn form_and_json_posts() {
        let form = parse_message(
            Some("application/x-www-form-urlencoded"),
            b"from=ann&text=hi+there&client_id=c-1",
            4096,
            None,
        )
        .unwrap();
        let json = parse_message(
            Some("application/json; charset=utf-8"),
            br#"{"from":"ann","text":"hi there","client_id":"c-1"}"#,
            4096,
            None,
        )
        .unwrap();
        assert_eq!(form, json);
        assert_eq!(form.text, "hi there");
        let cases: &[(&str, &[u8], u16)] = &[
            ("application/json", b"{", 400),
            ("application/json", b"[1]", 400),
            ("application/json", br#"{"from":"a","text":5}"#, 400),
            ("application/json", br#"{"text":"x"}"#, 400),
            ("application/x-www-form-urlencoded", b"from=a", 400),
            ("application/x-www-form-urlencoded", b"from=a&text=%FF", 400),
            (
                "application/x-www-form-urlencoded",
                b"from=a&text=x&client_id=",
                400,
            ),
        ];
        for (ct, body, status) in cases {
            let err = parse_message(Some(ct), body, 4096, None).unwrap_err();
            assert_eq!(
                err.status.code,
                *status,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn classic_posts() {
        let post = |body: &str| parse_classic_post(body.as_bytes(), 10, None);
        let anonymous = post("message=hi").unwrap();
        assert_eq!(
            (anonymous.from.as_str(), anonymous.text.as_str()),
            (ANONYMOUS, "hi")
        );
        assert_eq!(post("from=ann&message=hi").unwrap().from, "ann");
        let cases: &[(&str, u16)] = &[
            ("", 400),
            ("message=%20", 400),
            ("message=a%07b", 400),
            ("message=hi&from=", 400),
            ("message=hi&from=a%1Bb", 400),
            ("message=hi&from=%zz", 400),
            ("message=12345678901", 413),
        ];
        for (body, status) in cases {
            assert_eq!(post(body).unwrap_err().status.code, *status, "{body:?}");
        }
    }

    #[test]
    fn typing_bodies() {
        let form = parse_typing(Some("application/x-www-form-urlencoded"), b"from=ann", None);
        let json = parse_typing(Some("application/json"), br#"{"from":"ann"}"#, None);
        assert_eq!(form, Ok("ann".to_owned()));
        assert_eq!(json, form);
        for body in [&br#"{"from":5}"#[..], b"[]", b"{}"] {
            let err = parse_typing(Some("application/json"), body, None).unwrap_err();
            assert_eq!(err.status, Status::BAD_REQUEST);
        }
    }

    #[test]
    fn resume_positions() {
        assert_eq!(resume_position(None, None), Ok(None));
        assert_eq!(resume_position(Some("since=0"), None), Ok(None));
        let p = Position { epoch: 1, seq: 2 };
        assert_eq!(resume_position(Some("since=00000001-2"), None), Ok(Some(p)));
        assert_eq!(resume_position(None, Some("00000001-2")), Ok(Some(p)));
        assert_eq!(
            resume_position(Some("since=00000009-9"), Some("00000001-2")),
            Ok(Some(p)),
            "Last-Event-ID, sent on reconnect, is newer than the URL's since"
        );
        assert!(resume_position(Some("since=nonsense"), None).is_err());
    }

    #[test]
    fn with_a_token_the_name_is_the_tokens() {
        let form = Some("application/x-www-form-urlencoded");
        let post = |body: &[u8]| parse_message(form, body, 4096, Some("ann"));
        assert_eq!(post(b"text=hi").unwrap().from, "ann", "from left out");
        assert_eq!(
            post(b"from=ann&text=hi").unwrap().from,
            "ann",
            "from agrees"
        );
        let spoofed = post(b"from=bob&text=hi").unwrap_err();
        assert_eq!(spoofed.status, Status::BAD_REQUEST);
        assert!(spoofed.message.contains("token"), "{}", spoofed.message);
        assert_eq!(parse_typing(form, b"", Some("ann")).unwrap(), "ann");
        assert!(parse_typing(form, b"from=bob", Some("ann")).is_err());
        let classic = parse_classic_post(b"message=hi", 100, Some("ann")).unwrap();
        assert_eq!(classic.from, "ann", "never anonymous with a token");
        assert!(parse_classic_post(b"message=hi&from=bob", 100, Some("ann")).is_err());
        assert_eq!(
            presence_name(None, Some("ann")).unwrap().as_deref(),
            Some("ann")
        );
        assert_eq!(
            presence_name(Some("name="), Some("ann"))
                .unwrap()
                .as_deref(),
            Some("ann")
        );
        assert!(presence_name(Some("name=bob"), Some("ann")).is_err());
        assert_eq!(presence_name(None, None).unwrap(), None);
    }
}
