//! `status --watch`: the live view on a real terminal (a tmux pane: `send-keys`,
//! `capture-pane`), and the plain output again at each interval when stdout is a
//! pipe, against the private swarm.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::*;

use crate::testutil::require_program;

/// A tmux server of its own (`tmux -L NAME`), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` in a detached 200x50 session.
    fn start(command: &str) -> Tmux {
        require_program("tmux", "tmux");
        let tmux = Tmux {
            socket: unique("ms-watch"),
        };
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-x",
            "200",
            "-y",
            "50",
            "-s",
            "w",
            "bash",
            "--norc",
            "--noprofile",
            "-c",
            command,
        ]);
        assert!(out.status.success(), "tmux new-session: {}", stderr(&out));
        tmux
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("run tmux")
    }

    /// What the pane shows now.
    fn capture(&self) -> String {
        stdout(&self.run(&["capture-pane", "-p", "-t", "w"]))
    }

    /// A format variable of the pane, e.g. `alternate_on`.
    fn pane(&self, var: &str) -> String {
        stdout(&self.run(&["display-message", "-p", "-t", "w", &format!("#{{{var}}}")]))
            .trim()
            .to_string()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "w"];
        args.extend(keys);
        assert!(self.run(&args).status.success());
    }

    /// Waits until the pane shows what `check` wants; panics with the screen.
    fn wait_for(&self, what: &str, timeout: Duration, check: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.capture();
            if check(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; the pane shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The shell command that runs the watch in the pane, then says how it ended and
/// whether the terminal is back in canonical (not raw) mode.
fn watch_command(args: &str) -> String {
    format!(
        "export DOCKER_HOST={host} DOCKER_CONFIG={cfg} HOME={cfg} TERM=xterm-256color; {bin} status --watch {args}; echo EXITED=$?; stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon; sleep 60",
        host = manager_host(),
        cfg = plugin_config().display(),
        bin = plugin_bin().display(),
    )
}

fn rule_service(redis_port: u16) -> TestService {
    TestService::create(
        &unique("watch-rule"),
        &[
            "--replicas",
            "1",
            "--label",
            "microscale.min=1",
            "--label",
            "microscale.max=5",
            "--label",
            &format!("microscale.metric=redis://127.0.0.1:{redis_port}/0?list=jobs"),
            "--label",
            "microscale.target=10",
        ],
    )
}

#[test]
fn live_view_shows_services_and_sparklines_and_q_restores_the_terminal() {
    let redis = crate::harness::Redis::start();
    let items: Vec<String> = (0..25).map(|i| i.to_string()).collect();
    let mut push = vec!["RPUSH", "jobs"];
    push.extend(items.iter().map(String::as_str));
    redis.cli(&push);
    let svc = rule_service(redis.port);
    let plain = TestService::create(&unique("watch-plain"), &["--replicas", "0"]);
    let tmux = Tmux::start(&watch_command(&format!(
        "--interval 500ms {} {}",
        svc.name, plain.name
    )));
    // After a couple of intervals: the title, the table, and a sparkline row for the
    // rule-managed service with its metric (25 / 10) drawn as bars.
    let screen = tmux.wait_for("the view with sparklines", Duration::from_secs(60), |s| {
        s.lines()
            .any(|l| l.starts_with(&svc.name) && l.contains("25 / 10") && l.contains('█'))
    });
    assert!(
        screen.starts_with("docker microscale status --watch · every 500ms"),
        "{screen}"
    );
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("NAME ") && l.contains("REPLICAS")),
        "{screen}"
    );
    // In a 200-column pane, what an autoscaling user watches is all there.
    let header = screen.lines().find(|l| l.starts_with("NAME ")).unwrap();
    for column in ["MODE", "RULE", "METRIC", "DESIRED", "NODES"] {
        assert!(
            header.split_whitespace().any(|w| w == column),
            "{column} missing at 200 columns:\n{screen}"
        );
    }
    assert!(
        screen.lines().any(|l| l.starts_with(&plain.name)),
        "{screen}"
    );
    assert!(
        screen.contains("METRIC, LAST") && screen.contains("RUNNING, LAST"),
        "{screen}"
    );
    assert_eq!(
        tmux.pane("alternate_on"),
        "1",
        "the view is on the alternate screen"
    );
    assert_eq!(
        tmux.pane("cursor_flag"),
        "0",
        "the cursor is hidden in the view"
    );
    // The metric changes: the sparkline keeps its history and shows the new value.
    redis.cli(&["LTRIM", "jobs", "0", "4"]);
    tmux.wait_for("the new metric", Duration::from_secs(30), |s| {
        s.lines()
            .any(|l| l.starts_with(&svc.name) && l.contains("5 / 10") && l.contains('█'))
    });
    // A removed service leaves the view; the view goes on.
    let plain_name = plain.name.clone();
    drop(plain);
    let screen = tmux.wait_for("the removed service gone", Duration::from_secs(30), |s| {
        !s.lines().any(|l| l.starts_with(&plain_name)) && s.contains(&svc.name)
    });
    // Named on the command line, it is reported in the view, as status reports it.
    assert!(
        screen.contains(&format!("! no such service: {plain_name}")),
        "{screen}"
    );

    tmux.keys(&["q"]);
    let screen = tmux.wait_for("the watch to end", Duration::from_secs(20), |s| {
        s.contains("EXITED=") && s.lines().any(|l| l == "icanon" || l == "-icanon")
    });
    assert!(screen.contains("EXITED=0"), "{screen}");
    assert!(
        screen.lines().any(|l| l == "icanon"),
        "raw mode is off again:\n{screen}"
    );
    assert!(
        !screen.contains("docker microscale status --watch ·"),
        "{screen}"
    );
    assert_eq!(tmux.pane("alternate_on"), "0", "back on the main screen");
    assert_eq!(tmux.pane("cursor_flag"), "1", "the cursor is shown again");
}

#[test]
fn live_view_through_the_docker_cli_ctrl_c_exits_130_and_restores_the_terminal() {
    let svc = TestService::create(&unique("watch-ctrlc"), &["--replicas", "0"]);
    let command = watch_command(&svc.name).replace(
        &format!("{} status --watch", plugin_bin().display()),
        "docker microscale status --watch",
    );
    assert!(command.contains("docker microscale status --watch"));
    let tmux = Tmux::start(&command);
    tmux.wait_for("the view", Duration::from_secs(60), |s| {
        s.lines().any(|l| l.starts_with(&svc.name))
    });
    assert_eq!(tmux.pane("alternate_on"), "1");
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_for("the watch to end", Duration::from_secs(20), |s| {
        s.contains("EXITED=") && s.lines().any(|l| l == "icanon" || l == "-icanon")
    });
    assert!(screen.contains("EXITED=130"), "{screen}");
    assert!(screen.lines().any(|l| l == "icanon"), "{screen}");
    assert_eq!(tmux.pane("alternate_on"), "0");
}

#[test]
fn live_view_follows_a_table_template() {
    let redis = crate::harness::Redis::start();
    redis.cli(&["RPUSH", "jobs", "a", "b", "c"]);
    let svc = rule_service(redis.port);
    let tmux = Tmux::start(&watch_command(&format!(
        "--interval 500ms --format 'table {{{{.Name}}}}\\t{{{{.Metric}}}}\\t{{{{.RuleDesired}}}}' {}",
        svc.name
    )));
    // The template's columns, live: the title, its header, the service's row with
    // its metric (3 / 10), and the sparklines below.
    let screen = tmux.wait_for("the template's table", Duration::from_secs(60), |s| {
        s.lines()
            .any(|l| l.starts_with(&svc.name) && l.contains("3 / 10") && !l.contains('█'))
    });
    assert!(
        screen.starts_with("docker microscale status --watch · every 500ms"),
        "{screen}"
    );
    let header = screen.lines().find(|l| l.starts_with("NAME ")).unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["NAME", "METRIC", "DESIRED"],
        "{screen}"
    );
    assert!(!screen.contains("REPLICAS"), "{screen}");
    assert!(screen.contains("METRIC, LAST"), "{screen}");
    assert_eq!(
        tmux.pane("alternate_on"),
        "1",
        "the live screen, not frames"
    );
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("the watch to end", Duration::from_secs(20), |s| {
        s.contains("EXITED=") && s.lines().any(|l| l == "icanon" || l == "-icanon")
    });
    assert!(screen.contains("EXITED=0"), "{screen}");
    assert_eq!(tmux.pane("alternate_on"), "0");
}

#[test]
fn live_view_left_on_a_template_error_restores_the_terminal() {
    let svc = TestService::create(&unique("watch-tplerr"), &["--replicas", "0"]);
    // The header prints; the first row fails (no 6th down node): a usage error.
    let tmux = Tmux::start(&watch_command(&format!(
        "--format 'table {{{{.Name}}}}\\t{{{{index .DownNodes 5}}}}' {}",
        svc.name
    )));
    let screen = tmux.wait_for("the watch to end", Duration::from_secs(60), |s| {
        s.contains("EXITED=") && s.lines().any(|l| l == "icanon" || l == "-icanon")
    });
    assert!(screen.contains("EXITED=125"), "{screen}");
    assert!(screen.contains("index"), "the error is shown: {screen}");
    assert!(screen.lines().any(|l| l == "icanon"), "{screen}");
    assert!(!screen.contains("q to quit"), "{screen}");
    assert_eq!(tmux.pane("alternate_on"), "0");
    assert_eq!(tmux.pane("cursor_flag"), "1");
}

/// Reads stdout lines of `child` on a thread.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Collects lines until `frames` table headers were seen (each frame starts with
/// one), within `timeout`.
fn read_frames(rx: &mpsc::Receiver<String>, frames: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut lines = vec![];
    let mut seen = 0;
    while seen < frames {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("only {seen} frames within {timeout:?}: {lines:#?}"));
        if line.starts_with("NAME ") {
            seen += 1;
        }
        lines.push(line);
    }
    lines
}

fn terminate(child: &mut std::process::Child) -> Option<i32> {
    // SAFETY: kill(2) on the pid of a child this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    child.wait().unwrap().code()
}

#[test]
fn piped_watch_prints_the_table_again_at_each_interval() {
    let keep = TestService::create(&unique("watch-pipe"), &["--replicas", "0"]);
    let gone = TestService::create(&unique("watch-gone"), &["--replicas", "0"]);
    let mut child = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", manager_host())
        .args([
            "status",
            "--watch",
            "--interval",
            "500ms",
            "--filter",
            &format!("name={}", keep.name),
            "--filter",
            &format!("name={}", gone.name),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let mut first = read_frames(&rx, 2, Duration::from_secs(30));
    first.extend(read_until_blank(&rx));
    // Two plain tables, a blank line between them, no terminal control sequences.
    let tables: Vec<&[String]> = first.split(|l| l.is_empty()).collect();
    assert!(tables.len() >= 2, "{first:#?}");
    for t in &tables[..2] {
        assert!(t[0].starts_with("NAME "), "{first:#?}");
        assert!(t.iter().any(|l| l.starts_with(&keep.name)), "{first:#?}");
        assert!(t.iter().any(|l| l.starts_with(&gone.name)), "{first:#?}");
    }
    assert!(!first.iter().any(|l| l.contains('\u{1b}')), "{first:#?}");
    // A removed service leaves the next frames; the watch goes on.
    drop(gone);
    let start = Instant::now();
    loop {
        // The next header, then that frame's rows.
        read_frames(&rx, 1, Duration::from_secs(30));
        let rows = read_until_blank(&rx);
        if rows.iter().any(|l| l.starts_with(&keep.name))
            && !rows.iter().any(|l| l.contains("watch-gone"))
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{rows:#?}");
    }
    assert_eq!(terminate(&mut child), Some(130), "SIGTERM exits 130");
}

/// Lines up to the next blank line (the end of a frame).
fn read_until_blank(rx: &mpsc::Receiver<String>) -> Vec<String> {
    let mut rows = vec![];
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        if line.is_empty() {
            break;
        }
        rows.push(line);
    }
    rows
}

#[test]
fn piped_watch_keeps_retrying_an_unreachable_engine() {
    let mut child = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["status", "--watch", "--interval", "500ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = vec![];
    while lines
        .iter()
        .filter(|l: &&String| l.contains("trying again in 500ms"))
        .count()
        < 3
    {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the watch stopped reporting: {lines:#?}"));
        lines.push(line);
    }
    assert!(
        lines[0].contains("nonexistent"),
        "the error names the engine: {lines:#?}"
    );
    assert_eq!(child.try_wait().unwrap(), None, "still watching");
    assert_eq!(terminate(&mut child), Some(130));
}

#[test]
fn live_view_shows_an_unreachable_engine_and_keeps_trying() {
    let command = watch_command("--interval 500ms").replace(
        &format!("DOCKER_HOST={}", manager_host()),
        "DOCKER_HOST=unix:///nonexistent/docker.sock",
    );
    let tmux = Tmux::start(&command);
    let screen = tmux.wait_for("the error in the view", Duration::from_secs(30), |s| {
        s.lines()
            .any(|l| l.starts_with("! ") && l.contains("nonexistent"))
    });
    assert!(screen.contains("trying again every 500ms"), "{screen}");
    // Still running two intervals later, on the alternate screen.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(!tmux.capture().contains("EXITED="), "{}", tmux.capture());
    assert_eq!(tmux.pane("alternate_on"), "1");
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("the watch to end", Duration::from_secs(20), |s| {
        s.contains("EXITED=") && s.lines().any(|l| l == "icanon" || l == "-icanon")
    });
    assert!(screen.contains("EXITED=0"), "{screen}");
    assert_eq!(tmux.pane("alternate_on"), "0");
}
