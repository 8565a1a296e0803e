//! Golden tests of `--json`: the events of pushes of one small fixed archive to a real registry,
//! and what `layerlift-unpack --json` and `--list --json` print for it, as insta snapshots
//! (`tests/e2e/snapshots/`). The snapshots hold the output as printed, byte for byte (field order
//! included; a push's lines sorted), after the run-dependent strings (the registry's port,
//! temporary paths, the archive's directory) are replaced by placeholders. The archive's bytes are fixed, so its digests
//! (and those of the layers the push compresses) stay in the snapshots.

use crate::unpack::unpack;
use crate::util::{assert_ok, push_cmd, run};
use layerlift_testkit::Registry;
use layerlift_testkit::image::{LayerNames, TestImage, layer_tar, letters};
use std::path::{Path, PathBuf};

/// A two-layer `docker save` archive whose bytes never change.
fn fixed_archive(dir: &Path) -> PathBuf {
    let image = TestImage::new(
        "golden:1",
        vec![
            layer_tar(&[("etc/greeting", b"hello\n")]),
            layer_tar(&[("data/letters", &letters(27, 4096))]),
        ],
    );
    let path = dir.join("golden.tar");
    std::fs::write(&path, image.docker_archive(LayerNames::Directories)).unwrap();
    path
}

/// `stdout` with `replace`'s run-dependent strings replaced by placeholders; each line (or the
/// whole, for one pretty-printed document) must be JSON.
fn redacted(stdout: &str, replace: &[(&str, &str)]) -> String {
    let mut text = stdout.to_string();
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    for value in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>() {
        value.unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    }
    text
}

/// One push's `--json` output to `dest`, with its layer cache in `cache`: its lines sorted, since
/// uploads overlap reading and so `layer` and `blob` events interleave differently from run to run.
fn push_json(archive: &Path, reg: &Registry, dest: &str, cache: &Path, extra: &[&str]) -> String {
    let mut c = push_cmd();
    c.arg(archive)
        .arg(format!("{}/{dest}", reg.addr()))
        .args(["--json", "--cache-dir"])
        .arg(cache)
        .args(extra);
    let out = assert_ok(&run(c));
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    let dir = archive.parent().and_then(Path::to_str).unwrap_or_default();
    redacted(
        &lines.join("\n"),
        &[(&reg.addr(), "[registry]"), (dir, "[tmp]")],
    )
}

/// A first push uploads every blob; the same push again finds them all; a push to another
/// repository of the registry mounts them from the first.
#[test]
fn push_json_events() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = fixed_archive(tmp.path());
    let cache = tmp.path().join("cache");
    let reg = Registry::anonymous();
    let push = |dest, extra: &[&str]| push_json(&archive, &reg, dest, &cache, extra);
    insta::assert_snapshot!("push_first", push("golden/app:1", &[]));
    insta::assert_snapshot!("push_again", push("golden/app:1", &[]));
    insta::assert_snapshot!(
        "push_mounted",
        push("golden/other:1", &["--mount-from", "golden/app"])
    );
}

/// `layerlift-unpack --json` (what it wrote) and `--list --json` (what the archive holds).
#[test]
fn unpack_json_output() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = fixed_archive(tmp.path());
    let dir = tmp.path().join("oci");
    let placeholders = [(tmp.path().to_str().unwrap(), "[tmp]")];

    let list = assert_ok(&unpack(&["--list", "--json", archive.to_str().unwrap()]));
    insta::assert_snapshot!("unpack_list", redacted(&list, &placeholders));

    let out = assert_ok(&unpack(&[
        "--json",
        archive.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]));
    insta::assert_snapshot!("unpack", redacted(&out, &placeholders));
}
