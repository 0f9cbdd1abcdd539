//! The layers of crates/proxy: no import circle between its top-level modules.
//!
//! A module is a top-level file or folder under `src/` (`src/registry.rs` together with
//! `src/registry/`). Module A depends on module B when a file of A names `crate::b` (in a `use`
//! or in any path, `crate::{b, …}` groups included) or reaches B with `super::` (a child file's
//! `super::super::b`, a top-level file's `super::b`). Comments and string literals are skipped;
//! `crate::Name` paths to items of the crate root (`lib.rs`) are not edges.
//!
//! A circle means two modules can only be understood (and changed) together: move what both
//! need into a module below them (as `upstream_settings` holds the upstream settings that the
//! registry, the balancers, forwarding and health share).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[test]
fn no_import_circles_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_sources(&src, &src);
    assert!(
        files.iter().any(|(path, _)| path == "registry.rs"),
        "no sources read from {}",
        src.display()
    );
    let graph = Graph::from_sources(&files);
    let problems: Vec<String> = graph
        .circles()
        .iter()
        .map(|circle| {
            format!(
                "import circle between {}:\n{}",
                circle.iter().cloned().collect::<Vec<_>>().join(", "),
                graph.describe_edges(circle)
            )
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn the_finder_finds_a_constructed_circle() {
    let files = [
        // a -> b (a `use`); the comment names d but is no edge.
        ("a.rs", "use crate::b::X; // crate::d::Y\n"),
        // b -> c (a path in an expression).
        ("b.rs", "pub fn f() -> u8 {\n    crate::c::g()\n}\n"),
        // c -> a and c -> d (a group).
        ("c.rs", "use crate::{\n    a,\n    d::{Y, Z},\n};\n"),
        // a child file of c reaching e through the crate root.
        ("c/inner.rs", "use super::super::e::E;\nuse super::g;\n"),
        // strings, block comments and char literals are not edges.
        (
            "d.rs",
            "/* crate::a /* nested */ crate::b */\nconst S: &str = \"crate::a\";\nconst C: char = '{';\nfn l<'a>(x: &'a str) -> &'a str { x }\n",
        ),
        // `super` in an inline module is the file's own module.
        ("e.rs", "mod tests {\n    use super::helper;\n}\n"),
        // the crate root's items are not modules.
        ("lib.rs", "mod a;\npub struct Proxy;\n"),
        ("f.rs", "use crate::Proxy;\n"),
        ("helper.rs", ""),
    ];
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(path, text)| (path.to_string(), text.to_string()))
        .collect();
    let graph = Graph::from_sources(&files);
    let edges = |from: &str| -> Vec<&str> {
        graph.edges[from]
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
    };
    assert_eq!(edges("a"), ["b"]);
    assert_eq!(edges("b"), ["c"]);
    assert_eq!(edges("c"), ["a", "d", "e"]);
    assert!(edges("d").is_empty());
    assert!(edges("e").is_empty());
    assert!(edges("f").is_empty());
    let circles = graph.circles();
    let expected: BTreeSet<String> = ["a", "b", "c"].iter().map(|m| m.to_string()).collect();
    assert_eq!(circles, vec![expected.clone()]);
    let described = graph.describe_edges(&expected);
    assert!(described.contains("c -> a (c.rs:1)"), "{described}");

    // A top-level file reaching another module through `super` closes a circle too.
    let files = vec![
        ("g.rs".to_string(), "use super::h::H;\n".to_string()),
        (
            "h.rs".to_string(),
            "pub(crate) use crate::g::G;\n".to_string(),
        ),
    ];
    let circles = Graph::from_sources(&files).circles();
    assert_eq!(circles.len(), 1);
    assert_eq!(circles[0].len(), 2);
}

/// Every `.rs` file under `dir`, as (path relative to `src`, text), sorted by path.
fn read_sources(src: &Path, dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(read_sources(src, &path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(src).unwrap();
            let relative = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let text = std::fs::read_to_string(&path).unwrap();
            files.push((relative, text));
        }
    }
    files
}

/// Module dependencies: module → module it names → where (file:line), first seen.
struct Graph {
    edges: BTreeMap<String, BTreeMap<String, String>>,
}

impl Graph {
    fn from_sources(files: &[(String, String)]) -> Self {
        let modules: BTreeSet<String> = files
            .iter()
            .filter_map(|(path, _)| top_level_module(path))
            .collect();
        let mut edges: BTreeMap<String, BTreeMap<String, String>> = modules
            .iter()
            .map(|m| (m.clone(), BTreeMap::new()))
            .collect();
        for (path, text) in files {
            let Some(from) = top_level_module(path) else {
                continue;
            };
            for (to, line) in references(path, text) {
                if to != from && modules.contains(&to) {
                    if let Some(targets) = edges.get_mut(&from) {
                        targets
                            .entry(to)
                            .or_insert_with(|| format!("{path}:{line}"));
                    }
                }
            }
        }
        Graph { edges }
    }

    /// The modules each module reaches, itself excluded unless through a circle.
    fn reachable(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let mut reach = BTreeMap::new();
        for start in self.edges.keys() {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<&str> = self.edges[start].keys().map(String::as_str).collect();
            while let Some(m) = stack.pop() {
                if seen.insert(m) {
                    stack.extend(self.edges[m].keys().map(String::as_str));
                }
            }
            reach.insert(start.as_str(), seen);
        }
        reach
    }

    /// The circles: sets of two or more modules that all reach each other.
    fn circles(&self) -> Vec<BTreeSet<String>> {
        let reach = self.reachable();
        let mut circles: Vec<BTreeSet<String>> = Vec::new();
        for (&m, reached) in &reach {
            if !reached.contains(m) || circles.iter().any(|c| c.contains(m)) {
                continue;
            }
            let circle = reached
                .iter()
                .filter(|&&other| reach[other].contains(m))
                .map(|other| other.to_string())
                .collect();
            circles.push(circle);
        }
        circles
    }

    /// The edges inside `modules`, one a line: `from -> to (file:line)`.
    fn describe_edges(&self, modules: &BTreeSet<String>) -> String {
        let mut lines = Vec::new();
        for from in modules {
            for (to, at) in &self.edges[from] {
                if modules.contains(to) {
                    lines.push(format!("  {from} -> {to} ({at})"));
                }
            }
        }
        lines.join("\n")
    }
}

/// The top-level module of a file (`registry/entry.rs` → `registry`); `None` for the crate
/// root.
fn top_level_module(path: &str) -> Option<String> {
    let first = path.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(path, "lib.rs" | "main.rs")).then(|| name.to_string())
}

/// The module path of a file: `registry/entry.rs` → `[registry, entry]`, `lib.rs` → `[]`.
fn file_module_path(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// A token of the source with its line: an identifier or one punctuation character (`::` is
/// `:` twice).
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Punct(char),
}

/// The top-level modules a file names, with the line of each naming (one per naming).
fn references(path: &str, text: &str) -> Vec<(String, usize)> {
    let tokens = tokenize(text);
    let file_path = file_module_path(path);
    // Inline modules (`mod tests { … }`) open at a brace depth; `super` inside is relative to them.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut found = Vec::new();
    let at = |i: usize| tokens.get(i).map(|(t, _)| t);
    let is = |i: usize, c: char| at(i) == Some(&Token::Punct(c));
    let mut i = 0;
    while i < tokens.len() {
        let (token, line) = &tokens[i];
        match token {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            Token::Ident(word) if word == "mod" => {
                if let (Some(Token::Ident(name)), true) = (at(i + 1), is(i + 2, '{')) {
                    inline.push((name.clone(), depth));
                }
            }
            Token::Ident(word) if word == "crate" && is(i + 1, ':') && is(i + 2, ':') => {
                found.extend(
                    first_segments(&tokens, i + 3)
                        .into_iter()
                        .map(|m| (m, *line)),
                );
            }
            Token::Ident(word) if word == "super" && is(i + 1, ':') && is(i + 2, ':') => {
                let mut here: Vec<String> = file_path.clone();
                here.extend(inline.iter().map(|(name, _)| name.clone()));
                let mut j = i;
                while matches!(at(j), Some(Token::Ident(w)) if w == "super")
                    && is(j + 1, ':')
                    && is(j + 2, ':')
                {
                    here.pop();
                    j += 3;
                }
                match here.first() {
                    Some(top) => found.push((top.clone(), *line)),
                    None => {
                        found.extend(first_segments(&tokens, j).into_iter().map(|m| (m, *line)))
                    }
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// The first segment of the path starting at token `i`, or of each path of a `{…}` group.
fn first_segments(tokens: &[(Token, usize)], i: usize) -> Vec<String> {
    match tokens.get(i).map(|(t, _)| t) {
        Some(Token::Ident(name)) => vec![name.clone()],
        Some(Token::Punct('{')) => {
            let mut names = Vec::new();
            let mut nesting = 0usize;
            let mut expect_name = true;
            for (token, _) in &tokens[i + 1..] {
                match token {
                    Token::Punct('{') => nesting += 1,
                    Token::Punct('}') if nesting == 0 => break,
                    Token::Punct('}') => nesting -= 1,
                    Token::Punct(',') if nesting == 0 => expect_name = true,
                    Token::Ident(name) if nesting == 0 && expect_name => {
                        names.push(name.clone());
                        expect_name = false;
                    }
                    _ => {}
                }
            }
            names
        }
        _ => Vec::new(),
    }
}

/// Identifiers and punctuation with their lines; comments, strings and character literals
/// are dropped.
fn tokenize(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let count_lines = |from: usize, to: usize, line: &mut usize| {
        *line += chars[from..to.min(chars.len())]
            .iter()
            .filter(|&&c| c == '\n')
            .count();
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let start = i;
            let mut nesting = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    nesting += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    nesting -= 1;
                    i += 2;
                    if nesting == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            count_lines(start, i, &mut line);
        } else if c == '"'
            || (c == 'r' && matches!(next, Some('"' | '#')) && raw_string_at(&chars, i))
        {
            let start = i;
            i = skip_string(&chars, i);
            count_lines(start, i, &mut line);
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            if next == Some('\\') {
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // Byte strings and raw byte strings: b"…", br"…", br#"…"#.
            if (word == "b" || word == "br") && matches!(chars.get(i), Some('"' | '#' | '\'')) {
                if chars.get(i) == Some(&'\'') {
                    continue;
                }
                let begin = if word == "br" { i - 1 } else { i };
                if word == "b" || raw_string_at(&chars, begin) {
                    let start = i;
                    i = skip_string(&chars, begin);
                    count_lines(start, i, &mut line);
                    continue;
                }
            }
            tokens.push((Token::Ident(word), line));
        } else {
            if c == '\n' {
                line += 1;
            } else if !c.is_whitespace() {
                tokens.push((Token::Punct(c), line));
            }
            i += 1;
        }
    }
    tokens
}

/// Whether a raw string (`r"…"`, `r#"…"#`) starts at the `r` at `i`.
fn raw_string_at(chars: &[char], i: usize) -> bool {
    let mut j = i + 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    chars.get(j) == Some(&'"')
}

/// The index after the string starting at `i` (at its `"`, or at the `r` of a raw string).
fn skip_string(chars: &[char], i: usize) -> usize {
    if chars[i] == 'r' {
        let mut hashes = 0;
        let mut j = i + 1;
        while chars.get(j) == Some(&'#') {
            hashes += 1;
            j += 1;
        }
        j += 1;
        while j < chars.len() {
            if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                return j + 1 + hashes;
            }
            j += 1;
        }
        return j;
    }
    let mut j = i + 1;
    while j < chars.len() {
        match chars[j] {
            '\\' => j += 2,
            '"' => return j + 1,
            _ => j += 1,
        }
    }
    j
}
