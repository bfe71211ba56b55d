//! `docker microscale status`: one row per service, built from a [`Snapshot`].
//!
//! Everything here is pure (no I/O), so the row logic is unit-tested directly and the
//! integration tests check it against a real swarm.

pub mod live;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{EndpointPortConfigPublishModeEnum, Service};
use serde::Serialize;

use crate::edge::text::ellipsize;
use crate::render::docker_table;
use crate::swarm::labels;
use crate::swarm::service::{Mode, select_services, stale_note, update_text};
use crate::swarm::snapshot::{Filters, Nodes, Snapshot, count_running};

/// One line of `status`; also the JSON object printed by `--format json`.
///
/// The keys `ID`, `Name`, `Mode`, `Replicas`, `Image` and `Ports` carry the same values
/// as `docker service ls --format json`; the others are documented in
/// `docs/status-json.md`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceRow {
    /// Service ID (12 characters unless `--no-trunc`).
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name.
    pub name: String,
    /// Service mode.
    pub mode: Mode,
    /// `running/desired`, with `(max N per node)` or `(completed/total completed)` for
    /// jobs, as `docker service ls` shows it, except that `running` leaves out stale
    /// tasks, which a note then names: `3/3 (1 stale task on down node w1)` where
    /// `docker service ls` says `4/3` ([`stale_note`]).
    pub replicas: String,
    /// Tasks that really run ([`crate::swarm::snapshot::task_life`]):
    /// `ServiceStatus.RunningTasks` minus `tasks_on_down_nodes`.
    pub running: u64,
    /// Desired tasks (`ServiceStatus.DesiredTasks`).
    pub desired: u64,
    /// Completed tasks of a job (`ServiceStatus.CompletedTasks`); `null` for services.
    pub completed: Option<u64>,
    /// `Placement.MaxReplicas` (per node); `null` when unlimited.
    pub max_per_node: Option<u64>,
    /// The image as `docker service ls` shows it: a tagged reference without its
    /// digest, any other reference as written in the spec.
    pub image: String,
    /// The image reference without its digest (the table shows it with a short digest).
    #[serde(skip)]
    pub image_name: String,
    /// The pinned image digest (`sha256:...`); empty when the spec is unpinned.
    pub digest: String,
    /// Rolling update state: `updating`, `paused`, `rolling back`, `rollback paused`,
    /// `rolled back`; empty otherwise.
    pub update: String,
    /// Source repository and short revision from the image's provenance labels
    /// (`github.com/org/repo@0123456`; the whole revision with `--no-trunc`), read
    /// from the engine's image store; empty when the image has no source label, `?`
    /// when the image is not in that store.
    pub source: String,
    /// One-line summary of the scaling labels; `-` when there are none.
    pub rule: String,
    /// The `microscale.*` and `com.microscaling.*` service labels.
    pub rule_labels: BTreeMap<String, String>,
    /// The rule's winning metric as `value / target` (`-` in the table when none was
    /// read); `null` for services without a rule. From the same code as `plan`.
    pub metric: Option<String>,
    /// Why a metric of the rule could not be read (`--metrics`): `plan`'s reasons
    /// that say so, joined with `; `, e.g. `metric unreadable: cannot connect to
    /// redis at 127.0.0.1:6379: connection refused (reading redis://…)`. The table
    /// marks METRIC `- (1)` and prints the reason under it. `null` when every metric
    /// was read, when metrics were not read, and for services without a rule.
    pub metric_error: Option<String>,
    /// The replicas the rule would set now (the DESIRED column; `plan`'s `Desired`);
    /// `null` for services without a rule, with a rule that has errors, and for a
    /// rule with metrics when they were not read (`status` without `--metrics`):
    /// the rule's decision needs them.
    pub rule_desired: Option<u64>,
    /// Number of distinct nodes that really run a task of this service (nodes that
    /// are down are not counted).
    pub nodes: usize,
    /// Stale tasks: last reported `running` on a node whose state is `down` (or that
    /// left the swarm). The engine still counts them in `ServiceStatus.RunningTasks`;
    /// they are not in `running`.
    pub tasks_on_down_nodes: usize,
    /// Hostnames of those nodes, sorted.
    pub down_nodes: Vec<String>,
    /// Published ingress ports, as `docker service ls` shows them.
    pub ports: String,
    /// A fight the `run` agent recorded: another writer keeps resetting the replica
    /// count it set; `null` when none (see `docs/agent.md`).
    pub fight: Option<FightRow>,
}

/// A fight as `status` shows it (from the agent's `microscale-agent-fights` config).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FightRow {
    /// Resets seen by the agent.
    pub resets: u64,
    /// When the agent saw the last one (RFC 3339).
    pub last: String,
    /// The count the other writer set last.
    pub their_replicas: u64,
}

/// Adds the agent's fight records to the rows (by full service ID).
pub fn fill_fights(
    rows: &mut [ServiceRow],
    fights: &BTreeMap<String, crate::store::fights::Fight>,
) {
    for row in rows.iter_mut().filter(|r| !r.id.is_empty()) {
        // Row IDs may be truncated; 12 characters of a swarm ID are unique.
        if let Some(f) = fights
            .iter()
            .find(|(id, _)| id.starts_with(&row.id))
            .map(|(_, f)| f)
        {
            row.fight = Some(FightRow {
                resets: f.resets,
                last: f.last.clone(),
                their_replicas: f.their_count,
            });
        }
    }
}

/// Length of a truncated ID, as the docker CLI prints it.
pub const SHORT_ID: usize = 12;

/// Parses `--filter key=value` flags into the Engine API filter map.
///
/// Keys: `name` (prefix), `id` (prefix), `label` (`key` or `key=value`), `mode`
/// (`replicated`, `global`, `replicated-job`, `global-job`). `mode` is applied here
/// after the read, so that job modes work on every engine; the rest go to the engine.
/// Errors: a flag without `=`, an unknown key, or an unknown mode, each named.
pub fn parse_filters(flags: &[String]) -> Result<(Filters, Vec<Mode>), String> {
    let mut filters = Filters::new();
    let mut modes = vec![];
    for flag in flags {
        let Some((key, value)) = flag.split_once('=') else {
            return Err(format!(
                "bad format of filter \"{flag}\" (expected name=value)"
            ));
        };
        let key = key.trim().to_ascii_lowercase();
        match key.as_str() {
            "name" | "id" | "label" => filters
                .entry(key)
                .or_default()
                .push(value.trim().to_string()),
            "mode" => modes.push(Mode::parse_filter(value.trim()).ok_or_else(|| {
                format!(
                    "invalid filter 'mode={value}': expected replicated, global, replicated-job or global-job"
                )
            })?),
            _ => {
                return Err(format!(
                    "invalid filter '{key}': the keys are name, label, mode and id"
                ));
            }
        }
    }
    Ok((filters, modes))
}

/// Splits an image reference into the reference without digest and the digest.
///
/// `nginx:1.25@sha256:ab..` → (`nginx:1.25`, `sha256:ab..`). The name is made familiar
/// as the docker CLI prints it (`docker.io/library/` removed).
pub fn split_image(image: &str) -> (String, String) {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, d.to_string()),
        None => (image, String::new()),
    };
    let name = name
        .strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("index.docker.io/library/"))
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name);
    (name.to_string(), digest)
}

/// The IMAGE of `docker service ls` (docker/cli `service/formatter.go`): a tagged
/// reference loses its digest and is made familiar; anything else is shown as written.
fn docker_image_display(spec_image: &str, familiar_without_digest: &str) -> String {
    let tagged = familiar_without_digest
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'));
    if tagged {
        familiar_without_digest.to_string()
    } else {
        spec_image.to_string()
    }
}

/// The REPLICAS text, as docker/cli `service/formatter.go` builds it.
fn replicas_text(
    mode: Mode,
    running: u64,
    desired: u64,
    completed: u64,
    total: Option<u64>,
    max: Option<u64>,
) -> String {
    match mode {
        Mode::ReplicatedJob => format!(
            "{running}/{desired} ({completed}/{} completed)",
            total.unwrap_or(0)
        ),
        Mode::GlobalJob => format!(
            "{running}/{desired} ({completed}/{} completed)",
            desired.saturating_add(completed)
        ),
        _ => match max {
            Some(m) => format!("{running}/{desired} (max {m} per node)"),
            None => format!("{running}/{desired}"),
        },
    }
}

/// The PORTS of `docker service ls` (docker/cli `service/formatter.go`): ingress
/// ports sorted by protocol then published port, consecutive ports merged into
/// ranges (`*:8100-8103->100-103/tcp`).
fn ports_text(service: &Service) -> String {
    let ports = service
        .endpoint
        .as_ref()
        .and_then(|e| e.ports.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut list: Vec<(String, i64, i64, bool)> = ports
        .iter()
        .map(|p| {
            (
                p.protocol.map(|x| x.to_string()).unwrap_or_default(),
                p.published_port.unwrap_or(0),
                p.target_port.unwrap_or(0),
                p.publish_mode == Some(EndpointPortConfigPublishModeEnum::INGRESS),
            )
        })
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    // (protocol, published start, published end, target start, target end)
    let mut ranges: Vec<(String, i64, i64, i64, i64)> = vec![];
    for (proto, published, target, ingress) in list {
        if !ingress {
            continue;
        }
        // Go compares unsigned ports: a step back wraps around and starts a new range.
        let next = |step: i64| step == 0 || step == 1;
        match ranges.last_mut() {
            Some(r)
                if r.0 == proto
                    && next(published - r.2)
                    && next(target - r.4)
                    && !(r.4 != r.3 && target <= r.4) =>
            {
                r.2 = published;
                r.4 = target;
            }
            _ => ranges.push((proto, published, published, target, target)),
        }
    }
    let span = |a: i64, b: i64| {
        if b > a {
            format!("{a}-{b}")
        } else {
            a.to_string()
        }
    };
    ranges
        .iter()
        .filter(|r| r.1 > 0)
        .map(|(proto, ps, pe, ts, te)| format!("*:{}->{}/{proto}", span(*ps, *pe), span(*ts, *te)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds the rows for the services in `snap`, sorted by name.
///
/// `full_ids` keeps IDs untruncated.
pub fn build_rows(snap: &Snapshot, full_ids: bool) -> Vec<ServiceRow> {
    let nodes = Nodes::new(&snap.nodes);

    // Tasks grouped by service ID.
    let mut tasks_by_service: HashMap<&str, Vec<&bollard::models::Task>> = HashMap::new();
    for t in &snap.tasks {
        if let Some(sid) = t.service_id.as_deref() {
            tasks_by_service.entry(sid).or_default().push(t);
        }
    }

    let no_labels = HashMap::new();
    let rows: Vec<ServiceRow> = snap
        .services
        .iter()
        .map(|s| {
            // Read in place: a row takes a few fields, not a copy of the spec.
            let id = s.id.as_deref().unwrap_or_default();
            let spec = s.spec.as_ref();
            let mode = Mode::of(s);
            let status = s.service_status.as_ref();
            let desired = status.and_then(|st| st.desired_tasks).unwrap_or(0);
            let completed = status.and_then(|st| st.completed_tasks).unwrap_or(0);
            let task_template = spec.and_then(|sp| sp.task_template.as_ref());
            let max_per_node = task_template
                .and_then(|t| t.placement.as_ref())
                .and_then(|p| p.max_replicas)
                .filter(|m| *m > 0)
                .map(|m| m as u64);
            let total = spec
                .and_then(|sp| sp.mode.as_ref())
                .and_then(|m| m.replicated_job.as_ref())
                .and_then(|j| j.total_completions)
                .map(|t| t.max(0) as u64);
            let is_job = matches!(mode, Mode::ReplicatedJob | Mode::GlobalJob);
            let image_ref = task_template
                .and_then(|t| t.container_spec.as_ref())
                .and_then(|c| c.image.as_deref())
                .unwrap_or_default();
            let (image_name, digest) = split_image(image_ref);
            let image = docker_image_display(image_ref, &image_name);
            let svc_labels = spec.and_then(|sp| sp.labels.as_ref()).unwrap_or(&no_labels);

            let tasks = tasks_by_service
                .get(id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            // One definition of a running task for every command: tasks the engine
            // still reports running on down nodes are stale, not replicas.
            let counted = count_running(s, tasks.iter().copied(), &nodes);
            let running = counted.running;

            ServiceRow {
                id: if full_ids {
                    id.to_string()
                } else {
                    id.chars().take(SHORT_ID).collect()
                },
                name: spec.and_then(|sp| sp.name.clone()).unwrap_or_default(),
                mode,
                replicas: replicas_text(
                    mode,
                    running,
                    desired,
                    completed,
                    total,
                    if is_job { None } else { max_per_node },
                ) + &stale_note(counted.stale, &counted.stale_nodes),
                running,
                desired,
                completed: is_job.then_some(completed),
                max_per_node,
                image,
                image_name,
                digest,
                update: update_text(s),
                source: String::new(),
                rule: labels::rule_summary(svc_labels).unwrap_or_else(|| "-".into()),
                rule_labels: labels::rule_labels(svc_labels),
                metric: None,
                metric_error: None,
                rule_desired: None,
                nodes: counted.nodes,
                tasks_on_down_nodes: counted.stale as usize,
                down_nodes: counted.stale_nodes,
                ports: ports_text(s),
                fight: None,
            }
        })
        .collect();
    // Sorted through their indices: a row is large, and moving it once is enough.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&rows[a], &rows[b]);
        crate::render::natural_cmp(&a.name, &b.name).then(a.id.cmp(&b.id))
    });
    let mut slots: Vec<Option<ServiceRow>> = rows.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// Fills METRIC, its error and DESIRED from the plan of each rule-managed service
/// ([`crate::plan::plan`], the code of `docker microscale plan`).
///
/// `values`: the metric readings for `--metrics` (by [`crate::plan::metric_key`]:
/// value or reason, and which tasks an engine reading covers); `None`: metrics are
/// not read, and DESIRED is left empty for a rule with metrics (its decision needs
/// them; a rule without metrics still has its bounds applied).
pub fn fill_plan(rows: &mut [ServiceRow], snap: &Snapshot, values: Option<&crate::plan::Readings>) {
    let now = crate::edge::clock::wall_clock();
    let planned = match values {
        Some(v) => crate::plan::plan_with_history(
            &snap.services,
            snap,
            None,
            None,
            now,
            true,
            v,
            &mut HashMap::new(),
        ),
        None => crate::plan::plan(
            &snap.services,
            snap,
            None,
            None,
            now,
            true,
            &crate::plan::unread_metric,
        ),
    };
    // Without readings: the services whose rule needs a metric for its decision.
    let needs_metric: BTreeSet<String> = if values.is_some() {
        BTreeSet::new()
    } else {
        crate::rules::check::rule_inputs(&snap.services, None)
            .into_iter()
            .filter(|(s, labels, _)| {
                crate::rules::parse_labels(
                    &crate::rules::check::service_name(s),
                    Mode::of(s),
                    labels,
                )
                .rule
                .is_some_and(|r| !r.metrics.is_empty())
            })
            .filter_map(|(s, _, _)| s.id.clone())
            .collect()
    };
    // Rows by ID (whole, or its first SHORT_ID characters): one lookup per plan row,
    // not a scan of the rows.
    let index: HashMap<String, usize> = rows
        .iter()
        .enumerate()
        .rev()
        .map(|(i, r)| (r.id.clone(), i))
        .collect();
    for p in planned {
        let short: String = p.id.chars().take(SHORT_ID).collect();
        let found = index.get(&p.id).or_else(|| index.get(&short));
        if let Some(row) = found.map(|&i| &mut rows[i]) {
            row.metric = Some(p.metric.clone().unwrap_or_else(|| "-".into()));
            let failures = crate::plan::metric_failures(&p.reasons);
            row.metric_error =
                (values.is_some() && !failures.is_empty()).then(|| failures.join("; "));
            let computed = p.action != "error" && !needs_metric.contains(&p.id);
            row.rule_desired = computed.then_some(p.desired);
        }
    }
}

/// How long `status --metrics` waits for each metric source.
pub const STATUS_METRIC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// SOURCE of an image that is not in the engine's image store.
pub const NOT_IN_STORE: &str = "?";

/// The reference under which SOURCE looks an image up in the engine's image store:
/// `repository@digest` (found in `RepoDigests`) when the spec is pinned, else
/// `name:tag` (found in `RepoTags`; `:latest` when untagged). Names are familiar
/// (`docker.io/library/` removed), as the engine lists them.
fn store_reference(image_name: &str, digest: &str) -> String {
    use crate::provenance::strip_tag;
    let name = familiar(image_name);
    if digest.is_empty() {
        if strip_tag(name) == name {
            format!("{name}:latest")
        } else {
            name.to_string()
        }
    } else {
        format!("{}@{digest}", strip_tag(name))
    }
}

fn familiar(r: &str) -> &str {
    r.strip_prefix("docker.io/library/")
        .or_else(|| r.strip_prefix("docker.io/"))
        .unwrap_or(r)
}

/// Most distinct images [`read_images`] inspects (all at once: as many calls in
/// flight as `scale` allows); with more, it lists the whole store in one call.
pub const INSPECT_LIMIT: usize = 16;

/// The images of `rows` from the engine's image store, for [`fill_sources`]: each
/// distinct image inspected (`GET /images/{name}/json`, concurrently) when there are
/// at most [`INSPECT_LIMIT`] of them, else the whole store listed (`GET /images/json`;
/// its cost grows with the images on the host, not with the services shown). Over
/// ssh (one login per concurrent call), the list. Images the engine does not have are
/// left out.
///
/// Errors: the engine is unreachable or answers with an error other than 404.
pub async fn read_images(
    engine: &crate::engine::Engine,
    rows: &[ServiceRow],
) -> Result<Vec<crate::engine::images::LocalImage>, crate::engine::EngineError> {
    let wanted: BTreeSet<String> = rows
        .iter()
        .filter(|r| !r.image_name.is_empty())
        .map(|r| store_reference(&r.image_name, &r.digest))
        .collect();
    if wanted.is_empty() {
        return Ok(vec![]);
    }
    if wanted.len() > INSPECT_LIMIT || engine.endpoint.host.starts_with("ssh://") {
        return engine.list_images().await;
    }
    let found =
        futures_util::future::join_all(wanted.iter().map(|r| engine.inspect_image(r))).await;
    let mut images = vec![];
    for image in found {
        images.extend(image?);
    }
    Ok(images)
}

/// Fills the SOURCE of each row from the engine's image store ([`read_images`]): the
/// image is found by `repository@digest` in `RepoDigests` when the spec is pinned,
/// else by `name:tag` in `RepoTags` ([`store_reference`]). The record is built by the
/// same code as `provenance` ([`crate::provenance::source_column`]).
pub fn fill_sources(
    rows: &mut [ServiceRow],
    images: &[crate::engine::images::LocalImage],
    full: bool,
) {
    use crate::provenance::{record::Record, source_column};
    // Many services share an image: each image reference is looked up once.
    let mut memo: HashMap<(String, String), String> = HashMap::new();
    for row in rows.iter_mut() {
        let key = (row.image_name.clone(), row.digest.clone());
        if let Some(source) = memo.get(&key) {
            row.source = source.clone();
            continue;
        }
        let want = store_reference(&row.image_name, &row.digest);
        let found = if row.digest.is_empty() {
            images.iter().find(|i| i.repo_tags.contains(&want))
        } else {
            images
                .iter()
                .find(|i| i.repo_digests.iter().any(|d| familiar(d) == want))
        };
        if let Some(img) = found {
            let labels = img
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), crate::edge::redact::redact_label(k, v)))
                .collect();
            row.source = source_column(&Record::from_labels(&labels), full);
        } else if !row.image_name.is_empty() {
            row.source = NOT_IN_STORE.into();
        }
        memo.insert(key, row.source.clone());
    }
}

/// Fills the SOURCE of rows whose pinned image is not in the engine's store from the
/// registry cache that `provenance` keeps (content-addressed, so a digest's config
/// never changes). No network request is made: images never read by `provenance`
/// keep `?`. `platform` is the `(os, arch)` of the swarm's nodes.
pub async fn fill_sources_from_cache(
    rows: &mut [ServiceRow],
    platform: Option<(String, String)>,
    full: bool,
) {
    use crate::provenance::{record::Record, source_column, strip_tag};
    use crate::registry::{Client, ClientOptions, Platform, Reference};
    if !rows
        .iter()
        .any(|r| r.source == NOT_IN_STORE && !r.digest.is_empty())
    {
        return;
    }
    let Ok(client) = Client::new(ClientOptions {
        offline: true,
        ..Default::default()
    }) else {
        return;
    };
    let platform = platform
        .map(|(os, arch)| Platform::from_node(&os, &arch))
        .unwrap_or_else(|| Platform::new("linux", "amd64", None));
    // Services often share an image: each pinned image is looked up once (the cache
    // is content-addressed, so the answer cannot change within one read).
    let mut memo: HashMap<(String, String), String> = HashMap::new();
    for row in rows
        .iter_mut()
        .filter(|r| r.source == NOT_IN_STORE && !r.digest.is_empty())
    {
        let key = (row.image_name.clone(), row.digest.clone());
        if let Some(source) = memo.get(&key) {
            row.source = source.clone();
            continue;
        }
        let reference =
            format!("{}@{}", strip_tag(&row.image_name), row.digest).parse::<Reference>();
        if let Ok(reference) = reference
            && let Ok(img) = client.image(&reference, &platform).await
        {
            let labels = img
                .config
                .pointer("/config/Labels")
                .and_then(|l| l.as_object())
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| {
                            Some((k.clone(), crate::edge::redact::redact_label(k, v.as_str()?)))
                        })
                        .collect()
                })
                .unwrap_or_default();
            row.source = source_column(&Record::from_labels(&labels), full);
        }
        memo.insert(key, row.source.clone());
    }
}

/// Runs `docker microscale status`: reads a snapshot, selects and prints the rows;
/// with `--watch`, again at each interval ([`crate::cmd::status::live`]).
///
/// Exit 1 when a named service does not exist (the others are still printed).
pub async fn run(
    engine: &crate::engine::Engine,
    args: &crate::cli::StatusArgs,
) -> Result<crate::edge::exit::Exit, crate::edge::exit::Failure> {
    use crate::edge::exit::{Exit, Failure, print_stdout_async};
    use crate::render::Format;

    // Every flag is checked before the engine is asked anything.
    let format = Format::parse(args.format.as_deref(), crate::render::fields::STATUS)
        .map_err(Failure::Usage)?;
    let (filters, modes) = parse_filters(&args.filter).map_err(Failure::Usage)?;
    let interval = crate::cmd::status::live::parse_interval(args).map_err(Failure::Usage)?;
    if let Some(interval) = interval {
        return crate::cmd::status::live::run(engine, args, &format, &filters, &modes, interval)
            .await;
    }
    let read = read_rows(engine, args, &filters, &modes, args.metrics == Some(true)).await?;
    let text = rows_text(&read.rows, args, &format)?;
    // When every name was unknown, print only the errors (as `docker service ps` does).
    let code = if read.rows.is_empty() && !read.missing.is_empty() {
        Exit::Ok
    } else {
        print_stdout_async(text).await?
    };
    let result = if read.missing.is_empty() {
        Ok(code)
    } else {
        for m in &read.missing {
            crate::edge::exit::say(m);
        }
        Ok(Exit::Error)
    };
    // The process exits next: freeing thousands of specs and rows one by one would
    // only delay it.
    std::mem::forget(read);
    result
}

/// What one read of the swarm gives `status`.
pub struct Read {
    /// The rows, sorted by name, with SOURCE, METRIC and DESIRED filled.
    pub rows: Vec<ServiceRow>,
    /// One line per named service that does not exist (or is ambiguous).
    pub missing: Vec<String>,
    /// The snapshot the rows were built from, kept with them so that the caller
    /// decides when it is freed (`status` exits without freeing it).
    #[allow(dead_code)]
    pub snapshot: Snapshot,
}

/// Reads the swarm once for `status`: the snapshot and the agent's fight records
/// (concurrently, except over ssh), the rows for the selected services, SOURCE from
/// the image store ([`read_images`], once the rows name their images) or the
/// provenance cache, and METRIC/DESIRED from the plan; the rules' metrics are read
/// when `metrics` is set (at most [`STATUS_METRIC_TIMEOUT`] per source, from the
/// swarm's services, loopback and the hosts `--metric-allow` adds).
///
/// Errors: the engine cannot be read ([`crate::edge::exit::Failure::Error`]), or a bad
/// `--metric-allow` (usage).
pub async fn read_rows(
    engine: &crate::engine::Engine,
    args: &crate::cli::StatusArgs,
    filters: &Filters,
    modes: &[Mode],
    metrics: bool,
) -> Result<Read, crate::edge::exit::Failure> {
    use crate::edge::exit::Failure;
    // The `run` agent's fight records are read beside the snapshot (one more call; no
    // records: none). They are read even when no service has rule labels: an agent
    // with a rules file (`run --rules`) manages services without any.
    let over_ssh = engine.endpoint.host.starts_with("ssh://");
    let (snap, fights) = if over_ssh {
        // One ssh login at a time.
        let snap = engine.snapshot(filters).await;
        match snap {
            Ok(s) => (Ok(s), crate::store::fights::read(engine).await),
            Err(e) => (Err(e), Ok(Default::default())),
        }
    } else {
        tokio::join!(engine.snapshot(filters), crate::store::fights::read(engine))
    };
    let mut snap = snap.map_err(|e| Failure::Error(e.to_string()))?;
    let filtered = !args.filter.is_empty();
    snap.services
        .retain(|s| modes.is_empty() || modes.contains(&Mode::of(s)));
    let (kept, missing) =
        select_services(std::mem::take(&mut snap.services), &args.services, filtered);
    snap.services = kept;
    let no_trunc = args.no_trunc == Some(true);
    let mut rows = build_rows(&snap, no_trunc);
    fill_fights(&mut rows, &fights.unwrap_or_default());
    // SOURCE: the images of the rows shown, once their names are known.
    let images = read_images(engine, &rows)
        .await
        .map_err(|e| Failure::Error(e.to_string()))?;
    fill_sources(&mut rows, &images, no_trunc);
    let platform = snap.nodes.iter().find_map(|n| {
        let p = n.description.as_ref()?.platform.as_ref()?;
        Some((p.os.clone()?, p.architecture.clone()?))
    });
    fill_sources_from_cache(&mut rows, platform, no_trunc).await;
    // Metrics only on request: a status must not wait on metric sources.
    let values = if metrics {
        let names = snap
            .services
            .iter()
            .filter_map(|s| s.spec.as_ref()?.name.clone())
            .collect();
        let allow = args.access.allow(names).map_err(Failure::Usage)?;
        Some(
            crate::plan::read_metrics(
                engine,
                &snap,
                &snap.services,
                None,
                &allow,
                STATUS_METRIC_TIMEOUT,
                &crate::plan::EngineVia::Stored {
                    config: crate::store::stats::config_name(crate::store::lease::DEFAULT_NAME),
                },
            )
            .await,
        )
    } else {
        None
    };
    fill_plan(&mut rows, &snap, values.as_ref());
    Ok(Read {
        rows,
        missing,
        snapshot: snap,
    })
}

/// The text `status` prints for `rows`: IDs with `-q`, else the table, JSON lines or
/// the template's rows.
///
/// Errors: a template that fails on a row (usage).
pub fn rows_text(
    rows: &[ServiceRow],
    args: &crate::cli::StatusArgs,
    format: &crate::render::Format,
) -> Result<String, crate::edge::exit::Failure> {
    if args.quiet == Some(true) {
        return Ok(rows.iter().map(|r| format!("{}\n", r.id)).collect());
    }
    let no_trunc = args.no_trunc == Some(true);
    format.render(rows, |rows| status_table(rows, no_trunc))
}

/// Widest RULE shown before it is cut (unless `--no-trunc`).
const RULE_WIDTH: usize = 48;
/// Width at which SOURCE is cut without `--no-trunc`.
const SOURCE_WIDTH: usize = 48;

/// A SOURCE (`host/path@revision`) cut to `max` columns in its path, so that the
/// revision, the part that tells builds apart, stays whole (a long path once showed
/// as `github.com/docker-microscale/docker-microscale@…`). A revision longer than
/// half of `max` is cut as the rest is.
fn ellipsize_source(s: &str, max: usize) -> String {
    use unicode_width::UnicodeWidthStr;
    match s.rsplit_once('@') {
        Some((path, rev)) if s.width() > max && rev.width() < max / 2 => {
            format!("{}@{rev}", ellipsize(path, max - rev.width() - 1))
        }
        _ => ellipsize(s, max),
    }
}

/// The `status` table's header: its columns, in order.
pub const STATUS_HEADER: [&str; 10] = [
    "NAME", "MODE", "REPLICAS", "IMAGE", "UPDATE", "SOURCE", "RULE", "METRIC", "DESIRED", "NODES",
];

/// The `status` table: NAME MODE REPLICAS IMAGE UPDATE SOURCE RULE METRIC DESIRED NODES,
/// then, when a metric could not be read ([`ServiceRow::metric_error`]), a blank line
/// and one numbered note per distinct reason, which METRIC refers to: `- (1)` in the
/// table, `(1) metric unreadable: …` under it (shown whole, made printable).
pub fn status_table(rows: &[ServiceRow], no_trunc: bool) -> String {
    let mut out = docker_table(&STATUS_HEADER, status_cells(rows, no_trunc));
    let notes = metric_notes(rows);
    if !notes.is_empty() {
        out.push('\n');
        for (i, note) in notes.iter().enumerate() {
            out.push_str(&format!(
                "({}) {}\n",
                i + 1,
                crate::edge::text::printable(note)
            ));
        }
    }
    out
}

/// The cells of the `status` table, one line of [`STATUS_HEADER`]'s columns per row,
/// as the data has them (not yet made [`printable`]): IMAGE with a 12-digit digest,
/// RULE and SOURCE cut (unless `no_trunc`), `-` for what is missing.
pub fn status_cells(rows: &[ServiceRow], no_trunc: bool) -> Vec<Vec<String>> {
    let notes = metric_notes(rows);
    let note_of = |r: &ServiceRow| {
        r.metric_error
            .as_ref()
            .and_then(|e| notes.iter().position(|n| n == e))
            .map(|i| i + 1)
    };
    rows.iter()
        .map(|r| {
            let image = if r.digest.is_empty() {
                r.image_name.clone()
            } else if no_trunc {
                format!("{}@{}", r.image_name, r.digest)
            } else {
                let short: String = r
                    .digest
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect();
                format!("{}@sha256:{short}", r.image_name)
            };
            let rule = if no_trunc {
                r.rule.clone()
            } else {
                ellipsize(&r.rule, RULE_WIDTH)
            };
            let source = match (r.source.is_empty(), no_trunc) {
                (true, _) => "-".to_string(),
                (false, true) => r.source.clone(),
                (false, false) => ellipsize_source(&r.source, SOURCE_WIDTH),
            };
            // Stale tasks on down nodes are named in REPLICAS (`ServiceRow::replicas`).
            let nodes = r.nodes.to_string();
            vec![
                r.name.clone(),
                r.mode.as_str().to_string(),
                r.replicas.clone(),
                image,
                match (&r.fight, r.update.is_empty()) {
                    (None, _) => r.update.clone(),
                    (Some(f), true) => fight_text(f.resets),
                    (Some(f), false) => format!("{}, {}", r.update, fight_text(f.resets)),
                },
                source,
                rule,
                {
                    let metric = r.metric.clone().unwrap_or_else(|| "-".into());
                    match note_of(r) {
                        Some(n) => format!("{metric} ({n})"),
                        None => metric,
                    }
                },
                r.rule_desired
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".into()),
                nodes,
            ]
        })
        .collect()
}

/// The distinct reasons why metrics could not be read, in the order of `rows`: the
/// notes under the `status` table (services sharing a source share a note).
pub fn metric_notes(rows: &[ServiceRow]) -> Vec<String> {
    let mut notes: Vec<String> = vec![];
    for e in rows.iter().filter_map(|r| r.metric_error.as_ref()) {
        if !notes.contains(e) {
            notes.push(e.clone());
        }
    }
    notes
}

/// The UPDATE text of a fight the `run` agent recorded: `fight (1 reset)`,
/// `fight (3 resets)`.
pub fn fight_text(resets: u64) -> String {
    format!(
        "fight ({resets} reset{})",
        if resets == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_source_keeps_its_revision() {
        let s = "github.com/docker-microscale/docker-microscale@4d35d28";
        let cut = ellipsize_source(s, 48);
        assert_eq!(cut, "github.com/docker-microscale/docker-mic…@4d35d28");
        assert_eq!(unicode_width::UnicodeWidthStr::width(cut.as_str()), 48);
        // Short enough: untouched; no revision: cut at the end.
        assert_eq!(
            ellipsize_source("gitlab.com/a/b@89abcde", 48),
            "gitlab.com/a/b@89abcde"
        );
        assert_eq!(
            ellipsize_source(&"x".repeat(50), 48).chars().last(),
            Some('…')
        );
    }

    #[test]
    fn image_split_and_familiar_names() {
        assert_eq!(
            split_image("docker.io/library/nginx:1.25@sha256:abc"),
            ("nginx:1.25".into(), "sha256:abc".into())
        );
        assert_eq!(
            split_image("localhost:5000/app:1"),
            ("localhost:5000/app:1".into(), String::new())
        );
        assert_eq!(
            split_image("docker.io/me/app@sha256:ff"),
            ("me/app".into(), "sha256:ff".into())
        );
    }

    /// The reference SOURCE inspects is the one it then finds in `RepoTags` or
    /// `RepoDigests`: familiar, `:latest` when untagged, the tag dropped when pinned.
    #[test]
    fn store_references_are_familiar_and_complete() {
        let r = |spec: &str| {
            let (name, digest) = split_image(spec);
            store_reference(&name, &digest)
        };
        assert_eq!(r("nginx"), "nginx:latest");
        assert_eq!(r("docker.io/library/nginx:1.25"), "nginx:1.25");
        assert_eq!(r("docker.io/me/app:2@sha256:ab"), "me/app@sha256:ab");
        assert_eq!(r("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(
            r("localhost:5000/app:3@sha256:cd"),
            "localhost:5000/app@sha256:cd"
        );
    }

    /// METRIC and DESIRED land on the row of their service, by whole or short ID.
    #[test]
    fn plan_rows_find_their_service_rows_by_id() {
        let row = |id: &str, name: &str| ServiceRow {
            id: id.into(),
            name: name.into(),
            mode: Mode::Replicated,
            metric_error: None,
            replicas: String::new(),
            running: 0,
            desired: 0,
            completed: None,
            max_per_node: None,
            image: String::new(),
            image_name: String::new(),
            digest: String::new(),
            update: String::new(),
            source: String::new(),
            rule: String::new(),
            rule_labels: BTreeMap::new(),
            metric: None,
            rule_desired: None,
            nodes: 0,
            tasks_on_down_nodes: 0,
            down_nodes: vec![],
            ports: String::new(),
            fight: None,
        };
        let service = |id: &str, name: &str, replicas: i64| {
            serde_json::from_value::<Service>(serde_json::json!({
                "ID": id,
                "Spec": {
                    "Name": name,
                    "Labels": {"microscale.min": replicas.to_string(), "microscale.max": "9"},
                    "Mode": {"Replicated": {"Replicas": replicas}}
                },
                "ServiceStatus": {"RunningTasks": 0, "DesiredTasks": replicas}
            }))
            .unwrap()
        };
        let snap = Snapshot {
            services: vec![
                service("aaaaaaaaaaaaaaaaaaaa", "a", 2),
                service("bbbbbbbbbbbbbbbbbbbb", "b", 3),
            ],
            ..Default::default()
        };
        for (ida, idb) in [
            ("aaaaaaaaaaaa", "bbbbbbbbbbbb"),
            ("aaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbb"),
        ] {
            let mut rows = vec![row(idb, "b"), row(ida, "a"), row("cccccccccccc", "c")];
            fill_plan(&mut rows, &snap, None);
            assert_eq!(rows[0].rule_desired, Some(3), "{idb}");
            assert_eq!(rows[1].rule_desired, Some(2), "{ida}");
            assert_eq!(rows[2].rule_desired, None);
            assert!(rows[0].metric.is_some() && rows[2].metric.is_none());
        }
    }

    #[test]
    fn image_shown_like_docker_service_ls() {
        let show = |spec: &str| docker_image_display(spec, &split_image(spec).0);
        assert_eq!(show("docker.io/library/nginx:1.25@sha256:ab"), "nginx:1.25");
        assert_eq!(show("busybox@sha256:ab"), "busybox@sha256:ab");
        assert_eq!(show("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(
            show("localhost:5000/app:2@sha256:cd"),
            "localhost:5000/app:2"
        );
    }

    #[test]
    fn replicas_like_docker_service_ls() {
        assert_eq!(replicas_text(Mode::Replicated, 2, 3, 0, None, None), "2/3");
        assert_eq!(
            replicas_text(Mode::Replicated, 2, 3, 0, None, Some(2)),
            "2/3 (max 2 per node)"
        );
        assert_eq!(
            replicas_text(Mode::ReplicatedJob, 1, 1, 4, Some(5), None),
            "1/1 (4/5 completed)"
        );
        assert_eq!(
            replicas_text(Mode::GlobalJob, 0, 1, 2, None, None),
            "0/1 (2/3 completed)"
        );
    }

    #[test]
    fn filters_parse_and_reject() {
        let (f, m) = parse_filters(&[
            "name=web".into(),
            "label=a=b".into(),
            "mode=replicated-job".into(),
        ])
        .unwrap();
        assert_eq!(f["name"], ["web"]);
        assert_eq!(f["label"], ["a=b"]);
        assert_eq!(m, [Mode::ReplicatedJob]);
        assert!(
            parse_filters(&["name".into()])
                .unwrap_err()
                .contains("expected name=value")
        );
        assert!(
            parse_filters(&["colour=red".into()])
                .unwrap_err()
                .contains("'colour'")
        );
        assert!(
            parse_filters(&["mode=daemon".into()])
                .unwrap_err()
                .contains("mode=daemon")
        );
    }

    fn svc(id: &str, name: &str) -> Service {
        Service {
            id: Some(id.into()),
            spec: Some(bollard::models::ServiceSpec {
                name: Some(name.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(id: &str, host: &str, state: &str) -> bollard::models::Node {
        serde_json::from_value(serde_json::json!({
            "ID": id, "Description": {"Hostname": host}, "Status": {"State": state}
        }))
        .unwrap()
    }

    fn task(service: &str, node: &str, state: &str, desired: &str) -> bollard::models::Task {
        serde_json::from_value(serde_json::json!({
            "ServiceID": service, "NodeID": node, "DesiredState": desired,
            "Status": {"State": state}
        }))
        .unwrap()
    }

    fn with_status(mut s: Service, running: u64, desired: u64) -> Service {
        s.service_status = Some(bollard::models::ServiceServiceStatus {
            running_tasks: Some(running),
            desired_tasks: Some(desired),
            completed_tasks: None,
        });
        s
    }

    #[test]
    fn stale_tasks_on_down_nodes_are_not_running_and_are_named() {
        // A worker died: Swarm replaced its task on a live node, and the engine still
        // counts the dead one in RunningTasks (4 for 3 replicas).
        let snap = Snapshot {
            services: vec![with_status(svc("s1", "web"), 4, 3)],
            tasks: vec![
                task("s1", "n1", "running", "running"),
                task("s1", "n1", "running", "running"),
                task("s1", "n2", "running", "running"),
                // On the down node: the stale record (desired shutdown, last seen
                // running) is named; a task that never ran there is not; history is not.
                task("s1", "n3", "running", "shutdown"),
                task("s1", "n3", "pending", "shutdown"),
                task("s1", "n3", "shutdown", "shutdown"),
            ],
            nodes: vec![
                node("n1", "a", "ready"),
                node("n2", "b", "ready"),
                node("n3", "c", "down"),
            ],
        };
        let rows = build_rows(&snap, false);
        assert_eq!(rows[0].running, 3);
        assert_eq!(rows[0].nodes, 2, "the down node runs nothing");
        assert_eq!(rows[0].tasks_on_down_nodes, 1);
        assert_eq!(rows[0].down_nodes, ["c"]);
        assert_eq!(rows[0].replicas, "3/3 (1 stale task on down node c)");
        let table = status_table(&rows, false);
        assert!(
            table.contains("3/3 (1 stale task on down node c)"),
            "{table}"
        );
        let json = crate::render::json_lines(&rows);
        assert!(
            json.contains(r#""Running":3,"#)
                && json.contains(r#""TasksOnDownNodes":1,"DownNodes":["c"]"#),
            "{json}"
        );
    }

    #[test]
    fn a_down_node_hostname_never_reaches_the_terminal_raw() {
        // Whoever runs a node sets its hostname (the engine's `hostname`), and it
        // may hold escape sequences (ESC, BEL, CSI as U+009B), a bidirectional
        // override or a newline. It is shown escaped in REPLICAS, in JSON, in a
        // template, in plan's reason and in scale's "ignoring" line.
        let evil = "w1\u{1b}]0;pwned\u{7}\u{9b}2J\u{202e}x\ny";
        let snap = Snapshot {
            services: vec![with_status(svc("s1", "web"), 2, 1)],
            tasks: vec![
                task("s1", "n1", "running", "running"),
                task("s1", "n2", "running", "shutdown"),
            ],
            nodes: vec![node("n1", "a", "ready"), node("n2", evil, "down")],
        };
        let rows = build_rows(&snap, false);
        assert_eq!(
            rows[0].down_nodes,
            [evil],
            "the data keeps the name as it is"
        );
        let raw = |text: &str| {
            text.chars()
                .any(|c| matches!(c, '\u{1b}' | '\u{7}' | '\u{9b}' | '\u{202e}'))
        };
        let table = status_table(&rows, false);
        assert!(!raw(&table), "{table:?}");
        assert!(
            table.contains(r"w1\u{1b}]0;pwned\u{7}\u{9b}2J\u{202e}x\ny"),
            "{table}"
        );
        assert_eq!(table.lines().count(), 2, "one line per service: {table}");
        let json = crate::render::json_lines(&rows);
        assert!(!raw(&json) && json.lines().count() == 1, "{json:?}");
        let back: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(
            back["DownNodes"][0], evil,
            "JSON escapes decode to the name"
        );
        for template in [
            "{{.Replicas}}",
            "{{.DownNodes}}",
            "{{range .DownNodes}}{{.}}{{end}}",
        ] {
            let f = crate::render::Format::parse(Some(template), crate::render::fields::STATUS)
                .unwrap();
            let out = f.render(&rows, |r| status_table(r, false)).unwrap();
            assert!(
                !raw(&out) && out.lines().count() == 1,
                "{template}: {out:?}"
            );
        }
        let counted = snap.running_tasks(&snap.services[0]);
        let reason = crate::plan::stale_reason(&counted).unwrap();
        let plan = crate::cmd::plan::table(
            &[crate::plan::PlanRow {
                id: "s1".into(),
                service: "web".into(),
                current: 1,
                running: counted.running,
                metric: None,
                desired: 1,
                action: "none".into(),
                reasons: vec![reason],
                source: "labels".into(),
            }],
            true,
        );
        assert!(!raw(&plan) && plan.lines().count() == 2, "{plan:?}");
        let c = crate::execute::watch::Count {
            desired: 1,
            done: counted.running,
            stopping: 0,
            stale: counted.stale,
            stale_nodes: counted.stale_nodes.clone(),
            job: false,
        };
        let line = crate::execute::watch::stale_line("web", &c).unwrap();
        // The wait prints it with `say` or the progress bars' println, both through
        // `printable`.
        assert!(!raw(&crate::edge::text::printable(&line)));
    }

    #[test]
    fn unknown_and_disconnected_nodes_keep_their_tasks() {
        // After a leader election every node is `unknown` until it reports in; a node
        // looking for a new manager is `disconnected`. Swarm replaces neither's tasks.
        let snap = Snapshot {
            services: vec![with_status(svc("s1", "web"), 3, 3)],
            tasks: vec![
                task("s1", "n1", "running", "running"),
                task("s1", "n2", "running", "running"),
                task("s1", "n3", "running", "running"),
            ],
            nodes: vec![
                node("n1", "a", "ready"),
                node("n2", "b", "unknown"),
                node("n3", "c", "disconnected"),
            ],
        };
        let rows = build_rows(&snap, false);
        assert_eq!((rows[0].running, rows[0].nodes), (3, 3));
        assert_eq!(rows[0].tasks_on_down_nodes, 0);
        assert_eq!(rows[0].replicas, "3/3");
    }

    #[test]
    fn many_down_nodes_make_one_short_note() {
        let mut tasks = vec![task("s1", "n0", "running", "running")];
        let mut nodes = vec![node("n0", "m", "ready")];
        for i in 1..=5 {
            tasks.push(task("s1", &format!("n{i}"), "running", "shutdown"));
            tasks.push(task("s1", &format!("n{i}"), "running", "shutdown"));
            nodes.push(node(&format!("n{i}"), &format!("w{i}"), "down"));
        }
        let mut s = with_status(svc("s1", "web"), 11, 1);
        s.spec.as_mut().unwrap().task_template = Some(bollard::models::TaskSpec {
            placement: Some(bollard::models::TaskSpecPlacement {
                max_replicas: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        });
        let snap = Snapshot {
            services: vec![s],
            tasks,
            nodes,
        };
        let rows = build_rows(&snap, false);
        assert_eq!(
            rows[0].replicas,
            "1/1 (max 2 per node) (10 stale tasks on down nodes w1, w2, w3 and 2 more)"
        );
        assert_eq!(rows[0].down_nodes.len(), 5);
        assert_eq!(stale_note(0, &[]), "");
    }

    #[test]
    fn select_by_name_id_and_prefix() {
        let all = vec![svc("abc123", "web"), svc("abd456", "db"), svc("xyz", "abc")];
        let (kept, errs) = select_services(all.clone(), &["web".into(), "abd".into()], false);
        assert_eq!(kept.len(), 2);
        assert!(errs.is_empty());
        // An exact name wins over an ID prefix.
        let (kept, _) = select_services(all.clone(), &["abc".into()], false);
        assert_eq!(kept[0].id.as_deref(), Some("xyz"));
        let (_, errs) =
            select_services(all.clone(), &["ab".into(), "nope".into(), "".into()], true);
        assert_eq!(errs.len(), 3);
        assert!(errs[0].contains("ambiguous"));
        assert!(errs[1].starts_with("no such service: nope (among"));
        assert!(errs[2].starts_with("no such service: \"\""));
        // A full ID wins over a service whose name is that ID.
        let all = vec![svc("abc123", "web"), svc("zzz", "abc123")];
        let (kept, errs) = select_services(all, &["abc123".into()], false);
        assert!(errs.is_empty());
        assert_eq!(kept[0].id.as_deref(), Some("abc123"));
    }

    fn ruled(id: &str, name: &str, labels: serde_json::Value, replicas: u64) -> Service {
        serde_json::from_value(serde_json::json!({
            "ID": id,
            "UpdatedAt": "2020-01-01T00:00:00Z",
            "Spec": {"Name": name, "Labels": labels,
                     "Mode": {"Replicated": {"Replicas": replicas}},
                     "TaskTemplate": {"ContainerSpec": {"Image": "x"}}},
            "ServiceStatus": {"RunningTasks": replicas, "DesiredTasks": replicas}
        }))
        .unwrap()
    }

    fn running_tasks(id: &str, n: u64) -> Vec<bollard::models::Task> {
        (0..n)
            .map(|_| task(id, "n1", "running", "running"))
            .collect()
    }

    #[test]
    fn desired_is_not_computed_without_the_metrics_it_needs() {
        let redis = "redis://127.0.0.1:6399/0?list=jobs";
        let snap = Snapshot {
            services: vec![
                ruled(
                    "s1",
                    "web",
                    serde_json::json!({"microscale.max": "5", "microscale.metric": redis, "microscale.target": "10"}),
                    1,
                ),
                // A rule without a metric: only its bounds, which need no reading.
                ruled(
                    "s2",
                    "legacy",
                    serde_json::json!({"com.microscaling.is-scalable": "true", "com.microscaling.min-containers": "2", "com.microscaling.max-containers": "4"}),
                    1,
                ),
                ruled("s3", "plain", serde_json::json!({}), 1),
            ],
            tasks: [
                running_tasks("s1", 1),
                running_tasks("s2", 1),
                running_tasks("s3", 1),
            ]
            .concat(),
            nodes: vec![node("n1", "a", "ready")],
        };
        let mut rows = build_rows(&snap, false);
        fill_plan(&mut rows, &snap, None);
        let by = |rows: &[ServiceRow], n: &str| rows.iter().find(|r| r.name == n).unwrap().clone();
        let web = by(&rows, "web");
        assert_eq!((web.metric.as_deref(), web.rule_desired), (Some("-"), None));
        assert_eq!(web.metric_error, None, "not read is not an error");
        assert_eq!(by(&rows, "legacy").rule_desired, Some(2));
        assert_eq!(by(&rows, "plain").rule_desired, None);
        let table = status_table(&rows, false);
        let header = table.lines().next().unwrap();
        let line = table.lines().find(|l| l.starts_with("web")).unwrap();
        let at = |col: &str| {
            line.chars()
                .skip(header.find(col).unwrap())
                .collect::<String>()
        };
        assert!(at("METRIC").starts_with("- "), "{table}");
        assert!(at("DESIRED").starts_with("- "), "{table}");
        assert!(!table.contains("(1)"), "{table}");

        // With --metrics: read, the value or why not.
        let mut readings = crate::plan::Readings::default();
        readings.values.insert(
            redis.into(),
            Err(format!("cannot connect to redis at 127.0.0.1:6399: connection refused\u{1b}[2J\nhint (reading {redis})")),
        );
        let mut rows = build_rows(&snap, false);
        fill_plan(&mut rows, &snap, Some(&readings));
        let web = by(&rows, "web");
        assert_eq!(
            web.rule_desired,
            Some(1),
            "held at its count, as plan holds"
        );
        let why = web.metric_error.clone().unwrap();
        assert!(
            why.starts_with(
                "metric unreadable: cannot connect to redis at 127.0.0.1:6399: connection refused"
            ),
            "{why}"
        );
        assert_eq!(by(&rows, "legacy").metric_error, None);
        let table = status_table(&rows, false);
        let lines: Vec<&str> = table.lines().collect();
        let line = lines.iter().find(|l| l.starts_with("web")).unwrap();
        let at = |col: &str| {
            line.chars()
                .skip(lines[0].find(col).unwrap())
                .collect::<String>()
        };
        assert!(at("METRIC").starts_with("- (1) "), "{table}");
        assert!(at("DESIRED").starts_with("1 "), "{table}");
        // The note under the table, after a blank line, escaped.
        assert_eq!(lines[lines.len() - 2], "", "{table}");
        let note = lines[lines.len() - 1];
        assert!(
            note.starts_with("(1) metric unreadable: cannot connect to redis at 127.0.0.1:6399: connection refused")
                && note.ends_with(&format!("(reading {redis}): holding 1")),
            "{note}"
        );
        assert!(!table.contains('\u{1b}'), "{table:?}");
        let json = crate::render::json_lines(&rows);
        assert!(
            json.contains(r#""MetricError":"metric unreadable: cannot connect"#),
            "{json}"
        );
        assert!(json.contains(r#""MetricError":null"#), "{json}");
    }

    #[test]
    fn services_with_the_same_unreadable_source_share_a_note() {
        let mut rows = build_rows(
            &Snapshot {
                services: vec![svc("a", "one"), svc("b", "two"), svc("c", "three")],
                tasks: vec![],
                nodes: vec![],
            },
            false,
        );
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["one", "three", "two"]);
        for (row, why) in rows.iter_mut().zip([
            "metric unreadable: timeout",
            "metric unreadable: refused\u{1b}]0;x\u{7}\nby peer",
            "metric unreadable: timeout",
        ]) {
            row.metric = Some("-".into());
            row.metric_error = Some(why.into());
        }
        let table = status_table(&rows, false);
        // One note per reason, in the order of the rows, made printable.
        assert!(
            table.ends_with("\n\n(1) metric unreadable: timeout\n(2) metric unreadable: refused\\u{1b}]0;x\\u{7}\\nby peer\n"),
            "{table}"
        );
        let marks: Vec<&str> = table
            .lines()
            .skip(1)
            .take(3)
            .map(|l| {
                if l.contains("- (1)") {
                    "1"
                } else if l.contains("- (2)") {
                    "2"
                } else {
                    "?"
                }
            })
            .collect();
        assert_eq!(marks, ["1", "2", "1"], "{table}");
    }

    #[test]
    fn a_fight_counts_its_resets_in_words() {
        assert_eq!(fight_text(1), "fight (1 reset)");
        assert_eq!(fight_text(3), "fight (3 resets)");
        let mut rows = build_rows(
            &Snapshot {
                services: vec![svc("a", "web")],
                tasks: vec![],
                nodes: vec![],
            },
            false,
        );
        rows[0].fight = Some(FightRow {
            resets: 1,
            last: "2026-01-01T00:00:00Z".into(),
            their_replicas: 1,
        });
        rows[0].update = "updating".into();
        let table = status_table(&rows, false);
        assert!(table.contains("updating, fight (1 reset) "), "{table}");
    }
}
