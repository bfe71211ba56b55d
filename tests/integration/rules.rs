//! `rules check` against services on the private swarm that carry good rules, bad
//! rules and the Microscaling agent's labels.

use serde_json::Value;

use crate::harness::*;

fn problems(out: &std::process::Output) -> Vec<Value> {
    json_lines(&stdout(out))
}

#[test]
fn good_rules_and_microscaling_labels_pass() {
    let good = TestService::create(
        &unique("rule-good"),
        &[
            "--replicas",
            "0",
            "--label",
            "microscale.min=1",
            "--label",
            "microscale.max=10",
            "--label",
            "microscale.metric=redis://queue:6379/0?list=jobs",
            "--label",
            "microscale.target=50",
            "--label",
            "microscale.metric.cpu=engine://cpu",
            "--label",
            "microscale.target-utilization.cpu=70",
            "--label",
            "microscale.scale-down.window=10m",
        ],
    );
    let legacy = TestService::create(
        &unique("rule-legacy"),
        &[
            "--replicas",
            "0",
            "--label",
            "com.microscaling.is-scalable=true",
            "--label",
            "com.microscaling.priority=2",
            "--label",
            "com.microscaling.max-delta=2",
            "--label",
            "com.microscaling.min-containers=1",
            "--label",
            "com.microscaling.max-containers=4",
        ],
    );
    let plain = TestService::create(&unique("rule-none"), &["--replicas", "0"]);
    // With the reader's flags: `queue` is not a service of this swarm.
    let out = ok(plugin(&[
        "rules",
        "check",
        "--metric-allow",
        "queue:6379",
        &good.name,
        &legacy.name,
        &plain.name,
    ]));
    // engine:// on this two-node swarm, where no agent serves the nodes' task stats:
    // a warning (docs/agent.md, Engine stats from every node).
    let text = stdout(&out);
    assert!(
        text.ends_with("2 services with a rule: 0 errors, 1 warning\n"),
        "{text}"
    );
    assert!(
        text.contains("microscale.metric.cpu")
            && text.contains("run no agent serving its tasks' stats"),
        "{text}"
    );
    // through the docker CLI too
    ok(docker(&["microscale", "rules", "check", &good.name]));
}

#[test]
fn bad_rules_name_service_key_value_and_expectation_and_never_stop_the_others() {
    let bad = TestService::create(
        &unique("rule-bad"),
        &[
            "--replicas",
            "0",
            "--label",
            "microscale.min=5",
            "--label",
            "microscale.max=2",
            "--label",
            "microscale.scale-down.windw=5m",
            "--label",
            "microscale.metric=redis://:hunter2@queue:6379/0?list=jobs",
            "--label",
            "microscale.target=0",
        ],
    );
    let global = TestService::create(
        &unique("rule-global"),
        &["--mode", "global", "--label", "microscale.max=3"],
    );
    let fine = TestService::create(
        &unique("rule-fine"),
        &["--replicas", "0", "--label", "microscale.max=3"],
    );
    let out = plugin(&[
        "rules",
        "check",
        "--format",
        "json",
        &bad.name,
        &global.name,
        &fine.name,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let p = problems(&out);
    let find = |svc: &str, key: &str| {
        p.iter()
            .find(|x| x["Service"] == svc && x["Key"] == key)
            .unwrap_or_else(|| panic!("no {svc} {key}: {p:#?}"))
            .clone()
    };
    let min = find(&bad.name, "microscale.min");
    assert_eq!(min["Value"], "5");
    assert_eq!(min["Expected"], "at most microscale.max (2)");
    assert_eq!(min["Severity"], "error");
    assert_eq!(min["Source"], "labels");
    assert_eq!(
        find(&bad.name, "microscale.scale-down.windw")["Expected"],
        "a known key: did you mean microscale.scale-down.window?"
    );
    assert!(
        find(&bad.name, "microscale.target")["Expected"]
            .as_str()
            .unwrap()
            .contains("above 0")
    );
    assert!(
        find(&global.name, "microscale.*")["Expected"]
            .as_str()
            .unwrap()
            .contains("global service")
    );
    assert!(
        p.iter().all(|x| x["Service"] != fine.name.as_str()),
        "{p:#?}"
    );
    assert!(!stdout(&out).contains("hunter2"));

    let table = stdout(&plugin(&["rules", "check", &bad.name, &fine.name]));
    assert!(table.starts_with("SERVICE"), "{table}");
    assert!(
        table.contains("2 services with a rule: 4 errors, 0 warnings"),
        "{table}"
    );
}

#[test]
fn a_rules_file_wins_over_labels_and_is_checked() {
    let svc = TestService::create(
        &unique("rule-file"),
        &["--replicas", "0", "--label", "microscale.max=oops"],
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.toml");
    std::fs::write(
        &file,
        format!("[{}]\nmin = 1\nmax = 4\nmetric = \"redis://q:6379/0?list=a\"\ntarget = 10\n[ghost-service]\nmax = 2\n", svc.name),
    )
    .unwrap();
    let out = ok(plugin(&[
        "rules",
        "check",
        "--rules",
        file.to_str().unwrap(),
        "--metric-allow",
        "q",
        "--format",
        "json",
        &svc.name,
    ]));
    let p = problems(&out);
    // the label's error is not read: the file's rule is used
    assert!(
        p.iter().all(|x| x["Service"] != svc.name.as_str()),
        "{p:#?}"
    );
    let ghost = p.iter().find(|x| x["Service"] == "ghost-service").unwrap();
    assert_eq!(ghost["Severity"], "warning");
    // a broken file is an error before anything else
    std::fs::write(&file, "[x\n").unwrap();
    fails(
        &plugin(&["rules", "check", "--rules", file.to_str().unwrap()]),
        1,
        "is not valid TOML",
    );
    fails(
        &plugin(&["rules", "check", "--rules", "/nonexistent/rules.toml"]),
        1,
        "cannot read the rules file /nonexistent/rules.toml",
    );
    // `xml` alone is a template that prints "xml" per problem, as docker reads it.
    fails(
        &plugin(&["rules", "check", "--format", "{{xml}}"]),
        125,
        "function \"xml\" not defined",
    );
    fails(
        &plugin(&["rules", "check", "--bogus"]),
        125,
        "Usage:  docker microscale rules check [OPTIONS] [SERVICE...]",
    );
}

#[test]
fn plan_applies_bounds_holds_on_unreadable_metrics_and_reports_rule_errors() {
    // Below its minimum: the bounds alone say scale up (Microscaling labels).
    let low = TestService::create(
        &unique("plan-low"),
        &[
            "--replicas",
            "1",
            "--label",
            "com.microscaling.is-scalable=true",
            "--label",
            "com.microscaling.min-containers=2",
            "--label",
            "com.microscaling.max-containers=4",
        ],
    );
    let metric = TestService::create(
        &unique("plan-metric"),
        &[
            "--replicas",
            "0",
            "--label",
            "microscale.min=0",
            "--label",
            "microscale.max=5",
            "--label",
            "microscale.metric=redis://127.0.0.1:1/0?list=jobs",
            "--label",
            "microscale.target=10",
        ],
    );
    let bad = TestService::create(
        &unique("plan-bad"),
        &["--replicas", "0", "--label", "microscale.max=many"],
    );
    wait_until(
        "plan-low running",
        std::time::Duration::from_secs(60),
        || {
            status_json(&low.name)
                .first()
                .is_some_and(|r| r["Running"] == 1)
        },
    );

    let out = plugin(&[
        "plan",
        "--format",
        "json",
        "--detailed-exitcode",
        &low.name,
        &metric.name,
    ]);
    // A metric that could not be read is an error for a CI gate (as for apply),
    // even with changes pending elsewhere; stderr names the held service.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("a metric could not be read for {}", metric.name)),
        "{}",
        stderr(&out)
    );
    let rows = problems(&out);
    let row = |name: &str| rows.iter().find(|r| r["Service"] == name).unwrap().clone();
    let l = row(&low.name);
    assert_eq!(
        (l["Current"].as_u64(), l["Desired"].as_u64()),
        (Some(1), Some(2)),
        "{l}"
    );
    assert_eq!(l["Action"], "scale up");
    let m = row(&metric.name);
    assert_eq!(m["Action"], "hold", "{m}");
    assert_eq!(m["Desired"], 0);
    assert!(
        m["Reasons"][0]
            .as_str()
            .unwrap()
            .contains("(reading redis://127.0.0.1:1/0?list=jobs)"),
        "{m}"
    );

    // Changes pending and nothing unreadable: 2.
    let out = plugin(&["plan", "--detailed-exitcode", &low.name]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Without --detailed-exitcode, a held service is no error: exit 0.
    ok(plugin(&["plan", &metric.name]));
    // a bad rule: reported in the plan, exit 1, and the others still planned
    let out = plugin(&["plan", &bad.name, &metric.name]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.starts_with("SERVICE   ") || text.starts_with("SERVICE"),
        "{text}"
    );
    assert!(
        text.contains(&format!("run `docker microscale rules check {}`", bad.name)),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with(&metric.name)), "{text}");
    // capacity: the budget is never exceeded
    let out = plugin(&["plan", "--format", "json", "--capacity", "1", &low.name]);
    let l = &problems(&out)[0];
    assert!(l["Desired"].as_u64().unwrap() <= 2, "{l}");
    fails(
        &plugin(&["plan", "--capacity", "lots"]),
        125,
        "invalid argument \"lots\" for \"--capacity\" flag",
    );
    fails(
        &plugin(&["plan", "--capacity", "-1"]),
        125,
        "invalid argument \"-1\" for \"--capacity\" flag",
    );
}

#[test]
fn placement_never_takes_a_service_below_its_minimum_and_jobs_take_no_capacity() {
    // Swarm matches constraint values without case: the task runs on the manager.
    let cased = TestService::create(
        &unique("plan-case"),
        &[
            "--replicas",
            "1",
            "--replicas-max-per-node",
            "1",
            "--constraint",
            "node.role==Manager",
            "--label",
            "microscale.max=3",
        ],
    );
    // A constraint typo: nothing can be placed. Never "scale down to 0".
    let typo = TestService::create(
        &unique("plan-typo"),
        &[
            "--replicas",
            "1",
            "--replicas-max-per-node",
            "1",
            "--constraint",
            "node.hostname==no-such-node",
            "--label",
            "microscale.max=3",
        ],
    );
    let job = TestService::create_with_command(
        &unique("plan-job"),
        &[
            "--mode",
            "replicated-job",
            "--replicas",
            "50",
            "--max-concurrent",
            "1",
            "--constraint",
            "node.hostname==no-such-node",
            "--label",
            "microscale.max=60",
        ],
        &["/bin/busybox", "true"],
    );
    // One replica, below its min of 2 (0 would be an operator's pause: a hold).
    let other = TestService::create(
        &unique("plan-other"),
        &[
            "--replicas",
            "1",
            "--label",
            "microscale.min=2",
            "--label",
            "microscale.max=4",
        ],
    );
    wait_until(
        "plan-case running",
        std::time::Duration::from_secs(60),
        || {
            status_json(&cased.name)
                .first()
                .is_some_and(|r| r["Running"] == 1)
        },
    );
    let out = plugin(&[
        "plan",
        "--format",
        "json",
        "--detailed-exitcode",
        &cased.name,
        &typo.name,
    ]);
    let rows = problems(&out);
    let row = |name: &str| rows.iter().find(|r| r["Service"] == name).unwrap().clone();
    let c = row(&cased.name);
    assert_eq!(
        (c["Action"].as_str(), c["Desired"].as_u64()),
        (Some("none"), Some(1)),
        "{c}"
    );
    let t = row(&typo.name);
    assert_eq!(t["Desired"], 1, "{t}");
    assert_eq!(t["Action"], "hold", "{t}");
    assert_eq!(out.status.code(), Some(0), "nothing pending");

    // The job's 50 completions take no capacity: the other service gets its minimum.
    wait_until(
        "plan-other running",
        std::time::Duration::from_secs(60),
        || {
            status_json(&other.name)
                .first()
                .is_some_and(|r| r["Running"] == 1)
        },
    );
    let out = plugin(&[
        "plan",
        "--format",
        "json",
        "--capacity",
        "2",
        &job.name,
        &other.name,
    ]);
    let rows = problems(&out);
    let o = rows
        .iter()
        .find(|r| r["Service"] == other.name.as_str())
        .unwrap();
    assert_eq!(
        (o["Desired"].as_u64(), o["Action"].as_str()),
        (Some(2), Some("scale up")),
        "{o}"
    );
    let j = rows
        .iter()
        .find(|r| r["Service"] == job.name.as_str())
        .unwrap();
    assert_eq!(j["Action"], "not scaled", "{j}");
}
