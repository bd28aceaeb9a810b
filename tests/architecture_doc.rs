//! docs/ARCHITECTURE.md is the guided tour a student reads beside the source. Every Rust
//! name it cites in backticks — `Server::pass()`, `Conn::respond()`, `Deadline::Poll`,
//! `REQUESTS_PER_TURN` — must exist in src/, so that the tour cannot drift from the code it
//! walks through: rename a function and forget the tour, and this test names what broke.
//! A `Type::member` pair must exist as a pair (`Server::flush()` is stale if only `Conn`
//! has a `flush`); so must the names lib.rs's tour and the X-ray page cite.
//!
//! The same reading of src/ checks that files import one way: no circle of `use` lines
//! among files, at any depth.

use std::collections::{BTreeMap, BTreeSet};
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

/// What a name is, as far as a citation cares: `foo()` must be a function; anything may
/// be named without the parentheses (a field, a variant, a constant, a method as a value).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// A function or method: the only kind a citation may call.
    Fn,
    /// A struct, enum, trait, union or type alias: a path may go on into its members.
    Type,
    /// `mod x;` or `mod x { … }`.
    Module,
    /// A constant, a static, a field or a variant.
    Value,
}

/// The crate as a reader of its source sees it: which module defines what, and which
/// members each type has. Read from the text, not compiled, so that a name is checked
/// where it lives: `Server::flush()` is stale if `flush` exists only in `impl Conn`.
#[derive(Default, Debug)]
struct Crate {
    /// Module path (`["backplane", "link"]`, `[]` for lib.rs) → its file (relative to
    /// src/) and the items it defines at its own level.
    modules: BTreeMap<Vec<String>, (String, BTreeMap<String, Kind>)>,
    /// Type name → its members: everything in an `impl` of it (inherent or of a trait),
    /// its fields, its variants; a trait's own body counts as the trait's members.
    members: BTreeMap<String, BTreeMap<String, Kind>>,
    /// Type name → the traits it implements, whose default methods it has too.
    traits_of: BTreeMap<String, BTreeSet<String>>,
    /// Every `use`: the file it is in (relative to src/), the module it is written in
    /// (an inline `mod tests` included), its line, and the path it names.
    uses: Vec<Use>,
}

/// One path a `use` line imports (`use a::{b, c}` is two).
#[derive(Debug)]
struct Use {
    file: String,
    module: Vec<String>,
    line: usize,
    path: Vec<String>,
}

/// The module path a file under src/ defines: `server/io.rs` → `server::io`,
/// `a/mod.rs` → `a`, `lib.rs` → the root. main.rs is a crate of its own, named `main`
/// here so its items can be cited but never confused with the library's root.
fn module_path(file: &str) -> Vec<String> {
    let stem = file.strip_suffix(".rs").unwrap_or(file);
    let mut path: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if path
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        path.pop();
    }
    path
}

/// Rust source as tokens with their line numbers: identifiers, lifetimes, and
/// punctuation (`::`, `->` and `=>` as one token). Comments vanish; every string, byte
/// string, raw string and char literal becomes the single token `""`, so a `}` or a
/// `use` inside one is not read as code.
fn tokens(text: &str) -> Vec<(String, usize)> {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    // Skips a quoted literal that starts at `i` (just past any prefix), counting lines.
    let skip_quoted = |i: &mut usize, line: &mut usize, quote: char| {
        *i += 1;
        while *i < c.len() && c[*i] != quote {
            if c[*i] == '\\' {
                *i += 1;
            }
            if at(*i) == '\n' {
                *line += 1;
            }
            *i += 1;
        }
        *i += 1;
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            out.push(("\"\"".to_owned(), line));
            skip_quoted(&mut i, &mut line, '"');
        } else if ch == 'b' && (at(i + 1) == '"' || at(i + 1) == '\'') {
            out.push(("\"\"".to_owned(), line));
            i += 1;
            let quote = c[i];
            skip_quoted(&mut i, &mut line, quote);
        } else if (ch == 'r' || (ch == 'b' && at(i + 1) == 'r'))
            && matches!(at(i + 1 + usize::from(ch == 'b')), '"' | '#')
        {
            // A raw string (`r"…"`, `r#"…"#`, `br"…"`) or a raw identifier (`r#type`).
            let mut j = i + 1 + usize::from(ch == 'b');
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            if at(j) == '"' {
                out.push(("\"\"".to_owned(), line));
                j += 1;
                loop {
                    if j >= c.len() {
                        break;
                    }
                    if c[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                        j += 1 + hashes;
                        break;
                    }
                    if c[j] == '\n' {
                        line += 1;
                    }
                    j += 1;
                }
                i = j;
            } else {
                let start = j;
                while ident(at(j)) {
                    j += 1;
                }
                out.push((c[start..j].iter().collect(), line));
                i = j;
            }
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // An escaped char literal: '\n', '\'', '\u{7f}'.
                let mut j = i + 3;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                out.push(("\"\"".to_owned(), line));
                i = j + 1;
            } else if at(i + 2) == '\'' {
                out.push(("\"\"".to_owned(), line));
                i += 3;
            } else {
                // A lifetime or a loop label.
                let mut j = i + 1;
                while ident(at(j)) {
                    j += 1;
                }
                out.push((c[i..j].iter().collect(), line));
                i = j;
            }
        } else if ident(ch) {
            let start = i;
            while ident(at(i)) {
                i += 1;
            }
            out.push((c[start..i].iter().collect(), line));
        } else {
            let pair: String = [ch, at(i + 1)].iter().collect();
            if ["::", "->", "=>"].contains(&pair.as_str()) {
                out.push((pair, line));
                i += 2;
            } else {
                out.push((ch.to_string(), line));
                i += 1;
            }
        }
    }
    out
}

fn is_ident_token(t: &str) -> bool {
    is_ident(t) && !["as", "where", "for", "mut", "dyn", "impl", "fn"].contains(&t)
}

/// What a `{` opens, so that what is written inside lands in the right place.
#[derive(Clone, Debug)]
enum Scope {
    Module(Vec<String>),
    Impl(String),
    Trait(String),
    Struct(String),
    Enum(String),
    /// A function body, a `match`, a macro, a struct literal: nothing in it is cited.
    Block,
}

/// The last type name in a type written in an `impl` header: `crate::conn::Conn<S>` →
/// `Conn`, `&'a mut Foo` → `Foo`.
fn type_name(toks: &[&str]) -> Option<String> {
    let mut depth = 0;
    let mut name = None;
    for t in toks {
        match *t {
            "<" => depth += 1,
            ">" => depth -= 1,
            t if depth == 0 && is_ident_token(t) => name = Some(t.to_owned()),
            _ => {}
        }
        if depth > 0 && name.is_some() {
            break; // the type's own generic arguments are not its name
        }
    }
    name
}

/// Reads the `impl` header at `toks[0]` (the token after `impl`) up to its `{`: the type
/// the block is for and, for `impl Trait for Type`, the trait.
fn impl_header(toks: &[&str]) -> (Option<String>, Option<String>) {
    let end = toks.iter().position(|t| *t == "{" || *t == ";");
    let mut head = &toks[..end.unwrap_or(toks.len())];
    if head.first() == Some(&"<") {
        // impl<'a, T: Bound<X>> …: skip the generic parameters.
        let mut depth = 0;
        for (k, t) in head.iter().enumerate() {
            match *t {
                "<" => depth += 1,
                ">" => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                head = &head[k + 1..];
                break;
            }
        }
    }
    if let Some(w) = head.iter().position(|t| *t == "where") {
        head = &head[..w];
    }
    let mut depth = 0;
    let mut split = None;
    for (k, t) in head.iter().enumerate() {
        match *t {
            "<" => depth += 1,
            ">" => depth -= 1,
            "for" if depth == 0 => {
                split = Some(k);
                break;
            }
            _ => {}
        }
    }
    match split {
        Some(k) => (type_name(&head[k + 1..]), type_name(&head[..k])),
        None => (type_name(head), None),
    }
}

/// Reads one `use` tree starting at `toks[*i]`, pushing every full path it names
/// (`a::{b, c::D}` → `a::b`, `a::c::D`; `a::{self}` and `a::*` → `a`).
fn use_tree(toks: &[&str], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    while let Some(t) = toks.get(*i) {
        match *t {
            "{" => {
                *i += 1;
                while toks.get(*i).is_some_and(|t| *t != "}") {
                    use_tree(toks, i, &path, out);
                    if toks.get(*i) == Some(&",") {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            "::" | "*" => *i += 1,
            "as" => *i += 2,
            "," | "}" | ";" => break,
            "self" if !path.is_empty() => *i += 1,
            t => {
                path.push(t.to_owned());
                *i += 1;
            }
        }
    }
    out.push(path);
}

/// Tokens after which a keyword starts an item rather than sitting inside a type or an
/// expression (`-> impl Trait`, `*const T`, `<const N: usize>`).
const ITEM_START: &[&str] = &[
    "", ";", "}", "{", "]", "pub", ")", "unsafe", "default", "async", "extern", "\"\"",
];

impl Crate {
    /// Reads every .rs file under `dir`, recursively.
    fn read(dir: &Path) -> Crate {
        fn walk(dir: &Path, root: &Path, files: &mut Vec<(String, String)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, root, files);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let name = path.strip_prefix(root).unwrap().to_str().unwrap();
                    let text = std::fs::read_to_string(&path).unwrap();
                    files.push((name.replace('\\', "/"), text));
                }
            }
        }
        let mut files = Vec::new();
        walk(dir, dir, &mut files);
        Crate::from_files(&files)
    }

    /// Builds the model from `(path relative to src/, text)` pairs.
    fn from_files<S: AsRef<str>>(files: &[(S, S)]) -> Crate {
        let mut krate = Crate::default();
        for (file, _) in files {
            let file = file.as_ref();
            let module = if file == "main.rs" {
                vec!["main".to_owned()]
            } else {
                module_path(file)
            };
            krate
                .modules
                .insert(module, (file.to_owned(), BTreeMap::new()));
        }
        for (file, text) in files {
            krate.scan(file.as_ref(), text.as_ref());
        }
        krate
    }

    /// Walks one file's tokens, tracking what each `{` opened until its `}`.
    fn scan(&mut self, file: &str, text: &str) {
        let toks = tokens(text);
        let words: Vec<&str> = toks.iter().map(|(t, _)| t.as_str()).collect();
        let root = if file == "main.rs" {
            vec!["main".to_owned()]
        } else {
            module_path(file)
        };
        // (what the brace opened, the paren/bracket depth at which it opened)
        let mut stack = vec![(Scope::Module(root), 0usize)];
        let mut pending: Option<Scope> = None;
        let mut nest = 0usize;
        for (i, &t) in words.iter().enumerate() {
            let prev = if i == 0 { "" } else { words[i - 1] };
            let next = words.get(i + 1).copied().unwrap_or("");
            let after = words.get(i + 2).copied().unwrap_or("");
            let (scope, scope_nest) = stack.last().cloned().unwrap();
            let module = stack
                .iter()
                .rev()
                .find_map(|(s, _)| match s {
                    Scope::Module(m) => Some(m.clone()),
                    _ => None,
                })
                .unwrap();
            let at_item = ITEM_START.contains(&prev);
            let mut define = |name: &str, kind: Kind| match &scope {
                Scope::Module(m) => {
                    if let Some((_, items)) = self.modules.get_mut(m) {
                        items.insert(name.to_owned(), kind);
                    }
                }
                Scope::Impl(ty) | Scope::Trait(ty) => {
                    let members = self.members.entry(ty.clone()).or_default();
                    members.insert(name.to_owned(), kind);
                }
                _ => {}
            };
            match t {
                "(" | "[" => nest += 1,
                ")" | "]" => nest = nest.saturating_sub(1),
                "{" => stack.push((pending.take().unwrap_or(Scope::Block), nest)),
                "}" => {
                    stack.pop();
                    let line = toks[i].1;
                    assert!(!stack.is_empty(), "{file}:{line}: a `}}` closes nothing");
                }
                ";" if nest == scope_nest => pending = None,
                "fn" if is_ident_token(next) => {
                    define(next, Kind::Fn);
                    pending = Some(Scope::Block);
                }
                "const" | "static" if at_item => {
                    let name = if next == "mut" { after } else { next };
                    let colon = words.get(i + 2 + usize::from(next == "mut"));
                    if is_ident_token(name) && colon == Some(&":") {
                        define(name, Kind::Value);
                    }
                }
                "type" if is_ident_token(next) => define(next, Kind::Type),
                "struct" | "enum" | "trait" | "union" if at_item && is_ident_token(next) => {
                    define(next, Kind::Type);
                    let name = next.to_owned();
                    pending = Some(match t {
                        "enum" => Scope::Enum(name),
                        "trait" => Scope::Trait(name),
                        _ => Scope::Struct(name),
                    });
                }
                "mod" if at_item && is_ident_token(next) => {
                    define(next, Kind::Module);
                    if after == "{" {
                        let mut inner = module.clone();
                        inner.push(next.to_owned());
                        let entry = (file.to_owned(), BTreeMap::new());
                        self.modules.entry(inner.clone()).or_insert(entry);
                        pending = Some(Scope::Module(inner));
                    }
                }
                "impl" if at_item => {
                    let (ty, tr) = impl_header(&words[i + 1..]);
                    if let (Some(ty), Some(tr)) = (&ty, tr) {
                        self.traits_of.entry(ty.clone()).or_default().insert(tr);
                    }
                    pending = Some(ty.map_or(Scope::Block, Scope::Impl));
                }
                "use" if at_item => {
                    let mut paths = Vec::new();
                    let mut j = i + 1;
                    use_tree(&words, &mut j, &[], &mut paths);
                    for path in paths {
                        self.uses.push(Use {
                            file: file.to_owned(),
                            module: module.clone(),
                            line: toks[i].1,
                            path,
                        });
                    }
                }
                // A field or a variant: directly in the struct's or enum's braces.
                name if nest == scope_nest && is_ident_token(name) => match &scope {
                    Scope::Struct(ty)
                        if next == ":" && ["{", ",", "pub", ")", "]"].contains(&prev) =>
                    {
                        let members = self.members.entry(ty.clone()).or_default();
                        members.insert(name.to_owned(), Kind::Value);
                    }
                    Scope::Enum(ty)
                        if ["{", ",", "]"].contains(&prev)
                            && [",", "(", "{", "=", "}"].contains(&next) =>
                    {
                        let members = self.members.entry(ty.clone()).or_default();
                        members.insert(name.to_owned(), Kind::Value);
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        // A literal or comment read as code would leave a brace open or closed one too
        // many: then every name after it would land in the wrong place.
        assert!(
            stack.len() == 1 && nest == 0,
            "{file}: braces or brackets do not balance as read ({} open)",
            stack.len() - 1
        );
    }

    /// A member of type `ty` (its own, or a default method of a trait it implements).
    fn member(&self, ty: &str, name: &str) -> Option<Kind> {
        let own = self.members.get(ty).and_then(|m| m.get(name)).copied();
        own.or_else(|| {
            let traits = self.traits_of.get(ty)?;
            traits
                .iter()
                .find_map(|tr| self.members.get(tr)?.get(name).copied())
        })
    }

    /// Whether `segments` (called as a function if `called`) names something src/
    /// defines *where the path says*: `Type::member`, `Enum::Variant`, `module::item`,
    /// `module::Type::member`, nested modules (`backplane::link`, `timer::tests`). A
    /// path may start at any module by its last name (`link::Link::read`). A lone name
    /// passes if anything anywhere defines it.
    fn cites(&self, segments: &[&str], called: bool) -> bool {
        let fits = |kind: Kind| !called || kind == Kind::Fn;
        let (last, outer) = segments.split_last().expect("a name");
        if outer.is_empty() {
            let items = self.modules.values().flat_map(|(_, items)| items.iter());
            let members = self.members.values().flat_map(|m| m.iter());
            return items.chain(members).any(|(n, k)| n == last && fits(*k));
        }
        enum At<'a> {
            Module(&'a Vec<String>),
            Type(&'a str),
        }
        let is_type = |name: &str| {
            self.modules
                .values()
                .any(|(_, items)| items.get(name) == Some(&Kind::Type))
        };
        let mut here: Vec<At> = self
            .modules
            .keys()
            .filter(|m| m.last().is_some_and(|n| n == outer[0]))
            .map(At::Module)
            .collect();
        if is_type(outer[0]) {
            here.push(At::Type(outer[0]));
        }
        for seg in &outer[1..] {
            let mut next = Vec::new();
            for at in here {
                if let At::Module(m) = at {
                    let mut inner = m.clone();
                    inner.push((*seg).to_owned());
                    if let Some((path, _)) = self.modules.get_key_value(&inner) {
                        next.push(At::Module(path));
                    }
                    if self.modules[m].1.get(*seg) == Some(&Kind::Type) {
                        next.push(At::Type(seg));
                    }
                }
            }
            here = next;
        }
        here.iter().any(|at| match at {
            At::Module(m) => self.modules[*m].1.get(*last).is_some_and(|k| fits(*k)),
            At::Type(ty) => self.member(ty, last).is_some_and(fits),
        })
    }

    /// The file-level import graph: file → the files its `use` lines import from, each
    /// with the line of the first such `use`. `mod x;` is not an import; `use super::X`
    /// is an import of the parent's file; `use x::Y` from the file that declares `mod x`
    /// is an import of x's file. Paths that leave the crate (std, mio) are not edges, nor
    /// is a file's use of itself (`use super::*` in its own `mod tests`).
    fn imports(&self) -> BTreeMap<String, BTreeMap<String, usize>> {
        let mut graph: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for (file, _) in self.modules.values() {
            graph.entry(file.clone()).or_default();
        }
        for u in &self.uses {
            // A test module's uses are left out (as `modules_import_one_way` leaves out
            // what follows `#[cfg(test)]`): a test may drive its module through the one
            // above it, the parser for a rule between flags, which the program never does.
            if u.module.iter().any(|segment| segment == "tests") {
                continue;
            }
            let Some(first) = u.path.first() else {
                continue;
            };
            let mut at: Vec<String> = match first.as_str() {
                "crate" | "comet_chat" => Vec::new(),
                "self" | "super" => u.module.clone(),
                child => {
                    let mut inner = u.module.clone();
                    inner.push(child.to_owned());
                    if !self.modules.contains_key(&inner) {
                        continue; // another crate: std, mio, …
                    }
                    inner
                }
            };
            let mut rest = u.path.iter().skip(1).peekable();
            if first == "super" {
                at.pop();
                while rest.next_if(|s| *s == "super").is_some() {
                    at.pop();
                }
            }
            for seg in rest {
                at.push(seg.clone());
                if !self.modules.contains_key(&at) {
                    at.pop();
                    break;
                }
            }
            let Some((target, _)) = self.modules.get(&at) else {
                continue;
            };
            if *target != u.file {
                let edges = graph.entry(u.file.clone()).or_default();
                edges.entry(target.clone()).or_insert(u.line);
            }
        }
        graph
    }
}

/// Every circle of imports among files: the strongly connected components of the import
/// graph with more than one file (Tarjan's algorithm), each as its files and the edges
/// among them (`a.rs:12 -> b.rs`), so the report says which `use` lines to break.
fn import_circles(graph: &BTreeMap<String, BTreeMap<String, usize>>) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<String, BTreeMap<String, usize>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        components: Vec<Vec<&'g str>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    self.low.insert(v, self.low[v].min(self.low[w]));
                } else if self.on_stack.contains(w) {
                    self.low.insert(v, self.low[v].min(self.index[w]));
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                self.components.push(component);
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for v in graph.keys() {
        if !tarjan.index.contains_key(v.as_str()) {
            tarjan.visit(v);
        }
    }
    let mut circles = Vec::new();
    for mut component in tarjan.components {
        if component.len() < 2 {
            continue;
        }
        component.sort_unstable();
        let mut circle = Vec::new();
        for from in &component {
            for (to, line) in &graph[*from] {
                if component.contains(&to.as_str()) {
                    circle.push(format!("{from}:{line} -> {to}"));
                }
            }
        }
        circles.push(circle);
    }
    circles.sort();
    circles
}

#[test]
fn every_name_the_tour_cites_exists_in_src() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let krate = Crate::read(&root.join("src"));
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
        if !krate.cites(&segments, as_function) {
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
    let krate = Crate::read(&root.join("src"));
    let mut named = Vec::new();
    for piece in page.split("<code>").skip(1) {
        let name = piece.split("</code>").next().unwrap();
        if let Some(path) = name.strip_suffix("()") {
            let segments: Vec<&str> = path.split("::").collect();
            let known = krate.cites(&segments, true);
            assert!(known, "the X-ray names {name}, which src/ does not define");
            named.push(name.to_owned());
        }
    }
    assert!(
        named.len() >= 10,
        "each panel names its functions: {named:?}"
    );
}

/// lib.rs opens with a tour of the crate, one line per module: every module it links
/// (`[`server`]`) must be a module of the crate, and every other Rust name it cites in
/// backticks must exist where its path says.
#[test]
fn every_name_the_crate_tour_cites_exists_in_src() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let tour: String = lib
        .lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .map(|line| format!("{line}\n"))
        .collect();
    let krate = Crate::read(&root.join("src"));
    let mut linked = Vec::new();
    let mut missing = Vec::new();
    for piece in tour.split("[`").skip(1) {
        let Some(name) = piece.split("`]").next().filter(|n| is_ident(n)) else {
            continue;
        };
        linked.push(name.to_owned());
        if !krate.modules.contains_key(&vec![name.to_owned()]) {
            missing.push(name.to_owned());
        }
    }
    for span in spans(&tour) {
        let (path, called) = match span.strip_suffix("()") {
            Some(path) => (path, true),
            None => (span.as_str(), false),
        };
        let segments: Vec<&str> = path.split("::").collect();
        if segments.len() > 1
            && segments.iter().all(|s| is_ident(s))
            && !EXTERNAL.contains(&segments[0])
            && !krate.cites(&segments, called)
        {
            missing.push(span);
        }
    }
    assert!(linked.len() >= 20, "the tour names each module: {linked:?}");
    assert!(
        missing.is_empty(),
        "src/lib.rs's tour names what src/ does not define: {missing:?}"
    );
}

/// The checker itself: a name that exists passes, one that does not is caught, and a
/// `Type::member` pair passes only where that type really has that member.
#[test]
fn the_checker_tells_real_names_from_stale_ones() {
    let source = "pub struct Server {}\nimpl Server { pub fn pass(&mut self) {} }\n\
                  pub enum Deadline {\n    Poll,\n    Write,\n}\npub const REQUESTS_PER_TURN: usize = 16;";
    let krate = Crate::from_files(&[("server.rs", source)]);
    let defined = |name: &str, called: bool| krate.cites(&[name], called);
    assert!(defined("pass", true));
    assert!(defined("Server", false));
    assert!(defined("Poll", false));
    assert!(defined("REQUESTS_PER_TURN", false));
    assert!(!defined("broadcast", true));
    assert!(!defined("pas", true), "a prefix is not a name");
    assert!(!defined("Parked", false));
    assert_eq!(
        spans("see `Server::pass()` and `a b`\n```\n`not this`\n```\n`Deadline::Poll`"),
        ["Server::pass()", "a b", "Deadline::Poll"]
    );

    // Pairs are checked as pairs: `flush` exists, but only on `Conn`.
    let files = [
        (
            "server.rs",
            "//! fn stale() {}\n\
             pub struct Server { conns: Slab<Conn>, pub(crate) read_chunk: Box<[u8]> }\n\
             mod io;\n\
             impl Server {\n\
                 /// Not a brace: `}`.\n\
                 pub fn pass(&mut self) { let s = \"}\"; let c = '}'; /* } */ let r = r#\"}\"#; }\n\
                 pub fn turn<'a>(&'a self) -> impl Iterator<Item = &'a u8> + 'a { let b = b'{'; todo!() }\n\
                 const READ_CHUNK_BYTES: usize = 4096;\n\
             }\n\
             fn outside() {}\n\
             impl std::fmt::Display for Server { fn fmt(&self) {} }\n",
        ),
        (
            "server/io.rs",
            "use super::Server;\nimpl Server { pub(crate) fn read_input(&mut self) {} }\n",
        ),
        (
            "conn.rs",
            "pub struct Conn<S> { pub socket: S, state: State }\n\
             pub enum State { Reading, Parked { since: u64 }, Writing(u8) }\n\
             impl<S: std::io::Write> Conn<S> where S: Send { pub fn flush(&mut self) {} }\n\
             impl State { pub fn may_become(self) -> bool { true } }\n\
             impl Default for State { fn default() -> Self { State::Reading } }\n\
             pub trait Park { fn park(&mut self) {} fn must(&self); }\n\
             impl<S> Park for Conn<S> { fn must(&self) {} }\n\
             #[cfg(test)]\nmod tests { #[test] fn conn_is_small() {} }\n",
        ),
        (
            "backplane/link.rs",
            "pub struct Link;\nimpl Link { pub fn read(&mut self) {} }\npub fn frame() {}\n",
        ),
        ("backplane.rs", "pub mod link;\npub const KEY: &str = \"k\";\n"),
    ];
    let krate = Crate::from_files(&files);
    let cites = |path: &str| match path.strip_suffix("()") {
        Some(path) => krate.cites(&path.split("::").collect::<Vec<_>>(), true),
        None => krate.cites(&path.split("::").collect::<Vec<_>>(), false),
    };
    let real = [
        "Server::pass()",
        "Server::turn()",
        "Server::read_input()", // an impl in another file
        "Server::READ_CHUNK_BYTES",
        "Server::read_chunk", // a field
        "Server::pass",       // a method named, not called
        "Server::fmt()",      // impl Trait for Type
        "Conn::flush()",      // impl<S: Bound> Conn<S> where …
        "Conn::socket",
        "Conn::park()", // a trait's default method, through impl Park for Conn<S>
        "Conn::must()",
        "State::Parked",
        "State::Writing",
        "State::may_become()",
        "State::default()",
        "conn::tests::conn_is_small()",
        "conn::State",
        "conn::State::Reading",
        "backplane::KEY",
        "backplane::link::frame()",
        "link::Link::read()",
        "backplane::link::Link::read()",
        "outside()",
    ];
    let stale = [
        "Server::flush()",   // only on Conn
        "Conn::pass()",      // only on Server
        "Server::outside()", // after the impl's closing brace, despite the braces in literals
        "Server::Reading",   // a variant of State
        "Server::socket",    // a field of Conn
        "State::since",      // a field of one variant, not of State
        "State::Closed",
        "State::READ_CHUNK_BYTES",
        "Conn::READ_CHUNK_BYTES",
        "Server::pass_done()",
        "Server::read_chunk()", // a field is not called
        "stale()",              // only in a comment
        "server::flush()",      // a module, but not one that defines flush
        "conn::Link",
        "link::KEY",
        "backplane::frame()", // in backplane::link, not backplane
        "timer::ticks_ceil()",
        "Nowhere::pass()",
    ];
    let wrong: Vec<_> = real.iter().filter(|p| !cites(p)).collect();
    assert!(wrong.is_empty(), "real names read as stale: {wrong:?}");
    let wrong: Vec<_> = stale.iter().filter(|p| cites(p)).collect();
    assert!(wrong.is_empty(), "stale names read as real: {wrong:?}");
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

/// The import-circle finder itself, on files made up for it: a circle through
/// `use super::…` and a parent's `pub use x::…` is found, wherever the files sit; a
/// one-way chain, `mod x;` declarations, a test module's `use super::*` and a `use`
/// inside a string or comment are not circles.
#[test]
fn the_circle_finder_finds_circles_and_passes_chains() {
    let tree = [
        (
            "lib.rs",
            "pub mod a;\npub mod b;\npub mod c;\npub use a::A;\n",
        ),
        (
            "a.rs",
            "use crate::b::{self, B};\nuse std::io::{self, Read};\npub struct A;\n",
        ),
        ("b.rs", "use crate::c::deep::Deep as D;\npub struct B;\n"),
        (
            "c.rs",
            "pub mod deep;\n/// use crate::a::A;\nconst S: &str = \"use crate::a;\";\n",
        ),
        ("c/deep.rs", "use super::super::b;\npub struct Deep;\n"),
        (
            "server.rs",
            "mod io;\nmod fanout;\npub struct Server;\n\
             #[cfg(test)]\nmod tests { use super::*; }\n",
        ),
        (
            "server/io.rs",
            "use super::Server;\nuse super::fanout::deliver;\n",
        ),
        (
            "server/fanout.rs",
            "use super::Server;\npub fn deliver() {}\n",
        ),
    ];
    let krate = Crate::from_files(&tree);
    let graph = krate.imports();
    let edges = |file: &str| graph[file].keys().cloned().collect::<Vec<_>>();
    assert_eq!(edges("lib.rs"), ["a.rs"]);
    assert_eq!(edges("a.rs"), ["b.rs"]);
    assert_eq!(edges("b.rs"), ["c/deep.rs"]);
    assert!(
        edges("c.rs").is_empty(),
        "a use in a comment or string is no import"
    );
    assert_eq!(
        edges("server.rs"),
        Vec::<String>::new(),
        "mod x; is not an import"
    );
    assert_eq!(edges("server/io.rs"), ["server.rs", "server/fanout.rs"]);
    // c/deep.rs → b.rs → c/deep.rs would be a circle; c/deep.rs uses b, b uses deep.
    let circles = import_circles(&graph);
    assert_eq!(
        circles,
        [["b.rs:1 -> c/deep.rs", "c/deep.rs:1 -> b.rs"]],
        "the one circle in the made-up tree"
    );

    // Without that one, a chain: no circles.
    let mut chain = tree;
    chain[4] = ("c/deep.rs", "use std::io;\npub struct Deep;\n");
    assert!(import_circles(&Crate::from_files(&chain).imports()).is_empty());

    // A parent that re-exports from its child, which uses the parent back.
    let mut parent = chain;
    parent[5] = (
        "server.rs",
        "mod io;\nmod fanout;\npub use fanout::deliver;\npub struct Server;\n",
    );
    assert_eq!(
        import_circles(&Crate::from_files(&parent).imports()),
        [[
            "server.rs:3 -> server/fanout.rs",
            "server/fanout.rs:1 -> server.rs"
        ]]
    );

    // Three siblings in a ring, one of them through a nested `use` tree.
    let ring = [
        ("server.rs", "mod a;\nmod b;\nmod c;\n"),
        ("server/a.rs", "use super::{b::B, Other};\npub struct A;\n"),
        (
            "server/b.rs",
            "pub struct B;\nfn f() { use crate::server::c::C; }\n",
        ),
        (
            "server/c.rs",
            "pub(crate) use super::a::*;\npub struct C;\n",
        ),
    ];
    assert_eq!(
        import_circles(&Crate::from_files(&ring).imports()),
        [[
            "server/a.rs:1 -> server/b.rs",
            "server/b.rs:2 -> server/c.rs",
            "server/c.rs:1 -> server/a.rs",
        ]]
    );
}

/// Files import one way at every depth: no file reaches, through `use` lines, a file
/// that reaches it back (src/server/'s files included, and a child's `use super::X`
/// counts as importing its parent's file), so each can be read knowing only what it
/// imports. `modules_import_one_way` checks src/'s top level, pair by pair; this checks
/// every file and every length of circle.
#[test]
fn no_import_circle_among_files() {
    let krate = Crate::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let graph = krate.imports();
    let edges: usize = graph.values().map(BTreeMap::len).sum();
    assert!(edges > 40, "read the imports: {graph:?}");
    let circles = import_circles(&graph);
    assert!(
        circles.is_empty(),
        "files that import each other, round a circle (file:line of a `use` -> the file it \
         imports):\n{}",
        circles
            .iter()
            .map(|c| c.join("\n  "))
            .collect::<Vec<_>>()
            .join("\n\n")
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
