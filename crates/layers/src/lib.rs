//! layerlift-layers (being built).
