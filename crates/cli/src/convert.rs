//! `layerlift-convert IN [OUT]`: the command line of [`layerlift_convert`]. Arguments become
//! [`Options`], progress bars (on a terminal) follow the engine's [`Event`]s, and the [`layerlift_convert::Report`]
//! is printed: one `DIGEST NAME` line per image on standard output and a summary on standard
//! error, or the report as JSON with `--json`.

use anyhow::anyhow;
use indicatif::{MultiProgress, ProgressBar};
use layerlift_convert::{
    Compression, ConvertError, Event, Format, LayerId, Observer, Options, OptionsError,
};
use layerlift_layers::LevelError;
use std::collections::HashMap;
use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

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
  layerlift-convert oci-dir --index app:1                the images named app:1 (one per platform)
                                                         become one multi-platform image

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
    /// Instead of converting: replace the images named NAME (one per platform, e.g. unpacked from
    /// several single-platform archives) by one multi-platform image, an OCI image index (a
    /// Docker manifest list with --format docker) listing each image's manifest as it is, with
    /// the platform its config names. Prints the index's digest and NAME.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with_all = ["output", "images", "recompress", "source_date_epoch", "level", "threads", "compression"]
    )]
    pub index: Option<String>,
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

impl From<CompressionArg> for Compression {
    fn from(c: CompressionArg) -> Self {
        match c {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::None => Compression::None,
        }
    }
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
    if let Some(name) = &args.index {
        return index(&args, name);
    }
    let options = Options {
        compression: args.compression.into(),
        level: args.level,
        format: match args.format {
            FormatArg::Oci => Some(Format::Oci),
            FormatArg::Docker => Some(Format::Docker),
            FormatArg::Keep => None,
        },
        images: args.images.clone(),
        recompress: args.recompress,
        threads: args.threads,
        source_date_epoch: args.source_date_epoch,
        keep_old_blobs: args.keep_old_blobs,
    };
    if let Err(why) = options.validate() {
        eprintln!("layerlift-convert: error: {}", usage_message(&why));
        return Ok(ExitCode::from(crate::exit::USAGE));
    }
    let bars = Bars {
        multi: (!args.quiet && io::stderr().is_terminal()).then(MultiProgress::new),
        bars: Mutex::default(),
    };
    let report =
        match layerlift_convert::convert(&args.input, args.output.as_deref(), &options, &bars) {
            Ok(report) => report,
            Err(e @ ConvertError::ArchiveNeedsOutput { .. }) => {
                eprintln!("layerlift-convert: error: {e}");
                return Ok(ExitCode::from(crate::exit::USAGE));
            }
            Err(ConvertError::Select(e)) => return Err(anyhow!("--image {e}")),
            Err(e) => return Err(e.into()),
        };
    if let Some(e) = &report.cleanup_error {
        eprintln!(
            "layerlift-convert: warning: could not remove the blobs only the old images used: {}",
            crate::exit::one_line(e)
        );
    }
    if args.json {
        // Through a Value: its keys come out sorted.
        let out = serde_json::to_value(&report)?;
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for image in &report.images {
            match &image.name {
                Some(n) => println!("{} {n}", image.to.digest),
                None => println!("{}", image.to.digest),
            }
        }
        if !args.quiet {
            eprintln!("layerlift-convert: {report}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `layerlift-convert LAYOUT --index NAME`.
fn index(args: &Args, name: &str) -> anyhow::Result<ExitCode> {
    let format = match args.format {
        FormatArg::Oci => Some(Format::Oci),
        FormatArg::Docker => Some(Format::Docker),
        FormatArg::Keep => None,
    };
    let report = layerlift_convert::assemble_index(&args.input, name, format)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(&report)?)?
        );
    } else {
        println!("{} {}", report.digest, report.name);
        if !args.quiet {
            let platforms: Vec<String> = report
                .platforms
                .iter()
                .map(|(p, d)| format!("{p} {d}"))
                .collect();
            eprintln!(
                "layerlift-convert: {} is now an index ({}) of {}",
                report.name,
                report.media_type,
                platforms.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--level`'s error, as convert and push say it.
pub fn level_message(e: &LevelError) -> String {
    match e {
        LevelError::WithoutCompression => "--level makes no sense with --compression none".into(),
        LevelError::OutOfRange {
            level,
            compression,
            min,
            max,
        } => format!(
            "--level {level}: {} levels are {min}-{max}",
            compression.name()
        ),
    }
}

fn usage_message(why: &OptionsError) -> String {
    match why {
        OptionsError::UncompressedDocker => "--format docker cannot hold uncompressed layers: Docker schema 2 has no media type for them; use --format oci, or --compression gzip".into(),
        OptionsError::Level(e) => level_message(e),
        OptionsError::ZeroThreads => "--threads must be at least 1".into(),
    }
}

/// One progress bar per layer being read, when standard error is a terminal.
struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<LayerId, ProgressBar>>,
}

impl Observer for Bars {
    fn event(&self, event: &Event) {
        let Some(multi) = &self.multi else {
            return;
        };
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::LayerStarted {
                id,
                digest,
                size,
                from,
                to,
                keep,
            } => {
                let what = if *keep {
                    format!("{} checking", from.name())
                } else {
                    format!("{} → {}", from.name(), to.name())
                };
                let template = "{prefix} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}";
                let prefix = format!("{} {what}", digest.short());
                let bar = crate::bars::add(multi, *size, template, prefix);
                bars.insert(*id, bar);
            }
            Event::LayerProgress { id, bytes } => {
                if let Some(bar) = bars.get(id) {
                    bar.inc(*bytes);
                }
            }
            Event::LayerFinished { id } => {
                if let Some(bar) = bars.remove(id) {
                    bar.finish_and_clear();
                }
            }
        }
    }
}
