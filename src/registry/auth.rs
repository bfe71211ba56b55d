//! Registry authentication: `WWW-Authenticate` challenges (RFC 7235; Docker registry
//! token auth, distribution `docs/spec/auth/token.md` and `oauth.md`) and credentials
//! from the docker config file (`auths`, `credHelpers`, `credsStore`) and
//! docker-credential-helpers (`docker-credential-NAME get`).
//!
//! `auths` entries are decoded by the `docker_credential` crate. The rest is ours,
//! because the crates cannot do what the tests pin:
//!
//! - challenges: `http-auth` (oci-client's parser) refuses an unquoted realm such as
//!   `Bearer realm=http://x/t`, which docker's own parser accepts;
//! - the token request: `oci-client` has no OAuth2 identity tokens (the
//!   `grant_type=refresh_token` POST); it sends Basic credentials to whatever realm
//!   a challenge names (plain http to another host included) with no cap on the
//!   answer; its pulls drop a failed token request (the GET then fails with a bare
//!   401) and `auth()` returns the refusal's body without its status;
//! - helpers: `docker_credential` runs `docker-credential-NAME` from `PATH` only
//!   (the tests use a helper directory), without a time limit; a helper that is not
//!   installed is a `HelperCommunicationError` that names nothing; a failing
//!   helper's output (which may hold a secret) is carried in its error; and a name
//!   containing `/` is run as a path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::RegistryError;
use super::reference::DOCKER_HUB_AUTH_KEY;
use crate::edge::redact::redact_value;

/// One challenge of a `WWW-Authenticate` header: a scheme (lowercased, `basic` or
/// `bearer`) and its parameters (names lowercased, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Auth scheme, lowercase.
    pub scheme: String,
    /// Parameters such as `realm`, `service`, `scope`.
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` header value into its challenges (RFC 7235 §4.1:
/// `scheme param=value, param="quoted, \"value\"", Scheme2 ...`). Unparsable tails
/// are dropped; an empty result means no usable challenge.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = vec![];
    let chars: Vec<char> = header.chars().collect();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && (chars[*i].is_whitespace() || chars[*i] == ',') {
            *i += 1;
        }
    };
    let is_token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            break;
        }
        let start = i;
        while i < chars.len() && is_token(chars[i]) {
            i += 1;
        }
        if i == start {
            // Not a token: give up on the rest.
            break;
        }
        let word: String = chars[start..i].iter().collect();
        // `name=` (not `==` token68 padding) makes it a parameter of the current
        // challenge; otherwise it starts a new one.
        let mut j = i;
        while j < chars.len() && chars[j] == ' ' {
            j += 1;
        }
        if j < chars.len() && chars[j] == '=' && !out.is_empty() {
            i = j + 1;
            while i < chars.len() && chars[i] == ' ' {
                i += 1;
            }
            let value = if i < chars.len() && chars[i] == '"' {
                i += 1;
                let mut v = String::new();
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    v.push(chars[i]);
                    i += 1;
                }
                i += 1; // closing quote
                v
            } else {
                let s = i;
                while i < chars.len() && chars[i] != ',' && !chars[i].is_whitespace() {
                    i += 1;
                }
                chars[s..i].iter().collect()
            };
            if let Some(last) = out.last_mut() {
                last.params.insert(word.to_ascii_lowercase(), value);
            }
        } else {
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    out
}

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (or a personal access token used as one).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`, or a helper's `<token>` user).
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    /// Never shows the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, xxxxx)"),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(xxxxx)"),
        }
    }
}

impl Credential {
    /// The `Authorization: Basic ...` value, for basic credentials.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Credential::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Credential::IdentityToken(_) => None,
        }
    }
}

/// The parts of the docker config file this client reads itself: which credential
/// helper serves a registry. `auths` entries are decoded by `docker_credential`.
#[derive(Debug, Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: serde_json::Map<String, serde_json::Value>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(rename = "credsStore", default)]
    creds_store: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HelperReply {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Where credentials are looked up.
#[derive(Debug, Clone)]
pub struct CredentialSource {
    /// The docker config directory (`config.json` inside); `None`: no credentials.
    pub config_dir: Option<PathBuf>,
    /// Directory holding `docker-credential-*`; `None`: search `PATH`.
    pub helper_dir: Option<PathBuf>,
    /// How long a helper may run.
    pub timeout: Duration,
}

/// The key a registry's credentials are stored under: Docker Hub's
/// `https://index.docker.io/v1/`, else `host[:port]`.
pub fn auth_key(registry: &str) -> String {
    if registry == super::reference::DOCKER_HUB_REGISTRY {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// `https://host:port/path` → `host:port` (docker/cli `ConvertToHostname`).
fn to_hostname(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

fn same_registry(key: &str, registry: &str) -> bool {
    let host = to_hostname(key);
    let hub = |h: &str| matches!(h, "index.docker.io" | "docker.io" | "registry-1.docker.io");
    host == registry || (hub(host) && hub(registry))
}

impl CredentialSource {
    /// Credentials for `registry` (`host[:port]`), the way the docker CLI finds them:
    /// `credHelpers[key]`, else `credsStore`, else `auths[key]` (keys compared by host
    /// name, so `https://host/v1/` matches `host`). `Ok(None)`: nothing stored.
    ///
    /// # Errors
    /// [`RegistryError::Credentials`] when `config.json` is unreadable or not JSON, or
    /// a helper is missing, fails, or answers something that is not JSON.
    pub async fn lookup(&self, registry: &str) -> Result<Option<Credential>, RegistryError> {
        let Some(dir) = &self.config_dir else {
            return Ok(None);
        };
        let path = dir.join("config.json");
        let text = match crate::edge::fsutil::read_config_text(&path) {
            Ok(t) if t.trim().is_empty() => return Ok(None), // as the docker CLI
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(RegistryError::Credentials {
                    registry: registry.to_string(),
                    source_name: path.display().to_string(),
                    reason: format!("cannot read it: {e}"),
                });
            }
        };
        let config: ConfigFile =
            serde_json::from_str(&text).map_err(|e| RegistryError::Credentials {
                registry: registry.to_string(),
                source_name: path.display().to_string(),
                reason: format!("it is not valid JSON ({e}); fix or remove the file"),
            })?;
        let key = auth_key(registry);
        let helper = config
            .cred_helpers
            .iter()
            .find(|(k, _)| **k == key || same_registry(k, registry))
            .map(|(_, v)| v.clone())
            .or(config.creds_store.clone())
            .filter(|h| !h.is_empty());
        if let Some(helper) = helper
            && let Some(cred) = self.run_helper(&helper, registry, &key).await?
        {
            return Ok(Some(cred));
        }
        from_auths(config.auths, registry, &key, &path)
    }

    /// Runs `docker-credential-<helper> get` with `key` on stdin.
    async fn run_helper(
        &self,
        helper: &str,
        registry: &str,
        key: &str,
    ) -> Result<Option<Credential>, RegistryError> {
        let program = format!("docker-credential-{helper}");
        let err = |reason: String| RegistryError::Credentials {
            registry: registry.to_string(),
            source_name: program.clone(),
            reason,
        };
        if helper.contains(['/', '\\']) || helper.starts_with('.') {
            return Err(err(format!(
                "\"{helper}\" is not a helper name; fix \"credsStore\"/\"credHelpers\" in config.json"
            )));
        }
        let exe: PathBuf = match &self.helper_dir {
            Some(dir) => dir.join(&program),
            None => PathBuf::from(&program),
        };
        let mut child = tokio::process::Command::new(&exe)
            .arg("get")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    err(format!(
                        "{program} is not installed{}; install it, or remove \"{helper}\" from \"credsStore\"/\"credHelpers\" in config.json",
                        where_looked(self.helper_dir.as_deref())
                    ))
                } else {
                    err(format!("cannot run it: {e}"))
                }
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading stdin is not an error here.
            let _ = stdin.write_all(key.as_bytes()).await;
        }
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| err(format!("it did not answer within {:?}", self.timeout)))?
            .map_err(|e| err(format!("cannot run it: {e}")))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            let said = format!(
                "{} {}",
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
            if said.to_lowercase().contains("credentials not found") {
                return Ok(None);
            }
            // What a helper prints may hold a secret in any shape: not repeated.
            return Err(err(format!(
                "it failed ({}); check the helper (try `echo {key} | {program} get`) or log in again",
                output.status
            )));
        }
        let reply: HelperReply = serde_json::from_str(stdout.trim()).map_err(|e| {
            err(format!(
                "its answer is not the expected JSON {{\"Username\", \"Secret\"}} ({e})"
            ))
        })?;
        if reply.secret.is_empty() {
            return Ok(None);
        }
        if reply.username == "<token>" {
            return Ok(Some(Credential::IdentityToken(reply.secret)));
        }
        Ok(Some(Credential::Basic {
            username: reply.username,
            password: reply.secret,
        }))
    }
}

/// The `auths` entry for `registry`, decoded by `docker_credential` (which also
/// matches keys by host name: `https://host/v1/`, `http://host/v2/` and Docker
/// Hub's aliases). Entries with empty strings count as absent, as in the docker CLI.
fn from_auths(
    mut auths: serde_json::Map<String, serde_json::Value>,
    registry: &str,
    key: &str,
    path: &Path,
) -> Result<Option<Credential>, RegistryError> {
    for entry in auths.values_mut() {
        if let Some(fields) = entry.as_object_mut() {
            fields.retain(|_, v| v.as_str().is_some_and(|s| !s.is_empty()));
        }
    }
    let config = serde_json::json!({ "auths": auths }).to_string();
    let bad = |why: &str| RegistryError::Credentials {
        registry: registry.to_string(),
        source_name: path.display().to_string(),
        reason: format!("the \"auth\" entry for {key} {why}; run `docker login {registry}` again"),
    };
    use docker_credential::{CredentialRetrievalError as E, DockerCredential as D};
    match docker_credential::get_credential_from_reader(config.as_bytes(), registry) {
        Ok(D::IdentityToken(token)) => Ok(Some(Credential::IdentityToken(token))),
        Ok(D::UsernamePassword(username, password)) => {
            Ok(Some(Credential::Basic { username, password }))
        }
        Err(E::NoCredentialConfigured) => Ok(None),
        Err(E::CredentialDecodingError) => Err(bad("is not base64 of user:password")),
        Err(E::CredentialMismatchError) => {
            Err(bad("does not match its \"username\" and \"password\""))
        }
        Err(e) => Err(bad(&format!("cannot be read ({e})"))),
    }
}

fn where_looked(dir: Option<&Path>) -> String {
    match dir {
        Some(d) => format!(" in {}", d.display()),
        None => " or not on PATH".to_string(),
    }
}

/// The token endpoint URL for a Bearer challenge: the realm with `service` and
/// `scope=repository:<repository>:pull` query parameters (distribution
/// `docs/spec/auth/token.md`, "Requesting a Token").
///
/// # Errors
/// A description when the challenge has no realm or it is not an http(s) URL.
pub fn token_url(challenge: &Challenge, repository: &str) -> Result<reqwest::Url, String> {
    let realm = challenge
        .params
        .get("realm")
        .ok_or("the Bearer challenge has no realm")?;
    let mut url = reqwest::Url::parse(realm).map_err(|e| {
        format!(
            "the token service address (realm) \"{}\" is not a URL: {e}",
            crate::edge::text::printable(&redact_value(realm))
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the token service address (realm) \"{}\" is not an http(s) URL",
            crate::edge::text::printable(&redact_value(realm))
        ));
    }
    {
        let mut q = url.query_pairs_mut();
        if let Some(service) = challenge.params.get("service") {
            q.append_pair("service", service);
        }
        q.append_pair("scope", &format!("repository:{repository}:pull"));
    }
    Ok(url)
}

/// The token in a token-endpoint answer: `token`, else `access_token`.
pub fn token_from_reply(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    ["token", "access_token"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|t| t.as_str()).filter(|t| !t.is_empty()))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_with_quotes_and_commas() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.docker.io/token");
        assert_eq!(c[0].params["service"], "registry.docker.io");
        assert_eq!(c[0].params["scope"], "repository:library/busybox:pull,push");
        let c = parse_challenges(
            r#"Basic realm="Registry \"R\"", Bearer Realm=http://x/t , service=s"#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].params["realm"], "Registry \"R\"");
        assert_eq!(c[1].params["realm"], "http://x/t");
        assert_eq!(c[1].params["service"], "s");
        assert!(parse_challenges("").is_empty());
        assert_eq!(parse_challenges("Basic").len(), 1);
    }

    #[test]
    fn token_request_url() {
        let c = &parse_challenges(
            r#"Bearer realm="https://auth.example/token?x=1",service="reg.example""#,
        )[0];
        let url = token_url(c, "a/b").unwrap();
        assert_eq!(
            url.as_str(),
            "https://auth.example/token?x=1&service=reg.example&scope=repository%3Aa%2Fb%3Apull"
        );
        let no_realm = &parse_challenges("Bearer service=x")[0];
        assert!(token_url(no_realm, "a").unwrap_err().contains("no realm"));
        let ftp = &parse_challenges("Bearer realm=ftp://x/")[0];
        assert!(token_url(ftp, "a").is_err());
        assert_eq!(
            token_from_reply(br#"{"token":"t1"}"#).as_deref(),
            Some("t1")
        );
        assert_eq!(
            token_from_reply(br#"{"access_token":"t2"}"#).as_deref(),
            Some("t2")
        );
        assert_eq!(token_from_reply(br#"{"token":""}"#), None);
    }

    fn source(dir: &Path, helper_dir: Option<&Path>) -> CredentialSource {
        CredentialSource {
            config_dir: Some(dir.to_path_buf()),
            helper_dir: helper_dir.map(Path::to_path_buf),
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn credentials_from_auths() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode("u:p:w");
        std::fs::write(
            dir.path().join("config.json"),
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{b64}"}},"http://reg.example:5000/v2/":{{"identitytoken":"IDT"}},"bad.example":{{"auth":"!!"}}}}}}"#
            ),
        )
        .unwrap();
        let s = source(dir.path(), None);
        assert_eq!(
            s.lookup("registry-1.docker.io").await.unwrap(),
            Some(Credential::Basic {
                username: "u".into(),
                password: "p:w".into()
            })
        );
        assert_eq!(
            s.lookup("reg.example:5000").await.unwrap(),
            Some(Credential::IdentityToken("IDT".into()))
        );
        assert_eq!(s.lookup("other.example").await.unwrap(), None);
        let e = s.lookup("bad.example").await.unwrap_err().to_string();
        assert!(
            e.contains("not base64") && e.contains("docker login bad.example"),
            "{e}"
        );
        let none = tempfile::tempdir().unwrap();
        assert_eq!(source(none.path(), None).lookup("x").await.unwrap(), None);
        std::fs::write(none.path().join("config.json"), "{").unwrap();
        let e = source(none.path(), None)
            .lookup("x")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("config.json") && e.contains("not valid JSON"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn auths_keys_match_by_host_and_docker_hub_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::json!({"auths": {
                "docker.io": {"auth": b64("hubuser:hubpass")},
                "https://reg.example/v1/": {"auth": "", "username": "u", "password": "p"},
                "mixed.example": {"auth": b64("a:b"), "username": "a", "password": "other"},
                "empty.example": {"auth": "", "identitytoken": ""}
            }})
            .to_string(),
        )
        .unwrap();
        let s = source(dir.path(), None);
        assert_eq!(
            s.lookup("registry-1.docker.io").await.unwrap(),
            Some(Credential::Basic {
                username: "hubuser".into(),
                password: "hubpass".into()
            })
        );
        // An empty "auth" is absent: the user name and password count.
        assert_eq!(
            s.lookup("reg.example").await.unwrap(),
            Some(Credential::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(s.lookup("empty.example").await.unwrap(), None);
        let e = s.lookup("mixed.example").await.unwrap_err().to_string();
        assert!(
            e.contains("does not match") && e.contains("docker login mixed.example"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_missing_helper_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"credHelpers":{"reg.example":"nosuchhelper-mstest"}}"#,
        )
        .unwrap();
        let e = source(dir.path(), Some(dir.path()))
            .lookup("reg.example")
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, RegistryError::Credentials { .. }));
        assert!(
            msg.contains("docker-credential-nosuchhelper-mstest is not installed"),
            "{msg}"
        );
        assert!(msg.contains("credHelpers"), "{msg}");
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Credential::Basic {
            username: "u".into(),
            password: "S3CRET".into(),
        };
        assert!(!format!("{c:?}").contains("S3CRET"));
        assert!(!format!("{:?}", Credential::IdentityToken("S3CRET".into())).contains("S3CRET"));
    }
}
