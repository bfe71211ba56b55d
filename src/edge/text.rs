//! Text made safe to print: control and bidirectional characters escaped, and long
//! text cut to a width in terminal columns.

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

/// Characters that act on a terminal or hide from the reader: control characters
/// (Unicode category Cc), every format character (Cf: the bidirectional controls
/// U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069 that reorder what a
/// terminal shows, the invisible U+00AD, U+200B..U+200D, U+2060..U+2064, U+FEFF,
/// the tag characters U+E0000..U+E007F, and the rest of Cf as of Unicode 15), the
/// line and paragraph separators (Zl, Zp: U+2028, U+2029), and the blank Hangul
/// fillers (U+115F, U+1160, U+3164, U+FFA0) that make two texts look alike.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{600}'..='\u{605}'
                | '\u{61c}'
                | '\u{6dd}'
                | '\u{70f}'
                | '\u{890}'..='\u{891}'
                | '\u{8e2}'
                | '\u{115f}'..='\u{1160}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{110bd}'
                | '\u{110cd}'
                | '\u{13430}'..='\u{1343f}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0000}'..='\u{e007f}'
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every bidirectional control (Unicode's Bidi_Control property) and the
    /// invisible format characters a hostile label could carry come out escaped; the
    /// first of these (U+061C, the tag characters, U+206A..) once went through as is.
    #[test]
    fn bidi_controls_and_invisible_format_characters_are_escaped() {
        let bidi = [
            '\u{61c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
            '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        ];
        let invisible = [
            '\u{ad}',
            '\u{180e}',
            '\u{200b}',
            '\u{2060}',
            '\u{206a}',
            '\u{206f}',
            '\u{feff}',
            '\u{fff9}',
            '\u{e0001}',
            '\u{e0041}',
            '\u{e007f}',
            '\u{115f}',
            '\u{3164}',
            '\u{ffa0}',
            '\u{1b}',
            '\u{9b}',
            '\u{2028}',
            '\u{2029}',
        ];
        for c in bidi.iter().chain(&invisible) {
            let label = format!("svc{c}x");
            let shown = printable(&label);
            assert!(
                !shown.contains(*c),
                "U+{:04X} came through: {shown:?}",
                *c as u32
            );
            assert!(
                shown.starts_with("svc\\") && shown.ends_with('x'),
                "{shown:?}"
            );
        }
        // Text people write stays as it is: accents, CJK, emoji with a variation selector.
        for ok in [
            "caf\u{e9}",
            "\u{670d}\u{52a1}",
            "\u{2764}\u{fe0f}",
            "a-b_c.d",
        ] {
            assert_eq!(printable(ok), ok);
        }
    }
}
