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
//!
//! The manifest and blob GETs, their `Accept` and `Authorization` headers, the
//! registry's error bodies and the manifest documents (`OciImageIndex`,
//! `OciImageManifest`) are the `oci-client` crate's; `auths` credentials are decoded
//! by `docker_credential`. This module keeps what those crates cannot do for us:
//!
//! - which scheme and TLS checks a registry gets (`insecure`: the engine's
//!   `insecure-registries`, CIDRs included, https then plain http, loopback always),
//!   and the first `GET /v2/` that learns it ([`Client::new`], `send`);
//! - the token request ([`auth`]): OAuth2 identity tokens (`grant_type=refresh_token`
//!   POST), no credentials over plain http to another host, the token service's
//!   refusal told apart from the registry's, a size cap on its answer;
//! - credential helpers ([`auth`]): a time limit, a helper directory, "not installed"
//!   named, and nothing a helper prints repeated;
//! - the size caps ([`MANIFEST_LIMIT`], [`BLOB_LIMIT`]), the sha256 check of every
//!   document before it is trusted or cached, and the cache ([`cache`]);
//! - reference parsing ([`reference`]) and platform matching ([`platform`]).

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

use futures_util::StreamExt;
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::manifest::{ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest};
use oci_client::secrets::RegistryAuth;
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
/// distribution spec's recommended limit). A descriptor that declares more is
/// refused before the GET; an answer over it is refused once read (`oci-client`
/// reads a manifest answer whole).
pub const MANIFEST_LIMIT: u64 = 4 << 20;
/// Largest config or attestation blob accepted, in bytes (16 MiB), checked against
/// the descriptor, the answer's `Content-Length` and while reading.
pub const BLOB_LIMIT: u64 = 16 << 20;
/// Largest token-endpoint answer accepted, in bytes.
const TOKEN_LIMIT: u64 = 1 << 20;

/// OCI image index (`application/vnd.oci.image.index.v1+json`).
pub const OCI_INDEX: &str = oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE;
/// OCI image manifest (`application/vnd.oci.image.manifest.v1+json`).
pub const OCI_MANIFEST: &str = oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
/// Docker manifest list (schema 2).
pub const DOCKER_LIST: &str = oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE;
/// Docker image manifest v2 schema 2.
pub const DOCKER_MANIFEST: &str = oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE;

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

/// A manifest document, as `oci-client` types it.
enum Document {
    Index(OciImageIndex),
    Manifest(Box<OciImageManifest>),
}

/// The `oci-client` clients, one per way of reaching a registry.
struct Oci {
    /// https with certificate checks (the system's roots); an error when the
    /// system has no roots.
    verified: Result<oci_client::Client, String>,
    /// https without certificate checks, for insecure registries.
    unverified: oci_client::Client,
    /// Plain http, for insecure registries that do not speak TLS.
    http: oci_client::Client,
}

/// How one repository is read: the `oci-client` credentials, and whether stored
/// credentials went into them.
#[derive(Clone)]
struct Access {
    auth: RegistryAuth,
    credentials: bool,
}

/// A registry client. Cheap to share (`&Client` across tasks); it keeps the scheme
/// that worked for each registry, its authentication challenges, and the
/// credentials for each repository.
pub struct Client {
    /// Verifying TLS (system roots), for the first `GET /v2/` and token requests;
    /// an error when the system has no roots.
    secure: Result<reqwest::Client, String>,
    /// TLS without certificate checks, for insecure registries.
    unverified: reqwest::Client,
    /// Manifest and blob GETs.
    oci: Oci,
    creds: CredentialSource,
    cache: Option<Cache>,
    insecure_hosts: Vec<String>,
    insecure_nets: Vec<ipnet::IpNet>,
    timeout: Duration,
    offline: bool,
    fetches: AtomicU64,
    /// registry -> "https" or "http", once a request got an answer.
    schemes: Mutex<HashMap<String, &'static str>>,
    /// registry -> the challenges of its `GET /v2/` (empty: no authentication).
    challenges: Mutex<HashMap<String, Vec<Challenge>>>,
    /// (registry, repository) -> how it is read.
    access: Mutex<HashMap<(String, String), Access>>,
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
        use oci_client::client::{ClientConfig, ClientProtocol};
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
        const USER_AGENT: &str = concat!("docker-microscale/", env!("CARGO_PKG_VERSION"));
        let build = |cfg: rustls::ClientConfig| {
            reqwest::Client::builder()
                .use_preconfigured_tls(cfg)
                .timeout(opts.timeout)
                .connect_timeout(opts.timeout)
                .user_agent(USER_AGENT)
                .build()
                .map_err(|e| RegistryError::Setup(format!("HTTP client: {e}")))
        };
        // Our reqwest has no roots of its own (`rustls-tls-manual-roots`): a verifying
        // client gets the system's, as `tls_config` trusts them.
        let oci = |protocol: ClientProtocol, verify: bool| {
            let config = ClientConfig {
                protocol,
                accept_invalid_certificates: !verify,
                extra_root_certificates: if verify { system_roots() } else { vec![] },
                platform_resolver: None,
                connect_timeout: Some(opts.timeout),
                read_timeout: Some(opts.timeout),
                user_agent: USER_AGENT,
                ..ClientConfig::default()
            };
            oci_client::Client::try_from(config)
                .map_err(|e| RegistryError::Setup(format!("HTTP client: {e}")))
        };
        let mut tls = TlsSettings {
            ca: None,
            cert: None,
            key: None,
            verify: true,
        };
        // Offline, no request is made: skip loading the system's trusted roots.
        let (secure, verified) = if opts.offline {
            (Err("offline".to_string()), Err("offline".to_string()))
        } else {
            match tls_config(&tls) {
                Ok(cfg) => (Ok(build(cfg)?), Ok(oci(ClientProtocol::Https, true)?)),
                Err(e) => (Err(e.clone()), Err(e)),
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
            oci: Oci {
                verified,
                unverified: oci(ClientProtocol::Https, false)?,
                http: oci(ClientProtocol::Http, false)?,
            },
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
            challenges: Mutex::new(HashMap::new()),
            access: Mutex::new(HashMap::new()),
        })
    }

    /// How many manifests and blobs were fetched over the network so far (cache
    /// hits, `GET /v2/` and token requests do not count). For tests.
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
        let (index_digest, manifest_digest, manifest, entry_platform, att_entries) = match top {
            Document::Manifest(m) => (None, top_digest, m, None, vec![]),
            Document::Index(index) => {
                let images: Vec<(&ImageIndexEntry, Platform)> = index
                    .manifests
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
                let digest = self.descriptor_digest(r, &chosen.digest, "index entry")?;
                self.check_size(r, chosen.size, MANIFEST_LIMIT, "manifest", &digest)?;
                let (_, bytes) = self.manifest(r, &digest).await?;
                let Document::Manifest(manifest) = self.parse_manifest(r, &digest, &bytes)? else {
                    return Err(self.protocol(
                        r,
                        format!(
                            "index entry {digest} of {} is itself an index; nested indexes are not supported",
                            r.familiar()
                        ),
                    ));
                };
                let atts: Vec<ImageIndexEntry> = index
                    .manifests
                    .iter()
                    .filter(|e| {
                        is_attestation(e)
                            && annotation(e.annotations.as_ref(), provenance::REFERENCE_DIGEST)
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
        let config_desc = &manifest.config;
        let config_digest = self.descriptor_digest(r, &config_desc.digest, "config descriptor")?;
        self.check_size(r, config_desc.size, BLOB_LIMIT, "config", &config_digest)?;
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
                    redact_value(&entry.digest)
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
        entry: &ImageIndexEntry,
    ) -> Result<(Vec<Provenance>, Vec<String>), RegistryError> {
        let digest = self.descriptor_digest(r, &entry.digest, "attestation entry")?;
        self.check_size(
            r,
            entry.size,
            MANIFEST_LIMIT,
            "attestation manifest",
            &digest,
        )?;
        let (_, bytes) = self.manifest(r, &digest).await?;
        let layers = match self.parse_manifest(r, &digest, &bytes)? {
            Document::Manifest(m) => m.layers,
            Document::Index(_) => vec![],
        };
        let mut found = vec![];
        let mut errors = vec![];
        for layer in &layers {
            let layer_json = serde_json::to_value(layer).unwrap_or_default();
            let Some(predicate_type) = provenance::slsa_layer_type(&layer_json) else {
                continue;
            };
            let result = async {
                let d = self.descriptor_digest(r, &layer.digest, "attestation layer")?;
                self.check_size(r, layer.size, BLOB_LIMIT, "attestation", &d)?;
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

    /// Parses a manifest document into `oci-client`'s types, telling its kind from
    /// `mediaType` (or, for OCI documents without it, from `manifests`/`config`).
    /// Schema 1 manifests and other media types are refused with what they are.
    fn parse_manifest(
        &self,
        r: &Reference,
        id: &str,
        bytes: &[u8],
    ) -> Result<Document, RegistryError> {
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
        let index = match media {
            OCI_INDEX | DOCKER_LIST => true,
            OCI_MANIFEST | DOCKER_MANIFEST => false,
            "" if v.get("manifests").is_some() => true,
            "" if v.get("config").is_some() => false,
            other => {
                return Err(self.protocol(
                    r,
                    format!(
                        "manifest {name}@{id} has media type \"{other}\", which is not an image index or manifest"
                    ),
                ));
            }
        };
        let invalid = |e: serde_json::Error| {
            let kind = if index {
                "image index"
            } else {
                "image manifest"
            };
            self.protocol(
                r,
                format!("manifest {name}@{id} is not a valid {kind}: {e}"),
            )
        };
        if index {
            serde_json::from_value(v)
                .map(Document::Index)
                .map_err(invalid)
        } else {
            serde_json::from_value(v)
                .map(|m| Document::Manifest(Box::new(m)))
                .map_err(invalid)
        }
    }

    /// The `digest` of a descriptor, checked to be `sha256:<hex>`.
    fn descriptor_digest(
        &self,
        r: &Reference,
        digest: &str,
        what: &str,
    ) -> Result<String, RegistryError> {
        reference::parse_digest(digest)
            .map_err(|e| self.protocol(r, format!("{what} in {}: {e}", r.familiar())))
    }

    /// A descriptor's `size` over `limit` is refused before fetching.
    fn check_size(
        &self,
        r: &Reference,
        size: i64,
        limit: u64,
        what: &'static str,
        digest: &str,
    ) -> Result<(), RegistryError> {
        if u64::try_from(size).is_ok_and(|size| size > limit) {
            return Err(RegistryError::TooLarge {
                what,
                digest_or_tag: digest.to_string(),
                registry: r.registry.clone(),
                limit,
            });
        }
        Ok(())
    }

    fn protocol(&self, r: &Reference, detail: String) -> RegistryError {
        RegistryError::Protocol {
            registry: r.registry.clone(),
            detail: redact_value(&detail),
        }
    }

    /// A manifest by tag or digest: `(digest, bytes)`. By digest: from the cache
    /// when there, else fetched and verified. By tag: always fetched; `oci-client`
    /// checks the bytes against `Docker-Content-Digest`, and the digest is their
    /// sha256.
    async fn manifest(&self, r: &Reference, id: &str) -> Result<(String, Vec<u8>), RegistryError> {
        let by_digest = id.starts_with("sha256:");
        if by_digest
            && let Some(bytes) = self.cache.as_ref().and_then(|c| c.get(id, MANIFEST_LIMIT))
        {
            return Ok((id.to_string(), bytes));
        }
        let bytes = self.pull(r, id, MANIFEST_LIMIT, "manifest").await?;
        let actual = sha256_digest(&bytes);
        if by_digest && actual != id {
            return Err(RegistryError::DigestMismatch {
                what: "manifest",
                registry: r.registry.clone(),
                expected: id.to_string(),
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
        let bytes = self.pull(r, digest, limit, what).await?;
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

    /// One manifest (`what` is "manifest"; `id` a tag or digest) or blob (`id` its
    /// digest) from the registry through `oci-client`: authenticated, within the
    /// time limit, at most `limit` bytes. A 401 with credentials kept from an
    /// earlier request is answered once with fresh ones.
    async fn pull(
        &self,
        r: &Reference,
        id: &str,
        limit: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, RegistryError> {
        if self.offline {
            return Err(RegistryError::NotCached {
                what,
                reference: redact_value(&format!("{}/{}", r.registry, r.repository)),
                id: id.to_string(),
            });
        }
        let mut renewed = false;
        loop {
            let (oci, access, fresh) = self.access(r).await?;
            let got =
                tokio::time::timeout(self.timeout, self.get(oci, &access, r, id, limit, what))
                    .await
                    .map_err(|_| self.out_of_time(r, &format!("{what} {id}")))?;
            let answer = match got {
                Ok(bytes) => {
                    self.fetches.fetch_add(1, Ordering::Relaxed);
                    return Ok(bytes);
                }
                Err(Failure::Error(e)) => return Err(e),
                Err(Failure::Answer(answer)) => answer,
            };
            if matches!(answer.status, Some(401 | 403)) {
                let key = (r.registry.clone(), r.repository.clone());
                self.access.lock().expect("access lock").remove(&key);
                if answer.status == Some(401) && !fresh && !renewed {
                    renewed = true;
                    continue;
                }
            }
            return Err(self.refusal(r, answer, access.credentials, what, id));
        }
    }

    /// The GET of [`Client::pull`]. A blob is streamed (`oci-client` checks it
    /// against its digest and `Docker-Content-Digest`) and cut off past `limit`; a
    /// manifest is read whole by `oci-client` (checked against
    /// `Docker-Content-Digest` or the digest asked for), then held to `limit`.
    async fn get(
        &self,
        oci: &oci_client::Client,
        access: &Access,
        r: &Reference,
        id: &str,
        limit: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, Failure> {
        let too_large = || {
            Failure::Error(RegistryError::TooLarge {
                what,
                digest_or_tag: id.to_string(),
                registry: r.registry.clone(),
                limit,
            })
        };
        let image = oci_reference(r, id);
        if what == "manifest" {
            let accept = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];
            let (bytes, _) = oci
                .pull_manifest_raw(&image, &access.auth, &accept)
                .await
                .map_err(|e| self.failure(r, e, what))?;
            if bytes.len() as u64 > limit {
                return Err(too_large());
            }
            return Ok(bytes);
        }
        let descriptor = OciDescriptor {
            digest: id.to_string(),
            ..OciDescriptor::default()
        };
        let mut stream = oci
            .pull_blob_stream(&image, &descriptor)
            .await
            .map_err(|e| self.failure(r, e, what))?;
        if stream.content_length.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                Failure::Error(if e.get_ref().is_some_and(|i| i.is::<DigestError>()) {
                    RegistryError::DigestMismatch {
                        what,
                        registry: r.registry.clone(),
                        expected: id.to_string(),
                        actual: sha256_digest(&out),
                    }
                } else {
                    RegistryError::Unreachable {
                        registry: r.registry.clone(),
                        reason: redact_value(&format!(
                            "reading {what} {id}: {}",
                            crate::engine::root_cause(&e)
                        )),
                    }
                })
            })?;
            if out.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// What an `oci-client` error says: the registry's answer (status, error codes,
    /// message), or at once the [`RegistryError`] of a transport or content error.
    fn failure(&self, r: &Reference, e: OciDistributionError, what: &'static str) -> Failure {
        let answer = |status: u16, message: &str| {
            Failure::Answer(Answer {
                status: Some(status),
                codes: vec![],
                message: registry_errors(message.as_bytes()).1,
            })
        };
        match e {
            OciDistributionError::UnauthorizedError { .. } => answer(401, ""),
            OciDistributionError::ServerError { code, message, .. } => answer(code, &message),
            OciDistributionError::RequestError(e) => match e.status() {
                Some(status) => answer(status.as_u16(), ""),
                None => Failure::Error(RegistryError::Unreachable {
                    registry: r.registry.clone(),
                    reason: self.describe(&e, &format!("{what} from {}", r.registry)),
                }),
            },
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<String> = envelope
                    .errors
                    .iter()
                    .filter_map(|e| serde_json::to_value(&e.code).ok())
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect();
                let has = |c: &str| codes.iter().any(|x| x == c);
                let status = if has("UNAUTHORIZED") {
                    Some(401)
                } else if has("DENIED") {
                    Some(403)
                } else if [
                    "NAME_UNKNOWN",
                    "MANIFEST_UNKNOWN",
                    "BLOB_UNKNOWN",
                    "NOT_FOUND",
                ]
                .into_iter()
                .any(has)
                {
                    Some(404)
                } else {
                    None
                };
                let messages: Vec<String> =
                    envelope.errors.iter().map(|e| e.message.clone()).collect();
                Failure::Answer(Answer {
                    status,
                    codes,
                    message: one_line(&messages),
                })
            }
            OciDistributionError::DigestError(DigestError::VerificationError {
                expected,
                actual,
            }) => Failure::Error(RegistryError::DigestMismatch {
                what,
                registry: r.registry.clone(),
                expected,
                actual,
            }),
            other => Failure::Error(self.protocol(r, format!("{what}: {other}"))),
        }
    }

    /// The error for an answer other than the content: 401/403 (refused), 404 (not
    /// found: repository, tag, manifest or blob), anything else.
    fn refusal(
        &self,
        r: &Reference,
        answer: Answer,
        credentials: bool,
        what: &'static str,
        id: &str,
    ) -> RegistryError {
        let status = match answer.status {
            Some(code) => reqwest::StatusCode::from_u16(code)
                .map(|s| s.to_string())
                .unwrap_or_else(|_| code.to_string()),
            None => answer.codes.join(", "),
        };
        let message = &answer.message;
        match answer.status {
            Some(401 | 403) => {
                let key_name = auth::auth_key(&r.registry);
                let reason = if credentials {
                    format!(
                        "the credentials stored for {key_name} were refused ({status}{message}); run `docker login {}` again",
                        r.registry
                    )
                } else {
                    format!(
                        "pull access denied ({status}{message}); the repository may not exist, or needs `docker login {}`",
                        r.registry
                    )
                };
                RegistryError::AuthRefused {
                    registry: r.registry.clone(),
                    repository: r.repository.clone(),
                    reason,
                }
            }
            Some(404) => {
                let what = if answer.codes.iter().any(|c| c == "NAME_UNKNOWN") {
                    "repository"
                } else if what != "manifest" {
                    "blob"
                } else if id.starts_with("sha256:") {
                    "manifest"
                } else {
                    "tag"
                };
                let reference = match what {
                    "repository" => format!("{} (registry {})", r.familiar_name(), r.registry),
                    "tag" => format!("{}:{id}", r.familiar_name()),
                    _ => format!("{}@{id}", r.familiar_name()),
                };
                RegistryError::NotFound { what, reference }
            }
            _ => {
                let path = if what == "manifest" {
                    "manifests"
                } else {
                    "blobs"
                };
                let repo = &r.repository;
                self.protocol(
                    r,
                    format!("GET /v2/{repo}/{path}/{id} answered {status}{message}"),
                )
            }
        }
    }

    /// The `oci-client` client for `r`'s registry and how to read its repository:
    /// on first contact `GET /v2/` learns the scheme and the challenges, and a
    /// challenge is answered for the repository ([`Client::authenticate`]); the
    /// result is kept. The flag says whether it was made just now.
    async fn access(
        &self,
        r: &Reference,
    ) -> Result<(&oci_client::Client, Access, bool), RegistryError> {
        let key = (r.registry.clone(), r.repository.clone());
        let kept = self.access.lock().expect("access lock").get(&key).cloned();
        if let Some(access) = kept {
            let scheme = self
                .schemes
                .lock()
                .expect("scheme lock")
                .get(&r.registry)
                .copied();
            return Ok((
                self.oci_for(r, scheme.unwrap_or("https")).await?,
                access,
                false,
            ));
        }
        let (scheme, challenges) = self.ping(r).await?;
        let oci = self.oci_for(r, scheme).await?;
        let access = if challenges.is_empty() {
            Access {
                auth: RegistryAuth::Anonymous,
                credentials: false,
            }
        } else {
            let access = self.authenticate(r, &challenges, scheme).await?;
            // Hands the token (or, for Basic, the user and password) to oci-client
            // for this repository.
            let (image, op) = (
                oci_reference(r, "latest"),
                oci_client::RegistryOperation::Pull,
            );
            let handed = tokio::time::timeout(self.timeout, oci.auth(&image, &access.auth, op))
                .await
                .map_err(|_| self.out_of_time(r, "authorization"))?;
            if let Err(e) = handed {
                return Err(match self.failure(r, e, "authorization") {
                    Failure::Error(e) => e,
                    Failure::Answer(a) => {
                        self.refusal(r, a, access.credentials, "manifest", r.manifest_reference())
                    }
                });
            }
            access
        };
        self.access
            .lock()
            .expect("access lock")
            .insert(key, access.clone());
        Ok((oci, access, true))
    }

    /// [`RegistryError::Unreachable`] for `what` that got no answer in time.
    fn out_of_time(&self, r: &Reference, what: &str) -> RegistryError {
        RegistryError::Unreachable {
            registry: r.registry.clone(),
            reason: format!(
                "{what}: no answer within {} seconds (MICROSCALE_TIMEOUT)",
                self.timeout.as_secs()
            ),
        }
    }

    /// The `oci-client` client for `scheme` and `r`'s registry.
    async fn oci_for(
        &self,
        r: &Reference,
        scheme: &str,
    ) -> Result<&oci_client::Client, RegistryError> {
        if scheme == "http" {
            return Ok(&self.oci.http);
        }
        if self.is_insecure(&r.registry).await {
            return Ok(&self.oci.unverified);
        }
        self.oci
            .verified
            .as_ref()
            .map_err(|e| RegistryError::Unreachable {
                registry: r.registry.clone(),
                reason: format!("TLS: {e} (install the ca-certificates package)"),
            })
    }

    /// `GET /v2/` of `r`'s registry, once: the scheme that answered, and the
    /// challenges of a 401 (none: no authentication needed).
    async fn ping(&self, r: &Reference) -> Result<(&'static str, Vec<Challenge>), RegistryError> {
        let kept = self
            .challenges
            .lock()
            .expect("challenge lock")
            .get(&r.registry)
            .cloned();
        if let Some(challenges) = kept {
            let scheme = self
                .schemes
                .lock()
                .expect("scheme lock")
                .get(&r.registry)
                .copied();
            return Ok((scheme.unwrap_or("https"), challenges));
        }
        let (resp, scheme) = self.send(r, "/v2/").await?;
        let status = resp.status();
        let challenges: Vec<Challenge> = if status == reqwest::StatusCode::UNAUTHORIZED {
            let found: Vec<Challenge> = resp
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(parse_challenges)
                .collect();
            if found.is_empty() {
                return Err(self.protocol(
                    r,
                    "the registry answered 401 without an authentication challenge (WWW-Authenticate) this client knows".into(),
                ));
            }
            found
        } else if status.is_success() {
            vec![]
        } else {
            return Err(self.protocol(
                r,
                format!(
                    "GET /v2/ answered {status}; is {} an OCI distribution (docker) registry?",
                    r.registry
                ),
            ));
        };
        self.challenges
            .lock()
            .expect("challenge lock")
            .insert(r.registry.clone(), challenges.clone());
        Ok((scheme, challenges))
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

    /// Sends one GET without credentials to the registry, choosing the scheme:
    /// https, and for an insecure registry http when https cannot connect or
    /// handshake (as dockerd does for its `insecure-registries`).
    async fn send(
        &self,
        r: &Reference,
        path: &str,
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
            let client = self.client_for(*scheme == "https" && insecure, &r.registry)?;
            let req = client.get(&url);
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

    /// Answers the challenges of a registry for `r`'s repository: a Bearer token
    /// from the token service (with the stored user and password, an identity token
    /// as an OAuth2 refresh token, or none), or Basic credentials.
    async fn authenticate(
        &self,
        r: &Reference,
        challenges: &[Challenge],
        scheme: &str,
    ) -> Result<Access, RegistryError> {
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
            return Ok(Access {
                auth: RegistryAuth::Bearer(token),
                credentials: cred.is_some(),
            });
        }
        if basic.is_some() {
            return match cred {
                Some(Credential::Basic { username, password }) => {
                    if !credentials_allowed(scheme, &r.registry) {
                        return Err(RegistryError::PlainHttpCredentials {
                            registry: r.registry.clone(),
                            url: format!("http://{}", r.registry),
                        });
                    }
                    Ok(Access {
                        auth: RegistryAuth::Basic(username, password),
                        credentials: true,
                    })
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
fn is_attestation(entry: &ImageIndexEntry) -> bool {
    annotation(entry.annotations.as_ref(), provenance::REFERENCE_TYPE)
        == Some(provenance::ATTESTATION_MANIFEST)
}

/// The value of annotation `key`, if any.
fn annotation<'a>(
    annotations: Option<&'a std::collections::BTreeMap<String, String>>,
    key: &str,
) -> Option<&'a str> {
    annotations?.get(key).map(String::as_str)
}

/// The `platform` of an index entry; `None` when absent or `unknown/unknown`.
fn entry_platform(entry: &ImageIndexEntry) -> Option<Platform> {
    let p = entry.platform.as_ref()?;
    if p.os == "unknown" || p.architecture == "unknown" {
        return None;
    }
    Some(Platform::new(&p.os, &p.architecture, p.variant.as_deref()))
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

/// `r`'s repository at `id` (a tag or a digest), as `oci-client` names it.
fn oci_reference(r: &Reference, id: &str) -> oci_client::Reference {
    let (registry, repository) = (r.registry.clone(), r.repository.clone());
    if id.starts_with("sha256:") {
        oci_client::Reference::with_digest(registry, repository, id.to_string())
    } else {
        oci_client::Reference::with_tag(registry, repository, id.to_string())
    }
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
    let messages: Vec<String> = errors
        .iter()
        .filter_map(|e| e.get("message").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    let message = one_line(&messages);
    (codes, message)
}

/// Why a manifest or blob GET through `oci-client` did not give the content.
enum Failure {
    /// The registry answered something else (to be told by [`Client::refusal`]).
    Answer(Answer),
    /// The error itself (unreachable, too large, digest mismatch, protocol).
    Error(RegistryError),
}

/// A registry's answer other than the content: the HTTP status when known, the
/// distribution-spec error codes, and a `: message` suffix (redacted, one line).
struct Answer {
    status: Option<u16>,
    codes: Vec<String>,
    message: String,
}

/// The system's trusted roots (as [`crate::engine::transport::tls_config`] loads
/// them) as DER certificates for `oci-client`; certificates rustls cannot use are
/// left out.
fn system_roots() -> Vec<oci_client::client::Certificate> {
    rustls_native_certs::load_native_certs()
        .certs
        .into_iter()
        .filter(|cert| rustls::RootCertStore::empty().add(cert.clone()).is_ok())
        .map(|cert| oci_client::client::Certificate {
            encoding: oci_client::client::CertificateEncoding::Der,
            data: cert.to_vec(),
        })
        .collect()
}

/// `: message` for the registry's own words: one line, no terminal control, no
/// secrets, at most 500 characters; empty for none.
fn one_line(messages: &[String]) -> String {
    let messages: Vec<&str> = messages
        .iter()
        .map(String::as_str)
        .filter(|m| !m.is_empty())
        .collect();
    if messages.is_empty() {
        return String::new();
    }
    let text: String = messages.join("; ").chars().take(500).collect();
    format!(": {}", crate::edge::text::printable(&redact_value(&text)))
}
