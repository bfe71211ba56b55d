//! TEMPORARY stand-in until the lease branch lands (same API): every agent holds.

use std::time::Duration;

use crate::engine::{Engine, EngineError};

/// Who holds the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// This agent.
    Ours,
}

/// The lease (stand-in).
pub struct Lease {
    _name: String,
    _ttl: Duration,
    _holder: String,
}

impl Lease {
    /// A lease named `name`.
    pub fn new(name: String, ttl: Duration, holder: String) -> Lease {
        Lease {
            _name: name,
            _ttl: ttl,
            _holder: holder,
        }
    }

    /// One step.
    pub async fn tick(&mut self, _engine: &Engine) -> Result<LeaseState, EngineError> {
        Ok(LeaseState::Ours)
    }

    /// Whether this agent may act.
    pub fn holds(&self) -> bool {
        true
    }

    /// Gives it up.
    pub async fn release(&mut self, _engine: &Engine) {}
}

/// This agent's holder ID.
pub async fn default_holder(_engine: &Engine) -> String {
    format!("pid-{}", std::process::id())
}
