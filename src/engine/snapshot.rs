//! One consistent read of the swarm: services, their running tasks, and nodes.
//!
//! Three Engine API calls made concurrently (one after another over ssh, on one
//! connection), whatever the number of services:
//! - `GET /services?status=true[&filters=...]` (API 1.41+: `ServiceStatus`)
//! - `GET /tasks?filters={"desired-state":["running","complete"]}` (a job's tasks
//!   are meant to complete, so their desired state is `complete`)
//! - `GET /nodes`
//!
//! When some node is not `ready`, one more call follows:
//! `GET /tasks?filters={"node":[<those nodes>]}`. When a node goes down, the
//! orchestrator sets the desired state of its tasks to shutdown at once, but the
//! engine keeps counting their last reported `running` state in `ServiceStatus`;
//! this call finds them so that `status` can say where the extra replicas are.

use std::collections::HashMap;

use bollard::models::{Node, Service, Task};
use bollard::query_parameters::{ListNodesOptions, ListServicesOptions, ListTasksOptions};

use super::{Engine, EngineError};

/// The swarm as read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Services matching the filters, with `ServiceStatus` filled in.
    pub services: Vec<Service>,
    /// Tasks whose desired state is running or complete (all services), plus every
    /// task on a node that is not `ready`.
    pub tasks: Vec<Task>,
    /// Every node of the swarm.
    pub nodes: Vec<Node>,
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
        let not_ready: Vec<String> = nodes
            .iter()
            .filter(|n| {
                n.status.as_ref().and_then(|s| s.state) != Some(bollard::models::NodeState::READY)
            })
            .filter_map(|n| n.id.clone())
            .collect();
        if !not_ready.is_empty() {
            let on_down = self
                .within_deadline(self.docker.list_tasks(Some(ListTasksOptions {
                    filters: Some(HashMap::from([("node".to_string(), not_ready)])),
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
                host: crate::redact::redact_value(&self.endpoint.host),
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
