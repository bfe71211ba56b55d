//! `docker-microscale`: a Docker CLI plugin for Swarm status, provenance and
//! rule-based scaling.
//!
//! `main` answers `docker-cli-plugin-metadata` before anything else (no runtime, no
//! engine: the docker CLI calls it before every plugin run), then parses argv and runs
//! one command on a single-threaded tokio runtime.

mod agent;
mod cli;
mod cmd;
mod decide;
mod edge;
mod engine;
mod execute;
mod metrics;
mod plan;
mod provenance;
mod registry;
mod render;
mod replay;
mod rules;
mod store;
mod swarm;
#[cfg(test)]
mod testutil;

use std::ffi::OsString;
use std::io::Write;

use clap::FromArgMatches;

use crate::cli::{Cli, Command};
use crate::cmd::{complete, man, scale, status};
use crate::edge::exit::{Exit, Failure};
use crate::edge::{argv, exit};

/// The plugin metadata, from `plugin-metadata/metadata.json` (the single source).
const METADATA: &str = include_str!("../plugin-metadata/metadata.json");

fn main() {
    let mut args = std::env::args_os();
    args.next();
    let args: Vec<OsString> = args.collect();
    if args
        .first()
        .is_some_and(|a| a == "docker-cli-plugin-metadata")
    {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(METADATA.as_bytes());
        let _ = out.flush();
        return;
    }
    exit::install_panic_hook();
    // Shell completion (cobra's protocol, as the docker CLI asks plugins): before
    // clap, since the words being completed are usually not a valid command line.
    if let Some(first) = args.first()
        && (first == complete::REQUEST || first == complete::REQUEST_NO_DESC)
    {
        let with_descriptions = first == complete::REQUEST;
        let words: Vec<String> = args[1..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let _ = exit::print_stdout(&complete::answer(&words, with_descriptions));
        return;
    }
    let code = run(args);
    std::process::exit(code as i32);
}

fn run(args: Vec<OsString>) -> Exit {
    exit::set_command_tree(exit::CommandTree {
        root: cli::command,
        help_text: cli::help_text,
        version_line: cli::version_line,
    });
    let args = argv::normalize(args);
    let matches = cli::command().try_get_matches_from(
        std::iter::once(OsString::from("docker microscale")).chain(args.iter().cloned()),
    );
    let cli = match matches.and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(cli) => cli,
        Err(err) => return exit::clap_error(err, &args),
    };
    let result = match cli.command {
        Command::Version => exit::print_stdout(&cli::version_line()),
        Command::Completion(args) => exit::print_stdout(complete::scripts::script(args.shell)),
        Command::Man(args) => man::write_pages(&args.dir, if args.section == "7" { 7 } else { 1 })
            .map_err(Failure::Error)
            .and_then(|paths| {
                let list: String = paths.iter().map(|p| format!("{}\n", p.display())).collect();
                exit::print_stdout(&list)
            }),
        Command::Status(args) => with_runtime(&cli.global, |engine| async move {
            status::run(&engine, &args).await
        }),
        Command::Badge(args) => {
            let config_dir = engine::connect::EnvVars::from_process()
                .ok()
                .and_then(|env| engine::connect::config_dir(&cli.global, &env).ok());
            with_runtime(&cli.global, |engine| async move {
                cmd::badge::run_badge(&engine, &args, config_dir).await
            })
        }
        Command::Rules {
            command: cli::RulesCommand::Check(args),
        } => with_runtime(&cli.global, |engine| async move {
            cmd::rules::run(&engine, &args).await
        }),
        Command::Rules {
            command: cli::RulesCommand::History(args),
        } => with_runtime(&cli.global, |engine| async move {
            cmd::rules::history::run(&engine, &args).await
        }),
        Command::Metric(args) => with_runtime(&cli.global, |engine| async move {
            cmd::metric::run(&engine, &args).await
        }),
        Command::Scale(args) => with_runtime_owning_cancel(&cli.global, |engine| async move {
            scale::run(&engine, &args).await
        }),
        Command::Run(args) => {
            let level = cli
                .global
                .log_level
                .clone()
                .or_else(|| (cli.global.debug == Some(true)).then(|| "debug".to_string()));
            with_runtime_owning_cancel(&cli.global, |engine| async move {
                cmd::run::run(&engine, &args, level.as_deref()).await
            })
        }
        Command::Apply(args) => with_runtime_owning_cancel(&cli.global, |engine| async move {
            cmd::apply::run(&engine, &args).await
        }),
        Command::Lease(args) => with_runtime_owning_cancel(&cli.global, |engine| async move {
            store::lease::run(&engine, &args).await
        }),
        Command::HistoryBench(args) => with_runtime(&cli.global, |engine| async move {
            cmd::internal::history_bench(&engine, &args).await
        }),
        Command::Healthz(args) => cmd::internal::healthcheck(&args),
        Command::StatsRead(args) => with_runtime(&cli.global, |engine| async move {
            cmd::internal::stats_read(&engine, &args).await
        }),
        Command::Replay(args) if cmd::replay::needs_swarm(&args) => {
            with_runtime(&cli.global, |engine| async move {
                cmd::replay::run(Some(&engine), &args).await
            })
        }
        Command::Replay(args) => cmd::replay::run_offline(&args),
        Command::Plan(args) => with_runtime(&cli.global, |engine| async move {
            cmd::plan::run(&engine, &args).await
        }),
        Command::Provenance(args) => {
            // Registry credentials come from the same config directory as contexts.
            let config_dir = engine::connect::EnvVars::from_process()
                .ok()
                .and_then(|env| engine::connect::config_dir(&cli.global, &env).ok());
            with_runtime(&cli.global, |engine| async move {
                cmd::provenance::run(&engine, &args, config_dir).await
            })
        }
    };
    match result {
        Ok(code) => code,
        Err(Failure::Usage(msg)) => exit::usage_error(&msg, &args),
        Err(Failure::Error(msg)) => {
            exit::say(&msg);
            Exit::Error
        }
        Err(Failure::Interrupted) => Exit::Interrupted,
    }
}

/// Resolves the engine, starts a single-threaded runtime and runs `body`, stopping
/// early with [`Exit::Interrupted`] on Ctrl-C or when the docker CLI closes
/// `DOCKER_CLI_PLUGIN_SOCKET` (its way of cancelling a plugin whose output is not a
/// terminal).
fn with_runtime<F, Fut>(global: &cli::GlobalOptions, body: F) -> Result<Exit, Failure>
where
    F: FnOnce(engine::Engine) -> Fut,
    Fut: std::future::Future<Output = Result<Exit, Failure>>,
{
    runtime_for(global, body, true)
}

/// Like [`with_runtime`], for commands that handle Ctrl-C and the docker CLI's
/// cancel themselves ([`exit::cancellation`]), to say what stands before exiting
/// with [`Exit::Interrupted`] (`scale`, `apply`).
fn with_runtime_owning_cancel<F, Fut>(global: &cli::GlobalOptions, body: F) -> Result<Exit, Failure>
where
    F: FnOnce(engine::Engine) -> Fut,
    Fut: std::future::Future<Output = Result<Exit, Failure>>,
{
    runtime_for(global, body, false)
}

fn runtime_for<F, Fut>(
    global: &cli::GlobalOptions,
    body: F,
    cancel_here: bool,
) -> Result<Exit, Failure>
where
    F: FnOnce(engine::Engine) -> Fut,
    Fut: std::future::Future<Output = Result<Exit, Failure>>,
{
    let env = engine::connect::EnvVars::from_process().map_err(Failure::Error)?;
    engine::check_timeout_setting().map_err(Failure::Error)?;
    let mut warnings = vec![];
    let endpoint = engine::connect::resolve(global, &env, &mut warnings)
        .map_err(|e| Failure::Error(e.to_string()))?;
    // Through the docker CLI, a broken config.json was already reported by docker.
    if std::env::var_os("DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND").is_none() {
        for w in warnings {
            exit::say(&w);
        }
    }
    let level = global.log_level.as_deref().map(str::to_ascii_lowercase);
    if global.debug == Some(true) || matches!(level.as_deref(), Some("debug" | "trace")) {
        // say() masks secrets in the address.
        exit::say(&format!(
            "DEBU engine {} ({}), TLS {}",
            endpoint.host,
            endpoint.source,
            if endpoint.tls.is_some() { "on" } else { "off" }
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Error(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(async move {
        let engine =
            engine::Engine::connect(endpoint).map_err(|e| Failure::Error(e.to_string()))?;
        if !cancel_here {
            return body(engine).await;
        }
        let cancelled = exit::cancellation();
        tokio::select! {
            r = body(engine) => r,
            _ = cancelled => Err(Failure::Interrupted),
        }
    });
    // Do not wait for a write still blocked on a full pipe after a cancel.
    runtime.shutdown_background();
    result
}
