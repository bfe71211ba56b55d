//! The pure decision core: one service's [`Rule`], what was observed of it and its
//! [`History`] in, one [`Decision`] out; and [`allocate`], which shares a replica
//! budget between services by priority (Microscaling).
//!
//! Nothing here does I/O or reads a clock. Time is `now: f64`, **seconds since an
//! arbitrary epoch chosen by the caller** (a monotonic clock is best); every time
//! handed to one [`History`] ([`Observation::converging_since`] included) must use
//! the same epoch, and must be finite. Durations of the rule ([`Policy`] windows and
//! periods) are compared with differences of these times.
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
//!    failed read; so is a metric of the rule without a reading. The largest
//!    proposal wins (the first one on a tie).
//! 5. Activation: when `current` is 0, scale from zero only when some value is
//!    above `activation` (above 0 without one), to at least 1. When no value is
//!    above it and all were read, the proposal is 0 (KEDA's inactive: scale to
//!    zero, when `min` is 0, after the scale-down window).
//! 6. No readable metric: hold, unless a fallback is declared and the consecutive
//!    failures reached `after_failures`: the proposal is then the fallback's
//!    replicas (no tolerance; bounds, windows, steps and placement still apply).
//!    A rule without metrics proposes `current` (only the bounds apply).
//! 7. Tolerance (not for 0 replicas, nor for the fallback): when
//!    `|proposal / current − 1| ≤ tolerance`, the proposal is `current`.
//! 8. Partial data: when some metric failed and the proposal is below `current`,
//!    hold. Scaling up on the readable metrics is allowed.
//! 9. Stabilisation (HPA): the proposal is recorded; the result is `current`
//!    clamped to `[lowest recommendation in the scale-up window, highest in the
//!    scale-down window]` (the new one included), so it never moves past `current`
//!    in the wrong direction.
//! 10. Bounds: clamped to `[min, max]`.
//! 11. `max_step` per `period`, per direction: the sum of the changes in that
//!     direction made in the last `period` (this one included) stays ≤ `max_step`;
//!     the bounds win over the step (a service below `min` goes to `min`).
//! 12. Placement: never more than [`Placement::cap`] (tasks that cannot be placed
//!     never run, and the service would never converge). When the cap is below
//!     `min`, hold instead: placement never takes a service below its minimum (a
//!     constraint typo with 0 eligible nodes must not propose removing every task).
//! 13. A last guard: with any failed read (and no fallback in force), `desired` is
//!     never below `current` (bounds and placement do not shrink a service on
//!     partial data either).
//!
//! So `min ≤ desired ≤ max` whenever the action is [`Action::ScaleUp`],
//! [`Action::ScaleDown`] or [`Action::None`]; [`Action::Hold`] and [`Action::NotScaled`] keep `current`, which
//! may be out of bounds.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rules::model::{Rule, Target};
use crate::status::Mode;

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

/// One scale event remembered for `max_step`: at `at` (seconds, the caller's
/// epoch), from `from` to `to` replicas. Serialized as `{"at", "from", "to"}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScaleEvent {
    /// When (seconds, the caller's epoch).
    pub at: f64,
    /// Replicas before.
    pub from: u64,
    /// Replicas after.
    pub to: u64,
}

/// What [`decide`] remembers of one service between calls; owned by the caller,
/// updated by [`decide`]. Bounded: entries older than the rule's longest window or
/// period are dropped, and at most [`HISTORY_LIMIT`] of each kind are kept.
///
/// Serialized (serde) as `{"recommendations": [[seconds, replicas], ...], "events":
/// [{"at", "from", "to"}, ...], "failures": n}`; a missing field is empty (the agent
/// keeps it in the swarm: `crate::agent::history`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// `(time in seconds, recommendation in replicas)`, oldest first.
    #[serde(default)]
    recommendations: VecDeque<(f64, u64)>,
    /// Scale events, oldest first.
    #[serde(default)]
    events: VecDeque<ScaleEvent>,
    /// Consecutive decisions in which some metric read failed.
    #[serde(default)]
    failures: u32,
}

impl History {
    /// An empty history (a service seen for the first time).
    #[cfg(test)]
    pub fn new() -> History {
        History::default()
    }

    /// Consecutive decisions in which some metric read failed (`run` reports it).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The recommendations kept for the stabilisation windows: `(time in seconds,
    /// replicas)`, oldest first.
    pub fn recommendations(&self) -> &VecDeque<(f64, u64)> {
        &self.recommendations
    }

    /// The recommendations, to compact or extend them (`crate::agent::history`).
    pub fn recommendations_mut(&mut self) -> &mut VecDeque<(f64, u64)> {
        &mut self.recommendations
    }

    /// The scale events kept for the step limits, oldest first.
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

fn evaluate(rule: &Rule, obs: &Observation) -> Evaluation {
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
    };
    for metric in &rule.metrics {
        let who = label(&metric.name);
        let read = obs.readings.iter().find(|r| r.name == metric.name);
        let value = match read.map(|r| &r.value) {
            None => Err("not read".to_string()),
            Some(Err(e)) => Err(one_line(e)),
            Some(Ok(v)) if !v.is_finite() => Err(format!("value {v} is not a number")),
            Some(Ok(v)) if *v < 0.0 => Err(format!("value {} is negative", num(*v))),
            Some(Ok(v)) => Ok(*v),
        };
        let result = value.and_then(|v| {
            proposal(metric.target, v, base)
                .map(|p| (v, p))
                .ok_or_else(|| "its target is not above 0".to_string())
        });
        match result {
            Err(e) => {
                ev.failed += 1;
                ev.last_failed = Some(ev.reasons.len());
                ev.reasons.push(format!("{who} unreadable: {e}"));
            }
            Ok((v, p)) => {
                ev.reasons.push(match metric.target {
                    Target::PerReplica(t) => format!("{who} {} / target {} → {p}", num(v), num(t)),
                    Target::Utilization(t) => format!(
                        "{who} {}% / target {}% × {base} {base_name} → {p}",
                        num(v),
                        num(t)
                    ),
                });
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
        match ev.last_failed {
            Some(i) => d.reasons[i] += &line,
            None => d.reasons.push(line[2..].to_string()),
        }
        d.desired = current;
        d.action = Action::Hold;
    };

    // The proposal, and whether the tolerance applies to it.
    let mut fallback_in_force = false;
    let (raw, tolerant) = if rule.metrics.is_empty() {
        d.reasons.push("no metric: bounds only".into());
        (current, false)
    } else if let Some(p) = ev.proposal {
        if current == 0 {
            if ev.active {
                (p.max(1), false)
            } else {
                d.reasons.push(format!(
                    "no metric above activation {}: staying at 0",
                    num(rule.activation.unwrap_or(0.0))
                ));
                (0, false)
            }
        } else if !ev.active && ev.failed == 0 && p > 0 {
            d.reasons.push(format!(
                "no metric above activation {} → 0",
                num(rule.activation.unwrap_or(0.0))
            ));
            (0, true)
        } else {
            (p, true)
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
                (fb.replicas, false)
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

    let mut p = raw;
    if tolerant && current > 0 && p != current {
        let ratio = p as f64 / current as f64;
        // 1e-9: `11 / 10 − 1` is a hair above 0.1 in floating point.
        if (ratio - 1.0).abs() <= rule.tolerance + 1e-9 {
            d.reasons.push(format!(
                "within tolerance {} of {current}",
                num(rule.tolerance)
            ));
            p = current;
        }
    }
    let partial = ev.failed > 0 && !fallback_in_force;
    if partial && p < current {
        hold_on_failure(&mut d, " (no scale-down on partial data)");
        return d;
    }

    // Stabilisation, over the recommendations before this one and this one.
    let (up_w, down_w) = (
        rule.scale_up.window.as_secs_f64(),
        rule.scale_down.window.as_secs_f64(),
    );
    let mut up_rec = p;
    let mut down_rec = p;
    for &(at, rec) in &history.recommendations {
        if recent(at, now, up_w) {
            up_rec = up_rec.min(rec);
        }
        if recent(at, now, down_w) {
            down_rec = down_rec.max(rec);
        }
    }
    history.recommendations.push_back((now, p));
    let keep = up_w.max(down_w);
    while history.recommendations.front().is_some_and(|&(at, _)| {
        !recent(at, now, keep) || history.recommendations.len() > HISTORY_LIMIT
    }) {
        history.recommendations.pop_front();
    }
    let mut desired = if current < up_rec {
        up_rec
    } else if current > down_rec {
        down_rec
    } else {
        current
    };
    if desired > p {
        d.reasons.push(format!(
            "scale-down window ({}) holds {desired}",
            span(rule.scale_down.window)
        ));
    } else if desired < p {
        d.reasons.push(format!(
            "scale-up window ({}) holds {desired}",
            span(rule.scale_up.window)
        ));
    }

    // Bounds.
    if desired > rule.max {
        desired = rule.max;
        d.reasons.push(format!("capped by max {}", rule.max));
    }
    if desired < rule.min {
        desired = rule.min;
        d.reasons.push(format!("raised to min {}", rule.min));
    }

    // Steps per period; the bounds win.
    let moved = |up: bool, period: f64| -> u64 {
        history
            .events
            .iter()
            .filter(|e| recent(e.at, now, period) && (e.to > e.from) == up)
            .map(|e| e.to.abs_diff(e.from))
            .fold(0, u64::saturating_add)
    };
    if desired > current
        && let Some(step) = rule.scale_up.max_step
    {
        let used = moved(true, rule.scale_up.period.as_secs_f64());
        let limit = current
            .saturating_add(step.saturating_sub(used))
            .max(rule.min);
        if desired > limit {
            desired = limit;
            d.reasons
                .push(step_reason("up", step, rule.scale_up.period, used, limit));
        }
    }
    if desired < current
        && let Some(step) = rule.scale_down.max_step
    {
        let used = moved(false, rule.scale_down.period.as_secs_f64());
        let limit = current
            .saturating_sub(step.saturating_sub(used))
            .min(rule.max);
        if desired < limit {
            desired = limit;
            d.reasons.push(step_reason(
                "down",
                step,
                rule.scale_down.period,
                used,
                limit,
            ));
        }
    }

    // Placement.
    if let (Some(pl), Some(cap)) = (obs.placement, cap)
        && desired > cap
    {
        desired = cap;
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
        .period
        .max(rule.scale_down.period)
        .as_secs_f64();
    while history
        .events
        .front()
        .is_some_and(|e| !recent(e.at, now, keep) || history.events.len() > HISTORY_LIMIT)
    {
        history.events.pop_front();
    }
    d
}

/// `scale-up limited to 2 per 1m (1 used) → 5`.
fn step_reason(dir: &str, step: u64, period: Duration, used: u64, limit: u64) -> String {
    let used = if used > 0 {
        format!(" ({used} used)")
    } else {
        String::new()
    };
    format!(
        "scale-{dir} limited to {step} per {}{used} → {limit}",
        span(period)
    )
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
mod tests {
    use super::*;
    use crate::rules::model::{Fallback, MetricRule};

    fn metric(name: &str, target: Target) -> MetricRule {
        MetricRule {
            name: name.to_string(),
            source: format!("redis://cache/{name}"),
            target,
        }
    }

    /// min..max, one default per-replica metric of target 10, no windows.
    fn rule(min: u64, max: u64) -> Rule {
        let mut r = Rule {
            min,
            max,
            metrics: vec![metric("", Target::PerReplica(10.0))],
            ..Rule::default()
        };
        r.scale_down.window = Duration::ZERO;
        r
    }

    fn ok(name: &str, v: f64) -> Reading {
        Reading {
            name: name.to_string(),
            value: Ok(v),
        }
    }

    fn err(name: &str, e: &str) -> Reading {
        Reading {
            name: name.to_string(),
            value: Err(e.to_string()),
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
            ["metric 105 / target 10 → 11", "within tolerance 0.1 of 10"]
        );
        assert_eq!((d.desired, d.action), (10, Action::None));
        let d = once(&rule(1, 20), &obs(10, vec![ok("", 85.0)]));
        assert_eq!((d.desired, d.action), (10, Action::None));
        let d = once(&rule(1, 20), &obs(10, vec![ok("", 75.0)]));
        assert_eq!((d.desired, d.action), (8, Action::ScaleDown));
        let d = once(&rule(1, 20), &obs(10, vec![ok("", 115.0)]));
        assert_eq!((d.desired, d.action), (12, Action::ScaleUp));
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
        assert_eq!((d.desired, d.action), (4, Action::Hold));
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
        let d = decide(&r, &failing, &mut h, 30.0, 60.0);
        assert_eq!(
            d.reasons,
            [
                "metric unreadable: timeout",
                "3 failed reads: fallback 2 replicas"
            ]
        );
        assert_eq!((d.desired, d.action), (2, Action::ScaleDown));
        assert_eq!(h.failures(), 3);
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
                "scale-down window (5m) holds 12"
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
                "scale-up window (1m) holds 4"
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
        r.scale_up.max_step = Some(2);
        let mut h = History::new();
        let d = decide(&r, &obs(4, vec![ok("", 130.0)]), &mut h, 0.0, 60.0);
        assert_eq!(
            d.reasons,
            [
                "metric 130 / target 10 → 13",
                "scale-up limited to 2 per 1m → 6"
            ]
        );
        assert_eq!((d.desired, d.action), (6, Action::ScaleUp));
        let d = decide(&r, &obs(6, vec![ok("", 130.0)]), &mut h, 30.0, 60.0);
        assert_eq!(d.reasons[1], "scale-up limited to 2 per 1m (2 used) → 6");
        assert_eq!((d.desired, d.action), (6, Action::None));
        let d = decide(&r, &obs(6, vec![ok("", 130.0)]), &mut h, 60.5, 60.0);
        assert_eq!(d.desired, 8);
        // Down, likewise.
        let mut r = rule(1, 20);
        r.scale_down.max_step = Some(1);
        r.scale_down.period = Duration::from_secs(90);
        let d = once(&r, &obs(10, vec![ok("", 20.0)]));
        assert_eq!(d.reasons[1], "scale-down limited to 1 per 1m30s → 9");
        assert_eq!(d.desired, 9);
        // The bounds win over the step.
        let mut r = rule(5, 20);
        r.scale_up.max_step = Some(1);
        let d = once(&r, &obs(1, vec![ok("", 10.0)]));
        assert_eq!(d.desired, 5);
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
        // More replicas than can be placed, all placeable running: decided, and capped.
        let mut o = obs(10, vec![ok("", 100.0)]);
        o.running = 6;
        o.placement = Some(Placement {
            max_per_node: 2,
            nodes: 3,
        });
        let d = once(&rule(1, 20), &o);
        assert_eq!((d.desired, d.action), (6, Action::ScaleDown));
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
        r.scale_up.period = Duration::from_secs(1_000_000);
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
    use crate::rules::model::{Fallback, MetricRule, Policy};
    use proptest::prelude::*;

    const NAMES: [&str; 3] = ["", "a", "b"];

    fn arb_target() -> impl Strategy<Value = Target> {
        prop_oneof![
            (0.5f64..50.0).prop_map(Target::PerReplica),
            (10.0f64..100.0).prop_map(Target::Utilization),
        ]
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        (
            prop_oneof![Just(0u64), 1u64..400],
            prop::option::of(1u64..6),
            1u64..200,
        )
            .prop_map(|(window, max_step, period)| Policy {
                window: Duration::from_secs(window),
                max_step,
                period: Duration::from_secs(period),
            })
    }

    fn arb_rule() -> impl Strategy<Value = Rule> {
        (
            0u64..6,
            0u64..25,
            0.0f64..0.5,
            arb_policy(),
            arb_policy(),
            prop::option::of(0.0f64..50.0),
            prop::option::of((0u64..30, 0u32..5)),
            prop::collection::vec(arb_target(), 1..=3),
        )
            .prop_map(
                |(min, span, tolerance, up, down, activation, fb, targets)| Rule {
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
                    tolerance,
                    scale_up: up,
                    scale_down: down,
                    activation,
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
                    prop_assert!(rule.min <= d.desired && d.desired <= rule.max, "{d:?}");
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

        /// A proposal within the tolerance of `current` changes nothing, whatever
        /// the history.
        #[test]
        fn no_change_inside_the_tolerance(
            current in 1u64..50,
            tolerance in 0.0f64..0.5,
            target in 0.5f64..50.0,
            pick in 0.0f64..1.0,
            frac in 0.0f64..1.0,
            below in 0u64..5,
            above in 0u64..5,
            up in arb_policy(),
            down in arb_policy(),
            steps in arb_steps(),
        ) {
            let lo = (current as f64 * (1.0 - tolerance)).ceil() as u64;
            let hi = (current as f64 * (1.0 + tolerance)).floor() as u64;
            let k = lo + ((hi - lo) as f64 * pick).round() as u64;
            let value = (k as f64 - frac) * target;
            prop_assume!(proposal(Target::PerReplica(target), value, current) == Some(k));
            prop_assume!((k as f64 / current as f64 - 1.0).abs() <= tolerance);
            let rule = Rule {
                min: current.saturating_sub(below),
                max: current + above,
                metrics: vec![MetricRule {
                    name: String::new(),
                    source: String::new(),
                    target: Target::PerReplica(target),
                }],
                tolerance,
                scale_up: up,
                scale_down: down,
                activation: None,
                fallback: None,
                priority: 1,
            };
            let (mut h, _, now, _) = replay(&rule, current, &steps);
            let d = decide(&rule, &observe(current, vec![Reading { name: String::new(), value: Ok(value) }]), &mut h, now, 60.0);
            prop_assert_eq!((d.desired, d.action), (current, Action::None), "{:?}", d);
        }

        /// Over a run of decisions, the changes in each direction within any
        /// `period` add up to at most that direction's `max_step`.
        #[test]
        fn steps_stay_within_policy(
            rule in arb_rule(),
            step_up in 1u64..6,
            step_down in 1u64..6,
            start in 0u64..40,
            steps in prop::collection::vec((0.0f64..60.0, arb_readings()), 1..40),
        ) {
            let mut rule = rule;
            rule.scale_up.max_step = Some(step_up);
            rule.scale_down.max_step = Some(step_down);
            let (_, _, _, moves) = replay(&rule, in_bounds(&rule, start), &steps);
            for &(now, _, _) in &moves {
                for (up, policy) in [(true, rule.scale_up), (false, rule.scale_down)] {
                    let period = policy.period.as_secs_f64();
                    let total: u64 = moves
                        .iter()
                        .filter(|&&(at, from, to)| at <= now && at > now - period && to != from && (to > from) == up)
                        .map(|&(_, from, to)| from.abs_diff(to))
                        .sum();
                    prop_assert!(total <= policy.max_step.unwrap(), "up {up} at {now}: {total} in {moves:?}");
                }
            }
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
                .map(|r| Reading { name: r.name.clone(), value: r.value.clone().map(|v| v * factor + add) })
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
                readings.push(Reading { name: String::new(), value: Err("timeout".into()) });
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
