//! `apply` never races a running agent: it takes the agents' lease ([`super::lease`])
//! for as long as it decides, scales and writes the history, and refuses while an
//! agent holds it.
//!
//! - The lease is free (released, or never created): `apply` takes it (creating the
//!   config when missing), renews it on a timer of its own while it works, and
//!   releases it before it watches the services converge.
//! - An agent holds it and renewed it recently (its `microscale.lease.renewed` label
//!   is less than two TTLs old by this machine's clock): `apply` refuses at once,
//!   naming the holder ([`Taken::Other`]; exit code 3, `docs/exit-codes.md`).
//! - The lease names a holder that has not renewed it for longer (a killed agent
//!   and no other agent to take over): `apply` watches it for one TTL on its own
//!   clock, as a standby agent would, takes it over if it stayed unchanged, and
//!   refuses if it was renewed.
//! - Another `apply` holds it (holder `apply/…`): this one waits until it is
//!   released (or expires), so that two `apply` runs never decide at once either.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::lease::{self, Lease, LeaseState};
use crate::engine::service::segment;
use crate::engine::{Engine, EngineError};

/// The TTL `apply` holds the lease with (renewed every 2 s).
pub const APPLY_TTL: Duration = Duration::from_secs(6);

/// The holder ids of `apply` start with this.
pub const APPLY_PREFIX: &str = "apply/";

/// The lease held by this `apply`, renewed in the background until [`Exclusive::release`].
pub struct Exclusive {
    valid: Arc<Mutex<Option<Instant>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    holder: String,
}

/// What [`take`] found.
pub enum Taken {
    /// This process holds the lease.
    Held(Exclusive),
    /// An agent holds it: its holder id, and its last renewal (RFC 3339) if known.
    Other {
        /// The holder id (`microscale.lease.holder`).
        holder: String,
        /// `microscale.lease.renewed`, as written by the holder.
        renewed: Option<String>,
    },
}

impl Exclusive {
    /// Whether the lease is still ours now (check right before acting).
    pub fn holds(&self) -> bool {
        self.valid
            .lock()
            .map(|v| v.is_some_and(|v| Instant::now() < v))
            .unwrap_or(false)
    }

    /// The end of this process's lease window (monotonic), shared with the task
    /// that renews it; `None` inside once it is lost or released. `apply` bounds
    /// each update by it (`crate::execute::Options::window`).
    pub fn window(&self) -> Arc<Mutex<Option<Instant>>> {
        self.valid.clone()
    }

    /// This process's holder id (`apply/HOST/NODE/PID-NONCE`).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Stops renewing and releases the lease (so an agent takes it at its next tick).
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The lease's labels as they are now: holder, TTL (seconds), renewed.
async fn peek(
    engine: &Engine,
    name: &str,
) -> Result<Option<(String, f64, Option<String>)>, EngineError> {
    match engine
        .raw_request(
            http::Method::GET,
            &format!("/configs/{}", segment(name)),
            None,
        )
        .await
    {
        Ok(bytes) => {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if v["Spec"]["Name"].as_str() != Some(name) {
                return Ok(None);
            }
            let labels = &v["Spec"]["Labels"];
            let text = |k: &str| labels[k].as_str().map(str::to_string);
            Ok(Some((
                text(lease::LABEL_HOLDER).unwrap_or_default(),
                text(lease::LABEL_TTL)
                    .and_then(|t| t.trim().parse::<f64>().ok())
                    .filter(|t| t.is_finite() && *t > 0.0)
                    .unwrap_or(lease::DEFAULT_TTL.as_secs_f64()),
                text(lease::LABEL_RENEWED),
            )))
        }
        Err(EngineError::Daemon { status: 404, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a holder that renewed at `renewed` (RFC 3339) with `ttl` seconds is
/// probably alive at `now` (seconds since the epoch): renewed less than two TTLs
/// (plus 5 s for clocks) ago. An unreadable time counts as alive.
pub fn recently_renewed(renewed: Option<&str>, ttl: f64, now: f64) -> bool {
    let Some(at) = renewed.and_then(|r| r.parse::<jiff::Timestamp>().ok()) else {
        return true;
    };
    now - (at.as_millisecond() as f64 / 1000.0) < 2.0 * ttl + 5.0
}

/// Takes the lease `name` for `apply`, as described in the module docs.
///
/// Errors: the engine unreachable, a worker node, a config of that name that is not
/// a lease.
pub async fn take(engine: &Engine, name: &str) -> Result<Taken, EngineError> {
    let base = lease::default_holder(engine)
        .await
        .unwrap_or_else(|_| format!("-/-/{}", std::process::id()));
    let holder = format!("{APPLY_PREFIX}{base}");
    // An agent (not another apply) that renewed recently: refuse at once.
    let alive_agent = |(h, ttl, renewed): &(String, f64, Option<String>)| {
        !h.is_empty()
            && !h.starts_with(APPLY_PREFIX)
            && recently_renewed(renewed.as_deref(), *ttl, crate::edge::clock::wall_clock())
    };
    if let Some(seen) = peek(engine, name).await?
        && alive_agent(&seen)
    {
        return Ok(Taken::Other {
            holder: seen.0,
            renewed: seen.2,
        });
    }
    let mut l = Lease::new(name, APPLY_TTL, holder.clone());
    let started = Instant::now();
    let mut first: Option<String> = None;
    loop {
        match l.tick(engine).await? {
            LeaseState::Held => break,
            LeaseState::Other(h) if !h.starts_with(APPLY_PREFIX) => {
                // Another agent took it while watched, or it is still not expired
                // after the longest TTL: alive.
                let limit = lease::MAX_TTL + APPLY_TTL;
                if first.as_ref().is_some_and(|f| *f != h) || started.elapsed() > limit {
                    return Ok(Taken::Other {
                        holder: h,
                        renewed: None,
                    });
                }
                first.get_or_insert(h.clone());
                if let Some(seen) = peek(engine, name).await?
                    && alive_agent(&seen)
                {
                    return Ok(Taken::Other {
                        holder: seen.0,
                        renewed: seen.2,
                    });
                }
            }
            // Another apply: wait for its release (or its expiry, if it was killed).
            LeaseState::Other(_) => {}
            LeaseState::Free => {}
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(l.next_tick())).await;
    }
    let valid = Arc::new(Mutex::new(l.valid_until()));
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let shared = valid.clone();
    let engine = engine.clone();
    let task = tokio::spawn(async move {
        loop {
            let next = tokio::time::Instant::from_std(l.next_tick());
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = &mut stopped => break,
            }
            let r = tokio::select! {
                r = l.tick(&engine) => r,
                _ = &mut stopped => break,
            };
            if let Ok(mut v) = shared.lock() {
                // The window as the lease keeps it: closed by another holder, kept
                // to its end by an error (a renewal that failed does not shorten
                // it, nor make it last longer).
                *v = match r {
                    Ok(LeaseState::Held) | Err(_) => l.valid_until(),
                    Ok(_) => None,
                };
            }
        }
        if let Ok(mut v) = shared.lock() {
            *v = None;
        }
        let _ = tokio::time::timeout(super::lease::RELEASE_TIMEOUT, l.release(&engine)).await;
    });
    Ok(Taken::Held(Exclusive {
        valid,
        stop: Some(stop),
        task: Some(task),
        holder,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_renewed_within_two_ttls_is_alive() {
        let now = 1_765_000_000.0;
        assert!(recently_renewed(Some("2025-12-06T05:46:30Z"), 15.0, now));
        assert!(!recently_renewed(Some("2025-12-06T05:45:00Z"), 15.0, now));
        assert!(recently_renewed(None, 15.0, now), "unknown: alive");
        assert!(recently_renewed(Some("yesterday"), 15.0, now));
    }
}
