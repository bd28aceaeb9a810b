//! Which files of a www directory are served, and under which URL path: the one walk that
//! both the build (`build.rs`, which builds `www/` into the binary) and `--www DIR` (read at
//! start-up) take, so that the page built in and a directory given at run time follow the
//! same rules. `build.rs` compiles this file as a module of its own (`#[path]`), so it uses
//! nothing but `std`.
//!
//! The rules: regular files only (symlinks and special files are not followed), names that
//! are UTF-8 and do not start with a dot, `www/admin/` left out (the admin listener's page,
//! built in by `src/admin.rs`), and nothing over [`MAX_ASSET_BYTES`]. Entries come in name
//! order, so that two builds of the same tree make the same binary.

use std::io;
use std::path::{Path, PathBuf};

/// `www/admin/` is the X-ray page of the admin listener (`--admin-addr`), which serves it
/// from a copy built into the binary; the public port never serves it.
pub const ADMIN_DIR: &str = "/admin";

/// Files larger than this are skipped with a warning: the page is a few kilobytes, and a
/// stray video in www/ should not be pinned in memory for the server's life (nor, built
/// in, make the one file to deploy megabytes larger).
pub const MAX_ASSET_BYTES: u64 = 4 * 1024 * 1024;

/// What the walk met that the caller acts on.
pub enum Found {
    /// A file to serve.
    File {
        /// Its URL path: `/index.html`, `/sub/a.css`.
        url_path: String,
        /// Where it is on disk.
        path: PathBuf,
    },
    /// Something left out that its owner would want to hear about (hidden names, the
    /// admin page and symlinks are left out silently: they are left out on purpose).
    Skipped(String),
}

/// Walks `dir` and hands every file to serve, and every file skipped for a reason worth a
/// warning, to `visit`. Fails if a directory cannot be read.
pub fn walk(dir: &Path, visit: &mut dyn FnMut(Found)) -> io::Result<()> {
    walk_below(dir, "", visit)
}

/// [`walk`] below `dir`, whose URL path is `prefix`.
fn walk_below(dir: &Path, prefix: &str, visit: &mut dyn FnMut(Found)) -> io::Result<()> {
    let mut entries = std::fs::read_dir(dir)?.collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let kind = entry.file_type()?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            let what = format!("a non-UTF-8 file name in {}", dir.display());
            visit(Found::Skipped(what));
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let url_path = format!("{prefix}/{name}");
        if url_path == ADMIN_DIR {
            continue;
        }
        if kind.is_dir() {
            walk_below(&entry.path(), &url_path, visit)?;
        } else if kind.is_file() {
            if entry.metadata()?.len() > MAX_ASSET_BYTES {
                visit(Found::Skipped(format!(
                    "{url_path}: larger than {MAX_ASSET_BYTES} bytes"
                )));
                continue;
            }
            let path = entry.path();
            visit(Found::File { url_path, path });
        }
        // Symlinks and special files are deliberately not served.
    }
    Ok(())
}
