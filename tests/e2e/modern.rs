//! What Docker 25+ and BuildKit write, for real: Debian 13's Docker 26 and buildx, started by
//! `scripts/docker-modern.sh` in a chroot beside the machine's Docker 20.10, with two daemons: the
//! classic image store (vfs) and the containerd image store (native snapshotter).
//!
//! Each round trip builds an image from nothing (busybox-static and files written here, COPY only,
//! so that an arm64 image builds on amd64 without emulation), has Docker or BuildKit write an
//! archive or a layout, pushes it with layerlift to a local registry, and pulls it with Docker 26
//! (both stores) and the machine's Docker 20.10: the image ID (the config's digest) on the classic
//! stores, the top digest (what layerlift printed, the archive's own where nothing is re-encoded) on
//! the containerd store, and what a container of it prints.
//!
//! The daemons are started once per test binary (the script's `--until-exit-of` watcher stops them
//! when the binary ends, also when it is killed). If they cannot be started the tests fail with the
//! script's reason; `LAYERLIFT_SKIP_DOCKER_MODERN=1` skips them (a `skip …` line on stderr).

use crate::util::{pushed, text};
use layerlift_testkit::Registry;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::SystemTime;

// ---------------------------------------------------------------------------------------------
// The daemons

/// Where an image is pulled and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Daemon {
    /// Docker 26, classic image store (vfs).
    Classic26,
    /// Docker 26, containerd image store (native snapshotter).
    Containerd26,
    /// The machine's own daemon (Docker 20.10).
    Machine,
}

const ALL: [Daemon; 3] = [Daemon::Classic26, Daemon::Containerd26, Daemon::Machine];

/// The environment (`DOCKER_HOST`, `DOCKER_CONFIG`) of each Docker 26 daemon.
struct Modern {
    classic: Vec<(String, String)>,
    containerd: Vec<(String, String)>,
}

fn script() -> PathBuf {
    crate::fixtures::root().join("scripts/docker-modern.sh")
}

/// `scripts/docker-modern.sh env MODE` as (name, value) pairs.
fn script_env(mode: &str) -> Result<Vec<(String, String)>, String> {
    let o = Command::new("bash")
        .arg(script())
        .args(["env", mode])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script().display()))?;
    let (out, err) = text(&o);
    if !o.status.success() {
        return Err(format!("docker-modern.sh env {mode}: {}", err.trim()));
    }
    Ok(out
        .lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn start() -> Result<Modern, String> {
    let o = Command::new("bash")
        .arg(script())
        .args(["start", "--until-exit-of", &std::process::id().to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script().display()))?;
    let (out, err) = text(&o);
    if !o.status.success() {
        return Err(format!(
            "scripts/docker-modern.sh start failed: {}{}",
            err.trim(),
            out.trim()
        ));
    }
    Ok(Modern {
        classic: script_env("vfs")?,
        containerd: script_env("containerd")?,
    })
}

/// The Docker 26 daemons, started on first use; None (with a note) when skipped.
fn modern() -> Option<&'static Modern> {
    static MODERN: OnceLock<Result<Modern, String>> = OnceLock::new();
    if std::env::var_os("LAYERLIFT_SKIP_DOCKER_MODERN").is_some() {
        eprintln!("skip (LAYERLIFT_SKIP_DOCKER_MODERN): the Docker 26 tests");
        return None;
    }
    match MODERN.get_or_init(start) {
        Ok(m) => Some(m),
        Err(reason) => panic!(
            "the Docker 26 tests need scripts/docker-modern.sh (root, Debian's archive reachable; \
             LAYERLIFT_SKIP_DOCKER_MODERN=1 skips them): {reason}"
        ),
    }
}

/// `docker` talking to `daemon`.
fn docker_cmd(daemon: Daemon) -> Command {
    let mut c = Command::new("docker");
    c.stdin(Stdio::null());
    match daemon {
        Daemon::Machine => {
            c.env_remove("DOCKER_HOST")
                .env_remove("DOCKER_CONFIG")
                .env_remove("DOCKER_CONTEXT");
        }
        Daemon::Classic26 | Daemon::Containerd26 => {
            let m = modern().expect("the Docker 26 daemons are running");
            let env = if daemon == Daemon::Classic26 {
                &m.classic
            } else {
                &m.containerd
            };
            c.env_remove("DOCKER_CONTEXT").envs(env.iter().cloned());
        }
    }
    c
}

fn docker(daemon: Daemon, args: &[&str]) -> Output {
    docker_cmd(daemon).args(args).output().expect("run docker")
}

/// Run `docker ARGS` on `daemon`; panics with its stderr unless it succeeded; its stdout.
fn docker_ok(daemon: Daemon, args: &[&str]) -> String {
    let o = docker(daemon, args);
    let (out, err) = text(&o);
    assert!(
        o.status.success(),
        "docker {} ({daemon:?}): {err}{out}",
        args.join(" ")
    );
    out
}

fn inspect(daemon: Daemon, reference: &str, format: &str) -> String {
    docker_ok(daemon, &["inspect", "-f", format, reference])
        .trim()
        .to_string()
}

/// Removes every image reference a test created on each daemon, also when it fails.
#[derive(Default)]
struct Cleanup {
    refs: Vec<(Daemon, String)>,
}

impl Cleanup {
    fn add(&mut self, daemon: Daemon, reference: &str) {
        self.refs.push((daemon, reference.to_string()));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (daemon, reference) in &self.refs {
            let _ = docker(*daemon, &["rmi", "-f", reference]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Building

/// A build context: busybox and a marker file unique to this test and run (so that no layer is
/// shared with another image and the classic stores download every layer), and a Dockerfile
/// `FROM scratch` of two COPY layers whose CMD prints both files.
struct Context {
    dir: tempfile::TempDir,
    /// What a container of the image prints.
    output: String,
}

fn context(name: &str) -> Context {
    let dir = tempfile::Builder::new()
        .prefix("layerlift-modern-ctx-")
        .tempdir()
        .unwrap();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let marker = format!("{name} {} {nanos}\n", std::process::id());
    let hello = format!("hello from {name} {nanos}\n");
    std::fs::write(dir.path().join("busybox"), crate::docker::busybox()).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(
        dir.path().join("busybox"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(dir.path().join("marker"), &marker).unwrap();
    std::fs::write(dir.path().join("hello.txt"), &hello).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox marker /bin/\nCOPY hello.txt /hello.txt\n\
         CMD [\"/bin/busybox\", \"cat\", \"/bin/marker\", \"/hello.txt\"]\n",
    )
    .unwrap();
    Context {
        dir,
        output: format!("{marker}{hello}"),
    }
}

/// `docker buildx build ARGS CONTEXT` on `daemon` (its built-in BuildKit, the `docker` driver).
fn buildx(daemon: Daemon, ctx: &Context, args: &[&str]) {
    let o = docker_cmd(daemon)
        .args(["buildx", "build", "--progress", "plain"])
        .args(args)
        .arg(ctx.dir.path())
        .output()
        .expect("run docker buildx");
    let (out, err) = text(&o);
    assert!(
        o.status.success(),
        "docker buildx build {} ({daemon:?}): {err}{out}",
        args.join(" ")
    );
}

/// `layerlift-e2e-modern/<name>:<pid>`.
fn local_tag(name: &str) -> String {
    format!("layerlift-e2e-modern/{name}:{}", std::process::id())
}

// ---------------------------------------------------------------------------------------------
// Reading what was written

/// A file of an archive (a tar) or of a layout directory.
fn member(source: &Path, name: &str) -> Vec<u8> {
    if source.is_dir() {
        return std::fs::read(source.join(name)).unwrap();
    }
    let mut a = tar::Archive::new(std::fs::File::open(source).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some(name) {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v).unwrap();
            return v;
        }
    }
    panic!("{} has no {name}", source.display());
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The blob `digest` of an archive or layout, as JSON.
fn blob_json(source: &Path, digest: &str) -> Value {
    json(&member(
        source,
        &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
    ))
}

/// The one entry of `index.json`: its digest and media type.
fn top(source: &Path) -> (String, String) {
    let index = json(&member(source, "index.json"));
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{}: {index}", source.display());
    (
        entries[0]["digest"].as_str().unwrap().to_string(),
        entries[0]["mediaType"].as_str().unwrap().to_string(),
    )
}

/// The linux/amd64 image of `source` under `digest` (a manifest, or an index holding one): its
/// config digest, the image ID on a classic store.
fn amd64_config(source: &Path, digest: &str) -> String {
    let doc = blob_json(source, digest);
    match doc["manifests"].as_array() {
        Some(children) => {
            let child = children
                .iter()
                .find(|c| {
                    c["platform"]["architecture"] == "amd64" && c["platform"]["os"] == "linux"
                })
                .unwrap_or_else(|| panic!("no linux/amd64 in {doc}"));
            amd64_config(source, child["digest"].as_str().unwrap())
        }
        None => doc["config"]["digest"].as_str().unwrap().to_string(),
    }
}

/// The children of index `digest` of `source`: (digest, `os/arch`, attestation?).
fn children(source: &Path, digest: &str) -> Vec<(String, String, bool)> {
    let doc = blob_json(source, digest);
    doc["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("{digest} is not an index: {doc}"))
        .iter()
        .map(|c| {
            (
                c["digest"].as_str().unwrap().to_string(),
                format!(
                    "{}/{}",
                    c["platform"]["os"].as_str().unwrap_or("?"),
                    c["platform"]["architecture"].as_str().unwrap_or("?")
                ),
                c["annotations"]["vnd.docker.reference.type"] == "attestation-manifest",
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Pushing and pulling

/// `layerlift-push SOURCE DEST EXTRA…`; the digest it printed for DEST.
fn push(source: &Path, dest: &str, extra: &[&str]) -> String {
    let mut c = crate::util::push_cmd();
    c.arg("--no-cache")
        .arg(source)
        .arg(dest)
        .arg("-q")
        .args(extra);
    let o = c.output().unwrap();
    crate::util::assert_no_secrets(&o);
    let (out, err) = text(&o);
    assert!(
        o.status.success(),
        "push {} to {dest}: {err}{out}",
        source.display()
    );
    pushed(&out)
        .into_iter()
        .find(|(r, _)| r == dest)
        .unwrap_or_else(|| panic!("push to {dest} printed no digest for it: {out}"))
        .1
}

/// What the registry must serve and each daemon must see.
struct Want<'a> {
    /// The digest layerlift printed (the registry serves it under the tag).
    top: &'a str,
    /// The linux/amd64 config digest (the image ID on a classic store).
    config: &'a str,
    /// What a container prints (None: not run; an image without a shell).
    output: Option<&'a str>,
}

/// Pull `reference` on `daemon`, check what it holds and what a container of it prints, remove it.
/// `fresh`: no layer may be in the daemon already.
fn pull_and_run(daemon: Daemon, reference: &str, want: &Want, fresh: bool, cleanup: &mut Cleanup) {
    cleanup.add(daemon, reference);
    let out = docker_ok(daemon, &["pull", reference]);
    assert!(
        !fresh || !out.contains("Already exists"),
        "docker pull {reference} ({daemon:?}) found layers already there: {out}"
    );
    let id = inspect(daemon, reference, "{{.Id}}");
    let want_id = match daemon {
        // The containerd store names an image by its top manifest or index.
        Daemon::Containerd26 => want.top,
        Daemon::Classic26 | Daemon::Machine => want.config,
    };
    assert_eq!(
        id, want_id,
        "docker pull {reference} ({daemon:?}): image ID"
    );
    let repo_digests = inspect(daemon, reference, "{{json .RepoDigests}}");
    let repo = reference.rsplit_once(':').unwrap().0;
    assert!(
        repo_digests.contains(&format!("{repo}@{}", want.top)),
        "docker pull {reference} ({daemon:?}): RepoDigests {repo_digests} lack {}",
        want.top
    );
    if let Some(output) = want.output {
        let ran = docker_ok(daemon, &["run", "--rm", "--network", "none", reference]);
        assert_eq!(ran, output, "docker run {reference} ({daemon:?})");
    }
    docker_ok(daemon, &["rmi", reference]);
}

/// Every daemon in `daemons` pulls and runs `reference`; only `built_on` may hold its layers.
fn pull_everywhere(
    daemons: &[Daemon],
    built_on: Daemon,
    reference: &str,
    want: &Want,
    cleanup: &mut Cleanup,
) {
    for &d in daemons {
        pull_and_run(d, reference, want, d != built_on, cleanup);
    }
}

/// `skopeo inspect --raw` of `repo@digest` on the registry: the registry serves it.
fn registry_has(registry: &Registry, repo: &str, digest: &str) -> Value {
    let o = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/{repo}@{digest}", registry.addr()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "skopeo inspect {repo}@{digest}: {err}");
    let got = crate::util::sha256_digest(out.as_bytes());
    assert_eq!(got, digest, "the registry's bytes of {repo}@{digest}");
    serde_json::from_str(&out).unwrap()
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("layerlift-modern-")
        .tempdir()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The round trips

/// Docker 26's `docker save` from the classic store: an OCI layout beside `manifest.json`, layers
/// uncompressed (`push` gzips them, so the manifest is new; the config, the image ID, is not).
#[test]
fn classic_store_docker_save() {
    if modern().is_none() {
        return;
    }
    let mut cleanup = Cleanup::default();
    let ctx = context("classic-save");
    let tag = local_tag("classic-save");
    cleanup.add(Daemon::Classic26, &tag);
    buildx(Daemon::Classic26, &ctx, &["--load", "-t", &tag]);
    let id = inspect(Daemon::Classic26, &tag, "{{.Id}}");
    let dir = scratch();
    let archive = dir.path().join("save.tar");
    docker_ok(
        Daemon::Classic26,
        &["save", "-o", archive.to_str().unwrap(), &tag],
    );
    let (saved, media_type) = top(&archive);
    assert_eq!(media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(amd64_config(&archive, &saved), id);
    docker_ok(Daemon::Classic26, &["rmi", &tag]);

    let registry = Registry::anonymous();
    let dest = format!("{}/modern/classic-save:1", registry.addr());
    let digest = push(&archive, &dest, &[]);
    let want = Want {
        top: &digest,
        config: &id,
        output: Some(&ctx.output),
    };
    pull_everywhere(&ALL, Daemon::Classic26, &dest, &want, &mut cleanup);
}

/// A multi-platform image built into the containerd store (`--load`) and `docker save`d: an
/// index with linux/amd64, linux/arm64 and their attestation manifests, all present. It is pushed
/// whole: the registry serves the archive's index under the digest it had.
#[test]
fn containerd_store_docker_save_multi_platform() {
    if modern().is_none() {
        return;
    }
    let mut cleanup = Cleanup::default();
    let ctx = context("containerd-save");
    let tag = local_tag("containerd-save");
    cleanup.add(Daemon::Containerd26, &tag);
    buildx(
        Daemon::Containerd26,
        &ctx,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "--load",
            "-t",
            &tag,
        ],
    );
    let id = inspect(Daemon::Containerd26, &tag, "{{.Id}}");
    let dir = scratch();
    let archive = dir.path().join("save.tar");
    docker_ok(
        Daemon::Containerd26,
        &["save", "-o", archive.to_str().unwrap(), &tag],
    );
    docker_ok(Daemon::Containerd26, &["rmi", &tag]);
    let (saved, _) = top(&archive);
    assert_eq!(
        saved, id,
        "the containerd store's image ID is the index digest"
    );
    let kids = children(&archive, &saved);
    let platforms: Vec<&str> = kids.iter().filter(|k| !k.2).map(|k| k.1.as_str()).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    assert!(
        kids.iter().any(|k| k.2),
        "no attestation manifest: {kids:?}"
    );

    let registry = Registry::anonymous();
    let dest = format!("{}/modern/containerd-save:1", registry.addr());
    let digest = push(&archive, &dest, &[]);
    assert_eq!(digest, saved, "the index was pushed as it was saved");
    for (child, _, _) in &kids {
        registry_has(&registry, "modern/containerd-save", child);
    }
    let config = amd64_config(&archive, &saved);
    let want = Want {
        top: &digest,
        config: &config,
        output: Some(&ctx.output),
    };
    pull_everywhere(&ALL, Daemon::Containerd26, &dest, &want, &mut cleanup);
}

/// BuildKit's OCI exporter, as a tar and as a directory (`tar=false`), for linux/amd64 and
/// linux/arm64 with its default provenance attestations: `index.json` → an index of both platforms
/// and an attestation manifest for each. Pushed whole, top digest kept.
#[test]
fn buildkit_oci_multi_platform_tar_and_directory() {
    if modern().is_none() {
        return;
    }
    let dir = scratch();
    let registry = Registry::anonymous();
    for (name, tarball) in [("oci-tar", true), ("oci-dir", false)] {
        let mut cleanup = Cleanup::default();
        let ctx = context(name);
        let out = dir.path().join(name);
        let output = format!("type=oci,dest={},tar={tarball}", out.to_str().unwrap());
        buildx(
            Daemon::Containerd26,
            &ctx,
            &["--platform", "linux/amd64,linux/arm64", "--output", &output],
        );
        assert_eq!(out.is_dir(), !tarball);
        let (index, media_type) = top(&out);
        assert_eq!(media_type, "application/vnd.oci.image.index.v1+json");
        let kids = children(&out, &index);
        assert_eq!(kids.len(), 4, "{kids:?}");
        assert_eq!(kids.iter().filter(|k| k.2).count(), 2, "{kids:?}");

        let dest = format!("{}/modern/{name}:1", registry.addr());
        let digest = push(&out, &dest, &[]);
        assert_eq!(
            digest, index,
            "{name}: the index was pushed as BuildKit wrote it"
        );
        for (child, _, _) in &kids {
            registry_has(&registry, &format!("modern/{name}"), child);
        }
        let config = amd64_config(&out, &index);
        let want = Want {
            top: &digest,
            config: &config,
            output: Some(&ctx.output),
        };
        pull_everywhere(&ALL, Daemon::Containerd26, &dest, &want, &mut cleanup);
    }
}

/// BuildKit's docker exporter (`type=docker`, one platform: buildx 0.13 refuses a manifest list
/// there): `manifest.json` beside an OCI `index.json` naming a Docker schema 2 manifest with gzip
/// layers, pushed unchanged.
#[test]
fn buildkit_docker_exporter() {
    if modern().is_none() {
        return;
    }
    let mut cleanup = Cleanup::default();
    let ctx = context("docker-exporter");
    let dir = scratch();
    let archive = dir.path().join("docker.tar");
    let output = format!("type=docker,dest={}", archive.to_str().unwrap());
    buildx(Daemon::Containerd26, &ctx, &["--output", &output]);
    let (manifest, media_type) = top(&archive);
    assert_eq!(
        media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let config = amd64_config(&archive, &manifest);
    let saved = json(&member(&archive, "manifest.json"));
    assert_eq!(
        saved[0]["Config"].as_str().unwrap(),
        format!("blobs/sha256/{}", config.trim_start_matches("sha256:"))
    );

    let registry = Registry::anonymous();
    let dest = format!("{}/modern/docker-exporter:1", registry.addr());
    let digest = push(&archive, &dest, &[]);
    assert_eq!(
        digest, manifest,
        "the manifest was pushed as BuildKit wrote it"
    );
    let want = Want {
        top: &digest,
        config: &config,
        output: Some(&ctx.output),
    };
    pull_everywhere(&ALL, Daemon::Containerd26, &dest, &want, &mut cleanup);
}

/// BuildKit with `compression=zstd,oci-mediatypes=true`: zstd layers, pushed unchanged, which
/// Docker 26 pulls and Docker 20.10 cannot (it reads the zstd stream as a tar); the same layout
/// converted to gzip by layerlift-convert keeps the config, and Docker 20.10 runs it.
#[test]
fn buildkit_zstd_oci_mediatypes() {
    if modern().is_none() {
        return;
    }
    let mut cleanup = Cleanup::default();
    let ctx = context("zstd");
    let dir = scratch();
    let archive = dir.path().join("zstd.tar");
    let output = format!(
        "type=oci,dest={},compression=zstd,oci-mediatypes=true,force-compression=true",
        archive.to_str().unwrap()
    );
    buildx(Daemon::Containerd26, &ctx, &["--output", &output]);
    let (manifest, _) = top(&archive);
    let doc = blob_json(&archive, &manifest);
    for l in doc["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
    let config = amd64_config(&archive, &manifest);

    let registry = Registry::anonymous();
    let dest = format!("{}/modern/zstd:1", registry.addr());
    let digest = push(&archive, &dest, &[]);
    assert_eq!(
        digest, manifest,
        "zstd layers were pushed as BuildKit wrote them"
    );
    let want = Want {
        top: &digest,
        config: &config,
        output: Some(&ctx.output),
    };
    pull_everywhere(
        &[Daemon::Classic26, Daemon::Containerd26],
        Daemon::Containerd26,
        &dest,
        &want,
        &mut cleanup,
    );
    cleanup.add(Daemon::Machine, &dest);
    let o = docker(Daemon::Machine, &["pull", &dest]);
    let (out, err) = text(&o);
    assert!(
        !o.status.success(),
        "Docker 20.10 pulled zstd layers (then this test should run them): {out}"
    );
    assert!(err.contains("invalid tar header"), "{err}");

    // Converted to gzip for Docker 20.10: new manifest, same config.
    let layout = dir.path().join("gzip");
    let o = Command::new(env!("CARGO_BIN_EXE_layerlift-convert"))
        .arg(&archive)
        .arg(&layout)
        .args(["--compression", "gzip", "-q"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "layerlift-convert: {}", text(&o).1);
    let gz_dest = format!("{}/modern/zstd:gzip", registry.addr());
    let gz_digest = push(&layout, &gz_dest, &[]);
    assert_ne!(gz_digest, digest);
    let want = Want {
        top: &gz_digest,
        config: &config,
        output: Some(&ctx.output),
    };
    pull_and_run(Daemon::Machine, &gz_dest, &want, true, &mut cleanup);
}

/// The script gave each daemon a bridge of its own, and the machine's docker0 is still there.
#[test]
fn the_machines_bridge_survives() {
    if modern().is_none() {
        return;
    }
    for bridge in ["ll26v0", "ll26c0", "docker0"] {
        let o = Command::new("ip")
            .args(["link", "show", bridge])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "ip link show {bridge}: {}", text(&o).1);
    }
}

// ---------------------------------------------------------------------------------------------
// The push policies on what Docker pulls

/// BuildKit's multi-platform OCI tar (attestation manifests included) through a registry that
/// refuses attestation manifests: refused as it is; `--attestations drop` pushes a new index of
/// the two platforms, which every daemon pulls and runs.
#[test]
fn attestations_drop_pulled_by_docker() {
    use layerlift_testkit::{Quirk, QuirkProxy};
    if modern().is_none() {
        return;
    }
    let mut cleanup = Cleanup::default();
    let ctx = context("attestations-drop");
    let dir = scratch();
    let archive = dir.path().join("oci.tar");
    let output = format!("type=oci,dest={}", archive.to_str().unwrap());
    buildx(
        Daemon::Containerd26,
        &ctx,
        &["--platform", "linux/amd64,linux/arm64", "--output", &output],
    );
    let (index, _) = top(&archive);
    let kids = children(&archive, &index);
    assert!(
        kids.iter().any(|k| k.2),
        "no attestation manifest: {kids:?}"
    );

    let registry = Registry::anonymous();
    let proxy = QuirkProxy::start(registry.port(), vec![Quirk::RefuseAttestations]);
    let mut c = crate::util::push_cmd();
    c.arg("--no-cache")
        .arg(&archive)
        .arg(format!("{}/modern/attest:keep", proxy.addr()));
    let o = c.output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}{out}");
    assert!(err.contains("MANIFEST_INVALID"), "{err}");

    let dest = format!("{}/modern/attest:drop", proxy.addr());
    let digest = push(&archive, &dest, &["--attestations", "drop"]);
    assert_ne!(digest, index);
    let pushed_index = registry_has(&registry, "modern/attest", &digest);
    let kept: Vec<&str> = pushed_index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    let platforms: Vec<&str> = kids.iter().filter(|k| !k.2).map(|k| k.0.as_str()).collect();
    assert_eq!(kept, platforms, "the platforms kept, in their order");
    let config = amd64_config(&archive, &index);
    let want = Want {
        top: &digest,
        config: &config,
        output: Some(&ctx.output),
    };
    let pull_ref = format!("{}/modern/attest:drop", registry.addr());
    pull_everywhere(&ALL, Daemon::Containerd26, &pull_ref, &want, &mut cleanup);
}

/// A containerd-store save of which one platform is present (the synthetic one: Docker 26 itself
/// refuses to save such an image, Docker 27+ writes it) pushed with `--skip-absent-platforms`:
/// every daemon pulls the new index's linux/amd64 image.
#[test]
fn skip_absent_platforms_pulled_by_docker() {
    if modern().is_none() {
        return;
    }
    let mut cleanup = Cleanup::default();
    let archive = crate::fixtures::generated("synthetic/containerd-store-save.tar");
    let (index, _) = top(&archive);
    let config = amd64_config(&archive, &index);
    let registry = Registry::anonymous();
    let dest = format!("{}/modern/partial:1", registry.addr());
    let digest = push(&archive, &dest, &["--skip-absent-platforms"]);
    assert_ne!(digest, index);
    let pushed_index = registry_has(&registry, "modern/partial", &digest);
    assert_eq!(pushed_index["manifests"].as_array().unwrap().len(), 1);
    let want = Want {
        top: &digest,
        config: &config,
        output: None,
    };
    pull_everywhere(&ALL, Daemon::Machine, &dest, &want, &mut cleanup);
}

// ---------------------------------------------------------------------------------------------
// One multi-platform image from single-platform archives

/// Two BuildKit `type=docker` archives of one name, linux/amd64 and linux/arm64, unpacked into one
/// layout (side by side: different platforms) and made one index by `layerlift-convert --index`:
/// each platform's manifest digest is kept, and every daemon pulls and runs the amd64 image of the
/// pushed index. `--format docker` makes a Docker manifest list of the same manifests.
#[test]
fn index_from_single_platform_archives() {
    if modern().is_none() {
        return;
    }
    let mut cleanup = Cleanup::default();
    let ctx = context("assembled");
    let dir = scratch();
    let mut manifests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let archive = dir.path().join(format!("{arch}.tar"));
        let output = format!("type=docker,dest={},name=app:1", archive.to_str().unwrap());
        buildx(
            Daemon::Containerd26,
            &ctx,
            &["--platform", &format!("linux/{arch}"), "--output", &output],
        );
        manifests.push(top(&archive).0);
    }
    let config = amd64_config(&dir.path().join("amd64.tar"), &manifests[0]);
    let layout = dir.path().join("oci");
    for arch in ["amd64", "arm64"] {
        let o = Command::new(env!("CARGO_BIN_EXE_layerlift-unpack"))
            .arg(dir.path().join(format!("{arch}.tar")))
            .arg(&layout)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "unpack {arch}: {}", text(&o).1);
    }
    let index_json = json(&std::fs::read(layout.join("index.json")).unwrap());
    assert_eq!(
        index_json["manifests"].as_array().unwrap().len(),
        2,
        "both platforms kept under one name: {index_json}"
    );
    let docker_list = dir.path().join("docker-list");
    crate::util::copy_dir(&layout, &docker_list);

    let convert = |layout: &Path, extra: &[&str]| -> String {
        let o = Command::new(env!("CARGO_BIN_EXE_layerlift-convert"))
            .arg(layout)
            .args(["--index", "app:1"])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert!(o.status.success(), "convert --index: {err}{out}");
        assert!(
            err.contains("linux/amd64") && err.contains("linux/arm64"),
            "{err}"
        );
        let (digest, name) = out.trim().split_once(' ').unwrap();
        assert_eq!(name, "app:1");
        digest.to_string()
    };
    let index = convert(&layout, &[]);
    let (top_digest, media_type) = top(&layout);
    assert_eq!(top_digest, index);
    assert_eq!(media_type, "application/vnd.oci.image.index.v1+json");
    let kids = children(&layout, &index);
    let kept: Vec<(&str, &str)> = kids.iter().map(|k| (k.0.as_str(), k.1.as_str())).collect();
    assert_eq!(
        kept,
        [
            (manifests[0].as_str(), "linux/amd64"),
            (manifests[1].as_str(), "linux/arm64")
        ]
    );

    let registry = Registry::anonymous();
    let dest = format!("{}/modern/assembled:1", registry.addr());
    let digest = push(&layout, &dest, &[]);
    assert_eq!(digest, index);
    let want = Want {
        top: &digest,
        config: &config,
        output: Some(&ctx.output),
    };
    pull_everywhere(&ALL, Daemon::Containerd26, &dest, &want, &mut cleanup);

    let list = convert(&docker_list, &["--format", "docker"]);
    assert_eq!(
        top(&docker_list).1,
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let dest = format!("{}/modern/assembled:list", registry.addr());
    let digest = push(&docker_list, &dest, &[]);
    assert_eq!(digest, list);
    let want = Want {
        top: &digest,
        config: &config,
        output: Some(&ctx.output),
    };
    pull_and_run(Daemon::Machine, &dest, &want, true, &mut cleanup);
}

/// A real partial save: a two-platform image pulled into the containerd store for linux/amd64
/// only and `docker save`d (Docker 26.1.5 writes it: the index whole, the arm64 manifest and the
/// attestation manifests absent). Pushed as it is, it is refused with the list of what is missing;
/// `--platform linux/amd64` pushes the amd64 manifest as it is; `--skip-absent-platforms` pushes a
/// new index of amd64 alone, which every daemon pulls and runs.
#[test]
fn containerd_store_save_of_one_platform() {
    if modern().is_none() {
        return;
    }
    let mut cleanup = Cleanup::default();
    let ctx = context("one-platform");
    let dir = scratch();
    let built = dir.path().join("oci.tar");
    let output = format!("type=oci,dest={}", built.to_str().unwrap());
    buildx(
        Daemon::Containerd26,
        &ctx,
        &["--platform", "linux/amd64,linux/arm64", "--output", &output],
    );
    let (index, _) = top(&built);
    let kids = children(&built, &index);
    let amd64 = kids[0].0.clone();
    assert_eq!(kids[0].1, "linux/amd64");
    let config = amd64_config(&built, &index);
    let registry = Registry::anonymous();
    let source = format!("{}/modern/one-platform:src", registry.addr());
    assert_eq!(push(&built, &source, &[]), index);

    // The store must not hold the arm64 blobs from the build: drop the build cache, then pull.
    docker_ok(Daemon::Containerd26, &["builder", "prune", "-af"]);
    cleanup.add(Daemon::Containerd26, &source);
    docker_ok(
        Daemon::Containerd26,
        &["pull", "--platform", "linux/amd64", &source],
    );
    let archive = dir.path().join("save.tar");
    docker_ok(
        Daemon::Containerd26,
        &["save", "-o", archive.to_str().unwrap(), &source],
    );
    docker_ok(Daemon::Containerd26, &["rmi", &source]);
    assert_eq!(top(&archive).0, index, "the save names the whole index");
    let absent: Vec<&(String, String, bool)> = kids
        .iter()
        .filter(|k| {
            !member_exists(
                &archive,
                &format!("blobs/sha256/{}", &k.0["sha256:".len()..]),
            )
        })
        .collect();
    assert_eq!(
        absent.len(),
        3,
        "arm64 and both attestations absent: {kids:?}"
    );

    let dest = format!("{}/modern/one-platform:1", registry.addr());
    let mut c = crate::util::push_cmd();
    c.arg("--no-cache").arg(&archive).arg(&dest);
    let o = c.output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}{out}");
    assert!(
        err.contains(&format!("index {index} lists 3 manifests not in")),
        "{err}"
    );

    let digest = push(&archive, &dest, &["--platform", "linux/amd64"]);
    assert_eq!(
        digest, amd64,
        "--platform pushes the amd64 manifest as it is"
    );

    let dest = format!("{}/modern/one-platform:present", registry.addr());
    let digest = push(&archive, &dest, &["--skip-absent-platforms"]);
    assert_ne!(digest, index);
    let pushed_index = registry_has(&registry, "modern/one-platform", &digest);
    assert_eq!(pushed_index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(pushed_index["manifests"][0]["digest"], amd64.as_str());
    let want = Want {
        top: &digest,
        config: &config,
        output: Some(&ctx.output),
    };
    pull_everywhere(&ALL, Daemon::Containerd26, &dest, &want, &mut cleanup);
}

/// Whether an archive holds an entry.
fn member_exists(archive: &Path, name: &str) -> bool {
    let mut a = tar::Archive::new(std::fs::File::open(archive).unwrap());
    a.entries()
        .unwrap()
        .any(|e| e.unwrap().path().unwrap().to_str() == Some(name))
}
