//! Training throughput of each registered model on the training device (libtorch on the CPU, or
//! on CUDA GPU 0 when libtorch has CUDA and one is there; `GENRELAB_DEVICE` picks): the training
//! loop's own step ([`genrelab_models::train::train_step`]: forward, cross-entropy, backward,
//! Adam) on batches of 128 random inputs (64 x 100 for the study's models, 128 x 128 crops for the
//! crop models, 77 descriptors for logreg), after warm-up steps. Prints JSON lines.
//!
//!     cargo run --example train_throughput -p genrelab-models -- [steps] [batch] [model] [threads]
//!
//! `bench/train_bench.py` runs this beside the same models in PyTorch.

use std::time::Instant;

use genrelab_models::train::{Adam, train_step};
use genrelab_models::{Input, ModelSpec, build, registry};
use tch::{Kind, Tensor};

fn main() {
    genrelab_models::keep_freed_memory();
    let arg = |i: usize| std::env::args().nth(i);
    let steps: usize = arg(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let batch: usize = arg(2).and_then(|s| s.parse().ok()).unwrap_or(128);
    let only = arg(3).filter(|s| s != "all");
    if let Some(threads) = arg(4).and_then(|s| s.parse().ok()) {
        genrelab_models::use_threads(threads);
    }
    let device = genrelab_models::default_device().unwrap_or_else(|e| panic!("{e}"));
    let framework = if device.is_cuda() { "genrelab-tch-cuda" } else { "genrelab-tch-cpu" };
    tch::manual_seed(0);
    for info in registry().iter().filter(|m| only.as_deref().is_none_or(|o| o == m.name)) {
        let (mels, frames) = match info.input {
            Input::Clip => (64, 100),
            Input::Crops => (128, 128),
            Input::Stats => (1, 77),
        };
        let spec = ModelSpec { name: info.name.into(), mels, frames, classes: 10 };
        let model = build(&spec, device).expect("registered model");
        let mut optim = Adam::new(&model, 0.0);
        let x = Tensor::randn([batch as i64, 1, mels as i64, frames as i64], (Kind::Float, device));
        let y = (Tensor::arange(batch as i64, (Kind::Int64, device))).remainder(10);
        let mut step = || {
            let (loss, _) = train_step(&model, &mut optim, &x, &y, None, 1e-4);
            assert!(loss.is_finite());
        };
        for _ in 0..2 {
            step();
        }
        let start = Instant::now();
        for _ in 0..steps {
            step();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{{\"framework\": \"{framework}\", \"model\": \"{}\", \"input\": \"{mels}x{frames}\", \"batch\": {batch}, \"steps\": {steps}, \"threads\": {}, \"ms_per_sample\": {:.4}, \"samples_per_s\": {:.1}}}",
            info.name,
            tch::get_num_threads(),
            1000.0 * secs / (steps * batch) as f64,
            (steps * batch) as f64 / secs
        );
    }
}
