//! `WWW-Authenticate` values and token scopes as a registry or token server sends them: parsing
//! never panics, a parsed scope prints back to itself
//! (`layerlift_registry::fuzzing::check_www_authenticate`, which `cargo test` also runs on
//! `fuzz/regressions/www_authenticate/` and the seeds).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| layerlift_registry::fuzzing::check_www_authenticate(data));
