//! The static page, stored as ready-to-send responses so the event loop never touches the
//! disk and serving a file is one shared-buffer write. By default the page is the one built
//! into the binary: `build.rs` walks `www/` at build time and this module includes the table
//! it writes, so the binary is the one file to deploy. `--www DIR` serves a directory
//! instead, read once at start-up; `--no-www` serves none. Both take the same walk
//! (`walk.rs`): the same files, the same URL paths.
//!
//! A request path is percent-decoded (strictly: `%` must start `%XX`, else 400; `+` is a
//! plus, as in any URL path) and then matched against the exact paths of the files found,
//! never joined onto the directory. Decoded paths with a NUL, a backslash, or a `.`, `..` or
//! empty segment are refused outright (404) before the lookup, although no file could match
//! them anyway: so `..`, `%2e%2e`, encoded slashes and absolute paths cannot reach anything
//! outside `www/`. Symlinks are not followed.

mod walk;

use crate::answer;
use crate::http::{self, Status};
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::rc::Rc;

pub use walk::{ADMIN_DIR, MAX_ASSET_BYTES};

/// The page built into the binary: every file `build.rs` found under `www/`, by URL path,
/// with the rules of `walk.rs` (so no `www/admin/`, nothing over [`MAX_ASSET_BYTES`]).
/// The bytes sit in the binary's read-only data; [`Assets::built_in`] copies them once into
/// the ready-made responses.
static BUILT_IN: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/www.rs"));

/// A file ready to serve.
pub struct Asset {
    /// The full GET response, head and body, shared by every connection sending it.
    pub get: Rc<[u8]>,
    /// The HEAD response: the same head, no body.
    pub head: Rc<[u8]>,
}

/// All files of the page, by URL path (`/index.html`, `/app.js`).
pub struct Assets {
    files: HashMap<String, Asset>,
}

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
    /// The page built into the binary (see [`BUILT_IN`]): the default.
    pub fn built_in() -> Assets {
        let files = BUILT_IN
            .iter()
            .map(|(url_path, body)| (url_path.to_string(), asset(url_path, body)));
        Assets::with_root(files.collect())
    }

    /// Reads every file below `dir` that the walk serves (`walk.rs`). Fails if `dir`, or a
    /// file in it, cannot be read.
    pub fn load(dir: &Path) -> io::Result<Assets> {
        let mut found = Vec::new();
        walk::walk(dir, &mut |item| match item {
            walk::Found::File { url_path, path } => found.push((url_path, path)),
            walk::Found::Skipped(what) => log::warn!("www: skipping {what}"),
        })?;
        let mut files = HashMap::with_capacity(found.len());
        for (url_path, path) in found {
            let body = std::fs::read(path)?;
            let asset = asset(&url_path, &body);
            files.insert(url_path, asset);
        }
        Ok(Assets::with_root(files))
    }

    /// `files`, with `/` another name for `/index.html` when there is one.
    fn with_root(mut files: HashMap<String, Asset>) -> Assets {
        if let Some(index) = files.get("/index.html") {
            let root = Asset {
                get: Rc::clone(&index.get),
                head: Rc::clone(&index.head),
            };
            files.insert("/".to_owned(), root);
        }
        Assets { files }
    }

    /// An empty set, for servers that serve only the API.
    pub fn empty() -> Assets {
        Assets {
            files: HashMap::new(),
        }
    }

    /// The file at a decoded path, matched exactly (`/` is `index.html`).
    pub fn get(&self, path: &str) -> Option<&Asset> {
        self.files.get(path)
    }

    /// The file a request path names, as sent on the wire (percent-encoded). Err is the
    /// status to answer: 400 for a malformed escape, 404 for anything that names no file.
    pub fn lookup(&self, raw_path: &str) -> Result<&Asset, Status> {
        let decoded =
            http::percent_decode(raw_path.as_bytes(), false).ok_or(Status::BAD_REQUEST)?;
        // Not UTF-8: no file has such a name (the walk skips them).
        let path = String::from_utf8(decoded).map_err(|_| Status::NOT_FOUND)?;
        if !is_plain_path(&path) {
            return Err(Status::NOT_FOUND);
        }
        self.get(&path).ok_or(Status::NOT_FOUND)
    }

    /// Number of files served (`/`, another name for `/index.html`, is not one more).
    pub fn len(&self) -> usize {
        self.files.len() - usize::from(self.files.contains_key("/"))
    }

    /// True when no file was found.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// The GET and HEAD responses for the file at `url_path`, typed by its extension.
fn asset(url_path: &str, body: &[u8]) -> Asset {
    let kind = content_type(url_path);
    Asset {
        get: answer::file(kind, body, false).into(),
        head: answer::file(kind, body, true).into(),
    }
}

/// `/`, or `/` followed by non-empty segments that are not `.` or `..`, with no NUL and no
/// backslash anywhere: the only shape a path of a loaded file can have. Checked although
/// the exact lookup would miss anything else, so that safety does not rest on the file
/// table alone.
fn is_plain_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if path.contains(['\0', '\\']) {
        return false;
    }
    rest.is_empty()
        || rest
            .split('/')
            .all(|segment| !matches!(segment, "" | "." | ".."))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page built in is www/ exactly as `--www www` reads it today: the same paths and
    /// the same bytes, so a file added to www/ is in the next build with nothing to list.
    #[test]
    fn the_built_in_page_is_www_as_read_at_start_up() {
        let www = Path::new(env!("CARGO_MANIFEST_DIR")).join("www");
        let from_disk = Assets::load(&www).unwrap();
        let built_in = Assets::built_in();
        let mut paths: Vec<&String> = from_disk.files.keys().collect();
        paths.sort();
        let mut built_paths: Vec<&String> = built_in.files.keys().collect();
        built_paths.sort();
        assert_eq!(built_paths, paths);
        assert!(paths.iter().any(|path| *path == "/chat.js"), "{paths:?}");
        assert!(
            !paths.iter().any(|path| path.starts_with("/admin")),
            "{paths:?}"
        );
        for path in paths {
            let (disk, built) = (&from_disk.files[path], &built_in.files[path]);
            assert_eq!(disk.get, built.get, "{path}");
            assert_eq!(disk.head, built.head, "{path}");
        }
    }

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
    fn request_paths_are_decoded_then_matched_exactly() {
        let dir = std::env::temp_dir().join(format!("comet-assets-names-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for name in [
            "a b.txt",
            "café.txt",
            "x+y.txt",
            "index.html",
            "sub/index.html",
        ] {
            std::fs::write(dir.join(name), name).unwrap();
        }
        let assets = Assets::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        let body = |path: &str| {
            let asset = assets
                .lookup(path)
                .unwrap_or_else(|s| panic!("{path}: {}", s.code));
            let text = String::from_utf8(asset.get.to_vec()).unwrap();
            text.split("\r\n\r\n").nth(1).unwrap().to_owned()
        };
        assert_eq!(body("/"), "index.html");
        assert_eq!(assets.len(), 5, "five files; / is index.html, not a sixth");
        assert_eq!(body("/a%20b.txt"), "a b.txt");
        assert_eq!(body("/caf%C3%A9.txt"), "café.txt");
        assert_eq!(body("/café.txt"), "café.txt");
        assert_eq!(body("/x+y.txt"), "x+y.txt");
        assert_eq!(body("/x%2by.txt"), "x+y.txt");
        assert_eq!(body("/sub/index.html"), "sub/index.html");
        let refused: &[(&str, u16)] = &[
            ("/a+b.txt", 404),
            ("/%2e%2e/Cargo.toml", 404),
            ("/sub/%2e%2e/index.html", 404),
            ("/sub/../index.html", 404),
            ("/./index.html", 404),
            ("/sub/.", 404),
            ("/sub/", 404),
            ("//index.html", 404),
            ("/sub%2f%2findex.html", 404),
            ("/a%00b", 404),
            ("/index.html%00", 404),
            ("/sub%5Cindex.html", 404),
            ("/sub\\index.html", 404),
            ("/%FF", 404),
            ("index.html", 404),
            ("*", 404),
            ("/%zz", 400),
            ("/a%2", 400),
            ("/100%", 400),
        ];
        for (path, code) in refused {
            let got = assets.lookup(path).err().map(|status| status.code);
            assert_eq!(got, Some(*code), "{path}");
        }
    }

    #[test]
    fn serves_only_exact_file_paths() {
        let dir = std::env::temp_dir().join(format!("comet-assets-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("index.html"), "<p>hi</p>").unwrap();
        std::fs::write(dir.join("sub/a.css"), "p{}").unwrap();
        std::fs::write(dir.join(".hidden"), "secret").unwrap();
        // The admin listener's page, a symlink and a file over the cap: never served.
        std::fs::create_dir_all(dir.join("admin")).unwrap();
        std::fs::write(dir.join("admin/loop.html"), "x-ray").unwrap();
        std::os::unix::fs::symlink(dir.join("index.html"), dir.join("link.html")).unwrap();
        let big = std::fs::File::create(dir.join("big.bin")).unwrap();
        big.set_len(MAX_ASSET_BYTES + 1).unwrap();
        let assets = Assets::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        assert!(assets.get("/").is_some());
        assert!(assets.get("/index.html").is_some());
        assert!(assets.get("/sub/a.css").is_some());
        assert_eq!(assets.len(), 2, "index.html and sub/a.css");
        for bad in [
            "/admin/loop.html",
            "/link.html",
            "/big.bin",
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
