//! Engine CPU from every node (issue 15, section 2), on the five-node sandbox, with
//! the agent deployed as `deploy/stack.yml` deploys it: the global service `agent`
//! on the managers and `collector` (`run --collector`) on the workers, the stats
//! between them on the stack's `agents` overlay network (`tasks.agent` and
//! `tasks.collector`, `endpoint_mode: dnsrr`), with the token from a Swarm secret,
//! and the Redis password on no worker. The stack file is the repository's, with two
//! documented substitutions: the images (`MICROSCALE_AGENT_IMAGE`, `REDIS_IMAGE`,
//! `WORKER_IMAGE`; nothing can be pulled here) and a 2 s interval and 5 s lease TTL
//! instead of 15 s and 12 s, so that the test does not wait minutes. The example
//! `queue` and `worker` services are removed right after the deploy.
//!
//! CPU load: busybox busy loops under a 0.05 CPU limit (100 % of their limit while
//! the two-core machine stays usable); per-node load through Swarm's env template
//! (`NODE={{.Node.Hostname}}`) and a `case` in the task's command.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// The stack's name; its services are `microscale_agent` (managers) and
/// `microscale_collector` (workers).
const STACK: &str = "microscale";

/// The agents' stats config of the default lease.
const STATS_CONFIG: &str = "microscale-agent-lease-stats";

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Builds the agent image from the binary under test on n1 (`scripts/agent-image`,
/// FROM scratch) and loads it into every other node's image store.
fn agent_image(c: &Cluster) -> String {
    let tag = "microscale-agent:multinode".to_string();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut build = c.command("n1", repo.join("scripts/agent-image"));
    build
        .args(["--binary"])
        .arg(plugin_bin())
        .args(["--tag", &tag]);
    ok(output_within(&mut build, Duration::from_secs(300)).expect("scripts/agent-image ran"));
    let tar = c.dir().join("agent-image.tar");
    let tar_s = tar.display().to_string();
    ok(c.docker("n1", &["save", "-o", &tar_s, &tag]));
    for n in c.nodes().iter().skip(1) {
        ok(c.docker(n, &["load", "-i", &tar_s]));
    }
    let _ = std::fs::remove_file(&tar);
    tag
}

/// `docker stack deploy` of deploy/stack.yml through n1 (see the module docs for the
/// substitutions), with its two external secrets; the example services removed.
fn deploy_stack(c: &Cluster, image: &str) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(repo.join("deploy/stack.yml")).unwrap();
    for from in ["--interval=15s", "--lease-ttl=12s"] {
        assert!(text.contains(from), "deploy/stack.yml has {from}");
    }
    let text = text
        .replace("--interval=15s", "--interval=2s")
        .replace("--lease-ttl=12s", "--lease-ttl=5s");
    let file = c.dir().join("stack.yml");
    std::fs::write(&file, text).unwrap();
    for (name, value) in [
        ("microscale-redis-password", "not-used-here"),
        ("microscale-stats-token", "9c1f4e7a2b6d4c0e8f3a5b7d9e1c2f4a"),
    ] {
        let mut create = c.command("n1", "docker");
        create.args(["secret", "create", name, "-"]);
        let mut child = create
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
        ok(child.wait_with_output().unwrap());
    }
    let mut deploy = c.command("n1", "docker");
    deploy
        .env("MICROSCALE_AGENT_IMAGE", image)
        .env("REDIS_IMAGE", c.image())
        .env("WORKER_IMAGE", c.image())
        .args(["stack", "deploy", "--resolve-image", "never", "-c"])
        .arg(&file)
        .arg(STACK);
    ok(output_within(&mut deploy, CALL_TIMEOUT).expect("docker stack deploy ran"));
    ok(c.docker(
        "n1",
        &[
            "service",
            "rm",
            &format!("{STACK}_queue"),
            &format!("{STACK}_worker"),
        ],
    ));
}

/// `GET /healthz` on the agent of manager `node` (its host-mode published port 9090).
fn healthz(c: &Cluster, node: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = format!("{}:9090", c.addr(node)).parse().unwrap();
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text.split_once("\r\n\r\n")?.1.to_string()))
}

/// Creates a rule-managed service on the engine CPU through n1: replicas 5, at
/// most `per_node` per node, 0.05 CPU each, `target` % utilisation, 1..`max`, no
/// scale-down window; `command` runs in the test image with `NODE` set to the node's
/// hostname.
fn cpu_service(c: &Cluster, name: &str, per_node: u32, target: u32, max: u32, command: &str) {
    let image = c.image();
    ok(c.docker(
        "n1",
        &[
            "service",
            "create",
            "--detach",
            "--name",
            name,
            "--replicas",
            "5",
            "--replicas-max-per-node",
            &per_node.to_string(),
            "--limit-cpu",
            "0.05",
            "--env",
            "NODE={{.Node.Hostname}}",
            "--label",
            "microscale.min=1",
            "--label",
            &format!("microscale.max={max}"),
            "--label",
            "microscale.metric=engine://cpu",
            "--label",
            &format!("microscale.target-utilization={target}"),
            "--label",
            "microscale.scale-down.window=0s",
            &image,
            "/bin/sh",
            "-c",
            command,
        ],
    ));
}

/// The spec's replicas of `name`, through n1.
fn replicas(c: &Cluster, name: &str) -> u64 {
    let out = ok(c.docker(
        "n1",
        &[
            "service",
            "inspect",
            "--format",
            "{{.Spec.Mode.Replicated.Replicas}}",
            name,
        ],
    ));
    stdout(&out).trim().parse().unwrap()
}

fn service_id(c: &Cluster, name: &str) -> String {
    let out = ok(c.docker("n1", &["service", "inspect", "--format", "{{.ID}}", name]));
    stdout(&out).trim().to_string()
}

/// The agents' stored reading of one service (`microscale.stats.<ID>` of the stats
/// config), through n1: `{"cpu": {"v", "n", "of", "missing"}}`; `Null` when none.
fn stored(c: &Cluster, id: &str) -> Value {
    let Some(out) = c.docker_within(
        "n1",
        &[
            "config",
            "inspect",
            "--format",
            "{{json .Spec.Labels}}",
            STATS_CONFIG,
        ],
        Duration::from_secs(10),
    ) else {
        return Value::Null;
    };
    let labels: Value = serde_json::from_str(stdout(&out).trim()).unwrap_or(Value::Null);
    labels[format!("microscale.stats.{id}")]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null)
}

/// The one `plan --format json` row of `name` through n1, with `extra` flags.
fn plan_row(c: &Cluster, name: &str, extra: &[&str]) -> Value {
    let mut args = vec!["plan", "--format", "json"];
    args.extend_from_slice(extra);
    args.push(name);
    let rows = json_lines(&stdout(&ok(c.plugin("n1", &args))));
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0].clone()
}

/// The running container of the stack's `service` (`agent` or `collector`) on `node`
/// (its engine's own list), if there is one.
fn container_of(c: &Cluster, node: &str, service: &str) -> Option<String> {
    let out = ok(c.docker(
        node,
        &[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={STACK}_{service}"),
        ],
    ));
    let id = stdout(&out).trim().to_string();
    assert!(
        !id.contains('\n'),
        "{node}: two {service} containers: {id:?}"
    );
    (!id.is_empty()).then_some(id)
}

/// The container serving `node`'s stats: the agent on a manager, the collector on a
/// worker.
fn agent_container(c: &Cluster, node: &str) -> String {
    let service = if c.workers().iter().any(|w| w == node) {
        "collector"
    } else {
        "agent"
    };
    container_of(c, node, service).unwrap_or_else(|| panic!("no {service} running on {node}"))
}

/// Whether `path` exists in `container` on `node` (`docker cp` of it: the image has
/// no shell to ask).
fn has_file(c: &Cluster, node: &str, container: &str, path: &str) -> bool {
    let dest = c
        .dir()
        .join(format!("cp-{node}-{}", path.replace('/', "_")));
    let dest_s = dest.display().to_string();
    let out = c.docker(node, &["cp", &format!("{container}:{path}"), &dest_s]);
    let _ = std::fs::remove_file(&dest);
    if out.status.success() {
        return true;
    }
    let err = stderr(&out);
    assert!(
        err.contains("Could not find the file") || err.contains("No such"),
        "{node}: docker cp {path}: {err}"
    );
    false
}

/// The secrets of the stack's `service` as Swarm gives them (the service spec).
fn secrets_of(c: &Cluster, service: &str) -> Vec<String> {
    let out = ok(c.docker(
        "n1",
        &[
            "service",
            "inspect",
            "--format",
            "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}={{.File.Name}} {{end}}",
            &format!("{STACK}_{service}"),
        ],
    ));
    stdout(&out).split_whitespace().map(String::from).collect()
}

/// Uniform load, load only on the workers, a node whose agent is down, and an idle
/// service that should scale down, with the agent deployed on every node.
#[test]
fn engine_cpu_is_read_from_every_node() {
    let c = Cluster::up(5, 3);
    let start = std::time::Instant::now();
    let phase = |what: &str| {
        eprintln!(
            "engine_stats: {what} at {:.0} s",
            start.elapsed().as_secs_f64()
        )
    };
    let busy = "while :; do :; done";
    let idle_cmd = "exec /bin/busybox sleep 100000";

    // Before the agents: an engine:// rule on this five-node swarm is a warning of
    // rules check, naming the nodes without an agent.
    cpu_service(&c, "probe", 1, 50, 5, idle_cmd);
    let out = ok(c.plugin("n1", &["rules", "check", "--format", "json", "probe"]));
    let text = stdout(&out);
    assert!(
        text.contains("this swarm has 5 ready nodes and 5 of them (sandbox-n1, sandbox-n2, sandbox-n3, sandbox-n4, sandbox-n5) run no agent"),
        "{text}"
    );
    // And plan, through n1's engine alone, measures n1's task only: it holds
    // instead of scaling the idle service down on a fifth of its tasks.
    c.wait_until("five probe tasks", Duration::from_secs(60), || {
        plan_row(&c, "probe", &[])["Running"] == 5
    });
    let p = plan_row(&c, "probe", &[]);
    assert_eq!(p["Action"], "hold", "{p}");
    let why = p["Reasons"].to_string();
    assert!(
        why.contains("1 of 5 running tasks measured; not measured: tasks on sandbox-n2, sandbox-n3, sandbox-n4, sandbox-n5")
            && why.contains("no scale-down on partial data"),
        "{p}"
    );
    ok(c.docker("n1", &["service", "rm", "probe"]));

    phase("before the agents: checked");
    let image = agent_image(&c);
    phase("agent image on every node");
    deploy_stack(&c, &image);
    // An agent on every manager and a collector on every worker, each healthy: the
    // managers' on their published port, the collectors' (which publish nothing)
    // through the image's own health check client inside the container.
    c.wait_until(
        "a healthy agent on every manager",
        Duration::from_secs(120),
        || {
            c.managers()
                .iter()
                .all(|n| healthz(&c, n).is_some_and(|(code, _)| code == 200))
        },
    );
    c.wait_until(
        "a healthy collector on every worker",
        Duration::from_secs(120),
        || {
            c.workers().iter().all(|n| {
                container_of(&c, n, "collector").is_some_and(|id| {
                    c.docker(n, &["exec", &id, "/docker-microscale", "__healthz"])
                        .status
                        .success()
                })
            })
        },
    );
    // No manager runs a collector, no worker an agent.
    for n in c.nodes() {
        let worker = c.workers().contains(&n);
        assert_eq!(container_of(&c, &n, "agent").is_some(), !worker, "{n}");
        assert_eq!(container_of(&c, &n, "collector").is_some(), worker, "{n}");
    }
    // The Redis password reaches no worker: the collector's spec has the stats
    // token only, and no container on a worker has /run/secrets/redis; the
    // managers' agents have it (the same check finds it there).
    assert_eq!(
        secrets_of(&c, "collector"),
        ["microscale-stats-token=microscale-stats-token"]
    );
    let mut agent_secrets = secrets_of(&c, "agent");
    agent_secrets.sort();
    assert_eq!(
        agent_secrets,
        [
            "microscale-redis-password=redis",
            "microscale-stats-token=microscale-stats-token"
        ]
    );
    for n in c.nodes() {
        let id = agent_container(&c, &n);
        let worker = c.workers().contains(&n);
        assert!(
            has_file(&c, &n, &id, "/run/secrets/microscale-stats-token"),
            "{n}: the stats token"
        );
        assert_eq!(
            has_file(&c, &n, &id, "/run/secrets/redis"),
            !worker,
            "{n}: /run/secrets/redis in its {} container",
            if worker { "collector" } else { "agent" }
        );
    }
    for n in c.workers() {
        let all = stdout(&ok(c.docker(&n, &["ps", "-q"])));
        for id in all.split_whitespace() {
            assert!(
                !has_file(&c, &n, id, "/run/secrets/redis"),
                "{n}: container {id} has the Redis password"
            );
        }
    }
    // Each node's agent log, from its own engine (the agents log on stderr).
    for n in c.nodes() {
        let out = ok(c.docker(&n, &["logs", &agent_container(&c, &n)]));
        let logs = stdout(&out) + &stderr(&out);
        let host = Cluster::hostname(&n);
        let collector = logs.lines().any(|l| {
            l.contains("this node is a worker: collector only")
                && l.contains(&format!("\"node\":\"{host}\""))
        });
        assert_eq!(
            collector,
            c.workers().contains(&n),
            "{n}'s agent is a collector only on a worker:\n{logs}"
        );
        assert!(
            logs.contains("serving this node's task stats to the other agents"),
            "{n}:\n{logs}"
        );
        assert!(
            !logs.contains("cannot read the swarm"),
            "no error loop on {n}:\n{logs}"
        );
    }

    // A node whose agent is down (its container frozen: connections hang, the
    // holder's read of it times out).
    let n5_agent = agent_container(&c, "n5");
    phase("agents healthy on every node");
    ok(c.docker("n5", &["pause", &n5_agent]));
    // Uniform load (every task busy, one per node) and an idle service, created
    // while n5's agent is down.
    cpu_service(&c, "uniform", 2, 50, 7, busy);
    cpu_service(&c, "idle", 1, 50, 5, idle_cmd);
    let (uniform, idle) = (service_id(&c, "uniform"), service_id(&c, "idle"));
    // An agent runs on every node now: rules check has nothing to say.
    let out = ok(c.plugin("n1", &["rules", "check", "uniform", "idle"]));
    assert_eq!(
        stdout(&out),
        "2 services with a rule: 0 errors, 0 warnings\n"
    );
    // Partial data: the idle service is held at 5 (its task on n5 could be busy),
    // and the reason names n5; the uniform one is scaled up on the four tasks
    // measured alone (4 × 100 % / 50 % = 8, max 7).
    c.wait_until(
        "the idle service's reading without n5",
        Duration::from_secs(90),
        || {
            let s = stored(&c, &idle);
            s["cpu"]["n"] == 4 && s["cpu"]["of"] == 5
        },
    );
    assert_eq!(
        stored(&c, &idle)["cpu"]["missing"],
        serde_json::json!(["sandbox-n5"])
    );
    let p = plan_row(&c, "idle", &[]);
    let why = p["Reasons"].to_string();
    assert_eq!(
        (p["Action"].as_str(), p["Desired"].as_u64()),
        (Some("hold"), Some(5)),
        "{p}"
    );
    assert!(
        why.contains("4 of 5 running tasks measured; not measured: tasks on sandbox-n5")
            && why.contains("no scale-down on partial data")
            && why.contains("the agents' combined reading of every node"),
        "{p}"
    );
    c.wait_until("uniform scaled up to 7", Duration::from_secs(90), || {
        replicas(&c, "uniform") == 7
    });
    assert_eq!(replicas(&c, "idle"), 5, "no scale-down on partial data");

    // n5's agent is back: every task measured; the idle service scales down to its
    // minimum, and the uniform one is read over all its tasks.
    phase("partial data checked");
    ok(c.docker("n5", &["unpause", &n5_agent]));
    c.wait_until("idle scaled down to 1", Duration::from_secs(90), || {
        replicas(&c, "idle") == 1
    });
    c.wait_until(
        "uniform read over its 7 tasks",
        Duration::from_secs(90),
        || {
            let s = stored(&c, &uniform);
            s["cpu"]["n"] == 7 && s["cpu"]["of"] == 7
        },
    );
    let u = stored(&c, &uniform);
    let v = u["cpu"]["v"].as_f64().unwrap();
    assert!(v > 50.0, "busy loops at their limit: {u}");
    ok(c.docker("n1", &["service", "rm", "uniform", "idle"]));

    // Load only on the workers (the managers' tasks idle): from a manager's engine
    // alone the service looked idle; the agents' reading sees 2 busy tasks of 5
    // (40 % against 30 %) and the holder scales it up.
    let workers_only = "case $NODE in sandbox-n4|sandbox-n5) while :; do :; done;; *) exec /bin/busybox sleep 100000;; esac";
    phase("full data checked");
    cpu_service(&c, "hot-workers", 2, 30, 7, workers_only);
    let hot = service_id(&c, "hot-workers");
    c.wait_until("hot-workers scaled up", Duration::from_secs(90), || {
        replicas(&c, "hot-workers") > 5
    });
    c.wait_until(
        "hot-workers read over all its tasks",
        Duration::from_secs(90),
        || {
            let s = stored(&c, &hot);
            s["cpu"]["n"] == s["cpu"]["of"] && s["cpu"]["of"] == replicas(&c, "hot-workers")
        },
    );
    // Without the agents' reading (another lease's, which nobody keeps), plan from
    // n1 measures n1's idle task only and holds: never a scale-down to min.
    let p = plan_row(&c, "hot-workers", &["--lease-name", "nobody-keeps-this"]);
    assert_ne!(p["Action"], "scale down", "{p}");
    assert!(
        p["Reasons"].to_string().contains("not measured: tasks on"),
        "{p}"
    );
    // metric reads the agents' combined reading too.
    let out = ok(c.plugin(
        "n1",
        &[
            "metric",
            "engine://cpu",
            "--service",
            "hot-workers",
            "--format",
            "json",
        ],
    ));
    let m = &json_lines(&stdout(&out))[0];
    assert!(
        m["Coverage"]
            .as_str()
            .is_some_and(|s| s.contains("the agents' combined reading of every node")),
        "{m}"
    );

    // The combined read itself, from inside n1's agent container (its network, its
    // token), as the holder makes it: every node answers.
    let n1_agent = agent_container(&c, "n1");
    let out = ok(c.docker(
        "n1",
        &[
            "exec",
            &n1_agent,
            "/docker-microscale",
            "__stats-read",
            "--peers",
            "tasks.agent:9091,tasks.collector:9091",
            "--token-file",
            "/run/secrets/microscale-stats-token",
            "--runs",
            "5",
        ],
    ));
    let reads = json_lines(&stdout(&out));
    assert_eq!(reads.len(), 5, "{reads:?}");
    for r in &reads {
        assert_eq!(r["Nodes"], 5, "{r}");
        // Each answer came from an overlay address Swarm gives that node's agent or
        // collector task (GET /tasks NetworksAttachments), so none is taken on the
        // peer's word: a compromised node cannot speak for another.
        assert_eq!(r["Verified"], 5, "{r}");
        assert_eq!(
            r["Asked"], 5,
            "tasks.agent and tasks.collector: one address per node: {r}"
        );
        assert_eq!(r["Failures"], serde_json::json!([]), "{r}");
    }
    let mut ms: Vec<f64> = reads
        .iter()
        .map(|r| r["Millis"].as_f64().unwrap())
        .collect();
    ms.sort_by(f64::total_cmp);
    eprintln!(
        "engine_stats: the combined engine-stats read of 5 nodes ({} tasks): median {:.0} ms, min {:.0} ms, max {:.0} ms",
        reads[0]["Tasks"], ms[2], ms[0], ms[4]
    );

    // Demotion: a manager's agent stops (a worker keeps no agent and none of its
    // secrets), Swarm does not restart it there (node.role == manager) and starts
    // the node's collector, which the holder reads.
    phase("stats read measured");
    let n3_agent = agent_container(&c, "n3");
    ok(c.docker("n1", &["node", "demote", &Cluster::hostname("n3")]));
    c.wait_until(
        "n3's agent gone and its collector running",
        Duration::from_secs(90),
        || {
            container_of(&c, "n3", "agent").is_none()
                && container_of(&c, "n3", "collector").is_some()
        },
    );
    let out = ok(c.docker("n3", &["logs", &n3_agent]));
    let logs = stdout(&out) + &stderr(&out);
    assert!(
        logs.contains("this node is no longer a manager: the agent stops"),
        "{logs}"
    );
    let code = ok(c.docker(
        "n3",
        &["inspect", "--format", "{{.State.ExitCode}}", &n3_agent],
    ));
    assert_eq!(stdout(&code).trim(), "0", "{logs}");
    let all = stdout(&ok(c.docker("n3", &["ps", "-q"])));
    for id in all.split_whitespace() {
        assert!(
            !has_file(&c, "n3", id, "/run/secrets/redis"),
            "demoted n3: container {id} has the Redis password"
        );
    }
    let stats_read = || {
        let out = ok(c.docker(
            "n1",
            &[
                "exec",
                &n1_agent,
                "/docker-microscale",
                "__stats-read",
                "--peers",
                "tasks.agent:9091,tasks.collector:9091",
                "--token-file",
                "/run/secrets/microscale-stats-token",
                "--runs",
                "1",
            ],
        ));
        json_lines(&stdout(&out))[0].clone()
    };
    c.wait_until(
        "every node read, n3 through its collector",
        Duration::from_secs(60),
        || stats_read()["Nodes"] == 5,
    );
    // Promotion: Swarm starts the manager's agent there; a collector still
    // running on the node takes no part in the lease, and says so.
    ok(c.docker("n1", &["node", "promote", &Cluster::hostname("n3")]));
    c.wait_until("an agent on n3 again", Duration::from_secs(90), || {
        container_of(&c, "n3", "agent").is_some()
    });
    // Its engine a manager (the new role's certificate may take a while) …
    c.wait_until(
        "n3's engine a manager again",
        Duration::from_secs(90),
        || {
            c.docker_within(
                "n3",
                &["info", "--format", "{{.Swarm.ControlAvailable}}"],
                Duration::from_secs(10),
            )
            .is_some_and(|o| stdout(&o).trim() == "true")
        },
    );
    // … a collector still there checks its role every 15 s (its default interval).
    if let Some(id) = container_of(&c, "n3", "collector") {
        let said = || {
            let out = c.docker("n3", &["logs", &id]);
            stdout(&out) + &stderr(&out)
        };
        let start = std::time::Instant::now();
        while !said().contains("--collector on a manager: collector only")
            && start.elapsed() < Duration::from_secs(45)
        {
            std::thread::sleep(Duration::from_millis(500));
        }
        let log = said();
        assert!(
            log.contains("--collector on a manager: collector only")
                || container_of(&c, "n3", "collector").is_none(),
            "n3's collector on a manager:\n{log}"
        );
        assert!(!log.contains("lease acquired"), "{log}");
    }
    let r = stats_read();
    assert_eq!(r["Nodes"], 5, "{r}");
    phase("demotion and promotion checked");
}
