//! What a newcomer meets first: inputs that are not archives at all (an empty file, text, a zip,
//! gzip of something else, random bytes) get one line saying what the file is, in our words, without
//! its bytes; every usage error exits 2; push looks at its source before it contacts a registry; a
//! registry where nothing listens is given a couple of seconds, with a line saying what push waits
//! for, and the error names the URL that was tried.

use crate::fixtures::real_tool;
use crate::unpack::UNPACK;
use crate::util::{push_cmd, run};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const EXPECTED: &str = "expected a tar written by `docker save`, `podman save` or `skopeo copy`, \
                        plain or gzip/zstd/bzip2/xz compressed";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn unpack(archive: &Path, out: &Path) -> Output {
    Command::new(UNPACK).arg(archive).arg(out).output().unwrap()
}

/// Bytes that look random (a fixed xorshift sequence: the test is the same every run).
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn an_empty_file_says_it_is_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.tar");
    std::fs::write(&empty, b"").unwrap();
    let o = unpack(&empty, &tmp.path().join("out"));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "layerlift-unpack: error: {}: empty (0 bytes): not an archive; {EXPECTED}\n",
            empty.display()
        )
    );
    assert!(!tmp.path().join("out").exists());

    // A compressed stream that holds nothing says so too.
    let gz = tmp.path().join("empty.tar.gz");
    std::fs::write(&gz, gzip(b"")).unwrap();
    let o = Command::new(UNPACK)
        .arg("--list")
        .arg(&gz)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "layerlift-unpack: error: {}: a gzip stream that holds nothing (0 bytes once \
             decompressed): not an archive; {EXPECTED}\n",
            gz.display()
        )
    );
}

#[test]
fn a_file_that_is_not_an_archive_says_what_it_looks_like_without_its_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let long_text = "This is a README, not an image. ".repeat(40);
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00secret-zip-member-name".to_vec();
    zip.extend(noise(600));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("short.txt", b"hello\n".to_vec(), "this looks like text"),
        (
            "long.txt",
            long_text.clone().into_bytes(),
            "this looks like text",
        ),
        (
            "config.json",
            br#"{"architecture": "amd64", "os": "linux"}"#.to_vec(),
            "this looks like JSON or other text",
        ),
        (
            "page.html",
            b"<!doctype html><p>hi".to_vec(),
            "this looks like HTML or XML text",
        ),
        ("image.zip", zip, "this looks like a zip archive"),
        (
            "text.gz",
            gzip(long_text.as_bytes()),
            "gzip-compressed, but what it holds looks like text",
        ),
        (
            "noise.bin",
            noise(4096),
            "this looks like binary data (no tar header at the start)",
        ),
        (
            "noise.gz",
            gzip(&noise(4096)),
            "gzip-compressed, but what it holds looks like binary data (no tar header at the start)",
        ),
    ];
    for (name, bytes, looks) in cases {
        let file = tmp.path().join(name);
        std::fs::write(&file, &bytes).unwrap();
        let o = unpack(&file, &tmp.path().join("out"));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert_eq!(
            err,
            format!(
                "layerlift-unpack: error: {}: not an image archive: {looks}, not a tar archive; \
                 {EXPECTED}\n",
                file.display()
            ),
            "{name}"
        );
        for leak in [
            "README",
            "amd64",
            "secret-zip",
            "cksum",
            "numeric field",
            "<p>",
        ] {
            assert!(
                !err.contains(leak),
                "{name}: the message echoes the file or the tar library: {err}"
            );
        }
        assert!(!tmp.path().join("out").exists(), "{name}: wrote output");
    }
}

#[test]
fn a_tar_damaged_after_its_first_header_is_reported_in_our_words() {
    // A valid first header, then a block of noise where the next header should be.
    let tmp = tempfile::tempdir().unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path("a.txt").unwrap();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    let mut bytes = h.as_bytes().to_vec();
    bytes.extend(b"abc");
    bytes.resize(1024, 0);
    bytes.extend(noise(512));
    bytes.extend(vec![0u8; 1024]);
    let file = tmp.path().join("damaged.tar");
    std::fs::write(&file, &bytes).unwrap();
    let o = unpack(&file, &tmp.path().join("out"));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "layerlift-unpack: error: {}: not a valid tar archive: a header's checksum is wrong \
             (while reading an entry header)\n",
            file.display()
        )
    );
}

#[test]
fn every_usage_error_exits_2() {
    let archive = real_tool("containers-image/docker/archive/fixtures/almostempty.tar");
    let a = archive.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![a, "Not A Reference!"],
            "layerlift-push: error: DEST `Not A Reference!`: invalid image reference `Not A \
             Reference!`: repository name `library/Not A Reference!` must be lower-case\n",
        ),
        (
            vec!["--all", a, "127.0.0.1:1/x:1"],
            "layerlift-push: error: --all takes the tags from SOURCE: give DEST as \
             HOST/REPOSITORY without a tag\n",
        ),
        (
            vec!["--reuse-from", "example.com/a", a, "127.0.0.1:1/x"],
            "layerlift-push: error: --reuse-from example.com/a: layers can only be reused \
             from the destination's registry (127.0.0.1:1)\n",
        ),
        (
            vec!["--level", "13", a, "127.0.0.1:1/x"],
            "layerlift-push: error: --level 13: gzip levels are 1-12\n",
        ),
        (
            vec!["--compression", "none", "--level", "3", a, "127.0.0.1:1/x"],
            "layerlift-push: error: --level makes no sense with --compression none\n",
        ),
        (
            vec!["--creds", "no-colon", a, "127.0.0.1:1/x"],
            "layerlift-push: error: credentials in --creds are malformed: expected USER:PASSWORD\n",
        ),
        (
            vec!["-u", "alice", "--password-stdin", "-", "127.0.0.1:1/x"],
            "layerlift-push: error: --password-stdin and SOURCE `-` both need standard input\n",
        ),
    ];
    for (argv, expect) in cases {
        let mut c = push_cmd();
        c.args(&argv);
        let o = run(c);
        assert_eq!(stderr(&o), expect, "{argv:?}");
        assert_eq!(o.status.code(), Some(2), "{argv:?}");
    }
    // clap's own usage errors exit 2 as well, for every binary.
    for bin in [
        UNPACK,
        env!("CARGO_BIN_EXE_layerlift-convert"),
        env!("CARGO_BIN_EXE_layerlift-push"),
    ] {
        let o = Command::new(bin).arg("--no-such-flag").output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{bin}: {}", stderr(&o));
    }
    // A --platform that is no OS/ARCH[/VARIANT] is refused before anything is read.
    for bin in [UNPACK, env!("CARGO_BIN_EXE_layerlift-push")] {
        let o = Command::new(bin)
            .args(["--platform", "amd64", a, "127.0.0.1:1/x"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{bin}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with(
                "error: invalid value 'amd64' for '--platform <OS/ARCH[/VARIANT]>': expected \
                 OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64 or linux/arm64/v8"
            ),
            "{}",
            stderr(&o)
        );
    }
}

/// A loopback port where nothing listens (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn push_checks_its_source_before_it_contacts_the_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = format!("127.0.0.1:{}/app:1", closed_port());
    let missing = tmp.path().join("missing.tar");
    let empty = tmp.path().join("empty.tar");
    std::fs::write(&empty, b"").unwrap();
    let text = tmp.path().join("notes.txt");
    std::fs::write(&text, "remember to push the image\n").unwrap();
    let cases = [
        (
            &missing,
            format!(
                "layerlift-push: error: {}: cannot open: No such file or directory (os error 2)\n",
                missing.display()
            ),
        ),
        (
            &empty,
            format!(
                "layerlift-push: error: {}: empty (0 bytes): not an archive; {EXPECTED}\n",
                empty.display()
            ),
        ),
        (
            &text,
            format!(
                "layerlift-push: error: {}: not an image archive: this looks like text, not a \
                 tar archive; {EXPECTED}\n",
                text.display()
            ),
        ),
    ];
    for (source, expect) in cases {
        let start = Instant::now();
        let mut c = push_cmd();
        c.arg(source).arg(&dest);
        let o = run(c);
        // No registry was tried: no retries, no wait, nothing about the registry.
        assert!(start.elapsed() < Duration::from_millis(1500), "{expect}");
        assert_eq!(stderr(&o), expect);
        assert_eq!(o.status.code(), Some(1));
    }
}

#[test]
fn a_refused_connection_is_retried_briefly_with_a_note_and_the_url_tried() {
    let port = closed_port();
    let archive = real_tool("containers-image/docker/archive/fixtures/almostempty.tar");
    let start = Instant::now();
    let mut c = push_cmd();
    c.arg(&archive).arg(format!("127.0.0.1:{port}/app:1"));
    let o = run(c);
    let took = start.elapsed();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(6), "took {took:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    let (last, waits) = lines.split_last().unwrap();
    assert!(
        !waits.is_empty(),
        "no line saying what push waits for: {err}"
    );
    for w in waits {
        assert!(
            w.starts_with(
                "layerlift-push: waiting for the registry to accept connections (retrying in "
            ) && w.ends_with(&format!(
                "s): GET http://127.0.0.1:{port}/v2/: io: Connection refused (os error 111)"
            )),
            "{w}"
        );
    }
    // The last attempts used plain HTTP (a loopback registry): the error says http://.
    let attempts = waits.len() + 1;
    let prefix = format!(
        "layerlift-push: error: cannot reach registry 127.0.0.1:{port}: gave up after {attempts} \
         attempts over "
    );
    let suffix =
        format!("s: GET http://127.0.0.1:{port}/v2/: io: Connection refused (os error 111)");
    assert!(
        last.starts_with(&prefix) && last.ends_with(&suffix),
        "{last}"
    );
    let secs = &last[prefix.len()..last.len() - suffix.len()];
    assert!(matches!(secs, "0" | "1" | "2"), "{last}");
}

#[test]
fn completions_install_into_a_directory_and_the_shells_accept_them() {
    let tmp = tempfile::tempdir().unwrap();
    let layerlift = env!("CARGO_BIN_EXE_layerlift");
    let mut installed = Vec::new();
    for (shell, path) in [
        ("bash", "share/bash-completion/completions/layerlift"),
        ("zsh", "share/zsh/site-functions/_layerlift"),
        ("fish", "share/fish/vendor_completions.d/layerlift.fish"),
    ] {
        let o = Command::new(layerlift)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        assert!(o.stderr.is_empty());
        let dest = tmp.path().join(path);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&dest, &o.stdout).unwrap();
        installed.push((shell, dest));
    }
    let (_, bash) = &installed[0];
    let o = Command::new("bash").arg("-n").arg(bash).output().unwrap();
    assert!(o.status.success(), "bash -n: {}", stderr(&o));
    // Sourced, it registers a completion for `layerlift` that offers the subcommands.
    let o = Command::new("bash")
        .arg("-c")
        .arg(
            r#"source "$1" && complete -p layerlift && COMP_WORDS=(layerlift "") COMP_CWORD=1 \
               COMP_LINE="layerlift " COMP_POINT=10 && _layerlift layerlift "" layerlift \
               && printf '%s\n' "${COMPREPLY[@]}""#,
        )
        .arg("bash")
        .arg(bash)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("complete ") && first.ends_with(" -F _layerlift layerlift"),
        "{out}"
    );
    for sub in ["unpack", "convert", "push", "check", "completions"] {
        assert!(out.lines().any(|l| l == sub), "no `{sub}` offered: {out}");
    }
    let zsh = std::fs::read_to_string(&installed[1].1).unwrap();
    assert!(zsh.starts_with("#compdef layerlift"), "{zsh}");
    let fish = std::fs::read_to_string(&installed[2].1).unwrap();
    assert!(fish.contains("complete -c layerlift"), "{fish}");
    // zsh and fish are not test dependencies: their own syntax check runs where they are installed.
    let on_path = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
    };
    for (shell, file) in &installed[1..] {
        if on_path(shell) {
            let o = Command::new(shell).arg("-n").arg(file).output().unwrap();
            assert!(o.status.success(), "{shell} -n: {}", stderr(&o));
        }
    }
    // An unknown shell is a usage error.
    let o = Command::new(layerlift)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn version_names_the_commit_and_the_encoder_revision() {
    let root = crate::fixtures::root();
    let head = Command::new("git")
        .current_dir(&root)
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .unwrap();
    let commit = String::from_utf8_lossy(&head.stdout).trim().to_string();
    for bin in [
        env!("CARGO_BIN_EXE_layerlift"),
        env!("CARGO_BIN_EXE_layerlift-unpack"),
        env!("CARGO_BIN_EXE_layerlift-convert"),
        env!("CARGO_BIN_EXE_layerlift-push"),
    ] {
        let o = Command::new(bin).arg("--version").output().unwrap();
        assert!(o.status.success());
        let name = Path::new(bin).file_name().unwrap().to_string_lossy();
        let expect = format!(
            "{name} {} (commit {}, encoder revision {})\n",
            env!("CARGO_PKG_VERSION"),
            if head.status.success() {
                commit.as_str()
            } else {
                "unknown"
            },
            layerlift_layers::ENCODER_REVISION
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), expect);
    }
}
