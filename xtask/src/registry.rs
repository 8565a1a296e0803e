//! A throw-away Debian `docker-registry` (distribution 2.8) for `cargo xtask bench`: 127.0.0.1, a
//! free port, fresh filesystem storage, anonymous, plain HTTP. The same configuration as the test
//! kit's launcher (crates/testkit/src/registry.rs), written here so that xtask does not depend on
//! the test kit. Killed and reaped when dropped, so an error in the middle of a bench run does not
//! leave it behind.

use anyhow::{Context, Result, bail};
use std::fs::{self, File};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry; killed on drop.
pub struct Registry {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// The registry binary: `$LAYERLIFT_REGISTRY_BIN`, else `/usr/bin/docker-registry`.
fn binary() -> PathBuf {
    std::env::var_os("LAYERLIFT_REGISTRY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"))
}

impl Registry {
    /// Start a registry whose config, log and storage live in `dir` (emptied first).
    pub fn start(dir: &Path) -> Result<Self> {
        let bin = binary();
        if !bin.is_file() {
            bail!(
                "{} not found: install Debian's docker-registry package (scripts/install-test-deps.sh) or set LAYERLIFT_REGISTRY_BIN",
                bin.display()
            );
        }
        // A few attempts in case another process takes the port between probe and bind.
        for _ in 0..5 {
            crate::measure::fresh_dir(dir)?;
            let storage = dir.join("storage");
            fs::create_dir_all(&storage)?;
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .context("no free port on 127.0.0.1")?
                .port();
            let yaml = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: layerlift-xtask-bench\n",
                storage.display()
            );
            fs::write(dir.join("config.yml"), yaml)?;
            let log = File::create(dir.join("registry.log"))?;
            let child = Command::new(&bin)
                .arg("serve")
                .arg(dir.join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .env_remove("REGISTRY_HTTP_ADDR")
                .spawn()
                .with_context(|| format!("cannot start {}", bin.display()))?;
            let mut reg = Registry {
                child,
                port,
                dir: dir.to_path_buf(),
            };
            match reg.wait_ready(Duration::from_secs(20)) {
                Ok(()) => return Ok(reg),
                Err(port_taken) => {
                    let log = reg.log();
                    drop(reg);
                    if !port_taken {
                        bail!("docker-registry did not start:\n{log}");
                    }
                }
            }
        }
        bail!("docker-registry could not bind a free port")
    }

    /// Err(true) when the port was taken by someone else.
    fn wait_ready(&mut self, timeout: Duration) -> std::result::Result<(), bool> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(self.log().contains("address already in use"));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(false)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The storage directory of one repository (`bench/a1`), as distribution lays it out.
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.dir
            .join("storage/docker/registry/v2/repositories")
            .join(repo)
    }

    /// Sum of the layer sizes of the manifest that `repo:tag` points at, read from the storage.
    pub fn stored_layer_bytes(&self, repo: &str, tag: &str) -> Result<u64> {
        let blob = |digest: &str| -> Result<Vec<u8>> {
            let hex = digest
                .strip_prefix("sha256:")
                .context("not a sha256 digest")?;
            let p = self
                .dir
                .join("storage/docker/registry/v2/blobs/sha256")
                .join(&hex[..2])
                .join(hex)
                .join("data");
            fs::read(&p).with_context(|| format!("read {}", p.display()))
        };
        let link = self
            .repo_dir(repo)
            .join("_manifests/tags")
            .join(tag)
            .join("current/link");
        let digest =
            fs::read_to_string(&link).with_context(|| format!("read {}", link.display()))?;
        let manifest: serde_json::Value = serde_json::from_slice(&blob(digest.trim())?)?;
        Ok(manifest["layers"]
            .as_array()
            .context("no layers in the stored manifest")?
            .iter()
            .filter_map(|l| l["size"].as_u64())
            .sum())
    }

    /// CPU time (user + system, all threads) the registry process has used since it started, from
    /// `/proc/PID/stat` (clock-tick resolution, 10 ms).
    pub fn cpu_time(&self) -> Result<Duration> {
        let path = format!("/proc/{}/stat", self.child.id());
        let stat = fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        let ticks =
            cpu_ticks(&stat).with_context(|| format!("{path}: no CPU time fields in {stat:?}"))?;
        Ok(Duration::from_secs_f64(
            ticks as f64 / crate::util::clock_ticks_per_second(),
        ))
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a `/proc/PID/stat` line, in clock ticks. The command name (field 2) is in
/// parentheses and may hold spaces and parentheses, so the fields are counted after its last `)`:
/// state (field 3) comes first there, utime (14) and stime (15) 12th and 13th.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(field(11)? + field(12)?)
}

#[cfg(test)]
mod tests {
    use super::cpu_ticks;

    #[test]
    fn cpu_ticks_count_fields_after_the_command_name() {
        // A real line (docker-registry), with the command name given spaces and a parenthesis.
        let line = "4067 (docker (reg) x) S 1 4066 4066 0 -1 4194560 3961 0 0 0 1530 341 0 0 20 0 9 0 2562650 1520279552 7394 18446744073709551615 4194304 13632497 140733553541152 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(cpu_ticks(line), Some(1530 + 341));
        assert_eq!(cpu_ticks("4067 (docker-registry) S 1 2"), None);
        assert_eq!(cpu_ticks("no parenthesis"), None);
    }
}
