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

pub use nets::{ComplexCnn, LinearModel, ResNet, ShortChunkCnn, SimpleCnn};

/// What a model is built for: the input size and the number of classes (from the data's labels).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub name: String,
    pub mels: usize,
    pub frames: usize,
    pub classes: usize,
}

/// What a model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// The whole clip's resized log-mel (`features`, the study's 64 x 100).
    Clip,
    /// Random crops of the full-resolution log-mel (`features_full`) in training; every window
    /// of the clip, probabilities averaged, at test time.
    Crops,
    /// The clip's hand-crafted statistics (`descriptors`), standardised.
    Stats,
}

/// One entry of the registry.
pub struct ModelInfo {
    pub name: &'static str,
    pub about: &'static str,
    pub input: Input,
}

/// The registry entry of a model name.
pub fn info(name: &str) -> Result<&'static ModelInfo, ModelError> {
    registry()
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| ModelError::Unknown { name: name.into(), known: registry().iter().map(|m| m.name).collect::<Vec<_>>().join(", ") })
}

/// Every model genrelab knows, by name.
pub fn registry() -> &'static [ModelInfo] {
    &[
        ModelInfo { name: "linear", about: "the study's baseline: flatten, one linear layer", input: Input::Clip },
        ModelInfo { name: "simple_cnn", about: "the study's simple CNN: 3 conv blocks 8/16/32, FC 128", input: Input::Clip },
        ModelInfo { name: "complex_cnn", about: "the study's complex CNN: 3 conv blocks 16/32/64, FC 256", input: Input::Clip },
        ModelInfo {
            name: "resnet",
            about: "residual CNN (stem + 4 basic blocks 16/32/64/128) on random crops, clip = mean over windows",
            input: Input::Crops,
        },
        ModelInfo {
            name: "resnet_wide",
            about: "the residual CNN at twice the width (basic blocks 32/64/128/256, 4x the parameters) on random crops",
            input: Input::Crops,
        },
        ModelInfo {
            name: "short_chunk_cnn",
            about: "short-chunk CNN (Won et al. 2020; 5 conv blocks, global max pool) on random crops",
            input: Input::Crops,
        },
        ModelInfo {
            name: "logreg",
            about: "classical baseline: multinomial logistic regression on hand-crafted statistics",
            input: Input::Stats,
        },
    ]
}

/// A built model of any registered kind. Built once per run and never moved in a hot loop, so
/// the size difference between its variants costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Model {
    Linear(LinearModel),
    SimpleCnn(SimpleCnn),
    ComplexCnn(ComplexCnn),
    ResNet(ResNet),
    ShortChunkCnn(ShortChunkCnn),
}

impl Model {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Model::Linear(m) => m.forward(x),
            Model::SimpleCnn(m) => m.forward(x),
            Model::ComplexCnn(m) => m.forward(x),
            Model::ResNet(m) => m.forward(x),
            Model::ShortChunkCnn(m) => m.forward(x),
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
        "linear" | "logreg" => Ok(Model::Linear(LinearModel::new(spec.mels * spec.frames, spec.classes, device))),
        "simple_cnn" => small(8).map_or_else(|| Ok(Model::SimpleCnn(SimpleCnn::new([8, 16, 32], 128, spec.classes, device))), Err),
        "complex_cnn" => small(8).map_or_else(|| Ok(Model::ComplexCnn(ComplexCnn::new(spec.classes, device))), Err),
        "resnet" => small(16).map_or_else(|| Ok(Model::ResNet(ResNet::new([16, 32, 64, 128], spec.classes, device))), Err),
        "resnet_wide" => small(16).map_or_else(|| Ok(Model::ResNet(ResNet::new([32, 64, 128, 256], spec.classes, device))), Err),
        "short_chunk_cnn" => {
            small(32).map_or_else(|| Ok(Model::ShortChunkCnn(ShortChunkCnn::new([16, 16, 32, 32, 64], 64, spec.classes, device))), Err)
        }
        other => Err(info(other).err().expect("every registered model is built above")),
    }
}

/// The device to train on: CUDA when built with `cuda`, a CUDA driver is installed and
/// `GENRELAB_DEVICE` is not `cpu` (`GENRELAB_DEVICE=cuda` insists on the GPU), else burn's
/// pure-Rust `flex` CPU backend.
pub fn default_device() -> Device {
    if uses_cuda() {
        #[cfg(feature = "cuda")]
        return Device::cuda(0);
    }
    Device::flex()
}

/// Size rayon's global pool, on which burn flex runs its kernels (and the stages their parallel
/// loops): `threads` workers, 0 = rayon's default (`RAYON_NUM_THREADS`, else every core). Call it
/// before any parallel work: a pool already running keeps its size, and a warning says so.
pub fn use_threads(threads: usize) {
    if threads == 0 {
        return;
    }
    if rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().is_err() && rayon::current_num_threads() != threads {
        tracing::warn!(threads, running = rayon::current_num_threads(), "the thread pool was already running: `threads` not applied");
    }
}

/// Whether [`default_device`] is the GPU (see there).
pub fn uses_cuda() -> bool {
    if !cfg!(feature = "cuda") {
        return false;
    }
    match std::env::var("GENRELAB_DEVICE").as_deref() {
        Ok("cpu") => false,
        Ok("cuda") => true,
        _ => {
            static PRESENT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            *PRESENT.get_or_init(|| {
                let present = cuda_driver_present();
                if !present {
                    tracing::warn!(
                        "built with CUDA, but no CUDA driver (libcuda) was found: using the CPU (GENRELAB_DEVICE=cuda insists on the GPU)"
                    );
                }
                present
            })
        }
    }
}

/// The NVIDIA GPU model as the Linux driver reports it (`/proc/driver/nvidia/gpus/*/information`,
/// "Model: NVIDIA H200"), for the cost figures: the model when every GPU is that model, else the
/// list (CUDA's device 0 need not be the first listed); `None` elsewhere.
fn gpu_model() -> Option<String> {
    let mut models: Vec<String> = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .ok()?
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("information")).ok())
        .filter_map(|info| gpu_model_line(&info))
        .collect();
    models.sort();
    models.dedup();
    match models.len() {
        0 => None,
        1 => models.pop(),
        _ => Some(format!("one of {}", models.join(", "))),
    }
}

/// The `Model:` line of the driver's `information` file.
fn gpu_model_line(info: &str) -> Option<String> {
    info.lines().find_map(|l| l.strip_prefix("Model:")).map(|m| m.trim().to_string()).filter(|m| !m.is_empty())
}

/// Whether the CUDA driver library loads (what burn's CUDA backend opens first); without it a
/// CUDA build would stop with a panic on its first tensor.
#[cfg(all(feature = "cuda", target_os = "linux"))]
fn cuda_driver_present() -> bool {
    use std::ffi::{CString, c_char, c_int, c_void};
    unsafe extern "C" {
        fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    }
    const RTLD_LAZY: c_int = 1;
    ["libcuda.so.1", "libcuda.so"].iter().any(|name| {
        let name = CString::new(*name).expect("no NUL in the name");
        // SAFETY: dlopen takes a NUL-terminated path; the handle is kept (burn opens it again).
        !unsafe { dlopen(name.as_ptr(), RTLD_LAZY) }.is_null()
    })
}

#[cfg(not(all(feature = "cuda", target_os = "linux")))]
fn cuda_driver_present() -> bool {
    cfg!(feature = "cuda")
}

/// What [`default_device`] runs on, in words, for the cost figures of a report: the backend and,
/// on the CPU, the processor (Linux: `/proc/cpuinfo`) and the cores burn's thread pool uses.
pub fn device_description() -> String {
    if uses_cuda() {
        return match gpu_model() {
            Some(model) => format!("CUDA GPU 0, {model} (burn cuda)"),
            None => "CUDA GPU 0 (burn cuda)".into(),
        };
    }
    // burn flex's kernels run on rayon's global pool (`use_threads`).
    let cores = rayon::current_num_threads();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string()));
    let threads = if cores == 1 { "1 thread".to_string() } else { format!("{cores} threads") };
    match cpu {
        Some(cpu) => format!("CPU (burn flex), {threads}, {cpu}"),
        None => format!("CPU (burn flex), {threads}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_model_is_read_from_the_drivers_information_file() {
        // As /proc/driver/nvidia/gpus/<bus id>/information reads on an H200 (driver 580).
        let info = "Model: \t\t NVIDIA H200\nIRQ:   \t\t 0\nGPU UUID: \t GPU-182f9ad1-ac8b-4eac-ced3-b28e0ea145e0\nVideo BIOS: \t 96.00.af.00.01\n";
        assert_eq!(gpu_model_line(info).as_deref(), Some("NVIDIA H200"));
        assert_eq!(gpu_model_line("Model: \t \nIRQ: 0\n"), None);
        assert_eq!(gpu_model_line("IRQ: 0\n"), None);
    }

    #[test]
    fn a_cpu_build_describes_the_cpu() {
        if !cfg!(feature = "cuda") {
            assert!(device_description().starts_with("CPU (burn flex), "), "{}", device_description());
        }
    }
}
