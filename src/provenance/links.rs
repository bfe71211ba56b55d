//! Links from a source repository URL and a revision to the exact commit.
//!
//! Accepted repository forms: `https://host[:port]/path`, `http://…`, `git+https://…`,
//! `ssh://[user@]host[:port]/path`, `git://host/path` and scp-like `user@host:path`
//! (`git@github.com:org/repo.git`). Credentials in the URL are dropped, where a
//! person meant them to end ([`crate::edge::redact::split_userinfo`], the decision the
//! masking uses too): nothing parsed here ever carries a user name or password, and
//! `https://ci:1234/5678@gitlab.com/g` is on gitlab.com. Pure: no I/O.

use serde::Serialize;

/// The code host family, which decides the shape of a commit URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Forge {
    /// github.com and GitHub Enterprise (`github.` in the host name):
    /// `/{owner}/{repo}/commit/{sha}`, `/tree/{ref}`.
    GitHub,
    /// gitlab.com and self-hosted GitLab (`gitlab` in the host name), with subgroups:
    /// `/{group}/{subgroup…}/{project}/-/commit/{sha}`, `/-/tree/{ref}`.
    GitLab,
    /// bitbucket.org: `/{workspace}/{repo}/commits/{sha}`, `/src/{ref}`.
    Bitbucket,
    /// Gitea, Forgejo and Codeberg (`codeberg.org`, `gitea`/`forgejo` in the host name):
    /// `/{owner}/{repo}/commit/{sha}`, `/src/tag/{ref}` or `/src/branch/{ref}`.
    Gitea,
}

/// A source repository, credentials removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// Host name, lower case, without port.
    pub host: String,
    /// Port of an `http(s)` URL when it is not the default (the web UI's port); ssh
    /// ports are dropped because the web UI does not use them.
    pub web_port: Option<u16>,
    /// Path segments, `.git` removed from the last one.
    pub path: Vec<String>,
    /// Whether the URL was plain `http://` (the web link then keeps `http`).
    pub insecure_http: bool,
}

impl Repository {
    /// Parses a repository URL in any accepted form; `None` when it is not one (no
    /// host, no path, whitespace or control characters, or an unknown scheme).
    pub fn parse(url: &str) -> Option<Repository> {
        let url = url.trim();
        // The credentials, as a person meant them (the same decision as the masking:
        // `https://ci:1234/5678@gitlab.com/g` is on gitlab.com), are dropped first;
        // a password may hold blanks, the rest may not.
        let stripped;
        let url = match url.find("://") {
            Some(i) => match crate::edge::redact::split_userinfo(&url[i + 3..]) {
                Some((_, host)) => {
                    stripped = format!("{}{}", &url[..i + 3], &url[i + 3 + host..]);
                    stripped.as_str()
                }
                None => url,
            },
            None => url,
        };
        if url.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        let lower = url.to_ascii_lowercase();
        let (authority, path, http, insecure) = if let Some(i) = lower.find("://") {
            let scheme = &lower[..i];
            let rest = &url[i + 3..];
            let (http, insecure) = match scheme {
                "https" | "git+https" => (true, false),
                "http" | "git+http" => (true, true),
                "ssh" | "git+ssh" | "git" => (false, false),
                _ => return None,
            };
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let path = rest[end..].split(['?', '#']).next().unwrap_or("");
            (&rest[..end], path.to_string(), http, insecure)
        } else {
            // scp-like: [user@]host:path (no scheme; a ':' before any '/')
            let colon = url.find(':')?;
            // the host of an scp-like address has a dot (or is localhost): `a:b` alone
            // is no repository
            let host = url[..colon].rsplit('@').next().unwrap_or("");
            if url[..colon].contains('/') || !(host.contains('.') || host == "localhost") {
                return None;
            }
            (&url[..colon], url[colon + 1..].to_string(), false, false)
        };
        let host_port = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = match host_port.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                if h.starts_with('[') && !h.ends_with(']') {
                    (host_port, None)
                } else {
                    (h, Some(p.parse::<u16>().ok()?))
                }
            }
            _ => (host_port, None),
        };
        let host = host.to_ascii_lowercase();
        let host_ok = !host.is_empty()
            && host.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':')
            });
        if !host_ok {
            return None;
        }
        let mut path: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(last) = path.last_mut()
            && let Some(stripped) = last.strip_suffix(".git")
        {
            *last = stripped.to_string();
        }
        path.retain(|s| !s.is_empty());
        let segment_ok = |s: &String| {
            s != ".."
                && s != "."
                && s.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        || matches!(c, '.' | '-' | '_' | '~' | '%' | '+' | '@')
                })
        };
        if path.is_empty() || !path.iter().all(segment_ok) {
            return None;
        }
        let default_port = if insecure { 80 } else { 443 };
        let web_port = if http {
            port.filter(|p| *p != default_port)
        } else {
            None
        };
        Some(Repository {
            host,
            web_port,
            path,
            insecure_http: insecure,
        })
    }

    /// The code host family, from the host name.
    pub fn forge(&self) -> Option<Forge> {
        let h = self.host.as_str();
        if h == "github.com" || h.starts_with("github.") {
            Some(Forge::GitHub)
        } else if h == "gitlab.com" || h.split(['.', '-']).any(|p| p == "gitlab") {
            Some(Forge::GitLab)
        } else if h == "bitbucket.org" {
            Some(Forge::Bitbucket)
        } else if h == "codeberg.org"
            || h == "gitea.com"
            || h.split(['.', '-']).any(|p| p == "gitea" || p == "forgejo")
        {
            Some(Forge::Gitea)
        } else {
            None
        }
    }

    /// The repository's own path: for GitHub, Bitbucket and Gitea the first two
    /// segments (`owner/repo`, so a URL to a subdirectory still names the repository);
    /// for GitLab everything before a `/-/` segment (subgroups kept); otherwise all.
    fn repo_path(&self) -> Vec<&str> {
        let all: Vec<&str> = self.path.iter().map(String::as_str).collect();
        match self.forge() {
            Some(Forge::GitHub | Forge::Bitbucket | Forge::Gitea) => {
                all.into_iter().take(2).collect()
            }
            Some(Forge::GitLab) => all.into_iter().take_while(|s| *s != "-").collect(),
            None => all,
        }
    }

    /// The repository's web URL: `https://host[:port]/path`, no credentials, no `.git`.
    pub fn web_url(&self) -> String {
        let scheme = if self.insecure_http { "http" } else { "https" };
        let port = self.web_port.map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{scheme}://{}{port}/{}",
            self.host,
            self.repo_path().join("/")
        )
    }

    /// Short display form: `host/path` (what `status` shows in SOURCE).
    pub fn short(&self) -> String {
        format!("{}/{}", self.host, self.repo_path().join("/"))
    }

    /// Same repository as `other` (host and repository path, case-insensitive).
    pub fn same_repository(&self, other: &Repository) -> bool {
        self.host == other.host
            && self
                .repo_path()
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .eq(other.repo_path().iter().map(|s| s.to_ascii_lowercase()))
    }

    /// The web URL of `revision` on a known forge: a commit page for a commit id
    /// (7 to 64 hex digits), a tree page for another ref (tag or branch). `None` for an
    /// unknown host or a revision that is not safe in a URL path.
    pub fn revision_url(&self, revision: &str) -> Option<String> {
        let forge = self.forge()?;
        let rev = revision.trim();
        let safe = !rev.is_empty()
            && rev.len() <= 255
            && rev
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '+'))
            && !rev
                .split('/')
                .any(|s| s.is_empty() || s == ".." || s == ".");
        if !safe {
            return None;
        }
        let is_commit = (7..=64).contains(&rev.len()) && rev.bytes().all(|c| c.is_ascii_hexdigit());
        let base = self.web_url();
        Some(match (forge, is_commit) {
            (Forge::GitHub, true) => format!("{base}/commit/{rev}"),
            (Forge::GitHub, false) => format!("{base}/tree/{rev}"),
            (Forge::GitLab, true) => format!("{base}/-/commit/{rev}"),
            (Forge::GitLab, false) => format!("{base}/-/tree/{rev}"),
            (Forge::Bitbucket, true) => format!("{base}/commits/{rev}"),
            (Forge::Bitbucket, false) => format!("{base}/src/{rev}"),
            (Forge::Gitea, true) => format!("{base}/commit/{rev}"),
            (Forge::Gitea, false) if looks_like_tag(rev) => format!("{base}/src/tag/{rev}"),
            (Forge::Gitea, false) => format!("{base}/src/branch/{rev}"),
        })
    }
}

/// `v1.2`, `1.2.3`, `v2`: a ref that reads as a version tag.
fn looks_like_tag(rev: &str) -> bool {
    let r = rev.strip_prefix(['v', 'V']).unwrap_or(rev);
    r.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    /// The commit page on a known forge, else the plain web URL.
    fn source_link(source: &str, revision: Option<&str>) -> Option<String> {
        let repo = Repository::parse(source)?;
        revision
            .and_then(|r| repo.revision_url(r))
            .or_else(|| Some(repo.web_url()))
    }

    fn link(src: &str, rev: &str) -> Option<String> {
        Repository::parse(src).and_then(|r| r.revision_url(rev))
    }

    #[test]
    fn github_forms() {
        let want = Some(format!("https://github.com/org/repo/commit/{SHA}"));
        for src in [
            "https://github.com/org/repo",
            "https://github.com/org/repo.git",
            "https://github.com/org/repo/",
            "git+https://github.com/org/repo.git",
            "ssh://git@github.com/org/repo.git",
            "ssh://git@github.com:22/org/repo.git",
            "git@github.com:org/repo.git",
            "github.com:org/repo",
            "git://github.com/org/repo",
            "https://user:s3cret@github.com/org/repo.git",
            "https://x-access-token:ghp_abc@github.com/org/repo",
            "https://github.com/org/repo/tree/main/subdir",
            "HTTPS://GitHub.com/org/repo",
        ] {
            assert_eq!(link(src, SHA), want, "{src}");
        }
        assert_eq!(
            link("https://github.com/org/repo", "v1.2.3").unwrap(),
            "https://github.com/org/repo/tree/v1.2.3"
        );
    }

    #[test]
    fn gitlab_with_subgroups() {
        assert_eq!(
            link(
                "git@gitlab.com:group/sub/deeper/project.git",
                "89abcdef0123"
            )
            .unwrap(),
            "https://gitlab.com/group/sub/deeper/project/-/commit/89abcdef0123"
        );
        assert_eq!(
            link("https://gitlab.example.com:8443/g/p/-/tree/main", SHA).unwrap(),
            format!("https://gitlab.example.com:8443/g/p/-/commit/{SHA}")
        );
        assert_eq!(
            link("https://gitlab.com/g/p", "release/1.0").unwrap(),
            "https://gitlab.com/g/p/-/tree/release/1.0"
        );
    }

    #[test]
    fn bitbucket_and_gitea() {
        assert_eq!(
            link("git@bitbucket.org:ws/repo.git", SHA).unwrap(),
            format!("https://bitbucket.org/ws/repo/commits/{SHA}")
        );
        assert_eq!(
            link("https://bitbucket.org/ws/repo", "main").unwrap(),
            "https://bitbucket.org/ws/repo/src/main"
        );
        assert_eq!(
            link("https://codeberg.org/o/r.git", SHA).unwrap(),
            format!("https://codeberg.org/o/r/commit/{SHA}")
        );
        assert_eq!(
            link("ssh://git@gitea.example.org:2222/o/r.git", "v2.0").unwrap(),
            "https://gitea.example.org/o/r/src/tag/v2.0"
        );
        assert_eq!(
            link("https://git.forgejo.dev/o/r", "main").unwrap(),
            "https://git.forgejo.dev/o/r/src/branch/main"
        );
    }

    #[test]
    fn unknown_hosts_get_the_plain_url_without_credentials() {
        assert_eq!(link("https://git.example.com/a/b.git", SHA), None);
        assert_eq!(
            source_link("https://bob:pw@git.example.com/a/b.git", Some(SHA)).unwrap(),
            "https://git.example.com/a/b"
        );
        assert_eq!(
            source_link("http://git.local:8080/a/b", None).unwrap(),
            "http://git.local:8080/a/b"
        );
        assert_eq!(
            source_link("git@git.example.com:team/app.git", None).unwrap(),
            "https://git.example.com/team/app"
        );
    }

    /// Issue 13 item 5: the host after the `@` a person meant, and no password part.
    #[test]
    fn credentials_a_url_parser_misreads_link_to_the_host_meant() {
        for src in [
            "https://ci:1234/5678@gitlab.com/g/app.git",
            "https://oauth2:glpat-AbC dEf@gitlab.com/g/app.git",
            "https://ci:xxxxx@gitlab.com/g/app.git",
            "https://u:p@ss@gitlab.com/g/app",
        ] {
            let repo = Repository::parse(src).unwrap_or_else(|| panic!("{src}"));
            assert_eq!(repo.host, "gitlab.com", "{src}");
            assert_eq!(repo.short(), "gitlab.com/g/app", "{src}");
            assert_eq!(
                repo.revision_url(SHA).unwrap(),
                format!("https://gitlab.com/g/app/-/commit/{SHA}")
            );
        }
        // an `@` in the path of a real URL stays in the path
        let repo = Repository::parse("https://github.com/org/repo/tree/@scope/pkg").unwrap();
        assert_eq!(repo.host, "github.com");
        assert_eq!(repo.short(), "github.com/org/repo");
        // blanks outside a password still make it no repository
        assert_eq!(Repository::parse("https://gitlab.com/g/a b"), None);
    }

    #[test]
    fn rejects_what_is_not_a_repository_or_unsafe() {
        for bad in [
            "",
            "not a url",
            "https://",
            "https://github.com",
            "https://github.com/",
            "file:///etc/passwd",
            "javascript:alert(1)//x",
            "https://github.com/a/b\nX",
            "https://evil.com/../etc",
            "/local/path",
            "https://gi<t>hub.com/a/b",
        ] {
            let r = Repository::parse(bad);
            assert!(
                r.is_none() || r.as_ref().unwrap().forge().is_none(),
                "{bad:?} -> {r:?}"
            );
        }
        assert_eq!(
            Repository::parse("javascript:alert(1)//x").map(|r| r.host),
            None
        );
        assert_eq!(link("https://github.com/a/b", "../../x"), None);
        assert_eq!(link("https://github.com/a/b", "a b"), None);
        assert_eq!(link("https://github.com/a/b", "\"><script>"), None);
    }

    #[test]
    fn no_credential_survives_any_output() {
        for src in [
            "https://tok:SECRETX@github.com/o/r",
            "ssh://SECRETX@gitlab.com/g/p",
            "SECRETX@bitbucket.org:w/r",
            "https://SECRETX@git.example.com/a/b",
        ] {
            let repo = Repository::parse(src).unwrap();
            for out in [
                repo.web_url(),
                repo.short(),
                repo.revision_url(SHA).unwrap_or_default(),
                source_link(src, Some(SHA)).unwrap(),
            ] {
                assert!(!out.contains("SECRETX"), "{src} -> {out}");
            }
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the input: no panic, and a link never carries the userinfo,
        /// whitespace, quotes or angle brackets.
        #[test]
        fn links_are_safe_for_any_input(
            scheme in prop::sample::select(vec!["https://", "http://", "ssh://", "git@", "", "git+https://", "ftp://"]),
            user in "[a-zA-Z0-9._%-]{0,12}",
            host in "[a-zA-Z0-9.:\\[\\]-]{0,30}",
            path in "[ -~]{0,60}",
            rev in "[ -~]{0,70}",
        ) {
            let url = if user.is_empty() {
                format!("{scheme}{host}/{path}")
            } else {
                format!("{scheme}{user}SECRETX@{host}/{path}")
            };
            if let Some(repo) = Repository::parse(&url) {
                for out in [repo.web_url(), repo.short(), repo.revision_url(&rev).unwrap_or_default()] {
                    prop_assert!(!out.contains("SECRETX@"), "{url} -> {out}");
                    prop_assert!(!out.chars().any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`')), "{url} -> {out}");
                }
            }
        }

        /// A commit id on a known forge always links to that commit.
        #[test]
        fn commits_link_to_themselves(
            owner in "[a-z][a-z0-9-]{0,15}",
            repo in "[a-z][a-z0-9_.-]{0,15}",
            sha in "[0-9a-f]{40}",
            host in prop::sample::select(vec!["github.com", "gitlab.com", "bitbucket.org", "codeberg.org"]),
        ) {
            prop_assume!(!repo.ends_with(".git") && repo != "." && !repo.ends_with('.'));
            let r = Repository::parse(&format!("git@{host}:{owner}/{repo}.git")).unwrap();
            let link = r.revision_url(&sha).unwrap();
            prop_assert!(link.starts_with(&format!("https://{host}/{owner}/")), "{link}");
            prop_assert!(link.ends_with(&sha), "{link}");
        }
    }
}
