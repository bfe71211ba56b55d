//! What the agents keep in the swarm itself, so that it outlives any one process:
//! the lease ([`lease`], service labels), the decision history ([`history`], Swarm
//! configs), the fight records ([`fights`]), and the one-writer guard that `apply`
//! and `scale` take ([`exclusive`]).

pub mod exclusive;
pub mod fights;
pub mod history;
pub mod lease;
pub mod stats;
