//! Unit tests of the layout: creating and opening, blob writing and verification, index.json
//! updates, and the locks between writers and blob deletion.

use super::*;
use layerlift_manifest::{Descriptor, media_types};

#[test]
fn create_write_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("out");
    let layout = Layout::create(&root).unwrap();
    assert!(root.join("oci-layout").is_file());
    assert!(layout.index().unwrap().manifests.is_empty());

    let digest = layout.write_blob(b"{}").unwrap();
    assert_eq!(digest, Digest::of(b"{}"));
    assert_eq!(layout.read_blob(&digest).unwrap(), b"{}");
    layout
        .update_index(|index| {
            index
                .manifests
                .push(Descriptor::new(media_types::OCI_MANIFEST, digest, 2));
        })
        .unwrap();
    let reopened = Layout::open(&root).unwrap();
    assert_eq!(reopened.index().unwrap().manifests.len(), 1);
}

#[test]
fn an_unchanged_index_is_not_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let digest = layout.write_blob(b"{}").unwrap();
    let add = |index: &mut Index| {
        if index.manifests.is_empty() {
            index
                .manifests
                .push(Descriptor::new(media_types::OCI_MANIFEST, digest, 2));
        }
    };
    layout.update_index(add).unwrap();
    let path = dir.path().join("index.json");
    // An old time, so that a rewrite (now) would show.
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    layout.update_index(add).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), old);
    // A change is written.
    let other = layout.write_blob(b"[]").unwrap();
    layout
        .update_index(|index| {
            index
                .manifests
                .push(Descriptor::new(media_types::OCI_MANIFEST, other, 2));
        })
        .unwrap();
    assert_ne!(fs::metadata(&path).unwrap().modified().unwrap(), old);
    assert_eq!(layout.index().unwrap().manifests.len(), 2);
}

#[test]
fn index_never_points_at_missing_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let missing = Digest::of(b"not stored");
    let err = layout
        .update_index(|index| {
            index
                .manifests
                .push(Descriptor::new(media_types::OCI_MANIFEST, missing, 10));
        })
        .unwrap_err();
    assert!(matches!(err, LayoutError::MissingBlob { .. }), "{err}");
    assert!(layout.index().unwrap().manifests.is_empty());
}

#[test]
fn staged_blob_is_invisible_until_committed_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let mut w = layout.blob_writer().unwrap();
    w.write_all(b"layer bytes").unwrap();
    let staged = w.finish().unwrap();
    let digest = staged.digest();
    assert!(!layout.has_blob(&digest));
    assert!(staged.verify(&Digest::of(b"other")).is_err());
    drop(staged);
    assert!(!layout.has_blob(&digest));
    assert_eq!(
        fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(),
        0,
        "temp file removed"
    );

    let mut w = layout.blob_writer().unwrap();
    w.write_all(b"layer bytes").unwrap();
    assert!(w.commit(Some(&Digest::of(b"wrong"))).is_err());
    assert!(!layout.has_blob(&digest));
}

#[test]
fn corrupt_blob_is_detected_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let digest = layout.write_blob(b"abc").unwrap();
    fs::write(layout.blob_path(&digest), b"abd").unwrap();
    assert!(matches!(
        layout.read_blob(&digest),
        Err(LayoutError::DigestMismatch { .. })
    ));
}

#[test]
fn refuses_non_empty_foreign_directory() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("precious.txt"), b"x").unwrap();
    assert!(matches!(
        Layout::create(dir.path()),
        Err(LayoutError::NotALayout { .. })
    ));
}

#[test]
fn takes_over_what_an_interrupted_create_left() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("out");
    fs::create_dir_all(root.join("blobs/sha256")).unwrap();
    fs::write(
        root.join("index.json"),
        br#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    fs::write(root.join(".oci-layout.abc123"), b"{").unwrap();
    let layout = Layout::create(&root).unwrap();
    assert!(root.join("oci-layout").is_file());
    assert!(layout.index().unwrap().manifests.is_empty());

    // Anything more than that is someone else's directory.
    let other = dir.path().join("other");
    fs::create_dir_all(other.join("blobs/sha256")).unwrap();
    fs::write(other.join("blobs/sha256/feed"), b"data").unwrap();
    assert!(matches!(
        Layout::create(&other),
        Err(LayoutError::NotALayout { .. })
    ));
    let listed = dir.path().join("listed");
    fs::create_dir_all(&listed).unwrap();
    fs::write(
        listed.join("index.json"),
        br#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1}]}"#,
    )
    .unwrap();
    assert!(matches!(
        Layout::create(&listed),
        Err(LayoutError::NotALayout { .. })
    ));
}

#[test]
fn accepts_docker_spacing_in_oci_layout() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("oci-layout"),
        br#"{"imageLayoutVersion": "1.0.0"}"#,
    )
    .unwrap();
    fs::write(
        dir.path().join("index.json"),
        br#"{"schemaVersion":2,"manifests":null}"#,
    )
    .unwrap();
    let layout = Layout::open(dir.path()).unwrap();
    assert!(layout.index().unwrap().manifests.is_empty());
}

/// Two `Layout`s of one directory stand for two processes: flock locks belong to open files, so
/// they exclude each other within a process as between processes.
#[test]
fn deleting_blobs_waits_for_writers_that_rely_on_them() {
    let dir = tempfile::tempdir().unwrap();
    let gc = Layout::create(dir.path()).unwrap();
    let digest = gc.write_blob(b"{\"layers\":[]}").unwrap();
    // A writer finds the blob present (its commit keeps the existing copy) and will name it.
    let writer = Layout::open(dir.path()).unwrap();
    writer.write_blob(b"{\"layers\":[]}").unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            // Delete every blob index.json does not reach (it names none yet).
            gc.exclusively(|| {
                let index = gc.index().unwrap();
                if !index.manifests.iter().any(|d| d.digest == digest) {
                    fs::remove_file(gc.blob_path(&digest)).unwrap();
                }
            })
            .unwrap();
            done_tx.send(()).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            done_rx.try_recv().is_err(),
            "the deletion waits for the writer"
        );
        writer
            .update_index(|index| {
                index
                    .manifests
                    .push(Descriptor::new(media_types::OCI_MANIFEST, digest, 14));
            })
            .unwrap();
        drop(writer);
        done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
    });
    assert!(gc.has_blob(&digest), "the blob index.json names is kept");
}

/// One writer dropping its `Layout` does not remove `.layerlift-tmp/` from under another.
#[test]
fn temp_dir_stays_while_another_writer_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = Layout::create(dir.path()).unwrap();
    first.write_blob(b"a").unwrap();
    let second = Layout::open(dir.path()).unwrap();
    let staged = second.blob_writer().unwrap();
    let tmp = dir.path().join(TMP_DIR);
    drop(staged);
    drop(first);
    assert!(tmp.is_dir(), "another writer holds the layout");
    drop(second);
    assert!(!tmp.exists(), "the last writer removes it");
}

/// Deleting blobs removes the temp dir; the next blob written makes it again (the writer lock
/// is taken anew, and the dir with it), and a large blob (hashed on a thread) gets its digest.
#[test]
fn blobs_are_written_after_a_deletion_removed_the_temp_dir() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    layout.write_blob(b"a").unwrap();
    layout.exclusively(|| ()).unwrap();
    assert!(!dir.path().join(TMP_DIR).exists());
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = layout.write_blob(&big).unwrap();
    assert_eq!(digest, Digest::of(&big));
    assert_eq!(layout.read_blob(&digest).unwrap(), big);
}
