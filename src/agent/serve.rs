//! The agent's HTTP endpoints: `GET /metrics` (Prometheus text format) and
//! `GET /healthz` (200 `ok`, or 503 with the reason), on `--listen ADDR` (TCP) and on
//! a unix socket inside the container (`--health-socket PATH`, [`default_socket`]),
//! which the container health check (`__healthz`) asks. HTTP/1.1 only, through
//! hyper; anything else is 404, other methods 405.
//!
//! Slow clients never starve the health check: the health socket is a queue of its
//! own, and neither listener ever waits before `accept`. Each accepts always; when
//! [`MAX_CONNECTIONS`] are open, the oldest connection (the one that has had the
//! longest to send its request: a slow client) is closed to make room for the new
//! one. A connection that has not sent a whole request header within
//! [`HEADER_TIMEOUT`] is dropped, and none lives longer than [`CONNECTION_TIMEOUT`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::telemetry::Telemetry;

/// Most connections open at once, per listener (TCP and the health socket each).
pub const MAX_CONNECTIONS: usize = 64;

/// How long a client has to send a whole request header (per request).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one connection may stay open, whatever it does.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);

/// The health socket's path when `--health-socket` is not given:
/// `$XDG_RUNTIME_DIR/microscale/health.sock` when `XDG_RUNTIME_DIR` is an absolute
/// path, else `/run/microscale/health.sock` (the agent image's, where
/// `XDG_RUNTIME_DIR` is not set). The agent and `__healthz` agree on it as long as
/// they run with the same environment (in the same container).
pub fn default_socket() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir.join("microscale").join("health.sock"),
        _ => PathBuf::from("/run/microscale/health.sock"),
    }
}

/// Parses `--listen`: `HOST:PORT`, `[IPv6]:PORT`, or `:PORT` (all interfaces).
///
/// Errors name the value and the expected shape.
pub fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    let v = value.trim();
    let full = if v.starts_with(':') {
        format!("0.0.0.0{v}")
    } else {
        v.to_string()
    };
    full.parse::<SocketAddr>().map_err(|_| {
        format!(
            "invalid argument \"{value}\" for \"--listen\" flag: give an address such as :9090, 0.0.0.0:9090 or 127.0.0.1:9090"
        )
    })
}

/// Binds `addr` now (so that a port in use is an error at startup) and serves in the
/// background. `stale`: how old the last good pass may be for `/healthz` to say ok.
/// Returns the bound address (the real port when `addr` asked for port 0).
///
/// Errors: the address cannot be bound (in use, not local, permission).
pub async fn start(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    stale: Duration,
) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot listen on {addr} (--listen): {e}; choose another address or port")
    })?;
    let local = listener.local_addr().unwrap_or(addr);
    let listener = Arc::new(listener);
    tokio::spawn(accept_loop(
        move || {
            let l = listener.clone();
            async move { l.accept().await.map(|(s, _)| s) }
        },
        telemetry,
        stale,
    ));
    Ok(local)
}

/// The health socket while the agent runs: removed when dropped, if the path still
/// is the socket this agent bound (never another file put there since).
#[derive(Debug)]
pub struct HealthSocket {
    path: PathBuf,
    /// (device, inode) of the socket bound.
    id: (u64, u64),
}

impl HealthSocket {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for HealthSocket {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && m.file_type().is_socket()
            && (m.dev(), m.ino()) == self.id
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Serves `/healthz` (and `/metrics`) on the unix socket `path`, in the background,
/// for the in-container health check. The directory is created if missing (mode
/// 0700, with its missing parents); the socket gets mode 0600. A socket left by a
/// previous run (nobody answers on it) is replaced. Nothing else is ever removed or
/// followed: a symlink, a file or a directory at `path` is an error, and so is a
/// socket another live agent answers on.
///
/// Errors say what is at `path` and how to fix it (another `--health-socket`).
pub fn start_socket(
    path: &Path,
    telemetry: Arc<Telemetry>,
    stale: Duration,
) -> Result<HealthSocket, String> {
    let shown = path.display();
    let fix = "choose another path with --health-socket, or --health-socket= to serve none";
    if !path.is_absolute() || path.file_name().is_none() {
        return Err(format!(
            "invalid --health-socket \"{shown}\": give an absolute path to a socket file, such as /run/microscale/health.sock"
        ));
    }
    if let Some(dir) = path.parent()
        && std::fs::symlink_metadata(dir).is_err()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                format!(
                    "cannot create the directory {} for the health socket: {e}; {fix}",
                    dir.display()
                )
            })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(format!(
                        "another process (another agent?) answers on the health socket {shown}: {fix}"
                    ));
                }
                // Nobody listens: a socket left by a run that was killed.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path).map_err(|e| {
                        format!("cannot remove the stale health socket {shown}: {e}; {fix}")
                    })?;
                }
                Err(e) => {
                    return Err(format!(
                        "cannot tell whether the socket {shown} is in use: {e}; {fix}"
                    ));
                }
            }
        }
        Ok(m) => {
            let what = if m.file_type().is_symlink() {
                "a symbolic link"
            } else if m.is_dir() {
                "a directory"
            } else {
                "a file that is not a socket"
            };
            return Err(format!(
                "{shown} is {what}: not touched; remove it yourself if it is not needed, or {fix}"
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot inspect {shown}: {e}; {fix}")),
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot create the health socket {shown}: {e}; {fix}"))?;
    let m = std::fs::symlink_metadata(path)
        .map_err(|e| format!("cannot inspect the health socket {shown}: {e}; {fix}"))?;
    let socket = HealthSocket {
        path: path.to_path_buf(),
        id: (m.dev(), m.ino()),
    };
    if m.file_type().is_socket() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            format!("cannot make the health socket {shown} private (mode 0600): {e}; {fix}")
        })?;
    }
    let listener = Arc::new(listener);
    tokio::spawn(accept_loop(
        move || {
            let l = listener.clone();
            async move { l.accept().await.map(|(s, _)| s) }
        },
        telemetry,
        stale,
    ));
    Ok(socket)
}

/// Accepts connections forever, never waiting for a free slot first: at
/// [`MAX_CONNECTIONS`] open connections, the oldest one is closed for each new one.
async fn accept_loop<A, F, S>(mut accept: A, telemetry: Arc<Telemetry>, stale: Duration)
where
    A: FnMut() -> F,
    F: std::future::Future<Output = std::io::Result<S>>,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let open: Arc<Mutex<BTreeMap<u64, Arc<tokio::sync::Notify>>>> = Default::default();
    let mut next = 0u64;
    loop {
        let stream = match accept().await {
            Ok(s) => s,
            // Out of file descriptors, or the client left already: try again soon.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shed = Arc::new(tokio::sync::Notify::new());
        {
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            while open.len() >= MAX_CONNECTIONS {
                if let Some((_, oldest)) = open.pop_first() {
                    // A stored permit: it ends even if it has not been polled yet.
                    oldest.notify_one();
                }
            }
            next += 1;
            open.insert(next, shed.clone());
        }
        let slot = Slot(open.clone(), next);
        let telemetry = telemetry.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                _ = serve_connection(stream, telemetry, stale) => {}
                _ = shed.notified() => {}
            }
        });
    }
}

/// One open connection's place in the accept loop's table; freed when dropped.
struct Slot(Arc<Mutex<BTreeMap<u64, Arc<tokio::sync::Notify>>>>, u64);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

async fn serve_connection<S>(stream: S, telemetry: Arc<Telemetry>, stale: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let telemetry = telemetry.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(&req, &telemetry, stale)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    // A client that never finishes is dropped.
    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
}

/// Where `__healthz` asks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Target {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "unix://{}", p.display()),
            Target::Tcp(a) => write!(f, "http://{a}"),
        }
    }
}

/// `__healthz`'s ADDR: none is the default health socket; `unix:///PATH` or `/PATH`
/// a health socket; anything else a `--listen` address (all interfaces asked on
/// loopback).
pub(crate) fn parse_target(value: Option<&str>) -> Result<Target, String> {
    let Some(value) = value else {
        return Ok(Target::Unix(default_socket()));
    };
    let v = value.trim();
    if let Some(path) = v
        .strip_prefix("unix://")
        .or(v.starts_with('/').then_some(v))
    {
        if !path.starts_with('/') {
            return Err(format!(
                "invalid argument \"{value}\" for ADDR: a unix socket needs an absolute path, such as unix:///run/microscale/health.sock"
            ));
        }
        return Ok(Target::Unix(PathBuf::from(path)));
    }
    let mut addr = parse_listen(v).map_err(|_| {
        format!(
            "invalid argument \"{value}\" for ADDR: give the agent's --listen address (:9090, 127.0.0.1:9090) or its health socket (unix:///run/microscale/health.sock)"
        )
    })?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(Target::Tcp(addr))
}

/// Sends `GET /healthz` on `stream` and reads the whole answer (at most 64 KiB).
pub(crate) fn exchange<S: std::io::Read + std::io::Write>(
    mut stream: S,
) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    stream.take(64 * 1024).read_to_string(&mut text)?;
    Ok(text)
}

fn answer<B>(req: &Request<B>, telemetry: &Telemetry, stale: Duration) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".into(),
        );
        r.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return r;
    }
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            telemetry.encode(),
        ),
        "/healthz" => {
            let (ok, text) = telemetry.health(stale);
            reply(
                if ok {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                "text/plain; charset=utf-8",
                text,
            )
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics or /healthz\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::internal::healthcheck;

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen(":9090").unwrap().to_string(), "0.0.0.0:9090");
        assert_eq!(
            parse_listen("127.0.0.1:1").unwrap().to_string(),
            "127.0.0.1:1"
        );
        assert_eq!(parse_listen("[::1]:80").unwrap().to_string(), "[::1]:80");
        for bad in ["", "9090", "localhost", ":x", "1.2.3.4:99999"] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn metrics_and_health_are_served() {
        let t = Arc::new(Telemetry::new());
        let addr = start(
            "127.0.0.1:0".parse().unwrap(),
            t.clone(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let h = get("/healthz").await;
        assert!(
            h.starts_with("HTTP/1.1 503") && h.contains("starting"),
            "{h}"
        );
        t.pass_ok();
        let h = get("/healthz").await;
        assert!(h.starts_with("HTTP/1.1 200") && h.ends_with("ok\n"), "{h}");
        let m = get("/metrics").await;
        assert!(
            m.contains("# TYPE microscale_passes counter") && m.contains("# EOF"),
            "{m}"
        );
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        // __healthz, as the container health check runs it (blocking: off the runtime).
        let check = |addr: String| {
            tokio::task::spawn_blocking(move || {
                healthcheck(&crate::cli::HealthzArgs {
                    addr: Some(addr),
                    timeout: Some("2s".into()),
                })
            })
        };
        t.pass_failed("Cannot connect to the Docker daemon".into());
        match check(addr.to_string()).await.unwrap() {
            Err(crate::edge::exit::Failure::Error(e)) => assert!(
                e.starts_with("unhealthy:") && e.contains("503") && e.contains("Cannot connect"),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        t.pass_ok();
        assert!(matches!(
            check(format!(":{}", addr.port())).await.unwrap(),
            Ok(crate::edge::exit::Exit::Ok)
        ));
        match check("127.0.0.1:1".into()).await.unwrap() {
            Err(crate::edge::exit::Failure::Error(e)) => assert!(
                e.contains("cannot reach the agent's /healthz on http://127.0.0.1:1"),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        // A port in use is an error at startup.
        let e = start(addr, t, Duration::from_secs(1)).await.unwrap_err();
        assert!(
            e.contains("cannot listen on") && e.contains("--listen"),
            "{e}"
        );
    }

    #[test]
    fn healthz_targets() {
        assert_eq!(parse_target(None), Ok(Target::Unix(default_socket())));
        assert_eq!(
            parse_target(Some("unix:///run/x.sock")),
            Ok(Target::Unix("/run/x.sock".into()))
        );
        assert_eq!(
            parse_target(Some("/run/x.sock")),
            Ok(Target::Unix("/run/x.sock".into()))
        );
        assert_eq!(
            parse_target(Some(":9090")),
            Ok(Target::Tcp("127.0.0.1:9090".parse().unwrap()))
        );
        assert!(parse_target(Some("unix://x.sock")).is_err());
        assert!(parse_target(Some("nowhere")).is_err());
    }

    /// One request over a unix socket: the whole answer.
    async fn get_unix(path: &Path, what: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
        s.write_all(format!("GET {what} HTTP/1.0\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn the_health_socket_is_private_replaces_only_a_dead_socket_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/microscale/health.sock");
        let t = Arc::new(Telemetry::new());
        t.pass_ok();
        let stale = Duration::from_secs(60);
        let socket = start_socket(&path, t.clone(), stale).unwrap();
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let answer = get_unix(&path, "/healthz").await;
        assert!(
            answer.starts_with("HTTP/1.0 200") && answer.ends_with("ok\n"),
            "{answer}"
        );
        // __healthz, as the container health check runs it.
        let addr = format!("unix://{}", path.display());
        let checked = tokio::task::spawn_blocking(move || {
            healthcheck(&crate::cli::HealthzArgs {
                addr: Some(addr),
                timeout: Some("2s".into()),
            })
        })
        .await
        .unwrap();
        assert!(
            matches!(checked, Ok(crate::edge::exit::Exit::Ok)),
            "{checked:?}"
        );
        // A live socket is not taken over.
        let e = start_socket(&path, t.clone(), stale).unwrap_err();
        assert!(
            e.contains("another process") && e.contains("--health-socket"),
            "{e}"
        );
        drop(socket);
        assert!(std::fs::symlink_metadata(&path).is_err(), "removed on exit");

        // A dead socket (a killed run) is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_socket()
        );
        let socket = start_socket(&path, t.clone(), stale).unwrap();
        assert!(
            get_unix(&path, "/healthz")
                .await
                .starts_with("HTTP/1.0 200")
        );
        drop(socket);

        // A symlink is never followed nor removed, and neither is a plain file.
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let e = start_socket(&path, t.clone(), stale).unwrap_err();
        assert!(
            e.contains("symbolic link") && e.contains("not touched"),
            "{e}"
        );
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "keep").unwrap();
        let e = start_socket(&path, t.clone(), stale).unwrap_err();
        assert!(e.contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        // Removal on exit spares a file put in the socket's place since.
        std::fs::remove_file(&path).unwrap();
        let socket = start_socket(&path, t, stale).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "another").unwrap();
        drop(socket);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "another");
    }

    #[tokio::test]
    async fn slow_clients_are_shed_and_new_ones_served() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let t = Arc::new(Telemetry::new());
        t.pass_ok();
        let addr = start("127.0.0.1:0".parse().unwrap(), t, Duration::from_secs(60))
            .await
            .unwrap();
        // Three times the limit, each having sent part of a header.
        let mut slow = vec![];
        for _ in 0..MAX_CONNECTIONS * 3 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost").await.unwrap();
            slow.push(s);
        }
        // A new client is served at once, however many slow ones came before it.
        let started = std::time::Instant::now();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out))
            .await
            .expect("answered within 2s")
            .unwrap();
        assert!(
            out.starts_with("HTTP/1.0 200") && out.ends_with("ok\n"),
            "{out}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        // The oldest slow clients were closed; at most MAX_CONNECTIONS stay open.
        let mut closed = 0;
        for s in slow.iter_mut() {
            let mut buf = [0u8; 1];
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf)).await
            {
                closed += 1;
            }
        }
        assert!(
            closed >= MAX_CONNECTIONS * 3 - MAX_CONNECTIONS,
            "only {closed} of {} slow clients were shed",
            MAX_CONNECTIONS * 3
        );
    }
}
