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

/// How much one scaling policy allows per period (HPA's `Pods` and `Percent` policy types).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum StepAmount {
    /// At most this many replicas added (removed) per period (`4`); ≥ 1.
    Replicas(u64),
    /// At most this percent of the count at the start of the period (`100%`); > 0.
    /// Up: `ceil(start × (1 + p/100))`; down: `trunc(start × (1 − p/100))`, as HPA.
    Percent(f64),
}

/// One scaling policy of one direction: `max-step` `4/15s` or `100%/1m`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Step {
    /// How much per period.
    pub amount: StepAmount,
    /// The period (`/15s`; else `scale-up.period` / `scale-down.period`, default 60 s).
    pub period: Duration,
}

/// Which policy wins when a direction has several (HPA's `selectPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Select {
    /// The one that allows the largest change (default; HPA `Max`).
    #[serde(rename = "max")]
    Max,
    /// The one that allows the smallest change (HPA `Min`).
    #[serde(rename = "min")]
    Min,
    /// No change at all in this direction (HPA `Disabled`).
    #[serde(rename = "disabled")]
    Disabled,
}

/// How fast one direction may move.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// Stabilisation window: act on the highest (scale-down) or lowest (scale-up)
    /// recommendation seen inside it. Scale-down default 5 minutes, scale-up 0.
    pub window: Duration,
    /// The policies (`max-step`); empty: unlimited. Scale-up default: HPA's
    /// `+4 replicas` or `+100 %` per 15 s, whichever allows more; scale-down default:
    /// unlimited.
    pub steps: Vec<Step>,
    /// Which policy wins (default [`Select::Max`]).
    pub select: Select,
    /// Tolerance of this direction, a fraction in `[0, 1)` (default 0.1): no change
    /// while the usage ratio is within `1 − down ≤ ratio ≤ 1 + up`.
    pub tolerance: f64,
}

impl Policy {
    /// HPA's default scale-up: `+4` replicas or `+100 %` per 15 s, the larger; no window.
    pub fn default_up() -> Policy {
        Policy {
            window: Duration::ZERO,
            steps: vec![
                Step {
                    amount: StepAmount::Replicas(4),
                    period: Duration::from_secs(15),
                },
                Step {
                    amount: StepAmount::Percent(100.0),
                    period: Duration::from_secs(15),
                },
            ],
            select: Select::Max,
            tolerance: 0.1,
        }
    }

    /// HPA's default scale-down: a 5-minute window, no step limit.
    pub fn default_down() -> Policy {
        Policy {
            window: Duration::from_secs(300),
            steps: vec![],
            select: Select::Max,
            tolerance: 0.1,
        }
    }
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
    /// Scale-up policy (window 0, HPA's default step limit, tolerance 0.1).
    pub scale_up: Policy,
    /// Scale-down policy (window 5 minutes, no step limit, tolerance 0.1).
    pub scale_down: Policy,
    /// Scale from zero (or from `idle`) only when a metric is above this value.
    pub activation: Option<f64>,
    /// `microscale.idle` (KEDA `idleReplicaCount`): replicas while no metric is above
    /// its activation; below `min`. `None`: no idle state.
    pub idle: Option<u64>,
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
            scale_up: Policy::default_up(),
            scale_down: Policy::default_down(),
            activation: None,
            idle: None,
            fallback: None,
            priority: 1000,
        }
    }
}
