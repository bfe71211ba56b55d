//! Changing one service's replica count: the inspected spec goes back with only the
//! count changed, and a version conflict (`update out of sequence`) is read and
//! decided again, with backoff.

use std::time::Duration;

use serde::Serialize;

use crate::engine::service::{RawService, is_out_of_sequence};
use crate::engine::{Engine, EngineError};

/// Most version conflicts one service may meet before the scale gives up.
pub const MAX_RETRIES: u32 = 10;

/// What to do with a service, decided on its freshly inspected spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Set the replica (or completion) count to this.
    Scale(u64),
    /// Leave it alone, for this reason (not an error: `apply` during a rolling update).
    Hold(String),
}

/// Decides, from the service as it is now, what to do; `Err` is an error for this
/// service (a bound, a global service). Called again after each version conflict.
pub type Decide<'a> = dyn Fn(&RawService) -> Result<Verdict, String> + 'a;

/// How a service ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Convergence {
    /// Running == desired, and stable for `UpdateConfig.Monitor` (replicated); the
    /// job's completions all done (replicated job).
    Converged,
    /// Not waited for (`--detach`).
    Detached,
    /// No update was needed or made.
    Unchanged,
    /// Not converged within `--timeout`.
    Timeout,
    /// Ctrl-C or the docker CLI cancelled the wait; the update stands.
    Interrupted,
    /// The service was removed while waiting.
    Removed,
    /// The swarm could not be read while waiting; the update stands.
    Lost,
    /// The update was sent but its answer never came (interrupted, or the
    /// connection failed): it may or may not have been applied.
    Unknown,
    /// Not updated because of an error.
    Failed,
}

/// The result of scaling one service, as `--format json` prints it (one object per
/// line).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The service name (`Spec.Name`), or the argument when it could not be read.
    #[serde(rename = "Service")]
    pub service: String,
    /// The full service ID; empty when it could not be read.
    #[serde(rename = "ID")]
    pub id: String,
    /// `replicated` or `replicated job` (the count is then `TotalCompletions`).
    #[serde(rename = "Mode")]
    pub mode: String,
    /// Replicas (completions for a job) in the spec the update replaced.
    #[serde(rename = "ReplicasBefore")]
    pub before: Option<u64>,
    /// Replicas (completions) in the spec after the command.
    #[serde(rename = "ReplicasAfter")]
    pub after: Option<u64>,
    /// The version index the successful update named (`?version=`); null when no
    /// update was sent.
    #[serde(rename = "Version")]
    pub version: Option<u64>,
    /// How many version conflicts were met and retried.
    #[serde(rename = "Retries")]
    pub retries: u32,
    /// Whether an update was sent and accepted.
    #[serde(rename = "Updated")]
    pub updated: bool,
    /// How the wait for convergence ended.
    #[serde(rename = "Convergence")]
    pub convergence: Convergence,
    /// Running tasks (completed tasks of this run, for a job) when the wait ended.
    #[serde(rename = "Running")]
    pub running: Option<u64>,
    /// Why the service was held and not updated (`apply`).
    #[serde(rename = "Held", skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// What went wrong, if anything.
    #[serde(rename = "Error")]
    pub error: Option<String>,
    /// Warnings the engine returned with the update.
    #[serde(rename = "Warnings")]
    pub warnings: Vec<String>,
    /// The plan's reasons (`apply`).
    #[serde(rename = "Reasons", skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// The job iteration before the update (`JobStatus.JobIteration.Index`), to tell
    /// this run's completions from earlier ones.
    #[serde(skip)]
    pub job_iteration: Option<u64>,
    /// Seconds `UpdateConfig.Monitor` asks tasks to stay up (default 5).
    #[serde(skip)]
    pub monitor_secs: f64,
}

impl Outcome {
    /// An outcome for a service that was read: no update yet.
    pub fn new(svc: &RawService) -> Outcome {
        Outcome {
            service: svc.name.clone(),
            id: svc.id.clone(),
            mode: svc.count().mode_name().to_string(),
            before: svc.count().value(),
            after: svc.count().value(),
            version: None,
            retries: 0,
            updated: false,
            convergence: Convergence::Unchanged,
            running: None,
            held: None,
            error: None,
            warnings: vec![],
            reasons: vec![],
            job_iteration: svc.job_iteration(),
            monitor_secs: svc.monitor_secs(),
        }
    }

    /// An outcome for a service that could not be read or decided.
    pub fn failed(service: &str, error: String) -> Outcome {
        Outcome {
            service: service.to_string(),
            id: String::new(),
            mode: String::new(),
            before: None,
            after: None,
            version: None,
            retries: 0,
            updated: false,
            convergence: Convergence::Failed,
            running: None,
            held: None,
            error: Some(error),
            warnings: vec![],
            reasons: vec![],
            job_iteration: None,
            monitor_secs: 0.0,
        }
    }

    /// Whether this outcome makes the command exit 1.
    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }
}

/// The wait before retry `n` (1-based) after a version conflict: 50 ms doubling up
/// to 2 s, with up to half of it added at random so that racing writers spread out.
pub fn backoff(n: u32) -> Duration {
    let base = 50u64
        .saturating_mul(1u64 << n.saturating_sub(1).min(6))
        .min(2000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let jitter = nanos % (base / 2 + 1);
    Duration::from_millis(base + jitter)
}

/// [`update`] within a deadline: `deadline` completes when the caller may no longer
/// change the service (the end of the agent's lease window). Whatever [`update`]
/// waits for then (an engine cut off from the swarm that neither commits nor refuses
/// the update) is abandoned: dropping the request makes dockerd cancel the call, so
/// the update cannot be applied any later than that, except if the leader had
/// already received it, which then commits it within moments (and only on the
/// version it was read at: compare-and-set).
///
/// When the deadline comes first: if an update request was in flight, its outcome is
/// unknown ([`Convergence::Unknown`], with an error saying so; the caller must read
/// the service again before acting on it); otherwise nothing was sent and the
/// service is held ([`Outcome::held`]).
pub async fn update_within(
    engine: &Engine,
    svc: RawService,
    decide: &Decide<'_>,
    deadline: impl std::future::Future<Output = ()>,
) -> Outcome {
    let sending = std::cell::Cell::new(false);
    let before = Outcome::new(&svc);
    let work = update_tracked(engine, svc, decide, &sending);
    tokio::select! {
        // The deadline first: a caller paused past it sends nothing more.
        biased;
        _ = deadline => deadline_passed(before, sending.get()),
        out = work => out,
    }
}

/// The outcome of an update abandoned at its deadline (see [`update_within`]).
fn deadline_passed(mut out: Outcome, in_flight: bool) -> Outcome {
    if in_flight {
        out.error = Some(format!(
            "the lease window ended before the engine answered the update of {}: it may or may not have been applied; the service is read again before any other change",
            out.service
        ));
        out.convergence = Convergence::Unknown;
    } else {
        out.held = Some("the lease window ended before the update was sent".into());
        out.convergence = Convergence::Unchanged;
    }
    out
}

/// Updates one service, starting from `svc` as inspected: `decide` picks the count,
/// the update sends the inspected spec with only that count changed, and on a
/// version conflict the service is read again and decided again, up to
/// [`MAX_RETRIES`] times. A count equal to the current one sends nothing.
///
/// Every other engine error ends this service with that error.
pub async fn update(engine: &Engine, svc: RawService, decide: &Decide<'_>) -> Outcome {
    update_tracked(engine, svc, decide, &std::cell::Cell::new(false)).await
}

/// [`update`], setting `sending` while an update request is in flight (the request
/// sent and its answer not yet read, including the read-back after a lost answer).
async fn update_tracked(
    engine: &Engine,
    mut svc: RawService,
    decide: &Decide<'_>,
    sending: &std::cell::Cell<bool>,
) -> Outcome {
    let mut out = Outcome::new(&svc);
    loop {
        out.before = svc.count().value();
        out.after = out.before;
        out.job_iteration = svc.job_iteration();
        out.monitor_secs = svc.monitor_secs();
        let target = match decide(&svc) {
            Ok(Verdict::Scale(n)) => n,
            Ok(Verdict::Hold(reason)) => {
                out.held = Some(reason);
                out.convergence = Convergence::Unchanged;
                return out;
            }
            Err(e) => {
                out.error = Some(if out.retries > 0 {
                    format!("{e} (read again after another writer changed the service meanwhile)")
                } else {
                    e
                });
                out.convergence = Convergence::Failed;
                return out;
            }
        };
        if Some(target) == svc.count().value() {
            out.convergence = Convergence::Unchanged;
            return out;
        }
        let Some(spec) = svc.spec_with_count(target) else {
            out.error = Some(format!(
                "{} is a {} service and has no replica count",
                svc.name,
                svc.count().mode_name()
            ));
            out.convergence = Convergence::Failed;
            return out;
        };
        sending.set(true);
        let answer = engine.update_service_raw(&svc.id, svc.version, &spec).await;
        // A conflict or a refusal: nothing was applied. A lost answer stays in
        // flight until it is read back.
        sending.set(matches!(
            answer,
            Err(ref e) if !is_out_of_sequence(e) && !matches!(e, EngineError::Daemon { .. })
        ));
        match answer {
            Ok(warnings) => {
                out.updated = true;
                out.version = Some(svc.version);
                out.after = Some(target);
                out.warnings = warnings;
                out.convergence = Convergence::Detached;
                return out;
            }
            Err(e) if is_out_of_sequence(&e) && out.retries < MAX_RETRIES => {
                out.retries += 1;
                tokio::time::sleep(backoff(out.retries)).await;
                match engine.inspect_service_raw(&svc.id).await {
                    Ok(fresh) => svc = fresh,
                    Err(e) => {
                        out.error = Some(read_again_error(&svc.name, e));
                        out.convergence = Convergence::Failed;
                        return out;
                    }
                }
            }
            Err(e) if is_out_of_sequence(&e) => {
                out.error = Some(format!(
                    "gave up after {MAX_RETRIES} version conflicts: other writers keep changing {} (update out of sequence); nothing was changed by this command; try again",
                    svc.name
                ));
                out.convergence = Convergence::Failed;
                return out;
            }
            Err(e @ EngineError::Daemon { .. }) => {
                out.error = Some(format!("the engine refused the update: {e}"));
                out.convergence = Convergence::Failed;
                return out;
            }
            Err(e) => {
                // The request may have reached the engine before the answer was
                // lost: read the service again to know.
                return lost_answer(engine, &svc, target, e, out).await;
            }
        }
    }
}

/// After an update whose answer was lost (timeout, broken connection): reads the
/// service again and says whether the update was applied (the version index moved
/// on and the count is the one sent), was not (same version), or is unknown.
async fn lost_answer(
    engine: &Engine,
    sent: &RawService,
    target: u64,
    err: EngineError,
    mut out: Outcome,
) -> Outcome {
    let first = err.to_string();
    let first = first.lines().next().unwrap_or_default();
    match engine.inspect_service_raw(&sent.id).await {
        Ok(now) if now.version == sent.version => {
            out.error = Some(format!(
                "the update was not applied (the engine's answer was lost: {first}); nothing changed, run the command again"
            ));
            out.convergence = Convergence::Failed;
        }
        Ok(now) if now.count().value() == Some(target) => {
            out.updated = true;
            out.version = Some(sent.version);
            out.after = Some(target);
            out.warnings.push(format!(
                "the engine's answer to the update was lost ({first}), but the service now has {target}: it was applied"
            ));
            out.convergence = Convergence::Detached;
        }
        Ok(now) => {
            out.after = now.count().value();
            out.error = Some(format!(
                "the engine's answer to the update was lost ({first}) and the service changed meanwhile (version {} → {}, count now {}): check it with `docker service inspect {}`",
                sent.version,
                now.version,
                now.count().value().unwrap_or(0),
                sent.name
            ));
            out.convergence = Convergence::Unknown;
        }
        Err(e) => {
            out.error = Some(format!(
                "the engine's answer to the update was lost ({first}) and the service cannot be read again ({}): it may or may not have been applied; check it with `docker service inspect {}`",
                e.to_string().lines().next().unwrap_or_default(),
                sent.name
            ));
            out.convergence = Convergence::Unknown;
        }
    }
    out
}

fn read_again_error(name: &str, e: EngineError) -> String {
    match e {
        EngineError::Daemon { status: 404, .. } => {
            format!("{name} was removed by another writer while it was being scaled")
        }
        other => format!("cannot read {name} again after a version conflict: {other}"),
    }
}

/// The most replicas the engine takes: it stores the count as a signed 64-bit
/// number and refuses more ("Number of replicas must be non-negative").
pub const MAX_REPLICAS: u64 = i64::MAX as u64;

/// The count a service would have after `Add(delta)` or `Set(n)`; `unit` is
/// `replicas` or `completions` (for messages).
///
/// Errors: a result below 0 or above [`MAX_REPLICAS`].
pub fn apply_change(current: u64, change: Change, unit: &str) -> Result<u64, String> {
    let n = match change {
        Change::Set(n) => Some(n),
        Change::Add(d) => current.checked_add_signed(d),
    };
    match (n, change) {
        (Some(n), _) if n <= MAX_REPLICAS => Ok(n),
        (None, Change::Add(d)) if d < 0 => Err(format!(
            "{d} would take it below 0 {unit} (it has {current})"
        )),
        _ => Err(format!(
            "more than {MAX_REPLICAS} {unit}, the most the engine takes (it has {current})"
        )),
    }
}

/// The change asked for one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `SERVICE=N`: exactly N.
    Set(u64),
    /// `SERVICE=+N` or `SERVICE=-N`: N more or fewer than the spec has when the
    /// update is made (after a version conflict, than the spec read again).
    Add(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_applied_without_overflow() {
        let r = "replicas";
        assert_eq!(apply_change(3, Change::Set(7), r), Ok(7));
        assert_eq!(apply_change(3, Change::Add(2), r), Ok(5));
        assert_eq!(apply_change(3, Change::Add(-3), r), Ok(0));
        let e = apply_change(2, Change::Add(-3), "completions").unwrap_err();
        assert!(
            e.contains("below 0 completions") && e.contains("it has 2"),
            "{e}"
        );
        assert!(apply_change(u64::MAX, Change::Add(1), r).is_err());
        assert!(apply_change(0, Change::Set(MAX_REPLICAS + 1), r).is_err());
        assert!(
            apply_change(MAX_REPLICAS, Change::Add(1), r)
                .unwrap_err()
                .contains("the most the engine takes")
        );
    }

    /// An engine on a unix socket that reads requests and never answers (a manager
    /// that cannot commit), and the RawService of a replicated service at 2.
    fn silent_engine() -> (tempfile::TempDir, Engine, RawService) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let mut held = vec![];
            for mut conn in listener.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = std::io::Read::read(&mut conn, &mut buf);
                held.push(conn);
            }
        });
        let engine = Engine::connect(crate::engine::connect::Endpoint {
            host: format!("unix://{}", path.display()),
            tls: None,
            source: crate::engine::connect::HostSource::Flag,
        })
        .unwrap();
        let svc = RawService::from_value(serde_json::json!({
            "ID": "svc1", "Version": {"Index": 5},
            "Spec": {"Name": "web", "Mode": {"Replicated": {"Replicas": 2}}}
        }))
        .unwrap();
        (dir, engine, svc)
    }

    #[tokio::test]
    async fn an_update_in_flight_at_the_deadline_has_an_unknown_outcome() {
        let (_dir, engine, svc) = silent_engine();
        let decide = |_: &RawService| Ok(Verdict::Scale(3));
        let started = std::time::Instant::now();
        let out = update_within(
            &engine,
            svc.clone(),
            &decide,
            tokio::time::sleep(Duration::from_millis(200)),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(out.convergence, Convergence::Unknown);
        assert!(!out.updated);
        let e = out.error.unwrap();
        assert!(e.contains("may or may not have been applied"), "{e}");
        // A deadline already passed: nothing is sent, the service is held.
        let out = update_within(&engine, svc, &decide, std::future::ready(())).await;
        assert_eq!(out.convergence, Convergence::Unchanged);
        assert_eq!(out.error, None);
        assert!(out.held.unwrap().contains("before the update was sent"));
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        for n in 1..20 {
            let d = backoff(n);
            let base = (50u64 << (n - 1).min(6)).min(2000);
            assert!(d >= Duration::from_millis(base), "{n}: {d:?}");
            assert!(d <= Duration::from_millis(base + base / 2), "{n}: {d:?}");
        }
    }
}
