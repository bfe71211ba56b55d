//! `docker microscale rules check [SERVICE...]` (here) and `rules history` ([`history`]).

use crate::edge::exit::{Exit, Failure, print_stdout_async};
use crate::engine::Engine;
use crate::render::{Format, docker_table};
use crate::rules::check::{Checked, load_rules_flag, rule_inputs, service_name};
use crate::rules::{Problem, Severity, parse_labels};
use crate::swarm::service::Mode;
use serde::Serialize;

pub mod history;

/// One JSON line of `rules check --format json`: a [`Problem`] and where the rule came
/// from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ProblemLine<'a> {
    #[serde(flatten)]
    problem: &'a Problem,
    source: &'a str,
}

/// Runs `rules check`. Exit 0 when no rule has an error (warnings allowed), 1
/// otherwise or when a named service does not exist.
pub async fn run(engine: &Engine, args: &crate::cli::RulesCheckArgs) -> Result<Exit, Failure> {
    let format = Format::parse(args.format.as_deref(), crate::render::fields::RULES_CHECK)
        .map_err(Failure::Usage)?;
    // The file first: a bad file is an error before anything is read from the engine.
    let file = load_rules_flag(args.rules.as_deref())?;
    let snap = engine
        .snapshot(&Default::default())
        .await
        .map_err(|e| Failure::Error(e.to_string()))?;
    let all_names: Vec<String> = snap.services.iter().map(service_name).collect();
    let allow = args
        .access
        .allow(all_names.iter().cloned().collect())
        .map_err(Failure::Usage)?;
    // engine:// on a multi-node swarm needs an agent on every node.
    let agents = {
        let config = crate::store::stats::config_name(crate::store::lease::DEFAULT_NAME);
        let stored = crate::store::stats::read_stored(engine, &config)
            .await
            .ok()
            .flatten();
        crate::store::stats::missing_agents(
            &snap,
            stored.as_ref(),
            crate::edge::clock::wall_clock(),
        )
    };
    let (mut services, missing) =
        crate::swarm::service::select_services(snap.services, &args.services, false);
    services.sort_by(|a, b| crate::render::natural_cmp(&service_name(a), &service_name(b)));
    let mut checked = vec![];
    let inputs = rule_inputs(&services, file.as_ref().map(|(p, m)| (p.as_path(), m)));
    let mut managed = 0;
    for (s, labels, source) in inputs {
        let name = service_name(s);
        let mut parsed = parse_labels(&name, Mode::of(s), &labels);
        if parsed.rule.is_some()
            || parsed
                .problems
                .iter()
                .any(|p| p.severity == Severity::Error)
        {
            managed += 1;
        }
        // What plan, apply and run would refuse before connecting: a host outside
        // the allow-list, a secret sent to a host it is not bound to.
        for m in parsed.rule.iter().flat_map(|r| r.metrics.iter()) {
            let Ok(target) = crate::metrics::parse_target(&m.source) else {
                continue;
            };
            if target.scheme == "engine" {
                if let Some(why) = &agents {
                    parsed.problems.push(Problem {
                        service: name.clone(),
                        key: if m.name.is_empty() {
                            "microscale.metric".into()
                        } else {
                            format!("microscale.metric.{}", m.name)
                        },
                        value: m.source.clone(),
                        expected: why.clone(),
                        severity: Severity::Warning,
                    });
                }
                continue;
            }
            // A host outside the allow-list depends on the reader's flags (a
            // stack-local alias needs --metric-allow): a warning. A secret bound to
            // another host is never sent: an error.
            let problems = [
                (allow.check_host(&target), Severity::Warning),
                (allow.check_secret(&target), Severity::Error),
            ];
            for (e, severity) in problems
                .into_iter()
                .filter_map(|(r, s)| r.err().map(|e| (e, s)))
            {
                parsed.problems.push(Problem {
                    service: name.clone(),
                    key: if m.name.is_empty() {
                        "microscale.metric".into()
                    } else {
                        format!("microscale.metric.{}", m.name)
                    },
                    value: crate::edge::redact::redact_value(&m.source),
                    expected: e,
                    severity,
                });
            }
        }
        if source != "labels" && labels.is_empty() {
            parsed.problems.push(Problem {
                service: name.clone(),
                key: format!("[{name}]"),
                value: String::new(),
                expected: "rule keys: an empty table gives the service no rule (and its labels are not read)".into(),
                severity: Severity::Warning,
            });
        }
        checked.push(Checked {
            service: name,
            source,
            problems: parsed.problems,
        });
    }
    // Rules file entries for services that do not exist.
    if let Some((path, map)) = &file {
        for name in map.keys().filter(|n| !all_names.contains(n)) {
            checked.push(Checked {
                service: name.clone(),
                source: path.display().to_string(),
                problems: vec![Problem {
                    service: name.clone(),
                    key: format!("[{name}]"),
                    value: String::new(),
                    expected: "a service of this swarm: no service has this name (check the spelling, or remove the table)".into(),
                    severity: Severity::Warning,
                }],
            });
        }
    }
    let problems: Vec<(&Problem, &str)> = checked
        .iter()
        .flat_map(|c| c.problems.iter().map(move |p| (p, c.source.as_str())))
        .collect();
    let errors = problems
        .iter()
        .filter(|(p, _)| p.severity == Severity::Error)
        .count();
    let warnings = problems.len() - errors;
    let lines: Vec<ProblemLine> = problems
        .iter()
        .map(|(p, s)| ProblemLine {
            problem: p,
            source: s,
        })
        .collect();
    let text = format.render(&lines, |_| {
        let mut out = String::new();
        if !problems.is_empty() {
            let rows = problems
                .iter()
                .map(|(p, s)| {
                    let sev = match p.severity {
                        Severity::Error => "error",
                        Severity::Warning => "warning",
                    };
                    let key = if *s == "labels" {
                        p.key.clone()
                    } else {
                        format!("{} ({s})", p.key)
                    };
                    vec![
                        p.service.clone(),
                        sev.to_string(),
                        key,
                        crate::edge::text::ellipsize(&p.value, 60),
                        p.expected.clone(),
                    ]
                })
                .collect();
            out.push_str(&docker_table(
                &["SERVICE", "SEVERITY", "KEY", "VALUE", "EXPECTED"],
                rows,
            ));
        }
        let plural = |n: usize, w: &str| {
            if n == 1 {
                format!("{n} {w}")
            } else {
                format!("{n} {w}s")
            }
        };
        out.push_str(&format!(
            "{} with a rule: {}, {}\n",
            plural(managed, "service"),
            plural(errors, "error"),
            plural(warnings, "warning")
        ));
        out
    })?;
    let mut code = print_stdout_async(text).await?;
    if errors > 0 {
        code = Exit::Error;
    }
    for m in &missing {
        crate::edge::exit::say(m);
        code = Exit::Error;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Severity;

    #[test]
    fn rules_check_fields_are_the_json_keys() {
        let problem = Problem {
            service: "web".into(),
            key: "microscale.min".into(),
            value: "x".into(),
            expected: "a number".into(),
            severity: Severity::Error,
        };
        let line = ProblemLine {
            problem: &problem,
            source: "labels",
        };
        crate::render::fields::assert_fields_match(&crate::render::fields::RULES_CHECK, &line, &[]);
    }
}
