//! End-to-end tests: drive the built binaries against real archives, real tools and a real registry.

mod bad_input;
mod bulk;
mod check;
mod convert;
mod crash;
mod docker;
mod fixtures;
mod golden;
mod indexes;
mod load;
mod makefile;
mod modern;
mod newcomer;
mod overlap;
mod pack;
mod push;
mod push_matrix;
mod registries;
mod repush;
mod security;
mod several;
mod soak;
mod stream;
mod unpack;
mod util;
mod verify;
