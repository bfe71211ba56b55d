//! Column alignment with the semantics of Go's `text/tabwriter`, as the docker CLI
//! uses it for `--format 'table ...'` (`tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`).
//!
//! Text is split into lines and each line into cells at tabs. A cell ends with its
//! tab; the last cell of a line (after its last tab) is not part of any column.
//! A column block is a run of consecutive lines that all have a tab-terminated cell
//! in that column; every cell of the block is padded with spaces to the block's
//! width, which is the widest cell plus `padding`, and at least `min_width`. Widths
//! are terminal columns (wide characters count two; Go counts runes).

use unicode_width::UnicodeWidthStr;

/// The most cells a line may have: the alignment goes one level deeper per column.
pub const MAX_COLUMNS: usize = 1000;

/// Aligns `text` (lines separated by `\n`, cells by `\t`) as Go's tabwriter does
/// with padding character `' '` and no flags. A trailing newline is kept; a last line
/// without one is written without one.
///
/// Errors (a message): a line with more than [`MAX_COLUMNS`] cells, or an aligned
/// text longer than `max_bytes` (padding can make it much longer than `text`).
pub fn align(
    text: &str,
    min_width: usize,
    padding: usize,
    max_bytes: usize,
) -> Result<String, String> {
    let ends_with_newline = text.ends_with('\n');
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines: Vec<Vec<&str>> = if text.is_empty() {
        vec![]
    } else {
        body.split('\n').map(|l| l.split('\t').collect()).collect()
    };
    if let Some((i, line)) = lines
        .iter()
        .enumerate()
        .find(|(_, l)| l.len() > MAX_COLUMNS)
    {
        return Err(format!(
            "table line {} has {} columns, more than {MAX_COLUMNS}; print fewer tabs",
            i + 1,
            line.len()
        ));
    }
    let mut out = String::with_capacity((text.len() + text.len() / 2).min(max_bytes));
    let mut widths = vec![];
    let settings = Settings {
        min_width,
        padding,
        max_bytes,
    };
    format(&lines, &mut widths, 0, lines.len(), &settings, &mut out)?;
    if !ends_with_newline && out.ends_with('\n') {
        out.pop();
    }
    Ok(out)
}

struct Settings {
    min_width: usize,
    padding: usize,
    max_bytes: usize,
}

/// Go's `(*Writer).format`: finds the column blocks of column `widths.len()` within
/// lines `line0..line1`, recursing into the next column for each block (at most
/// [`MAX_COLUMNS`] deep).
fn format(
    lines: &[Vec<&str>],
    widths: &mut Vec<usize>,
    mut line0: usize,
    line1: usize,
    settings: &Settings,
    out: &mut String,
) -> Result<(), String> {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        // A block starts here: print the lines before it.
        write_lines(lines, widths, line0, this, settings, out)?;
        line0 = this;
        let mut width = settings.min_width;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].width() + settings.padding);
            this += 1;
        }
        widths.push(width);
        format(lines, widths, line0, this, settings, out)?;
        widths.pop();
        line0 = this;
    }
    write_lines(lines, widths, line0, line1, settings, out)
}

fn write_lines(
    lines: &[Vec<&str>],
    widths: &[usize],
    line0: usize,
    line1: usize,
    settings: &Settings,
    out: &mut String,
) -> Result<(), String> {
    for line in &lines[line0..line1] {
        for (j, cell) in line.iter().enumerate() {
            let pad = widths.get(j).map_or(0, |w| w.saturating_sub(cell.width()));
            if out.len() + cell.len() + pad + 1 > settings.max_bytes {
                return Err(format!(
                    "template output too large: the aligned table passes {} MiB; print \
                     fewer or narrower columns, or use --format json",
                    settings.max_bytes >> 20
                ));
            }
            out.push_str(cell);
            out.extend(std::iter::repeat_n(' ', pad));
        }
        out.push('\n');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::align;

    fn al(text: &str, min_width: usize, padding: usize) -> String {
        align(text, min_width, padding, 1 << 20).unwrap()
    }

    #[test]
    fn columns_are_at_least_min_width_and_padded_by_three() {
        assert_eq!(
            al("NAME\tMODE\nweb\treplicated\n", 10, 3),
            "NAME      MODE\nweb       replicated\n"
        );
        assert_eq!(
            al("NAME\tX\nqueue-worker\ty\n", 10, 3),
            "NAME           X\nqueue-worker   y\n"
        );
    }

    #[test]
    fn last_cell_is_not_aligned_and_blocks_end_at_short_lines() {
        // Line 2 has no tab: it ends the block; lines 3-4 form a new one.
        let t = al("a\tb\nlonger line\nccccccccccccc\td\ne\tf\n", 4, 1);
        assert_eq!(
            t,
            format!(
                "a   b\nlonger line\nccccccccccccc d\ne{}f\n",
                " ".repeat(13)
            )
        );
    }

    #[test]
    fn nested_blocks_and_wide_characters() {
        let t = al("a\tb\tc\naa\tbbbbbb\n日本\tx\ty\n", 1, 1);
        assert_eq!(t, "a    b c\naa   bbbbbb\n日本 x y\n");
    }

    #[test]
    fn no_trailing_newline_is_kept() {
        assert_eq!(al("a\tb", 2, 1), "a b");
        assert_eq!(al("", 2, 1), "");
    }
}
