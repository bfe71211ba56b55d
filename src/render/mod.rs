//! Output: Docker-style tables for people, one JSON object per line for scripts.

use std::cmp::Ordering;

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use serde::Serialize;

use crate::edge::text::{is_unsafe, printable};

pub mod badge;
pub mod fields;
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
    ) -> Result<String, crate::edge::exit::Failure> {
        match self {
            Format::Table => Ok(table(rows)),
            Format::Json => Ok(json_lines(rows)),
            Format::Template(t) => t
                .render(rows)
                .map_err(|e| crate::edge::exit::Failure::Usage(e.to_string())),
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
            // JSON escapes UTF-16 units: a character past the Basic Multilingual Plane
            // (the tag characters U+E0000..) is a surrogate pair.
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = std::fmt::Write::write_fmt(&mut out, format_args!("\\u{unit:04x}"));
            }
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
    use crate::edge::text::ellipsize;

    /// Unsafe characters past the Basic Multilingual Plane (tag characters, which
    /// can hide text in a label) are escaped as a UTF-16 surrogate pair, so the JSON
    /// still decodes to the same value; bidi and C1 controls as one escape.
    #[test]
    fn json_escapes_unsafe_characters_outside_the_bmp_as_surrogate_pairs() {
        let label = "svc\u{e0041}\u{e007f}\u{61c}\u{202e}\u{9b}x";
        let text = json_text(label);
        assert_eq!(
            text,
            "\"svc\\udb40\\udc41\\udb40\\udc7f\\u061c\\u202e\\u009bx\""
        );
        assert!(!text.chars().any(crate::edge::text::is_unsafe), "{text}");
        let back: String = serde_json::from_str(&text).unwrap();
        assert_eq!(back, label);
    }

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
    fn ellipsize_counts_columns() {
        assert_eq!(ellipsize("abcdef", 4), "abc…");
        assert_eq!(ellipsize("abc", 4), "abc");
        // Wide characters take two columns.
        assert_eq!(ellipsize("日本語テキスト", 7), "日本語…");
    }
}

#[cfg(test)]
mod invisible_tests {
    use crate::edge::text::printable;

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
