//! `--cors-origin`'s value, held to the spelling a browser sends in `Origin`:
//! `Access-Control-Allow-Origin` must match that header byte for byte, so an origin with a
//! path, upper case or a default port would start fine and never let a page in. Its own
//! module because it is the one flag value with a grammar of its own.

/// An origin as a browser sends it in `Origin`: `scheme://host[:port]`, nothing after it,
/// since `Access-Control-Allow-Origin` must match that header byte for byte.
pub(super) fn check_origin(text: &str) -> Result<(), String> {
    let wrong = |why: &str| {
        Err(format!(
            "'{text}' is not an origin ({why}); an origin is scheme://host[:port], \
             like https://chat.example or http://localhost:3000"
        ))
    };
    let Some((scheme, rest)) = text.split_once("://") else {
        return wrong("no scheme://");
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return wrong("the scheme is not a scheme");
    }
    if rest.contains(['/', '?', '#']) {
        return wrong("an origin has no path, query or fragment, not even a trailing /");
    }
    // A bracketed IPv6 host holds colons of its own; the port is what follows the `]`.
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, port)) => match port.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return wrong("something follows the IPv6 address"),
            },
            None => return wrong("an unclosed ["),
        },
        None => match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
    if !host_ok {
        return wrong("the host is empty or holds characters a host cannot");
    }
    if let Some(port) = port {
        let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
        if !digits || port.parse::<u16>().is_err() {
            return wrong("the port is not a number from 0 to 65535");
        }
    }
    // Browsers serialize an origin in lower case and without the scheme's default port;
    // any other spelling would start fine and then never match a page's `Origin`.
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => Some("80"),
        "https" => Some("443"),
        _ => None,
    };
    let host = host.to_ascii_lowercase();
    let host = if rest.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let port = port
        .filter(|port| Some(*port) != default_port)
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    let browsers_send = format!("{scheme}://{host}{port}");
    if browsers_send != text {
        return Err(format!(
            "'{text}' is not how a browser sends this origin: give '{browsers_send}' (lower \
             case, no default port), since Access-Control-Allow-Origin must match the \
             page's Origin byte for byte"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::parse::run;

    /// A browser's `Origin` is lower case and leaves out the scheme's default port, and
    /// `Access-Control-Allow-Origin` must match it byte for byte: an origin spelled any
    /// other way would start fine and then never let a page in, so it is refused with the
    /// spelling that works.
    #[test]
    fn a_cors_origin_is_refused_unless_spelled_as_browsers_send_it() {
        for (origin, suggestion) in [
            ("HTTPS://a.example", "https://a.example"),
            ("https://Chat.Example", "https://chat.example"),
            ("https://a.example:443", "https://a.example"),
            ("http://a.example:80", "http://a.example"),
            ("http://[::1]:80", "http://[::1]"),
        ] {
            let err = run(&["--cors-origin", origin]).unwrap_err();
            assert!(
                err.starts_with("--cors-origin: ") && err.contains(&format!("'{suggestion}'")),
                "{origin}: {err}"
            );
        }
        for origin in ["https://a.example:8443", "http://a.example:443"] {
            let config = run(&["--cors-origin", origin]).unwrap();
            assert_eq!(config.cors_origin.as_deref(), Some(origin));
        }
    }
}
