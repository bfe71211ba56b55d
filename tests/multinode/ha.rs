//! HA of the `run` agent under manager loss and partition (issue 15, section 4), on
//! the five-node sandbox: three agents, one per manager (processes in the managers'
//! network namespaces, each talking to its own node's engine), manage a service
//! whose tasks run on the workers and whose rule reads a JSON metric served by this
//! process on the root namespace's bridge address.
//!
//! For each fault (kill, freeze, cut) of the lease holder's manager, once when it
//! is the Raft leader and once when it is not, the metric changes right after the
//! fault, and the test asserts:
//!
//! - 0 updates applied twice: one `scaled` line in all the agents' logs, and one
//!   change of the spec's count seen by a poller of the service;
//! - 0 lost: the count the metric asks for is reached;
//! - no flapping: the spec's count goes from the old value to the new one and
//!   nowhere else;
//! - the takeover (from the fault to the new holder's `scaled` line) within
//!   max(election, TTL + TTL/12) + one standby poll + one interval + 2 s of
//!   scheduling slack (docs/agent.md, "Takeover times"), and within 20 s with
//!   the defaults;
//! - `microscale_lease_held` of the old holder is 0 once its window has closed:
//!   while it is cut off (its agent runs, its engine cannot commit), and at the
//!   first scrape after a freeze;
//! - the old holder scales nothing during the fault, and nobody logs a fight.
//!
//! Takeover and election times are printed (`multinode-ha:` lines) for
//! docs/agent.md.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::Value;

use crate::harness::*;

/// The agents' lease TTL (the default).
const TTL: Duration = Duration::from_secs(12);

/// A JSON metric `{"depth": N}` served to every request on `ADDR:PORT`.
struct Metric {
    addr: String,
    port: u16,
    depth: Arc<Mutex<u64>>,
}

impl Metric {
    /// Serves on `addr` (the root namespace's bridge address), port chosen by the
    /// kernel.
    fn serve(addr: &str, depth: u64) -> Metric {
        let listener = std::net::TcpListener::bind((addr, 0)).expect("bind the bridge address");
        let port = listener.local_addr().unwrap().port();
        let cell = Arc::new(Mutex::new(depth));
        let served = cell.clone();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = conn.read(&mut buf);
                let body = format!("{{\"depth\": {}}}", served.lock().unwrap());
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Metric {
            addr: addr.to_string(),
            port,
            depth: cell,
        }
    }

    fn set(&self, depth: u64) {
        *self.depth.lock().unwrap() = depth;
    }
}

/// One agent process on a manager: its JSON log lines, and its health socket (a
/// file, reachable from here whatever happens to the node's network).
struct Agent {
    node: String,
    child: Child,
    log: Arc<Mutex<Vec<Value>>>,
    socket: PathBuf,
}

impl Agent {
    fn start(c: &Cluster, node: &str, args: &[String]) -> Agent {
        let socket = c.dir().join(format!("agent-{node}.sock"));
        let _ = std::fs::remove_file(&socket);
        let mut cmd = c.command(node, plugin_bin());
        cmd.args(["run", "--log-format", "json"])
            .arg("--health-socket")
            .arg(&socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn_in(node, cmd);
        let log = Arc::new(Mutex::new(vec![]));
        let sink = log.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({"message": line, "not_json": true}));
                sink.lock().unwrap().push(v);
            }
        });
        Agent {
            node: node.to_string(),
            child,
            log,
            socket,
        }
    }

    fn lines(&self) -> Vec<Value> {
        self.log.lock().unwrap().clone()
    }

    #[track_caller]
    fn wait_log(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(v) = self.lines().into_iter().find(|l| pred(l)) {
                return v;
            }
            assert!(
                start.elapsed() < timeout,
                "agent on {}: no log line for {what} within {timeout:?}; log:\n{:#?}",
                self.node,
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `microscale_lease_held` from `GET /metrics` on the health socket; `None`
    /// when there is no answer within 2 s (a frozen agent).
    fn lease_held(&self) -> Option<u64> {
        let mut s = UnixStream::connect(&self.socket).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: agent\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("microscale_lease_held "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// SIGTERM (the agent releases the lease), then waits for the exit; SIGKILL
    /// after 10 s. Returns its log.
    fn stop(mut self) -> Vec<Value> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(100));
        self.lines()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is(line: &Value, message: &str) -> bool {
    line["message"] == message
}

fn at(line: &Value) -> Timestamp {
    line["timestamp"].as_str().unwrap().parse().unwrap()
}

fn secs_between(a: Timestamp, b: Timestamp) -> f64 {
    (b.as_millisecond() - a.as_millisecond()) as f64 / 1000.0
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Kill,
    Freeze,
    Cut,
}

/// The spec's replica count as a poller saw it: (when, count), one entry per
/// change.
type Seen = Arc<Mutex<Vec<(Timestamp, u64)>>>;

/// Polls the service's spec every 300 ms through the managers in `hosts` (the
/// first that answers within 3 s), recording each change of its count, until
/// `stop`.
fn poll_replicas(config: PathBuf, hosts: Vec<String>, svc: String, stop: Arc<AtomicBool>) -> Seen {
    let seen: Seen = Arc::new(Mutex::new(vec![]));
    let sink = seen.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            for host in &hosts {
                let mut cmd = Command::new("docker");
                cmd.env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .env("HOME", &config)
                    .env("DOCKER_CONFIG", &config)
                    .env("DOCKER_HOST", host)
                    .args([
                        "service",
                        "inspect",
                        "--format",
                        "{{.Spec.Mode.Replicated.Replicas}}",
                        &svc,
                    ]);
                let Some(out) = output_within(&mut cmd, Duration::from_secs(3)) else {
                    continue;
                };
                let Ok(n) = stdout(&out).trim().parse::<u64>() else {
                    continue;
                };
                let mut s = sink.lock().unwrap();
                if s.last().is_none_or(|(_, last)| *last != n) {
                    s.push((Timestamp::now(), n));
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    seen
}

/// The test bed: the cluster, the service, its metric, the agents and the logs of
/// agents already stopped.
struct Bed<'a> {
    c: &'a Cluster,
    svc: String,
    metric: Metric,
    args: Vec<String>,
    interval: Duration,
    agents: BTreeMap<String, Agent>,
    /// Logs of the agents stopped or killed so far, with their node.
    past: Vec<(String, Vec<Value>)>,
}

impl<'a> Bed<'a> {
    /// The service (2 replicas, on the workers, 10 per replica, no scale-down
    /// window) and its metric at 20.
    fn new(c: &'a Cluster, name: &str, run_args: &[&str], interval: Duration) -> Bed<'a> {
        let addr = c.addr("n1");
        let bridge = format!("{}.254", addr.rsplit_once('.').unwrap().0);
        let metric = Metric::serve(&bridge, 20);
        let label = format!(
            "microscale.metric=http://{}:{}/#/depth",
            metric.addr, metric.port
        );
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
                "2",
                "--constraint",
                "node.role==worker",
                "--update-monitor",
                "1s",
                "--label",
                "microscale.min=1",
                "--label",
                "microscale.max=6",
                "--label",
                "microscale.target=10",
                "--label",
                "microscale.scale-down.window=0s",
                "--label",
                &label,
                &image,
                "/bin/busybox",
                "sleep",
                "100000",
            ],
        ));
        let mut args: Vec<String> = run_args.iter().map(|s| s.to_string()).collect();
        args.extend([
            "--metric-allow".to_string(),
            format!("{}:{}", metric.addr, metric.port),
            name.to_string(),
        ]);
        Bed {
            c,
            svc: name.to_string(),
            metric,
            args,
            interval,
            agents: BTreeMap::new(),
            past: vec![],
        }
    }

    /// Every log line so far, with the node of its agent.
    fn all_lines(&self) -> Vec<(String, Value)> {
        self.past
            .iter()
            .flat_map(|(n, lines)| lines.iter().map(move |l| (n.clone(), l.clone())))
            .chain(
                self.agents
                    .iter()
                    .flat_map(|(n, a)| a.lines().into_iter().map(move |l| (n.clone(), l))),
            )
            .collect()
    }

    /// Stops every agent, then starts one on `holder` (it takes the released
    /// lease at once) and one on each other manager (they stand by).
    fn agents_with_holder(&mut self, holder: &str) {
        for (node, a) in std::mem::take(&mut self.agents) {
            self.past.push((node, a.stop()));
        }
        let first = Agent::start(self.c, holder, &self.args);
        first.wait_log("taking the lease", TTL * 3, |l| {
            is(l, "lease acquired: this agent acts")
        });
        self.agents.insert(holder.to_string(), first);
        for m in self.c.managers().into_iter().filter(|m| m != holder) {
            let a = Agent::start(self.c, &m, &self.args);
            a.wait_log("standing by", Duration::from_secs(30), |l| {
                is(l, "lease held by another agent: standing by")
            });
            self.agents.insert(m, a);
        }
    }

    /// The spec's replicas, read through `node`.
    fn replicas(&self, node: &str) -> Option<u64> {
        let out = self.c.docker_within(
            node,
            &[
                "service",
                "inspect",
                "--format",
                "{{.Spec.Mode.Replicated.Replicas}}",
                &self.svc,
            ],
            Duration::from_secs(5),
        )?;
        stdout(&out).trim().parse().ok()
    }

    /// Waits until a leader answers and every manager is Leader or Reachable in
    /// its view; returns the leader.
    fn settled(&self, what: &str) -> String {
        let mut leader = None;
        self.c.wait_until(what, Duration::from_secs(150), || {
            leader = self.c.leader();
            leader.as_ref().is_some_and(|l| {
                self.c.managers().iter().all(|m| {
                    matches!(
                        self.c.manager_status_seen_by(l, m).as_str(),
                        "Leader" | "Reachable"
                    )
                })
            })
        });
        leader.unwrap()
    }

    /// One fault of the holder's manager (the Raft leader's, or another's), with
    /// the metric changed from `from` to `to` replicas' worth right after it.
    /// Returns the takeover time.
    fn fault(&mut self, fault: Fault, on_leader: bool, from: u64, to: u64) -> Duration {
        let c = self.c;
        let leader = self.settled("a settled swarm before the fault");
        let holder = if on_leader {
            leader.clone()
        } else {
            c.managers().into_iter().find(|m| *m != leader).unwrap()
        };
        self.metric.set(from * 10);
        self.agents_with_holder(&holder);
        c.wait_until(
            "the count before the fault",
            Duration::from_secs(60),
            || self.replicas(&leader) == Some(from),
        );
        let others: Vec<String> = c.managers().into_iter().filter(|m| *m != holder).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = poll_replicas(
            c.config().to_path_buf(),
            others.iter().map(|m| c.host(m)).collect(),
            self.svc.clone(),
            stop.clone(),
        );
        std::thread::sleep(Duration::from_millis(500));
        let scaled_before = self.scaled().len();

        // The fault, and the metric changes during it.
        let wall0 = Timestamp::now();
        let t0 = Instant::now();
        match fault {
            Fault::Kill => c.kill(&holder),
            Fault::Freeze => c.freeze(&holder),
            Fault::Cut => c.cut(&holder),
        }
        self.metric.set(to * 10);

        // Until a standby has scaled: the election (when the leader was hit; a
        // probe of its own, as `docker node ls` hangs until a leader answers), the
        // old holder's gauge (while cut off), the takeover.
        let elected: Arc<Mutex<Option<Duration>>> =
            Arc::new(Mutex::new((!on_leader).then_some(Duration::ZERO)));
        let mut gauge_zero: Option<Duration> = None;
        let mut took: Option<Value> = None;
        std::thread::scope(|scope| {
            let probe = elected.clone();
            let old = holder.clone();
            scope.spawn(move || {
                while probe.lock().unwrap().is_none() && t0.elapsed() < Duration::from_secs(120) {
                    if c.leader().is_some_and(|l| l != old) {
                        *probe.lock().unwrap() = Some(t0.elapsed());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            while took.is_none() || elected.lock().unwrap().is_none() {
                assert!(
                    t0.elapsed() < Duration::from_secs(120),
                    "{fault:?} of {holder}: no takeover within 120 s; election {:?}; logs:\n{:#?}",
                    elected.lock().unwrap(),
                    self.all_lines()
                );
                if fault == Fault::Cut
                    && gauge_zero.is_none()
                    && self.agents[&holder].lease_held() == Some(0)
                {
                    gauge_zero = Some(t0.elapsed());
                }
                took = others.iter().find_map(|m| {
                    self.agents[m]
                        .lines()
                        .into_iter()
                        .find(|l| is(l, "scaled") && l["to"] == to && at(l) > wall0)
                });
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let took = took.unwrap();
        let takeover = Duration::from_secs_f64(secs_between(wall0, at(&took)).max(0.0));
        let election = elected.lock().unwrap().unwrap();
        let new_holder = others
            .iter()
            .find(|m| self.agents[*m].lines().contains(&took))
            .unwrap()
            .clone();
        let acquired = self.agents[&new_holder]
            .lines()
            .into_iter()
            .find(|l| is(l, "lease acquired: this agent acts") && at(l) > wall0)
            .map(|l| secs_between(wall0, at(&l)));
        eprintln!(
            "multinode-ha: {fault:?} of {holder} ({}), interval {:?}, TTL {TTL:?}: election {:.1} s, {new_holder} acquired the lease after {:.1} s and scaled {from} -> {to} after {:.1} s",
            if on_leader {
                "the Raft leader"
            } else {
                "not the leader"
            },
            self.interval,
            election.as_secs_f64(),
            acquired.unwrap_or(f64::NAN),
            takeover.as_secs_f64()
        );
        // Takeover <= max(election + a read hung on the old leader (2 s), TTL +
        // TTL/12) + one poll + one pass (interval), plus 2 s of slack for a loaded
        // two-core machine (docs/agent.md, takeover times).
        let poll = self.interval.min(TTL / 6);
        let bound = (election + Duration::from_secs(2)).max(TTL + TTL / 12)
            + poll
            + self.interval
            + Duration::from_secs(2);
        if takeover > bound {
            self.timeline(wall0);
        }
        assert!(
            takeover <= bound,
            "{fault:?} of {holder}: takeover {takeover:?} > {bound:?} (election {election:?})"
        );

        // The old holder: its gauge, and what it did.
        match fault {
            Fault::Cut => {
                // Its window ends at most TTL - TTL/5 after the cut (its last
                // renewal was sent before it).
                let limit = TTL - TTL / 5 + Duration::from_millis(700);
                let zero = gauge_zero.unwrap_or_else(|| {
                    assert_eq!(self.agents[&holder].lease_held(), Some(0));
                    t0.elapsed()
                });
                eprintln!(
                    "multinode-ha: cut holder {holder}: microscale_lease_held 0 after {:.1} s",
                    zero.as_secs_f64()
                );
                assert!(
                    zero <= limit,
                    "cut holder {holder}: lease_held still 1 {zero:?} after the cut"
                );
            }
            Fault::Freeze => {
                c.thaw(&holder);
                // The first scrape after the thaw: its window closed long ago.
                let mut held = None;
                c.wait_until(
                    "the thawed agent to answer",
                    Duration::from_secs(10),
                    || {
                        held = self.agents[&holder].lease_held();
                        held.is_some()
                    },
                );
                assert_eq!(held, Some(0), "thawed holder {holder} says it holds");
            }
            Fault::Kill => {}
        }
        if let Some(a) = self.agents.get(&holder) {
            let acted: Vec<Value> = a
                .lines()
                .into_iter()
                .filter(|l| is(l, "scaled") && at(l) > wall0)
                .collect();
            assert!(
                acted.is_empty(),
                "the old holder {holder} scaled: {acted:#?}"
            );
        }

        // Restore, and let the swarm settle (a healed manager may depose the
        // leader: no pre-vote in Swarm's Raft).
        let t1 = Instant::now();
        match fault {
            Fault::Kill => {
                if let Some(a) = self.agents.remove(&holder) {
                    let lines = a.lines();
                    drop(a);
                    self.past.push((holder.clone(), lines));
                }
                c.restart(&holder);
            }
            Fault::Freeze => {}
            Fault::Cut => c.heal(&holder),
        }
        self.settled("a settled swarm after the fault");
        eprintln!(
            "multinode-ha: {fault:?} of {holder}: swarm settled {:.1} s after the restore",
            t1.elapsed().as_secs_f64()
        );
        // A thawed or healed old holder acts (if it wrongly would) at its first
        // pass, at once: give it a few seconds to show.
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(400));

        // 0 lost, 0 applied twice, no flapping.
        assert_eq!(self.replicas(&new_holder), Some(to), "0 lost");
        let scaled = self.scaled();
        let during: Vec<&(String, Value)> = scaled[scaled_before..].iter().collect();
        assert_eq!(
            during.len(),
            1,
            "{fault:?} of {holder}: exactly one update applied: {during:#?}"
        );
        let counts: Vec<u64> = seen.lock().unwrap().iter().map(|(_, n)| *n).collect();
        assert_eq!(
            counts,
            [from, to],
            "{fault:?} of {holder}: the spec's count went {from} -> {to} once, nowhere else"
        );
        takeover
    }

    /// Prints what the agents logged since `since` (to tell where time went).
    fn timeline(&self, since: Timestamp) {
        let mut lines: Vec<(String, Value)> = self
            .all_lines()
            .into_iter()
            .filter(|(_, l)| l["timestamp"].is_string() && at(l) >= since)
            .collect();
        lines.sort_by_key(|(_, l)| at(l));
        for (node, l) in lines {
            eprintln!(
                "multinode-ha: +{:.1}s {node} {} {}",
                secs_between(since, at(&l)),
                l["message"].as_str().unwrap_or_default(),
                l.get("error")
                    .or(l.get("reasons"))
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            );
        }
    }

    /// Every `scaled` line so far, oldest first, with its node.
    fn scaled(&self) -> Vec<(String, Value)> {
        let mut v: Vec<(String, Value)> = self
            .all_lines()
            .into_iter()
            .filter(|(_, l)| is(l, "scaled"))
            .collect();
        v.sort_by_key(|(_, l)| at(l));
        v
    }

    /// No agent logged a fight, nor an update failure.
    fn assert_quiet(&self) {
        let bad: Vec<(String, Value)> = self
            .all_lines()
            .into_iter()
            .filter(|(_, l)| {
                let m = l["message"].as_str().unwrap_or_default();
                m.starts_with("fight") || m == "update failed"
            })
            .collect();
        assert!(bad.is_empty(), "fights or failed updates: {bad:#?}");
    }
}

impl Drop for Bed<'_> {
    fn drop(&mut self) {
        // A frozen agent cannot die: thaw every node before the agents are killed.
        for n in self.c.managers() {
            let _ = Command::new(sandbox_script())
                .args(["thaw", &n, "--dir"])
                .arg(self.c.dir())
                .stdin(Stdio::null())
                .output();
        }
    }
}

/// The holder on the Raft leader, `--interval 1s`: kill, freeze, cut.
#[test]
fn ha_when_the_holder_is_the_raft_leader() {
    let c = Cluster::up(5, 3);
    let interval = Duration::from_secs(1);
    let mut bed = Bed::new(&c, "ha-leader", &["--interval", "1s"], interval);
    bed.fault(Fault::Kill, true, 2, 3);
    bed.fault(Fault::Freeze, true, 3, 2);
    bed.fault(Fault::Cut, true, 2, 3);
    bed.assert_quiet();
}

/// The holder on another manager, with the defaults (`--interval 15s`, TTL 12 s):
/// kill, freeze, cut; every takeover within 20 s.
#[test]
fn ha_when_the_holder_is_not_the_leader_with_the_defaults() {
    let c = Cluster::up(5, 3);
    let interval = Duration::from_secs(15);
    let mut bed = Bed::new(&c, "ha-follower", &[], interval);
    for (fault, from, to) in [
        (Fault::Kill, 2, 3),
        (Fault::Freeze, 3, 2),
        (Fault::Cut, 2, 3),
    ] {
        let took = bed.fault(fault, false, from, to);
        assert!(
            took <= Duration::from_secs(20),
            "{fault:?}: takeover {took:?} with the defaults"
        );
    }
    bed.assert_quiet();
}
