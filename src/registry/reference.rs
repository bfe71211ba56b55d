//! Image references (`busybox`, `host:5000/a/b:t@sha256:...`), parsed and normalised
//! the way docker does (docker/distribution `reference`: `ParseNormalizedNamed`).

use std::fmt;
use std::str::FromStr;

use super::RegistryError;

/// The registry host that Docker Hub references (`docker.io/...`) are fetched from.
pub const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";

/// The key of Docker Hub credentials in the docker config file (`auths`,
/// credential helpers), as written by `docker login`.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// Longest repository name (docker/distribution `NameTotalLengthMax`).
const NAME_MAX: usize = 255;

/// A normalised image reference.
///
/// Parsed with [`str::parse`]: `busybox` is `registry-1.docker.io`,
/// `library/busybox`, tag `latest`; `host:5000/a/b:t@sha256:<hex>` keeps both tag
/// and digest (the digest wins when fetching).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Where the image is fetched from: `registry-1.docker.io` for Docker Hub
    /// (`docker.io`, `index.docker.io`), else `host[:port]` as written.
    pub registry: String,
    /// Repository path, lowercase, e.g. `library/busybox`.
    pub repository: String,
    /// Tag; `latest` when neither tag nor digest is given.
    pub tag: Option<String>,
    /// Manifest digest, `sha256:<64 lowercase hex>`.
    pub digest: Option<String>,
}

impl Reference {
    /// Whether the image is on Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB_REGISTRY
    }

    /// The short form docker prints (`FamiliarString`): `busybox:latest`,
    /// `user/app:1`, `host:5000/a/b:t`, `busybox@sha256:...`.
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_name();
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
        out
    }

    /// The familiar name without tag or digest: `busybox`, `user/app`, `host/a/b`.
    pub fn familiar_name(&self) -> String {
        if self.is_docker_hub() {
            match self.repository.strip_prefix("library/") {
                Some(short) if !short.contains('/') => short.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// What identifies the manifest in `GET /v2/<name>/manifests/<reference>`: the
    /// digest when there is one, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.familiar())
    }
}

impl FromStr for Reference {
    type Err = RegistryError;

    /// Parses `[registry/]repository[:tag][@digest]`.
    ///
    /// The first `/`-separated component is a registry when it contains `.` or
    /// `:`, is `localhost`, or has uppercase letters (as in docker); otherwise the
    /// image is on Docker Hub and one-component names get `library/`.
    ///
    /// # Errors
    /// [`RegistryError::BadReference`] naming the part that is wrong: empty input, an
    /// uppercase or otherwise invalid repository, a bad registry host or port, a tag
    /// that is not `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, a digest that is not
    /// `sha256:<64 lowercase hex>`, or a name over 255 characters.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| RegistryError::BadReference {
            reference: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(bad("it is empty; write e.g. busybox:latest".into()));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains a blank or control character".into()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(parse_digest(d).map_err(bad)?)),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(rest[at + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(tag) = &tag {
            check_tag(tag).map_err(bad)?;
        }
        if name.is_empty() {
            return Err(bad("the repository name is empty".into()));
        }
        let (domain, path) = split_domain(name);
        let domain = match domain {
            Some(d) => {
                check_domain(d).map_err(bad)?;
                d
            }
            None => "docker.io",
        };
        let hub = matches!(
            domain,
            "docker.io" | "index.docker.io" | DOCKER_HUB_REGISTRY
        );
        let repository = if hub && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad(format!("repository name \"{path}\" must be lowercase")));
        }
        check_path(&repository).map_err(bad)?;
        let full_len = domain.len() + 1 + path.len();
        if full_len > NAME_MAX {
            return Err(bad(format!(
                "the name is {full_len} characters long; the limit is {NAME_MAX}"
            )));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry: if hub {
                DOCKER_HUB_REGISTRY.to_string()
            } else {
                domain.to_string()
            },
            repository,
            tag,
            digest,
        })
    }
}

/// Splits the registry host off `name` (docker/distribution `splitDockerDomain`).
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag \"{tag}\" must be 1-128 characters of letters, digits, '_', '.' and '-', not starting with '.' or '-'"
        ))
    }
}

/// `sha256:<64 lowercase hex>`; other algorithms are refused.
pub(crate) fn parse_digest(d: &str) -> Result<String, String> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err(format!("digest \"{d}\" must be sha256:<64 hex digits>"));
    };
    if alg != "sha256" {
        return Err(format!(
            "digest algorithm \"{alg}\" is not supported; use a sha256:<64 hex digits> digest"
        ));
    }
    if hex.len() != 64 || !hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(format!(
            "digest \"{d}\" must be sha256: followed by 64 lowercase hex digits"
        ));
    }
    Ok(d.to_string())
}

/// A registry host: DNS labels or an IPv4 address, or a bracketed IPv6 address,
/// with an optional port.
fn check_domain(d: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err(format!("registry \"{d}\" has an unclosed '['"));
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("registry \"{d}\" is not a valid IPv6 address"));
        }
        match after.strip_prefix(':') {
            Some(p) => ("", Some(p)),
            None if after.is_empty() => ("", None),
            None => return Err(format!("registry \"{d}\" has text after ']'")),
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) || p.parse::<u16>().is_err())
    {
        return Err(format!(
            "registry \"{d}\" has a bad port \"{p}\" (expected 1-65535)"
        ));
    }
    if !d.starts_with('[') {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return Err(format!(
                "registry host \"{host}\" is not a valid host name (letters, digits, '-' and '.')"
            ));
        }
    }
    Ok(())
}

/// Path components: `[a-z0-9]+` separated by `.`, `_`, `__` or runs of `-`.
fn check_path(path: &str) -> Result<(), String> {
    for comp in path.split('/') {
        let ok = !comp.is_empty()
            && comp.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && comp.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && comp
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && separators_ok(comp);
        if !ok {
            return Err(format!(
                "repository component \"{comp}\" in \"{path}\" must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

fn separators_ok(comp: &str) -> bool {
    let bytes = comp.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
        let sep = &comp[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn parts(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = parse(s);
        (r.registry, r.repository, r.tag, r.digest)
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        let hub = DOCKER_HUB_REGISTRY.to_string();
        assert_eq!(
            parts("busybox"),
            (
                hub.clone(),
                "library/busybox".into(),
                Some("latest".into()),
                None
            )
        );
        assert_eq!(parts("docker.io/busybox:1.36").1, "library/busybox");
        assert_eq!(parts("index.docker.io/user/app").0, hub);
        assert_eq!(parts("user/app:v1").1, "user/app");
        assert_eq!(parse("busybox").familiar(), "busybox:latest");
        assert_eq!(parse("docker.io/library/busybox:1").familiar(), "busybox:1");
        assert_eq!(parse("user/app:v1").familiar(), "user/app:v1");
        assert_eq!(parse("library/a/b").familiar(), "library/a/b:latest");
    }

    #[test]
    fn registries_ports_tags_and_digests() {
        let r = parse(&format!("host:5000/a/b:t@{D}"));
        assert_eq!(r.registry, "host:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.familiar(), format!("host:5000/a/b:t@{D}"));
        let r = parse(&format!("busybox@{D}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.familiar(), format!("busybox@{D}"));
        assert_eq!(parse("localhost/x").registry, "localhost");
        assert_eq!(parse("localhost:5000/x:1").registry, "localhost:5000");
        assert_eq!(parse("reg.example.com/x").registry, "reg.example.com");
        assert_eq!(parse("[::1]:5000/x").registry, "[::1]:5000");
        // Not a domain: no '.', ':' and not localhost.
        assert_eq!(parse("myhost/x").registry, DOCKER_HUB_REGISTRY);
        assert_eq!(parse("myhost/x").repository, "myhost/x");
        // Uppercase first component counts as a domain, as in docker.
        assert_eq!(parse("MyHost/x").registry, "MyHost");
        assert_eq!(
            parse("a.b/c__d/e-f/g--h/i.j:1.0-rc_1").repository,
            "c__d/e-f/g--h/i.j"
        );
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        for (input, needle) in [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("busybox:", "tag"),
            ("busybox:-x", "tag"),
            ("busybox:a/b", "port"),
            ("busybox@sha256:abc", "64"),
            ("busybox@md5:abc", "not supported"),
            (
                &format!("busybox@{}", D.to_uppercase().replace("SHA", "sha")),
                "64",
            ),
            ("host:99999/x", "port"),
            ("host:/x", "port"),
            ("a..b/x", "host"),
            ("a/b//c", "component"),
            ("a/-b", "component"),
            ("a/b.-c", "component"),
            ("a/b___c", "component"),
            ("a b", "blank"),
            ("reg.io/", "component"),
        ] {
            match input.parse::<Reference>() {
                Err(RegistryError::BadReference { reference, reason }) => {
                    assert_eq!(reference, input);
                    assert!(reason.contains(needle), "{input}: {reason}");
                }
                other => panic!("{input}: {other:?}"),
            }
        }
        let long = format!("a/{}", "b".repeat(300));
        assert!(long.parse::<Reference>().is_err());
        let tag = format!("a:{}", "t".repeat(129));
        assert!(tag.parse::<Reference>().is_err());
    }
}
