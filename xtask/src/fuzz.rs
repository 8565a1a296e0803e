//! `cargo xtask fuzz`: build and run the cargo-fuzz targets in `fuzz/` (nightly + cargo-fuzz).
//!
//! Each target's working corpus is `fuzz/corpus/<target>/` (not committed). Before a run it is
//! seeded from `fuzz/seeds/<target>/` (small committed inputs), `fuzz/regressions/<target>/`
//! (inputs that once crashed a target, kept so that they are replayed on every run; the registry
//! targets' regressions and seeds are also replayed by `cargo test`, see
//! `layerlift_registry::fuzzing`), and, for the archive and JSON targets, from the real-tool
//! fixtures (`tests/fixtures/`): the archives
//! themselves and the JSON documents inside them. `--minutes N` is the total time, split evenly
//! between the targets; a crash does not stop the other targets, but fails the task at the end with
//! the paths of the inputs libFuzzer saved under `fuzz/artifacts/<target>/`.

use crate::util;
use anyhow::{Context, Result, bail};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The targets, with the largest input libFuzzer makes for each.
const TARGETS: &[(&str, usize)] = &[
    ("archive_bytes", 64 << 10),
    ("archive_tar", 16 << 10),
    ("manifest_json", 16 << 10),
    ("www_authenticate", 1 << 10),
    ("upload_headers", 1 << 10),
    ("token_response", 1 << 10),
];

/// Targets whose inputs are decoded by `arbitrary` into a structure and have no seeds: libFuzzer
/// would otherwise start from inputs of a few bytes (a tar of no entries) and grow them slowly.
const NO_LEN_CONTROL: &[&str] = &["archive_tar"];

/// Shared fixtures larger than this are not copied into the archive corpus (libFuzzer would only
/// see their first `max_len` bytes anyway); the JSON inside them still is.
const MAX_SEED_ARCHIVE: u64 = 256 << 10;

const USAGE: &str = "\
cargo xtask fuzz [--minutes N] [--build-only] [--regressions] [TARGET…]

  --minutes N     total fuzzing time, split evenly between the targets (default 2)
  --build-only    build the targets and stop (what CI does)
  --regressions   replay fuzz/regressions/ and the seeds once, no fuzzing (seconds)
  TARGET…         only these (default: all of archive_bytes archive_tar manifest_json
                  www_authenticate upload_headers token_response)

Needs the nightly toolchain and cargo-fuzz (`scripts/install-test-deps.sh --fuzz`).";

/// `cargo xtask fuzz`
pub fn run(args: &[String]) -> Result<()> {
    let mut minutes = 2.0f64;
    let (mut build_only, mut replay) = (false, false);
    let mut chosen: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--minutes" => {
                let v = it.next().context("--minutes needs a number")?;
                minutes = v
                    .parse()
                    .ok()
                    .filter(|m: &f64| *m > 0.0)
                    .with_context(|| format!("--minutes: `{v}` is not a positive number"))?;
            }
            "--build-only" => build_only = true,
            "--regressions" => replay = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            t if TARGETS.iter().any(|(name, _)| *name == t) => chosen.push(t),
            other => bail!("fuzz: unknown argument `{other}`\n\n{USAGE}"),
        }
    }
    let targets: Vec<(&str, usize)> = TARGETS
        .iter()
        .copied()
        .filter(|(t, _)| chosen.is_empty() || chosen.contains(t))
        .collect();
    check_tools()?;
    let fuzz_dir = util::workspace_root().join("fuzz");

    let start = Instant::now();
    let mut build = fuzz_cmd(&fuzz_dir, "build");
    build.args(targets.len().eq(&1).then_some(targets[0].0));
    eprintln!("xtask fuzz: {}", util::show(&build));
    let status = build.status().context("cannot run cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    eprintln!(
        "xtask fuzz: {} targets built in {:.0}s",
        targets.len(),
        start.elapsed().as_secs_f64()
    );
    if build_only {
        return Ok(());
    }

    let per_target = ((minutes * 60.0) / targets.len() as f64).max(1.0).round() as u64;
    let mut crashed = Vec::new();
    for (target, max_len) in &targets {
        let corpus = fuzz_dir.join("corpus").join(target);
        let seeded = seed(&fuzz_dir, target, &corpus)?;
        let mut cmd = fuzz_cmd(&fuzz_dir, "run");
        cmd.arg(target).arg(&corpus);
        cmd.arg("--").args([
            format!("-max_len={max_len}"),
            "-rss_limit_mb=2048".into(),
            "-timeout=20".into(),
            "-print_final_stats=1".into(),
        ]);
        if NO_LEN_CONTROL.contains(target) {
            cmd.arg("-len_control=0");
        }
        if replay {
            cmd.arg("-runs=0");
        } else {
            cmd.arg(format!("-max_total_time={per_target}"));
        }
        eprintln!(
            "xtask fuzz: {target}: {seeded} seed inputs; {}",
            if replay {
                "replaying them once".to_string()
            } else {
                format!("fuzzing for {per_target}s")
            }
        );
        let status = cmd.status().context("cannot run cargo fuzz run")?;
        if !status.success() {
            crashed.push(*target);
        }
    }
    if !crashed.is_empty() {
        bail!(
            "{} target(s) failed: {}; the failing inputs are under {} (triage them, fix the crash, \
             and keep the input in fuzz/regressions/<target>/)",
            crashed.len(),
            crashed.join(", "),
            fuzz_dir.join("artifacts").display()
        );
    }
    eprintln!(
        "xtask fuzz: {} targets ran without a crash in {:.0}s",
        targets.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Fail early, with the fix, when nightly or cargo-fuzz is missing.
fn check_tools() -> Result<()> {
    let ok = |args: &[&str]| {
        nightly_cargo()
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ok(&["--version"]) {
        bail!(
            "the nightly toolchain is missing: `rustup toolchain install nightly --profile minimal` \
             (or scripts/install-test-deps.sh --fuzz)"
        );
    }
    if !ok(&["fuzz", "--version"]) {
        bail!(
            "cargo-fuzz is missing: `cargo install cargo-fuzz --locked` \
             (or scripts/install-test-deps.sh --fuzz)"
        );
    }
    Ok(())
}

/// `cargo +nightly`, through rustup's proxy (not the stable cargo that runs xtask).
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly").env_remove("RUSTUP_TOOLCHAIN");
    cmd
}

/// `cargo +nightly fuzz <sub>` in `fuzz/`, with debug assertions (overflow checks) on and the
/// build under `$CARGO_TARGET_DIR/fuzz` (or `target/fuzz`).
fn fuzz_cmd(fuzz_dir: &Path, sub: &str) -> Command {
    let mut cmd = nightly_cargo();
    cmd.current_dir(fuzz_dir)
        .args(["fuzz", sub, "--debug-assertions", "--target-dir"])
        .arg(util::cargo_target_dir().join("fuzz"));
    cmd
}

/// Fill `corpus` with the target's seeds; returns how many files it holds.
fn seed(fuzz_dir: &Path, target: &str, corpus: &Path) -> Result<usize> {
    fs::create_dir_all(corpus).with_context(|| format!("create {}", corpus.display()))?;
    for dir in ["seeds", "regressions"] {
        let from = fuzz_dir.join(dir).join(target);
        if let Ok(entries) = fs::read_dir(&from) {
            for e in entries {
                let e = e?;
                if e.file_type()?.is_file() {
                    let name = format!("{dir}-{}", e.file_name().to_string_lossy());
                    fs::copy(e.path(), corpus.join(name))?;
                }
            }
        }
    }
    let real = util::real_tool_fixtures_dir();
    if real.is_dir() && matches!(target, "archive_bytes" | "manifest_json") {
        let mut files = Vec::new();
        walk(&real, &mut files)?;
        for path in files {
            let key = util::sha256_hex(path.to_string_lossy().as_bytes());
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if target == "archive_bytes" && meta.len() <= MAX_SEED_ARCHIVE {
                fs::copy(&path, corpus.join(format!("real-{}", &key[..16])))?;
            }
            if target == "manifest_json" {
                for (i, doc) in json_documents(&path, meta.len()).into_iter().enumerate() {
                    fs::write(corpus.join(format!("real-{}-{i}", &key[..16])), doc)?;
                }
            }
        }
    }
    Ok(fs::read_dir(corpus)?.count())
}

fn walk(dir: &Path, acc: &mut Vec<PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let e = e?;
        let ty = e.file_type()?;
        if ty.is_dir() {
            walk(&e.path(), acc)?;
        } else if ty.is_file() {
            acc.push(e.path());
        }
    }
    Ok(())
}

/// The small JSON documents in a file: the file itself, or the entries of a tar.
fn json_documents(path: &Path, len: u64) -> Vec<Vec<u8>> {
    let looks_json = |b: &[u8]| {
        b.len() <= 64 << 10
            && matches!(
                b.iter().find(|c| !c.is_ascii_whitespace()),
                Some(b'{' | b'[')
            )
    };
    if path.extension().is_some_and(|e| e == "tar") {
        let Ok(file) = fs::File::open(path) else {
            return Vec::new();
        };
        let mut archive = tar::Archive::new(file);
        let Ok(entries) = archive.entries() else {
            return Vec::new();
        };
        let mut docs = Vec::new();
        for mut entry in entries.flatten().take(10_000) {
            if entry.size() > 64 << 10 {
                continue;
            }
            let mut b = Vec::new();
            if entry.read_to_end(&mut b).is_ok() && looks_json(&b) {
                docs.push(b);
            }
        }
        return docs;
    }
    if len <= 64 << 10
        && let Ok(b) = fs::read(path)
        && looks_json(&b)
    {
        return vec![b];
    }
    Vec::new()
}
