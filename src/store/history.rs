//! The decision history kept in the swarm: what [`crate::decide::decide`] remembers
//! of each service (recommendations inside the stabilisation windows, scale events
//! inside the step periods, consecutive metric failures) and the count the agents
//! last set, so that an agent restart, a stop-first update of the agent's service,
//! a lease handover and a cron `apply` all continue the windows and steps where they
//! were.
//!
//! # The object
//!
//! A Swarm config named [`config_name`]`(lease)` (`microscale-agent-lease-history` for
//! the default lease), beside the lease: it lives in the swarm's Raft store, any
//! manager reads it, and only its labels change (`POST /configs/{id}/update?version=N`,
//! compare-and-set on the version index, as for the lease). Labels:
//!
//! - `microscale.history.<service ID>`: one service's [`Entry`], compact JSON:
//!   `{"recommendations": [[seconds, replicas], ...], "events": [{"at": seconds,
//!   "from": replicas, "to": replicas}, ...], "failures": n, "set": replicas}`. Times
//!   are **seconds since the Unix epoch** (the wall clock of the manager that
//!   decided; managers keep their clocks in step with NTP).
//! - [`LABEL_WRITTEN`]: when it was written (seconds since the epoch);
//!   [`LABEL_WRITER`]: who wrote it (the agent's lease holder id, or `apply/…`);
//!   [`LABEL_REFRESH`]: for an agent, the longest time between two of its writes
//!   while it holds the lease ([`REFRESH_SECS`]).
//!
//! # Writes
//!
//! The lease holder writes at most once after a pass (and once more before the
//! updates of a pass that scales, so that the decided scale events are stored
//! before the counts change), and only when something changed:
//! a new recommendation value, a scale event, a failure count, a count it set, a
//! service removed. In a steady swarm the newest recommendation's time is the only
//! thing that moves; it is written at most every [`REFRESH_SECS`], and a reader
//! takes an agent's newest recommendations as holding until `written +
//! REFRESH_SECS` (never later than its own now): a window may then last up to
//! [`REFRESH_SECS`] longer after a handover, never shorter.
//!
//! # Size
//!
//! Each service's recommendations are compacted exactly ([`compact`]): only those
//! above every later one (they bound a scale-down window) or below every later one
//! (a scale-up window) can ever matter, so a steady service keeps one. At most
//! [`MAX_RECOMMENDATIONS`] are kept (beyond that the two oldest merge into the higher
//! at the later time: scale-downs wait longer, never less) and the newest
//! [`MAX_EVENTS`] scale events.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::decide::History;
use crate::engine::service::segment;
use crate::engine::{Engine, EngineError};

/// Label prefix of one service's entry (the service ID follows).
pub const LABEL_PREFIX: &str = "microscale.history.";
/// Label: when the history was written, seconds since the Unix epoch.
pub const LABEL_WRITTEN: &str = "microscale.history-written";
/// Label: who wrote it (a lease holder id, or `apply/…`).
pub const LABEL_WRITER: &str = "microscale.history-writer";
/// Label: an agent's longest time between writes, seconds (absent for `apply`).
pub const LABEL_REFRESH: &str = "microscale.history-refresh";

/// The longest time (seconds) an agent holding the lease leaves the stored history
/// without writing while the newest recommendations' times move on.
pub const REFRESH_SECS: f64 = 60.0;

/// Most recommendations stored per service (after the exact compaction).
pub const MAX_RECOMMENDATIONS: usize = 16;

/// Most scale events stored per service (the newest).
pub const MAX_EVENTS: usize = 16;

/// Most bytes of entries one write stores (1 MiB): Swarm accepted 1.5 MB of labels
/// on one config and refused 2.4 MB (`raft message is too large`). Beyond it, every
/// entry is stored with at most [`TIGHT_LIMIT`] recommendations and events.
pub const MAX_BYTES: usize = 1 << 20;

/// The per-service limit of recommendations and of events when [`MAX_BYTES`] is
/// exceeded.
pub const TIGHT_LIMIT: usize = 4;

/// The config's data (Swarm requires some).
const DATA: &str = "docker-microscale decision history: one microscale.history.<service ID> label per service; see docs/agent.md\n";

/// The history config of the lease `lease`: `<lease>-history` (cut to Swarm's 64
/// characters).
pub fn config_name(lease: &str) -> String {
    let mut base: String = lease.chars().take(64 - "-history".len()).collect();
    base.push_str("-history");
    base
}

/// One service's stored history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// What [`crate::decide::decide`] remembers (its serde form, flattened).
    #[serde(flatten)]
    pub history: History,
    /// The replica count an agent last set, while nobody else changed it (for
    /// fights: `docs/agent.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<u64>,
}

impl Entry {
    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.history == History::default() && self.set.is_none()
    }
}

/// Compacts `h`'s recommendations without changing any decision: keeps those
/// strictly above every later one or strictly below every later one (the others
/// can never be the highest or the lowest of a window ending now or later); then,
/// beyond `most` (at least 1; [`MAX_RECOMMENDATIONS`] when stored), merges the two
/// oldest into the higher one at the later time.
pub fn compact(h: &mut History, most: usize) {
    let recs = h.recommendations_mut();
    let mut keep = vec![false; recs.len()];
    let (mut hi, mut lo): (Option<u64>, Option<u64>) = (None, None);
    for (i, n) in recs.iter().map(|r| r.replicas).enumerate().rev() {
        if hi.is_none_or(|h| n > h) {
            keep[i] = true;
            hi = Some(n);
        }
        if lo.is_none_or(|l| n < l) {
            keep[i] = true;
            lo = Some(n);
        }
    }
    let mut i = 0;
    recs.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    while recs.len() > most.max(1) {
        let (Some(a), Some(&b)) = (recs.pop_front(), recs.front()) else {
            break;
        };
        recs[0] = (b.at, a.replicas.max(b.replicas)).into();
    }
}

/// The stored text of `entry`: compacted ([`compact`]), the newest [`MAX_EVENTS`]
/// events, times rounded up to the millisecond (a window or period never ends
/// earlier), compact JSON.
pub fn encode(entry: &Entry) -> String {
    encode_within(entry, MAX_RECOMMENDATIONS, MAX_EVENTS)
}

fn encode_within(entry: &Entry, recs: usize, most_events: usize) -> String {
    let mut e = entry.clone();
    compact(&mut e.history, recs);
    let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
    let ms = |t: &mut Value| {
        if let Some(x) = t.as_f64() {
            *t = json!((x * 1000.0).ceil() / 1000.0);
        }
    };
    if let Some(events) = v.get_mut("events").and_then(Value::as_array_mut) {
        if events.len() > most_events {
            let drop = events.len() - most_events;
            events.drain(..drop);
        }
        events.iter_mut().for_each(|e| ms(&mut e["at"]));
    }
    if let Some(recs) = v.get_mut("recommendations").and_then(Value::as_array_mut) {
        recs.iter_mut().for_each(|r| ms(&mut r[0]));
    }
    v.to_string()
}

/// Every non-empty entry [`encode`]d, by service ID; when they add up to more than
/// [`MAX_BYTES`], each with at most [`TIGHT_LIMIT`] recommendations and events.
pub fn encode_all(entries: &BTreeMap<String, Entry>) -> BTreeMap<String, String> {
    let all = |recs, events| -> BTreeMap<String, String> {
        entries
            .iter()
            .filter(|(_, e)| !e.is_empty())
            .map(|(id, e)| (id.clone(), encode_within(e, recs, events)))
            .collect()
    };
    let size = |m: &BTreeMap<String, String>| -> usize {
        m.iter()
            .map(|(id, t)| LABEL_PREFIX.len() + id.len() + t.len())
            .sum()
    };
    let full = all(MAX_RECOMMENDATIONS, MAX_EVENTS);
    if size(&full) <= MAX_BYTES {
        full
    } else {
        all(TIGHT_LIMIT, TIGHT_LIMIT)
    }
}

/// `encode` without the newest recommendation's time: what must be written at once
/// when it changes (the time alone is refreshed every [`REFRESH_SECS`]).
pub(crate) fn fingerprint(encoded: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(encoded) else {
        return encoded.to_string();
    };
    if let Some(last) = v
        .get_mut("recommendations")
        .and_then(Value::as_array_mut)
        .and_then(|r| r.last_mut())
        .and_then(Value::as_array_mut)
        && !last.is_empty()
    {
        last[0] = Value::Null;
    }
    v.to_string()
}

/// The history config as read.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// The config's ID, version index and spec, when it exists.
    pub config: Option<(String, u64, Value)>,
    /// Service ID → its entry.
    pub entries: BTreeMap<String, Entry>,
    /// Service ID → why its label cannot be read.
    pub bad: BTreeMap<String, String>,
    /// [`LABEL_WRITTEN`].
    pub written: Option<f64>,
    /// [`LABEL_WRITER`].
    pub writer: Option<String>,
    /// [`LABEL_REFRESH`].
    pub refresh: Option<f64>,
}

impl Stored {
    /// The entries to decide with at `now`: each service's newest recommendation
    /// taken as holding until `written + refresh` (an agent's promise to write at
    /// least that often), but never past `now`.
    pub fn histories(&self, now: f64) -> HashMap<String, Entry> {
        let until = match (self.written, self.refresh) {
            (Some(w), Some(r)) => Some((w + r).min(now)),
            _ => None,
        };
        self.entries
            .iter()
            .map(|(id, e)| {
                let mut e = e.clone();
                if let Some(u) = until
                    && let Some(last) = e.history.recommendations_mut().back_mut()
                    && last.at < u
                {
                    last.at = u;
                }
                (id.clone(), e)
            })
            .collect()
    }
}

/// Parses a config answer (`GET /configs/{name}`).
fn parse(name: &str, value: &Value) -> Result<Stored, EngineError> {
    if value["Spec"]["Name"].as_str() != Some(name) {
        return Ok(Stored::default());
    }
    let malformed = |what: &str| EngineError::Daemon {
        status: 200,
        message: format!("the engine's answer for config {name} has no {what}"),
    };
    let id = value["ID"].as_str().ok_or_else(|| malformed("ID"))?;
    let version = value["Version"]["Index"]
        .as_u64()
        .ok_or_else(|| malformed("version index"))?;
    let mut stored = Stored {
        config: Some((id.to_string(), version, value["Spec"].clone())),
        ..Default::default()
    };
    let Some(labels) = value["Spec"]["Labels"].as_object() else {
        return Ok(stored);
    };
    let number = |k: &str| {
        labels
            .get(k)
            .and_then(Value::as_str)
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|x| x.is_finite())
    };
    stored.written = number(LABEL_WRITTEN);
    stored.refresh = number(LABEL_REFRESH).filter(|r| *r >= 0.0);
    stored.writer = labels
        .get(LABEL_WRITER)
        .and_then(Value::as_str)
        .map(str::to_string);
    for (k, v) in labels {
        let Some(sid) = k.strip_prefix(LABEL_PREFIX) else {
            continue;
        };
        let parsed = v
            .as_str()
            .ok_or_else(|| "not a string".to_string())
            .and_then(|s| serde_json::from_str::<Entry>(s).map_err(|e| e.to_string()))
            .and_then(|e| {
                let finite = e.history.recommendations().iter().all(|r| r.at.is_finite())
                    && e.history.events().iter().all(|ev| ev.at.is_finite());
                if finite {
                    Ok(e)
                } else {
                    Err("a time is not a number".into())
                }
            });
        match parsed {
            Ok(e) => {
                stored.entries.insert(sid.to_string(), e);
            }
            Err(why) => {
                stored.bad.insert(
                    sid.to_string(),
                    format!(
                        "label {k} of config {name}: {}",
                        crate::edge::text::ellipsize(&crate::edge::text::printable(&why), 200)
                    ),
                );
            }
        }
    }
    Ok(stored)
}

/// Reads the history config `name`; a missing config is an empty history (no
/// agent or `apply` wrote one yet).
///
/// Errors: the engine unreachable, a worker node, an answer that is not JSON.
pub async fn read(engine: &Engine, name: &str) -> Result<Stored, EngineError> {
    let path = format!("/configs/{}", segment(name));
    match engine.raw_request(http::Method::GET, &path, None).await {
        Ok(bytes) => {
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| EngineError::Daemon {
                status: 200,
                message: format!("the engine's answer for config {name} is not JSON: {e}"),
            })?;
            parse(name, &value)
        }
        Err(EngineError::Daemon { status: 404, .. }) => Ok(Stored::default()),
        Err(e) => Err(e),
    }
}

/// The labels of a write: those of `spec` that are not entries, the entries of
/// services in `present` that are not `ours`, then `ours` and the metadata.
fn merged_labels(
    spec: Option<&Value>,
    ours: &BTreeMap<String, String>,
    present: &HashSet<String>,
    meta: &[(&str, String)],
) -> serde_json::Map<String, Value> {
    let mut labels = spec
        .and_then(|s| s["Labels"].as_object().cloned())
        .unwrap_or_default();
    labels.retain(|k, _| match k.strip_prefix(LABEL_PREFIX) {
        Some(id) => present.contains(id) && !ours.contains_key(id),
        None => true,
    });
    for (id, text) in ours {
        labels.insert(format!("{LABEL_PREFIX}{id}"), Value::from(text.as_str()));
    }
    for (k, v) in meta {
        labels.insert(k.to_string(), Value::from(v.as_str()));
    }
    labels
}

/// Writes `ours` (service ID → [`encode`]d entry) into the history config `name`,
/// creating it when missing; entries of services not in `present` (removed) go,
/// entries of other present services stay. Compare-and-set on the version read;
/// read again and retried on a conflict (at most 3 times). Returns the bytes of
/// the labels written.
///
/// Errors: the engine refuses (a worker), keeps conflicting, or is unreachable.
pub async fn write(
    engine: &Engine,
    name: &str,
    writer: &str,
    refresh: Option<f64>,
    now: f64,
    ours: &BTreeMap<String, String>,
    present: &HashSet<String>,
) -> Result<usize, EngineError> {
    let mut meta = vec![
        (LABEL_WRITTEN, format!("{now:.3}")),
        (LABEL_WRITER, writer.to_string()),
    ];
    if let Some(r) = refresh {
        meta.push((LABEL_REFRESH, format!("{r}")));
    }
    let mut last = None;
    for _ in 0..3 {
        let stored = read(engine, name).await?;
        let labels = merged_labels(stored.config.as_ref().map(|c| &c.2), ours, present, &meta);
        let current = stored
            .config
            .as_ref()
            .map(|(id, v, spec)| (id.as_str(), *v, spec));
        let result = super::put_config_labels(engine, name, current, &labels, DATA).await;
        match result {
            Ok(_) => {
                return Ok(labels
                    .iter()
                    .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                    .sum());
            }
            Err(e) if super::is_conflict(&e) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(EngineError::Daemon {
        status: 409,
        message: format!("the config {name} keeps changing: history not written"),
    }))
}

/// Why a scale-down of a service is held because its history cannot be trusted;
/// `None` when it can.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// The whole history could not be read: why.
    pub unreadable: Option<String>,
    /// Service ID → (since when it decides on a fresh history, why its stored one
    /// was unreadable).
    pub bad: HashMap<String, (f64, String)>,
}

impl Trust {
    /// Trust as `stored` (read at `now`) allows.
    pub fn of(stored: &Stored, now: f64) -> Trust {
        Trust {
            unreadable: None,
            bad: stored
                .bad
                .iter()
                .map(|(id, why)| (id.clone(), (now, why.clone())))
                .collect(),
        }
    }
}

/// Seconds since the epoch as RFC 3339 UTC (whole seconds).
pub fn epoch_text(t: f64) -> String {
    if !t.is_finite() {
        return "-".into();
    }
    jiff::Timestamp::from_millisecond((t * 1000.0).clamp(-1e15, 1e15) as i64)
        .ok()
        .and_then(|ts| ts.round(jiff::Unit::Second).ok())
        .map(|ts| ts.to_string())
        .unwrap_or_else(|| format!("{t}"))
}

/// The scale-down window (seconds) of each rule-managed service among `services`,
/// by service ID (5 minutes when its rule cannot be read).
pub fn down_windows(
    services: &[bollard::models::Service],
    file: Option<(&std::path::Path, &crate::rules::check::RulesFile)>,
) -> HashMap<String, f64> {
    crate::rules::check::rule_inputs(services, file)
        .into_iter()
        .map(|(s, labels, _)| {
            let name = crate::rules::check::service_name(s);
            let w = crate::rules::parse_labels(&name, crate::swarm::service::Mode::of(s), &labels)
                .rule
                .map_or(300.0, |r| r.scale_down.window.as_secs_f64());
            (s.id.clone().unwrap_or_default(), w)
        })
        .collect()
}

/// The agent's side: reads the stored history when it takes the lease, and writes
/// it back after its passes, at most once each and only on a change.
#[derive(Debug, Default)]
pub struct Keeper {
    /// The config's name.
    pub name: String,
    /// Read since this agent last took the lease: only then may it write.
    loaded: bool,
    /// What the stored history allows.
    pub trust: Trust,
    /// Service ID → fingerprint of what is stored.
    stored: BTreeMap<String, String>,
    /// Service ID → encoded entry as stored.
    stored_full: BTreeMap<String, String>,
    /// When this agent last wrote (seconds since the epoch).
    last_write: f64,
}

impl Keeper {
    /// A keeper of the config `name`.
    pub fn new(name: String) -> Keeper {
        Keeper {
            name,
            ..Default::default()
        }
    }

    /// Whether the stored history was read since this agent took the lease.
    pub fn loaded(&self) -> bool {
        self.loaded
    }

    /// At the start of a pass. Not holding: forgets that it read the history (the
    /// next holder writes). Holding, not yet read: reads it and returns the entries
    /// to decide with (replacing the agent's own); on an error the whole history is
    /// untrusted (scale-downs held) and it is read again next pass.
    pub async fn on_pass(
        &mut self,
        engine: &Engine,
        holds: bool,
        now: f64,
    ) -> Option<HashMap<String, Entry>> {
        if !holds {
            self.loaded = false;
            return None;
        }
        if self.loaded {
            return None;
        }
        match read(engine, &self.name).await {
            Ok(stored) => {
                self.loaded = true;
                self.trust = Trust::of(&stored, now);
                self.stored_full = stored
                    .entries
                    .iter()
                    .map(|(id, e)| (id.clone(), encode(e)))
                    .collect();
                // Bad labels count as changed: they are overwritten.
                for id in stored.bad.keys() {
                    self.stored_full.insert(id.clone(), String::new());
                }
                self.stored = self
                    .stored_full
                    .iter()
                    .map(|(id, t)| (id.clone(), fingerprint(t)))
                    .collect();
                self.last_write = stored.written.unwrap_or(0.0);
                Some(stored.histories(now))
            }
            Err(e) => {
                self.trust.unreadable = Some(crate::edge::text::printable(&e.to_string()));
                None
            }
        }
    }

    /// Whether `ours` (encoded) and `prints` (their fingerprints) must be written at
    /// `now`: a fingerprint differs from what is stored, a stored service is gone
    /// from `present`, or only times moved and the last write is [`REFRESH_SECS`]
    /// old.
    fn needs_write(
        &self,
        ours: &BTreeMap<String, String>,
        prints: &BTreeMap<String, String>,
        present: &HashSet<String>,
        now: f64,
    ) -> bool {
        let removed = self.stored.keys().any(|id| !present.contains(id));
        let changed = removed || prints.iter().any(|(id, p)| self.stored.get(id) != Some(p));
        let stale = now - self.last_write >= REFRESH_SECS
            && ours
                .iter()
                .any(|(id, t)| self.stored_full.get(id) != Some(t));
        changed || stale
    }

    /// After a pass of the holder: writes `entries` (service ID → entry of the
    /// services this agent decides) when something changed since what is stored,
    /// or when the newest times are older than [`REFRESH_SECS`]; entries of
    /// services not in `present` are dropped. Returns the bytes written, `None`
    /// when nothing was written.
    ///
    /// Errors: as [`write`]; the next pass tries again.
    pub async fn save(
        &mut self,
        engine: &Engine,
        writer: &str,
        now: f64,
        entries: &BTreeMap<String, Entry>,
        present: &HashSet<String>,
    ) -> Result<Option<usize>, EngineError> {
        if !self.loaded {
            return Ok(None);
        }
        let ours = encode_all(entries);
        let prints: BTreeMap<String, String> = ours
            .iter()
            .map(|(id, t)| (id.clone(), fingerprint(t)))
            .collect();
        if !self.needs_write(&ours, &prints, present, now) {
            return Ok(None);
        }
        let bytes = write(
            engine,
            &self.name,
            writer,
            Some(REFRESH_SECS),
            now,
            &ours,
            present,
        )
        .await?;
        self.stored.retain(|id, _| present.contains(id));
        self.stored_full.retain(|id, _| present.contains(id));
        self.stored.extend(prints);
        self.stored_full.extend(ours);
        self.last_write = now;
        Ok(Some(bytes))
    }
}

/// A service ID of Swarm's length (25 characters) for the bench.
pub(crate) fn bench_id(i: usize) -> String {
    format!("{i:0>25}")
}

/// The worst case a service can store: [`MAX_RECOMMENDATIONS`] recommendations and
/// [`MAX_EVENTS`] events (times with microseconds), failures and a count set.
pub(crate) fn worst_entry(now: f64) -> Entry {
    let h: History = serde_json::from_value(json!({
        "recommendations": (0..MAX_RECOMMENDATIONS)
            .map(|i| json!([now - 300.0 + i as f64 * 15.123457, 40 - i as u64]))
            .collect::<Vec<_>>(),
        "events": (0..MAX_EVENTS)
            .map(|i| json!({"at": now - 60.0 + i as f64 * 3.654321, "from": 20 + i as u64, "to": 21 + i as u64}))
            .collect::<Vec<_>>(),
        "failures": 3
    }))
    .unwrap_or_default();
    Entry {
        history: h,
        set: Some(36),
    }
}

/// CPU milliseconds (median of 5) of one agent pass's decisions over `entries`: the
/// pure core ([`crate::decide::decide`]) for each service, with its full history
/// (cloned, as a dry run does), a rule with a 5-minute window and steps, and a
/// metric that asks to scale down.
pub(crate) fn decide_cpu_millis(entries: &BTreeMap<String, Entry>, now: f64) -> f64 {
    use crate::decide::{Observation, Reading, decide};
    let labels: BTreeMap<String, String> = [
        ("microscale.min", "1"),
        ("microscale.max", "40"),
        ("microscale.metric", "http://queue/stats#/depth"),
        ("microscale.target", "10"),
        ("microscale.scale-down.window", "5m"),
        ("microscale.scale-down.max-step", "4/1m,50%/1m"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let Some(rule) =
        crate::rules::parse_labels("bench", crate::swarm::service::Mode::Replicated, &labels).rule
    else {
        return f64::NAN;
    };
    let obs = Observation {
        mode: crate::swarm::service::Mode::Replicated,
        replicas: 20,
        running: 20,
        update: None,
        converging_since: None,
        placement: None,
        readings: vec![Reading {
            name: String::new(),
            value: Ok(55.0),
            coverage: None,
        }],
    };
    let mut times = vec![];
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let mut desired = 0;
        for e in entries.values() {
            let mut h = e.history.clone();
            desired += decide(&rule, &obs, &mut h, now, 60.0).desired;
        }
        std::hint::black_box(desired);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(recs: &[(f64, u64)]) -> History {
        let mut h = History::default();
        h.recommendations_mut()
            .extend(recs.iter().map(|&r| crate::decide::Recommendation::from(r)));
        h
    }

    /// The highest recommendation inside the window (now − w, now], and the lowest.
    fn window(h: &History, now: f64, w: f64) -> (Option<u64>, Option<u64>) {
        let inside = h
            .recommendations()
            .iter()
            .filter(|r| r.at > now - w)
            .map(|r| r.replicas);
        (inside.clone().max(), inside.min())
    }

    #[test]
    fn compaction_keeps_every_window_answer() {
        let recs: Vec<(f64, u64)> = [5, 7, 7, 3, 6, 6, 2, 4, 4, 4]
            .iter()
            .enumerate()
            .map(|(i, n)| (i as f64 * 15.0, *n))
            .collect();
        let full = history(&recs);
        let mut small = full.clone();
        compact(&mut small, MAX_RECOMMENDATIONS);
        assert!(small.recommendations().len() < full.recommendations().len());
        assert_eq!(
            small
                .recommendations()
                .iter()
                .map(|&r| r.into())
                .collect::<Vec<(f64, u64)>>(),
            [(30.0, 7), (75.0, 6), (90.0, 2), (135.0, 4)]
        );
        for now in [135.0, 140.0, 200.0, 300.0] {
            for w in [0.0, 10.0, 30.0, 60.0, 100.0, 500.0] {
                assert_eq!(
                    window(&full, now, w),
                    window(&small, now, w),
                    "now {now} w {w}"
                );
            }
        }
    }

    #[test]
    fn a_steady_service_keeps_one_recommendation() {
        let mut h = history(&[(0.0, 3), (15.0, 3), (30.0, 3)]);
        compact(&mut h, MAX_RECOMMENDATIONS);
        assert_eq!(
            h.recommendations()
                .iter()
                .map(|&r| r.into())
                .collect::<Vec<(f64, u64)>>(),
            [(30.0, 3)]
        );
    }

    #[test]
    fn beyond_the_limit_the_oldest_merge_into_the_higher() {
        // A ramp down: every one is above all later ones.
        let recs: Vec<(f64, u64)> = (0..40).map(|i| (i as f64, 100 - i as u64)).collect();
        let mut h = history(&recs);
        compact(&mut h, MAX_RECOMMENDATIONS);
        let kept: Vec<(f64, u64)> = h.recommendations().iter().map(|&r| r.into()).collect();
        assert_eq!(kept.len(), MAX_RECOMMENDATIONS);
        // The highest value is kept, at a later time: scale-downs wait longer.
        assert_eq!(kept[0], (24.0, 100));
        assert_eq!(kept.last(), Some(&(39.0, 61)));
    }

    #[test]
    fn entries_round_trip_and_bad_labels_are_named() {
        let e = Entry {
            history: history(&[(1_765_000_000.5, 4)]),
            set: Some(4),
        };
        let text = encode(&e);
        assert_eq!(
            text,
            r#"{"events":[],"failures":0,"recommendations":[[1765000000.5,4]],"set":4}"#
        );
        let config = json!({
            "ID": "cfg1", "Version": {"Index": 7},
            "Spec": {"Name": "h", "Labels": {
                "microscale.history.svc1": text,
                "microscale.history.svc2": "{not json",
                "microscale.history-written": "1765000001.000",
                "microscale.history-refresh": "60",
                "other": "x"
            }}
        });
        let s = parse("h", &config).unwrap();
        assert_eq!(s.entries["svc1"], e);
        assert!(
            s.bad["svc2"].contains("label microscale.history.svc2 of config h"),
            "{:?}",
            s.bad
        );
        assert_eq!(s.config.as_ref().map(|c| c.1), Some(7));
        // An agent's newest recommendation holds until written + refresh, not past now.
        let h = s.histories(1_765_000_030.0);
        assert_eq!(h["svc1"].history.recommendations()[0].at, 1_765_000_030.0);
        let h = s.histories(1_765_000_100.0);
        assert_eq!(h["svc1"].history.recommendations()[0].at, 1_765_000_061.0);
        assert!(parse("other", &config).unwrap().config.is_none());
    }

    #[test]
    fn only_a_changed_value_needs_a_write_at_once() {
        let a = encode(&Entry {
            history: history(&[(10.0, 4)]),
            set: None,
        });
        let b = encode(&Entry {
            history: history(&[(25.0, 4)]),
            set: None,
        });
        let c = encode(&Entry {
            history: history(&[(10.0, 4), (25.0, 3)]),
            set: None,
        });
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    #[test]
    fn a_write_keeps_other_present_services_and_drops_removed_ones() {
        let spec = json!({"Name": "h", "Labels": {
            "microscale.history.kept": "{}",
            "microscale.history.gone": "{}",
            "microscale.history.mine": "old",
            "team": "blue"
        }});
        let ours = BTreeMap::from([("mine".to_string(), "new".to_string())]);
        let present: HashSet<String> = ["kept", "mine"].iter().map(|s| s.to_string()).collect();
        let l = merged_labels(Some(&spec), &ours, &present, &[(LABEL_WRITER, "me".into())]);
        let keys: Vec<&str> = l.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "microscale.history-writer",
                "microscale.history.kept",
                "microscale.history.mine",
                "team"
            ]
        );
        assert_eq!(l["microscale.history.mine"], "new");
    }

    /// The keeper's state after writing `ours` at `at`.
    fn written(ours: &BTreeMap<String, String>, at: f64) -> Keeper {
        let mut k = Keeper::new("h".into());
        k.loaded = true;
        k.stored_full = ours.clone();
        k.stored = ours
            .iter()
            .map(|(id, t)| (id.clone(), fingerprint(t)))
            .collect();
        k.last_write = at;
        k
    }

    #[test]
    fn a_steady_pass_writes_nothing_a_change_writes_at_once_moving_times_each_minute() {
        let entries = |recs: &[(f64, u64)], set| {
            BTreeMap::from([(
                "svc".to_string(),
                Entry {
                    history: history(recs),
                    set,
                },
            )])
        };
        let needs = |k: &Keeper, e: &BTreeMap<String, Entry>, present: &[&str], now| {
            let ours = encode_all(e);
            let prints = ours
                .iter()
                .map(|(id, t)| (id.clone(), fingerprint(t)))
                .collect();
            let present = present.iter().map(|s| s.to_string()).collect();
            k.needs_write(&ours, &prints, &present, now)
        };
        let k = written(&encode_all(&entries(&[(100.0, 3)], Some(3))), 100.0);
        // Same entries: nothing.
        assert!(!needs(
            &k,
            &entries(&[(100.0, 3)], Some(3)),
            &["svc"],
            101.0
        ));
        // Only the newest time moved: not before REFRESH_SECS, then yes.
        assert!(!needs(
            &k,
            &entries(&[(115.0, 3)], Some(3)),
            &["svc"],
            115.0
        ));
        assert!(needs(&k, &entries(&[(160.0, 3)], Some(3)), &["svc"], 160.0));
        // A new value, a count set, a removed service: at once.
        assert!(needs(
            &k,
            &entries(&[(100.0, 3), (115.0, 2)], Some(3)),
            &["svc"],
            115.0
        ));
        assert!(needs(&k, &entries(&[(115.0, 3)], Some(4)), &["svc"], 115.0));
        assert!(needs(&k, &BTreeMap::new(), &[], 115.0));
    }

    #[test]
    fn a_thousand_worst_case_services_fit_the_write_bound() {
        let now = 1_765_000_000.0;
        let all: BTreeMap<String, Entry> =
            (0..1000).map(|i| (bench_id(i), worst_entry(now))).collect();
        let one = encode(&worst_entry(now));
        let full: usize = 1000 * (LABEL_PREFIX.len() + 25 + one.len());
        assert!(full > MAX_BYTES, "the case is worst: {full}");
        let ours = encode_all(&all);
        let size: usize = ours
            .iter()
            .map(|(id, t)| LABEL_PREFIX.len() + id.len() + t.len())
            .sum();
        assert!(size <= MAX_BYTES, "{size}");
        let back: Entry = serde_json::from_str(&ours[&bench_id(0)]).unwrap();
        assert_eq!(back.history.recommendations().len(), TIGHT_LIMIT);
        assert_eq!(back.history.events().len(), TIGHT_LIMIT);
        // The highest recommendation survives the tightening: scale-downs wait.
        assert_eq!(
            back.history
                .recommendations()
                .iter()
                .map(|r| r.replicas)
                .max(),
            Some(40)
        );
        // Few services keep everything.
        let few: BTreeMap<String, Entry> =
            (0..10).map(|i| (bench_id(i), worst_entry(now))).collect();
        let back: Entry = serde_json::from_str(&encode_all(&few)[&bench_id(0)]).unwrap();
        assert_eq!(back.history.recommendations().len(), MAX_RECOMMENDATIONS);
        assert_eq!(back.history.events().len(), MAX_EVENTS);
    }

    #[test]
    fn config_names_fit_swarm() {
        assert_eq!(
            config_name("microscale-agent-lease"),
            "microscale-agent-lease-history"
        );
        assert_eq!(config_name(&"a".repeat(64)).len(), 64);
    }
}
