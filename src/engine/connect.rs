//! Which engine to talk to, resolved exactly as the docker CLI resolves it.
//!
//! Precedence (docker/cli `cli/command/cli.go`, `resolveContextName`):
//! 1. `--context NAME`
//! 2. `-H/--host`
//! 3. `DOCKER_HOST`
//! 4. `DOCKER_CONTEXT`
//! 5. `currentContext` in `config.json` (config dir: `--config`, else `DOCKER_CONFIG`,
//!    else `~/.docker`)
//! 6. the default socket, `unix:///var/run/docker.sock`
//!
//! Contexts are read from the on-disk store: `contexts/meta/<sha256 of name>/meta.json`
//! and the TLS material in `contexts/tls/<sha256 of name>/docker/{ca,cert,key}.pem`.
//! bollard has no context support, so this module is ours.

use std::fmt;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::edge::argv::{any_path, go_bool};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The default engine address on Linux.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The environment variables the docker CLI reads for the connection.
///
/// Taken from the process once ([`EnvVars::from_process`]); tests build it by hand.
/// Empty values count as unset, as in the docker CLI.
#[derive(Debug, Clone, Default)]
pub struct EnvVars {
    /// `DOCKER_HOST`
    pub docker_host: Option<String>,
    /// `DOCKER_CONTEXT`
    pub docker_context: Option<String>,
    /// `DOCKER_CONFIG`: the config directory.
    pub docker_config: Option<String>,
    /// `DOCKER_TLS_VERIFY`: any non-empty value turns verification on.
    pub docker_tls_verify: Option<String>,
    /// `DOCKER_TLS`: any non-empty value turns TLS on.
    pub docker_tls: Option<String>,
    /// `DOCKER_CERT_PATH`: where `ca.pem`, `cert.pem` and `key.pem` are looked for.
    pub docker_cert_path: Option<String>,
    /// `HOME`
    pub home: Option<String>,
}

impl EnvVars {
    /// Reads the variables from the process environment.
    ///
    /// Errors: a variable that is set but not valid UTF-8 (it is named); ignoring it
    /// would silently pick another engine.
    pub fn from_process() -> Result<Self, String> {
        let get = |name: &str| match std::env::var(name) {
            Ok(v) => Ok(Some(v).filter(|v| !v.is_empty())),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "the environment variable {name} is not valid UTF-8; fix or unset it"
            )),
        };
        Ok(EnvVars {
            docker_host: get("DOCKER_HOST")?,
            docker_context: get("DOCKER_CONTEXT")?,
            docker_config: get("DOCKER_CONFIG")?,
            docker_tls_verify: get("DOCKER_TLS_VERIFY")?,
            docker_tls: get("DOCKER_TLS")?,
            docker_cert_path: get("DOCKER_CERT_PATH")?,
            home: get("HOME")?,
        })
    }
}

/// Where the chosen context name came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextOrigin {
    /// `--context NAME`
    Flag,
    /// `DOCKER_CONTEXT`
    Env,
    /// `currentContext` in this `config.json`.
    ConfigFile(PathBuf),
}

/// Where the engine address came from; printed in connection errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSource {
    /// `-H/--host`
    Flag,
    /// `DOCKER_HOST`
    Env,
    /// A context from the store.
    Context { name: String, origin: ContextOrigin },
    /// Nothing was set: the default socket.
    Default,
}

impl fmt::Display for HostSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostSource::Flag => write!(f, "from -H/--host"),
            HostSource::Env => write!(f, "from DOCKER_HOST"),
            HostSource::Default => write!(f, "the default socket"),
            HostSource::Context { name, origin } => {
                write!(f, "from context \"{name}\", {origin}")
            }
        }
    }
}

/// TLS settings for a `tcp://` engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// CA bundle that signs the engine's certificate (PEM); `None`: system roots.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    pub key: Option<PathBuf>,
    /// Whether the engine's certificate is verified (`--tlsverify`; a context's
    /// `SkipTLSVerify` turns it off).
    pub verify: bool,
}

/// The resolved engine endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The engine address as given: `unix:///path`, `tcp://host:port`, `ssh://...`.
    pub host: String,
    /// TLS settings, when TLS is on.
    pub tls: Option<TlsSettings>,
    /// Where the address came from.
    pub source: HostSource,
}

/// A connection setting that cannot be used. Each message says what and how to fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// Same text as the docker CLI.
    #[error("conflicting options: cannot specify both --host and --context")]
    HostAndContext,
    /// Same text as the docker CLI.
    #[error("specify only one -H")]
    SeveralHosts,
    #[error(
        "context \"{name}\" does not exist ({origin}): looked for {path}\nList the contexts with `docker context ls`, or create it with `docker context create`."
    )]
    ContextNotFound {
        name: String,
        origin: String,
        path: PathBuf,
    },
    #[error(
        "context \"{name}\": cannot read {path}: {reason}\nRecreate it with `docker context rm {name}` and `docker context create {name} ...`."
    )]
    ContextUnreadable {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "context \"{name}\" has no docker endpoint in {path}\nSet one with `docker context update {name} --docker host=...`, or remove the context with `docker context rm {name}`."
    )]
    ContextNoDockerEndpoint { name: String, path: PathBuf },
    #[error("cannot determine the config directory: set HOME, DOCKER_CONFIG or --config")]
    NoConfigDir,
    /// A TLS file (`ca.pem`, `cert.pem`, `key.pem`) that exists but is no regular file
    /// (a FIFO, a directory, a socket, a device, a symlink to one or to nothing), or
    /// that cannot be looked at. Taking it for absent would connect without TLS.
    #[error(
        "{path} is {what}, not a PEM file ({origin})\nPut the PEM file there, or remove it: it is not taken as absent, which could connect without TLS."
    )]
    TlsFileNotRegular {
        path: PathBuf,
        what: String,
        origin: String,
    },
    #[error("invalid engine address \"{host}\" ({origin}): {reason}")]
    BadHost {
        host: String,
        origin: String,
        reason: String,
    },
}

impl fmt::Display for ContextOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextOrigin::Flag => write!(f, "set by --context"),
            ContextOrigin::Env => write!(f, "set by DOCKER_CONTEXT"),
            ContextOrigin::ConfigFile(p) => write!(f, "the current context in {}", p.display()),
        }
    }
}

/// Normalises an engine address the way the docker CLI does (`opts.ParseHost`):
/// surrounding blanks are ignored; empty means the default socket; no scheme means
/// `tcp://`; `tcp://` gets `localhost` and port 2375 when they are missing; `unix://`
/// alone is the default socket; `ssh://`, `fd://` and `npipe://` are kept as given.
/// User info in a `tcp://` address is dropped.
///
/// Errors (the docker CLI's "invalid bind address format"): another scheme, a bad
/// port, a nested `://`, and a base path after `tcp://host:port`, which bollard
/// cannot prefix to requests.
pub fn parse_host(raw: &str) -> Result<String, String> {
    let h = raw.trim();
    if h.is_empty() {
        return Ok(DEFAULT_HOST.to_string());
    }
    if h.starts_with('/') {
        return Err(format!(
            "a bare path is not an address; did you mean unix://{h}?"
        ));
    }
    let (proto, addr) = h.split_once("://").unwrap_or(("tcp", h));
    if addr.contains("://") {
        return Err(format!("expected one {proto}:// scheme"));
    }
    match proto {
        "unix" if addr.is_empty() => Ok(DEFAULT_HOST.to_string()),
        "unix" => Ok(format!("unix://{addr}")),
        "ssh" | "fd" | "npipe" => Ok(h.to_string()),
        "tcp" => {
            // The docker CLI drops user info, a query and a fragment.
            let addr = addr.split(['?', '#']).next().unwrap_or_default();
            let addr = addr.rsplit_once('@').map_or(addr, |(_, a)| a);
            let (hostport, path) = addr.split_once('/').unwrap_or((addr, ""));
            if !path.trim_matches('/').is_empty() {
                return Err("a path after tcp://HOST:PORT is not supported".into());
            }
            // A bare IPv6 address (`tcp://::1`) gets brackets and the default port.
            let bracketed;
            let hostport = if hostport.parse::<std::net::Ipv6Addr>().is_ok() {
                bracketed = format!("[{hostport}]");
                bracketed.as_str()
            } else {
                hostport
            };
            let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
                let (ip, after) = v6
                    .split_once(']')
                    .ok_or("an IPv6 address needs a closing ]")?;
                if ip.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(format!("\"[{ip}]\" is not an IPv6 address"));
                }
                let port = match after {
                    "" => "",
                    p => p
                        .strip_prefix(':')
                        .ok_or("expected :PORT after the IPv6 address")?,
                };
                (format!("[{ip}]"), port)
            } else {
                match hostport.rsplit_once(':') {
                    Some((h, p)) => (h.to_string(), p),
                    None => (hostport.to_string(), ""),
                }
            };
            if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err("the host name has blanks or control characters".into());
            }
            if !host.starts_with('[') && host.contains(':') {
                return Err("an IPv6 address needs brackets, e.g. tcp://[::1]:2375".into());
            }
            let host = if host.is_empty() {
                "localhost".to_string()
            } else {
                host
            };
            let port = if port.is_empty() { "2375" } else { port };
            let port: u16 = port
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or(format!("bad port \"{port}\" (expected 1-65535)"))?;
            Ok(format!("tcp://{host}:{port}"))
        }
        other => Err(format!(
            "unsupported scheme \"{other}://\"; use unix://, tcp:// or ssh://"
        )),
    }
}

/// The docker config directory: `--config`, else `DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir(opts: &GlobalOptions, env: &EnvVars) -> Result<PathBuf, ResolveError> {
    if let Some(dir) = opts.config.as_ref().filter(|d| !d.as_os_str().is_empty()) {
        return Ok(dir.clone());
    }
    if let Some(dir) = &env.docker_config {
        return Ok(PathBuf::from(dir));
    }
    env.home
        .as_ref()
        .map(|h| Path::new(h).join(".docker"))
        .ok_or(ResolveError::NoConfigDir)
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(rename = "currentContext", default)]
    current_context: Option<String>,
}

/// Reads `currentContext` from `config.json`. A missing file is no context; an
/// unreadable one is reported as a warning and ignored, as the docker CLI does.
fn current_context(config_dir: &Path, warn: &mut Vec<String>) -> Option<(String, PathBuf)> {
    let path = config_dir.join("config.json");
    let text = match crate::edge::fsutil::read_config_text(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn.push(format!(
                "WARNING: Error loading config file: {}: {e}",
                path.display()
            ));
            return None;
        }
    };
    if text.trim().is_empty() {
        return None;
    }
    match serde_json::from_str::<ConfigFile>(&text) {
        Ok(cfg) => cfg
            .current_context
            .filter(|c| !c.is_empty())
            .map(|c| (c, path)),
        Err(e) => {
            warn.push(format!(
                "WARNING: Error loading config file: {}: {e}",
                path.display()
            ));
            None
        }
    }
}

/// The directory name of a context in the store: the hex SHA-256 of its name.
pub fn context_dir_name(name: &str) -> String {
    hex::encode(Sha256::digest(name.as_bytes()))
}

#[derive(Deserialize)]
struct ContextMeta {
    #[serde(rename = "Endpoints", default)]
    endpoints: std::collections::HashMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct DockerEndpointMeta {
    #[serde(rename = "Host", default)]
    host: String,
    #[serde(rename = "SkipTLSVerify", default)]
    skip_tls_verify: bool,
}

fn load_context(
    config_dir: &Path,
    name: &str,
    origin: ContextOrigin,
) -> Result<Endpoint, ResolveError> {
    let hash = context_dir_name(name);
    let meta_path = config_dir
        .join("contexts")
        .join("meta")
        .join(&hash)
        .join("meta.json");
    let text = match crate::edge::fsutil::read_config_text(&meta_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ResolveError::ContextNotFound {
                name: name.into(),
                origin: origin.to_string(),
                path: meta_path,
            });
        }
        Err(e) => {
            return Err(ResolveError::ContextUnreadable {
                name: name.into(),
                path: meta_path,
                reason: e.to_string(),
            });
        }
    };
    let meta: ContextMeta =
        serde_json::from_str(&text).map_err(|e| ResolveError::ContextUnreadable {
            name: name.into(),
            path: meta_path.clone(),
            reason: e.to_string(),
        })?;
    let docker = meta.endpoints.get("docker").cloned().ok_or_else(|| {
        ResolveError::ContextNoDockerEndpoint {
            name: name.into(),
            path: meta_path.clone(),
        }
    })?;
    let docker: DockerEndpointMeta =
        serde_json::from_value(docker).map_err(|e| ResolveError::ContextUnreadable {
            name: name.into(),
            path: meta_path.clone(),
            reason: format!("Endpoints.docker: {e}"),
        })?;
    let tls_dir = config_dir
        .join("contexts")
        .join("tls")
        .join(&hash)
        .join("docker");
    let origin_text = format!("the TLS material of context \"{name}\"");
    let file = |f: &str| tls_file(tls_dir.join(f), &origin_text);
    let (ca, cert, key) = (file("ca.pem")?, file("cert.pem")?, file("key.pem")?);
    let has_tls_data = ca.is_some() || cert.is_some() || key.is_some();
    let tls = (has_tls_data || docker.skip_tls_verify).then_some(TlsSettings {
        ca,
        cert,
        key,
        verify: !docker.skip_tls_verify,
    });
    let source = HostSource::Context {
        name: name.into(),
        origin,
    };
    let host = parse_host(&docker.host).map_err(|reason| ResolveError::BadHost {
        host: crate::edge::redact::redact_value(&docker.host),
        origin: source.to_string(),
        reason,
    })?;
    Ok(Endpoint { host, tls, source })
}

/// `Some(path)` when a regular file is there, `None` when nothing is; anything else
/// there (a FIFO, a directory, a socket, a device, a symlink to one or to nothing, an
/// unreadable directory) is an error naming the path and what it is. Only metadata
/// is read: a FIFO never blocks. `origin` says where the path came from.
fn tls_file(path: PathBuf, origin: &str) -> Result<Option<PathBuf>, ResolveError> {
    match crate::edge::fsutil::regular_file_present(&path) {
        Ok(true) => Ok(Some(path)),
        Ok(false) => Ok(None),
        Err(e) => Err(ResolveError::TlsFileNotRegular {
            what: if e.kind() == std::io::ErrorKind::InvalidInput {
                e.to_string()
            } else {
                format!("not readable ({e})")
            },
            path,
            origin: origin.to_string(),
        }),
    }
}

/// TLS from the global flags and the environment, for the default context
/// (docker/cli `cli/flags/options.go`, `SetDefaultOptions`).
///
/// Errors: a default `cert.pem` or `key.pem` that exists but is not a regular file
/// ([`ResolveError::TlsFileNotRegular`]); a `ca.pem` is always used, and read later.
fn flag_tls(opts: &GlobalOptions, env: &EnvVars) -> Result<Option<TlsSettings>, ResolveError> {
    // Giving --tlsverify at all, even =false, turns TLS on (docker/cli SetDefaultOptions).
    let verify = opts.tlsverify.unwrap_or(env.docker_tls_verify.is_some());
    let tls = opts.tls.unwrap_or(env.docker_tls.is_some()) || verify || opts.tlsverify.is_some();
    if !tls {
        return Ok(None);
    }
    // As in the docker CLI, `--config` does not move the default certificate
    // directory: it is DOCKER_CERT_PATH, else DOCKER_CONFIG, else ~/.docker.
    let cert_dir = env
        .docker_cert_path
        .as_ref()
        .or(env.docker_config.as_ref())
        .map(PathBuf::from)
        .or_else(|| env.home.as_ref().map(|h| Path::new(h).join(".docker")))
        .unwrap_or_default();
    // As in the docker CLI: a path given by flag is used as is (and must exist); the
    // default cert.pem and key.pem are used only when present, so that an engine that
    // does not ask for client certificates works without them.
    // Present means a regular file: a FIFO or a directory there is an error, not
    // "absent".
    let origin = "the default TLS files, in DOCKER_CERT_PATH, else the docker config directory";
    let pick = |flag: &Option<PathBuf>, default: &str| match flag {
        Some(p) => Ok(Some(p.clone())),
        None => tls_file(cert_dir.join(default), origin),
    };
    Ok(Some(TlsSettings {
        ca: Some(
            opts.tlscacert
                .clone()
                .unwrap_or_else(|| cert_dir.join("ca.pem")),
        ),
        cert: pick(&opts.tlscert, "cert.pem")?,
        key: pick(&opts.tlskey, "key.pem")?,
        verify,
    }))
}

/// Resolves the engine endpoint from the global flags and the environment.
///
/// `warnings` receives non-fatal notes (an unreadable `config.json`), to print on
/// stderr. Errors: `--host` with `--context`, several `-H`, and a context that is
/// missing or unreadable in the store.
pub fn resolve(
    opts: &GlobalOptions,
    env: &EnvVars,
    warnings: &mut Vec<String>,
) -> Result<Endpoint, ResolveError> {
    // An empty --context counts as unset, as in the docker CLI.
    let flag_context = opts.context.as_deref().filter(|c| !c.is_empty());
    if flag_context.is_some() && !opts.host.is_empty() {
        return Err(ResolveError::HostAndContext);
    }
    if opts.host.len() > 1 {
        return Err(ResolveError::SeveralHosts);
    }
    let cfg_dir = config_dir(opts, env);

    let context = if let Some(name) = flag_context {
        Some((name.to_string(), ContextOrigin::Flag))
    } else if !opts.host.is_empty() || env.docker_host.is_some() {
        None
    } else if let Some(name) = &env.docker_context {
        Some((name.clone(), ContextOrigin::Env))
    } else if let Ok(dir) = &cfg_dir {
        current_context(dir, warnings).map(|(n, p)| (n, ContextOrigin::ConfigFile(p)))
    } else {
        None
    };

    if let Some((name, origin)) = context.filter(|(n, _)| n != "default") {
        return load_context(&cfg_dir?, &name, origin);
    }

    let (raw, source) = if let Some(h) = opts.host.first() {
        (h.clone(), HostSource::Flag)
    } else if let Some(h) = &env.docker_host {
        (h.clone(), HostSource::Env)
    } else {
        (DEFAULT_HOST.to_string(), HostSource::Default)
    };
    let host = parse_host(&raw).map_err(|reason| ResolveError::BadHost {
        host: crate::edge::redact::redact_value(&raw),
        origin: source.to_string(),
        reason,
    })?;
    Ok(Endpoint {
        host,
        tls: flag_tls(opts, env)?,
        source,
    })
}

/// The docker CLI's global options, as they arrive before the plugin name.
///
/// Semantics follow docker/cli `cli/flags/options.go`; they are hidden from help
/// because they belong to `docker`, not to the plugin.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalOptions {
    /// Daemon socket to connect to (unix://PATH, tcp://HOST:PORT, ssh://...)
    #[arg(short = 'H', long = "host", value_name = "list", hide = true)]
    pub host: Vec<String>,

    /// Name of the context to use to connect to the daemon
    #[arg(short = 'c', long = "context", value_name = "string", hide = true)]
    pub context: Option<String>,

    /// Location of client config files (default ~/.docker)
    #[arg(long = "config", value_name = "string", hide = true, value_parser = any_path)]
    pub config: Option<PathBuf>,

    /// Set the logging level ("trace", "debug", "info", "warn", "error", "fatal", "panic")
    #[arg(
        short = 'l',
        long = "log-level",
        value_name = "string",
        hide = true,
        ignore_case = true,
        value_parser = ["trace", "debug", "info", "warn", "error", "fatal", "panic"]
    )]
    pub log_level: Option<String>,

    /// Enable debug mode (`-D`, `--debug`, `--debug=false`)
    #[arg(short = 'D', long = "debug", hide = true, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub debug: Option<bool>,

    /// Use TLS; implied by --tlsverify (`--tls=false` allowed)
    #[arg(long = "tls", hide = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool)]
    pub tls: Option<bool>,

    /// Use TLS and verify the remote (default from DOCKER_TLS_VERIFY); given at all,
    /// even as `--tlsverify=false`, it turns TLS on
    #[arg(long = "tlsverify", hide = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool)]
    pub tlsverify: Option<bool>,

    /// Trust certs signed only by this CA (default $DOCKER_CERT_PATH/ca.pem)
    #[arg(long = "tlscacert", value_name = "string", hide = true)]
    pub tlscacert: Option<PathBuf>,

    /// Path to TLS certificate file (default $DOCKER_CERT_PATH/cert.pem)
    #[arg(long = "tlscert", value_name = "string", hide = true)]
    pub tlscert: Option<PathBuf>,

    /// Path to TLS key file (default $DOCKER_CERT_PATH/key.pem)
    #[arg(long = "tlskey", value_name = "string", hide = true)]
    pub tlskey: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn opts() -> GlobalOptions {
        GlobalOptions::default()
    }

    fn env_in(dir: &Path) -> EnvVars {
        EnvVars {
            docker_config: Some(dir.to_string_lossy().into()),
            ..Default::default()
        }
    }

    fn write_context(dir: &Path, name: &str, host: &str, skip_verify: bool) {
        let meta = dir.join("contexts/meta").join(context_dir_name(name));
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            format!(
                r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":{skip_verify}}}}}}}"#
            ),
        )
        .unwrap();
    }

    #[test]
    fn context_dir_is_sha256_of_name() {
        // echo -n default | sha256sum
        assert_eq!(
            context_dir_name("default"),
            "37a8eec1ce19687d132fe29051dca629d164e2c4958ba141d5f4133a33f0688f"
        );
    }

    #[test]
    fn default_socket_when_nothing_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let ep = resolve(&opts(), &env_in(dir.path()), &mut vec![]).unwrap();
        assert_eq!(ep.host, DEFAULT_HOST);
        assert_eq!(ep.source, HostSource::Default);
        assert_eq!(ep.tls, None);
    }

    #[test]
    fn precedence_follows_the_docker_cli() {
        let dir = tempfile::tempdir().unwrap();
        write_context(dir.path(), "flagctx", "unix:///flag.sock", false);
        write_context(dir.path(), "envctx", "unix:///env.sock", false);
        write_context(dir.path(), "cfgctx", "unix:///cfg.sock", false);
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"currentContext":"cfgctx"}"#,
        )
        .unwrap();
        let mut env = env_in(dir.path());

        // 5. currentContext in config.json
        let ep = resolve(&opts(), &env, &mut vec![]).unwrap();
        assert_eq!(ep.host, "unix:///cfg.sock");
        assert!(matches!(
            ep.source,
            HostSource::Context {
                origin: ContextOrigin::ConfigFile(_),
                ..
            }
        ));

        // 4. DOCKER_CONTEXT beats config.json
        env.docker_context = Some("envctx".into());
        let ep = resolve(&opts(), &env, &mut vec![]).unwrap();
        assert_eq!(ep.host, "unix:///env.sock");

        // 3. DOCKER_HOST beats DOCKER_CONTEXT
        env.docker_host = Some("unix:///dockerhost.sock".into());
        let ep = resolve(&opts(), &env, &mut vec![]).unwrap();
        assert_eq!(ep.host, "unix:///dockerhost.sock");
        assert_eq!(ep.source, HostSource::Env);

        // 2. -H beats DOCKER_HOST
        let mut o = opts();
        o.host = vec!["unix:///h.sock".into()];
        let ep = resolve(&o, &env, &mut vec![]).unwrap();
        assert_eq!(ep.host, "unix:///h.sock");
        assert_eq!(ep.source, HostSource::Flag);

        // 1. --context beats everything (but not together with -H)
        let mut o = opts();
        o.context = Some("flagctx".into());
        let ep = resolve(&o, &env, &mut vec![]).unwrap();
        assert_eq!(ep.host, "unix:///flag.sock");
        o.host = vec!["unix:///h.sock".into()];
        assert_eq!(
            resolve(&o, &env, &mut vec![]),
            Err(ResolveError::HostAndContext)
        );
    }

    #[test]
    fn the_default_context_name_means_flags_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts();
        o.context = Some("default".into());
        let ep = resolve(&o, &env_in(dir.path()), &mut vec![]).unwrap();
        assert_eq!(ep.host, DEFAULT_HOST);
    }

    #[test]
    fn missing_context_names_the_path_and_how_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts();
        o.context = Some("nope".into());
        let err = resolve(&o, &env_in(dir.path()), &mut vec![]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("context \"nope\" does not exist"), "{msg}");
        assert!(msg.contains("docker context ls"), "{msg}");
    }

    #[test]
    fn broken_config_json_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let mut warnings = vec![];
        let ep = resolve(&opts(), &env_in(dir.path()), &mut warnings).unwrap();
        assert_eq!(ep.host, DEFAULT_HOST);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("config.json"));
    }

    #[test]
    fn context_tls_material_and_skip_verify() {
        let dir = tempfile::tempdir().unwrap();
        write_context(dir.path(), "remote", "tcp://10.0.0.1:2376", true);
        let tls = dir
            .path()
            .join("contexts/tls")
            .join(context_dir_name("remote"))
            .join("docker");
        std::fs::create_dir_all(&tls).unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(tls.join(f), "x").unwrap();
        }
        let mut o = opts();
        o.context = Some("remote".into());
        let ep = resolve(&o, &env_in(dir.path()), &mut vec![]).unwrap();
        let t = ep.tls.unwrap();
        assert!(!t.verify);
        assert_eq!(t.ca, Some(tls.join("ca.pem")));
        assert_eq!(t.key, Some(tls.join("key.pem")));
    }

    fn mkfifo(path: &Path) {
        let st = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success(), "mkfifo {}", path.display());
    }

    /// Issue 13 item 8: a context's TLS file that is a FIFO, a directory, a symlink to a
    /// FIFO or to nothing is an error naming the path and what it is, at once (no open,
    /// no hang), and never "absent" (which would connect over plain TCP).
    #[test]
    fn context_tls_files_that_are_not_regular_files_are_errors_not_absent() {
        type Make = fn(&Path);
        let cases: [(&str, Make, &str); 5] = [
            ("ca.pem", |p| mkfifo(p), "a FIFO (named pipe)"),
            ("ca.pem", |p| std::fs::create_dir(p).unwrap(), "a directory"),
            ("cert.pem", |p| mkfifo(p), "a FIFO (named pipe)"),
            (
                "key.pem",
                |p| {
                    let fifo = p.with_extension("fifo");
                    mkfifo(&fifo);
                    std::os::unix::fs::symlink(&fifo, p).unwrap();
                },
                "a FIFO (named pipe)",
            ),
            (
                "ca.pem",
                |p| std::os::unix::fs::symlink(p.with_extension("gone"), p).unwrap(),
                "a symlink to nothing",
            ),
        ];
        for (file, make, what) in cases {
            let dir = tempfile::tempdir().unwrap();
            write_context(dir.path(), "remote", "tcp://127.0.0.1:2376", false);
            let tls = dir
                .path()
                .join("contexts/tls")
                .join(context_dir_name("remote"))
                .join("docker");
            std::fs::create_dir_all(&tls).unwrap();
            let path = tls.join(file);
            make(&path);
            let mut o = opts();
            o.context = Some("remote".into());
            let start = std::time::Instant::now();
            let err = resolve(&o, &env_in(dir.path()), &mut vec![]).unwrap_err();
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{file}: took {:?}",
                start.elapsed()
            );
            let text = err.to_string();
            assert!(
                matches!(err, ResolveError::TlsFileNotRegular { .. }),
                "{text}"
            );
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(what), "{file}: {text}");
            assert!(text.contains("context \"remote\""), "{text}");
            assert!(
                text.contains("Put the PEM file there, or remove it"),
                "{text}"
            );
        }
    }

    /// The same for the default `cert.pem`/`key.pem` in DOCKER_CERT_PATH, and reading a
    /// FIFO given as the CA never blocks.
    #[test]
    fn default_cert_files_that_are_fifos_are_errors_and_never_block() {
        let dir = tempfile::tempdir().unwrap();
        mkfifo(&dir.path().join("cert.pem"));
        let env = EnvVars {
            docker_host: Some("tcp://127.0.0.1:2376".into()),
            docker_tls_verify: Some("1".into()),
            docker_cert_path: Some(dir.path().to_string_lossy().into_owned()),
            ..env_in(dir.path())
        };
        let err = resolve(&opts(), &env, &mut vec![]).unwrap_err().to_string();
        assert!(err.contains("cert.pem is a FIFO (named pipe)"), "{err}");
        assert!(err.contains("DOCKER_CERT_PATH"), "{err}");
        let ca = dir.path().join("ca.pem");
        mkfifo(&ca);
        let start = std::time::Instant::now();
        let err = super::super::transport::tls_config(&TlsSettings {
            ca: Some(ca.clone()),
            cert: None,
            key: None,
            verify: true,
        })
        .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(
            err.contains(&format!(
                "{} is not a regular file: it is a FIFO",
                ca.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn tls_from_env_uses_cert_path() {
        let dir = tempfile::tempdir().unwrap();
        let env = EnvVars {
            docker_host: Some("tcp://127.0.0.1:2376".into()),
            docker_tls_verify: Some("1".into()),
            docker_cert_path: Some("/certs".into()),
            ..env_in(dir.path())
        };
        let ep = resolve(&opts(), &env, &mut vec![]).unwrap();
        let t = ep.tls.unwrap();
        assert!(t.verify);
        assert_eq!(t.ca, Some(PathBuf::from("/certs/ca.pem")));
        // Default cert and key are used only when the files exist.
        assert_eq!(t.cert, None);
        assert_eq!(t.key, None);
    }

    #[test]
    fn hosts_are_parsed_like_the_docker_cli() {
        let ok = |raw: &str| parse_host(raw).unwrap();
        assert_eq!(ok(""), DEFAULT_HOST);
        assert_eq!(ok("  unix:///x.sock "), "unix:///x.sock");
        assert_eq!(ok("unix://"), DEFAULT_HOST);
        assert_eq!(ok("tcp://"), "tcp://localhost:2375");
        assert_eq!(ok(":47200"), "tcp://localhost:47200");
        assert_eq!(ok("10.0.0.1"), "tcp://10.0.0.1:2375");
        assert_eq!(ok("tcp://h:2376/"), "tcp://h:2376");
        assert_eq!(ok("tcp://user:pw@h:2376"), "tcp://h:2376");
        assert_eq!(ok("tcp://[::1]"), "tcp://[::1]:2375");
        assert_eq!(ok("tcp://[::1]:99"), "tcp://[::1]:99");
        assert_eq!(ok("tcp://::1"), "tcp://[::1]:2375");
        assert_eq!(ok("ssh://me@h"), "ssh://me@h");
        assert_eq!(ok("tcp://h:2376?token=S3#x"), "tcp://h:2376");
        for bad in [
            "http://h:1",
            "UNIX:///x",
            "tcp://[::1",
            "tcp://h:99999",
            "tcp://h:0",
            "tcp://a b:1",
            "tcp://h:1/v1.41",
            "tcp://tcp://h",
            "/var/run/docker.sock",
            "tcp://::1:2375:x",
            "tcp://[]:1",
        ] {
            assert!(parse_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_context_flag_is_unset_and_bad_hosts_are_errors() {
        let mut o = opts();
        o.context = Some(String::new());
        let env = EnvVars {
            docker_host: Some("unix:///e.sock".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve(&o, &env, &mut vec![]).unwrap().host,
            "unix:///e.sock"
        );
        let env = EnvVars {
            docker_host: Some("http://h:1".into()),
            ..Default::default()
        };
        let err = resolve(&opts(), &env, &mut vec![]).unwrap_err().to_string();
        assert!(
            err.contains("invalid engine address \"http://h:1\" (from DOCKER_HOST)"),
            "{err}"
        );
    }

    #[test]
    fn tlsverify_false_still_turns_tls_on() {
        let mut o = opts();
        o.tlsverify = Some(false);
        o.host = vec!["tcp://h:2376".into()];
        let t = resolve(&o, &EnvVars::default(), &mut vec![])
            .unwrap()
            .tls
            .unwrap();
        assert!(!t.verify);
    }

    #[test]
    fn several_hosts_are_refused() {
        let mut o = opts();
        o.host = vec!["unix:///a".into(), "unix:///b".into()];
        assert_eq!(
            resolve(&o, &EnvVars::default(), &mut vec![]),
            Err(ResolveError::SeveralHosts)
        );
    }
}
