//! How the report parser's time grows with the text: prints a table of milliseconds per parse
//! for texts of 1 to 64 KB in three shapes (a report of ordinary sentences repeated; one
//! sentence of findings, places and cues with no full stop; one coordinated list of findings).
//! The fuzzing campaign of 2026-12-06 found the second shape growing with the cube of its
//! length (16 KB: 10 s). `cargo run --release -p asg-report --example parse_scaling`

use std::time::Instant;

fn text_of(pattern: &str, bytes: usize) -> String {
    pattern.repeat(bytes / pattern.len() + 1)[..bytes].to_string()
}

fn main() {
    let shapes = [
        (
            "sentences",
            "The heart size is normal. There is a small right pleural effusion. No pneumothorax. ",
        ),
        (
            "no full stop",
            "effusion lesion tube hilum no bilateral right ",
        ),
        ("coordinated list", "effusion and opacity and nodule and "),
    ];
    println!("| text | shape | ms per parse | sentences | triplets |\n|---|---|---|---|---|");
    for kb in [1, 4, 16, 64] {
        for (name, pattern) in shapes {
            let text = text_of(pattern, kb * 1024);
            let start = Instant::now();
            let mut runs = 0;
            let mut parsed = asg_report::parse(&text);
            runs += 1;
            while start.elapsed().as_secs_f64() < 0.2 && runs < 100 {
                parsed = asg_report::parse(&text);
                runs += 1;
            }
            let ms = start.elapsed().as_secs_f64() * 1e3 / runs as f64;
            let triplets: usize = parsed.sentences.iter().map(|s| s.triplets.len()).sum();
            println!(
                "| {kb} KB | {name} | {ms:.2} | {} | {triplets} |",
                parsed.sentences.len()
            );
        }
    }
}
