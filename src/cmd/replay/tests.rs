//! Tests of `replay`'s flags, output, and of the six real-demand traces.

use super::*;

#[test]
fn label_flags_take_keys_with_or_without_the_prefix() {
    let l = labels_flag(&[
        "max=10".into(),
        "microscale.target=50".into(),
        "com.microscaling.priority=2".into(),
        "metric=redis://q:6379/0?list=a=b".into(),
    ])
    .unwrap();
    assert_eq!(l["microscale.max"], "10");
    assert_eq!(l["microscale.target"], "50");
    assert_eq!(l["com.microscaling.priority"], "2");
    assert_eq!(l["microscale.metric"], "redis://q:6379/0?list=a=b");
    for (bad, want) in [
        ("max", "give a rule key, = and its value"),
        ("=3", "the key is empty"),
    ] {
        match labels_flag(&[bad.into()]) {
            Err(Failure::Usage(e)) => assert!(e.contains(want), "{e}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    match labels_flag(&["max=1".into(), "microscale.max=2".into()]) {
        Err(Failure::Usage(e)) => assert!(e.contains("given twice"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn time_and_duration_flags() {
    let now = 1_000_000.0;
    assert_eq!(time_flag("now", "--end", now).unwrap(), now);
    assert_eq!(
        time_flag("now-7d", "--start", now).unwrap(),
        now - 7.0 * 86400.0
    );
    assert_eq!(time_flag("12.5", "--start", now).unwrap(), 12.5);
    assert_eq!(
        time_flag("2024-05-01T00:00:00Z", "--start", now).unwrap(),
        1_714_521_600.0
    );
    match time_flag("yesterday", "--start", now) {
        Err(Failure::Usage(e)) => assert!(e.contains("\"--start\" flag: an RFC 3339 time"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        duration_flag("1m30s", "--converge", Duration::ZERO).unwrap(),
        Duration::from_secs(90)
    );
    assert_eq!(
        duration_flag("45", "--converge", Duration::ZERO).unwrap(),
        Duration::from_secs(45)
    );
    for bad in ["-1", "soon", "400d"] {
        match duration_flag(bad, "--converge", Duration::ZERO) {
            Err(Failure::Usage(e)) => assert!(e.contains("\"--converge\" flag"), "{e}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert!(duration_flag("100ms", "--interval", Duration::from_millis(500)).is_err());
}

#[test]
fn the_prometheus_flag_becomes_a_prometheus_uri() {
    assert_eq!(
        prometheus_uri("http://127.0.0.1:9090", "sum(rate(x[1m]))").unwrap(),
        "prometheus://127.0.0.1:9090?query=sum%28rate%28x%5B1m%5D%29%29"
    );
    assert_eq!(
        prometheus_uri("https://prom.example/prefix/", "up").unwrap(),
        "prometheus://prom.example/prefix/?query=up&tls=true"
    );
    assert_eq!(
        prometheus_uri("prometheus://p:9090?secret-file=/run/secrets/p", "up").unwrap(),
        "prometheus://p:9090?secret-file=/run/secrets/p&query=up"
    );
    for (bad, want) in [
        ("127.0.0.1:9090", "give http://HOST:PORT"),
        ("ftp://p:21", "the scheme is http, https or prometheus"),
        ("http://p:9090?query=up", "give the query with --query"),
    ] {
        match prometheus_uri(bad, "up") {
            Err(Failure::Usage(e)) => assert!(e.contains(want), "{bad}: {e}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn step_lines_and_the_summary_text() {
    let rule = sim::tests::rule(&[
        ("max", "10"),
        ("metric", "redis://q/0?list=a"),
        ("target", "10"),
    ]);
    let s = series::parse_csv(
        "2024-05-01T00:00:00Z,35\n2024-05-01T00:01:00Z,35\n",
        "s.csv",
    )
    .unwrap();
    let steps = sim::replay(
        &rule,
        &s,
        Options {
            start: 1,
            converge: 0.0,
            interval: None,
            placement: None,
        },
    )
    .unwrap();
    let lines = step_lines(&steps, s.absolute);
    assert_eq!(lines[0].at, "2024-05-01T00:00:00Z");
    assert_eq!(lines[0].metric.as_deref(), Some("35 / 10"));
    assert_eq!((lines[0].current, lines[0].desired), (1, 4));
    assert_eq!(lines[0].action, "scale up");
    assert_eq!(lines[1].action, "none");
    let json = crate::render::json_lines(&lines);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let fields: Vec<&str> = FIELDS.list.iter().map(|f| f.name).collect();
    let (mut keys, mut fields) = (keys, fields);
    keys.sort();
    fields.sort();
    assert_eq!(keys, fields, "the template fields are the JSON keys");
    let sum = sim::summarize(&rule, &steps);
    let text = summary_text(&sum);
    assert!(text.contains("steps:               2 over 2m"), "{text}");
    assert!(text.contains("scale-ups:           1"), "{text}");
    assert!(
        text.contains("peak:                4 replicas (low 4)"),
        "{text}"
    );
    assert!(text.contains("this rule costs 1.00x"), "{text}");
    // A Go template over the step lines.
    let f = Format::parse(Some("{{.At}} {{.Desired}}"), FIELDS).unwrap();
    let out = f.render(&lines, |_| String::new()).unwrap();
    assert_eq!(out, "2024-05-01T00:00:00Z 4\n2024-05-01T00:01:00Z 4\n");
}

/// One real-demand trace of `tests/data/traces`, the rule it is replayed with (the
/// defaults: only `max`, the metric and its `target` are set), and what the
/// replay must achieve with the defaults.
struct Trace {
    file: &'static str,
    /// Invocations per minute one replica carries.
    target: &'static str,
    /// Most of the time the running tasks may carry more than the target, as a share
    /// of the series. With the HPA-exact tolerance (0.1 on the raw ratio
    /// `value / (target × running)`), a service carrying up to 10 % more than its
    /// target does not act, so this share is mostly time within the tolerance; the
    /// test also checks that every pass beyond it is one HPA's default scale-up
    /// limit held.
    above_target: f64,
    /// Most replica-seconds as a multiple of following demand exactly.
    cost: f64,
    /// Most direction reversals.
    flaps: u64,
}

// Measured with the HPA-exact decision core (tolerance 0.1 on each metric's raw
// ratio, both ends inclusive; scale-down window 5m with first-sight seeding; no step
// declared, so HPA's default scale-up limit of +4 or +100 % per 15 s, the larger),
// one pass per minute as the series is written, tasks starting at once. The figures
// of the core before it (tolerance on the rounded proposal, no default limit) are in
// brackets.
const TRACES: &[Trace] = &[
    // 10.0 % above target (5.8 %), 1.09x (1.12x), 87 flaps (97). Almost all of the
    // 10 % is within the tolerance: on the raw ratio it keeps N replicas while they
    // carry up to 10 % over their target (with tolerance 0 the share is 0.1 %). Two
    // passes are beyond it: the first two minutes, 1 → 5 → 10 under the default
    // limit where 509-555/min want 11-12. The bound is the measured 10.0 % plus 2
    // points.
    Trace {
        file: "azure_periodic_daytime_http.csv",
        target: "50",
        above_target: 0.12,
        cost: 1.30,
        flaps: 120,
    },
    // 4.2 % (0 %), 1.21x (1.25x), 119 flaps (153): noise of ±30 % around 4-5
    // replicas still beats the tolerance; every pass above target is within it.
    Trace {
        file: "azure_steady_noisy_http.csv",
        target: "5",
        above_target: 0.10,
        cost: 1.40,
        flaps: 185,
    },
    // 11.5 % (0 %), 1.10x (1.21x), 47 flaps (47): one up and one down per burst (24
    // bursts) is the least. Each burst (271-272/min from idle at 1 replica) wants 6;
    // the default limit allows 1 → 5 in the first pass, and 5 replicas then carry
    // 272/250 = 1.088 of the target, within the tolerance, so HPA (and this core)
    // stays at 5 for the whole burst: every burst minute is "above target", by 8.8 %
    // at most. With `scale-up.max-step=none` it is 0 % at 1.21x (the old figures).
    // The bound is the burst minutes (11.5 %) plus 1.5 points.
    Trace {
        file: "azure_bursty_idle_event.csv",
        target: "50",
        above_target: 0.13,
        cost: 1.40,
        flaps: 57,
    },
    // 0.6 % (0 %), 1.09x (1.21x), 3 flaps (3): two spikes; the 3 minutes above target
    // are the default limit's climb (1 → 5, then 5 → 10, where 552-742/min want 12-15).
    Trace {
        file: "azure_spike_http_8h.csv",
        target: "50",
        above_target: 0.10,
        cost: 1.40,
        flaps: 4,
    },
    // 2.9 % (0 %), 1.20x (1.23x), 38 flaps (49); every pass above target is within
    // the tolerance.
    Trace {
        file: "azure_ramp_up_storage_8h.csv",
        target: "5",
        above_target: 0.10,
        cost: 1.40,
        flaps: 60,
    },
    // 1.7 % (0 %), 1.52x (1.64x), 31 flaps (31): each 10-minute burst is followed by
    // 5 minutes of window. Of the 8 minutes above target, 3 are the default limit's
    // climb (1 → 5 → 10 where 324-569/min want 7-12), 5 are within the tolerance.
    Trace {
        file: "azure_onoff_bursty_queue_8h.csv",
        target: "50",
        above_target: 0.10,
        cost: 1.80,
        flaps: 38,
    },
];

fn trace_rule(target: &str) -> Rule {
    sim::tests::rule(&[
        ("max", "40"),
        ("metric", "redis://queue:6379/0?list=jobs"),
        ("target", target),
    ])
}

/// Replays every trace with the rule defaults (from min, deciding once per minute as
/// the series is written) and checks the summary against what the defaults must
/// give: enough replicas when demand comes, few when it goes, no flapping. Run with
/// `--nocapture` to see each summary.
#[test]
fn real_demand_traces_with_the_default_rule() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/traces");
    for t in TRACES {
        let rule = trace_rule(t.target);
        assert_eq!(rule.min, 1, "the default min");
        let series = series::read_file(&dir.join(t.file)).unwrap();
        let steps = sim::replay(
            &rule,
            &series,
            Options {
                start: rule.min,
                converge: 0.0,
                interval: None,
                placement: None,
            },
        )
        .unwrap();
        let s = sim::summarize(&rule, &steps);
        println!(
            "== {} (target {}/min per replica)\n{}",
            t.file,
            t.target,
            summary_text(&s)
        );
        let n = series.points.len() as u64;
        assert_eq!(s.steps, n, "{}", t.file);
        assert_eq!(s.seconds, n as f64 * 60.0, "{}", t.file);
        assert!(s.peak <= rule.max, "{}: peak {}", t.file, s.peak);
        assert!(s.low >= rule.min, "{}: low {}", t.file, s.low);
        assert_eq!(s.holds, 0, "{}: every read succeeded", t.file);
        // Enough when demand comes.
        let share = s.seconds_above_target / s.seconds;
        assert!(
            share <= t.above_target,
            "{}: above target {:.3} of the time",
            t.file,
            share
        );
        // Beyond the tolerance only while HPA's default scale-up limit holds the
        // climb (tasks start at once here, so nothing else can).
        for st in &steps {
            let Some(Ok(v)) = st.readings.first().map(|r| &r.value) else {
                continue;
            };
            let carried = t.target.parse::<f64>().unwrap() * st.running_after as f64;
            if *v > carried * (1.0 + rule.scale_up.tolerance) + 1e-9 {
                assert!(
                    st.decision
                        .reasons
                        .iter()
                        .any(|r| r.contains("(HPA's default)")),
                    "{} at {}: {v} for {} running, beyond the tolerance: {:?}",
                    t.file,
                    st.time,
                    st.running_after,
                    st.decision.reasons
                );
            }
        }
        // Few when it goes.
        let ideal = s.ideal_replica_seconds.expect("per-replica target");
        assert!(
            s.replica_seconds >= ideal * 0.85,
            "{}: {} vs ideal {ideal}",
            t.file,
            s.replica_seconds
        );
        assert!(
            s.replica_seconds <= ideal * t.cost,
            "{}: costs {:.2}x the ideal",
            t.file,
            s.replica_seconds / ideal
        );
        // No flapping.
        if std::env::var_os("REPLAY_ALL").is_none() {
            assert!(s.flaps <= t.flaps, "{}: {} flaps", t.file, s.flaps);
        }
        assert!(
            s.scale_ups >= 1 && s.scale_downs >= 1,
            "{}: it scaled",
            t.file
        );
    }
}

/// The trace files are the ones the README describes: rows, steps, maxima.
#[test]
fn the_traces_are_the_documented_series() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/traces");
    for (file, rows, max) in [
        ("azure_periodic_daytime_http.csv", 1440, 1149.0),
        ("azure_steady_noisy_http.csv", 1440, 32.0),
        ("azure_bursty_idle_event.csv", 1440, 272.0),
        ("azure_spike_http_8h.csv", 480, 742.0),
        ("azure_ramp_up_storage_8h.csv", 480, 34.0),
        ("azure_onoff_bursty_queue_8h.csv", 480, 867.0),
    ] {
        let s = series::read_file(&dir.join(file)).unwrap();
        assert_eq!(s.points.len(), rows, "{file}");
        assert!(
            s.points.windows(2).all(|w| w[1].time - w[0].time == 60.0),
            "{file}"
        );
        let top = s
            .points
            .iter()
            .map(|p| *p.value.as_ref().unwrap())
            .fold(0.0, f64::max);
        assert_eq!(top, max, "{file}");
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("CC BY 4.0"));
}

/// A week at 15-second steps (40 320 steps) replays well under a second in a
/// release build; this debug-build test only guards against a quadratic slip (it
/// allows 20 s). `scripts/bench` measures the release figure.
#[test]
fn a_week_at_15_second_steps_replays_fast() {
    let rule = sim::tests::rule(&[
        ("max", "40"),
        ("metric", "redis://queue:6379/0?list=jobs"),
        ("target", "50"),
    ]);
    let series = week_series();
    let t = std::time::Instant::now();
    let steps = sim::replay(
        &rule,
        &series,
        Options {
            start: 1,
            converge: 30.0,
            interval: None,
            placement: None,
        },
    )
    .unwrap();
    let s = sim::summarize(&rule, &steps);
    let took = t.elapsed();
    assert_eq!(s.steps, 40_320);
    assert!(took < Duration::from_secs(20), "{took:?}");
}

/// A week at 15 s steps made from the daytime trace (each minute's value held four
/// steps, the day repeated seven times).
pub fn week_series() -> Series {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/traces");
    let day = series::read_file(&dir.join("azure_periodic_daytime_http.csv")).unwrap();
    let mut points = Vec::with_capacity(40_320);
    for i in 0..40_320u64 {
        let minute = (i / 4) as usize % day.points.len();
        points.push(series::Point {
            time: i as f64 * 15.0,
            metric: String::new(),
            value: day.points[minute].value.clone(),
        });
    }
    Series {
        points,
        absolute: false,
    }
}
