//! The shape of the crate, checked so that it stays true: the top-level
//! modules of `src/` form a layered graph (no module reaches, directly or
//! through others, back to itself). A cycle is where a change to one layer
//! starts forcing edits in another, the tangle issue 15 took apart.
//!
//! Reads the sources: every `crate::name` path (in `use` lines, grouped
//! `use crate::{a, b::c}` lists and inline paths) outside comments is an
//! edge from the file's top-level module to `name`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (None: the crate root
/// and the binary, which may use everything).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.as_str() {
        "lib.rs" | "main.rs" | "bin" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// The source without comments (line and block; doc comments included),
/// string literals kept (paths do not appear in them in practice, and a
/// false edge would only make this test stricter).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    while i < b.len() {
        if depth > 0 {
            if b[i..].starts_with(b"*/") {
                depth -= 1;
                i += 2;
            } else if b[i..].starts_with(b"/*") {
                depth += 1;
                i += 2;
            } else {
                i += 1;
            }
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            depth = 1;
            i += 2;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The top-level modules a source text names through `crate::`.
fn uses(text: &str) -> BTreeSet<String> {
    let text = strip_comments(text);
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in text.match_indices("crate::") {
        // `tjfwd::crate::` cannot occur; `$crate::` is a macro's own crate.
        if text[..at].ends_with('$') {
            continue;
        }
        let rest = text[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            // A grouped use: the first segment of each item at depth 0.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident(&group[i..]);
                        if !name.is_empty() && name != "self" {
                            out.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// A cycle through `start`, if any (a path of modules back to it).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut p = path.clone();
                p.push(start.to_string());
                return Some(p);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let edges = graph.entry(module.clone()).or_default();
        for used in uses(&text) {
            if used != module {
                edges.insert(used);
            }
        }
    }
    graph
}

#[test]
fn the_modules_form_no_cycle() {
    let graph = graph();
    assert!(graph.len() > 10, "too few modules found: {graph:?}");
    // Each cycle once (it is found from each of its modules).
    let mut seen = BTreeSet::new();
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .filter(|c| seen.insert(c.iter().cloned().collect::<BTreeSet<_>>()))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles between top-level modules (a lower layer must not use an upper one):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_reader_sees_every_kind_of_path() {
    let text = "use crate::a::B;\nuse crate::{b, c::{D, E}, self};\n\
                // use crate::commented;\n/* crate::blocked */ fn f() { crate::d::g(); }\n\
                macro_rules! m { () => { $crate::e::h() } }";
    let found: Vec<String> = uses(text).into_iter().collect();
    assert_eq!(found, ["a", "b", "c", "d"]);
    let mut g = BTreeMap::new();
    g.insert("x".to_string(), BTreeSet::from(["y".to_string()]));
    g.insert("y".to_string(), BTreeSet::from(["z".to_string()]));
    g.insert("z".to_string(), BTreeSet::from(["x".to_string()]));
    assert_eq!(cycle_from(&g, "x").unwrap(), ["x", "y", "z", "x"]);
    g.get_mut("z").unwrap().clear();
    assert_eq!(cycle_from(&g, "x"), None);
}
