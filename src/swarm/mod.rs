//! The swarm model: one consistent read of the swarm ([`snapshot`]: services,
//! tasks, nodes), what counts as running, service modes and selection, and the
//! `microscale.*` labels as people read them ([`labels`]).

pub mod labels;
pub mod service;
pub mod snapshot;
