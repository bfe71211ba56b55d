//! `docker microscale scale SERVICE=N|+N|-N ...`: explicit replica counts, carried
//! out by [`crate::execute`].

use crate::edge::exit::{Exit, Failure, say};
use crate::engine::Engine;
use crate::engine::service::RawService;
use crate::execute::update::{Change, Convergence, Decide, Outcome, Verdict};
use crate::execute::{
    MAX_IN_FLIGHT, Options, Target, check_detach_timeout, check_placement, decide_scale,
    engine_wide, execute, parse_target, parse_timeout, read_error,
};
use crate::render::Format;
use futures_util::StreamExt;

/// Runs `docker microscale scale`.
///
/// Every target is read and checked first; if any is wrong (no such service, a
/// global service, a bound, a rolling update, more replicas than its placement can
/// place: [`check_placement`]), nothing changes and the command exits 1. Then all services are updated concurrently and watched. Exit 1 if any
/// update failed or did not converge within `--timeout`; 130 when interrupted (the
/// updates stand).
pub async fn run(engine: &Engine, args: &crate::cli::ScaleArgs) -> Result<Exit, Failure> {
    let format = Format::parse(args.format.as_deref(), crate::render::fields::SCALE)
        .map_err(Failure::Usage)?;
    let timeout = parse_timeout(args.timeout.as_deref()).map_err(Failure::Usage)?;
    check_detach_timeout(args.detach, &args.timeout)?;
    let mut targets = vec![];
    for arg in &args.targets {
        let t = parse_target(arg).map_err(Failure::Usage)?;
        if targets.iter().any(|x: &Target| x.service == t.service) {
            return Err(Failure::Usage(format!(
                "{} is given twice; give each service once",
                t.service
            )));
        }
        targets.push(t);
    }
    let file = crate::rules::check::load_rules_flag(args.rules.as_deref())?;
    let file_ref = file.as_ref().map(|(p, m)| (p.as_path(), m));
    let force = args.force == Some(true);

    let cancelled = crate::edge::exit::cancellation();
    tokio::pin!(cancelled);
    // The services, and the nodes their placement caps depend on (`GET /nodes`).
    let inspect = futures_util::stream::iter(
        targets
            .iter()
            .map(|t| engine.inspect_service_raw(&t.service)),
    )
    .buffered(MAX_IN_FLIGHT)
    .collect::<Vec<_>>();
    let list_nodes = async {
        engine
            .within_deadline(
                engine
                    .docker
                    .list_nodes(None::<bollard::query_parameters::ListNodesOptions>),
            )
            .await?
            .map_err(|e| engine.classify(e))
    };
    let (reads, nodes) = tokio::select! {
        r = async { tokio::join!(inspect, list_nodes) } => r,
        _ = &mut cancelled => return Err(Failure::Interrupted),
    };
    // Without the nodes, a service's own error (no such service) still comes first.
    let nodes = match nodes {
        Ok(n) => n,
        Err(e) if reads.iter().all(|r| r.is_ok()) => return Err(Failure::Error(e.to_string())),
        Err(_) => vec![],
    };
    // The checks of a target: the rule's bounds and rolling updates
    // ([`decide_scale`]), then, unless `--force`, the placement cap.
    let decide = |svc: &RawService, change: Change, force: bool| {
        let verdict = decide_scale(svc, change, force, file_ref)?;
        if let (Verdict::Scale(target), false) = (&verdict, force) {
            check_placement(svc, *target, &nodes)?;
        }
        Ok::<Verdict, String>(verdict)
    };
    let mut errors: Vec<String> = vec![];
    // One outcome per target, in the order given, for JSON when a target is wrong.
    let mut checked: Vec<Outcome> = vec![];
    let mut jobs: Vec<(RawService, Change, &str)> = vec![];
    for (t, read) in targets.iter().zip(reads) {
        match read {
            Ok(svc) => {
                if let Some((_, _, first)) = jobs.iter().find(|(s, _, _)| s.id == svc.id) {
                    let e = format!(
                        "{first} and {} name the same service ({}); give each service once",
                        t.service, svc.name
                    );
                    errors.push(e.clone());
                    checked.push(Outcome::failed(&t.service, e));
                    continue;
                }
                let mut o = Outcome::new(&svc);
                if let Err(e) = decide(&svc, t.change, force) {
                    errors.push(format!("{}: {e}", svc.name));
                    o.error = Some(e);
                    o.convergence = Convergence::Failed;
                }
                checked.push(o);
                jobs.push((svc, t.change, t.service.as_str()));
            }
            Err(e) if engine_wide(&e) => return Err(Failure::Error(e.to_string())),
            Err(e) => {
                let e = read_error(&t.service, e);
                errors.push(e.clone());
                checked.push(Outcome::failed(&t.service, e));
            }
        }
    }
    if !errors.is_empty() {
        if !format.is_table() {
            for o in checked.iter_mut().filter(|o| o.error.is_none()) {
                o.error =
                    Some("not updated: another target is wrong, so nothing was changed".into());
                o.convergence = Convergence::Failed;
            }
            let text = format.render(&checked, |_| String::new())?;
            crate::edge::exit::print_stdout_async(text).await?;
        }
        for e in &errors {
            say(e);
        }
        say(if targets.len() > 1 {
            "Nothing was changed: fix the targets above and run the command again."
        } else {
            "Nothing was changed."
        });
        return Ok(Exit::Error);
    }
    if force {
        for (svc, change, _) in &jobs {
            if let Err(e) = decide(svc, *change, false) {
                let e = e
                    .trim_end_matches("; use --force to go beyond it")
                    .trim_end_matches("; use --force to go below it")
                    .trim_end_matches("; or use --force");
                say(&format!(
                    "{}: going ahead because of --force, although {e}",
                    svc.name
                ));
                let unplaceable = decide_scale(svc, *change, true, file_ref)
                    .ok()
                    .and_then(|v| match v {
                        Verdict::Scale(target) => check_placement(svc, target, &nodes).err(),
                        _ => None,
                    })
                    .is_some();
                if unplaceable && args.detach != Some(true) && timeout.is_none() {
                    say(&format!(
                        "{}: the wait for tasks that cannot be placed does not end: Ctrl-C stops waiting (the scale stands), or give --detach or --timeout",
                        svc.name
                    ));
                }
            }
        }
    }
    let deciders: Vec<Box<Decide<'_>>> = jobs
        .iter()
        .map(|(_, change, _)| {
            let change = *change;
            let decide = &decide;
            Box::new(move |svc: &RawService| decide(svc, change, force)) as Box<Decide<'_>>
        })
        .collect();
    let work: Vec<(RawService, &Decide<'_>)> = jobs
        .into_iter()
        .map(|(s, _, _)| s)
        .zip(deciders.iter().map(|d| d.as_ref()))
        .collect();
    let options = Options {
        format,
        detach: args.detach == Some(true),
        quiet: args.quiet == Some(true),
        timeout,
        window: None,
    };
    execute(engine, work, vec![], vec![], &options, cancelled).await
}
