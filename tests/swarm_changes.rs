//! Tests that change the swarms themselves, in a test binary of their own: cargo runs
//! test binaries one after another, so no other test sees these changes.
//! - A node that goes down, for real: the worker's dockerd is frozen with SIGSTOP
//!   until the manager marks the node down, then thawed.
//! - An empty swarm: the engine that is in no swarm becomes a swarm of its own for a
//!   moment.

#[path = "integration/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "../src/testutil.rs"]
#[allow(dead_code)]
mod testutil;

use std::time::Duration;

use harness::*;

/// The tests here change the swarm for everyone (a frozen worker, a restarted
/// manager): they take turns, whatever the number of test threads.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn my_turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Freezes a process until dropped.
struct Frozen(u32);

impl Frozen {
    fn new(pid: u32) -> Frozen {
        signal(pid, "-STOP");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

fn signal(pid: u32, sig: &str) {
    ok(std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .output()
        .unwrap());
}

fn worker_state() -> String {
    let out = ok(docker(&[
        "node",
        "ls",
        "--filter",
        "role=worker",
        "--format",
        "{{.Status}}",
    ]));
    stdout(&out).trim().to_string()
}

#[test]
fn tasks_on_a_down_node_are_called_out() {
    let _turn = my_turn();
    let dir = std::env::var("MICROSCALE_SANDBOX_DIR")
        .expect("MICROSCALE_SANDBOX_DIR is not set: run the tests with scripts/test");
    let pid: u32 = std::fs::read_to_string(format!("{dir}/w/dockerd.pid"))
        .expect("the worker's pid file (scripts/test starts the sandbox --with-worker)")
        .trim()
        .parse()
        .unwrap();
    let _ = worker_host();

    // One task on each node.
    let svc = TestService::create(
        &unique("downnode"),
        &["--replicas", "2", "--replicas-max-per-node", "1"],
    );
    wait_until("a task on each node", Duration::from_secs(60), || {
        let rows = status_json(&svc.name);
        rows.len() == 1 && rows[0]["Running"] == 2 && rows[0]["Nodes"] == 2
    });

    {
        let _frozen = Frozen::new(pid);
        wait_until(
            "the worker node to be down",
            Duration::from_secs(90),
            || worker_state() == "Down",
        );
        let rows = status_json(&svc.name);
        assert!(
            rows[0]["TasksOnDownNodes"].as_u64().unwrap() >= 1,
            "{:#}",
            rows[0]
        );
        let down = rows[0]["DownNodes"].as_array().unwrap();
        assert_eq!(down.len(), 1, "{:#}", rows[0]);
        // The stale task is not running: the manager's task is the only replica (its
        // replacement cannot be placed: at most one per node), and NODES leaves the
        // down node out.
        assert_eq!(rows[0]["Running"], 1, "{:#}", rows[0]);
        assert_eq!(rows[0]["Nodes"], 1, "{:#}", rows[0]);
        let out = ok(plugin(&["status", &svc.name]));
        assert!(
            stdout(&out).contains("1/2 (max 1 per node) (1 stale task on down node"),
            "{}",
            stdout(&out)
        );
        // scale waits for running == desired ignoring the down node's task, which
        // still reports running: it converges.
        let out = plugin(&[
            "scale",
            "--timeout",
            "60s",
            "--format",
            "json",
            &format!("{}=1", svc.name),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let row = &json_lines(&stdout(&out))[0];
        assert_eq!(row["Convergence"], "converged", "{row}");
        assert_eq!(row["Running"], 1, "{row}");
        // What it ignored, said once.
        let err = stderr(&out);
        assert_eq!(
            err.matches("ignoring 1 stale task on down node").count(),
            1,
            "{err}"
        );
    }
    wait_until(
        "the worker node to be ready again",
        Duration::from_secs(90),
        || worker_state() == "Ready",
    );
}

/// A swarm with no service at all: the private engine that is in no swarm becomes
/// a one-node swarm of its own for this test, then leaves it again.
#[test]
fn an_empty_swarm_prints_the_header_only() {
    let _turn = my_turn();
    let plain = plain_host();
    let dk = |args: &[&str]| {
        clean("docker", plugin_config())
            .env("DOCKER_HOST", &plain)
            .args(args)
            .output()
            .unwrap()
    };
    // Swarm nodes on one host need their own loopback address (port 7946 is fixed)
    // and their own docker_gwbridge.
    let busy = stdout(&ok(std::process::Command::new("ss")
        .args(["-Hlntu"])
        .output()
        .unwrap()));
    let addr = (100..=250)
        .map(|n| format!("127.0.0.{n}"))
        .find(|a| !busy.contains(&format!("{a}:7946")))
        .expect("a loopback address with port 7946 free");
    let port = || {
        std::net::TcpListener::bind((addr.as_str(), 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string()
    };
    let (listen, data) = (port(), port());
    let routes = stdout(&ok(std::process::Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .unwrap()));
    // In 198.19.48.0/21, the tests' own part of the RFC 2544 range (see
    // mn_layout in scripts/sandbox); the swarm's pool is 198.19.56.0/21.
    let net = (0..8)
        .map(|n| 48 + (std::process::id() as usize + n) % 8)
        .find(|n| !routes.contains(&format!("198.19.{n}.")))
        .expect("a free 198.19.x.0/24 in 198.19.48.0/21");
    let bridge = format!("msgwe{}", std::process::id() % 100_000);
    ok(dk(&[
        "network",
        "create",
        "--driver",
        "bridge",
        "--subnet",
        &format!("198.19.{net}.0/24"),
        "--opt",
        &format!("com.docker.network.bridge.name={bridge}"),
        "--opt",
        "com.docker.network.bridge.enable_ip_masquerade=false",
        "docker_gwbridge",
    ]));
    struct Leave<'a>(&'a dyn Fn(&[&str]) -> std::process::Output);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["swarm", "leave", "--force"]);
            let _ = (self.0)(&["network", "rm", "docker_gwbridge"]);
        }
    }
    let _leave = Leave(&dk);
    ok(dk(&[
        "swarm",
        "init",
        "--advertise-addr",
        &addr,
        "--listen-addr",
        &format!("{addr}:{listen}"),
        "--data-path-port",
        &data,
        "--default-addr-pool",
        "198.19.56.0/21",
        "--default-addr-pool-mask-length",
        "24",
    ]));

    let run = |args: &[&str]| {
        ok(clean(plugin_bin(), plugin_config())
            .env("DOCKER_HOST", &plain)
            .args(args)
            .output()
            .unwrap())
    };
    let table = stdout(&run(&["status"]));
    assert_eq!(
        table.split_whitespace().collect::<Vec<_>>(),
        [
            "NAME", "MODE", "REPLICAS", "IMAGE", "UPDATE", "SOURCE", "RULE", "METRIC", "DESIRED",
            "NODES"
        ]
    );
    assert_eq!(table.lines().count(), 1);
    assert_eq!(stdout(&run(&["status", "--format", "json"])), "");
    assert_eq!(stdout(&run(&["status", "-q"])), "");
}

/// The agent survives a restart of its engine: it backs off while the engine is
/// away, acts on nothing stale, and acts again once the engine is back.
#[test]
fn the_agent_carries_on_through_an_engine_restart() {
    let _turn = my_turn();
    let dir = std::env::var("MICROSCALE_SANDBOX_DIR")
        .expect("MICROSCALE_SANDBOX_DIR is not set: run the tests with scripts/test");
    let (port, depth) = serve_json_cell(r#"{"depth": 20}"#);
    let svc = queue_service("agent-restart", port, 6);
    let lease = unique("lease");
    let mut agent = Agent::start(&[
        "--interval",
        "1s",
        "--lease-name",
        &lease,
        "--lease-ttl",
        "3s",
        &svc.name,
    ]);
    agent.wait_log("the first scale", Duration::from_secs(60), |l| {
        l["message"] == "scaled" && l["to"] == 2
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sandbox");
    let restarted = std::process::Command::new(script)
        .args(["restart-manager", "--dir", &dir])
        .output()
        .unwrap();
    assert!(
        restarted.status.success(),
        "{}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    let back = jiff::Timestamp::now();
    assert!(
        agent.running(),
        "the agent exited during the engine restart"
    );
    agent.wait_log(
        "an error while the engine was away",
        Duration::from_secs(5),
        |l| l["message"] == "cannot read the swarm: acting on nothing this pass",
    );
    *depth.lock().unwrap() = r#"{"depth": 50}"#.to_string();
    let scaled = agent.wait_log("a scale after the restart", Duration::from_secs(120), |l| {
        l["message"] == "scaled" && l["to"] == 5
    });
    assert!(at(&scaled) > back);
    let (code, _) = http_get(agent.port, "/healthz");
    assert_eq!(code, 200);
    assert_eq!(agent.stop(), Some(0));
}
