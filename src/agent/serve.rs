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
        // A port in use is an error at startup.
        let e = start(addr, t, Duration::from_secs(1)).await.unwrap_err();
        assert!(
            e.contains("cannot listen on") && e.contains("--listen"),
            "{e}"
        );
    }
}
