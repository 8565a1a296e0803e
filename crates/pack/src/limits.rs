//! The limits pack holds a layout to.

/// How deep image indexes may nest inside each other.
pub const MAX_DEPTH: usize = 8;
