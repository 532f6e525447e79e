//! The model wing: the ASG model in Candle ([`asg`]) with its anatomy mask head ([`anatomy`]),
//! its image encoders ([`backbones`]), the
//! BERT text encoder ([`bert`]), the layers they share ([`layers`]) with the fused CPU
//! convolution ([`conv`]), batch norm + ReLU ([`bn_relu`]), layer norm and softmax ([`transformer_ops`])
//! and what those share ([`cpu_ops`]: Candle's worker pool, a checked matrix product), the losses
//! with their names
//! ([`losses`]), mixed precision ([`precision`]) and the seeded parameter initialisation ([`init`]);
//! beside it, the lung-crop nodule CNN ([`nodule_net`]).
//!
//! May use: [`crate::config`] and [`crate::vocab`]. Nothing here reads data, trains or exports.

pub mod anatomy;
pub mod asg;
pub mod backbones;
pub mod bert;
pub mod bn_relu;
pub mod conv;
pub(crate) mod cpu_ops;
pub mod init;
pub mod layers;
pub mod losses;
pub mod nodule_net;
pub mod precision;
pub mod transformer_ops;

pub use crate::vocab::{FINDINGS, REGIONS};
pub use asg::{new_model, parameter_count, AsgModel, ImageOutput, TextOutput};
pub use cpu_ops::one_cpu_pool;
