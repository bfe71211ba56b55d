//! Services as `docker service ls` shows them: the mode, the selection of services
//! by name or ID prefix, the text of a rolling update and of stale tasks.

use std::collections::BTreeSet;

use bollard::models::{Service, ServiceUpdateStatusStateEnum};
use serde::Serialize;

/// The service mode, as `docker service ls` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Mode {
    #[serde(rename = "replicated")]
    Replicated,
    #[serde(rename = "global")]
    Global,
    #[serde(rename = "replicated job")]
    ReplicatedJob,
    #[serde(rename = "global job")]
    GlobalJob,
}

impl Mode {
    /// The mode of a service spec (`Spec.Mode`); a spec without a mode is replicated,
    /// as the engine defaults it.
    pub fn of(service: &Service) -> Mode {
        let mode = service.spec.as_ref().and_then(|s| s.mode.as_ref());
        match mode {
            Some(m) if m.global.is_some() => Mode::Global,
            Some(m) if m.replicated_job.is_some() => Mode::ReplicatedJob,
            Some(m) if m.global_job.is_some() => Mode::GlobalJob,
            _ => Mode::Replicated,
        }
    }

    /// The text shown in the MODE column.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Replicated => "replicated",
            Mode::Global => "global",
            Mode::ReplicatedJob => "replicated job",
            Mode::GlobalJob => "global job",
        }
    }

    /// Parses a `--filter mode=` value: `replicated`, `global`, `replicated-job`,
    /// `global-job` (the engine's names; a space may stand for the dash).
    pub fn parse_filter(value: &str) -> Option<Mode> {
        match value.replace(' ', "-").as_str() {
            "replicated" => Some(Mode::Replicated),
            "global" => Some(Mode::Global),
            "replicated-job" => Some(Mode::ReplicatedJob),
            "global-job" => Some(Mode::GlobalJob),
            _ => None,
        }
    }
}

/// Keeps the services named on the command line, looked up as the docker CLI does:
/// full ID, then exact name, then unique ID prefix.
///
/// Returns the kept services and one error line per argument that matched nothing
/// (`no such service: X`) or an ambiguous prefix. `filtered` says that `services` was
/// already narrowed by `--filter`, which the error then mentions.
pub fn select_services(
    services: Vec<Service>,
    wanted: &[String],
    filtered: bool,
) -> (Vec<Service>, Vec<String>) {
    if wanted.is_empty() {
        return (services, vec![]);
    }
    let id_of = |s: &Service| s.id.clone().unwrap_or_default();
    let name_of = |s: &Service| s.spec.as_ref().and_then(|sp| sp.name.clone());
    let mut keep = BTreeSet::new();
    let mut errors = vec![];
    for w in wanted {
        let by = |pred: &dyn Fn(&Service) -> bool| -> Vec<usize> {
            services
                .iter()
                .enumerate()
                .filter(|(_, s)| pred(s))
                .map(|(i, _)| i)
                .collect()
        };
        let mut found = by(&|s| id_of(s) == *w);
        if found.is_empty() {
            found = by(&|s| name_of(s).as_deref() == Some(w.as_str()));
        }
        if found.is_empty() && !w.is_empty() {
            found = by(&|s| id_of(s).starts_with(w.as_str()));
        }
        let shown = if w.trim().is_empty() {
            format!("{w:?}")
        } else {
            w.clone()
        };
        match found.len() {
            0 if filtered => errors.push(format!(
                "no such service: {shown} (among the services that match --filter)"
            )),
            0 => errors.push(format!("no such service: {shown}")),
            1 => {
                keep.insert(found[0]);
            }
            n => errors.push(format!(
                "service ID prefix {shown} is ambiguous ({n} services match): give more characters of the ID, or the name"
            )),
        }
    }
    let kept = services
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, s)| s)
        .collect();
    (kept, errors)
}

/// The note the REPLICAS column adds for stale tasks (last reported running on down
/// nodes, not counted as running): ` (1 stale task on down node w1)`,
/// ` (3 stale tasks on down nodes w1, w2)`; at most [`NOTE_NODES`] hostnames, then
/// `and N more`. Empty without stale tasks.
pub fn stale_note(stale: u64, nodes: &[String]) -> String {
    if stale == 0 {
        return String::new();
    }
    let mut names = nodes
        .iter()
        .take(NOTE_NODES)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if nodes.len() > NOTE_NODES {
        names += &format!(" and {} more", nodes.len() - NOTE_NODES);
    }
    format!(
        " ({stale} stale task{} on down node{} {names})",
        if stale == 1 { "" } else { "s" },
        if nodes.len() == 1 { "" } else { "s" },
    )
}

/// Most hostnames [`stale_note`] names.
pub const NOTE_NODES: usize = 3;

/// The UPDATE column: `updating`, `paused`, `rolling back`, `rollback paused`, `rolled back`, or empty
/// (`UpdateStatus.State`).
pub fn update_text(service: &Service) -> String {
    use ServiceUpdateStatusStateEnum as S;
    match service.update_status.as_ref().and_then(|u| u.state) {
        Some(S::UPDATING) => "updating",
        Some(S::PAUSED) => "paused",
        Some(S::ROLLBACK_STARTED) => "rolling back",
        Some(S::ROLLBACK_PAUSED) => "rollback paused",
        Some(S::ROLLBACK_COMPLETED) => "rolled back",
        _ => "",
    }
    .to_string()
}
