//! The pack comparison of `cargo xtask bench` (issue 23): `layerlift-pack LAYOUT OUT` (a
//! docker-archive of the unpacked bench image, its uncompressed layers copied as they are) against
//! `tar -cf OUT -C LAYOUT blobs index.json oci-layout`, the same blobs tarred by tar itself, in the
//! same run. pack does more than tar — it hashes every blob it copies and checks it against its
//! digest, and it fsyncs OUT before renaming it into place — so the target is a ratio, and the
//! reference it is held to is `tar -cf` followed by `sync OUT` (coreutils: fsync of that file), the
//! same durability; plain `tar -cf` is shown beside it.

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

/// tar, tar then sync, pack (docker) and pack --format oci of `layout`, each into its own file
/// under `work`.
pub fn pack_steps(pack: &Path, layout: &Path, work: &Path) -> Vec<Step> {
    let layout = Rc::new(layout.to_path_buf());
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

    for (name, extra, file) in [
        (PACK, &[][..], "pack.tar"),
        (PACK_OCI, &["--format", "oci"][..], "pack-oci.tar"),
    ] {
        let (l, p, out) = (layout.clone(), pack.clone(), work.join(file));
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

/// Issue 23: pack ≤ 1.2× `tar -cf` of the same blobs (made as durable as pack's output); its
/// memory bounded by buffers.
pub fn pack_targets() -> Vec<Target> {
    vec![
        Target::Ratio {
            label: "pack / (tar -cf && sync)".into(),
            numerator: PACK.into(),
            denominator: TAR_CF_SYNC.into(),
            max: 1.2,
        },
        Target::Info {
            label: "pack / tar -cf (no fsync)".into(),
            numerator: PACK.into(),
            denominator: TAR_CF.into(),
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
    ]
}
