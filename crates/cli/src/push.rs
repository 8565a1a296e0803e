//! `layerlift-push SOURCE DEST [--tag T]…`: push the images of an OCI image layout (or of any
//! archive `layerlift-unpack` reads) to a registry with [`layerlift_push`]. This module turns the
//! command line into [`layerlift_push::Options`] and a [`Client`] (credentials, TLS, retries), and
//! chooses the exit code; `progress` shows what the push reports.
//!
//! Output: stdout gets one `REGISTRY/REPO:TAG@sha256:…` line per pushed tag (`--json`: one JSON
//! event per line instead); progress bars go to stderr on a terminal only; `-q` silences it.

mod bulk;
mod folder;
mod progress;

use crate::exit::usage;
use anyhow::Context;
use layerlift_layers::Compression;
use layerlift_push::{Event, Observer, PushError};
use layerlift_registry::{
    Client, Credential, Reference, RetryPolicy, TransportOptions, credentials,
};
use progress::Output;
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
  layerlift-push --all bundle.tar reg.local --map 'docker.io/library/*=base/*'   rename while pushing
  layerlift-push --all ./bundles/ reg.local/mirror --dry-run  every archive of a folder: the plan
  layerlift-push app.tar reg-a.example.com/app:1 reg-b.example.com/app:1   one read, two registries

Credentials: --creds, --username with --password-stdin, --authfile, REGISTRY_AUTH_FILE,
containers auth.json, Docker's config.json (DOCKER_CONFIG) and its credential helpers.
Registries on 127.0.0.0/8 are tried over HTTPS, then plain HTTP (like Docker).
Exit code: 0 when every tag points at the pushed digest, 1 on failure (with several DESTs: when any
of them failed; each failed one is named on stderr), 2 on usage errors."
)]
pub struct Args {
    /// An OCI image layout directory, or a saved-image archive (`-` for standard input).
    pub source: String,
    /// Destination `HOST[:PORT]/REPOSITORY[:TAG]` (Docker Hub names are normalised). Several
    /// destinations are pushed from one read of SOURCE, each layer compressed once.
    #[arg(required = true, value_name = "DEST")]
    pub dests: Vec<String>,
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
    /// repository prefix (DEST may be a registry alone, `HOST[:PORT]`). SOURCE may also be a
    /// directory of archives: each is read once, in name order; files that are not archives are
    /// skipped with a warning. One image failing does not stop the others (exit 1 names them).
    #[arg(long, conflicts_with = "images")]
    pub all: bool,
    /// With --all: name images matching FROM as TO under DEST (repeatable, first match wins).
    /// FROM is matched against the name as SOURCE writes it and its full form (`bulk/*` and
    /// `docker.io/bulk/*` both match `bulk/app:1`; an unnamed image: its ID `sha256:…`), `*`
    /// standing for any characters; each `*` of TO is what FROM's matched; a TO without a tag
    /// keeps the image's tag.
    #[arg(long = "map", value_name = "FROM=TO", requires = "all", value_parser = parse_rule)]
    pub map: Vec<layerlift_manifest::mapping::Rule>,
    /// With --all: read --map rules from FILE, one per line (`#` comments), after those given
    /// with --map.
    #[arg(long, value_name = "FILE", requires = "all")]
    pub map_file: Option<PathBuf>,
    /// With --all: push only the images a --map rule matches (the others are skipped).
    #[arg(long, requires = "all")]
    pub only_mapped: bool,
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
    /// When the registry refuses a manifest's media type (400 MANIFEST_INVALID or 415: older
    /// Quay for OCI, zot for Docker), push it converted to the other format (OCI ⇄ Docker schema
    /// 2). This changes its digest (and that of the indexes above it); without the flag such a
    /// refusal fails the push and names the digest the conversion would give.
    #[arg(long)]
    pub convert_refused: bool,
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
    /// The level of --compression: gzip 1-12 (default 1; libdeflate's levels), zstd 1-19
    /// (default 2). A higher level writes smaller layers for more CPU: worth it when the network,
    /// not the cores, is what a push waits for (see docs/benchmarks.md).
    #[arg(long, value_name = "N")]
    pub level: Option<i32>,
    /// Push only this platform (`os/arch[/variant]`) of a multi-platform image: its manifest,
    /// tagged as the image would be (e.g. a containerd save that holds one platform of several).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = crate::app::parse_platform)]
    pub platform: Option<String>,
    /// An index that lists platforms SOURCE does not hold (a containerd-store `docker save` of an
    /// image pulled for one platform) is refused, since the registry would refuse it; with this,
    /// push a new index of the platforms SOURCE holds instead. Its digest is new: said on stderr
    /// (`newindex` with --json), and printed as the pushed digest.
    #[arg(long, conflicts_with = "platform")]
    pub skip_absent_platforms: bool,
    /// BuildKit's attestation manifests (provenance, SBOM; platform `unknown/unknown`) in an
    /// index: `keep` pushes them with it (the index keeps its digest); `drop` pushes a new index
    /// without them (a new digest, said on stderr), for registries that refuse them.
    #[arg(long, value_enum, value_name = "keep|drop", default_value_t = AttestationsArg::Keep)]
    pub attestations: AttestationsArg,
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
    /// Do not use the cache directory: neither the local layer cache (diff_id → compressed
    /// digest) nor the journal that resumes a killed chunked upload is read or written.
    #[arg(long)]
    pub no_cache: bool,
    /// The local layer cache's directory (default: LAYERLIFT_CACHE_DIR, $XDG_CACHE_HOME/layerlift,
    /// ~/.cache/layerlift). It must be private to this user: one another user can write to is
    /// refused (the default one is then left unused, with a warning).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Say what would be uploaded (after asking the registry what it has); change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Connect timeout and per-read/per-write timeout, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS", hide = true)]
    pub timeout: u64,
}

/// `--attestations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttestationsArg {
    Keep,
    Drop,
}

impl From<AttestationsArg> for layerlift_push::Attestations {
    fn from(a: AttestationsArg) -> Self {
        match a {
            AttestationsArg::Keep => layerlift_push::Attestations::Keep,
            AttestationsArg::Drop => layerlift_push::Attestations::Drop,
        }
    }
}

/// `123`, `64k`, `16MiB`, `1G`… (binary multiples), more than 0.
pub fn parse_size(s: &str) -> Result<u64, String> {
    match parse_size::Config::new().with_binary().parse_size(s) {
        Ok(0) => Err("size must be more than 0".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("`{s}` is not a size like 16MiB ({e})")),
    }
}

/// A `--map` rule.
fn parse_rule(s: &str) -> Result<layerlift_manifest::mapping::Rule, String> {
    layerlift_manifest::mapping::Rule::parse(s).map_err(|e| e.to_string())
}

/// DEST as given: with --all, `HOST[:PORT]` alone (no `/`) is a registry without a repository
/// prefix.
fn parse_dest(d: &str, all: bool) -> anyhow::Result<Reference> {
    let bad = |e: layerlift_registry::ReferenceError| usage(format!("DEST `{d}`: {e}"));
    let host_alone = d.strip_prefix("docker://").unwrap_or(d);
    if all && !host_alone.contains('/') {
        let mut r = Reference::parse(&format!("{host_alone}/x")).map_err(bad)?;
        r.repository.clear();
        return Ok(r);
    }
    Reference::parse(d).map_err(bad)
}

/// Run `layerlift-push`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let out = Arc::new(Output::new(args.opts.json, args.opts.quiet));
    match push(&args, &out) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // The pushes to several destinations said their outcome in their own result event.
        Err(e) if e.is::<SeveralFailed>() => Err(e),
        Err(e) => {
            out.finish_bars();
            let (error, registry_code, registry_message) = described(&e);
            out.event(&Event::Result {
                ok: false,
                dry_run: None,
                images: None,
                error: Some(error),
                registry_code,
                registry_message,
                destinations: None,
            });
            Err(e)
        }
    }
}

/// Some of several destinations, or some images of --all, failed (each named on stderr already,
/// the `result` event sent).
#[derive(Debug)]
struct SeveralFailed(String);

impl std::fmt::Display for SeveralFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SeveralFailed {}

/// An error on one line, with the registry's own code and message when a request failed with
/// one (the first registry error in the chain is the request that failed).
fn described(e: &anyhow::Error) -> (String, Option<String>, Option<String>) {
    let registry = e
        .chain()
        .find_map(|c| c.downcast_ref::<layerlift_registry::Error>());
    (
        crate::exit::one_line(e.as_ref()),
        registry.and_then(|r| r.code()).map(|c| c.to_string()),
        registry
            .and_then(|r| r.registry_message())
            .map(str::to_string),
    )
}

/// A library error as the binary reports it: exit code 2 for the options' own errors.
fn failed(e: PushError) -> anyhow::Error {
    if let PushError::Level(e) = &e {
        usage(crate::convert::level_message(e))
    } else if e.is_usage() {
        usage(e.to_string())
    } else {
        anyhow::Error::new(e)
    }
}

fn push(args: &Args, out: &Arc<Output>) -> anyhow::Result<()> {
    let dests = args
        .dests
        .iter()
        .map(|d| parse_dest(d, args.opts.all))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let options = push_options(args)?;
    for dest in &dests {
        layerlift_push::check(dest, &options).map_err(failed)?;
    }
    // Credentials first: --password-stdin consumes standard input, which an archive on `-` needs.
    if args.opts.password_stdin && args.source == "-" {
        return Err(usage(
            "--password-stdin and SOURCE `-` both need standard input",
        ));
    }
    // Credentials given on the command line are for one registry.
    let explicit = args.opts.creds.is_some() || args.opts.username.is_some();
    if explicit && dests.iter().any(|d| d.registry != dests[0].registry) {
        return Err(usage(
            "--creds and --username give one registry's credentials, and the DESTs are on several registries: log in to each (docker login, --authfile)",
        ));
    }
    // The source is opened and checked before anything talks to the registry.
    let folder = match args.opts.all && args.source != "-" {
        true => layerlift_push::archives_in(std::path::Path::new(&args.source)).map_err(failed)?,
        false => None,
    };
    if folder.is_none() {
        layerlift_push::check_source(&args.source).map_err(failed)?;
    }
    let credential = explicit_credential(args)?;
    let clients = dests
        .iter()
        .map(|d| client(args, d, credential.clone(), out))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The archives of a directory are pushed one after another: each DEST carries what the
    // earlier ones left in its registry, so that a shared layer is mounted, not uploaded again.
    let holdings: Vec<layerlift_push::Holdings> =
        dests.iter().map(|_| Default::default()).collect();
    let targets: Vec<layerlift_push::Destination<'_>> = dests
        .iter()
        .zip(&clients)
        .zip(&holdings)
        .map(
            |((reference, client), holdings)| layerlift_push::Destination {
                reference,
                client,
                holdings: Some(holdings),
            },
        )
        .collect();
    if let Some(entries) = folder {
        let outcome = folder::push_each(&args.dests, out, &targets, &options, entries);
        return folder_results(args, out, options.dry_run, outcome);
    }
    let mut results =
        layerlift_push::push_to_all(&args.source, &targets, &options, &**out).map_err(failed)?;
    out.finish_bars();
    if results.len() == 1 {
        let report = results.pop().unwrap_or(Err(PushError::NoDestination));
        let report = report.map_err(failed)?;
        write_digests(args, std::slice::from_ref(&report))?;
        let error = images_failed(out);
        out.event(&Event::Result {
            ok: error.is_none(),
            dry_run: Some(report.dry_run),
            images: Some(report.images),
            error: error.clone(),
            registry_code: None,
            registry_message: None,
            destinations: None,
        });
        return match error {
            Some(e) => Err(anyhow::Error::new(SeveralFailed(e))),
            None => Ok(()),
        };
    }
    several_results(args, out, results)
}

/// Report the pushes of a directory of archives: each failure on stderr, the digests, the
/// summary and one `result` event; `Err` (exit 1) naming what failed.
fn folder_results(
    args: &Args,
    out: &Arc<Output>,
    dry_run: bool,
    outcome: folder::Outcome,
) -> anyhow::Result<()> {
    out.finish_bars();
    let mut failures = Vec::new();
    for (what, e) in outcome.failures {
        out.error(&format!("{what}: {}", described(&failed(e)).0));
        failures.push(what);
    }
    write_digests(args, &outcome.reports)?;
    let mut errors: Vec<String> = images_failed(out).into_iter().collect();
    if !failures.is_empty() {
        errors.push(format!("failed: {}", failures.join(", ")));
    }
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    out.event(&Event::Result {
        ok: error.is_none(),
        dry_run: Some(dry_run),
        images: Some(outcome.reports.into_iter().flat_map(|r| r.images).collect()),
        error: error.clone(),
        registry_code: None,
        registry_message: None,
        destinations: None,
    });
    match error {
        Some(e) => Err(anyhow::Error::new(SeveralFailed(e))),
        None => Ok(()),
    }
}

/// With --all: the summary line, and the error naming the images that failed (`None`: none did).
fn images_failed(out: &Output) -> Option<String> {
    if let Some(summary) = out.tally.summary() {
        out.notice(&summary);
    }
    let failed = out.tally.failed();
    (!failed.is_empty()).then(|| {
        format!(
            "{} image{} failed: {}",
            failed.len(),
            if failed.len() == 1 { "" } else { "s" },
            failed.join(", ")
        )
    })
}

/// Report the pushes to several destinations: every image pushed, each failed destination named
/// on stderr, and `Err` (exit 1) when any failed.
fn several_results(
    args: &Args,
    out: &Arc<Output>,
    results: Vec<Result<layerlift_push::Report, PushError>>,
) -> anyhow::Result<()> {
    let mut outcomes = Vec::new();
    let mut reports = Vec::new();
    let mut failed_dests = Vec::new();
    for (dest, result) in args.dests.iter().zip(results) {
        // With --all, a destination where some images failed has failed; what landed is kept.
        let result = match result {
            Ok(report) if !report.failed.is_empty() => {
                let count = report.failed.len();
                reports.push(report);
                Err(PushError::ImagesFailed { count })
            }
            other => other,
        };
        match result {
            Ok(report) => {
                outcomes.push(layerlift_push::DestinationOutcome {
                    destination: dest.clone(),
                    ok: true,
                    error: None,
                    registry_code: None,
                });
                reports.push(report);
            }
            Err(e) => {
                let (error, registry_code, _) = described(&failed(e));
                out.error(&format!("{dest}: {error}"));
                outcomes.push(layerlift_push::DestinationOutcome {
                    destination: dest.clone(),
                    ok: false,
                    error: Some(error),
                    registry_code,
                });
                failed_dests.push(dest.as_str());
            }
        }
    }
    write_digests(args, &reports)?;
    images_failed(out);
    let ok = failed_dests.is_empty();
    let error = (!ok).then(|| {
        format!(
            "the push to {} of {} destinations failed: {}",
            failed_dests.len(),
            args.dests.len(),
            failed_dests.join(", ")
        )
    });
    out.event(&Event::Result {
        ok,
        dry_run: Some(args.opts.dry_run),
        images: Some(reports.into_iter().flat_map(|r| r.images).collect()),
        error: error.clone(),
        registry_code: None,
        registry_message: None,
        destinations: Some(outcomes),
    });
    match error {
        Some(e) => Err(anyhow::Error::new(SeveralFailed(e))),
        None => Ok(()),
    }
}

/// `--digest-file`: every digest pushed, each once, one per line.
fn write_digests(args: &Args, reports: &[layerlift_push::Report]) -> anyhow::Result<()> {
    let Some(f) = &args.opts.digest_file else {
        return Ok(());
    };
    if reports.iter().any(|r| r.dry_run) {
        return Ok(());
    }
    let mut text = String::new();
    let mut seen = Vec::new();
    for p in reports.iter().flat_map(|r| &r.images) {
        if !seen.contains(&p.digest) {
            seen.push(p.digest);
            text.push_str(&format!("{}\n", p.digest));
        }
    }
    std::fs::write(f, text).with_context(|| format!("cannot write {}", f.display()))
}

/// The library's options from the command line.
fn push_options(args: &Args) -> anyhow::Result<layerlift_push::Options> {
    let o = &args.opts;
    let reuse_from = o
        .reuse_from
        .iter()
        .map(|r| Reference::parse(r).map_err(|e| usage(format!("--reuse-from `{r}`: {e}"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let compression = Some(o.compression.into()).filter(|c| *c != Compression::None);
    let mut map = o.map.clone();
    if let Some(file) = &o.map_file {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file)
            .map_err(|e| usage(format!("--map-file {name}: cannot read it: {e}")))?;
        map.extend(
            layerlift_manifest::mapping::parse_rules(&name, &text)
                .map_err(|e| usage(format!("--map-file {e}")))?,
        );
    }
    Ok(layerlift_push::Options {
        images: o.images.clone(),
        all: o.all,
        map,
        only_mapped: o.only_mapped,
        platform: o.platform.clone(),
        skip_absent_platforms: o.skip_absent_platforms,
        attestations: o.attestations.into(),
        tags: args.tags.clone(),
        compression,
        compression_level: o.level,
        jobs: usize::from(o.jobs),
        chunk_size: o.chunk_size,
        max_single_upload: o.max_single_upload,
        mount_from: o.mount_from.clone(),
        reuse_from,
        reuse_any_compression: o.reuse_any_compression,
        verify_all: o.verify_all,
        use_cache: !o.no_cache,
        cache_dir: o.cache_dir.clone(),
        dry_run: o.dry_run,
        convert_refused: o.convert_refused,
    })
}

/// The credential given on the command line (`--creds`, or `--username` with the password read
/// from standard input), if any: read once, whatever the number of DESTs.
fn explicit_credential(args: &Args) -> anyhow::Result<Option<Credential>> {
    if let Some(c) = &args.opts.creds {
        return Ok(Some(
            Credential::from_creds(c).map_err(|e| usage(e.to_string()))?,
        ));
    }
    let Some(user) = &args.opts.username else {
        return Ok(None);
    };
    let password = credentials::read_password(std::io::stdin().lock())
        .context("cannot read the password from standard input")?;
    Ok(Some(Credential::Basic {
        username: user.clone(),
        password,
    }))
}

/// A client for DEST's registry: `credential` from the command line or DEST's own from the
/// credential stores, TLS and retries from the command line; retries are reported on `out`.
fn client(
    args: &Args,
    dest: &Reference,
    credential: Option<Credential>,
    out: &Arc<Output>,
) -> anyhow::Result<Client> {
    let credential = match credential {
        Some(c) => c,
        None => credentials::lookup_with(
            args.opts.authfile.as_deref(),
            &dest.registry,
            &dest.repository,
        )?,
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
    let out = Arc::clone(out);
    client.set_retry_observer(Box::new(move |attempt, error, delay| {
        out.event(&Event::Retried {
            attempt,
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error: error.to_string(),
        });
        if error.is_refused() {
            // Said off a terminal too: a refused connection is the usual "wrong address or
            // registry not started", and the wait should not look like a hang.
            out.notice(&format!(
                "waiting for the registry to accept connections (retrying in {:.1}s): {error}",
                delay.as_secs_f64()
            ));
        } else {
            out.message(&format!(
                "retrying in {:.1}s after: {error}",
                delay.as_secs_f64()
            ));
        }
    }));
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

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
