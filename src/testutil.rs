//! Helpers shared by unit tests that start real servers.

/// Fails the test unless `program` (a name on `PATH`, or an absolute path) is
/// installed, naming the Debian `package` that provides it. Tests never skip:
/// `scripts/test` (through `scripts/sandbox`) installs every package they need.
pub fn require_program(program: &str, package: &str) {
    let found = if program.starts_with('/') {
        std::path::Path::new(program).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
    };
    assert!(
        found,
        "{program} is missing: install the Debian package {package} (apt-get install {package}), or run the tests with scripts/test, which installs it"
    );
}

/// A throwaway certificate authority made with `openssl` (Debian package
/// `openssl`) in a directory of the test's, for servers started over TLS.
pub struct TestCa {
    /// The CA certificate (PEM).
    pub cert: std::path::PathBuf,
    key: std::path::PathBuf,
    dir: std::path::PathBuf,
}

/// A certificate `TestCa::issue` made, and its key (both PEM files).
pub struct Issued {
    /// The certificate.
    pub cert: std::path::PathBuf,
    /// Its unencrypted private key.
    pub key: std::path::PathBuf,
}

/// `openssl req` making a self-signed (or, with `-CA`, a CA-signed) certificate and
/// a new P-256 key, valid for two days.
const NEW_CERT: &str = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2";

/// Runs `openssl NEW_CERT ARGS` ([`NEW_CERT`]) in `dir`; a failure fails the test
/// with openssl's stderr.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    require_program("openssl", "openssl");
    let out = std::process::Command::new("openssl")
        .args(NEW_CERT.split_whitespace())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// A new CA named `name` (its files are `name.pem` and `name.key` in `dir`),
    /// valid for two days, with a P-256 key.
    pub fn new(dir: &std::path::Path, name: &str) -> TestCa {
        let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
        openssl(
            dir,
            &[
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                &key,
                "-out",
                &cert,
            ],
        );
        TestCa {
            cert: dir.join(cert),
            key: dir.join(key),
            dir: dir.to_path_buf(),
        }
    }

    /// A certificate signed by this CA for `names` (`DNS:localhost`,
    /// `IP:127.0.0.1`, ...), for server and client use, as `name.pem`/`name.key`.
    pub fn issue(&self, name: &str, names: &[&str]) -> Issued {
        let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
        openssl(
            &self.dir,
            &[
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                &format!("subjectAltName={}", names.join(",")),
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                "-addext",
                "extendedKeyUsage=serverAuth,clientAuth",
                "-CA",
                &self.cert.display().to_string(),
                "-CAkey",
                &self.key.display().to_string(),
                "-keyout",
                &key,
                "-out",
                &cert,
            ],
        );
        Issued {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        }
    }
}
