//! Inputs the fuzz targets in `fuzz/` found to break a promise, kept as tests (see
//! fuzz/README.md).
use super::extract::{extract_layer, ExtractOptions, Ownership};

/// `fuzz/fuzz_targets/extract.rs`: a 512-byte tar header whose checksum field holds
/// `in/sh\n` made `extract_layer` fail with the tar crate's message quoting the field as
/// it is, newline included, so `husk pull` printed a two-line error (and would have
/// printed any escape sequence a layer put there to the terminal).
#[test]
fn tar_header_bytes_in_an_error_stay_on_one_line() {
    let mut header = [0u8; 512];
    let mut put = |at: usize, bytes: &[u8]| header[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, b"etc/");
    put(139, b"etc/passwin/sh\n");
    put(219, b"0000377\x0000");
    put(269, b"etc/passwd");
    put(443, b"\x01");
    put(448, b"\x09");
    let dir = std::env::temp_dir().join(format!("husk-fuzz-regression-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let opts = ExtractOptions { ownership: Ownership::Ignore, strip_setid: false };
    let result = extract_layer(&header[..], &dir, &opts);
    std::fs::remove_dir_all(&dir).unwrap();
    let msg = format!("{:#}", result.expect_err("a header with a bad checksum field is refused"));
    assert!(msg.contains("cksum"), "{msg}");
    assert!(!msg.contains('\n'), "a multi-line error: {msg:?}");
    assert!(msg.contains("in/sh\\n"), "the newline is shown escaped: {msg:?}");
}
