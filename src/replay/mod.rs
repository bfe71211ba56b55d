//! Backtesting a rule: a metric series read from a file or a Prometheus range
//! query ([`series`]), run through the same decision core and history as the agent
//! ([`sim`], pure), and drawn as an SVG chart ([`chart`], plotters). The command is
//! `crate::cmd::replay`.

pub mod chart;
pub mod series;
pub mod sim;
