//! A WebSocket client for the tests, written from RFC 6455 (not with the server's codec, so
//! that the two cannot agree on a mistake): it masks what it sends, can break the protocol
//! on purpose (unmasked frames, reserved bits, a header announcing too much), and reads
//! the server's frames as they arrive.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Opcodes, as the wire spells them.
pub const TEXT: u8 = 1;
pub const BINARY: u8 = 2;
pub const CONTINUATION: u8 = 0;
pub const CLOSE: u8 = 8;
pub const PING: u8 = 9;
pub const PONG: u8 = 10;

/// A frame from the server.
#[derive(Debug, Clone)]
pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A text frame's JSON.
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.opcode, TEXT, "not a text frame: {self:?}");
        serde_json::from_slice(&self.payload).expect("a JSON frame")
    }

    /// A close frame's code.
    pub fn close_code(&self) -> u16 {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        u16::from_be_bytes([self.payload[0], self.payload[1]])
    }
}

pub struct Ws {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// The handshake's answer: the status line's code and the raw head.
pub struct Opened {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Sends the opening handshake for `path` with `extra` header lines ("Name: value\r\n").
pub fn handshake(addr: SocketAddr, path: &str, extra: &str) -> (Ws, Opened) {
    handshake_on(
        TcpStream::connect(addr).expect("connect"),
        &addr.to_string(),
        path,
        extra,
    )
}

/// The handshake on a socket the test made (say, with a tiny receive buffer).
pub fn handshake_on(mut stream: TcpStream, host: &str, path: &str, extra: &str) -> (Ws, Opened) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    read_opening(stream)
}

/// The server's answer to an opening handshake already sent on `stream`.
pub fn read_opening(stream: TcpStream) -> (Ws, Opened) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut ws = Ws {
        stream,
        buf: Vec::new(),
    };
    let head_end = loop {
        if let Some(at) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        ws.fill().expect("the handshake's answer");
    };
    let head = String::from_utf8_lossy(&ws.buf[..head_end]).into_owned();
    ws.buf.drain(..head_end);
    let status = head[9..12].parse().unwrap();
    let mut body = String::new();
    if status != 101 {
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |n| n.trim().parse().unwrap());
        while ws.buf.len() < length {
            ws.fill().unwrap();
        }
        body = String::from_utf8_lossy(&ws.buf[..length]).into_owned();
    }
    (ws, Opened { status, head, body })
}

/// Opens a socket that must be accepted.
pub fn open(addr: SocketAddr, path: &str) -> Ws {
    let (ws, opened) = handshake(addr, path, "");
    assert_eq!(opened.status, 101, "{}{}", opened.head, opened.body);
    assert!(
        opened
            .head
            .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "RFC 6455's own example key and answer: {}",
        opened.head
    );
    ws
}

impl Ws {
    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = super::read_retrying(&mut self.stream, &mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Sends one frame: `fin`, `rsv` bits (0–7), masked or not.
    pub fn send_raw(&mut self, fin: bool, rsv: u8, opcode: u8, payload: &[u8], masked: bool) {
        let mut frame = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => frame.push(mask_bit | n as u8),
            n if n < 65536 => {
                frame.push(mask_bit | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(mask_bit | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            let key = [0x37, 0xfa, 0x21, 0x3d];
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            frame.extend_from_slice(payload);
        }
        // The server may have closed already (that can be the point of the test).
        let _ = self.stream.write_all(&frame);
    }

    /// Sends a whole masked message.
    pub fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.send_raw(true, 0, opcode, payload, true);
    }

    /// Sends a JSON text message.
    pub fn send_json(&mut self, value: serde_json::Value) {
        self.send(TEXT, value.to_string().as_bytes());
    }

    /// The next frame, or `None` when the server closed the connection.
    pub fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.parse() {
                return Some(frame);
            }
            match self.fill() {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("no frame came: {e}"),
            }
        }
    }

    /// The next frame, which must come.
    pub fn frame(&mut self) -> Frame {
        self.next().expect("a frame, not the end of the connection")
    }

    /// The next text frame's JSON, answering pings on the way.
    pub fn json(&mut self) -> serde_json::Value {
        loop {
            let frame = self.frame();
            match frame.opcode {
                PING => self.send(PONG, &frame.payload),
                _ => return frame.json(),
            }
        }
    }

    /// Text frames until one whose `type` is `kind` (answering pings on the way).
    pub fn until(&mut self, kind: &str) -> serde_json::Value {
        loop {
            let value = self.json();
            if value["type"] == kind {
                return value;
            }
        }
    }

    /// Whether nothing at all comes for `wait`.
    pub fn silent_for(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut byte = [0u8; 1];
        let silent = matches!(self.stream.read(&mut byte), Err(ref e)
            if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        if !silent {
            self.buf.push(byte[0]);
        }
        silent
    }

    /// The close frame that ends the connection (skipping anything before it), then its
    /// end: returns the close code.
    pub fn closed_with(&mut self) -> u16 {
        loop {
            let frame = self.next().expect("a close frame before the end");
            if frame.opcode == CLOSE {
                let code = frame.close_code();
                assert!(self.next().is_none(), "nothing after the close");
                return code;
            }
        }
    }

    fn parse(&mut self) -> Option<Frame> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        assert_eq!(b[1] & 0x80, 0, "a server frame is never masked");
        let (len, at) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        if b.len() < at + len {
            return None;
        }
        assert_eq!(b[0] & 0x80, 0x80, "we send each message as one frame");
        let frame = Frame {
            opcode: b[0] & 0x0f,
            payload: b[at..at + len].to_vec(),
        };
        self.buf.drain(..at + len);
        Some(frame)
    }
}
