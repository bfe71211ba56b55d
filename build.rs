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
    // Rebuilt when HEAD or the branch it names moves. The paths come from git: in a
    // worktree `.git` is a file, and a path that does not exist would rerun this
    // script, and rebuild the crate, on every build.
    for path in git_paths() {
        println!("cargo:rerun-if-changed={path}");
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=MICROSCALE_GIT_COMMIT={commit}");
}

/// The files that say which commit HEAD is: HEAD itself, the ref it names (when it
/// names one) and `packed-refs`, as paths git resolves (worktrees included). None
/// outside a git checkout.
fn git_paths() -> Vec<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let mut names = vec!["HEAD".to_string(), "packed-refs".to_string()];
    names.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    names
        .iter()
        .filter_map(|n| git(&["rev-parse", "--git-path", n]))
        .filter(|p| Path::new(p).exists())
        .collect()
}
