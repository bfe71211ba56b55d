//! Digest drift: tasks that run another image than the service spec names.
//!
//! The spec's image (`Spec.TaskTemplate.ContainerSpec.Image`) is normally pinned by the
//! docker CLI to `name:tag@sha256:…`. Each task keeps the image of the spec it was
//! created from (`Task.Spec.ContainerSpec.Image`), so during a rolling update, after a
//! rollback or a paused update, some tasks run another digest. Pure: no I/O.

use std::collections::HashMap;

use bollard::models::{Node, Service, Task};
use serde::Serialize;

/// An image reference split at its digest: `name[:tag]` and `sha256:…` when pinned.
pub fn split_digest(image: &str) -> (&str, Option<&str>) {
    match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    }
}

/// A task on another image than the spec's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DriftTask {
    /// Task ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Task name as `docker service ps` shows it: `service.slot` or `service.nodeid`.
    pub name: String,
    /// Node host name (the node ID when the node is unknown).
    pub node: String,
    /// The image the task runs (`Task.Spec.ContainerSpec.Image`).
    pub image: String,
    /// Current state of the task (`Status.State`), e.g. `running`.
    pub state: String,
    /// The container ID from the task's container status, when the task has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// The result of comparing a service's spec image with its tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Drift {
    /// Whether the spec's image carries a digest.
    pub pinned: bool,
    /// How many tasks whose desired state is running (or complete, for jobs) were compared.
    pub tasks_checked: usize,
    /// The tasks on another image, sorted by name.
    pub tasks: Vec<DriftTask>,
}

/// Compares the image of `service`'s spec with the image of each of its tasks in
/// `tasks` whose desired state is `running` or `complete`.
///
/// When the spec is pinned, a task differs when its digest differs (or it has none).
/// When not pinned, a task differs when its reference text differs.
pub fn drift(service: &Service, tasks: &[Task], nodes: &[Node]) -> Drift {
    let spec_image = spec_image(service).unwrap_or_default();
    let (spec_name, spec_digest) = split_digest(spec_image);
    let service_id = service.id.clone().unwrap_or_default();
    let service_name = service
        .spec
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_default();
    let hostnames: HashMap<&str, &str> = nodes
        .iter()
        .filter_map(|n| {
            Some((
                n.id.as_deref()?,
                n.description.as_ref()?.hostname.as_deref()?,
            ))
        })
        .collect();
    let mut checked = 0;
    let mut out: Vec<DriftTask> = Vec::new();
    for t in tasks {
        if t.service_id.as_deref() != Some(service_id.as_str()) {
            continue;
        }
        let desired = t.desired_state.map(|s| s.to_string()).unwrap_or_default();
        if desired != "running" && desired != "complete" {
            continue;
        }
        checked += 1;
        let image = t
            .spec
            .as_ref()
            .and_then(|s| s.container_spec.as_ref())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let differs = match spec_digest {
            Some(d) => split_digest(&image).1 != Some(d),
            None => image != spec_name,
        };
        if !differs {
            continue;
        }
        let node_id = t.node_id.clone().unwrap_or_default();
        let node = hostnames
            .get(node_id.as_str())
            .map(|h| h.to_string())
            .unwrap_or(node_id.clone());
        let name = match t.slot {
            Some(slot) if slot > 0 => format!("{service_name}.{slot}"),
            _ => format!("{service_name}.{node_id}"),
        };
        let status = t.status.as_ref();
        out.push(DriftTask {
            id: t.id.clone().unwrap_or_default(),
            name,
            node,
            image,
            state: status
                .and_then(|s| s.state)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            container: status
                .and_then(|s| s.container_status.as_ref())
                .and_then(|c| c.container_id.clone())
                .filter(|c| !c.is_empty()),
        });
    }
    out.sort_by(|a, b| crate::render::natural_cmp(&a.name, &b.name).then(a.id.cmp(&b.id)));
    Drift {
        pinned: spec_digest.is_some(),
        tasks_checked: checked,
        tasks: out,
    }
}

/// The image of a service's spec (`Spec.TaskTemplate.ContainerSpec.Image`).
pub fn spec_image(service: &Service) -> Option<&str> {
    service
        .spec
        .as_ref()?
        .task_template
        .as_ref()?
        .container_spec
        .as_ref()?
        .image
        .as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(image: &str) -> Service {
        serde_json::from_value(json!({
            "ID": "svc1",
            "Spec": {"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": image}}}
        }))
        .unwrap()
    }

    fn task(id: &str, slot: i64, image: &str, desired: &str) -> Task {
        serde_json::from_value(json!({
            "ID": id, "ServiceID": "svc1", "Slot": slot, "NodeID": "n1",
            "DesiredState": desired,
            "Spec": {"ContainerSpec": {"Image": image}},
            "Status": {"State": "running", "ContainerStatus": {"ContainerID": format!("c{id}")}}
        }))
        .unwrap()
    }

    fn nodes() -> Vec<Node> {
        vec![
            serde_json::from_value(json!({"ID": "n1", "Description": {"Hostname": "manager-1"}}))
                .unwrap(),
        ]
    }

    #[test]
    fn tasks_on_an_older_digest_are_listed() {
        let s = service("reg/app:1@sha256:bbb");
        let tasks = vec![
            task("t1", 1, "reg/app:1@sha256:bbb", "running"),
            task("t2", 2, "reg/app:1@sha256:aaa", "running"),
            task("t3", 3, "reg/app:1@sha256:aaa", "shutdown"),
            task("t4", 10, "reg/app:0@sha256:ccc", "running"),
        ];
        let d = drift(&s, &tasks, &nodes());
        assert!(d.pinned);
        assert_eq!(d.tasks_checked, 3);
        let names: Vec<_> = d.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["web.2", "web.10"]);
        assert_eq!(d.tasks[0].node, "manager-1");
        assert_eq!(d.tasks[0].container.as_deref(), Some("ct2"));
    }

    #[test]
    fn unpinned_specs_compare_by_reference() {
        let s = service("app:latest");
        let d = drift(
            &s,
            &[
                task("t1", 1, "app:latest", "running"),
                task("t2", 2, "app:latest@sha256:x", "running"),
            ],
            &nodes(),
        );
        assert!(!d.pinned);
        assert_eq!(d.tasks.len(), 1);
        assert_eq!(d.tasks[0].id, "t2");
    }
}
