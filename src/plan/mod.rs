//! `docker microscale plan [SERVICE...]`: what each rule-managed service should run
//! and why, before anything changes. Also the METRIC and DESIRED columns of `status`.
//!
//! Each service's rule (labels or `--rules FILE`) and what the snapshot says of it
//! become a [`decide::Observation`]; the pure [`decide::decide`] makes the decision;
//! with `--capacity N`, [`decide::allocate`] then shares N replicas by priority.
//! `plan` and `apply` decide with the history the agents keep in the swarm
//! ([`crate::store::history`]), so windows and steps hold across cron runs; `plan`
//! never writes it, `apply` writes it back. `status` decides without it.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{Node, NodeSpecAvailabilityEnum, NodeState, Service};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

use crate::edge::argv::{any_path, go_bool};
use crate::metrics::access::MetricAccess;

use crate::decide::{self, Action, History, Observation, Placement, Reading};
use crate::rules::check::{RulesFile, rule_inputs, service_name};
use crate::rules::model::{Rule, Target};
use crate::rules::{Severity, parse_labels};
use crate::swarm::service::Mode;
use crate::swarm::snapshot::Snapshot;

/// Seconds a service may take to converge (running = desired) before the plan says
/// it has not.
pub const GRACE_SECS: f64 = 60.0;

/// One line of `plan`; the JSON object of `plan --format json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PlanRow {
    /// Service ID (12 characters unless `--no-trunc`).
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name.
    pub service: String,
    /// Replicas of the spec now.
    pub current: u64,
    /// Tasks that really run now ([`crate::swarm::snapshot::task_life`]): stale tasks
    /// on down nodes, which `ServiceStatus.RunningTasks` still counts, are left out
    /// (and a reason names them).
    pub running: u64,
    /// The winning metric as `value / target` (`85% / 70%` for utilisation), when a
    /// metric was read.
    pub metric: Option<String>,
    /// The proposed replica count.
    pub desired: u64,
    /// `none`, `scale up`, `scale down`, `hold`, `not scaled`, or `error` (the rule
    /// has errors: see `rules check`).
    pub action: String,
    /// Why, in order.
    pub reasons: Vec<String>,
    /// `labels` or the rules file's path.
    pub source: String,
}

/// What `status` uses for metrics: it never reads them (a status must not wait on
/// metric sources); `plan` reads them.
pub fn unread_metric(key: &str) -> Result<f64, String> {
    // an engine key carries the service ID after '@'
    let source = match key.split_once('@') {
        Some((s, _)) if s.starts_with("engine://") => s,
        _ => key,
    };
    Err(format!(
        "{} not read (status reads metrics with --metrics; plan always does)",
        crate::edge::redact::redact_value(source)
    ))
}

/// The reasons of a plan row that say a metric of the rule could not be read, as
/// [`decide::decide`] words them: `metric unreadable: WHY` or `metric "NAME"
/// unreadable: WHY` (WHY ends with the source read, `(reading redis://…)`).
pub fn metric_failures(reasons: &[String]) -> Vec<&str> {
    reasons
        .iter()
        .filter(|r| r.starts_with("metric") && r.contains(" unreadable: "))
        .map(String::as_str)
        .collect()
}

/// Widest REASON cell of the `plan` and `replay` tables without `--no-trunc`.
pub const REASON_WIDTH: usize = 100;

/// The REASON cell of a table (`plan`, `apply --dry-run`, `replay`): the reasons
/// joined with `; `, those that say why something failed first (a metric that could
/// not be read, [`metric_failures`]; a rule with errors), then the others in their
/// order; cut to `max` columns (`None`: whole). A long chain of readings once
/// pushed the cause past the cut (`…; metric "queue" unreadable: cannot connect to
/// redis at 127.0…`); first, it is what the cell shows. `--format json` keeps the
/// reasons in their order.
pub fn reason_cell(reasons: &[String], max: Option<usize>) -> String {
    let failed = |r: &String| {
        (r.starts_with("metric") && r.contains(" unreadable: ")) || r.starts_with("the rule has ")
    };
    let ordered: Vec<&str> = reasons
        .iter()
        .filter(|r| failed(r))
        .chain(reasons.iter().filter(|r| !failed(r)))
        .map(String::as_str)
        .collect();
    let text = ordered.join("; ");
    match max {
        Some(max) => crate::edge::text::ellipsize(&text, max),
        None => text,
    }
}

/// The key a metric reading is kept under: the source URI, and for the engine
/// source (which measures the service itself) the URI and the service ID.
pub fn metric_key(service: &Service, source: &str) -> String {
    if source.trim().to_ascii_lowercase().starts_with("engine://") {
        format!("{source}@{}", service.id.as_deref().unwrap_or_default())
    } else {
        source.to_string()
    }
}

/// Readings of metric sources, by [`metric_key`]: the value or why it could not be
/// read, and for the engine source which tasks it covers; notes about readings (by
/// service ID); and the engine source's combined reading when it was read from every
/// node (for the lease holder to keep in the swarm).
#[derive(Debug, Default, Clone)]
pub struct Readings {
    /// [`metric_key`] → the value or why it could not be read.
    pub values: HashMap<String, Result<f64, String>>,
    /// [`metric_key`] of an engine source → which running tasks the value covers.
    pub coverage: HashMap<String, decide::Coverage>,
    /// Service ID → lines for its reasons (where an engine reading came from).
    pub notes: HashMap<String, Vec<String>>,
    /// The engine readings read from every node's agent now (`None` otherwise).
    pub combined: Option<crate::store::stats::Stored>,
    /// Peers that gave nothing usable (one line each), when they were read.
    pub peer_failures: Vec<String>,
}

impl Readings {
    /// The value of `key`.
    pub fn read(&self, key: &str) -> Result<f64, String> {
        self.values
            .get(key)
            .cloned()
            .unwrap_or_else(|| Err(format!("{key} was not read")))
    }
}

/// What [`plan`] reads metric values from: a function of the [`metric_key`] (every
/// closure `Fn(&str) -> Result<f64, String>` is one), or [`Readings`], which also say
/// which tasks an engine reading covers.
pub trait MetricValues {
    /// The value of `key`, or why it could not be read.
    fn value(&self, key: &str) -> Result<f64, String>;
    /// Which running tasks the value of `key` covers (`None`: all of the service).
    fn coverage(&self, _key: &str) -> Option<decide::Coverage> {
        None
    }
}

impl<F: Fn(&str) -> Result<f64, String>> MetricValues for F {
    fn value(&self, key: &str) -> Result<f64, String> {
        self(key)
    }
}

impl MetricValues for Readings {
    fn value(&self, key: &str) -> Result<f64, String> {
        self.read(key)
    }

    fn coverage(&self, key: &str) -> Option<decide::Coverage> {
        self.coverage.get(key).cloned()
    }
}

/// How the engine source (`engine://cpu`, `engine://memory`) is read. Container stats
/// come only through the engine of the node a container runs on (docs/metrics.md).
pub enum EngineVia<'a> {
    /// The tasks on the engine this command talks to; the others are missing (the
    /// decision then holds any scale-down).
    Local,
    /// The agents' combined reading kept in the swarm (`<lease>-stats`,
    /// [`crate::agent::stats`]) for each service it covers while fresh; else
    /// [`EngineVia::Local`]. The command line's way.
    Stored {
        /// The stats config's name.
        config: String,
    },
    /// Every node's agent, now (the lease holder).
    Peers {
        /// `--stats-peers`.
        peers: &'a crate::metrics::nodes::Peers,
        /// `--stats-token-file`.
        token: &'a crate::metrics::nodes::Token,
        /// This agent's collector, for its own node when no peer answered for it.
        collector: &'a crate::metrics::engine::Collector,
        /// This holder's id, for the stored reading.
        writer: &'a str,
    },
}

/// Reads every metric source of the rules of `services` once, concurrently (a few at
/// a time), within `timeout` each. Engine sources are read as `via` says, all
/// services at once (one stats call per task).
pub async fn read_metrics(
    engine: &crate::engine::Engine,
    snap: &Snapshot,
    services: &[Service],
    file: Option<(&std::path::Path, &RulesFile)>,
    allow: &crate::metrics::Allow,
    timeout: std::time::Duration,
    via: &EngineVia<'_>,
) -> Readings {
    use crate::metrics::engine::Kind;
    use futures_util::StreamExt;
    let mut wanted: BTreeMap<String, (&Service, String)> = BTreeMap::new();
    let mut engine_keys: BTreeMap<String, (String, Result<Kind, String>)> = BTreeMap::new();
    for (s, labels, _) in rule_inputs(services, file) {
        if let Some(rule) = parse_labels(&service_name(s), Mode::of(s), &labels).rule {
            for m in rule.metrics {
                let key = metric_key(s, &m.source);
                if m.source
                    .trim()
                    .to_ascii_lowercase()
                    .starts_with("engine://")
                {
                    let id = s.id.clone().unwrap_or_default();
                    engine_keys.insert(key, (id, Kind::parse(&m.source)));
                } else {
                    wanted.insert(key, (s, m.source));
                }
            }
        }
    }
    let mut out = Readings::default();
    // The engine source (every node's stats take a second or two) while the other
    // sources are read.
    let engine_read = async {
        if !engine_keys.is_empty() {
            read_engine(engine, snap, &engine_keys, timeout, via, &mut out).await;
        }
    };
    let others = futures_util::stream::iter(wanted)
        .map(|(key, (_, src))| async move {
            let value = crate::metrics::read(&src, allow, timeout)
                .await
                .map(|m| m.value)
                // The cause first: a table cuts long reasons at the end.
                .map_err(|e| format!("{e} (reading {})", crate::edge::redact::redact_value(&src)));
            (key, value)
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>();
    let ((), others) = tokio::join!(engine_read, others);
    out.values.extend(others);
    out
}

/// Reads the engine sources of `keys` ([`metric_key`] → service ID and kind) as
/// `via` says, into `out`.
async fn read_engine(
    engine: &crate::engine::Engine,
    snap: &Snapshot,
    keys: &BTreeMap<String, (String, Result<crate::metrics::engine::Kind, String>)>,
    timeout: std::time::Duration,
    via: &EngineVia<'_>,
    out: &mut Readings,
) {
    use crate::metrics::engine::{self as eng, Collector};
    use crate::metrics::nodes;
    use crate::store::stats;
    let ids: std::collections::BTreeSet<String> = keys.values().map(|(id, _)| id.clone()).collect();
    let now = crate::edge::clock::wall_clock();
    // The agents' reading, for the services it covers with the tasks running now.
    let mut stored_used: std::collections::BTreeSet<String> = Default::default();
    if let EngineVia::Stored { config } = via {
        match stats::read_stored(engine, config).await {
            Ok(Some(st)) if stats::fresh(st.time, now) => {
                for (key, (id, kind)) in keys {
                    let (Ok(kind), Some(svc)) = (kind, st.services.get(id)) else {
                        continue;
                    };
                    let Some(k) = svc.get(*kind) else { continue };
                    let running_now = running_tasks(snap, id);
                    if k.total != running_now {
                        continue;
                    }
                    // The config is untrusted (any manager can write it).
                    if let Err(why) = k.sane() {
                        out.notes.entry(id.clone()).or_default().push(format!(
                            "{}: the agents' reading in config {} is not used: {} (measured through this engine)",
                            kind.uri(),
                            crate::edge::text::printable(config),
                            why
                        ));
                        continue;
                    }
                    let value = match (k.value, &k.error) {
                        (Some(v), _) if v.is_finite() && v >= 0.0 => Ok(v),
                        (_, Some(e)) => Err(crate::edge::text::printable(e)),
                        _ => Err("no running task could be measured".into()),
                    };
                    out.values.insert(
                        key.clone(),
                        value.map_err(|e| {
                            format!("{e} (reading {}, the agents' reading)", kind.uri())
                        }),
                    );
                    out.coverage.insert(
                        key.clone(),
                        decide::Coverage {
                            measured: k.measured,
                            total: k.total,
                            missing: k
                                .missing
                                .iter()
                                .map(|m| crate::edge::text::printable(m))
                                .collect(),
                        },
                    );
                    out.notes.entry(id.clone()).or_default().push(format!(
                        "{}: the agents' combined reading of every node, {} old",
                        kind.uri(),
                        stats::age_text(st.time, now)
                    ));
                    stored_used.insert(key.clone());
                }
            }
            Ok(Some(st)) if st.time > 0.0 => {
                for (id, _) in keys.values() {
                    let note = format!(
                        "the agents' reading is {} old (used up to {}s): measured through this engine",
                        stats::age_text(st.time, now),
                        stats::FRESH_SECS
                    );
                    let notes = out.notes.entry(id.clone()).or_default();
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                }
            }
            _ => {}
        }
    }
    let left: BTreeMap<&String, &(String, Result<eng::Kind, String>)> = keys
        .iter()
        .filter(|(k, _)| !stored_used.contains(*k))
        .collect();
    if left.is_empty() {
        return;
    }
    let left_ids: std::collections::BTreeSet<String> =
        left.values().map(|(id, _)| id.clone()).collect();
    // Node ID → its stats.
    let mut answers: HashMap<String, eng::NodeStats> = HashMap::new();
    let mut local_error = None;
    let local_collector;
    let collector = match via {
        EngineVia::Peers {
            peers,
            token,
            collector,
            ..
        } => {
            // A node's measure takes a second or two (the engine's CPU delta).
            let peer_timeout = timeout.max(std::time::Duration::from_secs(5));
            let owners = nodes::read_owners(engine, snap).await;
            let got = nodes::read_peers(peers, token, &ids, peer_timeout, &owners).await;
            answers = got.nodes;
            out.peer_failures = got.failures;
            *collector
        }
        _ => {
            local_collector = Collector::new();
            &local_collector
        }
    };
    // This engine's own node, when no peer answered for it (or no peers are read).
    match eng::whoami(engine).await {
        Ok((me, _)) if !answers.contains_key(&me.id) => {
            match collector.collect(engine, Some(&left_ids), timeout).await {
                Ok(s) => {
                    answers.insert(me.id.clone(), s);
                }
                Err(e) => local_error = Some(e),
            }
        }
        Ok(_) => {}
        Err(e) => local_error = Some(e),
    }
    let mut combined = stats::Stored {
        time: now,
        writer: match via {
            EngineVia::Peers { writer, .. } => writer.to_string(),
            _ => String::new(),
        },
        nodes: {
            let mut n: Vec<String> = answers.keys().cloned().collect();
            n.sort();
            n
        },
        services: BTreeMap::new(),
    };
    for (key, (id, kind)) in left {
        let kind = match kind {
            Ok(k) => *k,
            Err(e) => {
                out.values.insert(key.clone(), Err(e.clone()));
                continue;
            }
        };
        let result = eng::combine(snap, id, kind, &answers);
        let stored = match &result {
            Ok((v, c)) => stats::StoredKind {
                value: Some(*v),
                measured: c.measured,
                total: c.total,
                missing: c.missing.clone(),
                error: None,
            },
            Err(e) => stats::StoredKind {
                total: running_tasks(snap, id),
                error: Some(crate::edge::text::ellipsize(e, 300)),
                ..Default::default()
            },
        };
        combined
            .services
            .entry(id.clone())
            .or_default()
            .set(kind, stored);
        match result {
            Ok((v, c)) => {
                out.values.insert(key.clone(), Ok(v));
                out.coverage.insert(key.clone(), c);
            }
            Err(e) => {
                let why = match &local_error {
                    Some(l) => format!("{e}; this engine: {l}"),
                    None => e,
                };
                out.values
                    .insert(key.clone(), Err(format!("{why} (reading {})", kind.uri())));
            }
        }
    }
    if matches!(via, EngineVia::Peers { .. }) {
        out.combined = Some(combined);
    }
}

/// Reads the engine source `kind` of one service (`service_id`) as `via` says: the
/// value (the average over the running tasks measured) or why it could not be read,
/// which tasks it covers, and where it came from (note lines). For `metric
/// engine://… --service NAME`.
pub async fn read_engine_source(
    engine: &crate::engine::Engine,
    snap: &Snapshot,
    service_id: &str,
    kind: crate::metrics::engine::Kind,
    timeout: std::time::Duration,
    via: &EngineVia<'_>,
) -> (Result<f64, String>, Option<decide::Coverage>, Vec<String>) {
    let key = format!("{}@{service_id}", kind.uri());
    let keys = BTreeMap::from([(key.clone(), (service_id.to_string(), Ok(kind)))]);
    let mut out = Readings::default();
    read_engine(engine, snap, &keys, timeout, via, &mut out).await;
    (
        out.read(&key),
        out.coverage.remove(&key),
        out.notes.remove(service_id).unwrap_or_default(),
    )
}

/// Running tasks of the service `id` as every command counts them
/// ([`crate::swarm::snapshot::task_life`]: stale records on down nodes left out):
/// what the engine source can measure.
fn running_tasks(snap: &Snapshot, id: &str) -> u64 {
    let nodes = crate::swarm::snapshot::Nodes::new(&snap.nodes);
    snap.tasks
        .iter()
        .filter(|t| t.service_id.as_deref() == Some(id))
        .filter(|t| {
            crate::swarm::snapshot::task_life(t, &nodes)
                == crate::swarm::snapshot::TaskLife::Running
        })
        .count() as u64
}

/// Adds the notes of [`read_metrics`] to the reasons of their services' rows.
pub fn add_notes(rows: &mut [PlanRow], notes: &HashMap<String, Vec<String>>) {
    for row in rows {
        if let Some((_, n)) = notes.iter().find(|(id, _)| id.starts_with(&row.id)) {
            row.reasons.extend(n.iter().cloned());
        }
    }
}

/// `value / target`, with `%` for utilisation targets.
fn metric_text(value: f64, target: Target) -> String {
    let num = |x: f64| {
        if x.fract() == 0.0 && x.abs() < 1e15 {
            format!("{}", x as i64)
        } else if x != 0.0 && (x.abs() >= 1e15 || x.abs() < 1e-2) {
            // Keeps the table narrow: 1e308 is not printed with 309 digits.
            format!("{x:.3e}")
        } else {
            format!("{x:.2}")
        }
    };
    match target {
        Target::PerReplica(t) => format!("{} / {}", num(value), num(t)),
        Target::Utilization(t) => format!("{}% / {}%", num(value), num(t)),
    }
}

/// Seconds since the Unix epoch of an RFC 3339 time.
fn epoch(ts: &str) -> Option<f64> {
    ts.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond() as f64 / 1000.0)
}

/// Nodes where the service's tasks may run: ready and active, and matching the
/// `node.role` and `node.hostname` constraints (other constraints are not evaluated:
/// every such node counts).
pub fn eligible_nodes(service: &Service, nodes: &[Node]) -> u64 {
    let constraints: Vec<String> = service
        .spec
        .as_ref()
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.placement.as_ref())
        .and_then(|p| p.constraints.clone())
        .unwrap_or_default();
    nodes
        .iter()
        .filter(|n| n.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY))
        .filter(|n| {
            n.spec.as_ref().and_then(|s| s.availability) == Some(NodeSpecAvailabilityEnum::ACTIVE)
        })
        .filter(|n| {
            constraints.iter().all(|c| {
                let (key, want, eq) = if let Some((k, v)) = c.split_once("!=") {
                    (k.trim(), v.trim(), false)
                } else if let Some((k, v)) = c.split_once("==") {
                    (k.trim(), v.trim(), true)
                } else {
                    return true;
                };
                let have = match key {
                    "node.role" => n.spec.as_ref().and_then(|s| s.role).map(|r| r.to_string()),
                    "node.hostname" => n.description.as_ref().and_then(|d| d.hostname.clone()),
                    _ => return true,
                };
                // Swarm compares constraint values without case.
                have.is_some_and(|h| h.eq_ignore_ascii_case(want)) == eq
            })
        })
        .count() as u64
}

/// What the snapshot says of `service`, with `readings` for its rule. `running` counts
/// the tasks that really run ([`Snapshot::running_tasks`]): a task the engine still
/// reports running on a down node is stale and left out, so a dead worker never holds
/// the decision as "not converged".
pub fn observe(
    service: &Service,
    snap: &Snapshot,
    readings: Vec<Reading>,
    now: f64,
) -> Observation {
    observe_counted(service, snap, &snap.running_tasks(service), readings, now)
}

/// [`observe`] with the service's running tasks already counted
/// ([`Snapshot::running_by_service`], for many services at once).
pub fn observe_counted(
    service: &Service,
    snap: &Snapshot,
    counted: &crate::swarm::snapshot::RunningTasks,
    readings: Vec<Reading>,
    now: f64,
) -> Observation {
    let spec = service.spec.as_ref();
    let mode = Mode::of(service);
    let replicas = match mode {
        Mode::ReplicatedJob => spec
            .and_then(|s| s.mode.as_ref())
            .and_then(|m| m.replicated_job.as_ref())
            .and_then(|j| j.total_completions)
            .unwrap_or(0)
            .max(0) as u64,
        Mode::Global | Mode::GlobalJob => service
            .service_status
            .as_ref()
            .and_then(|s| s.desired_tasks)
            .unwrap_or(0),
        Mode::Replicated => spec
            .and_then(|s| s.mode.as_ref())
            .and_then(|m| m.replicated.as_ref())
            .and_then(|r| r.replicas)
            .unwrap_or(1)
            .max(0) as u64,
    };
    // Tasks the engine still reports running on down nodes are stale, never
    // replicas: a dead worker must not hold the decision as "not converged".
    let running = counted.running;
    let update = crate::swarm::service::update_text(service);
    // One-shot: converging since the spec last changed.
    let converging_since = (running != replicas).then(|| {
        service
            .updated_at
            .as_deref()
            .and_then(epoch)
            .unwrap_or(now)
            .min(now)
    });
    let max_per_node = spec
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.placement.as_ref())
        .and_then(|p| p.max_replicas)
        .filter(|m| *m > 0);
    Observation {
        mode,
        replicas,
        running,
        update: (!update.is_empty()).then_some(update),
        converging_since,
        placement: max_per_node.map(|m| Placement {
            max_per_node: m as u64,
            nodes: eligible_nodes(service, &snap.nodes),
        }),
        readings,
    }
}

/// The reason that says which stale tasks were not counted as running: tasks the
/// engine still reports running on nodes that are down (`None` without any).
pub fn stale_reason(counted: &crate::swarm::snapshot::RunningTasks) -> Option<String> {
    (counted.stale > 0).then(|| {
        format!(
            "not counted as running:{} (Swarm keeps the record until the node returns)",
            crate::swarm::service::stale_note(counted.stale, &counted.stale_nodes)
                .trim_end_matches(')')
                .replacen(" (", " ", 1)
        )
    })
}

/// Plans every rule-managed service among `services`.
///
/// `capacity`: share this many replicas between them by priority. `read`: reads one
/// metric source. Rows come in the order of `services`; services without a rule are
/// left out.
pub fn plan(
    services: &[Service],
    snap: &Snapshot,
    file: Option<(&std::path::Path, &RulesFile)>,
    capacity: Option<u64>,
    now: f64,
    full_ids: bool,
    read: &dyn Fn(&str) -> Result<f64, String>,
) -> Vec<PlanRow> {
    plan_with_history(
        services,
        snap,
        file,
        capacity,
        now,
        full_ids,
        &read,
        &mut HashMap::new(),
    )
}

/// Like [`plan`], with each service's decision history kept by the caller across
/// calls (`histories`, by service ID), as the `run` agent does: stabilisation
/// windows, step limits and fallbacks then see the earlier decisions.
#[allow(clippy::too_many_arguments)]
pub fn plan_with_history(
    services: &[Service],
    snap: &Snapshot,
    file: Option<(&std::path::Path, &RulesFile)>,
    capacity: Option<u64>,
    now: f64,
    full_ids: bool,
    read: &dyn MetricValues,
    histories: &mut HashMap<String, History>,
) -> Vec<PlanRow> {
    let mut rows = vec![];
    let mut rules: HashMap<usize, Rule> = HashMap::new();
    let counts = snap.running_by_service();
    for (s, labels, source) in rule_inputs(services, file) {
        // `services` may hold services the snapshot's list does not (a caller's
        // selection): those are counted on their own.
        let own;
        let counted = match s.id.as_deref().and_then(|id| counts.get(id)) {
            Some(c) => c,
            None => {
                own = snap.running_tasks(s);
                &own
            }
        };
        let name = service_name(s);
        let parsed = parse_labels(&name, Mode::of(s), &labels);
        let id = s.id.clone().unwrap_or_default();
        let id = if full_ids {
            id
        } else {
            id.chars().take(12).collect()
        };
        let errors: Vec<_> = parsed
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .collect();
        let Some(rule) = parsed.rule else {
            if errors.is_empty() {
                continue; // no rule
            }
            let obs = observe_counted(s, snap, counted, vec![], now);
            rows.push(PlanRow {
                id,
                service: name.clone(),
                current: obs.replicas,
                running: obs.running,
                metric: None,
                desired: obs.replicas,
                action: "error".into(),
                reasons: vec![format!(
                    "the rule has {} error{}: run `docker microscale rules check{} {name}`",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" },
                    if source == "labels" {
                        String::new()
                    } else {
                        format!(" --rules {source}")
                    }
                )],
                source,
            });
            continue;
        };
        let readings = rule
            .metrics
            .iter()
            .map(|m| {
                let key = metric_key(s, &m.source);
                Reading {
                    name: m.name.clone(),
                    value: read.value(&key),
                    coverage: read.coverage(&key),
                }
            })
            .collect();
        let obs = observe_counted(s, snap, counted, readings, now);
        let history = histories
            .entry(s.id.clone().unwrap_or_default())
            .or_default();
        let mut d = decide::decide(&rule, &obs, history, now, GRACE_SECS);
        if let Some(note) = stale_reason(counted) {
            d.reasons.push(note);
        }
        rules.insert(rows.len(), rule);
        rows.push(PlanRow {
            id,
            service: name,
            current: d.current,
            running: obs.running,
            metric: d.metric.as_ref().map(|m| metric_text(m.value, m.target)),
            desired: d.desired,
            action: action_text(d.action).into(),
            reasons: d.reasons,
            source,
        });
    }
    if let Some(capacity) = capacity {
        share(&mut rows, &rules, capacity);
    }
    rows
}

fn action_text(a: Action) -> &'static str {
    match a {
        Action::None => "none",
        Action::ScaleUp => "scale up",
        Action::ScaleDown => "scale down",
        Action::Hold => "hold",
        Action::NotScaled => "not scaled",
    }
}

/// Shares `capacity` replicas between the rows that decided (none, scale up, scale
/// down) by priority; held rows keep what they run and count against the budget.
fn share(rows: &mut [PlanRow], rules: &HashMap<usize, Rule>, capacity: u64) {
    let deciding: Vec<usize> = rules
        .keys()
        .copied()
        .filter(|i| matches!(rows[*i].action.as_str(), "none" | "scale up" | "scale down"))
        .collect();
    // Services on hold keep what they run and count against the budget; services
    // that are not scaled (jobs) do not take part.
    let held: u64 = rules
        .keys()
        .filter(|i| rows[**i].action == "hold")
        .fold(0u64, |sum, i| sum.saturating_add(rows[*i].current));
    let wants: Vec<decide::Want> = deciding
        .iter()
        .map(|i| decide::Want {
            service: rows[*i].service.clone(),
            priority: rules[i].priority,
            min: rules[i].min,
            desired: rows[*i].desired,
        })
        .collect();
    let grants = decide::allocate(capacity.saturating_sub(held), &wants);
    let by_service: BTreeMap<&str, &decide::Grant> =
        grants.iter().map(|g| (g.service.as_str(), g)).collect();
    for i in deciding {
        let row = &mut rows[i];
        if let Some(g) = by_service.get(row.service.as_str()) {
            if held > 0 && !g.reasons.is_empty() {
                row.reasons.push(format!(
                    "capacity {capacity}, of which {held} kept by services on hold: {} to share",
                    capacity.saturating_sub(held)
                ));
            }
            row.reasons.extend(g.reasons.iter().cloned());
            row.desired = g.replicas;
            row.action = match row.desired.cmp(&row.current) {
                std::cmp::Ordering::Greater => "scale up",
                std::cmp::Ordering::Less => "scale down",
                std::cmp::Ordering::Equal => "none",
            }
            .into();
        }
    }
}

/// A plan as computed for `plan` and `apply`: the rows, the swarm it was computed on,
/// and the metric readings (for `apply` to decide again after a version conflict).
pub struct Computed {
    /// One row per rule-managed service, in natural name order.
    pub rows: Vec<PlanRow>,
    /// One error line per named service that does not exist.
    pub missing: Vec<String>,
    /// The swarm as read.
    pub snap: Snapshot,
    /// Metric readings by [`metric_key`].
    pub readings: Readings,
    /// The `--rules` file, if given.
    pub file: Option<(std::path::PathBuf, RulesFile)>,
    /// When the plan was made (seconds since the epoch).
    pub now: f64,
    /// The history config's name ([`crate::store::history::config_name`]).
    pub history_name: String,
    /// Each service's history as read, before this plan's decisions (by service ID).
    pub histories_before: HashMap<String, History>,
    /// After this plan's decisions, with the counts agents last set: what `apply`
    /// writes back. `None` when the stored history could not be read (then nothing
    /// is written).
    pub histories_after: Option<std::collections::BTreeMap<String, crate::store::history::Entry>>,
    /// What the stored history allows (scale-downs are held when it is unreadable).
    pub trust: crate::store::history::Trust,
}

impl Computed {
    /// The `--rules` file as [`plan`] takes it.
    pub fn file_ref(&self) -> Option<(&std::path::Path, &RulesFile)> {
        self.file.as_ref().map(|(p, m)| (p.as_path(), m))
    }

    /// Plans `services` again (their fresh specs) with the same readings and the
    /// history as read, without changing it.
    pub fn replan(&self, services: &[Service]) -> Vec<PlanRow> {
        let mut histories = self.histories_before.clone();
        let mut rows = plan_with_history(
            services,
            &self.snap,
            self.file_ref(),
            None,
            self.now,
            true,
            &self.readings,
            &mut histories,
        );
        let windows = crate::store::history::down_windows(services, self.file_ref());
        guard(&self.trust, &mut rows, self.now, &|id| {
            windows.get(id).copied().unwrap_or(300.0)
        });
        rows
    }
}

/// The history config `plan` and `apply` read: that of `--lease-name` (default
/// [`crate::store::lease::DEFAULT_NAME`]).
///
/// Errors: a lease name Swarm would refuse (a usage error).
pub fn history_name(lease: Option<&str>) -> Result<String, String> {
    let lease = match lease.map(str::trim) {
        None => crate::store::lease::DEFAULT_NAME.to_string(),
        Some(n) => crate::store::lease::check_lease_name(n)?,
    };
    Ok(crate::store::history::config_name(&lease))
}

/// The lease name `--lease-name` gives (checked by [`history_name`] first), or the
/// default.
fn lease_name(lease: Option<&str>) -> String {
    lease
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| crate::store::lease::DEFAULT_NAME.to_string())
}

/// Reads the swarm and the metrics, and plans the services named in `args` (all
/// rule-managed services without names).
///
/// Errors: a bad `--rules` file or `--metric-allow`, an engine error.
pub async fn compute(
    engine: &crate::engine::Engine,
    args: &PlanArgs,
) -> Result<Computed, crate::edge::exit::Failure> {
    use crate::edge::exit::Failure;
    let file = crate::rules::check::load_rules_flag(args.decide.rules.as_deref())?;
    let history_name = history_name(args.lease_name.as_deref()).map_err(Failure::Usage)?;
    let snap = engine
        .snapshot(&Default::default())
        .await
        .map_err(|e| Failure::Error(e.to_string()))?;
    let (mut services, missing) =
        crate::swarm::service::select_services(snap.services.clone(), &args.services, false);
    services.sort_by(|a, b| crate::render::natural_cmp(&service_name(a), &service_name(b)));
    let now = crate::edge::clock::wall_clock();
    let no_trunc = args.no_trunc == Some(true);
    let names = snap.services.iter().map(service_name).collect();
    let allow = args.decide.access.allow(names).map_err(Failure::Usage)?;
    let file_ref = file.as_ref().map(|(p, m)| (p.as_path(), m));
    // The engine source: the agents' combined reading of every node while fresh,
    // else what this engine can see.
    let via = EngineVia::Stored {
        config: crate::store::stats::config_name(&lease_name(args.lease_name.as_deref())),
    };
    let readings = read_metrics(
        engine,
        &snap,
        &services,
        file_ref,
        &allow,
        crate::metrics::DEFAULT_TIMEOUT,
        &via,
    )
    .await;
    // The history the agents keep; unreadable: decided on an empty one, with every
    // scale-down held.
    use crate::store::history;
    let (stored, trust) = match history::read(engine, &history_name).await {
        Ok(s) => {
            let trust = history::Trust::of(&s, now);
            (Some(s.histories(now)), trust)
        }
        Err(e) => (
            None,
            history::Trust {
                unreadable: Some(crate::edge::text::printable(&e.to_string())),
                ..Default::default()
            },
        ),
    };
    let mut histories: HashMap<String, History> = stored
        .iter()
        .flatten()
        .map(|(id, e)| (id.clone(), e.history.clone()))
        .collect();
    let mut computed = Computed {
        rows: vec![],
        missing,
        snap,
        readings,
        file,
        now,
        history_name,
        histories_before: histories.clone(),
        histories_after: None,
        trust,
    };
    let mut rows = plan_with_history(
        &services,
        &computed.snap,
        computed.file_ref(),
        args.decide.capacity,
        now,
        no_trunc,
        &computed.readings,
        &mut histories,
    );
    let windows = history::down_windows(&services, computed.file_ref());
    guard(&computed.trust, &mut rows, now, &|id| {
        windows
            .iter()
            .find(|(full, _)| full.starts_with(id) && !id.is_empty())
            .map_or(300.0, |(_, w)| *w)
    });
    add_notes(&mut rows, &computed.readings.notes);
    computed.histories_after = stored.map(|stored| {
        histories
            .into_iter()
            .map(|(id, h)| {
                let set = stored.get(&id).and_then(|e| e.set);
                (id, history::Entry { history: h, set })
            })
            .collect()
    });
    computed.rows = rows;
    Ok(computed)
}

/// The options `plan`, `apply` and `run` share: where the rules come from, which
/// hosts metrics may be read from, and the capacity budget.
#[derive(Debug, Clone, Args)]
pub struct DecideOptions {
    /// A TOML rules file for services whose labels cannot be changed (it wins over their labels)
    #[arg(long = "rules", value_name = "file", value_parser = any_path)]
    pub rules: Option<PathBuf>,

    #[command(flatten)]
    pub access: MetricAccess,

    /// Share this many replicas between the services by priority
    #[arg(
        long = "capacity",
        value_name = "replicas",
        allow_negative_numbers = true,
        value_parser = crate::edge::argv::replica_count
    )]
    pub capacity: Option<u64>,
}

/// Turns the scale-downs of `rows` that an unreadable history (`trust`) does not allow
/// into holds, saying why and until when. `down_window(id)` is the service's
/// scale-down window (seconds); a service whose stored entry was unreadable
/// decides on a fresh history, so it may scale down once that history covers a
/// whole window.
pub fn guard(
    trust: &crate::store::history::Trust,
    rows: &mut [PlanRow],
    now: f64,
    down_window: &dyn Fn(&str) -> f64,
) {
    for row in rows.iter_mut().filter(|r| r.action == "scale down") {
        let why = if let Some(e) = &trust.unreadable {
            Some(format!(
                "the decision history in the swarm cannot be read ({e}): no scale-down on an unknown window; holding {}",
                row.current
            ))
        } else {
            trust.bad.iter().find(|(id, _)| id.starts_with(&row.id) && !row.id.is_empty()).and_then(|(_, (since, e))| {
                let until = since + down_window(&row.id);
                (now < until).then(|| {
                    format!(
                        "the stored decision history cannot be read ({e}): no scale-down before {} (a whole scale-down window of fresh history); holding {}",
                        crate::store::history::epoch_text(until),
                        row.current
                    )
                })
            })
        };
        if let Some(why) = why {
            row.reasons.push(crate::edge::text::printable(&why));
            row.desired = row.current;
            row.action = "hold".into();
        }
    }
}

/// Options of `docker microscale plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Services to plan, by name or ID (default: every service with a rule)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,

    #[command(flatten)]
    pub decide: DecideOptions,

    /// The agents' lease; the decision history read is the Swarm config <lease>-history (default microscale-agent-lease)
    #[arg(long = "lease-name", value_name = "string")]
    pub lease_name: Option<String>,

    /// Exit 0 when nothing would change, 2 when changes are pending, 1 on errors
    #[arg(long = "detailed-exitcode", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub detailed_exitcode: Option<bool>,

    /// Format output: 'table' (default), 'json' (one object per line) or a Go template (man 7 docker-microscale-format)
    #[arg(long = "format", value_name = "string")]
    pub format: Option<String>,

    /// Don't truncate output
    #[arg(long = "no-trunc", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub no_trunc: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(name: &str, labels: serde_json::Value, replicas: i64, running: u64) -> Service {
        serde_json::from_value(json!({
            "ID": format!("id-{name}"),
            "UpdatedAt": "2020-01-01T00:00:00Z",
            "Spec": {"Name": name, "Labels": labels, "Mode": {"Replicated": {"Replicas": replicas}},
                     "TaskTemplate": {"ContainerSpec": {"Image": "x"}}},
            "ServiceStatus": {"RunningTasks": running, "DesiredTasks": replicas}
        }))
        .unwrap()
    }

    fn snap(services: Vec<Service>) -> Snapshot {
        Snapshot {
            services,
            tasks: vec![],
            nodes: vec![],
        }
    }

    #[test]
    fn metrics_decide_and_unreadable_metrics_hold() {
        let s = vec![
            service(
                "queue",
                json!({"microscale.max": "12", "microscale.metric": "redis://q/0?list=a", "microscale.target": "10"}),
                4,
                4,
            ),
            service("plain", json!({}), 1, 1),
            service("broken", json!({"microscale.max": "x"}), 2, 2),
        ];
        let sn = snap(s.clone());
        let rows = plan(&s, &sn, None, None, 2e9, false, &|_| Ok(130.0));
        assert_eq!(rows.len(), 2, "services without a rule are left out");
        let q = &rows[0];
        // 13, capped by max 12, then HPA's default scale-up limit: +4 or +100 %.
        assert_eq!(
            (q.current, q.desired, q.action.as_str()),
            (4, 8, "scale up")
        );
        assert_eq!(q.metric.as_deref(), Some("130 / 10"));
        assert!(
            q.reasons.join("; ").contains(
                "capped by max 12; scale-up limited to 4/15s, 100%/15s (HPA's default), the most of them → 8"
            ),
            "{:?}",
            q.reasons
        );
        assert_eq!(rows[1].action, "error");
        assert!(rows[1].reasons[0].contains("rules check broken"));
        let rows = plan(&s, &sn, None, None, 2e9, false, &unread_metric);
        assert_eq!((rows[0].desired, rows[0].action.as_str()), (4, "hold"));
        assert!(
            rows[0]
                .reasons
                .join(" ")
                .contains("status reads metrics with --metrics"),
            "{:?}",
            rows[0].reasons
        );
    }

    /// A swarm of `nodes` `(id, hostname, state, availability)` running `tasks`
    /// `(node, desired, state)` of `services[0]`.
    fn swarm(
        services: Vec<Service>,
        nodes: &[(&str, &str, &str, &str)],
        tasks: &[(&str, &str, &str)],
    ) -> Snapshot {
        let id = services[0].id.clone().unwrap();
        Snapshot {
            tasks: tasks
                .iter()
                .map(|(node, desired, state)| {
                    serde_json::from_value(json!({
                        "ServiceID": id, "NodeID": node, "DesiredState": desired,
                        "Status": {"State": state}
                    }))
                    .unwrap()
                })
                .collect(),
            nodes: nodes
                .iter()
                .map(|(id, host, state, availability)| {
                    serde_json::from_value(json!({
                        "ID": id, "Description": {"Hostname": host},
                        "Status": {"State": state},
                        "Spec": {"Role": "worker", "Availability": availability}
                    }))
                    .unwrap()
                })
                .collect(),
            services,
        }
    }

    fn queue(replicas: i64, engine_running: u64) -> Vec<Service> {
        vec![service(
            "queue",
            json!({"microscale.max": "12", "microscale.metric": "redis://q/0?list=a", "microscale.target": "10"}),
            replicas,
            engine_running,
        )]
    }

    #[test]
    fn a_dead_worker_never_holds_the_decision() {
        // w3 died with a task; Swarm replaced it on w1, and the engine still counts the
        // dead one: RunningTasks 4 for 3 replicas.
        let s = queue(3, 4);
        let sn = swarm(
            s.clone(),
            &[
                ("n1", "w1", "ready", "active"),
                ("n2", "w2", "ready", "active"),
                ("n3", "w3", "down", "active"),
            ],
            &[
                ("n1", "running", "running"),
                ("n1", "running", "running"),
                ("n2", "running", "running"),
                ("n3", "shutdown", "running"),
            ],
        );
        assert_eq!(observe(&s[0], &sn, vec![], 2e9).running, 3);
        let rows = plan(&s, &sn, None, None, 2e9, false, &|_| Ok(50.0));
        let r = &rows[0];
        assert_eq!(
            (r.running, r.desired, r.action.as_str()),
            (3, 5, "scale up")
        );
        assert!(
            !r.reasons.iter().any(|x| x.contains("converg")),
            "{:?}",
            r.reasons
        );
        assert_eq!(
            r.reasons.last().unwrap(),
            "not counted as running: 1 stale task on down node w3 (Swarm keeps the record until the node returns)"
        );
        // The same swarm read without the dead node's task (the engine's count alone)
        // is what held every decision before: not converged, 4/3.
        let blind = Snapshot {
            tasks: vec![],
            nodes: vec![],
            services: s.clone(),
        };
        let rows = plan(&s, &blind, None, None, 2e9, false, &|_| Ok(50.0));
        assert_eq!(rows[0].action, "hold");
        assert!(rows[0].reasons.join(" ").contains("not converged (4/3"));

        // The node left the swarm (`docker node rm --force`): still stale.
        let gone = swarm(
            s.clone(),
            &[
                ("n1", "w1", "ready", "active"),
                ("n2", "w2", "ready", "active"),
            ],
            &[
                ("n1", "running", "running"),
                ("n1", "running", "running"),
                ("n2", "running", "running"),
                ("n3", "shutdown", "running"),
            ],
        );
        assert_eq!(observe(&s[0], &gone, vec![], 2e9).running, 3);
    }

    #[test]
    fn a_replacement_still_starting_is_a_real_shortfall() {
        // The dead node's task is stale, its replacement not yet running: 2 of 3 run,
        // and the hold says so (it ends when the replacement runs).
        let s = queue(3, 3);
        let sn = swarm(
            s.clone(),
            &[
                ("n1", "w1", "ready", "active"),
                ("n3", "w3", "down", "active"),
            ],
            &[
                ("n1", "running", "running"),
                ("n1", "running", "running"),
                ("n1", "running", "starting"),
                ("n3", "shutdown", "running"),
            ],
        );
        let rows = plan(&s, &sn, None, None, 2e9, false, &|_| Ok(50.0));
        assert_eq!((rows[0].running, rows[0].action.as_str()), (2, "hold"));
        assert!(rows[0].reasons.join(" ").contains("(2/3 running"));
    }

    #[test]
    fn unknown_disconnected_and_drained_nodes_run_their_tasks() {
        // `unknown` (after a leader election) and `disconnected` nodes keep their
        // tasks: Swarm replaces none of them, so they count and the decision goes on.
        let s = queue(3, 3);
        let sn = swarm(
            s.clone(),
            &[
                ("n1", "w1", "ready", "active"),
                ("n2", "w2", "unknown", "active"),
                ("n3", "w3", "disconnected", "active"),
            ],
            &[
                ("n1", "running", "running"),
                ("n2", "running", "running"),
                ("n3", "running", "running"),
            ],
        );
        let rows = plan(&s, &sn, None, None, 2e9, false, &|_| Ok(50.0));
        assert_eq!((rows[0].running, rows[0].action.as_str()), (3, "scale up"));
        assert!(
            !rows[0]
                .reasons
                .iter()
                .any(|r| r.contains("stale") || r.contains("converg")),
            "{:?}",
            rows[0].reasons
        );

        // A drain moves tasks: the drained node's task still runs (desired shutdown)
        // while its replacement starts; the engine counts it, and so does the plan.
        let s = queue(2, 2);
        let sn = swarm(
            s.clone(),
            &[
                ("n1", "w1", "ready", "active"),
                ("n2", "w2", "ready", "drain"),
            ],
            &[
                ("n1", "running", "running"),
                ("n1", "running", "starting"),
                ("n2", "shutdown", "running"),
            ],
        );
        assert_eq!(observe(&s[0], &sn, vec![], 2e9).running, 2);
        let rows = plan(&s, &sn, None, None, 2e9, false, &|_| Ok(50.0));
        assert!(
            !rows[0].reasons.iter().any(|r| r.contains("stale")),
            "{:?}",
            rows[0].reasons
        );
    }

    #[test]
    fn capacity_is_shared_by_priority() {
        let s = vec![
            service(
                "high",
                json!({"microscale.max": "10", "microscale.metric": "redis://q/0?list=a", "microscale.target": "1", "microscale.priority": "1", "microscale.scale-up.max-step": "none"}),
                2,
                2,
            ),
            service(
                "low",
                json!({"microscale.max": "10", "microscale.metric": "redis://q/0?list=b", "microscale.target": "1", "microscale.priority": "2", "microscale.scale-up.max-step": "none"}),
                2,
                2,
            ),
        ];
        let sn = snap(s.clone());
        let rows = plan(&s, &sn, None, Some(10), 2e9, false, &|_| Ok(8.0));
        let total: u64 = rows.iter().map(|r| r.desired).sum();
        assert!(total <= 10, "{rows:?}");
        assert_eq!(rows[0].desired, 8);
        assert_eq!(rows[1].desired, 2);
    }

    #[test]
    fn the_reason_cell_shows_the_cause_before_it_cuts() {
        // Two metrics: the readable one is reasoned first, and the cause of the other
        // came after 80 columns of it, where the cut fell.
        let s = vec![service(
            "orders-api",
            json!({"microscale.max": "10",
                   "microscale.metric.http-requests": "prometheus://127.0.0.1:9090?query=sum(rate(http_requests_total[1m]))",
                   "microscale.target.http-requests": "100",
                   "microscale.metric.queue": "redis://127.0.0.1:6379/0?list=jobs",
                   "microscale.target.queue": "50"}),
            2,
            2,
        )];
        let sn = snap(s.clone());
        let read = |key: &str| {
            if key.starts_with("redis") {
                Err("cannot connect to redis at 127.0.0.1:6379: connection refused: is redis running there? (reading redis://127.0.0.1:6379/0?list=jobs)".to_string())
            } else {
                Ok(150.0)
            }
        };
        let rows = plan(&s, &sn, None, None, 2e9, false, &read);
        let reasons = &rows[0].reasons;
        let failed = reasons
            .iter()
            .position(|r| r.contains("unreadable"))
            .unwrap();
        assert!(
            failed > 0,
            "the readable metric is reasoned first: {reasons:?}"
        );
        let end_cut = crate::edge::text::ellipsize(&reasons.join("; "), REASON_WIDTH);
        assert!(!end_cut.contains("connection refused"), "{end_cut}");

        let cell = reason_cell(reasons, Some(REASON_WIDTH));
        assert!(
            cell.starts_with(r#"metric "queue" unreadable: cannot connect to redis at 127.0.0.1:6379: connection refused"#),
            "{cell}"
        );
        assert!(unicode_width::UnicodeWidthStr::width(cell.as_str()) <= REASON_WIDTH);
        let table = crate::cmd::plan::table(&rows, false);
        assert!(table.contains("connection refused"), "{table}");
        // Whole with --no-trunc: every reason, the cause still first; JSON keeps
        // the order.
        let whole = reason_cell(reasons, None);
        assert!(whole.starts_with(r#"metric "queue" unreadable"#), "{whole}");
        assert!(whole.contains("http-requests"), "{whole}");
        assert_eq!(whole.len(), reasons.join("; ").len());
        // Nothing failed: the order stays.
        let fine = vec![
            "metric 5 / target 10 → 1".to_string(),
            "capped by min 2".into(),
        ];
        assert_eq!(reason_cell(&fine, Some(100)), fine.join("; "));
        let broken = vec![
            "converging".to_string(),
            "the rule has 1 error: run x".into(),
        ];
        assert_eq!(
            reason_cell(&broken, Some(100)),
            "the rule has 1 error: run x; converging"
        );
    }
}
