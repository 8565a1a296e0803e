//! `cargo xtask big-layer [--size N]`: the big-layer check, opt-in because it writes
//! several times N to disk. It generates a `docker save`-style archive with one incompressible
//! layer of N bytes (default 4 GiB), then unpacks it, converts the layout to gzip, and pushes both
//! the archive and the gzip layout to a throw-away local `docker-registry`, measuring each step's
//! peak RSS against the bounds of docs/benchmarks.md (unpack 32 MiB, convert 64 MiB, push 48 MiB) and
//! sampling disk use while each runs: no step may hold more than its output's own blobs (for push
//! of the archive, its temporary layout of the compressed layer) — no uncompressed temporary copy.
//! Exit 1 when a bound is exceeded.

use crate::measure::{self, Log};
use crate::registry::Registry;
use crate::util::{self, human_bytes};
use anyhow::{Context, Result, bail};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "cargo xtask big-layer [--size BYTES] [--no-build]";

/// Pseudo-random bytes (xorshift64*): incompressible, fast, the same every run.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A reader of `left` noise bytes.
struct NoiseReader {
    noise: Noise,
    left: u64,
}

impl std::io::Read for NoiseReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize);
        self.noise.fill(&mut buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Write the layer tar (one file of `size` noise bytes) to `path`; its sha256.
fn write_layer(path: &Path, size: u64) -> Result<String> {
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let hashing = util::HashWriter::new(BufWriter::with_capacity(1 << 20, file));
    let mut b = tar::Builder::new(hashing);
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(1_767_225_600);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append_data(
        &mut h,
        "big.bin",
        NoiseReader {
            noise: Noise(0x9E37_79B9_7F4A_7C15),
            left: size,
        },
    )?;
    let (w, hex, _) = b.into_inner()?.finish();
    w.into_inner().map_err(|e| e.into_error())?.flush()?;
    Ok(hex)
}

/// A podman-style docker-archive: `<diff_id>.tar`, `<config digest>.json`, manifest.json.
fn build_archive(dest: &Path, size: u64) -> Result<()> {
    let parts = dest.with_extension("parts");
    measure::fresh_dir(&parts)?;
    let layer = parts.join("layer.tar");
    eprintln!(
        "xtask big-layer: writing a {} layer to {}",
        human_bytes(size),
        layer.display()
    );
    let hex = write_layer(&layer, size)?;
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{hex}")]},
    }))?;
    let config_name = format!("{}.json", util::sha256_hex(&config));
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name, "RepoTags": ["big:1"], "Layers": [format!("{hex}.tar")],
    }]))?;
    let out = File::create(dest).with_context(|| format!("create {}", dest.display()))?;
    let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 20, out));
    let mut add = |name: &str, len: u64, data: &mut dyn std::io::Read| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(len);
        h.set_mode(0o644);
        h.set_mtime(1_767_225_600);
        h.set_cksum();
        b.append_data(&mut h, name, data)?;
        Ok(())
    };
    let layer_len = fs::metadata(&layer)?.len();
    add(&format!("{hex}.tar"), layer_len, &mut File::open(&layer)?)?;
    add(&config_name, config.len() as u64, &mut config.as_slice())?;
    add(
        "manifest.json",
        manifest.len() as u64,
        &mut manifest.as_slice(),
    )?;
    b.into_inner()?.flush()?;
    util::remove_any(&parts)?;
    Ok(())
}

struct Check {
    label: String,
    rss_mib: f64,
    max_mib: f64,
    disk: u64,
    max_disk: u64,
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let mut size: u64 = 4 << 30;
    let mut build = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--size" => {
                size = it
                    .next()
                    .context("--size needs a number of bytes")?
                    .parse()
                    .context("--size needs a number of bytes")?;
            }
            "--no-build" => build = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            other => bail!("big-layer: unknown argument `{other}` ({USAGE})"),
        }
    }
    if build {
        let mut cmd = util::cargo();
        cmd.args(["build", "--release", "--locked", "-p", "layerlift"]);
        eprintln!("xtask big-layer: {}", util::show(&cmd));
        if !cmd.status()?.success() {
            bail!("cargo build --release failed");
        }
    }
    let bin = |name: &str| util::cargo_target_dir().join("release").join(name);
    let dir = util::xtask_out_dir().join("big-layer");
    fs::create_dir_all(&dir)?;
    let archive = dir.join(format!("big-{size}.tar"));
    util::build_once(&archive, |tmp| build_archive(tmp, size))?;
    let archive_size = fs::metadata(&archive)?.len();

    let work = dir.join("work");
    measure::fresh_dir(&work)?;
    let tmpdir = work.join("tmp");
    fs::create_dir_all(&tmpdir)?;
    let log = Log(work.join("step.log"));
    let mut checks = Vec::new();
    let mut step = |label: &str,
                    cmd: &mut Command,
                    max_mib: f64,
                    measured: &[PathBuf],
                    max_disk: u64|
     -> Result<()> {
        cmd.env("TMPDIR", &tmpdir).arg("-q");
        eprintln!("xtask big-layer: {label}");
        // Disk use of the output and TMPDIR, sampled while the step runs: its peak.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let (stop, mut paths) = (stop.clone(), measured.to_vec());
            paths.push(tmpdir.clone());
            std::thread::spawn(move || {
                let mut peak = 0;
                loop {
                    peak = peak.max(paths.iter().map(|p| util::du(p)).sum::<u64>());
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        return peak;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            })
        };
        let s = measure::time_command(cmd, &log);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let disk = sampler.join().expect("the disk sampler does not panic");
        let s = s?;
        eprintln!(
            "  {:.1} s, peak RSS {:.1} MiB, peak on disk: {}",
            s.wall.as_secs_f64(),
            s.peak_rss_kib as f64 / 1024.0,
            human_bytes(disk)
        );
        checks.push(Check {
            label: label.to_string(),
            rss_mib: s.peak_rss_kib as f64 / 1024.0,
            max_mib,
            disk,
            max_disk,
        });
        Ok(())
    };
    let (input, gz) = (work.join("in"), work.join("gz"));
    // Each step's output (and TMPDIR) may hold its blobs (plus a little metadata), nothing more;
    // push ARCHIVE's temporary layout holds the compressed layer.
    let slack = 1 << 20;
    step(
        "unpack ARCHIVE",
        Command::new(bin("layerlift-unpack"))
            .arg(&archive)
            .arg(&input),
        32.0,
        std::slice::from_ref(&input),
        archive_size + slack,
    )?;
    step(
        "convert to gzip",
        Command::new(bin("layerlift-convert")).arg(&input).arg(&gz),
        64.0,
        std::slice::from_ref(&gz),
        // Incompressible: gzip adds a little.
        archive_size + archive_size / 50 + slack,
    )?;
    let registry = Registry::start(&work.join("registry"))?;
    step(
        "push ARCHIVE",
        Command::new(bin("layerlift-push"))
            .arg(&archive)
            .arg(format!("{}/big/archive:1", registry.addr()))
            .arg("--no-cache"),
        48.0,
        &[],
        archive_size + archive_size / 50 + slack,
    )?;
    step(
        "push gzip LAYOUT",
        Command::new(bin("layerlift-push"))
            .arg(&gz)
            .arg(format!("{}/big/layout:1", registry.addr()))
            .arg("--no-cache"),
        48.0,
        &[],
        slack,
    )?;
    drop(registry);

    println!(
        "\nxtask big-layer: one {} incompressible layer ({} archive)",
        human_bytes(size),
        human_bytes(archive_size)
    );
    println!(
        "{:<20} {:>12} {:>10} {:>14} {:>14}",
        "step", "peak RSS", "bound", "peak on disk", "bound"
    );
    let mut ok = true;
    for c in &checks {
        let pass = c.rss_mib <= c.max_mib && c.disk <= c.max_disk;
        ok &= pass;
        println!(
            "{:<20} {:>8.1} MiB {:>6} MiB {:>14} {:>14}  {}",
            c.label,
            c.rss_mib,
            c.max_mib,
            human_bytes(c.disk),
            human_bytes(c.max_disk),
            if pass { "pass" } else { "FAIL" }
        );
    }
    util::remove_any(&work)?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
