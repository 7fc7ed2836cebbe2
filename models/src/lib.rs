//! # genrelab-models: the networks, by name
//!
//! Every model takes `(batch, 1, mels, frames)` and returns logits `(batch, classes)`; loss and
//! softmax are outside. [`registry`] lists them; [`build`] makes one from its name and a
//! [`ModelSpec`] (input size and class count), which is saved beside the weights so a checkpoint
//! rebuilds its own model.

pub mod nets;
pub mod train;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use nets::{ComplexCnn, LinearModel, SimpleCnn};

/// What a model is built for: the input size and the number of classes (from the data's labels).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub name: String,
    pub mels: usize,
    pub frames: usize,
    pub classes: usize,
}

/// One entry of the registry.
pub struct ModelInfo {
    pub name: &'static str,
    pub about: &'static str,
}

/// Every model genrelab knows, by name.
pub fn registry() -> &'static [ModelInfo] {
    &[
        ModelInfo { name: "linear", about: "the study's baseline: flatten, one linear layer" },
        ModelInfo { name: "simple_cnn", about: "the study's simple CNN: 3 conv blocks 8/16/32, FC 128" },
        ModelInfo { name: "complex_cnn", about: "the study's complex CNN: 3 conv blocks 16/32/64, FC 256" },
    ]
}

/// A built model of any registered kind.
#[derive(Module, Debug)]
pub enum Model {
    Linear(LinearModel),
    SimpleCnn(SimpleCnn),
    ComplexCnn(ComplexCnn),
}

impl Model {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Model::Linear(m) => m.forward(x),
            Model::SimpleCnn(m) => m.forward(x),
            Model::ComplexCnn(m) => m.forward(x),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model `{name}` (models: {known})")]
    Unknown { name: String, known: String },
    #[error("model `{name}` needs an input of at least {min} mels x frames, got {mels} x {frames}")]
    InputTooSmall { name: String, min: String, mels: usize, frames: usize },
}

/// Trainable parameters (batch norm's running statistics are buffers and do not count), as
/// PyTorch's `sum(p.numel() for p in model.parameters() if p.requires_grad)`.
pub fn trainable_params<M: Module>(model: &M) -> usize {
    struct Count(usize);
    impl burn::module::ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if param.val().is_require_grad() {
                self.0 += param.val().shape().num_elements();
            }
        }
    }
    let mut c = Count(0);
    model.visit(&mut c);
    c.0
}

/// Trainable parameters of a model spec (built on the CPU with autodiff, never trained).
pub fn count_params(spec: &ModelSpec) -> Result<usize, ModelError> {
    Ok(trainable_params(&build(spec, &Device::flex().autodiff())?))
}

/// Build a model by name.
pub fn build(spec: &ModelSpec, device: &Device) -> Result<Model, ModelError> {
    let small = |min: usize| {
        (spec.mels < min || spec.frames < min).then(|| ModelError::InputTooSmall {
            name: spec.name.clone(),
            min: format!("{min} x {min}"),
            mels: spec.mels,
            frames: spec.frames,
        })
    };
    match spec.name.as_str() {
        "linear" => Ok(Model::Linear(LinearModel::new(spec.mels * spec.frames, spec.classes, device))),
        "simple_cnn" => small(8).map_or_else(|| Ok(Model::SimpleCnn(SimpleCnn::new([8, 16, 32], 128, spec.classes, device))), Err),
        "complex_cnn" => {
            small(8).map_or_else(|| Ok(Model::ComplexCnn(ComplexCnn::new(spec.classes, device))), Err)
        }
        other => Err(ModelError::Unknown {
            name: other.into(),
            known: registry().iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// The device to train on: CUDA when built with `cuda` and `GENRELAB_DEVICE` is not `cpu`,
/// else burn's pure-Rust `flex` CPU backend.
pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    if std::env::var("GENRELAB_DEVICE").map_or(true, |d| d != "cpu") {
        return Device::cuda(0);
    }
    Device::flex()
}
