//! The export wing: our ONNX writer ([`onnx`]), the whole ASG model as `image.onnx` and
//! `text.onnx` ([`asg`]), the contract of those files' inputs and outputs with the Candle reference
//! outputs ([`io`]), the bundle folder with its manifest ([`bundle`]), an exported bundle run back
//! by tract ([`runtime`]), the lung-crop nodule model as `nodule.onnx` ([`nodule`]), and the
//! thin-slice test model ([`thin`]).
//!
//! May use: [`crate::config`], [`crate::vocab`] and [`crate::model`] (not training or evaluation:
//! the thresholds a bundle stores are chosen by [`crate::eval`] and handed in).

pub mod asg;
pub mod bundle;
pub mod ensemble;
pub mod io;
pub mod nodule;
pub mod onnx;
pub mod runtime;
pub mod thin;

pub use asg::{image_onnx, text_onnx};
pub use bundle::{write_asg_bundle, write_atomically, Thresholds};
pub use io::{
    image_outputs, text_inputs, text_outputs, ImagePrediction, TextInputs, ANATOMY_OUTPUT,
    IMAGE_OUTPUTS, TEXT_OUTPUTS,
};
pub use onnx::ExportError;
pub use runtime::{BundleError, OnnxBundle};
