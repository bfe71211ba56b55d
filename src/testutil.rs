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
