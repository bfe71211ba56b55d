//! Man pages generated from the clap definitions ([`crate::cli::command`]) with
//! clap_mangen: `docker-microscale.1` for the plugin, and `docker-microscale-COMMAND.1`
//! (`docker-microscale-rules-check.1` for nested commands) for each visible command,
//! each with the EXAMPLES of its `--help`. `install.sh` writes them with the hidden
//! `docker-microscale __man DIR`.

use std::io::Write;
use std::path::{Path, PathBuf};

/// One man page: its file name (`docker-microscale-status.1`) and roff text.
pub struct Page {
    /// The file name, section 1.
    pub file_name: String,
    /// The page in roff (man macros).
    pub text: String,
}

/// Every page, the plugin's first. Hidden commands get no page.
pub fn pages() -> Vec<Page> {
    let mut root = crate::cli::command();
    root.build();
    let mut out = vec![];
    collect(&root, "docker-microscale", "", &mut out);
    out
}

/// Adds the page of `cmd`, named `display`, then those of its visible subcommands.
/// `path` is the command's path below `docker microscale` (`rules check`), which
/// selects its examples.
fn collect(cmd: &clap::Command, display: &str, path: &str, out: &mut Vec<Page>) {
    let named = cmd
        .clone()
        .display_name(display.to_string())
        .bin_name(format!("docker microscale {path}").trim_end().to_string());
    out.push(render(named, display, path));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_path = format!("{path} {}", sub.get_name()).trim().to_string();
        collect(
            sub,
            &format!("{display}-{}", sub.get_name()),
            &sub_path,
            out,
        );
    }
}

fn render(cmd: clap::Command, display: &str, path: &str) -> Page {
    let has_options = cmd
        .get_arguments()
        .any(|a| !a.is_hide_set() && !a.is_positional());
    let has_subcommands = cmd.get_subcommands().any(|s| !s.is_hide_set());
    let man = clap_mangen::Man::new(cmd)
        .title(display.to_ascii_uppercase())
        .section("1")
        .source(format!("docker-microscale {}", env!("CARGO_PKG_VERSION")))
        .manual("Docker CLI plugins");
    let mut buf: Vec<u8> = vec![];
    // Writing to a Vec cannot fail.
    let _ = man.render_title(&mut buf);
    let _ = man.render_name_section(&mut buf);
    let _ = man.render_synopsis_section(&mut buf);
    let _ = man.render_description_section(&mut buf);
    if has_options {
        let _ = man.render_options_section(&mut buf);
    }
    if has_subcommands {
        let _ = man.render_subcommands_section(&mut buf);
    }
    let examples = crate::cli::examples(path);
    if !examples.is_empty() {
        let _ = writeln!(buf, ".SH EXAMPLES\n.nf");
        for line in examples.lines() {
            let _ = writeln!(buf, "{}", roff_line(line.trim_start()));
        }
        let _ = writeln!(buf, ".fi");
    }
    let _ = writeln!(buf, ".SH EXIT STATUS");
    let _ = writeln!(
        buf,
        "0 ok, 1 error, 2 changes pending (plan \\-\\-detailed\\-exitcode only), 125 usage error, 130 interrupted."
    );
    let _ = writeln!(buf, ".SH SEE ALSO");
    let see_also = if path.is_empty() {
        "docker(1)".to_string()
    } else {
        "docker\\-microscale(1), docker(1)".to_string()
    };
    let _ = writeln!(buf, "{see_also}");
    Page {
        file_name: format!("{display}.1"),
        text: tidy(&String::from_utf8_lossy(&buf)),
    }
}

/// clap_mangen's sections rendered one by one each repeat the `Aq` string
/// definition: keep the first. Flags such as `--no-trunc[=false]` have an empty value
/// name, shown as `[=<>]`: drop it. Headings in capitals, as man pages have them.
fn tidy(text: &str) -> String {
    let mut out = String::new();
    let mut seen = std::collections::HashSet::new();
    for line in text.lines() {
        let aq = line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq");
        if aq && !seen.insert(line.to_string()) {
            continue;
        }
        let line = line.replace("[=\\fI<>\\fR]", "");
        let line = match line.strip_prefix(".SH ") {
            Some(heading) => format!(".SH {}", heading.to_uppercase()),
            None => line,
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// One line of literal text for roff: backslashes escaped, hyphens as `\-` (so that
/// they can be copied and searched for), and a leading `.` or `'` neutralised.
fn roff_line(line: &str) -> String {
    let escaped = line.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// Writes every page into `dir` (created if missing), each replaced atomically (a
/// temporary file renamed over it). Returns the paths written. Errors name the file
/// and the reason.
pub fn write_pages(dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the man directory {}: {e}", dir.display()))?;
    let mut written = vec![];
    for page in pages() {
        let path = dir.join(&page.file_name);
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
        tmp.write_all(page.text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
        tmp.persist(&path)
            .map_err(|e| format!("cannot write {}: {}", path.display(), e.error))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_visible_command_with_examples() {
        let pages = pages();
        let names: Vec<&str> = pages.iter().map(|p| p.file_name.as_str()).collect();
        assert_eq!(names[0], "docker-microscale.1");
        for want in [
            "docker-microscale-status.1",
            "docker-microscale-provenance.1",
            "docker-microscale-badge.1",
            "docker-microscale-plan.1",
            "docker-microscale-scale.1",
            "docker-microscale-apply.1",
            "docker-microscale-metric.1",
            "docker-microscale-rules.1",
            "docker-microscale-rules-check.1",
            "docker-microscale-version.1",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert!(
            !names
                .iter()
                .any(|n| n.contains("__man") || n.contains("completion"))
        );
        let root = &pages[0].text;
        assert!(root.contains("\n.TH DOCKER-MICROSCALE 1 "), "{root}");
        assert_eq!(root.matches(".ds Aq").count(), 2, "{root}");
        assert!(root.contains("\n.SH COMMANDS\n"), "{root}");
        assert!(root.contains("docker\\-microscale\\-status(1)"), "{root}");
        let status = pages
            .iter()
            .find(|p| p.file_name == "docker-microscale-status.1")
            .unwrap();
        assert!(status.text.contains(".SH EXAMPLES"), "{}", status.text);
        assert!(status.text.contains("\\-\\-filter"), "{}", status.text);
        assert!(!status.text.contains("<>"), "{}", status.text);
        let check = pages
            .iter()
            .find(|p| p.file_name == "docker-microscale-rules-check.1")
            .unwrap();
        assert!(
            check
                .text
                .contains("docker microscale rules check \\-\\-rules rules.toml")
        );
    }

    #[test]
    fn literal_lines_are_escaped_for_roff() {
        assert_eq!(roff_line(".x"), "\\&.x");
        assert_eq!(roff_line("a\\b-c"), "a\\eb\\-c");
    }
}
