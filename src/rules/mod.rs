//! Scaling rules: service labels (or a rules file) into typed [`model::Rule`]s, or
//! into problems that name the service, the key, the value and what was expected.
//!
//! The label reference is `docs/rules.md`. Keys live under `microscale.`; the
//! Microscaling agent's `com.microscaling.*` labels are read too.

pub mod check;
pub mod model;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::edge::redact::{redact_label, redact_value};
use crate::swarm::labels::{LEGACY_PREFIX, PREFIX};
use model::{Fallback, MetricRule, Rule, Select, Step, StepAmount, Target};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Severity {
    /// The rule cannot be applied: `rules check` exits 1; the service is not scaled.
    #[serde(rename = "error")]
    Error,
    /// The rule applies, but something is probably not what was meant.
    #[serde(rename = "warning")]
    Warning,
}

/// One problem of one service's rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Problem {
    /// Service name.
    pub service: String,
    /// The label key (or rules-file key) at fault; `microscale.*` for the rule as a whole.
    pub key: String,
    /// Its value (secrets masked); empty when the key is missing.
    pub value: String,
    /// What was expected, and how to fix it.
    pub expected: String,
    /// Error or warning.
    pub severity: Severity,
}

/// The keys under `microscale.`, with `NAME` for a metric name; for "did you mean".
pub const KEYS: &[&str] = &[
    "enable",
    "min",
    "max",
    "metric",
    "metric.NAME",
    "target",
    "target.NAME",
    "target-utilization",
    "target-utilization.NAME",
    "tolerance",
    "scale-up.tolerance",
    "scale-down.tolerance",
    "scale-up.window",
    "scale-up.max-step",
    "scale-up.period",
    "scale-up.select",
    "scale-down.window",
    "scale-down.max-step",
    "scale-down.period",
    "scale-down.select",
    "activation",
    "idle",
    "fallback",
    "fallback.after",
    "priority",
];

/// The Microscaling agent's keys under `com.microscaling.`.
pub const LEGACY_KEYS: &[&str] = &[
    "is-scalable",
    "priority",
    "max-delta",
    "min-containers",
    "max-containers",
];

/// Metric source schemes (`microscale.metric`); see `docs/metrics.md`.
pub const SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "rabbitmq",
    "nats",
    "nsq",
    "prometheus",
    "http",
    "https",
    "engine",
];

/// Whether these service labels declare a rule: any `microscale.*` label (unless
/// `microscale.enable=false`), or `com.microscaling.is-scalable=true`.
pub fn is_managed(labels: &BTreeMap<String, String>) -> bool {
    let ours = labels.keys().any(|k| k.starts_with(PREFIX));
    if ours {
        return labels
            .get(&format!("{PREFIX}enable"))
            .is_none_or(|v| !v.trim().eq_ignore_ascii_case("false"));
    }
    labels
        .get(&format!("{LEGACY_PREFIX}is-scalable"))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The result of parsing one service's rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The rule, when it has no errors (warnings allowed).
    pub rule: Option<Rule>,
    /// Every problem found, in key order.
    pub problems: Vec<Problem>,
}

struct Ctx<'a> {
    service: &'a str,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn push(&mut self, key: &str, value: &str, expected: impl Into<String>, severity: Severity) {
        self.problems.push(Problem {
            service: self.service.to_string(),
            key: redact_value(key),
            value: redact_label(key, value),
            expected: expected.into(),
            severity,
        });
    }
    fn error(&mut self, key: &str, value: &str, expected: impl Into<String>) {
        self.push(key, value, expected, Severity::Error);
    }
}

fn parse_u64(ctx: &mut Ctx, key: &str, value: &str, what: &str) -> Option<u64> {
    match value.trim().parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) => {
            ctx.error(key, value, format!("{what}: a whole number ≥ 0"));
            None
        }
    }
}

fn parse_f64(ctx: &mut Ctx, key: &str, value: &str, what: &str) -> Option<f64> {
    match value.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => Some(n),
        _ => {
            ctx.error(key, value, format!("{what}: a number"));
            None
        }
    }
}

fn parse_duration(ctx: &mut Ctx, key: &str, value: &str) -> Option<Duration> {
    let v = value.trim();
    // A bare number is seconds.
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    match humantime::parse_duration(v) {
        Ok(d) => Some(d),
        Err(_) => {
            ctx.error(
                key,
                value,
                "a duration such as 30s, 5m, 1h30m or 500ms (a bare number is seconds)",
            );
            None
        }
    }
}

/// Checks a metric source URI's shape: `SCHEME://…` with a known scheme, and for the
/// engine source `engine://cpu` or `engine://memory`. The sources check the rest.
pub fn check_source(uri: &str) -> Result<(), String> {
    let uri = uri.trim();
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(format!(
            "a metric source URI such as redis://queue:6379/0?list=jobs (schemes: {})",
            SCHEMES.join(", ")
        ));
    };
    let scheme = scheme.to_ascii_lowercase();
    if !SCHEMES.contains(&scheme.as_str()) {
        return Err(format!(
            "a known metric source scheme ({}), not {scheme}://",
            SCHEMES.join(", ")
        ));
    }
    if rest.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a host (and path) after the scheme, without blanks".into());
    }
    crate::metrics::parse_target(uri)?;
    if scheme == "engine" {
        let what = rest.split(['?', '/']).next().unwrap_or_default();
        if !matches!(what, "cpu" | "memory") {
            return Err("engine://cpu or engine://memory".into());
        }
    }
    Ok(())
}

/// The closest known key to `key` (under `prefix`), for "did you mean".
fn suggestion(key: &str, known: &[&str]) -> Option<String> {
    let candidates = known.iter().map(|k| {
        // compare `metric.queue` with `metric.NAME` as `metric.queue`
        match (k.strip_suffix(".NAME"), key.split_once('.')) {
            (Some(base), Some((kb, name)))
                if !name.is_empty() && base.contains('-') == kb.contains('-') =>
            {
                format!("{base}.{name}")
            }
            _ => k.to_string(),
        }
    });
    candidates
        .map(|c| (strsim::jaro_winkler(key, &c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Parses the rule of service `service` (mode `mode`) from its labels.
///
/// `microscale.*` labels win over `com.microscaling.*` ones; when both are present the
/// legacy labels are ignored with a warning. Returns `rule: None` when there is an
/// error, or when the labels declare no rule.
pub fn parse_labels(
    service: &str,
    mode: crate::swarm::service::Mode,
    labels: &BTreeMap<String, String>,
) -> Parsed {
    let mut ctx = Ctx {
        service,
        problems: vec![],
    };
    let ours: BTreeMap<&str, &String> = labels
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(PREFIX).map(|s| (s, v)))
        .collect();
    let legacy: BTreeMap<&str, &String> = labels
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(LEGACY_PREFIX).map(|s| (s, v)))
        .collect();
    if !is_managed(labels) {
        // Microscaling labels that do nothing without is-scalable=true.
        if ours.is_empty() && !legacy.is_empty() && !legacy.contains_key("is-scalable")
            || legacy
                .get("is-scalable")
                .is_some_and(|v| !v.trim().eq_ignore_ascii_case("true"))
        {
            let v = legacy.get("is-scalable").map(|s| s.as_str()).unwrap_or("");
            ctx.push(
                &format!("{LEGACY_PREFIX}is-scalable"),
                v,
                "true: without com.microscaling.is-scalable=true the com.microscaling.* labels are ignored",
                Severity::Warning,
            );
        }
        return Parsed {
            rule: None,
            problems: ctx.problems,
        };
    }
    let rule = if !ours.is_empty() {
        if !legacy.is_empty() {
            ctx.push(
                &format!("{LEGACY_PREFIX}*"),
                "",
                "the com.microscaling.* labels are ignored because microscale.* labels are set; remove one set",
                Severity::Warning,
            );
        }
        parse_ours(&mut ctx, &ours)
    } else {
        parse_legacy(&mut ctx, &legacy)
    };
    if matches!(
        mode,
        crate::swarm::service::Mode::Global | crate::swarm::service::Mode::GlobalJob
    ) {
        ctx.error(
            &format!("{PREFIX}*"),
            mode.as_str(),
            "a replicated service: a global service runs one task per node and is never scaled; remove the rule or make the service replicated",
        );
    }
    if mode == crate::swarm::service::Mode::ReplicatedJob {
        ctx.push(
            &format!("{PREFIX}*"),
            mode.as_str(),
            "a replicated service to apply it: plan reports a job's rule, nothing applies it",
            Severity::Warning,
        );
    }
    let has_error = ctx.problems.iter().any(|p| p.severity == Severity::Error);
    Parsed {
        rule: if has_error { None } else { rule },
        problems: ctx.problems,
    }
}

fn parse_ours(ctx: &mut Ctx, labels: &BTreeMap<&str, &String>) -> Option<Rule> {
    let mut rule = Rule::default();
    let mut min = None;
    let mut max = None;
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    let mut bad_sources: std::collections::BTreeSet<String> = Default::default();
    // Metrics whose target is set but invalid: that error is enough, not a second
    // one saying the target is missing.
    let mut bad_targets: std::collections::BTreeSet<String> = Default::default();
    let mut targets: BTreeMap<String, (String, Target)> = BTreeMap::new();
    let mut after = None;
    let mut fallback = None;
    let mut bad_fallback = false;
    let mut idle = None;
    // (both, up, down)
    let mut tolerance: (Option<f64>, Option<f64>, Option<f64>) = (None, None, None);
    // (up, down): the label and its value, resolved once the periods are known.
    let mut step_up: Option<(String, String)> = None;
    let mut step_down: Option<(String, String)> = None;
    let mut periods = (Duration::from_secs(60), Duration::from_secs(60));
    for (&k, &v) in labels {
        let full = format!("{PREFIX}{k}");
        let named = |base: &str| -> Option<String> {
            if k == base {
                Some(String::new())
            } else {
                k.strip_prefix(base)
                    .and_then(|r| r.strip_prefix('.'))
                    .filter(|n| {
                        !n.is_empty()
                            && n.chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    })
                    .map(str::to_string)
            }
        };
        match k {
            "enable" => {
                if !matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "false") {
                    ctx.error(&full, v, "true or false");
                }
            }
            "min" => min = parse_u64(ctx, &full, v, "replicas"),
            "max" => max = parse_u64(ctx, &full, v, "replicas"),
            "tolerance" | "scale-up.tolerance" | "scale-down.tolerance" => {
                if let Some(t) = parse_f64(ctx, &full, v, "a fraction") {
                    if (0.0..1.0).contains(&t) {
                        match k {
                            "tolerance" => tolerance.0 = Some(t),
                            "scale-up.tolerance" => tolerance.1 = Some(t),
                            _ => tolerance.2 = Some(t),
                        }
                    } else {
                        ctx.error(&full, v, "a fraction from 0 to below 1, such as 0.1");
                    }
                }
            }
            "scale-up.select" | "scale-down.select" => {
                let select = match v.trim().to_ascii_lowercase().as_str() {
                    "max" => Some(Select::Max),
                    "min" => Some(Select::Min),
                    "disabled" => Some(Select::Disabled),
                    _ => None,
                };
                match select {
                    None => ctx.error(
                        &full,
                        v,
                        "max (the policy that allows the most change), min (the least) or disabled (no change in this direction)",
                    ),
                    Some(sel) if k.starts_with("scale-up") => rule.scale_up.select = sel,
                    Some(sel) => rule.scale_down.select = sel,
                }
            }
            "idle" => idle = parse_u64(ctx, &full, v, "replicas"),
            "scale-up.window" | "scale-down.window" | "scale-up.period" | "scale-down.period" => {
                if let Some(d) = parse_duration(ctx, &full, v) {
                    let policy = if k.starts_with("scale-up") {
                        &mut rule.scale_up
                    } else {
                        &mut rule.scale_down
                    };
                    if k.ends_with("window") {
                        policy.window = d;
                    } else if d.is_zero() {
                        ctx.error(&full, v, "a period longer than 0");
                    } else if k.starts_with("scale-up") {
                        periods.0 = d;
                    } else {
                        periods.1 = d;
                    }
                }
            }
            "scale-up.max-step" => step_up = Some((full.clone(), v.clone())),
            "scale-down.max-step" => step_down = Some((full.clone(), v.clone())),
            "activation" => {
                if let Some(a) = parse_f64(ctx, &full, v, "a metric value") {
                    if a < 0.0 {
                        ctx.error(&full, v, "a metric value ≥ 0");
                    } else {
                        rule.activation = Some(a);
                    }
                }
            }
            // A bad fallback is a warning, not an error: the rule's metrics still
            // scale the service, and without a valid fallback a failed read holds.
            "fallback" => match v.trim().parse::<u64>() {
                Ok(n) => fallback = Some(n),
                Err(_) => {
                    bad_fallback = true;
                    ctx.push(
                        &full,
                        v,
                        "replicas: a whole number from 0; until it is fixed there is no fallback (a failed read holds the replicas)",
                        Severity::Warning,
                    );
                }
            },
            "fallback.after" => match v.trim().parse::<u64>() {
                Ok(n) if (1..=u32::MAX as u64).contains(&n) => after = Some(n as u32),
                _ => {
                    bad_fallback = true;
                    ctx.push(
                        &full,
                        v,
                        format!(
                            "failed reads in a row: a whole number from 1 to {}; until it is fixed there is no fallback (a failed read holds the replicas)",
                            u32::MAX
                        ),
                        Severity::Warning,
                    );
                }
            },
            "priority" => {
                if let Some(n) = parse_u64(ctx, &full, v, "a priority") {
                    if n == 0 || n > u32::MAX as u64 {
                        ctx.error(&full, v, "a priority from 1 (the highest)");
                    } else {
                        rule.priority = n as u32;
                    }
                }
            }
            _ => {
                if let Some(name) = named("metric") {
                    match check_source(v) {
                        Ok(()) => {
                            sources.insert(name, v.trim().to_string());
                        }
                        Err(e) => {
                            // Its target is not an orphan: one error, not two.
                            bad_sources.insert(name);
                            ctx.error(&full, v, e)
                        }
                    }
                } else if let Some(name) = named("target-utilization") {
                    let t = parse_f64(ctx, &full, v, "percent")
                        .filter(|t| *t > 0.0 && *t <= 100.0)
                        .map(Target::Utilization);
                    if t.is_none() {
                        bad_targets.insert(name.clone());
                    }
                    set_target(
                        ctx,
                        &mut targets,
                        name,
                        &full,
                        v,
                        t,
                        "target",
                        "a utilisation in percent, above 0 and at most 100",
                    );
                } else if let Some(name) = named("target") {
                    let t = parse_f64(ctx, &full, v, "the metric value one replica can carry")
                        .filter(|t| *t > 0.0)
                        .map(Target::PerReplica);
                    if t.is_none() {
                        bad_targets.insert(name.clone());
                    }
                    set_target(
                        ctx,
                        &mut targets,
                        name,
                        &full,
                        v,
                        t,
                        "target-utilization",
                        "the metric value one replica can carry: a number above 0",
                    );
                } else if let Some(base) = ["metric.", "target.", "target-utilization."]
                    .iter()
                    .find(|b| k.starts_with(**b))
                {
                    ctx.error(
                        &full,
                        v,
                        format!(
                            "a metric name after {PREFIX}{base} of letters, digits, - and _ only"
                        ),
                    );
                } else {
                    let hint = match suggestion(k, KEYS) {
                        Some(s) => format!("a known key: did you mean {PREFIX}{s}?"),
                        None => format!("a known key (see docs/rules.md): {}", KEYS.join(", ")),
                    };
                    ctx.error(&full, v, hint);
                }
            }
        }
    }
    for (name, source) in &sources {
        match targets.get(name) {
            Some((_, target)) => rule.metrics.push(MetricRule {
                name: name.clone(),
                source: source.clone(),
                target: *target,
            }),
            None if bad_targets.contains(name) => {}
            None => ctx.error(
                &format!("{PREFIX}{}", target_key("metric", name)),
                source,
                format!(
                    "a target for this metric: set {PREFIX}{} (per replica) or {PREFIX}{} (percent)",
                    target_key("target", name),
                    target_key("target-utilization", name)
                ),
            ),
        }
    }
    for (name, (key, _)) in &targets {
        if !sources.contains_key(name) && !bad_sources.contains(name) {
            let v = labels
                .get(key.trim_start_matches(PREFIX))
                .map(|s| s.as_str())
                .unwrap_or_default();
            ctx.error(
                key,
                v,
                format!(
                    "a metric for this target: set {PREFIX}{}",
                    target_key("metric", name)
                ),
            );
        }
    }
    match max {
        None if !ctx.problems.iter().any(|p| p.key == format!("{PREFIX}max")) => ctx.error(
            &format!("{PREFIX}max"),
            "",
            "the most replicas the rule may set: add microscale.max",
        ),
        _ => {}
    }
    let min_v = min.unwrap_or(1);
    if let Some(max_v) = max {
        if min_v > max_v {
            ctx.error(
                &format!("{PREFIX}min"),
                &min_v.to_string(),
                format!("at most microscale.max ({max_v})"),
            );
        }
        rule.max = max_v;
    }
    rule.min = min_v;
    rule.scale_up.tolerance = tolerance.1.or(tolerance.0).unwrap_or(0.1);
    rule.scale_down.tolerance = tolerance.2.or(tolerance.0).unwrap_or(0.1);
    if let Some((key, value)) = &step_up {
        match parse_steps(value, periods.0) {
            Ok(s) => rule.scale_up.steps = s,
            Err(e) => ctx.error(key, value, e),
        }
    }
    if let Some((key, value)) = &step_down {
        match parse_steps(value, periods.1) {
            Ok(s) => rule.scale_down.steps = s,
            Err(e) => ctx.error(key, value, e),
        }
    }
    if let Some(i) = idle {
        if i >= min_v {
            ctx.error(
                &format!("{PREFIX}idle"),
                &i.to_string(),
                format!(
                    "replicas below microscale.min ({min_v}): idle is what runs while no metric is above its activation"
                ),
            );
        } else {
            rule.idle = Some(i);
        }
    }
    if bad_fallback {
        fallback = None;
        after = None;
    }
    if let Some(r) = fallback {
        rule.fallback = Some(Fallback {
            replicas: r,
            after_failures: after.unwrap_or(3),
        });
        if let Some(max_v) = max
            && (r < min_v || r > max_v)
        {
            ctx.push(
                &format!("{PREFIX}fallback"),
                &r.to_string(),
                format!("replicas within min {min_v} and max {max_v}; it will be clamped"),
                Severity::Warning,
            );
        }
    } else if after.is_some() {
        ctx.push(
            &format!("{PREFIX}fallback.after"),
            &after.unwrap_or_default().to_string(),
            "microscale.fallback too: without it a failed read holds the replicas",
            Severity::Warning,
        );
    }
    if rule.activation.is_some() && min_v > 0 {
        ctx.push(
            &format!("{PREFIX}activation"),
            &rule.activation.unwrap_or_default().to_string(),
            "microscale.min=0: activation only matters when the service can scale to zero",
            Severity::Warning,
        );
    }
    Some(rule)
}

/// Parses a `max-step` value: a comma list of policies, each `4` (replicas), `100%`
/// (percent of the count at the start of the period), optionally `/PERIOD` (`4/15s`);
/// without one, `period`. `none` (alone): no limit. Errors say what was expected.
pub fn parse_steps(value: &str, period: Duration) -> Result<Vec<Step>, String> {
    const EXPECTED: &str = "replicas per period (4), a percent (100%), or a comma list of them, each optionally with its own period (4/15s,100%/1m); none for no limit";
    let value = value.trim();
    if value.eq_ignore_ascii_case("none") {
        return Ok(vec![]);
    }
    let mut out = vec![];
    for part in value.split(',') {
        let part = part.trim();
        let (amount, per) = match part.split_once('/') {
            Some((a, p)) => {
                let p = p.trim();
                let d = p
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .or_else(|_| humantime::parse_duration(p))
                    .map_err(|_| format!("{EXPECTED}: {p:?} is not a duration"))?;
                if d.is_zero() {
                    return Err(format!("{EXPECTED}: a period longer than 0"));
                }
                (a.trim(), d)
            }
            None => (part, period),
        };
        let amount = if let Some(p) = amount.strip_suffix('%') {
            match p.trim().parse::<f64>() {
                Ok(x) if x.is_finite() && x > 0.0 => StepAmount::Percent(x),
                _ => return Err(format!("{EXPECTED}: a percent above 0, not {amount:?}")),
            }
        } else {
            match amount.parse::<u64>() {
                Ok(n) if n >= 1 => StepAmount::Replicas(n),
                _ => {
                    return Err(format!(
                        "{EXPECTED}: at least 1 replica per period, not {amount:?}"
                    ));
                }
            }
        };
        out.push(Step {
            amount,
            period: per,
        });
    }
    Ok(out)
}

/// Records the target of metric `name` from label `full` (value `v`): `target` is
/// `None` when the value was out of range (reported as `range`; a value that is not a
/// number was reported already). A second target for the same metric (under `other`)
/// is an error.
#[allow(clippy::too_many_arguments)]
fn set_target(
    ctx: &mut Ctx,
    targets: &mut BTreeMap<String, (String, Target)>,
    name: String,
    full: &str,
    v: &str,
    target: Option<Target>,
    other: &str,
    range: &str,
) {
    let Some(target) = target else {
        if v.trim().parse::<f64>().is_ok_and(f64::is_finite) {
            ctx.error(full, v, range);
        }
        return;
    };
    match targets.entry(name) {
        std::collections::btree_map::Entry::Occupied(e) => ctx.error(
            full,
            v,
            format!(
                "one target per metric: {PREFIX}{} is set too",
                target_key(other, e.key())
            ),
        ),
        std::collections::btree_map::Entry::Vacant(e) => {
            e.insert((full.to_string(), target));
        }
    }
}

fn target_key(base: &str, name: &str) -> String {
    if name.is_empty() {
        base.to_string()
    } else {
        format!("{base}.{name}")
    }
}

fn parse_legacy(ctx: &mut Ctx, labels: &BTreeMap<&str, &String>) -> Option<Rule> {
    let mut rule = Rule::default();
    let mut max = None;
    for (&k, &v) in labels {
        let full = format!("{LEGACY_PREFIX}{k}");
        match k {
            "is-scalable" => {}
            "min-containers" => {
                if let Some(n) = parse_u64(ctx, &full, v, "replicas") {
                    rule.min = n;
                }
            }
            "max-containers" => max = parse_u64(ctx, &full, v, "replicas"),
            "max-delta" => {
                if let Some(n) = parse_u64(ctx, &full, v, "replicas per change") {
                    if n == 0 {
                        ctx.error(&full, v, "at least 1 replica per change");
                    } else {
                        let step = vec![Step {
                            amount: StepAmount::Replicas(n),
                            period: Duration::from_secs(60),
                        }];
                        rule.scale_up.steps = step.clone();
                        rule.scale_down.steps = step;
                    }
                }
            }
            "priority" => {
                if let Some(n) = parse_u64(ctx, &full, v, "a priority") {
                    if n == 0 || n > u32::MAX as u64 {
                        ctx.error(&full, v, "a priority from 1 (the highest)");
                    } else {
                        rule.priority = n as u32;
                    }
                }
            }
            _ => {
                let hint = match suggestion(k, LEGACY_KEYS) {
                    Some(s) => format!("a Microscaling key: did you mean {LEGACY_PREFIX}{s}?"),
                    None => format!("a Microscaling key: {}", LEGACY_KEYS.join(", ")),
                };
                ctx.error(&full, v, hint);
            }
        }
    }
    match max {
        Some(m) => {
            if rule.min > m {
                ctx.error(
                    &format!("{LEGACY_PREFIX}min-containers"),
                    &rule.min.to_string(),
                    format!("at most com.microscaling.max-containers ({m})"),
                );
            }
            rule.max = m;
        }
        None => ctx.error(
            &format!("{LEGACY_PREFIX}max-containers"),
            "",
            "the most replicas: add com.microscaling.max-containers",
        ),
    }
    Some(rule)
}

/// Reads a rules file (TOML): one table per service name, with the `microscale.`
/// keys without their prefix:
///
/// ```toml
/// [web]
/// min = 2
/// max = 10
/// metric = "prometheus://prometheus:9090?query=sum(rate(http_requests_total[1m]))"
/// target = 100
/// "scale-down.window" = "10m"
/// ```
///
/// Returns service name → labels (`microscale.KEY` → value as text). Errors: the file
/// cannot be read or is not TOML of that shape (the message names the place).
pub fn read_rules_file(
    path: &std::path::Path,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
    let text = crate::edge::fsutil::read_config_text(path)
        .map_err(|e| format!("cannot read the rules file {}: {e}", path.display()))?;
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        format!(
            "the rules file {} is not valid TOML: {}",
            path.display(),
            e.to_string().trim()
        )
    })?;
    let mut out = BTreeMap::new();
    for (service, table) in doc {
        let toml::Value::Table(table) = table else {
            return Err(format!(
                "the rules file {}: `{service}` must be a table ([{service}]) of rule keys",
                path.display()
            ));
        };
        let mut labels = BTreeMap::new();
        flatten(&mut labels, "", &table, path, &service)?;
        out.insert(service, labels);
    }
    Ok(out)
}

fn flatten(
    out: &mut BTreeMap<String, String>,
    prefix: &str,
    table: &toml::Table,
    path: &std::path::Path,
    service: &str,
) -> Result<(), String> {
    for (k, v) in table {
        let key = format!("{prefix}{k}");
        let text = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Table(t) => {
                flatten(out, &format!("{key}."), t, path, service)?;
                continue;
            }
            other => {
                return Err(format!(
                    "the rules file {}: [{service}] {key} = {other}: give a string, number or boolean",
                    path.display()
                ));
            }
        };
        if out.insert(format!("{PREFIX}{key}"), text).is_some() {
            return Err(format!(
                "the rules file {}: [{service}] sets {key} twice (as a dotted key and as a quoted or nested one): keep one",
                path.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::service::Mode;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> Parsed {
        parse_labels("web", Mode::Replicated, &labels(pairs))
    }

    fn errors(p: &Parsed) -> Vec<(String, String)> {
        p.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| (p.key.clone(), p.expected.clone()))
            .collect()
    }

    #[test]
    fn a_full_rule() {
        let p = parse(&[
            ("microscale.min", "2"),
            ("microscale.max", "20"),
            ("microscale.metric", "redis://queue:6379/0?list=jobs"),
            ("microscale.target", "50"),
            ("microscale.metric.cpu", "engine://cpu"),
            ("microscale.target-utilization.cpu", "70"),
            ("microscale.tolerance", "0.2"),
            ("microscale.scale-down.window", "10m"),
            ("microscale.scale-up.max-step", "4"),
            ("microscale.scale-up.period", "30s"),
            ("microscale.fallback", "3"),
            ("microscale.fallback.after", "5"),
            ("microscale.priority", "2"),
        ]);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let r = p.rule.unwrap();
        assert_eq!((r.min, r.max, r.priority), (2, 20, 2));
        assert_eq!(r.metrics.len(), 2);
        assert_eq!(r.metrics[0].name, "");
        assert_eq!(r.metrics[0].target, Target::PerReplica(50.0));
        assert_eq!(r.metrics[1].target, Target::Utilization(70.0));
        assert_eq!(r.scale_down.window, Duration::from_secs(600));
        assert_eq!(r.scale_up.window, Duration::ZERO);
        assert_eq!(
            r.scale_up.steps,
            [Step {
                amount: StepAmount::Replicas(4),
                period: Duration::from_secs(30)
            }]
        );
        // No scale-down step declared: unlimited (HPA's default).
        assert!(r.scale_down.steps.is_empty());
        assert_eq!(
            r.fallback,
            Some(Fallback {
                replicas: 3,
                after_failures: 5
            })
        );
        assert_eq!((r.scale_up.tolerance, r.scale_down.tolerance), (0.2, 0.2));
    }

    #[test]
    fn a_bad_metric_is_one_error_not_two() {
        let p = parse(&[
            ("microscale.max", "5"),
            (
                "microscale.metric",
                "redis://q/0?list=a&secret-file=/etc/shadow",
            ),
            ("microscale.target", "50"),
        ]);
        let e = errors(&p);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "microscale.metric");
        assert!(e[0].1.contains("outside the secret directories"), "{e:?}");
    }

    #[test]
    fn errors_name_the_key_the_value_and_what_was_expected() {
        let p = parse(&[
            ("microscale.min", "5"),
            ("microscale.max", "2"),
            ("microscale.target", "0"),
            ("microscale.metric", "redis:/queue"),
            ("microscale.scale-down.windw", "5m"),
        ]);
        assert!(p.rule.is_none());
        let e = errors(&p);
        assert!(
            e.contains(&("microscale.min".into(), "at most microscale.max (2)".into())),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|(k, x)| k == "microscale.target" && x.contains("above 0")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|(k, x)| k == "microscale.metric" && x.contains("redis://")),
            "{e:?}"
        );
        assert!(
            e.contains(&(
                "microscale.scale-down.windw".into(),
                "a known key: did you mean microscale.scale-down.window?".into()
            )),
            "{e:?}"
        );
        let bad = p
            .problems
            .iter()
            .find(|p| p.key == "microscale.min")
            .unwrap();
        assert_eq!((bad.service.as_str(), bad.value.as_str()), ("web", "5"));
    }

    #[test]
    fn named_metrics_need_their_targets_and_suggestions_keep_the_name() {
        let p = parse(&[
            ("microscale.max", "4"),
            ("microscale.metric.queue", "redis://q/0?list=a"),
            ("microscale.targt.queue", "5"),
        ]);
        let e = errors(&p);
        assert!(
            e.iter()
                .any(|(k, x)| k == "microscale.metric.queue"
                    && x.contains("microscale.target.queue")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|(k, x)| k == "microscale.targt.queue"
                && x.contains("did you mean microscale.target.queue?")),
            "{e:?}"
        );
    }

    #[test]
    fn an_invalid_target_is_one_error_not_also_a_missing_one() {
        for (key, value) in [
            ("microscale.target", "-5"),
            ("microscale.target", "lots"),
            ("microscale.target-utilization", "150"),
        ] {
            let e = errors(&parse(&[
                ("microscale.max", "4"),
                ("microscale.metric", "redis://q/0?list=a"),
                (key, value),
            ]));
            assert_eq!(e.len(), 1, "{key}={value}: {e:?}");
            assert_eq!(e[0].0, key, "{e:?}");
        }
        // A metric with no target at all still says to set one.
        let e = errors(&parse(&[
            ("microscale.max", "4"),
            ("microscale.metric", "redis://q/0?list=a"),
        ]));
        assert!(
            e.iter().any(|(k, x)| k == "microscale.metric"
                && x.starts_with("a target for this metric")),
            "{e:?}"
        );
    }

    #[test]
    fn missing_max_global_services_and_bad_values() {
        let e = errors(&parse(&[("microscale.min", "1")]));
        assert!(e.iter().any(|(k, _)| k == "microscale.max"), "{e:?}");
        let g = parse_labels("agent", Mode::Global, &labels(&[("microscale.max", "3")]));
        assert!(
            errors(&g)
                .iter()
                .any(|(k, x)| k == "microscale.*" && x.contains("global service"))
        );
        for (k, v) in [
            ("microscale.min", "-1"),
            ("microscale.tolerance", "1.5"),
            ("microscale.scale-down.window", "soon"),
            ("microscale.scale-up.max-step", "0"),
            ("microscale.priority", "0"),
            ("microscale.target-utilization", "150"),
            ("microscale.metric", "engine://disk"),
            ("microscale.metric", "ftp://x/y"),
            ("microscale.enable", "yes"),
        ] {
            let p = parse(&[("microscale.max", "3"), (k, v)]);
            assert!(
                errors(&p).iter().any(|(key, _)| key == k),
                "{k}={v}: {:?}",
                p.problems
            );
        }
    }

    #[test]
    fn disabled_and_unlabelled_services_have_no_rule() {
        assert_eq!(
            parse(&[("microscale.enable", "false"), ("microscale.max", "x")]).problems,
            vec![]
        );
        assert!(parse(&[("team", "blue")]).rule.is_none());
    }

    #[test]
    fn microscaling_labels() {
        let p = parse(&[
            ("com.microscaling.is-scalable", "true"),
            ("com.microscaling.priority", "2"),
            ("com.microscaling.max-delta", "3"),
            ("com.microscaling.min-containers", "1"),
            ("com.microscaling.max-containers", "4"),
        ]);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let r = p.rule.unwrap();
        assert_eq!((r.min, r.max, r.priority), (1, 4, 2));
        let three = [Step {
            amount: StepAmount::Replicas(3),
            period: Duration::from_secs(60),
        }];
        assert_eq!(
            (&r.scale_up.steps[..], &r.scale_down.steps[..]),
            (&three[..], &three[..])
        );
        let p = parse(&[
            ("com.microscaling.is-scalable", "true"),
            ("com.microscaling.max-contaners", "4"),
        ]);
        assert!(
            errors(&p)
                .iter()
                .any(|(_, x)| x.contains("did you mean com.microscaling.max-containers?")),
            "{:?}",
            p.problems
        );
        // both conventions: ours win, with a warning
        let p = parse(&[
            ("microscale.max", "3"),
            ("com.microscaling.max-containers", "9"),
        ]);
        assert_eq!(p.rule.unwrap().max, 3);
        assert_eq!(p.problems[0].severity, Severity::Warning);
    }

    #[test]
    fn secrets_in_values_are_masked() {
        let p = parse(&[
            ("microscale.max", "3"),
            ("microscale.metric", "redis://:hunter2@q:6379/0?list=a"),
        ]);
        assert!(p.problems.iter().all(|x| !x.value.contains("hunter2")));
        let p = parse(&[
            ("microscale.max", "3"),
            ("microscale.metric", "redis://:hunter2@q:6379/0 list"),
        ]);
        let e = &p.problems[0];
        assert!(!e.value.contains("hunter2"), "{e:?}");
    }

    #[test]
    fn rules_that_would_silently_do_nothing_are_reported() {
        let e = errors(&parse(&[
            ("microscale.max", "3"),
            ("microscale.metric.a.b", "redis://q/0?list=a"),
        ]));
        assert!(
            e.iter().any(
                |(k, x)| k == "microscale.metric.a.b" && x.contains("letters, digits, - and _")
            ),
            "{e:?}"
        );
        let p = parse(&[("com.microscaling.max-containers", "4")]);
        assert!(p.rule.is_none());
        assert_eq!(p.problems[0].severity, Severity::Warning);
        assert!(p.problems[0].expected.contains("is-scalable=true"));
        let p = parse(&[
            ("com.microscaling.is-scalable", "yes"),
            ("com.microscaling.max-containers", "4"),
        ]);
        assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
        let job = parse_labels(
            "j",
            Mode::ReplicatedJob,
            &labels(&[("microscale.max", "3")]),
        );
        assert!(job.rule.is_some());
        assert!(job.problems[0].expected.contains("nothing applies it"));
    }

    #[test]
    fn step_policies_select_and_the_default_scale_up_limit() {
        let p = parse(&[
            ("microscale.max", "100"),
            ("microscale.scale-up.max-step", "4/15s, 100%"),
            ("microscale.scale-up.period", "30s"),
            ("microscale.scale-up.select", "min"),
            ("microscale.scale-down.max-step", "50%/2m"),
            ("microscale.scale-down.select", "Disabled"),
        ]);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let r = p.rule.unwrap();
        assert_eq!(
            r.scale_up.steps,
            [
                Step {
                    amount: StepAmount::Replicas(4),
                    period: Duration::from_secs(15)
                },
                Step {
                    amount: StepAmount::Percent(100.0),
                    period: Duration::from_secs(30)
                }
            ]
        );
        assert_eq!(r.scale_up.select, Select::Min);
        assert_eq!(
            r.scale_down.steps,
            [Step {
                amount: StepAmount::Percent(50.0),
                period: Duration::from_secs(120)
            }]
        );
        assert_eq!(r.scale_down.select, Select::Disabled);
        // No scale-up step declared: HPA's default, +4 or +100 % per 15 s.
        let r = parse(&[("microscale.max", "9")]).rule.unwrap();
        assert_eq!(r.scale_up.steps, model::Policy::default_up().steps);
        assert_eq!(r.scale_up.select, Select::Max);
        // `none`: no limit.
        let r = parse(&[
            ("microscale.max", "9"),
            ("microscale.scale-up.max-step", "none"),
        ])
        .rule
        .unwrap();
        assert!(r.scale_up.steps.is_empty());
        for bad in ["0", "0%", "-1", "4/0s", "4/soon", "x%", "4,", "max"] {
            let p = parse(&[
                ("microscale.max", "9"),
                ("microscale.scale-up.max-step", bad),
            ]);
            let e = errors(&p);
            assert!(
                e.iter().any(|(k, x)| k == "microscale.scale-up.max-step"
                    && x.starts_with("replicas per period (4), a percent (100%)")),
                "{bad}: {e:?}"
            );
        }
        let e = errors(&parse(&[
            ("microscale.max", "9"),
            ("microscale.scale-up.select", "most"),
        ]));
        assert!(
            e[0].1
                .starts_with("max (the policy that allows the most change)"),
            "{e:?}"
        );
    }

    #[test]
    fn tolerance_per_direction() {
        let r = parse(&[
            ("microscale.max", "9"),
            ("microscale.tolerance", "0.2"),
            ("microscale.scale-up.tolerance", "0"),
        ])
        .rule
        .unwrap();
        assert_eq!((r.scale_up.tolerance, r.scale_down.tolerance), (0.0, 0.2));
        let r = parse(&[
            ("microscale.max", "9"),
            ("microscale.scale-down.tolerance", "0.05"),
        ])
        .rule
        .unwrap();
        assert_eq!((r.scale_up.tolerance, r.scale_down.tolerance), (0.1, 0.05));
        let e = errors(&parse(&[
            ("microscale.max", "9"),
            ("microscale.scale-down.tolerance", "1"),
        ]));
        assert_eq!(e[0].0, "microscale.scale-down.tolerance");
    }

    #[test]
    fn idle_is_below_min() {
        let r = parse(&[
            ("microscale.min", "2"),
            ("microscale.max", "9"),
            ("microscale.idle", "0"),
        ])
        .rule
        .unwrap();
        assert_eq!(r.idle, Some(0));
        for (min, idle) in [("2", "2"), ("0", "0"), ("1", "-1")] {
            let p = parse(&[
                ("microscale.min", min),
                ("microscale.max", "9"),
                ("microscale.idle", idle),
            ]);
            assert!(p.rule.is_none(), "{min} {idle}");
            assert_eq!(errors(&p)[0].0, "microscale.idle");
        }
    }

    /// Issue 14: `fallback.after=-3` rejected the whole rule with "a whole number ≥
    /// 0" while 0 was rejected too. A bad fallback is a warning that states the real
    /// range; the rule (and its healthy metric) still applies, without a fallback,
    /// as KEDA does with an invalid fallback ("should return error when fallback is
    /// enabled but scaledobject has invalid parameter", pkg/fallback/fallback_test.go).
    #[test]
    fn a_bad_fallback_does_not_stop_the_rule() {
        for (key, value) in [
            ("microscale.fallback.after", "-3"),
            ("microscale.fallback.after", "0"),
            ("microscale.fallback.after", "4294967296"),
            ("microscale.fallback", "-1"),
        ] {
            let mut pairs = vec![
                ("microscale.max", "9"),
                ("microscale.metric", "redis://q:6379/0?list=jobs"),
                ("microscale.target", "5"),
                ("microscale.fallback", "3"),
                ("microscale.fallback.after", "2"),
            ];
            pairs.retain(|(k, _)| *k != key);
            pairs.push((key, value));
            let p = parse(&pairs);
            let r = p.rule.expect("the rule still applies");
            assert_eq!(r.metrics.len(), 1);
            assert_eq!(r.fallback, None, "{key}={value}");
            assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
            let w = &p.problems[0];
            assert_eq!((w.key.as_str(), w.severity), (key, Severity::Warning));
            assert!(w.expected.contains("no fallback"), "{w:?}");
            if key.ends_with("after") {
                assert!(w.expected.contains("from 1 to 4294967295"), "{w:?}");
            }
        }
    }

    #[test]
    fn rules_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("rules.toml");
        std::fs::write(
            &f,
            "[web]\nmin = 2\nmax = 10\nmetric = \"redis://q:6379/0?list=jobs\"\ntarget = 50\n\"scale-down.window\" = \"10m\"\n[web.target-utilization]\n",
        )
        .unwrap();
        let m = read_rules_file(&f).unwrap();
        let web = &m["web"];
        assert_eq!(web["microscale.min"], "2");
        assert_eq!(web["microscale.scale-down.window"], "10m");
        let p = parse_labels("web", Mode::Replicated, web);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        std::fs::write(
            &f,
            "[web]\n\"metric.cpu\" = \"engine://cpu\"\nmetric.cpu = \"engine://memory\"\n",
        )
        .unwrap();
        assert!(
            read_rules_file(&f)
                .unwrap_err()
                .contains("sets metric.cpu twice")
        );
        std::fs::write(&f, "web = 3\n").unwrap();
        assert!(read_rules_file(&f).unwrap_err().contains("must be a table"));
        std::fs::write(&f, "[web\n").unwrap();
        assert!(read_rules_file(&f).unwrap_err().contains("not valid TOML"));
    }
}
