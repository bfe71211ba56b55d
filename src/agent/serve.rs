//! The agent's HTTP endpoints on `--listen ADDR`: `GET /metrics` (Prometheus text
//! format) and `GET /healthz` (200 `ok`, or 503 with the reason). HTTP/1.1 only,
//! through hyper; anything else is 404, other methods 405.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::telemetry::Telemetry;

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

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
    // At most MAX_CONNECTIONS at once, each with a few seconds to send its request:
    // a flood of idle clients must not take the file descriptors the agent needs
    // for the engine.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let telemetry = telemetry.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| {
                        let telemetry = telemetry.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(&req, &telemetry, stale)) }
                    },
                );
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .serve_connection(TokioIo::new(stream), service);
                // A client that never finishes is dropped.
                let _ = tokio::time::timeout(Duration::from_secs(15), conn).await;
            });
        }
    });
    Ok(local)
}

/// `docker-microscale __healthz [ADDR] [--timeout D]`: `GET /healthz` on a running
/// agent's `--listen` address (default `:9090`; an all-interfaces address is asked on
/// loopback), for a container health check without a shell. Prints the answer and
/// exits 0 on 200; anything else is an error that says what was asked and what came
/// back (exit 1).
pub fn healthcheck(
    args: &crate::cli::HealthzArgs,
) -> Result<crate::exit::Exit, crate::exit::Failure> {
    use crate::exit::Failure;
    use std::io::{Read, Write};
    let value = args.addr.as_deref().unwrap_or(":9090");
    let mut addr = parse_listen(value).map_err(|_| {
        Failure::Usage(format!(
            "invalid argument \"{value}\" for ADDR: give the agent's --listen address, such as :9090 or 127.0.0.1:9090"
        ))
    })?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
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
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
        fail(format!(
            "cannot reach the agent's /healthz on {addr}: {e} (is the agent running with --listen {value}?)"
        ))
    })?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let mut text = String::new();
    write!(stream, "GET /healthz HTTP/1.0\r\nHost: {addr}\r\n\r\n")
        .and_then(|_| stream.take(64 * 1024).read_to_string(&mut text))
        .map_err(|e| {
            fail(format!(
                "no answer from http://{addr}/healthz within {timeout:?}: {e}"
            ))
        })?;
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
        return crate::exit::print_stdout(&format!("{body}\n"));
    }
    Err(fail(format!(
        "http://{addr}/healthz answered {}: {}",
        if status.is_empty() {
            "nothing usable"
        } else {
            status.as_str()
        },
        crate::render::printable(body.lines().next().unwrap_or_default())
    )))
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
            Err(crate::exit::Failure::Error(e)) => assert!(
                e.starts_with("unhealthy:") && e.contains("503") && e.contains("Cannot connect"),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        t.pass_ok();
        assert!(matches!(
            check(format!(":{}", addr.port())).await.unwrap(),
            Ok(crate::exit::Exit::Ok)
        ));
        match check("127.0.0.1:1".into()).await.unwrap() {
            Err(crate::exit::Failure::Error(e)) => assert!(
                e.contains("cannot reach the agent's /healthz on 127.0.0.1:1"),
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
}
