//! A node that goes down, for real: the worker's dockerd is frozen with SIGSTOP until
//! the manager marks the node down, then thawed.
//!
//! This is its own test binary because it takes a node away from the swarm: cargo runs
//! test binaries one after another, so no other test sees the worker down.

#[path = "integration/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::time::Duration;

use harness::*;

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
        let out = ok(plugin(&["status", &svc.name]));
        assert!(stdout(&out).contains("on down node"), "{}", stdout(&out));
    }
    wait_until(
        "the worker node to be ready again",
        Duration::from_secs(90),
        || worker_state() == "Ready",
    );
}
