//! Engine stats of every node, read from the other nodes' stats endpoints
//! (`GET /v1/stats`, served by `crate::agent::stats`): the shared token, the peers
//! named by the operator, and which node each answer may speak for (Swarm's own
//! record of task and node addresses). See docs/agent.md, "Engine stats from every node".

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::Digest;

use crate::engine::Engine;
use crate::engine::service::segment;
use crate::metrics::engine::{MAX_TASKS, NodeStats};

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
        let shown = crate::edge::text::printable(&path.display().to_string());
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
                    crate::edge::text::ellipsize(&crate::edge::text::printable(v), 80)
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
    let shown = |id: &str| crate::edge::text::ellipsize(&crate::edge::text::printable(id), 64);
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
            crate::edge::text::ellipsize(
                &crate::edge::text::printable(first.lines().next().unwrap_or_default()),
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

/// The shortest token accepted, in bytes: a guessable token would open the endpoint.
pub const MIN_TOKEN_BYTES: usize = 16;

/// Largest token file read, in bytes.
const MAX_TOKEN_FILE: u64 = 4096;

/// Largest answer read from a peer (a node's stats of [`MAX_TASKS`] tasks is about
/// 400 KB).
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Most addresses asked in one read of the peers (after resolving their names).
pub const MAX_PEERS: usize = 512;
/// The path of the stats endpoint.
pub const PATH: &str = "/v1/stats";

/// Most service IDs a request may name (beyond, the reader asks for every task).
pub const MAX_SERVICES_ASKED: usize = 200;
