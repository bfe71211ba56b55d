//! Hostile and careless use of `scripts/sandbox` in multi-node mode: bad node names
//! and options fail with a clear message and change nothing, the fault verbs are
//! idempotent, and `down` leaves nothing behind (network namespaces, veths, the
//! bridge, mounts, cgroups, processes, DIR) after faults or after an `up` killed
//! half-way.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// `scripts/sandbox ARGS` (stdin closed); panics if it runs longer than 2 minutes.
fn sandbox(args: &[&str]) -> Output {
    output_within(
        Command::new(sandbox_script()).args(args),
        Duration::from_secs(120),
    )
    .unwrap_or_else(|| panic!("scripts/sandbox {args:?} did not exit within 2 minutes"))
}

/// What is left on this host of the multi-node sandbox in `dir` that used slot
/// `slot`: its network namespaces, links (bridge, veths), mounts, cgroups (every
/// v1 hierarchy), processes naming `dir`, and `dir` itself. Empty when nothing is.
fn leftovers(dir: &Path, slot: &str) -> Vec<String> {
    let mut left = Vec::new();
    let prefix = format!("msn{slot}");
    let dir_s = format!("{}/", dir.display());
    if let Ok(rd) = std::fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{prefix}n")) {
                left.push(format!("netns {name}"));
            }
        }
    }
    for e in std::fs::read_dir("/sys/class/net").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) {
            left.push(format!("link {name}"));
        }
    }
    for line in std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
    {
        if line.contains(&dir_s) || line.contains(&format!("/run/netns/{prefix}n")) {
            left.push(format!("mount {line}"));
        }
    }
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        if let Ok(rd) = std::fs::read_dir(h.path()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("microscale-{prefix}n")) {
                    left.push(format!("cgroup {}", e.path().display()));
                }
            }
        }
    }
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(cmd) = std::fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&dir_s) {
            left.push(format!("process {pid}: {cmd}"));
        }
    }
    if dir.exists() {
        left.push(format!("directory {}", dir.display()));
    }
    left
}

/// `scripts/sandbox down --dir DIR` succeeds and leaves nothing of slot `slot`.
#[track_caller]
fn down_leaves_nothing(dir: &Path, slot: &str, case: &str) {
    let d = dir.to_str().unwrap();
    let out = sandbox(&["down", "--dir", d]);
    assert!(
        out.status.success(),
        "{case}: down failed: {}",
        stderr(&out)
    );
    let left = leftovers(dir, slot);
    assert!(
        left.is_empty(),
        "{case}: down left behind:\n{}\n(down said: {})",
        left.join("\n"),
        stderr(&out)
    );
}

/// Bad node names (outside the sandbox's, a path, a shell word, a glob pattern,
/// two words, an escape sequence, empty) make every fault verb fail with a
/// message naming the node list, with the name shown without control characters,
/// and change nothing; the verbs are idempotent (kill twice, thaw without
/// freeze, heal without cut); bad `up` options fail before anything is made; `up`
/// again is a no-op, and with other options does not touch a running sandbox; a
/// verb on a sandbox that is not there, or not multi-node, says so.
#[test]
fn sandbox_refuses_bad_names_and_options_and_changes_nothing() {
    let c = Cluster::up(2, 1);
    let dir = c.dir().to_str().unwrap().to_string();
    let pid1 = c.engine_pid("n1").expect("n1's dockerd");

    for verb in ["kill", "restart", "freeze", "thaw", "cut", "heal", "exec"] {
        for name in [
            "n0",
            "n3",
            "n9",
            "../n1",
            "n1;rm",
            "*",
            "n?",
            "n[12]",
            "n1 n2",
            " n1",
            "n1\x1b[31m",
            "N1",
        ] {
            let mut args = vec![verb, name, "--dir", &dir];
            if verb == "exec" {
                args.push("true");
            }
            let out = sandbox(&args);
            let err = stderr(&out);
            assert!(!out.status.success(), "{verb} {name:?}: accepted: {err}");
            assert!(
                err.contains("unknown node") && err.contains("this sandbox has: n1 n2"),
                "{verb} {name:?}: {err}"
            );
            assert!(
                !err.contains('\x1b'),
                "{verb} {name:?}: raw escape in {err:?}"
            );
        }
        let out = sandbox(&[verb, "", "--dir", &dir]);
        assert!(!out.status.success(), "{verb} '': accepted");
        assert!(
            stderr(&out).contains("needs a node name"),
            "{}",
            stderr(&out)
        );
    }
    // Nothing changed: both engines answer, n1's is the same process, no link cut.
    for n in ["n1", "n2"] {
        assert!(c.answers(n, Duration::from_secs(10)), "{n} does not answer");
    }
    assert_eq!(c.engine_pid("n1"), Some(pid1), "n1's dockerd was replaced");
    let st = stdout(&ok(sandbox(&["status", "--dir", &dir])));
    assert_eq!(st.matches("THAWED   up").count(), 2, "{st}");

    // Idempotent verbs.
    ok(sandbox(&["thaw", "n1", "--dir", &dir]));
    ok(sandbox(&["heal", "n1", "--dir", &dir]));
    assert_eq!(c.engine_pid("n1"), Some(pid1));
    ok(sandbox(&["kill", "n2", "--dir", &dir]));
    ok(sandbox(&["kill", "n2", "--dir", &dir]));
    assert_eq!(c.engine_pid("n2"), None, "n2 still runs after kill");
    ok(sandbox(&["restart", "n2", "--dir", &dir]));
    assert!(c.answers("n2", Duration::from_secs(10)));

    // `up` again with the same options: says so, changes nothing.
    let out = ok(sandbox(&[
        "up",
        "--nodes",
        "2",
        "--managers",
        "1",
        "--dir",
        &dir,
    ]));
    assert!(stderr(&out).contains("is already up"), "{}", stderr(&out));
    // It prints what a user's shell needs (DOCKER_HOST: n1); `env --test` the
    // harness's variables.
    assert!(
        stdout(&out).contains(&format!("export DOCKER_HOST=unix://{dir}/n1/docker.sock"))
            && !stdout(&out).contains("MICROSCALE_"),
        "{}",
        stdout(&out)
    );
    let test_env = ok(sandbox(&["env", "--test", "--dir", &dir]));
    assert!(
        stdout(&test_env).contains("MICROSCALE_NODES=\"n1 n2\""),
        "{}",
        stdout(&test_env)
    );
    assert_eq!(c.engine_pid("n1"), Some(pid1), "up replaced n1's dockerd");

    // `up` with other options fails and leaves the running sandbox alone.
    for args in [
        vec!["up", "--nodes", "3", "--dir", &dir],
        vec!["up", "--dir", &dir],
    ] {
        let out = sandbox(&args);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(
            stderr(&out).contains("is up with other options"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(c.engine_pid("n1"), Some(pid1), "up replaced n1's dockerd");

    // Bad `up` options: a clear error, and no DIR made.
    let fresh = format!("{dir}-never");
    let long = format!("/tmp/{}", "x".repeat(70));
    for (args, says) in [
        (
            vec!["up", "--nodes", "1", "--dir", &fresh],
            "--nodes must be between 2 and 9 (got 1)",
        ),
        (
            vec!["up", "--nodes", "10", "--dir", &fresh],
            "--nodes needs a number from 2 to 9",
        ),
        (vec!["up", "--nodes", "x;y", "--dir", &fresh], "(got 'x?y')"),
        (
            vec!["up", "--nodes", "3", "--managers", "0", "--dir", &fresh],
            "--managers needs a number from 1 to 9",
        ),
        (
            vec!["up", "--nodes", "5", "--managers", "6", "--dir", &fresh],
            "--managers must be between 1 and --nodes (5)",
        ),
        (
            vec!["up", "--managers", "2", "--dir", &fresh],
            "--managers needs --nodes",
        ),
        (
            vec!["up", "--nodes", "2", "--with-worker", "--dir", &fresh],
            "single-host options",
        ),
        (
            vec!["up", "--nodes", "2", "--dir", "/tmp/msn with space"],
            "DIR must be a plain path",
        ),
        (
            vec!["up", "--nodes", "2", "--dir", &long],
            "DIR is too long",
        ),
        (
            vec!["kill", "n1", "--nodes", "2", "--dir", &fresh],
            "is an option of up only",
        ),
    ] {
        let out = sandbox(&args);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    for d in [fresh.as_str(), "/tmp/msn with space", long.as_str()] {
        assert!(!Path::new(d).exists(), "{d} was made");
    }

    // Verbs on a sandbox that is not there, or that is a single-host one (a
    // directory marked as a sandbox, without the multi-node files).
    let out = sandbox(&["kill", "n1", "--dir", &fresh]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no sandbox in"), "{}", stderr(&out));
    // A new user who forgot --dir is told where a sandbox elsewhere is named.
    assert!(
        stderr(&out).contains("--dir DIR or MICROSCALE_SANDBOX_DIR"),
        "{}",
        stderr(&out)
    );
    let single = tempfile::Builder::new()
        .prefix("mst.")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::write(single.path().join(".microscale-sandbox"), "").unwrap();
    for verb in ["kill", "freeze", "cut", "restart"] {
        let out = sandbox(&[verb, "n1", "--dir", single.path().to_str().unwrap()]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("is not a multi-node sandbox"),
            "{verb}: {}",
            stderr(&out)
        );
    }
}

/// `down` leaves nothing behind: after a node was frozen, another cut off and
/// frozen with a process of the tests in its namespace; after an `up` killed
/// with SIGKILL at several points (its engines, half-made network and cgroups
/// left running); and after an `up` killed between making its bridge and naming
/// it (the bridge's alias marks whose it is).
#[test]
fn down_leaves_nothing_after_faults_or_a_killed_up() {
    // Faults, then down.
    let (dir, slot) = {
        let c = Cluster::up(2, 1);
        let dir = c.dir().to_path_buf();
        let slot = std::fs::read_to_string(dir.join("slot")).unwrap();
        let slot = slot.trim().to_string();
        let mut sleeper = Command::new(sandbox_script());
        sleeper
            .args(["exec", "n2", "--dir", dir.to_str().unwrap(), "--"])
            .args(["/bin/busybox", "sleep", "1000"])
            .stdin(Stdio::null());
        let mut sleeper = sleeper.spawn().unwrap();
        // A container that docker paused sits in a frozen cgroup of its own: a
        // frozen process does not die of SIGKILL, so down must thaw it (it once
        // stayed in D state and kept the slot's cgroups busy for good).
        let image = std::env::var("MICROSCALE_TEST_IMAGE")
            .unwrap_or_else(|_| "microscale-test/busybox:1".into());
        let run = c.docker(
            "n2",
            &[
                "run",
                "-d",
                "--network",
                "none",
                &image,
                "/bin/busybox",
                "sleep",
                "1000",
            ],
        );
        assert!(run.status.success(), "docker run on n2: {}", stderr(&run));
        let id = String::from_utf8_lossy(&run.stdout).trim().to_string();
        let paused = c.docker("n2", &["pause", &id]);
        assert!(paused.status.success(), "docker pause: {}", stderr(&paused));
        c.freeze("n1");
        c.cut("n2");
        c.freeze("n2");
        down_leaves_nothing(&dir, &slot, "frozen and cut nodes, a paused container");
        let status = sleeper.wait().unwrap();
        assert!(!status.success(), "the process on n2 outlived down");
        (dir, slot)
        // Drop: down again, on nothing.
    };
    assert!(leftovers(&dir, &slot).is_empty());

    // `up` killed half-way (only the script: what it started lives on).
    let _lock = exclusive_cluster();
    for delay in [400u64, 1200, 2500] {
        let dir = tempfile::Builder::new()
            .prefix("msn.")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let mut up = Command::new(sandbox_script());
        up.args(["up", "--nodes", "2", "--dir", dir.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut up = up.spawn().unwrap();
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = up.kill(); // SIGKILL
        let _ = up.wait();
        // Before it picks a slot, up has made nothing but DIR's files.
        let slot = std::fs::read_to_string(dir.join("slot")).unwrap_or_default();
        let slot = slot.trim().to_string();
        let slot = if slot.is_empty() { "-" } else { slot.as_str() };
        down_leaves_nothing(
            &dir,
            slot,
            &format!("up killed after {:?} (slot {slot})", t0.elapsed()),
        );
    }

    // `up` killed between `ip link add` of the bridge and setting its alias.
    let dir = tempfile::Builder::new()
        .prefix("msn.")
        .tempdir_in("/tmp")
        .unwrap()
        .keep();
    let slot = (1..=8)
        .find(|s| !Path::new(&format!("/sys/class/net/msn{s}br")).exists())
        .expect("a free slot")
        .to_string();
    std::fs::write(dir.join(".microscale-sandbox"), "").unwrap();
    std::fs::write(dir.join("slot"), format!("{slot}\n")).unwrap();
    std::fs::write(dir.join("nodes"), "n1 n2\n").unwrap();
    std::fs::write(dir.join("bridge-pending"), "").unwrap();
    let br = format!("msn{slot}br");
    ok(Command::new("ip")
        .args(["link", "add", &br, "type", "bridge"])
        .output()
        .unwrap());
    down_leaves_nothing(&dir, &slot, "bridge made, alias not set");
}

/// Tears the sandbox in a directory down when dropped (also when the test panics).
struct DownOnDrop(std::path::PathBuf);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = sandbox(&["down", "--dir", self.0.to_str().unwrap()]);
    }
}

/// `up --nodes N` on the directory of a running single-host sandbox fails (other
/// options) and leaves it running: it used to take the single-host sandbox for
/// leftovers and tear it down.
#[test]
fn up_of_the_other_mode_leaves_a_running_single_host_sandbox_alone() {
    let _lock = exclusive_cluster();
    let dir = tempfile::Builder::new()
        .prefix("mst.")
        .tempdir_in("/tmp")
        .unwrap()
        .keep();
    let guard = DownOnDrop(dir.clone());
    let d = dir.to_str().unwrap();
    let mut up = Command::new(sandbox_script());
    up.env("MICROSCALE_SANDBOX_OWNER", std::process::id().to_string())
        .args(["up", "--bare", "--dir", d]);
    let out = output_within(&mut up, Duration::from_secs(300)).expect("up within 5 minutes");
    ok(out);
    let pid = std::fs::read_to_string(dir.join("m/dockerd.pid")).unwrap();
    let out = sandbox(&["up", "--nodes", "2", "--dir", d]);
    assert!(!out.status.success(), "up --nodes 2 accepted");
    assert!(
        stderr(&out).contains("is up with other options (bare=1 worker=0 plain=0)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("m/dockerd.pid")).unwrap(),
        pid,
        "the single-host manager was replaced"
    );
    let st = sandbox(&["status", "--dir", d]);
    assert!(st.status.success(), "status: {}", stdout(&st));
    assert!(stdout(&st).contains("manager  running"), "{}", stdout(&st));
    drop(guard);
    assert!(!dir.exists(), "down left {d}");
}
