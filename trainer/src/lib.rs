//! asg-trainer: the Candle side of ASG: models, (soon) data sets, losses and training, and the ONNX
//! export the plugin runs. Binary: `asg-train`.

#![forbid(unsafe_code)]

pub mod bundle;
pub mod model;
pub mod onnx;
