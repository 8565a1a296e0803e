//! The bulk comparisons of `cargo xtask bench --steps bulk` (issue #24): a `docker save` bundle of
//! 20 images sharing a ~100 MB base of real files (two layers) with 1–3 small layers each, pushed
//! whole with `layerlift-push --all`, against the peers as a user's machine runs them:
//!
//! - a loop of `skopeo copy docker-archive:BUNDLE:NAME docker://…`, one per image, whose blob-info
//!   cache starts empty and is shared along the loop (so skopeo compresses the base once too).
//!   skopeo has no flag for that cache's place: as root it is `/var/lib/containers/cache`, so the
//!   loop runs in a private mount namespace (`unshare -m`) with an empty directory bound there;
//!   as another user it is `$XDG_DATA_HOME/containers/cache`, pointed at the empty directory;
//! - `podman load` of the bundle into a storage of its own (`--root`/`--runroot` in the work
//!   directory, which also holds podman's blob-info cache), then a loop of `podman push`; the
//!   storage is removed after each round.
//!
//! Each cold round pushes to repositories never used before (the earlier rounds' are deleted, so
//! nothing can be mounted from them). The re-push pushes the same bundle to where it already is,
//! with an empty `--cache-dir` (what it skips it learns from the registry alone).
//!
//! A folder: the same 20 images saved one per file (`app0000.tar` …, each a bundle of one image,
//! the base in every file), as a site's directory of `docker save` files is, pushed with
//! `layerlift-push --all DIR` (and the `--baseline` build's) against a loop of `skopeo copy
//! docker-archive:FILE`, its blob-info cache shared along the loop as above.
//!
//! Scale: generated bundles of 100 and 1,000 images (a tiny shared base, one tiny layer each) go
//! through `--dry-run` and a cold push; time should grow linearly and peak RSS stay flat.

use crate::bench::{Item, collect, write_layer};
use crate::measure::{self, Log, Step, Target};
use crate::registry::Registry;
use crate::util;
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::cell::Cell;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

pub const BULK_COLD: &str = "layerlift-push --all BUNDLE (cold)";
pub const BULK_AGAIN: &str = "layerlift-push --all BUNDLE (again)";
pub const SKOPEO_LOOP: &str = "skopeo copy docker-archive:BUNDLE:NAME loop (cold)";
pub const PODMAN: &str = "podman load BUNDLE + podman push loop (cold)";
pub const DRY_100: &str = "layerlift-push --all 100 images --dry-run";
pub const DRY_1000: &str = "layerlift-push --all 1000 images --dry-run";
pub const SCALE_100: &str = "layerlift-push --all 100 images (cold)";
pub const SCALE_1000: &str = "layerlift-push --all 1000 images (cold)";
pub const FOLDER_COLD: &str = "layerlift-push --all DIR of 20 one-image saves (cold)";
pub const FOLDER_BASELINE: &str = "baseline layerlift-push --all DIR (cold)";
pub const FOLDER_SKOPEO: &str = "skopeo copy docker-archive:FILE loop over DIR (cold)";

/// Images in the bench bundle.
const IMAGES: usize = 20;

/// The names of the bundle's images, in order.
fn names(count: usize) -> Vec<String> {
    (0..count).map(name).collect()
}

/// The name of image `i` of a bundle.
fn name(i: usize) -> String {
    format!("bulk/app{i:04}:1")
}

/// The file of image `i` in the folder of one-image saves.
fn folder_file(i: usize) -> String {
    format!("app{i:04}.tar")
}

/// A layer tar of generated files: `files` files of `size` bytes under `dir/`, deterministic.
fn small_layer(dir: &str, seed: u64, files: usize, size: usize) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for f in 0..files {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(f as u64 + 1);
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b'a' + ((x >> 33) % 26) as u8
            })
            .collect();
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, format!("{dir}/file{f}"), &data[..])?;
    }
    Ok(b.into_inner()?)
}

/// Write a `docker save`-style bundle at `dest`: every layer once as `<diff_id hex>.tar` (the
/// base's files in `base` under `staging`), one config per image, `manifest.json` last with each
/// image's `RepoTags`. `own(i)` gives image i's own layers.
fn write_bundle(
    dest: &Path,
    staging: &Path,
    base: &[(String, u64)],
    images: std::ops::Range<usize>,
    own: impl Fn(usize) -> Result<Vec<Vec<u8>>>,
) -> Result<()> {
    let f = File::create(dest).with_context(|| format!("create {}", dest.display()))?;
    let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 20, f));
    b.mode(tar::HeaderMode::Deterministic);
    let entry = |size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        h
    };
    for (hex, size) in base {
        let mut file = File::open(staging.join(format!("{hex}.tar")))?;
        b.append_data(&mut entry(*size), format!("{hex}.tar"), &mut file)?;
    }
    let mut items = Vec::new();
    for (i, name) in images.map(|i| (i, name(i))) {
        let mut layers: Vec<String> = base.iter().map(|(hex, _)| format!("{hex}.tar")).collect();
        let mut diff_ids: Vec<String> = base
            .iter()
            .map(|(hex, _)| format!("sha256:{hex}"))
            .collect();
        for layer in own(i)? {
            let hex = util::sha256_hex(&layer);
            b.append_data(
                &mut entry(layer.len() as u64),
                format!("{hex}.tar"),
                &layer[..],
            )?;
            layers.push(format!("{hex}.tar"));
            diff_ids.push(format!("sha256:{hex}"));
        }
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Labels": {"bench.image": name}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        })
        .to_string();
        let config_name = format!("{}.json", util::sha256_hex(config.as_bytes()));
        b.append_data(
            &mut entry(config.len() as u64),
            &config_name,
            config.as_bytes(),
        )?;
        items.push(json!({"Config": config_name, "RepoTags": [name], "Layers": layers}));
    }
    let manifest = serde_json::Value::Array(items).to_string();
    b.append_data(
        &mut entry(manifest.len() as u64),
        "manifest.json",
        manifest.as_bytes(),
    )?;
    b.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    Ok(())
}

/// The bench bundle: 20 images on a base of about `base_bytes` of real files in two layers, each
/// with 1–3 small layers of its own (a few hundred KB). With `folder`, `dest` is a directory of
/// the same images, one bundle of one image per file.
pub fn build_bundle(dest: &Path, base_bytes: u64, folder: bool) -> Result<()> {
    let staging = dest.with_extension("staging");
    measure::fresh_dir(&staging)?;
    let items: Vec<Item> = collect(base_bytes, base_bytes / 4);
    let split = items.len() * 4 / 5;
    let mut base = Vec::new();
    for (k, part) in [&items[..split], &items[split..]].into_iter().enumerate() {
        let tmp = staging.join(format!("base{k}.tar"));
        let (hex, size) = write_layer(part, &tmp)?;
        fs::rename(&tmp, staging.join(format!("{hex}.tar")))?;
        base.push((hex, size));
    }
    let own = |i: usize| {
        (0..1 + i % 3)
            .map(|k| small_layer(&format!("app{i}/part{k}"), (i * 10 + k) as u64, 20, 10_000))
            .collect()
    };
    if folder {
        fs::create_dir_all(dest)?;
        for i in 0..IMAGES {
            write_bundle(&dest.join(folder_file(i)), &staging, &base, i..i + 1, own)?;
        }
    } else {
        write_bundle(dest, &staging, &base, 0..IMAGES, own)?;
    }
    util::remove_any(&staging)
}

/// A scale bundle: `count` images on a tiny shared base, one tiny layer each.
pub fn build_scale_bundle(dest: &Path, count: usize) -> Result<()> {
    let staging = dest.with_extension("staging");
    measure::fresh_dir(&staging)?;
    let base_layer = small_layer("base", 1, 4, 1_000)?;
    let hex = util::sha256_hex(&base_layer);
    fs::write(staging.join(format!("{hex}.tar")), &base_layer)?;
    let base = vec![(hex, base_layer.len() as u64)];
    write_bundle(dest, &staging, &base, 0..count, |i| {
        Ok(vec![small_layer(
            &format!("app{i}"),
            i as u64 + 100,
            1,
            200,
        )?])
    })?;
    util::remove_any(&staging)
}

/// Repositories under a prefix that changes every round: `bench/<stem>N/…`, the earlier rounds'
/// deleted from the registry's storage (nothing can be mounted from them). The stems start with
/// `u`, which no other step's prefix does: the single-image steps clear `bench/<letter>*` before
/// their cold rounds, and a stem starting with `b` lost the re-push's seeded repositories to
/// skopeo's `b`.
struct Rounds {
    registry: Rc<Registry>,
    stem: &'static str,
    n: Cell<usize>,
}

impl Rounds {
    fn new(registry: &Rc<Registry>, stem: &'static str) -> Rc<Self> {
        Rc::new(Rounds {
            registry: Rc::clone(registry),
            stem,
            n: Cell::new(0),
        })
    }

    /// `HOST/bench/<stem>N` of this round.
    fn prefix(&self) -> String {
        format!(
            "{}/bench/{}{}",
            self.registry.addr(),
            self.stem,
            self.n.get()
        )
    }

    fn next(&self) -> Result<String> {
        util::remove_any(
            &self
                .registry
                .repo_dir(&format!("bench/{}{}", self.stem, self.n.get())),
        )?;
        self.n.set(self.n.get() + 1);
        Ok(self.prefix())
    }

    /// Every image of the bundle tagged in this round's repositories.
    fn check(&self, count: usize) -> Result<()> {
        for name in names(count) {
            let (repo, tag) = name.rsplit_once(':').unwrap_or((&name, "latest"));
            let repo = format!("bench/{}{}/{repo}", self.stem, self.n.get());
            let link = self
                .registry
                .repo_dir(&repo)
                .join(format!("_manifests/tags/{tag}/current/link"));
            if !link.is_file() {
                bail!("{repo}:{tag} was not pushed");
            }
        }
        Ok(())
    }
}

fn push_all(push: &Path, bundle: &Path, dest: &str, cache: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(push);
    c.arg("--all")
        .arg(bundle)
        .arg(dest)
        .args(["-q", "--plain-http", "--cache-dir"])
        .arg(cache)
        .args(extra);
    c
}

/// The loop of skopeo copies, one shell, its blob-info cache in `cache` (see the module docs):
/// each of `copies` is (the `docker-archive:` source, the name it goes to under `prefix`).
fn skopeo_loop(copies: &[(String, String)], prefix: &str, cache: &Path) -> Command {
    let script = "for p in $COPIES; do skopeo copy -q --dest-tls-verify=false \"docker-archive:${p%%=*}\" \"docker://$PREFIX/${p#*=}\" || exit 1; done";
    let mut c = if util::is_root() {
        let mut c = Command::new("unshare");
        c.args(["-m", "sh", "-c"]).arg(format!(
            "mkdir -p /var/lib/containers/cache && mount --bind \"$CACHE\" /var/lib/containers/cache && {script}"
        ));
        c
    } else {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script).env("XDG_DATA_HOME", cache);
        c
    };
    let copies: Vec<String> = copies.iter().map(|(s, n)| format!("{s}={n}")).collect();
    c.env("COPIES", copies.join(" "))
        .env("PREFIX", prefix)
        .env("CACHE", cache.join("containers/cache"));
    c
}

/// `podman load` then the loop of `podman push`, in a storage of its own under `root`.
fn podman_loop(bundle: &Path, prefix: &str, root: &Path) -> Command {
    let script = "P=\"podman --root $ROOT/root --runroot $ROOT/run --storage-driver overlay\"; \
        $P load -q -i \"$BUNDLE\" >/dev/null || exit 1; \
        for n in $NAMES; do $P push -q --tls-verify=false \"$n\" \"docker://$PREFIX/$n\" || exit 1; done";
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(script)
        .env("NAMES", names(IMAGES).join(" "))
        .env("BUNDLE", bundle)
        .env("PREFIX", prefix)
        .env("ROOT", root);
    c
}

/// Remove podman's storage under `root` (its images: nothing else runs there).
fn reset_podman(root: &Path) -> Result<()> {
    if root.join("root").exists() {
        let _ = Command::new("podman")
            .arg("--root")
            .arg(root.join("root"))
            .arg("--runroot")
            .arg(root.join("run"))
            .args(["--storage-driver", "overlay", "system", "reset", "-f"])
            .output();
    }
    util::remove_any(root)?;
    fs::create_dir_all(root)?;
    Ok(())
}

/// The bundle steps: ours cold and again, the skopeo loop, podman (when it is installed).
pub fn bundle_steps(push: &Path, bundle: &Path, registry: &Rc<Registry>, work: &Path) -> Vec<Step> {
    let cache = work.join("bulk-cache");
    let log = |n: &str| Rc::new(Log(work.join(format!("{n}.log"))));
    let mut steps = Vec::new();
    {
        let rounds = Rounds::new(registry, "ubk");
        let (r1, r2, r3) = (rounds.clone(), rounds.clone(), rounds);
        let (p, b, c, c2) = (
            push.to_path_buf(),
            bundle.to_path_buf(),
            cache.clone(),
            cache.clone(),
        );
        let l = log("bulk-cold");
        steps.push(
            Step::new(BULK_COLD, move || {
                with_registry_cpu(&r1.registry, || {
                    measure::time_command(&mut push_all(&p, &b, &r1.prefix(), &c, &[]), &l)
                })
            })
            .prepare(move || {
                r2.next()?;
                util::remove_any(&c2)
            })
            .verify(move || r3.check(IMAGES)),
        );
    }
    {
        let rounds = Rounds::new(registry, "uba");
        let (r1, r2) = (rounds.clone(), rounds);
        let (p, b, c) = (push.to_path_buf(), bundle.to_path_buf(), cache.clone());
        let (p2, b2, c2) = (push.to_path_buf(), bundle.to_path_buf(), cache.clone());
        let l = log("bulk-again");
        steps.push(
            Step::new(BULK_AGAIN, move || {
                measure::time_command(&mut push_all(&p, &b, &r1.prefix(), &c, &[]), &l)
            })
            .prepare(move || {
                if r2.n.get() == 0 {
                    let dest = r2.next()?;
                    util::run_quiet(&mut push_all(&p2, &b2, &dest, &c2, &[]))
                        .context("seeding the bulk re-push")?;
                }
                util::remove_any(&c2)
            }),
        );
    }
    let copies = names(IMAGES)
        .into_iter()
        .map(|n| (format!("{}:{n}", bundle.display()), n))
        .collect();
    steps.push(skopeo_step(SKOPEO_LOOP, copies, "usk", registry, work));
    if util::have("podman") {
        steps.push(podman_step(bundle, registry, work));
    } else {
        eprintln!("xtask bench: podman is not installed: podman load + push not timed");
    }
    steps
}

/// The skopeo loop over `copies` ([`skopeo_loop`]) as step `step`, under `bench/<stem>N`.
fn skopeo_step(
    step: &str,
    copies: Vec<(String, String)>,
    stem: &'static str,
    registry: &Rc<Registry>,
    work: &Path,
) -> Step {
    let rounds = Rounds::new(registry, stem);
    let (r1, r2, r3) = (rounds.clone(), rounds.clone(), rounds);
    let cache = work.join("skopeo-cache");
    let (c, c2) = (cache.clone(), cache);
    let l = Rc::new(Log(work.join(format!("{stem}-skopeo.log"))));
    Step::new(step, move || {
        with_registry_cpu(&r1.registry, || {
            measure::time_command(&mut skopeo_loop(&copies, &r1.prefix(), &c), &l)
        })
    })
    .prepare(move || {
        r2.next()?;
        util::remove_any(&c2)?;
        fs::create_dir_all(c2.join("containers/cache"))?;
        Ok(())
    })
    .verify(move || r3.check(IMAGES))
}

fn podman_step(bundle: &Path, registry: &Rc<Registry>, work: &Path) -> Step {
    let rounds = Rounds::new(registry, "upd");
    let (r1, r2, r3) = (rounds.clone(), rounds.clone(), rounds);
    let root = work.join("podman");
    let (b, p, p2, p3) = (bundle.to_path_buf(), root.clone(), root.clone(), root);
    let l = Rc::new(Log(work.join("bulk-podman.log")));
    Step::new(PODMAN, move || {
        measure::time_command(&mut podman_loop(&b, &r1.prefix(), &p), &l)
    })
    .prepare(move || {
        r2.next()?;
        reset_podman(&p2)
    })
    .verify(move || {
        r3.check(IMAGES)?;
        reset_podman(&p3)
    })
}

/// The folder steps: `--all DIR` of the one-image saves cold (and the `baseline` build's), and the
/// skopeo loop over the files.
pub fn folder_steps(
    push: &Path,
    baseline: Option<&Path>,
    folder: &Path,
    registry: &Rc<Registry>,
    work: &Path,
) -> Vec<Step> {
    let cache = work.join("bulk-cache");
    let mut steps = Vec::new();
    let mut ours = vec![(FOLDER_COLD, push.to_path_buf(), "ufo")];
    if let Some(dir) = baseline {
        ours.push((FOLDER_BASELINE, dir.join("layerlift-push"), "ufb"));
    }
    for (step, push, stem) in ours {
        let rounds = Rounds::new(registry, stem);
        let (r1, r2, r3) = (rounds.clone(), rounds.clone(), rounds);
        let (f, c, c2) = (folder.to_path_buf(), cache.clone(), cache.clone());
        let l = Rc::new(Log(work.join(format!("{stem}.log"))));
        steps.push(
            Step::new(step, move || {
                with_registry_cpu(&r1.registry, || {
                    measure::time_command(&mut push_all(&push, &f, &r1.prefix(), &c, &[]), &l)
                })
            })
            .prepare(move || {
                r2.next()?;
                util::remove_any(&c2)
            })
            .verify(move || r3.check(IMAGES)),
        );
    }
    let copies = (0..IMAGES)
        .map(|i| (folder.join(folder_file(i)).display().to_string(), name(i)))
        .collect();
    steps.push(skopeo_step(FOLDER_SKOPEO, copies, "ufs", registry, work));
    steps
}

/// The scale steps: `--dry-run` and a cold push of the 100- and 1,000-image bundles.
pub fn scale_steps(
    push: &Path,
    bundles: [&Path; 2],
    registry: &Rc<Registry>,
    work: &Path,
) -> Vec<Step> {
    let cache = work.join("bulk-cache");
    let mut steps = Vec::new();
    for ((bundle, count), (dry, cold, stem)) in bundles
        .into_iter()
        .zip([100, 1000])
        .zip([(DRY_100, SCALE_100, "usa"), (DRY_1000, SCALE_1000, "usb")])
    {
        let rounds = Rounds::new(registry, stem);
        let (r1, r2, r3, r4) = (rounds.clone(), rounds.clone(), rounds.clone(), rounds);
        let (p, b, c) = (push.to_path_buf(), bundle.to_path_buf(), cache.clone());
        let (p2, b2, c2, c3) = (p.clone(), b.clone(), c.clone(), c.clone());
        let l = Rc::new(Log(work.join(format!("{stem}-dry.log"))));
        steps.push(Step::new(dry, move || {
            let dest = format!("{}/dry", r1.prefix());
            measure::time_command(&mut push_all(&p, &b, &dest, &c, &["--dry-run"]), &l)
        }));
        let l = Rc::new(Log(work.join(format!("{stem}.log"))));
        steps.push(
            Step::new(cold, move || {
                measure::time_command(&mut push_all(&p2, &b2, &r2.prefix(), &c2, &[]), &l)
            })
            .prepare(move || {
                r3.next()?;
                util::remove_any(&c3)
            })
            .verify(move || r4.check(count)),
        );
    }
    steps
}

/// `run`'s sample with the CPU time `registry` spent meanwhile (for the least possible ratio).
fn with_registry_cpu(
    registry: &Registry,
    run: impl FnOnce() -> Result<measure::Sample>,
) -> Result<measure::Sample> {
    let before = registry.cpu_time()?;
    let mut sample = run()?;
    sample.server_cpu = Some(registry.cpu_time()?.saturating_sub(before));
    Ok(sample)
}

/// The targets of the bulk steps (issue #24's "done when").
pub fn targets(podman: bool, cpus: usize) -> Vec<Target> {
    let ratio = |label: &str, numerator: &str, denominator: &str, max: f64| Target::Ratio {
        label: label.into(),
        numerator: numerator.into(),
        denominator: denominator.into(),
        max,
    };
    let rss = |step: &str, max_mib: f64| Target::PeakRss {
        label: format!("{step} peak RSS"),
        step: step.into(),
        max_mib,
    };
    let mut t = vec![
        ratio("bulk cold / skopeo loop", BULK_COLD, SKOPEO_LOOP, 0.3),
        Target::CpuInfo {
            label: "bulk cold / skopeo loop, CPU time".into(),
            numerator: BULK_COLD.into(),
            denominator: SKOPEO_LOOP.into(),
        },
        Target::CpuFloor {
            label: "bulk cold / skopeo loop, least possible here".into(),
            numerator: BULK_COLD.into(),
            denominator: SKOPEO_LOOP.into(),
            cpus,
        },
        ratio(
            "bulk again / cold skopeo loop",
            BULK_AGAIN,
            SKOPEO_LOOP,
            0.08,
        ),
        rss(BULK_COLD, 64.0),
        rss(BULK_AGAIN, 64.0),
        rss(DRY_1000, 128.0),
        rss(SCALE_1000, 128.0),
        Target::Info {
            label: "1000 / 100 images, --dry-run (linear: ~10)".into(),
            numerator: DRY_1000.into(),
            denominator: DRY_100.into(),
        },
        Target::Info {
            label: "1000 / 100 images, cold push (linear: ~10)".into(),
            numerator: SCALE_1000.into(),
            denominator: SCALE_100.into(),
        },
    ];
    if podman {
        t.insert(
            1,
            ratio("bulk cold / podman load + push", BULK_COLD, PODMAN, 0.2),
        );
    }
    t.extend([
        Target::Info {
            label: "folder cold / skopeo loop over the files".into(),
            numerator: FOLDER_COLD.into(),
            denominator: FOLDER_SKOPEO.into(),
        },
        Target::CpuInfo {
            label: "folder cold / skopeo loop over the files, CPU time".into(),
            numerator: FOLDER_COLD.into(),
            denominator: FOLDER_SKOPEO.into(),
        },
        Target::Info {
            label: "folder cold / baseline's".into(),
            numerator: FOLDER_COLD.into(),
            denominator: FOLDER_BASELINE.into(),
        },
        Target::Info {
            label: "folder cold / bundle cold (the same images)".into(),
            numerator: FOLDER_COLD.into(),
            denominator: BULK_COLD.into(),
        },
    ]);
    t
}

/// The bundles (built once, cached in `dir`): the bench bundle, the folder of the same images one
/// per file, and the 100- and 1,000-image bundles.
pub fn bundles(dir: &Path, quick: bool) -> Result<(PathBuf, PathBuf, [PathBuf; 2])> {
    let base: u64 = if quick { 10 << 20 } else { 100 << 20 };
    let bundle = dir.join(format!("bulk-{IMAGES}x{}M.tar", base >> 20));
    if util::build_once(&bundle, |tmp| build_bundle(tmp, base, false))? {
        eprintln!("xtask bench: built {}", bundle.display());
    }
    let folder = dir.join(format!("bulk-{IMAGES}x{}M.d", base >> 20));
    if util::build_once(&folder, |tmp| build_bundle(tmp, base, true))? {
        eprintln!("xtask bench: built {}", folder.display());
    }
    let mut scale = [dir.join("bulk-100.tar"), dir.join("bulk-1000.tar")];
    for (path, count) in scale.iter_mut().zip([100, 1000]) {
        util::build_once(path, |tmp| build_scale_bundle(tmp, count))?;
    }
    Ok((bundle, folder, scale))
}
