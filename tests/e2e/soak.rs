//! Soak: pushes that overlap, a registry that dies in the middle, a temporary directory that
//! fills up. Each case is bounded in time (the whole module runs in well under a minute), and each
//! checks what a user relies on afterwards: every image pulls back byte-true, every tag names an
//! image that was pushed to it, and nothing is left in the temporary directory.
//!
//! - rounds of 8 concurrent archive pushes of images sharing a base layer: the same image to
//!   several repositories, different images to one repository, and one tag raced by two images
//!   (the push that loses the race says that the tag names the other image);
//! - the registry process SIGKILLed while a push uploads, and started again on its storage: the
//!   push retries and completes, or fails with one line and a re-run completes without sending
//!   again what the registry already holds;
//! - the temporary directory on a tmpfs too small for the push (root only: `mount`): a clear
//!   error, nothing left in it, no tag in the registry;
//! - a pids limit (a cgroup of the test's own, root only) that stops the upload threads from
//!   starting: the push fails saying so instead of waiting for ever.

use crate::util::{TestArchive, Tmpfs, assert_ok, layer_tar, push_cmd, run};
use layerlift_testkit::{Fault, FaultProxy, Registry};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// An archive written for a test: its path, and what a pull of it must give back.
struct Archive {
    path: PathBuf,
    image: TestArchive,
}

/// A podman-style archive of `layers` under `dir/name.tar`.
fn archive(dir: &Path, name: &str, layers: &[Vec<u8>]) -> Archive {
    let image = TestArchive::new(layers, &format!("soak/{name}:1"));
    let path = dir.join(format!("{name}.tar"));
    std::fs::write(&path, &image.bytes).unwrap();
    Archive { path, image }
}

/// A push of `src` to `dest` with its own temporary directory `tmp`; the command.
fn push(src: &Path, dest: &str, tmp: &Path) -> std::process::Command {
    let mut c = push_cmd();
    c.arg(src)
        .arg(dest)
        .args(["--json", "--plain-http", "--no-cache", "--jobs", "2"])
        .env("TMPDIR", tmp);
    c
}

/// The digest a `--json` push printed last, if it succeeded.
fn digest_of(stdout: &str) -> Option<String> {
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last()?).ok()?;
    (last["ok"] == true).then(|| last["images"][0]["digest"].as_str().map(str::to_string))?
}

/// What is left of layerlift-push in `tmp`.
fn leftovers(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("layerlift-push"))
                .collect()
        })
        .unwrap_or_default()
}

/// Three rounds of 8 concurrent pushes of 4 images sharing a base layer (one of them large
/// enough to be streamed): the same image to several repositories, two images to one tag at the
/// same moment, other tags of the same repositories. Every push exits 0, every tag names one of
/// the images pushed to it and pulls back as that image, and no temporary directory is left.
#[test]
fn concurrent_pushes_of_overlapping_images() {
    let reg = Registry::anonymous();
    let work = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let base = layer_tar("base", 1, 5 << 20);
    let images: Vec<Archive> = (0..4u64)
        .map(|i| {
            let own = layer_tar(&format!("app-{i}"), 10 + i, 20_000);
            archive(work.path(), &format!("img{i}"), &[base.clone(), own])
        })
        .collect();
    // (image, repository, tag) per push of a round.
    let plan: [(usize, &str, &str); 8] = [
        (0, "soak/a", "1"),
        (1, "soak/a", "1"),
        (0, "soak/b", "1"),
        (2, "soak/b", "2"),
        (2, "soak/c", "1"),
        (3, "soak/c", "2"),
        (3, "soak/a", "2"),
        (1, "soak/d", "1"),
    ];
    let mut pushed_to: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut digests: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..3 {
        let barrier = Barrier::new(plan.len());
        let outs: Vec<(std::process::Output, usize, &str, &str)> = std::thread::scope(|s| {
            let handles: Vec<_> = plan
                .iter()
                .map(|&(i, repo, tag)| {
                    let (barrier, images, reg, tmp) = (&barrier, &images, &reg, &tmp);
                    s.spawn(move || {
                        let c = push(
                            &images[i].path,
                            &format!("{}/{repo}:{tag}", reg.addr()),
                            tmp.path(),
                        );
                        barrier.wait();
                        (run(c), i, repo, tag)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (o, i, repo, tag) in outs {
            let (out, err) = crate::util::text(&o);
            let Some(d) = digest_of(&out) else {
                // The one tag two images race for: the push that lost reads the tag back, finds
                // the other image, and says so.
                assert_eq!((repo, tag), ("soak/a", "1"), "round {round}: {err}");
                assert!(
                    err.trim_end().lines().count() == 1
                        && err.contains(" after the push, not at the pushed "),
                    "round {round}: {err}"
                );
                continue;
            };
            pushed_to
                .entry((repo.to_string(), tag.to_string()))
                .or_default()
                .insert(d.clone());
            assert_eq!(*digests.entry(d).or_insert(i), i, "one digest per image");
        }
        assert_eq!(leftovers(tmp.path()), Vec::<String>::new(), "round {round}");
    }
    for ((repo, tag), candidates) in &pushed_to {
        let now = crate::util::tag_digest(&reg, repo, tag)
            .unwrap_or_else(|| panic!("{repo}:{tag} names nothing"));
        assert!(
            candidates.contains(&now),
            "{repo}:{tag} names {now}, pushed there: {candidates:?}"
        );
        images[digests[&now]]
            .image
            .pulls_back(&reg, &format!("{repo}:{tag}"), &now);
    }
}

/// The registry is SIGKILLed when the push sends its first layer bytes, and started again on the
/// same storage a second later. With its retries the push rides the outage out and completes.
#[test]
fn the_registry_killed_and_restarted_mid_push_is_retried() {
    let Killed { reg, a, first, .. } = kill_during_push("retried", &[]);
    let (out, err) = crate::util::text(&first);
    let digest = digest_of(&out).unwrap_or_else(|| panic!("the push did not complete: {err}"));
    assert!(out.contains(r#""event":"retried""#), "{out}");
    check_killed(&reg, "retried", &digest, &a);
}

/// The same with no retries: the push gives up with one line, and a re-run completes without
/// sending again any blob the registry holds.
#[test]
fn the_registry_killed_mid_push_then_a_rerun_sends_only_what_is_missing() {
    let Killed {
        reg,
        a,
        first,
        proxy,
        rerun,
        _work,
        _tmp,
    } = kill_during_push("rerun", &["--retries", "1"]);
    let err = String::from_utf8_lossy(&first.stderr).into_owned();
    assert!(!first.status.success(), "with no retries the push fails");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("layerlift-push: error: "), "{err}");
    let held = held_blobs(&reg.lock().unwrap().storage_dir());
    let before = proxy.log().len();
    let out = assert_ok(&run(rerun));
    for l in &proxy.log()[before..] {
        if l.method == "PUT" || l.method == "PATCH" {
            assert!(
                !held.iter().any(|d| l.target.contains(d.as_str())),
                "{} {} sent again",
                l.method,
                l.target
            );
        }
    }
    check_killed(&reg, "rerun", &digest_of(&out).unwrap(), &a);
}

type Shared = std::sync::Arc<std::sync::Mutex<Registry>>;

/// A push during which the registry was killed and started again ([`kill_during_push`]).
struct Killed {
    reg: Shared,
    /// What was pushed.
    a: Archive,
    /// The push's output.
    first: std::process::Output,
    proxy: FaultProxy,
    /// The same push again.
    rerun: std::process::Command,
    _work: tempfile::TempDir,
    _tmp: tempfile::TempDir,
}

/// Push an archive of three 5 MiB layers to `soak/REPO:1` with `args` through a proxy that kills
/// the registry when the first layer bytes go up and starts it again a second later.
fn kill_during_push(repo: &str, args: &[&str]) -> Killed {
    let reg: Shared = std::sync::Arc::new(std::sync::Mutex::new(Registry::anonymous()));
    let port = reg.lock().unwrap().port();
    let (work_dir, tmp_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (work, tmp) = (work_dir.path(), tmp_dir.path());
    let layers: Vec<Vec<u8>> = (0..3u64)
        .map(|i| layer_tar(&format!("l{i}"), 50 + i, 5 << 20))
        .collect();
    let a = archive(work, repo, &layers);
    let killed = std::sync::Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let tx = std::sync::Mutex::new(tx);
    let k = std::sync::Arc::clone(&killed);
    // The first request carrying layer bytes waits while the registry is killed, then goes on
    // to a closed port.
    let proxy = FaultProxy::start(port, move |r| {
        if (r.method == "PATCH" || r.method == "PUT")
            && r.target.contains("/blobs/uploads/")
            && !k.swap(true, Ordering::SeqCst)
        {
            tx.lock().unwrap().send(()).unwrap();
            return Fault::Stall(Duration::from_millis(300));
        }
        Fault::Pass
    });
    let r2 = std::sync::Arc::clone(&reg);
    let restarter = std::thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(30)).is_ok() {
            r2.lock().unwrap().kill();
            std::thread::sleep(Duration::from_secs(1));
            r2.lock().unwrap().restart();
        }
    });
    let dest = format!("{}/soak/{repo}:1", proxy.addr());
    let mut first = push(&a.path, &dest, tmp);
    first.args(args);
    let first = run(first);
    restarter.join().unwrap();
    assert!(killed.load(Ordering::SeqCst), "the registry was killed");
    let rerun = push(&a.path, &dest, tmp);
    assert_eq!(leftovers(tmp), Vec::<String>::new());
    Killed {
        reg,
        a,
        first,
        proxy,
        rerun,
        _work: work_dir,
        _tmp: tmp_dir,
    }
}

/// `soak/REPO:1` names `digest` and pulls back as `a`.
fn check_killed(reg: &Shared, repo: &str, digest: &str, a: &Archive) {
    let reg = reg.lock().unwrap();
    let repo = format!("soak/{repo}");
    assert_eq!(
        crate::util::tag_digest(&reg, &repo, "1").as_deref(),
        Some(digest)
    );
    a.image.pulls_back(&reg, &format!("{repo}:1"), digest);
}

/// The blobs a registry's storage holds (`sha256:<hex>`).
fn held_blobs(storage: &Path) -> Vec<String> {
    let dir = storage.join("docker/registry/v2/blobs/sha256");
    let mut out = Vec::new();
    for prefix in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for blob in std::fs::read_dir(prefix.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if blob.path().join("data").exists() {
                out.push(format!("sha256:{}", blob.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// The temporary directory is a 4 MiB tmpfs and the archive's layers compress to twice that. From
/// a pipe, whose streamed layers are staged there, the push fails with one line that says the disk
/// is full, leaves nothing in the temporary directory, and tags nothing. From the archive file,
/// whose streamed layers go to the registry through memory, the same push needs no room there and
/// succeeds.
#[test]
fn a_full_temporary_directory_fails_cleanly() {
    if std::env::var_os("LAYERLIFT_SKIP_ROOT").is_some() {
        eprintln!("skip a_full_temporary_directory_fails_cleanly: LAYERLIFT_SKIP_ROOT is set");
        return;
    }
    let reg = Registry::anonymous();
    let work = tempfile::tempdir().unwrap();
    let tmp = Tmpfs::mount("4m");
    // About 8 MiB once compressed.
    let layers: Vec<Vec<u8>> = (0..2u64)
        .map(|i| layer_tar(&format!("full-{i}"), 70 + i, 6 << 20))
        .collect();
    let a = archive(work.path(), "full", &layers);
    let dest = format!("{}/soak/full:1", reg.addr());
    let mut piped = push(Path::new("-"), &dest, tmp.path());
    piped.stdin(std::fs::File::open(&a.path).unwrap());
    let o = run(piped);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "the push cannot succeed: {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("layerlift-push: error: ")
            && last.contains("cannot write entry")
            && last.contains("No space left on device"),
        "{err}"
    );
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
    assert_eq!(crate::util::tag_digest(&reg, "soak/full", "1"), None);

    let o = run(push(&a.path, &dest, tmp.path()));
    assert!(
        o.status.success(),
        "from the file nothing is staged: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let pushed = digest_of(&String::from_utf8_lossy(&o.stdout));
    assert!(pushed.is_some());
    assert_eq!(crate::util::tag_digest(&reg, "soak/full", "1"), pushed);
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}

/// A pids cgroup of the test's own (cgroup v1 or v2), removed on drop.
struct PidsLimit(PathBuf);

impl PidsLimit {
    fn new(max: u32) -> PidsLimit {
        let base = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
            .iter()
            .map(Path::new)
            .find(|b| {
                b.join("cgroup.procs").exists()
                    && (b.join("pids.max").exists()
                        || b.ends_with("pids")
                        || b.join("cgroup.subtree_control").exists())
            })
            .expect("no pids cgroup on this machine");
        let dir = base.join(format!("layerlift-e2e-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "this test makes a pids cgroup and needs root: {}: {e}",
                dir.display()
            )
        });
        std::fs::write(dir.join("pids.max"), max.to_string()).unwrap();
        PidsLimit(dir)
    }
}

impl Drop for PidsLimit {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// `--jobs 64` under a limit of 12 processes and threads: the upload threads cannot all start.
/// The push fails within seconds with one line that says so (it used to wait for ever: the
/// threads already started waited for work that never came).
#[test]
fn upload_threads_that_cannot_start_fail_the_push() {
    if std::env::var_os("LAYERLIFT_SKIP_ROOT").is_some() {
        eprintln!(
            "skip upload_threads_that_cannot_start_fail_the_push: LAYERLIFT_SKIP_ROOT is set"
        );
        return;
    }
    let reg = Registry::anonymous();
    let work = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let a = archive(work.path(), "pids", &[layer_tar("l", 90, 20_000)]);
    let limit = PidsLimit::new(12);
    let mut c = push_cmd();
    c.arg(&a.path)
        .arg(format!("{}/soak/pids:1", reg.addr()))
        .args(["--plain-http", "--no-cache", "--jobs", "64"])
        .env("TMPDIR", tmp.path());
    // Join the cgroup, then become the push: every thread it starts counts.
    let procs = limit.0.join("cgroup.procs");
    let mut sh = std::process::Command::new("sh");
    sh.arg("-c")
        .arg(r#"echo $$ > "$0" && exec "$@""#)
        .arg(&procs)
        .arg(c.get_program())
        .args(c.get_args())
        .envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = sh.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    let o = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(o) => o,
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("the push hung when its threads could not start");
        }
    };
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("cannot start an upload thread"), "{err}");
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}
