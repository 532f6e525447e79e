//! Mixed precision (`train.precision`): the number type the heavy products (the convolutions
//! and the linear layers' matrix products) compute in during a training step, in the manner of
//! PyTorch's autocast. The weights stay `f32` (the optimizer's master copy); inside an
//! [`autocast`] scope [`crate::model::layers::conv2d`] and [`crate::model::transformer_ops::linear`]
//! cast their input and weight to the compute type, multiply, and cast the product back to
//! `f32`, so normalisations, softmaxes, attention scores and the losses stay in `f32`. Candle's
//! backward pass of a cast is the cast back, so the weights' gradients arrive in `f32`.
//!
//! `bf16` keeps `f32`'s exponent range, so it needs no loss scaling; `f16` would, and is not
//! offered. On the CPU `bf16` is emulated (slower than `f32`; it is there so that the CPU tests
//! check its numerics); on CUDA (compute capability 8.0 and up) cuBLAS runs it natively.

pub use crate::config::Precision;
use candle_core::{DType, Result, Tensor};
use std::cell::Cell;

impl Precision {
    /// The Candle type of the products.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }
}

thread_local! {
    static COMPUTE: Cell<DType> = const { Cell::new(DType::F32) };
}

/// While alive, the products of this thread's forward passes compute in `precision`; dropping
/// it restores the type before it (scopes nest).
#[must_use = "the precision holds only while the guard lives"]
pub struct Autocast {
    previous: DType,
}

/// Starts an [`Autocast`] scope of `precision` on this thread.
pub fn autocast(precision: Precision) -> Autocast {
    let previous = COMPUTE.with(|c| c.replace(precision.dtype()));
    Autocast { previous }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        COMPUTE.with(|c| c.set(self.previous));
    }
}

/// The type this thread's products compute in now (`f32` outside any [`autocast`] scope).
pub fn compute_dtype() -> DType {
    COMPUTE.with(|c| c.get())
}

/// `x` and `w` in the compute type when an [`autocast`] scope asks for a narrower one than
/// `x`'s `f32`; `None` when the product runs as it is.
pub fn cast_operands(x: &Tensor, w: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
    let dtype = compute_dtype();
    if dtype == DType::F32 || x.dtype() != DType::F32 {
        return Ok(None);
    }
    Ok(Some((x.to_dtype(dtype)?, w.to_dtype(dtype)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore_the_type_before_them() {
        assert_eq!(compute_dtype(), DType::F32);
        {
            let _outer = autocast(Precision::Bf16);
            assert_eq!(compute_dtype(), DType::BF16);
            {
                let _inner = autocast(Precision::F32);
                assert_eq!(compute_dtype(), DType::F32);
            }
            assert_eq!(compute_dtype(), DType::BF16);
        }
        assert_eq!(compute_dtype(), DType::F32);
    }

    #[test]
    fn the_config_names_are_lowercase_and_f16_is_refused() {
        #[derive(serde::Deserialize)]
        struct T {
            p: Precision,
        }
        let t: T = toml::from_str("p = \"bf16\"").unwrap();
        assert_eq!(t.p, Precision::Bf16);
        let t: T = toml::from_str("p = \"f32\"").unwrap();
        assert_eq!(t.p, Precision::F32);
        assert!(toml::from_str::<T>("p = \"f16\"").is_err());
    }
}
