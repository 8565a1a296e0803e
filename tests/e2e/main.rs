//! End-to-end tests: drive the built binaries against real archives, real tools and a real registry.

mod fixtures;
mod unpack;
mod util;
mod verify;
