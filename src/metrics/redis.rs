//! Redis metric source: the length of a list, the length of a stream, or the lag or
//! pending count of a stream's consumer group.
//!
//! URI forms (`DB` defaults to 0, `PORT` to 6379; every reading has the unit `entries`):
//!
//! | URI | reads |
//! | --- | --- |
//! | `redis://HOST[:PORT][/DB]?list=KEY` | `LLEN KEY` |
//! | `redis://HOST[:PORT][/DB]?stream=KEY` | `XLEN KEY` |
//! | `redis://HOST[:PORT][/DB]?stream=KEY&group=GROUP` | the group's `lag` (entries not yet delivered to it; `XINFO GROUPS`, Redis 7 or later) |
//! | `redis://HOST[:PORT][/DB]?stream=KEY&group=GROUP&measure=pending` | the group's pending count (delivered, not yet acknowledged; what `XPENDING` counts) |
//!
//! Further parameters and rules:
//!
//! - `measure=lag|pending` (only with `group`; default `lag`).
//! - `missing=error|zero` (default `error`). Redis answers 0 for the length of a key
//!   that does not exist, so a misspelt queue name would read as an idle queue. This
//!   source therefore checks the key's type first and, by default, a missing key is
//!   an error that names it. But Redis deletes a list when its last entry is popped,
//!   so an empty list queue does not exist either: give `missing=zero` when an empty
//!   queue is normal, and a missing key then reads as 0.
//! - Redis 7 reports no lag (nil) for a group created at `$` on a non-empty stream
//!   until the group first reads, and after `XDEL`s; the source then counts the
//!   entries past the group's last-delivered ID itself (`XRANGE`, in pages), up to
//!   10 000 entries; past that it is an error that suggests `measure=pending`.
//!   A Redis older than 7 has no lag at all: use `measure=pending` there.
//! - A key of another type (a string where a list was named, a list where a stream
//!   was named) is an error that names the type it has; an unknown group is an error.
//! - A user name may be given (`redis://USER@HOST`, for Redis ACL users); a password
//!   in the URI is refused: it comes only from the secret file or environment
//!   variable the rule names.
//! - Key, group and user names may be percent-encoded (`%20`, `%26`, …); an IPv6
//!   host is written in brackets (`redis://[::1]:6379`).
//! - `rediss://` is the same over TLS (`tls-port` in redis.conf), through the `redis`
//!   crate's rustls support. The server's certificate must be valid for the URI's
//!   host and signed by a CA the reader trusts: the system's roots, plus the
//!   operator's `--metric-tlscacert` file; the operator's `--metric-tlscert` and
//!   `--metric-tlskey` are sent when the server asks for a client certificate
//!   (Redis's default, `tls-auth-clients yes`). See [`super::tls`]. A label chooses
//!   neither: it only says `rediss://`.
//! - The whole read (connect, TLS handshake, authenticate, commands) is bounded by
//!   the timeout.

use std::collections::HashMap;
use std::time::Duration;

use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use super::Sample;

const UNIT: &str = "entries";

/// What to read, parsed from the URI.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    /// `rediss://`: over TLS.
    tls: bool,
    host: String,
    port: u16,
    db: i64,
    user: Option<String>,
    what: What,
    missing_is_zero: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum What {
    List(String),
    Stream(String),
    Group {
        stream: String,
        group: String,
        pending: bool,
    },
}

impl Target {
    /// `host:port`, with brackets around an IPv6 host.
    fn at(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Decodes `%XX` escapes (and nothing else: `+` stays `+`).
fn percent_decode(s: &str, what: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    format!("redis metric URI: bad %-escape in the {what} {s:?}: write %XX with two hex digits")
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| format!("redis metric URI: the {what} {s:?} is not UTF-8 once decoded"))
}

fn parse(uri: &str) -> Result<Target, String> {
    const SHAPE: &str = "expected redis://HOST[:PORT][/DB]?list=KEY or ?stream=KEY[&group=GROUP] (rediss:// over TLS)";
    let (tls, rest) = if let Some(rest) = uri.strip_prefix("redis://") {
        (false, rest)
    } else if let Some(rest) = uri.strip_prefix("rediss://") {
        (true, rest)
    } else {
        return Err(format!("redis metric URI {uri:?}: {SHAPE}"));
    };
    if rest.contains('#') {
        if tls {
            // The redis crate reads `rediss://…/#insecure` as "check no certificate";
            // the URI never reaches it, and nothing in a label turns the check off.
            return Err("redis metric URI: a #fragment means nothing here (and #insecure is not honoured: the server's certificate is always checked): remove it".to_string());
        }
        return Err("redis metric URI: a #fragment means nothing here: remove it".to_string());
    }
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, q),
        None => (rest, ""),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => (&before_query[..i], &before_query[i + 1..]),
        None => (before_query, ""),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let user = match userinfo {
        Some(u) if u.contains(':') => {
            return Err("redis metric URI: a password in the URI is refused: put the password in a file or environment variable: see docs/metrics.md".to_string());
        }
        Some("") => {
            return Err(
                "redis metric URI: an empty user name before '@': remove the '@' or name the user"
                    .to_string(),
            );
        }
        Some(u) => Some(percent_decode(u, "user name")?),
        None => None,
    };
    let (host, port) = if let Some(after) = hostport.strip_prefix('[') {
        let (h, tail) = after
            .split_once(']')
            .ok_or_else(|| format!("redis metric URI: unclosed '[' in the host {hostport:?}"))?;
        let port = match tail {
            "" => None,
            t => Some(t.strip_prefix(':').ok_or_else(|| {
                format!("redis metric URI: expected :PORT after the IPv6 host, found {t:?}")
            })?),
        };
        (h, port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(format!("redis metric URI {uri:?}: no host: {SHAPE}"));
    }
    let port = match port {
        None => 6379,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => {
                return Err(format!(
                    "redis metric URI: the port {p:?} is not a number from 1 to 65535"
                ));
            }
        },
    };
    let db = match path {
        "" => 0,
        p => p.parse::<u16>().map(i64::from).map_err(|_| {
            format!(
                "redis metric URI: the database {p:?} is not a number (redis://HOST/0 for db 0)"
            )
        })?,
    };

    let mut params: HashMap<&str, String> = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            format!("redis metric URI: the parameter {pair:?} has no value: write NAME=VALUE")
        })?;
        // ssl_ca_certs=, ssl_cert_reqs=none, tls=, insecure=, cacert=, key=, ...
        let lower = k.to_ascii_lowercase();
        let tls_setting = ["tls", "ssl", "insecure", "verify"]
            .iter()
            .any(|w| lower.starts_with(w))
            || lower.contains("cert")
            || ["ca", "cafile", "capath", "key", "keyfile"].contains(&lower.as_str());
        if tls_setting {
            return Err(format!(
                "redis metric URI: {k:?}: TLS settings do not come from a URI: the reader's operator gives the CA and client certificate with --metric-tlscacert, --metric-tlscert and --metric-tlskey, and the server's certificate is always checked; write rediss:// for TLS"
            ));
        }
        if !["list", "stream", "group", "measure", "missing"].contains(&k) {
            return Err(format!(
                "redis metric URI: unknown parameter {k:?}: known are list, stream, group, measure, missing"
            ));
        }
        let v = percent_decode(v, k)?;
        if v.is_empty() {
            return Err(format!("redis metric URI: {k}= is empty"));
        }
        if params.insert(k, v).is_some() {
            return Err(format!("redis metric URI: {k}= is given twice"));
        }
    }
    let missing_is_zero = match params.remove("missing").as_deref() {
        None | Some("error") => false,
        Some("zero") => true,
        Some(other) => {
            return Err(format!(
                "redis metric URI: missing={other:?}: expected missing=error or missing=zero"
            ));
        }
    };
    let measure = params.remove("measure");
    let group = params.remove("group");
    let what = match (params.remove("list"), params.remove("stream")) {
        (Some(_), Some(_)) => {
            return Err("redis metric URI: give list= or stream=, not both".to_string());
        }
        (None, None) => return Err(format!("redis metric URI {uri:?}: {SHAPE}")),
        (Some(list), None) => {
            if group.is_some() || measure.is_some() {
                return Err(
                    "redis metric URI: group= and measure= go with stream=, not with list="
                        .to_string(),
                );
            }
            What::List(list)
        }
        (None, Some(stream)) => match group {
            None => {
                if measure.is_some() {
                    return Err(
                        "redis metric URI: measure= needs group=: the lag or pending count is a consumer group's"
                            .to_string(),
                    );
                }
                What::Stream(stream)
            }
            Some(group) => {
                let pending = match measure.as_deref() {
                    None | Some("lag") => false,
                    Some("pending") => true,
                    Some(other) => {
                        return Err(format!(
                            "redis metric URI: measure={other:?}: expected measure=lag or measure=pending"
                        ));
                    }
                };
                What::Group {
                    stream,
                    group,
                    pending,
                }
            }
        },
    };
    Ok(Target {
        tls,
        host: host.to_string(),
        port,
        db,
        user,
        what,
        missing_is_zero,
    })
}

/// Reads the metric the URI names from `endpoint` (the checked addresses of its
/// host: the URI's host is never resolved here), within `timeout`; see the module
/// documentation for the URI forms. Errors: one line, without the secret.
pub async fn read(
    uri: &str,
    endpoint: &super::Endpoint,
    secret: Option<&str>,
    timeout: Duration,
) -> Result<Sample, String> {
    let target = parse(uri)?;
    match tokio::time::timeout(timeout, read_target(&target, endpoint, secret)).await {
        Ok(result) => result,
        // A plain port waits for a command that a TLS handshake never ends.
        Err(_) if target.tls => Err(format!(
            "no answer from redis at {} within {}: over TLS (rediss://), is this the server's TLS port (tls-port)?",
            target.at(),
            humantime::format_duration(timeout)
        )),
        Err(_) => Err(format!(
            "no answer from redis at {} within {}",
            target.at(),
            humantime::format_duration(timeout)
        )),
    }
}

async fn read_target(
    t: &Target,
    endpoint: &super::Endpoint,
    secret: Option<&str>,
) -> Result<Sample, String> {
    let at = t.at();
    let mut settings = RedisConnectionInfo::default()
        .set_db(t.db)
        .set_skip_set_lib_name();
    if let Some(user) = &t.user {
        settings = settings.set_username(user);
    }
    if let Some(secret) = secret {
        settings = settings.set_password(secret);
    }
    // TLS: the host's name (or address) is what the certificate must be valid for;
    // the connection still goes only to the checked addresses, which the resolver
    // below hands the crate for that name.
    let server_name = match &endpoint.host {
        super::Host::Name(n) => n.clone(),
        super::Host::Ip(ip) => ip.to_string(),
    };
    let certificates = t.tls.then(|| endpoint.tls.redis_certificates());
    let fail = |e: &redis::RedisError| describe(e, t, secret.is_some(), &endpoint.tls);
    // Only the endpoint's checked addresses, in order; the next one only when
    // nothing listens at the previous one.
    let mut connected = None;
    let mut last_error = None;
    for addr in &endpoint.addrs {
        // The caller's timeout bounds the whole read; the crate's own shorter
        // defaults would cut it early with a different message.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None)
            .set_dns_resolver(Pinned {
                name: server_name.clone(),
                addr: *addr,
            });
        let client = match &certificates {
            None => ConnectionAddr::Tcp(addr.ip().to_string(), addr.port())
                .into_connection_info()
                .and_then(|info| redis::Client::open(info.set_redis_settings(settings.clone()))),
            Some(certificates) => ConnectionAddr::TcpTls {
                host: server_name.clone(),
                port: addr.port(),
                insecure: false,
                tls_params: None,
            }
            .into_connection_info()
            .and_then(|info| {
                redis::Client::build_with_tls(
                    info.set_redis_settings(settings.clone()),
                    certificates.clone(),
                )
            }),
        }
        .map_err(|e| format!("redis at {at}: {e}"))?;
        match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(c) => {
                connected = Some(c);
                break;
            }
            Err(e) if e.is_connection_refusal() => last_error = Some(e),
            Err(e) => return Err(fail(&e)),
        }
    }
    let mut con = match (connected, last_error) {
        (Some(c), _) => c,
        (None, Some(e)) => return Err(fail(&e)),
        (None, None) => return Err(format!("redis at {at}: no address to connect to")),
    };

    let key = match &t.what {
        What::List(k) | What::Stream(k) | What::Group { stream: k, .. } => k,
    };
    let want = match t.what {
        What::List(_) => "list",
        _ => "stream",
    };
    let kind: String = redis::cmd("TYPE")
        .arg(key)
        .query_async(&mut con)
        .await
        .map_err(|e| fail(&e))?;
    if kind == "none" {
        if t.missing_is_zero {
            return Ok(Sample {
                value: 0.0,
                unit: UNIT,
            });
        }
        let hint = if want == "list" {
            " (Redis deletes a list when it empties: add &missing=zero if an empty queue is normal here)"
        } else {
            ""
        };
        return Err(format!(
            "no {want} named {key} in redis db {} at {at}: check the key name{hint}",
            t.db
        ));
    }
    if kind != want {
        return Err(format!(
            "the key {key} in redis db {} at {at} is a {kind}, not a {want}: check the key name",
            t.db
        ));
    }

    let value: u64 = match &t.what {
        What::List(k) => redis::cmd("LLEN")
            .arg(k)
            .query_async(&mut con)
            .await
            .map_err(|e| fail(&e))?,
        What::Stream(k) => redis::cmd("XLEN")
            .arg(k)
            .query_async(&mut con)
            .await
            .map_err(|e| fail(&e))?,
        What::Group {
            stream,
            group,
            pending,
        } => {
            let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(stream)
                .query_async(&mut con)
                .await
                .map_err(|e| fail(&e))?;
            let info = groups
                .iter()
                .find(|g| matches!(g.get("name"), Some(v) if value_str(v).as_deref() == Some(group.as_str())))
                .ok_or_else(|| {
                    let mut names: Vec<String> =
                        groups.iter().filter_map(|g| g.get("name").and_then(value_str)).collect();
                    names.sort();
                    let known = if names.is_empty() {
                        "it has no consumer groups".to_string()
                    } else {
                        format!("its groups are {}", names.join(", "))
                    };
                    format!(
                        "no consumer group named {group} on the stream {stream} in redis db {} at {at}: {known}",
                        t.db
                    )
                })?;
            let field = if *pending { "pending" } else { "lag" };
            match info.get(field) {
                Some(redis::Value::Int(n)) if *n >= 0 => *n as u64,
                Some(redis::Value::Nil) => {
                    // Redis 7 leaves the lag unknown for a group created at `$` on a
                    // non-empty stream until the group reads, and after XDEL: count
                    // the entries past the group's last-delivered ID instead.
                    let last = info.get("last-delivered-id").and_then(value_str).ok_or_else(|| {
                        format!("redis at {at}: the group {group} on the stream {stream} has no last-delivered-id")
                    })?;
                    count_after(&mut con, stream, &last)
                        .await
                        .map_err(|e| fail(&e))?
                        .ok_or_else(|| {
                            format!(
                                "redis at {at} cannot say the lag of the group {group} on the stream {stream}, and more than {COUNT_CAP} entries follow its last-delivered ID: use measure=pending"
                            )
                        })?
                }
                None if !*pending => {
                    return Err(format!(
                        "redis at {at} reports no consumer-group lag (it needs Redis 7 or later): use measure=pending"
                    ));
                }
                other => {
                    return Err(format!(
                        "redis at {at}: unexpected {field} value {other:?} for the group {group}"
                    ));
                }
            }
        }
    };
    Ok(Sample {
        value: value as f64,
        unit: UNIT,
    })
}

/// Hands the `redis` crate the one checked address for the name it connects to
/// (over TLS the crate connects by name, to check the certificate against it), and
/// resolves nothing else: no name is looked up again after `--metric-allow` checked it.
struct Pinned {
    name: String,
    addr: std::net::SocketAddr,
}

impl redis::io::AsyncDNSResolver for Pinned {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        host: &'b str,
        port: u16,
    ) -> redis::RedisFuture<'a, Box<dyn Iterator<Item = std::net::SocketAddr> + Send + 'a>> {
        let known = (host == self.name || host.parse().ok() == Some(self.addr.ip()))
            && port == self.addr.port();
        let addr = self.addr;
        Box::pin(async move {
            if known {
                Ok(Box::new(std::iter::once(addr))
                    as Box<dyn Iterator<Item = std::net::SocketAddr> + Send>)
            } else {
                Err(redis::RedisError::from(std::io::Error::other(format!(
                    "{host}:{port} was not checked against --metric-allow: not resolved"
                ))))
            }
        })
    }
}

/// The most entries [`count_after`] pages through before giving up.
const COUNT_CAP: u64 = 10_000;

/// Counts the entries of `stream` after the ID `last` with `XRANGE`, in pages;
/// None past [`COUNT_CAP`].
async fn count_after(
    con: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    last: &str,
) -> Result<Option<u64>, redis::RedisError> {
    const PAGE: u64 = 1_000;
    let mut start = last.to_string();
    let mut count = 0;
    loop {
        let page: Vec<(String, redis::Value)> = redis::cmd("XRANGE")
            .arg(stream)
            .arg(format!("({start}"))
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(con)
            .await?;
        count += page.len() as u64;
        if count > COUNT_CAP {
            return Ok(None);
        }
        match page.last() {
            Some((id, _)) if page.len() as u64 == PAGE => start = id.clone(),
            _ => return Ok(Some(count)),
        }
    }
}

/// Whether an error's text is rustls's (a certificate, an alert, a handshake, a
/// peer that does not speak TLS).
fn is_tls_failure(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "certificate",
        "fatal alert",
        "corrupt message",
        "handshake",
        "tls",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

fn value_str(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// One line for a failed connect or command, with no secret in it; `tls` are the
/// settings a `rediss://` connection was made with (for how to fix a TLS failure).
fn describe(
    e: &redis::RedisError,
    t: &Target,
    had_secret: bool,
    tls: &super::tls::MetricTls,
) -> String {
    let at = t.at();
    let code = e.code().unwrap_or("");
    let text = e.to_string();
    if t.tls && is_tls_failure(&text) {
        return format!(
            "TLS with redis at {at} failed: {text}: {}",
            super::tls::hint(&text, tls)
        );
    }
    if code == "WRONGPASS"
        || text.contains("WRONGPASS")
        || e.kind() == redis::ErrorKind::AuthenticationFailed && had_secret
    {
        let who = match &t.user {
            Some(u) => format!("the user {u} with that password"),
            None => "the password".to_string(),
        };
        return format!(
            "redis at {at} refused {who} (WRONGPASS, or no password is set there): check the secret file/variable"
        );
    }
    if code == "NOAUTH" || text.contains("NOAUTH") {
        return format!(
            "redis at {at} asks for a password (NOAUTH) and none was given: name a secret file or variable in the rule: see docs/metrics.md"
        );
    }
    if code == "NOPERM" || text.contains("NOPERM") {
        return format!(
            "redis at {at} does not let this user run the command ({text}): grant it TYPE, LLEN, XLEN and XINFO"
        );
    }
    if text.contains("DB index is out of range") {
        return format!(
            "redis at {at} has no db {}: check the /DB part of the URI",
            t.db
        );
    }
    if e.is_connection_refusal() {
        return format!(
            "cannot connect to redis at {at}: connection refused: is redis running there?"
        );
    }
    if e.is_io_error() {
        if t.tls {
            return format!(
                "cannot reach redis at {at} over TLS: {text}: {}",
                super::tls::hint(&text, tls)
            );
        }
        let lower = text.to_ascii_lowercase();
        if ["reset", "broken pipe", "closed", "end of file", "eof"]
            .iter()
            .any(|w| lower.contains(w))
        {
            // A TLS port drops a client that does not start with a handshake.
            return format!(
                "cannot reach redis at {at}: {text}: if this is the server's TLS port (tls-port), use rediss://"
            );
        }
        return format!("cannot reach redis at {at}: {text}");
    }
    format!("redis at {at}: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `super::read` from the URI's own host (the tests' servers are on loopback).
    async fn read(uri: &str, secret: Option<&str>, timeout: Duration) -> Result<Sample, String> {
        crate::metrics::test_read(
            |u, e, s, t| async move { super::read(&u, &e, s.as_deref(), t).await },
            uri,
            secret,
            timeout,
        )
        .await
    }
    use crate::metrics::tls::MetricTls;
    use crate::testutil::{Issued, TestCa};
    use std::net::{TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn uri_forms() {
        let t = parse("redis://q.example:6380/2?list=jobs").unwrap();
        assert_eq!(t.host, "q.example");
        assert_eq!(t.port, 6380);
        assert_eq!(t.db, 2);
        assert_eq!(t.what, What::List("jobs".into()));
        assert!(!t.missing_is_zero);
        let t = parse("redis://worker@[::1]?stream=ev%26x&group=g&measure=pending&missing=zero")
            .unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db), ("::1", 6379, 0));
        assert_eq!(t.user.as_deref(), Some("worker"));
        assert_eq!(t.at(), "[::1]:6379");
        assert_eq!(
            t.what,
            What::Group {
                stream: "ev&x".into(),
                group: "g".into(),
                pending: true
            }
        );
        assert!(t.missing_is_zero);
        assert!(!t.tls);
        // rediss:// is the same URI over TLS, on the same default port.
        let t = parse("rediss://worker@q.example/1?list=jobs").unwrap();
        assert!(t.tls);
        assert_eq!((t.host.as_str(), t.port, t.db), ("q.example", 6379, 1));
        assert_eq!(t.user.as_deref(), Some("worker"));
        assert_eq!(t.what, What::List("jobs".into()));
        let e = parse("rediss://:pw@h?list=a").unwrap_err();
        assert!(e.contains("password in the URI is refused"), "{e}");
        for (bad, says) in [
            (
                "redis://u:pw@h?list=a",
                "put the password in a file or environment variable: see docs/metrics.md",
            ),
            ("redis://:pw@h?list=a", "password"),
            ("http://h?list=a", "expected redis://"),
            ("redisss://h?list=a", "(rediss:// over TLS)"),
            ("rediss://h", "expected redis://"),
            ("rediss://h?list=a#insecure", "#insecure is not honoured"),
            (
                "rediss://h?list=a&tlscacert=/tmp/ca.pem",
                "--metric-tlscacert",
            ),
            (
                "rediss://h?list=a&ssl_ca_certs=/tmp/ca.pem",
                "TLS settings do not come from a URI",
            ),
            ("rediss://h?list=a&ssl_cert_reqs=none", "always checked"),
            ("redis://h?list=a&tls=true", "write rediss:// for TLS"),
            ("rediss://h?list=a&insecure=true", "always checked"),
            ("redis://h", "expected redis://"),
            ("redis://h?list=a&stream=b", "not both"),
            ("redis://h?list=a&group=g", "go with stream="),
            ("redis://h?stream=a&measure=lag", "needs group="),
            (
                "redis://h?stream=a&group=g&measure=size",
                "measure=lag or measure=pending",
            ),
            (
                "redis://h?list=a&missing=no",
                "missing=error or missing=zero",
            ),
            ("redis://h?queue=a", "unknown parameter"),
            ("redis://h:x?list=a", "port"),
            ("redis://h/x?list=a", "database"),
            ("redis://h?list=", "empty"),
            ("redis://h?list=a&list=b", "twice"),
            ("redis://h?list=a%2", "%-escape"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("pw"), "{bad}: the secret leaks: {e}");
        }
    }

    /// A `redis-server` of our own on a free loopback port, stopped on drop.
    struct Server {
        child: Child,
        port: u16,
        /// The TLS port ([`tls_server`]); 0 without TLS.
        tls_port: u16,
        _dir: tempfile::TempDir,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Starts a server; a missing redis-server fails the test, naming its package.
    fn server(password: Option<&str>) -> Option<Server> {
        crate::testutil::require_program("redis-server", "redis-server");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(pw) = password {
            cmd.args(["--requirepass", pw]);
        }
        let child = cmd.spawn().expect("start redis-server");
        let server = Server {
            child,
            port,
            tls_port: 0,
            _dir: dir,
        };
        wait_for(port);
        Some(server)
    }

    /// Waits until something listens on 127.0.0.1:`port`, at most 10 s.
    fn wait_for(port: u16) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not listen on 127.0.0.1:{port} within 10s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A server with a plain port (to set tests up) and a TLS port, presenting
    /// `cert`; with `client_certs`, it asks clients for a certificate signed by
    /// `ca` (Redis's default, `tls-auth-clients yes`).
    fn tls_server(cert: &Issued, ca: &std::path::Path, client_certs: bool) -> Server {
        crate::testutil::require_program("redis-server", "redis-server");
        let dir = tempfile::tempdir().unwrap();
        let (port, tls_port) = (free_port(), free_port());
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--tls-port", &tls_port.to_string()])
            .arg("--tls-cert-file")
            .arg(&cert.cert)
            .arg("--tls-key-file")
            .arg(&cert.key)
            .arg("--tls-ca-cert-file")
            .arg(ca)
            .args([
                "--tls-auth-clients",
                if client_certs { "yes" } else { "no" },
            ])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = Server {
            child,
            port,
            tls_port,
            _dir: dir,
        };
        wait_for(port);
        wait_for(tls_port);
        server
    }

    /// `super::read` from the URI's own host, over TLS with `tls`.
    async fn read_tls(uri: &str, tls: MetricTls) -> Result<Sample, String> {
        let mut endpoint = crate::metrics::test_endpoint(uri).await?;
        endpoint.tls = std::sync::Arc::new(tls);
        super::read(uri, &endpoint, None, T)
            .await
            .map_err(|e| crate::metrics::finish_error(&e, None, uri))
    }

    /// A CA, a server certificate it signs for localhost and 127.0.0.1, a client
    /// certificate it signs, and another CA that signs nothing here.
    struct Pki {
        _dir: tempfile::TempDir,
        ca: TestCa,
        server: Issued,
        client: Issued,
        other_ca: TestCa,
    }

    fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path(), "ca");
        let server = ca.issue("server", &["DNS:localhost", "IP:127.0.0.1"]);
        let client = ca.issue("client", &["DNS:reader.example"]);
        let other_ca = TestCa::new(dir.path(), "other-ca");
        Pki {
            _dir: dir,
            ca,
            server,
            client,
            other_ca,
        }
    }

    fn trust(ca: &std::path::Path) -> MetricTls {
        MetricTls::load(Some(ca), None, None).unwrap()
    }

    #[tokio::test]
    async fn rediss_reads_a_list_with_the_operators_ca() {
        let pki = pki();
        let s = tls_server(&pki.server, &pki.ca.cert, false);
        setup(s.port, None, &[&["RPUSH", "jobs", "a", "b", "c"]]).await;
        let tp = s.tls_port;
        // By name and by address: the certificate names both.
        for host in ["localhost", "127.0.0.1"] {
            let uri = format!("rediss://{host}:{tp}/0?list=jobs");
            assert_eq!(
                read_tls(&uri, trust(&pki.ca.cert)).await,
                Ok(entries(3.0)),
                "{uri}"
            );
        }
        // A stream and a consumer group's lag read the same way.
        setup(
            s.port,
            None,
            &[
                &["XADD", "events", "*", "n", "1"],
                &["XGROUP", "CREATE", "events", "workers", "0"],
            ],
        )
        .await;
        let uri = format!("rediss://localhost:{tp}?stream=events&group=workers");
        assert_eq!(read_tls(&uri, trust(&pki.ca.cert)).await, Ok(entries(1.0)));
    }

    #[tokio::test]
    async fn rediss_with_a_wrong_ca_or_none_says_which_flag_fixes_it() {
        let pki = pki();
        let s = tls_server(&pki.server, &pki.ca.cert, false);
        setup(s.port, None, &[&["RPUSH", "jobs", "a"]]).await;
        let tp = s.tls_port;
        let uri = format!("rediss://localhost:{tp}?list=jobs");
        let e = read_tls(&uri, trust(&pki.other_ca.cert)).await.unwrap_err();
        assert!(
            e.starts_with(&format!("TLS with redis at localhost:{tp} failed: ")),
            "{e}"
        );
        assert!(e.contains("UnknownIssuer"), "{e}");
        assert!(
            e.ends_with(&format!(
                "the server's certificate is signed by no CA this reader trusts (the system's roots and --metric-tlscacert {}): give the CA that signs it with --metric-tlscacert FILE",
                pki.other_ca.cert.display()
            )),
            "{e}"
        );
        // Without --metric-tlscacert: the system's roots do not know the test CA.
        let e = read_tls(&uri, MetricTls::default()).await.unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{e}");
        assert!(
            e.contains("(the system's roots; no --metric-tlscacert is given): give the CA that signs it with --metric-tlscacert FILE"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn rediss_checks_the_uri_host_and_connects_only_to_the_checked_address() {
        let pki = pki();
        let s = tls_server(&pki.server, &pki.ca.cert, false);
        setup(s.port, None, &[&["RPUSH", "jobs", "a"]]).await;
        let tp = s.tls_port;
        // The name checked against the certificate is the URI's; the connection
        // goes to the endpoint's address. queue.example never resolves: only the
        // pinned address is used, and the certificate does not name it.
        let uri = format!("rediss://queue.example:{tp}?list=jobs");
        let mut endpoint = crate::metrics::Endpoint::ip([127, 0, 0, 1].into(), tp);
        endpoint.host = crate::metrics::Host::Name("queue.example".into());
        endpoint.tls = std::sync::Arc::new(trust(&pki.ca.cert));
        let e = super::read(&uri, &endpoint, None, T).await.unwrap_err();
        assert!(
            e.starts_with(&format!("TLS with redis at queue.example:{tp} failed: ")),
            "{e}"
        );
        assert!(e.contains("not valid for the host the URI names"), "{e}");
        // localhost pinned to 127.0.0.1 is what the certificate names.
        let uri = format!("rediss://localhost:{tp}?list=jobs");
        endpoint.host = crate::metrics::Host::Name("localhost".into());
        assert_eq!(
            super::read(&uri, &endpoint, None, T).await,
            Ok(entries(1.0))
        );
    }

    #[tokio::test]
    async fn rediss_client_certificate_from_the_flags() {
        let pki = pki();
        let s = tls_server(&pki.server, &pki.ca.cert, true);
        setup(s.port, None, &[&["RPUSH", "jobs", "a", "b"]]).await;
        let uri = format!("rediss://localhost:{}?list=jobs", s.tls_port);
        let e = read_tls(&uri, trust(&pki.ca.cert)).await.unwrap_err();
        assert!(
            e.contains("give one it trusts with --metric-tlscert FILE and --metric-tlskey FILE"),
            "{e}"
        );
        let with_cert = MetricTls::load(
            Some(&pki.ca.cert),
            Some(&pki.client.cert),
            Some(&pki.client.key),
        )
        .unwrap();
        assert_eq!(read_tls(&uri, with_cert).await, Ok(entries(2.0)));
        // A certificate the server's CA did not sign is refused by the server.
        let stranger = pki.other_ca.issue("stranger", &["DNS:reader.example"]);
        let wrong = MetricTls::load(
            Some(&pki.ca.cert),
            Some(&stranger.cert),
            Some(&stranger.key),
        )
        .unwrap();
        let e = read_tls(&uri, wrong).await.unwrap_err();
        assert!(
            e.contains("does it trust the CA that signs the --metric-tlscert certificate?"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn tls_and_plain_ports_mixed_up() {
        let pki = pki();
        let s = tls_server(&pki.server, &pki.ca.cert, false);
        setup(s.port, None, &[&["RPUSH", "jobs", "a"]]).await;
        // rediss:// to the plain port: the server waits for a command that the
        // TLS handshake never ends.
        let uri = format!("rediss://127.0.0.1:{}?list=jobs", s.port);
        let endpoint = crate::metrics::Endpoint::ip([127, 0, 0, 1].into(), s.port);
        let e = super::read(&uri, &endpoint, None, Duration::from_millis(500))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            format!(
                "no answer from redis at 127.0.0.1:{} within 500ms: over TLS (rediss://), is this the server's TLS port (tls-port)?",
                s.port
            )
        );
        // redis:// to the TLS port.
        let uri = format!("redis://127.0.0.1:{}?list=jobs", s.tls_port);
        let e = read(&uri, None, T).await.unwrap_err();
        assert!(
            e.starts_with(&format!("cannot reach redis at 127.0.0.1:{}: ", s.tls_port)),
            "{e}"
        );
        assert!(
            e.ends_with("if this is the server's TLS port (tls-port), use rediss://"),
            "{e}"
        );
    }

    /// Runs commands on the server to set a test up.
    async fn setup(port: u16, password: Option<&str>, cmds: &[&[&str]]) {
        let mut settings = RedisConnectionInfo::default();
        if let Some(pw) = password {
            settings = settings.set_password(pw);
        }
        let info = ConnectionAddr::Tcp("127.0.0.1".into(), port)
            .into_connection_info()
            .unwrap()
            .set_redis_settings(settings);
        let client = redis::Client::open(info).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        for c in cmds {
            let mut cmd = redis::cmd(c[0]);
            for a in &c[1..] {
                cmd.arg(*a);
            }
            let _: redis::Value = cmd.query_async(&mut con).await.unwrap();
        }
    }

    fn entries(value: f64) -> Sample {
        Sample { value, unit: UNIT }
    }

    #[tokio::test]
    async fn list_length() {
        let Some(s) = server(None) else { return };
        setup(
            s.port,
            None,
            &[&["RPUSH", "jobs", "a", "b", "c"], &["SELECT", "3"]],
        )
        .await;
        let uri = format!("redis://127.0.0.1:{}?list=jobs", s.port);
        assert_eq!(read(&uri, None, T).await, Ok(entries(3.0)));
        // The same key in another db is another key.
        let uri3 = format!("redis://127.0.0.1:{}/3?list=jobs", s.port);
        let e = read(&uri3, None, T).await.unwrap_err();
        assert!(e.contains("no list named jobs in redis db 3"), "{e}");
    }

    #[tokio::test]
    async fn emptied_list_is_missing_unless_missing_zero() {
        let Some(s) = server(None) else { return };
        setup(s.port, None, &[&["RPUSH", "jobs", "a"], &["LPOP", "jobs"]]).await;
        let uri = format!("redis://127.0.0.1:{}?list=jobs", s.port);
        let e = read(&uri, None, T).await.unwrap_err();
        assert_eq!(
            e,
            format!(
                "no list named jobs in redis db 0 at 127.0.0.1:{}: check the key name (Redis deletes a list when it empties: add &missing=zero if an empty queue is normal here)",
                s.port
            )
        );
        let uri = format!("redis://127.0.0.1:{}?list=jobs&missing=zero", s.port);
        assert_eq!(read(&uri, None, T).await, Ok(entries(0.0)));
    }

    #[tokio::test]
    async fn wrong_key_name_and_wrong_type() {
        let Some(s) = server(None) else { return };
        setup(
            s.port,
            None,
            &[&["RPUSH", "jobs", "a"], &["SET", "counter", "7"]],
        )
        .await;
        let p = s.port;
        let e = read(&format!("redis://127.0.0.1:{p}?list=job"), None, T)
            .await
            .unwrap_err();
        assert!(
            e.starts_with(&format!(
                "no list named job in redis db 0 at 127.0.0.1:{p}: check the key name"
            )),
            "{e}"
        );
        let e = read(&format!("redis://127.0.0.1:{p}?stream=events"), None, T)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            format!("no stream named events in redis db 0 at 127.0.0.1:{p}: check the key name")
        );
        let e = read(&format!("redis://127.0.0.1:{p}?list=counter"), None, T)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            format!(
                "the key counter in redis db 0 at 127.0.0.1:{p} is a string, not a list: check the key name"
            )
        );
        let e = read(&format!("redis://127.0.0.1:{p}?stream=jobs"), None, T)
            .await
            .unwrap_err();
        assert!(e.contains("is a list, not a stream"), "{e}");
    }

    #[tokio::test]
    async fn stream_length_group_lag_and_pending() {
        let Some(s) = server(None) else { return };
        setup(
            s.port,
            None,
            &[
                &["XADD", "events", "*", "n", "1"],
                &["XADD", "events", "*", "n", "2"],
                &["XGROUP", "CREATE", "events", "workers", "0"],
                &["XGROUP", "CREATE", "events", "idle", "$"],
                &["XADD", "events", "*", "n", "3"],
                &["XADD", "events", "*", "n", "4"],
                &["XADD", "events", "*", "n", "5"],
                // Two delivered to a consumer and never acknowledged.
                &[
                    "XREADGROUP",
                    "GROUP",
                    "workers",
                    "w1",
                    "COUNT",
                    "2",
                    "STREAMS",
                    "events",
                    ">",
                ],
            ],
        )
        .await;
        let p = s.port;
        let base = format!("redis://127.0.0.1:{p}?stream=events");
        assert_eq!(read(&base, None, T).await, Ok(entries(5.0)));
        assert_eq!(
            read(&format!("{base}&group=workers"), None, T).await,
            Ok(entries(3.0))
        );
        assert_eq!(
            read(&format!("{base}&group=workers&measure=lag"), None, T).await,
            Ok(entries(3.0))
        );
        assert_eq!(
            read(&format!("{base}&group=workers&measure=pending"), None, T).await,
            Ok(entries(2.0))
        );
        assert_eq!(
            read(&format!("{base}&group=idle"), None, T).await,
            Ok(entries(3.0))
        );
        assert_eq!(
            read(&format!("{base}&group=idle&measure=pending"), None, T).await,
            Ok(entries(0.0))
        );
        let e = read(&format!("{base}&group=worker"), None, T)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            format!(
                "no consumer group named worker on the stream events in redis db 0 at 127.0.0.1:{p}: its groups are idle, workers"
            )
        );
    }

    /// Adds `n` entries to `stream` in one pipeline.
    async fn xadd_many(port: u16, stream: &str, n: usize) {
        let info = ConnectionAddr::Tcp("127.0.0.1".into(), port)
            .into_connection_info()
            .unwrap();
        let client = redis::Client::open(info).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let mut pipe = redis::pipe();
        for i in 0..n {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("n")
                .arg(i)
                .ignore();
        }
        let () = pipe.query_async(&mut con).await.unwrap();
    }

    #[tokio::test]
    async fn unknown_lag_is_counted_then_capped() {
        let Some(s) = server(None) else { return };
        let p = s.port;
        // A group created at `$` on a non-empty stream: Redis 7 reports its lag as
        // nil until it reads; the source counts the entries past its position.
        setup(
            p,
            None,
            &[
                &["XADD", "events", "*", "n", "0"],
                &["XADD", "events", "*", "n", "1"],
                &["XGROUP", "CREATE", "events", "late", "$"],
                &["XADD", "big", "*", "n", "0"],
                &["XADD", "big", "*", "n", "1"],
                &["XGROUP", "CREATE", "big", "late", "$"],
            ],
        )
        .await;
        xadd_many(p, "events", 2_500).await; // more than two XRANGE pages
        xadd_many(p, "big", COUNT_CAP as usize + 1).await;
        // Redis itself does not know these lags: the count below is ours.
        for stream in ["events", "big"] {
            let info = ConnectionAddr::Tcp("127.0.0.1".into(), p)
                .into_connection_info()
                .unwrap();
            let client = redis::Client::open(info).unwrap();
            let mut con = client.get_multiplexed_async_connection().await.unwrap();
            let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(stream)
                .query_async(&mut con)
                .await
                .unwrap();
            assert_eq!(groups[0].get("lag"), Some(&redis::Value::Nil), "{stream}");
        }
        let uri = format!("redis://127.0.0.1:{p}?stream=events&group=late");
        assert_eq!(read(&uri, None, T).await, Ok(entries(2_500.0)));
        let uri = format!("redis://127.0.0.1:{p}?stream=big&group=late");
        let e = read(&uri, None, T).await.unwrap_err();
        assert_eq!(
            e,
            format!(
                "redis at 127.0.0.1:{p} cannot say the lag of the group late on the stream big, and more than 10000 entries follow its last-delivered ID: use measure=pending"
            )
        );
        let pending = format!("{uri}&measure=pending");
        assert_eq!(read(&pending, None, T).await, Ok(entries(0.0)));
    }

    #[tokio::test]
    async fn db_out_of_range_and_unknown_host() {
        let Some(s) = server(None) else { return };
        let p = s.port;
        let e = read(&format!("redis://127.0.0.1:{p}/99?list=jobs"), None, T)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            format!("redis at 127.0.0.1:{p} has no db 99: check the /DB part of the URI")
        );
        let e = read("redis://no-such-host.invalid?list=jobs", None, T)
            .await
            .unwrap_err();
        assert!(
            e.starts_with("the host no-such-host.invalid does not resolve"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn stream_without_groups() {
        let Some(s) = server(None) else { return };
        setup(s.port, None, &[&["XADD", "events", "*", "n", "1"]]).await;
        let p = s.port;
        let e = read(
            &format!("redis://127.0.0.1:{p}?stream=events&group=g"),
            None,
            T,
        )
        .await
        .unwrap_err();
        assert!(e.ends_with("it has no consumer groups"), "{e}");
        let e = read(
            &format!("redis://127.0.0.1:{p}?stream=nope&group=g"),
            None,
            T,
        )
        .await
        .unwrap_err();
        assert!(e.starts_with("no stream named nope"), "{e}");
    }

    #[tokio::test]
    async fn auth_good_bad_and_missing() {
        let Some(s) = server(Some("s3cret-pw")) else {
            return;
        };
        setup(s.port, Some("s3cret-pw"), &[&["RPUSH", "jobs", "a", "b"]]).await;
        let p = s.port;
        let uri = format!("redis://127.0.0.1:{p}?list=jobs");
        assert_eq!(read(&uri, Some("s3cret-pw"), T).await, Ok(entries(2.0)));
        // The default user named explicitly works too.
        let uri_user = format!("redis://default@127.0.0.1:{p}?list=jobs");
        assert_eq!(
            read(&uri_user, Some("s3cret-pw"), T).await,
            Ok(entries(2.0))
        );

        let e = read(&uri, Some("wrong-pw"), T).await.unwrap_err();
        assert_eq!(
            e,
            format!(
                "redis at 127.0.0.1:{p} refused the password (WRONGPASS, or no password is set there): check the secret file/variable"
            )
        );
        assert!(!e.contains("wrong-pw") && !e.contains("s3cret"), "{e}");
        let e = read(&uri, None, T).await.unwrap_err();
        assert!(e.contains("asks for a password (NOAUTH)"), "{e}");
        let e = read(&uri_user, Some("wrong-pw"), T).await.unwrap_err();
        assert!(
            e.contains("refused the user default with that password (WRONGPASS"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn secret_given_to_a_server_without_password() {
        let Some(s) = server(None) else { return };
        setup(s.port, None, &[&["RPUSH", "jobs", "a"]]).await;
        let e = read(
            &format!("redis://127.0.0.1:{}?list=jobs", s.port),
            Some("pw"),
            T,
        )
        .await
        .unwrap_err();
        assert!(
            e.contains("refused the password (WRONGPASS, or no password is set there)"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn password_in_uri_refused_before_connecting() {
        // Port 1 on loopback: nothing listens; the URI is refused before any connect.
        let e = read("redis://user:hunter2@127.0.0.1:1?list=jobs", None, T)
            .await
            .unwrap_err();
        assert!(
            e.starts_with("a password in the metric URI: put it in a file"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        // The source's own parser refuses it too, should it ever be called alone.
        let e = super::read(
            "redis://user:hunter2@127.0.0.1:1?list=jobs",
            &crate::metrics::Endpoint::ip([127, 0, 0, 1].into(), 1),
            None,
            T,
        )
        .await
        .unwrap_err();
        assert_eq!(
            e,
            "redis metric URI: a password in the URI is refused: put the password in a file or environment variable: see docs/metrics.md"
        );
    }

    #[tokio::test]
    async fn server_down_is_a_fast_error() {
        let port = free_port(); // bound then released: nothing listens there now
        let start = Instant::now();
        let e = read(&format!("redis://127.0.0.1:{port}?list=jobs"), None, T)
            .await
            .unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(
            e,
            format!(
                "cannot connect to redis at 127.0.0.1:{port}: connection refused: is redis running there?"
            )
        );
    }

    #[tokio::test]
    async fn silent_server_hits_the_timeout() {
        // Accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let start = Instant::now();
        let e = read(
            &format!("redis://127.0.0.1:{port}?list=jobs"),
            Some("pw"),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(
            e,
            format!("no answer from redis at 127.0.0.1:{port} within 300ms")
        );
        hold.abort();
    }
}
