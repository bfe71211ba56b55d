//! A Prometheus range query (`GET /PREFIX/api/v1/query_range`) for `replay`: the
//! same URI, allow-list, address checks and secret binding as a rule's
//! `prometheus://` metric ([`super::read`]), over a span of time instead of now.

use std::time::Duration;

use serde_json::Value;

use super::web::{self, Auth};
use super::{Allow, parse_target, scrub, secret};

/// Most points asked of Prometheus in one request (it refuses more than 11 000).
pub const POINTS_PER_REQUEST: u64 = 10_000;

/// Most points one replay reads (a year at 15-second steps is about 2.1 million).
pub const MAX_POINTS: u64 = 5_000_000;

/// One point of a range query: the time (Unix seconds) and the value, or why there is
/// none (no sample at that step, a value that is not a finite number).
pub type RangePoint = (f64, Result<f64, String>);

/// Reads `uri` (`prometheus://HOST:PORT[/PREFIX]?query=PROMQL[&tls=true][&secret-file=…]`)
/// from `start` to `end` (Unix seconds, both included) every `step` seconds, in
/// requests of at most [`POINTS_PER_REQUEST`] points, each within `timeout`.
///
/// Returns one point per step; a step without a sample is an `Err` point (the series
/// then says the read failed there, as the agent's read would have).
///
/// Errors (one line, never with the secret): a URI that is not `prometheus://`, a
/// host, address or secret the allow-list refuses, a bad span, Prometheus refusing
/// the query, a query that returns more than one series, no answer in time.
pub async fn read_range(
    uri: &str,
    allow: &Allow,
    start: f64,
    end: f64,
    step: f64,
    timeout: Duration,
) -> Result<Vec<RangePoint>, String> {
    if !(start.is_finite() && end.is_finite() && step.is_finite() && step > 0.0) || end < start {
        return Err(format!(
            "the range {start}..{end} every {step} s is empty: --start must be before --end and --step above 0"
        ));
    }
    let count = ((end - start) / step).floor() as u64 + 1;
    if count > MAX_POINTS {
        return Err(format!(
            "{count} points from --start to --end every --step: at most {MAX_POINTS}; give a longer --step or a shorter span"
        ));
    }
    let target = parse_target(uri)?;
    if target.scheme != "prometheus" {
        return Err(format!(
            "a range query needs a prometheus:// address, not {}://",
            target.scheme
        ));
    }
    let endpoint = allow.resolve(&target, timeout).await?;
    let secret = secret(&target)?;
    let result = query(
        &target.uri,
        &endpoint,
        secret.as_deref(),
        start,
        step,
        count,
        timeout,
    )
    .await;
    result.map_err(|e| {
        let e = match &secret {
            Some(s) => scrub(&e, s, None),
            None => e,
        };
        crate::edge::text::printable(&crate::edge::redact::redact_value(&e))
    })
}

async fn query(
    uri: &str,
    endpoint: &super::Endpoint,
    secret: Option<&str>,
    start: f64,
    step: f64,
    count: u64,
    timeout: Duration,
) -> Result<Vec<RangePoint>, String> {
    let url = web::parse_uri(uri)?;
    let params = web::params(&url, &["query", "tls"])?;
    let q = web::param(&params, "query")
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .ok_or_else(|| {
            format!(
                "the Prometheus address {} has no query: give --query PROMQL",
                web::shown(&url)
            )
        })?;
    let prefix = url.path().trim_end_matches('/');
    let base = web::api_url(&url, &params, None, &format!("{prefix}/api/v1/query_range"))?;
    let auth = Auth::from_uri(&url, secret);
    let what = format!("Prometheus at {}", web::host_port(&url));
    let mut out: Vec<RangePoint> = Vec::with_capacity(count as usize);
    let mut first = 0u64;
    while first < count {
        let last = (first + POINTS_PER_REQUEST - 1).min(count - 1);
        let (t0, t1) = (start + first as f64 * step, start + last as f64 * step);
        let mut api = base.clone();
        api.query_pairs_mut()
            .append_pair("query", q)
            .append_pair("start", &format!("{t0:.3}"))
            .append_pair("end", &format!("{t1:.3}"))
            .append_pair("step", &format!("{step}"));
        let doc = web::bounded(&what, timeout, async {
            let answer = web::get(&api, endpoint, &auth, timeout).await?;
            let doc = answer.json(&what);
            if let Ok(doc) = &doc
                && doc.get("status").and_then(Value::as_str) == Some("error")
            {
                let kind = doc
                    .get("errorType")
                    .and_then(Value::as_str)
                    .unwrap_or("error");
                let msg = doc.get("error").and_then(Value::as_str).unwrap_or("");
                return Err(web::one_line(&format!(
                    "{what} refused the query ({kind}): {msg}"
                )));
            }
            if !answer.status.is_success() {
                return Err(answer.status_error(&what));
            }
            doc
        })
        .await?;
        let samples = matrix(&doc).map_err(|e| format!("{what}: {e}"))?;
        for k in first..=last {
            let t = start + k as f64 * step;
            // Prometheus writes times to the millisecond.
            let ms = |x: f64| (x * 1000.0).round() as i64;
            let value = match samples.binary_search_by(|(at, _)| ms(*at).cmp(&ms(t))) {
                Ok(i) => samples[i].1.clone(),
                Err(_) => Err("no sample at this time (the query returned nothing here)".into()),
            };
            out.push((t, value));
        }
        first = last + 1;
    }
    Ok(out)
}

/// The samples of a range query's one series, `(time, value)` in time order. An
/// empty result is no sample at all (every step fails).
fn matrix(doc: &Value) -> Result<Vec<RangePoint>, String> {
    let data = doc
        .get("data")
        .ok_or("the answer has no \"data\": is this the Prometheus HTTP API?")?;
    let kind = data.get("resultType").and_then(Value::as_str).unwrap_or("");
    if kind != "matrix" {
        return Err(format!(
            "the range query returned a {} result, not a matrix",
            if kind.is_empty() { "missing" } else { kind }
        ));
    }
    let series = data
        .get("result")
        .and_then(Value::as_array)
        .ok_or("the matrix result is not a list")?;
    let one = match series.as_slice() {
        [] => return Ok(vec![]),
        [one] => one,
        many => {
            return Err(web::one_line(&format!(
                "the query returned {} series, it must return one (aggregate it, e.g. sum(...), or add labels): {}",
                many.len(),
                many.iter()
                    .take(3)
                    .map(|s| s.get("metric").map(|m| m.to_string()).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let values = one
        .get("values")
        .and_then(Value::as_array)
        .ok_or("the series has no \"values\" list")?;
    let mut out = Vec::with_capacity(values.len());
    for pair in values {
        let (Some(t), Some(text)) = (
            pair.get(0).and_then(Value::as_f64),
            pair.get(1).and_then(Value::as_str),
        ) else {
            return Err("a sample is not a [time, \"value\"] pair".into());
        };
        let value = match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(format!(
                "the query returned {}, not a usable number",
                web::one_line(text)
            )),
        };
        out.push((t, value));
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_reads_one_series_and_refuses_several() {
        let doc: Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"matrix","result":[
              {"metric":{},"values":[[30,"2"],[0,"1"],[15,"NaN"]]}]}}"#,
        )
        .unwrap();
        let m = matrix(&doc).unwrap();
        assert_eq!(m[0], (0.0, Ok(1.0)));
        assert!(m[1].1.as_ref().unwrap_err().contains("NaN"));
        assert_eq!(m[2], (30.0, Ok(2.0)));
        let doc: Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"matrix","result":[
              {"metric":{"job":"a"},"values":[]},{"metric":{"job":"b"},"values":[]}]}}"#,
        )
        .unwrap();
        let e = matrix(&doc).unwrap_err();
        assert!(
            e.contains("returned 2 series") && e.contains("\"job\":\"a\""),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_bad_span_or_scheme_is_refused_before_any_connection() {
        let allow = Allow::parse(&[], Default::default()).unwrap();
        let t = Duration::from_secs(1);
        let e = read_range(
            "prometheus://127.0.0.1:1?query=up",
            &allow,
            10.0,
            5.0,
            15.0,
            t,
        )
        .await
        .unwrap_err();
        assert!(e.contains("--start must be before --end"), "{e}");
        let e = read_range("redis://127.0.0.1:1/0?list=a", &allow, 0.0, 5.0, 15.0, t)
            .await
            .unwrap_err();
        assert!(e.contains("needs a prometheus:// address"), "{e}");
        let e = read_range(
            "prometheus://10.1.2.3:9090?query=up",
            &allow,
            0.0,
            5.0,
            15.0,
            t,
        )
        .await
        .unwrap_err();
        assert!(e.contains("--metric-allow"), "{e}");
        let e = read_range(
            "prometheus://127.0.0.1:1?query=up",
            &allow,
            0.0,
            1e9,
            1.0,
            t,
        )
        .await
        .unwrap_err();
        assert!(e.contains("at most 5000000"), "{e}");
    }

    /// A real Prometheus scraping a gauge the test sets: the range query gives the
    /// values it scraped, step by step, and nothing before the first scrape.
    #[tokio::test]
    async fn range_query_against_a_real_prometheus() {
        use crate::metrics::web::testserver::{Reply, serve};
        use std::process::{Command, Stdio};
        crate::testutil::require_program("prometheus", "prometheus");
        let exporter = serve(move |_| Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: b"# TYPE microscale_range_depth gauge\nmicroscale_range_depth{queue=\"q\"} 42\n"
                .to_vec(),
            delay: Duration::ZERO,
            no_length: false,
        });
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: test\n    static_configs:\n      - targets: ['127.0.0.1:{exporter}']\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let _prom = Kill(
            Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let allow = Allow::parse(&[], Default::default()).unwrap();
        let t = Duration::from_secs(5);
        let uri = format!("prometheus://127.0.0.1:{port}?query=sum(microscale_range_depth)");
        let now = || crate::edge::clock::wall_clock().floor();
        // Until the first scrape is in: a range over the last second has a sample.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let since = loop {
            let n = now();
            if let Ok(points) = read_range(&uri, &allow, n - 1.0, n, 1.0, t).await
                && points.iter().any(|p| p.1.is_ok())
            {
                break n;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "prometheus never scraped the gauge"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        let points = read_range(&uri, &allow, since, since + 3.0, 0.5, t)
            .await
            .unwrap();
        assert_eq!(points.len(), 7);
        for (i, (at, v)) in points.iter().enumerate() {
            assert_eq!(*at, since + i as f64 * 0.5);
            assert_eq!(v, &Ok(42.0), "point {i}");
        }
        // Long before the server started: every step says there is no sample.
        let points = read_range(&uri, &allow, since - 7200.0, since - 7000.0, 100.0, t)
            .await
            .unwrap();
        assert_eq!(points.len(), 3);
        assert!(
            points
                .iter()
                .all(|p| p.1.as_ref().is_err_and(|e| e.contains("no sample")))
        );
        // More steps than one request takes: split, and every step answered.
        let points = read_range(&uri, &allow, since - 10.0, since + 2.0, 0.001, t)
            .await
            .unwrap();
        assert_eq!(points.len(), 12_001);
        assert_eq!(points.last().unwrap().1, Ok(42.0));
        // Prometheus refusing the query, and a query of two series.
        let bad = format!("prometheus://127.0.0.1:{port}?query=sum((");
        let e = read_range(&bad, &allow, since, since + 1.0, 1.0, t)
            .await
            .unwrap_err();
        assert!(e.contains("refused the query (bad_data)"), "{e}");
        let two = format!("prometheus://127.0.0.1:{port}?query=up%20or%20vector(1)");
        let e = read_range(&two, &allow, since, since + 1.0, 1.0, t)
            .await
            .unwrap_err();
        assert!(e.contains("returned 2 series"), "{e}");
    }
}
