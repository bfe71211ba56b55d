//! The pure decision core: one service's [`Rule`], what was observed of it and its
//! [`History`] in, one [`Decision`] out; and [`allocate`], which shares a replica
//! budget between services by priority (Microscaling).
//!
//! Nothing here does I/O or reads a clock. Time is `now: f64`, **seconds since the
//! Unix epoch** (UTC; what [`crate::edge::clock::wall_clock`] returns). Callers that keep a
//! [`History`] across restarts or hand it to another agent must use that epoch, as
//! reasons print the times at which windows end; every time handed to one
//! [`History`] ([`Observation::converging_since`] included) must use it, and must be
//! finite. Durations of the rule ([`Policy`] windows and step periods) are compared
//! with differences of these times.
//!
//! # API
//!
//! - [`decide`]`(rule, obs, history, now, grace) -> Decision`: what the service
//!   should run now. `history` belongs to the caller (one per service) and is
//!   updated: the recommendation (stabilisation windows), the scale event when the
//!   decision scales (`max_step` per period; `decide` assumes the decision is
//!   applied, so a dry run should pass a clone), and the consecutive failure count.
//! - [`allocate`]`(capacity, wants) -> Vec<Grant>`: shares `capacity` replicas
//!   between services: minimums first, then by priority (1 = highest).
//!
//! # Semantics of `decide` (Kubernetes HPA, KEDA, Microscaling)
//!
//! In this order; `current` is the spec's desired replicas ([`Observation::replicas`]):
//!
//! 1. Global and global-job services: [`Action::NotScaled`]. Replicated jobs:
//!    [`Action::NotScaled`], but the metric proposal is computed and reported in the
//!    reasons. History is not touched for any of them.
//! 2. The consecutive-failure count is updated: +1 when any metric of the rule failed
//!    (or was not read), reset to 0 when all were read.
//! 3. [`Action::Hold`] (no decision, `desired = current`) while an update is in
//!    progress or paused (`updating`, `paused`, `rolling back`, `rollback paused`;
//!    any state other than those, `rolled back`, `completed` or empty also holds),
//!    and while the service has not converged (`running != replicas`), whether
//!    within `grace` (`converging …`) or beyond it (`not converged …`: the reason
//!    says the grace has run out, the operator has to look). One exception: when
//!    the placement cannot take more than `running` tasks (`replicas > cap` and
//!    `running ≥ cap`), the service has converged as far as it can, and the decision
//!    goes on (and brings `desired` down to the cap).
//! 4. Proposal per metric: per-replica target `ceil(value / target)`; utilisation
//!    target `ceil(n × value / target)` with `n` = running tasks, or the spec's
//!    replicas when none run (the value is the average utilisation, in percent, of
//!    the running tasks). `ceil` forgives a relative float error of 1e-9 (so
//!    `1.1 / 0.1` is 11, not 12). A value that is not finite or is negative is a
//!    failed read; so is a metric of the rule without a reading.
//!    A per-task reading that measured only some running tasks ([`Coverage`], the
//!    engine source when some node's agent did not answer): for a utilisation
//!    target the proposal is `ceil(measured × value / target)` and the tolerance's
//!    ratio is `measured × value / (target × n)`, i.e. the tasks not measured count
//!    as 0 % (HPA's missing pods on a scale-up): a scale-up only when the measured
//!    tasks alone justify it. The reason names the nodes of the tasks not measured.
//!    No task measured at all is a failed read.
//! 5. Tolerance (HPA, per metric, not when `current` is 0): the metric proposes
//!    `current` while its raw usage ratio (`value / (target × n)`, or
//!    `value / target` for utilisation) is within `1 − scale_down.tolerance ≤ ratio
//!    ≤ 1 + scale_up.tolerance`, both ends inclusive. The largest proposal wins (the
//!    first one on a tie).
//! 6. An operator's 0: `current` 0 while `min > 0` (and `idle` is not 0) was set by
//!    hand: [`Action::Hold`] at 0, and the reason says how to resume.
//! 7. Activation (KEDA): when `current` is 0, scale from zero only when some value is
//!    above `activation` (above 0 without one), to at least 1 (the reason says so).
//!    When no value is above it and all were read, the proposal is `idle` (or 0) and
//!    the lower bound is `idle` instead of `min` (KEDA `idleReplicaCount`); with
//!    neither `idle` nor `min` 0, `min` applies.
//! 8. No readable metric: hold, unless a fallback is declared and the consecutive
//!    failures reached `after_failures`: the proposal is then the fallback's
//!    replicas (no tolerance; bounds, windows, steps and placement still apply).
//!    A rule without metrics proposes `current` (only the bounds apply).
//! 9. Partial data: when some metric failed, or measured only some of the running
//!    tasks, and the proposal is below `current`, hold (HPA would count missing pods
//!    at 100 % and could still scale down; we never do on partial data). Scaling up
//!    on the readable metrics is allowed.
//! 10. Stabilisation (HPA): a history without recommendations is first seeded with
//!     `current` at `now` (first sight: the first scale-down waits one whole
//!     window); the proposal is recorded; the result is `current` clamped to
//!     `[lowest recommendation in the scale-up window, highest in the scale-down
//!     window]` (the new one included), so it never moves past `current` in the
//!     wrong direction. The reason gives the time the holding recommendations leave.
//! 11. Bounds: clamped to `[min, max]` (`[idle, max]` while idle).
//!     Going idle is one move: the scale-down steps do not apply to it (KEDA sets
//!     `idleReplicaCount` itself, past the HPA), so no count between `idle` and
//!     `min` is ever proposed; the scale-down window still does.
//! 12. Steps (HPA's policies, [`crate::rules::model::Step`]): per direction, each
//!     policy allows `start ± n` or `start × (1 ± p %)` (up rounded up, down
//!     truncated), `start = current − added + removed` within its period; `select`
//!     takes the most (max) or least (min) permissive; never past `current` in the
//!     wrong direction; the bounds win over the step (a service below `min` goes to
//!     `min`). No scale-up policy declared: HPA's default, `+4` or `+100 %` per 15 s.
//! 13. Placement: never more than [`Placement::cap`] (tasks that cannot be placed
//!     never run, and the service would never converge). When the cap is below
//!     `min`, hold instead: placement never takes a service below its minimum (a
//!     constraint typo with 0 eligible nodes must not propose removing every task).
//! 14. A last guard: with any failed read (and no fallback in force) or any reading
//!     over only some tasks, `desired` is never below `current` (bounds and
//!     placement do not shrink a service on partial data either).
//!
//! So `min ≤ desired ≤ max` (`idle ≤ desired` while idle) whenever the action is [`Action::ScaleUp`],
//! [`Action::ScaleDown`] or [`Action::None`]; [`Action::Hold`] and [`Action::NotScaled`] keep `current`, which
//! may be out of bounds.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::metrics::Coverage;

use crate::rules::model::{Policy, Rule, Select, StepAmount, Target};
use crate::swarm::service::Mode;

/// Most recommendations and most scale events a [`History`] keeps (each); beyond
/// that, the oldest are forgotten even inside their window. Deciding every 15 s, a
/// 5-minute window needs 20.
pub const HISTORY_LIMIT: usize = 1024;

/// One metric read.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The metric's name: `""` for the default metric (`microscale.metric`), `NAME`
    /// for `microscale.metric.NAME`; matched against [`crate::rules::model::MetricRule::name`].
    pub name: String,
    /// The value, in the metric's unit (percent for a utilisation target); 0 is a
    /// real zero. `Err` carries why the read failed, in operator terms.
    pub value: Result<f64, String>,
    /// For a per-task metric (the engine source, `engine://cpu`): which of the
    /// service's running tasks the value (their average) covers. `None`: the value
    /// covers the whole service, as for every other source.
    pub coverage: Option<Coverage>,
}

/// How many tasks the placement constraints allow (`Placement.MaxReplicas`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// `Placement.MaxReplicas`: most tasks per node.
    pub max_per_node: u64,
    /// Nodes eligible for the service's tasks.
    pub nodes: u64,
}

impl Placement {
    /// Most tasks that can be placed: `max_per_node × nodes` (replicas; saturating).
    pub fn cap(&self) -> u64 {
        self.max_per_node.saturating_mul(self.nodes)
    }
}

/// What was observed of one service at `now`.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The service mode.
    pub mode: Mode,
    /// The spec's desired replicas (`Spec.Mode.Replicated.Replicas`): the decision's
    /// `current`.
    pub replicas: u64,
    /// Running tasks.
    pub running: u64,
    /// The update state as `status` names it: `updating`, `paused`, `rolling back`,
    /// `rollback paused` block decisions; `rolled back`, `completed` or `None` do not.
    pub update: Option<String>,
    /// When `running != replicas` was first seen (seconds, the caller's epoch); `None`
    /// is taken as `now`.
    pub converging_since: Option<f64>,
    /// `Placement.MaxReplicas` and the eligible nodes; `None`: unlimited.
    pub placement: Option<Placement>,
    /// The metric reads; readings for names the rule does not have are ignored, the
    /// first reading of a name counts.
    pub readings: Vec<Reading>,
}

/// One recommendation remembered for the stabilisation windows. Serialized as the
/// pair `[at, replicas]` (compact: the agent keeps histories in the swarm).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "(f64, u64)", into = "(f64, u64)")]
pub struct Recommendation {
    /// When (seconds since the Unix epoch, as every time handed to [`decide`]).
    pub at: f64,
    /// The proposal at that time (replicas), before windows, bounds and steps.
    pub replicas: u64,
}

impl From<(f64, u64)> for Recommendation {
    fn from((at, replicas): (f64, u64)) -> Self {
        Recommendation { at, replicas }
    }
}

impl From<Recommendation> for (f64, u64) {
    fn from(r: Recommendation) -> Self {
        (r.at, r.replicas)
    }
}

/// One scale event remembered for the step policies (`max-step`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScaleEvent {
    /// When (seconds since the Unix epoch).
    pub at: f64,
    /// Replicas before.
    pub from: u64,
    /// Replicas after.
    pub to: u64,
}

/// What [`decide`] remembers of one service between calls; owned by the caller,
/// updated by [`decide`]. Bounded: entries older than the rule's longest window or
/// step period are dropped, and at most [`HISTORY_LIMIT`] of each kind are kept.
///
/// Serialisable (serde) with stable field names, `recommendations` (`[[at,
/// replicas], ...]`), `events` (`[{at, from, to}]`) and `failures`, so that callers
/// can keep it across restarts (the agent keeps it in the swarm:
/// `crate::store::history`); every field may be missing (then empty or 0).
///
/// First sight: a history without recommendations is seeded by [`decide`] itself
/// with the current count at `now` (as HPA does), so a new service, or a new agent
/// without a stored history, waits one whole scale-down window before scaling down.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Recommendations, oldest first.
    #[serde(default)]
    recommendations: VecDeque<Recommendation>,
    /// Scale events, oldest first.
    #[serde(default)]
    events: VecDeque<ScaleEvent>,
    /// Consecutive decisions in which some metric read failed.
    #[serde(default)]
    failures: u32,
}

// The read accessors are the API of the history store and `rules history`.
#[cfg_attr(not(test), allow(dead_code))]
impl History {
    /// An empty history (a service seen for the first time; [`decide`] seeds it).
    pub fn new() -> History {
        History::default()
    }

    /// Consecutive decisions in which some metric read failed (`run` reports it).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The recommendations kept for the windows, oldest first.
    pub fn recommendations(&self) -> &VecDeque<Recommendation> {
        &self.recommendations
    }

    /// The recommendations, to compact or extend them (`crate::store::history`).
    pub fn recommendations_mut(&mut self) -> &mut VecDeque<Recommendation> {
        &mut self.recommendations
    }

    /// The scale events kept for the step policies, oldest first.
    pub fn events(&self) -> &VecDeque<ScaleEvent> {
        &self.events
    }
}

/// What the decision does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    /// Decided: no change (`desired == current`).
    #[serde(rename = "none")]
    None,
    /// Decided: more replicas (`desired > current`).
    #[serde(rename = "scale up")]
    ScaleUp,
    /// Decided: fewer replicas (`desired < current`).
    #[serde(rename = "scale down")]
    ScaleDown,
    /// No decision (update in progress, not converged, unreadable metrics):
    /// `desired == current`.
    #[serde(rename = "hold")]
    Hold,
    /// The mode is not scaled (global, jobs): `desired == current`.
    #[serde(rename = "not scaled")]
    NotScaled,
}

/// The metric whose proposal won, for display.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WinningMetric {
    /// `""` for the default metric.
    pub name: String,
    /// The value read (percent for a utilisation target).
    pub value: f64,
    /// The rule's target for it.
    pub target: Target,
}

/// One service's decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The spec's replicas when observed.
    pub current: u64,
    /// Replicas to run (equal to `current` unless scaling).
    pub desired: u64,
    /// What to do.
    pub action: Action,
    /// The winning metric, when one was readable.
    pub metric: Option<WinningMetric>,
    /// Why, in order, in operator terms (`metric 130 / target 10 → 13`,
    /// `capped by max 12`, …).
    pub reasons: Vec<String>,
}

/// The rule's metrics against the readings.
struct Evaluation {
    /// The largest proposal (replicas) of the readable metrics; `None` when none was.
    proposal: Option<u64>,
    /// Some readable value is above the activation threshold.
    active: bool,
    /// How many metrics failed.
    failed: usize,
    winner: Option<WinningMetric>,
    /// One line per metric, in rule order.
    reasons: Vec<String>,
    /// Index in `reasons` of the last failed metric's line.
    last_failed: Option<usize>,
    /// Index in `reasons` of the last line of a metric that measured only some of
    /// the running tasks ([`Coverage::partial`]).
    last_partial: Option<usize>,
}

/// `metric` or `metric "NAME"`.
fn label(name: &str) -> String {
    if name.is_empty() {
        "metric".to_string()
    } else {
        format!("metric {name:?}")
    }
}

/// Control characters of a read error become spaces (one line per reason).
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A number for people: integers without a fraction, others with at most 3 decimals.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return format!("{x:.0}");
    }
    if x.is_finite() && x.abs() >= 1e15 {
        // 1e308 is not written with 309 digits.
        return format!("{x:.3e}");
    }
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "0" || s == "-0" {
        format!("{x}")
    } else {
        s.to_string()
    }
}

/// `1 replica`, `2 replicas`.
fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("{n} {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `5m`, `1m30s`, `1h`, `0s`; under a second, `250ms`.
fn span(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 && d.subsec_millis() > 0 {
        return format!("{}ms", d.subsec_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if s > 0 || out.is_empty() {
        out += &format!("{s}s");
    }
    out
}

/// Whole seconds (not below 0, NaN as 0) as a [`Duration`], for display.
fn secs(x: f64) -> Duration {
    if x.is_finite() && x > 0.0 {
        Duration::from_secs(x.min(1e12) as u64)
    } else {
        Duration::ZERO
    }
}

/// Whether time `at` is inside the `span` seconds that end at `now` (`now − span`
/// excluded, later times included).
fn recent(at: f64, now: f64, span: f64) -> bool {
    at > now - span
}

/// `ceil(x)` forgiving a relative float error of 1e-9; saturating, `x ≥ 0`.
fn ceil(x: f64) -> u64 {
    // A ratio can overflow to infinity (a huge metric over a tiny target): that is
    // "as many as allowed", never 0. NaN cannot come from finite inputs over a
    // positive target, but is read as 0 rather than trusted.
    if x.is_nan() {
        return 0;
    }
    if x >= u64::MAX as f64 {
        return u64::MAX;
    }
    (x - x.abs() * 1e-9).ceil().max(0.0) as u64
}

/// The proposal (replicas) of one metric value, `None` for an unusable target.
fn proposal(target: Target, value: f64, base: u64) -> Option<u64> {
    match target {
        Target::PerReplica(t) if t > 0.0 && t.is_finite() => Some(ceil(value / t)),
        Target::Utilization(t) if t > 0.0 && t.is_finite() => Some(ceil(base as f64 * value / t)),
        _ => None,
    }
}

/// The usage ratio of one metric value (1 = on target): `value / (target × base)`
/// per replica, `value / target` for utilisation; `None` for an unusable target.
fn usage_ratio(target: Target, value: f64, base: u64) -> Option<f64> {
    match target {
        Target::PerReplica(t) if t > 0.0 && t.is_finite() && base > 0 => {
            Some(value / (t * base as f64))
        }
        Target::Utilization(t) if t > 0.0 && t.is_finite() => Some(value / t),
        _ => None,
    }
}

/// Each metric's proposal (replicas), the tolerance applied per metric, against
/// `obs.replicas` as `current`.
fn evaluate(rule: &Rule, obs: &Observation) -> Evaluation {
    let current = obs.replicas;
    let threshold = rule.activation.unwrap_or(0.0);
    // Utilisation is the average over the running tasks.
    let (base, base_name) = if obs.running > 0 {
        (obs.running, "running")
    } else {
        (obs.replicas, "replicas")
    };
    let mut ev = Evaluation {
        proposal: None,
        active: false,
        failed: 0,
        winner: None,
        reasons: vec![],
        last_failed: None,
        last_partial: None,
    };
    for metric in &rule.metrics {
        let who = label(&metric.name);
        let read = obs.readings.iter().find(|r| r.name == metric.name);
        // Some running tasks not measured: the value is the measured tasks' average.
        let partial = read
            .and_then(|r| r.coverage.as_ref())
            .filter(|c| c.partial());
        let value = match read.map(|r| &r.value) {
            None => Err("not read".to_string()),
            Some(Err(e)) => Err(one_line(e)),
            Some(Ok(v)) if !v.is_finite() => Err(format!("value {v} is not a number")),
            Some(Ok(v)) if *v < 0.0 => Err(format!("value {} is negative", num(*v))),
            Some(Ok(_)) if partial.is_some_and(|c| c.measured == 0) => Err(format!(
                "no running task measured ({})",
                partial.map(Coverage::text).unwrap_or_default()
            )),
            Some(Ok(v)) => Ok(*v),
        };
        // A utilisation over some of the tasks: the tasks not measured count as 0 %
        // (HPA's missing pods on a scale-up), so the proposal is what the measured
        // tasks alone justify; any scale-down is held later (step 9).
        let result = value.and_then(|v| {
            let p = match (metric.target, partial) {
                (Target::Utilization(_), Some(c)) => proposal(metric.target, v, c.measured),
                _ => proposal(metric.target, v, base),
            };
            p.map(|p| (v, p))
                .ok_or_else(|| "its target is not above 0".to_string())
        });
        match result {
            Err(e) => {
                ev.failed += 1;
                ev.last_failed = Some(ev.reasons.len());
                ev.reasons.push(format!("{who} unreadable: {e}"));
            }
            Ok((v, raw)) => {
                let mut line = match (metric.target, partial) {
                    (Target::PerReplica(t), None) => {
                        format!("{who} {} / target {} → {raw}", num(v), num(t))
                    }
                    (Target::PerReplica(t), Some(c)) => format!(
                        "{who} {} / target {} ({}) → {raw}",
                        num(v),
                        num(t),
                        c.text()
                    ),
                    (Target::Utilization(t), None) => format!(
                        "{who} {}% / target {}% × {base} {base_name} → {raw}",
                        num(v),
                        num(t)
                    ),
                    (Target::Utilization(t), Some(c)) => format!(
                        "{who} {}% / target {}% × {} measured ({}, counted as 0% for a scale-up) → {raw}",
                        num(v),
                        num(t),
                        c.measured,
                        c.text()
                    ),
                };
                // HPA's tolerance: on the raw usage ratio of this metric, both ends
                // inclusive; not when scaling from 0. Over some of the tasks, the
                // ratio counts the others at 0 % (HPA's new usage ratio).
                let ratio = match (metric.target, partial) {
                    (Target::Utilization(_), Some(c)) if base > 0 => {
                        usage_ratio(metric.target, v, base)
                            .map(|r| r * c.measured as f64 / base as f64)
                    }
                    _ => usage_ratio(metric.target, v, base),
                };
                let mut p = raw;
                if current > 0
                    && let Some(ratio) = ratio
                {
                    let (lo, hi) = (
                        1.0 - rule.scale_down.tolerance,
                        1.0 + rule.scale_up.tolerance,
                    );
                    if lo <= ratio && ratio <= hi {
                        p = current;
                        if raw != current {
                            line += &format!(
                                ", but ratio {} is within tolerance {}..{}: {current}",
                                num(ratio),
                                num(lo),
                                num(hi)
                            );
                        }
                    }
                }
                if partial.is_some() {
                    ev.last_partial = Some(ev.reasons.len());
                }
                ev.reasons.push(line);
                if v > threshold {
                    ev.active = true;
                }
                if ev.proposal.is_none_or(|best| p > best) {
                    ev.proposal = Some(p);
                    ev.winner = Some(WinningMetric {
                        name: metric.name.clone(),
                        value: v,
                        target: metric.target,
                    });
                }
            }
        }
    }
    ev
}

/// Why an update state blocks decisions; `None` when it does not.
fn update_block(state: Option<&str>) -> Option<String> {
    match state? {
        "" | "completed" | "rolled back" => None,
        "updating" => Some("rolling update in progress: no decision".into()),
        "paused" => Some("rolling update paused: no decision".into()),
        "rolling back" => Some("rollback in progress: no decision".into()),
        "rollback paused" => Some("rollback paused: no decision".into()),
        other => Some(format!("update state {:?}: no decision", one_line(other))),
    }
}

/// Decides what one service should run at `now`.
///
/// - `rule`: the service's rule; `obs`: what was observed at `now`;
/// - `history`: the service's history, updated (see [`History`]);
/// - `now`: seconds since the caller's epoch (see the module docs);
/// - `grace`: seconds a service may take to converge before the hold says so
///   (`converging …` within it, `not converged …` beyond it; both hold).
///
/// The steps, in order, are in the module documentation.
pub fn decide(
    rule: &Rule,
    obs: &Observation,
    history: &mut History,
    now: f64,
    grace: f64,
) -> Decision {
    let current = obs.replicas;
    let mut d = Decision {
        current,
        desired: current,
        action: Action::Hold,
        metric: None,
        reasons: vec![],
    };
    match obs.mode {
        Mode::Global | Mode::GlobalJob => {
            d.action = Action::NotScaled;
            d.reasons.push(match obs.mode {
                Mode::Global => "global service: not scaled".into(),
                _ => "global job: not scaled".into(),
            });
            return d;
        }
        Mode::ReplicatedJob => {
            let ev = evaluate(rule, obs);
            d.reasons = ev.reasons;
            d.metric = ev.winner;
            if let Some(p) = ev.proposal {
                let bounded = p.clamp(rule.min, rule.max.max(rule.min));
                if bounded != p {
                    d.reasons.push(format!(
                        "within bounds {}..{}: {bounded}",
                        rule.min, rule.max
                    ));
                }
            }
            d.action = Action::NotScaled;
            d.reasons
                .push("replicated job: reported, not scaled".into());
            return d;
        }
        Mode::Replicated => {}
    }

    let ev = evaluate(rule, obs);
    history.failures = if ev.failed > 0 {
        history.failures.saturating_add(1)
    } else {
        0
    };
    d.metric = ev.winner.clone();
    d.reasons = ev.reasons.clone();

    if let Some(why) = update_block(obs.update.as_deref()) {
        d.reasons.push(why);
        return d;
    }

    let cap = obs.placement.map(|p| p.cap());
    let placed_all = cap.is_some_and(|c| obs.replicas > c && obs.running >= c);
    if obs.running != obs.replicas && !placed_all {
        let since = obs.converging_since.unwrap_or(now);
        let elapsed = (now - since).max(0.0);
        let took = span(secs(elapsed));
        d.reasons.push(if elapsed <= grace {
            format!(
                "converging ({}/{} running for {took}): no decision",
                obs.running, obs.replicas
            )
        } else {
            format!(
                "not converged ({}/{} running for {took}, grace {}): no decision",
                obs.running,
                obs.replicas,
                span(secs(grace))
            )
        });
        return d;
    }

    // Holds because of failed reads: the last failed metric says so.
    let hold_on_failure = |d: &mut Decision, note: &str| {
        let line = format!(": holding {current}{note}");
        match ev.last_failed.or(ev.last_partial) {
            Some(i) => d.reasons[i] += &line,
            None => d.reasons.push(line[2..].to_string()),
        }
        d.desired = current;
        d.action = Action::Hold;
    };

    // An operator's 0: a service scaled to 0 by hand while its rule keeps a minimum
    // (HPA: "scaling is disabled since the replica count of the target is zero").
    if current == 0 && rule.min > 0 && rule.idle != Some(0) {
        d.reasons.push(format!(
            "0 replicas while min is {}: paused by hand, holding 0; to resume, scale it (docker microscale scale SERVICE={}), or set microscale.idle=0 to let activation wake it",
            rule.min, rule.min
        ));
        return d;
    }

    let activation = num(rule.activation.unwrap_or(0.0));
    // `idle`: no metric above its activation sends the service below `min`.
    let mut idling = false;
    let mut fallback_in_force = false;
    let raw = if rule.metrics.is_empty() {
        d.reasons.push("no metric: bounds only".into());
        current
    } else if let Some(p) = ev.proposal {
        if current == 0 {
            if ev.active {
                d.reasons.push(if p == 0 {
                    format!("a metric is above activation {activation}: 0 → 1")
                } else {
                    format!("a metric is above activation {activation}: scaling from 0")
                });
                p.max(1)
            } else {
                idling = true;
                d.reasons.push(format!(
                    "no metric above activation {activation}: staying at 0"
                ));
                0
            }
        } else if !ev.active && ev.failed == 0 {
            idling = true;
            let floor = rule.idle.unwrap_or(0);
            // Idle always says so: it lowers the bound below min.
            if p != floor || rule.idle.is_some() {
                d.reasons.push(match rule.idle {
                    Some(i) => format!("no metric above activation {activation}: idle {i}"),
                    None => format!("no metric above activation {activation} → 0"),
                });
            }
            floor
        } else {
            p
        }
    } else {
        match rule.fallback {
            Some(fb) if history.failures >= fb.after_failures => {
                fallback_in_force = true;
                d.reasons.push(format!(
                    "{}: fallback {}",
                    plural(history.failures.into(), "failed read"),
                    plural(fb.replicas, "replica")
                ));
                fb.replicas
            }
            fallback => {
                hold_on_failure(&mut d, "");
                if let Some(fb) = fallback {
                    d.reasons.push(format!(
                        "fallback {} after {} ({} so far)",
                        plural(fb.replicas, "replica"),
                        plural(fb.after_failures.into(), "failed read"),
                        history.failures
                    ));
                }
                return d;
            }
        }
    };

    let p = raw;
    let partial = (ev.failed > 0 && !fallback_in_force) || ev.last_partial.is_some();
    if partial && p < current {
        hold_on_failure(&mut d, " (no scale-down on partial data)");
        return d;
    }

    // Stabilisation, over the recommendations before this one and this one. First
    // sight: an empty history is seeded with the current count (HPA).
    let (up_w, down_w) = (
        rule.scale_up.window.as_secs_f64(),
        rule.scale_down.window.as_secs_f64(),
    );
    let seeded = history.recommendations.is_empty();
    if seeded {
        history.recommendations.push_back(Recommendation {
            at: now,
            replicas: current,
        });
    }
    let (mut up_rec, mut down_rec) = (p, p);
    // When the recommendations that hold the proposal back leave their window.
    let (mut up_until, mut down_until) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for r in &history.recommendations {
        if recent(r.at, now, up_w) {
            up_rec = up_rec.min(r.replicas);
            if r.replicas < p {
                up_until = up_until.max(r.at + up_w);
            }
        }
        if recent(r.at, now, down_w) {
            down_rec = down_rec.max(r.replicas);
            if r.replicas > p {
                down_until = down_until.max(r.at + down_w);
            }
        }
    }
    history.recommendations.push_back(Recommendation {
        at: now,
        replicas: p,
    });
    let keep = up_w.max(down_w);
    while history
        .recommendations
        .front()
        .is_some_and(|r| !recent(r.at, now, keep) || history.recommendations.len() > HISTORY_LIMIT)
    {
        history.recommendations.pop_front();
    }
    let mut desired = if current < up_rec {
        up_rec
    } else if current > down_rec {
        down_rec
    } else {
        current
    };
    let first = if seeded && desired == current {
        " (first sight: the current count is its first recommendation)"
    } else {
        ""
    };
    if desired > p {
        d.reasons.push(format!(
            "scale-down window ({}) holds {desired} until {}{first}",
            span(rule.scale_down.window),
            until(down_until, now)
        ));
    } else if desired < p {
        d.reasons.push(format!(
            "scale-up window ({}) holds {desired} until {}{first}",
            span(rule.scale_up.window),
            until(up_until, now)
        ));
    }

    // Bounds: [min, max], or [idle, max] while idle.
    let lower = match rule.idle {
        Some(i) if idling => i,
        _ => rule.min,
    };
    if desired > rule.max {
        desired = rule.max;
        d.reasons.push(format!("capped by max {}", rule.max));
    }
    if desired < lower {
        desired = lower;
        d.reasons.push(if lower == rule.min {
            format!("raised to min {}", rule.min)
        } else {
            format!("raised to idle {lower}")
        });
    }

    // Steps per period (HPA's policies); the bounds win.
    if desired > current
        && let Some((limit, why)) = step_limit(true, &rule.scale_up, &history.events, current, now)
    {
        let limit = limit.max(lower);
        if desired > limit {
            desired = limit;
            d.reasons.push(format!("{why} → {limit}"));
        }
    }
    // While idle, a count between idle and min is no count either allows: a window
    // that still holds an active proposal (clamped to min when it was made) holds
    // min.
    if let Some(i) = rule.idle
        && idling
        && desired > i
        && desired < rule.min
    {
        desired = rule.min;
        d.reasons.push(format!(
            "an active proposal inside the scale-down window holds min {}",
            rule.min
        ));
    }
    // Going idle (below min) is one move, as KEDA sets idleReplicaCount itself:
    // a step would otherwise stop between idle and min.
    let to_idle = idling && Some(desired) == rule.idle && desired < rule.min;
    if desired < current
        && !to_idle
        && let Some((limit, why)) =
            step_limit(false, &rule.scale_down, &history.events, current, now)
    {
        let limit = limit.min(rule.max);
        if desired < limit {
            desired = limit;
            d.reasons.push(format!("{why} → {limit}"));
        }
    }

    // Placement.
    if let (Some(pl), Some(cap)) = (obs.placement, cap)
        && desired > cap
    {
        let mut line = format!(
            "placement allows {cap} (max {} per node × {} node{})",
            pl.max_per_node,
            pl.nodes,
            if pl.nodes == 1 { "" } else { "s" }
        );
        if cap < rule.min {
            // Never below min because of placement: a constraint typo (0 eligible
            // nodes) must not propose removing every replica.
            line += &format!(
                ", less than min {}: no decision (check the placement constraints and max replicas per node)",
                rule.min
            );
            d.reasons.push(line);
            d.desired = current;
            d.action = Action::Hold;
            return d;
        }
        // The cap limits growth; it never takes replicas away by itself. The
        // eligible nodes drop for moments (a node down; after a Raft leader change,
        // one of five nodes was ready), and a cap-made scale-down would skip the
        // windows and steps: a loaded service went 4 → 1 on the five-node sandbox
        // after a partition healed. Tasks above the cap simply wait in `pending`.
        // The proposal (after windows and steps) stands as far as it is not above
        // the current count.
        if cap < current {
            desired = desired.min(current);
            line += &format!(
                ": {desired}, not less (placement never scales down; the nodes may come back)"
            );
        } else {
            desired = cap;
        }
        d.reasons.push(line);
    }

    if partial && desired < current {
        hold_on_failure(&mut d, " (no scale-down on partial data)");
        return d;
    }

    d.desired = desired;
    d.action = match desired.cmp(&current) {
        std::cmp::Ordering::Greater => Action::ScaleUp,
        std::cmp::Ordering::Less => Action::ScaleDown,
        std::cmp::Ordering::Equal => Action::None,
    };
    if desired != current {
        history.events.push_back(ScaleEvent {
            at: now,
            from: current,
            to: desired,
        });
    }
    let keep = rule
        .scale_up
        .steps
        .iter()
        .chain(&rule.scale_down.steps)
        .map(|s| s.period.as_secs_f64())
        .fold(0.0, f64::max);
    while history
        .events
        .front()
        .is_some_and(|e| !recent(e.at, now, keep) || history.events.len() > HISTORY_LIMIT)
    {
        history.events.pop_front();
    }
    d
}

/// `2026-12-07T20:40:00Z (4m10s from now)`: when a window stops holding.
fn until(at: f64, now: f64) -> String {
    let stamp = if at.is_finite() {
        jiff::Timestamp::from_second(at.floor().clamp(-1e15, 1e15) as i64)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| format!("{}s", num(at)))
    } else {
        "?".to_string()
    };
    format!("{stamp} ({} from now)", span(secs((at - now).ceil())))
}

/// `4/15s`, `100%/1m`.
fn step_text(step: &crate::rules::model::Step) -> String {
    match step.amount {
        StepAmount::Replicas(n) => format!("{n}/{}", span(step.period)),
        StepAmount::Percent(p) => format!("{}%/{}", num(p), span(step.period)),
    }
}

/// HPA's `calculateScaleUpLimitWithScalingRules` and
/// `calculateScaleDownLimitWithBehaviors`: the most (up) or fewest (down) replicas
/// the direction's policies allow now, never past `current` in the wrong direction,
/// and the reason's text. For each policy, `start = current − added + removed` within
/// its period; replicas `start ± n`; percent up `ceil(start × (1 + p/100))`, down
/// `trunc(start × (1 − p/100))` (not below 0); `select` picks the most (max) or
/// least (min) permissive. `None` when the direction has no policy (unlimited).
fn step_limit(
    up: bool,
    policy: &Policy,
    events: &VecDeque<ScaleEvent>,
    current: u64,
    now: f64,
) -> Option<(u64, String)> {
    let dir = if up { "up" } else { "down" };
    if policy.select == Select::Disabled {
        return Some((
            current,
            format!("scale-{dir} disabled (scale-{dir}.select=disabled)"),
        ));
    }
    if policy.steps.is_empty() {
        return None;
    }
    let mut best: Option<i128> = None;
    let mut starts = vec![];
    for step in &policy.steps {
        let period = step.period.as_secs_f64();
        let (mut added, mut removed) = (0i128, 0i128);
        for e in events.iter().filter(|e| recent(e.at, now, period)) {
            if e.to > e.from {
                added += (e.to - e.from) as i128;
            } else {
                removed += (e.from - e.to) as i128;
            }
        }
        let start = current as i128 - added + removed;
        starts.push(start);
        let proposed: i128 = match (step.amount, up) {
            (StepAmount::Replicas(n), true) => start + n as i128,
            (StepAmount::Replicas(n), false) => start - n as i128,
            (StepAmount::Percent(pc), true) => {
                (start as f64 * (1.0 + pc / 100.0)).ceil().min(1e30) as i128
            }
            (StepAmount::Percent(pc), false) => {
                (start as f64 * (1.0 - pc / 100.0)).trunc().max(-1e30) as i128
            }
        };
        // Up: max → the largest limit; down: max → the smallest (the most change).
        let more_permissive = |a: i128, b: i128| if up { a.max(b) } else { a.min(b) };
        let less_permissive = |a: i128, b: i128| if up { a.min(b) } else { a.max(b) };
        best = Some(match (best, policy.select) {
            (None, _) => proposed,
            (Some(b), Select::Min) => less_permissive(b, proposed),
            (Some(b), _) => more_permissive(b, proposed),
        });
    }
    let limit = best.unwrap_or(current as i128);
    let limit = if up {
        limit.max(current as i128)
    } else {
        limit.min(current as i128).max(0)
    };
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    let list: Vec<String> = policy.steps.iter().map(step_text).collect();
    let default = if up && policy.steps == Policy::default_up().steps {
        " (HPA's default)"
    } else {
        ""
    };
    let select = if policy.steps.len() > 1 {
        match policy.select {
            Select::Min => ", the least of them",
            _ => ", the most of them",
        }
    } else {
        ""
    };
    let start = if starts.iter().all(|&s| s == current as i128) {
        String::new()
    } else {
        let mut s: Vec<String> = starts.iter().map(|s| s.to_string()).collect();
        s.dedup();
        format!(" from {} at the start of the period", s.join(" / "))
    };
    Some((
        limit,
        format!(
            "scale-{dir} limited to {}{default}{select}{start}",
            list.join(", ")
        ),
    ))
}

/// What one service wants of a shared budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// The service name (breaks priority ties, in byte order).
    pub service: String,
    /// 1 is the highest.
    pub priority: u32,
    /// Fewest replicas; always granted.
    pub min: u64,
    /// Replicas wanted (its [`Decision::desired`]); never exceeded, except that a
    /// `desired` below `min` counts as `min`.
    pub desired: u64,
}

/// What one service gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// The service name.
    pub service: String,
    /// Replicas granted.
    pub replicas: u64,
    /// Why less than wanted (empty when the service got what it wanted).
    pub reasons: Vec<String>,
}

/// Shares `capacity` replicas between services (Microscaling priorities).
///
/// Every service first gets its `min`, even when the minimums alone exceed
/// `capacity` (then nobody gets more, and each reason says `capacity N is less than
/// the minimums (M)`). What is left goes to the highest priority first (lowest
/// number), ties by service name then by position, each service up to its
/// `desired`. So the total granted is ≤ `capacity` unless the minimums exceed it,
/// and a service above its `min` means every higher-priority one got its `desired`.
/// The grants are in the order of `wants`.
pub fn allocate(capacity: u64, wants: &[Want]) -> Vec<Grant> {
    let mins: u128 = wants.iter().map(|w| w.min as u128).sum();
    let mut grants: Vec<Grant> = wants
        .iter()
        .map(|w| {
            let mut reasons = vec![];
            if w.desired < w.min {
                reasons.push(format!("desired {} is below min {}: min", w.desired, w.min));
            }
            Grant {
                service: w.service.clone(),
                replicas: w.min,
                reasons,
            }
        })
        .collect();
    if mins > capacity as u128 {
        for (g, w) in grants.iter_mut().zip(wants) {
            g.reasons.push(format!(
                "capacity {capacity} is less than the minimums ({mins}): min {}",
                w.min
            ));
        }
        return grants;
    }
    let mut left = capacity - mins as u64;
    let mut order: Vec<usize> = (0..wants.len()).collect();
    order.sort_by(|&a, &b| {
        (wants[a].priority, &wants[a].service, a).cmp(&(wants[b].priority, &wants[b].service, b))
    });
    for i in order {
        let w = &wants[i];
        let extra = w.desired.saturating_sub(w.min);
        let given = extra.min(left);
        left -= given;
        grants[i].replicas = w.min + given;
        if given < extra {
            grants[i].reasons.push(format!(
                "capacity {capacity} shared by priority (this one {}): {} of {}",
                w.priority,
                w.min + given,
                w.desired
            ));
        }
    }
    grants
}

#[cfg(test)]
#[path = "hpa_tests.rs"]
mod hpa_cases;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::model::{Fallback, MetricRule, Step};

    fn metric(name: &str, target: Target) -> MetricRule {
        MetricRule {
            name: name.to_string(),
            source: format!("redis://cache/{name}"),
            target,
        }
    }

    /// min..max, one default per-replica metric of target 10, no windows, no step
    /// limits (HPA's default scale-up limit is tested on its own).
    fn rule(min: u64, max: u64) -> Rule {
        let mut r = Rule {
            min,
            max,
            metrics: vec![metric("", Target::PerReplica(10.0))],
            ..Rule::default()
        };
        r.scale_down.window = Duration::ZERO;
        r.scale_up.steps = vec![];
        r
    }

    /// One `n replicas per period` policy.
    pub(super) fn replicas_per(n: u64, period: u64) -> Vec<Step> {
        vec![Step {
            amount: StepAmount::Replicas(n),
            period: Duration::from_secs(period),
        }]
    }

    fn ok(name: &str, v: f64) -> Reading {
        Reading {
            name: name.to_string(),
            value: Ok(v),
            coverage: None,
        }
    }

    fn err(name: &str, e: &str) -> Reading {
        Reading {
            name: name.to_string(),
            value: Err(e.to_string()),
            coverage: None,
        }
    }

    fn obs(replicas: u64, readings: Vec<Reading>) -> Observation {
        Observation {
            mode: Mode::Replicated,
            replicas,
            running: replicas,
            update: None,
            converging_since: None,
            placement: None,
            readings,
        }
    }

    fn once(rule: &Rule, obs: &Observation) -> Decision {
        decide(rule, obs, &mut History::new(), 1000.0, 60.0)
    }

    #[test]
    fn per_replica_target_divides_and_rounds_up() {
        let d = once(&rule(1, 20), &obs(4, vec![ok("", 130.0)]));
        assert_eq!(d.reasons, ["metric 130 / target 10 → 13"]);
        assert_eq!((d.current, d.desired, d.action), (4, 13, Action::ScaleUp));
        assert_eq!(
            d.metric,
            Some(WinningMetric {
                name: String::new(),
                value: 130.0,
                target: Target::PerReplica(10.0)
            })
        );
        // 1.1 / 0.1 is 11.000000000000002 in floating point: still 11.
        let mut r = rule(1, 20);
        r.metrics[0].target = Target::PerReplica(0.1);
        assert_eq!(once(&r, &obs(11, vec![ok("", 1.1)])).desired, 11);
    }

    #[test]
    fn utilisation_target_scales_the_running_tasks() {
        let mut r = rule(1, 20);
        r.metrics = vec![metric("cpu", Target::Utilization(50.0))];
        let d = once(&r, &obs(4, vec![ok("cpu", 75.0)]));
        assert_eq!(
            d.reasons,
            [r#"metric "cpu" 75% / target 50% × 4 running → 6"#]
        );
        assert_eq!(d.desired, 6);
        // None running: the spec's replicas (shown even when the decision holds).
        let mut o = obs(3, vec![ok("cpu", 100.0)]);
        o.running = 0;
        let d = once(&r, &o);
        assert_eq!(
            d.reasons[0],
            r#"metric "cpu" 100% / target 50% × 3 replicas → 6"#
        );
    }

    #[test]
    fn bounds_cap_and_raise() {
        let d = once(&rule(1, 12), &obs(4, vec![ok("", 130.0)]));
        assert_eq!(
            d.reasons,
            ["metric 130 / target 10 → 13", "capped by max 12"]
        );
        assert_eq!((d.desired, d.action), (12, Action::ScaleUp));
        let d = once(&rule(3, 12), &obs(4, vec![ok("", 5.0)]));
        assert_eq!(d.reasons, ["metric 5 / target 10 → 1", "raised to min 3"]);
        assert_eq!((d.desired, d.action), (3, Action::ScaleDown));
    }

    #[test]
    fn tolerance_keeps_the_current_count() {
        let d = once(&rule(1, 20), &obs(10, vec![ok("", 105.0)]));
        assert_eq!(
            d.reasons,
            ["metric 105 / target 10 → 11, but ratio 1.05 is within tolerance 0.9..1.1: 10"]
        );
        assert_eq!((d.desired, d.action), (10, Action::None));
        // HPA: on the raw ratio, not the rounded proposal. 85 / (10 × 10) = 0.85 is
        // outside 0.9..1.1: ceil(8.5) = 9 (the rounded 9 / 10 would have been inside).
        let d = once(&rule(1, 20), &obs(10, vec![ok("", 85.0)]));
        assert_eq!((d.desired, d.action), (9, Action::ScaleDown));
        let d = once(&rule(1, 20), &obs(10, vec![ok("", 75.0)]));
        assert_eq!((d.desired, d.action), (8, Action::ScaleDown));
        let d = once(&rule(1, 20), &obs(10, vec![ok("", 115.0)]));
        assert_eq!((d.desired, d.action), (12, Action::ScaleUp));
        // The issue's case: 3 replicas at 100.1 % of the target stay 3 (was 4).
        let d = once(&rule(1, 20), &obs(3, vec![ok("", 30.03)]));
        assert_eq!((d.desired, d.action), (3, Action::None));
        // Both ends inclusive: ratio 1.1 and 0.9 exactly hold, a hair beyond moves.
        let mut r = rule(1, 20);
        r.metrics[0].target = Target::PerReplica(1.0);
        for (value, want) in [(11.0, 10), (9.0, 10), (11.01, 12), (8.99, 9)] {
            let d = once(&r, &obs(10, vec![ok("", value)]));
            assert_eq!(d.desired, want, "{value}: {d:?}");
        }
        // Per direction: scale-up tolerance 0 moves on any rise, scale-down 0.5
        // absorbs a fall to half.
        r.scale_up.tolerance = 0.0;
        r.scale_down.tolerance = 0.5;
        assert_eq!(once(&r, &obs(10, vec![ok("", 10.5)])).desired, 11);
        assert_eq!(once(&r, &obs(10, vec![ok("", 5.0)])).desired, 10);
        assert_eq!(once(&r, &obs(10, vec![ok("", 4.9)])).desired, 5);
        // Not from 0: any activity above 0 wakes a min-0 service.
        let mut r = rule(0, 20);
        r.scale_up.tolerance = 0.5;
        assert_eq!(once(&r, &obs(0, vec![ok("", 1.0)])).desired, 1);
    }

    #[test]
    fn the_largest_proposal_wins() {
        let mut r = rule(1, 20);
        r.metrics = vec![
            metric("queue", Target::PerReplica(10.0)),
            metric("rps", Target::PerReplica(100.0)),
        ];
        let d = once(&r, &obs(4, vec![ok("queue", 30.0), ok("rps", 750.0)]));
        assert_eq!(
            d.reasons,
            [
                r#"metric "queue" 30 / target 10 → 3"#,
                r#"metric "rps" 750 / target 100 → 8"#
            ]
        );
        assert_eq!(d.desired, 8);
        assert_eq!(d.metric.unwrap().name, "rps");
    }

    fn two_metrics() -> Rule {
        let mut r = rule(1, 20);
        r.metrics = vec![
            metric("a", Target::PerReplica(10.0)),
            metric("queue", Target::PerReplica(10.0)),
        ];
        r
    }

    #[test]
    fn no_scale_down_on_partial_data() {
        let r = two_metrics();
        let d = once(
            &r,
            &obs(4, vec![ok("a", 15.0), err("queue", "connection refused")]),
        );
        assert_eq!(
            d.reasons,
            [
                r#"metric "a" 15 / target 10 → 2"#,
                r#"metric "queue" unreadable: connection refused: holding 4 (no scale-down on partial data)"#
            ]
        );
        assert_eq!((d.desired, d.action), (4, Action::Hold));
        // A metric without a reading failed too.
        let d = once(&r, &obs(4, vec![ok("a", 15.0)]));
        assert_eq!(
            d.reasons[1],
            r#"metric "queue" unreadable: not read: holding 4 (no scale-down on partial data)"#
        );
        // Nor through the placement cap.
        let mut o = obs(4, vec![ok("a", 45.0), err("queue", "refused")]);
        o.placement = Some(Placement {
            max_per_node: 1,
            nodes: 3,
        });
        o.running = 3;
        let d = once(&r, &o);
        // (The cap never scales down anyway: `a_shrunken_placement_never_scales_down`.)
        assert_eq!((d.desired, d.action), (4, Action::None));
    }

    #[test]
    fn scale_up_on_partial_data() {
        let d = once(
            &two_metrics(),
            &obs(4, vec![ok("a", 90.0), err("queue", "connection\nrefused")]),
        );
        assert_eq!(
            d.reasons,
            [
                r#"metric "a" 90 / target 10 → 9"#,
                r#"metric "queue" unreadable: connection refused"#
            ]
        );
        assert_eq!((d.desired, d.action), (9, Action::ScaleUp));
    }

    /// One engine://cpu metric of utilisation target 50 %.
    fn cpu_rule() -> Rule {
        let mut r = rule(1, 20);
        r.metrics = vec![metric("", Target::Utilization(50.0))];
        r
    }

    fn over(v: f64, measured: u64, total: u64, missing: &[&str]) -> Reading {
        Reading {
            name: String::new(),
            value: Ok(v),
            coverage: Some(Coverage {
                measured,
                total,
                missing: missing.iter().map(|m| m.to_string()).collect(),
            }),
        }
    }

    #[test]
    fn tasks_not_measured_never_let_a_service_scale_down() {
        // 3 of 5 tasks idle at 10 %: the two on n4 and n5 could be saturated.
        let d = once(&cpu_rule(), &obs(5, vec![over(10.0, 3, 5, &["n4", "n5"])]));
        assert_eq!((d.desired, d.action), (5, Action::Hold));
        assert_eq!(
            d.reasons,
            [
                "metric 10% / target 50% × 3 measured (3 of 5 running tasks measured; not measured: tasks on n4, n5, counted as 0% for a scale-up) → 1: holding 5 (no scale-down on partial data)"
            ]
        );
        // Not through the bounds either: above max, held at the current count.
        let mut r = cpu_rule();
        r.max = 3;
        let d = once(&r, &obs(5, vec![over(10.0, 3, 5, &["n4", "n5"])]));
        assert_eq!((d.desired, d.action), (5, Action::Hold), "{:?}", d.reasons);
        // Nor through idle.
        let mut r = cpu_rule();
        r.activation = Some(20.0);
        r.idle = Some(0);
        let d = once(&r, &obs(5, vec![over(10.0, 3, 5, &["n4"])]));
        assert_eq!((d.desired, d.action), (5, Action::Hold), "{:?}", d.reasons);
        // The same reading over every task scales down.
        let d = once(&cpu_rule(), &obs(5, vec![over(10.0, 5, 5, &[])]));
        assert_eq!((d.desired, d.action), (1, Action::ScaleDown));
        assert_eq!(d.reasons, ["metric 10% / target 50% × 5 running → 1"]);
    }

    #[test]
    fn a_scale_up_on_partial_data_counts_only_what_was_measured() {
        // 3 of 5 at 100 % of a 50 % target: those three alone need 6 tasks (the two
        // not measured count as 0 %), not the 10 of a full reading.
        let d = once(&cpu_rule(), &obs(5, vec![over(100.0, 3, 5, &["n5"])]));
        assert_eq!(
            (d.desired, d.action),
            (6, Action::ScaleUp),
            "{:?}",
            d.reasons
        );
        assert!(
            d.reasons[0].ends_with("counted as 0% for a scale-up) → 6"),
            "{:?}",
            d.reasons
        );
        // 3 of 5 at 80 %: 4.8 → 5, the current count; no change (HPA's "direction
        // change" case, and within tolerance: 3 × 80 / (5 × 50) = 0.96).
        let d = once(&cpu_rule(), &obs(5, vec![over(80.0, 3, 5, &["n5"])]));
        assert_eq!((d.desired, d.action), (5, Action::None), "{:?}", d.reasons);
        // No task measured at all: a failed read, which holds.
        let d = once(&cpu_rule(), &obs(5, vec![over(0.0, 0, 5, &["n2", "n3"])]));
        assert_eq!((d.desired, d.action), (5, Action::Hold));
        assert!(
            d.reasons[0].starts_with("metric unreadable: no running task measured (0 of 5 running tasks measured; not measured: tasks on n2, n3)"),
            "{:?}",
            d.reasons
        );
        // Partial data is no failed read: the fallback's count does not move.
        let mut h = History::new();
        decide(
            &cpu_rule(),
            &obs(5, vec![over(80.0, 3, 5, &["n5"])]),
            &mut h,
            1000.0,
            60.0,
        );
        assert_eq!(h.failures(), 0);
        // Many nodes: eight named, the rest counted.
        let many: Vec<String> = (1..=11).map(|i| format!("n{i:02}")).collect();
        let c = Coverage {
            measured: 1,
            total: 12,
            missing: many,
        };
        assert!(
            c.text().ends_with("n07, n08 and 3 more nodes"),
            "{}",
            c.text()
        );
    }

    #[test]
    fn another_metric_may_scale_up_past_a_partial_one() {
        let mut r = cpu_rule();
        r.metrics.push(metric("queue", Target::PerReplica(10.0)));
        let reading = |q: f64| {
            obs(
                5,
                vec![
                    over(10.0, 3, 5, &["n4"]),
                    Reading {
                        name: "queue".into(),
                        value: Ok(q),
                        coverage: None,
                    },
                ],
            )
        };
        let d = once(&r, &reading(80.0));
        assert_eq!(
            (d.desired, d.action),
            (8, Action::ScaleUp),
            "{:?}",
            d.reasons
        );
        // Both below: the partial one holds the scale-down.
        let d = once(&r, &reading(30.0));
        assert_eq!((d.desired, d.action), (5, Action::Hold), "{:?}", d.reasons);
        assert!(
            d.reasons[0].ends_with("holding 5 (no scale-down on partial data)"),
            "{:?}",
            d.reasons
        );
    }

    #[test]
    fn bad_values_are_failed_reads() {
        for (v, why) in [
            (f64::NAN, "value NaN is not a number"),
            (f64::INFINITY, "value inf is not a number"),
            (-2.0, "value -2 is negative"),
        ] {
            let d = once(&rule(1, 20), &obs(4, vec![ok("", v)]));
            assert_eq!(d.reasons, [format!("metric unreadable: {why}: holding 4")]);
            assert_eq!(d.action, Action::Hold);
        }
    }

    #[test]
    fn all_metrics_failed_holds() {
        let mut r = rule(1, 20);
        r.metrics = vec![metric("queue", Target::PerReplica(10.0))];
        let d = once(&r, &obs(4, vec![err("queue", "connection refused")]));
        assert_eq!(
            d.reasons,
            [r#"metric "queue" unreadable: connection refused: holding 4"#]
        );
        assert_eq!((d.desired, d.action), (4, Action::Hold));
        // Even out of bounds: nothing changes.
        let d = once(&r, &obs(40, vec![err("queue", "connection refused")]));
        assert_eq!((d.desired, d.action), (40, Action::Hold));
    }

    #[test]
    fn fallback_after_consecutive_failures() {
        let mut r = rule(1, 20);
        r.fallback = Some(Fallback {
            replicas: 2,
            after_failures: 3,
        });
        r.scale_down.window = Duration::from_secs(300);
        let failing = obs(4, vec![err("", "timeout")]);
        let mut h = History::new();
        for (t, so_far) in [(0.0, 1), (15.0, 2)] {
            let d = decide(&r, &failing, &mut h, t, 60.0);
            assert_eq!(
                d.reasons,
                [
                    "metric unreadable: timeout: holding 4".to_string(),
                    format!("fallback 2 replicas after 3 failed reads ({so_far} so far)")
                ]
            );
            assert_eq!(d.action, Action::Hold);
        }
        // The fallback goes through the windows: first sight at 30 s holds 4 for
        // the whole 5-minute scale-down window.
        let d = decide(&r, &failing, &mut h, 30.0, 60.0);
        assert_eq!(
            d.reasons,
            [
                "metric unreadable: timeout",
                "3 failed reads: fallback 2 replicas",
                "scale-down window (5m) holds 4 until 1970-01-01T00:05:30Z (5m from now) (first sight: the current count is its first recommendation)"
            ]
        );
        assert_eq!((d.desired, d.action), (4, Action::None));
        let d = decide(&r, &failing, &mut h, 330.0, 60.0);
        assert_eq!(
            d.reasons,
            [
                "metric unreadable: timeout",
                "4 failed reads: fallback 2 replicas"
            ]
        );
        assert_eq!((d.desired, d.action), (2, Action::ScaleDown));
        assert_eq!(h.failures(), 4);
        // A good read resets the count.
        decide(&r, &obs(2, vec![ok("", 20.0)]), &mut h, 45.0, 60.0);
        assert_eq!(h.failures(), 0);
        // The fallback is still clamped.
        let mut r = rule(3, 20);
        r.fallback = Some(Fallback {
            replicas: 1,
            after_failures: 1,
        });
        let d = once(&r, &obs(4, vec![err("", "timeout")]));
        assert_eq!(
            d.reasons[1..],
            ["1 failed read: fallback 1 replica", "raised to min 3"]
        );
        assert_eq!(d.desired, 3);
    }

    #[test]
    fn scale_from_zero_needs_activation() {
        let mut r = rule(0, 20);
        r.activation = Some(5.0);
        let d = once(&r, &obs(0, vec![ok("", 3.0)]));
        assert_eq!(
            d.reasons,
            [
                "metric 3 / target 10 → 1",
                "no metric above activation 5: staying at 0"
            ]
        );
        assert_eq!((d.desired, d.action), (0, Action::None));
        let d = once(&r, &obs(0, vec![ok("", 6.0)]));
        assert_eq!((d.desired, d.action), (1, Action::ScaleUp));
        // Without an activation: any value above 0.
        let r = rule(0, 20);
        let d = once(&r, &obs(0, vec![ok("", 0.0)]));
        assert_eq!((d.desired, d.action), (0, Action::None));
        let d = once(&r, &obs(0, vec![ok("", 0.5)]));
        assert_eq!((d.desired, d.action), (1, Action::ScaleUp));
        // A utilisation metric with nothing running still wakes the service.
        let mut r = rule(0, 20);
        r.metrics[0].target = Target::Utilization(50.0);
        let d = once(&r, &obs(0, vec![ok("", 10.0)]));
        assert_eq!(d.desired, 1);
    }

    #[test]
    fn scale_to_zero_only_when_min_is_zero() {
        let d = once(&rule(0, 20), &obs(2, vec![ok("", 0.0)]));
        assert_eq!((d.desired, d.action), (0, Action::ScaleDown));
        let d = once(&rule(1, 20), &obs(2, vec![ok("", 0.0)]));
        assert_eq!(d.reasons, ["metric 0 / target 10 → 0", "raised to min 1"]);
        assert_eq!((d.desired, d.action), (1, Action::ScaleDown));
        // Below the activation, the service is inactive: zero.
        let mut r = rule(0, 20);
        r.activation = Some(5.0);
        r.metrics[0].target = Target::PerReplica(1.0);
        let d = once(&r, &obs(3, vec![ok("", 3.0)]));
        assert_eq!(
            d.reasons,
            [
                "metric 3 / target 1 → 3",
                "no metric above activation 5 → 0"
            ]
        );
        assert_eq!(d.desired, 0);
    }

    #[test]
    fn scale_down_window_holds_the_highest_recommendation() {
        let mut r = rule(1, 20);
        r.scale_down.window = Duration::from_secs(300);
        let mut h = History::new();
        let d = decide(&r, &obs(12, vec![ok("", 120.0)]), &mut h, 0.0, 60.0);
        assert_eq!(d.action, Action::None);
        let d = decide(&r, &obs(12, vec![ok("", 40.0)]), &mut h, 60.0, 60.0);
        assert_eq!(
            d.reasons,
            [
                "metric 40 / target 10 → 4",
                "scale-down window (5m) holds 12 until 1970-01-01T00:05:00Z (4m from now)"
            ]
        );
        assert_eq!((d.desired, d.action), (12, Action::None));
        let d = decide(&r, &obs(12, vec![ok("", 40.0)]), &mut h, 301.0, 60.0);
        assert_eq!((d.desired, d.action), (4, Action::ScaleDown));
    }

    #[test]
    fn scale_up_window_holds_the_lowest_recommendation() {
        let mut r = rule(1, 20);
        r.scale_up.window = Duration::from_secs(60);
        let mut h = History::new();
        decide(&r, &obs(4, vec![ok("", 40.0)]), &mut h, 0.0, 60.0);
        let d = decide(&r, &obs(4, vec![ok("", 130.0)]), &mut h, 10.0, 60.0);
        assert_eq!(
            d.reasons,
            [
                "metric 130 / target 10 → 13",
                "scale-up window (1m) holds 4 until 1970-01-01T00:01:00Z (50s from now)"
            ]
        );
        assert_eq!((d.desired, d.action), (4, Action::None));
        let d = decide(&r, &obs(4, vec![ok("", 130.0)]), &mut h, 30.0, 60.0);
        assert_eq!(d.desired, 4);
        // The 4 at 0 s is out of the window: the lowest left is 13.
        let d = decide(&r, &obs(4, vec![ok("", 130.0)]), &mut h, 61.0, 60.0);
        assert_eq!((d.desired, d.action), (13, Action::ScaleUp));
    }

    #[test]
    fn max_step_per_period() {
        let mut r = rule(1, 20);
        r.scale_up.steps = replicas_per(2, 60);
        let mut h = History::new();
        let d = decide(&r, &obs(4, vec![ok("", 130.0)]), &mut h, 0.0, 60.0);
        assert_eq!(
            d.reasons,
            [
                "metric 130 / target 10 → 13",
                "scale-up limited to 2/1m → 6"
            ]
        );
        assert_eq!((d.desired, d.action), (6, Action::ScaleUp));
        let d = decide(&r, &obs(6, vec![ok("", 130.0)]), &mut h, 30.0, 60.0);
        assert_eq!(
            d.reasons[1],
            "scale-up limited to 2/1m from 4 at the start of the period → 6"
        );
        assert_eq!((d.desired, d.action), (6, Action::None));
        let d = decide(&r, &obs(6, vec![ok("", 130.0)]), &mut h, 60.5, 60.0);
        assert_eq!(d.desired, 8);
        // Down, likewise.
        let mut r = rule(1, 20);
        r.scale_down.steps = replicas_per(1, 90);
        let d = once(&r, &obs(10, vec![ok("", 20.0)]));
        assert_eq!(d.reasons[1], "scale-down limited to 1/1m30s → 9");
        assert_eq!(d.desired, 9);
        // The bounds win over the step.
        let mut r = rule(5, 20);
        r.scale_up.steps = replicas_per(1, 60);
        let d = once(&r, &obs(1, vec![ok("", 10.0)]));
        assert_eq!(d.desired, 5);
    }

    /// The issue: a fresh agent with the default 5-minute window scaled 4 → 1 at
    /// once. First sight seeds the history with the current count.
    #[test]
    fn first_sight_waits_one_whole_window() {
        let mut r = rule(1, 20);
        r.scale_down.window = Duration::from_secs(300);
        let t0 = 1_800_000_000.0; // 2027-01-15T08:00:00Z
        let mut h = History::new();
        let d = decide(&r, &obs(4, vec![ok("", 5.0)]), &mut h, t0, 60.0);
        assert_eq!(
            d.reasons,
            [
                "metric 5 / target 10 → 1",
                "scale-down window (5m) holds 4 until 2027-01-15T08:05:00Z (5m from now) (first sight: the current count is its first recommendation)"
            ]
        );
        assert_eq!((d.desired, d.action), (4, Action::None));
        assert_eq!(
            h.recommendations()
                .iter()
                .map(|r| (r.at, r.replicas))
                .collect::<Vec<_>>(),
            [(t0, 4), (t0, 1)]
        );
        let d = decide(&r, &obs(4, vec![ok("", 5.0)]), &mut h, t0 + 299.0, 60.0);
        assert_eq!(d.desired, 4);
        assert!(d.reasons[1].ends_with("(1s from now)"), "{:?}", d.reasons);
        let d = decide(&r, &obs(4, vec![ok("", 5.0)]), &mut h, t0 + 300.0, 60.0);
        assert_eq!((d.desired, d.action), (1, Action::ScaleDown));
        // Scaling up is not delayed by the seed (no scale-up window).
        let d = decide(
            &r,
            &obs(4, vec![ok("", 90.0)]),
            &mut History::new(),
            t0,
            60.0,
        );
        assert_eq!(d.desired, 9);
    }

    /// HPA's default scale-up limit when no step is declared: +4 or +100 % per 15 s,
    /// whichever allows more (the issue: one spike took 3 to `max` at once).
    #[test]
    fn the_default_scale_up_limit() {
        let mut r = rule(1, 100);
        r.scale_up = Policy::default_up();
        let mut h = History::new();
        let d = decide(&r, &obs(3, vec![ok("", 1000.0)]), &mut h, 0.0, 60.0);
        assert_eq!(
            d.reasons[1],
            "scale-up limited to 4/15s, 100%/15s (HPA's default), the most of them → 7"
        );
        assert_eq!(d.desired, 7);
        let events: Vec<_> = h.events().iter().map(|e| (e.at, e.from, e.to)).collect();
        assert_eq!(events, [(0.0, 3, 7)]);
        // Within the same 15 s: from 3 at the start of the period, still 7.
        let d = decide(&r, &obs(7, vec![ok("", 1000.0)]), &mut h, 10.0, 60.0);
        assert_eq!(d.desired, 7);
        // After it: +100 % of 7 allows more than +4.
        let d = decide(&r, &obs(7, vec![ok("", 1000.0)]), &mut h, 15.0, 60.0);
        assert_eq!(d.desired, 14);
        // Scale-down has no default limit.
        let d = once(&r, &obs(50, vec![ok("", 10.0)]));
        assert_eq!(d.desired, 1);
    }

    /// Percent policies round as HPA: up `ceil(start × (1 + p))`, down
    /// `trunc(start × (1 − p))`; `select` picks the most or least permissive, or
    /// none (`disabled`).
    #[test]
    fn percent_steps_and_select() {
        let pct = |p: f64, secs: u64| Step {
            amount: StepAmount::Percent(p),
            period: Duration::from_secs(secs),
        };
        let mut r = rule(1, 100);
        r.scale_up.steps = vec![pct(10.0, 60)];
        r.scale_down.steps = vec![pct(10.0, 60)];
        let d = once(&r, &obs(3, vec![ok("", 1000.0)]));
        assert_eq!(
            (d.desired, d.reasons[1].as_str()),
            (4, "scale-up limited to 10%/1m → 4")
        );
        let d = once(&r, &obs(9, vec![ok("", 10.0)]));
        assert_eq!(
            (d.desired, d.reasons[1].as_str()),
            (8, "scale-down limited to 10%/1m → 8")
        );
        // max (default): +1 or +50 % from 10: 15; min: 11.
        r.scale_up.steps = vec![replicas_per(1, 60)[0], pct(50.0, 60)];
        assert_eq!(once(&r, &obs(10, vec![ok("", 1000.0)])).desired, 15);
        r.scale_up.select = Select::Min;
        let d = once(&r, &obs(10, vec![ok("", 1000.0)]));
        assert_eq!(d.desired, 11);
        assert_eq!(
            d.reasons[1],
            "scale-up limited to 1/1m, 50%/1m, the least of them → 11"
        );
        r.scale_up.select = Select::Disabled;
        let d = once(&r, &obs(10, vec![ok("", 1000.0)]));
        assert_eq!((d.desired, d.action), (10, Action::None));
        assert_eq!(
            d.reasons[1],
            "scale-up disabled (scale-up.select=disabled) → 10"
        );
        // The bounds still win: below min goes to min even when disabled.
        r.min = 12;
        assert_eq!(once(&r, &obs(10, vec![ok("", 1000.0)])).desired, 12);
    }

    /// An operator's 0: min above 0 and 0 replicas holds at 0 and says how to resume
    /// (HPA: scaling is disabled while the target has 0 replicas).
    #[test]
    fn an_operators_zero_is_a_pause() {
        let d = once(&rule(2, 20), &obs(0, vec![ok("", 500.0)]));
        assert_eq!((d.desired, d.action), (0, Action::Hold));
        assert_eq!(
            d.reasons[1],
            "0 replicas while min is 2: paused by hand, holding 0; to resume, scale it (docker microscale scale SERVICE=2), or set microscale.idle=0 to let activation wake it"
        );
        // min 0: activation wakes it.
        assert_eq!(once(&rule(0, 20), &obs(0, vec![ok("", 500.0)])).desired, 20);
    }

    /// `microscale.idle` (KEDA idleReplicaCount): no metric above its activation →
    /// idle, below min; active → min..max.
    #[test]
    fn idle_below_min_while_inactive() {
        let mut r = rule(3, 20);
        r.idle = Some(1);
        r.activation = Some(5.0);
        let d = once(&r, &obs(6, vec![ok("", 4.0)]));
        assert_eq!(
            d.reasons,
            [
                "metric 4 / target 10 → 1",
                "no metric above activation 5: idle 1"
            ]
        );
        assert_eq!((d.desired, d.action), (1, Action::ScaleDown));
        // The scale-down window delays it like any scale-down (KEDA's cooldown).
        r.scale_down.window = Duration::from_secs(300);
        assert_eq!(once(&r, &obs(6, vec![ok("", 4.0)])).desired, 6);
        r.scale_down.window = Duration::ZERO;
        // Active: at least min.
        let d = once(&r, &obs(1, vec![ok("", 6.0)]));
        assert_eq!(d.reasons, ["metric 6 / target 10 → 1", "raised to min 3"]);
        assert_eq!(d.desired, 3);
        // Idle 0: from 0, activation wakes it to min.
        r.idle = Some(0);
        assert_eq!(once(&r, &obs(0, vec![ok("", 4.0)])).desired, 0);
        let d = once(&r, &obs(0, vec![ok("", 6.0)]));
        assert_eq!(
            d.reasons,
            [
                "metric 6 / target 10 → 1",
                "a metric is above activation 5: scaling from 0",
                "raised to min 3"
            ]
        );
        assert_eq!(d.desired, 3);
        // A failed read never idles.
        let d = once(&r, &obs(6, vec![err("", "timeout")]));
        assert_eq!((d.desired, d.action), (6, Action::Hold));
    }

    /// Activation lifting 0 → 1 says so (a utilisation metric proposes 0 with 0
    /// replicas).
    #[test]
    fn activation_lifting_zero_to_one_says_so() {
        let mut r = rule(0, 20);
        r.metrics[0].target = Target::Utilization(50.0);
        let d = once(&r, &obs(0, vec![ok("", 10.0)]));
        assert_eq!(
            d.reasons,
            [
                "metric 10% / target 50% × 0 replicas → 0",
                "a metric is above activation 0: 0 → 1"
            ]
        );
        assert_eq!(d.desired, 1);
    }

    #[test]
    fn converging_services_hold() {
        let mut o = obs(5, vec![ok("", 130.0)]);
        o.running = 3;
        o.converging_since = Some(88.0);
        let d = decide(&rule(1, 20), &o, &mut History::new(), 100.0, 60.0);
        assert_eq!(
            d.reasons,
            [
                "metric 130 / target 10 → 13",
                "converging (3/5 running for 12s): no decision"
            ]
        );
        assert_eq!((d.desired, d.action), (5, Action::Hold));
        o.converging_since = Some(5.0);
        let d = decide(&rule(1, 20), &o, &mut History::new(), 100.0, 60.0);
        assert_eq!(
            d.reasons[1],
            "not converged (3/5 running for 1m35s, grace 1m): no decision"
        );
        assert_eq!((d.desired, d.action), (5, Action::Hold));
        // Unknown start: just seen.
        o.converging_since = None;
        let d = decide(&rule(1, 20), &o, &mut History::new(), 100.0, 60.0);
        assert_eq!(d.reasons[1], "converging (3/5 running for 0s): no decision");
    }

    #[test]
    fn updates_in_progress_hold() {
        for (state, why) in [
            ("updating", "rolling update in progress: no decision"),
            ("paused", "rolling update paused: no decision"),
            ("rolling back", "rollback in progress: no decision"),
            ("rollback paused", "rollback paused: no decision"),
            ("exploded", r#"update state "exploded": no decision"#),
        ] {
            let mut o = obs(4, vec![ok("", 130.0)]);
            o.update = Some(state.to_string());
            let d = once(&rule(1, 20), &o);
            assert_eq!(d.reasons[1], why);
            assert_eq!((d.desired, d.action), (4, Action::Hold));
        }
        for state in ["rolled back", "completed", ""] {
            let mut o = obs(4, vec![ok("", 130.0)]);
            o.update = Some(state.to_string());
            assert_eq!(once(&rule(1, 20), &o).action, Action::ScaleUp);
        }
    }

    #[test]
    fn modes_not_scaled() {
        let mut o = obs(4, vec![ok("", 130.0)]);
        o.mode = Mode::Global;
        let mut h = History::new();
        let d = decide(&rule(1, 20), &o, &mut h, 0.0, 60.0);
        assert_eq!(d.reasons, ["global service: not scaled"]);
        assert_eq!((d.desired, d.action), (4, Action::NotScaled));
        o.mode = Mode::GlobalJob;
        assert_eq!(
            decide(&rule(1, 20), &o, &mut h, 0.0, 60.0).reasons,
            ["global job: not scaled"]
        );
        o.mode = Mode::ReplicatedJob;
        o.running = 1;
        let d = decide(&rule(1, 12), &o, &mut h, 0.0, 60.0);
        assert_eq!(
            d.reasons,
            [
                "metric 130 / target 10 → 13",
                "within bounds 1..12: 12",
                "replicated job: reported, not scaled"
            ]
        );
        assert_eq!((d.desired, d.action), (4, Action::NotScaled));
        assert_eq!(h, History::new());
    }

    #[test]
    fn placement_caps_the_proposal() {
        let mut o = obs(4, vec![ok("", 130.0)]);
        o.placement = Some(Placement {
            max_per_node: 2,
            nodes: 3,
        });
        let d = once(&rule(1, 20), &o);
        assert_eq!(
            d.reasons,
            [
                "metric 130 / target 10 → 13",
                "placement allows 6 (max 2 per node × 3 nodes)"
            ]
        );
        assert_eq!((d.desired, d.action), (6, Action::ScaleUp));
        // More replicas than can be placed, all placeable running: decided, and
        // held, never scaled down by the cap (nodes come and go).
        let mut o = obs(10, vec![ok("", 100.0)]);
        o.running = 6;
        o.placement = Some(Placement {
            max_per_node: 2,
            nodes: 3,
        });
        let d = once(&rule(1, 20), &o);
        assert_eq!(
            d.reasons.last().unwrap(),
            "placement allows 6 (max 2 per node × 3 nodes): 10, not less (placement never scales down; the nodes may come back)"
        );
        assert_eq!((d.desired, d.action), (10, Action::None));
        // Below min: the cap wins, and says so.
        o.placement = Some(Placement {
            max_per_node: 1,
            nodes: 1,
        });
        o.running = 1;
        let d = once(&rule(2, 20), &o);
        assert_eq!(
            d.reasons.last().unwrap(),
            "placement allows 1 (max 1 per node × 1 node), less than min 2: no decision (check the placement constraints and max replicas per node)"
        );
        assert_eq!((d.desired, d.action), (10, Action::Hold));
    }

    /// Seen on the five-node sandbox: right after a partition healed, the new Raft
    /// leader saw one ready node, and a loaded service (max 1 per node) went 4 → 1.
    #[test]
    fn a_shrunken_placement_never_scales_down() {
        let mut r = rule(1, 8);
        r.metrics[0].target = Target::Utilization(50.0);
        let mut o = obs(4, vec![ok("", 47.0)]);
        o.placement = Some(Placement {
            max_per_node: 1,
            nodes: 1,
        });
        let d = once(&r, &o);
        assert_eq!(
            d.reasons.last().unwrap(),
            "placement allows 1 (max 1 per node × 1 node): 4, not less (placement never scales down; the nodes may come back)"
        );
        assert_eq!((d.desired, d.action), (4, Action::None));
        // A scale-down the metric asks for still happens, to what it asks.
        let mut o = obs(4, vec![ok("", 30.0)]);
        o.placement = Some(Placement {
            max_per_node: 1,
            nodes: 2,
        });
        let d = once(&r, &o);
        assert_eq!((d.desired, d.action), (3, Action::ScaleDown));
        // A scale-up is capped as before.
        let mut o = obs(2, vec![ok("", 100.0)]);
        o.placement = Some(Placement {
            max_per_node: 1,
            nodes: 3,
        });
        let d = once(&r, &o);
        assert_eq!((d.desired, d.action), (3, Action::ScaleUp));
    }

    #[test]
    fn a_rule_without_metrics_keeps_the_bounds() {
        let mut r = rule(2, 5);
        r.metrics.clear();
        let d = once(&r, &obs(3, vec![]));
        assert_eq!(d.reasons, ["no metric: bounds only"]);
        assert_eq!((d.desired, d.action), (3, Action::None));
        let d = once(&r, &obs(9, vec![]));
        assert_eq!(d.reasons, ["no metric: bounds only", "capped by max 5"]);
        assert_eq!((d.desired, d.action), (5, Action::ScaleDown));
    }

    #[test]
    fn history_stays_bounded() {
        let mut r = rule(1, 1000);
        r.scale_down.window = Duration::from_secs(1_000_000);
        r.scale_up.steps = replicas_per(1000, 1_000_000);
        let mut h = History::new();
        let mut current = 1;
        for i in 0..3000u64 {
            let d = decide(
                &r,
                &obs(current, vec![ok("", ((i % 7) * 100) as f64)]),
                &mut h,
                i as f64,
                60.0,
            );
            current = d.desired;
        }
        assert!(h.recommendations.len() <= HISTORY_LIMIT);
        assert!(h.events.len() <= HISTORY_LIMIT);
        // Old entries go once out of every window.
        let r = rule(1, 1000);
        decide(&r, &obs(current, vec![ok("", 10.0)]), &mut h, 1e7, 60.0);
        assert!(h.recommendations.is_empty());
        assert!(h.events.len() <= 1);
    }

    #[test]
    fn formats() {
        assert_eq!(num(130.0), "130");
        assert_eq!(num(0.1), "0.1");
        assert_eq!(num(2.0 / 3.0), "0.667");
        assert_eq!(num(0.0001), "0.0001");
        assert_eq!(span(Duration::from_secs(300)), "5m");
        assert_eq!(span(Duration::from_secs(95)), "1m35s");
        assert_eq!(span(Duration::from_secs(3600)), "1h");
        assert_eq!(span(Duration::ZERO), "0s");
        assert_eq!(span(Duration::from_millis(250)), "250ms");
    }

    fn want(service: &str, priority: u32, min: u64, desired: u64) -> Want {
        Want {
            service: service.to_string(),
            priority,
            min,
            desired,
        }
    }

    #[test]
    fn allocate_by_priority() {
        let wants = [
            want("web", 2, 1, 6),
            want("batch", 5, 0, 10),
            want("api", 1, 2, 4),
        ];
        // Minimums 3, then 6 left: api (priority 1) +2, web +4 of its 5, batch nothing.
        let g = allocate(9, &wants);
        let got: Vec<_> = g.iter().map(|g| (g.service.as_str(), g.replicas)).collect();
        assert_eq!(got, [("web", 5), ("batch", 0), ("api", 4)]);
        assert_eq!(
            g[0].reasons,
            ["capacity 9 shared by priority (this one 2): 5 of 6"]
        );
        assert_eq!(
            g[1].reasons,
            ["capacity 9 shared by priority (this one 5): 0 of 10"]
        );
        assert!(g[2].reasons.is_empty());
    }

    #[test]
    fn allocate_ties_by_name() {
        let g = allocate(3, &[want("b", 1, 0, 2), want("a", 1, 0, 2)]);
        assert_eq!((g[0].replicas, g[1].replicas), (1, 2));
    }

    #[test]
    fn allocate_never_below_min() {
        let g = allocate(3, &[want("a", 1, 2, 5), want("b", 9, 2, 2)]);
        assert_eq!((g[0].replicas, g[1].replicas), (2, 2));
        assert_eq!(
            g[0].reasons,
            ["capacity 3 is less than the minimums (4): min 2"]
        );
        let g = allocate(10, &[want("a", 1, 3, 1)]);
        assert_eq!(g[0].replicas, 3);
        assert_eq!(g[0].reasons, ["desired 1 is below min 3: min"]);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::rules::model::{Fallback, MetricRule, Policy, Step};
    use proptest::prelude::*;

    const NAMES: [&str; 3] = ["", "a", "b"];

    fn arb_target() -> impl Strategy<Value = Target> {
        prop_oneof![
            (0.5f64..50.0).prop_map(Target::PerReplica),
            (10.0f64..100.0).prop_map(Target::Utilization),
        ]
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        (
            prop_oneof![
                (1u64..6).prop_map(StepAmount::Replicas),
                (10.0f64..200.0).prop_map(StepAmount::Percent),
            ],
            1u64..200,
        )
            .prop_map(|(amount, period)| Step {
                amount,
                period: Duration::from_secs(period),
            })
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        (
            prop_oneof![Just(0u64), 1u64..400],
            prop::collection::vec(arb_step(), 0..3),
            prop_oneof![4 => Just(Select::Max), 4 => Just(Select::Min), 1 => Just(Select::Disabled)],
            0.0f64..0.5,
        )
            .prop_map(|(window, steps, select, tolerance)| Policy {
                window: Duration::from_secs(window),
                steps,
                select,
                tolerance,
            })
    }

    fn arb_rule() -> impl Strategy<Value = Rule> {
        (
            0u64..6,
            0u64..25,
            prop::option::of(0u64..6),
            arb_policy(),
            arb_policy(),
            prop::option::of(0.0f64..50.0),
            prop::option::of((0u64..30, 0u32..5)),
            prop::collection::vec(arb_target(), 1..=3),
        )
            .prop_map(
                |(min, span, idle, up, down, activation, fb, targets)| Rule {
                    min,
                    max: min + span,
                    metrics: targets
                        .into_iter()
                        .enumerate()
                        .map(|(i, target)| MetricRule {
                            name: NAMES[i].to_string(),
                            source: String::new(),
                            target,
                        })
                        .collect(),
                    scale_up: up,
                    scale_down: down,
                    activation,
                    idle: idle.filter(|i| *i < min),
                    fallback: fb.map(|(replicas, after_failures)| Fallback {
                        replicas,
                        after_failures,
                    }),
                    priority: 1,
                },
            )
    }

    /// A reading for each of the three names: mostly values (some exact zeros), some
    /// failed, some missing.
    fn arb_readings() -> impl Strategy<Value = Vec<Reading>> {
        let one = prop_oneof![
            6 => (0.0f64..500.0).prop_map(|v| Some(Ok(v))),
            1 => Just(Some(Ok(0.0))),
            1 => Just(Some(Err("connection refused".to_string()))),
            1 => Just(None),
        ];
        prop::collection::vec(one, 3).prop_map(|values| {
            values
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    v.map(|value| Reading {
                        name: NAMES[i].to_string(),
                        value,
                        coverage: None,
                    })
                })
                .collect()
        })
    }

    fn arb_steps() -> impl Strategy<Value = Vec<(f64, Vec<Reading>)>> {
        prop::collection::vec((0.0f64..120.0, arb_readings()), 0..12)
    }

    fn observe(replicas: u64, readings: Vec<Reading>) -> Observation {
        Observation {
            mode: Mode::Replicated,
            replicas,
            running: replicas,
            update: None,
            converging_since: None,
            placement: None,
            readings,
        }
    }

    /// Decisions at increasing times, the service following each one. Returns the
    /// history, the replicas, the last time and each decision `(time, from, to)`.
    fn replay(
        rule: &Rule,
        start: u64,
        steps: &[(f64, Vec<Reading>)],
    ) -> (History, u64, f64, Vec<(f64, u64, u64)>) {
        let mut h = History::new();
        let (mut current, mut now, mut moves) = (start, 0.0, vec![]);
        for (dt, readings) in steps {
            now += dt;
            let d = decide(rule, &observe(current, readings.clone()), &mut h, now, 60.0);
            moves.push((now, current, d.desired));
            current = d.desired;
        }
        (h, current, now + 1.0, moves)
    }

    fn in_bounds(rule: &Rule, x: u64) -> u64 {
        rule.min + x % (rule.max - rule.min + 1)
    }

    proptest! {
        /// A decision (scale up, scale down or none) stays within `[min, max]`
        /// (the placement cap not below `min`); hold and not-scaled keep `current`.
        #[test]
        fn desired_within_bounds(
            rule in arb_rule(),
            steps in arb_steps(),
            current in 0u64..40,
            readings in arb_readings(),
            placement in prop::option::of((1u64..5, 1u64..5)),
        ) {
            let (mut h, _, now, _) = replay(&rule, in_bounds(&rule, current), &steps);
            let mut o = observe(current, readings);
            o.placement = placement.map(|(max_per_node, nodes)| Placement { max_per_node, nodes });
            if let Some(p) = o.placement {
                prop_assume!(p.cap() >= rule.min);
                o.running = current.min(p.cap());
            }
            let d = decide(&rule, &o, &mut h, now, 60.0);
            match d.action {
                Action::ScaleUp | Action::ScaleDown | Action::None => {
                    // Below min only to idle, and only while no metric is active.
                    let lower = rule.idle.unwrap_or(rule.min);
                    prop_assert!(lower <= d.desired && d.desired <= rule.max, "{d:?}");
                    if d.desired < rule.min {
                        prop_assert_eq!(Some(d.desired), rule.idle, "{:?}", d);
                    }
                }
                Action::Hold | Action::NotScaled => prop_assert_eq!(d.desired, current),
            }
            let expected = match d.desired.cmp(&current) {
                std::cmp::Ordering::Greater => Action::ScaleUp,
                std::cmp::Ordering::Less => Action::ScaleDown,
                std::cmp::Ordering::Equal => d.action,
            };
            prop_assert_eq!(d.action, expected);
        }

        /// A usage ratio within the tolerance (`1 − down ≤ ratio ≤ 1 + up`, both
        /// ends inclusive) changes nothing, whatever the history and however the
        /// rounded proposal differs.
        #[test]
        fn no_change_inside_the_tolerance(
            current in 1u64..50,
            tol_up in 0.0f64..0.5,
            tol_down in 0.0f64..0.5,
            target in 0.5f64..50.0,
            pick in 0.0f64..=1.0,
            utilisation in any::<bool>(),
            below in 0u64..5,
            above in 0u64..5,
            up in arb_policy(),
            down in arb_policy(),
            steps in arb_steps(),
        ) {
            let ratio = (1.0 - tol_down) + (tol_up + tol_down) * pick;
            let (t, value) = if utilisation {
                (Target::Utilization(target), ratio * target)
            } else {
                (Target::PerReplica(target), ratio * target * current as f64)
            };
            prop_assume!(usage_ratio(t, value, current).is_some_and(|r| 1.0 - tol_down <= r && r <= 1.0 + tol_up));
            let mut rule = Rule {
                min: current.saturating_sub(below),
                max: current + above,
                metrics: vec![MetricRule {
                    name: String::new(),
                    source: String::new(),
                    target: t,
                }],
                scale_up: up,
                scale_down: down,
                activation: None,
                idle: None,
                fallback: None,
                priority: 1,
            };
            rule.scale_up.tolerance = tol_up;
            rule.scale_down.tolerance = tol_down;
            let (mut h, _, now, _) = replay(&rule, current, &steps);
            let d = decide(&rule, &observe(current, vec![Reading { name: String::new(), value: Ok(value), coverage: None }]), &mut h, now, 60.0);
            prop_assert_eq!((d.desired, d.action), (current, Action::None), "{:?}", d);
        }

        /// Steps (HPA): over a run of decisions, with one `n replicas per period`
        /// policy per direction, a scale-up never goes above the count at the start
        /// of the period plus `n`, a scale-down never below it minus `n` (unless
        /// the bounds win: a service outside `[min, max]` goes to the bound, or the
        /// service goes idle, which is one move).
        #[test]
        fn steps_stay_within_policy(
            rule in arb_rule(),
            step_up in 1u64..6,
            step_down in 1u64..6,
            period_up in 1u64..200,
            period_down in 1u64..200,
            start in 0u64..40,
            steps in prop::collection::vec((0.0f64..60.0, arb_readings()), 1..40),
        ) {
            let mut rule = rule;
            rule.scale_up.steps = vec![Step { amount: StepAmount::Replicas(step_up), period: Duration::from_secs(period_up) }];
            rule.scale_down.steps = vec![Step { amount: StepAmount::Replicas(step_down), period: Duration::from_secs(period_down) }];
            rule.scale_up.select = Select::Max;
            rule.scale_down.select = Select::Max;
            let first = in_bounds(&rule, start);
            let (_, _, _, moves) = replay(&rule, first, &steps);
            // The count after every move made at or before `t`.
            let count_at = |t: f64| moves.iter().rev().find(|m| m.0 <= t).map_or(first, |m| m.2);
            for &(now, from, to) in &moves {
                if to > from {
                    let base = count_at(now - period_up as f64);
                    prop_assert!(to <= (base + step_up).max(rule.min), "up at {now}: {from} → {to}, {base} at the start: {moves:?}");
                }
                // Going idle (below min) is one move, past the steps (as KEDA).
                if to < from && !(to < rule.min && Some(to) == rule.idle) {
                    let base = count_at(now - period_down as f64);
                    prop_assert!(to >= base.saturating_sub(step_down).min(rule.max), "down at {now}: {from} → {to}, {base} at the start: {moves:?}");
                }
            }
        }

        /// First sight: with a scale-down window, a fresh history never scales
        /// down before the window has passed since the first decision.
        #[test]
        fn first_sight_waits_a_whole_window(
            rule in arb_rule(),
            start in 0u64..40,
            steps in prop::collection::vec((0.0f64..60.0, arb_readings()), 1..20),
        ) {
            let first = in_bounds(&rule, start);
            let (_, _, _, moves) = replay(&rule, first, &steps);
            let window = rule.scale_down.window.as_secs_f64();
            // The first decision (not a hold) seeds the history; holds do not.
            for &(now, from, to) in &moves {
                if to < from && from <= rule.max && rule.fallback.is_none() {
                    prop_assert!(now - moves[0].0 >= window || window == 0.0, "down at {now} within {window}s: {moves:?}");
                }
            }
        }

        /// An operator's 0: a service at 0 whose `min` is above 0 (and `idle` is
        /// not 0) holds at 0 whatever the metrics and history say.
        #[test]
        fn an_operators_zero_holds(
            rule in arb_rule(),
            steps in arb_steps(),
            readings in arb_readings(),
        ) {
            prop_assume!(rule.min > 0 && rule.idle != Some(0));
            let (mut h, _, now, _) = replay(&rule, rule.min, &steps);
            let d = decide(&rule, &observe(0, readings), &mut h, now, 60.0);
            prop_assert_eq!((d.desired, d.action), (0, Action::Hold));
            prop_assert!(d.reasons.last().unwrap().contains("paused by hand"));
        }

        /// History survives a round trip through JSON (the swarm store) unchanged.
        #[test]
        fn history_round_trips(rule in arb_rule(), steps in arb_steps()) {
            let (h, _, _, _) = replay(&rule, rule.min, &steps);
            let json = serde_json::to_string(&h).unwrap();
            let back: History = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, h);
        }

        /// Same state and history, larger metric values: `desired` is not smaller.
        #[test]
        fn desired_is_monotone_in_the_metric(
            rule in arb_rule(),
            steps in arb_steps(),
            current in 0u64..40,
            readings in arb_readings(),
            factor in 1.0f64..3.0,
            add in prop_oneof![Just(0.0f64), 0.0f64..50.0],
            placement in prop::option::of((1u64..10, 1u64..10)),
        ) {
            let current = in_bounds(&rule, current);
            let (h, _, now, _) = replay(&rule, current, &steps);
            let larger: Vec<Reading> = readings
                .iter()
                .map(|r| Reading { name: r.name.clone(), value: r.value.clone().map(|v| v * factor + add), coverage: None })
                .collect();
            let mut small = observe(current, readings);
            let mut large = observe(current, larger);
            small.placement = placement.map(|(max_per_node, nodes)| Placement { max_per_node, nodes });
            large.placement = small.placement;
            prop_assume!(small.placement.is_none_or(|p| p.cap() >= current));
            let d1 = decide(&rule, &small, &mut h.clone(), now, 60.0);
            let d2 = decide(&rule, &large, &mut h.clone(), now, 60.0);
            prop_assert!(d1.desired <= d2.desired, "{d1:?} then {d2:?}");
        }

        /// A reading over only some of the running tasks never brings the count down,
        /// whatever the rule, the history and the other readings.
        #[test]
        fn no_scale_down_on_partial_coverage(
            rule in arb_rule(),
            steps in arb_steps(),
            current in 0u64..40,
            readings in arb_readings(),
            value in 0.0f64..500.0,
            measured in 1u64..10,
            more in 1u64..10,
        ) {
            let (mut h, _, now, _) = replay(&rule, in_bounds(&rule, current), &steps);
            let mut readings: Vec<Reading> = readings.into_iter().filter(|r| !r.name.is_empty()).collect();
            readings.push(Reading {
                name: String::new(),
                value: Ok(value),
                coverage: Some(Coverage { measured, total: measured + more, missing: vec!["n9".into()] }),
            });
            let d = decide(&rule, &observe(current, readings), &mut h, now, 60.0);
            if rule.metrics.iter().any(|m| m.name.is_empty()) {
                prop_assert!(d.desired >= current, "{d:?}");
            }
        }

        /// With a failed read, `desired` is never below `current`, unless all
        /// failed and the fallback is in force; all failed without a fallback: hold.
        #[test]
        fn no_scale_down_on_a_failed_read(
            rule in arb_rule(),
            steps in arb_steps(),
            current in 0u64..40,
            readings in arb_readings(),
            missing in any::<bool>(),
            placement in prop::option::of((1u64..5, 1u64..5)),
            running_capped in any::<bool>(),
        ) {
            let (mut h, _, now, _) = replay(&rule, in_bounds(&rule, current), &steps);
            let mut readings: Vec<Reading> = readings.into_iter().filter(|r| !r.name.is_empty()).collect();
            if !missing {
                readings.push(Reading { name: String::new(), value: Err("timeout".into()), coverage: None });
            }
            let mut o = observe(current, readings.clone());
            o.placement = placement.map(|(max_per_node, nodes)| Placement { max_per_node, nodes });
            if let (Some(p), true) = (o.placement, running_capped) {
                o.running = current.min(p.cap());
            }
            let d = decide(&rule, &o, &mut h, now, 60.0);
            let readable = rule.metrics.iter().any(|m| {
                readings.iter().find(|r| r.name == m.name).is_some_and(|r| r.value.is_ok())
            });
            if readable || rule.fallback.is_none() {
                prop_assert!(d.desired >= current, "{d:?}");
            }
            if !readable && rule.fallback.is_none() {
                prop_assert_eq!((d.desired, d.action), (current, Action::Hold));
            }
        }

        /// When the minimums fit, the grants never exceed the capacity; each grant
        /// is at least its `min` and at most its `desired` (or `min`); when the
        /// minimums do not fit, everyone gets exactly `min`. Nothing is left unused
        /// while someone wants more.
        #[test]
        fn the_budget_is_never_exceeded(
            capacity in 0u64..100,
            wants in prop::collection::vec((0usize..4, 1u32..5, 0u64..10, 0u64..25), 0..8),
        ) {
            let wants: Vec<Want> = wants
                .into_iter()
                .map(|(n, priority, min, desired)| Want { service: ["a", "b", "c", "d"][n].into(), priority, min, desired })
                .collect();
            let grants = allocate(capacity, &wants);
            prop_assert_eq!(grants.len(), wants.len());
            let mins: u64 = wants.iter().map(|w| w.min).sum();
            let total: u64 = grants.iter().map(|g| g.replicas).sum();
            for (g, w) in grants.iter().zip(&wants) {
                prop_assert_eq!(&g.service, &w.service);
                prop_assert!(w.min <= g.replicas && g.replicas <= w.desired.max(w.min));
                if mins > capacity {
                    prop_assert_eq!(g.replicas, w.min);
                }
            }
            if mins <= capacity {
                prop_assert!(total <= capacity);
                if grants.iter().zip(&wants).any(|(g, w)| g.replicas < w.desired) {
                    prop_assert_eq!(total, capacity);
                }
            }
        }

        /// A lower-priority service never gets more than its `min` while a
        /// higher-priority one gets less than its `desired`.
        #[test]
        fn priorities_are_respected(
            capacity in 0u64..100,
            wants in prop::collection::vec((0usize..4, 1u32..5, 0u64..10, 0u64..25), 0..8),
        ) {
            let wants: Vec<Want> = wants
                .into_iter()
                .map(|(n, priority, min, desired)| Want { service: ["a", "b", "c", "d"][n].into(), priority, min, desired })
                .collect();
            let grants = allocate(capacity, &wants);
            for (hi, ghi) in wants.iter().zip(&grants) {
                for (lo, glo) in wants.iter().zip(&grants) {
                    if hi.priority < lo.priority && ghi.replicas < hi.desired {
                        prop_assert_eq!(glo.replicas, lo.min, "{:?} {:?}", wants, grants);
                    }
                }
            }
        }
    }

    #[test]
    fn an_overflowing_ratio_saturates_instead_of_dropping_to_zero() {
        assert_eq!(ceil(f64::INFINITY), u64::MAX);
        assert_eq!(ceil(1e308 / 1e-300), u64::MAX);
        assert_eq!(ceil(f64::NAN), 0);
        assert_eq!(
            proposal(Target::PerReplica(1e-300), 1e308, 1),
            Some(u64::MAX)
        );
        assert_eq!(
            proposal(Target::Utilization(1e-300), 1e308, 3),
            Some(u64::MAX)
        );
    }
}
