//! layerlift-testkit (being built).
