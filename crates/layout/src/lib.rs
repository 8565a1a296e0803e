//! layerlift-layout (being built).
