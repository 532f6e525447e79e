//! asg-report: the vocabulary ASG speaks (anatomical regions, finding tags) and, as it grows, report
//! text -> <region, finding, existence> triplets.
//!
//! The vocabulary is data: one table per kind, reviewable in one place (`vocabulary.rs`).

#![forbid(unsafe_code)]

mod vocabulary;

pub use vocabulary::{finding_index, region_index, Region, Side, FINDINGS, REGIONS};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_have_the_sizes_of_the_paper_and_chest_imagenome() {
        assert_eq!(REGIONS.len(), 29);
        assert_eq!(FINDINGS.len(), 40);
    }

    #[test]
    fn names_are_unique_and_found_by_index() {
        for (i, r) in REGIONS.iter().enumerate() {
            assert_eq!(region_index(r.name), Some(i), "{}", r.name);
        }
        for (i, f) in FINDINGS.iter().enumerate() {
            assert_eq!(finding_index(f), Some(i), "{f}");
        }
        assert_eq!(region_index("left elbow"), None);
    }

    #[test]
    fn sides_pair_up() {
        let right = REGIONS.iter().filter(|r| r.side == Side::Right).count();
        let left = REGIONS.iter().filter(|r| r.side == Side::Left).count();
        assert_eq!(right, left);
        assert_eq!(right, 9); // 8 lung/pleura regions + the clavicle
    }
}
