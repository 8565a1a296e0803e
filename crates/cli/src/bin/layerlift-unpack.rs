//! `layerlift-unpack`: see [`layerlift_cli::unpack`].

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = layerlift_cli::unpack::Args::parse();
    layerlift_cli::exit::finish("layerlift-unpack", layerlift_cli::unpack::run(args))
}
