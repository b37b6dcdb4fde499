//! Tensors as weight files hold them: row-major floats with their shape ([`RawTensor`]), the
//! packed float kinds and byte orders they come in, and the checked arithmetic every reader of
//! sizes from a file goes through. Below each format's reader (`weights`, `onnx`).

/// A tensor read from a file: row-major floats in torchvision's layout.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    /// Extents, outermost first.
    pub shape: Vec<usize>,
    /// The values.
    pub data: Vec<f32>,
}

/// The most values one tensor of a weights file may hold: VGG16's largest, torchvision's first
/// dense layer (25088 × 4096). A larger one is refused before anything is allocated for it.
pub const MAX_TENSOR_VALUES: usize = 25088 * 4096;

/// The most values a weights file's tensors may hold together: the whole of VGG16 with
/// ImageNet's 1000-way classifier.
pub const MAX_FILE_VALUES: usize = 138_357_544;

/// The number of values a tensor of `shape` holds, checked: an overflowing product or one
/// past [`MAX_TENSOR_VALUES`] is an error naming the tensor.
pub fn checked_len(name: &str, shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_TENSOR_VALUES)
        .ok_or_else(|| {
            format!(
                "'{name}' has shape {shape:?}, larger than any tensor of VGG16 (damaged or not VGG16?)"
            )
        })
}

/// Counts a file's values as its tensors are read, and refuses the one that takes the total
/// past [`MAX_FILE_VALUES`] before it is allocated.
#[derive(Debug, Default)]
pub(crate) struct ValueBudget(usize);

impl ValueBudget {
    /// Checks `shape` and adds its values; the tensor's length.
    pub(crate) fn take(&mut self, name: &str, shape: &[usize]) -> Result<usize, String> {
        let n = checked_len(name, shape)?;
        self.0 = self
            .0
            .checked_add(n)
            .filter(|&total| total <= MAX_FILE_VALUES)
            .ok_or_else(|| {
                format!("the file holds more values than VGG16 has (at '{name}'): not a VGG16 file")
            })?;
        Ok(n)
    }
}

impl RawTensor {
    /// A tensor named `name` from its shape and values, which must agree.
    pub fn new(name: &str, shape: Vec<usize>, data: Vec<f32>) -> Result<Self, String> {
        let n = checked_len(name, &shape)?;
        if data.len() != n {
            return Err(format!(
                "'{name}' holds {} values but its shape {shape:?} needs {n} (truncated or damaged file?)",
                data.len()
            ));
        }
        Ok(Self { shape, data })
    }

    /// The tensor with its axes reordered: output axis `i` is input axis `perm[i]`.
    pub fn permuted(self, perm: &[i64]) -> Result<Self, String> {
        let rank = self.shape.len();
        let perm: Vec<usize> = perm.iter().map(|&p| p as usize).collect();
        let mut sorted = perm.clone();
        sorted.sort_unstable();
        if sorted != (0..rank).collect::<Vec<_>>() {
            return Err(format!(
                "bad permutation {perm:?} for shape {:?}",
                self.shape
            ));
        }
        let shape: Vec<usize> = perm.iter().map(|&p| self.shape[p]).collect();
        let mut in_strides = vec![1usize; rank];
        for i in (0..rank.saturating_sub(1)).rev() {
            in_strides[i] = in_strides[i + 1] * self.shape[i + 1];
        }
        let n = self.data.len();
        let mut data = vec![0.0f32; n];
        let mut index = vec![0usize; rank];
        for value in data.iter_mut() {
            let src: usize = (0..rank).map(|i| index[i] * in_strides[perm[i]]).sum();
            *value = self.data[src];
            for i in (0..rank).rev() {
                index[i] += 1;
                if index[i] < shape[i] {
                    break;
                }
                index[i] = 0;
            }
        }
        Ok(Self { shape, data })
    }

    /// For a dense weight [out, C·side·side] whose inputs were flattened in H, W, C order (Keras),
    /// reorders the inputs to torchvision's C, H, W order.
    pub fn inputs_hwc_to_chw(self, side: usize) -> Result<Self, String> {
        let [out, inputs] = self.shape[..] else {
            return Err(format!(
                "expected a dense weight, found shape {:?}",
                self.shape
            ));
        };
        let cells = side * side;
        if inputs % cells != 0 {
            return Err(format!(
                "{inputs} inputs are not a multiple of {side}×{side}"
            ));
        }
        let channels = inputs / cells;
        let mut data = vec![0.0f32; self.data.len()];
        for o in 0..out {
            let row = &self.data[o * inputs..(o + 1) * inputs];
            let dst = &mut data[o * inputs..(o + 1) * inputs];
            for cell in 0..cells {
                for c in 0..channels {
                    dst[c * cells + cell] = row[cell * channels + c];
                }
            }
        }
        Ok(Self {
            shape: self.shape,
            data,
        })
    }
}

/// The float element types weight files hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FloatKind {
    F32,
    F64,
    F16,
    BF16,
}

/// The byte order of packed floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endian {
    /// Little-endian (safetensors, ONNX).
    Little,
    /// This machine's order (what burn-store's pickle reader hands out).
    Native,
}

/// Decodes packed floats of `kind` into f32; a trailing partial element is ignored.
pub(crate) fn decode_floats(kind: FloatKind, bytes: &[u8], endian: Endian) -> Vec<f32> {
    let size = match kind {
        FloatKind::F32 => 4,
        FloatKind::F64 => 8,
        FloatKind::F16 | FloatKind::BF16 => 2,
    };
    let swap = endian == Endian::Native && cfg!(target_endian = "big");
    bytes
        .chunks_exact(size)
        .map(|chunk| {
            let mut c = [0u8; 8];
            c[..size].copy_from_slice(chunk);
            if swap {
                c[..size].reverse();
            }
            match kind {
                FloatKind::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                FloatKind::F64 => f64::from_le_bytes(c) as f32,
                FloatKind::F16 => burn::tensor::f16::from_le_bytes([c[0], c[1]]).to_f32(),
                FloatKind::BF16 => burn::tensor::bf16::from_le_bytes([c[0], c[1]]).to_f32(),
            }
        })
        .collect()
}
