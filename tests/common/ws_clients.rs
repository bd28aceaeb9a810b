//! Real third-party WebSocket clients for a test: Python's `websockets` (in a virtual
//! environment under target/ that the first test makes, with `python3 -m venv` and pip from
//! PyPI) and Node's `ws` (from tests/browser's package.json; `npm ci` there if it is missing).
//! Each runs a script kept in tests/clients/ that takes one JSON command per line and answers
//! one JSON line per command (the commands are listed in tests/clients/ws_client.py), so the
//! test decides every step and the script only reports what its library saw.
//!
//! Debian needs `python3-venv` for the venv; `tests/run-all.sh` installs it, and runs `npm ci`
//! before `cargo test`.

use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::Duration;

/// The `websockets` release the Python client runs: pinned, so a new release cannot change
/// what a test sees without a commit saying so.
const PYTHON_WEBSOCKETS: &str = "websockets==17.4";

/// How long one command may take in the script before the test fails instead of hanging.
/// Every command has its own shorter timeout inside the script (at most 10 s to open).
const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// Which library a test drives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lang {
    /// Python's `websockets`, asyncio client.
    Python,
    /// Node's `ws`.
    Node,
}

/// The repository root.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The target directory this test binary was built in (target/debug/deps/<test> → target),
/// so the venv follows CARGO_TARGET_DIR like everything else built.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .expect("a test binary under target/<profile>/deps")
        .to_path_buf()
}

/// Runs a set-up command to the end with no stdin, failing the test with its output.
fn run_setup(what: &str, command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The venv's python, made once per target directory: a venv only counts as made once pip
/// has finished (the marker file names the pinned release), so an interrupted set-up is
/// started over rather than half used.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = target_dir().join("ws-clients").join("python-venv");
        let marker = venv.join(format!(".ready-{PYTHON_WEBSOCKETS}"));
        if !marker.exists() {
            let _ = std::fs::remove_dir_all(&venv);
            std::fs::create_dir_all(venv.parent().unwrap()).unwrap();
            run_setup(
                "python3 -m venv (Debian: apt-get install python3-venv; tests/run-all.sh does)",
                Command::new("python3").arg("-m").arg("venv").arg(&venv),
            );
            run_setup(
                &format!("pip install {PYTHON_WEBSOCKETS}"),
                Command::new(venv.join("bin").join("pip")).args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    PYTHON_WEBSOCKETS,
                ]),
            );
            std::fs::write(&marker, b"").unwrap();
        }
        venv.join("bin").join("python")
    })
}

/// Makes sure tests/browser/node_modules has `ws` (run-all.sh's `npm ci` put it there; a
/// plain `cargo test` in a fresh checkout runs that `npm ci` itself, once).
fn node_ws() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let browser = repo().join("tests").join("browser");
        if !browser.join("node_modules/ws/package.json").exists() {
            run_setup(
                "npm ci in tests/browser (for Node's ws)",
                Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&browser),
            );
        }
    });
}

/// What a connection's `recv` gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    /// A text frame, parsed as JSON.
    Frame(Value),
    /// The connection closed: the close frame's code (None: no close frame) and reason.
    Closed(Option<u16>, String),
    /// Nothing within the timeout.
    Timeout,
}

/// One client script, running, with the connections it holds.
pub struct Driver {
    /// Which library this is (for messages).
    pub lang: Lang,
    child: Child,
    stdin: ChildStdin,
    /// Lines the script printed on stdout, read by a thread so a hung script fails the test.
    answers: Receiver<String>,
    /// What it wrote on stderr (a traceback explains a failure).
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// Frames read while waiting for something else (an ack), per connection, in order.
    stash: HashMap<String, VecDeque<Value>>,
}

impl Driver {
    /// Starts the script for `lang` (setting up its library first if needed).
    pub fn start(lang: Lang) -> Driver {
        let clients = repo().join("tests").join("clients");
        let mut command = match lang {
            Lang::Python => {
                let mut c = Command::new(python());
                c.arg(clients.join("ws_client.py"));
                c
            }
            Lang::Node => {
                node_ws();
                let mut c = Command::new("node");
                c.arg(clients.join("ws_client.mjs"));
                c
            }
        };
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start the {lang:?} client: {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let err_text = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                err_text
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        Driver {
            lang,
            child,
            stdin,
            answers,
            stderr,
            stash: HashMap::new(),
        }
    }

    /// Sends one command and returns the script's answer.
    pub fn call(&mut self, command: Value) -> Value {
        let sent = writeln!(self.stdin, "{command}").and_then(|_| self.stdin.flush());
        let answer = sent
            .ok()
            .and_then(|_| self.answers.recv_timeout(ANSWER_WAIT).ok());
        let Some(line) = answer else {
            std::thread::sleep(Duration::from_millis(200)); // let stderr arrive
            panic!(
                "{:?} client gave no answer to {command}; its stderr:\n{}",
                self.lang,
                self.stderr.lock().unwrap()
            );
        };
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{:?} client answered {line:?}: {e}", self.lang))
    }

    /// Opens connection `conn` to `url` (with an `Origin` header if given): the script's
    /// answer (`{"ok":"open"}`, or `{"ok":"refused","status":...,"body":...}`).
    pub fn open_with(&mut self, conn: &str, url: &str, extra: Value) -> Value {
        let mut command = json!({"op": "open", "conn": conn, "url": url});
        if let (Some(command), Some(extra)) = (command.as_object_mut(), extra.as_object()) {
            command.extend(extra.clone());
        }
        self.call(command)
    }

    /// Opens connection `conn`, failing the test unless it opens.
    pub fn open(&mut self, conn: &str, url: &str) {
        let answer = self.open_with(conn, url, json!({}));
        assert_eq!(
            answer["ok"], "open",
            "{:?} opening {url}: {answer}",
            self.lang
        );
    }

    /// Sends a text frame.
    pub fn send_text(&mut self, conn: &str, text: &str) -> Value {
        self.call(json!({"op": "send", "conn": conn, "text": text}))
    }

    /// Sends a JSON frame, failing the test if the connection is already closed.
    pub fn send(&mut self, conn: &str, frame: Value) {
        let answer = self.send_text(conn, &frame.to_string());
        assert_eq!(
            answer["ok"], "sent",
            "{:?} sending {frame}: {answer}",
            self.lang
        );
    }

    /// The next frame (or the close) on `conn` within `timeout`, stashed frames first.
    pub fn recv(&mut self, conn: &str, timeout: Duration) -> Got {
        if let Some(frame) = self.stash.get_mut(conn).and_then(VecDeque::pop_front) {
            return Got::Frame(frame);
        }
        let answer =
            self.call(json!({"op": "recv", "conn": conn, "timeout": timeout.as_secs_f64()}));
        match answer["ok"].as_str() {
            Some("frame") => {
                let text = answer["text"].as_str().unwrap_or_default();
                Got::Frame(serde_json::from_str(text).unwrap_or_else(|e| {
                    panic!(
                        "{:?}: the server sent a frame that is not JSON ({e}): {text:?}",
                        self.lang
                    )
                }))
            }
            Some("closed") => Got::Closed(
                answer["code"].as_u64().map(|c| c as u16),
                answer["reason"].as_str().unwrap_or_default().to_owned(),
            ),
            Some("timeout") => Got::Timeout,
            _ => panic!("{:?}: unexpected answer to recv: {answer}", self.lang),
        }
    }

    /// The next frame on `conn`, failing the test on a close or a timeout of 5 s.
    pub fn frame(&mut self, conn: &str) -> Value {
        match self.recv(conn, Duration::from_secs(5)) {
            Got::Frame(frame) => frame,
            other => panic!("{:?}: expected a frame on {conn}, got {other:?}", self.lang),
        }
    }

    /// Reads `conn` until a frame `wanted` picks out arrives and returns it; frames read on
    /// the way are kept for later `recv`s, in order.
    pub fn frame_where(&mut self, conn: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let mut passed = VecDeque::new();
        let found = loop {
            let frame = self.frame(conn);
            if wanted(&frame) {
                break frame;
            }
            passed.push_back(frame);
        };
        let stash = self.stash.entry(conn.to_owned()).or_default();
        passed.extend(stash.drain(..));
        *stash = passed;
        found
    }

    /// Sends a post frame and returns its ack (the next `ack` for a post on `conn`).
    pub fn post(&mut self, conn: &str, text: &str, client_id: &str) -> Value {
        self.send(
            conn,
            json!({"type": "post", "text": text, "client_id": client_id}),
        );
        self.frame_where(conn, |f| f["type"] == "ack" && f["for"] == "post")
    }

    /// `message` frames on `conn` as (id, text), up to and including the one with id `last`
    /// (other frames, such as joins and typing, are skipped).
    pub fn messages_until(&mut self, conn: &str, last: &str) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        loop {
            let frame = self.frame(conn);
            if frame["type"] != "message" {
                continue;
            }
            let id = frame["id"].as_str().unwrap_or_default().to_owned();
            seen.push((
                id.clone(),
                frame["text"].as_str().unwrap_or_default().to_owned(),
            ));
            if id == last {
                return seen;
            }
        }
    }

    /// The number of pings the server has sent on `conn` (as the library saw them).
    pub fn pings(&mut self, conn: &str) -> u64 {
        let answer = self.call(json!({"op": "pings", "conn": conn}));
        answer["count"].as_u64().expect("a ping count")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"op": "quit"}));
        let _ = self.stdin.flush();
        // A script that does not leave at once is stopped by its PID (kill on our own child).
        std::thread::sleep(Duration::from_millis(50));
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
