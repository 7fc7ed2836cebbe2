//! # genrelab-models: the networks, by name
//!
//! Every model takes `(batch, 1, mels, frames)` and returns logits `(batch, classes)`; loss and
//! softmax are outside. [`registry`] lists them; [`build`] makes one from its name and a
//! [`ModelSpec`] (input size and class count), which is saved beside the weights so a checkpoint
//! rebuilds its own model.

pub mod nets;
pub mod train;

use serde::{Deserialize, Serialize};
use tch::{Tensor, nn};

pub use tch::Device;

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

/// A built model of any registered kind: its network and the variables it owns (weights,
/// biases and batch norm's running statistics) in one `tch` variable store on one device.
pub struct Model {
    vs: nn::VarStore,
    net: Arch,
}

enum Arch {
    Linear(LinearModel),
    SimpleCnn(SimpleCnn),
    ComplexCnn(ComplexCnn),
    ResNet(Box<ResNet>),
    ShortChunkCnn(ShortChunkCnn),
}

impl Model {
    /// Logits for `x` (`batch x 1 x mels x frames`); `train` turns dropout on and makes batch
    /// norm use (and update) the batch's statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match &self.net {
            Arch::Linear(m) => m.forward(x),
            Arch::SimpleCnn(m) => m.forward_t(x, train),
            Arch::ComplexCnn(m) => m.forward_t(x, train),
            Arch::ResNet(m) => m.forward_t(x, train),
            Arch::ShortChunkCnn(m) => m.forward_t(x, train),
        }
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Every variable by name (trainable or not), sorted by name: what a weights file holds.
    pub fn variables(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The trainable variables by name, sorted by name (batch norm's running statistics are
    /// buffers and not among them).
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        self.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect()
    }

    /// A copy of every variable's value, on the CPU (for a weights file written later).
    pub fn snapshot(&self) -> Vec<(String, Tensor)> {
        tch::no_grad(|| self.variables().into_iter().map(|(n, t)| (n, t.to_device(Device::Cpu).copy())).collect())
    }

    /// Write the weights as safetensors (from the CPU, so a file written on a GPU loads anywhere).
    pub fn save(&self, path: &std::path::Path) -> Result<(), tch::TchError> {
        save_tensors(&self.snapshot(), path)
    }

    /// Read weights written by [`Model::save`] (on any device) into this model.
    pub fn load(&mut self, path: &std::path::Path) -> Result<(), tch::TchError> {
        let file: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(path)?.into_iter().collect();
        tch::no_grad(|| {
            for (name, mut var) in self.variables() {
                let src = file.get(&name).ok_or_else(|| tch::TchError::TensorNameNotFound(name.clone(), path.display().to_string()))?;
                if src.size() != var.size() {
                    return Err(tch::TchError::Shape(format!("{name}: {:?} in the file, {:?} in the model", src.size(), var.size())));
                }
                var.f_copy_(src)?;
            }
            Ok(())
        })
    }
}

/// Write named tensors as one safetensors file.
pub fn save_tensors(tensors: &[(String, Tensor)], path: &std::path::Path) -> Result<(), tch::TchError> {
    let cpu: Vec<(&str, Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t.to_device(Device::Cpu).contiguous())).collect();
    Tensor::write_safetensors(&cpu, path)
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
pub fn trainable_params(model: &Model) -> usize {
    model.trainable().iter().map(|(_, t)| t.numel()).sum()
}

/// Trainable parameters of a model spec (built on the CPU, never trained).
pub fn count_params(spec: &ModelSpec) -> Result<usize, ModelError> {
    Ok(trainable_params(&build(spec, Device::Cpu)?))
}

/// Build a model by name.
pub fn build(spec: &ModelSpec, device: Device) -> Result<Model, ModelError> {
    let vs = nn::VarStore::new(device);
    let p = &vs.root();
    let small = |min: usize| {
        (spec.mels < min || spec.frames < min).then(|| ModelError::InputTooSmall {
            name: spec.name.clone(),
            min: format!("{min} x {min}"),
            mels: spec.mels,
            frames: spec.frames,
        })
    };
    let classes = spec.classes as i64;
    let net = match spec.name.as_str() {
        "linear" | "logreg" => Arch::Linear(LinearModel::new(p, (spec.mels * spec.frames) as i64, classes)),
        "simple_cnn" | "complex_cnn" => match small(8) {
            Some(e) => return Err(e),
            None if spec.name == "simple_cnn" => Arch::SimpleCnn(SimpleCnn::new(p, [8, 16, 32], 128, classes)),
            None => Arch::ComplexCnn(ComplexCnn::new(p, classes)),
        },
        "resnet" | "resnet_wide" => match small(16) {
            Some(e) => return Err(e),
            None if spec.name == "resnet" => Arch::ResNet(Box::new(ResNet::new(p, [16, 32, 64, 128], classes))),
            None => Arch::ResNet(Box::new(ResNet::new(p, [32, 64, 128, 256], classes))),
        },
        "short_chunk_cnn" => match small(32) {
            Some(e) => return Err(e),
            None => Arch::ShortChunkCnn(ShortChunkCnn::new(p, [16, 16, 32, 32, 64], 64, classes)),
        },
        other => return Err(info(other).err().expect("every registered model is built above")),
    };
    if device == Device::Cpu {
        channels_last(&vs);
    }
    Ok(Model { vs, net })
}

/// Store the convolutions' weights channels-last (NHWC in memory, the same NCHW shape), so that
/// libtorch's CPU kernels run every convolution, batch norm and pooling of the network in that
/// layout: the same arithmetic up to float rounding, without converting each activation to
/// oneDNN's layout and back. Measured with the `train_throughput` example on a 2-core AMD EPYC
/// (training steps, batches of 128, samples per second in the default layout -> channels-last):
/// simple CNN 1,595 -> 1,971, complex CNN 841 -> 1,386, resnet 392 -> 570, resnet_wide 144 -> 182,
/// short-chunk CNN 431 -> 899; PyTorch gains the same from `model.to(memory_format=
/// torch.channels_last)`. Weights files are written contiguous (NCHW) all the same.
fn channels_last(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut t) in vs.variables() {
            if let [o, i, h, w] = t.size()[..] {
                // Channels-last strides, set explicitly: a permuted copy keeps the default strides
                // when a dimension is 1 (the first convolution's single input channel), and
                // libtorch then keeps that layer, and what follows it, in the default layout.
                let mut nhwc = Tensor::empty_strided([o, i, h, w], [i * h * w, 1, w * i, i], (t.kind(), t.device()));
                nhwc.copy_(&t);
                t.set_data(&nhwc);
            }
        }
    });
}

/// The device to train and predict on: CUDA GPU 0 when libtorch was built with CUDA, a GPU is
/// there and `GENRELAB_DEVICE` is not `cpu`; else the CPU. `GENRELAB_DEVICE=cuda` insists on the
/// GPU: without one it is an error ([`DeviceError`]), not a silent fallback.
pub fn default_device() -> Result<Device, DeviceError> {
    match std::env::var("GENRELAB_DEVICE").as_deref() {
        Ok("cpu") => Ok(Device::Cpu),
        Ok("cuda") if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        Ok("cuda") => Err(DeviceError::NoCuda),
        Ok("") | Err(_) => Ok(if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu }),
        Ok(other) => Err(DeviceError::Unknown(other.to_string())),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "GENRELAB_DEVICE=cuda, but libtorch sees no CUDA GPU (is libtorch a CUDA build? tools/libtorch.sh with GENRELAB_TORCH=cuda installs one)"
    )]
    NoCuda,
    #[error("GENRELAB_DEVICE must be `cpu` or `cuda`, not `{0}`")]
    Unknown(String),
}

/// Size the thread pools: rayon's global pool (the stages' parallel loops) and libtorch's
/// intra-op pool (training and prediction on the CPU), `threads` each; 0 = their defaults
/// (`RAYON_NUM_THREADS`, else every core; libtorch: every physical core, or `OMP_NUM_THREADS`).
/// Call it before any parallel work: a rayon pool already running keeps its size (a warning
/// says so).
pub fn use_threads(threads: usize) {
    if threads == 0 {
        return;
    }
    tch::set_num_threads(threads as i32);
    if rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().is_err() && rayon::current_num_threads() != threads {
        tracing::warn!(threads, running = rayon::current_num_threads(), "the thread pool was already running: `threads` not applied");
    }
}

/// Make glibc's allocator keep the memory a training step frees for the next step, instead of
/// returning it to the kernel and faulting fresh zeroed pages in again (every activation of a
/// CNN's batch is megabytes). Measured on the study's complex CNN (2-core Xeon, batches of 128):
/// the step's backward pass 106 - 160 ms with glibc's defaults, 68 - 75 ms with this, for
/// genrelab and for PyTorch alike (`MALLOC_MMAP_THRESHOLD_` and `MALLOC_TRIM_THRESHOLD_` do the
/// same from the environment; bench/results/train.md). The process keeps its peak memory until it
/// exits. Call it first in `main`; elsewhere than glibc it does nothing.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only sets the allocator's parameters; 1 GiB for both: allocations
        // below it come from the heap, and the heap is trimmed only above it.
        let ok = unsafe { mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1 };
        if !ok {
            tracing::debug!("mallopt refused the allocator settings; glibc's defaults stay");
        }
    }
}

/// Whether [`default_device`] is the GPU.
pub fn uses_cuda() -> bool {
    matches!(default_device(), Ok(Device::Cuda(_)))
}

/// The libtorch version genrelab is built against (tch 0.26).
pub const LIBTORCH_VERSION: &str = "2.13.0";

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

/// What [`default_device`] runs on, in words, for the cost figures of a report: the engine and
/// the device; on the GPU its model and cuDNN, on the CPU the processor (Linux: `/proc/cpuinfo`)
/// and the threads libtorch trains on.
pub fn device_description() -> String {
    let engine = format!("libtorch {LIBTORCH_VERSION}");
    if uses_cuda() {
        let cudnn = if tch::Cuda::cudnn_is_available() { ", cuDNN" } else { "" };
        return match gpu_model() {
            Some(model) => format!("CUDA GPU 0, {model} ({engine}{cudnn})"),
            None => format!("CUDA GPU 0 ({engine}{cudnn})"),
        };
    }
    let cores = tch::get_num_threads().max(1);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string()));
    let threads = if cores == 1 { "1 thread".to_string() } else { format!("{cores} threads") };
    match cpu {
        Some(cpu) => format!("CPU ({engine}), {threads}, {cpu}"),
        None => format!("CPU ({engine}), {threads}"),
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
    fn the_cpu_is_described_with_the_engine_and_threads() {
        if !uses_cuda() {
            let d = device_description();
            assert!(d.starts_with(&format!("CPU (libtorch {LIBTORCH_VERSION}), ")), "{d}");
            assert!(d.contains(" thread"), "{d}");
        }
    }
}
