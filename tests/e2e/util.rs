//! Test harness shared by the end-to-end tests.

use std::path::{Path, PathBuf};

/// The fixtures shipped beside the repository: `$LAYERLIFT_SHARED_FIXTURES` or `../shared/fixtures`.
pub fn shared_fixtures() -> PathBuf {
    match std::env::var_os("LAYERLIFT_SHARED_FIXTURES") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"),
    }
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

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
