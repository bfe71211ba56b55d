//! `rabbitmq://[USER@]HOST[:15672]/VHOST/QUEUE[?user=USER&unacked=true&tls=true]`:
//! a queue's ready messages (plus unacknowledged ones with `unacked=true`) from the
//! management plugin's HTTP API, `GET /api/queues/{vhost}/{queue}`, with basic
//! auth USER (default `guest`) and the rule's secret as the password.
//!
//! The default vhost `/` is written `%2F` (or left empty: `rabbitmq://h:15672//q`);
//! a `/` inside a queue name is written `%2F`.

use std::time::Duration;

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
    let params = web::params(&url, &["user", "unacked", "tls"])?;
    let (vhost, queue) = target(&url)?;
    let user = match (url.username(), web::param(&params, "user")) {
        ("", None) => "guest".to_string(),
        ("", Some(u)) => u.to_string(),
        (u, None) => web::percent_decode(u)?,
        (_, Some(_)) => {
            return Err(format!(
                "the metric URI {} names the user twice (before @ and in ?user=): keep one",
                web::shown(&url)
            ));
        }
    };
    let Some(secret) = secret else {
        return Err(format!(
            "RabbitMQ's management API needs a password for user \"{}\": name a secret file or environment variable in the rule, see docs/metrics.md",
            user
        ));
    };
    let unacked = web::flag(&params, "unacked")?;
    let mut api = web::api_url(&url, &params, Some(15672), "/")?;
    let host = web::host_port(&api);
    api.path_segments_mut()
        .map_err(|_| "cannot build the API address".to_string())?
        .clear()
        .extend(["api", "queues", &vhost, &queue]);
    let what = format!("RabbitMQ at {host}");
    let auth = Auth::Basic(&user, Some(secret));
    web::bounded(&what, timeout, async {
        let answer = web::get(&api, endpoint, &auth, timeout).await?;
        match answer.status.as_u16() {
            404 => {
                return Err(format!(
                    "no queue {queue} in vhost {vhost} at {host} (check the names; the default vhost is written %2F)"
                ));
            }
            401 => {
                return Err(format!(
                    "{what} refused user \"{}\": check the user and the secret the rule names",
                    user
                ));
            }
            _ if !answer.status.is_success() => return Err(answer.status_error(&what)),
            _ => {}
        }
        let doc = answer.json(&what)?;
        let count = |field: &str| -> Result<f64, String> {
            match doc.get(field) {
                Some(v) => web::number(v).ok_or_else(|| {
                    format!("{what}: {field} is {}, not a count", web::describe_json(v))
                }),
                // A queue declared a moment ago has no statistics until the next
                // collection (every 5 s by default).
                None if doc.get("name").is_some() => Err(format!(
                    "{what}: queue {queue} has no {field} yet (the management plugin collects statistics every few seconds; is it a stream queue?)"
                )),
                None => Err(format!(
                    "{what}: the answer has no {field}: is this the management API? It answered {}",
                    web::describe_json(&doc)
                )),
            }
        };
        let mut value = count("messages_ready")?;
        if unacked {
            value += count("messages_unacknowledged")?;
        }
        Ok(Sample {
            value,
            unit: "messages",
        })
    })
    .await
}

/// The vhost and queue named by the URI's path.
fn target(url: &reqwest::Url) -> Result<(String, String), String> {
    let usage = || {
        format!(
            "the metric URI {} must name a vhost and a queue: rabbitmq://HOST:15672/VHOST/QUEUE (the default vhost is %2F)",
            web::shown(url)
        )
    };
    let path = url.path().strip_prefix('/').unwrap_or(url.path());
    let (vhost, queue) = path.split_once('/').ok_or_else(usage)?;
    if queue.is_empty() || queue.contains('/') {
        return Err(usage());
    }
    let vhost = web::percent_decode(vhost)?;
    let vhost = if vhost.is_empty() { "/".into() } else { vhost };
    Ok((vhost, web::percent_decode(queue)?))
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

    #[test]
    fn vhost_and_queue_from_the_path() {
        let t = |u: &str| target(&reqwest::Url::parse(u).unwrap());
        assert_eq!(
            t("rabbitmq://h:15672/%2F/jobs").unwrap(),
            ("/".into(), "jobs".into())
        );
        assert_eq!(
            t("rabbitmq://h:15672//jobs").unwrap(),
            ("/".into(), "jobs".into())
        );
        assert_eq!(
            t("rabbitmq://h/prod/a%2Fb").unwrap(),
            ("prod".into(), "a/b".into())
        );
        assert!(
            t("rabbitmq://h:15672/jobs")
                .unwrap_err()
                .contains("must name a vhost and a queue")
        );
        assert!(t("rabbitmq://h:15672/v/a/b").is_err());
    }

    // The management API's answer shape (GET /api/queues/%2F/jobs, RabbitMQ 3.x),
    // served by hand for what a real server makes slow or awkward to reach:
    // unacknowledged messages (they need an AMQP consumer) and a queue without
    // statistics yet. The real server is below.
    #[tokio::test]
    async fn rabbitmq_queue_counts_from_the_management_api_shape() {
        let port = serve(|req| {
            // "guest:pw" in base64.
            if req.authorization.as_deref() != Some("Basic Z3Vlc3Q6cHc=") {
                return Reply::json(401, r#"{"error":"not_authorised","reason":"Login failed"}"#);
            }
            match req.target.as_str() {
                "/api/queues/%2F/jobs" => Reply::json(
                    200,
                    r#"{"name":"jobs","vhost":"/","messages":12,"messages_ready":10,"messages_unacknowledged":2}"#,
                ),
                "/api/queues/%2F/fresh" => Reply::json(200, r#"{"name":"fresh","vhost":"/"}"#),
                _ => Reply::json(404, r#"{"error":"Object Not Found","reason":"Not Found"}"#),
            }
        });
        let t = Duration::from_secs(2);
        let base = format!("rabbitmq://127.0.0.1:{port}");
        let s = read(&format!("{base}/%2F/jobs"), Some("pw"), t)
            .await
            .unwrap();
        assert_eq!(
            s,
            Sample {
                value: 10.0,
                unit: "messages"
            }
        );
        let s = read(&format!("{base}//jobs?unacked=true"), Some("pw"), t)
            .await
            .unwrap();
        assert_eq!(s.value, 12.0);
        let e = read(&format!("{base}/%2F/nope"), Some("pw"), t)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            format!(
                "no queue nope in vhost / at 127.0.0.1:{port} (check the names; the default vhost is written %2F)"
            )
        );
        let e = read(&format!("{base}/%2F/jobs"), Some("wrong"), t)
            .await
            .unwrap_err();
        assert!(
            e.contains("refused user \"guest\"") && !e.contains("wrong"),
            "{e}"
        );
        let e = read(&format!("{base}/%2F/fresh"), Some("pw"), t)
            .await
            .unwrap_err();
        assert!(e.contains("has no messages_ready yet"), "{e}");
        let e = read(&format!("{base}/%2F/jobs"), None, t)
            .await
            .unwrap_err();
        assert!(e.contains("needs a password"), "{e}");
        let e = read(
            &format!("rabbitmq://guest:pw@127.0.0.1:{port}/%2F/jobs"),
            None,
            t,
        )
        .await
        .unwrap_err();
        assert!(e.contains("docs/metrics.md") && !e.contains(":pw"), "{e}");
        let e = read(&format!("{base}/%2F/jobs?unacked=maybe"), Some("pw"), t)
            .await
            .unwrap_err();
        assert!(e.contains("must be true or false"), "{e}");
    }

    /// RabbitMQ (Debian's rabbitmq-server, with the management plugin) started by
    /// the test in its own process group, its node, ports and epmd private.
    struct Rabbit {
        child: std::process::Child,
        epmd_port: u16,
    }

    impl Drop for Rabbit {
        fn drop(&mut self) {
            // The script starts beam.smp and its helpers in the group it leads.
            let pgid = self.child.id() as libc::pid_t;
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            let _ = self.child.wait();
            // The node's own epmd, on its private port, exits once asked; it
            // refuses while it still counts the node as alive, so ask again.
            for _ in 0..50 {
                let done = std::process::Command::new("epmd")
                    .arg("-kill")
                    .env("ERL_EPMD_PORT", self.epmd_port.to_string())
                    .stderr(std::process::Stdio::null())
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("Killed"));
                let gone = std::net::TcpStream::connect(("127.0.0.1", self.epmd_port)).is_err();
                if done || gone {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

    #[tokio::test]
    async fn rabbitmq_queue_depth_against_a_real_server() {
        use std::os::unix::process::CommandExt;

        crate::testutil::require_program(RABBITMQ_SERVER, "rabbitmq-server");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (amqp, mgmt, dist, epmd) = (free_port(), free_port(), free_port(), free_port());
        std::fs::write(
            d.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = {amqp}\nmanagement.tcp.port = {mgmt}\nmanagement.tcp.ip = 127.0.0.1\ncollect_statistics_interval = 500\n"
            ),
        )
        .unwrap();
        std::fs::write(d.join("enabled_plugins"), "[rabbitmq_management].\n").unwrap();
        let log = std::fs::File::create(d.join("out")).unwrap();
        let _rabbit = Rabbit {
            child: std::process::Command::new(RABBITMQ_SERVER)
                .env("HOME", d)
                .env("RABBITMQ_BASE", d)
                .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
                .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
                .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
                .env("RABBITMQ_LOG_BASE", d.join("log"))
                .env("RABBITMQ_LOGS", "-")
                .env("RABBITMQ_NODENAME", format!("microscale-{amqp}@localhost"))
                .env("RABBITMQ_DIST_PORT", dist.to_string())
                .env("ERL_EPMD_PORT", epmd.to_string())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .process_group(0)
                .spawn()
                .unwrap(),
            epmd_port: epmd,
        };
        let http = reqwest::Client::new();
        let api = format!("http://127.0.0.1:{mgmt}/api");
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let up = http
                .get(format!("{api}/overview"))
                .basic_auth("guest", Some("guest"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "rabbitmq-server did not start: {}",
                std::fs::read_to_string(d.join("out")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let r = http
            .put(format!("{api}/queues/%2F/jobs"))
            .basic_auth("guest", Some("guest"))
            .header("content-type", "application/json")
            .body(r#"{"durable":false}"#)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        for _ in 0..3 {
            let r = http
                .post(format!("{api}/exchanges/%2F/amq.default/publish"))
                .basic_auth("guest", Some("guest"))
                .header("content-type", "application/json")
                .body(r#"{"properties":{},"routing_key":"jobs","payload":"x","payload_encoding":"string"}"#)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
        }

        let t = Duration::from_secs(5);
        let uri = format!("rabbitmq://127.0.0.1:{mgmt}/%2F/jobs");
        // The management plugin publishes counts with its statistics, a few
        // seconds after the messages arrive.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match read(&uri, Some("guest\n"), t).await {
                Ok(s) if s.value == 3.0 => {
                    assert_eq!(s.unit, "messages");
                    break;
                }
                other => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "never 3 ready messages: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        let s = read(&format!("{uri}?unacked=true&user=guest"), Some("guest"), t)
            .await
            .unwrap();
        assert_eq!(s.value, 3.0);

        let e = read(
            &format!("rabbitmq://127.0.0.1:{mgmt}/%2F/nope"),
            Some("guest"),
            t,
        )
        .await
        .unwrap_err();
        assert!(
            e.starts_with(&format!("no queue nope in vhost / at 127.0.0.1:{mgmt}")),
            "{e}"
        );
        let e = read(
            &format!("rabbitmq://127.0.0.1:{mgmt}/other/jobs"),
            Some("guest"),
            t,
        )
        .await
        .unwrap_err();
        assert!(e.starts_with("no queue jobs in vhost other"), "{e}");
        let e = read(&uri, Some("not-the-password"), t).await.unwrap_err();
        assert!(e.contains("refused user \"guest\""), "{e}");
        assert!(!e.contains("not-the-password"), "{e}");
    }
}
