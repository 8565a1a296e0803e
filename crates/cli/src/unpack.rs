//! `layerlift-unpack ARCHIVE|- DIR`: read any saved-image archive into an OCI image layout, or
//! `--list` what it holds.

mod listing;

use crate::convert::CompressionArg;
use anyhow::Context;
use layerlift_archive::Input;
use layerlift_layers::Compression;
use layerlift_manifest::Descriptor;
use std::path::PathBuf;
use std::process::ExitCode;

/// Command line of `layerlift-unpack`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "layerlift-unpack",
    version = crate::app::version(),
    about = "Read a saved image archive (docker save, podman, skopeo, oci-archive…) into an OCI image layout",
    after_help = "\
Examples:
  layerlift-unpack image.tar oci-dir                 every image of the archive
  docker save app:1 | layerlift-unpack - oci-dir     from a pipe, in one pass
  layerlift-unpack --image app:1 both.tar oci-dir    one image of several (also @0, @1…)
  layerlift-unpack --list image.tar.gz               what the archive holds, and what is wrong with it

The archive may be plain, gzip, zstd, bzip2 or xz compressed; it may also be an OCI layout or dir:
directory. Unpacking into an existing layout adds to it. Exit code: 0 done, 1 failed, 2 usage."
)]
pub struct Args {
    /// The archive (`-` for standard input), or a directory (OCI layout, dir: transport).
    pub archive: String,
    /// The OCI layout directory to write (created if absent). Not used with --list.
    #[arg(required_unless_present = "list")]
    pub dir: Option<PathBuf>,
    /// Only this image: a name as the archive writes it (`app:1`, `docker.io/library/app:1`), the
    /// image's digest, or `@N` for the N-th image (from 0). Repeatable.
    #[arg(long = "image", value_name = "NAME|@N")]
    pub images: Vec<String>,
    /// From images that are multi-platform indexes, take only this platform's manifest
    /// (`os/arch[/variant]`, e.g. `linux/arm64`). Its blobs must be in the archive.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = crate::app::parse_platform)]
    pub platform: Option<String>,
    /// Compress layers the archive stores uncompressed, on the way in (one pass: no uncompressed
    /// copy is written). Manifests naming them are generated anew; configs are kept. Default: store
    /// layers as the archive has them (also `none`).
    #[arg(long, value_enum)]
    pub compression: Option<CompressionArg>,
    /// Print what the archive holds (format, images, tags, config, layers, symlinks, defects);
    /// write nothing.
    #[arg(long)]
    pub list: bool,
    /// Machine-readable output (JSON) on standard output.
    #[arg(long)]
    pub json: bool,
    /// No messages on standard error, only errors.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Run `layerlift-unpack`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let input = Input::from_arg(&args.archive);
    let name = input.display();
    if args.list {
        let (info, _) = layerlift_archive::read(&input, None).with_context(|| name.clone())?;
        let chosen =
            layerlift_archive::select(&info, &args.images).with_context(|| name.clone())?;
        let listing = layerlift_archive::Listing {
            name: &name,
            info: &info,
            chosen: &chosen,
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&listing)?);
        } else {
            print!("{}", listing::Text(listing));
        }
        let fatal = chosen.iter().any(|&n| info.images[n].is_fatal());
        return Ok(if fatal {
            ExitCode::from(crate::exit::FAILURE)
        } else {
            ExitCode::SUCCESS
        });
    }
    let dir = args.dir.expect("clap requires DIR without --list");
    let options = layerlift_archive::Options {
        images: args.images.clone(),
        platform: args.platform.clone(),
        encoding: args
            .compression
            .map(Compression::from)
            .filter(|c| *c != Compression::None)
            .map(|compression| layerlift_layers::Encoding {
                compression,
                level: None,
                threads: std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
            }),
        ..Default::default()
    };
    let (info, added) =
        layerlift_archive::unpack_with(&input, &dir, &options).with_context(|| name.clone())?;
    if args.json {
        let entries: Vec<_> = added.iter().map(entry_json).collect();
        let out = serde_json::json!({
            "archive": name,
            "layout": dir.display().to_string(),
            "format": info.format,
            "origin": info.origin,
            "added": entries,
            "defects": info.defects,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for d in &added {
            match d.annotation(layerlift_manifest::annotations::REF_NAME) {
                Some(n) => println!("{} {n}", d.digest),
                None => println!("{}", d.digest),
            }
        }
        if !args.quiet {
            for d in &info.defects {
                eprintln!("layerlift-unpack: note: {}", d.message);
            }
            let images: std::collections::BTreeSet<_> = added.iter().map(|d| d.digest).collect();
            eprintln!(
                "layerlift-unpack: {} image(s) from {name} ({}) into {}",
                images.len(),
                info.origin.describe(),
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn entry_json(d: &Descriptor) -> serde_json::Value {
    serde_json::json!({
        "digest": d.digest,
        "mediaType": d.media_type,
        "size": d.size,
        "name": d.annotation(layerlift_manifest::annotations::REF_NAME),
    })
}
