//! `cargo xtask lint`: two structural rules for the library crates under `crates/*/src`, checked
//! from the source text (`cargo xtask test` runs it first):
//!
//! - **no import cycles between the modules of a crate**: a module that names another one
//!   (`use crate::a::B`, `crate::a::f()`, `super::B`, `child::f()`) depends on it; a name the crate
//!   root or a parent module only re-exports (`pub use a::B`) is followed to the module that defines
//!   it, and re-exports themselves are no dependency. Two modules that depend on each other,
//!   directly or through others, are reported with the line of each import on the cycle;
//! - **no function longer than [`MAX_FN_LINES`] lines** of body.
//!
//! Each finding is one line, `file:line: what`. The reading is lexical (comments, strings and
//! `#[cfg(test)] mod tests { … }` blocks are blanked first); it needs no compiler.

use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The longest function body (lines between its braces) the lint accepts.
pub const MAX_FN_LINES: usize = 120;

/// `cargo xtask lint`: print each finding, exit 1 if there is any.
pub fn run(args: &[String]) -> Result<ExitCode> {
    if let Some(arg) = args.first() {
        bail!("lint takes no arguments (got `{arg}`)");
    }
    let findings = check_workspace(&crate::util::workspace_root())?;
    for f in &findings {
        println!("{f}");
    }
    if findings.is_empty() {
        eprintln!("xtask lint: no import cycle, no function over {MAX_FN_LINES} lines");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("xtask lint: {} finding(s)", findings.len());
        Ok(ExitCode::FAILURE)
    }
}

/// Every finding of every crate under `root/crates`, sorted.
pub fn check_workspace(root: &Path) -> Result<Vec<String>> {
    let mut findings = Vec::new();
    let crates = root.join("crates");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&crates)
        .with_context(|| format!("cannot read {}", crates.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("src").is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let files = read_crate(&dir.join("src"))?;
        let shown: Vec<(String, String)> = files
            .into_iter()
            .map(|(path, text)| {
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                (rel, text)
            })
            .collect();
        findings.extend(check_crate(&shown));
    }
    Ok(findings)
}

/// The `.rs` files under `src`, recursively (`src/bin` excluded: each binary is its own crate).
fn read_crate(src: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                if path != src.join("bin") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                out.push((path, text));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The findings of one crate, given as `(path shown, source)` pairs of its `src/` files; the
/// path's part after `src/` gives the module (`lib.rs` the root, `a/mod.rs` and `a.rs` module `a`).
pub fn check_crate(files: &[(String, String)]) -> Vec<String> {
    let modules: Vec<Module> = files
        .iter()
        .filter_map(|(path, text)| {
            let rel = path.rsplit_once("src/").map_or(path.as_str(), |(_, r)| r);
            let name = module_path(rel)?;
            Some(Module {
                file: path.clone(),
                path: name,
                code: blank(text),
            })
        })
        .collect();
    let mut findings = long_functions(&modules);
    findings.extend(cycles(&modules));
    findings
}

/// One source file: its module path (`""` for the crate root) and its code with comments, string
/// and char literals and test modules blanked (line numbers kept).
struct Module {
    file: String,
    path: String,
    code: String,
}

/// `lib.rs` → `""`, `a.rs` → `a`, `a/mod.rs` → `a`, `a/b.rs` → `a::b`; `main.rs` is no module.
fn module_path(rel: &str) -> Option<String> {
    let rel = rel.strip_suffix(".rs")?;
    if rel == "lib" {
        return Some(String::new());
    }
    if rel == "main" {
        return None;
    }
    let rel = rel.strip_suffix("/mod").unwrap_or(rel);
    Some(rel.replace('/', "::"))
}

/// `text` with comments, string and char literals replaced by spaces (newlines kept), and every
/// `#[cfg(test)]` item that follows blanked the same way.
fn blank(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let wipe = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            wipe(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            let mut j = i;
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            wipe(&mut out, i, j);
            i = j;
        } else if b[i] == b'r'
            && (i == 0 || !is_ident(b[i - 1]))
            && matches!(b.get(i + 1), Some(b'"' | b'#'))
        {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            let start = i + 2 + hashes;
            let end = find(b, start, &close).map_or(b.len(), |p| p + close.len());
            wipe(&mut out, i, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            wipe(&mut out, i, end);
            i = end;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                find(b, i + 2, b"'").map(|p| p + 1)
            } else {
                let len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 2 + len)
            };
            match end {
                Some(end) => {
                    wipe(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    let mut code = String::from_utf8(out).unwrap_or_default();
    // Test-only items: `#[cfg(test)]` followed by an item with a body.
    let mut from = 0;
    while let Some(p) = code[from..].find("#[cfg(test)]") {
        let at = from + p;
        let Some(open) = code[at..].find(['{', ';']).map(|q| at + q) else {
            break;
        };
        let end = if code.as_bytes()[open] == b'{' {
            matching_brace(code.as_bytes(), open).map_or(code.len(), |e| e + 1)
        } else {
            open + 1
        };
        let mut bytes = std::mem::take(&mut code).into_bytes();
        wipe(&mut bytes, at, end);
        code = String::from_utf8(bytes).unwrap_or_default();
        from = end;
    }
    code
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The index of the `}` closing the `{` at `open`, in blanked code.
fn matching_brace(code: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in code.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn line_of(code: &str, at: usize) -> usize {
    code[..at].bytes().filter(|&c| c == b'\n').count() + 1
}

/// `file:line: fn NAME is N lines long` for every function whose body is over the limit.
fn long_functions(modules: &[Module]) -> Vec<String> {
    let mut findings = Vec::new();
    for m in modules {
        let b = m.code.as_bytes();
        let mut i = 0;
        while let Some(at) = find(b, i, b"fn ") {
            i = at + 3;
            if at > 0 && is_ident(b[at - 1]) {
                continue;
            }
            let name: String = m.code[at + 3..]
                .trim_start()
                .chars()
                .take_while(|&c| c.is_alphanumeric() || c == '_')
                .collect();
            if name.is_empty() {
                continue;
            }
            let Some(open) = m.code[at..].find(['{', ';']).map(|q| at + q) else {
                continue;
            };
            if b[open] == b';' {
                continue;
            }
            let Some(close) = matching_brace(b, open) else {
                continue;
            };
            let lines = (line_of(&m.code, close) - line_of(&m.code, open)).saturating_sub(1);
            if lines > MAX_FN_LINES {
                findings.push(format!(
                    "{}:{}: fn {name} is {lines} lines long (at most {MAX_FN_LINES})",
                    m.file,
                    line_of(&m.code, at)
                ));
            }
        }
    }
    findings
}

/// One dependency of a module on another: where the import is.
#[derive(Clone)]
struct Edge {
    line: usize,
}

/// The paths a module's code names, made absolute (`crate::a::b`, `super::x`, a child module's
/// name), each with its line.
fn referenced_paths(m: &Module, children: &BTreeSet<String>) -> Vec<(Vec<String>, usize)> {
    let code = &m.code;
    let own = split(&m.path);
    let mut out = Vec::new();
    for (from, to) in statements(code) {
        let stmt = &code[from..to];
        if reexported_tree(stmt).is_some() {
            continue;
        }
        let sb = stmt.as_bytes();
        let mut i = 0;
        while i < sb.len() {
            let starts_word = (sb[i].is_ascii_alphabetic() || sb[i] == b'_')
                && (i == 0 || !(is_ident(sb[i - 1]) || sb[i - 1] == b':'));
            if !starts_word {
                i += 1;
                continue;
            }
            let word_end = i + sb[i..].iter().take_while(|&&c| is_ident(c)).count();
            let word = &stmt[i..word_end];
            let base = if !stmt[word_end..].starts_with("::") {
                None
            } else {
                match word {
                    "crate" => Some(Vec::new()),
                    "super" => Some(own[..own.len().saturating_sub(1)].to_vec()),
                    "self" => Some(own.clone()),
                    w if children.contains(w) => {
                        let mut p = own.clone();
                        p.push(w.to_string());
                        Some(p)
                    }
                    _ => None,
                }
            };
            if let Some(base) = base {
                let line = line_of(code, from + i);
                for tail in expand_tree(&stmt[word_end + 2..]) {
                    let mut p = base.clone();
                    p.extend(tail);
                    out.push((p, line));
                }
            }
            i = word_end;
        }
    }
    out
}

/// The tree of a re-export (`pub use TREE;`, `pub(crate) use TREE;`, attributes before it).
fn reexported_tree(stmt: &str) -> Option<&str> {
    let mut s = stmt.trim_start();
    while s.starts_with("#[") {
        let close = matching_bracket(s)?;
        s = s[close + 1..].trim_start();
    }
    let s = s.strip_prefix("pub")?.trim_start();
    let s = match s.strip_prefix('(') {
        Some(rest) => rest.split_once(')')?.1.trim_start(),
        None => s,
    };
    let tree = s.strip_prefix("use ")?;
    Some(tree.trim().trim_end_matches(';'))
}

/// The index of the `]` closing the `#[` at the start of `s`.
fn matching_bracket(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The code split into statements and items at `;`, `{` and `}` (a `use` declaration whole), as
/// byte ranges.
fn statements(code: &str) -> Vec<(usize, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"use ") && (i == 0 || !is_ident(b[i - 1])) {
            let end = find(b, i, b";").map_or(b.len(), |p| p + 1);
            out.push((start, end));
            start = end;
            i = end;
            continue;
        }
        if matches!(b[i], b';' | b'{' | b'}') {
            out.push((start, i + 1));
            start = i + 1;
        }
        i += 1;
    }
    out.push((start, b.len()));
    out
}

/// The paths a `use` tree or an expression path names, after its first `::`:
/// `a::{b, c::D}` → `[a, b]`, `[a, c, D]`; `f(x)` → `[f]`.
fn expand_tree(s: &str) -> Vec<Vec<String>> {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('{') {
        let Some(close) = matching_brace(s.as_bytes(), 0) else {
            return Vec::new();
        };
        let inner = &rest[..close - 1];
        return split_top(inner)
            .into_iter()
            .flat_map(|part| {
                let part = part.trim();
                if part.is_empty() || part == "self" || part == "*" {
                    vec![Vec::new()]
                } else {
                    expand_tree(part)
                }
            })
            .collect();
    }
    let ident: String = s
        .chars()
        .take_while(|&c| c.is_alphanumeric() || c == '_')
        .collect();
    if ident.is_empty() {
        return vec![Vec::new()];
    }
    let rest = &s[ident.len()..];
    match rest.strip_prefix("::") {
        Some(rest) => expand_tree(rest)
            .into_iter()
            .map(|mut t| {
                t.insert(0, ident.clone());
                t
            })
            .collect(),
        None => vec![vec![ident]],
    }
}

/// `a, b::{c, d}, e` split at its top-level commas.
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn split(path: &str) -> Vec<String> {
    if path.is_empty() {
        Vec::new()
    } else {
        path.split("::").map(str::to_string).collect()
    }
}

/// The re-exports of each module: `pub use a::{B, c::D as E}` in module `m` maps `m::B` to
/// `m::a::B` and `m::E` to `m::a::c::D`.
fn reexports(modules: &[Module], paths: &BTreeSet<String>) -> BTreeMap<String, Vec<String>> {
    let mut map = BTreeMap::new();
    for m in modules {
        let own = split(&m.path);
        for (from, to) in statements(&m.code) {
            let Some(tree) = reexported_tree(&m.code[from..to]) else {
                continue;
            };
            for target in expand_use_with_alias(tree) {
                let (path, alias) = target;
                let Some(first) = path.first() else { continue };
                let mut abs = match first.as_str() {
                    "crate" => Vec::new(),
                    "super" => {
                        let mut p = own.clone();
                        p.pop();
                        p
                    }
                    "self" => own.clone(),
                    w => {
                        let mut p = own.clone();
                        p.push(w.to_string());
                        if !paths.contains(&p.join("::")) {
                            continue; // an external crate's item
                        }
                        p
                    }
                };
                abs.extend(path.iter().skip(1).cloned());
                let mut key = own.clone();
                key.push(alias);
                map.insert(key.join("::"), abs);
            }
        }
    }
    map
}

/// A `use` tree with `as` renames: `a::{B, C as D}` → `([a, B], B)`, `([a, C], D)`.
fn expand_use_with_alias(tree: &str) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let prefix: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let close = matching_brace(tree.as_bytes(), open).unwrap_or(tree.len());
        for part in split_top(&tree[open + 1..close]) {
            for (mut p, alias) in expand_use_with_alias(part) {
                let mut full = prefix.clone();
                full.append(&mut p);
                out.push((full, alias));
            }
        }
        return out;
    }
    let (path, alias) = match tree.split_once(" as ") {
        Some((p, a)) => (p.trim(), a.trim().to_string()),
        None => (
            tree,
            tree.rsplit("::").next().unwrap_or(tree).trim().to_string(),
        ),
    };
    if path.is_empty() || alias == "*" || alias == "self" {
        return out;
    }
    out.push((
        path.split("::").map(|s| s.trim().to_string()).collect(),
        alias,
    ));
    out
}

/// The module that defines what `path` names: its longest prefix that is a module, following
/// re-exports of the name after it.
fn resolve(
    mut path: Vec<String>,
    paths: &BTreeSet<String>,
    reexp: &BTreeMap<String, Vec<String>>,
) -> String {
    for _ in 0..16 {
        let mut module = Vec::new();
        for seg in &path {
            let mut next = module.clone();
            next.push(seg.clone());
            if paths.contains(&next.join("::")) {
                module = next;
            } else {
                break;
            }
        }
        if module.len() < path.len() {
            let mut item = module.clone();
            item.push(path[module.len()].clone());
            if let Some(target) = reexp.get(&item.join("::")) {
                let mut p = target.clone();
                p.extend(path[module.len() + 1..].iter().cloned());
                path = p;
                continue;
            }
        }
        return module.join("::");
    }
    String::new()
}

/// `file:line: module cycle: a -> b (line) -> a` for each cycle between a crate's modules.
fn cycles(modules: &[Module]) -> Vec<String> {
    let paths: BTreeSet<String> = modules.iter().map(|m| m.path.clone()).collect();
    let reexp = reexports(modules, &paths);
    let mut graph: BTreeMap<String, BTreeMap<String, Edge>> = BTreeMap::new();
    for m in modules {
        let children: BTreeSet<String> = paths
            .iter()
            .filter_map(|p| {
                let rest = if m.path.is_empty() {
                    Some(p.as_str())
                } else {
                    p.strip_prefix(&format!("{}::", m.path))
                };
                rest.filter(|r| !r.is_empty() && !r.contains("::"))
                    .map(str::to_string)
            })
            .collect();
        let edges = graph.entry(m.path.clone()).or_default();
        for (p, line) in referenced_paths(m, &children) {
            let target = resolve(p, &paths, &reexp);
            if target != m.path {
                edges.entry(target).or_insert(Edge { line });
            }
        }
    }
    let file_of: BTreeMap<&str, &str> = modules
        .iter()
        .map(|m| (m.path.as_str(), m.file.as_str()))
        .collect();
    let show = |p: &str| {
        if p.is_empty() {
            "crate".to_string()
        } else {
            p.to_string()
        }
    };
    // Each strongly connected set of modules once, shown as one cycle through it.
    let mut findings = Vec::new();
    let mut reported: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    for start in graph.keys() {
        let Some(cycle) = shortest_cycle(&graph, start) else {
            continue;
        };
        let set: BTreeSet<String> = cycle.iter().cloned().collect();
        if !reported.insert(set) {
            continue;
        }
        let mut text = String::new();
        for pair in cycle.windows(2) {
            let edge = &graph[&pair[0]][&pair[1]];
            text.push_str(&format!(
                "{}:{}: uses {}; ",
                file_of.get(pair[0].as_str()).copied().unwrap_or("?"),
                edge.line,
                show(&pair[1])
            ));
        }
        let names: Vec<String> = cycle.iter().map(|p| show(p)).collect();
        findings.push(format!(
            "{}:{}: module cycle {} ({})",
            file_of.get(start.as_str()).copied().unwrap_or("?"),
            graph[&cycle[0]][&cycle[1]].line,
            names.join(" -> "),
            text.trim_end_matches("; ")
        ));
    }
    findings
}

/// The shortest path from `start` back to itself, as `[start, …, start]`.
fn shortest_cycle(
    graph: &BTreeMap<String, BTreeMap<String, Edge>>,
    start: &str,
) -> Option<Vec<String>> {
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(at) = queue.pop_front() {
        for next in graph.get(at).into_iter().flat_map(|e| e.keys()) {
            if next == start {
                let mut back = vec![start.to_string()];
                let mut cur = at;
                while cur != start {
                    back.push(cur.to_string());
                    cur = prev[cur];
                }
                back.push(start.to_string());
                back.reverse();
                return Some(back);
            }
            if !prev.contains_key(next.as_str()) {
                prev.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, t)| (format!("crates/x/src/{p}"), t.to_string()))
            .collect()
    }

    #[test]
    fn two_modules_importing_each_other_are_a_cycle() {
        let found = check_crate(&files(&[
            ("lib.rs", "mod a;\nmod b;\npub use a::A;\n"),
            ("a.rs", "use crate::b::B;\npub struct A;\n"),
            (
                "b.rs",
                "// use crate::a::A; in a comment is nothing\nfn f() { let _ = \"crate::a\"; }\n",
            ),
        ]));
        assert!(found.is_empty(), "{found:?}");
        let found = check_crate(&files(&[
            ("lib.rs", "mod a;\nmod b;\npub use a::A;\n"),
            ("a.rs", "use crate::b::B;\npub struct A;\n"),
            ("b.rs", "\n\nfn f() -> crate::A { todo!() }\n"),
        ]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("module cycle a -> b -> a"), "{found:?}");
        assert!(
            found[0].contains("crates/x/src/b.rs:3: uses a"),
            "{found:?}"
        );
    }

    #[test]
    fn cycles_through_a_third_module_and_the_root_are_found() {
        let found = check_crate(&files(&[
            (
                "lib.rs",
                "mod a;\nmod b;\nmod c;\npub struct Hook;\nfn g() { a::f() }\n",
            ),
            ("a.rs", "use crate::{b::{self, B}};\n"),
            ("b.rs", "use crate::c::C;\n"),
            ("c.rs", "use crate::Hook;\n"),
        ]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("module cycle crate -> a -> b -> c -> crate"),
            "{found:?}"
        );
    }

    #[test]
    fn test_modules_and_strings_are_not_imports() {
        let found = check_crate(&files(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            (
                "a.rs",
                "use crate::b::B;\nconst S: &str = r#\"crate::b\"#;\nconst C: char = '{';\n",
            ),
            (
                "b.rs",
                "pub struct B;\n#[cfg(test)]\nmod tests {\n    use crate::a::*;\n}\n",
            ),
        ]));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn long_functions_are_reported_with_their_line() {
        let body = "    let _x = 1;\n".repeat(MAX_FN_LINES);
        let ok = format!("\nfn short() {{\n{body}}}\n");
        assert!(check_crate(&files(&[("lib.rs", &ok)])).is_empty());
        let long = format!("\nfn long<'a>(s: &'a str) -> &'a str {{\n{body}    s\n}}\n");
        let found = check_crate(&files(&[("lib.rs", &long)]));
        assert_eq!(
            found,
            [format!(
                "crates/x/src/lib.rs:2: fn long is {} lines long (at most {MAX_FN_LINES})",
                MAX_FN_LINES + 1
            )]
        );
    }
}
