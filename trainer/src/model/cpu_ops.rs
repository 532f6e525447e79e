//! What the fused CPU ops ([`crate::model::conv`], [`crate::model::bn_relu`]) share: reading a
//! contiguous f32 input, a slot an op leaves a second result in, work split over Candle's own CPU
//! worker pool, and a bounds-checked matrix product.
//!
//! The work runs on Candle's pool (`candle_core::utils::barrier_pool`), not on threads of its own:
//! Candle's workers spin for a while after each of its element-wise ops, so a second pool on two
//! cores would wait for them to yield (measured: spreading these ops over scoped threads gained
//! nothing, BENCHMARKS.md).

use candle_core::{CpuStorage, Layout, Result};
use std::sync::{Arc, Mutex};

/// The contiguous f32 values of an op's input, or an error naming the op and the input.
pub(crate) fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
    what: &str,
) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: {what} must be f32");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: {what} must be contiguous");
    };
    Ok(&data[start..end])
}

/// A value an op's pass leaves for its caller or for its backward pass (shared by clones).
pub(crate) struct Slot<T>(Arc<Mutex<Option<T>>>);

impl<T: Clone> Slot<T> {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }

    pub(crate) fn share(&self) -> Self {
        Self(self.0.clone())
    }

    pub(crate) fn put(&self, value: T) -> Result<()> {
        *self.0.lock().map_err(|_| {
            candle_core::Error::Msg("a fused op's result lock is poisoned".into())
        })? = Some(value);
        Ok(())
    }

    /// The value, or an error naming what is missing.
    pub(crate) fn get(&self, what: &str) -> Result<T> {
        self.0
            .lock()
            .map_err(|_| candle_core::Error::Msg("a fused op's result lock is poisoned".into()))?
            .clone()
            .ok_or_else(|| candle_core::Error::Msg(format!("no {what}")))
    }
}

/// Points Candle's two CPU thread settings at one pool, for a training process: its matrix
/// products (rayon's pool, `RAYON_NUM_THREADS`) run on the calling thread, and its element-wise
/// ops and the trainer's fused ops (Candle's own pool, `CANDLE_NUM_THREADS`) on every core. The
/// large products, the convolutions', are already split over Candle's pool by
/// [`crate::model::conv`]; two pools on the same cores wait for each other's spinning workers
/// (BENCHMARKS.md: the `small` step 0.19 s with both, 0.16 s with one). Leaves both settings
/// alone when either is set. Call it first thing in `main`, before any thread starts (it sets
/// environment variables, which Candle reads once).
pub fn one_cpu_pool() {
    if std::env::var_os("RAYON_NUM_THREADS").is_some()
        || std::env::var_os("CANDLE_NUM_THREADS").is_some()
    {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    std::env::set_var("CANDLE_NUM_THREADS", cores.to_string());
    std::env::set_var("RAYON_NUM_THREADS", "1");
}

/// How many threads Candle's CPU pool runs work on (its workers and the calling thread).
pub(crate) fn threads() -> usize {
    candle_core::utils::barrier_pool().n_workers() + 1
}

/// `0..n` in at most `parts` contiguous ranges of near-equal length (none empty).
pub(crate) fn split(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    let (base, extra) = (n / parts, n % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .filter(|r| !r.is_empty())
        .collect()
}

/// `out` cut into consecutive pieces of `range.len() * width` values, one per range, each paired
/// with its range (the ranges from [`split`], so that each part writes only its own piece).
pub(crate) fn pieces<T>(
    out: &mut [T],
    ranges: Vec<std::ops::Range<usize>>,
    width: usize,
) -> Vec<(std::ops::Range<usize>, &mut [T])> {
    let mut rest = out;
    let mut parts = Vec::with_capacity(ranges.len());
    for r in ranges {
        let (mine, tail) = std::mem::take(&mut rest).split_at_mut(r.len() * width);
        parts.push((r, mine));
        rest = tail;
    }
    parts
}

/// The element-wise sum of the consecutive `size`-long blocks of `blocks` (per-part partial sums).
pub(crate) fn sum_blocks(blocks: &[f32], size: usize) -> Vec<f32> {
    let mut total = vec![0f32; size];
    for block in blocks.chunks(size.max(1)) {
        total.iter_mut().zip(block).for_each(|(t, v)| *t += v);
    }
    total
}

/// Runs `work` on each part, the parts spread over Candle's CPU pool; the first error wins.
pub(crate) fn run_parts<T: Send>(
    parts: Vec<T>,
    work: impl Fn(T) -> Result<()> + Sync,
) -> Result<()> {
    let slots: Vec<Mutex<Option<T>>> = parts.into_iter().map(|p| Mutex::new(Some(p))).collect();
    let failure: Mutex<Option<candle_core::Error>> = Mutex::new(None);
    let run = |i: usize| {
        let part = slots[i]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(part) = part {
            if let Err(e) = work(part) {
                failure
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .get_or_insert(e);
            }
        }
    };
    if slots.len() == 1 {
        run(0);
    } else {
        candle_core::utils::barrier_pool()
            .execute_chunked(slots.len(), |range| range.for_each(run));
    }
    match failure
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A matrix read from a slice: `rows x cols`, element (i, j) at `i * row_stride + j * col_stride`
/// (a row-major matrix has `col_stride` 1; its transpose swaps the two strides).
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element lies inside the slice.
    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `dst = a · b` (or `dst += a · b` with `accumulate`), `dst` row-major, single-threaded (the
/// callers split their work over the pool themselves); shapes and bounds checked first. The
/// trainer's one `unsafe` block: `gemm` takes raw pointers and strides, and no safe matrix
/// product over strided slices without allocating exists in the crates we use.
#[allow(unsafe_code)]
pub(crate) fn matmul_into(a: MatRef, b: MatRef, dst: &mut [f32], accumulate: bool) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || dst.len() != m * n || !a.fits() || !b.fits() {
        candle_core::bail!(
            "matmul_into: [{m} x {k}] · [{} x {n}] into {} values",
            b.rows,
            dst.len()
        );
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return Ok(());
    }
    let stride = |s: usize| s as isize;
    // SAFETY: every element read or written is inside its slice (checked above: the last
    // element of a and b by `fits`, dst is exactly m x n row-major), the slices do not overlap
    // (dst is borrowed mutably), and gemm runs on this thread only (Parallelism::None).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            stride(n),
            accumulate,
            a.data.as_ptr(),
            stride(a.col_stride),
            stride(a.row_stride),
            b.data.as_ptr(),
            stride(b.col_stride),
            stride(b.row_stride),
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_the_range_in_near_equal_parts() {
        assert_eq!(split(16, 2), vec![0..8, 8..16]);
        assert_eq!(split(5, 3), vec![0..2, 2..4, 4..5]);
        assert_eq!(split(2, 4), vec![0..1, 1..2]);
        assert_eq!(split(7, 0), vec![0..7]);
        assert!(split(0, 2).is_empty());
    }

    #[test]
    fn matmul_into_equals_the_hand_computed_product_with_and_without_transposes() {
        // a = [[1, 2, 3], [4, 5, 6]], b = [[1, 0], [0, 1], [2, -1]]: a · b = [[7, -1], [16, -1]].
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 2.0, -1.0];
        let mut c = [0f32; 4];
        matmul_into(
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b, 3, 2),
            &mut c,
            false,
        )
        .unwrap();
        assert_eq!(c, [7.0, -1.0, 16.0, -1.0]);
        // Accumulating adds the product again.
        matmul_into(
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b, 3, 2),
            &mut c,
            true,
        )
        .unwrap();
        assert_eq!(c, [14.0, -2.0, 32.0, -2.0]);
        // (b^T) · (a^T) = (a · b)^T, read through strides.
        let mut ct = [0f32; 4];
        matmul_into(
            MatRef::row_major(&b, 3, 2).t(),
            MatRef::row_major(&a, 2, 3).t(),
            &mut ct,
            false,
        )
        .unwrap();
        assert_eq!(ct, [7.0, 16.0, -1.0, -1.0]);
    }

    #[test]
    fn matmul_into_refuses_mismatched_shapes_and_short_slices() {
        let a = [0f32; 6];
        let mut c = [0f32; 4];
        assert!(matmul_into(
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&a, 2, 3),
            &mut c,
            false
        )
        .is_err());
        assert!(matmul_into(
            MatRef::row_major(&a[..5], 2, 3),
            MatRef::row_major(&a, 3, 2),
            &mut c,
            false
        )
        .is_err());
    }

    #[test]
    fn run_parts_runs_every_part_and_returns_the_first_error() {
        let mut out = vec![0usize; 10];
        let parts: Vec<_> = out.chunks_mut(3).enumerate().collect();
        run_parts(parts, |(i, chunk)| {
            chunk.iter_mut().for_each(|v| *v = i + 1);
            Ok(())
        })
        .unwrap();
        assert_eq!(out, [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]);
        let failed = run_parts(vec![1, 2, 3], |i| {
            if i == 2 {
                candle_core::bail!("part {i} failed")
            }
            Ok(())
        });
        assert!(failed.unwrap_err().to_string().contains("part 2 failed"));
    }
}
