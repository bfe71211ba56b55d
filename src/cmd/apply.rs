//! `docker microscale apply [SERVICE...]`: carries out what `plan` shows, once.
//!
//! The plan is computed as `plan` computes it; each service whose desired count
//! differs from its current one is then scaled by [`super::execute`]. When a service
//! changed between the plan and its update (a version conflict, or a newer version
//! index than the plan saw), it is planned again on its fresh spec with the same
//! metric readings, and within `--capacity` never above the share it was granted.
//!
//! `apply` decides with the history the agents keep in the swarm and writes it back
//! before it scales ([`crate::store::history`]), so that windows and steps hold
//! across cron runs. It never races an agent: it holds the agents' lease while it
//! decides and scales, and refuses (exit 3) while an agent holds it
//! ([`crate::store::exclusive`]).

use crate::edge::exit::{Exit, Failure, say};
use crate::engine::Engine;
use crate::engine::service::RawService;
use crate::plan::{Computed, PlanRow};
use crate::render::Format;

use futures_util::StreamExt;

use crate::execute::update::{Convergence, Decide, Outcome, Verdict};

/// Whether a plan row asks for an update.
fn wants_update(row: &PlanRow) -> bool {
    matches!(row.action.as_str(), "scale up" | "scale down") && row.desired != row.current
}

/// Decides one service of the plan on its fresh spec: the planned count while the
/// service is as planned (same version index), else a new plan for it.
fn decide_again(
    computed: &Computed,
    row: &PlanRow,
    planned_version: Option<u64>,
    capacity: Option<u64>,
    svc: &RawService,
) -> Result<Verdict, String> {
    if Some(svc.version) == planned_version {
        return Ok(Verdict::Scale(row.desired));
    }
    let fresh = [svc.typed()];
    let rows = computed.replan(&fresh);
    let Some(again) = rows.into_iter().next() else {
        return Ok(Verdict::Hold(
            "its rule was removed after the plan was made".into(),
        ));
    };
    match again.action.as_str() {
        "scale up" | "scale down" | "none" => Ok(Verdict::Scale(match capacity {
            Some(_) => again.desired.min(row.desired.max(again.current)),
            None => again.desired,
        })),
        "error" => Err(again.reasons.join("; ")),
        _ => Ok(Verdict::Hold(again.reasons.join("; "))),
    }
}

/// Runs `docker microscale apply`.
///
/// `--dry-run` prints exactly what `plan` prints. Otherwise the plan is printed
/// (table format), the services to change are scaled concurrently, and unless
/// `--detach` watched until they converge. Services whose rule has errors, and named
/// services that do not exist, make the exit code 1 without stopping the others.
pub async fn run(engine: &Engine, args: &crate::cli::ApplyArgs) -> Result<Exit, Failure> {
    let plan_args = args.plan_args();
    if args.dry_run == Some(true) {
        let cancelled = crate::edge::exit::cancellation();
        return tokio::select! {
            r = crate::cmd::plan::run(engine, &plan_args) => r,
            _ = cancelled => Err(Failure::Interrupted),
        };
    }
    let format = Format::parse(args.format.as_deref(), crate::render::fields::APPLY)
        .map_err(Failure::Usage)?;
    let timeout = crate::execute::parse_timeout(args.timeout.as_deref()).map_err(Failure::Usage)?;
    crate::execute::check_detach_timeout(args.detach, &args.timeout)?;
    let cancelled = crate::edge::exit::cancellation();
    tokio::pin!(cancelled);
    // Never race an agent: hold its lease while deciding and scaling.
    let lease_name = match args.lease_name.as_deref().map(str::trim) {
        None => crate::store::lease::DEFAULT_NAME.to_string(),
        Some(n) => crate::store::lease::check_lease_name(n).map_err(Failure::Usage)?,
    };
    let taken = tokio::select! {
        t = crate::store::exclusive::take(engine, &lease_name) => t,
        _ = &mut cancelled => return Err(Failure::Interrupted),
    };
    let exclusive = match taken
        .map_err(|e| Failure::Error(format!("cannot take the agents' lease {lease_name}: {e}")))?
    {
        crate::store::exclusive::Taken::Held(x) => x,
        crate::store::exclusive::Taken::Other { holder, renewed } => {
            say(&format!(
                "an agent holds the lease {lease_name}: {holder}{}. apply does not race it: nothing was changed.\nLet the agent scale (`docker microscale plan` shows what it decides), or stop it first (`docker service rm microscale_agent`, or `run --dry-run`); see docs/agent.md.",
                renewed
                    .map(|r| format!(", renewed at {r}"))
                    .unwrap_or_default()
            ));
            return Ok(Exit::AgentActive);
        }
    };
    let computed = tokio::select! {
        c = crate::plan::compute(engine, &plan_args) => c?,
        _ = &mut cancelled => return Err(Failure::Interrupted),
    };
    if format.is_table() {
        crate::edge::exit::print_stdout_async(crate::cmd::plan::table(
            &computed.rows,
            args.no_trunc == Some(true),
        ))
        .await?;
    }
    for m in &computed.missing {
        say(m);
    }
    // Named services that have no rule: say so (an empty plan is not an answer).
    let mut errors = !computed.missing.is_empty();
    let (named, _) = crate::swarm::service::select_services(
        computed.snap.services.clone(),
        &args.services,
        false,
    );
    for s in named.iter().take(if args.services.is_empty() {
        0
    } else {
        usize::MAX
    }) {
        let name = crate::rules::check::service_name(s);
        if !computed.rows.iter().any(|r| r.service == name) {
            say(&format!(
                "{name}: no scaling rule (no microscale.* labels{}): nothing to apply; see docs/rules.md",
                if computed.file.is_some() {
                    ", and not in the --rules file"
                } else {
                    ""
                }
            ));
            errors = true;
        }
    }
    let by_name = |name: &str| {
        computed
            .snap
            .services
            .iter()
            .find(|s| crate::rules::check::service_name(s) == name)
    };
    let mut pre: Vec<Outcome> = vec![];
    let mut wanted: Vec<(&PlanRow, String, Option<u64>)> = vec![];
    for row in computed.rows.iter() {
        let planned = by_name(&row.service);
        let outcome = |error: Option<String>| {
            let mut o = match planned {
                Some(s) => {
                    let mut o = Outcome::failed(&row.service, String::new());
                    o.id = s.id.clone().unwrap_or_default();
                    o.mode = crate::swarm::service::Mode::of(s).as_str().to_string();
                    o
                }
                None => Outcome::failed(&row.service, String::new()),
            };
            o.before = Some(row.current);
            o.after = Some(row.current);
            o.reasons = row.reasons.clone();
            o.error = error;
            o.convergence = if o.error.is_some() {
                Convergence::Failed
            } else {
                Convergence::Unchanged
            };
            o
        };
        if row.action == "error" {
            pre.push(outcome(Some(row.reasons.join("; "))));
            continue;
        }
        if row.reasons.iter().any(|r| r.contains(" unreadable: ")) {
            // A dead metric source is held (nothing scaled), and is an error for
            // the script that runs apply.
            errors = true;
        }
        if !wants_update(row) {
            let mut o = outcome(None);
            if row.action != "none" {
                o.held = Some(row.reasons.join("; "));
            }
            pre.push(o);
            continue;
        }
        let Some(s) = planned else { continue };
        let version = s.version.as_ref().and_then(|v| v.index);
        wanted.push((row, s.id.clone().unwrap_or_default(), version));
    }
    // The services to change, read again whole (raw), a few at a time.
    let reads = tokio::select! {
        r = futures_util::stream::iter(
            wanted.iter().map(|(_, id, _)| engine.inspect_service_raw(id)),
        )
        .buffered(crate::execute::MAX_IN_FLIGHT)
        .collect::<Vec<_>>() => r,
        _ = &mut cancelled => return Err(Failure::Interrupted),
    };
    let mut work: Vec<(RawService, &PlanRow, Option<u64>)> = vec![];
    for ((row, _, version), read) in wanted.into_iter().zip(reads) {
        match read {
            Ok(svc) => work.push((svc, row, version)),
            Err(crate::engine::EngineError::Daemon { status: 404, .. }) => {
                pre.push(Outcome::failed(
                    &row.service,
                    format!("{} was removed after the plan was made", row.service),
                ));
            }
            Err(e) => return Err(Failure::Error(e.to_string())),
        }
    }
    // The history goes back before the updates (it assumes they are made, as the
    // agent's does); the counts set are recorded for the agents' fight detection.
    if let Some(mut entries) = computed.histories_after.clone() {
        for (_, row, _) in &work {
            if let Some(id) = computed
                .snap
                .services
                .iter()
                .filter_map(|s| s.id.as_deref())
                .find(|id| id.starts_with(&row.id) && !row.id.is_empty())
            {
                entries.entry(id.to_string()).or_default().set = Some(row.desired);
            }
        }
        let present: std::collections::HashSet<String> = computed
            .snap
            .services
            .iter()
            .filter_map(|s| s.id.clone())
            .collect();
        let ours = crate::store::history::encode_all(&entries);
        if !exclusive.holds() {
            return Err(Failure::Error(format!(
                "apply lost the lease {lease_name} while deciding (the engine was slow): nothing was changed; run it again"
            )));
        }
        if let Err(e) = crate::store::history::write(
            engine,
            &computed.history_name,
            exclusive.holder(),
            None,
            computed.now,
            &ours,
            &present,
        )
        .await
        {
            return Err(Failure::Error(format!(
                "cannot write the decision history to the swarm config {}: {e}; nothing was changed",
                computed.history_name
            )));
        }
    }
    let capacity = args.decide.capacity;
    let exclusive_ref = &exclusive;
    let deciders: Vec<Box<Decide<'_>>> = work
        .iter()
        .map(|(_, row, version)| {
            let (computed, row, version) = (&computed, *row, *version);
            Box::new(move |svc: &RawService| {
                if !exclusive_ref.holds() {
                    return Ok(Verdict::Hold(
                        "apply lost the agents' lease before the update".into(),
                    ));
                }
                decide_again(computed, row, version, capacity, svc)
            }) as Box<Decide<'_>>
        })
        .collect();
    let rows: Vec<&PlanRow> = work.iter().map(|(_, r, _)| *r).collect();
    let jobs: Vec<(RawService, &Decide<'_>)> = work
        .into_iter()
        .map(|(s, _, _)| s)
        .zip(deciders.iter().map(|d| d.as_ref()))
        .collect();
    if jobs.is_empty() && format.is_table() {
        if errors {
            // Exit 1 follows: say why on stderr, not only in the table.
            say(
                "Nothing changed: a metric could not be read, so its service is held (the reason is in its row above).",
            );
        } else {
            say("Nothing to change.");
        }
    }
    let options = crate::execute::Options {
        format,
        detach: args.detach == Some(true),
        quiet: args.quiet == Some(true),
        timeout,
        // No update outlives the lease apply holds.
        window: Some(exclusive.window()),
    };
    let reasons: Vec<Vec<String>> = rows.iter().map(|r| r.reasons.clone()).collect();
    let code = crate::execute::execute(engine, jobs, pre, reasons, &options, cancelled).await;
    drop(deciders);
    exclusive.release().await;
    let code = code?;
    Ok(if errors { Exit::Error } else { code })
}
