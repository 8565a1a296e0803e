//! `layerlift`: runs the steps as subcommands, git-style (`layerlift unpack …` is `layerlift-unpack …`).

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "layerlift",
    version,
    about = "Get a saved image archive into any container registry, without a Docker daemon",
    after_help = "Each subcommand is also a binary of its own: `layerlift unpack …` runs the same code as `layerlift-unpack …`."
)]
struct Cli {
    #[command(subcommand)]
    step: Step,
}

#[derive(Debug, Subcommand)]
enum Step {
    /// Read a saved-image archive into an OCI image layout (layerlift-unpack).
    Unpack(layerlift_cli::unpack::Args),
    /// Normalise layers and convert manifests in an OCI layout (layerlift-convert).
    Convert(layerlift_cli::convert::Args),
    /// Push an OCI layout or archive to a registry (layerlift-push).
    Push(layerlift_cli::push::Args),
    /// Verify an OCI layout: structure, every blob's digest, layers against diff_ids.
    Check(layerlift_cli::check::Args),
}

fn main() -> ExitCode {
    match Cli::parse().step {
        Step::Unpack(args) => {
            layerlift_cli::exit::finish("layerlift unpack", layerlift_cli::unpack::run(args))
        }
        Step::Convert(args) => {
            layerlift_cli::exit::finish("layerlift convert", layerlift_cli::convert::run(args))
        }
        Step::Push(args) => {
            layerlift_cli::exit::finish("layerlift push", layerlift_cli::push::run(args))
        }
        Step::Check(args) => {
            layerlift_cli::exit::finish("layerlift check", layerlift_cli::check::run(args))
        }
    }
}
