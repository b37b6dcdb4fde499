//! Importing and exporting VGG16 weights: torchvision `.pth` (zip and legacy), `.safetensors`
//! with torchvision key names, and VGG16 `.onnx`.
//!
//! Every format is read as data into torchvision's names and layouts ([`WeightsFile`]), then one
//! function ([`apply_weights`]) checks every shape and puts the tensors into a [`Vgg16`]. Pickle
//! files are parsed by burn-store's reader, which interprets the pickle opcodes as data and never
//! runs code. Errors name the file, the key and the shapes. The weights' preprocessing
//! convention is part of what an import returns.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use sha2::{Digest as _, Sha256};

use super::raw::{Endian, FloatKind, ValueBudget, decode_floats};
pub use super::raw::{RawTensor, checked_len};
use super::vgg::{HeadKind, TORCHVISION_CONV_INDICES, Vgg16, Vgg16Config};
use crate::data::Convention;

/// The file formats weights come in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsFormat {
    /// PyTorch's `torch.save` (zip or legacy pickle).
    Pth,
    /// Hugging Face safetensors.
    Safetensors,
    /// ONNX.
    Onnx,
}

impl WeightsFormat {
    /// Detects the format from the file's first bytes, falling back to its extension.
    pub fn detect(path: &Path, head: &[u8]) -> Option<Self> {
        if head.starts_with(b"PK\x03\x04") || head.starts_with(&[0x80]) {
            return Some(Self::Pth);
        }
        if head.len() >= 9 && head[8] == b'{' {
            return Some(Self::Safetensors);
        }
        match path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .as_deref()
        {
            Some("pth" | "pt" | "bin") => Some(Self::Pth),
            Some("safetensors") => Some(Self::Safetensors),
            Some("onnx") => Some(Self::Onnx),
            _ => None,
        }
    }
}

/// Why weights could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file could not be read.
    #[error("{path}: cannot read: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not weights in a format vggtune reads, or is damaged.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A tensor the model needs is not in the file.
    #[error("{path}: missing '{key}': this is not a VGG16 state dict (or not torchvision's names)")]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The missing key.
        key: String,
    },
    /// A tensor has another shape than the model needs.
    #[error("{path}: '{key}' has shape {found:?}, the model needs {expected:?}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What the model needs.
        expected: Vec<usize>,
        /// What the file holds.
        found: Vec<usize>,
    },
}

/// Weights read from a file, in torchvision's names and layouts.
#[derive(Debug)]
pub struct WeightsFile {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: WeightsFormat,
    /// SHA-256 of the file's bytes, in hex: the weights' identity.
    pub sha256: String,
    /// How inputs must be preprocessed for these weights.
    pub convention: Convention,
    /// The tensors, by torchvision name.
    pub tensors: HashMap<String, RawTensor>,
    /// What the reader noticed, for the user.
    pub notes: Vec<String>,
}

/// SHA-256 of a file, in hex, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a weights file of any supported format.
pub fn read_weights(path: &Path) -> Result<WeightsFile, WeightsError> {
    let io = |e: std::io::Error| WeightsError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let format_err = |reason: String| WeightsError::Format {
        path: path.to_owned(),
        reason,
    };
    let mut head = [0u8; 16];
    let mut file = std::fs::File::open(path).map_err(io)?;
    let n = file.read(&mut head).map_err(io)?;
    if n == 0 {
        return Err(format_err("the file is empty".to_owned()));
    }
    let format = WeightsFormat::detect(path, &head[..n]).ok_or_else(|| {
        format_err("not a weights file vggtune reads (.pth, .safetensors or .onnx)".to_owned())
    })?;
    let sha256 = sha256_file(path).map_err(io)?;
    let mut notes = Vec::new();
    let (tensors, convention) = match format {
        WeightsFormat::Pth => (read_pth(path).map_err(format_err)?, Convention::Torchvision),
        WeightsFormat::Safetensors => {
            let bytes = std::fs::read(path).map_err(io)?;
            read_safetensors(&bytes).map_err(format_err)?
        }
        WeightsFormat::Onnx => {
            let bytes = std::fs::read(path).map_err(io)?;
            let onnx = super::onnx::read_onnx(&bytes).map_err(format_err)?;
            let convention = if onnx.nhwc_input {
                notes.push(
                    "made with Keras/TensorFlow: vggtune prepares photos the way those weights \
                     were trained (blue-green-red order, minus the ImageNet average colour)"
                        .to_owned(),
                );
                Convention::Caffe
            } else {
                Convention::Torchvision
            };
            (onnx.tensors, convention)
        }
    };
    Ok(WeightsFile {
        path: path.to_owned(),
        format,
        sha256,
        convention,
        tensors,
        notes,
    })
}

fn read_pth(path: &Path) -> Result<HashMap<String, RawTensor>, String> {
    use burn::store::pytorch_reader::{DType, PytorchReader};
    let reader =
        PytorchReader::new(path).map_err(|e| format!("not a readable PyTorch file: {e}"))?;
    let mut out = HashMap::new();
    let mut budget = ValueBudget::default();
    for (name, tensor) in reader.into_tensors() {
        let Some(name) = torchvision_name(&name) else {
            continue;
        };
        // The shape is checked before the read allocates for it (a zip entry can inflate far
        // past the file's size).
        budget.take(&name, tensor.shape())?;
        let bytes = tensor.read().map_err(|e| e.to_string())?;
        let data = match tensor.dtype() {
            DType::F32 => decode_floats(FloatKind::F32, &bytes, Endian::Native),
            DType::F64 => decode_floats(FloatKind::F64, &bytes, Endian::Native),
            DType::F16 => decode_floats(FloatKind::F16, &bytes, Endian::Native),
            DType::BF16 => decode_floats(FloatKind::BF16, &bytes, Endian::Native),
            other => return Err(format!("'{name}' holds {other:?} values, not floats")),
        };
        let raw = RawTensor::new(&name, tensor.shape().to_vec(), data)?;
        out.insert(name, raw);
    }
    Ok(out)
}

/// The torchvision name inside a key that may carry a prefix (`state_dict.`, `module.`, a
/// checkpoint's nesting): `state_dict.module.features.0.weight` → `features.0.weight`.
fn torchvision_name(key: &str) -> Option<String> {
    let segments: Vec<&str> = key.split('.').collect();
    let start = segments
        .iter()
        .position(|s| *s == "features" || *s == "classifier")?;
    Some(segments[start..].join("."))
}

/// The metadata key under which vggtune's exports record the preprocessing convention.
pub const CONVENTION_METADATA_KEY: &str = "vggtune.convention";

pub(crate) fn read_safetensors(
    bytes: &[u8],
) -> Result<(HashMap<String, RawTensor>, Convention), String> {
    use safetensors::{Dtype, SafeTensors};
    let (_, metadata) = SafeTensors::read_metadata(bytes)
        .map_err(|e| format!("not a readable safetensors file: {e}"))?;
    let convention = match metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(CONVENTION_METADATA_KEY))
        .map(String::as_str)
    {
        Some("caffe") => Convention::Caffe,
        _ => Convention::Torchvision,
    };
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| format!("not a readable safetensors file: {e}"))?;
    let mut out = HashMap::new();
    let mut budget = ValueBudget::default();
    for (name, view) in file.tensors() {
        let Some(name) = torchvision_name(&name) else {
            continue;
        };
        budget.take(&name, view.shape())?;
        let b = view.data();
        let data = match view.dtype() {
            Dtype::F32 => decode_floats(FloatKind::F32, b, Endian::Little),
            Dtype::F64 => decode_floats(FloatKind::F64, b, Endian::Little),
            Dtype::F16 => decode_floats(FloatKind::F16, b, Endian::Little),
            Dtype::BF16 => decode_floats(FloatKind::BF16, b, Endian::Little),
            other => return Err(format!("'{name}' holds {other:?} values, not floats")),
        };
        let raw = RawTensor::new(&name, view.shape().to_vec(), data)?;
        out.insert(name, raw);
    }
    Ok((out, convention))
}

/// What an import put into the model.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImportReport {
    /// The file.
    pub file: PathBuf,
    /// Its format.
    pub format: WeightsFormat,
    /// SHA-256 of the file.
    pub sha256: String,
    /// The preprocessing these weights want.
    pub convention: Convention,
    /// How many of the 13 convolutions were loaded (always 13 on success).
    pub conv_layers_loaded: usize,
    /// For each dense layer of the model's head, whether it came from the file.
    pub dense_loaded: Vec<bool>,
    /// Sentences for the user: what was loaded, what starts fresh and why.
    pub messages: Vec<String>,
}

impl ImportReport {
    /// True when every dense layer of the head came from the file (e.g. ImageNet's 1000 classes).
    pub fn full_classifier(&self) -> bool {
        self.dense_loaded.iter().all(|&l| l)
    }
}

fn to_tensor<const D: usize>(raw: &RawTensor, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(raw.data.clone(), raw.shape.clone()), device)
}

/// The tensor `key` of `weights`, which must have shape `expected`.
fn tensor<'a>(
    weights: &'a WeightsFile,
    key: &str,
    expected: &[usize],
) -> Result<&'a RawTensor, WeightsError> {
    let t = weights
        .tensors
        .get(key)
        .ok_or_else(|| WeightsError::MissingKey {
            path: weights.path.clone(),
            key: key.to_owned(),
        })?;
    if t.shape != expected {
        return Err(WeightsError::Shape {
            path: weights.path.clone(),
            key: key.to_owned(),
            expected: expected.to_vec(),
            found: t.shape.clone(),
        });
    }
    Ok(t)
}

/// The 13 convolutions' weights and biases for a model of `config`'s widths, each checked.
fn conv_base<'a>(
    weights: &'a WeightsFile,
    config: &Vgg16Config,
) -> Result<Vec<(&'a RawTensor, &'a RawTensor)>, WeightsError> {
    let mut convs = Vec::with_capacity(13);
    let mut in_channels = 3;
    for (i, &out) in config.conv_channels().iter().enumerate() {
        let idx = TORCHVISION_CONV_INDICES[i];
        let w = tensor(
            weights,
            &format!("features.{idx}.weight"),
            &[out, in_channels, 3, 3],
        )?;
        let b = tensor(weights, &format!("features.{idx}.bias"), &[out])?;
        convs.push((w, b));
        in_channels = out;
    }
    Ok(convs)
}

/// Checks that `weights` hold a whole VGG16 convolution base (at VGG16's widths, or all divided
/// by one divisor, as vggtune's small test models are), as training will need it: what `weights
/// import` checks before it copies a file into the cache.
pub fn check_vgg16_base(weights: &WeightsFile) -> Result<(), WeightsError> {
    // A divided width shows in the first layer's outputs; anything else is checked at VGG16's
    // own widths, so the error names what is missing or wrong.
    let divisor = match weights
        .tensors
        .get("features.0.weight")
        .map(|t| t.shape.as_slice())
    {
        Some(&[out, 3, 3, 3]) if out > 0 && 64 % out == 0 => 64 / out,
        _ => 1,
    };
    let config = Vgg16Config {
        width_divisor: divisor,
        ..Vgg16Config::new(2)
    };
    conv_base(weights, &config).map(|_| ())
}

/// Puts `weights` into `model`: the 13 convolutions must all be there with the right shapes; each
/// dense layer is loaded when the file has it with the right shape, and starts fresh otherwise.
pub fn apply_weights(
    model: &mut Vgg16,
    config: &Vgg16Config,
    weights: &WeightsFile,
    device: &Device,
) -> Result<ImportReport, WeightsError> {
    let path = &weights.path;
    // Check everything before changing anything, so a bad file leaves the model as it was.
    let convs = conv_base(weights, config)?;
    for (conv, (w, b)) in model.features.iter_mut().zip(convs) {
        conv.weight = Param::from_tensor(to_tensor::<4>(w, device));
        conv.bias = Some(Param::from_tensor(to_tensor::<1>(b, device)));
    }

    let mut messages = vec![format!(
        "the 13 convolution layers, which recognise shapes and textures, come from {}",
        path.display()
    )];
    messages.extend(weights.notes.iter().cloned());
    let mut dense_loaded = Vec::new();
    let file_has_classifier = weights.tensors.keys().any(|k| k.starts_with("classifier."));
    for (j, dense) in model.classifier.iter_mut().enumerate() {
        let idx = 3 * j;
        let [inputs, outputs] = dense.weight.shape().dims::<2>();
        let w = weights.tensors.get(&format!("classifier.{idx}.weight"));
        let b = weights.tensors.get(&format!("classifier.{idx}.bias"));
        match (w, b) {
            (Some(w), Some(b)) if w.shape == [outputs, inputs] && b.shape == [outputs] => {
                let w = w
                    .clone()
                    .permuted(&[1, 0])
                    .map_err(|reason| WeightsError::Format {
                        path: path.clone(),
                        reason,
                    })?;
                dense.weight = Param::from_tensor(to_tensor::<2>(&w, device));
                dense.bias = Some(Param::from_tensor(to_tensor::<1>(b, device)));
                dense_loaded.push(true);
            }
            (Some(w), _) => {
                messages.push(format!(
                    "dense layer {} is new: the file's layer was made for another task ({}→{}, \
                     this model needs {inputs}→{outputs}), so it learns from your photos",
                    j + 1,
                    w.shape.get(1).copied().unwrap_or(0),
                    w.shape.first().copied().unwrap_or(0),
                ));
                dense_loaded.push(false);
            }
            (None, _) => dense_loaded.push(false),
        }
    }
    if !file_has_classifier {
        messages.push(
            "the file has no classifier: the new head, which decides between your classes, \
             learns from your photos"
                .to_owned(),
        );
    } else if config.head != HeadKind::Torchvision && !dense_loaded.iter().any(|&l| l) {
        messages.push(format!(
            "the head, which decides between your classes, is new (the {} head) and learns from \
             your photos",
            config.head.short()
        ));
    }
    Ok(ImportReport {
        file: path.clone(),
        format: weights.format,
        sha256: weights.sha256.clone(),
        convention: weights.convention,
        conv_layers_loaded: 13,
        dense_loaded,
        messages,
    })
}

/// The model's weights in torchvision's names and layouts (Linear as [out, in]).
pub fn torchvision_state_dict(model: &Vgg16) -> Result<Vec<(String, RawTensor)>, String> {
    let raw = |t: TensorData| -> Result<RawTensor, String> {
        let shape = t.shape().to_vec();
        let data = t
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?;
        Ok(RawTensor { shape, data })
    };
    let mut out = Vec::new();
    for (i, conv) in model.features.iter().enumerate() {
        let idx = TORCHVISION_CONV_INDICES[i];
        out.push((
            format!("features.{idx}.weight"),
            raw(conv.weight.val().into_data())?,
        ));
        if let Some(b) = &conv.bias {
            out.push((format!("features.{idx}.bias"), raw(b.val().into_data())?));
        }
    }
    for (j, dense) in model.classifier.iter().enumerate() {
        let idx = 3 * j;
        let w = raw(dense.weight.val().into_data())?.permuted(&[1, 0])?;
        out.push((format!("classifier.{idx}.weight"), w));
        if let Some(b) = &dense.bias {
            out.push((format!("classifier.{idx}.bias"), raw(b.val().into_data())?));
        }
    }
    Ok(out)
}

/// Writes the model's weights as `.safetensors` with torchvision's key names, atomically, so
/// `torchvision.models.vgg16(num_classes=N).load_state_dict(...)` accepts them (with the
/// torchvision head; the light and pooled heads keep the names with their own shapes, and the
/// pooled head's first layer reads the 512 channel means of the 7×7 pooled grid: at 224 px,
/// `avgpool = AdaptiveAvgPool2d(1)`).
pub fn export_safetensors(
    model: &Vgg16,
    convention: Convention,
    path: &Path,
) -> Result<(), WeightsError> {
    let format_err = |reason: String| WeightsError::Format {
        path: path.to_owned(),
        reason,
    };
    let tensors = torchvision_state_dict(model).map_err(format_err)?;
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .into_iter()
        .map(|(name, t)| {
            let b = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, b, t.shape)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, b, shape)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format_err(e.to_string()))?;
    let metadata = HashMap::from([(
        CONVENTION_METADATA_KEY.to_owned(),
        match convention {
            Convention::Torchvision => "torchvision".to_owned(),
            Convention::Caffe => "caffe".to_owned(),
        },
    )]);
    let serialized =
        safetensors::serialize(views, Some(metadata)).map_err(|e| format_err(e.to_string()))?;
    crate::fsutil::write_atomic(path, &serialized).map_err(|e| WeightsError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::raw::MAX_TENSOR_VALUES;

    #[test]
    fn sizes_read_from_a_file_are_checked_before_anything_is_allocated() {
        // A product that wraps past 2^64 (it wrapped to 4 and indexed out of bounds before).
        let err = checked_len("w", &[(1 << 62) + 1, 4]).unwrap_err();
        assert!(
            err.contains("'w'") && err.contains("larger than any tensor"),
            "{err}"
        );
        assert_eq!(checked_len("w", &[25088, 4096]), Ok(MAX_TENSOR_VALUES));
        assert!(checked_len("w", &[25088, 4097]).is_err());
        // A tensor whose values do not fill its shape.
        let err = RawTensor::new("b", vec![2, 3], vec![0.0; 5]).unwrap_err();
        assert!(
            err.contains("holds 5 values") && err.contains("needs 6"),
            "{err}"
        );
        // Many tensors of allowed size that add up past the whole model.
        let mut budget = ValueBudget::default();
        assert!(budget.take("a", &[25088, 4096]).is_ok());
        let err = budget.take("b", &[25088, 4096]).unwrap_err();
        assert!(
            err.contains("more values than VGG16") && err.contains("'b'"),
            "{err}"
        );
    }

    #[test]
    fn permutation_moves_axes() {
        let t = RawTensor {
            shape: vec![2, 3],
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        };
        let p = t.permuted(&[1, 0]).unwrap();
        assert_eq!(p.shape, vec![3, 2]);
        assert_eq!(p.data, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn keras_flatten_order_is_reordered_to_torchvision() {
        // One output, 2 channels, 1×1 side... use side 2: inputs = 2 channels × 4 cells.
        // Keras order: (cell0: c0, c1), (cell1: c0, c1), ...
        let t = RawTensor {
            shape: vec![1, 8],
            data: vec![0.0, 10.0, 1.0, 11.0, 2.0, 12.0, 3.0, 13.0],
        };
        let r = t.inputs_hwc_to_chw(2).unwrap();
        assert_eq!(r.data, vec![0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0]);
    }

    #[test]
    fn prefixed_keys_are_reduced_to_torchvision_names() {
        assert_eq!(
            torchvision_name("state_dict.module.features.0.weight").as_deref(),
            Some("features.0.weight")
        );
        assert_eq!(
            torchvision_name("classifier.6.bias").as_deref(),
            Some("classifier.6.bias")
        );
        assert_eq!(torchvision_name("epoch"), None);
    }

    #[test]
    fn format_is_detected_by_content_first() {
        assert_eq!(
            WeightsFormat::detect(Path::new("x.bin"), b"PK\x03\x04rest"),
            Some(WeightsFormat::Pth)
        );
        assert_eq!(
            WeightsFormat::detect(Path::new("x"), &[0x80, 0x02, 0x8a]),
            Some(WeightsFormat::Pth)
        );
        assert_eq!(
            WeightsFormat::detect(Path::new("x.pth"), b"\x10\0\0\0\0\0\0\0{\"a\""),
            Some(WeightsFormat::Safetensors)
        );
        assert_eq!(
            WeightsFormat::detect(Path::new("m.onnx"), b"\x08\x07\x12"),
            Some(WeightsFormat::Onnx)
        );
        assert_eq!(
            WeightsFormat::detect(Path::new("notes.txt"), b"hello"),
            None
        );
    }
}
