//! Metric sources: what a rule's `microscale.metric` URI reads (issue 5, in progress).
//!
//! Each source module exposes
//! `pub async fn read(uri: &str, secret: Option<&str>, timeout: Duration) -> Result<Sample, String>`:
//! `uri` is the whole metric URI (`redis://…`), `secret` the password or token read
//! from the file or environment variable the rule names (never from the label
//! text), and `timeout` bounds the whole read. Errors are one line that says what
//! failed, where, and how to fix it, with no secret in it.

use serde::Serialize;

/// One reading of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// The value; 0 is a real zero (an empty queue), never "unreadable".
    pub value: f64,
    /// Its unit: `messages`, `entries`, `requests/s`, `percent`, or `""` when the
    /// source cannot say.
    pub unit: &'static str,
}

pub mod http_json;
pub mod nats;
pub mod nsq;
pub mod prometheus;
pub mod rabbitmq;
mod web;
