//! Image platforms (`linux/arm64/v8`) and how they are matched against the entries of
//! an image index (OCI image-spec `image-index.md`, field `platform`).

use std::fmt;

/// An OCI platform: `os`, `architecture` and optional `variant`, in the GOOS/GOARCH
/// spelling that image indexes use (`linux`, `amd64`, `arm64`, `arm` + `v7`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, `windows`, ...
    pub os: String,
    /// `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`, ...
    pub architecture: String,
    /// CPU variant: `v8` for arm64, `v5`/`v6`/`v7` for arm; `None` when not given.
    pub variant: Option<String>,
}

impl Platform {
    /// A platform from already-normalised parts (`"linux", "arm64", Some("v8")`).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
        }
    }

    /// The platform of a swarm node, from the Engine API `GET /nodes` field
    /// `Description.Platform` (`OS` and `Architecture`, which is `uname -m`).
    ///
    /// Normalised as containerd's `platforms.Normalize`: `x86_64`/`x86-64` → `amd64`,
    /// `aarch64` → `arm64` variant `v8`, `armv7l`/`armhf` → `arm` `v7`,
    /// `armv6l`/`armel` → `arm` `v6`, `armv5tel` → `arm` `v5`, `i386`/`i686` → `386`,
    /// `OS` lowercased (`macos` → `darwin`). Anything else is kept, lowercased.
    pub fn from_node(os: &str, arch: &str) -> Platform {
        let os = match os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_string(),
            other => other.to_string(),
        };
        let arch = arch.to_ascii_lowercase();
        let (architecture, variant) = match arch.as_str() {
            "x86_64" | "x86-64" | "amd64" => ("amd64", None),
            "i386" | "i486" | "i586" | "i686" | "386" => ("386", None),
            "aarch64" | "arm64" | "armv8" | "armv8l" => ("arm64", Some("v8")),
            "armhf" | "armv7" | "armv7l" | "arm" => ("arm", Some("v7")),
            "armel" | "armv6" | "armv6l" => ("arm", Some("v6")),
            "armv5" | "armv5l" | "armv5tel" | "armv5tejl" => ("arm", Some("v5")),
            "ppc64el" => ("ppc64le", None),
            other => (other, None),
        };
        Platform::new(&os, architecture, variant)
    }

    /// Whether an index entry's platform (`os`, `architecture`, `variant`) is this
    /// one. The variant is compared only when this platform has one; the defaults
    /// count as equal to no variant (`arm64` = `arm64/v8`, `arm` = `arm/v7`,
    /// `amd64` = `amd64/v1`), as containerd's matcher does.
    pub fn matches(&self, other: &Platform) -> bool {
        if self.os != other.os || self.architecture != other.architecture {
            return false;
        }
        match &self.variant {
            None => true,
            Some(v) => {
                let default = default_variant(&self.architecture);
                let norm = |x: Option<&str>| -> Option<String> {
                    match x {
                        None => default.map(str::to_string),
                        Some(x) => Some(x.to_string()),
                    }
                };
                norm(Some(v)) == norm(other.variant.as_deref())
            }
        }
    }
}

fn default_variant(arch: &str) -> Option<&'static str> {
    match arch {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        "amd64" => Some("v1"),
        _ => None,
    }
}

impl fmt::Display for Platform {
    /// `os/architecture[/variant]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_platforms_are_normalised() {
        for (os, arch, want) in [
            ("linux", "x86_64", "linux/amd64"),
            ("Linux", "aarch64", "linux/arm64/v8"),
            ("linux", "armv7l", "linux/arm/v7"),
            ("linux", "armv6l", "linux/arm/v6"),
            ("linux", "armhf", "linux/arm/v7"),
            ("linux", "i686", "linux/386"),
            ("linux", "s390x", "linux/s390x"),
            ("linux", "ppc64le", "linux/ppc64le"),
            ("windows", "x86_64", "windows/amd64"),
        ] {
            assert_eq!(Platform::from_node(os, arch).to_string(), want, "{arch}");
        }
    }

    #[test]
    fn matching_treats_default_variants_as_equal() {
        let node = Platform::from_node("linux", "aarch64");
        assert!(node.matches(&Platform::new("linux", "arm64", None)));
        assert!(node.matches(&Platform::new("linux", "arm64", Some("v8"))));
        assert!(!node.matches(&Platform::new("linux", "amd64", None)));
        let v6 = Platform::from_node("linux", "armv6l");
        assert!(!v6.matches(&Platform::new("linux", "arm", Some("v7"))));
        assert!(!v6.matches(&Platform::new("linux", "arm", None)));
        assert!(Platform::new("linux", "arm", None).matches(&Platform::new(
            "linux",
            "arm",
            Some("v6")
        )));
    }
}
