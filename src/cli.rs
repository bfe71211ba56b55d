//! Command-line definitions (clap types only).
//!
//! The plugin is invoked as `docker-microscale [GLOBAL FLAGS] [microscale] COMMAND ...`:
//! the docker CLI passes its own global flags (`-H`, `--context`, `--config`, `--tls*`,
//! `-l`, `-D`) in argv before the plugin name. [`crate::edge::argv::normalize`] removes the
//! plugin name; the flags below then parse as root-level options.

use std::path::PathBuf;

use clap::{Arg, ArgAction, Args, CommandFactory, Parser, Subcommand};

pub use crate::agent::RunArgs;
use crate::edge::argv::{any_path, go_bool};
pub use crate::engine::connect::GlobalOptions;
pub use crate::metrics::access::MetricAccess;
pub use crate::plan::{DecideOptions, PlanArgs};
pub use crate::store::lease::LeaseArgs;

/// Help layout modelled on the docker CLI's cobra usage template ([`command`] adds
/// the root's Options).
const ROOT_TEMPLATE: &str = "\
Usage:  {usage}

{about}

Commands:
{subcommands}

Run 'docker microscale COMMAND --help' for more information on a command.
Reference: 'man docker-microscale' (and the docker-microscale-*(7) pages it lists:
rules, metrics, agent, format, exit-codes, environment...), or the Markdown docs at
https://github.com/docker-microscale/docker-microscale/tree/main/docs
";

/// What `docker microscale version`, `--version` and `-v` print:
/// `docker-microscale 0.1.0 (commit 0123456789ab)` and a newline (no commit when the
/// build had no git checkout).
pub fn version_line() -> String {
    format!(
        "docker-microscale {}{}\n",
        env!("CARGO_PKG_VERSION"),
        match env!("MICROSCALE_GIT_COMMIT") {
            "" => String::new(),
            c => format!(" (commit {c})"),
        }
    )
}

/// The clap command with Docker's help conventions: no `help` subcommand (argv
/// normalisation turns `help COMMAND` into `COMMAND --help`), `-h/--help`
/// accepted everywhere but not listed, and options laid out as docker lays them out.
pub fn command() -> clap::Command {
    let help = Arg::new("help")
        .short('h')
        .long("help")
        .action(ArgAction::Help)
        .hide(true)
        .global(true);
    // `docker --version` has `-v, --version`; on the root only, as in docker (the
    // `version` command says the same).
    let version = Arg::new("version")
        .short('v')
        .long("version")
        .action(ArgAction::Version)
        .help("Print version information and quit");
    let mut cmd = Cli::command()
        .disable_help_flag(true)
        .arg(help)
        .version(env!("CARGO_PKG_VERSION"))
        .arg(version);
    let options = docker_options(&cmd);
    cmd = cmd.help_template(format!(
        "Usage:  {{usage}}\n\n{{about}}\n\nOptions:\n{options}\n\nCommands:\n{{subcommands}}\n\nRun 'docker microscale COMMAND --help' for more information on a command.\n"
    ));
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in names {
        let aliases = match name.as_str() {
            "status" => {
                Some("docker microscale status, docker microscale ls, docker microscale list")
            }
            "provenance" => Some("docker microscale provenance, docker microscale labels"),
            _ => None,
        };
        if name == "rules" {
            cmd = cmd.mut_subcommand(name, |rules| {
                let rules = rules
                    .disable_help_subcommand(true)
                    .subcommand_help_heading("Commands")
                    .help_template(
                        "Usage:  {usage}\n\n{about}\n\nCommands:\n{subcommands}\n\nRun 'docker microscale rules COMMAND --help' for more information on a command.\n",
                    );
                rules
                    .mut_subcommand("check", |check| {
                        docker_template(check, None, "rules check")
                    })
                    .mut_subcommand("history", |history| {
                        docker_template(history, None, "rules history")
                    })
            });
            continue;
        }
        let path = name.clone();
        cmd = cmd.mut_subcommand(name, |sub| docker_template(sub, aliases, &path));
    }
    cmd
}

/// The Examples section of a command's help (also the EXAMPLES of its man page), by
/// its path below `docker microscale`, e.g. `status` or `rules check`; empty for a
/// command without examples (the `rules` group, unknown paths).
pub fn examples(path: &str) -> &'static str {
    match path {
        "status" => STATUS_EXAMPLES,
        "provenance" => PROVENANCE_EXAMPLES,
        "badge" => BADGE_EXAMPLES,
        "plan" => PLAN_EXAMPLES,
        "scale" => SCALE_EXAMPLES,
        "apply" => APPLY_EXAMPLES,
        "replay" => REPLAY_EXAMPLES,
        "run" => RUN_EXAMPLES,
        "metric" => METRIC_EXAMPLES,
        "rules check" => RULES_CHECK_EXAMPLES,
        "rules history" => RULES_HISTORY_EXAMPLES,
        "version" => VERSION_EXAMPLES,
        "completion" => COMPLETION_EXAMPLES,
        "__man" => MAN_EXAMPLES,
        "__lease" => LEASE_EXAMPLES,
        "__history-bench" => HISTORY_BENCH_EXAMPLES,
        "__healthz" => HEALTHZ_EXAMPLES,
        "__stats-read" => STATS_READ_EXAMPLES,
        _ => "",
    }
}

/// docker/cli's usage template for one command (`path` below `docker microscale`:
/// `status`, `rules check`): Usage, description, Aliases, Examples, Options, then
/// where its man pages are; a flag given twice keeps its last value, as in the
/// docker CLI.
fn docker_template(sub: clap::Command, aliases: Option<&str>, path: &str) -> clap::Command {
    let examples = examples(path);
    let mut template = String::from("Usage:  {usage}\n\n{about}\n");
    if let Some(aliases) = aliases {
        template.push_str(&format!("\nAliases:\n  {aliases}\n"));
    }
    // clap's template drops a `{` that follows another (`{{.Name}}` became
    // `{.Name}}`): the examples' braces go in as HELP_BRACE, and help_text puts
    // them back.
    template.push_str(&format!(
        "\nExamples:\n{}\n",
        examples.replace('{', &HELP_BRACE.to_string())
    ));
    let options = docker_options(&sub);
    if !options.is_empty() {
        template.push_str(&format!("\nOptions:\n{options}\n"));
    }
    // Hidden commands (`__man`, ...) have no page.
    if !sub.is_hide_set() {
        let page = format!("docker-microscale-{}", path.replace(' ', "-"));
        template.push_str(&format!("\nManual: 'man {page}'"));
        if let Some(topic) = reference_topics(path)
            .first()
            .filter(|t| **t != "exit-codes")
        {
            template.push_str(&format!("; reference: 'man 7 docker-microscale-{topic}'"));
        }
        template.push('\n');
    }
    // A flag given twice: the last value wins, as with the docker CLI's flags.
    sub.help_template(template).args_override_self(true)
}

/// The reference pages (section 7, `docker-microscale-TOPIC(7)`) a command's help and
/// man page point at, by its path below `docker microscale` (`status`, `rules check`),
/// the most specific first, then `exit-codes` and `environment`. (The plugin's own
/// page lists every one: `crate::cmd::man_md::REFERENCE`.)
pub fn reference_topics(path: &str) -> Vec<&'static str> {
    let some: &[&str] = match path {
        "status" => &["format", "status-json", "rules"],
        "provenance" | "badge" => &["provenance-json", "format"],
        "plan" | "apply" => &["rules", "metrics", "scale", "format"],
        "scale" => &["scale", "format"],
        "replay" => &["replay", "rules", "metrics"],
        "run" => &["agent", "rules", "metrics"],
        "metric" => &["metrics", "format"],
        "rules" | "rules check" => &["rules", "metrics", "format"],
        "rules history" => &["agent", "rules"],
        _ => &[],
    };
    let mut v = some.to_vec();
    v.extend(["exit-codes", "environment"]);
    v
}

/// Stands for `{` in help templates (a private-use character no help text has).
const HELP_BRACE: char = '\u{E000}';

/// Help as clap rendered it, with the examples' braces back (see `docker_template`).
pub fn help_text(rendered: &str) -> String {
    rendered.replace(HELP_BRACE, "{")
}

/// The options of `cmd` laid out as the docker CLI's help lists them:
/// `  -f, --filter filter   Help` (value names without brackets, three spaces before
/// the help). Hidden options and positionals are left out.
fn docker_options(cmd: &clap::Command) -> String {
    let rows: Vec<(String, String)> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_positional())
        .map(|a| {
            let short = a
                .get_short()
                .map_or("    ".to_string(), |c| format!("-{c}, "));
            let long = a.get_long().map(|l| format!("--{l}")).unwrap_or_default();
            let takes_value = a.get_action().takes_values();
            let value = match (takes_value, a.get_value_names()) {
                (true, Some(names)) => format!(" {}", names[0]),
                _ => String::new(),
            };
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            (format!("  {short}{long}{value}"), help)
        })
        .collect();
    let width = rows.iter().map(|(f, _)| f.len()).max().unwrap_or(0) + 3;
    rows.iter()
        .map(|(f, h)| format!("{f:width$}{h}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The whole command line of the plugin.
#[derive(Debug, Parser)]
#[command(
    name = "docker microscale",
    bin_name = "docker microscale",
    about = "Swarm status, provenance and rule-based scaling",
    override_usage = "docker microscale COMMAND",
    help_template = ROOT_TEMPLATE,
    subcommand_help_heading = "Commands",
    disable_help_subcommand = true,
    disable_version_flag = true,
    propagate_version = false,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,

    #[command(subcommand)]
    pub command: Command,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

    /// Every command that runs something (leaf commands, hidden ones included) shows
    /// an Examples section in its `--help`: command lines, at least one of them using
    /// the command itself.
    #[test]
    fn go_templates_in_examples_keep_their_braces() {
        let mut cmd = command();
        let status = cmd.find_subcommand_mut("status").unwrap();
        let help = help_text(&status.render_help().to_string());
        assert!(
            help.contains("--format 'table {{.Name}}\\t{{.Replicas}}\\t{{.RuleDesired}}'"),
            "{help}"
        );
    }

    #[test]
    fn every_command_help_has_examples() {
        fn leaves(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
            if cmd.has_subcommands() {
                for sub in cmd.get_subcommands() {
                    let p = format!("{path} {}", sub.get_name()).trim().to_string();
                    leaves(sub, p, out);
                }
            } else {
                out.push((path, cmd.clone()));
            }
        }
        let mut root = command();
        root.build();
        let mut all = vec![];
        leaves(&root, String::new(), &mut all);
        let names: Vec<&str> = all.iter().map(|(p, _)| p.as_str()).collect();
        for want in [
            "status",
            "provenance",
            "badge",
            "plan",
            "scale",
            "apply",
            "metric",
            "rules check",
            "version",
            "completion",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        for (path, mut cmd) in all {
            let help = help_text(&cmd.render_help().to_string());
            let section = help
                .split_once("\nExamples:\n")
                .unwrap_or_else(|| panic!("no Examples section in `{path} --help`:\n{help}"))
                .1;
            let examples: Vec<&str> = section
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .collect();
            assert!(!examples.is_empty(), "empty Examples in `{path} --help`");
            for line in &examples {
                assert!(
                    line.starts_with("  ")
                        && line.contains("docker")
                        && line.contains("microscale"),
                    "`{path} --help` example {line:?} is not a command line"
                );
            }
            assert!(
                examples.iter().any(|l| l.contains(path.as_str())),
                "no example of `{path}` in its help: {examples:?}"
            );
        }
    }

    /// The words after `docker` (or `docker-microscale`) in an example line, up to
    /// the first shell operator: what the plugin receives.
    fn example_argv(line: &str) -> Vec<String> {
        let start = ["docker-microscale ", "docker "]
            .iter()
            .filter_map(|p| line.find(p).map(|i| i + p.len()))
            .min()
            .unwrap_or_else(|| panic!("{line:?} does not run docker"));
        let words = shlex::split(&line[start..]).unwrap_or_else(|| panic!("{line:?}"));
        let mut argv = vec![];
        for w in words {
            if matches!(w.as_str(), "|" | ">" | "&&" | "||") {
                break;
            }
            if let Some(w) = w.strip_suffix(';').or_else(|| w.strip_suffix(')')) {
                argv.push(w.to_string());
                break;
            }
            argv.push(w);
        }
        argv
    }

    /// Every example of every command, hidden ones and those the integration test
    /// cannot run included, is a command line that parses: no unknown flag, no bad
    /// value, no missing argument (tests/integration/cli.rs runs them).
    #[test]
    fn every_example_parses() {
        fn paths(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                let p = format!("{prefix} {}", sub.get_name()).trim().to_string();
                out.push(p.clone());
                paths(sub, &p, out);
            }
        }
        let mut all = vec![];
        paths(&command(), "", &mut all);
        let mut checked = 0;
        for path in all {
            for line in examples(&path).lines() {
                let argv = crate::edge::argv::normalize(
                    example_argv(line).into_iter().map(Into::into).collect(),
                );
                let parsed = command()
                    .try_get_matches_from(
                        std::iter::once(std::ffi::OsString::from("docker microscale"))
                            .chain(argv.iter().cloned()),
                    )
                    .and_then(|m| Cli::from_arg_matches(&m));
                if let Err(e) = parsed {
                    panic!("`{path}` example {line:?} does not parse: {e}");
                }
                checked += 1;
            }
        }
        assert!(checked >= 50, "{checked}");
        assert_eq!(
            example_argv("docker microscale plan --detailed-exitcode; [ $? -eq 2 ]"),
            ["microscale", "plan", "--detailed-exitcode"]
        );
        assert_eq!(
            example_argv("source <(docker-microscale completion bash)"),
            ["completion", "bash"]
        );
    }

    #[test]
    fn version_flags_on_the_root_only() {
        for flag in ["--version", "-v"] {
            let e = command()
                .try_get_matches_from(["docker microscale", flag])
                .unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion, "{flag}");
        }
        let e = command()
            .try_get_matches_from(["docker microscale", "status", "--version"])
            .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        assert!(
            version_line().starts_with(&format!("docker-microscale {}", env!("CARGO_PKG_VERSION")))
        );
        assert!(version_line().ends_with('\n'));
    }

    #[test]
    fn status_help_lists_options_like_docker() {
        let mut cmd = command();
        cmd.build();
        let status = cmd.find_subcommand_mut("status").unwrap();
        let help = help_text(&status.render_help().to_string());
        // docker's layout: `  -f, --filter filter`, at least 3 spaces, the help, and
        // every help text starting in the same column
        let line = |opt: &str| {
            help.lines()
                .find(|l| l.starts_with(opt))
                .unwrap_or_else(|| panic!("no {opt:?} in {help}"))
                .to_string()
        };
        let filter = line("  -f, --filter filter   ");
        let no_trunc = line("      --no-trunc   ");
        let col = |l: &str, text: &str| l.find(text).unwrap();
        assert!(
            filter.ends_with(
                "Filter output based on conditions provided (name=, label=, mode=, id=)"
            ),
            "{filter}"
        );
        assert_eq!(
            col(&filter, "Filter output"),
            col(&no_trunc, "Don't truncate output"),
            "{help}"
        );
        assert!(!help.contains('<'), "{help}");
        assert!(!help.contains("%OPTIONS%"), "{help}");
    }
}

/// Plugin subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every service of the swarm: mode, replicas, image and digest, update, source, rule, metric, desired replicas, nodes
    #[command(
        aliases = ["ls", "list"],
        override_usage = "docker microscale status [OPTIONS] [SERVICE...]"
    )]
    Status(StatusArgs),

    /// Show what runs in each service: labels by origin, OCI / Label Schema provenance, source commit, tasks on another image
    #[command(
        alias = "labels",
        override_usage = "docker microscale provenance [OPTIONS] [SERVICE...]"
    )]
    Provenance(ProvenanceArgs),

    /// Write a MicroBadger-style SVG badge of a service's commit, version, license or source
    #[command(override_usage = "docker microscale badge [OPTIONS] SERVICE")]
    Badge(BadgeArgs),

    /// Show what each rule-managed service should run, and why, before anything changes
    #[command(override_usage = "docker microscale plan [OPTIONS] [SERVICE...]")]
    Plan(PlanArgs),

    /// Set the replica count of one or more services (N, +N or -N), changing nothing else in their specs
    #[command(
        override_usage = "docker microscale scale [OPTIONS] SERVICE=REPLICAS [SERVICE=REPLICAS...]"
    )]
    Scale(ScaleArgs),

    /// Carry out what `plan` shows, once: scale each rule-managed service to its desired replicas
    #[command(override_usage = "docker microscale apply [OPTIONS] [SERVICE...]")]
    Apply(ApplyArgs),

    /// Keep every rule-managed service at its target: the autoscaling agent (runs until stopped)
    #[command(override_usage = "docker microscale run [OPTIONS] [SERVICE...]")]
    Run(RunArgs),

    /// Replay a metric series through a rule: what it would have scaled, when and why, and what it cost
    #[command(override_usage = "docker microscale replay [OPTIONS] [SERVICE]")]
    Replay(ReplayArgs),

    /// Read one metric source once and print its value, to debug a rule
    #[command(override_usage = "docker microscale metric [OPTIONS] SOURCE")]
    Metric(MetricArgs),

    /// Check the scaling rules declared in service labels (or a rules file)
    #[command(
        override_usage = "docker microscale rules COMMAND",
        arg_required_else_help = true
    )]
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },

    /// Show the plugin version
    #[command(override_usage = "docker microscale version")]
    Version,

    /// Print a shell completion script for running docker-microscale directly (bash, zsh or fish)
    #[command(
        hide = true,
        override_usage = "docker microscale completion bash|zsh|fish"
    )]
    Completion(CompletionArgs),

    /// Write the man pages, generated from these definitions, into a directory
    #[command(
        name = "__man",
        hide = true,
        override_usage = "docker-microscale __man [--section 1|7] DIR"
    )]
    Man(ManArgs),

    /// Hold the agent's leader lease (a Swarm config) alone and print one JSON line per change, to test and debug high availability
    #[command(
        name = "__lease",
        hide = true,
        override_usage = "docker-microscale __lease [OPTIONS]"
    )]
    Lease(LeaseArgs),

    /// Write a synthetic decision history of N services to a Swarm config and time it, for scripts/bench
    #[command(
        name = "__history-bench",
        hide = true,
        override_usage = "docker-microscale __history-bench [OPTIONS]"
    )]
    HistoryBench(HistoryBenchArgs),

    /// Read every agent's task stats as the lease holder does, N times, and print how long each read took, for scripts/bench and the multinode tests
    #[command(
        name = "__stats-read",
        hide = true,
        override_usage = "docker-microscale __stats-read --peers HOST:PORT --token-file PATH [OPTIONS]"
    )]
    StatsRead(StatsReadArgs),

    /// Ask a running agent's /healthz and exit 0 when it answers 200: the health check of the FROM-scratch agent image, which has no shell or HTTP client
    #[command(
        name = "__healthz",
        hide = true,
        override_usage = "docker-microscale __healthz [OPTIONS] [ADDR]"
    )]
    Healthz(HealthzArgs),
}

const STATS_READ_EXAMPLES: &str = "  docker-microscale __stats-read --peers tasks.agent:9091 --token-file /run/secrets/microscale-stats-token --runs 5";

/// Options of the hidden `__stats-read` command.
#[derive(Debug, Clone, Args)]
pub struct StatsReadArgs {
    /// The agents to read, as --stats-peers of run
    #[arg(long = "peers", value_name = "host:port", required = true)]
    pub peers: Vec<String>,

    /// The agents' token file, as --stats-token-file of run
    #[arg(long = "token-file", value_name = "path", value_parser = any_path, required = true)]
    pub token_file: PathBuf,

    /// How many reads, one after the other
    #[arg(long = "runs", value_name = "int", default_value_t = 5, value_parser = crate::edge::argv::count::<u32>)]
    pub runs: u32,
}

const HEALTHZ_EXAMPLES: &str = "  docker-microscale __healthz
  docker-microscale __healthz --timeout 3s unix:///run/microscale/health.sock
  docker-microscale __healthz 127.0.0.1:9090 --timeout 3s";

/// Options of the hidden `__healthz` command.
#[derive(Debug, Clone, Args)]
pub struct HealthzArgs {
    /// Where to ask: the agent's health socket (default /run/microscale/health.sock, or $XDG_RUNTIME_DIR/microscale/health.sock), another one as unix:///PATH, or its --listen address such as :9090 (an all-interfaces address is asked on loopback)
    #[arg(value_name = "ADDR")]
    pub addr: Option<String>,

    /// How long to wait for the answer (default 5s)
    #[arg(long = "timeout", value_name = "duration")]
    pub timeout: Option<String>,
}

const LEASE_EXAMPLES: &str = "  docker-microscale __lease
  docker-microscale __lease --name microscale-agent-lease --ttl 15s
  docker-microscale __lease --ttl 2s --holder test-a --for 10s
  docker microscale __lease --for 1m | jq -c '{Time, Event, Leader}'";

/// Options of the hidden `__history-bench` command.
#[derive(Debug, Clone, Args)]
pub struct HistoryBenchArgs {
    /// How many services the history holds
    #[arg(long = "services", value_name = "int", default_value_t = 1000, value_parser = crate::edge::argv::count::<usize>)]
    pub services: usize,

    /// The Swarm config written (removed at the end)
    #[arg(
        long = "name",
        value_name = "string",
        default_value = "microscale-history-bench"
    )]
    pub name: String,
}

const HISTORY_BENCH_EXAMPLES: &str = "  docker-microscale __history-bench
  docker-microscale __history-bench --services 200";

const COMPLETION_EXAMPLES: &str = "  source <(docker microscale completion bash)
  docker microscale completion zsh > \"${fpath[1]}/_docker-microscale\"
  docker microscale completion fish > ~/.config/fish/completions/docker-microscale.fish";

/// A shell `completion` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// GNU bash 4.1 or newer (uses bash-completion's helpers when loaded)
    Bash,
    /// zsh 5
    Zsh,
    /// fish 3
    Fish,
}

/// Options of `docker microscale completion`.
#[derive(Debug, Clone, Args)]
pub struct CompletionArgs {
    /// The shell to write the script for
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

const MAN_EXAMPLES: &str = "  docker-microscale __man ~/.local/share/man/man1
  docker-microscale __man --section 7 ~/.local/share/man/man7";

/// Options of the hidden `__man` command (used by install.sh).
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// The directory to write the pages into (created if missing): docker-microscale.1 and docker-microscale-COMMAND.1, or with --section 7 docker-microscale-TOPIC.7
    #[arg(value_name = "DIR", value_parser = any_path, value_hint = clap::ValueHint::DirPath)]
    pub dir: PathBuf,

    /// The section to write: 1 (the commands, default) or 7 (the reference: rules, metrics, agent, formats, exit codes, environment)
    #[arg(long = "section", value_name = "n", default_value = "1",
          value_parser = clap::builder::PossibleValuesParser::new(["1", "7"]))]
    pub section: String,
}

const RUN_EXAMPLES: &str = "  docker microscale run
  docker microscale run --interval 5s --capacity 40
  docker microscale run --dry-run --log-format json
  docker microscale run --once queue-worker
  docker microscale run --listen :9090 --metric-allow prometheus:9090
  docker microscale run --collector --stats-listen :9091 --stats-token-file /run/secrets/microscale-stats-token";

const VERSION_EXAMPLES: &str = "  docker microscale version";

const STATUS_EXAMPLES: &str = "  docker microscale status
  docker microscale status web queue-worker
  docker microscale status --filter label=microscale.enable=true
  docker microscale status --filter mode=global -q
  docker microscale status --format json | jq -r .Name
  docker microscale status --metrics --format 'table {{.Name}}\\t{{.Replicas}}\\t{{.RuleDesired}}'
  docker microscale status --format 'table {{.ID}}\\t{{.Name}}\\t{{.Mode}}\\t{{.Replicas}}\\t{{.Image}}\\t{{.Ports}}'
  docker microscale status --watch --interval 5s
  docker --context prod microscale status";

const PROVENANCE_EXAMPLES: &str = "  docker microscale provenance web
  docker microscale labels queue-worker web
  docker microscale provenance --format json web | jq -r .CommitURL
  docker microscale provenance --check
  docker microscale provenance --check --require source,revision,licenses";

const BADGE_EXAMPLES: &str = "  docker microscale badge web --kind commit -o commit.svg
  docker microscale badge web --kind version -o version.svg
  docker microscale badge web --kind license > license.svg
  docker microscale badge web -o - | gzip > commit.svg.gz";

/// What a badge shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BadgeKind {
    /// The short source revision (org.opencontainers.image.revision)
    Commit,
    /// The version (org.opencontainers.image.version)
    Version,
    /// The licenses (org.opencontainers.image.licenses)
    License,
    /// The source repository (org.opencontainers.image.source)
    Source,
}

/// Options of `docker microscale badge`.
#[derive(Debug, Clone, Args)]
pub struct BadgeArgs {
    /// The service, by name or ID
    #[arg(value_name = "SERVICE")]
    pub service: String,

    /// What the badge shows: commit (default), version, license or source
    #[arg(
        long = "kind",
        value_name = "string",
        default_value = "commit",
        hide_default_value = true
    )]
    pub kind: BadgeKind,

    /// Write to a file instead of STDOUT ("-": STDOUT)
    #[arg(short = 'o', long = "output", value_name = "string", value_parser = any_path)]
    pub output: Option<PathBuf>,
}

const PLAN_EXAMPLES: &str = "  docker microscale plan
  docker microscale plan queue-worker web
  docker microscale plan --capacity 20
  docker microscale plan --detailed-exitcode; [ $? -eq 2 ] && echo changes pending
  docker microscale plan --format json | jq -r '.Service + \" \" + (.Desired|tostring)'";

const METRIC_EXAMPLES: &str = "  docker microscale metric --metric-secret redis=queue:6379 'redis://queue:6379/0?list=jobs&secret-file=/run/secrets/redis'
  docker microscale metric 'prometheus://prometheus:9090?query=sum(rate(http_requests_total[1m]))'
  docker microscale metric --metric-allow stats.example:8080 'http://stats.example:8080/stats#/queue/depth'
  docker microscale metric --format json --timeout 2s 'nats://nats:8222/ORDERS/worker'";

const REPLAY_EXAMPLES: &str = "  docker microscale replay web --series web-rps.csv
  docker microscale replay --rules rules.toml web --series week.jsonl --interval 15s -o web.svg
  docker microscale replay --label max=20 --label 'metric=redis://queue:6379/0?list=jobs' --label target=50 --series demand.csv --summary
  docker microscale replay queue-worker --prometheus http://127.0.0.1:9090 --query 'sum(redis_queue_length)' --start now-7d --step 15s
  docker microscale replay web --series web-rps.csv --converge 45s --format json | jq -c 'select(.Action == \"scale up\")'";

/// Options of `docker microscale replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The service whose rule is replayed: its live labels, or its table in --rules (then no swarm is needed)
    #[arg(value_name = "SERVICE")]
    pub service: Option<String>,

    /// A TOML rules file (as for plan); SERVICE names its table, which may be left out when the file has one table
    #[arg(long = "rules", value_name = "file", value_parser = any_path)]
    pub rules: Option<PathBuf>,

    /// A rule label KEY=VALUE (microscale. may be left out of KEY), repeated: the whole rule, no swarm needed
    #[arg(long = "label", value_name = "key=value")]
    pub labels: Vec<String>,

    /// The metric series: CSV (time,value[,metric[,error]]) or JSON lines ({"time":…,"value":…})
    #[arg(long = "series", value_name = "file", value_parser = any_path)]
    pub series: Option<PathBuf>,

    /// Read the series from this Prometheus server (http://HOST:PORT[/PREFIX], https://… or prometheus://…) with a range query
    #[arg(long = "prometheus", value_name = "url")]
    pub prometheus: Option<String>,

    /// The PromQL query of --prometheus (it must return one series)
    #[arg(long = "query", value_name = "promql")]
    pub query: Option<String>,

    /// Start of the range query: RFC 3339, Unix seconds, or now-DURATION (e.g. now-7d)
    #[arg(long = "start", value_name = "time")]
    pub start: Option<String>,

    /// End of the range query (default now)
    #[arg(long = "end", value_name = "time")]
    pub end: Option<String>,

    /// Step of the range query (default 15s)
    #[arg(long = "step", value_name = "duration")]
    pub step: Option<String>,

    /// The rule's metric the series feeds when it names none (default: the rule's only metric)
    #[arg(long = "metric", value_name = "name")]
    pub metric: Option<String>,

    /// Replicas before the first step (default: the live service's, else the rule's min)
    #[arg(long = "replicas", value_name = "n", allow_negative_numbers = true,
          value_parser = crate::edge::argv::replica_count)]
    pub replicas: Option<u64>,

    /// How long new tasks take to start after a scale-up (default 0s: at once)
    #[arg(long = "converge", value_name = "duration")]
    pub converge: Option<String>,

    /// Decide every DURATION, each step seeing the latest value (the agent's --interval); default: once per time of the series
    #[arg(long = "interval", value_name = "duration")]
    pub interval: Option<String>,

    /// Write a chart of the metric, target, desired and running replicas, min and max to this SVG file
    #[arg(short = 'o', long = "output", value_name = "file", value_parser = any_path)]
    pub output: Option<PathBuf>,

    /// Print only the summary
    #[arg(long = "summary", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub summary: Option<bool>,

    #[command(flatten)]
    pub access: MetricAccess,

    /// Format output: 'table' (default), 'json' (one object per step, then the summary) or a Go template (man 7 docker-microscale-format)
    #[arg(long = "format", value_name = "string")]
    pub format: Option<String>,

    /// Don't truncate output
    #[arg(long = "no-trunc", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub no_trunc: Option<bool>,
}

/// Options of `docker microscale metric`.
#[derive(Debug, Clone, Args)]
pub struct MetricArgs {
    /// The metric source URI, as in a microscale.metric label (man 7 docker-microscale-metrics)
    #[arg(value_name = "SOURCE")]
    pub source: String,

    /// For engine://cpu and engine://memory: the service whose tasks are measured (name or ID)
    #[arg(long = "service", value_name = "service")]
    pub service: Option<String>,

    #[command(flatten)]
    pub access: MetricAccess,

    /// Give up after this long (default 10s)
    #[arg(long = "timeout", value_name = "duration")]
    pub timeout: Option<String>,

    /// Format output: 'table' (default: the value and its unit), 'json' or a Go template (man 7 docker-microscale-format)
    #[arg(long = "format", value_name = "string")]
    pub format: Option<String>,
}

const SCALE_EXAMPLES: &str = "  docker microscale scale web=5
  docker microscale scale web=+2 queue-worker=-1
  docker microscale scale --detach web=0
  docker microscale scale --timeout 2m web=10 api=4
  docker microscale scale --force web=50
  docker microscale scale --format json web=+1 | jq .Convergence";

/// Options of `docker microscale scale`.
#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// SERVICE=N sets N replicas; SERVICE=+N and SERVICE=-N change the count by N
    #[arg(value_name = "SERVICE=REPLICAS", required = true)]
    pub targets: Vec<String>,

    /// Exit immediately instead of waiting for the services to converge
    #[arg(short = 'd', long = "detach", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub detach: Option<bool>,

    /// Go beyond the rule's microscale.min/max and the placement's max replicas per node, and scale during a rolling update
    #[arg(long = "force", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub force: Option<bool>,

    /// Suppress progress output
    #[arg(short = 'q', long = "quiet", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub quiet: Option<bool>,

    /// A TOML rules file whose min/max bounds win over the services' labels
    #[arg(long = "rules", value_name = "file", value_parser = any_path)]
    pub rules: Option<PathBuf>,

    /// Stop waiting for convergence after this long, e.g. 90s or 5m (default: no limit)
    #[arg(long = "timeout", value_name = "duration")]
    pub timeout: Option<String>,

    /// Format output: 'table' (default: a line per service), 'json' (one object per line) or a Go template (man 7 docker-microscale-format)
    #[arg(long = "format", value_name = "string")]
    pub format: Option<String>,
}

const APPLY_EXAMPLES: &str = "  docker microscale apply
  docker microscale apply queue-worker
  docker microscale apply --dry-run
  docker microscale apply --capacity 20 --detach
  docker microscale apply --rules rules.toml --timeout 5m";

/// Options of `docker microscale apply`.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// Services to apply, by name or ID (default: every service with a rule)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,

    /// Print the plan (as `docker microscale plan` does) and change nothing
    #[arg(long = "dry-run", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub dry_run: Option<bool>,

    #[command(flatten)]
    pub decide: DecideOptions,

    /// The agents' lease: apply refuses while an agent holds it, and holds it while it acts (default microscale-agent-lease)
    #[arg(long = "lease-name", value_name = "string")]
    pub lease_name: Option<String>,

    /// Exit immediately instead of waiting for the services to converge
    #[arg(short = 'd', long = "detach", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub detach: Option<bool>,

    /// Suppress progress output
    #[arg(short = 'q', long = "quiet", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub quiet: Option<bool>,

    /// Stop waiting for convergence after this long, e.g. 90s or 5m (default: no limit)
    #[arg(long = "timeout", value_name = "duration")]
    pub timeout: Option<String>,

    /// Format output: 'table' (default), 'json' (one object per line) or a Go template (man 7 docker-microscale-format)
    #[arg(long = "format", value_name = "string")]
    pub format: Option<String>,

    /// Don't truncate output
    #[arg(long = "no-trunc", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub no_trunc: Option<bool>,
}

impl ApplyArgs {
    /// The `plan` options that show what this apply would do (`--dry-run`).
    pub fn plan_args(&self) -> PlanArgs {
        PlanArgs {
            services: self.services.clone(),
            decide: self.decide.clone(),
            lease_name: self.lease_name.clone(),
            detailed_exitcode: None,
            format: self.format.clone(),
            no_trunc: self.no_trunc,
        }
    }
}

/// `docker microscale rules` subcommands.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate every scaling rule: each problem names the service, key, value and what was expected
    #[command(override_usage = "docker microscale rules check [OPTIONS] [SERVICE...]")]
    Check(RulesCheckArgs),
    /// Show the decision history kept in the swarm: each recommendation, scale event and failure count, and until when it binds
    #[command(override_usage = "docker microscale rules history [OPTIONS] [SERVICE...]")]
    History(RulesHistoryArgs),
}

const RULES_HISTORY_EXAMPLES: &str = "  docker microscale rules history
  docker microscale rules history web
  docker microscale rules history --format json web | jq .Recommendations";

/// Options of `docker microscale rules history`.
#[derive(Debug, Clone, Args)]
pub struct RulesHistoryArgs {
    /// Services to show, by name or ID (default: every service with a stored history)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,

    /// A TOML rules file (its windows and periods say until when each entry binds)
    #[arg(long = "rules", value_name = "file", value_parser = any_path)]
    pub rules: Option<PathBuf>,

    /// The agents' lease; the history is the Swarm config <lease>-history (default microscale-agent-lease)
    #[arg(long = "lease-name", value_name = "string")]
    pub lease_name: Option<String>,

    /// Format output: 'table' (default) or 'json' (one object per line)
    #[arg(long = "format", value_name = "string")]
    pub format: Option<String>,
}

const RULES_CHECK_EXAMPLES: &str = "  docker microscale rules check
  docker microscale rules check web queue-worker
  docker microscale rules check --rules rules.toml
  docker microscale rules check --format json | jq -r .Expected";

/// Options of `docker microscale rules check`.
#[derive(Debug, Clone, Args)]
pub struct RulesCheckArgs {
    /// Services to check, by name or ID (default: all)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,

    /// A TOML rules file for services whose labels cannot be changed (it wins over their labels)
    #[arg(long = "rules", value_name = "file", value_parser = any_path)]
    pub rules: Option<PathBuf>,

    #[command(flatten)]
    pub access: MetricAccess,

    /// Format output: 'table' (default), 'json' (one problem per line) or a Go template (man 7 docker-microscale-format)
    #[arg(long = "format", value_name = "string")]
    pub format: Option<String>,
}

/// Options of `docker microscale provenance`.
#[derive(Debug, Clone, Args)]
pub struct ProvenanceArgs {
    /// Services to show, by name or ID (default: all)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,

    /// Format output: 'table' (default: a block per service; a table with --check), 'json' (one object per line) or a Go template (man 7 docker-microscale-format)
    #[arg(long = "format", value_name = "string")]
    pub format: Option<String>,

    /// Print whether each service's image has the required provenance; exit 1 if one lacks it
    #[arg(long = "check", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub check: Option<bool>,

    /// Fields --check requires (default source,revision,created): source, revision, version, created, authors, vendor, licenses, url, documentation, title, description, base, base-digest
    #[arg(long = "require", value_name = "list")]
    pub require: Vec<String>,

    /// Don't truncate output
    #[arg(long = "no-trunc", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub no_trunc: Option<bool>,
}

/// Options of `docker microscale status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Services to show, by name or ID (default: all)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,

    /// Filter output based on conditions provided (name=, label=, mode=, id=)
    #[arg(short = 'f', long = "filter", value_name = "filter")]
    pub filter: Vec<String>,

    /// Format output: 'table' (default), 'json' (one object per line) or a Go template (man 7 docker-microscale-format)
    #[arg(long = "format", value_name = "string")]
    pub format: Option<String>,

    /// Don't truncate output
    #[arg(long = "no-trunc", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub no_trunc: Option<bool>,

    /// Only display IDs
    #[arg(short = 'q', long = "quiet", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub quiet: Option<bool>,

    /// Read the rules' metrics for METRIC and DESIRED (at most 3s per source)
    #[arg(long = "metrics", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub metrics: Option<bool>,

    #[command(flatten)]
    pub access: MetricAccess,

    /// Show the status again at each interval until interrupted: a live screen with metric and replica sparklines on a terminal (q or Ctrl-C leaves)
    #[arg(long = "watch", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "")]
    pub watch: Option<bool>,

    /// Time between refreshes with --watch, e.g. 5s or 1m (default 2s, at least 500ms)
    #[arg(long = "interval", value_name = "duration")]
    pub interval: Option<String>,
}
