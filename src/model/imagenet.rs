//! ImageNet's 1000 classes: their names, and the top-5 classes of photos for weights that carry
//! VGG16's 1000-way classifier.

use std::path::{Path, PathBuf};

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use super::vgg::{Vgg16, Vgg16Config};
use super::weights::{WeightsError, WeightsFile, apply_weights};
use crate::data::{DecodeError, DecodeLimits, Preprocessing, decode_rgb};

/// The 1000 ImageNet class names, in the order of VGG16's outputs.
pub fn class_names() -> Vec<&'static str> {
    include_str!("../../assets/imagenet_classes.txt")
        .lines()
        .collect()
}

/// True when `weights` holds torchvision's full 1000-way classifier.
pub fn has_imagenet_classifier(weights: &WeightsFile) -> bool {
    weights
        .tensors
        .get("classifier.6.weight")
        .is_some_and(|t| t.shape == [1000, 4096])
}

/// The full ImageNet VGG16 built from `weights`, or why it cannot be.
pub fn imagenet_model(weights: &WeightsFile, device: &Device) -> Result<Vgg16, WeightsError> {
    if !has_imagenet_classifier(weights) {
        return Err(WeightsError::Format {
            path: weights.path.clone(),
            reason: "these weights have no 1000-way ImageNet classifier (only a convolution \
                     base, or another head): ImageNet classes need full torchvision VGG16 \
                     weights such as vgg16-397923af.pth (`vggtune weights download`)"
                .to_owned(),
        });
    }
    let config = Vgg16Config::new(1000);
    let mut model = config.init(device);
    apply_weights(&mut model, &config, weights, device)?;
    Ok(model)
}

/// One photo's most likely ImageNet classes.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TopClasses {
    /// The photo.
    pub image: PathBuf,
    /// (class name, probability), most likely first.
    pub classes: Vec<(String, f32)>,
}

/// The `k` most likely classes of each image (decode failures are returned, not panicked on).
pub fn top_k(
    model: &Vgg16,
    preprocessing: &Preprocessing,
    images: &[&Path],
    k: usize,
    device: &Device,
) -> Vec<Result<TopClasses, DecodeError>> {
    let names = class_names();
    images
        .iter()
        .map(|path| {
            let photo = decode_rgb(path, &DecodeLimits::default())?;
            let input = preprocessing.apply(&photo, None);
            let s = preprocessing.input_size as usize;
            let x = Tensor::<4>::from_data(TensorData::new(input, [1, 3, s, s]), device);
            let probs = softmax(model.forward(x), 1)
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap_or_default();
            Ok(TopClasses {
                image: path.to_path_buf(),
                classes: top_indices(&probs, k)
                    .into_iter()
                    .map(|i| (names.get(i).copied().unwrap_or("?").to_owned(), probs[i]))
                    .collect(),
            })
        })
        .collect()
}

/// Indices of the `k` largest values, largest first.
pub fn top_indices(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_1000_class_names_in_torchvision_order() {
        let names = class_names();
        assert_eq!(names.len(), 1000);
        assert_eq!(names[0], "tench");
        assert_eq!(names[281], "tabby");
        assert_eq!(names[999], "toilet tissue");
    }

    #[test]
    fn top_indices_are_sorted_by_value() {
        assert_eq!(top_indices(&[0.1, 0.5, 0.2, 0.9], 2), vec![3, 1]);
    }
}
