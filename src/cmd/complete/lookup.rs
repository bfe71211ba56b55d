//! The impure side of completion: which engine to ask, and the swarm's service names.

use std::ffi::OsString;
use std::time::Duration;

use clap::FromArgMatches;

/// How long TAB may wait for the engine's service list. An engine that is slower,
/// unreachable or not a swarm manager gives no candidates.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// What the docker CLI that runs this completion was asked for, read from its
/// command line (`/proc/PPID/cmdline`, Linux).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerCliRequest {
    /// The global flag words given before `microscale` (`-H URL`, `--context NAME`, ...).
    pub globals: Vec<String>,
    /// `false` when the shell asked the docker CLI for `__completeNoDesc`.
    pub descriptions: bool,
}

/// The global flags (`-H`, `--context`, `--config`, `--tls*`) the user gave the docker
/// CLI before `microscale`, and whether descriptions were asked for.
///
/// The docker CLI asks a plugin for completions as `docker-microscale __complete
/// microscale ARGS... WORD` and drops its own global flags on the way (docker/cli
/// `cli-plugins/manager/cobra.go`; also `__completeNoDesc` becomes `__complete`), so
/// `docker --context prod microscale status <TAB>` would otherwise list the services
/// of the default engine. `None` unless this process
/// was started by the docker CLI (`DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND` is set) and
/// its parent's command line is a `__complete` request for this plugin.
pub fn docker_cli_request() -> Option<DockerCliRequest> {
    std::env::var_os("DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND")?;
    let ppid = std::os::unix::process::parent_id();
    let raw = std::fs::read(format!("/proc/{ppid}/cmdline")).ok()?;
    let argv: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    request_in_docker_argv(&argv)
}

/// The request in a docker CLI command line (`argv[0]` included) that asks this
/// plugin for completions: `docker [GLOBALS] __complete[NoDesc] [GLOBALS] microscale
/// ...`. `None` for any other command line.
pub fn request_in_docker_argv(argv: &[String]) -> Option<DockerCliRequest> {
    let mut words: Vec<String> = argv.get(1..)?.to_vec();
    let request = words
        .iter()
        .position(|w| w == super::REQUEST || w == super::REQUEST_NO_DESC)?;
    let descriptions = words.remove(request) == super::REQUEST;
    let n = crate::edge::argv::global_flags_len(&words);
    (words.get(n).map(String::as_str) == Some(crate::edge::argv::PLUGIN_NAME)).then(|| {
        DockerCliRequest {
            globals: words[..n].to_vec(),
            descriptions,
        }
    })
}

/// The docker CLI's global options given by `words` (`-H URL`, `--context NAME`, ...);
/// words that do not parse give the defaults (environment and config decide).
pub fn global_options(words: &[String]) -> crate::engine::connect::GlobalOptions {
    let argv = std::iter::once(OsString::from("docker microscale"))
        .chain(words.iter().map(OsString::from))
        .chain(std::iter::once(OsString::from("version")));
    crate::cli::command()
        .try_get_matches_from(argv)
        .ok()
        .and_then(|m| crate::engine::connect::GlobalOptions::from_arg_matches(&m).ok())
        .unwrap_or_default()
}

/// The names of the swarm's services, sorted, from the engine the global flag words
/// `globals` select (else `DOCKER_HOST`, `DOCKER_CONTEXT`, the current context), as
/// `docker microscale status` would pick it. `None` when the engine cannot be resolved
/// or reached, refuses, or does not answer within `timeout`; nothing is printed.
pub fn service_names(globals: &[String], timeout: Duration) -> Option<Vec<String>> {
    let options = global_options(globals);
    let env = crate::engine::connect::EnvVars::from_process().ok()?;
    let endpoint = crate::engine::connect::resolve(&options, &env, &mut vec![]).ok()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let names = runtime.block_on(async move {
        let engine = crate::engine::Engine::connect(endpoint).ok()?;
        let list = tokio::time::timeout(
            timeout,
            engine
                .docker
                .list_services(None::<bollard::query_parameters::ListServicesOptions>),
        )
        .await
        .ok()?
        .ok()?;
        let mut names: Vec<String> = list.into_iter().filter_map(|s| s.spec?.name).collect();
        names.sort();
        Some(names)
    });
    // Do not wait for an ssh connection still being torn down.
    runtime.shutdown_background();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn global_flags_are_read_from_the_docker_cli_command_line() {
        let req = |globals: &str, descriptions| {
            Some(DockerCliRequest {
                globals: w(globals),
                descriptions,
            })
        };
        let parse = |line: &str| request_in_docker_argv(&w(line));
        assert_eq!(
            parse("docker __complete microscale status w"),
            req("", true)
        );
        assert_eq!(
            parse("docker __complete --context prod microscale status w"),
            req("--context prod", true)
        );
        assert_eq!(
            parse("/usr/bin/docker -H unix:///x.sock __completeNoDesc -D microscale scale w"),
            req("-H unix:///x.sock -D", false)
        );
        // Not a completion, or for another plugin.
        assert_eq!(parse("docker microscale status"), None);
        assert_eq!(parse("docker __complete compose ps"), None);
        assert_eq!(request_in_docker_argv(&[]), None);
    }

    #[test]
    fn global_option_words_parse_like_the_command_line() {
        let o = global_options(&w("-H unix:///x.sock -D"));
        assert_eq!(o.host, ["unix:///x.sock"]);
        assert_eq!(o.debug, Some(true));
        let o = global_options(&w("--context=prod"));
        assert_eq!(o.context.as_deref(), Some("prod"));
        let o = global_options(&w("--bogus"));
        assert!(o.host.is_empty() && o.context.is_none());
    }

    #[test]
    fn an_unreachable_engine_gives_no_names_quickly() {
        let start = std::time::Instant::now();
        let names = service_names(
            &w("-H unix:///nonexistent/microscale-test.sock"),
            Duration::from_secs(2),
        );
        assert_eq!(names, None);
        assert!(start.elapsed() < Duration::from_secs(3));
    }
}
