//! `layerlift-push SOURCE DEST [--tag T]…`: push the images of an OCI image layout (or of any
//! archive `layerlift-unpack` reads) to a registry.
//!
//! Order: every blob (configs and layers, `--jobs` at a time; HEAD first, then a mount from
//! `--mount-from` or from a repository this run already wrote, else an upload), then manifests
//! children first (image manifests before the indexes that list them), then tags. Finally every tag
//! is read back and must point at the pushed digest: exit code 0 means the registry holds it all.
//! An archive pushed to one repository has its layers uploaded while it is still being read, each
//! as soon as it is in the temporary layout ([`upload`], [`open_source`]); nothing else is pushed
//! before the whole archive has been read.
//!
//! Output: stdout gets one `REGISTRY/REPO:TAG@sha256:…` line per pushed tag (`--json`: one JSON
//! event per line instead); progress bars go to stderr on a terminal only; `-q` silences it.

mod cache;
mod plan;
mod progress;
mod reuse;
mod sessions;
mod upload;

use crate::exit::usage;
use anyhow::{Context, bail};
use layerlift_archive::catalog::CatalogLayer;
use layerlift_layout::Layout;
use layerlift_manifest::Digest;
use layerlift_registry::{
    Client, Credential, Reference, RetryPolicy, Scope, TransportOptions, UploadOptions, credentials,
};
use plan::{Plan, RepoPlan};
use progress::Output;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Command line of `layerlift-push`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "layerlift-push",
    version = crate::app::version(),
    about = "Push the images of an OCI image layout (or a saved-image archive) to a registry",
    after_help = "\
Examples:
  layerlift-push oci-dir registry.example.com/team/app:1.0
  layerlift-push oci-dir 127.0.0.1:5000/app --tag 1.0 --tag latest --digest-file app.digest
  layerlift-push image.tar registry.example.com/app:1.0       an archive, unpacked on the way
  echo \"$TOKEN\" | layerlift-push -u ci --password-stdin oci-dir ghcr.io/org/app:1
  layerlift-push --all oci-dir registry.example.com/mirror    every image, under its own tag

Credentials: --creds, --username with --password-stdin, --authfile, REGISTRY_AUTH_FILE,
containers auth.json, Docker's config.json (DOCKER_CONFIG) and its credential helpers.
Registries on 127.0.0.0/8 are tried over HTTPS, then plain HTTP (like Docker).
Exit code: 0 when every tag points at the pushed digest, 1 on failure, 2 on usage errors."
)]
pub struct Args {
    /// An OCI image layout directory, or a saved-image archive (`-` for standard input).
    pub source: String,
    /// Destination `HOST[:PORT]/REPOSITORY[:TAG]` (Docker Hub names are normalised).
    pub dest: String,
    /// Also tag the image as TAG (repeatable). Without any tag, DEST's tag or `latest`.
    #[arg(short, long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Everything else (boxed: keeps the `layerlift` subcommand enum small).
    #[command(flatten)]
    pub opts: Box<Options>,
}

/// Options of `layerlift-push` besides SOURCE, DEST and --tag.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Push only this image of SOURCE: its name (`org.opencontainers.image.ref.name`), full
    /// name, digest, or `@N` for the N-th entry of index.json. Repeatable; several different
    /// images are each pushed under their own name, as with --all.
    #[arg(long = "image", value_name = "NAME|DIGEST|@N")]
    pub images: Vec<String>,
    /// Push every image of SOURCE, each under its own name retargeted to DEST's registry and
    /// repository prefix.
    #[arg(long, conflicts_with = "images")]
    pub all: bool,
    /// Credentials as USER:PASSWORD (prefer --password-stdin: arguments are visible to others).
    #[arg(long, value_name = "USER:PASSWORD", conflicts_with = "username")]
    pub creds: Option<String>,
    /// User name; the password is read from standard input (--password-stdin).
    #[arg(short, long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password (or token) from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Credentials file (containers auth.json or Docker config.json format), searched first.
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Trust this CA certificate (PEM), in addition to the public roots (repeatable); a
    /// self-signed server certificate given here is trusted as it is.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// Directory with `<host[:port]>/*.crt` CA files and a `*.cert` + `*.key` client certificate
    /// (default: /etc/docker/certs.d, /etc/containers/certs.d, ~/.config/containers/certs.d).
    #[arg(long = "certs-dir", value_name = "DIR")]
    pub certs_dirs: Vec<PathBuf>,
    /// Do not verify the registry's own TLS certificate (other hosts, such as a token server,
    /// still are).
    #[arg(long)]
    pub insecure: bool,
    /// Talk plain HTTP to the registry.
    #[arg(long)]
    pub plain_http: bool,
    /// Try to mount blobs from this repository of the same registry first (repeatable).
    #[arg(long = "mount-from", value_name = "REPOSITORY")]
    pub mount_from: Vec<String>,
    /// Upload in chunks of this size (PATCH), e.g. `16MiB`. Default: one PUT per blob.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub chunk_size: Option<u64>,
    /// Blobs larger than this are uploaded in chunks (of --chunk-size, default 64MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_single_upload: Option<u64>,
    /// Blobs uploaded in parallel (and blobs asked about at once when planning a re-push).
    #[arg(short, long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Attempts per request before giving up (1 = no retries).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub retries: u32,
    /// Give up retrying one operation after this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub retry_max_time: u64,
    /// Write the pushed digest(s) to FILE, one per line.
    #[arg(long, value_name = "FILE")]
    pub digest_file: Option<PathBuf>,
    /// One JSON event per line on stdout (blob skipped/mounted/uploaded/retried, manifest, tag,
    /// result) instead of the plain output.
    #[arg(long)]
    pub json: bool,
    /// No progress or messages on stderr, only errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// For an archive SOURCE: compress the layers it stores uncompressed, while reading it (one
    /// pass; no uncompressed copy is written; the bytes are the same as `layerlift-convert`'s).
    /// Layers the archive already stores compressed are pushed as they are. `none` pushes every
    /// layer as the archive stores it. An OCI layout SOURCE is always pushed as it is.
    #[arg(long, value_enum, default_value_t = crate::convert::CompressionArg::Gzip)]
    pub compression: crate::convert::CompressionArg,
    /// Push only this platform (`os/arch[/variant]`) of a multi-platform image: its manifest,
    /// tagged as the image would be (e.g. a containerd save that holds one platform of several).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = crate::app::parse_platform)]
    pub platform: Option<String>,
    /// Also look for reusable layers in the image REF points at (same registry; repeatable). DEST's
    /// own tags are always looked at. A layer found only through REF is read back from the
    /// registry and checked against its diff_id before the manifest names it.
    #[arg(long = "reuse-from", value_name = "REF")]
    pub reuse_from: Vec<String>,
    /// Reuse a layer the registry has in another compression than --compression would produce.
    #[arg(long)]
    pub reuse_any_compression: bool,
    /// Read and verify every layer of an archive SOURCE, even those the registry already has
    /// (without it, such layers are named by the registry's descriptor and not read).
    #[arg(long)]
    pub verify_all: bool,
    /// Do not use the local layer cache (diff_id → compressed digest).
    #[arg(long)]
    pub no_cache: bool,
    /// The local layer cache's directory (default: LAYERLIFT_CACHE_DIR, $XDG_CACHE_HOME/layerlift,
    /// ~/.cache/layerlift).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Say what would be uploaded (after asking the registry what it has); change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Connect timeout and per-read/per-write timeout, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS", hide = true)]
    pub timeout: u64,
}

/// `123`, `64k`, `16MiB`, `1G`… (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (like 16MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("`{s}`: unknown unit (use k, M or G)")),
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))?;
    if v == 0 {
        return Err("size must be more than 0".into());
    }
    Ok(v)
}

/// Run `layerlift-push`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let out = Arc::new(Output::new(args.opts.json, args.opts.quiet));
    let result = push(&args, &out);
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            out.finish_bars();
            if args.opts.json {
                out.event(
                    json!({"event": "result", "ok": false, "error": crate::exit::one_line(&e)}),
                );
            }
            Err(e)
        }
    }
}

fn push(args: &Args, out: &Arc<Output>) -> anyhow::Result<()> {
    let dest =
        Reference::parse(&args.dest).map_err(|e| usage(format!("DEST `{}`: {e}", args.dest)))?;
    if args.opts.all && (dest.tag.is_some() || dest.digest.is_some() || !args.tags.is_empty()) {
        return Err(usage(
            "--all takes the tags from SOURCE: give DEST as HOST/REPOSITORY without a tag",
        ));
    }
    // Credentials first: --password-stdin consumes standard input, which an archive on `-` needs.
    if args.opts.password_stdin && args.source == "-" {
        return Err(usage(
            "--password-stdin and SOURCE `-` both need standard input",
        ));
    }
    // The source is opened and checked before anything talks to the registry.
    check_source(&args.source)?;
    let credential = if let Some(c) = &args.opts.creds {
        Credential::from_creds(c).map_err(|e| usage(e.to_string()))?
    } else if let Some(user) = &args.opts.username {
        let password = credentials::read_password(std::io::stdin().lock())
            .context("cannot read the password from standard input")?;
        Credential::Basic {
            username: user.clone(),
            password,
        }
    } else {
        credentials::lookup_with(
            args.opts.authfile.as_deref(),
            &dest.registry,
            &dest.repository,
        )?
    };

    let mut opts = TransportOptions {
        ca_certs: args.opts.ca_certs.clone(),
        insecure: args.opts.insecure,
        plain_http: args.opts.plain_http,
        connect_timeout: Duration::from_secs(args.opts.timeout),
        io_timeout: Duration::from_secs(args.opts.timeout),
        ..TransportOptions::default()
    };
    if !args.opts.certs_dirs.is_empty() {
        opts.certs_dirs = args.opts.certs_dirs.clone();
    }
    let retry = RetryPolicy {
        max_attempts: args.opts.retries.max(1),
        max_total: Duration::from_secs(args.opts.retry_max_time),
        ..RetryPolicy::default()
    };
    let mut client = Client::new(&dest.registry, credential, opts, retry)?;
    let observer_out = Arc::clone(out);
    client.set_retry_observer(Box::new(move |attempt, error, delay| {
        observer_out.event(json!({"event": "retried", "attempt": attempt, "delayMs": delay.as_millis() as u64, "error": error.to_string()}));
        if error.is_refused() {
            // Said off a terminal too: a refused connection is the usual "wrong address or
            // registry not started", and the wait should not look like a hang.
            observer_out.notice(&format!(
                "waiting for the registry to accept connections (retrying in {:.1}s): {error}",
                delay.as_secs_f64()
            ));
        } else {
            observer_out.message(&format!("retrying in {:.1}s after: {error}", delay.as_secs_f64()));
        }
    }));
    let pull_only = |repo: &str| {
        if args.opts.dry_run {
            Scope::pull(repo)
        } else {
            Scope::pull_push(repo)
        }
    };
    let mut scopes = vec![pull_only(&dest.repository)];
    let reuse_from = args
        .opts
        .reuse_from
        .iter()
        .map(|r| Reference::parse(r).map_err(|e| usage(format!("--reuse-from `{r}`: {e}"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for r in &reuse_from {
        if r.registry != dest.registry {
            return Err(usage(format!(
                "--reuse-from {r}: layers can only be reused from the destination's registry ({})",
                dest.registry
            )));
        }
        scopes.push(Scope::pull(&r.repository));
    }
    scopes.extend(args.opts.mount_from.iter().map(|m| Scope::pull(m)));
    client.authorize(&scopes);
    client
        .ping()
        .with_context(|| format!("cannot reach registry {}", dest.registry))?;

    // The source: an OCI layout directory as it is; an archive is read into a temporary one,
    // leaving out the layers the registry already has.
    let cache = (!args.opts.no_cache)
        .then(|| cache::Cache::open(args.opts.cache_dir.as_deref()))
        .flatten();
    let sessions =
        cache::base_dir(args.opts.cache_dir.as_deref()).map(|d| sessions::Sessions::new(&d));
    let client = Arc::new(client);
    let uploader = Arc::new(upload::Uploader {
        client: Arc::clone(&client),
        out: Arc::clone(out),
        upload: UploadOptions {
            chunk_size: args.opts.chunk_size,
            max_single_upload: args.opts.max_single_upload.unwrap_or(u64::MAX),
            default_chunk_size: args.opts.chunk_size.unwrap_or(64 << 20),
        },
        sessions,
        mount_from: args.opts.mount_from.clone(),
        dry_run: args.opts.dry_run,
        source: args.source.clone(),
    });
    let mut source = open_source(args, out, &uploader, &dest, &reuse_from, cache.as_ref())?;
    let layout = &source.layout;
    let plan = Plan::build(
        layout,
        &args.source,
        &dest,
        &args.opts.images,
        args.opts.all,
        &args.tags,
        args.opts.platform.as_deref(),
    )?;
    let scopes: Vec<Scope> = plan
        .repos
        .iter()
        .map(|r| pull_only(&r.repository))
        .collect();
    client.authorize(&scopes);

    // Repositories of this registry known to hold a blob (for automatic mounts).
    let mut holders: BTreeMap<Digest, String> = BTreeMap::new();
    for (d, repo) in &source.holders {
        holders.insert(*d, repo.clone());
    }
    let mut pushed: Vec<(String, Digest)> = Vec::new();
    for repo in &plan.repos {
        // The workers that started uploading while the archive was read (one repository only).
        let early = source
            .early
            .take()
            .filter(|p| p.repository() == repo.repository);
        push_blobs(args, &uploader, layout, repo, &mut holders, early)?;
        if args.opts.dry_run {
            for t in &repo.tags {
                let r = format!("{}/{}:{}", dest.registry, repo.repository, t.tag);
                out.event(json!({"event": "tag", "reference": r, "digest": t.digest.to_string(), "dryRun": true}));
                out.plain(&format!("would push {r}@{}", t.digest));
            }
            continue;
        }
        for m in &repo.manifests {
            // One tagged image manifest (the usual push) is stored by its tag PUT below: the same
            // bytes, one request less. (With several, a tagged one may be an index's child, which
            // must be there before the index.)
            if repo.manifests.len() == 1 && repo.tags.iter().any(|t| t.digest == m.digest) {
                continue;
            }
            let d = client
                .put_manifest(
                    &repo.repository,
                    &m.digest.to_string(),
                    &m.media_type,
                    &m.bytes,
                )
                .with_context(|| {
                    format!(
                        "pushing manifest {} to {}/{}",
                        m.digest, dest.registry, repo.repository
                    )
                })?;
            out.event(json!({"event": "manifest", "repository": repo.repository, "digest": d.to_string(), "mediaType": m.media_type, "size": m.bytes.len()}));
        }
        for t in &repo.tags {
            // The client checks the registry's Docker-Content-Digest against the bytes' digest.
            let d = client
                .put_manifest(&repo.repository, &t.tag, &t.media_type, &t.bytes)
                .with_context(|| {
                    format!("tagging {}/{}:{}", dest.registry, repo.repository, t.tag)
                })?;
            let first_tag = repo
                .tags
                .iter()
                .find(|o| o.digest == t.digest)
                .map(|o| &o.tag);
            if repo.manifests.len() == 1 && first_tag == Some(&t.tag) {
                out.event(json!({"event": "manifest", "repository": repo.repository, "digest": d.to_string(), "mediaType": t.media_type, "size": t.bytes.len()}));
            }
        }
        // Read every tag back: exit 0 only when the registry serves what we pushed.
        for t in &repo.tags {
            let r = format!("{}/{}:{}", dest.registry, repo.repository, t.tag);
            let got = client
                .manifest_digest(&repo.repository, &t.tag)
                .with_context(|| format!("checking {r}"))?;
            if got != Some(t.digest) {
                bail!(
                    "{r} points at {} after the push, not at the pushed {}",
                    got.map_or("nothing".to_string(), |d| d.to_string()),
                    t.digest
                );
            }
            out.event(json!({"event": "tag", "reference": r, "digest": t.digest.to_string()}));
            out.plain(&format!("{r}@{}", t.digest));
            pushed.push((r, t.digest));
        }
        for d in &repo.untagged {
            let r = format!("{}/{}@{}", dest.registry, repo.repository, d);
            out.plain(&r);
            pushed.push((r, *d));
        }
    }
    out.finish_bars();
    if let Some(f) = &args.opts.digest_file
        && !args.opts.dry_run
    {
        let mut text = String::new();
        let mut seen = Vec::new();
        for (_, d) in &pushed {
            if !seen.contains(d) {
                seen.push(*d);
                text.push_str(&format!("{d}\n"));
            }
        }
        std::fs::write(f, text).with_context(|| format!("cannot write {}", f.display()))?;
    }
    out.event(json!({
        "event": "result",
        "ok": true,
        "dryRun": args.opts.dry_run,
        "images": pushed.iter().map(|(r, d)| json!({"reference": r, "digest": d.to_string()})).collect::<Vec<_>>(),
    }));
    Ok(())
}

/// SOURCE, opened: the layout to push from, and what was reused instead of read.
struct Source {
    /// The upload workers that pushed the archive's layers to DEST's repository while it was
    /// being read, with what they have done ([`upload::Pool`]).
    early: Option<upload::Pool>,
    /// The temporary layout an archive was read into (removed on drop).
    _tmp: Option<TempDir>,
    layout: Layout,
    /// Blobs the registry has that the layout does not (reused), and the repository holding each.
    holders: Vec<(Digest, String)>,
}

/// Open SOURCE: a directory is an OCI layout; anything else is an archive read into a temporary
/// layout, leaving out the layers the registry already has (see [`reuse`]). When the push goes to
/// DEST's repository alone (no `--all`, `--image`, `--platform` or `--dry-run`), upload workers
/// start first and each layer goes up as soon as it is in the temporary layout, while the reader
/// carries on with the next one.
/// SOURCE exists, and is an OCI layout that opens, another directory (read later), standard input,
/// or a file that starts like an archive.
fn check_source(source: &str) -> anyhow::Result<()> {
    if source == "-" {
        return Ok(());
    }
    let path = std::path::Path::new(source);
    let meta = std::fs::metadata(path).with_context(|| format!("{source}: cannot open"))?;
    if meta.is_dir() {
        if path.join("oci-layout").is_file() {
            Layout::open(path).with_context(|| source.to_string())?;
        }
        return Ok(());
    }
    layerlift_archive::check_start(path).with_context(|| source.to_string())
}

fn open_source(
    args: &Args,
    out: &Output,
    uploader: &Arc<upload::Uploader>,
    dest: &Reference,
    reuse_from: &[Reference],
    cache: Option<&cache::Cache>,
) -> anyhow::Result<Source> {
    let path = std::path::Path::new(&args.source);
    if args.source != "-" && path.is_dir() && path.join("oci-layout").is_file() {
        let layout = Layout::open(path).with_context(|| args.source.clone())?;
        return Ok(Source {
            early: None,
            _tmp: None,
            layout,
            holders: Vec::new(),
        });
    }
    let tmp = TempDir::new()?;
    let compression = match args.opts.compression {
        crate::convert::CompressionArg::Gzip => Some(layerlift_layers::Compression::Gzip),
        crate::convert::CompressionArg::Zstd => Some(layerlift_layers::Compression::Zstd),
        crate::convert::CompressionArg::None => None,
    };
    // One pass over the archive: every layer is read once, hashed, and (when it is stored
    // uncompressed) compressed on the way into the temporary layout, which never holds an
    // uncompressed copy of it.
    let encoding = compression.map(|compression| layerlift_layers::Encoding {
        compression,
        level: None,
        threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    });
    let input = layerlift_archive::Input::from_arg(&args.source);
    // What the archive's metadata says, when it can be read without reading the layers.
    let contents = layerlift_archive::catalog::contents(&input)
        .with_context(|| format!("reading {}", input.display()))?;
    let reuse = if args.opts.verify_all {
        reuse::Plan::default()
    } else {
        plan_reuse(
            args,
            out,
            &uploader.client,
            dest,
            reuse_from,
            cache,
            contents.as_ref().map(|c| c.layers.as_slice()),
            encoding,
        )?
    };
    let mut holders: Vec<(Digest, String)> = reuse
        .reused
        .iter()
        .map(|r| (r.digest, r.repository.clone()))
        .collect();
    holders.extend(
        reuse
            .by_diff_id
            .values()
            .map(|(d, _, _, r)| (*d, r.clone())),
    );
    // Only blobs of the image that is pushed go up early: with --image or --platform, which
    // layers those are is known only once the archive's metadata (written last) is read. An
    // archive file whose metadata names several images is refused after the read (no --image):
    // nothing goes up before that. (From a pipe that cannot be known in advance.)
    let one_image = args.opts.images.is_empty()
        && args.opts.platform.is_none()
        && contents.as_ref().is_none_or(|c| c.images <= 1);
    let early = if one_image && !args.opts.all && !args.opts.dry_run {
        Some(upload::Pool::start(
            Arc::clone(uploader),
            &dest.repository,
            holders.iter().cloned().collect(),
            usize::from(args.opts.jobs),
        )?)
    } else {
        None
    };
    match encoding {
        Some(e) => out.message(&format!(
            "reading {} (compressing layers: {})",
            args.source, e.compression
        )),
        None => out.message(&format!("reading {}", args.source)),
    }
    let options = layerlift_archive::Options {
        encoding,
        reuse: layerlift_archive::Reuse {
            by_path: reuse.entries.clone(),
            by_diff_id: reuse
                .by_diff_id
                .iter()
                .map(|(id, (d, size, c, _))| (*id, (*d, *size, *c)))
                .collect(),
        },
        scratch: true,
        platform: args.opts.platform.clone(),
        on_blob: early.as_ref().map(upload::Pool::hook),
        ..Default::default()
    };
    let (info, _) = match layerlift_archive::unpack_with(&input, &tmp.path(), &options) {
        Ok(r) => r,
        // An upload failed while the archive was read, and the reader stopped: that is the error.
        Err(layerlift_archive::ArchiveError::Stopped) => {
            return Err(early
                .as_ref()
                .and_then(upload::Pool::take_error)
                .unwrap_or_else(|| anyhow::anyhow!("reading {} stopped", input.display())));
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", input.display())),
    };
    let layout = Layout::open(tmp.path())?;
    let unconfirmed = unconfirmed_layers(&info, &reuse, &dest.repository);
    if !unconfirmed.is_empty() {
        out.message(&format!(
            "reading back {} reused layer(s) learnt outside {} to check them against their diff_ids",
            unconfirmed.len(),
            dest.repository
        ));
    }
    if let Err(e) = reuse::confirm(&uploader.client, &unconfirmed, usize::from(args.opts.jobs)) {
        if let (
            reuse::ConfirmError::Mismatch {
                diff_id,
                origin: reuse::Origin::Cache,
                ..
            },
            Some(cache),
            Some(e),
        ) = (&e, cache, encoding)
        {
            cache.remove(&cache::Key::new(
                *diff_id,
                e.compression,
                e.effective_level(),
            ));
        }
        return Err(e.into());
    }
    let confirmed: BTreeSet<Digest> = unconfirmed.iter().map(|u| u.digest).collect();
    report_layers(out, &info, &reuse, &confirmed, encoding, cache);
    Ok(Source {
        early,
        _tmp: Some(tmp),
        layout,
        holders,
    })
}

/// Which layers of an archive need not be read ([`reuse::plan`]); empty when the push goes to
/// several repositories (`--all`). `layers` is the archive's catalog, `None` when it cannot be
/// walked without reading it (a pipe, a compressed archive).
#[allow(clippy::too_many_arguments)]
fn plan_reuse(
    args: &Args,
    out: &Output,
    client: &Client,
    dest: &Reference,
    reuse_from: &[Reference],
    cache: Option<&cache::Cache>,
    layers: Option<&[CatalogLayer]>,
    encoding: Option<layerlift_layers::Encoding>,
) -> anyhow::Result<reuse::Plan> {
    if args.opts.all {
        return Ok(reuse::Plan::default());
    }
    let mut references: Vec<(String, String)> = Vec::new();
    let mut tags: Vec<String> = dest.tag.iter().cloned().collect();
    tags.extend(args.tags.iter().cloned());
    if tags.is_empty() && dest.digest.is_none() {
        tags.push("latest".into());
    }
    for t in tags {
        references.push((dest.repository.clone(), t));
    }
    for r in reuse_from {
        let reference = match (&r.digest, &r.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        };
        references.push((r.repository.clone(), reference));
    }
    let wanted = reuse::Wanted {
        repository: &dest.repository,
        references,
        compression: encoding.map(|e| e.compression),
        level: encoding.map_or(0, |e| e.effective_level()),
        any_compression: args.opts.reuse_any_compression,
        cache,
        jobs: usize::from(args.opts.jobs),
    };
    let Some(layers) = layers else {
        // A pipe or a compressed archive: layers the registry has are hashed, not compressed.
        let plan = reuse::plan_by_diff_id(client, &wanted);
        for note in &plan.notes {
            out.message(note);
        }
        return Ok(plan);
    };
    let plan = reuse::plan(client, layers, &wanted);
    for note in &plan.notes {
        out.message(note);
    }
    if !plan.reused.is_empty() {
        out.message(&format!(
            "{} of {} layers are in {}/{} already: not read",
            plan.reused.len(),
            layers.len(),
            dest.registry,
            dest.repository
        ));
    }
    Ok(plan)
}

/// The layers of the images read, each once.
fn layers_read(
    info: &layerlift_archive::ArchiveInfo,
) -> impl Iterator<Item = (Option<&String>, &layerlift_archive::LayerInfo)> {
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
    info: &layerlift_archive::ArchiveInfo,
    reuse: &reuse::Plan,
    dest_repository: &str,
) -> Vec<reuse::Unconfirmed> {
    let mut todo = Vec::new();
    for (path, layer) in layers_read(info) {
        let hashed_only = layer
            .diff_id
            .and_then(|id| Some((id, reuse.by_diff_id.get(&id)?)));
        if let Some((diff_id, (d, _, compression, repository))) = hashed_only
            && *d == layer.descriptor.digest
        {
            if reuse::Unconfirmed::needed(reuse::Origin::Registry, repository, dest_repository) {
                todo.push(reuse::Unconfirmed {
                    diff_id,
                    digest: *d,
                    compression: *compression,
                    repository: repository.clone(),
                    origin: reuse::Origin::Registry,
                    uncompressed_size: layer.uncompressed_size,
                });
            }
            continue;
        }
        if let Some(r) = reuse
            .reused
            .iter()
            .find(|r| Some(&r.path) == path && r.digest == layer.descriptor.digest)
            && reuse::Unconfirmed::needed(r.origin, &r.repository, dest_repository)
        {
            todo.push(reuse::Unconfirmed {
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

/// One `layer` event per layer of the images read: verified against its diff_id in this run (read
/// from the archive, or read back from the registry: `confirmed`), or taken from the registry
/// unread. Layers compressed in this run go into the local cache.
fn report_layers(
    out: &Output,
    info: &layerlift_archive::ArchiveInfo,
    reuse: &reuse::Plan,
    confirmed: &BTreeSet<Digest>,
    encoding: Option<layerlift_layers::Encoding>,
    cache: Option<&cache::Cache>,
) {
    for (path, layer) in layers_read(info) {
        let diff_id = layer.diff_id.map(|d| d.to_string());
        let hashed_only = layer.diff_id.and_then(|id| reuse.by_diff_id.get(&id));
        if let Some((d, size, _, repository)) = hashed_only
            && *d == layer.descriptor.digest
        {
            // Read and checked against its name (the diff_id), not compressed: the registry's blob.
            out.event(json!({
                "event": "layer", "digest": d.to_string(), "size": size, "diffId": diff_id,
                "verified": true, "source": "registry", "repository": repository,
            }));
            continue;
        }
        match reuse
            .reused
            .iter()
            .find(|r| Some(&r.path) == path && r.digest == layer.descriptor.digest)
        {
            Some(r) => out.event(json!({
                "event": "layer", "digest": r.digest.to_string(), "size": r.size,
                "diffId": r.diff_id.to_string(), "verified": confirmed.contains(&r.digest),
                "source": r.origin.name(), "repository": r.repository,
            })),
            None => {
                out.event(json!({
                    "event": "layer", "digest": layer.descriptor.digest.to_string(),
                    "size": layer.descriptor.size, "diffId": diff_id,
                    "verified": true, "source": "archive",
                }));
                // Compressed by this run: remember the digest it got.
                if let (Some(cache), Some(e), Some(id)) = (cache, encoding, layer.diff_id)
                    && layer.compression == layerlift_layers::Compression::None
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
/// (`tempfile`), holding `lock` — a file this process keeps an exclusive `flock` on while it runs —
/// and `layout/`, the unpacked layout of SOURCE. Removed on drop.
struct TempDir {
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
const SWEEP_AFTER: std::time::Duration = std::time::Duration::from_secs(60);
/// A temporary directory without a lock file (a push killed between creating the directory and
/// the file, or one written by an older layerlift) is swept once it is this old.
const SWEEP_UNLOCKED_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        Self::new_in(&std::env::temp_dir())
    }

    fn new_in(base: &std::path::Path) -> anyhow::Result<Self> {
        sweep_abandoned(base);
        let mut builder = tempfile::Builder::new();
        builder.prefix(TEMP_PREFIX);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o700));
        }
        let dir = builder.tempdir_in(base).with_context(|| {
            format!("cannot create a temporary directory in {}", base.display())
        })?;
        let lock_path = dir.path().join(TEMP_LOCK);
        let lock = std::fs::File::create(&lock_path)
            .with_context(|| format!("cannot create {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        Ok(TempDir { dir, _lock: lock })
    }

    /// Where the temporary layout goes.
    fn path(&self) -> PathBuf {
        self.dir.path().join("layout")
    }
}

/// Remove the temporary directories of pushes that were killed, so that killed runs do not fill
/// the temporary directory. A directory is abandoned when the `flock` on its lock file can be
/// taken (no process holds it: locks are released when their holder dies, whatever PID namespace it
/// ran in, so containers sharing `/tmp` are safe) and the file is older than [`SWEEP_AFTER`]; one
/// without a lock file only after [`SWEEP_UNLOCKED_AFTER`]. The lock is held while removing, so a
/// concurrent sweep skips it. Best effort: errors leave the directory.
fn sweep_abandoned(base: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let age = |path: &std::path::Path| {
        std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(TEMP_PREFIX)
            || !e.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let dir = e.path();
        let lock_path = dir.join(TEMP_LOCK);
        match std::fs::File::open(&lock_path) {
            Ok(lock) => {
                if lock.try_lock().is_ok() && age(&lock_path).is_some_and(|a| a >= SWEEP_AFTER) {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if age(&dir).is_some_and(|a| a >= SWEEP_UNLOCKED_AFTER) {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
            Err(_) => {}
        }
    }
}

/// Push `repo`'s blobs from `layout`, with the workers of `pool` when the archive reader already
/// fed them (see [`upload`]), else with a new pool. The repositories that now hold each blob are
/// added to `holders` (mount sources for the next repository of an `--all` push).
fn push_blobs(
    args: &Args,
    uploader: &Arc<upload::Uploader>,
    layout: &Layout,
    repo: &RepoPlan,
    holders: &mut BTreeMap<Digest, String>,
    pool: Option<upload::Pool>,
) -> anyhow::Result<()> {
    let pool = match pool {
        Some(p) => p,
        None => upload::Pool::start(
            Arc::clone(uploader),
            &repo.repository,
            holders.clone(),
            usize::from(args.opts.jobs).min(repo.blobs.len()),
        )?,
    };
    let blobs = repo
        .blobs
        .iter()
        .map(|b| (b.clone(), layout.blob_path(&b.digest)));
    for (d, a) in pool.finish(blobs)? {
        if a.holds() {
            holders.entry(d).or_insert_with(|| repo.repository.clone());
        }
    }
    Ok(())
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

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12parsecs").is_err());
        assert!(parse_size("").is_err());
    }
}
