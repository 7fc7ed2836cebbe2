//! Training throughput of each registered model on the training device (burn flex on the CPU, or
//! burn cuda when built with `--features cuda`): forward + backward + Adam step on batches of 128 random inputs (64 x 100 for the study's models, 128 x 128 crops
//! for the crop models, 77 descriptors for logreg), after warm-up steps. Prints JSON lines.
//!
//!     cargo run --example train_throughput -p genrelab-models -- [steps] [batch] [model]
//!     cargo run --example train_throughput -p genrelab-models --features cuda -- ...   (GPU)
//!
//! `bench/train_bench.py` runs this beside the same models in PyTorch.

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use genrelab_models::{Input, ModelSpec, build, registry};

fn main() {
    let steps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let device = genrelab_models::default_device().autodiff();
    let framework = if genrelab_models::uses_cuda() { "burn-cuda" } else { "burn-flex" };
    device.seed(0);
    let batch: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(128);
    let only = std::env::args().nth(3);
    for info in registry().iter().filter(|m| only.as_deref().is_none_or(|o| o == m.name)) {
        let (mels, frames) = match info.input {
            Input::Clip => (64, 100),
            Input::Crops => (128, 128),
            Input::Stats => (1, 77),
        };
        let spec = ModelSpec { name: info.name.into(), mels, frames, classes: 10 };
        let mut model = build(&spec, &device).expect("registered model");
        let mut optim = AdamConfig::new().init();
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let x = Tensor::<4>::random([batch, 1, mels, frames], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new((0..batch as i64).map(|i| i % 10).collect::<Vec<_>>(), [batch]), &device);
        let mut step = |model: Model| -> Model {
            let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
            let _ = loss.clone().into_scalar::<f32>();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            optim.step(1e-4, model, grads)
        };
        for _ in 0..2 {
            model = step(model);
        }
        let start = Instant::now();
        for _ in 0..steps {
            model = step(model);
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{{\"framework\": \"{framework}\", \"model\": \"{}\", \"input\": \"{mels}x{frames}\", \"batch\": {batch}, \"steps\": {steps}, \"ms_per_sample\": {:.4}, \"samples_per_s\": {:.1}}}",
            info.name,
            1000.0 * secs / (steps * batch) as f64,
            (steps * batch) as f64 / secs
        );
    }
}

use genrelab_models::Model;
