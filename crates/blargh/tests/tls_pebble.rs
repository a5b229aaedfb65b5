//! Tests against Pebble: see crates/test-support/src/pebble.rs.
