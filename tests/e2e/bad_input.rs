//! The bad-input corpus (`target/fixtures/bad/`, made by `cargo xtask fixtures`,
//! xtask/src/bad_fixtures.rs): every malformed archive must make `layerlift-unpack` exit 1 with
//! one line that names the archive and the problem, without a panic, without writing anything
//! (not the output, nothing beside it), within a memory limit (`prlimit --data`) and a time limit.

use crate::fixtures::generated;
use crate::unpack::UNPACK;
use crate::util::have_tool;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Data segment limit for each run: far below what the bombs would need if they were believed.
const MEMORY_LIMIT: u64 = 512 << 20;
/// Wall-clock limit for each run (generous: the suite runs tests in parallel on small machines).
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// Every file of `bad/` and what its one line must say.
const EXPECT: &[(&str, &str)] = &[
    // Damaged streams made by the real compressors (fixtures.rs).
    ("test_link.tar.truncated.gz", "truncated"),
    ("test_link.tar.truncated.zst", "truncated"),
    ("test_link.tar.truncated.bz2", "truncated"),
    ("test_link.tar.truncated.xz", "truncated"),
    ("test_link.tar.corrupt.gz", "gzip"),
    ("test_link.tar.trailing-garbage.gz", "gzip"),
    ("test_link.truncated.tar", "truncated"),
    // Truncations at each structural boundary.
    ("cut-0-bytes.tar", "empty (0 bytes)"),
    ("cut-in-first-header.tar", "truncated"),
    ("cut-after-first-header.tar", "truncated"),
    ("cut-in-layer-data.tar", "truncated"),
    ("cut-after-layer-entry.tar", "truncated"),
    ("cut-in-config-header.tar", "truncated"),
    ("cut-before-manifest.tar", "truncated"),
    ("cut-before-end-blocks.tar", "truncated"),
    // Damaged compression.
    ("gzip-header-only.tar.gz", "truncated"),
    ("gzip-no-trailer.tar.gz", "gzip"),
    ("gzip-bad-crc.tar.gz", "gzip"),
    ("gzip-bad-isize.tar.gz", "gzip"),
    ("zstd-corrupt.tar.zst", "zstd"),
    ("zstd-bad-checksum.tar.zst", "zstd"),
    // Bombs.
    ("bomb-size-header.tar", "truncated"),
    ("bomb-pax-size.tar.gz", "truncated"),
    ("bomb-json-9mib.tar.gz", "larger than 8 MiB"),
    ("bomb-longname-1gib.tar.zst", "extended records"),
    ("bomb-pax-1gib.tar.gz", "extended records"),
    ("bomb-entries.tar.zst", "more than 4096 links"),
    ("bomb-entries-fifo.tar.zst", "more than 65536 entries"),
    ("bomb-nested-indexes.tar", "nested deeper"),
    // Names that leave the archive.
    ("path-dotdot.tar", "escapes the archive"),
    ("path-dotdot-inner.tar", "escapes the archive"),
    ("path-absolute.tar", "absolute path"),
    ("symlink-absolute.tar", "points outside the archive"),
    ("symlink-escape.tar", "points outside the archive"),
    ("symlink-dir-escape.tar", "points outside the archive"),
    ("hardlink-escape.tar", "points outside the archive"),
    ("hardlink-absolute.tar", "points outside the archive"),
    ("symlink-loop.tar", "symlink loop"),
    ("symlink-chain-41.tar", "more than 40 links"),
    ("symlink-dangling.tar", "is not in the archive"),
    // Duplicates.
    ("duplicate-different-content.tar", "duplicate entry"),
    ("duplicate-file-and-link.tar", "duplicate entry"),
    // manifest.json.
    ("manifest-malformed.tar", "manifest.json"),
    ("manifest-null.tar", "is `null`"),
    ("manifest-empty-list.tar", "lists no images"),
    ("manifest-wrong-shape.tar", "manifest.json"),
    ("manifest-binary.tar", "manifest.json"),
    ("manifest-missing-config.tar", "is not in the archive"),
    ("manifest-missing-layer.tar", "is not in the archive"),
    // The config.
    ("config-malformed.tar", "config"),
    ("config-null.tar", "config"),
    ("config-name-lies.tar", "digest mismatch"),
    ("diffids-more-than-layers.tar", "diff_ids"),
    ("diffids-fewer-than-layers.tar", "diff_ids"),
    ("diffid-mismatch.tar", "diff_id mismatch"),
    ("diffid-wrong-algorithm.tar", "sha512"),
    ("diffid-wrong-length.tar", "sha256:"),
    // OCI index.json and manifests.
    ("index-malformed.tar", "index.json"),
    ("index-null.tar", "index.json"),
    ("index-missing-manifest.tar", "not in the archive"),
    ("index-digest-wrong-algorithm.tar", "sha512"),
    ("index-digest-wrong-length.tar", "sha256:abc"),
    ("index-size-lies.tar", "size"),
    ("oci-manifest-null.tar", "manifest"),
    ("oci-manifest-missing-layer.tar", "not in the archive"),
    ("oci-manifest-layer-wrong-algorithm.tar", "sha512"),
    // Not an image.
    ("not-a-tar.bin", "not a tar archive"),
    ("empty-tar.tar", "not a saved image archive"),
    ("sparse-entry.tar", "sparse files are not supported"),
];

/// `layerlift-unpack ARCHIVE OUT` under the memory limit, killed at the time limit.
fn run_limited(archive: &Path, out: &Path) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    let mut child = Command::new("prlimit")
        .arg(format!("--data={MEMORY_LIMIT}"))
        .arg("--")
        .arg(UNPACK)
        .arg(archive)
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run prlimit layerlift-unpack");
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr, start.elapsed())
}

#[test]
fn the_corpus_is_the_one_this_test_knows() {
    let dir = generated("bad");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    on_disk.sort();
    let mut known: Vec<String> = EXPECT.iter().map(|(n, _)| n.to_string()).collect();
    known.sort();
    assert_eq!(
        on_disk, known,
        "bad/ and EXPECT differ: add the new case here, or run `cargo xtask fixtures`"
    );
    assert!(known.len() >= 30);
}

#[test]
fn every_bad_archive_fails_with_one_line_in_bounded_memory_and_time() {
    if !have_tool("prlimit") {
        return;
    }
    // The memory limit does not stop a valid archive.
    let tmp = tempfile::tempdir().unwrap();
    let ok = crate::fixtures::real_tool(
        "google-go-containerregistry/pkg/v1/tarball/testdata/test_link.tar",
    );
    let (code, stderr, _) = run_limited(&ok, &tmp.path().join("ok"));
    assert_eq!(code, Some(0), "valid archive under the limits: {stderr}");

    let dir = generated("bad");
    let mut failures = Vec::new();
    for (name, expect) in EXPECT {
        let archive = dir.join(name);
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let (code, stderr, took) = run_limited(&archive, &out);
        let mut problems = Vec::new();
        if took > TIME_LIMIT {
            problems.push(format!("still running after {}s", TIME_LIMIT.as_secs()));
        }
        if code != Some(1) {
            problems.push(format!("exit {code:?}"));
        }
        if stderr.contains("panicked") || stderr.contains("memory allocation") {
            problems.push("panic or allocation failure".into());
        }
        if stderr.trim_end().lines().count() != 1 {
            problems.push("not one line".into());
        }
        if !stderr.contains(archive.to_str().unwrap()) {
            problems.push("does not name the archive".into());
        }
        if !stderr.contains(expect) {
            problems.push(format!("no `{expect}`"));
        }
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        if !left.is_empty() {
            problems.push(format!("left {left:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{name} ({:.1}s): {}: {}",
                took.as_secs_f64(),
                problems.join(", "),
                stderr.trim_end()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad archives misbehaved:\n{}",
        failures.len(),
        EXPECT.len(),
        failures.join("\n")
    );
}

/// Entries of the fan-out bomb's index.json, and layers of its one manifest.
pub const FANOUT: usize = 50_000;

/// Write the fan-out bomb as an OCI layout at `dir`: an index.json of [`FANOUT`] entries all naming
/// one manifest of [`FANOUT`] layers, all the same small layer (one config with as many diff_ids).
/// Walked naively, FANOUT² = 2.5 billion descriptors; it compresses to a few hundred KB.
pub fn fanout_bomb(dir: &Path) {
    use crate::util::{layer_tar, sha256_digest};
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha256_digest(bytes);
        std::fs::write(blobs.join(&d[7..]), bytes).unwrap();
        d
    };
    let layer = layer_tar("f", 1, 16);
    let layer_digest = put(&layer);
    let diff_ids = vec![layer_digest.clone(); FANOUT];
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let config_digest = put(config.as_bytes());
    let one = serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": layer_digest, "size": layer.len(),
    });
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": vec![one; FANOUT],
    })
    .to_string();
    let manifest_digest = put(manifest.as_bytes());
    let entry = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": manifest.len(),
    });
    let index =
        serde_json::json!({"schemaVersion": 2, "manifests": vec![entry; FANOUT]}).to_string();
    for (what, len) in [("manifest", manifest.len()), ("index.json", index.len())] {
        assert!(
            len < 8 << 20,
            "the {what} stays a JSON document unpack reads ({len} bytes)"
        );
    }
    std::fs::write(dir.join("index.json"), index).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// [`fanout_bomb`] as an oci-archive (a tar of the layout) at `path`.
pub fn fanout_bomb_archive(path: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    fanout_bomb(tmp.path());
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    b.append_dir_all(".", tmp.path()).unwrap();
    b.finish().unwrap();
}

/// Run `cmd` with `prlimit --data` at [`MEMORY_LIMIT`], killed at [`TIME_LIMIT`]: its exit code,
/// its stdout and stderr, and how long it ran.
pub fn run_bounded(program: &str, args: &[&std::ffi::OsStr]) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    let mut child = Command::new("prlimit")
        .arg(format!("--data={MEMORY_LIMIT}"))
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run prlimit");
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text, start.elapsed())
}

/// Unpack refuses the fan-out bomb (an oci-archive, gzip-compressed) with one clear line, in
/// bounded memory and time.
#[test]
fn unpack_refuses_a_descriptor_fan_out_bomb() {
    if !have_tool("prlimit") {
        eprintln!("skipped: prlimit is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("bomb.tar");
    fanout_bomb_archive(&tar);
    let gz = tmp.path().join("bomb.tar.gz");
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::best(),
    );
    std::io::copy(&mut std::fs::File::open(&tar).unwrap(), &mut e).unwrap();
    e.finish().unwrap();
    let gz_size = std::fs::metadata(&gz).unwrap().len();
    assert!(gz_size < 1 << 20, "{gz_size} bytes");
    let out = tmp.path().join("out");
    let (code, text, took) = run_bounded(UNPACK, &[gz.as_os_str(), out.as_os_str()]);
    assert!(took < TIME_LIMIT, "still running after {took:?}");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("fan out to more than"), "{text}");
    assert!(text.contains("bomb.tar.gz"), "{text}");
    assert_eq!(text.trim().lines().count(), 1, "{text}");
    assert!(!out.join("index.json").exists() || crate::util::layerlift_check(&out).is_ok());
}
