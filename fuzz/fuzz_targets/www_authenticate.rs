//! `WWW-Authenticate` values and token scopes as a registry or token server sends them: parsing
//! never panics, a Bearer challenge always carries a realm, and a parsed scope prints back to
//! itself.

#![no_main]

use layerlift_registry::Scope;
use layerlift_registry::fuzzing::{Challenge, parse_challenge};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &str| {
    match parse_challenge(value) {
        Some(Challenge::Bearer { scope, .. }) => {
            if let Some(s) = scope.as_deref().and_then(Scope::parse) {
                let again = Scope::parse(&s.to_string());
                assert_eq!(again.as_ref(), Some(&s), "scope `{s}` does not read back");
            }
        }
        Some(Challenge::Basic) | None => {}
    }
    if let Some(s) = Scope::parse(value) {
        assert_eq!(Scope::parse(&s.to_string()).as_ref(), Some(&s));
    }
});
