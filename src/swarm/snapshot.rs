//! One consistent read of the swarm: services, their running tasks, and nodes.
//!
//! Three Engine API calls made concurrently (one after another over ssh, on one
//! connection), whatever the number of services:
//! - `GET /services?status=true[&filters=...]` (API 1.41+: `ServiceStatus`)
//! - `GET /tasks?filters={"desired-state":["running","complete"]}` (a job's tasks
//!   are meant to complete, so their desired state is `complete`)
//! - `GET /nodes`
//!
//! When some node is `down`, one more call follows:
//! `GET /tasks?filters={"node":[<those nodes>]}`. When a node goes down, the
//! orchestrator sets the desired state of its tasks to shutdown at once, but the
//! engine keeps counting their last reported `running` state in `ServiceStatus`;
//! this call finds them so that they can be told from the tasks that really run.
//!
//! # Which tasks run: one definition for every command
//!
//! [`task_life`] is the one place that says whether a task runs; `status`, `plan`,
//! `apply`, `scale`, the `run` agent and the engine metrics all count with it
//! (through [`Snapshot::running_tasks`] or [`count_running`]):
//!
//! - **running**: the task's last reported state (`Status.State`) is `running` and
//!   its node is not `down`. Its desired state does not matter: a task that is being
//!   stopped (a scale-down, a drain) still runs until its node reports it stopped.
//! - **stale**: the last reported state is `running` but the node is `down` (or no
//!   longer in the swarm). Swarm has already given up on such a task and started a
//!   replacement elsewhere, but keeps its record, and counts it in
//!   `ServiceStatus.RunningTasks`, until the node comes back or the task is orphaned
//!   (24 hours by default). A stale task is never counted as running.
//!
//! Node states (`Node.Status.State`): only `down` makes tasks stale. A node that is
//! `unknown` (every node, for a moment after a new Raft leader is elected, until it
//! reports in again) or `disconnected` (looking for a new manager) keeps its tasks:
//! Swarm does not replace them (swarmkit's orchestrator restarts the tasks of a node
//! only when it is down, drained or removed), and they most likely still run. A
//! node being drained (`Spec.Availability` `drain`, state `ready`) is up: its tasks
//! really run until it has stopped them, while Swarm starts their replacements, so a
//! drain shows as a service converging for a moment.

use std::collections::{BTreeSet, HashMap};

use bollard::models::{Node, NodeState, Service, Task, TaskState};
use bollard::query_parameters::{ListNodesOptions, ListServicesOptions, ListTasksOptions};

use crate::engine::{Engine, EngineError};

/// The swarm as read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Services matching the filters, with `ServiceStatus` filled in.
    pub services: Vec<Service>,
    /// Tasks whose desired state is running or complete (all services), plus every
    /// task on a node that is `down`.
    pub tasks: Vec<Task>,
    /// Every node of the swarm.
    pub nodes: Vec<Node>,
}

/// Whether Swarm has given up on the tasks of a node: its state (`Node.Status.State`)
/// is `down`, or it is no longer in the swarm (`None`: not in `GET /nodes`). A node
/// that is `ready`, `unknown` or `disconnected` is not down (see the module
/// documentation for why).
pub fn node_down(node: Option<&Node>) -> bool {
    match node {
        None => true,
        Some(n) => n.status.as_ref().and_then(|s| s.state) == Some(NodeState::DOWN),
    }
}

/// The swarm's nodes by ID (from `GET /nodes`), to tell where tasks are.
#[derive(Debug, Clone, Default)]
pub struct Nodes<'a> {
    by_id: HashMap<&'a str, &'a Node>,
}

impl<'a> Nodes<'a> {
    /// Indexes `nodes` (every node of the swarm) by `ID`.
    pub fn new(nodes: &'a [Node]) -> Nodes<'a> {
        Nodes {
            by_id: nodes
                .iter()
                .filter_map(|n| n.id.as_deref().map(|id| (id, n)))
                .collect(),
        }
    }

    /// Whether the node with this ID is down or gone ([`node_down`]).
    pub fn down(&self, id: &str) -> bool {
        node_down(self.by_id.get(id).copied())
    }

    /// The node's hostname (`Description.Hostname`); the first 12 characters of its ID
    /// when it has none or is not in the swarm.
    pub fn hostname(&self, id: &str) -> String {
        self.by_id
            .get(id)
            .and_then(|n| n.description.as_ref())
            .and_then(|d| d.hostname.clone())
            .unwrap_or_else(|| id.chars().take(12).collect())
    }
}

/// What one task is when replicas are counted (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskLife {
    /// Last reported state `running`, on a node that is not down: a replica.
    Running,
    /// Last reported state `running`, on a node that is down or gone: the engine's
    /// stale record of a task Swarm has already replaced. Never a replica.
    Stale,
    /// Any other state (new, pending, assigned, starting, complete, failed, shutdown,
    /// ...).
    NotRunning,
}

/// The one definition of a running task, for every command: `running` as last
/// reported by its node (`Task.Status.State`), on a node that is not down
/// ([`Nodes::down`]). A running task without a node ID cannot exist; it is taken as
/// stale.
pub fn task_life(task: &Task, nodes: &Nodes) -> TaskLife {
    if task.status.as_ref().and_then(|s| s.state) != Some(TaskState::RUNNING) {
        return TaskLife::NotRunning;
    }
    match task.node_id.as_deref().filter(|n| !n.is_empty()) {
        Some(node) if !nodes.down(node) => TaskLife::Running,
        _ => TaskLife::Stale,
    }
}

/// How many tasks of one service run, by [`task_life`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunningTasks {
    /// Tasks that really run (replicas): the engine's `ServiceStatus.RunningTasks`
    /// minus `stale`. The engine counts every task whose last reported state is
    /// `running` (of the current run, for a job), on any node; `stopping` tasks (a
    /// scale-down or a drain in progress) are included, as they still run.
    pub running: u64,
    /// Stale tasks: last reported `running` on a node that is down or gone. The engine
    /// counts them in `ServiceStatus.RunningTasks`; they are not in `running`.
    pub stale: u64,
    /// Hostnames of the nodes holding the stale tasks, sorted, each once.
    pub stale_nodes: Vec<String>,
    /// Distinct nodes with a running task of the service, among the tasks given
    /// (a snapshot holds the tasks meant to run or complete: a node whose only task
    /// of the service is being stopped is not counted).
    pub nodes: usize,
}

/// Counts `service`'s tasks among `tasks` (other services' tasks are skipped), with
/// `nodes` the swarm's nodes. For a job, only tasks of its current run
/// (`JobStatus.JobIteration`) count, as in the engine's own count. Without a
/// `ServiceStatus`, `running` is counted from `tasks`.
pub fn count_running<'t>(
    service: &Service,
    tasks: impl IntoIterator<Item = &'t Task>,
    nodes: &Nodes,
) -> RunningTasks {
    let id = service.id.as_deref().unwrap_or_default();
    // Go leaves out an index of 0: `"JobIteration": {}`.
    let iteration = service
        .job_status
        .as_ref()
        .and_then(|j| j.job_iteration.as_ref())
        .map(|v| v.index.unwrap_or(0));
    let mut live = 0u64;
    let mut stale = 0u64;
    let mut stale_nodes = BTreeSet::new();
    let mut live_nodes = BTreeSet::new();
    for t in tasks {
        if t.service_id.as_deref() != Some(id) {
            continue;
        }
        if let Some(it) = iteration
            && t.job_iteration.as_ref().map(|v| v.index.unwrap_or(0)) != Some(it)
        {
            continue;
        }
        match task_life(t, nodes) {
            TaskLife::Running => {
                live += 1;
                if let Some(n) = t.node_id.as_deref() {
                    live_nodes.insert(n);
                }
            }
            TaskLife::Stale => {
                stale += 1;
                stale_nodes.insert(nodes.hostname(t.node_id.as_deref().unwrap_or_default()));
            }
            TaskLife::NotRunning => {}
        }
    }
    let running = match service
        .service_status
        .as_ref()
        .and_then(|s| s.running_tasks)
    {
        Some(engine) => engine.saturating_sub(stale),
        None => live,
    };
    RunningTasks {
        running,
        stale,
        stale_nodes: stale_nodes.into_iter().collect(),
        nodes: live_nodes.len(),
    }
}

impl Snapshot {
    /// [`count_running`] for one service of this snapshot (a pass over every task:
    /// for many services, [`Snapshot::running_by_service`]).
    pub fn running_tasks(&self, service: &Service) -> RunningTasks {
        count_running(service, &self.tasks, &Nodes::new(&self.nodes))
    }

    /// [`count_running`] for every service of this snapshot, by service ID, in one
    /// pass over the tasks.
    pub fn running_by_service(&self) -> HashMap<String, RunningTasks> {
        let nodes = Nodes::new(&self.nodes);
        let mut by_service: HashMap<&str, Vec<&Task>> = HashMap::new();
        for t in &self.tasks {
            if let Some(id) = t.service_id.as_deref() {
                by_service.entry(id).or_default().push(t);
            }
        }
        self.services
            .iter()
            .filter_map(|s| {
                let id = s.id.as_deref()?;
                let tasks = by_service.get(id).map(Vec::as_slice).unwrap_or_default();
                Some((
                    id.to_string(),
                    count_running(s, tasks.iter().copied(), &nodes),
                ))
            })
            .collect()
    }
}

/// Service list filters in the Engine API's shape: key → values
/// (`name`, `label`, `mode`, `id`; see `GET /services`).
pub type Filters = HashMap<String, Vec<String>>;

impl Engine {
    /// Reads a [`Snapshot`] with three concurrent API calls.
    ///
    /// Errors: the engine is unreachable, not in a swarm, a worker, older than API 1.41,
    /// or rejects a filter (the daemon's message is passed on).
    pub async fn snapshot(&self, filters: &Filters) -> Result<Snapshot, EngineError> {
        let services = self.docker.list_services(Some(ListServicesOptions {
            filters: (!filters.is_empty()).then(|| filters.clone()),
            status: Some(true),
        }));
        let tasks = self.docker.list_tasks(Some(ListTasksOptions {
            filters: Some(HashMap::from([(
                "desired-state".to_string(),
                // Running job tasks have the desired state "complete".
                vec!["running".to_string(), "complete".to_string()],
            )])),
        }));
        let nodes = self.docker.list_nodes(None::<ListNodesOptions>);
        // Concurrent, except over ssh, where the three reads share one ssh connection
        // instead of opening three logins.
        let over_ssh = self.endpoint.host.starts_with("ssh://");
        let (services, tasks, nodes) = self
            .within_deadline(async {
                if over_ssh {
                    let s = services.await;
                    if s.is_err() {
                        // One failed login is enough to report.
                        return (s, Ok(vec![]), Ok(vec![]));
                    }
                    let t = tasks.await;
                    (s, t, nodes.await)
                } else {
                    tokio::join!(services, tasks, nodes)
                }
            })
            .await?;
        let services = match services {
            Ok(s) => s,
            Err(e) => return Err(self.explain(e).await),
        };
        let mut tasks = tasks.map_err(|e| self.classify(e))?;
        let nodes = nodes.map_err(|e| self.classify(e))?;
        let down: Vec<String> = nodes
            .iter()
            .filter(|n| node_down(Some(n)))
            .filter_map(|n| n.id.clone())
            .collect();
        if !down.is_empty() {
            let on_down = self
                .within_deadline(self.docker.list_tasks(Some(ListTasksOptions {
                    filters: Some(HashMap::from([("node".to_string(), down)])),
                })))
                .await?
                .map_err(|e| self.classify(e))?;
            let known: std::collections::HashSet<String> =
                tasks.iter().filter_map(|t| t.id.clone()).collect();
            tasks.extend(
                on_down
                    .into_iter()
                    .filter(|t| t.id.as_ref().is_none_or(|id| !known.contains(id))),
            );
        }
        if services.iter().any(|s| s.service_status.is_none()) {
            return Err(EngineError::TooOld {
                host: crate::edge::redact::redact_value(&self.endpoint.host),
            });
        }
        Ok(Snapshot {
            services,
            tasks,
            nodes,
        })
    }

    async fn explain(&self, err: bollard::errors::Error) -> EngineError {
        let e = self.classify(err);
        match e {
            EngineError::Daemon { status: 503, .. } => self.explain_unavailable(e).await,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nodes() -> Vec<Node> {
        [
            ("n1", "m1", "ready"),
            ("n2", "w1", "down"),
            ("n3", "w2", "unknown"),
            ("n4", "w3", "disconnected"),
        ]
        .iter()
        .map(|(id, host, state)| {
            serde_json::from_value(json!({
                "ID": id, "Description": {"Hostname": host}, "Status": {"State": state}
            }))
            .unwrap()
        })
        .collect()
    }

    fn task(node: &str, desired: &str, state: &str) -> Task {
        serde_json::from_value(json!({
            "ServiceID": "s", "NodeID": node, "DesiredState": desired,
            "Status": {"State": state}
        }))
        .unwrap()
    }

    #[test]
    fn a_task_runs_when_last_seen_running_on_a_node_that_is_not_down() {
        let list = nodes();
        let n = Nodes::new(&list);
        let life =
            |node: &str, desired: &str, state: &str| task_life(&task(node, desired, state), &n);
        assert_eq!(life("n1", "running", "running"), TaskLife::Running);
        // Being stopped (a scale-down, a drain): still runs.
        assert_eq!(life("n1", "shutdown", "running"), TaskLife::Running);
        assert_eq!(life("n1", "running", "starting"), TaskLife::NotRunning);
        // Down, or gone from the swarm: the engine's stale record.
        assert_eq!(life("n2", "shutdown", "running"), TaskLife::Stale);
        assert_eq!(life("n2", "running", "running"), TaskLife::Stale);
        assert_eq!(life("n9", "shutdown", "running"), TaskLife::Stale);
        assert_eq!(life("", "running", "running"), TaskLife::Stale);
        assert_eq!(life("n2", "shutdown", "shutdown"), TaskLife::NotRunning);
        // Unknown (a new leader waits for the node) and disconnected: not replaced.
        assert_eq!(life("n3", "running", "running"), TaskLife::Running);
        assert_eq!(life("n4", "running", "running"), TaskLife::Running);
        assert_eq!(n.hostname("n2"), "w1");
        assert_eq!(n.hostname("abcdefghijklmnopq"), "abcdefghijkl");
    }

    #[test]
    fn running_is_the_engine_count_without_the_stale_tasks() {
        let list = nodes();
        let mut service: Service = serde_json::from_value(json!({
            "ID": "s", "ServiceStatus": {"RunningTasks": 6, "DesiredTasks": 4}
        }))
        .unwrap();
        let tasks = vec![
            task("n1", "running", "running"),
            task("n3", "running", "running"),
            task("n4", "running", "running"),
            task("n2", "shutdown", "running"),
            task("n2", "shutdown", "running"),
            task("n2", "shutdown", "shutdown"),
            // Another service's task on the down node.
            serde_json::from_value(json!({
                "ServiceID": "t", "NodeID": "n2", "Status": {"State": "running"}
            }))
            .unwrap(),
        ];
        let snap = Snapshot {
            services: vec![service.clone()],
            tasks: tasks.clone(),
            nodes: list.clone(),
        };
        // The engine counts a stopping task (not in the snapshot) too: 6 = 4 + 2 stale.
        let c = snap.running_tasks(&service);
        assert_eq!(
            c,
            RunningTasks {
                running: 4,
                stale: 2,
                stale_nodes: vec!["w1".into()],
                nodes: 3,
            }
        );
        // Without a ServiceStatus, the running tasks given are counted.
        service.service_status = None;
        let c = count_running(&service, &tasks, &Nodes::new(&list));
        assert_eq!((c.running, c.stale), (3, 2));
        // Every service at once: the same counts.
        let all = snap.running_by_service();
        assert_eq!(all.len(), 1);
        assert_eq!(all["s"], snap.running_tasks(&snap.services[0]));
    }

    #[test]
    fn a_job_counts_only_its_current_run_as_the_engine_does() {
        let list = nodes();
        let job: Service = serde_json::from_value(json!({
            "ID": "s", "ServiceStatus": {"RunningTasks": 2, "DesiredTasks": 2},
            "JobStatus": {"JobIteration": {"Index": 7}}
        }))
        .unwrap();
        let t = |iter: u64, node: &str| -> Task {
            serde_json::from_value(json!({
                "ServiceID": "s", "NodeID": node, "DesiredState": "complete",
                "JobIteration": {"Index": iter}, "Status": {"State": "running"}
            }))
            .unwrap()
        };
        let c = count_running(
            &job,
            &[t(7, "n2"), t(5, "n2"), t(7, "n1")],
            &Nodes::new(&list),
        );
        // The engine counts this run's two running tasks; the one on the down node is
        // stale, the earlier run's is not counted at all.
        assert_eq!((c.running, c.stale, c.nodes), (1, 1, 1));
    }
}
