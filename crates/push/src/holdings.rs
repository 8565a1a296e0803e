//! What the pushes of one run leave in a registry, carried to the next push of the run: how the
//! files of a directory of archives, each its own push, share their layers.

use layerlift_manifest::{Descriptor, Digest};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

/// The blobs that earlier pushes of the same run left in one registry, and a repository holding
/// each. Given to the next push to that registry ([`Destination::holdings`](crate::Destination)),
/// it mounts them from there instead of uploading them again, and adds what it leaves: so the
/// files of a directory of archives (each its own push) share their layers. Nothing is trusted
/// beyond the mount: a registry that no longer holds a blob there answers with an upload.
///
/// It also keeps the diff_id → blob pairs of the layers those pushes read and compressed (this
/// process made them, so they need no reading back): a later file's layer with one of those
/// diff_ids is left unread when the blob is still there, as a re-push leaves a layer its tag
/// already has.
#[derive(Debug, Default)]
pub struct Holdings(Mutex<Held>);

#[derive(Debug, Default)]
struct Held {
    /// Each blob, and a repository holding it.
    holders: BTreeMap<Digest, String>,
    /// The pushed blob of each layer read, by diff_id.
    layers: BTreeMap<Digest, Descriptor>,
}

impl Holdings {
    /// Nothing known yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add what is known here to `holders` (an entry `holders` has already stays).
    pub(crate) fn fill(&self, holders: &mut BTreeMap<Digest, String>) {
        for (digest, repository) in &self.lock().holders {
            holders.entry(*digest).or_insert_with(|| repository.clone());
        }
    }

    /// Remember `holders` (an entry known here already stays).
    pub(crate) fn record(&self, holders: &BTreeMap<Digest, String>) {
        let mut held = self.lock();
        for (digest, repository) in holders {
            held.holders
                .entry(*digest)
                .or_insert_with(|| repository.clone());
        }
    }

    /// Remember the pushed blob of each layer a push read (by diff_id).
    pub(crate) fn record_layers(&self, layers: impl IntoIterator<Item = (Digest, Descriptor)>) {
        let mut held = self.lock();
        for (diff_id, blob) in layers {
            held.layers.entry(diff_id).or_insert(blob);
        }
    }

    /// The layers known here whose blob a repository holds: (diff_id, blob, repository).
    pub(crate) fn layers(&self) -> Vec<(Digest, Descriptor, String)> {
        let held = self.lock();
        held.layers
            .iter()
            .filter_map(|(diff_id, blob)| {
                let repository = held.holders.get(&blob.digest)?;
                Some((*diff_id, blob.clone(), repository.clone()))
            })
            .collect()
    }

    /// The repositories that hold the blobs known here (a push needs to pull from them).
    pub(crate) fn repositories(&self) -> BTreeSet<String> {
        self.lock().holders.values().cloned().collect()
    }
}
