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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;

use crate::engine::service::{is_out_of_sequence, segment};
use crate::engine::{Engine, EngineError};
use crate::metrics::engine::{Collector, Kind, MAX_TASKS, NodeStats};

/// The path of the stats endpoint.
pub const PATH: &str = "/v1/stats";

/// The shortest token accepted, in bytes: a guessable token would open the endpoint.
pub const MIN_TOKEN_BYTES: usize = 16;

/// Largest token file read, in bytes.
const MAX_TOKEN_FILE: u64 = 4096;

/// Largest answer read from a peer (a node's stats of [`MAX_TASKS`] tasks is about
/// 400 KB).
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Most addresses asked in one read of the peers (after resolving their names).
pub const MAX_PEERS: usize = 512;

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

/// Most service IDs a request may name (beyond, the reader asks for every task).
pub const MAX_SERVICES_ASKED: usize = 200;

/// How old (seconds) the stored combined reading may be for the command line to use
/// it: four passes at the default 15 s interval. Older, it measures what its own
/// engine can see.
pub const FRESH_SECS: f64 = 60.0;

/// The shortest time (seconds) between two writes of the stored reading by one
/// holder (every pass at the default 15 s interval; every 5 s at shorter ones).
pub const PUBLISH_EVERY_SECS: f64 = 5.0;

/// The shared secret of the stats endpoint, read from `--stats-token-file`.
#[derive(Clone)]
pub struct Token {
    text: String,
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(xxxxx)")
    }
}

impl Token {
    /// A token from its text (a trailing newline removed).
    ///
    /// Errors: shorter than [`MIN_TOKEN_BYTES`], or holding blanks or control
    /// characters (it goes into an HTTP header).
    pub fn new(text: &str) -> Result<Token, String> {
        let text = text.trim_end_matches(['\n', '\r']);
        if text.len() < MIN_TOKEN_BYTES {
            return Err(format!(
                "the token is {} bytes long: use at least {MIN_TOKEN_BYTES} random characters (e.g. openssl rand -hex 32 | docker secret create microscale-stats-token -)",
                text.len()
            ));
        }
        if text.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err("the token holds blanks, control or non-ASCII characters: use printable ASCII only (e.g. openssl rand -hex 32)".into());
        }
        Ok(Token {
            digest: sha2::Sha256::digest(text.as_bytes()).into(),
            text: text.to_string(),
        })
    }

    /// Reads the token file: a regular file (symbolic links followed, as Docker's
    /// `/run/secrets/NAME` are) of at most 4 KiB, UTF-8.
    ///
    /// Errors name the file and say why (missing, not a regular file, too short).
    pub fn read(path: &Path) -> Result<Token, String> {
        let shown = crate::render::printable(&path.display().to_string());
        let bytes = crate::edge::fsutil::read_regular(path, MAX_TOKEN_FILE, true)
            .map_err(|e| format!("cannot read the stats token file {shown}: {e}"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("the stats token file {shown} is not UTF-8 text"))?;
        Token::new(&text).map_err(|e| format!("the stats token file {shown}: {e}"))
    }

    /// Whether `presented` is the token: their SHA-256 digests compared in constant
    /// time (neither the content nor the length of the token leaks through timing).
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let d: [u8; 32] = sha2::Sha256::digest(presented).into();
        d.ct_eq(&self.digest).into()
    }

    /// The `Authorization` header value.
    fn header(&self) -> String {
        format!("Bearer {}", self.text)
    }
}

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
                crate::render::ellipsize(&crate::render::printable(k), 40)
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
                crate::render::printable(&e)
            ),
        ),
    }
}

/// The peers of `--stats-peers`: `HOST:PORT` entries, each name resolved to all its
/// addresses at each read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers {
    entries: Vec<(String, u16)>,
}

impl Peers {
    /// Parses `--stats-peers` values: `HOST:PORT` or `[IPv6]:PORT`, comma-separated
    /// or repeated.
    ///
    /// Errors name the entry and the expected shape.
    pub fn parse(values: &[String]) -> Result<Peers, String> {
        let mut entries = vec![];
        for v in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
            if v.is_empty() {
                continue;
            }
            let bad = || {
                format!(
                    "invalid argument \"{}\" for \"--stats-peers\" flag: give HOST:PORT, such as tasks.agent:9091,tasks.collector:9091 or 198.18.0.2:9091",
                    crate::render::ellipsize(&crate::render::printable(v), 80)
                )
            };
            let (host, port) = v.rsplit_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            let name_ok = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
            if !name_ok {
                return Err(bad());
            }
            entries.push((host.to_ascii_lowercase(), port));
        }
        entries.sort();
        entries.dedup();
        Ok(Peers { entries })
    }

    /// Whether no peer was given.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries as given, `HOST:PORT, …`.
    pub fn text(&self) -> String {
        self.entries
            .iter()
            .map(|(h, p)| format!("{h}:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What a read of the peers gave.
#[derive(Debug, Default)]
pub struct PeerAnswers {
    /// Node ID → the stats its agent answered.
    pub nodes: HashMap<String, NodeStats>,
    /// One line per address or name that gave nothing usable (`198.18.0.5:9091:
    /// connection refused`).
    pub failures: Vec<String>,
    /// Addresses asked.
    pub asked: usize,
    /// Nodes whose answer came from an address Swarm gives that node ([`Owners`]):
    /// verified, as opposed to taken on the peer's word.
    pub verified: usize,
}

/// Which nodes Swarm gives each address to: every running task's network
/// attachment addresses (`Task.NetworksAttachments[].Addresses`, the prefix length
/// cut) and every node's own address (`Node.Status.Addr`) → node IDs. An answer from
/// an address in this table counts only for a node the table names
/// ([`attribute`]).
pub type Owners = HashMap<std::net::IpAddr, BTreeSet<String>>;

/// The [`Owners`] of a swarm: `tasks` is the engine's answer to `GET /tasks`
/// (JSON; bollard's `Task` leaves `NetworksAttachments` out), `nodes` the swarm's
/// nodes. Only running tasks count (an ended task's address may be another's now).
pub fn owners(tasks: &Value, nodes: &[bollard::models::Node]) -> Owners {
    let mut out: Owners = HashMap::new();
    for t in tasks.as_array().into_iter().flatten() {
        let Some(node) = t["NodeID"].as_str().filter(|n| !n.is_empty()) else {
            continue;
        };
        if t["Status"]["State"].as_str() != Some("running") {
            continue;
        }
        for a in t["NetworksAttachments"].as_array().into_iter().flatten() {
            for addr in a["Addresses"].as_array().into_iter().flatten() {
                let ip = addr.as_str().unwrap_or_default().split('/').next();
                if let Some(Ok(ip)) = ip.map(str::parse) {
                    out.entry(ip).or_default().insert(node.to_string());
                }
            }
        }
    }
    for n in nodes {
        let (Some(id), Some(addr)) = (
            n.id.as_deref(),
            n.status.as_ref().and_then(|s| s.addr.as_deref()),
        ) else {
            continue;
        };
        if let Ok(ip) = addr.parse::<std::net::IpAddr>()
            && !ip.is_unspecified()
        {
            out.entry(ip).or_default().insert(id.to_string());
        }
    }
    out
}

/// Reads the [`Owners`] of the swarm: `GET /tasks?filters={"desired-state":
/// ["running"]}` and the nodes of `snap`. When the tasks cannot be read, the nodes'
/// addresses alone (answers from overlay addresses are then unverified).
pub async fn read_owners(engine: &Engine, snap: &crate::swarm::snapshot::Snapshot) -> Owners {
    let filters = segment(r#"{"desired-state":["running"]}"#);
    let tasks = engine
        .raw_request(
            http::Method::GET,
            &format!("/tasks?filters={filters}"),
            None,
        )
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or(Value::Null);
    owners(&tasks, &snap.nodes)
}

/// Which answer counts for which node. A peer says which node it is, and a hostile
/// peer (a compromised worker) may claim another node's ID to speak for its tasks:
///
/// - an answer from an address Swarm gives to other nodes ([`Owners`]) is not used;
/// - an answer from an address Swarm gives to the node it names is *verified*; of
///   several verified answers for one node, the latest measure counts;
/// - an answer from an address Swarm does not know (a `--stats-peers` address
///   outside the swarm's records, such as a loopback one) counts only when it is the
///   only answer for its node: beside a verified answer it is dropped, and two or
///   more such answers for one node cancel each other (the node is then missing, so
///   no scale-down happens on that partial data).
///
/// Each answer not used adds a line to `failures`. Returns node ID → its stats, and
/// how many of those nodes were verified (their answer came from an address Swarm
/// gives that node).
pub fn attribute(
    answers: Vec<(SocketAddr, NodeStats)>,
    owners: &Owners,
    failures: &mut Vec<String>,
) -> (HashMap<String, NodeStats>, usize) {
    let mut verified_nodes = 0;
    let shown = |id: &str| crate::render::ellipsize(&crate::render::printable(id), 64);
    // Node ID → (verified answers, unverified answers).
    type Claims = (Vec<(SocketAddr, NodeStats)>, Vec<(SocketAddr, NodeStats)>);
    let mut by_node: BTreeMap<String, Claims> = BTreeMap::new();
    for (addr, stats) in answers {
        let verified = match owners.get(&addr.ip()) {
            Some(nodes) if !nodes.contains(&stats.node.id) => {
                failures.push(format!(
                    "{addr}: answered as node {}, but Swarm gives that address to {}: not used",
                    shown(&stats.node.id),
                    nodes.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
                continue;
            }
            Some(_) => true,
            None => false,
        };
        let entry = by_node.entry(stats.node.id.clone()).or_default();
        if verified {
            entry.0.push((addr, stats));
        } else {
            entry.1.push((addr, stats));
        }
    }
    let when = |s: &NodeStats| s.time.parse::<jiff::Timestamp>().ok();
    let mut out = HashMap::new();
    for (node, (verified, unverified)) in by_node {
        if !verified.is_empty() {
            for (addr, _) in &unverified {
                failures.push(format!(
                    "{addr}: answered as node {}, which answered from its own address: not used",
                    shown(&node)
                ));
            }
            if let Some((_, s)) = verified.into_iter().max_by_key(|(_, s)| when(s)) {
                out.insert(node, s);
                verified_nodes += 1;
            }
        } else if unverified.len() == 1 {
            if let Some((_, s)) = unverified.into_iter().next() {
                out.insert(node, s);
            }
        } else {
            let addrs: Vec<String> = unverified.iter().map(|(a, _)| a.to_string()).collect();
            failures.push(format!(
                "{}: all answered as node {}, and Swarm gives none of these addresses to it: none is used",
                addrs.join(", "),
                shown(&node)
            ));
        }
    }
    (out, verified_nodes)
}

/// Asks every peer for its node's stats (of `services` only, when at most
/// [`MAX_SERVICES_ASKED`]), concurrently, each exchange within `timeout`; which
/// answer counts for which node is decided by [`attribute`] with `owners`.
pub async fn read_peers(
    peers: &Peers,
    token: &Token,
    services: &BTreeSet<String>,
    timeout: Duration,
    owners: &Owners,
) -> PeerAnswers {
    use futures_util::StreamExt;
    let mut out = PeerAnswers::default();
    let mut addrs: Vec<SocketAddr> = vec![];
    for (host, port) in &peers.entries {
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), *port))).await {
            Ok(Ok(found)) => addrs.extend(found),
            Ok(Err(e)) => out
                .failures
                .push(format!("{host}:{port}: does not resolve ({e})")),
            Err(_) => out.failures.push(format!(
                "{host}:{port}: no name resolution within {timeout:?}"
            )),
        }
    }
    addrs.sort();
    addrs.dedup();
    if addrs.len() > MAX_PEERS {
        out.failures.push(format!(
            "{} addresses: only the first {MAX_PEERS} are asked",
            addrs.len()
        ));
        addrs.truncate(MAX_PEERS);
    }
    out.asked = addrs.len();
    let query = if services.is_empty() || services.len() > MAX_SERVICES_ASKED {
        String::new()
    } else {
        format!(
            "?service={}",
            services.iter().cloned().collect::<Vec<_>>().join(",")
        )
    };
    let results = futures_util::stream::iter(addrs)
        .map(|addr| {
            let query = query.clone();
            async move {
                let r = tokio::time::timeout(timeout, ask(addr, token, &query)).await;
                let r = r.unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
                (addr, r)
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let mut answers = vec![];
    for (addr, r) in results {
        match r {
            Ok(stats) => answers.push((addr, stats)),
            Err(e) => out.failures.push(format!("{addr}: {e}")),
        }
    }
    (out.nodes, out.verified) = attribute(answers, owners, &mut out.failures);
    out.failures.sort();
    out
}

/// One exchange with one peer: `GET /v1/stats` with the token; the answer checked.
async fn ask(addr: SocketAddr, token: &Token, query: &str) -> Result<NodeStats, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("cannot talk HTTP: {e}"))?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("{PATH}{query}"))
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::AUTHORIZATION, token.header())
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| format!("cannot read the answer (at most {MAX_ANSWER_BYTES} bytes): {e}"))?
        .to_bytes();
    if status != StatusCode::OK {
        let first = String::from_utf8_lossy(&body);
        return Err(format!(
            "answered {}: {}",
            status.as_u16(),
            crate::render::ellipsize(
                &crate::render::printable(first.lines().next().unwrap_or_default()),
                200
            )
        ));
    }
    let stats: NodeStats = serde_json::from_slice(&body)
        .map_err(|e| format!("the answer is not a node's stats: {e}"))?;
    let id_ok = (1..=64).contains(&stats.node.id.len())
        && stats.node.id.bytes().all(|b| b.is_ascii_alphanumeric());
    if !id_ok || stats.tasks.len() > MAX_TASKS {
        return Err(format!(
            "the answer names no node (a node ID is 1 to 64 letters and digits), or more than {MAX_TASKS} tasks"
        ));
    }
    Ok(stats)
}

/// One service's combined reading of one kind, as kept in the swarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StoredKind {
    /// The average over the measured tasks (percent); absent when none was measured.
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Running tasks measured.
    #[serde(rename = "n", default)]
    pub measured: u64,
    /// Running tasks then.
    #[serde(rename = "of", default)]
    pub total: u64,
    /// Nodes whose tasks were not measured (hostnames).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Why nothing was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StoredKind {
    /// Whether this reading could have been written by an agent (the config is
    /// untrusted: any manager can write it): a value that is a plausible
    /// utilisation ([`crate::metrics::engine::plausible_percent`]) from at least one
    /// measured task, at most as many tasks measured as ran, nodes named missing
    /// exactly when some were not measured, and no more of them than tasks not
    /// measured, each name at most 253 characters.
    ///
    /// Errors say what is wrong, for the reasons (`plan`: not used).
    pub fn sane(&self) -> Result<(), String> {
        if let Some(v) = self.value {
            if !crate::metrics::engine::plausible_percent(v) {
                let shown = if v.abs() < 1e6 {
                    format!("{v}")
                } else {
                    format!("{v:e}")
                };
                return Err(format!(
                    "a value of {shown} % is not a utilisation (0 to {} %)",
                    crate::metrics::engine::MAX_PERCENT
                ));
            }
            if self.measured == 0 {
                return Err("a value from no measured task".into());
            }
        }
        if self.measured > self.total {
            return Err(format!(
                "{} tasks measured of {} running",
                self.measured, self.total
            ));
        }
        let unmeasured = self.total - self.measured;
        if (unmeasured == 0) != self.missing.is_empty()
            || self.missing.len() as u64 > unmeasured
            || self.missing.iter().any(|m| m.is_empty() || m.len() > 253)
        {
            return Err(format!(
                "{} nodes named missing for {unmeasured} tasks not measured",
                self.missing.len()
            ));
        }
        Ok(())
    }
}

/// One service's combined readings, as kept in the swarm: label
/// `microscale.stats.<service ID>`, JSON `{"cpu": {"v": 82.5, "n": 3, "of": 5,
/// "missing": ["n4", "n5"]}, "memory": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StoredService {
    /// `engine://cpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<StoredKind>,
    /// `engine://memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<StoredKind>,
}

impl StoredService {
    /// The reading of `kind`.
    pub fn get(&self, kind: Kind) -> Option<&StoredKind> {
        match kind {
            Kind::Cpu => self.cpu.as_ref(),
            Kind::Memory => self.memory.as_ref(),
        }
    }

    /// Sets the reading of `kind`.
    pub fn set(&mut self, kind: Kind, k: StoredKind) {
        match kind {
            Kind::Cpu => self.cpu = Some(k),
            Kind::Memory => self.memory = Some(k),
        }
    }
}

/// The combined reading the holder keeps in the swarm (and the command line reads).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stored {
    /// When the nodes were read, seconds since the Unix epoch (the holder's clock).
    pub time: f64,
    /// Who wrote it (the lease holder id).
    pub writer: String,
    /// The nodes (IDs) whose agents answered.
    pub nodes: Vec<String>,
    /// Service ID → its readings.
    pub services: BTreeMap<String, StoredService>,
}

/// Label prefix of one service's readings (the service ID follows).
pub const LABEL_PREFIX: &str = "microscale.stats.";
/// Label: when the nodes were read, seconds since the Unix epoch.
pub const LABEL_TIME: &str = "microscale.stats-time";
/// Label: who wrote it.
pub const LABEL_WRITER: &str = "microscale.stats-writer";
/// Label: JSON array of the node IDs whose agents answered.
pub const LABEL_NODES: &str = "microscale.stats-nodes";

/// The config's data (Swarm requires some).
const DATA: &str = "docker-microscale engine stats from every node: one microscale.stats.<service ID> label per service; see docs/agent.md\n";

/// The stats config of the lease `lease`: `<lease>-stats` (cut to Swarm's 64
/// characters).
pub fn config_name(lease: &str) -> String {
    let mut base: String = lease.chars().take(64 - "-stats".len()).collect();
    base.push_str("-stats");
    base
}

/// The labels of `stored`.
fn labels_of(stored: &Stored) -> serde_json::Map<String, Value> {
    let mut labels = serde_json::Map::new();
    labels.insert(
        LABEL_TIME.into(),
        Value::from(format!("{:.3}", stored.time)),
    );
    labels.insert(LABEL_WRITER.into(), Value::from(stored.writer.clone()));
    labels.insert(
        LABEL_NODES.into(),
        Value::from(serde_json::to_string(&stored.nodes).unwrap_or_default()),
    );
    for (id, s) in &stored.services {
        labels.insert(
            format!("{LABEL_PREFIX}{id}"),
            Value::from(serde_json::to_string(s).unwrap_or_default()),
        );
    }
    labels
}

/// Parses a config answer (`GET /configs/{name}`); labels that do not parse are
/// left out (a service without its label is measured by the reader itself).
fn parse(value: &Value) -> Stored {
    let Some(labels) = value["Spec"]["Labels"].as_object() else {
        return Stored::default();
    };
    let text = |k: &str| labels.get(k).and_then(Value::as_str).unwrap_or_default();
    Stored {
        time: text(LABEL_TIME)
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite())
            .unwrap_or(0.0),
        writer: text(LABEL_WRITER).to_string(),
        nodes: serde_json::from_str(text(LABEL_NODES)).unwrap_or_default(),
        services: labels
            .iter()
            .filter_map(|(k, v)| {
                let id = k.strip_prefix(LABEL_PREFIX)?;
                let s: StoredService = serde_json::from_str(v.as_str()?).ok()?;
                Some((id.to_string(), s))
            })
            .collect(),
    }
}

/// Reads the stats config `name`; `None` when there is none (no agent reads every
/// node's stats).
///
/// Errors: the engine cannot be read, or answers something that is not JSON.
pub async fn read_stored(engine: &Engine, name: &str) -> Result<Option<Stored>, EngineError> {
    let path = format!("/configs/{}", segment(name));
    match engine.raw_request(http::Method::GET, &path, None).await {
        Ok(bytes) => {
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| EngineError::Daemon {
                status: 200,
                message: format!("the engine's answer for config {name} is not JSON: {e}"),
            })?;
            if value["Spec"]["Name"].as_str() != Some(name) {
                return Ok(None);
            }
            Ok(Some(parse(&value)))
        }
        Err(EngineError::Daemon { status: 404, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `stored` into the stats config `name` (all its labels: the holder owns
/// them), creating it when missing. Compare-and-set on the version read, retried on
/// a conflict (at most 3 times). Returns the bytes of the labels written.
///
/// Errors: the engine refuses (a worker), keeps conflicting, or is unreachable.
pub async fn write_stored(
    engine: &Engine,
    name: &str,
    stored: &Stored,
) -> Result<usize, EngineError> {
    let labels = labels_of(stored);
    let bytes = labels
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    let mut last = None;
    for _ in 0..3 {
        let path = format!("/configs/{}", segment(name));
        let current = match engine.raw_request(http::Method::GET, &path, None).await {
            Ok(b) => {
                Some(
                    serde_json::from_slice::<Value>(&b).map_err(|e| EngineError::Daemon {
                        status: 200,
                        message: format!("the engine's answer for config {name} is not JSON: {e}"),
                    })?,
                )
            }
            Err(EngineError::Daemon { status: 404, .. }) => None,
            Err(e) => return Err(e),
        };
        let result = match current {
            None => {
                let body = json!({
                    "Name": name,
                    "Labels": labels,
                    "Data": base64::engine::general_purpose::STANDARD.encode(DATA),
                });
                engine
                    .raw_request(
                        http::Method::POST,
                        "/configs/create",
                        Some(body.to_string().into_bytes()),
                    )
                    .await
            }
            Some(v) => {
                let id = v["ID"].as_str().unwrap_or_default().to_string();
                let version = v["Version"]["Index"].as_u64().unwrap_or_default();
                let mut spec = v["Spec"].clone();
                spec["Labels"] = Value::Object(labels.clone());
                engine
                    .raw_request(
                        http::Method::POST,
                        &format!("/configs/{}/update?version={version}", segment(&id)),
                        Some(spec.to_string().into_bytes()),
                    )
                    .await
            }
        };
        match result {
            Ok(_) => return Ok(bytes),
            Err(e)
                if is_out_of_sequence(&e)
                    || matches!(e, EngineError::Daemon { status: 409, .. }) =>
            {
                last = Some(e)
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(EngineError::Daemon {
        status: 409,
        message: format!("the config {name} keeps changing: stats not written"),
    }))
}

/// The holder's writes of the combined reading: at most one every
/// [`PUBLISH_EVERY_SECS`].
#[derive(Debug, Default)]
pub struct Publisher {
    last: Option<f64>,
}

impl Publisher {
    /// Whether a reading made at `now` is due to be written.
    pub fn due(&self, now: f64) -> bool {
        self.last
            .is_none_or(|l| now - l >= PUBLISH_EVERY_SECS || now < l)
    }

    /// Writes `stored` when due. Returns the bytes written (`None`: not due).
    ///
    /// Errors: as [`write_stored`]; the next pass tries again.
    pub async fn publish(
        &mut self,
        engine: &Engine,
        name: &str,
        stored: &Stored,
    ) -> Result<Option<usize>, EngineError> {
        if !self.due(stored.time) {
            return Ok(None);
        }
        let n = write_stored(engine, name, stored).await?;
        self.last = Some(stored.time);
        Ok(Some(n))
    }
}

/// How old a reading made at `time` is at `now`, in whole seconds, for messages
/// (`12s`); a reading from the future (clocks apart) is `0s`.
pub fn age_text(time: f64, now: f64) -> String {
    format!("{}s", (now - time).max(0.0).round() as u64)
}

/// Whether a reading made at `time` is fresh at `now`: at most [`FRESH_SECS`] old,
/// and not more than 5 s in the future (managers' clocks apart).
pub fn fresh(time: f64, now: f64) -> bool {
    time > 0.0 && now - time <= FRESH_SECS && time - now <= 5.0
}

/// Why not every node of a multi-node swarm has an agent serving its tasks' stats
/// (for `rules check`); `None` when every ready node has one, or the swarm has one
/// node. A node has one when a fresh `stored` reading ([`fresh`] at `now`) includes
/// its answer, or when a global service whose command has `--stats-listen` runs a
/// task on it (running, or starting: its health check not passed yet). Any number of
/// such services count together: deploy/stack.yml's `agent` (on the managers) and
/// `collector` (`run --collector`, on the workers).
pub fn missing_agents(
    snap: &crate::swarm::snapshot::Snapshot,
    stored: Option<&Stored>,
    now: f64,
) -> Option<String> {
    use bollard::models::{NodeState, TaskState};
    let live: BTreeMap<&str, String> = snap
        .nodes
        .iter()
        .filter(|n| n.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY))
        .filter_map(|n| {
            let id = n.id.as_deref()?;
            Some((id, crate::metrics::engine::hostname(snap, id)))
        })
        .collect();
    if live.len() <= 1 {
        return None;
    }
    let mut covered: BTreeSet<&str> = BTreeSet::new();
    if let Some(st) = stored.filter(|st| fresh(st.time, now)) {
        covered.extend(st.nodes.iter().map(String::as_str));
    }
    let collectors: BTreeSet<&str> = snap
        .services
        .iter()
        .filter(|s| crate::cmd::status::Mode::of(s) == crate::cmd::status::Mode::Global)
        .filter(|s| {
            let c = s
                .spec
                .as_ref()
                .and_then(|x| x.task_template.as_ref())
                .and_then(|t| t.container_spec.as_ref());
            c.into_iter()
                .flat_map(|c| c.args.iter().flatten().chain(c.command.iter().flatten()))
                .any(|a| a.starts_with("--stats-listen"))
        })
        .filter_map(|s| s.id.as_deref())
        .collect();
    covered.extend(
        snap.tasks
            .iter()
            .filter(|t| {
                t.service_id
                    .as_deref()
                    .is_some_and(|id| collectors.contains(id))
            })
            // Starting: running, its health check not passed yet.
            .filter(|t| {
                matches!(
                    t.status.as_ref().and_then(|s| s.state),
                    Some(TaskState::RUNNING | TaskState::STARTING)
                )
            })
            .filter_map(|t| t.node_id.as_deref()),
    );
    let mut without: Vec<&str> = live
        .iter()
        .filter(|(id, _)| !covered.contains(**id))
        .map(|(_, h)| h.as_str())
        .collect();
    without.sort_by(|a, b| crate::render::natural_cmp(a, b));
    if without.is_empty() {
        return None;
    }
    let shown: Vec<String> = without
        .iter()
        .take(8)
        .map(|h| crate::render::printable(h))
        .collect();
    Some(format!(
        "an agent on every node: this swarm has {} ready nodes and {} of them ({}{}) run no agent serving its tasks' stats (no task of a global service with --stats-listen there, such as deploy/stack.yml's `agent` on the managers and `collector` on the workers, and no fresh reading of theirs), so engine:// measures only some tasks and plan, apply and run hold every scale-down on that partial data; deploy the agent with deploy/stack.yml (docs/agent.md, Engine stats from every node)",
        live.len(),
        without.len(),
        shown.join(", "),
        if without.len() > 8 { ", …" } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn freshness_and_publishing_cadence() {
        let now = 1_800_000_000.0;
        assert!(fresh(now - 59.0, now));
        assert!(!fresh(now - 61.0, now));
        assert!(fresh(now + 4.0, now));
        assert!(!fresh(now + 6.0, now), "a clock far ahead is not trusted");
        assert!(!fresh(0.0, now));
        assert_eq!(age_text(now - 12.4, now), "12s");
        let p = Publisher { last: Some(now) };
        assert!(!p.due(now + 4.9));
        assert!(p.due(now + 5.0));
        assert!(p.due(now - 1.0), "a clock set back writes again");
        assert!(Publisher::default().due(now));
    }
}
