//! The evaluation wing (`asg-train eval`): the paper's protocols and the viewer's questions, measured on a split of a
//! data set in the Chest ImaGenome layout, for a Candle run or an exported bundle (run by tract,
//! so the numbers are those of what the plugin runs).
//!
//! Labels come from the reports (as in training: the parser's tags, uncertain counted as
//! positive), boxes from the scene graphs. Metrics (see [`metrics`]):
//! - image-level AUROC per finding (tag decoder logits) and region-level AUROC per finding
//!   (region logits over the predicted boxes, pooled over every region with a true box);
//! - anatomy box IoU per region;
//! - the pointing game: the peak of a finding's attention map (and, separately, of its
//!   region-head map) lies in a true box of a region
//!   whose report sentence has the finding;
//! - image <-> report retrieval R@1/5/10 (identical reports count as one);
//! - zero-shot AUROC: similarity to "there is {finding}" minus similarity to "no {finding}";
//! - linear probing: logistic regression on frozen pooled features trained on 1%, 10% and 100%
//!   of the training split (several seeds at 1% and 10%), AUROC on the evaluated split.

//!
//! [`models`] wraps a Candle run or an exported bundle behind one trait, [`evaluate`] measures,
//! [`thresholds`] chooses the bundle's thresholds on a validation split, [`ablate`] runs the
//! ablation table, [`nodule_eval`] measures the lung-crop nodule model on held-out JSRT films.
//!
//! May use every wing below it: [`crate::config`], [`crate::vocab`], [`crate::model`],
//! [`crate::data`], [`crate::train`] (to load runs and, for the ablation, to train) and
//! [`crate::export`] (the bundle's contract and its tract runtime).

pub mod ablate;
pub mod error;
pub mod evaluate;
pub mod metrics;
pub mod models;
pub mod nodule_eval;
pub mod thresholds;

pub use crate::export::OnnxBundle;
pub use crate::export::Thresholds;
pub use error::EvalError;
pub use evaluate::{
    acquisition_stress, evaluate, EvalOptions, EvalReport, PerName, ProbeResult, STRESS_COPIES,
};
pub use models::{load_model, CandleModel, EvalModel};
pub use thresholds::{
    best_f1_threshold, choose_thresholds, precision_threshold, recall_threshold, retuned_manifest,
};
