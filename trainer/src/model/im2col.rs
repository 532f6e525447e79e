//! im2col as one Candle op with its own backward (col2im), for the CPU convolution: the composed
//! form (a narrow and a subsample per kernel tap, then a stack) copies the input k² times going
//! forward and, going back, gives each tap's gradient a zero-filled tensor of the padded input's
//! size before adding them up. Here the columns are written in one pass and the gradient is
//! accumulated in one pass. Tested equal, values and gradients, to the composed form it replaces
//! (`layers::conv2d` keeps that form for devices other than the CPU).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

/// The geometry of a k x k window sliding with `stride` over a zero-padded `[b, c, h, w]` input.
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
                "im2col: a {k} x {k} window with stride {s} does not fit {h} x {w} padded by {p}",
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
}

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: only f32 is supported");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: the input must be contiguous");
    };
    Ok(&data[start..end])
}

/// `[b, c, h, w]` -> `[b, c * k * k, oh * ow]`, row `(ci * k + ky) * k + kx`.
struct Im2Col(Window);

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, "im2col")?;
        let (b, c, h, w) = layout.shape().dims4()?;
        let win = self.0;
        let (oh, ow) = win.output(h, w)?;
        let k = win.k;
        let plane = oh * ow;
        let mut out = vec![0f32; b * c * k * k * plane];
        // One row (a channel and a kernel tap) at a time; rows are independent.
        for (row, dst) in out.chunks_mut(plane).enumerate() {
            let (bc, tap) = (row / (k * k), row % (k * k));
            let (ky, kx) = (tap / k, tap % k);
            let img = &src[bc * h * w..(bc + 1) * h * w];
            for oy in 0..oh {
                let Some(iy) = win.source(oy, ky, h) else {
                    continue;
                };
                let line = &img[iy * w..(iy + 1) * w];
                let out_line = &mut dst[oy * ow..(oy + 1) * ow];
                if win.stride == 1 {
                    // The columns inside the image are one contiguous run.
                    let first = win.pad.saturating_sub(kx);
                    let last = (w + win.pad).saturating_sub(kx).min(ow);
                    if first < last {
                        let from = first + kx - win.pad;
                        out_line[first..last].copy_from_slice(&line[from..from + last - first]);
                    }
                } else {
                    for (ox, v) in out_line.iter_mut().enumerate() {
                        if let Some(ix) = win.source(ox, kx, w) {
                            *v = line[ix];
                        }
                    }
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, c * k * k, plane))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (_, c, h, w) = arg.dims4()?;
        let grad = grad_res.contiguous()?.apply_op1_no_bwd(&Col2Im {
            win: self.0,
            c,
            h,
            w,
        })?;
        Ok(Some(grad))
    }
}

/// The adjoint of [`Im2Col`]: `[b, c * k * k, oh * ow]` -> `[b, c, h, w]`, each column value
/// added to the input sample it was read from.
struct Col2Im {
    win: Window,
    c: usize,
    h: usize,
    w: usize,
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, "col2im")?;
        let (b, rows, plane) = layout.shape().dims3()?;
        let (c, h, w, win) = (self.c, self.h, self.w, self.win);
        let (oh, ow) = win.output(h, w)?;
        let k = win.k;
        if rows != c * k * k || plane != oh * ow {
            candle_core::bail!(
                "col2im: [{b}, {rows}, {plane}] does not match {c} channels of {h} x {w} with a {k} x {k} window"
            );
        }
        let mut out = vec![0f32; b * c * h * w];
        // One image plane (a batch entry and a channel) at a time, its k² rows added into it.
        for (bc, img) in out.chunks_mut(h * w).enumerate() {
            for tap in 0..k * k {
                let (ky, kx) = (tap / k, tap % k);
                let row = &src[(bc * k * k + tap) * plane..(bc * k * k + tap + 1) * plane];
                for oy in 0..oh {
                    let Some(iy) = win.source(oy, ky, h) else {
                        continue;
                    };
                    let line = &mut img[iy * w..(iy + 1) * w];
                    let in_line = &row[oy * ow..(oy + 1) * ow];
                    if win.stride == 1 {
                        let first = win.pad.saturating_sub(kx);
                        let last = (w + win.pad).saturating_sub(kx).min(ow);
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
                            if let Some(ix) = win.source(ox, kx, w) {
                                line[ix] += v;
                            }
                        }
                    }
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }
}

/// The im2col columns of `x` (`[b, c, h, w]`, f32, on the CPU) for a k x k window: `[b, c * k *
/// k, oh * ow]`, with a backward pass.
pub fn im2col(x: &Tensor, k: usize, stride: usize, pad: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Im2Col(Window { k, stride, pad }))
}
