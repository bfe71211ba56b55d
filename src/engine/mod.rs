//! The Docker Engine: connection, swarm snapshot reads, and errors that say what to do.

pub mod connect;
pub mod images;
pub mod service;
pub mod transport;

use bollard::Docker;

pub use connect::Endpoint;
#[cfg(test)]
use connect::HostSource;

/// Default seconds an Engine API read may take, body included, before it is abandoned.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// Largest accepted `MICROSCALE_TIMEOUT`, in seconds (one day).
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

fn parse_timeout(value: Option<&str>) -> Result<u64, String> {
    match value {
        None => Ok(DEFAULT_TIMEOUT_SECS),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=MAX_TIMEOUT_SECS).contains(s))
            .ok_or_else(|| {
                format!(
                    "MICROSCALE_TIMEOUT={v:?} is not a whole number of seconds from 1 to {MAX_TIMEOUT_SECS}; fix or unset it"
                )
            }),
    }
}

/// `MICROSCALE_TIMEOUT` from the environment; empty counts as unset, as docker's
/// variables do.
fn timeout_var() -> Option<String> {
    std::env::var("MICROSCALE_TIMEOUT")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Checks `MICROSCALE_TIMEOUT` before anything runs, so that a bad value is an error
/// instead of a silent default.
pub fn check_timeout_setting() -> Result<(), String> {
    parse_timeout(timeout_var().as_deref()).map(|_| ())
}

/// Seconds the engine reads of one command may take, in all: `MICROSCALE_TIMEOUT`
/// (whole seconds, 1 to one day), else [`DEFAULT_TIMEOUT_SECS`].
pub fn request_timeout_secs() -> u64 {
    parse_timeout(timeout_var().as_deref()).unwrap_or(DEFAULT_TIMEOUT_SECS)
}

/// An engine problem, phrased for the operator: what went wrong, where, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine could not be reached at all (no socket, refused, timeout, TLS).
    #[error("Cannot connect to the Docker daemon at {host} ({source_desc}): {reason}\n{hint}")]
    Unreachable {
        host: String,
        source_desc: String,
        reason: String,
        hint: String,
    },
    /// Plain HTTP was sent to an engine that only speaks TLS.
    #[error(
        "The Docker engine at {host} ({source_desc}) expects TLS.\nConnect with --tlsverify and its certificates (--tlscacert, --tlscert, --tlskey, or DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH), or use a context that has them."
    )]
    TlsRequired { host: String, source_desc: String },
    /// A connection setting that cannot be used: TLS files, an ssh address, a scheme.
    #[error("{0}")]
    BadSetting(String),
    /// The engine answered but is not part of a swarm.
    #[error(
        "The Docker engine at {host} ({source_desc}) is not part of a swarm.\nRun `docker swarm init` to create a swarm on it, or `docker swarm join` to join an existing one, or point at a swarm manager with --context or -H."
    )]
    NotInSwarm { host: String, source_desc: String },
    /// The node is in a swarm, but not in a usable state (locked, joining, error).
    #[error(
        "The Docker engine at {host} ({source_desc}) cannot serve swarm requests: {what}.\n{fix}"
    )]
    SwarmState {
        host: String,
        source_desc: String,
        what: String,
        fix: String,
    },
    /// The engine is a swarm worker: only managers can list services.
    #[error(
        "The Docker engine at {host} ({source_desc}) is a swarm worker node; services, tasks and nodes can only be read from a manager.\nRun against a manager node, for example with `docker --context <manager-context> microscale ...` or `docker -H tcp://<manager>:2376 --tlsverify microscale ...`."
    )]
    Worker { host: String, source_desc: String },
    /// The engine's API is older than 1.41 (Docker 20.10).
    #[error(
        "The Docker engine at {host} is too old: docker microscale needs Engine API 1.41 (Docker 20.10) or newer, for service status and jobs."
    )]
    TooOld { host: String },
    /// Any other error response from the engine.
    #[error("Error response from daemon: {message}")]
    Daemon { status: u16, message: String },
}

/// A connected client, with the endpoint it was made from (for error messages).
#[derive(Debug, Clone)]
pub struct Engine {
    /// The bollard client.
    pub docker: Docker,
    /// The same connection pool, for raw JSON requests.
    pub raw: transport::RawClient,
    /// The resolved endpoint.
    pub endpoint: Endpoint,
    /// When all reads of this command must be done ([`request_timeout_secs`] after
    /// the client was made).
    pub deadline: tokio::time::Instant,
}

impl Engine {
    /// The engine address as printed (secrets masked) and where it came from.
    fn place(&self) -> (String, String) {
        (
            crate::edge::redact::redact_value(&self.endpoint.host),
            self.endpoint.source.to_string(),
        )
    }

    fn unreachable(&self, reason: String, hint: String) -> EngineError {
        let (host, source_desc) = self.place();
        EngineError::Unreachable {
            host,
            source_desc,
            reason,
            hint,
        }
    }

    /// Makes a client for `endpoint`. No request is sent yet.
    ///
    /// Supports `unix://PATH`, `tcp://HOST:PORT` plain or with TLS (verified or not,
    /// with or without a client certificate), and `ssh://[USER@]HOST[:PORT][/SOCKET]`
    /// through `ssh ... docker system dial-stdio` on the remote host, as the docker CLI
    /// does. Errors: an unusable TLS file or ssh address, or another scheme.
    pub fn connect(endpoint: Endpoint) -> Result<Engine, EngineError> {
        use transport::Target;
        let host = crate::edge::redact::redact_value(&endpoint.host);
        let source = endpoint.source.to_string();
        let (scheme, rest) = endpoint
            .host
            .split_once("://")
            .map(|(s, r)| (s.to_string(), r.to_string()))
            .unwrap_or_else(|| ("tcp".into(), endpoint.host.clone()));
        let target = match scheme.as_str() {
            "unix" => Target::Unix(rest.into()),
            "tcp" => match &endpoint.tls {
                None => Target::Tcp(rest),
                Some(tls) => {
                    let config = transport::tls_config(tls).map_err(|e| {
                        EngineError::BadSetting(format!(
                            "TLS to {host} ({source}): {e}.\nCheck --tlscacert, --tlscert and --tlskey, the files in DOCKER_CERT_PATH, or the context's TLS material."
                        ))
                    })?;
                    let name = rest
                        .rsplit_once(':')
                        .map_or(rest.as_str(), |(h, _)| h)
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string();
                    let server_name =
                        rustls::pki_types::ServerName::try_from(name).map_err(|e| {
                            EngineError::BadSetting(format!(
                                "TLS to {host} ({source}): the host is not a valid TLS server name: {e}"
                            ))
                        })?;
                    Target::Tls {
                        addr: rest,
                        server_name,
                        config: std::sync::Arc::new(config),
                    }
                }
            },
            "ssh" => Target::Ssh(transport::ssh_command(&endpoint.host).map_err(|e| {
                EngineError::BadSetting(format!("invalid ssh address {host} ({source}): {e}"))
            })?),
            other => {
                return Err(EngineError::BadSetting(format!(
                    "unsupported engine address {host} ({source}): the scheme {other}:// is not supported; use unix://, tcp://, ssh:// or a context"
                )));
            }
        };
        let (docker, raw) =
            transport::docker_client(target, request_timeout_secs()).map_err(|e| {
                EngineError::Unreachable {
                    host: host.clone(),
                    source_desc: source.clone(),
                    reason: e.to_string(),
                    hint: HINT_NOT_RUNNING.into(),
                }
            })?;
        let deadline =
            tokio::time::Instant::now() + std::time::Duration::from_secs(request_timeout_secs());
        Ok(Engine {
            docker,
            raw,
            endpoint,
            deadline,
        })
    }

    /// The same client with a fresh deadline ([`request_timeout_secs`] from now), for
    /// one pass of a long-running command (`run`): reads of each pass share one bound.
    pub fn renewed(&self) -> Engine {
        Engine {
            deadline: tokio::time::Instant::now()
                + std::time::Duration::from_secs(request_timeout_secs()),
            ..self.clone()
        }
    }

    /// Turns a bollard error into an [`EngineError`] that names this engine.
    pub fn classify(&self, err: bollard::errors::Error) -> EngineError {
        use bollard::errors::Error as B;
        match err {
            B::DockerResponseServerError {
                status_code: 400,
                message,
            } if message.contains("HTTP request to an HTTPS server") => {
                let (host, source_desc) = self.place();
                EngineError::TlsRequired { host, source_desc }
            }
            B::DockerResponseServerError {
                status_code,
                message,
            } if message.trim().is_empty() => EngineError::Daemon {
                status: status_code,
                message: format!(
                    "request returned HTTP {status_code} with no message; check that {} is a Docker engine with API 1.41 (Docker 20.10) or newer",
                    self.place().0
                ),
            },
            // The daemon's text is data: line breaks and control characters in it
            // are shown escaped, so that it cannot forge lines of our own output.
            B::DockerResponseServerError {
                status_code,
                message,
            } => EngineError::Daemon {
                status: status_code,
                message: crate::edge::text::printable(message.trim_end()),
            },
            other
                if self.endpoint.host.starts_with("ssh://")
                    && root_cause(&other).starts_with("cannot run ssh") =>
            {
                self.unreachable(
                    root_cause(&other),
                    "Install the OpenSSH client (apt-get install openssh-client), or put `ssh` on PATH.".into(),
                )
            }
            other if self.endpoint.host.starts_with("ssh://") => self.unreachable(
                format!(
                    "the ssh connection failed, or `docker system dial-stdio` did not answer on the remote host ({})",
                    root_cause(&other)
                ),
                "Check that `ssh HOST docker version` works: a key-based login (or ssh-agent), and the docker CLI installed on the remote host.".into(),
            ),
            other => {
                let (reason, hint) = describe_connect_error(&other);
                self.unreachable(reason, hint)
            }
        }
    }

    /// Runs `fut` under the command's deadline ([`Engine::deadline`]), body included:
    /// bollard's own timeout only covers the response headers, so a server that
    /// trickles its body would otherwise hang the command, and several reads in a row
    /// share one bound.
    pub async fn within_deadline<T>(
        &self,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, EngineError> {
        tokio::time::timeout_at(self.deadline, fut)
            .await
            .map_err(|_| self.timed_out(request_timeout_secs()))
    }

    /// Runs one request `fut` bounded by [`request_timeout_secs`] on its own (not by
    /// the command's deadline): for commands that keep reading, such as a scale
    /// watching its services converge.
    pub async fn within_request_timeout<T>(
        &self,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, EngineError> {
        let secs = request_timeout_secs();
        tokio::time::timeout(std::time::Duration::from_secs(secs), fut)
            .await
            .map_err(|_| self.timed_out(secs))
    }

    /// The error for an engine that took more than `secs` seconds to answer.
    pub fn timed_out(&self, secs: u64) -> EngineError {
        self.unreachable(
            format!("no complete answer within {secs} seconds (MICROSCALE_TIMEOUT)"),
            "The engine accepted the connection but did not finish answering; check that the address is a Docker engine and that it is not overloaded.".into(),
        )
    }

    /// After a 503 from a swarm endpoint, asks `GET /info` whether this engine is
    /// outside any swarm or a worker, and returns the matching error. Called only on
    /// the error path, so the happy path keeps its constant number of calls.
    pub async fn explain_unavailable(&self, original: EngineError) -> EngineError {
        // Within the command's deadline while it lasts; past it (a long-running
        // command: scale watching, the agent), within one request timeout, so that a
        // worker is still called a worker after the first 30 seconds.
        let info = if tokio::time::Instant::now() < self.deadline {
            self.within_deadline(self.docker.info()).await
        } else {
            self.within_request_timeout(self.docker.info()).await
        };
        let Ok(Ok(info)) = info else {
            return original;
        };
        let swarm = info.swarm.unwrap_or_default();
        let state = swarm
            .local_node_state
            .map(|s| s.to_string())
            .unwrap_or_default();
        let (host, source_desc) = self.place();
        match state.as_str() {
            "active" if swarm.control_available != Some(true) => {
                EngineError::Worker { host, source_desc }
            }
            "active" => original,
            "locked" => EngineError::SwarmState {
                host,
                source_desc,
                what: "its swarm is locked (autolock)".into(),
                fix: "Unlock it with `docker swarm unlock` on that node, using the unlock key."
                    .into(),
            },
            "pending" => EngineError::SwarmState {
                host,
                source_desc,
                what: "it is still joining the swarm".into(),
                fix: "Wait a moment and try again; `docker info` there shows the swarm state."
                    .into(),
            },
            "error" => EngineError::SwarmState {
                host,
                source_desc,
                what: format!(
                    "its swarm is in an error state: {}",
                    swarm.error.unwrap_or_default()
                ),
                fix:
                    "See `docker info` on that node; it may need to leave and join the swarm again."
                        .into(),
            },
            _ => EngineError::NotInSwarm { host, source_desc },
        }
    }
}

const HINT_NOT_RUNNING: &str =
    "Is the docker daemon running? Choose another engine with -H, --context or DOCKER_HOST.";

/// Says why a connection failed, in operator terms, with what to do about it.
///
/// Looks through the error's sources for the underlying I/O error (refused, denied,
/// timed out, no such socket) instead of printing the HTTP client's wrappers.
pub fn describe_connect_error(err: &(dyn std::error::Error + 'static)) -> (String, String) {
    use bollard::errors::Error as B;
    use std::io::ErrorKind as K;
    match err.downcast_ref::<B>() {
        Some(B::JsonDataError { .. } | B::JsonSerdeError { .. }) => {
            return (
                format!(
                    "the answer is not the Docker Engine API ({})",
                    error_chain(err)
                ),
                "Check that the address is a Docker engine, version 20.10 or newer.".into(),
            );
        }
        Some(
            B::URLEncodedError { .. }
            | B::URLParseError { .. }
            | B::InvalidURIError { .. }
            | B::InvalidURIPartsError { .. },
        ) => {
            return (
                format!("the request could not be built ({})", root_cause(err)),
                "Shorten very long --filter values.".into(),
            );
        }
        _ => {}
    }
    let text = error_chain(err);
    let lower = text.to_lowercase();
    let cause = root_cause(err);
    if lower.contains("larger than") && lower.contains("mib") {
        return (
            cause,
            "Narrow the read with --filter, or check that the address is a Docker engine.".into(),
        );
    }
    if lower.contains("invalidcontenttype")
        || lower.contains("handshake eof")
        || lower.contains("corrupt message")
    {
        return (
            format!("the server does not speak TLS ({cause})"),
            "Drop --tls/--tlsverify for a plain engine, or check the port.".into(),
        );
    }
    if lower.contains("invalid http")
        || lower.contains("message head")
        || lower.contains("parse") && lower.contains("http")
    {
        return (
            format!("the answer is not HTTP from a Docker engine ({cause})"),
            "Check that the address is a Docker engine (and whether it expects TLS).".into(),
        );
    }
    if lower.contains("badcertificate") || lower.contains("certificaterequired") {
        return (
            format!("the engine refused the TLS connection ({cause})"),
            "The engine wants a client certificate it trusts: pass --tlscert and --tlskey (or put cert.pem and key.pem in DOCKER_CERT_PATH).".into(),
        );
    }
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("alert") {
        return (
            format!("TLS handshake failed ({cause})"),
            "Check the CA certificate, client certificate and key, and the engine's host name."
                .into(),
        );
    }
    // bollard's IOError is `#[error(transparent)]`, which hides the I/O error itself
    // from the source chain: look at it first.
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let direct_io = match err.downcast_ref::<B>() {
        Some(B::IOError { err }) => Some(err),
        _ => None,
    };
    while let Some(e) = cur {
        if let Some(io) = direct_io.or_else(|| e.downcast_ref::<std::io::Error>()) {
            return match io.kind() {
                K::PermissionDenied => (
                    "permission denied".into(),
                    "Run as root, or as a user in the docker group (sudo usermod -aG docker $USER, then log in again).".into(),
                ),
                K::ConnectionRefused => ("connection refused".into(), HINT_NOT_RUNNING.into()),
                K::NotFound => ("no such socket".into(), HINT_NOT_RUNNING.into()),
                K::TimedOut => (
                    "timed out".into(),
                    "Check the address and any firewall between here and the engine.".into(),
                ),
                _ => (
                    io.to_string(),
                    "Check the engine address and that the engine is running.".into(),
                ),
            };
        }
        cur = e.source();
    }
    if matches!(
        err.downcast_ref::<bollard::errors::Error>(),
        Some(bollard::errors::Error::RequestTimeoutError)
    ) {
        return (
            format!(
                "no answer within {} seconds (MICROSCALE_TIMEOUT)",
                request_timeout_secs()
            ),
            "The engine accepted the connection but did not answer; check that the address is a Docker engine.".into(),
        );
    }
    (error_chain(err), HINT_NOT_RUNNING.into())
}

/// The innermost error of the chain: the cause, without the HTTP client's wrappers.
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The error and its sources, joined with ": ".
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ssh_addresses_are_refused_with_the_reason() {
        let ep = Endpoint {
            host: "ssh://admin:pw@manager1".into(),
            tls: None,
            source: HostSource::Flag,
        };
        let err = Engine::connect(ep).unwrap_err().to_string();
        assert!(err.contains("password in an ssh:// address"), "{err}");
        assert!(!err.contains("pw@"), "{err}");
    }

    #[test]
    fn timeout_setting_is_checked() {
        assert_eq!(parse_timeout(None), Ok(DEFAULT_TIMEOUT_SECS));
        assert_eq!(parse_timeout(Some(" 5 ")), Ok(5));
        for bad in [
            "0",
            "-1",
            "abc",
            "1.5",
            "99999999999999999999",
            "18446744073709551615",
        ] {
            let err = parse_timeout(Some(bad)).unwrap_err();
            assert!(err.contains("MICROSCALE_TIMEOUT"), "{err}");
        }
    }

    #[test]
    fn connection_errors_are_described_by_their_cause() {
        let io = |kind| bollard::errors::Error::from(std::io::Error::from(kind));
        let (reason, hint) = describe_connect_error(&io(std::io::ErrorKind::PermissionDenied));
        assert_eq!(reason, "permission denied");
        assert!(hint.contains("docker group"), "{hint}");
        let (reason, _) = describe_connect_error(&io(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(reason, "connection refused");
    }
}
