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

/// Control characters, the bidirectional formatting characters that reorder what a
/// terminal shows (U+200E, U+200F, U+202A..U+202E, U+2066..U+2069), invisible ones
/// that make two texts look alike (U+200B..U+200D, U+2060..U+2064, U+FEFF), and the
/// line and paragraph separators (U+2028, U+2029).
pub fn is_unsafe(c: char) -> bool {
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
