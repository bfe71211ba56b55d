//! The fields each command's `--format` templates can use: the keys of the JSON
//! object its `--format json` prints (documented in `docs/format.md`). A unit test
//! checks each list against the serialised row type, so the two never drift.

use super::template::{Field, Fields, Kind};

const fn scalar(name: &'static str) -> Field {
    Field {
        name,
        kind: Kind::Scalar,
        header: "",
    }
}

const fn object(name: &'static str) -> Field {
    Field {
        name,
        kind: Kind::Object,
        header: "",
    }
}

const fn list(name: &'static str) -> Field {
    Field {
        name,
        kind: Kind::List,
        header: "",
    }
}

/// `status` ([`crate::cmd::status::ServiceRow`]).
pub const STATUS: Fields = Fields {
    command: "status",
    list: &[
        scalar("ID"),
        scalar("Name"),
        scalar("Mode"),
        scalar("Replicas"),
        scalar("Running"),
        scalar("Desired"),
        scalar("Completed"),
        scalar("MaxPerNode"),
        scalar("Image"),
        scalar("Digest"),
        scalar("Update"),
        scalar("Source"),
        scalar("Rule"),
        object("RuleLabels"),
        scalar("Metric"),
        scalar("MetricError"),
        Field {
            name: "RuleDesired",
            kind: Kind::Scalar,
            header: "DESIRED",
        },
        scalar("Nodes"),
        scalar("TasksOnDownNodes"),
        list("DownNodes"),
        scalar("Ports"),
        object("Fight"),
    ],
};

/// `provenance` ([`crate::provenance::ServiceProvenance`]).
pub const PROVENANCE: Fields = Fields {
    command: "provenance",
    list: &[
        scalar("ID"),
        scalar("Name"),
        scalar("Image"),
        scalar("Pinned"),
        object("Config"),
        object("Provenance"),
        scalar("SourceURL"),
        scalar("CommitURL"),
        object("Base"),
        list("Labels"),
        object("Drift"),
        list("Attestations"),
        scalar("AttestationsNote"),
        list("AttestationErrors"),
        list("Missing"),
        list("Invalid"),
        list("ContainerOverrides"),
        scalar("Error"),
    ],
};

/// `plan` and `apply --dry-run` ([`crate::plan::PlanRow`]).
pub const PLAN: Fields = Fields {
    command: "plan",
    list: &[
        scalar("ID"),
        scalar("Service"),
        scalar("Current"),
        scalar("Running"),
        scalar("Metric"),
        scalar("Desired"),
        scalar("Action"),
        list("Reasons"),
        scalar("Source"),
    ],
};

/// `rules check` (a problem and where its rule came from).
pub const RULES_CHECK: Fields = Fields {
    command: "rules check",
    list: &[
        scalar("Service"),
        scalar("Key"),
        scalar("Value"),
        scalar("Expected"),
        scalar("Severity"),
        scalar("Source"),
    ],
};

/// `metric` (one reading).
pub const METRIC: Fields = Fields {
    command: "metric",
    list: &[
        scalar("Source"),
        scalar("Value"),
        scalar("Unit"),
        scalar("Time"),
        scalar("Service"),
        scalar("Coverage"),
    ],
};

/// `scale` and `apply` ([`crate::execute::update::Outcome`]).
pub const SCALE: Fields = Fields {
    command: "scale",
    list: &[
        scalar("Service"),
        scalar("ID"),
        scalar("Mode"),
        scalar("ReplicasBefore"),
        scalar("ReplicasAfter"),
        scalar("Version"),
        scalar("Retries"),
        scalar("Updated"),
        scalar("Convergence"),
        scalar("Running"),
        scalar("Held"),
        scalar("Error"),
        list("Warnings"),
        list("Reasons"),
    ],
};

/// `apply` (the same rows as `scale`; `apply --dry-run` prints [`PLAN`] rows).
pub const APPLY: Fields = Fields {
    command: "apply",
    list: SCALE.list,
};

/// Every command's fields, for the documentation test.
#[cfg(test)]
pub const ALL: &[Fields] = &[STATUS, PROVENANCE, PLAN, RULES_CHECK, METRIC, SCALE];

/// Asserts that `fields` lists exactly the keys of `row`'s JSON object (`optional`:
/// keys that `row` may leave out, as `skip_serializing_if` does).
#[cfg(test)]
pub fn assert_fields_match(fields: &Fields, row: &impl serde::Serialize, optional: &[&str]) {
    let value = serde_json::to_value(row).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .expect("a row is a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    let listed: Vec<&str> = fields.list.iter().map(|f| f.name).collect();
    for k in &keys {
        assert!(
            listed.contains(k),
            "{}: the JSON key {k} is not in render::fields (add it, and to docs/format.md)",
            fields.command
        );
    }
    for l in &listed {
        assert!(
            keys.contains(l) || optional.contains(l),
            "{}: render::fields lists {l}, which the JSON object does not have",
            fields.command
        );
    }
    for f in fields.list {
        let kind = match value.get(f.name) {
            Some(serde_json::Value::Object(_)) => Kind::Object,
            Some(serde_json::Value::Array(_)) => Kind::List,
            Some(serde_json::Value::Null) | None => continue,
            Some(_) => Kind::Scalar,
        };
        assert_eq!(kind, f.kind, "{}: the kind of {}", fields.command, f.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_fields_are_the_json_keys() {
        let service: bollard::models::Service = serde_json::from_value(json!({
            "ID": "abc", "Spec": {"Name": "web", "Labels": {"microscale.min": "1"}},
        }))
        .unwrap();
        let snap = crate::swarm::snapshot::Snapshot {
            services: vec![service],
            tasks: vec![],
            nodes: vec![],
        };
        let rows = crate::cmd::status::build_rows(&snap, false);
        assert_fields_match(&STATUS, &rows[0], &[]);
    }

    #[test]
    fn plan_fields_are_the_json_keys() {
        let row = crate::plan::PlanRow {
            id: "id".into(),
            service: "web".into(),
            current: 1,
            running: 1,
            metric: Some("1 / 2".into()),
            desired: 1,
            action: "none".into(),
            reasons: vec!["x".into()],
            source: "labels".into(),
        };
        assert_fields_match(&PLAN, &row, &[]);
    }

    #[test]
    fn scale_fields_are_the_json_keys() {
        let mut o = crate::execute::update::Outcome::failed("web", "boom".into());
        o.held = Some("why".into());
        o.reasons = vec!["r".into()];
        o.warnings = vec!["w".into()];
        assert_fields_match(&SCALE, &o, &[]);
    }

    #[test]
    fn provenance_fields_are_the_json_keys() {
        let p = crate::provenance::ServiceProvenance {
            id: "id".into(),
            name: "web".into(),
            image: "x".into(),
            pinned: false,
            config: None,
            provenance: Default::default(),
            source_url: None,
            commit_url: None,
            base: None,
            labels: vec![],
            drift: crate::provenance::drift::Drift {
                pinned: false,
                tasks_checked: 0,
                tasks: vec![],
            },
            attestations: vec![],
            attestations_note: Some("n".into()),
            attestation_errors: vec!["e".into()],
            missing: vec!["m".into()],
            invalid: vec!["i".into()],
            container_overrides: vec!["c".into()],
            error: None,
        };
        assert_fields_match(&PROVENANCE, &p, &[]);
    }

    /// docs/format.md lists every field of every command, in the command's section.
    #[test]
    fn every_field_is_documented() {
        let doc = include_str!("../../docs/format.md");
        for fields in ALL {
            let heading = format!("\n## `{}`", fields.command);
            let start = doc
                .find(&heading)
                .unwrap_or_else(|| panic!("docs/format.md has no section {heading:?}"));
            let section = &doc[start + 1..];
            let section = &section[..section.find("\n## ").unwrap_or(section.len())];
            for f in fields.list {
                assert!(
                    section.contains(&format!("| `{}` |", f.name)),
                    "docs/format.md: the {} section does not document `{}`",
                    fields.command,
                    f.name
                );
            }
        }
    }
}
