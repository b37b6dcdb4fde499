//! Exporting a saved model for use elsewhere: `.safetensors` with torchvision's key names (for
//! PyTorch) or `.onnx` (onnxruntime, OpenCV, browsers, phones). The one entry that both the CLI
//! (`vggtune export`) and the window (Model → Export) call.

use std::path::Path;

use burn::tensor::Device;

use super::bundle::{self, BundleError};
use super::{onnx_export, weights};

/// The formats a model can be exported to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// The weights with torchvision's key names.
    Safetensors,
    /// The whole classifier, normalisation and softmax included.
    Onnx,
}

impl ExportFormat {
    /// Every format, in menu order.
    pub const ALL: [Self; 2] = [Self::Onnx, Self::Safetensors];

    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        self.extensions()[0]
    }

    /// The file extensions, for file dialogs' filters.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            Self::Safetensors => &["safetensors"],
            Self::Onnx => &["onnx"],
        }
    }

    /// What the export holds and is for, in a few words.
    pub fn description(self) -> &'static str {
        match self {
            Self::Safetensors => "the weights with torchvision's key names, for PyTorch",
            Self::Onnx => {
                "the whole classifier for onnxruntime, OpenCV, browsers and phones (opset 13)"
            }
        }
    }

    /// The format a file name asks for, by its extension.
    pub fn for_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Self::ALL.into_iter().find(|f| f.extension() == ext)
    }
}

impl std::str::FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|f| f.extension() == s)
            .ok_or_else(|| format!("'{s}' is not an export format (onnx or safetensors)"))
    }
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The model file could not be read.
    #[error(transparent)]
    Model(#[from] BundleError),
    /// The export could not be made or written.
    #[error("{path}: {reason}")]
    Write {
        /// The file being written.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

/// Exports the model saved at `model_path` to `out` in `format`; returns what was written, in
/// one line for people.
pub fn export_model(
    model_path: &Path,
    format: ExportFormat,
    out: &Path,
) -> Result<String, ExportError> {
    let loaded = bundle::load(model_path, &Device::flex())?;
    let header = &loaded.header;
    let fail = |reason: String| ExportError::Write {
        path: out.to_owned(),
        reason,
    };
    let detail = match format {
        ExportFormat::Safetensors => {
            weights::export_safetensors(&loaded.model, header.preprocessing.convention, out)
                .map_err(|e| fail(e.to_string()))?;
            "torchvision key names".to_owned()
        }
        ExportFormat::Onnx => {
            let typicality = loaded.typicality.as_ref();
            onnx_export::export_onnx(&loaded.model, header, typicality, out).map_err(fail)?;
            let size = header.preprocessing.input_size;
            format!(
                "ONNX opset {}; input '{}': float RGB 0-255, [batch, 3, {size}, {size}]; output '{}'",
                onnx_export::OPSET,
                onnx_export::INPUT_NAME,
                onnx_export::OUTPUT_NAME
            )
        }
    };
    Ok(format!(
        "wrote {} ({} classes: {}; {detail})",
        out.display(),
        header.classes.len(),
        header.classes.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_names_and_extensions() {
        assert_eq!("ONNX".parse::<ExportFormat>(), Ok(ExportFormat::Onnx));
        assert_eq!(
            "safetensors".parse::<ExportFormat>(),
            Ok(ExportFormat::Safetensors)
        );
        assert!("pt".parse::<ExportFormat>().is_err());
        assert_eq!(
            ExportFormat::for_path(Path::new("a/m.Onnx")),
            Some(ExportFormat::Onnx)
        );
        assert_eq!(ExportFormat::for_path(Path::new("m.bin")), None);
    }
}
