//! asg-phantom: synthetic frontal chest radiographs with known anatomy, written as real DICOM.
//!
//! This is the first, simple renderer: tissue volumes are ellipsoids, the detector value is the
//! attenuation integrated along each ray (what the log of an X-ray transmission gives), plus
//! quantum-like noise. Every region drawn comes with its box in image pixels.

#![forbid(unsafe_code)]

use asg_dicom::{
    uid_from_u128, write_file, DicomError, NewImage, VoiWindow, SOP_CLASS_DX_PRESENTATION,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A region's box in image pixels: x1, y1 (top-left) to x2, y2 (bottom-right), exclusive edges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionBox {
    pub name: String,
    pub bbox: [f32; 4],
}

/// One rendered study: stored pixel values and the ground truth.
#[derive(Debug, Clone)]
pub struct Phantom {
    pub size: u32,
    pub pixels: Vec<u16>,
    pub regions: Vec<RegionBox>,
    pub seed: u64,
}

/// An ellipsoid of tissue seen from the front: centre, semi-axes in the image plane, depth, and
/// linear attenuation relative to soft tissue (air in the lungs is negative).
struct Volume {
    cx: f32,
    cy: f32,
    ax: f32,
    ay: f32,
    depth: f32,
    mu: f32,
}

impl Volume {
    fn path(&self, x: f32, y: f32) -> f32 {
        let (dx, dy) = ((x - self.cx) / self.ax, (y - self.cy) / self.ay);
        let r = 1.0 - dx * dx - dy * dy;
        if r > 0.0 {
            self.mu * self.depth * r.sqrt()
        } else {
            0.0
        }
    }

    fn bbox(&self) -> [f32; 4] {
        [
            self.cx - self.ax,
            self.cy - self.ay,
            self.cx + self.ax,
            self.cy + self.ay,
        ]
    }
}

/// Renders one frontal chest phantom of `size` x `size` pixels from `seed`.
pub fn render(size: u32, seed: u64) -> Phantom {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let s = size as f32;
    let mut jitter = |v: f32, spread: f32| v + rng.random_range(-spread..=spread);
    let body = Volume {
        cx: jitter(0.5, 0.02) * s,
        cy: 0.55 * s,
        ax: jitter(0.44, 0.03) * s,
        ay: 0.55 * s,
        depth: 1.0,
        mu: 1.0,
    };
    let lung_y = jitter(0.45, 0.03) * s;
    let lung_h = jitter(0.27, 0.03) * s;
    let right_lung = Volume {
        cx: body.cx - jitter(0.17, 0.02) * s,
        cy: lung_y,
        ax: jitter(0.13, 0.015) * s,
        ay: lung_h,
        depth: 0.8,
        mu: -0.85,
    };
    let left_lung = Volume {
        cx: body.cx + jitter(0.17, 0.02) * s,
        cy: lung_y,
        ax: jitter(0.12, 0.015) * s,
        ay: lung_h * 0.97,
        depth: 0.8,
        mu: -0.85,
    };
    let heart_w = jitter(0.13, 0.03) * s;
    let heart = Volume {
        cx: body.cx + 0.04 * s,
        cy: lung_y + 0.14 * s,
        ax: heart_w,
        ay: 0.11 * s,
        depth: 0.5,
        mu: 0.9,
    };
    let spine = Volume {
        cx: body.cx,
        cy: 0.55 * s,
        ax: 0.035 * s,
        ay: 0.6 * s,
        depth: 0.25,
        mu: 2.5,
    };
    let trachea = Volume {
        cx: body.cx,
        cy: lung_y - 0.22 * s,
        ax: 0.018 * s,
        ay: 0.12 * s,
        depth: 0.1,
        mu: -1.0,
    };
    let volumes = [&body, &right_lung, &left_lung, &heart, &spine, &trachea];

    let mut pixels = Vec::with_capacity((size * size) as usize);
    for y in 0..size {
        for x in 0..size {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let mut attenuation: f32 = volumes.iter().map(|v| v.path(fx, fy)).sum();
            // Ribs: faint periodic arcs over the lungs.
            let rib = ((fy / s * 28.0 + ((fx / s - 0.5).abs() * 6.0)).sin())
                .max(0.0)
                .powi(8)
                * 0.12;
            attenuation +=
                rib * ((right_lung.path(fx, fy) + left_lung.path(fx, fy)) < 0.0) as u8 as f32;
            let noise: f32 = rng.random_range(-0.02..0.02);
            let value = ((attenuation.max(0.0) + 0.05 + noise) * 2400.0).clamp(0.0, 4095.0);
            pixels.push(value as u16);
        }
    }
    let clip = |b: [f32; 4]| b.map(|v| v.clamp(0.0, s));
    // The cardiac silhouette is the heart's visible outline; the mediastinum spans the spine width
    // up to the heart. Lung boxes are the air volumes.
    let regions = vec![
        RegionBox {
            name: "right lung".into(),
            bbox: clip(right_lung.bbox()),
        },
        RegionBox {
            name: "left lung".into(),
            bbox: clip(left_lung.bbox()),
        },
        RegionBox {
            name: "cardiac silhouette".into(),
            bbox: clip(heart.bbox()),
        },
        RegionBox {
            name: "trachea".into(),
            bbox: clip(trachea.bbox()),
        },
    ];
    Phantom {
        size,
        pixels,
        regions,
        seed,
    }
}

/// The ground truth written next to each phantom DICOM file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Truth {
    pub image: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub regions: Vec<RegionBox>,
}

/// Errors from writing a phantom set.
#[derive(Debug, thiserror::Error)]
pub enum PhantomError {
    #[error(transparent)]
    Dicom(#[from] DicomError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Renders phantom `index` of the set seeded by `seed` and writes `<out>/phantom_<index>.dcm`
/// (DX, explicit VR little endian) and its `.json` ground truth. Returns the DICOM path.
pub fn write_phantom(
    out: &Path,
    size: u32,
    seed: u64,
    index: u32,
) -> Result<PathBuf, PhantomError> {
    let image_seed = seed.wrapping_mul(1_000_003).wrapping_add(index as u64);
    let p = render(size, image_seed);
    let stem = format!("phantom_{index:05}");
    let dcm = out.join(format!("{stem}.dcm"));
    let uid = |k: u128| uid_from_u128(((image_seed as u128) << 8 | k) + (1u128 << 100));
    let image = NewImage {
        rows: size,
        columns: size,
        pixels: p.pixels,
        bits_stored: 12,
        photometric_interpretation: "MONOCHROME2".into(),
        rescale_slope: 1.0,
        rescale_intercept: 0.0,
        window: Some(VoiWindow {
            center: 2048.0,
            width: 4096.0,
        }),
        pixel_spacing_mm: Some([430.0 / size as f64; 2]),
        view_position: Some("PA".into()),
        modality: "DX".into(),
        sop_class_uid: SOP_CLASS_DX_PRESENTATION.into(),
        study_instance_uid: uid(1),
        series_instance_uid: uid(2),
        sop_instance_uid: uid(3),
        patient_name: format!("PHANTOM^{index:05}"),
        patient_id: format!("PH{image_seed}"),
        study_description: Some("Synthetic chest phantom".into()),
    };
    write_file(&dcm, &image)?;
    let truth = Truth {
        image: format!("{stem}.dcm"),
        seed: image_seed,
        width: size,
        height: size,
        regions: p.regions,
    };
    let json_path = out.join(format!("{stem}.json"));
    let text = serde_json::to_string_pretty(&truth).map_err(|e| PhantomError::Io {
        path: json_path.clone(),
        source: e.into(),
    })?;
    std::fs::write(&json_path, text).map_err(|source| PhantomError::Io {
        path: json_path,
        source,
    })?;
    Ok(dcm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_is_deterministic_and_lungs_are_darker_than_the_heart() {
        let a = render(128, 7);
        let b = render(128, 7);
        assert_eq!(a.pixels, b.pixels);
        assert_ne!(a.pixels, render(128, 8).pixels);
        let mean_in = |name: &str| {
            let bb = &a.regions.iter().find(|r| r.name == name).unwrap().bbox;
            let (cx, cy) = (
                ((bb[0] + bb[2]) / 2.0) as usize,
                ((bb[1] + bb[3]) / 2.0) as usize,
            );
            a.pixels[cy * 128 + cx] as f32
        };
        assert!(mean_in("right lung") < mean_in("cardiac silhouette"));
    }

    #[test]
    fn written_phantom_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_phantom(dir.path(), 96, 1, 0).unwrap();
        let img = asg_dicom::read_file(&path, &Default::default()).unwrap();
        assert_eq!((img.width, img.height), (96, 96));
        let truth: Truth =
            serde_json::from_str(&std::fs::read_to_string(path.with_extension("json")).unwrap())
                .unwrap();
        assert_eq!(truth.regions.len(), 4);
    }
}
