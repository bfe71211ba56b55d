//! `nats://HOST[:8222]/STREAM/CONSUMER[?ack_pending=true&account=ACCOUNT&tls=true]`:
//! a JetStream consumer's pending messages (plus those delivered but not yet
//! acknowledged with `ack_pending=true`) from the server's HTTP monitoring port,
//! `GET /jsz?consumers=true` (`/jsz?acc=ACCOUNT&consumers=true` with `account=`),
//! as in nats-server 2.9.
//!
//! The port is the monitoring port (`-m`, usually 8222), not the client port
//! (4222). In a cluster, ask a server that holds the stream.

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
    let params = web::params(&url, &["ack_pending", "account", "tls"])?;
    let usage = || {
        format!(
            "the metric URI {} must name a stream and a consumer: nats://HOST:8222/STREAM/CONSUMER",
            web::shown(&url)
        )
    };
    let path = url.path().strip_prefix('/').unwrap_or(url.path());
    let (stream, consumer) = path.split_once('/').ok_or_else(usage)?;
    if stream.is_empty() || consumer.is_empty() || consumer.contains('/') {
        return Err(usage());
    }
    let (stream, consumer) = (web::percent_decode(stream)?, web::percent_decode(consumer)?);
    let ack_pending = web::flag(&params, "ack_pending")?;
    let account = web::param(&params, "account");
    let mut api = web::api_url(&url, &params, Some(8222), "/jsz")?;
    let host = web::host_port(&api);
    {
        let mut q = api.query_pairs_mut();
        if let Some(acc) = account {
            q.append_pair("acc", acc);
        }
        q.append_pair("consumers", "true");
    }
    let what = format!("NATS monitoring at {host}");
    let auth = Auth::from_uri(&url, secret);
    web::bounded(&what, timeout, async {
        let answer = web::get(&api, endpoint, &auth, timeout).await.map_err(|e| {
            if e.contains("unexpected message") || e.contains("invalid HTTP") {
                format!(
                    "{what} does not speak HTTP: is this the client port (4222)? Use the monitoring port (nats-server -m, usually 8222)"
                )
            } else {
                e
            }
        })?;
        if !answer.status.is_success() {
            return Err(answer.status_error(&what));
        }
        let doc = answer.json(&what)?;
        let c =
            find(&doc, &stream, &consumer).map_err(|e| format!("{what}: {e}"))?;
        let count = |field: &str| -> Result<f64, String> {
            c.get(field)
                .and_then(web::number)
                .ok_or_else(|| format!("{what}: consumer {consumer} has no number {field}"))
        };
        let mut value = count("num_pending")?;
        if ack_pending {
            value += count("num_ack_pending")?;
        }
        Ok(Sample {
            value,
            unit: "messages",
        })
    })
    .await
}

/// The consumer's details in a `/jsz?consumers=true` answer.
fn find<'a>(doc: &'a Value, stream: &str, consumer: &str) -> Result<&'a Value, String> {
    if doc.get("disabled").and_then(Value::as_bool) == Some(true) {
        return Err("JetStream is not enabled on this server (start nats-server with -js)".into());
    }
    if doc.get("server_id").is_none() {
        return Err(
            "the answer is not a /jsz report: is this the monitoring port (-m, usually 8222)?"
                .into(),
        );
    }
    let accounts = doc
        .get("account_details")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut found: Vec<(&str, &Value)> = Vec::new();
    let mut stream_names: Vec<&str> = Vec::new();
    for acc in accounts {
        let acc_name = acc.get("name").and_then(Value::as_str).unwrap_or("?");
        for s in acc
            .get("stream_detail")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = s.get("name").and_then(Value::as_str).unwrap_or("");
            stream_names.push(name);
            if name == stream {
                found.push((acc_name, s));
            }
        }
    }
    let s = match found.as_slice() {
        [] => {
            let list = if stream_names.is_empty() {
                "there is none".to_string()
            } else {
                let more = if stream_names.len() > 10 { ", …" } else { "" };
                format!(
                    "its streams: {}{more}",
                    stream_names
                        .iter()
                        .take(10)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(format!(
                "no stream {stream} ({list}; names are case-sensitive)"
            ));
        }
        [(_, s)] => *s,
        many => {
            let accs: Vec<&str> = many.iter().map(|(a, _)| *a).collect();
            return Err(format!(
                "stream {stream} exists in several accounts ({}): add ?account=NAME",
                accs.join(", ")
            ));
        }
    };
    let consumers: Vec<&Value> = s
        .get("consumer_detail")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    consumers
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(consumer))
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = consumers
                .iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .take(10)
                .collect();
            let list = if names.is_empty() {
                "it has none".to_string()
            } else {
                format!("its consumers: {}", names.join(", "))
            };
            format!("stream {stream} has no consumer {consumer} ({list})")
        })
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
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::process::{Child, Command, Stdio};

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

    /// A minimal NATS client over the text protocol: enough to create a stream
    /// and a durable consumer through the JetStream API and publish messages
    /// (no NATS client crate needed; the `nats` CLI is not packaged in Debian).
    struct Client {
        conn: TcpStream,
        reader: BufReader<TcpStream>,
    }

    impl Client {
        fn connect(port: u16) -> Self {
            let conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut info = String::new();
            reader.read_line(&mut info).unwrap();
            assert!(info.starts_with("INFO"), "{info}");
            let mut c = Client { conn, reader };
            c.send(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB _INBOX.t 1\r\n");
            c
        }

        fn send(&mut self, b: &[u8]) {
            self.conn.write_all(b).unwrap();
        }

        fn publish(&mut self, subject: &str, reply: Option<&str>, payload: &[u8]) {
            let head = match reply {
                Some(r) => format!("PUB {subject} {r} {}\r\n", payload.len()),
                None => format!("PUB {subject} {}\r\n", payload.len()),
            };
            self.send(head.as_bytes());
            self.send(payload);
            self.send(b"\r\n");
        }

        /// A JetStream API request; the reply's JSON.
        fn request(&mut self, subject: &str, body: &str) -> Value {
            self.publish(subject, Some("_INBOX.t"), body.as_bytes());
            loop {
                let mut line = String::new();
                self.reader.read_line(&mut line).unwrap();
                if line.starts_with("PING") {
                    self.send(b"PONG\r\n");
                } else if line.starts_with("MSG") {
                    let n: usize = line.split_whitespace().last().unwrap().parse().unwrap();
                    let mut buf = vec![0; n + 2];
                    self.reader.read_exact(&mut buf).unwrap();
                    let v: Value = serde_json::from_slice(&buf[..n]).unwrap();
                    assert!(v.get("error").is_none(), "{subject}: {v}");
                    return v;
                } else if line.starts_with("-ERR") {
                    panic!("{line}");
                }
            }
        }

        /// Pulls `n` messages for a pull consumer and leaves them unacknowledged.
        fn pull(&mut self, stream: &str, consumer: &str, n: usize) {
            self.publish(
                &format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
                Some("_INBOX.t"),
                format!("{{\"batch\":{n},\"no_wait\":true}}").as_bytes(),
            );
            let mut got = 0;
            while got < n {
                let mut line = String::new();
                self.reader.read_line(&mut line).unwrap();
                if line.starts_with("PING") {
                    self.send(b"PONG\r\n");
                } else if line.starts_with("MSG") {
                    let len: usize = line.split_whitespace().last().unwrap().parse().unwrap();
                    let mut buf = vec![0; len + 2];
                    self.reader.read_exact(&mut buf).unwrap();
                    got += 1;
                }
            }
        }

        /// Waits until the server has processed everything sent so far.
        fn flush(&mut self) {
            self.send(b"PING\r\n");
            loop {
                let mut line = String::new();
                self.reader.read_line(&mut line).unwrap();
                if line.starts_with("PONG") {
                    return;
                }
            }
        }
    }

    #[tokio::test]
    async fn nats_consumer_pending_against_a_real_server() {
        crate::testutil::require_program("nats-server", "nats-server");
        let dir = tempfile::tempdir().unwrap();
        let (port, mon) = (free_port(), free_port());
        let _server = Kill(
            Command::new("nats-server")
                .args(["-js", "-a", "127.0.0.1"])
                .arg("-sd")
                .arg(dir.path())
                .args(["-p", &port.to_string(), "-m", &mon.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err()
            || TcpStream::connect(("127.0.0.1", mon)).is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut c = Client::connect(port);
        c.request(
            "$JS.API.STREAM.CREATE.ORDERS",
            r#"{"name":"ORDERS","subjects":["orders.>"]}"#,
        );
        c.request(
            "$JS.API.CONSUMER.DURABLE.CREATE.ORDERS.worker",
            r#"{"stream_name":"ORDERS","config":{"durable_name":"worker","ack_policy":"explicit"}}"#,
        );
        for _ in 0..5 {
            c.publish("orders.new", None, b"hi");
        }
        c.flush();
        // Take two messages and do not acknowledge them: 3 pending, 2 ack-pending.
        c.pull("ORDERS", "worker", 2);
        std::thread::sleep(Duration::from_millis(300));

        let t = Duration::from_secs(5);
        let base = format!("nats://127.0.0.1:{mon}");
        let s = read(&format!("{base}/ORDERS/worker"), None, t)
            .await
            .unwrap();
        assert_eq!(
            s,
            Sample {
                value: 3.0,
                unit: "messages"
            }
        );
        let s = read(&format!("{base}/ORDERS/worker?ack_pending=true"), None, t)
            .await
            .unwrap();
        assert_eq!(s.value, 5.0);
        let s = read(&format!("{base}/ORDERS/worker?account=%24G"), None, t)
            .await
            .unwrap();
        assert_eq!(s.value, 3.0);

        let e = read(&format!("{base}/orders/worker"), None, t)
            .await
            .unwrap_err();
        assert!(
            e.contains("no stream orders (its streams: ORDERS; names are case-sensitive)"),
            "{e}"
        );
        let e = read(&format!("{base}/ORDERS/nobody"), None, t)
            .await
            .unwrap_err();
        assert!(
            e.contains("stream ORDERS has no consumer nobody (its consumers: worker)"),
            "{e}"
        );
        let e = read(&format!("{base}/ORDERS"), None, t).await.unwrap_err();
        assert!(e.contains("must name a stream and a consumer"), "{e}");
        let e = read(
            &format!("nats://127.0.0.1:{port}/ORDERS/worker"),
            None,
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(e.contains("is this the client port (4222)?"), "{e}");
    }

    #[test]
    fn jetstream_disabled_and_no_streams_are_named() {
        let off: Value =
            serde_json::from_str(r#"{"server_id":"X","disabled":true,"config":{}}"#).unwrap();
        assert!(
            find(&off, "S", "C")
                .unwrap_err()
                .contains("start nats-server with -js")
        );
        let empty: Value =
            serde_json::from_str(r#"{"server_id":"X","config":{},"streams":0}"#).unwrap();
        assert_eq!(
            find(&empty, "S", "C").unwrap_err(),
            "no stream S (there is none; names are case-sensitive)"
        );
        let other: Value = serde_json::from_str(r#"{"queue":1}"#).unwrap();
        assert!(
            find(&other, "S", "C")
                .unwrap_err()
                .contains("monitoring port")
        );
    }
}
