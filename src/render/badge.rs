//! MicroBadger-style SVG badges: a pure renderer, no I/O.
//!
//! A badge is a shields.io "flat" badge, 20 px high: a label on a dark grey
//! (`#555555`) left side and a value on a coloured right side, rounded corners
//! (`rx=3`, through a `clipPath`), a faint top-to-bottom gradient, and white 11 px
//! text centred in each side with a 1 px-lower shadow (`#010101` at opacity .3).
//!
//! Each side is `ceil(text width + 10)` px wide, where the text width comes from
//! [`text_width`]: a per-character advance-width table for 11 px Verdana, the
//! metrics shields.io (badge-maker / anafanafo) sizes its badges by. Text is cleaned before it is measured or written: control, bidi-override and
//! invisible characters are removed, runs of whitespace become one space, and text
//! longer than [`MAX_TEXT_CHARS`] characters is cut with an ellipsis, so that a label
//! value can neither break the XML nor blow up the badge. Everything written is
//! XML-escaped.
//!
//! The output is a standalone SVG 1.1 document (`xmlns="http://www.w3.org/2000/svg"`,
//! no XML declaration, no trailing newline) with `role="img"`, an `aria-label` and a
//! `<title>` of `label: value` for screen readers and tooltips.

use std::fmt::Write as _;

use unicode_width::UnicodeWidthChar;

/// What a badge shows: the MicroBadger kinds. This module only draws; which image
/// label supplies the value is the caller's business (the usual ones are named
/// below).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The VCS commit the image was built from (`org.opencontainers.image.revision`,
    /// formerly `org.label-schema.vcs-ref`).
    Commit,
    /// The image version (`org.opencontainers.image.version`).
    Version,
    /// The licence (`org.opencontainers.image.licenses`).
    License,
    /// Where the source is (`org.opencontainers.image.source`).
    Source,
}

impl Kind {
    /// Every kind, in display order.
    #[cfg(test)]
    pub const ALL: [Kind; 4] = [Kind::Commit, Kind::Version, Kind::License, Kind::Source];

    /// The text of the badge's left side: `"commit"`, `"version"`, `"license"` or
    /// `"source"`.
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Commit => "commit",
            Kind::Version => "version",
            Kind::License => "license",
            Kind::Source => "source",
        }
    }

    /// The colour of the badge's right side, as `#rrggbb`:
    ///
    /// | kind    | colour    | name                                   |
    /// |---------|-----------|----------------------------------------|
    /// | commit  | `#007ec6` | shields.io "blue"                      |
    /// | version | `#44cc11` | shields.io "brightgreen" (`#4c1`)      |
    /// | license | `#fe7d37` | shields.io "orange"                    |
    /// | source  | `#0e83cd` | a lighter blue, told apart from commit |
    ///
    /// They are shields.io's own badge colours, under the same white text with a
    /// dark shadow. White-on-colour contrast is 4.4:1 (commit), 4.1:1 (source),
    /// 2.6:1 (license) and 2.1:1 (version): the green and orange read as on
    /// shields.io badges but are below WCAG's 4.5:1 for small text.
    pub fn color(&self) -> &'static str {
        match self {
            Kind::Commit => "#007ec6",
            Kind::Version => "#44cc11",
            Kind::License => "#fe7d37",
            Kind::Source => "#0e83cd",
        }
    }
}

/// Badge height, px.
const HEIGHT: u32 = 20;
/// Horizontal padding of each side, px: 5 px left of the text and 5 px right of it.
const PADDING: f64 = 10.0;
/// Fill of the label (left) side.
pub const LABEL_COLOR: &str = "#555555";
/// What [`render`] uses for a `color` that is not `#rgb` or `#rrggbb`: shields.io
/// "lightgrey".
pub const FALLBACK_COLOR: &str = "#9f9f9f";
/// The most characters (Unicode scalar values) a label or value keeps; longer text is
/// cut to `MAX_TEXT_CHARS - 1` characters followed by `…`.
pub const MAX_TEXT_CHARS: usize = 64;
/// The font stack of the text.
const FONT_FAMILY: &str = "DejaVu Sans,Verdana,Geneva,sans-serif";
/// Font size of the text, px.
const FONT_SIZE: f64 = 11.0;

/// Verdana's design grid: font units per em.
const UNITS_PER_EM: f64 = 2048.0;

/// Advance widths of Verdana Regular for printable ASCII `' '..='~'` (0x20..=0x7E),
/// in font units (2048 per em); one em is [`FONT_SIZE`] px. These are the widths
/// shields.io's badge-maker measures with (e.g. `' '` is 3.87 px, digits 6.99 px).
const ADVANCE: [u16; 95] = [
    // ' ' '!' '"' '#' '$' '%' '&' ''' '(' ')' '*' '+' ',' '-' '.' '/'
    720, 806, 940, 1676, 1302, 2204, 1488, 550, 930, 930, 1302, 1676, 745, 930, 745, 930,
    // '0'..'9' (tabular), ':' ';' '<' '=' '>' '?'
    1302, 1302, 1302, 1302, 1302, 1302, 1302, 1302, 1302, 1302, 930, 930, 1676, 1676, 1676, 1117,
    // '@' 'A'..'O'
    2048, 1400, 1404, 1430, 1578, 1295, 1177, 1588, 1539, 862, 931, 1419, 1140, 1726, 1532, 1612,
    // 'P'..'Z' '[' '\' ']' '^' '_'
    1235, 1612, 1424, 1400, 1262, 1499, 1400, 2025, 1403, 1260, 1403, 930, 930, 930, 1676, 1302,
    // '`' 'a'..'o'
    1302, 1230, 1276, 1067, 1276, 1220, 720, 1276, 1296, 562, 705, 1212, 562, 1992, 1296, 1243,
    // 'p'..'z' '{' '|' '}' '~'
    1276, 1276, 874, 1067, 807, 1296, 1212, 1676, 1212, 1212, 1076, 1300, 930, 1300, 1676,
];

/// The mean advance of printable ASCII, font units: the width guessed for a narrow
/// non-ASCII character (accented Latin, Greek, Cyrillic…), about 6.77 px at 11 px.
const MEAN_ADVANCE: f64 = {
    let mut sum = 0u32;
    let mut i = 0;
    while i < ADVANCE.len() {
        sum += ADVANCE[i] as u32;
        i += 1;
    }
    sum as f64 / ADVANCE.len() as f64
};

/// Width in px of one character in 11 px Verdana.
///
/// Printable ASCII comes from [`ADVANCE`]. Other characters are guessed from their
/// terminal width (`unicode-width`): wide ones (CJK, most emoji) one full em (11 px,
/// what CJK glyphs are in practically every font), zero-width ones (combining marks)
/// nothing, the rest the mean ASCII advance. Control characters are 0.
fn advance(c: char) -> f64 {
    let units = match c {
        ' '..='~' => f64::from(ADVANCE[c as usize - 0x20]),
        _ if c.is_control() => 0.0,
        _ => match c.width() {
            Some(0) | None => 0.0,
            Some(1) => MEAN_ADVANCE,
            Some(_) => UNITS_PER_EM,
        },
    };
    units * FONT_SIZE / UNITS_PER_EM
}

/// Width in px of `text` set in 11 px Verdana (DejaVu Sans is near enough): the sum
/// of per-character advance widths, no kerning. Printable ASCII uses Verdana's own
/// advances (`"commit"` is about 41.2 px, as on shields.io); see the module docs for
/// how other characters are guessed. Never negative; never smaller for a longer
/// string with the same prefix.
pub fn text_width(text: &str) -> f64 {
    text.chars().map(advance).sum()
}

/// Renders one flat badge: `label` on a dark grey ([`LABEL_COLOR`]) left side,
/// `value` on a right side filled with `color`.
///
/// Shape (all in px): 20 high; the left side `ceil(text_width(label) + 10)` wide, the
/// right side `ceil(text_width(value) + 10)` wide, the SVG's `width` their sum. Text is
/// 11 px, centred in its side, baseline at y = 14 (its shadow at y = 15).
///
/// `label` and `value` are cleaned first: control characters, bidi controls (such as
/// U+202E RIGHT-TO-LEFT OVERRIDE) and invisible characters (zero-width space, word
/// joiner, BOM) are removed, whitespace runs become one space and the ends are
/// trimmed, and text over [`MAX_TEXT_CHARS`] characters ends in `…`. `color` must be
/// an SVG 1.1 hex colour, `#rgb` or `#rrggbb` (as [`Kind::color`] gives); anything
/// else becomes [`FALLBACK_COLOR`]. The result is a complete, well-formed SVG
/// document.
pub fn render(label: &str, value: &str, color: &str) -> String {
    let label = clean(label);
    let value = clean(value);
    let label_text = text_width(&label);
    let value_text = text_width(&value);
    let left = side_width(label_text);
    let right = side_width(value_text);
    let total = left + right;
    let color = hex_color(color).unwrap_or(FALLBACK_COLOR);
    let label_xml = escape(&label);
    let value_xml = escape(&value);
    let title = format!("{label_xml}: {value_xml}");
    // The clip path's id names its width, so badges inlined together in one HTML
    // page never clip each other with the wrong rectangle.
    let clip = format!("mb-r{total}");

    let mut svg = String::with_capacity(1024 + 4 * (label_xml.len() + value_xml.len()));
    let _ = write!(
        svg,
        concat!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="{h}" "#,
            r#"viewBox="0 0 {total} {h}" role="img" aria-label="{title}">"#,
            r#"<title>{title}</title>"#,
            r#"<defs>"#,
            r#"<linearGradient id="mb-s" x2="0" y2="100%">"#,
            r##"<stop offset="0" stop-color="#bbb" stop-opacity=".1"/>"##,
            r#"<stop offset="1" stop-opacity=".1"/>"#,
            r#"</linearGradient>"#,
            r##"<clipPath id="{clip}"><rect width="{total}" height="{h}" rx="3" fill="#fff"/></clipPath>"##,
            r#"</defs>"#,
            r#"<g clip-path="url(#{clip})">"#,
            r#"<rect width="{left}" height="{h}" fill="{label_color}"/>"#,
            r#"<rect x="{left}" width="{right}" height="{h}" fill="{color}"/>"#,
            r#"<rect width="{total}" height="{h}" fill="url(#mb-s)"/>"#,
            r#"</g>"#,
            r##"<g fill="#fff" text-anchor="middle" font-family="{font}" font-size="{size}">"##,
        ),
        total = total,
        h = HEIGHT,
        title = title,
        clip = clip,
        left = left,
        right = right,
        label_color = LABEL_COLOR,
        color = color,
        font = FONT_FAMILY,
        size = FONT_SIZE,
    );
    write_text(&mut svg, f64::from(left) / 2.0, label_text, &label_xml);
    write_text(
        &mut svg,
        f64::from(left) + f64::from(right) / 2.0,
        value_text,
        &value_xml,
    );
    svg.push_str("</g></svg>");
    svg
}

/// Width of one side, px: the text plus [`PADDING`], rounded up to a whole pixel.
fn side_width(text_px: f64) -> u32 {
    // At most MAX_TEXT_CHARS × 11 px + 10: far inside u32.
    (text_px + PADDING).ceil() as u32
}

/// Writes one text, centred on `x`: its shadow (1 px lower, dark, hidden from
/// screen readers) then the text itself. `textLength` holds the text to the width it
/// was measured at, so a renderer with a slightly different font still fits the box
/// (browsers honour it; librsvg 2.54 ignores it and draws the font's own widths).
fn write_text(svg: &mut String, x: f64, width: f64, xml: &str) {
    if xml.is_empty() {
        return;
    }
    let x = px(x);
    let len = px(width);
    let _ = write!(
        svg,
        concat!(
            r##"<text aria-hidden="true" x="{x}" y="15" fill="#010101" fill-opacity=".3" textLength="{len}">{t}</text>"##,
            r#"<text x="{x}" y="14" textLength="{len}">{t}</text>"#,
        ),
        x = x,
        len = len,
        t = xml,
    );
}

/// A length for an attribute: at most one decimal, no trailing `.0`.
fn px(v: f64) -> String {
    let tenths = (v * 10.0).round();
    if tenths % 10.0 == 0.0 {
        format!("{}", tenths / 10.0)
    } else {
        format!("{:.1}", tenths / 10.0)
    }
}

/// `color` if it is an SVG 1.1 hex colour (`#rgb` or `#rrggbb`, surrounding blanks
/// ignored).
fn hex_color(color: &str) -> Option<&str> {
    let color = color.trim();
    let digits = color.strip_prefix('#')?;
    ((digits.len() == 3 || digits.len() == 6) && digits.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(color)
}

/// Characters dropped from badge text besides control characters: bidi embeddings,
/// overrides, isolates and marks (they can make a value read backwards), and
/// invisible ones (zero-width space, word joiner, BOM) plus the XML-illegal
/// non-characters U+FFFE and U+FFFF.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFFE}'
                | '\u{FFFF}'
        )
}

/// Badge text from arbitrary input: whitespace runs (tabs and newlines included)
/// become one space and the ends are trimmed, control and invisible characters are
/// removed, and text over [`MAX_TEXT_CHARS`] characters is cut to
/// `MAX_TEXT_CHARS - 1` of them plus `…`.
fn clean(text: &str) -> String {
    let mut chars: Vec<char> = Vec::with_capacity(MAX_TEXT_CHARS + 2);
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !chars.is_empty();
            continue;
        }
        if is_invisible(c) {
            continue;
        }
        if space {
            chars.push(' ');
            space = false;
        }
        chars.push(c);
        if chars.len() > MAX_TEXT_CHARS {
            break;
        }
    }
    if chars.len() > MAX_TEXT_CHARS {
        chars.truncate(MAX_TEXT_CHARS - 1);
        while chars.last() == Some(&' ') {
            chars.pop();
        }
        chars.push('\u{2026}');
    }
    chars.into_iter().collect()
}

/// XML-escapes text for element content and attribute values alike.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `svg`, failing the test if it is not well-formed XML.
    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not well-formed: {e}\n{svg}"))
    }

    /// The (non-shadow) texts of a badge, label then value.
    fn texts(doc: &roxmltree::Document) -> Vec<String> {
        doc.descendants()
            .filter(|n| n.has_tag_name("text") && n.attribute("aria-hidden").is_none())
            .map(|n| n.text().unwrap_or_default().to_string())
            .collect()
    }

    fn attr_u32(node: roxmltree::Node, name: &str) -> u32 {
        node.attribute(name)
            .unwrap_or_else(|| panic!("no {name} on {node:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("{name} on {node:?}: {e}"))
    }

    /// (total width, left side width, right side width) of a badge, from its SVG.
    fn widths(doc: &roxmltree::Document) -> (u32, u32, u32) {
        let root = doc.root_element();
        let group = doc
            .descendants()
            .find(|n| n.has_tag_name("g") && n.attribute("clip-path").is_some())
            .expect("clipped group");
        let rects: Vec<_> = group.children().filter(|n| n.is_element()).collect();
        assert_eq!(rects.len(), 3, "left, right, gradient");
        assert_eq!(attr_u32(rects[1], "x"), attr_u32(rects[0], "width"));
        (
            attr_u32(root, "width"),
            attr_u32(rects[0], "width"),
            attr_u32(rects[1], "width"),
        )
    }

    #[test]
    fn kinds_have_microbadger_labels_and_hex_colours() {
        let labels: Vec<_> = Kind::ALL.iter().map(Kind::label).collect();
        assert_eq!(labels, ["commit", "version", "license", "source"]);
        for kind in Kind::ALL {
            assert_eq!(hex_color(kind.color()), Some(kind.color()), "{kind:?}");
            assert_eq!(kind.color().len(), 7, "{kind:?}: #rrggbb");
        }
        assert_eq!(Kind::Commit.color(), "#007ec6");
    }

    #[test]
    fn every_printable_ascii_character_has_a_width() {
        for c in ' '..='~' {
            let w = text_width(&c.to_string());
            assert!((2.5..=12.5).contains(&w), "{c:?}: {w}");
        }
    }

    #[test]
    fn width_grows_with_text_length() {
        for sample in [
            "commit",
            "v1.2.3-rc.1+build.5",
            "Apache-2.0 OR MIT",
            "https://github.com/o/r",
            "ünïcödé 日本語 😀",
        ] {
            let mut previous = 0.0;
            let mut prefix = String::new();
            for c in sample.chars() {
                prefix.push(c);
                let w = text_width(&prefix);
                assert!(w > previous, "{prefix:?}: {w} <= {previous}");
                previous = w;
            }
        }
        assert_eq!(text_width(""), 0.0);
        assert!(text_width("aaaa") > text_width("aaa"));
        assert!(
            text_width("WWW") > text_width("iii"),
            "proportional, not monospace"
        );
    }

    #[test]
    fn known_widths_match_shields_verdana_metrics() {
        // badge-maker (anafanafo, 11px Verdana): ' ' 3.87, digits 6.99, 'm' 10.70.
        let close = |text: &str, want: f64| {
            let got = text_width(text);
            assert!((got - want).abs() < 0.05, "{text:?}: {got}, want {want}");
        };
        close(" ", 3.87);
        close("0", 6.99);
        close("m", 10.70);
        close("commit", 41.16);
        close("version", 40.14);
        close("license", 37.57);
        close("source", 36.35);
        close("1.0.0", 28.98);
        // A whole badge: each side is the text rounded up plus 10 px.
        let doc_svg = render("commit", "1.0.0", Kind::Commit.color());
        let doc = parse(&doc_svg);
        assert_eq!(widths(&doc), (52 + 39, 52, 39));
    }

    #[test]
    fn non_ascii_widths_are_guessed_from_unicode_width() {
        assert!(
            (text_width("日本") - 22.0).abs() < 1e-9,
            "wide: one em each"
        );
        assert!((text_width("😀") - 11.0).abs() < 1e-9);
        let e_acute = text_width("é");
        assert!(
            (6.0..7.5).contains(&e_acute),
            "narrow: mean advance, {e_acute}"
        );
        assert_eq!(text_width("e\u{0301}"), text_width("e"), "combining mark");
        assert_eq!(
            text_width("a\u{0007}\u{0000}b"),
            text_width("ab"),
            "controls"
        );
    }

    #[test]
    fn output_is_well_formed_svg_whose_widths_add_up() {
        for kind in Kind::ALL {
            let svg = render(kind.label(), "some value 1.2.3", kind.color());
            let doc = parse(&svg);
            let root = doc.root_element();
            assert_eq!(root.tag_name().name(), "svg");
            assert_eq!(
                root.tag_name().namespace(),
                Some("http://www.w3.org/2000/svg")
            );
            assert_eq!(root.attribute("height"), Some("20"));
            assert_eq!(root.attribute("role"), Some("img"));
            let label = format!("{}: some value 1.2.3", kind.label());
            assert_eq!(root.attribute("aria-label"), Some(label.as_str()));
            let title = doc.descendants().find(|n| n.has_tag_name("title"));
            assert_eq!(title.and_then(|t| t.text()), Some(label.as_str()));

            let (total, left, right) = widths(&doc);
            assert_eq!(total, left + right);
            assert_eq!(left as f64, (text_width(kind.label()) + 10.0).ceil());
            assert_eq!(right as f64, (text_width("some value 1.2.3") + 10.0).ceil());
            let clip = doc
                .descendants()
                .find(|n| n.has_tag_name("clipPath"))
                .expect("clipPath");
            let clip_rect = clip.first_element_child().expect("clip rect");
            assert_eq!(attr_u32(clip_rect, "width"), total);
            assert_eq!(clip_rect.attribute("rx"), Some("3"));
            let clip_ref = format!("url(#{})", clip.attribute("id").expect("clip id"));
            assert!(
                doc.descendants()
                    .any(|n| n.attribute("clip-path") == Some(clip_ref.as_str()))
            );
            assert!(
                doc.descendants()
                    .any(|n| n.attribute("fill") == Some(kind.color()))
            );
            assert!(doc.descendants().any(|n| n.has_tag_name("linearGradient")));

            let group = doc
                .descendants()
                .find(|n| n.attribute("font-family").is_some())
                .expect("text group");
            assert_eq!(
                group.attribute("font-family"),
                Some("DejaVu Sans,Verdana,Geneva,sans-serif")
            );
            assert_eq!(group.attribute("font-size"), Some("11"));
            assert_eq!(texts(&doc), [kind.label(), "some value 1.2.3"]);
            let all_texts: Vec<_> = doc
                .descendants()
                .filter(|n| n.has_tag_name("text"))
                .collect();
            assert_eq!(all_texts.len(), 4, "two texts, two shadows");
            // Shadows: same x, one pixel lower, translucent.
            for pair in all_texts.chunks(2) {
                assert_eq!(pair[0].attribute("x"), pair[1].attribute("x"));
                assert_eq!(pair[0].attribute("y"), Some("15"));
                assert_eq!(pair[1].attribute("y"), Some("14"));
                assert_eq!(pair[0].attribute("fill-opacity"), Some(".3"));
            }
            // Centred in each side.
            let x = |n: roxmltree::Node| n.attribute("x").unwrap().parse::<f64>().unwrap();
            assert_eq!(x(all_texts[1]), left as f64 / 2.0);
            assert_eq!(x(all_texts[3]), left as f64 + right as f64 / 2.0);
        }
    }

    #[test]
    fn hostile_text_is_escaped_and_cleaned() {
        let hostile = "<script>alert(\"x&y\")</script>' \u{202E}gnp.exe\u{0000}\u{001b}[31m\u{7f}";
        let svg = render(hostile, hostile, "#007ec6");
        assert!(!svg.contains("<script"), "{svg}");
        assert!(svg.contains("&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&apos;"));
        assert!(!svg.contains('\u{202E}'));
        assert!(!svg.chars().any(|c| c.is_control()), "{svg:?}");
        let doc = parse(&svg);
        let want = "<script>alert(\"x&y\")</script>' gnp.exe[31m";
        assert_eq!(texts(&doc), [want, want]);
        let title = format!("{want}: {want}");
        assert_eq!(
            doc.root_element().attribute("aria-label"),
            Some(title.as_str())
        );
        // Only the elements the template writes.
        for node in doc.descendants().filter(|n| n.is_element()) {
            assert!(
                [
                    "svg",
                    "title",
                    "defs",
                    "linearGradient",
                    "stop",
                    "clipPath",
                    "rect",
                    "g",
                    "text"
                ]
                .contains(&node.tag_name().name()),
                "{node:?}"
            );
        }

        // Other bidi controls and invisible characters go too.
        let sneaky = "a\u{202A}b\u{2066}c\u{200F}d\u{200B}e\u{FEFF}f\u{2069}g";
        assert_eq!(
            texts(&parse(&render("l", sneaky, "#fff"))),
            ["l", "abcdefg"]
        );
    }

    #[test]
    fn whitespace_is_collapsed_and_trimmed() {
        let svg = render("  my\tlabel \n", "a \r\n  b\u{00A0}c ", "#007ec6");
        assert_eq!(texts(&parse(&svg)), ["my label", "a b c"]);
        // Empty or all-invisible text still gives a valid badge, with a padding-only side.
        let svg = render("", "\u{202E}\u{0000}  ", "#007ec6");
        let doc = parse(&svg);
        assert_eq!(widths(&doc), (20, 10, 10));
        assert!(texts(&doc).is_empty());
    }

    #[test]
    fn bad_colours_fall_back_to_lightgrey() {
        for bad in [
            "\"/><script>alert(1)</script>",
            "red",
            "#12",
            "#12345g",
            "#1234",
            "url(#x)",
            "",
        ] {
            let svg = render("license", "MIT", bad);
            let doc = parse(&svg);
            assert!(
                doc.descendants()
                    .any(|n| n.attribute("fill") == Some(FALLBACK_COLOR)),
                "{bad:?}"
            );
            assert!(!svg.contains("script"), "{bad:?}");
        }
        let svg = render("license", "MIT", " #ABC ");
        assert!(svg.contains(r##"fill="#ABC""##), "{svg}");
    }

    #[test]
    fn long_text_is_truncated_with_an_ellipsis() {
        let long = "x".repeat(100_000);
        let svg = render(&long, &long, "#44cc11");
        assert!(svg.len() < 4_000, "{} bytes", svg.len());
        let doc = parse(&svg);
        let want = format!("{}\u{2026}", "x".repeat(MAX_TEXT_CHARS - 1));
        assert_eq!(texts(&doc), [want.clone(), want.clone()]);
        let (_, left, right) = widths(&doc);
        assert_eq!(left as f64, (text_width(&want) + 10.0).ceil());
        assert_eq!(left, right);

        // Exactly the limit is kept whole; one more is cut.
        let exact = "y".repeat(MAX_TEXT_CHARS);
        assert_eq!(clean(&exact), exact);
        let over = format!("{exact}z");
        assert_eq!(clean(&over).chars().count(), MAX_TEXT_CHARS);
        assert!(clean(&over).ends_with('\u{2026}'));
        // No space is left before the ellipsis.
        let spaced = format!("{} tail", "w".repeat(MAX_TEXT_CHARS - 2));
        assert_eq!(
            clean(&spaced),
            format!("{}\u{2026}", "w".repeat(MAX_TEXT_CHARS - 2))
        );
        // Escaping can lengthen text, but not past a few bytes a character.
        let amps = "&".repeat(1000);
        assert!(render(&amps, &amps, "#fff").len() < 4_000);
        // Wide characters count as characters, not bytes.
        let wide = "日".repeat(200);
        assert_eq!(clean(&wide).chars().count(), MAX_TEXT_CHARS);
    }

    /// Renders a badge with `rsvg-convert` (librsvg2-bin) and checks the pixels.
    #[test]
    fn badge_renders_to_png_with_the_right_size_and_colours() {
        use std::process::Command;

        crate::testutil::require_program("rsvg-convert", "librsvg2-bin");

        let (label, value) = ("commit", "0123abc");
        let svg = render(label, value, Kind::Commit.color());
        let doc = parse(&svg);
        let (total, left, right) = widths(&doc);

        let dir = tempfile::tempdir().expect("tempdir");
        let svg_path = dir.path().join("badge.svg");
        let png_path = dir.path().join("badge.png");
        std::fs::write(&svg_path, &svg).expect("write svg");
        let out = Command::new("rsvg-convert")
            .arg("--format=png")
            .arg("--output")
            .arg(&png_path)
            .arg(&svg_path)
            .output()
            .expect("run rsvg-convert");
        assert!(
            out.status.success(),
            "rsvg-convert: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );

        let file = std::io::BufReader::new(std::fs::File::open(&png_path).expect("open png"));
        let mut decoder = png::Decoder::new(file);
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().expect("png header");
        let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
        let info = reader.next_frame(&mut buf).expect("png frame");
        assert_eq!(
            (info.width, info.height),
            (total, 20),
            "PNG size = SVG size"
        );
        let channels = match info.color_type {
            png::ColorType::Rgba => 4,
            png::ColorType::Rgb => 3,
            other => panic!("unexpected PNG colour type {other:?}"),
        };
        let pixel = |x: u32, y: u32| -> [u8; 3] {
            let i = y as usize * info.line_size + x as usize * channels;
            if channels == 4 {
                assert_eq!(buf[i + 3], 255, "opaque at ({x},{y})");
            }
            [buf[i], buf[i + 1], buf[i + 2]]
        };
        let rgb = |hex: &str| -> [u8; 3] {
            let n = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
            [(n >> 16) as u8, (n >> 8) as u8, n as u8]
        };
        // The gradient shifts colours by at most a tenth.
        let near = |got: [u8; 3], want: [u8; 3], at: (u32, u32)| {
            let off = got
                .iter()
                .zip(want)
                .map(|(g, w)| g.abs_diff(w))
                .max()
                .unwrap();
            assert!(off <= 24, "at {at:?}: got {got:?}, want about {want:?}");
        };
        let grey = rgb(LABEL_COLOR);
        let blue = rgb(Kind::Commit.color());
        // Left half: its middle column above the text, and the padding at mid-height.
        near(pixel(left / 2, 3), grey, (left / 2, 3));
        near(pixel(2, 10), grey, (2, 10));
        near(pixel(left - 2, 10), grey, (left - 2, 10));
        // Right half: the padding at mid-height either side of the text, and its middle
        // column above the text.
        near(pixel(left + 2, 10), blue, (left + 2, 10));
        near(pixel(total - 3, 10), blue, (total - 3, 10));
        near(pixel(left + right / 2, 3), blue, (left + right / 2, 3));

        // Text was drawn: white-ish pixels within each side's text box.
        let white_in = |from: u32, to: u32| {
            (from..to)
                .flat_map(|x| (4..16).map(move |y| (x, y)))
                .filter(|&(x, y)| pixel(x, y).iter().all(|&c| c >= 200))
                .count()
        };
        let label_white = white_in(5, left - 5);
        let value_white = white_in(left + 5, total - 5);
        assert!(label_white >= 10, "label text pixels: {label_white}");
        assert!(value_white >= 10, "value text pixels: {value_white}");
        // ... and none outside the text boxes.
        assert_eq!(white_in(0, 3) + white_in(total - 3, total), 0);
    }
}
