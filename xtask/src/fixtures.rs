//! `cargo xtask fixtures`: archives the end-to-end tests use, generated with real tools into
//! `target/fixtures/` (or `$LAYERLIFT_FIXTURES_DIR`).
//!
//! Every fixture is built into a temporary sibling and renamed into place, so an interrupted run never
//! leaves a half-written fixture behind, and a fixture that exists is never rebuilt (delete it, or
//! pass `--force`, to rebuild). `target/fixtures/MANIFEST.md` lists what each file is; keep
//! docs/development.md in step with [`plan`].

use crate::synthetic;
use crate::util::{self, build_once, run_filter, run_quiet};
use anyhow::{Context, Result, bail};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Where the generated fixtures go.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("LAYERLIFT_FIXTURES_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => util::xtask_out_dir().join("fixtures"),
    }
}

/// `cargo xtask fixtures [--force]`
pub fn run(args: &[String]) -> Result<()> {
    let mut force = false;
    for a in args {
        match a.as_str() {
            "--force" => force = true,
            "-h" | "--help" => {
                println!(
                    "cargo xtask fixtures [--force]\n\nGenerate test archives with real tools into {}.\n\
                     --force  delete and rebuild everything",
                    fixtures_dir().display()
                );
                return Ok(());
            }
            other => bail!("fixtures: unknown argument `{other}`"),
        }
    }
    let out = fixtures_dir();
    if force {
        util::remove_any(&out)?;
    }
    generate(&out)
}

/// Writes a fixture at the given (temporary) path.
type Builder = Box<dyn Fn(&Path) -> Result<()>>;

/// One generated fixture.
pub struct Fixture {
    /// Path relative to the fixtures directory.
    rel: String,
    /// What it is and what it exercises (goes into MANIFEST.md).
    about: String,
    /// Writes the fixture at the given (temporary) path.
    build: Builder,
}

pub fn fixture(
    rel: impl Into<String>,
    about: impl Into<String>,
    build: impl Fn(&Path) -> Result<()> + 'static,
) -> Fixture {
    Fixture {
        rel: rel.into(),
        about: about.into(),
        build: Box::new(build),
    }
}

/// Generate every fixture that does not exist yet.
pub fn generate(out: &Path) -> Result<()> {
    let real = util::real_tool_fixtures_dir();
    if !real.is_dir() {
        bail!(
            "real-tool fixtures not found at {} (they are part of the repository: \
             tests/fixtures/PROVENANCE.md)",
            real.display()
        );
    }
    let real = real
        .canonicalize()
        .with_context(|| format!("resolve {}", real.display()))?;
    let tools = [
        "gzip", "pigz", "zstd", "bzip2", "xz", "skopeo", "umoci", "tar",
    ];
    let missing: Vec<_> = tools.iter().filter(|t| !util::have(t)).collect();
    if !missing.is_empty() {
        bail!(
            "fixtures need {missing:?} on PATH; run scripts/install-test-deps.sh (as root) first"
        );
    }
    fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;

    let start = Instant::now();
    let plan = plan(&real, out)?;
    let (mut built, mut kept) = (0, 0);
    for f in &plan {
        let dest = out.join(&f.rel);
        if build_once(&dest, |tmp| (f.build)(tmp))? {
            built += 1;
        } else {
            kept += 1;
        }
    }
    write_manifest(out, &real, &plan)?;
    println!(
        "xtask fixtures: {} in {} ({built} built, {kept} already there) in {:.1}s",
        plan.len(),
        out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Every `.tar` file under the real-tool fixtures, sorted.
fn real_tool_tars(real: &Path) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, acc: &mut Vec<PathBuf>) -> Result<()> {
        for e in fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
            let e = e?;
            let p = e.path();
            let ty = e.file_type()?;
            if ty.is_dir() {
                walk(&p, acc)?;
            } else if ty.is_file() && p.extension().is_some_and(|x| x == "tar") {
                acc.push(p);
            }
        }
        Ok(())
    }
    let mut acc = Vec::new();
    walk(real, &mut acc)?;
    acc.sort();
    Ok(acc)
}

/// The outer compressions `docker load` accepts, each made by the real tool.
const WRAPPERS: [(&str, &str, &[&str]); 4] = [
    ("gz", "gzip", &["-n", "-c"]),
    ("zst", "zstd", &["-q", "-c", "--no-progress"]),
    ("bz2", "bzip2", &["-c"]),
    ("xz", "xz", &["-c", "-T1"]),
];

fn plan(real: &Path, out: &Path) -> Result<Vec<Fixture>> {
    let mut plan = Vec::new();

    // 1. Every real-tool tar fixture wrapped in each outer compression.
    let tars = real_tool_tars(real)?;
    let mut names = std::collections::BTreeSet::new();
    for tar in &tars {
        let base = tar.file_name().unwrap().to_string_lossy().into_owned();
        if !names.insert(base.clone()) {
            bail!("two real-tool fixtures are named {base}; compressed/ needs unique names");
        }
        let rel_src = tar.strip_prefix(real).unwrap().display().to_string();
        for (ext, tool, args) in WRAPPERS {
            let src = tar.clone();
            plan.push(fixture(
                format!("compressed/{base}.{ext}"),
                format!("`{tool} {}` of `tests/fixtures/{rel_src}`", args.join(" ")),
                move |dest| run_filter(tool, args, &src, dest),
            ));
        }
    }
    // Multi-member gzip and multi-frame zstd: the tar split in two, each half compressed alone and
    // the results concatenated (what `cat a.gz b.gz` or pigz --independent pipelines produce).
    // A reader that stops after the first member sees a truncated archive.
    let link = real.join("google-go-containerregistry/pkg/v1/tarball/testdata/test_link.tar");
    let multi = real.join("generated-local/podman-4.3.1/podman-docker-archive-multi.tar");
    for src in [&link, &multi] {
        let base = src.file_name().unwrap().to_string_lossy().into_owned();
        for (ext, tool, args) in [
            ("gz", "gzip", &["-n", "-c"][..]),
            ("zst", "zstd", &["-q", "-c", "--no-progress"][..]),
        ] {
            let src = src.clone();
            plan.push(fixture(
                format!("compressed/{base}.multi.{ext}"),
                format!(
                    "`{base}` split at half its size, each half `{tool} {}`'d alone, \
                     concatenated: a multi-member {ext} stream",
                    args.join(" ")
                ),
                move |dest| concat_compressed(tool, args, &src, dest),
            ));
        }
    }
    // pigz (parallel gzip, as people pipe `docker save | pigz`): same format, different block layout.
    for src in [&link, &multi] {
        let base = src.file_name().unwrap().to_string_lossy().into_owned();
        let s = src.clone();
        plan.push(fixture(
            format!("compressed/{base}.pigz.gz"),
            format!("`pigz -n -c` of `{base}`"),
            move |dest| run_filter("pigz", ["-n", "-c"], &s, dest),
        ));
    }

    // Damaged streams (bad input): each must fail with a one-line error, exit 1.
    for (ext, tool, args) in WRAPPERS {
        let src = link.clone();
        plan.push(fixture(
            format!("bad/test_link.tar.truncated.{ext}"),
            format!(
                "**bad**: `{tool} {}` of `test_link.tar`, cut to 60 % of its length \
                 (truncated compressed stream)",
                args.join(" ")
            ),
            move |dest| {
                run_filter(tool, args, &src, dest)?;
                cut(dest, 60)
            },
        ));
    }
    let src = link.clone();
    plan.push(fixture(
        "bad/test_link.tar.corrupt.gz",
        "**bad**: `gzip -n -c` of `test_link.tar` with one byte of the deflate data inverted \
         (corrupt data or CRC mismatch)",
        move |dest| {
            run_filter("gzip", ["-n", "-c"], &src, dest)?;
            let mut b = fs::read(dest)?;
            let i = b.len() / 2;
            b[i] = !b[i];
            fs::write(dest, b).map_err(Into::into)
        },
    ));
    let src = link.clone();
    plan.push(fixture(
        "bad/test_link.tar.trailing-garbage.gz",
        "**bad**: `gzip -n -c` of `test_link.tar` followed by 100 bytes that are not gzip \
         (gzip(1) only warns \"trailing garbage ignored\")",
        move |dest| {
            run_filter("gzip", ["-n", "-c"], &src, dest)?;
            let mut b = fs::read(dest)?;
            b.extend((0..100u8).map(|i| i.wrapping_mul(37)));
            fs::write(dest, b).map_err(Into::into)
        },
    ));
    let src = link.clone();
    plan.push(fixture(
        "bad/test_link.truncated.tar",
        "**bad**: plain `test_link.tar` cut to 60 % of its length (mid-entry, no end-of-archive blocks)",
        move |dest| {
            fs::copy(&src, dest)?;
            fs::set_permissions(dest, fs::Permissions::from_mode(0o644))?;
            cut(dest, 60)
        },
    ));
    // Malformed archives built in memory: truncations, bombs, escapes, bad JSON and digests.
    plan.extend(crate::bad_fixtures::plan());

    // 2. skopeo (containers/image) conversions of real-tool docker-archives.
    let dive = real.join("wagoodman-dive/.data/test-docker-image.tar");
    let link_s = link.display().to_string();
    let dive_s = dive.display().to_string();
    let img1 = format!("docker-archive:{link_s}:bazel/v1/tarball:test_image_1");
    plan.push(skopeo(
        "skopeo/dive-oci-archive.tar",
        "skopeo 1.9 `docker-archive:` → `oci-archive:` of dive's test-docker-image.tar (14 layers, \
         whiteouts): layers recompressed to gzip, OCI media types, ref.name `dive/test:latest`",
        &[],
        format!("docker-archive:{dive_s}"),
        |d| format!("oci-archive:{d}:dive/test:latest"),
    ));
    plan.push(skopeo(
        "skopeo/test_image_1-oci",
        "skopeo `docker-archive:` → `oci:` directory of test_link.tar's `bazel/v1/tarball:test_image_1`: \
         gzip layers, ref.name `test_image_1`",
        &[],
        img1.clone(),
        |d| format!("oci:{d}:test_image_1"),
    ));
    plan.push(skopeo(
        "skopeo/test_image_1-oci-uncompressed",
        "same, with `--dest-oci-accept-uncompressed-layers`: layers stay `…layer.v1.tar`, digest == diff_id",
        &["--dest-oci-accept-uncompressed-layers"],
        img1.clone(),
        |d| format!("oci:{d}:test_image_1"),
    ));
    plan.push(skopeo(
        "skopeo/test_image_1-oci-zstd",
        "same, with `--dest-compress-format zstd`: layers `…layer.v1.tar+zstd` written by a real zstd encoder",
        &["--dest-compress", "--dest-compress-format", "zstd"],
        img1.clone(),
        |d| format!("oci:{d}:test_image_1"),
    ));
    let oci1 = out.join("skopeo/test_image_1-oci").display().to_string();
    plan.push(skopeo(
        "skopeo/from-oci-docker-archive.tar",
        "skopeo `oci:` → `docker-archive:` (the oci dir above): a containers/image docker-archive \
         written from gzip layers (decompressed to `<diffid>.tar`, legacy `<id>/layer.tar` symlinks), \
         RepoTags `example.com/ns/test_image_1:v1`",
        &[],
        format!("oci:{oci1}:test_image_1"),
        |d| format!("docker-archive:{d}:example.com/ns/test_image_1:v1"),
    ));
    plan.push(skopeo(
        "skopeo/dive-dir",
        "skopeo `docker-archive:` → `dir:` of dive's test-docker-image.tar: flat `manifest.json` + \
         bare-hex blobs + `version`; uncompressed layers labelled `…diff.tar.gzip`",
        &[],
        format!("docker-archive:{dive_s}"),
        |d| format!("dir:{d}"),
    ));
    plan.push(skopeo(
        "skopeo/test_image_1-dir-compressed",
        "skopeo `docker-archive:` → `dir:` with `--dest-compress`: gzip layers",
        &["--dest-compress"],
        img1,
        |d| format!("dir:{d}"),
    ));

    // 3. umoci: an OCI layout built from scratch, then the same image through skopeo and tar.
    plan.push(fixture(
        "umoci/layout",
        "OCI layout made by umoci 0.4: `umoci init`, `umoci new`, three `umoci insert` layers \
         (files, a symlink, an executable; then a whiteout of /etc/removed-later) and `umoci config`; \
         ref.name `latest`",
        umoci_layout,
    ));
    let layout = out.join("umoci/layout");
    let layout_s = layout.display().to_string();
    let l = layout.clone();
    plan.push(fixture(
        "umoci/umoci-oci-archive.tar",
        "the umoci layout tarred with GNU tar (`--sort=name`, epoch mtimes, `./` prefixes): an \
         oci-archive whose blobs are umoci's bytes",
        move |dest| {
            run_quiet(
                Command::new("tar")
                    .args([
                        "--sort=name",
                        "--mtime=@0",
                        "--owner=0",
                        "--group=0",
                        "--numeric-owner",
                        "-cf",
                    ])
                    .arg(dest)
                    .arg("-C")
                    .arg(&l)
                    .arg("."),
            )
            .map(drop)
        },
    ));
    plan.push(skopeo(
        "umoci/umoci-docker-archive.tar",
        "skopeo `oci:` (the umoci layout) → `docker-archive:`, RepoTags `localhost/umoci/test:latest`",
        &[],
        format!("oci:{layout_s}:latest"),
        |d| format!("docker-archive:{d}:localhost/umoci/test:latest"),
    ));

    // 4. Synthetic saves for the engines no public fixture covers (docs/formats.md).
    plan.push(fixture(
        "synthetic/containerd-store-save.tar",
        synthetic::CONTAINERD_ABOUT,
        synthetic::containerd_store_save,
    ));
    plan.push(fixture(
        "synthetic/containerd-store-save-attest.tar",
        synthetic::CONTAINERD_ATTEST_ABOUT,
        synthetic::containerd_store_save_attest,
    ));
    plan.push(fixture(
        "synthetic/docker25-graphdriver-save.tar",
        synthetic::DOCKER25_ABOUT,
        synthetic::docker25_graphdriver_save,
    ));
    Ok(plan)
}

/// A `skopeo copy` fixture; `dest` turns the temporary path into the destination reference.
fn skopeo(
    rel: &str,
    about: &str,
    flags: &'static [&'static str],
    src: String,
    dest: impl Fn(&str) -> String + 'static,
) -> Fixture {
    fixture(rel, about, move |tmp| {
        let d = dest(&tmp.display().to_string());
        run_quiet(
            Command::new("skopeo")
                .args(["--insecure-policy", "copy", "--quiet"])
                .args(flags)
                .arg(&src)
                .arg(d),
        )
        .map(drop)
    })
}

/// Truncate a file to `percent` % of its length.
fn cut(path: &Path, percent: u64) -> Result<()> {
    let f = fs::OpenOptions::new().write(true).open(path)?;
    let len = f.metadata()?.len();
    f.set_len(len * percent / 100)?;
    Ok(())
}

/// Split `src` in two, compress each half with `tool`, concatenate.
fn concat_compressed(tool: &str, args: &[&str], src: &Path, dest: &Path) -> Result<()> {
    let bytes = fs::read(src).with_context(|| format!("read {}", src.display()))?;
    let (a, b) = bytes.split_at(bytes.len() / 2);
    let dir = dest.parent().unwrap();
    let mut out = Vec::new();
    for (i, half) in [a, b].iter().enumerate() {
        let part = dir.join(format!(
            ".part{i}-{}",
            dest.file_name().unwrap().to_string_lossy()
        ));
        let packed = dir.join(format!(
            ".part{i}-{}.c",
            dest.file_name().unwrap().to_string_lossy()
        ));
        fs::write(&part, half)?;
        let r = run_filter(tool, args, &part, &packed);
        let _ = fs::remove_file(&part);
        r?;
        out.extend(fs::read(&packed)?);
        fs::remove_file(&packed)?;
    }
    fs::write(dest, out).with_context(|| format!("write {}", dest.display()))
}

/// Build an OCI layout with umoci at `dest`.
fn umoci_layout(dest: &Path) -> Result<()> {
    let parent = dest.parent().unwrap();
    let src = parent.join(".umoci-src");
    util::remove_any(&src)?;
    let r = (|| -> Result<()> {
        // Source trees for the layers.
        let etc = src.join("etc");
        fs::create_dir_all(etc.join("layerlift"))?;
        fs::write(etc.join("layerlift/config.toml"), "greeting = \"hello\"\n")?;
        fs::write(
            etc.join("removed-later"),
            "this file is whited out by layer 3\n",
        )?;
        std::os::unix::fs::symlink("layerlift/config.toml", etc.join("layerlift.toml"))?;
        let app = src.join("app");
        fs::create_dir_all(app.join("data/empty-dir"))?;
        fs::write(
            app.join("run.sh"),
            "#!/bin/sh\necho layerlift umoci fixture\n",
        )?;
        fs::set_permissions(app.join("run.sh"), fs::Permissions::from_mode(0o755))?;
        fs::write(
            app.join("data/blob.bin"),
            (0..=255u8).cycle().take(100_000).collect::<Vec<_>>(),
        )?;

        let image = format!("{}:latest", dest.display());
        let rootless: &[&str] = if util::is_root() {
            &[]
        } else {
            &["--rootless"]
        };
        run_quiet(Command::new("umoci").args(["init", "--layout"]).arg(dest))?;
        run_quiet(Command::new("umoci").args(["new", "--image", &image]))?;
        for (from, to) in [(&etc, "/etc"), (&app, "/app")] {
            run_quiet(
                Command::new("umoci")
                    .arg("insert")
                    .args(rootless)
                    .args(["--history.created_by", &format!("umoci insert {to}")])
                    .args(["--image", &image])
                    .arg(from)
                    .arg(to),
            )?;
        }
        run_quiet(Command::new("umoci").arg("insert").args(rootless).args([
            "--image",
            &image,
            "--whiteout",
            "/etc/removed-later",
        ]))?;
        run_quiet(Command::new("umoci").args([
            "config",
            "--image",
            &image,
            "--config.cmd",
            "/app/run.sh",
            "--config.workingdir",
            "/app",
            "--config.label",
            "org.opencontainers.image.title=layerlift-umoci-fixture",
            "--os",
            "linux",
            "--architecture",
            "amd64",
        ]))?;
        // umoci leaves the superseded manifests/configs as unreferenced blobs; drop them so the
        // layout holds exactly one image.
        run_quiet(Command::new("umoci").args(["gc", "--layout"]).arg(dest))?;
        Ok(())
    })();
    let _ = util::remove_any(&src);
    r
}

/// Rewrite `MANIFEST.md` for what is in `out` now.
fn write_manifest(out: &Path, real: &Path, plan: &[Fixture]) -> Result<()> {
    let mut s = String::from(
        "# Generated fixtures\n\nWritten by `cargo xtask fixtures` (xtask/src/fixtures.rs); see \
         docs/development.md. Delete a file or run `cargo xtask fixtures --force` to rebuild.\n\n",
    );
    s.push_str(&format!(
        "Real-tool fixtures read from `{}`.\n\n",
        real.display()
    ));
    s.push_str("| path | size | what |\n|---|---|---|\n");
    for f in plan {
        let size = util::du(&out.join(&f.rel));
        s.push_str(&format!(
            "| `{}` | {} | {} |\n",
            f.rel,
            util::human_bytes(size),
            f.about.replace('|', "\\|")
        ));
    }
    let path = out.join("MANIFEST.md");
    let tmp = out.join(".tmp-MANIFEST.md");
    fs::write(&tmp, s)?;
    fs::rename(&tmp, &path)?;
    Ok(())
}
