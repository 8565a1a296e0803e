//! `layerlift-convert IN [OUT]`: normalise the layers of an OCI image layout (decode whatever they
//! are, check every diff_id, encode to gzip, zstd or plain, deterministically and on all cores) and
//! convert manifests and indexes between OCI and Docker schema 2.
//!
//! The work is plumbing from the libraries: codecs and encoders from `layerlift-layers`, media types
//! and manifest conversion from `layerlift-manifest`, blobs and `index.json` from `layerlift-layout`.
//! This module walks the images, decides per layer whether to keep or re-encode it, and publishes the
//! result: blobs first (each verified before it is visible), `index.json` last and atomically, then
//! (in place) removes the blobs only the old images used.

use anyhow::{Context, anyhow, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use layerlift_layers::{
    Compression, Encoding, LayerOutput, copy_layer, encode_layer, encode_layer_clamped, sniff,
};
use layerlift_layout::{Layout, LayoutError};
use layerlift_manifest::convert::{
    Format, LayerCompression, convert_index, convert_manifest, drop_compressed_bytes_annotations,
    layer_compression_label, layer_media_type, to_json,
};
use layerlift_manifest::{
    Descriptor, Digest, ImageConfig, Index, Manifest, media_types, parse_json,
};
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, IsTerminal, Read, Seek};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use layerlift_manifest::annotations::{IMAGE_NAME, REF_NAME};
/// Layers up to this size are converted side by side (see `prefetch_small_layers`).
const SMALL_LAYER: u64 = 8 << 20;

/// Command line of `layerlift-convert`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "layerlift-convert",
    version = crate::app::version(),
    about = "Re-encode the layers of an OCI image layout (gzip, zstd or plain; deterministic, on all cores) and convert manifests between OCI and Docker schema 2",
    after_help = "\
Examples:
  layerlift-convert oci-dir                              gzip every layer in place, OCI manifests
  layerlift-convert oci-dir out-dir --compression zstd   write a zstd copy to out-dir
  layerlift-convert oci-dir --format docker              Docker schema 2 manifests, gzip layers
  layerlift-convert oci-dir --image app:1 --json         one image; a JSON summary on stdout
  layerlift-convert image.tar out-dir --compression zstd unpack an archive and convert it

Layers are detected from their bytes (plain tar, gzip, zstd, bzip2, xz) and every layer's
uncompressed digest is checked against its config's diff_id. A layer already in the target
compression is kept byte for byte unless --recompress. The same layer, compression and level give
the same bytes on every run, machine and thread count. Config bytes are never rewritten (except
with --source-date-epoch), so image IDs stay the same. In place, index.json is replaced atomically at the end and blobs only the old
images used are removed. Exit code: 0 done, 1 failed, 2 usage."
)]
pub struct Args {
    /// The OCI image layout to read; or any archive layerlift-unpack reads (`-` for standard
    /// input), which is then unpacked into OUT and converted there.
    pub input: PathBuf,
    /// The OCI image layout to write (created if absent); default: convert IN in place.
    pub output: Option<PathBuf>,
    /// Layer compression to produce.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    /// Compression level: gzip 1-12 (default 1; libdeflate's levels), zstd 1-19 (default 2).
    #[arg(long, value_name = "N")]
    pub level: Option<i32>,
    /// Manifest format: OCI, Docker schema 2, or keep each image's own.
    #[arg(long, value_enum, default_value_t = FormatArg::Oci)]
    pub format: FormatArg,
    /// Only these images: a ref.name as index.json has it (`app:1`, `docker.io/library/app:1`), or
    /// `@N` for the N-th entry of index.json (from 0). Repeatable. Others are left as they are.
    #[arg(long = "image", value_name = "REF|@N")]
    pub images: Vec<String>,
    /// Re-encode layers that are already in the target compression.
    #[arg(long)]
    pub recompress: bool,
    /// Compression threads (default: all cores). The output does not depend on it.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Reproducible builds: clamp every tar entry time (and the config's `created` and history
    /// times) to this many seconds since 1970. Rewrites the layers, their diff_ids and the config:
    /// image IDs change. Foreign layers are left as they are.
    #[arg(long, value_name = "SECONDS")]
    pub source_date_epoch: Option<u64>,
    /// In place, keep the blobs only the old images used.
    #[arg(long)]
    pub keep_old_blobs: bool,
    /// Machine-readable summary (JSON) on standard output.
    #[arg(long)]
    pub json: bool,
    /// No progress or messages on standard error, only errors.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `--compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
    None,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Oci,
    Docker,
    Keep,
}

/// Run `layerlift-convert`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let compression = match args.compression {
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Zstd => Compression::Zstd,
        CompressionArg::None => Compression::None,
    };
    let format = match args.format {
        FormatArg::Oci => Some(Format::Oci),
        FormatArg::Docker => Some(Format::Docker),
        FormatArg::Keep => None,
    };
    if let Err(why) = check_usage(&args, compression) {
        eprintln!("layerlift-convert: error: {why}");
        return Ok(ExitCode::from(crate::exit::USAGE));
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let encoding = Encoding {
        compression,
        level: args.level,
        threads: threads.max(1),
    };
    let started = Instant::now();

    // Not a layout: any archive layerlift-unpack reads, unpacked into OUT, then converted there.
    let is_layout = args.input.join("oci-layout").is_file();
    if !is_layout && args.input.as_os_str() != "-" && !args.input.exists() {
        bail!("{}: no such file or directory", args.input.display());
    }
    let mut unpacked = None;
    let src = if is_layout {
        Layout::open(&args.input)
            .with_context(|| format!("{} (expected an OCI image layout)", args.input.display()))?
    } else {
        let Some(out) = &args.output else {
            eprintln!(
                "layerlift-convert: error: {} is not an OCI image layout; to convert an archive, give OUT",
                args.input.display()
            );
            return Ok(ExitCode::from(crate::exit::USAGE));
        };
        let input = layerlift_archive::Input::from_arg(&args.input.to_string_lossy());
        let (_, added) = layerlift_archive::unpack(&input, out, &args.images)
            .with_context(|| input.display())?;
        unpacked = Some(added);
        Layout::open(out).with_context(|| out.display().to_string())?
    };
    let in_place = match &args.output {
        _ if unpacked.is_some() => true,
        None => true,
        Some(out) => same_dir(&args.input, out),
    };
    let dst_holder;
    let dst = if in_place {
        &src
    } else {
        let out = args
            .output
            .as_ref()
            .expect("not in place means OUT was given");
        dst_holder = Layout::create(out).with_context(|| out.display().to_string())?;
        &dst_holder
    };

    let index = src.index()?;
    let chosen = match &unpacked {
        // What unpack added (it applied --image already).
        Some(added) => (0..index.manifests.len())
            .filter(|&i| added.contains(&index.manifests[i]))
            .collect(),
        None => select(&index, &args.images)?,
    };
    let progress = (!args.quiet && io::stderr().is_terminal()).then(MultiProgress::new);
    let mut conv = Converter {
        src: &src,
        dst,
        in_place,
        encoding,
        recompress: args.recompress,
        epoch: args.source_date_epoch,
        format,
        progress,
        docs: HashMap::new(),
        configs_rewritten: 0,
        layers: HashMap::new(),
        prefetched: HashMap::new(),
        report: Vec::new(),
    };

    let mut converted = Vec::new();
    for &i in &chosen {
        let old = &index.manifests[i];
        let what = entry_name(old, i);
        let new = conv
            .convert_entry(old)
            .with_context(|| format!("image {what}"))?;
        converted.push((i, old.clone(), new));
    }

    // index.json last: every blob it will point at is in place and verified.
    if in_place {
        let changes: Vec<(Descriptor, Descriptor)> = converted
            .iter()
            .map(|(_, old, new)| (old.clone(), new.clone()))
            .collect();
        dst.update_index(|idx: &mut Index| {
            for entry in idx.manifests.iter_mut() {
                if let Some((_, new)) = changes.iter().find(|(old, _)| old == entry) {
                    *entry = new.clone();
                }
            }
            Ok::<(), std::convert::Infallible>(())
        })?
        .unwrap_or_else(|never| match never {});
    } else {
        let news: Vec<Descriptor> = converted.iter().map(|(_, _, new)| new.clone()).collect();
        dst.update_index(|idx: &mut Index| {
            for new in &news {
                idx.manifests.retain(|e| !same_entry(e, new));
                idx.manifests.push(new.clone());
            }
            Ok::<(), std::convert::Infallible>(())
        })?
        .unwrap_or_else(|never| match never {});
    }

    let removed = if in_place && !args.keep_old_blobs {
        let olds: Vec<Descriptor> = converted.iter().map(|(_, old, _)| old.clone()).collect();
        // The conversion is done and published; a failed cleanup only leaves unreferenced blobs.
        // Under the layout's exclusive lock: a concurrent unpack or convert into this layout
        // finishes first (and its index.json then names what it relies on), or waits.
        let removed = src
            .exclusively(|| remove_unreferenced(&src, &olds))
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
        match removed {
            Ok(n) => n,
            Err(e) => {
                eprintln!(
                    "layerlift-convert: warning: could not remove the blobs only the old images used: {e:#}"
                );
                0
            }
        }
    } else {
        0
    };

    let elapsed = started.elapsed();
    let out_dir = args.output.as_deref().unwrap_or(&args.input);
    if args.json {
        let images: Vec<_> = converted
            .iter()
            .map(|(i, old, new)| {
                serde_json::json!({
                    "entry": i,
                    "name": old.annotation(REF_NAME),
                    "from": desc_json(old),
                    "to": desc_json(new),
                    "changed": old.digest != new.digest,
                })
            })
            .collect();
        let out = serde_json::json!({
            "input": args.input.display().to_string(),
            "output": out_dir.display().to_string(),
            "inPlace": in_place,
            "compression": compression.name(),
            "level": if compression == Compression::None { None } else { Some(encoding.effective_level()) },
            "format": format.map(Format::name).unwrap_or("keep"),
            "threads": encoding.threads,
            "images": images,
            "layers": conv.report.iter().map(LayerReport::json).collect::<Vec<_>>(),
            "removedBlobs": removed,
            "sourceDateEpoch": args.source_date_epoch,
            "configsRewritten": conv.configs_rewritten,
            "seconds": elapsed.as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (_, old, new) in &converted {
            match old.annotation(REF_NAME) {
                Some(n) => println!("{} {n}", new.digest),
                None => println!("{}", new.digest),
            }
        }
        if !args.quiet {
            let encoded = conv
                .report
                .iter()
                .filter(|l| l.action == Action::Encoded)
                .count();
            let kept = conv
                .report
                .iter()
                .filter(|l| l.action == Action::Kept)
                .count();
            let foreign = conv
                .report
                .iter()
                .filter(|l| l.action == Action::Foreign)
                .count();
            let mut foreign = if foreign > 0 {
                format!(", {foreign} foreign kept as described")
            } else {
                String::new()
            };
            if conv.configs_rewritten > 0 {
                foreign.push_str(&format!(
                    "; times clamped to {}: {} config(s) rewritten, so the image IDs changed",
                    args.source_date_epoch
                        .and_then(epoch_time)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    conv.configs_rewritten
                ));
            }
            eprintln!(
                "layerlift-convert: {} image(s) into {} in {:.1} s: {} layer(s), {encoded} encoded to {}, {kept} kept{foreign}",
                converted.len(),
                out_dir.display(),
                elapsed.as_secs_f64(),
                conv.report.len(),
                compression.name(),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Usage errors found before touching anything.
fn check_usage(args: &Args, compression: Compression) -> Result<(), String> {
    if args.format == FormatArg::Docker && compression == Compression::None {
        return Err("--format docker cannot hold uncompressed layers: Docker schema 2 has no media type for them; use --format oci, or --compression gzip".into());
    }
    if let Some(level) = args.level {
        let range = Encoding::level_range(compression);
        if compression == Compression::None {
            return Err("--level makes no sense with --compression none".into());
        }
        if !range.contains(&level) {
            return Err(format!(
                "--level {level}: {} levels are {}-{}",
                compression.name(),
                range.start(),
                range.end()
            ));
        }
    }
    if args.threads == Some(0) {
        return Err("--threads must be at least 1".into());
    }
    Ok(())
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn entry_name(d: &Descriptor, i: usize) -> String {
    match d.annotation(REF_NAME).or_else(|| d.annotation(IMAGE_NAME)) {
        Some(n) => format!("{n} (@{i})"),
        None => format!("@{i} {}", d.digest),
    }
}

/// Two index.json entries for the same image name (or the same unnamed content).
fn same_entry(a: &Descriptor, b: &Descriptor) -> bool {
    match (a.annotation(REF_NAME), b.annotation(REF_NAME)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a.digest == b.digest,
        _ => false,
    }
}

/// `docker.io/library/app:1` and `app:1` name the same image.
fn normalise_name(name: &str) -> &str {
    let n = name.strip_prefix("docker.io/").unwrap_or(name);
    n.strip_prefix("library/").unwrap_or(n)
}

/// The index.json entries `selectors` pick (all when there are none), in index order.
fn select(index: &Index, selectors: &[String]) -> anyhow::Result<Vec<usize>> {
    if selectors.is_empty() {
        return Ok((0..index.manifests.len()).collect());
    }
    let mut chosen = BTreeSet::new();
    for sel in selectors {
        if let Some(n) = sel.strip_prefix('@') {
            let n: usize = n
                .parse()
                .map_err(|_| anyhow!("--image {sel}: expected @ followed by a number"))?;
            if n >= index.manifests.len() {
                bail!(
                    "--image {sel}: index.json has {} entries",
                    index.manifests.len()
                );
            }
            chosen.insert(n);
            continue;
        }
        let found: Vec<usize> = index
            .manifests
            .iter()
            .enumerate()
            .filter(|(_, d)| {
                [d.annotation(REF_NAME), d.annotation(IMAGE_NAME)]
                    .into_iter()
                    .flatten()
                    .any(|n| n == sel || normalise_name(n) == normalise_name(sel))
            })
            .map(|(i, _)| i)
            .collect();
        if found.is_empty() {
            let names: Vec<&str> = index
                .manifests
                .iter()
                .filter_map(|d| d.annotation(REF_NAME))
                .collect();
            bail!(
                "--image {sel}: no such image in index.json (names: {})",
                if names.is_empty() {
                    "none; use @N".to_string()
                } else {
                    names.join(", ")
                }
            );
        }
        chosen.extend(found);
    }
    Ok(chosen.into_iter().collect())
}

fn desc_json(d: &Descriptor) -> serde_json::Value {
    serde_json::json!({ "mediaType": d.media_type, "digest": d.digest, "size": d.size })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Stored bytes kept (already in the target compression).
    Kept,
    /// Decoded and encoded to the target.
    Encoded,
    /// Foreign / non-distributable: the descriptor is kept as it says.
    Foreign,
}

#[derive(Debug, Clone)]
struct LayerReport {
    from: Descriptor,
    from_compression: Option<Compression>,
    to: Descriptor,
    diff_id: Digest,
    new_diff_id: Digest,
    action: Action,
    seconds: f64,
}

impl LayerReport {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "from": {
                "mediaType": self.from.media_type,
                "digest": self.from.digest,
                "size": self.from.size,
                "compression": self.from_compression.map(Compression::name),
            },
            "to": desc_json(&self.to),
            "diffId": self.diff_id,
            "newDiffId": (self.new_diff_id != self.diff_id).then_some(self.new_diff_id),
            "action": match self.action {
                Action::Kept => "kept",
                Action::Encoded => "encoded",
                Action::Foreign => "foreign",
            },
            "seconds": self.seconds,
        })
    }
}

/// What a converted layer became (cached by source digest: images share layers).
#[derive(Debug, Clone)]
struct LayerDone {
    /// The diff_id of the layer as stored now (differs from the old one with --source-date-epoch).
    diff_id: Digest,
    media_type: String,
    digest: Digest,
    size: u64,
    reencoded: bool,
}

struct Converter<'a> {
    src: &'a Layout,
    dst: &'a Layout,
    in_place: bool,
    encoding: Encoding,
    recompress: bool,
    /// `--source-date-epoch`.
    epoch: Option<u64>,
    /// `None`: keep each document's format.
    format: Option<Format>,
    /// Progress bars (standard error is a terminal and not --quiet).
    progress: Option<MultiProgress>,
    /// Manifests and indexes already converted: source digest → new (mediaType, digest, size).
    docs: HashMap<Digest, (String, Digest, u64)>,
    /// Configs rewritten by --source-date-epoch.
    configs_rewritten: usize,
    layers: HashMap<(Digest, Format), LayerDone>,
    /// Report lines of layers converted ahead (small ones), added when the manifest reaches them.
    prefetched: HashMap<(Digest, Format), LayerReport>,
    report: Vec<LayerReport>,
}

impl Converter<'_> {
    /// Convert what `desc` points at; returns the descriptor of the result (its annotations and
    /// platform kept).
    fn convert_entry(&mut self, desc: &Descriptor) -> anyhow::Result<Descriptor> {
        if let Some((media_type, digest, size)) = self.docs.get(&desc.digest) {
            return Ok(Descriptor {
                media_type: media_type.clone(),
                digest: *digest,
                size: *size,
                ..desc.clone()
            });
        }
        let new = if media_types::is_index(&desc.media_type) {
            self.convert_index_blob(desc)
                .with_context(|| format!("index {}", desc.digest))?
        } else if media_types::is_manifest(&desc.media_type) {
            self.convert_manifest_blob(desc)
                .with_context(|| format!("manifest {}", desc.digest))?
        } else {
            // Not something we convert (an artifact, an unknown type): carried over unchanged.
            self.copy_blob(&desc.digest)?;
            desc.clone()
        };
        self.docs
            .insert(desc.digest, (new.media_type.clone(), new.digest, new.size));
        Ok(new)
    }

    fn convert_index_blob(&mut self, desc: &Descriptor) -> anyhow::Result<Descriptor> {
        let bytes = self.src.read_blob(&desc.digest)?;
        let index: Index = parse_json("image index", &bytes)?;
        let from = Format::of(&desc.media_type).unwrap_or(Format::Oci);
        let to = self.format.unwrap_or(from);
        let mut children = Vec::with_capacity(index.manifests.len());
        for child in &index.manifests {
            let what = match &child.platform {
                Some(p) => format!("{p} manifest {}", child.digest),
                None => format!("entry {}", child.digest),
            };
            children.push(self.convert_entry(child).with_context(|| what)?);
        }
        if children == index.manifests && to == from {
            self.copy_doc(&bytes, &desc.digest)?;
            return Ok(desc.clone());
        }
        let new = convert_index(&index, to, children);
        self.write_doc(desc, to.index_media_type(), &to_json(&new))
    }

    fn convert_manifest_blob(&mut self, desc: &Descriptor) -> anyhow::Result<Descriptor> {
        let bytes = self.src.read_blob(&desc.digest)?;
        let manifest: Manifest = parse_json("image manifest", &bytes)?;
        // An image: an image config, and layers that are all tar layers. Anything else is an
        // artifact (signature, SBOM, attestation, build metadata) and is carried over unchanged.
        let is_image = (manifest.config.media_type == media_types::OCI_CONFIG
            || manifest.config.media_type == media_types::DOCKER_CONFIG)
            && manifest
                .layers
                .iter()
                .all(|l| layer_compression_label(&l.media_type).is_some());
        if !is_image {
            self.copy_doc(&bytes, &desc.digest)?;
            self.copy_blob(&manifest.config.digest)?;
            for l in &manifest.layers {
                self.copy_blob(&l.digest)?;
            }
            return Ok(desc.clone());
        }
        let from = Format::of(&desc.media_type).unwrap_or(Format::Oci);
        let to = self.format.unwrap_or(from);

        let config_bytes = self
            .src
            .read_blob(&manifest.config.digest)
            .with_context(|| format!("config {}", manifest.config.digest))?;
        let config: ImageConfig = parse_json("image config", &config_bytes)
            .with_context(|| format!("config {}", manifest.config.digest))?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            bail!(
                "the manifest lists {} layers but its config {} has {} diff_ids",
                manifest.layers.len(),
                manifest.config.digest,
                diff_ids.len()
            );
        }
        self.prefetch_small_layers(&manifest.layers, diff_ids, to)?;
        let mut layers = Vec::with_capacity(manifest.layers.len());
        let mut new_diff_ids = Vec::with_capacity(manifest.layers.len());
        for (n, (layer, diff_id)) in manifest.layers.iter().zip(diff_ids).enumerate() {
            let (new, new_diff_id) = self
                .convert_layer(layer, diff_id, to)
                .with_context(|| format!("layer {n} ({})", layer.digest))?;
            layers.push(new);
            new_diff_ids.push(new_diff_id);
        }
        let mut new = convert_manifest(&manifest, to, layers);
        let rewritten = match self.epoch {
            Some(epoch) => rewrite_config(&config_bytes, &new_diff_ids, epoch)
                .with_context(|| format!("config {}", manifest.config.digest))?,
            None => None,
        };
        match rewritten {
            // --source-date-epoch: new diff_ids and times, so a new config and image ID.
            Some(bytes) => {
                new.config.digest = self.dst.write_blob(&bytes)?;
                new.config.size = bytes.len() as u64;
                self.configs_rewritten += 1;
            }
            // The config is copied as its bytes: the image ID does not change.
            None => self.copy_doc(&config_bytes, &manifest.config.digest)?,
        }
        let unchanged =
            to == from && new.layers == manifest.layers && new.config == manifest.config;
        if unchanged {
            // Bytes we did not create are not re-serialised.
            self.copy_doc(&bytes, &desc.digest)?;
            return Ok(desc.clone());
        }
        self.write_doc(desc, to.manifest_media_type(), &to_json(&new))
    }

    /// Store a new document and describe it like `old` (annotations, platform kept).
    fn write_doc(
        &self,
        old: &Descriptor,
        media_type: &str,
        bytes: &[u8],
    ) -> anyhow::Result<Descriptor> {
        let digest = self.dst.write_blob(bytes)?;
        Ok(Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: bytes.len() as u64,
            ..old.clone()
        })
    }

    /// Make sure a small document we already read (and verified) is in the destination.
    fn copy_doc(&self, bytes: &[u8], digest: &Digest) -> anyhow::Result<()> {
        if !self.dst.has_blob(digest) {
            let written = self.dst.write_blob(bytes)?;
            debug_assert_eq!(written, *digest);
        }
        Ok(())
    }

    /// Copy a blob we do not interpret into the destination, verifying it; absent blobs are fine
    /// (a layout may omit referenced blobs).
    fn copy_blob(&self, digest: &Digest) -> anyhow::Result<()> {
        if self.in_place || self.dst.has_blob(digest) || !self.src.has_blob(digest) {
            return Ok(());
        }
        let mut file = self.src.open_blob(digest)?;
        let mut w = self.dst.blob_writer()?;
        io::copy(&mut file, &mut w).with_context(|| format!("copying blob {digest}"))?;
        w.commit(Some(digest))?;
        Ok(())
    }

    fn convert_layer(
        &mut self,
        layer: &Descriptor,
        diff_id: &Digest,
        format: Format,
    ) -> anyhow::Result<(Descriptor, Digest)> {
        let started = Instant::now();
        if media_types::is_non_distributable(&layer.media_type) {
            let label =
                layer_compression_label(&layer.media_type).unwrap_or(LayerCompression::Gzip);
            self.copy_blob(&layer.digest)?;
            let to = Descriptor {
                media_type: layer_media_type(format, label, true)?.to_string(),
                ..layer.clone()
            };
            self.report.push(LayerReport {
                from: layer.clone(),
                from_compression: None,
                to: to.clone(),
                diff_id: *diff_id,
                new_diff_id: *diff_id,
                action: Action::Foreign,
                seconds: started.elapsed().as_secs_f64(),
            });
            return Ok((to, *diff_id));
        }
        if let Some(done) = self.layers.get(&(layer.digest, format)) {
            let mut to = Descriptor {
                media_type: done.media_type.clone(),
                digest: done.digest,
                size: done.size,
                ..layer.clone()
            };
            if done.reencoded {
                drop_compressed_bytes_annotations(&mut to);
            }
            let new_diff_id = done.diff_id;
            if let Some(report) = self.prefetched.remove(&(layer.digest, format)) {
                self.report.push(report);
            }
            return Ok((to, new_diff_id));
        }
        let (done, report, to) = self.transcode(layer, diff_id, format, &self.encoding)?;
        let new_diff_id = done.diff_id;
        self.layers.insert((layer.digest, format), done);
        self.report.push(report);
        Ok((to, new_diff_id))
    }

    /// Re-encode or check one layer into the destination: what it became, its report line, and its
    /// new descriptor. Takes `&self` only, so that small layers can run side by side.
    fn transcode(
        &self,
        layer: &Descriptor,
        diff_id: &Digest,
        format: Format,
        encoding: &Encoding,
    ) -> anyhow::Result<(LayerDone, LayerReport, Descriptor)> {
        let started = Instant::now();
        let mut file = self.src.open_blob(&layer.digest)?;
        let path = self.src.blob_path(&layer.digest);
        let from = sniff_file(&mut file).with_context(|| path.display().to_string())?;
        let target = encoding.compression;
        let keep = self.epoch.is_none() && !self.recompress && from == target;
        let mut new_diff_id = *diff_id;
        let bar = self.bar(layer, from, target, keep);
        let reader = bar.wrap_read(file);

        let (output, action) = if keep {
            let output = if self.dst.has_blob(&layer.digest) {
                let o = copy_layer(reader, io::sink())?;
                LayerOutput {
                    out: None,
                    diff_id: o.diff_id,
                    stored_digest: o.stored_digest,
                    stored_size: o.stored_size,
                }
            } else {
                let o = copy_layer(reader, self.dst.blob_writer()?)?;
                LayerOutput {
                    out: Some(o.out),
                    diff_id: o.diff_id,
                    stored_digest: o.stored_digest,
                    stored_size: o.stored_size,
                }
            };
            (output, Action::Kept)
        } else if let Some(epoch) = self.epoch {
            let o = encode_layer_clamped(reader, self.dst.blob_writer()?, encoding, epoch)?;
            new_diff_id = o.new_diff_id;
            (
                LayerOutput {
                    out: Some(o.layer.out),
                    diff_id: o.layer.diff_id,
                    stored_digest: o.layer.stored_digest,
                    stored_size: o.layer.stored_size,
                },
                Action::Encoded,
            )
        } else {
            let o = encode_layer(reader, self.dst.blob_writer()?, encoding)?;
            (
                LayerOutput {
                    out: Some(o.out),
                    diff_id: o.diff_id,
                    stored_digest: o.stored_digest,
                    stored_size: o.stored_size,
                },
                Action::Encoded,
            )
        };
        bar.finish_and_clear();

        // The stored bytes are what the descriptor says, and their tar is what the config says.
        if output.stored_digest != layer.digest {
            return Err(LayoutError::DigestMismatch {
                path,
                expected: layer.digest,
                actual: output.stored_digest,
            }
            .into());
        }
        if output.stored_size != layer.size {
            bail!(
                "{}: the descriptor says {} bytes, the blob has {}",
                path.display(),
                layer.size,
                output.stored_size
            );
        }
        output.diff_id.check(&layer.digest, diff_id)?;

        let (digest, size) = match output.out {
            Some(w) => {
                let staged = w.finish()?;
                let (digest, size) = (staged.digest(), staged.size());
                staged.commit()?;
                (digest, size)
            }
            None => (layer.digest, layer.size),
        };
        let stored_as = if keep { from } else { target };
        let label = match stored_as {
            Compression::Gzip => LayerCompression::Gzip,
            Compression::Zstd => LayerCompression::Zstd,
            _ => LayerCompression::None,
        };
        let reencoded = !keep;
        let mut to = Descriptor {
            media_type: layer_media_type(format, label, false)?.to_string(),
            digest,
            size,
            ..layer.clone()
        };
        if reencoded {
            drop_compressed_bytes_annotations(&mut to);
        }
        let done = LayerDone {
            diff_id: new_diff_id,
            media_type: to.media_type.clone(),
            digest,
            size,
            reencoded,
        };
        let report = LayerReport {
            from: layer.clone(),
            from_compression: Some(from),
            to: to.clone(),
            diff_id: *diff_id,
            new_diff_id,
            action,
            seconds: started.elapsed().as_secs_f64(),
        };
        Ok((done, report, to))
    }

    /// Small layers keep one encoder thread busy for a moment only: convert them side by side, one
    /// thread each, before the big ones get all the threads one at a time (the bytes do not depend
    /// on the thread count). Results land in the layer cache; errors surface here.
    fn prefetch_small_layers(
        &mut self,
        layers: &[Descriptor],
        diff_ids: &[Digest],
        format: Format,
    ) -> anyhow::Result<()> {
        let threads = self.encoding.threads;
        let mut seen = std::collections::HashSet::new();
        let todo: Vec<(usize, &Descriptor, &Digest)> = layers
            .iter()
            .zip(diff_ids)
            .enumerate()
            .filter(|(_, (l, _))| {
                !media_types::is_non_distributable(&l.media_type)
                    && l.size <= SMALL_LAYER
                    && !self.layers.contains_key(&(l.digest, format))
                    && seen.insert(l.digest)
            })
            .map(|(n, (l, d))| (n, l, d))
            .collect();
        if threads < 2 || todo.len() < 2 {
            return Ok(());
        }
        let one = Encoding {
            threads: 1,
            ..self.encoding
        };
        let next = AtomicUsize::new(0);
        let this = &*self;
        type Done = (usize, anyhow::Result<(LayerDone, LayerReport, Descriptor)>);
        let mut results: Vec<Done> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads.min(todo.len()))
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        while let Some(&(n, l, d)) = todo.get(next.fetch_add(1, Ordering::Relaxed))
                        {
                            out.push((n, this.transcode(l, d, format, &one)));
                        }
                        out
                    })
                })
                .collect();
            // A worker that panicked leaves its layers to the sequential pass.
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        });
        results.sort_by_key(|(n, _)| *n);
        for (n, result) in results {
            let (done, report, _) =
                result.with_context(|| format!("layer {n} ({})", layers[n].digest))?;
            self.layers.insert((layers[n].digest, format), done);
            self.prefetched.insert((layers[n].digest, format), report);
        }
        Ok(())
    }

    /// A progress bar for one layer (hidden unless standard error is a terminal).
    fn bar(
        &self,
        layer: &Descriptor,
        from: Compression,
        to: Compression,
        keep: bool,
    ) -> ProgressBar {
        let Some(multi) = &self.progress else {
            return ProgressBar::hidden();
        };
        let bar = multi.add(ProgressBar::new(layer.size));
        let style = ProgressStyle::with_template(
            "{prefix} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        let what = if keep {
            format!("{} checking", from.name())
        } else {
            format!("{} → {}", from.name(), to.name())
        };
        bar.set_prefix(format!("{} {what}", layer.digest.short()));
        bar
    }
}

/// Detect a blob's compression from its first bytes, then rewind.
fn sniff_file(file: &mut File) -> io::Result<Compression> {
    let mut prefix = [0u8; layerlift_layers::SNIFF_LEN];
    let mut n = 0;
    while n < prefix.len() {
        match file.read(&mut prefix[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    file.rewind()?;
    Ok(sniff(&prefix[..n]))
}

/// Every blob reachable from `roots` in `layout` (manifests, indexes, configs, layers, subjects).
/// Blobs that are absent are listed but not followed.
fn reachable(layout: &Layout, roots: &[Descriptor]) -> anyhow::Result<BTreeSet<Digest>> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<Descriptor> = roots.to_vec();
    while let Some(d) = todo.pop() {
        if !seen.insert(d.digest) {
            continue;
        }
        let is_index = media_types::is_index(&d.media_type);
        let is_manifest = media_types::is_manifest(&d.media_type);
        if !(is_index || is_manifest) || !layout.has_blob(&d.digest) {
            continue;
        }
        let bytes = layout.read_blob(&d.digest)?;
        if is_index {
            let idx: Index = parse_json("image index", &bytes)?;
            todo.extend(idx.manifests);
            todo.extend(idx.subject);
        } else {
            let m: Manifest = parse_json("image manifest", &bytes)?;
            todo.push(m.config);
            todo.extend(m.layers);
            todo.extend(m.subject);
        }
    }
    Ok(seen)
}

/// After an in-place conversion: delete the blobs that the old entries used and that nothing in
/// the current index.json reaches. Blobs the old images did not use are never touched. Run under
/// [`Layout::exclusively`], so that index.json is the last word of every writer.
fn remove_unreferenced(layout: &Layout, old_entries: &[Descriptor]) -> anyhow::Result<usize> {
    let old = reachable(layout, old_entries)?;
    let index = layout.index()?;
    let new = reachable(layout, &index.manifests)?;
    let mut removed = 0;
    for digest in old.difference(&new) {
        let path = layout.blob_path(digest);
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| path.display().to_string()),
        }
    }
    Ok(removed)
}

/// The config with `diff_ids` and its `created` and history times clamped to `epoch`; `None`
/// when nothing changes (then the original bytes, and the image ID, stay).
fn rewrite_config(
    bytes: &[u8],
    diff_ids: &[Digest],
    epoch: u64,
) -> anyhow::Result<Option<Vec<u8>>> {
    let mut config: serde_json::Value =
        serde_json::from_slice(bytes).context("the config is not JSON")?;
    let mut changed = false;
    let ids: Vec<serde_json::Value> = diff_ids
        .iter()
        .map(|d| serde_json::Value::String(d.to_string()))
        .collect();
    if let Some(slot) = config.get_mut("rootfs").and_then(|r| r.get_mut("diff_ids"))
        && slot.as_array() != Some(&ids)
    {
        *slot = serde_json::Value::Array(ids);
        changed = true;
    }
    if let Some(created) = config.get_mut("created") {
        changed |= clamp_time(created, epoch);
    }
    if let Some(history) = config.get_mut("history").and_then(|h| h.as_array_mut()) {
        for entry in history {
            if let Some(created) = entry.get_mut("created") {
                changed |= clamp_time(created, epoch);
            }
        }
    }
    Ok(changed.then(|| serde_json::to_vec(&config)).transpose()?)
}

/// Replace an RFC 3339 time later than `epoch` by `epoch`; true if it did. A value that is not an
/// RFC 3339 time is left as it is.
fn clamp_time(value: &mut serde_json::Value, epoch: u64) -> bool {
    let Some(time) = value
        .as_str()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
    else {
        return false;
    };
    // An epoch past what a timestamp can hold (year 9999) is later than every time.
    let Some(epoch) = epoch_time(epoch) else {
        return false;
    };
    if time > epoch {
        *value = serde_json::Value::String(epoch.to_string());
        true
    } else {
        false
    }
}

/// `epoch` (seconds since 1970) as a timestamp; `None` past year 9999.
fn epoch_time(epoch: u64) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_second(i64::try_from(epoch).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_later_than_the_epoch_are_clamped() {
        let clamp = |s: &str, epoch: u64| {
            let mut v = serde_json::Value::String(s.into());
            clamp_time(&mut v, epoch).then(|| v.as_str().unwrap().to_string())
        };
        assert_eq!(clamp("2001-09-09T01:46:40Z", 1_000_000_000), None);
        assert_eq!(
            clamp("2001-09-09T01:46:40.000000001Z", 1_000_000_000).as_deref(),
            Some("2001-09-09T01:46:40Z")
        );
        assert_eq!(
            clamp("2001-09-09T03:46:41+02:00", 1_000_000_000).as_deref(),
            Some("2001-09-09T01:46:40Z")
        );
        assert_eq!(
            clamp("2024-02-29T12:00:00.000Z", 0).as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        assert_eq!(clamp("2024-02-29T12:00:00Z", u64::MAX), None);
        // Not times: left alone.
        assert_eq!(clamp("yesterday", 0), None);
        assert_eq!(clamp("2024-13-45T99:99:99Z", 0), None);
    }

    #[test]
    fn config_rewrite() {
        let config = br#"{"created":"2023-11-14T22:13:20.5Z","history":[{"created":"1999-01-01T00:00:00Z"},{"created":"2023-01-01T00:00:00Z"}],"rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}"#;
        let same = [Digest::of(b"")];
        assert_eq!(rewrite_config(config, &same, 2_000_000_000).unwrap(), None);
        let out = rewrite_config(config, &same, 1_000_000_000)
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["created"], "2001-09-09T01:46:40Z");
        assert_eq!(v["history"][0]["created"], "1999-01-01T00:00:00Z");
        assert_eq!(v["history"][1]["created"], "2001-09-09T01:46:40Z");
        let other = [Digest::of(b"x")];
        let out = rewrite_config(config, &other, 2_000_000_000)
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["rootfs"]["diff_ids"][0], Digest::of(b"x").to_string());
        assert!(v.get("architecture").is_none(), "no fields invented");
    }
}
