//! A read-only client for OCI distribution registries: an image's config and its
//! BuildKit provenance attestations.
//!
//! Sources: OCI distribution-spec v1.1 (`spec.md`: "Pulling manifests", "Pulling
//! blobs", error codes), OCI image-spec v1.1 (`image-index.md`, `manifest.md`,
//! `descriptor.md`), Docker's image manifest v2 schema 2 and manifest list, the Docker
//! registry token auth spec (distribution `docs/spec/auth/token.md`, `oauth.md`) and
//! BuildKit's attestation storage (moby/buildkit `docs/attestations/`).
//!
//! [`Client::image`] resolves a [`Reference`] to one image manifest for a
//! [`Platform`], fetches its config, and reads the SLSA provenance that BuildKit
//! stored next to it. Everything fetched by digest is verified and kept in an
//! on-disk content-addressed cache, so a digest is never fetched twice.

mod auth;
mod cache;
mod error;
mod platform;
mod provenance;
mod reference;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testserver;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

pub use auth::{Challenge, Credential, parse_challenges, token_url};
pub use error::RegistryError;
pub use platform::Platform;
pub use provenance::Provenance;
pub use reference::Reference;

use crate::edge::redact::redact_value;
use auth::CredentialSource;
use cache::{Cache, sha256_digest};

/// Largest manifest or index accepted, in bytes (4 MiB, as containerd and the
/// distribution spec's recommended limit).
pub const MANIFEST_LIMIT: u64 = 4 << 20;
/// Largest config or attestation blob accepted, in bytes (16 MiB).
pub const BLOB_LIMIT: u64 = 16 << 20;
/// Largest token-endpoint answer accepted, in bytes.
const TOKEN_LIMIT: u64 = 1 << 20;

/// OCI image index (`application/vnd.oci.image.index.v1+json`).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (schema 2).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest v2 schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Settings for [`Client::new`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The docker config directory whose `config.json` holds credentials; `None`:
    /// `DOCKER_CONFIG`, else `~/.docker` (as `docker --config` resolves it).
    pub docker_config_dir: Option<PathBuf>,
    /// Cache directory; `None`: `$XDG_CACHE_HOME/docker-microscale`, else
    /// `~/.cache/docker-microscale` (no cache when neither can be found).
    pub cache_dir: Option<PathBuf>,
    /// Registries (`host[:port]`) and CIDRs (`10.0.0.0/8`) that may be reached
    /// without verified TLS: https without certificate checks, then plain http, like
    /// the engine's `insecure-registries`. Loopback (`localhost`, 127.0.0.0/8, ::1)
    /// always counts, as in dockerd.
    pub insecure: Vec<String>,
    /// Time limit for each HTTP request (connect + answer), and for a credential
    /// helper run.
    pub timeout: Duration,
    /// Where `docker-credential-*` helpers are looked up; `None`: `PATH`.
    pub credential_helper_dir: Option<PathBuf>,
    /// Read only from the cache, never from the network: what is not cached fails
    /// with [`RegistryError::NotCached`]. For `status`, which must not wait on
    /// registries.
    pub offline: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            docker_config_dir: None,
            cache_dir: None,
            insecure: vec![],
            timeout: Duration::from_secs(30),
            credential_helper_dir: None,
            offline: false,
        }
    }
}

/// One image as read from a registry.
#[derive(Debug, Clone)]
pub struct RemoteImage {
    /// Digest (`sha256:<hex>`) of the image index or manifest list, when the
    /// reference resolved to one.
    pub index_digest: Option<String>,
    /// Digest of the image manifest chosen for the platform.
    pub manifest_digest: String,
    /// Digest of the image config blob.
    pub config_digest: String,
    /// The whole image config JSON (OCI image-spec `config.md`); labels are at
    /// `config.Labels`.
    pub config: Value,
    /// The image's platform: from the index entry, else from the config's `os`,
    /// `architecture` and `variant`; `None` when neither says.
    pub platform: Option<Platform>,
    /// SLSA provenance attestations for this manifest, in index order.
    pub attestations: Vec<Provenance>,
    /// Attestations that could not be read (one line each: which and why). They do
    /// not fail the image read.
    pub attestation_errors: Vec<String>,
}

/// The kind of a manifest document.
enum Kind {
    Index,
    Manifest,
}

/// A registry client. Cheap to share (`&Client` across tasks); it keeps the scheme
/// that worked for each registry and the Authorization header for each repository.
pub struct Client {
    /// Verifying TLS (system roots); an error when the system has no roots.
    secure: Result<reqwest::Client, String>,
    /// TLS without certificate checks, for insecure registries.
    unverified: reqwest::Client,
    creds: CredentialSource,
    cache: Option<Cache>,
    insecure_hosts: Vec<String>,
    insecure_nets: Vec<ipnet::IpNet>,
    timeout: Duration,
    offline: bool,
    fetches: AtomicU64,
    /// registry -> "https" or "http", once a request got an answer.
    schemes: Mutex<HashMap<String, &'static str>>,
    /// (registry, repository) -> Authorization header value.
    auth: Mutex<HashMap<(String, String), String>>,
}

impl Client {
    /// A client with `opts`.
    ///
    /// # Errors
    /// [`RegistryError::Setup`] when an `insecure` entry is neither `host[:port]`
    /// nor a CIDR, or the HTTP client cannot be built.
    pub fn new(opts: ClientOptions) -> Result<Client, RegistryError> {
        use crate::engine::connect::TlsSettings;
        use crate::engine::transport::tls_config;
        let mut insecure_hosts = vec![];
        let mut insecure_nets = vec![
            "127.0.0.0/8".parse::<ipnet::IpNet>().expect("CIDR"),
            "::1/128".parse().expect("CIDR"),
        ];
        for entry in &opts.insecure {
            let e = entry.trim();
            let e = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"))
                .unwrap_or(e)
                .trim_end_matches('/');
            if let Ok(net) = e.parse::<ipnet::IpNet>() {
                insecure_nets.push(net);
            } else if e.is_empty() || e.contains(['/', ' ', '@']) {
                return Err(RegistryError::Setup(format!(
                    "insecure registry \"{entry}\" is neither host[:port] nor a CIDR such as 10.0.0.0/8"
                )));
            } else {
                insecure_hosts.push(e.to_ascii_lowercase());
            }
        }
        let build = |cfg: rustls::ClientConfig| {
            reqwest::Client::builder()
                .use_preconfigured_tls(cfg)
                .timeout(opts.timeout)
                .connect_timeout(opts.timeout)
                .user_agent(concat!("docker-microscale/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| RegistryError::Setup(format!("HTTP client: {e}")))
        };
        let mut tls = TlsSettings {
            ca: None,
            cert: None,
            key: None,
            verify: true,
        };
        // Offline, no request is made: skip loading the system's trusted roots.
        let secure = if opts.offline {
            Err("offline".to_string())
        } else {
            match tls_config(&tls) {
                Ok(cfg) => Ok(build(cfg)?),
                Err(e) => Err(e),
            }
        };
        tls.verify = false;
        let unverified = build(tls_config(&tls).map_err(RegistryError::Setup)?)?;
        let config_dir = opts.docker_config_dir.clone().or_else(|| {
            let env = crate::engine::connect::EnvVars::from_process().ok()?;
            crate::engine::connect::config_dir(&Default::default(), &env).ok()
        });
        Ok(Client {
            secure,
            unverified,
            creds: CredentialSource {
                config_dir,
                helper_dir: opts.credential_helper_dir.clone(),
                timeout: opts.timeout,
            },
            cache: opts.cache_dir.or_else(cache::default_dir).map(Cache::new),
            insecure_hosts,
            insecure_nets,
            timeout: opts.timeout,
            offline: opts.offline,
            fetches: AtomicU64::new(0),
            schemes: Mutex::new(HashMap::new()),
            auth: Mutex::new(HashMap::new()),
        })
    }

    /// How many manifests and blobs were fetched over the network so far (cache
    /// hits and token requests do not count). For tests.
    #[cfg(test)]
    pub fn network_fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Reads the image `r` for `platform`: resolves the tag (one manifest GET) or
    /// uses the digest, picks the platform's manifest from an index (skipping
    /// attestation manifests), fetches the config and the SLSA provenance
    /// attestations that point at the chosen manifest.
    ///
    /// A single-platform manifest is returned whatever its platform (docker pulls
    /// it too); compare [`RemoteImage::platform`].
    ///
    /// # Errors
    /// - [`RegistryError::NotFound`]: unknown repository, tag, manifest or config.
    /// - [`RegistryError::NoPlatform`]: an index without a matching manifest.
    /// - [`RegistryError::Unreachable`], [`RegistryError::AuthRefused`],
    ///   [`RegistryError::Credentials`], [`RegistryError::PlainHttpCredentials`].
    /// - [`RegistryError::DigestMismatch`], [`RegistryError::TooLarge`],
    ///   [`RegistryError::Protocol`] (bad JSON, schema 1, unknown media type).
    ///
    /// A broken attestation is not an error: it goes to
    /// [`RemoteImage::attestation_errors`].
    pub async fn image(
        &self,
        r: &Reference,
        platform: &Platform,
    ) -> Result<RemoteImage, RegistryError> {
        let (top_digest, top_bytes) = self.manifest(r, r.manifest_reference()).await?;
        let top = self.parse_manifest(r, r.manifest_reference(), &top_bytes)?;
        let (index_digest, manifest_digest, manifest, entry_platform, att_entries) = match top.0 {
            Kind::Manifest => (None, top_digest, top.1, None, vec![]),
            Kind::Index => {
                let entries = top
                    .1
                    .get("manifests")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let images: Vec<(&Value, Platform)> = entries
                    .iter()
                    .filter(|e| !is_attestation(e))
                    .filter_map(|e| entry_platform(e).map(|p| (e, p)))
                    .collect();
                let Some((chosen, chosen_platform)) =
                    images.iter().find(|(_, p)| platform.matches(p))
                else {
                    let mut available: Vec<String> =
                        images.iter().map(|(_, p)| p.to_string()).collect();
                    available.dedup();
                    return Err(RegistryError::NoPlatform {
                        reference: r.familiar(),
                        wanted: platform.to_string(),
                        available: if available.is_empty() {
                            "none".into()
                        } else {
                            available.join(", ")
                        },
                    });
                };
                let digest = self.descriptor_digest(r, chosen, "index entry")?;
                self.check_size(r, chosen, MANIFEST_LIMIT, "manifest", &digest)?;
                let (_, bytes) = self.manifest(r, &digest).await?;
                let (kind, manifest) = self.parse_manifest(r, &digest, &bytes)?;
                if !matches!(kind, Kind::Manifest) {
                    return Err(self.protocol(
                            r,
                            format!(
                                "index entry {digest} of {} is itself an index; nested indexes are not supported",
                                r.familiar()
                            ),
                        ));
                }
                let atts: Vec<Value> = entries
                    .iter()
                    .filter(|e| {
                        is_attestation(e)
                            && e.pointer("/annotations")
                                .and_then(|a| a.get(provenance::REFERENCE_DIGEST))
                                .and_then(Value::as_str)
                                == Some(digest.as_str())
                    })
                    .cloned()
                    .collect();
                (
                    Some(top_digest),
                    digest,
                    manifest,
                    Some(chosen_platform.clone()),
                    atts,
                )
            }
        };
        let config_desc = manifest
            .get("config")
            .ok_or_else(|| self.protocol(r, format!("manifest {manifest_digest} has no config")))?;
        let config_digest = self.descriptor_digest(r, config_desc, "config descriptor")?;
        self.check_size(r, config_desc, BLOB_LIMIT, "config", &config_digest)?;
        let config_bytes = self.blob(r, &config_digest, BLOB_LIMIT, "config").await?;
        let config: Value = serde_json::from_slice(&config_bytes)
            .map_err(|e| self.protocol(r, format!("config {config_digest} is not JSON: {e}")))?;
        let platform = entry_platform.or_else(|| config_platform(&config));
        let mut attestations = vec![];
        let mut attestation_errors = vec![];
        for entry in &att_entries {
            match self.attestations(r, entry).await {
                Ok((found, errors)) => {
                    attestations.extend(found);
                    attestation_errors.extend(errors);
                }
                Err(e) => attestation_errors.push(format!(
                    "attestation manifest {}: {e}",
                    entry.get("digest").and_then(Value::as_str).unwrap_or("?")
                )),
            }
        }
        Ok(RemoteImage {
            index_digest,
            manifest_digest,
            config_digest,
            config,
            platform,
            attestations,
            attestation_errors,
        })
    }

    /// Reads one attestation manifest and its SLSA provenance layers.
    async fn attestations(
        &self,
        r: &Reference,
        entry: &Value,
    ) -> Result<(Vec<Provenance>, Vec<String>), RegistryError> {
        let digest = self.descriptor_digest(r, entry, "attestation entry")?;
        self.check_size(r, entry, MANIFEST_LIMIT, "attestation manifest", &digest)?;
        let (_, bytes) = self.manifest(r, &digest).await?;
        let (_, manifest) = self.parse_manifest(r, &digest, &bytes)?;
        let mut found = vec![];
        let mut errors = vec![];
        let layers = manifest
            .get("layers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for layer in &layers {
            let Some(predicate_type) = provenance::slsa_layer_type(layer) else {
                continue;
            };
            let result = async {
                let d = self.descriptor_digest(r, layer, "attestation layer")?;
                self.check_size(r, layer, BLOB_LIMIT, "attestation", &d)?;
                let bytes = self.blob(r, &d, BLOB_LIMIT, "attestation").await?;
                Ok::<_, RegistryError>((d, bytes))
            }
            .await;
            match result {
                Ok((d, bytes)) => match provenance::parse_statement(&bytes) {
                    Ok(p) => found.push(p),
                    // An in-toto layer without annotation that is not provenance.
                    Err(e) if predicate_type.is_empty() && e.contains("is not SLSA") => {}
                    Err(e) => errors.push(format!("attestation {d}: {e}")),
                },
                Err(e) => errors.push(e.to_string()),
            }
        }
        Ok((found, errors))
    }

    /// Parses a manifest document and tells its kind from `mediaType` (or, for
    /// OCI documents without it, from `manifests`/`config`).
    fn parse_manifest(
        &self,
        r: &Reference,
        id: &str,
        bytes: &[u8],
    ) -> Result<(Kind, Value), RegistryError> {
        let name = r.familiar_name();
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| self.protocol(r, format!("manifest {name}@{id} is not JSON: {e}")))?;
        let media = v.get("mediaType").and_then(Value::as_str).unwrap_or("");
        if v.get("schemaVersion").and_then(Value::as_u64) == Some(1)
            || media.starts_with("application/vnd.docker.distribution.manifest.v1")
        {
            return Err(self.protocol(
                r,
                format!(
                    "manifest {name}@{id} is a Docker schema 1 manifest, which is not supported; push the image again with a current docker or buildx"
                ),
            ));
        }
        let kind = match media {
            OCI_INDEX | DOCKER_LIST => Kind::Index,
            OCI_MANIFEST | DOCKER_MANIFEST => Kind::Manifest,
            "" if v.get("manifests").is_some() => Kind::Index,
            "" if v.get("config").is_some() => Kind::Manifest,
            other => {
                return Err(self.protocol(
                    r,
                    format!(
                        "manifest {name}@{id} has media type \"{other}\", which is not an image index or manifest"
                    ),
                ));
            }
        };
        Ok((kind, v))
    }

    /// The `digest` of a descriptor, checked to be `sha256:<hex>`.
    fn descriptor_digest(
        &self,
        r: &Reference,
        desc: &Value,
        what: &str,
    ) -> Result<String, RegistryError> {
        let d = desc.get("digest").and_then(Value::as_str).unwrap_or("");
        reference::parse_digest(d)
            .map_err(|e| self.protocol(r, format!("{what} in {}: {e}", r.familiar())))
    }

    /// A descriptor's `size` over `limit` is refused before fetching.
    fn check_size(
        &self,
        r: &Reference,
        desc: &Value,
        limit: u64,
        what: &'static str,
        digest: &str,
    ) -> Result<(), RegistryError> {
        match desc.get("size").and_then(Value::as_u64) {
            Some(size) if size > limit => Err(RegistryError::TooLarge {
                what,
                digest_or_tag: digest.to_string(),
                registry: r.registry.clone(),
                limit,
            }),
            _ => Ok(()),
        }
    }

    fn protocol(&self, r: &Reference, detail: String) -> RegistryError {
        RegistryError::Protocol {
            registry: r.registry.clone(),
            detail: redact_value(&detail),
        }
    }

    /// A manifest by tag or digest: `(digest, bytes)`. By digest: from the cache
    /// when there, else fetched and verified. By tag: always fetched; the digest is
    /// the sha256 of the bytes, checked against `Docker-Content-Digest`.
    async fn manifest(&self, r: &Reference, id: &str) -> Result<(String, Vec<u8>), RegistryError> {
        let by_digest = id.starts_with("sha256:");
        if by_digest
            && let Some(bytes) = self.cache.as_ref().and_then(|c| c.get(id, MANIFEST_LIMIT))
        {
            return Ok((id.to_string(), bytes));
        }
        let accept = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(", ");
        let (bytes, header_digest) = self
            .fetch(
                r,
                &format!("manifests/{id}"),
                Some(&accept),
                MANIFEST_LIMIT,
                "manifest",
                id,
            )
            .await?;
        let actual = sha256_digest(&bytes);
        let expected = if by_digest {
            Some(id.to_string())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(RegistryError::DigestMismatch {
                what: "manifest",
                registry: r.registry.clone(),
                expected,
                actual,
            });
        }
        if let Some(c) = &self.cache {
            c.put(&actual, &bytes);
        }
        Ok((actual, bytes))
    }

    /// A blob by digest, from the cache or fetched and verified.
    async fn blob(
        &self,
        r: &Reference,
        digest: &str,
        limit: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, RegistryError> {
        if let Some(bytes) = self.cache.as_ref().and_then(|c| c.get(digest, limit)) {
            return Ok(bytes);
        }
        let (bytes, _) = self
            .fetch(r, &format!("blobs/{digest}"), None, limit, what, digest)
            .await?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                what,
                registry: r.registry.clone(),
                expected: digest.to_string(),
                actual,
            });
        }
        if let Some(c) = &self.cache {
            c.put(digest, &bytes);
        }
        Ok(bytes)
    }

    /// `GET /v2/<repository>/<path>`, authenticating on 401 and retrying once.
    /// Returns the body (at most `limit` bytes) and `Docker-Content-Digest`.
    async fn fetch(
        &self,
        r: &Reference,
        path: &str,
        accept: Option<&str>,
        limit: u64,
        what: &'static str,
        id: &str,
    ) -> Result<(Vec<u8>, Option<String>), RegistryError> {
        if self.offline {
            return Err(RegistryError::NotCached {
                what,
                reference: redact_value(&format!("{}/{}", r.registry, r.repository)),
                id: id.to_string(),
            });
        }
        let url_path = format!("/v2/{}/{path}", r.repository);
        let key = (r.registry.clone(), r.repository.clone());
        let cached = self.auth.lock().expect("auth lock").get(&key).cloned();
        let (mut resp, scheme) = self.send(r, &url_path, accept, cached.as_deref()).await?;
        let mut sent_credentials = None;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenges: Vec<Challenge> = resp
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(parse_challenges)
                .collect();
            let (header, had_credentials) = self.authenticate(r, &challenges, scheme).await?;
            self.auth
                .lock()
                .expect("auth lock")
                .insert(key.clone(), header.clone());
            sent_credentials = Some(had_credentials);
            resp = self.send(r, &url_path, accept, Some(&header)).await?.0;
        }
        let status = resp.status();
        if status.is_success() {
            let header_digest = resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = self.read_limited(r, resp, limit, what, id).await?;
            self.fetches.fetch_add(1, Ordering::Relaxed);
            return Ok((bytes, header_digest));
        }
        let body = self
            .read_limited(r, resp, 64 << 10, what, id)
            .await
            .unwrap_or_default();
        let (codes, message) = registry_errors(&body);
        match status.as_u16() {
            401 | 403 => {
                if status.as_u16() == 401 || sent_credentials.is_some() {
                    self.auth.lock().expect("auth lock").remove(&key);
                }
                let key_name = auth::auth_key(&r.registry);
                let reason = match sent_credentials {
                    Some(true) => format!(
                        "the credentials stored for {key_name} were refused ({status}{message}); run `docker login {}` again",
                        r.registry
                    ),
                    _ => format!(
                        "pull access denied ({status}{message}); the repository may not exist, or needs `docker login {}`",
                        r.registry
                    ),
                };
                Err(RegistryError::AuthRefused {
                    registry: r.registry.clone(),
                    repository: r.repository.clone(),
                    reason,
                })
            }
            404 => {
                let what = if codes.iter().any(|c| c == "NAME_UNKNOWN") {
                    "repository"
                } else if what == "manifest" && !id.starts_with("sha256:") {
                    "tag"
                } else if what == "manifest" {
                    "manifest"
                } else {
                    "blob"
                };
                let reference = match what {
                    "repository" => format!("{} (registry {})", r.familiar_name(), r.registry),
                    "tag" => format!("{}:{id}", r.familiar_name()),
                    _ => format!("{}@{id}", r.familiar_name()),
                };
                Err(RegistryError::NotFound { what, reference })
            }
            _ => Err(self.protocol(r, format!("GET {url_path} answered {status}{message}"))),
        }
    }

    /// Reads a response body, refusing more than `limit` bytes.
    async fn read_limited(
        &self,
        r: &Reference,
        mut resp: reqwest::Response,
        limit: u64,
        what: &'static str,
        id: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let too_large = || RegistryError::TooLarge {
            what,
            digest_or_tag: id.to_string(),
            registry: r.registry.clone(),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut out = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if out.len() as u64 + chunk.len() as u64 > limit {
                        return Err(too_large());
                    }
                    out.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(out),
                Err(e) => {
                    return Err(RegistryError::Unreachable {
                        registry: r.registry.clone(),
                        reason: self.describe(&e, "reading the answer"),
                    });
                }
            }
        }
    }

    /// Sends one GET to the registry, choosing the scheme: https, and for an
    /// insecure registry http when https cannot connect or handshake.
    async fn send(
        &self,
        r: &Reference,
        path: &str,
        accept: Option<&str>,
        auth: Option<&str>,
    ) -> Result<(reqwest::Response, &'static str), RegistryError> {
        let remembered = self
            .schemes
            .lock()
            .expect("scheme lock")
            .get(&r.registry)
            .copied();
        let insecure = self.is_insecure(&r.registry).await;
        let schemes: Vec<&'static str> = match remembered {
            Some(s) => vec![s],
            None if insecure => vec!["https", "http"],
            None => vec!["https"],
        };
        let mut last_err = String::new();
        for (i, scheme) in schemes.iter().enumerate() {
            let url = format!("{scheme}://{}{path}", r.registry);
            if auth.is_some_and(|a| a.starts_with("Basic "))
                && !credentials_allowed(scheme, &r.registry)
            {
                return Err(RegistryError::PlainHttpCredentials {
                    registry: r.registry.clone(),
                    url: redact_value(&url),
                });
            }
            let client = self.client_for(*scheme == "https" && insecure, &r.registry)?;
            let mut req = client.get(&url);
            if let Some(a) = accept {
                req = req.header(reqwest::header::ACCEPT, a);
            }
            if let Some(a) = auth {
                req = req.header(reqwest::header::AUTHORIZATION, a);
            }
            match req.send().await {
                Ok(resp) => {
                    self.schemes
                        .lock()
                        .expect("scheme lock")
                        .insert(r.registry.clone(), scheme);
                    return Ok((resp, scheme));
                }
                Err(e) => {
                    last_err = self.describe(&e, &format!("{scheme}://{}", r.registry));
                    let fallback = e.is_connect() && i + 1 < schemes.len();
                    if !fallback {
                        break;
                    }
                }
            }
        }
        Err(RegistryError::Unreachable {
            registry: r.registry.clone(),
            reason: last_err,
        })
    }

    fn client_for(
        &self,
        unverified: bool,
        registry: &str,
    ) -> Result<&reqwest::Client, RegistryError> {
        if unverified {
            return Ok(&self.unverified);
        }
        self.secure
            .as_ref()
            .map_err(|e| RegistryError::Unreachable {
                registry: registry.to_string(),
                reason: format!("TLS: {e} (install the ca-certificates package)"),
            })
    }

    /// A one-line reason for a transport error, without the URL's secrets.
    fn describe(&self, e: &reqwest::Error, what: &str) -> String {
        if e.is_timeout() {
            return format!(
                "{what}: no answer within {} seconds (MICROSCALE_TIMEOUT)",
                self.timeout.as_secs()
            );
        }
        let root = crate::engine::root_cause(e);
        let lower = root.to_ascii_lowercase();
        let hint = if lower.contains("connection refused") {
            "nothing listens there: is the registry running, and is the port right?"
        } else if lower.contains("dns error")
            || lower.contains("lookup")
            || lower.contains("name or service not known")
            || lower.contains("no address associated")
        {
            "the host name does not resolve: check the image's registry name and the DNS"
        } else if lower.contains("certificate")
            || lower.contains("tls")
            || lower.contains("handshake")
            || lower.contains("ssl")
        {
            "TLS failed: for a registry without a trusted certificate, add it to the engine's insecure-registries in daemon.json"
        } else {
            "check the registry address and the network"
        };
        redact_value(&format!("{what}: {root} ({hint})"))
    }

    /// Whether `registry` may be used without verified TLS: loopback, listed, or
    /// resolving into a listed CIDR.
    async fn is_insecure(&self, registry: &str) -> bool {
        if is_loopback(registry)
            || self
                .insecure_hosts
                .iter()
                .any(|h| h == &registry.to_ascii_lowercase())
        {
            return true;
        }
        let host = host_of(registry);
        let ips: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) if self.insecure_nets.len() > 2 => {
                match tokio::time::timeout(self.timeout, tokio::net::lookup_host((host, 0))).await {
                    Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
                    _ => vec![],
                }
            }
            Err(_) => vec![],
        };
        ips.iter()
            .any(|ip| self.insecure_nets.iter().any(|n| n.contains(ip)))
    }

    /// Answers a 401: the Authorization header to retry with, and whether stored
    /// credentials went into it.
    async fn authenticate(
        &self,
        r: &Reference,
        challenges: &[Challenge],
        scheme: &str,
    ) -> Result<(String, bool), RegistryError> {
        let refused = |reason: String| RegistryError::AuthRefused {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            reason,
        };
        let key_name = auth::auth_key(&r.registry);
        let login_hint = |what: &str| {
            format!(
                "the registry requires {what} and none are stored for {key_name}{}; run `docker login {}`",
                match &self.creds.config_dir {
                    Some(d) => format!(" in {}", d.join("config.json").display()),
                    None => String::new(),
                },
                r.registry
            )
        };
        let bearer = challenges.iter().find(|c| c.scheme == "bearer");
        let basic = challenges.iter().find(|c| c.scheme == "basic");
        let cred = self.creds.lookup(&r.registry).await?;
        if let Some(challenge) = bearer {
            let url = token_url(challenge, &r.repository).map_err(|e| self.protocol(r, e))?;
            let realm_host = match url.port() {
                Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
                None => url.host_str().unwrap_or("").to_string(),
            };
            let realm_host = if url.host_str().is_some_and(|h| h.contains(':')) {
                format!(
                    "[{}]{}",
                    url.host_str().unwrap_or(""),
                    url.port().map(|p| format!(":{p}")).unwrap_or_default()
                )
            } else {
                realm_host
            };
            if cred.is_some() && !credentials_allowed(url.scheme(), &realm_host) {
                return Err(RegistryError::PlainHttpCredentials {
                    registry: r.registry.clone(),
                    url: redact_value(url.as_str()),
                });
            }
            let unverified = url.scheme() == "https"
                && (realm_host == r.registry || self.is_insecure(&realm_host).await);
            let client = self.client_for(unverified, &r.registry)?;
            let req = match &cred {
                Some(Credential::IdentityToken(token)) => {
                    let mut base = url.clone();
                    base.set_query(None);
                    let mut form: Vec<(&str, String)> = vec![
                        ("grant_type", "refresh_token".into()),
                        ("refresh_token", token.clone()),
                        ("client_id", "docker-microscale".into()),
                        ("scope", format!("repository:{}:pull", r.repository)),
                    ];
                    if let Some(s) = challenge.params.get("service") {
                        form.push(("service", s.clone()));
                    }
                    client.post(base).form(&form)
                }
                Some(c @ Credential::Basic { .. }) => client.get(url.clone()).header(
                    reqwest::header::AUTHORIZATION,
                    c.basic_header().unwrap_or_default(),
                ),
                None => client.get(url.clone()),
            };
            let resp = req.send().await.map_err(|e| RegistryError::Unreachable {
                registry: r.registry.clone(),
                reason: self.describe(
                    &e,
                    &format!("authorization service {}", redact_value(url.as_str())),
                ),
            })?;
            let status = resp.status();
            let body = self
                .read_limited(r, resp, TOKEN_LIMIT, "token answer", "token")
                .await?;
            if status.as_u16() == 401 || status.as_u16() == 403 {
                let (_, message) = registry_errors(&body);
                return Err(refused(if cred.is_some() {
                    format!(
                        "the authorization service refused the credentials stored for {key_name} ({status}{}); run `docker login {}` again",
                        message, r.registry
                    )
                } else {
                    login_hint("credentials")
                }));
            }
            if !status.is_success() {
                return Err(self.protocol(
                    r,
                    format!("authorization service {} answered {status}", url.as_str()),
                ));
            }
            let token = auth::token_from_reply(&body).ok_or_else(|| {
                self.protocol(
                    r,
                    "the authorization service answered without a token".into(),
                )
            })?;
            return Ok((format!("Bearer {token}"), cred.is_some()));
        }
        if basic.is_some() {
            return match cred {
                Some(c @ Credential::Basic { .. }) => {
                    if !credentials_allowed(scheme, &r.registry) {
                        return Err(RegistryError::PlainHttpCredentials {
                            registry: r.registry.clone(),
                            url: format!("http://{}", r.registry),
                        });
                    }
                    Ok((c.basic_header().unwrap_or_default(), true))
                }
                Some(Credential::IdentityToken(_)) => Err(refused(format!(
                    "the registry wants a user name and password, but only an identity token is stored for {key_name}; run `docker login {}`",
                    r.registry
                ))),
                None => Err(refused(login_hint("credentials"))),
            };
        }
        Err(self.protocol(
            r,
            "the registry answered 401 without an authentication challenge (WWW-Authenticate) this client knows".into(),
        ))
    }
}

/// Whether an index entry is a BuildKit attestation manifest.
fn is_attestation(entry: &Value) -> bool {
    entry
        .pointer("/annotations")
        .and_then(|a| a.get(provenance::REFERENCE_TYPE))
        .and_then(Value::as_str)
        == Some(provenance::ATTESTATION_MANIFEST)
}

/// The `platform` of an index entry; `None` when absent or `unknown/unknown`.
fn entry_platform(entry: &Value) -> Option<Platform> {
    let p = entry.get("platform")?;
    let os = p.get("os").and_then(Value::as_str)?;
    let arch = p.get("architecture").and_then(Value::as_str)?;
    if os == "unknown" || arch == "unknown" {
        return None;
    }
    Some(Platform::new(
        os,
        arch,
        p.get("variant").and_then(Value::as_str),
    ))
}

/// The platform an image config declares (`os`, `architecture`, `variant`).
fn config_platform(config: &Value) -> Option<Platform> {
    let os = config.get("os").and_then(Value::as_str)?;
    let arch = config.get("architecture").and_then(Value::as_str)?;
    Some(Platform::new(
        os,
        arch,
        config.get("variant").and_then(Value::as_str),
    ))
}

/// `host` of `host[:port]` (`[v6]:port` gives the bare address).
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// Whether credentials may be sent with `scheme` to `host[:port]`: over https
/// always, over plain http only to loopback.
fn credentials_allowed(scheme: &str, host: &str) -> bool {
    scheme == "https" || is_loopback(host)
}

/// `localhost` or a loopback IP literal.
fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The error codes and a `: message` suffix (redacted) from a registry error body
/// (distribution-spec "Error Codes": `{"errors":[{"code","message","detail"}]}`).
fn registry_errors(body: &[u8]) -> (Vec<String>, String) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (vec![], String::new());
    };
    let errors = v
        .get("errors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let codes = errors
        .iter()
        .filter_map(|e| e.get("code").and_then(Value::as_str).map(str::to_string))
        .collect();
    let messages: Vec<&str> = errors
        .iter()
        .filter_map(|e| e.get("message").and_then(Value::as_str))
        .collect();
    let message = if messages.is_empty() {
        String::new()
    } else {
        // The registry's words: one line, no terminal control, no secrets.
        let text: String = messages.join("; ").chars().take(500).collect();
        format!(": {}", crate::edge::text::printable(&redact_value(&text)))
    };
    (codes, message)
}
