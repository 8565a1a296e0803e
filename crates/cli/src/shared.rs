//! What the steps' command lines share: `--version`'s text and the `--platform` parser (also
//! re-exported from `app`).

use std::sync::OnceLock;

/// What `--version` prints after the program name: the package version, the commit it was built
/// from, and the layer encoders' revision, which compressed-layer digests depend on.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        format!(
            "{} (commit {}, encoder revision {})",
            env!("CARGO_PKG_VERSION"),
            env!("LAYERLIFT_COMMIT"),
            layerlift_layers::ENCODER_REVISION
        )
    })
}

/// `--platform`'s value parser.
pub fn parse_platform(s: &str) -> Result<String, String> {
    if layerlift_manifest::is_platform(s) {
        Ok(s.to_string())
    } else {
        Err("expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64 or linux/arm64/v8".to_string())
    }
}
