//! The pack comparison of `cargo xtask bench` (issue 23): `layerlift-pack LAYOUT OUT` (a
//! docker-archive of the unpacked bench image, its uncompressed layers copied as they are) against
//! `tar -cf OUT -C LAYOUT blobs index.json oci-layout`, the same blobs tarred by tar itself, in the
//! same run. pack does more than tar — it hashes every blob it copies and checks it against its
//! digest, and it fsyncs OUT before renaming it into place. The target holds pack to plain
//! `tar -cf`; beside it the bench shows `tar -cf` followed by `sync OUT` (coreutils: fsync of that
//! file, pack's durability) and both tools writing down a pipe (`… - | cat >/dev/null`, where
//! neither fsyncs: what pack costs apart from making its file durable).

use crate::measure::{self, Log, Step, Target};
use crate::util;
use anyhow::{Result, bail};
use std::path::Path;
use std::process::Command;
use std::rc::Rc;

pub const TAR_CF: &str = "tar -cf OUT blobs (the layout's)";
pub const TAR_CF_SYNC: &str = "tar -cf OUT blobs && sync OUT";
pub const PACK: &str = "layerlift-pack LAYOUT OUT";
pub const PACK_OCI: &str = "layerlift-pack LAYOUT OUT --format oci";
pub const TAR_CF_PIPE: &str = "tar -cf - blobs | cat >/dev/null";
pub const PACK_PIPE: &str = "layerlift-pack LAYOUT - | cat >/dev/null";
pub const BASELINE_PACK: &str = "baseline layerlift-pack LAYOUT OUT";

/// tar, tar then sync, pack (docker) and pack --format oci of `layout`, each into its own file
/// under `work`; with `baseline` (a directory of release binaries), its `layerlift-pack` too.
pub fn pack_steps(pack: &Path, layout: &Path, work: &Path, baseline: Option<&Path>) -> Vec<Step> {
    let layout = Rc::new(layout.to_path_buf());
    let baseline = baseline.map(|dir| Rc::new(dir.join("layerlift-pack")));
    let pack = Rc::new(pack.to_path_buf());
    let mut steps = Vec::new();

    let (l, out) = (layout.clone(), work.join("tar-cf.tar"));
    let log = Rc::new(Log(work.join("tar-cf.log")));
    let (o2, o3) = (out.clone(), out.clone());
    steps.push(
        Step::new(TAR_CF, move || {
            measure::time_command(
                Command::new("tar")
                    .arg("-cf")
                    .arg(&out)
                    .arg("-C")
                    .arg(&*l)
                    .args(["blobs", "index.json", "oci-layout"]),
                &log,
            )
        })
        .prepare(move || util::remove_any(&o2))
        .verify(move || check_archive(&o3)),
    );

    let (l, out) = (layout.clone(), work.join("tar-cf-sync.tar"));
    let log = Rc::new(Log(work.join("tar-cf-sync.log")));
    let (o2, o3) = (out.clone(), out.clone());
    steps.push(
        Step::new(TAR_CF_SYNC, move || {
            measure::time_command(
                Command::new("sh")
                    .arg("-c")
                    .arg("tar -cf \"$1\" -C \"$2\" blobs index.json oci-layout && sync \"$1\"")
                    .arg("sh")
                    .arg(&out)
                    .arg(&*l),
                &log,
            )
        })
        .prepare(move || util::remove_any(&o2))
        .verify(move || check_archive(&o3)),
    );

    // Down a pipe: `cat` reads what each writes, so that tar cannot skip reading the files (GNU
    // tar does when its archive is /dev/null itself).
    let (l, log) = (layout.clone(), Rc::new(Log(work.join("tar-cf-pipe.log"))));
    steps.push(Step::new(TAR_CF_PIPE, move || {
        measure::time_command(
            Command::new("bash")
                .arg("-c")
                .arg("set -o pipefail; tar -cf - -C \"$1\" blobs index.json oci-layout | cat >/dev/null")
                .arg("sh")
                .arg(&*l),
            &log,
        )
    }));
    let (l, p) = (layout.clone(), pack.clone());
    let log = Rc::new(Log(work.join("pack-pipe.log")));
    steps.push(Step::new(PACK_PIPE, move || {
        measure::time_command(
            Command::new("bash")
                .arg("-c")
                .arg("set -o pipefail; \"$1\" \"$2\" - -q | cat >/dev/null")
                .arg("sh")
                .arg(&*p)
                .arg(&*l),
            &log,
        )
    }));

    let mut packs = vec![
        (PACK, pack.clone(), &[][..], "pack.tar"),
        (
            PACK_OCI,
            pack.clone(),
            &["--format", "oci"][..],
            "pack-oci.tar",
        ),
    ];
    if let Some(old) = baseline {
        packs.push((BASELINE_PACK, old, &[][..], "pack-baseline.tar"));
    }
    for (name, p, extra, file) in packs {
        let (l, out) = (layout.clone(), work.join(file));
        let log = Rc::new(Log(work.join(format!("{file}.log"))));
        let (o2, o3) = (out.clone(), out.clone());
        steps.push(
            Step::new(name, move || {
                measure::time_command(
                    Command::new(&*p).arg(&*l).arg(&out).args(extra).arg("-q"),
                    &log,
                )
            })
            .prepare(move || util::remove_any(&o2))
            .verify(move || check_archive(&o3)),
        );
    }
    steps
}

/// A run counts only if it left an archive of a plausible size behind.
fn check_archive(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() >= 1024 => Ok(()),
        Ok(m) => bail!("{} holds only {} bytes", path.display(), m.len()),
        Err(e) => bail!("{}: {e}", path.display()),
    }
}

/// Issue 23: pack ≤ 1.2× `tar -cf` of the same blobs; beside it, pack against tar made as
/// durable as pack's output, and both down a pipe; its memory bounded by buffers; with a
/// baseline, pack against the baseline's.
pub fn pack_targets(baseline: bool) -> Vec<Target> {
    let mut targets = vec![
        Target::Ratio {
            label: "pack / tar -cf".into(),
            numerator: PACK.into(),
            denominator: TAR_CF.into(),
            max: 1.2,
        },
        Target::Info {
            label: "pack / (tar -cf && sync), same durability".into(),
            numerator: PACK.into(),
            denominator: TAR_CF_SYNC.into(),
        },
        Target::Info {
            label: "pack - | cat / tar -cf - | cat (neither fsyncs)".into(),
            numerator: PACK_PIPE.into(),
            denominator: TAR_CF_PIPE.into(),
        },
        Target::Info {
            label: "pack --format oci / (tar -cf && sync)".into(),
            numerator: PACK_OCI.into(),
            denominator: TAR_CF_SYNC.into(),
        },
        Target::PeakRss {
            label: "pack peak RSS".into(),
            step: PACK.into(),
            max_mib: 32.0,
        },
    ];
    if baseline {
        targets.push(Target::Info {
            label: "pack / baseline pack".into(),
            numerator: PACK.into(),
            denominator: BASELINE_PACK.into(),
        });
    }
    targets
}
