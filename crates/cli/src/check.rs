//! `layerlift check DIR`: verify an OCI image layout — its structure, every blob against its name,
//! and everything index.json reaches (descriptors' digests and sizes, image layers against their
//! configs' diff_ids). What the crash-safety tests use to tell a valid layout from a broken one.

use anyhow::Context;
use layerlift_archive::Input;
use layerlift_layout::Layout;
use std::path::PathBuf;
use std::process::ExitCode;

/// Command line of `layerlift check`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "layerlift-check",
    version = crate::app::version(),
    about = "Verify an OCI image layout: structure, every blob's digest, every image's layers against its config",
    after_help = "Exit code: 0 the layout is valid, 1 it is not (each problem on its own line), 2 usage."
)]
pub struct Args {
    /// The OCI image layout directory.
    pub dir: PathBuf,
    /// Machine-readable result (JSON) on standard output.
    #[arg(long)]
    pub json: bool,
}

/// Run `layerlift check`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let name = args.dir.display().to_string();
    Layout::open(&args.dir).with_context(|| name.clone())?;
    let (info, scan) = layerlift_archive::read(&Input::Path(args.dir.clone()), None)
        .with_context(|| name.clone())?;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut blobs = 0;
    for (path, file) in &scan.files {
        let Some(hex) = path.strip_prefix("blobs/sha256/") else {
            // A blob under another algorithm's directory cannot be verified: say so.
            if let Some((algorithm, _)) = path
                .strip_prefix("blobs/")
                .and_then(|rest| rest.split_once('/'))
            {
                problems.push(format!(
                    "{path}: digest algorithm {algorithm} is not supported (layerlift verifies \
                     sha256 only), so this blob is not verified"
                ));
            }
            continue;
        };
        blobs += 1;
        if file.digest.hex() != hex {
            problems.push(format!(
                "{path}: content is {}, not what its name says",
                file.digest
            ));
        }
    }
    for d in &info.defects {
        notes.push(d.message.clone());
    }
    for img in &info.images {
        let label = layerlift_archive::label(img);
        for d in &img.defects {
            let line = format!("{label}: {}", d.message);
            if d.fatal {
                problems.push(line)
            } else {
                notes.push(line)
            }
        }
    }
    if args.json {
        let out = serde_json::json!({
            "layout": name,
            "ok": problems.is_empty(),
            "images": info.images.len(),
            "blobs": blobs,
            "problems": problems,
            "notes": notes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for n in &notes {
            eprintln!("note: {n}");
        }
        for p in &problems {
            println!("{name}: {p}");
        }
        if problems.is_empty() {
            println!(
                "{name}: ok: {} image(s), {blobs} blob(s) verified",
                info.images.len()
            );
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::FAILURE)
    })
}
