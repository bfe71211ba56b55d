//! The decision history kept in the swarm (issue 14): a fresh agent, a SIGKILLed
//! holder and its successor, a cron `apply` across invocations, and `apply` while
//! an agent holds the lease. Each test has a lease (and so a history config) of its
//! own, and services of its own.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn is(line: &Value, message: &str, service: &str) -> bool {
    line["message"] == message && line["service"] == service
}

/// A service of `replicas` replicas whose rule reads `depth` from the JSON served on
/// `port` (10 per replica, 1..=max), with `extra` rule labels.
fn ruled(prefix: &str, port: u16, replicas: u32, max: u32, extra: &[&str]) -> TestService {
    let metric = format!("microscale.metric=http://127.0.0.1:{port}/#/depth");
    let max = format!("microscale.max={max}");
    let replicas = replicas.to_string();
    let mut args = vec![
        "--replicas",
        replicas.as_str(),
        "--update-monitor",
        "1s",
        "--label",
        &max,
        "--label",
        &metric,
        "--label",
        "microscale.target=10",
    ];
    for e in extra {
        args.push("--label");
        args.push(e);
    }
    TestService::create(&unique(prefix), &args)
}

fn running(svc: &TestService, n: u64) {
    wait_until("the service to run", Duration::from_secs(60), || {
        docker_service_ls(&svc.name)
            .first()
            .is_some_and(|r| r["Replicas"] == format!("{n}/{n}").as_str())
    });
}

fn secs(d: jiff::SignedDuration) -> f64 {
    d.as_secs_f64()
}

#[test]
fn a_fresh_agent_with_a_five_minute_window_does_not_scale_down_on_its_first_pass() {
    let (port, _depth) = serve_json_cell(r#"{"depth": 0}"#);
    let svc = ruled("hist-fresh", port, 4, 6, &[]);
    running(&svc, 4);
    let lease = unique("lease");
    let out = plugin(&["run", "--once", "--lease-name", &lease, &svc.name]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        replicas(&svc.name),
        4,
        "scaled down on the first pass of a fresh agent, inside the default 5-minute window:\n{}",
        stderr(&out)
    );
}

#[test]
fn after_sigkill_of_the_holder_a_second_agent_continues_the_window_and_the_step_period() {
    // Steps: +1 per 30 s; the metric asks for 4 at once.
    let (steps_port, _steps_depth) = serve_json_cell(r#"{"depth": 40}"#);
    let steps = ruled(
        "hist-steps",
        steps_port,
        1,
        4,
        &[
            "microscale.scale-up.max-step=1",
            "microscale.scale-up.period=30s",
        ],
    );
    // Window: 3 replicas needed, then none; scale-down window 30 s.
    let (window_port, window_depth) = serve_json_cell(r#"{"depth": 30}"#);
    let window = ruled(
        "hist-window",
        window_port,
        3,
        4,
        &["microscale.scale-down.window=30s"],
    );
    running(&steps, 1);
    running(&window, 3);
    let lease = unique("lease");
    let args = [
        "--interval",
        "1s",
        "--lease-name",
        &lease,
        "--lease-ttl",
        "3s",
        &steps.name,
        &window.name,
    ];
    let a = Agent::start(&args);
    a.wait_log("A to take the lease", Duration::from_secs(30), |l| {
        l["message"] == "lease acquired: this agent acts"
    });
    let b = Agent::start(&args);
    b.wait_log("B to stand by", Duration::from_secs(30), |l| {
        l["message"] == "lease held by another agent: standing by"
    });
    let stepped = a.wait_log("A's first step", Duration::from_secs(30), |l| {
        is(l, "scaled", &steps.name) && l["to"] == 2
    });
    // A sees 3 for a few passes, then the demand goes.
    std::thread::sleep(Duration::from_secs(3));
    let dropped = jiff::Timestamp::now();
    *window_depth.lock().unwrap() = r#"{"depth": 0}"#.to_string();
    // A sees the drop at its next pass (1 s) and holds by the window (a steady
    // decision, logged at DEBUG only); it goes on for a while, then dies without
    // a word.
    std::thread::sleep(Duration::from_secs(10));
    let killed = jiff::Timestamp::now();
    a.kill();
    assert_eq!(
        replicas(&steps.name),
        2,
        "A made a second step inside the period"
    );
    assert_eq!(replicas(&window.name), 3, "A scaled down inside the window");

    let took = b.wait_log("B to take over", Duration::from_secs(30), |l| {
        l["message"] == "lease acquired: this agent acts"
    });
    b.wait_log("B to read the history", Duration::from_secs(30), |l| {
        l["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("decision history read from the swarm")
    });
    eprintln!(
        "B took over {:.1}s after the kill",
        secs(at(&took).duration_since(killed))
    );

    // The step period continues: B's step comes 30 s after A's, not at takeover.
    let second = b.wait_log("B's step", Duration::from_secs(60), |l| {
        is(l, "scaled", &steps.name) && l["to"] == 3
    });
    let gap = secs(at(&second).duration_since(at(&stepped)));
    assert!(
        gap >= 30.0 - 0.5,
        "B stepped {gap:.1}s after A, inside A's 30 s period"
    );
    // The window continues: B scales down 30 s after the last high recommendation
    // (at most one interval before the drop), not at takeover, nor a whole window
    // after it.
    let down = b.wait_log("B's scale-down", Duration::from_secs(90), |l| {
        is(l, "scaled", &window.name) && l["to"] == 1
    });
    let waited = secs(at(&down).duration_since(dropped));
    assert!(
        waited >= 30.0 - 1.0 - 0.5,
        "B scaled down {waited:.1}s after the drop, inside the 30 s window"
    );
    let after_takeover = secs(at(&down).duration_since(at(&took)));
    assert!(
        after_takeover < 30.0,
        "B waited {after_takeover:.1}s after taking over: a whole new window, the history was not continued (drop to down: {waited:.1}s)"
    );
    assert_eq!(b.stop(), Some(0));
}

#[test]
fn a_cron_apply_honours_a_window_across_two_invocations() {
    let (port, depth) = serve_json_cell(r#"{"depth": 30}"#);
    let svc = ruled(
        "hist-cron",
        port,
        3,
        4,
        &["microscale.scale-down.window=20s"],
    );
    running(&svc, 3);
    let lease = unique("lease");
    let apply = || {
        plugin(&[
            "apply",
            "--detach",
            "--no-trunc",
            "--lease-name",
            &lease,
            &svc.name,
        ])
    };
    let out = apply();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let first = jiff::Timestamp::now();

    // The demand goes: the next cron run holds by the window.
    *depth.lock().unwrap() = r#"{"depth": 0}"#.to_string();
    let out = apply();
    let second = jiff::Timestamp::now();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("scale-down window"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        replicas(&svc.name),
        3,
        "the second apply scaled down inside the window"
    );
    assert!(secs(second.duration_since(first)) < 20.0);

    // rules history shows the recommendation and until when it binds.
    let out = ok(plugin(&[
        "rules",
        "history",
        "--lease-name",
        &lease,
        &svc.name,
    ]));
    assert!(
        stdout(&out).contains("no scale-down below 3 until"),
        "{}",
        stdout(&out)
    );
    let out = ok(plugin(&[
        "rules",
        "history",
        "--format",
        "json",
        "--lease-name",
        &lease,
        &svc.name,
    ]));
    let lines = json_lines(&stdout(&out));
    assert_eq!(lines.len(), 1, "{}", stdout(&out));
    assert!(
        lines[0]["Recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["Replicas"] == 3 && r["ScaleDownUntil"].is_string()),
        "{}",
        stdout(&out)
    );

    // Once the window has passed since the last high recommendation: down.
    std::thread::sleep(Duration::from_secs(21));
    let out = apply();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(replicas(&svc.name), 1, "{}", stdout(&out));
}

#[test]
fn apply_refuses_while_an_agent_holds_the_lease() {
    let (port, _depth) = serve_json_cell(r#"{"depth": 20}"#);
    let svc = ruled("hist-refuse", port, 1, 4, &[]);
    let lease = unique("lease");
    let agent = Agent::start(&[
        "--interval",
        "1s",
        "--lease-name",
        &lease,
        "--lease-ttl",
        "3s",
        &svc.name,
    ]);
    let acquired = agent.wait_log("the lease", Duration::from_secs(30), |l| {
        l["message"] == "lease acquired: this agent acts"
    });
    let holder = acquired["holder"].as_str().unwrap().to_string();
    let out = plugin(&["apply", "--lease-name", &lease, &svc.name]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("an agent holds the lease {lease}: {holder}")),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("nothing was changed"),
        "{}",
        stderr(&out)
    );
    // --dry-run only reads: allowed.
    ok(plugin(&[
        "apply",
        "--dry-run",
        "--lease-name",
        &lease,
        &svc.name,
    ]));
    // The agent stops (and releases the lease): apply acts again.
    assert_eq!(agent.stop(), Some(0));
    let out = plugin(&["apply", "--detach", "--lease-name", &lease, &svc.name]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
