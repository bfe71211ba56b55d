//! Image configs and attestations from the registry (placeholder until the registry
//! client lands).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::engine::Engine;

/// An image config read from the registry.
#[derive(Debug, Clone)]
pub struct RemoteImageData {
    pub config_digest: String,
    pub manifest_digest: String,
    pub platform: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// A SLSA provenance attestation as read.
#[derive(Debug, Clone)]
pub struct AttestationData {
    pub predicate_type: String,
    pub builder_id: Option<String>,
    pub source: Option<String>,
    pub revision: Option<String>,
    pub started: Option<String>,
    pub finished: Option<String>,
}

/// Registry access for one command.
pub struct Remote {}

impl Remote {
    pub fn new(_engine: &Engine, _config_dir: Option<PathBuf>) -> Remote {
        Remote {}
    }
    pub async fn image(
        &self,
        _reference: &str,
        _platform: Option<&(String, String)>,
    ) -> Result<RemoteImageData, String> {
        Err("registry support is not built yet".into())
    }
    pub async fn attestations(
        &self,
        _reference: &str,
        _platform: Option<&(String, String)>,
    ) -> Result<Vec<AttestationData>, String> {
        Err("registry support is not built yet".into())
    }
}
