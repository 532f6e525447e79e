//! The sizes of the vocabulary the model is built for (asg-report's 29 Chest ImaGenome regions and
//! 40 finding tags): the bottom of the trainer, used by every wing.

/// Number of Chest ImaGenome regions and of finding tags.
pub const REGIONS: usize = 29;
pub const FINDINGS: usize = 40;

/// The anatomy head's channels: (region, realcxr mask name). Each region's box is its mask's
/// box (`data/masks.rs`), so a box read off a predicted mask follows the target's rule.
pub const ANATOMY: [(&str, &str); 6] = [
    ("right lung", "right_lung"),
    ("left lung", "left_lung"),
    ("cardiac silhouette", "heart"),
    ("right clavicle", "right_clavicle"),
    ("left clavicle", "left_clavicle"),
    ("mediastinum", "cardiomediastinum"),
];

/// The anatomy head's side for an input of `size` when it reads the CNN from stage
/// `from_stage` on (stage k is `size / 2^(k+1)` a side).
pub fn anatomy_side(size: usize, from_stage: usize) -> usize {
    (size >> (from_stage + 1).min(16)).max(1)
}

/// Each anatomy channel's region index (model order).
pub fn anatomy_regions() -> Vec<usize> {
    ANATOMY
        .iter()
        .map(|(name, _)| {
            asg_report::REGIONS
                .iter()
                .position(|r| r.name == *name)
                .unwrap_or(usize::MAX)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sizes_are_asg_reports() {
        assert_eq!(super::REGIONS, asg_report::REGIONS.len());
        assert_eq!(super::FINDINGS, asg_report::FINDINGS.len());
        // Every anatomy channel names a region.
        assert!(super::anatomy_regions().iter().all(|&r| r < super::REGIONS));
    }
}
