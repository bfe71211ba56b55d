//! The simulation behind `replay`: a series of metric readings goes through the
//! same [`decide::decide`] as the agent's, with one [`History`] kept across the
//! passes, and the service's replicas follow each decision (at once, or after
//! `converge` seconds for a scale-up); then the [`Summary`].
//!
//! Nothing here does I/O or reads a clock: the passes' times are the series'.

use serde::Serialize;

use super::series::{Point, Series};
use crate::decide::{self, Action, Decision, History, Observation, Reading};
use crate::rules::model::{Rule, Target};
use crate::swarm::service::Mode;

/// How the replayed service behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Replicas (spec and running) before the first pass.
    pub start: u64,
    /// Seconds new tasks take to run after a scale-up (0: at once). A scale-down
    /// stops tasks at once.
    pub converge: f64,
    /// Decide every this many seconds (the agent's `--interval`), each pass seeing
    /// every metric's latest point at or before it; `None`: one pass per distinct
    /// time of the series, seeing only the points at that time.
    pub interval: Option<f64>,
    /// The placement limit of the live service (`Placement.MaxReplicas` × eligible
    /// nodes, as the agent sees it now); `None`: unlimited.
    pub placement: Option<crate::decide::Placement>,
}

/// One decision pass of the replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// When (seconds, the series' epoch).
    pub time: f64,
    /// The readings the decision saw.
    pub readings: Vec<Reading>,
    /// Tasks running when the decision was made.
    pub running: u64,
    /// The decision ([`Decision::current`] is the spec's replicas before it).
    pub decision: Decision,
    /// Tasks running right after the decision (less than `desired` while a scale-up
    /// converges).
    pub running_after: u64,
    /// Seconds until the next pass (the last pass lasts as long as the one before it,
    /// or the interval).
    pub duration: f64,
    /// When the tasks started by this decision run, if it scaled up and they do not
    /// run at once.
    pub ready_at: Option<f64>,
}

/// What the replay did, over the whole series.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    /// Decision passes.
    pub steps: u64,
    /// Seconds from the first pass to the end of the last.
    pub seconds: f64,
    /// Decisions that scaled up.
    pub scale_ups: u64,
    /// Decisions that scaled down.
    pub scale_downs: u64,
    /// Direction reversals: a scale event in the other direction than the one before.
    pub flaps: u64,
    /// Decisions that held (no decision: converging, unreadable metrics).
    pub holds: u64,
    /// Running replicas integrated over time (replica-seconds): what the rule costs.
    pub replica_seconds: f64,
    /// Per-replica metrics only: `ceil(value / target)` clamped to `[min, max]`,
    /// integrated over time (replica-seconds): what a rule that followed demand
    /// exactly, at once, would cost; `None` when the rule has a utilisation metric.
    pub ideal_replica_seconds: Option<f64>,
    /// Most replicas the spec asked for.
    pub peak: u64,
    /// Seconds during which some metric was above its target for the running tasks
    /// (per replica: `value > target × running`; utilisation: `value > target`).
    pub seconds_above_target: f64,
    /// Fewest replicas running at any time.
    pub low: u64,
}

/// The rule's metric name for a point: an unnamed point feeds the rule's only
/// metric. Errors: a name the rule does not have; an unnamed point when the rule has
/// several metrics.
fn metric_of<'a>(rule: &'a Rule, p: &Point) -> Result<&'a str, String> {
    let names: Vec<&str> = rule.metrics.iter().map(|m| m.name.as_str()).collect();
    let shown = |names: &[&str]| {
        names
            .iter()
            .map(|n| {
                if n.is_empty() {
                    "\"\" (microscale.metric)".to_string()
                } else {
                    format!("{n:?}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(n) = names.iter().find(|n| **n == p.metric) {
        return Ok(n);
    }
    if p.metric.is_empty() && names.len() == 1 {
        return Ok(names[0]);
    }
    if names.is_empty() {
        return Err(
            "the rule has no metric: nothing to replay (add microscale.metric and microscale.target)"
                .into(),
        );
    }
    if p.metric.is_empty() {
        return Err(format!(
            "the series names no metric but the rule has {}: {}; add a metric column (CSV) or \"metric\" key (JSON lines)",
            names.len(),
            shown(&names)
        ));
    }
    Err(format!(
        "the series has metric {:?}, which the rule does not have (it has {})",
        crate::edge::text::printable(&p.metric),
        shown(&names)
    ))
}

/// The decision passes of `series`: `(time, readings)`.
fn passes(
    rule: &Rule,
    series: &Series,
    interval: Option<f64>,
) -> Result<Vec<(f64, Vec<Reading>)>, String> {
    let mut named: Vec<(f64, &str, &Result<f64, String>)> = Vec::with_capacity(series.points.len());
    for p in &series.points {
        named.push((p.time, metric_of(rule, p)?, &p.value));
    }
    let reading = |name: &str, value: &Result<f64, String>| Reading {
        name: name.to_string(),
        value: value.clone(),
        coverage: None,
    };
    let mut out: Vec<(f64, Vec<Reading>)> = vec![];
    match interval {
        None => {
            for (t, name, v) in named {
                match out.last_mut() {
                    Some((last, readings)) if *last == t => {
                        // A second point of the same metric at one time: the last counts.
                        readings.retain(|r| r.name != name);
                        readings.push(reading(name, v));
                    }
                    _ => out.push((t, vec![reading(name, v)])),
                }
            }
        }
        Some(step) => {
            if !(step.is_finite() && step > 0.0) {
                return Err("the interval must be above 0 seconds".into());
            }
            let (first, last) = match (named.first(), named.last()) {
                (Some(f), Some(l)) => (f.0, l.0),
                _ => return Ok(out),
            };
            // At most a million passes (a year at 30 s): each keeps its readings.
            let n = ((last - first) / step).floor().min(1e12) as u64 + 1;
            if n > 1_000_000 {
                return Err(format!(
                    "{n} passes at this interval: give a longer --interval or a shorter series"
                ));
            }
            let mut latest: Vec<Reading> = vec![];
            let mut next = 0;
            for i in 0..n {
                let t = first + i as f64 * step;
                while next < named.len() && named[next].0 <= t {
                    let (_, name, v) = named[next];
                    latest.retain(|r| r.name != name);
                    latest.push(reading(name, v));
                    next += 1;
                }
                out.push((t, latest.clone()));
            }
        }
    }
    Ok(out)
}

/// Replays `series` against `rule` from `opts.start` replicas.
///
/// Each pass observes a replicated service with the spec's replicas and the running
/// tasks as the earlier decisions left them, no update in progress and the placement
/// limit of `opts`, and calls [`decide::decide`] with one [`History`] for the whole
/// replay (as the agent keeps one per service) and [`crate::plan::GRACE_SECS`]. The
/// history starts empty, so the first pass is the agent's first sight of the
/// service: `decide` seeds it with `opts.start`, and the first scale-down waits one
/// whole scale-down window from the first pass.
///
/// Errors: a point whose metric the rule does not have (see [`Point::metric`]), a
/// rule without metrics, a bad interval.
pub fn replay(rule: &Rule, series: &Series, opts: Options) -> Result<Vec<Step>, String> {
    let passes = passes(rule, series, opts.interval)?;
    let mut history = History::default();
    let mut replicas = opts.start;
    let mut running = opts.start;
    // A scale-up on its way: (running from, how many, since).
    let mut pending: Option<(f64, u64, f64)> = None;
    let mut steps: Vec<Step> = Vec::with_capacity(passes.len());
    let count = passes.len();
    for (now, readings) in passes {
        if let Some((at, n, _)) = pending
            && now >= at
        {
            running = n;
            pending = None;
        }
        let obs = Observation {
            mode: Mode::Replicated,
            replicas,
            running,
            update: None,
            converging_since: pending.map(|(_, _, since)| since),
            placement: opts.placement,
            readings,
        };
        let d = decide::decide(rule, &obs, &mut history, now, crate::plan::GRACE_SECS);
        let before = running;
        let mut ready_at = None;
        if d.desired != replicas && matches!(d.action, Action::ScaleUp | Action::ScaleDown) {
            replicas = d.desired;
            if replicas <= running || opts.converge <= 0.0 {
                running = replicas;
                pending = None;
            } else {
                let at = now + opts.converge;
                pending = Some((at, replicas, now));
                ready_at = Some(at);
            }
        }
        steps.push(Step {
            time: now,
            readings: obs.readings,
            running: before,
            decision: d,
            running_after: running,
            // Set below, once the next pass's time is known.
            duration: 0.0,
            ready_at,
        });
    }
    for i in 0..count {
        steps[i].duration = if i + 1 < count {
            steps[i + 1].time - steps[i].time
        } else if let Some(step) = opts.interval {
            step
        } else if i > 0 {
            steps[i].time - steps[i - 1].time
        } else {
            0.0
        };
    }
    Ok(steps)
}

/// Whether some reading is above its target for `running` tasks.
fn above_target(rule: &Rule, readings: &[Reading], running: u64) -> bool {
    rule.metrics.iter().any(|m| {
        let Some(Ok(v)) = readings.iter().find(|r| r.name == m.name).map(|r| &r.value) else {
            return false;
        };
        match m.target {
            Target::PerReplica(t) => *v > t * running as f64,
            Target::Utilization(t) => *v > t,
        }
    })
}

/// Replicas a rule that followed demand exactly would run: the largest
/// `ceil(value / target)` of the per-replica metrics, clamped to `[min, max]`;
/// `None` with a utilisation metric. Unreadable metrics count as 0.
fn ideal(rule: &Rule, readings: &[Reading]) -> Option<u64> {
    let mut best = 0u64;
    for m in &rule.metrics {
        let Target::PerReplica(t) = m.target else {
            return None;
        };
        if let Some(Ok(v)) = readings.iter().find(|r| r.name == m.name).map(|r| &r.value) {
            best = best.max((v / t - 1e-9).ceil().max(0.0) as u64);
        }
    }
    Some(best.clamp(rule.min, rule.max.max(rule.min)))
}

/// The [`Summary`] of a replay of `rule`.
pub fn summarize(rule: &Rule, steps: &[Step]) -> Summary {
    let mut s = Summary {
        steps: steps.len() as u64,
        ideal_replica_seconds: Some(0.0),
        low: u64::MAX,
        ..Summary::default()
    };
    let mut last_dir: Option<bool> = None;
    for st in steps {
        let d = &st.decision;
        match d.action {
            Action::ScaleUp | Action::ScaleDown => {
                let up = d.action == Action::ScaleUp;
                if up {
                    s.scale_ups += 1;
                } else {
                    s.scale_downs += 1;
                }
                if last_dir.is_some_and(|was| was != up) {
                    s.flaps += 1;
                }
                last_dir = Some(up);
            }
            Action::Hold => s.holds += 1,
            Action::None | Action::NotScaled => {}
        }
        s.peak = s.peak.max(d.desired).max(d.current);
        s.seconds += st.duration;
        // Running tasks over the pass: `running_after` until `ready_at`, then the
        // spec's replicas.
        let mut parts = vec![(st.duration, st.running_after)];
        if let Some(at) = st.ready_at {
            let first = (at - st.time).clamp(0.0, st.duration);
            parts = vec![(first, st.running_after), (st.duration - first, d.desired)];
        } else if st.running_after != d.desired {
            // Converging from an earlier decision: it may finish inside this pass,
            // but the next pass sees it; count what runs now.
            parts = vec![(st.duration, st.running_after)];
        }
        for (secs, n) in parts {
            s.replica_seconds += secs * n as f64;
            if secs > 0.0 || steps.len() == 1 {
                s.low = s.low.min(n);
            }
            if above_target(rule, &st.readings, n) {
                s.seconds_above_target += secs;
            }
        }
        s.ideal_replica_seconds = match (s.ideal_replica_seconds, ideal(rule, &st.readings)) {
            (Some(sum), Some(n)) => Some(sum + st.duration * n as f64),
            _ => None,
        };
    }
    if s.low == u64::MAX {
        s.low = 0;
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rules::parse_labels;
    use std::collections::BTreeMap;

    /// A rule from labels (as `--label` gives it), checked to have no error.
    pub(crate) fn rule(labels: &[(&str, &str)]) -> Rule {
        let map: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (format!("microscale.{k}"), v.to_string()))
            .collect();
        let parsed = parse_labels("replay", Mode::Replicated, &map);
        parsed
            .rule
            .unwrap_or_else(|| panic!("{:?}", parsed.problems))
    }

    fn series(points: &[(f64, f64)]) -> Series {
        Series {
            points: points
                .iter()
                .map(|&(time, v)| Point {
                    time,
                    metric: String::new(),
                    value: Ok(v),
                })
                .collect(),
            absolute: false,
        }
    }

    fn o(start: u64, converge: f64, interval: Option<f64>) -> Options {
        Options {
            start,
            converge,
            interval,
            placement: None,
        }
    }

    fn desired(steps: &[Step]) -> Vec<u64> {
        steps.iter().map(|s| s.decision.desired).collect()
    }

    #[test]
    fn the_history_carries_the_scale_down_window_across_passes() {
        let r = rule(&[
            ("max", "10"),
            ("metric", "redis://q/0?list=a"),
            ("target", "10"),
            ("scale-down.window", "60s"),
        ]);
        // Demand 50 for a minute, then 10: the window holds 5 for 60 s.
        let s = series(&[
            (0.0, 50.0),
            (15.0, 50.0),
            (30.0, 10.0),
            (45.0, 10.0),
            (60.0, 10.0),
            (75.0, 10.0),
            (90.0, 10.0),
        ]);
        let steps = replay(&r, &s, o(1, 0.0, None)).unwrap();
        assert_eq!(desired(&steps), [5, 5, 5, 5, 5, 1, 1]);
        assert!(
            steps[2]
                .decision
                .reasons
                .iter()
                .any(|r| r.contains("scale-down window")),
            "{:?}",
            steps[2].decision.reasons
        );
        let sum = summarize(&r, &steps);
        // Up, then down: one reversal.
        assert_eq!(
            (sum.scale_ups, sum.scale_downs, sum.flaps, sum.peak),
            (1, 1, 1, 5)
        );
        // 75 s at 5 replicas, the last two passes (30 s) at 1.
        assert_eq!(sum.replica_seconds, 5.0 * 75.0 + 30.0);
        assert_eq!(sum.seconds, 105.0);
        assert_eq!(sum.low, 1);
        // Demand 50 from t=0 needs 5; started at 1 the decision acts at once.
        assert_eq!(sum.seconds_above_target, 0.0);
        // Ideal: 5 for 30 s, then 1.
        assert_eq!(sum.ideal_replica_seconds, Some(5.0 * 30.0 + 75.0));
    }

    #[test]
    fn the_first_pass_is_first_sight_so_the_first_scale_down_waits_a_whole_window() {
        // As the agent seeing a service for the first time: the starting replicas are
        // the first recommendation, so low demand from the first pass on does not
        // scale down before the default 5-minute window has passed.
        let r = rule(&[
            ("max", "10"),
            ("metric", "redis://q/0?list=a"),
            ("target", "10"),
        ]);
        let s = series(&(0..8).map(|i| (i as f64 * 60.0, 10.0)).collect::<Vec<_>>());
        let steps = replay(&r, &s, o(4, 0.0, None)).unwrap();
        // Held at t = 0..240; at t = 300 the seed is a whole window old and leaves.
        assert_eq!(desired(&steps), [4, 4, 4, 4, 4, 1, 1, 1]);
        assert!(
            steps[0]
                .decision
                .reasons
                .iter()
                .any(|r| r.contains("first sight")),
            "{:?}",
            steps[0].decision.reasons
        );
    }

    #[test]
    fn a_converge_delay_holds_the_decisions_and_counts_time_above_target() {
        let r = rule(&[
            ("max", "10"),
            ("metric", "redis://q/0?list=a"),
            ("target", "10"),
        ]);
        let s = series(&[(0.0, 40.0), (15.0, 40.0), (30.0, 40.0), (45.0, 40.0)]);
        let steps = replay(&r, &s, o(1, 30.0, None)).unwrap();
        assert_eq!(steps[0].decision.action, Action::ScaleUp);
        assert_eq!(steps[0].running_after, 1);
        assert_eq!(steps[0].ready_at, Some(30.0));
        assert_eq!(steps[1].decision.action, Action::Hold);
        assert!(
            steps[1]
                .decision
                .reasons
                .iter()
                .any(|r| r.contains("converging (1/4 running"))
        );
        assert_eq!(steps[2].running, 4);
        let sum = summarize(&r, &steps);
        // 1 replica for 30 s (above target: 40 > 10), then 4 for 30 s.
        assert_eq!(sum.replica_seconds, 30.0 + 4.0 * 30.0);
        assert_eq!(sum.seconds_above_target, 30.0);
        assert_eq!(sum.holds, 1);
    }

    #[test]
    fn flaps_count_direction_reversals() {
        let r = rule(&[
            ("max", "10"),
            ("metric", "redis://q/0?list=a"),
            ("target", "10"),
            ("scale-down.window", "0s"),
        ]);
        let s = series(&[
            (0.0, 50.0),
            (60.0, 10.0),
            (120.0, 50.0),
            (180.0, 90.0),
            (240.0, 10.0),
        ]);
        let steps = replay(&r, &s, o(1, 0.0, None)).unwrap();
        assert_eq!(desired(&steps), [5, 1, 5, 9, 1]);
        let sum = summarize(&r, &steps);
        // up, down (flap), up (flap), up, down (flap).
        assert_eq!((sum.scale_ups, sum.scale_downs, sum.flaps), (3, 2, 3));
        assert_eq!(sum.peak, 9);
    }

    #[test]
    fn an_interval_holds_each_metric_until_its_next_point() {
        let r = rule(&[
            ("max", "10"),
            ("metric", "redis://q/0?list=a"),
            ("target", "10"),
        ]);
        let s = series(&[(0.0, 20.0), (60.0, 40.0)]);
        let steps = replay(&r, &s, o(2, 0.0, Some(15.0))).unwrap();
        let times: Vec<f64> = steps.iter().map(|s| s.time).collect();
        assert_eq!(times, [0.0, 15.0, 30.0, 45.0, 60.0]);
        assert_eq!(desired(&steps), [2, 2, 2, 2, 4]);
        assert_eq!(steps[4].duration, 15.0);
        assert!(replay(&r, &s, o(2, 0.0, Some(0.0))).is_err());
    }

    #[test]
    fn failed_reads_hold_and_reach_the_fallback() {
        let r = rule(&[
            ("max", "10"),
            ("metric", "redis://q/0?list=a"),
            ("target", "10"),
            ("fallback", "6"),
            ("fallback.after", "2"),
        ]);
        let mut s = series(&[(0.0, 30.0)]);
        for t in [15.0, 30.0] {
            s.points.push(Point {
                time: t,
                metric: String::new(),
                value: Err("connection refused".into()),
            });
        }
        let steps = replay(&r, &s, o(3, 0.0, None)).unwrap();
        assert_eq!(steps[1].decision.action, Action::Hold);
        assert!(steps[1].decision.reasons[0].contains("connection refused"));
        assert_eq!(
            (steps[2].decision.action, steps[2].decision.desired),
            (Action::ScaleUp, 6)
        );
    }

    #[test]
    fn series_metric_names_must_match_the_rule() {
        let r = rule(&[
            ("max", "10"),
            ("metric.a", "redis://q/0?list=a"),
            ("target.a", "10"),
            ("metric.b", "redis://q/0?list=b"),
            ("target.b", "10"),
        ]);
        let e = replay(&r, &series(&[(0.0, 1.0)]), o(1, 0.0, None)).unwrap_err();
        assert!(
            e.contains("names no metric but the rule has 2: \"a\", \"b\""),
            "{e}"
        );
        let mut s = series(&[(0.0, 1.0)]);
        s.points[0].metric = "c".into();
        let e = replay(&r, &s, o(1, 0.0, None)).unwrap_err();
        assert!(
            e.contains("metric \"c\", which the rule does not have"),
            "{e}"
        );
        // Both named: one pass with both readings; the larger proposal wins (b: 7),
        // and HPA's default scale-up limit (no `max-step` declared: +4 or +100 % per
        // 15 s, the larger) lets 1 replica go to 5 in one pass.
        let s = Series {
            points: vec![
                Point {
                    time: 0.0,
                    metric: "a".into(),
                    value: Ok(30.0),
                },
                Point {
                    time: 0.0,
                    metric: "b".into(),
                    value: Ok(70.0),
                },
            ],
            absolute: false,
        };
        let steps = replay(&r, &s, o(1, 0.0, None)).unwrap();
        assert_eq!((steps.len(), steps[0].decision.desired), (1, 5));
        assert!(
            steps[0]
                .decision
                .reasons
                .iter()
                .any(|r| r.contains("(HPA's default), the most of them → 5")),
            "{:?}",
            steps[0].decision.reasons
        );
    }

    #[test]
    fn the_replay_makes_the_agents_decisions() {
        // The same decide with the same history: a pass-by-pass call of the core gives
        // the same decisions as the replay.
        let r = rule(&[
            ("max", "20"),
            ("metric", "redis://q/0?list=a"),
            ("target", "10"),
            ("scale-down.window", "45s"),
        ]);
        let values = [5.0, 80.0, 81.0, 30.0, 20.0, 150.0, 10.0, 10.0, 10.0, 10.0];
        let s = series(
            &values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64 * 15.0, *v))
                .collect::<Vec<_>>(),
        );
        let steps = replay(&r, &s, o(1, 0.0, None)).unwrap();
        let mut h = History::default();
        let mut replicas = 1;
        for (i, v) in values.iter().enumerate() {
            let obs = Observation {
                mode: Mode::Replicated,
                replicas,
                running: replicas,
                update: None,
                converging_since: None,
                placement: None,
                readings: vec![Reading {
                    name: String::new(),
                    value: Ok(*v),
                    coverage: None,
                }],
            };
            let d = decide::decide(&r, &obs, &mut h, i as f64 * 15.0, crate::plan::GRACE_SECS);
            assert_eq!(d, steps[i].decision, "pass {i}");
            replicas = d.desired;
        }
    }

    proptest::proptest! {
        #[test]
        fn summary_invariants(values in proptest::collection::vec(0.0f64..500.0, 1..60), start in 0u64..12) {
            let r = rule(&[("min", "1"), ("max", "12"), ("metric", "redis://q/0?list=a"), ("target", "25")]);
            let s = series(&values.iter().enumerate().map(|(i, v)| (i as f64 * 15.0, *v)).collect::<Vec<_>>());
            let steps = replay(&r, &s, o(start, 0.0, None)).unwrap();
            let sum = summarize(&r, &steps);
            proptest::prop_assert_eq!(sum.steps as usize, values.len());
            proptest::prop_assert!(sum.flaps < (sum.scale_ups + sum.scale_downs).max(1));
            proptest::prop_assert!(sum.seconds_above_target <= sum.seconds);
            proptest::prop_assert!(sum.peak <= 12.max(start));
            proptest::prop_assert!(sum.replica_seconds <= sum.seconds * sum.peak as f64 + 1e-6);
            // Each decision starts from the previous one's replicas.
            for w in steps.windows(2) {
                proptest::prop_assert_eq!(w[1].decision.current, w[0].decision.desired);
            }
        }
    }
}
