//! Build-time check: `plugin-metadata/metadata.json` is the single source of the
//! plugin metadata, and its `Version` must equal the crate version.

use std::{env, fs, path::Path, process::Command};

fn main() {
    let path = Path::new("plugin-metadata/metadata.json");
    println!("cargo:rerun-if-changed={}", path.display());
    let text = fs::read_to_string(path).expect("read plugin-metadata/metadata.json");
    let version = env::var("CARGO_PKG_VERSION").expect("CARGO_PKG_VERSION");
    let wanted = format!("\"Version\": \"{version}\"");
    if !text.contains(&wanted) {
        panic!(
            "plugin-metadata/metadata.json must contain {wanted} (the crate version from Cargo.toml)"
        );
    }
    // The commit the binary was built from, shown by `docker microscale version`.
    println!("cargo:rerun-if-changed=.git/HEAD");
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=MICROSCALE_GIT_COMMIT={commit}");
}
