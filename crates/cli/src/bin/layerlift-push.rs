//! `layerlift-push`: see [`layerlift_cli::push`].

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = layerlift_cli::push::Args::parse();
    layerlift_cli::exit::finish("layerlift-push", layerlift_cli::push::run(args))
}
