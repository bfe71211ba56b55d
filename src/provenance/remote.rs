//! Image configs and attestations from the registry, for one command.
//!
//! Wraps [`crate::registry::Client`] with what the engine knows: its insecure
//! registries (`GET /info`: `RegistryConfig.InsecureRegistryCIDRs` and the
//! `IndexConfigs` whose `Secure` is false) and the nodes' platform. Each reference is
//! read at most once per command; by-digest content is cached on disk by the client.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OnceCell};

use crate::engine::Engine;
use crate::engine::images::LocalImage;
use crate::registry::{Client, ClientOptions, Platform, Provenance, Reference, RemoteImage};

/// An image config read from the registry.
#[derive(Debug, Clone)]
pub struct RemoteImageData {
    /// Digest of the image config blob, `sha256:…`.
    pub config_digest: String,
    /// Digest of the platform's image manifest.
    pub manifest_digest: String,
    /// Digest of the image index (manifest list) the reference resolved to, if any.
    pub index_digest: Option<String>,
    /// `os/architecture[/variant]` of the image.
    pub platform: Option<String>,
    /// `config.Labels` of the image config (unmasked).
    pub labels: BTreeMap<String, String>,
}

/// What the registry said about one reference and platform.
type Answer = Result<RemoteImage, String>;

/// Registry access for one command.
pub struct Remote<'a> {
    engine: &'a Engine,
    config_dir: Option<PathBuf>,
    client: OnceCell<Result<Client, String>>,
    /// `reference|platform` → what the registry said (read once, by the first asker;
    /// the others wait for that answer).
    seen: Mutex<HashMap<String, Arc<OnceCell<Answer>>>>,
    /// Image inspect answers of the engine, by the name asked for.
    local: Mutex<HashMap<String, Arc<OnceCell<LocalAnswer>>>>,
}

/// What the engine's image store said about one name.
type LocalAnswer = Result<Option<LocalImage>, String>;

impl<'a> Remote<'a> {
    /// No request is made until an image is asked for.
    pub fn new(engine: &'a Engine, config_dir: Option<PathBuf>) -> Remote<'a> {
        Remote {
            engine,
            config_dir,
            client: OnceCell::new(),
            seen: Mutex::new(HashMap::new()),
            local: Mutex::new(HashMap::new()),
        }
    }

    /// The engine's image store's answer for `name` (`GET /images/{name}/json`),
    /// asked once per command. `Ok(None)` when the engine does not have it.
    /// `name` must have passed [`super::check_reference`].
    pub async fn local(&self, name: &str) -> LocalAnswer {
        let cell = self
            .local
            .lock()
            .await
            .entry(name.into())
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            if tokio::time::Instant::now() >= self.engine.deadline {
                return Err(super::out_of_time());
            }
            self.engine
                .inspect_image(name)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .clone()
    }

    async fn client(&self) -> Result<&Client, String> {
        self.client
            .get_or_init(|| async {
                // The engine's insecure registries; a failure here only means
                // "loopback only", which the client always allows.
                let mut insecure = vec![];
                if let Ok(Ok(info)) = self.engine.within_deadline(self.engine.docker.info()).await
                    && let Some(rc) = info.registry_config
                {
                    insecure.extend(rc.insecure_registry_cidrs.unwrap_or_default());
                    for (name, index) in rc.index_configs.unwrap_or_default() {
                        if index.secure == Some(false) {
                            insecure.push(name);
                        }
                    }
                }
                Client::new(ClientOptions {
                    docker_config_dir: self.config_dir.clone(),
                    cache_dir: None,
                    insecure,
                    timeout: Duration::from_secs(crate::engine::request_timeout_secs()),
                    credential_helper_dir: None,
                    offline: false,
                })
                .map_err(|e| e.to_string())
            })
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    async fn read(
        &self,
        reference: &str,
        platform: Option<&(String, String)>,
    ) -> Result<RemoteImage, String> {
        let platform = platform
            .map(|(os, arch)| Platform::from_node(os, arch))
            .unwrap_or_else(|| Platform::new("linux", "amd64", None));
        let key = format!("{reference}|{platform}");
        let cell = self.seen.lock().await.entry(key).or_default().clone();
        cell.get_or_init(|| async {
            let r: Reference = reference
                .parse()
                .map_err(|e: crate::registry::RegistryError| e.to_string())?;
            let client = self.client().await?;
            client.image(&r, &platform).await.map_err(|e| e.to_string())
        })
        .await
        .clone()
    }

    /// The image config of `reference` for the nodes' `platform` (`(os, arch)` as
    /// the Engine API's `Description.Platform` gives it; linux/amd64 when unknown).
    ///
    /// Errors: the registry's, as text (unreachable, auth refused, not found, no
    /// image for the platform, a bad reference).
    pub async fn image(
        &self,
        reference: &str,
        platform: Option<&(String, String)>,
    ) -> Result<RemoteImageData, String> {
        let img = self.read(reference, platform).await?;
        let labels = img
            .config
            .pointer("/config/Labels")
            .and_then(|l| l.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(RemoteImageData {
            config_digest: img.config_digest,
            manifest_digest: img.manifest_digest,
            index_digest: img.index_digest,
            platform: img.platform.map(|p| p.to_string()),
            labels,
        })
    }

    /// The SLSA provenance attestations stored next to `reference`'s manifest, and
    /// one line for each attestation that could not be read.
    pub async fn attestations(
        &self,
        reference: &str,
        platform: Option<&(String, String)>,
    ) -> Result<(Vec<Provenance>, Vec<String>), String> {
        let img = self.read(reference, platform).await?;
        Ok((img.attestations, img.attestation_errors))
    }
}
