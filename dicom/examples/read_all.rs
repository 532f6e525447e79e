//! Reads every file given and prints one line each: size and photometric, or the error.
//! Used to try asg-dicom on corpora nobody here wrote (e.g. the pydicom wheel's test files).
//!
//! cargo run -p asg-dicom --example read_all -- FILE...

fn main() {
    for path in std::env::args().skip(1) {
        match asg_dicom::read_file(std::path::Path::new(&path), &Default::default()) {
            Ok(img) => println!(
                "ok    {path}: {}x{} {} {}",
                img.width,
                img.height,
                img.meta.photometric_interpretation,
                img.meta.transfer_syntax_uid
            ),
            Err(e) => println!("error {e}"),
        }
    }
}
