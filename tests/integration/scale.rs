//! `scale` and `apply` on the private swarm: only the replica count changes (a service
//! with 25+ options set), concurrent writers lose nothing, bounds, modes, rolling
//! updates, convergence, failed tasks, timeouts and interruption.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// `GET path` on the manager's Engine API, raw JSON as the engine sends it (not
/// re-encoded by a typed client).
fn engine_get(path: &str) -> Value {
    let host = manager_host();
    let socket = host.strip_prefix("unix://").expect("a unix:// test engine");
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}\n{body}"
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn inspect(id: &str) -> Value {
    engine_get(&format!("/services/{id}?insertDefaults=false"))
}

fn replicas(id: &str) -> u64 {
    inspect(id)["Spec"]["Mode"]["Replicated"]["Replicas"]
        .as_u64()
        .unwrap()
}

/// Tasks of a service (`GET /tasks?filters={"service":[id]}`).
fn tasks(id: &str) -> Vec<Value> {
    let filters = format!("%7B%22service%22%3A%5B%22{id}%22%5D%7D");
    engine_get(&format!("/tasks?filters={filters}"))
        .as_array()
        .unwrap()
        .clone()
}

/// IDs of the service's tasks that run and should run.
fn running_task_ids(id: &str) -> BTreeSet<String> {
    tasks(id)
        .iter()
        .filter(|t| t["Status"]["State"] == "running" && t["DesiredState"] == "running")
        .map(|t| t["ID"].as_str().unwrap().to_string())
        .collect()
}

fn wait_running(id: &str, n: usize) {
    let start = Instant::now();
    while running_task_ids(id).len() != n {
        if start.elapsed() > Duration::from_secs(60) {
            let states: Vec<String> = tasks(id)
                .iter()
                .map(|t| format!("{} {}", t["Status"]["State"], t["Status"]["Err"]))
                .collect();
            panic!("{id}: not {n} running tasks after 60s: {states:#?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Where two JSON values differ, as paths (`Spec.Mode.Replicated.Replicas`).
fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => diff(v, w, &p, out),
                    _ => out.push(p),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(v, w, &format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(path.to_string()),
        _ => {}
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A swarm object (network, secret, config) removed when dropped.
struct Object(&'static str, String);

impl Drop for Object {
    fn drop(&mut self) {
        let _ = docker(&[self.0, "rm", &self.1]);
    }
}

fn scale_json(args: &[&str]) -> (Output, Vec<Value>) {
    let mut all = vec!["scale", "--format", "json"];
    all.extend_from_slice(args);
    let out = plugin(&all);
    let rows = json_lines(&stdout(&out));
    (out, rows)
}

#[test]
fn only_the_replica_count_changes_and_no_running_task_restarts() {
    let name = unique("scale-spec");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload");
    std::fs::write(&file, "secret payload\n").unwrap();
    let file = file.to_str().unwrap();
    let net = Object("network", unique("scale-net"));
    ok(docker(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--attachable",
        &net.1,
    ]));
    let secret = Object("secret", unique("scale-secret"));
    ok(docker(&["secret", "create", &secret.1, file]));
    let config = Object("config", unique("scale-config"));
    ok(docker(&["config", "create", &config.1, file]));
    let port = free_port().to_string();
    let options: Vec<String> = [
        "--env A=1",
        "--env B=two words",
        "--mount type=tmpfs,destination=/scratch,tmpfs-size=1048576",
        "--mount type=volume,source={VOL},destination=/data",
        "--secret source={SECRET},target=app-secret,mode=0400",
        "--config source={CONFIG},target=/etc/app.conf",
        "--network {NET}",
        "--publish published={PORT},target=8080,protocol=tcp",
        "--endpoint-mode vip",
        "--constraint node.role==manager",
        "--placement-pref spread=node.labels.zone",
        "--replicas-max-per-node 10",
        "--limit-cpu 0.5",
        "--limit-memory 64M",
        "--reserve-cpu 0.01",
        "--reserve-memory 4M",
        "--limit-pids 100",
        "--restart-condition on-failure",
        "--restart-delay 3s",
        "--restart-max-attempts 5",
        "--restart-window 1m",
        "--update-parallelism 2",
        "--update-delay 2s",
        "--update-failure-action continue",
        "--update-monitor 1s",
        "--update-max-failure-ratio 0.25",
        "--update-order start-first",
        "--rollback-parallelism 3",
        "--rollback-delay 1s",
        "--rollback-failure-action pause",
        "--rollback-monitor 2s",
        "--rollback-max-failure-ratio 0.5",
        "--rollback-order stop-first",
        "--health-cmd /bin/busybox true",
        "--health-interval 1s",
        "--health-retries 2",
        "--health-timeout 2s",
        "--health-start-period 1s",
        "--label team=payments",
        "--label microscale.max=8",
        "--container-label com.example.role=worker",
        "--host db.internal:198.18.255.13",
        "--dns 198.18.255.2",
        "--dns-option ndots:2",
        "--dns-search example.internal",
        "--hostname scale-{{.Task.Slot}}",
        "--user 1000:1000",
        "--group 1234",
        "--workdir /tmp",
        "--stop-signal SIGKILL",
        "--stop-grace-period 3s",
        "--cap-add NET_ADMIN",
        "--cap-drop MKNOD",
        "--ulimit nofile=1024:2048",
        "--sysctl net.core.somaxconn=1024",
        "--init",
        "--read-only",
        "--log-driver json-file",
        "--log-opt max-size=1m",
        "--replicas 2",
    ]
    .iter()
    .map(|o| {
        o.replace("{VOL}", &format!("{name}-vol"))
            .replace("{SECRET}", &secret.1)
            .replace("{CONFIG}", &config.1)
            .replace("{NET}", &net.1)
            .replace("{PORT}", &port)
    })
    .collect();
    let mut args = vec![
        "service".to_string(),
        "create".into(),
        "-d".into(),
        "-q".into(),
        "--no-resolve-image".into(),
        "--name".into(),
        name.clone(),
    ];
    for o in &options {
        match o.split_once(' ') {
            Some((flag, value)) => args.extend([flag.to_string(), value.to_string()]),
            None => args.push(o.clone()),
        }
    }
    args.push(image());
    args.extend(["/bin/busybox", "sleep", "1000000"].map(String::from));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok(docker(&argv));
    let svc = TestService {
        name: name.clone(),
        id: stdout(&out).trim().to_string(),
    };
    wait_running(&svc.id, 2);
    let before = inspect(&svc.id);
    let spec = &before["Spec"];
    // The options really are in the spec (sections of it set by the flags above).
    let c = &spec["TaskTemplate"]["ContainerSpec"];
    for (what, v) in [
        ("env", &c["Env"]),
        ("mounts", &c["Mounts"]),
        ("secrets", &c["Secrets"]),
        ("configs", &c["Configs"]),
        ("healthcheck", &c["Healthcheck"]),
        ("container labels", &c["Labels"]),
        ("hosts", &c["Hosts"]),
        ("dns", &c["DNSConfig"]),
        ("user", &c["User"]),
        ("groups", &c["Groups"]),
        ("workdir", &c["Dir"]),
        ("stop signal", &c["StopSignal"]),
        ("stop grace period", &c["StopGracePeriod"]),
        ("capabilities", &c["CapabilityAdd"]),
        ("ulimits", &c["Ulimits"]),
        ("sysctls", &c["Sysctls"]),
        ("init", &c["Init"]),
        ("read-only", &c["ReadOnly"]),
        ("hostname", &c["Hostname"]),
        ("networks", &spec["TaskTemplate"]["Networks"]),
        ("resources", &spec["TaskTemplate"]["Resources"]),
        ("restart", &spec["TaskTemplate"]["RestartPolicy"]),
        (
            "placement",
            &spec["TaskTemplate"]["Placement"]["Preferences"],
        ),
        (
            "max per node",
            &spec["TaskTemplate"]["Placement"]["MaxReplicas"],
        ),
        ("log driver", &spec["TaskTemplate"]["LogDriver"]),
        ("update config", &spec["UpdateConfig"]),
        ("rollback config", &spec["RollbackConfig"]),
        ("published ports", &spec["EndpointSpec"]["Ports"]),
        ("labels", &spec["Labels"]),
    ] {
        assert!(!v.is_null(), "{what} missing from the spec: {spec:#}");
    }
    let running_before = running_task_ids(&svc.id);

    let (out, rows) = scale_json(&[&format!("{}=4", svc.name)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["ReplicasBefore"], 2);
    assert_eq!(r["ReplicasAfter"], 4);
    assert_eq!(r["Version"], before["Version"]["Index"]);
    assert_eq!(r["Convergence"], "converged", "{r}");
    assert_eq!(r["Running"], 4);
    assert!(
        stderr(&out).contains(&format!(
            "`docker service rollback SERVICE` now undoes this scale of that service ({} to 2)",
            svc.name
        )),
        "{}",
        stderr(&out)
    );

    let after = inspect(&svc.id);
    let mut changed = vec![];
    diff(&before["Spec"], &after["Spec"], "Spec", &mut changed);
    assert_eq!(changed, ["Spec.Mode.Replicated.Replicas"], "{after:#}");
    assert_eq!(
        after["PreviousSpec"], before["Spec"],
        "rollback returns to the spec before the scale"
    );
    let running_after = running_task_ids(&svc.id);
    assert!(
        running_before.is_subset(&running_after),
        "running tasks were replaced: before {running_before:?}, after {running_after:?}"
    );
    assert_eq!(running_after.len(), 4);

    // Down again: the two original tasks (slots 1 and 2) keep running.
    let (out, rows) = scale_json(&[&format!("{}=-2", svc.name)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        (
            rows[0]["ReplicasBefore"].as_u64(),
            rows[0]["ReplicasAfter"].as_u64()
        ),
        (Some(4), Some(2))
    );
    assert_eq!(running_task_ids(&svc.id), running_before);
    let mut changed = vec![];
    diff(
        &before["Spec"],
        &inspect(&svc.id)["Spec"],
        "Spec",
        &mut changed,
    );
    assert!(changed.is_empty(), "{changed:?}");

    // What a typed client would have sent: bollard's ServiceSpec round trip. Only
    // recorded (the plugin never sends a typed spec); see the note on issue 6.
    let typed: bollard::models::ServiceSpec =
        serde_json::from_value(before["Spec"].clone()).unwrap();
    let mut lost = vec![];
    diff(
        &before["Spec"],
        &serde_json::to_value(&typed).unwrap(),
        "Spec",
        &mut lost,
    );
    let round_trip = serde_json::to_value(&typed).unwrap();
    for path in &lost {
        let at = |v: &Value| {
            path.trim_start_matches("Spec.")
                .split('.')
                .fold(v.clone(), |v, k| v[k].clone())
        };
        eprintln!(
            "bollard ServiceSpec round trip changes {path}: {} -> {}",
            at(&before["Spec"]),
            at(&round_trip)
        );
    }
    let _ = docker(&["volume", "rm", &format!("{name}-vol")]);
}

#[test]
fn concurrent_writers_lose_no_update() {
    let svc = TestService::create(&unique("scale-race"), &["--replicas", "1"]);
    wait_running(&svc.id, 1);
    let mut conflicts = 0;
    let mut expected = 1;
    // Racing processes meet version conflicts almost always; retry the round a few
    // times until one did, so that the retry path is really exercised.
    for round in 0..4 {
        let start = Instant::now();
        let scalers: Vec<std::process::Child> = (0..6)
            .map(|_| {
                clean(plugin_bin(), plugin_config())
                    .env("DOCKER_HOST", manager_host())
                    .args([
                        "scale",
                        "--detach",
                        "--format",
                        "json",
                        &format!("{}=+1", svc.name),
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let labels: Vec<(String, std::process::Child)> = (0..3)
            .map(|i| {
                let label = format!("race{round}-{i}=yes");
                let child = clean("docker", plugin_config())
                    .env("DOCKER_HOST", manager_host())
                    .args([
                        "service",
                        "update",
                        "-d",
                        "-q",
                        "--no-resolve-image",
                        "--label-add",
                        &label,
                        &svc.id,
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                (label, child)
            })
            .collect();
        for child in scalers {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
            let row = &json_lines(&stdout(&out))[0];
            assert_eq!(row["Updated"], true, "{row}");
            assert_eq!(row["Convergence"], "detached");
            assert_eq!(
                row["ReplicasAfter"].as_u64().unwrap(),
                row["ReplicasBefore"].as_u64().unwrap() + 1,
                "{row}"
            );
            conflicts += row["Retries"].as_u64().unwrap();
        }
        expected += 6;
        let mut kept = vec![];
        for (label, child) in labels {
            // docker's own update does not retry; only those it reports done count.
            if child.wait_with_output().unwrap().status.success() {
                kept.push(label);
            }
        }
        let spec = inspect(&svc.id)["Spec"].clone();
        assert_eq!(
            spec["Mode"]["Replicated"]["Replicas"], expected,
            "round {round}: a +1 was lost"
        );
        for label in kept {
            let (k, v) = label.split_once('=').unwrap();
            assert_eq!(
                spec["Labels"][k], v,
                "round {round}: another writer's label was clobbered"
            );
        }
        eprintln!(
            "round {round}: {conflicts} version conflicts retried in {:?}",
            start.elapsed()
        );
        if conflicts > 0 {
            break;
        }
    }
    assert!(
        conflicts > 0,
        "no version conflict in 4 rounds of 6 racing scales"
    );
}

#[test]
fn bounds_modes_and_bad_targets_change_nothing() {
    let bounded = TestService::create(
        &unique("scale-bound"),
        &[
            "--replicas",
            "1",
            "--label",
            "microscale.min=1",
            "--label",
            "microscale.max=3",
        ],
    );
    let global = TestService::create(&unique("scale-global"), &["--mode", "global"]);
    let version = inspect(&bounded.id)["Version"]["Index"].clone();

    let out = plugin(&["scale", &format!("{}=5", bounded.name)]);
    fails(
        &out,
        1,
        "5 is above the rule's maximum, microscale.max=3 (a service label); use --force",
    );
    let out = plugin(&["scale", &format!("{}=-1", bounded.name)]);
    fails(&out, 1, "0 is below the rule's minimum, microscale.min=1");
    // One bad target: nothing at all changes, the good one included.
    let out = plugin(&[
        "scale",
        &format!("{}=2", bounded.name),
        &format!("{}=2", global.name),
        "no-such-service-here=1",
    ]);
    fails(
        &out,
        1,
        "a global service runs one task on each eligible node",
    );
    fails(&out, 1, "no such service: no-such-service-here");
    fails(&out, 1, "Nothing was changed");
    assert_eq!(inspect(&bounded.id)["Version"]["Index"], version);
    for bad in ["web", "web=x", "web=+", "../info=1", "a=1.5"] {
        let out = plugin(&["scale", bad]);
        assert_eq!(out.status.code(), Some(125), "{bad}: {}", stderr(&out));
    }
    let out = plugin(&[
        "scale",
        &format!("{}=2", bounded.name),
        &format!("{}=3", bounded.name),
    ]);
    fails(&out, 125, "given twice");
    let out = plugin(&["scale", "--timeout", "soon", &format!("{}=2", bounded.name)]);
    fails(&out, 125, "--timeout");
    assert_eq!(inspect(&bounded.id)["Version"]["Index"], version);

    // --force goes beyond; the same count again sends nothing.
    let (out, rows) = scale_json(&["--force", "--detach", &format!("{}=5", bounded.name)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rows[0]["ReplicasAfter"], 5);
    assert_eq!(replicas(&bounded.id), 5);
    let version = inspect(&bounded.id)["Version"]["Index"].clone();
    let out = ok(plugin(&[
        "scale",
        "--force",
        "--detach",
        &format!("{}=5", bounded.name),
    ]));
    assert!(
        stdout(&out).contains("already has 5 replicas; not updated"),
        "{}",
        stdout(&out)
    );
    assert_eq!(inspect(&bounded.id)["Version"]["Index"], version);
}

#[test]
fn a_rules_file_bounds_a_scale() {
    let svc = TestService::create(
        &unique("scale-file"),
        &["--replicas", "0", "--label", "microscale.max=50"],
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, format!("[{}]\nmax = 2\n", svc.name)).unwrap();
    let rules = rules.to_str().unwrap();
    let out = plugin(&["scale", "--rules", rules, &format!("{}=3", svc.name)]);
    fails(&out, 1, &format!("max = 2 in {rules}"));
    assert_eq!(replicas(&svc.id), 0);
}

#[test]
fn a_scale_past_the_placement_cap_is_refused_at_once() {
    // At most 1 task per node, on the manager only: 1 can be placed.
    let svc = TestService::create(
        &unique("scale-placed"),
        &[
            "--replicas",
            "1",
            "--replicas-max-per-node",
            "1",
            "--constraint",
            "node.role==manager",
        ],
    );
    wait_running(&svc.id, 1);
    let version = inspect(&svc.id)["Version"]["Index"].clone();
    let started = std::time::Instant::now();
    let out = plugin(&["scale", &format!("{}=+1", svc.name)]);
    fails(
        &out,
        1,
        &format!(
            "{}: 2 replicas cannot all be placed: at most 1 per node (--replicas-max-per-node) on 1 eligible node (ready, active and matching its node.role and node.hostname constraints) is 1, so 1 task would stay pending and scale would wait for ever; raise the limit (`docker service update --replicas-max-per-node 2 {}`) or make more nodes eligible; or use --force",
            svc.name, svc.name
        ),
    );
    fails(&out, 1, "Nothing was changed.");
    assert!(started.elapsed() < Duration::from_secs(20), "no wait");
    assert_eq!(inspect(&svc.id)["Version"]["Index"], version);
    assert_eq!(replicas(&svc.id), 1);
    // JSON says it too, for each target.
    let (out, rows) = scale_json(&[&format!("{}=3", svc.name)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        rows[0]["Error"]
            .as_str()
            .unwrap()
            .contains("3 replicas cannot all be placed"),
        "{rows:?}"
    );

    // What the error says fixes it.
    ok(docker(&[
        "service",
        "update",
        "-d",
        "-q",
        "--replicas-max-per-node",
        "2",
        &svc.id,
    ]));
    wait_until("the update to end", Duration::from_secs(30), || {
        inspect(&svc.id)["UpdateStatus"]["State"] != "updating"
    });
    let out = ok(plugin(&[
        "scale",
        "--timeout",
        "60s",
        &format!("{}=+1", svc.name),
    ]));
    assert!(
        stdout(&out).contains("scaled from 1 to 2"),
        "{}",
        stdout(&out)
    );

    // --force goes ahead and says the wait would not end.
    let out = ok(plugin(&[
        "scale",
        "--force",
        "--detach",
        &format!("{}=3", svc.name),
    ]));
    assert!(
        stderr(&out)
            .contains("going ahead because of --force, although 3 replicas cannot all be placed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(replicas(&svc.id), 3);
    // A scale down from past the cap is never refused.
    let out = ok(plugin(&["scale", "--detach", &format!("{}=2", svc.name)]));
    assert!(
        stdout(&out).contains("scaled from 3 to 2"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_rolling_update_in_progress_is_not_scaled_unless_forced() {
    let svc = TestService::create(
        &unique("scale-rolling"),
        &[
            "--replicas",
            "2",
            "--update-delay",
            "1h",
            "--update-parallelism",
            "1",
        ],
    );
    wait_running(&svc.id, 2);
    ok(docker(&[
        "service",
        "update",
        "-d",
        "-q",
        "--no-resolve-image",
        "--env-add",
        "V=2",
        &svc.id,
    ]));
    wait_until(
        "the rolling update to start",
        Duration::from_secs(30),
        || inspect(&svc.id)["UpdateStatus"]["State"] == "updating",
    );
    let out = plugin(&["scale", "--detach", &format!("{}=3", svc.name)]);
    fails(
        &out,
        1,
        "a rolling update is in progress (UpdateStatus updating",
    );
    assert_eq!(replicas(&svc.id), 2);
    let out = ok(plugin(&[
        "scale",
        "--detach",
        "--force",
        &format!("{}=3", svc.name),
    ]));
    assert!(
        stdout(&out).contains("scaled from 2 to 3"),
        "{}",
        stdout(&out)
    );
    assert_eq!(replicas(&svc.id), 3);
}

#[test]
fn a_replicated_job_runs_again_with_its_new_completion_count() {
    let job = TestService::create_with_command(
        &unique("scale-job"),
        &[
            "--mode",
            "replicated-job",
            "--replicas",
            "1",
            "--max-concurrent",
            "2",
        ],
        &["/bin/busybox", "true"],
    );
    wait_until("the job to complete", Duration::from_secs(60), || {
        tasks(&job.id)
            .iter()
            .any(|t| t["Status"]["State"] == "complete")
    });
    // Go leaves out an index of 0.
    let iteration = inspect(&job.id)["JobStatus"]["JobIteration"]["Index"]
        .as_u64()
        .unwrap_or(0);
    let (out, rows) = scale_json(&["--timeout", "60s", &format!("{}=3", job.name)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = &rows[0];
    assert_eq!(r["Mode"], "replicated job");
    assert_eq!(
        (r["ReplicasBefore"].as_u64(), r["ReplicasAfter"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(r["Convergence"], "converged", "{r}");
    assert_eq!(r["Running"], 3, "three completions of the new run");
    assert!(
        stderr(&out).contains("starts the job again from the beginning"),
        "{}",
        stderr(&out)
    );
    let after = inspect(&job.id);
    assert_eq!(
        after["Spec"]["Mode"]["ReplicatedJob"]["TotalCompletions"],
        3
    );
    assert!(
        after["JobStatus"]["JobIteration"]["Index"]
            .as_u64()
            .unwrap()
            > iteration
    );
}

#[test]
fn waiting_shows_failed_and_waiting_tasks_and_times_out() {
    let failing = TestService::create_with_command(
        &unique("scale-fail"),
        &["--replicas", "0", "--restart-delay", "100ms"],
        &["/bin/busybox", "false"],
    );
    let nowhere = TestService::create(
        &unique("scale-nowhere"),
        &[
            "--replicas",
            "0",
            "--constraint",
            "node.labels.microscale-nowhere==1",
        ],
    );
    let start = Instant::now();
    let (out, rows) = scale_json(&[
        "--timeout",
        "6s",
        &format!("{}=1", failing.name),
        &format!("{}=2", nowhere.name),
    ]);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("failed: task: non-zero exit (1)"), "{err}");
    assert!(
        err.contains(&format!(
            "{}: a task is waiting: no suitable node",
            nowhere.name
        )),
        "{err}"
    );
    assert!(
        err.contains("not converged within 6s: 0/2 running"),
        "{err}"
    );
    assert!(
        err.contains(&format!("docker service ps {}", nowhere.name)),
        "{err}"
    );
    // Without a TTY, progress is plain lines.
    assert!(
        err.contains(&format!("{}: 0/2 running", nowhere.name)),
        "{err}"
    );
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r["Convergence"], "timeout", "{r}");
        assert_eq!(r["Updated"], true);
    }
    // The updates stand.
    assert_eq!(replicas(&nowhere.id), 2);
    assert_eq!(replicas(&failing.id), 1);
}

#[test]
fn an_interrupted_wait_leaves_the_update_in_place() {
    let svc = TestService::create(
        &unique("scale-int"),
        &[
            "--replicas",
            "0",
            "--constraint",
            "node.labels.microscale-nowhere==1",
        ],
    );
    for through_docker in [false, true] {
        let target = if through_docker { "3" } else { "2" };
        let mut cmd = if through_docker {
            let mut c = clean("docker", plugin_config());
            c.env("DOCKER_HOST", manager_host()).arg("microscale");
            c
        } else {
            let mut c = clean(plugin_bin(), plugin_config());
            c.env("DOCKER_HOST", manager_host());
            c
        };
        let mut child = cmd
            .args(["scale", &format!("{}={target}", svc.name)])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_until("the scale to be sent", Duration::from_secs(20), || {
            replicas(&svc.id).to_string() == target
        });
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            child.try_wait().unwrap().is_none(),
            "should still be waiting"
        );
        ok(Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .output()
            .unwrap());
        let out = child.wait_with_output().unwrap();
        fails(&out, 130, "nothing was undone");
        fails(&out, 130, "Swarm goes on converging in the background");
        assert_eq!(replicas(&svc.id).to_string(), target, "the update stands");
    }
}

#[test]
fn progress_bars_on_a_terminal() {
    let svc = TestService::create(
        &unique("scale-tty"),
        &["--replicas", "0", "--update-monitor", "1s"],
    );
    let command = format!(
        "TERM=xterm DOCKER_HOST={} {} scale {}=2",
        manager_host(),
        plugin_bin().display(),
        svc.name
    );
    require("script", "bsdutils");
    let out = clean("script", plugin_config())
        .args(["-qec", &command, "/dev/null"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("] 2/2 converged"), "{text}");
    assert!(text.contains("[=============================="), "{text}");
    assert_eq!(replicas(&svc.id), 2);
}

#[test]
fn apply_carries_out_the_plan_and_dry_run_prints_it() {
    let port = serve_json(r#"{"queue":{"depth":"25"}}"#);
    let metric = format!("microscale.metric=http://127.0.0.1:{port}/stats#/queue/depth");
    let svc = TestService::create(
        &unique("apply"),
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
        ],
    );
    wait_running(&svc.id, 1);
    let version = inspect(&svc.id)["Version"]["Index"].clone();
    let plan = ok(plugin(&["plan", &svc.name]));
    let dry = ok(plugin(&["apply", "--dry-run", &svc.name]));
    assert_eq!(stdout(&dry), stdout(&plan));
    assert!(stdout(&plan).contains("scale up"), "{}", stdout(&plan));
    assert_eq!(
        inspect(&svc.id)["Version"]["Index"],
        version,
        "--dry-run changes nothing"
    );

    let out = ok(plugin(&["apply", "--timeout", "60s", &svc.name]));
    let text = stdout(&out);
    assert!(
        text.contains("SERVICE") && text.contains("scale up"),
        "the plan is shown: {text}"
    );
    assert!(
        text.contains(&format!("{} scaled from 1 to 3", svc.name)),
        "{text}"
    );
    assert!(
        stderr(&out).contains(&format!("{}: 3/3 converged", svc.name)),
        "{}",
        stderr(&out)
    );
    assert_eq!(replicas(&svc.id), 3);

    // Nothing left to do: no update is sent.
    let version = inspect(&svc.id)["Version"]["Index"].clone();
    let out = ok(plugin(&["apply", "--format", "json", &svc.name]));
    let rows = json_lines(&stdout(&out));
    assert_eq!(rows.len(), 1, "one object per planned service");
    assert_eq!(rows[0]["Updated"], false);
    assert_eq!(rows[0]["Convergence"], "unchanged");
    assert_eq!(rows[0]["ReplicasAfter"], 3);
    assert_eq!(inspect(&svc.id)["Version"]["Index"], version);
}

/// What [`MeddlingProxy`] does with one request.
#[derive(Clone, Copy, PartialEq)]
enum Meddle {
    /// Forward it and its answer.
    Pass,
    /// Forward it, let the engine answer, but never pass the answer on.
    SwallowAnswer,
    /// Never forward it, never answer.
    Hang,
}

/// A unix-socket proxy in front of the real manager that forwards each request
/// (one per connection: it adds `Connection: close`) unless `rule`, given the
/// request line, says to swallow its answer or hang. The engine is real; only the
/// wire is tampered with, as a flaky network or a slow engine would.
struct MeddlingProxy {
    host: String,
    _dir: tempfile::TempDir,
}

impl MeddlingProxy {
    fn start(rule: fn(&str) -> Meddle) -> MeddlingProxy {
        use std::os::unix::net::{UnixListener, UnixStream};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let engine = manager_host()
            .strip_prefix("unix://")
            .expect("a unix:// test engine")
            .to_string();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let engine = engine.clone();
                std::thread::spawn(move || {
                    let mut client = client;
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if client.read(&mut byte).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head).to_string();
                    let length: usize = text
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    let mut body = vec![0u8; length];
                    if client.read_exact(&mut body).is_err() {
                        return;
                    }
                    let first = text.lines().next().unwrap_or_default().to_string();
                    let action = rule(&first);
                    if action == Meddle::Hang {
                        std::thread::sleep(Duration::from_secs(120));
                        return;
                    }
                    let head: String = text
                        .trim_end()
                        .lines()
                        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                        .map(|l| format!("{l}\r\n"))
                        .collect();
                    let mut upstream = UnixStream::connect(&engine).unwrap();
                    upstream
                        .write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
                        .unwrap();
                    upstream.write_all(&body).unwrap();
                    let mut answer = Vec::new();
                    let _ = upstream.read_to_end(&mut answer);
                    if action == Meddle::SwallowAnswer {
                        std::thread::sleep(Duration::from_secs(120));
                        return;
                    }
                    let _ = client.write_all(&answer);
                });
            }
        });
        MeddlingProxy {
            host: format!("unix://{}", path.display()),
            _dir: dir,
        }
    }

    fn plugin(&self, args: &[&str], timeout_secs: &str) -> Output {
        clean(plugin_bin(), plugin_config())
            .env("DOCKER_HOST", &self.host)
            .env("MICROSCALE_TIMEOUT", timeout_secs)
            .args(args)
            .output()
            .unwrap()
    }
}

#[test]
fn a_lost_answer_to_an_update_is_checked_not_guessed() {
    let svc = TestService::create(&unique("scale-lost"), &["--replicas", "1"]);
    let proxy = MeddlingProxy::start(|line| {
        if line.starts_with("POST /services/") && line.contains("/update") {
            Meddle::SwallowAnswer
        } else {
            Meddle::Pass
        }
    });
    let out = proxy.plugin(
        &[
            "scale",
            "--detach",
            "--format",
            "json",
            &format!("{}=+1", svc.name),
        ],
        "3",
    );
    let rows = json_lines(&stdout(&out));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rows[0]["Updated"], true, "{}", rows[0]);
    assert_eq!(rows[0]["ReplicasAfter"], 2);
    assert!(
        stderr(&out).contains("the engine's answer to the update was lost"),
        "{}",
        stderr(&out)
    );
    assert_eq!(replicas(&svc.id), 2, "applied once, not twice");
}

#[test]
fn the_wait_keeps_its_timeout_when_the_engine_is_slow() {
    let svc = TestService::create(&unique("scale-slow"), &["--replicas", "0"]);
    let proxy = MeddlingProxy::start(|line| {
        if line.starts_with("GET /tasks") {
            Meddle::Hang
        } else {
            Meddle::Pass
        }
    });
    let start = Instant::now();
    let out = proxy.plugin(
        &[
            "scale",
            "--timeout",
            "2s",
            "--format",
            "json",
            &format!("{}=1", svc.name),
        ],
        "30",
    );
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not converged within 2s: the swarm could not be read in time"),
        "{}",
        stderr(&out)
    );
    assert_eq!(json_lines(&stdout(&out))[0]["Convergence"], "timeout");
}

#[test]
fn a_service_removed_while_waiting_is_reported_and_the_others_still_converge() {
    let stuck = TestService::create(
        &unique("scale-gone"),
        &[
            "--replicas",
            "0",
            "--constraint",
            "node.labels.microscale-nowhere==1",
        ],
    );
    let fine = TestService::create(
        &unique("scale-stays"),
        &["--replicas", "0", "--update-monitor", "1s"],
    );
    let child = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", manager_host())
        .args([
            "scale",
            "--timeout",
            "60s",
            "--format",
            "json",
            &format!("{}=1", stuck.name),
            &format!("{}=1", fine.name),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the scale to be sent", Duration::from_secs(20), || {
        replicas(&stuck.id) == 1
    });
    std::thread::sleep(Duration::from_millis(500));
    ok(docker(&["service", "rm", &stuck.id]));
    let out = child.wait_with_output().unwrap();
    let rows = json_lines(&stdout(&out));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(rows[0]["Convergence"], "removed", "{}", rows[0]);
    assert_eq!(rows[1]["Convergence"], "converged", "{}", rows[1]);
    assert!(
        stderr(&out).contains("was removed while waiting"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_target_has_a_json_object_and_flags_may_follow_targets() {
    let svc = TestService::create(&unique("scale-json"), &["--replicas", "0"]);
    let out = plugin(&[
        "scale",
        "--format",
        "json",
        &format!("{}=+1", svc.name),
        "nonexistent-svc=1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows = json_lines(&stdout(&out));
    assert_eq!(rows.len(), 2, "{}", stdout(&out));
    assert_eq!(rows[1]["Service"], "nonexistent-svc");
    assert_eq!(rows[1]["Error"], "no such service: nonexistent-svc");
    assert_eq!(rows[0]["Updated"], false);
    assert_eq!(replicas(&svc.id), 0);
    // Flags after the targets, as docker service scale takes them.
    let out = ok(plugin(&["scale", &format!("{}=+1", svc.name), "--detach"]));
    assert!(
        stdout(&out).contains("scaled from 0 to 1"),
        "{}",
        stdout(&out)
    );
    fails(&plugin(&["scale"]), 125, "requires at least 1 argument");
    fails(
        &plugin(&[
            "scale",
            "--detach",
            "--timeout",
            "5s",
            &format!("{}=1", svc.name),
        ]),
        125,
        "give one of them",
    );
    fails(
        &plugin(&["scale", &format!("{}=9223372036854775808", svc.name)]),
        125,
        "more than the engine takes",
    );
    // A full disk behind stdout is an error, after the update.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", manager_host())
        .args(["scale", "--detach", &format!("{}=2", svc.name)])
        .stdout(full)
        .output()
        .unwrap();
    fails(&out, 1, "cannot write to standard output");
    assert_eq!(replicas(&svc.id), 2);
}
