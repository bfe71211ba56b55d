//! `--format` Go templates against the private swarm: tables with docker-style
//! headers, bare templates, the same data as `--format json`, and bad templates
//! refused before the engine is asked anything.

use crate::harness::*;

/// The column at which each header word starts, for alignment checks.
fn column_of(line: &str, word: &str) -> usize {
    line.find(word)
        .unwrap_or_else(|| panic!("{word:?} not in {line:?}"))
}

#[test]
fn status_table_template_has_docker_headers_and_aligned_columns() {
    let prefix = unique("fmt-table");
    let a = TestService::create(
        &format!("{prefix}-a"),
        &[
            "--replicas",
            "0",
            "--label",
            "microscale.min=0",
            "--label",
            "microscale.max=3",
        ],
    );
    let b = TestService::create(&format!("{prefix}-bbbbbbbbbbbb"), &["--replicas", "0"]);
    let out = ok(plugin(&[
        "status",
        "--format",
        "table {{.Name}}\\t{{.Replicas}}\\t{{.RuleDesired}}\\t{{.MaxPerNode}}\\t{{.Mode}}",
        &a.name,
        &b.name,
    ]));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let header = lines[0];
    assert!(header.starts_with("NAME "), "{header}");
    for (word, next) in [
        ("REPLICAS", "0/0"),
        ("DESIRED", ""),
        ("MAX PER NODE", ""),
        ("MODE", "replicated"),
    ] {
        let col = column_of(header, word);
        if !next.is_empty() {
            for row in &lines[1..] {
                assert_eq!(&row[col..col + next.len()], next, "{word} column:\n{text}");
            }
        }
    }
    // NAME is as wide as the longest name plus 3 (Go's tabwriter, as docker).
    assert_eq!(column_of(header, "REPLICAS"), b.name.len() + 3, "{text}");
    assert!(
        lines[1].starts_with(&a.name) && lines[2].starts_with(&b.name),
        "{text}"
    );
    // The rule's desired replicas in the first row; none for the service without a rule.
    let desired = column_of(header, "DESIRED");
    assert_eq!(
        lines[1][desired..].split_whitespace().next(),
        Some("0"),
        "{text}"
    );
    assert_eq!(
        lines[2][desired..].split_whitespace().next(),
        Some("replicated"),
        "{text}"
    );
}

#[test]
fn status_bare_template_matches_the_json_output() {
    let prefix = unique("fmt-bare");
    let svc = TestService::create(
        &format!("{prefix}-svc"),
        &[
            "--replicas",
            "0",
            "--label",
            "microscale.min=0",
            "--label",
            "microscale.max=2",
            "--label",
            "team=blue",
        ],
    );
    let json = &status_json(&svc.name)[0];
    let out = ok(plugin(&[
        "status",
        "--format",
        "{{.ID}}|{{.Name}}|{{.Mode}}|{{.Replicas}}|{{index .RuleLabels \"microscale.max\"}}|{{json .RuleLabels}}|{{upper .Mode}}|{{len .DownNodes}}",
        &svc.name,
    ]));
    let line = stdout(&out);
    let want = format!(
        "{}|{}|{}|{}|2|{}|REPLICATED|0\n",
        json["ID"].as_str().unwrap(),
        json["Name"].as_str().unwrap(),
        json["Mode"].as_str().unwrap(),
        json["Replicas"].as_str().unwrap(),
        serde_json::to_string(&json["RuleLabels"]).unwrap()
    );
    assert_eq!(line, want);
    // `{{json .}}` is the JSON format itself.
    let all = ok(plugin(&["status", "--format", "{{json .}}", &svc.name]));
    assert_eq!(json_lines(&stdout(&all))[0], *json);
    // Through the docker CLI, as a user types it.
    let out = ok(docker(&[
        "microscale",
        "status",
        "--format",
        "{{.Name}}{{range $k, $v := .RuleLabels}} {{$k}}={{$v}}{{end}}",
        &svc.name,
    ]));
    assert_eq!(
        stdout(&out),
        format!("{} microscale.max=2 microscale.min=0\n", svc.name)
    );
}

#[test]
fn rules_check_and_provenance_take_templates() {
    let svc = TestService::create(
        &unique("fmt-rules"),
        &["--replicas", "0", "--label", "microscale.min=lots"],
    );
    let out = plugin(&[
        "rules",
        "check",
        "--format",
        "{{.Service}} {{.Key}} {{.Severity}} {{printf \"%q\" .Value}}",
        &svc.name,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l == format!("{} microscale.min error \"lots\"", svc.name)),
        "{text}"
    );
    assert!(!text.contains("with a rule:"), "no summary line: {text}");

    let out = ok(plugin(&[
        "provenance",
        "--format",
        "table {{.Name}}\\t{{.Pinned}}\\t{{with .Config}}{{.Source}}{{end}}",
        &svc.name,
    ]));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("PINNED"),
        "{text}"
    );
    assert!(lines[1].starts_with(&svc.name), "{text}");
    assert!(
        lines[1].contains("false") && lines[1].ends_with("engine"),
        "{text}"
    );
}

#[test]
fn bad_templates_are_usage_errors_before_any_engine_call() {
    // The engine address leads nowhere: an engine call would fail with exit 1.
    let run = |args: &[&str]| {
        clean(plugin_bin(), plugin_config())
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .args(args)
            .output()
            .unwrap()
    };
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["status", "--format", "{{.Name}} {{.Nmae}}"],
            "status has no field .Nmae (did you mean .Name?)",
            "  {{.Name}} {{.Nmae}}\n              ^",
        ),
        (
            &[
                "status",
                "--format",
                "table {{.Name}}\\t{{lowercase .Name}}",
            ],
            "function \"lowercase\" not defined",
            "  {{.Name}}\\t{{lowercase .Name}}\n               ^",
        ),
        (
            &["plan", "--format", "{{if .Service}}x"],
            "has no {{end}}",
            "  {{if .Service}}x\n    ^",
        ),
        (
            &["rules", "check", "--format", "{{.Name}}"],
            "rules check has no field .Name",
            "^",
        ),
        (
            &["provenance", "--format", "{{.Provenance.Source"],
            "unclosed action",
            "^",
        ),
        (
            &["scale", "--format", "{{.Replicas}}", "web=1"],
            "scale has no field .Replicas",
            "^",
        ),
        (
            &[
                "metric",
                "--format",
                "{{.Value | foo}}",
                "redis://127.0.0.1/0?list=a",
            ],
            "function \"foo\" not defined",
            "^",
        ),
    ];
    for (args, what, caret) in cases {
        let out = run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(
            err.starts_with("template parsing error: "),
            "{args:?}: {err}"
        );
        assert!(err.contains(what), "{args:?}: {err}");
        assert!(err.contains(caret), "{args:?}: {err}");
        assert!(err.contains("Usage:  docker microscale"), "{args:?}: {err}");
        assert!(
            !err.contains("nonexistent"),
            "no engine call: {args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
