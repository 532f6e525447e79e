//! The CPU convolution as one Candle op with its own backward. Per batch entry it writes the
//! im2col columns into a scratch buffer and runs one matrix product into the output; going back,
//! per entry, one product gives the weight gradient (summed over the batch in place) and one the
//! columns' gradient, added back onto the input's (col2im). The batch is split over Candle's CPU
//! pool. The composed form it replaces (a column tensor of the whole batch, a broadcast matrix
//! product whose weight gradient is a batch of products reduced afterwards) wrote and read tens
//! of megabytes per layer and ran its reduction on one core. Tested equal, values and gradients,
//! to that form (`layers::conv2d_composed`, kept for devices other than the CPU).

use crate::model::cpu_ops::{
    contiguous_f32, matmul_into, pieces, run_parts, split, sum_blocks, threads, MatRef, Slot,
};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

/// The geometry of a k x k window sliding with `stride` over a zero-padded input.
#[derive(Debug, Clone, Copy)]
struct Window {
    k: usize,
    stride: usize,
    pad: usize,
}

impl Window {
    fn output(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let (ph, pw) = (h + 2 * self.pad, w + 2 * self.pad);
        if self.k == 0 || self.stride == 0 || ph < self.k || pw < self.k {
            candle_core::bail!(
                "conv2d: a {k} x {k} window with stride {s} does not fit {h} x {w} padded by {p}",
                k = self.k,
                s = self.stride,
                p = self.pad
            );
        }
        Ok((
            (ph - self.k) / self.stride + 1,
            (pw - self.k) / self.stride + 1,
        ))
    }

    /// For output index `o` along an axis of `n` input samples and kernel offset `kk`: the input
    /// index, or None in the padding.
    #[inline]
    fn source(&self, o: usize, kk: usize, n: usize) -> Option<usize> {
        (o * self.stride + kk)
            .checked_sub(self.pad)
            .filter(|&i| i < n)
    }

    /// For stride 1, kernel column `kx` and rows of `w` input and `ow` output values: the output
    /// columns `first..last` that read inside the image (a contiguous run from input column
    /// `first + kx - pad`).
    #[inline]
    fn inside(&self, kx: usize, w: usize, ow: usize) -> (usize, usize) {
        let first = self.pad.saturating_sub(kx);
        let last = (w + self.pad).saturating_sub(kx).min(ow);
        (first, last.max(first))
    }
}

/// The shapes of one convolution: input `[b, c, h, w]`, weight `[cout, c, k, k]`, output
/// `[b, cout, oh, ow]`.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    cout: usize,
    oh: usize,
    ow: usize,
    win: Window,
}

impl Geometry {
    fn new(x: &Layout, weight: &Layout, stride: usize, pad: usize) -> Result<Self> {
        let (b, c, h, w) = x.shape().dims4()?;
        let (cout, cin, k, k2) = weight.shape().dims4()?;
        if cin != c || k != k2 {
            candle_core::bail!(
                "conv2d: a [{cout}, {cin}, {k}, {k2}] kernel over {c} input channels (square kernels only)"
            );
        }
        let win = Window { k, stride, pad };
        let (oh, ow) = win.output(h, w)?;
        Ok(Self {
            b,
            c,
            h,
            w,
            cout,
            oh,
            ow,
            win,
        })
    }

    /// Rows of one entry's columns: `c * k * k`.
    fn rows(&self) -> usize {
        self.c * self.win.k * self.win.k
    }

    fn plane(&self) -> usize {
        self.oh * self.ow
    }

    fn image(&self) -> usize {
        self.c * self.h * self.w
    }

    fn output(&self) -> usize {
        self.cout * self.plane()
    }
}

/// One batch entry `[c, h, w]` -> its columns `[c * k * k, oh * ow]`, row `(ci * k + ky) * k +
/// kx`; every value written (the padding as zeros), so `cols` may hold an earlier entry's.
fn fill_columns(g: &Geometry, src: &[f32], cols: &mut [f32]) {
    let (win, k, plane) = (g.win, g.win.k, g.plane());
    for (row, dst) in cols.chunks_mut(plane).enumerate() {
        let (ci, tap) = (row / (k * k), row % (k * k));
        let (ky, kx) = (tap / k, tap % k);
        let img = &src[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for (oy, out_line) in dst.chunks_mut(g.ow).enumerate() {
            let Some(iy) = win.source(oy, ky, g.h) else {
                out_line.fill(0.0);
                continue;
            };
            let line = &img[iy * g.w..(iy + 1) * g.w];
            if win.stride == 1 {
                let (first, last) = win.inside(kx, g.w, g.ow);
                out_line[..first].fill(0.0);
                out_line[last..].fill(0.0);
                if first < last {
                    let from = first + kx - win.pad;
                    out_line[first..last].copy_from_slice(&line[from..from + last - first]);
                }
            } else {
                for (ox, v) in out_line.iter_mut().enumerate() {
                    *v = win.source(ox, kx, g.w).map_or(0.0, |ix| line[ix]);
                }
            }
        }
    }
}

/// The adjoint of [`fill_columns`]: each column value added onto the input value it was read
/// from, in one entry's `[c, h, w]` gradient.
fn add_columns(g: &Geometry, cols: &[f32], dst: &mut [f32]) {
    let (win, k, plane) = (g.win, g.win.k, g.plane());
    for (row, src) in cols.chunks(plane).enumerate() {
        let (ci, tap) = (row / (k * k), row % (k * k));
        let (ky, kx) = (tap / k, tap % k);
        let img = &mut dst[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for (oy, in_line) in src.chunks(g.ow).enumerate() {
            let Some(iy) = win.source(oy, ky, g.h) else {
                continue;
            };
            let line = &mut img[iy * g.w..(iy + 1) * g.w];
            if win.stride == 1 {
                let (first, last) = win.inside(kx, g.w, g.ow);
                if first < last {
                    let from = first + kx - win.pad;
                    for (d, s) in line[from..from + last - first]
                        .iter_mut()
                        .zip(&in_line[first..last])
                    {
                        *d += s;
                    }
                }
            } else {
                for (ox, v) in in_line.iter().enumerate() {
                    if let Some(ix) = win.source(ox, kx, g.w) {
                        line[ix] += v;
                    }
                }
            }
        }
    }
}

/// The forward op over (input, weight).
struct Conv2d {
    stride: usize,
    pad: usize,
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d_im2col"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "conv2d", "the input")?;
        let weight = contiguous_f32(s2, l2, "conv2d", "the weight")?;
        let g = Geometry::new(l1, l2, self.stride, self.pad)?;
        let wm = MatRef::row_major(weight, g.cout, g.rows());
        let mut y = vec![0f32; g.b * g.output()];
        let parts = pieces(&mut y, split(g.b, threads()), g.output());
        run_parts(parts, |(entries, out)| {
            let mut cols = vec![0f32; g.rows() * g.plane()];
            for (bi, yb) in entries.zip(out.chunks_mut(g.output())) {
                fill_columns(&g, &x[bi * g.image()..(bi + 1) * g.image()], &mut cols);
                let cm = MatRef::row_major(&cols, g.rows(), g.plane());
                matmul_into(wm, cm, yb, false)?;
            }
            Ok(())
        })?;
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.cout, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dweight = Slot::new();
        let dx = x.contiguous()?.apply_op3_no_bwd(
            &weight.contiguous()?,
            &grad_res.contiguous()?,
            &Conv2dBackward {
                stride: self.stride,
                pad: self.pad,
                dweight: dweight.share(),
            },
        )?;
        let dweight = Tensor::from_vec(
            dweight.get("conv2d weight gradient")?,
            weight.shape(),
            weight.device(),
        )?;
        Ok((Some(dx), Some(dweight)))
    }
}

/// The backward op over (input, weight, output gradient): the input gradient, with the weight
/// gradient left in `dweight`.
struct Conv2dBackward {
    stride: usize,
    pad: usize,
    dweight: Slot<Vec<f32>>,
}

impl CustomOp3 for Conv2dBackward {
    fn name(&self) -> &'static str {
        "conv2d_im2col_backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "conv2d backward", "the input")?;
        let weight = contiguous_f32(s2, l2, "conv2d backward", "the weight")?;
        let dy = contiguous_f32(s3, l3, "conv2d backward", "the output gradient")?;
        let g = Geometry::new(l1, l2, self.stride, self.pad)?;
        if dy.len() != g.b * g.output() {
            candle_core::bail!(
                "conv2d backward: an output gradient of {} values for [{}, {}, {}, {}]",
                dy.len(),
                g.b,
                g.cout,
                g.oh,
                g.ow
            );
        }
        let wm = MatRef::row_major(weight, g.cout, g.rows());
        let wsize = g.cout * g.rows();
        let ranges = split(g.b, threads());
        // One weight-gradient sum per part, added together at the end.
        let mut dweights = vec![0f32; ranges.len() * wsize];
        let mut dx = vec![0f32; g.b * g.image()];
        let parts: Vec<_> = pieces(&mut dx, ranges, g.image())
            .into_iter()
            .zip(dweights.chunks_mut(wsize))
            .map(|((r, mine), dw)| (r, mine, dw))
            .collect();
        run_parts(parts, |(entries, dx_part, dw)| {
            let mut cols = vec![0f32; g.rows() * g.plane()];
            let mut dcols = vec![0f32; g.rows() * g.plane()];
            for (bi, dxb) in entries.zip(dx_part.chunks_mut(g.image())) {
                let dyb = MatRef::row_major(
                    &dy[bi * g.output()..(bi + 1) * g.output()],
                    g.cout,
                    g.plane(),
                );
                // dW += dY_b · cols_b^T
                fill_columns(&g, &x[bi * g.image()..(bi + 1) * g.image()], &mut cols);
                let cm = MatRef::row_major(&cols, g.rows(), g.plane());
                matmul_into(dyb, cm.t(), dw, true)?;
                // dcols_b = W^T · dY_b, added back onto the input's gradient.
                matmul_into(wm.t(), dyb, &mut dcols, false)?;
                add_columns(&g, &dcols, dxb);
            }
            Ok(())
        })?;
        let total = sum_blocks(&dweights, wsize);
        self.dweight.put(total)?;
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// The convolution of `x` (`[b, c, h, w]`, f32, on the CPU) with `weight` (`[cout, c, k, k]`, no
/// bias), zero padding `pad` and `stride`: `[b, cout, oh, ow]`, with a backward pass to both.
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, Conv2d { stride, pad })
}
