//! The multi-node test harness: a private swarm of several test hosts per test,
//! started by `scripts/sandbox up --nodes N --managers M` and torn down when the
//! [`Cluster`] is dropped, also when the test panics.
//!
//! Each node (`n1`..`nN`, managers first) is a network namespace with its own
//! address in 198.18.S.0/24 and its own dockerd, reached from here at
//! `unix://DIR/nK/docker.sock` (see `scripts/sandbox --help`). The fault methods
//! ([`Cluster::kill`], [`Cluster::freeze`], [`Cluster::cut`], ...) run the script's
//! fault verbs on one node.
//!
//! One cluster at a time in this process (a process-wide lock): five dockerds
//! already load a two-core machine. A cluster that cannot start fails the test;
//! these tests never skip (they need root, as `scripts/test` in CI has).
//!
//! Some functions are only used by the tests of other modules (down nodes, HA,
//! engine stats), hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long one docker CLI or plugin call may take before [`Cluster::docker`] and
/// [`Cluster::plugin`] give up on it (a frozen node never answers).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The plugin binary built by cargo for this test run.
pub fn plugin_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_docker-microscale"))
}

/// `scripts/sandbox` of this checkout.
pub fn sandbox_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/sandbox")
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

/// Runs `cmd` (stdin closed, stdout and stderr captured) and waits at most
/// `timeout`: `None` when it did not exit by then (it is then killed).
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Option<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    status.map(|status| Output {
        status,
        stdout,
        stderr,
    })
}

/// `GET path` over HTTP/1.0 to `host:port` (a node's address, from the root
/// network namespace), at most 5 s to connect and 5 s per read: `(status, body)`,
/// or `None` when it cannot connect or the answer is no HTTP.
pub fn http_get(host: &str, port: u16, path: &str) -> Option<(u16, String)> {
    let addr: std::net::SocketAddr = format!("{host}:{port}").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The one-cluster-at-a-time lock of this process.
fn cluster_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A test that panicked while holding it has torn its cluster down (Drop).
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Holds the one-cluster-at-a-time lock of this process without a [`Cluster`]: for
/// tests that run `scripts/sandbox up` themselves (and must tear down what it made).
pub fn exclusive_cluster() -> MutexGuard<'static, ()> {
    cluster_lock()
}

/// What the fault verbs last did to a node, so that [`Cluster::leader`] does not
/// wait on engines that cannot answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Killed,
    Frozen,
    Cut,
}

/// A private swarm of `nodes` test hosts, `n1`..`nN`, of which `n1`..`nM` are
/// managers. Torn down (`scripts/sandbox down`) when dropped.
pub struct Cluster {
    dir: PathBuf,
    nodes: Vec<String>,
    managers: Vec<String>,
    env: BTreeMap<String, String>,
    config: PathBuf,
    faults: Mutex<BTreeMap<String, BTreeSet<Fault>>>,
    up_time: Duration,
    // Last: released after Drop::drop has torn the cluster down.
    _lock: MutexGuard<'static, ()>,
}

impl Cluster {
    /// Starts a swarm of `nodes` nodes (2 to 9), the first `managers` of them
    /// managers (1 to `nodes`), with `scripts/sandbox up --nodes N --managers M
    /// --dir /tmp/msn.XXXXXX`: every node Ready and every manager reachable in n1's
    /// node list, the test image (`MICROSCALE_TEST_IMAGE`, `FROM scratch` + static
    /// busybox) in every node's image store. Waits for any other cluster of this
    /// process to be dropped first. Prints how long the start took (seconds).
    ///
    /// Panics, with the script's messages, when the cluster cannot start, or
    /// when not run as root.
    #[track_caller]
    pub fn up(nodes: usize, managers: usize) -> Cluster {
        let lock = cluster_lock();
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert!(
            euid == 0,
            "the multinode tests need root: each node is a network namespace with its own dockerd \
             (scripts/sandbox up --nodes). Run them as root, e.g. `sudo scripts/test --test multinode`."
        );
        let dir = tempfile::Builder::new()
            .prefix("msn.")
            .tempdir_in("/tmp")
            .expect("mktemp /tmp/msn.XXXXXX")
            .keep();
        // Clusters whose test process was killed before its teardown (reap looks
        // at DIR/owner, which MICROSCALE_SANDBOX_OWNER below makes).
        let _ = Command::new(sandbox_script())
            .arg("reap")
            .stdin(Stdio::null())
            .output();
        let start = Instant::now();
        let out = Command::new(sandbox_script())
            .env("MICROSCALE_SANDBOX_OWNER", std::process::id().to_string())
            .args(["up", "--nodes", &nodes.to_string()])
            .args(["--managers", &managers.to_string()])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/sandbox");
        let up_time = start.elapsed();
        if !out.status.success() {
            let down = sandbox_down(&dir);
            panic!(
                "the multi-node sandbox did not start (scripts/sandbox up --nodes {nodes} --managers \
                 {managers} --dir {}, {:?}):\n{}\n(teardown: {down})",
                dir.display(),
                out.status,
                stderr(&out)
            );
        }
        eprintln!(
            "multinode: {nodes} nodes ({managers} managers) up in {:.1} s ({})",
            up_time.as_secs_f64(),
            dir.display()
        );
        // The harness's variables (`scripts/sandbox env --test`); DIR/env holds only
        // what a user's shell needs.
        let env = read_env(&dir.join("test-env"));
        let list = |k: &str| -> Vec<String> {
            env.get(k)
                .unwrap_or_else(|| panic!("{k} missing from {}/test-env", dir.display()))
                .split_whitespace()
                .map(String::from)
                .collect()
        };
        let (node_list, manager_list) = (list("MICROSCALE_NODES"), list("MICROSCALE_MANAGERS"));
        let config = dir.join("cfg");
        let plugins = config.join("cli-plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::copy(plugin_bin(), plugins.join("docker-microscale")).unwrap();
        let c = Cluster {
            dir,
            nodes: node_list,
            managers: manager_list,
            env,
            config,
            faults: Mutex::new(BTreeMap::new()),
            up_time,
            _lock: lock,
        };
        assert_eq!(c.nodes.len(), nodes, "MICROSCALE_NODES");
        assert_eq!(c.managers.len(), managers, "MICROSCALE_MANAGERS");
        c
    }

    /// The sandbox directory (`MICROSCALE_SANDBOX_DIR`): `DIR/nK` holds node nK's
    /// data, logs (`dockerd.log`) and socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long `scripts/sandbox up` took.
    pub fn up_time(&self) -> Duration {
        self.up_time
    }

    /// Every node, `["n1", "n2", ...]`.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes.clone()
    }

    /// The manager nodes, `["n1", ...]` (the first M nodes).
    pub fn managers(&self) -> Vec<String> {
        self.managers.clone()
    }

    /// The worker nodes (the nodes after the managers).
    pub fn workers(&self) -> Vec<String> {
        self.nodes[self.managers.len()..].to_vec()
    }

    /// The test image present on every node (`microscale-test/busybox:1`): no
    /// default command; give one, e.g. `/bin/busybox sleep 100000`.
    pub fn image(&self) -> String {
        self.env_of("MICROSCALE_TEST_IMAGE")
    }

    /// The private docker config directory (`DOCKER_CONFIG`) with the plugin
    /// installed under `cli-plugins/`.
    pub fn config(&self) -> &Path {
        &self.config
    }

    #[track_caller]
    fn env_of(&self, key: &str) -> String {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from {}/test-env", self.dir.display()))
            .clone()
    }

    #[track_caller]
    fn check_node(&self, node: &str) {
        assert!(
            self.nodes.iter().any(|n| n == node),
            "unknown node {node:?}: this cluster has {:?}",
            self.nodes
        );
    }

    /// Node `node`'s engine address, `unix://DIR/nK/docker.sock`
    /// (`MICROSCALE_NODE_<node>_HOST`).
    #[track_caller]
    pub fn host(&self, node: &str) -> String {
        self.check_node(node);
        self.env_of(&format!("MICROSCALE_NODE_{node}_HOST"))
    }

    /// Node `node`'s address, `198.18.S.K` (`MICROSCALE_NODE_<node>_ADDR`): its
    /// swarm advertise address, reachable from the root network namespace and the
    /// other nodes (not while [`Cluster::cut`]).
    #[track_caller]
    pub fn addr(&self, node: &str) -> String {
        self.check_node(node);
        self.env_of(&format!("MICROSCALE_NODE_{node}_ADDR"))
    }

    /// Node `node`'s network namespace, `/run/netns/NAME`
    /// (`MICROSCALE_NODE_<node>_NETNS`).
    #[track_caller]
    pub fn netns(&self, node: &str) -> PathBuf {
        self.check_node(node);
        PathBuf::from(self.env_of(&format!("MICROSCALE_NODE_{node}_NETNS")))
    }

    /// The swarm node's host name of `node` (`sandbox-nK`), as `docker node ls`
    /// shows it; `docker node inspect` and `--constraint node.hostname==` take it.
    pub fn hostname(node: &str) -> String {
        format!("sandbox-{node}")
    }

    /// A command for `program` with the environment cleared to PATH, HOME and a
    /// private DOCKER_CONFIG, and DOCKER_HOST set to `node`'s engine.
    #[track_caller]
    pub fn command(&self, node: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.config)
            .env("DOCKER_CONFIG", &self.config)
            .env("DOCKER_HOST", self.host(node));
        c
    }

    /// `docker ARGS` against `node`'s engine; panics if it does not exit within
    /// [`CALL_TIMEOUT`] (60 s). Does not check the exit code: wrap it in [`ok`].
    #[track_caller]
    pub fn docker(&self, node: &str, args: &[&str]) -> Output {
        self.docker_within(node, args, CALL_TIMEOUT)
            .unwrap_or_else(|| {
                panic!("docker {args:?} on {node}: no answer within {CALL_TIMEOUT:?}")
            })
    }

    /// `docker ARGS` against `node`'s engine, `None` if it did not exit within
    /// `timeout` (a frozen engine never answers; a manager cut off from the others
    /// hangs on swarm reads).
    #[track_caller]
    pub fn docker_within(&self, node: &str, args: &[&str], timeout: Duration) -> Option<Output> {
        output_within(self.command(node, "docker").args(args), timeout)
    }

    /// The plugin (`env!("CARGO_BIN_EXE_docker-microscale")`) run directly with
    /// DOCKER_HOST set to `node`'s engine; panics if it does not exit within
    /// [`CALL_TIMEOUT`].
    #[track_caller]
    pub fn plugin(&self, node: &str, args: &[&str]) -> Output {
        output_within(self.command(node, plugin_bin()).args(args), CALL_TIMEOUT).unwrap_or_else(
            || panic!("docker-microscale {args:?} on {node}: no answer within {CALL_TIMEOUT:?}"),
        )
    }

    /// Spawns `cmd` in `node`'s network namespace (its own address, its view of
    /// the other nodes; `cut` cuts it off with the node), everything else about it
    /// unchanged (mount namespace, environment: add `DOCKER_HOST` with
    /// [`Cluster::host`] for the node's engine). For agents "running on" a node:
    /// [`Cluster::kill`] kills it with the node, [`Cluster::freeze`] stops it.
    #[track_caller]
    pub fn spawn_in(&self, node: &str, mut cmd: Command) -> Child {
        let ns = std::fs::File::open(self.netns(node))
            .unwrap_or_else(|e| panic!("open {}: {e}", self.netns(node).display()));
        use std::os::fd::AsRawFd;
        let fd = ns.as_raw_fd();
        // SAFETY: between fork and exec only setns(2), an async-signal-safe system
        // call, runs; `ns` stays open until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?} on {node}: {e}", cmd.get_program()));
        drop(ns);
        child
    }

    /// Runs `scripts/sandbox VERB NODE --dir DIR`; panics with its messages if it
    /// fails.
    #[track_caller]
    fn verb(&self, verb: &str, node: &str) {
        self.check_node(node);
        let out = Command::new(sandbox_script())
            .args([verb, node, "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/sandbox");
        assert!(
            out.status.success(),
            "scripts/sandbox {verb} {node} failed ({:?}):\n{}",
            out.status,
            stderr(&out)
        );
    }

    fn mark(&self, node: &str, add: Option<Fault>, remove: &[Fault]) {
        let mut faults = self.faults.lock().unwrap();
        let set = faults.entry(node.to_string()).or_default();
        for f in remove {
            set.remove(f);
        }
        if let Some(f) = add {
            set.insert(f);
        }
    }

    fn has_fault(&self, node: &str, f: Fault) -> bool {
        self.faults
            .lock()
            .unwrap()
            .get(node)
            .is_some_and(|s| s.contains(&f))
    }

    /// The host dies: SIGKILL to every process of `node` (dockerd, its containerd,
    /// shims, containers, and processes started with [`Cluster::spawn_in`]). Its
    /// data stays: [`Cluster::restart`] brings it back. Idempotent.
    #[track_caller]
    pub fn kill(&self, node: &str) {
        self.verb("kill", node);
        self.mark(node, Some(Fault::Killed), &[Fault::Frozen]);
    }

    /// Starts `node`'s dockerd again on the same data (after [`Cluster::kill`];
    /// a running engine is stopped with SIGTERM first, a frozen one thawed) and
    /// waits until it answers on its socket (not until it is back in the swarm:
    /// wait for that with [`Cluster::node_state_seen_by`]).
    #[track_caller]
    pub fn restart(&self, node: &str) {
        self.verb("restart", node);
        self.mark(node, None, &[Fault::Killed, Fault::Frozen]);
    }

    /// Stops every process of `node` (cgroup freezer): its engine accepts no
    /// request on its socket nor on the network, its tasks stop. Idempotent.
    #[track_caller]
    pub fn freeze(&self, node: &str) {
        self.verb("freeze", node);
        self.mark(node, Some(Fault::Frozen), &[]);
    }

    /// Lets every process of `node` run again. Idempotent.
    #[track_caller]
    pub fn thaw(&self, node: &str) {
        self.verb("thaw", node);
        self.mark(node, None, &[Fault::Frozen]);
    }

    /// A network partition: `node`'s address stops reaching and being reached by
    /// every other node (and the root namespace); its unix socket still answers.
    /// Idempotent.
    #[track_caller]
    pub fn cut(&self, node: &str) {
        self.verb("cut", node);
        self.mark(node, Some(Fault::Cut), &[]);
    }

    /// Ends [`Cluster::cut`]. Swarm's Raft has no pre-vote: a healed manager may
    /// depose the healthy leader, and the swarm can have no leader for tens of
    /// seconds (34 s was seen): tests must allow for that. Idempotent.
    #[track_caller]
    pub fn heal(&self, node: &str) {
        self.verb("heal", node);
        self.mark(node, None, &[Fault::Cut]);
    }

    /// Whether `node`'s engine answers `GET /_ping` on its socket within
    /// `timeout`.
    #[track_caller]
    pub fn answers(&self, node: &str, timeout: Duration) -> bool {
        let host = self.host(node);
        let path = host.strip_prefix("unix://").unwrap().to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        // In a thread: connect(2) on a frozen engine's socket can block too once
        // its backlog is full.
        std::thread::spawn(move || {
            let ping = || -> std::io::Result<bool> {
                let mut s = std::os::unix::net::UnixStream::connect(&path)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
                let mut text = String::new();
                s.read_to_string(&mut text)?;
                Ok(text.starts_with("HTTP/1.") && text.contains(" 200 ") && text.ends_with("OK"))
            };
            let _ = tx.send(ping().unwrap_or(false));
        });
        rx.recv_timeout(timeout).unwrap_or(false)
    }

    /// Which node is the Raft leader, from `docker node ls` on the first manager
    /// that answers within 5 s, asked in order. Managers this cluster killed,
    /// froze or cut are not asked (a cut manager only knows its own stale view:
    /// a cut leader goes on calling itself leader for several seconds). `None`
    /// when no manager asked knows a leader ("the swarm does not have a leader",
    /// during an election).
    pub fn leader(&self) -> Option<String> {
        for m in &self.managers {
            if [Fault::Killed, Fault::Frozen, Fault::Cut]
                .iter()
                .any(|f| self.has_fault(m, *f))
            {
                continue;
            }
            match self.leader_seen_by(m) {
                Err(()) => continue,
                Ok(l) => return l,
            }
        }
        None
    }

    /// The leader in `docker node ls` on manager `from` (whatever `from`
    /// believes, even cut off): `Ok(Some(node))`, `Ok(None)` when its list shows
    /// no leader, `Err(())` when it does not answer within 5 s or fails (no
    /// leader, not a manager).
    pub fn leader_seen_by(&self, from: &str) -> Result<Option<String>, ()> {
        let args = ["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"];
        let out = self
            .docker_within(from, &args, Duration::from_secs(5))
            .ok_or(())?;
        if !out.status.success() {
            return Err(());
        }
        Ok(stdout(&out)
            .lines()
            .find_map(|l| l.strip_suffix(" Leader"))
            .and_then(|h| h.strip_prefix("sandbox-"))
            .map(String::from))
    }

    /// Whether the managers agree: every manager names the same leader, and that
    /// leader sees every manager `Reachable` (itself `Leader`). What a healed
    /// partition or a restarted manager must come back to.
    pub fn managers_settled(&self) -> bool {
        let mut leader = None;
        for m in &self.managers {
            match self.leader_seen_by(m) {
                Ok(Some(l)) if leader.as_ref().is_none_or(|x| *x == l) => leader = Some(l),
                _ => return false,
            }
        }
        let Some(l) = leader else { return false };
        self.managers.iter().all(|m| {
            matches!(
                self.manager_status_seen_by(&l, m).as_str(),
                "Leader" | "Reachable"
            )
        })
    }

    /// Node `node`'s state in the node list of manager `from`:
    /// `docker node inspect sandbox-nK --format {{.Status.State}}` on `from`
    /// (`ready`, `down`, `unknown`, `disconnected`), or `error: ...` when `from`
    /// cannot say within 10 s (no leader, not a manager).
    #[track_caller]
    pub fn node_state_seen_by(&self, from: &str, node: &str) -> String {
        let host = Self::hostname(node);
        let args = ["node", "inspect", &host, "--format", "{{.Status.State}}"];
        match self.docker_within(from, &args, Duration::from_secs(10)) {
            None => "error: no answer within 10 s".to_string(),
            Some(o) if o.status.success() => stdout(&o).trim().to_string(),
            Some(o) => format!("error: {}", stderr(&o).trim()),
        }
    }

    /// Node `node`'s manager status in the node list of `from`: `Leader`,
    /// `Reachable`, `Unreachable`, empty for a worker, or `error: ...`.
    #[track_caller]
    pub fn manager_status_seen_by(&self, from: &str, node: &str) -> String {
        let host = Self::hostname(node);
        let args = [
            "node",
            "inspect",
            &host,
            "--format",
            "{{if .ManagerStatus}}{{.ManagerStatus.Reachability}}{{if .ManagerStatus.Leader}} leader{{end}}{{end}}",
        ];
        match self.docker_within(from, &args, Duration::from_secs(10)) {
            None => "error: no answer within 10 s".to_string(),
            Some(o) if o.status.success() => {
                let s = stdout(&o).trim().to_string();
                match s.as_str() {
                    "reachable leader" => "Leader".into(),
                    "reachable" => "Reachable".into(),
                    "unreachable" => "Unreachable".into(),
                    other => other.to_string(),
                }
            }
            Some(o) => format!("error: {}", stderr(&o).trim()),
        }
    }

    /// Polls `check` every 200 ms until it returns true, and returns how long that
    /// took; panics naming `what` when `timeout` passes first.
    #[track_caller]
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if check() {
                return start.elapsed();
            }
            if start.elapsed() >= timeout {
                panic!("timed out after {timeout:?} waiting for: {what}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The pid of `node`'s dockerd (from its pid file), if it runs (a zombie
    /// does not count).
    pub fn engine_pid(&self, node: &str) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.dir.join(node).join("dockerd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let state = stat.rsplit_once(") ")?.1.chars().next()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let sock = self.dir.join(node).join("docker.sock");
        let ours = String::from_utf8_lossy(&cmdline).contains(&*sock.to_string_lossy());
        (state != 'Z' && ours).then_some(pid)
    }

    /// `/var/run/docker.sock` as `node`'s dockerd and its containers see it (in the
    /// node's own mount namespace), as (device, inode): a container that
    /// bind-mounts `/var/run/docker.sock` sees this very file.
    pub fn node_socket_id(&self, node: &str) -> Option<(u64, u64)> {
        let pid = self.engine_pid(node)?;
        // /var/run is a symlink to the absolute /run, which /proc/PID/root would
        // resolve in our namespace: go to /run directly.
        let m = std::fs::metadata(format!("/proc/{pid}/root/run/docker.sock")).ok()?;
        Some((m.dev(), m.ino()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the nodes looked like when the test failed.
            if let Ok(o) = Command::new(sandbox_script())
                .args(["status", "--dir"])
                .arg(&self.dir)
                .stdin(Stdio::null())
                .output()
            {
                eprintln!("multinode: cluster at failure:\n{}", stdout(&o));
            }
        }
        let down = sandbox_down(&self.dir);
        if down != "ok" {
            eprintln!("multinode: warning: {down}");
        }
    }
}

/// `scripts/sandbox down --dir DIR`: "ok" or what went wrong.
fn sandbox_down(dir: &Path) -> String {
    match Command::new(sandbox_script())
        .args(["down", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => "ok".into(),
        Ok(o) => format!(
            "scripts/sandbox down --dir {} failed: {}",
            dir.display(),
            stderr(&o)
        ),
        Err(e) => format!("cannot run scripts/sandbox: {e}"),
    }
}

/// The `export KEY=VALUE` lines of `DIR/test-env` (values possibly in double quotes).
fn read_env(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}
