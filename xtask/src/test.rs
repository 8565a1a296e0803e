//! `cargo xtask test`: the whole suite, as `.ci/run` and the README run it.

use crate::{fixtures, util};
use anyhow::{Context, Result, bail};
use std::process::{Command, ExitCode};

/// Install tools, generate fixtures, run `cargo test --workspace --locked ARGS…`.
pub fn run(args: &[String]) -> Result<ExitCode> {
    install_deps()?;
    let dir = fixtures::fixtures_dir();
    fixtures::generate(&dir)?;

    let mut cmd = util::cargo();
    cmd.arg("test");
    // `-p`/`--package` narrows the run; cargo rejects it next to `--workspace`.
    let narrowed = args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "-p" || a.starts_with("--package") || a.starts_with("-p"));
    if !narrowed {
        cmd.arg("--workspace");
    }
    cmd.arg("--locked").args(args);
    cmd.env("LAYERLIFT_FIXTURES_DIR", &dir)
        .env("LAYERLIFT_SHARED_FIXTURES", util::shared_fixtures_dir());
    eprintln!("xtask test: {}", util::show(&cmd));
    let status = cmd.status().context("cannot run cargo test")?;
    if status.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("xtask test: cargo test failed ({status})");
        Ok(ExitCode::FAILURE)
    }
}

/// Run scripts/install-test-deps.sh when root; otherwise only check that the tools are there.
fn install_deps() -> Result<()> {
    let script = util::workspace_root().join("scripts/install-test-deps.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script);
    if !util::is_root() {
        cmd.arg("--check");
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !status.success() {
        if util::is_root() {
            bail!("{} failed ({status})", script.display());
        }
        bail!(
            "test tools are missing and installing them needs root: run `sudo {}`",
            script.display()
        );
    }
    Ok(())
}
