//! Parser throughput: reports per second on a typical report, and MB/s on 1 MB of text.
//!
//! cargo run --release -p asg-report --example bench

use std::time::Instant;

const REPORT: &str = "FINDINGS: PA and lateral views of the chest. The heart size is normal. \
Mediastinal contours are unremarkable. There is a small left pleural effusion with adjacent \
atelectasis. No pneumothorax. Right lower lobe opacity may represent pneumonia versus aspiration.\n\n\
IMPRESSION:\n1. Small left effusion.\n2. Possible RLL pneumonia; clinical correlation recommended.";

fn main() {
    // Warm-up (loads the vocabulary tables).
    let _ = asg_report::parse(REPORT);
    let n = 2000;
    let t = Instant::now();
    let mut triplets = 0;
    for _ in 0..n {
        triplets += asg_report::parse(REPORT)
            .sentences
            .iter()
            .map(|s| s.triplets.len())
            .sum::<usize>();
    }
    let per_report = t.elapsed().as_secs_f64() / n as f64;
    let mut big = String::new();
    while big.len() < 1 << 20 {
        big.push_str(REPORT);
        big.push('\n');
    }
    let t = Instant::now();
    let mut positives = 0;
    for _ in 0..n {
        let r = asg_report::parse(REPORT);
        for scheme in [
            asg_report::Scheme::Chexpert,
            asg_report::Scheme::ChestXray14,
        ] {
            positives += r
                .labels(scheme)
                .values
                .iter()
                .filter(|v| v.1 == asg_report::Mention::Positive)
                .count();
        }
    }
    let per_labelled = t.elapsed().as_secs_f64() / n as f64;
    let t = Instant::now();
    let parsed = asg_report::parse(&big);
    let big_s = t.elapsed().as_secs_f64();
    println!("| work | result |\n|---|---|");
    println!(
        "| typical report ({} bytes, {} triplets) | {:.0} reports/s ({:.1} µs each) |",
        REPORT.len(),
        triplets / n,
        1.0 / per_report,
        per_report * 1e6
    );
    println!(
        "| typical report, parsed + CheXpert and ChestX-ray14 labels ({} positive) | {:.0} reports/s ({:.1} µs each) |",
        positives / n,
        1.0 / per_labelled,
        per_labelled * 1e6
    );
    println!(
        "| 1 MiB of report text ({} sentences) | {:.2} s ({:.1} MB/s) |",
        parsed.sentences.len(),
        big_s,
        big.len() as f64 / 1e6 / big_s
    );
}
