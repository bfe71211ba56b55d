//! Deployment: the agent image (`scripts/agent-image`, `deploy/Dockerfile`, FROM
//! scratch) built from the binary under test, run as a Swarm service on the private
//! swarm's manager with the engine's socket bind-mounted, as `deploy/stack.yml` runs
//! it; and the stack file itself.
//!
//! The image is built from `plugin_bin()` (a dynamic debug build: the script copies
//! the libraries `ldd` lists), so no release build is needed here.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// An image and a service made by the test; both removed when dropped (the service
/// first, so that no container still uses the image).
struct Deployed {
    image: String,
    service: Option<String>,
}

impl Drop for Deployed {
    fn drop(&mut self) {
        if let Some(s) = &self.service {
            let _ = docker(&["service", "rm", s]);
            let filter = format!("label=com.docker.swarm.service.name={s}");
            let _ = wait_until_quiet(Duration::from_secs(30), || {
                docker(&["ps", "-aq", "--filter", &filter])
                    .stdout
                    .is_empty()
            });
        }
        let _ = docker(&["image", "rm", "-f", &self.image]);
    }
}

/// Like `wait_until`, but returns whether `check` passed instead of panicking (for
/// cleanup).
fn wait_until_quiet(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// `scripts/agent-image --binary BIN --tag TAG` against the private manager.
fn build_image(tag: &str) {
    require("bash", "bash");
    require("ldd", "libc-bin");
    let out = clean(repo().join("scripts/agent-image"), plugin_config())
        .env("DOCKER_HOST", manager_host())
        .arg("--binary")
        .arg(plugin_bin())
        .args(["--tag", tag])
        .output()
        .expect("run scripts/agent-image");
    let out = ok(out);
    assert_eq!(stdout(&out).trim(), tag, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is dynamic: copying the"),
        "a debug build is dynamic: {}",
        stderr(&out)
    );
    // No builder: imported as one layer, without the legacy builder's warning.
    assert!(
        stderr(&out).contains("one layer, FROM scratch") && !stderr(&out).contains("DEPRECATED"),
        "{}",
        stderr(&out)
    );
}

/// `scripts/agent-image` without `--binary` reuses a release binary newer than every
/// input of the build, and builds (here: would build, and finds no cargo) when one
/// input is newer. A copy of the script in a tree of its own, with old inputs.
#[test]
fn the_agent_image_reuses_an_up_to_date_release_binary() {
    require("bash", "bash");
    let tree = tempfile::tempdir().unwrap();
    let root = tree.path();
    for dir in [
        "scripts",
        "deploy",
        "src",
        "docs",
        "plugin-metadata",
        "target/release",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy(
        repo().join("scripts/agent-image"),
        root.join("scripts/agent-image"),
    )
    .unwrap();
    std::fs::copy(
        repo().join("deploy/Dockerfile"),
        root.join("deploy/Dockerfile"),
    )
    .unwrap();
    let inputs = [
        "src/main.rs",
        "docs/agent.md",
        "build.rs",
        "Cargo.toml",
        "Cargo.lock",
        "plugin-metadata/metadata.json",
    ];
    for f in inputs {
        std::fs::write(root.join(f), "").unwrap();
    }
    let touch = |date: &str, f: &str| {
        ok(std::process::Command::new("touch")
            .args(["-d", date])
            .arg(root.join(f))
            .output()
            .unwrap());
    };
    for f in inputs {
        touch("2001-01-01", f);
    }
    let release = root.join("target/release/docker-microscale");
    std::fs::copy(plugin_bin(), &release).unwrap();
    touch("2002-01-01", "target/release/docker-microscale");
    let tag = format!("microscale-test/agent:{}", unique("fresh"));
    let _image = Deployed {
        image: tag.clone(),
        service: None,
    };
    // No cargo on PATH: a rebuild would fail at once, and say why.
    let script = |tag: &str| {
        clean(root.join("scripts/agent-image"), plugin_config())
            .env(
                "PATH",
                "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
            )
            .env("DOCKER_HOST", manager_host())
            .args(["--tag", tag])
            .output()
            .expect("run scripts/agent-image")
    };
    let out = ok(script(&tag));
    assert_eq!(stdout(&out).trim(), tag, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("reusing {}", release.display())),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("DEPRECATED"), "{}", stderr(&out));
    let created = ok(docker(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"org.opencontainers.image.version\"}} {{json .Config.Entrypoint}}",
        &tag,
    ]));
    assert_eq!(
        stdout(&created).trim(),
        format!(
            "{} [\"/docker-microscale\",\"run\"]",
            env!("CARGO_PKG_VERSION")
        )
    );
    // A source file changed since: not reused.
    touch("2003-01-01", "src/main.rs");
    let out = script(&format!("{tag}-stale"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("src/main.rs is newer") && stderr(&out).contains("cargo not found"),
        "{}",
        stderr(&out)
    );
}

/// The agent's JSON log lines, from `docker service logs --raw`.
fn service_log(service: &str) -> Vec<Value> {
    let out = docker(&["service", "logs", "--raw", service]);
    // The agent logs to stderr; the CLI passes the container's stderr to its own.
    let text = stdout(&out) + &stderr(&out);
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .collect()
}

#[test]
fn the_agent_image_runs_as_a_swarm_service_and_acts() {
    let tag = format!("microscale-test/agent:{}", unique("t"));
    let mut deployed = Deployed {
        image: tag.clone(),
        service: None,
    };
    build_image(&tag);

    // The image is FROM scratch: the binary, the libraries of this dynamic build, the
    // CA roots and passwd, and nothing else (no shell); `run` as entrypoint.
    require("tar", "tar");
    let created = ok(docker(&["create", &tag]));
    let container = stdout(&created).trim().to_string();
    let listing = clean("sh", plugin_config())
        .env("DOCKER_HOST", manager_host())
        .args(["-c", "docker export \"$1\" | tar -t", "sh", &container])
        .output()
        .unwrap();
    let _ = docker(&["rm", &container]);
    let files = stdout(&ok(listing));
    for want in [
        "docker-microscale",
        "etc/ssl/certs/ca-certificates.crt",
        "etc/passwd",
        "etc/group",
        "libc.so.6",
    ] {
        assert!(files.contains(want), "{want} not in the image:\n{files}");
    }
    assert!(
        !files
            .lines()
            .any(|f| f.ends_with("bin/sh") || f.contains("busybox")),
        "a shell in the image:\n{files}"
    );
    let out = ok(docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Config.User}}",
        &tag,
    ]));
    assert_eq!(
        stdout(&out).trim(),
        r#"["/docker-microscale","run"] ["--listen",":9090","--log-format","json"] 0:0"#
    );

    // A service with a rule on a metric the test controls: 5 / target 10 -> 1 replica.
    let (port, depth) = serve_json_cell(r#"{"depth": 5}"#);
    let svc = queue_service("deployed-worker", port, 4);

    // The agent as a service on the manager, as deploy/stack.yml runs it: the
    // engine's socket bind-mounted at /var/run/docker.sock. Host network, so that it
    // reaches the test's loopback metric server and its --listen port is the test's.
    let socket = manager_host()
        .strip_prefix("unix://")
        .expect("MICROSCALE_TEST_HOST is a unix:// socket")
        .to_string();
    let agent = unique("microscale-agent");
    let listen_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{listen_port}");
    let lease = unique("lease");
    let mount = format!("type=bind,source={socket},target=/var/run/docker.sock");
    ok(docker(&[
        "service",
        "create",
        "-d",
        "-q",
        "--no-resolve-image",
        "--name",
        &agent,
        "--mode",
        "global",
        "--constraint",
        "node.role==manager",
        "--mount",
        &mount,
        "--network",
        "host",
        "--restart-condition",
        "any",
        "--stop-grace-period",
        "10s",
        "--limit-memory",
        "256M",
        &tag,
        "--listen",
        &listen,
        "--log-format",
        "json",
        "--interval",
        "1s",
        "--lease-name",
        &lease,
        "--lease-ttl",
        "3s",
        &svc.name,
    ]));
    deployed.service = Some(agent.clone());

    // It starts and reads the swarm: /healthz says ok.
    let healthy = wait_until_quiet(Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", listen_port)).is_ok()
            && http_get(listen_port, "/healthz") == (200, "ok\n".to_string())
    });
    if !healthy {
        let ps = docker(&["service", "ps", "--no-trunc", &agent]);
        panic!(
            "the agent service did not become healthy within 60s\nservice ps:\n{}{}\nlogs:\n{:#?}",
            stdout(&ps),
            stderr(&ps),
            service_log(&agent)
        );
    }
    // The image's own health check client (no shell, no curl in FROM scratch), as
    // the stack file's healthcheck runs it.
    let healthz = |addr: &str| {
        docker(&[
            "run",
            "--rm",
            "--network",
            "host",
            "--entrypoint",
            "/docker-microscale",
            &tag,
            "__healthz",
            "--timeout",
            "3s",
            addr,
        ])
    };
    let out = ok(healthz(&listen));
    assert_eq!(stdout(&out), "ok\n");
    let decided = |l: &Value| l["message"] == "decision" && l["service"] == svc.name.as_str();
    wait_until(
        "a first decision in the service logs",
        Duration::from_secs(30),
        || service_log(&agent).iter().any(decided),
    );
    assert_eq!(replicas(&svc.name), 1);

    // The metric rises: 35 / 10 -> 4 replicas, set by the agent in its container.
    *depth.lock().unwrap() = r#"{"depth": 35}"#.to_string();
    wait_until("the agent to scale to 4", Duration::from_secs(60), || {
        replicas(&svc.name) == 4
    });

    // Its decisions are in `docker service logs`, as JSON lines.
    let mut lines = vec![];
    wait_until(
        "the scale in the service logs",
        Duration::from_secs(30),
        || {
            lines = service_log(&agent);
            lines
                .iter()
                .any(|l| l["message"] == "scaled" && l["service"] == svc.name.as_str())
        },
    );
    let started = lines
        .iter()
        .find(|l| l["message"] == "agent started")
        .unwrap_or_else(|| panic!("no 'agent started' line: {lines:#?}"));
    assert_eq!(started["lease"], lease.as_str());
    let scaled = lines
        .iter()
        .find(|l| l["message"] == "scaled" && l["service"] == svc.name.as_str())
        .unwrap();
    assert_eq!(
        (scaled["from"].as_u64(), scaled["to"].as_u64()),
        (Some(1), Some(4))
    );
    assert!(scaled["timestamp"].as_str().is_some(), "{scaled}");
    let up = lines
        .iter()
        .find(|l| decided(l) && l["action"] == "scale up")
        .unwrap_or_else(|| panic!("no scale-up decision: {lines:#?}"));
    assert_eq!(up["desired"], 4);
    assert!(
        up["reasons"].as_str().unwrap_or("").contains("35"),
        "the reasons name the metric value: {up}"
    );
    let (_, metrics) = http_get(listen_port, "/metrics");
    assert!(
        metrics.contains(&format!(
            "microscale_updates_total{{service=\"{}\"}} 1",
            svc.name
        )),
        "{metrics}"
    );

    // The stack file's health check, inside the agent's FROM-scratch container: no
    // address, so the health socket the agent made there.
    let filter = format!("label=com.docker.swarm.service.name={agent}");
    let container = stdout(&ok(docker(&["ps", "-q", "--filter", &filter])))
        .trim()
        .to_string();
    let out = ok(docker(&[
        "exec",
        &container,
        "/docker-microscale",
        "__healthz",
        "--timeout",
        "3s",
    ]));
    assert_eq!(stdout(&out), "ok\n");

    // `docker service rm` stops it with SIGTERM: it exits 0, scaling nothing.
    ok(docker(&["service", "rm", &agent]));
    deployed.service = None;
    if !container.is_empty() {
        let _ = wait_until_quiet(Duration::from_secs(20), || {
            stdout(&docker(&[
                "inspect",
                "--format",
                "{{.State.Running}}",
                &container,
            ]))
            .trim()
                != "true"
        });
        let code = docker(&["inspect", "--format", "{{.State.ExitCode}}", &container]);
        if code.status.success() {
            assert_eq!(stdout(&code).trim(), "0", "exit code after SIGTERM");
        }
    }
    assert_eq!(replicas(&svc.name), 4);
    // Nobody listens any more: the health check fails and says why.
    fails(
        &healthz(&listen),
        1,
        &format!("unhealthy: cannot reach the agent's /healthz on http://{listen}"),
    );
}

/// `deploy/stack.yml` is a valid stack file (the docker CLI's own parser) and says
/// what docs/agent.md says it does: an `agent` on every manager, with the metric
/// secrets, and a `collector` on every worker, with the stats token only.
#[test]
fn the_stack_file_parses_into_agents_on_managers_and_collectors_on_workers() {
    let file = repo().join("deploy/stack.yml");
    let out = ok(Command::new("docker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", plugin_config())
        .env("DOCKER_CONFIG", plugin_config())
        .env("DOCKER_HOST", manager_host())
        .args(["stack", "config", "--compose-file"])
        .arg(&file)
        .output()
        .expect("run docker stack config"));
    let text = stdout(&out);
    // The services, each from its own indented block of the parsed file.
    let block = |name: &str| -> String {
        let head = format!("  {name}:");
        let mut lines = text.lines().skip_while(|l| *l != head);
        assert!(lines.next().is_some(), "no service {name}:\n{text}");
        lines
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let agent = block("agent");
    let collector = block("collector");
    for want in [
        "mode: global",
        "node.role == manager",
        "endpoint_mode: dnsrr",
        "--stats-listen=:9091",
        "--stats-peers=tasks.agent:9091,tasks.collector:9091",
        "--stats-token-file=/run/secrets/microscale-stats-token",
        "source: microscale-stats-token",
        "source: microscale-redis-password",
        "/var/run/docker.sock",
        "mode: host",
        "order: stop-first",
        "--metric-secret=redis=queue:6379",
        "- __healthz",
    ] {
        assert!(
            agent.contains(want),
            "{want:?} not in the agent service:\n{agent}"
        );
    }
    assert!(!agent.contains("--collector"), "{agent}");
    for want in [
        "mode: global",
        "node.role == worker",
        "endpoint_mode: dnsrr",
        "- --collector",
        "--stats-listen=:9091",
        "--stats-token-file=/run/secrets/microscale-stats-token",
        "source: microscale-stats-token",
        "/var/run/docker.sock",
        "- __healthz",
    ] {
        assert!(
            collector.contains(want),
            "{want:?} not in the collector service:\n{collector}"
        );
    }
    // A worker gets no secret but the stats token, publishes nothing, reads no
    // metric and takes no lease.
    for absent in [
        "microscale-redis-password",
        "--metric-",
        "--stats-peers",
        "--lease",
        "published:",
        "backend",
        "node.role == manager",
    ] {
        assert!(
            !collector.contains(absent),
            "{absent:?} in the collector service:\n{collector}"
        );
    }
    assert_eq!(
        collector.matches("source: ").count(),
        2,
        "the socket mount and the stats token only:\n{collector}"
    );
    // The example worker's rule reads the secret the agent has.
    assert!(text.contains("secret-file=/run/secrets/redis"), "{text}");
}
