//! timm-style registry test: every model builds, has the study's parameter count, runs forward
//! with the right shape, and every parameter gets a gradient.

use genrelab_models::{Device, ModelSpec, build, count_params, registry};
use tch::{Kind, Tensor};

fn spec(name: &str) -> ModelSpec {
    ModelSpec { name: name.into(), mels: 64, frames: 100, classes: 10 }
}

#[test]
fn parameter_counts_are_the_studys() {
    for (name, count) in [("linear", 64_010), ("simple_cnn", 15_610), ("complex_cnn", 59_114)] {
        assert_eq!(count_params(&spec(name)).unwrap(), count, "{name}");
        // Batch norm's running statistics (2 x channels per norm) are variables, not trained.
        let buffers = match name {
            "simple_cnn" => 2 * (8 + 16 + 32),
            "complex_cnn" => 2 * (16 + 32 + 64),
            _ => 0,
        };
        let all: i64 = build(&spec(name), Device::Cpu).unwrap().variables().iter().map(|(_, t)| t.numel() as i64).sum();
        assert_eq!(all as usize, count + buffers, "{name}");
    }
    // The residual CNNs, counted by hand for widths [a, b, c, d] and 10 classes: stem 9a + 2a;
    // block a->a: 2 x (9a^2 + 2a); block x->y (stride 2): 9xy + 9y^2 + xy (1x1 shortcut) + 3 x 2y;
    // fc 10d + 10.
    let resnet = |[a, b, c, d]: [usize; 4]| {
        let down = |x: usize, y: usize| 9 * x * y + 9 * y * y + x * y + 6 * y;
        11 * a + 2 * (9 * a * a + 2 * a) + down(a, b) + down(b, c) + down(c, d) + 10 * d + 10
    };
    assert_eq!(resnet([16, 32, 64, 128]), 308_538, "the figure in experiments/accuracy.md");
    for (name, widths) in [("resnet", [16, 32, 64, 128]), ("resnet_wide", [32, 64, 128, 256])] {
        assert_eq!(count_params(&spec(name)).unwrap(), resnet(widths), "{name}");
    }
}

#[test]
fn every_model_runs_forward_and_backward_with_gradients_everywhere() {
    tch::manual_seed(1);
    for info in registry() {
        let model = build(&spec(info.name), Device::Cpu).unwrap();
        let x = Tensor::randn([4, 1, 64, 100], (Kind::Float, Device::Cpu));
        let logits = model.forward_t(&x, true);
        assert_eq!(logits.size(), [4, 10], "{}", info.name);
        logits.pow_tensor_scalar(2).mean(Kind::Float).backward();
        let trainable = model.trainable();
        assert!(trainable.len() >= 2, "{}: {} trainable variables", info.name, trainable.len());
        let missing: Vec<&str> = trainable
            .iter()
            .filter(|(_, t)| {
                let g = t.grad();
                !g.defined() || g.abs().sum(Kind::Float).double_value(&[]) <= 0.0
            })
            .map(|(n, _)| n.as_str())
            .collect();
        assert!(missing.is_empty(), "{}: no gradient for {missing:?}", info.name);
        // Batch norm's running statistics are variables without gradients.
        for (name, t) in model.variables() {
            assert_eq!(t.requires_grad(), !name.ends_with("running_mean") && !name.ends_with("running_var"), "{}: {name}", info.name);
        }
    }
}

#[test]
fn unknown_names_and_tiny_inputs_are_clear_errors() {
    let err = build(&spec("resnet9000"), Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("resnet9000") && err.contains("complex_cnn"), "{err}");
    let tiny = ModelSpec { name: "simple_cnn".into(), mels: 4, frames: 100, classes: 3 };
    assert!(build(&tiny, Device::Cpu).err().unwrap().to_string().contains("at least"));
}
