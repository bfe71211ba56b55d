//! `prometheus://HOST:PORT[/PATH-PREFIX]?query=PROMQL[&tls=true]`: one instant
//! query against Prometheus' HTTP API (`GET /PREFIX/api/v1/query`), which must
//! give exactly one finite sample.

use std::time::Duration;

use serde_json::Value;

use super::Sample;
use super::web::{self, Auth};

/// Reads the metric `uri` names from `endpoint` (the checked addresses of its host;
/// see the module documentation for the URI), sending `secret` as the module says,
/// within `timeout`. Errors: one line, without the secret.
pub async fn read(
    uri: &str,
    endpoint: &super::Endpoint,
    secret: Option<&str>,
    timeout: Duration,
) -> Result<Sample, String> {
    let url = web::parse_uri(uri)?;
    let params = web::params(&url, &["query", "tls"])?;
    let query = web::param(&params, "query")
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .ok_or_else(|| {
            format!(
                "the metric URI {} has no query: add ?query=PROMQL (URL-encoded)",
                web::shown(&url)
            )
        })?;
    let prefix = url.path().trim_end_matches('/');
    let mut api = web::api_url(&url, &params, None, &format!("{prefix}/api/v1/query"))?;
    api.query_pairs_mut().append_pair("query", query);
    let auth = Auth::from_uri(&url, secret);
    let what = format!("Prometheus at {}", web::host_port(&url));
    web::bounded(&what, timeout, async {
        let answer = web::get(&api, endpoint, &auth, timeout).await?;
        let doc = answer.json(&what);
        // Prometheus answers errors (bad query, timeout) as JSON with 400/422/503.
        if let Ok(doc) = &doc
            && doc.get("status").and_then(Value::as_str) == Some("error")
        {
            let kind = doc
                .get("errorType")
                .and_then(Value::as_str)
                .unwrap_or("error");
            let msg = doc.get("error").and_then(Value::as_str).unwrap_or("");
            return Err(format!("{what} refused the query ({kind}): {msg}"));
        }
        if !answer.status.is_success() {
            return Err(answer.status_error(&what));
        }
        sample(&doc?).map_err(|e| format!("{what}: {e}"))
    })
    .await
}

/// The one sample of a query's `data`.
fn sample(doc: &Value) -> Result<Sample, String> {
    let data = doc
        .get("data")
        .ok_or("the answer has no \"data\": is this the Prometheus HTTP API?")?;
    let kind = data.get("resultType").and_then(Value::as_str).unwrap_or("");
    let result = data.get("result").unwrap_or(&Value::Null);
    let pair = match kind {
        "scalar" => result,
        "vector" => {
            let items = result.as_array().ok_or("the vector result is not a list")?;
            match items.as_slice() {
                [] => {
                    return Err(
                        "the query returned no sample: check the metric name and labels".into(),
                    );
                }
                [one] => one.get("value").unwrap_or(&Value::Null),
                many => {
                    let shown: Vec<String> = many
                        .iter()
                        .take(3)
                        .map(|s| labels(s.get("metric").unwrap_or(&Value::Null)))
                        .collect();
                    let more = if many.len() > 3 { ", …" } else { "" };
                    return Err(format!(
                        "the query returned {} samples, it must return one (aggregate it, e.g. sum(...), or add labels): {}{more}",
                        many.len(),
                        shown.join(", ")
                    ));
                }
            }
        }
        "matrix" => {
            return Err(
                "the query returned a range vector: drop the [range] or wrap it, e.g. rate(x[1m])"
                    .into(),
            );
        }
        other => {
            return Err(format!(
                "the query returned a {} result, not a number",
                if other.is_empty() { "missing" } else { other }
            ));
        }
    };
    let text = pair
        .as_array()
        .and_then(|p| p.get(1))
        .and_then(Value::as_str)
        .ok_or("the sample has no [time, \"value\"] pair")?;
    let value: f64 = text
        .parse()
        .map_err(|_| format!("the sample's value \"{}\" is not a number", text))?;
    if !value.is_finite() {
        return Err(format!(
            "the query returned {text}, not a usable number (a division by zero or an empty rate?)"
        ));
    }
    Ok(Sample { value, unit: "" })
}

/// A label set as `{a="b", c="d"}`.
fn labels(metric: &Value) -> String {
    let Some(map) = metric.as_object() else {
        return "{}".into();
    };
    let inner: Vec<String> = map.iter().map(|(k, v)| format!("{k}={}", v)).collect();
    format!("{{{}}}", inner.join(", "))
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
    use crate::metrics::web::testserver::{Reply, serve};
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn several_samples_name_their_labels() {
        let doc: Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[
              {"metric":{"job":"a"},"value":[1,"1"]},{"metric":{"job":"b"},"value":[1,"2"]}]}}"#,
        )
        .unwrap();
        let e = sample(&doc).unwrap_err();
        assert!(
            e.contains("returned 2 samples") && e.contains(r#"job="a""#),
            "{e}"
        );
    }

    #[tokio::test]
    async fn prometheus_query_against_a_real_server() {
        crate::testutil::require_program("prometheus", "prometheus");
        // The exporter: a gauge the test sets, in the text exposition format.
        let gauge = Arc::new(AtomicU64::new(42));
        let g = gauge.clone();
        let exporter = serve(move |_| Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: format!(
                "# TYPE microscale_test_depth gauge\nmicroscale_test_depth{{queue=\"q\"}} {}\n",
                g.load(Ordering::SeqCst)
            )
            .into_bytes(),
            delay: Duration::ZERO,
            no_length: false,
        });
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: test\n    static_configs:\n      - targets: ['127.0.0.1:{exporter}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let _prom = Kill(
            Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let t = Duration::from_secs(5);
        let uri = format!("prometheus://127.0.0.1:{port}?query=microscale_test_depth");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let got = loop {
            match read(&uri, None, t).await {
                Ok(s) => break s,
                Err(e) if std::time::Instant::now() > deadline => panic!(
                    "prometheus never gave the value: {e}; log: {}",
                    std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        };
        assert_eq!(
            got,
            Sample {
                value: 42.0,
                unit: ""
            }
        );

        // A PromQL expression, URL-encoded in the URI.
        let s = read(
            &format!("prometheus://127.0.0.1:{port}/?query=sum%28microscale_test_depth%7Bqueue%3D%22q%22%7D%29%20%2A%202"),
            None,
            t,
        )
        .await
        .unwrap();
        assert_eq!(s.value, 84.0);

        let e = read(
            &format!("prometheus://127.0.0.1:{port}?query=no_such_metric"),
            None,
            t,
        )
        .await
        .unwrap_err();
        assert!(
            e.contains("the query returned no sample: check the metric name and labels"),
            "{e}"
        );

        let e = read(
            &format!("prometheus://127.0.0.1:{port}?query=up%20or%20vector(1)"),
            None,
            t,
        )
        .await
        .unwrap_err();
        assert!(e.contains("returned 2 samples"), "{e}");
        assert!(e.contains("job=\"test\""), "{e}");

        let e = read(&format!("prometheus://127.0.0.1:{port}?query=0/0"), None, t)
            .await
            .unwrap_err();
        assert!(e.contains("NaN"), "{e}");

        let e = read(
            &format!("prometheus://127.0.0.1:{port}?query=sum(("),
            None,
            t,
        )
        .await
        .unwrap_err();
        assert!(e.contains("refused the query (bad_data)"), "{e}");

        let e = read(
            &format!("prometheus://127.0.0.1:{port}?query=up&tls=true"),
            None,
            t,
        )
        .await
        .unwrap_err();
        assert!(e.contains("TLS") || e.contains("tls"), "{e}");

        let e = read(
            &format!("prometheus://u:pw@127.0.0.1:{port}?query=up"),
            None,
            t,
        )
        .await
        .unwrap_err();
        assert!(
            e.contains("a password in the metric URI") && !e.contains("pw@"),
            "{e}"
        );
    }
}
