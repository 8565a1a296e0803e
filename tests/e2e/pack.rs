//! `layerlift-pack`: OCI layouts written back as archives, read by the tools that load them — the
//! machine's Docker daemon (`docker load` from a file and from a pipe, then `docker run`), podman
//! (`podman load`) and skopeo (`oci-archive:`) — and by `layerlift-unpack` again (the round trip
//! gives the same layout).
//!
//! The Docker tests follow `docker.rs`: images built `FROM scratch` with Debian's static busybox by
//! the daemon's classic builder, tagged `layerlift-e2e/<name>:<pid>`, every reference removed by a
//! `Cleanup` guard, skipped only with `LAYERLIFT_SKIP_DOCKER`.

use crate::docker::{
    classic_build, context, docker, docker_ok, docker_test, inspect, local_tag, read_marker,
    run_in, save_file,
};
use crate::fixtures::real_tool;
use crate::util::{
    Image, Tmpfs, have_tool, layer_tar, sha256_digest, snapshot, text, write_layout,
};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn pack_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_layerlift-pack"))
}

/// `layerlift-pack LAYOUT OUT ARGS… -q`; panics unless it succeeded; its output.
fn pack(layout: &Path, out: &Path, args: &[&str]) -> Output {
    let o = pack_cmd()
        .arg(layout)
        .arg(out)
        .args(args)
        .arg("-q")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "pack {}: {}",
        layout.display(),
        text(&o).1
    );
    o
}

/// `layerlift-pack LAYOUT - ARGS…`: the archive it wrote on standard output.
fn pack_stdout(layout: &Path, args: &[&str]) -> Vec<u8> {
    let o = pack_cmd()
        .arg(layout)
        .arg("-")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "pack -: {}", text(&o).1);
    o.stdout
}

/// `layerlift-pack … --json` to a file: its report.
fn pack_json(layout: &Path, out: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_slice(&pack(layout, out, &all).stdout).unwrap()
}

fn unpack(archive: &Path, dir: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_layerlift-unpack"))
        .arg(archive)
        .arg(dir)
        .arg("-q")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "unpack {}: {}",
        archive.display(),
        text(&o).1
    );
}

fn convert(from: &Path, to: &Path, codec: &str) {
    let o = Command::new(env!("CARGO_BIN_EXE_layerlift-convert"))
        .arg(from)
        .arg(to)
        .args(["--compression", codec, "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "convert {codec}: {}", text(&o).1);
}

/// The members of a tar: name → bytes.
fn members(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(archive);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

fn member(archive: &[u8], name: &str) -> Vec<u8> {
    members(archive)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in the archive"))
        .1
}

/// `docker load -i FILE`; what it printed.
fn docker_load_file(file: &Path) -> String {
    docker_ok(&["load", "-i", file.to_str().unwrap()])
}

/// `layerlift-pack LAYOUT - ARGS… | docker load`; what docker printed.
fn docker_load_piped(layout: &Path, args: &[&str]) -> String {
    let mut packer = pack_cmd()
        .arg(layout)
        .arg("-")
        .args(args)
        .arg("-q")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let load = Command::new("docker")
        .arg("load")
        .stdin(Stdio::from(packer.stdout.take().unwrap()))
        .output()
        .unwrap();
    let p = packer.wait_with_output().unwrap();
    assert!(p.status.success(), "layerlift-pack -: {}", text(&p).1);
    let (out, err) = text(&load);
    assert!(load.status.success(), "docker load: {err}{out}");
    out
}

/// An image `docker save`d, unpacked, converted to zstd and back to gzip, packed, loaded into the
/// daemon it came from — from a file and from a pipe — keeps its image ID and runs. The zstd
/// layout is packed too: its layers are written decompressed, which every Docker loads (Docker
/// 20.10 refuses zstd layers: "archive/tar: invalid tar header").
#[test]
fn docker_loads_a_packed_image_converted_to_zstd_and_back() {
    let Some(mut t) = docker_test("docker_loads_a_packed_image_converted_to_zstd_and_back") else {
        return;
    };
    let ctx = context("pack", &[("same.txt", b"same\n")]);
    let marker = read_marker(ctx.path());
    let local = local_tag("pack");
    t.cleanup.add(&local);
    let id = classic_build(
        ctx.path(),
        "FROM scratch\nCOPY busybox marker /bin/\nCOPY same.txt /same.txt\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo l3 > /l3.txt\"]\n",
        &local,
        &[],
    );
    let work = t.work.path().to_path_buf();
    let saved = work.join("saved.tar");
    save_file(&[&local], &saved);
    t.cleanup.rmi(&local);

    let (plain, zstd, gzip) = (work.join("plain"), work.join("zstd"), work.join("gzip"));
    unpack(&saved, &plain);
    convert(&plain, &zstd, "zstd");
    convert(&zstd, &gzip, "gzip");

    let script = "cat /bin/marker /same.txt /l3.txt";
    let want = format!("{marker}same\nl3\n");
    let packed = work.join("gzip.tar");
    let report = pack_json(&gzip, &packed, &[]);
    assert_eq!(report["images"][0]["config"], id.as_str(), "{report}");
    assert_eq!(report["images"][0]["names"][0], local.as_str(), "{report}");
    assert_eq!(report["decompressed"], 0, "{report}");
    // Every layer of the archive is the gzip blob of the layout.
    let archive = std::fs::read(&packed).unwrap();
    let items: Value = serde_json::from_slice(&member(&archive, "manifest.json")).unwrap();
    for layer in items[0]["Layers"].as_array().unwrap() {
        assert!(member(&archive, layer.as_str().unwrap()).starts_with(&[0x1f, 0x8b]));
    }

    for what in ["gzip from a file", "gzip from a pipe", "zstd from a pipe"] {
        t.cleanup.add(&local);
        let out = match what {
            "gzip from a file" => docker_load_file(&packed),
            "gzip from a pipe" => docker_load_piped(&gzip, &[]),
            _ => docker_load_piped(&zstd, &[]),
        };
        assert!(
            out.contains(&format!("Loaded image: {local}")),
            "{what}: {out}"
        );
        assert_eq!(
            inspect(&local, "{{.Id}}"),
            id,
            "{what}: not the image ID docker built"
        );
        assert_eq!(run_in(&local, script), want, "{what}: docker run");
        t.cleanup.rmi(&local);
    }

    // The zstd layout's archive holds its layers decompressed, named by their diff_ids.
    let from_zstd = work.join("zstd.tar");
    let report = pack_json(&zstd, &from_zstd, &[]);
    assert_eq!(report["decompressed"], 3, "{report}");
    let archive = std::fs::read(&from_zstd).unwrap();
    let items: Value = serde_json::from_slice(&member(&archive, "manifest.json")).unwrap();
    for layer in items[0]["Layers"].as_array().unwrap() {
        let name = layer.as_str().unwrap();
        let bytes = member(&archive, name);
        assert_eq!(
            sha256_digest(&bytes).trim_start_matches("sha256:"),
            name.trim_start_matches("blobs/sha256/")
        );
        assert_eq!(&bytes[257..262], b"ustar", "{name} is not a plain tar");
    }
}

/// A layout of two images, one under two names, sharing their busybox layer: the archive holds
/// that layer once, `manifest.json` one item per image with both names, and `docker load` gives
/// every name its image ID. `--image` with `--tag` packs one of them under a new name.
#[test]
fn docker_loads_every_image_of_a_multi_image_layout() {
    let Some(mut t) = docker_test("docker_loads_every_image_of_a_multi_image_layout") else {
        return;
    };
    let work = t.work.path().to_path_buf();
    let (a1, a2, b) = (
        local_tag("pack-multi-a"),
        local_tag("pack-multi-a2"),
        local_tag("pack-multi-b"),
    );
    let mut ids = Vec::new();
    let mut markers = Vec::new();
    for tag in [&a1, &b] {
        let ctx = context("pack-multi", &[]);
        markers.push(read_marker(ctx.path()));
        t.cleanup.add(tag);
        // busybox alone in the first layer: the same layer in both images.
        ids.push(classic_build(
            ctx.path(),
            "FROM scratch\nCOPY busybox /bin/\nCOPY marker /marker\n",
            tag,
            &[],
        ));
    }
    t.cleanup.add(&a2);
    docker_ok(&["tag", &a1, &a2]);
    let saved = work.join("multi.tar");
    save_file(&[&a1, &a2, &b], &saved);
    for tag in [&a1, &a2, &b] {
        t.cleanup.rmi(tag);
    }
    let layout = work.join("layout");
    unpack(&saved, &layout);

    let packed = work.join("packed.tar");
    let report = pack_json(&layout, &packed, &[]);
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{report}");
    let archive = std::fs::read(&packed).unwrap();
    let items: Value = serde_json::from_slice(&member(&archive, "manifest.json")).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 2, "{items}");
    let shared = items[0]["Layers"][0].as_str().unwrap();
    assert_eq!(items[1]["Layers"][0], shared, "{items}");
    let names: Vec<String> = members(&archive).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names.iter().filter(|n| *n == shared).count(),
        1,
        "{names:?}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are not sorted");
    let mut tags: Vec<String> = items
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["RepoTags"].as_array().unwrap().clone())
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    let mut want_tags = vec![a1.clone(), a2.clone(), b.clone()];
    want_tags.sort();
    assert_eq!(tags, want_tags);

    for tag in [&a1, &a2, &b] {
        t.cleanup.add(tag);
    }
    docker_load_file(&packed);
    for (tag, id, marker) in [
        (&a1, &ids[0], &markers[0]),
        (&a2, &ids[0], &markers[0]),
        (&b, &ids[1], &markers[1]),
    ] {
        assert_eq!(&inspect(tag, "{{.Id}}"), id, "{tag}");
        assert_eq!(&run_in(tag, "cat /marker"), marker, "{tag}");
    }
    for tag in [&a1, &a2, &b] {
        t.cleanup.rmi(tag);
    }

    // One image under a new name.
    let renamed = local_tag("pack-multi-renamed");
    let one = work.join("one.tar");
    pack(&layout, &one, &["--image", &b, "--tag", &renamed]);
    let items: Value =
        serde_json::from_slice(&member(&std::fs::read(&one).unwrap(), "manifest.json")).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 1, "{items}");
    t.cleanup.add(&renamed);
    docker_load_file(&one);
    assert_eq!(inspect(&renamed, "{{.Id}}"), ids[1]);
    t.cleanup.rmi(&renamed);
    assert!(
        !docker(&["inspect", &b]).status.success(),
        "{b} was loaded too"
    );
}

/// Two generated images and a two-platform index of them.
fn two_image_layout(dir: &Path) -> (Vec<String>, String) {
    let images = [
        Image {
            name: "one:1".into(),
            layers: vec![layer_tar("a", 1, 3000), layer_tar("b", 2, 5000)],
        },
        Image {
            name: "two:1".into(),
            layers: vec![layer_tar("a", 1, 3000), layer_tar("c", 3, 4000)],
        },
    ];
    let digests = write_layout(dir, &images, true);
    // An index naming both manifests as amd64 and arm64, as a third entry.
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let size = |d: &str| std::fs::metadata(blob(d)).unwrap().len();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digests[0],
             "size": size(&digests[0]), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digests[1],
             "size": size(&digests[1]), "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ],
    })
    .to_string();
    let index_digest = sha256_digest(index.as_bytes());
    std::fs::write(blob(&index_digest), &index).unwrap();
    let mut top: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    top["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest, "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi:1"},
        }));
    std::fs::write(dir.join("index.json"), top.to_string()).unwrap();
    (digests, index_digest)
}

/// The config digest and layer digests of manifest `digest` in the layout `dir`.
fn layout_image(dir: &Path, digest: &str) -> (String, Vec<String>) {
    let path = dir
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let m: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let layers = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    (m["config"]["digest"].as_str().unwrap().to_string(), layers)
}

/// `--format oci`: skopeo reads the archive — the manifest it finds is the layout's, byte for
/// byte; `skopeo copy oci-archive:` gives the same config and layers; a multi-platform index is
/// kept whole (`skopeo copy --all` copies both platforms), also when the layout lacks one of its
/// platforms. `--format docker` takes one platform of that index: `--platform`'s, or the
/// machine's.
#[test]
fn oci_archives_read_back_in_skopeo_and_platforms_for_docker() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let (digests, index_digest) = two_image_layout(&layout);

    // --format docker: the index's amd64 manifest by default (this machine), arm64 when asked.
    let config_of = |archive: &Path| -> String {
        let items: Value =
            serde_json::from_slice(&member(&std::fs::read(archive).unwrap(), "manifest.json"))
                .unwrap();
        items[0]["Config"]
            .as_str()
            .unwrap()
            .replace("blobs/sha256/", "sha256:")
    };
    let docker_tar = dir.path().join("multi-docker.tar");
    if layerlift_manifest::host_platform() == "linux/amd64" {
        pack(&layout, &docker_tar, &["--image", "multi:1"]);
        assert_eq!(config_of(&docker_tar), layout_image(&layout, &digests[0]).0);
    }
    pack(
        &layout,
        &docker_tar,
        &["--image", "multi:1", "--platform", "linux/arm64"],
    );
    assert_eq!(config_of(&docker_tar), layout_image(&layout, &digests[1]).0);
    let o = pack_cmd()
        .arg(&layout)
        .arg(&docker_tar)
        .args(["--image", "multi:1", "--platform", "linux/s390x"])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("has no image for linux/s390x") && err.contains("linux/amd64, linux/arm64/v8"),
        "{err}"
    );

    // An index whose arm64 manifest the layout lacks (a containerd save of one platform) is kept
    // whole in --format oci: the missing blob is left out and counted; an image that is itself
    // missing is refused.
    let partial = dir.path().join("partial");
    crate::util::copy_dir(&layout, &partial);
    std::fs::remove_file(
        partial
            .join("blobs/sha256")
            .join(digests[1].trim_start_matches("sha256:")),
    )
    .unwrap();
    let partial_tar = dir.path().join("partial.tar");
    let report = pack_json(
        &partial,
        &partial_tar,
        &["--format", "oci", "--image", "multi:1"],
    );
    assert_eq!(report["missing"], 1, "{report}");
    let names: Vec<String> = members(&std::fs::read(&partial_tar).unwrap())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let blob_name = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    assert!(names.contains(&blob_name(&index_digest)), "{names:?}");
    assert!(names.contains(&blob_name(&digests[0])), "{names:?}");
    assert!(!names.contains(&blob_name(&digests[1])), "{names:?}");
    let o = pack_cmd()
        .arg(&partial)
        .arg(&partial_tar)
        .args(["--format", "oci", "--image", "two:1"])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("blob {} is missing", digests[1])),
        "{err}"
    );

    if !have_tool("skopeo") {
        return;
    }
    let skopeo = |args: &[&str]| -> Vec<u8> {
        let o = Command::new("skopeo").args(args).output().unwrap();
        assert!(
            o.status.success(),
            "skopeo {}: {}",
            args.join(" "),
            text(&o).1
        );
        o.stdout
    };
    // One image.
    let one = dir.path().join("one.tar");
    pack(&layout, &one, &["--format", "oci", "--image", "one:1"]);
    let oci_ref = format!("oci-archive:{}", one.display());
    let raw = skopeo(&["inspect", "--raw", &oci_ref]);
    assert_eq!(sha256_digest(&raw), digests[0]);
    let copied = dir.path().join("copied");
    skopeo(&[
        "copy",
        "-q",
        &oci_ref,
        &format!("oci:{}:x", copied.display()),
    ]);
    let entry: Value =
        serde_json::from_slice(&std::fs::read(copied.join("index.json")).unwrap()).unwrap();
    let copied_digest = entry["manifests"][0]["digest"].as_str().unwrap();
    assert_eq!(
        layout_image(&copied, copied_digest),
        layout_image(&layout, &digests[0])
    );

    // Every image; skopeo finds each by its ref.name, and the index whole.
    let all = dir.path().join("all.tar");
    pack(&layout, &all, &["--format", "oci"]);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}:two:1", all.display()),
    ]);
    assert_eq!(sha256_digest(&raw), digests[1]);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}:multi:1", all.display()),
    ]);
    assert_eq!(sha256_digest(&raw), index_digest);
    let both = dir.path().join("both");
    skopeo(&[
        "copy",
        "-q",
        "--all",
        &format!("oci-archive:{}:multi:1", all.display()),
        &format!("oci:{}:m", both.display()),
    ]);
    for d in &digests {
        assert_eq!(layout_image(&both, d), layout_image(&layout, d));
    }
}

/// `unpack X`, `pack`, `unpack` of the packed archive gives the same layout (index.json,
/// manifests, every blob), for docker saves of every era in tests/fixtures and in both formats;
/// packing twice — to a file, to standard output, through `layerlift pack` — gives the same bytes.
#[test]
fn pack_round_trips_docker_saves_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    for fixture in [
        "wagoodman-dive/.data/test-docker-image.tar",
        "google-go-containerregistry/pkg/v1/tarball/testdata/test_link.tar",
        "generated-local/podman-4.3.1/podman-docker-archive-multi.tar",
    ] {
        let name = fixture.rsplit('/').next().unwrap();
        let work = dir.path().join(name);
        let layout = work.join("layout");
        unpack(&real_tool(fixture), &layout);
        for format in ["docker", "oci"] {
            let first = work.join(format!("{format}-1.tar"));
            let second = work.join(format!("{format}-2.tar"));
            pack(&layout, &first, &["--format", format]);
            let o = Command::new(env!("CARGO_BIN_EXE_layerlift"))
                .arg("pack")
                .arg(&layout)
                .arg(&second)
                .args(["--format", format, "-q"])
                .output()
                .unwrap();
            assert!(o.status.success(), "layerlift pack: {}", text(&o).1);
            let bytes = std::fs::read(&first).unwrap();
            assert!(
                bytes == std::fs::read(&second).unwrap(),
                "{name} {format}: two packs differ"
            );
            assert!(
                bytes == pack_stdout(&layout, &["--format", format]),
                "{name} {format}: file and stdout differ"
            );
            // Standard output sent to a file (opened for writing only: nothing is read back).
            let redirected = work.join(format!("{format}-redirected.tar"));
            let o = pack_cmd()
                .arg(&layout)
                .arg("-")
                .args(["--format", format, "-q"])
                .stdout(std::fs::File::create(&redirected).unwrap())
                .output()
                .unwrap();
            assert!(o.status.success(), "pack - > FILE: {}", text(&o).1);
            assert!(
                bytes == std::fs::read(&redirected).unwrap(),
                "{name} {format}: file and stdout sent to a file differ"
            );
            let again = work.join(format!("{format}-unpacked"));
            unpack(&first, &again);
            assert_eq!(
                snapshot(&again),
                snapshot(&layout),
                "{name} {format}: unpacking the packed archive gives another layout"
            );
        }
    }
}

/// Files left in `dir`, sorted.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Bad input: one line on standard error naming the problem, exit 1 (2 for a command line that
/// cannot work), nothing on standard output, and no file left beside OUT — no archive, no temp file.
#[test]
fn bad_input_gives_one_line_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let digests = write_layout(
        &layout,
        &[Image {
            name: "app:1".into(),
            layers: vec![
                layer_tar("a", 1, 3000),
                layer_tar("b", 2, 3000),
                layer_tar("c", 3, 3 << 20),
            ],
        }],
        false,
    );
    let (_, layers) = layout_image(&layout, &digests[0]);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("image.tar");

    let run = |layout: &Path, target: &str, args: &[&str]| -> (Option<i32>, String, usize) {
        let o = pack_cmd()
            .arg(layout)
            .arg(target)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (stdout, stderr) = text(&o);
        assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
        assert!(stderr.starts_with("layerlift-pack: error: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        (o.status.code(), stderr, stdout.len())
    };
    let out_arg = out.to_str().unwrap();
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };

    // No layout.
    let (code, err, _) = run(&dir.path().join("nope"), out_arg, &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("nope: no such file or directory"), "{err}");
    // A directory that is not a layout.
    let (code, err, _) = run(&out_dir, out_arg, &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not an OCI image layout"), "{err}");
    // An --image no entry has.
    let (code, err, _) = run(&layout, out_arg, &["--image", "other:2"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--image other:2: no such image") && err.contains("app:1"),
        "{err}"
    );
    // Options that cannot work.
    let (code, err, _) = run(
        &layout,
        out_arg,
        &["--format", "oci", "--platform", "linux/amd64"],
    );
    assert_eq!(code, Some(2), "{err}");
    let (code, err, _) = run(&layout, "-", &["--json"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err, _) = run(&layout, out_arg, &["--tag", "app@sha256:abc"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(listing(&out_dir).is_empty(), "{:?}", listing(&out_dir));

    // A layer changed in place (same size, other bytes): found while it is copied, after the
    // archive was started; the temp file is removed.
    let saved = std::fs::read(blob(&layers[1])).unwrap();
    let mut bad = saved.clone();
    bad[600] ^= 1;
    std::fs::write(blob(&layers[1]), &bad).unwrap();
    let (code, err, _) = run(&layout, out_arg, &[]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("blob {} changed", layers[1])),
        "{err}"
    );
    assert!(listing(&out_dir).is_empty(), "{:?}", listing(&out_dir));
    std::fs::write(blob(&layers[1]), &saved).unwrap();
    // The same for a layer large enough to span many pipe buffers, copied by the kernel while a
    // hashing thread reads it, changed near its end, into a file and down a pipe (which never gets
    // the end-of-archive blocks: the archive stops inside or after the layer's entry, wherever
    // the hashing found it wrong).
    let big = &layers[2];
    let saved = std::fs::read(blob(big)).unwrap();
    let mut bad = saved.clone();
    let at = bad.len() - 2000;
    bad[at] ^= 1;
    std::fs::write(blob(big), &bad).unwrap();
    let (code, err, _) = run(&layout, out_arg, &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains(&format!("blob {big} changed")), "{err}");
    assert!(listing(&out_dir).is_empty(), "{:?}", listing(&out_dir));
    let (code, err, written) = run(&layout, "-", &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains(&format!("blob {big} changed")), "{err}");
    std::fs::write(blob(big), &saved).unwrap();
    let whole = pack_cmd().arg(&layout).arg("-").output().unwrap();
    assert!(whole.status.success());
    let whole = whole.stdout.len();
    assert!(
        written > 0 && written + 1024 <= whole,
        "{written} of {whole}"
    );

    // A missing layer, to a file and to standard output: refused before anything is written.
    std::fs::remove_file(blob(&layers[1])).unwrap();
    for format in ["docker", "oci"] {
        let (code, err, _) = run(&layout, out_arg, &["--format", format]);
        assert_eq!(code, Some(1));
        assert!(
            err.contains(&format!("blob {} is missing", layers[1])),
            "{err}"
        );
        let (code, _, stdout) = run(&layout, "-", &["--format", format]);
        assert_eq!((code, stdout), (Some(1), 0));
    }
    assert!(listing(&out_dir).is_empty(), "{:?}", listing(&out_dir));

    // An existing archive is left as it was by a failed pack.
    std::fs::write(&out, b"old").unwrap();
    let (code, _, _) = run(&layout, out_arg, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
    assert_eq!(listing(&out_dir), std::slice::from_ref(&out));
}

/// `podman load` (as root, the storage podman sets up by itself) of a packed docker-archive — from
/// a file and from a pipe, with gzip layers and with a layout converted to zstd — keeps the image
/// ID: the config digest. (`podman run` is not tried: setting a container's rlimits is not
/// permitted on these machines.)
#[test]
fn podman_loads_packed_archives_with_the_same_id() {
    if !have_tool("podman") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let unique = format!("{} {:?}", std::process::id(), std::time::SystemTime::now());
    let name = format!("layerlift-e2e/pack-podman:{}", std::process::id());
    let digests = write_layout(
        &layout,
        &[Image {
            name: name.clone(),
            layers: vec![layer_tar(&unique, 7, 2000), layer_tar("b", 8, 3000)],
        }],
        true,
    );
    let id = layout_image(&layout, &digests[0]).0;
    let zstd = dir.path().join("zstd");
    convert(&layout, &zstd, "zstd");
    let podman = |args: &[&str]| Command::new("podman").args(args).output().unwrap();
    let remove = || {
        let _ = podman(&["rmi", "-f", &id]);
    };
    remove();
    let file = dir.path().join("image.tar");
    pack(&layout, &file, &[]);
    for (what, from) in [
        ("gzip, file", None),
        ("gzip, pipe", Some(&layout)),
        ("zstd, pipe", Some(&zstd)),
    ] {
        let o = match from {
            None => podman(&["load", "-i", file.to_str().unwrap()]),
            Some(l) => {
                let archive = pack_stdout(l, &[]);
                let mut child = Command::new("podman")
                    .arg("load")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                std::io::Write::write_all(&mut child.stdin.take().unwrap(), &archive).unwrap();
                child.wait_with_output().unwrap()
            }
        };
        let (out, err) = text(&o);
        if !o.status.success() {
            remove();
        }
        assert!(o.status.success(), "podman load ({what}): {err}{out}");
        assert!(
            out.contains(&format!("Loaded image: localhost/{name}")),
            "{what}: {out}"
        );
        let o = podman(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &format!("localhost/{name}"),
        ]);
        let got = text(&o).0.trim().to_string();
        remove();
        assert_eq!(
            format!("sha256:{got}"),
            id,
            "podman load ({what}): not the config digest"
        );
    }
}

/// OUT on a disk too small for the archive (a 4 MiB tmpfs; root only): one line that names OUT
/// and says the disk is full, and nothing left on that disk. Down a pipe its reader closes early,
/// the line names standard output.
#[test]
fn a_full_disk_or_a_closed_pipe_is_named() {
    if std::env::var_os("LAYERLIFT_SKIP_ROOT").is_some() {
        eprintln!("skip a_full_disk_or_a_closed_pipe_is_named: LAYERLIFT_SKIP_ROOT is set");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    write_layout(
        &layout,
        &[Image {
            name: "app:1".into(),
            layers: vec![layer_tar("big", 7, 6 << 20)],
        }],
        false,
    );
    let tmp = Tmpfs::mount("4m");
    let out = tmp.path().join("app.tar");
    let o = pack_cmd().arg(&layout).arg(&out).output().unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("layerlift-pack: error: {}", out.display()))
            && err.contains("No space left on device"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");

    let mut child = pack_cmd()
        .arg(&layout)
        .arg("-")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 4096];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    let o = child.wait_with_output().unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("layerlift-pack: error: standard output: writing the archive: ")
            && err.contains("Broken pipe"),
        "{err}"
    );
}
