//! Exit codes, error output and cancellation, following the docker CLI.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | ok |
//! | 1 | error |
//! | 125 | usage error (bad flag or argument), as the docker CLI uses it |
//! | 130 | interrupted (Ctrl-C, or cancelled by the docker CLI) |

use std::ffi::OsString;
use std::io::{ErrorKind, Write};

use clap::error::{ContextKind, ContextValue, ErrorKind as ClapKind};

/// The process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// A failure: engine, service, or output error.
    Error = 1,
    /// `plan --detailed-exitcode`: changes are pending.
    ChangesPending = 2,
    /// `apply`: an agent holds the lease, so nothing was done (`docs/exit-codes.md`).
    AgentActive = 3,
    /// Bad flags or arguments.
    Usage = 125,
    /// Interrupted by Ctrl-C or cancelled by the docker CLI.
    Interrupted = 130,
}

/// Why a command stopped early.
#[derive(Debug)]
pub enum Failure {
    /// A usage error: printed with the command's usage line, exit 125.
    Usage(String),
    /// Any other error: printed as is, exit 1.
    Error(String),
    /// Ctrl-C or cancellation, exit 130.
    Interrupted,
}

/// Writes `text` to stdout. A closed pipe (`| head`) ends the command quietly with
/// success; other write errors are failures.
pub fn print_stdout(text: &str) -> Result<Exit, Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(Exit::Ok),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(Exit::Ok),
        Err(e) => Err(Failure::Error(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

/// Longest message printed on stderr, in characters; the rest is cut.
const MAX_MESSAGE_CHARS: usize = 4000;

/// Writes `text` and a newline to stderr, made safe first: secrets are masked
/// ([`crate::edge::redact::redact_value`]), control and bidi characters escaped (line
/// breaks kept), and very long messages cut. Errors are ignored: when stderr itself
/// is closed or full there is nowhere left to report them, and the exit code still
/// says what happened.
pub fn say(text: &str) {
    let mut safe: String = text
        .split('\n')
        .map(|line| crate::edge::text::printable(&crate::edge::redact::redact_value(line)))
        .collect::<Vec<_>>()
        .join("\n");
    if safe.chars().count() > MAX_MESSAGE_CHARS {
        safe = crate::edge::text::ellipsize(&safe, MAX_MESSAGE_CHARS);
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{safe}");
    let _ = err.flush();
}

/// Installs a panic hook that prints one line (no backtrace) and exits 1, so that a
/// bug never shows up as exit code 101 with a Rust backtrace.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        say(&format!(
            "internal error in docker-microscale{location}: {payload}\nPlease report it with the command you ran."
        ));
        std::process::exit(Exit::Error as i32);
    }));
}

/// Like [`print_stdout`], but the write runs on a blocking thread so that the command
/// stays cancellable (Ctrl-C, SIGTERM) while a slow reader keeps the pipe full.
pub async fn print_stdout_async(text: String) -> Result<Exit, Failure> {
    tokio::task::spawn_blocking(move || print_stdout(&text))
        .await
        .unwrap_or_else(|e| {
            Err(Failure::Error(format!(
                "cannot write to standard output: {e}"
            )))
        })
}

/// The command line's clap tree and help formatter, given once by `main`
/// ([`set_command_tree`]): usage errors name the subcommand and its usage line, and
/// help goes out in the docker CLI's layout. The edge does not know the commands.
#[derive(Clone, Copy)]
pub struct CommandTree {
    /// Builds the root `docker microscale` command.
    pub root: fn() -> clap::Command,
    /// Turns clap's rendered help into the docker CLI's layout.
    pub help_text: fn(&str) -> String,
    /// What `--version` prints (the `version` command's line).
    pub version_line: fn() -> String,
}

static COMMAND_TREE: std::sync::OnceLock<CommandTree> = std::sync::OnceLock::new();

/// Sets the clap tree usage errors and help use (once, before parsing; later calls
/// are ignored).
pub fn set_command_tree(tree: CommandTree) {
    let _ = COMMAND_TREE.set(tree);
}

fn command_tree() -> CommandTree {
    *COMMAND_TREE.get().unwrap_or(&CommandTree {
        root: || clap::Command::new("docker microscale"),
        help_text: |s| s.to_string(),
        version_line: String::new,
    })
}

/// The (innermost) subcommand named in `args`, if any, and its path
/// (`docker microscale rules check`), for usage lines in error messages.
fn subcommand_path_in(args: &[OsString]) -> Option<(clap::Command, String)> {
    let mut cmd = (command_tree().root)();
    let mut path = String::from("docker microscale");
    let mut found = false;
    for a in args.iter().filter_map(|a| a.to_str()) {
        if let Some(sub) = cmd.find_subcommand(a).cloned() {
            path = format!("{path} {}", sub.get_name());
            cmd = sub;
            found = true;
        }
    }
    found.then_some((cmd, path))
}

/// How many arguments a command takes, as docker's cobra validators say it.
fn arity(cmd: &str) -> &'static str {
    if cmd.ends_with(" scale") {
        "requires at least 1 argument."
    } else {
        "requires exactly 1 argument."
    }
}

/// Prints a usage error as the docker CLI does, and returns [`Exit::Usage`]:
///
/// ```text
/// <message>
///
/// Usage:  docker microscale status [OPTIONS] [SERVICE...]
///
/// Run 'docker microscale status --help' for more information
/// ```
pub fn usage_error(message: &str, args: &[OsString]) -> Exit {
    let (usage, path) = match subcommand_path_in(args) {
        Some((mut sub, path)) => (sub.render_usage().to_string(), path),
        None => (
            "docker microscale COMMAND".to_string(),
            "docker microscale".to_string(),
        ),
    };
    let usage = usage.trim_start_matches("Usage:").trim();
    say(&format!(
        "{message}\n\nUsage:  {usage}\n\nRun '{path} --help' for more information"
    ));
    Exit::Usage
}

/// Handles a clap parse result that is not a command to run: help goes to stdout
/// with exit 0; everything else is a usage error (exit 125).
pub fn clap_error(err: clap::Error, args: &[OsString]) -> Exit {
    match err.kind() {
        // `--version` and `-v`, as `docker --version`: the `version` command's line.
        ClapKind::DisplayVersion => match print_stdout(&(command_tree().version_line)()) {
            Ok(code) => code,
            Err(Failure::Error(msg)) => {
                say(&msg);
                Exit::Error
            }
            Err(_) => Exit::Error,
        },
        ClapKind::DisplayHelp | ClapKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            match print_stdout(&(command_tree().help_text)(&err.render().to_string())) {
                Ok(code) => code,
                Err(Failure::Error(msg)) => {
                    say(&msg);
                    Exit::Error
                }
                Err(_) => Exit::Error,
            }
        }
        ClapKind::UnknownArgument => {
            let arg = context_string(&err, ContextKind::InvalidArg);
            if arg.starts_with('-') {
                usage_error(&format!("unknown flag: {arg}"), args)
            } else {
                let sub = subcommand_path_in(args);
                let cmd = sub
                    .as_ref()
                    .map(|(_, p)| p.clone())
                    .unwrap_or_else(|| "docker microscale".into());
                let positionals = sub.map(|(c, _)| c.get_positionals().count()).unwrap_or(0);
                if positionals == 0 {
                    usage_error(&format!("\"{cmd}\" accepts no arguments"), args)
                } else {
                    usage_error(&format!("\"{cmd}\" {}", arity(&cmd)), args)
                }
            }
        }
        ClapKind::MissingRequiredArgument => {
            // Only a required positional can be missing: the SERVICE of `badge`,
            // the SOURCE of `metric`, the SERVICE=REPLICAS of `scale`.
            let cmd = subcommand_path_in(args)
                .map(|(_, p)| p)
                .unwrap_or_else(|| "docker microscale".into());
            usage_error(&format!("\"{cmd}\" {}", arity(&cmd)), args)
        }
        ClapKind::InvalidValue | ClapKind::NoEquals | ClapKind::ValueValidation => {
            // clap names the flag as `--filter <filter>`; docker as `--filter`.
            let arg = context_string(&err, ContextKind::InvalidArg);
            let flag = arg
                .split([' ', '[', '='])
                .next()
                .unwrap_or_default()
                .to_string();
            let value = context_string(&err, ContextKind::InvalidValue);
            if value.is_empty() {
                usage_error(&format!("flag needs an argument: {flag}"), args)
            } else {
                // What was expected: clap's list of values, or the parser's reason.
                let reason = match err.get(ContextKind::ValidValue) {
                    Some(clap::error::ContextValue::Strings(valid)) if !valid.is_empty() => {
                        format!(": use one of {}", valid.join(", "))
                    }
                    _ => std::error::Error::source(&err)
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default(),
                };
                usage_error(
                    &format!("invalid argument \"{value}\" for \"{flag}\" flag{reason}"),
                    args,
                )
            }
        }
        ClapKind::InvalidSubcommand => {
            // The group the word was given to (`docker microscale rules`), and what it
            // may have meant, as cobra says it.
            let word = context_string(&err, ContextKind::InvalidSubcommand);
            let (group, parent) = subcommand_path_in(args)
                .unwrap_or_else(|| ((command_tree().root)(), "docker microscale".into()));
            // Hidden commands (`__stats-read`) are never suggested.
            let suggestions: Vec<String> = match err.get(ContextKind::SuggestedSubcommand) {
                Some(ContextValue::Strings(s)) => s.clone(),
                Some(ContextValue::String(s)) => vec![s.clone()],
                _ => vec![],
            }
            .into_iter()
            .filter(|s| group.find_subcommand(s).is_some_and(|c| !c.is_hide_set()))
            .collect();
            let mut message = format!("unknown command \"{word}\" for \"{parent}\"");
            if !suggestions.is_empty() {
                message.push_str("\n\nDid you mean this?");
                for s in suggestions {
                    message.push_str(&format!("\n  {s}"));
                }
            }
            usage_error(&message, args)
        }
        _ => {
            let rendered = err.render().to_string();
            let first = rendered
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_string();
            usage_error(&first, args)
        }
    }
}

fn context_string(err: &clap::Error, kind: ContextKind) -> String {
    match err.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// A future that completes when the command should stop: Ctrl-C (SIGINT), SIGTERM,
/// SIGHUP, or EOF on the docker CLI's `DOCKER_CLI_PLUGIN_SOCKET`.
///
/// The docker CLI listens on an abstract unix socket (`@docker_cli_<hex>`) and closes
/// it when it receives a signal while its stdout is not a terminal; the plugin sees
/// EOF. Without the variable, or if the socket cannot be reached, only signals count.
pub fn cancellation() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    // The handlers are installed now, not when the future is first polled: a signal
    // that comes before that (during a first pass) is not lost or fatal.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = std::env::var_os("DOCKER_CLI_PLUGIN_SOCKET") {
        std::thread::spawn(move || {
            if watch_plugin_socket(&addr) {
                let _ = tx.send(());
            }
        });
    } else {
        drop(tx);
    }
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    // The terminal went away (ssh session closed): like Ctrl-C.
    let mut hangup = signal(SignalKind::hangup()).ok();
    async move {
        let socket_closed = async {
            if rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = wait_for(interrupt.as_mut()) => {},
            _ = socket_closed => {},
            _ = wait_for(term.as_mut()) => {},
            _ = wait_for(hangup.as_mut()) => {},
        }
    }
}

/// Waits for `signal`, forever when it could not be installed.
async fn wait_for(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Connects to the docker CLI's plugin socket and blocks until it closes. Returns
/// `true` on EOF (cancel), `false` when it could not connect.
fn watch_plugin_socket(addr: &std::ffi::OsStr) -> bool {
    use std::io::Read;
    use std::os::unix::net::{SocketAddr, UnixStream};
    let addr = addr.to_string_lossy();
    let stream = if let Some(name) = addr.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes()).and_then(|a| UnixStream::connect_addr(&a))
    } else {
        UnixStream::connect(addr.as_ref())
    };
    let Ok(mut stream) = stream else {
        return false;
    };
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}
