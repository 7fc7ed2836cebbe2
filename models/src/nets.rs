//! The study's three networks, as its report describes them.
//!
//! Conv blocks are `conv 3x3 (padding 1) -> batch norm -> ReLU -> max pool 2x2`; after three of
//! them an adaptive average pool leaves `1 x 2` values per channel (the report's "flattened size
//! of 2 values per final channel", the only reading that gives its exact parameter counts), then
//! dropout and two fully connected layers. Counts: linear 64,010; simple CNN 15,610; complex CNN
//! 59,114 (for 64 x 100 inputs and 10 classes).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

/// Flatten, one linear layer.
#[derive(Module, Debug)]
pub struct LinearModel {
    fc: Linear,
}

impl LinearModel {
    pub fn new(inputs: usize, classes: usize, device: &Device) -> Self {
        LinearModel { fc: LinearConfig::new(inputs, classes).init(device) }
    }
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.fc.forward(x.flatten(1, 3))
    }
}

#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    norm: BatchNorm,
    pool: MaxPool2d,
    relu: Relu,
}

impl ConvBlock {
    fn new(cin: usize, cout: usize, device: &Device) -> Self {
        ConvBlock {
            conv: Conv2dConfig::new([cin, cout], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device),
            norm: BatchNormConfig::new(cout).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            relu: Relu::new(),
        }
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pool.forward(self.relu.forward(self.norm.forward(self.conv.forward(x))))
    }
}

/// Conv blocks from 1 input channel through `widths`.
fn conv_blocks(widths: &[usize], device: &Device) -> Vec<ConvBlock> {
    let mut cin = 1;
    widths
        .iter()
        .map(|&w| {
            let b = ConvBlock::new(cin, w, device);
            cin = w;
            b
        })
        .collect()
}

fn run_blocks(blocks: &[ConvBlock], x: Tensor<4>) -> Tensor<4> {
    blocks.iter().fold(x, |x, b| b.forward(x))
}

/// Three conv blocks, adaptive pool to 1 x 2, dropout, FC -> ReLU -> FC.
#[derive(Module, Debug)]
pub struct SimpleCnn {
    blocks: Vec<ConvBlock>,
    squeeze: AdaptiveAvgPool2d,
    dropout: Dropout,
    fc1: Linear,
    fc2: Linear,
    relu: Relu,
}

impl SimpleCnn {
    pub fn new(channels: [usize; 3], hidden: usize, classes: usize, device: &Device) -> Self {
        let blocks = conv_blocks(&channels, device);
        SimpleCnn {
            blocks,
            squeeze: AdaptiveAvgPool2dConfig::new([1, 2]).init(),
            dropout: DropoutConfig::new(0.5).init(),
            fc1: LinearConfig::new(channels[2] * 2, hidden).init(device),
            fc2: LinearConfig::new(hidden, classes).init(device),
            relu: Relu::new(),
        }
    }
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = run_blocks(&self.blocks, x);
        let x = self.dropout.forward(self.squeeze.forward(x).flatten(1, 3));
        self.fc2.forward(self.relu.forward(self.fc1.forward(x)))
    }
}

/// The simple CNN with every width doubled.
#[derive(Module, Debug)]
pub struct ComplexCnn {
    net: SimpleCnn,
}

impl ComplexCnn {
    pub fn new(classes: usize, device: &Device) -> Self {
        ComplexCnn { net: SimpleCnn::new([16, 32, 64], 256, classes, device) }
    }
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.net.forward(x)
    }
}

/// `conv 3x3 (stride s) -> BN -> ReLU -> conv 3x3 -> BN`, plus the input (through a 1x1 conv and
/// BN when the shape changes), then ReLU: ResNet's basic block.
#[derive(Module, Debug)]
pub struct ResBlock {
    conv1: Conv2d,
    norm1: BatchNorm,
    conv2: Conv2d,
    norm2: BatchNorm,
    shortcut: Option<(Conv2d, BatchNorm)>,
    relu: Relu,
}

fn conv3(cin: usize, cout: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

impl ResBlock {
    pub fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        let shortcut = (cin != cout || stride != 1).then(|| {
            (
                Conv2dConfig::new([cin, cout], [1, 1]).with_stride([stride, stride]).with_bias(false).init(device),
                BatchNormConfig::new(cout).init(device),
            )
        });
        ResBlock {
            conv1: conv3(cin, cout, stride, device),
            norm1: BatchNormConfig::new(cout).init(device),
            conv2: conv3(cout, cout, 1, device),
            norm2: BatchNormConfig::new(cout).init(device),
            shortcut,
            relu: Relu::new(),
        }
    }
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.relu.forward(self.norm1.forward(self.conv1.forward(x.clone())));
        let y = self.norm2.forward(self.conv2.forward(y));
        let skip = match &self.shortcut {
            Some((conv, norm)) => norm.forward(conv.forward(x)),
            None => x,
        };
        self.relu.forward(y + skip)
    }
}

/// A small ResNet for spectrogram crops: a stride-2 3x3 stem, four basic blocks (three of them
/// halving the size), global average pooling, dropout and one linear layer. Fully convolutional,
/// so it takes crops of any size of at least 16 x 16.
#[derive(Module, Debug)]
pub struct ResNet {
    stem: Conv2d,
    stem_norm: BatchNorm,
    blocks: Vec<ResBlock>,
    squeeze: AdaptiveAvgPool2d,
    dropout: Dropout,
    fc: Linear,
    relu: Relu,
}

impl ResNet {
    pub fn new(widths: [usize; 4], classes: usize, device: &Device) -> Self {
        let [a, b, c, d] = widths;
        ResNet {
            stem: conv3(1, a, 2, device),
            stem_norm: BatchNormConfig::new(a).init(device),
            blocks: vec![
                ResBlock::new(a, a, 1, device),
                ResBlock::new(a, b, 2, device),
                ResBlock::new(b, c, 2, device),
                ResBlock::new(c, d, 2, device),
            ],
            squeeze: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dropout: DropoutConfig::new(0.3).init(),
            fc: LinearConfig::new(d, classes).init(device),
            relu: Relu::new(),
        }
    }
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = self.relu.forward(self.stem_norm.forward(self.stem.forward(x)));
        for b in &self.blocks {
            x = b.forward(x);
        }
        self.fc.forward(self.dropout.forward(self.squeeze.forward(x).flatten(1, 3)))
    }
}

/// A short-chunk CNN after Won et al. (2020, "Evaluation of CNN-based automatic music tagging
/// models"), scaled down for a CPU: five `conv 3x3 -> BN -> ReLU -> max pool 2` blocks on a crop
/// of a few seconds, global max pooling over what is left, then FC -> ReLU -> dropout -> FC.
#[derive(Module, Debug)]
pub struct ShortChunkCnn {
    blocks: Vec<ConvBlock>,
    fc1: Linear,
    dropout: Dropout,
    fc2: Linear,
    relu: Relu,
}

impl ShortChunkCnn {
    pub fn new(widths: [usize; 5], hidden: usize, classes: usize, device: &Device) -> Self {
        ShortChunkCnn {
            blocks: conv_blocks(&widths, device),
            fc1: LinearConfig::new(widths[4], hidden).init(device),
            dropout: DropoutConfig::new(0.5).init(),
            fc2: LinearConfig::new(hidden, classes).init(device),
            relu: Relu::new(),
        }
    }
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = run_blocks(&self.blocks, x);
        let pooled: Tensor<2> = x.flatten::<3>(2, 3).max_dim(2).flatten(1, 2);
        self.fc2.forward(self.dropout.forward(self.relu.forward(self.fc1.forward(pooled))))
    }
}
