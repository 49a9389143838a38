//! The import direction of the crate, checked on every `cargo test`.
//!
//! ```text
//! domain ← store ← {calls, export, pbx, settings} ← http ← app ← demo ← bench
//!            hub, metrics: leaves (domain only), usable from calls, http, app and above
//! ```
//!
//! An arrow means "is imported by". [`ALLOWED`] is the table: each top-level module and the
//! modules it may name through `crate::…` or `super::…`. The test reads every `.rs` file under
//! `src/`, strips comments and literals, collects the references per top-level module, and
//! fails on an edge the table does not allow, on a cycle, and on a module the table does not
//! place. `lib.rs` and `main.rs` are the roots that wire everything, so they are not checked.
//!
//! Where the leaves sit, and why:
//! - `hub` (delivery to browsers) and `metrics` (counters) know nothing of the ledger: they may
//!   import only `domain`, so anything from `calls` up may use them.
//! - `settings` reads configuration and masks the database URL with `store::mask_url`, so it
//!   sits beside `calls`, `export` and `pbx`, above `store`.
//! - `bench` measures the synthetic city, so it sits above `demo` (`{demo, bench}` ordered).
//!
//! `calls` and `pbx` are siblings and never import each other: the adapters' output vocabulary,
//! `PbxEvent`, lives in `domain::call`. (The tests that drive the tracker with real AMI captures
//! join the two, so they live outside the crate, in `tests/it/tracker.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module and what it may import.
const ALLOWED: &[(&str, &[&str])] = &[
    ("domain", &[]),
    ("hub", &["domain"]),
    ("metrics", &["domain"]),
    ("store", &["domain"]),
    ("settings", &["domain", "store"]),
    ("pbx", &["domain", "store", "hub", "metrics", "settings"]),
    ("calls", &["domain", "store", "hub", "metrics", "settings"]),
    ("export", &["domain", "store", "hub", "metrics", "settings"]),
    (
        "http",
        &[
            "domain", "store", "hub", "metrics", "settings", "calls", "export", "pbx",
        ],
    ),
    (
        "app",
        &[
            "domain", "store", "hub", "metrics", "settings", "calls", "export", "pbx", "http",
        ],
    ),
    (
        "demo",
        &[
            "domain", "store", "hub", "metrics", "settings", "calls", "export", "pbx", "http",
            "app",
        ],
    ),
    (
        "bench",
        &[
            "domain", "store", "hub", "metrics", "settings", "calls", "export", "pbx", "http",
            "app", "demo",
        ],
    ),
    // This test: it names no module of the crate.
    ("layering", &[]),
];

/// `domain` must stay free of I/O and of everything above it: checked by name as well, so a
/// mistaken table edit cannot let it through.
const NEVER_FROM_DOMAIN: &[&str] = &[
    "store", "http", "export", "pbx", "calls", "hub", "app", "demo", "bench", "settings", "metrics",
];

/// A reference from one top-level module to another, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: String,
    to: String,
    at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Other,
}

/// Rust source as tokens, without comments, strings, chars and lifetimes (a string holding
/// `"crate::store"` is not an import).
fn tokens(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    while i < c.len() {
        let ch = c[i];
        if ch == '/' && at(i + 1) == '/' {
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
                    i += 1;
                }
            }
        } else if ch == 'r'
            && (at(i + 1) == '"' || (at(i + 1) == '#' && matches!(at(i + 2), '"' | '#')))
        {
            // Raw string r"…", r#"…"#: ends at a quote followed by as many #.
            let mut j = i + 1;
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            'raw: while j < c.len() {
                if c[j] == '"' && (0..hashes).all(|k| at(j + 1 + k) == '#') {
                    j += 1 + hashes;
                    break 'raw;
                }
                j += 1;
            }
            i = j;
            out.push(Tok::Other);
        } else if ch == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Other);
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // '\n', '\u{3000}', '\''
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3; // 'a'
            } else {
                i += 1; // a lifetime: the name follows as an ident
            }
            out.push(Tok::Other);
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            // b"…" and b'…' are byte literals: let the quote branch skip them.
            if word == "b" && matches!(at(i), '"' | '\'') {
                continue;
            }
            out.push(Tok::Ident(word));
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Tok::PathSep);
            i += 2;
        } else {
            out.push(match ch {
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                c if c.is_whitespace() => {
                    i += 1;
                    continue;
                }
                _ => Tok::Other,
            });
            i += 1;
        }
    }
    out
}

/// The first segments a path names after `crate::` (or after enough `super::` to reach the
/// crate root): one ident, or each item of a `{…}` group.
fn first_segments(toks: &[Tok], mut k: usize) -> Vec<String> {
    match toks.get(k) {
        Some(Tok::Ident(name)) => vec![name.clone()],
        Some(Tok::Open) => {
            let mut names = Vec::new();
            let mut depth = 0;
            let mut expect_item = true;
            k += 1;
            while let Some(t) = toks.get(k) {
                match t {
                    Tok::Open => depth += 1,
                    Tok::Close if depth == 0 => break,
                    Tok::Close => depth -= 1,
                    Tok::Comma if depth == 0 => expect_item = true,
                    Tok::Ident(name) if depth == 0 && expect_item => {
                        names.push(name.clone());
                        expect_item = false;
                    }
                    _ if depth == 0 => expect_item = false,
                    _ => {}
                }
                k += 1;
            }
            names
        }
        _ => Vec::new(),
    }
}

/// The top-level modules one file names. `depth` is the file's module depth (`store/mod.rs`
/// and `bench.rs` are 1, `store/bulk.rs` is 2); inline `mod x { … }` blocks add to it.
fn references(src: &str, depth: usize) -> Vec<String> {
    let toks = tokens(src);
    let mut found = Vec::new();
    // Brace depths at which an inline module opened.
    let mut inline_mods: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut k = 0;
    while k < toks.len() {
        match &toks[k] {
            Tok::Open => braces += 1,
            Tok::Close => {
                braces = braces.saturating_sub(1);
                if inline_mods.last() == Some(&braces) {
                    inline_mods.pop();
                }
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some(Tok::Ident(_)), Some(Tok::Open)) = (toks.get(k + 1), toks.get(k + 2)) {
                    inline_mods.push(braces);
                }
            }
            Tok::Ident(w) if w == "crate" && toks.get(k + 1) == Some(&Tok::PathSep) => {
                found.extend(first_segments(&toks, k + 2));
            }
            Tok::Ident(w)
                if w == "super"
                    && toks.get(k + 1) == Some(&Tok::PathSep)
                    && (k == 0 || toks[k - 1] != Tok::PathSep) =>
            {
                let mut ups = 0;
                let mut j = k;
                while toks.get(j) == Some(&Tok::Ident("super".into()))
                    && toks.get(j + 1) == Some(&Tok::PathSep)
                {
                    ups += 1;
                    j += 2;
                }
                if ups >= depth + inline_mods.len() {
                    found.extend(first_segments(&toks, j));
                }
                k = j;
                continue;
            }
            _ => {}
        }
        k += 1;
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every reference between distinct top-level modules under `src/`.
fn crate_edges(src: &Path) -> (BTreeSet<String>, Vec<Edge>) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut modules = BTreeSet::new();
    let mut edges = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap_or(&file);
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts.len() == 1 && (parts[0] == "lib.rs" || parts[0] == "main.rs") {
            continue;
        }
        let top = parts[0].trim_end_matches(".rs").to_string();
        // src/a.rs and src/a/mod.rs are depth 1; src/a/b.rs is 2; src/a/b/c.rs is 3.
        let depth = if parts.last().is_some_and(|l| l == "mod.rs") {
            parts.len() - 1
        } else {
            parts.len()
        };
        modules.insert(top.clone());
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        for to in references(&text, depth) {
            if to != top {
                edges.push(Edge {
                    from: top.clone(),
                    to,
                    at: rel.display().to_string(),
                });
            }
        }
    }
    edges.sort();
    edges.dedup();
    (modules, edges)
}

/// A cycle in the graph, if there is one (as the path around it).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Problems of a set of edges against [`ALLOWED`]: unplaced modules, forbidden edges, cycles.
fn problems(modules: &BTreeSet<String>, edges: &[Edge]) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut out = Vec::new();
    for m in modules {
        if !allowed.contains_key(m.as_str()) {
            out.push(format!(
                "src/{m}: a top-level module the layering table does not place; add it to ALLOWED in src/layering.rs"
            ));
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in edges {
        if !modules.contains(&e.to) {
            continue; // `crate::SomeItem` from lib.rs, not a module
        }
        graph
            .entry(e.from.clone())
            .or_default()
            .insert(e.to.clone());
        let ok = allowed
            .get(e.from.as_str())
            .is_some_and(|a| a.contains(&e.to.as_str()));
        if e.from == "domain" && NEVER_FROM_DOMAIN.contains(&e.to.as_str()) {
            out.push(format!(
                "src/{}: domain/ must not use crate::{} (domain is plain types and rules)",
                e.at, e.to
            ));
        } else if !ok {
            out.push(format!(
                "src/{}: {} may not use crate::{} (direction: domain ← store ← {{calls, export, pbx}} ← http ← app ← demo ← bench)",
                e.at, e.from, e.to
            ));
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        out.push(format!("import cycle: {}", cycle.join(" → ")));
    }
    out
}

#[test]
fn the_allowed_table_is_acyclic() {
    let graph: BTreeMap<String, BTreeSet<String>> = ALLOWED
        .iter()
        .map(|(m, to)| (m.to_string(), to.iter().map(|t| t.to_string()).collect()))
        .collect();
    assert_eq!(find_cycle(&graph), None);
}

#[test]
fn modules_import_in_one_direction() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (modules, edges) = crate_edges(&src);
    assert!(
        modules.contains("domain") && modules.contains("store") && edges.len() > 20,
        "the scan found too little: {modules:?}, {} edges",
        edges.len()
    );
    let found = problems(&modules, &edges);
    assert!(found.is_empty(), "layering:\n  {}", found.join("\n  "));
}

/// Crates and std modules that do I/O: `domain` names none of them.
const IO: &[&str] = &[
    "sqlx", "tokio", "axum", "reqwest", "rusqlite", "fs", "net", "process",
];

#[test]
fn domain_does_no_io() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/domain");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    assert!(!files.is_empty());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let toks = tokens(&text);
        for (i, t) in toks.iter().enumerate() {
            let Tok::Ident(w) = t else { continue };
            let std_module =
                i >= 2 && toks[i - 1] == Tok::PathSep && toks[i - 2] == Tok::Ident("std".into());
            let krate = matches!(
                w.as_str(),
                "sqlx" | "tokio" | "axum" | "reqwest" | "rusqlite"
            ) && toks.get(i + 1) == Some(&Tok::PathSep);
            if IO.contains(&w.as_str()) && (krate || std_module) {
                found.push(format!("{}: {w}", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "domain/ does I/O: {found:?}");
}

#[test]
fn the_scanner_sees_imports_and_only_imports() {
    let src = r##"
        //! [`x`](crate::http::Y) in a doc comment
        use crate::{domain::Kana, store::{self, Store}};
        use super::super::pbx::PbxEvent;
        const S: &str = "crate::export";
        const R: &str = r#"crate::demo "quoted""#;
        fn f<'a>(c: char) -> &'a str { if c == '{' { "" } else { crate::hub::x() } }
        /* crate::bench */
        mod tests { use super::*; use super::super::super::calls; }
    "##;
    let mut found = references(src, 2);
    found.sort();
    assert_eq!(found, ["calls", "domain", "hub", "pbx", "store"]);
}

#[test]
fn a_domain_file_using_the_store_is_refused() {
    let modules: BTreeSet<String> = ["domain", "store", "export", "demo"]
        .map(String::from)
        .into();
    let edge = |from: &str, to: &str| Edge {
        from: from.into(),
        to: to.into(),
        at: format!("{from}/x.rs"),
    };
    let found = problems(&modules, &[edge("domain", "store")]);
    assert!(
        found[0].contains("domain/ must not use crate::store"),
        "{found:?}"
    );
    // The circle this test was written against: store → export → demo → store.
    let found = problems(
        &modules,
        &[
            edge("store", "export"),
            edge("export", "demo"),
            edge("demo", "store"),
        ],
    );
    assert!(
        found.iter().any(|p| p.starts_with("import cycle")),
        "{found:?}"
    );
    assert!(found
        .iter()
        .any(|p| p.contains("store may not use crate::export")));
}
