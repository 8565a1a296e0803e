//! `layerlift-pack LAYOUT OUT|-`: the command line of [`layerlift_pack`]. Arguments become
//! [`Options`]; a progress bar (on a terminal) follows the engine's [`Event`]s; the
//! [`layerlift_pack::Report`] is printed: one `IMAGE-ID NAME…` line per image on standard output
//! and a summary on standard error, or the report as JSON with `--json` (only when OUT is a file:
//! with `-` standard output is the archive).

use indicatif::{MultiProgress, ProgressBar};
use layerlift_pack::{ArchiveFormat, Event, Observer, Options, PackError, Step};
use std::io::{self, IsTerminal};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

/// Command line of `layerlift-pack`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "layerlift-pack",
    version = crate::app::version(),
    about = "Write an image archive from an OCI image layout: a docker-archive for `docker load` and `podman load`, or an oci-archive",
    after_help = "\
Examples:
  layerlift-pack oci-dir image.tar                   every image, for docker load / podman load
  layerlift-pack oci-dir - | docker load             straight into the daemon
  layerlift-pack oci-dir app.tar --image app:1 --tag app:debug
  layerlift-pack oci-dir image.tar --platform linux/arm64
  layerlift-pack oci-dir image.oci.tar --format oci  an oci-archive (skopeo, podman, containerd)

Config bytes are copied exactly: docker load gives each image the ID it had. Each blob is written
once; the same layout gives the same archive byte for byte. With --format docker, gzip and
uncompressed layers are kept and zstd layers are written decompressed (docker load before Docker
23 cannot read zstd). Everything is checked before the first byte is written; OUT is written to a
temp file and renamed at the end, so a failed pack leaves no file. Exit code: 0 done, 1 failed,
2 usage."
)]
pub struct Args {
    /// The OCI image layout to read.
    pub layout: PathBuf,
    /// The archive to write (replaced if it exists), or `-` for standard output.
    #[arg(value_name = "OUT")]
    pub output: PathBuf,
    /// Archive format: docker (`docker load`, `podman load`) or oci (an oci-archive).
    #[arg(long, value_enum, default_value_t = FormatArg::Docker)]
    pub format: FormatArg,
    /// Only these images: a name as index.json has it (`app:1`, `docker.io/library/app:1`), a
    /// digest, or `@N` for the N-th entry of index.json (from 0). Repeatable. Default: all.
    #[arg(long = "image", value_name = "REF|@N")]
    pub images: Vec<String>,
    /// Name the image with this instead of the layout's names (its RepoTags, or its index.json
    /// names with --format oci). Repeatable; only when one image is packed.
    #[arg(long = "tag", value_name = "NAME:TAG")]
    pub tags: Vec<String>,
    /// --format docker: from a multi-platform image, take this platform (`os/arch[/variant]`).
    /// Default: the machine's.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = crate::app::parse_platform)]
    pub platform: Option<String>,
    /// Machine-readable summary (JSON) on standard output (not with OUT `-`).
    #[arg(long)]
    pub json: bool,
    /// No progress or messages on standard error, only errors.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Docker,
    Oci,
}

/// Run `layerlift-pack`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout && args.json {
        return Err(crate::exit::usage(
            "--json prints to standard output, which OUT `-` uses for the archive; give OUT a file",
        ));
    }
    if to_stdout && io::stdout().is_terminal() {
        return Err(crate::exit::usage(
            "refusing to write an archive to a terminal; redirect standard output or give OUT a file",
        ));
    }
    let options = Options {
        format: match args.format {
            FormatArg::Docker => ArchiveFormat::Docker,
            FormatArg::Oci => ArchiveFormat::Oci,
        },
        images: args.images.clone(),
        tags: args.tags.clone(),
        platform: args.platform.clone(),
    };
    if let Err(why) = options.validate() {
        return Err(crate::exit::usage(why.to_string()));
    }
    let bar = Bar {
        multi: (!args.quiet && io::stderr().is_terminal()).then(MultiProgress::new),
        bar: Mutex::default(),
    };
    let layout = args.layout.display().to_string();
    let result = if to_stdout {
        // Standard output as a file (its descriptor duplicated): blobs are copied into it by
        // the kernel. Nothing else is printed there while the archive is.
        let stdout = io::stdout().lock();
        let out = std::fs::File::from(stdout.as_fd().try_clone_to_owned()?);
        layerlift_pack::pack_to_stream(&args.layout, &out, &options, &bar)
    } else {
        layerlift_pack::pack_to_file(&args.layout, &args.output, &options, &bar)
    };
    bar.done();
    let report = match result {
        Ok(r) => r,
        Err(PackError::Options(e)) => return Err(crate::exit::usage(e.to_string())),
        // These name the layout or the output file already.
        Err(
            e @ (PackError::NoSuchLayout { .. }
            | PackError::NotALayout { .. }
            | PackError::OpenLayout { .. }
            | PackError::Empty { .. }
            | PackError::Select { .. }
            | PackError::Output { .. }),
        ) => return Err(e.into()),
        Err(e @ PackError::Write(_)) if to_stdout => {
            return Err(anyhow::Error::new(e).context("standard output"));
        }
        Err(e) => return Err(anyhow::Error::new(e).context(layout)),
    };
    if args.json {
        let out = serde_json::to_value(&report)?;
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if !to_stdout {
            for image in &report.images {
                let id = image.config.unwrap_or(image.digest);
                if image.names.is_empty() {
                    println!("{id}");
                } else {
                    println!("{id} {}", image.names.join(" "));
                }
            }
        }
        if !args.quiet {
            eprintln!("layerlift-pack: {report}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One byte-counting bar for the whole pack, when standard error is a terminal.
struct Bar {
    multi: Option<MultiProgress>,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bar {
    fn done(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Bar {
    fn event(&self, event: &Event) {
        let Some(multi) = &self.multi else {
            return;
        };
        let mut bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Started { bytes, .. } => {
                if let Some(old) = bar.take() {
                    old.finish_and_clear();
                }
                let template = "{prefix} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}";
                *bar = Some(crate::bars::add(multi, *bytes, template, "packing".into()));
            }
            // A layer checked before writing (decoded against its diff_id) gets a bar of its own
            // until the whole archive's starts.
            Event::BlobStarted {
                digest,
                size,
                step: Step::Measure,
            } => {
                if let Some(old) = bar.take() {
                    old.finish_and_clear();
                }
                let template = "{prefix} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}";
                let prefix = format!("{} checking", digest.short());
                *bar = Some(crate::bars::add(multi, *size, template, prefix));
            }
            Event::BlobStarted { digest, step, .. } => {
                let what = match step {
                    Step::Decompress => " decompressing",
                    _ => "",
                };
                if let Some(b) = bar.as_ref() {
                    b.set_prefix(format!("{}{what}", digest.short()));
                }
            }
            Event::Progress { bytes } => {
                if let Some(b) = bar.as_ref() {
                    b.inc(*bytes);
                }
            }
            Event::BlobFinished { .. } => {}
        }
    }
}
