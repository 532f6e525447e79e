//! The sizes of the vocabulary the model is built for (asg-report's 29 Chest ImaGenome regions and
//! 40 finding tags): the bottom of the trainer, used by every wing.

/// Number of Chest ImaGenome regions and of finding tags.
pub const REGIONS: usize = 29;
pub const FINDINGS: usize = 40;

#[cfg(test)]
mod tests {
    #[test]
    fn the_sizes_are_asg_reports() {
        assert_eq!(super::REGIONS, asg_report::REGIONS.len());
        assert_eq!(super::FINDINGS, asg_report::FINDINGS.len());
    }
}
