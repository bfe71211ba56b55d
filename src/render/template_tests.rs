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

/// Runs `f` on a thread with a 2 MiB stack (Rust's default for threads; the plugin
/// runs templates on its main thread, with more), so a recursion that is not bounded
/// aborts the test instead of passing by luck.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn nesting_is_bounded_when_parsed() {
    on_small_stack(|| {
        // Blocks, parentheses, else-if chains: 12 000 deep is an error, not a crash.
        let deep = 12_000;
        let blocks = format!("{}x{}", "{{if 1}}".repeat(deep), "{{end}}".repeat(deep));
        let parens = format!("{{{{{}1{}}}}}", "(".repeat(deep), ")".repeat(deep));
        let ranges = format!(
            "{}x{}",
            "{{range .Nodes}}".repeat(deep),
            "{{end}}".repeat(deep)
        );
        let chain = format!("{{{{if 0}}}}{}{{{{end}}}}", "{{else if 0}}".repeat(deep));
        for t in [&blocks, &parens, &ranges, &chain] {
            let e = parse_err(t);
            assert!(
                e.message
                    .starts_with("template nested too deeply: more than 1000 levels"),
                "{}",
                e.message
            );
            assert!(e.pos.is_some_and(|p| p > 0), "{e:?}");
        }
        // Exactly at the limit: parsed and run (the executor goes as deep).
        let n = MAX_DEPTH;
        let t = format!("{}x{}", "{{with .}}".repeat(n), "{{end}}".repeat(n));
        assert_eq!(run(&t), "x");
        let t = format!("{{{{{}.Name{}}}}}", "(".repeat(n), ")".repeat(n));
        assert_eq!(run(&t), "web");
        let t = format!("{{{{{}.Name{}}}}}", "(".repeat(n + 1), ")".repeat(n + 1));
        assert!(parse_err(&t).message.contains("nested too deeply"));
    });
}

/// A template longer than the parser allows (built here as nodes) is still stopped
/// when it runs.
#[test]
fn nesting_is_bounded_when_run() {
    on_small_stack(|| {
        let mut t = Template::parse("{{if 1}}x{{end}}", FIELDS).unwrap();
        let mut node = t.nodes[0].clone();
        for _ in 0..MAX_DEPTH + 5 {
            let Node::If(pipe, _, _) = &node else {
                unreachable!()
            };
            node = Node::If(pipe.clone(), vec![node.clone()], vec![]);
        }
        t.nodes = vec![node];
        let e = t.execute(&row()).unwrap_err();
        assert!(e.message.contains("nested too deeply"), "{}", e.message);
    });
}

/// Many sequential parentheses parse in linear time (the matching `)` of each is
/// found in one pass over the action).
#[test]
fn deep_parentheses_parse_quickly() {
    let n = MAX_DEPTH;
    let one = format!("{}1{}", "(".repeat(n), ")".repeat(n));
    let t = format!("{{{{print {}}}}}", vec![one; 50].join(" "));
    let start = std::time::Instant::now();
    on_small_stack(move || Template::parse(&t, FIELDS).map(|_| ()).unwrap());
    let took = start.elapsed();
    eprintln!("50 × {n} nested parentheses parsed in {took:?}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}

#[test]
fn widths_and_precisions_are_bounded_as_in_go() {
    for t in [
        "{{printf \"%2147483647d\" 1}}",
        "{{printf \"%.2000000f\" 1.5}}",
        "{{printf \"%*d\" 2000000 1}}",
        "{{printf \"%.*s\" -2000000 .Name}}",
        "{{printf \"%99999999999999999999999s\" .Name}}",
    ] {
        let e = exec_err(t);
        assert!(e.message.starts_with("printf: "), "{t}: {}", e.message);
        assert!(
            e.message.contains("more than 1000000"),
            "{t}: {}",
            e.message
        );
    }
    let e = exec_err("{{pad .Name 1000000000 0}}");
    assert!(
        e.message
            .contains("pad: the space before is 1000000000, more than 1000000"),
        "{}",
        e.message
    );
    let e = exec_err("{{printf \"%*d\" .Name 1}}");
    assert!(
        e.message.contains("width * must be a whole number"),
        "{}",
        e.message
    );
    // Star widths and precisions work as in Go (negative width: left-justified).
    assert_eq!(
        run(
            "[{{printf \"%*s\" 5 .Name}}][{{printf \"%*s\" -5 .Name}}][{{printf \"%.*s\" 2 .Name}}]"
        ),
        "[  web][web  ][we]"
    );
    // At the limit it works.
    assert_eq!(run("{{len (printf \"%1000000d\" 7)}}"), "1000000");
    // Precisions past what Rust's formatter takes (65 535) are exact too (a
    // break-it round: %.70000f panicked).
    assert_eq!(run("{{len (printf \"%.70000f\" 1.0)}}"), "70002");
    assert_eq!(run("{{len (printf \"%.1000000f\" 1.5)}}"), "1000002");
    let tail = run("{{printf \"%.1200f\" 0.1}}");
    assert!(
        tail.starts_with("0.1000000000000000055511151231257827"),
        "{tail}"
    );
    assert!(tail.ends_with(&"0".repeat(100)), "{tail}");
    assert_eq!(run("{{len (printf \"%1000000.1000000f\" 2.0)}}"), "1000002");
    // A huge index says the index it was given.
    let e = exec_err("{{index .Nodes 9223372036854775807}}");
    assert!(
        e.message.contains("index out of range: 9.22") && !e.message.contains("-1"),
        "{}",
        e.message
    );
}

#[test]
fn work_and_output_are_bounded() {
    // Doubling a string: the bytes made pass MAX_WORK.
    let mut t = String::from("{{$x := printf \"%1000000s\" \"a\"}}");
    for _ in 0..12 {
        t.push_str("{{$x = print $x $x}}");
    }
    t.push_str("{{len $x}}");
    let e = exec_err(&t);
    assert!(e.message.contains("template too costly"), "{}", e.message);
    assert!(e.message.contains("256 MiB"), "{}", e.message);
    // Output over all rows is bounded: 80 rows of 1 MB pass 64 MiB.
    let tpl = Template::parse("{{printf \"%1000000s\" .Name}}", FIELDS).unwrap();
    let rows = vec![row(); 80];
    let e = tpl.render(&rows).unwrap_err();
    assert!(
        e.message
            .starts_with("template output too large: more than 64 MiB"),
        "{}",
        e.message
    );
    assert_eq!(tpl.render(&rows[..10]).unwrap().len(), 10 * 1_000_001);
    // Nested ranges over 8 000 labels: 64 million passes is too many steps.
    let mut big = row();
    big["Labels"] = Value::Object((0..8000).map(|i| (format!("l{i}"), json!("v"))).collect());
    let tpl = Template::parse("{{range .Labels}}{{range $.Labels}}{{end}}{{end}}", FIELDS).unwrap();
    let start = std::time::Instant::now();
    let e = tpl.execute(&big).unwrap_err();
    eprintln!("nested ranges stopped after {:?}", start.elapsed());
    assert!(e.message.contains("template too costly"), "{}", e.message);
    // A table whose one wide cell pads every line is bounded after alignment.
    let tpl = Template::parse(
        "table {{if eq .Running 1}}{{printf \"%900000s\" \"x\"}}{{end}}\\t{{.Name}}",
        FIELDS,
    )
    .unwrap();
    let mut rows = vec![row(); 100];
    rows[0]["Running"] = json!(1);
    let e = tpl.render(&rows).unwrap_err();
    assert!(
        e.message.contains("template output too large"),
        "{}",
        e.message
    );
    // split of a long text into characters is bounded by what the list costs.
    let e = exec_err(
        "{{$x := printf \"%1000000s\" \"a\"}}{{$x = print $x $x $x $x $x $x $x $x}}{{len (split $x \"\")}}",
    );
    assert!(
        e.message.contains("split: a list of 8000000 parts"),
        "{}",
        e.message
    );
}

#[test]
fn too_many_table_columns_is_an_error_not_a_stack_overflow() {
    on_small_stack(|| {
        let t = format!("table {}", "{{.Name}}\\t".repeat(20_000));
        let tpl = Template::parse(&t, FIELDS).unwrap();
        let e = tpl.render(&[row()]).unwrap_err();
        assert!(e.message.contains("more than 1000"), "{}", e.message);
    });
}

/// `{{json .X}}` gives the text `--format json` gives for the field, for a value
/// with an escape sequence, a C1 control and a bidi override; and no raw control
/// character reaches the output of any action, while the template's own tabs and
/// newlines, and those of printf's format and join's separator, are kept.
#[test]
fn json_in_a_template_is_the_json_output_and_data_is_escaped_when_printed() {
    let name = "x\u{1b}[2J\u{9b}31m\u{202e}\ty\nz";
    let data = json!({"Name": name, "Replicas": "1/1", "Nodes": ["a\u{1b}]0;t\u{7}", "b"]});
    let line = crate::render::json_lines(std::slice::from_ref(&data));
    let whole: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(whole["Name"], json!(name), "the JSON keeps the real value");
    let field = &line[line.find("\"Name\":").unwrap() + 7..];
    let field = &field[..field.find(",\"Nodes\"").unwrap()];
    let tpl = |t: &str| {
        Template::parse(t, FIELDS)
            .unwrap()
            .render(std::slice::from_ref(&data))
            .unwrap()
    };
    assert_eq!(tpl("{{json .Name}}"), format!("{field}\n"));
    assert_eq!(field, r#""x\u001b[2J\u009b31m\u202e\ty\nz""#);
    // The template sees the real value: 14 characters, ESC included.
    assert_eq!(
        tpl("{{len .Name}}|{{truncate .Name 1}}|{{eq .Name (index . \"Name\")}}"),
        "14|x|true\n"
    );
    for t in [
        "{{.Name}}",
        "{{.}}",
        "{{.Nodes}}",
        "{{range .Nodes}}{{.}}{{end}}",
        "{{printf \"%s\\t%v\" .Name .Nodes}}",
        "{{print .Name}}{{println .Name}}",
        "{{join .Nodes .Name}}",
        "{{pad .Name 1 1}}",
        "{{upper .Name}}{{truncate .Name 20}}",
        "{{$x := .Name}}{{$x}}",
        "{{printf .Name}}",
        "{{range $k, $v := .}}{{$k}}={{$v}}{{end}}",
        "table {{.Name}}\\t{{.Replicas}}",
    ] {
        let out = tpl(t);
        assert!(
            !out.chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{t}: {out:?}"
        );
        assert!(!out.contains('\u{202e}'), "{t}: {out:?}");
        // The value's newline never starts a line of the output.
        assert!(!out.contains("\nz"), "{t}: {out:?}");
    }
    assert_eq!(tpl("{{truncate .Name 2}}"), "x\\u{1b}\n");
    // The template's own text, printf's format and join's separator keep their tabs
    // and newlines.
    assert_eq!(
        tpl("{{.Replicas}}\\t{{printf \"%s\\t%s\" .Replicas .Replicas}}"),
        "1/1\t1/1\t1/1\n"
    );
    assert_eq!(tpl("{{join .Nodes \"\\x0a\"}}"), "a\\u{1b}]0;t\\u{7}\nb\n");
    assert_eq!(tpl("{{println .Replicas}}"), "1/1\n\n");
}

/// [`align`] with a generous bound.
fn al(text: &str, min_width: usize, padding: usize) -> String {
    align(text, min_width, padding, 1 << 20).unwrap()
}

#[test]
fn align_columns_are_at_least_min_width_and_padded_by_three() {
    assert_eq!(
        al("NAME\tMODE\nweb\treplicated\n", 10, 3),
        "NAME      MODE\nweb       replicated\n"
    );
    assert_eq!(
        al("NAME\tX\nqueue-worker\ty\n", 10, 3),
        "NAME           X\nqueue-worker   y\n"
    );
    // A cell wider than the minimum less the padding: widest + padding.
    assert_eq!(al("12345678\tx\n", 10, 3), "12345678   x\n");
    assert_eq!(al("1234567\tx\n", 10, 3), "1234567   x\n");
}

#[test]
fn align_last_cell_is_not_aligned_and_blocks_end_at_short_lines() {
    // Line 2 has no tab: it ends the block; lines 3-4 form a new one.
    let t = al("a\tb\nlonger line\nccccccccccccc\td\ne\tf\n", 4, 1);
    assert_eq!(
        t,
        format!(
            "a   b\nlonger line\nccccccccccccc d\ne{}f\n",
            " ".repeat(13)
        )
    );
    // A block of column 1 inside one of column 0 ends where a line has fewer cells.
    assert_eq!(
        al("a\tb\tc\nd\te\nf\tgggg\th\n", 1, 1),
        "a b c\nd e\nf gggg h\n"
    );
}

#[test]
fn align_nested_blocks_and_wide_characters() {
    // Wide characters take two terminal columns.
    let t = al("a\tb\tc\naa\tbbbbbb\n日本\tx\ty\n", 1, 1);
    assert_eq!(t, "a    b c\naa   bbbbbb\n日本 x y\n");
}

#[test]
fn align_keeps_a_missing_trailing_newline_missing() {
    assert_eq!(al("a\tb", 2, 1), "a b");
    assert_eq!(al("", 2, 1), "");
    assert_eq!(al("\n\n", 2, 1), "\n\n");
}

#[test]
fn align_bounds_columns_and_output() {
    let e = align(&format!("{}x\n", "\t".repeat(MAX_COLUMNS)), 1, 1, 1 << 20).unwrap_err();
    assert!(
        e.contains("table line 1 has 1001 columns, more than 1000"),
        "{e}"
    );
    assert!(
        align(
            &format!("{}x\n", "\t".repeat(MAX_COLUMNS - 1)),
            1,
            1,
            1 << 20
        )
        .is_ok()
    );
    // 100 lines padded to 1000 columns: 100 kB of output from 1 kB of text.
    let text = format!("{}\tx\n{}", "y".repeat(997), "\tx\n".repeat(99));
    assert_eq!(align(&text, 10, 3, 200_000).unwrap().len(), 100 * 1002);
    let e = align(&text, 10, 3, 100_000).unwrap_err();
    assert!(e.contains("template output too large"), "{e}");
}
