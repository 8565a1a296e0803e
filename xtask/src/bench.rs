//! `cargo xtask bench`: time `layerlift-unpack` against `tar -xf`, `layerlift-convert` against
//! `skopeo copy --dest-compress` (and pigz), and `layerlift-push` against `skopeo copy` to a local
//! registry, in the same run, on a ~300 MB legacy `docker save` archive built once from real files
//! on this machine (the convert and push steps in `bench_steps.rs`).
//!
//! The page cache cannot be dropped (not root everywhere, and other people's work would suffer), so
//! every step runs once to warm up and then `--reps` interleaved rounds; medians are compared.

use crate::bench_docker;
use crate::bench_repush;
use crate::bench_steps::{self as bs, Sizes};
use crate::measure::{self, Log, Measurement, Step, Target};
use crate::registry::Registry;
use crate::util::{self, HashWriter, human_bytes, sha256_hex};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::rc::Rc;
use std::time::Instant;

/// Where the real files come from, in this order, until the size budget is reached.
const SOURCE_ROOTS: [&str; 7] = [
    "/usr/lib",
    "/usr/share",
    "/usr/bin",
    "/usr/libexec",
    "/usr/include",
    "/usr/local",
    "/opt",
];

struct Options {
    quick: bool,
    reps: usize,
    strict: bool,
    build: bool,
    unpack: bool,
    convert: bool,
    push: bool,
    pack: bool,
    repush: bool,
    bulk: bool,
    net: bool,
    baseline: Option<PathBuf>,
}

const USAGE: &str = "cargo xtask bench [--quick] [--reps N] [--strict] [--no-build] [--steps unpack,convert,push,pack,repush,bulk|net] [--baseline DIR]";

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        quick: false,
        reps: 0,
        strict: false,
        build: true,
        unpack: true,
        convert: true,
        push: true,
        pack: true,
        repush: true,
        bulk: true,
        net: false,
        baseline: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--strict" => o.strict = true,
            "--no-build" => o.build = false,
            "--reps" => {
                o.reps = it
                    .next()
                    .context("--reps needs a number")?
                    .parse()
                    .context("--reps needs a number")?;
                if o.reps == 0 {
                    bail!("--reps must be at least 1");
                }
            }
            "--baseline" => {
                o.baseline = Some(PathBuf::from(
                    it.next().context("--baseline needs a directory")?,
                ));
            }
            "--steps" => {
                let list = it.next().context(
                    "--steps needs a list: unpack,convert,push,pack,repush,bulk, or net",
                )?;
                (o.unpack, o.convert, o.push, o.pack, o.repush, o.bulk) =
                    (false, false, false, false, false, false);
                for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    match s {
                        "unpack" => o.unpack = true,
                        "convert" => o.convert = true,
                        "push" => o.push = true,
                        "pack" => o.pack = true,
                        "repush" => o.repush = true,
                        "bulk" => o.bulk = true,
                        "net" => o.net = true,
                        other => {
                            bail!(
                                "--steps: unknown step `{other}` (unpack, convert, push, pack, repush, bulk, net)"
                            )
                        }
                    }
                }
                let local = o.unpack || o.convert || o.push || o.pack || o.repush || o.bulk;
                if !(local || o.net) {
                    bail!(
                        "--steps: no step given (unpack, convert, push, pack, repush, bulk, net)"
                    );
                }
                if o.net && local {
                    bail!("--steps: net runs alone (in a network namespace of its own)");
                }
            }
            "-h" | "--help" => {
                println!(
                    "{USAGE}\n\n\
                     --quick     ~30 MB image instead of ~300 MB (default reps 3 instead of 5)\n\
                     --reps N    timed repetitions per step after one warm-up round\n\
                     --strict    exit 1 when a target is missed (default: report only)\n\
                     --no-build  use the release binaries already built\n\
                     --steps L   which comparisons, comma-separated (default: all):\n\
                     \x20           unpack   layerlift-unpack vs tar -xf (file and pipe)\n\
                     \x20           convert  layerlift-convert gzip/zstd vs skopeo --dest-compress, pigz\n\
                     \x20           push     layerlift-push vs skopeo copy to a local docker-registry\n\
                     \x20           pack     layerlift-pack of the unpacked image vs tar -cf of its blobs\n\
                     \x20           repush   re-push of the same archive and of a rebuilt one (last layer\n\
                     \x20                    changed) vs skopeo with and without its blob-info cache\n\
                     \x20           bulk     --all of a 20-image bundle (shared ~100 MB base) vs a loop\n\
                     \x20                    of skopeo copies and podman load + push; 100 and 1,000\n\
                     \x20                    images: --dry-run and push (time and peak RSS)\n\
                     \x20           net      (alone; root) cold archive pushes in a network namespace\n\
                     \x20                    limited by tc tbf to 250 Mbit/s and 1 Gbit/s, and 40\n\
                     \x20                    small layers through a 20 ms round trip, vs skopeo\n\
                     --baseline DIR  (push, net, pack, bulk) also time DIR/layerlift-push and DIR/layerlift-pack, for before/after ratios"
                );
                std::process::exit(0);
            }
            other => bail!("bench: unknown argument `{other}`"),
        }
    }
    if o.reps == 0 {
        o.reps = if o.quick { 3 } else { 5 };
    }
    Ok(o)
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let opts = parse(args)?;
    let bench_dir = util::xtask_out_dir().join("bench");
    fs::create_dir_all(&bench_dir)?;

    let (budget, layers) = if opts.quick {
        (30 << 20, 4)
    } else {
        (300 << 20, 6)
    };
    let archive = bench_dir.join(format!("docker-save-{}M.tar", budget >> 20));
    if archive.exists() {
        eprintln!("xtask bench: reusing {}", archive.display());
    } else {
        let t = Instant::now();
        eprintln!(
            "xtask bench: building {} from files under {} (once; cached)",
            archive.display(),
            SOURCE_ROOTS.join(" ")
        );
        util::build_once(&archive, |tmp| build_archive(tmp, budget, layers))?;
        eprintln!("xtask bench: built in {:.1}s", t.elapsed().as_secs_f64());
    }
    let archive_size = fs::metadata(&archive)?.len();
    // The re-push bench's rebuilt image: the same but for its last layer (~30 MB; ~3 MB with --quick).
    let rebuilt = bench_dir.join(format!("docker-save-{}M-rebuilt.tar", budget >> 20));
    if opts.repush && !rebuilt.exists() {
        eprintln!("xtask bench: building {} (once; cached)", rebuilt.display());
        util::build_once(&rebuilt, |tmp| {
            build_archive_with(tmp, budget, layers, Some(budget / 10))
        })?;
    }

    if opts.build {
        let mut cmd = util::cargo();
        // xtask too: its `__floor` task is the compute floor, built like the binaries it bounds.
        cmd.args([
            "build",
            "--release",
            "--locked",
            "-p",
            "layerlift",
            "-p",
            "xtask",
        ]);
        eprintln!("xtask bench: {}", util::show(&cmd));
        let status = cmd.status().context("cannot run cargo build")?;
        if !status.success() {
            bail!("cargo build --release failed ({status})");
        }
    }
    let bin = |name: &str| -> Result<PathBuf> {
        let p = util::cargo_target_dir().join("release").join(name);
        if !p.is_file() {
            bail!("{} not found (build it, or drop --no-build)", p.display());
        }
        Ok(p)
    };
    if opts.net {
        bin("layerlift-push")?;
        let dir = util::cargo_target_dir().join("release");
        return crate::bench_net::run(args, opts.reps, opts.baseline.as_deref(), &dir);
    }
    let unpack = bin("layerlift-unpack")?;
    for (wanted, tools) in [
        (opts.convert, &["skopeo", "pigz", "cat"][..]),
        (opts.push || opts.repush || opts.bulk, &["skopeo"][..]),
    ] {
        if let Some(t) = tools.iter().find(|t| wanted && !util::have(t)) {
            bail!("`{t}` is not on PATH (scripts/install-test-deps.sh installs it)");
        }
    }

    let work = bench_dir.join("work");
    measure::fresh_dir(&work)?;
    let mut steps = Vec::new();
    let mut targets = Vec::new();
    // What each step processes, for the throughput lines.
    let mut volumes: Vec<(String, u64)> = Vec::new();
    if opts.unpack {
        steps.extend(unpack_steps(&archive, &unpack, &work));
        targets.extend(unpack_targets());
        for s in &steps {
            volumes.push((s.name.clone(), archive_size));
        }
    }

    // The convert and push steps start from the unpacked layout (W/in) and, for push, its gzip
    // conversion (W/push): both made once here, untimed.
    let input = work.join("in");
    let sizes = Sizes::default();
    let mut input_bytes = 0;
    let mut registry = None;
    let mut archive_stored = None;
    let mut docker_parts = None;
    let mut cpu_rows = Vec::new();
    if opts.convert || opts.push || opts.pack {
        eprintln!(
            "xtask bench: unpacking the archive into {}",
            input.display()
        );
        util::run_quiet(Command::new(&unpack).arg(&archive).arg(&input))?;
        input_bytes = bs::layer_bytes(&input)?;
    }
    if opts.convert {
        let convert = bin("layerlift-convert")?;
        steps.extend(bs::convert_steps(&convert, &input, &work, &sizes)?);
        targets.extend(convert_targets());
        for n in [
            bs::SKOPEO_GZIP,
            bs::CONVERT_GZIP,
            bs::CONVERT_ZSTD,
            bs::PIGZ,
        ] {
            volumes.push((n.to_string(), input_bytes));
        }
    }
    if opts.pack {
        let pack = bin("layerlift-pack")?;
        let baseline = opts.baseline.as_deref();
        steps.extend(crate::bench_pack::pack_steps(
            &pack, &input, &work, baseline,
        ));
        targets.extend(crate::bench_pack::pack_targets(baseline.is_some()));
        for n in [
            crate::bench_pack::TAR_CF,
            crate::bench_pack::TAR_CF_SYNC,
            crate::bench_pack::PACK,
            crate::bench_pack::PACK_OCI,
            crate::bench_pack::TAR_CF_PIPE,
            crate::bench_pack::PACK_PIPE,
            crate::bench_pack::BASELINE_PACK,
        ] {
            volumes.push((n.to_string(), input_bytes));
        }
    }
    if opts.push {
        let convert = bin("layerlift-convert")?;
        let push = bin("layerlift-push")?;
        let layout = work.join("push");
        eprintln!(
            "xtask bench: converting to gzip for push into {}",
            layout.display()
        );
        util::run_quiet(Command::new(&convert).arg(&input).arg(&layout).arg("-q"))?;
        let reg = shared_registry(&mut registry, &work)?;
        steps.extend(bs::push_steps(&push, &layout, reg.clone(), &work)?);
        let (archive_steps, stored) =
            bs::archive_push_steps(&push, &archive, reg.clone(), &work, &bs::ARCHIVE_6);
        steps.extend(archive_steps);
        archive_stored = Some(stored);
        // The same archive to two registries from one read.
        let second = Rc::new(Registry::start(&work.join("registry-2"))?);
        steps.push(bs::two_registry_step(
            &push,
            &archive,
            [reg.clone(), second],
            &work,
        ));
        // The push bench's 40-layer image: the same files in 40 layers (built once, cached).
        let archive40 = bench_dir.join(format!("docker-save-{}M-40layers.tar", budget >> 20));
        if !archive40.exists() {
            eprintln!(
                "xtask bench: building {} (once; cached)",
                archive40.display()
            );
            util::build_once(&archive40, |tmp| build_archive(tmp, budget, 40))?;
        }
        let (steps40, _) =
            bs::archive_push_steps(&push, &archive40, reg.clone(), &work, &bs::ARCHIVE_40);
        steps.extend(steps40);
        // The compute floor of both archive pushes, over their layers unpacked (untimed).
        let input40 = work.join("in40");
        util::run_quiet(Command::new(&unpack).arg(&archive40).arg(&input40))?;
        let baseline = opts
            .baseline
            .as_deref()
            .map(|d| (d, &*archive, reg.clone()));
        let cpu = crate::bench_cpu::push_cpu(&bin("xtask")?, [&input, &input40], baseline, &work)?;
        steps.extend(cpu.steps);
        targets.extend(cpu.targets);
        cpu_rows = cpu.rows;
        match bench_docker::daemon_version() {
            Ok(version) => {
                eprintln!("xtask bench: Docker Engine {version}: docker load + docker push too");
                let (step, parts) = bench_docker::docker_step(&archive, reg.clone(), &work);
                steps.push(step);
                targets.push(Target::Info {
                    label: "push ARCHIVE / docker load + docker push".into(),
                    numerator: bs::PUSH_ARCHIVE.into(),
                    denominator: bench_docker::DOCKER_LOAD_PUSH.into(),
                });
                volumes.push((bench_docker::DOCKER_LOAD_PUSH.to_string(), archive_size));
                docker_parts = Some(parts);
            }
            Err(reason) => {
                eprintln!("xtask bench: docker load + docker push not timed: {reason}");
            }
        }
        targets.extend(push_targets(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        ));
        let gz = bs::layer_bytes(&layout)?;
        for n in [
            bs::PUSH_COLD,
            bs::SKOPEO_PUSH_COLD,
            bs::PUSH_AGAIN,
            bs::SKOPEO_PUSH_AGAIN,
        ] {
            volumes.push((n.to_string(), gz));
        }
        for n in [
            bs::PUSH_ARCHIVE,
            bs::SKOPEO_PUSH_ARCHIVE,
            bs::PUSH_ARCHIVE_40,
            bs::SKOPEO_PUSH_ARCHIVE_40,
        ] {
            volumes.push((n.to_string(), archive_size));
        }
    }
    let mut rebuilt_sent = None;
    if opts.repush {
        let push = bin("layerlift-push")?;
        let reg = shared_registry(&mut registry, &work)?;
        let (repush_steps, sent) =
            bench_repush::repush_steps(&push, &archive, &rebuilt, reg, &work)?;
        steps.extend(repush_steps);
        targets.extend(repush_targets());
        rebuilt_sent = Some(sent);
    }

    if opts.bulk {
        let push = bin("layerlift-push")?;
        let reg = shared_registry(&mut registry, &work)?;
        let (bundle, folder, [b100, b1000]) = crate::bench_bulk::bundles(&bench_dir, opts.quick)?;
        steps.extend(crate::bench_bulk::bundle_steps(&push, &bundle, &reg, &work));
        steps.extend(crate::bench_bulk::folder_steps(
            &push,
            opts.baseline.as_deref(),
            &folder,
            &reg,
            &work,
        ));
        steps.extend(crate::bench_bulk::scale_steps(
            &push,
            [&b100, &b1000],
            &reg,
            &work,
        ));
        targets.extend(crate::bench_bulk::targets(
            util::have("podman"),
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        ));
        volumes.push((
            crate::bench_bulk::BULK_COLD.to_string(),
            fs::metadata(&bundle)?.len(),
        ));
        for n in [
            crate::bench_bulk::FOLDER_COLD,
            crate::bench_bulk::FOLDER_BASELINE,
            crate::bench_bulk::FOLDER_SKOPEO,
        ] {
            volumes.push((n.to_string(), util::du(&folder)));
        }
    }

    println!(
        "xtask bench: archive {} ({}, {layers} layers), {} CPUs, {} timed runs per step after 1 warm-up",
        archive.display(),
        human_bytes(archive_size),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        opts.reps
    );
    let results = measure::run_steps(&mut steps, opts.reps);
    // The steps hold the registry too: drop them before it, so that it is killed here.
    drop(steps);
    drop(registry);
    if opts.convert {
        targets.extend(size_targets(&sizes));
    }
    if let Some([ours, skopeo]) = &archive_stored {
        targets.push(Target::Value {
            label: "push ARCHIVE stored bytes / skopeo's".into(),
            value: ours
                .get()
                .zip(skopeo.get())
                .map(|(a, b)| a as f64 / (b as f64).max(1.0)),
            max: 1.10,
            strict: false,
        });
    }
    let pass = measure::report(&results, &targets);
    if let Some(sent) = rebuilt_sent.and_then(|s| s.get()) {
        println!(
            "\nrebuilt push (last run): {} layer read and compressed, {} taken from the registry unread; {} blobs uploaded, {} ({} bytes)",
            sent.layers_read,
            sent.layers_reused,
            sent.blobs,
            human_bytes(sent.bytes),
            sent.bytes
        );
    }
    if let Some(parts) = &docker_parts {
        parts.borrow().print();
    }
    if opts.convert {
        print_sizes(input_bytes, &sizes);
    }
    print_throughput(&results, &volumes);
    crate::bench_cpu::print_cpu_table(&results, &cpu_rows);
    util::remove_any(&work)?;

    if pass || !opts.strict {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// The docker-registry the push, re-push and bulk steps share (`W/registry`), started by the first
/// of them that runs.
fn shared_registry(registry: &mut Option<Rc<Registry>>, work: &Path) -> Result<Rc<Registry>> {
    if let Some(r) = registry {
        return Ok(Rc::clone(r));
    }
    let r = Rc::new(Registry::start(&work.join("registry"))?);
    eprintln!("xtask bench: docker-registry on {}", r.addr());
    *registry = Some(Rc::clone(&r));
    Ok(r)
}

fn unpack_targets() -> Vec<Target> {
    vec![
        Target::Ratio {
            label: "unpack FILE / tar -xf".into(),
            numerator: "layerlift-unpack FILE DIR".into(),
            denominator: "tar -xf FILE".into(),
            max: 1.15,
        },
        Target::Info {
            label: "unpack FILE / (tar -xf && sync), same durability".into(),
            numerator: "layerlift-unpack FILE DIR".into(),
            denominator: TAR_XF_SYNC.into(),
        },
        Target::Info {
            label: "unpack - (pipe) / tar -xf".into(),
            numerator: "cat FILE | layerlift-unpack - DIR".into(),
            denominator: "tar -xf FILE".into(),
        },
        Target::CpuInfo {
            label: "unpack FILE / tar -xf, CPU time".into(),
            numerator: "layerlift-unpack FILE DIR".into(),
            denominator: "tar -xf FILE".into(),
        },
        Target::Ratio {
            label: "unpack - (pipe) / unpack FILE".into(),
            numerator: "cat FILE | layerlift-unpack - DIR".into(),
            denominator: "layerlift-unpack FILE DIR".into(),
            max: 1.1,
        },
        Target::PeakRss {
            label: "unpack peak RSS (file)".into(),
            step: "layerlift-unpack FILE DIR".into(),
            max_mib: 32.0,
        },
        Target::PeakRss {
            label: "unpack peak RSS (pipe)".into(),
            step: "cat FILE | layerlift-unpack - DIR".into(),
            max_mib: 32.0,
        },
    ]
}

/// Convert's targets: gzip ≤ 0.5× skopeo's gzip time, zstd ≤ 0.35×, peak RSS ≤ 64 MiB; CPU-time ratios and
/// pigz for reference.
fn convert_targets() -> Vec<Target> {
    vec![
        Target::Ratio {
            label: "convert gzip / skopeo gzip".into(),
            numerator: bs::CONVERT_GZIP.into(),
            denominator: bs::SKOPEO_GZIP.into(),
            max: 0.5,
        },
        Target::Ratio {
            label: "convert zstd / skopeo gzip".into(),
            numerator: bs::CONVERT_ZSTD.into(),
            denominator: bs::SKOPEO_GZIP.into(),
            max: 0.35,
        },
        Target::PeakRss {
            label: "convert gzip peak RSS".into(),
            step: bs::CONVERT_GZIP.into(),
            max_mib: 64.0,
        },
        Target::PeakRss {
            label: "convert zstd peak RSS".into(),
            step: bs::CONVERT_ZSTD.into(),
            max_mib: 64.0,
        },
        Target::CpuInfo {
            label: "convert gzip / skopeo gzip, CPU time".into(),
            numerator: bs::CONVERT_GZIP.into(),
            denominator: bs::SKOPEO_GZIP.into(),
        },
        Target::CpuInfo {
            label: "convert zstd / skopeo gzip, CPU time".into(),
            numerator: bs::CONVERT_ZSTD.into(),
            denominator: bs::SKOPEO_GZIP.into(),
        },
        Target::Info {
            label: format!("convert gzip / pigz -p2 -{} (floor)", bs::GZIP_LEVEL),
            numerator: bs::CONVERT_GZIP.into(),
            denominator: bs::PIGZ.into(),
        },
        Target::Info {
            label: format!("skopeo gzip / pigz -p2 -{}", bs::GZIP_LEVEL),
            numerator: bs::SKOPEO_GZIP.into(),
            denominator: bs::PIGZ.into(),
        },
    ]
}

/// Output sizes, known only after the runs: gzip ≤ 1.05× skopeo's, zstd smaller than skopeo's gzip.
fn size_targets(sizes: &Sizes) -> Vec<Target> {
    let ratio =
        |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| a as f64 / (b as f64).max(1.0));
    let sk = sizes.skopeo_gzip.get();
    vec![
        Target::Value {
            label: "gzip output / skopeo gzip output".into(),
            value: ratio(sizes.layerlift_gzip.get(), sk),
            max: 1.05,
            strict: false,
        },
        Target::Value {
            label: "zstd output / skopeo gzip output".into(),
            value: ratio(sizes.layerlift_zstd.get(), sk),
            max: 1.0,
            strict: true,
        },
    ]
}

/// Push's targets: from the `docker save` archive, cold push ≤ 0.4× skopeo, stored bytes ≤ 1.10× (added
/// after the runs), peak RSS ≤ 48 MiB; from the gzip layout (the same blobs for both tools) the same
/// time target, and the re-push ratio for information. For each archive push, the least ratio this
/// machine allows: layerlift's CPU time and the registry's, spread over all `cpus` cores.
fn push_targets(cpus: usize) -> Vec<Target> {
    vec![
        Target::Ratio {
            label: "push ARCHIVE / skopeo docker-archive:".into(),
            numerator: bs::PUSH_ARCHIVE.into(),
            denominator: bs::SKOPEO_PUSH_ARCHIVE.into(),
            max: 0.4,
        },
        Target::CpuInfo {
            label: "push ARCHIVE / skopeo docker-archive:, CPU time".into(),
            numerator: bs::PUSH_ARCHIVE.into(),
            denominator: bs::SKOPEO_PUSH_ARCHIVE.into(),
        },
        Target::CpuFloor {
            label: "push ARCHIVE / skopeo, least possible here".into(),
            numerator: bs::PUSH_ARCHIVE.into(),
            denominator: bs::SKOPEO_PUSH_ARCHIVE.into(),
            cpus,
        },
        Target::Ratio {
            label: "push ARCHIVE to 2 registries / to 1".into(),
            numerator: bs::PUSH_ARCHIVE_TWO.into(),
            denominator: bs::PUSH_ARCHIVE.into(),
            max: 1.25,
        },
        Target::CpuFloor {
            label: "push ARCHIVE to 2 registries / to 1, least possible here".into(),
            numerator: bs::PUSH_ARCHIVE_TWO.into(),
            denominator: bs::PUSH_ARCHIVE.into(),
            cpus,
        },
        Target::CpuFloor {
            label: "push ARCHIVE to 2 registries, least possible / measured".into(),
            numerator: bs::PUSH_ARCHIVE_TWO.into(),
            denominator: bs::PUSH_ARCHIVE_TWO.into(),
            cpus,
        },
        Target::Ratio {
            label: "push 40-layer ARCHIVE / skopeo".into(),
            numerator: bs::PUSH_ARCHIVE_40.into(),
            denominator: bs::SKOPEO_PUSH_ARCHIVE_40.into(),
            max: 0.5,
        },
        Target::CpuInfo {
            label: "push 40-layer ARCHIVE / skopeo, CPU time".into(),
            numerator: bs::PUSH_ARCHIVE_40.into(),
            denominator: bs::SKOPEO_PUSH_ARCHIVE_40.into(),
        },
        Target::CpuFloor {
            label: "push 40-layer ARCHIVE / skopeo, least possible here".into(),
            numerator: bs::PUSH_ARCHIVE_40.into(),
            denominator: bs::SKOPEO_PUSH_ARCHIVE_40.into(),
            cpus,
        },
        Target::PeakRss {
            label: "push ARCHIVE peak RSS".into(),
            step: bs::PUSH_ARCHIVE.into(),
            max_mib: 48.0,
        },
        Target::Ratio {
            label: "push LAYOUT cold / skopeo cold".into(),
            numerator: bs::PUSH_COLD.into(),
            denominator: bs::SKOPEO_PUSH_COLD.into(),
            max: 0.4,
        },
        Target::Info {
            label: "re-push / skopeo re-push".into(),
            numerator: bs::PUSH_AGAIN.into(),
            denominator: bs::SKOPEO_PUSH_AGAIN.into(),
        },
        Target::PeakRss {
            label: "push peak RSS (cold)".into(),
            step: bs::PUSH_COLD.into(),
            max_mib: 48.0,
        },
        Target::PeakRss {
            label: "push peak RSS (re-push)".into(),
            step: bs::PUSH_AGAIN.into(),
            max_mib: 48.0,
        },
    ]
}

/// Re-push's targets: re-push of what the registry has ≤ 1.0× skopeo with its cache and ≤ 0.05× without;
/// the rebuilt image (last layer changed) ≤ 0.25× skopeo without its cache.
fn repush_targets() -> Vec<Target> {
    use bench_repush as br;
    vec![
        Target::Ratio {
            label: "re-push / skopeo re-push with its cache".into(),
            numerator: br::REPUSH.into(),
            denominator: br::SKOPEO_REPUSH_CACHED.into(),
            max: 1.0,
        },
        Target::Ratio {
            label: "re-push / skopeo re-push without cache".into(),
            numerator: br::REPUSH.into(),
            denominator: br::SKOPEO_REPUSH_UNCACHED.into(),
            max: 0.05,
        },
        Target::Ratio {
            label: "rebuilt push / skopeo without cache".into(),
            numerator: br::REBUILT.into(),
            denominator: br::SKOPEO_REBUILT_UNCACHED.into(),
            max: 0.25,
        },
        Target::PeakRss {
            label: "re-push peak RSS".into(),
            step: br::REPUSH.into(),
            max_mib: 48.0,
        },
        Target::PeakRss {
            label: "rebuilt push peak RSS".into(),
            step: br::REBUILT.into(),
            max_mib: 48.0,
        },
    ]
}

fn print_sizes(input: u64, sizes: &Sizes) {
    println!();
    println!(
        "output size (sum of layer blobs; input {})",
        human_bytes(input)
    );
    for (name, v) in [
        ("skopeo gzip", sizes.skopeo_gzip.get()),
        (
            &*format!("layerlift gzip (level {})", bs::GZIP_LEVEL),
            sizes.layerlift_gzip.get(),
        ),
        (
            &*format!("layerlift zstd (level {})", bs::ZSTD_LEVEL),
            sizes.layerlift_zstd.get(),
        ),
    ] {
        println!(
            "  {name:<28} {:>14} {:>10}",
            v.map_or_else(|| "-".into(), |b| format!("{b} B")),
            v.map_or_else(|| "-".into(), human_bytes)
        );
    }
}

fn print_throughput(results: &[Measurement], volumes: &[(String, u64)]) {
    println!();
    println!(
        "throughput (archive for unpack and push ARCHIVE, uncompressed layers for convert, gzip layers for push LAYOUT)"
    );
    for m in results {
        let bytes = volumes.iter().find(|(n, _)| *n == m.name).map(|v| v.1);
        if let (Some(d), Some(bytes)) = (m.median(), bytes) {
            println!(
                "  {:<44} {:>8.0} MB/s",
                m.name,
                bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
            );
        }
    }
}

/// `tar -xf`, then `sync` of every file and directory it wrote.
const TAR_XF_SYNC: &str = "tar -xf FILE && sync (each file)";

/// The unpack steps: tar -xf (and made durable), unpack from the file, unpack from a pipe.
fn unpack_steps(archive: &Path, unpack: &Path, work: &Path) -> Vec<Step> {
    let archive = Rc::new(archive.to_path_buf());
    let unpack = Rc::new(unpack.to_path_buf());
    let mut steps = Vec::new();

    let (a, dir) = (archive.clone(), work.join("tar"));
    let log = Rc::new(Log(work.join("tar.log")));
    let d2 = dir.clone();
    steps.push(
        Step::new("tar -xf FILE", move || {
            measure::time_command(
                Command::new("tar").arg("-xf").arg(&*a).arg("-C").arg(&dir),
                &log,
            )
        })
        .prepare(move || measure::fresh_dir(&d2)),
    );

    // The same durability as unpack's layout: every file and directory tar wrote fsynced.
    let (a, dir) = (archive.clone(), work.join("tar-sync"));
    let log = Rc::new(Log(work.join("tar-sync.log")));
    let d2 = dir.clone();
    steps.push(
        Step::new(TAR_XF_SYNC, move || {
            measure::time_command(
                Command::new("sh")
                    .arg("-c")
                    .arg("tar -xf \"$1\" -C \"$2\" && find \"$2\" -exec sync {} +")
                    .arg("sh")
                    .arg(&*a)
                    .arg(&dir),
                &log,
            )
        })
        .prepare(move || measure::fresh_dir(&d2)),
    );

    let (a, u, dir) = (archive.clone(), unpack.clone(), work.join("unpack-file"));
    let log = Rc::new(Log(work.join("unpack-file.log")));
    let (d2, d3) = (dir.clone(), dir.clone());
    steps.push(
        Step::new("layerlift-unpack FILE DIR", move || {
            measure::time_command(Command::new(&*u).arg(&*a).arg(&dir), &log)
        })
        .prepare(move || util::remove_any(&d2))
        .verify(move || check_layout(&d3)),
    );

    let (a, u, dir) = (archive, unpack, work.join("unpack-pipe"));
    let log = Rc::new(Log(work.join("unpack-pipe.log")));
    let (d2, d3) = (dir.clone(), dir.clone());
    steps.push(
        Step::new("cat FILE | layerlift-unpack - DIR", move || {
            measure::time_pipeline(
                Command::new("cat").arg(&*a),
                Command::new(&*u).arg("-").arg(&dir),
                &log,
            )
        })
        .prepare(move || util::remove_any(&d2))
        .verify(move || check_layout(&d3)),
    );
    steps
}

/// A run only counts if it left a layout behind (a stub that exits 0 at once must not "win").
fn check_layout(dir: &Path) -> Result<()> {
    for f in ["oci-layout", "index.json", "blobs/sha256"] {
        if !dir.join(f).exists() {
            bail!("no {f} in {} after unpack", dir.display());
        }
    }
    Ok(())
}

/// A file chosen for the image, with its path inside the layer.
pub(crate) struct Item {
    src: PathBuf,
    name: String,
    kind: Kind,
    size: u64,
}

#[derive(Clone, Copy)]
enum Kind {
    Dir,
    Symlink,
    File,
}

/// Walk `SOURCE_ROOTS` in sorted order, taking directories, symlinks and readable regular files until
/// `budget` bytes of file content are collected. Files larger than `max_file` are skipped (one huge
/// file would make one huge layer and overshoot the budget).
pub(crate) fn collect(budget: u64, max_file: u64) -> Vec<Item> {
    fn walk(dir: &Path, budget: u64, max_file: u64, total: &mut u64, acc: &mut Vec<Item>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if *total >= budget {
                return;
            }
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            let name = p.strip_prefix("/").unwrap_or(&p).display().to_string();
            if m.is_dir() {
                acc.push(Item {
                    src: p.clone(),
                    name: format!("{name}/"),
                    kind: Kind::Dir,
                    size: 0,
                });
                walk(&p, budget, max_file, total, acc);
            } else if m.file_type().is_symlink() {
                acc.push(Item {
                    src: p,
                    name,
                    kind: Kind::Symlink,
                    size: 0,
                });
            } else if m.is_file() && m.len() <= max_file && File::open(&p).is_ok() {
                *total += m.len();
                acc.push(Item {
                    src: p,
                    name,
                    kind: Kind::File,
                    size: m.len(),
                });
            }
        }
    }
    let mut acc = Vec::new();
    let mut total = 0;
    for root in SOURCE_ROOTS {
        walk(Path::new(root), budget, max_file, &mut total, &mut acc);
        if total >= budget {
            break;
        }
    }
    acc
}

/// Write one layer tar; returns (diff_id hex, size).
pub(crate) fn write_layer(items: &[Item], dest: &Path) -> Result<(String, u64)> {
    let f = File::create(dest).with_context(|| format!("create {}", dest.display()))?;
    let mut b = tar::Builder::new(HashWriter::new(BufWriter::with_capacity(1 << 20, f)));
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    for it in items {
        let name = it.name.trim_end_matches('/');
        let r = match it.kind {
            Kind::Dir => b.append_dir(name, &it.src),
            // Stored as a link (collect saw it with symlink_metadata; never follow it).
            Kind::Symlink => b.append_path_with_name(&it.src, name),
            // Stream it with the metadata of the open handle; a file that vanished is skipped.
            Kind::File => match File::open(&it.src) {
                Ok(mut f) if f.metadata().map(|m| m.is_file()).unwrap_or(false) => {
                    b.append_file(name, &mut f)
                }
                _ => Ok(()),
            },
        };
        r.with_context(|| format!("add {} to {}", it.src.display(), dest.display()))?;
    }
    let (w, hex, len) = b.into_inner()?.finish();
    w.into_inner().map_err(|e| e.into_error())?.sync_all().ok();
    Ok((hex, len))
}

/// Build a legacy (Docker ≤ 24) `docker save` archive: `<v1id>/{VERSION,json,layer.tar}`,
/// `<imageid>.json`, `manifest.json`, `repositories`, entries sorted by name as Docker's tar of its
/// temporary directory has them (so `manifest.json` comes after the layers).
pub fn build_archive(dest: &Path, budget: u64, layers: usize) -> Result<()> {
    build_archive_with(dest, budget, layers, None)
}

/// [`build_archive`], or with `rebuilt_last: Some(n)` the same image "rebuilt": its last layer
/// replaced by one of about `n` bytes of other files (the files the walk finds after the image's);
/// every other layer is byte for byte the original's (the walk and the tar writer are
/// deterministic).
fn build_archive_with(
    dest: &Path,
    budget: u64,
    layers: usize,
    rebuilt_last: Option<u64>,
) -> Result<()> {
    let max_file = (budget / layers as u64 / 2).max(1);
    let items = collect(budget, max_file);
    let more = match rebuilt_last {
        Some(n) => collect(budget + n, max_file),
        None => Vec::new(),
    };
    let total: u64 = items.iter().map(|i| i.size).sum();
    if total < budget / 2 {
        eprintln!(
            "xtask bench: warning: only {} of files found for a {} image",
            human_bytes(total),
            human_bytes(budget)
        );
    }
    // Split into `layers` chunks of about equal content size.
    let per_layer = total.div_ceil(layers as u64).max(1);
    let mut chunks: Vec<&[Item]> = Vec::new();
    let (mut start, mut acc) = (0, 0);
    for (i, it) in items.iter().enumerate() {
        acc += it.size;
        if acc >= per_layer && chunks.len() + 1 < layers {
            chunks.push(&items[start..=i]);
            start = i + 1;
            acc = 0;
        }
    }
    if start < items.len() {
        chunks.push(&items[start..]);
    }
    if rebuilt_last.is_some() {
        let tail = more.get(items.len()..).unwrap_or_default();
        if tail.iter().all(|i| i.size == 0) {
            bail!("no files left on this machine to rebuild the last layer from");
        }
        chunks.pop();
        chunks.push(tail);
    }

    let scratch = dest.with_extension("parts");
    measure::fresh_dir(&scratch)?;
    let r = (|| -> Result<()> {
        let mut diff_ids = Vec::new();
        let mut files = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let path = scratch.join(format!("layer{i}.tar"));
            let (hex, len) = write_layer(chunk, &path)?;
            eprintln!(
                "  layer {i}: {} entries, {}, sha256:{}",
                chunk.len(),
                human_bytes(len),
                &hex[..12]
            );
            diff_ids.push(format!("sha256:{hex}"));
            files.push(path);
        }
        let history: Vec<_> = (0..chunks.len())
            .map(|i| json!({ "created": "2026-01-01T00:00:00Z", "created_by": format!("COPY layer {i} / # xtask bench") }))
            .collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "config": { "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"] },
            "created": "2026-01-01T00:00:00Z",
            "history": history,
            "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        }))?;
        let config_hex = sha256_hex(&config);

        // Synthetic v1 ids, chained like Docker's (their exact value does not matter to readers).
        let mut v1_ids = Vec::new();
        let mut parent = String::new();
        for (i, d) in diff_ids.iter().enumerate() {
            let top = if i + 1 == diff_ids.len() {
                config_hex.as_str()
            } else {
                ""
            };
            let id = sha256_hex(format!("{parent}{d}{top}").as_bytes());
            v1_ids.push(id.clone());
            parent = id;
        }
        let manifest = serde_json::to_vec(&json!([{
            "Config": format!("{config_hex}.json"),
            "RepoTags": ["layerlift-bench:latest"],
            "Layers": v1_ids.iter().map(|id| format!("{id}/layer.tar")).collect::<Vec<_>>(),
        }]))?;
        let repositories = serde_json::to_vec(
            &json!({ "layerlift-bench": { "latest": v1_ids.last().unwrap() } }),
        )?;

        enum Src {
            Dir,
            Bytes(Vec<u8>),
            File(PathBuf),
        }
        let mut entries: Vec<(String, Src)> = Vec::new();
        for (i, id) in v1_ids.iter().enumerate() {
            let mut v1 = json!({ "id": id, "created": "2026-01-01T00:00:00Z", "os": "linux" });
            if i > 0 {
                v1["parent"] = json!(v1_ids[i - 1]);
            }
            entries.push((format!("{id}/"), Src::Dir));
            entries.push((format!("{id}/VERSION"), Src::Bytes(b"1.0".to_vec())));
            entries.push((format!("{id}/json"), Src::Bytes(serde_json::to_vec(&v1)?)));
            entries.push((format!("{id}/layer.tar"), Src::File(files[i].clone())));
        }
        entries.push((format!("{config_hex}.json"), Src::Bytes(config)));
        entries.push(("manifest.json".into(), Src::Bytes(manifest)));
        entries.push(("repositories".into(), Src::Bytes(repositories)));
        entries.sort_by(|a, b| a.0.cmp(&b.0));

        let out = File::create(dest).with_context(|| format!("create {}", dest.display()))?;
        let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 20, out));
        for (name, src) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_mtime(1_767_225_600);
            h.set_uid(0);
            h.set_gid(0);
            match src {
                Src::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    b.append_data(&mut h, &name, std::io::empty())?;
                }
                Src::Bytes(bytes) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(bytes.len() as u64);
                    b.append_data(&mut h, &name, bytes.as_slice())?;
                }
                Src::File(path) => {
                    let f = File::open(&path)?;
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(f.metadata()?.len());
                    b.append_data(&mut h, &name, f)?;
                    fs::remove_file(&path)?;
                }
            }
        }
        b.into_inner()?.flush()?;
        Ok(())
    })();
    let _ = util::remove_any(&scratch);
    r
}
