//! Synthetic `docker save` archives for the engines no public fixture covers (docs/formats.md,
//! "The formats in brief"):
//! a containerd-image-store save and a Docker 25+ graphdriver save.
//!
//! The layer tars are real tars written by the `tar` crate, gzip comes from flate2 and zstd from the
//! `zstd` command; every digest, size and diff_id is computed from those bytes, so the archives are
//! internally consistent exactly where the engines' are, and incomplete exactly where theirs are.

use crate::util::{digest, sha256_hex};
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

pub const CONTAINERD_ABOUT: &str = "SYNTHETIC containerd-image-store `docker save` (Docker ≥ 24 with the \
containerd snapshotter): `oci-layout`, `index.json` → a Docker **manifest list** \
(annotations `io.containerd.image.name` = `docker.io/library/layerlift-synthetic:latest`, ref.name `latest`) \
with linux/amd64 present and linux/arm64/v8 **absent** (its manifest, config and layers are not in the tar, \
as with `WithSkipMissing`); the amd64 manifest has Docker media types and 2 **gzip** layers (flate2); \
`manifest.json` lists Config/RepoTags/Layers pointing at the compressed blobs, no LayerSources, no \
`repositories`. Entries sorted by name, mode 0444, epoch mtime, like containerd's exporter. \
Note: skopeo 1.9 reads it as `docker-archive:` but not as `oci-archive:…:latest` (containers/image's OCI \
reader skips index.json entries with a Docker manifest-list media type: \"no descriptor found\").";

pub const CONTAINERD_ATTEST_ABOUT: &str = "SYNTHETIC containerd-image-store save of a BuildKit-style image: \
`index.json` → an **OCI image index** holding linux/amd64 (OCI manifest, one gzip layer and one **zstd** \
layer made by the `zstd` tool), linux/arm64 (**absent**), an **attestation manifest** for amd64 \
(platform unknown/unknown, `vnd.docker.reference.type: attestation-manifest`, an in-toto JSON layer; \
present) and one for arm64 (absent). The index descriptor also carries \
`containerd.io/distribution.source.docker.io`. `manifest.json` picks amd64.";

pub const DOCKER25_ABOUT: &str = "SYNTHETIC Docker 26.1+ graphdriver-store `docker save` of a tagged image\
: `blobs/sha256/<diffid>` **uncompressed** layers, the config, one orphan legacy v1 json \
per layer, the OCI manifest (`…layer.v1.tar` descriptors, digest == diff_id); `manifest.json` with \
`Config`/`Layers` → `blobs/sha256/…` and **LayerSources for every layer**; `index.json` with \
`io.containerd.image.name` = `docker.io/library/layerlift-synthetic:v25` and ref.name = `v25` (tag only); \
`oci-layout` written as `{\"imageLayoutVersion\": \"1.0.0\"}`; `repositories` → top layer's diff_id hex. \
The image has 4 layers of which 2 are the same 1024-byte empty tar (`sha256:5f70bf18…`), stored once, \
listed twice; history has `empty_layer` entries.";

/// sha256 of 1024 zero bytes: the empty tar that Docker layers for no-op steps hash to.
const EMPTY_TAR_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const MT_DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_OCI_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const MT_OCI_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MT_OCI_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Layer mtime: 2023-11-14T22:13:20Z.
const MTIME: u64 = 1_700_000_000;

/// One entry of a layer tar.
enum Entry {
    Dir(&'static str),
    File(&'static str, u32, Vec<u8>),
    Symlink(&'static str, &'static str),
}

/// A layer: its uncompressed tar and diff_id.
struct Layer {
    tar: Vec<u8>,
    diff_id: String,
}

impl Layer {
    fn new(entries: &[Entry]) -> Result<Self> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_ustar();
            h.set_mtime(MTIME);
            h.set_uid(0);
            h.set_gid(0);
            h.set_username("root")?;
            h.set_groupname("root")?;
            match e {
                Entry::Dir(p) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    b.append_data(&mut h, p, std::io::empty())?;
                }
                Entry::File(p, mode, data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, p, data.as_slice())?;
                }
                Entry::Symlink(p, target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, p, target)?;
                }
            }
        }
        let tar = b.into_inner()?;
        let diff_id = digest(&tar);
        Ok(Self { tar, diff_id })
    }

    /// The empty layer (a tar with no entries: 1024 zero bytes).
    fn empty() -> Result<Self> {
        let l = Self::new(&[])?;
        ensure!(
            l.diff_id == EMPTY_TAR_DIFF_ID,
            "empty tar hashes to {}",
            l.diff_id
        );
        Ok(l)
    }
}

/// gzip with flate2, no name, mtime 0 (what containerd/BuildKit produce for pulled layers is gzip
/// from Go's compress/gzip; any valid gzip serves here).
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)?;
    Ok(enc.finish()?)
}

/// zstd with the real `zstd` tool.
fn zstd(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new("zstd")
        .args(["-q", "-c", "--no-progress", "-3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run zstd")?;
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    writer.join().expect("zstd writer thread")?;
    if !out.status.success() {
        bail!("zstd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// A blob: bytes with their digest.
struct Blob {
    bytes: Vec<u8>,
    digest: String,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Self {
        let digest = digest(&bytes);
        Self { bytes, digest }
    }

    fn json(v: &Value) -> Self {
        Self::new(serde_json::to_vec(v).expect("json"))
    }

    fn hex(&self) -> &str {
        &self.digest["sha256:".len()..]
    }

    fn path(&self) -> String {
        format!("blobs/sha256/{}", self.hex())
    }

    fn descriptor(&self, media_type: &str) -> Value {
        json!({ "mediaType": media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

/// The files of an outer archive, written sorted by name with their parent directories, the way
/// both containerd's exporter (`writeTar` sorts its records) and Docker's (a temp dir walked by
/// `archive.Tar`) order them.
#[derive(Default)]
struct OuterTar {
    files: BTreeMap<String, Vec<u8>>,
}

impl OuterTar {
    fn add(&mut self, name: impl Into<String>, bytes: Vec<u8>) {
        self.files.insert(name.into(), bytes);
    }

    fn add_blob(&mut self, blob: &Blob) {
        self.add(blob.path(), blob.bytes.clone());
    }

    fn write(&self, dest: &Path, file_mode: u32, mtime: u64) -> Result<()> {
        let mut all: BTreeMap<String, Option<&Vec<u8>>> = BTreeMap::new();
        for (name, bytes) in &self.files {
            let mut dir = Path::new(name).parent();
            while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
                all.insert(format!("{}/", d.display()), None);
                dir = d.parent();
            }
            all.insert(name.clone(), Some(bytes));
        }
        let f = std::fs::File::create(dest)?;
        let mut b = tar::Builder::new(std::io::BufWriter::new(f));
        for (name, bytes) in all {
            let mut h = tar::Header::new_ustar();
            h.set_mtime(mtime);
            h.set_uid(0);
            h.set_gid(0);
            match bytes {
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    b.append_data(&mut h, &name, std::io::empty())?;
                }
                Some(bytes) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(file_mode);
                    h.set_size(bytes.len() as u64);
                    b.append_data(&mut h, &name, bytes.as_slice())?;
                }
            }
        }
        b.into_inner()?.flush()?;
        Ok(())
    }
}

fn file(path: &'static str, text: &str) -> Entry {
    Entry::File(path, 0o644, text.as_bytes().to_vec())
}

/// The base layer for an architecture.
fn base_layer(arch: &str) -> Result<Layer> {
    Layer::new(&[
        Entry::Dir("bin/"),
        Entry::File(
            "bin/hello",
            0o755,
            format!("#!/bin/sh\necho hello from {arch}\n").into_bytes(),
        ),
        Entry::Dir("etc/"),
        file("etc/os-release", "NAME=layerlift-synthetic\nID=synthetic\n"),
        Entry::File("etc/arch", 0o644, format!("{arch}\n").into_bytes()),
        file("etc/obsolete.conf", "deleted by the next layer\n"),
        Entry::Dir("var/"),
        Entry::Dir("var/cache/"),
        file("var/cache/old", "hidden by an opaque whiteout\n"),
        Entry::Symlink("bin/sh-link", "hello"),
        Entry::Dir("usr/"),
        Entry::Dir("usr/share/"),
        // Some bulk so compression matters.
        Entry::File(
            "usr/share/words",
            0o644,
            (0..4000)
                .map(|i| format!("word{i:05}\n"))
                .collect::<String>()
                .into_bytes(),
        ),
    ])
}

/// The app layer: new files plus a whiteout and an opaque-directory whiteout.
fn app_layer(arch: &str) -> Result<Layer> {
    Layer::new(&[
        Entry::Dir("app/"),
        Entry::File(
            "app/run",
            0o755,
            format!("#!/bin/sh\nexec /bin/hello # {arch}\n").into_bytes(),
        ),
        Entry::Dir("etc/"),
        Entry::File("etc/.wh.obsolete.conf", 0o000, Vec::new()),
        Entry::Dir("var/"),
        Entry::Dir("var/cache/"),
        Entry::File("var/cache/.wh..wh..opq", 0o000, Vec::new()),
        file("var/cache/new", "after the opaque whiteout\n"),
    ])
}

/// A Docker image config for `layers` (diff_ids in order) and history.
fn config(arch: &str, variant: Option<&str>, diff_ids: &[&str], history: Vec<Value>) -> Value {
    let mut c = json!({
        "architecture": arch,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/app/run"],
            "WorkingDir": "/app",
            "Labels": { "org.opencontainers.image.title": "layerlift-synthetic" }
        },
        "created": "2023-11-14T22:13:20Z",
        "history": history,
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    if let Some(v) = variant {
        c["variant"] = json!(v);
    }
    c
}

fn history(created_by: &str, empty: bool) -> Value {
    let mut h = json!({ "created": "2023-11-14T22:13:20Z", "created_by": created_by });
    if empty {
        h["empty_layer"] = json!(true);
    }
    h
}

/// One platform's image as a registry would hold it: config, compressed layers, manifest.
struct PlatformImage {
    config: Blob,
    layers: Vec<(Blob, &'static str)>,
    manifest: Blob,
}

impl PlatformImage {
    /// `codecs[i]` picks layer i's compression: "gzip" or "zstd". `oci` picks media types.
    fn build(arch: &str, variant: Option<&str>, codecs: [&str; 2], oci: bool) -> Result<Self> {
        let layers = [base_layer(arch)?, app_layer(arch)?];
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
        let cfg = Blob::json(&config(
            arch,
            variant,
            &diff_ids,
            vec![
                history("ADD base / # buildkit", false),
                history("ENV PATH=…", true),
                history("COPY app / # buildkit", false),
                history("CMD [\"/app/run\"]", true),
            ],
        ));
        let mut blobs = Vec::new();
        for (l, codec) in layers.iter().zip(codecs) {
            let (bytes, mt) = match (codec, oci) {
                ("gzip", false) => (gzip(&l.tar)?, MT_DOCKER_GZIP),
                ("gzip", true) => (gzip(&l.tar)?, MT_OCI_GZIP),
                ("zstd", true) => (zstd(&l.tar)?, MT_OCI_ZSTD),
                _ => bail!("no media type for {codec} (oci: {oci})"),
            };
            blobs.push((Blob::new(bytes), mt));
        }
        let (mt_manifest, mt_config) = if oci {
            (MT_OCI_MANIFEST, MT_OCI_CONFIG)
        } else {
            (MT_DOCKER_MANIFEST, MT_DOCKER_CONFIG)
        };
        let manifest = Blob::json(&json!({
            "schemaVersion": 2,
            "mediaType": mt_manifest,
            "config": cfg.descriptor(mt_config),
            "layers": blobs.iter().map(|(b, mt)| b.descriptor(mt)).collect::<Vec<_>>(),
        }));
        Ok(Self {
            config: cfg,
            layers: blobs,
            manifest,
        })
    }

    fn add_to(&self, tar: &mut OuterTar) {
        tar.add_blob(&self.config);
        for (b, _) in &self.layers {
            tar.add_blob(b);
        }
        tar.add_blob(&self.manifest);
    }

    fn platform_descriptor(&self, mt: &str, arch: &str, variant: Option<&str>) -> Value {
        let mut d = self.manifest.descriptor(mt);
        d["platform"] = json!({ "architecture": arch, "os": "linux" });
        if let Some(v) = variant {
            d["platform"]["variant"] = json!(v);
        }
        d
    }

    /// The containerd exporter's `manifest.json` entry.
    fn manifest_json_entry(&self, tag: &str) -> Value {
        json!({
            "Config": self.config.path(),
            "RepoTags": [tag],
            "Layers": self.layers.iter().map(|(b, _)| b.path()).collect::<Vec<_>>(),
        })
    }
}

fn oci_layout() -> Vec<u8> {
    br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()
}

fn json_line(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(v).expect("json");
    b.push(b'\n');
    b
}

/// See [`CONTAINERD_ABOUT`].
pub fn containerd_store_save(dest: &Path) -> Result<()> {
    let amd64 = PlatformImage::build("amd64", None, ["gzip", "gzip"], false)?;
    let arm64 = PlatformImage::build("arm64", Some("v8"), ["gzip", "gzip"], false)?;
    let list = Blob::json(&json!({
        "schemaVersion": 2,
        "mediaType": MT_DOCKER_LIST,
        "manifests": [
            amd64.platform_descriptor(MT_DOCKER_MANIFEST, "amd64", None),
            arm64.platform_descriptor(MT_DOCKER_MANIFEST, "arm64", Some("v8")),
        ],
    }));
    let mut tar = OuterTar::default();
    amd64.add_to(&mut tar); // arm64: nothing, as when only the host platform was pulled
    tar.add_blob(&list);
    let mut top = list.descriptor(MT_DOCKER_LIST);
    top["annotations"] = json!({
        "io.containerd.image.name": "docker.io/library/layerlift-synthetic:latest",
        "org.opencontainers.image.ref.name": "latest",
    });
    tar.add(
        "index.json",
        json_line(&json!({ "schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [top] })),
    );
    tar.add(
        "manifest.json",
        json_line(&json!([
            amd64.manifest_json_entry("layerlift-synthetic:latest")
        ])),
    );
    tar.add("oci-layout", oci_layout());
    tar.write(dest, 0o444, 0)
}

/// A BuildKit attestation manifest for `subject` (an in-toto statement as its only layer).
fn attestation(subject: &Blob) -> (Blob, Blob, Blob) {
    let statement = Blob::json(&json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://spdx.dev/Document",
        "subject": [{ "name": "pkg:docker/layerlift-synthetic@latest", "digest": { "sha256": subject.hex() } }],
        "predicate": { "spdxVersion": "SPDX-2.3", "name": "layerlift-synthetic" },
    }));
    let cfg = Blob::json(&json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [statement.digest] },
    }));
    let mut layer = statement.descriptor("application/vnd.in-toto+json");
    layer["annotations"] = json!({ "in-toto.io/predicate-type": "https://spdx.dev/Document" });
    let manifest = Blob::json(&json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": cfg.descriptor(MT_OCI_CONFIG),
        "layers": [layer],
    }));
    (manifest, cfg, statement)
}

fn attestation_descriptor(manifest: &Blob, subject: &Blob) -> Value {
    let mut d = manifest.descriptor(MT_OCI_MANIFEST);
    d["platform"] = json!({ "architecture": "unknown", "os": "unknown" });
    d["annotations"] = json!({
        "vnd.docker.reference.digest": subject.digest,
        "vnd.docker.reference.type": "attestation-manifest",
    });
    d
}

/// See [`CONTAINERD_ATTEST_ABOUT`].
pub fn containerd_store_save_attest(dest: &Path) -> Result<()> {
    let amd64 = PlatformImage::build("amd64", None, ["gzip", "zstd"], true)?;
    let arm64 = PlatformImage::build("arm64", None, ["gzip", "zstd"], true)?;
    let (att_amd64, att_amd64_cfg, att_amd64_stmt) = attestation(&amd64.manifest);
    let (att_arm64, _, _) = attestation(&arm64.manifest);
    let index = Blob::json(&json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": [
            amd64.platform_descriptor(MT_OCI_MANIFEST, "amd64", None),
            arm64.platform_descriptor(MT_OCI_MANIFEST, "arm64", None),
            attestation_descriptor(&att_amd64, &amd64.manifest),
            attestation_descriptor(&att_arm64, &arm64.manifest),
        ],
    }));
    let mut tar = OuterTar::default();
    amd64.add_to(&mut tar);
    for b in [&att_amd64, &att_amd64_cfg, &att_amd64_stmt, &index] {
        tar.add_blob(b);
    }
    let mut top = index.descriptor(MT_OCI_INDEX);
    top["annotations"] = json!({
        "containerd.io/distribution.source.docker.io": "library/layerlift-synthetic",
        "io.containerd.image.name": "docker.io/library/layerlift-synthetic:attest",
        "org.opencontainers.image.ref.name": "attest",
    });
    tar.add(
        "index.json",
        json_line(&json!({ "schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [top] })),
    );
    tar.add(
        "manifest.json",
        json_line(&json!([
            amd64.manifest_json_entry("layerlift-synthetic:attest")
        ])),
    );
    tar.add("oci-layout", oci_layout());
    tar.write(dest, 0o444, 0)
}

/// See [`DOCKER25_ABOUT`].
pub fn docker25_graphdriver_save(dest: &Path) -> Result<()> {
    let base = base_layer("amd64")?;
    let empty = Layer::empty()?;
    let app = app_layer("amd64")?;
    let order = [&base, &empty, &app, &empty];
    let diff_ids: Vec<&str> = order.iter().map(|l| l.diff_id.as_str()).collect();
    let cfg = Blob::json(&config(
        "amd64",
        None,
        &diff_ids,
        vec![
            history("/bin/sh -c #(nop) ADD file:base in / ", false),
            history("/bin/sh -c mkdir -p /var/empty || true", false),
            history("/bin/sh -c #(nop)  ENV PATH=…", true),
            history("/bin/sh -c #(nop) COPY dir:app in / ", false),
            history("/bin/sh -c #(nop) WORKDIR /app", false),
            history("/bin/sh -c #(nop)  CMD [\"/app/run\"]", true),
        ],
    ));
    let mut tar = OuterTar::default();
    tar.add_blob(&cfg);
    // Layers named by diff_id, each distinct diff written once.
    let mut layer_sources = serde_json::Map::new();
    let mut oci_layers = Vec::new();
    let mut parent: Option<String> = None;
    for l in order {
        let blob = Blob {
            bytes: l.tar.clone(),
            digest: l.diff_id.clone(),
        };
        let d = blob.descriptor(MT_OCI_TAR);
        oci_layers.push(d.clone());
        if layer_sources.insert(l.diff_id.clone(), d).is_none() {
            tar.add_blob(&blob);
        }
        // saveConfig still writes each layer's legacy v1 json as an unreferenced blob.
        let id = sha256_hex(format!("{}{}", parent.as_deref().unwrap_or(""), l.diff_id).as_bytes());
        let mut v1 = json!({ "id": id, "created": "1970-01-01T00:00:00Z", "os": "linux",
            "container_config": { "Cmd": null } });
        if let Some(p) = &parent {
            v1["parent"] = json!(p);
        }
        tar.add_blob(&Blob::json(&v1));
        parent = Some(id);
    }
    let manifest = Blob::json(&json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": cfg.descriptor(MT_OCI_CONFIG),
        "layers": oci_layers,
    }));
    tar.add_blob(&manifest);
    let mut top = manifest.descriptor(MT_OCI_MANIFEST);
    top["annotations"] = json!({
        "io.containerd.image.name": "docker.io/library/layerlift-synthetic:v25",
        "org.opencontainers.image.ref.name": "v25",
    });
    tar.add(
        "index.json",
        json_line(&json!({ "schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [top] })),
    );
    tar.add(
        "manifest.json",
        json_line(&json!([{
            "Config": cfg.path(),
            "RepoTags": ["layerlift-synthetic:v25"],
            "Layers": order.iter().map(|l| format!("blobs/sha256/{}", &l.diff_id[7..])).collect::<Vec<_>>(),
            "LayerSources": layer_sources,
        }])),
    );
    tar.add("oci-layout", br#"{"imageLayoutVersion": "1.0.0"}"#.to_vec());
    let top_hex = &order.last().unwrap().diff_id[7..];
    tar.add(
        "repositories",
        json_line(&json!({ "layerlift-synthetic": { "v25": top_hex } })),
    );
    // Docker ≥ 28 gives entries stable timestamps; files 0644 from the temp dir.
    tar.write(dest, 0o644, MTIME)
}
