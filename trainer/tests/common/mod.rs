//! Helpers the end-to-end tests share: the real films of ../shared/realcxr (or a skip), a
//! shipped config, and a tokenizer for tests whose text does not matter.
#![allow(dead_code)] // each test file uses some of them

use asg_trainer::config::Config;
use std::path::PathBuf;

/// `../shared/realcxr` when it is on this machine; otherwise None, with a note saying the test
/// was skipped and why.
pub fn real_films() -> Option<PathBuf> {
    let real = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/realcxr");
    if real.join("index.jsonl").is_file() {
        Some(real)
    } else {
        eprintln!(
            "skipped: {} not found (the real films are not on this machine)",
            real.display()
        );
        None
    }
}

/// A config of `trainer/configs/`.
pub fn config(name: &str) -> Config {
    Config::from_file(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("configs")
            .join(name),
    )
    .unwrap()
}

/// A 50-word tokenizer for tests whose text takes no part.
pub fn tiny_tokenizer() -> asg_report::TextTokenizer {
    asg_report::TextTokenizer::Word(asg_report::Tokenizer::train(["the lungs are clear"], 50, 1))
}
