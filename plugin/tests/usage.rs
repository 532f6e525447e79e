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

fn asg_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_asg"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn report_reads_standard_input_and_prints_json() {
    let out = asg_with_stdin(
        &["report", "-", "--json"],
        "FINDINGS: No effusion or pneumothorax. Right lower lobe consolidation.",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["tags"]["pleural effusion"], "negative");
    assert_eq!(json["tags"]["consolidation"], "positive");
    let s = &json["sentences"][1];
    assert_eq!(s["section"], "findings");
    assert_eq!(s["triplets"][0]["region"], "right lower lung zone");
    assert!(s["start"].as_u64().unwrap() < s["end"].as_u64().unwrap());
}

#[test]
fn report_takes_any_bytes() {
    let out = asg_with_stdin(&["report", "-"], "\u{0}\u{1}😀 Épanchement. \u{202e}");
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let latin1 = dir.path().join("latin1.txt");
    std::fs::write(&latin1, b"No effusion. R\xe9sum\xe9.").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_asg"))
        .arg("report")
        .arg(&latin1)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("pleural effusion"));
}

#[test]
fn report_eval_prints_the_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../report/eval/sentences.tsv");
    let out = Command::new(env!("CARGO_BIN_EXE_asg"))
        .args(["report", "--eval", path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("| existence | TP | FP | FN | precision | recall | F1 |"),
        "{text}"
    );
    assert!(text.contains("| negative |"));
}
