//! The static page: every file under `www/` read into memory once, at start-up, and stored
//! as a ready-to-send response so the event loop never touches the disk and serving a file is
//! one shared-buffer write.
//!
//! Requests are matched against the exact paths of the files found, never joined onto the
//! directory, so `..`, `%2e%2e`, encoded slashes, NUL bytes and absolute paths cannot reach
//! anything outside `www/`: they simply name no file (404). Symlinks are not followed.

use crate::http::{self, Status};
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::rc::Rc;

/// A file ready to serve.
pub struct Asset {
    /// The full GET response, head and body, shared by every connection sending it.
    pub get: Rc<[u8]>,
    /// The HEAD response: the same head, no body.
    pub head: Rc<[u8]>,
}

/// All files of the www directory, by URL path (`/index.html`, `/app.js`).
pub struct Assets {
    files: HashMap<String, Asset>,
}

/// Files larger than this are skipped with a warning: the page is a few kilobytes, and a
/// stray video in www/ should not be pinned in memory for the server's life.
pub const MAX_ASSET_BYTES: u64 = 4 * 1024 * 1024;

/// Content type by file extension; anything unknown is served as bytes.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, ext)| ext).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        _ => "application/octet-stream",
    }
}

impl Assets {
    /// Reads every regular file below `dir`. Fails if `dir` cannot be read at all.
    pub fn load(dir: &Path) -> io::Result<Assets> {
        let mut files = HashMap::new();
        load_dir(dir, "", &mut files)?;
        if let Some(index) = files.get("/index.html") {
            let root = Asset {
                get: Rc::clone(&index.get),
                head: Rc::clone(&index.head),
            };
            files.insert("/".to_owned(), root);
        }
        Ok(Assets { files })
    }

    /// An empty set, for servers that serve only the API.
    pub fn empty() -> Assets {
        Assets {
            files: HashMap::new(),
        }
    }

    /// The file at a request path, exactly as sent (`/` is `index.html`).
    pub fn get(&self, path: &str) -> Option<&Asset> {
        self.files.get(path)
    }

    /// Number of paths served (`/` counts when there is an index).
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when no file was found.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

fn load_dir(dir: &Path, prefix: &str, files: &mut HashMap<String, Asset>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            log::warn!("skipping non-UTF-8 file name in {}", dir.display());
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let url_path = format!("{prefix}/{name}");
        if kind.is_dir() {
            load_dir(&entry.path(), &url_path, files)?;
        } else if kind.is_file() {
            if entry.metadata()?.len() > MAX_ASSET_BYTES {
                log::warn!("skipping {url_path}: larger than {MAX_ASSET_BYTES} bytes");
                continue;
            }
            let body = std::fs::read(entry.path())?;
            let kind = content_type(&name);
            let get = http::encode_response(Status::OK, kind, &[], &body, false, false);
            let head = http::encode_response(Status::OK, kind, &[], &body, true, false);
            files.insert(
                url_path,
                Asset {
                    get: get.into(),
                    head: head.into(),
                },
            );
        }
        // Symlinks and special files are deliberately not served.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let cases = [
            ("/index.html", "text/html; charset=utf-8"),
            ("/chat.JS", "text/javascript; charset=utf-8"),
            ("/style.css", "text/css; charset=utf-8"),
            ("/noext", "application/octet-stream"),
        ];
        for (path, expected) in cases {
            assert_eq!(content_type(path), expected, "{path}");
        }
    }

    #[test]
    fn serves_only_exact_file_paths() {
        let dir = std::env::temp_dir().join(format!("comet-assets-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("index.html"), "<p>hi</p>").unwrap();
        std::fs::write(dir.join("sub/a.css"), "p{}").unwrap();
        std::fs::write(dir.join(".hidden"), "secret").unwrap();
        let assets = Assets::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        assert!(assets.get("/").is_some());
        assert!(assets.get("/index.html").is_some());
        assert!(assets.get("/sub/a.css").is_some());
        for bad in [
            "/.hidden",
            "/sub/../index.html",
            "/%2e%2e/x",
            "//index.html",
            "index.html",
        ] {
            assert!(assets.get(bad).is_none(), "{bad}");
        }
        let body = String::from_utf8(assets.get("/").unwrap().get.to_vec()).unwrap();
        assert!(body.ends_with("\r\n\r\n<p>hi</p>"));
        let head = String::from_utf8(assets.get("/").unwrap().head.to_vec()).unwrap();
        assert!(head.contains("Content-Length: 9\r\n") && head.ends_with("\r\n\r\n"));
    }
}
