//! The client's CPU per byte and per layer for the push steps of `cargo xtask bench`, next to the
//! compute floor measured in the same run: what the client cannot avoid doing to the same bytes.
//!
//! The floor is the hidden task `xtask __floor OUT LEVEL FILE…`, run from the release build of
//! xtask (the same profile, so the same libdeflate and sha2 code, as the layerlift binaries). For
//! each uncompressed layer FILE it runs the project's own gzip encoder
//! (`layerlift_layers::GzipEncoder`, on the calling thread, at LEVEL) and sha256 over the layer's
//! bytes and over the compressed bytes, as a push of an archive must (the diff_id, the blob
//! digest). Only that work is timed, with the thread's CPU clock around each call: reading the
//! files is left out, so the floor is pure compute, and a push that reads the archive, copies
//! bytes and talks HTTP runs above it by exactly that overhead.

use crate::bench_steps::{self as bs};
use crate::measure::{self, Log, Measurement, Sample, Step};
use anyhow::{Context, Result, bail};
use sha2::{Digest as _, Sha256};
use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::rc::Rc;
use std::time::Duration;

/// The hidden task that measures the compute floor: `xtask __floor OUT LEVEL FILE…`.
pub const FLOOR_TASK: &str = "__floor";

/// A `Write` that only hashes (the compressed bytes' digest).
struct HashSink(Sha256, u64);

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        self.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// `xtask __floor OUT LEVEL FILE…`: write "CPU_MICROSECONDS BYTES_IN BYTES_OUT FILES" to OUT.
pub fn floor_main(args: &[String]) -> Result<ExitCode> {
    let [out, level, files @ ..] = args else {
        bail!("usage: xtask {FLOOR_TASK} OUT LEVEL FILE…");
    };
    let level: u32 = level.parse().context("LEVEL must be a number")?;
    if files.is_empty() {
        bail!("usage: xtask {FLOOR_TASK} OUT LEVEL FILE…");
    }
    let mut buf = vec![0u8; 1 << 20];
    let (mut cpu, mut bytes_in, mut bytes_out) = (Duration::ZERO, 0u64, 0u64);
    for path in files {
        let mut file = File::open(path).with_context(|| format!("open {path}"))?;
        let mut raw = Sha256::new();
        let mut gz = layerlift_layers::GzipEncoder::new(HashSink(Sha256::new(), 0), level, 1)?;
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("read {path}"))?;
            let t = thread_cpu();
            if n == 0 {
                let HashSink(hash, len) = gz.finish()?;
                std::hint::black_box((hash.finalize(), raw.finalize()));
                cpu += thread_cpu() - t;
                bytes_out += len;
                break;
            }
            raw.update(&buf[..n]);
            gz.write_all(&buf[..n])?;
            cpu += thread_cpu() - t;
            bytes_in += n as u64;
        }
    }
    std::fs::write(
        out,
        format!(
            "{} {bytes_in} {bytes_out} {}\n",
            cpu.as_micros(),
            files.len()
        ),
    )
    .with_context(|| format!("write {out}"))?;
    Ok(ExitCode::SUCCESS)
}

/// The floor step's record: (compute CPU, uncompressed bytes, layers).
fn read_floor(path: &Path) -> Result<(Duration, u64, usize)> {
    let s = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let v: Vec<u64> = s
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    match v[..] {
        [us, bytes_in, _out, files] => Ok((
            Duration::from_micros(us),
            bytes_in,
            usize::try_from(files).unwrap_or(0),
        )),
        _ => bail!("bad floor record in {}: {s:?}", path.display()),
    }
}

/// What a push step processed: uncompressed layer bytes and layers (set once the floor ran).
pub type Volume = Rc<Cell<Option<(u64, usize)>>>;

/// The compute-floor step over the uncompressed layer blobs of `layout` (a layout `layerlift-unpack`
/// made of the archive the push reads): its [`Sample::cpu`] is the compute CPU alone.
pub fn floor_step(
    name: &str,
    xtask: &Path,
    layout: &Path,
    work: &Path,
    volume: Volume,
) -> Result<Step> {
    let blobs: Vec<PathBuf> = bs::layers(layout)?.into_iter().map(|(p, _)| p).collect();
    let xtask = xtask.to_path_buf();
    let tag = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>();
    let log = Log(work.join(format!("floor-{tag}.log")));
    let record = work.join(format!("floor-{tag}.txt"));
    Ok(Step::new(name, move || {
        let mut cmd = Command::new(&xtask);
        cmd.arg(FLOOR_TASK)
            .arg(&record)
            .arg(bs::GZIP_LEVEL.to_string())
            .args(&blobs);
        let sample = measure::time_command(&mut cmd, &log)?;
        let (cpu, bytes, layers) = read_floor(&record)?;
        volume.set(Some((bytes, layers)));
        Ok(Sample { cpu, ..sample })
    }))
}

/// Print client CPU per GB and per layer of each push step in `rows` (step, its floor step, and
/// the volume the floor measured), with the floor beside it and the ratio client ÷ floor.
pub fn print_cpu_table(results: &[Measurement], rows: &[(&str, &str, Volume)]) {
    if rows.is_empty() {
        return;
    }
    let find = |name: &str| results.iter().find(|m| m.name == name);
    println!();
    println!(
        "client CPU (user + system of layerlift-push, medians) per GB of uncompressed layers and per layer; \
         floor: gzip -{} by the project's encoder + sha256 of input and output, same bytes, same run",
        bs::GZIP_LEVEL
    );
    println!(
        "  {:<44} {:>8} {:>9} {:>10} {:>9} {:>10} {:>12}",
        "step", "CPU", "CPU s/GB", "CPU ms/lyr", "floor", "floor s/GB", "CPU / floor"
    );
    for (step, floor, volume) in rows {
        let cpu = find(step).and_then(Measurement::median_cpu);
        let fl = find(floor).and_then(Measurement::median_cpu);
        let Some((bytes, layers)) = volume.get() else {
            continue;
        };
        let gb = bytes as f64 / 1e9;
        let show = |d: Option<Duration>, f: &dyn Fn(f64) -> String| {
            d.map_or_else(|| "-".to_string(), |d| f(d.as_secs_f64()))
        };
        println!(
            "  {:<44} {:>8} {:>9} {:>10} {:>9} {:>10} {:>12}",
            step,
            show(cpu, &|s| format!("{s:.3}s")),
            show(cpu, &|s| format!("{:.3}", s / gb)),
            show(cpu, &|s| format!("{:.1}", s * 1e3 / layers.max(1) as f64)),
            show(fl, &|s| format!("{s:.3}s")),
            show(fl, &|s| format!("{:.3}", s / gb)),
            cpu.zip(fl).map_or_else(
                || "-".into(),
                |(c, f)| format!("{:.2}×", c.as_secs_f64() / f.as_secs_f64().max(1e-9))
            ),
        );
    }
}

pub const FLOOR_6: &str = "compute floor: gzip + sha256, 6-layer ARCHIVE";
pub const FLOOR_40: &str = "compute floor: gzip + sha256, 40-layer ARCHIVE";
pub const BASELINE_PUSH_ARCHIVE: &str = "baseline layerlift-push ARCHIVE (cold)";

/// The CPU side of the push comparison: the floor steps, the baseline's push (with
/// `--baseline DIR`), their targets, and the rows of [`print_cpu_table`].
pub struct PushCpu {
    pub steps: Vec<Step>,
    pub targets: Vec<crate::measure::Target>,
    pub rows: Vec<(&'static str, &'static str, Volume)>,
}

/// The floor of each archive push, over the uncompressed layers of `layouts` (the 6-layer and the
/// 40-layer archive unpacked); with `baseline`, the cold archive push by `baseline`'s
/// `layerlift-push` too (client CPU ≤ 0.8× the baseline's, issue 26).
pub fn push_cpu(
    xtask: &Path,
    layouts: [&Path; 2],
    baseline: Option<(&Path, &Path, Rc<crate::registry::Registry>)>,
    work: &Path,
) -> Result<PushCpu> {
    use crate::measure::Target;
    let (v6, v40) = (Volume::default(), Volume::default());
    let mut steps = vec![
        floor_step(FLOOR_6, xtask, layouts[0], work, v6.clone())?,
        floor_step(FLOOR_40, xtask, layouts[1], work, v40.clone())?,
    ];
    let mut rows = vec![
        (bs::PUSH_ARCHIVE, FLOOR_6, v6.clone()),
        (bs::PUSH_ARCHIVE_40, FLOOR_40, v40),
    ];
    let mut targets = vec![
        Target::CpuRatio {
            label: "push ARCHIVE client CPU / compute floor".into(),
            numerator: bs::PUSH_ARCHIVE.into(),
            denominator: FLOOR_6.into(),
            max: 1.15,
        },
        Target::CpuInfo {
            label: "push 40-layer ARCHIVE client CPU / compute floor".into(),
            numerator: bs::PUSH_ARCHIVE_40.into(),
            denominator: FLOOR_40.into(),
        },
    ];
    if let Some((dir, archive, registry)) = baseline {
        let push = dir.join("layerlift-push");
        if !push.is_file() {
            bail!("--baseline: no {}", push.display());
        }
        let which = bs::ArchivePush {
            names: [BASELINE_PUSH_ARCHIVE, "baseline (unused)"],
            prefixes: ["z", "zx"],
        };
        let (mut s, _) = bs::archive_push_steps(&push, archive, registry, work, &which);
        steps.push(s.remove(0));
        rows.push((BASELINE_PUSH_ARCHIVE, FLOOR_6, v6));
        targets.push(Target::CpuRatio {
            label: "push ARCHIVE client CPU / baseline's".into(),
            numerator: bs::PUSH_ARCHIVE.into(),
            denominator: BASELINE_PUSH_ARCHIVE.into(),
            max: 0.8,
        });
        targets.push(Target::Info {
            label: "push ARCHIVE / baseline".into(),
            numerator: bs::PUSH_ARCHIVE.into(),
            denominator: BASELINE_PUSH_ARCHIVE.into(),
        });
    }
    Ok(PushCpu {
        steps,
        targets,
        rows,
    })
}
