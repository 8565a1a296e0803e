//! Encoders: round trips, standard-conforming gzip, and the determinism contract (golden digests
//! that must not change across thread counts, write chunking, runs and machines).

use layerlift_layers::{
    Compression, Encoding, GZIP_BLOCK, GzipEncoder, LayerEncoder, LayerError, copy_layer,
    encode_layer, sniff,
};
use layerlift_manifest::Digest;
use std::io::{Read, Write};

/// Deterministic data that compresses like a real layer would (text, binary, runs, noise).
fn sample(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len);
    let words: [&[u8]; 6] = [
        b"usr/lib/x86_64-linux-gnu/",
        b"libc.so.6\0",
        b"#!/bin/sh\nset -e\n",
        b"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        b"ustar\x0000",
        b"0000644\x000000000\x00",
    ];
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 4 {
            0 => out.extend_from_slice(&x.to_le_bytes()),
            _ => out.extend_from_slice(words[(x >> 8) as usize % words.len()]),
        }
    }
    out.truncate(len);
    out
}

fn encode(
    data: &[u8],
    compression: Compression,
    level: Option<i32>,
    threads: usize,
    chunk: usize,
) -> Vec<u8> {
    let enc = Encoding {
        compression,
        level,
        threads,
    };
    let mut e = LayerEncoder::new(Vec::new(), &enc).unwrap();
    for piece in data.chunks(chunk) {
        e.write_all(piece).unwrap();
    }
    e.finish().unwrap()
}

fn gunzip_flate2(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn gzip_round_trips_at_every_size() {
    for len in [
        0,
        1,
        100,
        GZIP_BLOCK - 1,
        GZIP_BLOCK,
        GZIP_BLOCK + 1,
        3 * GZIP_BLOCK + 17,
    ] {
        let data = sample(len, len as u64);
        for threads in [1, 2] {
            let gz = encode(&data, Compression::Gzip, None, threads, 10_000);
            assert_eq!(sniff(&gz), Compression::Gzip);
            assert_eq!(gunzip_flate2(&gz), data, "len {len} threads {threads}");
            // Our own strict decoder agrees, and it is one single member.
            let copied = copy_layer(&gz[..], std::io::sink()).unwrap();
            assert_eq!(copied.diff_id.digest, Digest::of(&data));
        }
    }
}

#[test]
fn gzip_is_identical_at_every_thread_count_and_chunking() {
    let data = sample(5 * GZIP_BLOCK + 1234, 42);
    let reference = encode(&data, Compression::Gzip, Some(6), 1, 1 << 20);
    for (threads, chunk) in [(1, 1), (2, 7), (3, 65_536), (4, 131_072), (8, 1 << 22)] {
        if chunk == 1 {
            // Byte-at-a-time over a short prefix only (it is slow).
            let short = &data[..GZIP_BLOCK + 10];
            assert_eq!(
                encode(short, Compression::Gzip, Some(6), threads, 1),
                encode(short, Compression::Gzip, Some(6), 2, 1000)
            );
            continue;
        }
        assert_eq!(
            encode(&data, Compression::Gzip, Some(6), threads, chunk),
            reference,
            "threads {threads} chunk {chunk}"
        );
    }
}

#[test]
fn zstd_is_identical_at_every_thread_count() {
    // Larger than the pinned job size (4 MiB), so that the multi-threaded encoder really splits the
    // input into jobs.
    let data = sample(10 << 20, 7);
    for level in [1, 3] {
        let reference = encode(&data, Compression::Zstd, Some(level), 1, 1 << 20);
        for (threads, chunk) in [(2, 4093), (3, 1 << 16), (4, 1 << 22)] {
            assert_eq!(
                Digest::of(&encode(
                    &data,
                    Compression::Zstd,
                    Some(level),
                    threads,
                    chunk
                )),
                Digest::of(&reference),
                "level {level} threads {threads} chunk {chunk}"
            );
        }
        assert_eq!(zstd::stream::decode_all(&reference[..]).unwrap(), data);
    }
}

/// The determinism contract: if one of these changes, every layer digest layerlift produces changes
/// and registries will not recognise previously pushed layers. Update only on purpose, together
/// with `ENCODER_REVISION` (and say so in the changelog): a libdeflate/libzstd update, a new block
/// size or header.
#[test]
fn golden_digests() {
    // zstd: 1 MiB; gzip: two whole members and a partial third (member boundaries are part of the
    // contract).
    let data = sample(1 << 20, 2024);
    let gzip_data = sample(2 * GZIP_BLOCK + 123_457, 2024);
    let cases = [
        (
            Compression::Gzip,
            6,
            "sha256:7c03faa2fe9e82b9db7a108142d3449f5c3e91e4eca68c0a0ce295e839d9ff6b",
        ),
        (
            Compression::Gzip,
            2,
            "sha256:412bdc50b4e9cffa489e26d8d21d1c7160ae0f80087be06e64b609db97fd207c",
        ),
        (
            Compression::Gzip,
            9,
            "sha256:43a7023e76a9cd5c95b2db812c78f9b5a64c5d149b3c82233efe6fd4c7dcc006",
        ),
        (
            Compression::Gzip,
            12,
            "sha256:0e688bf48b71f4554fe7f6af373b5c5ce4abbfee158aaca54f040f2142011d50",
        ),
        (
            Compression::Zstd,
            3,
            "sha256:4ba847ee87080c1afb248d597f26f33f0f76b524d301c1b92415d455b7f886be",
        ),
        (
            Compression::Zstd,
            10,
            "sha256:53c431a639a1a6b94d5d5ebd5928dd8504e784e1237c1b2596cb80962ec7165a",
        ),
    ];
    // The defaults (gzip 1, zstd 2, chosen on the bench image): what every layer encoded without
    // --level looks like.
    let defaults = [
        (
            Compression::Gzip,
            "sha256:5e0b5deb576f381593456ad8eadc08aa461c72cb46ab0fa534f5b9770a56af47",
        ),
        (
            Compression::Zstd,
            "sha256:7f113aff6d8710407b7c87d32959fc1867d053b93f7c5bef4d7ef3f368a5a9de",
        ),
    ];
    let input = |c: Compression| {
        if c == Compression::Gzip {
            &gzip_data
        } else {
            &data
        }
    };
    let mut failures = Vec::new();
    for (compression, want) in defaults {
        for threads in [1, 2] {
            let got = Digest::of(&encode(
                input(compression),
                compression,
                None,
                threads,
                50_000,
            ));
            if got.to_string() != want {
                failures.push(format!(
                    "{compression} default level threads {threads}: {got}, expected {want}"
                ));
            }
        }
    }
    for (compression, level, want) in cases {
        for threads in [1, 2] {
            let got = Digest::of(&encode(
                input(compression),
                compression,
                Some(level),
                threads,
                50_000,
            ));
            if got.to_string() != want {
                failures.push(format!(
                    "{compression} level {level} threads {threads}: {got}, expected {want}"
                ));
            }
        }
    }
    // Several zstd jobs (the job size is part of the contract).
    let big = sample(9 << 20, 77);
    for threads in [1, 2] {
        let got =
            Digest::of(&encode(&big, Compression::Zstd, Some(3), threads, 1 << 20)).to_string();
        if got != "sha256:563959b2cdcb598749d11e51f31c8851acc317c5fc5382770f55c3cbfd2caeb6" {
            failures.push(format!("zstd 9 MiB threads {threads}: {got}"));
        }
    }
    let empty = Digest::of(&encode(b"", Compression::Gzip, None, 2, 1)).to_string();
    if empty != "sha256:30e6fa98fb48c2b132824d1ac5e2243c0be9e9082ff32598d34d7687ca7f6c7f" {
        failures.push(format!("gzip of nothing: {empty}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The gzip layout: one member per [`GZIP_BLOCK`] of input, each with the fixed header and its own
/// CRC32 and length; an exact multiple of the block size has no empty member at the end.
#[test]
fn gzip_is_one_member_per_block() {
    for len in [0, 1, GZIP_BLOCK, 2 * GZIP_BLOCK, 2 * GZIP_BLOCK + 5] {
        let data = sample(len, 9);
        let gz = encode(&data, Compression::Gzip, None, 2, 1 << 16);
        let mut rest = &gz[..];
        let mut sizes = Vec::new();
        while !rest.is_empty() {
            assert_eq!(
                &rest[..10],
                &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255],
                "len {len}"
            );
            // The bufread decoder stops after one member and consumes exactly its bytes.
            let mut member = Vec::new();
            flate2::bufread::GzDecoder::new(&mut rest)
                .read_to_end(&mut member)
                .unwrap();
            let start = sizes.iter().sum::<usize>();
            assert_eq!(member, data[start..start + member.len()], "len {len}");
            sizes.push(member.len());
        }
        let want: Vec<usize> = if len == 0 {
            vec![0]
        } else {
            (0..len.div_ceil(GZIP_BLOCK))
                .map(|i| (len - i * GZIP_BLOCK).min(GZIP_BLOCK))
                .collect()
        };
        assert_eq!(sizes, want, "len {len}");
    }
}

#[test]
fn system_gzip_accepts_the_output() {
    let out = std::process::Command::new("gzip")
        .arg("--version")
        .output()
        .expect("this test needs gzip (scripts/install-test-deps.sh installs it)");
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let data = sample(3 * GZIP_BLOCK + 99, 5);
    let path = dir.path().join("layer.tar.gz");
    std::fs::write(&path, encode(&data, Compression::Gzip, None, 2, 1 << 16)).unwrap();
    let status = std::process::Command::new("gzip")
        .arg("-t")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "gzip -t rejected our output");
    let out = std::process::Command::new("gzip")
        .args(["-dc"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.stdout, data);
}

#[test]
fn encode_layer_converts_between_codecs_and_reports_the_diff_id() {
    let tar = sample(600_000, 9);
    let want = Digest::of(&tar);
    let gz = encode(&tar, Compression::Gzip, None, 2, 1 << 16);
    let zst = encode(&tar, Compression::Zstd, None, 2, 1 << 16);
    for (input, from) in [
        (tar.clone(), Compression::None),
        (gz.clone(), Compression::Gzip),
        (zst.clone(), Compression::Zstd),
    ] {
        for (to, expected) in [
            (Compression::None, &tar),
            (Compression::Gzip, &gz),
            (Compression::Zstd, &zst),
        ] {
            let enc = Encoding {
                compression: to,
                level: None,
                threads: 2,
            };
            let done = encode_layer(&input[..], Vec::new(), &enc).unwrap();
            let id = done.diff_id;
            assert_eq!(
                (id.compression, id.digest, id.size),
                (from, want, tar.len() as u64)
            );
            assert_eq!(
                (done.stored_digest, done.stored_size),
                (Digest::of(&input), input.len() as u64)
            );
            // Same bytes whatever the input was: the layer's compressed digest is a function of its tar.
            assert_eq!(&done.out, expected, "{from} -> {to}");
        }
    }
}

#[test]
fn copy_layer_keeps_bytes_and_checks() {
    let tar = sample(300_000, 10);
    let gz = encode(&tar, Compression::Gzip, None, 1, 1 << 16);
    let copied = copy_layer(&gz[..], Vec::new()).unwrap();
    let (id, stored, size) = (copied.diff_id, copied.stored_digest, copied.stored_size);
    assert_eq!(copied.out, gz);
    assert_eq!((stored, size), (Digest::of(&gz), gz.len() as u64));
    assert_eq!(id.digest, Digest::of(&tar));
    id.check(&stored, &Digest::of(&tar)).unwrap();
    let err = id.check(&stored, &Digest::of(b"other")).unwrap_err();
    assert!(matches!(err, LayerError::DiffIdMismatch { .. }));
    assert!(err.to_string().contains("diff_id"), "{err}");

    let err = copy_layer(&gz[..gz.len() - 3], std::io::sink()).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn levels_out_of_range_are_refused() {
    for (c, level) in [
        (Compression::Gzip, 0),
        (Compression::Gzip, 13),
        (Compression::Zstd, 20),
    ] {
        let enc = Encoding {
            compression: c,
            level: Some(level),
            threads: 1,
        };
        assert!(LayerEncoder::new(Vec::new(), &enc).is_err(), "{c} {level}");
    }
    let enc = Encoding {
        compression: Compression::Bzip2,
        level: None,
        threads: 1,
    };
    assert!(LayerEncoder::new(Vec::new(), &enc).is_err());
}

#[test]
fn gzip_encoder_direct_use() {
    let mut e = GzipEncoder::new(Vec::new(), 6, 2).unwrap();
    e.write_all(b"hello").unwrap();
    let gz = e.finish().unwrap();
    assert_eq!(gunzip_flate2(&gz), b"hello");
    // Fixed header: no name, mtime 0, OS unknown.
    assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
}

#[test]
fn levels_are_checked_against_the_codec() {
    use layerlift_layers::LevelError;
    assert_eq!(Encoding::check_level(Compression::Gzip, 1), Ok(()));
    assert_eq!(Encoding::check_level(Compression::Gzip, 12), Ok(()));
    assert_eq!(Encoding::check_level(Compression::Zstd, 19), Ok(()));
    assert_eq!(
        Encoding::check_level(Compression::Gzip, 13),
        Err(LevelError::OutOfRange {
            level: 13,
            compression: Compression::Gzip,
            min: 1,
            max: 12
        })
    );
    assert!(Encoding::check_level(Compression::Zstd, 0).is_err());
    assert_eq!(
        Encoding::check_level(Compression::None, 1),
        Err(LevelError::WithoutCompression)
    );
}
