//! `nsq://HOST[:4151]/TOPIC[/CHANNEL][?tls=true]`: the depth (messages in memory
//! plus on disk) of an nsqd topic, or of one of its channels, from nsqd's HTTP
//! API: `GET /stats?format=json&topic=T[&channel=C]`.
//!
//! A topic with channels hands its messages on to them at once, so its own depth
//! stays near 0: for a consumer's backlog, name the channel.

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
    let params = web::params(&url, &["tls"])?;
    let usage = || {
        format!(
            "the metric URI {} must name a topic: nsq://HOST:4151/TOPIC[/CHANNEL]",
            web::shown(&url)
        )
    };
    let path = url.path().trim_start_matches('/');
    let mut parts = path.split('/');
    let topic = web::percent_decode(parts.next().unwrap_or(""))?;
    let channel = parts.next().map(web::percent_decode).transpose()?;
    if topic.is_empty() || channel.as_deref() == Some("") || parts.next().is_some() {
        return Err(usage());
    }
    let mut api = web::api_url(&url, &params, Some(4151), "/stats")?;
    let host = web::host_port(&api);
    {
        let mut q = api.query_pairs_mut();
        q.append_pair("format", "json").append_pair("topic", &topic);
        if let Some(c) = &channel {
            q.append_pair("channel", c);
        }
    }
    let what = format!("nsqd at {host}");
    let auth = Auth::from_uri(&url, secret);
    web::bounded(&what, timeout, async {
        let answer = web::get(&api, endpoint, &auth, timeout).await?;
        if !answer.status.is_success() {
            return Err(answer.status_error(&what));
        }
        let doc = answer.json(&what)?;
        let value = depth(&doc, &topic, channel.as_deref()).map_err(|e| format!("{what}: {e}"))?;
        Ok(Sample {
            value,
            unit: "messages",
        })
    })
    .await
}

/// The depth of the topic or channel in a `/stats?format=json` answer.
fn depth(doc: &Value, topic: &str, channel: Option<&str>) -> Result<f64, String> {
    // nsqd before 1.0 wraps the stats in {"status_code":200,"data":{…}}.
    let stats = doc.get("data").filter(|d| d.is_object()).unwrap_or(doc);
    let topics = stats
        .get("topics")
        .and_then(Value::as_array)
        .ok_or("the answer has no topics: is this nsqd's HTTP port (usually 4151)?")?;
    let name_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let t = topics
        .iter()
        .find(|t| name_of(t, "topic_name").as_deref() == Some(topic))
        .ok_or_else(|| {
            format!(
                "no topic {topic} on this nsqd (it is created by the first publish or consumer)"
            )
        })?;
    let (what, item) = match channel {
        None => (format!("topic {topic}"), t),
        Some(c) => {
            let channels = t.get("channels").and_then(Value::as_array);
            let found = channels
                .into_iter()
                .flatten()
                .find(|ch| name_of(ch, "channel_name").as_deref() == Some(c));
            match found {
                Some(ch) => (format!("channel {topic}/{c}"), ch),
                None => {
                    let names: Vec<String> = channels
                        .into_iter()
                        .flatten()
                        .filter_map(|ch| name_of(ch, "channel_name"))
                        .take(10)
                        .collect();
                    // nsqd filters the channels by name, so the list is usually empty.
                    let list = if names.is_empty() {
                        String::new()
                    } else {
                        format!(" (its channels: {})", names.join(", "))
                    };
                    return Err(format!(
                        "topic {topic} has no channel {c}{list} (a channel is created by its first consumer)"
                    ));
                }
            }
        }
    };
    item.get("depth")
        .and_then(web::number)
        .ok_or_else(|| format!("{what} has no number \"depth\""))
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

    // Debian packages no nsqd, so this test serves the documented shape of nsqd's
    // `GET /stats?format=json` (nsqd 1.2; filtered by topic and channel as nsqd
    // does) from a loopback server instead of running the real daemon.
    #[tokio::test]
    async fn nsq_depth_from_the_documented_stats_shape() {
        let port = serve(|req| {
            let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
            if path != "/stats" {
                return Reply::json(404, r#"{"message":"NOT_FOUND"}"#);
            }
            let get = |k: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                    .map(str::to_string)
            };
            assert_eq!(get("format").as_deref(), Some("json"));
            let all = [
                ("events", vec![("archive", 7), ("mailer", 12)], 1),
                ("empty", vec![], 0),
            ];
            let topics: Vec<String> = all
                .iter()
                .filter(|(t, _, _)| get("topic").is_none_or(|q| q == *t))
                .map(|(t, chans, depth)| {
                    let chans: Vec<String> = chans
                        .iter()
                        .filter(|(c, _)| get("channel").is_none_or(|q| q == *c))
                        .map(|(c, d)| {
                            format!(
                                r#"{{"channel_name":"{c}","depth":{d},"backend_depth":2,"in_flight_count":1,"deferred_count":0,"message_count":40,"requeue_count":0,"timeout_count":0,"client_count":1,"clients":[],"paused":false,"e2e_processing_latency":{{"count":0,"percentiles":null}}}}"#
                            )
                        })
                        .collect();
                    format!(
                        r#"{{"topic_name":"{t}","channels":[{}],"depth":{depth},"backend_depth":0,"message_count":40,"message_bytes":800,"paused":false,"e2e_processing_latency":{{"count":0,"percentiles":null}}}}"#,
                        chans.join(",")
                    )
                })
                .collect();
            Reply::json(
                200,
                format!(
                    r#"{{"version":"1.2.1","health":"OK","start_time":1700000000,"topics":[{}],"memory":{{"heap_objects":1}},"producers":[]}}"#,
                    topics.join(",")
                ),
            )
        });
        let t = Duration::from_secs(2);
        let base = format!("nsq://127.0.0.1:{port}");
        let s = read(&format!("{base}/events/mailer"), None, t)
            .await
            .unwrap();
        assert_eq!(
            s,
            Sample {
                value: 12.0,
                unit: "messages"
            }
        );
        let s = read(&format!("{base}/events"), None, t).await.unwrap();
        assert_eq!(s.value, 1.0);
        let e = read(&format!("{base}/nope"), None, t).await.unwrap_err();
        assert!(e.contains("no topic nope on this nsqd"), "{e}");
        let e = read(&format!("{base}/events/nobody"), None, t)
            .await
            .unwrap_err();
        assert!(
            e.contains("topic events has no channel nobody (a channel is created"),
            "{e}"
        );
        let e = read(&format!("{base}/"), None, t).await.unwrap_err();
        assert!(e.contains("must name a topic"), "{e}");
        let e = read(&format!("{base}/a/b/c"), None, t).await.unwrap_err();
        assert!(e.contains("must name a topic"), "{e}");
    }

    #[test]
    fn the_pre_1_0_wrapped_shape_is_read_too() {
        let doc: Value = serde_json::from_str(
            r#"{"status_code":200,"status_txt":"OK","data":{"topics":[{"topic_name":"t","depth":4,"channels":[{"channel_name":"c","depth":9}]}]}}"#,
        )
        .unwrap();
        assert_eq!(depth(&doc, "t", Some("c")).unwrap(), 9.0);
        assert_eq!(depth(&doc, "t", None).unwrap(), 4.0);
        let e = depth(&doc, "t", Some("x")).unwrap_err();
        assert!(
            e.starts_with("topic t has no channel x (its channels: c)"),
            "{e}"
        );
    }
}
