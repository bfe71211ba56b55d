//! Where a metric source may connect, and where a secret may go: the operator's
//! `--metric-allow` and `--metric-secret`, checked against the one parsed
//! [`Target`] before any connection, then against every address a name resolves to.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::address::{Endpoint, Host, SecretRef, Target, canonical, reserved, split_host_port};

/// A `HOST` or `HOST:PORT` entry of `--metric-allow` or `--metric-secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// The host, parsed as a metric URI's host is.
    pub host: Host,
    /// The port; `None` allows every port.
    pub port: Option<u16>,
}

impl HostPort {
    /// Parses `HOST`, `HOST:PORT`, `[IPv6]:PORT` or a bare IPv6 address; `flag`
    /// names the flag in errors.
    fn parse(entry: &str, flag: &str) -> Result<HostPort, String> {
        if entry.contains('=') {
            // Not echoed: `NAME=VALUE` text is masked in errors.
            return Err(format!(
                "invalid argument for \"{flag}\" flag: an entry holds \"=\": give HOST or HOST:PORT, comma-separated (a secret's hosts go in --metric-secret NAME=HOST[:PORT])"
            ));
        }
        Self::parse_bare(entry).map_err(|why| {
            format!(
                "invalid argument \"{}\" for \"{flag}\" flag: {why}",
                crate::edge::text::printable(entry)
            )
        })
    }

    /// [`HostPort::parse`] without the flag: the bare reason on error.
    fn parse_bare(entry: &str) -> Result<HostPort, String> {
        if entry.contains("://") || entry.contains('/') || entry.contains('@') {
            return Err("give HOST or HOST:PORT, comma-separated (no scheme, no path)".into());
        }
        if entry.contains('*') {
            return Err("wildcards are not supported; list each HOST or HOST:PORT".into());
        }
        let (host, port) = split_host_port(entry);
        let port = match port {
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                format!(
                    "the port \"{}\" is not a number from 1 to 65535",
                    crate::edge::text::printable(p)
                )
            })?),
            None => None,
        };
        let host = Host::parse(host)?;
        Ok(HostPort { host, port })
    }

    /// Whether this entry covers `host` on `port`.
    fn covers(&self, host: &Host, port: u16) -> bool {
        let same = match (self.host.ip(), host.ip()) {
            (Some(a), Some(b)) => a == b,
            _ => self.host == *host,
        };
        same && self.port.is_none_or(|p| p == port)
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

/// A `--metric-secret NAME=HOST[:PORT],...` binding: the only hosts the secret
/// NAME may be sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretBinding {
    /// A Docker secret's name (`/run/secrets/NAME`), a file's absolute path, or an
    /// environment variable's name.
    pub name: String,
    /// Where it may go.
    pub hosts: Vec<HostPort>,
}

/// Where a source may connect, and where each secret may go: the swarm's own
/// service names and loopback (the defaults), the hosts `--metric-allow` adds to
/// them (`--metric-allow-only`: those hosts only), and the `--metric-secret`
/// bindings.
#[derive(Debug, Clone, Default)]
pub struct Allow {
    /// `--metric-allow` entries: allowed besides the defaults (instead of them with
    /// [`Allow::only`]).
    pub listed: Vec<HostPort>,
    /// `--metric-allow-only`: only `listed` is allowed; the swarm's service names and
    /// loopback are not.
    pub only: bool,
    /// The swarm's service names (also allowed as `tasks.NAME`), allowed unless
    /// `only`.
    pub services: BTreeSet<String>,
    /// `--metric-secret` bindings. A secret without one is never sent.
    pub secrets: Vec<SecretBinding>,
    /// `--metric-tlscacert`, `--metric-tlscert`, `--metric-tlskey`: what a source
    /// over TLS trusts and sends ([`Endpoint::tls`]).
    pub tls: std::sync::Arc<super::tls::MetricTls>,
}

impl Allow {
    /// Parses `--metric-allow HOST[:PORT],...` values: hosts allowed besides the
    /// defaults (the swarm's `services` and loopback). Errors: an entry with a
    /// scheme, a path, a wildcard, blanks, a bad host or a bad port.
    pub fn parse(values: &[String], services: BTreeSet<String>) -> Result<Allow, String> {
        if values
            .iter()
            .any(|v| v.split(',').all(|e| e.trim().is_empty()))
        {
            return Err(
                "invalid argument \"\" for \"--metric-allow\" flag: give HOST or HOST:PORT, comma-separated; leave the flag out to allow only the defaults (the swarm's services and loopback)".into(),
            );
        }
        let mut listed = vec![];
        for v in values.iter().flat_map(|v| v.split(',')) {
            let v = v.trim();
            if !v.is_empty() {
                listed.push(HostPort::parse(v, "--metric-allow")?);
            }
        }
        Ok(Allow {
            listed,
            only: false,
            services: services
                .into_iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            secrets: vec![],
            tls: Default::default(),
        })
    }

    /// `--metric-allow-only`: when `only`, the listed hosts are the only ones allowed
    /// (not the swarm's services, not loopback). Errors: `only` without a
    /// `--metric-allow` entry, which would allow nothing.
    pub fn only_listed(mut self, only: bool) -> Result<Allow, String> {
        if only && self.listed.is_empty() {
            return Err("--metric-allow-only needs --metric-allow HOST[:PORT],...: it allows only the hosts listed there (without it, nothing could be read); leave it out to allow the swarm's services and loopback too".into());
        }
        self.only = only;
        Ok(self)
    }

    /// Adds `--metric-secret NAME=HOST[:PORT],...` bindings (the flag may be given
    /// several times). Errors: no `=`, a bad name, no host, a bad host or port.
    pub fn with_secrets(mut self, values: &[String]) -> Result<Allow, String> {
        for v in values {
            // The value is shown after the flag's name, where masking keeps it
            // (it names a secret and its hosts; it is no secret).
            let bad = |why: &str| {
                format!(
                    "invalid argument for \"--metric-secret\" flag: {why}, in --metric-secret {}; give NAME=HOST[:PORT],..., e.g. redis=queue:6379 for /run/secrets/redis, and repeat the flag for each secret",
                    crate::edge::text::printable(v)
                )
            };
            let Some((name, hosts)) = v.split_once('=') else {
                return Err(bad("no \"=\""));
            };
            let name = name.trim();
            let name_ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
                && (name.starts_with('/') || !name.contains('/'));
            if !name_ok {
                return Err(bad(
                    "NAME is a Docker secret's name, an absolute file path or an environment variable's name",
                ));
            }
            let mut parsed = vec![];
            for h in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                if h.contains('=') {
                    return Err(bad("one NAME=HOSTS per flag"));
                }
                parsed.push(HostPort::parse_bare(h).map_err(|why| bad(&why))?);
            }
            if parsed.is_empty() {
                return Err(bad(
                    "name at least one HOST[:PORT] the secret may be sent to",
                ));
            }
            self.secrets.push(SecretBinding {
                name: name.to_string(),
                hosts: parsed,
            });
        }
        Ok(self)
    }

    /// Whether a source may connect to `target` and send it the secret the target
    /// names, before any name is resolved. Errors say what was refused, why, and
    /// which flag allows it.
    pub fn check(&self, target: &Target) -> Result<(), String> {
        self.check_host(target)?;
        self.check_secret(target)
    }

    /// The host half of [`Allow::check`]: whether `target`'s host and port are
    /// allowed: a default (the swarm's services, `tasks.SERVICE`, loopback; not with
    /// `--metric-allow-only`) or a `--metric-allow` entry.
    pub fn check_host(&self, target: &Target) -> Result<(), String> {
        let (host, port) = (&target.host, target.port_or_default());
        let at = format!("{host}:{port}");
        let default = !self.only
            && match host {
                Host::Ip(ip) => canonical(*ip).is_loopback(),
                Host::Name(n) => {
                    n == "localhost"
                        || self.services.contains(n)
                        || n.strip_prefix("tasks.")
                            .is_some_and(|s| self.services.contains(s))
                }
            };
        if default || self.listed.iter().any(|e| e.covers(host, port)) {
            return Ok(());
        }
        let listed = self
            .listed
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(",");
        if self.only {
            return Err(format!(
                "{at} is not in --metric-allow ({listed}), and --metric-allow-only allows nothing else (not the swarm's services, not loopback); add it to --metric-allow"
            ));
        }
        // A service named like a number is not reached by that name.
        let named: Vec<String> = self
            .services
            .iter()
            .filter(|s| Host::parse(s).is_ok_and(|h| h.ip().is_some() && h.ip() == host.ip()))
            .map(|s| crate::edge::text::printable(s))
            .collect();
        let numeric = match named.len() {
            0 => String::new(),
            1 => format!(
                " (the service named {} is not reached by that name: a host written as a number is an address)",
                named[0]
            ),
            _ => format!(
                " (the services named {} are not reached by those names: a host written as a number is an address)",
                named.join(", ")
            ),
        };
        let from = if self.listed.is_empty() {
            "by default metrics are read only from the swarm's own services and loopback"
                .to_string()
        } else {
            format!(
                "metrics are read only from the swarm's own services, loopback and --metric-allow ({listed})"
            )
        };
        Err(format!(
            "{host} is not allowed{numeric}: {from}; allow it with --metric-allow {at}"
        ))
    }

    /// The secret half of [`Allow::check`]: whether the secret `target` names (if
    /// any) is bound to its host and port.
    pub fn check_secret(&self, target: &Target) -> Result<(), String> {
        let Some(secret) = &target.secret else {
            return Ok(());
        };
        let (host, port) = (&target.host, target.port_or_default());
        let names = secret.names();
        let bound: Vec<&SecretBinding> = self
            .secrets
            .iter()
            .filter(|b| names.contains(&b.name.as_str()))
            .collect();
        if bound
            .iter()
            .any(|b| b.hosts.iter().any(|h| h.covers(host, port)))
        {
            return Ok(());
        }
        let name = crate::edge::text::printable(secret.name());
        if bound.is_empty() {
            // A binding by the file's last name, for a file that is not a Docker
            // secret: NAME means /run/secrets/NAME.
            let near = match secret {
                SecretRef::File(p) => {
                    let base = p.rsplit('/').next().unwrap_or_default();
                    if self.secrets.iter().any(|b| b.name == base) {
                        format!(
                            " (--metric-secret {base}=... binds /run/secrets/{base}; for this file, NAME is its path)"
                        )
                    } else {
                        String::new()
                    }
                }
                SecretRef::Env(_) => String::new(),
            };
            return Err(format!(
                "the operator bound {secret} to no host{near}, so it is not sent to {host}:{port}: a label cannot choose where a secret goes; if {host}:{port} is meant to get it, add --metric-secret {name}={host}:{port} (docs/metrics.md, Secrets)"
            ));
        }
        let to = bound
            .iter()
            .flat_map(|b| b.hosts.iter().map(|h| h.to_string()))
            .collect::<Vec<_>>()
            .join(",");
        Err(format!(
            "--metric-secret binds {secret} to {to} only, so it is not sent to {host}:{port}: a label cannot choose where a secret goes; if {host}:{port} is meant to get it too, bind it: --metric-secret {}={to},{host}:{port}",
            crate::edge::text::printable(&bound[0].name)
        ))
    }

    /// Checks `target` ([`Allow::check`]), resolves its host when it is a name
    /// (within `timeout`), and checks every address: a link-local, metadata,
    /// unspecified, broadcast or multicast address is refused unless
    /// `--metric-allow` lists that exact address. Returns the only addresses a
    /// source may connect to.
    ///
    /// Errors: what [`Allow::check`] refuses; a name that does not resolve; a
    /// refused address (named, with why).
    pub async fn resolve(&self, target: &Target, timeout: Duration) -> Result<Endpoint, String> {
        self.check(target)?;
        let port = target.port_or_default();
        let addrs: Vec<SocketAddr> = match &target.host {
            Host::Ip(ip) => vec![SocketAddr::new(canonical(*ip), port)],
            Host::Name(name) => {
                let lookup = tokio::net::lookup_host((name.as_str(), port));
                match tokio::time::timeout(timeout, lookup).await {
                    Ok(Ok(found)) => {
                        let mut v: Vec<SocketAddr> = vec![];
                        for a in found {
                            let a = SocketAddr::new(canonical(a.ip()), a.port());
                            if !v.contains(&a) {
                                v.push(a);
                            }
                        }
                        v
                    }
                    Ok(Err(e)) => {
                        return Err(format!(
                            "the host {name} does not resolve ({e}): check the name (a service name resolves only on the swarm's networks)"
                        ));
                    }
                    Err(_) => {
                        return Err(format!(
                            "the host {name} did not resolve within {}",
                            humantime::format_duration(timeout)
                        ));
                    }
                }
            }
        };
        if addrs.is_empty() {
            return Err(format!("the host {} resolves to no address", target.host));
        }
        for a in &addrs {
            self.check_address(&target.host, a.ip(), port)?;
        }
        // The very address checked is the one connected to.
        let host = match &target.host {
            Host::Ip(ip) => Host::Ip(canonical(*ip)),
            name => name.clone(),
        };
        Ok(Endpoint {
            host,
            port,
            addrs,
            tls: self.tls.clone(),
        })
    }

    /// Refuses a reserved address ([`reserved`]) unless `--metric-allow` lists it.
    fn check_address(&self, host: &Host, ip: IpAddr, port: u16) -> Result<(), String> {
        let Some(why) = reserved(ip) else {
            return Ok(());
        };
        let listed = self
            .listed
            .iter()
            .any(|e| matches!(e.host, Host::Ip(_)) && e.covers(&Host::Ip(ip), port));
        if listed {
            return Ok(());
        }
        let what = match host {
            Host::Ip(_) => format!("{host}"),
            Host::Name(_) => format!("{host} resolves to {}", Host::Ip(ip)),
        };
        Err(format!(
            "{what}, {why}: refused; if that address is really meant, list it in --metric-allow {}:{port}",
            Host::Ip(ip)
        ))
    }
}

/// Where metrics may be read from and where their secrets may go: the flags of every
/// command that reads metrics (`metric`, `status --metrics`, `plan`, `apply`, `run`)
/// and of `rules check` (docs/metrics.md, Threat model).
#[derive(Debug, Clone, Default, Args)]
pub struct MetricAccess {
    /// More hosts metrics may be read from, HOST[:PORT],...; added to the defaults: the swarm's services (and tasks.SERVICE) and loopback
    #[arg(long = "metric-allow", value_name = "list")]
    pub metric_allow: Vec<String>,

    /// Allow only the --metric-allow hosts: not the swarm's services, not loopback
    #[arg(long = "metric-allow-only", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = crate::edge::argv::go_bool, value_name = "")]
    pub metric_allow_only: Option<bool>,

    /// Bind a secret to the hosts it may be sent to, NAME=HOST[:PORT],... (NAME: /run/secrets/NAME, a file path or a secret-env variable); a rule's secret goes nowhere else
    #[arg(long = "metric-secret", value_name = "binding")]
    pub metric_secret: Vec<String>,

    /// Trust the CA certificates in this PEM file, besides the system's roots, for metric sources over TLS (rediss://, https://, tls=true)
    #[arg(long = "metric-tlscacert", value_name = "file")]
    pub metric_tlscacert: Option<PathBuf>,

    /// Send this client certificate (PEM) to metric sources over TLS that ask for one; needs --metric-tlskey
    #[arg(long = "metric-tlscert", value_name = "file")]
    pub metric_tlscert: Option<PathBuf>,

    /// The private key (PEM, unencrypted) of --metric-tlscert
    #[arg(long = "metric-tlskey", value_name = "file")]
    pub metric_tlskey: Option<PathBuf>,
}

impl MetricAccess {
    /// The checked allow-list, secret bindings and TLS settings (the CA and client
    /// certificate files are read here, each time); `services` are the swarm's
    /// service names (allowed by default, with loopback). Errors: a bad
    /// `--metric-allow` or `--metric-secret` value, `--metric-allow-only` without
    /// `--metric-allow`, a TLS file that cannot be used (usage errors).
    pub fn allow(
        &self,
        services: std::collections::BTreeSet<String>,
    ) -> Result<crate::metrics::Allow, String> {
        let mut allow = crate::metrics::Allow::parse(&self.metric_allow, services)?
            .only_listed(self.metric_allow_only == Some(true))?
            .with_secrets(&self.metric_secret)?;
        allow.tls = std::sync::Arc::new(crate::metrics::tls::MetricTls::load(
            self.metric_tlscacert.as_deref(),
            self.metric_tlscert.as_deref(),
            self.metric_tlskey.as_deref(),
        )?);
        Ok(allow)
    }

    /// Whether the swarm's service names are needed: they are allowed unless
    /// `--metric-allow-only`.
    pub fn needs_services(&self) -> bool {
        self.metric_allow_only != Some(true)
    }
}
