//! Host-specific defaults, in one place: what a registry needs that no general rule covers
//! because the registry does not say it on the wire. Everything else a registry does differently
//! is handled by general rules (see `docs/registries.md`).

use crate::reference::host_without_port;

/// Amazon ECR's smallest part (every chunk but the last). ECR does not announce it
/// (`OCI-Chunk-Min-Length`) and cuts a smaller part off without an error body, so a chunked upload
/// to ECR uses at least this.
pub(crate) const ECR_MIN_PART: u64 = 5 << 20;

/// The smallest chunk `registry` (`host[:port]`) takes, when it is known but not announced.
pub(crate) fn min_chunk(registry: &str) -> u64 {
    let host = host_without_port(registry).to_ascii_lowercase();
    let ecr = host == "public.ecr.aws"
        || (host.contains(".dkr.ecr.")
            && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")));
    if ecr { ECR_MIN_PART } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_parts() {
        assert_eq!(
            min_chunk("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            ECR_MIN_PART
        );
        assert_eq!(
            min_chunk("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn:443"),
            ECR_MIN_PART
        );
        assert_eq!(min_chunk("public.ecr.aws"), ECR_MIN_PART);
        assert_eq!(min_chunk("ghcr.io"), 0);
        assert_eq!(min_chunk("dkr.ecr.example.com"), 0);
        assert_eq!(min_chunk("127.0.0.1:5000"), 0);
    }
}
