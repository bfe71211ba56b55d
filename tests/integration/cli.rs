//! The command line as a new user meets it: every example of every command's
//! `--help`, run as shown against the private swarm, and the docker CLI's
//! conventions (`--version`, suggestions for a mistyped command, what a bad number
//! is).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::*;

/// How an example is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Run; it must exit 0.
    Ok,
    /// Run; it acts on every service of the shared test swarm, where other tests'
    /// services may have rule errors or images without provenance, so exit 1 (and
    /// 2 for `plan --detailed-exitcode`) is a verdict, not a failure.
    Swarm,
    /// Runs until interrupted: run for a while, then stopped.
    Watch,
    /// Not run (the reason is in [`SPECIAL`]).
    Skip,
}

/// Examples that are not simply run to exit 0, by their text in `--help`, with why.
/// Every entry must still be an example (the test fails on a stale one), and an
/// example that changes what other tests use (`apply` of every service, `run`) must
/// be listed here.
const SPECIAL: &[(&str, Class, &str)] = &[
    (
        "docker microscale status --watch --interval 5s",
        Class::Watch,
        "runs until interrupted",
    ),
    (
        "docker microscale provenance --check",
        Class::Swarm,
        "checks every service's image",
    ),
    (
        "docker microscale provenance --check --require source,revision,licenses",
        Class::Swarm,
        "checks every service's image",
    ),
    (
        "docker microscale plan",
        Class::Swarm,
        "plans every rule-managed service",
    ),
    (
        "docker microscale plan --capacity 20",
        Class::Swarm,
        "plans every rule-managed service",
    ),
    (
        "docker microscale plan --detailed-exitcode; [ $? -eq 2 ] && echo changes pending",
        Class::Swarm,
        "plans every rule-managed service; exits 1 when nothing is pending",
    ),
    (
        "docker microscale plan --format json | jq -r '.Service + \" \" + (.Desired|tostring)'",
        Class::Swarm,
        "plans every rule-managed service",
    ),
    (
        "docker microscale scale --force web=50",
        Class::Skip,
        "starts 50 tasks: too heavy for the test swarm (scale web=5 and web=10 run)",
    ),
    (
        "docker microscale apply",
        Class::Skip,
        "scales every rule-managed service of the shared swarm, holding the agents' lease other tests use",
    ),
    (
        "docker microscale apply queue-worker",
        Class::Skip,
        "holds the agents' default lease (microscale-agent-lease), which other tests' agents may hold",
    ),
    (
        "docker microscale apply --capacity 20 --detach",
        Class::Skip,
        "scales every rule-managed service of the shared swarm",
    ),
    (
        "docker microscale apply --rules rules.toml --timeout 5m",
        Class::Skip,
        "scales every rule-managed service of the shared swarm",
    ),
    (
        "docker microscale run",
        Class::Skip,
        "the agent: runs until stopped and scales every rule-managed service",
    ),
    (
        "docker microscale run --interval 5s --capacity 40",
        Class::Skip,
        "the agent: runs until stopped and scales every rule-managed service",
    ),
    (
        "docker microscale run --dry-run --log-format json",
        Class::Skip,
        "the agent: runs until stopped, holding the agents' default lease",
    ),
    (
        "docker microscale run --once queue-worker",
        Class::Skip,
        "holds the agents' default lease, which other tests' agents may hold",
    ),
    (
        "docker microscale run --listen :9090 --metric-allow prometheus:9090",
        Class::Skip,
        "the agent: runs until stopped; needs a Prometheus server at prometheus:9090",
    ),
    (
        "docker microscale run --collector --stats-listen :9091 --stats-token-file /run/secrets/microscale-stats-token",
        Class::Skip,
        "the agent: runs until stopped; needs the stats token secret of a deployed agent",
    ),
    (
        "docker microscale replay queue-worker --prometheus http://127.0.0.1:9090 --query 'sum(redis_queue_length)' --start now-7d --step 15s",
        Class::Skip,
        "needs a Prometheus server at 127.0.0.1:9090",
    ),
    (
        "docker microscale metric --metric-secret redis=queue:6379 'redis://queue:6379/0?list=jobs&secret-file=/run/secrets/redis'",
        Class::Skip,
        "needs a redis server named queue and its secret",
    ),
    (
        "docker microscale metric 'prometheus://prometheus:9090?query=sum(rate(http_requests_total[1m]))'",
        Class::Skip,
        "needs a Prometheus server named prometheus",
    ),
    (
        "docker microscale metric --metric-allow stats.example:8080 'http://stats.example:8080/stats#/queue/depth'",
        Class::Skip,
        "needs an HTTP server at stats.example",
    ),
    (
        "docker microscale metric --format json --timeout 2s 'nats://nats:8222/ORDERS/worker'",
        Class::Skip,
        "needs a NATS server named nats",
    ),
    (
        "docker microscale rules check",
        Class::Swarm,
        "checks every service's rule",
    ),
    (
        "docker microscale rules check --rules rules.toml",
        Class::Swarm,
        "checks every service's rule",
    ),
    (
        "docker microscale rules check --format json | jq -r .Expected",
        Class::Swarm,
        "checks every service's rule",
    ),
];

/// The commands listed under `Commands:` in `help` (`  NAME   description`).
fn commands_in(help: &str) -> Vec<String> {
    help.split_once("\nCommands:\n")
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The lines of the Examples section of `help`, trimmed.
fn examples_in(help: &str) -> Vec<String> {
    help.split_once("\nExamples:\n")
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect()
}

/// `docker-microscale PATH --help`.
fn help_of(path: &[&str]) -> String {
    let out = ok(clean(plugin_bin(), plugin_config())
        .args(path)
        .arg("--help")
        .output()
        .unwrap());
    stdout(&out)
}

/// Every example of every visible command, with the command's path.
fn all_examples() -> Vec<(String, String)> {
    let mut found = vec![];
    let mut todo: Vec<Vec<String>> = commands_in(&help_of(&[]))
        .into_iter()
        .map(|c| vec![c])
        .collect();
    while let Some(path) = todo.pop() {
        let words: Vec<&str> = path.iter().map(String::as_str).collect();
        let help = help_of(&words);
        let subs = commands_in(&help);
        if subs.is_empty() {
            for e in examples_in(&help) {
                found.push((path.join(" "), e));
            }
        } else {
            for s in subs {
                let mut p = path.clone();
                p.push(s);
                todo.push(p);
            }
        }
    }
    found.sort();
    found
}

/// `line` with the example service names replaced by this test's (`web`,
/// `web=+2` → `NAME`, `NAME=+2`); file names such as `web.svg` stay.
fn with_names(line: &str, names: &BTreeMap<&str, String>) -> String {
    line.split(' ')
        .map(|word| {
            for (example, ours) in names {
                if word == *example {
                    return ours.clone();
                }
                if let Some(rest) = word.strip_prefix(&format!("{example}=")) {
                    return format!("{ours}={rest}");
                }
            }
            word.to_string()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a usage error prints: an example must never fail this way.
fn usage_failure(out: &std::process::Output) -> Option<String> {
    let err = stderr(out);
    let said = [
        "unknown flag",
        "unknown command",
        "invalid argument",
        "Usage:  docker",
        "accepts no arguments",
        "requires exactly",
        "requires at least",
        "flag needs an argument",
    ]
    .into_iter()
    .find(|s| err.contains(s));
    match (out.status.code(), said) {
        (Some(125), _) => Some(format!("exit 125: {err}")),
        (_, Some(s)) => Some(format!("says {s:?}: {err}")),
        _ => None,
    }
}

/// Runs `script` with bash in `dir`, with the docker config `cfg` (its current
/// context is the test swarm), killed after `limit`.
fn run_script(cfg: &Path, dir: &Path, script: &str, limit: Duration) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let out_file = dir.join(".stdout");
    let err_file = dir.join(".stderr");
    let mut child = clean("bash", cfg)
        .current_dir(dir)
        .args(["-c", &format!("set -o pipefail\n{script}")])
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            // SAFETY: kill(2) on the process group of a child this test started.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: std::fs::read(&out_file).unwrap(),
        stderr: std::fs::read(&err_file).unwrap(),
    }
}

#[test]
fn every_help_example_runs_as_shown() {
    require("jq", "jq");
    require("gzip", "gzip");
    let examples = all_examples();
    for want in [
        "status",
        "plan",
        "scale",
        "rules check",
        "rules history",
        "badge",
    ] {
        assert!(
            examples.iter().any(|(p, _)| p == want),
            "no examples of {want} found: {examples:?}"
        );
    }
    for (line, _, why) in SPECIAL {
        assert!(
            examples.iter().any(|(_, e)| e == line),
            "SPECIAL lists {line:?} ({why}), which is no longer an example: update the list"
        );
    }

    // The services the examples name, under names of this test.
    let port = serve_json(r#"{"rps": 150, "depth": 20}"#);
    let names: BTreeMap<&str, String> = [
        ("web", unique("ex-web")),
        ("queue-worker", unique("ex-queue-worker")),
        ("api", unique("ex-api")),
    ]
    .into_iter()
    .collect();
    let image = format!("{}/microscale-test/oci:1", registry());
    let _web = TestService::create_resolved(
        &names["web"],
        &[
            "--replicas",
            "1",
            "--constraint",
            "node.role==manager",
            "--update-monitor",
            "1s",
            "--label",
            "microscale.enable=true",
            "--label",
            "microscale.max=20",
            "--label",
            &format!("microscale.metric=http://127.0.0.1:{port}/#/rps"),
            "--label",
            "microscale.target=100",
        ],
        &image,
        &["/bin/busybox", "sleep", "1000000"],
    );
    let _queue = TestService::create(
        &names["queue-worker"],
        &[
            "--replicas",
            "2",
            "--update-monitor",
            "1s",
            "--label",
            "microscale.max=10",
            "--label",
            &format!("microscale.metric=http://127.0.0.1:{port}/#/depth"),
            "--label",
            "microscale.target=10",
        ],
    );
    let _api = TestService::create(
        &names["api"],
        &["--replicas", "1", "--update-monitor", "1s"],
    );

    // A docker config whose current context, `prod`, is the test swarm: the
    // examples run as a user types them, `docker --context prod ...` included.
    let cfg = fresh_config();
    let host = format!("host={}", manager_host());
    ok(clean("docker", cfg.path())
        .args(["context", "create", "prod", "--docker", &host])
        .output()
        .unwrap());
    ok(clean("docker", cfg.path())
        .args(["context", "use", "prod"])
        .output()
        .unwrap());

    // The files the examples read.
    let dir = tempfile::tempdir().unwrap();
    let series: String = (0..20)
        .map(|i| format!("{},{}\n", i * 60, 100 + 40 * (i % 7)))
        .collect();
    std::fs::write(
        dir.path().join("web-rps.csv"),
        format!("time,value\n{series}"),
    )
    .unwrap();
    std::fs::write(dir.path().join("demand.csv"), &series).unwrap();
    let week: String = (0..20)
        .map(|i| {
            format!(
                "{{\"time\": {}, \"value\": {}}}\n",
                i * 60,
                80 + 30 * (i % 5)
            )
        })
        .collect();
    std::fs::write(dir.path().join("week.jsonl"), week).unwrap();
    std::fs::write(
        dir.path().join("rules.toml"),
        format!(
            "[\"{}\"]\nmax = 8\nmetric = \"http://127.0.0.1:{port}/#/rps\"\ntarget = 50\n",
            names["web"]
        ),
    )
    .unwrap();

    let mut failures = vec![];
    let mut ran = 0;
    for (path, line) in &examples {
        let class = SPECIAL
            .iter()
            .find(|(l, _, _)| l == line)
            .map_or(Class::Ok, |(_, c, _)| *c);
        if class == Class::Ok
            && ((line.contains(" microscale apply") && !line.contains("--dry-run"))
                || line.contains(" microscale run"))
        {
            failures.push(format!(
                "`{line}` changes the shared swarm: list it in SPECIAL with the reason"
            ));
            continue;
        }
        if class == Class::Skip {
            continue;
        }
        let script = with_names(line, &names);
        let limit = if class == Class::Watch {
            Duration::from_secs(4)
        } else {
            Duration::from_secs(150)
        };
        let started = Instant::now();
        let out = run_script(cfg.path(), dir.path(), &script, limit);
        ran += 1;
        let shown = format!(
            "`{path}` example `{line}` (run as `{script}`): {:?} after {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            started.elapsed(),
            stdout(&out),
            stderr(&out)
        );
        if let Some(why) = usage_failure(&out) {
            failures.push(format!("usage error, {why}\n{shown}"));
            continue;
        }
        match class {
            Class::Ok if !out.status.success() => failures.push(format!("failed: {shown}")),
            Class::Swarm if !matches!(out.status.code(), Some(0..=2)) => {
                failures.push(format!("failed: {shown}"))
            }
            // Still running when stopped, after printing the status.
            Class::Watch if out.status.code().is_some() || !stdout(&out).starts_with("NAME ") => {
                failures.push(format!("the watch did not keep running: {shown}"))
            }
            _ => {}
        }
        // A template prints the fields, not itself.
        if line.contains("{{") {
            let text = stdout(&out);
            if text.contains("{{") || text.contains("}}") || text.contains("\\t") {
                failures.push(format!("template printed as text: {shown}"));
            }
            if text.trim().is_empty() {
                failures.push(format!("template printed nothing: {shown}"));
            }
        }
    }
    // What the examples made, where they made it.
    let svg = std::fs::read_to_string(dir.path().join("commit.svg")).unwrap_or_default();
    if !svg.contains(">0123456<") {
        failures.push(format!("badge -o commit.svg wrote {svg:?}"));
    }
    for file in ["version.svg", "license.svg", "commit.svg.gz", "web.svg"] {
        if std::fs::metadata(dir.path().join(file)).map_or(0, |m| m.len()) == 0 {
            failures.push(format!("the examples left no {file}"));
        }
    }
    assert!(ran >= 25, "only {ran} examples ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} examples failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------
// The docker CLI's conventions
// ---------------------------------------------------------------------------------

#[test]
fn a_mistyped_command_names_its_group_and_what_was_meant() {
    for (args, group, meant) in [
        (vec!["rules", "chek"], "docker microscale rules", "check"),
        (
            vec!["rules", "histroy"],
            "docker microscale rules",
            "history",
        ),
        (vec!["stauts"], "docker microscale", "status"),
    ] {
        for out in [
            plugin(&args),
            docker(&[&["microscale"], args.as_slice()].concat()),
        ] {
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
            assert!(
                err.starts_with(&format!(
                    "unknown command \"{}\" for \"{group}\"\n\nDid you mean this?\n  {meant}\n",
                    args.last().unwrap()
                )),
                "{args:?}: {err}"
            );
            assert!(err.contains(&format!("Run '{group} --help'")), "{err}");
            assert!(!err.contains("__"), "no hidden command is offered: {err}");
            assert!(out.stdout.is_empty());
        }
    }
    // Nothing close: no suggestion.
    let out = plugin(&["rules", "zzz"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(!stderr(&out).contains("Did you mean"), "{}", stderr(&out));
}

#[test]
fn version_flags_as_docker_has_them() {
    let version = stdout(&ok(plugin(&["version"])));
    assert!(version.starts_with("docker-microscale "), "{version}");
    for args in [["--version"], ["-v"]] {
        assert_eq!(stdout(&ok(plugin(&args))), version, "{args:?}");
        let through = ok(docker(&[&["microscale"], &args[..]].concat()));
        assert_eq!(stdout(&through), version, "docker microscale {args:?}");
    }
    let help = stdout(&ok(plugin(&["--help"])));
    assert!(
        help.contains("\nOptions:\n  -v, --version   Print version information and quit\n"),
        "{help}"
    );
    // Only on the root, as docker's.
    fails(
        &plugin(&["status", "--version"]),
        125,
        "unknown flag: --version",
    );
}

#[test]
fn a_bad_number_says_what_is_expected() {
    for (args, flag, value, why) in [
        (
            vec!["plan", "--capacity", "abc"],
            "--capacity",
            "abc",
            "not a whole number",
        ),
        (
            vec!["apply", "--dry-run", "--capacity=-3"],
            "--capacity",
            "-3",
            "a negative number",
        ),
        (
            vec!["run", "--once", "--capacity", "2.5"],
            "--capacity",
            "2.5",
            "not a whole number",
        ),
        (
            vec![
                "replay",
                "--label",
                "max=3",
                "--label",
                "target=5",
                "--series",
                "x.csv",
                "--replicas",
                "many",
            ],
            "--replicas",
            "many",
            "not a whole number",
        ),
    ] {
        let out = plugin(&args);
        fails(
            &out,
            125,
            &format!(
                "invalid argument \"{value}\" for \"{flag}\" flag: {why}: give a number of replicas, 0 or more, such as 20"
            ),
        );
        assert!(!stderr(&out).contains("invalid digit"), "{}", stderr(&out));
    }
}
