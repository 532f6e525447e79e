//! asg-trainer: the Candle side of ASG: the data set loader (Chest ImaGenome layout), the ASG
//! model and its losses, training (`asg-train fit`), and the ONNX export the plugin runs.
//! Binary: `asg-train`.

#![forbid(unsafe_code)]

pub mod ablate;
pub mod asg;
pub mod backbones;
pub mod bert;
pub mod bundle;
pub mod config;
pub mod data;
pub mod eval;
pub mod export;
pub mod init;
pub mod losses;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod plot;
pub mod train;
