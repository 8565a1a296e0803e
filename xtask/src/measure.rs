//! A small benchmark harness: steps that run commands, timed with wall clock and measured for peak
//! RSS with wait4(2), repeated in interleaved rounds after a warm-up, reported as medians; and
//! targets (ratios of medians, peak RSS bounds) checked against them.
//!
//! A comparison is two or more [`Step`]s and a [`Target::Ratio`] between them (bench.rs has unpack,
//! convert and push); [`Target::Value`] checks a number known only after the runs (output sizes).

use anyhow::{Context, Result, bail};
use std::fs::File;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// One timed run.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub wall: Duration,
    /// Peak resident set size of the measured process, in KiB (`ru_maxrss`).
    pub peak_rss_kib: u64,
    /// User + system CPU time of the measured process (not of a pipeline's producer).
    pub cpu: Duration,
    /// CPU time the registry used while the step ran (push steps; the registry shares the
    /// machine's CPUs with the client).
    pub server_cpu: Option<Duration>,
}

/// A benchmark step: how to prepare (untimed), run (timed) and check (untimed) one repetition.
pub struct Step {
    pub name: String,
    pub prepare: Box<dyn FnMut() -> Result<()>>,
    pub run: Box<dyn FnMut() -> Result<Sample>>,
    pub verify: Box<dyn FnMut() -> Result<()>>,
}

impl Step {
    pub fn new(name: impl Into<String>, run: impl FnMut() -> Result<Sample> + 'static) -> Self {
        Self {
            name: name.into(),
            prepare: Box::new(|| Ok(())),
            run: Box::new(run),
            verify: Box::new(|| Ok(())),
        }
    }

    pub fn prepare(mut self, f: impl FnMut() -> Result<()> + 'static) -> Self {
        self.prepare = Box::new(f);
        self
    }

    pub fn verify(mut self, f: impl FnMut() -> Result<()> + 'static) -> Self {
        self.verify = Box::new(f);
        self
    }
}

/// The samples of one step (or why it could not be measured).
#[derive(Debug)]
pub struct Measurement {
    pub name: String,
    pub samples: Vec<Sample>,
    pub error: Option<String>,
}

/// The median of some durations (the mean of the middle two for an even count).
fn median_of(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2),
    }
}

impl Measurement {
    pub fn median(&self) -> Option<Duration> {
        median_of(self.samples.iter().map(|s| s.wall).collect())
    }

    pub fn min(&self) -> Option<Duration> {
        self.samples.iter().map(|s| s.wall).min()
    }

    pub fn max(&self) -> Option<Duration> {
        self.samples.iter().map(|s| s.wall).max()
    }

    /// Median CPU time (user + system) of the measured process.
    pub fn median_cpu(&self) -> Option<Duration> {
        median_of(self.samples.iter().map(|s| s.cpu).collect())
    }

    /// Median CPU time of the registry during the step, when it was measured in every run.
    pub fn median_server_cpu(&self) -> Option<Duration> {
        let v: Option<Vec<_>> = self.samples.iter().map(|s| s.server_cpu).collect();
        median_of(v?)
    }

    /// Largest peak RSS over all repetitions, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.samples.iter().map(|s| s.peak_rss_kib).max()
    }
}

/// Run every step once to warm up (page cache, binaries), then `reps` interleaved rounds, so that
/// background load drifts over all steps alike. A step that fails is reported and not run again.
pub fn run_steps(steps: &mut [Step], reps: usize) -> Vec<Measurement> {
    let mut results: Vec<Measurement> = steps
        .iter()
        .map(|s| Measurement {
            name: s.name.clone(),
            samples: Vec::new(),
            error: None,
        })
        .collect();
    for round in 0..=reps {
        let label = if round == 0 {
            "warm-up".to_string()
        } else {
            format!("round {round}/{reps}")
        };
        eprint!("  {label}:");
        for (step, m) in steps.iter_mut().zip(results.iter_mut()) {
            if m.error.is_some() {
                continue;
            }
            let r = (step.prepare)()
                .context("prepare")
                .and_then(|()| (step.run)())
                .and_then(|s| (step.verify)().context("verify").map(|()| s));
            match r {
                Ok(s) => {
                    eprint!(" {} {:.2}s", step.name, s.wall.as_secs_f64());
                    if round > 0 {
                        m.samples.push(s);
                    }
                }
                Err(e) => {
                    eprint!(" {} FAILED", step.name);
                    m.error = Some(format!("{e:#}"));
                }
            }
        }
        eprintln!();
    }
    results
}

/// What a step should achieve.
pub enum Target {
    /// median(numerator) / median(denominator) ≤ max.
    Ratio {
        label: String,
        numerator: String,
        denominator: String,
        max: f64,
    },
    /// The step's peak RSS over all repetitions ≤ max_mib.
    PeakRss {
        label: String,
        step: String,
        max_mib: f64,
    },
    /// A ratio computed outside the step table (output sizes): ≤ max, or < max when `strict`.
    Value {
        label: String,
        value: Option<f64>,
        max: f64,
        strict: bool,
    },
    /// median(numerator) / median(denominator), reported without a target.
    Info {
        label: String,
        numerator: String,
        denominator: String,
    },
    /// Ratio of the median CPU times (user + system), reported without a target: on a shared
    /// machine, what the wall-time ratio would be if both processes had the cores to themselves
    /// and used them equally well.
    CpuInfo {
        label: String,
        numerator: String,
        denominator: String,
    },
    /// median CPU(numerator) / median CPU(denominator) ≤ max: for targets on the client's CPU
    /// (against the compute floor, or an older build), which move much less with background load
    /// than wall times do.
    CpuRatio {
        label: String,
        numerator: String,
        denominator: String,
        max: f64,
    },
    /// The least wall-time ratio the numerator step could reach on this machine, reported without
    /// a target: (its median CPU + the registry's median CPU during it) ÷ `cpus`, over the
    /// denominator's median wall time. Both processes' work has to fit on the same `cpus` cores.
    CpuFloor {
        label: String,
        numerator: String,
        denominator: String,
        cpus: usize,
    },
}

impl Target {
    fn label(&self) -> &str {
        match self {
            Target::Ratio { label, .. }
            | Target::PeakRss { label, .. }
            | Target::Value { label, .. }
            | Target::Info { label, .. }
            | Target::CpuInfo { label, .. }
            | Target::CpuRatio { label, .. }
            | Target::CpuFloor { label, .. } => label,
        }
    }
}

/// median(numerator) / median(denominator) of two steps, when both were measured.
pub fn median_ratio(results: &[Measurement], numerator: &str, denominator: &str) -> Option<f64> {
    let find = |name: &str| results.iter().find(|m| m.name == name);
    find(numerator)
        .and_then(Measurement::median)
        .zip(find(denominator).and_then(Measurement::median))
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64().max(1e-9))
}

/// median CPU(numerator) / median CPU(denominator) of two steps, when both were measured.
pub fn median_cpu_ratio(
    results: &[Measurement],
    numerator: &str,
    denominator: &str,
) -> Option<f64> {
    let find = |name: &str| results.iter().find(|m| m.name == name);
    find(numerator)
        .and_then(Measurement::median_cpu)
        .zip(find(denominator).and_then(Measurement::median_cpu))
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64().max(1e-9))
}

/// Print the step table and the target table; returns whether every target passed.
pub fn report(results: &[Measurement], targets: &[Target]) -> bool {
    let width = results
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!();
    println!(
        "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>10}  {:>4}  {:>12}",
        "step", "median", "min", "max", "CPU", "peak RSS", "runs", "registry CPU"
    );
    for m in results {
        let secs = |d: Option<Duration>| {
            d.map(|d| format!("{:.3}s", d.as_secs_f64()))
                .unwrap_or_else(|| "-".into())
        };
        let rss = m
            .peak_rss_kib()
            .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>10}  {:>4}  {:>12}",
            m.name,
            secs(m.median()),
            secs(m.min()),
            secs(m.max()),
            secs(m.median_cpu()),
            rss,
            m.samples.len(),
            secs(m.median_server_cpu()),
        );
        if let Some(e) = &m.error {
            println!("{:<width$}  FAILED: {}", "", first_lines(e, 6));
        }
    }
    let find = |name: &str| results.iter().find(|m| m.name == name);
    let lw = targets
        .iter()
        .map(|t| t.label().chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    println!();
    println!(
        "{:<lw$}  {:>10}  {:>10}  result",
        "check", "measured", "target"
    );
    let mut all = true;
    for t in targets {
        let (label, measured, target, pass) = match t {
            Target::Ratio {
                label,
                numerator,
                denominator,
                max,
            } => {
                let ratio = median_ratio(results, numerator, denominator);
                (
                    label,
                    ratio.map(|r| format!("{r:.2}×")),
                    format!("≤ {max:.2}×"),
                    ratio.map(|r| r <= *max),
                )
            }
            Target::CpuRatio {
                label,
                numerator,
                denominator,
                max,
            } => {
                let ratio = median_cpu_ratio(results, numerator, denominator);
                (
                    label,
                    ratio.map(|r| format!("{r:.2}×")),
                    format!("≤ {max:.2}×"),
                    ratio.map(|r| r <= *max),
                )
            }
            Target::PeakRss {
                label,
                step,
                max_mib,
            } => {
                let mib = find(step)
                    .and_then(Measurement::peak_rss_kib)
                    .map(|k| k as f64 / 1024.0);
                (
                    label,
                    mib.map(|m| format!("{m:.1} MiB")),
                    format!("≤ {max_mib:.0} MiB"),
                    mib.map(|m| m <= *max_mib),
                )
            }
            Target::Value {
                label,
                value,
                max,
                strict,
            } => (
                label,
                value.map(|r| format!("{r:.3}×")),
                format!("{} {max:.2}×", if *strict { "<" } else { "≤" }),
                value.map(|r| if *strict { r < *max } else { r <= *max }),
            ),
            Target::Info {
                label,
                numerator,
                denominator,
            }
            | Target::CpuInfo {
                label,
                numerator,
                denominator,
            } => {
                let ratio = if matches!(t, Target::Info { .. }) {
                    median_ratio(results, numerator, denominator)
                } else {
                    median_cpu_ratio(results, numerator, denominator)
                };
                print_info(label, ratio, lw);
                continue;
            }
            Target::CpuFloor {
                label,
                numerator,
                denominator,
                cpus,
            } => {
                let busy =
                    find(numerator).and_then(|m| Some(m.median_cpu()? + m.median_server_cpu()?));
                let floor = busy
                    .zip(find(denominator).and_then(Measurement::median))
                    .map(|(busy, wall)| {
                        busy.as_secs_f64() / (*cpus).max(1) as f64 / wall.as_secs_f64().max(1e-9)
                    });
                print_info(label, floor, lw);
                continue;
            }
        };
        let result = match pass {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "n/a (step failed)",
        };
        all &= pass == Some(true);
        println!(
            "{:<lw$}  {:>10}  {:>10}  {result}",
            label,
            measured.unwrap_or_else(|| "-".into()),
            target
        );
    }
    all
}

/// A row of the check table without a target.
fn print_info(label: &str, ratio: Option<f64>, lw: usize) {
    println!(
        "{:<lw$}  {:>10}  {:>10}  (no target)",
        label,
        ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}×")),
        "-"
    );
}

fn first_lines(s: &str, n: usize) -> String {
    let lines: Vec<_> = s.lines().take(n).collect();
    lines.join(" | ")
}

/// Where a measured command's stderr goes (so a failure can be shown without deadlocking on a pipe).
pub struct Log(pub PathBuf);

impl Log {
    fn file(&self) -> Result<File> {
        File::create(&self.0).with_context(|| format!("create {}", self.0.display()))
    }

    fn tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.0) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<_> = s.lines().collect();
        lines[lines.len().saturating_sub(6)..].join("\n")
    }
}

/// Time one command (stdin and stdout null, stderr to `log`); its peak RSS is measured.
pub fn time_command(cmd: &mut Command, log: &Log) -> Result<Sample> {
    let (mut wrapped, rss_file) = with_rusage(cmd, log)?;
    wrapped
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.file()?);
    let start = Instant::now();
    let mut child = wrapped
        .spawn()
        .with_context(|| format!("cannot run `{}`", crate::util::show(cmd)))?;
    let status = child.wait()?;
    let wall = start.elapsed();
    check(status, cmd, log)?;
    let (peak_rss_kib, cpu) = read_rusage(&rss_file)?;
    Ok(Sample {
        wall,
        peak_rss_kib,
        cpu,
        server_cpu: None,
    })
}

/// Time `producer | consumer` until both have exited; the consumer's peak RSS is measured.
pub fn time_pipeline(producer: &mut Command, consumer: &mut Command, log: &Log) -> Result<Sample> {
    let (mut wrapped, rss_file) = with_rusage(consumer, log)?;
    producer
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    wrapped.stdout(Stdio::null()).stderr(log.file()?);
    let start = Instant::now();
    let mut p = producer
        .spawn()
        .with_context(|| format!("cannot run `{}`", crate::util::show(producer)))?;
    // Moved into the consumer: after spawn only the consumer holds the read end, so the producer
    // gets EPIPE if the consumer quits early.
    wrapped.stdin(p.stdout.take().expect("piped stdout"));
    let mut c = match wrapped.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = p.kill();
            let _ = p.wait();
            return Err(e).with_context(|| format!("cannot run `{}`", crate::util::show(consumer)));
        }
    };
    drop(wrapped);
    let cstatus = c.wait()?;
    let pstatus = p.wait()?;
    let wall = start.elapsed();
    check(cstatus, consumer, log)?;
    // A consumer that stops reading early kills the producer with SIGPIPE; the consumer succeeded,
    // so only a producer failure other than SIGPIPE counts.
    if !pstatus.success() && pstatus.signal() != Some(libc::SIGPIPE) {
        bail!("`{}` failed ({pstatus})", crate::util::show(producer));
    }
    let (peak_rss_kib, cpu) = read_rusage(&rss_file)?;
    Ok(Sample {
        wall,
        peak_rss_kib,
        cpu,
        server_cpu: None,
    })
}

fn check(status: ExitStatus, cmd: &Command, log: &Log) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    bail!(
        "`{}` failed ({status}): {}",
        crate::util::show(cmd),
        log.tail()
    )
}

/// The hidden xtask task that runs a command and records its peak RSS: `xtask __rusage FILE -- CMD…`.
pub const RUSAGE_TASK: &str = "__rusage";

/// Why a wrapper: Linux starts a new process's `ru_maxrss` at the RSS of the process that spawned it
/// (the parent's memory map is what exec replaces), so a command spawned straight from this xtask,
/// which holds buffers of its own, would report at least xtask's size. A freshly exec'd xtask is a few
/// MiB, like GNU time; that small floor is what the measured command inherits instead.
fn with_rusage(cmd: &Command, log: &Log) -> Result<(Command, PathBuf)> {
    let rss_file = log.0.with_extension("rss");
    let _ = std::fs::remove_file(&rss_file);
    let mut w = Command::new(std::env::current_exe().context("current_exe")?);
    w.arg(RUSAGE_TASK)
        .arg(&rss_file)
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        w.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    Ok((w, rss_file))
}

/// (peak RSS in KiB, CPU time) from the wrapper's record.
fn read_rusage(path: &Path) -> Result<(u64, Duration)> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("peak RSS not recorded in {}", path.display()))?;
    let v: Vec<u64> = s
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    match v[..] {
        [rss, _floor, cpu_us] => Ok((rss, Duration::from_micros(cpu_us))),
        _ => bail!("bad rusage record in {}: {s:?}", path.display()),
    }
}

/// `xtask __rusage FILE -- CMD ARGS…`: run CMD with our stdio, write
/// "PEAK_RSS_KIB FLOOR_KIB CPU_MICROSECONDS" to FILE,
/// exit with CMD's status (128 + signal when it was killed).
pub fn rusage_main(args: &[String]) -> Result<ExitCode> {
    let [file, dashdash, program, rest @ ..] = args else {
        bail!("usage: xtask {RUSAGE_TASK} FILE -- CMD [ARGS…]");
    };
    if dashdash != "--" {
        bail!("usage: xtask {RUSAGE_TASK} FILE -- CMD [ARGS…]");
    }
    let floor = self_hwm_kib().unwrap_or(0);
    let child = Command::new(program)
        .args(rest)
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    let (status, rss, cpu) = wait_rusage(&child)?;
    std::fs::write(file, format!("{rss} {floor} {}\n", cpu.as_micros()))
        .with_context(|| format!("write {file}"))?;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        (None, Some(sig)) => ExitCode::from(u8::try_from(128 + sig).unwrap_or(255)),
        _ => ExitCode::FAILURE,
    })
}

/// This process's own peak RSS (VmHWM) in KiB: the floor a child spawned now starts from.
fn self_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// wait4(2) on a child: its exit status, peak RSS in KiB and CPU time. The `Child` must not be
/// waited on afterwards (the process is reaped here).
#[allow(unsafe_code)]
fn wait_rusage(child: &Child) -> Result<(ExitStatus, u64, Duration)> {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to a c_int and a rusage owned by this frame; `pid` is our child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("wait4");
        }
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    // Linux reports ru_maxrss in KiB.
    Ok((
        ExitStatus::from_raw(status),
        u64::try_from(usage.ru_maxrss).unwrap_or(0),
        tv(usage.ru_utime) + tv(usage.ru_stime),
    ))
}

/// Remove and recreate an empty directory.
pub fn fresh_dir(dir: &Path) -> Result<()> {
    crate::util::remove_any(dir)?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))
}
