use std::time::Instant;
use tract_onnx::prelude::*;
fn main() -> TractResult<()> {
    let path = std::env::args().nth(1).unwrap_or("models/default/image.onnx".into());
    let bytes = std::fs::read(&path)?;
    let proto = tract_onnx::onnx().proto_model_for_read(&mut &bytes[..])?;
    let g = proto.graph.as_ref().unwrap();
    let mut c = std::collections::BTreeMap::new();
    for n in &g.node { *c.entry(n.op_type.clone()).or_insert(0) += 1; }
    let mut v: Vec<_> = c.into_iter().collect(); v.sort_by_key(|x| std::cmp::Reverse(x.1));
    println!("{} nodes, {} initializers: {:?}", g.node.len(), g.initializer.len(), v);
    for _ in 0..3 {
    let t = Instant::now();
    let m = tract_onnx::onnx().model_for_read(&mut &bytes[..])?;
    let m = m.with_input_fact(0, f32::fact([1, 1, 160, 160]).into())?;
    let a = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let typed = m.into_typed()?;
    let b = t.elapsed().as_secs_f64() * 1e3;
    let n1 = typed.nodes().len();
    let t = Instant::now();
    let dec = typed.into_decluttered()?;
    let c = t.elapsed().as_secs_f64() * 1e3;
    let n2 = dec.nodes().len();
    let t = Instant::now();
    let opt = dec.into_optimized()?;
    let d = t.elapsed().as_secs_f64() * 1e3;
    let n3 = opt.nodes().len();
    let t = Instant::now();
    let plan = opt.into_runnable()?;
    let e = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let _ = plan.run(tvec!(Tensor::zero::<f32>(&[1, 1, 160, 160])?.into()))?;
    let f = t.elapsed().as_secs_f64() * 1e3;
    println!("read {a:.1} typed {b:.1} ({n1} nodes) declutter {c:.1} ({n2}) optimise {d:.1} ({n3}) plan {e:.1} first run {f:.1} ms");
    }
    Ok(())
}
