//! The VGG16 module (torchvision's layout), weight import and export, and the weights download.
//!
//! Owns everything about the network's parameters: building it, filling it from `.pth`,
//! `.safetensors` or `.onnx` files, writing it back with torchvision's names, and fetching
//! torchvision's ImageNet weights. Knows nothing of photos or of the window.

pub mod bf16;
mod buffers;
pub mod bundle;
pub mod cpu_base;
pub mod cpu_rates;
pub mod dense;
mod direct;
pub mod download;
pub mod export;
pub mod frozen;
pub mod host;
pub mod imagenet;
pub mod onnx;
pub mod onnx_export;
pub mod raw;
pub mod vgg;
pub mod weights;
mod winograd;

pub use vgg::{HeadKind, Vgg16, Vgg16Config};
pub use weights::{
    ImportReport, WeightsError, WeightsFile, WeightsFormat, apply_weights, read_weights,
};
