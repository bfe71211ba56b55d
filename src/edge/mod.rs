//! The process edge: what crosses the process boundary. Argument vectors from the
//! docker CLI ([`argv`]), exit codes, stdout/stderr writes and cancellation
//! ([`exit`]), files read and written safely ([`fsutil`]), the wall clock
//! ([`clock`]), and the masking of secrets in any text that leaves ([`redact`]).
//!
//! The bottom layer: it imports no other module of the crate.

pub mod argv;
pub mod clock;
pub mod exit;
pub mod fsutil;
pub mod redact;
pub mod text;
