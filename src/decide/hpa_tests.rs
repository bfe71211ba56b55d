//! Cases ported from the Kubernetes HPA controller's and KEDA's own tests, run
//! through [`decide`] (issue 14). Each test names the test it comes from; the
//! values are theirs, the code is ours.
//!
//! Sources (read, not copied):
//! - kubernetes/kubernetes `pkg/controller/podautoscaler/horizontal_test.go`:
//!   `TestScalingWithRules`, `TestNormalizeDesiredReplicasWithBehavior`,
//!   `TestNormalizeDesiredReplicas`, `TestCalculateScaleUpLimitWithScalingRules`,
//!   `TestCalculateScaleDownLimitWithBehaviors`, `TestScaleUpRCImmediately`,
//!   `TestScaleDownRCImmediately`, `TestScaleUpOneMetricEmpty`,
//!   `TestNoScaleDownOneMetricEmpty`, `TestNoScaleDownOneMetricInvalid`;
//! - `pkg/controller/podautoscaler/replica_calculator_test.go`: the tolerance cases,
//!   and the missing-metrics cases (`TestReplicaCalcMissingMetrics*`) for the engine
//!   source's tasks that could not be measured ([`Coverage`]);
//! - kedacore/keda `pkg/fallback/fallback_test.go` and
//!   `pkg/scaling/executor/scale_scaledobjects_test.go` (activation and idle).
//!
//! How HPA's inputs map onto ours: a "prenormalized desired" of `n` replicas is a
//! per-replica metric of value `n` and target 1 with tolerance 0, so the proposal is
//! exactly `n`; HPA's `scaleUpEvents`/`scaleDownEvents` are [`ScaleEvent`]s at the
//! same times; HPA conditions map to our reasons: `TooManyReplicas` → "capped by
//! max", `TooFewReplicas` → "raised to min", `ScaleUpLimit`/`ScaleDownLimit` →
//! "scale-up/-down limited", `DesiredWithinRange` → none of them.
//!
//! Cases that do not map, and why:
//! - `TestStoreScaleEvents`, and the stored-log lengths of
//!   `TestNormalizeDesiredReplicas*`: HPA reuses the slot of an obsolete entry; we
//!   drop entries that left every window or period (same decisions, other storage;
//!   [`HISTORY_LIMIT`] bounds it).
//! - `TestNormalizeDesiredReplicas` "empty log": HPA seeds the log in
//!   `reconcileAutoscaler`, outside the function under test; our `decide` seeds it
//!   itself (first sight), so the case is ported with `current` equal to the
//!   proposal; the seeding has its own tests in `decide::tests`.
//! - Replica-calculator cases about unready, deleted or hot-CPU pods, container
//!   metrics and CPU requests: Swarm tasks have no readiness gate; a utilisation
//!   metric is one average over the running tasks measured. Missing pods (no
//!   metric) map to tasks the engine source could not measure, and are ported
//!   below, where we differ on purpose: HPA counts a missing pod at 100 % of its
//!   request on a scale-down and may still scale down; we hold every scale-down on
//!   partial data.
//! - HPA cases about conditions, events and API calls (`TestAvoidUnnecessaryUpdates`,
//!   `TestMultipleHPAs`, …): no decision to port.
//! - KEDA: "fallback disabled when the target type is not average value" (we apply
//!   a fallback to every target type), the fallback status conditions, the
//!   `paused-replicas` / `paused-scale-in` annotations (a Swarm service has none; an
//!   operator's 0 is our pause), and scaled jobs.

use super::tests::replicas_per;
use super::*;
use crate::rules::model::{Fallback, MetricRule, Step};

/// An arbitrary "now", seconds since the Unix epoch (2027-01-15).
const NOW: f64 = 1_800_000_000.0;

/// One metric of target 1 per replica, tolerance 0, no windows, no step policies.
fn hpa_rule(min: u64, max: u64) -> Rule {
    let mut r = Rule {
        min,
        max,
        metrics: vec![MetricRule {
            name: String::new(),
            source: "prometheus://p:9090?query=q".into(),
            target: Target::PerReplica(1.0),
        }],
        ..Rule::default()
    };
    for p in [&mut r.scale_up, &mut r.scale_down] {
        p.window = Duration::ZERO;
        p.tolerance = 0.0;
        p.steps = vec![];
    }
    r
}

fn observe(current: u64, value: f64) -> Observation {
    Observation {
        mode: Mode::Replicated,
        replicas: current,
        running: current,
        update: None,
        converging_since: None,
        placement: None,
        readings: vec![Reading {
            name: String::new(),
            value: Ok(value),
            coverage: None,
        }],
    }
}

/// HPA's `generateScalingRules(pods, podsPeriod, percent, percentPeriod, _)`: a 0
/// value leaves that policy out.
fn scaling_rules(pods: u64, pods_period: u64, percent: u64, percent_period: u64) -> Vec<Step> {
    let mut out = vec![];
    if pods != 0 {
        out.extend(replicas_per(pods, pods_period));
    }
    if percent != 0 {
        out.push(Step {
            amount: StepAmount::Percent(percent as f64),
            period: Duration::from_secs(percent_period),
        });
    }
    out
}

/// HPA's `generateEventsUniformDistribution(changes, period)`: event `i` of `n` at
/// `now − (period − seg × (i + 1) + seg / 2)`, `seg = period / n`.
fn uniform(changes: &[u64], period: u64, up: bool) -> Vec<ScaleEvent> {
    let seg = period as f64 / changes.len() as f64;
    changes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let at = NOW - (period as f64 - seg * (i as f64 + 1.0) + seg / 2.0);
            // Only the change counts; the counts themselves are arbitrary.
            if up {
                ScaleEvent {
                    at,
                    from: 1000,
                    to: 1000 + c,
                }
            } else {
                ScaleEvent {
                    at,
                    from: 1000 + c,
                    to: 1000,
                }
            }
        })
        .collect()
}

/// Which HPA condition our reasons amount to.
fn condition(d: &Decision) -> &'static str {
    let has = |s: &str| d.reasons.iter().any(|r| r.starts_with(s));
    if has("scale-up limited") {
        "ScaleUpLimit"
    } else if has("scale-down limited") {
        "ScaleDownLimit"
    } else if has("capped by max") {
        "TooManyReplicas"
    } else if has("raised to min") {
        "TooFewReplicas"
    } else {
        "DesiredWithinRange"
    }
}

struct RulesCase {
    name: &'static str,
    up_events: Vec<ScaleEvent>,
    down_events: Vec<ScaleEvent>,
    min: u64,
    max: u64,
    /// `None`: HPA's defaults (ours: +4 or +100 % per 15 s up, no limit down).
    up: Option<Vec<Step>>,
    down: Option<Vec<Step>>,
    current: u64,
    prenormalized: u64,
    expected: u64,
    condition: &'static str,
}

#[test]
fn test_scaling_with_rules() {
    let c = |name, min, max, current, prenormalized, expected, condition| RulesCase {
        name,
        up_events: vec![],
        down_events: vec![],
        min,
        max,
        up: None,
        down: None,
        current,
        prenormalized,
        expected,
        condition,
    };
    let ups = || uniform(&[1, 5, 9], 120, true);
    let downs = || uniform(&[1, 5, 9], 120, false);
    let cases = vec![
        c(
            "prenormalized desired replicas within range",
            3,
            8,
            5,
            7,
            7,
            "DesiredWithinRange",
        ),
        c(
            "prenormalized desired replicas < minReplicas",
            2,
            8,
            3,
            1,
            2,
            "TooFewReplicas",
        ),
        c(
            "prenormalized desired replicas within range when minReplicas is 0",
            0,
            10,
            1,
            0,
            0,
            "DesiredWithinRange",
        ),
        c(
            "maxReplicas is the limit because maxReplicas < scaleUpLimit",
            1,
            10,
            20,
            1000,
            10,
            "TooManyReplicas",
        ),
        c(
            "desired replica count is more than the maximum replica count",
            100,
            150,
            100,
            1000,
            150,
            "TooManyReplicas",
        ),
        RulesCase {
            up: Some(scaling_rules(0, 0, 1, 60)),
            ..c(
                "scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies",
                1,
                2000,
                3,
                1000,
                4,
                "ScaleUpLimit",
            )
        },
        // HPA skips this one (`testThis: true`); its expectation holds here.
        RulesCase {
            down: Some(scaling_rules(20, 60, 0, 0)),
            ..c(
                "scaleDownLimit is the limit because scaleDownLimit > minReplicas with user defined policies",
                3,
                2000,
                1000,
                3,
                980,
                "ScaleDownLimit",
            )
        },
        c(
            "scaleUp with default behavior",
            1,
            1000,
            10,
            50,
            20,
            "ScaleUpLimit",
        ),
        RulesCase {
            up: Some(scaling_rules(100, 60, 100, 60)),
            ..c(
                "scaleUp with pods policy larger than percent policy",
                1,
                1000,
                10,
                500,
                110,
                "ScaleUpLimit",
            )
        },
        RulesCase {
            up: Some(scaling_rules(2, 60, 100, 60)),
            ..c(
                "scaleUp with percent policy larger than pods policy",
                1,
                1000,
                10,
                500,
                20,
                "ScaleUpLimit",
            )
        },
        RulesCase {
            up: Some(scaling_rules(100, 60, 0, 0)),
            ..c(
                "scaleUp with spec MaxReplicas limitation with large pod policy",
                1,
                1000,
                10,
                50,
                50,
                "DesiredWithinRange",
            )
        },
        RulesCase {
            up: Some(scaling_rules(10000, 60, 0, 0)),
            ..c(
                "scaleUp with spec MaxReplicas limitation with large percent policy",
                1,
                1000,
                10,
                50,
                50,
                "DesiredWithinRange",
            )
        },
        RulesCase {
            up: Some(scaling_rules(30, 60, 0, 0)),
            ..c(
                "scaleUp with pod policy limitation",
                1,
                1000,
                10,
                50,
                40,
                "ScaleUpLimit",
            )
        },
        RulesCase {
            up: Some(scaling_rules(0, 0, 200, 60)),
            ..c(
                "scaleUp with percent policy limitation",
                1,
                1000,
                10,
                50,
                30,
                "ScaleUpLimit",
            )
        },
        RulesCase {
            down: Some(scaling_rules(20, 60, 1, 60)),
            ..c(
                "scaleDown with percent policy larger than pod policy",
                1,
                1000,
                100,
                2,
                80,
                "ScaleDownLimit",
            )
        },
        RulesCase {
            down: Some(scaling_rules(2, 60, 1, 60)),
            ..c(
                "scaleDown with pod policy larger than percent policy",
                1,
                1000,
                100,
                2,
                98,
                "ScaleDownLimit",
            )
        },
        RulesCase {
            down: Some(scaling_rules(100, 60, 0, 0)),
            ..c(
                "scaleDown with spec MinReplicas=nil limitation with large pod policy",
                1,
                1000,
                10,
                0,
                1,
                "TooFewReplicas",
            )
        },
        RulesCase {
            down: Some(scaling_rules(0, 0, 100, 60)),
            ..c(
                "scaleDown with spec MinReplicas limitation with large percent policy",
                5,
                1000,
                10,
                2,
                5,
                "TooFewReplicas",
            )
        },
        RulesCase {
            down: Some(scaling_rules(5, 60, 0, 0)),
            ..c(
                "scaleDown with pod policy limitation",
                1,
                1000,
                10,
                2,
                5,
                "ScaleDownLimit",
            )
        },
        RulesCase {
            down: Some(scaling_rules(0, 0, 50, 60)),
            ..c(
                "scaleDown with percent policy limitation",
                1,
                1000,
                10,
                5,
                5,
                "DesiredWithinRange",
            )
        },
        RulesCase {
            up_events: ups(),
            up: Some(scaling_rules(300, 60, 0, 0)),
            ..c(
                "scaleUp with spec MaxReplicas limitation with large pod policy and events",
                1,
                200,
                100,
                500,
                200,
                "TooManyReplicas",
            )
        },
        RulesCase {
            up_events: ups(),
            up: Some(scaling_rules(0, 0, 10000, 60)),
            ..c(
                "scaleUp with spec MaxReplicas limitation with large percent policy and events",
                1,
                200,
                100,
                500,
                200,
                "TooManyReplicas",
            )
        },
        RulesCase {
            up_events: ups(),
            up: Some(scaling_rules(5, 120, 0, 0)),
            ..c(
                "scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events",
                1,
                1000,
                100,
                500,
                100,
                "ScaleUpLimit",
            )
        },
        RulesCase {
            up_events: ups(),
            up: Some(scaling_rules(150, 120, 0, 0)),
            ..c(
                "scaleUp with pod policy and previous scale up events",
                1,
                1000,
                100,
                500,
                235,
                "ScaleUpLimit",
            )
        },
        RulesCase {
            up_events: ups(),
            up: Some(scaling_rules(0, 0, 200, 120)),
            ..c(
                "scaleUp with percent policy and previous scale up events",
                1,
                1000,
                100,
                500,
                255,
                "ScaleUpLimit",
            )
        },
        RulesCase {
            up_events: uniform(&[4], 120, true),
            down_events: uniform(&[2], 120, false),
            up: Some(scaling_rules(0, 0, 300, 300)),
            ..c(
                "scaleUp with percent policy and previous scale up and down events",
                1,
                1000,
                6,
                24,
                16,
                "ScaleUpLimit",
            )
        },
        RulesCase {
            down_events: downs(),
            ..c(
                "scaleDown with default policy and previous events",
                1,
                1000,
                10,
                5,
                5,
                "DesiredWithinRange",
            )
        },
        RulesCase {
            down_events: downs(),
            down: Some(scaling_rules(115, 120, 0, 0)),
            ..c(
                "scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events",
                1,
                1000,
                100,
                0,
                1,
                "TooFewReplicas",
            )
        },
        RulesCase {
            down_events: downs(),
            down: Some(scaling_rules(130, 120, 0, 0)),
            ..c(
                "scaleDown with spec MinReplicas limitation with large pod policy and previous events",
                5,
                1000,
                100,
                0,
                5,
                "TooFewReplicas",
            )
        },
        RulesCase {
            down_events: downs(),
            down: Some(scaling_rules(0, 0, 100, 120)),
            ..c(
                "scaleDown with spec MinReplicas limitation with large percent policy and previous events",
                5,
                1000,
                100,
                2,
                5,
                "TooFewReplicas",
            )
        },
        RulesCase {
            down_events: downs(),
            down: Some(scaling_rules(5, 120, 0, 0)),
            ..c(
                "scaleDown with pod policy limitation and previous events",
                1,
                1000,
                100,
                2,
                100,
                "ScaleDownLimit",
            )
        },
        RulesCase {
            down_events: uniform(&[2, 4, 6], 120, false),
            down: Some(scaling_rules(0, 0, 50, 120)),
            ..c(
                "scaleDown with percent policy limitation and previous events",
                1,
                1000,
                100,
                0,
                56,
                "ScaleDownLimit",
            )
        },
        RulesCase {
            up_events: uniform(&[2], 120, true),
            down_events: uniform(&[4], 120, false),
            down: Some(scaling_rules(0, 0, 50, 180)),
            ..c(
                "scaleDown with percent policy and previous scale up and down events",
                1,
                1000,
                10,
                1,
                6,
                "ScaleDownLimit",
            )
        },
        RulesCase {
            down_events: uniform(&[10, 10, 10], 120, false),
            down: Some(scaling_rules(0, 0, 10, 120)),
            ..c(
                "scaleDown with previous events preventing further scale down",
                1,
                1000,
                100,
                0,
                100,
                "ScaleDownLimit",
            )
        },
        RulesCase {
            down_events: uniform(&[10, 10, 10], 120, false),
            down: Some(scaling_rules(0, 0, 1000, 120)),
            ..c(
                "scaleDown with with previous events still allowing more scale down",
                1,
                1000,
                10,
                5,
                5,
                "DesiredWithinRange",
            )
        },
        RulesCase {
            up_events: uniform(&[8, 12, 9, 11], 120, true),
            up: Some(scaling_rules(1000, 60, 0, 0)),
            ..c(
                "check 'outdated' flag for events for one behavior for up",
                1,
                1000,
                100,
                200,
                200,
                "DesiredWithinRange",
            )
        },
        RulesCase {
            up_events: uniform(&[8, 12, 9, 11], 120, true),
            up: Some(scaling_rules(1000, 120, 100, 60)),
            ..c(
                "check that events were not marked 'outdated' for two different policies in the behavior for up",
                1,
                1000,
                100,
                200,
                200,
                "DesiredWithinRange",
            )
        },
        RulesCase {
            up_events: uniform(&[8, 12, 9, 11], 120, true),
            up: Some(scaling_rules(1000, 30, 100, 60)),
            ..c(
                "check that events were marked 'outdated' for two different policies in the behavior for up",
                1,
                1000,
                100,
                200,
                200,
                "DesiredWithinRange",
            )
        },
        RulesCase {
            down_events: uniform(&[8, 12, 9, 11], 120, false),
            down: Some(scaling_rules(1000, 60, 0, 0)),
            ..c(
                "check 'outdated' flag for events for one behavior for down",
                1,
                1000,
                100,
                5,
                5,
                "DesiredWithinRange",
            )
        },
        RulesCase {
            down_events: uniform(&[8, 12, 9, 11], 120, false),
            down: Some(scaling_rules(1000, 120, 100, 60)),
            ..c(
                "check that events were not marked 'outdated' for two different policies in the behavior for down",
                1,
                1000,
                100,
                5,
                5,
                "DesiredWithinRange",
            )
        },
        RulesCase {
            down_events: uniform(&[8, 12, 9, 11], 120, false),
            down: Some(scaling_rules(1000, 30, 100, 60)),
            ..c(
                "check that events were marked 'outdated' for two different policies in the behavior for down",
                1,
                1000,
                100,
                5,
                5,
                "DesiredWithinRange",
            )
        },
    ];
    for case in cases {
        let mut rule = hpa_rule(case.min, case.max);
        rule.scale_up.steps = case.up.unwrap_or_else(|| Policy::default_up().steps);
        if let Some(down) = case.down {
            rule.scale_down.steps = down;
        }
        let mut events: Vec<ScaleEvent> =
            case.up_events.into_iter().chain(case.down_events).collect();
        events.sort_by(|a, b| a.at.total_cmp(&b.at));
        let mut h = History {
            events: events.into(),
            ..History::default()
        };
        let d = decide(
            &rule,
            &observe(case.current, case.prenormalized as f64),
            &mut h,
            NOW,
            60.0,
        );
        assert_eq!(d.desired, case.expected, "{}: {:?}", case.name, d.reasons);
        assert_eq!(
            condition(&d),
            case.condition,
            "{}: {:?}",
            case.name,
            d.reasons
        );
    }
}

#[test]
fn test_calculate_scale_up_limit_with_scaling_rules() {
    // select Min of 2 pods / 50 % per 60 s from 1: min(3, ceil(1.5)) = 2.
    let mut rule = hpa_rule(1, 2000);
    rule.scale_up.steps = scaling_rules(2, 60, 50, 60);
    rule.scale_up.select = Select::Min;
    let d = decide(&rule, &observe(1, 1000.0), &mut History::new(), NOW, 60.0);
    assert_eq!(d.desired, 2, "{:?}", d.reasons);
}

#[test]
fn test_calculate_scale_down_limit_with_behaviors() {
    // select Min of 2 pods / 50 % per 60 s from 5: max(3, trunc(2.5)) = 3.
    let mut rule = hpa_rule(0, 2000);
    rule.scale_down.steps = scaling_rules(2, 60, 50, 60);
    rule.scale_down.select = Select::Min;
    let d = decide(&rule, &observe(5, 0.0), &mut History::new(), NOW, 60.0);
    assert_eq!(d.desired, 3, "{:?}", d.reasons);
}

/// `(replicas, seconds before now)` → a history of recommendations.
fn recommendations(recs: &[(u64, f64)]) -> History {
    History {
        recommendations: recs
            .iter()
            .map(|&(replicas, ago)| Recommendation {
                at: NOW - ago,
                replicas,
            })
            .collect(),
        ..History::default()
    }
}

#[test]
fn test_normalize_desired_replicas_with_behavior() {
    // name, recommendations, current, prenormalized, expected, up window, down window
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Vec<(u64, f64)>, u64, u64, u64, u64, u64)> = vec![
        (
            "empty recommendations for scaling down",
            vec![],
            100,
            5,
            5,
            0,
            0,
        ),
        (
            "simple scale down stabilization",
            vec![(4, 120.0), (5, 60.0)],
            100,
            3,
            5,
            0,
            180,
        ),
        (
            "simple scale up stabilization",
            vec![(4, 120.0), (5, 60.0)],
            1,
            7,
            4,
            300,
            0,
        ),
        (
            "no scale down stabilization",
            vec![(1, 120.0), (2, 60.0)],
            100,
            3,
            3,
            300,
            0,
        ),
        (
            "no scale up stabilization",
            vec![(4, 120.0), (5, 60.0)],
            1,
            3,
            3,
            0,
            300,
        ),
        (
            "no scale down stabilization, reuse recommendation element",
            vec![(10, 600.0), (9, 540.0)],
            100,
            3,
            3,
            0,
            0,
        ),
        (
            "no scale up stabilization, reuse recommendation element",
            vec![(10, 600.0), (9, 540.0)],
            1,
            100,
            100,
            0,
            0,
        ),
        (
            "scale down stabilization, reuse one of obsolete recommendation element",
            vec![(10, 600.0), (4, 60.0), (5, 120.0), (9, 540.0)],
            100,
            3,
            5,
            0,
            180,
        ),
        (
            "scale up stabilization, reuse one of obsolete recommendation element",
            vec![(10, 6000.0), (6, 60.0), (5, 120.0), (9, 180.0)],
            1,
            100,
            5,
            300,
            0,
        ),
        (
            "scale up and down stabilization, do not scale up when prenormalized rec goes down",
            vec![(2, 6000.0), (3, 180.0)],
            2,
            1,
            2,
            300,
            300,
        ),
        (
            "scale up and down stabilization, do not scale down when prenormalized rec goes up",
            vec![(2, 6000.0), (1, 180.0)],
            2,
            3,
            2,
            300,
            300,
        ),
    ];
    for (name, recs, current, pre, expected, up_w, down_w) in cases {
        let mut rule = hpa_rule(0, 1000);
        rule.scale_up.window = Duration::from_secs(up_w);
        rule.scale_down.window = Duration::from_secs(down_w);
        let mut h = recommendations(&recs);
        let d = decide(&rule, &observe(current, pre as f64), &mut h, NOW, 60.0);
        assert_eq!(d.desired, expected, "{name}: {:?}", d.reasons);
        // The new recommendation is recorded, the prenormalized one (with both
        // windows 0 nothing is kept: no window needs it).
        let kept = h.recommendations.back().map(|r| r.replicas);
        assert_eq!(kept, (up_w.max(down_w) > 0).then_some(pre), "{name}");
    }
}

#[test]
fn test_normalize_desired_replicas() {
    // The older stabilisation (a 5-minute scale-down window only). HPA's function
    // ignores `current`; ours clamps `current`, so `current` is 10, above every
    // recommendation. "empty log": see the module docs.
    type Case = (&'static str, Vec<(u64, f64)>, u64, u64, u64);
    let cases: Vec<Case> = vec![
        ("empty log", vec![], 5, 5, 5),
        ("stabilize", vec![(4, 120.0), (5, 60.0)], 10, 3, 5),
        ("no stabilize", vec![(1, 120.0), (2, 60.0)], 10, 3, 3),
        (
            "no stabilize - old recommendations",
            vec![(10, 600.0), (9, 540.0)],
            10,
            3,
            3,
        ),
        (
            "stabilize - old recommendations",
            vec![(10, 600.0), (4, 60.0), (5, 120.0), (9, 540.0)],
            10,
            3,
            5,
        ),
    ];
    for (name, recs, current, pre, expected) in cases {
        let mut rule = hpa_rule(0, 1000);
        rule.scale_down.window = Duration::from_secs(300);
        let mut h = recommendations(&recs);
        let d = decide(&rule, &observe(current, pre as f64), &mut h, NOW, 60.0);
        assert_eq!(d.desired, expected, "{name}: {:?}", d.reasons);
    }
}

/// HPA `TestScaleUpRCImmediately` (min 2, 1 replica, no load → 2) and
/// `TestScaleDownRCImmediately` (max 5, 6 replicas, high load → 5): outside the
/// bounds, the bound at once.
#[test]
fn test_scale_rc_immediately() {
    let mut rule = hpa_rule(2, 6);
    rule.metrics[0].target = Target::Utilization(50.0);
    let d = decide(&rule, &observe(1, 0.0), &mut History::new(), NOW, 60.0);
    assert_eq!(
        (d.desired, d.action),
        (2, Action::ScaleUp),
        "{:?}",
        d.reasons
    );
    let mut rule = hpa_rule(2, 5);
    rule.metrics[0].target = Target::Utilization(50.0);
    // 8000 + 9500 + 1000 m of 0.9 + 1.0 + 1.1 CPU requested: 616 %.
    let d = decide(&rule, &observe(6, 616.0), &mut History::new(), NOW, 60.0);
    assert_eq!(
        (d.desired, d.action),
        (5, Action::ScaleDown),
        "{:?}",
        d.reasons
    );
}

/// HPA `TestScaleUpOneMetricEmpty` (one metric fails, CPU 40 % of 30 % on 3 → 4),
/// `TestNoScaleDownOneMetricEmpty` and `TestNoScaleDownOneMetricInvalid` (one metric
/// fails or is of an unknown type, CPU says 3 of 5 → stay 5).
#[test]
fn test_one_metric_empty_or_invalid() {
    let rule_with = |min, max, cpu| {
        let mut r = hpa_rule(min, max);
        r.metrics = vec![
            MetricRule {
                name: "cpu".into(),
                source: "engine://cpu".into(),
                target: Target::Utilization(cpu),
            },
            MetricRule {
                name: "qps".into(),
                source: "prometheus://p:9090?query=q".into(),
                target: Target::PerReplica(0.1),
            },
        ];
        for p in [&mut r.scale_up, &mut r.scale_down] {
            p.tolerance = 0.1;
        }
        r
    };
    let obs = |current, cpu: f64, qps: Option<Result<f64, String>>| Observation {
        readings: std::iter::once(Reading {
            name: "cpu".into(),
            value: Ok(cpu),
            coverage: None,
        })
        .chain(qps.map(|value| Reading {
            name: "qps".into(),
            value,
            coverage: None,
        }))
        .collect(),
        ..observe(current, 0.0)
    };
    let d = decide(
        &rule_with(2, 6, 30.0),
        &obs(3, 40.0, Some(Err("something went wrong".into()))),
        &mut History::new(),
        NOW,
        60.0,
    );
    assert_eq!(
        (d.desired, d.action),
        (4, Action::ScaleUp),
        "{:?}",
        d.reasons
    );
    for qps in [Some(Err("something went wrong".to_string())), None] {
        // 100 + 300 + 500 + 250 + 250 m of 5 × 1 CPU: 28 % of 50 %.
        let d = decide(
            &rule_with(2, 6, 50.0),
            &obs(5, 28.0, qps),
            &mut History::new(),
            NOW,
            60.0,
        );
        assert_eq!((d.desired, d.action), (5, Action::Hold), "{:?}", d.reasons);
    }
}

/// replica_calculator_test.go, the tolerance cases (default tolerance 0.1): the
/// usage ratio is within 0.9..1.1, so the count stays. HPA's object and external
/// `Value` targets compute `ceil(ratio × replicas)` with `ratio = usage / target`,
/// our utilisation formula; `AverageValue` (per pod) targets are our per-replica
/// targets over the total.
#[test]
fn test_replica_calc_tolerance() {
    let cases: Vec<(&str, Target, f64, u64, u64)> = vec![
        // 1010 + 1030 + 1020 m of 0.9 + 1.0 + 1.1 CPU: 102 % of 100 %.
        (
            "TestReplicaCalcTolerance",
            Target::Utilization(100.0),
            102.0,
            3,
            3,
        ),
        // pods metric 20, 21, 21 per pod of 20: the total 62 over 20 per replica.
        (
            "TestReplicaCalcToleranceCM",
            Target::PerReplica(20.0),
            62.0,
            3,
            3,
        ),
        (
            "TestReplicaCalcToleranceCMObject",
            Target::Utilization(20000.0),
            20666.0,
            3,
            3,
        ),
        (
            "TestReplicaCalcTolerancePerPodCMObject",
            Target::PerReplica(5000.0),
            20166.0,
            4,
            4,
        ),
        (
            "TestReplicaCalcToleranceCMExternal",
            Target::Utilization(8888.0),
            8600.0,
            3,
            3,
        ),
        (
            "TestReplicaCalcTolerancePerPodCMExternal",
            Target::PerReplica(2900.0),
            8600.0,
            3,
            3,
        ),
        // And just outside it: 0.6 → ceil(2.9997) = 3.
        (
            "TestReplicaCalcScaleDownCMExternal",
            Target::Utilization(14334.0),
            8600.0,
            5,
            3,
        ),
        (
            "TestReplicaCalcScaleDownPerPodCMExternal",
            Target::PerReplica(2867.0),
            8600.0,
            5,
            3,
        ),
        // TestReplicaCalcComputedToleranceAlgImplementation: 10 pods at 50 %; target
        // 56 % is a ratio of 0.893, outside: ceil(8.93) = 9; target 55 % is 0.909,
        // inside: 10.
        (
            "TestReplicaCalcComputedToleranceAlgImplementation",
            Target::Utilization(56.0),
            50.0,
            10,
            9,
        ),
        (
            "TestReplicaCalcComputedToleranceAlgImplementation (unscaling)",
            Target::Utilization(55.0),
            50.0,
            10,
            10,
        ),
    ];
    for (name, target, value, current, expected) in cases {
        let mut rule = hpa_rule(1, 100);
        rule.metrics[0].target = target;
        for p in [&mut rule.scale_up, &mut rule.scale_down] {
            p.tolerance = 0.1;
        }
        let d = decide(
            &rule,
            &observe(current, value),
            &mut History::new(),
            NOW,
            60.0,
        );
        assert_eq!(d.desired, expected, "{name}: {:?}", d.reasons);
    }
}

/// KEDA `pkg/fallback/fallback_test.go`. KEDA falls back when the failures exceed
/// `failureThreshold`; our `fallback.after` counts the failure that triggers it, so
/// KEDA's threshold 3 is our `after_failures` 4.
#[test]
fn keda_fallback() {
    let mut rule = hpa_rule(1, 20);
    rule.fallback = Some(Fallback {
        replicas: 10,
        after_failures: 4,
    });
    let failing = Observation {
        readings: vec![Reading {
            name: String::new(),
            value: Err("some error".into()),
            coverage: None,
        }],
        ..observe(2, 0.0)
    };
    // "should bump the number of failures when metrics call fails": 0 → 1, and the
    // error stands (a hold).
    let mut h = History::new();
    let d = decide(&rule, &failing, &mut h, NOW, 60.0);
    assert_eq!((h.failures(), d.action), (1, Action::Hold));
    // "should return a normalised metric when number of failures are beyond
    // threshold": from 3 failures, one more → 4 > 3: the fallback's 10 replicas.
    let mut h = History {
        failures: 3,
        ..History::default()
    };
    let d = decide(&rule, &failing, &mut h, NOW, 60.0);
    assert_eq!((h.failures(), d.desired), (4, 10), "{:?}", d.reasons);
    // "should reset the health status when scaler metrics are available": 5 → 0.
    let mut h = History {
        failures: 5,
        ..History::default()
    };
    let d = decide(&rule, &observe(2, 6.0), &mut h, NOW, 60.0);
    assert_eq!((h.failures(), d.desired), (0, 6));
    // "should propagate the error when fallback is disabled": no fallback, hold.
    rule.fallback = None;
    let mut h = History {
        failures: 50,
        ..History::default()
    };
    assert_eq!(
        decide(&rule, &failing, &mut h, NOW, 60.0).action,
        Action::Hold
    );
    // The invalid-parameter case is `rules::tests::a_bad_fallback_does_not_stop_the_rule`.
}

/// KEDA `scale_scaledobjects_test.go`: activation, min and idle.
#[test]
fn keda_activation_and_idle() {
    let inactive = 0.0;
    let active = 3.0;
    let run = |rule: &Rule, current, value| {
        decide(
            rule,
            &observe(current, value),
            &mut History::new(),
            NOW,
            60.0,
        )
    };
    // TestScaleToMinReplicasWhenNotActive: min 0, 10 replicas, inactive → 0.
    let d = run(&hpa_rule(0, 20), 10, inactive);
    assert_eq!(d.desired, 0, "{:?}", d.reasons);
    // TestScaleToMinReplicasFromLowerInitialReplicaCount: min 5, 1 replica → 5.
    let d = run(&hpa_rule(5, 20), 1, inactive);
    assert_eq!(d.desired, 5, "{:?}", d.reasons);
    // TestScaleFromMinReplicasWhenActive: min 0, 0 replicas, active → 1 (with a
    // target that proposes 1).
    let mut r = hpa_rule(0, 20);
    r.metrics[0].target = Target::PerReplica(10.0);
    let d = run(&r, 0, active);
    assert_eq!(
        (d.desired, d.action),
        (1, Action::ScaleUp),
        "{:?}",
        d.reasons
    );
    assert!(
        d.reasons
            .iter()
            .any(|r| r.contains("above activation 0: scaling from 0")),
        "{:?}",
        d.reasons
    );
    // TestScaleToIdleReplicasWhenNotActive: idle 0, min 5, 10 replicas → 0.
    let mut r = hpa_rule(5, 20);
    r.idle = Some(0);
    let d = run(&r, 10, inactive);
    assert_eq!(d.desired, 0, "{:?}", d.reasons);
    // TestScaleFromIdleToMinReplicasWhenActive: idle 0, min 5, 0 replicas → 5.
    let d = run(&r, 0, active);
    assert_eq!(d.desired, 5, "{:?}", d.reasons);
    // TestEventWitTriggerInfo: idle 0, min 5, 2 replicas, active → 5.
    let d = run(&r, 2, active);
    assert_eq!(d.desired, 5, "{:?}", d.reasons);
}

/// replica_calculator.go's missing pods (`GetResourceReplicas`: on a scale-up a pod
/// without a metric counts as 0 %, on a scale-down as 100 % of its request; no change
/// when the new ratio is within tolerance or changes direction), through the engine
/// source's [`Coverage`]. All pods request 1 CPU, so HPA's utilisation is our
/// average percent; target utilisation as in each test; tolerance 0.1 (HPA's
/// default); the pod without metrics runs on `n2`.
#[test]
fn test_replica_calc_missing_metrics() {
    let run = |target: f64, current: u64, measured: u64, average: f64| {
        let mut r = hpa_rule(1, 100);
        r.metrics[0].target = Target::Utilization(target);
        r.scale_up.tolerance = 0.1;
        r.scale_down.tolerance = 0.1;
        let mut o = observe(current, average);
        o.readings[0].coverage = Some(Coverage {
            measured,
            total: current,
            missing: vec!["n2".into()],
        });
        decide(&r, &o, &mut History::new(), NOW, 60.0)
    };
    // (test, target %, current, measured pods, their average %, HPA's answer, ours)
    let cases: [(&str, f64, u64, u64, f64, u64, u64); 6] = [
        // Two pods, one at 100 %: ratio 1.0 → 2.
        (
            "TestReplicaCalcMissingMetricsNoChangeEq",
            100.0,
            2,
            1,
            100.0,
            2,
            2,
        ),
        // One at 190 %: a scale-up, the missing pod at 0 %: ratio 0.95 → 2.
        (
            "TestReplicaCalcMissingMetricsNoChangeGt",
            100.0,
            2,
            1,
            190.0,
            2,
            2,
        ),
        // One at 60 %: a scale-down, the missing pod at 100 %: ratio 0.8, ceil(1.6)
        // = 2. Ours: held at 2.
        (
            "TestReplicaCalcMissingMetricsNoChangeLt",
            100.0,
            2,
            1,
            60.0,
            2,
            2,
        ),
        // Three pods (pod 0 unready in HPA, no metric for pod 2), measured 2000 m of
        // 1 CPU against 50 %: HPA 4. Ours without readiness: the one measured task
        // alone, ceil(1 × 200 / 50) = 4.
        (
            "TestReplicaCalcMissingMetricsUnreadyScaleUp",
            50.0,
            3,
            1,
            200.0,
            4,
            4,
        ),
        // Four pods, three at 10 % of a 50 % target, one missing: HPA scales down
        // to 3 (the missing pod at 100 %). Ours: held at 4, partial data.
        (
            "TestReplicaCalcMissingMetricsUnreadyScaleDown",
            50.0,
            4,
            3,
            10.0,
            3,
            4,
        ),
        // Target 300 %: HPA counts the missing pod at 300 % and scales 4 → 2. Ours:
        // held at 4. (HPA's request-weighted 6 % with 1 and 2 CPU requests is our
        // unweighted average: every task has one limit.)
        (
            "TestReplicaCalcMissingMetricsScaleDownTargetOver100",
            300.0,
            4,
            3,
            6.0,
            2,
            4,
        ),
    ];
    for (name, target, current, measured, average, hpa, ours) in cases {
        let d = run(target, current, measured, average);
        assert_eq!(d.desired, ours, "{name} (HPA: {hpa}): {:?}", d.reasons);
        if ours < hpa || (ours == current && hpa < current) {
            assert!(
                d.reasons
                    .iter()
                    .any(|r| r.contains("no scale-down on partial data")),
                "{name}: {:?}",
                d.reasons
            );
        }
    }
}
