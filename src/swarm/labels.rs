//! Scaling-rule labels as `status` shows them, before full rule parsing exists.
//!
//! Rules are service labels (`Spec.Labels`) under `microscale.`; the Microscaling
//! agent's `com.microscaling.*` labels are read too.

use std::collections::{BTreeMap, HashMap};

use crate::edge::redact::{redact_label, redact_value};

/// Prefix of this project's rule labels.
pub const PREFIX: &str = "microscale.";
/// Prefix of the Microscaling agent's labels.
pub const LEGACY_PREFIX: &str = "com.microscaling.";

/// The rule labels of a service (both prefixes), with secrets masked
/// ([`crate::edge::redact::redact_label`]).
pub fn rule_labels(labels: &HashMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| k.starts_with(PREFIX) || k.starts_with(LEGACY_PREFIX))
        .map(|(k, v)| (redact_value(k), redact_label(k, v)))
        .collect()
}

/// A one-line summary of the rule labels, or `None` when there are none.
///
/// `microscale.*` keys come first in a fixed order (`enable`, `min`, `max`, `target`,
/// `target-utilization`, then the rest by name, then `metric`), as `key=value`
/// without the prefix. Only `com.microscaling.*` labels: `microscaling key=value ...`.
/// `microscale.enable=false` gives `disabled`.
pub fn rule_summary(labels: &HashMap<String, String>) -> Option<String> {
    let ours: BTreeMap<String, String> = labels
        .iter()
        .filter_map(|(full, v)| {
            full.strip_prefix(PREFIX)
                .map(|k| (redact_value(k), redact_label(full, v)))
        })
        .collect();
    if !ours.is_empty() {
        if ours
            .get("enable")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
        {
            return Some("disabled".into());
        }
        const ORDER: [&str; 4] = ["min", "max", "target", "target-utilization"];
        let rank = |k: &str| {
            if let Some(i) = ORDER.iter().position(|o| *o == k) {
                (0, i, k.to_string())
            } else if k == "metric" || k.starts_with("metric.") {
                (2, 0, k.to_string())
            } else {
                (1, 0, k.to_string())
            }
        };
        let mut keys: Vec<&str> = ours
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "enable")
            .collect();
        keys.sort_by_key(|k| rank(k));
        let parts: Vec<String> = keys
            .iter()
            .map(|k| {
                if *k == "metric" {
                    ours[*k].clone()
                } else {
                    format!("{k}={}", ours[*k])
                }
            })
            .collect();
        return Some(if parts.is_empty() {
            "enabled".into()
        } else {
            parts.join(" ")
        });
    }
    let legacy: BTreeMap<String, String> = labels
        .iter()
        .filter_map(|(full, v)| {
            full.strip_prefix(LEGACY_PREFIX)
                .map(|k| (redact_value(k), redact_label(full, v)))
        })
        .collect();
    if legacy.is_empty() {
        return None;
    }
    let parts: Vec<String> = legacy
        .iter()
        .filter(|(k, _)| **k != "is-scalable")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Some(
        format!("microscaling {}", parts.join(" "))
            .trim_end()
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn summary_orders_keys_and_puts_metric_last() {
        let l = map(&[
            ("microscale.metric", "redis://queue:6379/0?list=jobs"),
            ("microscale.max", "10"),
            ("microscale.min", "1"),
            ("microscale.target", "50"),
            ("microscale.enable", "true"),
            ("other", "x"),
        ]);
        assert_eq!(
            rule_summary(&l).unwrap(),
            "min=1 max=10 target=50 redis://queue:6379/0?list=jobs"
        );
    }

    #[test]
    fn summary_for_none_disabled_and_legacy() {
        assert_eq!(rule_summary(&map(&[("a", "b")])), None);
        assert_eq!(
            rule_summary(&map(&[
                ("microscale.enable", "false"),
                ("microscale.min", "1")
            ]))
            .unwrap(),
            "disabled"
        );
        assert_eq!(
            rule_summary(&map(&[
                ("com.microscaling.is-scalable", "true"),
                ("com.microscaling.max-containers", "4"),
                ("com.microscaling.priority", "2"),
            ]))
            .unwrap(),
            "microscaling max-containers=4 priority=2"
        );
    }

    #[test]
    fn passwords_never_reach_the_summary() {
        let l = map(&[(
            "microscale.metric",
            "redis://user:s3cret@queue:6379/0?list=jobs",
        )]);
        let s = rule_summary(&l).unwrap();
        assert!(!s.contains("s3cret"), "{s}");
        assert_eq!(s, "redis://user:xxxxx@queue:6379/0?list=jobs");
        assert!(!rule_labels(&l)["microscale.metric"].contains("s3cret"));
        // The Microscaling agent's labels too, in the summary and the map.
        let l = map(&[("com.microscaling.metric", "redis://u:S3CRET7@q/0")]);
        assert!(!rule_summary(&l).unwrap().contains("S3CRET7"));
        assert!(!rule_labels(&l)["com.microscaling.metric"].contains("S3CRET7"));
        let l = map(&[("microscale.password", "S3CRET15")]);
        assert!(!rule_summary(&l).unwrap().contains("S3CRET15"));
    }

    /// Issue 13 item 5: passwords a URL parser misreads (as a port and a path, or
    /// with blanks) are masked in the summary and the map.
    #[test]
    fn passwords_a_url_parser_misreads_never_reach_the_summary() {
        for (uri, secret) in [
            ("redis://app:12/3456@queue:6379/0?list=jobs", "3456"),
            ("https://ci:1234/5678@prom.example/q", "5678"),
            ("https://oauth2:glpat-AbC dEf@prom.example/q", "dEf"),
        ] {
            let l = map(&[("microscale.metric", uri)]);
            let s = rule_summary(&l).unwrap();
            assert!(!s.contains(secret) && s.contains("xxxxx"), "{uri} -> {s}");
            assert!(!rule_labels(&l)["microscale.metric"].contains(secret));
        }
    }
}
