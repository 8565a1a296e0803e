//! `cargo xtask man [DIR]`: man pages for the four binaries, generated with clap_mangen from the
//! CLI's own clap definitions (`layerlift_cli::{unpack,convert,push}::Args`).
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

    let unpack = layerlift_cli::unpack::Args::command();
    let convert = layerlift_cli::convert::Args::command();
    let push = layerlift_cli::push::Args::command();
    // `layerlift` itself (its clap struct lives in the binary): the steps as subcommands.
    // xtask shares the workspace version with the CLI.
    let layerlift = clap::Command::new("layerlift")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Get a saved image archive into any container registry, without a Docker daemon")
        .after_help(
            "Each subcommand is also a binary of its own: `layerlift unpack …` runs the same code \
             as `layerlift-unpack …`. See layerlift-unpack(1), layerlift-convert(1), layerlift-push(1).",
        )
        .subcommand_required(true)
        .subcommand(unpack.clone().name("unpack"))
        .subcommand(convert.clone().name("convert"))
        .subcommand(push.clone().name("push"));

    for cmd in [unpack, convert, push, layerlift] {
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
