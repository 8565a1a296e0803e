//! What a registry answers during a blob upload: `Location` (resolved against the URL that sent
//! it) and `Range` (where a chunked upload continues, and where a broken one resumes). The input
//! format and the properties checked are in `layerlift_registry::fuzzing::check_upload_headers`,
//! which `cargo test` also runs on `fuzz/regressions/upload_headers/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| layerlift_registry::fuzzing::check_upload_headers(data));
