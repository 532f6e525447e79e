//! asg-trainer: the Candle side of ASG, in wings that depend on each other one way only
//! (bottom to top; see `trainer/README.md`):
//!
//! - [`vocab`], [`config`]: the vocabulary sizes and the run configuration (TOML);
//! - [`model`]: the ASG model, its encoders, shared layers and losses;
//! - [`data`]: data sets in the layouts they ship in, examples, augmentation, batch order;
//! - [`train`]: the training loop, AdamW, checkpoints, the loss plot (`asg-train fit`);
//! - [`export`]: the ONNX writer, the model's export, the bundle and its tract runtime
//!   (`asg-train export`);
//! - [`eval`]: evaluation, metrics, thresholds, the ablation (`asg-train eval`, `ablate`).
//!
//! Binary: `asg-train` (`src/main.rs`, a thin command layer over these).

// One exception, reviewed: the call into `gemm` in `model::cpu_ops::matmul_into` (its bounds are
// checked before the call). Everything else stays safe.
#![deny(unsafe_code)]

pub mod config;
pub mod data;
pub mod eval;
pub mod export;
pub mod model;
pub mod train;
pub mod vocab;
