//! What the agent exposes on `--listen`: `/metrics` in the Prometheus text format
//! (prometheus-client) and `/healthz`.
//!
//! Series, all labelled by `service` (its name) where they are per service:
//! - `microscale_service_replicas` (gauge): the spec's replicas as last read;
//! - `microscale_service_desired_replicas` (gauge): what the last decision wanted;
//! - `microscale_service_metric` (gauge, also labelled `metric`: the metric's name,
//!   empty for `microscale.metric`): the last value read;
//! - `microscale_decisions_total` (counter, also `action`: none, scale up, scale
//!   down, hold, not scaled, error);
//! - `microscale_errors_total` (counter, also `kind`: metric, update, rule);
//! - `microscale_updates_total` (counter): updates the agent made;
//! - `microscale_update_duration_seconds` (histogram): from the update call to the
//!   engine's answer, retries included;
//! - `microscale_fights_total` (counter): resets of the replica count by another
//!   writer;
//! - `microscale_passes_total`, `microscale_pass_duration_seconds`,
//!   `microscale_last_pass_timestamp_seconds`, `microscale_lease_held` (0 or 1),
//!   `microscale_engine_errors_total`.
//!
//! `microscale_lease_held` is computed when it is scraped, from the end of this
//! agent's lease window ([`Telemetry::set_lease_window`]): it turns 0 the moment the
//! window closes, even while a renewal or a pass hangs on an engine that does not
//! answer.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `service="NAME"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    /// The service name.
    pub service: String,
}

/// `service="NAME", metric="NAME"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabel {
    /// The service name.
    pub service: String,
    /// The metric's name in the rule (empty for `microscale.metric`).
    pub metric: String,
}

/// `service="NAME", action="..."`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    /// The service name.
    pub service: String,
    /// The decision's action, as `plan` names it.
    pub action: String,
}

/// `service="NAME", kind="..."`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The service name.
    pub service: String,
    /// `metric`, `update` or `rule`.
    pub kind: String,
}

/// The agent's metrics and health, shared by the loop and the HTTP server.
pub struct Telemetry {
    registry: Registry,
    /// The spec's replicas.
    pub replicas: Family<ServiceLabel, Gauge>,
    /// The decision's desired replicas.
    pub desired: Family<ServiceLabel, Gauge>,
    /// The last metric values read.
    pub metric: Family<MetricLabel, Gauge<f64, AtomicU64>>,
    /// Decisions by action.
    pub decisions: Family<ActionLabel, Counter>,
    /// Errors by kind.
    pub errors: Family<KindLabel, Counter>,
    /// Updates made.
    pub updates: Family<ServiceLabel, Counter>,
    /// Update latency in seconds.
    pub update_seconds: Family<ServiceLabel, Histogram>,
    /// Fights (resets by another writer).
    pub fights: Family<ServiceLabel, Counter>,
    /// Passes done.
    pub passes: Counter,
    /// Pass duration in seconds.
    pub pass_seconds: Histogram,
    /// When the last pass ended (seconds since the epoch).
    pub last_pass: Gauge<f64, AtomicU64>,
    /// 1 while this agent's lease window is open; set at each scrape from
    /// [`Telemetry::set_lease_window`].
    lease_held: Gauge,
    /// When this agent's lease window ends (monotonic), if it holds one.
    lease_window: Mutex<Option<Instant>>,
    /// Passes that could not read the swarm.
    pub engine_errors: Counter,
    health: Mutex<Health>,
    /// Services with series, to drop those of removed services.
    known: Mutex<Vec<(String, Vec<String>)>>,
}

#[derive(Debug, Default)]
struct Health {
    last_ok: Option<Instant>,
    last_error: Option<String>,
    /// When the pass now running started (`None` between passes).
    running_since: Option<Instant>,
    /// Why the lease cannot be read or renewed, if so.
    lease_error: Option<String>,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
    .into_iter()
}

impl Telemetry {
    /// Registers every series.
    pub fn new() -> Telemetry {
        let mut registry = Registry::with_prefix("microscale");
        let t = Telemetry {
            replicas: Family::default(),
            desired: Family::default(),
            metric: Family::default(),
            decisions: Family::default(),
            errors: Family::default(),
            updates: Family::default(),
            update_seconds: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            fights: Family::default(),
            passes: Counter::default(),
            pass_seconds: Histogram::new(latency_buckets()),
            last_pass: Gauge::default(),
            lease_held: Gauge::default(),
            lease_window: Mutex::new(None),
            engine_errors: Counter::default(),
            health: Mutex::new(Health::default()),
            known: Mutex::new(vec![]),
            registry: Registry::default(),
        };
        registry.register(
            "service_replicas",
            "Replicas in the service's spec, as last read",
            t.replicas.clone(),
        );
        registry.register(
            "service_desired_replicas",
            "Replicas the last decision wanted",
            t.desired.clone(),
        );
        registry.register(
            "service_metric",
            "The last value read of a rule's metric",
            t.metric.clone(),
        );
        registry.register("decisions", "Decisions by action", t.decisions.clone());
        registry.register(
            "errors",
            "Errors by kind (metric, update, rule)",
            t.errors.clone(),
        );
        registry.register("updates", "Replica updates made", t.updates.clone());
        registry.register_with_unit(
            "update_duration",
            "Time from the update call to the engine's answer, retries included",
            prometheus_client::registry::Unit::Seconds,
            t.update_seconds.clone(),
        );
        registry.register(
            "fights",
            "Resets of the replica count by another writer",
            t.fights.clone(),
        );
        registry.register("passes", "Passes done", t.passes.clone());
        registry.register_with_unit(
            "pass_duration",
            "Time one pass took: read, decide, update",
            prometheus_client::registry::Unit::Seconds,
            t.pass_seconds.clone(),
        );
        registry.register(
            "last_pass_timestamp_seconds",
            "When the last pass ended, seconds since the epoch",
            t.last_pass.clone(),
        );
        registry.register(
            "lease_held",
            "1 while this agent's lease window is open (it holds the lease and may act), as of the scrape",
            t.lease_held.clone(),
        );
        registry.register(
            "engine_errors",
            "Passes that could not read the swarm",
            t.engine_errors.clone(),
        );
        Telemetry { registry, ..t }
    }

    /// Records the end of this agent's lease window (monotonic; `None`: it holds
    /// none). `microscale_lease_held` is 1 while now is before it.
    pub fn set_lease_window(&self, until: Option<Instant>) {
        *self.lease_window.lock().unwrap_or_else(|e| e.into_inner()) = until;
    }

    /// Whether the lease window is open now.
    pub fn lease_held_now(&self) -> bool {
        self.lease_window
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|v| Instant::now() < v)
    }

    /// The Prometheus text exposition (OpenMetrics text, `# EOF` last);
    /// `microscale_lease_held` as of now.
    pub fn encode(&self) -> String {
        self.lease_held.set(self.lease_held_now() as i64);
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records that a pass starts.
    pub fn pass_started(&self) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.running_since = Some(Instant::now());
    }

    /// Records a pass that read the swarm.
    pub fn pass_ok(&self) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.last_ok = Some(Instant::now());
        h.last_error = None;
        h.running_since = None;
    }

    /// Records whether the lease can be read and renewed (`None`: it can).
    pub fn lease_error(&self, error: Option<String>) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.lease_error = error;
    }

    /// Records a pass that could not read the swarm.
    pub fn pass_failed(&self, error: String) {
        self.engine_errors.inc();
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.last_error = Some(error);
        h.running_since = None;
    }

    /// `/healthz`: healthy when a pass read the swarm within `stale`, the last pass
    /// did not fail, no pass has been running for longer than `stale / 3` (an
    /// engine or a metric source that does not answer), and the lease can be read.
    /// Returns `(healthy, text)`.
    pub fn health(&self, stale: Duration) -> (bool, String) {
        let h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(since) = h.running_since
            && since.elapsed() > stale / 3
        {
            return (
                false,
                format!(
                    "unhealthy: the pass running now started {}s ago: the engine or a metric source is not answering\n",
                    since.elapsed().as_secs()
                ),
            );
        }
        if let Some(e) = &h.lease_error {
            return (
                false,
                format!("unhealthy: the lease cannot be read or renewed: {e}\n"),
            );
        }
        match (&h.last_error, h.last_ok) {
            (Some(e), _) => (false, format!("unhealthy: {e}\n")),
            (None, None) => (false, "starting: no pass has read the swarm yet\n".into()),
            (None, Some(at)) if at.elapsed() > stale => (
                false,
                format!(
                    "unhealthy: the last pass that read the swarm was {}s ago\n",
                    at.elapsed().as_secs()
                ),
            ),
            (None, Some(_)) => (true, "ok\n".into()),
        }
    }

    /// Drops the series of services that are gone; `present` are the names (and
    /// their metric names) of the services seen in this pass.
    pub fn retain(&self, present: Vec<(String, Vec<String>)>) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for (service, metrics) in known.iter() {
            if present.iter().any(|(s, _)| s == service) {
                continue;
            }
            let label = ServiceLabel {
                service: service.clone(),
            };
            self.replicas.remove(&label);
            self.desired.remove(&label);
            for m in metrics {
                self.metric.remove(&MetricLabel {
                    service: service.clone(),
                    metric: m.clone(),
                });
            }
        }
        *known = present;
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_exposed_and_removed_services_dropped() {
        let t = Telemetry::new();
        let web = ServiceLabel {
            service: "web".into(),
        };
        t.replicas.get_or_create(&web).set(3);
        t.metric
            .get_or_create(&MetricLabel {
                service: "web".into(),
                metric: String::new(),
            })
            .set(42.5);
        t.decisions
            .get_or_create(&ActionLabel {
                service: "web".into(),
                action: "scale up".into(),
            })
            .inc();
        t.update_seconds.get_or_create(&web).observe(0.02);
        t.retain(vec![("web".into(), vec![String::new()])]);
        let text = t.encode();
        assert!(
            text.contains("microscale_service_replicas{service=\"web\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("microscale_service_metric{service=\"web\",metric=\"\"} 42.5"),
            "{text}"
        );
        assert!(
            text.contains("microscale_decisions_total{service=\"web\",action=\"scale up\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("microscale_update_duration_seconds_count{service=\"web\"} 1"),
            "{text}"
        );
        t.retain(vec![]);
        let text = t.encode();
        assert!(
            !text.contains("microscale_service_replicas{service=\"web\"}"),
            "{text}"
        );
    }

    #[test]
    fn lease_held_follows_the_window_at_scrape_time() {
        let t = Telemetry::new();
        let held = |t: &Telemetry| t.encode().lines().any(|l| l == "microscale_lease_held 1");
        assert!(!held(&t), "no window");
        t.set_lease_window(Some(Instant::now() + Duration::from_millis(300)));
        assert!(held(&t));
        // Nothing else happens (a renewal hangs): the window closes on its own.
        std::thread::sleep(Duration::from_millis(350));
        let text = t.encode();
        assert!(
            text.lines().any(|l| l == "microscale_lease_held 0"),
            "{text}"
        );
        t.set_lease_window(Some(Instant::now() + Duration::from_secs(60)));
        assert!(held(&t));
        t.set_lease_window(None);
        assert!(!held(&t));
    }

    #[test]
    fn health_needs_a_recent_good_pass() {
        let t = Telemetry::new();
        assert!(!t.health(Duration::from_secs(60)).0);
        t.pass_ok();
        assert_eq!(t.health(Duration::from_secs(60)), (true, "ok\n".into()));
        t.pass_failed("Cannot connect".into());
        let (ok, text) = t.health(Duration::from_secs(60));
        assert!(!ok && text.contains("Cannot connect"), "{text}");
        t.pass_ok();
        assert!(!t.health(Duration::ZERO).0, "stale");
    }
}
