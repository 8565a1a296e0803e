//! `layerlift-convert`: see [`layerlift_cli::convert`].

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = layerlift_cli::convert::Args::parse();
    layerlift_cli::exit::finish("layerlift-convert", layerlift_cli::convert::run(args))
}
