//! Test support: a real `docker-registry` 2.8 (Debian package `docker-registry`) on a
//! free loopback port, and pushing a small multi-platform image with BuildKit-style
//! attestations to it over plain HTTP (distribution-spec "Pushing blobs" monolithic
//! upload, "Pushing Manifests").

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cache::sha256_digest;
use super::{OCI_INDEX, OCI_MANIFEST};

/// Fails the test unless `tools` (`(program, Debian package)`) are installed; returns
/// true (callers keep their `if !have_tools(..) { return }` shape).
pub fn have_tools(tools: &[(&str, &str)]) -> bool {
    for (program, package) in tools {
        crate::testutil::require_program(program, package);
    }
    true
}

/// A free loopback TCP port (bound and released; a small race is accepted).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A running `docker-registry serve`, killed on drop.
pub struct TestRegistry {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The filesystem storage root.
    pub storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts a registry whose config gets `auth_yaml` (an `auth:` block, or "")
    /// appended, and waits until `/v2/` answers.
    pub async fn start(auth_yaml: &str) -> TestRegistry {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = dir.path().join("storage");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth_yaml}",
            storage.display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let reg = TestRegistry {
            child: Some(child),
            addr,
            storage,
            _dir: dir,
        };
        let http = plain_http();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(resp) = http.get(format!("http://{}/v2/", reg.addr)).send().await
                && (resp.status().is_success() || resp.status().as_u16() == 401)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {}",
                reg.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        reg
    }

    /// Stops the registry now.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The registry's own file for a blob (to corrupt it).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain HTTP client without proxies.
pub fn plain_http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// Pushes blobs and manifests over plain HTTP.
pub struct Pusher {
    http: reqwest::Client,
    base: String,
    auth: Option<String>,
}

impl Pusher {
    /// A pusher to `http://addr`, sending `auth` as the Authorization header.
    pub fn new(addr: &str, auth: Option<String>) -> Pusher {
        Pusher {
            http: plain_http(),
            base: format!("http://{addr}"),
            auth,
        }
    }

    fn with_auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }

    /// Monolithic upload: `POST /v2/<repo>/blobs/uploads/`, then `PUT` the bytes
    /// to the Location with `digest=`. Returns the digest.
    pub async fn blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let resp = self
            .with_auth(
                self.http
                    .post(format!("{}/v2/{repo}/blobs/uploads/", self.base)),
            )
            .send()
            .await
            .expect("start upload");
        assert_eq!(
            resp.status().as_u16(),
            202,
            "start upload: {:?}",
            resp.text().await
        );
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let mut url = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={digest}"));
        let resp = self
            .with_auth(self.http.put(url))
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("upload blob");
        assert_eq!(
            resp.status().as_u16(),
            201,
            "upload: {:?}",
            resp.text().await
        );
        digest
    }

    /// `PUT /v2/<repo>/manifests/<reference>`; returns the manifest's digest.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let resp = self
            .with_auth(
                self.http
                    .put(format!("{}/v2/{repo}/manifests/{reference}", self.base)),
            )
            .header("Content-Type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("put manifest");
        assert_eq!(
            resp.status().as_u16(),
            201,
            "put manifest: {:?}",
            resp.text().await
        );
        sha256_digest(bytes)
    }
}

/// What [`push_fixture`] pushed.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The OCI index (tag `v1`).
    pub index: String,
    /// linux/amd64 manifest (also tag `single`).
    pub amd64: String,
    /// linux/arm64/v8 manifest.
    pub arm64: String,
    /// Config blobs.
    pub amd64_config: String,
    pub arm64_config: String,
    /// The SLSA v0.2 statement blob attached to amd64.
    pub statement: String,
}

/// A one-file tar archive (ustar), built by hand.
fn tiny_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |buf: &mut [u8], v: u64| {
        let s = format!("{:0width$o}\0", v, width = buf.len() - 1);
        buf.copy_from_slice(s.as_bytes());
    };
    octal(&mut header[100..108], 0o644);
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    octal(&mut header[124..136], content.len() as u64);
    octal(&mut header[136..148], 0);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u64 = header.iter().map(|b| *b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(s.as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.resize(out.len() + 1024, 0);
    out
}

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

/// The SLSA v0.2 statement BuildKit would write for the amd64 image.
pub fn slsa_v02_statement(subject: &str) -> Value {
    json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": "pkg:docker/test/app@v1?platform=linux%2Famd64",
                     "digest": {"sha256": subject.trim_start_matches("sha256:")}}],
        "predicate": {
            "builder": {"id": "https://ci.example/runs/42"},
            "buildType": "https://mobyproject.org/buildkit@v1",
            "materials": [],
            "invocation": {
                "configSource": {"entryPoint": "Dockerfile"},
                "parameters": {"frontend": "dockerfile.v0"},
                "environment": {"platform": "linux/amd64"}
            },
            "metadata": {
                "buildInvocationID": "abc",
                "buildStartedOn": "2024-05-01T10:00:00Z",
                "buildFinishedOn": "2024-05-01T10:01:30Z",
                "completeness": {"parameters": true, "environment": true, "materials": false},
                "reproducible": false,
                "https://mobyproject.org/buildkit@v1#metadata": {
                    "vcs": {"source": "https://git.example/team/app", "revision": "0123abcd"}
                }
            }
        }
    })
}

/// Pushes to `repo`: a FROM-scratch image for linux/amd64 and linux/arm64/v8 (a
/// one-file tar layer each, configs with different labels), a BuildKit-style
/// attestation manifest for each (amd64: a valid SLSA v0.2 statement; arm64: a
/// statement blob that is not JSON), and an OCI index over all four, tagged `v1`.
/// The amd64 manifest alone is tagged `single`.
pub async fn push_fixture(p: &Pusher, repo: &str) -> Fixture {
    let platforms: [(&str, Option<&str>); 2] = [("amd64", None), ("arm64", Some("v8"))];
    let mut manifests = vec![];
    let mut configs = vec![];
    for (arch, variant) in platforms {
        let layer = tiny_tar("hello.txt", format!("hello from {arch}\n").as_bytes());
        let layer_digest = p.blob(repo, &layer).await;
        let diff_id = layer_digest.clone();
        let mut config = json!({
            "architecture": arch,
            "os": "linux",
            "config": {
                "Labels": {"org.opencontainers.image.title": format!("app-{arch}"), "microscale.arch": arch},
                "Cmd": ["/hello"]
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "COPY hello.txt /"}]
        });
        if let Some(v) = variant {
            config["variant"] = json!(v);
        }
        let config_bytes = json_bytes(&config);
        let config_digest = p.blob(repo, &config_bytes).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config_bytes.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": layer.len()}]
        });
        let bytes = json_bytes(&manifest);
        let digest = p
            .manifest(repo, &sha256_digest(&bytes), OCI_MANIFEST, &bytes)
            .await;
        manifests.push((digest, bytes.len(), arch, variant));
        configs.push(config_digest);
    }
    let mut atts = vec![];
    let mut statement_digest = String::new();
    for (i, (subject, _, _, _)) in manifests.iter().enumerate() {
        let statement = if i == 0 {
            json_bytes(&slsa_v02_statement(subject))
        } else {
            b"this is not an in-toto statement".to_vec()
        };
        let st_digest = p.blob(repo, &statement).await;
        if i == 0 {
            statement_digest = st_digest.clone();
        }
        let att_config = json_bytes(&json!({
            "architecture": "unknown", "os": "unknown", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [st_digest]}
        }));
        let att_config_digest = p.blob(repo, &att_config).await;
        let att = json_bytes(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": att_config_digest, "size": att_config.len()},
            "layers": [{"mediaType": "application/vnd.in-toto+json",
                        "digest": st_digest, "size": statement.len(),
                        "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}]
        }));
        let att_digest = p
            .manifest(repo, &sha256_digest(&att), OCI_MANIFEST, &att)
            .await;
        atts.push((att_digest, att.len(), subject.clone()));
    }
    let mut entries: Vec<Value> = manifests
        .iter()
        .map(|(d, size, arch, variant)| {
            let mut platform = json!({"architecture": arch, "os": "linux"});
            if let Some(v) = variant {
                platform["variant"] = json!(v);
            }
            json!({"mediaType": OCI_MANIFEST, "digest": d, "size": size, "platform": platform})
        })
        .collect();
    for (d, size, subject) in &atts {
        entries.push(json!({
            "mediaType": OCI_MANIFEST, "digest": d, "size": size,
            "annotations": {"vnd.docker.reference.digest": subject,
                            "vnd.docker.reference.type": "attestation-manifest"},
            "platform": {"architecture": "unknown", "os": "unknown"}
        }));
    }
    let index =
        json_bytes(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}));
    let index_digest = p.manifest(repo, "v1", OCI_INDEX, &index).await;
    // The amd64 manifest alone under another tag.
    let amd = manifests[0].0.clone();
    let resp = p
        .with_auth(p.http.get(format!("{}/v2/{repo}/manifests/{amd}", p.base)))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .expect("get manifest");
    let bytes = resp.bytes().await.expect("manifest body");
    p.manifest(repo, "single", OCI_MANIFEST, &bytes).await;
    Fixture {
        index: index_digest,
        amd64: amd,
        arm64: manifests[1].0.clone(),
        amd64_config: configs[0].clone(),
        arm64_config: configs[1].clone(),
        statement: statement_digest,
    }
}

/// Writes an executable `docker-credential-<name>` into `dir` that answers `get`
/// for `server` with `user`/`secret`, and "credentials not found" otherwise.
pub fn write_helper(dir: &Path, name: &str, server: &str, user: &str, secret: &str) {
    let path = dir.join(format!("docker-credential-{name}"));
    let script = format!(
        "#!/bin/sh\nread server\nif [ \"$1\" = get ] && [ \"$server\" = \"{server}\" ]; then\n  printf '%s' '{{\"ServerURL\":\"{server}\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}'\nelse\n  echo 'credentials not found in native keychain'\n  exit 1\nfi\n"
    );
    std::fs::write(&path, script).expect("write helper");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod helper");
    }
}

/// A Docker registry token service for tests (distribution `docs/spec/auth/jwt.md`):
/// ES256 JWTs whose `x5c` header carries a self-signed certificate that the registry
/// trusts through `rootcertbundle`. It answers `GET /token` (Basic `user:pass`, or
/// anonymous which is refused) and `POST /token` (OAuth2 `refresh_token` grant with
/// refresh token `REFRESH`), and records each request.
pub struct TokenService {
    /// `http://127.0.0.1:PORT/token`.
    pub realm: String,
    /// Where the certificate bundle was written.
    pub cert_path: PathBuf,
    /// One line per request: `METHOD auth=<basic user|none> key=value ...`.
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    signer: std::sync::Arc<Signer>,
    task: tokio::task::JoinHandle<()>,
}

/// The `service` and `issuer` the test registry is configured with.
pub const TOKEN_SERVICE: &str = "microscale-test";
pub const TOKEN_ISSUER: &str = "microscale-test-issuer";

struct Signer {
    key: ring::signature::EcdsaKeyPair,
    cert_der: Vec<u8>,
}

impl Signer {
    fn jwt(&self, repo: &str, actions: &[&str]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let std64 = base64::engine::general_purpose::STANDARD;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [std64.encode(&self.cert_der)]});
        let claims = json!({
            "iss": TOKEN_ISSUER, "sub": "user", "aud": TOKEN_SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now - 10, "jti": format!("t{now}"),
            "access": [{"type": "repository", "name": repo, "actions": actions}]
        });
        let signing_input = format!(
            "{}.{}",
            b64.encode(json_bytes(&header)),
            b64.encode(json_bytes(&claims))
        );
        let sig = self
            .key
            .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
            .expect("sign");
        format!("{signing_input}.{}", b64.encode(sig.as_ref()))
    }
}

impl TokenService {
    /// Starts the token service on a free loopback port; the certificate goes to
    /// `dir/token-cert.pem`.
    pub async fn start(dir: &Path) -> TokenService {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["microscale-token".to_string()])
            .expect("cert params")
            .self_signed(&key)
            .expect("self-signed cert");
        let cert_path = dir.join("token-cert.pem");
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        let signer = std::sync::Arc::new(Signer {
            key: ring::signature::EcdsaKeyPair::from_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &key.serialize_der(),
                &ring::rand::SystemRandom::new(),
            )
            .expect("ring key"),
            cert_der: cert.der().to_vec(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
        let (s, r) = (signer.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, r) = (s.clone(), r.clone());
                tokio::spawn(async move {
                    let _ = serve_token(stream, &s, &r).await;
                });
            }
        });
        TokenService {
            realm,
            cert_path,
            requests,
            signer,
            task,
        }
    }

    /// The registry config's `auth:` block for this service.
    pub fn auth_yaml(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            self.realm,
            self.cert_path.display()
        )
    }

    /// A token for `repo` with pull and push, for pushing the fixture.
    pub fn push_token(&self, repo: &str) -> String {
        format!("Bearer {}", self.signer.jwt(repo, &["pull", "push"]))
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_token(
    mut stream: tokio::net::TcpStream,
    signer: &Signer,
    requests: &std::sync::Mutex<Vec<String>>,
) -> std::io::Result<()> {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![];
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut auth = "none".to_string();
    let mut length = 0usize;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("authorization") {
                auth = match v.strip_prefix("Basic ") {
                    Some(b) => String::from_utf8(
                        base64::engine::general_purpose::STANDARD
                            .decode(b)
                            .unwrap_or_default(),
                    )
                    .unwrap_or_default(),
                    None => v.to_string(),
                };
            } else if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().unwrap_or(0);
            }
        }
    }
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let params_text = if method == "POST" {
        body.as_str()
    } else {
        query
    };
    let params: Vec<(String, String)> = reqwest::Url::parse(&format!("http://x/?{params_text}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut line = format!("{method} auth={}", auth.split(':').next().unwrap_or(""));
    for (k, v) in &params {
        line.push_str(&format!(" {k}={v}"));
    }
    requests.lock().unwrap().push(line);
    let repo = get("scope")
        .strip_prefix("repository:")
        .and_then(|s| s.rsplit_once(':'))
        .map(|(r, _)| r.to_string())
        .unwrap_or_default();
    let granted = match method.as_str() {
        "GET" => auth == "user:pass",
        "POST" => get("grant_type") == "refresh_token" && get("refresh_token") == "REFRESH",
        _ => false,
    };
    let (status, reply) = if granted && get("service") == TOKEN_SERVICE {
        let key = if method == "POST" {
            "access_token"
        } else {
            "token"
        };
        (
            "200 OK",
            json!({ key: signer.jwt(&repo, &["pull"]), "expires_in": 300 }).to_string(),
        )
    } else {
        (
            "401 Unauthorized",
            json!({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}).to_string(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
