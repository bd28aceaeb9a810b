//! Where a RESP2 frame from Redis ends, found before anything is decoded, without recursion
//! and within caps. Redis is trusted, but what answers at the `--redis` address may be a
//! wrong port, a proxy or a bug, and the `redis-protocol` decoder trusts what it reads: it
//! recurses once per nested array (30,000 `*1\r\n` overflow the stack) and a peer that
//! announces `$9999999999` would have the link buffer everything that follows. So the link
//! hands the decoder only a frame this scanner has found complete, no deeper than
//! [`Caps::depth`] and no longer than [`Caps::frame_bytes`]; anything else is a
//! [`Breach`], and the link is dropped and made again.
//!
//! The scanner is resumable: a frame that arrives in pieces is scanned once, element by
//! element, not from its start again at each read (a peer trickling a reply byte by byte
//! would otherwise cost quadratic time).

/// How much one reply may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Bytes of one whole frame, its framing included; also caps each bulk string in it.
    pub frame_bytes: usize,
    /// Arrays open at once: 1 for a flat array.
    pub depth: usize,
}

/// Arrays nested in the deepest reply the backplane asks for: a room's history
/// (`{epoch, seq, entries, names}` → entry → `{id, fields}` → fields) is 4 deep. Twice
/// that leaves room for a Redis that wraps a reply, and costs the decoder's recursion
/// nothing worth counting.
pub const DEPTH_MAX: usize = 8;

/// Longest line (a simple string, an error, an integer, a length) in bytes. Redis's own
/// error replies and status lines are a sentence; its inline-request cap is this same
/// 64 KiB. A longer line is not Redis.
pub const LINE_BYTES_MAX: usize = 64 * 1024;

/// Bytes of a peer's text (an error reply, say) that one log line shows. Redis's own
/// errors are a sentence; whatever else answers at the address may send a line of
/// [`LINE_BYTES_MAX`] with terminal control codes in it, logged at every reconnection.
pub const SHOWN_BYTES_MAX: usize = 160;

/// `text` from a peer as one log line may show it: at most `max` bytes of it, every
/// control character escaped (so it cannot start a line of its own, or recolour a
/// terminal), bytes that are not UTF-8 replaced, and `...` if it was cut.
pub fn shown(text: &[u8], max: usize) -> String {
    let cut = &text[..text.len().min(max)];
    let mut out = String::with_capacity(cut.len() + 3);
    for c in String::from_utf8_lossy(cut).chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if cut.len() < text.len() {
        out.push_str("...");
    }
    out
}

/// The fewest bytes one element of an array can take (`+\r\n`), to refuse an array whose
/// announced count could not fit in the frame cap before anything of it arrives.
const ELEMENT_BYTES_MIN: usize = 3;

/// A frame that breaks the caps or is not RESP2: the connection cannot be trusted further.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breach(pub String);

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How far into the frame at the front of the input the scan has come.
#[derive(Debug, Default)]
pub struct Scanner {
    /// Bytes of the frame already scanned: the next element starts here.
    at: usize,
    /// For each array open, the elements of it still to come (innermost last); its length
    /// is at most [`Caps::depth`].
    open: Vec<u64>,
}

impl Scanner {
    /// Scans on from where the last call stopped. `input` starts where the frame does and
    /// holds at least what it held at the last call. `Ok(Some(n))`: the frame is complete
    /// and `n` bytes long (the scanner is ready for the next one); `Ok(None)`: it is
    /// partial, which is normal flow: more must be read.
    pub fn scan(&mut self, input: &[u8], caps: &Caps) -> Result<Option<usize>, Breach> {
        loop {
            let rest = &input[self.at..];
            let line_cap = rest.len().min(LINE_BYTES_MAX + 2);
            let Some(line_end) = rest[..line_cap].windows(2).position(|w| w == b"\r\n") else {
                if rest.len() > LINE_BYTES_MAX {
                    return Err(Breach(format!("a line longer than {LINE_BYTES_MAX} bytes")));
                }
                return Ok(None);
            };
            if line_end == 0 {
                return Err(Breach("an empty line where a reply begins".into()));
            }
            let line = &rest[1..line_end];
            let head = line_end + 2;
            let length = |line: &[u8]| {
                std::str::from_utf8(line)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .filter(|n| *n >= -1)
                    .ok_or_else(|| Breach("a length that is not a number".into()))
            };
            let element = match rest[0] {
                b'+' | b'-' => head,
                b':' => {
                    length(line)?;
                    head
                }
                b'$' => match length(line)? {
                    -1 => head,
                    n => {
                        let n = n as u64;
                        if n > caps.frame_bytes as u64 {
                            return Err(Breach(format!(
                                "a bulk string of {n} bytes, more than the {} a reply may hold",
                                caps.frame_bytes
                            )));
                        }
                        let whole = head + n as usize + 2;
                        if self.at + whole > caps.frame_bytes {
                            return Err(Breach(format!(
                                "a reply longer than {} bytes",
                                caps.frame_bytes
                            )));
                        }
                        if rest.len() < whole {
                            return Ok(None);
                        }
                        if &rest[whole - 2..whole] != b"\r\n" {
                            return Err(Breach("a bulk string longer than announced".into()));
                        }
                        whole
                    }
                },
                b'*' => match length(line)? {
                    -1 | 0 => head,
                    n => {
                        if self.open.len() >= caps.depth {
                            return Err(Breach(format!(
                                "arrays nested more than {} deep",
                                caps.depth
                            )));
                        }
                        let room = caps.frame_bytes.saturating_sub(self.at + head);
                        if n as u64 > (room / ELEMENT_BYTES_MIN) as u64 {
                            return Err(Breach(format!(
                                "an array of {n} elements, more than a reply of {} bytes holds",
                                caps.frame_bytes
                            )));
                        }
                        self.at += head;
                        self.open.push(n as u64);
                        continue;
                    }
                },
                other => {
                    return Err(Breach(format!(
                        "a reply that is not RESP2 (it starts with byte {other})"
                    )))
                }
            };
            self.at += element;
            if self.at > caps.frame_bytes {
                return Err(Breach(format!(
                    "a reply longer than {} bytes",
                    caps.frame_bytes
                )));
            }
            // One element done: it counts for the innermost open array, and an array whose
            // last element it was is itself an element of the one around it.
            loop {
                let Some(left) = self.open.last_mut() else {
                    let whole = self.at;
                    self.at = 0;
                    return Ok(Some(whole));
                };
                *left -= 1;
                if *left > 0 {
                    break;
                }
                self.open.pop();
            }
        }
    }

    /// Whether a frame is partly scanned: bytes of it have been seen.
    pub fn is_midway(&self) -> bool {
        self.at > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        frame_bytes: 1000,
        depth: 4,
    };

    fn scan_all(input: &[u8]) -> Result<Option<usize>, Breach> {
        Scanner::default().scan(input, &CAPS)
    }

    #[test]
    fn complete_frames_and_their_lengths() {
        let history = b"*4\r\n$8\r\n0000abcd\r\n:2\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$3\r\nann\r\n*0\r\n";
        for (input, whole) in [
            (&b"+OK\r\n"[..], 5),
            (b"-NOSCRIPT No matching script\r\n", 30),
            (b":42\r\n", 5),
            (b":-1\r\n", 5),
            (b"$3\r\nabc\r\n", 9),
            (b"$0\r\n\r\n", 6),
            (b"$-1\r\n", 5),
            (b"*-1\r\n", 5),
            (b"*0\r\n", 4),
            (b"*2\r\n$1\r\na\r\n:1\r\n", 15),
            (b"*2\r\n*1\r\n:1\r\n*0\r\n", 16),
            (history, history.len()),
            // What follows the frame is the next one's, and is not scanned.
            (b"+OK\r\n+OK\r\n", 5),
            (b"$2\r\n\r\n\r\n+", 8),
        ] {
            assert_eq!(
                scan_all(input),
                Ok(Some(whole)),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn partial_frames_wait_for_more() {
        for input in [
            &b""[..],
            b"+O",
            b"+OK\r",
            b"$3\r\nab",
            b"$3\r\nabc\r",
            b"*2\r\n:1\r\n",
            b"*2\r\n*1\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n",
        ] {
            assert_eq!(
                scan_all(input),
                Ok(None),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn what_breaks_the_caps_or_is_not_resp2_is_a_breach() {
        let deep = b"*1\r\n".repeat(30_000);
        let long_line = [b"+".as_slice(), &[b'a'; LINE_BYTES_MAX + 1]].concat();
        for (input, says) in [
            (&b"$9999999999\r\n"[..], "bulk string of 9999999999 bytes"),
            (b"$1001\r\n", "bulk string of 1001"),
            (b"*2\r\n$990\r\n", "longer than 1000"),
            (b"*2147483647\r\n", "array of 2147483647 elements"),
            (b"*400\r\n", "array of 400"),
            (b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n", "nested more than 4"),
            (&deep, "nested more than 4"),
            (&long_line, "line longer"),
            (b"$x\r\n", "not a number"),
            (b"*-2\r\n", "not a number"),
            (b":1.5\r\n", "not a number"),
            (b"$1\r\nab\r\n", "longer than announced"),
            (b"HTTP/1.1 400 Bad Request\r\n", "not RESP2"),
            (b"_\r\n", "not RESP2"),
            (b"\r\n", "empty line"),
            (b"*1\r\n\r\n", "empty line"),
        ] {
            let got = scan_all(input);
            assert!(
                matches!(&got, Err(Breach(why)) if why.contains(says)),
                "{}: {got:?}",
                String::from_utf8_lossy(&input[..input.len().min(40)])
            );
        }
    }

    #[test]
    fn a_frame_fed_byte_by_byte_is_found_once_and_whole() {
        let frame = b"*3\r\n$5\r\nhello\r\n*2\r\n:1\r\n$-1\r\n+OK\r\n";
        let mut scanner = Scanner::default();
        for end in 0..frame.len() {
            assert_eq!(scanner.scan(&frame[..end], &CAPS), Ok(None), "at {end}");
        }
        assert_eq!(scanner.scan(frame, &CAPS), Ok(Some(frame.len())));
        assert!(!scanner.is_midway());
        // Ready for the next frame.
        assert_eq!(scanner.scan(b":7\r\n", &CAPS), Ok(Some(4)));
    }

    #[test]
    fn every_complete_frame_decodes_to_what_the_crate_finds() {
        // The scanner and the decoder it guards agree on where each frame ends.
        for input in [
            &b"*2\r\n$1\r\na\r\n:1\r\n"[..],
            b"*3\r\n*0\r\n$-1\r\n*1\r\n+x\r\n",
            b"-ERR no\r\n",
        ] {
            let (_, used) = redis_protocol::resp2::decode::decode(input)
                .unwrap()
                .unwrap();
            assert_eq!(scan_all(input), Ok(Some(used)));
        }
    }

    #[test]
    fn a_peers_text_is_shown_on_one_line_escaped_and_cut() {
        assert_eq!(
            shown(b"ERR unknown command 'FOO'", SHOWN_BYTES_MAX),
            "ERR unknown command 'FOO'"
        );
        // Control characters cannot start a log line of their own or colour a terminal.
        assert_eq!(
            shown(b"ERR a\nfake: line\x1b[31m", SHOWN_BYTES_MAX),
            "ERR a\\nfake: line\\u{1b}[31m"
        );
        assert_eq!(shown(b"\xff\xfeok", SHOWN_BYTES_MAX), "\u{fffd}\u{fffd}ok");
        // A line as long as a peer may send is shown as its first bytes.
        let long = vec![b'x'; LINE_BYTES_MAX];
        let line = shown(&long, SHOWN_BYTES_MAX);
        assert_eq!(line.len(), SHOWN_BYTES_MAX + 3);
        assert!(line.ends_with("x..."), "{line}");
    }
}
