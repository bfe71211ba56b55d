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
//!
//! # Memory that decays
//!
//! Only the lease holder counts fights (a standby acts on nothing, so it fights
//! nobody), and a count set by another agent of the same lease is never a fight
//! (the agent checks the shared decision history, `crate::store::history`, first).
//! A record's reset count halves for every [`HALF_LIFE`] without a reset
//! ([`Fight::decayed`]); a new reset counts from the decayed count
//! ([`Fight::after`]), and a record that has decayed to 0 is dropped. From the
//! [`BACK_OFF_AFTER`]th reset the holder leaves the service alone until
//! [`Fight::quiet_until`]: the last reset + 1 minute, doubling per further reset,
//! at most an hour. Everything is derived from the shared record, so a new holder
//! continues where the previous one left off, and an old holder that takes the
//! lease again starts from the record, not from what it remembered.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use crate::engine::{Engine, EngineError};

/// The Swarm config holding the fight records.
pub const CONFIG_NAME: &str = "microscale-agent-fights";

/// Label prefix of one record.
pub const LABEL_PREFIX: &str = "microscale.fight.";

/// Resets (decayed) from which the holder leaves a service alone for a while.
pub const BACK_OFF_AFTER: u64 = 3;

/// A quiet period after which a record's reset count halves: 10 minutes.
pub const HALF_LIFE: Duration = Duration::from_secs(600);

/// The longest time the holder leaves a service alone: 1 hour.
pub const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// The largest reset count a record holds: from the 9th reset the pause is already
/// [`MAX_PAUSE`], so a higher count (a hand-written `18446744073709551615`) would only
/// make the memory last longer (64 half-lives, 10 hours) without changing anything
/// else.
pub const MAX_RESETS: u64 = 16;

/// How far in the future of the reader's clock a record's time may be (managers'
/// clocks apart): one [`HALF_LIFE`], 10 minutes. A record from further ahead is not
/// trusted (it would not decay before that time comes): it counts 0 and is dropped.
pub const MAX_AHEAD: Duration = HALF_LIFE;

/// How long the holder leaves a service alone after `resets` (decayed) resets: none
/// before [`BACK_OFF_AFTER`], then a minute, doubling per reset, at most
/// [`MAX_PAUSE`].
pub fn pause(resets: u64) -> Option<Duration> {
    if resets < BACK_OFF_AFTER {
        return None;
    }
    let n = (resets - BACK_OFF_AFTER).min(6) as u32;
    Some((Duration::from_secs(60) * 2u32.pow(n)).min(MAX_PAUSE))
}

/// One service's fight record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fight {
    /// Resets, decayed ([`Fight::decayed`]) as of the last one and counting it.
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

    /// When the last reset was seen; `None` when [`Fight::last`] is not a time.
    pub fn last_at(&self) -> Option<jiff::Timestamp> {
        self.last.parse().ok()
    }

    /// When the last reset was seen, unless that is more than [`MAX_AHEAD`] after
    /// `now` (not trusted).
    fn trusted_last(&self, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let last = self.last_at()?;
        let ahead = jiff::SignedDuration::try_from(MAX_AHEAD).ok()?;
        (last.duration_since(now) <= ahead).then_some(last)
    }

    /// The reset count as it counts at `now`: halved once per whole [`HALF_LIFE`]
    /// since the last reset (a last reset in the future, another manager's clock,
    /// counts as now, up to [`MAX_AHEAD`]). A record whose time cannot be read, or is
    /// further ahead, counts 0.
    pub fn decayed(&self, now: jiff::Timestamp) -> u64 {
        let Some(last) = self.trusted_last(now) else {
            return 0;
        };
        let quiet = now.as_second().saturating_sub(last.as_second()).max(0) as u64;
        let halvings = quiet / HALF_LIFE.as_secs();
        if halvings >= 64 {
            0
        } else {
            self.resets >> halvings
        }
    }

    /// The record after a new reset at `now` to `their_count`, following `previous`
    /// (its decayed count plus one).
    pub fn after(previous: Option<&Fight>, now: jiff::Timestamp, their_count: u64) -> Fight {
        let now = now.round(jiff::Unit::Second).unwrap_or(now);
        Fight {
            resets: previous
                .map_or(0, |p| p.decayed(now))
                .saturating_add(1)
                .min(MAX_RESETS),
            last: now.to_string(),
            their_count,
        }
    }

    /// Until when the holder leaves the service alone: the last reset plus
    /// [`pause`] of its count (never counted from a time in the future of `now`);
    /// `None` below [`BACK_OFF_AFTER`] resets.
    pub fn quiet_until(&self, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let pause = pause(self.resets)?;
        let last = self.trusted_last(now)?.min(now);
        last.checked_add(jiff::SignedDuration::try_from(pause).ok()?)
            .ok()
    }

    /// Parses a label value; `None` when it is not one (three fields: a count, an
    /// RFC 3339 time, a count). The reset count is capped at [`MAX_RESETS`].
    pub fn parse(value: &str) -> Option<Fight> {
        let mut parts = value.split_whitespace();
        let resets = parts.next()?.parse::<u64>().ok()?.min(MAX_RESETS);
        let last = parts.next()?;
        last.parse::<jiff::Timestamp>().ok()?;
        let last = last.to_string();
        let their_count = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Fight {
            resets,
            last,
            their_count,
        })
    }
}

/// Drops the records that have decayed to 0 at `now`; returns whether any went.
pub fn prune(records: &mut BTreeMap<String, Fight>, now: jiff::Timestamp) -> bool {
    let before = records.len();
    records.retain(|_, f| f.decayed(now) > 0);
    records.len() != before
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

/// The labels of a write: those of `labels` that are not records, the records of
/// services in `in_swarm` that are not `ours` (another agent group's), then the
/// records in `fights` of the services in `ours`.
fn merged_labels(
    labels: &mut serde_json::Map<String, Value>,
    fights: &BTreeMap<String, Fight>,
    ours: &HashSet<&str>,
    in_swarm: &HashSet<&str>,
) {
    labels.retain(|k, _| match k.strip_prefix(LABEL_PREFIX) {
        Some(id) => in_swarm.contains(id) && !ours.contains(id),
        None => true,
    });
    for (sid, f) in fights.iter().filter(|(id, _)| ours.contains(id.as_str())) {
        labels.insert(format!("{LABEL_PREFIX}{sid}"), Value::from(f.label()));
    }
}

/// Writes the records in `fights` (service ID → record) of the services in `ours`
/// (those this agent manages) into the config, creating it when missing: they
/// replace this agent's records there; records of services no longer `in_swarm`
/// go; records of other services stay. A version conflict is read again and
/// retried a few times.
///
/// Errors: the engine refuses (a worker), or keeps conflicting.
pub async fn publish(
    engine: &Engine,
    fights: &BTreeMap<String, Fight>,
    ours: &HashSet<&str>,
    in_swarm: &HashSet<&str>,
) -> Result<(), EngineError> {
    for _ in 0..5 {
        let config = find(engine).await?;
        let mut labels = config
            .as_ref()
            .and_then(|c| c["Spec"]["Labels"].as_object().cloned())
            .unwrap_or_default();
        merged_labels(&mut labels, fights, ours, in_swarm);
        let current = config.as_ref().map(|c| {
            (
                c["ID"].as_str().unwrap_or_default(),
                c["Version"]["Index"].as_u64().unwrap_or(0),
                &c["Spec"],
            )
        });
        let result = super::put_config_labels(
            engine,
            CONFIG_NAME,
            current,
            &labels,
            "fight records of docker microscale run; see its labels\n",
        )
        .await;
        match result {
            Ok(()) => return Ok(()),
            Err(e) if super::is_conflict(&e) => continue,
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
    use serde_json::json;

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

    #[test]
    fn an_agent_writes_only_its_own_services_records() {
        let f = |n| Fight {
            resets: n,
            last: "2026-11-29T10:00:00Z".into(),
            their_count: 1,
        };
        let mut labels = serde_json::Map::new();
        for (k, v) in [
            ("other", "x".to_string()),
            ("microscale.fight.mine", f(1).label()),
            ("microscale.fight.theirs", f(2).label()),
            ("microscale.fight.gone", f(3).label()),
            ("microscale.fight.mine-healed", f(1).label()),
        ] {
            labels.insert(k.into(), Value::from(v));
        }
        // Loaded from the record: ours, another group's (possibly stale), none for
        // the service whose fight decayed.
        let fights = BTreeMap::from([("mine".to_string(), f(4)), ("theirs".to_string(), f(9))]);
        let ours = HashSet::from(["mine", "mine-healed"]);
        let in_swarm = HashSet::from(["mine", "mine-healed", "theirs"]);
        merged_labels(&mut labels, &fights, &ours, &in_swarm);
        let r = records(&json!({"Spec": {"Labels": labels}}));
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r["mine"], f(4));
        assert_eq!(
            r["theirs"],
            f(2),
            "another group's record is theirs to write"
        );
        assert_eq!(labels["other"], "x");
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn resets_halve_per_quiet_period_and_old_fights_stop_counting() {
        let t0 = at("2026-12-01T10:00:00Z");
        let f = Fight {
            resets: 6,
            last: t0.to_string(),
            their_count: 1,
        };
        let later = |mins: i64| {
            t0.checked_add(jiff::SignedDuration::from_mins(mins))
                .unwrap()
        };
        assert_eq!(f.decayed(t0), 6);
        assert_eq!(f.decayed(later(9)), 6);
        assert_eq!(f.decayed(later(10)), 3);
        assert_eq!(f.decayed(later(25)), 1);
        assert_eq!(f.decayed(later(30)), 0);
        assert_eq!(f.decayed(later(100_000)), 0);
        // A time in the future (another manager's clock) is not a decay.
        assert_eq!(f.decayed(later(-5)), 6);
        // An unreadable time counts nothing.
        let bad = Fight {
            last: "soon".into(),
            ..f.clone()
        };
        assert_eq!(bad.decayed(t0), 0);
        let mut records = BTreeMap::from([("a".to_string(), f.clone()), ("b".to_string(), bad)]);
        assert!(prune(&mut records, t0));
        assert_eq!(records.len(), 1);
        assert!(!prune(&mut records, later(29)));
        assert!(prune(&mut records, later(30)));
        assert!(records.is_empty());
    }

    #[test]
    fn a_new_reset_counts_from_the_decayed_record_and_backs_off_from_the_third() {
        let t0 = at("2026-12-01T10:00:00Z");
        let plus = |secs: i64| {
            t0.checked_add(jiff::SignedDuration::from_secs(secs))
                .unwrap()
        };
        let first = Fight::after(None, t0, 2);
        assert_eq!((first.resets, first.their_count), (1, 2));
        assert_eq!(first.quiet_until(t0), None);
        let second = Fight::after(Some(&first), plus(60), 2);
        let third = Fight::after(Some(&second), plus(120), 2);
        assert_eq!(third.resets, 3);
        // A minute from the third, two from the fourth, at most an hour.
        assert_eq!(third.quiet_until(plus(120)), Some(plus(180)));
        let fourth = Fight::after(Some(&third), plus(200), 2);
        assert_eq!(fourth.quiet_until(plus(200)), Some(plus(320)));
        assert_eq!(pause(100), Some(MAX_PAUSE));
        // After a quiet hour (six halvings) a reset starts from 1 again: a
        // failover a day does not accumulate into a back-off.
        let much_later = Fight::after(Some(&fourth), plus(200 + 3600), 2);
        assert_eq!(much_later.resets, 1);
        assert_eq!(much_later.quiet_until(plus(3800)), None);
        // A last reset in the future (clocks apart) pauses from now, not from then;
        // one further ahead than MAX_AHEAD is not trusted (it would pause every pass
        // until that time comes) and pauses nothing.
        let future = Fight {
            last: plus(500).to_string(),
            ..third.clone()
        };
        assert_eq!(future.quiet_until(t0), Some(plus(60)));
        let far = Fight {
            last: plus(10_000).to_string(),
            ..third.clone()
        };
        assert_eq!(far.quiet_until(t0), None);
    }

    #[test]
    fn hostile_records_are_bounded() {
        let now = at("2026-12-07T20:00:00Z");
        // u64::MAX resets: capped, and a new reset does not overflow.
        let f =
            Fight::parse("18446744073709551615 2026-12-07T19:59:00Z 18446744073709551615").unwrap();
        assert_eq!(f.resets, MAX_RESETS);
        assert_eq!(f.their_count, u64::MAX);
        assert_eq!(Fight::after(Some(&f), now, 1).resets, MAX_RESETS);
        // It decays to nothing within 5 half-lives (50 minutes), not 64.
        assert_eq!(f.decayed(at("2026-12-07T20:49:00Z")), 0);
        assert_eq!(
            f.quiet_until(now),
            Some(at("2026-12-07T20:59:00Z")),
            "at most an hour"
        );
        // A time far in the future would never decay: it counts 0 and is dropped.
        let future = Fight::parse("9 9000-01-01T00:00:00Z 1").unwrap();
        assert_eq!(future.decayed(now), 0);
        assert_eq!(future.quiet_until(now), None);
        assert_eq!(Fight::after(Some(&future), now, 1).resets, 1);
        let mut records = BTreeMap::from([("s".to_string(), future)]);
        assert!(prune(&mut records, now));
        let ahead = Fight::parse("9 2026-12-07T20:10:01Z 1").unwrap();
        assert_eq!(ahead.decayed(now), 0);
        // Up to 10 minutes ahead (clocks apart) still counts, as now.
        let near = Fight::parse("4 2026-12-07T20:09:59Z 1").unwrap();
        assert_eq!(near.decayed(now), 4);
        assert_eq!(near.quiet_until(now), Some(at("2026-12-07T20:02:00Z")));
        // Not a record: the time is not one (it would reach `status`), extra fields,
        // negative or non-numeric counts.
        for bad in [
            "3 \u{1b}[31mred 1",
            "3 yesterday 1",
            "3 2026-12-07T19:59:00Z 1 extra",
            "-1 2026-12-07T19:59:00Z 1",
            "1e3 2026-12-07T19:59:00Z 1",
            "3 2026-12-07T19:59:00Z NaN",
            "",
        ] {
            assert_eq!(Fight::parse(bad), None, "{bad:?}");
        }
    }
}
