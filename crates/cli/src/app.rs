//! `layerlift` itself: the steps as git-style subcommands (`layerlift unpack …` is
//! `layerlift-unpack …`), plus `layerlift completions SHELL`. Here rather than in the binary so that
//! `cargo xtask man` and `cargo xtask dist` render the same command line the binary parses.

pub use crate::shared::{parse_platform, version};
use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

/// Command line of `layerlift`.
#[derive(Debug, Parser)]
#[command(
    name = "layerlift",
    version = version(),
    about = "Get a saved image archive into any container registry, without a Docker daemon",
    after_help = "Each subcommand is also a binary of its own: `layerlift unpack …` runs the same code as `layerlift-unpack …`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub step: Step,
}

/// The subcommands of `layerlift`.
#[derive(Debug, Subcommand)]
pub enum Step {
    /// Read a saved-image archive into an OCI image layout (layerlift-unpack).
    Unpack(crate::unpack::Args),
    /// Normalise layers and convert manifests in an OCI layout (layerlift-convert).
    Convert(crate::convert::Args),
    /// Push an OCI layout or archive to a registry (layerlift-push).
    Push(crate::push::Args),
    /// Write a docker-archive or oci-archive from an OCI layout (layerlift-pack).
    Pack(crate::pack::Args),
    /// Verify an OCI layout: structure, every blob's digest, layers against diff_ids.
    Check(crate::check::Args),
    /// Print a completion script for SHELL on standard output.
    #[command(after_help = "\
Install, for example:
  layerlift completions bash > ~/.local/share/bash-completion/completions/layerlift
  layerlift completions zsh  > ~/.zfunc/_layerlift     (with fpath+=~/.zfunc before compinit)
  layerlift completions fish > ~/.config/fish/completions/layerlift.fish")]
    Completions {
        /// bash, zsh or fish.
        shell: Shell,
    },
}

/// The shells `layerlift completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The completion script for `shell`, for `layerlift` and its subcommands.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut cmd, "layerlift", &mut out);
    out
}

/// Run `layerlift`.
pub fn main() -> ExitCode {
    use crate::exit::finish;
    match Cli::parse().step {
        Step::Unpack(args) => finish("layerlift unpack", crate::unpack::run(args)),
        Step::Convert(args) => finish("layerlift convert", crate::convert::run(args)),
        Step::Push(args) => finish("layerlift push", crate::push::run(args)),
        Step::Pack(args) => finish("layerlift pack", crate::pack::run(args)),
        Step::Check(args) => finish("layerlift check", crate::check::run(args)),
        Step::Completions { shell } => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(&completions(shell))
                .and_then(|()| stdout.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => finish(
                    "layerlift completions",
                    Err(anyhow::Error::new(e).context("writing to standard output")),
                ),
            }
        }
    }
}
