//! Layers streamed to the registry while they are compressed (`layerlift-push ARCHIVE`): a
//! stream cut in the middle, and a registry that refuses streams, both end in a complete push
//! that skopeo pulls back and checks layer by layer against the archive's diff_ids. Also the
//! requests per blob of a cold push to a new repository.

use crate::util::{
    assert_ok, have_tool, layer_tar, podman_archive, push_cmd, run, sha256_digest, skopeo_pull,
    tag_digest,
};
use layerlift_testkit::{Fault, FaultProxy, ProxyLog, Quirk, QuirkProxy, Registry};
use std::sync::atomic::{AtomicUsize, Ordering};

/// An archive of `big` layers of 6 MiB (streamed: above the 4 MiB threshold) and one small
/// layer, written under `dir`; its path and diff_ids.
fn archive(dir: &std::path::Path, big: u64) -> (std::path::PathBuf, Vec<String>) {
    let mut layers: Vec<Vec<u8>> = (0..big)
        .map(|i| layer_tar(&format!("big-{i}"), 100 + i, 6 << 20))
        .collect();
    layers.push(layer_tar("small", 7, 10_000));
    let diff_ids = layers.iter().map(|l| sha256_digest(l)).collect();
    let (bytes, _) = podman_archive(&layers, &[], "stream:1");
    let path = dir.join("archive.tar");
    std::fs::write(&path, bytes).unwrap();
    (path, diff_ids)
}

/// Push `archive` through `proxy` to `repo:1`; the manifest digest pushed.
fn push_through(proxy: &FaultProxy, archive: &std::path::Path, repo: &str) -> String {
    push_via(&proxy.addr(), archive, repo)
}

/// Push `archive` through the proxy at `addr` to `repo:1`; the manifest digest pushed.
fn push_via(addr: &str, archive: &std::path::Path, repo: &str) -> String {
    let cache = tempfile::tempdir().unwrap();
    let mut c = push_cmd();
    c.arg(archive)
        .arg(format!("{addr}/{repo}:1"))
        .args(["--json", "--plain-http", "--retries", "2", "--cache-dir"])
        .arg(cache.path());
    let out = assert_ok(&run(c));
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["ok"], true, "{out}");
    last["images"][0]["digest"].as_str().unwrap().to_string()
}

/// The registry holds `repo:1` at `digest`, and skopeo pulls it back with the archive's layers.
fn check_pulled(reg: &Registry, repo: &str, digest: &str, diff_ids: &[String]) {
    assert_eq!(tag_digest(reg, repo, "1").as_deref(), Some(digest));
    if have_tool("skopeo") {
        let work = tempfile::tempdir().unwrap();
        let images = skopeo_pull(
            &format!("{}/{repo}:1", reg.addr()),
            digest,
            &["--src-tls-verify=false".to_string()],
            work.path(),
        );
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].diff_ids, diff_ids);
    }
}

fn patches(log: &[ProxyLog]) -> Vec<&ProxyLog> {
    log.iter().filter(|l| l.method == "PATCH").collect()
}

/// The first PATCH (a layer streaming while it is compressed) is cut after 1 MiB: the layer goes
/// up again from the bytes in the temporary layout, and the push completes.
#[test]
fn a_streamed_upload_cut_in_the_middle_still_completes() {
    let reg = Registry::anonymous();
    let cut = AtomicUsize::new(0);
    let proxy = FaultProxy::start(reg.port(), move |r| {
        if r.method == "PATCH" && cut.fetch_add(1, Ordering::SeqCst) == 0 {
            return Fault::Drop { after: 1 << 20 };
        }
        Fault::Pass
    });
    let work = tempfile::tempdir().unwrap();
    let (archive, diff_ids) = archive(work.path(), 2);
    let digest = push_through(&proxy, &archive, "cut");
    let log = proxy.log();
    let p = patches(&log);
    assert!(
        matches!(p.first().map(|l| &l.fault), Some(Fault::Drop { .. })),
        "a streamed PATCH was cut: {log:#?}"
    );
    check_pulled(&reg, "cut", &digest, &diff_ids);
}

/// A proxy cuts the last 4 KiB off each streamed PATCH body, in front of a registry that does not
/// verify digests (a refused `PUT ?digest=` is answered 201). The registry's `Range` says how
/// much arrived: the client sees that it is less than it sent, never commits the cut session, and
/// sends the layer again from the temporary layout.
#[test]
fn a_stream_cut_on_the_way_is_never_committed() {
    let reg = Registry::anonymous();
    let proxy = QuirkProxy::start(
        reg.port(),
        vec![Quirk::TruncateStream { by: 4096 }, Quirk::UncheckedDigest],
    );
    let work = tempfile::tempdir().unwrap();
    let (archive, diff_ids) = archive(work.path(), 1);
    let digest = push_via(&proxy.addr(), &archive, "truncated");
    assert_eq!(
        proxy.unmet(),
        [Quirk::UncheckedDigest],
        "the stream was cut, and no PUT committed the cut session"
    );
    check_pulled(&reg, "truncated", &digest, &diff_ids);
}

/// The same without `Range` in any answer: nothing says how much arrived, so the client asks the
/// committed blob's size with a HEAD; the registry does not hold it, and the layer goes up again.
#[test]
fn a_stream_cut_on_the_way_without_range_is_checked_after_its_put() {
    let reg = Registry::anonymous();
    let proxy = QuirkProxy::start(
        reg.port(),
        vec![
            Quirk::TruncateStream { by: 4096 },
            Quirk::UncheckedDigest,
            Quirk::NoRange,
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let (archive, diff_ids) = archive(work.path(), 1);
    let digest = push_via(&proxy.addr(), &archive, "unchecked");
    assert!(proxy.unmet().is_empty(), "{:?}", proxy.unmet());
    check_pulled(&reg, "unchecked", &digest, &diff_ids);
}

/// Every mount is answered 201 without linking anything or naming a blob: the client checks each
/// one with a HEAD, finds the blob absent, and uploads it.
#[test]
fn a_mount_answered_201_that_names_nothing_is_checked() {
    let reg = Registry::anonymous();
    let proxy = QuirkProxy::start(reg.port(), vec![Quirk::BlindMount]);
    let work = tempfile::tempdir().unwrap();
    let (archive, diff_ids) = archive(work.path(), 1);
    let digest = push_via(&proxy.addr(), &archive, "blind");
    assert!(proxy.unmet().is_empty(), "a mount was asked for");
    check_pulled(&reg, "blind", &digest, &diff_ids);
}

/// A registry that answers every PATCH with 416 (as one that caps request sizes might): the first
/// stream fails, its layer goes up as a file, the client remembers, and later layers are not
/// streamed at all.
#[test]
fn a_registry_that_refuses_streams_gets_files() {
    let reg = Registry::anonymous();
    let proxy = FaultProxy::start(reg.port(), |r| {
        if r.method == "PATCH" {
            return Fault::Status {
                status: 416,
                retry_after: None,
            };
        }
        Fault::Pass
    });
    let work = tempfile::tempdir().unwrap();
    let (archive, diff_ids) = archive(work.path(), 4);
    let digest = push_through(&proxy, &archive, "refused");
    let log = proxy.log();
    let p = patches(&log);
    // The second layer's stream may start before the first one's answer; none after that.
    assert!(
        !p.is_empty() && p.len() <= 2,
        "{} streamed PATCHes for 4 large layers: {log:#?}",
        p.len()
    );
    check_pulled(&reg, "refused", &digest, &diff_ids);
}

/// Requests per blob of a cold push to a new repository with a warm layer cache: the plan asks
/// about no blob (the registry says the repository does not exist), and each upload starts with a
/// mount from the repository itself, which opens the upload: POST and PUT, no HEAD. A push that
/// stopped before its manifest leaves its blobs in a repository without a tag; pushed again, the
/// same mounts find them and nothing goes up twice.
#[test]
fn a_new_repository_takes_two_requests_per_blob_and_keeps_what_a_stopped_push_left() {
    let reg = Registry::anonymous();
    let refuse_manifest = std::sync::atomic::AtomicBool::new(true);
    let proxy = FaultProxy::start(reg.port(), move |r| {
        if r.method == "PUT"
            && r.target.starts_with("/v2/stopped/manifests/")
            && refuse_manifest.swap(false, Ordering::SeqCst)
        {
            return Fault::Status {
                status: 400,
                retry_after: None,
            };
        }
        Fault::Pass
    });
    let work = tempfile::tempdir().unwrap();
    let layers: Vec<Vec<u8>> = (0..3)
        .map(|i| layer_tar(&format!("l{i}"), 30 + i, 20_000))
        .collect();
    let (bytes, _) = podman_archive(&layers, &[], "warm:1");
    let archive = work.path().join("archive.tar");
    std::fs::write(&archive, bytes).unwrap();
    let cache = work.path().join("cache");
    let push = |repo: &str| {
        let mut c = push_cmd();
        c.arg(&archive)
            .arg(format!("{}/{repo}:1", proxy.addr()))
            .args(["-q", "--plain-http", "--retries", "0", "--cache-dir"])
            .arg(&cache);
        run(c)
    };
    let count = |log: &[ProxyLog], method: &str, part: &str| {
        log.iter()
            .filter(|l| l.method == method && l.target.contains(part))
            .count()
    };
    assert_ok(&push("first"));
    let before = proxy.log().len();
    assert_ok(&push("second"));
    let log = proxy.log()[before..].to_vec();
    // 3 layers and the config.
    assert_eq!(count(&log, "HEAD", "/blobs/"), 0, "{log:#?}");
    assert_eq!(
        count(&log, "POST", "/v2/second/blobs/uploads/?mount=sha256%3A"),
        4,
        "{log:#?}"
    );
    assert!(
        log.iter()
            .filter(|l| l.method == "POST")
            .all(|l| l.target.ends_with("&from=second")),
        "{log:#?}"
    );
    assert_eq!(count(&log, "PUT", "/blobs/uploads/"), 4, "{log:#?}");
    assert_eq!(count(&log, "PATCH", ""), 0, "{log:#?}");

    // The manifest is refused: every blob is in `stopped`, no tag is.
    let out = push("stopped");
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(tag_digest(&reg, "stopped", "1"), None);
    let before = proxy.log().len();
    assert_ok(&push("stopped"));
    let log = proxy.log()[before..].to_vec();
    assert_eq!(
        count(&log, "POST", "/v2/stopped/blobs/uploads/?mount="),
        4,
        "{log:#?}"
    );
    assert_eq!(count(&log, "PUT", "/blobs/uploads/"), 0, "{log:#?}");
    assert_eq!(count(&log, "PATCH", ""), 0, "{log:#?}");
    assert!(tag_digest(&reg, "stopped", "1").is_some());
}

/// A push killed while it streams a layer leaves the stream's session in the journal (under the
/// layer's archive entry, the archive and the encoding: its digest is not known yet); the same
/// push run again asks the registry about that session and streams the layer into it, skipping
/// what the registry holds there, instead of opening another.
///
/// The proxy in between passes each request on whole, so the killed PATCH never reaches the
/// registry and the session holds nothing: docker-registry 2.8 cancels a session whose bytes a
/// cut PATCH changed (its `_state` offset no longer matches), so only such a session can be
/// continued there. Registries that keep upload state on their side continue at their offset.
#[test]
fn a_push_killed_while_streaming_continues_in_its_session() {
    let reg = Registry::anonymous();
    let proxy = FaultProxy::transparent(reg.port());
    let work = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    // Slow to compress at gzip level 9, so that the kill lands inside the stream.
    let layers = vec![
        layer_tar("slow", 77, 32 << 20),
        layer_tar("small", 78, 10_000),
    ];
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    let (bytes, _) = podman_archive(&layers, &[], "killed:1");
    let archive = work.path().join("archive.tar");
    std::fs::write(&archive, bytes).unwrap();
    let push = || {
        let mut c = push_cmd();
        c.arg(&archive)
            .arg(format!("{}/killed:1", proxy.addr()))
            .args(["--json", "--plain-http", "--level", "9", "--cache-dir"])
            .arg(cache.path());
        c
    };
    let mut child = push()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let session = loop {
        if let Some(p) = patches(&proxy.log()).first() {
            break p.target.split('?').next().unwrap().to_string();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push ended before the kill"
        );
        assert!(start.elapsed().as_secs() < 60, "no stream started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    let before = proxy.log().len();
    let out = assert_ok(&run(push()));
    let rerun: Vec<(String, String)> = proxy.log()[before..]
        .iter()
        .map(|l| {
            (
                l.method.clone(),
                l.target.split('?').next().unwrap().to_string(),
            )
        })
        .collect();
    for method in ["GET", "PATCH", "PUT"] {
        assert!(
            rerun.contains(&(method.to_string(), session.clone())),
            "{method} {session} in the re-run: {rerun:#?}"
        );
    }
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let digest = last["images"][0]["digest"].as_str().unwrap();
    check_pulled(&reg, "killed", digest, &diff_ids);
}

/// The largest regular file seen under `dir` while `child` runs (looked at every millisecond),
/// and the child's output.
fn largest_file_while(
    dir: &std::path::Path,
    child: std::process::Child,
) -> (u64, std::process::Output) {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (dir, done) = (dir.to_path_buf(), std::sync::Arc::clone(&done));
        std::thread::spawn(move || {
            let mut largest = 0u64;
            while !done.load(Ordering::SeqCst) {
                let mut stack = vec![dir.clone()];
                while let Some(d) = stack.pop() {
                    let Ok(entries) = std::fs::read_dir(&d) else {
                        continue;
                    };
                    for e in entries.flatten() {
                        match e.metadata() {
                            Ok(m) if m.is_dir() => stack.push(e.path()),
                            Ok(m) => largest = largest.max(m.len()),
                            Err(_) => {}
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            largest
        })
    };
    let out = child.wait_with_output().unwrap();
    done.store(true, Ordering::SeqCst);
    (watcher.join().unwrap(), out)
}

/// The `blob` events of `action` in a `--json` push's output.
fn blob_events(out: &str, action: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "blob" && e["action"] == action)
        .collect()
}

/// A layer streamed from an archive FILE goes up without a staged copy: the first PATCH is cut
/// after 1 MiB, the upload goes on with the layer compressed again from the archive (a
/// `recompressed` event), and the temporary directory never held a file as large as that layer.
/// The same archive from a pipe stages its layers and resumes from the staged copy: no
/// `recompressed` event. Both pull back byte-true.
#[test]
fn a_streamed_upload_from_an_archive_file_resumes_by_compressing_again() {
    let reg = Registry::anonymous();
    let cut_first_patch = || {
        let cut = AtomicUsize::new(0);
        FaultProxy::start(reg.port(), move |r| {
            if r.method == "PATCH" && cut.fetch_add(1, Ordering::SeqCst) == 0 {
                return Fault::Drop { after: 1 << 20 };
            }
            Fault::Pass
        })
    };
    let work = tempfile::tempdir().unwrap();
    let (archive, diff_ids) = archive(work.path(), 1);
    for (repo, piped) in [("again-file", false), ("again-pipe", true)] {
        let proxy = cut_first_patch();
        let tmp = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let mut c = push_cmd();
        c.arg(if piped {
            "-".as_ref()
        } else {
            archive.as_os_str()
        })
        .arg(format!("{}/{repo}:1", proxy.addr()))
        .args(["--json", "--plain-http", "--retries", "2", "--cache-dir"])
        .arg(cache.path())
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        if piped {
            c.stdin(std::fs::File::open(&archive).unwrap());
        }
        let (largest, out) = largest_file_while(tmp.path(), c.spawn().unwrap());
        let text = assert_ok(&out);
        let log = proxy.log();
        assert!(
            matches!(
                patches(&log).first().map(|l| &l.fault),
                Some(Fault::Drop { .. })
            ),
            "a streamed PATCH was cut: {log:#?}"
        );
        let uploaded = blob_events(&text, "uploaded");
        let big = uploaded
            .iter()
            .map(|e| e["size"].as_u64().unwrap())
            .max()
            .unwrap();
        assert!(big > 1 << 20, "the streamed layer is larger than the cut");
        let again = blob_events(&text, "recompressed");
        if piped {
            assert!(
                again.is_empty(),
                "a pipe resumes from its staged copy: {text}"
            );
            assert!(
                largest >= big,
                "the pipe's layer was staged ({largest} bytes)"
            );
        } else {
            assert!(
                largest < big,
                "the temporary directory held a file of {largest} bytes, the layer is {big}"
            );
            assert_eq!(again.len(), 1, "{text}");
            assert!(again[0]["offset"].is_u64(), "{text}");
        }
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        let digest = last["images"][0]["digest"].as_str().unwrap();
        check_pulled(&reg, repo, digest, &diff_ids);
    }
}
