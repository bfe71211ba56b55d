//! `docker microscale run`: the autoscaling agent. The same rules as `plan` and
//! `apply`, applied continuously.
//!
//! Each pass reads the swarm (one [`crate::engine::Engine::snapshot`]), reads the
//! rules' metrics concurrently (bounded), decides with a per-service history (so
//! stabilisation windows, step limits and fallbacks work), and, while this agent
//! holds the lease ([`lease`]), scales the services whose desired count differs, each
//! from its raw spec ([`crate::execute::update`]). A pass runs every `--interval`, and
//! at once when the events stream (`type=service`, `type=node`) reports a change.
//!
//! Faults: a pass that cannot read the swarm acts on nothing (no stale data) and is
//! retried with backoff; a metric source that is down makes the rule hold or use its
//! fallback; an agent whose node is no longer a manager stops (exit 0: a worker can
//! neither read the swarm nor keep the managers' secrets); a service removed or
//! relabelled mid-pass is dropped from the next.
//!
//! `--collector` (the workers' service of deploy/stack.yml) runs none of this: it
//! only serves its node's task stats ([`stats::serve`]) until stopped, never takes
//! the lease and reads no metric, whatever its node's role ([`check_collector`]).
//!
//! SIGTERM and SIGINT abandon the pass in flight (and a lease renewal in flight),
//! scale nothing on the way out, release the lease (within [`lease::RELEASE_TIMEOUT`]: an
//! engine that does not answer is not waited for) and exit 0.
//!
//! Logging never stops the agent: a log line that cannot be written (stderr closed
//! or broken) is dropped ([`LossyStderr`]).

pub mod logfmt;
pub mod serve;
pub mod stats;
pub mod telemetry;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::Service;
use clap::Args;
use futures_util::StreamExt;
use tracing::{debug, error, info, warn};

use crate::decide::History;
use crate::edge::argv::{any_path, go_bool};
use crate::edge::exit::{Exit, Failure};
use crate::engine::Engine;
use crate::engine::service::RawService;
use crate::execute::update::{Convergence, Verdict};
use crate::plan::DecideOptions;
use crate::plan::PlanRow;
use crate::rules::check::{RulesFile, service_name};
use crate::store::{fights, history, lease};
use std::path::PathBuf;
use telemetry::{ActionLabel, KindLabel, MetricLabel, ServiceLabel, Telemetry};

/// Default time between passes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Shortest `--interval` (the Microscaling agent's loop).
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);
/// Shortest gap between two passes triggered by events.
const EVENT_DEBOUNCE: Duration = Duration::from_secs(1);

/// The settings of one agent, from the flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Time between passes.
    pub interval: Duration,
    /// `--capacity`.
    pub capacity: Option<u64>,
    /// `--metric-allow`, `--metric-secret` and the `--metric-tls*` files.
    pub access: crate::metrics::access::MetricAccess,
    /// `--rules`.
    pub file: Option<(std::path::PathBuf, RulesFile)>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--once`.
    pub once: bool,
    /// The services named on the command line (all when empty).
    pub services: Vec<String>,
}

fn parse_duration_flag(
    flag: &str,
    value: Option<&str>,
    default: Duration,
    min: Duration,
) -> Result<Duration, String> {
    let Some(v) = value else { return Ok(default) };
    let t = v.trim();
    let parsed = t
        .parse::<u64>()
        .map(Duration::from_secs)
        .ok()
        .or_else(|| humantime::parse_duration(t).ok());
    match parsed {
        Some(d) if d >= min && d <= Duration::from_secs(86_400) => Ok(d),
        _ => Err(format!(
            "invalid argument \"{v}\" for \"--{flag}\" flag: a duration from {} to 24h, such as 15s or 2m",
            humantime::format_duration(min)
        )),
    }
}

/// What the agent remembers of one service between passes (by service ID).
#[derive(Debug, Default)]
struct Memory {
    /// The count the agents of this lease set last, while nobody else changed it:
    /// this agent's own updates during its tenure, from the shared history when it
    /// takes the lease; `None` while it does not hold the lease.
    set_by_us: Option<u64>,
    /// Counts the shared history says an agent of this lease set (its `set` and the
    /// `to` of its scale events), read when this agent took the lease: the first
    /// look of a tenure takes them as the previous holder's, not as a fight.
    peer_counts: Vec<u64>,
    /// The last decision logged at INFO: (action, current, desired).
    logged: Option<(String, u64, u64)>,
    /// This agent's last update of the service, until its tasks run: the count it
    /// set and when it sent the update (logged as `converged` when seen).
    converging: Option<(u64, Instant)>,
}

/// A difference between the count the agents of this lease set and the count the
/// service has now: who made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reset {
    /// No difference, or nothing known to compare with.
    None,
    /// An agent of this lease set it (the shared history says so): not a fight.
    Peer,
    /// Another writer: a fight.
    Other,
}

/// Who changed `current` from what `mem` remembers (see [`Reset`]).
fn classify_reset(mem: &Memory, current: u64) -> Reset {
    match mem.set_by_us {
        Some(ours) if ours != current && mem.peer_counts.contains(&current) => Reset::Peer,
        Some(ours) if ours != current => Reset::Other,
        _ => Reset::None,
    }
}

/// The agent's state across passes.
struct Agent {
    settings: Settings,
    telemetry: Arc<Telemetry>,
    histories: HashMap<String, History>,
    memory: HashMap<String, Memory>,
    fights: BTreeMap<String, fights::Fight>,
    lease: LeaseView,
    /// The decision history kept in the swarm ([`history`]).
    keeper: history::Keeper,
    /// This agent's lease holder id (the history's writer).
    holder: String,
    /// Consecutive passes that could not read the swarm.
    failures: u32,
    /// The lease tenure ([`LeaseView::tenure`]) of the last pass that held it.
    tenure: Option<u64>,
    /// Engine stats from every node ([`stats`]).
    stats: StatsSide,
}

/// What the agent needs to read every node's engine stats and keep the combined
/// reading in the swarm ([`stats`]).
struct StatsSide {
    /// `--stats-peers`.
    peers: crate::metrics::nodes::Peers,
    /// The token of `--stats-token-file`, when it could be read.
    token: Option<crate::metrics::nodes::Token>,
    /// This node's own stats, when no peer answered for it.
    collector: crate::metrics::engine::Collector,
    /// Writes of the combined reading.
    publisher: crate::store::stats::Publisher,
    /// The stats config's name (`<lease>-stats`).
    config: String,
    /// The peer failures last logged (to log changes only).
    failures_said: Vec<String>,
    /// Whether a pass found this node demoted to worker: the agent then stops, so
    /// that a worker keeps no manager's agent and none of its secrets.
    demoted: bool,
}

impl StatsSide {
    /// How this pass reads the engine source: every node's agent when this agent
    /// holds the lease and has peers and a token; the holder's stored reading
    /// (else this engine) on a standby; this engine otherwise.
    fn via<'a>(&'a self, holds: bool, holder: &'a str) -> crate::plan::EngineVia<'a> {
        match (&self.token, holds) {
            (Some(token), true) if !self.peers.is_empty() => crate::plan::EngineVia::Peers {
                peers: &self.peers,
                token,
                collector: &self.collector,
                writer: holder,
            },
            (_, false) if !self.peers.is_empty() => crate::plan::EngineVia::Stored {
                config: self.config.clone(),
            },
            _ => crate::plan::EngineVia::Local,
        }
    }
}

/// The agent's log writer: stderr, where a failed write (a closed pipe, a full disk
/// behind a redirect) drops the line instead of failing or panicking; the agent goes
/// on. (tracing-subscriber's own fallback, `eprintln!` of the error, would panic on a
/// closed stderr, which killed the agent with exit 1 and kept its lease.)
#[derive(Debug, Clone, Copy, Default)]
pub struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(buf);
        let _ = err.flush();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LossyStderr {
    type Writer = LossyStderr;

    fn make_writer(&'a self) -> Self::Writer {
        LossyStderr
    }
}

fn init_logging(json: bool, level: Option<&str>) {
    use std::io::IsTerminal;
    let level = match level.map(str::to_ascii_lowercase).as_deref() {
        Some("trace") => "trace",
        Some("debug") => "debug",
        Some("warn") => "warn",
        Some("error" | "fatal" | "panic") => "error",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::new(format!("docker_microscale={level}"));
    let builder = tracing_subscriber::fmt()
        .with_writer(LossyStderr)
        .log_internal_errors(false)
        .with_env_filter(filter)
        .with_target(false);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .fmt_fields(logfmt::LogfmtFields)
            .try_init()
    };
}

/// Follows `GET /events?filters={"type":["service","node"]}` and signals `changed`
/// on each event; reconnects with backoff when the stream ends or fails.
async fn watch_events(engine: Engine, changed: Arc<tokio::sync::Notify>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut stream = engine
            .docker
            .events(Some(bollard::query_parameters::EventsOptions {
                filters: Some(HashMap::from([(
                    "type".to_string(),
                    vec!["service".to_string(), "node".to_string()],
                )])),
                ..Default::default()
            }));
        while let Some(event) = stream.next().await {
            match event {
                Ok(e) => {
                    backoff = Duration::from_secs(1);
                    debug!(
                        kind = %e.typ.map(|t| t.to_string()).unwrap_or_default(),
                        action = %e.action.clone().unwrap_or_default(),
                        "event"
                    );
                    changed.notify_one();
                }
                Err(e) => {
                    debug!(error = %engine.classify(e), "events stream failed");
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// What the agent loop knows of the lease, shared with the task that keeps it.
#[derive(Clone)]
pub(crate) struct LeaseView {
    seen: Arc<std::sync::Mutex<LeaseSeen>>,
    telemetry: Arc<Telemetry>,
    /// Notified each time this agent takes the lease (a new tenure starts).
    acquired: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct LeaseSeen {
    valid_until: Option<Instant>,
    /// The lease's config name.
    name: String,
    /// The last state or error, as logged (to log changes only).
    said: String,
    /// Counts the times this agent took the lease after not holding it.
    tenure: u64,
}

impl LeaseView {
    fn new(telemetry: Arc<Telemetry>) -> LeaseView {
        LeaseView {
            seen: Default::default(),
            telemetry,
            acquired: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// The end of this agent's lease window (monotonic), if it holds one.
    fn valid_until(&self) -> Option<Instant> {
        self.seen.lock().ok().and_then(|s| s.valid_until)
    }

    /// Whether this agent may act now: its lease window is open. Checked right
    /// before each update.
    fn holds(&self) -> bool {
        self.valid_until().is_some_and(|v| Instant::now() < v)
    }

    /// The current tenure: a number that changes each time this agent takes the
    /// lease after not holding it.
    fn tenure(&self) -> u64 {
        self.seen.lock().map(|s| s.tenure).unwrap_or(0)
    }

    /// The lease's name (for logs).
    fn name(&self) -> String {
        self.seen.lock().map(|s| s.name.clone()).unwrap_or_default()
    }

    /// Completes when this agent's lease window is closed: at once when it holds
    /// none, else at its end (a renewal meanwhile moves the end on). Every poll
    /// reads the clock itself, so a process that was paused (frozen, swapped out)
    /// past the end sees it closed at its first poll, before any timer fires.
    async fn lost(&self) {
        let mut sleep: Option<(Instant, std::pin::Pin<Box<tokio::time::Sleep>>)> = None;
        std::future::poll_fn(|cx| {
            let Some(until) = self.valid_until().filter(|v| Instant::now() < *v) else {
                return std::task::Poll::Ready(());
            };
            if sleep.as_ref().is_none_or(|(at, _)| *at != until) {
                let timer = tokio::time::sleep_until(tokio::time::Instant::from_std(until));
                sleep = Some((until, Box::pin(timer)));
            }
            match sleep.as_mut().map(|(_, s)| s.as_mut().poll(cx)) {
                // The timer fired: poll again to read the (maybe renewed) window.
                Some(std::task::Poll::Ready(())) => {
                    cx.waker().wake_by_ref();
                    std::task::Poll::Pending
                }
                _ => std::task::Poll::Pending,
            }
        })
        .await
    }

    /// Sets the window (and the `microscale_lease_held` gauge, which follows it).
    fn set_window(&self, until: Option<Instant>) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.valid_until = until;
        }
        self.telemetry.set_lease_window(until);
    }

    /// Records the result of a tick and logs what changed.
    fn record(
        &self,
        l: &lease::Lease,
        result: Result<lease::LeaseState, crate::engine::EngineError>,
    ) {
        let said = match &result {
            Ok(lease::LeaseState::Held) => "held".to_string(),
            Ok(lease::LeaseState::Other(h)) => format!("other {h}"),
            Ok(lease::LeaseState::Free) => "free".to_string(),
            Err(e) => format!("error {}", one_line(&e.to_string())),
        };
        self.telemetry
            .lease_error(result.as_ref().err().map(|e| one_line(&e.to_string())));
        self.telemetry.set_lease_window(l.valid_until());
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let now = Instant::now();
        let was_held = seen.valid_until.is_some_and(|v| now < v);
        seen.valid_until = l.valid_until();
        seen.name = l.name().to_string();
        if l.holds() && !was_held {
            seen.tenure += 1;
            self.acquired.notify_one();
        }
        if seen.said == said {
            return;
        }
        match &result {
            Ok(lease::LeaseState::Held) => {
                info!(lease = %l.name(), holder = %l.holder(), "lease acquired: this agent acts")
            }
            Ok(lease::LeaseState::Other(h)) => {
                info!(lease = %l.name(), holder = %one_line(h), "lease held by another agent: standing by")
            }
            Ok(lease::LeaseState::Free) => {
                info!(lease = %l.name(), "lease free: taking it at the next tick")
            }
            Err(e) => {
                warn!(lease = %l.name(), error = %one_line(&e.to_string()), "cannot read or renew the lease: not acting until it is back")
            }
        }
        seen.said = said;
    }
}

/// Keeps the lease: ticks when [`lease::Lease::next_tick`] says, records each result
/// in `view`; on `stop`, releases it (so a standby takes over at once).
async fn keep_lease(
    engine: Engine,
    mut l: lease::Lease,
    view: LeaseView,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let next = tokio::time::Instant::from_std(l.next_tick());
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = &mut stop => break,
        }
        // A renewal in flight (an engine that hangs) does not delay the release.
        let fresh = engine.renewed();
        let result = tokio::select! {
            r = l.tick(&fresh) => r,
            _ = &mut stop => break,
        };
        view.record(&l, result);
    }
    view.set_window(None);
    release(&engine, &mut l).await;
}

/// Releases the lease on the way out, within [`lease::RELEASE_TIMEOUT`], and logs how it
/// went. This agent stops acting first in any case.
async fn release(engine: &Engine, l: &mut lease::Lease) {
    let fresh = engine.renewed();
    match tokio::time::timeout(lease::RELEASE_TIMEOUT, l.release(&fresh)).await {
        Ok(Ok(true)) => info!(lease = %l.name(), "lease released"),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => {
            warn!(lease = %l.name(), error = %one_line(&e.to_string()), "cannot release the lease: a standby takes over when it expires")
        }
        Err(_) => {
            warn!(lease = %l.name(), timeout = %humantime::format_duration(lease::RELEASE_TIMEOUT), "cannot release the lease: the engine did not answer in time; a standby takes over when it expires")
        }
    }
}

impl Agent {
    /// One pass. Returns whether the swarm could be read, and whether something
    /// needs fixing (a rule with errors, a named service that does not exist).
    async fn pass(&mut self, engine: &Engine) -> (bool, bool) {
        let snap = match engine.snapshot(&Default::default()).await {
            Ok(s) => s,
            Err(e) if !self.settings.once && is_worker(engine).await => {
                // Demoted: the agent stops (docs/agent.md, the collector service).
                info!(error = %one_line(&e.to_string()), "this node is no longer a manager: the agent stops (a worker's agent cannot decide, and must not keep the managers' secrets); with deploy/stack.yml Swarm runs the node's collector instead");
                self.stats.demoted = true;
                return (true, false);
            }
            Err(e) => {
                let text = e.to_string();
                error!(error = %one_line(&text), "cannot read the swarm: acting on nothing this pass");
                self.telemetry.pass_failed(one_line(&text));
                return (false, false);
            }
        };
        self.telemetry.pass_ok();
        let holds = !self.settings.dry_run && self.lease.holds();
        self.follow_tenure(engine, holds).await;

        let (mut services, missing) = crate::swarm::service::select_services(
            snap.services.clone(),
            &self.settings.services,
            false,
        );
        let problems = !missing.is_empty();
        for m in missing {
            warn!(problem = %one_line(&m), "a named service is not in the swarm (removed?): carrying on with the others");
        }
        services.sort_by(|a, b| crate::render::natural_cmp(&service_name(a), &service_name(b)));
        let names = snap.services.iter().map(service_name).collect();
        let allow = match self.settings.access.allow(names) {
            Ok(a) => a,
            Err(e) => {
                error!(error = %one_line(&e), "bad --metric-allow, --metric-secret or --metric-tls* flag");
                return (true, true);
            }
        };
        let file = self.settings.file.as_ref().map(|(p, m)| (p.as_path(), m));
        let via = self.stats.via(holds, &self.holder);
        let readings = crate::plan::read_metrics(
            engine,
            &snap,
            &services,
            file,
            &allow,
            metric_timeout(self.settings.interval),
            &via,
        )
        .await;
        self.stats.after_read(engine, holds, &readings).await;
        let read = |k: &str| readings.read(k);
        let now = crate::edge::clock::wall_clock();
        // A new holder continues the windows and steps kept in the swarm.
        if let Some(stored) = self.keeper.on_pass(engine, holds, now).await {
            info!(history = %self.keeper.name, services = stored.len(), "decision history read from the swarm: windows and steps continue");
            self.histories = stored
                .iter()
                .map(|(id, e)| (id.clone(), e.history.clone()))
                .collect();
            for (id, e) in stored {
                let mem = self.memory.entry(id).or_default();
                mem.set_by_us = e.set;
                mem.peer_counts = e
                    .set
                    .into_iter()
                    .chain(e.history.events().iter().map(|ev| ev.to))
                    .collect();
            }
        } else if holds && !self.keeper.loaded() {
            warn!(history = %self.keeper.name, error = %one_line(self.keeper.trust.unreadable.as_deref().unwrap_or_default()), "cannot read the decision history in the swarm: no scale-down until it is read");
        }
        let mut rows = crate::plan::plan_with_history(
            &services,
            &snap,
            file,
            self.settings.capacity,
            now,
            true,
            &readings,
            &mut self.histories,
        );
        crate::plan::add_notes(&mut rows, &readings.notes);
        if holds {
            let windows = history::down_windows(&services, file);
            crate::plan::guard(&self.keeper.trust, &mut rows, now, &|id| {
                windows.get(id).copied().unwrap_or(300.0)
            });
        }
        // Forget services that are gone.
        let present: std::collections::HashSet<&str> =
            services.iter().filter_map(|s| s.id.as_deref()).collect();
        self.histories.retain(|id, _| present.contains(id.as_str()));
        // Fight records: this agent's services (`present`) are its own; those of
        // other services (another agent group's, read from the shared record) are
        // kept while the service exists, and never written back by this agent.
        let in_swarm: std::collections::HashSet<&str> = snap
            .services
            .iter()
            .filter_map(|s| s.id.as_deref())
            .collect();
        let fights_before = self.fights.len();
        self.fights.retain(|id, _| in_swarm.contains(id.as_str()));
        let mut fights_changed = self.fights.len() != fights_before;
        self.memory.retain(|id, _| present.contains(id.as_str()));

        let mut series = vec![];
        for row in &rows {
            let label = ServiceLabel {
                service: row.service.clone(),
            };
            self.telemetry
                .replicas
                .get_or_create(&label)
                .set(row.current as i64);
            self.telemetry
                .desired
                .get_or_create(&label)
                .set(row.desired as i64);
            self.telemetry
                .decisions
                .get_or_create(&ActionLabel {
                    service: row.service.clone(),
                    action: row.action.clone(),
                })
                .inc();
            let (metric_names, metric_failed) = self.record_metrics(&services, row, file, &read);
            series.push((row.service.clone(), metric_names));
            if row.action == "error" {
                self.telemetry
                    .errors
                    .get_or_create(&KindLabel {
                        service: row.service.clone(),
                        kind: "rule".into(),
                    })
                    .inc();
            }
            if metric_failed {
                self.telemetry
                    .errors
                    .get_or_create(&KindLabel {
                        service: row.service.clone(),
                        kind: "metric".into(),
                    })
                    .inc();
            }
            let mem = self.memory.entry(row.id.clone()).or_default();
            match classify_reset(mem, row.current) {
                Reset::None => {}
                Reset::Peer => {
                    debug!(service = %row.service, count = row.current, "the count was set by another agent of this lease (the shared history says so): not a fight");
                    mem.set_by_us = Some(row.current);
                }
                Reset::Other => {
                    let ours = mem.set_by_us.take().unwrap_or_default();
                    let now_ts = jiff::Timestamp::now();
                    let record =
                        fights::Fight::after(self.fights.get(&row.id), now_ts, row.current);
                    fights_changed = true;
                    self.telemetry.fights.get_or_create(&label).inc();
                    warn!(
                        service = %row.service,
                        set_by_agent = ours,
                        set_by_other = row.current,
                        resets = record.resets,
                        "fight: another writer reset the replica count this agent set (`docker stack deploy` resets it to `replicas:`, or to 1 without it; `docker service scale`); see docs/agent.md, Fights"
                    );
                    if let Some(until) = record.quiet_until(now_ts) {
                        warn!(
                            service = %row.service,
                            resets = record.resets,
                            until = %until,
                            "fight: leaving the service alone for a while, to stop the churn; let one writer own the count (docs/agent.md, Fights)"
                        );
                    }
                    self.fights.insert(row.id.clone(), record);
                }
            }
            // The previous holder's counts excuse only the first look of a tenure.
            mem.peer_counts.clear();
            log_converged(mem, row);
            let key = (row.action.clone(), row.current, row.desired);
            let changed = mem.logged.as_ref() != Some(&key);
            mem.logged = Some(key);
            log_decision(row, self.settings.dry_run, holds, changed);
        }
        self.telemetry.retain(series);
        let now_ts = jiff::Timestamp::now();
        if holds && fights::prune(&mut self.fights, now_ts) {
            fights_changed = true;
        }

        let wanted: Vec<&PlanRow> = rows
            .iter()
            .filter(|r| {
                matches!(r.action.as_str(), "scale up" | "scale down") && r.desired != r.current
            })
            .filter(|r| {
                let quiet = self
                    .fights
                    .get(&r.id)
                    .and_then(|f| f.quiet_until(now_ts))
                    .is_some_and(|q| q > now_ts);
                if quiet {
                    debug!(service = %r.service, "not acting: backing off after fights");
                }
                !quiet
            })
            .collect();
        if !wanted.is_empty() && !self.settings.dry_run && holds {
            // The scale events just decided go to the shared history first, so that
            // an agent taking over after this one knows these counts were set by an
            // agent of this lease, even if this one dies before its next write.
            self.save_history(engine, now, &snap.services).await;
            self.execute(engine, &snap.services, &wanted).await;
        } else if !wanted.is_empty() && !self.settings.dry_run {
            info!(
                services = wanted.len(),
                "not acting: this agent does not hold the lease now"
            );
        }
        if holds && self.lease.holds() {
            self.save_history(engine, now, &snap.services).await;
        }
        if fights_changed
            && holds
            && let Err(e) = fights::publish(engine, &self.fights, &present, &in_swarm).await
        {
            warn!(error = %one_line(&e.to_string()), "cannot record the fights in the swarm");
        }
        (true, problems || rows.iter().any(|r| r.action == "error"))
    }

    /// At the start of a pass that read the swarm, `holds` telling whether this agent
    /// holds the lease. Not holding: forgets the counts it set (another agent acts
    /// now). Holding in a new tenure: starts from the shared records, the decision
    /// history (read again by [`history::Keeper::on_pass`]) and the fights config
    /// ([`fights::read`]), not from what it remembered of an earlier tenure.
    async fn follow_tenure(&mut self, engine: &Engine, holds: bool) {
        let tenure = self.lease.tenure();
        if holds && self.tenure == Some(tenure) {
            return;
        }
        for mem in self.memory.values_mut() {
            mem.set_by_us = None;
            mem.peer_counts.clear();
        }
        if !holds {
            self.tenure = None;
            return;
        }
        self.tenure = Some(tenure);
        // Not holding for the keeper: it reads the stored history again this pass.
        let _ = self.keeper.on_pass(engine, false, 0.0).await;
        match fights::read(engine).await {
            Ok(records) => self.fights = records,
            Err(e) => {
                warn!(error = %one_line(&e.to_string()), "cannot read the fight records in the swarm: counting from what this agent saw")
            }
        }
    }

    /// Writes the decision history to the swarm when something changed (only while
    /// this agent holds the lease and has read it this tenure; [`history::Keeper`]).
    async fn save_history(&mut self, engine: &Engine, now: f64, services: &[Service]) {
        if !self.lease.holds() {
            return;
        }
        let entries: BTreeMap<String, history::Entry> = self
            .histories
            .iter()
            .map(|(id, h)| {
                let set = self.memory.get(id).and_then(|m| m.set_by_us);
                (
                    id.clone(),
                    history::Entry {
                        history: h.clone(),
                        set,
                    },
                )
            })
            .collect();
        let all: std::collections::HashSet<String> =
            services.iter().filter_map(|s| s.id.clone()).collect();
        let started = Instant::now();
        match self
            .keeper
            .save(engine, &self.holder, now, &entries, &all)
            .await
        {
            Ok(Some(bytes)) => {
                debug!(history = %self.keeper.name, bytes, millis = started.elapsed().as_millis() as u64, "decision history written")
            }
            Ok(None) => {}
            Err(e) => {
                warn!(history = %self.keeper.name, error = %one_line(&e.to_string()), "cannot write the decision history: tried again next pass")
            }
        }
    }

    /// Sets the metric gauges of `row`'s service; returns its metric names.
    fn record_metrics(
        &self,
        services: &[Service],
        row: &PlanRow,
        file: Option<(&std::path::Path, &RulesFile)>,
        read: &dyn Fn(&str) -> Result<f64, String>,
    ) -> (Vec<String>, bool) {
        let Some(s) = services
            .iter()
            .find(|s| s.id.as_deref() == Some(row.id.as_str()))
        else {
            return (vec![], false);
        };
        let inputs = crate::rules::check::rule_inputs(std::slice::from_ref(s), file);
        let Some((_, labels, _)) = inputs.into_iter().next() else {
            return (vec![], false);
        };
        let Some(rule) =
            crate::rules::parse_labels(&row.service, crate::swarm::service::Mode::of(s), &labels)
                .rule
        else {
            return (vec![], false);
        };
        let mut names = vec![];
        let mut failed = false;
        for m in rule.metrics {
            // Only values a decision can use (a negative or infinite one is refused
            // by the decision core as unreadable).
            match read(&crate::plan::metric_key(s, &m.source)) {
                Ok(v) if v.is_finite() && v >= 0.0 => {
                    self.telemetry
                        .metric
                        .get_or_create(&MetricLabel {
                            service: row.service.clone(),
                            metric: m.name.clone(),
                        })
                        .set(v);
                }
                _ => failed = true,
            }
            names.push(m.name);
        }
        (names, failed)
    }

    /// Scales the services of `wanted` concurrently, each from its raw spec, while
    /// the lease holds. A service changed since this pass read it is left to the next
    /// pass, which decides again on what it then is.
    async fn execute(&mut self, engine: &Engine, read: &[Service], wanted: &[&PlanRow]) {
        let lease = &self.lease;
        let telemetry = &self.telemetry;
        let results = futures_util::future::join_all(wanted.iter().map(|row| async move {
            let version = read
                .iter()
                .find(|s| s.id.as_deref() == Some(row.id.as_str()))
                .and_then(|s| s.version.as_ref())
                .and_then(|v| v.index);
            let decide = |svc: &RawService| -> Result<Verdict, String> {
                if !lease.holds() {
                    return Ok(Verdict::Hold("the lease was lost before the update".into()));
                }
                if Some(svc.version) != version {
                    return Ok(Verdict::Hold(
                        "changed since this pass read it: decided again next pass".into(),
                    ));
                }
                Ok(Verdict::Scale(row.desired))
            };
            let started = Instant::now();
            // No update outlives the lease window: its deadline is the window's end
            // (the read first, then the update, which says whether it was in flight).
            let inspected = tokio::select! {
                // The window first: after a pause past its end, nothing is sent.
                biased;
                _ = lease.lost() => None,
                r = engine.inspect_service_raw(&row.id) => Some(r),
            };
            let outcome = match inspected {
                Some(Ok(svc)) => {
                    crate::execute::update::update_within(engine, svc, &decide, lease.lost()).await
                }
                Some(Err(e)) => {
                    crate::execute::update::Outcome::failed(&row.service, e.to_string())
                }
                None => {
                    let mut o =
                        crate::execute::update::Outcome::failed(&row.service, String::new());
                    o.error = None;
                    o.held = Some("the lease window ended before the update was sent".into());
                    o
                }
            };
            let label = ServiceLabel {
                service: row.service.clone(),
            };
            if outcome.convergence == Convergence::Unknown {
                telemetry
                    .errors
                    .get_or_create(&KindLabel {
                        service: row.service.clone(),
                        kind: "update".into(),
                    })
                    .inc();
                warn!(
                    service = %row.service,
                    to = row.desired,
                    millis = started.elapsed().as_millis() as u64,
                    error = %one_line(outcome.error.as_deref().unwrap_or_default()),
                    "update outcome unknown"
                );
            } else if outcome.updated {
                telemetry
                    .update_seconds
                    .get_or_create(&label)
                    .observe(started.elapsed().as_secs_f64());
                telemetry.updates.get_or_create(&label).inc();
                info!(
                    service = %row.service,
                    from = outcome.before.unwrap_or(0),
                    to = outcome.after.unwrap_or(0),
                    version = outcome.version.unwrap_or(0),
                    retries = outcome.retries,
                    millis = started.elapsed().as_millis() as u64,
                    "scaled"
                );
            } else if let Some(e) = &outcome.error {
                telemetry
                    .errors
                    .get_or_create(&KindLabel {
                        service: row.service.clone(),
                        kind: "update".into(),
                    })
                    .inc();
                error!(service = %row.service, error = %one_line(e), "update failed");
            } else if let Some(h) = &outcome.held {
                info!(service = %row.service, reason = %h, "not scaled");
            }
            (row.id.clone(), outcome, started)
        }))
        .await;
        for ((id, outcome, started), row) in results.into_iter().zip(wanted) {
            let mem = self.memory.entry(id).or_default();
            if let (true, Some(to)) = (outcome.updated, outcome.after) {
                mem.converging = Some((to, started));
            }
            if outcome.convergence == Convergence::Unknown {
                // Applied or not: the next look takes either count as this agent's.
                mem.peer_counts = mem.set_by_us.into_iter().chain([row.desired]).collect();
            } else if outcome.updated && outcome.convergence != Convergence::Failed {
                mem.set_by_us = outcome.after;
            }
        }
    }
}

impl StatsSide {
    /// After a pass's metric reads: logs peers that gave nothing (when that
    /// changes), and while holding the lease keeps the combined reading in the swarm.
    async fn after_read(&mut self, engine: &Engine, holds: bool, readings: &crate::plan::Readings) {
        if readings.peer_failures != self.failures_said {
            if readings.peer_failures.is_empty() {
                info!("every stats peer answered");
            } else {
                warn!(
                    peers = %one_line(&readings.peer_failures.join("; ")),
                    "some stats peers gave nothing: their nodes' tasks are not measured (no scale-down on that partial data)"
                );
            }
            self.failures_said = readings.peer_failures.clone();
        }
        let Some(combined) = readings.combined.as_ref().filter(|_| holds) else {
            return;
        };
        match self.publisher.publish(engine, &self.config, combined).await {
            Ok(Some(bytes)) => {
                debug!(config = %self.config, bytes, nodes = combined.nodes.len(), "combined engine stats written")
            }
            Ok(None) => {}
            Err(e) => {
                warn!(config = %self.config, error = %one_line(&e.to_string()), "cannot write the combined engine stats: tried again next pass")
            }
        }
    }
}

/// Whether this engine's node is a worker now (`GET /info`: `Swarm.ControlAvailable`
/// false). An engine that cannot say is not taken for a worker.
async fn is_worker(engine: &Engine) -> bool {
    matches!(
        crate::metrics::engine::whoami(&engine.renewed()).await,
        Ok((_, false))
    )
}

/// An agent that only serves its node's task stats: no lease, no decisions, no error
/// loop. Says so once, keeps `/healthz` healthy while its engine answers, and checks
/// the node's role (`GET /info`: `Swarm.ControlAvailable`) every `interval`.
///
/// Without `--collector` (`collector_only` false) this is a worker's agent: it
/// returns `true` when the node is (or becomes) a manager, and an engine that cannot
/// be read at the start is left to the passes (which retry with backoff). With
/// `--collector` it never returns: on a promoted node it logs once that it still
/// takes no part in the lease (Swarm replaces it with the managers' service there,
/// docs/agent.md).
async fn collect(
    engine: &Engine,
    telemetry: &Telemetry,
    interval: Duration,
    serving: bool,
    collector_only: bool,
) -> bool {
    let mut said = false;
    let mut manager_said = false;
    loop {
        match crate::metrics::engine::whoami(&engine.renewed()).await {
            Ok((node, true)) if collector_only => {
                if !said || !manager_said {
                    info!(
                        node = %one_line(&node.hostname),
                        serving_stats = serving,
                        "--collector on a manager: collector only (serving its tasks' stats to the lease holder); no lease, no decisions (the managers' agent service decides)"
                    );
                    said = true;
                    manager_said = true;
                }
                telemetry.pass_ok();
            }
            Ok((_, true)) => {
                if said {
                    info!("this node is a manager now: taking part in the lease");
                }
                return true;
            }
            Ok((node, false)) => {
                if !said || (collector_only && manager_said) {
                    info!(
                        node = %one_line(&node.hostname),
                        serving_stats = serving,
                        "this node is a worker: collector only (serving its tasks' stats to the lease holder); no lease, no decisions"
                    );
                    said = true;
                    manager_said = false;
                }
                telemetry.pass_ok();
            }
            Err(e) if !said && !collector_only => {
                debug!(error = %one_line(&e), "cannot tell this node's role yet: starting as a manager's agent");
                return true;
            }
            Err(e) => {
                telemetry.pass_failed(format!("cannot read this node's engine: {}", one_line(&e)))
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// The exit code of `run --once` after its pass: 1 when the pass failed or found
/// problems; else, when it could not act (`acting` false: not holding the lease,
/// without `--dry-run`), 3 when another agent (`standing_by`) holds the lease, as
/// `apply` exits then, and 1 when the lease could not be taken; else 0
/// (`docs/exit-codes.md`).
fn once_exit(ok: bool, problems: bool, acting: bool, standing_by: &Option<String>) -> Exit {
    if !ok || problems {
        return Exit::Error;
    }
    if acting {
        return Exit::Ok;
    }
    match standing_by {
        Some(holder) => {
            warn!(
                holder = %one_line(holder),
                "--once: another agent holds the lease, so this pass only decided and nothing was scaled (exit 3); that agent scales (see docs/agent.md, High availability)"
            );
            Exit::AgentActive
        }
        None => {
            warn!("--once: the lease could not be taken, so nothing was scaled (exit 1)");
            Exit::Error
        }
    }
}

/// Logs `converged` (service, replicas, seconds since this agent's update) when a
/// pass first sees the tasks of a service this agent scaled all running at the
/// count it set; forgets the update when the count changed since (another update,
/// another writer). The seconds are an upper bound: passes run every `--interval`
/// and on service events, not on task events.
fn log_converged(mem: &mut Memory, row: &PlanRow) {
    let Some((to, since)) = mem.converging else {
        return;
    };
    if row.current != to {
        mem.converging = None;
    } else if row.running == to {
        let seconds = (since.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        info!(
            service = %row.service,
            replicas = to,
            seconds,
            "converged"
        );
        mem.converging = None;
    }
}

/// One log line per decision, with its reasons.
///
/// A decision like the service's previous one (same action and counts) is logged at
/// DEBUG, so that a steady swarm does not fill the log; a change is logged at INFO.
fn log_decision(row: &PlanRow, dry_run: bool, holds: bool, changed: bool) {
    let reasons = crate::edge::text::printable(&row.reasons.join("; "));
    // No metric read: no `metric` field (text and JSON).
    let metric = row.metric.as_deref();
    if !changed {
        debug!(
            service = %row.service,
            current = row.current,
            desired = row.desired,
            action = %row.action,
            metric = metric,
            reasons = %reasons,
            "decision"
        );
        return;
    }
    match row.action.as_str() {
        "error" => warn!(service = %row.service, reasons = %reasons, "rule has errors"),
        "scale up" | "scale down" => info!(
            service = %row.service,
            current = row.current,
            desired = row.desired,
            action = %row.action,
            metric = metric,
            dry_run,
            acting = holds && !dry_run,
            reasons = %reasons,
            "decision"
        ),
        _ => info!(
            service = %row.service,
            current = row.current,
            desired = row.desired,
            action = %row.action,
            metric = metric,
            reasons = %reasons,
            "decision"
        ),
    }
}

/// Text from the engine, a metric source or a label as one safe log field: its
/// lines joined, control and bidi characters escaped, secrets masked, and cut.
fn one_line(s: &str) -> String {
    let joined = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    crate::edge::text::ellipsize(
        &crate::edge::text::printable(&crate::edge::redact::redact_value(&joined)),
        1000,
    )
}

/// How long one metric read may take in a pass: half the interval, from 2 to 10
/// seconds, so that one hanging source cannot stall every service for long.
fn metric_timeout(interval: Duration) -> Duration {
    (interval / 2).clamp(Duration::from_secs(2), crate::metrics::DEFAULT_TIMEOUT)
}

/// Runs `docker microscale run`.
///
/// Exit codes: 0 after SIGTERM/SIGINT or after `--once`; 1 when `--once` could not
/// read the swarm, found a rule with errors or a named service missing, or could not
/// take the lease, or when `--listen` cannot be bound or the `--health-socket` given
/// cannot be served; 3 when `--once` (without `--dry-run`) found another agent
/// holding the lease and so scaled nothing; 125 for bad flags (`docs/exit-codes.md`).
pub async fn run(
    engine: &Engine,
    args: &crate::agent::RunArgs,
    log_level: Option<&str>,
) -> Result<Exit, Failure> {
    let interval = parse_duration_flag(
        "interval",
        args.interval.as_deref(),
        DEFAULT_INTERVAL,
        MIN_INTERVAL,
    )
    .map_err(Failure::Usage)?;
    let lease_ttl = parse_duration_flag(
        "lease-ttl",
        args.lease_ttl.as_deref(),
        lease::DEFAULT_TTL,
        lease::MIN_TTL,
    )
    .and_then(|d| {
        if d > lease::MAX_TTL {
            Err(format!(
                "invalid argument \"{}\" for \"--lease-ttl\" flag: at most {}",
                args.lease_ttl.as_deref().unwrap_or_default(),
                humantime::format_duration(lease::MAX_TTL)
            ))
        } else {
            Ok(d)
        }
    })
    .map_err(Failure::Usage)?;
    let json = match args.log_format.as_deref().map(str::trim) {
        None | Some("") | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(Failure::Usage(format!(
                "invalid argument \"{other}\" for \"--log-format\" flag: use 'text' or 'json'"
            )));
        }
    };
    let lease_name = match args.lease_name.as_deref().map(str::trim) {
        None => lease::DEFAULT_NAME.to_string(),
        Some(n) => lease::check_lease_name(n).map_err(Failure::Usage)?,
    };
    let listen = args
        .listen
        .as_deref()
        .map(serve::parse_listen)
        .transpose()
        .map_err(Failure::Usage)?;
    // (path, whether it was asked for): the default one is served when it can be.
    let health_socket = match args.health_socket.as_deref().map(str::trim) {
        None => Some((serve::default_socket(), false)),
        Some("") => None,
        Some(p) if p.starts_with('/') => Some((std::path::PathBuf::from(p), true)),
        Some(p) => {
            return Err(Failure::Usage(format!(
                "invalid argument \"{}\" for \"--health-socket\" flag: give an absolute path, such as /run/microscale/health.sock, or an empty value for none",
                crate::edge::text::printable(p)
            )));
        }
    };
    // Checked before anything runs; the list itself is rebuilt each pass.
    args.decide
        .access
        .allow(Default::default())
        .map_err(Failure::Usage)?;
    let stats_listen = args
        .stats_listen
        .as_deref()
        .map(|v| {
            serve::parse_listen(v).map_err(|_| {
                format!(
                    "invalid argument \"{}\" for \"--stats-listen\" flag: give an address such as :9091 or 0.0.0.0:9091",
                    crate::edge::text::printable(v)
                )
            })
        })
        .transpose()
        .map_err(Failure::Usage)?;
    let peers = crate::metrics::nodes::Peers::parse(&args.stats_peers).map_err(Failure::Usage)?;
    if (stats_listen.is_some() || !peers.is_empty()) && args.stats_token_file.is_none() {
        return Err(Failure::Usage(
            "--stats-listen and --stats-peers need --stats-token-file: the agents' stats are read only with their shared token (a Swarm secret; docs/agent.md, Engine stats from every node)".into(),
        ));
    }
    let collector_only = args.collector == Some(true);
    if collector_only {
        check_collector(args).map_err(Failure::Usage)?;
    }
    let file = crate::rules::check::load_rules_flag(args.decide.rules.as_deref())?;
    init_logging(json, log_level);
    // Signal handlers before anything else: a signal during startup or the first
    // pass ends the agent cleanly too.
    let cancelled = crate::edge::exit::cancellation();
    tokio::pin!(cancelled);

    let telemetry = Arc::new(Telemetry::new());
    let stale = (interval * 3).max(Duration::from_secs(30));
    // Removed when `run` returns, on every path.
    let mut _health_socket = None;
    if let Some((path, asked)) = health_socket.filter(|_| args.once != Some(true)) {
        match serve::start_socket(&path, telemetry.clone(), stale) {
            Ok(socket) => {
                info!(socket = %crate::edge::text::printable(&socket.path().display().to_string()), "serving /healthz on the health socket");
                _health_socket = Some(socket);
            }
            Err(e) if asked => return Err(Failure::Error(e)),
            Err(e) => {
                warn!(error = %one_line(&e), "not serving the default health socket: `__healthz` without an address cannot reach this agent");
            }
        }
    }
    if let Some(addr) = listen {
        let bound = serve::start(addr, telemetry.clone(), stale)
            .await
            .map_err(Failure::Error)?;
        info!(address = %bound, "serving /metrics and /healthz");
    }
    // Engine stats: this node's tasks for the other agents, with the shared token.
    let token = match args
        .stats_token_file
        .as_deref()
        .map(crate::metrics::nodes::Token::read)
    {
        Some(Ok(t)) => Some(t),
        // A collector without its token would serve nothing and look healthy: it
        // fails, so that `docker service ps` shows why and Swarm restarts it.
        Some(Err(e)) if collector_only => {
            return Err(Failure::Error(format!(
                "--collector: no stats token, so nothing to serve: {e}"
            )));
        }
        Some(Err(e)) => {
            warn!(error = %one_line(&e), "no stats token: this node's task stats are not served, and other nodes' are not read (engine:// measures this engine's tasks only)");
            None
        }
        None => None,
    };
    match (stats_listen, &token) {
        (Some(addr), Some(t)) => {
            let bound = stats::serve(addr, engine.clone(), t.clone())
                .await
                .map_err(Failure::Error)?;
            info!(address = %bound, path = crate::metrics::nodes::PATH, "serving this node's task stats to the other agents (token required)");
        }
        (Some(addr), None) => {
            warn!(address = %addr, "no stats endpoint: the stats token file cannot be read");
        }
        (None, _) => {
            debug!("no --stats-listen: this node's task stats are not served to other agents")
        }
    }
    // `--collector`: this node's stats and nothing else, until stopped, whatever the
    // node's role.
    if collector_only {
        tokio::select! {
            _ = collect(engine, &telemetry, interval, true, true) => {}
            _ = &mut cancelled => {}
        }
        info!("agent stopped");
        return Ok(Exit::Ok);
    }
    // A worker cannot read the swarm: it only serves its tasks' stats, until it is
    // promoted.
    if args.once != Some(true) {
        let collected = tokio::select! {
            r = collect(engine, &telemetry, interval, stats_listen.is_some() && token.is_some(), false) => r,
            _ = &mut cancelled => false,
        };
        if !collected {
            info!("agent stopped");
            return Ok(Exit::Ok);
        }
    }
    let holder = tokio::select! {
        h = lease::default_holder(engine) => h,
        _ = &mut cancelled => return Ok(Exit::Ok),
    };
    let holder = match holder {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %one_line(&e.to_string()), "cannot read the engine's node ID for the lease holder id");
            format!(
                "{}/unknown/{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "agent".into()),
                std::process::id()
            )
        }
    };
    let settings = Settings {
        interval,
        capacity: args.decide.capacity,
        access: args.decide.access.clone(),
        file,
        dry_run: args.dry_run == Some(true),
        once: args.once == Some(true),
        services: args.services.clone(),
    };
    info!(
        interval = %humantime::format_duration(interval),
        dry_run = settings.dry_run,
        once = settings.once,
        lease = %lease_name,
        holder = %one_line(&holder),
        stats_peers = %peers.text(),
        "agent started"
    );
    let mut agent = Agent {
        telemetry: telemetry.clone(),
        histories: HashMap::new(),
        memory: HashMap::new(),
        fights: BTreeMap::new(),
        lease: LeaseView::new(telemetry.clone()),
        keeper: history::Keeper::new(history::config_name(&lease_name)),
        holder: holder.clone(),
        failures: 0,
        tenure: None,
        stats: StatsSide {
            peers,
            token,
            collector: crate::metrics::engine::Collector::new(),
            publisher: crate::store::stats::Publisher::default(),
            config: crate::store::stats::config_name(&lease_name),
            failures_said: vec![],
            demoted: false,
        },
        settings,
    };
    // The lease runs on its own timer (renewals every TTL/3 must not wait for a
    // pass); the first tick happens before the first pass, so that `--once` can act.
    // `--once` as a standby exits 3, as `apply` does: the holder it stood by for.
    let mut standing_by: Option<String> = None;
    let lease_task = if agent.settings.dry_run {
        None
    } else {
        // A standby polls at least every interval (and every TTL/6), so that it sees
        // each renewal soon after it is written (docs/agent.md, takeover times).
        let mut l =
            lease::Lease::new(lease_name, lease_ttl, holder).with_poll(interval.min(lease_ttl / 6));
        let view = agent.lease.clone();
        let fresh = engine.renewed();
        let first = tokio::select! {
            t = l.tick(&fresh) => Some(t),
            _ = &mut cancelled => None,
        };
        let Some(first) = first else {
            // The tick abandoned may have taken the lease already: give it back.
            info!("stopping: signal received while taking the lease; nothing is scaled");
            release(engine, &mut l).await;
            info!("agent stopped");
            return Ok(Exit::Ok);
        };
        if let Ok(lease::LeaseState::Other(h)) = &first {
            standing_by = Some(h.clone());
        }
        view.record(&l, first);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(keep_lease(engine.clone(), l, view, stopped));
        Some((stop, task))
    };

    let changed = Arc::new(tokio::sync::Notify::new());
    if !agent.settings.once {
        tokio::spawn(watch_events(engine.clone(), changed.clone()));
    }
    let mut code = Exit::Ok;
    loop {
        let started = Instant::now();
        agent.telemetry.pass_started();
        // A signal abandons the pass: its metric reads, and any update not yet
        // answered (a scale either happened or not; the next agent reads which).
        let fresh = engine.renewed();
        // A holder's pass ends when its lease window does, whatever it waits for
        // (an engine cut off from the swarm): nothing outlives the window.
        let view = agent.lease.clone();
        let held_at_start = view.holds();
        let acquired = view.acquired.clone();
        let result = tokio::select! {
            biased;
            r = agent.pass(&fresh) => Some(Some(r)),
            _ = &mut cancelled => None,
            _ = view.lost(), if held_at_start => Some(None),
            // A standby's pass (it writes nothing) that still waits on a leader
            // that died gives way to a new pass when this agent takes the lease.
            _ = acquired.notified(), if !held_at_start => {
                info!("lease acquired during a standby pass: starting a new pass at once");
                continue;
            }
        };
        let Some(result) = result else {
            info!(
                "stopping: signal received during a pass, which is abandoned; nothing more is scaled"
            );
            break;
        };
        let (ok, problems) = result.unwrap_or_else(|| {
            let why = "the lease window ended during the pass (the engine did not answer in time): the pass is abandoned, and an update in flight may or may not have been applied; the swarm is read again before anything else is done";
            warn!(lease = %view.name(), "{why}");
            agent.telemetry.pass_failed(why.to_string());
            (false, false)
        });
        agent
            .telemetry
            .pass_seconds
            .observe(started.elapsed().as_secs_f64());
        agent.telemetry.passes.inc();
        agent
            .telemetry
            .last_pass
            .set(crate::edge::clock::wall_clock());
        if agent.stats.demoted {
            break;
        }
        if agent.settings.once {
            code = once_exit(
                ok,
                problems,
                held_at_start || agent.settings.dry_run,
                &standing_by,
            );
            break;
        }
        let wait = if ok {
            agent.failures = 0;
            agent.settings.interval
        } else {
            agent.failures = agent.failures.saturating_add(1);
            // Back off while the engine is away: 1 s doubling, never beyond the
            // interval.
            Duration::from_secs(1 << agent.failures.min(6)).min(agent.settings.interval)
        };
        let acquired = agent.lease.acquired.clone();
        let stop = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = changed.notified(), if ok => {
                tokio::time::sleep(EVENT_DEBOUNCE).await;
                false
            }
            // A new holder acts at once, not an interval later.
            _ = acquired.notified() => false,
            _ = &mut cancelled => true,
        };
        if stop {
            info!("stopping: signal received; nothing more is scaled");
            break;
        }
    }
    if let Some((stop, task)) = lease_task {
        let _ = stop.send(());
        let _ = task.await;
    }
    info!("agent stopped");
    Ok(code)
}

/// Checks the flags of `run --collector`: it needs `--stats-listen` and
/// `--stats-token-file`, and takes none of the flags of a deciding agent (services,
/// `--once`, `--dry-run`, the lease, `--stats-peers`, the decision options), so that
/// a collector is never given a rule's secret or a lease by mistake. Errors: a usage
/// message naming the flag and the fix.
fn check_collector(args: &RunArgs) -> Result<(), String> {
    if args.stats_listen.is_none() || args.stats_token_file.is_none() {
        return Err("--collector needs --stats-listen and --stats-token-file: a collector only serves its node's task stats to the agents that hold the token (docs/agent.md, Engine stats from every node)".into());
    }
    let deciding: [(&str, bool); 14] = [
        ("SERVICE arguments", !args.services.is_empty()),
        ("--once", args.once.is_some()),
        ("--dry-run", args.dry_run.is_some()),
        ("--lease-name", args.lease_name.is_some()),
        ("--lease-ttl", args.lease_ttl.is_some()),
        ("--stats-peers", !args.stats_peers.is_empty()),
        ("--rules", args.decide.rules.is_some()),
        ("--capacity", args.decide.capacity.is_some()),
        (
            "--metric-allow",
            !args.decide.access.metric_allow.is_empty(),
        ),
        (
            "--metric-allow-only",
            args.decide.access.metric_allow_only.is_some(),
        ),
        (
            "--metric-secret",
            !args.decide.access.metric_secret.is_empty(),
        ),
        (
            "--metric-tlscacert",
            args.decide.access.metric_tlscacert.is_some(),
        ),
        (
            "--metric-tlscert",
            args.decide.access.metric_tlscert.is_some(),
        ),
        (
            "--metric-tlskey",
            args.decide.access.metric_tlskey.is_some(),
        ),
    ];
    match deciding.iter().find(|(_, given)| *given) {
        Some((flag, _)) => Err(format!(
            "{flag} cannot be used with --collector: a collector never takes the lease, reads no metric and decides nothing; give {flag} to the managers' agents (the `agent` service of deploy/stack.yml), or leave out --collector"
        )),
        None => Ok(()),
    }
}

/// Options of `docker microscale run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Services to manage, by name or ID (default: every service with a rule)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,

    /// Time between passes, from 500ms (default 15s)
    #[arg(long = "interval", value_name = "duration")]
    pub interval: Option<String>,

    #[command(flatten)]
    pub decide: DecideOptions,

    /// Decide and log, change nothing
    #[arg(long = "dry-run", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub dry_run: Option<bool>,

    /// One pass, then exit: the cron and script form (exit 3 when another agent holds the lease: nothing scaled)
    #[arg(long = "once", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub once: Option<bool>,

    /// Log format: 'text' (default) or 'json' (one object per line, on stderr)
    #[arg(long = "log-format", value_name = "string")]
    pub log_format: Option<String>,

    /// Serve /metrics (Prometheus) and /healthz on this address, e.g. :9090 or 127.0.0.1:9090
    #[arg(long = "listen", value_name = "addr")]
    pub listen: Option<String>,

    /// Also serve /healthz (and /metrics) on this unix socket, for the container health check (default /run/microscale/health.sock, or $XDG_RUNTIME_DIR/microscale/health.sock; empty: none)
    #[arg(long = "health-socket", value_name = "path")]
    pub health_socket: Option<String>,

    /// The Swarm config holding the agents' lease: only its holder acts
    #[arg(long = "lease-name", value_name = "string")]
    pub lease_name: Option<String>,

    /// How long a lease outlives a holder that stopped renewing it, from 1s (default 12s)
    #[arg(long = "lease-ttl", value_name = "duration")]
    pub lease_ttl: Option<String>,

    /// Serve this node's task stats to the other agents on this address, e.g. :9091 (needs --stats-token-file)
    #[arg(long = "stats-listen", value_name = "addr")]
    pub stats_listen: Option<String>,

    /// The agents to read engine stats from while holding the lease: HOST:PORT,... (comma-separated or repeated; a name is resolved to all its addresses, e.g. tasks.agent:9091,tasks.collector:9091)
    #[arg(long = "stats-peers", value_name = "host:port")]
    pub stats_peers: Vec<String>,

    /// The file holding the agents' shared stats token (a Swarm secret, e.g. /run/secrets/microscale-stats-token)
    #[arg(long = "stats-token-file", value_name = "path", value_parser = any_path)]
    pub stats_token_file: Option<PathBuf>,

    /// Collector only: serve this node's task stats (--stats-listen) and nothing else; never take the lease or decide, whatever the node's role (the workers' service of deploy/stack.yml)
    #[arg(long = "collector", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub collector: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_exits_3_as_a_standby_like_apply() {
        let other = Some("agent-a".to_string());
        // Holding (or --dry-run): 0, or 1 on problems.
        assert_eq!(once_exit(true, false, true, &None), Exit::Ok);
        assert_eq!(once_exit(true, true, true, &None), Exit::Error);
        assert_eq!(once_exit(false, false, true, &None), Exit::Error);
        // Another agent holds the lease: nothing was scaled, exit 3 (apply's code).
        assert_eq!(once_exit(true, false, false, &other), Exit::AgentActive);
        assert_eq!(Exit::AgentActive as i32, 3);
        // Errors still win: the rule needs fixing whoever scales.
        assert_eq!(once_exit(true, true, false, &other), Exit::Error);
        // The lease could not be taken (an engine error): 1.
        assert_eq!(once_exit(true, false, false, &None), Exit::Error);
    }

    /// `run` flags parsed as the CLI parses them.
    fn run_args(argv: &[&str]) -> crate::agent::RunArgs {
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            run: crate::agent::RunArgs,
        }
        use clap::Parser;
        T::try_parse_from(std::iter::once("run").chain(argv.iter().copied()))
            .unwrap()
            .run
    }

    #[test]
    fn a_collector_takes_no_flag_of_a_deciding_agent() {
        let base = [
            "--collector",
            "--stats-listen=:9091",
            "--stats-token-file=/run/secrets/microscale-stats-token",
        ];
        let ok = run_args(&base);
        assert_eq!(ok.collector, Some(true));
        assert_eq!(check_collector(&ok), Ok(()));
        // What a collector may still have: its log format, interval, health and
        // /metrics addresses.
        let mut more = base.to_vec();
        more.extend(["--log-format=json", "--interval=5s", "--listen=:9090"]);
        assert_eq!(check_collector(&run_args(&more)), Ok(()));
        // It needs something to serve, with the token.
        for missing in [&base[..2], &[base[0], base[2]][..]] {
            let e = check_collector(&run_args(missing)).unwrap_err();
            assert!(
                e.contains("--collector needs --stats-listen and --stats-token-file"),
                "{e}"
            );
        }
        for (extra, named) in [
            ("web", "SERVICE arguments"),
            ("--once", "--once"),
            ("--dry-run", "--dry-run"),
            ("--lease-name=x", "--lease-name"),
            ("--lease-ttl=5s", "--lease-ttl"),
            ("--stats-peers=tasks.agent:9091", "--stats-peers"),
            ("--rules=r.toml", "--rules"),
            ("--capacity=4", "--capacity"),
            ("--metric-allow=queue:6379", "--metric-allow"),
            ("--metric-allow-only", "--metric-allow-only"),
            ("--metric-secret=redis=queue:6379", "--metric-secret"),
            ("--metric-tlscacert=/run/secrets/ca", "--metric-tlscacert"),
            ("--metric-tlscert=/run/secrets/cert", "--metric-tlscert"),
            ("--metric-tlskey=/run/secrets/key", "--metric-tlskey"),
        ] {
            let mut argv = base.to_vec();
            argv.push(extra);
            let e = check_collector(&run_args(&argv)).unwrap_err();
            assert!(
                e.starts_with(&format!("{named} cannot be used with --collector")),
                "{extra}: {e}"
            );
            assert!(e.contains("the `agent` service of deploy/stack.yml"), "{e}");
        }
        // --collector=false is the ordinary agent.
        assert_eq!(run_args(&["--collector=false"]).collector, Some(false));
    }

    #[tokio::test]
    async fn the_deadline_is_the_windows_end_and_follows_renewals() {
        let view = LeaseView::new(Arc::new(Telemetry::new()));
        // No window: lost at once.
        let t0 = Instant::now();
        view.lost().await;
        assert!(t0.elapsed() < Duration::from_millis(50));
        // A window ending in 150 ms, renewed after 50 ms to end 300 ms from now.
        view.set_window(Some(t0 + Duration::from_millis(150)));
        assert!(view.holds());
        assert!(
            view.telemetry.lease_held_now(),
            "the gauge follows the window"
        );
        let renew = {
            let view = view.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                view.set_window(Some(t0 + Duration::from_millis(300)));
            }
        };
        tokio::join!(view.lost(), renew);
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(600),
            "{took:?}"
        );
        assert!(!view.holds());
        assert!(!view.telemetry.lease_held_now());
        // A window that ended while nothing polled (a paused process): lost at the
        // first poll, whatever timer was armed.
        view.set_window(Some(Instant::now() + Duration::from_millis(20)));
        std::thread::sleep(Duration::from_millis(40));
        let t1 = Instant::now();
        view.lost().await;
        assert!(t1.elapsed() < Duration::from_millis(20));
    }

    #[test]
    fn a_secret_file_path_is_shown_and_a_secret_is_masked_in_log_fields() {
        // deploy/stack.yml's rule: the path says where the secret is; it is no secret.
        let reasons = "metric unreadable: WRONGPASS invalid username-password pair (reading redis://queue:6379/0?list=jobs&missing=zero&secret-file=/run/secrets/redis)";
        let field = logfmt::quote(&one_line(reasons));
        assert!(field.contains("secret-file=/run/secrets/redis)"), "{field}");
        // A password in a URI is still masked, and label text stays escaped.
        let field = logfmt::quote(&one_line("reading redis://:hunter2@queue/0 \u{1b}[2J"));
        assert!(
            !field.contains("hunter2") && field.contains("xxxxx"),
            "{field}"
        );
        assert!(field.contains("\\\\u{1b}[2J"), "{field}");
    }

    #[test]
    fn the_end_of_a_convergence_is_logged_once() {
        let row = |current: u64, running: u64| PlanRow {
            id: "x".into(),
            service: "web".into(),
            current,
            running,
            metric: None,
            desired: current,
            action: "none".into(),
            reasons: vec![],
            source: "labels".into(),
        };
        let mut mem = Memory {
            converging: Some((3, Instant::now())),
            ..Default::default()
        };
        // Tasks still starting: kept.
        log_converged(&mut mem, &row(3, 1));
        assert!(mem.converging.is_some());
        // All running at the count set: logged, then forgotten.
        log_converged(&mut mem, &row(3, 3));
        assert!(mem.converging.is_none());
        // Another count since (another writer, another update): forgotten.
        mem.converging = Some((3, Instant::now()));
        log_converged(&mut mem, &row(5, 3));
        assert!(mem.converging.is_none());
    }

    #[test]
    fn counts_set_by_a_peer_of_the_lease_are_not_fights() {
        let mem = |set: Option<u64>, peer: &[u64]| Memory {
            set_by_us: set,
            peer_counts: peer.to_vec(),
            ..Default::default()
        };
        // Nothing set by the agents (a standby, a fresh service): nothing to say.
        assert_eq!(classify_reset(&mem(None, &[4]), 2), Reset::None);
        assert_eq!(classify_reset(&mem(Some(2), &[]), 2), Reset::None);
        // The previous holder set 4 (its scale event is in the shared history) after
        // its last history write said 2: a peer's update.
        assert_eq!(classify_reset(&mem(Some(2), &[2, 4]), 4), Reset::Peer);
        // A count no agent of this lease set: another writer.
        assert_eq!(classify_reset(&mem(Some(2), &[2, 4]), 1), Reset::Other);
        assert_eq!(classify_reset(&mem(Some(2), &[]), 4), Reset::Other);
    }

    #[test]
    fn durations_are_checked() {
        let d = |v: &str| parse_duration_flag("interval", Some(v), DEFAULT_INTERVAL, MIN_INTERVAL);
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("2"), Ok(Duration::from_secs(2)));
        assert!(d("100ms").unwrap_err().contains("from 500ms"));
        assert!(d("soon").is_err());
        assert_eq!(
            parse_duration_flag("interval", None, DEFAULT_INTERVAL, MIN_INTERVAL),
            Ok(DEFAULT_INTERVAL)
        );
    }
}
