//! Push the images of an OCI image layout, or of any archive `layerlift-unpack` reads, to a
//! registry: [`push`] with typed [`Options`], what happens reported to an [`Observer`] as
//! [`Event`]s, and a [`Report`] of what the registry now holds.
//!
//! ```
//! use layerlift_manifest::Digest;
//! use layerlift_push::{Options, Silent, push};
//! use layerlift_registry::{Client, Credential, Reference, RetryPolicy, TransportOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A tiny OCI image layout: one layer, its config, its manifest.
//! let dir = tempfile::tempdir()?;
//! let blobs = dir.path().join("blobs/sha256");
//! std::fs::create_dir_all(&blobs)?;
//! std::fs::write(dir.path().join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
//! let put = |bytes: &[u8]| -> std::io::Result<Digest> {
//!     let digest = Digest::of(bytes);
//!     std::fs::write(blobs.join(digest.hex()), bytes)?;
//!     Ok(digest)
//! };
//! let layer = b"layer bytes";
//! let layer_digest = put(layer)?;
//! let config = format!(
//!     r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
//! );
//! let config_digest = put(config.as_bytes())?;
//! let manifest = format!(
//!     r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
//!     config.len(),
//!     layer.len()
//! );
//! let manifest_digest = put(manifest.as_bytes())?;
//! std::fs::write(
//!     dir.path().join("index.json"),
//!     format!(
//!         r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{}}}]}}"#,
//!         manifest.len()
//!     ),
//! )?;
//!
//! // Push it to a registry.
//! let registry = layerlift_testkit::Registry::anonymous();
//! let dest = Reference::parse(&format!("{}/app:1.0", registry.addr()))?;
//! let transport = TransportOptions { plain_http: true, ..TransportOptions::default() };
//! let client = Client::new(&dest.registry, Credential::Anonymous, transport, RetryPolicy::default())?;
//! let source = dir.path().to_str().unwrap();
//! let report = push(source, &dest, &client, &Options::default(), &Silent)?;
//! assert_eq!(report.images.len(), 1);
//! assert_eq!(report.images[0].reference, format!("{}/app:1.0", registry.addr()));
//! assert_eq!(report.images[0].digest, manifest_digest);
//! # Ok(())
//! # }
//! ```
//!
//! Order: every blob (configs and layers, [`Options::jobs`] at a time; HEAD first, then a mount
//! from [`Options::mount_from`] or from a repository this run already wrote, else an upload), then
//! manifests children first (image manifests before the indexes that list them), then tags.
//! Finally every tag is read back and must point at the pushed digest: `Ok` means the registry
//! holds it all. An archive pushed to one repository has its layers uploaded while it is still
//! being read, each as soon as it is in the temporary layout; so has an archive file pushed with
//! `all`, each layer to the first repository whose image has it (`bulk`); nothing else is pushed
//! before the whole archive has been read.
//!
//! Modules: `plan` (what goes where: [`PushPlan`]), `reuse` (layers the registry has, so that an
//! archive's layers need not be read: the reuse plan), `upload` (the pool of upload workers),
//! `cache` (the local layer cache), `sessions` (the journal of unfinished chunked uploads),
//! `source` (opening SOURCE, the temporary directory and its sweep), `event` (what the observer
//! gets), `error`.

#![warn(missing_docs)]
// An error ends the push, once: the size of the error types costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

mod bulk;
mod cache;
mod error;
mod event;
mod folder;
mod holdings;
mod names;
mod options;
mod plan;
mod refused;
mod reuse;
mod sessions;
mod source;
mod upload;

pub use cache::CacheDirError;
pub use error::PushError;
pub use event::{
    BlobAction, DestinationOutcome, Event, FailedImage, ImageStatus, LayerSource, Observer,
    Progress, Pushed, Silent,
};
pub use folder::{FolderEntry, archives_in};
pub use holdings::Holdings;
pub use names::{LeftOut, LeftOutKind, NameError, Naming, Placement, PlannedImage};
pub use options::Options;
pub use plan::{
    Attestations, Blob, Choice, Doc, PlanError, PushPlan, Referrer, RepoPlan, Rewrite, Tag,
    referrers_tag,
};
pub use reuse::{ConfirmError, Origin, ReuseNote};
use source::Source;
pub use source::check_source;
pub use upload::BlobError;

use layerlift_layers::Compression;
use layerlift_layout::Layout;
use layerlift_manifest::{Descriptor, Digest, Index, media_types, parse_json};
use layerlift_registry::{Client, Reference, Scope, UploadOptions};
use serde::Serialize;
use std::collections::BTreeSet;
use upload::{Known, Pool, Uploader};

/// What a push left in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Whether it was a dry run (then nothing was pushed and `images` is empty).
    #[serde(rename = "dryRun")]
    pub dry_run: bool,
    /// Every tag read back, then every image pushed by digest only, repository by repository.
    pub images: Vec<Pushed>,
    /// A push under own names (`all`): the images that did not get there (the others did).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedImage>,
}

/// Check the options against DEST before anything is read: errors here are
/// [usage errors](PushError::is_usage).
pub fn check(dest: &Reference, options: &Options) -> Result<(), PushError> {
    if let Some(level) = options.compression_level {
        let compression = options.compression.unwrap_or(Compression::None);
        layerlift_layers::Encoding::check_level(compression, level)?;
    }
    if options.all && (dest.tag.is_some() || dest.digest.is_some() || !options.tags.is_empty()) {
        return Err(PushError::AllWithTag);
    }
    for r in &options.reuse_from {
        if r.registry != dest.registry {
            return Err(PushError::ReuseFromElsewhere {
                reference: r.to_string(),
                registry: dest.registry.clone(),
            });
        }
    }
    Ok(())
}

/// Push `source` (an OCI layout directory, an archive file, or `-` for an archive on standard
/// input) to `dest` with `client` (made for `dest`'s registry). See the crate docs.
pub fn push(
    source: &str,
    dest: &Reference,
    client: &Client,
    options: &Options,
    observer: &dyn Observer,
) -> Result<Report, PushError> {
    let one = Destination {
        reference: dest,
        client,
        holdings: None,
    };
    let mut results = push_to_all(source, &[one], options, observer)?;
    results.pop().unwrap_or(Err(PushError::NoDestination))
}

/// One destination of a push: DEST and a client made for its registry.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// DEST.
    pub reference: &'a Reference,
    /// A client for DEST's registry.
    pub client: &'a Client,
    /// What earlier pushes of this run left in DEST's registry: mounted from there rather than
    /// uploaded; this push adds what it leaves. `None`: nothing is carried between pushes.
    pub holdings: Option<&'a Holdings>,
}

/// Push `source` to every one of `dests` from one read of it: an archive is read, and its layers
/// compressed, once, each layer going up to every destination as soon as it is ready (each
/// destination reusing what its registry has; a layer is left unread only when every destination
/// has it); then each destination gets its manifests and tags, side by side. One destination
/// failing does not stop the others. Returns each destination's result, in order; `Err` for what
/// no destination gets past: the options, SOURCE itself (missing, unreadable, not an image), the
/// cache directory.
pub fn push_to_all(
    source: &str,
    dests: &[Destination<'_>],
    options: &Options,
    observer: &dyn Observer,
) -> Result<Vec<Result<Report, PushError>>, PushError> {
    for d in dests {
        check(d.reference, options)?;
    }
    let source = Source::check(source)?;
    let mut results: Vec<Option<Result<Report, PushError>>> = dests.iter().map(|_| None).collect();
    for (d, result) in dests.iter().zip(&mut results) {
        if let Err(e) = reach(d, options) {
            *result = Some(Err(e));
        }
    }
    let live: Vec<&Destination<'_>> = dests
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_none())
        .map(|(d, _)| d)
        .collect();
    let outcomes = if live.is_empty() {
        Vec::new()
    } else {
        push_live(&source, &live, options, observer)?
    };
    let mut outcomes = outcomes.into_iter();
    Ok(results
        .into_iter()
        .map(|r| match r {
            Some(failed) => failed,
            None => outcomes
                .next()
                .unwrap_or(Err(PushError::NoDestination))
                .map(|(images, failed)| Report {
                    dry_run: options.dry_run,
                    images,
                    failed,
                }),
        })
        .collect())
}

/// Ask for the token a push to `d` needs and check that its registry answers.
fn reach(d: &Destination<'_>, options: &Options) -> Result<(), PushError> {
    // A DEST of a registry alone (`all`) names no repository of its own.
    let mut scopes: Vec<Scope> = Some(&d.reference.repository)
        .filter(|r| !r.is_empty())
        .map(|r| options.repository_scope(r))
        .into_iter()
        .collect();
    scopes.extend(
        options
            .reuse_from
            .iter()
            .map(|r| Scope::pull(&r.repository)),
    );
    scopes.extend(options.mount_from.iter().map(|m| Scope::pull(m)));
    if let Some(h) = d.holdings {
        scopes.extend(h.repositories().iter().map(|r| Scope::pull(r)));
    }
    d.client.authorize(&scopes);
    d.client.ping().map_err(|e| PushError::Unreachable {
        registry: d.reference.registry.clone(),
        source: e,
    })
}

/// The push to the destinations that answered: what each one now holds, or its error.
fn push_live(
    source: &Source,
    live: &[&Destination<'_>],
    options: &Options,
    observer: &dyn Observer,
) -> Result<Vec<Result<Outcome, PushError>>, PushError> {
    // The cache directory holds the layer cache and the resume journal: with `--no-cache`,
    // nothing under it is read or written.
    let cache_dir = if options.use_cache {
        match cache::checked_dir(options.cache_dir.as_deref()) {
            Ok(cache::CacheDir::Private(d)) => Some(d),
            Ok(cache::CacheDir::DefaultUnsafe(path, e)) => {
                observer.event(&Event::CacheUnused {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                });
                None
            }
            Ok(cache::CacheDir::None) => None,
            Err((path, source)) => return Err(PushError::CacheDir { path, source }),
        }
    } else {
        None
    };
    let cache = cache_dir.as_deref().map(cache::Cache::new);
    let uploaders: Vec<Uploader<'_>> = live
        .iter()
        .map(|d| Uploader {
            client: d.client,
            observer,
            upload: UploadOptions {
                chunk_size: options.chunk_size,
                max_single_upload: options.max_single_upload.unwrap_or(u64::MAX),
                default_chunk_size: options.chunk_size.unwrap_or(64 << 20),
            },
            sessions: cache_dir
                .as_deref()
                .map(|dir| sessions::Sessions::new(dir, d.client.origin())),
            mount_from: options.mount_from.clone(),
            holdings: d.holdings,
            hash_files: source.is_layout(),
            dry_run: options.dry_run,
            source: source.name.clone(),
            stream_origin: upload::stream_origin(&source.name, options),
        })
        .collect();
    let targets: Vec<source::Target<'_>> = live
        .iter()
        .zip(&uploaders)
        .map(|(d, uploader)| source::Target {
            dest: d.reference,
            uploader,
        })
        .collect();
    let opener = source::Opener {
        source,
        targets: &targets,
        options,
        observer,
        cache: cache.as_ref(),
    };
    let result = std::thread::scope(|s| {
        let opened = match opener.open(s) {
            Ok(o) => o,
            Err(source::OpenError::Source(e)) => return Err(e),
            Err(source::OpenError::Targets(errors)) => {
                return Ok(errors.into_iter().map(Err).collect());
            }
        };
        let work = targets
            .iter()
            .zip(opened.early)
            .zip(opened.known)
            .zip(opened.missing);
        let layout = &opened.layout;
        // Each destination's blobs, manifests and tags, side by side.
        std::thread::scope(|s| {
            let pushes: Vec<_> = work
                .map(|(((target, early), known), missing)| {
                    let one = Pusher {
                        s,
                        uploader: target.uploader,
                        dest: target.dest,
                        options,
                        layout,
                        known,
                        missing,
                        images: Vec::new(),
                        failed: Vec::new(),
                        renames: refused::Renames::default(),
                    };
                    std::thread::Builder::new()
                        .name(format!("push-{}", target.dest.registry))
                        .spawn_scoped(s, move || one.push(&source.name, early))
                        .map_err(PushError::Thread)
                })
                .collect();
            Ok(pushes
                .into_iter()
                .map(|p| {
                    p.and_then(|h| {
                        h.join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    })
                })
                .collect())
        })
    });
    observer.progress(&Progress::Finished);
    result
}

/// What the push to one destination left: the images there, and those that failed (a push
/// under own names goes on past a failed repository).
type Outcome = (Vec<Pushed>, Vec<FailedImage>);

/// The push of the plan's repositories, one after the other.
struct Pusher<'scope, 'env> {
    s: &'scope std::thread::Scope<'scope, 'env>,
    uploader: &'env Uploader<'env>,
    dest: &'env Reference,
    options: &'env Options,
    layout: &'env Layout,
    /// What planning learnt about DEST's repository, and the repositories of this registry
    /// known to hold a blob (for automatic mounts; those of an `all` push's earlier
    /// repositories are added as it goes).
    known: Known,
    /// References (repository, tag) the reuse plan found no manifest at: a push under own names
    /// does not ask about them again.
    missing: BTreeSet<(String, String)>,
    /// What was pushed so far.
    images: Vec<Pushed>,
    /// A push under own names: the images that failed so far.
    failed: Vec<FailedImage>,
    /// Documents pushed converted because the registry refused their media type.
    renames: refused::Renames,
}

impl Pusher<'_, '_> {
    fn observer(&self) -> &dyn Observer {
        self.uploader.observer
    }

    /// Push the chosen images of the layout to DEST: what the registry now holds. `early`: the
    /// workers that started uploading to DEST's repository while the archive was read.
    fn push(mut self, source: &str, early: Option<Pool>) -> Result<Outcome, PushError> {
        let pushed = self.push_plan(source, early);
        if let Some(h) = self.uploader.holdings {
            h.record(&self.known.holders);
        }
        pushed.map(|()| (self.images, self.failed))
    }

    /// [`push`](Self::push), leaving what it pushed in `self`.
    fn push_plan(&mut self, source: &str, mut early: Option<Pool>) -> Result<(), PushError> {
        let plan = PushPlan::build(
            self.layout,
            source,
            self.dest,
            Choice {
                selectors: &self.options.images,
                all: self.options.all,
                extra_tags: &self.options.tags,
                platform: self.options.platform.as_deref(),
                skip_absent: self.options.skip_absent_platforms,
                attestations: self.options.attestations,
                naming: Naming {
                    rules: &self.options.map,
                    only_mapped: self.options.only_mapped,
                },
            },
        )?;
        for (referrer, subject) in &plan.unpushed_referrers {
            self.observer().event(&Event::ReferrerLeftOut {
                referrer: *referrer,
                subject: *subject,
            });
        }
        let scopes: Vec<Scope> = plan
            .repos
            .iter()
            .map(|r| self.options.repository_scope(&r.repository))
            .collect();
        self.uploader.client.authorize(&scopes);
        if !plan.images.is_empty() {
            self.failed = bulk::left_out(self.observer(), &plan);
            self.each_repository(&plan);
            return Ok(());
        }
        for repo in &plan.repos {
            let workers = early.take().filter(|p| p.repository() == repo.repository);
            self.repository(repo, workers)?;
        }
        Ok(())
    }

    /// The repositories of a push under own names, `jobs` at a time, each blob uploaded by the
    /// first repository to claim it and mounted by the others once it is there
    /// ([`bulk::Claims`]); the images and failures in the plan's order.
    fn each_repository(&mut self, plan: &PushPlan) {
        let claims = bulk::Claims::default();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let holders = std::sync::Mutex::new(std::mem::take(&mut self.known.holders));
        let done = std::sync::Mutex::new(Vec::new());
        let this = &*self;
        let work = || {
            while let Some(repo) = plan
                .repos
                .get(next.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
            {
                let present = bulk::already_there(this.uploader.client, repo, &this.missing);
                // Blobs a repository holds already (uploaded while the archive was read, or
                // before) are mounted from it: nothing to wait for.
                let unheld: Vec<plan::Blob> = {
                    let held = upload::lock(&holders);
                    repo.blobs
                        .iter()
                        .filter(|b| !held.contains_key(&b.digest))
                        .cloned()
                        .collect()
                };
                let position = claims.claim(&unheld);
                if !present {
                    claims.wait_before(position, &unheld);
                }
                let mut one = Pusher {
                    s: this.s,
                    uploader: this.uploader,
                    dest: this.dest,
                    options: this.options,
                    layout: this.layout,
                    known: Known {
                        holders: upload::lock(&holders).clone(),
                        reported: this.known.reported.clone(),
                        ..Known::default()
                    },
                    missing: BTreeSet::new(),
                    images: Vec::new(),
                    failed: Vec::new(),
                    renames: refused::Renames::default(),
                };
                one.each_image(plan, repo, present);
                let mut all = upload::lock(&holders);
                for (digest, repository) in one.known.holders {
                    all.entry(digest).or_insert(repository);
                }
                claims.finish(position, |d| all.contains_key(d));
                drop(all);
                upload::lock(&done).push((position, one.images, one.failed));
            }
        };
        std::thread::scope(|s| {
            for _ in 0..self.options.jobs.clamp(1, plan.repos.len().max(1)) {
                s.spawn(work);
            }
        });
        self.known.holders = holders.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
        done.sort_by_key(|(position, _, _)| *position);
        for (_, images, failed) in done {
            self.images.extend(images);
            self.failed.extend(failed);
        }
    }

    /// Push `repo` of a push under own names: not at all when its tags already point at its
    /// images (`present`); a failure fails its images only ([`bulk`]).
    fn each_image(&mut self, plan: &PushPlan, repo: &RepoPlan, present: bool) {
        let result = if present {
            let registry = &self.dest.registry;
            let tags = bulk::present_tags(self.observer(), registry, repo, self.options.dry_run);
            if !self.options.dry_run {
                self.images.extend(tags);
            }
            // Its blobs are there: the next repositories mount them from it.
            for b in &repo.blobs {
                self.known
                    .holders
                    .entry(b.digest)
                    .or_insert_with(|| repo.repository.clone());
            }
            Ok(())
        } else {
            self.repository(repo, None)
        };
        let error = result.as_ref().err().map(|e| e as &dyn std::error::Error);
        let failed = bulk::repository_done(
            self.observer(),
            &self.dest.registry,
            plan,
            repo,
            present,
            self.options.dry_run,
            error,
        );
        self.failed.extend(failed);
    }

    /// Push `repo`: blobs (with `early`'s workers when the archive reader already fed them),
    /// manifests, tags, and read the tags back.
    fn repository(&mut self, repo: &RepoPlan, early: Option<Pool>) -> Result<(), PushError> {
        for r in &repo.rewrites {
            self.observer().event(&Event::NewIndex {
                repository: repo.repository.clone(),
                original: r.original,
                digest: r.digest,
                dropped: r.dropped.clone(),
            });
        }
        self.blobs(repo, early)?;
        if self.options.dry_run {
            for t in &repo.tags {
                self.observer().event(&Event::Tag {
                    reference: self.reference(repo, &t.tag),
                    digest: t.digest,
                    dry_run: Some(true),
                });
            }
            return Ok(());
        }
        self.manifests(repo)?;
        self.tags(repo)?;
        self.read_back(repo)?;
        self.referrers(repo)?;
        for d in &repo.untagged {
            let reference = format!("{}/{}@{}", self.dest.registry, repo.repository, d);
            self.observer().event(&Event::Untagged {
                reference: reference.clone(),
                digest: *d,
            });
            self.images.push(Pushed {
                reference,
                digest: *d,
            });
        }
        Ok(())
    }

    fn reference(&self, repo: &RepoPlan, tag: &str) -> String {
        format!("{}/{}:{}", self.dest.registry, repo.repository, tag)
    }

    /// Push `repo`'s blobs from the layout. The repositories that now hold each blob are added
    /// to the holders (mount sources for the next repository of an `all` push).
    fn blobs(&mut self, repo: &RepoPlan, early: Option<Pool>) -> Result<(), PushError> {
        let pool = match early {
            Some(p) => p,
            None => upload::start_pool(
                self.s,
                self.uploader,
                &repo.repository,
                self.known_for(&repo.repository),
                self.options.jobs.min(repo.blobs.len()),
            )
            .map_err(PushError::Thread)?,
        };
        let blobs = repo
            .blobs
            .iter()
            .filter(|b| self.known.reported.get(&b.digest) != Some(&repo.repository))
            .map(|b| (b.clone(), self.layout.blob_path(&b.digest)));
        for (d, outcome) in pool.finish(blobs)? {
            if outcome.holds() {
                self.known
                    .holders
                    .entry(d)
                    .or_insert_with(|| repo.repository.clone());
            }
        }
        Ok(())
    }

    /// What the uploads to `repository` need not ask: all of [`Pusher::known`] for DEST's
    /// repository, only the holders of blobs for another one.
    fn known_for(&self, repository: &str) -> Known {
        if repository == self.dest.repository {
            return self.known.clone();
        }
        Known {
            holders: self.known.holders.clone(),
            ..Known::default()
        }
    }

    fn manifest_event(&self, repo: &RepoPlan, digest: Digest, media_type: &str, size: usize) {
        self.observer().event(&Event::Manifest {
            repository: repo.repository.clone(),
            digest,
            media_type: media_type.to_string(),
            size,
        });
    }

    /// PUT the manifests by digest, children first.
    fn manifests(&self, repo: &RepoPlan) -> Result<(), PushError> {
        for m in &repo.manifests {
            // One tagged image manifest (the usual push) is stored by its tag PUT: the same
            // bytes, one request less. (With several, a tagged one may be an index's child, which
            // must be there before the index.)
            if repo.manifests.len() == 1 && repo.tags.iter().any(|t| t.digest == m.digest) {
                continue;
            }
            let what = || {
                format!(
                    "pushing manifest {} to {}/{}",
                    m.digest, self.dest.registry, repo.repository
                )
            };
            let pushed = self.put_doc(repo, None, m, &what)?;
            let (d, m) = (pushed.digest, &pushed);
            self.manifest_event(repo, d, &m.media_type, m.bytes.len());
        }
        Ok(())
    }

    /// PUT `doc` (by its digest, or as `tag`), as converted documents below it require; when the
    /// registry refuses its media type and the options allow it, converted to the other format.
    /// Returns what was pushed.
    fn put_doc(
        &self,
        repo: &RepoPlan,
        tag: Option<&str>,
        doc: &plan::Doc,
        what: &dyn Fn() -> String,
    ) -> Result<plan::Doc, PushError> {
        let client = self.uploader.client;
        let now = self.renames.apply(doc);
        let put = |d: &plan::Doc| {
            let reference = tag.map_or_else(|| d.digest.to_string(), str::to_string);
            client.put_manifest(&repo.repository, &reference, &d.media_type, &d.bytes)
        };
        let error = match put(&now) {
            Ok(_) => {
                if now.digest != doc.digest {
                    self.renames.insert(doc.digest, now.clone());
                }
                return Ok(now);
            }
            Err(e) if e.is_media_type_refusal() => e,
            Err(e) => {
                return Err(PushError::Manifest {
                    what: what(),
                    source: e,
                });
            }
        };
        let converted = match refused::convert(&now) {
            Ok(c) => c,
            Err(reason) => {
                return Err(PushError::FormatRefused {
                    what: what(),
                    media_type: now.media_type.clone(),
                    conversion: format!("it cannot be converted: {reason}"),
                    source: error,
                });
            }
        };
        if !self.options.convert_refused {
            return Err(PushError::FormatRefused {
                what: what(),
                media_type: now.media_type.clone(),
                conversion: format!(
                    "--convert-refused pushes it as {} instead, which changes its digest from {} to {}",
                    converted.media_type, doc.digest, converted.digest
                ),
                source: error,
            });
        }
        put(&converted).map_err(|e| PushError::Manifest {
            what: what(),
            source: e,
        })?;
        self.observer().event(&Event::Converted {
            repository: repo.repository.clone(),
            original: doc.digest,
            refused: now.media_type.clone(),
            error: error.to_string(),
            digest: converted.digest,
            media_type: converted.media_type.clone(),
        });
        self.renames.insert(doc.digest, converted.clone());
        Ok(converted)
    }

    /// PUT the tags (the client checks the registry's Docker-Content-Digest against the bytes).
    fn tags(&self, repo: &RepoPlan) -> Result<(), PushError> {
        for t in &repo.tags {
            let doc = plan::Doc {
                digest: t.digest,
                media_type: t.media_type.clone(),
                bytes: t.bytes.clone(),
            };
            let what = || format!("tagging {}", self.reference(repo, &t.tag));
            let pushed = self.put_doc(repo, Some(&t.tag), &doc, &what)?;
            let d = pushed.digest;
            let first_tag = repo
                .tags
                .iter()
                .find(|o| o.digest == t.digest)
                .map(|o| &o.tag);
            if repo.manifests.len() == 1 && first_tag == Some(&t.tag) {
                self.manifest_event(repo, d, &pushed.media_type, pushed.bytes.len());
            }
        }
        Ok(())
    }

    /// Have the registry list the referrers pushed, by subject: a registry with the referrers
    /// API lists them by itself (checked); otherwise the referrers tag schema's index, tagged
    /// `sha256-<subject hex>`, gets them (added to what the tag already lists).
    fn referrers(&self, repo: &RepoPlan) -> Result<(), PushError> {
        let client = self.uploader.client;
        let subjects: BTreeSet<Digest> = repo.referrers.iter().map(|r| r.subject).collect();
        for subject in subjects {
            let mine: Vec<&Descriptor> = repo
                .referrers
                .iter()
                .filter(|r| r.subject == subject)
                .map(|r| &r.descriptor)
                .collect();
            let api =
                client
                    .referrers(&repo.repository, &subject)
                    .map_err(|e| PushError::Manifest {
                        what: format!("listing the referrers of {subject} in {}", repo.repository),
                        source: e,
                    })?;
            let listed = |bytes: &[u8]| -> Vec<Digest> {
                parse_json::<Index>("referrers index", bytes)
                    .map(|i| i.manifests.iter().map(|m| m.digest).collect())
                    .unwrap_or_default()
            };
            let (tag, index) = match api {
                Some(bytes) if mine.iter().all(|m| listed(&bytes).contains(&m.digest)) => {
                    (None, None)
                }
                _ => {
                    let (tag, digest) = self.referrers_tag_index(repo, &subject, &mine)?;
                    (Some(tag), Some(digest))
                }
            };
            self.observer().event(&Event::Referrers {
                repository: repo.repository.clone(),
                subject,
                referrers: mine.iter().map(|m| m.digest).collect(),
                tag,
                index,
            });
        }
        Ok(())
    }

    /// The referrers tag schema: read the index tagged `sha256-<subject hex>` (when there is
    /// one; a document there that is not an index is replaced, the spec reserves the tag), add
    /// `mine` to it, and put it back under that tag. Returns the tag and the index's digest.
    fn referrers_tag_index(
        &self,
        repo: &RepoPlan,
        subject: &Digest,
        mine: &[&Descriptor],
    ) -> Result<(String, Digest), PushError> {
        let client = self.uploader.client;
        let tag = referrers_tag(subject);
        let failed = |step: &str| {
            let what = format!(
                "{step} {}/{}:{tag} (the referrers of {subject})",
                self.dest.registry, repo.repository
            );
            move |source| PushError::Manifest { what, source }
        };
        let existing = match client
            .manifest_digest(&repo.repository, &tag)
            .map_err(failed("reading"))?
        {
            Some(_) => Some(
                client
                    .get_manifest(&repo.repository, &tag)
                    .map_err(failed("reading"))?
                    .1,
            ),
            None => None,
        };
        let mut index = existing
            .and_then(|bytes| parse_json::<Index>("referrers index", &bytes).ok())
            .unwrap_or_else(Index::empty);
        for m in mine {
            if !index.manifests.iter().any(|e| e.digest == m.digest) {
                index.manifests.push((*m).clone());
            }
        }
        // An `Index` of strings and numbers always serialises.
        let bytes = serde_json::to_vec(&index).unwrap_or_default();
        let digest = client
            .put_manifest(&repo.repository, &tag, media_types::OCI_INDEX, &bytes)
            .map_err(failed("tagging"))?;
        Ok((tag, digest))
    }

    /// Read every tag back: `Ok` only when the registry serves what was pushed.
    fn read_back(&mut self, repo: &RepoPlan) -> Result<(), PushError> {
        let client = self.uploader.client;
        for t in &repo.tags {
            let reference = self.reference(repo, &t.tag);
            let pushed = self.renames.get(&t.digest).map_or(t.digest, |d| d.digest);
            let got = client
                .manifest_digest(&repo.repository, &t.tag)
                .map_err(|e| PushError::Manifest {
                    what: format!("checking {reference}"),
                    source: e,
                })?;
            if got != Some(pushed) {
                return Err(PushError::TagMismatch {
                    reference,
                    found: got,
                    pushed,
                });
            }
            self.observer().event(&Event::Tag {
                reference: reference.clone(),
                digest: pushed,
                dry_run: None,
            });
            self.images.push(Pushed {
                reference,
                digest: pushed,
            });
        }
        Ok(())
    }
}
