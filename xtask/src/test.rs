//! `cargo xtask test`: the whole suite, as `.ci/run` and the README run it: the API documentation
//! builds without a warning, then every test of the workspace.

use crate::{fixtures, lint, util};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

/// Install tools, lint, generate fixtures, check the docs, run `cargo test --workspace --locked ARGS…`.
pub fn run(args: &[String]) -> Result<ExitCode> {
    install_deps()?;
    check_lint()?;
    let dir = fixtures::fixtures_dir();
    fixtures::generate(&dir)?;
    check_docs()?;

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
    cmd.env("LAYERLIFT_FIXTURES_DIR", &dir);
    eprintln!("xtask test: {}", util::show(&cmd));
    // cargo test prints one summary per test binary, and its last one is usually a crate's
    // doc-tests with nothing to run; pass everything through and close with the totals.
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().context("cannot run cargo test")?;
    let mut totals = Totals::default();
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        totals.add(&line);
    }
    let status = child.wait().context("cannot run cargo test")?;
    println!();
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if status.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("xtask test: cargo test failed ({status})");
        Ok(ExitCode::FAILURE)
    }
}

/// `cargo xtask lint`: no module import cycle, no over-long function in `crates/*/src`.
fn check_lint() -> Result<()> {
    let findings = lint::check_workspace(&util::workspace_root())?;
    for f in &findings {
        eprintln!("{f}");
    }
    if !findings.is_empty() {
        bail!("`cargo xtask lint` found {} problem(s)", findings.len());
    }
    Ok(())
}

/// `cargo doc --no-deps` of the workspace's crates with warnings as errors: every public item of the
/// libraries is documented and every intra-doc link resolves.
fn check_docs() -> Result<()> {
    let mut cmd = util::cargo();
    cmd.args([
        "doc",
        "--no-deps",
        "--workspace",
        "--exclude",
        "xtask",
        "--locked",
    ])
    .env("RUSTDOCFLAGS", "-D warnings");
    eprintln!(
        "xtask test: RUSTDOCFLAGS='-D warnings' {}",
        util::show(&cmd)
    );
    let status = cmd.status().context("cannot run cargo doc")?;
    if !status.success() {
        bail!("the API documentation has warnings (cargo doc {status})");
    }
    Ok(())
}

/// Sums of cargo test's `test result:` lines.
#[derive(Debug, Default, PartialEq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// `test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; …`
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_cargo_summaries() {
        let mut t = Totals::default();
        t.add("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        t.add("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s");
        t.add("running 3 tests");
        assert_eq!(
            t,
            Totals {
                passed: 15,
                failed: 2,
                ignored: 1
            }
        );
    }
}
