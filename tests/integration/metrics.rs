//! `docker microscale metric` and the rules' metric sources, against real servers.

use crate::harness::*;

#[test]
fn hosts_outside_the_allow_list_are_never_contacted() {
    // Something listening that must not be asked: a host outside the allow-list.
    let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let out = plugin(&[
        "metric",
        "--metric-allow",
        "127.0.0.1",
        &format!("redis://127.0.0.2:{port}/0?list=jobs"),
    ]);
    fails(
        &out,
        1,
        &format!("127.0.0.2:{port} is not in --metric-allow (127.0.0.1)"),
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
