//! The networks, in libtorch through tch, initialised as PyTorch initialises its layers.
//!
//! The study's conv blocks are `conv 3x3 (padding 1) -> batch norm -> ReLU -> max pool 2x2`;
//! after three of them an adaptive average pool leaves `1 x 2` values per channel (the report's
//! "flattened size of 2 values per final channel", the only reading that gives its exact
//! parameter counts), then dropout and two fully connected layers. Counts: linear 64,010; simple
//! CNN 15,610; complex CNN 59,114 (for 64 x 100 inputs and 10 classes).
//!
//! Initialisation is PyTorch's default (`torch.nn.Conv2d` / `Linear`: weights and biases uniform
//! in +-1/sqrt(fan_in); `BatchNorm2d`: weight 1, bias 0), drawn from libtorch's generator, so
//! that a model starts where the study's PyTorch code would start it.

use tch::Tensor;
use tch::nn::{self, Init};

/// PyTorch's default bound for a layer's weights and biases: 1/sqrt(fan_in).
fn uniform(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// A fully connected layer as `torch.nn.Linear` makes it.
fn linear(p: nn::Path, inputs: i64, outputs: i64) -> nn::Linear {
    nn::linear(p, inputs, outputs, nn::LinearConfig { ws_init: uniform(inputs), bs_init: Some(uniform(inputs)), bias: true })
}

/// A square convolution as `torch.nn.Conv2d` makes it.
fn conv(p: nn::Path, cin: i64, cout: i64, kernel: i64, stride: i64, padding: i64, bias: bool) -> nn::Conv2D {
    let fan_in = cin * kernel * kernel;
    let cfg = nn::ConvConfig { stride, padding, bias, ws_init: uniform(fan_in), bs_init: uniform(fan_in), ..Default::default() };
    nn::conv2d(p, cin, cout, kernel, cfg)
}

/// Batch norm as `torch.nn.BatchNorm2d` makes it (weight 1, bias 0, momentum 0.1, eps 1e-5).
fn batch_norm(p: nn::Path, channels: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, channels, nn::BatchNormConfig { ws_init: Init::Const(1.0), bs_init: Init::Const(0.0), ..Default::default() })
}

/// Flatten, one linear layer.
pub struct LinearModel {
    fc: nn::Linear,
}

impl LinearModel {
    pub fn new(p: &nn::Path, inputs: i64, classes: i64) -> Self {
        LinearModel { fc: linear(p / "fc", inputs, classes) }
    }
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.flatten(1, -1).apply(&self.fc)
    }
}

pub struct ConvBlock {
    conv: nn::Conv2D,
    norm: nn::BatchNorm,
}

impl ConvBlock {
    fn new(p: nn::Path, cin: i64, cout: i64) -> Self {
        ConvBlock { conv: conv(&p / "conv", cin, cout, 3, 1, 1, true), norm: batch_norm(&p / "norm", cout) }
    }
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.conv).apply_t(&self.norm, train).relu().max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
    }
}

/// Conv blocks from 1 input channel through `widths`.
fn conv_blocks(p: &nn::Path, widths: &[i64]) -> Vec<ConvBlock> {
    let p = p / "blocks";
    let mut cin = 1;
    widths
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let b = ConvBlock::new(&p / i, cin, w);
            cin = w;
            b
        })
        .collect()
}

fn run_blocks(blocks: &[ConvBlock], x: &Tensor, train: bool) -> Tensor {
    blocks.iter().fold(x.shallow_clone(), |x, b| b.forward_t(&x, train))
}

/// Three conv blocks, adaptive pool to 1 x 2, dropout, FC -> ReLU -> FC.
pub struct SimpleCnn {
    blocks: Vec<ConvBlock>,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl SimpleCnn {
    pub fn new(p: &nn::Path, channels: [i64; 3], hidden: i64, classes: i64) -> Self {
        SimpleCnn {
            blocks: conv_blocks(p, &channels),
            fc1: linear(p / "fc1", channels[2] * 2, hidden),
            fc2: linear(p / "fc2", hidden, classes),
        }
    }
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = run_blocks(&self.blocks, x, train).adaptive_avg_pool2d([1, 2]).flatten(1, -1).dropout(0.5, train);
        x.apply(&self.fc1).relu().apply(&self.fc2)
    }
}

/// The simple CNN with every width doubled.
pub struct ComplexCnn {
    net: SimpleCnn,
}

impl ComplexCnn {
    pub fn new(p: &nn::Path, classes: i64) -> Self {
        ComplexCnn { net: SimpleCnn::new(&(p / "net"), [16, 32, 64], 256, classes) }
    }
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.net.forward_t(x, train)
    }
}

/// `conv 3x3 (stride s) -> BN -> ReLU -> conv 3x3 -> BN`, plus the input (through a 1x1 conv and
/// BN when the shape changes), then ReLU: ResNet's basic block.
pub struct ResBlock {
    conv1: nn::Conv2D,
    norm1: nn::BatchNorm,
    conv2: nn::Conv2D,
    norm2: nn::BatchNorm,
    shortcut: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl ResBlock {
    pub fn new(p: nn::Path, cin: i64, cout: i64, stride: i64) -> Self {
        let shortcut = (cin != cout || stride != 1)
            .then(|| (conv(&p / "shortcut_conv", cin, cout, 1, stride, 0, false), batch_norm(&p / "shortcut_norm", cout)));
        ResBlock {
            conv1: conv(&p / "conv1", cin, cout, 3, stride, 1, false),
            norm1: batch_norm(&p / "norm1", cout),
            conv2: conv(&p / "conv2", cout, cout, 3, 1, 1, false),
            norm2: batch_norm(&p / "norm2", cout),
            shortcut,
        }
    }
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x.apply(&self.conv1).apply_t(&self.norm1, train).relu();
        let y = y.apply(&self.conv2).apply_t(&self.norm2, train);
        let skip = match &self.shortcut {
            Some((conv, norm)) => x.apply(conv).apply_t(norm, train),
            None => x.shallow_clone(),
        };
        (y + skip).relu()
    }
}

/// A small ResNet for spectrogram crops: a stride-2 3x3 stem, four basic blocks (three of them
/// halving the size), global average pooling, dropout and one linear layer. Fully convolutional,
/// so it takes crops of any size of at least 16 x 16.
pub struct ResNet {
    stem: nn::Conv2D,
    stem_norm: nn::BatchNorm,
    blocks: Vec<ResBlock>,
    fc: nn::Linear,
}

impl ResNet {
    pub fn new(p: &nn::Path, widths: [i64; 4], classes: i64) -> Self {
        let [a, b, c, d] = widths;
        let bp = p / "blocks";
        ResNet {
            stem: conv(p / "stem", 1, a, 3, 2, 1, false),
            stem_norm: batch_norm(p / "stem_norm", a),
            blocks: vec![
                ResBlock::new(&bp / 0, a, a, 1),
                ResBlock::new(&bp / 1, a, b, 2),
                ResBlock::new(&bp / 2, b, c, 2),
                ResBlock::new(&bp / 3, c, d, 2),
            ],
            fc: linear(p / "fc", d, classes),
        }
    }
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = x.apply(&self.stem).apply_t(&self.stem_norm, train).relu();
        let x = self.blocks.iter().fold(x, |x, b| b.forward_t(&x, train));
        x.adaptive_avg_pool2d([1, 1]).flatten(1, -1).dropout(0.3, train).apply(&self.fc)
    }
}

/// A short-chunk CNN after Won et al. (2020, "Evaluation of CNN-based automatic music tagging
/// models"), scaled down for a CPU: five `conv 3x3 -> BN -> ReLU -> max pool 2` blocks on a crop
/// of a few seconds, global max pooling over what is left, then FC -> ReLU -> dropout -> FC.
pub struct ShortChunkCnn {
    blocks: Vec<ConvBlock>,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl ShortChunkCnn {
    pub fn new(p: &nn::Path, widths: [i64; 5], hidden: i64, classes: i64) -> Self {
        ShortChunkCnn {
            blocks: conv_blocks(p, &widths),
            fc1: linear(p / "fc1", widths[4], hidden),
            fc2: linear(p / "fc2", hidden, classes),
        }
    }
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (pooled, _) = run_blocks(&self.blocks, x, train).flatten(2, 3).max_dim(2, false);
        pooled.apply(&self.fc1).relu().dropout(0.5, train).apply(&self.fc2)
    }
}
