//! An exponential moving average of the model's weights (Polyak averaging, `train.ema`): after
//! each step every variable's average moves towards its new value, `avg = d avg + (1 - d) w`,
//! with `d = min(decay, (1 + step) / (10 + step))` so that the first steps' random weights fade
//! fast. The batch-norm running statistics are averaged too. The average is saved beside the
//! weights (`ema.safetensors`) and is what a run folder gives to the export and the evaluation
//! ([`crate::train::load_run`]); the optimizer keeps training the raw weights.

use candle_core::{Tensor, Var};
use std::collections::HashMap;

/// The averaged copies of a model's variables, by name.
pub struct Ema {
    decay: f64,
    vars: Vec<(String, Var)>,
    average: Vec<Tensor>,
}

impl Ema {
    /// Starts the average at the variables' current values.
    pub fn new(varmap: &candle_nn::VarMap, decay: f64) -> candle_core::Result<Self> {
        if !(0.0..1.0).contains(&decay) {
            candle_core::bail!("train.ema must be in [0, 1), not {decay}");
        }
        let data = varmap
            .data()
            .lock()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let mut vars: Vec<(String, Var)> =
            data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let average = vars
            .iter()
            .map(|(_, v)| v.as_tensor().detach().copy())
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            decay,
            vars,
            average,
        })
    }

    /// The decay used after step `step` (0-based).
    pub fn decay_at(&self, step: u64) -> f64 {
        self.decay.min((1.0 + step as f64) / (10.0 + step as f64))
    }

    /// Moves the average towards the variables' values after step `step`.
    pub fn update(&mut self, step: u64) -> candle_core::Result<()> {
        let d = self.decay_at(step);
        for ((_, var), avg) in self.vars.iter().zip(self.average.iter_mut()) {
            let w = var.as_tensor().detach();
            *avg = ((&*avg * d)? + (w * (1.0 - d))?)?;
        }
        Ok(())
    }

    /// The averages by variable name (what `ema.safetensors` holds).
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.vars
            .iter()
            .zip(&self.average)
            .map(|((n, _), t)| (n.clone(), t.clone()))
            .collect()
    }

    /// Restores the averages saved by [`Self::tensors`] (a resumed run); every variable must be
    /// there with its shape.
    pub fn load(&mut self, saved: &HashMap<String, Tensor>) -> candle_core::Result<()> {
        for ((name, var), avg) in self.vars.iter().zip(self.average.iter_mut()) {
            let Some(t) = saved.get(name) else {
                candle_core::bail!("ema.safetensors has no {name}");
            };
            if t.shape() != var.as_tensor().shape() {
                candle_core::bail!(
                    "ema.safetensors: {name} is {:?}, the model's is {:?}",
                    t.shape(),
                    var.as_tensor().shape()
                );
            }
            *avg = t.to_device(var.as_tensor().device())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn the_average_follows_the_hand_computed_recurrence() {
        let mut varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let w = vb
            .get_with_hints(2, "w", candle_nn::Init::Const(1.0))
            .unwrap();
        let mut ema = Ema::new(&varmap, 0.5).unwrap();
        // Step 0: d = min(0.5, 1/10) = 0.1; the weight moved to 3: 0.1 * 1 + 0.9 * 3 = 2.8.
        varmap
            .set_one("w", Tensor::new(&[3f32, 3.0], &Device::Cpu).unwrap())
            .unwrap();
        ema.update(0).unwrap();
        // Step 20: d = min(0.5, 21/30) = 0.5; the weight moved to 5: 0.5 * 2.8 + 0.5 * 5 = 3.9.
        varmap
            .set_one("w", Tensor::new(&[5f32, 5.0], &Device::Cpu).unwrap())
            .unwrap();
        ema.update(20).unwrap();
        let avg = ema.tensors()["w"].to_vec1::<f32>().unwrap();
        assert!(
            (avg[0] - 3.9).abs() < 1e-6 && (avg[1] - 3.9).abs() < 1e-6,
            "{avg:?}"
        );
        // The model's own weight is untouched.
        assert_eq!(w.to_vec1::<f32>().unwrap(), vec![5.0, 5.0]);
        // Saved and restored.
        let saved = ema.tensors();
        let mut other = Ema::new(&varmap, 0.5).unwrap();
        other.load(&saved).unwrap();
        assert_eq!(other.tensors()["w"].to_vec1::<f32>().unwrap(), avg);
    }

    #[test]
    fn a_decay_outside_0_1_and_a_mismatched_save_are_errors() {
        let varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        vb.get_with_hints(2, "w", candle_nn::Init::Const(1.0))
            .unwrap();
        assert!(Ema::new(&varmap, 1.0).is_err());
        assert!(Ema::new(&varmap, -0.1).is_err());
        let mut ema = Ema::new(&varmap, 0.9).unwrap();
        let mut wrong = HashMap::new();
        wrong.insert(
            "w".to_string(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
        assert!(ema.load(&wrong).is_err());
        assert!(ema.load(&HashMap::new()).is_err());
    }
}
