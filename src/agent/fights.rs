//! Fights: something else (a `docker stack deploy` with a fixed `replicas:`, a
//! script, a person) keeps resetting a replica count the agent set.
//!
//! The agent remembers the count it set per service. When a later read shows
//! another count while the agent made no change since, another writer reset it: a
//! fight. The agent logs each one and records it in the swarm, so that `status` can
//! show it: a Swarm config named [`CONFIG_NAME`] whose labels are
//! `microscale.fight.<service ID>` = `<resets> <RFC 3339 time of the last> <count
//! the other writer set>`. Configs are manager-only objects that any manager can
//! read; only their labels change, with the version index as compare-and-set.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::engine::{Engine, EngineError};

/// The Swarm config holding the fight records.
pub const CONFIG_NAME: &str = "microscale-agent-fights";

/// Label prefix of one record.
pub const LABEL_PREFIX: &str = "microscale.fight.";

/// One service's fight record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fight {
    /// Resets seen since the agent started.
    pub resets: u64,
    /// When the last reset was seen (RFC 3339).
    pub last: String,
    /// The count the other writer set last.
    pub their_count: u64,
}

impl Fight {
    /// The label value: `<resets> <last> <their count>`.
    pub fn label(&self) -> String {
        format!("{} {} {}", self.resets, self.last, self.their_count)
    }

    /// Parses a label value; `None` when it is not one.
    pub fn parse(value: &str) -> Option<Fight> {
        let mut parts = value.split_whitespace();
        let resets = parts.next()?.parse().ok()?;
        let last = parts.next()?.to_string();
        let their_count = parts.next()?.parse().ok()?;
        Some(Fight {
            resets,
            last,
            their_count,
        })
    }
}

/// Reads the fight records: service ID → record. A missing config is no fights.
/// (`GET /configs?filters={"name":[CONFIG_NAME]}`.)
pub async fn read(engine: &Engine) -> Result<BTreeMap<String, Fight>, EngineError> {
    Ok(match find(engine).await? {
        Some(config) => records(&config),
        None => BTreeMap::new(),
    })
}

fn records(config: &Value) -> BTreeMap<String, Fight> {
    config["Spec"]["Labels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.strip_prefix(LABEL_PREFIX)?.to_string(),
                        Fight::parse(v.as_str()?)?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn find(engine: &Engine) -> Result<Option<Value>, EngineError> {
    let filters = crate::engine::service::segment(&format!("{{\"name\":[\"{CONFIG_NAME}\"]}}"));
    let bytes = engine
        .raw_request(
            http::Method::GET,
            &format!("/configs?filters={filters}"),
            None,
        )
        .await?;
    let list: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(list
        .as_array()
        .and_then(|l| l.iter().find(|c| c["Spec"]["Name"] == CONFIG_NAME).cloned()))
}

/// Writes `fights` (service ID → record) into the config, creating it when missing;
/// they replace the records there (those of removed services go). A version conflict is read again and retried a
/// few times.
///
/// Errors: the engine refuses (a worker), or keeps conflicting.
pub async fn publish(engine: &Engine, fights: &BTreeMap<String, Fight>) -> Result<(), EngineError> {
    for _ in 0..5 {
        let result = match find(engine).await? {
            None => {
                let labels: serde_json::Map<String, Value> = fights
                    .iter()
                    .map(|(id, f)| (format!("{LABEL_PREFIX}{id}"), Value::from(f.label())))
                    .collect();
                let body = json!({
                    "Name": CONFIG_NAME,
                    "Labels": labels,
                    "Data": base64::engine::general_purpose::STANDARD
                        .encode("fight records of docker microscale run; see its labels\n"),
                });
                engine
                    .raw_request(
                        http::Method::POST,
                        "/configs/create",
                        Some(serde_json::to_vec(&body).unwrap_or_default()),
                    )
                    .await
                    .map(|_| ())
            }
            Some(config) => {
                let id = config["ID"].as_str().unwrap_or_default().to_string();
                let version = config["Version"]["Index"].as_u64().unwrap_or(0);
                let mut spec = config["Spec"].clone();
                if !spec["Labels"].is_object() {
                    spec["Labels"] = json!({});
                }
                // Records of services that are gone are dropped.
                if let Some(labels) = spec["Labels"].as_object_mut() {
                    labels.retain(|k, _| !k.starts_with(LABEL_PREFIX));
                }
                for (sid, f) in fights {
                    spec["Labels"][format!("{LABEL_PREFIX}{sid}")] = Value::from(f.label());
                }
                engine
                    .raw_request(
                        http::Method::POST,
                        &format!(
                            "/configs/{}/update?version={version}",
                            crate::engine::service::segment(&id)
                        ),
                        Some(serde_json::to_vec(&spec).unwrap_or_default()),
                    )
                    .await
                    .map(|_| ())
            }
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e)
                if crate::engine::service::is_out_of_sequence(&e)
                    || matches!(e, EngineError::Daemon { status: 409, .. }) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(EngineError::Daemon {
        status: 409,
        message: format!(
            "the config {CONFIG_NAME} keeps changing under us; fight records not written"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_labels() {
        let f = Fight {
            resets: 3,
            last: "2026-11-29T10:00:00Z".into(),
            their_count: 2,
        };
        assert_eq!(Fight::parse(&f.label()), Some(f.clone()));
        assert_eq!(Fight::parse("x"), None);
        let config = json!({"Spec": {"Labels": {
            "microscale.fight.abc": f.label(),
            "microscale.fight.bad": "nonsense",
            "other": "1"
        }}});
        let r = records(&config);
        assert_eq!(r.len(), 1);
        assert_eq!(r["abc"], f);
    }
}
