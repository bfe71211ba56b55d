//! `docker microscale provenance`: what exactly runs in each service and which source
//! commit it was built from.
//!
//! For each service: the image config's labels (from the engine's image store, else
//! from the registry), the labels by origin ([`origins`]), the normalised OCI /
//! Label Schema record ([`record`]), a link to the source commit ([`links`]), tasks on
//! another image than the spec's ([`drift`]) and BuildKit provenance attestations.

pub mod drift;
pub mod links;
pub mod origins;
pub mod record;
pub mod remote;

use std::collections::{BTreeMap, HashMap};

use bollard::models::{Node, Service};
use serde::Serialize;

use crate::edge::redact::{redact_label, redact_value};
use crate::engine::Engine;
use crate::swarm::snapshot::Snapshot;
use drift::{Drift, split_digest};
use origins::LabelRow;
use record::Record;

/// Where an image config was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ConfigSource {
    /// The engine's image store (`GET /images/{name}/json`).
    #[serde(rename = "engine")]
    Engine,
    /// The registry (OCI distribution API), or the on-disk cache of what it served.
    #[serde(rename = "registry")]
    Registry,
}

/// An image config: where it came from and its labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    /// Engine image store or registry.
    pub source: ConfigSource,
    /// Digest of the image config (`sha256:…`; the image ID).
    pub digest: String,
    /// Digest of the platform's image manifest, when read from the registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// Digest of the image index the reference resolved to, when read from the
    /// registry and the reference names an index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
    /// `os/architecture[/variant]` of the config, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// `Config.Labels` (secrets masked).
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
}

/// The base image an image declares (`org.opencontainers.image.base.*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BaseImage {
    /// `base.name`, when set.
    pub name: Option<String>,
    /// `base.digest`, when set.
    pub digest: Option<String>,
    /// Where the base image's config was read from; `None` when it could not be read.
    pub config_source: Option<ConfigSource>,
    /// Why the base image's labels could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One SLSA provenance attestation, and whether it agrees with the labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attestation {
    /// The in-toto predicate type, e.g. `https://slsa.dev/provenance/v0.2`.
    pub predicate_type: String,
    /// `builder.id`.
    pub builder_id: Option<String>,
    /// Source repository the build recorded.
    pub source: Option<String>,
    /// Source revision the build recorded.
    pub revision: Option<String>,
    /// Build start, RFC 3339.
    pub started: Option<String>,
    /// Build finish, RFC 3339.
    pub finished: Option<String>,
    /// Differences from the labels (`source`, `revision`), empty when they agree.
    pub disagreements: Vec<String>,
}

/// Everything `provenance` says about one service; one JSON object per service with
/// `--format json` (documented in `docs/provenance-json.md`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceProvenance {
    /// Service ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name.
    pub name: String,
    /// The image of the service spec (`Spec.TaskTemplate.ContainerSpec.Image`).
    pub image: String,
    /// Whether the spec's image carries a digest.
    pub pinned: bool,
    /// The image config that was read, `null` when it could not be read.
    pub config: Option<ImageConfig>,
    /// The normalised provenance record.
    pub provenance: Record,
    /// The source repository's web page, credentials removed.
    #[serde(rename = "SourceURL")]
    pub source_url: Option<String>,
    /// The page of the exact revision on a known code host.
    #[serde(rename = "CommitURL")]
    pub commit_url: Option<String>,
    /// The declared base image, when there is one.
    pub base: Option<BaseImage>,
    /// Every label by origin.
    pub labels: Vec<LabelRow>,
    /// Tasks on another image than the spec's.
    pub drift: Drift,
    /// SLSA provenance attestations found in the registry.
    pub attestations: Vec<Attestation>,
    /// Why attestations were not looked up or could not be read, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestations_note: Option<String>,
    /// Attestations in the registry that could not be read, one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attestation_errors: Vec<String>,
    /// Required record fields that are missing (only with `--check`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Required record fields that are set but unusable (only with `--check`): one
    /// line each, `field: why` (a `created` that is not an RFC 3339 time, a `source`
    /// that is not a repository or http(s) URL, a `revision` with blanks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalid: Vec<String>,
    /// Provenance labels of the image that the container spec overrides, so that the
    /// running containers carry another value than the record (which describes the
    /// image): one line each, `KEY: containers carry X, the image says Y`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub container_overrides: Vec<String>,
    /// Why the image could not be read, when it could not.
    pub error: Option<String>,
}

/// `repository@revision` for the SOURCE column of `status`: the repository as
/// `host/path` when it parses, and the revision cut to 7 characters when it is a
/// commit id (unless `full`). Empty when the record has no source.
pub fn source_column(record: &Record, full: bool) -> String {
    let Some(source) = &record.source else {
        return String::new();
    };
    let repo = links::Repository::parse(&source.value)
        .map(|r| r.short())
        .unwrap_or_else(|| source.value.clone());
    match &record.revision {
        Some(rev) => {
            let v = &rev.value;
            let short = if !full && v.len() > 7 && v.bytes().all(|c| c.is_ascii_hexdigit()) {
                &v[..7]
            } else {
                v.as_str()
            };
            format!("{repo}@{short}")
        }
        None => repo,
    }
}

/// Masks secrets in label values (and keys that embed credentials).
fn masked(labels: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    labels
        .into_iter()
        .map(|(k, v)| (redact_value(&k), redact_label(&k, &v)))
        .collect()
}

/// The platform of the nodes that run `service`'s tasks (the first such node), else of
/// the first node, as `(os, architecture)` from `Description.Platform`.
pub fn service_platform(service: &Service, snap: &Snapshot) -> Option<(String, String)> {
    let by_id: HashMap<&str, &Node> = snap
        .nodes
        .iter()
        .filter_map(|n| Some((n.id.as_deref()?, n)))
        .collect();
    let node = snap
        .tasks
        .iter()
        .filter(|t| t.service_id == service.id)
        .filter_map(|t| by_id.get(t.node_id.as_deref()?).copied())
        .next()
        .or_else(|| snap.nodes.first())?;
    let p = node.description.as_ref()?.platform.as_ref()?;
    Some((p.os.clone()?, p.architecture.clone()?))
}

/// Reads an image config: the engine's image store first (by the full reference, then
/// by `name@digest`), else the registry.
async fn read_config(
    engine: &Engine,
    remote: &remote::Remote<'_>,
    reference: &str,
    platform: Option<&(String, String)>,
) -> Result<ImageConfig, String> {
    check_reference(reference)?;
    for c in &local_candidates(reference) {
        if let Some(local) = remote.local(c).await? {
            return Ok(ImageConfig {
                source: ConfigSource::Engine,
                digest: local.id,
                manifest_digest: None,
                index_digest: None,
                platform: local.platform,
                labels: masked(local.labels),
            });
        }
    }
    let img = tokio::time::timeout_at(engine.deadline, remote.image(reference, platform))
        .await
        .map_err(|_| out_of_time())?
        .map_err(|e| {
            format!(
                "not in the engine's image store on {}, and the registry could not serve it: {e}",
                redact_value(&engine.endpoint.host)
            )
        })?;
    Ok(ImageConfig {
        source: ConfigSource::Registry,
        digest: img.config_digest.clone(),
        manifest_digest: Some(img.manifest_digest.clone()),
        index_digest: img.index_digest.clone(),
        platform: img.platform.clone(),
        labels: masked(img.labels.clone()),
    })
}

/// The error when the command's time (`MICROSCALE_TIMEOUT`) ran out, which only slow
/// registries can use up: the engine reads are made first.
fn out_of_time() -> String {
    format!(
        "not read: the registries were still answering when the command's {} seconds were up (MICROSCALE_TIMEOUT)",
        crate::engine::request_timeout_secs()
    )
}

/// Checks that `reference` is an image reference (`name[:tag][@digest]`, as the
/// distribution reference grammar has it) or an image ID (`sha256:<64 hex>`), before
/// it goes into an Engine API path or a registry URL. A label like
/// `base.name=../../info?x=` is refused here.
pub fn check_reference(reference: &str) -> Result<(), String> {
    let id = reference.strip_prefix("sha256:").unwrap_or(reference);
    if id.len() == 64 && id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return Ok(());
    }
    reference
        .parse::<crate::registry::Reference>()
        .map(|_| ())
        .map_err(|e| {
            format!(
                "{:?} is not an image reference: {e}",
                redact_value(reference)
            )
        })
}

/// The names under which the engine's store may hold `reference`: as written, and
/// `repository@digest` for a `name:tag@digest` reference.
pub fn local_candidates(reference: &str) -> Vec<String> {
    let (name, digest) = split_digest(reference);
    let mut candidates = vec![reference.to_string()];
    if let Some(d) = digest {
        candidates.push(format!("{}@{d}", strip_tag(name)));
    }
    candidates
}

/// `name[:tag]` without its tag (a `:` after the last `/`).
pub fn strip_tag(name: &str) -> &str {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => &name[..slash + i],
        None => name,
    }
}

/// Builds the provenance of one service.
pub async fn service_provenance(
    engine: &Engine,
    remote: &remote::Remote<'_>,
    snap: &Snapshot,
    service: &Service,
    full_ids: bool,
) -> ServiceProvenance {
    let id = service.id.clone().unwrap_or_default();
    let id = if full_ids {
        id
    } else {
        id.chars().take(12).collect()
    };
    let name = service
        .spec
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_default();
    let image = drift::spec_image(service).unwrap_or_default().to_string();
    let mut drift = drift::drift(service, &snap.tasks, &snap.nodes);
    if !full_ids {
        for t in &mut drift.tasks {
            t.id.truncate(12);
            if let Some(c) = &mut t.container {
                c.truncate(12);
            }
        }
    }
    let platform = service_platform(service, snap);
    let spec = service.spec.as_ref();
    let service_labels = masked(spec.and_then(|s| s.labels.clone()).unwrap_or_default());
    let container_labels = masked(
        spec.and_then(|s| s.task_template.as_ref())
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.labels.clone())
            .unwrap_or_default(),
    );
    let mut out = ServiceProvenance {
        id,
        name,
        image: redact_value(&image),
        pinned: drift.pinned,
        config: None,
        provenance: Record::default(),
        source_url: None,
        commit_url: None,
        base: None,
        labels: vec![],
        drift,
        attestations: vec![],
        attestations_note: None,
        attestation_errors: vec![],
        missing: vec![],
        invalid: vec![],
        container_overrides: vec![],
        error: None,
    };
    let config = if image.is_empty() {
        Err("the service spec names no image".to_string())
    } else {
        read_config(engine, remote, &image, platform.as_ref()).await
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(format!(
                "cannot read the image {}: {e}",
                redact_value(&image)
            ));
            out.attestations_note = Some("not looked up: the image could not be read".into());
            out.labels =
                origins::label_origins(&BTreeMap::new(), None, &container_labels, &service_labels);
            return out;
        }
    };
    let record = Record::from_labels(&config.labels);
    // The base image's labels, to tell inherited labels from the image's own.
    let mut base_labels = None;
    if record.has_base() {
        let bname = record.base_name.as_ref().map(|f| f.value.clone());
        let bdigest = record.base_digest.as_ref().map(|f| f.value.clone());
        let reference = match (&bname, &bdigest) {
            (Some(n), Some(d)) => format!("{}@{d}", split_digest(n).0),
            (Some(n), None) => n.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => unreachable!(),
        };
        let read = read_config(engine, remote, &reference, platform.as_ref()).await;
        let (config_source, error) = match read {
            Ok(b) => {
                let source = b.source;
                base_labels = Some(b.labels);
                (Some(source), None)
            }
            Err(e) => (None, Some(e)),
        };
        out.base = Some(BaseImage {
            name: bname,
            digest: bdigest,
            config_source,
            error,
        });
    }
    out.labels = origins::label_origins(
        &config.labels,
        base_labels.as_ref(),
        &container_labels,
        &service_labels,
    );
    out.container_overrides = out
        .labels
        .iter()
        .filter(|l| {
            l.origin == origins::Origin::Container
                && (l.key.starts_with(record::OCI) || l.key.starts_with(record::LABEL_SCHEMA))
        })
        .filter_map(|l| {
            let image = l.shadowed.last()?;
            (image.value != l.value).then(|| {
                format!(
                    "{}: the containers carry {}, the image says {}",
                    l.key, l.value, image.value
                )
            })
        })
        .collect();
    if let Some(src) = &record.source {
        let rev = record.revision.as_ref().map(|r| r.value.as_str());
        match links::Repository::parse(&src.value) {
            Some(repo) => {
                out.source_url = Some(repo.web_url());
                out.commit_url = rev.and_then(|r| repo.revision_url(r));
            }
            None if record::is_http_url(&src.value) => out.source_url = Some(src.value.clone()),
            None => {}
        }
    }
    // Attestations live next to the manifest in the registry: only a pinned image
    // names the manifest it runs.
    if out.pinned {
        let read = tokio::time::timeout_at(
            engine.deadline,
            remote.attestations(&image, platform.as_ref()),
        )
        .await
        .unwrap_or_else(|_| Err(out_of_time()));
        match read {
            Ok((list, errors)) => {
                out.attestations = list
                    .into_iter()
                    .map(|a| compare_attestation(a, &record))
                    .collect();
                out.attestation_errors = errors.iter().map(|e| redact_value(e)).collect();
            }
            Err(e) => out.attestations_note = Some(format!("not read: {e}")),
        }
    } else {
        out.attestations_note =
            Some("not looked up: the service's image is not pinned to a digest".to_string());
    }
    out.config = Some(config);
    out.provenance = record;
    out
}

/// Compares an attestation's source and revision with the labels' record.
fn compare_attestation(a: crate::registry::Provenance, record: &Record) -> Attestation {
    let mut disagreements = vec![];
    if let (Some(att), Some(lab)) = (&a.source, &record.source) {
        let same = match (
            links::Repository::parse(att),
            links::Repository::parse(&lab.value),
        ) {
            (Some(x), Some(y)) => x.same_repository(&y),
            _ => att == &lab.value,
        };
        if !same {
            // The label's value is masked already; the attestation's comes from the
            // registry and may carry the same kind of credentials.
            disagreements.push(format!(
                "source: the attestation says {}, the label {} says {}",
                redact_value(att),
                lab.key,
                lab.value
            ));
        }
    }
    if let (Some(att), Some(lab)) = (&a.revision, &record.revision) {
        let (x, y) = (att.to_ascii_lowercase(), lab.value.to_ascii_lowercase());
        if !(x == y || (y.len() >= 7 && x.starts_with(&y)) || (x.len() >= 7 && y.starts_with(&x))) {
            disagreements.push(format!(
                "revision: the attestation says {att}, the label {} says {}",
                lab.key, lab.value
            ));
        }
    }
    Attestation {
        predicate_type: a.predicate_type,
        builder_id: a.builder_id.map(|s| redact_value(&s)),
        source: a.source.map(|s| redact_value(&s)),
        revision: a.revision,
        started: a.started,
        finished: a.finished,
        disagreements,
    }
}

/// The `--require` names as record field names, or a usage error listing the valid
/// ones. Accepts the record names (`source`) and the OCI keys
/// (`org.opencontainers.image.source`).
pub fn parse_require(values: &[String]) -> Result<Vec<String>, String> {
    let mut out = vec![];
    for v in values.iter().flat_map(|v| v.split(',')) {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        let lower = v.to_ascii_lowercase();
        let name = lower.strip_prefix(record::OCI).unwrap_or(&lower);
        let name = match name {
            "base.name" => "base",
            "base.digest" => "base-digest",
            n => n,
        };
        if !record::FIELD_NAMES.contains(&name) {
            return Err(format!(
                "invalid argument \"{v}\" for \"--require\" flag: unknown provenance field; use one of: {}",
                record::FIELD_NAMES.join(", ")
            ));
        }
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    if out.is_empty() {
        return Err(
            "invalid argument \"\" for \"--require\" flag: name at least one provenance field"
                .into(),
        );
    }
    Ok(out)
}

/// How many services `provenance` reads at a time.
pub(crate) const CONCURRENT_READS: usize = 8;

/// Why a required field's value is unusable, if it is: `created` must be an RFC 3339
/// time, `source` a repository URL (any accepted form) or an http(s) URL, and the
/// other fields one line of text (`revision` without blanks).
pub fn invalid_reason(field: &str, value: &str) -> Option<&'static str> {
    if value.chars().any(char::is_control) {
        return Some("has control characters");
    }
    match field {
        "created" if value.parse::<jiff::Timestamp>().is_err() => {
            Some("not an RFC 3339 date and time (e.g. 2026-01-02T03:04:05Z)")
        }
        "source" if links::Repository::parse(value).is_none() && !record::is_http_url(value) => {
            Some("not a repository URL")
        }
        "revision" if value.chars().any(char::is_whitespace) => Some("has blanks"),
        _ => None,
    }
}

/// The default `--require` fields.
pub const DEFAULT_REQUIRE: &[&str] = &["source", "revision", "created"];

pub mod render;

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13 item 5: the SOURCE column, the source badge and the record's JSON,
    /// built from labels the way `provenance`, `status` and `badge` build them, show
    /// the host the `@` a person meant points to and never the password.
    #[test]
    fn misread_credentials_reach_no_source_output() {
        for (src, secret) in [
            ("https://ci:1234/5678@gitlab.com/g/app.git", "5678"),
            ("https://oauth2:glpat-AbC dEf@gitlab.com/g/app.git", "dEf"),
        ] {
            let labels = masked([
                (
                    "org.opencontainers.image.source".to_string(),
                    src.to_string(),
                ),
                (
                    "org.opencontainers.image.revision".to_string(),
                    "89abcdef0123".to_string(),
                ),
            ]);
            let record = Record::from_labels(&labels);
            let json = serde_json::to_string(&record).unwrap();
            let column = source_column(&record, false);
            let badge =
                crate::cmd::badge::badge_value(&record, crate::cli::BadgeKind::Source).unwrap();
            for out in [&json, &column, &badge] {
                assert!(
                    !out.contains(secret) && !out.contains("1234"),
                    "{src} -> {out}"
                );
            }
            assert_eq!(column, "gitlab.com/g/app@89abcde");
            assert_eq!(badge, "gitlab.com/g/app");
        }
    }
}
