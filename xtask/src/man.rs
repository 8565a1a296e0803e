//! `cargo xtask man [DIR]`: man pages for `layerlift` and each of its commands (`layerlift-unpack`,
//! `-convert`, `-push`, `-pack`, `-check`, `-completions`), generated with clap_mangen from the
//! CLI's own clap definitions (`layerlift_cli::app::Cli`).
//!
//! The CLI crate and clap_mangen are optional dependencies behind the `man` feature, so that
//! everyday tasks (`test`, `fixtures`, `bench`) neither wait for nor break on the CLI's build: the
//! `man` task re-runs xtask with `--features man`.

use crate::util;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::ExitCode;

/// The hidden task that does the work inside the `man`-featured build.
pub const MAN_TASK: &str = "__man";

/// `cargo xtask man [DIR]` (default `target/man`).
pub fn run(args: &[String]) -> Result<ExitCode> {
    let dir = match args {
        [] => util::xtask_out_dir().join("man"),
        [d] if !d.starts_with('-') => PathBuf::from(d),
        _ => bail!("usage: cargo xtask man [DIR]   (default: target/man)"),
    };
    let mut cmd = util::cargo();
    cmd.args([
        "run",
        "--quiet",
        "--package",
        "xtask",
        "--features",
        "man",
        "--",
    ])
    .arg(MAN_TASK)
    .arg(&dir);
    let status = cmd
        .status()
        .with_context(|| format!("cannot run `{}`", util::show(&cmd)))?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(not(feature = "man"))]
pub fn generate(_args: &[String]) -> Result<ExitCode> {
    bail!("this xtask was built without the `man` feature; run `cargo xtask man`")
}

#[cfg(feature = "man")]
pub fn generate(args: &[String]) -> Result<ExitCode> {
    use clap::CommandFactory;
    use std::fs;

    let [dir] = args else {
        bail!("usage: xtask {MAN_TASK} DIR");
    };
    let dir = PathBuf::from(dir);
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;

    // `layerlift` as the binary parses it, and one page per subcommand, git-style:
    // layerlift-unpack(1) is both `layerlift unpack` and the `layerlift-unpack` binary.
    let layerlift = layerlift_cli::app::Cli::command();
    let mut pages = vec![layerlift.clone()];
    for sub in layerlift.get_subcommands() {
        let name: &'static str =
            Box::leak(format!("layerlift-{}", sub.get_name()).into_boxed_str());
        pages.push(sub.clone().name(name).bin_name(name));
    }
    for cmd in pages {
        let name = cmd.get_name().to_string();
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut buf)
            .with_context(|| format!("render {name}.1"))?;
        fs::write(&path, buf).with_context(|| format!("write {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
