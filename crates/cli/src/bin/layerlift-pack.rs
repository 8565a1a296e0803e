//! `layerlift-pack`: see [`layerlift_cli::pack`].

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = layerlift_cli::pack::Args::parse();
    layerlift_cli::exit::finish("layerlift-pack", layerlift_cli::pack::run(args))
}
