//! What arrives from Redis, decoded: the replies the server waits for (a post's position,
//! a room's history) and the announcements every node hears on the room channels (posts,
//! typing, joins, leaves). Decoding is strict: what does not have the expected shape is an
//! error, and the node drops the connection rather than guess.

use redis_protocol::resp2::types::OwnedFrame;

/// A message as stored in Redis and announced: everything a node needs to encode it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Its sequence number in the room.
    pub seq: u64,
    /// When it was posted, Unix ms (the posting node's clock).
    pub time_ms: u64,
    /// Who said it.
    pub from: String,
    /// What they said.
    pub text: String,
}

/// The answer to a post.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Posted {
    /// The epoch of the data in Redis.
    pub epoch: u32,
    /// The message's sequence number (the original one for a duplicate).
    pub seq: u64,
    /// A retry of a `client_id` already stored: nothing was stored this time.
    pub duplicate: bool,
}

/// A room's state in Redis: what a node loads, or what it missed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The epoch of the data in Redis.
    pub epoch: u32,
    /// The room's last sequence number.
    pub seq: u64,
    /// Stored messages from the sequence number asked for, oldest first.
    pub messages: Vec<Stored>,
    /// Names present on some node (when asked).
    pub names: Vec<String>,
}

/// One announcement on a room's channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum News {
    /// A message was stored.
    Message {
        /// The epoch of the data in Redis.
        epoch: u32,
        /// The message.
        message: Stored,
    },
    /// Someone is typing.
    Typing(String),
    /// Names that appeared.
    Joined(Vec<String>),
    /// Names that left.
    Left(Vec<String>),
}

/// A reply or announcement that does not have the shape the scripts give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

fn text(frame: &OwnedFrame) -> Result<&[u8], Malformed> {
    match frame {
        OwnedFrame::BulkString(bytes) | OwnedFrame::SimpleString(bytes) => Ok(bytes),
        _ => Err(Malformed("expected a string")),
    }
}

fn number(frame: &OwnedFrame) -> Result<u64, Malformed> {
    match frame {
        OwnedFrame::Integer(n) if *n >= 0 => Ok(*n as u64),
        other => std::str::from_utf8(text(other)?)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(Malformed("expected a number")),
    }
}

fn epoch(frame: &OwnedFrame) -> Result<u32, Malformed> {
    std::str::from_utf8(text(frame)?)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .ok_or(Malformed("expected an epoch"))
}

fn array(frame: &OwnedFrame) -> Result<&[OwnedFrame], Malformed> {
    match frame {
        OwnedFrame::Array(items) => Ok(items),
        _ => Err(Malformed("expected an array")),
    }
}

fn utf8(bytes: &[u8]) -> Result<String, Malformed> {
    String::from_utf8(bytes.to_vec()).map_err(|_| Malformed("expected UTF-8"))
}

/// `{epoch, seq, duplicate, announcement}` from the post script.
pub fn posted(frame: &OwnedFrame) -> Result<Posted, Malformed> {
    let [e, s, d, _] = array(frame)? else {
        return Err(Malformed("a post reply has four parts"));
    };
    Ok(Posted {
        epoch: epoch(e)?,
        seq: number(s)?,
        duplicate: number(d)? == 1,
    })
}

/// The announcement the post script left for the node to publish (with
/// `--redis-replicas`), if any.
pub fn announcement(frame: &OwnedFrame) -> Result<Option<Vec<u8>>, Malformed> {
    let [_, _, _, a] = array(frame)? else {
        return Err(Malformed("a post reply has four parts"));
    };
    let a = text(a)?;
    Ok((!a.is_empty()).then(|| a.to_vec()))
}

/// `{epoch, seq, entries, names}` from the history script.
pub fn snapshot(frame: &OwnedFrame) -> Result<Snapshot, Malformed> {
    let [e, s, entries, names] = array(frame)? else {
        return Err(Malformed("a history reply has four parts"));
    };
    let mut messages = Vec::new();
    for entry in array(entries)? {
        let [id, fields] = array(entry)? else {
            return Err(Malformed("a stream entry is an id and fields"));
        };
        let id = std::str::from_utf8(text(id)?).map_err(|_| Malformed("stream id"))?;
        let seq = id
            .strip_suffix("-0")
            .and_then(|seq| seq.parse().ok())
            .ok_or(Malformed("a stream id is {seq}-0"))?;
        let mut message = Stored {
            seq,
            time_ms: 0,
            from: String::new(),
            text: String::new(),
        };
        for pair in array(fields)?.chunks(2) {
            let [name, value] = pair else {
                return Err(Malformed("stream fields come in pairs"));
            };
            match text(name)? {
                b"f" => message.from = utf8(text(value)?)?,
                b"t" => message.text = utf8(text(value)?)?,
                b"ts" => message.time_ms = number(value)?,
                _ => {}
            }
        }
        messages.push(message);
    }
    let names = array(names)?
        .iter()
        .map(|name| utf8(text(name)?))
        .collect::<Result<_, _>>()?;
    Ok(Snapshot {
        epoch: epoch(e)?,
        seq: number(s)?,
        messages,
        names,
    })
}

/// An announcement's payload (see the scripts for its forms).
pub fn news(payload: &[u8]) -> Result<News, Malformed> {
    let (kind, rest) = payload.split_at(payload.len().min(2));
    let lines = |rest: &[u8]| -> Result<Vec<String>, Malformed> {
        rest.split(|&b| b == b'\n').map(utf8).collect()
    };
    match kind {
        b"t " => Ok(News::Typing(utf8(rest)?)),
        b"j " => Ok(News::Joined(lines(rest)?)),
        b"l " => Ok(News::Left(lines(rest)?)),
        b"m " => {
            // m <epoch> <seq> <time> <from length> <from><text>: the text may hold anything.
            let mut parts = rest.splitn(5, |&b| b == b' ');
            let mut field = || parts.next().ok_or(Malformed("a message has five parts"));
            let (e, s, t, n) = (field()?, field()?, field()?, field()?);
            let tail = field()?;
            let parse = |bytes: &[u8]| -> Result<u64, Malformed> {
                std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(Malformed("expected a number"))
            };
            let from_len = parse(n)? as usize;
            if from_len > tail.len() {
                return Err(Malformed("a name longer than the message"));
            }
            let epoch = std::str::from_utf8(e)
                .ok()
                .and_then(|e| u32::from_str_radix(e, 16).ok())
                .ok_or(Malformed("expected an epoch"))?;
            Ok(News::Message {
                epoch,
                message: Stored {
                    seq: parse(s)?,
                    time_ms: parse(t)?,
                    from: utf8(&tail[..from_len])?,
                    text: utf8(&tail[from_len..])?,
                },
            })
        }
        _ => Err(Malformed("an unknown announcement")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> OwnedFrame {
        OwnedFrame::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn announcements() {
        assert_eq!(
            news("m 0000abcd 42 1700000000000 3 annhi there\nand more".as_bytes()),
            Ok(News::Message {
                epoch: 0xabcd,
                message: Stored {
                    seq: 42,
                    time_ms: 1_700_000_000_000,
                    from: "ann".into(),
                    text: "hi there\nand more".into(),
                }
            })
        );
        assert_eq!(
            news("m 1 1 1 0 ".as_bytes()),
            Ok(News::Message {
                epoch: 1,
                message: Stored {
                    seq: 1,
                    time_ms: 1,
                    from: String::new(),
                    text: String::new(),
                }
            })
        );
        assert_eq!(news(b"t bob"), Ok(News::Typing("bob".into())));
        assert_eq!(
            news(b"l ann\nbob"),
            Ok(News::Left(vec!["ann".into(), "bob".into()]))
        );
        assert_eq!(news(b"j carl"), Ok(News::Joined(vec!["carl".into()])));
        for bad in [
            &b"x y"[..],
            b"m 1 2",
            b"m 1 2 3 9 short",
            b"m zz 1 1 0 x",
            b"",
        ] {
            assert!(news(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn replies() {
        let reply = OwnedFrame::Array(vec![
            bulk("0000abcd"),
            OwnedFrame::Integer(7),
            OwnedFrame::Integer(1),
            bulk(""),
        ]);
        assert_eq!(announcement(&reply), Ok(None));
        let held = OwnedFrame::Array(vec![
            bulk("0000abcd"),
            OwnedFrame::Integer(7),
            OwnedFrame::Integer(0),
            bulk("m 0000abcd 7 99 3 annhi"),
        ]);
        let said = b"m 0000abcd 7 99 3 annhi".to_vec();
        assert_eq!(announcement(&held), Ok(Some(said)));
        assert_eq!(
            posted(&reply),
            Ok(Posted {
                epoch: 0xabcd,
                seq: 7,
                duplicate: true
            })
        );
        let entry = OwnedFrame::Array(vec![
            bulk("5-0"),
            OwnedFrame::Array(vec![
                bulk("f"),
                bulk("ann"),
                bulk("t"),
                bulk("hi"),
                bulk("ts"),
                bulk("99"),
            ]),
        ]);
        let history = OwnedFrame::Array(vec![
            bulk("0000abcd"),
            OwnedFrame::Integer(5),
            OwnedFrame::Array(vec![entry]),
            OwnedFrame::Array(vec![bulk("ann")]),
        ]);
        let snapshot = snapshot(&history).unwrap();
        assert_eq!(snapshot.seq, 5);
        assert_eq!(snapshot.messages[0].seq, 5);
        assert_eq!(snapshot.messages[0].text, "hi");
        assert_eq!(snapshot.messages[0].time_ms, 99);
        assert_eq!(snapshot.names, ["ann"]);
        assert!(posted(&OwnedFrame::Integer(1)).is_err());
    }
}
