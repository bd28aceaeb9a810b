//! JSON string escaping: the only JSON the server writes is objects of short strings, so a
//! few lines of escaping beat a serialisation framework (and keep the broadcast path free of
//! intermediate values).

use std::fmt::Write as _;

/// Appends `text` to `out` as the inside of a JSON string literal.
///
/// Escapes `"` and `\`, the two-character forms for `\n \r \t \b \f`, and `\u00XX` for every
/// other control character. Everything else, non-ASCII included, is copied unchanged: JSON is
/// UTF-8 and our responses say so.
pub fn escape_into(out: &mut String, text: &str) {
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' || c == '\u{7f}' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// `{"<key>":"<escaped value>"}`, the shape of every chat response.
pub fn object1(key: &str, value: &str) -> String {
    let mut out = String::with_capacity(value.len() + key.len() + 8);
    out.push_str("{\"");
    escape_into(&mut out, key);
    out.push_str("\":\"");
    escape_into(&mut out, value);
    out.push_str("\"}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let cases = [
            ("plain", "plain"),
            ("a \"quote\"", "a \\\"quote\\\""),
            ("back\\slash", "back\\\\slash"),
            ("line\nbreak\r\ttab", "line\\nbreak\\r\\ttab"),
            ("\u{8}\u{c}", "\\b\\f"),
            ("\u{0}\u{1f}\u{7f}", "\\u0000\\u001f\\u007f"),
            ("héllo wörld €😀", "héllo wörld €😀"),
            ("</script>", "</script>"),
        ];
        for (input, expected) in cases {
            let mut out = String::new();
            escape_into(&mut out, input);
            assert_eq!(out, expected, "{input:?}");
        }
    }

    #[test]
    fn object_shape() {
        assert_eq!(object1("ok", "hi \"x\""), r#"{"ok":"hi \"x\""}"#);
    }
}
