//! Docker-style `--format` templates: the part of Go's `text/template` that the
//! docker CLI's `--format` uses, with the docker CLI's functions
//! (docker/cli `templates/templates.go`) and its `table` prefix
//! (docker/cli `cli/command/formatter/formatter.go`).
//!
//! Supported: text and actions `{{ }}` with trim markers (`{{- ` and ` -}}`) and
//! comments (`{{/* */}}`); field chains on dot, on variables and on parenthesised
//! pipelines (`.Name`, `.RuleLabels.foo`, `$.Name`, `$x.Key`, `(index .Labels 0).Key`);
//! pipelines with `|`; variables (`$x := ...`, `$x = ...`); `if`, `else`, `else if`,
//! `range` (with `$i, $v :=` and `else`), `with` (and `else with`); string, raw string,
//! number, `true`, `false` and `nil` literals. Functions: the docker CLI's `json`,
//! `split`, `join`, `title`, `lower`, `upper`, `pad`, `truncate`, and Go's `and`, `or`,
//! `not`, `len`, `index`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `print`, `printf`,
//! `println`. Not supported (an error that says so): `define`, `template`, `block`,
//! `break`, `continue`, methods.
//!
//! The data of a template is the JSON object that `--format json` prints for the row
//! (a [`serde_json::Value`]), so a template and the JSON never disagree on a field.
//! Fields of the row are checked against the command's field list when the template
//! is parsed, so a misspelt field is reported before anything is read from the engine.
//!
//! The engine is our own, limited to Go's syntax: the Rust ports of Go templates
//! (gtmpl 0.7, last released in 2021 and only passively maintained) neither check
//! fields before execution nor point at the bad part of a template.
//!
//! Differences from Go, all in the direction of scripts: `null` prints as an empty
//! string (Go prints `<nil>`); a missing map key prints `<no value>` as in Go;
//! `truncate` and `len` count characters, not bytes.

use std::fmt::Write as _;

use serde_json::{Map, Value};
use unicode_width::UnicodeWidthStr;

/// What a row's field holds, for the checks made when a template is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string, number, boolean or null: it has no fields of its own.
    Scalar,
    /// An object (a map or a record): `.Field.key` reads into it.
    Object,
    /// An array: `range`, `index`, `join`, `len` read it.
    List,
}

/// One top-level field of a command's rows (a key of its JSON object).
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The JSON key, e.g. `Name`.
    pub name: &'static str,
    /// What it holds.
    pub kind: Kind,
    /// The column header of `table` templates; empty to derive it from the name
    /// (`MaxPerNode` → `MAX PER NODE`).
    pub header: &'static str,
}

/// The fields of one command's rows.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// The command, as in `docker microscale status`, for error messages.
    pub command: &'static str,
    /// Every key of the command's JSON object.
    pub list: &'static [Field],
}

impl Fields {
    fn get(&self, name: &str) -> Option<&Field> {
        self.list.iter().find(|f| f.name == name)
    }

    /// The `table` header of each field: the JSON object a header line is rendered
    /// from, as the docker CLI renders it from its `FullHeader()` map.
    fn header_object(&self) -> Value {
        Value::Object(
            self.list
                .iter()
                .map(|f| (f.name.to_string(), Value::String(header_of(f))))
                .collect(),
        )
    }
}

/// The docker-style column header of a field: its explicit header, else the name in
/// capitals with a space between words (`SourceURL` → `SOURCE URL`).
pub fn header_of(field: &Field) -> String {
    if !field.header.is_empty() {
        return field.header.to_string();
    }
    let chars: Vec<char> = field.name.chars().collect();
    let mut out = String::new();
    for (i, c) in chars.iter().enumerate() {
        if i > 0 && c.is_uppercase() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower) {
                out.push(' ');
            }
        }
        out.extend(c.to_uppercase());
    }
    out
}

/// A bad template: what is wrong and where (a byte offset into the template).
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    /// What is wrong, e.g. `function "foo" not defined`.
    pub message: String,
    /// Byte offset of the bad part in [`TemplateError::template`], when known.
    pub pos: Option<usize>,
    /// The template as parsed (after the `table` prefix and `\t`, `\n` escapes).
    pub template: String,
}

impl std::fmt::Display for TemplateError {
    /// `template parsing error: MESSAGE`, then the template and a caret under the bad
    /// part (control characters shown escaped, so the caret lines up).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "template parsing error: {}", self.message)?;
        if let Some(pos) = self.pos {
            let pos = pos.min(self.template.len());
            let before = crate::edge::text::printable(&self.template[..pos]);
            let shown = crate::edge::text::printable(&self.template);
            write!(f, "\n  {shown}\n  {}^", " ".repeat(before.width()))?;
        }
        Ok(())
    }
}

/// A parsed `--format` template.
#[derive(Debug, Clone)]
pub struct Template {
    /// The template as the user gave it (for equality and messages).
    source: String,
    /// The template after the `table` prefix was removed and `\t`, `\n` replaced.
    text: String,
    table: bool,
    nodes: Vec<Node>,
    fields: Fields,
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.fields.command == other.fields.command
    }
}

impl Template {
    /// Parses a `--format` value that is a template (not `table` or `json`), as the
    /// docker CLI does: a `table` prefix makes a table with a header; the rest is
    /// trimmed of spaces, and the two-character sequences `\t` and `\n` become a tab
    /// and a newline. Fields of the row (`.Name`, `$.Name`) are checked against
    /// `fields`.
    ///
    /// Errors: syntax errors, unknown functions, undefined variables, unknown fields,
    /// and reading a field of a field that has none; each with the position.
    pub fn parse(format: &str, fields: Fields) -> Result<Template, TemplateError> {
        with_stack(|| Template::parse_here(format, fields))
    }

    /// Whether the template is a table (`table ...`: a header line, aligned columns).
    pub fn is_table(&self) -> bool {
        self.table
    }

    fn parse_here(format: &str, fields: Fields) -> Result<Template, TemplateError> {
        let (table, rest) = match format.strip_prefix("table") {
            Some(rest) => (true, rest),
            None => (false, format),
        };
        let text = rest
            .trim_matches(' ')
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        let mut parser = Parser {
            src: &text,
            items: lex(&text)?,
            at: 0,
            vars: vec!["$".into()],
            dot_is_root: true,
            fields,
            depth: 0,
        };
        let (nodes, end) = parser.list()?;
        if let Some((word, pos)) = end {
            return Err(parser.error(format!("unexpected {{{{{word}}}}}"), pos));
        }
        Ok(Template {
            source: format.to_string(),
            text,
            table,
            nodes,
            fields,
        })
    }

    /// Renders one row: the template executed on `row` (the row's JSON object), with
    /// the limits of one whole render ([`MAX_STEPS`], [`MAX_WORK`], [`MAX_OUTPUT`]).
    ///
    /// Errors: as [`Template::render`].
    #[cfg(test)]
    pub fn execute(&self, row: &Value) -> Result<String, TemplateError> {
        let mut budget = Budget::default();
        with_stack(|| self.execute_within(row, &mut budget))
    }

    fn execute_within(&self, row: &Value, budget: &mut Budget) -> Result<String, TemplateError> {
        let mut exec = Exec {
            vars: vec![("$".into(), row.clone(), true)],
            out: String::new(),
            header: false,
            fields: self.fields,
            text: &self.text,
            depth: 0,
            budget: *budget,
        };
        let r = exec.list(&self.nodes, row, true);
        *budget = exec.budget;
        r.map(|()| exec.out)
    }

    /// The header line of a `table` template, rendered as the docker CLI renders it:
    /// each field gives its column header, and `json`, `split`, `join`, `title`,
    /// `lower`, `upper` and `truncate` leave it as it is. An error stops the header
    /// where it happened (the docker CLI ignores it too).
    fn header(&self, budget: &mut Budget) -> String {
        let root = self.fields.header_object();
        let mut exec = Exec {
            vars: vec![("$".into(), root.clone(), true)],
            out: String::new(),
            header: true,
            fields: self.fields,
            text: &self.text,
            depth: 0,
            budget: *budget,
        };
        let _ = exec.list(&self.nodes, &root, true);
        *budget = exec.budget;
        exec.out
    }

    /// Renders `rows` (each serialised to its JSON object, the very object
    /// `--format json` prints): each row followed by a newline; for a `table`
    /// template, a header line first, and columns aligned as Go's tabwriter aligns
    /// them (minimum width 10, padding 3).
    ///
    /// What an action prints is made terminal-safe with [`crate::edge::text::printable`] when it
    /// comes from the data (a field, a variable, a function of one); the template's
    /// own text, literals and the text `print`, `printf`, `println`, `join` and `pad`
    /// make (they escape the data they format) are kept, so a template's tabs and
    /// newlines still shape the output but a value's never do.
    ///
    /// Errors: a template that cannot be executed on a row (a field of a string, an
    /// index out of range, a wrong argument), nested deeper than [`MAX_DEPTH`], or
    /// too costly: more than [`MAX_STEPS`] steps, [`MAX_WORK`] bytes of values made
    /// or copied, or [`MAX_OUTPUT`] bytes of output, over all rows; each with the
    /// position in the template.
    pub fn render<T: serde::Serialize>(&self, rows: &[T]) -> Result<String, TemplateError> {
        // Serialising plain data structures cannot fail.
        let values: Vec<Value> = rows
            .iter()
            .map(|row| serde_json::to_value(row).expect("serialise row"))
            .collect();
        with_stack(|| self.render_here(&values))
    }

    fn render_here(&self, rows: &[Value]) -> Result<String, TemplateError> {
        let mut budget = Budget::default();
        let mut out = String::new();
        if self.table {
            out.push_str(&self.header(&mut budget));
            out.push('\n');
        }
        for value in rows {
            out.push_str(&self.execute_within(value, &mut budget)?);
            out.push('\n');
        }
        if self.table {
            align(&out, 10, 3, MAX_OUTPUT as usize).map_err(|e| err_at(&self.text, e, 0))
        } else {
            Ok(out)
        }
    }
}

/// The stack of the thread that parses and runs templates: enough for
/// [`MAX_DEPTH`] levels even in a debug build, whatever the caller's stack (a
/// thread's stack is only reserved address space until it is used).
const STACK_BYTES: usize = 64 << 20;

/// Runs `f` on a thread with a [`STACK_BYTES`] stack, and waits for it; runs it here
/// when no thread can be started.
fn with_stack<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let f = std::sync::Mutex::new(Some(f));
    let take = || {
        f.lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("run once")
    };
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("template".into())
            .stack_size(STACK_BYTES)
            .spawn_scoped(scope, || take()());
        match spawned {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => take()(),
        }
    })
}

/// The deepest nesting a template may have: `if`, `with` and `range` blocks (each
/// `else if` and `else with` counts as one more) and parentheses together, checked
/// when it is parsed and again when it runs. Go's `text/template` stops nested
/// parentheses at 10 000 (`maxStackDepth` in `text/template/parse`); 1 000 is far
/// more than a `--format` template needs, and keeps the parser and the executor well
/// within [`STACK_BYTES`] even in a debug build.
pub const MAX_DEPTH: usize = 1000;

/// The widest `printf` width or precision and `pad` space: 1 000 000, as Go's `fmt`
/// (a larger width prints `%!(BADWIDTH)` there; here it is an error).
pub const MAX_WIDTH: usize = 1_000_000;

/// The most steps one render may take over all its rows: each action, each pass of
/// a `range`, each field read and each function call is one. Rendering 1000 rows
/// of a 20-action template takes about 40 000.
pub const MAX_STEPS: u64 = 20_000_000;

/// The most bytes of values one render may make or copy over all its rows (strings
/// by length, 32 bytes per list item or object entry): 256 MiB.
pub const MAX_WORK: u64 = 256 << 20;

/// The most bytes of output one render may print over all its rows, after
/// escaping (and after table alignment): 64 MiB.
pub const MAX_OUTPUT: u64 = 64 << 20;

/// The most cells a line of a `table` template's output may have.
pub const MAX_COLUMNS: usize = 1000;

/// Aligns `text` (lines separated by `\n`, cells by `\t`) as Go's `text/tabwriter`
/// does for the docker CLI (`tabwriter.NewWriter(out, min_width, 1, padding, ' ', 0)`),
/// with the [`tabwriter`] crate: a cell ends with its tab, the text after a line's
/// last tab is in no column, a column block is a run of consecutive lines that all
/// have a cell in that column, and each cell of a block is padded with spaces to the
/// block's width: its widest cell plus `padding`, at least `min_width`. A trailing
/// newline is kept; a last line without one is written without one.
///
/// Widths are terminal columns, the sum of each character's width (wide characters
/// count two, control characters none; Go counts runes). ANSI escape sequences are
/// counted as their characters, as in Go (the crate's `ansi` mode is off).
///
/// Errors (a message): a line with more than [`MAX_COLUMNS`] cells, or an aligned
/// text longer than `max_bytes` (padding can make it much longer than `text`).
pub fn align(
    text: &str,
    min_width: usize,
    padding: usize,
    max_bytes: usize,
) -> Result<String, String> {
    if let Some((i, cells)) = text
        .split('\n')
        .map(|l| l.matches('\t').count() + 1)
        .enumerate()
        .find(|(_, cells)| *cells > MAX_COLUMNS)
    {
        return Err(format!(
            "table line {} has {cells} columns, more than {MAX_COLUMNS}; print fewer tabs",
            i + 1
        ));
    }
    let too_large = || {
        format!(
            "template output too large: the aligned table passes {} MiB; print \
             fewer or narrower columns, or use --format json",
            max_bytes >> 20
        )
    };
    // The crate pads a cell to max(its minimum width, widest cell) + padding; Go to
    // max(min_width, widest cell + padding): the same with the minimum lowered by
    // the padding.
    let mut writer = tabwriter::TabWriter::new(Bounded {
        out: Vec::with_capacity((text.len() + text.len() / 2).min(max_bytes)),
        max: max_bytes,
    })
    .minwidth(min_width.saturating_sub(padding))
    .padding(padding)
    .alignment(tabwriter::Alignment::Left)
    .ansi(false);
    std::io::Write::write_all(&mut writer, text.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut writer))
        .map_err(|_| too_large())?;
    let out = writer.into_inner().map_err(|_| too_large())?.out;
    // Only whole UTF-8 text and ASCII spaces and newlines were written.
    String::from_utf8(out).map_err(|e| format!("aligned table is not UTF-8: {e}"))
}

/// A `Vec<u8>` writer that refuses to grow past `max` bytes.
struct Bounded {
    out: Vec<u8>,
    max: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.max {
            return Err(std::io::Error::other("output too large"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn too_deep() -> String {
    format!(
        "template nested too deeply: more than {MAX_DEPTH} levels of {{{{if}}}}, \
         {{{{with}}}}, {{{{range}}}} and parentheses; flatten it (set a variable with \
         $x := ... and use it)"
    )
}

fn output_too_large() -> String {
    format!(
        "template output too large: more than {} MiB over all rows; print fewer \
         fields or services, or use --format json",
        MAX_OUTPUT >> 20
    )
}

// ---------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `.Name` (the name without the dot).
    Field(String),
    /// `.` alone.
    Dot,
    /// `$` or `$name` (with the `$`).
    Var(String),
    Str(String),
    Num(f64),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
    /// Whether blank space comes before it (a field chain has none).
    spaced: bool,
    /// For `(`: how many tokens after it its matching `)` comes; 0 when unmatched.
    span: usize,
}

#[derive(Debug, Clone)]
enum Item {
    Text(String),
    /// The tokens of one action, and the position of its `{{`.
    Action(Vec<Token>, usize),
}

fn err_at(src: &str, message: impl Into<String>, pos: usize) -> TemplateError {
    TemplateError {
        message: message.into(),
        pos: Some(pos),
        template: src.to_string(),
    }
}

fn lex(src: &str) -> Result<Vec<Item>, TemplateError> {
    let mut items = vec![];
    let mut i = 0;
    let mut trim_next = false;
    while i < src.len() {
        let Some(off) = src[i..].find("{{") else {
            let mut text = &src[i..];
            if trim_next {
                text = text.trim_start();
            }
            if !text.is_empty() {
                items.push(Item::Text(text.to_string()));
            }
            break;
        };
        let open = i + off;
        let mut text = &src[i..open];
        if trim_next {
            text = text.trim_start();
        }
        let mut j = open + 2;
        let rest = &src[j..];
        if rest.starts_with("- ")
            || rest.starts_with("-\t")
            || rest.starts_with("-\n")
            || rest.starts_with("-\r")
        {
            text = text.trim_end();
            j += 2;
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        // A comment: `{{/* ... */}}`.
        let after_space = j + (src[j..].len() - src[j..].trim_start().len());
        if src[j..].starts_with("/*") || (after_space > j && src[after_space..].starts_with("/*")) {
            let start = if src[j..].starts_with("/*") {
                j
            } else {
                after_space
            };
            let Some(end) = src[start + 2..].find("*/") else {
                return Err(err_at(src, "unclosed comment", open));
            };
            let mut k = start + 2 + end + 2;
            let tail = &src[k..];
            let trimmed = tail.trim_start();
            let (close, trim) = if let Some(t) = trimmed.strip_prefix("-}}") {
                (src.len() - t.len(), tail.len() != trimmed.len())
            } else if tail.starts_with("}}") {
                (k + 2, false)
            } else {
                return Err(err_at(src, "comment ends before closing delimiter", k));
            };
            k = close;
            trim_next = trim;
            i = k;
            continue;
        }
        let (tokens, end, trim) = lex_action(src, j, open)?;
        items.push(Item::Action(tokens, open));
        trim_next = trim;
        i = end;
    }
    Ok(items)
}

/// Lexes the inside of an action from `start`; returns the tokens, the offset after
/// the closing `}}`, and whether it was ` -}}`.
fn lex_action(
    src: &str,
    start: usize,
    open: usize,
) -> Result<(Vec<Token>, usize, bool), TemplateError> {
    let bytes = src.as_bytes();
    let mut tokens = vec![];
    let mut i = start;
    let mut spaced = true;
    loop {
        let Some(c) = src[i..].chars().next() else {
            return Err(err_at(src, "unclosed action: no }} after {{", open));
        };
        if c.is_whitespace() {
            // ` -}}` closes with trimming.
            let rest = &src[i..];
            let trimmed = rest.trim_start();
            if trimmed.starts_with("-}}") {
                match_parens(&mut tokens);
                return Ok((tokens, src.len() - trimmed.len() + 3, true));
            }
            i += c.len_utf8();
            spaced = true;
            continue;
        }
        if src[i..].starts_with("}}") {
            match_parens(&mut tokens);
            return Ok((tokens, i + 2, false));
        }
        let pos = i;
        let tok = match c {
            '|' => {
                i += 1;
                Tok::Pipe
            }
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            ':' if src[i..].starts_with(":=") => {
                i += 2;
                Tok::Declare
            }
            '=' => {
                i += 1;
                Tok::Assign
            }
            '"' => {
                let (s, end) = lex_quoted(src, i)?;
                i = end;
                Tok::Str(s)
            }
            '`' => {
                let Some(end) = src[i + 1..].find('`') else {
                    return Err(err_at(src, "unterminated raw string", pos));
                };
                let s = src[i + 1..i + 1 + end].to_string();
                i += end + 2;
                Tok::Str(s)
            }
            '\'' => {
                // A character constant is a number in Go.
                let (s, end) = lex_char(src, i)?;
                i = end;
                Tok::Num(s as u32 as f64)
            }
            '.' if bytes.get(i + 1).is_some_and(|b| b.is_ascii_digit()) => {
                let (n, end) = lex_number(src, i)?;
                i = end;
                Tok::Num(n)
            }
            '.' => {
                let name_end = ident_end(src, i + 1);
                if name_end == i + 1 {
                    i += 1;
                    Tok::Dot
                } else {
                    let name = src[i + 1..name_end].to_string();
                    i = name_end;
                    Tok::Field(name)
                }
            }
            '$' => {
                let end = ident_end(src, i + 1);
                let name = src[i..end].to_string();
                i = end;
                Tok::Var(name)
            }
            '0'..='9' | '-' | '+' => {
                let (n, end) = lex_number(src, i)?;
                i = end;
                Tok::Num(n)
            }
            c if c.is_alphabetic() || c == '_' => {
                let end = ident_end(src, i);
                let name = src[i..end].to_string();
                i = end;
                Tok::Ident(name)
            }
            other => {
                return Err(err_at(src, format!("unexpected {other:?} in action"), pos));
            }
        };
        tokens.push(Token {
            tok,
            pos,
            spaced,
            span: 0,
        });
        spaced = false;
    }
}

/// Sets the `span` of each `(` to the distance to its matching `)`, in one pass, so
/// that parsing nested parentheses costs linear time, not quadratic.
fn match_parens(tokens: &mut [Token]) {
    let mut open = vec![];
    for j in 0..tokens.len() {
        match tokens[j].tok {
            Tok::LParen => open.push(j),
            Tok::RParen => {
                if let Some(o) = open.pop() {
                    tokens[o].span = j - o;
                }
            }
            _ => {}
        }
    }
}

fn ident_end(src: &str, from: usize) -> usize {
    src[from..]
        .char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
        .map_or(src.len(), |(k, _)| from + k)
}

fn lex_number(src: &str, from: usize) -> Result<(f64, usize), TemplateError> {
    let end = src[from..]
        .char_indices()
        .skip(1)
        .find(|(k, c)| {
            let prev = src.as_bytes()[from + k - 1];
            !(c.is_ascii_alphanumeric()
                || *c == '.'
                || *c == '_'
                || ((*c == '-' || *c == '+') && (prev == b'e' || prev == b'E')))
        })
        .map_or(src.len(), |(k, _)| from + k);
    let text = src[from..end].replace('_', "");
    let (sign, digits) = match text.strip_prefix('-') {
        Some(d) => (-1.0, d.to_string()),
        None => (1.0, text.trim_start_matches('+').to_string()),
    };
    let value = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(hex, 16).ok().map(|v| v as f64)
    } else {
        digits.parse::<f64>().ok()
    };
    match value {
        Some(v) if !digits.is_empty() => Ok((sign * v, end)),
        _ => Err(err_at(
            src,
            format!("bad number syntax: {:?}", &src[from..end]),
            from,
        )),
    }
}

fn lex_quoted(src: &str, from: usize) -> Result<(String, usize), TemplateError> {
    let mut out = String::new();
    let mut chars = src[from + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        match c {
            '"' => return Ok((out, from + 1 + k + 1)),
            '\n' => break,
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n)
                            .filter_map(|_| chars.next().map(|(_, h)| h))
                            .collect();
                        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                            Some(ch) => out.push(ch),
                            None => {
                                return Err(err_at(src, "bad escape in string", from + 1 + k));
                            }
                        }
                    }
                    _ => {
                        return Err(err_at(
                            src,
                            "unknown escape sequence in string",
                            from + 1 + k,
                        ));
                    }
                }
            }
            c => out.push(c),
        }
    }
    Err(err_at(src, "unterminated quoted string", from))
}

fn lex_char(src: &str, from: usize) -> Result<(char, usize), TemplateError> {
    let rest = &src[from + 1..];
    let mut it = rest.char_indices();
    match (it.next(), it.next()) {
        (Some((_, c)), Some((k, '\''))) if c != '\\' => Ok((c, from + 1 + k + 1)),
        _ => Err(err_at(src, "bad character constant", from)),
    }
}

// ---------------------------------------------------------------------------------
// Parser

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Print(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
}

#[derive(Debug, Clone)]
struct Pipe {
    /// Variables declared (`:=`) or assigned (`=`).
    vars: Vec<String>,
    declare: bool,
    cmds: Vec<Cmd>,
    pos: usize,
}

#[derive(Debug, Clone)]
struct Cmd {
    args: Vec<Arg>,
    pos: usize,
}

#[derive(Debug, Clone)]
enum Arg {
    /// `.` or `.A.B` (fields of dot).
    Dot(Vec<String>, usize),
    /// `$x.A.B`.
    Var(String, Vec<String>, usize),
    /// A function name.
    Func(String, usize),
    /// `(pipeline).A.B`.
    Sub(Box<Pipe>, Vec<String>, usize),
    Lit(Value),
}

/// Functions a template may call.
const FUNCTIONS: &[&str] = &[
    "json", "split", "join", "title", "lower", "upper", "pad", "truncate", "and", "or", "not",
    "len", "index", "eq", "ne", "lt", "le", "gt", "ge", "print", "printf", "println",
];

struct Parser<'a> {
    src: &'a str,
    items: Vec<Item>,
    at: usize,
    vars: Vec<String>,
    dot_is_root: bool,
    fields: Fields,
    /// How many `if`/`with`/`range` blocks and parentheses enclose the part being
    /// parsed (at most [`MAX_DEPTH`]).
    depth: usize,
}

/// The keyword that ended a list (`else`, `end`), its remaining tokens and position.
type End = Option<(String, usize)>;

impl Parser<'_> {
    fn error(&self, message: impl Into<String>, pos: usize) -> TemplateError {
        err_at(self.src, message, pos)
    }

    /// Goes one level deeper (a block or a parenthesis at `pos`); errors past
    /// [`MAX_DEPTH`] instead of overflowing the stack.
    fn enter(&mut self, pos: usize) -> Result<(), TemplateError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(too_deep(), pos));
        }
        Ok(())
    }

    /// Parses nodes until `{{end}}`, `{{else ...}}` or the end of the template. An
    /// `else` action is left unread, for [`Parser::control`] to read its tokens.
    fn list(&mut self) -> Result<(Vec<Node>, End), TemplateError> {
        let mut nodes = vec![];
        while self.at < self.items.len() {
            let item = self.items[self.at].clone();
            self.at += 1;
            match item {
                Item::Text(t) => nodes.push(Node::Text(t)),
                Item::Action(tokens, pos) => {
                    let Some(first) = tokens.first() else {
                        return Err(self.error("missing value for command", pos));
                    };
                    match &first.tok {
                        Tok::Ident(k) if k == "end" => {
                            if tokens.len() > 1 {
                                return Err(self.error("unexpected token after end", tokens[1].pos));
                            }
                            return Ok((nodes, Some(("end".into(), pos))));
                        }
                        Tok::Ident(k) if k == "else" => {
                            // Keep the rest (`else if ...`) for the caller.
                            self.at -= 1;
                            return Ok((nodes, Some(("else".into(), pos))));
                        }
                        Tok::Ident(k) if k == "if" || k == "with" || k == "range" => {
                            let k = k.clone();
                            nodes.push(self.control(&k, &tokens[1..], first.pos)?);
                        }
                        Tok::Ident(k)
                            if matches!(
                                k.as_str(),
                                "define" | "template" | "block" | "break" | "continue"
                            ) =>
                        {
                            return Err(self.error(
                                format!("{{{{{k}}}}} is not supported in --format templates"),
                                first.pos,
                            ));
                        }
                        _ => {
                            let pipe = self.pipeline(&tokens, pos, true)?;
                            nodes.push(Node::Print(pipe));
                        }
                    }
                }
            }
        }
        Ok((nodes, None))
    }

    /// `if`, `with` or `range` whose pipeline is `tokens`; consumes up to its `end`.
    fn control(
        &mut self,
        keyword: &str,
        tokens: &[Token],
        pos: usize,
    ) -> Result<Node, TemplateError> {
        self.enter(pos)?;
        let scope = self.vars.len();
        let outer_dot = self.dot_is_root;
        let pipe = if keyword == "range" {
            self.range_pipeline(tokens, pos)?
        } else {
            self.pipeline(tokens, pos, true)?
        };
        if pipe.cmds.is_empty() {
            return Err(self.error(format!("missing value for {keyword}"), pos));
        }
        if keyword != "if" {
            self.dot_is_root = false;
        }
        let (body, end) = self.list()?;
        self.dot_is_root = outer_dot;
        let mut otherwise = vec![];
        match end {
            None => {
                return Err(self.error(
                    format!("unexpected EOF: {{{{{keyword}}}}} has no {{{{end}}}}"),
                    pos,
                ));
            }
            Some((word, _)) if word == "end" => {}
            Some((_, else_pos)) => {
                let Item::Action(else_tokens, _) = self.items[self.at].clone() else {
                    unreachable!("an else action")
                };
                self.at += 1;
                let rest = &else_tokens[1..];
                match rest.first().map(|t| &t.tok) {
                    Some(Tok::Ident(k))
                        if (k == "if" && keyword == "if") || (k == "with" && keyword == "with") =>
                    {
                        // `else if` / `else with`: a nested control sharing this end.
                        let k = k.clone();
                        otherwise.push(self.control(&k, &rest[1..], rest[0].pos)?);
                    }
                    Some(t) => {
                        return Err(self.error(format!("unexpected {t:?} after else"), rest[0].pos));
                    }
                    None => {
                        let (list, end) = self.list()?;
                        match end {
                            Some((word, _)) if word == "end" => otherwise = list,
                            Some((_, p)) => {
                                return Err(
                                    self.error("expected {{end}}, found a second {{else}}", p)
                                );
                            }
                            None => {
                                return Err(self.error(
                                    format!("unexpected EOF: {{{{{keyword}}}}} has no {{{{end}}}}"),
                                    else_pos,
                                ));
                            }
                        }
                    }
                }
            }
        }
        self.vars.truncate(scope);
        self.depth -= 1;
        Ok(match keyword {
            "if" => Node::If(pipe, body, otherwise),
            "with" => Node::With(pipe, body, otherwise),
            _ => Node::Range(pipe, body, otherwise),
        })
    }

    /// A `range` pipeline: `[$i, ]$v := pipeline` or a pipeline.
    fn range_pipeline(&mut self, tokens: &[Token], pos: usize) -> Result<Pipe, TemplateError> {
        if let [
            Token {
                tok: Tok::Var(a), ..
            },
            Token {
                tok: Tok::Comma, ..
            },
            Token {
                tok: Tok::Var(b), ..
            },
            Token {
                tok: Tok::Declare, ..
            },
            rest @ ..,
        ] = tokens
        {
            let mut pipe = self.pipeline(rest, pos, false)?;
            pipe.vars = vec![a.clone(), b.clone()];
            pipe.declare = true;
            self.vars.push(a.clone());
            self.vars.push(b.clone());
            return Ok(pipe);
        }
        self.pipeline(tokens, pos, true)
    }

    /// A pipeline, with an optional `$x :=` / `$x =` in front when `decl` allows.
    fn pipeline(
        &mut self,
        tokens: &[Token],
        pos: usize,
        decl: bool,
    ) -> Result<Pipe, TemplateError> {
        let mut vars = vec![];
        let mut declare = false;
        let mut tokens = tokens;
        if decl
            && let [
                Token {
                    tok: Tok::Var(v),
                    pos: vpos,
                    ..
                },
                Token {
                    tok: op @ (Tok::Declare | Tok::Assign),
                    ..
                },
                rest @ ..,
            ] = tokens
        {
            declare = *op == Tok::Declare;
            if !declare && !self.vars.contains(v) {
                return Err(self.error(format!("undefined variable: {v}"), *vpos));
            }
            vars.push(v.clone());
            tokens = rest;
        }
        let mut cmds = vec![];
        let mut k = 0;
        while k < tokens.len() {
            let cmd_pos = tokens[k].pos;
            let mut args = vec![];
            while k < tokens.len() && tokens[k].tok != Tok::Pipe {
                let (arg, next) = self.operand(tokens, k)?;
                args.push(arg);
                k = next;
            }
            if args.is_empty() {
                return Err(self.error(
                    "missing command in pipeline",
                    tokens.get(k).map_or(cmd_pos, |t| t.pos),
                ));
            }
            cmds.push(Cmd { args, pos: cmd_pos });
            if k < tokens.len() {
                k += 1; // the `|`
                if k == tokens.len() {
                    return Err(self.error("missing command after |", tokens[k - 1].pos));
                }
            }
        }
        if cmds.is_empty() && !vars.is_empty() {
            return Err(self.error("missing value for variable", pos));
        }
        if cmds.is_empty() {
            return Err(self.error("missing value for command", pos));
        }
        // A declared variable is visible after its action.
        if declare {
            self.vars.push(vars[0].clone());
        }
        Ok(Pipe {
            vars,
            declare,
            cmds,
            pos: tokens.first().map_or(pos, |t| t.pos),
        })
    }

    /// One operand starting at `tokens[k]`, with the field chain that follows it
    /// without blanks; returns it and the index after it.
    fn operand(&mut self, tokens: &[Token], k: usize) -> Result<(Arg, usize), TemplateError> {
        let t = &tokens[k];
        let mut next = k + 1;
        let chain = |next: &mut usize| {
            let mut names = vec![];
            while let Some(Token {
                tok: Tok::Field(f),
                spaced: false,
                ..
            }) = tokens.get(*next)
            {
                names.push(f.clone());
                *next += 1;
            }
            names
        };
        let arg = match &t.tok {
            Tok::Dot => Arg::Dot(vec![], t.pos),
            Tok::Field(f) => {
                let mut names = vec![f.clone()];
                names.extend(chain(&mut next));
                if self.dot_is_root {
                    self.check_fields(&names, t.pos)?;
                }
                Arg::Dot(names, t.pos)
            }
            Tok::Var(v) => {
                if !self.vars.contains(v) {
                    return Err(self.error(format!("undefined variable: {v}"), t.pos));
                }
                let names = chain(&mut next);
                if v == "$" {
                    self.check_fields(&names, t.pos)?;
                }
                Arg::Var(v.clone(), names, t.pos)
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => Arg::Lit(Value::Bool(true)),
                "false" => Arg::Lit(Value::Bool(false)),
                "nil" => Arg::Lit(Value::Null),
                n if FUNCTIONS.contains(&n) => Arg::Func(n.to_string(), t.pos),
                "if" | "else" | "end" | "range" | "with" => {
                    return Err(
                        self.error(format!("unexpected keyword {name} in a pipeline"), t.pos)
                    );
                }
                n => {
                    let hint = closest(n, FUNCTIONS)
                        .map(|c| format!(" (did you mean {c}?)"))
                        .unwrap_or_default();
                    return Err(self.error(
                        format!(
                            "function \"{n}\" not defined{hint}; the functions are {}",
                            FUNCTIONS.join(", ")
                        ),
                        t.pos,
                    ));
                }
            },
            Tok::Str(s) => Arg::Lit(Value::String(s.clone())),
            Tok::Num(n) => Arg::Lit(number(*n)),
            Tok::LParen => {
                let close = k + t.span;
                if t.span == 0 || close >= tokens.len() {
                    return Err(self.error("unclosed left paren", t.pos));
                }
                self.enter(t.pos)?;
                let inner = self.pipeline(&tokens[k + 1..close], t.pos, false)?;
                self.depth -= 1;
                next = close + 1;
                let names = chain(&mut next);
                Arg::Sub(Box::new(inner), names, t.pos)
            }
            Tok::RParen => return Err(self.error("unexpected right paren", t.pos)),
            Tok::Declare | Tok::Assign => {
                return Err(self.error(
                    "unexpected := or = (only a variable at the start of an action can be set)",
                    t.pos,
                ));
            }
            Tok::Comma => return Err(self.error("unexpected comma", t.pos)),
            Tok::Pipe => return Err(self.error("unexpected |", t.pos)),
        };
        // A literal or function followed by a field without a blank.
        if let Some(Token {
            tok: Tok::Field(_),
            spaced: false,
            pos,
            ..
        }) = tokens.get(next)
        {
            return Err(self.error(
                "unexpected field after a value (put it in parentheses)",
                *pos,
            ));
        }
        Ok((arg, next))
    }

    /// Checks a field chain on the row: the first name must be a field of the
    /// command, and a scalar field has no fields.
    fn check_fields(&self, names: &[String], pos: usize) -> Result<(), TemplateError> {
        let Some(first) = names.first() else {
            return Ok(());
        };
        let known: Vec<&str> = self.fields.list.iter().map(|f| f.name).collect();
        let Some(field) = self.fields.get(first) else {
            let hint = closest(first, &known)
                .map(|c| format!(" (did you mean .{c}?)"))
                .unwrap_or_default();
            return Err(self.error(
                format!(
                    "{} has no field .{first}{hint}; its fields are {} (docs/format.md)",
                    self.fields.command,
                    known.join(", ")
                ),
                pos,
            ));
        };
        if field.kind == Kind::Scalar && names.len() > 1 {
            return Err(self.error(
                format!(
                    ".{first} is a value, not an object: it has no field .{}",
                    names[1]
                ),
                pos,
            ));
        }
        if field.kind == Kind::List && names.len() > 1 {
            return Err(self.error(
                format!(
                    ".{first} is a list: read its items with range or index, not .{}",
                    names[1]
                ),
                pos,
            ));
        }
        Ok(())
    }
}

/// The closest of `choices` to `word` (case-insensitive Jaro-Winkler), if close.
fn closest<'a>(word: &str, choices: &[&'a str]) -> Option<&'a str> {
    let w = word.to_lowercase();
    choices
        .iter()
        .map(|c| (strsim::jaro_winkler(&w, &c.to_lowercase()), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

// ---------------------------------------------------------------------------------
// Execution

/// A value, or none (a missing map key, printed `<no value>` as in Go).
type Val = Option<Value>;

/// What one render may spend, over all its rows: see [`MAX_STEPS`], [`MAX_WORK`]
/// and [`MAX_OUTPUT`].
#[derive(Debug, Clone, Copy)]
struct Budget {
    steps: u64,
    work: u64,
    output: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            steps: MAX_STEPS,
            work: MAX_WORK,
            output: MAX_OUTPUT,
        }
    }
}

/// Roughly how many bytes a copy of `v` takes (a string's length, 32 bytes per item
/// or entry plus the items), for [`MAX_WORK`]. The walk stops once it passes
/// `stop`, so weighing a huge value costs no more than the budget left.
fn weight(v: &Value, stop: u64) -> u64 {
    let mut total = 0u64;
    let mut todo = vec![v];
    while let Some(v) = todo.pop() {
        total += match v {
            Value::String(s) => s.len() as u64 + 8,
            Value::Array(a) => {
                todo.extend(a.iter());
                32
            }
            Value::Object(o) => {
                for (k, x) in o {
                    total += k.len() as u64 + 32;
                    todo.push(x);
                }
                32
            }
            _ => 8,
        };
        if total > stop {
            break;
        }
    }
    total
}

struct Exec<'a> {
    /// Variables in scope: name, value, and whether the value comes from the data
    /// (so must be escaped when printed).
    vars: Vec<(String, Value, bool)>,
    out: String,
    header: bool,
    fields: Fields,
    text: &'a str,
    /// Blocks and parentheses being executed (at most [`MAX_DEPTH`]).
    depth: usize,
    budget: Budget,
}

/// A value and whether it comes from the data (a field, a variable, or a function
/// of one): data is escaped with [`crate::edge::text::printable`] when printed; literals of the
/// template and the text `print`, `printf`, `println`, `join` and `pad` make (which
/// escape the data in them) are printed as they are.
type Tainted = (Val, bool);

impl Exec<'_> {
    fn error(&self, message: impl Into<String>, pos: usize) -> TemplateError {
        err_at(self.text, message, pos)
    }

    /// One more step (an action, a range pass, a function call).
    fn step(&mut self, pos: usize) -> Result<(), TemplateError> {
        if self.budget.steps == 0 {
            return Err(self.error(
                format!(
                    "template too costly: more than {MAX_STEPS} steps (actions, range passes \
                     and function calls, over all rows); range over fewer items or use \
                     --format json and a JSON tool"
                ),
                pos,
            ));
        }
        self.budget.steps -= 1;
        Ok(())
    }

    /// `bytes` more bytes of values made or copied.
    fn spend(&mut self, bytes: u64, pos: usize) -> Result<(), TemplateError> {
        if bytes > self.budget.work {
            return Err(self.error(
                format!(
                    "template too costly: it makes or copies more than {} MiB of values \
                     (over all rows); build smaller values or use --format json and a JSON tool",
                    MAX_WORK >> 20
                ),
                pos,
            ));
        }
        self.budget.work -= bytes;
        Ok(())
    }

    /// Charges a copy of `v`.
    fn spend_value(&mut self, v: &Value, pos: usize) -> Result<(), TemplateError> {
        let w = weight(v, self.budget.work);
        self.spend(w, pos)
    }

    /// Appends printed text, within [`MAX_OUTPUT`].
    fn emit(&mut self, text: &str, pos: usize) -> Result<(), TemplateError> {
        let n = text.len() as u64;
        if n > self.budget.output {
            return Err(self.error(output_too_large(), pos));
        }
        self.budget.output -= n;
        self.out.push_str(text);
        Ok(())
    }

    /// Goes one level deeper; errors past [`MAX_DEPTH`].
    fn enter(&mut self, pos: usize) -> Result<(), TemplateError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(too_deep(), pos));
        }
        Ok(())
    }

    fn list(
        &mut self,
        nodes: &[Node],
        dot: &Value,
        dot_is_root: bool,
    ) -> Result<(), TemplateError> {
        for node in nodes {
            match node {
                Node::Text(t) => {
                    self.step(0)?;
                    self.emit(t, 0)?;
                }
                Node::Print(pipe) => {
                    self.step(pipe.pos)?;
                    let (v, tainted) = self.pipe(pipe, dot, dot_is_root)?;
                    if pipe.vars.is_empty() {
                        let text = show(&v);
                        self.spend(text.len() as u64, pipe.pos)?;
                        if tainted {
                            self.emit(&crate::edge::text::printable(&text), pipe.pos)?;
                        } else {
                            self.emit(&text, pipe.pos)?;
                        }
                    }
                }
                Node::If(pipe, then, otherwise) => {
                    self.step(pipe.pos)?;
                    self.enter(pipe.pos)?;
                    let scope = self.vars.len();
                    let (v, _) = self.pipe(pipe, dot, dot_is_root)?;
                    if truth(&v) {
                        self.list(then, dot, dot_is_root)?;
                    } else {
                        self.list(otherwise, dot, dot_is_root)?;
                    }
                    self.vars.truncate(scope);
                    self.depth -= 1;
                }
                Node::With(pipe, body, otherwise) => {
                    self.step(pipe.pos)?;
                    self.enter(pipe.pos)?;
                    let scope = self.vars.len();
                    let (v, _) = self.pipe(pipe, dot, dot_is_root)?;
                    if truth(&v) {
                        let inner = v.unwrap_or(Value::Null);
                        self.list(body, &inner, false)?;
                    } else {
                        self.list(otherwise, dot, dot_is_root)?;
                    }
                    self.vars.truncate(scope);
                    self.depth -= 1;
                }
                Node::Range(pipe, body, otherwise) => {
                    self.step(pipe.pos)?;
                    self.enter(pipe.pos)?;
                    let scope = self.vars.len();
                    let (v, tainted) = self.pipe_value(pipe, dot, dot_is_root)?;
                    let items: Vec<(Value, Value)> = match v {
                        Some(Value::Array(a)) => a
                            .into_iter()
                            .enumerate()
                            .map(|(i, x)| (Value::from(i), x))
                            .collect(),
                        Some(Value::Object(o)) => {
                            o.into_iter().map(|(k, x)| (Value::String(k), x)).collect()
                        }
                        Some(Value::Null) | None => vec![],
                        // The header of a table: one pass over the column's header.
                        Some(s @ Value::String(_)) if self.header => vec![(Value::from(0), s)],
                        Some(other) => {
                            return Err(self.error(
                                format!("range can't iterate over {}", show(&Some(other))),
                                pipe.pos,
                            ));
                        }
                    };
                    if items.is_empty() {
                        self.list(otherwise, dot, dot_is_root)?;
                    }
                    for (key, item) in items {
                        self.step(pipe.pos)?;
                        let inner = self.vars.len();
                        match pipe.vars.as_slice() {
                            [k, v] => {
                                self.spend_value(&item, pipe.pos)?;
                                self.vars.push((k.clone(), key, tainted));
                                self.vars.push((v.clone(), item.clone(), tainted));
                            }
                            [v] => {
                                self.spend_value(&item, pipe.pos)?;
                                self.vars.push((v.clone(), item.clone(), tainted));
                            }
                            _ => {}
                        }
                        self.list(body, &item, false)?;
                        self.vars.truncate(inner);
                    }
                    self.vars.truncate(scope);
                    self.depth -= 1;
                }
            }
        }
        Ok(())
    }

    /// Runs a pipeline and sets its variables (`$x := ...`, `$x = ...`).
    fn pipe(
        &mut self,
        pipe: &Pipe,
        dot: &Value,
        dot_is_root: bool,
    ) -> Result<Tainted, TemplateError> {
        let (value, tainted) = self.pipe_value(pipe, dot, dot_is_root)?;
        if let Some(name) = pipe.vars.first() {
            let v = value.clone().unwrap_or(Value::Null);
            self.spend_value(&v, pipe.pos)?;
            if pipe.declare {
                self.vars.push((name.clone(), v, tainted));
            } else if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _, _)| n == name) {
                slot.1 = v;
                slot.2 = tainted;
            }
        }
        Ok((value, tainted))
    }

    /// Runs a pipeline's commands only (a `range` sets its variables per item).
    fn pipe_value(
        &mut self,
        pipe: &Pipe,
        dot: &Value,
        dot_is_root: bool,
    ) -> Result<Tainted, TemplateError> {
        let mut value: Option<Tainted> = None;
        for cmd in &pipe.cmds {
            value = Some(self.cmd(cmd, dot, dot_is_root, value)?);
        }
        Ok(value.unwrap_or((None, false)))
    }

    fn cmd(
        &mut self,
        cmd: &Cmd,
        dot: &Value,
        dot_is_root: bool,
        piped: Option<Tainted>,
    ) -> Result<Tainted, TemplateError> {
        if let Arg::Func(name, pos) = &cmd.args[0] {
            let mut args = vec![];
            for a in &cmd.args[1..] {
                args.push(self.arg(a, dot, dot_is_root)?);
            }
            if let Some(p) = piped {
                args.push(p);
            }
            return self.call(name, args, *pos);
        }
        if cmd.args.len() > 1 {
            return Err(self.error(
                "can't give arguments to a value (only to a function)",
                arg_pos(&cmd.args[1]).unwrap_or(cmd.pos),
            ));
        }
        if piped.is_some() {
            return Err(self.error("can't pipe into a value (only into a function)", cmd.pos));
        }
        self.arg(&cmd.args[0], dot, dot_is_root)
    }

    fn arg(&mut self, arg: &Arg, dot: &Value, dot_is_root: bool) -> Result<Tainted, TemplateError> {
        match arg {
            Arg::Lit(v) => Ok((Some(v.clone()), false)),
            Arg::Dot(names, pos) => Ok((self.chain(Some(dot), names, dot_is_root, *pos)?, true)),
            Arg::Var(name, names, pos) => {
                let Some(i) = self.vars.iter().rposition(|(n, _, _)| n == name) else {
                    return Err(self.error(format!("undefined variable: {name}"), *pos));
                };
                // The variables are taken out while the chain reads them, so that
                // nothing but the result is copied.
                let vars = std::mem::take(&mut self.vars);
                let (_, v, tainted) = &vars[i];
                let r = self.chain(Some(v), names, name == "$", *pos);
                let tainted = *tainted;
                self.vars = vars;
                Ok((r?, tainted))
            }
            Arg::Func(name, pos) => self.call(name, vec![], *pos),
            Arg::Sub(pipe, names, pos) => {
                self.enter(*pos)?;
                let (v, tainted) = self.pipe(pipe, dot, dot_is_root)?;
                self.depth -= 1;
                if names.is_empty() {
                    return Ok((v, tainted));
                }
                Ok((self.chain(v.as_ref(), names, false, *pos)?, tainted))
            }
        }
    }

    /// Reads the field chain `names` from `value` and copies the result (charged to
    /// [`MAX_WORK`]). `root`: `value` is the row, whose fields are the command's (a
    /// field missing from the row's JSON is null). `None` is no value.
    fn chain(
        &mut self,
        value: Option<&Value>,
        names: &[String],
        root: bool,
        pos: usize,
    ) -> Result<Val, TemplateError> {
        const NULL: Value = Value::Null;
        let mut v = value;
        for (i, name) in names.iter().enumerate() {
            v = match v {
                None => None,
                Some(Value::Object(o)) => match o.get(name) {
                    Some(x) => Some(x),
                    None if i == 0 && root && !self.header => {
                        if self.fields.get(name).is_some() {
                            Some(&NULL)
                        } else {
                            return Err(self.error(
                                format!("{} has no field .{name}", self.fields.command),
                                pos,
                            ));
                        }
                    }
                    None => None,
                },
                Some(Value::Null) => Some(&NULL),
                // A header is a string: its fields are the header itself.
                Some(s @ Value::String(_)) if self.header => Some(s),
                Some(other) => {
                    return Err(self.error(
                        format!(
                            "can't read field .{name} of {} {}",
                            kind_name(other),
                            show(&Some(other.clone()))
                        ),
                        pos,
                    ));
                }
            };
        }
        self.step(pos)?;
        if let Some(v) = v {
            self.spend_value(v, pos)?;
        }
        Ok(v.cloned())
    }

    /// Calls function `name`. The result comes from the data when an argument does,
    /// except for `print`, `printf`, `println`, `join` and `pad`, which escape the
    /// data they format ([`crate::edge::text::printable`]) and keep the template's own text (a
    /// tab or newline in a format or separator). Each call is a step, and its result
    /// is charged to [`MAX_WORK`].
    fn call(
        &mut self,
        name: &str,
        args: Vec<Tainted>,
        pos: usize,
    ) -> Result<Tainted, TemplateError> {
        self.step(pos)?;
        let taints: Vec<bool> = args.iter().map(|a| a.1).collect();
        let args: Vec<Val> = args.into_iter().map(|a| a.0).collect();
        let display = matches!(name, "print" | "printf" | "println" | "join" | "pad");
        let tainted = !display && taints.iter().any(|t| *t);
        let v = self.call_values(name, args, &taints, pos)?;
        if let Some(v) = &v {
            self.spend_value(v, pos)?;
        }
        Ok((v, tainted))
    }

    /// The function `name` on `args`; `taints[i]`: argument `i` comes from the data.
    fn call_values(
        &self,
        name: &str,
        args: Vec<Val>,
        taints: &[bool],
        pos: usize,
    ) -> Result<Val, TemplateError> {
        let n = args.len();
        // Text of argument `i` as print shows it, escaped when it comes from the data.
        let shown = |i: usize| {
            let t = show(&args[i]);
            if taints[i] {
                crate::edge::text::printable(&t)
            } else {
                t
            }
        };
        let work = self.budget.work;
        let too_big = |what: &str| {
            self.error(
                format!(
                    "{name}: {what} would pass the {} MiB a template may make; \
                     build smaller values",
                    MAX_WORK >> 20
                ),
                pos,
            )
        };
        let want = |count: usize| -> Result<(), TemplateError> {
            if n == count {
                Ok(())
            } else {
                Err(self.error(
                    format!("wrong number of arguments for {name}: want {count}, got {n}"),
                    pos,
                ))
            }
        };
        let string = |v: &Val, what: &str| -> Result<String, TemplateError> {
            match v {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Null) | None => Ok(String::new()),
                Some(Value::Number(_) | Value::Bool(_)) => Ok(show(v)),
                Some(other) => Err(self.error(
                    format!("{name}: {what} must be a string, not {}", kind_name(other)),
                    pos,
                )),
            }
        };
        let int = |v: &Val, what: &str| -> Result<i64, TemplateError> {
            match v {
                Some(Value::Number(x)) if x.as_i64().is_some() => Ok(x.as_i64().unwrap_or(0)),
                Some(Value::Number(x)) if x.as_f64().is_some_and(|f| f.fract() == 0.0) => {
                    Ok(x.as_f64().unwrap_or(0.0) as i64)
                }
                _ => Err(self.error(
                    format!("{name}: {what} must be a whole number, not {}", show(v)),
                    pos,
                )),
            }
        };
        // In a table header, these leave the header as it is (docker's
        // HeaderFunctions, which take a string: anything else stops the header there).
        if self.header
            && matches!(
                name,
                "json" | "split" | "join" | "title" | "lower" | "upper" | "truncate"
            )
        {
            return match args.into_iter().next().flatten() {
                Some(s @ Value::String(_)) => Ok(Some(s)),
                _ => Err(self.error(format!("{name} in a header takes a string"), pos)),
            };
        }
        let s = |x: String| Ok(Some(Value::String(x)));
        match name {
            "json" => {
                want(1)?;
                let v = args[0].clone().unwrap_or(Value::Null);
                // serde_json does not escape <, > and & (SetEscapeHTML(false)); the
                // text is the one `--format json` prints for the value.
                s(super::json_text(&v))
            }
            "split" => {
                want(2)?;
                let text = string(&args[0], "the text")?;
                let sep = string(&args[1], "the separator")?;
                let count = if sep.is_empty() {
                    text.chars().count()
                } else {
                    text.matches(sep.as_str()).count() + 1
                };
                if (count as u64) * 40 + text.len() as u64 > work {
                    return Err(too_big(&format!("a list of {count} parts")));
                }
                let parts: Vec<Value> = if sep.is_empty() {
                    text.chars().map(|c| Value::String(c.to_string())).collect()
                } else {
                    text.split(sep.as_str())
                        .map(|p| Value::String(p.to_string()))
                        .collect()
                };
                Ok(Some(Value::Array(parts)))
            }
            "join" => {
                want(2)?;
                let mut sep = string(&args[1], "the separator")?;
                if taints[1] {
                    sep = crate::edge::text::printable(&sep);
                }
                match &args[0] {
                    Some(Value::Array(a)) => {
                        let mut out = String::new();
                        for (i, x) in a.iter().enumerate() {
                            if i > 0 {
                                out.push_str(&sep);
                            }
                            let t = show_value(x);
                            if taints[0] {
                                out.push_str(&crate::edge::text::printable(&t));
                            } else {
                                out.push_str(&t);
                            }
                            if out.len() as u64 > work {
                                return Err(too_big("the joined text"));
                            }
                        }
                        s(out)
                    }
                    Some(Value::Null) | None => s(String::new()),
                    Some(other) => Err(self.error(
                        format!(
                            "join: the first argument must be a list, not {}",
                            kind_name(other)
                        ),
                        pos,
                    )),
                }
            }
            "title" => {
                want(1)?;
                s(title(&string(&args[0], "the argument")?))
            }
            "lower" => {
                want(1)?;
                s(string(&args[0], "the argument")?.to_lowercase())
            }
            "upper" => {
                want(1)?;
                s(string(&args[0], "the argument")?.to_uppercase())
            }
            "pad" => {
                want(3)?;
                let mut text = string(&args[0], "the text")?;
                if taints[0] {
                    text = crate::edge::text::printable(&text);
                }
                let before = int(&args[1], "the space before")?.max(0);
                let after = int(&args[2], "the space after")?.max(0);
                for (w, what) in [(before, "the space before"), (after, "the space after")] {
                    if w > MAX_WIDTH as i64 {
                        return Err(self.error(
                            format!(
                                "pad: {what} is {w}, more than {MAX_WIDTH} (the widest a \
                                 template may pad, as Go's fmt limits widths)"
                            ),
                            pos,
                        ));
                    }
                }
                let (before, after) = (before as usize, after as usize);
                if text.is_empty() {
                    s(text)
                } else if (before + after + text.len()) as u64 > work {
                    Err(too_big("the padded text"))
                } else {
                    s(format!("{}{text}{}", " ".repeat(before), " ".repeat(after)))
                }
            }
            "truncate" => {
                want(2)?;
                let text = string(&args[0], "the text")?;
                let len = int(&args[1], "the length")?.max(0) as usize;
                s(text.chars().take(len).collect())
            }
            "and" | "or" => {
                if n == 0 {
                    return Err(self.error(
                        format!("wrong number of arguments for {name}: want at least 1, got 0"),
                        pos,
                    ));
                }
                let stop = |v: &Val| if name == "and" { !truth(v) } else { truth(v) };
                let last = args.len() - 1;
                for (i, a) in args.into_iter().enumerate() {
                    if i == last || stop(&a) {
                        return Ok(a);
                    }
                }
                Ok(None)
            }
            "not" => {
                want(1)?;
                Ok(Some(Value::Bool(!truth(&args[0]))))
            }
            "len" => {
                want(1)?;
                let l = match &args[0] {
                    Some(Value::String(x)) => x.chars().count(),
                    Some(Value::Array(a)) => a.len(),
                    Some(Value::Object(o)) => o.len(),
                    other => return Err(self.error(format!("len of {}", describe(other)), pos)),
                };
                Ok(Some(Value::from(l)))
            }
            "index" => {
                if n == 0 {
                    return Err(self.error(
                        "wrong number of arguments for index: want at least 1, got 0",
                        pos,
                    ));
                }
                let mut v = args[0].clone();
                for key in &args[1..] {
                    v = match (v, key) {
                        (Some(Value::Object(o)), Some(Value::String(k))) => {
                            Some(o.get(k).cloned().unwrap_or(Value::Null))
                        }
                        (Some(Value::Array(a)), Some(Value::Number(i))) => {
                            let idx = i.as_i64().unwrap_or(-1);
                            match usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                                Some(x) => Some(x.clone()),
                                None => {
                                    return Err(self.error(
                                        format!(
                                            "index out of range: {i} (the list has {} items)",
                                            a.len()
                                        ),
                                        pos,
                                    ));
                                }
                            }
                        }
                        (Some(Value::Null), _) => Some(Value::Null),
                        (Some(st @ Value::String(_)), _) if self.header => Some(st),
                        (other, key) => {
                            return Err(self.error(
                                format!("can't index {} with {}", describe(&other), describe(key)),
                                pos,
                            ));
                        }
                    };
                }
                Ok(v)
            }
            "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
                if name == "eq" {
                    if n < 2 {
                        return Err(self.error(
                            format!("wrong number of arguments for eq: want at least 2, got {n}"),
                            pos,
                        ));
                    }
                    for other in &args[1..] {
                        if self.compare(&args[0], other, pos)? == std::cmp::Ordering::Equal {
                            return Ok(Some(Value::Bool(true)));
                        }
                    }
                    return Ok(Some(Value::Bool(false)));
                }
                want(2)?;
                let ord = self.compare(&args[0], &args[1], pos)?;
                if matches!(name, "lt" | "le" | "gt" | "ge") {
                    let ordered = matches!(
                        (&args[0], &args[1]),
                        (Some(Value::Number(_)), Some(Value::Number(_)))
                            | (Some(Value::String(_)), Some(Value::String(_)))
                    );
                    if !ordered {
                        return Err(self.error(
                            format!(
                                "{name}: only numbers or strings can be ordered, not {} and {}",
                                describe(&args[0]),
                                describe(&args[1])
                            ),
                            pos,
                        ));
                    }
                }
                use std::cmp::Ordering::*;
                let r = match name {
                    "ne" => ord != Equal,
                    "lt" => ord == Less,
                    "le" => ord != Greater,
                    "gt" => ord == Greater,
                    _ => ord != Less,
                };
                Ok(Some(Value::Bool(r)))
            }
            "print" => {
                // fmt.Sprint: a space between operands when neither is a string.
                let mut out = String::new();
                for (i, a) in args.iter().enumerate() {
                    let is_str = |v: &Val| matches!(v, Some(Value::String(_)));
                    if i > 0 && !is_str(a) && !is_str(&args[i - 1]) {
                        out.push(' ');
                    }
                    out.push_str(&shown(i));
                }
                s(out)
            }
            "println" => s(format!(
                "{}\n",
                (0..n).map(shown).collect::<Vec<_>>().join(" ")
            )),
            "printf" => {
                if n == 0 {
                    return Err(self.error(
                        "wrong number of arguments for printf: want at least 1, got 0",
                        pos,
                    ));
                }
                let f = string(&args[0], "the format")?;
                let text = printf(&f, &args[1..], &taints[1..], work)
                    .map_err(|e| self.error(format!("printf: {e}"), pos))?;
                // A format from the data is escaped whole (escaping twice changes
                // nothing).
                s(if taints[0] {
                    crate::edge::text::printable(&text)
                } else {
                    text
                })
            }
            other => Err(self.error(format!("function \"{other}\" not defined"), pos)),
        }
    }

    fn compare(&self, a: &Val, b: &Val, pos: usize) -> Result<std::cmp::Ordering, TemplateError> {
        use std::cmp::Ordering;
        match (a, b) {
            (Some(Value::Number(x)), Some(Value::Number(y))) => Ok(x
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&y.as_f64().unwrap_or(0.0))),
            (Some(Value::String(x)), Some(Value::String(y))) => Ok(x.cmp(y)),
            (Some(Value::Bool(x)), Some(Value::Bool(y))) => Ok(x.cmp(y)),
            (Some(Value::Null) | None, Some(Value::Null) | None) => Ok(Ordering::Equal),
            (Some(Value::Null) | None, _) | (_, Some(Value::Null) | None) => Ok(Ordering::Less),
            _ if self.header => Ok(Ordering::Less),
            _ => Err(self.error(
                format!(
                    "incompatible types for comparison: {} and {}",
                    describe(a),
                    describe(b)
                ),
                pos,
            )),
        }
    }
}

fn arg_pos(arg: &Arg) -> Option<usize> {
    match arg {
        Arg::Dot(_, p) | Arg::Var(_, _, p) | Arg::Func(_, p) | Arg::Sub(_, _, p) => Some(*p),
        Arg::Lit(_) => None,
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

fn describe(v: &Val) -> String {
    match v {
        None => "no value".into(),
        Some(Value::Null) => "null".into(),
        Some(x @ (Value::Array(_) | Value::Object(_))) => kind_name(x).into(),
        Some(x) => format!(
            "{} {}",
            kind_name(x),
            serde_json::to_string(x).unwrap_or_default()
        ),
    }
}

/// Go's truth: false, 0, null, no value, and empty strings, lists and objects are
/// false.
fn truth(v: &Val) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// A value as Go's `fmt` prints it with `%v`: lists as `[a b]`, objects as
/// `map[k:v]` (keys sorted), floats in Go's shortest form (`1e+06`); `null` as an
/// empty string, no value as `<no value>`.
fn show(v: &Val) -> String {
    match v {
        None => "<no value>".into(),
        Some(v) => show_value(v),
    }
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                go_float(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(show_value).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(o) => format!("map[{}]", map_entries(o)),
    }
}

fn map_entries(o: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = o.keys().collect();
    keys.sort();
    keys.iter()
        .map(|k| format!("{k}:{}", show_value(&o[k.as_str()])))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A float with the shortest digits that read back the same value, as Go prints it,
/// in exponent form (`1.5e-07`) below 1e-4 and from 1e21 on. (Go's `%v` switches to
/// the exponent form from 1e6 on; here whole metric values such as 1500000 stay
/// readable, as in the JSON output.)
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return "0".into();
    }
    let sci = format!("{f:e}"); // shortest digits, e.g. 1.5e-7
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..21).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// `strings.Title`: the first letter of each word in upper case (a word starts after
/// anything but a letter, digit, underscore or mark).
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = !(c.is_alphanumeric() || c == '_');
    }
    out
}

/// `x` with `precision` digits after the point, exactly, for any precision up to
/// [`MAX_WIDTH`]. Rust's formatter takes at most 65 535; an `f64` has no non-zero
/// digit past the 1 074th place, so the rest is zeros.
fn fixed(x: f64, precision: usize) -> String {
    const EXACT: usize = 1100;
    if precision <= EXACT || !x.is_finite() {
        return format!("{:.*}", precision.min(EXACT), x);
    }
    let mut s = format!("{x:.EXACT$}");
    s.push_str(&"0".repeat(precision - EXACT));
    s
}

/// A width or precision of `printf`: digits, or `*` (the next argument, a whole
/// number). Go's fmt treats more than [`MAX_WIDTH`] as bad (`%!(BADWIDTH)`); here it
/// is an error that says so.
fn printf_number(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    args: &[Val],
    next: &mut usize,
    what: &str,
) -> Result<Option<i64>, String> {
    if chars.peek() == Some(&'*') {
        chars.next();
        let Some(arg) = args.get(*next) else {
            return Err(format!("{what} * has no argument"));
        };
        *next += 1;
        let n = match arg {
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or(0),
            other => {
                return Err(format!(
                    "{what} * must be a whole number, not {}",
                    describe(other)
                ));
            }
        };
        if n.unsigned_abs() > MAX_WIDTH as u64 {
            return Err(format!(
                "{what} {n} is more than {MAX_WIDTH} (Go's fmt prints %!(BAD{}) for it)",
                if what == "width" { "WIDTH" } else { "PREC" }
            ));
        }
        return Ok(Some(n));
    }
    let mut digits = String::new();
    while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
        digits.push(d);
        chars.next();
    }
    if digits.is_empty() {
        return Ok(None);
    }
    match digits.parse::<u64>() {
        Ok(n) if n <= MAX_WIDTH as u64 => Ok(Some(n as i64)),
        _ => Err(format!(
            "{what} {digits} is more than {MAX_WIDTH} (Go's fmt prints %!(BAD{}) for it)",
            if what == "width" { "WIDTH" } else { "PREC" }
        )),
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %d %q %f %t %x %%`, with
/// the `-` and `0` flags, a width and a precision (digits or `*`, at most
/// [`MAX_WIDTH`]). Arguments whose `taints` entry is set are shown escaped
/// ([`crate::edge::text::printable`]) before they are padded.
///
/// Errors: a width or precision above [`MAX_WIDTH`] or a bad `*` argument, and a
/// result longer than `limit` bytes.
fn printf(format: &str, args: &[Val], taints: &[bool], limit: u64) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if out.len() as u64 > limit {
            return Err(format!(
                "the text would pass the {} MiB a template may make",
                MAX_WORK >> 20
            ));
        }
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut left = false;
        let mut zero = false;
        while let Some(&f) = chars.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' | ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = printf_number(&mut chars, args, &mut next, "width")?;
        if let Some(w) = width.filter(|w| *w < 0) {
            // Go: a negative * width means left-justified.
            left = true;
            width = Some(-w);
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            // Go: a negative * precision means none.
            precision = match printf_number(&mut chars, args, &mut next, "precision")? {
                Some(p) if p < 0 => None,
                Some(p) => Some(p as usize),
                None => Some(0),
            };
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        let tainted = taints.get(next).copied().unwrap_or(true);
        next += 1;
        let mut text = match (verb, arg) {
            ('d', Some(Value::Number(n))) => {
                n.as_i64().map_or_else(|| show(arg), |i| i.to_string())
            }
            ('f' | 'F', Some(Value::Number(n))) => {
                fixed(n.as_f64().unwrap_or(0.0), precision.unwrap_or(6))
            }
            ('q', Some(Value::String(s))) => serde_json::to_string(s).unwrap_or_default(),
            ('x', Some(Value::Number(n))) => {
                n.as_i64().map_or_else(|| show(arg), |i| format!("{i:x}"))
            }
            ('x', Some(Value::String(s))) => hex::encode(s),
            ('s' | 'v' | 't' | 'd' | 'q' | 'f' | 'x', _) => {
                let t = show(arg);
                match (verb, precision) {
                    ('s' | 'v', Some(p)) => t.chars().take(p).collect(),
                    _ => t,
                }
            }
            (other, _) => format!("%!{other}({})", show(arg)),
        };
        if tainted {
            text = crate::edge::text::printable(&text);
        }
        if let Some(w) = width {
            let w = w as usize;
            let len = text.width();
            if len < w {
                let pad = w - len;
                if left {
                    text.push_str(&" ".repeat(pad));
                } else if zero && matches!(verb, 'd' | 'f' | 'x') {
                    let (sign, digits) = match text.strip_prefix('-') {
                        Some(d) => ("-", d.to_string()),
                        None => ("", text.clone()),
                    };
                    text = format!("{sign}{}{digits}", "0".repeat(pad));
                } else {
                    text = format!("{}{text}", " ".repeat(pad));
                }
            }
        }
        out.push_str(&text);
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .zip(taints[next..].iter())
            .map(|(a, t)| {
                let s = show(a);
                if *t {
                    crate::edge::text::printable(&s)
                } else {
                    s
                }
            })
            .collect();
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    if out.len() as u64 > limit {
        return Err(format!(
            "the text would pass the {} MiB a template may make",
            MAX_WORK >> 20
        ));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
