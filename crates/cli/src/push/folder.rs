//! `layerlift-push --all DIR DEST`, DIR a directory of archives ([`layerlift_push::archives_in`]):
//! each archive pushed in turn to every DEST; a file that is not an archive skipped (a
//! `not-archive` event: a warning on stderr); an archive that cannot be read, or a destination
//! that fails, kept as a failure while the others go on. The caller reports the lot.

use super::progress::Output;
use layerlift_push::{Destination, Event, FolderEntry, Observer, Options, PushError, Report};

/// What the pushes of a directory of archives left.
pub(super) struct Outcome {
    /// Each successful push's report (one per archive and destination).
    pub reports: Vec<Report>,
    /// Each failure: `FILE` or `FILE to DEST`, and why.
    pub failures: Vec<(String, PushError)>,
}

/// Push every archive of `entries` to `targets` (`dests` as given, for messages).
pub(super) fn push_each(
    dests: &[String],
    out: &Output,
    targets: &[Destination<'_>],
    options: &Options,
    entries: Vec<FolderEntry>,
) -> Outcome {
    let mut outcome = Outcome {
        reports: Vec::new(),
        failures: Vec::new(),
    };
    for entry in entries {
        let path = entry.path.display().to_string();
        if let Err(e) = entry.archive {
            out.event(&Event::NotArchive {
                path,
                reason: crate::exit::one_line(&e),
            });
            continue;
        }
        out.message(&format!("{path}:"));
        match layerlift_push::push_to_all(&path, targets, options, out) {
            Ok(results) => {
                for (dest, result) in dests.iter().zip(results) {
                    match result {
                        Ok(report) => outcome.reports.push(report),
                        Err(e) => outcome.failures.push((format!("{path} to {dest}"), e)),
                    }
                }
            }
            Err(e) => outcome.failures.push((path, e)),
        }
    }
    outcome
}
