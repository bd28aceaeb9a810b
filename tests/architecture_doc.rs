//! docs/ARCHITECTURE.md is the guided tour a student reads beside the source. Every Rust
//! name it cites in backticks — `Server::pass()`, `Conn::respond()`, `Deadline::Poll`,
//! `REQUESTS_PER_TURN` — must exist in src/, so that the tour cannot drift from the code it
//! walks through: rename a function and forget the tour, and this test names what broke.

use std::collections::BTreeSet;
use std::path::Path;

/// Crates and std: names under them are not ours to check.
const EXTERNAL: &[&str] = &[
    "std",
    "mio",
    "slab",
    "httparse",
    "libc",
    "serde",
    "serde_json",
    "socket2",
    "lexopt",
    "signal_hook_mio",
    "log",
];

fn all_source(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_source(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
            out.push('\n');
        }
    }
}

/// Backticked spans outside fenced code blocks.
fn spans(doc: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(inside), Some(_)) = (parts.next(), parts.next()) {
            spans.push(inside.to_owned());
        }
    }
    spans
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `name` is defined in the source as a function, a type, a module, a constant,
/// an enum variant or a struct field.
fn defined(source: &str, name: &str, as_function: bool) -> bool {
    let word = |prefix: &str| {
        source.match_indices(prefix).any(|(at, _)| {
            let rest = &source[at + prefix.len()..];
            rest.starts_with(name)
                && !rest[name.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    if as_function {
        return word("fn ");
    }
    let item = [
        "fn ", "struct ", "enum ", "trait ", "type ", "mod ", "const ", "static ",
    ]
    .iter()
    .any(|prefix| word(prefix));
    // Variants and fields: the name first on its line, then `,`, `(`, `{` or `:`.
    let member = source.lines().any(|line| {
        let line = line.trim_start().trim_start_matches("pub ");
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with([',', '(', ' ', '{', ':']) || rest.is_empty())
            && !line.starts_with("//")
    });
    item || member
}

/// Whether `Outer::inner` is defined: every segment is, the last as a function if called.
fn path_defined(source: &str, segments: &[&str], as_function: bool) -> bool {
    let (last, outer) = segments.split_last().expect("a name");
    outer.iter().all(|o| defined(source, o, false)) && defined(source, last, as_function)
}

#[test]
fn every_name_the_tour_cites_exists_in_src() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let mut source = String::new();
    all_source(&root.join("src"), &mut source);
    let mut checked = BTreeSet::new();
    let mut missing = BTreeSet::new();
    for span in spans(&doc) {
        let (path, as_function) = match span.strip_suffix("()") {
            Some(path) => (path, true),
            None => (span.as_str(), false),
        };
        let segments: Vec<&str> = path.split("::").collect();
        if !segments.iter().all(|s| is_ident(s)) || EXTERNAL.contains(&segments[0]) {
            continue; // a path, a header, a JSON body, a flag: not a Rust name
        }
        let last = segments[segments.len() - 1];
        // A lone lowercase word that is not called (`since`, `next`, `lobby`) is a word of
        // the protocol, not a name in the code.
        if segments.len() == 1 && !as_function && last.starts_with(|c: char| c.is_lowercase()) {
            continue;
        }
        checked.insert(span.clone());
        if !path_defined(&source, &segments, as_function) {
            missing.insert(span);
        }
    }
    assert!(
        checked.len() >= 60,
        "the tour should walk through the code by name; it cites only {checked:?}"
    );
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md cites names that src/ does not define: {missing:?}"
    );
}

/// The X-ray page tells a student which function makes each panel: those names, in
/// `<code>` on `www/admin/loop.html`, must exist too.
#[test]
fn every_function_the_x_ray_names_exists_in_src() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("www/admin/loop.html")).unwrap();
    let mut source = String::new();
    all_source(&root.join("src"), &mut source);
    let mut named = Vec::new();
    for piece in page.split("<code>").skip(1) {
        let name = piece.split("</code>").next().unwrap();
        if let Some(path) = name.strip_suffix("()") {
            let segments: Vec<&str> = path.split("::").collect();
            let known = path_defined(&source, &segments, true);
            assert!(known, "the X-ray names {name}, which src/ does not define");
            named.push(name.to_owned());
        }
    }
    assert!(
        named.len() >= 10,
        "each panel names its functions: {named:?}"
    );
}

/// The checker itself: a name that exists passes, one that does not is caught.
#[test]
fn the_checker_tells_real_names_from_stale_ones() {
    let source = "pub struct Server {}\nimpl Server { pub fn pass(&mut self) {} }\n\
                  pub enum Deadline {\n    Poll,\n    Write,\n}\npub const REQUESTS_PER_TURN: usize = 16;";
    assert!(defined(source, "pass", true));
    assert!(defined(source, "Server", false));
    assert!(defined(source, "Poll", false));
    assert!(defined(source, "REQUESTS_PER_TURN", false));
    assert!(!defined(source, "broadcast", true));
    assert!(!defined(source, "pas", true), "a prefix is not a name");
    assert!(!defined(source, "Parked", false));
    assert_eq!(
        spans("see `Server::pass()` and `a b`\n```\n`not this`\n```\n`Deadline::Poll`"),
        ["Server::pass()", "a b", "Deadline::Poll"]
    );
}

/// "Imports point one way": no module of the crate uses one that uses it back (chat.rs
/// and room.rs once did), so each file can be read knowing only what it imports.
#[test]
fn modules_import_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut uses = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        let Some(module) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_none_or(|e| e != "rs") || module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let mut used = BTreeSet::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let name: String = line[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name != module {
                    used.insert(name);
                }
            }
        }
        uses.insert(module.to_owned(), used);
    }
    let mut both_ways = Vec::new();
    for (a, used) in &uses {
        for b in used {
            if a < b && uses.get(b).is_some_and(|back| back.contains(a)) {
                both_ways.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(uses.len() > 15, "read the modules: {uses:?}");
    assert!(
        both_ways.is_empty(),
        "modules that import each other: {both_ways:?}"
    );
}

/// The README promises a loop that reads on two screens: `src/server.rs` keeps under 250
/// lines of code (blank lines and comments aside), its jobs in files of their own.
#[test]
fn the_loop_stays_under_250_lines_of_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server.rs");
    let text = std::fs::read_to_string(path).unwrap();
    let code = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .count();
    println!("src/server.rs: {code} lines of code");
    assert!(
        (100..250).contains(&code),
        "src/server.rs has {code} lines of code"
    );
}
