//! The agent's leader lease, kept in the swarm itself: several `docker microscale run`
//! agents (one per manager) may run, and only the one that holds the lease acts.
//!
//! # The lease object
//!
//! A Swarm config named by the caller ([`DEFAULT_NAME`] for the agent), created with
//! `POST /configs/create`, read with `GET /configs/{name}` and written with
//! `POST /configs/{id}/update?version=N`. Swarm only lets a config's labels change,
//! so the spec goes back exactly as read (raw JSON) with only these labels set:
//!
//! - [`LABEL_HOLDER`] (`microscale.lease.holder`): the holder id; empty when free;
//! - [`LABEL_TTL`] (`microscale.lease.ttl`): the holder's TTL in seconds (a decimal
//!   number, e.g. `15` or `2.5`);
//! - [`LABEL_RENEWED`] (`microscale.lease.renewed`): when it was last written, RFC 3339
//!   UTC. Informational only: the clocks of different managers are never compared.
//!
//! # Compare-and-set
//!
//! Every write (takeover, renewal, release) names the version index it read. Swarm
//! refuses a write on a version that is no longer current (`update out of
//! sequence`): someone else wrote first, so the lease is read again, and nothing is
//! written again in that tick. Two agents creating the lease at once: one gets a name
//! conflict (409) and reads the other's.
//!
//! # Time, without comparing clocks
//!
//! Each agent uses only its own monotonic clock ([`Window`]); no two managers' clocks
//! are ever compared, only the *rates* at which they run are assumed to differ by
//! less than the margin allows (see below).
//!
//! - The holder renews every TTL/3, and counts itself the holder only until (when its
//!   last successful renewal was *sent*) + TTL - TTL/5. A renewal that fails or comes
//!   late therefore ends its window before anyone else may take over. Every write
//!   also carries [`LABEL_CLOCK`]: the holder's own monotonic clock when it was sent
//!   (milliseconds from an origin of that process), so that a standby can tell how
//!   far apart two of its renewals were sent.
//! - Another agent (a standby) counts the lease as expired once the version it
//!   watches has stayed the same for a full TTL (the larger of its own TTL and the
//!   holder's [`LABEL_TTL`]) on its own clock, counted from `since`, a time at or
//!   after the moment the holder *sent* the write that produced that version:
//!   - the first version it sees of a holder: `since` is when the read that showed
//!     it *returned*;
//!   - a later version of the same holder (same holder id, a larger version and a
//!     larger [`LABEL_CLOCK`]): `since` is the previous version's `since` plus the
//!     holder's own time between the two writes, scaled by TTL / (TTL - TTL/5) =
//!     5/4 for clock rates, or when the read returned if that is earlier. So the
//!     clock runs from the last version the standby saw, and a read that hung
//!     through a Raft election (it returns only when a new leader answers) no
//!     longer restarts it.
//!
//! Why `since` is never before the holder's send: a renewal is sent before it is
//! committed, and committed before any read shows it, so the read that returned
//! showing it returned after it was sent. And if version v' follows v from the same
//! holder process, it was sent (v' clock - v clock) of the holder's time after v,
//! which the 5/4 factor turns into at least that much of the standby's time as long
//! as the two clocks' rates differ by less than the margin covers. Hence the
//! takeover, which needs the watched version to be current (compare-and-set), comes
//! at least a TTL after the holder's last renewal was sent, and so at least TTL/5
//! after its window ended.
//!
//! Why not simply count from when the read that showed v was *sent*: a read is
//! answered at some moment between its send and its return, and the write it shows
//! may have been sent after the read was. Swarm queues reads on the leader: a read
//! sent at the start of an election is answered after it, and the holder's renewal
//! sent during the election (or the standby's own dockerd stalled, frozen or swapped
//! out, while the holder renews normally) may well be committed just before. Counted
//! from the read's send, the standby would take over while that renewal's window is
//! still open. The holder clock label gives the same speed without that hole.
//!
//! An agent whose engine cannot be reached keeps no lease: [`Lease::tick`] returns
//! the error and [`Lease::holds`] turns false when the window ends. A standby polls
//! every TTL/6 by default ([`Lease::with_poll`] sets another period), so that it
//! sees each renewal soon after it is committed.
//!
//! Configs are manager-only: on a worker node every call returns
//! [`EngineError::Worker`].

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};

use crate::edge::exit::{Exit, Failure};
use crate::engine::service::{is_out_of_sequence, segment};
use crate::engine::{Engine, EngineError};
use clap::Args;

/// The name of the Swarm config the `run` agent uses as its lease.
/// Longest time the agent spends releasing its lease on the way out (SIGTERM): an
/// engine that does not answer by then is left, and a standby takes over when the
/// lease expires (one TTL).
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

pub const DEFAULT_NAME: &str = "microscale-agent-lease";

/// The TTL the `run` agent uses unless told otherwise: 12 seconds (docs/agent.md,
/// takeover times: with it a standby takes over within 20 s of the holder dying).
pub const DEFAULT_TTL: Duration = Duration::from_secs(12);

/// Shortest TTL accepted: 1 second.
pub const MIN_TTL: Duration = Duration::from_secs(1);

/// Longest TTL accepted: 1 hour.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// Config label naming the holder (empty: free).
pub const LABEL_HOLDER: &str = "microscale.lease.holder";

/// Config label with the holder's TTL in seconds.
pub const LABEL_TTL: &str = "microscale.lease.ttl";

/// Config label with the time of the last write, RFC 3339 (informational).
pub const LABEL_RENEWED: &str = "microscale.lease.renewed";

/// Config label with the writer's monotonic clock when the write was sent: whole
/// milliseconds from an origin private to that process. Only differences between
/// two writes of the same holder id mean anything (a standby's watch uses them).
pub const LABEL_CLOCK: &str = "microscale.lease.clock";

/// Shortest standby poll period [`Lease::with_poll`] accepts: 250 ms.
pub const MIN_POLL: Duration = Duration::from_millis(250);

/// This process's monotonic clock as written in [`LABEL_CLOCK`]: milliseconds from
/// the first time it was asked for.
fn holder_clock(at: Instant) -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    at.saturating_duration_since(origin).as_millis() as u64
}

/// The config's data (Swarm requires some): what the object is.
const DATA: &str = "docker-microscale agent lease: the holder is in the microscale.lease.* labels; see docs/agent.md\n";

/// Who holds the lease, as one [`Lease::tick`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// This agent holds it, and its local window is open: [`Lease::holds`] is true
    /// (until the window ends; check it again right before acting).
    Held,
    /// Another agent holds it: its holder id (the [`LABEL_HOLDER`] label).
    Other(String),
    /// Nobody may act on it right now: the holder label is empty (released), or
    /// still names this agent while its window has ended (the next tick renews it).
    Free,
}

/// The lease's timing: a pure state machine over explicit instants (no clock, no
/// I/O), for the holder's validity window and a standby's expiry watch.
///
/// All instants are from one process's monotonic clock; durations derive from the
/// TTL: renew every TTL/3, safety margin TTL/5, standby poll TTL/6 unless set.
#[derive(Debug, Clone)]
pub struct Window {
    ttl: Duration,
    /// How often a standby reads the lease.
    poll: Duration,
    /// When the last successful write of ours (create, takeover, renewal) was sent.
    last_sent: Option<Instant>,
    /// End of our window: `last_sent` + TTL - margin.
    valid_until: Option<Instant>,
    /// The version a standby is watching.
    watch: Option<Watch>,
    /// After a failed tick: no tick before this.
    backoff_until: Option<Instant>,
}

/// What one read of the lease showed of another agent's hold (the lease labels and
/// the config's version index), for [`Window::observe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The config's version index (`Version.Index`).
    pub version: u64,
    /// The holder id ([`LABEL_HOLDER`]; not ours, not empty).
    pub holder: String,
    /// The holder's TTL ([`LABEL_TTL`]), when readable.
    pub ttl: Option<Duration>,
    /// The holder's clock when it sent this write ([`LABEL_CLOCK`], milliseconds),
    /// when readable.
    pub clock: Option<u64>,
}

/// One version of the lease seen held by another agent, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Watch {
    version: u64,
    holder: String,
    /// The holder's [`LABEL_CLOCK`] on this version.
    clock: Option<u64>,
    /// On our clock, at or after the moment the holder sent the write that produced
    /// this version (module docs, "Time, without comparing clocks").
    since: Instant,
    /// How long it must stay unchanged: max(our TTL, the holder's TTL label).
    ttl: Duration,
}

impl Window {
    /// A window for `ttl`, holding nothing and watching nothing; a standby polls
    /// every TTL/6.
    pub fn new(ttl: Duration) -> Window {
        Window {
            ttl,
            poll: ttl / 6,
            last_sent: None,
            valid_until: None,
            watch: None,
            backoff_until: None,
        }
    }

    /// The same window with a standby poll period of `poll`, kept within
    /// [`MIN_POLL`]..=TTL/3.
    pub fn with_poll(mut self, poll: Duration) -> Window {
        self.poll = poll.clamp(MIN_POLL.min(self.ttl / 3), self.ttl / 3);
        self
    }

    /// The TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often the holder renews: TTL/3.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// How often a standby reads the lease.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn poll(&self) -> Duration {
        self.poll
    }

    /// How long before the end of the TTL the holder stops counting itself the
    /// holder: TTL/5.
    pub fn margin(&self) -> Duration {
        self.ttl / 5
    }

    /// Whether our window is open at `now`.
    pub fn holds(&self, now: Instant) -> bool {
        self.valid_until.is_some_and(|v| now < v)
    }

    /// The end of our window, if we ever held.
    pub fn valid_until(&self) -> Option<Instant> {
        self.valid_until
    }

    /// Whether the holder should renew at `now`: its window is closed, or TTL/3 has
    /// passed since its last renewal was sent.
    pub fn renew_due(&self, now: Instant) -> bool {
        !self.holds(now)
            || self
                .last_sent
                .is_none_or(|sent| now >= sent + self.renew_every())
    }

    /// A write of ours sent at `sent` succeeded: the window runs to
    /// `sent` + TTL - TTL/5 (never shortened by an older write answering late), and a
    /// standby's watch ends.
    pub fn renewed(&mut self, sent: Instant) {
        if self.last_sent.is_none_or(|s| sent > s) {
            self.last_sent = Some(sent);
        }
        let until = sent + self.ttl - self.margin();
        self.valid_until = Some(self.valid_until.map_or(until, |v| v.max(until)));
        self.watch = None;
    }

    /// We no longer hold: the window closes now (another holder, the object gone,
    /// a release).
    pub fn drop_hold(&mut self) {
        self.last_sent = None;
        self.valid_until = None;
    }

    /// A standby read the lease, and the read returned at `returned`, showing
    /// `seen` (held by another agent). Returns when the watch expires.
    ///
    /// The same version and holder as watched: the watch goes on from its `since`
    /// (a read that hung and returned late restarts nothing). A newer version of
    /// the same holder whose [`LABEL_CLOCK`] moved on: `since` moves by the holder's
    /// own time between the two writes times TTL / (TTL - TTL/5), but never past
    /// `returned`. Anything else (another holder, no clock label, a clock that did
    /// not move on): `since` is `returned`.
    pub fn observe(&mut self, seen: &Sighting, returned: Instant) -> Instant {
        let ttl = self.ttl.max(seen.ttl.unwrap_or_default());
        let watch = match self.watch.take() {
            Some(mut w) if w.version == seen.version && w.holder == seen.holder => {
                w.ttl = w.ttl.max(ttl);
                w
            }
            previous => {
                let chained = previous
                    .filter(|w| w.holder == seen.holder && seen.version > w.version)
                    .and_then(|w| {
                        let elapsed = seen.clock?.checked_sub(w.clock?)?;
                        // A clock label that jumped far ahead (a hand-written
                        // u64::MAX) would overflow the instant: `returned` then.
                        (elapsed > 0)
                            .then(|| {
                                w.since
                                    .checked_add(self.rate_bound(Duration::from_millis(elapsed)))
                            })
                            .flatten()
                    });
                Watch {
                    version: seen.version,
                    holder: seen.holder.clone(),
                    clock: seen.clock,
                    since: chained.map_or(returned, |c| c.min(returned)),
                    ttl,
                }
            }
        };
        let expires = watch.since + watch.ttl;
        self.watch = Some(watch);
        expires
    }

    /// `d` of another process's clock as at most this much of ours: `d` times
    /// TTL / (TTL - TTL/5) (5/4), the rate difference the margin covers.
    fn rate_bound(&self, d: Duration) -> Duration {
        let window = self.ttl - self.margin();
        if window.is_zero() {
            return d;
        }
        d.mul_f64(self.ttl.as_secs_f64() / window.as_secs_f64())
    }

    /// When the watched version's write was sent at the latest, on our clock.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn watched_since(&self) -> Option<Instant> {
        self.watch.as_ref().map(|w| w.since)
    }

    /// Whether the watched version has stayed unchanged for its full TTL at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.watch.as_ref().is_some_and(|w| now >= w.since + w.ttl)
    }

    /// The holder being watched, while its lease may still run at `now`.
    pub fn watched_holder(&self, now: Instant) -> Option<String> {
        self.watch
            .as_ref()
            .filter(|w| now < w.since + w.ttl)
            .map(|w| w.holder.clone())
    }

    /// Stops watching (the lease is ours, free, or gone).
    pub fn forget_watch(&mut self) {
        self.watch = None;
    }

    /// A tick failed at `now`: wait the poll period, at most TTL/6, before the
    /// next, so that a holder still gets two more tries within its window, a
    /// standby soon tries again (a new request reaches a newly elected leader), and
    /// a down engine is not hammered.
    pub fn failed(&mut self, now: Instant) {
        self.backoff_until = Some(now + self.poll.min(self.renew_every() / 2));
    }

    /// How long one lease request may take: a read TTL/3, at most 2 s but at least
    /// min(TTL, 1 s); a write TTL/3. A request that hangs (it was forwarded to a
    /// Raft leader that died or froze, and Swarm waits on it) is given up, and the
    /// next tick sends a new one, which reaches the new leader once there is one.
    pub fn request_timeout(&self, read: bool) -> Duration {
        let third = self.ttl / 3;
        if read {
            third
                .min(Duration::from_secs(2))
                .max(self.ttl.min(Duration::from_secs(1)))
        } else {
            third
        }
    }

    /// A tick succeeded: no backoff.
    pub fn succeeded(&mut self) {
        self.backoff_until = None;
    }

    /// When the next tick is due, as of `now`: the holder at its next renewal; a
    /// standby at the next poll or the watch's expiry, whichever is first; after a
    /// failure, not before the backoff ends.
    pub fn next_tick(&self, now: Instant) -> Instant {
        let due = match (self.holds(now), self.last_sent) {
            (true, Some(sent)) => sent + self.renew_every(),
            _ => {
                let poll = now + self.poll;
                match &self.watch {
                    Some(w) => poll.min(w.since + w.ttl),
                    None => poll,
                }
            }
        };
        match self.backoff_until {
            Some(b) => due.max(b),
            None => due,
        }
    }
}

/// The lease as read: `GET /configs/{name}`.
#[derive(Debug, Clone)]
struct Current {
    id: String,
    version: u64,
    spec: Value,
    holder: String,
    ttl: Option<Duration>,
    clock: Option<u64>,
}

impl Current {
    /// What a standby's watch needs of it.
    fn sighting(&self) -> Sighting {
        Sighting {
            version: self.version,
            holder: self.holder.clone(),
            ttl: self.ttl,
            clock: self.clock,
        }
    }
}

/// Reads a config answer. `Ok(None)` when it names another config (the engine also
/// resolves ID prefixes); an error when it is not a lease or is malformed.
fn parse_config(name: &str, value: &Value) -> Result<Option<Current>, EngineError> {
    let malformed = |what: &str| EngineError::Daemon {
        status: 200,
        message: format!("the engine's answer for config {name} has no {what}"),
    };
    if value["Spec"]["Name"].as_str() != Some(name) {
        return Ok(None);
    }
    let id = value["ID"].as_str().ok_or_else(|| malformed("ID"))?;
    let version = value["Version"]["Index"]
        .as_u64()
        .ok_or_else(|| malformed("version index"))?;
    let labels = &value["Spec"]["Labels"];
    if labels.get(LABEL_HOLDER).is_none() && labels.get(LABEL_TTL).is_none() {
        return Err(EngineError::BadSetting(format!(
            "the swarm config {name} is not a docker-microscale lease: it has no {LABEL_HOLDER} or {LABEL_TTL} label.\nChoose another lease name, or remove that config with `docker config rm {name}` if nothing uses it."
        )));
    }
    Ok(Some(Current {
        id: id.to_string(),
        version,
        spec: value["Spec"].clone(),
        holder: labels[LABEL_HOLDER]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        ttl: labels[LABEL_TTL].as_str().and_then(parse_ttl_label),
        clock: labels[LABEL_CLOCK]
            .as_str()
            .and_then(|c| c.trim().parse::<u64>().ok()),
    }))
}

/// A [`LABEL_TTL`] value: seconds, decimal, finite and positive.
fn parse_ttl_label(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().parse().ok()?;
    (secs.is_finite() && secs > 0.0 && secs <= MAX_TTL.as_secs_f64())
        .then(|| Duration::from_secs_f64(secs))
}

/// The [`LABEL_TTL`] value for `ttl`: seconds, e.g. `15` or `2.5`.
fn ttl_label(ttl: Duration) -> String {
    format!("{}", ttl.as_secs_f64())
}

/// The four lease labels of a write sent at `sent`.
fn lease_labels(holder: &str, ttl: Duration, sent: Instant) -> [(&'static str, String); 4] {
    [
        (LABEL_HOLDER, holder.to_string()),
        (LABEL_TTL, ttl_label(ttl)),
        (LABEL_RENEWED, format!("{:.3}", jiff::Timestamp::now())),
        (LABEL_CLOCK, holder_clock(sent).to_string()),
    ]
}

/// `spec` exactly as read, with only the lease labels set (for a write sent at
/// `sent`).
fn spec_with_labels(spec: &Value, holder: &str, ttl: Duration, sent: Instant) -> Value {
    let mut spec = spec.clone();
    if !spec["Labels"].is_object() {
        spec["Labels"] = json!({});
    }
    if let Some(labels) = spec["Labels"].as_object_mut() {
        for (k, v) in lease_labels(holder, ttl, sent) {
            labels.insert(k.to_string(), Value::from(v));
        }
    }
    spec
}

/// A leader lease held by this process under the id `holder`.
///
/// Call [`Lease::tick`] by [`Lease::next_tick`] (earlier is fine: a tick with nothing
/// due is one GET), check [`Lease::holds`] right before each action, and call
/// [`Lease::release`] on a clean shutdown. The holder renews every TTL/3, so ticks must
/// not wait for a slower loop (a 15-second pass with a 15-second TTL would let the
/// window lapse): give the lease its own timer, as `__lease` ([`run`]) does.
#[derive(Debug, Clone)]
pub struct Lease {
    name: String,
    holder: String,
    window: Window,
}

impl Lease {
    /// A lease on the Swarm config `name`, for `holder` (unique per process: two live
    /// processes with one id would both act), with a TTL of `ttl` (clamped to
    /// [`MIN_TTL`]..=[`MAX_TTL`]). Nothing is sent yet.
    pub fn new(name: impl Into<String>, ttl: Duration, holder: String) -> Lease {
        Lease {
            name: name.into(),
            holder,
            window: Window::new(ttl.clamp(MIN_TTL, MAX_TTL)),
        }
    }

    /// The same lease, polled every `poll` while another agent holds it (kept within
    /// [`MIN_POLL`]..=TTL/3; TTL/6 unless set). A shorter poll lets a standby see
    /// each renewal sooner, so its watch starts closer to the holder's send and a
    /// takeover comes sooner after the holder dies; each poll is one
    /// `GET /configs/{name}`.
    pub fn with_poll(mut self, poll: Duration) -> Lease {
        self.window = self.window.with_poll(poll);
        self
    }

    /// The config's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This process's holder id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The TTL.
    pub fn ttl(&self) -> Duration {
        self.window.ttl()
    }

    /// Whether this process holds the lease now: true only while its local window
    /// lasts (last successful renewal sent + TTL - TTL/5). Check it right before
    /// acting.
    pub fn holds(&self) -> bool {
        self.window.holds(Instant::now())
    }

    /// When the window ends (monotonic), if this process ever held the lease.
    pub fn valid_until(&self) -> Option<Instant> {
        self.window.valid_until()
    }

    /// When [`Lease::tick`] should next be called (monotonic): the next renewal, the
    /// next poll (TTL/3) or a watched lease's expiry; after an error, TTL/6 later.
    pub fn next_tick(&self) -> Instant {
        self.window.next_tick(Instant::now())
    }

    /// One step: reads the lease (`GET /configs/{name}`); creates it when missing
    /// (`POST /configs/create`, holding it); renews it when ours and due; takes it
    /// over (`POST /configs/{id}/update?version=N`) when free or expired. When nothing
    /// is due this is one GET.
    ///
    /// Errors: the engine unreachable or slower than the TTL, a worker node
    /// ([`EngineError::Worker`]), a config of that name that is not a lease, or
    /// another daemon error. A version conflict is not an error: the lease is read
    /// again and the state returned.
    pub async fn tick(&mut self, engine: &Engine) -> Result<LeaseState, EngineError> {
        let result = self.step(engine).await;
        match &result {
            Ok(_) => self.window.succeeded(),
            Err(_) => self.window.failed(Instant::now()),
        }
        result
    }

    async fn step(&mut self, engine: &Engine) -> Result<LeaseState, EngineError> {
        let Some(cur) = self.read(engine).await? else {
            // Never hold a lease that no longer exists: whoever creates it holds it.
            self.window.drop_hold();
            // But a holder we were watching may still act until its window ends:
            // wait that out before creating it again (someone removed the config).
            if let Some(holder) = self.window.watched_holder(Instant::now()) {
                return Ok(LeaseState::Other(format!(
                    "{holder} (the lease config was removed; waiting out its TTL)"
                )));
            }
            self.window.forget_watch();
            return self.create(engine).await;
        };
        let seen = Instant::now();
        if cur.holder == self.holder {
            self.window.forget_watch();
            if self.window.renew_due(seen) {
                return self.write(engine, &cur).await;
            }
            return Ok(self.ours());
        }
        self.window.drop_hold();
        if cur.holder.is_empty() {
            self.window.forget_watch();
            return self.write(engine, &cur).await;
        }
        self.window.observe(&cur.sighting(), seen);
        if self.window.expired(seen) {
            return self.write(engine, &cur).await;
        }
        Ok(LeaseState::Other(cur.holder))
    }

    /// On a clean shutdown: stops holding at once, then clears the holder label by
    /// compare-and-set if it still names this process, so that a standby takes over
    /// at its next poll instead of after a TTL. Returns whether it was cleared.
    ///
    /// Errors: as [`Lease::tick`]; three version conflicts in a row.
    pub async fn release(&mut self, engine: &Engine) -> Result<bool, EngineError> {
        self.window.drop_hold();
        self.window.forget_watch();
        let mut last = None;
        for _ in 0..3 {
            let Some(cur) = self.read(engine).await? else {
                return Ok(false);
            };
            if cur.holder != self.holder {
                return Ok(false);
            }
            let spec = spec_with_labels(&cur.spec, "", self.ttl(), Instant::now());
            match self.update(engine, &cur, &spec).await {
                Ok(()) => return Ok(true),
                Err(e) if is_out_of_sequence(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("a conflict was met"))
    }

    /// [`LeaseState::Held`] if our window is open now, else [`LeaseState::Free`].
    fn ours(&self) -> LeaseState {
        if self.holds() {
            LeaseState::Held
        } else {
            LeaseState::Free
        }
    }

    /// Takes over or renews by compare-and-set on the version read.
    async fn write(&mut self, engine: &Engine, cur: &Current) -> Result<LeaseState, EngineError> {
        let sent = Instant::now();
        let spec = spec_with_labels(&cur.spec, &self.holder, self.ttl(), sent);
        match self.update(engine, cur, &spec).await {
            Ok(()) => {
                self.window.renewed(sent);
                Ok(self.ours())
            }
            Err(e) if is_out_of_sequence(&e) => self.reread(engine).await,
            Err(e) => Err(e),
        }
    }

    /// After a conflict: reads the lease again and says who holds it, writing nothing.
    async fn reread(&mut self, engine: &Engine) -> Result<LeaseState, EngineError> {
        let Some(cur) = self.read(engine).await? else {
            self.window.drop_hold();
            return Ok(LeaseState::Free);
        };
        let seen = Instant::now();
        if cur.holder == self.holder {
            return Ok(self.ours());
        }
        self.window.drop_hold();
        if cur.holder.is_empty() {
            return Ok(LeaseState::Free);
        }
        self.window.observe(&cur.sighting(), seen);
        Ok(LeaseState::Other(cur.holder))
    }

    /// Creates the lease, held by us. A name conflict (another agent created it
    /// first) reads theirs.
    async fn create(&mut self, engine: &Engine) -> Result<LeaseState, EngineError> {
        let sent = Instant::now();
        let labels: serde_json::Map<String, Value> = lease_labels(&self.holder, self.ttl(), sent)
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect();
        let body = json!({
            "Name": self.name,
            "Labels": labels,
            "Data": base64::engine::general_purpose::STANDARD.encode(DATA),
        });
        let created = self
            .request(
                engine,
                http::Method::POST,
                "/configs/create".into(),
                Some(body.to_string().into_bytes()),
            )
            .await;
        match created {
            Ok(_) => {
                self.window.renewed(sent);
                Ok(self.ours())
            }
            Err(EngineError::Daemon { status: 409, .. }) => self.reread(engine).await,
            Err(e) => Err(e),
        }
    }

    /// `GET /configs/{name}`; `None` when there is none of that name.
    async fn read(&self, engine: &Engine) -> Result<Option<Current>, EngineError> {
        let path = format!("/configs/{}", segment(&self.name));
        match self.request(engine, http::Method::GET, path, None).await {
            Ok(bytes) => {
                let value: Value =
                    serde_json::from_slice(&bytes).map_err(|e| EngineError::Daemon {
                        status: 200,
                        message: format!(
                            "the engine's answer for config {} is not JSON: {e}",
                            self.name
                        ),
                    })?;
                parse_config(&self.name, &value)
            }
            Err(EngineError::Daemon { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /configs/{id}/update?version=N` with `spec`.
    async fn update(
        &self,
        engine: &Engine,
        cur: &Current,
        spec: &Value,
    ) -> Result<(), EngineError> {
        let path = format!(
            "/configs/{}/update?version={}",
            segment(&cur.id),
            cur.version
        );
        self.request(
            engine,
            http::Method::POST,
            path,
            Some(spec.to_string().into_bytes()),
        )
        .await
        .map(|_| ())
    }

    /// One request, bounded by [`Window::request_timeout`] (and by the engine's own
    /// request timeout): a tick must not outlast the window it is meant to keep
    /// open, and a read must not keep a standby waiting on a leader that died.
    async fn request(
        &self,
        engine: &Engine,
        method: http::Method,
        path: String,
        body: Option<Vec<u8>>,
    ) -> Result<bytes::Bytes, EngineError> {
        let limit = self.window.request_timeout(method == http::Method::GET);
        match tokio::time::timeout(limit, engine.raw_request(method, &path, body)).await {
            Ok(r) => r,
            Err(_) => Err(EngineError::Unreachable {
                host: crate::edge::redact::redact_value(&engine.endpoint.host),
                source_desc: engine.endpoint.source.to_string(),
                reason: format!(
                    "no answer to the lease request within {} (a Raft election, a manager cut off from the leader, an overloaded engine)",
                    humantime::format_duration(limit)
                ),
                hint: "The engine accepted the connection but did not answer in time; the lease is tried again shortly. If the engine is merely slow, use a longer --lease-ttl.".into(),
            }),
        }
    }
}

/// A holder id: `HOSTNAME/NODEID/PID-NONCE`, with the first 12 characters of the node
/// ID and a random 16-bit nonce in hex (processes in containers all have PID 1).
fn holder_id(hostname: &str, node_id: &str, pid: u32, nonce: u16) -> String {
    let node: String = node_id.chars().take(12).collect();
    let host = if hostname.is_empty() { "-" } else { hostname };
    let node = if node.is_empty() { "-".into() } else { node };
    format!("{host}/{node}/{pid}-{nonce:04x}")
}

/// A random 16-bit number, from the process's randomly seeded hasher.
fn nonce() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() as u16
}

/// This process's holder id: the node's hostname and node ID from `GET /info`
/// (`Name`, `Swarm.NodeID`), the process id and a random nonce, e.g.
/// `manager1/x3kq9w1e2r4t/4242-9f3a`.
///
/// Errors: the engine unreachable, or its answer not JSON.
pub async fn default_holder(engine: &Engine) -> Result<String, EngineError> {
    let bytes = engine.raw_request(http::Method::GET, "/info", None).await?;
    let info: Value = serde_json::from_slice(&bytes).map_err(|e| EngineError::Daemon {
        status: 200,
        message: format!("the engine's answer to GET /info is not JSON: {e}"),
    })?;
    Ok(holder_id(
        info["Name"].as_str().unwrap_or_default(),
        info["Swarm"]["NodeID"].as_str().unwrap_or_default(),
        std::process::id(),
        nonce(),
    ))
}

/// A duration flag: a bare number of seconds or a humantime duration (`2s`, `1m30s`).
pub(crate) fn parse_duration_flag(
    flag: &str,
    value: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, String> {
    let t = value.trim();
    let parsed = t
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= max.as_secs_f64())
        .map(Duration::from_secs_f64)
        .or_else(|| humantime::parse_duration(t).ok());
    match parsed {
        Some(d) if d >= min && d <= max => Ok(d),
        _ => Err(format!(
            "invalid argument \"{value}\" for \"{flag}\" flag: a duration from {} to {}, such as 2s or 15s",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )),
    }
}

/// One line of `__lease` output (one JSON object per line).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Report {
    /// When this was printed, RFC 3339 UTC with milliseconds.
    #[serde(rename = "Time")]
    time: String,
    /// `acquired`, `renewed`, `lost`, `leader` (another holder, or free), `error`,
    /// `released`.
    #[serde(rename = "Event")]
    event: &'static str,
    /// The lease's config name.
    #[serde(rename = "Lease")]
    lease: String,
    /// This process's holder id.
    #[serde(rename = "Holder")]
    holder: String,
    /// Whether this process holds the lease now.
    #[serde(rename = "Held")]
    held: bool,
    /// Who holds it as last read: a holder id, empty when free or unknown.
    #[serde(rename = "Leader")]
    leader: String,
    /// When this process's window ends (RFC 3339, from the local monotonic clock),
    /// while it holds.
    #[serde(rename = "ValidUntil")]
    valid_until: Option<String>,
    /// The tick's error.
    #[serde(rename = "Error")]
    error: Option<String>,
}

/// `instant` (monotonic) as a wall-clock RFC 3339 time with milliseconds.
fn wall(instant: Instant) -> String {
    let now = Instant::now();
    let ts = jiff::Timestamp::now();
    let ts = if instant >= now {
        ts.checked_add(instant - now).unwrap_or(ts)
    } else {
        ts.checked_sub(now - instant).unwrap_or(ts)
    };
    format!("{ts:.3}")
}

/// What `__lease` last printed, to print only changes.
#[derive(Debug, Default)]
struct Printed {
    held: bool,
    leader: Option<String>,
    valid_until: Option<Instant>,
    error: Option<String>,
}

impl Printed {
    /// Prints a line when something changed since the last one.
    fn update(&mut self, lease: &Lease, leader: Option<String>, error: Option<String>) {
        let held = lease.holds();
        let valid_until = if held { lease.valid_until() } else { None };
        let event = if let Some(e) = &error {
            if self.error.as_ref() == Some(e) && self.held == held {
                return;
            }
            "error"
        } else if held && !self.held {
            "acquired"
        } else if held && valid_until != self.valid_until {
            "renewed"
        } else if !held && self.held {
            "lost"
        } else if !held && leader.is_some() && leader != self.leader {
            "leader"
        } else {
            self.error = None;
            return;
        };
        self.held = held;
        self.valid_until = valid_until;
        if leader.is_some() {
            self.leader = leader;
        }
        self.error = error.clone();
        emit(lease, event, self.leader.clone().unwrap_or_default(), error);
    }
}

impl Report {
    /// A report as of now.
    fn now(
        event: &'static str,
        lease: &str,
        holder: &str,
        held: bool,
        leader: String,
        valid_until: Option<Instant>,
        error: Option<String>,
    ) -> Report {
        Report {
            time: format!("{:.3}", jiff::Timestamp::now()),
            event,
            lease: lease.to_string(),
            holder: holder.to_string(),
            held,
            leader,
            valid_until: valid_until.map(wall),
            error,
        }
    }
}

/// Prints one [`Report`] line.
pub(crate) fn print_report(report: Report) {
    let line = serde_json::to_string(&report).unwrap_or_default();
    let _ = crate::edge::exit::print_stdout(&format!("{line}\n"));
}

/// Prints one [`Report`] line for `lease` as it is now.
pub(crate) fn emit(lease: &Lease, event: &'static str, leader: String, error: Option<String>) {
    let held = lease.holds();
    print_report(Report::now(
        event,
        lease.name(),
        lease.holder(),
        held,
        leader,
        lease.valid_until().filter(|_| held),
        error,
    ));
}

/// The hidden `__lease` command: runs the lease loop alone, printing one JSON line
/// per change ([`Report`]): acquired, renewed, lost, another leader, an error,
/// released. When `--for` ends it releases the lease and exits 0; on SIGINT, SIGTERM
/// or the docker CLI's cancel it releases and exits 130.
///
/// Errors: bad flags (usage, 125); a first tick that fails (a worker node, an
/// unreachable engine, a config of that name that is not a lease): exit 1. Later
/// errors are printed as `error` lines and the loop goes on.
pub async fn run(engine: &Engine, args: &LeaseArgs) -> Result<Exit, Failure> {
    let ttl = match &args.ttl {
        Some(v) => parse_duration_flag("--ttl", v, MIN_TTL, MAX_TTL).map_err(Failure::Usage)?,
        None => DEFAULT_TTL,
    };
    let stop_after = match &args.run_for {
        Some(v) => Some(
            parse_duration_flag("--for", v, Duration::ZERO, Duration::from_secs(86_400))
                .map_err(Failure::Usage)?,
        ),
        None => None,
    };
    if args.name.trim().is_empty() {
        return Err(Failure::Usage(
            "invalid argument \"\" for \"--name\" flag: the lease needs a config name".into(),
        ));
    }
    let holder = match &args.holder {
        Some(h) if !h.trim().is_empty() => h.clone(),
        Some(_) => {
            return Err(Failure::Usage(
                "invalid argument \"\" for \"--holder\" flag: an empty holder means a free lease"
                    .into(),
            ));
        }
        None => default_holder(engine)
            .await
            .map_err(|e| Failure::Error(e.to_string()))?,
    };
    let mut lease = Lease::new(args.name.clone(), ttl, holder);
    let end = stop_after.map(|d| tokio::time::Instant::now() + d);
    let cancelled = crate::edge::exit::cancellation();
    tokio::pin!(cancelled);
    let mut printed = Printed::default();
    let mut ticked_once = false;
    let interrupted = 'run: loop {
        // While a tick waits on a slow engine, the window may end: say so then.
        let window_end = lease
            .valid_until()
            .filter(|_| printed.held && lease.holds())
            .map(tokio::time::Instant::from_std);
        let (name, holder) = (lease.name().to_string(), lease.holder().to_string());
        let result = {
            let tick = lease.tick(engine);
            tokio::pin!(tick);
            loop {
                let lost_at = window_end.filter(|_| printed.held);
                tokio::select! {
                    r = &mut tick => break r,
                    _ = &mut cancelled => break 'run true,
                    _ = tokio::time::sleep_until(lost_at.unwrap_or_else(tokio::time::Instant::now)),
                        if lost_at.is_some() => {
                        printed.held = false;
                        printed.valid_until = None;
                        let leader = printed.leader.clone().unwrap_or_default();
                        print_report(Report::now("lost", &name, &holder, false, leader, None, None));
                    }
                }
            }
        };
        match result {
            Ok(state) => {
                ticked_once = true;
                let leader = match state {
                    LeaseState::Held => lease.holder().to_string(),
                    LeaseState::Other(h) => h,
                    LeaseState::Free => String::new(),
                };
                printed.update(&lease, Some(leader), None);
            }
            Err(e) if !ticked_once => return Err(Failure::Error(e.to_string())),
            Err(e) => printed.update(&lease, None, Some(e.to_string())),
        }
        // Sleep until the next tick, waking at the end of the window to say so.
        loop {
            let next = tokio::time::Instant::from_std(lease.next_tick());
            let mut wake = next;
            if lease.holds()
                && let Some(v) = lease.valid_until()
            {
                wake = wake.min(tokio::time::Instant::from_std(v));
            }
            if let Some(end) = end {
                wake = wake.min(end);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = &mut cancelled => break 'run true,
            }
            if printed.held && !lease.holds() {
                printed.update(&lease, None, None);
            }
            if end.is_some_and(|e| tokio::time::Instant::now() >= e) {
                break 'run false;
            }
            if tokio::time::Instant::now() >= next {
                break;
            }
        }
    };
    let released = lease.release(engine).await;
    match released {
        Ok(_) => emit(&lease, "released", String::new(), None),
        Err(e) => emit(&lease, "error", String::new(), Some(e.to_string())),
    }
    if interrupted {
        Err(Failure::Interrupted)
    } else {
        Ok(Exit::Ok)
    }
}

/// Options of the hidden `__lease` command.
#[derive(Debug, Clone, Args)]
pub struct LeaseArgs {
    /// The Swarm config that holds the lease (default microscale-agent-lease, the agent's)
    #[arg(
        long = "name",
        value_name = "string",
        default_value = crate::store::lease::DEFAULT_NAME,
        hide_default_value = true
    )]
    pub name: String,

    /// Time to live, e.g. 2s or 15s (default 12s): renewed every third of it; a standby takes over after it passes unrenewed
    #[arg(long = "ttl", value_name = "duration")]
    pub ttl: Option<String>,

    /// This process's holder id, unique per process (default HOSTNAME/NODEID/PID-NONCE)
    #[arg(long = "holder", value_name = "string")]
    pub holder: Option<String>,

    /// Release the lease and exit 0 after this long, e.g. 30s (default: until interrupted)
    #[arg(long = "for", value_name = "duration")]
    pub run_for: Option<String>,
}

/// Checks `--lease-name` as Swarm checks a config name, and keeps the names the
/// agent uses for other things.
pub(crate) fn check_lease_name(n: &str) -> Result<String, String> {
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && n != super::fights::CONFIG_NAME;
    if ok {
        Ok(n.to_string())
    } else {
        Err(format!(
            "invalid argument \"{}\" for \"--lease-name\" flag: a Swarm config name (a letter or digit, then letters, digits, '-', '_' and '.'; at most 64), other than {}",
            crate::edge::text::ellipsize(&crate::edge::text::printable(n), 80),
            super::fights::CONFIG_NAME
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_holder_window_ends_a_margin_before_the_ttl_from_when_the_renewal_was_sent() {
        let t0 = Instant::now();
        let mut w = Window::new(TTL);
        assert!(!w.holds(t0));
        assert!(w.renew_due(t0));
        w.renewed(t0);
        // 3s TTL: renew every 1s, margin 600 ms: open until t0 + 2.4s.
        assert_eq!(w.valid_until(), Some(t0 + ms(2400)));
        assert!(w.holds(t0 + ms(2399)));
        assert!(!w.holds(t0 + ms(2400)));
        assert!(!w.renew_due(t0 + ms(999)));
        assert!(w.renew_due(t0 + ms(1000)));
        assert_eq!(w.next_tick(t0 + ms(10)), t0 + ms(1000));
        // A renewal sent at 1s extends to 3.4s; an older one answering late does not
        // shorten it.
        w.renewed(t0 + ms(1000));
        w.renewed(t0 + ms(500));
        assert_eq!(w.valid_until(), Some(t0 + ms(3400)));
        assert!(!w.renew_due(t0 + ms(1999)));
        // A closed window is always due, whatever the last send.
        w.drop_hold();
        assert!(!w.holds(t0 + ms(1001)));
        assert!(w.renew_due(t0 + ms(1001)));
    }

    fn sight(version: u64, holder: &str, ttl: Option<Duration>, clock: Option<u64>) -> Sighting {
        Sighting {
            version,
            holder: holder.into(),
            ttl,
            clock,
        }
    }

    #[test]
    fn a_standby_waits_a_full_ttl_of_an_unchanged_version() {
        let t0 = Instant::now();
        let mut w = Window::new(TTL);
        assert_eq!(w.observe(&sight(7, "a", Some(TTL), None), t0), t0 + TTL);
        assert!(!w.expired(t0 + ms(2999)));
        // Seeing the same version again does not restart the watch, however late
        // the read returned.
        w.observe(&sight(7, "a", Some(TTL), None), t0 + ms(2000));
        assert!(w.expired(t0 + TTL));
        // A renewal without a clock label (an older agent) restarts it, from when
        // the read returned.
        let t1 = t0 + ms(3100);
        assert_eq!(w.observe(&sight(8, "a", Some(TTL), None), t1), t1 + TTL);
        assert!(!w.expired(t1 + ms(2999)));
        // So does another holder on the same version number (cannot happen in Swarm,
        // but never trust a holder change).
        w.observe(&sight(8, "b", Some(TTL), None), t1 + ms(100));
        assert!(w.expired(t1 + ms(100) + TTL));
        // The standby never holds while watching.
        assert!(!w.holds(t1 + ms(100)));
    }

    #[test]
    fn hostile_clock_labels_never_panic_nor_stretch_the_watch() {
        // Anyone with manager access can write the lease config's labels.
        let t0 = Instant::now();
        let returned = t0 + ms(500);
        for (first, second) in [
            (0, u64::MAX),
            (1, u64::MAX / 2),
            (u64::MAX, 0),
            (u64::MAX - 1, u64::MAX),
        ] {
            let mut w = Window::new(TTL);
            w.observe(&sight(7, "a", Some(TTL), Some(first)), t0);
            let expires = w.observe(&sight(8, "a", Some(TTL), Some(second)), returned);
            // Never later than a full TTL from the read that showed it.
            assert!(expires <= returned + TTL, "{first} → {second}");
            assert!(w.expired(returned + TTL), "{first} → {second}");
        }
        // Labels that are not a clock or a TTL are ignored (the watch runs from the
        // read's return, with our own TTL).
        for (clock, ttl) in [
            ("NaN", "NaN"),
            ("-1", "-15"),
            ("1e300", "1e300"),
            ("12abc", "inf"),
            ("", "0"),
            ("18446744073709551616", "3600.5"),
        ] {
            let v = json!({"ID": "x", "Version": {"Index": 3}, "Spec": {"Name": "l",
                "Labels": {LABEL_HOLDER: "a", LABEL_TTL: ttl, LABEL_CLOCK: clock}}});
            let cur = parse_config("l", &v).unwrap().unwrap();
            assert_eq!((cur.clock, cur.ttl), (None, None), "{clock} {ttl}");
        }
        let v = json!({"ID": "x", "Version": {"Index": 3}, "Spec": {"Name": "l",
            "Labels": {LABEL_HOLDER: "a", LABEL_TTL: "1e-300", LABEL_CLOCK: "5"}}});
        let cur = parse_config("l", &v).unwrap().unwrap();
        let mut w = Window::new(TTL);
        assert_eq!(
            w.observe(&cur.sighting(), t0),
            t0 + TTL,
            "a tiny TTL label never shortens ours"
        );
    }

    #[test]
    fn a_read_that_hung_through_an_election_does_not_restart_the_clock() {
        // The case: the standby saw renewal v7 (holder clock 40 000 ms) at
        // t0; the holder renewed once more 1 s later (v8, clock 41 000) and its
        // manager died; the standby's next read hung for 14 s (the election) and
        // showed v8 for the first time.
        let t0 = Instant::now();
        let mut w = Window::new(TTL);
        w.observe(&sight(7, "a", Some(TTL), Some(40_000)), t0);
        let returned = t0 + Duration::from_secs(14);
        let expires = w.observe(&sight(8, "a", Some(TTL), Some(41_000)), returned);
        // The clock runs from v7's sighting plus 1 s of the holder's time (x 5/4),
        // not from the hung read's return.
        assert_eq!(w.watched_since(), Some(t0 + ms(1250)));
        assert_eq!(expires, t0 + ms(1250) + TTL);
        assert!(w.expired(returned));
        // Without the first sighting the same read starts the clock at its return.
        let mut fresh = Window::new(TTL);
        let late = fresh.observe(&sight(8, "a", Some(TTL), Some(41_000)), returned);
        assert_eq!(late, returned + TTL);
    }

    #[test]
    fn the_holder_clock_only_chains_a_newer_version_of_the_same_holder() {
        let t0 = Instant::now();
        let back = t0 + ms(5000);
        let chained = |first: Sighting, second: Sighting| {
            let mut w = Window::new(TTL);
            w.observe(&first, t0);
            w.observe(&second, back);
            w.watched_since().unwrap()
        };
        let a = |v, c| sight(v, "a", Some(TTL), c);
        // 400 ms of the holder's time: 500 ms of ours.
        assert_eq!(chained(a(1, Some(100)), a(2, Some(500))), t0 + ms(500));
        // Never later than the read's return.
        assert_eq!(chained(a(1, Some(0)), a(2, Some(60_000))), back);
        // Another holder, a missing or unmoved clock, an older version: the return.
        for (first, second) in [
            (a(1, Some(100)), sight(2, "b", Some(TTL), Some(500))),
            (a(1, None), a(2, Some(500))),
            (a(1, Some(100)), a(2, None)),
            (a(1, Some(500)), a(2, Some(500))),
            (a(1, Some(500)), a(2, Some(100))),
            (a(3, Some(100)), a(2, Some(500))),
        ] {
            assert_eq!(
                chained(first.clone(), second.clone()),
                back,
                "{first:?} {second:?}"
            );
        }
    }

    #[test]
    fn the_longer_of_both_ttls_counts_for_expiry() {
        let t0 = Instant::now();
        let mut w = Window::new(TTL);
        // A holder with a 10s TTL: wait 10s, not 3s.
        assert_eq!(
            w.observe(&sight(1, "a", Some(Duration::from_secs(10)), None), t0),
            t0 + Duration::from_secs(10)
        );
        assert!(!w.expired(t0 + Duration::from_secs(9)));
        // A shorter (or missing) holder TTL never shortens our own.
        let mut w = Window::new(TTL);
        w.observe(&sight(1, "a", Some(ms(500)), None), t0);
        assert!(!w.expired(t0 + ms(2999)));
        w.observe(&sight(2, "a", None, None), t0);
        assert!(!w.expired(t0 + ms(2999)));
    }

    #[test]
    fn a_takeover_comes_after_the_holders_window_even_at_the_fastest() {
        // The holder sends a renewal at `sent`; the engine commits it some time
        // after; the standby's read that shows it returns after that. Whatever the
        // delays, the standby's watch expires at least the margin after the holder's
        // window ended.
        let sent = Instant::now();
        for commit_delay in [0u64, 10, 400, 2000] {
            for read_after_commit in [0u64, 1, 500] {
                let mut holder = Window::new(TTL);
                holder.renewed(sent);
                let seen = sent + ms(commit_delay + read_after_commit);
                let mut standby = Window::new(TTL);
                let expires = standby.observe(&sight(5, "h", Some(TTL), Some(9)), seen);
                assert!(!standby.expired(expires - ms(1)));
                assert!(standby.expired(expires));
                assert!(expires >= holder.valid_until().unwrap() + holder.margin());
                assert!(!holder.holds(expires - holder.margin()));
            }
        }
    }

    /// One run of the model below: the holder's renewals (gap after the previous
    /// send, commit delay), the standby's reads (wait after the previous return,
    /// hang before it is answered), and the holder clock's rate relative to the
    /// standby's (per mille).
    fn check_watch_never_expires_inside_the_holders_window(
        ttl_ms: u64,
        renewals: &[(u64, u64)],
        reads: &[(u64, u64)],
        rate_permille: u64,
    ) -> Result<(), String> {
        let ttl = ms(ttl_ms);
        let t0 = Instant::now();
        // Real time is the standby's clock. The holder sends renewal i at
        // sends[i]; it is committed at commits[i] (in order); its clock label is
        // the send time at the holder's rate; its window, by its own clock, lasts
        // TTL - TTL/5, i.e. (TTL - TTL/5) / rate of ours.
        let mut sends = vec![];
        let mut commits: Vec<u64> = vec![];
        let mut at = 0u64;
        for &(gap, delay) in renewals {
            at += gap;
            sends.push(at);
            let c = (at + delay).max(commits.last().copied().unwrap_or(0));
            commits.push(c);
        }
        let rate = rate_permille as f64 / 1000.0;
        let label = |i: usize| (sends[i] as f64 * rate).floor() as u64 + 1_000_000;
        let window_ms = (ttl_ms - ttl_ms / 5) as f64 / rate;
        let mut standby = Window::new(ttl);
        let mut now = 0u64;
        for &(wait, hang) in reads {
            let served = now + wait + hang;
            // The latest renewal committed when the read is answered.
            let Some(i) = commits.iter().rposition(|&c| c <= served) else {
                now = served;
                continue;
            };
            now = served + 1;
            let seen = sight(i as u64 + 1, "h", Some(ttl), Some(label(i)));
            let expires = standby.observe(&seen, t0 + ms(now));
            let since = standby.watched_since().unwrap();
            if since < t0 + ms(sends[i]) {
                return Err(format!("since {:?} before send {}", since - t0, sends[i]));
            }
            // The holder's window from that renewal ends before the expiry.
            let window_end = sends[i] as f64 + window_ms;
            if ((expires - t0).as_secs_f64() * 1000.0) < window_end - 1.0 {
                return Err(format!(
                    "expires {:?} inside the window ending at {window_end} ms",
                    expires - t0
                ));
            }
        }
        Ok(())
    }

    /// Milliseconds: often 0 or a few (the tight cases), else up to `long`.
    fn short_or_long(long: u64) -> impl proptest::strategy::Strategy<Value = u64> {
        proptest::prop_oneof![proptest::strategy::Just(0u64), 0u64..5, 0u64..long,]
    }

    proptest::proptest! {
        /// Whatever the renewal gaps, commit delays, read hangs (elections, a stalled
        /// standby engine) and clock rates within what the margin covers (the
        /// holder's clock at 0.8 to 3 times the standby's speed), the standby's
        /// clock starts at or after the holder's send, and its watch never expires
        /// while the holder's window from that renewal is open.
        #[test]
        fn a_standby_never_expires_a_lease_inside_the_holders_window(
            ttl_ms in 1000u64..20_000,
            renewals in proptest::collection::vec((0u64..15_000, short_or_long(20_000)), 1..12),
            reads in proptest::collection::vec((short_or_long(5_000), short_or_long(40_000)), 1..24),
            rate_permille in proptest::prop_oneof![proptest::strategy::Just(800u64), 800u64..3000],
        ) {
            let r = check_watch_never_expires_inside_the_holders_window(ttl_ms, &renewals, &reads, rate_permille);
            proptest::prop_assert!(r.is_ok(), "{}", r.unwrap_err());
        }
    }

    #[test]
    fn counting_from_the_reads_send_would_not_be_safe() {
        // The brief's tempting rule, checked against the model: the standby's read
        // is sent at 0 and hangs 15 s (an election); the holder renews at 14.9 s and
        // is committed at once; the read is answered after it. Counted from the
        // read's send (0), the lease would expire at 3 s, inside the renewal's
        // window (14.9 + 2.4 s). The rule kept counts from the return: 15 s + TTL.
        let t0 = Instant::now();
        let mut standby = Window::new(TTL);
        let expires = standby.observe(&sight(2, "h", Some(TTL), Some(14_900)), t0 + ms(15_000));
        let mut holder = Window::new(TTL);
        holder.renewed(t0 + ms(14_900));
        assert!(expires > holder.valid_until().unwrap());
        assert!(t0 + TTL < holder.valid_until().unwrap());
    }

    #[test]
    fn ticks_are_due_at_renewals_polls_and_expiry_with_backoff_after_errors() {
        let t0 = Instant::now();
        let mut w = Window::new(TTL);
        // Nothing known: poll at TTL/6.
        assert_eq!(w.next_tick(t0), t0 + ms(500));
        // Watching: poll, or at expiry if sooner.
        w.observe(&sight(3, "a", None, None), t0);
        assert_eq!(w.next_tick(t0 + ms(2500)), t0 + TTL);
        // A standby polls every TTL/6.
        assert_eq!(w.next_tick(t0 + ms(100)), t0 + ms(600));
        let mut fast = Window::new(TTL).with_poll(ms(250));
        fast.observe(&sight(3, "a", None, None), t0);
        assert_eq!(fast.next_tick(t0 + ms(100)), t0 + ms(350));
        // Kept within 250 ms..=TTL/3.
        assert_eq!(Window::new(TTL).with_poll(ms(1)).poll(), ms(250));
        // After an error a fast standby tries again at its poll.
        fast.failed(t0);
        assert_eq!(fast.next_tick(t0), t0 + ms(250));
        // Requests: reads at most 2 s (at least min(TTL, 1 s)), writes TTL/3.
        assert_eq!(w.request_timeout(true), ms(1000));
        assert_eq!(w.request_timeout(false), ms(1000));
        let w12 = Window::new(Duration::from_secs(12));
        assert_eq!(w12.request_timeout(true), ms(2000));
        assert_eq!(w12.request_timeout(false), ms(4000));
        assert_eq!(Window::new(ms(1000)).request_timeout(true), ms(1000));
        assert_eq!(Window::new(TTL).with_poll(TTL).poll(), ms(1000));
        // After an error: not before TTL/6.
        w.failed(t0 + ms(2900));
        assert_eq!(w.next_tick(t0 + ms(2900)), t0 + ms(3400));
        w.succeeded();
        assert_eq!(w.next_tick(t0 + ms(2900)), t0 + TTL);
        // Holding: at the next renewal.
        w.renewed(t0 + TTL);
        assert_eq!(w.next_tick(t0 + TTL), t0 + ms(4000));
    }

    #[test]
    fn only_the_lease_labels_change_in_the_spec() {
        let spec = json!({
            "Name": "microscale-agent-lease",
            "Labels": {"team": "ops", LABEL_HOLDER: "old", LABEL_TTL: "15"},
            "Data": "eA==",
            "Templating": {"Name": "golang"},
            "FutureField": [1, 2]
        });
        let sent = Instant::now() + ms(1500);
        let out = spec_with_labels(&spec, "new/abc/1-0001", Duration::from_millis(2500), sent);
        let mut expected = spec.clone();
        expected["Labels"][LABEL_HOLDER] = json!("new/abc/1-0001");
        expected["Labels"][LABEL_TTL] = json!("2.5");
        expected["Labels"][LABEL_RENEWED] = out["Labels"][LABEL_RENEWED].clone();
        expected["Labels"][LABEL_CLOCK] = json!(holder_clock(sent).to_string());
        assert_eq!(out, expected);
        let renewed = out["Labels"][LABEL_RENEWED].as_str().unwrap();
        assert!(renewed.parse::<jiff::Timestamp>().is_ok(), "{renewed}");
        // A spec without labels gets them.
        let bare = spec_with_labels(&json!({"Name": "x", "Data": "eA=="}), "", TTL, sent);
        assert_eq!(bare["Labels"][LABEL_HOLDER], "");
        assert_eq!(bare["Labels"][LABEL_TTL], "3");
    }

    #[test]
    fn config_answers_are_read_and_checked() {
        let answer = json!({
            "ID": "vhrqs7cm8tt2zb70p21q5x4xp",
            "Version": {"Index": 16},
            "Spec": {"Name": "lease", "Labels": {LABEL_HOLDER: "h", LABEL_TTL: "2.5"}, "Data": "eA=="}
        });
        let cur = parse_config("lease", &answer).unwrap().unwrap();
        assert_eq!(cur.id, "vhrqs7cm8tt2zb70p21q5x4xp");
        assert_eq!(cur.version, 16);
        assert_eq!(cur.holder, "h");
        assert_eq!(cur.ttl, Some(ms(2500)));
        assert_eq!(cur.clock, None);
        let mut clocked = answer.clone();
        clocked["Spec"]["Labels"][LABEL_CLOCK] = json!("41000");
        assert_eq!(
            parse_config("lease", &clocked).unwrap().unwrap().clock,
            Some(41_000)
        );
        clocked["Spec"]["Labels"][LABEL_CLOCK] = json!("-3");
        assert_eq!(
            parse_config("lease", &clocked).unwrap().unwrap().clock,
            None
        );
        // The engine resolved the name as an ID prefix of another config.
        assert!(parse_config("vhrq", &answer).unwrap().is_none());
        // A config of that name that is not a lease is never taken over.
        let other = json!({"ID": "x", "Version": {"Index": 1}, "Spec": {"Name": "lease", "Labels": {"app": "web"}}});
        let err = parse_config("lease", &other).unwrap_err().to_string();
        assert!(err.contains("not a docker-microscale lease"), "{err}");
        assert!(err.contains("docker config rm lease"), "{err}");
        // Bad TTL labels count as absent (our own TTL is used).
        for bad in ["", "abc", "-1", "NaN", "inf", "1e9"] {
            assert_eq!(parse_ttl_label(bad), None, "{bad}");
        }
        assert_eq!(parse_ttl_label("15"), Some(Duration::from_secs(15)));
    }

    #[test]
    fn holder_ids_name_the_node_and_process() {
        assert_eq!(
            holder_id("manager1", "x3kq9w1e2r4t5y6u7i8o9p0a", 4242, 0x9f3a),
            "manager1/x3kq9w1e2r4t/4242-9f3a"
        );
        assert_eq!(holder_id("", "", 1, 1), "-/-/1-0001");
    }

    #[test]
    fn duration_flags_take_seconds_or_units() {
        let p = |v| parse_duration_flag("--ttl", v, MIN_TTL, MAX_TTL);
        assert_eq!(p("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(p("2.5"), Ok(ms(2500)));
        assert_eq!(p("1m"), Ok(Duration::from_secs(60)));
        for bad in ["0", "500ms", "2h", "x", "-1", ""] {
            let err = p(bad).unwrap_err();
            assert!(
                err.contains("\"--ttl\"") && err.contains("1s to 1h"),
                "{err}"
            );
        }
    }

    #[test]
    fn ttl_is_clamped() {
        let l = Lease::new("n", ms(10), "h".into());
        assert_eq!(l.ttl(), MIN_TTL);
        assert!(!l.holds());
        assert_eq!(ttl_label(Duration::from_secs(15)), "15");
    }
}
