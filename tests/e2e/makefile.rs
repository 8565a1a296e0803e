//! `examples/Makefile` against the test registry: unpack → convert → push as make targets whose
//! digest files change only with content. A second `make` runs no step; touching the archive only
//! re-hashes it (no layout, digest file or index.json is rewritten); another image re-runs every step.

use crate::fixtures::{real_tool, root};
use layerlift_testkit::Registry;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

fn make(archive: &Path, work: &Path, dest: &str) -> Output {
    let o = Command::new("make")
        .arg("-f")
        .arg(root().join("examples/Makefile"))
        .arg(format!("ARCHIVE={}", archive.display()))
        .arg(format!("WORK={}", work.display()))
        .arg(format!("DEST={dest}"))
        .arg(format!("LAYERLIFT={}", env!("CARGO_BIN_EXE_layerlift")))
        .env("DOCKER_CONFIG", work.join("no-docker-config"))
        .env_remove("REGISTRY_AUTH_FILE")
        .current_dir(work.parent().unwrap())
        .output()
        .expect("run make");
    assert!(
        o.status.success(),
        "make failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Every output the steps write, with its modification time.
fn outputs(work: &Path) -> Vec<(PathBuf, SystemTime)> {
    [
        "archive.sha256",
        "unpacked.digest",
        "unpacked/index.json",
        "converted.digest",
        "converted/index.json",
        "pushed.digest",
    ]
    .iter()
    .map(|f| {
        let p = work.join(f);
        let t = std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .modified()
            .unwrap();
        (p, t)
    })
    .collect()
}

/// The commands make ran (its echoed recipe lines), without the settings check.
fn commands(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with("make"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_second_make_does_nothing_and_a_touched_archive_is_only_rehashed() {
    let reg = Registry::anonymous();
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let archive = tmp.path().join("app.tar");
    std::fs::copy(
        real_tool("containers-image/docker/archive/fixtures/almostempty.tar"),
        &archive,
    )
    .unwrap();
    let dest = format!("{}/make/app:1", reg.addr());

    // First run: every step.
    let first = make(&archive, &work, &dest);
    let ran = commands(&first).join("\n");
    for step in [" unpack ", " convert ", " push "] {
        assert!(ran.contains(step), "no{step}in the first run:\n{ran}");
    }
    let converted = std::fs::read_to_string(work.join("converted.digest")).unwrap();
    let manifest = converted.split_whitespace().next().unwrap();
    assert_eq!(
        std::fs::read_to_string(work.join("pushed.digest")).unwrap(),
        format!("{dest}@{manifest}\n")
    );
    let before = outputs(&work);

    // Second run, nothing changed: no step at all.
    let second = make(&archive, &work, &dest);
    assert_eq!(
        String::from_utf8_lossy(&second.stdout),
        "make: Nothing to be done for 'all'.\n"
    );
    assert_eq!(outputs(&work), before);

    // The archive touched (same content): only the hash runs; no output is rewritten.
    let later = SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&archive)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let touched = make(&archive, &work, &dest);
    let ran = commands(&touched);
    assert!(ran.iter().any(|l| l.starts_with("sha256sum")), "{ran:?}");
    assert!(
        !ran.iter()
            .any(|l| l.contains(env!("CARGO_BIN_EXE_layerlift"))),
        "a step ran for an unchanged archive: {ran:?}"
    );
    assert_eq!(outputs(&work), before);
    let again = make(&archive, &work, &dest);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "make: Nothing to be done for 'all'.\n"
    );

    // Another image: every step runs again and the registry gets it.
    std::fs::copy(
        real_tool("google-go-containerregistry/pkg/v1/mutate/testdata/whiteout_image.tar"),
        &archive,
    )
    .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&archive)
        .unwrap()
        .set_modified(later + std::time::Duration::from_secs(5))
        .unwrap();
    let changed = make(&archive, &work, &dest);
    let ran = commands(&changed).join("\n");
    for step in [" unpack ", " convert ", " push "] {
        assert!(
            ran.contains(step),
            "no{step}after the image changed:\n{ran}"
        );
    }
    let pushed = std::fs::read_to_string(work.join("pushed.digest")).unwrap();
    assert_ne!(pushed, format!("{dest}@{manifest}\n"));
    assert!(pushed.starts_with(&format!("{dest}@sha256:")), "{pushed}");
}
