//! The reader's bounds on hostile archives (tar bombs): extended headers, entry and link counts,
//! name lengths. Each is refused with a typed error before it costs memory.

use layerlift_archive::ArchiveError;
use layerlift_archive::PathError;
use layerlift_archive::{MAX_ENTRIES, MAX_HEADER_BYTES, MAX_LINKS, scan_tar};

fn header(kind: tar::EntryType, path: &str, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_path(path).unwrap();
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// An extended entry of `size` bytes of `fill`, then `manifest.json` and the end blocks.
fn extended(kind: tar::EntryType, record: &[u8], size: usize) -> Vec<u8> {
    let mut t = header(kind, "././@LongLink", size as u64);
    t.extend_from_slice(record);
    t.resize(512 + size.div_ceil(512) * 512, b'a');
    t.extend(header(tar::EntryType::Regular, "manifest.json", 2));
    t.extend(b"[]");
    t.resize(t.len() + 510 + 1024, 0);
    t
}

fn scan(bytes: &[u8]) -> Result<layerlift_archive::Scan, ArchiveError> {
    scan_tar(&mut &bytes[..], None, None)
}

#[test]
fn a_long_name_bigger_than_the_header_budget_is_refused() {
    let bomb = extended(
        tar::EntryType::GNULongName,
        b"",
        MAX_HEADER_BYTES as usize + 1,
    );
    assert!(
        matches!(scan(&bomb), Err(ArchiveError::Limit(ref m)) if m.contains("extended records")),
        "{:?}",
        scan(&bomb).err()
    );
}

#[test]
fn a_pax_header_bigger_than_the_header_budget_is_refused() {
    let size = MAX_HEADER_BYTES as usize * 2;
    let record = format!("{size} comment=");
    let bomb = extended(tar::EntryType::XHeader, record.as_bytes(), size);
    assert!(matches!(scan(&bomb), Err(ArchiveError::Limit(_))));
}

#[test]
fn a_long_name_under_the_budget_but_over_path_max_is_refused() {
    let name = "a/".repeat(3000);
    let t = extended(tar::EntryType::GNULongName, name.as_bytes(), name.len());
    assert!(matches!(
        scan(&t),
        Err(ArchiveError::Path(PathError::TooLong(_)))
    ));
}

#[test]
fn a_pax_header_within_the_budget_is_read() {
    let record = "22 path=manifest.json\n";
    let mut t = header(tar::EntryType::XHeader, "PaxHeaders/x", record.len() as u64);
    t.extend(record.as_bytes());
    t.resize(1024, 0);
    t.extend(header(tar::EntryType::Regular, "other-name", 2));
    t.extend(b"[]");
    t.resize(t.len() + 510 + 1024, 0);
    let s = scan(&t).unwrap();
    assert_eq!(s.files.keys().collect::<Vec<_>>(), ["manifest.json"]);
}

fn many(kind: tar::EntryType, count: usize) -> Vec<u8> {
    let mut t = Vec::with_capacity((count + 2) * 512);
    for i in 0..count {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_path(format!("e/{i}")).unwrap();
        if kind == tar::EntryType::Symlink {
            h.set_link_name("x").unwrap();
        }
        h.set_cksum();
        t.extend_from_slice(h.as_bytes());
    }
    t.resize(t.len() + 1024, 0);
    t
}

#[test]
fn entry_count_is_bounded() {
    let ok = scan(&many(tar::EntryType::Fifo, MAX_ENTRIES)).unwrap();
    assert_eq!(ok.skipped.len(), MAX_ENTRIES);
    assert!(matches!(
        scan(&many(tar::EntryType::Fifo, MAX_ENTRIES + 1)),
        Err(ArchiveError::Limit(m)) if m.contains("entries")
    ));
}

#[test]
fn link_count_is_bounded() {
    assert_eq!(
        scan(&many(tar::EntryType::Symlink, MAX_LINKS))
            .unwrap()
            .links
            .len(),
        MAX_LINKS
    );
    assert!(matches!(
        scan(&many(tar::EntryType::Symlink, MAX_LINKS + 1)),
        Err(ArchiveError::Limit(m)) if m.contains("links")
    ));
}

#[test]
fn directories_do_not_count() {
    let s = scan(&many(tar::EntryType::Directory, MAX_ENTRIES + 10)).unwrap();
    assert!(s.files.is_empty() && s.links.is_empty() && s.skipped.is_empty());
}
