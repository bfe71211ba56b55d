//! Shell completion through the docker CLI's own path (`docker __complete microscale
//! ...`, the plugin installed in a private config's `cli-plugins`), the scripts of
//! `docker-microscale completion bash|zsh|fish` run in those shells, and the man pages.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::harness::*;

/// The candidates (values only) and the directive of a `__complete` answer. Panics
/// unless the last line is `:N`.
#[track_caller]
fn parse(out: &Output) -> (Vec<String>, u32) {
    let text = stdout(out);
    let mut lines: Vec<&str> = text.lines().collect();
    let last = lines.pop().unwrap_or_default();
    let directive = last
        .strip_prefix(':')
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no :directive last line in {text:?} ({})", stderr(out)));
    let values = lines
        .iter()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    (values, directive)
}

/// `docker __complete microscale ARGS...` (the last arg is the word being completed),
/// against the manager through `DOCKER_HOST`.
fn complete(args: &[&str]) -> (Vec<String>, u32) {
    let mut all = vec!["__complete", "microscale"];
    all.extend_from_slice(args);
    parse(&ok(docker(&all)))
}

#[test]
fn docker_complete_offers_subcommands_flags_and_values() {
    let out = ok(docker(&["__complete", "microscale", ""]));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("status\tList every service")),
        "{text}"
    );
    let (values, directive) = parse(&out);
    for c in [
        "status",
        "provenance",
        "badge",
        "plan",
        "scale",
        "apply",
        "metric",
        "rules",
        "version",
    ] {
        assert!(values.iter().any(|v| v == c), "{c} missing from {values:?}");
    }
    assert!(
        !values
            .iter()
            .any(|v| v.starts_with("__") || v == "completion")
    );
    assert_eq!(directive, 4);

    assert_eq!(
        complete(&["rules", ""]),
        (vec!["check".to_string(), "history".to_string()], 4)
    );
    let (flags, directive) = complete(&["status", "--"]);
    assert!(flags.contains(&"--filter".to_string()) && flags.contains(&"--no-trunc".to_string()));
    assert_eq!(directive, 4);
    let (flags, _) = complete(&["status", "-q", "-"]);
    assert!(!flags.contains(&"--quiet".to_string()) && flags.contains(&"-f".to_string()));
    assert_eq!(
        complete(&["badge", "web", "--kind", ""]),
        (
            ["commit", "version", "license", "source"]
                .map(String::from)
                .to_vec(),
            4
        )
    );
    assert_eq!(
        complete(&["badge", "web", "-o", ""]),
        (vec!["svg".to_string()], 8)
    );
    assert_eq!(
        complete(&["rules", "check", "--rules", ""]),
        (vec!["toml".to_string()], 8)
    );
    assert_eq!(
        complete(&["plan", "--format=j"]),
        (vec!["--format=json".to_string()], 4)
    );
    assert_eq!(
        complete(&["metric", "pro"]),
        (vec!["prometheus://".to_string()], 6)
    );

    // __completeNoDesc reaches the plugin as __complete; descriptions still go away.
    let out = ok(docker(&["__completeNoDesc", "microscale", "sta"]));
    assert_eq!(stdout(&out), "status\n:4\n");
}

#[test]
fn docker_complete_offers_the_swarm_s_service_names() {
    let p = unique("tab");
    let a = TestService::create(&format!("{p}-api"), &["--replicas", "0"]);
    let w = TestService::create(&format!("{p}-web"), &["--replicas", "0"]);
    let both = vec![a.name.clone(), w.name.clone()];
    for cmd in [
        vec!["status"],
        vec!["ls"],
        vec!["provenance"],
        vec!["labels"],
        vec!["badge"],
        vec!["plan"],
        vec!["apply"],
        vec!["rules", "check"],
    ] {
        let mut args = cmd.clone();
        args.push(&p);
        assert_eq!(complete(&args), (both.clone(), 4), "{cmd:?}");
    }
    // Names already given are not offered again; badge takes one service.
    assert_eq!(
        complete(&["status", "-q", &a.name, &p]),
        (vec![w.name.clone()], 4)
    );
    assert_eq!(complete(&["badge", &a.name, &p]), (vec![], 4));
    // scale: SERVICE= without a space after it.
    let target = format!("{}=2", a.name);
    assert_eq!(
        complete(&["scale", "--detach", &target, &p]),
        (vec![format!("{}=", w.name)], 6)
    );
    assert_eq!(
        complete(&["scale", &p]),
        (vec![format!("{}=", a.name), format!("{}=", w.name)], 6)
    );
}

#[test]
fn docker_complete_uses_the_engine_of_the_global_flags() {
    let svc = TestService::create(&unique("tabhost"), &["--replicas", "0"]);
    let host = manager_host();
    let cfg = fresh_config();
    let ctx = unique("tabctx");
    ok(clean("docker", cfg.path())
        .args([
            "context",
            "create",
            &ctx,
            "--docker",
            &format!("host={host}"),
        ])
        .output()
        .unwrap());
    let want = (vec![svc.name.clone()], 4);
    // No DOCKER_HOST: only the flags given to the docker CLI name the engine.
    let run = |args: &[&str]| {
        parse(&ok(clean("docker", cfg.path())
            .args(args)
            .output()
            .unwrap()))
    };
    for args in [
        vec!["-H", &host, "__complete", "microscale", "status", &svc.name],
        vec!["__complete", "-H", &host, "microscale", "status", &svc.name],
        vec![
            "--context",
            &ctx,
            "__complete",
            "microscale",
            "plan",
            &svc.name,
        ],
        vec![
            "__complete",
            "--context",
            &ctx,
            "microscale",
            "provenance",
            &svc.name,
        ],
    ] {
        assert_eq!(run(&args), want, "{args:?}");
    }
    // DOCKER_CONTEXT, as the docker CLI reads it.
    let out = ok(clean("docker", cfg.path())
        .env("DOCKER_CONTEXT", &ctx)
        .args(["__complete", "microscale", "status", &svc.name])
        .output()
        .unwrap());
    assert_eq!(parse(&out), want);
    // Run directly with -H before the command.
    let out = ok(clean(plugin_bin(), cfg.path())
        .args(["__complete", "-H", &host, "status", &svc.name])
        .output()
        .unwrap());
    assert_eq!(parse(&out), want);
    // Another engine: nothing, and no error text on stdout.
    let out = ok(clean("docker", cfg.path())
        .args(["-H", "unix:///nonexistent/microscale.sock"])
        .args(["__complete", "microscale", "status", ""])
        .output()
        .unwrap());
    assert_eq!(stdout(&out), ":4\n");
}

#[test]
fn an_engine_that_never_answers_does_not_hang_tab() {
    let (addr, _listener) = crate::black_hole();
    let start = Instant::now();
    let out = ok(clean("docker", plugin_config())
        .args(["-H", &addr, "__complete", "microscale", "status", ""])
        .output()
        .unwrap());
    let took = start.elapsed();
    assert_eq!(stdout(&out), ":4\n", "{}", stderr(&out));
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(
        took >= Duration::from_millis(1900),
        "gave up before the 2 s limit: {took:?}"
    );
}

/// A directory for PATH holding `docker-microscale` (the binary under test).
fn bin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_bin(), dir.path().join("docker-microscale")).unwrap();
    dir
}

fn path_with(dir: &std::path::Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn completion_scripts_complete_the_binary_in_bash_zsh_and_fish() {
    require("bash", "bash");
    require("zsh", "zsh");
    require("fish", "fish");
    let svc = TestService::create(&unique("tabsh"), &["--replicas", "0"]);
    let bin = bin_dir();
    let shell = |program: &str, script: &str| {
        ok(clean(program, plugin_config())
            .env("PATH", path_with(bin.path()))
            .env("DOCKER_HOST", manager_host())
            .args(["-c", script])
            .output()
            .unwrap())
    };
    // bash: COMPREPLY as the completion function leaves it.
    let bash = |line: &str| {
        let script = format!(
            "source <(docker-microscale completion bash); COMP_LINE='{line}'; \
             COMP_POINT=${{#COMP_LINE}}; _docker_microscale; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        stdout(&shell("bash", &script))
    };
    assert_eq!(bash("docker-microscale sta"), "status\n");
    assert_eq!(
        bash(&format!("docker-microscale status {}", svc.name)),
        format!("{}\n", svc.name)
    );
    assert_eq!(
        bash(&format!("docker-microscale scale {}", svc.name)),
        format!("{}=\n", svc.name)
    );
    // after '=' bash replaces only what follows it
    assert_eq!(bash("docker-microscale status --format=j"), "json\n");
    assert_eq!(bash("docker-microscale metric na"), "nats://\n");

    // fish: `complete -C` prints what fish would offer.
    let fish = |line: &str| {
        let script = format!("docker-microscale completion fish | source; complete -C'{line}'");
        stdout(&shell("fish", &script))
    };
    assert!(fish("docker-microscale sta").starts_with("status\tList every service"));
    assert_eq!(
        fish(&format!("docker-microscale provenance {}", svc.name)),
        format!("{}\n", svc.name)
    );

    // zsh: the completion function with zsh's completion helpers replaced by printers.
    let zsh = |words: &str| {
        let script = format!(
            "compdef() {{ :; }}; _describe() {{ print -rl -- \"${{(@P)4}}\"; }}; \
             _files() {{ print -r -- \"_files $*\"; }}; \
             source <(docker-microscale completion zsh); words=({words}); \
             CURRENT=${{#words}}; _docker_microscale"
        );
        stdout(&shell("zsh", &script))
    };
    assert!(zsh("docker-microscale sta").starts_with("status:List every service"));
    assert_eq!(
        zsh(&format!("docker-microscale scale {}", svc.name)),
        format!("{}=\n", svc.name)
    );
    assert_eq!(
        zsh("docker-microscale badge x -o ''"),
        "_files -g *.(svg)\n"
    );
}

#[test]
fn man_pages_render_with_man_and_list_the_commands() {
    require("man", "man-db");
    let dir = tempfile::tempdir().unwrap();
    let out = ok(clean(plugin_bin(), plugin_config())
        .args(["__man", &dir.path().to_string_lossy()])
        .output()
        .unwrap());
    let written = stdout(&out);
    for page in [
        "docker-microscale.1",
        "docker-microscale-status.1",
        "docker-microscale-scale.1",
        "docker-microscale-rules-check.1",
    ] {
        assert!(written.contains(page), "{page} not written: {written}");
    }
    let man = |page: &str| {
        let out = ok(clean("man", plugin_config())
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat")
            .arg("-l")
            .arg(dir.path().join(page))
            .output()
            .unwrap());
        // man marks bold and underline with backspaces when not on a terminal.
        let text = stdout(&out);
        let mut plain = String::new();
        for c in text.chars() {
            if c == '\u{8}' {
                plain.pop();
            } else {
                plain.push(c);
            }
        }
        plain
    };
    let root = man("docker-microscale.1");
    assert!(root.contains("NAME") && root.contains("COMMANDS"), "{root}");
    for cmd in [
        "status",
        "provenance",
        "badge",
        "plan",
        "scale",
        "apply",
        "metric",
        "rules",
    ] {
        assert!(
            root.contains(&format!("docker-microscale-{cmd}(1)")),
            "{cmd} missing in:\n{root}"
        );
    }
    let status = man("docker-microscale-status.1");
    assert!(
        status.contains("docker microscale status [OPTIONS] [SERVICE...]"),
        "{status}"
    );
    assert!(
        status.contains("--filter") && status.contains("EXAMPLES"),
        "{status}"
    );
    assert!(
        status.contains("docker microscale status --filter mode=global -q"),
        "{status}"
    );
}

/// `install.sh --binary` (the binary under test, no release build) into a fresh HOME,
/// then what a new user does: the man pages, the reference, and the README's
/// completion recipe, with the plugin only in `~/.docker/cli-plugins` (not on PATH).
#[test]
fn install_sh_into_a_fresh_home_then_man_pages_and_completion_work() {
    require("bash", "bash");
    require("man", "man-db");
    let home = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("DOCKER_HOST", manager_host())
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat")
            .env("MANPATH", home.path().join(".local/share/man"))
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let install = repo.join("install.sh");
    let install = install.to_str().unwrap();
    let bin = plugin_bin();
    let out = ok(run("bash", &[install, "--binary", bin.to_str().unwrap()]));
    let said = stdout(&out);
    let plugin = home.path().join(".docker/cli-plugins/docker-microscale");
    assert!(plugin.is_file(), "{said}");
    assert!(said.contains("docker microscale version: "), "{said}");
    let man1 = home.path().join(".local/share/man/man1");
    let man7 = home.path().join(".local/share/man/man7");
    assert!(man1.join("docker-microscale-status.1").is_file(), "{said}");
    assert!(man7.join("docker-microscale-rules.7").is_file(), "{said}");

    // man finds them; backspace overstrikes (bold) taken out.
    let man = |args: &[&str]| {
        let text = stdout(&ok(run("man", args)));
        let mut plain = String::new();
        for c in text.chars() {
            if c == '\u{8}' {
                plain.pop();
            } else {
                plain.push(c);
            }
        }
        plain
    };
    let rules = man(&["7", "docker-microscale-rules"]);
    for key in [
        "microscale.min",
        "microscale.target-utilization",
        "microscale.scale-down.window",
        "microscale.fallback.after",
    ] {
        assert!(
            rules.contains(key),
            "{key} not in man 7 docker-microscale-rules:\n{rules}"
        );
    }
    let root = man(&["docker-microscale"]);
    for want in [
        "ENVIRONMENT",
        "MICROSCALE_TIMEOUT",
        "MICROSCALE_SECRET_DIRS",
        "FILES",
        "docker-microscale-metrics(7)",
    ] {
        assert!(
            root.contains(want),
            "{want} not in man docker-microscale:\n{root}"
        );
    }
    let status = man(&["docker-microscale-status"]);
    assert!(
        status.contains("FIELDS") && status.contains("RuleDesired"),
        "{status}"
    );
    // --help says where the page is.
    let help = stdout(&ok(run("docker", &["microscale", "status", "--help"])));
    assert!(
        help.contains("Manual: 'man docker-microscale-status'"),
        "{help}"
    );

    // Completion: the plugin is not on PATH, so the old recipe fails...
    let old = run(
        "bash",
        &["-c", "source <(docker-microscale completion bash)"],
    );
    assert!(
        stderr(&old).contains("docker-microscale: command not found"),
        "{}",
        stderr(&old)
    );
    // ... and the README's works, by path (~ too) and for service names.
    let svc = TestService::create(&unique("tabinst"), &["--replicas", "0"]);
    let bash = |line: &str| {
        let script = format!(
            "source <(docker microscale completion bash) && COMP_LINE=\"{line}\" && \
             COMP_POINT=${{#COMP_LINE}} && _docker_microscale; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        stdout(&ok(run("bash", &["-c", &script])))
    };
    assert_eq!(
        bash("~/.docker/cli-plugins/docker-microscale sta"),
        "status\n"
    );
    assert_eq!(
        bash(&format!("{} status {}", plugin.display(), svc.name)),
        format!("{}\n", svc.name)
    );

    // --uninstall takes all of it away.
    let out = ok(run("bash", &[install, "--uninstall"]));
    assert!(!plugin.exists(), "{}", stdout(&out));
    let left: Vec<_> = [&man1, &man7]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
