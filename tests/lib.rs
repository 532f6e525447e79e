//! Helpers for the end-to-end tests: a phantom study and a thin bundle in a scratch folder, and
//! the path of the `asg` binary that `cargo test --workspace` builds.

use std::path::{Path, PathBuf};

/// A scratch folder with `bundle/` (thin model) and `dicom/` (phantoms).
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// Makes a thin bundle (input `size`) and `n` phantoms of `image_size` pixels.
    pub fn new(size: usize, n: u32, image_size: u32) -> Self {
        let dir = tempfile::tempdir().expect("scratch folder");
        asg_trainer::export::bundle::init_thin_bundle(&dir.path().join("bundle"), 3, size, 4)
            .expect("thin bundle");
        let dicom = dir.path().join("dicom");
        std::fs::create_dir_all(&dicom).expect("dicom folder");
        for i in 0..n {
            asg_phantom::write_phantom(&dicom, image_size, 9, i).expect("phantom");
        }
        Self { dir }
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    pub fn dicom(&self, i: u32) -> PathBuf {
        self.dir
            .path()
            .join("dicom")
            .join(format!("phantom_{i:05}.dcm"))
    }

    pub fn dicom_dir(&self) -> PathBuf {
        self.dir.path().join("dicom")
    }
}

/// The `asg` binary next to this test executable's folder (target/<profile>/asg).
pub fn asg_binary() -> PathBuf {
    binary("asg")
}

/// One of the workspace's binaries (`asg`, `asg-train`), beside the test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir: &Path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` (it builds every binary)",
        bin.display()
    );
    bin
}
