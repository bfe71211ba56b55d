//! Tests on a private multi-node swarm: each test starts its own cluster of test
//! hosts (network namespaces with their own dockerd, `scripts/sandbox up --nodes`)
//! through [`harness::Cluster`], one cluster at a time. A cluster costs about ten
//! seconds to start and stop, so each test folds several checks into one cluster.

mod down_nodes;
mod engine_stats;
mod ha;
mod harness;
mod sandbox;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::*;

/// The swarm the sandbox builds: five nodes Ready, the first three managers, each
/// node a host of its own (name, address, engine), a global service's task on
/// every node seeing that node's own engine at `/var/run/docker.sock`, served on
/// each node's address by a host-mode published port, and reaching the others on
/// an overlay network (DNS round robin); then a
/// worker killed (every manager sees it down) and restarted (ready again), and a
/// worker frozen (its engine does not answer within 2 s) and thawed.
#[test]
fn five_nodes_each_a_host_with_its_own_engine_socket_and_worker_faults() {
    let c = Cluster::up(5, 3);
    assert_eq!(c.nodes(), ["n1", "n2", "n3", "n4", "n5"]);
    assert_eq!(c.managers(), ["n1", "n2", "n3"]);
    assert_eq!(c.workers(), ["n4", "n5"]);

    // Every manager sees the same five nodes, all Ready and Active, and exactly
    // the three managers with a manager status, one of them the leader.
    for m in c.managers() {
        let out = ok(c.docker(
            &m,
            &[
                "node",
                "ls",
                "--format",
                "{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}}",
            ],
        ));
        let mut rows: Vec<Vec<String>> = stdout(&out)
            .lines()
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect();
        rows.sort();
        let hosts: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(
            hosts,
            [
                "sandbox-n1",
                "sandbox-n2",
                "sandbox-n3",
                "sandbox-n4",
                "sandbox-n5"
            ],
            "node ls on {m}"
        );
        for r in &rows {
            assert_eq!(&r[1..3], ["Ready", "Active"], "node ls on {m}: {r:?}");
        }
        let statuses: Vec<&str> = rows.iter().map(|r| r.get(3).map_or("", |s| s)).collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == "Leader").count(),
            1,
            "{m}: {rows:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == "Reachable").count(),
            2,
            "{m}: {rows:?}"
        );
        assert_eq!(
            &statuses[3..],
            ["", ""],
            "workers have no manager status: {rows:?}"
        );
    }
    let leader = c.leader().expect("a leader");
    assert!(c.managers().contains(&leader), "leader {leader}");

    // Each node is a host: its own name and swarm address, its own network
    // namespace holding that address.
    let mut addrs = vec![];
    for n in c.nodes() {
        let info = stdout(&ok(
            c.docker(&n, &["info", "--format", "{{.Name}} {{.Swarm.NodeAddr}}"])
        ));
        assert_eq!(
            info.trim(),
            format!("{} {}", Cluster::hostname(&n), c.addr(&n)),
            "docker info on {n}"
        );
        let addr = c.addr(&n);
        assert!(
            addr.starts_with("198.18."),
            "{n}: {addr} is not in 198.18.0.0/15"
        );
        addrs.push(addr);
    }
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 5, "one address per node: {addrs:?}");
    let mut ip = Command::new("ip");
    ip.args(["-o", "-4", "addr", "show", "dev", "eth0"])
        .stdout(std::process::Stdio::piped());
    let out = c.spawn_in("n2", ip).wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(" {}/24 ", c.addr("n2"))),
        "eth0 in n2's network namespace: {text}"
    );
    // The script's exec verb runs in the node's namespace too.
    let out = ok(Command::new(sandbox_script())
        .args(["exec", "n4", "--dir"])
        .arg(c.dir())
        .args(["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap());
    assert!(
        stdout(&out).contains(&format!(" {}/24 ", c.addr("n4"))),
        "exec n4: {}",
        stdout(&out)
    );

    // A global service with the usual socket bind mount: a task on every node,
    // each seeing its own node's engine at /var/run/docker.sock. On an overlay
    // network (DNS round robin: no IPVS here), with a port published in host
    // mode on every node: busybox httpd serving the task's /etc.
    ok(c.docker("n1", &["network", "create", "-d", "overlay", "ov"]));
    let out = ok(c.docker(
        "n1",
        &[
            "service",
            "create",
            "-d",
            "-q",
            "--no-resolve-image",
            "--name",
            "sock",
            "--mode",
            "global",
            "--network",
            "ov",
            "--endpoint-mode",
            "dnsrr",
            "--publish",
            "mode=host,target=8080,published=18080",
            "--stop-signal",
            "KILL",
            "--mount",
            "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock",
            &c.image(),
            "/bin/sh",
            "-c",
            "test -S /var/run/docker.sock && exec /bin/busybox httpd -f -p 8080 -h /etc",
        ],
    ));
    assert!(!stdout(&out).trim().is_empty());
    c.wait_until(
        "a running sock task on every node",
        Duration::from_secs(60),
        || {
            let out = c.docker(
                "n1",
                &[
                    "service",
                    "ps",
                    "sock",
                    "--filter",
                    "desired-state=running",
                    "--format",
                    "{{.Node}} {{.CurrentState}}",
                ],
            );
            let mut nodes: Vec<String> = stdout(&out)
                .lines()
                .filter(|l| l.contains(" Running "))
                .map(|l| l.split(' ').next().unwrap().to_string())
                .collect();
            nodes.sort();
            nodes
                == [
                    "sandbox-n1",
                    "sandbox-n2",
                    "sandbox-n3",
                    "sandbox-n4",
                    "sandbox-n5",
                ]
        },
    );
    let mut sockets = vec![];
    for n in c.nodes() {
        let ps = ok(c.docker(
            &n,
            &[
                "ps",
                "-q",
                "--filter",
                "label=com.docker.swarm.service.name=sock",
            ],
        ));
        let ctr = stdout(&ps).trim().to_string();
        assert_eq!(ctr.lines().count(), 1, "one sock container on {n}: {ctr:?}");
        let seen = stdout(&ok(c.docker(
            &n,
            &[
                "exec",
                &ctr,
                "/bin/busybox",
                "stat",
                "-c",
                "%d %i",
                "/var/run/docker.sock",
            ],
        )));
        let node_socket = c
            .node_socket_id(&n)
            .expect("the node's /var/run/docker.sock");
        assert_eq!(
            seen.trim(),
            format!("{} {}", node_socket.0, node_socket.1),
            "the task on {n} sees its node's /var/run/docker.sock"
        );
        sockets.push(node_socket);
        // ... and that socket is this node's engine.
        let pid = c.engine_pid(&n).unwrap();
        let own = format!("unix:///proc/{pid}/root/run/docker.sock");
        let name = stdout(&ok(
            c.docker(&n, &["-H", &own, "info", "--format", "{{.Name}}"])
        ));
        assert_eq!(
            name.trim(),
            Cluster::hostname(&n),
            "engine behind {n}'s socket"
        );
    }
    sockets.sort();
    sockets.dedup();
    assert_eq!(sockets.len(), 5, "one socket file per node");

    // Host-mode published ports: each node's address serves its own task (the
    // container's host name is its short ID).
    for n in c.nodes() {
        let ctr = stdout(&ok(c.docker(
            &n,
            &[
                "ps",
                "-q",
                "--filter",
                "label=com.docker.swarm.service.name=sock",
            ],
        )));
        let (status, body) = http_get(&c.addr(&n), 18080, "/hostname")
            .unwrap_or_else(|| panic!("no answer from {}:18080", c.addr(&n)));
        assert_eq!(status, 200, "{n}: {body}");
        assert_eq!(
            body.trim(),
            ctr.trim(),
            "{}:18080 is {n}'s task",
            c.addr(&n)
        );
    }
    // The overlay spans the nodes: tasks.sock names the five tasks, and the task
    // on n1 reaches every one of them.
    let ctr = stdout(&ok(c.docker(
        "n1",
        &[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.swarm.service.name=sock",
        ],
    )));
    let ctr = ctr.trim();
    let lookup = stdout(&ok(c.docker(
        "n1",
        &[
            "exec",
            ctr,
            "/bin/busybox",
            "nslookup",
            "tasks.sock",
            "127.0.0.11",
        ],
    )));
    let task_ips: Vec<&str> = lookup
        .lines()
        .filter_map(|l| l.strip_prefix("Address:"))
        .map(str::trim)
        .filter(|a| !a.starts_with("127."))
        .collect();
    assert_eq!(task_ips.len(), 5, "tasks.sock: {lookup}");
    for ip in &task_ips {
        assert!(
            ip.starts_with("198.19."),
            "overlay address {ip} outside 198.19.0.0/16"
        );
        ok(c.docker(
            "n1",
            &[
                "exec",
                ctr,
                "/bin/busybox",
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                ip,
            ],
        ));
    }

    // The plugin, run against a manager, sees the service on five nodes.
    let out = ok(c.plugin(
        "n2",
        &["status", "sock", "--format", "{{.Replicas}} {{.Nodes}}"],
    ));
    assert_eq!(stdout(&out).trim(), "5/5 5");

    // A worker dies: every manager sees it down; restarted, it is ready again.
    let t0 = Instant::now();
    c.kill("n5");
    assert!(c.engine_pid("n5").is_none(), "n5's dockerd survived kill");
    assert!(!c.answers("n5", Duration::from_secs(2)));
    c.kill("n5"); // idempotent
    for m in c.managers() {
        c.wait_until(
            &format!("{m} sees n5 down"),
            Duration::from_secs(60),
            || c.node_state_seen_by(&m, "n5") == "down",
        );
    }
    eprintln!(
        "multinode: a killed worker is down for every manager after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    c.restart("n5");
    assert!(c.answers("n5", Duration::from_secs(5)));
    for m in c.managers() {
        c.wait_until(
            &format!("{m} sees n5 ready"),
            Duration::from_secs(60),
            || c.node_state_seen_by(&m, "n5") == "ready",
        );
    }

    // A frozen worker's engine does not answer; thawed, it does.
    c.freeze("n4");
    let t = Instant::now();
    assert!(
        !c.answers("n4", Duration::from_secs(2)),
        "frozen n4 answered"
    );
    assert!(
        c.docker_within("n4", &["version"], Duration::from_secs(2))
            .is_none(),
        "docker version answered on frozen n4"
    );
    assert!(t.elapsed() >= Duration::from_secs(4));
    c.freeze("n4"); // idempotent
    c.thaw("n4");
    assert!(
        c.answers("n4", Duration::from_secs(10)),
        "thawed n4 does not answer"
    );
    ok(c.docker("n4", &["version"]));
}

/// Raft under faults: the leader cut off from the others (the two left elect a
/// new leader; the cut manager's socket still answers; healed, it is a reachable
/// manager again, allowing for Swarm's Raft without pre-vote), then the leader
/// killed (a new one is elected; restarted, it rejoins). Prints the election
/// times.
#[test]
fn managers_elect_a_leader_after_the_leader_is_cut_off_or_killed() {
    let c = Cluster::up(5, 3);
    let first = c.leader().expect("a leader after up");

    // The leader is cut off: the other two managers elect one of themselves.
    let t0 = Instant::now();
    c.cut(&first);
    assert!(
        c.answers(&first, Duration::from_secs(5)),
        "cut {first}'s socket must answer"
    );
    let other = c.managers().into_iter().find(|m| *m != first).unwrap();
    let mut probe = Command::new("timeout");
    probe.args([
        "3",
        "bash",
        "-c",
        &format!("exec 3<>/dev/tcp/{}/2377", c.addr(&other)),
    ]);
    let status = c.spawn_in(&first, probe).wait().unwrap();
    assert!(!status.success(), "cut {first} still reaches {other}");
    let mut probe = Command::new("timeout");
    probe.args([
        "3",
        "bash",
        "-c",
        &format!("exec 3<>/dev/tcp/{}/2377", c.addr(&first)),
    ]);
    let status = c.spawn_in(&other, probe).wait().unwrap();
    assert!(!status.success(), "{other} still reaches cut {first}");
    let mut second = None;
    let mut elected = Duration::ZERO;
    c.wait_until(
        &format!("a leader other than the cut {first}"),
        Duration::from_secs(90),
        || {
            second = c.leader().filter(|l| *l != first);
            elected = t0.elapsed();
            second.is_some()
        },
    );
    let second = second.unwrap();
    eprintln!(
        "multinode: leader {first} cut off: {second} leads {:.1} s after the cut",
        elected.as_secs_f64()
    );
    c.wait_until(
        &format!("{second} sees the cut {first} unreachable"),
        Duration::from_secs(60),
        || c.manager_status_seen_by(&second, &first) == "Unreachable",
    );

    // Healed: the swarm settles with one leader all managers agree on and three
    // reachable managers (the healed manager may depose the leader first: no
    // pre-vote in Swarm's Raft).
    let t1 = Instant::now();
    c.heal(&first);
    c.wait_until(
        &format!("the managers agree on a leader and see {first} reachable after the heal"),
        Duration::from_secs(120),
        || c.managers_settled(),
    );
    eprintln!(
        "multinode: {first} healed: the managers agree on a leader, all reachable, after {:.1} s",
        t1.elapsed().as_secs_f64()
    );

    // The leader dies: the other two elect a new one.
    let mut doomed = None;
    c.wait_until("a leader after the heal", Duration::from_secs(90), || {
        doomed = c.leader();
        doomed.is_some()
    });
    let doomed = doomed.unwrap();
    let t2 = Instant::now();
    c.kill(&doomed);
    let mut next = None;
    let mut elected = Duration::ZERO;
    c.wait_until(
        &format!("a leader other than the killed {doomed}"),
        Duration::from_secs(90),
        || {
            next = c.leader().filter(|l| *l != doomed);
            elected = t2.elapsed();
            next.is_some()
        },
    );
    let next = next.unwrap();
    eprintln!(
        "multinode: leader {doomed} killed: {next} leads {:.1} s after the kill",
        elected.as_secs_f64()
    );
    for w in c.workers() {
        // A worker still sees its engine answer; the swarm is intact without one manager.
        assert!(c.answers(&w, Duration::from_secs(5)));
    }
    c.restart(&doomed);
    c.wait_until(
        &format!("{doomed} a reachable manager again after its restart"),
        Duration::from_secs(120),
        || c.managers_settled(),
    );
}
