//! `http(s)://HOST[:PORT]/PATH[?QUERY]#/JSON/POINTER`: GET a JSON document and
//! read the number at an RFC 6901 pointer (the fragment, which is never sent).
//! The rule's secret goes as `Authorization: Bearer SECRET`, or, when the URI names
//! a user (`http://USER@HOST/…`), as basic auth USER:SECRET.

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
    let mut url = web::parse_uri(uri)?;
    let Some(fragment) = url.fragment() else {
        return Err(format!(
            "the metric URI {} has no #/json/pointer: add the path to the number, e.g. {}#/queue/depth",
            web::shown(&url),
            web::shown(&url)
        ));
    };
    let pointer = web::percent_decode(fragment)?;
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!(
            "the JSON pointer \"{}\" must start with / (RFC 6901), e.g. #/queue/depth",
            pointer
        ));
    }
    url.set_fragment(None);
    let auth = Auth::from_uri(&url, secret);
    let what = web::shown(&url);
    web::bounded(&what, timeout, async {
        let answer = web::get(&url, endpoint, &auth, timeout).await?;
        if !answer.status.is_success() {
            return Err(answer.status_error(&what));
        }
        let doc = answer.json(&what)?;
        let value = at(&doc, &pointer).map_err(|e| format!("{what}: {e}"))?;
        Ok(Sample { value, unit: "" })
    })
    .await
}

/// The number at `pointer` in `doc`.
fn at(doc: &Value, pointer: &str) -> Result<f64, String> {
    let shown = if pointer.is_empty() {
        "#".to_string()
    } else {
        format!("#{}", pointer)
    };
    match doc.pointer(pointer) {
        Some(v) => web::number(v).ok_or_else(|| {
            format!(
                "the value at {shown} must be a number or a numeric string; it is {}",
                web::describe_json(v)
            )
        }),
        None => {
            // Say where the walk stopped: the deepest part of the pointer that exists.
            let mut parent = String::new();
            for token in pointer.split('/').skip(1) {
                let next = format!("{parent}/{token}");
                if doc.pointer(&next).is_none() {
                    let here = doc.pointer(&parent).unwrap_or(doc);
                    let place = if parent.is_empty() {
                        "the document".to_string()
                    } else {
                        format!("#{}", parent)
                    };
                    let token = token.replace("~1", "/").replace("~0", "~");
                    let found = match here {
                        Value::Object(map) => {
                            let keys: Vec<&str> = map.keys().take(10).map(String::as_str).collect();
                            let more = if map.len() > 10 { ", …" } else { "" };
                            format!(
                                "{place} is an object without \"{token}\" (its keys: {}{more})",
                                keys.join(", ")
                            )
                        }
                        Value::Array(a) => format!(
                            "{place} is an array of {} items, with no item \"{token}\"",
                            a.len()
                        ),
                        other => format!("{place} is {}", web::describe_json(other)),
                    };
                    return Err(format!("no value at {shown}: {found}"));
                }
                parent = next;
            }
            Err(format!("no value at {shown}"))
        }
    }
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

    #[tokio::test]
    async fn http_json_reads_numbers_and_says_what_it_found() {
        let port = serve(|req| {
            let path = req.target.split('?').next().unwrap_or("");
            match path {
                "/stats" => Reply::json(
                    200,
                    r#"{"queue":{"depth":17,"lag":"2.5","name":"jobs","ready":true,"a/b":3},"list":[1,2]}"#,
                ),
                "/secure" => {
                    if req.authorization.as_deref() == Some("Bearer good-token") {
                        Reply::json(200, r#"{"n":5}"#)
                    } else {
                        Reply::json(401, "{\"error\":\"invalid token\"}\n")
                    }
                }
                "/html" => Reply {
                    status: 200,
                    content_type: "text/html",
                    body: b"<html>\n<body>Welcome to nginx!</body></html>".to_vec(),
                    delay: Duration::ZERO,
                    no_length: false,
                },
                "/slow" => Reply {
                    delay: Duration::from_secs(3),
                    ..Reply::json(200, r#"{"n":1}"#)
                },
                "/big" => Reply::json(200, format!("[{}0]", "0,".repeat(3 * 1024 * 1024))),
                "/big-unknown-length" => Reply {
                    no_length: true,
                    ..Reply::json(200, format!("[{}0]", "0,".repeat(3 * 1024 * 1024)))
                },
                _ => Reply::json(404, "not found"),
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let t = Duration::from_secs(2);

        let s = read(&format!("{base}/stats#/queue/depth"), None, t)
            .await
            .unwrap();
        assert_eq!(
            s,
            Sample {
                value: 17.0,
                unit: ""
            }
        );
        let s = read(&format!("{base}/stats?x=1#/queue/lag"), None, t)
            .await
            .unwrap();
        assert_eq!(s.value, 2.5);
        let s = read(&format!("{base}/stats#/queue/a~1b"), None, t)
            .await
            .unwrap();
        assert_eq!(s.value, 3.0);
        let s = read(&format!("{base}/stats#/list/1"), None, t)
            .await
            .unwrap();
        assert_eq!(s.value, 2.0);

        let e = read(&format!("{base}/stats#/queue/size"), None, t)
            .await
            .unwrap_err();
        assert!(e.contains("no value at #/queue/size"), "{e}");
        assert!(e.contains("#/queue is an object without \"size\""), "{e}");
        assert!(e.contains("depth"), "{e}");

        let e = read(&format!("{base}/stats#/queue/name"), None, t)
            .await
            .unwrap_err();
        assert!(
            e.contains("the value at #/queue/name must be a number or a numeric string; it is a string \"jobs\""),
            "{e}"
        );
        let e = read(&format!("{base}/stats#/queue/ready"), None, t)
            .await
            .unwrap_err();
        assert!(e.contains("it is the boolean true"), "{e}");
        let e = read(&format!("{base}/stats#/queue"), None, t)
            .await
            .unwrap_err();
        assert!(e.contains("it is an object {\"a/b\":3,\"depth\":17"), "{e}");

        let e = read(&format!("{base}/stats"), None, t).await.unwrap_err();
        assert!(e.contains("has no #/json/pointer"), "{e}");
        let e = read(&format!("{base}/stats#queue"), None, t)
            .await
            .unwrap_err();
        assert!(e.contains("must start with /"), "{e}");

        let e = read(&format!("{base}/html#/n"), None, t).await.unwrap_err();
        assert!(
            e.contains("did not answer JSON") && e.contains("Welcome to nginx!"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");

        let started = std::time::Instant::now();
        let e = read(&format!("{base}/slow#/n"), None, Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(e.contains("no answer within 500ms"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));

        let e = read(&format!("{base}/big#/0"), None, t).await.unwrap_err();
        assert!(e.contains("more than 4 MiB"), "{e}");
        let e = read(&format!("{base}/big-unknown-length#/0"), None, t)
            .await
            .unwrap_err();
        assert!(e.contains("more than 4 MiB"), "{e}");

        let e = read(&format!("{base}/secure#/n"), Some("bad-token"), t)
            .await
            .unwrap_err();
        assert!(e.contains("HTTP 401") && e.contains("invalid token"), "{e}");
        assert!(!e.contains("bad-token"), "{e}");
        let s = read(&format!("{base}/secure#/n"), Some("good-token\n"), t)
            .await
            .unwrap();
        assert_eq!(s.value, 5.0);

        let e = read(&format!("{base}/nowhere#/n"), None, t)
            .await
            .unwrap_err();
        assert!(e.contains("HTTP 404"), "{e}");

        let e = read(
            &format!("http://u:s3cret@127.0.0.1:{port}/stats#/n"),
            None,
            t,
        )
        .await
        .unwrap_err();
        assert!(
            e.contains("docs/metrics.md") && !e.contains("s3cret"),
            "{e}"
        );

        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = read(&format!("http://127.0.0.1:{closed}/x#/n"), None, t)
            .await
            .unwrap_err();
        assert!(e.contains("nothing listens there"), "{e}");
    }
}
