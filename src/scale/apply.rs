//! `docker microscale apply [SERVICE...]`: carries out what `plan` shows, once.
//!
//! The plan is computed as `plan` computes it; each service whose desired count
//! differs from its current one is then scaled by [`super::execute`]. When a service
//! changed between the plan and its update (a version conflict, or a newer version
//! index than the plan saw), it is planned again on its fresh spec with the same
//! metric readings, and within `--capacity` never above the share it was granted.

use crate::engine::service::RawService;
use crate::engine::Engine;
use crate::exit::{Exit, Failure, say};
use crate::plan::{Computed, PlanRow};
use crate::render::Format;

use super::update::{Decide, Outcome, Verdict};

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
    let rows = crate::plan::plan(
        &fresh,
        &computed.snap,
        computed.file_ref(),
        None,
        computed.now,
        true,
        &|k| computed.read(k),
    );
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
        let cancelled = crate::exit::cancellation();
        return tokio::select! {
            r = crate::plan::run(engine, &plan_args) => r,
            _ = cancelled => Err(Failure::Interrupted),
        };
    }
    let format = Format::parse(args.format.as_deref(), crate::render::fields::APPLY)
        .map_err(Failure::Usage)?;
    let timeout = super::parse_timeout(args.timeout.as_deref()).map_err(Failure::Usage)?;
    let cancelled = crate::exit::cancellation();
    tokio::pin!(cancelled);
    let computed = tokio::select! {
        c = crate::plan::compute(engine, &plan_args) => c?,
        _ = &mut cancelled => return Err(Failure::Interrupted),
    };
    if format.is_table() {
        crate::exit::print_stdout_async(crate::plan::table(
            &computed.rows,
            args.no_trunc == Some(true),
        ))
        .await?;
    }
    for m in &computed.missing {
        say(m);
    }
    let mut pre: Vec<Outcome> = vec![];
    let mut work: Vec<(RawService, &PlanRow, Option<u64>)> = vec![];
    for row in computed.rows.iter() {
        if row.action == "error" {
            let mut o = Outcome::failed(&row.service, row.reasons.join("; "));
            o.reasons = row.reasons.clone();
            pre.push(o);
            continue;
        }
        if !wants_update(row) {
            continue;
        }
        let planned = computed
            .snap
            .services
            .iter()
            .find(|s| crate::rules::check::service_name(s) == row.service);
        let Some(id) = planned.and_then(|s| s.id.clone()) else {
            continue;
        };
        let planned_version = planned
            .and_then(|s| s.version.as_ref())
            .and_then(|v| v.index);
        match engine.inspect_service_raw(&id).await {
            Ok(svc) => work.push((svc, row, planned_version)),
            Err(crate::engine::EngineError::Daemon { status: 404, .. }) => {
                pre.push(Outcome::failed(
                    &row.service,
                    format!("{} was removed after the plan was made", row.service),
                ));
            }
            Err(e) => return Err(Failure::Error(e.to_string())),
        }
    }
    let capacity = args.capacity;
    let deciders: Vec<Box<Decide<'_>>> = work
        .iter()
        .map(|(_, row, version)| {
            let (computed, row, version) = (&computed, *row, *version);
            Box::new(move |svc: &RawService| decide_again(computed, row, version, capacity, svc))
                as Box<Decide<'_>>
        })
        .collect();
    let rows: Vec<&PlanRow> = work.iter().map(|(_, r, _)| *r).collect();
    let jobs: Vec<(RawService, &Decide<'_>)> = work
        .into_iter()
        .map(|(s, _, _)| s)
        .zip(deciders.iter().map(|d| d.as_ref()))
        .collect();
    if jobs.is_empty() && format.is_table() && pre.is_empty() {
        say("Nothing to change.");
    }
    let options = super::Options {
        format,
        detach: args.detach == Some(true),
        quiet: args.quiet == Some(true),
        timeout,
    };
    let reasons: Vec<Vec<String>> = rows.iter().map(|r| r.reasons.clone()).collect();
    let code = super::execute(engine, jobs, pre, reasons, &options, cancelled).await?;
    Ok(if computed.missing.is_empty() {
        code
    } else {
        Exit::Error
    })
}
