//! The order of training examples: seeded epochs, the batch of each step (so that a resumed run
//! sees exactly the batches of an uninterrupted one), and each example's augmentation generator.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The order of the training examples for an epoch: a seeded shuffle.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}

/// The examples of training step `step`: batch `step` of the endless seeded epoch sequence, so a
/// resumed run sees exactly the batches the uninterrupted one would have.
pub fn batch_indices(n: usize, batch: usize, seed: u64, step: u64) -> Vec<usize> {
    let per_epoch = (n / batch).max(1) as u64;
    let epoch = step / per_epoch;
    let k = (step % per_epoch) as usize;
    let order = epoch_order(n, seed, epoch);
    (0..batch)
        .map(|i| order[(k * batch + i) % n.max(1)])
        .collect()
}

/// The augmentation generator of one example of one step.
pub fn example_rng(seed: u64, step: u64, slot: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(
        seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
            ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ slot as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_an_epoch_and_are_reproducible() {
        let mut seen: Vec<usize> = (0..3).flat_map(|s| batch_indices(12, 4, 9, s)).collect();
        seen.sort();
        assert_eq!(seen, (0..12).collect::<Vec<_>>());
        assert_eq!(batch_indices(12, 4, 9, 5), batch_indices(12, 4, 9, 5));
        assert_ne!(batch_indices(12, 4, 9, 0), batch_indices(12, 4, 9, 3));
    }
}
