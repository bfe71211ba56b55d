//! Integration tests against real, private Docker engines in swarm mode (started by
//! `scripts/test`), through the real docker CLI where the plugin protocol matters.

mod agent;
mod cli;
mod complete;
mod deploy;
mod format;
mod ha;
mod harness;
// The helpers unit tests use too (require_program, TestCa): one copy.
mod history;
mod hostile;
mod lease;
mod metric_access;
mod metrics;
mod provenance;
mod replay;
mod rules;
mod scale;
mod ssh;
#[path = "../../src/testutil.rs"]
#[allow(dead_code)]
mod testutil;
mod watch;

use std::time::Duration;

use harness::*;

// ---------------------------------------------------------------------------------
// Plugin protocol
// ---------------------------------------------------------------------------------

#[test]
fn metadata_is_the_plugin_metadata_file_with_the_crate_version() {
    // No engine: the address points nowhere, and the call must still answer.
    let out = ok(clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .arg("docker-cli-plugin-metadata")
        .output()
        .unwrap());
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file: serde_json::Value =
        serde_json::from_str(include_str!("../../plugin-metadata/metadata.json")).unwrap();
    assert_eq!(meta, file);
    assert_eq!(meta["SchemaVersion"], "0.1.0");
    assert_eq!(meta["Version"], env!("CARGO_PKG_VERSION"));
    for key in ["Vendor", "ShortDescription", "URL"] {
        assert!(
            meta[key].as_str().is_some_and(|s| !s.is_empty()),
            "{key} missing"
        );
    }
    assert!(out.stderr.is_empty());
}

#[test]
fn docker_cli_dispatches_to_the_installed_plugin() {
    let svc = TestService::create(&unique("dispatch"), &["--replicas", "0"]);
    let out = ok(docker(&["microscale", "status", &svc.name]));
    let text = stdout(&out);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    for col in [
        "NAME", "MODE", "REPLICAS", "IMAGE", "UPDATE", "SOURCE", "RULE", "METRIC", "DESIRED",
        "NODES",
    ] {
        assert!(header.contains(col), "header {header:?} lacks {col}");
    }
    let row = lines.next().expect("one row");
    assert!(row.starts_with(&svc.name), "{row}");
    assert!(row.contains("replicated") && row.contains("0/0"), "{row}");
    assert_eq!(lines.next(), None);

    // The plugin is listed by the CLI, and its help comes through `docker help`.
    let help = ok(docker(&["help", "microscale"]));
    assert!(stdout(&help).starts_with("Usage:  docker microscale COMMAND"));
    assert!(stdout(&help).contains("status"));
    let help = ok(docker(&["microscale", "status", "--help"]));
    assert!(stdout(&help).starts_with("Usage:  docker microscale status [OPTIONS] [SERVICE...]"));
    assert!(stdout(&help).contains("Examples:"));
    let help = ok(docker(&["help", "microscale", "status"]));
    assert!(stdout(&help).starts_with("Usage:  docker microscale status"));
    let version = ok(docker(&["microscale", "version"]));
    assert!(stdout(&version).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn global_flags_before_the_plugin_name() {
    let svc = TestService::create(&unique("globals"), &["--replicas", "0"]);
    let host = manager_host();
    let cfg = plugin_config().to_string_lossy().into_owned();
    // -H, with DOCKER_HOST unset.
    for flags in [
        vec!["-H", host.as_str()],
        vec!["--host", host.as_str(), "-D"],
        vec!["-l", "debug", "-H", host.as_str()],
        vec![
            "--log-level=info",
            "--config",
            cfg.as_str(),
            "-H",
            host.as_str(),
        ],
    ] {
        let mut args = flags.clone();
        args.extend(["microscale", "status", "-q", svc.name.as_str()]);
        let out = ok(clean("docker", plugin_config())
            .env_remove("DOCKER_HOST")
            .args(&args)
            .output()
            .unwrap());
        assert_eq!(stdout(&out).trim(), &svc.id[..12], "flags {flags:?}");
    }
    // -D shows where the engine address came from.
    let out = ok(clean("docker", plugin_config())
        .args(["-D", "-H", &host, "microscale", "status", "-q", &svc.name])
        .output()
        .unwrap());
    assert!(stderr(&out).contains("from -H/--host"), "{}", stderr(&out));

    // --config locates the plugin itself: a config dir with no plugin has none.
    let empty = tempfile::tempdir().unwrap();
    let out = clean("docker", plugin_config())
        .args(["--config", &empty.path().to_string_lossy(), "-H", &host])
        .args(["microscale", "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn contexts_made_by_docker_context_create() {
    let svc = TestService::create(&unique("ctx"), &["--replicas", "0"]);
    let cfg = fresh_config();
    let ctx = unique("mgr");
    let endpoint = format!("host={}", manager_host());
    ok(clean("docker", cfg.path())
        .args(["context", "create", &ctx, "--docker", &endpoint])
        .output()
        .unwrap());
    let run = |extra_env: &[(&str, &str)], args: &[&str]| {
        let mut c = clean("docker", cfg.path());
        for (k, v) in extra_env {
            c.env(k, v);
        }
        c.args(args).output().unwrap()
    };
    let want = &svc.id[..12];
    // --context
    let out = ok(run(
        &[],
        &["--context", &ctx, "microscale", "status", "-q", &svc.name],
    ));
    assert_eq!(stdout(&out).trim(), want);
    // DOCKER_CONTEXT
    let out = ok(run(
        &[("DOCKER_CONTEXT", &ctx)],
        &["microscale", "status", "-q", &svc.name],
    ));
    assert_eq!(stdout(&out).trim(), want);
    // currentContext from `docker context use`
    ok(run(&[], &["context", "use", &ctx]));
    let out = ok(run(&[], &["microscale", "status", "-q", &svc.name]));
    assert_eq!(stdout(&out).trim(), want);
    // The plugin run directly reads the same store.
    let out = ok(clean(plugin_bin(), cfg.path())
        .args(["status", "-q", &svc.name])
        .output()
        .unwrap());
    assert_eq!(stdout(&out).trim(), want);
    // DOCKER_HOST beats currentContext: a dead socket proves it was used.
    let out = run(
        &[("DOCKER_HOST", "unix:///nonexistent/dead.sock")],
        &["microscale", "status"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unix:///nonexistent/dead.sock (from DOCKER_HOST)"));

    // --host with --context: the same error as the docker CLI's own.
    let theirs = run(
        &[],
        &["--context", &ctx, "-H", "unix:///x.sock", "service", "ls"],
    );
    let ours = run(
        &[],
        &[
            "--context",
            &ctx,
            "-H",
            "unix:///x.sock",
            "microscale",
            "status",
        ],
    );
    assert!(!theirs.status.success() && !ours.status.success());
    assert!(
        stderr(&ours).contains("conflicting options: cannot specify both --host and --context")
    );
    // docker 28 says exactly this; docker 20.10 said "Conflicting options: either
    // specify --host or --context, not both".
    assert!(
        stderr(&theirs)
            .to_lowercase()
            .contains("conflicting options"),
        "docker said: {}",
        stderr(&theirs)
    );

    // A context that does not exist.
    let out = run(&[], &["--context", "no-such-ctx", "microscale", "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("context \"no-such-ctx\" does not exist"));
}

// ---------------------------------------------------------------------------------
// status: modes, replicas and JSON against `docker service ls`
// ---------------------------------------------------------------------------------

/// Compares the plugin's JSON with `docker service ls --format json` for the keys
/// they share.
#[track_caller]
fn assert_matches_docker(prefix: &str, expected_rows: usize) {
    let ours = status_json(prefix);
    let theirs = docker_service_ls(prefix);
    assert_eq!(ours.len(), expected_rows, "{ours:#?}");
    assert_eq!(theirs.len(), expected_rows, "{theirs:#?}");
    for (o, t) in ours.iter().zip(&theirs) {
        for key in ["ID", "Name", "Mode", "Replicas", "Image", "Ports"] {
            assert_eq!(o[key], t[key], "key {key}: ours {o} docker {t}");
        }
    }
}

fn node_count() -> usize {
    stdout(&ok(docker(&["node", "ls", "-q"]))).lines().count()
}

#[test]
fn every_service_mode_matches_docker_service_ls() {
    let p = unique("modes");
    let nodes = node_count();
    let _rep = TestService::create(&format!("{p}-rep"), &["--replicas", "2"]);
    let _zero = TestService::create(&format!("{p}-zero"), &["--replicas", "0"]);
    let _glob = TestService::create(&format!("{p}-glob"), &["--mode", "global"]);
    let _job = TestService::create_with_command(
        &format!("{p}-job"),
        &[
            "--mode",
            "replicated-job",
            "--replicas",
            "2",
            "--max-concurrent",
            "1",
        ],
        &["/bin/busybox", "true"],
    );
    // Max 1 per node and one more replica than nodes: one task stays pending.
    let want = (nodes + 1).to_string();
    let _max = TestService::create(
        &format!("{p}-max"),
        &["--replicas", &want, "--replicas-max-per-node", "1"],
    );

    wait_until("services to settle", Duration::from_secs(60), || {
        let rows = status_json(&p);
        let get = |suffix: &str| {
            rows.iter()
                .find(|r| r["Name"] == format!("{p}-{suffix}"))
                .cloned()
                .unwrap_or_default()
        };
        rows.len() == 5
            && get("rep")["Running"] == 2
            && get("glob")["Running"] == nodes as u64
            && get("max")["Running"] == nodes as u64
            && get("job")["Completed"] == 2
            && get("job")["Running"] == 0
    });

    let rows = status_json(&p);
    let names: Vec<&str> = rows.iter().map(|r| r["Name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "rows are sorted by name");
    let get = |suffix: &str| {
        rows.iter()
            .find(|r| r["Name"] == format!("{p}-{suffix}"))
            .unwrap()
            .clone()
    };
    assert_eq!(get("rep")["Mode"], "replicated");
    assert_eq!(get("rep")["Replicas"], "2/2");
    let rep_nodes = get("rep")["Nodes"].as_u64().unwrap() as usize;
    assert!((1..=nodes.min(2)).contains(&rep_nodes), "{rep_nodes}");
    assert_eq!(get("zero")["Replicas"], "0/0");
    assert_eq!(get("zero")["Nodes"], 0);
    assert_eq!(get("glob")["Mode"], "global");
    assert_eq!(get("glob")["Nodes"], nodes as u64);
    assert_eq!(get("job")["Mode"], "replicated job");
    // A finished job keeps its desired count at --max-concurrent, as the engine reports it.
    assert_eq!(get("job")["Replicas"], "0/1 (2/2 completed)");
    assert_eq!(
        get("max")["Replicas"],
        format!("{nodes}/{} (max 1 per node)", nodes + 1)
    );
    assert_eq!(get("max")["MaxPerNode"], 1);
    assert_eq!(get("max")["Nodes"], nodes as u64);

    assert_matches_docker(&p, 5);

    // The table shows the same, one row per service after the header.
    let out = ok(plugin(&["status", "--filter", &format!("name={p}")]));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(text.contains("(max 1 per node)"));
    assert!(text.contains("replicated job"));
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes when not a terminal"
    );
}

#[test]
fn image_digest_and_rule_columns() {
    let p = unique("cols");
    // Pin the image by its local ID as a digest-shaped reference is not possible
    // without a registry; labels drive the RULE column.
    let svc = TestService::create(
        &format!("{p}-ruled"),
        &[
            "--replicas",
            "0",
            "--label",
            "microscale.min=1",
            "--label",
            "microscale.max=10",
            "--label",
            "microscale.metric=redis://user:hunter2@queue:6379/0?list=jobs",
            "--label",
            "microscale.target=50",
        ],
    );
    let _plain = TestService::create(&format!("{p}-plain"), &["--replicas", "0"]);
    let rows = status_json(&p);
    let ruled = rows.iter().find(|r| r["Name"] == svc.name).unwrap();
    assert_eq!(
        ruled["Rule"],
        "min=1 max=10 target=50 redis://user:xxxxx@queue:6379/0?list=jobs"
    );
    assert_eq!(ruled["RuleLabels"]["microscale.max"], "10");
    assert_eq!(ruled["Image"], image());
    assert_eq!(ruled["Digest"], "", "an image with no registry is unpinned");
    let plain = rows.iter().find(|r| r["Name"] != svc.name).unwrap();
    assert_eq!(plain["Rule"], "-");

    let out = ok(plugin(&["status", &svc.name]));
    assert!(!stdout(&out).contains("hunter2"), "password leaked");
    let full = ok(plugin(&["status", "--no-trunc", &svc.name]));
    assert!(
        stdout(&full).contains("min=1 max=10 target=50 redis://user:xxxxx@queue:6379/0?list=jobs")
    );
}

// ---------------------------------------------------------------------------------
// status: selection, filters and output options
// ---------------------------------------------------------------------------------

#[test]
fn filters_names_ids_quiet_and_no_trunc() {
    let p = unique("filt");
    let a = TestService::create(
        &format!("{p}-a"),
        &["--replicas", "0", "--label", "team=blue"],
    );
    let b = TestService::create(&format!("{p}-b"), &["--replicas", "0"]);
    let g = TestService::create(
        &format!("{p}-g"),
        &["--mode", "global", "--label", "team=blue"],
    );

    let q = |args: &[&str]| -> Vec<String> {
        let out = ok(plugin(args));
        stdout(&out).lines().map(str::to_string).collect()
    };
    let short = |s: &TestService| s.id[..12].to_string();
    let name_f = format!("name={p}");

    assert_eq!(
        q(&["status", "-q", "--filter", &name_f]),
        [short(&a), short(&b), short(&g)]
    );
    assert_eq!(
        q(&[
            "status",
            "-q",
            "--filter",
            &name_f,
            "--filter",
            "label=team=blue"
        ]),
        [short(&a), short(&g)]
    );
    assert_eq!(
        q(&[
            "status",
            "-q",
            "--filter",
            &name_f,
            "--filter",
            "mode=global"
        ]),
        [short(&g)]
    );
    assert_eq!(
        q(&[
            "status",
            "-q",
            "--filter",
            &name_f,
            "--filter",
            "mode=replicated"
        ]),
        [short(&a), short(&b)]
    );
    assert_eq!(
        q(&["status", "-q", "-f", &format!("id={}", &b.id[..8])]),
        [short(&b)]
    );
    // Positional names and IDs (full or prefix), in name order.
    assert_eq!(
        q(&["status", "-q", &b.name, &a.id[..10]]),
        [short(&a), short(&b)]
    );
    assert_eq!(
        q(&["status", "-q", "--no-trunc", &a.name]),
        std::slice::from_ref(&a.id)
    );
    assert_eq!(a.id.len(), 25);

    // Nothing matches: the header only, exit 0.
    let out = ok(plugin(&["status", "--filter", "name=no-such-prefix-xyz"]));
    assert_eq!(stdout(&out).lines().count(), 1);
    assert!(stdout(&out).starts_with("NAME"));
    let out = ok(plugin(&[
        "status",
        "--format",
        "json",
        "--filter",
        "name=no-such-prefix-xyz",
    ]));
    assert_eq!(stdout(&out), "");
}

#[test]
fn unknown_service_is_an_error_but_the_others_print() {
    let svc = TestService::create(&unique("known"), &["--replicas", "0"]);
    let out = plugin(&["status", "-q", &svc.name, "no-such-service-xyz"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out).trim(), &svc.id[..12]);
    assert!(stderr(&out).contains("no such service: no-such-service-xyz"));

    // Only unknown names: only the errors, no empty table.
    let out = plugin(&["status", "no-such-service-xyz"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("no such service: no-such-service-xyz"));
}

#[test]
fn published_port_ranges_like_docker_service_ls() {
    let p = unique("ports");
    let _a = TestService::create(
        &format!("{p}-a"),
        &["--replicas", "0", "-p", "28100-28103:100-103"],
    );
    let _b = TestService::create(
        &format!("{p}-b"),
        &["--replicas", "0", "-p", "29001:1/tcp", "-p", "28001:2/udp"],
    );
    let rows = status_json(&p);
    assert_eq!(rows[0]["Ports"], "*:28100-28103->100-103/tcp");
    assert_eq!(rows[1]["Ports"], "*:29001->1/tcp, *:28001->2/udp");
    assert_matches_docker(&p, 2);
}

#[test]
fn pinned_images_show_their_digest() {
    let p = unique("pinned");
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let base = image();
    let repo = base.split(':').next().unwrap().to_string();
    let tagged = format!("{base}@{digest}");
    let untagged = format!("{repo}@{digest}");
    // 0 replicas: the digest is made up, no task ever needs the image.
    let a = TestService::create_full(&format!("{p}-a"), &["--replicas", "0"], &tagged, &["true"]);
    let b = TestService::create_full(
        &format!("{p}-b"),
        &["--replicas", "0"],
        &untagged,
        &["true"],
    );
    let rows = status_json(&p);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["Digest"], digest);
    assert_eq!(rows[0]["Image"], base);
    assert_eq!(rows[1]["Digest"], digest);
    assert_eq!(rows[1]["Image"], untagged);
    assert_matches_docker(&p, 2);
    let table = stdout(&ok(plugin(&["status", &a.name, &b.name])));
    assert!(
        table.contains(&format!("{base}@sha256:0123456789ab ")),
        "{table}"
    );
    assert!(
        table.contains(&format!("{repo}@sha256:0123456789ab ")),
        "{table}"
    );
    let full = stdout(&ok(plugin(&["status", "--no-trunc", &a.name])));
    assert!(full.contains(&tagged), "{full}");
}

#[test]
fn usage_errors_exit_125_and_change_nothing() {
    for args in [
        vec!["status", "--bogus"],
        vec!["status", "--filter", "nonsense"],
        vec!["status", "--filter", "colour=red"],
        vec!["status", "--filter", "mode=daemon"],
        vec!["status", "--format", "{{.Nope}}"],
        vec!["status", "--format", "{{nofunc .Name}}"],
        vec!["status", "--watch", "--interval", "100ms"],
        vec!["status", "--interval", "5s"],
        vec!["no-such-command"],
    ] {
        let out = plugin(&args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("Usage:  docker microscale"), "{args:?}: {err}");
        assert!(
            err.contains("--help' for more information"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_closed_pipe_exits_quietly() {
    let _svc = TestService::create(&unique("pipe"), &["--replicas", "0"]);
    let script = format!(
        "set -o pipefail; DOCKER_HOST={} {} status --format json | head -c 0",
        manager_host(),
        plugin_bin().display()
    );
    let out = clean("bash", plugin_config())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

// ---------------------------------------------------------------------------------
// Errors that tell the operator what to do
// ---------------------------------------------------------------------------------

#[test]
fn unreachable_engine_names_the_host_and_where_it_came_from() {
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![],
            vec![("DOCKER_HOST", "unix:///nonexistent/x.sock")],
            "from DOCKER_HOST",
        ),
        (
            vec!["-H", "unix:///nonexistent/y.sock"],
            vec![],
            "from -H/--host",
        ),
        (vec!["-H", "tcp://127.0.0.1:1"], vec![], "from -H/--host"),
    ];
    for (flags, env, origin) in cases {
        let mut c = clean(plugin_bin(), plugin_config());
        for (k, v) in &env {
            c.env(k, v);
        }
        let out = c.args(&flags).arg("status").output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{flags:?}");
        let err = stderr(&out);
        assert!(
            err.contains("Cannot connect to the Docker daemon at"),
            "{err}"
        );
        assert!(err.contains(origin), "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn engine_not_in_swarm_says_swarm_init_or_join() {
    let out = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", plain_host())
        .arg("status")
        .output()
        .unwrap();
    fails(&out, 1, "is not part of a swarm");
    let err = stderr(&out);
    assert!(
        err.contains("docker swarm init") && err.contains("docker swarm join"),
        "{err}"
    );
    assert!(err.contains(&plain_host()), "{err}");
}

#[test]
fn worker_node_says_to_use_a_manager() {
    let out = clean(plugin_bin(), plugin_config())
        .args(["-H", &worker_host(), "status"])
        .output()
        .unwrap();
    fails(&out, 1, "worker node");
    let err = stderr(&out);
    assert!(
        err.contains("manager") && err.contains("--context"),
        "{err}"
    );
}

#[test]
fn nodes_counts_the_nodes_running_tasks() {
    // A global service runs a task on every node (manager and worker), and NODES counts
    // them. Tasks on down nodes: tests/node_down.rs freezes the worker for real.
    let svc = TestService::create(&unique("spread"), &["--mode", "global"]);
    let nodes = node_count();
    assert!(nodes >= 2, "the harness joins a worker: {nodes} node(s)");
    wait_until(
        "global tasks on every node",
        Duration::from_secs(60),
        || {
            let rows = status_json(&svc.name);
            rows.len() == 1 && rows[0]["Nodes"] == nodes as u64
        },
    );
    let rows = status_json(&svc.name);
    assert_eq!(rows[0]["TasksOnDownNodes"], 0);
    assert_eq!(rows[0]["DownNodes"], serde_json::json!([]));
    let out = ok(plugin(&["status", &svc.name]));
    let row = stdout(&out).lines().nth(1).unwrap().to_string();
    assert!(row.trim_end().ends_with(&nodes.to_string()), "{row}");
}

// ---------------------------------------------------------------------------------
// TCP with TLS: the manager also listens on tcp://127.0.0.1:PORT with --tlsverify
// ---------------------------------------------------------------------------------

#[test]
fn tcp_with_tls_from_env_flags_and_context() {
    let svc = TestService::create(&unique("tls"), &["--replicas", "0"]);
    let host = required_tls_host();
    let certs = std::env::var("MICROSCALE_TEST_CERT_PATH").expect("MICROSCALE_TEST_CERT_PATH");
    let want = svc.id[..12].to_string();
    let ca = format!("{certs}/ca.pem");
    let cert = format!("{certs}/cert.pem");
    let key = format!("{certs}/key.pem");

    // DOCKER_TLS_VERIFY + DOCKER_CERT_PATH, plugin run directly and through the CLI.
    for program in [plugin_bin(), "docker".into()] {
        let mut c = clean(&program, plugin_config());
        c.env("DOCKER_HOST", &host)
            .env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", &certs);
        if program.ends_with("docker") {
            c.arg("microscale");
        }
        let out = ok(c.args(["status", "-q", &svc.name]).output().unwrap());
        assert_eq!(stdout(&out).trim(), want, "{program:?}");
    }

    // Global TLS flags before the plugin name.
    let out = ok(clean("docker", plugin_config())
        .args([
            "--tlsverify",
            "--tlscacert",
            &ca,
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
        ])
        .args(["-H", &host, "microscale", "status", "-q", &svc.name])
        .output()
        .unwrap());
    assert_eq!(stdout(&out).trim(), want);

    // --tls without verification: any server certificate, the client certificate is
    // still sent (the engine asks for it).
    let out = ok(clean(plugin_bin(), plugin_config())
        .args(["--tls", "--tlscert", &cert, "--tlskey", &key, "-H", &host])
        .args(["status", "-q", &svc.name])
        .output()
        .unwrap());
    assert_eq!(stdout(&out).trim(), want);
    // Without a client certificate this engine refuses the connection, and we say why.
    let nocert = tempfile::tempdir().unwrap();
    let out = clean(plugin_bin(), plugin_config())
        .env("DOCKER_CERT_PATH", nocert.path())
        .args(["--tls", "-H", &host, "status"])
        .output()
        .unwrap();
    fails(&out, 1, "wants a client certificate");
    // A CA that did not sign the engine's certificate.
    let out = clean(plugin_bin(), plugin_config())
        .args([
            "--tlsverify",
            "--tlscacert",
            &cert,
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
        ])
        .args(["-H", &host, "status"])
        .output()
        .unwrap();
    fails(&out, 1, "TLS handshake failed");

    // A context with TLS material, made by `docker context create`.
    let cfg = fresh_config();
    let spec = format!("host={host},ca={ca},cert={cert},key={key}");
    ok(clean("docker", cfg.path())
        .args(["context", "create", "tls", "--docker", &spec])
        .output()
        .unwrap());
    let out = ok(clean("docker", cfg.path())
        .args(["--context", "tls", "microscale", "status", "-q", &svc.name])
        .output()
        .unwrap());
    assert_eq!(stdout(&out).trim(), want);

    // Plain HTTP to the TLS port, and TLS without client certificates, fail clearly.
    let out = clean(plugin_bin(), plugin_config())
        .args(["-H", &host, "status"])
        .output()
        .unwrap();
    fails(&out, 1, "expects TLS");
    let empty = tempfile::tempdir().unwrap();
    let out = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", &host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", empty.path())
        .arg("status")
        .output()
        .unwrap();
    fails(&out, 1, "ca.pem");
}

fn required_tls_host() -> String {
    std::env::var("MICROSCALE_TEST_TLS_HOST")
        .expect("MICROSCALE_TEST_TLS_HOST is not set: run the tests with scripts/test")
}

// ---------------------------------------------------------------------------------
// Cancellation: Ctrl-C through the docker CLI (DOCKER_CLI_PLUGIN_SOCKET) and signals
// ---------------------------------------------------------------------------------

/// A TCP listener that accepts connections and never answers: an engine that hangs.
fn black_hole() -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let start = std::time::Instant::now();
        let mut held = vec![];
        // Bounded: the listener goes away after 60 s whatever happens.
        while start.elapsed() < Duration::from_secs(60) {
            match listener.accept() {
                Ok((conn, _)) => held.push(conn),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (addr, handle)
}

fn signal(pid: u32, sig: &str) {
    ok(std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .output()
        .unwrap());
}

#[test]
fn interrupt_through_the_docker_cli_cancels_the_plugin() {
    let (addr, _listener) = black_hole();
    let mut child = clean("docker", plugin_config())
        .args(["-H", &addr, "microscale", "status"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "should hang on the black hole"
    );
    let start = std::time::Instant::now();
    signal(child.id(), "-INT");
    let out = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
}

#[test]
fn sigterm_stops_the_plugin_with_130() {
    let (addr, _listener) = black_hole();
    let mut child = clean(plugin_bin(), plugin_config())
        .args(["-H", &addr, "status"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    signal(child.id(), "-TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
}

// ---------------------------------------------------------------------------------
// A constant number of Engine API calls, whatever the number of services
// ---------------------------------------------------------------------------------

/// A unix-socket proxy in front of the real manager that counts HTTP requests.
struct CountingProxy {
    host: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl CountingProxy {
    fn start() -> CountingProxy {
        use std::io::{Read, Write};
        use std::os::unix::net::{UnixListener, UnixStream};
        let dir = tempfile::Builder::new()
            .prefix("msp")
            .tempdir_in("/tmp")
            .unwrap();
        let path = dir.path().join("p.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let upstream = manager_host().trim_start_matches("unix://").to_string();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { break };
                let Ok(mut server) = UnixStream::connect(&upstream) else {
                    break;
                };
                let mut client_w = client.try_clone().unwrap();
                let mut server_r = server.try_clone().unwrap();
                let seen = seen.clone();
                // client -> server, recording request lines
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    let mut pending = Vec::new();
                    while let Ok(n) = client.read(&mut buf) {
                        if n == 0 || server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(pos) = pending.windows(2).position(|w| w == b"\r\n") {
                            let line = String::from_utf8_lossy(&pending[..pos]).into_owned();
                            if line.ends_with(" HTTP/1.1") {
                                seen.lock().unwrap().push(line);
                            }
                            pending.drain(..pos + 2);
                        }
                    }
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
                // server -> client
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_r, &mut client_w);
                    let _ = client_w.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        CountingProxy {
            host: format!("unix://{}", path.display()),
            requests,
            _dir: dir,
        }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

/// The request lines' paths, without queries, sorted.
fn request_paths(lines: &[String]) -> Vec<String> {
    let mut paths: Vec<String> = lines
        .iter()
        .map(|l| {
            l.split(' ')
                .nth(1)
                .unwrap()
                .split('?')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    paths.sort();
    paths
}

/// Four concurrent reads (services with their status, tasks, nodes, the agent's
/// fight records), then one image inspect per distinct image: five calls for one
/// service as for nine that share an image.
#[test]
fn status_makes_five_api_calls_however_many_services() {
    let proxy = CountingProxy::start();
    let p = unique("calls");
    let mut services = vec![TestService::create(&format!("{p}-0"), &["--replicas", "0"])];
    let run = || {
        ok(clean(plugin_bin(), plugin_config())
            .env("DOCKER_HOST", &proxy.host)
            .args(["status", "--filter", &format!("name={p}")])
            .output()
            .unwrap())
    };
    let out = run();
    assert_eq!(stdout(&out).lines().count(), 2);
    let first = proxy.take();
    for i in 1..=8 {
        services.push(TestService::create(
            &format!("{p}-{i}"),
            &["--replicas", "0"],
        ));
    }
    let out = run();
    assert_eq!(stdout(&out).lines().count(), 10);
    let second = proxy.take();
    assert_eq!(first.len(), 5, "{first:#?}");
    assert_eq!(second.len(), 5, "{second:#?}");
    assert_eq!(
        request_paths(&second),
        [
            "/configs".to_string(),
            format!("/images/{}/json", image()),
            "/nodes".into(),
            "/services".into(),
            "/tasks".into()
        ]
    );
    assert!(
        second.iter().any(|l| l.contains("status=true")),
        "{second:#?}"
    );
}

// ---------------------------------------------------------------------------------
// scripts/sandbox env: a user's shell gets DOCKER_HOST, the harness its own file
// ---------------------------------------------------------------------------------

#[test]
fn sandbox_env_gives_a_shell_docker_host_only_and_the_tests_their_own_file() {
    let dir = std::env::var("MICROSCALE_SANDBOX_DIR").expect("scripts/test sets it");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/sandbox");
    let env = |extra: &[&str]| {
        let out = clean(&script, plugin_config())
            .args(["env", "--dir", &dir])
            .args(extra)
            .output()
            .unwrap();
        stdout(&ok(out))
    };
    // What `eval "$(scripts/sandbox env)"` does to a shell: DOCKER_HOST, no more.
    let user = env(&[]);
    let exports: Vec<&str> = user.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        exports,
        [format!("export DOCKER_HOST={}", manager_host()).as_str()],
        "{user}"
    );
    assert!(
        user.contains("env --test") && user.contains("unset DOCKER_HOST"),
        "{user}"
    );
    let shell = ok(clean("bash", plugin_config())
        .args([
            "-c",
            "eval \"$1\"; env | grep -E '^(DOCKER_|MICROSCALE_)' | sort",
            "sh",
            &user,
        ])
        .output()
        .unwrap());
    assert_eq!(
        stdout(&shell),
        format!(
            "DOCKER_CONFIG={}\nDOCKER_HOST={}\n",
            plugin_config().display(),
            manager_host()
        )
    );
    // The harness's variables, as scripts/test sources them.
    let test = env(&["--test"]);
    for want in [
        format!("export MICROSCALE_TEST_HOST={}", manager_host()),
        format!("export MICROSCALE_SANDBOX_DIR={dir}"),
        "export MICROSCALE_TEST_IMAGE=".to_string(),
        "export MICROSCALE_TEST_REGISTRY=".to_string(),
    ] {
        assert!(test.contains(&want), "{want} not in:\n{test}");
    }
    // --test belongs to env only.
    let out = clean(&script, plugin_config())
        .args(["status", "--test", "--dir", &dir])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("--test is an option of env only"),
        "{}",
        stderr(&out)
    );
}

/// SOURCE from the image store: up to 16 distinct images are inspected one by one,
/// more are found in one list of the store; either way each service shows the same
/// SOURCE (the test image's labels; `?` for images the engine does not have).
#[test]
fn status_inspects_few_images_and_lists_the_store_for_many() {
    let proxy = CountingProxy::start();
    let p = unique("imgs");
    let mut services = vec![TestService::create(&format!("{p}-a"), &["--replicas", "0"])];
    for i in 0..17 {
        services.push(TestService::create_full(
            &format!("{p}-m{i:02}"),
            &["--replicas", "0"],
            &format!("microscale-test/{p}-missing-{i}:1"),
            &["/bin/busybox", "sleep", "1000000"],
        ));
    }
    let status = |filter: &str| {
        let out = ok(clean(plugin_bin(), plugin_config())
            .env("DOCKER_HOST", &proxy.host)
            .args(["status", "--format", "{{.Name}} {{.Source}}", "--filter"])
            .arg(format!("name={filter}"))
            .output()
            .unwrap());
        (stdout(&out), proxy.take())
    };
    // One image, which the engine does not have: inspected (404), `?`.
    let (few, calls) = status(&format!("{p}-m00"));
    assert_eq!(few.trim(), format!("{p}-m00 ?"), "{few}");
    assert_eq!(
        request_paths(&calls)
            .iter()
            .filter(|c| c.starts_with("/images/"))
            .count(),
        1,
        "{calls:#?}"
    );
    let (one, calls) = status(&format!("{p}-a"));
    let source = one
        .trim()
        .strip_prefix(&format!("{p}-a "))
        .unwrap()
        .to_string();
    assert!(source.starts_with("github.com/"), "{one}");
    assert!(
        request_paths(&calls).contains(&format!("/images/{}/json", image())),
        "{calls:#?}"
    );
    // Eighteen distinct images: one list of the store, the same SOURCE for each.
    let (many, calls) = status(&p);
    let images: Vec<String> = request_paths(&calls)
        .into_iter()
        .filter(|c| c.starts_with("/images"))
        .collect();
    assert_eq!(images, ["/images/json"], "{calls:#?}");
    let lines: Vec<&str> = many.lines().collect();
    assert_eq!(lines.len(), 18, "{many}");
    assert_eq!(lines[0], format!("{p}-a {source}"));
    for (i, line) in lines[1..].iter().enumerate() {
        assert_eq!(*line, format!("{p}-m{i:02} ?"));
    }
    drop(services);
}
