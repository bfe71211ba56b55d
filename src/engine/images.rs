//! Image configs from the engine's own image store.
//!
//! - `GET /images/{name}/json` (image inspect): one image's config labels, ID (the
//!   config digest), repo digests and platform;
//! - `GET /images/json` (image list): every image's labels in one call, for `status`.

use std::collections::BTreeMap;

use bollard::query_parameters::ListImagesOptions;

use super::{Engine, EngineError};

/// An image found in the engine's store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalImage {
    /// Image ID: the digest of the image config, `sha256:…`.
    pub id: String,
    /// `Config.Labels` of the image config.
    pub labels: BTreeMap<String, String>,
    /// `RepoDigests`: `name@sha256:…` for each repository the image was pushed to or
    /// pulled from.
    pub repo_digests: Vec<String>,
    /// `RepoTags`: `name:tag`.
    pub repo_tags: Vec<String>,
    /// `os/architecture[/variant]`, when the engine reports them.
    pub platform: Option<String>,
}

impl Engine {
    /// Inspects `reference` (`name[:tag][@digest]` or an image ID) in the engine's
    /// image store. `Ok(None)` when the engine does not have it (404).
    ///
    /// Errors: the engine is unreachable or answers with another error.
    pub async fn inspect_image(&self, reference: &str) -> Result<Option<LocalImage>, EngineError> {
        match self
            .within_deadline(self.docker.inspect_image(reference))
            .await?
        {
            Ok(img) => {
                let platform = match (&img.os, &img.architecture) {
                    (Some(os), Some(arch)) if !os.is_empty() && !arch.is_empty() => {
                        Some(match img.variant.as_deref().filter(|v| !v.is_empty()) {
                            Some(v) => format!("{os}/{arch}/{v}"),
                            None => format!("{os}/{arch}"),
                        })
                    }
                    _ => None,
                };
                Ok(Some(LocalImage {
                    id: img.id.unwrap_or_default(),
                    labels: img
                        .config
                        .and_then(|c| c.labels)
                        .map(|l| l.into_iter().collect())
                        .unwrap_or_default(),
                    repo_digests: img.repo_digests.unwrap_or_default(),
                    repo_tags: img.repo_tags.unwrap_or_default(),
                    platform,
                }))
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            // An unparsable reference is "not here" too; the caller reports it.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 400, ..
            }) => Ok(None),
            Err(e) => Err(self.classify(e)),
        }
    }

    /// Lists every image in the engine's store with its labels, tags and digests (one
    /// `GET /images/json` call). The platform is not part of this answer.
    pub async fn list_images(&self) -> Result<Vec<LocalImage>, EngineError> {
        let list = self
            .within_deadline(self.docker.list_images(None::<ListImagesOptions>))
            .await?
            .map_err(|e| self.classify(e))?;
        Ok(list
            .into_iter()
            .map(|s| LocalImage {
                id: s.id,
                labels: s.labels.into_iter().collect(),
                repo_digests: s.repo_digests,
                repo_tags: s.repo_tags,
                platform: None,
            })
            .collect())
    }
}
