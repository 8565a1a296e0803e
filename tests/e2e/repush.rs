//! Re-push, end to end against a real `docker-registry`: layers the registry already
//! holds are named by its descriptor and never read from the archive (proved with an archive whose
//! reused layer bytes are corrupt: reading them would fail the diff_id check), a rebuilt image
//! uploads only its changed layer, and the local cache is a hint that a HEAD must confirm (a stale
//! entry means the layer is read, compressed and uploaded again).

use crate::util::{have_tool, podman_archive, sha256_digest};
use layerlift_testkit::Registry;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A layer tar holding one file of `size` bytes derived from `seed`.
fn layer(seed: u64, size: usize) -> Vec<u8> {
    crate::util::layer_tar(&format!("data-{seed}"), seed, size)
}

/// [`podman_archive`] written to `path`.
fn archive(path: &Path, layers: &[Vec<u8>], stored: &[(usize, Vec<u8>)], tag: &str) {
    std::fs::write(path, podman_archive(layers, stored, tag).0).unwrap();
}

fn push(args: &[&str]) -> Output {
    let empty = std::env::temp_dir().join("layerlift-e2e-no-docker-config");
    Command::new(env!("CARGO_BIN_EXE_layerlift-push"))
        .args(args)
        .env("DOCKER_CONFIG", &empty)
        .env_remove("REGISTRY_AUTH_FILE")
        .env("XDG_RUNTIME_DIR", &empty)
        .env("XDG_CONFIG_HOME", &empty)
        .env_remove("LAYERLIFT_CACHE_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run layerlift-push")
}

/// Run a `--json` push that must succeed; its events.
fn push_json(args: &[&str]) -> Vec<Value> {
    let mut all = args.to_vec();
    all.push("--json");
    let o = push(&all);
    assert!(
        o.status.success(),
        "push {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A `--json --no-cache` push of `archive` from standard input.
fn push_stdin(archive: &Path, dest: &str) -> Vec<Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_layerlift-push"))
        .args(["-", dest, "--no-cache", "--json"])
        .env(
            "DOCKER_CONFIG",
            std::env::temp_dir().join("layerlift-e2e-no-docker-config"),
        )
        .stdin(std::fs::File::open(archive).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn events<'a>(ev: &'a [Value], kind: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["event"] == kind).collect()
}

/// (verified, source) of each `layer` event, in order.
fn layer_sources(ev: &[Value]) -> Vec<(bool, String)> {
    events(ev, "layer")
        .iter()
        .map(|e| {
            (
                e["verified"].as_bool().unwrap(),
                e["source"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Digests of the blobs this push uploaded.
fn uploaded(ev: &[Value]) -> Vec<String> {
    events(ev, "blob")
        .iter()
        .filter(|e| e["action"] == "uploaded")
        .map(|e| e["digest"].as_str().unwrap().to_string())
        .collect()
}

fn pushed_digest(ev: &[Value]) -> String {
    ev.iter().find(|e| e["event"] == "result").unwrap()["images"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Pull `reference` with skopeo and check that every layer decompresses to the config's diff_id
/// (gzip), and that the manifest is the pushed one.
fn skopeo_verify(reference: &str, digest: &str, diff_ids: &[String]) {
    if !have_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let o = Command::new("skopeo")
        .args(["copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("dir:{}", dir.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    assert_eq!(sha256_digest(&manifest), digest);
    let m: Value = serde_json::from_slice(&manifest).unwrap();
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len());
    for (l, want) in layers.iter().zip(diff_ids) {
        let hex = &l["digest"].as_str().unwrap()[7..];
        let bytes = std::fs::read(dir.join(hex)).unwrap();
        assert_eq!(sha256_digest(&bytes)[7..], *hex, "blob hashes to its name");
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&bytes[..]), &mut raw)
            .unwrap();
        assert_eq!(
            &sha256_digest(&raw),
            want,
            "layer decompresses to its diff_id"
        );
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    base: Vec<Vec<u8>>,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let base = vec![layer(1, 300_000), layer(2, 200_000), layer(3, 100_000)];
    Setup {
        _tmp: tmp,
        dir,
        base,
    }
}

fn ids(layers: &[Vec<u8>]) -> Vec<String> {
    layers.iter().map(|l| sha256_digest(l)).collect()
}

#[test]
fn reused_layers_are_not_read_and_verify_all_reads_them() {
    let s = setup();
    let reg = Registry::anonymous();
    let dest = format!("{}/app:1", reg.addr());
    let v1 = s.dir.join("v1.tar");
    archive(&v1, &s.base, &[], "app:1");
    let first = push_json(&[v1.to_str().unwrap(), &dest, "--no-cache"]);
    assert_eq!(
        layer_sources(&first),
        vec![(true, "archive".into()); 3],
        "a first push reads every layer"
    );
    assert_eq!(uploaded(&first).len(), 4, "three layers and the config");
    let digest = pushed_digest(&first);

    // The same image, but the bytes stored for layer 2 are garbage of the same length. The
    // registry has that layer: the push names it without reading it, so it cannot notice.
    let mut bad = s.base[1].clone();
    for b in bad.iter_mut().skip(1024).step_by(7) {
        *b ^= 0x5a;
    }
    let tampered = s.dir.join("tampered.tar");
    archive(&tampered, &s.base, &[(1, bad)], "app:1");
    let again = push_json(&[tampered.to_str().unwrap(), &dest, "--no-cache"]);
    assert_eq!(
        layer_sources(&again),
        vec![(false, "registry".into()); 3],
        "every layer is taken from the registry unread"
    );
    assert!(uploaded(&again).is_empty(), "nothing uploaded: {again:?}");
    assert_eq!(pushed_digest(&again), digest, "the same image");

    // --verify-all reads every layer, and so finds the corruption.
    let o = push(&[
        tampered.to_str().unwrap(),
        &dest,
        "--no-cache",
        "--verify-all",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&ids(&s.base)[1][7..]) || err.contains("diff"),
        "names the layer: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    skopeo_verify(&dest, &digest, &ids(&s.base));
}

#[test]
fn a_rebuilt_image_uploads_only_its_changed_layer() {
    let s = setup();
    let reg = Registry::anonymous();
    let dest = format!("{}/team/app:latest", reg.addr());
    let v1 = s.dir.join("v1.tar");
    archive(&v1, &s.base, &[], "app:latest");
    push_json(&[v1.to_str().unwrap(), &dest, "--no-cache"]);

    let mut rebuilt = s.base.clone();
    rebuilt[2] = layer(4, 150_000);
    let v2 = s.dir.join("v2.tar");
    archive(&v2, &rebuilt, &[], "app:latest");
    let ev = push_json(&[v2.to_str().unwrap(), &dest, "--no-cache"]);
    assert_eq!(
        layer_sources(&ev),
        vec![
            (false, "registry".to_string()),
            (false, "registry".to_string()),
            (true, "archive".to_string())
        ]
    );
    let layers = events(&ev, "layer");
    let new_layer = layers[2]["digest"].as_str().unwrap().to_string();
    let mut up = uploaded(&ev);
    up.sort();
    let config = events(&ev, "blob")
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_string())
        .find(|d| *d != new_layer && !layers.iter().any(|l| l["digest"] == d.as_str()))
        .expect("the config's blob event");
    let mut want = vec![new_layer, config];
    want.sort();
    assert_eq!(up, want, "only the changed layer and the new config go up");
    skopeo_verify(&dest, &pushed_digest(&ev), &ids(&rebuilt));

    // From a pipe nothing can be skipped unread, but a layer whose name states a diff_id the
    // registry has is only hashed (checked against its name), not compressed, not uploaded.
    let piped = s.dir.join("v3.tar");
    let mut again = rebuilt.clone();
    again[2] = layer(5, 120_000);
    archive(&piped, &again, &[], "app:latest");
    let ev = push_stdin(&piped, &dest);
    assert_eq!(
        layer_sources(&ev),
        vec![
            (true, "registry".to_string()),
            (true, "registry".to_string()),
            (true, "archive".to_string())
        ]
    );
    assert_eq!(uploaded(&ev).len(), 2, "the new layer and the config");
    skopeo_verify(&dest, &pushed_digest(&ev), &ids(&again));
    // A piped layer that does not match the name it states fails the push.
    let mut bad = again[0].clone();
    bad[600] ^= 1;
    let tampered = s.dir.join("v3-tampered.tar");
    archive(&tampered, &again, &[(0, bad)], "app:latest");
    let o = Command::new(env!("CARGO_BIN_EXE_layerlift-push"))
        .args(["-", &dest, "--no-cache"])
        .stdin(std::fs::File::open(&tampered).unwrap())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("its name states"), "{err}");

    // --reuse-from: a new repository, whose layers come from the image above (mounted).
    let other = format!("{}/team/other:1", reg.addr());
    let ev = push_json(&[
        piped.to_str().unwrap(),
        &other,
        "--no-cache",
        "--reuse-from",
        &dest,
    ]);
    // Learnt from another repository: each blob was read back and checked against its diff_id.
    assert_eq!(layer_sources(&ev), vec![(true, "registry".into()); 3]);
    let mounted = events(&ev, "blob")
        .iter()
        .filter(|e| e["action"] == "mounted")
        .count();
    assert_eq!(mounted, 3, "{ev:?}");
    skopeo_verify(&other, &pushed_digest(&ev), &ids(&again));
}

#[test]
fn the_local_cache_is_a_hint_a_head_confirms() {
    let s = setup();
    let cache = s.dir.join("cache");
    let cache_arg = cache.to_str().unwrap();
    let v1 = s.dir.join("v1.tar");
    archive(&v1, &s.base, &[], "app:1");

    // A first push fills the cache (one entry per compressed layer).
    let reg = Registry::anonymous();
    let first = push_json(&[
        v1.to_str().unwrap(),
        &format!("{}/app:1", reg.addr()),
        "--cache-dir",
        cache_arg,
    ]);
    let entries = std::fs::read_dir(cache.join("layers-v1")).unwrap().count();
    assert_eq!(entries, 3);

    // Another tag of the same repository: the registry's tag lookup finds nothing, the cache
    // names the blobs, a HEAD confirms them.
    let ev = push_json(&[
        v1.to_str().unwrap(),
        &format!("{}/app:2", reg.addr()),
        "--cache-dir",
        cache_arg,
    ]);
    // Learnt from the cache: each blob was read back and checked against its diff_id.
    assert_eq!(layer_sources(&ev), vec![(true, "cache".into()); 3]);
    assert_eq!(pushed_digest(&ev), pushed_digest(&first));

    // A registry that never saw these blobs: every cache entry is stale, so every layer is read,
    // compressed and uploaded again — to the same digests (compression is deterministic).
    let fresh = Registry::anonymous();
    let dest = format!("{}/app:1", fresh.addr());
    let ev = push_json(&[v1.to_str().unwrap(), &dest, "--cache-dir", cache_arg]);
    assert_eq!(layer_sources(&ev), vec![(true, "archive".into()); 3]);
    assert_eq!(uploaded(&ev).len(), 4);
    assert_eq!(pushed_digest(&ev), pushed_digest(&first));
    skopeo_verify(&dest, &pushed_digest(&ev), &ids(&s.base));
}

/// The cache under load: eight pushes at once of different archives that share base
/// layers, all writing one cache directory. Every push lands, the cache holds one whole entry per
/// distinct layer, and a later push finds all of its layers through it.
#[test]
fn concurrent_pushes_share_one_cache_consistently() {
    let s = setup();
    let reg = Registry::anonymous();
    let cache = s.dir.join("cache");
    let archives: Vec<PathBuf> = (0..8u64)
        .map(|i| {
            let mut layers = s.base.clone();
            layers.push(layer(100 + i, 50_000));
            let path = s.dir.join(format!("img{i}.tar"));
            archive(&path, &layers, &[], &format!("img{i}:1"));
            path
        })
        .collect();
    let children: Vec<_> = archives
        .iter()
        .enumerate()
        .map(|(i, a)| {
            Command::new(env!("CARGO_BIN_EXE_layerlift-push"))
                .arg(a)
                .arg(format!("{}/load/img{i}:1", reg.addr()))
                .arg("-q")
                .arg("--cache-dir")
                .arg(&cache)
                .env("DOCKER_CONFIG", s.dir.join("no-docker-config"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "push {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let line = String::from_utf8_lossy(&o.stdout);
        let digest = line.trim().rsplit_once('@').unwrap().1.to_string();
        assert_eq!(
            crate::util::tag_digest(&reg, &format!("load/img{i}"), "1").as_deref(),
            Some(digest.as_str())
        );
    }
    let entries: Vec<Value> = std::fs::read_dir(cache.join("layers-v1"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    assert_eq!(
        entries.len(),
        3 + 8,
        "one entry per distinct layer, no partial files"
    );
    // A ninth push of the first image under a new tag of its repository: every layer through the
    // cache (the tag is new, so the registry lookup finds nothing).
    let ev = push_json(&[
        archives[0].to_str().unwrap(),
        &format!("{}/load/img0:again", reg.addr()),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    assert_eq!(layer_sources(&ev), vec![(true, "cache".into()); 4]);
}

/// A push that must fail: (exit code, stderr).
fn push_fails(args: &[&str], stdin: Option<&Path>) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_layerlift-push"));
    cmd.args(args).env(
        "DOCKER_CONFIG",
        std::env::temp_dir().join("layerlift-e2e-no-docker-config"),
    );
    match stdin {
        Some(f) => cmd.stdin(std::fs::File::open(f).unwrap()),
        None => cmd.stdin(Stdio::null()),
    };
    let o = cmd.output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The cache entry (file, JSON) that names `diff_id`.
fn cache_entry(cache: &Path, diff_id: &str) -> (PathBuf, Value) {
    std::fs::read_dir(cache.join("layers-v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (p, v)
        })
        .find(|(_, v)| v["key"]["diffId"] == diff_id)
        .expect("a cache entry for the layer")
}

/// A poisoned layer mapping never makes a wrong image that exits 0. A cache entry that names
/// another layer's blob, and an image in a `--reuse-from` repository whose config pairs its
/// diff_ids with the wrong blobs, are both caught when the blob is read back: the push exits 1
/// with one line naming the layer and where the pairing came from, and tags nothing. The bad
/// cache entry is removed, so the next push reads the layer and succeeds.
#[test]
fn poisoned_layer_mappings_fail_the_push_and_tag_nothing() {
    let s = setup();
    let reg = Registry::anonymous();
    let ids = ids(&s.base);
    let v1 = s.dir.join("v1.tar");
    archive(&v1, &s.base, &[], "app:1");
    let cache = s.dir.join("cache");
    let cache_arg = cache.to_str().unwrap();
    push_json(&[
        v1.to_str().unwrap(),
        &format!("{}/app:1", reg.addr()),
        "--cache-dir",
        cache_arg,
    ]);

    // The cache: layer 1's entry now names layer 2's blob (which the registry has).
    let (poisoned, mut entry) = cache_entry(&cache, &ids[0]);
    let (_, other) = cache_entry(&cache, &ids[1]);
    entry["digest"] = other["digest"].clone();
    entry["size"] = other["size"].clone();
    std::fs::write(&poisoned, entry.to_string()).unwrap();
    let dest = format!("{}/app:2", reg.addr());
    let (code, err) = push_fails(
        &[v1.to_str().unwrap(), &dest, "--cache-dir", cache_arg, "-q"],
        None,
    );
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(&ids[0]) && err.contains("the local cache") && err.contains(&ids[1]),
        "names the layer, where the pairing came from and what the blob holds: {err}"
    );
    assert_eq!(
        crate::util::tag_digest(&reg, "app", "2"),
        None,
        "nothing tagged"
    );
    assert!(!poisoned.exists(), "the bad entry is removed");
    let ev = push_json(&[v1.to_str().unwrap(), &dest, "--cache-dir", cache_arg]);
    assert_eq!(
        layer_sources(&ev),
        vec![
            (true, "archive".into()),
            (true, "cache".into()),
            (true, "cache".into())
        ]
    );
    skopeo_verify(&dest, &pushed_digest(&ev), &ids);

    // --reuse-from: an image whose manifest swaps the blobs of its first two layers, so that its
    // config pairs diff_id 1 with layer 2's blob and the other way round.
    let layout = s.dir.join("evil");
    crate::util::write_layout(
        &layout,
        &[crate::util::Image {
            name: "evil".into(),
            layers: s.base.clone(),
        }],
        true,
    );
    swap_first_two_layers(&layout);
    let evil = format!("{}/evil:1", reg.addr());
    push_json(&[layout.to_str().unwrap(), &evil, "--no-cache"]);
    let victim = format!("{}/victim:1", reg.addr());
    let (code, err) = push_fails(
        &[
            v1.to_str().unwrap(),
            &victim,
            "--no-cache",
            "--reuse-from",
            &evil,
            "-q",
        ],
        None,
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("an image of that repository") && err.contains("evil"),
        "{err}"
    );
    assert_eq!(crate::util::tag_digest(&reg, "victim", "1"), None);
    // The same from a pipe, where the layers are hashed against their names and the registry's
    // blobs stand in for them.
    let (code, err) = push_fails(
        &["-", &victim, "--no-cache", "--reuse-from", &evil, "-q"],
        Some(&v1),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("an image of that repository"), "{err}");
    assert_eq!(crate::util::tag_digest(&reg, "victim", "1"), None);
}

/// Rewrite the layout's one image so that its manifest lists its first two layers' blobs the
/// other way round (the config is unchanged).
fn swap_first_two_layers(layout: &Path) {
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let old = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(blob(&old)).unwrap()).unwrap();
    manifest["layers"].as_array_mut().unwrap().swap(0, 1);
    let bytes = manifest.to_string().into_bytes();
    let digest = sha256_digest(&bytes);
    std::fs::write(blob(&digest), &bytes).unwrap();
    index["manifests"][0]["digest"] = digest.into();
    index["manifests"][0]["size"] = bytes.len().into();
    std::fs::write(&index_path, index.to_string()).unwrap();
}
