//! Bad input from every side, kept as tests: misbehaving endpoints, secrets in labels,
//! control characters, unwritable stderr, odd global flags and addresses.
//! Each case once broke the plugin (hang, unbounded memory, leaked secret, exit 101,
//! misleading error) and must now fail clearly with 0, 1, 125 or 130.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::harness::*;

/// A loopback HTTP server that reads each request's head and then runs `respond` on
/// the connection. Bounded: it stops accepting after 60 seconds.
fn scripted_server<F>(respond: F) -> String
where
    F: Fn(&mut std::net::TcpStream) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    let respond = std::sync::Arc::new(respond);
    std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            conn.set_nonblocking(false).unwrap();
            let respond = respond.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                respond(&mut conn);
            });
        }
    });
    addr
}

/// Runs the plugin's `status` against `host` with a short timeout.
fn status_against(host: &str) -> (std::process::Output, Duration) {
    let start = Instant::now();
    let out = clean(plugin_bin(), plugin_config())
        .env("MICROSCALE_TIMEOUT", "2")
        .args(["-H", host, "status"])
        .output()
        .unwrap();
    (out, start.elapsed())
}

#[test]
fn a_body_that_trickles_forever_is_cut_off() {
    let host = scripted_server(|conn| {
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        for _ in 0..30 {
            if conn.write_all(b"1\r\n \r\n").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let (out, took) = status_against(&host);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        stderr(&out).contains("no complete answer within 2 seconds"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_endless_body_is_cut_off_by_the_deadline() {
    let host = scripted_server(|conn| {
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n[\r\n",
        );
        let chunk = format!("{:x}\r\n{}\r\n", 65536, " ".repeat(65536));
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if conn.write_all(chunk.as_bytes()).is_err() {
                return;
            }
        }
    });
    let (out, took) = status_against(&host);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn endpoints_that_are_not_docker_say_so() {
    let garbage = scripted_server(|conn| {
        let _ = conn.write_all(b"SSH-2.0-OpenSSH_9.2\r\nnot http at all\r\n");
    });
    let (out, _) = status_against(&garbage);
    fails(&out, 1, "not HTTP from a Docker engine");

    let wrong_json = scripted_server(|conn| {
        let body = r#"{"hello":"world"}"#;
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    });
    let (out, _) = status_against(&wrong_json);
    fails(&out, 1, "not the Docker Engine API");
    assert!(!stderr(&out).contains("panicked"));
}

#[test]
fn secrets_in_labels_are_never_printed() {
    let p = unique("secrets");
    let secrets = [
        ("microscale.metric", "redis://user:S3C/RET1@queue:6379/0"),
        (
            "microscale.metric.b",
            "https://S3CRET2TOKEN@api.example.com/metrics",
        ),
        (
            "microscale.metric.c",
            "redis://u:a@h/0 fallback redis://u:S3CRET3@h2/0",
        ),
        (
            "microscale.metric.d",
            "prometheus://h:9090?query=up&password=S3CRET4",
        ),
        ("microscale.password", "S3CRET5"),
        ("com.microscaling.metric", "redis://user:S3CRET6@q/0"),
    ];
    let mut flags = vec!["--replicas".to_string(), "0".to_string()];
    for (k, v) in secrets {
        flags.push("--label".into());
        flags.push(format!("{k}={v}"));
    }
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let svc = TestService::create(&p, &flag_refs);
    for args in [
        vec!["status", svc.name.as_str()],
        vec!["status", "--no-trunc", svc.name.as_str()],
        vec!["status", "--format", "json", svc.name.as_str()],
    ] {
        let out = ok(plugin(&args));
        let text = stdout(&out);
        assert!(!text.contains("S3C"), "{args:?} leaked a secret:\n{text}");
        assert!(text.contains("xxxxx"), "{text}");
    }
}

#[test]
fn control_characters_in_labels_do_not_reach_the_terminal() {
    let svc = TestService::create(
        &unique("ctrl"),
        &[
            "--replicas",
            "0",
            "--label",
            "microscale.target=\u{1b}[2J\u{1b}]0;owned\u{7}\nevil",
        ],
    );
    let out = ok(plugin(&["status", "--no-trunc", &svc.name]));
    let text = stdout(&out);
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert_eq!(text.lines().count(), 2, "{text:?}");
    // JSON keeps the exact value, escaped.
    let rows = status_json(&svc.name);
    assert!(
        rows[0]["RuleLabels"]["microscale.target"]
            .as_str()
            .unwrap()
            .contains('\u{1b}')
    );
}

#[test]
fn unwritable_stderr_is_not_a_crash() {
    for args in [
        vec!["-H", "unix:///nonexistent.sock", "status"],
        vec!["status", "--bogus"],
    ] {
        let out = clean("sh", plugin_config())
            .args([
                "-c",
                &format!(
                    "'{}' {} 2>/dev/full",
                    plugin_bin().display(),
                    args.join(" ")
                ),
            ])
            .output()
            .unwrap();
        let code = out.status.code();
        assert!(code == Some(1) || code == Some(125), "{args:?}: {code:?}");
    }
}

#[test]
fn global_flags_in_every_form_the_docker_cli_accepts() {
    let svc = TestService::create(&unique("gflags"), &["--replicas", "0"]);
    let host = manager_host();
    let want = &svc.id[..12];
    let attached = format!("-H{host}");
    for flags in [
        vec!["-DH", host.as_str()],
        vec![attached.as_str()],
        vec!["--debug=false", "-H", host.as_str()],
        vec!["-l", "DEBUG", "-H", host.as_str()],
        vec!["--log-level=trace", "-H", host.as_str()],
        vec!["--context=", "-H", host.as_str()],
    ] {
        let mut args = flags.clone();
        args.extend(["microscale", "status", "-q", svc.name.as_str()]);
        let out = ok(clean("docker", plugin_config())
            .args(&args)
            .output()
            .unwrap());
        assert_eq!(stdout(&out).trim(), want, "{flags:?}");
    }
    // An empty --context with DOCKER_HOST set uses DOCKER_HOST.
    let out = ok(clean("docker", plugin_config())
        .env("DOCKER_HOST", &host)
        .args(["--context=", "microscale", "status", "-q", &svc.name])
        .output()
        .unwrap());
    assert_eq!(stdout(&out).trim(), want);
}

#[test]
fn bad_addresses_are_named_not_blamed_on_the_daemon() {
    for (host, expect) in [
        ("http://127.0.0.1:1", "unsupported scheme"),
        ("tcp://[::1", "closing ]"),
        ("tcp://127.0.0.1:99999", "bad port"),
        ("tcp://127.0.0.1:1/v1.41", "path after"),
    ] {
        let out = clean(plugin_bin(), plugin_config())
            .args(["-H", host, "status"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{host}");
        let err = stderr(&out);
        assert!(
            err.contains("invalid engine address") && err.contains(expect),
            "{host}: {err}"
        );
        assert!(!err.contains("Is the docker daemon running"), "{err}");
    }
}

#[test]
fn tls_files_that_are_not_pem_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::write(dir.path().join(f), "garbage").unwrap();
    }
    let out = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", "tcp://127.0.0.1:1")
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", dir.path())
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("ca.pem is not a CA certificate in PEM format"),
        "{err}"
    );
}

#[test]
fn a_full_id_wins_over_a_service_named_like_it() {
    let a = TestService::create(&unique("idwin"), &["--replicas", "0"]);
    let b = TestService::create(&a.id, &["--replicas", "0"]);
    let out = ok(plugin(&["status", "-q", "--no-trunc", &a.id]));
    assert_eq!(stdout(&out).trim(), a.id);
    let out = ok(plugin(&["status", "-q", "--no-trunc", &b.name]));
    assert_eq!(
        stdout(&out).trim(),
        a.id,
        "the full ID is looked up first, as in docker"
    );
}

#[test]
fn an_unreadable_config_file_is_a_warning() {
    let cfg = tempfile::tempdir().unwrap();
    std::fs::create_dir(cfg.path().join("config.json")).unwrap();
    // No host given, so config.json is read for currentContext (then the default
    // socket is tried, which may or may not exist here).
    let out = clean(plugin_bin(), cfg.path())
        .args(["status", "-q", "--filter", "name=nothing-matches-this"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("WARNING: Error loading config file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_socket_path_with_at_signs_is_used_as_is() {
    let dir = tempfile::Builder::new()
        .prefix("msat")
        .tempdir_in("/tmp")
        .unwrap();
    let link = dir.path().join("admin@manager1.sock");
    std::os::unix::fs::symlink(manager_host().trim_start_matches("unix://"), &link).unwrap();
    let out = ok(clean(plugin_bin(), plugin_config())
        .args(["-H", &format!("unix://{}", link.display()), "status", "-q"])
        .args(["--filter", "name=nothing-matches-this"])
        .output()
        .unwrap());
    assert_eq!(stdout(&out), "");
}

#[test]
fn non_utf8_environment_is_an_error_not_ignored() {
    use std::os::unix::ffi::OsStrExt;
    let out = clean(plugin_bin(), plugin_config())
        .env(
            "DOCKER_HOST",
            std::ffi::OsStr::from_bytes(b"unix:///tmp/\xe9.sock"),
        )
        .arg("status")
        .output()
        .unwrap();
    fails(&out, 1, "DOCKER_HOST is not valid UTF-8");
}

#[test]
fn more_global_flag_forms() {
    let svc = TestService::create(&unique("gforms"), &["--replicas", "0"]);
    let host = manager_host();
    for flags in [
        vec!["--debug=1", "-H", host.as_str()],
        vec!["-D=True", "-H", host.as_str()],
        vec!["--tls=0", "-H", host.as_str()],
        vec!["-H", host.as_str(), "--"],
        vec!["--config=", "-H", host.as_str()],
    ] {
        let mut args = flags.clone();
        args.extend(["microscale", "status", "-q", svc.name.as_str()]);
        let out = ok(clean("docker", plugin_config())
            .args(&args)
            .output()
            .unwrap());
        assert_eq!(stdout(&out).trim(), &svc.id[..12], "{flags:?}");
    }
}

#[test]
fn secrets_and_control_characters_never_reach_stderr() {
    let out = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", "tcp://u:S3CRETa@127.0.0.1:1?token=S3CRETb")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).contains("S3CRET"), "{}", stderr(&out));
    let out = plugin(&["status", "web\u{1b}[2J", "--filter", "mode=\u{1b}]0;x\u{7}"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!stderr(&out).contains('\u{1b}'), "{:?}", stderr(&out));
    let out = plugin(&["status", "no-such\u{1b}[31m-service"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).contains('\u{1b}'), "{:?}", stderr(&out));
}

#[test]
fn a_bad_timeout_setting_is_named() {
    let out = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", manager_host())
        .env("MICROSCALE_TIMEOUT", "abc")
        .arg("status")
        .output()
        .unwrap();
    fails(&out, 1, "MICROSCALE_TIMEOUT");
}

#[test]
fn sigterm_while_the_output_pipe_is_full_exits_130() {
    // A label big enough that the JSON row overflows the pipe buffer.
    let big = format!("microscale.note={}", "x".repeat(100_000));
    let svc = TestService::create(&unique("bigout"), &["--replicas", "0", "--label", &big]);
    let mut child = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", manager_host())
        .args(["status", "--format", "json", &svc.name])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "should block on the full pipe"
    );
    ok(std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .output()
        .unwrap());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "still blocked");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
}

#[test]
fn running_job_tasks_count_in_nodes() {
    let svc = TestService::create_with_command(
        &unique("jobnodes"),
        &[
            "--mode",
            "replicated-job",
            "--replicas",
            "2",
            "--max-concurrent",
            "2",
        ],
        &["/bin/busybox", "sleep", "120"],
    );
    wait_until("two job tasks running", Duration::from_secs(60), || {
        let rows = status_json(&svc.name);
        rows.len() == 1 && rows[0]["Running"] == 2
    });
    let rows = status_json(&svc.name);
    assert!(rows[0]["Nodes"].as_u64().unwrap() >= 1, "{:#}", rows[0]);
}

#[test]
fn docker_style_flag_errors_and_bool_forms() {
    for (args, expect) in [
        (
            vec!["version", "x"],
            "\"docker microscale version\" accepts no arguments",
        ),
        (
            vec!["status", "--filter"],
            "flag needs an argument: --filter",
        ),
        (
            vec!["--debug=maybe", "status"],
            "invalid argument \"maybe\" for \"--debug\" flag",
        ),
    ] {
        let out = plugin(&args);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        assert!(stderr(&out).contains(expect), "{args:?}: {}", stderr(&out));
    }
    let svc = TestService::create(&unique("qbool"), &["--replicas", "0"]);
    let out = ok(plugin(&["status", "-q=1", "--no-trunc=true", &svc.name]));
    assert_eq!(stdout(&out).trim(), svc.id);
}

#[test]
fn a_tls_key_that_is_not_a_regular_file_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let certs = std::env::var("MICROSCALE_TEST_CERT_PATH").expect("MICROSCALE_TEST_CERT_PATH");
    let fifo = dir.path().join("key.pem");
    ok(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .output()
        .unwrap());
    let start = Instant::now();
    let out = clean(plugin_bin(), plugin_config())
        .args(["--tlsverify", "--tlscacert", &format!("{certs}/ca.pem")])
        .args(["--tlscert", &format!("{certs}/cert.pem"), "--tlskey"])
        .arg(&fifo)
        .args(["-H", "tcp://127.0.0.1:1", "status"])
        .output()
        .unwrap();
    fails(&out, 1, "is not a regular file");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn what_ssh_prints_is_masked_and_escaped() {
    // An `ssh` that prints hostile text on stderr and exits: its messages reach the
    // terminal only through the plugin's own masking and escaping.
    let dir = tempfile::Builder::new()
        .prefix("msfake")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::write(
        dir.path().join("ssh"),
        "#!/bin/sh\nprintf '\\033]0;title\\007\\033[2J password=S3CRETa redis://u:S3CRETb@h\\n' >&2\nexit 255\n",
    )
    .unwrap();
    ok(std::process::Command::new("chmod")
        .args(["+x"])
        .arg(dir.path().join("ssh"))
        .output()
        .unwrap());
    let out = clean(plugin_bin(), plugin_config())
        .env(
            "PATH",
            format!(
                "{}:{}",
                dir.path().display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .args(["-H", "ssh://me@host.invalid", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(!err.contains("S3CRET"), "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(err.contains("ssh HOST docker version"), "{err}");
}

/// Runs `cmd` and waits at most `limit` for it; a hang is a test failure, not a stuck
/// suite.
fn output_within(mut cmd: std::process::Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}: it blocks");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Issue 13 item 8: a context whose `ca.pem` is a FIFO (or a directory) fails at once
/// with the path and what it is; it is not taken as absent, which made the plugin
/// talk plain TCP to the TLS endpoint. Made with `docker context create` against the
/// sandbox's TLS endpoint, then again against a loopback listener that must see no
/// connection at all.
#[test]
fn a_context_tls_file_that_is_a_fifo_or_directory_is_an_error_not_plain_tcp() {
    let host = std::env::var("MICROSCALE_TEST_TLS_HOST").expect("MICROSCALE_TEST_TLS_HOST");
    let certs = std::env::var("MICROSCALE_TEST_CERT_PATH").expect("MICROSCALE_TEST_CERT_PATH");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let watched = format!("tcp://{}", listener.local_addr().unwrap());
    for (kind, what) in [("fifo", "a FIFO (named pipe)"), ("dir", "a directory")] {
        for endpoint in [&host, &watched] {
            let cfg = fresh_config();
            let spec = format!("host={endpoint},ca={certs}/ca.pem");
            ok(clean("docker", cfg.path())
                .args(["context", "create", "tlsctx", "--docker", &spec])
                .output()
                .unwrap());
            // The store keeps it in contexts/tls/<sha256 of the name>/docker/ca.pem.
            let tls_root = cfg.path().join("contexts/tls");
            let hash_dir = std::fs::read_dir(&tls_root)
                .unwrap()
                .next()
                .unwrap()
                .unwrap();
            let ca = hash_dir.path().join("docker/ca.pem");
            assert!(
                ca.is_file(),
                "docker context create stored no {}",
                ca.display()
            );
            std::fs::remove_file(&ca).unwrap();
            if kind == "fifo" {
                let st = std::process::Command::new("mkfifo")
                    .arg(&ca)
                    .status()
                    .unwrap();
                assert!(st.success());
            } else {
                std::fs::create_dir(&ca).unwrap();
            }
            let mut cmd = clean(plugin_bin(), cfg.path());
            cmd.env("DOCKER_CONTEXT", "tlsctx").arg("status");
            let start = Instant::now();
            let out = output_within(cmd, Duration::from_secs(20));
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{:?}",
                start.elapsed()
            );
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{kind} {endpoint}: {err}");
            assert!(
                err.contains(&format!("{} is {what}, not a PEM file", ca.display())),
                "{kind} {endpoint}: {err}"
            );
            assert!(err.contains("context \"tlsctx\""), "{err}");
            assert!(
                err.contains("Put the PEM file there, or remove it"),
                "{err}"
            );
            // No plain-HTTP try against the TLS port ("expects TLS")...
            assert!(!err.contains("expects TLS"), "{err}");
            assert!(!err.contains("Cannot connect"), "{err}");
        }
        // ... and no connection at all reached the listener.
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("{kind}: the plugin connected to {watched}: {other:?}"),
        }
    }
}
