//! The tables: Chest ImaGenome's 29 box regions and the ASG paper's 40 image tags.

use serde::{Deserialize, Serialize};

/// Which side of the patient a region lies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    Right,
    Left,
    Midline,
}

/// An anatomical region with a bounding box in Chest ImaGenome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Region {
    /// Chest ImaGenome's `bbox_name`.
    pub name: &'static str,
    pub side: Side,
}

const fn r(name: &'static str, side: Side) -> Region {
    Region { name, side }
}

/// Chest ImaGenome's 29 box regions, in a fixed order (the model's region index).
pub const REGIONS: &[Region] = &[
    r("right lung", Side::Right),
    r("right upper lung zone", Side::Right),
    r("right mid lung zone", Side::Right),
    r("right lower lung zone", Side::Right),
    r("right hilar structures", Side::Right),
    r("right apical zone", Side::Right),
    r("right costophrenic angle", Side::Right),
    r("right hemidiaphragm", Side::Right),
    r("left lung", Side::Left),
    r("left upper lung zone", Side::Left),
    r("left mid lung zone", Side::Left),
    r("left lower lung zone", Side::Left),
    r("left hilar structures", Side::Left),
    r("left apical zone", Side::Left),
    r("left costophrenic angle", Side::Left),
    r("left hemidiaphragm", Side::Left),
    r("trachea", Side::Midline),
    r("spine", Side::Midline),
    r("right clavicle", Side::Right),
    r("left clavicle", Side::Left),
    r("aortic arch", Side::Midline),
    r("mediastinum", Side::Midline),
    r("upper mediastinum", Side::Midline),
    r("svc", Side::Midline),
    r("cardiac silhouette", Side::Midline),
    r("cavoatrial junction", Side::Midline),
    r("right atrium", Side::Midline),
    r("carina", Side::Midline),
    r("abdomen", Side::Midline),
];

/// The ASG paper's 40 image tags, in a fixed order (the model's finding index).
pub const FINDINGS: &[&str] = &[
    "pleural effusion",
    "opacity",
    "pneumothorax",
    "edema",
    "atelectasis",
    "tube",
    "consolidation",
    "enlarged cardiomediastinum",
    "tip",
    "pneumonia",
    "line",
    "cardiomegaly",
    "fracture",
    "calcification",
    "device",
    "engorgement",
    "nodule",
    "wire",
    "pacemaker",
    "pleural thicken",
    "marking",
    "scar",
    "hyperinflate",
    "blunt",
    "collapse",
    "emphysema",
    "aerate",
    "mass",
    "infiltration",
    "obscure",
    "deformity",
    "hernia",
    "drainage",
    "distention",
    "shift",
    "stent",
    "lesion",
    "hardware",
    "dilation",
    "aspiration",
];

/// The model index of a region, by its Chest ImaGenome name.
pub fn region_index(name: &str) -> Option<usize> {
    REGIONS.iter().position(|r| r.name == name)
}

/// The model index of a finding tag.
pub fn finding_index(name: &str) -> Option<usize> {
    FINDINGS.iter().position(|f| *f == name)
}

/// The region that contains `name` (a zone is part of its lung), if any.
pub fn region_parent(name: &str) -> Option<&'static str> {
    let side = if name.starts_with("right ") {
        "right lung"
    } else if name.starts_with("left ") {
        "left lung"
    } else {
        return match name {
            "upper mediastinum"
            | "svc"
            | "aortic arch"
            | "cardiac silhouette"
            | "cavoatrial junction"
            | "right atrium" => Some("mediastinum"),
            "carina" => Some("trachea"),
            _ => None,
        };
    };
    match name {
        "right lung" | "left lung" | "right clavicle" | "left clavicle" => None,
        "right atrium" => Some("cardiac silhouette"),
        _ => Some(side),
    }
}
