//! BuildKit provenance: SLSA provenance predicates in in-toto statements, as BuildKit
//! attaches them to images (moby/buildkit `docs/attestations/attestation-storage.md`
//! and `docs/attestations/slsa-definitions.md`; docs.docker.com
//! `build/metadata/attestations/slsa-definitions`).

use serde_json::Value;

/// Annotation on an index entry naming what kind of reference it is.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// `REFERENCE_TYPE` value of an attestation manifest.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
/// Annotation on an attestation manifest entry: the digest of the image manifest
/// it describes.
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// Annotation on an attestation layer: the in-toto predicate type.
pub const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// Media type of an in-toto statement layer.
pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
/// Prefix of SLSA provenance predicate types (`.../v0.2`, `.../v1`).
pub const SLSA_PREFIX: &str = "https://slsa.dev/provenance/";
/// BuildKit's metadata key in SLSA v0.2 `predicate.metadata`.
const BUILDKIT_METADATA_V02: &str = "https://mobyproject.org/buildkit@v1#metadata";
/// BuildKit's metadata key in SLSA v1 `predicate.runDetails.metadata`.
const BUILDKIT_METADATA_V1: &str = "buildkit_metadata";

/// What a SLSA provenance attestation says about how an image was built.
///
/// Every field but `predicate_type` is `None` when the statement does not have it
/// (BuildKit's `mode=min` leaves out some; empty strings count as absent).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Provenance {
    /// The in-toto predicate type, e.g. `https://slsa.dev/provenance/v0.2` or
    /// `https://slsa.dev/provenance/v1`.
    pub predicate_type: String,
    /// Builder id (v0.2 `builder.id`, v1 `runDetails.builder.id`), e.g. a CI run URL.
    pub builder_id: Option<String>,
    /// Where the build config came from: `configSource.uri` (v0.2 `invocation`, v1
    /// `buildDefinition.externalParameters`), else BuildKit's `vcs.source`.
    pub source: Option<String>,
    /// Source revision: BuildKit's `vcs.revision`, else `configSource.digest.sha1`
    /// (or its first digest value).
    pub revision: Option<String>,
    /// Build start, RFC 3339 as written (v0.2 `metadata.buildStartedOn`, v1
    /// `runDetails.metadata.startedOn`).
    pub started: Option<String>,
    /// Build end, RFC 3339 as written (`buildFinishedOn` / `finishedOn`).
    pub finished: Option<String>,
}

/// Whether an attestation layer (its media type and annotations) carries SLSA
/// provenance; returns the predicate type.
pub fn slsa_layer_type(layer: &Value) -> Option<String> {
    let annotated = layer
        .get("annotations")
        .and_then(|a| a.get(PREDICATE_TYPE))
        .and_then(Value::as_str);
    let media = layer.get("mediaType").and_then(Value::as_str);
    match annotated {
        Some(t) if t.starts_with(SLSA_PREFIX) => Some(t.to_string()),
        Some(_) => None,
        // No annotation: an in-toto layer may still be provenance; the statement
        // says (checked after fetching). Mark it with the bare prefix.
        None if media == Some(IN_TOTO_MEDIA_TYPE) => Some(String::new()),
        None => None,
    }
}

/// Reads a SLSA provenance in-toto statement (`bytes`: the layer blob).
///
/// # Errors
/// A short description when the blob is not JSON, not an in-toto statement, or its
/// `predicateType` is not SLSA provenance.
pub fn parse_statement(bytes: &[u8]) -> Result<Provenance, String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not an in-toto statement: {e}"))?;
    let predicate_type = v
        .get("predicateType")
        .and_then(Value::as_str)
        .ok_or("the in-toto statement has no predicateType")?;
    if !predicate_type.starts_with(SLSA_PREFIX) {
        return Err(format!(
            "predicate type {predicate_type} is not SLSA provenance"
        ));
    }
    let p = v
        .get("predicate")
        .filter(|p| p.is_object())
        .ok_or("the in-toto statement has no predicate object")?;
    let s = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let digest_value = |d: Option<&Value>| -> Option<String> {
        let d = d?.as_object()?;
        s(d.get("sha1")).or_else(|| d.values().find_map(|x| s(Some(x))))
    };
    let out = if p.get("runDetails").is_some() || p.get("buildDefinition").is_some() {
        // SLSA v1.
        let run = p.get("runDetails");
        let meta = run.and_then(|r| r.get("metadata"));
        let config = p.pointer("/buildDefinition/externalParameters/configSource");
        let vcs = meta
            .and_then(|m| m.get(BUILDKIT_METADATA_V1).or(m.get(BUILDKIT_METADATA_V02)))
            .and_then(|b| b.get("vcs"));
        Provenance {
            predicate_type: predicate_type.to_string(),
            builder_id: s(run.and_then(|r| r.pointer("/builder/id"))),
            source: s(config.and_then(|c| c.get("uri")))
                .or_else(|| s(vcs.and_then(|v| v.get("source")))),
            revision: s(vcs.and_then(|v| v.get("revision")))
                .or_else(|| digest_value(config.and_then(|c| c.get("digest")))),
            started: s(meta.and_then(|m| m.get("startedOn"))),
            finished: s(meta.and_then(|m| m.get("finishedOn"))),
        }
    } else {
        // SLSA v0.2.
        let meta = p.get("metadata");
        let config = p.pointer("/invocation/configSource");
        let vcs = meta
            .and_then(|m| m.get(BUILDKIT_METADATA_V02))
            .and_then(|b| b.get("vcs"));
        Provenance {
            predicate_type: predicate_type.to_string(),
            builder_id: s(p.pointer("/builder/id")),
            source: s(config.and_then(|c| c.get("uri")))
                .or_else(|| s(vcs.and_then(|v| v.get("source")))),
            revision: s(vcs.and_then(|v| v.get("revision")))
                .or_else(|| digest_value(config.and_then(|c| c.get("digest")))),
            started: s(meta.and_then(|m| m.get("buildStartedOn"))),
            finished: s(meta.and_then(|m| m.get("buildFinishedOn"))),
        }
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slsa_v02_from_buildkit() {
        let st = json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [],
            "predicate": {
                "builder": {"id": "https://github.com/o/r/actions/runs/1"},
                "buildType": "https://mobyproject.org/buildkit@v1",
                "invocation": {"configSource": {"entryPoint": "Dockerfile"}},
                "metadata": {
                    "buildStartedOn": "2024-01-02T03:04:05Z",
                    "buildFinishedOn": "2024-01-02T03:05:00Z",
                    "https://mobyproject.org/buildkit@v1#metadata": {
                        "vcs": {"source": "https://github.com/o/r", "revision": "abc123"}
                    }
                }
            }
        });
        let p = parse_statement(st.to_string().as_bytes()).unwrap();
        assert_eq!(p.predicate_type, "https://slsa.dev/provenance/v0.2");
        assert_eq!(
            p.builder_id.as_deref(),
            Some("https://github.com/o/r/actions/runs/1")
        );
        assert_eq!(p.source.as_deref(), Some("https://github.com/o/r"));
        assert_eq!(p.revision.as_deref(), Some("abc123"));
        assert_eq!(p.started.as_deref(), Some("2024-01-02T03:04:05Z"));
        assert_eq!(p.finished.as_deref(), Some("2024-01-02T03:05:00Z"));
    }

    #[test]
    fn slsa_v1_from_buildkit() {
        let st = json!({
            "_type": "https://in-toto.io/Statement/v1",
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {
                "buildDefinition": {
                    "buildType": "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md",
                    "externalParameters": {"configSource": {
                        "uri": "https://github.com/moby/buildkit.git#refs/tags/v0.11.0",
                        "digest": {"sha1": "4b220de5058abfd01ff619c9d2ff6b09a049bea0"},
                        "path": "Dockerfile"
                    }}
                },
                "runDetails": {
                    "builder": {"id": ""},
                    "metadata": {
                        "startedOn": "2024-01-02T03:04:05Z",
                        "finishedOn": "2024-01-02T03:05:00Z",
                        "buildkit_metadata": {"vcs": {"source": "https://github.com/moby/buildkit"}}
                    }
                }
            }
        });
        let p = parse_statement(st.to_string().as_bytes()).unwrap();
        assert_eq!(p.builder_id, None, "an empty builder id is absent");
        assert_eq!(
            p.source.as_deref(),
            Some("https://github.com/moby/buildkit.git#refs/tags/v0.11.0")
        );
        assert_eq!(
            p.revision.as_deref(),
            Some("4b220de5058abfd01ff619c9d2ff6b09a049bea0")
        );
        assert_eq!(p.started.as_deref(), Some("2024-01-02T03:04:05Z"));
    }

    #[test]
    fn broken_statements_are_errors() {
        assert!(parse_statement(b"{").is_err());
        assert!(parse_statement(b"{}").is_err());
        assert!(parse_statement(br#"{"predicateType":"https://spdx.dev/Document"}"#).is_err());
        assert!(
            parse_statement(br#"{"predicateType":"https://slsa.dev/provenance/v0.2"}"#).is_err()
        );
    }

    #[test]
    fn provenance_layers_are_recognised() {
        let annotated = json!({"mediaType": IN_TOTO_MEDIA_TYPE,
            "annotations": {PREDICATE_TYPE: "https://slsa.dev/provenance/v0.2"}});
        assert_eq!(
            slsa_layer_type(&annotated).as_deref(),
            Some("https://slsa.dev/provenance/v0.2")
        );
        let sbom = json!({"mediaType": IN_TOTO_MEDIA_TYPE,
            "annotations": {PREDICATE_TYPE: "https://spdx.dev/Document"}});
        assert_eq!(slsa_layer_type(&sbom), None);
        assert_eq!(
            slsa_layer_type(&json!({"mediaType": IN_TOTO_MEDIA_TYPE})).as_deref(),
            Some("")
        );
        assert_eq!(
            slsa_layer_type(&json!({"mediaType": "application/octet-stream"})),
            None
        );
    }
}
