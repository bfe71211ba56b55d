//! A metric source's address, parsed once.
//!
//! The allow-list check, the secret binding and the connection all use the one
//! typed [`Target`] that [`parse_target`] makes from a rule's `microscale.metric`
//! URI: its scheme, its [`Host`] (an IP address or a plain DNS name) and its port.
//! A source connects only to the addresses of the [`Endpoint`] that
//! [`super::Allow::resolve`] made from that target; it never parses the URI's host
//! again.
//!
//! Why: a rule is a service label, which anyone who deploys a service writes. Two
//! parsers that disagree on where a host ends (a `\` in an `http` authority, which
//! WHATWG parsers read as `/`), or on what a host is (a service named `2852039166`,
//! which `inet_aton` reads as 169.254.169.254), let a label pass the check with one
//! host and connect to another, carrying the rule's secret.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A host in a metric URI, `--metric-allow` or `--metric-secret`.
///
/// Every spelling of a number is an IP address (decimal `2852039166`, hex
/// `0xa9fea9fe`, octal `0251.0376.0251.0376`, short dotted `169.254.43518`), whatever
/// the swarm calls a service: that is how `inet_aton` and WHATWG URL parsers read
/// it. A name is lower case ASCII letters, digits, `-`, `_` and `.`, without the
/// trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// An IPv4 or IPv6 address (IPv4-mapped IPv6 addresses are kept as written).
    Ip(IpAddr),
    /// A DNS name, a service name or `localhost`.
    Name(String),
}

impl fmt::Display for Host {
    /// `10.0.0.1`, `[::1]` or the name: the form a URI and an error show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

impl Host {
    /// Parses a host as written: `[IPv6]` (or bare IPv6), any IPv4 number form, or a
    /// name. Errors: an empty host, a character a host name cannot have (`%`, `\`,
    /// `@`, blanks, non-ASCII: write IDN names in their `xn--` form), an empty label,
    /// or a number that is no IPv4 address (`256.1.1.1`, `1.2.3.4.5`, `08`).
    pub fn parse(text: &str) -> Result<Host, String> {
        let shown = crate::edge::text::printable(text);
        let lower = text.to_ascii_lowercase();
        if let Some(inner) = lower.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| format!("the host \"{shown}\" has an unclosed ["))?;
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Host::Ip(IpAddr::V6(ip)))
                .map_err(|_| format!("the host \"{shown}\" is not an IPv6 address"));
        }
        if lower.contains(':') {
            return lower
                .parse::<Ipv6Addr>()
                .map(|ip| Host::Ip(IpAddr::V6(ip)))
                .map_err(|_| format!("the host \"{shown}\" is not an IPv6 address"));
        }
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        if name.is_empty() {
            return Err("the metric URI names no host".into());
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!(
                "the host \"{shown}\" has the character {:?}: a host is an IP address or a name of letters, digits, '-', '_' and '.' (IDN names in their xn-- form)",
                bad
            ));
        }
        if name.split('.').any(str::is_empty) {
            return Err(format!("the host \"{shown}\" has an empty label (..)"));
        }
        if ends_in_number(name) {
            return ipv4_number(name)
                .map(|ip| Host::Ip(IpAddr::V4(ip)))
                .ok_or_else(|| {
                    format!(
                        "the host \"{shown}\" is written as a number but is no IPv4 address: numeric names are read as addresses, never as service names"
                    )
                });
        }
        Ok(Host::Name(name.to_string()))
    }

    /// The IP address, when the host is one (IPv4-mapped IPv6 as IPv4).
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(canonical(*ip)),
            Host::Name(_) => None,
        }
    }

    /// The host as a URL needs it (`[::1]` for IPv6).
    pub fn url_host(&self) -> String {
        self.to_string()
    }
}

/// WHATWG URL's "ends in a number": the last label is all digits, or `0x` and hex
/// digits.
fn ends_in_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// WHATWG URL's IPv4 parser (as `inet_aton` reads numbers too): one to four parts,
/// each decimal, octal (leading `0`) or hex (`0x`); the last part fills the
/// remaining bytes.
fn ipv4_number(name: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut numbers = Vec::with_capacity(parts.len());
    for p in &parts {
        let n = if let Some(hex) = p.strip_prefix("0x") {
            if hex.is_empty() {
                0
            } else {
                u64::from_str_radix(hex, 16).ok()?
            }
        } else if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(&p[1..], 8).ok()?
        } else {
            p.parse::<u64>().ok()?
        };
        numbers.push(n);
    }
    let (last, first) = numbers.split_last()?;
    if first.iter().any(|&n| n > 255) || *last >= 256u64.pow(5 - numbers.len() as u32) {
        return None;
    }
    let mut value = *last;
    for (i, n) in first.iter().enumerate() {
        value += n << (8 * (3 - i));
    }
    Some(Ipv4Addr::from(u32::try_from(value).ok()?))
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address a socket
/// connects to; any other address as it is. (An IPv4-compatible address,
/// `::a.b.c.d`, is an IPv6 address of its own: a socket connects to it over IPv6.)
/// Checks and connections both use this form, so they always see one address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address is never reached unless `--metric-allow` lists it exactly:
/// link-local addresses (cloud metadata services answer at 169.254.169.254 and
/// `fd00:ec2::254`), the unspecified address, broadcast and multicast.
pub fn reserved(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) if v4.is_link_local() => {
            Some("a link-local address (169.254.0.0/16: cloud metadata services answer there)")
        }
        IpAddr::V4(v4) if v4.is_unspecified() => Some("the unspecified address 0.0.0.0"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        IpAddr::V4(v4) if v4.is_multicast() => Some("a multicast address"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => {
            Some("a link-local address (fe80::/10)")
        }
        IpAddr::V6(v6) if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => {
            Some("the cloud metadata address fd00:ec2::254")
        }
        IpAddr::V6(v6) if v6.is_unspecified() => Some("the unspecified address ::"),
        IpAddr::V6(v6) if v6.is_multicast() => Some("a multicast address"),
        // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
        IpAddr::V6(v6) if v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] => {
            let s = v6.segments();
            reserved(IpAddr::V4(Ipv4Addr::from(
                (u32::from(s[6]) << 16) | u32::from(s[7]),
            )))
        }
        _ => None,
    }
}

/// Where a rule's secret comes from: `secret-file=PATH` or `secret-env=NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A file (a Docker secret: `/run/secrets/NAME`).
    File(String),
    /// An environment variable of docker-microscale.
    Env(String),
}

impl SecretRef {
    /// The names a `--metric-secret NAME=...` binding may give it: the variable's
    /// name; the file's path, and NAME for `/run/secrets/NAME`.
    pub fn names(&self) -> Vec<&str> {
        match self {
            SecretRef::Env(v) => vec![v.as_str()],
            SecretRef::File(p) => {
                let mut names = vec![p.as_str()];
                if let Some(n) = p.strip_prefix("/run/secrets/")
                    && !n.contains('/')
                {
                    names.push(n);
                }
                names
            }
        }
    }

    /// The short name used in messages and suggested bindings: NAME for
    /// `/run/secrets/NAME`, else the path or the variable.
    pub fn name(&self) -> &str {
        self.names().last().copied().unwrap_or_default()
    }
}

impl fmt::Display for SecretRef {
    /// `secret-file=PATH` or `secret-env=NAME`, as the rule writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::File(p) => write!(f, "secret-file={}", crate::edge::text::printable(p)),
            SecretRef::Env(v) => write!(f, "secret-env={}", crate::edge::text::printable(v)),
        }
    }
}

/// A metric URI taken apart once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Lower-case scheme, e.g. `redis`.
    pub scheme: String,
    /// The host every check and the connection use (for `engine://`, the measure:
    /// `cpu` or `memory`).
    pub host: Host,
    /// The port, when the URI writes one.
    pub port: Option<u16>,
    /// `?tls=true`: the HTTP-based sources (`prometheus`, `nats`, `nsq`,
    /// `rabbitmq`) speak HTTPS.
    pub tls: bool,
    /// The URI without `secret-file`/`secret-env` (what the source reads its path
    /// and parameters from; never its host).
    pub uri: String,
    /// Where the secret comes from, when the rule names one.
    pub secret: Option<SecretRef>,
}

impl Target {
    /// The port connected to: the URI's, else the source's default (redis 6379,
    /// nats 8222 (monitoring), nsq 4151, rabbitmq 15672 (management), http and
    /// prometheus 80, https and `tls=true` 443).
    pub fn port_or_default(&self) -> u16 {
        if let Some(p) = self.port {
            return p;
        }
        match self.scheme.as_str() {
            "redis" | "rediss" => 6379,
            "nats" => 8222,
            "nsq" => 4151,
            "rabbitmq" => 15672,
            "https" => 443,
            _ if self.tls => 443,
            _ => 80,
        }
    }
}

/// A checked place to connect to: the target's host and port, and the addresses
/// that passed every check (for a name, what it resolved to). A source connects
/// only to these, and over TLS trusts what `tls` says (the operator's flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The host, as checked.
    pub host: Host,
    /// The port, as checked.
    pub port: u16,
    /// The addresses to connect to, in order; never empty.
    pub addrs: Vec<SocketAddr>,
    /// For a source over TLS: the CAs trusted and the client certificate sent
    /// (`--metric-tlscacert`, `--metric-tlscert`, `--metric-tlskey`).
    pub tls: std::sync::Arc<super::tls::MetricTls>,
}

impl Endpoint {
    /// An endpoint for an IP address (no resolution needed).
    #[cfg(test)]
    pub fn ip(ip: IpAddr, port: u16) -> Endpoint {
        Endpoint {
            host: Host::Ip(ip),
            port,
            addrs: vec![SocketAddr::new(ip, port)],
            tls: Default::default(),
        }
    }
}

/// Parses a metric URI into a [`Target`].
///
/// Errors (each before any connection): no `scheme://`; a blank or control
/// character anywhere; a `\` before the query (URL parsers disagree on where the
/// host ends); a URI the WHATWG parser refuses; a host two readings disagree on; a
/// password in the URI (secrets come from files or variables); a bad port; a secret
/// named twice, both as a file and a variable, in a file outside the secret
/// directories, or in a variable without the `MICROSCALE_SECRET_` prefix.
pub fn parse_target(uri: &str) -> Result<Target, String> {
    let uri = uri.trim();
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err("not a metric URI: expected SCHEME://HOST…".into());
    };
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(
            "the metric URI has a blank or control character: write it on one line, with spaces encoded as %20".into(),
        );
    }
    let scheme = scheme.to_ascii_lowercase();
    let before_query = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    if before_query.contains('\\') {
        return Err(
            "a \\ in the metric URI's host or path: URL parsers disagree on where its host ends (http reads \\ as /); write the path with / only, or encode a \\ as %5C".into(),
        );
    }
    // The reading a person (and every non-WHATWG client) makes: the authority ends
    // at the first / ? #, the host follows the last @.
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    // A password as a person meant it counts too (`redis://app:12/34@queue/0` parses
    // as host `app`, port 12): the decision of crate::edge::redact::split_userinfo.
    let meant =
        crate::edge::redact::split_userinfo(rest).is_some_and(|(at, _)| rest[..at].contains(':'));
    if userinfo.is_some_and(|u| u.contains(':')) || meant {
        return Err(
            "a password in the metric URI: put it in a file (a Docker secret) or an environment variable, and name that with the query parameter secret-file or secret-env (docs/metrics.md)".into(),
        );
    }
    let (host_text, port_text) = split_host_port(hostport);
    let host = Host::parse(host_text)?;
    let port = match port_text {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            format!(
                "bad port \"{}\" in the metric URI: a number from 1 to 65535",
                crate::edge::text::printable(p)
            )
        })?),
        None => None,
    };
    if scheme != "engine" {
        // The WHATWG reading (what reqwest connects to) must be the same host.
        let url = reqwest::Url::parse(uri).map_err(|e| {
            format!(
                "the metric URI is not a valid URL ({e}): {}",
                crate::edge::redact::redact_value(uri)
            )
        })?;
        let theirs = url.host_str().map(Host::parse).transpose()?;
        if theirs.as_ref() != Some(&host) || url.port().is_some_and(|p| Some(p) != port) {
            return Err(format!(
                "the metric URI's host is ambiguous: it reads as {host} but a URL parser reads {}: write a plain HOST[:PORT] after ://",
                theirs
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| "no host".into())
            ));
        }
    }
    // Take the secret parameters out of the query.
    let (before, query_and_fragment) = match uri.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (uri, None),
    };
    let mut secret = None;
    let mut tls = false;
    let mut kept = vec![];
    let mut fragment = "";
    if let Some(qf) = query_and_fragment {
        let (q, f) = match qf.find('#') {
            Some(i) => (&qf[..i], &qf[i..]),
            None => (qf, ""),
        };
        fragment = f;
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let named = match pair.split_once('=') {
                Some(("secret-file", v)) => SecretRef::File(crate::edge::redact::percent_decode(v)),
                Some(("secret-env", v)) => SecretRef::Env(crate::edge::redact::percent_decode(v)),
                Some(("tls", v)) => {
                    tls = matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes");
                    kept.push(pair);
                    continue;
                }
                _ => {
                    kept.push(pair);
                    continue;
                }
            };
            if secret.is_some() {
                return Err(
                    "the metric URI names a secret twice: give one secret-file or one secret-env"
                        .into(),
                );
            }
            secret = Some(named);
        }
    }
    match &secret {
        Some(SecretRef::File(path)) => check_secret_file(path)?,
        Some(SecretRef::Env(name)) => check_secret_env(name)?,
        None => {}
    }
    let uri = if kept.is_empty() {
        format!("{before}{fragment}")
    } else {
        format!("{before}?{}{fragment}", kept.join("&"))
    };
    Ok(Target {
        scheme,
        host,
        port,
        tls,
        uri,
        secret,
    })
}

/// `host[:port]` split; IPv6 in brackets keeps its colons, and so does a bare IPv6.
pub fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((_, tail)) => (&s[..s.len() - tail.len()], tail.strip_prefix(':')),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (s, None),
    }
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

fn outside_secret_dirs(path: &str, resolved: Option<&std::path::Path>) -> String {
    let dirs = secret_dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let ignored: Vec<String> = std::env::var("MICROSCALE_SECRET_DIRS")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty() && !d.starts_with('/'))
        .map(crate::edge::text::printable)
        .collect();
    let ignored = if ignored.is_empty() {
        String::new()
    } else {
        format!(
            "; MICROSCALE_SECRET_DIRS entries must be absolute paths, so {} {} ignored",
            ignored.join(", "),
            if ignored.len() > 1 { "were" } else { "was" }
        )
    };
    let via = resolved
        .map(|r| {
            format!(
                " (it resolves to {})",
                crate::edge::text::printable(&r.display().to_string())
            )
        })
        .unwrap_or_default();
    format!(
        "secret-file={}{via} is outside the secret directories ({dirs}{ignored}): a rule may only name a Docker secret (/run/secrets/NAME), or a file in a directory the operator lists in MICROSCALE_SECRET_DIRS",
        crate::edge::text::printable(path)
    )
}

/// The lexical check of a `secret-file=` path (the file is resolved again when it
/// is read, see [`super::secret`]).
fn check_secret_file(path: &str) -> Result<(), String> {
    use std::path::{Component, Path};
    let p = Path::new(path);
    let plain = p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if plain && secret_dirs().iter().any(|d| p.starts_with(d) && p != d) {
        return Ok(());
    }
    Err(outside_secret_dirs(path, None))
}

/// Resolves `path` (symbolic links and all) and checks that the file it reaches is
/// still inside a secret directory, itself resolved. Returns the resolved path.
pub fn resolve_secret_file(path: &str) -> Result<std::path::PathBuf, String> {
    check_secret_file(path)?;
    let real = std::fs::canonicalize(path).map_err(|e| {
        format!(
            "cannot read the secret file {}: {e}",
            crate::edge::text::printable(path)
        )
    })?;
    let inside = secret_dirs()
        .iter()
        .any(|d| std::fs::canonicalize(d).is_ok_and(|d| real.starts_with(&d) && real != d));
    if inside {
        Ok(real)
    } else {
        Err(outside_secret_dirs(path, Some(&real)))
    }
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
        "secret-env={}: a rule may only name environment variables whose names start with {SECRET_ENV_PREFIX} (or that the operator lists in MICROSCALE_SECRET_ENV), so that a service label cannot read the agent's other variables",
        crate::edge::text::printable(name)
    ))
}
