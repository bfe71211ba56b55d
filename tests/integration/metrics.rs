//! `docker microscale metric` and the rules' metric sources, against real servers.

use crate::harness::*;

#[test]
fn hosts_outside_the_allow_list_are_never_contacted() {
    // Something listening that must not be asked: a host outside the allow-list.
    let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    // --metric-allow-only: the list and nothing else, not even the rest of loopback.
    let out = plugin(&[
        "metric",
        "--metric-allow",
        "127.0.0.1",
        "--metric-allow-only",
        &format!("redis://127.0.0.2:{port}/0?list=jobs"),
    ]);
    fails(
        &out,
        1,
        &format!(
            "127.0.0.2:{port} is not in --metric-allow (127.0.0.1), and --metric-allow-only allows nothing else"
        ),
    );
    fails(
        &plugin(&[
            "metric",
            "--metric-allow-only",
            "redis://127.0.0.1/0?list=a",
        ]),
        125,
        "--metric-allow-only needs --metric-allow",
    );
    // A list outside loopback and the swarm.
    let out = plugin(&[
        "metric",
        "--metric-allow",
        "queue:6379",
        "redis://192.0.2.1:6379/0?list=jobs",
    ]);
    fails(
        &out,
        1,
        "192.0.2.1 is not allowed: metrics are read only from the swarm's own services, loopback and --metric-allow (queue:6379); allow it with --metric-allow 192.0.2.1:6379",
    );
    assert!(listener.accept().is_err(), "the host was contacted");
    // By default: the swarm's services and loopback only.
    fails(
        &plugin(&["metric", "redis://169.254.169.254:6379/0?list=jobs"]),
        1,
        "169.254.169.254 is not allowed: by default metrics are read only from the swarm's own services and loopback; allow it with --metric-allow 169.254.169.254:6379",
    );
}

#[test]
fn passwords_in_metric_uris_are_refused_and_never_printed() {
    let out = plugin(&["metric", "redis://:hunter2@127.0.0.1:6379/0?list=jobs"]);
    fails(&out, 1, "a password in the metric URI: put it in a file");
    assert!(!stderr(&out).contains("hunter2"));
    let svc = TestService::create(
        &unique("metric-pw"),
        &[
            "--replicas",
            "0",
            "--label",
            "microscale.max=3",
            "--label",
            "microscale.metric=redis://:hunter2@q:6379/0?list=a",
            "--label",
            "microscale.target=5",
        ],
    );
    let out = plugin(&["rules", "check", &svc.name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("a password in the metric URI"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("hunter2"));
}

#[test]
fn metric_flags_are_checked() {
    fails(
        &plugin(&["metric"]),
        125,
        "\"docker microscale metric\" requires exactly 1 argument.",
    );
    fails(
        &plugin(&["metric", "--timeout", "soon", "redis://127.0.0.1/0?list=a"]),
        125,
        "invalid argument \"soon\" for \"--timeout\" flag",
    );
    fails(
        &plugin(&[
            "metric",
            "--metric-allow",
            "http://x",
            "redis://127.0.0.1/0?list=a",
        ]),
        125,
        "--metric-allow",
    );
    fails(&plugin(&["metric", "not a uri"]), 1, "not a metric URI");
}

#[test]
fn plan_scales_on_a_real_redis_queue() {
    let redis = Redis::start();
    let items: Vec<String> = (0..130).map(|i| i.to_string()).collect();
    let mut args = vec!["RPUSH", "jobs"];
    args.extend(items.iter().map(String::as_str));
    redis.cli(&args);
    let uri = format!("redis://127.0.0.1:{}/0?list=jobs", redis.port);
    let out = ok(plugin(&["metric", &uri]));
    assert_eq!(stdout(&out), "130 entries\n");
    let json = json_lines(&stdout(&ok(plugin(&["metric", "--format", "json", &uri]))))[0].clone();
    assert_eq!(json["Value"], 130.0);
    assert_eq!(json["Unit"], "entries");

    let svc = TestService::create(
        &unique("metric-redis"),
        &[
            "--replicas",
            "0",
            "--label",
            "microscale.min=0",
            "--label",
            "microscale.max=12",
            "--label",
            &format!("microscale.metric={uri}"),
            "--label",
            "microscale.target=10",
        ],
    );
    let out = plugin(&["plan", "--format", "json", "--detailed-exitcode", &svc.name]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let row = &json_lines(&stdout(&out))[0];
    assert_eq!(row["Metric"], "130 / 10", "{row}");
    // --metric-allow adds to the defaults: deploy/stack.yml's agent lists its
    // stack-local alias, and a rule on loopback (or any service of the swarm) still
    // reads.
    let out = plugin(&[
        "plan",
        "--metric-allow=queue:6379",
        "--format",
        "json",
        &svc.name,
    ]);
    let with_list = &json_lines(&stdout(&ok(out)))[0];
    assert_eq!(with_list["Metric"], "130 / 10", "{with_list}");
    // 13, capped by max 12, then HPA's default scale-up limit from 0: +4.
    assert_eq!(row["Desired"], 4, "{row}");
    assert_eq!(row["Action"], "scale up");
    assert!(
        row["Reasons"].to_string().contains("capped by max 12"),
        "{row}"
    );

    // status: METRIC and DESIRED from the same code, metrics read only with
    // --metrics; without them the rule's decision is not made, and DESIRED says so
    let row = &status_json(&svc.name)[0];
    assert_eq!(
        (row["Metric"].as_str(), row["RuleDesired"].as_u64()),
        (Some("-"), None),
        "{row}"
    );
    assert!(row["MetricError"].is_null(), "{row}");
    let out = ok(plugin(&[
        "status",
        "--metrics",
        "--format",
        "json",
        &svc.name,
    ]));
    let row = &json_lines(&stdout(&out))[0];
    assert_eq!(
        (row["Metric"].as_str(), row["RuleDesired"].as_u64()),
        (Some("130 / 10"), Some(4)),
        "{row}"
    );
    assert!(row["MetricError"].is_null(), "{row}");

    // a wrong queue name is an error, not a silent zero: the service holds
    let wrong = format!("redis://127.0.0.1:{}/0?list=jbos", redis.port);
    fails(
        &plugin(&["metric", &wrong]),
        1,
        "no list named jbos in redis db 0",
    );
    // a dead server fails within its timeout
    drop(redis);
    let started = std::time::Instant::now();
    fails(
        &plugin(&["metric", "--timeout", "2s", &uri]),
        1,
        "cannot read redis://127.0.0.1",
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // status --metrics says why it has no value: a numbered note under the table,
    // and MetricError
    let out = ok(plugin(&["status", "--metrics", &svc.name]));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let metric_col = lines[0].find("METRIC").unwrap();
    // (columns: RULE is cut with a multi-byte `…`)
    let metric: String = lines[1].chars().skip(metric_col).collect();
    assert!(
        metric.starts_with("- (1) "),
        "METRIC marks the note: {text}"
    );
    assert_eq!(lines[2], "", "{text}");
    assert!(
        lines[3].starts_with("(1) metric unreadable: ") && lines[3].contains(&uri),
        "{text}"
    );
    let row = &json_lines(&stdout(&ok(plugin(&[
        "status",
        "--metrics",
        "--format",
        "{{json .}}",
        &svc.name,
    ]))))[0];
    let why = row["MetricError"].as_str().unwrap();
    assert_eq!(format!("(1) {why}"), lines[3], "{row}");
    assert_eq!(row["Metric"], "-");
}

#[test]
fn rediss_reads_a_real_tls_redis_with_the_operators_ca() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start_tls(dir.path());
    redis.cli(&["RPUSH", "jobs", "a", "b", "c"]);
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let tp = redis.tls_port;
    let uri = format!("rediss://localhost:{tp}/0?list=jobs");
    let out = ok(plugin(&["metric", "--metric-tlscacert", ca, &uri]));
    assert_eq!(stdout(&out), "3 entries\n");

    // A rule reads it the same way, with the reader's flag (a label cannot name a CA).
    let svc = TestService::create(
        &unique("metric-rediss"),
        &[
            "--replicas",
            "0",
            "--label",
            "microscale.min=0",
            "--label",
            "microscale.max=5",
            "--label",
            &format!("microscale.metric={uri}"),
            "--label",
            "microscale.target=1",
        ],
    );
    let out = plugin(&[
        "plan",
        "--format",
        "json",
        "--metric-tlscacert",
        ca,
        &svc.name,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let row = &json_lines(&stdout(&out))[0];
    assert_eq!(row["Metric"], "3 / 1", "{row}");

    // A wrong CA: the error names the host, the port, the cause and the flag.
    let other = crate::testutil::TestCa::new(dir.path(), "other-ca").cert;
    let other = other.to_str().unwrap();
    fails(
        &plugin(&["metric", "--metric-tlscacert", other, &uri]),
        1,
        &format!(
            "cannot read rediss://localhost:{tp}/0?list=jobs: TLS with redis at localhost:{tp} failed: invalid peer certificate: UnknownIssuer: the server's certificate is signed by no CA this reader trusts (the system's roots and --metric-tlscacert {other}): give the CA that signs it with --metric-tlscacert FILE"
        ),
    );
    // Without the flag, the system's roots do not know the test CA.
    fails(
        &plugin(&["metric", &uri]),
        1,
        "(the system's roots; no --metric-tlscacert is given): give the CA that signs it with --metric-tlscacert FILE",
    );
    // The plan holds the service and says why.
    let out = plugin(&[
        "plan",
        "--format",
        "json",
        "--metric-tlscacert",
        other,
        &svc.name,
    ]);
    let row = &json_lines(&stdout(&out))[0];
    assert!(
        row["Reasons"].to_string().contains("UnknownIssuer"),
        "{row}"
    );
    // A CA file that cannot be read is a usage error, before anything is read.
    fails(
        &plugin(&["metric", "--metric-tlscacert", "/nonexistent/ca.pem", &uri]),
        125,
        "invalid argument for \"--metric-tlscacert\" flag: /nonexistent/ca.pem does not exist",
    );
}

#[test]
fn http_json_sources_are_read_by_metric_and_plan() {
    let port = serve_json(r#"{"queue":{"depth":"37","name":"jobs"}}"#);
    let uri = format!("http://127.0.0.1:{port}/stats#/queue/depth");
    assert_eq!(stdout(&ok(plugin(&["metric", &uri]))), "37\n");
    fails(
        &plugin(&[
            "metric",
            &format!("http://127.0.0.1:{port}/stats#/queue/name"),
        ]),
        1,
        "must be a number or a numeric string",
    );
    let svc = TestService::create(
        &unique("metric-http"),
        &[
            "--replicas",
            "0",
            "--label",
            "microscale.min=0",
            "--label",
            "microscale.max=10",
            "--label",
            &format!("microscale.metric={uri}"),
            "--label",
            "microscale.target=10",
        ],
    );
    let row = &json_lines(&stdout(&ok(plugin(&[
        "plan", "--format", "json", &svc.name,
    ]))))[0];
    assert_eq!(
        (row["Metric"].as_str(), row["Desired"].as_u64()),
        (Some("37 / 10"), Some(4)),
        "{row}"
    );
}

#[test]
fn engine_cpu_and_memory_of_a_service_s_own_tasks() {
    // One task burning a full CPU, limited to half a CPU: about 100% of its limit.
    let busy = TestService::create_with_command(
        &unique("metric-cpu"),
        &[
            "--replicas",
            "1",
            "--constraint",
            "node.role==manager",
            "--limit-cpu",
            "0.5",
            "--limit-memory",
            "64m",
            "--label",
            "microscale.min=1",
            "--label",
            "microscale.max=4",
            "--label",
            "microscale.metric=engine://cpu",
            "--label",
            "microscale.target-utilization=50",
            "--label",
            "microscale.metric.mem=engine://memory",
            "--label",
            "microscale.target-utilization.mem=90",
        ],
        &["/bin/sh", "-c", "while :; do :; done"],
    );
    wait_until(
        "the busy task runs",
        std::time::Duration::from_secs(60),
        || {
            status_json(&busy.name)
                .first()
                .is_some_and(|r| r["Running"] == 1)
        },
    );
    let out = ok(plugin(&["plan", "--format", "json", &busy.name]));
    let row = &json_lines(&stdout(&out))[0];
    let metric = row["Metric"]
        .as_str()
        .unwrap_or_else(|| panic!("no metric: {row}"));
    assert!(metric.ends_with("% / 50%"), "{row}");
    let used: f64 = metric.split('%').next().unwrap().trim().parse().unwrap();
    // A busy loop takes its whole 0.5 CPU on an idle machine (~100 %); on a loaded one
    // (2 cores shared with builds) it was seen at 57 %. An idle task reads ~0 %.
    assert!(
        used > 20.0 && used < 130.0,
        "a busy loop under a 0.5 CPU limit: {row}"
    );
    // ceil(1 running × used / 50), within max 4
    let want = ((used / 50.0).ceil() as u64).min(4);
    assert_eq!(row["Desired"], want, "{row}");
    assert_eq!(row["Action"], "scale up", "{row}");
    assert!(
        row["Reasons"][1]
            .as_str()
            .unwrap()
            .starts_with("metric \"mem\""),
        "{row}"
    );
    // the same through status --metrics
    let out = ok(plugin(&[
        "status",
        "--metrics",
        "--format",
        "json",
        &busy.name,
    ]));
    let desired = json_lines(&stdout(&out))[0]["RuleDesired"]
        .as_u64()
        .unwrap();
    assert!((2..=4).contains(&desired), "{desired}");
    // on its own, the engine source needs a service
    fails(
        &plugin(&["metric", "engine://cpu"]),
        125,
        "name it with --service SERVICE",
    );
    // with one: its task on this manager, all of them measured
    let out = ok(plugin(&[
        "metric",
        "engine://cpu",
        "--service",
        &busy.name,
        "--format",
        "json",
    ]));
    let line = &json_lines(&stdout(&out))[0];
    let used = line["Value"].as_f64().unwrap();
    assert!(used > 60.0 && used < 130.0, "{line}");
    assert_eq!(line["Unit"], "percent", "{line}");
    assert_eq!(line["Coverage"], "1 of 1 running tasks measured", "{line}");
}

#[test]
fn engine_metrics_of_tasks_on_other_nodes_say_where_they_are() {
    let remote = TestService::create_with_command(
        &unique("metric-worker"),
        &[
            "--replicas",
            "1",
            "--constraint",
            "node.role==worker",
            "--label",
            "microscale.max=3",
            "--label",
            "microscale.metric=engine://cpu",
            "--label",
            "microscale.target-utilization=50",
        ],
        &["/bin/busybox", "sleep", "100000"],
    );
    wait_until(
        "the worker task runs",
        std::time::Duration::from_secs(60),
        || {
            status_json(&remote.name)
                .first()
                .is_some_and(|r| r["Running"] == 1)
        },
    );
    let out = ok(plugin(&["plan", "--format", "json", &remote.name]));
    let row = &json_lines(&stdout(&out))[0];
    assert_eq!(row["Action"], "hold", "{row}");
    let why = row["Reasons"][0].as_str().unwrap();
    assert!(
        why.contains("no running task could be measured: 0 of 1 running tasks measured; not measured: tasks on sandbox-worker"),
        "{why}"
    );
}

#[test]
fn engine_metrics_say_which_nodes_were_measured() {
    let svc = TestService::create(
        &unique("metric-spread"),
        &[
            "--replicas",
            "2",
            "--replicas-max-per-node",
            "1",
            "--label",
            "microscale.max=4",
            "--label",
            "microscale.metric=engine://memory",
            "--label",
            "microscale.target-utilization=90",
        ],
    );
    wait_until(
        "a task on each node",
        std::time::Duration::from_secs(60),
        || {
            status_json(&svc.name)
                .first()
                .is_some_and(|r| r["Running"] == 2)
        },
    );
    let out = ok(plugin(&["plan", "--format", "json", &svc.name]));
    let row = &json_lines(&stdout(&out))[0];
    let reasons = row["Reasons"].to_string();
    assert!(
        reasons.contains("1 of 2 running tasks measured; not measured: tasks on sandbox-worker"),
        "{row}"
    );
    // An idle service, measured on one node of two: no scale-down on that partial
    // data (the task on the worker could be the busy one).
    assert_eq!(row["Action"], "hold", "{row}");
    assert!(reasons.contains("no scale-down on partial data"), "{row}");
    assert!(
        row["Metric"].as_str().unwrap().ends_with("% / 90%"),
        "{row}"
    );
}
