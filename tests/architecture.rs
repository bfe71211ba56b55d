//! The architecture test: the layers of `src/` and the one order they may import in.
//!
//! Every top-level module of the crate is a layer (a folder such as `src/engine/`,
//! or a file such as `src/cli.rs`). A layer may import only the layers before it in
//! [`ORDER`]: lower layers never import higher ones, no two layers import each
//! other, and no layer imports a command (`cmd` is next to last; only `main` is
//! above it). `docs/architecture.md` draws the same order and says what each layer
//! holds.
//!
//! An import is any path through the crate root in code (`crate::x`, `use
//! crate::{x, y}`, or `super::` climbing out of the layer); comments and test-only
//! code (`#[cfg(test)]` modules and the files they include) are not imports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, lowest first. Written once here and in `docs/architecture.md`.
const ORDER: &[&str] = &[
    "edge",     // the process edge: argv, exit codes, stderr, cancellation, safe files, redaction
    "render",   // text, tables, JSON, templates, badges
    "engine",   // connection, transport, Engine API calls
    "swarm",    // the model: snapshot, modes, selection, labels
    "metrics",  // metric sources
    "rules",    // labels and rules files into typed rules
    "decide",   // the pure core
    "store",    // what agents keep in the swarm: lease, history, fights, stats
    "plan",     // snapshot + rules + metrics + history -> decisions per service
    "execute",  // replica updates, retries, convergence
    "registry", // OCI distribution client
    "provenance", // labels, OCI annotations, drift, attestations
    "agent",    // the `run` loop, its endpoints and stats collector
    "replay",   // backtesting: series, simulation, chart
    "cli",      // the clap tree
    "cmd",      // the commands
    "main",     // the entry point
];

/// Top-level modules that exist only under `#[cfg(test)]`.
const TEST_ONLY: &[&str] = &["testutil"];

/// One import that breaks [`ORDER`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    file: String,
    line: usize,
    from: String,
    to: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: `{}` imports `{}`, which is not below it",
            self.file, self.line, self.from, self.to
        )
    }
}

fn rank(layer: &str) -> Option<usize> {
    ORDER.iter().position(|l| *l == layer)
}

/// The module path of a file under `src/`: `src/cmd/rules/history.rs` ->
/// `[cmd, rules, history]`, `src/agent/mod.rs` -> `[agent]`, `src/main.rs` -> `[main]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs").to_string();
    if stem != "mod" {
        parts.push(stem);
    }
    parts
}

/// The code of a file without comments and without test-only modules, line by line
/// (line numbers kept).
fn code_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block_comment = false;
    let mut skip_depth: Option<i64> = None; // brace depth of a #[cfg(test)] module
    let mut depth: i64 = 0;
    let mut pending_test_attr = false;
    for raw in text.lines() {
        let mut line = String::new();
        let mut chars = raw.chars().peekable();
        let mut in_str = false;
        while let Some(c) = chars.next() {
            if in_block_comment {
                if c == '*' && chars.peek() == Some(&'/') {
                    chars.next();
                    in_block_comment = false;
                }
                continue;
            }
            if in_str {
                line.push(c);
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        line.push(n);
                    }
                } else if c == '"' {
                    in_str = false;
                }
                continue;
            }
            match c {
                '"' => {
                    in_str = true;
                    line.push(c);
                }
                '/' if chars.peek() == Some(&'/') => break,
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    in_block_comment = true;
                }
                _ => line.push(c),
            }
        }
        let trimmed = line.trim();
        let opens = line.matches('{').count() as i64;
        let closes = line.matches('}').count() as i64;
        if let Some(d) = skip_depth {
            depth += opens - closes;
            if depth <= d {
                skip_depth = None;
            }
            out.push(String::new());
            continue;
        }
        if trimmed == "#[cfg(test)]" {
            pending_test_attr = true;
            out.push(String::new());
            continue;
        }
        if pending_test_attr && !trimmed.starts_with("#[") && !trimmed.is_empty() {
            pending_test_attr = false;
            if (trimmed.starts_with("mod ") || trimmed.starts_with("pub mod "))
                && trimmed.ends_with('{')
            {
                skip_depth = Some(depth);
                depth += opens - closes;
                out.push(String::new());
                continue;
            }
        }
        depth += opens - closes;
        out.push(line);
    }
    out
}

/// Names of the modules a file declares under `#[cfg(test)]` (`mod tests;`), with
/// their `#[path]` if any.
fn test_only_children(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut test_attr = false;
    let mut path_attr: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if t == "#[cfg(test)]" {
            test_attr = true;
            continue;
        }
        if let Some(p) = t.strip_prefix("#[path = \"") {
            path_attr = p.strip_suffix("\"]").map(str::to_string);
            continue;
        }
        if test_attr {
            let decl = t.strip_prefix("pub ").unwrap_or(t);
            if let Some(name) = decl.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
                out.push(path_attr.take().unwrap_or_else(|| format!("{name}.rs")));
            }
        }
        test_attr = false;
        path_attr = None;
    }
    out
}

/// The layers a line of code names through the crate root.
fn referenced_layers(line: &str, module: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < line.len() {
        let rest = &line[i..];
        let boundary = i == 0 || !is_ident(bytes[i - 1]);
        if boundary && rest.starts_with("crate::") {
            let after = &rest["crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                // use crate::{a::x, b, c::{..}}: the first segment of each top-level item.
                let mut level = 0;
                let mut item_start = true;
                for (k, ch) in group.char_indices() {
                    match ch {
                        '{' => level += 1,
                        '}' if level == 0 => break,
                        '}' => level -= 1,
                        ',' if level == 0 => item_start = true,
                        c if item_start && (c.is_alphanumeric() || c == '_') => {
                            let name: String = group[k..]
                                .chars()
                                .take_while(|c| c.is_alphanumeric() || *c == '_')
                                .collect();
                            out.push(name);
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push(name);
            }
            i += "crate::".len();
            continue;
        }
        if boundary && rest.starts_with("super::") {
            // Count the supers; climbing to the crate root names a layer.
            let mut k = 0;
            let mut r = rest;
            while let Some(next) = r.strip_prefix("super::") {
                k += 1;
                r = next;
            }
            if k >= module.len() {
                let name: String = r
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push(name);
            }
            i += k * "super::".len();
            continue;
        }
        i += rest.chars().next().map(char::len_utf8).unwrap_or(1);
    }
    out
}

/// Every import in `files` (path relative to `src/`, text) that breaks [`ORDER`], and
/// every top-level module that is not in it.
fn violations(files: &[(PathBuf, String)]) -> Vec<Violation> {
    let mut test_only: BTreeSet<PathBuf> = BTreeSet::new();
    for (rel, text) in files {
        let dir = rel.parent().unwrap_or(Path::new(""));
        for child in test_only_children(text) {
            test_only.insert(dir.join(&child));
            let stem = child.trim_end_matches(".rs");
            test_only.insert(dir.join(stem).join("mod.rs"));
        }
    }
    let mut out = Vec::new();
    for (rel, text) in files {
        let module = module_path(rel);
        let Some(layer) = module.first().cloned() else {
            continue;
        };
        if TEST_ONLY.contains(&layer.as_str()) || test_only.contains(rel) {
            continue;
        }
        let Some(own) = rank(&layer) else {
            out.push(Violation {
                file: format!("src/{}", rel.display()),
                line: 1,
                from: layer.clone(),
                to: "(not in ORDER: add the layer to ORDER and docs/architecture.md)".into(),
            });
            continue;
        };
        for (n, line) in code_lines(text).iter().enumerate() {
            for target in referenced_layers(line, &module) {
                if target == layer {
                    continue;
                }
                match rank(&target) {
                    Some(r) if r < own => {}
                    Some(_) => out.push(Violation {
                        file: format!("src/{}", rel.display()),
                        line: n + 1,
                        from: layer.clone(),
                        to: target,
                    }),
                    // Items of the crate root (main.rs's own), not a layer.
                    None => {}
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn read_src() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                files.push((path.strip_prefix(&root).unwrap().to_path_buf(), text));
            }
        }
    }
    files.sort();
    assert!(files.len() > 50, "src/ read: {} files", files.len());
    files
}

#[test]
fn layers_import_only_layers_below_them() {
    let found = violations(&read_src());
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(
        found.is_empty(),
        "{} imports break the layer order ({}):\n{}",
        found.len(),
        ORDER.join(" < "),
        text.join("\n")
    );
}

#[test]
fn a_planted_upward_import_fails() {
    let mut files = read_src();
    files.push((
        PathBuf::from("engine/planted.rs"),
        "//! planted\nuse std::fmt;\n\nuse crate::cmd::status::run;\n".into(),
    ));
    files.push((
        PathBuf::from("decide/planted_group.rs"),
        "fn f() { let _ = 1; }\nuse crate::{edge::exit, plan::PlanRow};\n".into(),
    ));
    files.push((
        PathBuf::from("cmd/rules/planted_super.rs"),
        "use super::super::super::main_helper;\n".into(),
    ));
    let found = violations(&files);
    assert_eq!(
        found,
        vec![
            Violation {
                file: "src/decide/planted_group.rs".into(),
                line: 2,
                from: "decide".into(),
                to: "plan".into(),
            },
            Violation {
                file: "src/engine/planted.rs".into(),
                line: 4,
                from: "engine".into(),
                to: "cmd".into(),
            },
        ],
        "{found:#?}"
    );
}

#[test]
fn comments_strings_and_test_modules_are_not_imports() {
    let files = vec![
        (
            PathBuf::from("edge/mod.rs"),
            "//! See [`crate::cmd::status`].\n/* crate::agent */\nconst S: &str = \"x\";\n\
             #[cfg(test)]\nmod tests {\n    use crate::cmd::status;\n}\n\
             #[cfg(test)]\nmod more_tests;\n"
                .to_string(),
        ),
        (
            PathBuf::from("edge/more_tests.rs"),
            "use crate::agent::run;\n".to_string(),
        ),
        (
            PathBuf::from("edge/argv.rs"),
            "fn f() {}\n#[cfg(test)]\nmod tests {\n    fn g() {\n    }\n}\nuse crate::render::x;\n"
                .to_string(),
        ),
    ];
    let found = violations(&files);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].to, "render");
    assert_eq!(found[0].line, 7);
}

#[test]
fn a_module_outside_the_order_fails() {
    let files = vec![(PathBuf::from("newlayer/mod.rs"), "fn f() {}\n".to_string())];
    let found = violations(&files);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].to.contains("not in ORDER"), "{}", found[0]);
}
