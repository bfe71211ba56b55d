//! Engine stats from every node (`docs/agent.md`, "Engine stats from every node").
//!
//! Container stats can only be read through the engine of the node a container runs
//! on, so an agent runs on every node (deploy/stack.yml: the global service `agent` on
//! the managers, and `collector`, `run --collector`, on the workers) and:
//!
//! - **serves** its own node's running tasks' stats ([`serve`], `--stats-listen`):
//!   `GET /v1/stats[?service=ID,ID…]` with `Authorization: Bearer TOKEN` answers a
//!   [`NodeStats`] as JSON. The token is a Swarm secret's content
//!   (`--stats-token-file /run/secrets/microscale-stats-token`), compared in constant
//!   time ([`Token::matches`]); without a token file there is no endpoint. Wrong or
//!   missing token: 401. Other paths 404, other methods 405, an engine that cannot be
//!   read 503.
//! - **reads** every node's stats, when it holds the lease ([`read_peers`],
//!   `--stats-peers tasks.agent:9091,tasks.collector:9091`): each name is resolved
//!   to all its addresses (`tasks.<service>` on an overlay with `endpoint_mode:
//!   dnsrr` gives one per task) and each address is asked concurrently, with the token, within a
//!   timeout. Peers come from the operator's flags only, never from labels.
//! - **keeps** the combined reading in the swarm ([`publish`]): a Swarm config
//!   `<lease>-stats` beside the lease, whose labels hold each service's combined
//!   CPU and memory with the time they were read, so that `plan`, `apply`, `status
//!   --metrics` and `metric` on a user's machine (which reach one manager's engine
//!   only) use it while it is fresh ([`FRESH_SECS`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::engine::Engine;
use crate::metrics::engine::Collector;
use crate::metrics::nodes::{MAX_SERVICES_ASKED, PATH, Token};

/// Most connections open at once on the stats endpoint; beyond, the oldest is closed.
pub const MAX_CONNECTIONS: usize = 32;

/// How long a client has to send its request header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one connection may stay open, whatever it does.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Measures made at once by one stats endpoint (each asks the engine for every
/// task's stats); further requests wait for one to end.
const CONCURRENT_MEASURES: usize = 2;

/// How long one container's stats may take on the serving node (the reader gives a
/// node at least 5 s).
const STATS_TIMEOUT: Duration = Duration::from_secs(3);

/// What the stats endpoint needs: the node's engine, the token, the collector (its
/// cache of container limits) and a bound on concurrent measures.
struct Endpoint {
    engine: Engine,
    token: Token,
    collector: Collector,
    measures: tokio::sync::Semaphore,
}

/// Binds `addr` now (a port in use is an error at startup) and serves the stats
/// endpoint in the background. Returns the bound address.
///
/// Errors: the address cannot be bound.
pub async fn serve(addr: SocketAddr, engine: Engine, token: Token) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot listen on {addr} (--stats-listen): {e}; choose another address or port")
    })?;
    let local = listener.local_addr().unwrap_or(addr);
    let endpoint = Arc::new(Endpoint {
        engine,
        token,
        collector: Collector::new(),
        measures: tokio::sync::Semaphore::new(CONCURRENT_MEASURES),
    });
    tokio::spawn(accept_loop(listener, endpoint));
    Ok(local)
}

/// Accepts forever; at [`MAX_CONNECTIONS`] open connections the oldest is closed for
/// each new one (slow clients are shed, the holder's request is served).
async fn accept_loop(listener: tokio::net::TcpListener, endpoint: Arc<Endpoint>) {
    let open: Arc<Mutex<BTreeMap<u64, Arc<tokio::sync::Notify>>>> = Default::default();
    let mut next = 0u64;
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shed = Arc::new(tokio::sync::Notify::new());
        {
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            while open.len() >= MAX_CONNECTIONS {
                if let Some((_, oldest)) = open.pop_first() {
                    oldest.notify_one();
                }
            }
            next += 1;
            open.insert(next, shed.clone());
        }
        let slot = Slot(open.clone(), next);
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let endpoint = endpoint.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &endpoint).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn) => {}
                _ = shed.notified() => {}
            }
        });
    }
}

/// One open connection's place in the accept loop's table; freed when dropped.
struct Slot(Arc<Mutex<BTreeMap<u64, Arc<tokio::sync::Notify>>>>, u64);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header(hyper::header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

/// The bearer token of a request, if any.
fn bearer<B>(req: &Request<B>) -> Option<&[u8]> {
    let v = req.headers().get(hyper::header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = v.split_at(v.iter().position(|b| *b == b' ')?);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| rest.trim_ascii())
}

/// The service IDs of `?service=ID,ID…` (repeatable); `None` for every task.
///
/// Errors: an ID that is not 1 to 64 letters and digits, or too many.
fn services_asked(query: Option<&str>) -> Result<Option<BTreeSet<String>>, String> {
    let mut out = BTreeSet::new();
    let mut any = false;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "service" {
            return Err(format!(
                "unknown query parameter {:?}: only service=ID,ID…",
                crate::edge::text::ellipsize(&crate::edge::text::printable(k), 40)
            ));
        }
        any = true;
        for id in v.split(',').filter(|s| !s.is_empty()) {
            if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err("a service ID is 1 to 64 letters and digits".into());
            }
            out.insert(id.to_ascii_lowercase());
        }
    }
    if out.len() > MAX_SERVICES_ASKED {
        return Err(format!("at most {MAX_SERVICES_ASKED} service IDs"));
    }
    Ok(any.then_some(out))
}

async fn answer<B>(req: &Request<B>, endpoint: &Endpoint) -> Response<Full<Bytes>> {
    let text = "text/plain; charset=utf-8";
    if req.method() != Method::GET {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, text, "only GET\n".into());
        r.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET"),
        );
        return r;
    }
    if req.uri().path() != PATH {
        return reply(
            StatusCode::NOT_FOUND,
            text,
            format!("not found: the stats are at {PATH}\n"),
        );
    }
    // The token before anything else: an unauthenticated client learns nothing.
    if !bearer(req).is_some_and(|t| endpoint.token.matches(t)) {
        let mut r = reply(
            StatusCode::UNAUTHORIZED,
            text,
            "unauthorized: send the agents' token (--stats-token-file) as Authorization: Bearer TOKEN\n".into(),
        );
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer realm=\"microscale-stats\""),
        );
        return r;
    }
    let services = match services_asked(req.uri().query()) {
        Ok(s) => s,
        Err(e) => return reply(StatusCode::BAD_REQUEST, text, format!("bad request: {e}\n")),
    };
    let Ok(permit) = tokio::time::timeout(STATS_TIMEOUT * 2, endpoint.measures.acquire()).await
    else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            text,
            "busy: other measures are running; try again\n".into(),
        );
    };
    let engine = endpoint.engine.renewed();
    let result = endpoint
        .collector
        .collect(&engine, services.as_ref(), STATS_TIMEOUT)
        .await;
    drop(permit);
    match result {
        Ok(stats) => reply(
            StatusCode::OK,
            "application/json",
            serde_json::to_string(&stats).unwrap_or_default(),
        ),
        Err(e) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            text,
            format!(
                "cannot read this node's engine: {}\n",
                crate::edge::text::printable(&e)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::engine::{Kind, MAX_TASKS, NodeStats};
    use crate::metrics::nodes::{MAX_ANSWER_BYTES, Owners, Peers, attribute, owners, read_peers};
    use crate::store::stats::{
        LABEL_PREFIX, LABEL_TIME, Stored, StoredKind, StoredService, config_name, fresh, labels_of,
        missing_agents, parse,
    };
    use serde_json::{Value, json};

    #[test]
    fn rules_check_sees_nodes_without_an_agent() {
        use crate::swarm::snapshot::Snapshot;
        let node = |id: &str, state: &str| {
            serde_json::from_value(json!({"ID": id, "Description": {"Hostname": format!("host-{id}")}, "Status": {"State": state}})).unwrap()
        };
        let agent = |args: &[&str]| {
            serde_json::from_value(
                json!({"ID": "agent", "Spec": {"Name": "ms_agent", "Mode": {"Global": {}},
                "TaskTemplate": {"ContainerSpec": {"Image": "x", "Args": args}}}}),
            )
            .unwrap()
        };
        let task = |node: &str, state: &str| {
            serde_json::from_value(json!({"ID": format!("t-{node}"), "ServiceID": "agent", "NodeID": node, "Status": {"State": state}})).unwrap()
        };
        let mut snap = Snapshot {
            services: vec![agent(&["--stats-listen=:9091"])],
            tasks: vec![task("a", "running"), task("b", "starting")],
            nodes: vec![
                node("a", "ready"),
                node("b", "ready"),
                node("c", "ready"),
                node("d", "down"),
            ],
        };
        let now = 1_800_000_000.0;
        let why = missing_agents(&snap, None, now).unwrap();
        assert!(
            why.contains("3 ready nodes and 1 of them (host-c)"),
            "{why}"
        );
        snap.tasks.push(task("c", "failed"));
        assert!(
            missing_agents(&snap, None, now).is_some(),
            "a failed agent serves nothing"
        );
        snap.tasks.push(task("c", "running"));
        assert_eq!(missing_agents(&snap, None, now), None);
        // An agent without --stats-listen serves nothing.
        snap.services = vec![agent(&["--listen=:9090"])];
        assert!(missing_agents(&snap, None, now).is_some());
        // A fresh reading with every node's answer; a stale one does not count.
        let mut st = Stored {
            time: now - 10.0,
            nodes: vec!["a".into(), "b".into(), "c".into()],
            ..Default::default()
        };
        assert_eq!(missing_agents(&snap, Some(&st), now), None);
        st.time = now - 600.0;
        assert!(missing_agents(&snap, Some(&st), now).is_some());
        // One node: nothing to say.
        snap.nodes.truncate(1);
        assert_eq!(missing_agents(&snap, None, now), None);
    }

    /// deploy/stack.yml's layout: `agent` on the managers, `collector` (`run
    /// --collector`, the stats token only) on the workers; their tasks together
    /// cover the swarm.
    #[test]
    fn rules_check_counts_the_agents_and_the_collectors() {
        use crate::swarm::snapshot::Snapshot;
        let node = |id: &str| {
            serde_json::from_value(json!({"ID": id, "Description": {"Hostname": format!("host-{id}")}, "Status": {"State": "ready"}})).unwrap()
        };
        let global = |id: &str, name: &str, args: &[&str]| {
            serde_json::from_value(
                json!({"ID": id, "Spec": {"Name": name, "Mode": {"Global": {}},
                "TaskTemplate": {"ContainerSpec": {"Image": "x", "Args": args}}}}),
            )
            .unwrap()
        };
        let task = |service: &str, node: &str| {
            serde_json::from_value(json!({"ID": format!("{service}-{node}"), "ServiceID": service, "NodeID": node, "Status": {"State": "running"}})).unwrap()
        };
        let mut snap = Snapshot {
            services: vec![
                global(
                    "a",
                    "ms_agent",
                    &[
                        "--stats-listen=:9091",
                        "--stats-peers=tasks.agent:9091,tasks.collector:9091",
                    ],
                ),
                global(
                    "c",
                    "ms_collector",
                    &["--collector", "--stats-listen", ":9091"],
                ),
            ],
            tasks: vec![task("a", "m1"), task("a", "m2"), task("c", "w1")],
            nodes: vec![node("m1"), node("m2"), node("w1"), node("w2")],
        };
        let now = 1_800_000_000.0;
        let why = missing_agents(&snap, None, now).unwrap();
        assert!(
            why.contains("4 ready nodes and 1 of them (host-w2)"),
            "{why}"
        );
        snap.tasks.push(task("c", "w2"));
        assert_eq!(missing_agents(&snap, None, now), None);
        // Without the collectors, the workers have no agent.
        snap.services.truncate(1);
        let why = missing_agents(&snap, None, now).unwrap();
        assert!(
            why.contains("4 ready nodes and 2 of them (host-w1, host-w2)"),
            "{why}"
        );
    }

    #[test]
    fn tokens_are_checked_and_compared_whole() {
        let t = Token::new("0123456789abcdef0123\n").unwrap();
        assert!(t.matches(b"0123456789abcdef0123"));
        assert!(!t.matches(b"0123456789abcdef012"));
        assert!(!t.matches(b"0123456789abcdef01234"));
        assert!(!t.matches(b""));
        assert!(Token::new("short").unwrap_err().contains("at least 16"));
        assert!(
            Token::new("with a blank inside it")
                .unwrap_err()
                .contains("blanks")
        );
        assert_eq!(format!("{t:?}"), "Token(xxxxx)");
    }

    #[test]
    fn token_files_are_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "0123456789abcdef0123456789abcdef\n").unwrap();
        assert!(
            Token::read(&f)
                .unwrap()
                .matches(b"0123456789abcdef0123456789abcdef")
        );
        let e = Token::read(&dir.path().join("none")).unwrap_err();
        assert!(e.contains("cannot read the stats token file"), "{e}");
        let e = Token::read(dir.path()).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn bearer_tokens_and_queries() {
        let req = |auth: &str| {
            Request::builder()
                .header(hyper::header::AUTHORIZATION, auth)
                .body(())
                .unwrap()
        };
        assert_eq!(bearer(&req("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&req("bearer  abc ")), Some(&b"abc"[..]));
        assert_eq!(bearer(&req("Basic abc")), None);
        assert_eq!(bearer(&req("Bearer")), None);
        assert_eq!(services_asked(None), Ok(None));
        assert_eq!(
            services_asked(Some("service=abc,DEF&service=g1")),
            Ok(Some(["abc".into(), "def".into(), "g1".into()].into()))
        );
        assert!(services_asked(Some("service=a/b")).is_err());
        assert!(services_asked(Some("x=1")).unwrap_err().contains("unknown"));
        let many = (0..=MAX_SERVICES_ASKED)
            .map(|i| format!("s{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(services_asked(Some(&format!("service={many}"))).is_err());
    }

    fn node_answer(id: &str, time: &str, cpu: f64) -> NodeStats {
        serde_json::from_value(json!({"node": {"id": id, "hostname": format!("h-{id}")},
            "time": time, "tasks": [{"task": format!("t-{id}"), "service": "s", "cpu": cpu, "memory": 1.0}]}))
        .unwrap()
    }

    #[test]
    fn a_peer_cannot_speak_for_another_node() {
        let addr = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let owners: Owners = [
            ("10.0.1.2".parse().unwrap(), ["a".to_string()].into()),
            ("10.0.1.3".parse().unwrap(), ["b".to_string()].into()),
        ]
        .into();
        // b's agent (compromised) claims to be a, with a measure from the future: a's
        // own answer from a's address is the one used, b's is refused and named.
        let mut failures = vec![];
        let (got, verified) = attribute(
            vec![
                (
                    addr("10.0.1.2:9091"),
                    node_answer("a", "2026-12-07T20:40:00Z", 5.0),
                ),
                (
                    addr("10.0.1.3:9091"),
                    node_answer("a", "9999-12-31T00:00:00Z", 100.0),
                ),
                (
                    addr("10.0.1.3:9092"),
                    node_answer("b", "2026-12-07T20:40:00Z", 1.0),
                ),
            ],
            &owners,
            &mut failures,
        );
        assert_eq!(got["a"].tasks[0].cpu, Some(5.0));
        assert_eq!(got["b"].tasks[0].cpu, Some(1.0));
        assert_eq!(verified, 2, "a and b answered from their own addresses");
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0]
                .contains("10.0.1.3:9091: answered as node a, but Swarm gives that address to b"),
            "{failures:?}"
        );
        // Unknown addresses: one alone counts; beside a verified answer it does not;
        // two claiming one node cancel each other (the node is then missing).
        let mut failures = vec![];
        let (got, verified) = attribute(
            vec![
                (
                    addr("127.0.0.1:1"),
                    node_answer("a", "2026-12-07T20:40:00Z", 100.0),
                ),
                (
                    addr("10.0.1.2:9091"),
                    node_answer("a", "2026-12-07T20:39:00Z", 5.0),
                ),
                (
                    addr("127.0.0.1:2"),
                    node_answer("c", "2026-12-07T20:40:00Z", 7.0),
                ),
                (
                    addr("127.0.0.1:3"),
                    node_answer("d", "2026-12-07T20:40:00Z", 7.0),
                ),
                (
                    addr("127.0.0.1:4"),
                    node_answer("d", "2026-12-07T20:40:01Z", 100.0),
                ),
            ],
            &owners,
            &mut failures,
        );
        assert_eq!(got["a"].tasks[0].cpu, Some(5.0));
        assert_eq!(got["c"].tasks[0].cpu, Some(7.0));
        assert!(!got.contains_key("d"), "{got:?}");
        assert_eq!(verified, 1, "only a's answer came from a's address");
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(
            failures
                .iter()
                .any(|f| f.contains("127.0.0.1:3, 127.0.0.1:4: all answered as node d"))
        );
        // Two verified answers for one node (an agent on two networks): the later.
        let owners: Owners = [
            ("10.0.1.2".parse().unwrap(), ["a".to_string()].into()),
            ("10.0.2.2".parse().unwrap(), ["a".to_string()].into()),
        ]
        .into();
        let (got, verified) = attribute(
            vec![
                (
                    addr("10.0.1.2:9091"),
                    node_answer("a", "2026-12-07T20:40:02Z", 2.0),
                ),
                (addr("10.0.2.2:9091"), node_answer("a", "not a time", 3.0)),
            ],
            &owners,
            &mut vec![],
        );
        assert_eq!(got["a"].tasks[0].cpu, Some(2.0));
        assert_eq!(verified, 1);
    }

    #[test]
    fn owners_come_from_running_tasks_and_nodes() {
        let tasks = json!([
            {"ID": "t1", "NodeID": "a", "Status": {"State": "running"},
             "NetworksAttachments": [{"Addresses": ["10.0.1.2/24", "garbage", 7]}]},
            {"ID": "t2", "NodeID": "b", "Status": {"State": "shutdown"},
             "NetworksAttachments": [{"Addresses": ["10.0.1.2/24"]}]},
            {"ID": "t3", "Status": {"State": "running"}, "NetworksAttachments": "x"},
        ]);
        let nodes: Vec<bollard::models::Node> = vec![
            serde_json::from_value(
                json!({"ID": "a", "Status": {"State": "ready", "Addr": "198.18.0.2"}}),
            )
            .unwrap(),
            serde_json::from_value(
                json!({"ID": "b", "Status": {"State": "ready", "Addr": "0.0.0.0"}}),
            )
            .unwrap(),
        ];
        let o = owners(&tasks, &nodes);
        assert_eq!(o.len(), 2, "{o:?}");
        assert_eq!(o[&"10.0.1.2".parse().unwrap()], ["a".to_string()].into());
        assert_eq!(o[&"198.18.0.2".parse().unwrap()], ["a".to_string()].into());
        assert!(owners(&json!({"message": "x"}), &[]).is_empty());
    }

    /// A peer on loopback that answers every connection with `answer` (after
    /// `delay`), as a hostile agent might.
    async fn hostile_peer(answer: Vec<u8>, delay: Duration) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let split = answer.len().min(64);
                    let _ = s.write_all(&answer[..split]).await;
                    tokio::time::sleep(delay).await;
                    let _ = s.write_all(&answer[split..]).await;
                });
            }
        });
        port
    }

    fn http_ok(body: &[u8]) -> Vec<u8> {
        let mut v = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        v.extend_from_slice(body);
        v
    }

    #[tokio::test]
    async fn hostile_peers_give_nothing_and_are_named() {
        let token = Token::new("0123456789abcdef0123456789abcdef").unwrap();
        let huge = {
            let mut b = br#"{"node":{"id":"a","hostname":"x"},"time":"t","tasks":["#.to_vec();
            b.extend(std::iter::repeat_n(b' ', MAX_ANSWER_BYTES + 10));
            b.extend(b"]}");
            b
        };
        let many_tasks = {
            let tasks: Vec<Value> = (0..=MAX_TASKS)
                .map(
                    |i| json!({"task": format!("t{i}"), "service": "s", "cpu": 1.0, "memory": 1.0}),
                )
                .collect();
            json!({"node": {"id": "m", "hostname": "x"}, "time": "t", "tasks": tasks}).to_string()
        };
        let cases: Vec<(&str, Vec<u8>, Duration, &str)> = vec![
            ("huge", http_ok(&huge), Duration::ZERO, "at most 4194304 bytes"),
            ("slow", http_ok(br#"{"node":{"id":"a","hostname":"x"},"time":"t","tasks":[]}"#), Duration::from_secs(30), "no answer within"),
            ("not json", http_ok(b"{\"node\": nan}"), Duration::ZERO, "not a node's stats"),
            ("nan", http_ok(br#"{"node":{"id":"a","hostname":"x"},"time":"t","tasks":[{"task":"t","service":"s","cpu":NaN,"memory":1}]}"#), Duration::ZERO, "not a node's stats"),
            ("ansi node", http_ok(br#"{"node":{"id":"a\u001b[31m","hostname":"x"},"time":"t","tasks":[]}"#), Duration::ZERO, "names no node"),
            ("thousands", http_ok(many_tasks.as_bytes()), Duration::ZERO, "more than 2000 tasks"),
            ("error page", b"HTTP/1.1 500 x\r\ncontent-length: 9\r\n\r\n\x1b[2Jboom\n".to_vec(), Duration::ZERO, "answered 500: \\u{1b}[2Jboom"),
        ];
        for (name, answer, delay, want) in cases {
            let port = hostile_peer(answer, delay).await;
            let peers = Peers::parse(&[format!("127.0.0.1:{port}")]).unwrap();
            let start = std::time::Instant::now();
            let got = read_peers(
                &peers,
                &token,
                &BTreeSet::new(),
                Duration::from_millis(800),
                &Owners::new(),
            )
            .await;
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{name}: {:?}",
                start.elapsed()
            );
            assert!(got.nodes.is_empty(), "{name}: {:?}", got.nodes.keys());
            assert_eq!(got.failures.len(), 1, "{name}: {:?}", got.failures);
            assert!(got.failures[0].contains(want), "{name}: {:?}", got.failures);
            assert!(
                !got.failures[0].contains('\x1b'),
                "{name}: {:?}",
                got.failures
            );
        }
    }

    #[test]
    fn peers_parse() {
        let p = Peers::parse(&[
            "tasks.microscale_agent:9091".into(),
            "198.18.0.2:9091, [::1]:9091".into(),
        ])
        .unwrap();
        assert_eq!(
            p.text(),
            "198.18.0.2:9091,::1:9091,tasks.microscale_agent:9091"
        );
        for bad in [
            "agent",
            "agent:0",
            "agent:x",
            ":9091",
            "a b:1",
            "http://a:1",
        ] {
            let e = Peers::parse(&[bad.into()]).unwrap_err();
            assert!(e.contains("--stats-peers"), "{bad}: {e}");
        }
        assert!(Peers::parse(&[]).unwrap().is_empty());
        // deploy/stack.yml's holder reads both services; given twice, once.
        let p = Peers::parse(&[
            "tasks.agent:9091,tasks.collector:9091".into(),
            "tasks.collector:9091".into(),
        ])
        .unwrap();
        assert_eq!(p.text(), "tasks.agent:9091,tasks.collector:9091");
    }

    #[test]
    fn stored_readings_round_trip() {
        let mut s = StoredService::default();
        s.set(
            Kind::Cpu,
            StoredKind {
                value: Some(82.5),
                measured: 3,
                total: 5,
                missing: vec!["n4".into(), "n5".into()],
                error: None,
            },
        );
        let stored = Stored {
            time: 1_800_000_000.25,
            writer: "n1/abc/1/x".into(),
            nodes: vec!["a".into(), "b".into()],
            services: [("svc1".to_string(), s.clone())].into(),
        };
        let labels = labels_of(&stored);
        assert_eq!(
            labels["microscale.stats.svc1"],
            r#"{"cpu":{"v":82.5,"n":3,"of":5,"missing":["n4","n5"]}}"#
        );
        let back = parse(&json!({"Spec": {"Labels": labels}}));
        assert_eq!(back, stored);
        // A label that does not parse is left out, the others stay.
        let mut labels = labels_of(&stored);
        labels.insert("microscale.stats.bad".into(), Value::from("{"));
        assert_eq!(
            parse(&json!({"Spec": {"Labels": labels}})).services.len(),
            1
        );
        assert_eq!(
            config_name("microscale-agent-lease"),
            "microscale-agent-lease-stats"
        );
        assert_eq!(config_name(&"x".repeat(64)).len(), 64);
    }

    #[test]
    fn stored_readings_are_checked_for_sanity() {
        let k = |v: Option<f64>, n: u64, of: u64, missing: &[&str]| StoredKind {
            value: v,
            measured: n,
            total: of,
            missing: missing.iter().map(|m| m.to_string()).collect(),
            error: None,
        };
        assert_eq!(k(Some(82.5), 3, 5, &["n4", "n5"]).sane(), Ok(()));
        assert_eq!(k(Some(0.0), 5, 5, &[]).sane(), Ok(()));
        assert_eq!(k(None, 0, 5, &["n1"]).sane(), Ok(()));
        for bad in [
            k(Some(1e308), 5, 5, &[]),
            k(Some(-1.0), 5, 5, &[]),
            k(Some(f64::NAN), 5, 5, &[]),
            k(Some(50.0), 0, 5, &["n1"]),
            k(Some(50.0), 6, 5, &[]),
            k(Some(50.0), u64::MAX, 1, &[]),
            k(Some(50.0), 3, 5, &[]),
            k(Some(50.0), 5, 5, &["n1"]),
            k(Some(50.0), 4, 5, &["n1", "n2"]),
            k(Some(50.0), 4, 5, &[""]),
            k(Some(50.0), 4, 5, &[&"x".repeat(254)]),
        ] {
            let e = bad.sane().unwrap_err();
            assert!(e.len() < 100, "{bad:?}: {e}");
        }
        // Garbage, huge or future configs parse to something `fresh` refuses, and
        // never panic.
        for time in ["NaN", "inf", "-5", "1e300", "", "x", "1e-300"] {
            let st = parse(&json!({"Spec": {"Labels": {LABEL_TIME: time}}}));
            assert!(!fresh(st.time, 1_800_000_000.0), "{time}");
        }
        let huge: serde_json::Map<String, Value> = (0..20_000)
            .map(|i| {
                (
                    format!("{LABEL_PREFIX}s{i}"),
                    Value::from(r#"{"cpu":{"v":1e308,"n":1,"of":1}}"#),
                )
            })
            .collect();
        let st = parse(&json!({"Spec": {"Labels": huge}}));
        assert_eq!(st.services.len(), 20_000);
        assert!(
            st.services
                .values()
                .all(|s| s.cpu.as_ref().unwrap().sane().is_err())
        );
        assert_eq!(
            parse(&json!({"Spec": {"Labels": [1, 2]}})),
            Stored::default()
        );
        assert_eq!(parse(&json!("garbage")), Stored::default());
    }
}
