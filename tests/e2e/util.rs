//! Test harness shared by the end-to-end tests: fixture paths, tools on PATH, and for the push tests
//! one way to run `layerlift-push` ([`push_cmd`], [`run`], [`run_with_stdin`]: a clean credential
//! environment, and every output checked for the test passwords), one registry per auth/TLS mode
//! with the flags each client needs ([`Mode`], [`ModeRegistry`]), skopeo read-back into an OCI
//! layout that `verify::layout` checks ([`skopeo_pull`]), and small generated images ([`Image`], from the
//! testkit).

use crate::verify::{self, CheckedImage};
use layerlift_testkit::{Auth, Registry, RegistryOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The directory of archives written by real tools: `tests/fixtures/` in the repository.
pub fn real_tool_fixtures() -> PathBuf {
    crate::fixtures::root().join("tests/fixtures")
}

/// Copy a directory tree (files and directories only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Is an external tool (skopeo, umoci, gzip, zstd…) on PATH? A test that needs a missing tool fails,
/// unless `LAYERLIFT_ALLOW_MISSING_TOOLS` is set (then it is skipped with a note).
pub fn have_tool(name: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("LAYERLIFT_ALLOW_MISSING_TOOLS").is_some(),
            "{name} is not installed (scripts/install-test-deps.sh installs it; \
             set LAYERLIFT_ALLOW_MISSING_TOOLS=1 to skip)"
        );
        eprintln!("note: {name} not installed, skipping");
    }
    found
}

/// `sha256:<hex>` of some bytes: the tests' one sha256 helper.
pub fn sha256_digest(bytes: &[u8]) -> String {
    layerlift_manifest::Digest::of(bytes).to_string()
}

// ---------------------------------------------------------------------------------------------
// Running layerlift-push

/// The password of every test user in the push tests, and one that is always wrong.
pub const PASSWORD: &str = "e2e-Pa55w0rd-xyzzy";
pub const WRONG_PASSWORD: &str = "e2e-Wr0ng-plugh";
/// Users the push tests log in as (their `user:password` in base64 is a secret too).
const USERS: &[&str] = &["alice", "bob", "carol", "hal", "dora", "erin"];

/// `layerlift-push` with no credentials from the machine running the tests.
pub fn push_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_layerlift-push"));
    let empty = std::env::temp_dir().join("layerlift-e2e-no-docker-config");
    c.env("DOCKER_CONFIG", &empty)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("DOCKER_AUTH_CONFIG")
        .env("XDG_RUNTIME_DIR", &empty)
        .env("XDG_CONFIG_HOME", &empty)
        .stdin(Stdio::null());
    c
}

/// Run a push (or any command given credentials) to the end; its output is checked for secrets.
pub fn run(mut cmd: Command) -> Output {
    let o = cmd.output().expect("run layerlift-push");
    assert_no_secrets(&o);
    o
}

/// [`run`] with `input` on standard input (`--password-stdin`).
pub fn run_with_stdin(mut cmd: Command, input: &str) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn layerlift-push");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_no_secrets(&o);
    o
}

/// Every form a test secret could be printed in: the passwords, and `user:password` in base64
/// (a Basic `Authorization` header or an auth.json `auth` field).
pub fn secrets() -> Vec<String> {
    let mut s = vec![PASSWORD.to_string(), WRONG_PASSWORD.to_string()];
    for user in USERS {
        for pw in [PASSWORD, WRONG_PASSWORD] {
            s.push(base64_encode(&format!("{user}:{pw}")));
        }
    }
    s
}

/// Panics when stdout or stderr holds a test secret.
pub fn assert_no_secrets(o: &Output) {
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    for secret in secrets() {
        assert!(!out.contains(&secret), "a secret in stdout: {out}");
        assert!(!err.contains(&secret), "a secret in stderr: {err}");
    }
}

/// stdout and stderr as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Panics unless the command succeeded; returns its stdout.
pub fn assert_ok(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(o.status.success(), "push failed: {err}\nstdout: {out}");
    out
}

/// The `REF@sha256:…` lines of a push: reference → digest.
pub fn pushed(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (r, d) = l.rsplit_once('@')?;
            Some((r.to_string(), d.to_string()))
        })
        .collect()
}

/// Standard base64 of `s` (as a Basic `Authorization` header or an auth.json `auth` holds it).
pub fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

// ---------------------------------------------------------------------------------------------
// One registry per auth/TLS mode

/// The four ways a registry is reached in the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain HTTP, no auth.
    Anonymous,
    /// Plain HTTP, htpasswd Basic auth (user `erin`).
    Basic,
    /// Plain HTTP, Bearer tokens from the testkit's token server (user `erin`).
    Token,
    /// HTTPS with a certificate from a generated CA, htpasswd Basic auth (user `erin`).
    Tls,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Anonymous, Mode::Basic, Mode::Token, Mode::Tls];
}

/// A running registry in one [`Mode`], with the flags layerlift-push and skopeo need for it.
pub struct ModeRegistry {
    pub mode: Mode,
    pub reg: Registry,
    /// `--src-cert-dir` for skopeo (TLS mode): a directory holding `ca.crt`.
    cert_dir: Option<tempfile::TempDir>,
}

impl ModeRegistry {
    pub fn start(mode: Mode) -> Self {
        let users = vec![("erin".to_string(), PASSWORD.to_string())];
        let (auth, tls) = match mode {
            Mode::Anonymous => (Auth::Anonymous, false),
            Mode::Basic => (Auth::Htpasswd(users), false),
            Mode::Token => (
                Auth::Token {
                    users,
                    expires_in: 300,
                },
                false,
            ),
            Mode::Tls => (Auth::Htpasswd(users), true),
        };
        let reg = Registry::start(RegistryOptions { auth, tls });
        let cert_dir = reg.ca_cert_path().map(|ca| {
            let d = tempfile::tempdir().unwrap();
            std::fs::copy(ca, d.path().join("ca.crt")).unwrap();
            d
        });
        ModeRegistry {
            mode,
            reg,
            cert_dir,
        }
    }

    pub fn addr(&self) -> String {
        self.reg.addr()
    }

    /// What layerlift-push needs besides SOURCE and DEST.
    pub fn push_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if self.mode != Mode::Anonymous {
            a.extend(["--creds".to_string(), format!("erin:{PASSWORD}")]);
        }
        if let Some(ca) = self.reg.ca_cert_path() {
            a.extend(["--ca-cert".to_string(), ca.display().to_string()]);
        }
        a
    }

    /// What `skopeo copy docker://…` needs to read from this registry.
    pub fn skopeo_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if self.mode != Mode::Anonymous {
            a.extend(["--src-creds".to_string(), format!("erin:{PASSWORD}")]);
        }
        match &self.cert_dir {
            Some(d) => a.extend(["--src-cert-dir".to_string(), d.path().display().to_string()]),
            None => a.push("--src-tls-verify=false".to_string()),
        }
        a
    }

    /// The digest `repo:tag` points at, read from the registry's own storage (no client involved).
    pub fn tag_digest(&self, repo: &str, tag: &str) -> Option<String> {
        tag_digest(&self.reg, repo, tag)
    }
}

/// A registry client of our own for `reg` (anonymous, plain HTTP, no retries), pinged: an
/// independent reader of what a push left.
pub fn anonymous_client(reg: &Registry) -> layerlift_registry::Client {
    let client = layerlift_registry::Client::new(
        &reg.addr(),
        layerlift_registry::Credential::Anonymous,
        layerlift_registry::TransportOptions::default(),
        layerlift_registry::RetryPolicy::none(),
    )
    .unwrap();
    client.ping().unwrap();
    client
}

/// The digest `repo:tag` points at in a testkit registry, read from its storage directory.
pub fn tag_digest(reg: &Registry, repo: &str, tag: &str) -> Option<String> {
    let link = reg
        .storage_dir()
        .join("docker/registry/v2/repositories")
        .join(repo)
        .join("_manifests/tags")
        .join(tag)
        .join("current/link");
    std::fs::read_to_string(link)
        .ok()
        .map(|s| s.trim().to_string())
}

// ---------------------------------------------------------------------------------------------
// skopeo read-back

/// Pull `reference` (every platform the registry has) with skopeo into a `dir:` under `work`, and
/// rearrange what it wrote into an OCI layout (`blobs/sha256/…`, `index.json` naming the top
/// manifest) so that [`verify::layout`] can check it: every blob against its digest, every layer
/// decompressed against the config's diff_ids. Panics unless the top manifest's bytes hash to
/// `digest`. Returns the checked images.
pub fn skopeo_pull(
    reference: &str,
    digest: &str,
    extra: &[String],
    work: &Path,
) -> Vec<CheckedImage> {
    try_skopeo_pull(reference, digest, extra, work).unwrap_or_else(|e| panic!("{e}"))
}

/// [`skopeo_pull`] into a temporary directory; the layer digests of every image pulled.
pub fn skopeo_pull_layers(reference: &str, digest: &str, extra: &[String]) -> Vec<String> {
    let work = tempfile::tempdir().unwrap();
    pull_and_check(reference, digest, extra, work.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .1
}

/// [`skopeo_pull`], with skopeo's failure as an error.
pub fn try_skopeo_pull(
    reference: &str,
    digest: &str,
    extra: &[String],
    work: &Path,
) -> Result<Vec<CheckedImage>, String> {
    pull_and_check(reference, digest, extra, work).map(|(images, _)| images)
}

/// [`skopeo_pull`]: the checked images, and the layer digests of every image pulled.
fn pull_and_check(
    reference: &str,
    digest: &str,
    extra: &[String],
    work: &Path,
) -> Result<(Vec<CheckedImage>, Vec<String>), String> {
    let dir = work.join("dir");
    let o = Command::new("skopeo")
        .args(["copy", "-q", "--multi-arch", "all"])
        .args(extra)
        .arg(format!("docker://{reference}"))
        .arg(format!("dir:{}", dir.display()))
        .output()
        .expect("run skopeo");
    if !o.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(format!(
            "skopeo copy {reference}: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let mut manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    if sha256_digest(&manifest) != digest {
        // skopeo 1.9 re-serialises an OCI index it copies, dropping fields it does not know
        // (`artifactType`); the bytes the registry serves are what `inspect --raw` prints.
        manifest = skopeo_inspect_raw(reference, extra, false);
        std::fs::write(dir.join("manifest.json"), &manifest).unwrap();
    }
    assert_eq!(
        sha256_digest(&manifest),
        digest,
        "{reference}: the manifest skopeo read is not the pushed one"
    );
    let layout = work.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let hex = if name == "manifest.json" {
            digest.trim_start_matches("sha256:").to_string()
        } else if let Some(h) = name.strip_suffix(".manifest.json") {
            h.to_string()
        } else if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            name
        } else {
            continue; // `version`
        };
        std::fs::rename(entry.path(), blobs.join(hex)).unwrap();
    }
    let media_type = serde_json::from_slice::<serde_json::Value>(&manifest).unwrap()["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.docker.distribution.manifest.v2+json")
        .to_string();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": media_type, "digest": digest, "size": manifest.len()}],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let images = verify::layout(&layout);
    let layers = layout_layers(&layout, digest);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&layout);
    Ok((images, layers))
}

/// The layer digests of the image `digest` in the OCI layout at `dir`: of every platform whose
/// manifest the layout holds, when it is an index.
pub fn layout_layers(dir: &Path, digest: &str) -> Vec<String> {
    let path = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path(digest)).unwrap()).unwrap();
    if let Some(children) = v["manifests"].as_array() {
        return children
            .iter()
            .map(|c| c["digest"].as_str().unwrap())
            .filter(|d| path(d).exists())
            .flat_map(|d| layout_layers(dir, d))
            .collect();
    }
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// `skopeo inspect --raw [--config] docker://REFERENCE`: the manifest (or config) bytes as the
/// registry serves them. `extra` are `skopeo copy`'s `--src-*` flags.
pub fn skopeo_inspect_raw(reference: &str, extra: &[String], config: bool) -> Vec<u8> {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw"]);
    if config {
        c.arg("--config");
    }
    for a in extra {
        c.arg(a.replace("--src-", "--"));
    }
    let o = c.arg(format!("docker://{reference}")).output().unwrap();
    assert!(
        o.status.success(),
        "skopeo inspect {reference}: {}",
        text(&o).1
    );
    o.stdout
}

// ---------------------------------------------------------------------------------------------
// Generated images

/// A small image built in the test (the testkit's one image builder): uncompressed layer tars,
/// written as an OCI layout with gzip or plain layers by [`write_layout`].
pub use layerlift_testkit::image::{TestImage as Image, write_layout};

/// A layer tar holding one file `/<name>` of `size` letters derived from `seed` (gzip shrinks it
/// to about two thirds, at full speed).
pub fn layer_tar(name: &str, seed: u64, size: usize) -> Vec<u8> {
    use layerlift_testkit::image;
    image::layer_tar(&[(name, &image::letters(seed, size))])
}

/// Every file under `dir` with its contents, sorted: equal snapshots mean an unchanged tree.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let p = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.push((rel, sha256_digest(&std::fs::read(&p).unwrap())));
            }
        }
    }
    out.sort();
    out
}

/// `layerlift check DIR`: Ok(()) when it says the layout is valid, else its output.
pub fn layerlift_check(dir: &Path) -> Result<(), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_layerlift"))
        .arg("check")
        .arg(dir)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        let (o, e) = text(&out);
        Err(format!("{o}{e}"))
    }
}

/// A podman/skopeo-style docker-archive of `layers` tagged `tag`: `<diff_id>.tar` per layer,
/// `<config digest>.json`, `manifest.json` last. `stored` replaces the bytes stored for some layers
/// (by index), keeping the metadata that describes the real ones. Returns the archive and the
/// offset where the first layer's data ends.
pub fn podman_archive(
    layers: &[Vec<u8>],
    stored: &[(usize, Vec<u8>)],
    tag: &str,
) -> (Vec<u8>, usize) {
    podman_archive_of(&[(layers, tag)], stored)
}

/// A podman-style archive of one image ([`podman_archive`]) with what a pull of it must give back.
pub struct TestArchive {
    pub bytes: Vec<u8>,
    /// The config's digest (the image ID): a pull must give these config bytes.
    pub config: String,
    /// The layers' diff_ids, in order.
    pub diff_ids: Vec<String>,
}

impl TestArchive {
    /// The archive of `layers` tagged `tag`.
    pub fn new(layers: &[Vec<u8>], tag: &str) -> Self {
        let (bytes, _) = podman_archive(layers, &[], tag);
        let manifest: serde_json::Value = tar::Archive::new(&bytes[..])
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap().to_str() == Some("manifest.json"))
            .map(|e| serde_json::from_reader(e).unwrap())
            .unwrap();
        let config = manifest[0]["Config"].as_str().unwrap();
        TestArchive {
            config: format!("sha256:{}", config.trim_end_matches(".json")),
            diff_ids: layers.iter().map(|l| sha256_digest(l)).collect(),
            bytes,
        }
    }

    /// skopeo pulls `REGISTRY/reference` at `digest` from `reg`: one image with this archive's
    /// config bytes and layers.
    pub fn pulls_back(&self, reg: &Registry, reference: &str, digest: &str) {
        if !have_tool("skopeo") {
            return;
        }
        let work = tempfile::tempdir().unwrap();
        let images = skopeo_pull(
            &format!("{}/{reference}", reg.addr()),
            digest,
            &["--src-tls-verify=false".to_string()],
            work.path(),
        );
        assert_eq!(images.len(), 1, "{reference}");
        assert_eq!(images[0].config, self.config, "{reference}: config");
        assert_eq!(images[0].diff_ids, self.diff_ids, "{reference}: layers");
    }
}

/// [`podman_archive`] of several images, one `manifest.json` item each; the layers of all of them
/// come first, in order (`stored` indexes that list), then the configs.
pub fn podman_archive_of(
    images: &[(&[Vec<u8>], &str)],
    stored: &[(usize, Vec<u8>)],
) -> (Vec<u8>, usize) {
    let name = |l: &Vec<u8>| format!("{}.tar", &sha256_digest(l)[7..]);
    let mut configs = Vec::new();
    let mut items = Vec::new();
    for (layers, tag) in images {
        let ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": ids},
            "history": ids.iter().map(|_| serde_json::json!({"created_by": "test"})).collect::<Vec<_>>(),
        })
        .to_string();
        let config_name = format!("{}.json", &sha256_digest(config.as_bytes())[7..]);
        let layer_names: Vec<String> = layers.iter().map(name).collect();
        items.push(serde_json::json!({
            "Config": config_name, "RepoTags": [tag], "Layers": layer_names,
        }));
        configs.push((config_name, config));
    }
    let mut b = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    let mut first_end = 0;
    let all_layers = images.iter().flat_map(|(layers, _)| layers.iter());
    for (i, layer) in all_layers.enumerate() {
        let bytes = stored
            .iter()
            .find(|(j, _)| *j == i)
            .map_or(layer, |(_, s)| s);
        add(&mut b, &name(layer), bytes);
        if i == 0 {
            first_end = b.get_ref().len();
        }
    }
    for (config_name, config) in &configs {
        add(&mut b, config_name, config.as_bytes());
    }
    let manifest = serde_json::Value::Array(items).to_string();
    add(&mut b, "manifest.json", manifest.as_bytes());
    (b.into_inner().unwrap(), first_end)
}

/// A tmpfs mounted for one test, unmounted on drop.
pub struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// Mount a tmpfs of `size` (`4m`) on a new temporary directory (root only: `mount`).
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let o = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=1777"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            o.status.success(),
            "this test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Tmpfs(dir)
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}
