//! `docker microscale metric SOURCE [--service NAME]`: reads one metric source once,
//! to debug a rule.

use crate::metrics::{DEFAULT_TIMEOUT, engine, notes_needed, read};
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::Duration;

/// The output of `docker microscale metric --format json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricLine {
    /// The metric URI (secrets masked).
    source: String,
    /// The value.
    value: f64,
    /// Its unit.
    unit: &'static str,
    /// When it was read, RFC 3339.
    time: String,
    /// The engine source: the service measured (its name).
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    /// The engine source: which running tasks the value covers, and where the
    /// reading came from (`3 of 5 running tasks measured; not measured: tasks on n4,
    /// n5`).
    #[serde(skip_serializing_if = "Option::is_none")]
    coverage: Option<String>,
}

/// Runs `docker microscale metric SOURCE`: reads one source once and prints the value.
///
/// Exit 1 with the reason when the source cannot be read within the timeout, or its
/// host is not allowed.
pub async fn run(
    engine: &crate::engine::Engine,
    args: &crate::cli::MetricArgs,
) -> Result<crate::edge::exit::Exit, crate::edge::exit::Failure> {
    use crate::edge::exit::{Failure, print_stdout_async};
    use crate::render::Format;
    let format = Format::parse(args.format.as_deref(), crate::render::fields::METRIC)
        .map_err(Failure::Usage)?;
    let timeout = match args.timeout.as_deref() {
        None => DEFAULT_TIMEOUT,
        Some(t) => humantime::parse_duration(t.trim())
            .ok()
            .filter(|d| !d.is_zero() && *d <= Duration::from_secs(3600))
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "invalid argument \"{t}\" for \"--timeout\" flag: a duration from 1ms to 1h, such as 5s or 500ms"
                ))
            })?,
    };
    // The default allow-list needs the swarm's service names (not read with
    // --metric-allow-only); without an engine, loopback and --metric-allow remain.
    let services = if args.access.needs_services() {
        match engine
            .within_deadline(
                engine
                    .docker
                    .list_services(None::<bollard::query_parameters::ListServicesOptions>),
            )
            .await
        {
            Ok(Ok(list)) => list
                .iter()
                .filter_map(|s| s.spec.as_ref()?.name.clone())
                .collect(),
            _ => BTreeSet::new(),
        }
    } else {
        BTreeSet::new()
    };
    let allow = args.access.allow(services).map_err(Failure::Usage)?;
    let shown = crate::edge::redact::redact_value(args.source.trim());
    if args
        .source
        .trim()
        .to_ascii_lowercase()
        .starts_with("engine://")
    {
        return run_engine(engine, args, &format, timeout).await;
    }
    if args.service.is_some() {
        return Err(Failure::Usage(
            "--service names the service an engine:// source measures; other sources read what their URI says".into(),
        ));
    }
    let sample = read(&args.source, &allow, timeout)
        .await
        .map_err(|e| Failure::Error(format!("cannot read {shown}: {e}")))?;
    let line = MetricLine {
        source: shown,
        value: sample.value,
        unit: sample.unit,
        time: sample.time.to_string(),
        service: None,
        coverage: None,
    };
    let text = format.render(&[line], |_| match sample.unit {
        "" => format!("{}\n", sample.value),
        unit => format!("{} {unit}\n", sample.value),
    })?;
    print_stdout_async(text).await
}

/// `metric engine://cpu --service NAME`: the service's utilisation as `plan` reads
/// it: the agents' combined reading of every node while fresh (`<lease>-stats` of
/// the default lease), else the tasks on this engine. Prints the value; on stderr,
/// which tasks it covers and where it came from.
///
/// Errors: no `--service` (usage), a service that does not exist, nothing measured.
async fn run_engine(
    engine: &crate::engine::Engine,
    args: &crate::cli::MetricArgs,
    format: &crate::render::Format,
    timeout: Duration,
) -> Result<crate::edge::exit::Exit, crate::edge::exit::Failure> {
    use crate::edge::exit::{Failure, print_stdout_async, say};
    let kind = engine::Kind::parse(&args.source).map_err(Failure::Usage)?;
    let Some(name) = args.service.as_deref() else {
        return Err(Failure::Usage(format!(
            "{} measures a service's running tasks: name it with --service SERVICE",
            kind.uri()
        )));
    };
    let snap = engine
        .snapshot(&Default::default())
        .await
        .map_err(|e| Failure::Error(e.to_string()))?;
    let (found, missing) =
        crate::swarm::service::select_services(snap.services.clone(), &[name.to_string()], false);
    let Some(service) = found.first() else {
        return Err(Failure::Error(missing.join("; ")));
    };
    let id = service.id.clone().unwrap_or_default();
    let via = crate::plan::EngineVia::Stored {
        config: crate::store::stats::config_name(crate::store::lease::DEFAULT_NAME),
    };
    let (value, coverage, notes) =
        crate::plan::read_engine_source(engine, &snap, &id, kind, timeout, &via).await;
    let service_name = crate::rules::check::service_name(service);
    let value = value.map_err(|e| {
        Failure::Error(format!(
            "cannot read {} for {}: {e}",
            kind.uri(),
            crate::edge::text::printable(&service_name)
        ))
    })?;
    let mut about: Vec<String> = coverage.iter().map(|c| c.text()).collect();
    about.extend(notes);
    if notes_needed(&coverage) {
        about.push("on partial data, plan and apply never scale down".into());
    }
    let line = MetricLine {
        source: kind.uri().to_string(),
        value,
        unit: "percent",
        time: jiff::Timestamp::now().to_string(),
        service: Some(service_name),
        coverage: (!about.is_empty()).then(|| about.join("; ")),
    };
    let text = format.render(std::slice::from_ref(&line), |_| {
        format!("{value} percent\n")
    })?;
    if format.is_table() && !about.is_empty() {
        say(&about.join("; "));
    }
    print_stdout_async(text).await
}

#[cfg(test)]
mod format_fields_tests {
    use super::*;
    use crate::metrics::parse_target;

    #[test]
    fn metric_fields_are_the_json_keys() {
        let line = MetricLine {
            source: "redis://x".into(),
            value: 1.0,
            unit: "",
            time: "2020-01-01T00:00:00Z".into(),
            service: Some("web".into()),
            coverage: Some("1 of 1 running tasks measured".into()),
        };
        crate::render::fields::assert_fields_match(
            &crate::render::fields::METRIC,
            &line,
            &["Service", "Coverage"],
        );
    }

    #[test]
    fn secrets_only_from_secret_places() {
        for bad in [
            "redis://q/0?list=a&secret-file=/etc/shadow",
            "redis://q/0?list=a&secret-file=/run/secrets/../../etc/passwd",
            "redis://q/0?list=a&secret-file=/run/secrets",
            "redis://q/0?list=a&secret-file=run/secrets/x",
            "http://h/x?secret-env=HOME#/a",
            "http://h/x?secret-env=MICROSCALE_SECRET_#/a",
        ] {
            let e = parse_target(bad).unwrap_err();
            assert!(e.contains("secret"), "{bad}: {e}");
        }
        assert!(parse_target("redis://q/0?list=a&secret-file=/run/secrets/redis").is_ok());
    }
}
