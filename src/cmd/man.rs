//! Man pages generated from the clap definitions ([`crate::cli::command`]) with
//! clap_mangen: `docker-microscale.1` for the plugin, and `docker-microscale-COMMAND.1`
//! (`docker-microscale-rules-check.1` for nested commands) for each visible command,
//! each with the EXAMPLES of its `--help`, the FIELDS of its `--format` rows
//! (`docs/format.md`), and the reference pages it relates to. The reference itself
//! is in section 7: one page per doc (`docker-microscale-rules.7` from
//! `docs/rules.md`, ...: [`crate::cmd::man_md::REFERENCE`]), converted from the Markdown
//! embedded in the binary; `docker-microscale.1` carries `docs/environment.md` as its
//! ENVIRONMENT and FILES. `install.sh` writes them with the hidden
//! `docker-microscale __man DIR` (section 1) and `__man --section 7 DIR`.

use std::io::Write;
use std::path::{Path, PathBuf};

/// One man page: its file name (`docker-microscale-status.1`) and roff text.
pub struct Page {
    /// The file name: `NAME.1` or `NAME.7`.
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
    if let Some(fields) = crate::cmd::man_md::section(REFERENCE_FORMAT, &format!("## `{path}`"))
        .filter(|_| !path.is_empty())
    {
        let mut r = roff::Roff::new();
        r.control("SH", ["FIELDS"]);
        r.text([roff::roman(
            "The fields of a row for --format json and Go templates (docker-microscale-format(7)); the table's columns show the same values.",
        )]);
        crate::cmd::man_md::append(&mut r, fields);
        let _ = buf.write_all(r.render().as_bytes());
    }
    if path.is_empty() {
        let env = crate::cmd::man_md::REFERENCE
            .iter()
            .find(|(n, _, _)| *n == "environment")
            .map(|(_, md, _)| *md)
            .unwrap_or_default();
        let mut r = roff::Roff::new();
        for (heading, title) in [("## Environment", "ENVIRONMENT"), ("## Files", "FILES")] {
            if let Some(text) = crate::cmd::man_md::section(env, heading) {
                r.control("SH", [title]);
                crate::cmd::man_md::append(&mut r, text);
            }
        }
        let _ = buf.write_all(r.render().as_bytes());
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
        "0 ok, 1 error, 2 changes pending (plan \\-\\-detailed\\-exitcode only), 3 another agent holds the lease (apply, run \\-\\-once), 125 usage error, 130 interrupted: docker\\-microscale\\-exit\\-codes(7)."
    );
    let _ = writeln!(buf, ".SH SEE ALSO");
    let mut see_also: Vec<String> = vec![];
    if !path.is_empty() {
        see_also.push("docker-microscale(1)".into());
    }
    let topics: Vec<&str> = if path.is_empty() {
        crate::cmd::man_md::REFERENCE
            .iter()
            .map(|(n, _, _)| *n)
            .collect()
    } else {
        crate::cli::reference_topics(path)
    };
    see_also.extend(topics.iter().map(|t| format!("docker-microscale-{t}(7)")));
    see_also.push("docker(1)".into());
    let _ = writeln!(buf, "{}", see_also.join(", ").replace('-', "\\-"));
    let _ = writeln!(
        buf,
        ".PP\nThe same reference as Markdown: https://github.com/docker\\-microscale/docker\\-microscale/tree/main/docs"
    );
    Page {
        file_name: format!("{display}.1"),
        text: tidy(&String::from_utf8_lossy(&buf)),
    }
}

/// `docs/format.md`, whose `## \`COMMAND\`` sections are the FIELDS of the command
/// pages.
const REFERENCE_FORMAT: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/format.md"));

/// The reference pages, section 7: `docker-microscale-NAME.7` for each doc of
/// [`crate::cmd::man_md::REFERENCE`], converted from its Markdown.
pub fn reference_pages() -> Vec<Page> {
    crate::cmd::man_md::REFERENCE
        .iter()
        .map(|(name, md, what)| {
            let page = format!("docker-microscale-{name}");
            let mut r = roff::Roff::new();
            r.control("SH", ["NAME"]);
            r.text([roff::roman(format!("{page} - {what}"))]);
            r.control("SH", ["DESCRIPTION"]);
            crate::cmd::man_md::append(&mut r, md);
            r.control("SH", ["SEE ALSO"]);
            let others: Vec<String> = crate::cmd::man_md::REFERENCE
                .iter()
                .filter(|(n, _, _)| n != name)
                .map(|(n, _, _)| format!("docker-microscale-{n}(7)"))
                .collect();
            r.text([roff::roman(format!(
                "docker-microscale(1), {}, docker(1). The same text as Markdown: docs/{name}.md, https://github.com/docker-microscale/docker-microscale/blob/main/docs/{name}.md",
                others.join(", ")
            ))]);
            let th = format!(
                ".TH {} 7 \"\" \"docker-microscale {}\" \"Docker CLI plugins\"\n.nh\n.ad l\n",
                page.to_ascii_uppercase(),
                env!("CARGO_PKG_VERSION")
            );
            Page {
                file_name: format!("{page}.7"),
                text: format!("{th}{}", r.render()),
            }
        })
        .collect()
}

/// clap_mangen's sections rendered one by one each repeat the `Aq` string
/// definition: keep the first. Flags such as `--no-trunc[=false]` have an empty value
/// name, shown as `[=<>]`: drop it. Headings in capitals, as man pages have them. No
/// hyphenation, left-aligned (`.nh`, `.ad l` after `.TH`).
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
        // No hyphenation and no stretched blanks: names, flags and URLs stay whole.
        if line.starts_with(".TH ") {
            out.push_str(".nh\n.ad l\n");
        }
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

/// Writes every page of `section` (1: the commands, 7: the reference) into `dir`
/// (created if missing), each replaced atomically (a temporary file renamed over
/// it). Returns the paths written. Errors: another section; a file that cannot be
/// written (named, with the reason).
pub fn write_pages(dir: &Path, section: u8) -> Result<Vec<PathBuf>, String> {
    let pages = match section {
        1 => pages(),
        7 => reference_pages(),
        other => {
            return Err(format!(
                "no man pages in section {other}: 1 (the commands) or 7 (the reference)"
            ));
        }
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the man directory {}: {e}", dir.display()))?;
    let mut written = vec![];
    for page in pages {
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

    /// Roff text as a reader searches it: `\-` as `-`, font changes dropped.
    fn searchable(roff: &str) -> String {
        roff.replace("\\-", "-")
            .replace("\\fB", "")
            .replace("\\fI", "")
            .replace("\\fR", "")
            .replace("\\*(Aq", "'")
    }

    #[test]
    fn the_reference_is_in_the_man_pages() {
        let refs = reference_pages();
        let names: Vec<&str> = refs.iter().map(|p| p.file_name.as_str()).collect();
        for want in [
            "docker-microscale-rules.7",
            "docker-microscale-metrics.7",
            "docker-microscale-agent.7",
            "docker-microscale-format.7",
            "docker-microscale-exit-codes.7",
            "docker-microscale-environment.7",
            "docker-microscale-status-json.7",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let page = |name: &str| {
            searchable(
                &refs
                    .iter()
                    .chain(pages().iter())
                    .find(|p| p.file_name == name)
                    .map(|p| p.text.clone())
                    .or_else(|| {
                        pages()
                            .into_iter()
                            .find(|p| p.file_name == name)
                            .map(|p| p.text)
                    })
                    .unwrap_or_else(|| panic!("no page {name}")),
            )
        };
        // Every rule key, as `rules check` knows them.
        let rules = page("docker-microscale-rules.7");
        assert!(
            rules.starts_with(".TH DOCKER-MICROSCALE-RULES 7 "),
            "{rules}"
        );
        for key in crate::rules::KEYS {
            assert!(
                rules.contains(&format!("microscale.{key}")),
                "rule key microscale.{key} missing from docker-microscale-rules(7)"
            );
        }
        // The plugin's page: the environment variables and files, and every
        // reference page.
        let root = page("docker-microscale.1");
        for want in [
            ".SH ENVIRONMENT",
            "DOCKER_HOST",
            "DOCKER_CONTEXT",
            "MICROSCALE_TIMEOUT",
            "MICROSCALE_SECRET_DIRS",
            "MICROSCALE_SECRET_ENV",
            ".SH FILES",
            "cli-plugins/docker-microscale",
            "docker-microscale-rules(7)",
            "docker-microscale-exit-codes(7)",
        ] {
            assert!(
                root.contains(want),
                "{want} missing from docker-microscale(1)"
            );
        }
        // A command's page: the fields of its rows (the columns) and its references.
        let status = page("docker-microscale-status.1");
        for want in [
            ".SH FIELDS",
            "RuleDesired",
            "TasksOnDownNodes",
            "docker-microscale-status-json(7)",
        ] {
            assert!(
                status.contains(want),
                "{want} missing from docker-microscale-status(1)"
            );
        }
        let run = page("docker-microscale-run.1");
        assert!(run.contains("docker-microscale-agent(7)"), "{run}");
        // Exit codes: each of them, 3 included.
        let codes = page("docker-microscale-exit-codes.7");
        for code in ["\n0\n", "\n1\n", "\n2\n", "\n3\n", "\n125\n", "\n130\n"] {
            assert!(codes.contains(code), "{code:?} missing from {codes}");
        }
        // Links between the docs name the pages.
        let metrics = page("docker-microscale-metrics.7");
        assert!(!metrics.contains("docs/rules.md"), "{metrics}");
        assert!(metrics.contains("docker-microscale-rules(7)"), "{metrics}");
    }

    #[test]
    fn literal_lines_are_escaped_for_roff() {
        assert_eq!(roff_line(".x"), "\\&.x");
        assert_eq!(roff_line("a\\b-c"), "a\\eb\\-c");
    }
}
