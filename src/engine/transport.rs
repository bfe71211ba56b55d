//! How bytes reach the engine: unix socket, TCP, TCP with TLS, or ssh.
//!
//! bollard's own transports cover unix sockets and verified TLS with client
//! certificates only, and they read answers of any size. This module gives bollard a
//! custom transport (a hyper client over our own connector) that:
//! - speaks TLS with or without verification, with or without a client certificate,
//!   as the docker CLI's `--tls`, `--tlsverify` and contexts allow;
//! - reaches `ssh://` engines the way the docker CLI does: `ssh ... -- HOST docker
//!   system dial-stdio`, one ssh process per connection;
//! - stops reading an answer after [`MAX_RESPONSE_BYTES`], so a misbehaving endpoint
//!   cannot make the plugin take all memory.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::connect::TlsSettings;

/// Largest answer read from the engine, in bytes (256 MiB). A swarm of 10,000 services
/// with their tasks answers in a few tens of MiB.
pub const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

/// Where and how to connect.
pub enum Target {
    /// A unix socket path.
    Unix(PathBuf),
    /// Plain TCP, `host:port`.
    Tcp(String),
    /// TCP with TLS.
    Tls {
        /// `host:port`
        addr: String,
        /// The name the server certificate must carry (host name or IP).
        server_name: ServerName<'static>,
        /// rustls settings (roots or no verification, client certificate).
        config: Arc<rustls::ClientConfig>,
    },
    /// An ssh command whose stdin/stdout carry the engine API
    /// (`ssh ... -- HOST docker system dial-stdio`).
    Ssh(Vec<String>),
}

/// The hyper connector for a [`Target`].
#[derive(Clone)]
pub struct Connector(Arc<Target>);

type BoxFuture<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<Capped>;
    type Error = io::Error;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let target = self.0.clone();
        Box::pin(async move {
            let stream = match &*target {
                Target::Unix(path) => Stream::Unix(UnixStream::connect(path).await?),
                Target::Tcp(addr) => Stream::Tcp(TcpStream::connect(addr).await?),
                Target::Tls {
                    addr,
                    server_name,
                    config,
                } => {
                    let tcp = TcpStream::connect(addr).await?;
                    let tls = tokio_rustls::TlsConnector::from(config.clone())
                        .connect(server_name.clone(), tcp)
                        .await?;
                    Stream::Tls(Box::new(tls))
                }
                Target::Ssh(argv) => {
                    let mut child = tokio::process::Command::new(&argv[0])
                        .args(&argv[1..])
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped())
                        .kill_on_drop(true)
                        .spawn()
                        .map_err(|e| {
                            io::Error::new(e.kind(), format!("cannot run {}: {e}", argv[0]))
                        })?;
                    if let Some(stderr) = child.stderr.take() {
                        tokio::spawn(relay_ssh_stderr(stderr));
                    }
                    let stdin = child.stdin.take().expect("piped stdin");
                    let stdout = child.stdout.take().expect("piped stdout");
                    Stream::Ssh(Box::new(SshStream {
                        _child: child,
                        stdin,
                        stdout,
                    }))
                }
            };
            Ok(TokioIo::new(Capped {
                inner: stream,
                read: 0,
            }))
        })
    }
}

/// Most lines of ssh's own messages shown per connection; the rest is read and dropped.
const MAX_SSH_STDERR_LINES: usize = 20;

/// Shows what ssh prints on stderr (a refused login, an unknown host) through
/// [`crate::edge::exit::say`], so that it is masked, escaped and bounded like every other
/// message.
async fn relay_ssh_stderr(stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut shown = 0;
    while let Ok(Some(line)) = lines.next_line().await {
        if shown < MAX_SSH_STDERR_LINES {
            crate::edge::exit::say(&crate::edge::text::ellipsize(&line, 500));
            shown += 1;
        }
    }
}

/// The connection kinds, as one type for hyper.
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Ssh(Box<SshStream>),
}

/// stdin and stdout of an ssh process, as one duplex stream.
pub struct SshStream {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::process::ChildStdout,
}

/// A [`Stream`] that fails once more than [`MAX_RESPONSE_BYTES`] were read since the
/// last request was written.
pub struct Capped {
    inner: Stream,
    read: u64,
}

impl Connection for Capped {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Capped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = match &mut this.inner {
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Ssh(s) => Pin::new(&mut s.stdout).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = poll {
            this.read += (buf.filled().len() - before) as u64;
            if this.read > MAX_RESPONSE_BYTES {
                return Poll::Ready(Err(io::Error::other(format!(
                    "the engine's answer is larger than {} MiB",
                    MAX_RESPONSE_BYTES / 1024 / 1024
                ))));
            }
        }
        poll
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        // A new request starts a new answer: the cap is per answer, also on a kept
        // connection.
        self.read = 0;
        match &mut self.inner {
            Stream::Unix(s) => Pin::new(s).poll_write(cx, data),
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, data),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
            Stream::Ssh(s) => Pin::new(&mut s.stdin).poll_write(cx, data),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Ssh(s) => Pin::new(&mut s.stdin).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Ssh(s) => Pin::new(&mut s.stdin).poll_shutdown(cx),
        }
    }
}

/// Extracts the body type of [`bollard::BollardRequest`], which bollard does not name.
pub trait RequestBody {
    type Body;
}
impl<B> RequestBody for http::Request<B> {
    type Body = B;
}
/// The request body type bollard sends through a custom transport.
pub type BollardBody = <bollard::BollardRequest as RequestBody>::Body;

/// A bollard client that sends every request through [`Connector`] to `target`.
///
/// `timeout` is bollard's per-request timeout in seconds.
pub fn docker_client(
    target: Target,
    timeout: u64,
) -> Result<(bollard::Docker, RawClient), bollard::errors::Error> {
    // Over ssh each connection is an ssh login: keep one open and reuse it (the
    // snapshot's reads then go one after another). Elsewhere connections are cheap.
    let idle = if matches!(target, Target::Ssh(_)) {
        1
    } else {
        0
    };
    let client: hyper_util::client::legacy::Client<Connector, BollardBody> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(idle)
            .build(Connector(Arc::new(target)));
    let raw = RawClient(client.clone());
    bollard::Docker::connect_with_custom_transport(
        move |req: bollard::BollardRequest| {
            let client = client.clone();
            async move {
                client
                    .request(req)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        Some("http://docker.engine"),
        timeout,
        bollard::API_DEFAULT_VERSION,
    )
    .map(|docker| (docker, raw))
}

/// The same HTTP client (and connection pool) as the bollard client, for requests
/// whose bodies must pass through untouched: service specs are read and written as
/// raw JSON (see [`super::service`]).
#[derive(Clone)]
pub struct RawClient(pub hyper_util::client::legacy::Client<Connector, BollardBody>);

impl std::fmt::Debug for RawClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawClient")
    }
}

/// Builds the rustls settings for `tls`, the way the docker CLI's TLS options work:
/// with verification, the CA is required and is the only trusted root; without it,
/// any server certificate is accepted (`--tls`, `SkipTLSVerify`). A client
/// certificate and key are sent when both are given.
///
/// Errors name the file that is missing or not PEM.
pub fn tls_config(tls: &TlsSettings) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = if tls.verify {
        let mut roots = rustls::RootCertStore::empty();
        match &tls.ca {
            Some(ca) => {
                for cert in read_certs(ca, "a CA certificate")? {
                    roots.add(cert).map_err(|e| {
                        format!("{} is not a usable CA certificate: {e}", ca.display())
                    })?;
                }
            }
            // A context without ca.pem trusts the system's roots, as in the docker CLI.
            None => {
                let native = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    return Err(
                        "no CA certificate is set and the system has no trusted roots".into(),
                    );
                }
            }
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    };
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let certs = read_certs(cert, "a certificate")?;
            let key = read_key(key)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("the client certificate and key do not fit together: {e}"))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(_), None) => Err("a client certificate is set without its key (key.pem)".into()),
        (None, Some(_)) => Err("a client key is set without its certificate (cert.pem)".into()),
    }
}

/// Largest certificate or key file read, in bytes (1 MiB): a PEM file is a few KiB.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Reads a PEM file: a regular file of at most [`MAX_PEM_BYTES`] (not a FIFO or a
/// device, which could block or never end).
fn read_small_file(path: &Path) -> Result<String, String> {
    let bytes =
        crate::edge::fsutil::read_regular(path, MAX_PEM_BYTES, true).map_err(|e| {
            match e.kind() {
                std::io::ErrorKind::NotFound => format!("{} does not exist", path.display()),
                std::io::ErrorKind::InvalidInput if e.to_string().starts_with("larger") => {
                    format!("{} is too large for a PEM file", path.display())
                }
                std::io::ErrorKind::InvalidInput => format!("{} is {e}", path.display()),
                _ => format!("cannot read {}: {e}", path.display()),
            }
        })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads a private key (PEM: PKCS#1, SEC1 or PKCS#8) from `path`, a regular file of
/// at most 1 MiB. Errors name the file: missing, too large, encrypted, not a key.
pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let text = read_small_file(path)?;
    if text.contains("ENCRYPTED") {
        return Err(format!(
            "{} is an encrypted key; the docker CLI and this plugin need an unencrypted one (openssl pkey -in KEY -out key.pem)",
            path.display()
        ));
    }
    PrivateKeyDer::from_pem_slice(text.as_bytes())
        .map_err(|e| format!("{} is not a private key in PEM format: {e}", path.display()))
}

/// Reads the certificates (PEM, one or more; `what` names them in errors, "a CA
/// certificate") from `path`, a regular file of at most 1 MiB. Errors name the file:
/// missing, too large, not PEM, no certificate in it.
pub(crate) fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = read_small_file(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not {what} in PEM format: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} is not {what} in PEM format", path.display()));
    }
    Ok(certs)
}

/// Accepts any server certificate (signatures are still checked), for `--tls`
/// without `--tlsverify` and contexts with `SkipTLSVerify`.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The ssh command the docker CLI runs for `ssh://[user@]host[:port][/socket]`
/// (docker/cli `cli/connhelper/ssh`): `ssh [-l user] [-p port] -o ConnectTimeout=30
/// -T -- host "docker [--host=unix://socket] system dial-stdio"`.
///
/// Errors: a password in the URL (not supported, use keys or an agent), a query or
/// fragment, or no host.
pub fn ssh_command(url: &str) -> Result<Vec<String>, String> {
    let rest = url.strip_prefix("ssh://").ok_or("not an ssh:// address")?;
    if rest.contains('?') || rest.contains('#') {
        return Err("an ssh:// address cannot have a query or fragment".into());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if user.is_some_and(|u| u.contains(':')) {
        return Err(
            "a password in an ssh:// address is not supported; use an ssh key or ssh-agent".into(),
        );
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (ip, after) = v6
            .split_once(']')
            .ok_or("an IPv6 address needs a closing ]")?;
        (ip, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("an ssh:// address needs a host".into());
    }
    let user = user.map(crate::edge::redact::percent_decode);
    let mut argv = vec!["ssh".to_string()];
    if let Some(u) = user.filter(|u| !u.is_empty()) {
        argv.extend(["-l".into(), u]);
    }
    // An empty port means ssh's default, as in the docker CLI.
    if let Some(p) = port.filter(|p| !p.is_empty()) {
        if !p.chars().all(|c| c.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return Err(format!("bad ssh port \"{p}\""));
        }
        argv.extend(["-p".into(), p.to_string()]);
    }
    argv.extend([
        "-o".into(),
        "ConnectTimeout=30".into(),
        "-T".into(),
        "--".into(),
    ]);
    argv.push(host.to_string());
    // The remote command goes through the remote user's shell: quote the socket path
    // in single quotes so that no `$(...)`, backquote or quote in it can run anything.
    let path = crate::edge::redact::percent_decode(path);
    let remote = if path.is_empty() || path == "/" {
        "docker system dial-stdio".to_string()
    } else {
        format!(
            "docker {} system dial-stdio",
            shell_quote(&format!("--host=unix://{path}"))
        )
    };
    argv.push(remote);
    Ok(argv)
}

/// Quotes `s` for a POSIX shell: `'...'`, with each `'` written as `'\''`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_socket_paths_cannot_inject_commands() {
        for path in [
            "/tmp/x$(id>/tmp/pwned).sock",
            "/tmp/x\";id>/tmp/p;\".sock",
            "/tmp/x'; id; '.sock",
            "/tmp/x`id`.sock",
        ] {
            let argv = ssh_command(&format!("ssh://m{path}")).unwrap();
            let remote = argv.last().unwrap();
            // What a POSIX shell makes of the remote command: exactly three words,
            // the middle one the literal option.
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf '%s\\n' {remote}")])
                .output()
                .unwrap();
            let words = String::from_utf8(out.stdout).unwrap();
            let words: Vec<&str> = words.lines().collect();
            assert_eq!(
                words,
                [
                    "docker",
                    &format!("--host=unix://{path}"),
                    "system",
                    "dial-stdio"
                ],
                "{remote}"
            );
        }
    }

    #[test]
    fn ssh_addresses_like_the_docker_cli() {
        let argv = ssh_command("ssh://root@[::1]/run/d.sock").unwrap();
        assert!(argv.contains(&"::1".to_string()), "{argv:?}");
        let argv = ssh_command("ssh://root@[::1]:2222").unwrap();
        assert!(argv.windows(2).any(|w| w == ["-p", "2222"]), "{argv:?}");
        assert!(!ssh_command("ssh://h:").unwrap().contains(&"-p".to_string()));
        assert!(ssh_command("ssh://h:+22").is_err());
        let argv = ssh_command("ssh://root%40x@h/a%20b.sock").unwrap();
        assert_eq!(argv[2], "root@x");
        assert!(argv.last().unwrap().contains("a b.sock"), "{argv:?}");
    }

    #[test]
    fn ssh_command_like_the_docker_cli() {
        assert_eq!(
            ssh_command("ssh://admin@manager1").unwrap(),
            [
                "ssh",
                "-l",
                "admin",
                "-o",
                "ConnectTimeout=30",
                "-T",
                "--",
                "manager1",
                "docker system dial-stdio"
            ]
        );
        assert_eq!(
            ssh_command("ssh://m:2222/run/docker.sock").unwrap()[1..3],
            ["-p", "2222"]
        );
        assert!(
            ssh_command("ssh://m/run/docker.sock")
                .unwrap()
                .last()
                .unwrap()
                .contains("--host=unix:///run/docker.sock")
        );
        assert!(
            ssh_command("ssh://u:pw@m")
                .unwrap_err()
                .contains("password")
        );
        assert!(ssh_command("ssh://m?x=1").is_err());
        assert!(ssh_command("ssh://").is_err());
        assert!(ssh_command("ssh://m:notaport").is_err());
    }

    #[test]
    fn tls_config_names_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "garbage").unwrap();
        let t = TlsSettings {
            ca: Some(ca.clone()),
            cert: None,
            key: None,
            verify: true,
        };
        let err = tls_config(&t).unwrap_err();
        assert!(err.contains("ca.pem"), "{err}");
        let t = TlsSettings {
            ca: Some(dir.path().to_path_buf()),
            ..t
        };
        assert!(tls_config(&t).unwrap_err().contains("not a regular file"));
        // Without verification no CA is needed.
        let t = TlsSettings {
            ca: None,
            cert: None,
            key: None,
            verify: false,
        };
        assert!(tls_config(&t).is_ok());
    }
}
