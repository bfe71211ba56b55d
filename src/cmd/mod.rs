//! The commands: one file (or folder) each. Each reads top to bottom: its
//! settings, what it reads from the swarm, what it decides, what it prints. No
//! layer below imports a command (see `docs/architecture.md`).

pub mod apply;
pub mod badge;
pub mod complete;
pub mod internal;
pub mod man;
pub mod man_md;
pub mod metric;
pub mod plan;
pub mod provenance;
pub mod replay;
pub mod rules;
pub mod run;
pub mod scale;
pub mod status;
