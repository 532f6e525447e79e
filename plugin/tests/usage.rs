//! The `asg` binary's own argument handling (and this file makes `cargo test` build the binary
//! that the workspace's end-to-end tests drive).

use std::process::Command;

#[test]
fn analyze_without_inputs_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_asg"))
        .arg("analyze")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<INPUTS>"));
}

#[test]
fn a_missing_bundle_folder_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_asg"))
        .args(["analyze", "x.dcm", "--model"])
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope/manifest.json"));
}
