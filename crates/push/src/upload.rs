//! The blob uploads to one repository: worker threads take blobs from a queue and have the
//! registry hold each one ([`Uploader::push_blob`]: HEAD, then a mount, else an upload), each
//! digest once.
//!
//! A [`Pool`] is fed twice. For an archive SOURCE pushed to one repository (of each destination:
//! one pool per destination) it is started before the archive is read and given a receiver of
//! the archive reader's layers ([`Pool::feed`]): each layer the moment it is in the temporary
//! layout ([`Layer::Ready`]), a large layer being compressed sooner ([`Layer::Streaming`], a
//! [`GrowingBlob`] that [`Uploader::push_stream`] streams). How and when uploads overlap reading
//! (and what happens when a stream fails) is described once, in docs/architecture.md, "Uploads
//! overlap reading; only the pushed image goes up". Then [`Pool::finish`] gets the plan's blobs: those already handed over are not asked about again
//! (no second HEAD), the others (configs, and every blob of an OCI layout SOURCE) are queued, and
//! it waits until each of them is done. The first error stops the workers and is the push's
//! error (that destination's): the pool closes its receiver, and the reader stops once every
//! destination's receiver is closed. Dropping a pool (a failed read, a failed plan) drops what is still queued; an upload in
//! flight runs to its end (the workers are scoped threads of the push).

use crate::event::{BlobAction, Event, Observer, Progress};
use crate::plan::Blob;
use crate::sessions::Sessions;
use layerlift_archive::{Again, ArchiveSpan, Closer, GrowingBlob, Layer, LayerReceiver};
use layerlift_manifest::Digest;
use layerlift_registry::{
    BlobSource, Client, Error as RegistryError, FileSource, MountResult, UploadEvent,
    UploadOptions, Url, VerifyingSource,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::Scope;

/// Why a blob could not be pushed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The HEAD request failed.
    #[error("checking blob {digest} in {registry}")]
    Check {
        /// The blob.
        digest: Digest,
        /// The registry.
        registry: String,
        /// Why.
        source: RegistryError,
    },
    /// SOURCE does not hold the blob and the registry cannot mount it.
    #[error("blob {digest} is missing from {source_name} and the registry does not have it")]
    Missing {
        /// The blob.
        digest: Digest,
        /// SOURCE.
        source_name: String,
    },
    /// The blob's file has another size than its descriptor says.
    #[error("blob {digest} ({}) is {on_disk} bytes, its descriptor says {size}", path.display())]
    Size {
        /// The blob.
        digest: Digest,
        /// Its file.
        path: PathBuf,
        /// The file's size.
        on_disk: u64,
        /// The descriptor's size.
        size: u64,
    },
    /// The upload failed.
    #[error("uploading blob {digest} to {registry}/{repository}")]
    Upload {
        /// The blob.
        digest: Digest,
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// Why.
        source: RegistryError,
    },
    /// A worker panicked while pushing the blob.
    #[error("pushing blob {digest} failed (panic)")]
    Panicked {
        /// The blob.
        digest: Digest,
    },
    /// A worker panicked while streaming a layer (its digest not known yet).
    #[error("streaming a layer failed (panic)")]
    StreamPanicked,
    /// Every upload worker stopped while blobs were still to be pushed.
    #[error("the upload workers stopped with {left} blob(s) not pushed")]
    WorkersLost {
        /// How many blobs were not pushed.
        left: usize,
    },
    /// A blob was handed to an upload that ended without saying what became of it, and nothing
    /// else is left to push it.
    #[error("blob {digest} was never pushed: its upload ended without a result")]
    Lost {
        /// The blob.
        digest: Digest,
    },
}

/// Uncompressed layers at least this large are streamed while they are compressed; smaller ones
/// take one request less as files (HEAD, POST, PUT with the bytes; a stream needs POST, PATCH
/// and PUT and cannot be skipped when the registry has the blob).
pub(crate) const STREAM_MIN: u64 = 4 << 20;

/// What every blob upload of a push needs.
pub(crate) struct Uploader<'a> {
    pub client: &'a Client,
    pub observer: &'a dyn Observer,
    pub upload: UploadOptions,
    pub sessions: Option<Sessions>,
    /// `--mount-from`.
    pub mount_from: Vec<String>,
    /// What earlier pushes of the run left in the registry ([`crate::Holdings`]).
    pub holdings: Option<&'a crate::Holdings>,
    /// Hash the files uploaded as they are sent ([`VerifyingSource`]): those of an OCI layout
    /// SOURCE, which this run did not write (an archive's temporary layout was hashed as it was
    /// written).
    pub hash_files: bool,
    pub dry_run: bool,
    /// How messages name SOURCE.
    pub source: String,
    /// What decides the bytes of a layer streamed from SOURCE besides its entry
    /// ([`stream_origin`]): part of the key its session is recorded under.
    pub stream_origin: String,
}

/// What planning learnt about the registry for one pool's repository: its uploads need not ask
/// again. Given to the pool when it starts ([`start_pool`]).
#[derive(Debug, Default, Clone)]
pub(crate) struct Known {
    /// Repositories of the registry known to hold a blob: this one's blobs are not asked about,
    /// the others' are mounted from there.
    pub holders: BTreeMap<Digest, String>,
    /// Blobs a HEAD found absent from this repository while planning: not asked about again.
    pub absent: BTreeSet<Digest>,
    /// Blobs whose outcome in a repository this push has reported already (uploaded, mounted or
    /// found there while the archive was read, [`crate::bulk::Early`]): that repository's pass
    /// leaves them out, so each blob of each repository gets one `blob` event.
    pub reported: BTreeMap<Digest, String>,
    /// The registry said this repository does not exist yet
    /// ([`crate::reuse::ReusePlan::new_repository`]): its blobs are asked about with a mount
    /// from the repository itself ([`BlobJob::find`]).
    pub new_repository: bool,
}

/// Whether a repository holds a blob, as [`BlobJob::find`] learns it.
enum Found {
    /// It does.
    Held,
    /// It does not; the upload session the asking opened, if it did.
    Absent(Option<Url>),
}

/// How a layer's stream ended ([`Uploader::stream`]).
enum Streamed {
    /// The registry holds the whole layer (`resumed_at`: bytes a recorded session already held).
    Whole { resumed_at: u64 },
    /// Not streamed, or not to its end: the layer goes up from its file, continuing `session`
    /// where a broken connection may have left a prefix of it.
    Not { session: Option<Url> },
    /// The registry committed a wrong blob under the layer's digest (it does not verify).
    CommittedWrong(RegistryError),
}

/// What happened to one blob in the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobOutcome {
    Skipped,
    Mounted,
    Uploaded,
    WouldUpload,
    Missing,
}

impl BlobOutcome {
    /// Does the repository hold the blob now (on a dry run: would it)?
    pub fn holds(self) -> bool {
        matches!(
            self,
            BlobOutcome::Uploaded
                | BlobOutcome::Mounted
                | BlobOutcome::Skipped
                | BlobOutcome::WouldUpload
        )
    }
}

/// What a worker does with one blob (stored in the file): [`Uploader::push_blob`], or a stand-in
/// in tests.
pub(crate) type Work<'a> =
    dyn Fn(&Blob, PathBuf) -> Result<BlobOutcome, BlobError> + Send + Sync + 'a;

/// What a worker does with a layer being compressed: [`Uploader::push_stream`]. `None`: the layer
/// was never finished (the archive read failed, which is the push's error).
pub(crate) type StreamWork<'a> =
    dyn Fn(GrowingBlob) -> Result<Option<(Digest, BlobOutcome)>, BlobError> + Send + Sync + 'a;

/// One job of the pool.
enum Job {
    /// A blob in a file.
    File(Blob, PathBuf),
    /// A layer being compressed.
    Stream(GrowingBlob),
}

/// Workers pushing blobs to one repository (see the module docs).
pub(crate) struct Pool {
    queue: Arc<Queue>,
    repository: String,
}

/// The queue the feeder of the archive's layers ([`Pool::feed`]), [`Pool::finish`] and the
/// workers share.
#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Every digest ever queued, or published as streamed (its stream's worker reports it done).
    seen: BTreeSet<Digest>,
    done: BTreeMap<Digest, BlobOutcome>,
    error: Option<BlobError>,
    /// Nothing more will be queued: workers stop when the queue is empty.
    closed: bool,
    /// Workers started and not ended (a [`Alive`] guard each).
    workers: usize,
    /// Jobs taken from the queue whose result is not recorded yet.
    busy: usize,
    /// The archive's layers are still coming ([`Pool::feed`]): [`Pool::finish`] waits for them.
    feeding: bool,
    /// Closes the receiver of the archive's layers with the first error (the reader stops
    /// once every destination's is closed).
    closer: Option<Closer>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn submit(&self, blob: Blob, path: PathBuf) {
        let mut st = self.lock();
        if st.closed || !st.seen.insert(blob.digest) {
            return;
        }
        st.queue.push_back(Job::File(blob, path));
        self.changed.notify_all();
    }

    fn submit_stream(&self, blob: GrowingBlob) {
        let mut st = self.lock();
        if st.closed || st.error.is_some() {
            return;
        }
        st.queue.push_back(Job::Stream(blob));
        self.changed.notify_all();
    }

    /// The next job; `None` once the pool failed or is closed and empty.
    fn next(&self) -> Option<Job> {
        let mut st = self.lock();
        loop {
            if st.error.is_some() {
                return None;
            }
            if let Some(job) = st.queue.pop_front() {
                st.busy += 1;
                return Some(job);
            }
            if st.closed {
                return None;
            }
            st = self
                .changed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn work(&self, observer: &dyn Observer, work: &Work<'_>, stream: Option<&StreamWork<'_>>) {
        while let Some(job) = self.next() {
            // Everything a job runs, the observer included, is caught: a panic fails the blob
            // (and so the push) instead of ending the worker with the job unaccounted for.
            let result = match job {
                Job::File(blob, path) => {
                    let d = blob.digest;
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        observer.progress(&Progress::Queued { bytes: blob.size });
                        work(&blob, path)
                    }))
                    .unwrap_or(Err(BlobError::Panicked { digest: d }))
                    .map(|o| Some((d, o)))
                }
                Job::Stream(growing) => match stream {
                    Some(stream) => {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stream(growing)))
                            .unwrap_or(Err(BlobError::StreamPanicked))
                    }
                    None => Ok(None),
                },
            };
            let mut st = self.lock();
            st.busy -= 1;
            match result {
                Ok(Some((digest, outcome))) => {
                    st.seen.insert(digest);
                    st.done.insert(digest, outcome);
                }
                Ok(None) => {}
                Err(e) => self.fail(&mut st, e),
            }
            self.changed.notify_all();
        }
    }

    /// Record the pool's first error and close the receiver of the archive's layers.
    fn fail(&self, st: &mut State, e: BlobError) {
        if st.error.is_none() {
            // Layers queued to stream are read by no one now: let go of them (a layer streamed
            // through memory would wait for their readers).
            st.queue.retain(|job| matches!(job, Job::File(..)));
            st.error = Some(e);
            if let Some(closer) = &st.closer {
                closer.close();
            }
        }
    }

    /// Queue one layer the archive reader handed over. A streamed layer, once finished, is
    /// only noted: its stream's worker reports it done.
    fn take(&self, layer: Layer) {
        match layer {
            Layer::Ready(b) if b.streamed => {
                self.lock().seen.insert(b.digest);
            }
            Layer::Ready(b) => {
                let blob = Blob {
                    digest: b.digest,
                    size: b.size,
                    non_distributable: false,
                };
                self.submit(blob, b.path);
            }
            Layer::Streaming(growing) => self.submit_stream(growing),
        }
    }
}

/// Held by the thread that feeds a pool the archive's layers ([`Pool::feed`]): its end, however
/// it ends, is seen by [`Pool::finish`].
struct Feeder(Arc<Queue>);

impl Drop for Feeder {
    fn drop(&mut self) {
        self.0.lock().feeding = false;
        self.0.changed.notify_all();
    }
}

/// Held by a worker thread while it runs: its end, however it ends, is counted, so that
/// [`Pool::finish`] never waits for a worker that is gone.
struct Alive(Arc<Queue>);

impl Drop for Alive {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.workers -= 1;
        if std::thread::panicking() {
            let left = st.queue.len() + st.busy;
            self.0.fail(&mut st, BlobError::WorkersLost { left });
        }
        drop(st);
        self.0.changed.notify_all();
    }
}

impl Pool {
    /// Start `jobs` workers on `scope` pushing to `repository`, each blob with `work`, each
    /// layer handed over while it is compressed with `stream`. A worker that cannot be started
    /// is the error; those started before it end (the pool is closed) and the scope's join
    /// returns.
    pub fn start<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        repository: &str,
        jobs: usize,
        observer: &'env dyn Observer,
        work: impl Fn(&Blob, PathBuf) -> Result<BlobOutcome, BlobError> + Send + Sync + 'env,
        stream: Option<Arc<StreamWork<'env>>>,
    ) -> Result<Pool, std::io::Error> {
        Self::start_with(scope, repository, jobs, observer, work, stream, |b, _| b)
    }

    /// [`Pool::start`], each worker's thread set up by `builder` (given the worker's number).
    fn start_with<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        repository: &str,
        jobs: usize,
        observer: &'env dyn Observer,
        work: impl Fn(&Blob, PathBuf) -> Result<BlobOutcome, BlobError> + Send + Sync + 'env,
        stream: Option<Arc<StreamWork<'env>>>,
        builder: impl Fn(std::thread::Builder, usize) -> std::thread::Builder,
    ) -> Result<Pool, std::io::Error> {
        let work: Arc<Work<'env>> = Arc::new(work);
        observer.progress(&Progress::Started {
            repository: repository.to_string(),
        });
        // Built first: if a worker cannot be started, dropping it closes the queue.
        let pool = Pool {
            queue: Arc::new(Queue::default()),
            repository: repository.to_string(),
        };
        for n in 0..jobs.max(1) {
            let alive = Alive(Arc::clone(&pool.queue));
            pool.queue.lock().workers += 1;
            let work = Arc::clone(&work);
            let stream = stream.clone();
            builder(std::thread::Builder::new().name(format!("upload-{n}")), n)
                .spawn_scoped(scope, move || {
                    alive.0.work(observer, &*work, stream.as_deref())
                })?;
        }
        Ok(pool)
    }

    /// The repository the workers push to.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Queue every layer `layers` receives, on a thread of `scope` that ends with the read
    /// (every sender dropped); [`Pool::finish`] waits for it. The first upload error closes the
    /// receiver: once every destination's is closed, the reader stops (each failed push fails
    /// with its own error: reading the rest of a large archive first would only make the user
    /// wait for it).
    pub fn feed<'scope>(
        &self,
        scope: &'scope Scope<'scope, '_>,
        layers: LayerReceiver,
    ) -> Result<(), std::io::Error> {
        {
            let mut st = self.queue.lock();
            st.closer = Some(layers.closer());
            if st.error.is_some() {
                layers.closer().close();
            }
            st.feeding = true;
        }
        let feeder = Feeder(Arc::clone(&self.queue));
        let started = std::thread::Builder::new()
            .name("upload-feed".into())
            .spawn_scoped(scope, move || {
                while let Some(layer) = layers.recv() {
                    feeder.0.take(layer);
                }
            });
        // Not started: the guard went with the closure, and `feeding` is off again.
        started.map(drop)
    }

    /// The first upload error, if one happened (it is taken: [`Pool::finish`] will not see it).
    pub fn take_error(&self) -> Option<BlobError> {
        self.queue.lock().error.take()
    }

    /// Push `blobs` (each with the file holding it), skipping those queued before, and wait for
    /// all of them. Queued blobs that are not among `blobs` (layers no chosen image uses) are
    /// dropped unless already started. Returns what happened to every blob done.
    pub fn finish(
        self,
        blobs: impl IntoIterator<Item = (Blob, PathBuf)>,
    ) -> Result<Vec<(Digest, BlobOutcome)>, BlobError> {
        // Every layer the archive reader handed over is queued first (its read is over).
        let mut st = self.queue.lock();
        while st.feeding {
            st = self
                .queue
                .changed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(st);
        let mut wanted = BTreeSet::new();
        for (blob, path) in blobs {
            wanted.insert(blob.digest);
            self.queue.submit(blob, path);
        }
        let mut st = self.queue.lock();
        st.queue.retain(|job| match job {
            Job::File(b, _) => wanted.contains(&b.digest),
            Job::Stream(_) => true,
        });
        st.closed = true;
        self.queue.changed.notify_all();
        loop {
            if let Some(e) = st.error.take() {
                return Err(e);
            }
            let mut left = wanted.iter().filter(|d| !st.done.contains_key(d));
            let Some(first) = left.next() else {
                return Ok(st.done.iter().map(|(d, a)| (*d, *a)).collect());
            };
            // Nobody left to push them, or nothing queued or running that could.
            if st.workers == 0 {
                return Err(BlobError::WorkersLost {
                    left: 1 + left.count(),
                });
            }
            if st.queue.is_empty() && st.busy == 0 {
                return Err(BlobError::Lost { digest: *first });
            }
            st = self
                .queue
                .changed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut st = self.queue.lock();
        st.queue.clear();
        st.closed = true;
        self.queue.changed.notify_all();
    }
}

/// One blob pushed to one repository, and the `blob` events about it.
struct BlobJob<'a> {
    uploader: &'a Uploader<'a>,
    repository: &'a str,
    blob: &'a Blob,
    known: &'a Known,
}

impl BlobJob<'_> {
    fn event(&self, action: BlobAction) -> Event {
        Event::blob(action, self.repository, self.blob.digest, self.blob.size)
    }

    fn emit(&self, event: Event) {
        self.uploader.observer.event(&event);
    }

    fn done(&self, action: BlobAction, outcome: BlobOutcome) -> BlobOutcome {
        self.emit(self.event(action));
        self.uploader.observer.progress(&Progress::Advanced {
            bytes: self.blob.size,
        });
        outcome
    }

    /// Dry run: it would be mounted from `from`.
    fn would_mount(&self, from: &str) -> BlobOutcome {
        self.emit(self.event(BlobAction::WouldMount {
            from: from.to_string(),
        }));
        BlobOutcome::WouldUpload
    }

    fn mounted(&self, from: &str) -> BlobOutcome {
        self.emit(self.event(BlobAction::Mounted {
            from: from.to_string(),
        }));
        self.uploader.observer.progress(&Progress::Advanced {
            bytes: self.blob.size,
        });
        BlobOutcome::Mounted
    }

    /// Whether the repository holds the blob: known from planning, else asked.
    ///
    /// In a repository the registry said does not exist yet, asking is a mount from the
    /// repository itself (`POST …/uploads/?mount=<digest>&from=<repository>`): `201` when a push
    /// that stopped before its manifest left the blob there, else the `202` that opens the
    /// upload, so one request where a HEAD and a POST would be two. A registry that answers
    /// neither way is asked with a HEAD. Elsewhere it is a HEAD: a registry that cannot mount
    /// would answer `202` for a blob it holds, and the blob would go up again.
    fn find(&self) -> Result<Found, BlobError> {
        let uploader = self.uploader;
        let client = uploader.client;
        let d = self.blob.digest;
        // Confirmed in this repository by a HEAD while planning: no second HEAD.
        if self.known.holders.get(&d).map(String::as_str) == Some(self.repository) {
            return Ok(Found::Held);
        }
        // Found absent by a HEAD while planning: no second HEAD.
        if self.known.absent.contains(&d) {
            return Ok(Found::Absent(None));
        }
        if !uploader.dry_run && self.known.new_repository {
            match client.mount_blob(self.repository, &d, self.repository) {
                Ok(MountResult::Mounted) => return Ok(Found::Held),
                Ok(MountResult::NotMounted(Some(session))) => {
                    return Ok(Found::Absent(Some(session)));
                }
                Ok(MountResult::NotMounted(None)) | Err(_) => {}
            }
        }
        match client.blob_exists(self.repository, &d) {
            Ok(true) => Ok(Found::Held),
            Ok(false) => Ok(Found::Absent(None)),
            Err(source) => Err(BlobError::Check {
                digest: d,
                registry: client.registry().to_string(),
                source,
            }),
        }
    }

    /// A blob SOURCE does not hold: foreign, or mounted from the repository that holds it.
    fn absent_from_source(&self) -> Result<BlobOutcome, BlobError> {
        let d = self.blob.digest;
        if self.blob.non_distributable {
            self.emit(self.event(BlobAction::Foreign));
            return Ok(BlobOutcome::Missing);
        }
        // A layer left unread because another repository of the registry holds it: mount it.
        if let Some(from) = self.known.holders.get(&d).filter(|h| *h != self.repository) {
            if self.uploader.dry_run {
                return Ok(self.would_mount(from));
            }
            if matches!(
                self.uploader.client.mount_blob(self.repository, &d, from),
                Ok(MountResult::Mounted)
            ) {
                return Ok(self.mounted(from));
            }
        }
        Err(BlobError::Missing {
            digest: d,
            source_name: self.uploader.source.clone(),
        })
    }

    /// Mount from `--mount-from`, then from a repository this run already pushed the blob to.
    /// `Err` holds the upload session a refused mount opened, if any.
    fn mount(&self) -> Result<BlobOutcome, Option<Url>> {
        let d = self.blob.digest;
        let mut sources: Vec<&String> = self
            .uploader
            .mount_from
            .iter()
            .filter(|m| *m != self.repository)
            .collect();
        if let Some(h) = self.known.holders.get(&d)
            && h != self.repository
            && !sources.contains(&h)
        {
            sources.push(h);
        }
        for from in sources {
            match self.uploader.client.mount_blob(self.repository, &d, from) {
                Ok(MountResult::Mounted) => return Ok(self.mounted(from)),
                Ok(MountResult::NotMounted(Some(session))) => return Err(Some(session)),
                Ok(MountResult::NotMounted(None)) | Err(_) => {}
            }
        }
        Err(None)
    }

    /// Upload the blob from `path`, continuing `session` or one a previous run recorded.
    fn upload(&self, path: PathBuf, session: Option<Url>) -> Result<BlobOutcome, BlobError> {
        let src = FileSource {
            path,
            digest: self.blob.digest,
            size: self.blob.size,
        };
        if self.uploader.hash_files {
            return self.upload_from(&VerifyingSource::new(src), session, &self.uploader.upload);
        }
        self.upload_from(&src, session, &self.uploader.upload)
    }

    /// Upload the blob from `src` as `upload` says, continuing `session` or one a previous run
    /// recorded.
    fn upload_from(
        &self,
        src: &dyn BlobSource,
        mut session: Option<Url>,
        upload: &UploadOptions,
    ) -> Result<BlobOutcome, BlobError> {
        let (client, observer) = (self.uploader.client, self.uploader.observer);
        let (d, size, name) = (self.blob.digest, self.blob.size, self.repository);
        // A chunked upload a killed or cut-off run left behind: continue it.
        let sessions = self.uploader.sessions.as_ref();
        let chunked = upload.chunk_size.is_some() || size > upload.max_single_upload;
        let registry = client.registry().to_string();
        if chunked
            && let Some(recorded) =
                sessions.and_then(|s| s.get(&registry, name, &d, &client.origin()))
        {
            session = Some(recorded);
        }
        observer.progress(&Progress::BlobStarted { digest: d, size });
        let last = Mutex::new(0u64);
        let on_event = |e: UploadEvent| match e {
            UploadEvent::Progress { sent } => {
                let mut l = last.lock().unwrap_or_else(PoisonError::into_inner);
                if sent > *l {
                    observer.progress(&Progress::Advanced { bytes: sent - *l });
                    *l = sent;
                }
                observer.progress(&Progress::BlobSent { digest: d, sent });
            }
            UploadEvent::Retry {
                attempt,
                delay,
                error,
            } => {
                self.emit(self.event(BlobAction::Retried {
                    attempt,
                    delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    error,
                }));
            }
            UploadEvent::Resumed { offset } => {
                self.emit(self.event(BlobAction::Resumed { offset }));
            }
            UploadEvent::Session { location } => {
                if let Some(s) = sessions {
                    s.put(&registry, name, &d, location.as_str());
                }
            }
        };
        let result = client.upload_blob(name, src, upload, session, &on_event);
        if result.is_ok()
            && let Some(s) = sessions
        {
            s.remove(&registry, name, &d);
        }
        observer.progress(&Progress::BlobFinished { digest: d });
        result.map_err(|source| BlobError::Upload {
            digest: d,
            registry: registry.clone(),
            repository: name.to_string(),
            source,
        })?;
        // Progress may have counted bytes of failed attempts: settle the total on the blob's size.
        let sent = *last.lock().unwrap_or_else(PoisonError::into_inner);
        if sent < size {
            observer.progress(&Progress::Advanced { bytes: size - sent });
        }
        self.emit(self.event(BlobAction::Uploaded));
        Ok(BlobOutcome::Uploaded)
    }
}

impl Uploader<'_> {
    /// Stream a layer to `repository` while it is being compressed (see the module docs); once
    /// the client knows that this registry refuses streams, or when the stream fails, the
    /// finished layer is pushed from its file as [`Uploader::push_blob`] does (a break in the
    /// middle resumes from the registry's offset where it keeps one). Returns its digest and
    /// what happened, or `None` if it was never finished (the archive read failed).
    pub fn push_stream(
        &self,
        repository: &str,
        mut growing: GrowingBlob,
        known: &Known,
    ) -> Result<Option<(Digest, BlobOutcome)>, BlobError> {
        let client = self.client;
        // What the stream sent, counted in the push's total and done as it goes: the layer's
        // size is known only at its end.
        let counted = AtomicU64::new(0);
        let tried = if client.streams_refused() {
            Streamed::Not { session: None }
        } else {
            self.stream(repository, &mut growing, &counted)
        };
        // Read no more from it: a layer streamed through memory does not wait for this reader.
        growing.detach();
        let (streamed, session) = match tried {
            Streamed::Whole { resumed_at } => (Some(resumed_at), None),
            Streamed::Not { session } => (None, session),
            // The registry keeps a wrong blob under the layer's digest: another upload would be
            // told it is there.
            Streamed::CommittedWrong(error) => {
                let Some((digest, _)) = growing.wait_finished() else {
                    return Ok(None);
                };
                return Err(BlobError::Upload {
                    digest,
                    registry: client.registry().to_string(),
                    repository: repository.to_string(),
                    source: error,
                });
            }
        };
        let Some((digest, size)) = growing.wait_finished() else {
            return Ok(None);
        };
        let blob = Blob {
            digest,
            size,
            non_distributable: false,
        };
        let job = BlobJob {
            uploader: self,
            repository,
            blob: &blob,
            known,
        };
        if let Some(offset) = streamed {
            // Its bytes are in the total and done already.
            let rest = size.saturating_sub(counted.into_inner());
            self.observer.progress(&Progress::Queued { bytes: rest });
            self.observer.progress(&Progress::Advanced { bytes: rest });
            if offset > 0 {
                job.emit(job.event(BlobAction::Resumed { offset }));
            }
            job.emit(job.event(BlobAction::Uploaded));
            return Ok(Some((digest, BlobOutcome::Uploaded)));
        }
        // What a stream that failed sent stays counted, in the total and in done alike.
        self.observer.progress(&Progress::Queued { bytes: size });
        let fresh = match job.find()? {
            Found::Held => {
                return Ok(Some((
                    digest,
                    job.done(BlobAction::Skipped, BlobOutcome::Skipped),
                )));
            }
            Found::Absent(fresh) => fresh,
        };
        let src: Box<dyn BlobSource> = match growing.again() {
            Again::Staged(file) => Box::new(OpenBlob { file, digest, size }),
            Again::Archive(span) => Box::new(Recompressed {
                span,
                digest,
                size,
                job: &job,
            }),
        };
        let src = &*src;
        if let Some(session) = session {
            // Resume in the session: a PATCH from the registry's offset (a new session if it has
            // none), then the PUT.
            let resume = UploadOptions {
                chunk_size: Some(size.max(1)),
                ..self.upload.clone()
            };
            if let Ok(outcome) = job.upload_from(src, Some(session), &resume) {
                return Ok(Some((digest, outcome)));
            }
        }
        job.upload_from(src, fresh, &self.upload)
            .map(|o| Some((digest, o)))
    }

    /// Stream `growing` to `repository` (see [`Uploader::push_stream`]), its session recorded in
    /// the journal while it runs (a run killed in the middle leaves it, and the next one
    /// continues it), its bytes added to `counted` and to the progress as they go up.
    fn stream(&self, repository: &str, growing: &mut GrowingBlob, counted: &AtomicU64) -> Streamed {
        let client = self.client;
        let completion = growing.completion();
        let produced = || completion.wait();
        let registry = client.registry().to_string();
        let key = self.stream_key(growing);
        let journal = self.sessions.as_ref().filter(|_| !self.dry_run);
        let recorded = journal.and_then(|s| s.get(&registry, repository, &key, &client.origin()));
        let resumed_at = AtomicU64::new(0);
        let on_event = |e: UploadEvent| match e {
            UploadEvent::Progress { sent } => {
                let before = counted.fetch_max(sent, Ordering::Relaxed);
                if sent > before {
                    let bytes = sent - before;
                    self.observer.progress(&Progress::Queued { bytes });
                    self.observer.progress(&Progress::Advanced { bytes });
                }
            }
            UploadEvent::Session { location } => {
                if let Some(s) = journal {
                    s.put(&registry, repository, &key, location.as_str());
                }
            }
            UploadEvent::Resumed { offset } => resumed_at.store(offset, Ordering::Relaxed),
            UploadEvent::Retry { .. } => {}
        };
        let result = client.upload_stream(repository, growing, &produced, recorded, &on_event);
        if let Some(s) = journal {
            s.remove(&registry, repository, &key);
        }
        match result {
            Ok(_) => Streamed::Whole {
                resumed_at: resumed_at.into_inner(),
            },
            // The staged file could not be read to its end: if the layer was finished all the
            // same, it goes up from the file; if not, the archive read failed.
            Err(e) if e.read_failed => Streamed::Not { session: None },
            Err(e) if e.committed_wrong => Streamed::CommittedWrong(e.error),
            Err(e) => {
                self.observer.event(&Event::StreamFailed {
                    registry: client.registry().to_string(),
                    error: e.to_string(),
                });
                // A connection that broke in the middle may have left a prefix of the layer in
                // the registry's session.
                let session = matches!(e.error, RegistryError::Transport { .. })
                    .then_some(e.session)
                    .flatten();
                Streamed::Not { session }
            }
        }
    }

    /// The key a layer's stream is recorded under in the journal: not a blob's digest (that is
    /// known only at the end) but the hash of what decides the stream's bytes, SOURCE and the
    /// encoding ([`Uploader::stream_origin`]) and the archive entry. A key that matches a
    /// different stream (an archive rewritten with the same size and modification time) costs a
    /// `PUT` the registry refuses for its digest, and an upload from the file.
    fn stream_key(&self, growing: &GrowingBlob) -> Digest {
        Digest::of(
            format!(
                "stream\n{}\n{}\n{}",
                self.stream_origin,
                growing.entry(),
                growing.raw_size()
            )
            .as_bytes(),
        )
    }

    /// Have `repository` hold `blob` (stored in `path`): nothing if it does, a mount from a
    /// repository that holds it, else an upload (resuming a recorded chunked session).
    pub fn push_blob(
        &self,
        repository: &str,
        blob: &Blob,
        path: PathBuf,
        known: &Known,
    ) -> Result<BlobOutcome, BlobError> {
        let job = BlobJob {
            uploader: self,
            repository,
            blob,
            known,
        };
        let fresh = match job.find()? {
            Found::Held => return Ok(job.done(BlobAction::Skipped, BlobOutcome::Skipped)),
            Found::Absent(fresh) => fresh,
        };
        let Ok(meta) = std::fs::metadata(&path) else {
            return job.absent_from_source();
        };
        if meta.len() != blob.size {
            return Err(BlobError::Size {
                digest: blob.digest,
                path,
                on_disk: meta.len(),
                size: blob.size,
            });
        }
        if self.dry_run {
            if let Some(from) = job
                .known
                .holders
                .get(&blob.digest)
                .filter(|h| *h != job.repository)
            {
                return Ok(job.would_mount(from));
            }
            job.emit(job.event(BlobAction::WouldUpload));
            return Ok(BlobOutcome::WouldUpload);
        }
        match job.mount() {
            Ok(outcome) => Ok(outcome),
            Err(session) => job.upload(path, session.or(fresh)),
        }
    }
}

/// Start upload workers pushing to `repository` with `uploader`, and what planning learnt about
/// it (`known`).
pub(crate) fn start_pool<'scope, 'env>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    uploader: &'env Uploader<'env>,
    repository: &str,
    known: Known,
    jobs: usize,
) -> Result<Pool, std::io::Error> {
    let repo = repository.to_string();
    let known = std::sync::Arc::new(known);
    let (r2, k2) = (repo.clone(), std::sync::Arc::clone(&known));
    let stream: std::sync::Arc<StreamWork<'env>> =
        std::sync::Arc::new(move |growing| uploader.push_stream(&r2, growing, &k2));
    Pool::start(
        s,
        repository,
        jobs,
        uploader.observer,
        move |blob, path| uploader.push_blob(&repo, blob, path, &known),
        Some(stream),
    )
}

/// What decides the bytes of the layers an archive push streams besides their entries: SOURCE
/// (an archive file by its full path, size and modification time; a pipe by its name) and the
/// encoding. Part of each stream's journal key ([`Uploader::stream_key`]).
pub(crate) fn stream_origin(source: &str, options: &crate::options::Options) -> String {
    let file = std::fs::canonicalize(source)
        .ok()
        .zip(std::fs::metadata(source).ok())
        .filter(|(_, m)| m.is_file());
    let id = match file {
        Some((path, meta)) => format!(
            "{}\n{}\n{:?}",
            path.display(),
            meta.len(),
            meta.modified().ok()
        ),
        None => source.to_string(),
    };
    format!(
        "{id}\n{:?}\n{:?}",
        options.compression, options.compression_level
    )
}

/// A finished layer read from the staged file a [`GrowingBlob`] holds open (whatever its name in
/// the layout is by now).
struct OpenBlob {
    file: std::sync::Arc<std::fs::File>,
    digest: Digest,
    size: u64,
}

impl BlobSource for OpenBlob {
    fn digest(&self) -> Digest {
        self.digest
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn std::io::Read + Send + '_>> {
        let from = layerlift_archive::ReadAt::new(std::sync::Arc::clone(&self.file), offset);
        Ok(Box::new(std::io::Read::take(
            from,
            self.size.saturating_sub(offset),
        )))
    }
    fn describe(&self) -> String {
        format!("the compressed layer {}", self.digest.short())
    }
}

/// A finished layer that was streamed through memory only: every read compresses it again from
/// the archive, skipping to the offset asked for, and fails at its end unless the whole output
/// is the blob the first pass made (so a changed archive never commits wrong bytes).
struct Recompressed<'a, 'u> {
    span: ArchiveSpan,
    digest: Digest,
    size: u64,
    job: &'a BlobJob<'u>,
}

impl BlobSource for Recompressed<'_, '_> {
    fn digest(&self) -> Digest {
        self.digest
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn std::io::Read + Send + '_>> {
        self.job
            .emit(self.job.event(BlobAction::Recompressed { offset }));
        Ok(Box::new(
            self.span.reencode(offset, (self.digest, self.size))?,
        ))
    }
    fn describe(&self) -> String {
        format!(
            "the layer {} compressed again from the archive",
            self.digest.short()
        )
    }
}

/// A mutex's guard, also when a thread that held it panicked (the data stays consistent: every
/// holder only inserts or pushes).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Silent;

    fn blob(name: &str) -> (Blob, PathBuf) {
        let blob = Blob {
            digest: Digest::of(name.as_bytes()),
            size: name.len() as u64,
            non_distributable: false,
        };
        (blob, PathBuf::from(name))
    }

    fn missing(path: &std::path::Path) -> BlobError {
        BlobError::Missing {
            digest: Digest::of(path.to_string_lossy().as_bytes()),
            source_name: "test".into(),
        }
    }

    /// Wait until `finish` has closed the queue.
    fn wait_closed(queue: &Queue) {
        while !queue.lock().closed {
            std::thread::yield_now();
        }
    }

    #[test]
    fn blobs_go_in_queue_order_each_once_and_unwanted_ones_are_dropped() {
        let done = Mutex::new(Vec::new());
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        let result = std::thread::scope(|s| {
            let pool = Pool::start(
                s,
                "app",
                1,
                &Silent,
                |_: &Blob, path: PathBuf| {
                    let name = path.to_string_lossy().into_owned();
                    if name == "a" {
                        // Held until `finish` has its list: the queue still holds what came early.
                        wait.lock().unwrap().recv().unwrap();
                    }
                    done.lock().unwrap().push(name);
                    Ok(BlobOutcome::Uploaded)
                },
                None,
            )
            .unwrap();
            // Handed over early (as the archive reader does), "b" twice.
            for name in ["a", "unused", "b", "b"] {
                let (b, p) = blob(name);
                pool.queue.submit(b, p);
            }
            let queue = Arc::clone(&pool.queue);
            let finisher = s.spawn(move || pool.finish(["c", "b", "a"].map(blob)));
            wait_closed(&queue);
            go.send(()).unwrap();
            finisher.join().unwrap()
        });
        let outcomes = result.unwrap();
        assert_eq!(*done.lock().unwrap(), ["a", "b", "c"]);
        assert_eq!(outcomes.len(), 3);
        assert!(outcomes.iter().all(|(_, o)| *o == BlobOutcome::Uploaded));
    }

    #[test]
    fn a_failed_upload_stops_the_pool_with_its_error() {
        let done = Mutex::new(Vec::new());
        let result = std::thread::scope(|s| {
            let pool = Pool::start(
                s,
                "app",
                1,
                &Silent,
                |_: &Blob, path: PathBuf| {
                    done.lock().unwrap().push(path.clone());
                    if path == std::path::Path::new("b") {
                        return Err(missing(&path));
                    }
                    Ok(BlobOutcome::Skipped)
                },
                None,
            )
            .unwrap();
            pool.finish(["a", "b", "c", "d"].map(blob))
        });
        match result {
            Err(BlobError::Missing { digest, .. }) => assert_eq!(digest, Digest::of(b"b")),
            other => panic!("{other:?}"),
        }
        // One worker: nothing after the failed blob was started.
        assert_eq!(
            *done.lock().unwrap(),
            [PathBuf::from("a"), PathBuf::from("b")]
        );
    }

    fn ready(name: &str) -> Layer {
        let (b, path) = blob(name);
        Layer::Ready(layerlift_archive::PublishedBlob {
            streamed: false,
            digest: b.digest,
            size: b.size,
            path,
            entry: String::new(),
        })
    }

    #[test]
    fn a_failure_while_the_archive_is_read_stops_the_reader_and_is_taken_once() {
        bounded(|| {
            std::thread::scope(|s| {
                let pool = Pool::start(
                    s,
                    "app",
                    2,
                    &Silent,
                    |_: &Blob, path: PathBuf| Err(missing(&path)),
                    None,
                )
                .unwrap();
                let (sender, mut rxs) = layerlift_archive::handover(1);
                pool.feed(s, rxs.pop().unwrap()).unwrap();
                assert!(!sender.stopped());
                sender.send(ready("a"));
                // The pool closed its receiver: the archive reader stops.
                while !sender.stopped() {
                    std::thread::yield_now();
                }
                assert!(matches!(pool.take_error(), Some(BlobError::Missing { .. })));
                assert!(pool.take_error().is_none());
            });
        });
    }

    /// Wait until `pool` has failed.
    fn wait_failed(pool: &Pool) {
        while pool.queue.lock().error.is_none() {
            std::thread::yield_now();
        }
    }

    /// One reader, two destinations: each pool gets every layer, and `finish` waits for the
    /// layers still coming; the reader goes on while one pool has failed.
    #[test]
    fn the_reader_feeds_every_pool_and_goes_on_while_one_works() {
        let done = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            let good = Pool::start(
                s,
                "good",
                1,
                &Silent,
                |_: &Blob, path: PathBuf| {
                    done.lock().unwrap().push(path);
                    Ok(BlobOutcome::Uploaded)
                },
                None,
            )
            .unwrap();
            let bad = Pool::start(
                s,
                "bad",
                1,
                &Silent,
                |_: &Blob, path: PathBuf| Err(missing(&path)),
                None,
            )
            .unwrap();
            let (sender, rxs) = layerlift_archive::handover(2);
            let mut rxs = rxs.into_iter();
            good.feed(s, rxs.next().unwrap()).unwrap();
            bad.feed(s, rxs.next().unwrap()).unwrap();
            sender.send(ready("a"));
            wait_failed(&bad);
            assert!(!sender.stopped(), "one destination still pushes");
            sender.send(ready("b"));
            drop(sender);
            let outcomes = good.finish(["a", "b"].map(blob)).unwrap();
            assert_eq!(outcomes.len(), 2);
            assert!(matches!(bad.finish([]), Err(BlobError::Missing { .. })));
        });
        let done = done.into_inner().unwrap();
        assert_eq!(done, [PathBuf::from("a"), PathBuf::from("b")], "each once");
    }

    /// `finish` queues the plan's blobs only once the read is over and every layer handed over
    /// is in: a layer the reader hands over as streamed is not uploaded again as a file, though
    /// the plan names it (its stream gave no result here, so it is `Lost`).
    #[test]
    fn finish_waits_for_the_layers_handed_over() {
        let uploaded = Mutex::new(BTreeSet::new());
        let (result, early) = std::thread::scope(|s| {
            let pool = Pool::start(
                s,
                "app",
                1,
                &Silent,
                |b: &Blob, _: PathBuf| {
                    uploaded.lock().unwrap().insert(b.digest);
                    Ok(BlobOutcome::Uploaded)
                },
                None,
            )
            .unwrap();
            let (sender, mut rxs) = layerlift_archive::handover(1);
            pool.feed(s, rxs.pop().unwrap()).unwrap();
            let (b, p) = blob("streamed");
            let note = Layer::Ready(layerlift_archive::PublishedBlob {
                streamed: true,
                digest: b.digest,
                size: b.size,
                path: p.clone(),
                entry: String::new(),
            });
            let finisher = s.spawn(move || pool.finish([(b, p)]));
            std::thread::sleep(std::time::Duration::from_millis(100));
            let early = finisher.is_finished();
            sender.send(note);
            drop(sender);
            (finisher.join().unwrap(), early)
        });
        assert!(!early, "finish returned while the read was still going");
        assert!(matches!(result, Err(BlobError::Lost { .. })), "{result:?}");
        assert!(!uploaded.lock().unwrap().contains(&Digest::of(b"streamed")));
    }

    /// The reader stops only once the second of two pools has failed too.
    #[test]
    fn the_reader_stops_once_every_pool_failed() {
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        std::thread::scope(|s| {
            let first = Pool::start(
                s,
                "first",
                1,
                &Silent,
                |_: &Blob, path: PathBuf| Err(missing(&path)),
                None,
            )
            .unwrap();
            let second = Pool::start(
                s,
                "second",
                1,
                &Silent,
                |_: &Blob, path: PathBuf| {
                    wait.lock().unwrap().recv().unwrap();
                    Err(missing(&path))
                },
                None,
            )
            .unwrap();
            let (sender, rxs) = layerlift_archive::handover(2);
            let mut rxs = rxs.into_iter();
            first.feed(s, rxs.next().unwrap()).unwrap();
            second.feed(s, rxs.next().unwrap()).unwrap();
            sender.send(ready("a"));
            wait_failed(&first);
            assert!(!sender.stopped(), "the second pool has not failed yet");
            go.send(()).unwrap();
            wait_failed(&second);
            assert!(sender.stopped());
        });
    }

    /// Run `f` on a thread of its own; a test fails (instead of hanging) if it does not return
    /// within a minute.
    fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()).unwrap());
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("the pool hung")
    }

    /// A worker that cannot be started (a pids limit, a huge `--jobs`) fails the start, and the
    /// workers started before it end, so that the scope's join returns.
    #[test]
    fn a_worker_that_cannot_start_fails_the_start_and_the_others_end() {
        let result = bounded(|| {
            std::thread::scope(|s| {
                Pool::start_with(
                    s,
                    "app",
                    4,
                    &Silent,
                    |_: &Blob, _: PathBuf| Ok(BlobOutcome::Uploaded),
                    None,
                    // The third thread asks for a 64 TiB stack: the system refuses it.
                    |b, n| if n == 2 { b.stack_size(1 << 46) } else { b },
                )
                .map(|_| ())
            })
        });
        assert!(result.is_err(), "the start must fail");
    }

    /// An observer that panics where the worker reports a queued blob fails the push.
    #[test]
    fn a_panicking_observer_fails_the_push() {
        struct Panicking;
        impl Observer for Panicking {
            fn event(&self, _: &Event) {}
            fn progress(&self, p: &Progress) {
                if matches!(p, Progress::Queued { .. }) {
                    panic!("observer bug");
                }
            }
        }
        let result = bounded(|| {
            std::thread::scope(|s| {
                let pool = Pool::start(
                    s,
                    "app",
                    2,
                    &Panicking,
                    |_: &Blob, _: PathBuf| Ok(BlobOutcome::Uploaded),
                    None,
                )
                .unwrap();
                pool.finish(["a", "b"].map(blob))
            })
        });
        assert!(
            matches!(result, Err(BlobError::Panicked { .. })),
            "{result:?}"
        );
    }

    /// A blob published as streamed whose stream ended without a result (the reader failed, the
    /// layer was finished all the same) is an error once nothing else can push it.
    #[test]
    fn a_streamed_blob_whose_stream_gave_no_result_is_an_error() {
        let result = bounded(|| {
            std::thread::scope(|s| {
                let pool = Pool::start(
                    s,
                    "app",
                    1,
                    &Silent,
                    |_: &Blob, _: PathBuf| Ok(BlobOutcome::Uploaded),
                    None,
                )
                .unwrap();
                let (b, p) = blob("layer");
                // What the pool notes when a streamed layer is published; its stream's job has
                // already ended with nothing.
                pool.queue
                    .take(Layer::Ready(layerlift_archive::PublishedBlob {
                        streamed: true,
                        digest: b.digest,
                        size: b.size,
                        path: p.clone(),
                        entry: String::new(),
                    }));
                pool.finish([(b, p)])
            })
        });
        assert!(matches!(result, Err(BlobError::Lost { .. })), "{result:?}");
    }

    #[test]
    fn a_panicking_worker_fails_the_blob() {
        let result = std::thread::scope(|s| {
            let pool = Pool::start(
                s,
                "app",
                1,
                &Silent,
                |_: &Blob, _: PathBuf| -> Result<BlobOutcome, BlobError> { panic!("worker bug") },
                None,
            )
            .unwrap();
            pool.finish([blob("a")])
        });
        assert!(
            matches!(result, Err(BlobError::Panicked { digest }) if digest == Digest::of(b"a"))
        );
    }
}
