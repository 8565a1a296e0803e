//! layerlift-manifest (being built).
