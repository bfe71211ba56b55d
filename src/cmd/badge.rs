//! `docker microscale badge SERVICE --kind commit|version|license|source -o FILE`:
//! a MicroBadger-style SVG badge from the service's provenance record.

use crate::engine::Engine;
use crate::provenance::record::Record;
use crate::provenance::{links, remote, service_provenance};

/// Runs `docker microscale badge`: writes one SVG badge for one service, ending with
/// a newline, to `-o FILE` (written whole, through a temporary file in the same
/// directory) or to stdout (no `-o`, or `-o -`).
///
/// Exit 1, writing nothing, when the service is unknown, its image cannot be read or
/// lacks the label, or the badge would go to stdout and stdout is a terminal.
pub async fn run_badge(
    engine: &Engine,
    args: &crate::cli::BadgeArgs,
    config_dir: Option<std::path::PathBuf>,
) -> Result<crate::edge::exit::Exit, crate::edge::exit::Failure> {
    use crate::cli::BadgeKind as K;
    use crate::edge::exit::{Exit, Failure};
    use std::io::IsTerminal;

    // `-o -` is stdout, as for tar, curl and most tools that take an output file.
    let output = args.output.as_ref().filter(|p| p.as_os_str() != "-");
    if output.is_none() && std::io::stdout().is_terminal() {
        return Err(Failure::Error(
            "cowardly refusing to write an SVG badge to a terminal: use -o FILE.svg or redirect the output".into(),
        ));
    }
    if args
        .output
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        return Err(Failure::Usage(
            "invalid argument \"\" for \"--output\" flag: give a file name".into(),
        ));
    }
    let snap = engine
        .snapshot(&Default::default())
        .await
        .map_err(|e| Failure::Error(e.to_string()))?;
    let (kept, missing) = crate::swarm::service::select_services(
        snap.services.clone(),
        std::slice::from_ref(&args.service),
        false,
    );
    if let Some(m) = missing.first() {
        return Err(Failure::Error(m.clone()));
    }
    let service = &kept[0];
    let remote = remote::Remote::new(engine, config_dir);
    let p = service_provenance(engine, &remote, &snap, service, false).await;
    if let Some(e) = p.error {
        return Err(Failure::Error(format!("service {}: {e}", p.name)));
    }
    let kind = match args.kind {
        K::Commit => crate::render::badge::Kind::Commit,
        K::Version => crate::render::badge::Kind::Version,
        K::License => crate::render::badge::Kind::License,
        K::Source => crate::render::badge::Kind::Source,
    };
    let value = badge_value(&p.provenance, args.kind).map_err(|e| {
        Failure::Error(format!(
            "service {}: cannot make a {} badge: {e}.\nSet it when building the image, for example `docker build --label {}=...`.",
            p.name,
            kind.label(),
            badge_key(args.kind)
        ))
    })?;
    let svg = crate::render::badge::render(kind.label(), &value, kind.color());
    match output {
        None => crate::edge::exit::print_stdout_async(svg + "\n").await,
        Some(path) => {
            crate::edge::fsutil::write_replacing(path, format!("{svg}\n").as_bytes()).map_err(
                |e| Failure::Error(format!("cannot write the badge to {}: {e}", path.display())),
            )?;
            Ok(Exit::Ok)
        }
    }
}

/// The OCI label key that supplies a badge of `kind`.
pub fn badge_key(kind: crate::cli::BadgeKind) -> &'static str {
    use crate::cli::BadgeKind as K;
    match kind {
        K::Commit => "org.opencontainers.image.revision",
        K::Version => "org.opencontainers.image.version",
        K::License => "org.opencontainers.image.licenses",
        K::Source => "org.opencontainers.image.source",
    }
}

/// The value a badge of `kind` shows, from the record: the revision (7 characters of
/// a commit id), the version, the licenses, or the source as `host/path`.
/// Errors: the field is not set; the message names the label keys to set.
pub fn badge_value(record: &Record, kind: crate::cli::BadgeKind) -> Result<String, String> {
    use crate::cli::BadgeKind as K;
    let (field, keys) = match kind {
        K::Commit => (
            &record.revision,
            "org.opencontainers.image.revision (or org.label-schema.vcs-ref)",
        ),
        K::Version => (
            &record.version,
            "org.opencontainers.image.version (or org.label-schema.version)",
        ),
        K::License => (&record.licenses, "org.opencontainers.image.licenses"),
        K::Source => (
            &record.source,
            "org.opencontainers.image.source (or org.label-schema.vcs-url)",
        ),
    };
    let field = field
        .as_ref()
        .ok_or_else(|| format!("the image has no {keys} label"))?;
    Ok(match kind {
        K::Commit => {
            let v = &field.value;
            if v.len() > 7 && v.bytes().all(|c| c.is_ascii_hexdigit()) {
                v[..7].to_string()
            } else {
                v.clone()
            }
        }
        K::Source => links::Repository::parse(&field.value)
            .map(|r| r.short())
            .unwrap_or_else(|| field.value.clone()),
        _ => field.value.clone(),
    })
}
