//! Paths, command running and hashing shared by the tasks.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Where xtask writes its own outputs (fixtures, bench archives): always `<root>/target/`, whatever
/// `CARGO_TARGET_DIR` says, so that tests find the fixtures at a fixed place.
pub fn xtask_out_dir() -> PathBuf {
    workspace_root().join("target")
}

/// Cargo's target directory, where the binaries are built: `CARGO_TARGET_DIR` if set, else
/// `<root>/target`.
pub fn cargo_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// The archives written by real tools, kept in the repository: `<root>/tests/fixtures`.
pub fn real_tool_fixtures_dir() -> PathBuf {
    workspace_root().join("tests/fixtures")
}

/// The `cargo` that runs us (cargo sets `CARGO` for `cargo run`), or `cargo` from PATH.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Is `cmd` on PATH?
pub fn have(cmd: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        let p = dir.join(cmd);
        p.is_file()
            && fs::metadata(&p)
                .map(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o111 != 0
                })
                .unwrap_or(false)
    })
}

/// Render a command for messages.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            s.push_str(&format!("'{a}'"));
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// Run a command to completion with captured output; fail with its stderr if it fails.
pub fn run_quiet(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{}`", show(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// Run `program args… < input > output` (for the compressors).
pub fn run_filter<I, S>(program: &str, args: I, input: &Path, output: &Path) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(fs::File::open(input).with_context(|| format!("open {}", input.display()))?)
        .stdout(fs::File::create(output).with_context(|| format!("create {}", output.display()))?);
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run `{}`", show(&cmd)))?;
    if !out.status.success() {
        bail!(
            "`{} < {}` failed ({}): {}",
            show(&cmd),
            input.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A writer that hashes and counts what passes through it.
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// (inner writer, hex digest, length)
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.len)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Remove a file or directory tree if it exists.
pub fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(path).with_context(|| format!("remove {}", path.display()))
        }
        Ok(_) => fs::remove_file(path).with_context(|| format!("remove {}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("stat {}", path.display())),
    }
}

/// Build `dest` atomically: `build` writes to a temporary sibling, which is renamed into place only
/// when it succeeds. Returns false (and does nothing) when `dest` already exists.
pub fn build_once(dest: &Path, build: impl FnOnce(&Path) -> Result<()>) -> Result<bool> {
    if fs::symlink_metadata(dest).is_ok() {
        return Ok(false);
    }
    let parent = dest.parent().context("destination without a parent")?;
    fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    let name = dest.file_name().context("destination without a name")?;
    let tmp = parent.join(format!(".tmp-{}", name.to_string_lossy()));
    remove_any(&tmp)?;
    match build(&tmp) {
        Ok(()) => {
            fs::rename(&tmp, dest)
                .with_context(|| format!("rename {} to {}", tmp.display(), dest.display()))?;
            Ok(true)
        }
        Err(e) => {
            let _ = remove_any(&tmp);
            Err(e.context(format!("building {}", dest.display())))
        }
    }
}

/// Size of a file or the total size of the regular files under a directory.
pub fn du(path: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(path) else {
        return 0;
    };
    if m.is_dir() {
        fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| du(&e.path())).sum())
            .unwrap_or(0)
    } else if m.is_file() {
        m.len()
    } else {
        0
    }
}

/// Human-readable byte count (`1.50 MiB`).
pub fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// The unit of the CPU times in `/proc/PID/stat` (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clock_ticks_per_second() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

/// Are we running as root (effective uid 0)?
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
