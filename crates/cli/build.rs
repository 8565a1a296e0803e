//! Records the commit the binaries are built from (`LAYERLIFT_COMMIT`, for `--version`): `git
//! rev-parse` when building in a git checkout, else `LAYERLIFT_COMMIT` from the environment (a
//! source tarball's packager can set it), else `unknown`.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=LAYERLIFT_COMMIT");
    let commit = git(&["rev-parse", "--short=12", "HEAD"])
        .or_else(|| std::env::var("LAYERLIFT_COMMIT").ok())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=LAYERLIFT_COMMIT={commit}");
    // Rebuild when HEAD moves (a commit, a checkout); the paths exist only in a git checkout.
    // The branch HEAD names (refs/heads/…), not every branch: other branches' commits change nothing.
    let branch =
        git(&["rev-parse", "--symbolic-full-name", "HEAD"]).filter(|r| r.starts_with("refs/"));
    let mut watch = vec![
        ("--git-dir", "HEAD".to_string()),
        ("--git-common-dir", "packed-refs".to_string()),
    ];
    if let Some(b) = branch {
        watch.push(("--git-common-dir", b));
    }
    for (flag, file) in watch {
        if let Some(dir) = git(&["rev-parse", flag]) {
            let path = PathBuf::from(dir).join(file);
            // A branch only in packed-refs gets its own file at its next commit: watch the folder.
            let watched = if path.exists() {
                Some(path.as_path())
            } else {
                path.parent()
            };
            if let Some(p) = watched.filter(|p| p.exists()) {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
