//! Crash safety: each step killed with SIGKILL at many points leaves nothing broken.
//!
//! - unpack, killed at ten points of its piped input: the layout it was adding to is valid
//!   (`layerlift check`) and unchanged, never an index.json that points at a missing or partial blob;
//! - convert to OUT, killed at ten points of a full run's duration: IN unchanged; OUT absent, not
//!   yet a layout, or valid; a rerun gives what an uninterrupted run gives;
//! - convert in place: the layout valid, index.json the old or the new one; a rerun finishes it;
//! - push: the source layout valid and unchanged; a rerun lands the image with the right digest
//!   (read back with skopeo).
//!
//! Kills are by timing (spawn, sleep, SIGKILL): no hooks in the product.

use crate::fixtures::real_tool;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn check_ok(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_layerlift"))
        .arg("check")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "layout broken after a kill: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn index(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("index.json")).unwrap()
}

#[test]
fn sigkill_at_any_point_leaves_a_valid_layout() {
    let archive = std::fs::read(real_tool(
        "generated-local/podman-4.3.1/podman-docker-archive-whiteouts.tar",
    ))
    .unwrap();
    let base = real_tool("wagoodman-dive/.data/test-oci-gzip-image.tar");
    let tmp = tempfile::tempdir().unwrap();
    // Cut points across the archive: inside layers, between entries, in the trailing metadata.
    let cuts: Vec<usize> = (1..=9)
        .map(|i| archive.len() * i / 10)
        .chain([archive.len()])
        .collect();
    for (n, cut) in cuts.into_iter().enumerate() {
        // Into an existing layout, which must keep what it had.
        let dir = tmp.path().join(format!("existing-{n}"));
        let out = Command::new(crate::unpack::UNPACK)
            .arg("-q")
            .arg(&base)
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success());
        let before = index(&dir);
        let mut child = Command::new(crate::unpack::UNPACK)
            .args(["-q", "-"])
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&archive[..cut]).unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        drop(stdin);
        check_ok(&dir);
        assert_eq!(
            index(&dir),
            before,
            "cut at {cut}: index.json changed by a killed unpack"
        );
    }
}

/// Spawn `cmd`, let it run for `after`, SIGKILL it. Returns whether it had already exited.
fn kill_after(mut cmd: Command, after: Duration) -> bool {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let done = matches!(child.try_wait(), Ok(Some(_)));
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    done
}

/// Run `cmd` to the end (it must succeed); returns how long it took.
fn timed_ok(mut cmd: Command) -> Duration {
    let start = std::time::Instant::now();
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    start.elapsed()
}

/// Kill points: ten fractions of a full run's duration, from very early to just before its end.
fn kill_points(full: Duration) -> Vec<Duration> {
    (0..10).map(|i| full * (1 + 2 * i) / 20).collect()
}

/// A layout with one image of uncompressed layers (work for convert), and one with the same layers
/// gzip-compressed (work for push).
fn crash_source(dir: &Path, gzip: bool) -> String {
    let layers = (0..4u64)
        .map(|i| crate::util::layer_tar(&format!("f{i}"), 77 + i, 1 << 20))
        .collect();
    crate::util::write_layout(
        dir,
        &[crate::util::Image {
            name: "crash".into(),
            layers,
        }],
        gzip,
    )
    .remove(0)
}

fn convert(from: &Path, to: Option<&Path>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_layerlift-convert"));
    c.arg("-q").arg(from);
    if let Some(to) = to {
        c.arg(to);
    }
    c
}

/// Convert IN to OUT, killed at ten points: IN is never touched; OUT is absent, or holds no
/// index.json (not a layout yet), or is a valid layout; a rerun then finishes OUT exactly as an
/// uninterrupted run does.
#[test]
fn sigkill_convert_to_out_leaves_in_unchanged_and_out_absent_or_valid() {
    use crate::util::{layerlift_check, snapshot};
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("in");
    crash_source(&src, false);
    let before = snapshot(&src);
    let reference = tmp.path().join("reference");
    let full = timed_ok(convert(&src, Some(&reference)));
    let want = index(&reference);
    let mut interrupted = 0;
    for (n, at) in kill_points(full).into_iter().enumerate() {
        let out = tmp.path().join(format!("out-{n}"));
        interrupted += usize::from(!kill_after(convert(&src, Some(&out)), at));
        assert!(snapshot(&src) == before, "kill at {at:?}: IN changed");
        check_ok(&src);
        if out.join("oci-layout").exists() {
            layerlift_check(&out).unwrap_or_else(|e| panic!("kill at {at:?}: OUT broken: {e}"));
        } else if out.exists() {
            // Killed inside `Layout::create` (before it wrote oci-layout): nothing but its own
            // first files, which the rerun takes over (test below).
            assert!(
                half_created(&out),
                "kill at {at:?}: OUT holds more than a half-created layout"
            );
        }
        timed_ok(convert(&src, Some(&out)));
        assert_eq!(index(&out), want, "kill at {at:?}: rerun");
        check_ok(&out);
    }
    assert!(
        interrupted >= 3,
        "only {interrupted} of 10 runs were killed before their end"
    );
}

/// What `Layout::create` writes before `oci-layout`: `blobs/sha256/` (empty), `index.json` with
/// no manifests, and maybe a temporary file of its atomic writes.
fn half_created(dir: &Path) -> bool {
    let blobs_empty =
        std::fs::read_dir(dir.join("blobs/sha256")).map_or(true, |mut d| d.next().is_none());
    let index_empty =
        std::fs::read_to_string(dir.join("index.json")).map_or(true, |t| !t.contains("sha256:"));
    let others = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .all(|n| n == "blobs" || n == "index.json" || n.starts_with('.') || n.contains("tmp"));
    blobs_empty && index_empty && others
}

/// The state a SIGKILL inside `Layout::create` leaves (crates/layout/src/lib.rs: it makes the
/// directory, `blobs/sha256/` and `index.json`, and only then `oci-layout`): the rerun of the same
/// command takes it over (it once refused: "directory is not empty and holds no oci-layout file").
#[test]
fn a_layout_half_created_by_a_kill_is_taken_over_by_the_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("in");
    crash_source(&src, false);
    let out = tmp.path().join("out");
    std::fs::create_dir_all(out.join("blobs/sha256")).unwrap();
    std::fs::write(
        out.join("index.json"),
        r#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    assert!(half_created(&out));
    timed_ok(convert(&src, Some(&out)));
    check_ok(&out);
}

/// Convert in place, killed at ten points: the layout is valid and index.json is either the old one
/// or the finished new one; a rerun reaches the new one.
#[test]
fn sigkill_convert_in_place_leaves_the_old_or_the_new_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("in");
    crash_source(&src, false);
    let old = index(&src);
    let reference = tmp.path().join("reference");
    crate::util::copy_dir(&src, &reference);
    let full = timed_ok(convert(&reference, None));
    let new = index(&reference);
    assert_ne!(old, new);
    let mut interrupted = 0;
    for (n, at) in kill_points(full).into_iter().enumerate() {
        let dir = tmp.path().join(format!("in-{n}"));
        crate::util::copy_dir(&src, &dir);
        interrupted += usize::from(!kill_after(convert(&dir, None), at));
        check_ok(&dir);
        let now = index(&dir);
        assert!(
            now == old || now == new,
            "kill at {at:?}: index.json is neither the old nor the new one:\n{now}"
        );
        timed_ok(convert(&dir, None));
        assert_eq!(index(&dir), new, "kill at {at:?}: rerun");
        check_ok(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(
        interrupted >= 3,
        "only {interrupted} of 10 runs were killed before their end"
    );
}

/// Push, killed at ten points: the source layout is valid and unchanged; a rerun to the same
/// repository succeeds with the right digest, and (a few of them) read back right with skopeo.
#[test]
fn sigkill_push_then_a_rerun_lands_the_image() {
    use crate::util::{Mode, ModeRegistry, push_cmd, pushed, skopeo_pull, snapshot};
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("oci");
    let digest = crash_source(&src, true);
    let before = snapshot(&src);
    let reg = ModeRegistry::start(Mode::Anonymous);
    let push = |repo: &str| {
        let mut c = push_cmd();
        c.arg(&src)
            .arg(format!("{}/{repo}:1", reg.addr()))
            .args(["-q", "--jobs", "2"]);
        c
    };
    let full = timed_ok(push("reference"));
    let checked = crate::verify::layout(&src);
    let mut interrupted = 0;
    for (n, at) in kill_points(full).into_iter().enumerate() {
        let repo = format!("crash{n}");
        interrupted += usize::from(!kill_after(push(&repo), at));
        assert!(snapshot(&src) == before, "kill at {at:?}: source changed");
        check_ok(&src);
        let out = crate::util::assert_ok(&crate::util::run(push(&repo)));
        let reference = format!("{}/{repo}:1", reg.addr());
        assert_eq!(pushed(&out), vec![(reference.clone(), digest.clone())]);
        assert_eq!(reg.tag_digest(&repo, "1").as_deref(), Some(digest.as_str()));
        if n % 3 == 0 && crate::util::have_tool("skopeo") {
            let work = tempfile::tempdir().unwrap();
            let images = skopeo_pull(&reference, &digest, &reg.skopeo_args(), work.path());
            assert_eq!(images, checked, "kill at {at:?}");
        }
    }
    assert!(
        interrupted >= 3,
        "only {interrupted} of 10 runs were killed before their end"
    );
}

/// A push of an archive killed mid-run leaves its temporary directory (`$TMPDIR/layerlift-push-*`)
/// behind; the next push removes those whose lock file no process holds, and keeps one whose lock
/// another process holds even when the PID in its name is not one this PID namespace can see (a
/// push in a container sharing `/tmp`: here the PID of a process that has exited).
#[test]
fn the_next_push_sweeps_temporary_layouts_of_killed_pushes() {
    let tmp = tempfile::tempdir().unwrap();
    let tmpdir = tmp.path().join("tmp");
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let two_minutes_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
    let abandoned = tmpdir.join(format!("layerlift-push-{dead}-0"));
    std::fs::create_dir_all(abandoned.join("blobs/sha256")).unwrap();
    std::fs::File::create(abandoned.join("lock"))
        .unwrap()
        .set_modified(two_minutes_ago)
        .unwrap();
    let live = tmpdir.join(format!("layerlift-push-{dead}-1"));
    std::fs::create_dir_all(&live).unwrap();
    std::fs::File::create(live.join("lock"))
        .unwrap()
        .set_modified(two_minutes_ago)
        .unwrap();
    // Another process holds the live directory's lock, as a running push does.
    let mut holder = Command::new("sh")
        .args(["-c", "exec 9<\"$0\" && flock 9 && exec sleep 60"])
        .arg(live.join("lock"))
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::File::open(live.join("lock"))
        .unwrap()
        .try_lock()
        .is_ok()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "flock did not take the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let reg = layerlift_testkit::Registry::anonymous();
    let archive = real_tool("generated-local/podman-4.3.1/podman-docker-archive-single.tar");
    let o = Command::new(env!("CARGO_BIN_EXE_layerlift-push"))
        .arg(&archive)
        .arg(format!("{}/swept:1", reg.addr()))
        .args(["-q", "--no-cache"])
        .env("TMPDIR", &tmpdir)
        .env("DOCKER_CONFIG", tmp.path().join("no-docker-config"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!abandoned.exists(), "the killed push's layout is removed");
    assert!(live.exists(), "a running process's layout is kept");
    let left: Vec<_> = std::fs::read_dir(&tmpdir).unwrap().collect();
    assert_eq!(left.len(), 1, "the push removed its own layout too");
}

/// Resume across restarts: a chunked push that lost its network in the middle of a
/// large blob and was then killed has recorded its upload session in the cache directory; the
/// rerun asks the registry how far that session got and sends only the rest. In all, both runs
/// send at most 20% more than the blob's size.
///
/// The network is "lost" by a proxy that cuts every PATCH after the sixth before its body (the
/// client retries, and is killed while it does). A PATCH cut in the middle of its body is another
/// matter with docker-registry 2.8: it keeps the partial bytes, the session's state token no
/// longer matches its size, the registry refuses to resume it, and the upload starts again
/// (correct, but the bytes are sent twice).
#[test]
fn a_killed_chunked_push_resumes_its_upload_with_the_next_run() {
    use crate::util::{Image, layer_tar, tag_digest, write_layout};
    use layerlift_testkit::{Fault, FaultProxy, Registry};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    let reg = Registry::anonymous();
    let cut = Arc::new(AtomicBool::new(true));
    let patches = Arc::new(AtomicUsize::new(0));
    let patch_bytes = Arc::new(AtomicU64::new(0));
    let proxy = {
        let (cut, patches, patch_bytes) = (cut.clone(), patches.clone(), patch_bytes.clone());
        FaultProxy::start(reg.port(), move |r| {
            if r.method != "PATCH" {
                return Fault::Pass;
            }
            if patches.fetch_add(1, Ordering::SeqCst) >= 6 && cut.load(Ordering::SeqCst) {
                return Fault::Drop { after: 0 };
            }
            patch_bytes.fetch_add(r.content_length, Ordering::SeqCst);
            Fault::Pass
        })
    };
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("oci");
    let size = 4 << 20;
    let image = Image {
        name: "big".into(),
        layers: vec![layer_tar("big", 11, size)],
    };
    let digest = write_layout(&src, &[image], false).remove(0);
    let cache = work.path().join("cache");
    let push = || {
        let mut c = crate::util::push_cmd();
        c.arg(&src)
            .arg(format!("{}/resume:1", proxy.addr()))
            .args([
                "--plain-http",
                "--json",
                "--chunk-size",
                "256KiB",
                "--jobs",
                "1",
            ])
            .arg("--cache-dir")
            .arg(&cache);
        c
    };
    // The first run: six chunks go through, then the network is gone; killed while it retries.
    let mut child = push()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while patches.load(Ordering::SeqCst) < 8 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push ended before it was killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no chunks after 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        std::fs::read_dir(cache.join("uploads-v1")).is_ok_and(|d| d.count() >= 1),
        "the killed run recorded its session"
    );

    // The rerun continues that session.
    cut.store(false, Ordering::SeqCst);
    let out = crate::util::assert_ok(&crate::util::run(push()));
    let resumed: Vec<u64> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["action"] == "resumed")
        .filter_map(|e| e["offset"].as_u64())
        .collect();
    // Six PATCHes went through before the cut: the config's and five of the layer's.
    assert_eq!(
        resumed,
        vec![5 * 256 * 1024],
        "the rerun resumed at the registry's offset: {out}"
    );
    let sent = patch_bytes.load(Ordering::SeqCst);
    assert!(
        sent as f64 <= 1.2 * size as f64,
        "both runs sent {sent} bytes for a {size}-byte blob: {out}"
    );
    assert_eq!(
        tag_digest(&reg, "resume", "1").as_deref(),
        Some(digest.as_str())
    );
    assert!(
        std::fs::read_dir(cache.join("uploads-v1")).is_ok_and(|d| d.count() == 0),
        "finished uploads are forgotten"
    );
}

/// One traced system call of [`strace_unpack`]: its name, its arguments as strace printed them,
/// and the position of its completion among all calls.
#[derive(Debug)]
struct Call {
    name: String,
    args: String,
}

/// Run `layerlift-unpack ARCHIVE DIR` under `strace -f -y`, tracing fsync, fdatasync and the
/// renames; the calls in the order they completed (renames: the order they started, which is
/// later than any completion printed before them).
fn strace_unpack(archive: &Path, dir: &Path, log: &Path) -> Vec<Call> {
    let o = Command::new("strace")
        .args(["-f", "-y", "-qq", "-s", "4096", "-o"])
        .arg(log)
        .args(["-e", "trace=fsync,fdatasync,rename,renameat,renameat2"])
        .arg(crate::unpack::UNPACK)
        .arg("-q")
        .arg(archive)
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(log).unwrap();
    let mut pending: std::collections::HashMap<String, Call> = Default::default();
    let mut calls = Vec::new();
    for line in text.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(resumed) = rest.strip_prefix("<... ") {
            let name = resumed.split_whitespace().next().unwrap_or_default();
            if let Some(mut call) = pending.remove(pid) {
                let tail = resumed.split_once("resumed>").map_or("", |(_, t)| t);
                call.args.push_str(tail);
                if call.name.starts_with("fsync") || call.name.starts_with("fdatasync") {
                    calls.push(call);
                }
            } else {
                panic!("{name} resumed without its start: {line}");
            }
            continue;
        }
        let Some((name, args)) = rest.split_once('(') else {
            continue;
        };
        let call = Call {
            name: name.to_string(),
            args: args.trim_end_matches("<unfinished ...>").to_string(),
        };
        if rest.ends_with("<unfinished ...>") {
            if call.name.starts_with("rename") {
                calls.push(Call {
                    name: call.name.clone(),
                    args: call.args.clone(),
                });
            }
            pending.insert(pid.to_string(), call);
        } else {
            calls.push(call);
        }
    }
    calls
}

/// The quoted paths of a traced call's arguments (strace -y prints an fd as `N</path>`).
fn call_paths(call: &Call) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = call.args.as_str();
    while let Some(start) = rest.find(['"', '<']) {
        let close = if rest.as_bytes()[start] == b'"' {
            '"'
        } else {
            '>'
        };
        let Some(len) = rest[start + 1..].find(close) else {
            break;
        };
        out.push(rest[start + 1..start + 1 + len].to_string());
        rest = &rest[start + 2 + len..];
    }
    out
}

/// A layout survives power loss, not only SIGKILL: unpack fsyncs each blob's file before renaming
/// it into `blobs/sha256/`, and fsyncs that directory after the last blob's rename and before
/// `index.json` is renamed into place (which is itself fsynced first). Observed with strace on the
/// real binary (strace is a test tool: `scripts/install-test-deps.sh` installs it).
#[test]
fn unpack_fsyncs_blobs_and_their_directory_before_index_json_names_them() {
    assert!(
        crate::util::have_tool("strace"),
        "this test needs strace: run scripts/install-test-deps.sh (cargo xtask test does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let layers: Vec<Vec<u8>> = (0..3u64)
        .map(|i| crate::util::layer_tar(&format!("f{i}"), 5 + i, 64 << 10))
        .collect();
    let (archive, _) = crate::util::podman_archive(&layers, &[], "durable:1");
    let archive_path = tmp.path().join("a.tar");
    std::fs::write(&archive_path, archive).unwrap();
    let dir = tmp.path().join("out");
    let calls = strace_unpack(&archive_path, &dir, &tmp.path().join("strace.log"));
    let blobs_dir = dir.join("blobs/sha256").display().to_string();
    let is_sync = |c: &Call| c.name == "fsync" || c.name == "fdatasync";
    let mut blob_renames = 0;
    let mut last_blob_rename = None;
    let mut index_rename = None;
    for (at, call) in calls.iter().enumerate() {
        if !call.name.starts_with("rename") {
            continue;
        }
        let paths = call_paths(call);
        let (Some(from), Some(to)) = (
            paths
                .iter()
                .find(|p| p.contains(".layerlift-tmp/") || p.contains("/.index.json.")),
            paths.last(),
        ) else {
            continue;
        };
        if to.starts_with(&blobs_dir) {
            blob_renames += 1;
            last_blob_rename = Some(at);
            let name = Path::new(from).file_name().unwrap().to_string_lossy();
            assert!(
                calls[..at].iter().any(|c| is_sync(c)
                    && call_paths(c)
                        .iter()
                        .any(|p| p.ends_with(&format!("/{name}")))),
                "blob {to} renamed from {from} before its file was fsynced:\n{calls:#?}"
            );
        } else if to.ends_with("/index.json") {
            index_rename = Some(at);
        }
    }
    assert_eq!(blob_renames, 5, "3 layers, a config and a manifest");
    let (last_blob, index) = (last_blob_rename.unwrap(), index_rename.unwrap());
    assert!(last_blob < index);
    assert!(
        calls[last_blob..index]
            .iter()
            .any(|c| is_sync(c) && call_paths(c).contains(&blobs_dir)),
        "no fsync of {blobs_dir} between the last blob's rename and index.json's:\n{calls:#?}"
    );
    check_ok(&dir);
}

/// Is some thread of process `pid` waiting for a file lock?
fn waits_for_a_lock(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| {
        tasks.flatten().any(|t| {
            std::fs::read_to_string(t.path().join("wchan")).is_ok_and(|w| w.contains("lock"))
        })
    })
}

/// An in-place convert deletes the blobs only its old images used; an unpack into the same layout
/// at the same time may have found one of them present (and kept it rather than write it again)
/// and name it in index.json. To make them meet there every time, the test holds the layout's
/// index.json lock until both wait for it (the unpack with its blobs committed, the convert with
/// its new image written), then lets them go. Whichever goes first, the layout ends valid.
#[test]
fn concurrent_unpack_and_in_place_convert_leave_a_valid_layout() {
    // On tmpfs where there is one: fsync costs nothing there, and this test is about locks.
    let tmp = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let layers: Vec<Vec<u8>> = (0..20u64)
        .map(|i| crate::util::layer_tar(&format!("f{i}"), 900 + i, 4096))
        .collect();
    let (archive, _) = crate::util::podman_archive(&layers, &[], "race:1");
    let archive_path = tmp.path().join("a.tar");
    std::fs::write(&archive_path, &archive).unwrap();
    let unpack = |dir: &Path| {
        let mut c = Command::new(crate::unpack::UNPACK);
        c.arg("-q").arg(&archive_path).arg(dir);
        c
    };
    for round in 0..12 {
        let dir = tmp.path().join(format!("l{round}"));
        timed_ok(unpack(&dir));
        let index_lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".layerlift-lock"))
            .unwrap();
        index_lock.lock().unwrap();
        let spawn = |mut c: Command| {
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        // Alternate which one starts (and so, most often, which one the lock lets go first).
        let (second, conv) = if round % 2 == 0 {
            let u = spawn(unpack(&dir));
            (u, spawn(convert(&dir, None)))
        } else {
            let c = spawn(convert(&dir, None));
            (spawn(unpack(&dir)), c)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !(waits_for_a_lock(second.id()) && waits_for_a_lock(conv.id())) {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: unpack and convert do not both reach index.json's lock"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(index_lock);
        let u = second.wait_with_output().unwrap();
        let c = conv.wait_with_output().unwrap();
        assert!(
            u.status.success(),
            "round {round}: unpack: {}",
            String::from_utf8_lossy(&u.stderr)
        );
        assert!(
            c.status.success(),
            "round {round}: convert: {}",
            String::from_utf8_lossy(&c.stderr)
        );
        crate::util::layerlift_check(&dir)
            .unwrap_or_else(|e| panic!("round {round}: layout broken: {e}"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
