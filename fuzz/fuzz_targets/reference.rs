//! Image references, tags and platforms as users and registries write them: parsing
//! never panics, errors are one line, and a parsed reference's normal form parses back
//! to the same reference.
#![no_main]

use husk::fetch::manifest::PlatformSpec;
use husk::fetch::reference::{is_valid_digest, validate_tag, Reference};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    match Reference::parse(s) {
        Ok(r) => {
            assert!(r.digest.as_deref().is_none_or(is_valid_digest), "{s:?} -> {r:?}");
            if let Some(t) = &r.tag {
                validate_tag(t).unwrap_or_else(|e| panic!("{s:?} -> {r:?}: its tag is invalid: {e}"));
            }
            let normal = r.to_string();
            let again = Reference::parse(&normal).unwrap_or_else(|e| panic!("{s:?} -> {normal:?} -> {e}"));
            assert_eq!(again.registry, r.registry, "{s:?} -> {normal:?}");
            assert_eq!(again.repository, r.repository, "{s:?} -> {normal:?}");
            assert_eq!(again.digest, r.digest, "{s:?} -> {normal:?}");
            if r.digest.is_none() {
                assert_eq!(again.tag.as_deref(), Some(r.tag_or_latest()), "{s:?} -> {normal:?}");
            }
            assert_eq!(again.to_string(), normal, "the normal form is a fixed point");
            assert_eq!(husk::layers::images::normalize(s).as_deref(), Some(normal.as_str()));
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "a multi-line error for {s:?}: {e}"),
    }
    if let Err(e) = validate_tag(s) {
        assert!(!e.to_string().contains('\n'), "{e}");
    }
    if let Ok(p) = PlatformSpec::parse(s) {
        assert_eq!(PlatformSpec::parse(&p.to_string()).ok(), Some(p), "{s:?}");
    }
});
