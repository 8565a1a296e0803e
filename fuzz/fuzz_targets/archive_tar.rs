//! The archive reader on structure-aware input: a tar built from arbitrary entries whose names,
//! links and JSON (docker `manifest.json`, OCI `index.json`, manifests, configs) refer to each
//! other, with valid, missing, wrong-algorithm or wrong-length digests, `..`, absolute paths,
//! symlinks and hard links, duplicates, gzip and truncation. Each input is unpacked into a fresh
//! layout. Invariants: no panic; a failed run leaves no layout behind; a successful one leaves
//! only blobs whose bytes match their names, plus `index.json` and `oci-layout`.

#![no_main]

use arbitrary::Arbitrary;
use layerlift_archive::Input;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use std::io::Write;

/// Names the readers look for, and shapes writers use.
const NAMES: &[&str] = &[
    "manifest.json",
    "index.json",
    "oci-layout",
    "repositories",
    "l/layer.tar",
    "l/json",
    "l/VERSION",
    "m/layer.tar",
    "version",
    "./manifest.json",
    "../escape",
    "/etc/abs",
    "a/../manifest.json",
];

#[derive(Arbitrary, Debug)]
enum Name {
    Fixed(u8),
    /// `blobs/sha256/<hex>` of an earlier entry's bytes.
    Blob(u8),
    /// `<hex>.json` of an earlier entry.
    HexJson(u8),
    /// bare `<hex>` (the `dir:` transport).
    Hex(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Ref {
    /// An earlier entry (modulo their number).
    Entry(u8),
    Missing,
    WrongAlgorithm,
    WrongLength,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Body {
    Raw(Vec<u8>),
    /// A layer tar with these files.
    Layer(Vec<(u8, Vec<u8>)>),
    /// gzip of an earlier entry's bytes.
    Gzip(u8),
    Config(Vec<Ref>),
    Docker(Vec<Item>),
    Manifest {
        docker: bool,
        config: Ref,
        layers: Vec<Ref>,
    },
    Index {
        manifests: Vec<(Ref, bool)>,
        null: bool,
    },
    OciLayout,
    Json(Shape),
}

#[derive(Arbitrary, Debug)]
struct Item {
    config: Ref,
    layers: Vec<Ref>,
    tags: Option<Vec<String>>,
    sources: bool,
}

#[derive(Arbitrary, Debug)]
enum Shape {
    Null,
    Number(i64),
    Nested(u8),
    Str(String),
}

#[derive(Arbitrary, Debug)]
enum Kind {
    File(Body),
    Symlink(Ref),
    HardLink(Ref),
    Dir,
    Fifo,
}

#[derive(Arbitrary, Debug)]
struct Entry {
    name: Name,
    kind: Kind,
}

#[derive(Arbitrary, Debug)]
struct Archive {
    entries: Vec<Entry>,
    gzip: bool,
    reverse: bool,
    /// Keep only this many bytes (per mille of the length), if set.
    cut: Option<u16>,
}

/// An entry as built so far.
struct Built {
    name: String,
    bytes: Vec<u8>,
}

fn hex(bytes: &[u8]) -> String {
    layerlift_manifest::Digest::of(bytes).hex()
}

fn pick(built: &[Built], i: u8) -> Option<&Built> {
    (!built.is_empty()).then(|| &built[usize::from(i) % built.len()])
}

/// A reference as a path inside the archive.
fn path_of(built: &[Built], r: &Ref) -> String {
    match r {
        Ref::Entry(i) => pick(built, *i).map_or("gone".into(), |b| b.name.clone()),
        Ref::Missing => "missing/layer.tar".into(),
        Ref::WrongAlgorithm => "blobs/sha512/00".into(),
        Ref::WrongLength => "blobs/sha256/abc".into(),
        Ref::Raw(s) => s.clone(),
    }
}

/// A reference as a descriptor.
fn descriptor(built: &[Built], r: &Ref, media_type: &str) -> Value {
    let (digest, size) = match r {
        Ref::Entry(i) => pick(built, *i).map_or((format!("sha256:{}", "0".repeat(64)), 0), |b| {
            (format!("sha256:{}", hex(&b.bytes)), b.bytes.len() as u64)
        }),
        Ref::Missing => (format!("sha256:{}", "1".repeat(64)), 10),
        Ref::WrongAlgorithm => (format!("sha512:{}", "2".repeat(128)), 10),
        Ref::WrongLength => ("sha256:abc".into(), 10),
        Ref::Raw(s) => (s.clone(), 1),
    };
    json!({"mediaType": media_type, "digest": digest, "size": size})
}

fn diff_id(built: &[Built], r: &Ref) -> Value {
    descriptor(built, r, "")["digest"].clone()
}

fn body(built: &[Built], b: &Body) -> Vec<u8> {
    match b {
        Body::Raw(v) => v.clone(),
        Body::Layer(files) => {
            let mut t = tar::Builder::new(Vec::new());
            for (n, data) in files {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                let _ = h.set_path(format!("f{n}"));
                h.set_cksum();
                let _ = t.append(&h, &data[..]);
            }
            t.into_inner().unwrap_or_default()
        }
        Body::Gzip(i) => {
            let src = pick(built, *i).map_or(&[][..], |b| &b.bytes[..]);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(src).unwrap();
            gz.finish().unwrap()
        }
        Body::Config(diff_ids) => serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|r| diff_id(built, r)).collect::<Vec<_>>()},
        }))
        .unwrap(),
        Body::Docker(items) => serde_json::to_vec(
            &items
                .iter()
                .map(|it| {
                    let mut v = json!({
                        "Config": path_of(built, &it.config),
                        "RepoTags": it.tags,
                        "Layers": it.layers.iter().map(|r| path_of(built, r)).collect::<Vec<_>>(),
                    });
                    if it.sources {
                        v["LayerSources"] = it
                            .layers
                            .iter()
                            .map(|r| {
                                (
                                    diff_id(built, r).as_str().unwrap_or("").to_string(),
                                    descriptor(built, r, "application/vnd.oci.image.layer.v1.tar"),
                                )
                            })
                            .collect::<serde_json::Map<_, _>>()
                            .into();
                    }
                    v
                })
                .collect::<Vec<_>>(),
        )
        .unwrap(),
        Body::Manifest {
            docker,
            config,
            layers,
        } => {
            let (mt, ct, lt) = if *docker {
                (
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.container.image.v1+json",
                    "application/vnd.docker.image.rootfs.diff.tar.gzip",
                )
            } else {
                (
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.oci.image.config.v1+json",
                    "application/vnd.oci.image.layer.v1.tar",
                )
            };
            serde_json::to_vec(&json!({
                "schemaVersion": 2, "mediaType": mt,
                "config": descriptor(built, config, ct),
                "layers": layers.iter().map(|r| descriptor(built, r, lt)).collect::<Vec<_>>(),
            }))
            .unwrap()
        }
        Body::Index { manifests, null } => {
            let list: Value = if *null {
                Value::Null
            } else {
                manifests
                    .iter()
                    .map(|(r, index)| {
                        let mt = if *index {
                            "application/vnd.oci.image.index.v1+json"
                        } else {
                            "application/vnd.oci.image.manifest.v1+json"
                        };
                        let mut d = descriptor(built, r, mt);
                        d["annotations"] = json!({"org.opencontainers.image.ref.name": "t"});
                        d
                    })
                    .collect::<Vec<_>>()
                    .into()
            };
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": list})).unwrap()
        }
        Body::OciLayout => br#"{"imageLayoutVersion": "1.0.0"}"#.to_vec(),
        Body::Json(shape) => match shape {
            Shape::Null => b"null".to_vec(),
            Shape::Number(n) => n.to_string().into_bytes(),
            Shape::Nested(depth) => {
                let d = usize::from(*depth);
                format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()
            }
            Shape::Str(s) => serde_json::to_vec(s).unwrap(),
        },
    }
}

fn name(built: &[Built], n: &Name) -> String {
    match n {
        Name::Fixed(i) => NAMES[usize::from(*i) % NAMES.len()].to_string(),
        Name::Blob(i) => format!(
            "blobs/sha256/{}",
            pick(built, *i).map_or("0".repeat(64), |b| hex(&b.bytes))
        ),
        Name::HexJson(i) => format!(
            "{}.json",
            pick(built, *i).map_or("0".repeat(64), |b| hex(&b.bytes))
        ),
        Name::Hex(i) => pick(built, *i).map_or("0".repeat(64), |b| hex(&b.bytes)),
        Name::Raw(s) => s.clone(),
    }
}

fn header(path: &str, kind: tar::EntryType, size: u64) -> Option<tar::Header> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    // Name bytes as they are, so that `..` and absolute names reach the archive.
    let raw = path.as_bytes();
    let field = &mut h.as_old_mut().name;
    if raw.is_empty() || raw.len() > field.len() || raw.contains(&0) {
        return None;
    }
    field[..raw.len()].copy_from_slice(raw);
    Some(h)
}

fn build(a: &Archive) -> Vec<u8> {
    let mut built: Vec<Built> = Vec::new();
    let mut entries: Vec<(tar::Header, Vec<u8>)> = Vec::new();
    for e in a.entries.iter().take(24) {
        let n = name(&built, &e.name);
        let (kind, bytes, link) = match &e.kind {
            Kind::File(b) => (tar::EntryType::Regular, body(&built, b), None),
            Kind::Symlink(r) => (
                tar::EntryType::Symlink,
                Vec::new(),
                Some(path_of(&built, r)),
            ),
            Kind::HardLink(r) => (tar::EntryType::Link, Vec::new(), Some(path_of(&built, r))),
            Kind::Dir => (tar::EntryType::Directory, Vec::new(), None),
            Kind::Fifo => (tar::EntryType::Fifo, Vec::new(), None),
        };
        let Some(mut h) = header(&n, kind, bytes.len() as u64) else {
            continue;
        };
        if let Some(l) = &link
            && h.set_link_name(l).is_err()
        {
            continue;
        }
        h.set_cksum();
        entries.push((h, bytes.clone()));
        built.push(Built { name: n, bytes });
    }
    if a.reverse {
        entries.reverse();
    }
    let mut t = tar::Builder::new(Vec::new());
    for (h, bytes) in &entries {
        t.append(h, &bytes[..]).unwrap();
    }
    let mut out = t.into_inner().unwrap();
    if a.gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&out).unwrap();
        out = gz.finish().unwrap();
    }
    if let Some(per_mille) = a.cut {
        let keep = out.len() * usize::from(per_mille % 1000) / 1000;
        out.truncate(keep);
    }
    out
}

fuzz_target!(|a: Archive| {
    let bytes = build(&a);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive.tar");
    std::fs::write(&archive, &bytes).unwrap();
    let out = tmp.path().join("out");
    match layerlift_archive::unpack(&Input::Path(archive), &out, &[]) {
        Err(_) => assert!(!out.exists(), "a failed unpack left {}", out.display()),
        Ok(_) => {
            assert!(out.join("index.json").is_file());
            assert!(out.join("oci-layout").is_file());
            for e in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
                let e = e.unwrap();
                let bytes = std::fs::read(e.path()).unwrap();
                assert_eq!(
                    hex(&bytes),
                    e.file_name().to_string_lossy(),
                    "blob bytes match its name"
                );
            }
        }
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "archive.tar" && n != "out")
        .collect();
    assert!(left.is_empty(), "written beside the output: {left:?}");
});
