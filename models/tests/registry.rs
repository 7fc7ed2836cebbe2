//! timm-style registry test: every model builds, has the study's parameter count, runs forward
//! with the right shape, and every parameter gets a gradient.

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use genrelab_models::{ModelSpec, build, count_params, registry};

fn spec(name: &str) -> ModelSpec {
    ModelSpec { name: name.into(), mels: 64, frames: 100, classes: 10 }
}

#[test]
fn parameter_counts_are_the_studys() {
    let device = Device::flex();
    for (name, count) in [("linear", 64_010), ("simple_cnn", 15_610), ("complex_cnn", 59_114)] {
        assert_eq!(count_params(&spec(name)).unwrap(), count, "{name}");
        // burn's num_params also counts batch norm's running statistics (2 x channels per norm).
        let buffers = match name {
            "simple_cnn" => 2 * (8 + 16 + 32),
            "complex_cnn" => 2 * (16 + 32 + 64),
            _ => 0,
        };
        assert_eq!(build(&spec(name), &device).unwrap().num_params(), count + buffers, "{name}");
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

struct GradCheck<'a> {
    grads: &'a burn::tensor::Gradients,
    missing: Vec<String>,
    checked: usize,
    path: Vec<String>,
}

impl ModuleVisitor for GradCheck<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !param.val().is_require_grad() {
            return; // batch norm's running statistics: buffers, not trained by gradients
        }
        self.checked += 1;
        match param.val().grad(self.grads) {
            Some(g) if g.clone().abs().sum().into_scalar::<f32>() > 0.0 => {}
            _ => self.missing.push(self.path.join(".")),
        }
    }
}

#[test]
fn every_model_runs_forward_and_backward_with_gradients_everywhere() {
    let device = Device::flex().autodiff();
    device.seed(1);
    for info in registry() {
        let model = build(&spec(info.name), &device).unwrap();
        let x = Tensor::<4>::random([4, 1, 64, 100], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let logits = model.forward(x);
        assert_eq!(logits.dims(), [4, 10], "{}", info.name);
        let grads = logits.powf_scalar(2.0).mean().backward();
        let mut check = GradCheck { grads: &grads, missing: vec![], checked: 0, path: vec![] };
        model.visit(&mut check);
        assert!(check.checked >= 2, "{}: visited {} parameters", info.name, check.checked);
        assert!(check.missing.is_empty(), "{}: no gradient for {:?}", info.name, check.missing);
    }
}

#[test]
fn unknown_names_and_tiny_inputs_are_clear_errors() {
    let device = Device::flex();
    let err = build(&spec("resnet9000"), &device).unwrap_err().to_string();
    assert!(err.contains("resnet9000") && err.contains("complex_cnn"), "{err}");
    let tiny = ModelSpec { name: "simple_cnn".into(), mels: 4, frames: 100, classes: 3 };
    assert!(build(&tiny, &device).unwrap_err().to_string().contains("at least"));
}
