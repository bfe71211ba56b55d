//! `ssh://` engines, through a real sshd on loopback: the plugin runs
//! `ssh ... -- HOST docker --host=unix://SOCKET system dial-stdio`, as the docker CLI
//! does, and reads the private swarm through it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// A private sshd on 127.0.0.1 that accepts one generated key for root, and a
/// directory with an `ssh` wrapper that uses that key. Killed when dropped.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    fn start() -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "/usr/sbin/sshd is missing: scripts/sandbox installs openssh-server"
        );
        let dir = tempfile::Builder::new()
            .prefix("mssh")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        for key in ["host_key", "client_key"] {
            ok(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key))
                .output()
                .unwrap());
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = |f: &str| d.join(f).display().to_string();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n\
                 AuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nStrictModes no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 LogLevel ERROR\n",
                p("host_key"),
                p("sshd.pid"),
                p("authorized_keys")
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("ssh_config"),
            format!(
                "Host *\n  IdentityFile {}\n  StrictHostKeyChecking no\n  \
                 UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n",
                p("client_key")
            ),
        )
        .unwrap();
        let bin = d.join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(
            bin.join("ssh"),
            format!(
                "#!/bin/sh\nexec /usr/bin/ssh -F {} \"$@\"\n",
                p("ssh_config")
            ),
        )
        .unwrap();
        ok(Command::new("chmod")
            .args(["+x"])
            .arg(bin.join("ssh"))
            .output()
            .unwrap());
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sshd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd { child, port, dir }
    }

    /// PATH with the wrapper first.
    fn path(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ssh_engines_work_like_in_the_docker_cli() {
    let sshd = Sshd::start();
    assert!(sshd.bin_dir().join("ssh").exists());
    let svc = TestService::create(&unique("ssh"), &["--replicas", "0"]);
    let socket = manager_host().trim_start_matches("unix://").to_string();
    let url = format!("ssh://root@127.0.0.1:{}{socket}", sshd.port);

    // -H ssh://..., plugin run directly.
    let out = ok(clean(plugin_bin(), plugin_config())
        .env("PATH", sshd.path())
        .args(["-H", &url, "status", "-q", &svc.name])
        .output()
        .unwrap());
    assert_eq!(stdout(&out).trim(), &svc.id[..12]);

    // A context with an ssh endpoint, through the docker CLI.
    let cfg = fresh_config();
    let host = format!("host={url}");
    ok(clean("docker", cfg.path())
        .args(["context", "create", "viassh", "--docker", &host])
        .output()
        .unwrap());
    let out = ok(clean("docker", cfg.path())
        .env("PATH", sshd.path())
        .args([
            "--context",
            "viassh",
            "microscale",
            "status",
            "-q",
            &svc.name,
        ])
        .output()
        .unwrap());
    assert_eq!(stdout(&out).trim(), &svc.id[..12]);

    // A refused login says what to check.
    let out = clean(plugin_bin(), plugin_config())
        .env("PATH", sshd.path())
        .args([
            "-H",
            &format!("ssh://nobody@127.0.0.1:{}", sshd.port),
            "status",
        ])
        .output()
        .unwrap();
    fails(&out, 1, "ssh HOST docker version");
}
