//! `docker microscale rules check [SERVICE...] [--rules FILE]`: validates every rule.

use std::collections::BTreeMap;

use bollard::models::Service;
use serde::Serialize;

use super::{Problem, read_rules_file};
use crate::edge::exit::Failure;

/// A parsed rules file: service name → its rule labels (`microscale.KEY` → value).
pub type RulesFile = BTreeMap<String, BTreeMap<String, String>>;

/// Where a service's rule comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Checked {
    /// Service name.
    pub service: String,
    /// `labels`, or the rules file's path.
    pub source: String,
    /// The problems of this service's rule.
    pub problems: Vec<Problem>,
}

/// The labels of a service's spec (`Spec.Labels`).
pub fn service_labels(s: &Service) -> BTreeMap<String, String> {
    s.spec
        .as_ref()
        .and_then(|sp| sp.labels.clone())
        .map(|l| l.into_iter().collect())
        .unwrap_or_default()
}

/// The name of a service (`Spec.Name`).
pub fn service_name(s: &Service) -> String {
    s.spec
        .as_ref()
        .and_then(|sp| sp.name.clone())
        .unwrap_or_default()
}

/// The rule labels of each service: from the rules file when it declares the service
/// (the file wins, whole: labels of that service are not read), else from its labels.
/// Returns `(service, labels, source)`, plus warnings for file entries that name no
/// service.
pub fn rule_inputs<'a>(
    services: &'a [Service],
    file: Option<(&std::path::Path, &RulesFile)>,
) -> Vec<(&'a Service, BTreeMap<String, String>, String)> {
    services
        .iter()
        .map(|s| {
            let name = service_name(s);
            match file.and_then(|(p, m)| m.get(&name).map(|l| (p, l))) {
                Some((path, labels)) => (s, labels.clone(), path.display().to_string()),
                None => (s, service_labels(s), "labels".to_string()),
            }
        })
        .collect()
}

/// The `--rules FILE` flag of `rules check` and `plan`: `None` without it, else the
/// path and the parsed file. Errors: an empty name (usage), a file that cannot be
/// read or parsed.
pub fn load_rules_flag(
    path: Option<&std::path::Path>,
) -> Result<Option<(std::path::PathBuf, RulesFile)>, Failure> {
    match path {
        Some(p) if p.as_os_str().is_empty() => Err(Failure::Usage(
            "invalid argument \"\" for \"--rules\" flag: give a file name".into(),
        )),
        Some(p) => Ok(Some((
            p.to_path_buf(),
            read_rules_file(p).map_err(Failure::Error)?,
        ))),
        None => Ok(None),
    }
}
