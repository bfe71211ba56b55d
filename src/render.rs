//! Output: Docker-style tables for people, one JSON object per line for scripts.

use std::cmp::Ordering;

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use serde::Serialize;

use crate::status::ServiceRow;

pub mod fields;
pub mod tabwriter;
pub mod template;

pub use template::Fields;

/// Output format chosen with `--format`.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// Aligned columns with a header (the default).
    Table,
    /// One JSON object per line, as `docker ... --format json` prints.
    Json,
    /// A Go template, as the docker CLI accepts it (`table {{.Name}}\t{{.Mode}}` or
    /// `{{.Name}}`), executed on each row's JSON object.
    Template(Box<template::Template>),
}

impl Format {
    /// Parses `--format` for a command whose rows have `fields`: `table` (or
    /// nothing), `json` (or exactly `{{json .}}`), or a Go template
    /// ([`template::Template::parse`]).
    ///
    /// Errors (usage errors): a template that does not parse, calls an unknown
    /// function or reads an unknown field; the message quotes the template and marks
    /// the bad part.
    pub fn parse(value: Option<&str>, fields: Fields) -> Result<Format, String> {
        match value.map(|v| v.trim_matches(' ')) {
            None | Some("") | Some("table") => Ok(Format::Table),
            Some("json") | Some("{{json .}}") => Ok(Format::Json),
            Some(other) => template::Template::parse(other, fields)
                .map(|t| Format::Template(Box::new(t)))
                .map_err(|e| e.to_string()),
        }
    }

    /// Whether this is the command's own table (`table` or no `--format`).
    pub fn is_table(&self) -> bool {
        *self == Format::Table
    }

    /// Renders `rows`: with `table` through the command's own `table` function,
    /// as JSON lines, or through the template.
    ///
    /// Errors: a template that fails on a row (a usage error: the template is wrong
    /// for this data), with the position in the template.
    pub fn render<T: Serialize>(
        &self,
        rows: &[T],
        table: impl FnOnce(&[T]) -> String,
    ) -> Result<String, crate::exit::Failure> {
        match self {
            Format::Table => Ok(table(rows)),
            Format::Json => Ok(json_lines(rows)),
            Format::Template(t) => t
                .render(rows)
                .map_err(|e| crate::exit::Failure::Usage(e.to_string())),
        }
    }
}

/// A Docker-like table: no borders, columns separated by three spaces, header in
/// capitals. The last column has no trailing padding.
pub fn docker_table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row.iter().map(|c| printable(c)).collect::<Vec<_>>());
    }
    let n = header.len();
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if i + 1 == n { 0 } else { 3 }));
        column.set_cell_alignment(CellAlignment::Left);
    }
    let mut out = String::new();
    for line in table.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Makes text safe for a terminal: control characters (escape sequences, carriage
/// returns, newlines, tabs) and bidirectional overrides are shown escaped (`\u{1b}`)
/// instead of acting on the terminal or breaking table columns.
pub fn printable(s: &str) -> String {
    if !s.chars().any(is_unsafe) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if matches!(c, '\n' | '\r' | '\t') {
                c.escape_default().to_string()
            } else if is_unsafe(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Control characters, the bidirectional formatting characters that reorder what a
/// terminal shows (U+200E, U+200F, U+202A..U+202E, U+2066..U+2069), invisible ones
/// that make two texts look alike (U+200B..U+200D, U+2060..U+2064, U+FEFF), and the
/// line and paragraph separators (U+2028, U+2029).
pub(crate) fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// Shortens `s` to `max` terminal columns (wide characters count two), ending with
/// `…` when cut.
pub fn ellipsize(s: &str, max: usize) -> String {
    use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};
    if s.width() <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut width = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if width + w > max.saturating_sub(1) {
            break;
        }
        width += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// Widest RULE shown before it is cut (unless `--no-trunc`).
const RULE_WIDTH: usize = 48;
/// Width at which SOURCE is cut without `--no-trunc`.
const SOURCE_WIDTH: usize = 48;

/// A SOURCE (`host/path@revision`) cut to `max` columns in its path, so that the
/// revision, the part that tells builds apart, stays whole (a long path once showed
/// as `github.com/docker-microscale/docker-microscale@…`). A revision longer than
/// half of `max` is cut as the rest is.
fn ellipsize_source(s: &str, max: usize) -> String {
    use unicode_width::UnicodeWidthStr;
    match s.rsplit_once('@') {
        Some((path, rev)) if s.width() > max && rev.width() < max / 2 => {
            format!("{}@{rev}", ellipsize(path, max - rev.width() - 1))
        }
        _ => ellipsize(s, max),
    }
}

/// The `status` table: NAME MODE REPLICAS IMAGE UPDATE SOURCE RULE METRIC DESIRED NODES.
pub fn status_table(rows: &[ServiceRow], no_trunc: bool) -> String {
    let body = rows
        .iter()
        .map(|r| {
            let image = if r.digest.is_empty() {
                r.image_name.clone()
            } else if no_trunc {
                format!("{}@{}", r.image_name, r.digest)
            } else {
                let short: String = r
                    .digest
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect();
                format!("{}@sha256:{short}", r.image_name)
            };
            let rule = if no_trunc {
                r.rule.clone()
            } else {
                ellipsize(&r.rule, RULE_WIDTH)
            };
            let source = match (r.source.is_empty(), no_trunc) {
                (true, _) => "-".to_string(),
                (false, true) => r.source.clone(),
                (false, false) => ellipsize_source(&r.source, SOURCE_WIDTH),
            };
            // Stale tasks on down nodes are named in REPLICAS (`ServiceRow::replicas`).
            let nodes = r.nodes.to_string();
            vec![
                r.name.clone(),
                r.mode.as_str().to_string(),
                r.replicas.clone(),
                image,
                match (&r.fight, r.update.is_empty()) {
                    (None, _) => r.update.clone(),
                    (Some(f), true) => format!("fight ({} resets)", f.resets),
                    (Some(f), false) => format!("{}, fight ({} resets)", r.update, f.resets),
                },
                source,
                rule,
                r.metric.clone().unwrap_or_else(|| "-".into()),
                r.rule_desired
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".into()),
                nodes,
            ]
        })
        .collect();
    docker_table(
        &[
            "NAME", "MODE", "REPLICAS", "IMAGE", "UPDATE", "SOURCE", "RULE", "METRIC", "DESIRED",
            "NODES",
        ],
        body,
    )
}

/// One compact JSON object per line ([`json_text`]).
pub fn json_lines<T: Serialize>(items: &[T]) -> String {
    let mut out = String::new();
    for item in items {
        out.push_str(&json_text(item));
        out.push('\n');
    }
    out
}

/// `value` as compact JSON that is safe on a terminal: serde_json writes control
/// characters below U+0020 as `\u00XX`; the other characters [`printable`] escapes
/// (DEL, the C1 controls such as U+009B, bidirectional and invisible characters)
/// are written as `\uXXXX` escapes too. They can only occur inside JSON strings, and
/// the escape decodes to the same character, so the value is unchanged. `<`, `>`
/// and `&` are not escaped (as the docker CLI's `SetEscapeHTML(false)`). Both
/// `--format json` and a template's `json` function print this text.
pub fn json_text<T: Serialize + ?Sized>(value: &T) -> String {
    // Serialising plain data structures and JSON values cannot fail.
    let text = serde_json::to_string(value).expect("serialise to JSON");
    if !text.chars().any(is_unsafe) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) {
            // Every such character is in the Basic Multilingual Plane.
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Natural order, as the docker CLI sorts names (`sortorder.NaturalLess`):
/// runs of digits compare by value, so `svc-2` sorts before `svc-10`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            // Digits before other characters.
            (Some(x), Some(y)) if x.is_ascii_digit() != y.is_ascii_digit() => {
                return if x.is_ascii_digit() {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
            }
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (&a[..da], &b[..db]);
                let ta = trim_zeros(na);
                let tb = trim_zeros(nb);
                let ord = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                if ord != Ordering::Equal {
                    return ord;
                }
                // Equal value: fewer leading zeros first.
                if da != db {
                    return da.cmp(&db);
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let n = digits.iter().take_while(|c| **c == b'0').count();
    &digits[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_like_docker() {
        let mut v = vec!["service-10-foo", "service-2-foo", "service-1-foo", "a", "B"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            ["B", "a", "service-1-foo", "service-2-foo", "service-10-foo"]
        );
        // sortorder.NaturalLess puts digits before other characters.
        let mut v = vec!["x_a", "x-a", "x10", "x1", "x1a", "x1-b", "app-db", "app1"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            ["app1", "app-db", "x1", "x1-b", "x1a", "x10", "x-a", "x_a"]
        );
    }

    #[test]
    fn table_has_docker_spacing_and_no_trailing_blanks() {
        let t = docker_table(
            &["NAME", "MODE"],
            vec![vec!["web".into(), "replicated".into()]],
        );
        assert_eq!(t, "NAME   MODE\nweb    replicated\n");
    }

    #[test]
    fn format_choices() {
        let f = fields::STATUS;
        assert_eq!(Format::parse(None, f), Ok(Format::Table));
        assert_eq!(Format::parse(Some("table"), f), Ok(Format::Table));
        assert_eq!(Format::parse(Some("json"), f), Ok(Format::Json));
        assert_eq!(Format::parse(Some("{{json .}}"), f), Ok(Format::Json));
        assert!(matches!(
            Format::parse(Some("{{.Name}}"), f),
            Ok(Format::Template(_))
        ));
        let err = Format::parse(Some("{{.Nmae}}"), f).unwrap_err();
        assert!(err.contains("did you mean .Name?"), "{err}");
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let t = docker_table(&["A"], vec![vec!["x\u{1b}[2Jy\nz\r\u{9b}\u{202e}".into()]]);
        assert!(!t.contains('\u{202e}'), "{t:?}");
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
        assert_eq!(t.lines().count(), 2, "{t:?}");
    }

    #[test]
    fn a_long_source_keeps_its_revision() {
        let s = "github.com/docker-microscale/docker-microscale@4d35d28";
        let cut = super::ellipsize_source(s, 48);
        assert_eq!(cut, "github.com/docker-microscale/docker-mic…@4d35d28");
        assert_eq!(unicode_width::UnicodeWidthStr::width(cut.as_str()), 48);
        // Short enough: untouched; no revision: cut at the end.
        assert_eq!(
            super::ellipsize_source("gitlab.com/a/b@89abcde", 48),
            "gitlab.com/a/b@89abcde"
        );
        assert_eq!(
            super::ellipsize_source(&"x".repeat(50), 48).chars().last(),
            Some('…')
        );
    }

    #[test]
    fn ellipsize_counts_columns() {
        assert_eq!(ellipsize("abcdef", 4), "abc…");
        assert_eq!(ellipsize("abc", 4), "abc");
        // Wide characters take two columns.
        assert_eq!(ellipsize("日本語テキスト", 7), "日本語…");
    }
}

#[cfg(test)]
mod invisible_tests {
    use super::printable;

    #[test]
    fn invisible_and_separator_characters_are_shown_escaped() {
        for c in [
            '\u{200b}', '\u{200d}', '\u{2028}', '\u{2029}', '\u{2060}', '\u{feff}',
        ] {
            let s = format!("3{c}");
            assert_eq!(printable(&s), format!("3{}", c.escape_unicode()));
        }
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable("plain é ✓"), "plain é ✓");
    }
}
