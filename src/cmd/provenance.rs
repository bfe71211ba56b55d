//! `docker microscale provenance SERVICE...` (alias `labels`): every label of a
//! service with its origin, the OCI / Label Schema record, drift and attestations.

use crate::engine::Engine;
use crate::provenance::{
    CONCURRENT_READS, DEFAULT_REQUIRE, ServiceProvenance, check_reference, drift, invalid_reason,
    local_candidates, parse_require, remote, render, service_provenance,
};
use bollard::models::Service;

/// Runs `docker microscale provenance`.
///
/// Exit 0 when every named service was found and its image read; 1 when a service is
/// unknown, an image could not be read, or (with `--check`) a required field is
/// missing. The other services are always shown.
pub async fn run(
    engine: &Engine,
    args: &crate::cli::ProvenanceArgs,
    config_dir: Option<std::path::PathBuf>,
) -> Result<crate::edge::exit::Exit, crate::edge::exit::Failure> {
    use crate::edge::exit::{Exit, Failure, print_stdout_async, say};
    use crate::render::Format;

    let format = Format::parse(args.format.as_deref(), crate::render::fields::PROVENANCE)
        .map_err(Failure::Usage)?;
    let check = args.check == Some(true);
    let require = match (&args.require, check) {
        (r, false) if !r.is_empty() => {
            return Err(Failure::Usage("--require needs --check".into()));
        }
        (r, true) if !r.is_empty() => parse_require(r).map_err(Failure::Usage)?,
        _ => DEFAULT_REQUIRE.iter().map(|s| s.to_string()).collect(),
    };
    let mut snap = engine
        .snapshot(&Default::default())
        .await
        .map_err(|e| Failure::Error(e.to_string()))?;
    let (kept, missing_services) = crate::swarm::service::select_services(
        std::mem::take(&mut snap.services),
        &args.services,
        false,
    );
    let mut services = kept;
    let name = |s: &Service| {
        s.spec
            .as_ref()
            .and_then(|s| s.name.clone())
            .unwrap_or_default()
    };
    // Named services in the order given (as `docker service inspect`), else by name.
    let rank = |s: &Service| {
        let id = s.id.clone().unwrap_or_default();
        args.services
            .iter()
            .position(|w| *w == id || *w == name(s))
            .or_else(|| {
                args.services
                    .iter()
                    .position(|w| !w.is_empty() && id.starts_with(w.as_str()))
            })
            .unwrap_or(usize::MAX)
    };
    services.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then_with(|| crate::render::natural_cmp(&name(a), &name(b)))
    });
    let remote = remote::Remote::new(engine, config_dir);
    let no_trunc = args.no_trunc == Some(true);
    // Engine reads first, all of them: slow registries must not use up the command's
    // time before the engine has been asked.
    {
        use futures_util::StreamExt;
        let candidates: std::collections::BTreeSet<String> = services
            .iter()
            .filter_map(|s| drift::spec_image(s))
            .filter(|i| check_reference(i).is_ok())
            .flat_map(local_candidates)
            .collect();
        let _: Vec<_> = futures_util::stream::iter(&candidates)
            .map(|c| remote.local(c))
            .buffer_unordered(CONCURRENT_READS)
            .collect()
            .await;
    }
    // A few services at a time: engine reads are quick, registry reads may not be.
    use futures_util::StreamExt;
    let mut results: Vec<ServiceProvenance> = futures_util::stream::iter(&services)
        .map(|s| service_provenance(engine, &remote, &snap, s, no_trunc))
        .buffered(CONCURRENT_READS)
        .collect()
        .await;
    if check {
        for p in results.iter_mut().filter(|p| p.error.is_none()) {
            p.missing = require
                .iter()
                .filter(|f| p.provenance.get(f).is_some_and(|v| v.is_none()))
                .cloned()
                .collect();
            p.invalid = require
                .iter()
                .filter_map(|f| {
                    let field = p.provenance.get(f)?.as_ref()?;
                    let why = invalid_reason(f, &field.value)?;
                    Some(format!("{f}: {why}"))
                })
                .collect();
        }
    }
    let text = format.render(&results, |results| {
        if check {
            render::check_table(results, &require, no_trunc)
        } else {
            render::pretty(results, no_trunc)
        }
    })?;
    let mut code = if results.is_empty() && !missing_services.is_empty() {
        Exit::Ok
    } else {
        print_stdout_async(text).await?
    };
    for p in &results {
        if let Some(e) = &p.error {
            say(&format!("service {}: {e}", p.name));
            code = Exit::Error;
        }
    }
    if check
        && results
            .iter()
            .any(|p| !p.missing.is_empty() || !p.invalid.is_empty())
    {
        code = Exit::Error;
    }
    for m in &missing_services {
        say(m);
        code = Exit::Error;
    }
    Ok(code)
}
