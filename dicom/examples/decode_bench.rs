//! Decode timing for the benchmark (`bench/decode_bench.sh`): each file read from memory and
//! decoded to modality values `REPEAT` times in this process; prints one JSON line per file
//! (file, transfer syntax, bytes, pixels, mean milliseconds per decode).
//! `cargo run --release -p asg-dicom --example decode_bench -- REPEAT FILES...`
fn main() {
    let mut args = std::env::args().skip(1);
    let repeat: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let files: Vec<String> = args.collect();
    // Warm-up: every file once (page cache, allocator, CPU frequency) before any timing.
    for path in &files {
        if let Ok(bytes) = std::fs::read(path) {
            let _ = asg_dicom::read_bytes(&bytes, path, &asg_dicom::ReadOptions::default());
        }
    }
    for path in files {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                println!("{{\"file\": {path:?}, \"error\": {:?}}}", e.to_string());
                continue;
            }
        };
        let options = asg_dicom::ReadOptions::default();
        let first = asg_dicom::read_bytes(&bytes, &path, &options);
        let image = match first {
            Ok(i) => i,
            Err(e) => {
                println!("{{\"file\": {path:?}, \"error\": {:?}}}", e.to_string());
                continue;
            }
        };
        let start = std::time::Instant::now();
        for _ in 0..repeat {
            let _ = asg_dicom::read_bytes(&bytes, &path, &options);
        }
        let ms = start.elapsed().as_secs_f64() * 1000.0 / repeat as f64;
        println!(
            "{{\"file\": {path:?}, \"transfer_syntax\": {:?}, \"bytes\": {}, \"pixels\": {}, \"ms\": {ms:.3}}}",
            image.meta.transfer_syntax_uid,
            bytes.len(),
            image.pixels.len()
        );
    }
}
