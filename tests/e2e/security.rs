//! The security rules of docs/security.md, end to end through `layerlift-push`:
//!
//! - `Authorization` is never sent to another host: a registry that redirects blob requests to a
//!   second host (another loopback proxy) gets credentials, the second host never does (the
//!   client-level test is `crates/registry/tests/faults.rs`); a chunked upload session recorded in
//!   the cache's journal on another origin is dropped, not resumed (client-level tests of upload
//!   Locations and token realms on another origin: `crates/registry/tests/trust.rs`);
//! - credentials never appear in any output: every push of the e2e suite runs through
//!   `util::run`/`util::run_with_stdin`, which fail the test when stdout or stderr holds a test
//!   password or its `user:password` base64; here, failing pushes in each auth mode too;
//! - TLS is verified by default: without the CA, the push fails with one clear line and uploads
//!   nothing; `--insecure` is the only way past it;
//! - an OCI layout SOURCE's blobs are hashed as they are uploaded, and never read through a link
//!   out of the layout;
//! - local state: a cache directory another user can write to is refused when given, left unused
//!   when it is the default one; `--no-cache` reads and writes nothing in it;
//! - plain HTTP is never used for a host that is not loopback unless `--plain-http` is given: with a
//!   proxy in the environment (the testkit's, on loopback, serving tunnels to remote hosts itself:
//!   nothing leaves the machine), a push to 192.0.2.1 (TEST-NET-1) only ever starts TLS in its
//!   tunnel; with `--plain-http` it sends plain HTTP.

use crate::util::{
    Image, Mode, ModeRegistry, PASSWORD, WRONG_PASSWORD, layer_tar, push_cmd, run, snapshot,
    tag_digest, text, write_layout,
};
use layerlift_testkit::{Fault, FaultProxy, Registry};
use std::path::{Path, PathBuf};

fn small_layout(work: &Path) -> PathBuf {
    let src = work.join("oci");
    write_layout(
        &src,
        &[Image {
            name: "latest".into(),
            layers: vec![layer_tar("a", 1, 3000), layer_tar("b", 2, 5000)],
        }],
        true,
    );
    src
}

#[test]
fn authorization_is_not_sent_to_another_host_after_a_redirect() {
    let reg = Registry::htpasswd("dora", PASSWORD);
    let second = FaultProxy::transparent(reg.port());
    let to = format!("http://{}", second.addr());
    // The first host answers every blob existence check with a redirect to the second one.
    let first = FaultProxy::start(reg.port(), move |r| {
        if r.method == "HEAD" && r.target.contains("/blobs/sha256:") {
            Fault::Redirect { to: to.clone() }
        } else {
            Fault::Pass
        }
    });
    let work = tempfile::tempdir().unwrap();
    let mut c = push_cmd();
    c.arg(small_layout(work.path()))
        .arg(format!("{}/redir:1", first.addr()))
        .args(["--plain-http", "--retries", "1", "--creds"])
        .arg(format!("dora:{PASSWORD}"));
    let o = run(c);
    let (out, err) = text(&o);
    // The second host answers 401 (no credentials): the blob reads as absent and is uploaded.
    assert!(o.status.success(), "{err}");
    assert!(
        first.log().iter().any(|l| l.authorization),
        "the first host got credentials"
    );
    let second_log = second.log();
    assert!(
        !second_log.is_empty(),
        "the redirect was not followed: {out}{err}"
    );
    assert!(
        second_log.iter().all(|l| !l.authorization),
        "Authorization sent to the second host: {second_log:?}"
    );
}

#[test]
fn failing_pushes_print_no_credentials_in_any_mode() {
    let work = tempfile::tempdir().unwrap();
    let src = small_layout(work.path());
    for mode in [Mode::Basic, Mode::Token, Mode::Tls] {
        let reg = ModeRegistry::start(mode);
        // A wrong password, in plain and JSON output; the password right but the CA missing.
        for json in [false, true] {
            let mut c = push_cmd();
            c.arg(&src)
                .arg(format!("{}/sec:1", reg.addr()))
                .args(["--retries", "1", "--creds"])
                .arg(format!("erin:{WRONG_PASSWORD}"));
            if let Some(ca) = reg.reg.ca_cert_path() {
                c.arg("--ca-cert").arg(ca);
            }
            if json {
                c.arg("--json");
            }
            let o = run(c); // checks stdout and stderr for every test secret
            assert_eq!(o.status.code(), Some(1), "{mode:?}: {}", text(&o).1);
        }
        let mut c = push_cmd();
        c.arg(&src)
            .arg(format!("{}/sec:2", reg.addr()))
            .args(["--retries", "1", "--json", "--creds"])
            .arg(format!("erin:{PASSWORD}"));
        let o = run(c);
        assert_eq!(o.status.code() == Some(0), mode != Mode::Tls, "{mode:?}");
    }
}

#[test]
fn tls_is_verified_by_default() {
    let reg = ModeRegistry::start(Mode::Tls);
    let work = tempfile::tempdir().unwrap();
    let src = small_layout(work.path());
    let creds = format!("erin:{PASSWORD}");
    let mut c = push_cmd();
    c.arg(&src)
        .arg(format!("{}/tls:1", reg.addr()))
        .args(["--retries", "1", "--creds", &creds]);
    let o = run(c);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(&reg.addr()) && err.to_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(
        !reg.reg.log().contains("\"PUT /v2/"),
        "something was uploaded"
    );
    // The failure is the verification: --insecure gets through, and so does the CA.
    let mut c = push_cmd();
    c.arg(&src)
        .arg(format!("{}/tls:1", reg.addr()))
        .args(["-q", "--insecure", "--creds", &creds]);
    crate::util::assert_ok(&run(c));
    let mut c = push_cmd();
    c.arg(&src)
        .arg(format!("{}/tls:2", reg.addr()))
        .arg("-q")
        .args(reg.push_args());
    crate::util::assert_ok(&run(c));
}

/// A CA installed in the system's trust store (here the file `SSL_CERT_FILE` names, as OpenSSL and
/// rustls-native-certs read it) is trusted without `--ca-cert`, as Docker and curl trust it.
#[test]
fn a_ca_in_the_system_trust_store_is_trusted() {
    let reg = ModeRegistry::start(Mode::Tls);
    let work = tempfile::tempdir().unwrap();
    let src = small_layout(work.path());
    let bundle = work.path().join("system-ca-bundle.pem");
    std::fs::copy(reg.reg.ca_cert_path().unwrap(), &bundle).unwrap();
    let mut c = push_cmd();
    c.arg(&src)
        .arg(format!("{}/tls:system", reg.addr()))
        .args([
            "-q",
            "--retries",
            "1",
            "--creds",
            &format!("erin:{PASSWORD}"),
        ])
        .env("SSL_CERT_FILE", &bundle);
    crate::util::assert_ok(&run(c));
}

/// Push to 192.0.2.1 with every proxy variable pointing at our loopback proxy, which logs what it
/// is asked and serves tunnels to other hosts itself: nothing leaves the machine.
fn push_via_env_proxy(src: &Path, proxy: &FaultProxy, extra: &[&str]) -> std::process::Output {
    let mut c = push_cmd();
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        c.env(var, format!("http://{}", proxy.addr()));
    }
    c.env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .arg(src)
        .arg("192.0.2.1:5000/sec:1")
        .args(["--retries", "1", "--timeout", "3"])
        .args(extra);
    run(c)
}

#[test]
fn plain_http_is_only_used_for_a_remote_host_when_asked() {
    let reg = Registry::anonymous();
    let proxy = FaultProxy::catching_remote(reg.port());
    let work = tempfile::tempdir().unwrap();
    let src = small_layout(work.path());
    let o = push_via_env_proxy(&src, &proxy, &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("192.0.2.1:5000"), "{err}");
    let log = proxy.log();
    assert!(!log.is_empty(), "the proxy was not used: {err}");
    // Only tunnels: every one began with a TLS handshake (a plain request in one would be logged).
    assert!(
        log.iter()
            .all(|l| l.method == "CONNECT" && l.target == "192.0.2.1:5000"),
        "plain HTTP sent to a remote host: {log:?}"
    );
    // The positive control: with --plain-http the same push speaks plain HTTP (and, the proxy
    // forwarding it to our registry, lands).
    let proxy = FaultProxy::catching_remote(reg.port());
    let o = push_via_env_proxy(&src, &proxy, &["--plain-http"]);
    let log = proxy.log();
    assert!(
        log.iter()
            .any(|l| l.method != "CONNECT" && l.target.contains("/v2/")),
        "{log:?}\n{}",
        text(&o).1
    );
}

/// Write a resume-journal entry in `cache` for every blob of the layout `src` pushed to
/// `registry`/`repository`, naming an upload session on `session_host` (what a run against a
/// registry answering with sessions there would have recorded). Returns the entries.
fn journal_entries(
    src: &Path,
    cache: &Path,
    registry: &str,
    repository: &str,
    session_host: &str,
) -> Vec<PathBuf> {
    use sha2::Digest as _;
    let journal = cache.join("uploads-v1");
    std::fs::create_dir_all(&journal).unwrap();
    let mut entries = Vec::new();
    for e in std::fs::read_dir(src.join("blobs/sha256")).unwrap() {
        let hex = e.unwrap().file_name().to_string_lossy().into_owned();
        let key = format!("{registry}\n{repository}\nsha256:{hex}");
        let file = journal.join(format!("{}.url", hex::encode(sha2::Sha256::digest(key))));
        std::fs::write(
            &file,
            format!(
                "http://{session_host}/v2/{repository}/blobs/uploads/0b1d7a3c-0000-4000-8000-000000000000?_state=x"
            ),
        )
        .unwrap();
        entries.push(file);
    }
    entries
}

/// A chunked upload session recorded in the cache's journal (`uploads-v1/`) on another origin
/// than the registry's (here a proxy on 127.0.0.2 in front of the same registry) is dropped, not
/// resumed: resuming it would send the registry's credentials there.
#[test]
fn a_journal_session_on_another_origin_is_not_resumed() {
    let reg = Registry::htpasswd("dora", PASSWORD);
    let other = FaultProxy::start_on(std::net::Ipv4Addr::new(127, 0, 0, 2), reg.port(), |_| {
        Fault::Pass
    });
    let work = tempfile::tempdir().unwrap();
    let src = small_layout(work.path());
    let cache = work.path().join("cache");
    let registry = reg.addr();
    let entries = journal_entries(&src, &cache, &registry, "journal/x", &other.addr());
    let mut c = push_cmd();
    c.arg(&src)
        .arg(format!("{registry}/journal/x:1"))
        .args(["--plain-http", "--chunk-size", "1000", "--creds"])
        .arg(format!("dora:{PASSWORD}"))
        .arg("--cache-dir")
        .arg(&cache);
    let o = run(c);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        other.log().is_empty(),
        "a session on another origin was resumed: {:?}",
        other.log()
    );
    // Every blob uploaded dropped its entry (the manifest's is never read: manifests are PUT).
    assert!(
        entries.iter().filter(|f| !f.exists()).count() >= 3,
        "journal entries kept"
    );
}

/// `--no-cache` leaves the cache directory alone: a chunked push neither reads the resume
/// journal (a run that read these entries, on another origin, would drop them) nor writes it,
/// nor the layer cache.
#[test]
fn no_cache_reads_and_writes_nothing_in_the_cache_directory() {
    let reg = Registry::anonymous();
    let work = tempfile::tempdir().unwrap();
    let src = small_layout(work.path());
    let cache = work.path().join("cache");
    journal_entries(&src, &cache, &reg.addr(), "nocache", "127.0.0.2:1");
    let before = snapshot(&cache);
    let mut c = push_cmd();
    c.arg(&src)
        .arg(format!("{}/nocache:1", reg.addr()))
        .args([
            "--plain-http",
            "--chunk-size",
            "1000",
            "--no-cache",
            "--cache-dir",
        ])
        .arg(&cache);
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(snapshot(&cache), before, "the cache directory changed");
    assert!(tag_digest(&reg, "nocache", "1").is_some());
}

/// A cache directory another user can write to (here mode 0777, not sticky) could hold planted
/// entries: given with `--cache-dir` or `LAYERLIFT_CACHE_DIR`, the push fails with one line and
/// pushes nothing; the default one (`$XDG_CACHE_HOME/layerlift`) is left unused, with a warning
/// (a `cache-unused` event with `--json`), and the push goes on. Nothing is written in it.
#[test]
fn a_cache_directory_other_users_can_write_to_is_refused_or_unused() {
    use std::os::unix::fs::PermissionsExt;
    let reg = Registry::anonymous();
    let work = tempfile::tempdir().unwrap();
    let src = small_layout(work.path());
    let open = work.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let push = |tag: &str| {
        let mut c = push_cmd();
        c.arg(&src)
            .arg(format!("{}/unsafe:{tag}", reg.addr()))
            .args(["--plain-http", "--chunk-size", "1000"])
            .env_remove("LAYERLIFT_CACHE_DIR")
            .env("XDG_CACHE_HOME", work.path().join("private-cache"));
        c
    };
    let mut given = push("given");
    given.arg("--cache-dir").arg(&open);
    let mut from_env = push("env");
    from_env.env("LAYERLIFT_CACHE_DIR", &open);
    for (tag, c) in [("given", given), ("env", from_env)] {
        let o = run(c);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{tag}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{tag}: one line: {err}");
        assert!(
            err.contains(&format!("cache directory {}", open.display()))
                && err.contains("writable by other users (mode 0777)"),
            "{tag}: {err}"
        );
        assert_eq!(tag_digest(&reg, "unsafe", tag), None, "{tag}: pushed");
    }
    for json in [false, true] {
        let mut c = push(if json { "json" } else { "default" });
        c.env("XDG_CACHE_HOME", &open);
        if json {
            c.arg("--json");
        }
        let o = run(c);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        let cache = open.join("layerlift");
        if json {
            let unused = out
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|e| e["event"] == "cache-unused")
                .unwrap_or_else(|| panic!("no cache-unused event: {out}"));
            assert_eq!(unused["path"], cache.display().to_string());
        } else {
            assert!(
                err.contains(&format!(
                    "warning: not using the cache directory {}",
                    cache.display()
                )),
                "{err}"
            );
        }
    }
    assert_eq!(
        std::fs::read_dir(&open).unwrap().count(),
        0,
        "something was written in the unsafe cache directory"
    );
}

/// The largest blob file of a layout (a layer of [`small_layout`]'s) and its digest's hex.
fn largest_blob(src: &Path) -> (PathBuf, String) {
    let file = std::fs::read_dir(src.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let hex = file.file_name().unwrap().to_string_lossy().into_owned();
    (file, hex)
}

/// The layers of an OCI layout SOURCE were written by someone else: each is hashed as it is
/// uploaded. A layer file altered after it was written (same size, other bytes) fails the push
/// with one line naming the file, before the request carrying its last byte completes, sent in
/// one PUT or in chunks (then no final PUT is sent); no manifest is pushed and the registry
/// stores no blob of that digest. (docker-registry checks the digest itself and refused the blob
/// before, with its own `DIGEST_INVALID` that named no file; a registry that does not check is
/// what this guards against.)
#[test]
fn a_layout_blob_altered_after_it_was_written_fails_the_push() {
    let reg = Registry::anonymous();
    let work = tempfile::tempdir().unwrap();
    let src = small_layout(work.path());
    let (file, hex) = largest_blob(&src);
    let mut bytes = std::fs::read(&file).unwrap();
    *bytes.last_mut().unwrap() ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    for (tag, extra) in [("put", &[][..]), ("chunked", &["--chunk-size", "1000"][..])] {
        let proxy = FaultProxy::transparent(reg.port());
        let mut c = push_cmd();
        c.arg(&src)
            .arg(format!("{}/altered:{tag}", proxy.addr()))
            .args(["--plain-http", "--retries", "2", "--no-cache"])
            .args(extra);
        let o = run(c);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{tag}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{tag}: one line: {err}");
        assert!(
            err.contains(&format!(
                "{} does not hold blob sha256:{hex}",
                file.display()
            )),
            "{tag}: {err}"
        );
        assert_eq!(tag_digest(&reg, "altered", tag), None, "{tag}: tagged");
        let log = proxy.log();
        assert!(
            !log.iter()
                .any(|l| l.method == "PUT" && l.target.contains("/manifests/")),
            "{tag}: a manifest was pushed: {log:?}"
        );
        // In chunks, the last PATCH fails: the PUT that would commit the blob is never sent.
        // (In one PUT, the request is cut before its last byte.)
        if tag == "chunked" {
            assert!(
                !log.iter()
                    .any(|l| l.method == "PUT" && l.target.contains(&hex)),
                "a final PUT of the altered blob was sent: {log:?}"
            );
        }
    }
    let stored = reg
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex);
    assert!(!stored.exists(), "the registry stored {hex}");
}

/// A blob file of an OCI layout SOURCE that leads out of the layout through a symbolic link (its
/// own, or the `blobs` directory's) is refused with one line naming it, before anything is
/// pushed: the push would upload a file the layout only points at. A link that stays inside the
/// layout is followed.
#[test]
fn a_layout_blob_linked_outside_the_layout_is_refused() {
    let reg = Registry::anonymous();
    let work = tempfile::tempdir().unwrap();
    let src = small_layout(work.path());
    let push = |tag: &str| {
        let mut c = push_cmd();
        c.arg(&src)
            .arg(format!("{}/linked:{tag}", reg.addr()))
            .args(["--plain-http", "--no-cache"]);
        run(c)
    };
    // `named`: the file the error names (with the whole directory elsewhere, the first blob
    // read: a manifest's).
    let refused = |tag: &str, named: &str| {
        let o = push(tag);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{tag}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{tag}: one line: {err}");
        assert!(
            err.contains(named)
                && err.contains("leads through a symbolic link to")
                && err.contains("outside the layout"),
            "{tag}: {err}"
        );
        assert!(
            !reg.storage_dir()
                .join("docker/registry/v2/repositories/linked")
                .exists(),
            "{tag}: something was pushed"
        );
    };
    let (file, hex) = largest_blob(&src);
    let outside = work.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::rename(&file, outside.join(&hex)).unwrap();
    std::os::unix::fs::symlink(outside.join(&hex), &file).unwrap();
    refused("file", &file.display().to_string());
    // The whole blobs directory elsewhere.
    std::fs::remove_file(&file).unwrap();
    std::fs::rename(outside.join(&hex), &file).unwrap();
    let moved = work.path().join("moved-blobs");
    std::fs::rename(src.join("blobs"), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, src.join("blobs")).unwrap();
    refused("dir", &format!("{}/", src.join("blobs/sha256").display()));
    // Inside the layout: followed.
    std::fs::remove_file(src.join("blobs")).unwrap();
    std::fs::rename(&moved, src.join("blobs")).unwrap();
    std::fs::create_dir(src.join("elsewhere")).unwrap();
    std::fs::rename(&file, src.join("elsewhere").join(&hex)).unwrap();
    std::os::unix::fs::symlink(format!("../../elsewhere/{hex}"), &file).unwrap();
    let o = push("inside");
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(tag_digest(&reg, "linked", "inside").is_some());
}

/// Push's catalog (the archive's metadata, read before any layer) refuses the descriptor fan-out
/// bomb (an oci-archive whose index.json has 50,000 entries naming one manifest of 50,000 layers)
/// with a clear error and in bounded time, and pushes nothing.
#[test]
fn push_refuses_a_descriptor_fan_out_bomb() {
    let reg = Registry::anonymous();
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("bomb.tar");
    crate::bad_input::fanout_bomb_archive(&archive);
    let mut c = push_cmd();
    c.arg(&archive)
        .arg(format!("{}/bomb:1", reg.addr()))
        .args(["-q", "--no-cache"])
        .env("TMPDIR", work.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let start = std::time::Instant::now();
    let mut child = c.spawn().unwrap();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("fan out to more than"), "{err}");
    assert_eq!(crate::util::tag_digest(&reg, "bomb", "1"), None);
}
