//! `layerlift-push` (not built yet).

use std::process::ExitCode;

/// Command line of `layerlift-push`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "layerlift-push",
    version,
    about = "layerlift push (not built yet)"
)]
pub struct Args {
    /// Arguments (ignored until this step is built).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

/// Run the step.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    eprintln!("layerlift-push: not built yet");
    Ok(ExitCode::from(crate::exit::USAGE))
}
