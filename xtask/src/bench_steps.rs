//! The convert and push comparisons of `cargo xtask bench`, against skopeo in
//! the same run, on the layout that `layerlift-unpack` makes of the bench archive.
//!
//! convert: `layerlift-convert IN OUT` (gzip, and zstd) against
//! `skopeo copy --dest-compress --dest-compress-format gzip oci:IN:REF oci:OUT:x`, with
//! `cat LAYERS | pigz -p2 -LEVEL` as the physical floor of gzip on two cores.
//!
//! push: `layerlift-push LAYOUT HOST/bench/aN:1` against
//! `skopeo copy --dest-tls-verify=false oci:LAYOUT:REF docker://HOST/bench/bN:1` on one local
//! registry, each cold (a repository name never used, and no repository of the same tool left that
//! skopeo could mount from: skopeo remembers where it pushed blobs and mounts them from there) and
//! as a re-push of the same image to the repository that already has it. And the archive
//! push comparison: `layerlift-push ARCHIVE` against `skopeo copy docker-archive:ARCHIVE docker://…`,
//! both compressing on the way, cold, with the layer bytes the registry stored.

use crate::measure::{self, Log, Step};
use crate::registry::Registry;
use crate::util;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

/// layerlift-convert's default gzip level (`--help`: "gzip 1-12 (default 1…)"); pigz runs at it too.
pub const GZIP_LEVEL: u32 = 1;
/// layerlift-convert's default zstd level (`--help`: "zstd 1-19 (default 2)").
pub const ZSTD_LEVEL: u32 = 2;

pub const SKOPEO_GZIP: &str = "skopeo copy --dest-compress oci: oci:";
pub const CONVERT_GZIP: &str = "layerlift-convert IN OUT (gzip)";
pub const CONVERT_ZSTD: &str = "layerlift-convert IN OUT --compression zstd";
pub const PIGZ: &str = "cat LAYERS | pigz -p2 -1";
pub const PUSH_COLD: &str = "layerlift-push LAYOUT (cold)";
pub const SKOPEO_PUSH_COLD: &str = "skopeo copy oci: docker:// (cold)";
pub const PUSH_AGAIN: &str = "layerlift-push LAYOUT (re-push)";
pub const SKOPEO_PUSH_AGAIN: &str = "skopeo copy oci: docker:// (re-push)";
pub const PUSH_ARCHIVE: &str = "layerlift-push ARCHIVE (cold)";
pub const SKOPEO_PUSH_ARCHIVE: &str = "skopeo copy docker-archive: docker://";
pub const PUSH_ARCHIVE_40: &str = "layerlift-push 40-layer ARCHIVE (cold)";
pub const SKOPEO_PUSH_ARCHIVE_40: &str = "skopeo copy 40-layer docker-archive: docker://";
pub const PUSH_ARCHIVE_TWO: &str = "layerlift-push ARCHIVE DEST DEST (2 registries, cold)";

/// Sum of the layer sizes of every image in an OCI layout, as the manifests record them.
pub fn layer_bytes(layout: &Path) -> Result<u64> {
    Ok(layers(layout)?.iter().map(|(_, size)| size).sum())
}

/// The layer blobs of every image in an OCI layout (path, size), in manifest order.
pub fn layers(layout: &Path) -> Result<Vec<(PathBuf, u64)>> {
    fn walk(layout: &Path, descs: &[Value], acc: &mut Vec<(PathBuf, u64)>) -> Result<()> {
        for d in descs {
            let path = blob_path(layout, d)?;
            let doc: Value = serde_json::from_slice(
                &fs::read(&path).with_context(|| format!("read {}", path.display()))?,
            )
            .with_context(|| format!("parse {}", path.display()))?;
            if let Some(m) = doc["manifests"].as_array() {
                walk(layout, m, acc)?;
            }
            for l in doc["layers"].as_array().into_iter().flatten() {
                acc.push((blob_path(layout, l)?, l["size"].as_u64().unwrap_or(0)));
            }
        }
        Ok(())
    }
    let index = read_index(layout)?;
    let mut acc = Vec::new();
    walk(
        layout,
        index["manifests"].as_array().map_or(&[][..], |v| v),
        &mut acc,
    )?;
    if acc.is_empty() {
        bail!("no layers in {}", layout.display());
    }
    Ok(acc)
}

/// The `org.opencontainers.image.ref.name` of the layout's first image (what `oci:DIR:REF` names).
pub fn ref_name(layout: &Path) -> Result<String> {
    read_index(layout)?["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no ref.name in {}/index.json", layout.display()))
}

fn read_index(layout: &Path) -> Result<Value> {
    let p = layout.join("index.json");
    serde_json::from_slice(&fs::read(&p).with_context(|| format!("read {}", p.display()))?)
        .with_context(|| format!("parse {}", p.display()))
}

fn blob_path(layout: &Path, desc: &Value) -> Result<PathBuf> {
    let digest = desc["digest"]
        .as_str()
        .context("descriptor without digest")?;
    let (algo, hex) = digest.split_once(':').context("bad digest")?;
    Ok(layout.join("blobs").join(algo).join(hex))
}

/// The output sizes (sum of layer blobs) of the last successful run of each convert step.
#[derive(Default)]
pub struct Sizes {
    pub skopeo_gzip: Rc<Cell<Option<u64>>>,
    pub layerlift_gzip: Rc<Cell<Option<u64>>>,
    pub layerlift_zstd: Rc<Cell<Option<u64>>>,
}

/// A convert step's check: the output is a layout with layers; record their total size.
fn check_output(dir: &Path, size: &Cell<Option<u64>>) -> Result<()> {
    if !dir.join("oci-layout").is_file() {
        bail!("no oci-layout in {}", dir.display());
    }
    size.set(Some(layer_bytes(dir)?));
    Ok(())
}

/// skopeo (gzip), layerlift-convert gzip and zstd, and pigz over the same uncompressed layers.
pub fn convert_steps(
    convert: &Path,
    input: &Path,
    work: &Path,
    sizes: &Sizes,
) -> Result<Vec<Step>> {
    let input = Rc::new(input.to_path_buf());
    let convert = Rc::new(convert.to_path_buf());
    let reference = ref_name(&input)?;
    let mut steps = Vec::new();

    let (i, out) = (input.clone(), work.join("sk"));
    let log = Rc::new(Log(work.join("skopeo-gzip.log")));
    let (o2, o3, size) = (out.clone(), out.clone(), sizes.skopeo_gzip.clone());
    let src = format!("oci:{}:{reference}", i.display());
    steps.push(
        Step::new(SKOPEO_GZIP, move || {
            measure::time_command(
                Command::new("skopeo")
                    .args(["copy", "-q", "--dest-compress"])
                    .args(["--dest-compress-format", "gzip"])
                    .arg(&src)
                    .arg(format!("oci:{}:x", out.display())),
                &log,
            )
        })
        .prepare(move || util::remove_any(&o2))
        .verify(move || check_output(&o3, &size)),
    );

    for (name, extra, out, logname, size) in [
        (
            CONVERT_GZIP,
            &[][..],
            work.join("gz"),
            "convert-gzip.log",
            sizes.layerlift_gzip.clone(),
        ),
        (
            CONVERT_ZSTD,
            &["--compression", "zstd"][..],
            work.join("zst"),
            "convert-zstd.log",
            sizes.layerlift_zstd.clone(),
        ),
    ] {
        let (i, c) = (input.clone(), convert.clone());
        let log = Rc::new(Log(work.join(logname)));
        let (o2, o3) = (out.clone(), out.clone());
        steps.push(
            Step::new(name, move || {
                measure::time_command(
                    Command::new(&*c).arg(&*i).arg(&out).arg("-q").args(extra),
                    &log,
                )
            })
            .prepare(move || util::remove_any(&o2))
            .verify(move || check_output(&o3, &size)),
        );
    }

    let blobs: Vec<PathBuf> = layers(&input)?.into_iter().map(|(p, _)| p).collect();
    let log = Rc::new(Log(work.join("pigz.log")));
    steps.push(Step::new(PIGZ, move || {
        measure::time_pipeline(
            Command::new("cat").args(&blobs),
            Command::new("pigz")
                .arg("-p2")
                .arg(format!("-{GZIP_LEVEL}")),
            &log,
        )
    }));
    Ok(steps)
}

/// A size recorded by a step's check, read after the runs.
pub type Stored = Rc<Cell<Option<u64>>>;

/// One tool's pushes: cold into `bench/<prefix>N:1` (N counting up), and again into the last one.
struct Pusher {
    registry: Rc<Registry>,
    /// The address pushes go to instead of the registry's own (a proxy in front of it).
    via: Option<String>,
    prefix: &'static str,
    n: Cell<usize>,
    command: Box<dyn Fn(&str) -> Command>,
    /// Sum of the layer sizes the registry stored for the last push.
    stored: Stored,
    /// skopeo: containers/image's blob-info cache is removed before each cold push.
    is_skopeo: bool,
}

impl Pusher {
    fn new(
        registry: Rc<Registry>,
        prefix: &'static str,
        command: impl Fn(&str) -> Command + 'static,
    ) -> Rc<Self> {
        Self::with(registry, prefix, false, command)
    }

    /// `skopeo copy --dest-tls-verify=false SRC docker://DEST`.
    fn skopeo(registry: Rc<Registry>, prefix: &'static str, src: String) -> Rc<Self> {
        Self::with(registry, prefix, true, move |dest| {
            let mut c = Command::new("skopeo");
            c.args(["copy", "--dest-tls-verify=false"])
                .arg(&src)
                .arg(format!("docker://{dest}"));
            c
        })
    }

    fn with(
        registry: Rc<Registry>,
        prefix: &'static str,
        is_skopeo: bool,
        command: impl Fn(&str) -> Command + 'static,
    ) -> Rc<Self> {
        Rc::new(Pusher {
            registry,
            via: None,
            prefix,
            n: Cell::new(0),
            command: Box::new(command),
            stored: Rc::default(),
            is_skopeo,
        })
    }

    fn repo(&self) -> String {
        format!("bench/{}{}", self.prefix, self.n.get().max(1))
    }

    fn dest(&self) -> String {
        let addr = self.via.clone().unwrap_or_else(|| self.registry.addr());
        format!("{addr}/{}:1", self.repo())
    }

    /// Before a cold push: remove this tool's earlier repositories (so that nothing can be mounted
    /// from them) and take a new name. For skopeo, also remove its blob-info cache: it remembers
    /// every repository it pushed a blob to (including other steps' repositories, such as the
    /// LAYOUT push's, which hold the very gzip layers layerlift writes) and would mount from there
    /// instead of compressing and uploading (seen: a "cold" docker-archive push in 0.57 s).
    fn prepare_cold(&self) -> Result<()> {
        if self.is_skopeo {
            crate::bench_repush::forget_skopeo_cache()?;
        }
        let bench = self.registry.repo_dir("bench");
        if let Ok(rd) = fs::read_dir(&bench) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(self.prefix) {
                    util::remove_any(&e.path())?;
                }
            }
        }
        self.n.set(self.n.get() + 1);
        Ok(())
    }

    /// Before a re-push: the repository must hold the image (it does when this round's cold push
    /// succeeded; otherwise push it now, untimed).
    fn prepare_again(&self) -> Result<()> {
        if !self.tag_link().is_file() {
            let mut cmd = (self.command)(&self.dest());
            util::run_quiet(&mut cmd).context("seeding the re-push")?;
        }
        Ok(())
    }

    fn tag_link(&self) -> PathBuf {
        self.registry
            .repo_dir(&self.repo())
            .join("_manifests/tags/1/current/link")
    }

    /// After a push: the registry has the tag.
    fn verify(&self) -> Result<()> {
        if !self.tag_link().is_file() {
            bail!("{} has no tag 1 after the push", self.dest());
        }
        self.stored
            .set(Some(self.registry.stored_layer_bytes(&self.repo(), "1")?));
        Ok(())
    }
}

/// One push step of `p`: cold (a new repository) or again (the repository of the last cold push).
fn push_step(p: &Rc<Pusher>, name: &str, cold: bool, work: &Path, log: &str) -> Step {
    let (p1, p2, p3) = (p.clone(), p.clone(), p.clone());
    let log = Rc::new(Log(work.join(format!("{log}.log"))));
    Step::new(name, move || {
        let before = p1.registry.cpu_time()?;
        let mut sample = measure::time_command(&mut (p1.command)(&p1.dest()), &log)?;
        sample.server_cpu = Some(p1.registry.cpu_time()?.saturating_sub(before));
        Ok(sample)
    })
    .prepare(move || {
        if cold {
            p2.prepare_cold()
        } else {
            p2.prepare_again()
        }
    })
    .verify(move || p3.verify())
}

/// layerlift-push and skopeo, cold and again, of the gzip layout `layout` to `registry`.
pub fn push_steps(
    push: &Path,
    layout: &Path,
    registry: Rc<Registry>,
    work: &Path,
) -> Result<Vec<Step>> {
    let reference = ref_name(layout)?;
    let (push, l1) = (push.to_path_buf(), layout.to_path_buf());
    let ours = Pusher::new(registry.clone(), "a", move |dest| {
        let mut c = Command::new(&push);
        c.arg(&l1).arg(dest).arg("-q");
        c
    });
    let src = format!("oci:{}:{reference}", layout.display());
    let skopeo = Pusher::skopeo(registry, "b", src);
    Ok(vec![
        push_step(&ours, PUSH_COLD, true, work, "push-cold"),
        push_step(&skopeo, SKOPEO_PUSH_COLD, true, work, "skopeo-push-cold"),
        push_step(&ours, PUSH_AGAIN, false, work, "push-again"),
        push_step(&skopeo, SKOPEO_PUSH_AGAIN, false, work, "skopeo-push-again"),
    ])
}

/// Which archive push comparison: the step names (layerlift, skopeo) and their repository prefixes.
pub struct ArchivePush {
    pub names: [&'static str; 2],
    pub prefixes: [&'static str; 2],
}

/// The archive push comparison: the `docker save` archive straight to the registry (layerlift-push
/// compresses while it reads; skopeo compresses for a docker:// destination by default), cold.
pub const ARCHIVE_6: ArchivePush = ArchivePush {
    names: [PUSH_ARCHIVE, SKOPEO_PUSH_ARCHIVE],
    prefixes: ["c", "d"],
};
/// The same comparison on the 40-layer archive (target: ≤ 0.5× skopeo).
pub const ARCHIVE_40: ArchivePush = ArchivePush {
    names: [PUSH_ARCHIVE_40, SKOPEO_PUSH_ARCHIVE_40],
    prefixes: ["k", "m"],
};

/// The cold push of `archive` by layerlift-push and by skopeo, as `which` names them. Returns the
/// steps and the stored layer bytes of (layerlift, skopeo).
pub fn archive_push_steps(
    push: &Path,
    archive: &Path,
    registry: Rc<Registry>,
    work: &Path,
    which: &ArchivePush,
) -> (Vec<Step>, [Stored; 2]) {
    archive_push_steps_via(push, &[], archive, registry, None, work, which)
}

/// [`archive_push_steps`], both tools pushing to `via` (a proxy in front of `registry`) when given,
/// layerlift-push with `args` too.
pub fn archive_push_steps_via(
    push: &Path,
    args: &[&str],
    archive: &Path,
    registry: Rc<Registry>,
    via: Option<String>,
    work: &Path,
    which: &ArchivePush,
) -> (Vec<Step>, [Stored; 2]) {
    let ArchivePush { names, prefixes } = which;
    let (push, a1) = (push.to_path_buf(), archive.to_path_buf());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut ours = Pusher::new(registry.clone(), prefixes[0], move |dest| {
        let mut c = Command::new(&push);
        c.arg(&a1).arg(dest).arg("-q").args(&args);
        c
    });
    let src = format!("docker-archive:{}", archive.display());
    let mut skopeo = Pusher::skopeo(registry, prefixes[1], src);
    for p in [&mut ours, &mut skopeo] {
        Rc::get_mut(p).expect("not shared yet").via = via.clone();
    }
    let stored = [ours.stored.clone(), skopeo.stored.clone()];
    let steps = vec![
        push_step(
            &ours,
            names[0],
            true,
            work,
            &format!("push-archive-{}", prefixes[0]),
        ),
        push_step(
            &skopeo,
            names[1],
            true,
            work,
            &format!("skopeo-push-archive-{}", prefixes[1]),
        ),
    ];
    (steps, stored)
}

/// The cold push of `archive` by layerlift-push to two registries at once (one read, each layer
/// compressed once, uploaded to both); its server CPU is both registries'.
pub fn two_registry_step(
    push: &Path,
    archive: &Path,
    registries: [Rc<Registry>; 2],
    work: &Path,
) -> Step {
    let [a, b] = registries;
    let never = |_: &str| Command::new("false");
    let (pa, pb) = (
        Pusher::new(a.clone(), "t", never),
        Pusher::new(b.clone(), "t", never),
    );
    let (push, archive) = (push.to_path_buf(), archive.to_path_buf());
    let log = Rc::new(Log(work.join("push-archive-two.log")));
    let (prep, check) = ((pa.clone(), pb.clone()), (pa.clone(), pb.clone()));
    Step::new(PUSH_ARCHIVE_TWO, move || {
        let before = a.cpu_time()? + b.cpu_time()?;
        let mut c = Command::new(&push);
        c.arg(&archive).arg(pa.dest()).arg(pb.dest()).arg("-q");
        let mut sample = measure::time_command(&mut c, &log)?;
        let after = a.cpu_time()? + b.cpu_time()?;
        sample.server_cpu = Some(after.saturating_sub(before));
        Ok(sample)
    })
    .prepare(move || {
        prep.0.prepare_cold()?;
        prep.1.prepare_cold()
    })
    .verify(move || {
        check.0.verify()?;
        check.1.verify()
    })
}
