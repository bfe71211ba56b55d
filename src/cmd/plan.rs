//! `docker microscale plan [SERVICE...]`: what each rule-managed service should run
//! and why, from the swarm's snapshot, the rules, their metrics and the history the
//! agents keep ([`crate::plan::compute`]).

use crate::plan::{PlanRow, REASON_WIDTH, compute, reason_cell};

/// Runs `docker microscale plan`.
///
/// Exit codes: 0, or with `--detailed-exitcode` 0 when nothing would change and 2
/// when changes are pending; 1 when a rule has errors or a named service does not
/// exist, and with `--detailed-exitcode` also when a metric could not be read (as
/// `apply` does: a CI gate must not pass on a held service).
pub async fn run(
    engine: &crate::engine::Engine,
    args: &crate::cli::PlanArgs,
) -> Result<crate::edge::exit::Exit, crate::edge::exit::Failure> {
    use crate::edge::exit::{Exit, Failure, print_stdout_async, say};
    use crate::render::Format;

    let format = Format::parse(args.format.as_deref(), crate::render::fields::PLAN)
        .map_err(Failure::Usage)?;
    let computed = compute(engine, args).await?;
    let rows = &computed.rows;
    let text = format.render(rows, |rows| table(rows, args.no_trunc == Some(true)))?;
    let code = print_stdout_async(text).await?;
    let errors = rows.iter().any(|r| r.action == "error") || !computed.missing.is_empty();
    for m in &computed.missing {
        say(m);
    }
    if errors {
        return Ok(Exit::Error);
    }
    if code != Exit::Ok {
        return Ok(code);
    }
    let unreadable: Vec<&str> = rows
        .iter()
        .filter(|r| r.reasons.iter().any(|x| x.contains(" unreadable: ")))
        .map(|r| r.service.as_str())
        .collect();
    if args.detailed_exitcode == Some(true) && !unreadable.is_empty() {
        say(&format!(
            "a metric could not be read for {}: held (see the reasons)",
            unreadable.join(", ")
        ));
        return Ok(Exit::Error);
    }
    let pending = rows.iter().any(|r| r.desired != r.current);
    Ok(if args.detailed_exitcode == Some(true) && pending {
        Exit::ChangesPending
    } else {
        Exit::Ok
    })
}

/// The plan as a table: SERVICE CURRENT METRIC DESIRED ACTION REASON (the cause
/// first, cut at [`REASON_WIDTH`] columns unless `no_trunc`: [`reason_cell`]).
pub fn table(rows: &[PlanRow], no_trunc: bool) -> String {
    use crate::render::docker_table;
    docker_table(
        &[
            "SERVICE", "CURRENT", "METRIC", "DESIRED", "ACTION", "REASON",
        ],
        rows.iter()
            .map(|r| {
                vec![
                    r.service.clone(),
                    r.current.to_string(),
                    r.metric.clone().unwrap_or_else(|| "-".into()),
                    r.desired.to_string(),
                    r.action.clone(),
                    reason_cell(&r.reasons, (!no_trunc).then_some(REASON_WIDTH)),
                ]
            })
            .collect(),
    )
}
