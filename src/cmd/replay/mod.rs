//! `docker microscale replay [SERVICE]`: backtesting. A metric series (a CSV or
//! JSON-lines file, or a Prometheus range query) goes through a rule (a live
//! service's labels, a `--rules` file's table, or `--label`s) with the same
//! [`crate::decide::decide`] and [`crate::decide::History`] as the agent; the output
//! is each step (time, metric, desired, action, reasons), a summary (scale-ups,
//! scale-downs, flaps, replica-seconds, peak, time above target) and, with `-o`, an
//! SVG chart.
//!
//! - [`series`]: the series readers;
//! - [`sim`]: the simulation and the summary (pure);
//! - [`chart`]: the chart (plotters).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::cli::ReplayArgs;
use crate::edge::exit::{Exit, Failure, print_stdout};
use crate::engine::Engine;
use crate::render::Format;
use crate::render::template::{Field, Fields, Kind};
use crate::replay::series::Series;
use crate::replay::sim::{Options, Step, Summary};
use crate::replay::{chart, series, sim};
use crate::rules::model::{Rule, Target};
use crate::rules::{Severity, parse_labels};
use crate::swarm::service::Mode;

/// Longest a Prometheus range request may take (each request of at most 10 000
/// points).
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `replay` reads a live service (and so needs the engine): a SERVICE
/// without `--rules` or `--label`.
pub fn needs_swarm(args: &ReplayArgs) -> bool {
    args.rules.is_none() && args.labels.is_empty()
}

/// Runs `replay` without an engine (`--rules` or `--label`), on its own runtime.
pub fn run_offline(args: &ReplayArgs) -> Result<Exit, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Error(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(async {
        let cancelled = crate::edge::exit::cancellation();
        tokio::select! {
            r = run(None, args) => r,
            _ = cancelled => Err(Failure::Interrupted),
        }
    });
    runtime.shutdown_background();
    result
}

/// One step of `replay --format json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StepLine {
    /// Seconds: since the Unix epoch for RFC 3339 series and Prometheus, else the
    /// series' own.
    pub time: f64,
    /// The time as printed in the table: RFC 3339 for Unix times, else seconds.
    pub at: String,
    /// The winning metric as `value / target`, when a metric was readable.
    pub metric: Option<String>,
    /// The spec's replicas before the decision.
    pub current: u64,
    /// Tasks running when the decision was made.
    pub running: u64,
    /// The replicas decided.
    pub desired: u64,
    /// `none`, `scale up`, `scale down` or `hold`.
    pub action: String,
    /// Why, in order (the decision core's reasons).
    pub reasons: Vec<String>,
}

/// The fields of `replay`'s `--format` templates (the keys of [`StepLine`]).
pub const FIELDS: Fields = Fields {
    command: "replay",
    list: &[
        scalar("Time"),
        scalar("At"),
        scalar("Metric"),
        scalar("Current"),
        scalar("Running"),
        scalar("Desired"),
        scalar("Action"),
        Field {
            name: "Reasons",
            kind: Kind::List,
            header: "",
        },
    ],
};

const fn scalar(name: &'static str) -> Field {
    Field {
        name,
        kind: Kind::Scalar,
        header: "",
    }
}

/// The last line of `replay --format json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SummaryLine<'a> {
    summary: &'a Summary,
}

/// A duration flag (`15s`, `1m30s`, a bare number of seconds), within `[min, max]`.
fn duration_flag(value: &str, flag: &str, min: Duration) -> Result<Duration, Failure> {
    let v = value.trim();
    let d = match v.parse::<f64>() {
        Ok(x) if (0.0..1e9).contains(&x) => Some(Duration::from_secs_f64(x)),
        Ok(_) => None,
        Err(_) => humantime::parse_duration(v).ok(),
    };
    d.filter(|d| *d >= min && *d <= Duration::from_secs(366 * 86400))
        .ok_or_else(|| {
            Failure::Usage(format!(
                "invalid argument \"{}\" for \"{flag}\" flag: a duration from {} to 366 days, such as 15s, 5m or 1h30m",
                crate::edge::text::printable(v),
                humantime::format_duration(min)
            ))
        })
}

/// A time flag: RFC 3339, Unix seconds, `now`, or `now-DURATION`; `now` is
/// `now_secs`. Returns Unix seconds.
fn time_flag(value: &str, flag: &str, now_secs: f64) -> Result<f64, Failure> {
    let v = value.trim();
    let bad = || {
        Failure::Usage(format!(
            "invalid argument \"{}\" for \"{flag}\" flag: an RFC 3339 time (2024-05-01T12:00:00Z), Unix seconds, now, or now-DURATION (now-7d)",
            crate::edge::text::printable(v)
        ))
    };
    if v == "now" {
        return Ok(now_secs);
    }
    if let Some(ago) = v.strip_prefix("now-") {
        let d = humantime::parse_duration(ago.trim()).map_err(|_| bad())?;
        return Ok(now_secs - d.as_secs_f64());
    }
    if let Ok(x) = v.parse::<f64>() {
        return if x.is_finite() { Ok(x) } else { Err(bad()) };
    }
    v.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond() as f64 / 1000.0)
        .map_err(|_| bad())
}

/// `--label KEY=VALUE` values as rule labels (`microscale.` added to a KEY without
/// it or `com.microscaling.`). Errors: no `=`, an empty key, a key given twice.
pub fn labels_flag(values: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for v in values {
        let Some((k, val)) = v.split_once('=') else {
            return Err(Failure::Usage(format!(
                "invalid argument \"{}\" for \"--label\" flag: give a rule key, = and its value, e.g. --label max=10 or --label microscale.target=50",
                crate::edge::text::printable(v)
            )));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(Failure::Usage(format!(
                "invalid argument \"{}\" for \"--label\" flag: the key is empty",
                crate::edge::text::printable(v)
            )));
        }
        let key = if k.starts_with("microscale.") || k.starts_with("com.microscaling.") {
            k.to_string()
        } else {
            format!("microscale.{k}")
        };
        if out.insert(key.clone(), val.to_string()).is_some() {
            return Err(Failure::Usage(format!(
                "--label {} given twice: give each key once",
                crate::edge::text::printable(&key)
            )));
        }
    }
    Ok(out)
}

/// The replayed rule, where it came from, and what the live service adds.
struct Source {
    /// Service name (or `replay` for `--label`).
    name: String,
    rule: Rule,
    /// The live service's replicas.
    replicas: Option<u64>,
    /// The live service's placement limit.
    placement: Option<crate::decide::Placement>,
    /// The swarm's service names (the default metric allow-list).
    services: std::collections::BTreeSet<String>,
}

/// Parses `labels` as the rule of `name`; warnings go to stderr, errors fail with
/// every problem listed.
fn parse_rule(
    name: &str,
    mode: Mode,
    labels: &BTreeMap<String, String>,
    origin: &str,
) -> Result<Rule, Failure> {
    let parsed = parse_labels(name, mode, labels);
    for p in parsed
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
    {
        crate::edge::exit::say(&format!(
            "warning: {} {}={}: {}",
            p.service, p.key, p.value, p.expected
        ));
    }
    match parsed.rule {
        Some(rule) => Ok(rule),
        None => {
            let errors: Vec<String> = parsed
                .problems
                .iter()
                .filter(|p| p.severity == Severity::Error)
                .map(|p| format!("  {} {:?}: expected {}", p.key, p.value, p.expected))
                .collect();
            if errors.is_empty() {
                return Err(Failure::Error(format!(
                    "{origin} declare no rule for {name} (no microscale.* label, or microscale.enable=false)"
                )));
            }
            Err(Failure::Error(format!(
                "the rule of {name} ({origin}) has {} error{}:\n{}",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" },
                errors.join("\n")
            )))
        }
    }
}

/// Finds the rule: `--label`s, a `--rules` table, or the live service's labels.
async fn source(engine: Option<&Engine>, args: &ReplayArgs) -> Result<Source, Failure> {
    let offline = |name: String, rule: Rule| Source {
        name,
        rule,
        replicas: None,
        placement: None,
        services: Default::default(),
    };
    if !args.labels.is_empty() {
        if args.rules.is_some() {
            return Err(Failure::Usage(
                "--label and --rules both give a rule: give one of them".into(),
            ));
        }
        if args.service.is_some() {
            return Err(Failure::Usage(
                "--label gives the whole rule: leave SERVICE out, or leave --label out to replay SERVICE's own labels".into(),
            ));
        }
        let labels = labels_flag(&args.labels)?;
        let rule = parse_rule("replay", Mode::Replicated, &labels, "the --label flags")?;
        return Ok(offline("replay".into(), rule));
    }
    if let Some((path, file)) = crate::rules::check::load_rules_flag(args.rules.as_deref())? {
        let shown = crate::edge::text::printable(&path.display().to_string());
        let tables: Vec<String> = file
            .keys()
            .map(|k| crate::edge::text::printable(k))
            .collect();
        let name = match &args.service {
            Some(s) => s.clone(),
            None if file.len() == 1 => file.keys().next().cloned().unwrap_or_default(),
            None => {
                return Err(Failure::Usage(format!(
                    "the rules file {shown} has {} tables ({}): name the SERVICE to replay",
                    file.len(),
                    tables.join(", ")
                )));
            }
        };
        let Some(labels) = file.get(&name) else {
            return Err(Failure::Error(format!(
                "the rules file {shown} has no table [{}]; its tables: {}",
                crate::edge::text::printable(&name),
                if tables.is_empty() {
                    "none".into()
                } else {
                    tables.join(", ")
                }
            )));
        };
        let rule = parse_rule(
            &name,
            Mode::Replicated,
            labels,
            &format!("the rules file {shown}"),
        )?;
        return Ok(offline(name, rule));
    }
    let Some(name) = &args.service else {
        return Err(Failure::Usage(
            "give the rule: a SERVICE (its labels), --rules FILE, or --label flags (--label max=10 --label target=50 ...)".into(),
        ));
    };
    let Some(engine) = engine else {
        return Err(Failure::Error(
            "replaying a live service needs the engine".into(),
        ));
    };
    let snap = engine
        .snapshot(&Default::default())
        .await
        .map_err(|e| Failure::Error(e.to_string()))?;
    let services = snap
        .services
        .iter()
        .map(crate::rules::check::service_name)
        .collect();
    let (found, missing) = crate::swarm::service::select_services(
        snap.services.clone(),
        std::slice::from_ref(name),
        false,
    );
    if let Some(m) = missing.first() {
        return Err(Failure::Error(format!(
            "no such service: {}",
            crate::edge::text::printable(m)
        )));
    }
    let Some(svc) = found.first() else {
        return Err(Failure::Error(format!(
            "no such service: {}",
            crate::edge::text::printable(name)
        )));
    };
    let svc_name = crate::rules::check::service_name(svc);
    let mode = Mode::of(svc);
    if mode != Mode::Replicated {
        return Err(Failure::Error(format!(
            "{} is a {} service: only replicated services are scaled, so there is nothing to replay",
            crate::edge::text::printable(&svc_name),
            mode.as_str()
        )));
    }
    let labels = crate::rules::check::service_labels(svc);
    let rule = parse_rule(&svc_name, mode, &labels, "its labels")?;
    let obs = crate::plan::observe(svc, &snap, vec![], crate::edge::clock::wall_clock());
    Ok(Source {
        name: svc_name,
        rule,
        replicas: Some(obs.replicas),
        placement: obs.placement,
        services,
    })
}

/// The `prometheus://` URI of `--prometheus URL --query Q`.
fn prometheus_uri(url: &str, query: &str) -> Result<String, Failure> {
    let url = url.trim();
    let bad = |why: &str| {
        Failure::Usage(format!(
            "invalid argument \"{}\" for \"--prometheus\" flag: {why}",
            crate::edge::redact::redact_value(&crate::edge::text::printable(url))
        ))
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("give http://HOST:PORT[/PREFIX], https://… or prometheus://…"))?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "http" | "prometheus" => false,
        "https" => true,
        _ => return Err(bad("the scheme is http, https or prometheus")),
    };
    let mut uri = reqwest::Url::parse(&format!("prometheus://{rest}"))
        .map_err(|e| bad(&format!("not a URL ({e})")))?;
    if uri.query_pairs().any(|(k, _)| k == "query") {
        return Err(bad("give the query with --query, not in the URL"));
    }
    {
        let mut q = uri.query_pairs_mut();
        q.append_pair("query", query);
        if tls {
            q.append_pair("tls", "true");
        }
    }
    Ok(uri.to_string())
}

/// Reads the series: `--series FILE` or `--prometheus`.
async fn read_series(
    args: &ReplayArgs,
    services: std::collections::BTreeSet<String>,
) -> Result<Series, Failure> {
    match (&args.series, &args.prometheus) {
        (Some(_), Some(_)) => Err(Failure::Usage(
            "--series and --prometheus both give the series: give one of them".into(),
        )),
        (None, None) => Err(Failure::Usage(
            "give the series: --series FILE (CSV or JSON lines) or --prometheus URL --query PROMQL --start TIME".into(),
        )),
        (Some(path), None) => {
            for (flag, set) in [
                ("--query", args.query.is_some()),
                ("--start", args.start.is_some()),
                ("--end", args.end.is_some()),
                ("--step", args.step.is_some()),
            ] {
                if set {
                    return Err(Failure::Usage(format!("{flag} goes with --prometheus, not --series")));
                }
            }
            series::read_file(path).map_err(Failure::Error)
        }
        (None, Some(url)) => {
            let query = args.query.as_deref().filter(|q| !q.trim().is_empty()).ok_or_else(|| {
                Failure::Usage("--prometheus needs --query PROMQL (a query that returns one series)".into())
            })?;
            let start = args.start.as_deref().ok_or_else(|| {
                Failure::Usage("--prometheus needs --start TIME (RFC 3339, Unix seconds or now-7d)".into())
            })?;
            let now = crate::edge::clock::wall_clock().floor();
            let start = time_flag(start, "--start", now)?;
            let end = match args.end.as_deref() {
                Some(e) => time_flag(e, "--end", now)?,
                None => now,
            };
            let step = match args.step.as_deref() {
                Some(s) => duration_flag(s, "--step", Duration::from_millis(1))?,
                None => Duration::from_secs(15),
            };
            let uri = prometheus_uri(url, query)?;
            let allow = args.access.allow(services).map_err(Failure::Usage)?;
            let points = crate::metrics::range::read_range(
                &uri,
                &allow,
                start,
                end,
                step.as_secs_f64(),
                PROMETHEUS_TIMEOUT,
            )
            .await
            .map_err(|e| Failure::Error(format!("cannot read the series from Prometheus: {e}")))?;
            Ok(Series {
                points: points
                    .into_iter()
                    .map(|(time, value)| series::Point {
                        time,
                        metric: String::new(),
                        value,
                    })
                    .collect(),
                absolute: true,
            })
        }
    }
}

/// `value / target`, `%` for utilisation.
fn metric_text(value: f64, target: Target) -> String {
    let n = |x: f64| {
        if x.fract() == 0.0 && x.abs() < 1e15 {
            format!("{}", x as i64)
        } else {
            let s = format!("{x:.2}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    };
    match target {
        Target::PerReplica(t) => format!("{} / {}", n(value), n(t)),
        Target::Utilization(t) => format!("{}% / {}%", n(value), n(t)),
    }
}

/// A time as printed: RFC 3339 for Unix times, else seconds.
fn time_text(t: f64, absolute: bool) -> String {
    if absolute && let Ok(ts) = jiff::Timestamp::from_millisecond((t * 1000.0).round() as i64) {
        return ts.to_string();
    }
    if t.fract() == 0.0 && t.abs() < 1e15 {
        format!("{}", t as i64)
    } else {
        format!("{t:.3}")
    }
}

/// The step lines of a replay.
pub fn step_lines(steps: &[Step], absolute: bool) -> Vec<StepLine> {
    steps
        .iter()
        .map(|s| StepLine {
            time: s.time,
            at: time_text(s.time, absolute),
            metric: s
                .decision
                .metric
                .as_ref()
                .map(|m| metric_text(m.value, m.target)),
            current: s.decision.current,
            running: s.running,
            desired: s.decision.desired,
            action: serde_json::to_value(s.decision.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            reasons: s.decision.reasons.clone(),
        })
        .collect()
}

/// `1h2m3s` for seconds (whole seconds).
fn span(secs: f64) -> String {
    humantime::format_duration(Duration::from_secs(secs.max(0.0).round() as u64)).to_string()
}

/// The summary as text lines.
pub fn summary_text(s: &Summary) -> String {
    let mut out = String::new();
    let share = |x: f64| {
        if s.seconds > 0.0 {
            format!(" ({:.1}%)", 100.0 * x / s.seconds)
        } else {
            String::new()
        }
    };
    out += &format!(
        "steps:               {} over {}\n",
        s.steps,
        span(s.seconds)
    );
    out += &format!("scale-ups:           {}\n", s.scale_ups);
    out += &format!("scale-downs:         {}\n", s.scale_downs);
    out += &format!("flaps:               {} (direction reversals)\n", s.flaps);
    out += &format!("holds:               {}\n", s.holds);
    let hours = s.replica_seconds / 3600.0;
    out += &format!(
        "replica-seconds:     {:.0} ({hours:.1} replica-hours{})\n",
        s.replica_seconds,
        if s.seconds > 0.0 {
            format!(", {:.2} replicas on average", s.replica_seconds / s.seconds)
        } else {
            String::new()
        }
    );
    if let Some(ideal) = s.ideal_replica_seconds {
        out += &format!(
            "ideal:               {:.0} replica-seconds (demand followed exactly, at once){}\n",
            ideal,
            if ideal > 0.0 {
                format!("; this rule costs {:.2}x", s.replica_seconds / ideal)
            } else {
                String::new()
            }
        );
    }
    out += &format!("peak:                {} replicas (low {})\n", s.peak, s.low);
    out += &format!(
        "above target:        {}{}\n",
        span(s.seconds_above_target),
        share(s.seconds_above_target)
    );
    out
}

/// The step table: TIME METRIC CURRENT RUNNING DESIRED ACTION REASON.
fn table(lines: &[StepLine], no_trunc: bool) -> String {
    crate::render::docker_table(
        &[
            "TIME", "METRIC", "CURRENT", "RUNNING", "DESIRED", "ACTION", "REASON",
        ],
        lines
            .iter()
            .map(|l| {
                vec![
                    l.at.clone(),
                    l.metric.clone().unwrap_or_else(|| "-".into()),
                    l.current.to_string(),
                    l.running.to_string(),
                    l.desired.to_string(),
                    l.action.clone(),
                    crate::plan::reason_cell(
                        &l.reasons,
                        (!no_trunc).then_some(crate::plan::REASON_WIDTH),
                    ),
                ]
            })
            .collect(),
    )
}

/// Gives the series' unnamed points the metric `--metric` names. Errors: a name
/// the rule does not have.
fn name_points(series: &mut Series, rule: &Rule, metric: Option<&str>) -> Result<(), Failure> {
    let Some(name) = metric else {
        return Ok(());
    };
    let name = name.trim();
    if !rule.metrics.iter().any(|m| m.name == name) {
        let have: Vec<String> = rule
            .metrics
            .iter()
            .map(|m| format!("{:?}", m.name))
            .collect();
        return Err(Failure::Usage(format!(
            "--metric {}: the rule has no such metric (it has {})",
            crate::edge::text::printable(name),
            have.join(", ")
        )));
    }
    for p in series.points.iter_mut().filter(|p| p.metric.is_empty()) {
        p.metric = name.to_string();
    }
    Ok(())
}

/// Runs `replay`. `engine` is `None` when the rule needs no swarm ([`needs_swarm`]).
///
/// Exit 0 after printing; errors: a bad flag (usage), a rule with errors, a series
/// that cannot be read (naming FILE:LINE), a Prometheus query that fails, a chart
/// that cannot be written.
pub async fn run(engine: Option<&Engine>, args: &ReplayArgs) -> Result<Exit, Failure> {
    let format = Format::parse(args.format.as_deref(), FIELDS).map_err(Failure::Usage)?;
    let converge = match args.converge.as_deref() {
        Some(c) => duration_flag(c, "--converge", Duration::ZERO)?.as_secs_f64(),
        None => 0.0,
    };
    let interval = match args.interval.as_deref() {
        Some(i) => Some(duration_flag(i, "--interval", Duration::from_millis(500))?.as_secs_f64()),
        None => None,
    };
    let src = source(engine, args).await?;
    let mut series = read_series(args, src.services.clone()).await?;
    name_points(&mut series, &src.rule, args.metric.as_deref())?;
    let start = args.replicas.or(src.replicas).unwrap_or(src.rule.min);
    let steps = sim::replay(
        &src.rule,
        &series,
        Options {
            start,
            converge,
            interval,
            placement: src.placement,
        },
    )
    .map_err(Failure::Error)?;
    let summary = sim::summarize(&src.rule, &steps);
    if let Some(path) = &args.output {
        let rule_from = if args.labels.is_empty() {
            src.name.clone()
        } else {
            "the --label rule".to_string()
        };
        let series_from = match (&args.series, &args.query) {
            (Some(path), _) => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            (None, Some(q)) => q.clone(),
            (None, None) => String::new(),
        };
        let title = format!("docker microscale replay: {rule_from} on {series_from}");
        let svg = chart::render(&src.rule, &steps, &title).map_err(Failure::Error)?;
        std::fs::write(path, svg).map_err(|e| {
            Failure::Error(format!(
                "cannot write the chart to {}: {e}",
                crate::edge::text::printable(&path.display().to_string())
            ))
        })?;
    }
    let lines = step_lines(&steps, series.absolute);
    let summary_only = args.summary == Some(true);
    let no_trunc = args.no_trunc == Some(true);
    let text = match (&format, summary_only) {
        (Format::Json, true) => crate::render::json_lines(&[SummaryLine { summary: &summary }]),
        (Format::Json, false) => {
            crate::render::json_lines(&lines)
                + &crate::render::json_lines(&[SummaryLine { summary: &summary }])
        }
        (Format::Table, true) => summary_text(&summary),
        (Format::Table, false) => table(&lines, no_trunc) + "\n" + &summary_text(&summary),
        (Format::Template(_), true) => summary_text(&summary),
        (Format::Template(_), false) => format.render(&lines, |_| String::new())?,
    };
    print_stdout(&text)
}

#[cfg(test)]
mod tests;
