//! A token server's JSON answer: parsing never panics, and any `expires_in` gives an expiry the
//! client can hold (`layerlift_registry::fuzzing::check_token_response`, which `cargo test` also
//! runs on `fuzz/regressions/token_response/` and the seeds).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| layerlift_registry::fuzzing::check_token_response(data));
