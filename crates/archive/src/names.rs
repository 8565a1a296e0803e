//! Image names as archives write them (`busybox:latest`, `localhost/x:y`, `docker.io/library/a:b`)
//! and their fully qualified form, Docker's way.

use crate::model::ImageInfo;

/// `busybox` → `docker.io/library/busybox:latest`; `quay.io/a/b:1` stays. `None` when `name` is
/// not a plausible image reference.
pub fn full_name(name: &str) -> Option<String> {
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let (repo_part, suffix) = match name.split_once('@') {
        Some((r, d)) => (r, format!("@{d}")),
        None => {
            let last_slash = name.rfind('/').map_or(0, |i| i + 1);
            match name[last_slash..].rfind(':') {
                Some(i) => (&name[..last_slash + i], name[last_slash + i..].to_string()),
                None => (name, ":latest".to_string()),
            }
        }
    };
    let first = repo_part.split('/').next()?;
    let has_host = repo_part.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    let repo = if has_host {
        repo_part.to_string()
    } else if repo_part.contains('/') {
        format!("docker.io/{repo_part}")
    } else {
        format!("docker.io/library/{repo_part}")
    };
    Some(format!("{repo}{suffix}"))
}

/// Does `selector` name this image (as written, fully qualified, or by tag)?
pub fn matches(img: &ImageInfo, selector: &str) -> bool {
    let full = full_name(selector);
    img.names
        .iter()
        .any(|n| n == selector || (full.is_some() && full_name(n) == full))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualifies_names() {
        assert_eq!(
            full_name("busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            full_name("busybox:1").unwrap(),
            "docker.io/library/busybox:1"
        );
        assert_eq!(
            full_name("bazel/v1/tarball:test_image_1").unwrap(),
            "docker.io/bazel/v1/tarball:test_image_1"
        );
        assert_eq!(full_name("localhost/foo:tag").unwrap(), "localhost/foo:tag");
        assert_eq!(full_name("myreg:5000/x").unwrap(), "myreg:5000/x:latest");
        assert_eq!(
            full_name("docker.io/library/hello-world:latest").unwrap(),
            "docker.io/library/hello-world:latest"
        );
    }
}
