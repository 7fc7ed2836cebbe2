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
        let blocks = vec![
            ConvBlock::new(1, channels[0], device),
            ConvBlock::new(channels[0], channels[1], device),
            ConvBlock::new(channels[1], channels[2], device),
        ];
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
        let mut x = x;
        for b in &self.blocks {
            x = b.forward(x);
        }
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
