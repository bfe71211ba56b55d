//! The typed scaling rule of one service, as parsed from its labels (`microscale.*`,
//! `com.microscaling.*`) or from a rules file. Parsing lives in [`super`]; the
//! decision core ([`crate::decide`]) consumes these types.

use std::time::Duration;

use serde::Serialize;

/// What one replica can carry, for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Target {
    /// Metric value one replica can carry (queue length, requests per second):
    /// `desired = ceil(metric / target)`. Always > 0.
    PerReplica(f64),
    /// Target utilisation in percent (engine CPU or memory): `desired = ceil(current ×
    /// used / target)`, where the metric is the average utilisation of the running
    /// tasks in percent. Always > 0.
    Utilization(f64),
}

/// One metric of a rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricRule {
    /// `""` for `microscale.metric`, `NAME` for `microscale.metric.NAME`.
    pub name: String,
    /// The metric source URI (`redis://…`, `prometheus://…`); its syntax is checked by
    /// the metric sources.
    pub source: String,
    /// What one replica can carry.
    pub target: Target,
}

/// How fast one direction may move.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Policy {
    /// Stabilisation window: act on the highest (scale-down) or lowest (scale-up)
    /// recommendation seen inside it. Scale-down default 5 minutes, scale-up 0.
    pub window: Duration,
    /// Most replicas added (or removed) per `period`; `None`: unlimited.
    pub max_step: Option<u64>,
    /// The period `max_step` applies to (default 60 s).
    pub period: Duration,
}

/// Replicas to run after repeated metric failures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fallback {
    /// Replicas to run.
    pub replicas: u64,
    /// After this many consecutive failed reads of any metric of the rule (default 3).
    pub after_failures: u32,
}

/// The scaling rule of one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// Fewest replicas (default 1; 0 allowed).
    pub min: u64,
    /// Most replicas (required; ≥ min).
    pub max: u64,
    /// The metrics; the largest proposal wins. May be empty (legacy labels without
    /// a metric): then only the bounds and priority apply.
    pub metrics: Vec<MetricRule>,
    /// No change while `|proposal / current − 1| ≤ tolerance` (default 0.1).
    pub tolerance: f64,
    /// Scale-up policy (window default 0).
    pub scale_up: Policy,
    /// Scale-down policy (window default 5 minutes).
    pub scale_down: Policy,
    /// Scale from zero only when a metric is above this value.
    pub activation: Option<f64>,
    /// Replicas after repeated metric failures.
    pub fallback: Option<Fallback>,
    /// Priority when a capacity budget is shared: 1 is the highest (default 1000).
    pub priority: u32,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            min: 1,
            max: 1,
            metrics: vec![],
            tolerance: 0.1,
            scale_up: Policy {
                window: Duration::ZERO,
                max_step: None,
                period: Duration::from_secs(60),
            },
            scale_down: Policy {
                window: Duration::from_secs(300),
                max_step: None,
                period: Duration::from_secs(60),
            },
            activation: None,
            fallback: None,
            priority: 1000,
        }
    }
}
