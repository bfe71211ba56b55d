//! Metric sources: what a rule's `microscale.metric` URI reads (issue 5, in progress).
//!
//! Each source module exposes
//! `pub async fn read(uri: &str, secret: Option<&str>, timeout: Duration) -> Result<Sample, String>`:
//! `uri` is the whole metric URI (`redis://…`), `secret` the password or token read
//! from the file or environment variable the rule names (never from the label
//! text), and `timeout` bounds the whole read. Errors are one line that says what
//! failed, where, and how to fix it, with no secret in it.

pub mod engine;
pub mod http_json;
pub mod nats;
pub mod nsq;
pub mod prometheus;
pub mod rabbitmq;
pub mod redis;
mod web;

use serde::Serialize;

/// One reading of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// The value; 0 is a real zero (an empty queue), never "unreadable".
    pub value: f64,
    /// Its unit: `messages`, `entries`, `requests/s`, `percent`, or `""` when the
    /// source cannot say.
    pub unit: &'static str,
}

use std::collections::BTreeSet;
use std::time::Duration;

/// A [`Sample`] and when it was read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
    /// When the source answered.
    pub time: jiff::Timestamp,
}

/// Largest secret file read, in bytes.
const MAX_SECRET_BYTES: u64 = 64 << 10;

/// Where a source may connect: the `--metric-allow` list, else the swarm's own
/// service names and loopback.
#[derive(Debug, Clone, Default)]
pub struct Allow {
    /// `--metric-allow` entries: `HOST` or `HOST:PORT`, lower case. When not empty,
    /// only these are allowed.
    pub listed: Vec<String>,
    /// The swarm's service names (also allowed as `tasks.NAME`), used when `listed`
    /// is empty.
    pub services: BTreeSet<String>,
}

impl Allow {
    /// Parses `--metric-allow HOST[:PORT],...` values. Errors: an entry with a scheme,
    /// a path, blanks or a bad port.
    pub fn parse(values: &[String], services: BTreeSet<String>) -> Result<Allow, String> {
        let mut listed = vec![];
        if values
            .iter()
            .any(|v| v.split(',').all(|e| e.trim().is_empty()))
        {
            return Err(
                "invalid argument \"\" for \"--metric-allow\" flag: give HOST or HOST:PORT, comma-separated; leave the flag out for the default (the swarm's services and loopback)".into(),
            );
        }
        for v in values.iter().flat_map(|v| v.split(',')) {
            let v = v.trim().to_ascii_lowercase();
            if v.is_empty() {
                continue;
            }
            if v.contains('*') {
                return Err(format!(
                    "invalid argument \"{v}\" for \"--metric-allow\" flag: wildcards are not supported; list each HOST or HOST:PORT"
                ));
            }
            let (host, port) = split_host_port(&v);
            let bad = v.contains("://")
                || v.contains('/')
                || v.chars().any(|c| c.is_whitespace() || c.is_control())
                || host.is_empty()
                || port.is_some_and(|p| p.parse::<u16>().is_err());
            if bad {
                return Err(format!(
                    "invalid argument \"{v}\" for \"--metric-allow\" flag: give HOST or HOST:PORT, comma-separated (no scheme, no path)"
                ));
            }
            listed.push(v);
        }
        Ok(Allow { listed, services })
    }

    /// Whether a source may connect to `host` (`port` when known). Errors say why
    /// not and how to allow it.
    pub fn check(&self, host: &str, port: Option<u16>) -> Result<(), String> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if self.listed.is_empty() {
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            let service = self.services.contains(&host)
                || host
                    .strip_prefix("tasks.")
                    .is_some_and(|s| self.services.contains(s));
            if loopback || service {
                return Ok(());
            }
            return Err(format!(
                "{host} is not allowed: by default metrics are read only from the swarm's own services and loopback; allow it with --metric-allow {host}{}",
                port.map(|p| format!(":{p}")).unwrap_or_default()
            ));
        }
        let ok = self.listed.iter().any(|e| {
            let (h, p) = split_host_port(e);
            h == host && p.is_none_or(|p| Some(p) == port.map(|x| x.to_string()).as_deref())
        });
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{host}{} is not in --metric-allow ({})",
                port.map(|p| format!(":{p}")).unwrap_or_default(),
                self.listed.join(",")
            ))
        }
    }
}

/// `host[:port]` split; IPv6 in brackets keeps its colons.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (s, None),
    }
}

/// A metric URI taken apart: scheme, host, port, and the URI without the secret
/// parameters (what the source reads), plus where the secret is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Lower-case scheme, e.g. `redis`.
    pub scheme: String,
    /// Host (empty for `engine://`).
    pub host: String,
    /// Port, when written.
    pub port: Option<u16>,
    /// The URI without `secret-file`/`secret-env`.
    pub uri: String,
    /// `secret-file=` value.
    pub secret_file: Option<String>,
    /// `secret-env=` value.
    pub secret_env: Option<String>,
}

/// Parses a metric URI. Errors: no `scheme://`, a password in the URI (secrets come
/// from files or variables), bad port.
pub fn parse_target(uri: &str) -> Result<Target, String> {
    let uri = uri.trim();
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err("not a metric URI: expected SCHEME://HOST…".into());
    };
    let scheme = scheme.to_ascii_lowercase();
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    // A password as a person meant it counts too (`redis://app:12/34@queue/0` parses
    // as host `app`, port 12): the decision of crate::redact::split_userinfo.
    let meant = crate::redact::split_userinfo(rest).is_some_and(|(at, _)| rest[..at].contains(':'));
    if userinfo.is_some_and(|u| u.contains(':')) || meant {
        return Err(
            "a password in the metric URI: put it in a file (a Docker secret) or an environment variable, and name that with the query parameter secret-file or secret-env (docs/metrics.md)".into(),
        );
    }
    let (host, port) = split_host_port(hostport);
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("bad port {p:?} in the metric URI"))?,
        ),
        None => None,
    };
    // Take the secret parameters out of the query.
    let (before_query, query_and_fragment) = match uri.split_once('?') {
        Some((b, q)) => (b.to_string(), Some(q)),
        None => (uri.to_string(), None),
    };
    let mut secret_file = None;
    let mut secret_env = None;
    let mut kept = vec![];
    let mut fragment = String::new();
    if let Some(qf) = query_and_fragment {
        let (q, f) = match qf.split_once('#') {
            Some((q, f)) => (q, format!("#{f}")),
            None => (qf, String::new()),
        };
        fragment = f;
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("secret-file", v)) => secret_file = Some(crate::redact::percent_decode(v)),
                Some(("secret-env", v)) => secret_env = Some(crate::redact::percent_decode(v)),
                _ => kept.push(pair),
            }
        }
    }
    if let Some(path) = &secret_file {
        check_secret_file(path)?;
    }
    if let Some(name) = &secret_env {
        check_secret_env(name)?;
    }
    let uri = if kept.is_empty() {
        format!("{before_query}{fragment}")
    } else {
        format!("{before_query}?{}{fragment}", kept.join("&"))
    };
    Ok(Target {
        scheme,
        host: host.to_string(),
        port,
        uri,
        secret_file,
        secret_env,
    })
}

/// Where `secret-file=` may point: Docker secrets (`/run/secrets/`), plus the
/// directories the operator lists in `MICROSCALE_SECRET_DIRS` (colon-separated). A
/// rule comes from a service label, which anyone who deploys a service can set: it
/// must not be able to make the reader send any file it can read to a metric host.
pub fn secret_dirs() -> Vec<std::path::PathBuf> {
    let mut dirs = vec![std::path::PathBuf::from("/run/secrets")];
    if let Ok(extra) = std::env::var("MICROSCALE_SECRET_DIRS") {
        dirs.extend(
            extra
                .split(':')
                .filter(|d| d.starts_with('/'))
                .map(std::path::PathBuf::from),
        );
    }
    dirs
}

fn check_secret_file(path: &str) -> Result<(), String> {
    use std::path::{Component, Path};
    let p = Path::new(path);
    let plain = p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let dirs = secret_dirs();
    if plain && dirs.iter().any(|d| p.starts_with(d) && p != d) {
        return Ok(());
    }
    Err(format!(
        "secret-file={path} is outside the secret directories ({}): a rule may only name a Docker secret (/run/secrets/NAME), or a file in a directory the operator lists in MICROSCALE_SECRET_DIRS",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The prefix `secret-env=` names must have, unless listed in `MICROSCALE_SECRET_ENV`.
pub const SECRET_ENV_PREFIX: &str = "MICROSCALE_SECRET_";

fn check_secret_env(name: &str) -> Result<(), String> {
    let listed = std::env::var("MICROSCALE_SECRET_ENV")
        .map(|l| l.split(',').any(|n| n.trim() == name))
        .unwrap_or(false);
    if (name.starts_with(SECRET_ENV_PREFIX) && name.len() > SECRET_ENV_PREFIX.len()) || listed {
        return Ok(());
    }
    Err(format!(
        "secret-env={name}: a rule may only name environment variables whose names start with {SECRET_ENV_PREFIX} (or that the operator lists in MICROSCALE_SECRET_ENV), so that a service label cannot read the agent's other variables"
    ))
}

/// The secret a target names: the file's contents (trailing newline removed), or the
/// environment variable's value. Errors say which file or variable and why.
pub fn secret(target: &Target) -> Result<Option<String>, String> {
    if let Some(path) = &target.secret_file {
        let bytes = crate::fsutil::read_regular(std::path::Path::new(path), MAX_SECRET_BYTES, true)
            .map_err(|e| format!("cannot read the secret file {path}: {e}"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("the secret file {path} is not UTF-8 text"))?;
        return Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()));
    }
    if let Some(name) = &target.secret_env {
        return match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(_) => Err(format!(
                "the environment variable {name} (secret-env) is not set for docker-microscale"
            )),
        };
    }
    Ok(None)
}

/// How long one metric read may take, by default (seconds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_named_never_written() {
        let t =
            parse_target("redis://queue:6379/0?list=jobs&secret-file=/run/secrets/redis").unwrap();
        assert_eq!(t.uri, "redis://queue:6379/0?list=jobs");
        assert_eq!(t.secret_file.as_deref(), Some("/run/secrets/redis"));
        assert_eq!((t.host.as_str(), t.port), ("queue", Some(6379)));
        let e = parse_target("redis://:hunter2@queue:6379/0?list=jobs").unwrap_err();
        assert!(e.contains("secret-file") && !e.contains("hunter2"), "{e}");
        let t =
            parse_target("http://svc:8080/stats?secret-env=MICROSCALE_SECRET_TOKEN#/queue/depth")
                .unwrap();
        assert_eq!(t.uri, "http://svc:8080/stats#/queue/depth");
        assert_eq!(t.secret_env.as_deref(), Some("MICROSCALE_SECRET_TOKEN"));
        assert!(parse_target("redis://q:99999/0").is_err());
    }

    /// Issue 13 item 5: a password a URL parser reads as a port and a path.
    #[test]
    fn a_password_a_url_parser_misreads_is_refused() {
        for uri in [
            "redis://app:12/34@queue:6379/0?list=jobs",
            "http://ci:1234/5678@prom.example:9090/api",
        ] {
            let e = parse_target(uri).unwrap_err();
            assert!(
                e.contains("secret-file") && !e.contains("34"),
                "{uri} -> {e}"
            );
        }
        let t = parse_target("http://prom.example:9090/u/@scope").unwrap();
        assert_eq!(t.host, "prom.example");
    }

    #[test]
    fn secret_files_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        // Reading, once a target passed parse_target's checks (a temporary file
        // stands in for /run/secrets/NAME).
        let mut t = parse_target("redis://q/0?list=a&secret-file=/run/secrets/x").unwrap();
        t.secret_file = Some(f.display().to_string());
        assert_eq!(secret(&t).unwrap().as_deref(), Some("s3cret"));
        let t = parse_target("redis://q/0?list=a&secret-env=MICROSCALE_SECRET_TEST_NO_SUCH_VAR")
            .unwrap();
        assert!(
            secret(&t)
                .unwrap_err()
                .contains("MICROSCALE_SECRET_TEST_NO_SUCH_VAR")
        );
        let t = parse_target("redis://q/0?list=a&secret-file=/run/secrets/nonexistent").unwrap();
        assert!(secret(&t).unwrap_err().contains("/run/secrets/nonexistent"));
    }

    #[test]
    fn only_the_swarm_and_loopback_by_default() {
        let services: BTreeSet<String> = ["queue".to_string()].into();
        let a = Allow::parse(&[], services.clone()).unwrap();
        assert!(a.check("queue", Some(6379)).is_ok());
        assert!(a.check("tasks.queue", None).is_ok());
        assert!(a.check("127.0.0.1", Some(1)).is_ok());
        assert!(a.check("[::1]", None).is_ok());
        assert!(a.check("localhost", None).is_ok());
        let e = a.check("169.254.169.254", Some(80)).unwrap_err();
        assert!(e.contains("--metric-allow 169.254.169.254:80"), "{e}");
        let a = Allow::parse(&["prom.example:9090,redis".into()], services).unwrap();
        assert!(a.check("prom.example", Some(9090)).is_ok());
        assert!(a.check("prom.example", Some(9091)).is_err());
        assert!(a.check("redis", Some(1)).is_ok());
        assert!(
            a.check("queue", Some(6379)).is_err(),
            "a list replaces the default"
        );
        assert!(Allow::parse(&["http://x".into()], BTreeSet::new()).is_err());
        assert!(Allow::parse(&["x:99999".into()], BTreeSet::new()).is_err());
    }
}

/// Reads the metric at `uri` once: checks the host against `allow`, reads the secret
/// the URI names, and asks the source, all within `timeout`.
///
/// Errors: one line that says what failed and how to fix it (a host that is not
/// allowed, a secret that cannot be read, the source's own error, no answer within
/// the timeout). Never contains a secret.
pub async fn read(uri: &str, allow: &Allow, timeout: Duration) -> Result<Measured, String> {
    let target = parse_target(uri)?;
    if target.scheme != "engine" {
        allow.check(&target.host, target.port)?;
    }
    let secret = secret(&target)?;
    let shown = crate::redact::redact_value(&target.uri);
    let read = read_source(&target, secret.as_deref(), timeout);
    match tokio::time::timeout(timeout + Duration::from_millis(500), read).await {
        Ok(Ok(sample)) => Ok(Measured {
            value: sample.value,
            unit: sample.unit,
            time: jiff::Timestamp::now(),
        }),
        Ok(Err(e)) => Err(crate::render::printable(&crate::redact::redact_value(&e))),
        Err(_) => Err(format!(
            "no answer from {shown} within {} seconds",
            timeout.as_secs_f64()
        )),
    }
}

/// Dispatches to the source of `target.scheme`.
async fn read_source(
    target: &Target,
    secret: Option<&str>,
    timeout: Duration,
) -> Result<Sample, String> {
    match target.scheme.as_str() {
        "redis" | "rediss" => redis::read(&target.uri, secret, timeout).await,
        "prometheus" => prometheus::read(&target.uri, secret, timeout).await,
        "http" | "https" => http_json::read(&target.uri, secret, timeout).await,
        "rabbitmq" => rabbitmq::read(&target.uri, secret, timeout).await,
        "nats" => nats::read(&target.uri, secret, timeout).await,
        "nsq" => nsq::read(&target.uri, secret, timeout).await,
        "engine" => Err("engine:// measures a service's own tasks: it is read for a rule (plan, status --metrics), not alone".into()),
        other => Err(format!(
            "the {other}:// metric source is not available in this version yet"
        )),
    }
}

/// The output of `docker microscale metric --format json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricLine {
    /// The metric URI (secrets masked).
    source: String,
    /// The value.
    value: f64,
    /// Its unit.
    unit: &'static str,
    /// When it was read, RFC 3339.
    time: String,
}

/// Runs `docker microscale metric SOURCE`: reads one source once and prints the value.
///
/// Exit 1 with the reason when the source cannot be read within the timeout, or its
/// host is not allowed.
pub async fn run(
    engine: &crate::engine::Engine,
    args: &crate::cli::MetricArgs,
) -> Result<crate::exit::Exit, crate::exit::Failure> {
    use crate::exit::{Failure, print_stdout_async};
    use crate::render::Format;
    let format = Format::parse(args.format.as_deref(), crate::render::fields::METRIC)
        .map_err(Failure::Usage)?;
    let timeout = match args.timeout.as_deref() {
        None => DEFAULT_TIMEOUT,
        Some(t) => humantime::parse_duration(t.trim())
            .ok()
            .filter(|d| !d.is_zero() && *d <= Duration::from_secs(3600))
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "invalid argument \"{t}\" for \"--timeout\" flag: a duration from 1ms to 1h, such as 5s or 500ms"
                ))
            })?,
    };
    // The default allow-list needs the swarm's service names; without --metric-allow
    // and without an engine, only loopback is allowed.
    let services = if args.metric_allow.is_empty() {
        match engine
            .within_deadline(
                engine
                    .docker
                    .list_services(None::<bollard::query_parameters::ListServicesOptions>),
            )
            .await
        {
            Ok(Ok(list)) => list
                .iter()
                .filter_map(|s| s.spec.as_ref()?.name.clone())
                .collect(),
            _ => BTreeSet::new(),
        }
    } else {
        BTreeSet::new()
    };
    let allow = Allow::parse(&args.metric_allow, services).map_err(Failure::Usage)?;
    let shown = crate::redact::redact_value(args.source.trim());
    let sample = read(&args.source, &allow, timeout)
        .await
        .map_err(|e| Failure::Error(format!("cannot read {shown}: {e}")))?;
    let line = MetricLine {
        source: shown,
        value: sample.value,
        unit: sample.unit,
        time: sample.time.to_string(),
    };
    let text = format.render(&[line], |_| match sample.unit {
        "" => format!("{}\n", sample.value),
        unit => format!("{} {unit}\n", sample.value),
    })?;
    print_stdout_async(text).await
}

#[cfg(test)]
mod format_fields_tests {
    use super::*;

    #[test]
    fn metric_fields_are_the_json_keys() {
        let line = MetricLine {
            source: "redis://x".into(),
            value: 1.0,
            unit: "",
            time: "2020-01-01T00:00:00Z".into(),
        };
        crate::render::fields::assert_fields_match(&crate::render::fields::METRIC, &line, &[]);
    }

    #[test]
    fn secrets_only_from_secret_places() {
        for bad in [
            "redis://q/0?list=a&secret-file=/etc/shadow",
            "redis://q/0?list=a&secret-file=/run/secrets/../../etc/passwd",
            "redis://q/0?list=a&secret-file=/run/secrets",
            "redis://q/0?list=a&secret-file=run/secrets/x",
            "http://h/x?secret-env=HOME#/a",
            "http://h/x?secret-env=MICROSCALE_SECRET_#/a",
        ] {
            let e = parse_target(bad).unwrap_err();
            assert!(e.contains("secret"), "{bad}: {e}");
        }
        assert!(parse_target("redis://q/0?list=a&secret-file=/run/secrets/redis").is_ok());
    }
}
