//! The engine source: CPU or memory utilisation of a service's running tasks, from the
//! container stats API (`GET /containers/{id}/stats?stream=false`).
//!
//! ```text
//! engine://cpu       percent of the task's CPU limit (Resources.Limits.NanoCPUs),
//!                    or of the node's CPUs when the task has no limit
//! engine://memory    percent of the task's memory limit, or of the node's memory;
//!                    page cache is not counted (cgroup v1 `cache`, v2 `inactive_file`)
//! ```
//!
//! Stats are only reachable through the engine of the node a container runs on. So
//! each node's agent measures its own node's running tasks ([`Collector::collect`],
//! one [`NodeStats`] per node, which it serves to the other agents: `docs/agent.md`,
//! "Engine stats from every node"), and the reader puts the nodes' answers together
//! per service ([`combine`]): the value is the average over the running tasks
//! measured, with a [`Coverage`] saying how many of them that was and where the
//! others run. A command without the agents' reading measures only the tasks on the
//! engine it talks to, and the decision core holds any scale-down on that partial
//! data (`crate::decide`, steps 4 and 9).

use std::collections::{BTreeSet, HashMap};

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions, StatsOptions};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::metrics::Coverage;
use crate::swarm::snapshot::Snapshot;

/// What the engine source measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// CPU, in percent of the limit.
    Cpu,
    /// Memory, in percent of the limit.
    Memory,
}

impl Kind {
    /// `engine://cpu` or `engine://memory`.
    pub fn parse(uri: &str) -> Result<Kind, String> {
        let rest = uri
            .trim()
            .strip_prefix("engine://")
            .ok_or("not an engine:// metric URI")?;
        match rest.trim_end_matches('/') {
            "cpu" => Ok(Kind::Cpu),
            "memory" => Ok(Kind::Memory),
            other => Err(format!(
                "engine://{other}: the engine source reads engine://cpu or engine://memory"
            )),
        }
    }
}

impl Kind {
    /// `engine://cpu` or `engine://memory`.
    pub fn uri(self) -> &'static str {
        match self {
            Kind::Cpu => "engine://cpu",
            Kind::Memory => "engine://memory",
        }
    }
}

/// CPU percent of one stats answer, of `limit_cores` (the task's limit) or of the
/// node's CPUs. `None` when the answer lacks the numbers (no previous sample yet).
pub fn cpu_percent(s: &ContainerStatsResponse, limit_cores: Option<f64>) -> Option<f64> {
    let cpu = s.cpu_stats.as_ref()?;
    let pre = s.precpu_stats.as_ref()?;
    let total = cpu.cpu_usage.as_ref()?.total_usage? as f64;
    let pre_total = pre.cpu_usage.as_ref()?.total_usage? as f64;
    let system = cpu.system_cpu_usage? as f64;
    let pre_system = pre.system_cpu_usage? as f64;
    let (cpu_delta, system_delta) = (total - pre_total, system - pre_system);
    if system_delta <= 0.0 || cpu_delta < 0.0 {
        return None;
    }
    let online = cpu
        .online_cpus
        .map(f64::from)
        .or_else(|| {
            cpu.cpu_usage
                .as_ref()?
                .percpu_usage
                .as_ref()
                .map(|v| v.len() as f64)
        })
        .filter(|n| *n > 0.0)?;
    let cores_used = cpu_delta / system_delta * online;
    let of = limit_cores.filter(|l| *l > 0.0).unwrap_or(online);
    Some(cores_used / of * 100.0)
}

/// Memory percent of one stats answer, of `limit_bytes` (the task's limit) or of the
/// container's limit as the engine reports it (the node's memory when unlimited).
/// Page cache is left out: cgroup v2 `inactive_file`, cgroup v1 `cache`.
pub fn memory_percent(s: &ContainerStatsResponse, limit_bytes: Option<f64>) -> Option<f64> {
    let m = s.memory_stats.as_ref()?;
    let usage = m.usage? as f64;
    let stats = m.stats.clone().unwrap_or_default();
    let cache = stats
        .get("inactive_file")
        .or_else(|| stats.get("total_inactive_file"))
        .or_else(|| stats.get("cache"))
        .copied()
        .unwrap_or(0) as f64;
    let used = (usage - cache).max(0.0);
    let limit = limit_bytes
        .filter(|l| *l > 0.0)
        .or(m.limit.map(|l| l as f64))
        .filter(|l| *l > 0.0)?;
    Some(used / limit * 100.0)
}

/// Most tasks one node's answer carries; beyond, the answer is cut and says so
/// ([`NodeStats::truncated`]).
pub const MAX_TASKS: usize = 2000;

/// Stats calls made at once on one engine.
const CONCURRENT_STATS: usize = 32;

/// The Swarm task label Docker puts on every task's container.
const TASK_LABEL: &str = "com.docker.swarm.task.id";
/// The Swarm service label Docker puts on every task's container.
const SERVICE_LABEL: &str = "com.docker.swarm.service.id";

/// One node as its own engine describes it (`GET /info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRef {
    /// The Swarm node ID (`Swarm.NodeID`).
    pub id: String,
    /// The node's hostname (`Name`).
    pub hostname: String,
}

/// One running task's utilisation, as measured on its node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStats {
    /// The Swarm task ID (the container's `com.docker.swarm.task.id` label).
    pub task: String,
    /// The Swarm service ID (`com.docker.swarm.service.id`).
    pub service: String,
    /// CPU in percent of the task's CPU limit (`HostConfig.NanoCpus`), or of the
    /// node's CPUs without one; `null` when it could not be measured (the container
    /// has no previous sample yet, or its stats did not come in time).
    pub cpu: Option<f64>,
    /// Memory without the page cache in percent of the task's memory limit, or of the
    /// node's memory; `null` when it could not be measured.
    pub memory: Option<f64>,
}

/// What one node's agent serves: its running tasks' stats, measured at `time`.
///
/// JSON: `{"node": {"id": "…", "hostname": "n3"}, "time": "2026-12-07T20:40:00.5Z",
/// "tasks": [{"task": "…", "service": "…", "cpu": 12.5, "memory": 3.25}],
/// "truncated": false}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    /// The node measured.
    pub node: NodeRef,
    /// When the measure ended, RFC 3339 (the node's clock).
    pub time: String,
    /// Its running tasks (at most [`MAX_TASKS`]).
    pub tasks: Vec<TaskStats>,
    /// Some running tasks were left out ([`MAX_TASKS`]).
    #[serde(default)]
    pub truncated: bool,
}

/// Who this engine is in the swarm (`GET /info`): its node, and whether it is a
/// manager that can read the swarm (`Swarm.ControlAvailable`).
///
/// Errors: the engine does not answer, or is not part of a swarm.
pub async fn whoami(engine: &Engine) -> Result<(NodeRef, bool), String> {
    let info = engine
        .within_deadline(engine.docker.info())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| engine.classify(e).to_string())?;
    let swarm = info.swarm.unwrap_or_default();
    let id = swarm.node_id.unwrap_or_default();
    if id.is_empty() {
        return Err("this engine is not part of a swarm (docker info: Swarm: inactive)".into());
    }
    Ok((
        NodeRef {
            id,
            hostname: info.name.unwrap_or_default(),
        },
        swarm.control_available == Some(true),
    ))
}

/// A container's CPU limit (cores) and memory limit (bytes); `None`: none.
type Limits = (Option<f64>, Option<f64>);

/// Measures the running tasks of this engine's node. Keeps each container's limits
/// (`HostConfig.NanoCpus`, `HostConfig.Memory`, from one inspect) between calls: they
/// do not change while a container lives.
#[derive(Debug, Default)]
pub struct Collector {
    limits: std::sync::Mutex<HashMap<String, Limits>>,
}

impl Collector {
    /// A collector with an empty cache.
    pub fn new() -> Collector {
        Collector::default()
    }

    /// The stats of this node's running task containers (`GET /containers/json`,
    /// filtered by the Swarm task label), of the services in `services` only when
    /// given (service IDs); each container's `GET /containers/{id}/stats?stream=false`
    /// (the engine takes about a second, for the CPU delta), at most 32 at a time,
    /// each within `timeout`.
    ///
    /// Errors: the engine cannot be read (`GET /info`, the container list), or is not
    /// in a swarm. A container whose stats do not come is a task with `null` values.
    pub async fn collect(
        &self,
        engine: &Engine,
        services: Option<&BTreeSet<String>>,
        timeout: std::time::Duration,
    ) -> Result<NodeStats, String> {
        let (node, _) = whoami(engine).await?;
        let filters = HashMap::from([
            ("label".to_string(), vec![TASK_LABEL.to_string()]),
            ("status".to_string(), vec!["running".to_string()]),
        ]);
        let list = engine
            .within_deadline(engine.docker.list_containers(Some(ListContainersOptions {
                all: false,
                filters: Some(filters),
                ..Default::default()
            })))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| engine.classify(e).to_string())?;
        let mut wanted: Vec<(String, String, String)> = list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                let task = labels.get(TASK_LABEL)?.clone();
                let service = labels.get(SERVICE_LABEL)?.clone();
                let keep = services.is_none_or(|s| s.contains(&service));
                keep.then_some((c.id?, task, service))
            })
            .collect();
        wanted.sort_by(|a, b| (&a.2, &a.1).cmp(&(&b.2, &b.1)));
        let truncated = wanted.len() > MAX_TASKS;
        wanted.truncate(MAX_TASKS);
        if let Ok(mut cache) = self.limits.lock() {
            let live: std::collections::HashSet<&str> =
                wanted.iter().map(|(c, _, _)| c.as_str()).collect();
            cache.retain(|c, _| live.contains(c.as_str()));
        }
        let tasks = futures_util::stream::iter(wanted)
            .map(|(container, task, service)| async move {
                let (cpu_limit, memory_limit) = self.limits(engine, &container, timeout).await;
                let opts = StatsOptions {
                    stream: false,
                    one_shot: false,
                };
                let mut stream = engine.docker.stats(&container, Some(opts));
                let (cpu, memory) = match tokio::time::timeout(timeout, stream.next()).await {
                    Ok(Some(Ok(s))) => (
                        cpu_percent(&s, cpu_limit).filter(|v| v.is_finite()),
                        memory_percent(&s, memory_limit).filter(|v| v.is_finite()),
                    ),
                    _ => (None, None),
                };
                TaskStats {
                    task,
                    service,
                    cpu,
                    memory,
                }
            })
            .buffer_unordered(CONCURRENT_STATS)
            .collect::<Vec<_>>()
            .await;
        Ok(NodeStats {
            node,
            time: jiff::Timestamp::now().to_string(),
            tasks,
            truncated,
        })
    }

    /// A container's CPU limit (cores) and memory limit (bytes), from the cache or
    /// one inspect; `None` for no limit (or an inspect that failed: the node's CPUs
    /// and the cgroup's limit are used then).
    async fn limits(
        &self,
        engine: &Engine,
        container: &str,
        timeout: std::time::Duration,
    ) -> (Option<f64>, Option<f64>) {
        if let Some(l) = self
            .limits
            .lock()
            .ok()
            .and_then(|c| c.get(container).copied())
        {
            return l;
        }
        let inspect = tokio::time::timeout(
            timeout,
            engine
                .docker
                .inspect_container(container, None::<InspectContainerOptions>),
        )
        .await;
        let Ok(Ok(c)) = inspect else {
            return (None, None);
        };
        let host = c.host_config.unwrap_or_default();
        let l = (
            host.nano_cpus.filter(|n| *n > 0).map(|n| n as f64 / 1e9),
            host.memory.filter(|n| *n > 0).map(|n| n as f64),
        );
        if let Ok(mut cache) = self.limits.lock() {
            cache.insert(container.to_string(), l);
        }
        l
    }
}

/// The largest utilisation (percent) a task's stats may report. A CFS quota
/// (`NanoCpus`) holds a task near 100 % of its limit, a memory limit holds its
/// memory under 100 %, and without limits the node's CPUs and memory are 100 %;
/// beyond twice that, the reading is a fault or a lie (a peer claiming `1e308`),
/// and the task counts as not measured: its node is named as missing and no
/// scale-down happens on that partial data.
pub const MAX_PERCENT: f64 = 200.0;

/// Whether `v` is a utilisation a task can have: finite, 0 to [`MAX_PERCENT`].
pub fn plausible_percent(v: f64) -> bool {
    v.is_finite() && (0.0..=MAX_PERCENT).contains(&v)
}

/// The value of `kind` in a task's stats, when [`plausible_percent`].
fn of_kind(t: &TaskStats, kind: Kind) -> Option<f64> {
    match kind {
        Kind::Cpu => t.cpu,
        Kind::Memory => t.memory,
    }
    .filter(|v| plausible_percent(*v))
}

/// A node's hostname from the snapshot (its ID when the snapshot does not know it).
pub fn hostname(snap: &Snapshot, node: &str) -> String {
    snap.nodes
        .iter()
        .find(|n| n.id.as_deref() == Some(node))
        .and_then(|n| n.description.as_ref()?.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| node.to_string())
}

/// Puts the nodes' answers together for one service: the average of `kind` over its
/// running tasks that were measured (a task counts only in the answer of the node
/// the swarm says it runs on; tasks on down nodes are left out), and which tasks
/// that was.
///
/// `answers`: node ID → that node's stats.
///
/// Errors (one line, naming the nodes): the service has no running task, or none
/// could be measured.
pub fn combine(
    snap: &Snapshot,
    service_id: &str,
    kind: Kind,
    answers: &HashMap<String, NodeStats>,
) -> Result<(f64, Coverage), String> {
    // The running tasks as every command counts them
    // ([`crate::swarm::snapshot::task_life`]): stale records on down nodes are not
    // measured (nor missed).
    let nodes = crate::swarm::snapshot::Nodes::new(&snap.nodes);
    let running: Vec<_> = snap
        .tasks
        .iter()
        .filter(|t| t.service_id.as_deref() == Some(service_id))
        .filter(|t| {
            crate::swarm::snapshot::task_life(t, &nodes)
                == crate::swarm::snapshot::TaskLife::Running
        })
        .collect();
    if running.is_empty() {
        return Err("no running task to measure".into());
    }
    let mut values = vec![];
    let mut missing = BTreeSet::new();
    for t in &running {
        let node = t.node_id.as_deref().unwrap_or_default();
        // A task the node lists twice is not measured: its answer contradicts itself.
        let value = answers.get(node).and_then(|a| {
            let mut found = a
                .tasks
                .iter()
                .filter(|s| Some(s.task.as_str()) == t.id.as_deref() && s.service == service_id);
            let first = found.next()?;
            found.next().is_none().then_some(first)?;
            of_kind(first, kind)
        });
        match value {
            Some(v) => values.push(v),
            None => {
                missing.insert(hostname(snap, node));
            }
        }
    }
    let mut missing: Vec<String> = missing.into_iter().collect();
    missing.sort_by(|a, b| crate::render::natural_cmp(a, b));
    let coverage = Coverage {
        measured: values.len() as u64,
        total: running.len() as u64,
        missing,
    };
    if values.is_empty() {
        return Err(format!(
            "no running task could be measured: {} (each node's stats come from its own engine: is an agent serving them on every node? docs/agent.md)",
            coverage.text()
        ));
    }
    Ok((values.iter().sum::<f64>() / values.len() as f64, coverage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stats(v: serde_json::Value) -> ContainerStatsResponse {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn cpu_is_a_share_of_the_limit_or_of_the_node() {
        let s = stats(json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 1_500_000_000u64}, "system_cpu_usage": 8_000_000_000u64, "online_cpus": 4},
            "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000_000u64}, "system_cpu_usage": 4_000_000_000u64}
        }));
        // 0.5e9 of 4e9 system ns on 4 CPUs: half a core
        assert_eq!(cpu_percent(&s, None), Some(12.5));
        assert_eq!(cpu_percent(&s, Some(0.5)), Some(100.0));
        // no previous sample yet: unreadable, not zero
        let first = stats(
            json!({"cpu_stats": {"cpu_usage": {"total_usage": 5}, "system_cpu_usage": 9, "online_cpus": 1}, "precpu_stats": {}}),
        );
        assert_eq!(cpu_percent(&first, None), None);
    }

    #[test]
    fn memory_leaves_the_page_cache_out_on_cgroup_v1_and_v2() {
        let v2 = stats(
            json!({"memory_stats": {"usage": 300, "limit": 1000, "stats": {"inactive_file": 100}}}),
        );
        assert_eq!(memory_percent(&v2, None), Some(20.0));
        let v1 =
            stats(json!({"memory_stats": {"usage": 300, "limit": 1000, "stats": {"cache": 200}}}));
        assert_eq!(memory_percent(&v1, None), Some(10.0));
        assert_eq!(memory_percent(&v1, Some(500.0)), Some(20.0));
    }

    fn snap(tasks: &[(&str, &str, &str, &str)], nodes: &[(&str, &str, &str)]) -> Snapshot {
        Snapshot {
            services: vec![],
            tasks: tasks
                .iter()
                .map(|(id, svc, node, state)| {
                    serde_json::from_value(json!({"ID": id, "ServiceID": svc, "NodeID": node, "Status": {"State": state}}))
                        .unwrap()
                })
                .collect(),
            nodes: nodes
                .iter()
                .map(|(id, host, state)| {
                    serde_json::from_value(json!({"ID": id, "Description": {"Hostname": host}, "Status": {"State": state}}))
                        .unwrap()
                })
                .collect(),
        }
    }

    fn answer(node: &str, tasks: &[(&str, &str, Option<f64>)]) -> (String, NodeStats) {
        (
            node.to_string(),
            NodeStats {
                node: NodeRef {
                    id: node.into(),
                    hostname: format!("host-{node}"),
                },
                time: "2026-12-07T20:40:00Z".into(),
                tasks: tasks
                    .iter()
                    .map(|(t, s, cpu)| TaskStats {
                        task: t.to_string(),
                        service: s.to_string(),
                        cpu: *cpu,
                        memory: Some(5.0),
                    })
                    .collect(),
                truncated: false,
            },
        )
    }

    #[test]
    fn nodes_combine_over_the_running_tasks_they_run() {
        let sn = snap(
            &[
                ("t1", "web", "a", "running"),
                ("t2", "web", "b", "running"),
                ("t3", "web", "c", "running"),
                ("t4", "web", "d", "running"),
                ("t5", "web", "a", "shutdown"),
                ("t6", "db", "a", "running"),
            ],
            &[
                ("a", "n1", "ready"),
                ("b", "n2", "ready"),
                ("c", "n3", "ready"),
                ("d", "n4", "down"),
            ],
        );
        // Every node that runs a task answered: the average of t1..t3; t4 is on a down
        // node (a stale record) and not counted.
        let all: HashMap<_, _> = [
            answer("a", &[("t1", "web", Some(90.0)), ("t6", "db", Some(1.0))]),
            answer("b", &[("t2", "web", Some(60.0))]),
            answer("c", &[("t3", "web", Some(30.0))]),
        ]
        .into();
        let (v, c) = combine(&sn, "web", Kind::Cpu, &all).unwrap();
        assert_eq!((v, c.measured, c.total, c.missing.len()), (60.0, 3, 3, 0));
        // n3's agent did not answer: two of three, n3 named.
        let some: HashMap<_, _> = [
            answer("a", &[("t1", "web", Some(90.0))]),
            answer("b", &[("t2", "web", Some(60.0))]),
        ]
        .into();
        let (v, c) = combine(&sn, "web", Kind::Cpu, &some).unwrap();
        assert_eq!((v, c.measured, c.total), (75.0, 2, 3));
        assert_eq!(c.missing, ["n3"]);
        // A task counts only in the answer of the node it runs on, and a task
        // without a CPU sample yet is not measured.
        let lying: HashMap<_, _> = [
            answer("a", &[("t1", "web", Some(90.0)), ("t3", "web", Some(0.0))]),
            answer("b", &[("t2", "web", None)]),
        ]
        .into();
        let (v, c) = combine(&sn, "web", Kind::Cpu, &lying).unwrap();
        assert_eq!((v, c.measured, c.total), (90.0, 1, 3));
        assert_eq!(c.missing, ["n2", "n3"]);
        assert_eq!(combine(&sn, "web", Kind::Memory, &lying).unwrap().0, 5.0);
        // Nothing measured: an error naming the nodes.
        let e = combine(&sn, "web", Kind::Cpu, &HashMap::new()).unwrap_err();
        assert!(
            e.contains("0 of 3 running tasks measured; not measured: tasks on n1, n2, n3"),
            "{e}"
        );
        let e = combine(&sn, "gone", Kind::Cpu, &all).unwrap_err();
        assert_eq!(e, "no running task to measure");
    }

    #[test]
    fn implausible_or_contradictory_task_values_are_not_measured() {
        let sn = snap(
            &[
                ("t1", "web", "a", "running"),
                ("t2", "web", "b", "running"),
                ("t3", "web", "b", "running"),
            ],
            &[("a", "n1", "ready"), ("b", "n2", "ready")],
        );
        // 1e308 twice would overflow the sum to infinity; out of range, a node's
        // tasks are not measured and its name is given.
        for lie in [1e308, f64::MAX, f64::INFINITY, f64::NAN, -1.0, -0.5, 200.1] {
            let answers: HashMap<_, _> = [
                answer("a", &[("t1", "web", Some(40.0))]),
                answer("b", &[("t2", "web", Some(lie)), ("t3", "web", Some(lie))]),
            ]
            .into();
            let (v, c) = combine(&sn, "web", Kind::Cpu, &answers).unwrap();
            assert_eq!((v, c.measured, c.total), (40.0, 1, 3), "{lie}");
            assert_eq!(c.missing, ["n2"], "{lie}");
        }
        // The bounds themselves are plausible.
        let answers: HashMap<_, _> = [
            answer("a", &[("t1", "web", Some(MAX_PERCENT))]),
            answer("b", &[("t2", "web", Some(0.0)), ("t3", "web", Some(0.0))]),
        ]
        .into();
        let (v, c) = combine(&sn, "web", Kind::Cpu, &answers).unwrap();
        assert_eq!((v, c.measured), (MAX_PERCENT / 3.0, 3));
        // A task listed twice (100 % and 0 %) is not measured, whichever comes first.
        let answers: HashMap<_, _> = [
            answer("a", &[("t1", "web", Some(100.0)), ("t1", "web", Some(0.0))]),
            answer("b", &[("t2", "web", Some(10.0)), ("t3", "web", Some(20.0))]),
        ]
        .into();
        let (v, c) = combine(&sn, "web", Kind::Cpu, &answers).unwrap();
        assert_eq!((v, c.measured), (15.0, 2));
        assert_eq!(c.missing, ["n1"]);
        // Thousands of tasks of other services and nodes in one answer change nothing.
        let mut big = answer("b", &[("t2", "web", Some(10.0)), ("t3", "web", Some(20.0))]);
        for i in 0..MAX_TASKS {
            big.1.tasks.push(TaskStats {
                task: format!("x{i}"),
                service: if i % 2 == 0 { "web" } else { "db" }.into(),
                cpu: Some(100.0),
                memory: Some(100.0),
            });
        }
        let answers: HashMap<_, _> = [answer("a", &[("t1", "web", Some(0.0))]), big].into();
        let (v, c) = combine(&sn, "web", Kind::Cpu, &answers).unwrap();
        assert_eq!((v, c.measured, c.total), (10.0, 3, 3));
    }

    #[test]
    fn node_stats_have_a_stable_json_shape() {
        let (_, a) = answer("a", &[("t1", "web", Some(12.5)), ("t2", "web", None)]);
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(
            text,
            r#"{"node":{"id":"a","hostname":"host-a"},"time":"2026-12-07T20:40:00Z","tasks":[{"task":"t1","service":"web","cpu":12.5,"memory":5.0},{"task":"t2","service":"web","cpu":null,"memory":5.0}],"truncated":false}"#
        );
        let back: NodeStats = serde_json::from_str(&text).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn kinds() {
        assert_eq!(Kind::parse("engine://cpu"), Ok(Kind::Cpu));
        assert_eq!(Kind::parse("engine://memory/"), Ok(Kind::Memory));
        assert!(Kind::parse("engine://disk").is_err());
    }
}
