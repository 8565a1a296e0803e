//! `layerlift-push --all DIR DEST`, DIR a directory of archives ([`layerlift_push::archives_in`]):
//! each archive pushed in turn to every DEST, a file that is not an archive skipped with a
//! warning, an archive that cannot be read named as failed while the others go on; one summary
//! and one `result` event for the lot.

use super::{Args, Output, SeveralFailed, described, failed, images_failed, write_digests};
use layerlift_push::{Destination, Event, FolderEntry, Observer, Options};
use std::sync::Arc;

/// Push every archive of `entries` to `targets`: `Err` (exit 1) naming what failed.
pub(super) fn push(
    args: &Args,
    out: &Arc<Output>,
    targets: &[Destination<'_>],
    options: &Options,
    entries: Vec<FolderEntry>,
) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for entry in entries {
        let path = entry.path.display().to_string();
        if let Err(e) = entry.archive {
            out.event(&Event::NotArchive {
                path,
                reason: described(&failed(e)).0,
            });
            continue;
        }
        out.message(&format!("{path}:"));
        let results = match layerlift_push::push_to_all(&path, targets, options, &**out) {
            Ok(r) => r,
            Err(e) => {
                let (error, _, _) = described(&failed(e));
                out.error(&format!("{path}: {error}"));
                failures.push(path);
                continue;
            }
        };
        for (dest, result) in args.dests.iter().zip(results) {
            match result {
                Ok(report) => reports.push(report),
                Err(e) => {
                    let (error, _, _) = described(&failed(e));
                    out.error(&format!("{path} to {dest}: {error}"));
                    failures.push(format!("{path} to {dest}"));
                }
            }
        }
    }
    out.finish_bars();
    write_digests(args, &reports)?;
    let images = images_failed(out);
    let mut errors: Vec<String> = images.into_iter().collect();
    if !failures.is_empty() {
        errors.push(format!("failed: {}", failures.join(", ")));
    }
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    out.event(&Event::Result {
        ok: error.is_none(),
        dry_run: Some(options.dry_run),
        images: Some(reports.into_iter().flat_map(|r| r.images).collect()),
        error: error.clone(),
        registry_code: None,
        registry_message: None,
        destinations: None,
    });
    match error {
        Some(e) => Err(anyhow::Error::new(SeveralFailed(e))),
        None => Ok(()),
    }
}
