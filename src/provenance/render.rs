//! Text output of `provenance`: a block per service (like `docker service inspect
//! --pretty`), and the `--check` table.

use super::ServiceProvenance;
use crate::edge::text::{ellipsize, printable};
use crate::render::docker_table;

/// Width at which long values (label values, images) are cut without `--no-trunc`.
const VALUE_WIDTH: usize = 72;

fn cut(s: &str, no_trunc: bool) -> String {
    if no_trunc {
        s.to_string()
    } else {
        ellipsize(s, VALUE_WIDTH)
    }
}

/// An image reference with its digest cut to 12 hex digits, as `status` shows it,
/// unless `no_trunc`.
pub fn short_image(image: &str, no_trunc: bool) -> String {
    match image.split_once("@sha256:") {
        Some((name, hex)) if !no_trunc && hex.len() > 12 => {
            format!("{name}@sha256:{}", &hex[..12])
        }
        _ => image.to_string(),
    }
}

/// Indents every line of `text` by two spaces.
fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect::<String>()
}

/// One block per service, separated by a blank line.
pub fn pretty(results: &[ServiceProvenance], no_trunc: bool) -> String {
    let mut out = String::new();
    for (i, p) in results.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&service_block(p, no_trunc));
    }
    out
}

fn line(out: &mut String, key: &str, value: &str) {
    out.push_str(&format!("{key:<15}{}\n", printable(value)));
}

fn service_block(p: &ServiceProvenance, no_trunc: bool) -> String {
    let mut out = String::new();
    line(&mut out, "Service:", &format!("{} ({})", p.name, p.id));
    let from = match &p.config {
        Some(c) => {
            let place = match c.source {
                super::ConfigSource::Engine => "config from the engine's image store",
                super::ConfigSource::Registry => "config from the registry",
            };
            match &c.platform {
                Some(pf) => format!("  ({place}, {pf})"),
                None => format!("  ({place})"),
            }
        }
        None => String::new(),
    };
    line(
        &mut out,
        "Image:",
        &format!("{}{from}", short_image(&p.image, no_trunc)),
    );
    if !p.pinned {
        line(
            &mut out,
            "",
            "not pinned to a digest (created with --no-resolve-image, or the registry was unreachable): nodes may run different images under one tag",
        );
    }
    if p.error.is_some() {
        line(
            &mut out,
            "Error:",
            "the image could not be read (the reason is on standard error)",
        );
    }
    for o in &p.container_overrides {
        line(&mut out, "Overridden:", o);
    }
    if let Some(url) = &p.source_url {
        line(&mut out, "Source:", url);
    }
    if let Some(url) = &p.commit_url {
        line(&mut out, "Commit:", url);
    }
    if p.config.is_some() {
        let fields = p.provenance.fields();
        if fields.is_empty() {
            line(
                &mut out,
                "Provenance:",
                "none: the image has no org.opencontainers.image.* or org.label-schema.* labels",
            );
        } else {
            out.push_str("Provenance:\n");
            let rows = fields
                .iter()
                .map(|(name, f)| {
                    let from = match &f.conflict {
                        Some(c) => {
                            format!("{}  CONFLICT: {}={}", f.key, c.key, cut(&c.value, no_trunc))
                        }
                        None => f.key.clone(),
                    };
                    vec![name.to_string(), cut(&f.value, no_trunc), from]
                })
                .collect();
            out.push_str(&indent(&docker_table(&["FIELD", "VALUE", "FROM"], rows)));
        }
    }
    if let Some(b) = &p.base {
        let name = match (&b.name, &b.digest) {
            (Some(n), Some(d)) => format!("{}@{d}", super::drift::split_digest(n).0),
            (Some(n), None) => n.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => String::new(),
        };
        let how = match (&b.config_source, &b.error) {
            (Some(_), _) => "its labels were read: inherited labels are marked",
            (None, Some(_)) => "its labels could not be read",
            _ => "",
        };
        line(
            &mut out,
            "Base image:",
            &format!("{}  ({how})", cut(&name, no_trunc)),
        );
        if let Some(e) = &b.error {
            line(&mut out, "", e);
        }
    }
    if !p.labels.is_empty() {
        out.push_str("Labels:\n");
        let rows = p
            .labels
            .iter()
            .map(|l| {
                let shadowed = l
                    .shadowed
                    .iter()
                    .map(|s| format!("{}: {}", s.origin.as_str(), cut(&s.value, no_trunc)))
                    .collect::<Vec<_>>()
                    .join("; ");
                let applies = match l.applies_to {
                    super::origins::Target::Containers => "containers",
                    super::origins::Target::Service => "service",
                };
                vec![
                    l.key.clone(),
                    cut(&l.value, no_trunc),
                    l.origin.as_str().to_string(),
                    applies.to_string(),
                    shadowed,
                ]
            })
            .collect();
        out.push_str(&indent(&docker_table(
            &["KEY", "VALUE", "ORIGIN", "APPLIES TO", "SHADOWED"],
            rows,
        )));
    }
    let d = &p.drift;
    if d.tasks.is_empty() {
        let what = match d.tasks_checked {
            0 => "no running tasks".to_string(),
            1 => "its 1 task runs the spec's image".to_string(),
            n => format!("all {n} tasks run the spec's image"),
        };
        line(&mut out, "Tasks:", &what);
    } else {
        line(
            &mut out,
            "Tasks:",
            &format!(
                "{} of {} tasks run an image other than the spec's:",
                d.tasks.len(),
                d.tasks_checked
            ),
        );
        let rows = d
            .tasks
            .iter()
            .map(|t| {
                vec![
                    t.name.clone(),
                    t.node.clone(),
                    short_image(&t.image, no_trunc),
                    t.state.clone(),
                ]
            })
            .collect();
        out.push_str(&indent(&docker_table(
            &["TASK", "NODE", "IMAGE", "STATE"],
            rows,
        )));
    }
    for e in &p.attestation_errors {
        line(&mut out, "Attestation:", &format!("unreadable: {e}"));
    }
    if p.attestations.is_empty() {
        if let Some(note) = &p.attestations_note {
            line(&mut out, "Attestations:", note);
        } else if p.config.is_some() {
            line(&mut out, "Attestations:", "none in the registry");
        }
    } else {
        out.push_str("Attestations:\n");
        for a in &p.attestations {
            let mut block = String::new();
            line(&mut block, "type:", &a.predicate_type);
            for (k, v) in [
                ("builder:", &a.builder_id),
                ("source:", &a.source),
                ("revision:", &a.revision),
                ("started:", &a.started),
                ("finished:", &a.finished),
            ] {
                if let Some(v) = v {
                    line(&mut block, k, v);
                }
            }
            if a.disagreements.is_empty() {
                line(&mut block, "labels:", "agree");
            } else {
                for d in &a.disagreements {
                    line(&mut block, "DISAGREES:", d);
                }
            }
            out.push_str(&indent(&block));
        }
    }
    out
}

/// `--check`: one row per service with what is missing, `ok` when nothing is.
pub fn check_table(results: &[ServiceProvenance], require: &[String], no_trunc: bool) -> String {
    let rows = results
        .iter()
        .map(|p| {
            let status = if p.error.is_some() {
                "cannot read image".to_string()
            } else if p.missing.is_empty() && p.invalid.is_empty() {
                "ok".to_string()
            } else {
                let mut parts = vec![];
                if !p.missing.is_empty() {
                    parts.push(format!("missing {}", p.missing.join(", ")));
                }
                if !p.invalid.is_empty() {
                    parts.push(format!("invalid {}", p.invalid.join("; ")));
                }
                parts.join("; ")
            };
            vec![p.name.clone(), short_image(&p.image, no_trunc), status]
        })
        .collect();
    let mut out = docker_table(&["SERVICE", "IMAGE", "PROVENANCE"], rows);
    let lacking = results
        .iter()
        .filter(|p| !p.missing.is_empty() || !p.invalid.is_empty())
        .count();
    let unreadable = results.iter().filter(|p| p.error.is_some()).count();
    let services = |n: usize| if n == 1 { "service" } else { "services" };
    out.push_str(&format!(
        "{lacking} of {} {} {} required provenance ({})",
        results.len(),
        services(results.len()),
        if lacking == 1 { "lacks" } else { "lack" },
        require.join(", ")
    ));
    if unreadable > 0 {
        out.push_str(&format!(
            "; the image of {unreadable} {} could not be read",
            services(unreadable)
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_cut_like_status_unless_no_trunc() {
        let full = format!("reg:5000/app:1@sha256:{}", "ab".repeat(32));
        assert_eq!(
            short_image(&full, false),
            "reg:5000/app:1@sha256:abababababab"
        );
        assert_eq!(short_image(&full, true), full);
        assert_eq!(short_image("app:1", false), "app:1");
    }

    #[test]
    fn hostile_values_cannot_drive_the_terminal() {
        let mut out = String::new();
        line(&mut out, "Source:", "x\u{1b}[2J\nfake: line\u{202e}");
        assert_eq!(out.lines().count(), 1, "{out:?}");
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{202e}'),
            "{out:?}"
        );
    }
}
