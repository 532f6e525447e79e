//! The data wing: training and evaluation examples from the layouts data sets ship in.
//! [`imagenome`] scans the Chest ImaGenome + MIMIC-CXR layout (the phantoms are written the same
//! way); [`example`] prepares one study for the model (decode, letterbox, targets, tokens);
//! [`augment`] moves images and boxes together; [`anatomy`] turns expert masks into the anatomy
//! head's targets; [`lesions`] turns lesion masks into per-cell finding targets; [`nodules`] draws synthetic nodules into real films' lungs; [`lung_crops`] cuts JSRT lungs out at about 1 mm a pixel for the nodule model; [`sampling`] orders the batches reproducibly.
//!
//! May use: [`crate::config`] and [`crate::vocab`] (not the model).

pub mod anatomy;
pub mod augment;
pub mod error;
pub mod example;
pub mod imagenome;
pub mod lesions;
pub mod lung_crops;
pub mod masks;
pub mod nodules;
pub mod realcxr;
pub mod sampling;
pub mod sources;

pub use crate::config::NORMALISATION;
pub use error::DataError;
pub use example::{positive_counts, prepare, prepare_cached, train_tokenizer, Example, ImageCache};
pub use imagenome::{scan, Dataset, GivenLabels, Record, ScanStats, Split};
pub use sampling::{batch_indices, epoch_order, example_rng};
pub use sources::{scan_any, scan_sources, Source};
