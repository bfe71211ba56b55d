//! The architecture test: the layers of `src/` and the one order they may import in.
//!
//! Every top-level module of the crate is a layer (a folder such as `src/engine/`,
//! or a file such as `src/cli.rs`). A layer may import only the layers before it in
//! [`ORDER`]: lower layers never import higher ones, no two layers import each
//! other, and no layer imports a command (`cmd` is next to last; only `main` is
//! above it). `docs/architecture.md` draws the same order and says what each layer
//! holds.
//!
//! The check reads `src/` as the compiler does, from `main.rs` down the module tree
//! (`mod x;`, `#[path]`, inline modules, `include!`), as Rust tokens (syn and
//! proc-macro2), so comments, strings and layout cannot hide or fake an import.
//! An import is any path through the crate root in code: `crate::x`, `crate :: x`
//! over several lines, `use crate::{x, y}`, `$crate::x` in a macro, `super::`
//! climbing to the root, a call of a `macro_rules!` another layer defines, or an
//! item of `main.rs` (a re-export there belongs to `main`). Forms that would hide the
//! layer are refused: the crate root renamed (`use crate as c`, `crate::{self as
//! c}`, `extern crate self`), globbed (`crate::*`), `include!` of a computed path,
//! `#[cfg_attr]` on a module. Test-only items (`#[cfg(test)]`, `#[cfg(all(test,
//! ..))]`, and the module files they declare) are not imports; `cfg(any(test, ..))`
//! and `cfg(not(test))` code is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::ToTokens;

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

/// What a violation names when the code hides its target from the check.
const ALIAS: &str = "the crate root under another name (`use crate as x`, `crate::{self as x}`, \
                     `extern crate self`, `crate::*`): name the layer instead";

/// Whether a `#[cfg(..)]` predicate holds only under `cfg(test)`: `test`,
/// `all(.., test, ..)`, `any(..)` whose every arm needs test; `not(..)` never.
fn needs_test(meta: &syn::Meta) -> bool {
    match meta {
        syn::Meta::Path(p) => p.is_ident("test"),
        syn::Meta::List(list) => {
            let Ok(arms) = list.parse_args_with(
                syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated,
            ) else {
                return false;
            };
            if list.path.is_ident("all") {
                arms.iter().any(needs_test)
            } else if list.path.is_ident("any") {
                !arms.is_empty() && arms.iter().all(needs_test)
            } else {
                false
            }
        }
        syn::Meta::NameValue(_) => false,
    }
}

/// Whether an item's attributes make it test-only code.
fn test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && a.parse_args::<syn::Meta>().is_ok_and(|m| needs_test(&m))
    })
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item::*;
    match item {
        Const(i) => &i.attrs,
        Enum(i) => &i.attrs,
        ExternCrate(i) => &i.attrs,
        Fn(i) => &i.attrs,
        ForeignMod(i) => &i.attrs,
        Impl(i) => &i.attrs,
        Macro(i) => &i.attrs,
        Mod(i) => &i.attrs,
        Static(i) => &i.attrs,
        Struct(i) => &i.attrs,
        Trait(i) => &i.attrs,
        TraitAlias(i) => &i.attrs,
        Type(i) => &i.attrs,
        Union(i) => &i.attrs,
        Use(i) => &i.attrs,
        _ => &[],
    }
}

/// Code the compiler builds outside tests: the tokens of one item (or of an
/// `include!`d file) with the file it came from and the module it belongs to.
struct Unit {
    file: PathBuf,
    module: Vec<String>,
    /// The folder `include!` paths are relative to.
    dir: PathBuf,
    tokens: TokenStream,
}

/// Walks the module tree from `main.rs` the way the compiler does: `mod x;` finds
/// `x.rs` or `x/mod.rs` (or its `#[path]`), inline `mod x { .. }` nests, and
/// test-only items (`#[cfg(test)]`, `#[cfg(all(test, ..))]`) are left out wherever
/// they are. Files no module declares are not compiled and not read.
struct Walk<'a> {
    files: &'a BTreeMap<PathBuf, String>,
    units: Vec<Unit>,
    /// Root modules declared for tests only (`testutil`).
    test_roots: BTreeSet<String>,
    /// Root modules outside [`ORDER`].
    out: Vec<Violation>,
}

fn line_of(span: proc_macro2::Span) -> usize {
    span.start().line
}

impl Walk<'_> {
    fn problem(&mut self, file: &Path, line: usize, from: &[String], what: String) {
        self.out.push(Violation {
            file: format!("src/{}", file.display()),
            line,
            from: from.first().cloned().unwrap_or_else(|| "main".into()),
            to: what,
        });
    }

    /// The file `rel`, as module `module`.
    fn file(&mut self, rel: &Path, module: &[String], decl: (&Path, usize)) {
        let Some(text) = self.files.get(rel) else {
            self.problem(
                decl.0,
                decl.1,
                module,
                format!("(module file src/{} not found)", rel.display()),
            );
            return;
        };
        let parsed = match syn::parse_file(text) {
            Ok(f) => f,
            Err(e) => {
                let line = line_of(e.span());
                self.problem(rel, line, module, format!("(does not parse: {e})"));
                return;
            }
        };
        let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let mod_rs = matches!(
            rel.file_name().and_then(|n| n.to_str()),
            Some("mod.rs" | "main.rs")
        );
        let child_dir = if mod_rs {
            dir.clone()
        } else {
            dir.join(rel.file_stem().unwrap())
        };
        self.items(rel, &parsed.items, module, &dir, &child_dir, false);
    }

    fn items(
        &mut self,
        rel: &Path,
        items: &[syn::Item],
        module: &[String],
        file_dir: &Path,
        child_dir: &Path,
        inline: bool,
    ) {
        for item in items {
            let attrs = item_attrs(item);
            if test_only(attrs) {
                if let (syn::Item::Mod(m), true) = (item, module.is_empty()) {
                    self.test_roots.insert(m.ident.to_string());
                }
                continue;
            }
            let syn::Item::Mod(m) = item else {
                self.units.push(Unit {
                    file: rel.to_path_buf(),
                    module: module.to_vec(),
                    dir: file_dir.to_path_buf(),
                    tokens: item.to_token_stream(),
                });
                continue;
            };
            let name = m.ident.to_string();
            let line = line_of(m.ident.span());
            if module.is_empty() && rank(&name).is_none() {
                self.problem(
                    rel,
                    line,
                    std::slice::from_ref(&name),
                    "(not in ORDER: add the layer to ORDER and docs/architecture.md)".into(),
                );
                continue;
            }
            let mut sub = module.to_vec();
            sub.push(name.clone());
            // The visibility and attributes are code of the parent (`pub(in crate::x)`).
            let mut head = TokenStream::new();
            for a in &m.attrs {
                head.extend(a.to_token_stream());
            }
            head.extend(m.vis.to_token_stream());
            self.units.push(Unit {
                file: rel.to_path_buf(),
                module: module.to_vec(),
                dir: file_dir.to_path_buf(),
                tokens: head,
            });
            let mut path_attr = None;
            for a in &m.attrs {
                if a.path().is_ident("path") {
                    if let syn::Meta::NameValue(nv) = &a.meta
                        && let syn::Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Str(s),
                            ..
                        }) = &nv.value
                    {
                        path_attr = Some(s.value());
                    }
                } else if a.path().is_ident("cfg_attr") {
                    self.problem(
                        rel,
                        line,
                        &sub,
                        "(#[cfg_attr] on a module: the check cannot follow it; use #[cfg] or #[path])"
                            .into(),
                    );
                }
            }
            match &m.content {
                Some((_, inner)) => {
                    let dir = child_dir.join(path_attr.as_deref().unwrap_or(&name));
                    self.items(rel, inner, &sub, file_dir, &dir, true);
                }
                None => {
                    let target = match &path_attr {
                        Some(p) if inline => normal(&child_dir.join(p)),
                        Some(p) => normal(&file_dir.join(p)),
                        None => {
                            let flat = child_dir.join(format!("{name}.rs"));
                            if self.files.contains_key(&flat) {
                                flat
                            } else {
                                child_dir.join(&name).join("mod.rs")
                            }
                        }
                    };
                    self.file(&target, &sub, (rel, line));
                }
            }
        }
    }
}

/// `a/b/../c.rs` -> `a/c.rs`; a path that climbs out of `src/` keeps its `..`.
fn normal(p: &Path) -> PathBuf {
    let mut out: Vec<std::path::Component> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir
                if matches!(out.last(), Some(std::path::Component::Normal(_))) =>
            {
                out.pop();
            }
            _ => out.push(c),
        }
    }
    out.iter().collect()
}

/// The layer a root-level name belongs to: a layer, the layer that defines a
/// `macro_rules!` of that name, or `main` (an item of the crate root: a re-export in
/// `main.rs` must not launder an import from above).
fn owner(
    name: &str,
    macros: &BTreeMap<String, String>,
    test_roots: &BTreeSet<String>,
) -> Option<String> {
    if rank(name).is_some() {
        Some(name.to_string())
    } else if let Some(layer) = macros.get(name) {
        Some(layer.clone())
    } else if test_roots.contains(name) {
        None
    } else {
        Some("main".to_string())
    }
}

/// Finds, in a token stream, every path through the crate root (`crate::x`,
/// `$crate::x`, `super::..` climbing to the root, `crate::{x, y::z}`), every call
/// of a `macro_rules!` defined in another layer, and every `include!`; reports
/// `(line, target)`, where the target is a layer or a problem in parentheses.
struct Scan<'a> {
    macros: &'a BTreeMap<String, String>,
    test_roots: &'a BTreeSet<String>,
    files: &'a BTreeMap<PathBuf, String>,
    found: Vec<(PathBuf, usize, String)>,
    depth: usize,
}

fn is_ident(t: Option<&TokenTree>, s: &str) -> bool {
    matches!(t, Some(TokenTree::Ident(i)) if i == s)
}

fn is_punct(t: Option<&TokenTree>, c: char) -> bool {
    matches!(t, Some(TokenTree::Punct(p)) if p.as_char() == c)
}

impl Scan<'_> {
    fn push(&mut self, file: &Path, span: proc_macro2::Span, target: Option<String>) {
        if let Some(t) = target {
            self.found.push((file.to_path_buf(), line_of(span), t));
        }
    }

    fn name(&self, name: &str) -> Option<String> {
        owner(name, self.macros, self.test_roots)
    }

    /// What follows a path that has reached the crate root, at `toks[j..]`.
    fn after_root(&mut self, file: &Path, toks: &[TokenTree], j: usize, span: proc_macro2::Span) {
        let t = toks.get(j);
        if is_ident(t, "as") || is_ident(t, "self") {
            self.push(file, span, Some(format!("({ALIAS})")));
            return;
        }
        if !(is_punct(t, ':') && is_punct(toks.get(j + 1), ':')) {
            return;
        }
        match toks.get(j + 2) {
            Some(TokenTree::Ident(i)) => {
                let n = i.to_string();
                let target = self.name(n.trim_start_matches("r#"));
                self.push(file, i.span(), target);
            }
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                self.group_items(file, g.stream());
            }
            Some(TokenTree::Punct(p)) if p.as_char() == '*' => {
                self.push(file, p.span(), Some(format!("({ALIAS})")));
            }
            _ => {}
        }
    }

    /// The top-level items of `crate::{a::x, b, self as r, *}`.
    fn group_items(&mut self, file: &Path, stream: TokenStream) {
        let toks: Vec<TokenTree> = stream.into_iter().collect();
        let mut start = true;
        for (k, t) in toks.iter().enumerate() {
            if is_punct(Some(t), ',') {
                start = true;
                continue;
            }
            if !start {
                continue;
            }
            start = false;
            match t {
                TokenTree::Ident(i) if i == "self" => {
                    self.push(file, i.span(), Some(format!("({ALIAS})")));
                }
                TokenTree::Ident(i) => {
                    let n = i.to_string();
                    let target = self.name(n.trim_start_matches("r#"));
                    self.push(file, i.span(), target);
                    let _ = k;
                }
                TokenTree::Punct(p) if p.as_char() == '*' => {
                    self.push(file, p.span(), Some(format!("({ALIAS})")));
                }
                TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => {
                    self.group_items(file, g.stream());
                }
                _ => {}
            }
        }
    }

    fn stream(&mut self, file: &Path, dir: &Path, stream: TokenStream, includes: usize) {
        let toks: Vec<TokenTree> = stream.into_iter().collect();
        let mut i = 0;
        while i < toks.len() {
            let prev_path =
                i >= 2 && is_punct(toks.get(i - 1), ':') && is_punct(toks.get(i - 2), ':');
            match &toks[i] {
                TokenTree::Group(g) => self.stream(file, dir, g.stream(), includes),
                TokenTree::Ident(id) if id == "crate" && !prev_path => {
                    self.after_root(file, &toks, i + 1, id.span());
                }
                TokenTree::Ident(id) if id == "super" && !prev_path => {
                    let mut k = 1;
                    let mut j = i + 1;
                    while is_punct(toks.get(j), ':')
                        && is_punct(toks.get(j + 1), ':')
                        && is_ident(toks.get(j + 2), "super")
                    {
                        k += 1;
                        j += 3;
                    }
                    if k >= self.depth {
                        self.after_root(file, &toks, j, id.span());
                    }
                    i = j;
                    continue;
                }
                TokenTree::Ident(id) if is_punct(toks.get(i + 1), '!') => {
                    let n = id.to_string();
                    if n == "include" {
                        self.include(file, dir, &toks, i, includes);
                    } else if let Some(layer) = self.macros.get(&n) {
                        let layer = layer.clone();
                        self.push(file, id.span(), Some(layer));
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }

    /// `include!("x.rs")`: the file's tokens are code of this module.
    fn include(&mut self, file: &Path, dir: &Path, toks: &[TokenTree], i: usize, includes: usize) {
        let span = toks[i].span();
        let lit = match toks.get(i + 2) {
            Some(TokenTree::Group(g)) => {
                let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                match inner.as_slice() {
                    [TokenTree::Literal(l)] => syn::parse_str::<syn::LitStr>(&l.to_string()).ok(),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some(lit) = lit else {
            self.push(
                file,
                span,
                Some("(include! of a computed path: the check cannot read it)".into()),
            );
            return;
        };
        let target = normal(&dir.join(lit.value()));
        let text = self.files.get(&target).cloned();
        match (text, includes < 8) {
            (Some(text), true) => match text.parse::<TokenStream>() {
                Ok(ts) => {
                    let inc_dir = target.parent().unwrap_or(Path::new("")).to_path_buf();
                    self.stream(&target, &inc_dir, ts, includes + 1);
                }
                Err(e) => self.push(
                    file,
                    span,
                    Some(format!("(include! of src/{}: {e})", target.display())),
                ),
            },
            _ => self.push(
                file,
                span,
                Some(format!(
                    "(include! of src/{}: not a file the check can read)",
                    target.display()
                )),
            ),
        }
    }
}

/// Every import in `files` (path relative to `src/`, text) that breaks [`ORDER`],
/// every top-level module that is not in it, and every form that hides an import
/// from this check (crate-root aliases and globs, computed `include!`s).
fn violations(files: &[(PathBuf, String)]) -> Vec<Violation> {
    let map: BTreeMap<PathBuf, String> = files.iter().cloned().collect();
    let mut walk = Walk {
        files: &map,
        units: Vec::new(),
        test_roots: BTreeSet::new(),
        out: Vec::new(),
    };
    walk.file(Path::new("main.rs"), &[], (Path::new("main.rs"), 1));
    // Macros by the layer that defines them (`macro_rules! name`).
    let mut macros: BTreeMap<String, String> = BTreeMap::new();
    for unit in &walk.units {
        let toks: Vec<TokenTree> = unit.tokens.clone().into_iter().collect();
        for w in toks.windows(3) {
            if is_ident(Some(&w[0]), "macro_rules")
                && is_punct(Some(&w[1]), '!')
                && let TokenTree::Ident(name) = &w[2]
            {
                let layer = unit
                    .module
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "main".into());
                macros.insert(name.to_string(), layer);
            }
        }
    }
    let mut out = std::mem::take(&mut walk.out);
    for unit in &walk.units {
        let layer = unit
            .module
            .first()
            .cloned()
            .unwrap_or_else(|| "main".into());
        let mut scan = Scan {
            macros: &macros,
            test_roots: &walk.test_roots,
            files: &map,
            found: Vec::new(),
            depth: unit.module.len(),
        };
        scan.stream(&unit.file, &unit.dir, unit.tokens.clone(), 0);
        let own = rank(&layer).unwrap_or(ORDER.len());
        for (file, line, target) in scan.found {
            if target == layer {
                continue;
            }
            if rank(&target).is_some_and(|r| r < own) {
                continue;
            }
            out.push(Violation {
                file: format!("src/{}", file.display()),
                line,
                from: layer.clone(),
                to: target,
            });
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

/// `files` with `text` added: appended to a file that is there, else a new file.
fn with(mut files: Vec<(PathBuf, String)>, extra: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
    for (path, text) in extra {
        match files.iter_mut().find(|(p, _)| p == Path::new(path)) {
            Some((_, t)) => t.push_str(text),
            None => files.push((PathBuf::from(path), text.to_string())),
        }
    }
    files
}

/// A small crate: `main.rs` declares `cmd`, `edge` and `engine`.
fn mini(extra: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
    let base = vec![
        (
            PathBuf::from("main.rs"),
            "mod cmd;\nmod edge;\nmod engine;\n".to_string(),
        ),
        (PathBuf::from("edge/mod.rs"), String::new()),
        (PathBuf::from("engine/mod.rs"), String::new()),
        (PathBuf::from("cmd/mod.rs"), "pub fn x() {}\n".to_string()),
    ];
    with(base, extra)
}

/// (file, line, the start of `to`) of each violation.
fn found_in(files: &[(PathBuf, String)]) -> Vec<(String, usize, String)> {
    violations(files)
        .into_iter()
        .map(|v| (v.file, v.line, v.to))
        .collect()
}

#[test]
fn a_planted_upward_import_fails() {
    let files = with(
        read_src(),
        &[
            ("engine/mod.rs", "\nmod planted;\n"),
            (
                "engine/planted.rs",
                "//! planted\nuse std::fmt;\n\nuse crate::cmd::status::run;\n",
            ),
            ("decide/mod.rs", "\nmod planted_group;\n"),
            (
                "decide/planted_group.rs",
                "fn f() { let _ = 1; }\nuse crate::{edge::exit, plan::PlanRow};\n",
            ),
            ("cmd/rules/mod.rs", "\nmod planted_super;\n"),
            (
                "cmd/rules/planted_super.rs",
                "use super::super::super::main_helper;\n",
            ),
        ],
    );
    let found = violations(&files);
    assert_eq!(
        found,
        vec![
            // An item of the crate root is `main`'s, above every layer.
            Violation {
                file: "src/cmd/rules/planted_super.rs".into(),
                line: 1,
                from: "cmd".into(),
                to: "main".into(),
            },
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

/// Each form that once hid an upward import from the check (issue 16, breakit):
/// the import is found, at its line.
#[test]
fn hidden_upward_imports_are_found() {
    let alias = "(the crate root under another name";
    // (what, files added, (file, line, the start of `to`) wanted)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], (&'a str, usize, &'a str));
    let cases: &[Case] = &[
        (
            "use group over several lines (rustfmt's own layout)",
            &[(
                "engine/mod.rs",
                "use crate::{\n    edge::x,\n    cmd::x,\n};\n",
            )],
            ("src/engine/mod.rs", 3, "cmd"),
        ),
        (
            "spaces inside the path",
            &[("engine/mod.rs", "fn f() {\n    crate :: cmd :: x();\n}\n")],
            ("src/engine/mod.rs", 2, "cmd"),
        ),
        (
            "path broken over lines",
            &[(
                "engine/mod.rs",
                "fn f() {\n    crate::\n        cmd::x();\n}\n",
            )],
            ("src/engine/mod.rs", 3, "cmd"),
        ),
        (
            "the crate root renamed",
            &[(
                "engine/mod.rs",
                "use crate as c;\nfn f() { c::cmd::x(); }\n",
            )],
            ("src/engine/mod.rs", 1, alias),
        ),
        (
            "self renamed in a crate group",
            &[(
                "engine/mod.rs",
                "use crate::{self as x};\nfn f() { x::cmd::x(); }\n",
            )],
            ("src/engine/mod.rs", 1, alias),
        ),
        (
            "extern crate self",
            &[("engine/mod.rs", "extern crate self as me;\n")],
            ("src/engine/mod.rs", 1, alias),
        ),
        (
            "glob of the crate root",
            &[("engine/mod.rs", "use crate::*;\nfn f() { cmd::x(); }\n")],
            ("src/engine/mod.rs", 1, alias),
        ),
        (
            "glob of the root through super",
            &[("engine/mod.rs", "use super::*;\nfn f() { cmd::x(); }\n")],
            ("src/engine/mod.rs", 1, alias),
        ),
        (
            "a char literal '\"' before the import",
            &[(
                "engine/mod.rs",
                "fn f() { let _ = ('\"', crate::cmd::x()); }\n",
            )],
            ("src/engine/mod.rs", 1, "cmd"),
        ),
        (
            "a raw string ending in a backslash before the import",
            &[(
                "engine/mod.rs",
                "fn f() { let _ = (r\"\\\", crate::cmd::x()); }\n",
            )],
            ("src/engine/mod.rs", 1, "cmd"),
        ),
        (
            "a raw string holding // and \"",
            &[(
                "engine/mod.rs",
                "fn f() { let _ = (r#\"// \" \"#, crate::cmd::x()); }\n",
            )],
            ("src/engine/mod.rs", 1, "cmd"),
        ),
        (
            "code after a one-line test module",
            &[(
                "engine/mod.rs",
                "#[cfg(test)]\nmod tests {}\nuse crate::cmd::x;\n",
            )],
            ("src/engine/mod.rs", 3, "cmd"),
        ),
        (
            "a '{' in a test module",
            &[(
                "engine/mod.rs",
                "#[cfg(test)]\nmod tests {\n    const C: char = '{';\n}\nuse crate::cmd::x;\n",
            )],
            ("src/engine/mod.rs", 5, "cmd"),
        ),
        (
            "cfg(any(test, ..)) is not test-only",
            &[(
                "engine/mod.rs",
                "#[cfg(any(test, unix))]\nuse crate::cmd::x;\n",
            )],
            ("src/engine/mod.rs", 2, "cmd"),
        ),
        (
            "cfg(not(test)) is not test-only",
            &[(
                "engine/mod.rs",
                "#[cfg(not(test))]\nmod live {\n    use crate::cmd::x;\n}\n",
            )],
            ("src/engine/mod.rs", 3, "cmd"),
        ),
        (
            "test-only function, then code",
            &[(
                "engine/mod.rs",
                "#[cfg(test)]\nfn helper() {}\nuse crate::cmd::x;\n",
            )],
            ("src/engine/mod.rs", 3, "cmd"),
        ),
        (
            "super out of an inline module",
            &[(
                "engine/mod.rs",
                "mod a {\n    mod b {\n        use super::super::super::cmd::x;\n    }\n}\n",
            )],
            ("src/engine/mod.rs", 3, "cmd"),
        ),
        (
            "$crate in a macro body",
            &[(
                "engine/mod.rs",
                "macro_rules! m {\n    () => { $crate::cmd::x() };\n}\n",
            )],
            ("src/engine/mod.rs", 2, "cmd"),
        ),
        (
            "a macro of a higher layer called bare",
            &[
                (
                    "cmd/mod.rs",
                    "#[macro_export]\nmacro_rules! up {\n    () => {};\n}\n",
                ),
                ("engine/mod.rs", "fn f() {\n    up!();\n}\n"),
            ],
            ("src/engine/mod.rs", 2, "cmd"),
        ),
        (
            "a macro of a higher layer through the root",
            &[
                (
                    "cmd/mod.rs",
                    "#[macro_export]\nmacro_rules! up {\n    () => {};\n}\n",
                ),
                ("engine/mod.rs", "fn f() {\n    crate::up!();\n}\n"),
            ],
            ("src/engine/mod.rs", 2, "cmd"),
        ),
        (
            "a re-export at the root launders a command",
            &[
                ("main.rs", "pub use cmd::x as laundered;\n"),
                ("engine/mod.rs", "fn f() {\n    crate::laundered();\n}\n"),
            ],
            ("src/engine/mod.rs", 2, "main"),
        ),
        (
            "pub(in crate::cmd)",
            &[("engine/mod.rs", "pub(in crate::cmd) fn f() {}\n")],
            ("src/engine/mod.rs", 1, "cmd"),
        ),
        (
            "#[path] borrows a test-only file of a higher layer as live code",
            &[
                ("cmd/mod.rs", "#[cfg(test)]\nmod shared;\n"),
                ("cmd/shared.rs", "pub fn g() {\n    crate::cmd::x();\n}\n"),
                (
                    "engine/mod.rs",
                    "#[path = \"../cmd/shared.rs\"]\nmod shared;\n",
                ),
            ],
            ("src/cmd/shared.rs", 2, "cmd"),
        ),
        (
            "include! of a file with the import",
            &[
                ("cmd/inc.rs", "fn g() {\n    crate::cmd::x();\n}\n"),
                ("engine/mod.rs", "include!(\"../cmd/inc.rs\");\n"),
            ],
            ("src/cmd/inc.rs", 2, "cmd"),
        ),
        (
            "include! of a computed path",
            &[(
                "engine/mod.rs",
                "include!(concat!(\"../cmd/\", \"inc.rs\"));\n",
            )],
            ("src/engine/mod.rs", 1, "(include! of a computed path"),
        ),
        (
            "#[cfg_attr(.., path)] on a module",
            &[
                (
                    "engine/mod.rs",
                    "#[cfg_attr(unix, path = \"../cmd/mod.rs\")]\nmod other;\n",
                ),
                ("engine/other.rs", ""),
            ],
            ("src/engine/mod.rs", 2, "(#[cfg_attr] on a module"),
        ),
    ];
    let mut failures = Vec::new();
    for (what, extra, (file, line, to)) in cases {
        let found = found_in(&mini(extra));
        let hit = found
            .iter()
            .any(|(f, l, t)| f == file && l == line && t.starts_with(to));
        if !hit {
            failures.push(format!(
                "{what}: want {file}:{line} -> {to}, found {found:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn comments_strings_and_test_modules_are_not_imports() {
    let files = mini(&[
        (
            "edge/mod.rs",
            "//! See [`crate::cmd::status`].\n/* crate::engine */\nconst S: &str = \"x\";\n\
             #[cfg(test)]\nmod tests {\n    use crate::cmd::status;\n}\n\
             #[cfg(test)]\nmod more_tests;\n\
             /* outer /* inner */ crate::cmd::x() */\n\
             const T: &str = \"first line\n    crate::cmd::x() in a string\";\n\
             #[cfg(all(test, unix))]\nmod unix_tests {\n    use crate::engine::x;\n}\n\
             #[cfg(test)]\nuse crate::cmd::x;\n\
             mod argv;\n",
        ),
        ("edge/more_tests.rs", "use crate::engine::run;\n"),
        (
            "edge/argv.rs",
            "fn f() {}\n#[cfg(test)]\nmod tests {\n    fn g() {\n    }\n}\nuse crate::engine::x;\n",
        ),
    ]);
    let found = violations(&files);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].to, "engine");
    assert_eq!(found[0].file, "src/edge/argv.rs");
    assert_eq!(found[0].line, 7);
}

#[test]
fn a_module_outside_the_order_fails() {
    let files = mini(&[
        ("main.rs", "mod newlayer;\n"),
        ("newlayer/mod.rs", "fn f() {}\n"),
    ]);
    let found = violations(&files);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].to.contains("not in ORDER"), "{}", found[0]);
}

#[test]
fn a_module_file_that_is_not_there_fails() {
    let found = violations(&mini(&[("engine/mod.rs", "mod gone;\n")]));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].to.contains("not found"), "{}", found[0]);
}
