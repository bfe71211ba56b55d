//! Scaling rules: labels and rules files into typed [`model::Rule`]s.

pub mod model;
