//! layerlift-archive (being built).
