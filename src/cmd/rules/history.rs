//! `docker microscale rules history [SERVICE...]`: what the decision history kept in
//! the swarm ([`crate::store::history`]) holds for each service, and until when each
//! entry binds: a recommendation holds scale-downs (at or above it) until its time
//! plus the scale-down window, and scale-ups (at or below it) until its time plus the
//! scale-up window; a scale event counts against `max-step` until its time plus the
//! period.

use serde::Serialize;

use crate::edge::exit::{Exit, Failure, print_stdout_async, say};
use crate::edge::text::printable;
use crate::engine::Engine;
use crate::render::docker_table;
use crate::rules::check::{rule_inputs, service_name};
use crate::store::history::{self, Entry, epoch_text};

/// One recommendation of `--format json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Recommendation {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Replicas recommended.
    pub replicas: u64,
    /// Until when it holds scale-downs below it (RFC 3339), when the scale-down
    /// window is not over.
    pub scale_down_until: Option<String>,
    /// Until when it holds scale-ups above it, when the scale-up window is not over.
    pub scale_up_until: Option<String>,
}

/// One scale event of `--format json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Event {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Replicas before.
    pub from: u64,
    /// Replicas after.
    pub to: u64,
    /// Until when it counts against the step limit of its direction, when its
    /// period is not over.
    pub counts_until: Option<String>,
}

/// One service of `rules history --format json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceHistory {
    /// Service name (empty when the service is gone).
    pub service: String,
    /// Service ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Recommendations kept (after compaction), oldest first.
    pub recommendations: Vec<Recommendation>,
    /// Scale events kept, oldest first.
    pub events: Vec<Event>,
    /// Consecutive decisions with a failed metric read.
    pub failures: u32,
    /// The count an agent (or `apply`) last set.
    pub set: Option<u64>,
    /// Why the stored entry cannot be read (then scale-downs are held).
    pub error: Option<String>,
}

/// The longest step period of a direction, in seconds (0 without steps): how long a
/// scale event in that direction counts.
fn longest_period(p: &crate::rules::model::Policy) -> f64 {
    p.steps
        .iter()
        .map(|s| s.period.as_secs_f64())
        .fold(0.0, f64::max)
}

/// `(scale-down window, scale-up window, scale-down period, scale-up period)` in
/// seconds of a rule.
type Spans = (f64, f64, f64, f64);

/// What one entry says at `now`.
pub fn describe(
    service: &str,
    id: &str,
    entry: &Entry,
    spans: Option<Spans>,
    now: f64,
) -> ServiceHistory {
    let until = |t: f64, span: f64| (t + span > now).then(|| epoch_text(t + span));
    ServiceHistory {
        service: service.to_string(),
        id: id.to_string(),
        recommendations: entry
            .history
            .recommendations()
            .iter()
            .map(|r| (r.at, r.replicas))
            .map(|(t, n)| Recommendation {
                at: epoch_text(t),
                replicas: n,
                scale_down_until: spans.and_then(|s| until(t, s.0)),
                scale_up_until: spans.and_then(|s| until(t, s.1)),
            })
            .collect(),
        events: entry
            .history
            .events()
            .iter()
            .map(|e| Event {
                at: epoch_text(e.at),
                from: e.from,
                to: e.to,
                counts_until: spans
                    .and_then(|s| until(e.at, if e.to < e.from { s.2 } else { s.3 })),
            })
            .collect(),
        failures: entry.history.failures(),
        set: entry.set,
        error: None,
    }
}

/// The table: one line per entry.
pub fn table(list: &[ServiceHistory]) -> String {
    let mut rows = vec![];
    for s in list {
        let name = if s.service.is_empty() {
            format!("({})", s.id.chars().take(12).collect::<String>())
        } else {
            printable(&s.service)
        };
        if let Some(e) = &s.error {
            rows.push(vec![
                name.clone(),
                "error".into(),
                "-".into(),
                "-".into(),
                printable(e),
            ]);
            continue;
        }
        for r in &s.recommendations {
            let mut binds = vec![];
            if let Some(u) = &r.scale_down_until {
                binds.push(format!("no scale-down below {} until {u}", r.replicas));
            }
            if let Some(u) = &r.scale_up_until {
                binds.push(format!("no scale-up above {} until {u}", r.replicas));
            }
            rows.push(vec![
                name.clone(),
                "recommendation".into(),
                r.at.clone(),
                r.replicas.to_string(),
                if binds.is_empty() {
                    "-".into()
                } else {
                    binds.join("; ")
                },
            ]);
        }
        for e in &s.events {
            let dir = if e.to > e.from { "up" } else { "down" };
            rows.push(vec![
                name.clone(),
                format!("scale {dir}"),
                e.at.clone(),
                format!("{} → {}", e.from, e.to),
                e.counts_until
                    .as_ref()
                    .map(|u| format!("counts against scale-{dir} steps until {u}"))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        if s.failures > 0 {
            rows.push(vec![
                name.clone(),
                "failures".into(),
                "-".into(),
                s.failures.to_string(),
                "consecutive failed metric reads (fallback)".into(),
            ]);
        }
        if let Some(n) = s.set {
            rows.push(vec![
                name.clone(),
                "set".into(),
                "-".into(),
                n.to_string(),
                "the count last set by an agent or apply (fights)".into(),
            ]);
        }
    }
    docker_table(&["SERVICE", "ENTRY", "AT", "REPLICAS", "BINDS"], rows)
}

/// Runs `docker microscale rules history`.
///
/// Exit codes: 0; 1 when the history or the swarm cannot be read or a named
/// service does not exist; 125 for a bad `--format` or `--lease-name`.
pub async fn run(engine: &Engine, args: &crate::cli::RulesHistoryArgs) -> Result<Exit, Failure> {
    let json = match args.format.as_deref().map(str::trim) {
        None | Some("") | Some("table") => false,
        Some("json") => true,
        Some(other) => {
            return Err(Failure::Usage(format!(
                "invalid argument \"{}\" for \"--format\" flag: use 'table' or 'json'",
                printable(other)
            )));
        }
    };
    let name = crate::plan::history_name(args.lease_name.as_deref()).map_err(Failure::Usage)?;
    let file = crate::rules::check::load_rules_flag(args.rules.as_deref())?;
    let snap = engine
        .snapshot(&Default::default())
        .await
        .map_err(|e| Failure::Error(e.to_string()))?;
    let stored = history::read(engine, &name).await.map_err(|e| {
        Failure::Error(format!(
            "cannot read the decision history (swarm config {name}): {e}"
        ))
    })?;
    let now = crate::edge::clock::wall_clock();
    let (mut services, missing) =
        crate::swarm::service::select_services(snap.services.clone(), &args.services, false);
    services.sort_by(|a, b| crate::render::natural_cmp(&service_name(a), &service_name(b)));
    let file_ref = file.as_ref().map(|(p, m)| (p.as_path(), m));
    let mut list = vec![];
    for (s, labels, _) in rule_inputs(&services, file_ref) {
        let id = s.id.clone().unwrap_or_default();
        let sname = service_name(s);
        let spans = crate::rules::parse_labels(&sname, crate::swarm::service::Mode::of(s), &labels)
            .rule
            .map(|r| {
                (
                    r.scale_down.window.as_secs_f64(),
                    r.scale_up.window.as_secs_f64(),
                    longest_period(&r.scale_down),
                    longest_period(&r.scale_up),
                )
            });
        if let Some(e) = stored.entries.get(&id) {
            list.push(describe(&sname, &id, e, spans, now));
        } else if let Some(why) = stored.bad.get(&id) {
            let mut h = describe(&sname, &id, &Entry::default(), None, now);
            h.error = Some(why.clone());
            list.push(h);
        } else if !args.services.is_empty() {
            list.push(describe(&sname, &id, &Entry::default(), spans, now));
        }
    }
    let text = if json {
        list.iter()
            .map(|s| serde_json::to_string(s).unwrap_or_default() + "\n")
            .collect()
    } else {
        let mut t = table(&list);
        if let (Some(w), Some(by)) = (stored.written, stored.writer.as_deref()) {
            say(&format!(
                "history {name}: written {} by {}",
                epoch_text(w),
                printable(by)
            ));
        } else if stored.config.is_none() {
            say(&format!(
                "history {name}: none yet (no agent or apply has written it)"
            ));
        }
        if list.is_empty() {
            t = String::new();
        }
        t
    };
    let code = print_stdout_async(text).await?;
    for m in &missing {
        say(m);
    }
    Ok(if missing.is_empty() {
        code
    } else {
        Exit::Error
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::History;

    #[test]
    fn entries_say_until_when_they_bind() {
        let mut h: History = serde_json::from_str(
            r#"{"recommendations":[[1000.0,5],[1100.0,2]],"events":[{"at":1100.0,"from":5,"to":2}],"failures":1}"#,
        )
        .unwrap();
        h.recommendations_mut();
        let e = Entry {
            history: h,
            set: Some(2),
        };
        let d = describe("web", "id1", &e, Some((300.0, 0.0, 60.0, 15.0)), 1200.0);
        assert_eq!(
            d.recommendations[0].scale_down_until.as_deref(),
            Some("1970-01-01T00:21:40Z")
        );
        assert_eq!(d.recommendations[0].scale_up_until, None);
        assert_eq!(
            d.events[0].counts_until, None,
            "the 60 s period ended at 1160"
        );
        let d = describe("web", "id1", &e, Some((300.0, 0.0, 200.0, 15.0)), 1200.0);
        assert_eq!(
            d.events[0].counts_until.as_deref(),
            Some("1970-01-01T00:21:40Z")
        );
        let t = table(&[d]);
        assert!(
            t.contains("no scale-down below 5 until 1970-01-01T00:21:40Z"),
            "{t}"
        );
        assert!(t.contains("5 → 2"), "{t}");
        assert!(t.contains("failures"), "{t}");
    }
}
