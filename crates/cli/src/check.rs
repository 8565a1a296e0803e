//! `layerlift check DIR`: print what [`layerlift_archive::verify_layout`] finds in an OCI image
//! layout, as lines or JSON, and exit 1 when the layout is invalid.

use anyhow::Context;
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
    let v = layerlift_archive::verify_layout(&args.dir).with_context(|| name.clone())?;
    if args.json {
        let mut out = serde_json::to_value(&v)?;
        out["layout"] = name.into();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for n in &v.notes {
            eprintln!("note: {n}");
        }
        for p in &v.problems {
            println!("{name}: {p}");
        }
        if v.ok {
            println!(
                "{name}: ok: {} image(s), {} blob(s) verified",
                v.images, v.blobs
            );
        }
    }
    Ok(if v.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::FAILURE)
    })
}
