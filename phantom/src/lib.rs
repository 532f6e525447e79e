//! Synthetic frontal chest radiographs with full ground truth.
//!
//! Each study is drawn from a seed and an index alone (same seed, same bytes, whatever the thread
//! count): a patient ([`anatomy`]), findings placed in that anatomy ([`findings`]), an X-ray
//! projection of both ([`render`]), the 29 Chest ImaGenome region boxes taken from the geometry
//! ([`regions`]), a report in the style of real ones with its triplets ([`report`]), and the files:
//! DICOM through asg-dicom, a Chest ImaGenome-format scene graph, the report text ([`write`]).

pub mod anatomy;
pub mod findings;
pub mod masks;
pub mod raster;
pub mod regions;
pub mod render;
pub mod report;
pub mod scene_graph;
pub mod set;
pub mod sheet;
pub mod write;

pub use anatomy::{Side, View};
pub use findings::Findings;
pub use regions::RegionBox;
pub use write::{write_phantom, write_study, PhantomError, SplitName, WrittenStudy};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The largest image side the generator writes.
pub const MAX_SIZE: u32 = 3000;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Pixels along the longer side of the image (8..=3000).
    pub size: u32,
    /// Share of normal studies.
    pub normal_share: f64,
    /// Vary the file format (transfer syntax, bit depth, MONOCHROME1/2, detector size and aspect);
    /// off: explicit VR little endian, 12 bits, MONOCHROME2, square 430 mm field.
    pub vary_format: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            size: 512,
            normal_share: 0.3,
            vary_format: true,
        }
    }
}

/// How the image is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Format {
    pub transfer_syntax: asg_dicom::TransferSyntax,
    pub bits_stored: u16,
    pub monochrome1: bool,
}

/// One generated study: the image, its truth and its report.
#[derive(Debug, Clone)]
pub struct Study {
    pub index: u64,
    /// A hex id in the manner of MIMIC-CXR's dicom ids.
    pub image_id: String,
    pub study_id: u64,
    pub subject_id: u64,
    pub anatomy: anatomy::Anatomy,
    pub findings: Findings,
    pub rendered: render::Rendered,
    pub regions: Vec<RegionBox>,
    pub format: Format,
    pub report: report::Report,
    /// Seeds the report's wording (a report with an injected error reuses it).
    pub report_seed: u64,
}

/// The per-image seed: the set's seed and the image's index, mixed (SplitMix64).
pub fn image_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Generates study `index` of the set seeded by `seed`.
pub fn generate(seed: u64, index: u64, options: &Options) -> Study {
    let mut rng = ChaCha8Rng::seed_from_u64(image_seed(seed, index));
    let size = options.size.clamp(8, MAX_SIZE) as usize;
    let (width_mm, height_mm, format) = if options.vary_format {
        let (w, h) = match rng.random_range(0..4) {
            0 => (350.0, 430.0),
            1 => (430.0, 350.0),
            _ => (430.0, 430.0),
        };
        let transfer_syntax = match rng.random_range(0..4) {
            0 => asg_dicom::TransferSyntax::ImplicitVrLittleEndian,
            1 => asg_dicom::TransferSyntax::DeflatedExplicitVrLittleEndian,
            _ => asg_dicom::TransferSyntax::ExplicitVrLittleEndian,
        };
        let bits_stored = [8, 10, 12, 12, 14, 16][rng.random_range(0..6)];
        (
            w,
            h,
            Format {
                transfer_syntax,
                bits_stored,
                monochrome1: rng.random_bool(0.25),
            },
        )
    } else {
        (
            430.0,
            430.0,
            Format {
                transfer_syntax: asg_dicom::TransferSyntax::ExplicitVrLittleEndian,
                bits_stored: 12,
                monochrome1: false,
            },
        )
    };
    let (width, height) = if width_mm >= height_mm {
        (
            size,
            ((size as f64) * height_mm / width_mm).round().max(1.0) as usize,
        )
    } else {
        (
            ((size as f64) * width_mm / height_mm).round().max(1.0) as usize,
            size,
        )
    };
    let plan = findings::plan(&mut rng, options.normal_share);
    let anatomy = anatomy::Anatomy::sample(
        &mut rng,
        plan.view,
        width_mm,
        height_mm,
        plan.ctr,
        plan.elevated,
    );
    let findings = findings::sample(&mut rng, &plan, &anatomy);
    let detector = render::Detector::sample(&mut rng, format.bits_stored, plan.view);
    let marker = rng.random_bool(0.8);
    let rendered = render::render(
        &mut rng, &anatomy, &findings, width, height, &detector, marker,
    );
    let regions = regions::region_boxes(&anatomy, width, height);
    let report_seed = rng.random::<u64>();
    let report = report::write_report(
        &mut ChaCha8Rng::seed_from_u64(report_seed),
        &anatomy,
        &findings,
    );
    let image_id = format!(
        "{:08x}-{:08x}-{:08x}-{:08x}-{:08x}",
        rng.random::<u32>(),
        rng.random::<u32>(),
        rng.random::<u32>(),
        rng.random::<u32>(),
        rng.random::<u32>()
    );
    Study {
        index,
        image_id,
        study_id: 50_000_000 + (image_seed(seed, index) % 10_000_000),
        subject_id: 10_000_000 + (image_seed(seed ^ 0xA5A5, index) % 10_000_000),
        anatomy,
        findings,
        rendered,
        regions,
        format,
        report,
        report_seed,
    }
}
