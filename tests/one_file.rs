//! One file to deploy: the binary copied alone into an empty directory serves the page,
//! which is built into it; `--www DIR` serves a directory instead and `--no-www` none.
//!
//! The binary under test is the one cargo built for this test run, or the one named by
//! `COMET_CHAT_BIN`: `.ci/run` points it at the small static build (README, "One file"),
//! so that the file a user would copy is the one checked.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The binary to copy: `COMET_CHAT_BIN`, else this build's.
fn binary() -> PathBuf {
    server_binary()
}

/// Held while a test writes its copy of the binary and while one starts a copy. A process
/// forked by another test while a copy is open for writing holds that descriptor until it
/// execs, and executing the copy meanwhile fails with ETXTBSY; `spawn` returns only once
/// its child has exec'd, so under this lock no fork overlaps an open copy.
static FORK_OR_COPY: Mutex<()> = Mutex::new(());

/// A fresh directory holding nothing but a copy of the binary. Removed when dropped.
struct Elsewhere {
    dir: PathBuf,
}

impl Elsewhere {
    fn new(name: &str) -> Elsewhere {
        let dir =
            std::env::temp_dir().join(format!("comet-one-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let _held = FORK_OR_COPY.lock().unwrap_or_else(|e| e.into_inner());
        std::fs::copy(binary(), dir.join("comet-chat")).unwrap();
        Elsewhere { dir }
    }

    /// Starts the copy from its own directory with `args`, on a free port.
    fn start(&self, args: &[&str]) -> ChildServer {
        let mut command = Command::new(self.dir.join("comet-chat"));
        command
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .current_dir(&self.dir);
        // Held until the server is up: a little longer than the fork needs, and simpler.
        let _held = FORK_OR_COPY.lock().unwrap_or_else(|e| e.into_inner());
        ChildServer::spawn(command)
    }
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every file the public port serves from the repository's www/, by URL path: all but
/// www/admin/ (the admin listener's) and names starting with a dot.
fn www_files(dir: &Path, prefix: &str, found: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let url_path = format!("{prefix}/{name}");
        if name.starts_with('.') || url_path == "/admin" {
            continue;
        }
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            www_files(&entry.path(), &url_path, found);
        } else if kind.is_file() {
            found.push((url_path, entry.path()));
        }
    }
}

/// Run where there is no www/ (the bug: it refused to start), with no flag about the
/// page, the server serves every file of the repository's www/ byte for byte, with its
/// content type, GET and HEAD; `/` is index.html; www/admin/ stays off the public port.
#[test]
fn the_binary_copied_alone_serves_the_built_in_page() {
    let elsewhere = Elsewhere::new("built-in");
    let server = elsewhere.start(&[]);
    let mut files = Vec::new();
    www_files(&www_dir(), "", &mut files);
    assert!(files.len() >= 3, "www/ has the page, its script and style");
    files.push(("/".to_owned(), www_dir().join("index.html")));
    for (url_path, path) in &files {
        let reply = get(server.addr, url_path);
        assert_eq!(reply.status, 200, "{url_path}");
        assert_eq!(reply.body, std::fs::read(path).unwrap(), "{url_path}");
        let expected = comet_chat::assets::content_type(&path.to_string_lossy());
        assert_eq!(reply.header("Content-Type"), Some(expected), "{url_path}");
        let mut client = Client::connect(server.addr);
        client.send(format!("HEAD {url_path} HTTP/1.1\r\n\r\n").as_bytes());
        let head = client.read_reply_with(true);
        assert_eq!(head.status, 200, "HEAD {url_path}");
        assert_eq!(
            head.header("Content-Length"),
            reply.header("Content-Length"),
            "HEAD {url_path}"
        );
    }
    for absent in [
        "/admin/loop.html",
        "/admin/loop.js",
        "/Cargo.toml",
        "/%2e%2e/Cargo.toml",
    ] {
        assert_eq!(get(server.addr, absent).status, 404, "{absent}");
    }
    let said = server.log_lines().join("\n");
    assert!(said.contains("www: built in"), "{said}");
}

/// `--www DIR` serves that directory and nothing of the built-in page.
#[test]
fn www_dir_serves_that_directory_instead() {
    let elsewhere = Elsewhere::new("dir");
    let page = elsewhere.dir.join("page");
    std::fs::create_dir_all(&page).unwrap();
    std::fs::write(page.join("index.html"), "<p>mine</p>").unwrap();
    let server = elsewhere.start(&["--www", "page"]);
    let reply = get(server.addr, "/");
    assert_eq!(
        (reply.status, reply.text()),
        (200, "<p>mine</p>".to_owned())
    );
    assert_eq!(get(server.addr, "/chat.js").status, 404);
}

/// `--no-www` serves no page at all, only the API.
#[test]
fn no_www_serves_no_page() {
    let elsewhere = Elsewhere::new("none");
    let server = elsewhere.start(&["--no-www"]);
    assert_eq!(get(server.addr, "/").status, 404);
    assert_eq!(get(server.addr, "/chat.js").status, 404);
    assert_eq!(get(server.addr, "/stats").status, 200);
}

/// The small static build README documents is the one CI builds and tests: the same
/// components, toolchain, profile, target and flags in both, so neither can change alone.
#[test]
fn the_documented_small_build_is_the_one_ci_builds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let script = std::fs::read_to_string(root.join(".ci/small-static.sh")).unwrap();
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    for line in [
        "rustup component add rust-src --toolchain nightly",
        "rustup target add x86_64-unknown-linux-musl --toolchain nightly",
        "CARGO_TARGET_DIR=target/small cargo +nightly build --profile small \\",
        "  --target x86_64-unknown-linux-musl --bin comet-chat \\",
        "  -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size",
        "target/small/x86_64-unknown-linux-musl/small/comet-chat",
    ] {
        assert!(readme.contains(line), "README lacks {line:?}");
        assert!(script.contains(line), ".ci/small-static.sh lacks {line:?}");
    }
    assert!(ci.contains("bash .ci/small-static.sh"), "{ci}");
}
