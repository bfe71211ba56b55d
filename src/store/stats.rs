//! The combined engine stats of every node, kept in the swarm as the Swarm config
//! `<lease>-stats` (labels: one per service, with the time they were read), so that
//! `plan`, `apply`, `status --metrics` and `metric` on any machine use the lease
//! holder's reading while it is fresh ([`FRESH_SECS`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::service::segment;
use crate::engine::{Engine, EngineError};
use crate::metrics::engine::Kind;

/// One service's combined reading of one kind, as kept in the swarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StoredKind {
    /// The average over the measured tasks (percent); absent when none was measured.
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Running tasks measured.
    #[serde(rename = "n", default)]
    pub measured: u64,
    /// Running tasks then.
    #[serde(rename = "of", default)]
    pub total: u64,
    /// Nodes whose tasks were not measured (hostnames).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Why nothing was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StoredKind {
    /// Whether this reading could have been written by an agent (the config is
    /// untrusted: any manager can write it): a value that is a plausible
    /// utilisation ([`crate::metrics::engine::plausible_percent`]) from at least one
    /// measured task, at most as many tasks measured as ran, nodes named missing
    /// exactly when some were not measured, and no more of them than tasks not
    /// measured, each name at most 253 characters.
    ///
    /// Errors say what is wrong, for the reasons (`plan`: not used).
    pub fn sane(&self) -> Result<(), String> {
        if let Some(v) = self.value {
            if !crate::metrics::engine::plausible_percent(v) {
                let shown = if v.abs() < 1e6 {
                    format!("{v}")
                } else {
                    format!("{v:e}")
                };
                return Err(format!(
                    "a value of {shown} % is not a utilisation (0 to {} %)",
                    crate::metrics::engine::MAX_PERCENT
                ));
            }
            if self.measured == 0 {
                return Err("a value from no measured task".into());
            }
        }
        if self.measured > self.total {
            return Err(format!(
                "{} tasks measured of {} running",
                self.measured, self.total
            ));
        }
        let unmeasured = self.total - self.measured;
        if (unmeasured == 0) != self.missing.is_empty()
            || self.missing.len() as u64 > unmeasured
            || self.missing.iter().any(|m| m.is_empty() || m.len() > 253)
        {
            return Err(format!(
                "{} nodes named missing for {unmeasured} tasks not measured",
                self.missing.len()
            ));
        }
        Ok(())
    }
}

/// One service's combined readings, as kept in the swarm: label
/// `microscale.stats.<service ID>`, JSON `{"cpu": {"v": 82.5, "n": 3, "of": 5,
/// "missing": ["n4", "n5"]}, "memory": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StoredService {
    /// `engine://cpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<StoredKind>,
    /// `engine://memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<StoredKind>,
}

impl StoredService {
    /// The reading of `kind`.
    pub fn get(&self, kind: Kind) -> Option<&StoredKind> {
        match kind {
            Kind::Cpu => self.cpu.as_ref(),
            Kind::Memory => self.memory.as_ref(),
        }
    }

    /// Sets the reading of `kind`.
    pub fn set(&mut self, kind: Kind, k: StoredKind) {
        match kind {
            Kind::Cpu => self.cpu = Some(k),
            Kind::Memory => self.memory = Some(k),
        }
    }
}

/// The combined reading the holder keeps in the swarm (and the command line reads).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stored {
    /// When the nodes were read, seconds since the Unix epoch (the holder's clock).
    pub time: f64,
    /// Who wrote it (the lease holder id).
    pub writer: String,
    /// The nodes (IDs) whose agents answered.
    pub nodes: Vec<String>,
    /// Service ID → its readings.
    pub services: BTreeMap<String, StoredService>,
}

/// Label prefix of one service's readings (the service ID follows).
pub const LABEL_PREFIX: &str = "microscale.stats.";

/// Label: when the nodes were read, seconds since the Unix epoch.
pub const LABEL_TIME: &str = "microscale.stats-time";

/// Label: who wrote it.
pub const LABEL_WRITER: &str = "microscale.stats-writer";

/// Label: JSON array of the node IDs whose agents answered.
pub const LABEL_NODES: &str = "microscale.stats-nodes";

/// The config's data (Swarm requires some).
const DATA: &str = "docker-microscale engine stats from every node: one microscale.stats.<service ID> label per service; see docs/agent.md\n";

/// The stats config of the lease `lease`: `<lease>-stats` (cut to Swarm's 64
/// characters).
pub fn config_name(lease: &str) -> String {
    let mut base: String = lease.chars().take(64 - "-stats".len()).collect();
    base.push_str("-stats");
    base
}

/// The labels of `stored`.
pub(crate) fn labels_of(stored: &Stored) -> serde_json::Map<String, Value> {
    let mut labels = serde_json::Map::new();
    labels.insert(
        LABEL_TIME.into(),
        Value::from(format!("{:.3}", stored.time)),
    );
    labels.insert(LABEL_WRITER.into(), Value::from(stored.writer.clone()));
    labels.insert(
        LABEL_NODES.into(),
        Value::from(serde_json::to_string(&stored.nodes).unwrap_or_default()),
    );
    for (id, s) in &stored.services {
        labels.insert(
            format!("{LABEL_PREFIX}{id}"),
            Value::from(serde_json::to_string(s).unwrap_or_default()),
        );
    }
    labels
}

/// Parses a config answer (`GET /configs/{name}`); labels that do not parse are
/// left out (a service without its label is measured by the reader itself).
pub(crate) fn parse(value: &Value) -> Stored {
    let Some(labels) = value["Spec"]["Labels"].as_object() else {
        return Stored::default();
    };
    let text = |k: &str| labels.get(k).and_then(Value::as_str).unwrap_or_default();
    Stored {
        time: text(LABEL_TIME)
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite())
            .unwrap_or(0.0),
        writer: text(LABEL_WRITER).to_string(),
        nodes: serde_json::from_str(text(LABEL_NODES)).unwrap_or_default(),
        services: labels
            .iter()
            .filter_map(|(k, v)| {
                let id = k.strip_prefix(LABEL_PREFIX)?;
                let s: StoredService = serde_json::from_str(v.as_str()?).ok()?;
                Some((id.to_string(), s))
            })
            .collect(),
    }
}

/// Reads the stats config `name`; `None` when there is none (no agent reads every
/// node's stats).
///
/// Errors: the engine cannot be read, or answers something that is not JSON.
pub async fn read_stored(engine: &Engine, name: &str) -> Result<Option<Stored>, EngineError> {
    let path = format!("/configs/{}", segment(name));
    match engine.raw_request(http::Method::GET, &path, None).await {
        Ok(bytes) => {
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| EngineError::Daemon {
                status: 200,
                message: format!("the engine's answer for config {name} is not JSON: {e}"),
            })?;
            if value["Spec"]["Name"].as_str() != Some(name) {
                return Ok(None);
            }
            Ok(Some(parse(&value)))
        }
        Err(EngineError::Daemon { status: 404, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `stored` into the stats config `name` (all its labels: the holder owns
/// them), creating it when missing. Compare-and-set on the version read, retried on
/// a conflict (at most 3 times). Returns the bytes of the labels written.
///
/// Errors: the engine refuses (a worker), keeps conflicting, or is unreachable.
pub async fn write_stored(
    engine: &Engine,
    name: &str,
    stored: &Stored,
) -> Result<usize, EngineError> {
    let labels = labels_of(stored);
    let bytes = labels
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    let mut last = None;
    for _ in 0..3 {
        let path = format!("/configs/{}", segment(name));
        let current = match engine.raw_request(http::Method::GET, &path, None).await {
            Ok(b) => {
                Some(
                    serde_json::from_slice::<Value>(&b).map_err(|e| EngineError::Daemon {
                        status: 200,
                        message: format!("the engine's answer for config {name} is not JSON: {e}"),
                    })?,
                )
            }
            Err(EngineError::Daemon { status: 404, .. }) => None,
            Err(e) => return Err(e),
        };
        let current = current.as_ref().map(|v| {
            (
                v["ID"].as_str().unwrap_or_default(),
                v["Version"]["Index"].as_u64().unwrap_or_default(),
                &v["Spec"],
            )
        });
        let result = super::put_config_labels(engine, name, current, &labels, DATA).await;
        match result {
            Ok(_) => return Ok(bytes),
            Err(e) if super::is_conflict(&e) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(EngineError::Daemon {
        status: 409,
        message: format!("the config {name} keeps changing: stats not written"),
    }))
}

/// The holder's writes of the combined reading: at most one every
/// [`PUBLISH_EVERY_SECS`].
#[derive(Debug, Default)]
pub struct Publisher {
    last: Option<f64>,
}

impl Publisher {
    /// Whether a reading made at `now` is due to be written.
    pub fn due(&self, now: f64) -> bool {
        self.last
            .is_none_or(|l| now - l >= PUBLISH_EVERY_SECS || now < l)
    }

    /// Writes `stored` when due. Returns the bytes written (`None`: not due).
    ///
    /// Errors: as [`write_stored`]; the next pass tries again.
    pub async fn publish(
        &mut self,
        engine: &Engine,
        name: &str,
        stored: &Stored,
    ) -> Result<Option<usize>, EngineError> {
        if !self.due(stored.time) {
            return Ok(None);
        }
        let n = write_stored(engine, name, stored).await?;
        self.last = Some(stored.time);
        Ok(Some(n))
    }
}

/// How old a reading made at `time` is at `now`, in whole seconds, for messages
/// (`12s`); a reading from the future (clocks apart) is `0s`.
pub fn age_text(time: f64, now: f64) -> String {
    format!("{}s", (now - time).max(0.0).round() as u64)
}

/// Whether a reading made at `time` is fresh at `now`: at most [`FRESH_SECS`] old,
/// and not more than 5 s in the future (managers' clocks apart).
pub fn fresh(time: f64, now: f64) -> bool {
    time > 0.0 && now - time <= FRESH_SECS && time - now <= 5.0
}

/// How old (seconds) the stored combined reading may be for the command line to use
/// it: four passes at the default 15 s interval. Older, it measures what its own
/// engine can see.
pub const FRESH_SECS: f64 = 60.0;

/// The shortest time (seconds) between two writes of the stored reading by one
/// holder (every pass at the default 15 s interval; every 5 s at shorter ones).
pub const PUBLISH_EVERY_SECS: f64 = 5.0;

/// Why not every node of a multi-node swarm has an agent serving its tasks' stats
/// (for `rules check`); `None` when every ready node has one, or the swarm has one
/// node. A node has one when a fresh `stored` reading ([`fresh`] at `now`) includes
/// its answer, or when a global service whose command has `--stats-listen` runs a
/// task on it (running, or starting: its health check not passed yet). Any number of
/// such services count together: deploy/stack.yml's `agent` (on the managers) and
/// `collector` (`run --collector`, on the workers).
pub fn missing_agents(
    snap: &crate::swarm::snapshot::Snapshot,
    stored: Option<&Stored>,
    now: f64,
) -> Option<String> {
    use bollard::models::{NodeState, TaskState};
    let live: BTreeMap<&str, String> = snap
        .nodes
        .iter()
        .filter(|n| n.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY))
        .filter_map(|n| {
            let id = n.id.as_deref()?;
            Some((id, crate::metrics::engine::hostname(snap, id)))
        })
        .collect();
    if live.len() <= 1 {
        return None;
    }
    let mut covered: BTreeSet<&str> = BTreeSet::new();
    if let Some(st) = stored.filter(|st| fresh(st.time, now)) {
        covered.extend(st.nodes.iter().map(String::as_str));
    }
    let collectors: BTreeSet<&str> = snap
        .services
        .iter()
        .filter(|s| crate::swarm::service::Mode::of(s) == crate::swarm::service::Mode::Global)
        .filter(|s| {
            let c = s
                .spec
                .as_ref()
                .and_then(|x| x.task_template.as_ref())
                .and_then(|t| t.container_spec.as_ref());
            c.into_iter()
                .flat_map(|c| c.args.iter().flatten().chain(c.command.iter().flatten()))
                .any(|a| a.starts_with("--stats-listen"))
        })
        .filter_map(|s| s.id.as_deref())
        .collect();
    covered.extend(
        snap.tasks
            .iter()
            .filter(|t| {
                t.service_id
                    .as_deref()
                    .is_some_and(|id| collectors.contains(id))
            })
            // Starting: running, its health check not passed yet.
            .filter(|t| {
                matches!(
                    t.status.as_ref().and_then(|s| s.state),
                    Some(TaskState::RUNNING | TaskState::STARTING)
                )
            })
            .filter_map(|t| t.node_id.as_deref()),
    );
    let mut without: Vec<&str> = live
        .iter()
        .filter(|(id, _)| !covered.contains(**id))
        .map(|(_, h)| h.as_str())
        .collect();
    without.sort_by(|a, b| crate::render::natural_cmp(a, b));
    if without.is_empty() {
        return None;
    }
    let shown: Vec<String> = without
        .iter()
        .take(8)
        .map(|h| crate::edge::text::printable(h))
        .collect();
    Some(format!(
        "an agent on every node: this swarm has {} ready nodes and {} of them ({}{}) run no agent serving its tasks' stats (no task of a global service with --stats-listen there, such as deploy/stack.yml's `agent` on the managers and `collector` on the workers, and no fresh reading of theirs), so engine:// measures only some tasks and plan, apply and run hold every scale-down on that partial data; deploy the agent with deploy/stack.yml (docs/agent.md, Engine stats from every node)",
        live.len(),
        without.len(),
        shown.join(", "),
        if without.len() > 8 { ", …" } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_and_publishing_cadence() {
        let now = 1_800_000_000.0;
        assert!(fresh(now - 59.0, now));
        assert!(!fresh(now - 61.0, now));
        assert!(fresh(now + 4.0, now));
        assert!(!fresh(now + 6.0, now), "a clock far ahead is not trusted");
        assert!(!fresh(0.0, now));
        assert_eq!(age_text(now - 12.4, now), "12s");
        let p = Publisher { last: Some(now) };
        assert!(!p.due(now + 4.9));
        assert!(p.due(now + 5.0));
        assert!(p.due(now - 1.0), "a clock set back writes again");
        assert!(Publisher::default().due(now));
    }
}
