//! `layerlift-unpack ARCHIVE|- DIR`: read any saved-image archive into an OCI image layout, or
//! `--list` what it holds.

use anyhow::Context;
use layerlift_archive::{ArchiveInfo, Defect, ImageInfo, Input, ManifestInfo};
use layerlift_manifest::Descriptor;
use std::fmt::Write as _;
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
    /// layers as the archive has them.
    #[arg(long, value_enum, value_name = "gzip|zstd")]
    pub compression: Option<Compress>,
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

/// `--compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compress {
    Gzip,
    Zstd,
}

/// Run `layerlift-unpack`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let input = Input::from_arg(&args.archive);
    let name = input.display();
    if args.list {
        let (info, _) = layerlift_archive::read(&input, None).with_context(|| name.clone())?;
        let chosen =
            layerlift_archive::select(&info, &args.images).with_context(|| name.clone())?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&list_json(&info, &chosen))?
            );
        } else {
            print!("{}", list_text(&name, &info, &chosen));
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
        encoding: args.compression.map(|c| layerlift_layers::Encoding {
            compression: match c {
                Compress::Gzip => layerlift_layers::Compression::Gzip,
                Compress::Zstd => layerlift_layers::Compression::Zstd,
            },
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

fn list_json(info: &ArchiveInfo, chosen: &[usize]) -> serde_json::Value {
    let images: Vec<&ImageInfo> = chosen.iter().map(|&n| &info.images[n]).collect();
    serde_json::json!({
        "format": info.format,
        "origin": info.origin,
        "era": info.origin.describe(),
        "compression": info.compression.name(),
        "entries": info.entries,
        "images": images,
        "links": info.links.iter().map(|l| serde_json::json!({
            "path": l.path,
            "target": l.target,
            "kind": l.kind,
            "resolvesTo": l.resolves_to.as_ref().ok(),
            "error": l.resolves_to.as_ref().err(),
        })).collect::<Vec<_>>(),
        "defects": info.defects,
    })
}

fn list_text(name: &str, info: &ArchiveInfo, chosen: &[usize]) -> String {
    let mut o = String::new();
    let outer = match info.compression.name() {
        "none" => String::new(),
        c => format!(", {c}-compressed"),
    };
    let _ = writeln!(o, "{name}: {}{outer}", info.format.name());
    let _ = writeln!(o, "  written by: {}", info.origin.describe());
    let _ = writeln!(
        o,
        "  {} entries, {} image(s), {} link(s)",
        info.entries,
        info.images.len(),
        info.links.len()
    );
    for &n in chosen {
        let img = &info.images[n];
        let _ = writeln!(o);
        let names = if img.names.is_empty() {
            "(untagged)".to_string()
        } else {
            img.names.join(", ")
        };
        let _ = writeln!(o, "image @{}: {names}", img.position);
        let _ = writeln!(
            o,
            "  {} {} ({})",
            img.descriptor.media_type,
            img.descriptor.digest,
            indicatif::HumanBytes(img.descriptor.size)
        );
        if let Some(p) = &img.parent {
            let _ = writeln!(o, "  parent: {p}");
        }
        for m in &img.manifests {
            list_manifest(&mut o, img, m);
        }
        list_defects(&mut o, "  ", &img.defects);
    }
    if !info.links.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "links:");
        for l in &info.links {
            let to = match &l.resolves_to {
                Ok(p) if *p == l.target => String::new(),
                Ok(p) => format!("  (= {p})"),
                Err(e) => format!("  (broken: {e})"),
            };
            let _ = writeln!(o, "  {} -> {}  [{}]{to}", l.path, l.target, l.kind);
        }
    }
    if !info.defects.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "archive:");
        list_defects(&mut o, "  ", &info.defects);
    }
    o
}

fn list_manifest(o: &mut String, img: &ImageInfo, m: &ManifestInfo) {
    let platform = m.platform.as_deref().unwrap_or("platform unknown");
    let indent = if img.manifests.len() > 1 || m.digest != img.descriptor.digest {
        let state = if m.present {
            ""
        } else {
            "  (not in the archive)"
        };
        let _ = writeln!(
            o,
            "  manifest {platform}: {} {}{state}",
            m.media_type, m.digest
        );
        "    "
    } else {
        let _ = writeln!(o, "  platform: {platform}");
        "  "
    };
    if let Some(c) = &m.config {
        let _ = writeln!(
            o,
            "{indent}config {} ({}) {}",
            c.digest,
            indicatif::HumanBytes(c.size),
            c.media_type
        );
    }
    if !m.layers.is_empty() {
        let total: u64 = m.layers.iter().map(|l| l.descriptor.size).sum();
        let _ = writeln!(
            o,
            "{indent}layers: {} ({})",
            m.layers.len(),
            indicatif::HumanBytes(total)
        );
    }
    for (i, l) in m.layers.iter().enumerate() {
        let path = l.path.as_deref().unwrap_or("-");
        let via = match &l.resolved {
            Some(r) => format!(" -> {r} (symlink)"),
            None => String::new(),
        };
        let state = if l.present { "" } else { "  NOT IN ARCHIVE" };
        let _ = writeln!(o, "{indent}  #{i} {path}{via}{state}");
        let unc = l
            .uncompressed_size
            .map(|s| format!(", {} uncompressed", indicatif::HumanBytes(s)))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "{indent}     {} ({}{unc}, {})",
            l.descriptor.digest,
            indicatif::HumanBytes(l.descriptor.size),
            l.compression
        );
        if let Some(d) = &l.diff_id
            && *d != l.descriptor.digest
        {
            let _ = writeln!(o, "{indent}     diff_id {d}");
        }
    }
}

fn list_defects(o: &mut String, indent: &str, defects: &[Defect]) {
    for d in defects {
        let tag = if d.fatal { "ERROR" } else { "note" };
        let _ = writeln!(o, "{indent}{tag}: {}", d.message);
    }
}
