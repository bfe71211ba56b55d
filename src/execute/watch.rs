//! Waiting for scaled services to converge, as `docker service scale` does: until
//! running == desired, then `UpdateConfig.Monitor` more
//! to see that the tasks stay up. A replicated job converges when this run's
//! completions are all done. Running is counted as every command counts it
//! ([`crate::swarm::snapshot::task_life`]): a task the engine still reports running
//! on a down node is stale and ignored, and one line per service says which.
//!
//! Each tick makes three Engine API calls for all watched services together:
//! `GET /services?filters={"id":[...]}`, `GET /tasks?filters={"service":[...]}` and
//! `GET /nodes`.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bollard::models::{Service, Task, TaskState};
use bollard::query_parameters::{ListNodesOptions, ListServicesOptions, ListTasksOptions};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::update::{Convergence, Outcome};
use crate::engine::{Engine, request_timeout_secs};
use crate::swarm::snapshot::{Nodes, TaskLife, task_life};

/// Time between two reads of the swarm while waiting.
pub const TICK: Duration = Duration::from_millis(500);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// One indicatif bar per service on stderr (stderr is a terminal).
    Bars,
    /// A plain line on stderr whenever a service's count changes.
    Lines,
    /// Nothing (`--quiet`).
    Quiet,
}

/// What one watched service looks like at one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    /// Replicas (completions) the spec asks for.
    pub desired: u64,
    /// Running tasks that should run ([`task_life`]: on nodes that are not down); for
    /// a job: this run's completed tasks.
    pub done: u64,
    /// Running tasks that should stop (a scale-down in progress).
    pub stopping: u64,
    /// Stale tasks, ignored: last reported running on nodes that are down.
    pub stale: u64,
    /// Hostnames of the nodes holding them, sorted, each once.
    pub stale_nodes: Vec<String>,
    /// A replicated job: `done` counts completions.
    pub job: bool,
}

impl Count {
    /// Whether the service has what it asks for.
    pub fn converged(&self) -> bool {
        if self.job {
            self.done >= self.desired
        } else {
            self.done == self.desired && self.stopping == 0
        }
    }
}

/// Counts `service`'s tasks among `tasks`, with `nodes` the swarm's nodes: tasks the
/// engine still reports running on down nodes are stale and ignored (as `docker
/// service scale` ignores them), and so are a job's tasks on down nodes.
/// `job_iteration`: for a replicated job, the run whose completions count.
pub fn count(
    service: &Service,
    tasks: &[Task],
    nodes: &Nodes,
    job_iteration: Option<u64>,
) -> Option<Count> {
    let id = service.id.as_deref()?;
    let mode = service.spec.as_ref()?.mode.as_ref()?;
    let mine = tasks.iter().filter(|t| t.service_id.as_deref() == Some(id));
    let state = |t: &Task| t.status.as_ref().and_then(|s| s.state);
    if let Some(job) = &mode.replicated_job {
        let iteration = job_iteration?;
        let done = mine
            .filter(|t| t.node_id.as_deref().is_none_or(|n| !nodes.down(n)))
            .filter(|t| {
                // Go leaves out an index of 0: `"JobIteration": {}`.
                t.job_iteration.as_ref().map(|v| v.index.unwrap_or(0)) == Some(iteration)
                    && state(t) == Some(TaskState::COMPLETE)
            })
            .count() as u64;
        return Some(Count {
            desired: job.total_completions.unwrap_or(0).max(0) as u64,
            done,
            stopping: 0,
            stale: 0,
            stale_nodes: vec![],
            job: true,
        });
    }
    let desired = mode.replicated.as_ref()?.replicas.unwrap_or(0).max(0) as u64;
    let (mut done, mut stopping, mut stale) = (0, 0, 0);
    let mut stale_nodes = std::collections::BTreeSet::new();
    for t in mine {
        match task_life(t, nodes) {
            TaskLife::Running if t.desired_state == Some(TaskState::RUNNING) => done += 1,
            TaskLife::Running => stopping += 1,
            TaskLife::Stale => {
                stale += 1;
                stale_nodes.insert(nodes.hostname(t.node_id.as_deref().unwrap_or_default()));
            }
            TaskLife::NotRunning => {}
        }
    }
    Some(Count {
        desired,
        done,
        stopping,
        stale,
        stale_nodes: stale_nodes.into_iter().collect(),
        job: false,
    })
}

/// The one line that says which stale tasks a wait ignores, e.g. `web: ignoring 1
/// stale task on down node w1 (the engine still reports it running; Swarm has
/// replaced it)`; `None` without stale tasks.
pub fn stale_line(service: &str, c: &Count) -> Option<String> {
    (c.stale > 0).then(|| {
        format!(
            "{service}: ignoring{} (the engine still reports {} running; Swarm has replaced {})",
            crate::swarm::service::stale_note(c.stale, &c.stale_nodes)
                .trim_end_matches(')')
                .replacen(" (", " ", 1),
            if c.stale == 1 { "it" } else { "them" },
            if c.stale == 1 { "it" } else { "them" },
        )
    })
}

/// Per-service state of the wait.
struct Tracker {
    idx: usize,
    id: String,
    name: String,
    job: bool,
    monitor: Duration,
    stable_since: Option<Instant>,
    since: Option<jiff::Timestamp>,
    last: Option<(Count, bool)>,
    seen: HashSet<String>,
    /// The stale tasks last reported as ignored (count, hostnames).
    stale_said: (u64, Vec<String>),
    bar: Option<ProgressBar>,
    finished: bool,
}

/// Waits for every outcome in `outcomes` that was updated (`Detached`) to converge,
/// and sets its [`Convergence`] and running count. Tasks that fail meanwhile are
/// shown with their error; so is why tasks wait (`no suitable node`).
///
/// `timeout` bounds the wait. Writes to `outcomes` only between awaits, so a caller
/// that stops this future (Ctrl-C) can still read where each service stood.
pub async fn watch(
    engine: &Engine,
    outcomes: &RefCell<Vec<Outcome>>,
    timeout: Option<Duration>,
    progress: Progress,
) {
    let start = Instant::now();
    let multi = (progress == Progress::Bars)
        .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut trackers: Vec<Tracker> = outcomes
        .borrow()
        .iter()
        .enumerate()
        .filter(|(_, o)| o.convergence == Convergence::Detached)
        .map(|(idx, o)| Tracker {
            idx,
            id: o.id.clone(),
            name: o.service.clone(),
            job: o.mode == "replicated job",
            monitor: Duration::from_secs_f64(o.monitor_secs),
            stable_since: None,
            since: None,
            last: None,
            seen: HashSet::new(),
            stale_said: (0, vec![]),
            bar: None,
            finished: false,
        })
        .collect();
    if trackers.is_empty() {
        return;
    }
    let width = trackers
        .iter()
        .map(|t| unicode_width::UnicodeWidthStr::width(t.name.as_str()))
        .max()
        .unwrap_or(0);
    if let Some(multi) = &multi {
        for t in &mut trackers {
            let target = outcomes.borrow()[t.idx].after.unwrap_or(0);
            let bar = multi.add(ProgressBar::new(target));
            bar.set_style(style.clone());
            bar.set_prefix(format!(
                "{:width$}",
                crate::edge::text::printable(&t.name),
                width = width
            ));
            bar.set_message("waiting");
            t.bar = Some(bar);
        }
    }
    let note = |text: &str| match &multi {
        Some(m) => {
            let _ = m.println(crate::edge::text::printable(text));
        }
        None if progress == Progress::Lines => crate::edge::exit::say(text),
        None => {}
    };
    let mut failing_since: Option<Instant> = None;
    loop {
        if trackers.iter().all(|t| t.finished) {
            break;
        }
        if let Some(limit) = timeout
            && start.elapsed() >= limit
        {
            for t in trackers.iter_mut().filter(|t| !t.finished) {
                let mut all = outcomes.borrow_mut();
                let o = &mut all[t.idx];
                o.convergence = Convergence::Timeout;
                let state = match &t.last {
                    Some((c, _)) => format!(
                        "{}/{} {}",
                        c.done.min(c.desired),
                        c.desired,
                        if t.job { "completed" } else { "running" }
                    ),
                    None => "the swarm could not be read in time".into(),
                };
                o.error = Some(format!(
                    "not converged within {}: {state}; the update stands and Swarm keeps working on it: follow it with `docker service ps {}`",
                    humantime::format_duration(limit),
                    t.name
                ));
                if let Some(bar) = &t.bar {
                    bar.abandon_with_message("timed out");
                }
                t.finished = true;
            }
            break;
        }
        let ids: Vec<String> = trackers
            .iter()
            .filter(|t| !t.finished)
            .map(|t| t.id.clone())
            .collect();
        // Services first: the tasks filter fails as a whole (404) when one of its
        // services was removed, so only the services still there are asked for.
        let round = async {
            let services = engine
                .docker
                .list_services(Some(ListServicesOptions {
                    filters: Some(HashMap::from([("id".to_string(), ids.clone())])),
                    status: Some(false),
                }))
                .await
                .map_err(|e| engine.classify(e))?;
            let present: Vec<String> = ids
                .iter()
                .filter(|id| services.iter().any(|s| s.id.as_ref() == Some(*id)))
                .cloned()
                .collect();
            if present.is_empty() {
                return Ok((services, vec![], vec![]));
            }
            let (tasks, nodes) = tokio::join!(
                engine.docker.list_tasks(Some(ListTasksOptions {
                    filters: Some(HashMap::from([("service".to_string(), present)])),
                })),
                engine.docker.list_nodes(None::<ListNodesOptions>),
            );
            Ok::<_, crate::engine::EngineError>((
                services,
                tasks.map_err(|e| engine.classify(e))?,
                nodes.map_err(|e| engine.classify(e))?,
            ))
        };
        // A round never outlasts the request timeout, nor the user's --timeout.
        let mut round_deadline =
            tokio::time::Instant::now() + Duration::from_secs(request_timeout_secs());
        if let Some(limit) = timeout {
            round_deadline = round_deadline.min(tokio::time::Instant::from_std(start + limit));
        }
        let read = match tokio::time::timeout_at(round_deadline, round).await {
            Ok(r) => r,
            Err(_) if timeout.is_some_and(|l| start.elapsed() >= l) => continue,
            Err(_) => Err(engine.timed_out(request_timeout_secs())),
        };
        let (services, tasks, nodes) = match read {
            Ok(r) => {
                failing_since = None;
                r
            }
            Err(e) => {
                let err = e.to_string();
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_secs(request_timeout_secs()) {
                    for t in trackers.iter_mut().filter(|t| !t.finished) {
                        let mut all = outcomes.borrow_mut();
                        all[t.idx].convergence = Convergence::Lost;
                        all[t.idx].error = Some(format!(
                            "the update stands, but the swarm could not be read while waiting: {err}"
                        ));
                        if let Some(bar) = &t.bar {
                            bar.abandon_with_message("engine lost");
                        }
                        t.finished = true;
                    }
                    break;
                }
                tokio::time::sleep(TICK).await;
                continue;
            }
        };
        let nodes = Nodes::new(&nodes);
        for t in trackers.iter_mut().filter(|t| !t.finished) {
            let Some(service) = services.iter().find(|s| s.id.as_deref() == Some(&t.id)) else {
                let mut all = outcomes.borrow_mut();
                all[t.idx].convergence = Convergence::Removed;
                all[t.idx].error = Some(format!("{} was removed while waiting for it", t.name));
                if let Some(bar) = &t.bar {
                    bar.abandon_with_message("removed");
                }
                t.finished = true;
                continue;
            };
            if t.since.is_none() {
                t.since = service.updated_at.as_deref().and_then(|u| u.parse().ok());
            }
            // Go leaves out an index of 0: `"JobIteration": {}`.
            let iteration = service
                .job_status
                .as_ref()
                .and_then(|j| j.job_iteration.as_ref())
                .map(|v| v.index.unwrap_or(0));
            let Some(c) = count(service, &tasks, &nodes, iteration) else {
                continue;
            };
            for line in task_news(t, &tasks, &nodes) {
                note(&line);
            }
            // Once per change of what is ignored, not at every tick.
            if (c.stale, &c.stale_nodes) != (t.stale_said.0, &t.stale_said.1) {
                if let Some(line) = stale_line(&t.name, &c) {
                    note(&line);
                }
                t.stale_said = (c.stale, c.stale_nodes.clone());
            }
            let converged = c.converged();
            let now = Instant::now();
            let stable = if converged {
                let since = *t.stable_since.get_or_insert(now);
                t.job || now.duration_since(since) >= t.monitor
            } else {
                t.stable_since = None;
                false
            };
            let verb = if t.job { "completed" } else { "running" };
            let phase = if stable {
                "converged".to_string()
            } else if converged {
                format!(
                    "verifying that they stay up for {}",
                    humantime::format_duration(t.monitor)
                )
            } else if c.stopping > 0 || c.done > c.desired {
                // A scale-down: the surplus is stopping (or about to be told to).
                format!(
                    "{verb}, {} stopping",
                    c.stopping + c.done.saturating_sub(c.desired)
                )
            } else {
                verb.to_string()
            };
            if t.last.as_ref() != Some(&(c.clone(), converged)) || stable {
                match &t.bar {
                    Some(bar) => {
                        bar.set_length(c.desired);
                        bar.set_position(c.done.min(c.desired));
                        bar.set_message(phase.clone());
                    }
                    None => note(&format!(
                        "{}: {}/{} {phase}",
                        t.name,
                        c.done.min(c.desired),
                        c.desired
                    )),
                }
            }
            t.last = Some((c.clone(), converged));
            {
                let mut all = outcomes.borrow_mut();
                all[t.idx].running = Some(c.done);
            }
            if stable {
                outcomes.borrow_mut()[t.idx].convergence = Convergence::Converged;
                if let Some(bar) = &t.bar {
                    bar.finish_with_message("converged");
                }
                t.finished = true;
            }
        }
        if trackers.iter().all(|t| t.finished) {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Lines about this service's tasks not seen before: tasks that failed or were
/// rejected since the update, and why tasks wait (`no suitable node ...`).
fn task_news(t: &mut Tracker, tasks: &[Task], nodes: &Nodes) -> Vec<String> {
    let mut lines = vec![];
    for task in tasks
        .iter()
        .filter(|x| x.service_id.as_deref() == Some(&t.id))
    {
        let Some(status) = &task.status else { continue };
        let err = status.err.clone().unwrap_or_default();
        let when: Option<jiff::Timestamp> =
            status.timestamp.as_deref().and_then(|s| s.parse().ok());
        let recent = match (t.since, when) {
            (Some(since), Some(when)) => when >= since,
            _ => false,
        };
        let task_name = match task.slot {
            Some(slot) if !t.job => format!("{}.{slot}", t.name),
            _ => t.name.clone(),
        };
        let short: String = task
            .id
            .clone()
            .unwrap_or_default()
            .chars()
            .take(12)
            .collect();
        match status.state {
            Some(TaskState::FAILED | TaskState::REJECTED)
                if recent && t.seen.insert(format!("task:{short}")) =>
            {
                let node = task
                    .node_id
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .map(|n| format!(" on {}", nodes.hostname(n)))
                    .unwrap_or_default();
                let state = status.state.map(|s| s.to_string()).unwrap_or_default();
                lines.push(format!(
                    "{task_name} ({short}){node} {state}: {}",
                    if err.is_empty() {
                        status.message.clone().unwrap_or_default()
                    } else {
                        err
                    }
                ));
            }
            Some(TaskState::PENDING | TaskState::ASSIGNED)
                if !err.is_empty()
                    && task.desired_state == Some(TaskState::RUNNING)
                    && t.seen.insert(format!("pending:{err}")) =>
            {
                lines.push(format!("{}: a task is waiting: {err}", t.name));
            }
            _ => {}
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(id: &str, service: &str, node: &str, desired: &str, state: &str) -> Task {
        serde_json::from_value(json!({
            "ID": id, "ServiceID": service, "NodeID": node, "DesiredState": desired,
            "Status": {"State": state}
        }))
        .unwrap()
    }

    fn service(replicas: u64) -> Service {
        serde_json::from_value(json!({
            "ID": "s1", "Spec": {"Mode": {"Replicated": {"Replicas": replicas}}}
        }))
        .unwrap()
    }

    /// Nodes `(id, hostname, state)`, as `GET /nodes` returns them.
    fn nodes(list: &[(&str, &str, &str)]) -> Vec<bollard::models::Node> {
        list.iter()
            .map(|(id, host, state)| {
                serde_json::from_value(json!({
                    "ID": id, "Description": {"Hostname": host}, "Status": {"State": state}
                }))
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn running_tasks_on_live_nodes_count() {
        let tasks = vec![
            task("a", "s1", "n1", "running", "running"),
            task("b", "s1", "n2", "running", "running"),
            task("c", "s1", "n1", "running", "starting"),
            task("d", "other", "n1", "running", "running"),
        ];
        let up = nodes(&[("n1", "a", "ready"), ("n2", "b", "ready")]);
        let c = count(&service(3), &tasks, &Nodes::new(&up), None).unwrap();
        assert_eq!((c.desired, c.done, c.stopping, c.stale), (3, 2, 0, 0));
        assert!(!c.converged());
        assert_eq!(stale_line("web", &c), None);
        let down = nodes(&[("n1", "a", "ready"), ("n2", "b", "down")]);
        let c = count(&service(1), &tasks, &Nodes::new(&down), None).unwrap();
        assert_eq!(
            (c.done, c.stopping, c.stale),
            (1, 0, 1),
            "the task on the down node is ignored"
        );
        assert_eq!(c.stale_nodes, ["b"]);
        assert!(c.converged());
        assert_eq!(
            stale_line("web", &c).unwrap(),
            "web: ignoring 1 stale task on down node b (the engine still reports it running; Swarm has replaced it)"
        );
    }

    #[test]
    fn stale_tasks_after_a_worker_died_are_ignored_and_named() {
        // Swarm replaced the dead workers' tasks (desired shutdown, last seen running)
        // with new ones on the live node; unknown and disconnected nodes keep theirs.
        let tasks = vec![
            task("a", "s1", "n1", "running", "running"),
            task("b", "s1", "n1", "running", "running"),
            task("c", "s1", "n2", "shutdown", "running"),
            task("d", "s1", "n3", "shutdown", "running"),
            task("e", "s1", "n3", "shutdown", "running"),
            task("f", "s1", "n4", "running", "running"),
            task("g", "s1", "n5", "running", "running"),
            // On a node that left the swarm (`docker node rm --force`).
            task("h", "s1", "gone0123456789", "shutdown", "running"),
        ];
        let list = nodes(&[
            ("n1", "m1", "ready"),
            ("n2", "w1", "down"),
            ("n3", "w2", "down"),
            ("n4", "w3", "unknown"),
            ("n5", "w4", "disconnected"),
        ]);
        let c = count(&service(4), &tasks, &Nodes::new(&list), None).unwrap();
        assert_eq!((c.done, c.stopping, c.stale), (4, 0, 4));
        assert_eq!(c.stale_nodes, ["gone01234567", "w1", "w2"]);
        assert!(c.converged());
        assert_eq!(
            stale_line("web", &c).unwrap(),
            "web: ignoring 4 stale tasks on down nodes gone01234567, w1, w2 (the engine still reports them running; Swarm has replaced them)"
        );
    }

    #[test]
    fn a_drain_is_a_move_in_progress_not_stale() {
        // A drained node is ready: its task still runs until Swarm has stopped it.
        let tasks = vec![
            task("a", "s1", "n1", "running", "running"),
            task("b", "s1", "n2", "shutdown", "running"),
            task("c", "s1", "n1", "running", "starting"),
        ];
        let list: Vec<bollard::models::Node> = vec![
            nodes(&[("n1", "a", "ready")]).remove(0),
            serde_json::from_value(json!({
                "ID": "n2", "Description": {"Hostname": "b"}, "Status": {"State": "ready"},
                "Spec": {"Availability": "drain"}
            }))
            .unwrap(),
        ];
        let c = count(&service(2), &tasks, &Nodes::new(&list), None).unwrap();
        assert_eq!((c.done, c.stopping, c.stale), (1, 1, 0));
        assert!(!c.converged());
    }

    #[test]
    fn a_scale_down_converges_when_the_surplus_has_stopped() {
        let mut tasks = vec![
            task("a", "s1", "n1", "running", "running"),
            task("b", "s1", "n1", "shutdown", "running"),
        ];
        let up = nodes(&[("n1", "a", "ready")]);
        let c = count(&service(1), &tasks, &Nodes::new(&up), None).unwrap();
        assert_eq!((c.done, c.stopping), (1, 1));
        assert!(!c.converged());
        tasks[1] = task("b", "s1", "n1", "shutdown", "shutdown");
        assert!(
            count(&service(1), &tasks, &Nodes::new(&up), None)
                .unwrap()
                .converged()
        );
    }

    #[test]
    fn a_job_counts_completions_of_its_current_run() {
        let job: Service = serde_json::from_value(json!({
            "ID": "j", "Spec": {"Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 2}}}
        }))
        .unwrap();
        let t = |id: &str, iter: u64, state: &str| -> Task {
            serde_json::from_value(json!({
                "ID": id, "ServiceID": "j", "DesiredState": "complete",
                "JobIteration": {"Index": iter}, "Status": {"State": state}
            }))
            .unwrap()
        };
        let tasks = vec![
            t("old", 5, "complete"),
            t("new", 9, "complete"),
            t("n2", 9, "running"),
        ];
        let c = count(&job, &tasks, &Nodes::new(&[]), Some(9)).unwrap();
        assert_eq!((c.desired, c.done), (2, 1));
        assert!(!c.converged());
    }
}
