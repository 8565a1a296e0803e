//! Crash safety of unpack: killed with SIGKILL at many points of its input, it leaves a layout that
//! `layerlift check` accepts (the one it was adding to, unchanged, or an empty new one), never an
//! index.json that points at a missing or partial blob.

use crate::fixtures::shared;
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
    let archive = std::fs::read(shared(
        "generated-local/podman-4.3.1/podman-docker-archive-whiteouts.tar",
    ))
    .unwrap();
    let base = shared("wagoodman-dive/.data/test-oci-gzip-image.tar");
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
