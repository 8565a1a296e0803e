//! Opening SOURCE: an OCI layout directory is pushed as it is; anything else is an archive, read
//! into a temporary layout ([`TempDir`]) in one pass, leaving out the layers the registry already
//! has ([`crate::reuse`]). When the push goes to DEST's repository alone (no `all`, image
//! selectors, `platform` or `dry_run`), upload workers start first (a pool per destination) and
//! each layer goes up to every destination as soon as it is in the temporary layout, while the
//! reader carries on with the next one; a layer is left unread only when every destination has it (see
//! docs/architecture.md, "Uploads overlap reading"). With `all` (one destination, an archive whose
//! catalog says which image each layer belongs to) the layers go up while it is read too, each to
//! its image's repository ([`crate::bulk::Early`]).

use crate::bulk;
use crate::cache::{self, Cache};
use crate::error::PushError;
use crate::event::{Event, LayerSource, Observer};
use crate::options::Options;
use crate::reuse::{self, Origin, ReusePlan, Unconfirmed, Wanted};
use crate::upload::{Known, Pool, STREAM_MIN, Uploader};
use layerlift_archive::{ArchiveInfo, Contents, Input, LayerInfo, LayerSender};
use layerlift_layers::{Compression, Encoding};
use layerlift_layout::Layout;
use layerlift_manifest::Digest;
use layerlift_registry::Reference;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::thread::Scope;
use std::time::Duration;

/// SOURCE, opened: the layout to push from, and what was reused instead of read.
pub(crate) struct Opened {
    /// For each target: the upload workers that pushed the archive's layers to DEST's
    /// repository while it was being read, with what they have done ([`Pool`]).
    pub early: Vec<Option<Pool>>,
    /// The temporary layout an archive was read into (removed on drop).
    pub _tmp: Option<TempDir>,
    pub layout: Layout,
    /// For each target: what its reuse plan learnt about DEST's repository (blobs its registry
    /// has that the layout does not, and the repository holding each; blobs found absent; a
    /// repository that does not exist yet), for its uploads.
    pub known: Vec<Known>,
    /// For each target: the references its reuse plan found no manifest at
    /// ([`ReusePlan::missing`]).
    pub missing: Vec<BTreeSet<(String, String)>>,
}

/// Why SOURCE could not be opened.
pub(crate) enum OpenError {
    /// SOURCE's own error: the same for every destination.
    Source(PushError),
    /// The upload to every destination failed while the archive was read, and the reader
    /// stopped: each destination's own error.
    Targets(Vec<PushError>),
}

impl From<PushError> for OpenError {
    fn from(e: PushError) -> Self {
        OpenError::Source(e)
    }
}

/// One destination of a push: DEST and the uploads to its registry.
pub(crate) struct Target<'a> {
    pub dest: &'a Reference,
    pub uploader: &'a Uploader<'a>,
}

/// Check that SOURCE exists, and is an OCI layout that opens, another directory (read later),
/// standard input (`-`), or a file that starts like an archive. Nothing is read past that.
pub fn check_source(source: &str) -> Result<(), PushError> {
    if source == "-" {
        return Ok(());
    }
    let path = Path::new(source);
    let meta = std::fs::metadata(path).map_err(|e| PushError::Open {
        source_name: source.to_string(),
        source: e,
    })?;
    if meta.is_dir() {
        if path.join("oci-layout").is_file() {
            Layout::open(path).map_err(|e| PushError::Layout {
                source_name: source.to_string(),
                source: e,
            })?;
        }
        return Ok(());
    }
    layerlift_archive::check_start(path).map_err(|e| PushError::NotAnArchive {
        source_name: source.to_string(),
        source: e,
    })
}

/// SOURCE, checked ([`check_source`]) and told apart once: what it is decides how it is opened.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// SOURCE as given (`-` for standard input): how messages, events and errors name it.
    pub name: String,
    pub kind: SourceKind,
}

/// What SOURCE is.
#[derive(Debug, Clone)]
pub(crate) enum SourceKind {
    /// An OCI layout directory, pushed as it is (its blobs hashed as they are uploaded).
    Layout(PathBuf),
    /// An archive (a file, a directory of one, standard input), read into a temporary layout.
    Archive(Input),
}

impl Source {
    /// Check SOURCE as given ([`check_source`]) and tell what it is.
    pub fn check(arg: &str) -> Result<Source, PushError> {
        check_source(arg)?;
        let path = Path::new(arg);
        let kind = if arg != "-" && path.is_dir() && path.join("oci-layout").is_file() {
            SourceKind::Layout(path.to_path_buf())
        } else {
            SourceKind::Archive(Input::from_arg(arg))
        };
        Ok(Source {
            name: arg.to_string(),
            kind,
        })
    }

    /// Whether it is an OCI layout (this run did not write its blobs).
    pub fn is_layout(&self) -> bool {
        matches!(self.kind, SourceKind::Layout(_))
    }
}

/// What opening an archive needs.
pub(crate) struct Opener<'a> {
    pub source: &'a Source,
    /// Where it goes: one read for all of them.
    pub targets: &'a [Target<'a>],
    pub options: &'a Options,
    pub observer: &'a dyn Observer,
    pub cache: Option<&'a Cache>,
}

impl<'a> Opener<'a> {
    /// Open SOURCE (see the module docs); early upload workers run on `scope`.
    pub fn open<'scope>(&self, scope: &'scope Scope<'scope, 'a>) -> Result<Opened, OpenError> {
        let input = match &self.source.kind {
            SourceKind::Archive(input) => input,
            SourceKind::Layout(path) => return self.open_layout(path),
        };
        self.open_archive(scope, input)
    }

    /// An OCI layout SOURCE: pushed as it is, nothing uploaded while it is opened.
    fn open_layout(&self, path: &Path) -> Result<Opened, OpenError> {
        let layout = Layout::open(path).map_err(|e| PushError::Layout {
            source_name: self.source.name.clone(),
            source: e,
        })?;
        Ok(Opened {
            early: self.targets.iter().map(|_| None).collect(),
            _tmp: None,
            layout,
            known: self
                .targets
                .iter()
                .map(|t| carried(t, Known::default()))
                .collect(),
            missing: self.targets.iter().map(|_| BTreeSet::new()).collect(),
        })
    }

    fn archive_error(&self, input: &Input, e: layerlift_archive::ArchiveError) -> PushError {
        PushError::Archive {
            source_name: input.display(),
            source: e,
        }
    }

    fn open_archive<'scope>(
        &self,
        scope: &'scope Scope<'scope, 'a>,
        input: &Input,
    ) -> Result<Opened, OpenError> {
        let tmp = TempDir::new()?;
        // One pass over the archive: every layer is read once, hashed, and (when it is stored
        // uncompressed) compressed on the way into the temporary layout, which never holds an
        // uncompressed copy of it.
        let encoding = self.options.compression.map(|compression| Encoding {
            compression,
            level: self.options.compression_level,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        });
        // What the archive's metadata says, when it can be read without reading the layers.
        let contents =
            layerlift_archive::read_catalog(input).map_err(|e| self.archive_error(input, e))?;
        let mut plans: Vec<ReusePlan> = self
            .targets
            .iter()
            .map(|t| {
                if self.options.verify_all {
                    ReusePlan::default()
                } else {
                    self.plan_reuse(t, contents.as_ref(), encoding)
                }
            })
            .collect();
        // A layer is left unread only when every destination has it.
        ReusePlan::keep_common(&mut plans);
        let mut known: Vec<Known> = plans
            .iter()
            .zip(self.targets)
            .map(|(plan, t)| carried(t, known(plan)))
            .collect();
        // Only blobs of the image that is pushed go up early: with image selectors or a platform,
        // which layers those are is known only once the archive's metadata (written last) is
        // read. An archive file whose metadata names several images is refused after the read
        // (no selector): nothing goes up before that. (From a pipe that cannot be known.)
        let one_image = self.options.images.is_empty()
            && self.options.platform.is_none()
            && contents.as_ref().is_none_or(|c| c.images <= 1);
        let early: Vec<Option<Pool>> = if one_image && !self.options.all && !self.options.dry_run {
            self.targets
                .iter()
                .zip(&known)
                .map(|(t, k)| {
                    crate::upload::start_pool(
                        scope,
                        t.uploader,
                        &t.dest.repository,
                        k.clone(),
                        self.options.jobs,
                    )
                    .map(Some)
                })
                .collect::<Result<_, _>>()
                .map_err(PushError::Thread)?
        } else {
            self.targets.iter().map(|_| None).collect()
        };
        self.observer.event(&Event::Reading {
            source: self.source.name.clone(),
            compression: encoding.map(|e| e.compression.to_string()),
        });
        let (handover, bulk_early) = match self.bulk_owners(contents.as_ref()) {
            Some(owners) => self.hand_over_bulk(scope, owners, &known[0])?,
            None => (self.hand_over(scope, &early)?, None),
        };
        let reuse = &plans[0];
        let options = layerlift_archive::Options {
            encoding,
            reuse: layerlift_archive::Reuse {
                by_path: reuse.entries.clone(),
                by_diff_id: reuse
                    .by_diff_id
                    .iter()
                    .map(|(id, held)| (*id, held.blob))
                    .collect(),
            },
            scratch: true,
            platform: self.options.platform.clone(),
            handover,
            ..Default::default()
        };
        let read = layerlift_archive::unpack_with(input, &tmp.path(), &options);
        // The last sender: its drop ends the read for the pools' feeders.
        drop(options);
        if let Some(early) = bulk_early.filter(|_| read.is_ok()) {
            // What went up while the archive was read: the plan's repositories mount it.
            early.add_holders(&mut known[0]);
        }
        let (info, _) = match read {
            Ok(r) => r,
            // The upload to every destination failed while the archive was read, and the reader
            // stopped: those are the errors.
            Err(layerlift_archive::ArchiveError::Stopped) => {
                let stopped = || PushError::Stopped {
                    source_name: input.display(),
                };
                return Err(OpenError::Targets(
                    early
                        .iter()
                        .map(|p| {
                            p.as_ref()
                                .and_then(Pool::take_error)
                                .map_or_else(stopped, PushError::from)
                        })
                        .collect(),
                ));
            }
            Err(e) => return Err(self.archive_error(input, e).into()),
        };
        let layout = Layout::open(tmp.path()).map_err(PushError::TempLayout)?;
        self.confirm_all(&info, &plans, encoding)?;
        Ok(Opened {
            early,
            _tmp: Some(tmp),
            layout,
            known,
            missing: plans.into_iter().map(|p| p.missing).collect(),
        })
    }

    /// [`confirm`](Self::confirm) for every destination (the layer events once: they say what
    /// was read, the same for all), then remember each layer's pushed blob for the next pushes
    /// of the run (their holders come when this one is done).
    fn confirm_all(
        &self,
        info: &ArchiveInfo,
        plans: &[ReusePlan],
        encoding: Option<Encoding>,
    ) -> Result<(), PushError> {
        for (i, (t, reuse)) in self.targets.iter().zip(plans).enumerate() {
            self.confirm(t, info, reuse, encoding, i == 0)?;
        }
        for t in self.targets {
            if let Some(h) = t.uploader.holdings {
                h.record_layers(
                    layers_read(info).filter_map(|(_, l)| Some((l.diff_id?, l.descriptor.clone()))),
                );
            }
        }
        Ok(())
    }

    /// Read back the reused layers learnt outside DEST's repository ([`reuse::confirm`]), then
    /// report every layer read.
    fn confirm(
        &self,
        target: &Target<'_>,
        info: &ArchiveInfo,
        reuse: &ReusePlan,
        encoding: Option<Encoding>,
        report: bool,
    ) -> Result<(), PushError> {
        let unconfirmed = unconfirmed_layers(info, reuse, &target.dest.repository);
        if !unconfirmed.is_empty() {
            self.observer.event(&Event::ReadingBack {
                repository: target.dest.repository.clone(),
                layers: unconfirmed.len(),
            });
        }
        if let Err(e) = reuse::confirm(target.uploader.client, &unconfirmed, self.options.jobs) {
            if let (
                reuse::ConfirmError::Mismatch {
                    diff_id,
                    origin: Origin::Cache,
                    ..
                },
                Some(cache),
                Some(enc),
            ) = (&e, self.cache, encoding)
            {
                cache.remove(&cache::Key::new(
                    *diff_id,
                    enc.compression,
                    enc.effective_level(),
                ));
            }
            return Err(e.into());
        }
        if report {
            let confirmed: BTreeSet<Digest> = unconfirmed.iter().map(|u| u.digest).collect();
            report_layers(self.observer, info, reuse, &confirmed, encoding, self.cache);
        }
        Ok(())
    }

    /// The channel the archive reader hands its layers over on, one receiver per pool of
    /// `early` (none without pools); large layers are handed over while they are compressed
    /// when [`Opener::streams`] says so.
    fn hand_over<'scope>(
        &self,
        scope: &'scope Scope<'scope, 'a>,
        early: &[Option<Pool>],
    ) -> Result<Option<LayerSender>, PushError> {
        let pools: Vec<&Pool> = early.iter().flatten().collect();
        if pools.is_empty() {
            return Ok(None);
        }
        let (sender, receivers) = layerlift_archive::handover(pools.len());
        for (pool, receiver) in pools.into_iter().zip(receivers) {
            pool.feed(scope, receiver).map_err(PushError::Thread)?;
        }
        Ok(Some(if self.streams() {
            sender.streaming(STREAM_MIN)
        } else {
            sender
        }))
    }

    /// A push under own names (`all`, one destination, not a dry run) of an archive whose
    /// metadata says which image each layer belongs to: the repository each layer goes up to
    /// while the archive is read ([`bulk::Owners`]). `None`: nothing goes up before the read is
    /// over (a pipe, an OCI index, nothing named).
    fn bulk_owners(&self, contents: Option<&Contents>) -> Option<bulk::Owners> {
        let o = self.options;
        if !o.all || o.dry_run || self.targets.len() != 1 || !o.images.is_empty() {
            return None;
        }
        let naming = crate::names::Naming {
            rules: &o.map,
            only_mapped: o.only_mapped,
        };
        let owners = bulk::Owners::new(contents?, self.targets[0].dest, naming);
        (!owners.is_empty()).then_some(owners)
    }

    /// The channel the archive reader hands its layers over on for a push under own names, and
    /// the uploads it feeds ([`bulk::Early`]); large layers are handed over while they are
    /// compressed when [`Opener::streams`] says so.
    fn hand_over_bulk<'scope>(
        &self,
        scope: &'scope Scope<'scope, 'a>,
        owners: bulk::Owners,
        known: &Known,
    ) -> Result<(Option<LayerSender>, Option<bulk::Early<'scope>>), PushError> {
        let target = &self.targets[0];
        let scopes: Vec<layerlift_registry::Scope> = owners
            .repositories()
            .into_iter()
            .map(|r| self.options.repository_scope(r))
            .collect();
        target.uploader.client.authorize(&scopes);
        let (sender, mut receivers) = layerlift_archive::handover(1);
        let receiver = receivers.pop().ok_or(PushError::NoDestination)?;
        let early = bulk::Early::start(
            scope,
            target.uploader,
            format!("{}/{}", target.dest.registry, target.dest.repository).trim_end_matches('/'),
            owners,
            Known {
                holders: known.holders.clone(),
                ..Known::default()
            },
            self.options.jobs,
            receiver,
        )
        .map_err(PushError::Thread)?;
        // Staged as well: a layer whose early upload fails goes up after the read, from the
        // layout, with the other repositories' pushes.
        let sender = if self.streams() {
            sender.streaming(STREAM_MIN).staging()
        } else {
            sender
        };
        Ok((Some(sender), Some(early)))
    }

    /// Whether layers may be streamed while they are compressed: not when the user chose how
    /// blobs go up (chunks, a size limit), asked to read every layer (those the registry has
    /// would go up again: a stream cannot ask first), or named repositories to mount from (a
    /// stream cannot mount); not once this registry refused a stream.
    fn streams(&self) -> bool {
        let o = self.options;
        o.chunk_size.is_none()
            && o.max_single_upload.is_none()
            && o.mount_from.is_empty()
            && !o.verify_all
            && !self
                .targets
                .iter()
                .any(|t| t.uploader.client.streams_refused())
    }

    /// Which layers of an archive need not be read ([`reuse::plan`]). `contents` is the
    /// archive's catalog, `None` when it cannot be walked without reading it (a pipe, a
    /// compressed archive); with `all`, the images it names are looked for where they go
    /// ([`crate::names::own_references`]: none without a catalog).
    fn plan_reuse(
        &self,
        target: &Target<'_>,
        contents: Option<&Contents>,
        encoding: Option<Encoding>,
    ) -> ReusePlan {
        let layers = contents.map(|c| c.layers.as_slice());
        let dest = target.dest;
        let (mut references, own) = if self.options.all {
            let naming = crate::names::Naming {
                rules: &self.options.map,
                only_mapped: self.options.only_mapped,
            };
            let names = contents.map_or(&[][..], |c| c.names.as_slice());
            let references = crate::names::own_references(dest, names, naming);
            let own = references.iter().map(|(r, _)| r.clone()).collect();
            (references, own)
        } else {
            let mut tags: Vec<String> = dest.tag.iter().cloned().collect();
            tags.extend(self.options.tags.iter().cloned());
            if tags.is_empty() && dest.digest.is_none() {
                tags.push("latest".into());
            }
            let references = tags
                .into_iter()
                .map(|t| (dest.repository.clone(), t))
                .collect();
            (references, BTreeSet::new())
        };
        for r in &self.options.reuse_from {
            let reference = match (&r.digest, &r.tag) {
                (Some(d), _) => d.to_string(),
                (None, Some(t)) => t.clone(),
                (None, None) => "latest".into(),
            };
            references.push((r.repository.clone(), reference));
        }
        let repository = match references.first() {
            Some((first, _)) if self.options.all => first.clone(),
            _ => dest.repository.clone(),
        };
        let wanted = Wanted {
            repository: &repository,
            references,
            compression: encoding.map(|e| e.compression),
            level: encoding.map_or(0, |e| e.effective_level()),
            any_compression: self.options.reuse_any_compression,
            cache: self.cache,
            jobs: self.options.jobs,
            carried: target
                .uploader
                .holdings
                .map(crate::Holdings::layers)
                .unwrap_or_default(),
        };
        if self.options.all && own.is_empty() {
            // No catalog (a pipe, a compressed archive): the images' names come with the
            // metadata at the end, too late to ask about their tags. What earlier pushes of the
            // run left still spares compressing.
            return ReusePlan {
                by_diff_id: reuse::carried_by_diff_id(&wanted),
                own_repositories: carried_repositories(&wanted).collect(),
                ..ReusePlan::default()
            };
        }
        let client = target.uploader.client;
        let Some(layers) = layers else {
            // A pipe or a compressed archive: layers the registry has are hashed, not compressed.
            let mut plan = reuse::plan_by_diff_id(client, &wanted);
            plan.own_repositories = own;
            plan.own_repositories.extend(carried_repositories(&wanted));
            self.report_notes(&plan);
            return plan;
        };
        let mut plan = reuse::plan(client, layers, &wanted);
        if self.options.all {
            // What was learnt about the first image's repository alone is no hint for the others.
            plan.absent.clear();
            plan.new_repository = false;
        }
        plan.own_repositories = own;
        plan.own_repositories.extend(carried_repositories(&wanted));
        self.report_notes(&plan);
        if !plan.reused.is_empty() {
            self.observer.event(&Event::Reused {
                destination: format!("{}/{}", dest.registry, dest.repository),
                reused: plan.reused.len(),
                layers: layers.len(),
            });
        }
        plan
    }

    /// Why some of what a destination holds could not be used for reuse.
    fn report_notes(&self, plan: &ReusePlan) {
        for note in &plan.notes {
            self.observer.event(&Event::ReuseUnavailable {
                reason: note.to_string(),
            });
        }
    }
}

/// What a destination's reuse plan learnt for its uploads: the blobs it reuses and the
/// repository holding each, the blobs found absent, whether DEST's repository is new.
fn known(reuse: &ReusePlan) -> Known {
    let reused = reuse
        .reused
        .iter()
        .map(|r| (r.digest, r.repository.clone()));
    let by_diff_id = reuse
        .by_diff_id
        .values()
        .map(|h| (h.blob.digest, h.repository.clone()));
    Known {
        holders: reused.chain(by_diff_id).collect(),
        absent: reuse.absent.clone(),
        new_repository: reuse.new_repository,
        ..Known::default()
    }
}

/// The repositories holding the layers carried from earlier pushes of the run: their pairs were
/// made by this process, so they are used unread, as those of DEST's own images are.
fn carried_repositories<'w>(wanted: &'w Wanted<'_>) -> impl Iterator<Item = String> + 'w {
    wanted
        .carried
        .iter()
        .map(|(_, _, repository)| repository.clone())
}

/// `known` with what earlier pushes of the run left in `t`'s registry added to its holders.
fn carried(t: &Target<'_>, mut known: Known) -> Known {
    if let Some(h) = t.uploader.holdings {
        h.fill(&mut known.holders);
    }
    known
}

/// The layers of the images read, each once.
fn layers_read(info: &ArchiveInfo) -> impl Iterator<Item = (Option<&String>, &LayerInfo)> {
    let mut seen = BTreeSet::new();
    info.images
        .iter()
        .flat_map(|i| &i.manifests)
        .filter(|m| m.present)
        .flat_map(|m| &m.layers)
        .filter(|l| l.present)
        .filter_map(move |layer| {
            let path = layer.resolved.as_ref().or(layer.path.as_ref());
            seen.insert((path.cloned(), layer.descriptor.digest))
                .then_some((path, layer))
        })
}

/// The reused layers whose diff_id → blob pairing was learnt outside DEST's repository (see
/// [`reuse`]): they are read back before a manifest names them.
fn unconfirmed_layers(
    info: &ArchiveInfo,
    reuse: &ReusePlan,
    dest_repository: &str,
) -> Vec<Unconfirmed> {
    let mut todo = Vec::new();
    for (path, layer) in layers_read(info) {
        let hashed_only = layer
            .diff_id
            .and_then(|id| Some((id, reuse.by_diff_id.get(&id)?)));
        if let Some((diff_id, held)) = hashed_only
            && held.blob.digest == layer.descriptor.digest
        {
            if reuse.needs_confirming(Origin::Registry, &held.repository, dest_repository) {
                todo.push(Unconfirmed {
                    diff_id,
                    digest: held.blob.digest,
                    compression: held.blob.compression,
                    repository: held.repository.clone(),
                    origin: Origin::Registry,
                    uncompressed_size: layer.uncompressed_size,
                });
            }
            continue;
        }
        if let Some(r) = reuse
            .reused
            .iter()
            .find(|r| Some(&r.path) == path && r.digest == layer.descriptor.digest)
            && reuse.needs_confirming(r.origin, &r.repository, dest_repository)
        {
            todo.push(Unconfirmed {
                diff_id: r.diff_id,
                digest: r.digest,
                compression: r.compression,
                repository: r.repository.clone(),
                origin: r.origin,
                uncompressed_size: r.uncompressed_size,
            });
        }
    }
    todo
}

/// One `layer` event per layer of the images read: verified against its diff_id in this run
/// (read from the archive, or read back from the registry: `confirmed`), or taken from the
/// registry unread. Layers compressed in this run go into the local cache.
fn report_layers(
    observer: &dyn Observer,
    info: &ArchiveInfo,
    reuse: &ReusePlan,
    confirmed: &BTreeSet<Digest>,
    encoding: Option<Encoding>,
    cache: Option<&Cache>,
) {
    for (path, layer) in layers_read(info) {
        let hashed_only = layer.diff_id.and_then(|id| reuse.by_diff_id.get(&id));
        if let Some(held) = hashed_only
            && held.blob.digest == layer.descriptor.digest
        {
            // Read and checked against its name (the diff_id), not compressed: the registry's blob.
            observer.event(&Event::Layer {
                digest: held.blob.digest,
                size: held.blob.size,
                diff_id: layer.diff_id,
                verified: true,
                source: LayerSource::Registry,
                repository: Some(held.repository.clone()),
            });
            continue;
        }
        match reuse
            .reused
            .iter()
            .find(|r| Some(&r.path) == path && r.digest == layer.descriptor.digest)
        {
            Some(r) => observer.event(&Event::Layer {
                digest: r.digest,
                size: r.size,
                diff_id: Some(r.diff_id),
                verified: confirmed.contains(&r.digest),
                source: r.origin.layer_source(),
                repository: Some(r.repository.clone()),
            }),
            None => {
                observer.event(&Event::Layer {
                    digest: layer.descriptor.digest,
                    size: layer.descriptor.size,
                    diff_id: layer.diff_id,
                    verified: true,
                    source: LayerSource::Archive,
                    repository: None,
                });
                // Compressed by this run: remember the digest it got.
                if let (Some(cache), Some(e), Some(id)) = (cache, encoding, layer.diff_id)
                    && layer.compression == Compression::None
                    && layer.descriptor.digest != id
                {
                    let key = cache::Key::new(id, e.compression, e.effective_level());
                    cache.put(&key, layer.descriptor.digest, layer.descriptor.size);
                }
            }
        }
    }
    if let Some(cache) = cache {
        cache.prune(cache::MAX_ENTRIES);
    }
}

/// The temporary directory of a push of an archive: `$TMPDIR/layerlift-push-XXXXXX/`, mode 0700
/// (`tempfile`), holding `lock` — a file this process keeps an exclusive `flock` on while it
/// runs — and `layout/`, the unpacked layout of SOURCE. Removed on drop.
pub(crate) struct TempDir {
    dir: tempfile::TempDir,
    /// Held (locked) for the life of the push: what tells other pushes that it is alive.
    _lock: std::fs::File,
}

/// Prefix of push's temporary directories in `$TMPDIR`.
const TEMP_PREFIX: &str = "layerlift-push-";
/// The lock file in a temporary directory.
const TEMP_LOCK: &str = "lock";
/// A temporary directory whose lock is free is swept once its lock file is this old (a push
/// creates the file and locks it a moment after creating the directory).
const SWEEP_AFTER: Duration = Duration::from_secs(60);
/// A temporary directory without a lock file (a push killed between creating the directory and
/// the file) is swept once it is this old.
const SWEEP_UNLOCKED_AFTER: Duration = Duration::from_secs(24 * 3600);

impl TempDir {
    fn new() -> Result<Self, PushError> {
        Self::new_in(&std::env::temp_dir())
    }

    fn new_in(base: &Path) -> Result<Self, PushError> {
        sweep_abandoned(base);
        let mut builder = tempfile::Builder::new();
        builder.prefix(TEMP_PREFIX);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o700));
        }
        let dir = builder.tempdir_in(base).map_err(|e| PushError::Temp {
            what: "create a temporary directory in",
            path: base.to_path_buf(),
            source: e,
        })?;
        let lock_path = dir.path().join(TEMP_LOCK);
        let lock = std::fs::File::create(&lock_path).map_err(|e| PushError::Temp {
            what: "create",
            path: lock_path.clone(),
            source: e,
        })?;
        lock.lock().map_err(|e| PushError::Temp {
            what: "lock",
            path: lock_path.clone(),
            source: e,
        })?;
        Ok(TempDir { dir, _lock: lock })
    }

    /// Where the temporary layout goes.
    fn path(&self) -> PathBuf {
        self.dir.path().join("layout")
    }
}

/// Remove the temporary directories of pushes that were killed, so that killed runs do not fill
/// the temporary directory. A directory is abandoned when the `flock` on its lock file can be
/// taken (no process holds it: locks are released when their holder dies, whatever PID namespace
/// it ran in, so containers sharing `/tmp` are safe) and the file is older than [`SWEEP_AFTER`];
/// one without a lock file only after [`SWEEP_UNLOCKED_AFTER`]. The lock is held while removing,
/// so a concurrent sweep skips it. Best effort: errors leave the directory.
///
/// `$TMPDIR` may be shared with other users: only directories this user owns are looked at, and
/// their lock file is opened without following a link and without blocking (a FIFO another user
/// made there would block an open for ever), then checked on the open file to be a regular file
/// this user owns; anything else is left alone.
fn sweep_abandoned(base: &Path) {
    use rustix::fs::{Mode, OFlags};
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    let age = |m: &std::fs::Metadata| m.modified().ok().and_then(|t| t.elapsed().ok());
    let nofollow = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(TEMP_PREFIX)
            || !e.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let dir = e.path();
        let Ok(dir_fd) = rustix::fs::open(&dir, nofollow | OFlags::DIRECTORY, Mode::empty()) else {
            continue;
        };
        let dir_file = std::fs::File::from(dir_fd);
        let Ok(dir_meta) = dir_file.metadata() else {
            continue;
        };
        if dir_meta.uid() != me {
            continue;
        }
        match rustix::fs::openat(
            &dir_file,
            TEMP_LOCK,
            nofollow | OFlags::NOCTTY,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let lock = std::fs::File::from(fd);
                let Ok(meta) = lock.metadata() else {
                    continue;
                };
                if meta.file_type().is_file()
                    && meta.uid() == me
                    && lock.try_lock().is_ok()
                    && age(&meta).is_some_and(|a| a >= SWEEP_AFTER)
                {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
            Err(rustix::io::Errno::NOENT) => {
                if age(&dir_meta).is_some_and(|a| a >= SWEEP_UNLOCKED_AFTER) {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_directories_are_private_and_locked() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let live = TempDir::new_in(base.path()).unwrap();
        let dir = live.dir.path().to_path_buf();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        // Old enough to be swept, but its lock is held: kept.
        let old = std::time::SystemTime::now() - 2 * SWEEP_AFTER;
        let lock = std::fs::File::options()
            .write(true)
            .open(dir.join(TEMP_LOCK))
            .unwrap();
        lock.set_modified(old).unwrap();
        sweep_abandoned(base.path());
        assert!(dir.exists(), "a live push's directory is kept");
        // Its holder gone (the lock released), it is swept...
        drop(live);
        let abandoned = base.path().join(format!("{TEMP_PREFIX}abandoned"));
        std::fs::create_dir_all(abandoned.join("layout")).unwrap();
        let lock = std::fs::File::create(abandoned.join(TEMP_LOCK)).unwrap();
        lock.set_modified(old).unwrap();
        // ...but not while younger than SWEEP_AFTER (a push that has not locked it yet).
        let young = base.path().join(format!("{TEMP_PREFIX}young"));
        std::fs::create_dir_all(&young).unwrap();
        std::fs::File::create(young.join(TEMP_LOCK)).unwrap();
        let unlocked = base.path().join(format!("{TEMP_PREFIX}nolock"));
        std::fs::create_dir_all(&unlocked).unwrap();
        sweep_abandoned(base.path());
        assert!(!abandoned.exists());
        assert!(young.exists());
        assert!(unlocked.exists());
    }

    /// A FIFO at a temporary directory's lock file (another user's `mkfifo`, or a link to one)
    /// would block an ordinary open for ever, and every archive push with it: the sweep opens
    /// without blocking and without following links, and leaves alone what is not a regular
    /// file this user owns, in a directory this user owns.
    #[test]
    fn a_fifo_at_a_lock_does_not_block_the_sweep() {
        use rustix::fs::{CWD, FileType, Mode};
        let base = tempfile::tempdir().unwrap();
        let fifo = |path: &Path| {
            rustix::fs::mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(0o666), 0).unwrap()
        };
        let old = std::time::SystemTime::now() - 2 * SWEEP_AFTER;
        let at_lock = base.path().join(format!("{TEMP_PREFIX}fifo"));
        std::fs::create_dir(&at_lock).unwrap();
        fifo(&at_lock.join(TEMP_LOCK));
        let linked = base.path().join(format!("{TEMP_PREFIX}link"));
        std::fs::create_dir(&linked).unwrap();
        let elsewhere = base.path().join("elsewhere");
        fifo(&elsewhere);
        std::os::unix::fs::symlink(&elsewhere, linked.join(TEMP_LOCK)).unwrap();
        // A link to an old, unlocked regular file is not followed either.
        let to_file = base.path().join(format!("{TEMP_PREFIX}tofile"));
        std::fs::create_dir(&to_file).unwrap();
        let file = base.path().join("old-file");
        std::fs::File::create(&file)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::os::unix::fs::symlink(&file, to_file.join(TEMP_LOCK)).unwrap();
        let mut kept = vec![at_lock, linked, to_file];
        // Another user's lock file, or directory (the tests may run as root, who can give
        // them away), old and unlocked: not swept.
        if rustix::process::geteuid().is_root() {
            for (name, chown_dir) in [("theirlock", false), ("theirdir", true)] {
                let dir = base.path().join(format!("{TEMP_PREFIX}{name}"));
                std::fs::create_dir(&dir).unwrap();
                let lock = std::fs::File::create(dir.join(TEMP_LOCK)).unwrap();
                lock.set_modified(old).unwrap();
                let target = if chown_dir {
                    dir.clone()
                } else {
                    dir.join(TEMP_LOCK)
                };
                std::os::unix::fs::chown(&target, Some(65534), Some(65534)).unwrap();
                kept.push(dir);
            }
        }
        let (done, swept) = std::sync::mpsc::channel();
        let at = base.path().to_path_buf();
        std::thread::spawn(move || {
            sweep_abandoned(&at);
            let _ = done.send(());
        });
        swept
            .recv_timeout(Duration::from_secs(20))
            .expect("the sweep hangs on a FIFO at a lock file");
        for dir in kept {
            assert!(dir.exists(), "{} swept", dir.display());
        }
    }
}
