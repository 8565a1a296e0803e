//! `cargo xtask dist [--debug]`: the release archive for this machine's target,
//! `target/dist/layerlift-VERSION-TARGET.tar.gz`, and `target/dist/SHA256SUMS` naming it.
//!
//! The archive holds one directory, `layerlift-VERSION-TARGET/`, with [`contents`]: the five
//! binaries (built `--release --locked`), a man page for `layerlift` and each of its commands
//! (`cargo xtask man`), completion scripts for bash, zsh and fish (written by the built
//! `layerlift completions SHELL`) at the paths a `/usr/local`-style prefix uses, the licence and the
//! README. Entries are sorted, owned by root, dated at the commit's time, and gzip'd without a name
//! or time stamp, so that the same commit and toolchain give the same archive. `--debug` packs the
//! debug build instead (quick, to check the packaging itself).

use crate::util;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};

/// The binaries of the archive.
pub const BINARIES: [&str; 5] = [
    "layerlift",
    "layerlift-unpack",
    "layerlift-convert",
    "layerlift-push",
    "layerlift-pack",
];

/// The commands with a man page: `layerlift` and its subcommands.
pub const MAN_PAGES: [&str; 7] = [
    "layerlift",
    "layerlift-unpack",
    "layerlift-convert",
    "layerlift-push",
    "layerlift-pack",
    "layerlift-check",
    "layerlift-completions",
];

/// Each shell `layerlift completions` knows, and where its script goes.
pub const COMPLETIONS: [(&str, &str); 3] = [
    ("bash", "share/bash-completion/completions/layerlift"),
    ("zsh", "share/zsh/site-functions/_layerlift"),
    ("fish", "share/fish/vendor_completions.d/layerlift.fish"),
];

/// Every file of the archive, relative to its top directory, sorted.
pub fn contents() -> Vec<String> {
    let mut files: Vec<String> = BINARIES.iter().map(|b| format!("bin/{b}")).collect();
    files.extend(MAN_PAGES.iter().map(|m| format!("share/man/man1/{m}.1")));
    files.extend(COMPLETIONS.iter().map(|(_, p)| p.to_string()));
    files.extend(["LICENSE".to_string(), "README.md".to_string()]);
    files.sort();
    files
}

/// `cargo xtask dist [--debug]`
pub fn run(args: &[String]) -> Result<ExitCode> {
    let mut debug = false;
    for a in args {
        match a.as_str() {
            "--debug" => debug = true,
            "-h" | "--help" => {
                println!(
                    "cargo xtask dist [--debug]\n\nBuild target/dist/layerlift-VERSION-TARGET.tar.gz \
                     and target/dist/SHA256SUMS.\n--debug  pack the debug build (to test the packaging)"
                );
                return Ok(ExitCode::SUCCESS);
            }
            other => bail!("dist: unknown argument `{other}`"),
        }
    }
    let root = util::workspace_root();
    let target = host_target()?;
    let version = env!("CARGO_PKG_VERSION");
    let name = format!("layerlift-{version}-{target}");
    let dist = util::xtask_out_dir().join("dist");
    let stage = dist.join(&name);
    util::remove_any(&stage)?;
    fs::create_dir_all(&stage).with_context(|| format!("create {}", stage.display()))?;

    // The binaries.
    let mut build = util::cargo();
    build
        .current_dir(&root)
        .args(["build", "--locked", "--package", "layerlift", "--bins"]);
    if !debug {
        build.arg("--release");
    }
    eprintln!("xtask dist: {}", util::show(&build));
    if !build.status().context("cannot run cargo build")?.success() {
        bail!("cargo build failed");
    }
    let bin_dir = util::cargo_target_dir().join(if debug { "debug" } else { "release" });
    fs::create_dir_all(stage.join("bin"))?;
    for b in BINARIES {
        fs::copy(bin_dir.join(b), stage.join("bin").join(b))
            .with_context(|| format!("copy {}", bin_dir.join(b).display()))?;
    }
    // Man pages, from the same clap definitions.
    let man_dir = stage.join("share/man/man1");
    if crate::man::run(&[man_dir.display().to_string()])? != ExitCode::SUCCESS {
        bail!("cargo xtask man failed");
    }
    // Completions, written by the binary being shipped.
    for (shell, path) in COMPLETIONS {
        let script = util::run_quiet(
            Command::new(stage.join("bin/layerlift")).args(["completions", shell]),
        )?;
        let dest = stage.join(path);
        fs::create_dir_all(dest.parent().unwrap())?;
        fs::write(&dest, script).with_context(|| format!("write {}", dest.display()))?;
    }
    for f in ["LICENSE", "README.md"] {
        fs::copy(root.join(f), stage.join(f)).with_context(|| format!("copy {f}"))?;
    }
    let staged = list_files(&stage)?;
    if staged != contents() {
        bail!(
            "the staged files are not the archive's listing:\n  staged:   {staged:?}\n  expected: {:?}",
            contents()
        );
    }

    // The archive: reproducible entries, gzip without name or time.
    let archive = format!("{name}.tar.gz");
    let mtime = commit_time(&root).unwrap_or(0);
    util::run_quiet(Command::new("tar").current_dir(&dist).args([
        "--sort=name",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--mode=u+rwX,go+rX,go-w",
        &format!("--mtime=@{mtime}"),
        "--use-compress-program=gzip -n -9",
        "-cf",
        &archive,
        &name,
    ]))?;
    let bytes = fs::read(dist.join(&archive))?;
    let sums = format!("{}  {archive}\n", util::sha256_hex(&bytes));
    fs::write(dist.join("SHA256SUMS"), &sums)?;
    util::remove_any(&stage)?;
    println!("{}", dist.join(&archive).display());
    println!("{}", dist.join("SHA256SUMS").display());
    Ok(ExitCode::SUCCESS)
}

/// Files under `dir`, relative to it, sorted (directories are not listed).
fn list_files(dir: &Path) -> Result<Vec<String>> {
    fn walk(base: &Path, dir: &Path, acc: &mut Vec<String>) -> Result<()> {
        for e in fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
            let e = e?;
            if e.file_type()?.is_dir() {
                walk(base, &e.path(), acc)?;
            } else {
                acc.push(e.path().strip_prefix(base)?.display().to_string());
            }
        }
        Ok(())
    }
    let mut acc = Vec::new();
    walk(dir, dir, &mut acc)?;
    acc.sort();
    Ok(acc)
}

/// The host target triple, from `rustc -vV`.
fn host_target() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = util::run_quiet(Command::new(rustc).arg("-vV"))?;
    String::from_utf8_lossy(&out)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("`rustc -vV` names no host target")
}

/// The commit's time (seconds since the epoch), for the archive's entry dates.
fn commit_time(root: &Path) -> Option<u64> {
    let out = Command::new("git")
        .current_dir(root)
        .args(["log", "-1", "--format=%ct"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_lists_binaries_man_pages_completions_licence_and_readme() {
        let files = contents();
        for b in BINARIES {
            assert!(files.contains(&format!("bin/{b}")), "{b}");
        }
        // A man page for every binary and for every subcommand of `layerlift`.
        for cmd in [
            "layerlift",
            "layerlift-unpack",
            "layerlift-convert",
            "layerlift-push",
            "layerlift-pack",
            "layerlift-check",
            "layerlift-completions",
        ] {
            assert!(files.contains(&format!("share/man/man1/{cmd}.1")), "{cmd}");
        }
        for shell in ["bash", "zsh", "fish"] {
            assert!(
                COMPLETIONS
                    .iter()
                    .any(|(s, p)| *s == shell && files.contains(&p.to_string()))
            );
        }
        assert!(files.contains(&"LICENSE".to_string()));
        assert!(files.contains(&"README.md".to_string()));
        assert_eq!(files.len(), 5 + 7 + 3 + 2);
        let mut sorted = files.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, files);
    }
}
