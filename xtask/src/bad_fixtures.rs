//! The bad-input corpus of `cargo xtask fixtures`: malformed archives under `bad/`, each small
//! (the bombs are small on disk and large only once decompressed or believed), each of which
//! `layerlift-unpack` must refuse with exit 1 and one line, without a panic, without writing
//! anything beside its output, in bounded memory and time (tests/e2e/bad_input.rs).
//!
//! They are built here in memory from one small valid `docker save` ([`Good`]) and one small OCI
//! archive, with the `tar` crate (raw header bytes, so that `..` and absolute names reach the
//! archive), flate2, and the `zstd` tool. The damaged compressed streams made by the real tools
//! (`test_link.tar.truncated.*` and friends) are in `fixtures.rs`.

use crate::fixtures::{Fixture, fixture};
use crate::util::{run_filter, sha256_hex};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;

/// A tar being built entry by entry.
struct Tar(Vec<u8>);

impl Tar {
    fn new() -> Self {
        Tar(Vec::new())
    }

    /// An entry with the name bytes written as they are (`..`, absolute, any length ≤ 100).
    fn entry(mut self, kind: tar::EntryType, path: &str, link: &str, data: &[u8]) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind == tar::EntryType::Symlink {
            0o777
        } else {
            0o644
        });
        h.set_mtime(0);
        if kind == tar::EntryType::GNUSparse
            && let Some(gnu) = h.as_gnu_mut()
        {
            gnu.realsize.copy_from_slice(b"00000000000\0");
        }
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        if !link.is_empty() {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.data(data)
    }

    /// Entry data, padded to the block.
    fn data(mut self, data: &[u8]) -> Self {
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn file(self, path: &str, data: &[u8]) -> Self {
        self.entry(tar::EntryType::Regular, path, "", data)
    }
    fn symlink(self, path: &str, target: &str) -> Self {
        self.entry(tar::EntryType::Symlink, path, target, &[])
    }
    fn hardlink(self, path: &str, target: &str) -> Self {
        self.entry(tar::EntryType::Link, path, target, &[])
    }
    fn json(self, path: &str, v: &Value) -> Self {
        self.file(path, &serde_json::to_vec(v).unwrap())
    }

    /// With the two end-of-archive blocks.
    fn end(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 1024]);
        self.0
    }
}

fn sha(bytes: &[u8]) -> String {
    sha256_hex(bytes)
}

fn layer(name: &str, content: &[u8]) -> Vec<u8> {
    Tar::new().file(name, content).end()
}

fn config(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// The valid `docker save` every damaged one starts from: one layer at `l/layer.tar`, its config
/// at `<hex>.json`, `manifest.json` last.
struct Good {
    layer: Vec<u8>,
    config: Vec<u8>,
    config_name: String,
}

impl Good {
    fn new() -> Self {
        let layer = layer("hello.txt", b"hello, bad input\n");
        let config = config(&[format!("sha256:{}", sha(&layer))]);
        let config_name = format!("{}.json", sha(&config));
        Good {
            layer,
            config,
            config_name,
        }
    }

    fn manifest(&self, layers: &[&str]) -> Value {
        json!([{"Config": self.config_name, "RepoTags": ["bad/input:1"], "Layers": layers}])
    }

    /// Layer, config, and `manifest` (JSON bytes) as `manifest.json`.
    fn with_manifest(&self, manifest: &[u8]) -> Tar {
        Tar::new()
            .file("l/layer.tar", &self.layer)
            .file(&self.config_name, &self.config)
            .file("manifest.json", manifest)
    }

    fn tar(&self) -> Vec<u8> {
        self.with_manifest(&serde_json::to_vec(&self.manifest(&["l/layer.tar"])).unwrap())
            .end()
    }

    /// Offsets in [`Good::tar`]: each entry's header, and the end-of-archive blocks.
    fn boundaries(&self) -> [usize; 4] {
        let padded = |n: usize| n.div_ceil(512) * 512;
        let layer_hdr = 0;
        let config_hdr = layer_hdr + 512 + padded(self.layer.len());
        let manifest_hdr = config_hdr + 512 + padded(self.config.len());
        let manifest_len = serde_json::to_vec(&self.manifest(&["l/layer.tar"]))
            .unwrap()
            .len();
        let end = manifest_hdr + 512 + padded(manifest_len);
        [layer_hdr, config_hdr, manifest_hdr, end]
    }

    /// A docker save whose config is `config` (named by its digest) and whose manifest lists `layers`.
    fn with_config(&self, config: &[u8], layers: &[&str]) -> Vec<u8> {
        let name = format!("{}.json", sha(config));
        let manifest = json!([{"Config": name, "RepoTags": ["bad/input:1"], "Layers": layers}]);
        Tar::new()
            .file("l/layer.tar", &self.layer)
            .file(&name, config)
            .json("manifest.json", &manifest)
            .end()
    }
}

/// An OCI archive (`oci-layout`, `index.json`, blobs) whose index.json is `index` (given the
/// manifest's descriptor) and whose manifest is `manifest` (given config and layer descriptors).
fn oci(index: impl Fn(Value) -> Value, manifest: impl Fn(Value, Value) -> Value) -> Vec<u8> {
    let good = Good::new();
    let desc = |mt: &str, b: &[u8]| json!({"mediaType": mt, "digest": format!("sha256:{}", sha(b)), "size": b.len()});
    let config_d = desc("application/vnd.oci.image.config.v1+json", &good.config);
    let layer_d = desc("application/vnd.oci.image.layer.v1.tar", &good.layer);
    let m = serde_json::to_vec(&manifest(config_d, layer_d)).unwrap();
    let mut manifest_d = desc("application/vnd.oci.image.manifest.v1+json", &m);
    manifest_d["annotations"] = json!({"org.opencontainers.image.ref.name": "bad"});
    let blob = |b: &[u8]| format!("blobs/sha256/{}", sha(b));
    Tar::new()
        .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .file(&blob(&good.layer), &good.layer)
        .file(&blob(&good.config), &good.config)
        .file(&blob(&m), &m)
        .json("index.json", &index(manifest_d))
        .end()
}

/// The usual OCI manifest around the given config and layer descriptors.
fn oci_manifest(config: Value, layer: Value) -> Value {
    json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": config, "layers": [layer]})
}

fn oci_index(manifest: Value) -> Value {
    json!({"schemaVersion": 2, "manifests": [manifest]})
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// `zstd -q -c` of `bytes`, through a temporary file beside `dest`.
fn zstd(bytes: &[u8], dest: &Path) -> Result<Vec<u8>> {
    let input = dest.with_extension("zstd-input");
    let output = dest.with_extension("zstd-output");
    std::fs::write(&input, bytes)?;
    let r = run_filter("zstd", ["-q", "-c", "--no-progress", "-9"], &input, &output);
    let _ = std::fs::remove_file(&input);
    r?;
    let out = std::fs::read(&output)?;
    std::fs::remove_file(&output)?;
    Ok(out)
}

/// A header whose entry claims `size` bytes (GNU base-256 for sizes past 8 GiB), and no data.
fn huge_entry(kind: tar::EntryType, path: &str, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_path(path).unwrap();
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// `count` copies of one compressed frame of `unit` bytes of `byte`, after `head` and before
/// `tail` (each compressed alone): a multi-member stream that decompresses to
/// `head ‖ byte×(unit·count) ‖ tail` but is small on disk.
fn repeated_frames(
    compress: &dyn Fn(&[u8]) -> Result<Vec<u8>>,
    head: &[u8],
    byte: u8,
    unit: usize,
    count: usize,
    tail: &[u8],
) -> Result<Vec<u8>> {
    let frame = compress(&vec![byte; unit])?;
    let mut out = compress(head)?;
    for _ in 0..count {
        out.extend_from_slice(&frame);
    }
    out.extend(compress(tail)?);
    Ok(out)
}

/// Makes a fixture's bytes (given its temporary path, beside which it may write scratch files).
type Bytes = Box<dyn Fn(&Path) -> Result<Vec<u8>>>;

/// Adds one fixture: its name, what it is, how to make its bytes.
type Add<'a> = dyn FnMut(&str, &str, Bytes) + 'a;

/// Every bad-input fixture, as `bad/<name>`: the truncations, damaged compression and bombs
/// built by [`truncations`], [`damaged_compression`] and [`bombs`], and the table of
/// [`malformed`] archives.
pub fn plan() -> Vec<Fixture> {
    let mut plan = Vec::new();
    let mut add = |name: &str, about: &str, build: Bytes| {
        plan.push(fixture(
            format!("bad/{name}"),
            format!("**bad**: {about}"),
            move |dest: &Path| {
                let bytes = build(dest)?;
                std::fs::write(dest, bytes).with_context(|| format!("write {}", dest.display()))
            },
        ));
    };
    let g = Good::new();
    truncations(&mut add, &g);
    damaged_compression(&mut add, &g.tar());
    bombs(&mut add);
    for (name, about, bytes) in malformed(&g) {
        add(name, about, Box::new(move |_| Ok(bytes.clone())));
    }
    plan
}

/// Truncations at each structural boundary of the valid docker save.
fn truncations(add: &mut Add<'_>, g: &Good) {
    let good = g.tar();
    let [_, config_hdr, manifest_hdr, end] = g.boundaries();

    let cuts: [(&str, &str, usize); 8] = [
        ("cut-0-bytes.tar", "an empty file", 0),
        (
            "cut-in-first-header.tar",
            "cut inside the first header (100 bytes)",
            100,
        ),
        (
            "cut-after-first-header.tar",
            "cut after the first header, before its data",
            512,
        ),
        (
            "cut-in-layer-data.tar",
            "cut inside the layer's data",
            512 + 700,
        ),
        (
            "cut-after-layer-entry.tar",
            "cut after the layer entry, before the config's header",
            config_hdr,
        ),
        (
            "cut-in-config-header.tar",
            "cut inside the config's header",
            config_hdr + 256,
        ),
        (
            "cut-before-manifest.tar",
            "cut before `manifest.json`'s header",
            manifest_hdr,
        ),
        (
            "cut-before-end-blocks.tar",
            "every entry, but no end-of-archive blocks",
            end,
        ),
    ];
    for (name, about, at) in cuts {
        let bytes = good[..at].to_vec();
        add(
            name,
            &format!("valid docker save {about}"),
            Box::new(move |_| Ok(bytes.clone())),
        );
    }
}

/// Damaged gzip and zstd around the valid docker save `good`.
fn damaged_compression(add: &mut Add<'_>, good: &[u8]) {
    let good = good.to_vec();
    let gz = gzip(&good);
    let b = gz[..10].to_vec();
    add(
        "gzip-header-only.tar.gz",
        "only the 10-byte gzip header of a valid save",
        Box::new(move |_| Ok(b.clone())),
    );
    let b = gz[..gz.len() - 8].to_vec();
    add(
        "gzip-no-trailer.tar.gz",
        "gzip of a valid save without its CRC32/ISIZE trailer",
        Box::new(move |_| Ok(b.clone())),
    );
    let mut b = gz.clone();
    let crc = b.len() - 8;
    b[crc] ^= 0xff;
    add(
        "gzip-bad-crc.tar.gz",
        "gzip of a valid save with a wrong CRC32",
        Box::new(move |_| Ok(b.clone())),
    );
    let mut b = gz.clone();
    let isize_at = b.len() - 4;
    b[isize_at] ^= 0x01;
    add(
        "gzip-bad-isize.tar.gz",
        "gzip of a valid save with a wrong ISIZE (length modulo 2^32)",
        Box::new(move |_| Ok(b.clone())),
    );
    let good2 = good.clone();
    add(
        "zstd-corrupt.tar.zst",
        "`zstd -9` of a valid save with 16 bytes in the middle of the frame inverted",
        Box::new(move |dest| {
            let mut b = zstd(&good2, dest)?;
            let mid = b.len() / 2;
            for x in &mut b[mid..mid + 16] {
                *x = !*x;
            }
            Ok(b)
        }),
    );
    let good2 = good.clone();
    add(
        "zstd-bad-checksum.tar.zst",
        "`zstd -9` of a valid save with its content checksum (last 4 bytes) changed",
        Box::new(move |dest| {
            let mut b = zstd(&good2, dest)?;
            let last = b.len() - 1;
            b[last] ^= 0xff;
            Ok(b)
        }),
    );
}

/// Bombs: sizes that are only claimed, or only reached once decompressed.
fn bombs(add: &mut Add<'_>) {
    let b = huge_entry(tar::EntryType::Regular, "manifest.json", 1 << 40);
    add(
        "bomb-size-header.tar",
        "one header claiming a 1 TiB `manifest.json`, and nothing after it",
        Box::new(move |_| Ok(b.clone())),
    );
    let b = {
        let mut pax = Vec::new();
        let record = "size=1099511627776\n";
        let rec = format!("{} {record}", record.len() + 3);
        pax.extend(
            Tar::new()
                .entry(
                    tar::EntryType::XHeader,
                    "PaxHeaders/manifest.json",
                    "",
                    rec.as_bytes(),
                )
                .0,
        );
        pax.extend(Tar::new().file("manifest.json", b"[]").0);
        gzip(&pax)
    };
    add(
        "bomb-pax-size.tar.gz",
        "a PAX `size=` record making `manifest.json` 1 TiB long, gzip",
        Box::new(move |_| Ok(b.clone())),
    );
    let b = {
        let mut doc = b"[".to_vec();
        doc.extend(std::iter::repeat_n(b' ', 9 << 20));
        doc.push(b']');
        gzip(&Tar::new().file("manifest.json", &doc).end())
    };
    add(
        "bomb-json-9mib.tar.gz",
        "a `manifest.json` of 9 MiB (spaces) over the 8 MiB JSON limit, gzip: a few KiB on disk",
        Box::new(move |_| Ok(b.clone())),
    );
    add(
        "bomb-longname-1gib.tar.zst",
        "a GNU long-name (`L`) entry of 1 GiB, as concatenated zstd frames (~100 KiB on disk); a reader that keeps extended headers in memory needs 1 GiB",
        Box::new(|dest| {
            let head = huge_entry(tar::EntryType::GNULongName, "././@LongLink", 1 << 30);
            let tail = Tar::new().file("manifest.json", b"[]").end();
            repeated_frames(&|b| zstd(b, dest), &head, b'a', 1 << 20, 1024, &tail)
        }),
    );
    add(
        "bomb-pax-1gib.tar.gz",
        "a PAX extended header of 1 GiB (one `comment=` record), as concatenated gzip members (~1 MiB on disk)",
        Box::new(|_| {
            let len: u64 = 1 << 30;
            let prefix = format!("{len} comment=");
            let head_len = len as usize - prefix.len() - 1;
            let mut head = huge_entry(tar::EntryType::XHeader, "PaxHeaders/x", len);
            head.extend_from_slice(prefix.as_bytes());
            let unit = 1 << 20;
            let count = head_len / unit;
            let rest = head_len - count * unit;
            let mut tail = vec![b'a'; rest];
            tail.push(b'\n');
            tail.extend(Tar::new().file("manifest.json", b"[]").end());
            repeated_frames(&|b| Ok(gzip(b)), &head, b'a', unit, count, &tail)
        }),
    );
    add(
        "bomb-entries.tar.zst",
        "70 000 symlink entries (zstd): past the archive reader's link limit (4096)",
        Box::new(|dest| {
            let mut t = Tar::new();
            for i in 0..70_000 {
                t = t.symlink(&format!("e/{i:06}"), "x");
            }
            zstd(&t.end(), dest)
        }),
    );
    add(
        "bomb-entries-fifo.tar.zst",
        "70 000 fifo entries (zstd): past the archive reader's entry limit (65 536)",
        Box::new(|dest| {
            let mut t = Tar::new();
            for i in 0..70_000 {
                t = t.entry(tar::EntryType::Fifo, &format!("e/{i:06}"), "", &[]);
            }
            zstd(&t.end(), dest)
        }),
    );
    let b = {
        // An index that names itself as its only child: nesting without end.
        let mut t = Tar::new().file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        let mut child = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []});
        for _ in 0..12 {
            let bytes = serde_json::to_vec(&child).unwrap();
            t = t.file(&format!("blobs/sha256/{}", sha(&bytes)), &bytes);
            child = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                               "digest": format!("sha256:{}", sha(&bytes)), "size": bytes.len()}]});
        }
        t.json("index.json", &child).end()
    };
    add(
        "bomb-nested-indexes.tar",
        "an OCI archive whose index.json nests image indexes 12 deep",
        Box::new(move |_| Ok(b.clone())),
    );
}

/// Archives whose names leave the archive, duplicates, and bad metadata (manifest.json, the
/// config, OCI index.json and manifests), and files that are no image at all: name, what it is,
/// its bytes.
fn malformed(g: &Good) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let layer_sha = sha(&g.layer);
    vec![
        (
            "path-dotdot.tar",
            "the layer stored as `../evil/layer.tar` and listed so in manifest.json",
            Tar::new()
                .file("../evil/layer.tar", &g.layer)
                .file(&g.config_name, &g.config)
                .json("manifest.json", &g.manifest(&["../evil/layer.tar"]))
                .end(),
        ),
        (
            "path-dotdot-inner.tar",
            "an entry `l/../../x` (climbs out after a component)",
            g.with_manifest(&serde_json::to_vec(&g.manifest(&["l/layer.tar"])).unwrap())
                .file("l/../../x", b"x")
                .end(),
        ),
        (
            "path-absolute.tar",
            "the layer stored as `/etc/layer.tar`",
            Tar::new()
                .file("/etc/layer.tar", &g.layer)
                .file(&g.config_name, &g.config)
                .json("manifest.json", &g.manifest(&["/etc/layer.tar"]))
                .end(),
        ),
        (
            "symlink-absolute.tar",
            "manifest.json lists `m/layer.tar`, a symlink to `/etc/passwd`",
            g.with_manifest(&serde_json::to_vec(&g.manifest(&["m/layer.tar"])).unwrap())
                .symlink("m/layer.tar", "/etc/passwd")
                .end(),
        ),
        (
            "symlink-escape.tar",
            "an unreferenced symlink `m/layer.tar` -> `../../etc/passwd`",
            g.with_manifest(&serde_json::to_vec(&g.manifest(&["l/layer.tar"])).unwrap())
                .symlink("m/layer.tar", "../../etc/passwd")
                .end(),
        ),
        (
            "symlink-dir-escape.tar",
            "a directory symlink `d` -> `..`; manifest.json lists `d/x/layer.tar`",
            g.with_manifest(&serde_json::to_vec(&g.manifest(&["d/x/layer.tar"])).unwrap())
                .symlink("d", "..")
                .end(),
        ),
        (
            "hardlink-escape.tar",
            "a hard link `m/layer.tar` to `../outside/layer.tar`, listed in manifest.json",
            g.with_manifest(&serde_json::to_vec(&g.manifest(&["m/layer.tar"])).unwrap())
                .hardlink("m/layer.tar", "../outside/layer.tar")
                .end(),
        ),
        (
            "hardlink-absolute.tar",
            "a hard link `m/layer.tar` to `/etc/shadow`, listed in manifest.json",
            g.with_manifest(&serde_json::to_vec(&g.manifest(&["m/layer.tar"])).unwrap())
                .hardlink("m/layer.tar", "/etc/shadow")
                .end(),
        ),
        (
            "symlink-loop.tar",
            "manifest.json lists `a/layer.tar` -> `../b/layer.tar` -> `../a/layer.tar`",
            Tar::new()
                .symlink("a/layer.tar", "../b/layer.tar")
                .symlink("b/layer.tar", "../a/layer.tar")
                .file(&g.config_name, &g.config)
                .json("manifest.json", &g.manifest(&["a/layer.tar"]))
                .end(),
        ),
        (
            "symlink-chain-41.tar",
            "manifest.json lists the head of a chain of 41 symlinks ending at the layer",
            {
                let mut t = Tar::new().file("l/layer.tar", &g.layer);
                t = t.symlink("c0/layer.tar", "../l/layer.tar");
                for i in 1..=41 {
                    t = t.symlink(
                        &format!("c{i}/layer.tar"),
                        &format!("../c{}/layer.tar", i - 1),
                    );
                }
                t.file(&g.config_name, &g.config)
                    .json("manifest.json", &g.manifest(&["c41/layer.tar"]))
                    .end()
            },
        ),
        (
            "symlink-dangling.tar",
            "manifest.json lists `m/layer.tar`, a symlink to a file the archive does not hold",
            g.with_manifest(&serde_json::to_vec(&g.manifest(&["m/layer.tar"])).unwrap())
                .symlink("m/layer.tar", "../gone/layer.tar")
                .end(),
        ),
        // Duplicates.
        (
            "duplicate-different-content.tar",
            "`l/layer.tar` twice, the second with other content",
            g.with_manifest(&serde_json::to_vec(&g.manifest(&["l/layer.tar"])).unwrap())
                .file("l/layer.tar", &layer("other.txt", b"other"))
                .end(),
        ),
        (
            "duplicate-file-and-link.tar",
            "`l/layer.tar` as a file and again as a symlink",
            g.with_manifest(&serde_json::to_vec(&g.manifest(&["l/layer.tar"])).unwrap())
                .symlink("l/layer.tar", "../x/layer.tar")
                .end(),
        ),
        // manifest.json.
        (
            "manifest-malformed.tar",
            "manifest.json is `[{\"Config\": ` (cut JSON)",
            g.with_manifest(b"[{\"Config\": ").end(),
        ),
        (
            "manifest-null.tar",
            "manifest.json is `null`",
            g.with_manifest(b"null").end(),
        ),
        (
            "manifest-empty-list.tar",
            "manifest.json is `[]`",
            g.with_manifest(b"[]").end(),
        ),
        (
            "manifest-wrong-shape.tar",
            "manifest.json is `[{\"Layers\": 5}]`",
            g.with_manifest(b"[{\"Layers\": 5}]").end(),
        ),
        (
            "manifest-binary.tar",
            "manifest.json holds 600 bytes of binary",
            g.with_manifest(&(0..600u32).map(|i| (i * 7 + 1) as u8).collect::<Vec<_>>())
                .end(),
        ),
        (
            "manifest-missing-config.tar",
            "manifest.json's `Config` names a file the archive does not hold",
            Tar::new()
                .file("l/layer.tar", &g.layer)
                .json("manifest.json", &g.manifest(&["l/layer.tar"]))
                .end(),
        ),
        (
            "manifest-missing-layer.tar",
            "manifest.json lists `gone/layer.tar`",
            g.with_manifest(&serde_json::to_vec(&g.manifest(&["gone/layer.tar"])).unwrap())
                .end(),
        ),
        // The config.
        (
            "config-malformed.tar",
            "the config is `{\"rootfs\": ` (named by its digest)",
            g.with_config(b"{\"rootfs\": ", &["l/layer.tar"]),
        ),
        (
            "config-null.tar",
            "the config is `null` (named by its digest)",
            g.with_config(b"null", &["l/layer.tar"]),
        ),
        (
            "config-name-lies.tar",
            "the config is stored as `<64 a>.json`, which is not its digest",
            {
                let name = format!("{}.json", "a".repeat(64));
                Tar::new()
                    .file("l/layer.tar", &g.layer)
                    .file(&name, &g.config)
                    .json(
                        "manifest.json",
                        &json!([{"Config": name, "Layers": ["l/layer.tar"]}]),
                    )
                    .end()
            },
        ),
        (
            "diffids-more-than-layers.tar",
            "the config has 2 diff_ids, manifest.json 1 layer",
            g.with_config(
                &config(&[format!("sha256:{layer_sha}"), format!("sha256:{layer_sha}")]),
                &["l/layer.tar"],
            ),
        ),
        (
            "diffids-fewer-than-layers.tar",
            "the config has no diff_ids, manifest.json 1 layer",
            g.with_config(&config(&[]), &["l/layer.tar"]),
        ),
        (
            "diffid-mismatch.tar",
            "the config's diff_id is not the layer's sha256",
            g.with_config(
                &config(&[format!("sha256:{}", "0".repeat(64))]),
                &["l/layer.tar"],
            ),
        ),
        (
            "diffid-wrong-algorithm.tar",
            "the config's diff_id is `sha512:<128 hex>`",
            g.with_config(
                &config(&[format!("sha512:{}", "0".repeat(128))]),
                &["l/layer.tar"],
            ),
        ),
        (
            "diffid-wrong-length.tar",
            "the config's diff_id is `sha256:` and 63 hex digits",
            g.with_config(
                &config(&[format!("sha256:{}", &layer_sha[..63])]),
                &["l/layer.tar"],
            ),
        ),
        // OCI index.json and manifests.
        (
            "index-malformed.tar",
            "an OCI archive whose index.json is `{\"manifests\": [` (cut JSON)",
            Tar::new()
                .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
                .file("index.json", b"{\"manifests\": [")
                .end(),
        ),
        (
            "index-null.tar",
            "an OCI archive whose index.json is `null`",
            Tar::new()
                .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
                .file("index.json", b"null")
                .end(),
        ),
        (
            "index-missing-manifest.tar",
            "an OCI archive whose index.json names a manifest blob it does not hold",
            oci(
                |_| {
                    oci_index(
                        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{}", "1".repeat(64)), "size": 100}),
                    )
                },
                oci_manifest,
            ),
        ),
        (
            "index-digest-wrong-algorithm.tar",
            "an OCI archive whose index.json names its manifest by `sha512:<128 hex>`",
            oci(
                |mut d| {
                    d["digest"] = json!(format!("sha512:{}", "2".repeat(128)));
                    oci_index(d)
                },
                oci_manifest,
            ),
        ),
        (
            "index-digest-wrong-length.tar",
            "an OCI archive whose index.json names its manifest by `sha256:abc`",
            oci(
                |mut d| {
                    d["digest"] = json!("sha256:abc");
                    oci_index(d)
                },
                oci_manifest,
            ),
        ),
        (
            "index-size-lies.tar",
            "an OCI archive whose index.json gives its manifest a size 1 byte short",
            oci(
                |mut d| {
                    d["size"] = json!(d["size"].as_u64().unwrap() - 1);
                    oci_index(d)
                },
                oci_manifest,
            ),
        ),
        (
            "oci-manifest-null.tar",
            "an OCI archive whose manifest blob is `null` (named by its digest)",
            oci(oci_index, |_, _| Value::Null),
        ),
        (
            "oci-manifest-missing-layer.tar",
            "an OCI archive whose manifest lists a layer blob it does not hold",
            oci(oci_index, |c, mut l| {
                l["digest"] = json!(format!("sha256:{}", "3".repeat(64)));
                oci_manifest(c, l)
            }),
        ),
        (
            "oci-manifest-layer-wrong-algorithm.tar",
            "an OCI archive whose manifest names its layer by `sha512:<128 hex>`",
            oci(oci_index, |c, mut l| {
                l["digest"] = json!(format!("sha512:{}", "4".repeat(128)));
                oci_manifest(c, l)
            }),
        ),
        // Not an image at all.
        ("not-a-tar.bin", "4 KiB of 0x07", vec![7u8; 4096]),
        (
            "empty-tar.tar",
            "only the two end-of-archive blocks",
            vec![0u8; 1024],
        ),
        (
            "sparse-entry.tar",
            "a valid save plus a GNU sparse entry",
            g.with_manifest(&serde_json::to_vec(&g.manifest(&["l/layer.tar"])).unwrap())
                .entry(tar::EntryType::GNUSparse, "sparse", "", &[])
                .end(),
        ),
    ]
}
