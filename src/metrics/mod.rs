//! Metric sources: what a rule's `microscale.metric` URI reads (issue 5, in progress).
//!
//! Each source module exposes
//! `pub async fn read(uri: &str, secret: Option<&str>, timeout: Duration) -> Result<Sample, String>`:
//! `uri` is the whole metric URI (`redis://…`), `secret` the password or token read
//! from the file or environment variable the rule names (never from the label
//! text), and `timeout` bounds the whole read. Errors are one line that says what
//! failed, where, and how to fix it, with no secret in it.

pub mod access;
mod address;
#[cfg(test)]
mod address_tests;
pub mod engine;
pub mod http_json;
pub mod nats;
pub mod nodes;
pub mod nsq;
pub mod prometheus;
pub mod rabbitmq;
pub mod range;
pub mod redis;
pub mod tls;
mod web;

use serde::Serialize;

pub use access::Allow;
pub use address::{Endpoint, Host, SecretRef, Target, parse_target};

/// One reading of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// The value; 0 is a real zero (an empty queue), never "unreadable".
    pub value: f64,
    /// Its unit: `messages`, `entries`, `requests/s`, `percent`, or `""` when the
    /// source cannot say.
    pub unit: &'static str,
}

use std::time::Duration;

/// Which running tasks a per-task reading measured: the data the decision needs to
/// treat partial data as HPA treats missing pods, more cautiously (see the module
/// docs, steps 4 and 9).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Coverage {
    /// Running tasks measured (tasks); the reading's value is their average.
    pub measured: u64,
    /// Running tasks of the service when it was measured (tasks on nodes that are
    /// not down).
    pub total: u64,
    /// Where the tasks not measured run, for the reason: node hostnames (node IDs when
    /// the hostname is unknown), sorted, each once.
    pub missing: Vec<String>,
}

impl Coverage {
    /// Whether some running tasks were not measured.
    pub fn partial(&self) -> bool {
        self.measured < self.total
    }

    /// `3 of 5 running tasks measured; not measured: tasks on n4, n5` (at most 8
    /// nodes named).
    pub fn text(&self) -> String {
        let mut line = format!("{} of {} running tasks measured", self.measured, self.total);
        if !self.missing.is_empty() {
            let named: Vec<String> = self
                .missing
                .iter()
                .take(8)
                .map(|n| {
                    n.chars()
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .collect()
                })
                .collect();
            line += &format!("; not measured: tasks on {}", named.join(", "));
            if self.missing.len() > 8 {
                line += &format!(" and {} more nodes", self.missing.len() - 8);
            }
        }
        line
    }
}

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

/// The secret a target names: the file's contents (trailing newline removed), or the
/// environment variable's value.
///
/// The file is resolved first (symbolic links and all) and must still be inside a
/// secret directory ([`secret_dirs`]); it is then opened without following links,
/// and must be a regular file of at most 64 KiB. Errors say which file or variable
/// and why.
pub fn secret(target: &Target) -> Result<Option<String>, String> {
    match &target.secret {
        Some(SecretRef::File(path)) => {
            let shown = crate::edge::text::printable(path);
            let real = address::resolve_secret_file(path)?;
            let bytes = crate::edge::fsutil::read_regular(&real, MAX_SECRET_BYTES, false)
                .map_err(|e| format!("cannot read the secret file {shown}: {e}"))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("the secret file {shown} is not UTF-8 text"))?;
            Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
        }
        Some(SecretRef::Env(name)) => match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(_) => Err(format!(
                "the environment variable {} (secret-env) is not set for docker-microscale",
                crate::edge::text::printable(name)
            )),
        },
        None => Ok(None),
    }
}

/// `text` with every copy of `secret` replaced by `xxxxx`, matched without regard to
/// ASCII case: as sent (also trimmed), percent-encoded, JSON-escaped (as an error
/// that quotes a JSON value shows it), and base64-encoded (bearer and basic
/// credentials, with `user` when the URI names one). A metric server may echo what
/// it was sent (a 401 body, the string at a JSON pointer, a redirect's `Location`),
/// and that text goes to errors and logs.
///
/// Call it on the whole text, before it is cut, joined on one line or escaped:
/// those would change how the secret is spelled.
pub fn scrub(text: &str, secret: &str, user: Option<&str>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut forms: Vec<String> = vec![];
    for s in [secret, secret.trim(), secret.trim_end_matches(['\r', '\n'])] {
        if s.is_empty() {
            continue;
        }
        forms.push(s.to_string());
        let encoded: String = s
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        forms.push(encoded);
        let json = serde_json::to_string(s).unwrap_or_default();
        forms.push(json.trim_matches('"').to_string());
        forms.push(b64.encode(s));
        if let Some(u) = user {
            forms.push(b64.encode(format!("{u}:{s}")));
        }
    }
    // Longest first, so that a form is not half-replaced by a shorter one.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    let mut out = text.to_string();
    for f in forms.iter().filter(|f| !f.is_empty()) {
        out = replace_ignoring_case(&out, f, crate::edge::redact::MASK);
    }
    out
}

/// `text` with every match of `needle` (ASCII case ignored) replaced by `with`.
fn replace_ignoring_case(text: &str, needle: &str, with: &str) -> String {
    let hay = text.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in hay.match_indices(&needle) {
        // ASCII lowering keeps every byte where it was, so `at` is a char boundary
        // of `text` too.
        out.push_str(&text[last..at]);
        out.push_str(with);
        last = at + needle.len();
    }
    out.push_str(&text[last..]);
    out
}

/// For the sources' own tests: reads `uri` with the source `read` from its own host
/// (resolved without the allow-list), and shows an error as [`read`] does.
#[cfg(test)]
pub(crate) async fn test_read<F, Fut>(
    source: F,
    uri: &str,
    secret: Option<&str>,
    timeout: Duration,
) -> Result<Sample, String>
where
    F: FnOnce(String, Endpoint, Option<String>, Duration) -> Fut,
    Fut: std::future::Future<Output = Result<Sample, String>>,
{
    let endpoint = test_endpoint(uri).await?;
    source(
        uri.to_string(),
        endpoint,
        secret.map(str::to_string),
        timeout,
    )
    .await
    .map_err(|e| finish_error(&e, secret, uri))
}

/// For the sources' own tests: `uri` parsed, and its host resolved without the
/// allow-list (the tests read servers on loopback).
#[cfg(test)]
pub(crate) async fn test_endpoint(uri: &str) -> Result<Endpoint, String> {
    let target = parse_target(uri)?;
    let port = target.port_or_default();
    let addrs = match &target.host {
        Host::Ip(ip) => vec![std::net::SocketAddr::new(*ip, port)],
        Host::Name(n) => tokio::net::lookup_host((n.as_str(), port))
            .await
            .map_err(|e| format!("the host {n} does not resolve ({e})"))?
            .collect(),
    };
    Ok(Endpoint {
        host: target.host,
        port,
        addrs,
        tls: Default::default(),
    })
}

/// How long one metric read may take, by default (seconds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the metric at `uri` once: parses it once ([`parse_target`]), checks the
/// host and the secret's binding against `allow`, resolves the host and checks every
/// address ([`Allow::resolve`]), reads the secret, and asks the source, which
/// connects only to those addresses; all within `timeout`.
///
/// Errors: one line that says what failed and how to fix it (a host or address that
/// is not allowed, a secret not bound to the host, a secret that cannot be read, the
/// source's own error, no answer within the timeout). Never contains the secret,
/// even when the server echoes it.
pub async fn read(uri: &str, allow: &Allow, timeout: Duration) -> Result<Measured, String> {
    let target = parse_target(uri)?;
    if target.scheme == "engine" {
        return Err("engine:// measures a service's own tasks: read it for a rule (plan, status --metrics), or with metric --service SERVICE".into());
    }
    let endpoint = allow.resolve(&target, timeout).await?;
    let secret = secret(&target)?;
    let shown = crate::edge::redact::redact_value(&target.uri);
    let read = read_source(&target, &endpoint, secret.as_deref(), timeout);
    match tokio::time::timeout(timeout + Duration::from_millis(500), read).await {
        Ok(Ok(sample)) => Ok(Measured {
            value: sample.value,
            unit: sample.unit,
            time: jiff::Timestamp::now(),
        }),
        Ok(Err(e)) => Err(finish_error(&e, secret.as_deref(), &target.uri)),
        Err(_) => Err(format!(
            "no answer from {shown} within {} seconds",
            timeout.as_secs_f64()
        )),
    }
}

/// A source's error as it is shown: the secret removed from the whole text
/// ([`scrub`]), then one short line, passwords masked and control characters
/// escaped.
fn finish_error(e: &str, secret: Option<&str>, uri: &str) -> String {
    let e = match secret {
        Some(s) => scrub(e, s, user_of(uri).as_deref()),
        None => e.to_string(),
    };
    crate::edge::text::printable(&crate::edge::redact::redact_value(&web::one_line(&e)))
}

/// The user name before `@` in a URI, percent-decoded (for basic-auth forms of the
/// secret).
fn user_of(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (user, _) = authority.rsplit_once('@')?;
    Some(crate::edge::redact::percent_decode(user))
}

/// Dispatches to the source of `target.scheme`, which connects only to `endpoint`.
async fn read_source(
    target: &Target,
    endpoint: &Endpoint,
    secret: Option<&str>,
    timeout: Duration,
) -> Result<Sample, String> {
    match target.scheme.as_str() {
        "redis" | "rediss" => redis::read(&target.uri, endpoint, secret, timeout).await,
        "prometheus" => prometheus::read(&target.uri, endpoint, secret, timeout).await,
        "http" | "https" => http_json::read(&target.uri, endpoint, secret, timeout).await,
        "rabbitmq" => rabbitmq::read(&target.uri, endpoint, secret, timeout).await,
        "nats" => nats::read(&target.uri, endpoint, secret, timeout).await,
        "nsq" => nsq::read(&target.uri, endpoint, secret, timeout).await,
        other => Err(format!(
            "the {other}:// metric source is not available in this version yet"
        )),
    }
}

/// Whether a coverage is partial (some running tasks not measured).
pub(crate) fn notes_needed(c: &Option<crate::metrics::Coverage>) -> bool {
    c.as_ref().is_some_and(|c| c.partial())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn t(uri: &str) -> Target {
        parse_target(uri).unwrap()
    }

    #[test]
    fn secrets_are_named_never_written() {
        let x = t("redis://queue:6379/0?list=jobs&secret-file=/run/secrets/redis");
        assert_eq!(x.uri, "redis://queue:6379/0?list=jobs");
        assert_eq!(x.secret, Some(SecretRef::File("/run/secrets/redis".into())));
        assert_eq!(
            (x.host.clone(), x.port),
            (Host::Name("queue".into()), Some(6379))
        );
        let e = parse_target("redis://:hunter2@queue:6379/0?list=jobs").unwrap_err();
        assert!(e.contains("secret-file") && !e.contains("hunter2"), "{e}");
        let x = t("http://svc:8080/stats?secret-env=MICROSCALE_SECRET_TOKEN#/queue/depth");
        assert_eq!(x.uri, "http://svc:8080/stats#/queue/depth");
        assert_eq!(
            x.secret,
            Some(SecretRef::Env("MICROSCALE_SECRET_TOKEN".into()))
        );
        assert!(parse_target("redis://q:99999/0").is_err());
        let e = parse_target(
            "redis://q/0?list=a&secret-file=/run/secrets/a&secret-env=MICROSCALE_SECRET_B",
        )
        .unwrap_err();
        assert!(e.contains("names a secret twice"), "{e}");
    }

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
        let x = t("http://prom.example:9090/u/@scope");
        assert_eq!(x.host, Host::Name("prom.example".into()));
    }

    #[test]
    fn secret_files_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        // Reading, once a target passed parse_target's checks: the temporary
        // directory is a secret directory here (MICROSCALE_SECRET_DIRS is read by
        // this test's process only through secret_dirs, so a target naming the file
        // directly is built by hand).
        let mut x = t("redis://q/0?list=a&secret-file=/run/secrets/x");
        x.secret = Some(SecretRef::File(f.display().to_string()));
        let e = secret(&x).unwrap_err();
        assert!(e.contains("outside the secret directories"), "{e}");
        let x = t("redis://q/0?list=a&secret-env=MICROSCALE_SECRET_TEST_NO_SUCH_VAR");
        assert!(
            secret(&x)
                .unwrap_err()
                .contains("MICROSCALE_SECRET_TEST_NO_SUCH_VAR")
        );
        let x = t("redis://q/0?list=a&secret-file=/run/secrets/nonexistent");
        assert!(secret(&x).unwrap_err().contains("/run/secrets/nonexistent"));
    }

    #[test]
    fn only_the_swarm_and_loopback_by_default() {
        let services: BTreeSet<String> = ["queue".to_string(), "2852039166".to_string()].into();
        let a = Allow::parse(&[], services.clone()).unwrap();
        for ok in [
            "redis://queue:6379/0",
            "redis://tasks.queue/0",
            "redis://QUEUE./0",
            "http://127.0.0.1:1/#/a",
            "http://[::1]/#/a",
            "http://localhost/#/a",
            "http://2130706433/#/a",
        ] {
            assert!(a.check(&t(ok)).is_ok(), "{ok}");
        }
        let e = a.check(&t("http://169.254.169.254/#/a")).unwrap_err();
        assert!(e.contains("--metric-allow 169.254.169.254:80"), "{e}");
        // A service named like a number is an address, not the service.
        let e = a.check(&t("http://2852039166/#/a")).unwrap_err();
        assert!(
            e.contains("169.254.169.254 is not allowed (the service named 2852039166 is not reached by that name"),
            "{e}"
        );
        let a = Allow::parse(&["prom.example:9090,redis".into()], services).unwrap();
        assert!(
            a.check(&t("prometheus://prom.example:9090?query=x"))
                .is_ok()
        );
        assert!(
            a.check(&t("prometheus://prom.example:9091?query=x"))
                .is_err()
        );
        // No port written: the source's default port is what is checked.
        assert!(a.check(&t("prometheus://prom.example?query=x")).is_err());
        assert!(a.check(&t("redis://redis:1/0")).is_ok());
        // A list adds to the defaults (deploy/stack.yml lists its stack-local alias;
        // every other rule in the swarm must still read).
        for ok in [
            "redis://queue:6379/0",
            "redis://tasks.queue/0",
            "http://127.0.0.1:1/#/a",
        ] {
            assert!(
                a.check(&t(ok)).is_ok(),
                "{ok}: a list replaced the defaults"
            );
        }
        let e = a.check(&t("http://elsewhere:8080/#/a")).unwrap_err();
        assert_eq!(
            e,
            "elsewhere is not allowed: metrics are read only from the swarm's own services, loopback and --metric-allow (prom.example:9090,redis); allow it with --metric-allow elsewhere:8080"
        );
        // --metric-allow-only: the list and nothing else.
        let only = a.clone().only_listed(true).unwrap();
        assert!(
            only.check(&t("prometheus://prom.example:9090?query=x"))
                .is_ok()
        );
        for refused in ["redis://queue:6379/0", "http://127.0.0.1:1/#/a"] {
            let e = only.check(&t(refused)).unwrap_err();
            assert!(
                e.contains("is not in --metric-allow (prom.example:9090,redis), and --metric-allow-only allows nothing else"),
                "{refused}: {e}"
            );
        }
        // ... which needs a list: alone it would allow nothing.
        let e = Allow::parse(&[], BTreeSet::new())
            .unwrap()
            .only_listed(true)
            .unwrap_err();
        assert!(
            e.starts_with("--metric-allow-only needs --metric-allow"),
            "{e}"
        );
        // Reserved addresses still need their exact address listed, list or not.
        let e = a.check(&t("http://169.254.169.254/#/a")).unwrap_err();
        assert!(e.contains("--metric-allow 169.254.169.254:80"), "{e}");
        for bad in ["http://x", "x:99999", "x:0", "a@b", "1.2.3.4.5", "h%41"] {
            assert!(
                Allow::parse(&[bad.into()], BTreeSet::new()).is_err(),
                "{bad}"
            );
        }
        // Entries are read as URI hosts are: a number is an address.
        let a = Allow::parse(&["2130706434".into()], BTreeSet::new()).unwrap();
        assert!(a.check(&t("http://127.0.0.2/#/a")).is_ok());
    }

    #[test]
    fn secrets_go_only_to_the_hosts_they_are_bound_to() {
        let services: BTreeSet<String> = ["queue".to_string(), "evilsink".to_string()].into();
        let a = Allow::parse(&[], services)
            .unwrap()
            .with_secrets(&["redis=queue:6379,tasks.queue".into()])
            .unwrap();
        let ok = "redis://queue:6379/0?list=a&secret-file=/run/secrets/redis";
        assert!(a.check(&t(ok)).is_ok());
        assert!(
            a.check(&t(
                "redis://tasks.queue:7000/0?list=a&secret-file=/run/secrets/redis"
            ))
            .is_ok()
        );
        let e = a
            .check(&t(
                "http://evilsink/collect?secret-file=/run/secrets/redis#/v",
            ))
            .unwrap_err();
        assert!(
            e.contains("to queue:6379,tasks.queue only, so it is not sent to evilsink:80"),
            "{e}"
        );
        let e = a
            .check(&t(
                "redis://queue:6380/0?list=a&secret-file=/run/secrets/redis",
            ))
            .unwrap_err();
        assert!(e.contains("queue:6380"), "{e}");
        let e = a
            .check(&t("redis://queue/0?list=a&secret-file=/run/secrets/other"))
            .unwrap_err();
        assert!(e.contains("--metric-secret other=queue:6379"), "{e}");
        // Without any binding, no secret is sent anywhere.
        let a = Allow::parse(&[], ["queue".to_string()].into()).unwrap();
        assert!(a.check(&t(ok)).is_err());
        // Bindings by variable and by path.
        let a = Allow::parse(&[], ["queue".to_string()].into())
            .unwrap()
            .with_secrets(&[
                "MICROSCALE_SECRET_TOKEN=queue".into(),
                "/run/secrets/x=queue:8080".into(),
            ])
            .unwrap();
        assert!(
            a.check(&t("http://queue/?secret-env=MICROSCALE_SECRET_TOKEN#/a"))
                .is_ok()
        );
        assert!(
            a.check(&t("http://queue:8080/?secret-file=/run/secrets/x#/a"))
                .is_ok()
        );
        for bad in [
            "redis",
            "redis=",
            "=queue",
            "a/b=queue",
            "redis=http://queue",
            "re dis=q",
        ] {
            let e = Allow::default().with_secrets(&[bad.into()]).unwrap_err();
            assert!(e.contains("--metric-secret"), "{bad}: {e}");
        }
    }

    #[test]
    fn binding_mistakes_say_how_to_fix_them() {
        let two = "/s/bad=127.0.0.1:1,/s/redis=127.0.0.1:26399".to_string();
        let e = Allow::default().with_secrets(&[two]).unwrap_err();
        assert!(e.contains("one NAME=HOSTS per flag"), "{e}");
        assert!(e.contains("repeat the flag for each secret"), "{e}");
        // Shown as typed, even through the masking every error line gets.
        let shown = crate::edge::redact::redact_value(&e);
        assert!(shown.contains("/s/redis=127.0.0.1:26399"), "{shown}");
        let e = Allow::default()
            .with_secrets(&["redis=127.0.0.1:99999".into()])
            .unwrap_err();
        assert!(
            e.contains("the port \"99999\" is not a number from 1 to 65535"),
            "{e}"
        );
        let e = Allow::parse(&["queue:6379,pass=word".into()], BTreeSet::new()).unwrap_err();
        assert!(
            e.contains("an entry holds \"=\"") && !e.contains("word"),
            "{e}"
        );
        // The wrong port: the fix is in the message.
        let a = Allow::parse(&[], BTreeSet::new())
            .unwrap()
            .with_secrets(&["redis=127.0.0.1:6379".into()])
            .unwrap();
        let e = a
            .check(&t(
                "redis://127.0.0.1:26399/0?list=a&secret-file=/run/secrets/redis",
            ))
            .unwrap_err();
        assert!(
            e.contains("bind it: --metric-secret redis=127.0.0.1:6379,127.0.0.1:26399"),
            "{e}"
        );
        // A binding by the last name of a file that is no Docker secret.
        let e = a
            .check(&t(
                "redis://127.0.0.1:26399/0?list=a&secret-file=/run/secrets/sub/redis",
            ))
            .unwrap_err();
        assert!(e.contains("for this file, NAME is its path"), "{e}");
    }

    #[test]
    fn numbers_in_every_form_are_addresses() {
        let ip = |s: &str| Host::parse(s).unwrap();
        let meta = Host::Ip([169, 254, 169, 254].into());
        for form in [
            "2852039166",
            "0xa9fea9fe",
            "0XA9FEA9FE",
            "0251.0376.0251.0376",
            "169.254.43518",
            "169.16689662",
            "0xa9.0xfe.0xa9.0xfe",
            "169.254.169.254.",
        ] {
            assert_eq!(ip(form), meta, "{form}");
        }
        assert_eq!(ip("0"), Host::Ip([0, 0, 0, 0].into()));
        assert_eq!(ip("017700000001"), Host::Ip([127, 0, 0, 1].into()));
        assert_eq!(
            ip("[::ffff:169.254.169.254]").ip(),
            Some(meta.ip().unwrap())
        );
        for bad in [
            "256.1.1.1",
            "1.2.3.4.5",
            "08",
            "0x1.0x1g2.3",
            "1..2",
            "a b",
            "h%41",
            "é.de",
            "",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ip("Queue."), Host::Name("queue".into()));
        assert_eq!(ip("1a.example"), Host::Name("1a.example".into()));
        // Not a number to WHATWG nor inet_aton: a name.
        assert_eq!(ip("0x1g"), Host::Name("0x1g".into()));
        assert_eq!(ip("0x"), Host::Ip([0, 0, 0, 0].into()));
    }

    #[test]
    fn the_address_checked_is_the_address_connected() {
        // ::a.b.c.d is an IPv6 address of its own (a socket connects to it over
        // IPv6), not a.b.c.d; ::ffff:a.b.c.d is a.b.c.d.
        let a = Allow::parse(&[], BTreeSet::new()).unwrap();
        assert!(a.check(&t("http://[::127.0.0.1]:8080/#/v")).is_err());
        assert!(a.check(&t("http://[::ffff:127.0.0.1]:8080/#/v")).is_ok());
        let a = Allow::parse(&["10.0.0.5".into()], BTreeSet::new()).unwrap();
        assert!(a.check(&t("http://[::10.0.0.5]:8080/#/v")).is_err());
        assert!(a.check(&t("http://[::ffff:10.0.0.5]:8080/#/v")).is_ok());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt
            .block_on(a.resolve(
                &t("http://[::ffff:10.0.0.5]:8080/#/v"),
                Duration::from_secs(1),
            ))
            .unwrap();
        assert_eq!(e.host, Host::Ip([10, 0, 0, 5].into()));
        assert_eq!(e.addrs, vec!["10.0.0.5:8080".parse().unwrap()]);
        // NAT64 of a link-local address is link-local.
        let nat64: std::net::IpAddr = "64:ff9b::a9fe:a9fe".parse().unwrap();
        assert!(address::reserved(nat64).is_some());
        assert!(address::reserved("64:ff9b::a00:5".parse().unwrap()).is_none());
    }

    #[test]
    fn one_parser_one_host() {
        // The backslash: http reads it as /, so the host would be the first one.
        for uri in [
            "http://169.254.169.254\\@127.0.0.1/latest/meta-data?secret-file=/run/secrets/redis#/v",
            "https://169.254.169.254\\@localhost/x#/v",
            "redis://169.254.169.254\\@127.0.0.1/0?list=a",
            "http://127.0.0.1/a\\b#/v",
        ] {
            let e = parse_target(uri).unwrap_err();
            assert!(e.contains("a \\ in the metric URI"), "{uri}: {e}");
        }
        // A \ in the query (a PromQL regex) is fine.
        assert!(parse_target("prometheus://p:9090?query=up{job=~\"a\\\\.b\"}").is_ok());
        // Percent-encoding and blanks in the host.
        for uri in [
            "http://%31%32%37.0.0.1/#/v",
            "http://127.0.0.1\t/#/v",
            "http://127.0.0.1 /#/v",
        ] {
            assert!(parse_target(uri).is_err(), "{uri}");
        }
        // The host after the last @, for every reader.
        let x = t("redis://127.0.0.1%2f@169.254.169.254/0?list=a");
        assert_eq!(x.host, Host::Ip([169, 254, 169, 254].into()));
        let x = t("http://a@b@127.0.0.1:8080/#/v");
        assert_eq!(x.host, Host::Ip([127, 0, 0, 1].into()));
        assert_eq!(x.port_or_default(), 8080);
        assert_eq!(t("nats://h/S/C?tls=true").port_or_default(), 8222);
        assert_eq!(t("prometheus://h?query=x&tls=1").port_or_default(), 443);
        assert_eq!(t("rabbitmq://h/%2F/q").port_or_default(), 15672);
        assert_eq!(t("nsq://h/t").port_or_default(), 4151);
        assert_eq!(t("https://h/#/a").port_or_default(), 443);
    }

    #[test]
    fn echoed_secrets_are_scrubbed_in_every_spelling() {
        for (secret, text) in [
            ("pa  ss-word-1", "bad Bearer pa  ss-word-1"),
            ("pa\tss-word-2", "bad pa\tss-word-2"),
            ("q\"uote-secret", r#"it is a string "q\"uote-secret""#),
            ("back\\slash-secret", r#"{"error": "back\\slash-secret"}"#),
            ("Ab/cd-secret", "Ab%2fcd-secret and AB%2FCD-SECRET"),
            ("Ab/cd-secret", "QWIvY2Qtc2VjcmV0"),
        ] {
            let e = scrub(text, secret, None);
            assert!(e.contains("xxxxx"), "{secret:?} in {text:?} -> {e:?}");
            for part in [
                "ss-word",
                "uote-secret",
                "slash-secret",
                "cd-secret",
                "QWIvY2Q",
            ] {
                assert!(
                    !e.to_ascii_lowercase().contains(&part.to_ascii_lowercase()),
                    "{secret:?} in {text:?} -> {e:?}"
                );
            }
        }
    }

    #[test]
    fn echoed_secrets_are_scrubbed() {
        let e = scrub(
            "HTTP 401: bad token s3cr3t/pw (s3cr3t%2Fpw, czNjcjN0L3B3, dTpzM2NyM3QvcHc=)",
            "s3cr3t/pw\n",
            Some("u"),
        );
        assert!(
            !e.contains("s3cr3t") && !e.contains("czNjcjN0") && !e.contains("dTpz"),
            "{e}"
        );
        assert_eq!(scrub("nothing here", "", None), "nothing here");
    }
}
