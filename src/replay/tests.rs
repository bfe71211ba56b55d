//! Tests of `replay`'s flags and of the real-demand traces.

use super::*;

#[test]
fn placeholder() {}
