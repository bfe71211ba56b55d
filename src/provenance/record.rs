//! The normalised provenance record: OCI annotations (`org.opencontainers.image.*`) and
//! the older Label Schema (`org.label-schema.*`) read as one.
//!
//! Source: the OCI image-spec, `annotations.md`, "Back-compatibility with Label Schema".
//! Pure: no I/O.

use std::collections::BTreeMap;

use serde::Serialize;

/// Prefix of the OCI pre-defined annotation keys.
pub const OCI: &str = "org.opencontainers.image.";
/// Prefix of the Label Schema 1.0 keys.
pub const LABEL_SCHEMA: &str = "org.label-schema.";

/// One field of the record and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Field {
    /// The value (the OCI key's when both conventions set the field).
    pub value: String,
    /// The full label key the value came from, e.g. `org.label-schema.vcs-ref`.
    pub key: String,
    /// The other convention's key and value when it disagrees with `value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict: Option<Conflict>,
}

/// A value of the other convention that disagrees with the chosen one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Conflict {
    /// Full label key, e.g. `org.label-schema.vcs-url`.
    pub key: String,
    /// Its value.
    pub value: String,
}

/// The normalised provenance of one image. Every field is `None` when no label sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Record {
    /// Source repository URL (`source` / `vcs-url`).
    pub source: Option<Field>,
    /// Source revision, usually a commit (`revision` / `vcs-ref`).
    pub revision: Option<Field>,
    /// Version of the packaged software (`version` / `version`).
    pub version: Option<Field>,
    /// Build date and time, RFC 3339 (`created` / `build-date`).
    pub created: Option<Field>,
    /// Contact details of the authors (`authors`; no Label Schema key).
    pub authors: Option<Field>,
    /// Distributing entity (`vendor` / `vendor`).
    pub vendor: Option<Field>,
    /// SPDX license expression (`licenses`; no Label Schema key).
    pub licenses: Option<Field>,
    /// URL to find more information (`url` / `url`).
    pub url: Option<Field>,
    /// URL to the documentation (`documentation` / `usage` when it is a URL).
    pub documentation: Option<Field>,
    /// Human-readable title (`title` / `name`).
    pub title: Option<Field>,
    /// Human-readable description (`description` / `description`).
    pub description: Option<Field>,
    /// Base image name (`base.name`; no Label Schema key).
    pub base_name: Option<Field>,
    /// Base image digest (`base.digest`; no Label Schema key).
    pub base_digest: Option<Field>,
}

/// How a field compares across the two conventions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    /// Exact string equality after trimming.
    Text,
    /// Same repository: host and path compared without scheme, user, `.git` and case.
    Repository,
    /// Same revision: equal, or one is an abbreviation (prefix) of the other.
    Revision,
    /// Same instant (RFC 3339), else text.
    Time,
}

/// `(record field, OCI suffix, Label Schema suffix, comparison)`; the table of
/// annotations.md plus the OCI-only keys.
const TABLE: &[(&str, &str, Option<&str>, Compare)] = &[
    ("source", "source", Some("vcs-url"), Compare::Repository),
    ("revision", "revision", Some("vcs-ref"), Compare::Revision),
    ("version", "version", Some("version"), Compare::Text),
    ("created", "created", Some("build-date"), Compare::Time),
    ("authors", "authors", None, Compare::Text),
    ("vendor", "vendor", Some("vendor"), Compare::Text),
    ("licenses", "licenses", None, Compare::Text),
    ("url", "url", Some("url"), Compare::Text),
    (
        "documentation",
        "documentation",
        Some("usage"),
        Compare::Text,
    ),
    ("title", "title", Some("name"), Compare::Text),
    (
        "description",
        "description",
        Some("description"),
        Compare::Text,
    ),
    ("base", "base.name", None, Compare::Text),
    ("base-digest", "base.digest", None, Compare::Text),
];

/// The record field names accepted by `--require`, in display order.
pub const FIELD_NAMES: &[&str] = &[
    "source",
    "revision",
    "version",
    "created",
    "authors",
    "vendor",
    "licenses",
    "url",
    "documentation",
    "title",
    "description",
    "base",
    "base-digest",
];

impl Record {
    /// Builds the record from an image's labels (`Config.Labels` of the image config).
    ///
    /// The OCI key wins; the Label Schema key is the fallback. `org.label-schema.usage`
    /// counts as documentation only when it is an `http(s)://` URL. Empty values count
    /// as unset. When both keys are set and disagree, the field carries a [`Conflict`].
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Record {
        let mut record = Record::default();
        for &(name, oci, schema, compare) in TABLE {
            let get = |key: &str| {
                labels
                    .get(key)
                    .map(|v| v.trim())
                    .filter(|v| !v.is_empty())
                    .map(|v| (key.to_string(), v.to_string()))
            };
            let oci = get(&format!("{OCI}{oci}"));
            let schema = schema.and_then(|s| get(&format!("{LABEL_SCHEMA}{s}")));
            let schema = schema.filter(|(k, v)| !k.ends_with(".usage") || is_http_url(v));
            let field = match (oci, schema) {
                (Some((key, value)), Some((skey, svalue))) => {
                    let conflict = (!agree(compare, &value, &svalue)).then_some(Conflict {
                        key: skey,
                        value: svalue,
                    });
                    Some(Field {
                        value,
                        key,
                        conflict,
                    })
                }
                (Some((key, value)), None) | (None, Some((key, value))) => Some(Field {
                    value,
                    key,
                    conflict: None,
                }),
                (None, None) => None,
            };
            *record.slot(name) = field;
        }
        record
    }

    fn slot(&mut self, name: &str) -> &mut Option<Field> {
        match name {
            "source" => &mut self.source,
            "revision" => &mut self.revision,
            "version" => &mut self.version,
            "created" => &mut self.created,
            "authors" => &mut self.authors,
            "vendor" => &mut self.vendor,
            "licenses" => &mut self.licenses,
            "url" => &mut self.url,
            "documentation" => &mut self.documentation,
            "title" => &mut self.title,
            "description" => &mut self.description,
            "base" => &mut self.base_name,
            "base-digest" => &mut self.base_digest,
            other => unreachable!("no record field {other}"),
        }
    }

    /// The field called `name` (one of [`FIELD_NAMES`]), or `None` for an unknown name.
    pub fn get(&self, name: &str) -> Option<&Option<Field>> {
        Some(match name {
            "source" => &self.source,
            "revision" => &self.revision,
            "version" => &self.version,
            "created" => &self.created,
            "authors" => &self.authors,
            "vendor" => &self.vendor,
            "licenses" => &self.licenses,
            "url" => &self.url,
            "documentation" => &self.documentation,
            "title" => &self.title,
            "description" => &self.description,
            "base" => &self.base_name,
            "base-digest" => &self.base_digest,
            _ => return None,
        })
    }

    /// `(name, field)` for every field that is set, in [`FIELD_NAMES`] order.
    pub fn fields(&self) -> Vec<(&'static str, &Field)> {
        FIELD_NAMES
            .iter()
            .filter_map(|n| self.get(n).and_then(|f| f.as_ref()).map(|f| (*n, f)))
            .collect()
    }

    /// The fields with a conflict between the two conventions.
    #[cfg(test)]
    pub fn conflicts(&self) -> Vec<(&'static str, &Field)> {
        self.fields()
            .into_iter()
            .filter(|(_, f)| f.conflict.is_some())
            .collect()
    }

    /// Whether the image declares a base image (`base.name` or `base.digest`).
    pub fn has_base(&self) -> bool {
        self.base_name.is_some() || self.base_digest.is_some()
    }
}

/// Is `value` an `http://` or `https://` URL with a host?
pub fn is_http_url(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    ["http://", "https://"].iter().any(|p| {
        lower
            .strip_prefix(p)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
    }) && !value.chars().any(char::is_whitespace)
}

fn agree(compare: Compare, a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match compare {
        Compare::Text => false,
        Compare::Repository => match (
            super::links::Repository::parse(a),
            super::links::Repository::parse(b),
        ) {
            (Some(x), Some(y)) => x.same_repository(&y),
            _ => false,
        },
        Compare::Revision => {
            let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
            let hex = |s: &str| s.len() >= 7 && s.bytes().all(|c| c.is_ascii_hexdigit());
            hex(&a) && hex(&b) && (a.starts_with(&b) || b.starts_with(&a))
        }
        Compare::Time => match (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn oci_only() {
        let r = Record::from_labels(&labels(&[
            ("org.opencontainers.image.source", "https://github.com/a/b"),
            ("org.opencontainers.image.revision", "abc1234"),
            ("org.opencontainers.image.licenses", "MIT"),
        ]));
        assert_eq!(r.source.as_ref().unwrap().value, "https://github.com/a/b");
        assert_eq!(
            r.revision.as_ref().unwrap().key,
            "org.opencontainers.image.revision"
        );
        assert_eq!(r.licenses.as_ref().unwrap().value, "MIT");
        assert!(r.conflicts().is_empty());
        assert!(r.created.is_none());
    }

    #[test]
    fn label_schema_fallback_by_the_back_compatibility_table() {
        let r = Record::from_labels(&labels(&[
            ("org.label-schema.vcs-url", "git@gitlab.com:g/s/p.git"),
            ("org.label-schema.vcs-ref", "89abcdef"),
            ("org.label-schema.build-date", "2025-06-07T08:09:10Z"),
            ("org.label-schema.name", "legacy"),
            ("org.label-schema.usage", "/usr/share/doc/README"),
            ("org.label-schema.vendor", "Example"),
            ("org.label-schema.version", "2.0"),
            ("org.label-schema.url", "https://example.com"),
            ("org.label-schema.description", "d"),
        ]));
        let f = |x: &Option<Field>| x.as_ref().map(|f| (f.key.clone(), f.value.clone()));
        assert_eq!(
            f(&r.source),
            Some((
                "org.label-schema.vcs-url".into(),
                "git@gitlab.com:g/s/p.git".into()
            ))
        );
        assert_eq!(f(&r.revision).unwrap().0, "org.label-schema.vcs-ref");
        assert_eq!(f(&r.created).unwrap().0, "org.label-schema.build-date");
        assert_eq!(f(&r.title).unwrap().1, "legacy");
        assert_eq!(f(&r.vendor).unwrap().1, "Example");
        assert_eq!(f(&r.version).unwrap().1, "2.0");
        assert_eq!(f(&r.url).unwrap().1, "https://example.com");
        assert_eq!(f(&r.description).unwrap().1, "d");
        // usage is documentation only when it is a URL
        assert!(r.documentation.is_none());
        let r = Record::from_labels(&labels(&[(
            "org.label-schema.usage",
            "https://example.com/docs",
        )]));
        assert_eq!(
            r.documentation.unwrap().key,
            "org.label-schema.usage".to_string()
        );
    }

    #[test]
    fn conflicts_are_shown_not_hidden() {
        let r = Record::from_labels(&labels(&[
            ("org.opencontainers.image.source", "https://github.com/a/b"),
            ("org.label-schema.vcs-url", "https://github.com/a/other"),
            ("org.opencontainers.image.revision", "1111111111"),
            ("org.label-schema.vcs-ref", "2222222222"),
            ("org.opencontainers.image.title", "x"),
            ("org.label-schema.name", "x"),
        ]));
        let c = r.conflicts();
        assert_eq!(c.len(), 2, "{c:?}");
        let src = r.source.unwrap();
        assert_eq!(src.value, "https://github.com/a/b");
        assert_eq!(
            src.conflict,
            Some(Conflict {
                key: "org.label-schema.vcs-url".into(),
                value: "https://github.com/a/other".into()
            })
        );
        assert!(r.title.unwrap().conflict.is_none());
    }

    #[test]
    fn equivalent_spellings_agree() {
        let r = Record::from_labels(&labels(&[
            ("org.opencontainers.image.source", "https://github.com/A/b"),
            ("org.label-schema.vcs-url", "git@github.com:a/b.git"),
            (
                "org.opencontainers.image.revision",
                "0123456789abcdef0123456789abcdef01234567",
            ),
            ("org.label-schema.vcs-ref", "0123456"),
            ("org.opencontainers.image.created", "2025-01-01T00:00:00Z"),
            ("org.label-schema.build-date", "2025-01-01T01:00:00+01:00"),
        ]));
        assert!(r.conflicts().is_empty(), "{:?}", r.conflicts());
        // a short, non-hex ref is not an abbreviation
        let r = Record::from_labels(&labels(&[
            ("org.opencontainers.image.revision", "main"),
            ("org.label-schema.vcs-ref", "mai"),
        ]));
        assert_eq!(r.conflicts().len(), 1);
    }

    #[test]
    fn empty_values_are_unset_and_base_is_seen() {
        let r = Record::from_labels(&labels(&[
            ("org.opencontainers.image.source", "  "),
            ("org.label-schema.vcs-url", "https://github.com/a/b"),
            (
                "org.opencontainers.image.base.name",
                "docker.io/library/alpine:3",
            ),
        ]));
        assert!(r.has_base());
        assert_eq!(r.source.unwrap().key, "org.label-schema.vcs-url");
        assert!(Record::from_labels(&BTreeMap::new()).fields().is_empty());
    }
}
