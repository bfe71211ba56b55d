//! The wall clock every layer shares (it imports nothing of the crate).

/// Now, in seconds since the Unix epoch: the clock `plan`, `status`, the agent's
/// stored history and `replay` hand to the decision core (service `UpdatedAt` times
/// are on the same epoch). 0 when the system clock is before 1970.
pub fn wall_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
