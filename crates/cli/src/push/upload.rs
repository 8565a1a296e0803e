//! The blob uploads to one repository: `--jobs` worker threads take blobs from a queue and have the
//! registry hold each one ([`Uploader::push_blob`]: HEAD, then a mount, else an upload), each
//! digest once.
//!
//! A [`Pool`] is fed twice. For an archive SOURCE pushed to one repository it is started before
//! the archive is read, and the archive reader hands it every layer the moment that layer is in
//! the temporary layout ([`Pool::hook`]), so uploads overlap reading and compressing. Then
//! [`Pool::finish`] gets the plan's blobs: those already handed over are not asked about again
//! (no second HEAD), the others (configs, and every blob of an OCI layout SOURCE) are queued, and
//! it waits until each of them is done. The first error stops the workers and is the push's
//! error. Dropping a pool (a failed read, a failed plan) drops what is still queued; an upload in
//! flight runs to its end in the background, and nothing refers to the blob it leaves.

use super::plan::Blob;
use super::progress::Output;
use super::sessions::Sessions;
use anyhow::{Context, bail};
use layerlift_archive::{BlobHook, PublishedBlob};
use layerlift_manifest::Digest;
use layerlift_registry::{Client, FileSource, MountResult, UploadEvent, UploadOptions};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// What every blob upload of a push needs.
pub struct Uploader {
    pub client: Arc<Client>,
    pub out: Arc<Output>,
    pub upload: UploadOptions,
    pub sessions: Option<Sessions>,
    /// `--mount-from`.
    pub mount_from: Vec<String>,
    pub dry_run: bool,
    /// How messages name SOURCE.
    pub source: String,
}

/// What happened to one blob.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    Skipped,
    Mounted,
    Uploaded,
    WouldUpload,
    Missing,
}

impl Action {
    /// Does the repository hold the blob now?
    pub fn holds(self) -> bool {
        matches!(self, Action::Uploaded | Action::Mounted | Action::Skipped)
    }
}

/// Workers pushing blobs to one repository (see the module docs).
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    uploader: Arc<Uploader>,
    repository: String,
    /// Repositories of the registry known to hold a blob (no HEAD in this one; mount sources).
    holders: BTreeMap<Digest, String>,
    state: Mutex<State>,
    changed: Condvar,
    /// Set with the first error: the archive reader stops at its next buffer ([`Pool::hook`]).
    failed: AtomicBool,
}

#[derive(Default)]
struct State {
    queue: VecDeque<(Blob, PathBuf)>,
    /// Every digest ever queued.
    seen: BTreeSet<Digest>,
    done: BTreeMap<Digest, Action>,
    error: Option<anyhow::Error>,
    /// Nothing more will be queued: workers stop when the queue is empty.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn submit(&self, blob: Blob, path: PathBuf) {
        let mut st = self.lock();
        if st.closed || !st.seen.insert(blob.digest) {
            return;
        }
        self.uploader.out.grow_total(blob.size);
        st.queue.push_back((blob, path));
        self.changed.notify_all();
    }

    fn work(&self) {
        loop {
            let (blob, path) = {
                let mut st = self.lock();
                loop {
                    if st.error.is_some() {
                        return;
                    }
                    if let Some(job) = st.queue.pop_front() {
                        break job;
                    }
                    if st.closed {
                        return;
                    }
                    st = self
                        .changed
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.uploader
                    .push_blob(&self.repository, &blob, path, &self.holders)
            }))
            .unwrap_or_else(|_| {
                Err(anyhow::anyhow!(
                    "pushing blob {} failed (panic)",
                    blob.digest
                ))
            });
            let mut st = self.lock();
            match result {
                Ok(action) => {
                    st.done.insert(blob.digest, action);
                }
                Err(e) => {
                    if st.error.is_none() {
                        st.error = Some(e);
                        self.failed.store(true, Ordering::Relaxed);
                    }
                }
            }
            self.changed.notify_all();
        }
    }
}

impl Pool {
    /// Start `jobs` workers pushing to `repository`.
    pub fn start(
        uploader: Arc<Uploader>,
        repository: &str,
        holders: BTreeMap<Digest, String>,
        jobs: usize,
    ) -> anyhow::Result<Pool> {
        uploader.out.start_total(0, repository);
        let shared = Arc::new(Shared {
            uploader,
            repository: repository.to_string(),
            holders,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            failed: AtomicBool::new(false),
        });
        for n in 0..jobs.max(1) {
            let s = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("upload-{n}"))
                .spawn(move || s.work())
                .context("cannot start an upload thread")?;
        }
        Ok(Pool { shared })
    }

    /// The repository the workers push to.
    pub fn repository(&self) -> &str {
        &self.shared.repository
    }

    /// For [`layerlift_archive::Options::on_blob`]: queue each layer the archive reader publishes,
    /// and stop the reader once an upload has failed (the push fails with that error: reading
    /// the rest of a large archive first would only make the user wait for it).
    pub fn hook(&self) -> BlobHook {
        let shared = Arc::clone(&self.shared);
        let failed = Arc::clone(&self.shared);
        BlobHook::new(move |b: &PublishedBlob| {
            let blob = Blob {
                digest: b.digest,
                size: b.size,
                non_distributable: false,
            };
            shared.submit(blob, b.path.clone());
        })
        .stopping_when(move || failed.failed.load(Ordering::Relaxed))
    }

    /// The first upload error, if one happened (it is taken: [`Pool::finish`] will not see it).
    pub fn take_error(&self) -> Option<anyhow::Error> {
        self.shared.lock().error.take()
    }

    /// Push `blobs` (each with the file holding it), skipping those queued before, and wait for
    /// all of them. Queued blobs that are not among `blobs` (layers no chosen image uses) are
    /// dropped unless already started. Returns what happened to every blob done.
    pub fn finish(
        self,
        blobs: impl IntoIterator<Item = (Blob, PathBuf)>,
    ) -> anyhow::Result<Vec<(Digest, Action)>> {
        let mut wanted = BTreeSet::new();
        for (blob, path) in blobs {
            wanted.insert(blob.digest);
            self.shared.submit(blob, path);
        }
        let mut st = self.shared.lock();
        st.queue.retain(|(b, _)| wanted.contains(&b.digest));
        st.closed = true;
        self.shared.changed.notify_all();
        loop {
            if let Some(e) = st.error.take() {
                return Err(e);
            }
            if wanted.iter().all(|d| st.done.contains_key(d)) {
                return Ok(st.done.iter().map(|(d, a)| (*d, *a)).collect());
            }
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.queue.clear();
        st.closed = true;
        self.shared.changed.notify_all();
    }
}

impl Uploader {
    /// Have `name` hold `blob` (stored in `path`): nothing if it does, a mount from a repository
    /// that holds it, else an upload (resuming a recorded chunked session).
    pub fn push_blob(
        &self,
        name: &str,
        blob: &Blob,
        path: PathBuf,
        holders: &BTreeMap<Digest, String>,
    ) -> anyhow::Result<Action> {
        let (client, out) = (&self.client, &self.out);
        let d = blob.digest;
        let event = |action: &str, extra: serde_json::Value| {
            let mut v = json!({"event": "blob", "action": action, "repository": name, "digest": d.to_string(), "size": blob.size});
            if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            out.event(v);
        };
        // Confirmed in this repository by a HEAD while planning reuse: no second HEAD.
        let exists = holders.get(&d).map(String::as_str) == Some(name)
            || client
                .blob_exists(name, &d)
                .with_context(|| format!("checking blob {d} in {}", client.registry()))?;
        if exists {
            event("skipped", json!({}));
            out.advance_total(blob.size);
            return Ok(Action::Skipped);
        }
        let meta = std::fs::metadata(&path);
        if meta.is_err() {
            if blob.non_distributable {
                event("foreign", json!({}));
                return Ok(Action::Missing);
            }
            // A layer left unread because another repository of the registry holds it: mount it.
            if let Some(from) = holders.get(&d).filter(|h| *h != name)
                && !self.dry_run
                && matches!(client.mount_blob(name, &d, from), Ok(MountResult::Mounted))
            {
                event("mounted", json!({"from": from}));
                out.advance_total(blob.size);
                return Ok(Action::Mounted);
            }
            bail!(
                "blob {d} is missing from {} and the registry does not have it",
                self.source
            );
        }
        let size_on_disk = meta.map(|m| m.len()).unwrap_or(0);
        if size_on_disk != blob.size {
            bail!(
                "blob {d} ({}) is {size_on_disk} bytes, its descriptor says {}",
                path.display(),
                blob.size
            );
        }
        if self.dry_run {
            event("would-upload", json!({}));
            out.plain(&format!("would upload {d} ({} bytes)", blob.size));
            return Ok(Action::WouldUpload);
        }
        // Mount candidates: --mount-from, then a repository this run already pushed the blob to.
        let mut sources: Vec<String> = self
            .mount_from
            .iter()
            .filter(|m| *m != name)
            .cloned()
            .collect();
        if let Some(h) = holders.get(&d)
            && h != name
            && !sources.contains(h)
        {
            sources.push(h.clone());
        }
        let mut session = None;
        for from in &sources {
            match client.mount_blob(name, &d, from) {
                Ok(MountResult::Mounted) => {
                    event("mounted", json!({"from": from}));
                    out.advance_total(blob.size);
                    return Ok(Action::Mounted);
                }
                Ok(MountResult::NotMounted(s)) => {
                    if s.is_some() {
                        session = s;
                        break;
                    }
                }
                Err(_) => {}
            }
        }
        // A chunked upload a killed or cut-off run left behind: continue it.
        let upload = &self.upload;
        let sessions = self.sessions.as_ref();
        let chunked = upload.chunk_size.is_some() || blob.size > upload.max_single_upload;
        let registry = client.registry().to_string();
        if chunked
            && let Some(recorded) =
                sessions.and_then(|s| s.get(&registry, name, &d, &client.origin()))
        {
            session = Some(recorded);
        }
        let src = FileSource {
            path,
            digest: d,
            size: blob.size,
        };
        let bar = out.blob_bar(&d, blob.size);
        let last = Mutex::new(0u64);
        let on_event = |e: UploadEvent| match e {
            UploadEvent::Progress { sent } => {
                let mut l = last.lock().unwrap();
                if sent > *l {
                    out.advance_total(sent - *l);
                    *l = sent;
                }
                if let Some(b) = &bar {
                    b.set_position(sent);
                }
            }
            UploadEvent::Retry {
                attempt,
                delay,
                error,
            } => {
                event(
                    "retried",
                    json!({"attempt": attempt, "delayMs": delay.as_millis() as u64, "error": error}),
                );
                out.message(&format!(
                    "retrying {} in {:.1}s after: {error}",
                    d.short(),
                    delay.as_secs_f64()
                ));
            }
            UploadEvent::Resumed { offset } => {
                event("resumed", json!({"offset": offset}));
            }
            UploadEvent::Session { location } => {
                if let Some(s) = sessions {
                    s.put(&registry, name, &d, location.as_str());
                }
            }
        };
        let result = client.upload_blob(name, &src, upload, session, &on_event);
        if result.is_ok()
            && let Some(s) = sessions
        {
            s.remove(&registry, name, &d);
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        result.with_context(|| format!("uploading blob {d} to {}/{name}", client.registry()))?;
        // Progress may have counted bytes of failed attempts: settle the total on the blob's size.
        let sent = *last.lock().unwrap();
        if sent < blob.size {
            out.advance_total(blob.size - sent);
        }
        event("uploaded", json!({}));
        Ok(Action::Uploaded)
    }
}
