//! `layerlift-unpack` (not built yet).

use std::process::ExitCode;

/// Command line of `layerlift-unpack`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "layerlift-unpack",
    version,
    about = "layerlift unpack (not built yet)"
)]
pub struct Args {
    /// Arguments (ignored until this step is built).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

/// Run the step.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    eprintln!("layerlift-unpack: not built yet");
    Ok(ExitCode::from(crate::exit::USAGE))
}
