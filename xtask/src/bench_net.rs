//! `cargo xtask bench --steps net`: cold pushes of `docker save` archives over a link of known
//! speed, layerlift-push against skopeo in the same run, each against the floors that bound it.
//!
//! The bench creates a network namespace of its own (`ip netns add llbench-PID`, root only) and
//! runs itself again inside it (`ip netns exec`), so that the registry and both pushers talk over
//! that namespace's loopback and nothing else. Before each run the step sets the loopback's queueing
//! discipline: `tc qdisc replace dev lo root tbf rate 250mbit` (or `1gbit`), or none (loopback
//! speed). Every byte between client and registry passes that one token bucket.
//!
//! Images: the bench's ~300 MB archive in 6 layers, the same files in one layer, and 39 small
//! layers (~15 MB of files split for 40 layers, which leaves 39: ~400 KiB per layer before
//! compression). Each goes at 250 Mbit/s, 1 Gbit/s and loopback speed; the 39-layer image at
//! loopback speed and through
//! [`DelayProxy`] (a 20 ms round trip: 10 ms each way on every byte), where the requests per blob,
//! not bytes or CPU, bound the time. The kernel here has no `netem`, hence the proxy. On the
//! limited links, layerlift-push also runs with `--level 3` and `--level 6`: whether smaller
//! blobs pay for the CPU once the link is the limit.
//!
//! Floors, printed per step: the link floor (layer bytes the registry stored ÷ the rate: no push
//! can send them faster) and the CPU floor ((the pusher's CPU time + the registry's during the
//! push) ÷ CPUs: client and registry share the cores). Docker's `docker load` + `docker push` is
//! not timed here: the daemon lives outside the namespace and cannot reach its registry.
//!
//! `--baseline DIR` adds a `layerlift-push` of DIR (an older build) to every comparison, for
//! before/after ratios measured in the same run.
//!
//! After the floors, the client CPU of each loopback push per GB and per layer beside its compute
//! floor (see `bench_cpu.rs`), measured in the same rounds.

use crate::bench_steps::{self as bs, ArchivePush, Stored};
use crate::measure::{self, Measurement, Step, Target};
use crate::registry::Registry;
use crate::util::{self, human_bytes};
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Set in the environment of the bench run inside the namespace (its name).
const NETNS_ENV: &str = "LAYERLIFT_BENCH_NETNS";

/// The one-way delay of the latency case (a 20 ms round trip).
const ONE_WAY: Duration = Duration::from_millis(10);

/// Run the net bench: from outside, make the namespace and run again inside it; inside, time.
pub fn run(args: &[String], reps: usize, baseline: Option<&Path>, bin: &Path) -> Result<ExitCode> {
    if std::env::var_os(NETNS_ENV).is_some() {
        return inside(reps, baseline, bin);
    }
    if !util::is_root() {
        bail!("--steps net makes a network namespace (ip netns, tc): run it as root");
    }
    for t in ["ip", "tc", "skopeo"] {
        if !util::have(t) {
            bail!("`{t}` is not on PATH");
        }
    }
    let ns = Netns::create(&format!("llbench-{}", std::process::id()))?;
    let exe = std::env::current_exe().context("the xtask binary")?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.0])
        .arg(exe)
        .arg("bench")
        .args(args)
        .arg("--no-build")
        .env(NETNS_ENV, &ns.0);
    let status = cmd.status().context("cannot run ip netns exec")?;
    drop(ns);
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A network namespace with its loopback up; deleted when dropped.
struct Netns(String);

impl Netns {
    fn create(name: &str) -> Result<Self> {
        util::run_quiet(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns(name.to_string());
        util::run_quiet(Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]))?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The loopback's speed for one step.
#[derive(Clone, Copy, PartialEq)]
enum Link {
    /// `tbf rate N mbit`.
    Mbit(u64),
    /// No qdisc: loopback speed (with the delaying proxy or without).
    Loopback,
}

impl Link {
    fn label(self) -> String {
        match self {
            Link::Mbit(n) if n % 1000 == 0 => format!("{} Gbit/s", n / 1000),
            Link::Mbit(n) => format!("{n} Mbit/s"),
            Link::Loopback => "loopback".into(),
        }
    }

    /// Set the namespace's loopback to this speed (we run inside the namespace).
    fn apply(self) -> Result<()> {
        let _ = Command::new("tc")
            .args(["qdisc", "del", "dev", "lo", "root"])
            .stderr(std::process::Stdio::null())
            .status();
        if let Link::Mbit(n) = self {
            // The bucket holds 1 MiB: bursts that big are a rounding error on 100 MB pushes,
            // and it must hold at least one 64 KiB loopback packet.
            util::run_quiet(Command::new("tc").args([
                "qdisc",
                "add",
                "dev",
                "lo",
                "root",
                "tbf",
                "rate",
                &format!("{n}mbit"),
                "burst",
                "1mb",
                "latency",
                "100ms",
            ]))?;
        }
        Ok(())
    }

    fn bits_per_second(self) -> Option<f64> {
        match self {
            Link::Mbit(n) => Some(n as f64 * 1e6),
            Link::Loopback => None,
        }
    }
}

/// One comparison: an archive over a link, by layerlift (and the baseline) and skopeo.
struct Case {
    link: Link,
    delayed: bool,
    image: &'static str,
    names: [String; 3],
    stored: [Stored; 3],
    /// Other gzip levels: (level, step name, stored bytes).
    variants: Vec<(u32, String, Stored)>,
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn inside(reps: usize, baseline: Option<&Path>, bin: &Path) -> Result<ExitCode> {
    Link::Loopback.apply()?;
    util::run_quiet(Command::new("ip").args(["link", "set", "lo", "up"]))?;
    let bench_dir = util::xtask_out_dir().join("bench");
    std::fs::create_dir_all(&bench_dir)?;
    let archive = |name: &str, budget: u64, layers: usize| -> Result<PathBuf> {
        let p = bench_dir.join(name);
        if !p.exists() {
            eprintln!("xtask bench: building {} (once; cached)", p.display());
            util::build_once(&p, |tmp| crate::bench::build_archive(tmp, budget, layers))?;
        }
        Ok(p)
    };
    let six = archive("docker-save-300M.tar", 300 << 20, 6)?;
    let one = archive("docker-save-300M-1layer.tar", 300 << 20, 1)?;
    let small = archive("docker-save-15M-40layers.tar", 15 << 20, 40)?;
    let work = bench_dir.join("work-net");
    measure::fresh_dir(&work)?;
    let reg = Rc::new(Registry::start(&work.join("registry"))?);
    let upstream: SocketAddr = reg.addr().parse()?;
    let proxy = DelayProxy::start(upstream, ONE_WAY)?;
    eprintln!(
        "xtask bench: docker-registry on {} in namespace {}, delaying proxy on {}",
        reg.addr(),
        std::env::var(NETNS_ENV).unwrap_or_default(),
        proxy.addr
    );
    let push = bin.join("layerlift-push");
    let base = baseline.map(|d| d.join("layerlift-push"));
    if let Some(b) = &base
        && !b.is_file()
    {
        bail!("--baseline: no {}", b.display());
    }

    let mut steps: Vec<Step> = Vec::new();
    let mut cases: Vec<Case> = Vec::new();
    // (link, through the delaying proxy, archive, its label, the gzip levels tried besides the
    // default)
    let plan: [(Link, bool, &Path, &'static str, &[u32]); 8] = [
        (Link::Mbit(250), false, &six, "6 layers", &[3, 6]),
        (Link::Mbit(250), false, &one, "1 layer", &[3, 6]),
        (Link::Mbit(1000), false, &six, "6 layers", &[3]),
        (Link::Mbit(1000), false, &one, "1 layer", &[3]),
        (Link::Loopback, false, &six, "6 layers", &[]),
        (Link::Loopback, false, &one, "1 layer", &[]),
        (Link::Loopback, false, &small, "39 small layers", &[]),
        (Link::Loopback, true, &small, "39 small layers", &[]),
    ];
    for (n, (link, delayed, archive, image, levels)) in plan.into_iter().enumerate() {
        let at = if delayed {
            "20 ms RTT".to_string()
        } else {
            link.label()
        };
        let names = [
            format!("layerlift-push {image}, {at}"),
            format!("skopeo {image}, {at}"),
            format!("baseline layerlift-push {image}, {at}"),
        ];
        let p = |i: usize| leak(format!("n{n}{}", ["a", "s", "b"][i]));
        let via = delayed.then(|| proxy.addr.to_string());
        let which = ArchivePush {
            names: [leak(names[0].clone()), leak(names[1].clone())],
            prefixes: [p(0), p(1)],
        };
        let (mut s, [ours, theirs]) = bs::archive_push_steps_via(
            &push,
            &[],
            archive,
            reg.clone(),
            via.clone(),
            &work,
            &which,
        );
        let mut stored: [Stored; 3] = [ours, theirs, Stored::default()];
        // Only the layerlift step of another comparison (its skopeo twin is dropped unrun).
        let mut solo = |bin: &Path, args: &[&str], name: &str, prefix: String| {
            let which = ArchivePush {
                names: [leak(name.to_string()), leak(format!("{name} (unused)"))],
                prefixes: [leak(prefix.clone()), leak(format!("{prefix}x"))],
            };
            let (mut steps, [stored, _]) = bs::archive_push_steps_via(
                bin,
                args,
                archive,
                reg.clone(),
                via.clone(),
                &work,
                &which,
            );
            s.push(steps.remove(0));
            stored
        };
        if let Some(b) = &base {
            stored[2] = solo(b, &[], &names[2], format!("n{n}b"));
        }
        let mut variants = Vec::new();
        for level in levels {
            let name = format!("layerlift-push --level {level} {image}, {at}");
            let l = level.to_string();
            let st = solo(&push, &["--level", &l], &name, format!("n{n}l{level}"));
            variants.push((*level, name, st));
        }
        for step in &mut s {
            let mut prepare = std::mem::replace(&mut step.prepare, Box::new(|| Ok(())));
            step.prepare = Box::new(move || {
                link.apply()?;
                prepare()
            });
        }
        steps.extend(s);
        cases.push(Case {
            link,
            delayed,
            image,
            names,
            stored,
            variants,
        });
    }
    println!(
        "xtask bench --steps net: {} (6 layers), {} (1 layer), {} (39 layers), {} CPUs, {reps} timed runs per step after 1 warm-up",
        human_bytes(std::fs::metadata(&six)?.len()),
        human_bytes(std::fs::metadata(&one)?.len()),
        human_bytes(std::fs::metadata(&small)?.len()),
        cpus(),
    );
    // The compute floor of each image (its layers unpacked, untimed), beside the loopback pushes.
    let mut cpu_rows = Vec::new();
    for (archive, image) in [
        (&six, "6 layers"),
        (&one, "1 layer"),
        (&small, "39 small layers"),
    ] {
        let layout = work.join(format!("in-{}", image.replace(' ', "-")));
        util::run_quiet(
            Command::new(bin.join("layerlift-unpack"))
                .arg(archive)
                .arg(&layout),
        )?;
        let floor = leak(format!("compute floor: gzip + sha256, {image}"));
        let volume = crate::bench_cpu::Volume::default();
        steps.push(crate::bench_cpu::floor_step(
            floor,
            &bin.join("xtask"),
            &layout,
            &work,
            volume.clone(),
        )?);
        let ours = leak(format!("layerlift-push {image}, loopback"));
        cpu_rows.push((ours, floor, volume));
    }
    let results = measure::run_steps(&mut steps, reps);
    drop(steps);
    Link::Loopback.apply()?;
    drop(proxy);
    drop(reg);

    let mut targets = Vec::new();
    for c in &cases {
        let [ours, skopeo, base] = [0, 1, 2].map(|i| c.names[i].clone());
        let what = format!(
            "{}, {}",
            c.image,
            if c.delayed {
                "20 ms RTT".into()
            } else {
                c.link.label()
            }
        );
        let max = match (c.link, c.image, c.delayed) {
            (Link::Mbit(250), _, _) => Some(1.0),
            (Link::Mbit(1000), "1 layer", _) => Some(0.6),
            (Link::Mbit(1000), _, _) => Some(0.5),
            (Link::Loopback, "39 small layers", false) => Some(0.45),
            _ => None,
        };
        match max {
            Some(max) => targets.push(Target::Ratio {
                label: format!("{what}: layerlift / skopeo"),
                numerator: ours.clone(),
                denominator: skopeo.clone(),
                max,
            }),
            None => targets.push(Target::Info {
                label: format!("{what}: layerlift / skopeo"),
                numerator: ours.clone(),
                denominator: skopeo.clone(),
            }),
        }
        if let Some(bps) = c.link.bits_per_second() {
            let floor = c.stored[0].get().map(|b| b as f64 * 8.0 / bps);
            let median = find(&results, &ours).and_then(Measurement::median);
            targets.push(Target::Value {
                label: format!("{what}: layerlift / link floor"),
                value: floor
                    .zip(median)
                    .map(|(f, m)| m.as_secs_f64() / f.max(1e-9)),
                max: if c.link == Link::Mbit(250) {
                    1.05
                } else {
                    f64::INFINITY
                },
                strict: false,
            });
        }
        if c.link == Link::Loopback && c.image == "6 layers" {
            let m = find(&results, &ours);
            let floor = m.and_then(|m| Some(m.median_cpu()? + m.median_server_cpu()?));
            targets.push(Target::Value {
                label: format!("{what}: layerlift / CPU floor"),
                value: floor
                    .zip(m.and_then(Measurement::median))
                    .map(|(f, w)| w.as_secs_f64() / (f.as_secs_f64() / cpus() as f64).max(1e-9)),
                max: 1.10,
                strict: false,
            });
        }
        for (level, name, _) in &c.variants {
            targets.push(Target::Info {
                label: format!("{what}: layerlift --level {level} / default level"),
                numerator: name.clone(),
                denominator: ours.clone(),
            });
        }
        targets.push(Target::CpuFloor {
            label: format!("{what}: layerlift / skopeo, least possible here (CPU)"),
            numerator: ours.clone(),
            denominator: skopeo.clone(),
            cpus: cpus(),
        });
        targets.push(Target::PeakRss {
            label: format!("{what}: layerlift peak RSS"),
            step: ours.clone(),
            max_mib: 48.0,
        });
        if find(&results, &base).is_some() {
            targets.push(Target::Info {
                label: format!("{what}: layerlift / baseline"),
                numerator: ours,
                denominator: base,
            });
        }
    }
    // Report only: the targets of a shared machine are read from the table, not from the exit code.
    measure::report(&results, &targets);
    println!();
    println!(
        "floors (link: layer bytes stored ÷ rate; CPU: (client + registry CPU) ÷ {} CPUs)",
        cpus()
    );
    for c in &cases {
        let rows = c
            .names
            .iter()
            .zip(&c.stored)
            .chain(c.variants.iter().map(|(_, n, s)| (n, s)));
        for (name, stored) in rows {
            let Some(m) = find(&results, name) else {
                continue;
            };
            let Some(median) = m.median() else { continue };
            let stored = stored.get();
            let link = stored
                .zip(c.link.bits_per_second())
                .map(|(b, bps)| b as f64 * 8.0 / bps);
            let cpu = m
                .median_cpu()
                .zip(m.median_server_cpu())
                .map(|(a, b)| (a + b).as_secs_f64() / cpus() as f64);
            println!(
                "  {name:<56} {:>7.2}s  stored {:>10}  link floor {:>7}  CPU floor {:>7}",
                median.as_secs_f64(),
                stored.map_or_else(|| "-".into(), human_bytes),
                link.map_or_else(|| "-".into(), |s| format!("{s:.2}s")),
                cpu.map_or_else(|| "-".into(), |s| format!("{s:.2}s")),
            );
        }
    }
    crate::bench_cpu::print_cpu_table(&results, &cpu_rows);
    util::remove_any(&work)?;
    Ok(ExitCode::SUCCESS)
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn find<'a>(results: &'a [Measurement], name: &str) -> Option<&'a Measurement> {
    results.iter().find(|m| m.name == name)
}

/// A TCP proxy that holds every byte `delay` before passing it on, both ways: a round trip through
/// it takes `2 × delay` more, and its bandwidth is not limited.
pub struct DelayProxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl DelayProxy {
    pub fn start(upstream: SocketAddr, delay: Duration) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind the delaying proxy")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                for (from, to) in [(&client, &server), (&server, &client)] {
                    if let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) {
                        pipe(from, to, delay);
                    }
                }
            }
        });
        Ok(DelayProxy { addr, stop })
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copy `from` to `to`, each chunk sent `delay` after it was read; the end is passed on too.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            if tx
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
                || n == 0
            {
                return;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if bytes.is_empty() || to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
