//! `docker microscale run` end to end on the private swarm: a real Redis queue grows
//! and drains, Redis stops, a real Prometheus scrapes `/metrics`, fights, `--once`,
//! `--dry-run`, a worker node, SIGTERM; slow clients against the health check, a
//! closed log pipe, SIGTERM while the engine hangs.
//!
//! Every agent here is given the services it may manage (`run SERVICE...`) and a
//! lease of its own, so that tests running side by side never act on each other's
//! services.

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is(line: &Value, message: &str, service: &str) -> bool {
    line["message"] == message && line["service"] == service
}

/// A real Prometheus scraping `target` every second; stopped when dropped.
struct Prometheus {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: u16) -> Prometheus {
        require("prometheus", "prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: agent\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus {
            port,
            child,
            _dir: dir,
        }
    }

    /// The value of an instant query, when it has exactly one sample.
    fn value(&self, query: &str) -> Option<f64> {
        let q: String = query
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"_-.".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return None;
        };
        let _ = write!(
            s,
            "GET /api/v1/query?query={q} HTTP/1.0\r\nHost: localhost\r\n\r\n"
        );
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let body: Value = serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()?;
        let result = body["data"]["result"].as_array()?;
        if result.len() != 1 {
            return None;
        }
        result[0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_agent_follows_a_redis_queue_and_prometheus_scrapes_it() {
    let mut redis = Redis::start();
    let queue = unique("jobs");
    let metric = format!(
        "microscale.metric=redis://127.0.0.1:{}/0?list={queue}&missing=zero",
        redis.port
    );
    let svc = TestService::create(
        &unique("agent-queue"),
        &[
            "--replicas",
            "1",
            "--update-monitor",
            "1s",
            "--label",
            "microscale.max=5",
            "--label",
            &metric,
            "--label",
            "microscale.target=10",
            "--label",
            "microscale.scale-down.window=3s",
        ],
    );
    let lease = unique("lease");
    let interval = Duration::from_secs(1);
    let agent = Agent::start(&[
        "--interval",
        "1s",
        "--lease-name",
        &lease,
        "--lease-ttl",
        "3s",
        &svc.name,
    ]);
    let prometheus = Prometheus::start(agent.port);
    agent.wait_log("a first decision", Duration::from_secs(30), |l| {
        is(l, "decision", &svc.name)
    });

    // The queue grows: up within two intervals.
    let items: Vec<String> = (0..25).map(|i| i.to_string()).collect();
    let mut push = vec!["RPUSH", queue.as_str()];
    push.extend(items.iter().map(String::as_str));
    let pushed = jiff::Timestamp::now();
    redis.cli(&push);
    let scaled = agent.wait_log("the scale up", Duration::from_secs(30), |l| {
        is(l, "scaled", &svc.name) && l["to"] == 3
    });
    let reaction = at(&scaled).duration_since(pushed);
    eprintln!("reaction: metric crossed the threshold -> update call returned in {reaction:?}");
    assert!(
        reaction
            < jiff::SignedDuration::try_from(interval * 2).unwrap()
                + jiff::SignedDuration::from_millis(1500),
        "took {reaction:?}, more than two intervals"
    );
    assert_eq!(replicas(&svc.name), 3);

    // A real Prometheus scrapes /metrics.
    let query = format!("microscale_service_replicas{{service=\"{}\"}}", svc.name);
    wait_until(
        "Prometheus to scrape the agent",
        Duration::from_secs(60),
        || prometheus.value(&query) == Some(3.0),
    );
    let metric_query = format!("microscale_service_metric{{service=\"{}\"}}", svc.name);
    wait_until(
        "the metric value in Prometheus",
        Duration::from_secs(30),
        || prometheus.value(&metric_query) == Some(25.0),
    );
    let (code, body) = http_get(agent.port, "/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (_, text) = http_get(agent.port, "/metrics");
    assert!(
        text.contains(&format!(
            "microscale_updates_total{{service=\"{}\"}} 1",
            svc.name
        )),
        "{text}"
    );
    assert!(
        text.contains("microscale_update_duration_seconds_bucket"),
        "{text}"
    );

    // The queue drains: down after the 3 s window, not before.
    let drained = jiff::Timestamp::now();
    redis.cli(&["DEL", &queue]);
    let down = agent.wait_log("the scale down", Duration::from_secs(30), |l| {
        is(l, "scaled", &svc.name) && l["to"] == 1
    });
    let waited = at(&down).duration_since(drained);
    // The last high recommendation came at most one interval before the drain.
    assert!(
        waited >= jiff::SignedDuration::from_millis(3000 - 1000 - 200),
        "scaled down after {waited:?}, inside the 3 s window"
    );
    assert_eq!(replicas(&svc.name), 1);

    // Up again, then Redis stops: nothing is scaled down.
    redis.cli(&push);
    agent.wait_log("the second scale up", Duration::from_secs(30), |l| {
        is(l, "scaled", &svc.name) && l["to"] == 3 && at(l) > at(&down)
    });
    redis.stop();
    let stopped = jiff::Timestamp::now();
    agent.wait_log("a hold on the dead source", Duration::from_secs(30), |l| {
        is(l, "decision", &svc.name)
            && l["action"] == "hold"
            && l["reasons"]
                .as_str()
                .unwrap_or("")
                .contains("(reading redis")
            && at(l) > stopped
    });
    std::thread::sleep(interval * 5);
    assert_eq!(
        replicas(&svc.name),
        3,
        "a dead metric source must not scale down"
    );
    // Each pass that could not read the metric counts as a metric error.
    let (_, text) = http_get(agent.port, "/metrics");
    let errors: f64 = text
        .lines()
        .find(|l| {
            l.starts_with("microscale_errors_total{")
                && l.contains(&format!("service=\"{}\"", svc.name))
                && l.contains("kind=\"metric\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric errors counted for {}: {text}", svc.name));
    assert!(
        errors >= 3.0,
        "{errors} metric errors in 5 passes on a dead source"
    );
    let lines = agent.lines();
    assert!(
        !lines
            .iter()
            .any(|l| is(l, "scaled", &svc.name) && at(l) > stopped),
        "scaled while Redis was down: {lines:#?}"
    );

    // SIGTERM: exit 0, nothing scaled on the way out.
    assert_eq!(agent.stop(), Some(0));
    assert_eq!(replicas(&svc.name), 3);
}

#[test]
fn fights_are_logged_and_shown_in_status() {
    let port = serve_json(r#"{"depth": 40}"#);
    let svc = queue_service("agent-fight", port, 4);
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
    agent.wait_log("the scale up", Duration::from_secs(30), |l| {
        is(l, "scaled", &svc.name)
    });
    // Another writer resets the count, as `docker stack deploy` with replicas: 1 would.
    ok(docker(&[
        "service",
        "scale",
        "-d",
        &format!("{}=1", svc.name),
    ]));
    let fight = agent.wait_log("the fight", Duration::from_secs(30), |l| {
        l["message"].as_str().unwrap_or("").starts_with("fight")
            && l["service"] == svc.name.as_str()
    });
    assert_eq!(fight["set_by_agent"], 4);
    assert_eq!(fight["set_by_other"], 1);
    wait_until("status to show the fight", Duration::from_secs(30), || {
        let rows = status_json(&svc.name);
        rows.first()
            .is_some_and(|r| r["Fight"]["Resets"].as_u64() >= Some(1))
    });
    // The other writer reset the count once: the table says so in the singular.
    let resets = status_json(&svc.name)[0]["Fight"]["Resets"]
        .as_u64()
        .unwrap();
    let want = if resets == 1 {
        "fight (1 reset)".to_string()
    } else {
        format!("fight ({resets} resets)")
    };
    let out = ok(plugin(&["status", &svc.name]));
    assert!(stdout(&out).contains(&want), "{want}: {}", stdout(&out));
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn once_dry_run_and_a_worker() {
    let port = serve_json(r#"{"depth": 20}"#);
    let svc = queue_service("agent-once", port, 4);
    wait_until("the service to run", Duration::from_secs(30), || {
        docker_service_ls(&svc.name)
            .first()
            .is_some_and(|r| r["Replicas"] == "1/1")
    });
    let lease = unique("lease");
    let out = ok(plugin(&[
        "run",
        "--once",
        "--dry-run",
        "--lease-name",
        &lease,
        &svc.name,
    ]));
    assert!(stderr(&out).contains("scale up"), "{}", stderr(&out));
    // Text logs quote values with blanks (logfmt), so that fields can be told apart.
    assert!(
        stderr(&out).contains(r#"action="scale up" metric="20 / 10" dry_run=true acting=false reasons="metric 20 / target 10"#),
        "{}",
        stderr(&out)
    );
    assert_eq!(replicas(&svc.name), 1, "--dry-run changes nothing");
    let out = ok(plugin(&[
        "run",
        "--once",
        "--lease-name",
        &lease,
        "--lease-ttl",
        "2s",
        &svc.name,
    ]));
    assert!(stderr(&out).contains("scaled"), "{}", stderr(&out));
    assert_eq!(replicas(&svc.name), 2);

    let out = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", worker_host())
        .args(["run", "--once", "--lease-name", &lease])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("swarm worker node"),
        "{}",
        stderr(&out)
    );

    for bad in [
        vec!["run", "--interval", "100ms"],
        vec!["run", "--log-format", "xml"],
        vec!["run", "--listen", "nowhere"],
        vec!["run", "--lease-ttl", "500ms"],
        vec!["run", "--lease-name", "a/b"],
        vec!["run", "--lease-name", "."],
        vec!["run", "--lease-name", "microscale-agent-fights"],
        vec!["run", "--lease-ttl", "2h"],
        vec!["run", "--metric-allow", ""],
        vec!["run", "--metric-allow", "*"],
    ] {
        let out = plugin(&bad);
        assert_eq!(out.status.code(), Some(125), "{bad:?}: {}", stderr(&out));
    }
}

#[test]
fn two_agents_one_acts_and_the_other_takes_over() {
    let (port, depth) = serve_json_cell(r#"{"depth": 20}"#);
    let svc = queue_service("agent-ha", port, 6);
    let lease = unique("lease");
    let args = [
        "--interval",
        "1s",
        "--lease-name",
        &lease,
        "--lease-ttl",
        "3s",
        &svc.name,
    ];
    let a = Agent::start(&args);
    let b = Agent::start(&args);
    let scaled = |agent: &Agent, to: u64| {
        agent
            .lines()
            .iter()
            .any(|l| is(l, "scaled", &svc.name) && l["to"] == to)
    };
    wait_until("one agent to scale to 2", Duration::from_secs(60), || {
        scaled(&a, 2) || scaled(&b, 2)
    });
    // Give the other one time to act too, if it (wrongly) would.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(replicas(&svc.name), 2);
    let (holder, standby) = match (scaled(&a, 2), scaled(&b, 2)) {
        (true, false) => (a, b),
        (false, true) => (b, a),
        (x, y) => panic!("exactly one agent must act: a {x}, b {y}"),
    };
    standby.wait_log("the standby to stand by", Duration::from_secs(10), |l| {
        l["message"] == "lease held by another agent: standing by"
    });
    // The holder dies without releasing: the standby takes over after the TTL.
    holder.kill();
    let killed = jiff::Timestamp::now();
    *depth.lock().unwrap() = r#"{"depth": 40}"#.to_string();
    let took_over = standby.wait_log("the standby to take over", Duration::from_secs(60), |l| {
        is(l, "scaled", &svc.name) && l["to"] == 4
    });
    let after = at(&took_over).duration_since(killed);
    eprintln!("takeover after SIGKILL of the holder: {after:?} (lease TTL 3s, interval 1s)");
    assert_eq!(replicas(&svc.name), 4);
    assert_eq!(standby.stop(), Some(0));
}

#[test]
fn removed_and_relabelled_services_do_not_stop_the_agent() {
    let (port, depth) = serve_json_cell(r#"{"depth": 20}"#);
    let metric = format!("microscale.metric=http://127.0.0.1:{port}/#/depth");
    let rule = |name: &str| {
        TestService::create(
            &unique(name),
            &[
                "--replicas",
                "1",
                "--label",
                "microscale.max=6",
                "--label",
                &metric,
                "--label",
                "microscale.target=10",
            ],
        )
    };
    let gone = rule("agent-gone");
    let relabelled = rule("agent-relabel");
    let stays = rule("agent-stays");
    let lease = unique("lease");
    let agent = Agent::start(&[
        "--interval",
        "1s",
        "--lease-name",
        &lease,
        "--lease-ttl",
        "3s",
        &gone.name,
        &relabelled.name,
        &stays.name,
    ]);
    for s in [&gone, &relabelled, &stays] {
        agent.wait_log("the first scales", Duration::from_secs(60), |l| {
            is(l, "scaled", &s.name) && l["to"] == 2
        });
    }
    ok(docker(&["service", "rm", &gone.id]));
    ok(docker(&[
        "service",
        "update",
        "-d",
        "-q",
        "--no-resolve-image",
        "--label-add",
        "microscale.max=lots",
        &relabelled.id,
    ]));
    agent.wait_log(
        "the removed service noticed",
        Duration::from_secs(30),
        |l| {
            l["message"]
                .as_str()
                .unwrap_or("")
                .contains("not in the swarm (removed?)")
        },
    );
    agent.wait_log("the broken rule noticed", Duration::from_secs(30), |l| {
        is(l, "rule has errors", &relabelled.name)
    });
    *depth.lock().unwrap() = r#"{"depth": 40}"#.to_string();
    agent.wait_log("the others still scaled", Duration::from_secs(60), |l| {
        is(l, "scaled", &stays.name) && l["to"] == 4
    });
    assert_eq!(
        replicas(&relabelled.name),
        2,
        "a broken rule is not acted on"
    );
    assert_eq!(agent.stop(), Some(0));
}

/// `GET /v1/stats` on a loopback port with an `Authorization` header (or none):
/// (status, body).
fn stats_get(port: u16, auth: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let header = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /v1/stats HTTP/1.0\r\nHost: localhost\r\n{header}\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The labels of the agents' combined engine stats (`<lease>-stats`).
fn stored_stats(lease: &str) -> Value {
    let out = docker(&[
        "config",
        "inspect",
        "--format",
        "{{json .Spec.Labels}}",
        &format!("{lease}-stats"),
    ]);
    serde_json::from_str(stdout(&out).trim()).unwrap_or(Value::Null)
}

/// Engine stats from every node on the two-node sandbox: the agent on the worker is a
/// collector only (healthy, no lease, no error loop) and serves its tasks' stats to
/// whoever has the token; the holder on the manager reads both nodes, keeps the
/// combined reading in the swarm, and `plan` uses it; when the worker's agent stops,
/// the reading is partial and names the worker.
#[test]
fn the_worker_serves_its_stats_to_the_holder_with_the_token_only() {
    let dir = tempfile::tempdir().unwrap();
    let token = "5f0c3b8e2d9a47c1b6e08f3a9d2c7e41";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let token_file = token_file.display().to_string();
    let svc = TestService::create_with_command(
        &unique("stats-busy"),
        &[
            "--replicas",
            "2",
            "--replicas-max-per-node",
            "1",
            "--limit-cpu",
            "0.05",
            "--label",
            "microscale.min=1",
            "--label",
            "microscale.max=3",
            "--label",
            "microscale.metric=engine://cpu",
            "--label",
            "microscale.target-utilization=50",
        ],
        &["/bin/sh", "-c", "while :; do :; done"],
    );
    wait_until("a task on each node", Duration::from_secs(60), || {
        status_json(&svc.name)
            .first()
            .is_some_and(|r| r["Running"] == 2)
    });
    let id = stdout(&ok(docker(&[
        "service", "inspect", "--format", "{{.ID}}", &svc.name,
    ])))
    .trim()
    .to_string();
    let lease = unique("lease");

    // The worker's agent: a collector only.
    let (worker_listen, worker_stats) = (free_port(), free_port());
    let worker = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", worker_host())
        .args([
            "run",
            "--interval",
            "1s",
            "--log-format",
            "json",
            "--lease-name",
            &lease,
        ])
        .args(["--listen", &format!("127.0.0.1:{worker_listen}")])
        .args(["--stats-listen", &format!("127.0.0.1:{worker_stats}")])
        .args(["--stats-token-file", &token_file])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let worker = ChildGuard(worker);
    wait_until(
        "the worker's agent answers",
        Duration::from_secs(20),
        || std::net::TcpStream::connect(("127.0.0.1", worker_listen)).is_ok(),
    );
    std::thread::sleep(Duration::from_secs(2));
    let (code, body) = http_get(worker_listen, "/healthz");
    assert_eq!(code, 200, "a collector on a worker is healthy: {body}");
    // No token, a wrong one, another scheme: refused, and nothing measured is shown.
    for auth in [
        None,
        Some("Bearer 5f0c3b8e2d9a47c1b6e08f3a9d2c7e40"),
        Some("Bearer 5f0c3b8e2d9a47c1b6e08f3a9d2c7e41x"),
        Some("Basic 5f0c3b8e2d9a47c1b6e08f3a9d2c7e41"),
    ] {
        let (code, body) = stats_get(worker_stats, auth);
        assert_eq!(code, 401, "{auth:?}: {body}");
        assert!(!body.contains(&id), "{body}");
    }
    let (code, body) = stats_get(worker_stats, Some(&format!("Bearer {token}")));
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["node"]["hostname"], "sandbox-worker", "{answer}");
    let ours: Vec<&Value> = answer["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["service"] == id.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{answer}");
    let cpu = ours[0]["cpu"].as_f64().unwrap();
    assert!(cpu > 30.0, "a busy loop under its 0.05 CPU limit: {answer}");

    // The manager's agent holds the lease and reads both nodes.
    let manager_stats = free_port();
    let peers = format!("127.0.0.1:{worker_stats},127.0.0.1:{manager_stats}");
    let agent = Agent::start(&[
        "--interval",
        "1s",
        "--lease-name",
        &lease,
        "--lease-ttl",
        "2s",
        "--stats-listen",
        &format!("127.0.0.1:{manager_stats}"),
        "--stats-peers",
        &peers,
        "--stats-token-file",
        &token_file,
        &svc.name,
    ]);
    wait_until(
        "both nodes in the stored reading",
        Duration::from_secs(40),
        || {
            let labels = stored_stats(&lease);
            labels[format!("microscale.stats.{id}")]
                .as_str()
                .is_some_and(|s| s.contains(r#""n":2,"of":2"#))
        },
    );
    let labels = stored_stats(&lease);
    let nodes: Vec<String> =
        serde_json::from_str(labels["microscale.stats-nodes"].as_str().unwrap()).unwrap();
    assert_eq!(nodes.len(), 2, "{labels}");
    // The command line uses it.
    let out = ok(plugin(&[
        "plan",
        "--lease-name",
        &lease,
        "--format",
        "json",
        &svc.name,
    ]));
    let row = &json_lines(&stdout(&out))[0];
    assert!(
        row["Reasons"]
            .to_string()
            .contains("engine://cpu: the agents' combined reading of every node"),
        "{row}"
    );
    assert!(
        row["Metric"].as_str().unwrap().ends_with("% / 50%"),
        "{row}"
    );

    // The worker's agent stops: the holder's reading is partial and names the
    // worker; no scale-down on it.
    drop(worker);
    wait_until(
        "a partial reading naming the worker",
        Duration::from_secs(40),
        || {
            stored_stats(&lease)[format!("microscale.stats.{id}")]
                .as_str()
                .is_some_and(|s| s.contains(r#""n":1,"of":2,"missing":["sandbox-worker"]"#))
        },
    );
    agent.wait_log("the failed peer", Duration::from_secs(10), |l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("some stats peers gave nothing"))
            && l["peers"]
                .as_str()
                .is_some_and(|p| p.contains(&worker_stats.to_string()))
    });
    let out = ok(plugin(&[
        "plan",
        "--lease-name",
        &lease,
        "--format",
        "json",
        &svc.name,
    ]));
    let row = &json_lines(&stdout(&out))[0];
    assert!(
        row["Reasons"]
            .to_string()
            .contains("1 of 2 running tasks measured; not measured: tasks on sandbox-worker"),
        "{row}"
    );
    assert_eq!(agent.stop(), Some(0));
    let _ = docker(&["config", "rm", &format!("{lease}-stats")]);
}

/// Kills a child process when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_agent_on_a_worker_is_a_collector_only() {
    let port = free_port();
    let mut child = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", worker_host())
        .args([
            "run",
            "--interval",
            "1s",
            "--log-format",
            "json",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--lease-name",
            &unique("lease"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent exited on a worker"
    );
    let (code, body) = http_get(port, "/healthz");
    assert_eq!(code, 200, "{body}");
    signal(child.id(), "-TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let log = stderr(&out);
    assert!(
        log.contains("this node is a worker: collector only"),
        "{log}"
    );
    assert!(
        !log.contains("cannot read the swarm"),
        "no error loop: {log}"
    );
    for lease in [
        "lease acquired",
        "standing by",
        "cannot read or renew the lease",
    ] {
        assert!(!log.contains(lease), "no lease on a worker: {log}");
    }
    assert!(!log.contains("\"scaled\""), "{log}");
}

/// `run --collector` (deploy/stack.yml's workers' service): it serves its node's
/// task stats with the token and nothing else, and takes no lease even on a
/// manager; the flags of a deciding agent are refused, and without its token it
/// fails instead of looking healthy.
#[test]
fn a_collector_serves_stats_and_never_takes_the_lease_even_on_a_manager() {
    let dir = tempfile::tempdir().unwrap();
    let token = "7a1e5c9b3d0f42e8a6c4b2d0e8f6a4c2";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let token_file = token_file.display().to_string();
    let (listen, stats) = (free_port(), free_port());
    let mut child = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", manager_host())
        .args([
            "run",
            "--collector",
            "--interval",
            "1s",
            "--log-format",
            "json",
        ])
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--stats-listen", &format!("127.0.0.1:{stats}")])
        .args(["--stats-token-file", &token_file])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the collector answers", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", listen)).is_ok()
    });
    wait_until("the collector is healthy", Duration::from_secs(20), || {
        http_get(listen, "/healthz").0 == 200
    });
    let (code, body) = stats_get(stats, None);
    assert_eq!(code, 401, "{body}");
    let (code, body) = stats_get(stats, Some(&format!("Bearer {token}")));
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["node"]["hostname"], "sandbox-manager", "{answer}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.try_wait().unwrap().is_none(), "the collector exited");
    signal(child.id(), "-TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let log = stderr(&out);
    assert!(
        log.contains("--collector on a manager: collector only"),
        "{log}"
    );
    for never in [
        "agent started",
        "lease acquired",
        "standing by",
        "cannot read or renew the lease",
        "\"message\":\"decision\"",
        "\"scaled\"",
        "cannot read the swarm",
    ] {
        assert!(
            !log.contains(never),
            "{never:?} in a collector's log: {log}"
        );
    }

    // A deciding agent's flag: refused before anything runs.
    let out = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", manager_host())
        .args(["run", "--collector", "--stats-listen", "127.0.0.1:0"])
        .args(["--stats-token-file", &token_file])
        .args(["--metric-secret", "redis=queue:6379"])
        .output()
        .unwrap();
    fails(
        &out,
        125,
        "--metric-secret cannot be used with --collector: a collector never takes the lease",
    );
    // No token to serve with: exit 1, saying why.
    let out = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", manager_host())
        .args(["run", "--collector", "--stats-listen", "127.0.0.1:0"])
        .args([
            "--stats-token-file",
            &dir.path().join("none").display().to_string(),
        ])
        .output()
        .unwrap();
    fails(&out, 1, "--collector: no stats token, so nothing to serve");
}

#[test]
fn a_signal_during_the_first_pass_stops_cleanly_and_releases_the_lease() {
    // A metric source that accepts and never answers keeps the first pass busy.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hole.local_addr().unwrap().port();
    let svc = queue_service("agent-sig", port, 4);
    let lease = unique("lease");
    let agent = Agent::start(&[
        "--interval",
        "20s",
        "--lease-name",
        &lease,
        "--lease-ttl",
        "30s",
        &svc.name,
    ]);
    agent.wait_log("the lease", Duration::from_secs(20), |l| {
        l["message"] == "lease acquired: this agent acts"
    });
    std::thread::sleep(Duration::from_millis(500));
    let start = std::time::Instant::now();
    assert_eq!(agent.stop(), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    let out = ok(docker(&[
        "config",
        "inspect",
        "--format",
        "{{index .Spec.Labels \"microscale.lease.holder\"}}",
        &lease,
    ]));
    assert_eq!(stdout(&out).trim(), "", "the lease was not released");
    assert_eq!(replicas(&svc.name), 1);
    let _ = docker(&["config", "rm", &lease]);
    drop(hole);
}

#[test]
fn labels_cannot_read_local_secrets_and_redirects_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    let svc = TestService::create(&unique("exfil"), &["--replicas", "0"]);
    std::fs::write(
        &rules,
        format!(
            "[{}]\nmax = 2\ntarget = 10\nmetric = \"http://127.0.0.1:1/x?secret-file=/etc/hostname#/v\"\n",
            svc.name
        ),
    )
    .unwrap();
    let out = plugin(&[
        "rules",
        "check",
        "--rules",
        rules.to_str().unwrap(),
        "--format",
        "json",
        &svc.name,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("outside the secret directories"),
        "{}",
        stdout(&out)
    );
    // A redirect to an address outside --metric-allow is not followed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let allow = format!("127.0.0.1:{port}");
    let out = plugin(&[
        "metric",
        "--metric-allow",
        &allow,
        &format!("http://127.0.0.1:{port}/m#/v"),
    ]);
    fails(&out, 1, "redirects are not followed");
}

/// The agent binary with `args` against `host`, stdout and stderr piped.
fn spawn_agent(host: &str, args: &[&str]) -> Child {
    clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", host)
        .args(["run", "--log-format", "json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `__healthz ADDR --timeout 3s`: its output.
fn healthz(addr: &str) -> std::process::Output {
    clean(plugin_bin(), plugin_config())
        .args(["__healthz", "--timeout", "3s", addr])
        .output()
        .unwrap()
}

/// Reads `child`'s stderr until a JSON log line matches `pred` (or panics after
/// `timeout`), keeping the pipe open; returns the reader to close later.
fn read_until(
    lines: &mut std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) {
    let start = std::time::Instant::now();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if serde_json::from_str::<Value>(&line).is_ok_and(|v| pred(&v)) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "no log line for {what} within {timeout:?}"
        );
    }
    panic!("the agent's log ended before {what}");
}

#[test]
fn slow_clients_do_not_starve_the_health_check_nor_new_scrapes() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/health.sock");
    let socket_arg = socket.to_str().unwrap().to_string();
    // --dry-run: it reads every rule service of the sandbox, and changes none.
    let agent = Agent::start(&[
        "--interval",
        "1s",
        "--dry-run",
        "--health-socket",
        &socket_arg,
        "--lease-name",
        &unique("lease"),
    ]);
    let unix = format!("unix://{socket_arg}");
    wait_until("the agent to be healthy", Duration::from_secs(30), || {
        healthz(&unix).status.success()
    });
    // 200 clients sending one byte a second, reconnecting when dropped.
    let stop = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicUsize::new(0));
    let port = agent.port;
    let dribblers: Vec<_> = (0..200)
        .map(|_| {
            let (stop, open) = (stop.clone(), open.clone());
            std::thread::spawn(move || {
                let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa";
                while !stop.load(Ordering::SeqCst) {
                    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    };
                    open.fetch_add(1, Ordering::SeqCst);
                    for b in request {
                        if stop.load(Ordering::SeqCst) || s.write_all(&[*b]).is_err() {
                            break;
                        }
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    // About 10 s of health checks, one a second, as Docker would run them.
    let mut passed = 0;
    for _ in 0..10 {
        let started = std::time::Instant::now();
        let out = healthz(&unix);
        assert!(
            out.status.success(),
            "health check failed under 200 slow clients: {}",
            stderr(&out)
        );
        assert_eq!(stdout(&out), "ok\n");
        passed += 1;
        std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
    }
    // A fresh scrape over TCP is still answered while the slow clients are there.
    assert!(
        open.load(Ordering::SeqCst) >= 100,
        "the slow clients were not connected"
    );
    let started = std::time::Instant::now();
    let (code, body) = http_get(agent.port, "/metrics");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("microscale_passes_total"), "{body}");
    eprintln!(
        "{passed}/10 health checks passed under 200 slow clients; a fresh /metrics took {:?}",
        started.elapsed()
    );
    stop.store(true, Ordering::SeqCst);
    for d in dribblers {
        d.join().unwrap();
    }
    assert_eq!(agent.stop(), Some(0));
    assert!(
        std::fs::symlink_metadata(&socket).is_err(),
        "the health socket was not removed on exit"
    );
}

#[test]
fn a_closed_log_pipe_does_not_stop_the_agent_and_sigterm_releases_the_lease() {
    use std::io::BufRead;
    let (port, depth) = serve_json_cell(r#"{"depth": 20}"#);
    let svc = queue_service("agent-logpipe", port, 6);
    let lease = unique("lease");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("health.sock");
    let mut child = spawn_agent(
        &manager_host(),
        &[
            "--interval",
            "1s",
            "--lease-name",
            &lease,
            "--lease-ttl",
            "30s",
            "--health-socket",
            socket.to_str().unwrap(),
            &svc.name,
        ],
    );
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    read_until(
        &mut lines,
        "the first scale",
        Duration::from_secs(60),
        |l| is(l, "scaled", &svc.name) && l["to"] == 2,
    );
    // Whoever read the log goes away: both pipes close.
    drop(lines);
    drop(child.stdout.take());
    // The agent goes on: it still scales (and logs that, into the closed pipe).
    *depth.lock().unwrap() = r#"{"depth": 40}"#.to_string();
    wait_until("the agent to scale to 4", Duration::from_secs(30), || {
        replicas(&svc.name) == 4
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent exited when its log pipe closed: {:?}",
        child.try_wait()
    );
    let out = healthz(&format!("unix://{}", socket.display()));
    assert!(out.status.success(), "{}", stderr(&out));
    let holder = crate::lease::lease_labels(&lease)["microscale.lease.holder"].clone();
    assert!(
        holder.as_str().is_some_and(|h| !h.is_empty()),
        "the agent holds the lease before SIGTERM: {holder}"
    );
    // SIGTERM: the lease is released at once (not after its 30 s TTL), exit 0.
    signal(child.id(), "-TERM");
    let started = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        crate::lease::lease_labels(&lease)["microscale.lease.holder"],
        "",
        "the lease was not released"
    );
    let _ = docker(&["config", "rm", &lease]);
}

#[test]
fn sigterm_while_the_engine_hangs_exits_in_bounded_time() {
    let proxy = crate::lease::StallingProxy::start();
    let port = serve_json(r#"{"depth": 10}"#);
    let svc = queue_service("agent-hang", port, 4);
    let lease = unique("lease");
    let mut child = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", &proxy.host)
        // A long engine deadline: only the agent's own bound ends the release.
        .env("MICROSCALE_TIMEOUT", "120")
        .args([
            "run",
            "--log-format",
            "json",
            "--interval",
            "1s",
            "--lease-name",
            &lease,
            "--lease-ttl",
            "3s",
            "--health-socket=",
            &svc.name,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr_pipe = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr_pipe)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    wait_until("the lease", Duration::from_secs(30), || {
        log.lock().unwrap().contains("lease acquired")
    });
    // The engine stops answering: a pass and a lease renewal hang.
    proxy.stall();
    std::thread::sleep(Duration::from_millis(2500));
    signal(child.id(), "-TERM");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!(
                "no exit 20 s after SIGTERM with the engine hung:\n{}",
                log.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    eprintln!("SIGTERM with a hung engine: exit after {took:?}");
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(8), "took {took:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        log.lock().unwrap().contains("cannot release the lease"),
        "{}",
        log.lock().unwrap()
    );
    proxy.resume();
    let _ = docker(&["config", "rm", &lease]);
}

#[test]
fn run_once_exits_1_on_a_rule_with_errors() {
    let port = serve_json(r#"{"depth": 20}"#);
    let metric = format!("microscale.metric=http://127.0.0.1:{port}/#/depth");
    let svc = TestService::create(
        &unique("agent-once-bad"),
        &[
            "--replicas",
            "1",
            "--label",
            &metric,
            "--label",
            "microscale.max=lots",
        ],
    );
    let lease = unique("lease");
    let out = plugin(&[
        "run",
        "--once",
        "--dry-run",
        "--log-format",
        "json",
        "--lease-name",
        &lease,
        &svc.name,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        json_lines(&stderr(&out))
            .iter()
            .any(|l| is(l, "rule has errors", &svc.name)),
        "{}",
        stderr(&out)
    );
    // A named service that does not exist: exit 1 as well.
    let out = plugin(&[
        "run",
        "--once",
        "--dry-run",
        "--lease-name",
        &lease,
        &unique("no-such-service"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(replicas(&svc.name), 1);
}

/// A hand-written `<lease>-stats` config (any manager can write one) claiming a CPU
/// of 1e308 % over every task: `plan` does not use it, says so, and measures through
/// its own engine instead; the same config from the future is not used either.
#[test]
fn plan_does_not_trust_a_hostile_stored_reading() {
    let svc = TestService::create(
        &unique("stats-hostile"),
        &[
            "--replicas",
            "1",
            "--label",
            "microscale.min=1",
            "--label",
            "microscale.max=5",
            "--label",
            "microscale.metric=engine://cpu",
            "--label",
            "microscale.target-utilization=50",
        ],
    );
    wait_until("its task runs", Duration::from_secs(60), || {
        status_json(&svc.name)
            .first()
            .is_some_and(|r| r["Running"] == 1)
    });
    let lease = unique("hostile-lease");
    let config = format!("{lease}-stats");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(&data, "x").unwrap();
    let data = data.display().to_string();
    let plan = |time: f64| {
        let _ = docker(&["config", "rm", &config]);
        let out = docker(&[
            "config",
            "create",
            "--label",
            &format!("microscale.stats-time={time:.3}"),
            "--label",
            &format!(
                "microscale.stats.{}={{\"cpu\":{{\"v\":1e308,\"n\":1,\"of\":1}}}}",
                svc.id
            ),
            &config,
            &data,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = ok(plugin(&[
            "plan",
            "--lease-name",
            &lease,
            "--format",
            "json",
            &svc.name,
        ]));
        json_lines(&stdout(&out))[0].clone()
    };
    let row = plan(now);
    let reasons = row["Reasons"].to_string();
    assert!(
        reasons.contains("the agents' reading in config")
            && reasons.contains("is not used: a value of 1e308 %"),
        "{row}"
    );
    assert!(!reasons.contains("combined reading of every node"), "{row}");
    assert_ne!(row["Desired"], 5, "{row}");
    let row = plan(now + 3600.0);
    assert!(
        !row["Reasons"].to_string().contains("combined reading"),
        "{row}"
    );
    assert_ne!(row["Desired"], 5, "{row}");
    let _ = docker(&["config", "rm", &config]);
}
