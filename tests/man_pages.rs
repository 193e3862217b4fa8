//! The man pages in man/ must be what the clap definitions generate now.
//! Regenerate with: cargo run -- generate-man man
use std::path::Path;
use std::process::Command;

#[test]
fn man_pages_are_up_to_date() {
    let fresh = std::env::temp_dir().join(format!("husk-man-{}", std::process::id()));
    let status =
        Command::new(env!("CARGO_BIN_EXE_husk")).args(["generate-man", fresh.to_str().unwrap()]).status().unwrap();
    assert!(status.success());
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let list = |d: &Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    let names = list(&fresh);
    assert!(names.contains(&"husk.1".to_string()) && names.contains(&"husk-pull.1".to_string()), "{:?}", names);
    assert_eq!(names, list(&committed), "man/ is stale: run `cargo run -- generate-man man`");
    for n in &names {
        let a = std::fs::read(fresh.join(n)).unwrap();
        let b = std::fs::read(committed.join(n)).unwrap();
        assert!(a == b, "man/{} is stale: run `cargo run -- generate-man man`", n);
    }
    std::fs::remove_dir_all(&fresh).unwrap();
}
