//! Unit tests of the template engine: every function, table headers, errors with
//! positions.

use serde_json::json;

use super::*;

const FIELDS: Fields = Fields {
    command: "status",
    list: &[
        Field {
            name: "Name",
            kind: Kind::Scalar,
            header: "",
        },
        Field {
            name: "Replicas",
            kind: Kind::Scalar,
            header: "",
        },
        Field {
            name: "Running",
            kind: Kind::Scalar,
            header: "",
        },
        Field {
            name: "Labels",
            kind: Kind::Object,
            header: "",
        },
        Field {
            name: "Nodes",
            kind: Kind::List,
            header: "",
        },
        Field {
            name: "Metric",
            kind: Kind::Scalar,
            header: "",
        },
        Field {
            name: "Ratio",
            kind: Kind::Scalar,
            header: "",
        },
        Field {
            name: "MaxPerNode",
            kind: Kind::Scalar,
            header: "",
        },
        Field {
            name: "RuleDesired",
            kind: Kind::Scalar,
            header: "DESIRED",
        },
        Field {
            name: "Note",
            kind: Kind::Scalar,
            header: "",
        },
    ],
};

fn row() -> Value {
    json!({
        "Name": "web",
        "Replicas": "3/3",
        "Running": 3,
        "Labels": {"a.b": "c", "team": "blue"},
        "Nodes": ["n1", "n2"],
        "Metric": null,
        "Ratio": 0.5,
        "MaxPerNode": null,
        "RuleDesired": 4,
    })
}

/// Renders `template` on `row()`.
fn run(template: &str) -> String {
    let t = Template::parse(template, FIELDS).unwrap_or_else(|e| panic!("{e}"));
    t.execute(&row()).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_err(template: &str) -> TemplateError {
    Template::parse(template, FIELDS).expect_err(template)
}

fn exec_err(template: &str) -> TemplateError {
    let t = Template::parse(template, FIELDS).unwrap_or_else(|e| panic!("{e}"));
    t.execute(&row()).expect_err(template)
}

#[test]
fn fields_variables_and_chains() {
    assert_eq!(run("{{.Name}} {{.Replicas}}"), "web 3/3");
    assert_eq!(run("{{.Labels.team}}"), "blue");
    assert_eq!(run("{{index .Labels \"a.b\"}}"), "c");
    assert_eq!(run("{{$.Name}}"), "web");
    assert_eq!(run("{{$n := .Name}}{{$n}}-{{$n}}"), "web-web");
    assert_eq!(run("{{$n := 1}}{{$n = 2}}{{$n}}"), "2");
    assert_eq!(run("{{(index .Nodes 1)}}"), "n2");
    assert!(run("{{.}}").starts_with("map[Labels:map[a.b:c team:blue]"));
    // Go prints a missing map key as <no value>; index gives the zero value.
    assert_eq!(
        run("{{.Labels.nope}}|{{index .Labels \"nope\"}}"),
        "<no value>|"
    );
    // null prints empty; a known field the row's JSON leaves out is null.
    assert_eq!(run("[{{.Metric}}][{{.Note}}]"), "[][]");
    assert_eq!(
        run("{{.Running}} {{.Ratio}} {{true}} {{1.5e-7}} {{0x10}}"),
        "3 0.5 true 1.5e-07 16"
    );
}

#[test]
fn control_structures() {
    assert_eq!(run("{{if .Metric}}m{{else}}none{{end}}"), "none");
    assert_eq!(
        run("{{if .Metric}}m{{else if .Running}}r{{else}}x{{end}}"),
        "r"
    );
    assert_eq!(run("{{range .Nodes}}<{{.}}>{{end}}"), "<n1><n2>");
    assert_eq!(
        run("{{range $i, $n := .Nodes}}{{$i}}={{$n}},{{end}}"),
        "0=n1,1=n2,"
    );
    assert_eq!(
        run("{{range $k, $v := .Labels}}{{$k}}:{{$v}} {{end}}"),
        "a.b:c team:blue "
    );
    assert_eq!(run("{{range .Metric}}x{{else}}empty{{end}}"), "empty");
    assert_eq!(
        run("{{with .Labels}}{{.team}} {{$.Name}}{{end}}"),
        "blue web"
    );
    assert_eq!(
        run("{{with .Metric}}x{{else with .Name}}{{.}}{{end}}"),
        "web"
    );
    // Trim markers and comments.
    assert_eq!(
        run("a  {{- .Name -}}  b{{/* note */}}c {{- /* x */ -}} d"),
        "awebbcd"
    );
    assert_eq!(
        run("{{if and .Running (not .Metric) (eq .Name \"web\" \"db\")}}yes{{end}}"),
        "yes"
    );
    assert_eq!(
        run("{{or .Metric .Name}} {{and .Running .Name}}"),
        "web web"
    );
    assert_eq!(
        run(
            "{{if lt .Running 4}}lt{{end}}{{if ge .Running 3}}ge{{end}}{{if ne .Name \"x\"}}ne{{end}}"
        ),
        "ltgene"
    );
}

#[test]
fn docker_functions() {
    assert_eq!(run("{{json .Labels}}"), r#"{"a.b":"c","team":"blue"}"#);
    assert_eq!(run("{{json .Metric}} {{json .Name}}"), r#"null "web""#);
    assert_eq!(run("{{json \"<&>\"}}"), r#""<&>""#);
    assert_eq!(run("{{join .Nodes \", \"}}"), "n1, n2");
    assert_eq!(run("{{split .Replicas \"/\"}}"), "[3 3]");
    assert_eq!(run("{{index (split .Replicas \"/\") 1}}"), "3");
    assert_eq!(
        run("{{split \"ab\" \"\"}} {{len (split \"\" \",\")}}"),
        "[a b] 1"
    );
    assert_eq!(run("{{lower \"AbC\"}} {{upper .Name}}"), "abc WEB");
    assert_eq!(
        run("{{title \"hello wide-world foo_bar\"}}"),
        "Hello Wide-World Foo_bar"
    );
    assert_eq!(
        run("{{truncate .Name 2}}|{{truncate .Name 10}}|{{truncate \"日本語\" 2}}"),
        "we|web|日本"
    );
    assert_eq!(
        run("[{{pad .Name 2 1}}][{{pad .Metric 2 1}}]"),
        "[  web ][]"
    );
    assert_eq!(run("{{.Name | upper | printf \"%-5s|\"}}"), "WEB  |");
    assert_eq!(run("{{println .Name .Running}}"), "web 3\n");
    assert_eq!(run("{{print .Name .Running 1 2}}"), "web3 1 2");
    assert_eq!(
        run("{{printf \"%s has %d (%05.1f) %q %v %%\" .Name .Running .Ratio .Name .Nodes}}"),
        "web has 3 (000.5) \"web\" [n1 n2] %"
    );
    assert_eq!(run("{{len .Nodes}} {{len .Labels}} {{len .Name}}"), "2 2 3");
}

#[test]
fn table_header_from_field_names() {
    let t = Template::parse(
        "table {{.Name}}\\t{{.RuleDesired}}\\t{{.MaxPerNode}}\\t{{json .Labels}}\\t{{upper .Replicas}}",
        FIELDS,
    )
    .unwrap();
    let rows = vec![
        row(),
        json!({"Name": "queue-worker", "RuleDesired": null, "Replicas": "1/1"}),
    ];
    let out = t.render(&rows).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    // Each column: its widest cell plus 3, at least 10 (Go's tabwriter, as docker).
    let labels = format!("{:28}", "LABELS");
    assert_eq!(
        lines[0],
        format!("NAME           DESIRED   MAX PER NODE   {labels}REPLICAS")
    );
    assert_eq!(
        lines[1],
        format!(
            "web            {:10}{:15}{{\"a.b\":\"c\",\"team\":\"blue\"}}   3/3",
            "4", ""
        )
    );
    assert_eq!(
        lines[2],
        format!("queue-worker   {:10}{:15}{:28}1/1", "", "", "null")
    );
    assert_eq!(lines.len(), 3);
    // pad is not overridden in the header (as in the docker CLI), truncate is.
    let t = Template::parse("table {{pad .Name 1 0}}\\t{{truncate .Replicas 1}}", FIELDS).unwrap();
    assert_eq!(t.render::<Value>(&[]).unwrap(), " NAME     REPLICAS\n");
    // `json .` in a header stops it, as docker's string-only header functions do.
    let t = Template::parse("table {{.Name}}\\t{{json .}}", FIELDS).unwrap();
    assert_eq!(t.render::<Value>(&[]).unwrap(), "NAME      \n");
    // Index and field chains in a header show the field's header.
    let t = Template::parse("table {{index .Labels \"a.b\"}}\\t{{.Labels.team}}", FIELDS).unwrap();
    assert_eq!(t.render::<Value>(&[]).unwrap(), "LABELS    LABELS\n");
}

#[test]
fn bare_template_is_printed_once_per_row() {
    let t = Template::parse("{{.Name}}: {{.Replicas}}", FIELDS).unwrap();
    let out = t
        .render(&[row(), json!({"Name": "db", "Replicas": "0/1"})])
        .unwrap();
    assert_eq!(out, "web: 3/3\ndb: 0/1\n");
}

#[test]
fn data_is_terminal_safe_but_template_text_is_kept() {
    let t = Template::parse("{{.Name}}\\t{{.Replicas}}\\n", FIELDS).unwrap();
    let out = t
        .render(&[json!({"Name": "x\u{1b}[2J\ty", "Replicas": "a\nb\u{202e}"})])
        .unwrap();
    assert_eq!(out, "x\\u{1b}[2J\\ty\ta\\nb\\u{202e}\n\n");
}

#[test]
fn header_names_like_docker() {
    let h = |name: &'static str| {
        header_of(&Field {
            name,
            kind: Kind::Scalar,
            header: "",
        })
    };
    assert_eq!(h("ID"), "ID");
    assert_eq!(h("Name"), "NAME");
    assert_eq!(h("MaxPerNode"), "MAX PER NODE");
    assert_eq!(h("SourceURL"), "SOURCE URL");
    assert_eq!(h("TasksOnDownNodes"), "TASKS ON DOWN NODES");
    assert_eq!(h("ReplicasBefore"), "REPLICAS BEFORE");
}

#[test]
fn parse_errors_point_at_the_bad_part() {
    let e = parse_err("{{.Name}} {{foo .Name}}");
    assert!(
        e.message.starts_with("function \"foo\" not defined"),
        "{}",
        e.message
    );
    assert_eq!(e.pos, Some(12));
    let shown = e.to_string();
    assert!(
        shown.ends_with("\n  {{.Name}} {{foo .Name}}\n              ^"),
        "{shown}"
    );

    let e = parse_err("{{.Nmae}}");
    assert_eq!(e.pos, Some(2));
    assert!(
        e.message
            .contains("status has no field .Nmae (did you mean .Name?)"),
        "{}",
        e.message
    );
    assert!(e.message.contains("Replicas"), "{}", e.message);

    let e = parse_err("{{uper .Name}}");
    assert!(e.message.contains("did you mean upper?"), "{}", e.message);

    let e = parse_err("{{.Name.first}}");
    assert!(e.message.contains(".Name is a value"), "{}", e.message);
    let e = parse_err("{{$.Nope}}");
    assert!(e.message.contains("no field .Nope"), "{}", e.message);
    let e = parse_err("{{$x}}");
    assert_eq!(e.message, "undefined variable: $x");
    let e = parse_err("{{if .Name}}x");
    assert!(e.message.contains("has no {{end}}"), "{}", e.message);
    assert_eq!(e.pos, Some(2));
    let e = parse_err("x{{end}}");
    assert_eq!(e.pos, Some(1));
    let e = parse_err("{{.Name");
    assert!(e.message.contains("unclosed action"), "{}", e.message);
    let e = parse_err("{{\"abc}}");
    assert!(
        e.message.contains("unterminated quoted string"),
        "{}",
        e.message
    );
    let e = parse_err("{{(.Name}}");
    assert!(e.message.contains("unclosed left paren"), "{}", e.message);
    let e = parse_err("{{template \"x\"}}");
    assert!(e.message.contains("not supported"), "{}", e.message);
    let e = parse_err("{{.Name | }}");
    assert!(e.message.contains("missing command"), "{}", e.message);
    let e = parse_err("{{}}");
    assert!(e.message.contains("missing value"), "{}", e.message);
    // Inside range, dot is an item: its fields are not the row's.
    assert_eq!(run("{{range .Nodes}}{{.}}{{end}}"), "n1n2");
    assert!(Template::parse("{{range .Labels}}{{.Anything}}{{end}}", FIELDS).is_ok());
    // Positions count from the template after the `table` prefix; tabs show escaped.
    let e = parse_err("table {{.Name}}\\t{{.Bad}}");
    assert_eq!(e.template, "{{.Name}}\t{{.Bad}}");
    assert!(
        e.to_string()
            .ends_with("\n  {{.Name}}\\t{{.Bad}}\n               ^"),
        "{e}"
    );
}

#[test]
fn execution_errors_name_the_problem() {
    let e = exec_err("{{index .Nodes 5}}");
    assert!(e.message.contains("index out of range: 5"), "{}", e.message);
    let e = exec_err("{{eq .Running \"3\"}}");
    assert!(e.message.contains("incompatible types"), "{}", e.message);
    let e = exec_err("{{truncate .Name \"x\"}}");
    assert!(e.message.contains("whole number"), "{}", e.message);
    let e = exec_err("{{join .Name \",\"}}");
    assert!(e.message.contains("must be a list"), "{}", e.message);
    let e = exec_err("{{upper}}");
    assert!(
        e.message.contains("wrong number of arguments for upper"),
        "{}",
        e.message
    );
    let e = exec_err("{{.Name 1}}");
    assert!(e.message.contains("can't give arguments"), "{}", e.message);
    let e = exec_err("{{with .Labels}}{{.team.x}}{{end}}");
    assert!(
        e.message.contains("can't read field .x of string"),
        "{}",
        e.message
    );
    let e = exec_err("{{range .Running}}{{end}}");
    assert!(
        e.message.contains("range can't iterate over 3"),
        "{}",
        e.message
    );
}

/// A template over 1000 rows renders quickly (the measure is printed with
/// `--nocapture`).
#[test]
fn thousand_rows_render_quickly() {
    let rows: Vec<Value> = (0..1000)
        .map(|i| {
            let mut r = row();
            r["Name"] = json!(format!("service-{i}"));
            r
        })
        .collect();
    let t = Template::parse(
        "table {{.Name}}\\t{{.Replicas}}\\t{{join .Nodes \",\"}}\\t{{index .Labels \"team\"}}\\t{{json .Labels}}",
        FIELDS,
    )
    .unwrap();
    let start = std::time::Instant::now();
    let out = t.render(&rows).unwrap();
    let took = start.elapsed();
    eprintln!("1000 rows rendered in {took:?}");
    assert_eq!(out.lines().count(), 1001);
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
}
