//! `replay` against the private swarm: a live service's labels, its spec's replicas
//! and its placement limit, and the same replay offline (`--rules`, `--label`)
//! without any engine.

use serde_json::Value;

use crate::harness::*;

fn nodes() -> u64 {
    stdout(&ok(docker(&["node", "ls", "-q"]))).lines().count() as u64
}

/// A series file: demand 95 (10 replicas at target 10) for two minutes, then 5 (1
/// replica) for five.
fn series(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("demand.csv");
    std::fs::write(
        &path,
        "time,value\n0,95\n60,95\n120,5\n180,5\n240,5\n300,5\n360,5\n",
    )
    .unwrap();
    path
}

#[test]
fn replay_reads_a_live_services_rule_replicas_and_placement() {
    let n = nodes();
    // Tasks that are never placed: the spec says 1 replica, at most 1 per node.
    let svc = TestService::create(
        &unique("replay"),
        &[
            "--replicas",
            "1",
            "--replicas-max-per-node",
            "1",
            "--constraint",
            "node.labels.replay-nowhere==1",
            "--label",
            "microscale.max=10",
            "--label",
            "microscale.metric=redis://queue:6379/0?list=jobs",
            "--label",
            "microscale.target=10",
            "--label",
            "microscale.scale-down.window=2m",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let file = series(dir.path());
    let chart = dir.path().join("chart.svg");
    let out = ok(plugin(&[
        "replay",
        &svc.name,
        "--series",
        file.to_str().unwrap(),
        "--format",
        "json",
        "-o",
        chart.to_str().unwrap(),
    ]));
    let lines: Vec<Value> = json_lines(&stdout(&out));
    assert_eq!(lines.len(), 8, "7 steps and the summary: {lines:#?}");
    // It starts from the spec's replicas; 95 wants 10, the live placement allows
    // one task per node.
    assert_eq!(lines[0]["Current"], 1);
    assert_eq!(lines[0]["Desired"], n);
    assert_eq!(lines[0]["Action"], "scale up");
    assert_eq!(lines[0]["Reasons"][0], "metric 95 / target 10 → 10");
    let reasons = lines[0]["Reasons"].to_string();
    assert!(
        reasons.contains(&format!(
            "placement allows {n} (max 1 per node × {n} nodes)"
        )),
        "{reasons}"
    );
    // The labels' 2-minute scale-down window holds until the last 10 has left it.
    for (i, line) in lines.iter().enumerate().take(3).skip(1) {
        assert_eq!(line["Desired"], n, "step {i}");
    }
    assert!(
        lines[2]["Reasons"]
            .to_string()
            .contains("scale-down window (2m)")
    );
    assert_eq!(lines[3]["Desired"], 1);
    assert_eq!(lines[3]["Action"], "scale down");
    let sum = &lines[7]["Summary"];
    assert_eq!(sum["Steps"], 7);
    assert_eq!(sum["Peak"], n);
    assert_eq!(
        (sum["ScaleUps"].as_u64(), sum["ScaleDowns"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(std::fs::read_to_string(&chart).unwrap().contains("<svg"));
    // A replay changes nothing.
    let spec = stdout(&ok(docker(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.Mode.Replicated.Replicas}}",
        &svc.name,
    ])));
    assert_eq!(spec.trim(), "1");

    // The table and the summary; --replicas overrides the live count.
    let out = ok(plugin(&[
        "replay",
        &svc.name,
        "--series",
        file.to_str().unwrap(),
        "--replicas",
        "3",
    ]));
    let text = stdout(&out);
    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with("TIME") && header.contains("REASON"),
        "{header}"
    );
    let first: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&first[..3], ["0", "95", "/"], "{text}");
    assert_eq!(first[4], "3", "CURRENT is --replicas: {text}");
    assert!(text.contains("peak:                3 replicas"), "{text}");

    // A service that does not exist; a series line that is not a number.
    let out = plugin(&[
        "replay",
        "no-such-service",
        "--series",
        file.to_str().unwrap(),
    ]);
    fails(&out, 1, "no such service: no-such-service");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "time,value\n0,5\n60,lots\n").unwrap();
    let out = plugin(&["replay", &svc.name, "--series", bad.to_str().unwrap()]);
    fails(&out, 1, "bad.csv:3: value \"lots\" is not a finite number");
}

#[test]
fn replay_with_labels_or_a_rules_file_needs_no_engine() {
    let dir = tempfile::tempdir().unwrap();
    let file = series(dir.path());
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[web]\nmax = 10\nmetric = \"redis://queue:6379/0?list=jobs\"\ntarget = 10\n\"scale-down.window\" = \"0s\"\n",
    )
    .unwrap();
    // No engine at all: the address points nowhere.
    let offline = |args: &[&str]| {
        clean(plugin_bin(), plugin_config())
            .env("DOCKER_HOST", "unix:///nonexistent/replay.sock")
            .args(args)
            .output()
            .unwrap()
    };
    let out = ok(offline(&[
        "replay",
        "--rules",
        rules.to_str().unwrap(),
        "--series",
        file.to_str().unwrap(),
        "--summary",
        "--format",
        "json",
    ]));
    let sum: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    // From min 1: up to 10 in two steps (HPA's default scale-up limit, +4 or +100 %
    // per 15 s, allows 1 → 5, then 5 → 10), then straight down (no window).
    assert_eq!(sum["Summary"]["ScaleUps"], 2);
    assert_eq!(sum["Summary"]["ScaleDowns"], 1);
    assert_eq!(sum["Summary"]["Flaps"], 1);
    assert_eq!(sum["Summary"]["Peak"], 10);
    let out = ok(offline(&[
        "replay",
        "--label",
        "max=10",
        "--label",
        "metric=redis://queue:6379/0?list=jobs",
        "--label",
        "target=10",
        "--series",
        file.to_str().unwrap(),
        "--format",
        "{{.At}} {{.Desired}}",
    ]));
    assert_eq!(
        stdout(&out),
        "0 5\n60 10\n120 10\n180 10\n240 10\n300 10\n360 1\n",
        "the default scale-up limit takes 1 to 5, then 10; the default 5-minute window holds 10 until the last 95 has left it"
    );
    // A rule with an error names the key.
    let out = offline(&[
        "replay",
        "--label",
        "max=ten",
        "--series",
        file.to_str().unwrap(),
    ]);
    fails(&out, 1, "microscale.max");
    // A live service needs the engine: the dead address is reported.
    let out = offline(&["replay", "web", "--series", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/replay.sock"),
        "{}",
        stderr(&out)
    );
}
