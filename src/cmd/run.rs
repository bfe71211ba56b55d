//! `docker microscale run [SERVICE...]`: the autoscaling agent. The loop, its flags
//! ([`crate::agent::RunArgs`]) and its checks live in [`crate::agent`]; this is the
//! command's entry.

use crate::edge::exit::{Exit, Failure};
use crate::engine::Engine;

/// Runs the agent until SIGTERM or Ctrl-C (exit 0), or `--once` (see
/// [`crate::agent::run`] for the exit codes). `level` is the global `--log-level`
/// (or `debug` for `-D`).
pub async fn run(
    engine: &Engine,
    args: &crate::agent::RunArgs,
    level: Option<&str>,
) -> Result<Exit, Failure> {
    crate::agent::run(engine, args, level).await
}
