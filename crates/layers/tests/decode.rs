//! Decoding and diff_id checks against data compressed by the reference encoders.

use layerlift_layers::{Compression, DecodeError, DiffIdWriter, LayerError, decoder, sniff};
use layerlift_manifest::Digest;
use proptest::prelude::*;
use std::io::{Read, Write};

/// ~300 KiB of deterministic, partly compressible data (bigger than every internal buffer).
fn sample(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(3) {
            out.extend_from_slice(b"usr/lib/x86_64-linux-gnu/libc.so.6\0");
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(1));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

type Encoder = fn(&[u8]) -> Vec<u8>;

const CODECS: [(Compression, Encoder); 4] = [
    (Compression::Gzip, gzip),
    (Compression::Zstd, zstd),
    (Compression::Bzip2, bzip2),
    (Compression::Xz, xz),
];

/// Feed `stored` to a DiffIdWriter in chunks of `chunk` bytes.
fn diff_id(stored: &[u8], chunk: usize) -> Result<layerlift_layers::DiffId, LayerError> {
    let mut w = DiffIdWriter::new();
    for piece in stored.chunks(chunk.max(1)) {
        w.write_all(piece)
            .map_err(|e| LayerError::io("writing", e))?;
    }
    w.finish()
}

fn read_all(stored: Vec<u8>) -> (Compression, std::io::Result<Vec<u8>>) {
    let (c, mut r) = decoder(std::io::Cursor::new(stored)).unwrap();
    let mut out = Vec::new();
    let res = r.read_to_end(&mut out).map(|_| out);
    (c, res)
}

#[test]
fn every_codec_round_trips() {
    let data = sample(300_000, 1);
    for (compression, encode) in CODECS {
        let stored = encode(&data);
        assert_eq!(sniff(&stored), compression);
        for chunk in [1usize, 5, 6, 7, 4093, 1 << 20] {
            if chunk == 1 && stored.len() > 50_000 {
                // Byte-at-a-time over the whole stream is slow for bzip2/xz; do a prefix-sized test.
                continue;
            }
            let id = diff_id(&stored, chunk).unwrap();
            assert_eq!(id.compression, compression, "{compression} chunk {chunk}");
            assert_eq!(id.digest, Digest::of(&data), "{compression} chunk {chunk}");
            assert_eq!(id.size, data.len() as u64);
        }
        let (c, out) = read_all(stored);
        assert_eq!(c, compression);
        assert_eq!(out.unwrap(), data, "{compression} via decoder()");
    }
}

#[test]
fn byte_at_a_time_small_streams() {
    let data = sample(5_000, 2);
    for (compression, encode) in CODECS {
        let id = diff_id(&encode(&data), 1).unwrap();
        assert_eq!(
            (id.compression, id.digest),
            (compression, Digest::of(&data))
        );
    }
}

#[test]
fn uncompressed_and_empty() {
    let data = sample(200_000, 3);
    let id = diff_id(&data, 777).unwrap();
    assert_eq!(id.compression, Compression::None);
    assert_eq!(id.digest, Digest::of(&data));

    let id = DiffIdWriter::new().finish().unwrap();
    assert_eq!(id.compression, Compression::None);
    assert_eq!(id.digest, Digest::of(b""));
    assert_eq!(id.size, 0);

    // Shorter than the sniff window.
    let id = diff_id(b"abc", 1).unwrap();
    assert_eq!(
        (id.compression, id.digest),
        (Compression::None, Digest::of(b"abc"))
    );
    let (c, out) = read_all(b"abc".to_vec());
    assert_eq!((c, out.unwrap()), (Compression::None, b"abc".to_vec()));
    let (c, out) = read_all(Vec::new());
    assert_eq!((c, out.unwrap()), (Compression::None, Vec::new()));
}

#[test]
fn multi_member_gzip() {
    let a = sample(100_000, 4);
    let b = sample(70_000, 5);
    let mut stored = gzip(&a);
    // A member with every optional header field.
    let mut e = flate2::GzBuilder::new()
        .filename("layer.tar")
        .comment("second member")
        .extra(vec![1, 2, 3, 4])
        .mtime(1)
        .write(Vec::new(), flate2::Compression::fast());
    e.write_all(&b).unwrap();
    stored.extend(e.finish().unwrap());
    // An empty member, as some writers emit.
    stored.extend(gzip(b""));
    let whole = [a, b].concat();
    for chunk in [3, 1000, 1 << 20] {
        let id = diff_id(&stored, chunk).unwrap();
        assert_eq!(id.digest, Digest::of(&whole));
    }
    assert_eq!(read_all(stored).1.unwrap(), whole);
}

#[test]
fn gzip_header_crc_is_checked() {
    // Hand-made member with FHCRC.
    let body = gzip(b"hello");
    let mut header = vec![0x1f, 0x8b, 8, 0x02, 0, 0, 0, 0, 0, 255];
    let mut crc = flate2::Crc::new();
    crc.update(&header);
    let hcrc = (crc.sum() as u16).to_le_bytes();
    header.extend_from_slice(&hcrc);
    let mut good = header.clone();
    good.extend_from_slice(&body[10..]);
    assert_eq!(diff_id(&good, 2).unwrap().digest, Digest::of(b"hello"));
    let mut bad = good.clone();
    bad[10] ^= 1;
    let err = diff_id(&bad, 2).unwrap_err();
    assert!(err.to_string().contains("header checksum"), "{err}");
}

#[test]
fn multi_frame_zstd_multi_stream_bzip2_concatenated_xz() {
    let a = sample(60_000, 6);
    let b = sample(40_000, 7);
    let whole = [a.clone(), b.clone()].concat();
    for (compression, encode) in CODECS {
        let stored = [encode(&a), encode(&b)].concat();
        let id = diff_id(&stored, 999).unwrap();
        assert_eq!(
            (id.compression, id.digest),
            (compression, Digest::of(&whole))
        );
        assert_eq!(read_all(stored).1.unwrap(), whole, "{compression}");
    }
}

#[test]
fn truncated_streams_are_errors() {
    let data = sample(100_000, 8);
    for (compression, encode) in CODECS {
        let stored = encode(&data);
        for cut in [
            SNIFF,
            12,
            stored.len() / 2,
            stored.len() - 9,
            stored.len() - 1,
        ] {
            let short = &stored[..cut];
            let err = diff_id(short, 4096).expect_err(&format!("{compression} cut at {cut}"));
            match err {
                LayerError::Decode(DecodeError::Truncated { compression: c, .. })
                | LayerError::Decode(DecodeError::Corrupt { compression: c, .. }) => {
                    assert_eq!(c, compression)
                }
                other => panic!("{compression} cut at {cut}: unexpected {other}"),
            }
            let (c, res) = read_all(short.to_vec());
            assert_eq!(c, compression);
            let err = res.expect_err(&format!("decoder(): {compression} cut at {cut}"));
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
            assert!(DecodeError::from_io(&err).is_some());
        }
    }
}

const SNIFF: usize = layerlift_layers::SNIFF_LEN;

#[test]
fn truncated_message_is_clear() {
    let stored = gzip(&sample(10_000, 9));
    let err = diff_id(&stored[..stored.len() - 4], 100).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "gzip stream is truncated: it ends after {} bytes, inside the trailer of a gzip member",
            stored.len() - 4
        )
    );
}

#[test]
fn corrupt_and_trailing_data_are_errors() {
    let data = sample(100_000, 10);
    // Flip a byte in the middle of the deflate data or the CRC.
    let mut stored = gzip(&data);
    let n = stored.len();
    stored[n - 6] ^= 0xff;
    let err = diff_id(&stored, 1000).unwrap_err();
    assert!(err.to_string().contains("CRC32 mismatch"), "{err}");

    // Trailing garbage after a complete gzip member.
    let mut stored = gzip(&data);
    stored.extend_from_slice(b"\0\0\0\0");
    let err = diff_id(&stored, 1000).unwrap_err();
    assert!(
        matches!(err, LayerError::Decode(DecodeError::TrailingData { .. })),
        "{err}"
    );
    for (compression, encode) in CODECS {
        let mut stored = encode(&data);
        stored.extend_from_slice(b"garbage!");
        assert!(diff_id(&stored, 1000).is_err(), "{compression} + garbage");
        assert!(
            read_all(stored).1.is_err(),
            "{compression} + garbage via decoder()"
        );

        let mut stored = encode(&data);
        let mid = stored.len() / 2;
        for b in &mut stored[mid..mid + 16] {
            *b ^= 0x55;
        }
        // zstd frames without a content checksum cannot always tell; the digest then differs.
        match diff_id(&stored, 1000) {
            Err(_) => {}
            Ok(id) => assert_ne!(id.digest, Digest::of(&data), "{compression} corrupted"),
        }
    }
}

#[test]
fn a_write_error_is_invalid_data_and_sticks() {
    let mut w = DiffIdWriter::new();
    let mut stored = gzip(b"hello world");
    stored[3] = 0xff; // reserved flags
    let err = w.write_all(&stored).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("reserved flags"), "{err}");
    assert!(w.write_all(b"more").is_err());
    assert!(w.finish().is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn any_chunking_gives_the_same_digest(
        len in 0usize..40_000, seed in any::<u64>(), chunk in 1usize..5000, members in 1usize..4
    ) {
        let data = sample(len, seed);
        let per = len / members + 1;
        let stored: Vec<u8> = data.chunks(per).flat_map(gzip).collect();
        let stored = if stored.is_empty() { gzip(b"") } else { stored };
        let id = diff_id(&stored, chunk).unwrap();
        prop_assert_eq!(id.digest, Digest::of(&data));
        prop_assert_eq!(id.compression, Compression::Gzip);
    }
}

/// CRC-32 (IEEE), for patching an xz block header.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An xz stream whose block header asks for a 4 GiB dictionary is refused with a clear error
/// instead of being decoded with whatever memory it asks for.
#[test]
fn xz_dictionary_over_the_memory_limit_is_refused() {
    let mut stored = xz(&sample(4096, 9));
    // Stream header (12 bytes), then the block header: size byte, flags, [sizes], filter flags.
    let start = 12;
    let header_len = (usize::from(stored[start]) + 1) * 4;
    let flags = stored[start + 1];
    assert_eq!(flags & 0x03, 0, "one filter");
    let mut at = start + 2;
    for present in [flags & 0x40 != 0, flags & 0x80 != 0] {
        if present {
            while stored[at] & 0x80 != 0 {
                at += 1;
            }
            at += 1;
        }
    }
    assert_eq!(
        &stored[at..at + 2],
        &[0x21, 0x01],
        "LZMA2, one property byte"
    );
    stored[at + 2] = 40; // dictionary size 4 GiB - 1
    let crc_at = start + header_len - 4;
    let crc = crc32(&stored[start..crc_at]);
    stored[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());

    let (c, res) = read_all(stored.clone());
    assert_eq!(c, Compression::Xz);
    let err = res.unwrap_err();
    let err = DecodeError::from_io(&err).expect("a decode error");
    assert!(err.to_string().contains("memory"), "{err}");
    let err = diff_id(&stored, 4096).unwrap_err();
    assert!(err.to_string().contains("128 MiB"), "{err}");

    // The same stream with a dictionary within the limit decodes (the patching is sound).
    stored[at + 2] = 20; // 4 MiB
    let crc = crc32(&stored[start..crc_at]);
    stored[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(read_all(stored).1.unwrap(), sample(4096, 9));
}

/// A zstd frame whose window is larger than the limit is refused (zstd's own default limit,
/// set explicitly).
#[test]
fn zstd_window_over_the_limit_is_refused() {
    assert_eq!(layerlift_layers::ZSTD_WINDOW_LOG_MAX, 27);
    let data = sample(1 << 16, 4);
    let mut enc = zstd::stream::raw::Encoder::new(3).unwrap();
    use zstd::stream::raw::CParameter;
    enc.set_parameter(CParameter::WindowLog(28)).unwrap();
    let mut e = zstd::stream::write::Encoder::with_encoder(Vec::new(), enc);
    e.write_all(&data).unwrap();
    let stored = e.finish().unwrap();
    let err = read_all(stored).1.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("window") || err.to_string().contains("memory"),
        "{err}"
    );
}
