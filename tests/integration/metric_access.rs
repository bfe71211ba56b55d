//! A label never chooses the host a metric is read from, nor where a secret goes
//! (issue 13): every case of the break-it round, against listeners that record what
//! they receive. A refused target receives nothing, not even a connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;

/// A listener that records the head of every request it receives and answers each
/// with `reply` (status line and body). Stops after 120 seconds.
struct Recorder {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn bind(addr: &str, reply: (&'static str, String)) -> Recorder {
        // A fixed port (127.0.0.3:80) may be held a moment by another test process
        // of this machine: wait for it.
        let deadline = Instant::now() + Duration::from_secs(60);
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => panic!("cannot listen on {addr}: {e} (the tests run as root)"),
            }
        };
        Self::serve(listener, reply)
    }

    fn serve(listener: TcpListener, reply: (&'static str, String)) -> Recorder {
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(120) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let (status, body) = &reply;
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Recorder { addr, heads }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What it received so far (each connection's request head).
    fn received(&self) -> Vec<String> {
        // A connection the plugin made is accepted within a few milliseconds.
        std::thread::sleep(Duration::from_millis(100));
        self.heads.lock().unwrap().clone()
    }

    #[track_caller]
    fn assert_untouched(&self, after: &str) {
        let got = self.received();
        assert!(
            got.is_empty(),
            "{} was contacted after {after}: {got:?}",
            self.addr
        );
    }
}

/// The plugin against the manager, with `MICROSCALE_SECRET_DIRS` set to `dirs`.
fn plugin_with_secrets(dirs: &Path, args: &[&str]) -> Output {
    clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", manager_host())
        .env("MICROSCALE_SECRET_DIRS", dirs)
        .args(args)
        .output()
        .expect("run docker-microscale")
}

const TOKEN: &str = "tok-S3CRET-9f81";

#[test]
fn a_label_never_chooses_the_host_nor_where_a_secret_goes() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(dir.path().join("outside"), "outside-S3CRET\n").unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside"), secrets.join("link")).unwrap();
    let token_file = secrets.join("token").display().to_string();
    let link_file = secrets.join("link").display().to_string();

    // The host a bypass would reach (http's default port, and another one), and the
    // allowed host named after the backslash.
    let evil80 = Recorder::bind("127.0.0.3:80", ("200 OK", "{\"v\":1}".into()));
    let evil = Recorder::bind("127.0.0.3:0", ("200 OK", "{\"v\":1}".into()));
    let good = Recorder::bind("127.0.0.1:0", ("200 OK", "{\"v\":1}".into()));
    let (ep, gp) = (evil.port(), good.port());

    // 1. A backslash splits nothing: refused before any connection, by every command.
    for uri in [
        format!("http://127.0.0.3\\@127.0.0.1:{gp}/x?secret-file={token_file}#/v"),
        format!("https://127.0.0.3\\@localhost:{gp}/x#/v"),
        format!("http://127.0.0.3:{ep}\\@127.0.0.1:{gp}/x#/v"),
        format!("redis://127.0.0.3\\@127.0.0.1:{gp}/0?list=a"),
    ] {
        for allow in [None, Some("127.0.0.1,localhost")] {
            let mut args = vec!["metric"];
            if let Some(a) = allow {
                args.extend(["--metric-allow", a]);
            }
            args.push(&uri);
            let out = plugin_with_secrets(&secrets, &args);
            fails(&out, 1, "a \\ in the metric URI");
            assert!(!stderr(&out).contains(TOKEN));
        }
    }
    evil80.assert_untouched("a backslash URI");
    good.assert_untouched("a backslash URI");

    // 2. A secret goes only where the operator bound it.
    let collect = format!("http://127.0.0.1:{gp}/collect?secret-file={token_file}#/v");
    let out = plugin_with_secrets(&secrets, &["metric", &collect]);
    fails(&out, 1, "to no host, so it is not sent to");
    fails(
        &out,
        1,
        &format!("add --metric-secret {token_file}=127.0.0.1:{gp}"),
    );
    let out = plugin_with_secrets(
        &secrets,
        &[
            "metric",
            "--metric-secret",
            &format!("{token_file}=127.0.0.2"),
            &collect,
        ],
    );
    fails(&out, 1, "to 127.0.0.2 only, so it is not sent to 127.0.0.1");
    good.assert_untouched("an unbound secret");

    // 3. A secret file that is a link out of the secret directory is not read.
    let out = plugin_with_secrets(
        &secrets,
        &[
            "metric",
            "--metric-secret",
            &format!("{link_file}=127.0.0.1"),
            &format!("http://127.0.0.1:{gp}/x?secret-file={link_file}#/v"),
        ],
    );
    fails(&out, 1, "outside the secret directories");
    assert!(stderr(&out).contains("resolves to"), "{}", stderr(&out));
    good.assert_untouched("a secret file linked out of its directory");

    // 4. Bound, it is sent (the control: the listeners do see what reaches them).
    let out = plugin_with_secrets(
        &secrets,
        &[
            "metric",
            "--metric-secret",
            &format!("{token_file}=127.0.0.1:{gp}"),
            &collect,
        ],
    );
    assert_eq!(stdout(&ok(out)), "1\n");
    let heads = good.received();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].contains(&format!("authorization: Bearer {TOKEN}")),
        "{heads:?}"
    );

    // 5. A server that echoes the secret never gets it printed.
    let echo401 = Recorder::bind(
        "127.0.0.1:0",
        ("401 Unauthorized", format!("bad token {TOKEN}")),
    );
    let echo_value = Recorder::bind("127.0.0.1:0", ("200 OK", format!("{{\"v\":\"{TOKEN}\"}}")));
    for r in [&echo401, &echo_value] {
        let uri = format!(
            "http://127.0.0.1:{}/m?secret-file={token_file}#/v",
            r.port()
        );
        let out = plugin_with_secrets(
            &secrets,
            &[
                "metric",
                "--metric-secret",
                &format!("{token_file}=127.0.0.1"),
                &uri,
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(!stderr(&out).contains(TOKEN), "{}", stderr(&out));
        assert!(stderr(&out).contains("xxxxx"), "{}", stderr(&out));
        assert_eq!(r.received().len(), 1);
    }

    // 5b. However the server pads, re-spaces, JSON-escapes or re-encodes it (a
    // break-it round: the secret was masked only after the text was cut to 200
    // characters and its blanks joined).
    let odd = "pa  ss\"word\\S3CRET-odd";
    std::fs::write(secrets.join("odd"), odd).unwrap();
    let odd_file = secrets.join("odd").display().to_string();
    let json_escaped = serde_json::to_string(odd).unwrap();
    let replies = [
        (
            "401 Unauthorized",
            format!("{}Bearer {odd}", "y".repeat(160)),
        ),
        ("200 OK", format!("{{\"v\":{json_escaped}}}")),
        ("401 Unauthorized", format!("{{\"error\": {json_escaped}}}")),
        (
            "401 Unauthorized",
            "bad pa%20%20ss%22word%5cS3CRET-odd".to_string(),
        ),
        (
            "401 Unauthorized",
            format!("{}{odd}{}", "z ".repeat(150), "w".repeat(300)),
        ),
    ];
    for (status, body) in replies {
        let r = Recorder::bind("127.0.0.1:0", (status, body.clone()));
        let uri = format!("http://127.0.0.1:{}/m?secret-file={odd_file}#/v", r.port());
        let out = plugin_with_secrets(
            &secrets,
            &[
                "metric",
                "--metric-secret",
                &format!("{odd_file}=127.0.0.1"),
                &uri,
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            !err.to_ascii_lowercase().contains("s3cret"),
            "{body:?} -> {err}"
        );
        assert!(
            !err.contains("ss\\\"word") && !err.contains("ss\"word"),
            "{body:?} -> {err}"
        );
        assert_eq!(r.received().len(), 1);
    }

    // 6. The same rules as service labels: rules check, plan and status --metrics
    // refuse them, and nothing is contacted.
    let backslash = format!("http://127.0.0.3\\@127.0.0.1:{gp}/x?secret-file={token_file}#/v");
    let rule = |metric: &str| {
        vec![
            "--replicas".to_string(),
            "0".into(),
            "--label".into(),
            "microscale.min=0".into(),
            "--label".into(),
            "microscale.max=3".into(),
            "--label".into(),
            "microscale.target=1".into(),
            "--label".into(),
            format!("microscale.metric={metric}"),
        ]
    };
    let args = rule(&backslash);
    let split = TestService::create(
        &unique("access-split"),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let args = rule(&collect);
    let svc = TestService::create(
        &unique("access-sink"),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let out = plugin_with_secrets(&secrets, &["rules", "check", &split.name, &svc.name]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("a \\ in the metric URI"), "{text}");
    assert!(text.contains("to no host, so it is not sent to"), "{text}");
    // A host outside the allow-list depends on the reader's flags: a warning that
    // says which flag allows it.
    let args = rule("redis://not-a-service-here:6379/0?list=a");
    let alias = TestService::create(
        &unique("access-alias"),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let out = plugin_with_secrets(
        &secrets,
        &["rules", "check", "--format", "json", &alias.name],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let problem = &json_lines(&stdout(&out))[0];
    assert_eq!(problem["Severity"], "warning", "{problem}");
    assert!(
        problem["Expected"]
            .as_str()
            .unwrap()
            .contains("allow it with --metric-allow not-a-service-here:6379"),
        "{problem}"
    );
    // Bound to the host, the rule is valid.
    let out = plugin_with_secrets(
        &secrets,
        &[
            "rules",
            "check",
            "--metric-secret",
            &format!("{token_file}=127.0.0.1"),
            &svc.name,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = plugin_with_secrets(
        &secrets,
        &[
            "plan",
            "--format",
            "json",
            "--metric-secret",
            &format!("{token_file}=queue"),
            &svc.name,
        ],
    );
    let row = &json_lines(&stdout(&out))[0];
    assert_eq!(row["Action"], "hold", "{row}");
    let reasons = row["Reasons"].to_string();
    assert!(
        reasons.contains("to queue only, so it is not sent to 127.0.0.1"),
        "{reasons}"
    );
    assert!(!reasons.contains(TOKEN), "{reasons}");
    // A refused secret holds the service: a CI gate and a cron apply fail, and say
    // why on stderr.
    let out = plugin_with_secrets(
        &secrets,
        &["plan", "--no-trunc", "--detailed-exitcode", &svc.name],
    );
    fails(
        &out,
        1,
        &format!("a metric could not be read for {}", svc.name),
    );
    assert!(
        stdout(&out).contains("to no host, so it is not sent to"),
        "{}",
        stdout(&out)
    );
    let out = plugin_with_secrets(&secrets, &["apply", &svc.name]);
    fails(&out, 1, "Nothing changed: a metric could not be read");
    let out = plugin_with_secrets(&secrets, &["plan", &split.name, &svc.name]);
    assert!(!stdout(&out).contains(TOKEN) && !stderr(&out).contains(TOKEN));
    let out = plugin_with_secrets(&secrets, &["status", "--metrics", &svc.name]);
    assert!(!stdout(&out).contains(TOKEN));
    evil80.assert_untouched("rules as labels");
    evil.assert_untouched("rules as labels");
    assert_eq!(good.received().len(), 1, "only the control reached it");
}

/// Runs `f` on a thread of its own in a new network namespace, where 169.254.169.254
/// (the cloud metadata address) is a local address.
fn in_private_network<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare affects only this thread, which is ours alone.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {} (the tests run as root)",
            std::io::Error::last_os_error()
        );
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", "169.254.169.254/32", "dev", "lo"],
        ] {
            let out = Command::new("ip").args(args).output().expect("run ip");
            assert!(out.status.success(), "ip {args:?}: {}", stderr(&out));
        }
        f()
    })
    .join()
    .unwrap()
}

/// The plugin in this thread's network namespace, with its own /etc/hosts.
fn plugin_with_hosts(hosts: &Path, args: &[&str]) -> Output {
    let mut c = clean("unshare", plugin_config());
    c.env("DOCKER_HOST", manager_host())
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount --bind \"$1\" /etc/hosts && shift && exec \"$@\"")
        .arg("sh")
        .arg(hosts)
        .arg(plugin_bin())
        .args(args);
    c.output().expect("run unshare")
}

#[test]
fn numbers_and_names_that_reach_the_metadata_address_are_refused() {
    require("unshare", "util-linux");
    require("ip", "iproute2");
    // Swarm accepts a service named like a number; the default allow-list trusts
    // service names, but a number is an address.
    let numeric = TestService::create(
        "2852039166",
        &[
            "--replicas",
            "0",
            "--label",
            "microscale.min=0",
            "--label",
            "microscale.max=3",
            "--label",
            "microscale.target=1",
            "--label",
            "microscale.metric=http://2852039166/latest/meta-data#/v",
        ],
    );
    let name = numeric.name.clone();
    in_private_network(move || {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost\n169.254.169.254 meta.test\n").unwrap();
        let ports = [80, 6379, 8222, 4151, 15672, 9090];
        let meta: Vec<Recorder> = ports
            .iter()
            .map(|p| {
                Recorder::bind(
                    &format!("169.254.169.254:{p}"),
                    ("200 OK", "{\"v\":7}".into()),
                )
            })
            .collect();
        for uri in [
            "http://2852039166/latest/meta-data#/v",
            "https://2852039166/latest/meta-data#/v",
            "redis://2852039166/0?list=a",
            "nats://0xa9fea9fe/S/C",
            "nsq://0251.0376.0251.0376/t",
            "prometheus://169.254.43518:9090?query=up",
            "rabbitmq://169.16689662/%2F/q",
            "http://[::ffff:169.254.169.254]/#/v",
        ] {
            let out = plugin_with_hosts(&hosts, &["metric", uri]);
            fails(&out, 1, "169.254.169.254");
            fails(&out, 1, "is not allowed");
        }
        let out = plugin_with_hosts(&hosts, &["plan", "--format", "json", &name]);
        let row = &json_lines(&stdout(&out))[0];
        assert_eq!(row["Action"], "hold", "{row}");
        assert!(
            row["Reasons"]
                .to_string()
                .contains("169.254.169.254 is not allowed"),
            "{row}"
        );
        // A name allowed by the operator that resolves to the metadata address.
        let out = plugin_with_hosts(
            &hosts,
            &[
                "metric",
                "--metric-allow",
                "meta.test",
                "http://meta.test/latest#/v",
            ],
        );
        fails(
            &out,
            1,
            "meta.test resolves to 169.254.169.254, a link-local address",
        );
        fails(&out, 1, "--metric-allow 169.254.169.254:80");
        for r in &meta {
            r.assert_untouched("a refused metadata address");
        }
        // The control: listed exactly, the address is reached.
        let out = plugin_with_hosts(
            &hosts,
            &[
                "metric",
                "--metric-allow",
                "meta.test,169.254.169.254:80",
                "http://meta.test/latest#/v",
            ],
        );
        assert_eq!(stdout(&ok(out)), "7\n");
        assert_eq!(meta[0].received().len(), 1);
    });
}
