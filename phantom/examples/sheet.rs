//! Writes a contact sheet of generated studies: `cargo run --release -p asg-phantom --example
//! sheet -- OUT.png [N] [SEED] [SIZE] [FIRST]`.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).cloned().unwrap_or_else(|| "sheet.png".into());
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(12);
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let size: u32 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(512);
    let first: u64 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(0);
    let options = asg_phantom::Options {
        size,
        ..Default::default()
    };
    let studies: Vec<_> = (first..first + n)
        .map(|i| asg_phantom::generate(seed, i, &options))
        .collect();
    let (columns, tile) = if n == 1 { (1, 800) } else { (4, 300) };
    let sheet = asg_phantom::sheet::contact_sheet(&studies, columns, tile);
    if let Err(e) = sheet.save(&out) {
        eprintln!("error: {out}: {e}");
        std::process::exit(1);
    }
    for s in &studies {
        println!("{}\n---", s.report.text);
    }
}
