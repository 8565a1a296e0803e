//! The command-line front ends of layerlift.
//!
//! Each step lives in its own module with a clap `Args` struct and a `run` function; the binaries
//! `layerlift-unpack`, `layerlift-convert`, `layerlift-push`, `layerlift-pack` and the git-style `layerlift` are thin
//! wrappers over them (see `src/bin/`). Libraries return typed errors; this crate turns them into
//! one-line messages and exit codes (see [`exit`]).

pub mod app;
mod bars;
pub mod check;
pub mod convert;
pub mod exit;
pub mod pack;
pub mod push;
mod shared;
pub mod unpack;
