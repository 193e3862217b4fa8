//! What a registry sends: manifests and indexes (with the content type it claims),
//! image configs, and the headers husk reads (`WWW-Authenticate`, `Retry-After`,
//! `Content-Range`). Nothing panics, whatever the bytes.
//!
//! Input: one selector byte (content type), then the document.
#![no_main]

use husk::fetch::auth::parse_challenge;
use husk::fetch::manifest::{self, check_config_media_type, choose_platform, Parsed, PlatformSpec};
use husk::fetch::registry::parse_content_range;
use husk::fetch::retry::{parse_http_date, parse_retry_after};
use husk::layers::images::parse_config;
use husk::layers::ingest::Compression;
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, UNIX_EPOCH};

const CONTENT_TYPES: [&str; 6] = [
    manifest::OCI_INDEX,
    manifest::DOCKER_LIST,
    manifest::OCI_MANIFEST,
    manifest::DOCKER_MANIFEST,
    "",
    "application/json",
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let content_type = CONTENT_TYPES[sel as usize % CONTENT_TYPES.len()];
    match manifest::parse(body, content_type, "fuzz") {
        Ok(Parsed::Index(index)) => {
            for want in [
                PlatformSpec::host(),
                PlatformSpec::parse("linux/arm64/v8").unwrap(),
                PlatformSpec::parse("windows/amd64").unwrap(),
            ] {
                if let Ok(d) = choose_platform(&index, &want, "fuzz") {
                    assert!(index.manifests().iter().any(|m| std::ptr::eq(m, d)));
                }
            }
        }
        Ok(Parsed::Manifest(m)) => {
            let _ = check_config_media_type(&m, "fuzz");
            for layer in m.layers() {
                let _ = Compression::from_media_type(layer.media_type().as_ref());
                let _ = husk::fetch::reference::is_valid_digest(layer.digest().as_ref());
            }
        }
        Err(e) => assert!(!format!("{e:#}").contains('\n'), "a multi-line error: {e:#}"),
    }
    if let Ok(config) = parse_config(body) {
        let _ = husk::layers::store::chain_ids(config.rootfs().diff_ids());
    }
    if let Ok(text) = std::str::from_utf8(body) {
        if let Some(ch) = parse_challenge(text) {
            let _ = (ch.param("realm"), ch.param("scope"));
        }
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let _ = parse_retry_after(text, now);
        let _ = parse_http_date(text);
        if let Some((start, end)) = parse_content_range(text) {
            assert!(start <= end);
        }
    }
});
