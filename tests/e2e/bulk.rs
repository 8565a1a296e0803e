//! Bulk pushes (`layerlift-push --all`, issue #24): a multi-image `docker save` bundle (and a
//! directory of them) pushed under names the user chooses (`--map`, `--map-file`,
//! `--only-mapped`, DEST a registry alone), unnamed images listed as needing a rule, a shared base
//! uploaded once and mounted elsewhere, one refused repository failing only its image (exit 1
//! names it), a re-run pushing only what is missing (also after a SIGKILL), every image pulled
//! back with skopeo.

use crate::util::{anonymous_client, have_tool, push_cmd, run, sha256_digest, skopeo_pull, text};
use layerlift_testkit::image::{TestImage, bundle, layer_tar, letters, noise};
use layerlift_testkit::{Fault, FaultProxy, ProxyLog, Registry};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A base of two layers shared by every image, and one small layer of each image's own.
fn image(name: &str, seed: u64) -> TestImage {
    let base = vec![
        layer_tar(&[("bin/base", &noise(1, 300_000))]),
        layer_tar(&[("etc/base", &letters(2, 100_000))]),
    ];
    let own = layer_tar(&[(
        &format!("app/{seed}") as &str,
        &letters(100 + seed, 5_000 + seed as usize),
    )]);
    TestImage::new(name, [base, vec![own]].concat())
}

/// The JSON events of a `--json` run.
fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The digest the `tag` event for `reference` names (panics with the push's output if none does).
fn tagged<'a>(events: &'a [serde_json::Value], reference: &str, out: &str) -> &'a str {
    events
        .iter()
        .find(|e| e["event"] == "tag" && e["reference"] == reference)
        .and_then(|e| e["digest"].as_str())
        .unwrap_or_else(|| panic!("{reference}: {out}"))
}

/// The `image` events: name (or digest) → (status, reference).
fn images(events: &[serde_json::Value]) -> BTreeMap<String, (String, String)> {
    events
        .iter()
        .filter(|e| e["event"] == "image")
        .map(|e| {
            let key = e["name"].as_str().or(e["digest"].as_str()).unwrap();
            let status = e["status"].as_str().unwrap().to_string();
            let reference = e["reference"].as_str().unwrap_or("").to_string();
            (key.to_string(), (status, reference))
        })
        .collect()
}

/// skopeo pulls `reference` at `digest`: one image with `img`'s config and layers.
fn pulls_back(reference: &str, digest: &str, img: &TestImage) {
    if !have_tool("skopeo") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let tls_off = ["--src-tls-verify=false".to_string()];
    let pulled = skopeo_pull(reference, digest, &tls_off, work.path());
    assert_eq!(pulled.len(), 1, "{reference}");
    assert_eq!(
        pulled[0].config,
        sha256_digest(img.config().as_bytes()),
        "{reference}"
    );
    let diff_ids: Vec<String> = img.layers.iter().map(|l| sha256_digest(l)).collect();
    assert_eq!(pulled[0].diff_ids, diff_ids, "{reference}");
}

/// The digests a run uploaded (the `PUT …?digest=` that ends an upload), from the proxy's log
/// after `from` requests.
fn uploaded(log: &[ProxyLog], from: usize) -> Vec<String> {
    log.iter()
        .skip(from)
        .filter(|l| l.method == "PUT" && l.fault == Fault::Pass && l.target.contains("/blobs/"))
        .filter_map(|l| {
            let d = l.target.split("digest=").nth(1)?;
            Some(d.split('&').next()?.replace("%3A", ":"))
        })
        .collect()
}

/// `imgs` as one `docker save` bundle in a directory of its own: the directory and the file.
fn bundle_file(imgs: &[TestImage]) -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("bundle.tar");
    std::fs::write(&archive, bundle(imgs)).unwrap();
    (work, archive)
}

/// A proxy before `reg` that answers 403 to every request but GET and HEAD under the repository
/// path `prefix` (`/v2/…/`) while `refuse` holds.
fn refusing_writes(reg: &Registry, prefix: &'static str, refuse: Arc<AtomicBool>) -> FaultProxy {
    FaultProxy::start(reg.port(), move |r| {
        if refuse.load(Ordering::SeqCst)
            && r.target.starts_with(prefix)
            && r.method != "GET"
            && r.method != "HEAD"
        {
            return Fault::Status {
                status: 403,
                retry_after: None,
            };
        }
        Fault::Pass
    })
}

/// skopeo pulls back each of `imgs` from `{under}/{stem}{i}:1` at the digest the run's events
/// say it was tagged with.
fn all_pull_back(
    under: &str,
    stem: &str,
    imgs: &[TestImage],
    evs: &[serde_json::Value],
    out: &str,
) {
    for (i, img) in imgs.iter().enumerate() {
        let reference = format!("{under}/{stem}{i}:1");
        let digest = tagged(evs, &reference, out);
        pulls_back(&reference, digest, img);
    }
}

fn push_all(dest: &str, source: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = push_cmd();
    c.arg("--all")
        .arg(source)
        .arg(dest)
        .args(["--plain-http", "--no-cache", "--retries", "1", "--json"])
        .args(extra);
    run(c)
}

#[test]
fn bundle_under_mapped_names_with_a_refused_repository_and_an_unnamed_image() {
    let reg = Registry::anonymous();
    let refuse = Arc::new(AtomicBool::new(true));
    let proxy = refusing_writes(&reg, "/v2/bulk/denied/", refuse.clone());
    let imgs = [
        image("alpine:3", 1),
        image("bulk/app:1", 2),
        image("bulk/denied:1", 3),
        image("", 4),
    ];
    let (_work, archive) = bundle_file(&imgs);
    let unnamed_id = sha256_digest(imgs[3].config().as_bytes());

    // The plan first: each blob would go up once, the shared base mounted into the others.
    let o = push_all(
        &proxy.addr(),
        &archive,
        &["--map", "docker.io/library/*=base/*", "--dry-run"],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "the unnamed image: {err}\n{out}");
    let mut would: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events(&out).iter().filter(|e| e["event"] == "blob") {
        let action = e["action"].as_str().unwrap().to_string();
        would
            .entry(e["digest"].as_str().unwrap().to_string())
            .or_default()
            .push(action);
    }
    let shared: Vec<&Vec<String>> = would.values().filter(|a| a.len() == 3).collect();
    assert_eq!(shared.len(), 2, "the base's two layers: {would:?}");
    for actions in shared {
        let uploads = actions.iter().filter(|a| *a == "would-upload").count();
        let mounts = actions.iter().filter(|a| *a == "would-mount").count();
        assert_eq!((uploads, mounts), (1, 2), "{actions:?}");
    }
    assert!(
        uploaded(&proxy.log(), 0).is_empty(),
        "a dry run uploads nothing"
    );

    // DEST a registry alone; official images under base/ by a rule.
    let o = push_all(
        &proxy.addr(),
        &archive,
        &["--map", "docker.io/library/*=base/*"],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}\n{out}");
    let evs = events(&out);
    let got = images(&evs);
    let at = |name: &str| got.get(name).unwrap_or_else(|| panic!("{name}: {got:?}"));
    assert_eq!(at("alpine:3").0, "pushed");
    assert_eq!(at("alpine:3").1, format!("{}/base/alpine:3", proxy.addr()));
    assert_eq!(at("bulk/app:1").0, "pushed");
    assert_eq!(at("bulk/app:1").1, format!("{}/bulk/app:1", proxy.addr()));
    assert_eq!(at("bulk/denied:1").0, "failed");
    // The unnamed image is listed by its manifest digest and needs a rule naming its ID.
    let (unnamed_key, unnamed) = got
        .iter()
        .find(|(k, _)| k.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("{got:?}"));
    assert_eq!(unnamed.0, "failed");
    assert!(err.contains("bulk/denied:1"), "{err}");
    assert!(err.contains(&unnamed_id), "{err}");
    assert!(err.contains("2 images failed"), "{err}");
    let result = evs.last().unwrap();
    assert_eq!(result["event"], "result");
    assert_eq!(result["ok"], false);
    // The two that landed pull back whole.
    let tags: BTreeMap<String, String> = evs
        .iter()
        .filter(|e| e["event"] == "tag")
        .map(|e| {
            (
                e["reference"].as_str().unwrap().to_string(),
                e["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(tags.len(), 2, "{tags:?}");
    pulls_back(&at("alpine:3").1, &tags[&at("alpine:3").1], &imgs[0]);
    pulls_back(&at("bulk/app:1").1, &tags[&at("bulk/app:1").1], &imgs[1]);
    // The shared base went up once (then mounted); nothing was uploaded twice.
    let first = uploaded(&proxy.log(), 0);
    let mut unique = first.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), first.len(), "{first:?}\n{err}");
    let mounts = proxy
        .log()
        .iter()
        .filter(|l| l.method == "POST" && l.target.contains("mount=") && l.fault == Fault::Pass)
        .count();
    assert!(
        mounts >= 2,
        "the base's two layers are mounted into bulk/app"
    );

    // Again, the refusal lifted and a rule for the unnamed image: what landed is already there,
    // the rest is pushed, and the blobs the registry has are not uploaded again.
    refuse.store(false, Ordering::SeqCst);
    let before = proxy.log().len();
    let rule = format!("{}*=orphans/x:1", &unnamed_id[..19]);
    let o = push_all(
        &proxy.addr(),
        &archive,
        &["--map", "docker.io/library/*=base/*", "--map", &rule],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}\n{out}");
    let evs = events(&out);
    let got = images(&evs);
    assert_eq!(got["alpine:3"].0, "present", "{got:?}");
    // The base the registry has is not read from the archive again (nor compressed).
    let base_ids: Vec<String> = imgs[0].layers[..2]
        .iter()
        .map(|l| sha256_digest(l))
        .collect();
    for id in &base_ids {
        let layer = evs
            .iter()
            .find(|e| e["event"] == "layer" && e["diffId"] == id.as_str())
            .unwrap_or_else(|| panic!("no layer event for {id}: {out}"));
        assert_eq!(layer["source"], "registry", "{layer}");
    }
    assert_eq!(got["bulk/app:1"].0, "present", "{got:?}");
    assert_eq!(got["bulk/denied:1"].0, "pushed", "{got:?}");
    assert_eq!(got[unnamed_key].0, "pushed", "{got:?}");
    assert_eq!(got[unnamed_key].1, format!("{}/orphans/x:1", proxy.addr()));
    let again = uploaded(&proxy.log(), before);
    for d in &again {
        assert!(!first.contains(d), "{d} uploaded twice");
    }
}

#[test]
fn folder_of_bundles_with_a_map_file_only_mapped_and_a_dry_run() {
    let reg = Registry::anonymous();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("bundles");
    std::fs::create_dir(&dir).unwrap();
    let one = [image("alpine:3", 1), image("tools/x:1", 2)];
    let two = [image("bulk/app:2", 3)];
    std::fs::write(dir.join("1.tar"), bundle(&one)).unwrap();
    std::fs::write(dir.join("2.tar"), bundle(&two)).unwrap();
    std::fs::write(dir.join("SHA256SUMS"), "not an archive\n").unwrap();
    let rules = work.path().join("rules");
    std::fs::write(
        &rules,
        "# official images\ndocker.io/library/*=base/*\n\nbulk/*=apps/*\n",
    )
    .unwrap();
    let dest = format!("{}/mirror", reg.addr());
    let rules_arg = rules.to_str().unwrap();

    // The plan: what would go where; nothing is pushed.
    let o = push_all(
        &dest,
        &dir,
        &["--map-file", rules_arg, "--only-mapped", "--dry-run"],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}\n{out}");
    let got = images(&events(&out));
    assert_eq!(
        got["alpine:3"],
        ("would-push".into(), format!("{dest}/base/alpine:3"))
    );
    assert_eq!(
        got["bulk/app:2"],
        ("would-push".into(), format!("{dest}/apps/app:2"))
    );
    assert_eq!(got["tools/x:1"].0, "skipped");
    let skipped = events(&out)
        .into_iter()
        .find(|e| e["event"] == "not-archive")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        skipped["path"].as_str().unwrap().ends_with("SHA256SUMS"),
        "{skipped}"
    );
    let client = anonymous_client(&reg);
    assert_eq!(
        client.manifest_digest("mirror/base/alpine", "3").unwrap(),
        None
    );

    // For real: each archive read once, the mapped images land and pull back.
    let o = push_all(&dest, &dir, &["--map-file", rules_arg, "--only-mapped"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}\n{out}");
    let got = images(&events(&out));
    assert_eq!(got["alpine:3"].0, "pushed");
    assert_eq!(got["bulk/app:2"].0, "pushed");
    for (name, img) in [("alpine:3", &one[0]), ("bulk/app:2", &two[0])] {
        let reference = &got[name].1;
        let (repo, tag) = reference[reg.addr().len() + 1..].rsplit_once(':').unwrap();
        let digest = client.manifest_digest(repo, tag).unwrap().unwrap();
        pulls_back(reference, &digest.to_string(), img);
    }
    assert_eq!(client.manifest_digest("mirror/tools/x", "1").unwrap(), None);

    // A rule file with a bad line: a usage error naming the file and the line.
    std::fs::write(&rules, "docker.io/library/*=base/*\nno rule here\n").unwrap();
    let o = push_all(&dest, &dir, &["--map-file", rules_arg]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("rules, line 2"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// A directory of archives that share layers, each image saved on its own (a site's folder of
/// `docker save` files): a layer an earlier file put in the registry is mounted into a later
/// file's repository, not uploaded again, and not even read and compressed again.
#[test]
fn files_of_a_folder_mount_the_layers_earlier_files_uploaded() {
    folder_shares_layers(false);
}

/// The same with each file gzipped (`docker save | gzip`), which cannot be walked ahead: a later
/// file's shared layers are only hashed against their names, not compressed, and mounted.
#[test]
fn gzipped_files_of_a_folder_only_hash_the_layers_earlier_files_uploaded() {
    folder_shares_layers(true);
}

/// Three one-image saves sharing a base, as files of one directory (gzipped with `gzip`), pushed
/// with `--all DIR`: the base goes up once, later files mount it and do not compress it again.
fn folder_shares_layers(gzip: bool) {
    let reg = Registry::anonymous();
    let proxy = FaultProxy::start(reg.port(), |_| Fault::Pass);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("saves");
    std::fs::create_dir(&dir).unwrap();
    let imgs: Vec<TestImage> = (0..3)
        .map(|i| image(&format!("bulk/file{i}:1"), 60 + i))
        .collect();
    for (i, img) in imgs.iter().enumerate() {
        let tar = bundle(std::slice::from_ref(img));
        let (name, bytes) = if gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, &tar).unwrap();
            (format!("{i}.tar.gz"), gz.finish().unwrap())
        } else {
            (format!("{i}.tar"), tar)
        };
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let dest = format!("{}/site", proxy.addr());
    let o = push_all(&dest, &dir, &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}\n{out}");
    let evs = events(&out);
    let sent = uploaded(&proxy.log(), 0);
    let mut unique = sent.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), sent.len(), "uploaded twice: {sent:?}\n{out}");
    // The base's two layers: uploaded by the first file, mounted by each later one from the
    // first file's repository.
    let mounts: Vec<&serde_json::Value> = evs
        .iter()
        .filter(|e| e["event"] == "blob" && e["action"] == "mounted")
        .collect();
    assert_eq!(mounts.len(), 2 * (imgs.len() - 1), "{out}");
    assert!(
        mounts.iter().all(|m| m["from"] == "site/bulk/file0"),
        "{out}"
    );
    // Compressed once: the first file's `layer` events say each layer was read; the later
    // files' say the base is the registry's blob — taken unread from a plain tar, hashed against
    // its name from a gzipped one.
    let layer_events: Vec<&serde_json::Value> =
        evs.iter().filter(|e| e["event"] == "layer").collect();
    assert_eq!(layer_events.len(), 3 * imgs.len(), "{out}");
    let base: Vec<&serde_json::Value> = layer_events[..2].to_vec();
    for (i, e) in layer_events.iter().enumerate() {
        let is_base = base.iter().any(|b| b["diffId"] == e["diffId"]);
        let taken = e["source"] == "registry" && e["verified"] == gzip;
        assert_eq!(taken, i >= 3 && is_base, "layer event {i}: {e}\n{out}");
    }
    all_pull_back(&dest, "bulk/file", &imgs, &evs, &out);
}

#[test]
fn sigkill_mid_bundle_then_a_rerun_uploads_nothing_twice() {
    let reg = Registry::anonymous();
    // The third manifest PUT hangs until the push is killed.
    let manifests = Arc::new(AtomicUsize::new(0));
    let hang = Arc::new(AtomicBool::new(true));
    let proxy = {
        let (manifests, hang) = (manifests.clone(), hang.clone());
        FaultProxy::start(reg.port(), move |r| {
            if r.method == "PUT"
                && r.target.contains("/manifests/")
                && hang.load(Ordering::SeqCst)
                && manifests.fetch_add(1, Ordering::SeqCst) == 2
            {
                return Fault::Stall(Duration::from_secs(60));
            }
            Fault::Pass
        })
    };
    let imgs: Vec<TestImage> = (0..6)
        .map(|i| image(&format!("bulk/app{i}:1"), 10 + i))
        .collect();
    let (_work, archive) = bundle_file(&imgs);
    let mut c = push_cmd();
    c.arg("--all")
        .arg(&archive)
        .arg(format!("{}/site", proxy.addr()))
        .args(["--plain-http", "--no-cache", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let start = Instant::now();
    while manifests.load(Ordering::SeqCst) < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no third manifest"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    hang.store(false, Ordering::SeqCst);
    let first = uploaded(&proxy.log(), 0);
    assert!(!first.is_empty());
    let before = proxy.log().len();
    let o = push_all(&format!("{}/site", proxy.addr()), &archive, &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}\n{out}");
    let got = images(&events(&out));
    let present = got.values().filter(|(s, _)| s == "present").count();
    assert!(present >= 2, "the images done before the kill: {got:?}");
    assert_eq!(got.len(), 6);
    for d in uploaded(&proxy.log(), before) {
        assert!(!first.contains(&d), "{d} uploaded twice");
    }
    let evs = events(&out);
    let under = format!("{}/site", proxy.addr());
    all_pull_back(&under, "bulk/app", &imgs, &evs, &out);
}

#[test]
fn bundle_from_a_pipe_under_a_registry_alone() {
    let reg = Registry::anonymous();
    let imgs = [image("alpine:3", 1), image("bulk/app:1", 2)];
    let mut c = push_cmd();
    c.args(["--all", "-"])
        .arg(reg.addr())
        .args(["--plain-http", "--no-cache", "--json"])
        .args(["--map", "docker.io/library/*=base/*"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let bytes = bundle(&imgs);
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &bytes));
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}\n{out}");
    let evs = events(&out);
    let got = images(&evs);
    assert_eq!(
        got["alpine:3"],
        ("pushed".into(), format!("{}/base/alpine:3", reg.addr()))
    );
    assert_eq!(
        got["bulk/app:1"],
        ("pushed".into(), format!("{}/bulk/app:1", reg.addr()))
    );
    for (name, img) in [("alpine:3", &imgs[0]), ("bulk/app:1", &imgs[1])] {
        let reference = &got[name].1;
        let digest = tagged(&evs, reference, &out);
        pulls_back(reference, digest, img);
    }
}

#[test]
fn a_network_drop_mid_bundle_fails_the_rest_and_a_rerun_finishes_it() {
    let reg = Registry::anonymous();
    // After the second manifest PUT, every connection is dropped until the network is back.
    let manifests = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let proxy = {
        let (manifests, down) = (manifests.clone(), down.clone());
        FaultProxy::start(reg.port(), move |r| {
            if down.load(Ordering::SeqCst) {
                return Fault::Drop { after: 0 };
            }
            if r.method == "PUT"
                && r.target.contains("/manifests/")
                && manifests.fetch_add(1, Ordering::SeqCst) == 1
            {
                down.store(true, Ordering::SeqCst);
            }
            Fault::Pass
        })
    };
    let imgs: Vec<TestImage> = (0..5)
        .map(|i| image(&format!("bulk/net{i}:1"), 30 + i))
        .collect();
    let (_work, archive) = bundle_file(&imgs);
    let dest = format!("{}/site", proxy.addr());
    let o = push_all(&dest, &archive, &["--jobs", "1"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}\n{out}");
    let got = images(&events(&out));
    let failed: Vec<&String> = got
        .iter()
        .filter(|(_, (s, _))| s == "failed")
        .map(|(n, _)| n)
        .collect();
    assert!(!failed.is_empty(), "{got:?}");
    for name in &failed {
        assert!(err.contains(name.as_str()), "{name} is named: {err}");
    }
    let first = uploaded(&proxy.log(), 0);
    down.store(false, Ordering::SeqCst);
    manifests.store(100, Ordering::SeqCst);
    let before = proxy.log().len();
    let o = push_all(&dest, &archive, &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}\n{out}");
    let evs = events(&out);
    let got = images(&evs);
    // What landed before the drop is there (the image whose tag went in just before it, though
    // not read back, too); the rest is pushed.
    assert!(got.values().any(|(s, _)| s == "present"), "{got:?}");
    assert!(got.values().any(|(s, _)| s == "pushed"), "{got:?}");
    assert!(got.values().all(|(s, _)| s == "present" || s == "pushed"));
    for d in uploaded(&proxy.log(), before) {
        assert!(!first.contains(&d), "{d} uploaded twice");
    }
    all_pull_back(&dest, "bulk/net", &imgs, &evs, &out);
}

#[test]
fn an_unnamed_image_goes_by_digest_under_a_prefix_and_is_there_on_a_rerun() {
    let reg = Registry::anonymous();
    let imgs = [image("alpine:3", 1), image("", 2)];
    let (_work, archive) = bundle_file(&imgs);
    let dest = format!("{}/m", reg.addr());
    let statuses = || {
        let o = push_all(&dest, &archive, &[]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}\n{out}");
        images(&events(&out))
    };
    let first = statuses();
    let (key, (status, reference)) = first
        .iter()
        .find(|(k, _)| k.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("{first:?}"));
    assert_eq!(status, "pushed");
    assert_eq!(*reference, format!("{dest}@{key}"));
    pulls_back(reference, key, &imgs[1]);
    let again = statuses();
    assert_eq!(again[key.as_str()].0, "present", "{again:?}");
    assert_eq!(again["alpine:3"].0, "present", "{again:?}");
}

#[test]
fn a_bundle_files_layers_go_up_while_it_is_read() {
    let reg = Registry::anonymous();
    let proxy = FaultProxy::start(reg.port(), |_| Fault::Pass);
    let imgs: Vec<TestImage> = (0..4)
        .map(|i| image(&format!("bulk/flow{i}:1"), 40 + i))
        .collect();
    let (_work, archive) = bundle_file(&imgs);
    let dest = format!("{}/site", proxy.addr());
    let o = push_all(&dest, &archive, &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}\n{out}");
    let evs = events(&out);
    // The `layer` events say what was read: they come once the read is over. Every layer went
    // up before that, each to the first image's repository that has it.
    let first_layer = evs
        .iter()
        .position(|e| e["event"] == "layer")
        .unwrap_or_else(|| panic!("no layer event: {out}"));
    let uploads: Vec<(usize, &serde_json::Value)> = evs
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event"] == "blob" && e["action"] == "uploaded")
        .collect();
    let layers: Vec<&serde_json::Value> = evs.iter().filter(|e| e["event"] == "layer").collect();
    for layer in &layers {
        let (at, up) = uploads
            .iter()
            .find(|(_, u)| u["digest"] == layer["digest"])
            .unwrap_or_else(|| panic!("{layer} not uploaded: {out}"));
        assert!(*at < first_layer, "{up} after the read: {out}");
    }
    let once: Vec<&&serde_json::Value> = layers
        .iter()
        .filter(|l| {
            uploads
                .iter()
                .filter(|(_, u)| u["digest"] == l["digest"])
                .count()
                == 1
        })
        .collect();
    assert_eq!(once.len(), layers.len(), "each layer uploaded once: {out}");
    // Each blob of each repository gets one event saying where it ended: a layer uploaded while
    // the archive was read is not reported again by its repository's pass.
    let mut ends: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
    for e in evs.iter().filter(|e| e["event"] == "blob") {
        let action = e["action"].as_str().unwrap();
        if ["uploaded", "mounted", "skipped"].contains(&action) {
            let key = (e["repository"].to_string(), e["digest"].to_string());
            ends.entry(key).or_default().push(action);
        }
    }
    for ((repository, digest), actions) in &ends {
        assert_eq!(
            actions.len(),
            1,
            "{repository} {digest}: {actions:?}\n{out}"
        );
    }
    // Nothing went up twice, the base was mounted into the others, every image pulls back.
    let sent = uploaded(&proxy.log(), 0);
    let mut unique = sent.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), sent.len(), "{sent:?}");
    let mounted = evs
        .iter()
        .filter(|e| e["event"] == "blob" && e["action"] == "mounted")
        .count();
    assert_eq!(
        mounted,
        2 * (imgs.len() - 1),
        "the base's two layers: {out}"
    );
    all_pull_back(&dest, "bulk/flow", &imgs, &evs, &out);
}

/// A base large enough to be streamed while it is compressed (from the archive file: through
/// memory), owned by the first image, whose repository refuses every upload: its early stream
/// fails, and the other image's repository still gets the base after the read (exit 1 names the
/// refused image only; the other pulls back).
#[test]
fn a_streamed_layer_whose_early_upload_is_refused_goes_up_after_the_read() {
    let reg = Registry::anonymous();
    let proxy = refusing_writes(
        &reg,
        "/v2/site/bulk/denied/",
        Arc::new(AtomicBool::new(true)),
    );
    let base = layer_tar(&[("bin/big", &noise(9, 6 << 20))]);
    let imgs = [
        TestImage::new("bulk/denied:1", vec![base.clone()]),
        TestImage::new("bulk/fine:1", vec![base, layer_tar(&[("etc/own", b"own")])]),
    ];
    let (_work, archive) = bundle_file(&imgs);
    let dest = format!("{}/site", proxy.addr());
    let o = push_all(&dest, &archive, &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}\n{out}");
    assert!(err.contains("bulk/denied"), "{err}");
    assert!(!err.contains("bulk/fine"), "{err}");
    let evs = events(&out);
    let reference = format!("{dest}/bulk/fine:1");
    let digest = tagged(&evs, &reference, &out);
    pulls_back(&reference, digest, &imgs[1]);
}
