//! Image names as archives write them (`busybox:latest`, `localhost/x:y`, `docker.io/library/a:b`)
//! and their fully qualified form, Docker's way ([`layerlift_manifest::reference`]).

use crate::model::ImageInfo;
use layerlift_manifest::ImageSelector;

/// `busybox` → `docker.io/library/busybox:latest`; `quay.io/a/b:1` stays. `None` when `name` is
/// not a valid image reference.
pub fn full_name(name: &str) -> Option<String> {
    layerlift_manifest::reference::full_name(name)
}

/// Does `sel` choose this image, by position, by the digest of its descriptor, or by one of its
/// names?
pub(crate) fn selects(sel: &ImageSelector, img: &ImageInfo) -> bool {
    sel.matches(
        img.position,
        &img.descriptor.digest,
        img.names.iter().map(String::as_str),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Does `selector` choose this image? A selector that does not parse chooses nothing.
    fn matches(img: &ImageInfo, selector: &str) -> bool {
        ImageSelector::parse(selector).is_ok_and(|sel| selects(&sel, img))
    }

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
        assert_eq!(
            full_name("index.docker.io/foo/bar").unwrap(),
            "docker.io/foo/bar:latest"
        );
        assert_eq!(full_name("[::1]:5000/x:1").unwrap(), "[::1]:5000/x:1");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            full_name(&format!("app@{d}")).unwrap(),
            format!("docker.io/library/app@{d}")
        );
    }

    fn image(position: usize, names: &[&str]) -> ImageInfo {
        let bytes = format!("manifest {position}");
        ImageInfo {
            position,
            names: names.iter().map(|n| n.to_string()).collect(),
            descriptor: serde_json::from_value(serde_json::json!({
                "mediaType": layerlift_manifest::media_types::OCI_MANIFEST,
                "digest": layerlift_manifest::Digest::of(bytes.as_bytes()),
                "size": bytes.len(),
            }))
            .unwrap(),
            parent: None,
            manifests: Vec::new(),
            defects: Vec::new(),
            blobs: Vec::new(),
            annotate_names: true,
        }
    }

    #[test]
    fn selectors_choose_by_name_position_or_digest() {
        let img = image(1, &["busybox:latest", "localhost/tools:2"]);
        for sel in [
            "busybox",
            "busybox:latest",
            "docker.io/library/busybox",
            "localhost/tools:2",
            "@1",
        ] {
            assert!(matches(&img, sel), "{sel}");
        }
        assert!(matches(&img, &img.descriptor.digest.to_string()));
        for sel in ["busybox:1", "tools:2", "@0", "@x", "", "quay.io/busybox"] {
            assert!(!matches(&img, sel), "{sel:?}");
        }
        // Names an archive writes that are not valid references still match as written.
        let odd = image(0, &["Weird Name"]);
        assert!(matches(&odd, "Weird Name"));
        assert!(!matches(&odd, "weird name"));
    }

    #[test]
    fn implausible_names_have_no_full_name() {
        for bad in [
            "",
            "two words",
            "Upper",
            "a:b:c",
            "app@sha256:short",
            "x/-y",
        ] {
            assert_eq!(full_name(bad), None, "{bad:?}");
        }
    }
}
