//! Builds the page into the binary: walks `www/` with the same rules `--www DIR` follows at
//! start-up (`src/assets/walk.rs`, compiled here as a module) and writes
//! `$OUT_DIR/www.rs`, a table of `(URL path, include_bytes!(file))` that `src/assets.rs`
//! includes. Any file added under `www/` is picked up by the next build, with no list to
//! keep up to date.

#[path = "src/assets/walk.rs"]
#[allow(dead_code)] // the library uses all of it; the build only the walk
mod walk;

use std::fmt::Write;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"));
    let www = manifest.join("www");
    // Cargo scans a directory named here, files and subdirectories, for anything newer than
    // the last run, so a file added, changed or removed anywhere below www/ builds again.
    // (The walk's rules are a module of this script: changing them rebuilds it anyway.)
    println!("cargo:rerun-if-changed=www");
    let mut table = String::from("&[\n");
    let mut failed = None;
    let walked = walk::walk(&www, &mut |found| match found {
        walk::Found::File { url_path, path } => match path.to_str() {
            // Debug formatting spells both as Rust string literals, escapes and all.
            Some(path) => writeln!(table, "    ({url_path:?}, include_bytes!({path:?})),").unwrap(),
            None => failed = Some(format!("{} is not a UTF-8 path", path.display())),
        },
        walk::Found::Skipped(what) => println!("cargo:warning=www/ not built in: {what}"),
    });
    if let Err(e) = walked {
        panic!("cannot read {}: {e}", www.display());
    }
    if let Some(problem) = failed {
        panic!("cannot build www/ in: {problem}");
    }
    table.push(']');
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("run by cargo")).join("www.rs");
    std::fs::write(&out, table).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
