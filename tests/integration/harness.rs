//! The test harness: the private engines started by `scripts/test` (through
//! `scripts/sandbox`), a private docker config with the plugin installed, and
//! services that clean up after themselves.
//!
//! Engine tests read only `MICROSCALE_TEST_HOST` (never `DOCKER_HOST`), so running
//! `cargo test` against a real swarm by mistake creates nothing there. Without it the
//! tests fail with a message saying to run `scripts/test`.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The plugin binary built by cargo for this test run.
pub fn plugin_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_docker-microscale"))
}

fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: the engine tests need the private swarm that scripts/test starts.\n\
             Run the tests with `scripts/test` (it starts a private dockerd, never your own engine)."
        ),
    }
}

/// `unix://` address of the private swarm manager.
pub fn manager_host() -> String {
    required_env("MICROSCALE_TEST_HOST")
}

/// `unix://` address of a private engine joined to the swarm as a worker.
pub fn worker_host() -> String {
    required_env("MICROSCALE_TEST_WORKER_HOST")
}

/// `unix://` address of a private engine that is not in any swarm.
pub fn plain_host() -> String {
    required_env("MICROSCALE_TEST_PLAIN_HOST")
}

/// The test image (`FROM scratch` with a static busybox), present on manager and worker.
pub fn image() -> String {
    std::env::var("MICROSCALE_TEST_IMAGE").unwrap_or_else(|_| "microscale-test/busybox:1".into())
}

/// `127.0.0.1:PORT` of the sandbox's private registry, which holds the provenance
/// test images under `microscale-test/` (see `scripts/sandbox --help`).
pub fn registry() -> String {
    required_env("MICROSCALE_TEST_REGISTRY")
}

/// A private docker config directory with `cli-plugins/docker-microscale` installed
/// (a copy of the binary under test), shared by the tests of this process. It lives
/// in the sandbox directory, so `scripts/sandbox down` removes it.
pub fn plugin_config() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = PathBuf::from(required_env("MICROSCALE_SANDBOX_DIR"));
        let dir = base.join(format!("cfg-{}", std::process::id()));
        install_plugin(&dir);
        dir
    })
}

/// A new, empty docker config directory with only the plugin installed, for tests
/// that change contexts or `currentContext`.
pub fn fresh_config() -> tempfile::TempDir {
    let cfg = tempfile::tempdir().unwrap();
    install_plugin(cfg.path());
    cfg
}

/// Copies the binary under test to `CONFIG_DIR/cli-plugins/docker-microscale`.
fn install_plugin(config_dir: &Path) {
    let plugins = config_dir.join("cli-plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(plugin_bin(), plugins.join("docker-microscale")).unwrap();
}

/// A command with the environment cleared to what the docker CLI needs, pointing at
/// nothing: callers add `DOCKER_HOST`, `-H` or `--context` themselves.
pub fn clean(program: impl AsRef<std::ffi::OsStr>, config: &Path) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", config)
        .env("DOCKER_CONFIG", config)
        .stdin(Stdio::null());
    c
}

/// The plugin run directly, against the manager via `DOCKER_HOST`.
pub fn plugin(args: &[&str]) -> Output {
    clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", manager_host())
        .args(args)
        .output()
        .expect("run docker-microscale")
}

/// The real docker CLI against the manager via `DOCKER_HOST`, with the private config.
pub fn docker(args: &[&str]) -> Output {
    clean("docker", plugin_config())
        .env("DOCKER_HOST", manager_host())
        .args(args)
        .output()
        .expect("run docker")
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Panics with both streams unless the command exited 0.
#[track_caller]
pub fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "command failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    o
}

/// Asserts that a command exited with `code` and said `text` on stderr.
#[track_caller]
pub fn fails(out: &Output, code: i32, text: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(text), "expected {text:?} in stderr: {err}");
}

/// A name unique to this test run: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A swarm service created for one test; removed when dropped.
pub struct TestService {
    pub name: String,
    pub id: String,
}

impl TestService {
    /// `docker service create -d --name NAME --network host ... IMAGE sleep`, with
    /// `extra` flags before the image. SIGKILL as stop signal keeps teardown fast
    /// (busybox `sleep` as PID 1 ignores SIGTERM).
    pub fn create(name: &str, extra: &[&str]) -> TestService {
        Self::create_with_command(name, extra, &["/bin/busybox", "sleep", "1000000"])
    }

    /// Like [`TestService::create`] with a command of the caller's.
    pub fn create_with_command(name: &str, extra: &[&str], command: &[&str]) -> TestService {
        Self::create_full(name, extra, &image(), command)
    }

    /// Like [`TestService::create`] with an image and command of the caller's.
    pub fn create_full(name: &str, extra: &[&str], image: &str, command: &[&str]) -> TestService {
        let mut with = vec!["--no-resolve-image"];
        with.extend_from_slice(extra);
        Self::create_resolved(name, &with, image, command)
    }

    /// Like [`TestService::create_full`], but the docker CLI resolves the image in its
    /// registry and pins the spec to the digest (no `--no-resolve-image`).
    pub fn create_resolved(
        name: &str,
        extra: &[&str],
        image: &str,
        command: &[&str],
    ) -> TestService {
        let mut args = vec![
            "service",
            "create",
            "-d",
            "-q",
            "--name",
            name,
            "--network",
            "host",
            "--stop-signal",
            "KILL",
        ];
        args.extend_from_slice(extra);
        args.push(image);
        args.extend_from_slice(command);
        let out = ok(docker(&args));
        TestService {
            name: name.to_string(),
            id: stdout(&out).trim().to_string(),
        }
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        let _ = docker(&["service", "rm", &self.id]);
    }
}

/// Polls `check` every 200 ms until it returns true or `timeout` passes.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// `docker service ls --format json` rows for names starting with `prefix`.
pub fn docker_service_ls(prefix: &str) -> Vec<serde_json::Value> {
    let filter = format!("name={prefix}");
    let out = ok(docker(&[
        "service", "ls", "--filter", &filter, "--format", "json",
    ]));
    json_lines(&stdout(&out))
}

/// Parses one JSON object per line.
#[track_caller]
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The plugin's JSON rows for names starting with `prefix`.
pub fn status_json(prefix: &str) -> Vec<serde_json::Value> {
    let filter = format!("name={prefix}");
    let out = ok(plugin(&["status", "--filter", &filter, "--format", "json"]));
    json_lines(&stdout(&out))
}

/// Fails unless `program` is on PATH: tests never skip (scripts/sandbox installs it).
pub fn require(program: &str, package: &str) {
    crate::testutil::require_program(program, package);
}

/// Serves `body` as JSON to every HTTP request on a loopback port, in a thread.
pub fn serve_json(body: &'static str) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// A private redis-server on a free loopback port, stopped when dropped.
pub struct Redis {
    pub port: u16,
    /// The TLS port ([`Redis::start_tls`]); 0 without TLS.
    pub tls_port: u16,
    child: std::process::Child,
}

fn free_loopback_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(&[], 0)
    }

    /// A server that also listens over TLS (`tls_port`), with a certificate for
    /// localhost and 127.0.0.1 signed by a CA made in `dir` (`dir/ca.pem`); it
    /// asks clients for no certificate (`tls-auth-clients no`).
    pub fn start_tls(dir: &Path) -> Redis {
        let authority = crate::testutil::TestCa::new(dir, "ca");
        let server = authority.issue("server", &["DNS:localhost", "IP:127.0.0.1"]);
        let (ca, cert, key) = (authority.cert, server.cert, server.key);
        let tls_port = free_loopback_port();
        let port = tls_port.to_string();
        let (ca, cert, key) = (
            ca.display().to_string(),
            cert.display().to_string(),
            key.display().to_string(),
        );
        let r = Redis::start_with(
            &[
                "--tls-port",
                &port,
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                "no",
            ],
            tls_port,
        );
        wait_until(
            "redis-server listens over TLS",
            std::time::Duration::from_secs(20),
            || std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok(),
        );
        r
    }

    fn start_with(extra: &[&str], tls_port: u16) -> Redis {
        let port = free_loopback_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) must be installed: scripts/sandbox installs it");
        let r = Redis {
            port,
            tls_port,
            child,
        };
        wait_until(
            "redis-server answers",
            std::time::Duration::from_secs(20),
            || r.cli(&["PING"]).trim() == "PONG",
        );
        r
    }

    /// Stops the server (SIGKILL): the source is then dead.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli (Debian package redis-tools)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running agent whose JSON log lines (stderr) are collected.
pub struct Agent {
    child: Child,
    log: Arc<Mutex<Vec<Value>>>,
    /// The `--listen` port.
    pub port: u16,
}

impl Agent {
    /// `docker-microscale run --log-format json --listen 127.0.0.1:PORT ARGS...`
    /// against the manager.
    pub fn start(args: &[&str]) -> Agent {
        Agent::start_on(&manager_host(), args)
    }

    /// The same against the engine at `host`.
    pub fn start_on(host: &str, args: &[&str]) -> Agent {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = clean(plugin_bin(), plugin_config())
            .env("DOCKER_HOST", host)
            .args(["run", "--log-format", "json", "--listen", &listen])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(vec![]));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({"message": line, "not_json": true}));
                sink.lock().unwrap().push(v);
            }
        });
        Agent { child, log, port }
    }

    /// The log lines so far.
    pub fn lines(&self) -> Vec<Value> {
        self.log.lock().unwrap().clone()
    }

    /// Waits for a log line matching `pred` and returns it.
    #[track_caller]
    pub fn wait_log(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(v) = self.lines().into_iter().find(|l| pred(l)) {
                return v;
            }
            if start.elapsed() > timeout {
                panic!(
                    "no log line for {what} within {timeout:?}; log:\n{:#?}",
                    self.lines()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then the exit code.
    pub fn stop(mut self) -> Option<i32> {
        signal(self.child.id(), "-TERM");
        let code = self.child.wait().unwrap().code();
        std::thread::sleep(Duration::from_millis(100));
        code
    }

    /// Whether the agent still runs (used by tests/swarm_changes.rs).
    #[allow(dead_code)]
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGKILL: no clean shutdown.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, sig: &str) {
    ok(std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .output()
        .unwrap());
}

/// `GET path` on a loopback HTTP port: (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
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

pub fn replicas(service: &str) -> u64 {
    let out = ok(docker(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.Mode.Replicated.Replicas}}",
        service,
    ]));
    stdout(&out).trim().parse().unwrap()
}

/// The `timestamp` of a JSON log line.
pub fn at(line: &Value) -> jiff::Timestamp {
    line["timestamp"].as_str().unwrap().parse().unwrap()
}

/// Serves the current text of the returned cell as JSON to every HTTP request on a
/// loopback port, in a thread: a metric the test can change.
pub fn serve_json_cell(body: &str) -> (u16, Arc<Mutex<String>>) {
    let cell = Arc::new(Mutex::new(body.to_string()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = cell.clone();
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let body = served.lock().unwrap().clone();
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, cell)
}

/// A replicated service with 1 replica (`UpdateConfig.Monitor` 1 s) whose rule reads
/// `depth` from the JSON metric served on loopback `port` ([`serve_json_cell`]):
/// 10 per replica, at most `max` replicas.
pub fn queue_service(prefix: &str, port: u16, max: u32) -> TestService {
    let metric = format!("microscale.metric=http://127.0.0.1:{port}/#/depth");
    let max = format!("microscale.max={max}");
    TestService::create(
        &unique(prefix),
        &[
            "--replicas",
            "1",
            "--update-monitor",
            "1s",
            "--label",
            &max,
            "--label",
            &metric,
            "--label",
            "microscale.target=10",
        ],
    )
}
