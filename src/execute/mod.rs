//! `docker microscale scale` and `apply`: change the replica count and nothing else,
//! survive concurrent writers, and show the services converge.
//!
//! Both go through [`execute`]: every service is updated concurrently from its raw
//! inspected spec ([`update::update`]), the operator is told what `docker service
//! rollback` now means, and unless `--detach` the command waits for convergence
//! ([`watch::watch`]).

pub mod update;
pub mod watch;

use std::cell::RefCell;
use std::io::IsTerminal;
use std::time::Duration;

use futures_util::StreamExt;

use crate::edge::exit::{Exit, Failure, say};
use crate::engine::service::RawService;
use crate::engine::{Engine, EngineError};
use crate::render::Format;
use crate::rules::check::RulesFile;
use update::{Change, Convergence, Decide, Outcome, Verdict};

/// Most services read or updated at once (each holds a connection).
pub(crate) const MAX_IN_FLIGHT: usize = 16;

/// Longest `--timeout`: one day.
const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

/// One `SERVICE=REPLICAS` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The service name, ID or ID prefix as given.
    pub service: String,
    /// What to do with its count.
    pub change: Change,
}

/// Checks a service name or ID as typed: Swarm names and IDs hold only ASCII
/// letters, digits, `-` and `_` (at most 63 characters for a name, 25 for an ID).
/// Anything else is refused before it reaches an Engine API path.
pub fn check_service_ref(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the service name is empty".into());
    }
    if s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "invalid service name {}: service names and IDs hold only letters, digits, '-' and '_'",
            crate::edge::text::ellipsize(&format!("{s:?}"), 80)
        ));
    }
    Ok(())
}

/// Parses `SERVICE=N`, `SERVICE=+N` or `SERVICE=-N`.
///
/// Errors (usage errors): no `=`, a bad service name, a count that is not a whole
/// number.
pub fn parse_target(arg: &str) -> Result<Target, String> {
    let shown = crate::edge::text::ellipsize(arg, 80);
    let Some((service, value)) = arg.split_once('=') else {
        return Err(format!(
            "invalid scale specifier '{shown}': use SERVICE=REPLICAS, SERVICE=+N or SERVICE=-N"
        ));
    };
    if service.is_empty() {
        return Err(format!(
            "invalid scale specifier '{shown}': the service name is missing (SERVICE=REPLICAS)"
        ));
    }
    check_service_ref(service).map_err(|e| format!("{e} (in '{shown}')"))?;
    let bad = || {
        format!(
            "invalid replicas value for {service}: {:?}: give a whole number such as 3, +2 or -1",
            crate::edge::text::ellipsize(value, 40)
        )
    };
    let digits = |s: &str| -> Result<u64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<u64>().map_err(|_| bad())
    };
    let change = if let Some(n) = value.strip_prefix('+') {
        Change::Add(i64::try_from(digits(n)?).map_err(|_| bad())?)
    } else if let Some(n) = value.strip_prefix('-') {
        Change::Add(-i64::try_from(digits(n)?).map_err(|_| bad())?)
    } else {
        Change::Set(digits(value)?)
    };
    if let Change::Set(n) = change
        && n > update::MAX_REPLICAS
    {
        return Err(format!(
            "invalid replicas value for {service}: {n} is more than the engine takes ({})",
            update::MAX_REPLICAS
        ));
    }
    Ok(Target {
        service: service.to_string(),
        change,
    })
}

/// Parses `--timeout`: a duration from 1 second to a day (`90s`, `5m`, a bare number
/// is seconds). `None` without the flag: no limit.
pub fn parse_timeout(value: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(v) = value else { return Ok(None) };
    let t = v.trim();
    let parsed = t
        .parse::<u64>()
        .map(Duration::from_secs)
        .ok()
        .or_else(|| humantime::parse_duration(t).ok());
    match parsed {
        Some(d) if d >= Duration::from_secs(1) && d <= MAX_TIMEOUT => Ok(Some(d)),
        _ => Err(format!(
            "invalid argument \"{v}\" for \"--timeout\" flag: a duration from 1s to 24h, such as 90s or 5m"
        )),
    }
}

/// `--timeout` bounds the wait and `--detach` skips it: both at once is a mistake.
pub fn check_detach_timeout(detach: Option<bool>, timeout: &Option<String>) -> Result<(), Failure> {
    if detach == Some(true) && timeout.is_some() {
        return Err(Failure::Usage(
            "--timeout bounds the wait for convergence, and --detach does not wait: give one of them".into(),
        ));
    }
    Ok(())
}

/// Why a rolling update stops a scale, or `None` when there is none in progress
/// (`UpdateStatus.State` is `updating`, `paused`, `rollback_started` or
/// `rollback_paused`).
pub fn rolling_update_block(svc: &RawService) -> Option<String> {
    // Swarm never completes the UpdateStatus of a job (a rollback of a job stays
    // `rollback_started` for good), and a job has no rolling update to protect.
    if matches!(svc.count(), crate::engine::service::Count::Completions(_)) {
        return None;
    }
    let (state, message) = svc.update_state()?;
    let detail = if message.is_empty() {
        format!("UpdateStatus {state}")
    } else {
        format!("UpdateStatus {state}: {message}")
    };
    let name = &svc.name;
    match state.as_str() {
        "updating" | "rollback_started" => Some(format!(
            "a rolling update is in progress ({detail}); a scale now becomes part of it, and `docker service rollback` could no longer return to the spec before it: wait until `docker microscale status {name}` shows no UPDATE"
        )),
        "paused" | "rollback_paused" => Some(format!(
            "its rolling update is paused ({detail}); any spec change, a scale too, resumes rolling out the paused spec, and `docker service rollback` could no longer return to the spec before it: settle it first, e.g. with `docker service rollback {name}`"
        )),
        _ => None,
    }
}

/// The rule's bounds as they apply to a scale to `target`: `microscale.min` (only when
/// declared) and `microscale.max`, from the labels or the `--rules` file.
///
/// Errors name the bound and where it was declared; a rule with errors is an error
/// too (its bounds are unknown).
pub fn check_bounds(
    svc: &RawService,
    target: u64,
    file: Option<(&std::path::Path, &RulesFile)>,
) -> Result<(), String> {
    let typed = svc.typed();
    let services = [typed];
    let inputs = crate::rules::check::rule_inputs(&services, file);
    let Some((s, labels, source)) = inputs.into_iter().next() else {
        return Ok(());
    };
    if !crate::rules::is_managed(&labels) {
        return Ok(());
    }
    let parsed = crate::rules::parse_labels(&svc.name, crate::swarm::service::Mode::of(s), &labels);
    let Some(rule) = parsed.rule else {
        let flag = if source == "labels" {
            String::new()
        } else {
            format!(" --rules {source}")
        };
        return Err(format!(
            "its scaling rule has errors, so its bounds are unknown: run `docker microscale rules check{flag} {}`, or use --force",
            svc.name
        ));
    };
    let ours = labels.keys().any(|k| k.starts_with("microscale."));
    let (min_key, max_key) = if ours {
        ("microscale.min", "microscale.max")
    } else {
        (
            "com.microscaling.min-containers",
            "com.microscaling.max-containers",
        )
    };
    let place = |key: &str, value: u64| {
        if source == "labels" {
            format!("{key}={value} (a service label)")
        } else {
            format!(
                "{} = {value} in {source}",
                key.trim_start_matches("microscale.")
            )
        }
    };
    if labels.contains_key(min_key) && target < rule.min {
        return Err(format!(
            "{target} is below the rule's minimum, {}; use --force to go below it",
            place(min_key, rule.min)
        ));
    }
    if target > rule.max {
        return Err(format!(
            "{target} is above the rule's maximum, {}; use --force to go beyond it",
            place(max_key, rule.max)
        ));
    }
    Ok(())
}

/// Checks that `target` replicas of `svc` can all be placed. With
/// `Placement.MaxReplicas` (`--replicas-max-per-node`) set, Swarm places at most that
/// many tasks on each eligible node ([`crate::plan::eligible_nodes`] of `nodes`, as
/// `GET /nodes` lists them: ready, active, and matching the `node.role` and
/// `node.hostname` constraints); the tasks past that cap stay pending ("no suitable
/// node") for good, and a scale would wait for them for ever. `plan` and `apply`
/// cap at the same number.
///
/// Only a scale up past the cap is refused: the error says the cap, how it is made
/// and how to change it (ending `; or use --force`).
pub fn check_placement(
    svc: &RawService,
    target: u64,
    nodes: &[bollard::models::Node],
) -> Result<(), String> {
    let crate::engine::service::Count::Replicas(current) = svc.count() else {
        return Ok(());
    };
    let max = svc.spec()["TaskTemplate"]["Placement"]["MaxReplicas"]
        .as_u64()
        .filter(|m| *m > 0);
    let Some(max) = max else {
        return Ok(());
    };
    let eligible = crate::plan::eligible_nodes(&svc.typed(), nodes);
    let cap = crate::decide::Placement {
        max_per_node: max,
        nodes: eligible,
    }
    .cap();
    if target <= cap || target <= current {
        return Ok(());
    }
    let name = &svc.name;
    let which = "ready, active and matching its node.role and node.hostname constraints";
    if eligible == 0 {
        return Err(format!(
            "{target} replicas cannot be placed: no node is eligible ({which}), so every task would stay pending and scale would wait for ever; check `docker node ls` and the service's constraints (`docker service inspect --format '{{{{json .Spec.TaskTemplate.Placement}}}}' {name}`); or use --force"
        ));
    }
    let per_node = target.div_ceil(eligible);
    Err(format!(
        "{target} replicas cannot all be placed: at most {max} per node (--replicas-max-per-node) on {eligible} eligible node{} ({which}) is {cap}, so {} task{} would stay pending and scale would wait for ever; raise the limit (`docker service update --replicas-max-per-node {per_node} {name}`) or make more nodes eligible; or use --force",
        if eligible == 1 { "" } else { "s" },
        target - cap,
        if target - cap == 1 { "" } else { "s" },
    ))
}

/// Decides a scale of `svc` by `change`: the new count, or why not (a global
/// service, a count below 0, and unless `force`, a rolling update or the rule's
/// bounds).
pub fn decide_scale(
    svc: &RawService,
    change: Change,
    force: bool,
    file: Option<(&std::path::Path, &RulesFile)>,
) -> Result<Verdict, String> {
    let count = svc.count();
    let Some(current) = count.value() else {
        return Err(format!(
            "a {} service runs one task on each eligible node and has no replica count to set; limit where it runs with placement constraints instead (`docker service update --constraint-add`)",
            count.mode_name()
        ));
    };
    let unit = match count {
        crate::engine::service::Count::Completions(_) => "completions",
        _ => "replicas",
    };
    let target = update::apply_change(current, change, unit)?;
    if target != current && !force {
        if let Some(block) = rolling_update_block(svc) {
            return Err(format!("{block}; or use --force"));
        }
        check_bounds(svc, target, file).map_err(|e| match change {
            Change::Add(d) => format!(
                "{current} {} {} = {e}",
                if d < 0 { "-" } else { "+" },
                d.unsigned_abs()
            ),
            Change::Set(_) => e,
        })?;
    }
    Ok(Verdict::Scale(target))
}

/// Phrases an error reading a service by the name the user typed.
pub(crate) fn read_error(service: &str, err: EngineError) -> String {
    match err {
        EngineError::Daemon { status: 404, .. } => format!("no such service: {service}"),
        other => other.to_string(),
    }
}

/// Whether `err` concerns the engine as a whole (unreachable, not a manager), not
/// one service: it is then reported once.
pub(crate) fn engine_wide(err: &EngineError) -> bool {
    !matches!(err, EngineError::Daemon { .. })
}

/// How [`execute`] reports and waits.
#[derive(Debug, Clone)]
pub struct Options {
    /// Table lines, JSON objects or a template's rows on stdout.
    pub format: Format,
    /// `--detach`: do not wait.
    pub detach: bool,
    /// `--quiet`: no progress and no notes.
    pub quiet: bool,
    /// `--timeout`: most time to wait for convergence.
    pub timeout: Option<Duration>,
    /// The end of the lease window the updates must not outlive (`apply` holds
    /// the agents' lease: [`crate::store::exclusive::Exclusive::window`]), shared
    /// with the task that renews it: `None` inside means no window (lost). Each
    /// update then runs within it ([`update::update_within`]). `None`: no deadline
    /// (`scale`).
    pub window: Option<std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>>,
}

/// Completes when `window` holds no open window: at once when it is empty or past,
/// else at its end (a renewal meanwhile moves the end on). Every poll reads the
/// clock itself.
pub async fn window_closed(window: &std::sync::Mutex<Option<std::time::Instant>>) {
    let open = || {
        window
            .lock()
            .ok()
            .and_then(|v| *v)
            .filter(|v| std::time::Instant::now() < *v)
    };
    while let Some(until) = open() {
        tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
    }
}

/// The stdout line for one finished update (table format).
fn outcome_line(o: &Outcome) -> Option<String> {
    let unit = if o.mode == "replicated job" {
        " completions"
    } else {
        ""
    };
    let name = crate::edge::text::printable(&o.service);
    if let Some(reason) = &o.held {
        return Some(format!("{name} held: {reason}"));
    }
    if o.error.is_some() {
        return None;
    }
    Some(if o.updated {
        format!(
            "{name} scaled from {} to {}{unit}",
            o.before.unwrap_or(0),
            o.after.unwrap_or(0)
        )
    } else {
        format!(
            "{name} already has {} {}; not updated",
            o.after.unwrap_or(0),
            if unit.is_empty() {
                "replicas"
            } else {
                "completions"
            }
        )
    })
}

/// Updates every service of `work` concurrently (each with its decider), reports,
/// and unless detached waits for convergence. `pre` are outcomes already decided
/// (errors from planning); they are reported with the rest. `reasons[i]` are the
/// plan's reasons for `work[i]` (`apply`), carried into its outcome.
///
/// `cancelled` completes on Ctrl-C or the docker CLI's cancel
/// ([`crate::edge::exit::cancellation`]): it then says that the updates made stand and that
/// Swarm converges in the background, prints the JSON so far, and returns
/// [`Failure::Interrupted`].
pub async fn execute(
    engine: &Engine,
    work: Vec<(RawService, &Decide<'_>)>,
    pre: Vec<Outcome>,
    reasons: Vec<Vec<String>>,
    options: &Options,
    mut cancelled: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<Exit, Failure> {
    let table = options.format.is_table();
    let outcomes: RefCell<Vec<Outcome>> = RefCell::new(
        work.iter()
            .map(|(svc, _)| Outcome::new(svc))
            .chain(pre)
            .collect(),
    );
    // Which of `work` have their final outcome (the others are in flight).
    let done = RefCell::new(vec![false; work.len()]);
    let write_failed: RefCell<Option<String>> = RefCell::new(None);
    let interrupted = {
        let updates =
            futures_util::stream::iter(work.into_iter().enumerate().map(|(i, (svc, decide))| {
                let outcomes = &outcomes;
                let done = &done;
                let reasons = reasons.get(i).cloned().unwrap_or_default();
                async move {
                    let mut o = match &options.window {
                        Some(w) => {
                            update::update_within(engine, svc, decide, window_closed(w)).await
                        }
                        None => update::update(engine, svc, decide).await,
                    };
                    o.reasons = reasons;
                    outcomes.borrow_mut()[i] = o;
                    done.borrow_mut()[i] = true;
                }
            }))
            .buffer_unordered(MAX_IN_FLIGHT)
            .collect::<Vec<()>>();
        tokio::pin!(updates);
        tokio::select! {
            _ = &mut updates => false,
            _ = &mut cancelled => true,
        }
    };
    if interrupted {
        for (o, finished) in outcomes.borrow_mut().iter_mut().zip(done.borrow().iter()) {
            if !finished {
                o.convergence = Convergence::Unknown;
                o.error = Some(format!(
                    "interrupted before the engine answered: the update may or may not have been applied; check it with `docker service inspect {}`",
                    o.service
                ));
            }
        }
        return interrupt(&outcomes, options, "while the updates were being sent");
    }
    // Result lines in the order the services were given.
    for o in outcomes.borrow().iter() {
        if let Err(e) = report_update(o, table) {
            write_failed.replace(Some(e));
        }
    }
    for o in outcomes
        .borrow()
        .iter()
        .filter(|o| o.error.is_some() && !o.updated)
    {
        say(&format!(
            "{}: {}",
            o.service,
            o.error.as_deref().unwrap_or_default()
        ));
    }
    if !options.quiet {
        notes(&outcomes.borrow());
    }
    if options.detach {
        // Updated services stay `Detached`.
    } else {
        let progress = if options.quiet {
            watch::Progress::Quiet
        } else if std::io::stderr().is_terminal()
            && !indicatif::ProgressDrawTarget::stderr().is_hidden()
        {
            // indicatif draws nothing on a terminal it cannot drive (TERM unset or
            // dumb): plain lines then.
            watch::Progress::Bars
        } else {
            watch::Progress::Lines
        };
        let interrupted = {
            let waiting = watch::watch(engine, &outcomes, options.timeout, progress);
            tokio::pin!(waiting);
            tokio::select! {
                _ = &mut waiting => false,
                _ = &mut cancelled => true,
            }
        };
        if interrupted {
            return interrupt(&outcomes, options, "while waiting for convergence");
        }
        for o in outcomes.borrow().iter().filter(|o| o.updated) {
            match &o.error {
                Some(e) => say(&format!("{}: {e}", o.service)),
                None if progress == watch::Progress::Lines => {}
                None => {}
            }
        }
    }
    let all = outcomes.into_inner();
    if !table {
        let text = options.format.render(&all, |_| String::new())?;
        crate::edge::exit::print_stdout_async(text).await?;
    }
    if let Some(e) = write_failed.into_inner() {
        say(&e);
        return Ok(Exit::Error);
    }
    Ok(if all.iter().any(Outcome::is_error) {
        Exit::Error
    } else {
        Exit::Ok
    })
}

/// Prints what happened to one service as soon as its update is done: the stdout
/// line (table format) and the engine's warnings.
///
/// Errors: stdout cannot be written (a closed pipe is not an error, as everywhere).
fn report_update(o: &Outcome, table: bool) -> Result<(), String> {
    for w in &o.warnings {
        say(&format!("{}: warning: {w}", o.service));
    }
    if table && let Some(line) = outcome_line(o) {
        crate::edge::exit::print_stdout(&format!("{line}\n")).map_err(|e| match e {
            Failure::Error(m) | Failure::Usage(m) => m,
            Failure::Interrupted => "interrupted".into(),
        })?;
    }
    Ok(())
}

/// The notes after the updates: what `docker service rollback` now does, and what a
/// new completion count means for a job.
fn notes(outcomes: &[Outcome]) {
    let updated: Vec<&Outcome> = outcomes.iter().filter(|o| o.updated).collect();
    if updated.is_empty() {
        return;
    }
    let list: Vec<String> = updated
        .iter()
        .map(|o| format!("{} to {}", o.service, o.before.unwrap_or(0)))
        .collect();
    say(&format!(
        "Note: `docker service rollback SERVICE` now undoes this scale of that service ({}), not an earlier change: each update replaces the spec a rollback returns to.",
        list.join(", ")
    ));
    for o in updated.iter().filter(|o| o.mode == "replicated job") {
        say(&format!(
            "Note: {} is a replicated job: changing its spec starts the job again from the beginning, with {} completions to do; earlier completions do not count.",
            o.service,
            o.after.unwrap_or(0)
        ));
    }
}

/// Ends an interrupted scale: says what stands, prints JSON so far, exit 130.
fn interrupt(
    outcomes: &RefCell<Vec<Outcome>>,
    options: &Options,
    when: &str,
) -> Result<Exit, Failure> {
    let mut all = outcomes.borrow_mut();
    let mut updated = vec![];
    for o in all.iter_mut() {
        if o.updated && o.convergence == Convergence::Detached {
            o.convergence = Convergence::Interrupted;
        }
        if o.updated {
            updated.push(o.service.clone());
        }
    }
    if updated.is_empty() {
        say(&format!(
            "Interrupted {when}: no update was confirmed by the engine; one in flight may still take effect: check with `docker service ls`."
        ));
    } else {
        say(&format!(
            "Interrupted {when}: nothing was undone. {} updated, and Swarm goes on converging in the background: follow it with `docker service ps {}`.",
            updated.join(", "),
            updated[0]
        ));
    }
    if !options.format.is_table()
        && let Ok(text) = options.format.render(&all, |_| String::new())
    {
        let _ = crate::edge::exit::print_stdout(&text);
    }
    Err(Failure::Interrupted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn svc(labels: serde_json::Value, mode: serde_json::Value) -> RawService {
        RawService::from_value(json!({
            "ID": "id1", "Version": {"Index": 3},
            "Spec": {"Name": "web", "Labels": labels, "Mode": mode,
                     "TaskTemplate": {"ContainerSpec": {"Image": "x"}}}
        }))
        .unwrap()
    }

    #[test]
    fn targets_parse_like_docker_service_scale_plus_relative() {
        assert_eq!(
            parse_target("web=3").unwrap(),
            Target {
                service: "web".into(),
                change: Change::Set(3)
            }
        );
        assert_eq!(parse_target("web=+2").unwrap().change, Change::Add(2));
        assert_eq!(parse_target("web=-1").unwrap().change, Change::Add(-1));
        for bad in [
            "web", "=3", "web=", "web=x", "web=1.5", "web=+", "web=--1", "web= 3", "a/b=1",
            "../x=1",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        let e = parse_target("web").unwrap_err();
        assert!(e.contains("SERVICE=REPLICAS"), "{e}");
        assert!(parse_target("web=+99999999999999999999").is_err());
    }

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout(None), Ok(None));
        assert_eq!(
            parse_timeout(Some("90s")),
            Ok(Some(Duration::from_secs(90)))
        );
        assert_eq!(parse_timeout(Some("2")), Ok(Some(Duration::from_secs(2))));
        assert!(parse_timeout(Some("0s")).is_err());
        assert!(parse_timeout(Some("soon")).is_err());
        assert!(parse_timeout(Some("48h")).is_err());
    }

    #[test]
    fn declared_bounds_stop_a_scale_unless_forced() {
        let repl = json!({"Replicated": {"Replicas": 2}});
        let s = svc(
            json!({"microscale.min": "2", "microscale.max": "5"}),
            repl.clone(),
        );
        let e = decide_scale(&s, Change::Set(6), false, None).unwrap_err();
        assert!(
            e.contains("above the rule's maximum, microscale.max=5 (a service label)"),
            "{e}"
        );
        let e = decide_scale(&s, Change::Add(-1), false, None).unwrap_err();
        assert!(
            e.contains("below the rule's minimum, microscale.min=2"),
            "{e}"
        );
        assert_eq!(
            decide_scale(&s, Change::Set(6), true, None),
            Ok(Verdict::Scale(6))
        );
        assert_eq!(
            decide_scale(&s, Change::Add(3), false, None),
            Ok(Verdict::Scale(5))
        );
        // min is only enforced when declared (the rule's default of 1 is not a bound)
        let s = svc(json!({"microscale.max": "5"}), repl.clone());
        assert_eq!(
            decide_scale(&s, Change::Set(0), false, None),
            Ok(Verdict::Scale(0))
        );
        // a broken rule: bounds unknown
        let s = svc(json!({"microscale.max": "lots"}), repl.clone());
        let e = decide_scale(&s, Change::Set(3), false, None).unwrap_err();
        assert!(e.contains("rules check web"), "{e}");
        // no rule: no bounds
        let s = svc(json!({}), repl);
        assert_eq!(
            decide_scale(&s, Change::Set(300), false, None),
            Ok(Verdict::Scale(300))
        );
    }

    #[test]
    fn a_rules_file_bound_names_the_file() {
        let s = svc(
            json!({"microscale.max": "50"}),
            json!({"Replicated": {"Replicas": 2}}),
        );
        let file: RulesFile = BTreeMap::from([(
            "web".to_string(),
            BTreeMap::from([("microscale.max".to_string(), "4".to_string())]),
        )]);
        let path = std::path::Path::new("rules.toml");
        let e = decide_scale(&s, Change::Set(5), false, Some((path, &file))).unwrap_err();
        assert!(e.contains("max = 4 in rules.toml"), "{e}");
    }

    #[test]
    fn global_services_and_rolling_updates_are_refused() {
        let g = svc(json!({}), json!({"Global": {}}));
        let e = decide_scale(&g, Change::Set(3), true, None).unwrap_err();
        assert!(
            e.contains("global service") && e.contains("no replica count"),
            "{e}"
        );
        let mut s = svc(json!({}), json!({"Replicated": {"Replicas": 2}}));
        s.value["UpdateStatus"] =
            json!({"State": "paused", "Message": "update paused due to failure"});
        let e = decide_scale(&s, Change::Set(3), false, None).unwrap_err();
        assert!(e.contains("paused") && e.contains("--force"), "{e}");
        assert_eq!(
            decide_scale(&s, Change::Set(3), true, None),
            Ok(Verdict::Scale(3))
        );
        s.value["UpdateStatus"] = json!({"State": "completed"});
        assert_eq!(
            decide_scale(&s, Change::Set(3), false, None),
            Ok(Verdict::Scale(3))
        );
    }

    #[test]
    fn relative_changes_start_from_the_spec_read() {
        let s = svc(json!({}), json!({"ReplicatedJob": {"TotalCompletions": 4}}));
        assert_eq!(
            decide_scale(&s, Change::Add(-2), false, None),
            Ok(Verdict::Scale(2))
        );
        assert!(decide_scale(&s, Change::Add(-5), false, None).is_err());
    }

    #[test]
    fn a_scale_past_the_placement_cap_is_refused_with_the_cap_and_the_fix() {
        let placed = |replicas: u64, placement: serde_json::Value| {
            RawService::from_value(json!({
                "ID": "id1", "Version": {"Index": 3},
                "Spec": {"Name": "web", "Mode": {"Replicated": {"Replicas": replicas}},
                         "TaskTemplate": {"ContainerSpec": {"Image": "x"}, "Placement": placement}}
            }))
            .unwrap()
        };
        let node = |host: &str, role: &str, state: &str, availability: &str| {
            serde_json::from_value::<bollard::models::Node>(json!({
                "ID": host, "Description": {"Hostname": host},
                "Spec": {"Role": role, "Availability": availability},
                "Status": {"State": state}
            }))
            .unwrap()
        };
        let nodes = vec![
            node("m1", "manager", "ready", "active"),
            node("w1", "worker", "ready", "active"),
            node("w2", "worker", "down", "active"),
            node("w3", "worker", "ready", "drain"),
        ];
        // 2 per node on the 2 nodes that can take tasks: 4.
        let s = placed(3, json!({"MaxReplicas": 2}));
        assert_eq!(check_placement(&s, 4, &nodes), Ok(()));
        let e = check_placement(&s, 5, &nodes).unwrap_err();
        assert!(
            e.starts_with("5 replicas cannot all be placed: at most 2 per node (--replicas-max-per-node) on 2 eligible nodes (ready, active and matching its node.role and node.hostname constraints) is 4, so 1 task would stay pending"),
            "{e}"
        );
        assert!(
            e.contains("`docker service update --replicas-max-per-node 3 web`")
                && e.ends_with("; or use --force"),
            "{e}"
        );
        // A constraint leaves one node: 2.
        let s = placed(
            1,
            json!({"MaxReplicas": 2, "Constraints": ["node.role==manager"]}),
        );
        let e = check_placement(&s, 4, &nodes).unwrap_err();
        assert!(
            e.contains("on 1 eligible node (") && e.contains("so 2 tasks"),
            "{e}"
        );
        assert!(e.contains("--replicas-max-per-node 4 web"), "{e}");
        // No node at all.
        let s = placed(
            1,
            json!({"MaxReplicas": 1, "Constraints": ["node.hostname==nowhere"]}),
        );
        let e = check_placement(&s, 2, &nodes).unwrap_err();
        assert!(
            e.starts_with("2 replicas cannot be placed: no node is eligible"),
            "{e}"
        );
        assert!(e.contains("{{json .Spec.TaskTemplate.Placement}}"), "{e}");
        // Down (or level) is always allowed, even above the cap; no limit, no cap.
        let s = placed(6, json!({"MaxReplicas": 1}));
        assert_eq!(check_placement(&s, 5, &nodes), Ok(()));
        assert_eq!(check_placement(&s, 6, &nodes), Ok(()));
        let s = placed(1, json!({}));
        assert_eq!(check_placement(&s, 500, &nodes), Ok(()));
        // Jobs are not capped here (their tasks complete and make room).
        let job = RawService::from_value(json!({
            "ID": "id1", "Version": {"Index": 3},
            "Spec": {"Name": "j", "Mode": {"ReplicatedJob": {"TotalCompletions": 1}},
                     "TaskTemplate": {"Placement": {"MaxReplicas": 1}}}
        }))
        .unwrap();
        assert_eq!(check_placement(&job, 10, &nodes), Ok(()));
    }
}
