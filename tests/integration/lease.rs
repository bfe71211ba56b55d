//! The agent's leader lease on the private swarm, through the hidden `__lease`
//! command (one JSON line per change): two agents never hold at once, a SIGKILLed
//! holder is replaced after about one TTL and not before its window ended, a clean
//! release hands over at once, a silent holder is waited out for its own (longer)
//! TTL, and worker nodes and foreign configs are refused with a clear error.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::Value;

use crate::harness::*;

/// `GET path` on the manager's Engine API: the status code and the JSON body.
fn engine_get(path: &str) -> (u16, Value) {
    let host = manager_host();
    let socket = host.strip_prefix("unix://").expect("a unix:// test engine");
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, value)
}

/// The lease config's labels, as the engine has them.
pub(crate) fn lease_labels(name: &str) -> Value {
    let (status, config) = engine_get(&format!("/configs/{name}"));
    assert_eq!(status, 200, "{config}");
    config["Spec"]["Labels"].clone()
}

/// A swarm config removed when dropped.
struct Config(String);

impl Drop for Config {
    fn drop(&mut self) {
        let _ = docker(&["config", "rm", &self.0]);
    }
}

/// `docker config create NAME FILE` with `labels` (KEY=VALUE).
fn create_config(name: &str, labels: &[&str]) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data");
    std::fs::write(&file, "not a lease\n").unwrap();
    let mut args = vec!["config", "create"];
    for l in labels {
        args.extend(["--label", l]);
    }
    let path = file.to_string_lossy().into_owned();
    args.extend([name, path.as_str()]);
    ok(docker(&args));
    Config(name.to_string())
}

/// One JSON line of `__lease`.
#[derive(Debug, Clone)]
struct Line {
    time: Timestamp,
    event: String,
    held: bool,
    leader: String,
    valid_until: Option<Timestamp>,
}

impl Line {
    fn parse(v: &Value) -> Line {
        let ts = |k: &str| v[k].as_str().map(|s| s.parse::<Timestamp>().unwrap());
        Line {
            time: ts("Time").unwrap_or_else(|| panic!("no Time in {v}")),
            event: v["Event"].as_str().unwrap().to_string(),
            held: v["Held"].as_bool().unwrap(),
            leader: v["Leader"].as_str().unwrap().to_string(),
            valid_until: ts("ValidUntil"),
        }
    }
}

/// A running `docker-microscale __lease` against the manager; SIGKILLed if still
/// running when dropped.
struct Agent {
    holder: String,
    child: Child,
    lines: Arc<Mutex<Vec<Line>>>,
    stderr: Arc<Mutex<String>>,
}

impl Agent {
    fn start(name: &str, ttl: &str, holder: &str, extra: &[&str]) -> Agent {
        Agent::start_on(&manager_host(), name, ttl, holder, extra)
    }

    /// Like [`Agent::start`], with the engine at `host`.
    fn start_on(host: &str, name: &str, ttl: &str, holder: &str, extra: &[&str]) -> Agent {
        let mut child = clean(plugin_bin(), plugin_config())
            .env("DOCKER_HOST", host)
            .args(["__lease", "--name", name, "--ttl", ttl, "--holder", holder])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start docker-microscale __lease");
        let lines = Arc::new(Mutex::new(vec![]));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value =
                    serde_json::from_str(&l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}"));
                sink.lock().unwrap().push(Line::parse(&v));
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            sink.lock().unwrap().push_str(&s);
        });
        Agent {
            holder: holder.to_string(),
            child,
            lines,
            stderr,
        }
    }

    fn lines(&self) -> Vec<Line> {
        self.lines.lock().unwrap().clone()
    }

    fn events(&self, event: &str) -> Vec<Line> {
        self.lines()
            .into_iter()
            .filter(|l| l.event == event)
            .collect()
    }

    /// The first `event` line, waiting up to `timeout` for it.
    #[track_caller]
    fn wait_for(&self, event: &str, timeout: Duration) -> Line {
        let start = Instant::now();
        loop {
            if let Some(l) = self.events(event).into_iter().next() {
                return l;
            }
            assert!(
                start.elapsed() < timeout,
                "{}: no {event:?} line within {timeout:?}; lines: {:#?}\nstderr: {}",
                self.holder,
                self.lines(),
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill {sig}");
    }

    /// Waits up to `timeout` for the process to exit, then lets the readers finish.
    #[track_caller]
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "{} did not exit within {timeout:?}",
                self.holder
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The intervals in which this agent held the lease, from its lines: from an
    /// `acquired` line to the end of its window (a `lost` or `released` line, but
    /// never later than the `ValidUntil` of the line before it). An interval still
    /// open ends at the last `ValidUntil` (a killed holder's window) or, with
    /// `running`, never.
    fn held_intervals(&self, running: bool) -> Vec<(Timestamp, Timestamp)> {
        let mut out = vec![];
        let mut open: Option<Timestamp> = None;
        let mut last_valid: Option<Timestamp> = None;
        for l in self.lines() {
            match (l.held, open) {
                (true, None) => {
                    assert_eq!(l.event, "acquired", "{l:?}");
                    open = Some(l.time);
                }
                (false, Some(start)) => {
                    let end = last_valid.map_or(l.time, |v| v.min(l.time));
                    out.push((start, end));
                    open = None;
                }
                _ => {}
            }
            if l.held {
                last_valid = l.valid_until;
                assert!(last_valid.is_some(), "{l:?}");
            }
        }
        if let Some(start) = open {
            let end = if running {
                Timestamp::MAX
            } else {
                last_valid.unwrap()
            };
            out.push((start, end));
        }
        out
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails if two agents' held intervals overlap.
#[track_caller]
fn assert_no_overlap(agents: &[(&Agent, bool)]) {
    let all: Vec<(&str, (Timestamp, Timestamp))> = agents
        .iter()
        .flat_map(|(a, running)| {
            a.held_intervals(*running)
                .into_iter()
                .map(move |i| (a.holder.as_str(), i))
        })
        .collect();
    for (i, (ha, a)) in all.iter().enumerate() {
        for (hb, b) in &all[i + 1..] {
            if ha != hb {
                assert!(
                    a.1 <= b.0 || b.1 <= a.0,
                    "{ha} held {a:?} while {hb} held {b:?}"
                );
            }
        }
    }
}

fn secs(a: Timestamp, b: Timestamp) -> f64 {
    (b - a).total(jiff::Unit::Millisecond).unwrap() / 1000.0
}

#[test]
fn lease_one_holder_at_a_time_then_takeover_after_sigkill() {
    let name = unique("lease");
    let _cleanup = Config(name.clone());
    // Both start at once: both find no lease and create it; one gets the name
    // conflict and reads the other's.
    let a = Agent::start(&name, "2s", "agent-a", &[]);
    let b = Agent::start(&name, "2s", "agent-b", &[]);
    wait_until(
        "one of them to acquire the lease",
        Duration::from_secs(10),
        || !a.events("acquired").is_empty() || !b.events("acquired").is_empty(),
    );
    // Three TTLs of both running.
    std::thread::sleep(Duration::from_secs(6));
    let holders: Vec<&Agent> = [&a, &b]
        .into_iter()
        .filter(|x| !x.events("acquired").is_empty())
        .collect();
    assert_eq!(holders.len(), 1, "a: {:#?}\nb: {:#?}", a.lines(), b.lines());
    let holder = holders[0];
    let (mut holder, mut standby) = if std::ptr::eq(holder, &a) {
        (a, b)
    } else {
        (b, a)
    };
    // The standby saw who holds it, and never held.
    let seen = standby.wait_for("leader", Duration::from_secs(1));
    assert_eq!(seen.leader, holder.holder);
    assert!(standby.lines().iter().all(|l| !l.held));
    // The holder renews every TTL/3, each renewal a new version in the swarm.
    let renewals = holder.events("renewed").len();
    assert!(
        renewals >= 5,
        "{renewals} renewals in 6s: {:#?}",
        holder.lines()
    );
    let labels = lease_labels(&name);
    assert_eq!(labels["microscale.lease.holder"], holder.holder.as_str());
    assert_eq!(labels["microscale.lease.ttl"], "2");
    assert!(
        labels["microscale.lease.renewed"]
            .as_str()
            .unwrap()
            .parse::<Timestamp>()
            .is_ok()
    );

    // SIGKILL: no release. The standby waits for the version to stay unchanged for
    // a full TTL.
    holder.signal(libc::SIGKILL);
    let killed = Timestamp::now();
    holder.wait_exit(Duration::from_secs(5));
    let window_end = holder
        .lines()
        .last()
        .and_then(|l| l.valid_until)
        .expect("the killed holder's last line has its window");
    let taken = standby.wait_for("acquired", Duration::from_secs(10));
    let latency = secs(killed, taken.time);
    eprintln!(
        "takeover after SIGKILL (TTL 2s): {latency:.3}s after the kill, {:.3}s after the holder's window ended",
        secs(window_end, taken.time)
    );
    assert!(
        taken.time > window_end,
        "taken over at {} before the holder's window ended at {window_end}",
        taken.time
    );
    // At least TTL - TTL/3 (the holder may have renewed up to TTL/3 before the kill),
    // at most TTL + TTL/3 (the standby's poll) plus slack.
    assert!(
        (1.2..=3.8).contains(&latency),
        "takeover {latency:.3}s after the kill"
    );
    assert_eq!(
        lease_labels(&name)["microscale.lease.holder"],
        standby.holder.as_str()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_no_overlap(&[(&holder, false), (&standby, true)]);

    // SIGTERM: the survivor releases, then exits 130.
    standby.signal(libc::SIGTERM);
    let status = standby.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    let last = standby.lines().last().unwrap().clone();
    assert_eq!(last.event, "released");
    assert!(!last.held);
    assert_eq!(lease_labels(&name)["microscale.lease.holder"], "");
}

#[test]
fn lease_clean_release_hands_over_at_once() {
    let name = unique("lease");
    let _cleanup = Config(name.clone());
    // TTL 6s: a standby polls every 2s, and would wait 6s after a crash.
    let mut a = Agent::start(&name, "6s", "agent-a", &["--for", "5s"]);
    a.wait_for("acquired", Duration::from_secs(10));
    let mut b = Agent::start(&name, "6s", "agent-b", &[]);
    assert_eq!(
        b.wait_for("leader", Duration::from_secs(10)).leader,
        "agent-a"
    );
    // `--for` ends: A releases and exits 0.
    assert_eq!(a.wait_exit(Duration::from_secs(15)).code(), Some(0));
    let released = a.lines().last().unwrap().clone();
    assert_eq!(released.event, "released", "{:#?}", a.lines());
    let taken = b.wait_for("acquired", Duration::from_secs(5));
    let handover = secs(released.time, taken.time);
    eprintln!("handover after a clean release (TTL 6s): {handover:.3}s");
    assert!(
        (0.0..2.6).contains(&handover),
        "B took over {handover:.3}s after A released (poll every 2s; a crash would take 6s)"
    );
    assert_no_overlap(&[(&a, false), (&b, true)]);
    assert_eq!(lease_labels(&name)["microscale.lease.holder"], "agent-b");
    b.signal(libc::SIGINT);
    assert_eq!(b.wait_exit(Duration::from_secs(10)).code(), Some(130));
    assert_eq!(lease_labels(&name)["microscale.lease.holder"], "");
}

#[test]
fn run_once_while_another_agent_holds_the_lease_scales_nothing_and_exits_3() {
    let name = unique("lease");
    let _cleanup = Config(name.clone());
    let port = serve_json(r#"{"depth": 30}"#);
    let svc = queue_service("once-standby", port, 4);
    wait_until("the service to run", Duration::from_secs(30), || {
        docker_service_ls(&svc.name)
            .first()
            .is_some_and(|r| r["Replicas"] == "1/1")
    });
    let mut a = Agent::start(&name, "30s", "agent-a", &[]);
    a.wait_for("acquired", Duration::from_secs(10));
    // The rule asks for 3 replicas; the holder (agent-a) scales, not this pass.
    let out = plugin(&["run", "--once", "--lease-name", &name, &svc.name]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another agent holds the lease") && stderr(&out).contains("agent-a"),
        "{}",
        stderr(&out)
    );
    assert_eq!(replicas(&svc.name), 1, "a standby --once scaled");
    // --dry-run takes no lease and acts on nothing: 0, as before.
    let out = plugin(&[
        "run",
        "--once",
        "--dry-run",
        "--lease-name",
        &name,
        &svc.name,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The lease released: the same --once takes it and scales (0).
    a.signal(libc::SIGINT);
    assert_eq!(a.wait_exit(Duration::from_secs(10)).code(), Some(130));
    let out = plugin(&["run", "--once", "--lease-name", &name, &svc.name]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(replicas(&svc.name), 3, "{}", stderr(&out));
}

#[test]
fn lease_held_by_a_silent_holder_is_waited_out_for_its_own_longer_ttl() {
    let name = unique("lease");
    // A holder that never renews (a crashed agent of an earlier run), with a 3s TTL.
    let _config = create_config(
        &name,
        &["microscale.lease.holder=ghost", "microscale.lease.ttl=3"],
    );
    // This agent's own TTL is 1s, but the holder's 3s counts.
    let c = Agent::start(&name, "1s", "agent-c", &[]);
    let seen = c.wait_for("leader", Duration::from_secs(5));
    assert_eq!(seen.leader, "ghost");
    let taken = c.wait_for("acquired", Duration::from_secs(8));
    let waited = secs(seen.time, taken.time);
    eprintln!("fresh agent took over a silent lease (holder TTL 3s) after {waited:.3}s");
    assert!(
        (2.9..=4.0).contains(&waited),
        "took over {waited:.3}s after first seeing the lease"
    );
    // Only the labels changed; the data is the config's own.
    let (_, config) = engine_get(&format!("/configs/{name}"));
    assert_eq!(
        config["Spec"]["Labels"]["microscale.lease.holder"],
        "agent-c"
    );
    assert_eq!(config["Spec"]["Labels"]["microscale.lease.ttl"], "1");
    assert_eq!(config["Spec"]["Data"], "bm90IGEgbGVhc2UK");
}

/// A unix-socket proxy to the manager that can stop answering, like a hung engine:
/// bytes are forwarded until [`StallingProxy::stall`], then held until
/// [`StallingProxy::resume`]. [`StallingProxy::hold_posts`] holds only the `POST`
/// requests whose first bytes contain one of some strings (an engine that reads but
/// cannot commit, like a manager cut off from the Raft leader); they go on, late,
/// when the list is emptied.
pub(crate) struct StallingProxy {
    pub(crate) host: String,
    stalled: Arc<AtomicBool>,
    holds: Holds,
    _dir: tempfile::TempDir,
}

/// The strings of [`StallingProxy::hold_posts`], and how many requests were held.
#[derive(Clone, Default)]
struct Holds(Arc<Mutex<Vec<String>>>, Arc<std::sync::atomic::AtomicUsize>);

impl Holds {
    fn matches(&self, chunk: &[u8]) -> bool {
        let head = String::from_utf8_lossy(&chunk[..chunk.len().min(512)]).to_string();
        head.starts_with("POST ")
            && self
                .0
                .lock()
                .unwrap()
                .iter()
                .any(|p| head.contains(p.as_str()))
    }
}

impl StallingProxy {
    pub(crate) fn start() -> StallingProxy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let stalled = Arc::new(AtomicBool::new(false));
        let holds = Holds::default();
        let requests = holds.clone();
        let target = manager_host()
            .strip_prefix("unix://")
            .expect("a unix:// test engine")
            .to_string();
        let flag = stalled.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(engine) = UnixStream::connect(&target) else {
                    continue;
                };
                let (c2, e2) = (client.try_clone().unwrap(), engine.try_clone().unwrap());
                Self::pipe(client, engine, flag.clone(), Some(requests.clone()));
                Self::pipe(e2, c2, flag.clone(), None);
            }
        });
        StallingProxy {
            host: format!("unix://{}", path.display()),
            stalled,
            holds,
            _dir: dir,
        }
    }

    fn pipe(
        mut from: UnixStream,
        mut to: UnixStream,
        stalled: Arc<AtomicBool>,
        holds: Option<Holds>,
    ) {
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if let Some(h) = holds.as_ref().filter(|h| h.matches(&buf[..n])) {
                    h.1.fetch_add(1, Ordering::SeqCst);
                    while h.matches(&buf[..n]) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                while stalled.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    }

    pub(crate) fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    pub(crate) fn resume(&self) {
        self.stalled.store(false, Ordering::SeqCst);
    }

    /// Holds every `POST` request that contains one of `patterns` (in its first 512
    /// bytes) until the list is emptied (`hold_posts(&[])`).
    pub(crate) fn hold_posts(&self, patterns: &[&str]) {
        *self.holds.0.lock().unwrap() = patterns.iter().map(|p| p.to_string()).collect();
    }

    /// How many requests were held so far.
    pub(crate) fn held(&self) -> usize {
        self.holds.1.load(Ordering::SeqCst)
    }
}

#[test]
fn lease_holder_cut_off_from_its_engine_stops_before_the_standby_takes_over() {
    let name = unique("lease");
    let _cleanup = Config(name.clone());
    let proxy = StallingProxy::start();
    let a = Agent::start_on(&proxy.host, &name, "2s", "agent-a", &[]);
    a.wait_for("acquired", Duration::from_secs(10));
    let b = Agent::start(&name, "2s", "agent-b", &[]);
    assert_eq!(
        b.wait_for("leader", Duration::from_secs(10)).leader,
        "agent-a"
    );
    std::thread::sleep(Duration::from_secs(1));
    // A's engine stops answering: its renewals cannot get through.
    proxy.stall();
    let lost = a.wait_for("lost", Duration::from_secs(4));
    let window_end = a.lines().iter().rev().find_map(|l| l.valid_until).unwrap();
    // A says it lost the lease when its window ends, even with a request hanging.
    let late = secs(window_end, lost.time);
    assert!(
        (0.0..0.3).contains(&late),
        "lost {late:.3}s after the window"
    );
    let taken = b.wait_for("acquired", Duration::from_secs(6));
    eprintln!(
        "holder cut off (TTL 2s): it stopped at its window's end; the standby took over {:.3}s later",
        secs(lost.time, taken.time)
    );
    assert!(taken.time > window_end, "B took over inside A's window");
    let err = a.wait_for("error", Duration::from_secs(4));
    assert!(!err.held);
    // The engine answers again: A sees B as the holder, and does not take it back.
    proxy.resume();
    wait_until("A to see B holding", Duration::from_secs(5), || {
        a.lines().iter().any(|l| l.leader == "agent-b")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(a.events("acquired").len(), 1, "{:#?}", a.lines());
    assert_no_overlap(&[(&a, true), (&b, true)]);
    assert_eq!(lease_labels(&name)["microscale.lease.holder"], "agent-b");
}

#[test]
fn lease_refuses_foreign_configs_worker_nodes_and_bad_flags() {
    // A config of that name that is not a lease is left alone.
    let name = unique("notalease");
    let _config = create_config(&name, &["app=web"]);
    let out = plugin(&["__lease", "--name", &name, "--for", "3s"]);
    fails(&out, 1, "is not a docker-microscale lease");
    assert!(stderr(&out).contains(&format!("docker config rm {name}")));
    assert_eq!(lease_labels(&name), serde_json::json!({"app": "web"}));

    // Configs live on managers only.
    let out = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", worker_host())
        .args(["__lease", "--name", &unique("lease"), "--for", "3s"])
        .output()
        .unwrap();
    fails(&out, 1, "is a swarm worker node");
    assert!(stderr(&out).contains("Run against a manager node"));
    assert!(out.stdout.is_empty());

    let out = plugin(&["__lease", "--ttl", "0"]);
    fails(&out, 125, "invalid argument \"0\" for \"--ttl\" flag");
    let out = plugin(&["__lease", "--holder", ""]);
    fails(&out, 125, "an empty holder means a free lease");
}
