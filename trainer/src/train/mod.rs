//! The training wing (`asg-train fit`): batches, the weighted ASG losses, AdamW with warm-up + cosine and gradient
//! clipping, checkpoints (safetensors) that resume exactly, a JSONL log, a progress bar and a
//! loss-curve PNG.
//!
//! [`batch`] collates examples and computes the weighted losses, [`optim`] holds AdamW and the
//! schedule, [`ema`] the weights' moving average, [`checkpoint`] saves and loads runs, [`prefetch`] prepares batches on worker threads,
//! [`run`] is the loop, [`plot`] draws the loss curve; [`nodule_fit`] trains the lung-crop nodule
//! model (`asg-train nodules`).
//!
//! May use: [`crate::config`], [`crate::vocab`], [`crate::model`] and [`crate::data`].

pub mod batch;
pub mod checkpoint;
pub mod ema;
pub mod error;
pub mod nodule_fit;
pub mod optim;
pub mod plot;
pub mod prefetch;
pub mod run;

pub use crate::model::losses::LOSS_NAMES;
pub use batch::{collate, compute_losses, Batch, Losses};
pub use checkpoint::{load_run, run_files, LoadedRun};
pub use error::TrainError;
pub use optim::{learning_rate, AdamW};
pub use run::{fit, RunOptions, RunSummary, StepReport};
