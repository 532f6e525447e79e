//! The lung-crop nodule model (`model::nodule_net`) as `nodule.onnx`, and that file run back by
//! tract, to check it against Candle. Input `crop` `[batch, 1, 256, 128]` (normalised display
//! values, `data::lung_crops`) and `coverage` `[batch, 32, 16]` (the lung's share of each 8 x 8
//! cell); outputs `cells` `[batch, 32, 16]` (nodule logits, the heatmap) and `nodule`
//! `[batch]` (the lung's probability: the cells pooled by the weighted log-sum-exp of
//! [`crate::model::nodule_net::pool`], then a sigmoid). Batch norms folded into the convolutions.

use crate::export::asg::Exporter;
use crate::export::onnx::{Attr, Dim, ExportError};
use crate::model::nodule_net::{NoduleNet, POOL_SHARPNESS};
use tract_onnx::prelude::*;

/// Writes `net` as ONNX bytes for crops of `height` x `width` pixels (multiples of 8).
pub fn nodule_onnx(net: &NoduleNet, height: usize, width: usize) -> Result<Vec<u8>, ExportError> {
    let stride = crate::model::nodule_net::STRIDE;
    if !height.is_multiple_of(stride) || !width.is_multiple_of(stride) || height == 0 || width == 0
    {
        return Err(ExportError::Graph(format!(
            "a crop of {height} x {width} is not a multiple of {stride}"
        )));
    }
    let (gh, gw) = (height / stride, width / stride);
    let mut e = Exporter::new();
    let batch = || Dim::Param("batch");
    let x = e.g.input(
        "crop",
        &[
            batch(),
            Dim::Fixed(1),
            Dim::Fixed(height),
            Dim::Fixed(width),
        ],
    )?;
    let coverage =
        e.g.input("coverage", &[batch(), Dim::Fixed(gh), Dim::Fixed(gw)])?;
    let mut h = x;
    for (i, layer) in net.layers.iter().enumerate() {
        h = e.conv_bn(&h, layer, &format!("layer{i}"))?;
    }
    let c = net.head_weight.dim(1)?;
    let w = e.tensor("head.weight", &net.head_weight.reshape((1, c, 1, 1))?)?;
    let b = e.tensor("head.bias", &net.head_bias)?;
    let cells = e.op(
        "Conv",
        &[&h, &w, &b],
        &[("kernel_shape", Attr::Ints(vec![1, 1]))],
        "head",
    )?;
    let cells = e.reshape(&cells, &[-1, gh as i64, gw as i64], "head")?;
    // The pool: (1/r) ln(sum w exp(r (l - top)) / sum w) + top, top the largest weighted cell.
    let hint = "pool";
    let l = e.reshape(&cells, &[-1, (gh * gw) as i64], hint)?;
    let wts = e.reshape(&coverage, &[-1, (gh * gw) as i64], hint)?;
    let zero = e.scalar("pool.zero", 0.0)?;
    let one = e.scalar("pool.one", 1.0)?;
    let far = e.scalar("pool.far", 1e4)?;
    let r = e.scalar("pool.r", POOL_SHARPNESS as f32)?;
    let inside = e.binary("Greater", &wts, &zero, hint)?;
    let inside = e.op("Cast", &[&inside], &[("to", Attr::Int(1))], hint)?;
    let outside = e.binary("Sub", &inside, &one, hint)?;
    let outside = e.binary("Mul", &outside, &far, hint)?;
    let pushed = e.binary("Add", &l, &outside, hint)?;
    let top = e.reduce_max(&pushed, 1, true, hint)?;
    let shifted = e.binary("Sub", &l, &top, hint)?;
    let shifted = e.binary("Mul", &shifted, &r, hint)?;
    let shifted = e.op("Exp", &[&shifted], &[], hint)?;
    let weighted = e.binary("Mul", &shifted, &wts, hint)?;
    let ax1 = e.ints("pool.axis1", &[1])?;
    let keep = [("keepdims", Attr::Int(1))];
    let num = e.op("ReduceSum", &[&weighted, &ax1], &keep, hint)?;
    let den = e.op("ReduceSum", &[&wts, &ax1], &keep, hint)?;
    let tiny = e.scalar("pool.tiny", 1e-30)?;
    let eps = e.scalar("pool.eps", 1e-6)?;
    let num = e.binary("Add", &num, &tiny, hint)?;
    let den = e.binary("Add", &den, &eps, hint)?;
    let num = e.op("Log", &[&num], &[], hint)?;
    let den = e.op("Log", &[&den], &[], hint)?;
    let pooled = e.binary("Sub", &num, &den, hint)?;
    let pooled = e.binary("Div", &pooled, &r, hint)?;
    let pooled = e.binary("Add", &pooled, &top, hint)?;
    let prob = e.op("Sigmoid", &[&pooled], &[], hint)?;
    let prob = e.reshape(&prob, &[-1], hint)?;
    e.output(&cells, "cells", &[batch(), Dim::Fixed(gh), Dim::Fixed(gw)])?;
    e.output(&prob, "nodule", &[batch()])?;
    e.g.finish(
        "asg_nodule",
        "ASG lung-crop nodule model: cell logits and the lung's nodule probability",
    )
}

/// Runs `nodule.onnx` bytes through tract on `n` crops: (the lungs' probabilities, the cells'
/// logits, flat).
pub fn run_nodule_onnx(
    bytes: &[u8],
    crops: &[f32],
    coverage: &[f32],
    n: usize,
    height: usize,
    width: usize,
) -> Result<(Vec<f32>, Vec<f32>), ExportError> {
    let stride = crate::model::nodule_net::STRIDE;
    let (gh, gw) = (height / stride, width / stride);
    let graph = |e: TractError| ExportError::Graph(format!("tract: {e:#}"));
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .and_then(|m| m.with_input_fact(0, f32::fact([n, 1, height, width]).into()))
        .and_then(|m| m.with_input_fact(1, f32::fact([n, gh, gw]).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(graph)?;
    let x = tract_ndarray::Array4::from_shape_vec((n, 1, height, width), crops.to_vec())
        .map_err(|e| ExportError::Graph(e.to_string()))?;
    let c = tract_ndarray::Array3::from_shape_vec((n, gh, gw), coverage.to_vec())
        .map_err(|e| ExportError::Graph(e.to_string()))?;
    let out = plan
        .run(tvec!(x.into_tensor().into(), c.into_tensor().into()))
        .map_err(graph)?;
    let cells = out[0].to_plain_array_view::<f32>().map_err(graph)?;
    let prob = out[1].to_plain_array_view::<f32>().map_err(graph)?;
    Ok((
        prob.iter().copied().collect(),
        cells.iter().copied().collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::sigmoid;
    use crate::model::nodule_net::pool;
    use candle_core::{DType, Device, Tensor};
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_exported_nodule_model_matches_candle_through_tract() {
        let dev = Device::Cpu;
        let varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let net = NoduleNet::new(vb).unwrap();
        let (n, h, w) = (3, 32, 16);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let pixels: Vec<f32> = (0..n * h * w)
            .map(|_| rng.random_range(-2.0..2.0))
            .collect();
        let x = Tensor::from_vec(pixels.clone(), (n, 1, h, w), &dev).unwrap();
        // A training-mode pass moves the batch norms' running statistics off their defaults, so
        // the folding is tested with real statistics.
        for _ in 0..3 {
            net.cells(&x, true).unwrap();
        }
        // Coverage: the first crop all lung, the second half, the third a single cell.
        let mut cov = vec![0.0f32; n * 8];
        cov[..8].iter_mut().for_each(|v| *v = 1.0);
        cov[8..12].iter_mut().for_each(|v| *v = 0.5);
        cov[16 + 5] = 1.0;
        let cw = Tensor::from_vec(cov.clone(), (n, 4, 2), &dev).unwrap();
        let cells = net.cells(&x, false).unwrap();
        let want_p = sigmoid(&pool(&cells, &cw).unwrap())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let want_c = cells.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bytes = nodule_onnx(&net, h, w).unwrap();
        let (got_p, got_c) = run_nodule_onnx(&bytes, &pixels, &cov, n, h, w).unwrap();
        let worst = |a: &[f32], b: &[f32]| {
            assert_eq!(a.len(), b.len());
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max)
        };
        assert!(
            worst(&got_c, &want_c) < 1e-4,
            "cells {}",
            worst(&got_c, &want_c)
        );
        assert!(worst(&got_p, &want_p) < 1e-5, "{got_p:?} {want_p:?}");
        assert!(nodule_onnx(&net, 30, 16).is_err());
    }
}
