//! AdamW (decoupled weight decay; moments kept as tensors so a checkpoint restores them exactly)
//! and the learning-rate schedule (linear warm-up, cosine decay).

use candle_core::{backprop::GradStore, DType, Device, Tensor, Var};
use std::collections::HashMap;

/// AdamW (decoupled weight decay, not on biases, norms, embeddings' positions or queries), with
/// its moments kept as tensors so that a checkpoint can save and restore them exactly.
pub struct AdamW {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub step: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl AdamW {
    /// The trainable variables of `varmap` (batch-norm running statistics excluded), by name.
    pub fn new(varmap: &candle_nn::VarMap, weight_decay: f64) -> candle_core::Result<Self> {
        let data = varmap
            .data()
            .lock()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let mut vars: Vec<(String, Var)> = data
            .iter()
            .filter(|(n, _)| !n.contains("running_"))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let m = vars
            .iter()
            .map(|(_, v)| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<_>>()?;
        let v = vars
            .iter()
            .map(|(_, v)| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            vars,
            m,
            v,
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        })
    }

    pub fn var_names(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().map(|(n, _)| n.as_str())
    }

    fn decays(name: &str, rank: usize) -> bool {
        rank >= 2
            && !name.contains("position")
            && !name.contains("queries")
            && !name.contains("memory_pos")
    }

    /// The global L2 norm of the gradients.
    pub fn grad_norm(&self, grads: &GradStore) -> candle_core::Result<f64> {
        let mut sum = 0.0f64;
        for (_, var) in &self.vars {
            if let Some(g) = grads.get(var.as_tensor()) {
                sum += g
                    .sqr()?
                    .sum_all()?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()?;
            }
        }
        Ok(sum.sqrt())
    }

    /// One update with learning rate `lr`; gradients scaled by `scale` first (clipping).
    pub fn update(&mut self, grads: &GradStore, lr: f64, scale: f64) -> candle_core::Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(t);
        let c2 = 1.0 - b2.powi(t);
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = (g * scale)?;
            self.m[i] = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let m_hat = (&self.m[i] / c1)?;
            let v_hat = (&self.v[i] / c2)?;
            let step = (m_hat / (v_hat.sqrt()? + self.eps)?)?;
            let theta = var.as_tensor();
            let decayed = if Self::decays(name, theta.rank()) {
                (theta * (1.0 - lr * self.weight_decay))?
            } else {
                theta.clone()
            };
            var.set(&(decayed - (step * lr)?)?)?;
        }
        Ok(())
    }

    /// The moments as named tensors (`m.<var>`, `v.<var>`, and the step).
    pub fn state(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("m.{name}"), self.m[i].clone());
            out.insert(format!("v.{name}"), self.v[i].clone());
        }
        out.insert(
            "step".into(),
            Tensor::new(&[self.step as f64], &Device::Cpu)?,
        );
        Ok(out)
    }

    /// Restores the moments written by [`AdamW::state`].
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> candle_core::Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (prefix, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let t = state.get(&format!("{prefix}.{name}")).ok_or_else(|| {
                    candle_core::Error::Msg(format!("optimizer state has no {prefix}.{name}"))
                })?;
                if t.dims() != var.dims() {
                    return Err(candle_core::Error::Msg(format!(
                        "optimizer state {prefix}.{name} has shape {:?}, the model {:?}",
                        t.dims(),
                        var.dims()
                    )));
                }
                *slot = t.to_device(var.device())?;
            }
        }
        let step = state
            .get("step")
            .ok_or_else(|| candle_core::Error::Msg("optimizer state has no step".into()))?;
        self.step = step.to_vec1::<f64>()?.first().copied().unwrap_or(0.0) as u64;
        Ok(())
    }
}

/// Learning rate at `step` (0-based): linear warm-up, then cosine decay to 1% of the peak.
pub fn learning_rate(step: u64, peak: f64, warmup: u64, total: u64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    let floor = 0.01 * peak;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}
