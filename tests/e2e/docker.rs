//! Docker's own world: images built from nothing by the local Docker Engine, written by its own
//! `docker save`, pushed by layerlift to a local registry, then pulled and run by the same Docker.
//!
//! The daemon has no images and cannot pull any, so every rootfs is Debian's static busybox plus
//! small files written here. Images are built by the daemon's classic builder (the CLI with
//! `DOCKER_BUILDKIT=0`) and by its built-in BuildKit (the Engine API's `POST /build?version=2`,
//! which needs no buildx plugin), and one base image is `docker load`ed from an archive written
//! here, because neither builder on a fuse-overlayfs daemon writes an opaque directory.
//!
//! Each round trip checks that Docker pulls the pushed image by tag and by the digest layerlift
//! printed with the image ID it had before `docker save` (the config bytes survived), and that a
//! container of it prints what a container of the original printed: a file from every layer, the
//! deleted file absent, the hard link (one inode) and the symlink intact.
//!
//! Every image gets a tag unique to the test process (`layerlift-e2e/<name>:<pid>`), with a file
//! unique to it in its first layer, so that no layer is shared with another test's image and
//! every pull really downloads every layer. A [`Cleanup`] guard removes every reference a test
//! created, also when it fails. When no Docker daemon answers, each test says so on stderr and
//! returns.

use crate::util::{podman_archive, pushed, text};
use layerlift_testkit::Registry;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

// ---------------------------------------------------------------------------------------------
// The daemon

/// The daemon's version (`20.10.24+dfsg1`), or None when `docker info` does not answer.
fn daemon_version() -> Option<&'static str> {
    static VERSION: OnceLock<Result<String, String>> = OnceLock::new();
    let v = VERSION.get_or_init(|| {
        match Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) => {
                let (out, err) = text(&o);
                if o.status.success() && !out.trim().is_empty() {
                    Ok(out.trim().to_string())
                } else {
                    Err(format!("`docker info` failed: {}", err.trim()))
                }
            }
            Err(e) => Err(format!("cannot run `docker`: {e}")),
        }
    });
    match v {
        Ok(v) => Some(v),
        Err(reason) if std::env::var_os("LAYERLIFT_SKIP_DOCKER").is_some() => {
            eprintln!("skip (LAYERLIFT_SKIP_DOCKER): no Docker daemon answers: {reason}");
            None
        }
        Err(reason) => panic!(
            "the Docker tests need a Docker daemon (every machine of this project runs one; \
             LAYERLIFT_SKIP_DOCKER=1 skips them): {reason}"
        ),
    }
}

/// The daemon's major version (20 for `20.10.24+dfsg1`).
fn daemon_major(version: &str) -> u32 {
    version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
}

/// Run `docker ARGS`; panics with its stderr unless it succeeded; its stdout.
pub(crate) fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "docker {}: {err}{out}", args.join(" "));
    out
}

/// `docker inspect -f FORMAT REF`, trimmed.
pub(crate) fn inspect(reference: &str, format: &str) -> String {
    docker_ok(&["inspect", "-f", format, reference])
        .trim()
        .to_string()
}

/// The config's diff_ids of an image in the daemon.
fn diff_ids(reference: &str) -> Vec<String> {
    serde_json::from_str(&inspect(reference, "{{json .RootFS.Layers}}")).unwrap()
}

/// Removes every image reference a test created (tags and `repo@digest` names, never bare image
/// IDs, which could belong to another test), also when the test fails.
#[derive(Default)]
pub(crate) struct Cleanup {
    refs: Vec<String>,
}

impl Cleanup {
    pub(crate) fn add(&mut self, reference: &str) {
        self.refs.push(reference.to_string());
    }

    /// Remove `reference` now (and forget it).
    pub(crate) fn rmi(&mut self, reference: &str) {
        docker_ok(&["rmi", reference]);
        self.refs.retain(|r| r != reference);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.refs.is_empty() {
            return;
        }
        let mut c = Command::new("docker");
        c.args(["rmi", "-f"]).args(&self.refs);
        let _ = c.stdin(Stdio::null()).output();
    }
}

/// `layerlift-e2e/<name>:<pid>`.
pub(crate) fn local_tag(name: &str) -> String {
    format!("layerlift-e2e/{name}:{}", std::process::id())
}

// ---------------------------------------------------------------------------------------------
// Building

/// The mtime of every file in a build context: COPY keeps it, so equal files give equal layers.
const MTIME: u64 = 1_000_000_000;

/// `security.capability` for `cap_net_raw+ep` (VFS_CAP_REVISION_2), the one xattr Docker's
/// layer tars carry.
const CAP_NET_RAW: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// Debian's busybox-static binary (scripts/install-test-deps.sh installs it).
pub(crate) fn busybox() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let path = std::env::var_os("PATH")
            .and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("busybox"))
                    .find(|b| b.is_file())
            })
            .unwrap_or_else(|| PathBuf::from("/bin/busybox"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (install Debian's busybox-static: scripts/install-test-deps.sh)",
                path.display()
            )
        });
        assert!(
            bytes.starts_with(b"\x7fELF"),
            "{} is not a binary",
            path.display()
        );
        bytes
    })
}

/// A text unique to this test process and `name`: no two tests (or runs) share a first layer.
fn marker(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name} {} {nanos}\n", std::process::id())
}

/// A build context directory: busybox, `marker`, and `files`, all with mtime [`MTIME`].
pub(crate) fn context(name: &str, files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("layerlift-docker-ctx-")
        .tempdir()
        .unwrap();
    let marker = marker(name);
    let mut all: Vec<(&str, &[u8])> = vec![("busybox", busybox()), ("marker", marker.as_bytes())];
    all.extend_from_slice(files);
    for (file, bytes) in all {
        let path = dir.path().join(file);
        std::fs::write(&path, bytes).unwrap();
        let mode = if file == "busybox" { 0o755 } else { 0o644 };
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(MTIME))
            .unwrap();
    }
    dir
}

/// Build `dockerfile` in `ctx` with the classic builder (`DOCKER_BUILDKIT=0 docker build`), tag it
/// `tag`; the image ID.
pub(crate) fn classic_build(
    ctx: &Path,
    dockerfile: &str,
    tag: &str,
    args: &[(&str, &str)],
) -> String {
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let mut c = Command::new("docker");
    c.env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", tag])
        .stdin(Stdio::null());
    for (k, v) in args {
        c.arg("--build-arg").arg(format!("{k}={v}"));
    }
    let o = c.arg(ctx).output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "classic build of {tag}: {err}{out}");
    inspect(tag, "{{.Id}}")
}

/// The Engine API's Unix socket: `DOCKER_HOST` when it is `unix://…`, else the default.
fn docker_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => PathBuf::from(&h["unix://".len()..]),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The build context `ctx` as the tar the Engine API takes: GNU headers, files in name order,
/// `cap` (when present) last, carrying the `security.capability` xattr in a PAX header.
fn context_tar(ctx: &Path) -> Vec<u8> {
    let mut names: Vec<String> = std::fs::read_dir(ctx)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort_by_key(|n| (n == "cap", n.clone()));
    let mut b = tar::Builder::new(Vec::new());
    for name in names {
        let data = std::fs::read(ctx.join(&name)).unwrap();
        if name == "cap" {
            b.append_pax_extensions([("SCHILY.xattr.security.capability", &CAP_NET_RAW[..])])
                .unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(if name == "busybox" || name == "cap" {
            0o755
        } else {
            0o644
        });
        h.set_mtime(MTIME);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(&mut h, &name, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

/// Build `dockerfile` in `ctx` with the daemon's built-in BuildKit: `POST /build?version=2` on the
/// Engine API, the context tar as the body (HTTP/1.0, so the answer is the raw JSON stream up to
/// the close). The image ID.
fn buildkit_build(ctx: &Path, dockerfile: &str, tag: &str, args: &[(&str, &str)]) -> String {
    use std::os::unix::net::UnixStream;
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let body = context_tar(ctx);
    let mut query = format!("/v1.41/build?version=2&t={}", url_encode(tag));
    if !args.is_empty() {
        let map: serde_json::Map<String, Value> = args
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        query.push_str(&format!(
            "&buildargs={}",
            url_encode(&Value::Object(map).to_string())
        ));
    }
    let socket = docker_socket();
    let mut s = UnixStream::connect(&socket)
        .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    write!(
        s,
        "POST {query} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response);
    let (head, stream) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("BuildKit build of {tag}: no HTTP answer: {response}"));
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "BuildKit build of {tag}: {head}\n{stream}"
    );
    let mut id = None;
    for line in stream.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("BuildKit build of {tag}: {e}: {line}"));
        if let Some(err) = v.get("error") {
            panic!("BuildKit build of {tag}: {err}");
        }
        if v["id"] == "moby.image.id" {
            id = v["aux"]["ID"].as_str().map(str::to_string);
        }
    }
    let id = id.unwrap_or_else(|| panic!("BuildKit build of {tag}: no image ID in {stream}"));
    assert_eq!(inspect(tag, "{{.Id}}"), id);
    id
}

/// `docker load` an archive; panics unless it loaded.
fn docker_load(archive: &[u8]) {
    let mut child = Command::new("docker")
        .args(["load", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(archive).unwrap();
    let o = child.wait_with_output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "docker load: {err}{out}");
}

/// One layer tar entry.
enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, u32, &'a [u8]),
    Symlink(&'a str, &'a str),
}

fn layer(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        let (path, data): (&str, &[u8]) = match *e {
            Entry::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (p, &[])
            }
            Entry::File(p, mode, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(mode);
                (p, data)
            }
            Entry::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_link_name(target).unwrap();
                (p, &[])
            }
        };
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    }
    b.into_inner().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Saving and pushing

/// `docker save REFS… -o FILE`.
pub(crate) fn save_file(refs: &[&str], file: &Path) {
    let mut args = vec!["save", "-o", file.to_str().unwrap()];
    args.extend_from_slice(refs);
    docker_ok(&args);
}

/// `docker save REF | gzip > FILE` (bash with pipefail).
fn save_gzip(reference: &str, file: &Path) {
    let o = Command::new("bash")
        .arg("-c")
        .arg("set -o pipefail; docker save \"$1\" | gzip -c > \"$2\"")
        .args(["bash", reference, file.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "docker save | gzip: {err}{out}");
}

fn push_command() -> Command {
    let mut c = crate::util::push_cmd();
    c.arg("--no-cache");
    c
}

/// `layerlift-push SOURCE DEST EXTRA…`; the digest it printed for DEST.
fn push(source: &Path, dest: &str, extra: &[&str]) -> String {
    let mut c = push_command();
    c.arg(source).arg(dest).args(["-q"]).args(extra);
    digest_of(&c.output().unwrap(), dest)
}

/// `docker save REF | layerlift-push - DEST`; the digest it printed.
fn push_from_docker_save(reference: &str, dest: &str) -> String {
    let mut save = Command::new("docker")
        .args(["save", reference])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut c = push_command();
    c.args(["-", dest, "-q"])
        .stdin(Stdio::from(save.stdout.take().unwrap()));
    let o = c.output().unwrap();
    let s = save.wait_with_output().unwrap();
    assert!(
        s.status.success(),
        "docker save {reference}: {}",
        text(&s).1
    );
    digest_of(&o, dest)
}

fn digest_of(o: &Output, dest: &str) -> String {
    crate::util::assert_no_secrets(o);
    let (out, err) = text(o);
    assert!(o.status.success(), "push to {dest}: {err}{out}");
    let lines = pushed(&out);
    let (r, d) = lines
        .iter()
        .find(|(r, _)| r == dest)
        .unwrap_or_else(|| panic!("push to {dest} printed no digest for it: {out}"));
    assert_eq!(r, dest);
    assert!(d.starts_with("sha256:") && d.len() == 71, "{d}");
    d.clone()
}

// ---------------------------------------------------------------------------------------------
// Pulling and running

/// `docker run --rm REF busybox sh -c SCRIPT`: what it printed.
pub(crate) fn run_in(reference: &str, script: &str) -> String {
    docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        reference,
        "/bin/busybox",
        "sh",
        "-c",
        script,
    ])
}

/// `docker pull REF` (every layer must be downloaded: none may be in the daemon already), then
/// check its image ID and what a container of it prints; the reference stays for the caller.
fn pull_and_run(reference: &str, want_id: &str, script: &str, want: &str, cleanup: &mut Cleanup) {
    cleanup.add(reference);
    let out = docker_ok(&["pull", reference]);
    assert!(
        !out.contains("Already exists"),
        "docker pull {reference} found layers already in the daemon: {out}"
    );
    assert_eq!(
        inspect(reference, "{{.Id}}"),
        want_id,
        "docker pull {reference}: not the image ID docker built"
    );
    assert_eq!(run_in(reference, script), want, "docker run {reference}");
}

/// Pull `repo:tag` and then `repo@digest` (each into an empty daemon as far as this image goes),
/// check ID and output each time, and remove them again.
fn pull_by_tag_and_digest(
    tag_ref: &str,
    digest: &str,
    want_id: &str,
    script: &str,
    want: &str,
    cleanup: &mut Cleanup,
) {
    pull_and_run(tag_ref, want_id, script, want, cleanup);
    let repo_digests = inspect(tag_ref, "{{json .RepoDigests}}");
    let repo = tag_ref.rsplit_once(':').unwrap().0;
    let by_digest = format!("{repo}@{digest}");
    assert!(
        repo_digests.contains(&by_digest),
        "docker pull {tag_ref}: RepoDigests {repo_digests} lack {by_digest}"
    );
    cleanup.rmi(tag_ref);
    pull_and_run(&by_digest, want_id, script, want, cleanup);
    cleanup.rmi(&by_digest);
}

// ---------------------------------------------------------------------------------------------
// What the containers print

/// Prints one line per check: a file from every layer, the deleted file absent, the opaque
/// directory, the hard link (one inode), the symlink, the empty directory, the setuid file.
const FEATURES_SCRIPT: &str = r#"
for f in /bin/marker /base.txt /same.txt /l5.txt; do echo "$f: $(cat $f)"; done
echo "d: $(ls /d | tr '\n' ' ')"
[ -e /gone ] && echo "gone: present" || echo "gone: absent"
[ "$(stat -c %i /h1)" = "$(stat -c %i /h2)" ] && echo "h2: hard link of h1" || echo "h2: other inode"
echo "sym: $(readlink /sym) -> $(cat /sym)"
echo "empty: $(stat -c %F /empty), $(ls -A /empty | wc -l) entries"
echo "suid: $(stat -c %a /suid)"
"#;

/// What [`FEATURES_SCRIPT`] prints in an image whose marker is `marker`, `/d` holding `d`.
fn features_output(marker: &str, d: &str) -> String {
    format!(
        "/bin/marker: {}\n/base.txt: base\n/same.txt: same\n/l5.txt: l5\nd: {d}\ngone: absent\n\
         h2: hard link of h1\nsym: /h1 -> data\nempty: directory, 0 entries\nsuid: 4755\n",
        marker.trim_end()
    )
}

pub(crate) fn read_marker(ctx: &Path) -> String {
    std::fs::read_to_string(ctx.join("marker")).unwrap()
}

/// The entries of a `docker save` archive: path → (is a symlink, link target).
fn archive_entries(archive: &Path) -> Vec<(String, Option<String>)> {
    let mut a = tar::Archive::new(std::fs::File::open(archive).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let link = (e.header().entry_type() == tar::EntryType::Symlink).then(|| {
                e.link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            });
            (path, link)
        })
        .collect()
}

/// The bytes of one member of a `docker save` archive.
fn archive_member(archive: &Path, name: &str) -> Vec<u8> {
    let mut a = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == name {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            return v;
        }
    }
    panic!("{}: no {name}", archive.display());
}

/// The `Layers` of each image in a `docker save` archive's manifest.json.
fn saved_layers(archive: &Path) -> Vec<Vec<String>> {
    let m: Value = serde_json::from_slice(&archive_member(archive, "manifest.json")).unwrap();
    m.as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["Layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// Whether some layer of a `docker save` archive holds `path` with a `security.capability` xattr.
fn layer_has_xattr(archive: &Path, path: &str) -> Option<bool> {
    for layers in saved_layers(archive) {
        for l in layers {
            let bytes = archive_member(archive, &resolve_in_archive(archive, &l));
            let mut t = tar::Archive::new(bytes.as_slice());
            for e in t.entries().unwrap() {
                let mut e = e.unwrap();
                if e.path().unwrap().to_string_lossy() == path {
                    let has = e.pax_extensions().unwrap().is_some_and(|x| {
                        x.into_iter().any(|x| {
                            x.unwrap().key().unwrap() == "SCHILY.xattr.security.capability"
                        })
                    });
                    return Some(has);
                }
            }
        }
    }
    None
}

/// A layer path of a `docker save` archive with its `layer.tar` symlink (if it is one) followed.
fn resolve_in_archive(archive: &Path, name: &str) -> String {
    let entries = archive_entries(archive);
    match entries.iter().find(|(p, _)| p == name) {
        Some((_, Some(target))) => {
            let dir = Path::new(name).parent().unwrap();
            let mut parts: Vec<&str> = dir.to_str().unwrap().split('/').collect();
            for seg in target.split('/') {
                match seg {
                    ".." => {
                        parts.pop();
                    }
                    "." | "" => {}
                    s => parts.push(s),
                }
            }
            parts.retain(|p| !p.is_empty());
            parts.join("/")
        }
        _ => name.to_string(),
    }
}

/// The `layer.tar` symlinks of a `docker save` archive: (entry, target).
fn layer_symlinks(archive: &Path) -> Vec<(String, String)> {
    archive_entries(archive)
        .into_iter()
        .filter_map(|(p, l)| Some((p, l?)))
        .filter(|(p, _)| p.ends_with("/layer.tar"))
        .collect()
}

/// The repeated entries of a list.
fn repeated(list: &[String]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    list.iter()
        .filter(|x| !seen.insert(x.as_str()))
        .cloned()
        .collect()
}

/// What every Docker test starts with: the daemon's version, the images to remove at the end, a
/// work directory and a registry of its own. `_timer` prints the test's wall time when it ends.
pub(crate) struct DockerTest {
    pub(crate) version: &'static str,
    pub(crate) cleanup: Cleanup,
    pub(crate) work: tempfile::TempDir,
    reg: Registry,
    _timer: Timer,
}

/// `None` only when the Docker tests are skipped on purpose (see [`daemon_version`]).
pub(crate) fn docker_test(name: &'static str) -> Option<DockerTest> {
    Some(DockerTest {
        version: daemon_version()?,
        cleanup: Cleanup::default(),
        work: tempfile::tempdir().unwrap(),
        reg: Registry::anonymous(),
        _timer: Timer(name, Instant::now()),
    })
}

/// Prints `NAME: S s` on stderr when dropped.
struct Timer(&'static str, Instant);

impl Drop for Timer {
    fn drop(&mut self) {
        eprintln!("{}: {:.1} s", self.0, self.1.elapsed().as_secs_f64());
    }
}

/// The diff_id of an empty layer (a tar of two zero blocks): what BuildKit commits for a step that
/// changes nothing.
const EMPTY_LAYER: &str = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// The config of the first image of a `docker save` archive.
fn saved_config(archive: &Path) -> Value {
    let m: Value = serde_json::from_slice(&archive_member(archive, "manifest.json")).unwrap();
    let name = m[0]["Config"].as_str().unwrap().to_string();
    serde_json::from_slice(&archive_member(archive, &name)).unwrap()
}

/// What each round trip pushes and pulls.
struct RoundTrip<'a> {
    /// The image in the daemon (`layerlift-e2e/<name>:<pid>`).
    local: &'a str,
    /// Its image ID.
    id: &'a str,
    /// Built by BuildKit, whose build cache keeps the layers after the image is removed: prune
    /// it (`docker builder prune -af`: the whole unused BuildKit cache of the daemon) so that the
    /// pulls download every layer.
    prune_build_cache: bool,
    /// `127.0.0.1:<port>/e2e/<name>`.
    repo: &'a str,
    script: &'a str,
    want: &'a str,
}

/// `docker save` the image to a file, `docker save | gzip` to a .tgz, and `docker save` straight
/// into `layerlift-push -`; remove the image from the daemon; push the file and the .tgz; every
/// push must give the same digest. Then pull each tag, and the digest, check the image ID and what
/// a container prints. Returns the pushed digest; the daemon no longer holds the image.
fn round_trip(rt: &RoundTrip, work: &Path, cleanup: &mut Cleanup) -> String {
    let file = work.join("image.tar");
    let tgz = work.join("image.tgz");
    save_file(&[rt.local], &file);
    save_gzip(rt.local, &tgz);
    let from_pipe = push_from_docker_save(rt.local, &format!("{}:pipe", rt.repo));
    cleanup.rmi(rt.local);
    if rt.prune_build_cache {
        docker_ok(&["builder", "prune", "-af"]);
    }
    let from_file = push(&file, &format!("{}:file", rt.repo), &[]);
    let from_tgz = push(&tgz, &format!("{}:tgz", rt.repo), &[]);
    assert_eq!(from_file, from_pipe, "file and pipe pushes differ");
    assert_eq!(from_tgz, from_pipe, "file and .tgz pushes differ");
    for tag in ["pipe", "file"] {
        let r = format!("{}:{tag}", rt.repo);
        pull_and_run(&r, rt.id, rt.script, rt.want, cleanup);
        cleanup.rmi(&r);
    }
    pull_by_tag_and_digest(
        &format!("{}:tgz", rt.repo),
        &from_tgz,
        rt.id,
        rt.script,
        rt.want,
        cleanup,
    );
    from_pipe
}

/// A base image `docker load`ed from layers written here (the third makes `/d` opaque), and a
/// derived image built on it by the classic builder: a whiteout, the same COPY twice (one diff_id
/// twice), `RUN true` (no layer: an `empty_layer` history entry), a hard link, a symlink, an empty
/// directory and a 4755 file. Round trip of the derived image, and of both saved together.
#[test]
fn docker_classic_build_round_trip() {
    let Some(mut t) = docker_test("docker_classic_build_round_trip") else {
        return;
    };
    let ctx = context("classic", &[("same.txt", b"same\n")]);
    let marker = read_marker(ctx.path());

    let base = local_tag("classic-base");
    let layers = [
        layer(&[
            Entry::Dir("bin/"),
            Entry::File("bin/busybox", 0o755, busybox()),
            Entry::Symlink("bin/sh", "busybox"),
            Entry::File("bin/marker", 0o644, marker.as_bytes()),
        ]),
        layer(&[
            Entry::File("base.txt", 0o644, b"base\n"),
            Entry::Dir("d/"),
            Entry::File("d/old1", 0o644, b"old1\n"),
            Entry::File("d/old2", 0o644, b"old2\n"),
            Entry::File("gone", 0o644, b"gone\n"),
        ]),
        layer(&[
            Entry::Dir("d/"),
            Entry::File("d/.wh..wh..opq", 0o644, b""),
            Entry::File("d/new", 0o644, b"new\n"),
        ]),
    ];
    t.cleanup.add(&base);
    docker_load(&podman_archive(&layers, &[], &base).0);
    assert_eq!(
        run_in(&base, "ls /d | tr '\\n' ' '"),
        "new ",
        "the loaded base's opaque /d"
    );

    let derived = local_tag("classic");
    t.cleanup.add(&derived);
    let dockerfile = format!(
        r#"FROM {base}
SHELL ["/bin/busybox", "sh", "-c"]
COPY same.txt /same.txt
RUN rm /same.txt /gone
COPY same.txt /same.txt
RUN true
RUN echo l5 > /l5.txt && echo data > /h1 && ln /h1 /h2 && ln -s /h1 /sym && mkdir /empty && cp /bin/busybox /suid && chmod 4755 /suid
"#
    );
    let id = classic_build(ctx.path(), &dockerfile, &derived, &[]);
    let ids = diff_ids(&derived);
    assert_eq!(ids.len(), 7, "{ids:?}");
    assert_eq!(ids[3], ids[5], "the two COPY same.txt layers: {ids:?}");
    let want = features_output(&marker, "new ");
    assert_eq!(
        run_in(&derived, FEATURES_SCRIPT),
        want,
        "docker run {derived}"
    );

    // What docker save writes for it: `RUN true` made no layer, the repeated diff_id a symlink.
    let file = t.work.path().join("derived.tar");
    save_file(&[&derived], &file);
    let config = saved_config(&file);
    let history = config["history"].as_array().unwrap();
    let run_true = history
        .iter()
        .find(|h| h["created_by"].as_str().unwrap().ends_with("sh -c true"))
        .expect("RUN true in the history");
    assert_eq!(run_true["empty_layer"], true, "{run_true}");
    let links = layer_symlinks(&file);
    assert_eq!(links.len(), 1, "{links:?}");

    // Base and derived saved together: base's top layer is written again under the derived
    // image's v1 ID for it (a different ID: the top layer's v1 ID hashes the image config), so it
    // becomes a second symlink.
    let both = t.work.path().join("both.tar");
    save_file(&[&base, &derived], &both);
    assert_eq!(
        layer_symlinks(&both).len(),
        2,
        "{:?}",
        layer_symlinks(&both)
    );

    let base_id = inspect(&base, "{{.Id}}");
    t.cleanup.rmi(&base);
    let repo = format!("{}/e2e/classic", t.reg.addr());
    let digest = round_trip(
        &RoundTrip {
            local: &derived,
            id: &id,
            prune_build_cache: false,
            repo: &repo,
            script: FEATURES_SCRIPT,
            want: &want,
        },
        t.work.path(),
        &mut t.cleanup,
    );

    // The two images of `docker save base derived`, each pushed with --image.
    let base_repo = format!("{}/e2e/classic-base", t.reg.addr());
    let base_digest = push(&both, &format!("{base_repo}:both"), &["--image", &base]);
    let derived_digest = push(&both, &format!("{repo}:both"), &["--image", &derived]);
    assert_eq!(
        derived_digest, digest,
        "derived pushed from the two-image save"
    );
    pull_by_tag_and_digest(
        &format!("{base_repo}:both"),
        &base_digest,
        &base_id,
        "cat /bin/marker; ls /d",
        &format!("{marker}new\n"),
        &mut t.cleanup,
    );
}

/// An image built from scratch by the daemon's BuildKit: whiteout, the same COPY twice, two
/// `RUN true` (BuildKit commits each as the empty layer, so that diff_id is there twice too),
/// hard link, symlink, empty directory, a 4755 file, and a file COPYed with a
/// `security.capability` xattr.
#[test]
fn docker_buildkit_build_round_trip() {
    let Some(mut t) = docker_test("docker_buildkit_build_round_trip") else {
        return;
    };
    let ctx = context(
        "buildkit",
        &[("same.txt", b"same\n"), ("cap", b"#!/bin/sh\n")],
    );
    let marker = read_marker(ctx.path());
    let local = local_tag("buildkit");
    t.cleanup.add(&local);
    let dockerfile = r#"FROM scratch
COPY busybox marker /bin/
SHELL ["/bin/busybox", "sh", "-c"]
RUN echo base > /base.txt && mkdir /d && echo new > /d/new && echo gone > /gone
COPY same.txt /same.txt
RUN rm /same.txt /gone
COPY same.txt /same.txt
RUN true
RUN true
RUN echo l5 > /l5.txt && echo data > /h1 && ln /h1 /h2 && ln -s /h1 /sym && mkdir /empty && cp /bin/busybox /suid && chmod 4755 /suid
COPY cap /cap
"#;
    let id = buildkit_build(ctx.path(), dockerfile, &local, &[]);
    let ids = diff_ids(&local);
    assert_eq!(ids.len(), 9, "{ids:?}");
    assert_eq!(ids[2], ids[4], "the two COPY same.txt layers: {ids:?}");
    assert_eq!(
        (ids[5].as_str(), ids[6].as_str()),
        (EMPTY_LAYER, EMPTY_LAYER),
        "RUN true: {ids:?}"
    );
    let want = features_output(&marker, "new ");
    assert_eq!(run_in(&local, FEATURES_SCRIPT), want, "docker run {local}");

    let file = t.work.path().join("saved.tar");
    save_file(&[&local], &file);
    assert_eq!(
        layer_symlinks(&file).len(),
        2,
        "{:?}",
        layer_symlinks(&file)
    );
    assert_eq!(
        layer_has_xattr(&file, "cap"),
        Some(true),
        "the layer of COPY cap lost the security.capability xattr its build context gave it"
    );

    round_trip(
        &RoundTrip {
            local: &local,
            id: &id,
            prune_build_cache: true,
            repo: &format!("{}/e2e/buildkit", t.reg.addr()),
            script: FEATURES_SCRIPT,
            want: &want,
        },
        t.work.path(),
        &mut t.cleanup,
    );
}

/// Push with `--json`: the events.
fn push_json(source: &Path, dest: &str) -> Vec<Value> {
    let mut c = push_command();
    c.arg(source).arg(dest).arg("--json");
    let o = c.output().unwrap();
    crate::util::assert_no_secrets(&o);
    let (out, err) = text(&o);
    assert!(o.status.success(), "push to {dest}: {err}{out}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn json_digest(ev: &[Value]) -> String {
    ev.iter().find(|e| e["event"] == "result").unwrap()["images"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Digests of the blobs a push uploaded.
fn uploaded(ev: &[Value]) -> Vec<String> {
    ev.iter()
        .filter(|e| e["event"] == "blob" && e["action"] == "uploaded")
        .map(|e| e["digest"].as_str().unwrap().to_string())
        .collect()
}

/// (verified, source) of each `layer` event.
fn layer_sources(ev: &[Value]) -> Vec<(bool, String)> {
    ev.iter()
        .filter(|e| e["event"] == "layer")
        .map(|e| {
            (
                e["verified"].as_bool().unwrap(),
                e["source"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A manifest as the registry serves it, read from its storage.
fn registry_manifest(reg: &Registry, digest: &str) -> Value {
    let hex = digest.trim_start_matches("sha256:");
    let path = reg
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn manifest_layers(reg: &Registry, digest: &str) -> Vec<String> {
    registry_manifest(reg, digest)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// The rebuild every few hours: the same Dockerfile built twice with a different `--build-arg`
/// feeding a data file. Only that layer's diff_id changes, and pushing the second build over the
/// first (from `docker save | gzip`, and from a `docker save -o` file) uploads only that layer and
/// the config; from the file the unchanged layers are not even read.
#[test]
fn docker_rebuild_with_new_build_arg_uploads_only_that_layer() {
    let Some(mut t) = docker_test("docker_rebuild_with_new_build_arg_uploads_only_that_layer")
    else {
        return;
    };
    let ctx = context("rebuild", &[("app.txt", b"app\n"), ("same.txt", b"same\n")]);
    let marker = read_marker(ctx.path());
    let dockerfile = r#"FROM scratch
COPY busybox marker /bin/
COPY app.txt /app.txt
ARG DATA=none
RUN ["/bin/busybox", "sh", "-c", "echo \"$DATA\" > /data.txt"]
COPY same.txt /last.txt
"#;
    let v1 = local_tag("rebuild-v1");
    let v2 = local_tag("rebuild-v2");
    t.cleanup.add(&v1);
    t.cleanup.add(&v2);
    classic_build(ctx.path(), dockerfile, &v1, &[("DATA", "one")]);
    let id2 = classic_build(ctx.path(), dockerfile, &v2, &[("DATA", "two")]);
    let (ids1, ids2) = (diff_ids(&v1), diff_ids(&v2));
    assert_eq!(ids1.len(), 4);
    let changed: Vec<usize> = (0..4).filter(|&i| ids1[i] != ids2[i]).collect();
    assert_eq!(
        changed,
        [2],
        "only the data layer changes: {ids1:?} {ids2:?}"
    );

    let (v1_tar, v1_tgz) = (t.work.path().join("v1.tar"), t.work.path().join("v1.tgz"));
    let (v2_tar, v2_tgz) = (t.work.path().join("v2.tar"), t.work.path().join("v2.tgz"));
    save_file(&[&v1], &v1_tar);
    save_gzip(&v1, &v1_tgz);
    save_file(&[&v2], &v2_tar);
    save_gzip(&v2, &v2_tgz);
    t.cleanup.rmi(&v1);
    t.cleanup.rmi(&v2);

    // From `docker save | gzip`: every byte is read, only the new layer is uploaded.
    let gz = format!("{}/e2e/rebuild-gz:latest", t.reg.addr());
    push(&v1_tgz, &gz, &[]);
    let ev = push_json(&v2_tgz, &gz);
    let digest = json_digest(&ev);
    let layers = manifest_layers(&t.reg, &digest);
    let config = registry_manifest(&t.reg, &digest)["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut up = uploaded(&ev);
    up.sort();
    let mut want_up = vec![layers[2].clone(), config];
    want_up.sort();
    assert_eq!(up, want_up, "uploads of the rebuild from .tgz");

    // From a `docker save -o` file: the unchanged layers are not read.
    let plain = format!("{}/e2e/rebuild-tar:latest", t.reg.addr());
    push(&v1_tar, &plain, &[]);
    let ev = push_json(&v2_tar, &plain);
    assert_eq!(json_digest(&ev), digest, "the .tar and .tgz pushes of v2");
    let registry = (false, "registry".to_string());
    assert_eq!(
        layer_sources(&ev),
        [
            registry.clone(),
            registry.clone(),
            (true, "archive".to_string()),
            registry
        ],
        "the rebuild from a file"
    );
    let mut up = uploaded(&ev);
    up.sort();
    assert_eq!(up, want_up, "uploads of the rebuild from .tar");

    let script = "cat /bin/marker /app.txt /data.txt /last.txt";
    let want = format!("{marker}app\ntwo\nsame\n");
    pull_by_tag_and_digest(&gz, &digest, &id2, script, &want, &mut t.cleanup);
}

/// `layerlift-unpack` the saved image, `layerlift-convert` it to zstd and to uncompressed layers,
/// push both and let Docker pull them: uncompressed always runs with the same image ID; zstd needs
/// Docker 23 or later (moby `pkg/archive` decompresses zstd from v23.0.0 on), and an older Docker
/// refuses it with the error asserted here.
#[test]
fn docker_pulls_zstd_and_uncompressed_layouts() {
    let Some(mut t) = docker_test("docker_pulls_zstd_and_uncompressed_layouts") else {
        return;
    };
    let version = t.version;
    let ctx = context("codecs", &[("same.txt", b"same\n")]);
    let marker = read_marker(ctx.path());
    let local = local_tag("codecs");
    t.cleanup.add(&local);
    let id = classic_build(
        ctx.path(),
        "FROM scratch\nCOPY busybox marker /bin/\nCOPY same.txt /same.txt\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo l3 > /l3.txt\"]\n",
        &local,
        &[],
    );
    let file = t.work.path().join("image.tar");
    save_file(&[&local], &file);
    t.cleanup.rmi(&local);
    let layout = t.work.path().join("layout");
    let o = Command::new(env!("CARGO_BIN_EXE_layerlift-unpack"))
        .arg(&file)
        .arg(&layout)
        .arg("-q")
        .output()
        .unwrap();
    assert!(o.status.success(), "unpack: {}", text(&o).1);
    let script = "cat /bin/marker /same.txt /l3.txt";
    let want = format!("{marker}same\nl3\n");
    for codec in ["none", "zstd"] {
        let out = t.work.path().join(codec);
        let o = Command::new(env!("CARGO_BIN_EXE_layerlift-convert"))
            .arg(&layout)
            .arg(&out)
            .args(["--compression", codec, "-q"])
            .output()
            .unwrap();
        assert!(o.status.success(), "convert {codec}: {}", text(&o).1);
        let reference = format!("{}/e2e/codecs:{codec}", t.reg.addr());
        let digest = push(&out, &reference, &[]);
        if codec == "zstd" && daemon_major(version) < 23 {
            t.cleanup.add(&reference);
            let o = docker(&["pull", &reference]);
            let (stdout, stderr) = text(&o);
            eprintln!("docker {version} pulling zstd layers: {stderr}{stdout}");
            assert!(!o.status.success(), "Docker {version} pulled zstd layers");
            assert!(
                stderr.contains(
                    "failed to register layer: Error processing tar file(exit status 1): \
                     archive/tar: invalid tar header"
                ),
                "docker pull {reference}: {stderr}"
            );
            continue;
        }
        pull_by_tag_and_digest(&reference, &digest, &id, script, &want, &mut t.cleanup);
    }
}

/// The Dockerfile of docs/docker-save-symlinks.md, built by the classic builder: the same file
/// COPYed twice gives one diff_id twice, and `docker save` stores that layer once. Before Docker
/// 25 the second `<id>/layer.tar` is a symlink to the first; from 25 on manifest.json names the
/// one `blobs/sha256/<diff_id>` twice. layerlift pushes it from `docker save | gzip`, the manifest
/// names one blob twice, and Docker pulls and runs it.
#[test]
fn docker_save_symlink_reproducer_from_the_docs() {
    let Some(mut t) = docker_test("docker_save_symlink_reproducer_from_the_docs") else {
        return;
    };
    let version = t.version;
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/docker-save-symlinks.md"),
    )
    .unwrap();
    let dockerfile = doc
        .split("```dockerfile\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/docker-save-symlinks.md has a ```dockerfile block");
    let ctx = context("symlink", &[("settings.txt", b"colour=blue\n")]);
    let local = local_tag("symlink");
    t.cleanup.add(&local);
    let id = classic_build(ctx.path(), dockerfile, &local, &[]);
    let ids = diff_ids(&local);
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(repeated(&ids), [ids[1].clone()], "{ids:?}");

    let file = t.work.path().join("image.tar");
    save_file(&[&local], &file);
    let layers = &saved_layers(&file)[0];
    if daemon_major(version) < 25 {
        let links = layer_symlinks(&file);
        let first = layers[1].trim_end_matches("/layer.tar");
        assert_eq!(
            links,
            [(layers[3].clone(), format!("../{first}/layer.tar"))],
            "docker {version} save: {layers:?}"
        );
    } else {
        assert_eq!(layers[1], layers[3], "docker {version} save: {layers:?}");
        let n = archive_entries(&file)
            .iter()
            .filter(|(p, _)| *p == layers[1])
            .count();
        assert_eq!(n, 1, "{} stored {n} times", layers[1]);
    }

    let tgz = t.work.path().join("image.tgz");
    save_gzip(&local, &tgz);
    t.cleanup.rmi(&local);
    let reference = format!("{}/e2e/symlink:latest", t.reg.addr());
    let digest = push(&tgz, &reference, &[]);
    let pushed_layers = manifest_layers(&t.reg, &digest);
    assert_eq!(pushed_layers.len(), 4);
    assert_eq!(repeated(&pushed_layers), [pushed_layers[1].clone()]);
    pull_by_tag_and_digest(
        &reference,
        &digest,
        &id,
        "cat /settings.txt",
        "colour=blue\n",
        &mut t.cleanup,
    );
}
