//! The agent's lease window bounds what a holder does, on the single-host swarm:
//! a holder whose engine reads but can no longer commit (a manager cut off from the
//! Raft leader, simulated by a proxy that holds its `POST` requests) ends its update
//! when its window ends, reports `microscale_lease_held 0` from then on, and the
//! standby's update is the only one applied, also after the held requests reach the
//! engine late. The multi-node faults (kill, freeze, cut of a real manager) are in
//! `tests/multinode/ha.rs`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::lease::StallingProxy;

fn is(line: &Value, message: &str, service: &str) -> bool {
    line["message"] == message && line["service"] == service
}

/// `microscale_lease_held` as `GET /metrics` on `port` says.
fn lease_held(port: u16) -> Option<u64> {
    let (_, body) = http_get(port, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix("microscale_lease_held "))
        .and_then(|v| v.trim().parse().ok())
}

/// The service's `Version.Index` (the swarm's Raft index when it last changed), its
/// replicas and its previous spec's replicas.
fn service_state(name: &str) -> (u64, u64, Option<u64>) {
    let out = ok(docker(&["service", "inspect", name]));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v[0];
    (
        s["Version"]["Index"].as_u64().unwrap(),
        s["Spec"]["Mode"]["Replicated"]["Replicas"]
            .as_u64()
            .unwrap(),
        s["PreviousSpec"]["Mode"]["Replicated"]["Replicas"].as_u64(),
    )
}

#[test]
fn a_holder_that_cannot_commit_ends_its_update_with_its_window_and_the_standby_acts_once() {
    let (port, depth) = serve_json_cell(r#"{"depth": 20}"#);
    // No step limit: the decided (unknown) 2 -> 4 of A would otherwise count
    // against B's scale-up period (more cautious, never less) and B would go 2 -> 3
    // -> 4 over 15 s.
    let metric = format!("microscale.metric=http://127.0.0.1:{port}/#/depth");
    let svc = TestService::create(
        &unique("agent-cutoff"),
        &[
            "--replicas",
            "1",
            "--update-monitor",
            "1s",
            "--label",
            "microscale.max=6",
            "--label",
            &metric,
            "--label",
            "microscale.target=10",
            "--label",
            "microscale.scale-up.max-step=none",
        ],
    );
    let lease = unique("lease");
    let proxy = StallingProxy::start();
    let args = [
        "--interval",
        "1s",
        "--lease-name",
        &lease,
        "--lease-ttl",
        "3s",
        &svc.name,
    ];
    let a = Agent::start_on(&proxy.host, &args);
    a.wait_log("A to scale to 2", Duration::from_secs(60), |l| {
        is(l, "scaled", &svc.name) && l["to"] == 2
    });
    let b = Agent::start(&args);
    b.wait_log("B to stand by", Duration::from_secs(10), |l| {
        l["message"] == "lease held by another agent: standing by"
    });
    assert_eq!(lease_held(a.port), Some(1));
    assert_eq!(lease_held(b.port), Some(0));
    let lease_id = stdout(&ok(docker(&[
        "config", "inspect", "--format", "{{.ID}}", &lease,
    ])))
    .trim()
    .to_string();
    assert_eq!(service_state(&svc.name).1, 2);

    // A's service updates stop getting through; the metric asks for 4.
    proxy.hold_posts(&["/services/"]);
    *depth.lock().unwrap() = r#"{"depth": 40}"#.to_string();
    wait_until(
        "A's update to be in flight",
        Duration::from_secs(10),
        || proxy.held() >= 1,
    );
    // Now its renewals too: its window ends within TTL - TTL/5 = 2.4 s.
    proxy.hold_posts(&["/services/", &lease_id]);
    let cut = Instant::now();
    let mut zero_at = None;
    while cut.elapsed() < Duration::from_secs(6) {
        if lease_held(a.port) == Some(0) {
            zero_at = Some((cut.elapsed(), jiff::Timestamp::now()));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (zero_after, zero_wall) = zero_at.expect("A's microscale_lease_held to turn 0");
    assert!(
        zero_after <= Duration::from_millis(2400 + 300),
        "lease_held turned 0 {zero_after:?} after the renewals stopped (window 2.4 s)"
    );
    let unknown = a.wait_log("A's update to end", Duration::from_secs(5), |l| {
        is(l, "update outcome unknown", &svc.name)
    });
    let gap = (at(&unknown).as_millisecond() - zero_wall.as_millisecond()).abs();
    assert!(
        gap <= 500,
        "the update ended {gap} ms away from the window's end: {unknown}"
    );
    // B takes over after A's window, and scales once.
    let acquired = b.wait_log("B to take over", Duration::from_secs(10), |l| {
        l["message"] == "lease acquired: this agent acts"
    });
    assert!(at(&acquired) > zero_wall, "B acquired inside A's window");
    b.wait_log("B to scale to 4", Duration::from_secs(10), |l| {
        is(l, "scaled", &svc.name) && l["to"] == 4
    });
    eprintln!(
        "holder cut from commits: lease_held 0 after {zero_after:?}, update ended {gap} ms from it, standby acquired {} ms after",
        at(&acquired).as_millisecond() - zero_wall.as_millisecond()
    );
    // The held requests reach the engine, late: refused (their versions are old).
    proxy.hold_posts(&[]);
    a.wait_log("A to stand by", Duration::from_secs(10), |l| {
        l["message"] == "lease held by another agent: standing by"
    });
    std::thread::sleep(Duration::from_secs(3));
    let (_, replicas, previous) = service_state(&svc.name);
    assert_eq!((replicas, previous), (4, Some(2)), "one update, 2 -> 4");
    let all: Vec<Value> = a.lines().into_iter().chain(b.lines()).collect();
    let scaled_to_4 = all
        .iter()
        .filter(|l| is(l, "scaled", &svc.name) && l["to"] == 4)
        .count();
    assert_eq!(scaled_to_4, 1, "exactly one agent scaled to 4");
    assert!(
        !a.lines()
            .iter()
            .any(|l| is(l, "scaled", &svc.name) && l["to"] == 4),
        "A's late update was applied"
    );
    assert!(
        !all.iter().any(|l| l["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("fight")),
        "no fights between agents of one lease: {all:#?}"
    );
    assert_eq!(lease_held(a.port), Some(0));
    assert_eq!(lease_held(b.port), Some(1));
    assert_eq!(b.stop(), Some(0));
    assert_eq!(a.stop(), Some(0));
}
