//! Compression detection from magic bytes.

use layerlift_manifest::convert::LayerCompression;
use std::fmt;

/// How a layer's stored bytes are compressed, as detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Compression {
    /// Not compressed (or nothing we recognise: then it is taken as a plain tar).
    None,
    /// gzip (one or more members).
    Gzip,
    /// Zstandard (one or more frames).
    Zstd,
    /// bzip2 (one or more streams).
    Bzip2,
    /// xz (one or more concatenated streams).
    Xz,
}

impl Compression {
    /// A short lower-case name: `none`, `gzip`, `zstd`, `bzip2`, `xz`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
        }
    }
}

impl From<LayerCompression> for Compression {
    fn from(c: LayerCompression) -> Self {
        match c {
            LayerCompression::None => Compression::None,
            LayerCompression::Gzip => Compression::Gzip,
            LayerCompression::Zstd => Compression::Zstd,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How many leading bytes [`sniff`] needs to tell every format apart.
pub const SNIFF_LEN: usize = 6;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];

/// Detect the compression from the first bytes of a blob (give it at least [`SNIFF_LEN`] bytes
/// when the blob has that many): `1f 8b` gzip, `28 b5 2f fd` zstd, `BZh` + a block-size digit
/// bzip2, `fd 37 7a 58 5a 00` xz, anything else (including nothing) uncompressed.
pub fn sniff(prefix: &[u8]) -> Compression {
    if prefix.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if prefix.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else if prefix.starts_with(XZ_MAGIC) {
        Compression::Xz
    } else if prefix.len() >= 4 && prefix.starts_with(b"BZh") && (b'1'..=b'9').contains(&prefix[3])
    {
        Compression::Bzip2
    } else {
        Compression::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0, 0, 0]), Compression::Gzip);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]), Compression::Zstd);
        assert_eq!(sniff(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(sniff(&[0xfd, b'7', b'z', b'X', b'Z', 0]), Compression::Xz);
        assert_eq!(sniff(b""), Compression::None);
        assert_eq!(sniff(b"etc/\0\0\0"), Compression::None);
        // A tar whose first file is called "BZh..." is not bzip2.
        assert_eq!(sniff(b"BZhello"), Compression::None);
        assert_eq!(sniff(&[0xfd, b'7', b'z', b'X', b'Z', 1]), Compression::None);
    }
}
