//! Generation throughput: studies per second written by `write_set` (render + DICOM + report +
//! scene graph + truth) at several sizes and thread counts.
//! `cargo run --release -p asg-phantom --example bench [N]`
use asg_phantom::set::{write_set, SetOptions};
use std::time::Instant;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("| size (px) | threads | studies | seconds | studies/s | MB/s written |");
    println!("|---|---|---|---|---|---|");
    for size in [256u32, 512, 1024] {
        for threads in [1, cores] {
            let Ok(dir) = tempfile_dir() else {
                eprintln!("error: cannot make a scratch folder");
                std::process::exit(1);
            };
            let options = SetOptions {
                n,
                seed: 1,
                image: asg_phantom::Options {
                    size,
                    ..Default::default()
                },
                split: [8.0, 1.0, 1.0],
                errors: false,
                threads,
            };
            let start = Instant::now();
            if let Err(e) = write_set(&dir, &options, &|| {}) {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
            let secs = start.elapsed().as_secs_f64();
            let bytes = du(&dir);
            let _ = std::fs::remove_dir_all(&dir);
            println!(
                "| {size} | {threads} | {n} | {secs:.2} | {:.1} | {:.1} |",
                n as f64 / secs,
                bytes as f64 / 1e6 / secs
            );
        }
    }
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("asg-phantom-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn du(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            total += if p.is_dir() {
                du(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            };
        }
    }
    total
}
