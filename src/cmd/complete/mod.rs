//! Shell completion through the docker CLI's plugin protocol (cobra's `__complete`).
//!
//! When TAB is pressed after `docker microscale`, the docker CLI (cobra) runs
//!
//! ```text
//! docker-microscale __complete microscale [ARGS...] WORD
//! ```
//!
//! where ARGS are the words after `microscale` and WORD is the word being completed
//! (empty after a space). The docker CLI does not pass its own global flags
//! (`-H`, `--context`, ...) given before `microscale`, and turns `__completeNoDesc`
//! into `__complete`; [`lookup`] reads both from its command line. Run directly (our
//! own shell scripts, [`scripts`]), the plugin name is absent and global flags may come
//! first: `docker-microscale __complete -H URL status WORD`.
//!
//! The answer is cobra's format on stdout: one candidate a line, `VALUE` or
//! `VALUE\tDESCRIPTION` (descriptions are left out for `__completeNoDesc`), then a last
//! line `:N` where N is the [`directive`] bit field. Exit code 0.
//!
//! This module holds the pure part: from the clap definition ([`crate::cli::command`])
//! and the words, what to offer ([`plan`]); service names come from
//! [`lookup::service_names`] only when the words call for them.

pub mod lookup;
pub mod scripts;

use clap::{Arg, ArgAction};

/// The request word cobra uses (`cobra.ShellCompRequestCmd`).
pub const REQUEST: &str = "__complete";
/// The request word for completions without descriptions (`cobra.ShellCompNoDescRequestCmd`).
pub const REQUEST_NO_DESC: &str = "__completeNoDesc";

/// cobra's `ShellCompDirective` bits, printed as `:N` on the last line.
// The whole bit field is listed, as cobra defines it, though not every bit is sent.
#[allow(dead_code)]
pub mod directive {
    /// Nothing special: the shell may fall back to file names when there are no candidates.
    pub const DEFAULT: u32 = 0;
    /// An error occurred; the shell ignores the candidates.
    pub const ERROR: u32 = 1;
    /// No space after the completed word (`SERVICE=`, `redis://`).
    pub const NO_SPACE: u32 = 2;
    /// No file names when there are no candidates.
    pub const NO_FILE_COMP: u32 = 4;
    /// The candidates are file extensions: complete files with those extensions.
    pub const FILTER_FILE_EXT: u32 = 8;
    /// Complete directory names only.
    pub const FILTER_DIRS: u32 = 16;
    /// Keep the candidates in the given order.
    pub const KEEP_ORDER: u32 = 32;
}

/// One completion candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// What the shell inserts.
    pub value: String,
    /// One line shown next to it (may be empty).
    pub description: String,
}

impl Candidate {
    fn new(value: impl Into<String>, description: impl Into<String>) -> Candidate {
        Candidate {
            value: value.into(),
            description: description.into(),
        }
    }
}

/// A finished answer: candidates and the directive bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The candidates, in order.
    pub candidates: Vec<Candidate>,
    /// [`directive`] bits.
    pub directive: u32,
}

impl Completion {
    fn none() -> Completion {
        Completion {
            candidates: vec![],
            directive: directive::NO_FILE_COMP,
        }
    }

    /// The answer in cobra's wire format: `VALUE[\tDESCRIPTION]` lines, then `:N`.
    /// Descriptions are cut to their first line; `with_descriptions = false` leaves
    /// them out (`__completeNoDesc`).
    pub fn render(&self, with_descriptions: bool) -> String {
        let mut out = String::new();
        for c in &self.candidates {
            out.push_str(&c.value);
            let desc = c.description.lines().next().unwrap_or_default().trim();
            if with_descriptions && !desc.is_empty() {
                out.push('\t');
                out.push_str(desc);
            }
            out.push('\n');
        }
        out.push_str(&format!(":{}\n", self.directive));
        out
    }
}

/// Service names the answer still needs from the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceQuery {
    /// The word typed so far; names must start with it.
    pub prefix: String,
    /// Services already named on the command line (left out).
    pub exclude: Vec<String>,
    /// `scale`: offer `NAME=` and no space after it.
    pub assign: bool,
}

impl ServiceQuery {
    /// The answer for these service names (`None`: the engine could not be asked in
    /// time, which gives no candidates and no file names).
    pub fn finish(&self, names: Option<&[String]>) -> Completion {
        let Some(names) = names else {
            return Completion::none();
        };
        let candidates = names
            .iter()
            .filter(|n| n.starts_with(&self.prefix) && !self.exclude.contains(n))
            .map(|n| {
                if self.assign {
                    Candidate::new(format!("{n}="), "")
                } else {
                    Candidate::new(n.clone(), "")
                }
            })
            .collect();
        let directive = if self.assign {
            directive::NO_FILE_COMP | directive::NO_SPACE
        } else {
            directive::NO_FILE_COMP
        };
        Completion {
            candidates,
            directive,
        }
    }
}

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Known from the command line and the definitions alone.
    Ready(Completion),
    /// Needs the swarm's service names.
    Services(ServiceQuery),
}

/// A parsed completion request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The words of the docker CLI's global flags that came before the command
    /// (`-H URL`, `--context NAME`, ...), to reach the right engine.
    pub globals: Vec<String>,
    /// What to answer.
    pub plan: Plan,
}

/// Splits the arguments after `__complete` into the words before the one being
/// completed and that word; a leading plugin name (`microscale`, as the docker CLI
/// sends it) is dropped. No arguments at all means completing an empty word.
pub fn split_args(args: &[String]) -> (Vec<String>, String) {
    let args = match args.first() {
        Some(first) if first == crate::edge::argv::PLUGIN_NAME => &args[1..],
        _ => args,
    };
    match args.split_last() {
        Some((current, words)) => (words.to_vec(), current.clone()),
        None => (vec![], String::new()),
    }
}

/// Whether `arg` takes its value from the next word when written without `=`
/// (`--format json`, `-o file`); flags such as `--no-trunc[=false]` do not.
fn takes_next_word(arg: &Arg) -> bool {
    arg.get_action().takes_values()
        && !arg.is_require_equals_set()
        && arg.get_num_args().is_none_or(|n| n.min_values() > 0)
}

/// Whether `arg` may be given more than once (and so is offered again).
fn repeatable(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append | ArgAction::Count)
}

fn find_long<'a>(cmd: &'a clap::Command, name: &str) -> Option<&'a Arg> {
    cmd.get_arguments().find(|a| a.get_long() == Some(name))
}

fn find_short(cmd: &clap::Command, c: char) -> Option<&Arg> {
    cmd.get_arguments().find(|a| a.get_short() == Some(c))
}

/// A flag word on the command line: the flags it names and whether the next word is
/// the value of the last of them.
fn read_flag<'a>(cmd: &'a clap::Command, word: &str) -> (Vec<&'a Arg>, bool) {
    if let Some(long) = word.strip_prefix("--") {
        let (name, has_value) = match long.split_once('=') {
            Some((n, _)) => (n, true),
            None => (long, false),
        };
        return match find_long(cmd, name) {
            Some(arg) => (vec![arg], !has_value && takes_next_word(arg)),
            None => (vec![], false),
        };
    }
    // A group of short flags: -qf, -f name=x, -fname=x, -o=file.
    let mut found = vec![];
    for (pos, c) in word[1..].char_indices() {
        if c == '=' {
            return (found, false);
        }
        let Some(arg) = find_short(cmd, c) else {
            return (found, false);
        };
        found.push(arg);
        if arg.get_action().takes_values() && !arg.is_require_equals_set() {
            let attached = &word[1 + pos + c.len_utf8()..];
            return (found, attached.is_empty() && takes_next_word(arg));
        }
    }
    (found, false)
}

/// Plans the answer for `words` (the words before the one being completed, plugin
/// name removed) and `current` (the word being completed), against `root`, which
/// must be [`crate::cli::command`] after `build()`.
pub fn plan(root: &clap::Command, words: &[String], current: &str) -> Request {
    let mut cmd = root;
    let mut at_root = true;
    let mut globals = vec![];
    let mut given: Vec<clap::Id> = vec![];
    let mut positionals: Vec<String> = vec![];
    let mut after_dash_dash = false;
    // The flag whose value is the word being completed (`--format <TAB>`).
    let mut pending: Option<&Arg> = None;
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        if !after_dash_dash && word == "--" {
            after_dash_dash = true;
            i += 1;
            continue;
        }
        if !after_dash_dash && word.starts_with('-') && word.len() > 1 {
            let (args, next_is_value) = read_flag(cmd, word);
            given.extend(args.iter().map(|a| a.get_id().clone()));
            let width = if next_is_value { 2 } else { 1 };
            if at_root {
                globals.extend(words[i..(i + width).min(words.len())].iter().cloned());
            }
            if next_is_value && i + 1 == words.len() {
                pending = args.last().copied();
            }
            i += width;
            continue;
        }
        if positionals.is_empty() && cmd.has_subcommands() {
            match cmd.find_subcommand(word) {
                Some(sub) => {
                    cmd = sub;
                    at_root = false;
                    given.clear();
                }
                // An unknown command: nothing to offer.
                None => return ready(globals, Completion::none()),
            }
        } else {
            positionals.push(word.clone());
        }
        i += 1;
    }

    if let Some(arg) = pending {
        return ready(globals, flag_values(arg, "", current));
    }
    if !after_dash_dash && current.starts_with('-') {
        if let Some(long) = current.strip_prefix("--")
            && let Some((name, value)) = long.split_once('=')
        {
            return ready(
                globals,
                match find_long(cmd, name) {
                    Some(arg) if arg.get_action().takes_values() => {
                        flag_values(arg, &format!("--{name}="), value)
                    }
                    _ => Completion::none(),
                },
            );
        }
        return ready(globals, flag_names(cmd, &given, current));
    }
    if positionals.is_empty() && cmd.has_subcommands() {
        let candidates = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name().starts_with(current))
            .map(|s| {
                Candidate::new(
                    s.get_name(),
                    s.get_about().map(|a| a.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        return ready(
            globals,
            Completion {
                candidates,
                directive: directive::NO_FILE_COMP,
            },
        );
    }
    let plan = positional_values(cmd, &positionals, current);
    Request { globals, plan }
}

fn ready(globals: Vec<String>, completion: Completion) -> Request {
    Request {
        globals,
        plan: Plan::Ready(completion),
    }
}

/// Candidates for the next positional argument of `cmd`, after `given` ones.
fn positional_values(cmd: &clap::Command, given: &[String], current: &str) -> Plan {
    let positionals: Vec<&Arg> = cmd.get_positionals().collect();
    let arg = positionals.get(given.len()).copied().or_else(|| {
        positionals
            .last()
            .copied()
            .filter(|a| a.get_num_args().is_some_and(|n| n.max_values() > 1))
    });
    let Some(arg) = arg else {
        return Plan::Ready(Completion::none());
    };
    let value_name = arg
        .get_value_names()
        .and_then(|v| v.first())
        .map(|v| v.as_str())
        .unwrap_or_default();
    match value_name {
        "SERVICE" => Plan::Services(ServiceQuery {
            prefix: current.to_string(),
            exclude: given.to_vec(),
            assign: false,
        }),
        "SERVICE=REPLICAS" => {
            if current.contains('=') {
                Plan::Ready(Completion::none())
            } else {
                let exclude = given
                    .iter()
                    .filter_map(|t| t.split_once('=').map(|(s, _)| s.to_string()))
                    .collect();
                Plan::Services(ServiceQuery {
                    prefix: current.to_string(),
                    exclude,
                    assign: true,
                })
            }
        }
        "SOURCE" => Plan::Ready(metric_schemes(current)),
        _ => Plan::Ready(arg_values(arg, "", current)),
    }
}

/// `redis://`, `prometheus://`, ... for a metric SOURCE, without a space after.
fn metric_schemes(current: &str) -> Completion {
    if current.contains("://") {
        return Completion::none();
    }
    let candidates = crate::rules::SCHEMES
        .iter()
        .map(|s| format!("{s}://"))
        .filter(|s| s.starts_with(current))
        .map(|s| Candidate::new(s, ""))
        .collect();
    Completion {
        candidates,
        directive: directive::NO_FILE_COMP | directive::NO_SPACE,
    }
}

/// The flags of `cmd` that start with `current`: long forms, and short forms when
/// `current` is `-` or a short flag prefix. Hidden flags are left out, and so are
/// flags already given unless they may repeat.
fn flag_names(cmd: &clap::Command, given: &[clap::Id], current: &str) -> Completion {
    let mut candidates = vec![];
    for arg in cmd.get_arguments() {
        if arg.is_hide_set() || arg.is_positional() {
            continue;
        }
        if given.contains(arg.get_id()) && !repeatable(arg) {
            continue;
        }
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        if let Some(long) = arg.get_long() {
            let word = format!("--{long}");
            if word.starts_with(current) {
                candidates.push(Candidate::new(word, help.clone()));
            }
        }
        if let Some(short) = arg.get_short() {
            let word = format!("-{short}");
            if current == "-" || (current.len() == 2 && word == current) {
                candidates.push(Candidate::new(word, help));
            }
        }
    }
    Completion {
        candidates,
        directive: directive::NO_FILE_COMP,
    }
}

/// Values of a flag: `prefix` (`--format=` when typed with `=`) goes before each
/// candidate, and `typed` is the value typed so far.
fn flag_values(arg: &Arg, prefix: &str, typed: &str) -> Completion {
    let long = arg.get_long().unwrap_or_default();
    let words = |pairs: &[(&str, &str)], directive: u32| {
        let candidates = pairs
            .iter()
            .filter(|(v, _)| v.starts_with(typed))
            .map(|(v, d)| Candidate::new(format!("{prefix}{v}"), *d))
            .collect();
        Completion {
            candidates,
            directive,
        }
    };
    let files = |ext: &str| Completion {
        candidates: vec![Candidate::new(ext, "")],
        directive: directive::FILTER_FILE_EXT,
    };
    match long {
        "format" => words(
            &[
                ("table", "A table for people (the default)"),
                ("json", "One JSON object per line"),
            ],
            directive::NO_FILE_COMP,
        ),
        "output" => files("svg"),
        "rules" => files("toml"),
        "config" => Completion {
            candidates: vec![],
            directive: directive::FILTER_DIRS,
        },
        "tlscacert" | "tlscert" | "tlskey" => files("pem"),
        "filter" => {
            if typed.starts_with("mode=") {
                words(
                    &[
                        ("mode=replicated", ""),
                        ("mode=global", ""),
                        ("mode=replicated-job", ""),
                        ("mode=global-job", ""),
                    ],
                    directive::NO_FILE_COMP,
                )
            } else {
                words(
                    &[
                        ("name=", "Service names starting with this"),
                        ("label=", "Services with this label (KEY or KEY=VALUE)"),
                        ("mode=", "replicated, global, replicated-job or global-job"),
                        ("id=", "Service IDs starting with this"),
                    ],
                    directive::NO_FILE_COMP | directive::NO_SPACE,
                )
            }
        }
        "require" => {
            // A comma-separated list: complete its last item.
            let (done, _) = typed.rsplit_once(',').unwrap_or(("", typed));
            let done = if done.is_empty() {
                String::new()
            } else {
                format!("{done},")
            };
            let already: Vec<&str> = done.split(',').collect();
            let candidates = crate::provenance::record::FIELD_NAMES
                .iter()
                .filter(|f| !already.contains(f))
                .map(|f| format!("{done}{f}"))
                .filter(|v| v.starts_with(typed))
                .map(|v| Candidate::new(format!("{prefix}{v}"), ""))
                .collect();
            Completion {
                candidates,
                directive: directive::NO_FILE_COMP,
            }
        }
        _ => arg_values(arg, prefix, typed),
    }
}

/// The possible values clap knows for `arg` (value enums such as `--kind`), or
/// nothing.
fn arg_values(arg: &Arg, prefix: &str, typed: &str) -> Completion {
    if arg.get_value_hint() == clap::ValueHint::DirPath {
        return Completion {
            candidates: vec![],
            directive: directive::FILTER_DIRS,
        };
    }
    let candidates = arg
        .get_possible_values()
        .into_iter()
        .filter(|v| !v.is_hide_set() && v.get_name().starts_with(typed))
        .map(|v| {
            Candidate::new(
                format!("{prefix}{}", v.get_name()),
                v.get_help().map(|h| h.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    Completion {
        candidates,
        directive: directive::NO_FILE_COMP,
    }
}

/// Answers a completion request: `args` are the arguments after `__complete` (or
/// `__completeNoDesc`, then `with_descriptions` is false). When the docker CLI runs
/// the plugin, its own command line decides about descriptions and supplies the global
/// flags ([`lookup::docker_cli_request`]). Service names are read from the engine the
/// global flags select, with a short time limit ([`lookup::LOOKUP_TIMEOUT`]). Returns
/// the text for stdout.
pub fn answer(args: &[String], with_descriptions: bool) -> String {
    let mut root = crate::cli::command();
    root.build();
    let (words, current) = split_args(args);
    let request = plan(&root, &words, &current);
    let docker_cli = lookup::docker_cli_request();
    let with_descriptions = with_descriptions && docker_cli.as_ref().is_none_or(|r| r.descriptions);
    let completion = match &request.plan {
        Plan::Ready(c) => c.clone(),
        Plan::Services(query) => {
            let globals = match docker_cli {
                Some(r) if request.globals.is_empty() => r.globals,
                _ => request.globals.clone(),
            };
            let names = lookup::service_names(&globals, lookup::LOOKUP_TIMEOUT);
            query.finish(names.as_deref())
        }
    };
    completion.render(with_descriptions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> clap::Command {
        let mut c = crate::cli::command();
        c.build();
        c
    }

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    fn req(line: &str, current: &str) -> Request {
        plan(&root(), &words(line), current)
    }

    fn done(line: &str, current: &str) -> Completion {
        match req(line, current).plan {
            Plan::Ready(c) => c,
            other => panic!("{line:?} {current:?}: expected ready, got {other:?}"),
        }
    }

    fn values(c: &Completion) -> Vec<&str> {
        c.candidates.iter().map(|c| c.value.as_str()).collect()
    }

    fn services(line: &str, current: &str) -> ServiceQuery {
        match req(line, current).plan {
            Plan::Services(q) => q,
            other => panic!("{line:?} {current:?}: expected a service lookup, got {other:?}"),
        }
    }

    #[test]
    fn subcommands_come_from_the_clap_definition_with_descriptions() {
        let c = done("", "");
        let mut want: Vec<String> = root()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_string())
            .collect();
        want.sort();
        let mut got: Vec<String> = values(&c).iter().map(|s| s.to_string()).collect();
        got.sort();
        assert_eq!(got, want);
        for name in ["status", "provenance", "badge", "plan", "scale", "apply"] {
            assert!(got.iter().any(|g| g == name), "{name} missing from {got:?}");
        }
        assert!(!got.iter().any(|g| g.starts_with("__") || g == "completion"));
        assert_eq!(c.directive, directive::NO_FILE_COMP);
        let status = c.candidates.iter().find(|c| c.value == "status").unwrap();
        assert!(status.description.starts_with("List every service"));

        assert_eq!(values(&done("", "pr")), ["provenance"]);
        assert_eq!(values(&done("", "p")), ["provenance", "plan"]);
        assert_eq!(values(&done("rules", "")), ["check", "history"]);
        assert_eq!(values(&done("rules", "x")), Vec::<&str>::new());
    }

    #[test]
    fn flags_of_each_command_long_and_short() {
        let c = done("status", "--");
        let v = values(&c);
        for f in [
            "--filter",
            "--format",
            "--no-trunc",
            "--quiet",
            "--metrics",
            "--metric-allow",
        ] {
            assert!(v.contains(&f), "{f} not in {v:?}");
        }
        assert!(!v.contains(&"--help"), "hidden flags are not offered");
        let desc = c.candidates.iter().find(|c| c.value == "--quiet").unwrap();
        assert_eq!(desc.description, "Only display IDs");

        let v = done("status", "-").candidates;
        let v: Vec<&str> = v.iter().map(|c| c.value.as_str()).collect();
        assert!(v.contains(&"-q") && v.contains(&"-f") && v.contains(&"--quiet"));
        assert_eq!(values(&done("badge", "--k")), ["--kind"]);
        assert_eq!(
            values(&done("rules check", "--")),
            [
                "--rules",
                "--metric-allow",
                "--metric-allow-only",
                "--metric-secret",
                "--metric-tlscacert",
                "--metric-tlscert",
                "--metric-tlskey",
                "--format"
            ]
        );
        assert_eq!(values(&done("scale", "--d")), ["--detach"]);
        assert!(values(&done("scale", "-")).contains(&"-d"));
        // Global flags belong to docker: not offered; the root's own --version is.
        assert_eq!(values(&done("", "--")), ["--version"]);
    }

    #[test]
    fn flags_already_given_are_not_offered_again_unless_they_repeat() {
        let v = done("status -q --format json", "-");
        let v = values(&v);
        assert!(!v.contains(&"-q") && !v.contains(&"--quiet") && !v.contains(&"--format"));
        assert!(v.contains(&"--no-trunc"));
        let v = done("status --filter name=x -f label=y", "--");
        assert!(values(&v).contains(&"--filter"), "--filter repeats");
        let v = done("status --no-trunc=false", "--no");
        assert_eq!(values(&v), Vec::<&str>::new());
    }

    #[test]
    fn flag_values_where_known() {
        assert_eq!(values(&done("status --format", "")), ["table", "json"]);
        assert_eq!(values(&done("plan --format", "j")), ["json"]);
        assert_eq!(
            values(&done("status", "--format=")),
            ["--format=table", "--format=json"]
        );
        let kind = done("badge web --kind", "");
        assert_eq!(values(&kind), ["commit", "version", "license", "source"]);
        assert_eq!(kind.directive, directive::NO_FILE_COMP);
        assert!(matches!(
            req("badge --kind=license", "").plan,
            Plan::Services(_)
        ));
        assert_eq!(values(&done("badge", "--kind=l")), ["--kind=license"]);
        let out = done("badge web -o", "");
        assert_eq!(values(&out), ["svg"]);
        assert_eq!(out.directive, directive::FILTER_FILE_EXT);
        assert_eq!(
            done("badge web --output", "").directive,
            directive::FILTER_FILE_EXT
        );
        for cmd in ["plan", "apply", "scale", "rules check"] {
            let rules = done(&format!("{cmd} --rules"), "");
            assert_eq!(values(&rules), ["toml"], "{cmd}");
            assert_eq!(rules.directive, directive::FILTER_FILE_EXT, "{cmd}");
        }
        let filter = done("status -f", "");
        assert_eq!(values(&filter), ["name=", "label=", "mode=", "id="]);
        assert_eq!(
            filter.directive,
            directive::NO_FILE_COMP | directive::NO_SPACE
        );
        assert_eq!(
            values(&done("status --filter", "mode=g")),
            ["mode=global", "mode=global-job"]
        );
        let require = done("provenance --check --require", "source,re");
        assert_eq!(values(&require), ["source,revision"]);
        // A value-taking flag followed by its value: back to positionals.
        assert!(matches!(
            req("status --format json", "").plan,
            Plan::Services(_)
        ));
        // `-fname=x` carries its value.
        assert!(matches!(req("status -fname=x", "").plan, Plan::Services(_)));
    }

    #[test]
    fn service_arguments() {
        for cmd in [
            "status",
            "provenance",
            "plan",
            "apply",
            "rules check",
            "labels",
            "ls",
        ] {
            let q = services(cmd, "we");
            assert_eq!(q.prefix, "we", "{cmd}");
            assert!(!q.assign);
        }
        let q = services("status -q web", "");
        assert_eq!(q.exclude, ["web"]);
        let q = services("badge --kind commit", "");
        assert_eq!(q.exclude, Vec::<String>::new());
        // badge takes one SERVICE
        assert_eq!(done("badge web", ""), Completion::none());
        let names: Vec<String> = ["api", "web", "worker"].map(String::from).to_vec();
        let c = services("status api", "w").finish(Some(&names));
        assert_eq!(values(&c), ["web", "worker"]);
        assert_eq!(c.directive, directive::NO_FILE_COMP);
        // An engine that did not answer: nothing, and no file names.
        assert_eq!(services("status", "").finish(None), Completion::none());
    }

    #[test]
    fn scale_offers_service_equals_without_a_space() {
        let q = services("scale web=3", "");
        assert!(q.assign);
        assert_eq!(q.exclude, ["web"]);
        let names: Vec<String> = ["api", "web"].map(String::from).to_vec();
        let c = q.finish(Some(&names));
        assert_eq!(values(&c), ["api="]);
        assert_eq!(c.directive, directive::NO_FILE_COMP | directive::NO_SPACE);
        assert_eq!(done("scale", "web="), Completion::none());
        assert!(matches!(req("scale --detach", "").plan, Plan::Services(_)));
    }

    #[test]
    fn metric_source_schemes() {
        let c = done("metric", "");
        let v = values(&c);
        assert_eq!(v.len(), crate::rules::SCHEMES.len());
        assert!(v.contains(&"redis://") && v.contains(&"prometheus://"));
        assert_eq!(c.directive, directive::NO_FILE_COMP | directive::NO_SPACE);
        assert_eq!(values(&done("metric", "re")), ["redis://", "rediss://"]);
        assert_eq!(values(&done("metric --timeout 2s", "na")), ["nats://"]);
        assert_eq!(done("metric", "redis://x"), Completion::none());
        assert_eq!(done("metric redis://x", ""), Completion::none());
    }

    #[test]
    fn global_flags_before_the_command_are_kept_for_the_engine_lookup() {
        let r = req("-H unix:///x.sock --context=prod -D status", "");
        assert_eq!(r.globals, words("-H unix:///x.sock --context=prod -D"));
        assert!(matches!(r.plan, Plan::Services(_)));
        let r = req("--tlsverify --tlscacert ca.pem status -q", "");
        assert_eq!(r.globals, words("--tlsverify --tlscacert ca.pem"));
        assert!(req("status", "").globals.is_empty());
        // A global flag's value
        assert_eq!(done("--config", "").directive, directive::FILTER_DIRS);
        assert_eq!(values(&done("-l", "d")), ["debug"]);
    }

    #[test]
    fn plugin_name_and_current_word_are_split() {
        let a = |s: &[&str]| s.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert_eq!(
            split_args(&a(&["microscale", "status", "w"])),
            (a(&["status"]), "w".to_string())
        );
        assert_eq!(
            split_args(&a(&["status", ""])),
            (a(&["status"]), String::new())
        );
        assert_eq!(split_args(&a(&["microscale"])), (vec![], String::new()));
        assert_eq!(split_args(&[]), (vec![], String::new()));
    }

    #[test]
    fn other_positionals() {
        assert_eq!(done("version", ""), Completion::none());
        assert_eq!(values(&done("completion", "")), ["bash", "zsh", "fish"]);
        assert_eq!(done("__man", "").directive, directive::FILTER_DIRS);
        assert_eq!(done("nonsense", ""), Completion::none());
    }

    #[test]
    fn wire_format() {
        let c = Completion {
            candidates: vec![
                Candidate::new("status", "List every service\nsecond line"),
                Candidate::new("web", ""),
            ],
            directive: 6,
        };
        assert_eq!(c.render(true), "status\tList every service\nweb\n:6\n");
        assert_eq!(c.render(false), "status\nweb\n:6\n");
        assert_eq!(Completion::none().render(true), ":4\n");
    }
}
