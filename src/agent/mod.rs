//! The `run` agent: its loop, its leader lease, its `/metrics` endpoint.

pub mod lease;
