//! The model wing: the ASG model in Candle ([`asg`]) with its anatomy mask head ([`anatomy`]),
//! its image encoders ([`backbones`]), the
//! BERT text encoder ([`bert`]), the layers they share ([`layers`]) with the CPU convolution's
//! fused im2col ([`im2col`]) and batch norm + ReLU ([`bn_relu`]), the losses with their names
//! ([`losses`]) and the seeded parameter initialisation ([`init`]).
//!
//! May use: [`crate::config`] and [`crate::vocab`]. Nothing here reads data, trains or exports.

pub mod anatomy;
pub mod asg;
pub mod backbones;
pub mod bert;
pub mod bn_relu;
pub mod im2col;
pub mod init;
pub mod layers;
pub mod losses;

pub use crate::vocab::{FINDINGS, REGIONS};
pub use asg::{new_model, parameter_count, AsgModel, ImageOutput, TextOutput};
