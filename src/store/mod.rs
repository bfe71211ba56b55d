//! What the agents keep in the swarm itself, so that it outlives any one process:
//! the lease ([`lease`], service labels), the decision history ([`history`], Swarm
//! configs), the fight records ([`fights`]), and the one-writer guard that `apply`
//! and `scale` take ([`exclusive`]).

pub mod exclusive;
pub mod fights;
pub mod history;
pub mod lease;
pub mod stats;

use serde_json::{Map, Value, json};

use crate::engine::service::{is_out_of_sequence, segment};
use crate::engine::{Engine, EngineError};

/// Sets the labels of the Swarm config `name` to `labels`, in one request: `POST
/// /configs/create` with `data` (its content, a note for people) when `current` is
/// `None`, else `POST /configs/{ID}/update?version=V` with the config's spec as read
/// (`current`: ID, version index, `Spec`) and only its `Labels` replaced.
///
/// Errors: the engine's; a write that lost to another writer is [`is_conflict`], and
/// the caller reads again and retries.
pub async fn put_config_labels(
    engine: &Engine,
    name: &str,
    current: Option<(&str, u64, &Value)>,
    labels: &Map<String, Value>,
    data: &str,
) -> Result<(), EngineError> {
    use base64::Engine as _;
    let (path, body) = match current {
        None => (
            "/configs/create".to_string(),
            json!({
                "Name": name,
                "Labels": labels,
                "Data": base64::engine::general_purpose::STANDARD.encode(data),
            }),
        ),
        Some((id, version, spec)) => {
            let mut spec = spec.clone();
            spec["Labels"] = Value::Object(labels.clone());
            (
                format!("/configs/{}/update?version={version}", segment(id)),
                spec,
            )
        }
    };
    engine
        .raw_request(
            http::Method::POST,
            &path,
            Some(body.to_string().into_bytes()),
        )
        .await
        .map(|_| ())
}

/// Whether a config write lost to another writer (an out-of-sequence version, or
/// 409 Conflict): read again and retry.
pub fn is_conflict(e: &EngineError) -> bool {
    is_out_of_sequence(e) || matches!(e, EngineError::Daemon { status: 409, .. })
}
