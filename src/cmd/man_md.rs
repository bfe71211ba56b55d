//! The project's Markdown docs (`docs/*.md`, embedded in the binary) as man page
//! text: parsed with pulldown-cmark (CommonMark with tables) and written with the
//! roff crate, which escapes the text (hyphens as `\-`, backslashes, a leading `.`
//! or `'`, apostrophes).
//!
//! Mapping: `##` headings are `.SH`, deeper ones `.SS`; paragraphs `.PP`; code
//! blocks indented no-fill text; lists `.IP` items; a table is one `.TP` per row,
//! tagged with its first cell, the other cells below it (prefixed with their column's
//! header when the table has more than two columns); inline code and bold in bold,
//! emphasis in italics; a reference to another doc (`docs/rules.md`) is written as
//! its man page (`docker-microscale-rules(7)`), and an external link keeps its URL.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use roff::{Inline, Roff, bold, italic, roman};

/// The docs that are reference pages, `docker-microscale-NAME(7)`: (NAME, the
/// Markdown, the page's one-line description).
pub const REFERENCE: &[(&str, &str, &str)] = &[
    (
        "rules",
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/rules.md")),
        "scaling rules: the microscale.* label keys, rules files, rules check and plan",
    ),
    (
        "metrics",
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")),
        "metric sources, credentials, and the hosts metrics may be read from",
    ),
    (
        "agent",
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/agent.md")),
        "the run agent deployed on the swarm: image, stack, flags, lease, logs, /metrics",
    ),
    (
        "format",
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/format.md")),
        "--format: tables, JSON and Go templates, and each command's fields",
    ),
    (
        "status-json",
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status-json.md")),
        "the fields of status --format json",
    ),
    (
        "provenance-json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/provenance-json.md"
        )),
        "the fields of provenance --format json",
    ),
    (
        "scale",
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/scale.md")),
        "what scale and apply change, their checks and convergence",
    ),
    (
        "replay",
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/replay.md")),
        "replay: what a rule would have done on a metric series",
    ),
    (
        "exit-codes",
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/exit-codes.md")),
        "the exit codes of every command",
    ),
    (
        "environment",
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/environment.md")),
        "environment variables and files",
    ),
];

/// The text of `md` under the heading line `heading` (`## Files`), up to the next
/// heading of the same or a higher level; `None` when there is no such heading.
/// Code blocks are skipped when looking for headings.
pub fn section<'a>(md: &'a str, heading: &str) -> Option<&'a str> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut fenced = false;
    let mut start: Option<usize> = None;
    let mut at = 0;
    for line in md.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if trimmed.starts_with("```") {
            fenced = !fenced;
        }
        if !fenced {
            let hashes = trimmed.chars().take_while(|c| *c == '#').count();
            let is_heading = hashes > 0 && trimmed[hashes..].starts_with(' ');
            match start {
                None if trimmed == heading => start = Some(at + line.len()),
                Some(s) if is_heading && hashes <= level => return Some(&md[s..at]),
                _ => {}
            }
        }
        at += line.len();
    }
    start.map(|s| &md[s..])
}

/// Appends `md` to `roff` as man page text (see the module docs). A level-1 heading
/// is left out (it is the page's title).
pub fn append(roff: &mut Roff, md: &str) {
    let mut w = Writer {
        roff,
        cur: vec![],
        bold: 0,
        italic: 0,
        links: vec![],
        code: None,
        heading: None,
        table: None,
        lists: vec![],
        item_blocks: 0,
    };
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    for event in Parser::new_ext(md, options) {
        w.event(event);
    }
    w.flush();
}

/// A Markdown table being read: the header cells, the rows, the row being read.
#[derive(Default)]
struct Table {
    head: Vec<Vec<Inline>>,
    rows: Vec<Vec<Vec<Inline>>>,
    row: Vec<Vec<Inline>>,
    in_head: bool,
}

struct Writer<'r> {
    roff: &'r mut Roff,
    /// The text line being built.
    cur: Vec<Inline>,
    bold: usize,
    italic: usize,
    /// The destinations of the links being read.
    links: Vec<String>,
    /// A code block's text, while in one.
    code: Option<String>,
    /// A heading's level and plain text, while in one.
    heading: Option<(HeadingLevel, String)>,
    table: Option<Table>,
    /// The lists being read, innermost last: the next item's number, or `None` for
    /// a bullet list.
    lists: Vec<Option<u64>>,
    /// Blocks started in the current list item.
    item_blocks: usize,
}

impl Writer<'_> {
    fn flush(&mut self) {
        if !self.cur.is_empty() {
            let line = std::mem::take(&mut self.cur);
            self.roff.text(line);
        }
    }

    fn text(&mut self, s: &str, code: bool) {
        let s = doc_refs(s);
        if let Some((_, h)) = &mut self.heading {
            h.push_str(&s);
        } else if let Some(c) = &mut self.code {
            c.push_str(&s);
        } else if code || self.bold > 0 {
            self.cur.push(bold(s));
        } else if self.italic > 0 {
            self.cur.push(italic(s));
        } else {
            self.cur.push(roman(s));
        }
    }

    /// A block starts: a new paragraph, or the next block of a list item.
    fn block(&mut self) {
        self.flush();
        if self.table.is_some() {
            return;
        }
        if self.lists.is_empty() {
            self.roff.control("PP", []);
        } else {
            if self.item_blocks > 0 {
                self.roff.control("sp", []);
            }
            self.item_blocks += 1;
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) => self.text(&t, false),
            Event::Code(t) => self.text(&t, true),
            Event::SoftBreak => self.text(" ", false),
            Event::HardBreak if self.heading.is_none() && self.code.is_none() => {
                self.cur.push(roff::line_break());
            }
            Event::Rule => {
                self.flush();
                self.roff.control("sp", []);
            }
            _ => {}
        }
    }

    fn start(&mut self, tag: Tag) {
        match tag {
            Tag::Heading { level, .. } => {
                self.flush();
                self.heading = Some((level, String::new()));
            }
            Tag::Paragraph => self.block(),
            Tag::CodeBlock(_) => {
                self.block();
                self.code = Some(String::new());
            }
            Tag::BlockQuote(_) => {
                self.flush();
                self.roff.control("RS", ["4"]);
            }
            Tag::List(first) => {
                self.flush();
                if !self.lists.is_empty() {
                    self.roff.control("RS", []);
                }
                self.lists.push(first);
            }
            Tag::Item => {
                self.flush();
                let mark = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}.");
                        *n += 1;
                        m
                    }
                    _ => "\\(bu".to_string(),
                };
                self.roff.control("IP", [mark.as_str(), "4"]);
                self.item_blocks = 1;
            }
            Tag::Table(_) => {
                self.flush();
                self.table = Some(Table::default());
            }
            Tag::TableHead => {
                if let Some(t) = &mut self.table {
                    t.in_head = true;
                }
            }
            Tag::TableRow => {}
            Tag::TableCell => self.cur.clear(),
            Tag::Emphasis => self.italic += 1,
            Tag::Strong => self.bold += 1,
            Tag::Link { dest_url, .. } => self.links.push(dest_url.to_string()),
            Tag::Image { .. } => self.text("[figure: ", false),
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Heading(_) => {
                let Some((level, text)) = self.heading.take() else {
                    return;
                };
                let text = text.trim().to_string();
                match level {
                    HeadingLevel::H1 => {}
                    HeadingLevel::H2 => {
                        self.roff.control("SH", [control_arg(&text).as_str()]);
                    }
                    _ => {
                        self.roff.control("SS", [control_arg(&text).as_str()]);
                    }
                }
            }
            TagEnd::Paragraph => self.flush(),
            TagEnd::CodeBlock => {
                let text = self.code.take().unwrap_or_default();
                self.roff.control("RS", ["4"]).control("nf", []);
                for line in text.trim_end_matches('\n').split('\n') {
                    self.roff.text([roman(line)]);
                }
                self.roff.control("fi", []).control("RE", []);
            }
            TagEnd::BlockQuote(_) => {
                self.flush();
                self.roff.control("RE", []);
            }
            TagEnd::List(_) => {
                self.flush();
                self.lists.pop();
                if self.lists.is_empty() {
                    self.roff.control("PP", []);
                } else {
                    self.roff.control("RE", []);
                }
            }
            TagEnd::Item => self.flush(),
            TagEnd::TableHead => {
                if let Some(t) = &mut self.table {
                    t.head = std::mem::take(&mut t.row);
                    t.in_head = false;
                }
            }
            TagEnd::TableRow => {
                if let Some(t) = &mut self.table {
                    let row = std::mem::take(&mut t.row);
                    t.rows.push(row);
                }
            }
            TagEnd::TableCell => {
                let cell = std::mem::take(&mut self.cur);
                if let Some(t) = &mut self.table {
                    t.row.push(cell);
                }
            }
            TagEnd::Table => {
                if let Some(t) = self.table.take() {
                    self.write_table(t);
                }
            }
            TagEnd::Emphasis => self.italic = self.italic.saturating_sub(1),
            TagEnd::Strong => self.bold = self.bold.saturating_sub(1),
            TagEnd::Link => {
                let dest = self.links.pop().unwrap_or_default();
                if dest.starts_with("http://") || dest.starts_with("https://") {
                    self.text(&format!(" <{dest}>"), false);
                } else if let Some(page) = doc_page(&dest) {
                    self.text(&format!(" ({page})"), false);
                }
            }
            TagEnd::Image => self.text("]", false),
            _ => {}
        }
    }

    fn write_table(&mut self, t: Table) {
        let names: Vec<String> = t.head.iter().map(|c| plain(c)).collect();
        let prefixed = names.len() > 2;
        for row in t.rows {
            let mut cells = row.into_iter();
            let Some(first) = cells.next() else {
                continue;
            };
            self.roff.control("TP", []);
            self.roff.text(first);
            let mut line: Vec<Inline> = vec![];
            for (i, cell) in cells.enumerate() {
                if cell.is_empty() || plain(&cell).trim().is_empty() {
                    continue;
                }
                if !line.is_empty() {
                    line.push(roff::line_break());
                }
                if prefixed {
                    let name = names.get(i + 1).map(String::as_str).unwrap_or_default();
                    if !name.is_empty() {
                        line.push(italic(format!("{name}:")));
                        line.push(roman(" "));
                    }
                }
                line.extend(cell);
            }
            if !line.is_empty() {
                self.roff.text(line);
            }
        }
        self.roff.control("PP", []);
    }
}

/// The plain text of inline parts.
fn plain(parts: &[Inline]) -> String {
    parts
        .iter()
        .map(|p| match p {
            Inline::Roman(s) | Inline::Bold(s) | Inline::Italic(s) => s.as_str(),
            Inline::LineBreak => " ",
        })
        .collect()
}

/// A heading as one argument of a control line: the roff crate quotes arguments
/// with blanks but escapes nothing, so backslashes, hyphens and double quotes are
/// escaped here.
fn control_arg(text: &str) -> String {
    text.replace('\\', "\\e")
        .replace('-', "\\-")
        .replace('"', "\\(dq")
}

/// The man page of a link to another doc (`agent.md#fights`, `docs/rules.md`).
fn doc_page(dest: &str) -> Option<String> {
    let file = dest.split('#').next()?.rsplit('/').next()?;
    let name = file.strip_suffix(".md")?;
    REFERENCE
        .iter()
        .any(|(n, _, _)| *n == name)
        .then(|| format!("docker-microscale-{name}(7)"))
}

/// `text` with every `docs/NAME.md` of a reference page written as that page.
fn doc_refs(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("docs/") {
        return text.into();
    }
    let mut out = text.to_string();
    for (name, _, _) in REFERENCE {
        out = out.replace(
            &format!("docs/{name}.md"),
            &format!("docker-microscale-{name}(7)"),
        );
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(md: &str) -> String {
        let mut r = Roff::new();
        append(&mut r, md);
        r.to_roff()
    }

    #[test]
    fn headings_paragraphs_code_and_lists() {
        let out = render(
            "# Title\n\nSome `code` and **bold**, see `docs/rules.md`.\n\n## Keys and more\n\n```text\n.dot line\na-b\n```\n\n- one\n- two\n\n### Sub\n\n1. first\n2. second\n",
        );
        assert!(!out.contains("Title"), "{out}");
        assert!(
            out.contains(".PP\nSome \\fBcode\\fR and \\fBbold\\fR, see \\fBdocker\\-microscale\\-rules(7)\\fR.\n"),
            "{out}"
        );
        assert!(out.contains(".SH \"Keys and more\"\n"), "{out}");
        assert!(out.contains(".nf\n\\&.dot line\na\\-b\n.fi\n"), "{out}");
        assert!(
            out.contains(".IP \\(bu 4\none\n.IP \\(bu 4\ntwo\n"),
            "{out}"
        );
        assert!(out.contains(".SS Sub\n"), "{out}");
        assert!(out.contains(".IP 1. 4\nfirst\n.IP 2. 4\nsecond\n"), "{out}");
    }

    #[test]
    fn a_table_is_a_tagged_paragraph_per_row() {
        let out = render(
            "| key | default | meaning |\n|---|---|---|\n| `microscale.min` | 1 | Fewest replicas. |\n| `microscale.max` | | Most. |\n",
        );
        assert!(
            out.contains(".TP\n\\fBmicroscale.min\\fR\n\\fIdefault:\\fR 1\n.br\n\\fImeaning:\\fR Fewest replicas.\n"),
            "{out}"
        );
        // An empty cell is left out.
        assert!(
            out.contains(".TP\n\\fBmicroscale.max\\fR\n\\fImeaning:\\fR Most.\n"),
            "{out}"
        );
        // Two columns: no header names.
        let out = render("| code | meaning |\n|---|---|\n| 3 | agent active |\n");
        assert!(out.contains(".TP\n3\nagent active\n"), "{out}");
    }

    #[test]
    fn links_keep_their_address_or_name_their_page() {
        let out = render(
            "See [the site](https://example.com/x) and [Fights](agent.md#fights) and [here](#anchor).\n",
        );
        assert!(out.contains("the site <https://example.com/x>"), "{out}");
        assert!(
            out.contains("Fights (docker\\-microscale\\-agent(7))"),
            "{out}"
        );
        assert!(out.contains("and here."), "{out}");
    }

    #[test]
    fn sections_end_at_the_next_heading_of_their_level() {
        let md = "# T\n## A\na\n### A1\na1\n```\n## not a heading\n```\n## B\nb\n";
        assert_eq!(
            section(md, "## A"),
            Some("a\n### A1\na1\n```\n## not a heading\n```\n")
        );
        assert_eq!(section(md, "## B"), Some("b\n"));
        assert_eq!(section(md, "## C"), None);
    }
}
