//! layerlift-registry (being built).
