//! `MtimeClamp` against tars written and read by the `tar` crate: times are clamped, everything else
//! (names, long names, links, xattrs and other PAX records, whiteouts, data) survives unchanged.

use layerlift_layers::{Compression, Encoding, MtimeClamp, copy_layer, encode_layer_clamped};
use layerlift_manifest::Digest;
use std::io::{Read, Write};

const NEW: u64 = 2_000_000_000;
const EPOCH: u64 = 1_000_000_000;

fn header(kind: tar::EntryType, mtime: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mtime(mtime);
    h.set_mode(0o644);
    h.set_size(size);
    h
}

/// A PAX record "<len> key=value\n".
fn record(key: &str, value: &[u8]) -> Vec<u8> {
    let base = 1 + key.len() + 1 + value.len() + 1;
    let mut total = base + 1;
    while total != base + total.to_string().len() {
        total = base + total.to_string().len();
    }
    let mut r = format!("{total} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Directory, NEW, 0);
    b.append_data(&mut h, "usr/", &[][..]).unwrap();
    let data = vec![7u8; 3000];
    let mut h = header(tar::EntryType::Regular, NEW, data.len() as u64);
    b.append_data(&mut h, "usr/file", &data[..]).unwrap();
    // An old file stays as it is.
    let mut h = header(tar::EntryType::Regular, 5, 3);
    b.append_data(&mut h, "usr/old", &b"old"[..]).unwrap();
    // PAX: sub-second mtime, an xattr, and a path.
    let mut pax = record("mtime", format!("{NEW}.5").as_bytes());
    pax.extend(record(
        "SCHILY.xattr.security.capability",
        &[1, 0, 0, 2, 0, 0x20, 0, 0],
    ));
    pax.extend(record("path", b"usr/with-pax"));
    let mut h = header(tar::EntryType::XHeader, NEW, pax.len() as u64);
    h.set_path("PaxHeaders/with-pax").unwrap();
    h.set_cksum();
    b.append(&h, &pax[..]).unwrap();
    let mut h = header(tar::EntryType::Regular, NEW, 2);
    b.append_data(&mut h, "usr/with-pax", &b"hi"[..]).unwrap();
    // GNU long name, hard link, symlink, whiteout.
    let long = format!("usr/{}", "d".repeat(150));
    let mut h = header(tar::EntryType::Regular, NEW, 1);
    b.append_data(&mut h, &long, &b"x"[..]).unwrap();
    let mut h = header(tar::EntryType::Link, NEW, 0);
    b.append_link(&mut h, "usr/hard", "usr/file").unwrap();
    let mut h = header(tar::EntryType::Symlink, NEW, 0);
    b.append_link(&mut h, "usr/sym", "file").unwrap();
    let mut h = header(tar::EntryType::Regular, NEW, 0);
    b.append_data(&mut h, "usr/.wh.gone", &[][..]).unwrap();
    b.into_inner().unwrap()
}

/// (path, link, mtime, xattrs, data) of every entry.
type Listed = (String, Option<String>, u64, Vec<(String, Vec<u8>)>, Vec<u8>);

fn list(tar_bytes: &[u8]) -> Vec<Listed> {
    let mut a = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let link = e.link_name().unwrap().map(|l| l.display().to_string());
        let mut xattrs = Vec::new();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for r in pax {
                let r = r.unwrap();
                if r.key().unwrap().starts_with("SCHILY.xattr.") {
                    xattrs.push((r.key().unwrap().to_string(), r.value_bytes().to_vec()));
                }
            }
        }
        let mtime = e.header().mtime().unwrap();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((path, link, mtime, xattrs, data));
    }
    out
}

fn clamp(bytes: &[u8], epoch: u64, chunk: usize) -> Vec<u8> {
    let mut c = MtimeClamp::new(Vec::new(), epoch);
    for piece in bytes.chunks(chunk) {
        c.write_all(piece).unwrap();
    }
    c.finish().unwrap()
}

#[test]
fn clamps_times_and_keeps_everything_else() {
    let original = sample_tar();
    let before = list(&original);
    for chunk in [1, 100, 511, 512, 513, 1 << 20] {
        let clamped = clamp(&original, EPOCH, chunk);
        let after = list(&clamped);
        assert_eq!(after.len(), before.len());
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(
                (&a.0, &a.1, &a.3, &a.4),
                (&b.0, &b.1, &b.3, &b.4),
                "chunk {chunk}"
            );
            assert_eq!(a.2, b.2.min(EPOCH), "{} chunk {chunk}", a.0);
        }
        // The PAX mtime record was rewritten too (the tar crate reads the header field above).
        let text = String::from_utf8_lossy(&clamped);
        assert!(
            text.contains(&format!("mtime={EPOCH}\n")) && !text.contains(&format!("mtime={NEW}"))
        );
        // Idempotent.
        assert!(clamp(&clamped, EPOCH, 4096) == clamped, "not idempotent");
    }
    // Nothing newer than the epoch: the same bytes.
    assert!(
        clamp(&original, NEW + 1, 700) == original,
        "changed a tar with nothing to clamp"
    );
}

#[test]
fn system_tar_reads_the_result() {
    let clamped = clamp(&sample_tar(), EPOCH, 999);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tar");
    std::fs::write(&path, &clamped).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-tvf")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("usr/with-pax") && listing.contains("usr/hard link to usr/file"),
        "{listing}"
    );
    assert!(listing.contains("2001-09-09"), "{listing}"); // 1e9 = 2001-09-09T01:46:40Z
}

#[test]
fn truncated_tar_is_an_error() {
    let t = sample_tar();
    let mut c = MtimeClamp::new(Vec::new(), EPOCH);
    c.write_all(&t[..1500]).unwrap();
    assert!(c.finish().is_err());
}

#[test]
fn encode_clamped_reports_both_diff_ids() {
    let original = sample_tar();
    let enc = Encoding {
        compression: Compression::Gzip,
        level: None,
        threads: 2,
    };
    let done = encode_layer_clamped(&original[..], Vec::new(), &enc, EPOCH).unwrap();
    assert_eq!(done.layer.diff_id.digest, Digest::of(&original));
    let clamped = clamp(&original, EPOCH, 1 << 20);
    assert_eq!(done.new_diff_id, Digest::of(&clamped));
    assert_eq!(done.new_size, clamped.len() as u64);
    assert!(done.clamped >= 7, "{}", done.clamped);
    let back = copy_layer(&done.layer.out[..], std::io::sink()).unwrap();
    assert_eq!(back.diff_id.digest, done.new_diff_id);
}

/// A PAX header is held in memory to rewrite its times, so one that claims more than `MAX_PAX`
/// bytes is refused at its header, before any of it is read.
#[test]
fn a_pax_header_over_the_limit_is_refused_before_it_is_read() {
    let mut h = header(tar::EntryType::XHeader, NEW, layerlift_layers::MAX_PAX + 1);
    h.set_path("PaxHeaders/huge").unwrap();
    h.set_cksum();
    let mut clamp = MtimeClamp::new(Vec::new(), EPOCH);
    let err = clamp.write_all(h.as_bytes()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("PAX header of"), "{err}");
    // At the limit it is accepted (and waits for its data).
    let mut h = header(tar::EntryType::XHeader, NEW, layerlift_layers::MAX_PAX);
    h.set_path("PaxHeaders/large").unwrap();
    h.set_cksum();
    let mut clamp = MtimeClamp::new(Vec::new(), EPOCH);
    clamp.write_all(h.as_bytes()).unwrap();
}
