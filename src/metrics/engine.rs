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
//! The value is the average over the tasks that could be read. Stats are only
//! reachable for containers on the engine the command talks to: tasks on other nodes
//! cannot be read, and when none of the service's running tasks is on this engine
//! the read fails and names the nodes they are on.

use std::collections::HashMap;

use bollard::models::{ContainerStatsResponse, Service};
use bollard::query_parameters::StatsOptions;
use futures_util::StreamExt;

use super::Sample;
use crate::engine::Engine;
use crate::engine::snapshot::Snapshot;

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

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Cpu => "engine://cpu",
        Kind::Memory => "engine://memory",
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

/// Reads the CPU or memory utilisation of `service`'s running tasks on this engine.
///
/// Returns the sample and, when some running tasks are on other nodes (which this
/// engine cannot measure), a note naming them.
///
/// Errors: no running task on this engine (naming the nodes they run on), or no task
/// could be read.
pub async fn read(
    engine: &Engine,
    snap: &Snapshot,
    service: &Service,
    kind: Kind,
    timeout: std::time::Duration,
) -> Result<(Sample, Option<String>), String> {
    let local = match engine.within_deadline(engine.docker.info()).await {
        Ok(Ok(info)) => info.swarm.and_then(|s| s.node_id).unwrap_or_default(),
        _ => String::new(),
    };
    let hostnames: HashMap<&str, &str> = snap
        .nodes
        .iter()
        .filter_map(|n| {
            Some((
                n.id.as_deref()?,
                n.description.as_ref()?.hostname.as_deref()?,
            ))
        })
        .collect();
    let resources = service
        .spec
        .as_ref()
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.resources.as_ref())
        .and_then(|r| r.limits.as_ref());
    let limit_cores = resources
        .and_then(|l| l.nano_cpus)
        .filter(|n| *n > 0)
        .map(|n| n as f64 / 1e9);
    let limit_bytes = resources
        .and_then(|l| l.memory_bytes)
        .filter(|n| *n > 0)
        .map(|n| n as f64);
    // The running tasks as every command counts them: stale records on down nodes
    // are not measured (nor missed).
    let nodes = crate::engine::snapshot::Nodes::new(&snap.nodes);
    let running: Vec<_> = snap
        .tasks
        .iter()
        .filter(|t| t.service_id == service.id)
        .filter(|t| {
            crate::engine::snapshot::task_life(t, &nodes)
                == crate::engine::snapshot::TaskLife::Running
        })
        .collect();
    let mut elsewhere = std::collections::BTreeSet::new();
    let mut containers = vec![];
    for t in &running {
        let node = t.node_id.clone().unwrap_or_default();
        let container = t
            .status
            .as_ref()
            .and_then(|s| s.container_status.as_ref())
            .and_then(|c| c.container_id.clone());
        match container {
            Some(c) if !local.is_empty() && node == local => containers.push(c),
            _ => {
                elsewhere.insert(
                    hostnames
                        .get(node.as_str())
                        .copied()
                        .unwrap_or(node.as_str())
                        .to_string(),
                );
            }
        }
    }
    if containers.is_empty() {
        let here = hostnames
            .get(local.as_str())
            .copied()
            .unwrap_or("this engine");
        return Err(if running.is_empty() {
            "no running task to measure".to_string()
        } else {
            format!(
                "no running task on {here}, the engine this command talks to; the tasks run on {} (stats can only be read through each node's own engine)",
                elsewhere.into_iter().collect::<Vec<_>>().join(", ")
            )
        });
    }
    let reads = futures_util::stream::iter(containers)
        .map(|c| async move {
            let opts = StatsOptions {
                stream: false,
                one_shot: false,
            };
            let mut stream = engine.docker.stats(&c, Some(opts));
            tokio::time::timeout(timeout, stream.next()).await
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let values: Vec<f64> = reads
        .into_iter()
        .filter_map(|r| match r {
            Ok(Some(Ok(s))) => match kind {
                Kind::Cpu => cpu_percent(&s, limit_cores),
                Kind::Memory => memory_percent(&s, limit_bytes),
            },
            _ => None,
        })
        .collect();
    if values.is_empty() {
        return Err("the engine gave no usable stats for the service's tasks on this node".into());
    }
    let note = (!elsewhere.is_empty()).then(|| {
        format!(
            "{} measured {} of {} running tasks (those on {}); not {}",
            kind_name(kind),
            values.len(),
            running.len(),
            hostnames
                .get(local.as_str())
                .copied()
                .unwrap_or("this engine"),
            elsewhere.into_iter().collect::<Vec<_>>().join(", ")
        )
    });
    Ok((
        Sample {
            value: values.iter().sum::<f64>() / values.len() as f64,
            unit: "percent",
        },
        note,
    ))
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

    #[test]
    fn kinds() {
        assert_eq!(Kind::parse("engine://cpu"), Ok(Kind::Cpu));
        assert_eq!(Kind::parse("engine://memory/"), Ok(Kind::Memory));
        assert!(Kind::parse("engine://disk").is_err());
    }
}
