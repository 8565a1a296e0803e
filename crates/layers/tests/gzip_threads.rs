//! The gzip output must not depend on which worker thread compresses which block, nor on how the
//! input is cut into writes. (Found with the earlier zlib-rs encoder: a compressor reused across
//! blocks leaked state and made the bytes of a 2-thread encode vary with scheduling. libdeflate
//! workers reuse theirs, which is only safe because libdeflate keeps no state between calls; this
//! test is what says so.)

use layerlift_layers::GzipEncoder;
use layerlift_manifest::Digest;
use std::io::Write;

/// ~4.5 MiB (five gzip blocks) of text-like data with long-range repeats (deterministic, no files needed).
fn sample() -> Vec<u8> {
    let words: Vec<String> = (0..400u32)
        .map(|i| format!("w{}x{} ", i * 7919 % 1000, i % 13))
        .collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut out = Vec::new();
    while out.len() < 4_500_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let w = &words[(state % words.len() as u64) as usize];
        out.extend_from_slice(w.as_bytes());
        if state.is_multiple_of(97) && out.len() > 250_000 {
            let start = out.len().saturating_sub(200_000) + (state % 50_000) as usize;
            let piece = out[start..start + 3000].to_vec();
            out.extend_from_slice(&piece);
        }
    }
    out
}

fn encode(data: &[u8], threads: usize, chunk: usize) -> Digest {
    let mut e = GzipEncoder::new(Vec::new(), 4, threads).unwrap();
    for c in data.chunks(chunk) {
        e.write_all(c).unwrap();
    }
    Digest::of(&e.finish().unwrap())
}

#[test]
fn same_bytes_whatever_the_threads_and_write_sizes() {
    let data = sample();
    let want = encode(&data, 1, 1 << 20);
    for threads in [1, 2, 3, 4] {
        for chunk in [512, 7777, 1 << 20] {
            for _ in 0..3 {
                assert_eq!(
                    encode(&data, threads, chunk),
                    want,
                    "threads {threads}, writes of {chunk}"
                );
            }
        }
    }
}
