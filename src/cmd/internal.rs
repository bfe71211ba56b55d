//! The hidden commands that tests, benchmarks and the stack file's health check
//! use: `__healthz`, `__lease`, `__history-bench`, `__stats-read`.

use crate::agent::serve::{Target, exchange, parse_target};
use crate::decide::History;
use crate::engine::service::segment;
use crate::engine::{Engine, EngineError};
use crate::metrics::nodes::{Owners, Peers, Token, read_owners, read_peers};
use crate::store::history::{
    Entry, REFRESH_SECS, bench_id, decide_cpu_millis, encode_all, fingerprint, read, worst_entry,
    write,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::HashSet;
use std::time::Duration;

/// `docker-microscale __healthz [ADDR] [--timeout D]`: `GET /healthz` on a running
/// agent, for a container health check without a shell. By default it asks the
/// agent's health socket ([`default_socket`]), which slow network clients cannot
/// crowd out; `unix:///PATH` (or `/PATH`) asks another socket, and a `--listen`
/// address (`:9090`, `127.0.0.1:9090`; an all-interfaces address is asked on
/// loopback) asks over TCP. Prints the answer and exits 0 on 200; anything else,
/// or no whole answer within `--timeout` (default 5s, connecting included), is an
/// error that says what was asked and what came back (exit 1). Bad arguments exit
/// 125.
pub fn healthcheck(
    args: &crate::cli::HealthzArgs,
) -> Result<crate::edge::exit::Exit, crate::edge::exit::Failure> {
    use crate::edge::exit::Failure;
    let target = parse_target(args.addr.as_deref()).map_err(Failure::Usage)?;
    let timeout = match args.timeout.as_deref() {
        None => Duration::from_secs(5),
        Some(t) => humantime::parse_duration(t.trim())
            .ok()
            .filter(|d| !d.is_zero() && *d <= Duration::from_secs(3600))
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "invalid argument \"{t}\" for \"--timeout\" flag: a duration up to 1h, such as 5s"
                ))
            })?,
    };
    let fail = |what: String| Failure::Error(format!("unhealthy: {what}"));
    let hint = match &target {
        Target::Unix(_) => "is the agent running, in this container, with this --health-socket?",
        Target::Tcp(_) => "is the agent running with this --listen address?",
    };
    // The whole exchange, connecting included, on a thread of its own: a unix
    // connect has no timeout of its own (it waits while the backlog is full).
    let (tx, rx) = std::sync::mpsc::channel();
    let asked = target.clone();
    std::thread::spawn(move || {
        let result = match &asked {
            Target::Unix(path) => std::os::unix::net::UnixStream::connect(path)
                .map_err(|e| (true, e))
                .and_then(|s| {
                    let _ = s.set_read_timeout(Some(timeout));
                    let _ = s.set_write_timeout(Some(timeout));
                    exchange(s).map_err(|e| (false, e))
                }),
            Target::Tcp(addr) => std::net::TcpStream::connect_timeout(addr, timeout)
                .map_err(|e| (true, e))
                .and_then(|s| {
                    let _ = s.set_read_timeout(Some(timeout));
                    let _ = s.set_write_timeout(Some(timeout));
                    exchange(s).map_err(|e| (false, e))
                }),
        };
        let _ = tx.send(result);
    });
    let text = match rx.recv_timeout(timeout) {
        Ok(Ok(text)) => text,
        Ok(Err((true, e))) => {
            return Err(fail(format!(
                "cannot reach the agent's /healthz on {target}: {e} ({hint})"
            )));
        }
        Ok(Err((false, e))) => {
            return Err(fail(format!(
                "no answer from {target}/healthz within {timeout:?}: {e}"
            )));
        }
        Err(_) => {
            return Err(fail(format!(
                "no answer from {target}/healthz within {timeout:?} ({hint})"
            )));
        }
    };
    let status = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    if status == "200" {
        return crate::edge::exit::print_stdout(&format!(
            "{}\n",
            crate::edge::text::printable(&body)
        ));
    }
    let status = if status.is_empty() {
        "nothing usable".to_string()
    } else {
        crate::edge::text::printable(&status)
    };
    Err(fail(format!(
        "{target}/healthz answered {status}: {}",
        crate::edge::text::printable(body.lines().next().unwrap_or_default())
    )))
}

/// `__history-bench`: writes a history of `services` steady services (one
/// recommendation each), then of as many worst-case ones, to the config `name` on
/// the engine, five times each, and prints one JSON line: bytes and median
/// milliseconds of a write, of a read, and the CPU milliseconds of a pass that
/// writes nothing (encoding and comparing every entry). The config is removed at
/// the end.
pub async fn history_bench(
    engine: &Engine,
    args: &crate::cli::HistoryBenchArgs,
) -> Result<crate::edge::exit::Exit, crate::edge::exit::Failure> {
    use crate::edge::exit::Failure;
    use std::time::Instant;
    let fail = |e: EngineError| Failure::Error(e.to_string());
    let now = crate::edge::clock::wall_clock();
    let ids: Vec<String> = (0..args.services).map(bench_id).collect();
    let present: HashSet<String> = ids.iter().cloned().collect();
    let steady: BTreeMap<String, Entry> = ids
        .iter()
        .map(|id| {
            let mut h = History::default();
            h.recommendations_mut().push_back((now, 3).into());
            (
                id.clone(),
                Entry {
                    history: h,
                    set: Some(3),
                },
            )
        })
        .collect();
    let worst: BTreeMap<String, Entry> = ids
        .iter()
        .map(|id| (id.clone(), worst_entry(now)))
        .collect();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut report = serde_json::Map::new();
    report.insert("Services".into(), json!(args.services));
    for (label, entries) in [("Steady", &steady), ("Worst", &worst)] {
        let started = Instant::now();
        let ours = encode_all(entries);
        let prints: usize = ours.values().map(|t| fingerprint(t).len()).sum();
        let cpu = started.elapsed().as_secs_f64() * 1000.0;
        let mut times = vec![];
        let mut bytes = 0;
        for _ in 0..5 {
            let t = Instant::now();
            bytes = write(
                engine,
                &args.name,
                "bench",
                Some(REFRESH_SECS),
                now,
                &ours,
                &present,
            )
            .await
            .map_err(fail)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let mut reads = vec![];
        for _ in 0..5 {
            let t = Instant::now();
            let stored = read(engine, &args.name).await.map_err(fail)?;
            reads.push(t.elapsed().as_secs_f64() * 1000.0);
            if stored.entries.len() != args.services || !stored.bad.is_empty() {
                return Err(Failure::Error(format!(
                    "read back {} entries ({} bad) of {}",
                    stored.entries.len(),
                    stored.bad.len(),
                    args.services
                )));
            }
        }
        report.insert(
            label.into(),
            json!({
                "Bytes": bytes,
                "WriteMillis": median(times),
                "ReadMillis": median(reads),
                "EncodeCompareCpuMillis": cpu,
                "FingerprintBytes": prints,
            }),
        );
    }
    let _ = engine
        .raw_request(
            http::Method::DELETE,
            &format!("/configs/{}", segment(&args.name)),
            None,
        )
        .await;
    report.insert(
        "DecideCpuMillis".into(),
        json!(decide_cpu_millis(&worst, now)),
    );
    crate::edge::exit::print_stdout_async(Value::Object(report).to_string() + "\n").await
}

/// `docker-microscale __stats-read`: reads every peer as the lease holder does (all
/// tasks, no service filter), `--runs` times one after the other, and prints one
/// JSON line per read: `{"Run": 1, "Millis": 1234.5, "Asked": 5, "Nodes": 5,
/// "Verified": 5, "Tasks": 12, "Failures": []}` (addresses asked, nodes that
/// answered, how many of them answered from an address Swarm gives that node, their
/// tasks). The [`Owners`] come from `engine` (`GET /tasks`, `GET /nodes`), as the
/// holder's do; when it cannot be read, every answer is unverified. For
/// scripts/bench and the multinode tests, from inside an agent's container (its
/// network, its token, its node's engine).
///
/// Errors: bad peers or token file (usage), no node answered in any read.
pub async fn stats_read(
    engine: &Engine,
    args: &crate::cli::StatsReadArgs,
) -> Result<crate::edge::exit::Exit, crate::edge::exit::Failure> {
    use crate::edge::exit::Failure;
    let peers = Peers::parse(&args.peers).map_err(Failure::Usage)?;
    let token = Token::read(&args.token_file).map_err(Failure::Usage)?;
    let owners = match engine.snapshot(&Default::default()).await {
        Ok(snap) => read_owners(engine, &snap).await,
        Err(_) => Owners::new(),
    };
    let mut answered = false;
    let mut out = String::new();
    for run in 1..=args.runs.max(1) {
        let start = std::time::Instant::now();
        let got = read_peers(
            &peers,
            &token,
            &BTreeSet::new(),
            Duration::from_secs(10),
            &owners,
        )
        .await;
        let millis = start.elapsed().as_secs_f64() * 1000.0;
        answered |= !got.nodes.is_empty();
        out += &format!(
            "{}\n",
            json!({
                "Run": run,
                "Millis": (millis * 10.0).round() / 10.0,
                "Asked": got.asked,
                "Nodes": got.nodes.len(),
                "Verified": got.verified,
                "Tasks": got.nodes.values().map(|n| n.tasks.len()).sum::<usize>(),
                "Failures": got.failures,
            })
        );
    }
    crate::edge::exit::print_stdout(&out)?;
    if answered {
        Ok(crate::edge::exit::Exit::Ok)
    } else {
        Err(Failure::Error(format!(
            "no agent answered at {}",
            peers.text()
        )))
    }
}
