//! One service's spec, read and written as raw JSON.
//!
//! A scale must send back exactly the spec the engine returned, with only the replica
//! count changed. A typed model (bollard's `ServiceSpec`) drops every field it does not
//! know, and an engine newer than the model knows fields it does not; re-sending such
//! a spec silently resets them, and when a task-template field changes, Swarm restarts
//! every task. So the spec is kept as a `serde_json::Value` from
//! `GET /services/{id}?insertDefaults=false` to `POST /services/{id}/update`, and only
//! `Spec.Mode.Replicated.Replicas` (or `Spec.Mode.ReplicatedJob.TotalCompletions`) is
//! touched. Requests go through the same connection pool as the bollard client,
//! without an API version prefix, so reads and writes use the engine's own version.

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;

use super::{Engine, EngineError};

/// A service as `GET /services/{id}` returns it, kept whole.
#[derive(Debug, Clone)]
pub struct RawService {
    /// The service ID (`ID`).
    pub id: String,
    /// The service name (`Spec.Name`).
    pub name: String,
    /// The version index (`Version.Index`) an update must name.
    pub version: u64,
    /// The whole object as returned.
    pub value: Value,
}

/// What the service's mode says about its replica count (`Spec.Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// A replicated service: `Spec.Mode.Replicated.Replicas`.
    Replicas(u64),
    /// A replicated job: `Spec.Mode.ReplicatedJob.TotalCompletions`.
    Completions(u64),
    /// A global service: one task per eligible node, no count.
    Global,
    /// A global job: one task per eligible node, no count.
    GlobalJob,
}

impl Count {
    /// The replica (or completion) count, if the mode has one.
    pub fn value(self) -> Option<u64> {
        match self {
            Count::Replicas(n) | Count::Completions(n) => Some(n),
            Count::Global | Count::GlobalJob => None,
        }
    }

    /// The mode as `docker service ls` names it.
    pub fn mode_name(self) -> &'static str {
        match self {
            Count::Replicas(_) => "replicated",
            Count::Completions(_) => "replicated job",
            Count::Global => "global",
            Count::GlobalJob => "global job",
        }
    }
}

impl RawService {
    /// Builds from the JSON body of `GET /services/{id}`.
    ///
    /// Errors: no `ID` or no `Version.Index`.
    pub fn from_value(value: Value) -> Result<RawService, String> {
        let id = value["ID"]
            .as_str()
            .ok_or("the engine's answer has no service ID")?
            .to_string();
        let version = value["Version"]["Index"]
            .as_u64()
            .ok_or("the engine's answer has no version index")?;
        let name = value["Spec"]["Name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // A count that is there but not a whole number would read as 0 and be
        // "changed" from there: refuse the answer instead.
        for (mode, field) in [
            ("Replicated", "Replicas"),
            ("ReplicatedJob", "TotalCompletions"),
        ] {
            let v = &value["Spec"]["Mode"][mode][field];
            if !v.is_null() && v.as_u64().is_none() {
                return Err(format!(
                    "the engine's answer for service {name} has Spec.Mode.{mode}.{field} = {v}, not a whole number"
                ));
            }
        }
        Ok(RawService {
            id,
            name,
            version,
            value,
        })
    }

    /// The spec (`Spec`), as returned.
    pub fn spec(&self) -> &Value {
        &self.value["Spec"]
    }

    /// The typed service, for reading (labels, rule parsing). Never sent back.
    pub fn typed(&self) -> bollard::models::Service {
        serde_json::from_value(self.value.clone()).unwrap_or_default()
    }

    /// The replica count by mode. An absent count reads as 0.
    pub fn count(&self) -> Count {
        let mode = &self.spec()["Mode"];
        if let Some(r) = mode.get("Replicated") {
            Count::Replicas(r["Replicas"].as_u64().unwrap_or(0))
        } else if let Some(j) = mode.get("ReplicatedJob") {
            Count::Completions(j["TotalCompletions"].as_u64().unwrap_or(0))
        } else if mode.get("GlobalJob").is_some() {
            Count::GlobalJob
        } else {
            Count::Global
        }
    }

    /// The spec with only the replica count set to `n`: `Mode.Replicated.Replicas`,
    /// or `Mode.ReplicatedJob.TotalCompletions` for a replicated job. Everything else
    /// is the inspected JSON, untouched. `None` for global services and jobs.
    pub fn spec_with_count(&self, n: u64) -> Option<Value> {
        let mut spec = self.spec().clone();
        let (mode, field) = match self.count() {
            Count::Replicas(_) => ("Replicated", "Replicas"),
            Count::Completions(_) => ("ReplicatedJob", "TotalCompletions"),
            Count::Global | Count::GlobalJob => return None,
        };
        spec.get_mut("Mode")?
            .get_mut(mode)?
            .as_object_mut()?
            .insert(field.into(), Value::from(n));
        Some(spec)
    }

    /// The rolling update state and its message (`UpdateStatus.State`, `.Message`),
    /// when one was ever started.
    pub fn update_state(&self) -> Option<(String, String)> {
        let u = self.value.get("UpdateStatus")?;
        Some((
            u["State"].as_str().unwrap_or_default().to_string(),
            u["Message"].as_str().unwrap_or_default().to_string(),
        ))
    }

    /// `Spec.UpdateConfig.Monitor` in seconds, or Swarm's default of 5 seconds:
    /// how long tasks must stay up after an update to count as stable.
    pub fn monitor_secs(&self) -> f64 {
        match self.spec()["UpdateConfig"]["Monitor"].as_u64() {
            Some(ns) if ns > 0 => ns as f64 / 1e9,
            _ => 5.0,
        }
    }

    /// The job iteration (`JobStatus.JobIteration.Index`) of a job service; Go
    /// leaves out an index of 0 (`"JobIteration": {}`).
    pub fn job_iteration(&self) -> Option<u64> {
        let it = self.value["JobStatus"].get("JobIteration")?;
        Some(it["Index"].as_u64().unwrap_or(0))
    }
}

/// Whether `err` is Swarm's version conflict: the service changed since it was read
/// (`update out of sequence`), so the update must be read and decided again.
pub fn is_out_of_sequence(err: &EngineError) -> bool {
    matches!(err, EngineError::Daemon { message, .. } if message.contains("update out of sequence"))
}

/// Percent-encodes one path segment (a service name or ID as typed by the user).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Engine {
    /// Sends one request with a raw JSON body (or none) and returns the answer's body.
    /// `path_and_query` is sent as is, without an API version prefix (the engine's
    /// own version): callers percent-encode what they put in it. The whole exchange
    /// is bounded by [`super::request_timeout_secs`]; the answer's size by the
    /// transport's cap.
    ///
    /// Errors: unreachable, timed out, or an error status (the daemon's `message`;
    /// a 503 is explained: not in a swarm, a worker, locked).
    pub async fn raw_request(
        &self,
        method: http::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, EngineError> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://docker.engine{path_and_query}"));
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(bollard::body_full(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| EngineError::BadSetting(format!("cannot build a request: {e}")))?;
        let exchange = async {
            let resp = self
                .raw
                .0
                .request(req)
                .await
                .map_err(|e| self.classify(bollard::errors::Error::from(e)))?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.classify(bollard::errors::Error::from(e)))?
                .to_bytes();
            Ok::<_, EngineError>((status, bytes))
        };
        let (status, bytes) = self.within_request_timeout(exchange).await??;
        if status >= 400 {
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
            let err = self.classify(bollard::errors::Error::DockerResponseServerError {
                status_code: status,
                message,
            });
            return Err(match err {
                EngineError::Daemon { status: 503, .. } => self.explain_unavailable(err).await,
                other => other,
            });
        }
        Ok(bytes)
    }

    /// Reads one service whole: `GET /services/{id}?insertDefaults=false`, by ID,
    /// name or unique ID prefix (the engine resolves it).
    ///
    /// Errors: no such service (404), ambiguous prefix, and every connection error.
    pub async fn inspect_service_raw(&self, service: &str) -> Result<RawService, EngineError> {
        let bytes = self
            .raw_request(
                http::Method::GET,
                &format!("/services/{}?insertDefaults=false", segment(service)),
                None,
            )
            .await?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| EngineError::Daemon {
            status: 200,
            message: format!("the engine's answer for service {service} is not JSON: {e}"),
        })?;
        RawService::from_value(value).map_err(|message| EngineError::Daemon {
            status: 200,
            message,
        })
    }

    /// Updates a service: `POST /services/{id}/update?version=N` with `spec` as the
    /// body, unchanged. No registry auth is sent, so the engine keeps the spec's
    /// existing pull credentials (`registryAuthFrom=spec`) and does not re-resolve the
    /// image.
    ///
    /// Returns the engine's warnings. Errors: a version conflict
    /// ([`is_out_of_sequence`]), a rejected spec, and every connection error.
    pub async fn update_service_raw(
        &self,
        id: &str,
        version: u64,
        spec: &Value,
    ) -> Result<Vec<String>, EngineError> {
        let body = serde_json::to_vec(spec).map_err(|e| {
            EngineError::BadSetting(format!("cannot encode the spec of service {id}: {e}"))
        })?;
        let bytes = self
            .raw_request(
                http::Method::POST,
                &format!("/services/{}/update?version={version}", segment(id)),
                Some(body),
            )
            .await?;
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(answer["Warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(spec: Value) -> RawService {
        RawService::from_value(json!({"ID": "abc", "Version": {"Index": 7}, "Spec": spec})).unwrap()
    }

    #[test]
    fn only_the_count_changes() {
        let spec = json!({
            "Name": "web",
            "Labels": {"a": "b"},
            "TaskTemplate": {"ContainerSpec": {"Image": "x", "SomeFutureField": {"k": [1, 2]}}, "ForceUpdate": 3},
            "Mode": {"Replicated": {"Replicas": 2}},
            "UnknownTopLevel": true
        });
        let s = raw(spec.clone());
        assert_eq!(s.count(), Count::Replicas(2));
        let mut expected = spec.clone();
        expected["Mode"]["Replicated"]["Replicas"] = json!(5);
        assert_eq!(s.spec_with_count(5).unwrap(), expected);
        let job =
            raw(json!({"Mode": {"ReplicatedJob": {"MaxConcurrent": 2, "TotalCompletions": 4}}}));
        assert_eq!(job.count(), Count::Completions(4));
        assert_eq!(
            job.spec_with_count(6).unwrap()["Mode"],
            json!({"ReplicatedJob": {"MaxConcurrent": 2, "TotalCompletions": 6}})
        );
        assert_eq!(
            raw(json!({"Mode": {"Global": {}}})).spec_with_count(1),
            None
        );
        assert_eq!(
            raw(json!({"Mode": {"GlobalJob": {}}})).count(),
            Count::GlobalJob
        );
    }

    #[test]
    fn monitor_defaults_to_five_seconds() {
        assert_eq!(raw(json!({})).monitor_secs(), 5.0);
        assert_eq!(
            raw(json!({"UpdateConfig": {"Monitor": 1_500_000_000u64}})).monitor_secs(),
            1.5
        );
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(segment("web_1-b"), "web_1-b");
        assert_eq!(segment("../info?x=1"), "%2E%2E%2Finfo%3Fx%3D1");
    }

    #[test]
    fn version_conflicts_are_recognised() {
        let e = EngineError::Daemon {
            status: 500,
            message: "rpc error: code = Unknown desc = update out of sequence".into(),
        };
        assert!(is_out_of_sequence(&e));
        let other = EngineError::Daemon {
            status: 500,
            message: "something else".into(),
        };
        assert!(!is_out_of_sequence(&other));
    }
}
