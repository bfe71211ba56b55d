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

/// Issue 13: a template nested 12 000 levels deep is a usage error (exit 125) that
/// names the limit, not a stack overflow; a template whose output passes 64 MiB
/// stops with exit 125 and prints nothing; and `{{json .X}}` prints the very text
/// `--format json` prints, with no raw escape byte on stdout.
#[test]
fn hostile_templates_are_bounded_and_json_agrees_with_format_json() {
    // Parentheses: a single argument may hold at most 128 KiB.
    let deep = 12_000;
    let t = format!("{{{{{}.Name{}}}}}", "(".repeat(deep), ")".repeat(deep));
    let out = plugin(&["status", "--format", &t]);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(125),
        "{}",
        &err[..err.len().min(500)]
    );
    assert!(
        err.starts_with(
            "template parsing error: template nested too deeply: more than 1000 levels"
        ),
        "{}",
        &err[..err.len().min(500)]
    );
    assert!(out.stdout.is_empty());

    let prefix = unique("fmt-hostile");
    let svc = TestService::create(
        &format!("{prefix}-a"),
        &[
            "--replicas",
            "0",
            "--label",
            "microscale.note=x\u{1b}[2J\u{1b}]0;owned\u{7}\ty\nz",
        ],
    );
    // 100 lines of a million characters each: more than 64 MiB.
    let out = plugin(&[
        "status",
        "--format",
        "{{range split (printf \"%100s\" \"\") \"\"}}{{printf \"%1000000s\" $.Name}}{{end}}",
        &svc.name,
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("template output too large: more than 64 MiB"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing printed");
    // A width above Go's limit is refused, with the position.
    let out = plugin(&[
        "status",
        "--format",
        "{{printf \"%2147483647d\" 1}}",
        &svc.name,
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("width 2147483647 is more than 1000000"),
        "{}",
        stderr(&out)
    );

    let json = stdout(&ok(plugin(&["status", "--format", "json", &svc.name])));
    let from_template = stdout(&ok(plugin(&[
        "status",
        "--format",
        "{{json .RuleLabels}}|{{.RuleLabels}}|{{index .RuleLabels \"microscale.note\"}}",
        &svc.name,
    ])));
    let row: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let (labels, rest) = from_template.trim_end().split_once('|').unwrap();
    // The same text as the field of --format json, and the same value.
    assert!(
        json.contains(&format!("\"RuleLabels\":{labels}")),
        "{json}\n{labels}"
    );
    let parsed: serde_json::Value = serde_json::from_str(labels).unwrap();
    assert_eq!(parsed, row["RuleLabels"]);
    assert_eq!(
        parsed["microscale.note"],
        serde_json::json!("x\u{1b}[2J\u{1b}]0;owned\u{7}\ty\nz")
    );
    // Printed values are escaped: no raw control byte, no extra line.
    for out in [&json, &from_template] {
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert_eq!(out.lines().count(), 1, "{out:?}");
    }
    assert!(
        rest.ends_with("x\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\ty\\nz"),
        "{rest}"
    );
}
