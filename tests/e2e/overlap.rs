//! Push ARCHIVE overlaps uploading with reading: a layer goes up as soon as it has been read and
//! compressed, while the rest of the archive is still to come. Proved through a pipe: the test
//! writes the archive up to a point inside its second layer, then holds the pipe open until the
//! registry has the first layer (watching its storage) before writing the rest; a push that
//! uploads only after reading everything never gets there, and the test fails after 60 s. A read
//! that fails after that upload still fails the push, and leaves no manifest or tag; an early
//! upload that fails is reported as a late one is. An archive file of several images, which a push
//! without `--image` refuses, sends nothing.

use crate::util::{
    assert_no_secrets, layer_tar, podman_archive, podman_archive_of, push_cmd, sha256_digest,
    skopeo_pull, text,
};
use layerlift_testkit::Registry;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the test waits for the first layer to reach the registry.
const WAIT: Duration = Duration::from_secs(60);
/// How far into the second layer the first write goes: the archive reader reads a pipe ahead in
/// 1 MiB buffers and hands one on only when it is full, so the end of the first layer is read only
/// once the next MiB has been written. The second layer is larger: its end stays unwritten.
const INTO_SECOND: usize = 4 << 20;
const REPO: &str = "overlap/app";

/// A podman/skopeo-style docker-archive of `layers` ([`podman_archive`]), and the offset where the
/// first write stops ([`INTO_SECOND`]).
fn archive(layers: &[Vec<u8>]) -> (Vec<u8>, usize) {
    assert!(layers[1].len() > INTO_SECOND + (1 << 20));
    let (bytes, first_end) = podman_archive(layers, &[], "app:1");
    (bytes, first_end + INTO_SECOND)
}

/// The layer blobs the registry has linked into the test's repository so far.
fn linked_layers(reg: &Registry) -> Vec<String> {
    let dir = reg
        .storage_dir()
        .join("docker/registry/v2/repositories")
        .join(REPO)
        .join("_layers/sha256");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().join("link").is_file())
        .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
        .collect()
}

/// `layerlift-push - DEST --json`, reading the archive from a pipe the test writes.
fn spawn_push(dest: &str) -> Child {
    let mut c = push_cmd();
    c.args(["-", dest, "--json", "--no-cache"])
        .env_remove("LAYERLIFT_CACHE_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().expect("spawn layerlift-push")
}

/// Write `first` to the push's standard input, then wait until the registry holds a layer of the
/// repository. Kills the push and panics when none arrives within [`WAIT`].
fn feed_first_part_and_wait(child: &mut Child, reg: &Registry, first: &[u8]) -> String {
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(first).unwrap();
    stdin.flush().unwrap();
    let start = Instant::now();
    loop {
        if let Some(d) = linked_layers(reg).into_iter().next() {
            return d;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the push ended ({status}) before the archive was written in full");
        }
        if start.elapsed() > WAIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no layer reached the registry within {}s while the push held the archive's \
                 first layer and waited for the rest: uploads do not overlap reading",
                WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Write the rest, close the pipe, and collect the push's output (read on threads, so that a
/// full stdout or stderr pipe cannot stall it).
fn feed_rest_and_wait(mut child: Child, rest: &[u8]) -> Output {
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    {
        let mut stdin = child.stdin.take().unwrap();
        // A push that failed may have closed its end: its exit status says so.
        let _ = stdin.write_all(rest);
    }
    let status = child.wait().unwrap();
    let o = Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    assert_no_secrets(&o);
    o
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        v
    })
}

fn events(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn layers() -> Vec<Vec<u8>> {
    vec![
        layer_tar("first", 11, 1_500_000),
        layer_tar("second", 12, 6_000_000),
        layer_tar("third", 13, 500_000),
    ]
}

#[test]
fn layers_go_up_while_the_archive_is_still_being_read() {
    let reg = Registry::anonymous();
    let dest = format!("{}/{REPO}:1", reg.addr());
    let layers = layers();
    let (bytes, hold) = archive(&layers);
    let mut child = spawn_push(&dest);
    let arrived = feed_first_part_and_wait(&mut child, &reg, &bytes[..hold]);
    assert_eq!(
        linked_layers(&reg).len(),
        1,
        "only the first layer has been read"
    );
    let o = feed_rest_and_wait(child, &bytes[hold..]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "push failed: {err}\n{out}");

    // What arrived early is the pushed image's first layer, uploaded once, never HEADed again.
    let ev = events(&o);
    let layer_events: Vec<&Value> = ev.iter().filter(|e| e["event"] == "layer").collect();
    assert_eq!(layer_events.len(), 3);
    assert_eq!(layer_events[0]["digest"], arrived.as_str());
    let blob_events: Vec<&Value> = ev
        .iter()
        .filter(|e| e["event"] == "blob" && e["digest"] == arrived.as_str())
        .collect();
    assert_eq!(blob_events.len(), 1, "{blob_events:?}");
    assert_eq!(blob_events[0]["action"], "uploaded");
    let uploaded = ev
        .iter()
        .filter(|e| e["event"] == "blob" && e["action"] == "uploaded")
        .count();
    assert_eq!(uploaded, 4, "three layers and the config: {ev:?}");
    let result = ev.last().unwrap();
    assert_eq!(result["ok"], true);
    let digest = result["images"][0]["digest"].as_str().unwrap().to_string();
    assert_eq!(
        crate::util::tag_digest(&reg, REPO, "1").as_deref(),
        Some(digest.as_str())
    );

    // An independent client reads the image back: every layer decompresses to its diff_id.
    if crate::util::have_tool("skopeo") {
        let work = tempfile::tempdir().unwrap();
        let images = skopeo_pull(
            &dest,
            &digest,
            &["--src-tls-verify=false".to_string()],
            work.path(),
        );
        assert_eq!(images.len(), 1);
        let want: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
        assert_eq!(images[0].diff_ids, want);
    }
}

#[test]
fn a_read_failure_after_an_early_upload_pushes_no_manifest() {
    let reg = Registry::anonymous();
    let dest = format!("{}/{REPO}:1", reg.addr());
    let (bytes, hold) = archive(&layers());
    let mut child = spawn_push(&dest);
    feed_first_part_and_wait(&mut child, &reg, &bytes[..hold]);
    // The stream then ends inside the second layer's data.
    let o = feed_rest_and_wait(child, &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}\n{out}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("truncated"), "the reading error: {err}");
    let ev = events(&o);
    let result = ev.last().unwrap();
    assert_eq!(result["ok"], false);
    assert!(result["error"].as_str().unwrap().contains("truncated"));
    let manifests = reg
        .storage_dir()
        .join("docker/registry/v2/repositories")
        .join(REPO)
        .join("_manifests");
    assert!(
        !manifests.exists() || dir_is_empty_tree(&manifests),
        "no manifest or tag was pushed"
    );
    assert_eq!(crate::util::tag_digest(&reg, REPO, "1"), None);
}

/// Does `dir` hold no files (directories only)?
fn dir_is_empty_tree(dir: &Path) -> bool {
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                return false;
            }
        }
    }
    true
}

#[test]
fn an_early_upload_failure_fails_the_push_as_a_late_one_does() {
    // Token auth gives anonymous callers `pull` only: HEADs work, the first upload is refused.
    let reg = Registry::token("erin", crate::util::PASSWORD);
    let dest = format!("{}/{REPO}:1", reg.addr());
    let (bytes, _) = archive(&layers());
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("app.tar");
    std::fs::write(&path, &bytes).unwrap();
    // Early uploads, and (with --image) uploads only after reading: the same one-line error.
    let mut errors = Vec::new();
    for extra in [&[][..], &["--image", "app:1"][..]] {
        let mut c = push_cmd();
        c.arg(&path).arg(&dest).arg("--no-cache").args(extra);
        let o = crate::util::run(c);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{err}\n{out}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains("uploading blob sha256:"), "{err}");
        assert!(err.contains("HTTP 401"), "{err}");
        errors.push(without_digests(&err));
    }
    assert_eq!(errors[0], errors[1]);
    assert_eq!(crate::util::tag_digest(&reg, REPO, "1"), None);
}

/// `text` with every `sha256:<hex>` replaced by `sha256:…`.
fn without_digests(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("sha256:") {
        out.push_str(&rest[..i + 7]);
        out.push('…');
        rest = rest[i + 7..].trim_start_matches(|c: char| c.is_ascii_hexdigit());
    }
    out.push_str(rest);
    out
}

/// An early upload the registry refuses stops the reading: the push fails with that error while
/// most of the archive is still to come. The test writes the archive slowly (1 MiB every 20 ms)
/// and counts what the push took in before it exited; a push that read on would take all of it
/// and only then fail.
#[test]
fn a_refused_early_upload_stops_the_reading() {
    // Token auth gives anonymous callers `pull` only: the first upload is refused.
    let reg = Registry::token("erin", crate::util::PASSWORD);
    let dest = format!("{}/{REPO}:1", reg.addr());
    let layers = vec![
        layer_tar("first", 21, 1_500_000),
        layer_tar("second", 22, 40_000_000),
        layer_tar("third", 23, 500_000),
    ];
    let (bytes, _) = archive(&layers);
    let mut child = spawn_push(&dest);
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let mut written = 0;
    for piece in bytes.chunks(1 << 20) {
        if stdin.write_all(piece).is_err() {
            break; // the push has closed its end
        }
        written += piece.len();
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    let o = Output {
        status: child.wait().unwrap(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    assert_no_secrets(&o);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}\n{out}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("uploading blob sha256:"), "{err}");
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(
        written < bytes.len() / 2,
        "the push read {written} of {} bytes before failing: it did not stop at the refused upload",
        bytes.len()
    );
    assert_eq!(crate::util::tag_digest(&reg, REPO, "1"), None);
}

#[test]
fn an_archive_file_of_several_images_uploads_nothing_before_it_is_refused() {
    // Without --image, a push of two different images is refused once the archive is read. From
    // a file the catalog (its metadata, read first) already says there are two: no layer of the
    // first may go up while the second's 24 MB are still being read and compressed.
    let reg = Registry::anonymous();
    let first = [layer_tar("first", 21, 1_000_000)];
    let second = [layer_tar("second", 22, 24_000_000)];
    let (bytes, _) = podman_archive_of(&[(&first, "app:1"), (&second, "other:1")], &[]);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("two.tar");
    std::fs::write(&path, bytes).unwrap();
    let mut c = push_cmd();
    c.arg(&path)
        .arg(format!("{}/{REPO}:1", reg.addr()))
        .args(["--no-cache", "--json"])
        .env_remove("LAYERLIFT_CACHE_DIR");
    let o = c.output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}\n{out}");
    assert!(err.contains("holds 2 different images"), "{err}");
    assert!(
        !events(&o).iter().any(|e| e["event"] == "blob"),
        "no blob event: {out}"
    );
    assert_eq!(
        linked_layers(&reg),
        Vec::<String>::new(),
        "nothing uploaded"
    );
}
