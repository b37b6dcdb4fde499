//! The model bundle: one file a user can copy, holding a trained model with everything needed to
//! use it (class names, preprocessing, which layers were trained, the base weights' identity,
//! the training config and metric history), and, in checkpoints, the optimizer's state.
//!
//! Layout: the magic `VGGTUNE\0`, a little-endian u32 format version, then three sections, each
//! a little-endian u64 length and its bytes: the JSON header, the weights (Burn's burnpack, which
//! keeps parameter ids so an optimizer state can be matched on resume), and the optimizer record
//! (empty in a finished model); since version 3 a fourth, the training photos' features that
//! tell how typical a new photo is ([`crate::typical`], f16; empty in checkpoints and in models
//! trained without them); since version 2, the SHA-256 of all the bytes before it, so a damaged
//! copy is refused instead of predicting nonsense. Written to a temporary file and renamed.

use std::path::{Path, PathBuf};

use burn::store::{BurnpackStore, ModuleSnapshot as _};
use burn::tensor::{Bytes, Device};
use sha2::{Digest as _, Sha256};

use super::vgg::{Vgg16, Vgg16Config};
use crate::data::Preprocessing;

const MAGIC: &[u8; 8] = b"VGGTUNE\0";
/// The bundle format this build writes: 2 adds a SHA-256 of everything before it at the end,
/// checked on load; 3 a fourth section, the training photos' features. Versions 1 (no
/// checksum) and 2 are still read (without the features: no *none of these* verdict).
pub const FORMAT_VERSION: u32 = 3;

/// The length of the checksum that ends a version-2 file.
const CHECKSUM_BYTES: usize = 32;

/// Everything about a model except its weights.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BundleHeader {
    /// The bundle format ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The vggtune version that wrote it.
    pub vggtune_version: String,
    /// Class names, in output order.
    pub classes: Vec<String>,
    /// How inputs are prepared.
    pub preprocessing: Preprocessing,
    /// The network's shape.
    pub model: Vgg16Config,
    /// Which layers were trained ("head", "dense", "block5", "all").
    pub trained: String,
    /// SHA-256 of the base weights file (or a description of a random start).
    pub base_weights_sha256: String,
    /// The base weights file's name, when there was one.
    pub base_weights_file: Option<String>,
    /// The training configuration, as JSON.
    pub train_config: serde_json::Value,
    /// Per-epoch metrics, as JSON.
    pub history: serde_json::Value,
    /// For checkpoints: the epoch (0-based) training resumes at.
    pub next_epoch: usize,
    /// The last validation pass, photo by photo (models written since this field exists), so
    /// the Evaluate view shows it again when the model is opened.
    #[serde(default)]
    pub validation: Option<crate::metrics::EvaluatedImages>,
    /// Whether the model predicts by default as the mean of the photo and its mirror image
    /// (test-time augmentation; models written before this field: no).
    #[serde(default)]
    pub mirror_tta: bool,
    /// Whether, with the test-time augmentation, the model also averages the photo made square
    /// the other way ([`crate::data::ResizeMode::other`]; models written before this field:
    /// no).
    #[serde(default)]
    pub square_tta: bool,
    /// The epoch the stage that wrote it began at (the continued model's epochs; 0 for a first
    /// stage), so a stopped stage resumes as the stage it was. `None` in files written before
    /// this field.
    #[serde(default)]
    pub stage_start: Option<usize>,
    /// The temperature that calibrates the model's confidences, fitted on its validation photos,
    /// with what it did to them. `None` in files written before it, and when there were no
    /// validation photos: the confidences are the network's own.
    #[serde(default)]
    pub calibration: Option<crate::calibration::Calibration>,
    /// What the fourth section (the training photos' features) holds; `None` when it is empty.
    #[serde(default)]
    pub typicality: Option<crate::typical::TypicalitySummary>,
}

impl BundleHeader {
    /// The temperature of the model's confidences (1: as the network says them).
    pub fn temperature(&self) -> f32 {
        self.calibration.as_ref().map_or(1.0, |c| c.temperature)
    }
}

/// Why a bundle could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not a vggtune model, or is damaged.
    #[error("{path}: not a usable vggtune model: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A bundle read back.
pub struct LoadedBundle {
    /// The header.
    pub header: BundleHeader,
    /// The model, on the device asked for.
    pub model: Vgg16,
    /// The optimizer's state, in checkpoints.
    pub optimizer: Option<burn::optim::OptimizerRecord>,
    /// The training photos' features, in models that keep them.
    pub typicality: Option<crate::typical::Typicality>,
}

/// Writes a bundle atomically, without training photos' features (a checkpoint, or a model
/// that gives no *none of these* verdict).
pub fn save(
    path: &Path,
    header: &BundleHeader,
    model: &Vgg16,
    optimizer: Option<&burn::optim::ModuleOptimizer>,
) -> Result<(), BundleError> {
    write(path, header, model, optimizer, None)
}

/// Writes a finished model atomically with its training photos' features (the header's
/// `typicality` is theirs, whatever it said).
pub fn save_model(
    path: &Path,
    header: &BundleHeader,
    model: &Vgg16,
    typicality: Option<&crate::typical::Typicality>,
) -> Result<(), BundleError> {
    write(path, header, model, None, typicality)
}

fn write(
    path: &Path,
    header: &BundleHeader,
    model: &Vgg16,
    optimizer: Option<&burn::optim::ModuleOptimizer>,
    typicality: Option<&crate::typical::Typicality>,
) -> Result<(), BundleError> {
    let fail = |reason: String| BundleError::Io {
        path: path.to_owned(),
        reason,
    };
    let mut header = header.clone();
    header.format_version = FORMAT_VERSION;
    header.typicality = typicality.map(|t| t.summary.clone());
    let bank = typicality.map(crate::typical::Typicality::bank_bytes);
    let bank: &[u8] = bank.as_deref().unwrap_or_default();
    let json = serde_json::to_vec(&header).map_err(|e| fail(e.to_string()))?;
    let mut store = BurnpackStore::from_bytes(None);
    model
        .save_into(&mut store)
        .map_err(|e| fail(format!("cannot serialise the weights: {e}")))?;
    let weights = store
        .get_bytes()
        .map_err(|e| fail(format!("cannot serialise the weights: {e}")))?;
    let optim = match optimizer {
        Some(o) => Some(
            o.to_record()
                .into_bytes()
                .map_err(|e| fail(format!("cannot serialise the optimizer: {e:?}")))?,
        ),
        None => None,
    };
    let optim: &[u8] = optim.as_deref().unwrap_or_default();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
    }
    let version = FORMAT_VERSION.to_le_bytes();
    let lengths =
        [json.len(), weights.len(), optim.len(), bank.len()].map(|n| (n as u64).to_le_bytes());
    let mut parts = vec![
        &MAGIC[..],
        &version,
        &lengths[0],
        &json,
        &lengths[1],
        &weights,
        &lengths[2],
        optim,
        &lengths[3],
        bank,
    ];
    let mut hasher = Sha256::new();
    for part in &parts {
        hasher.update(part);
    }
    let checksum: [u8; CHECKSUM_BYTES] = hasher.finalize().into();
    parts.push(&checksum);
    crate::fsutil::write_atomic_parts(path, &parts).map_err(|e| fail(e.to_string()))
}

/// Reads only a bundle's header (cheap: for menus and checks). Only the header's bytes are
/// read, so a copy truncated further on is found by [`load`], not here.
pub fn read_header(path: &Path) -> Result<BundleHeader, BundleError> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path).map_err(|e| BundleError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let mut read = |n: usize| -> Result<Vec<u8>, BundleError> {
        let mut buf = vec![0; n];
        file.read_exact(&mut buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                damaged(path, "the file ends early (truncated copy?)")
            }
            _ => BundleError::Io {
                path: path.to_owned(),
                reason: e.to_string(),
            },
        })?;
        Ok(buf)
    };
    let start = read(12).map_err(|_| damaged(path, START_WRONG))?;
    check_start(path, &start)?;
    let len = u64::from_le_bytes(read(8)?.try_into().expect("8 bytes"));
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= MAX_HEADER_BYTES)
        .ok_or_else(|| damaged(path, "its header is too large"))?;
    parse_header(path, &read(len)?)
}

/// No header is this large; a length above it is damage, not a header to allocate for.
const MAX_HEADER_BYTES: usize = 256 << 20;

const START_WRONG: &str = "it does not start like one (wrong file?)";

fn damaged(path: &Path, reason: &str) -> BundleError {
    BundleError::Damaged {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Checks the magic bytes and the format version; returns the version.
fn check_start(path: &Path, bytes: &[u8]) -> Result<u32, BundleError> {
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(damaged(path, START_WRONG));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(damaged(
            path,
            &format!(
                "it is format version {version}; this vggtune reads versions 1 to {FORMAT_VERSION}"
            ),
        ));
    }
    Ok(version)
}

fn parse_header(path: &Path, json: &[u8]) -> Result<BundleHeader, BundleError> {
    let mut header: BundleHeader = serde_json::from_slice(json)
        .map_err(|e| damaged(path, &format!("its header is unreadable: {e}")))?;
    check_header(&header).map_err(|reason| damaged(path, &reason))?;
    // The saved evaluation is only shown again if its numbers fit the classes.
    let classes = header.classes.clone();
    header.validation = header.validation.take().and_then(|v| v.checked(&classes));
    Ok(header)
}

/// Checks a header's values against [`crate::limits`] before anything is built from them: a
/// damaged or crafted file must not make vggtune allocate for a 60000-pixel input or divide
/// by a zero width.
fn check_header(header: &BundleHeader) -> Result<(), String> {
    use crate::limits::{self, check};
    let model = &header.model;
    check("its class count", header.classes.len(), &limits::CLASSES)?;
    if header.classes.len() != model.num_classes {
        return Err(format!(
            "{} class names for a model with {} outputs",
            header.classes.len(),
            model.num_classes
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for name in &header.classes {
        if name.trim().is_empty() {
            return Err("a class name is empty".into());
        }
        if !seen.insert(name) {
            return Err(format!("the class name '{name}' appears twice"));
        }
    }
    check("its input size", model.input_size, &limits::INPUT_SIZE)?;
    if header.preprocessing.input_size != model.input_size {
        return Err(format!(
            "its preprocessing is for {} px but its network for {} px",
            header.preprocessing.input_size, model.input_size
        ));
    }
    check(
        "its width divisor",
        model.width_divisor,
        &limits::WIDTH_DIVISOR,
    )?;
    if let Some(c) = &header.calibration {
        check("its temperature", c.temperature, &limits::TEMPERATURE)?;
    }
    check("its dropout", model.dropout, &limits::DROPOUT)
}

/// A bundle's parts: the header, the weights, the optimizer state and the training photos'
/// features (empty before version 3).
type Sections<'a> = (BundleHeader, &'a [u8], &'a [u8], &'a [u8]);

fn sections<'a>(path: &Path, bytes: &'a [u8]) -> Result<Sections<'a>, BundleError> {
    let version = check_start(path, bytes)?;
    let mut pos = 12;
    let mut take = || -> Result<&'a [u8], BundleError> {
        let ends_early = || damaged(path, "the file ends early (truncated copy?)");
        let len_bytes = bytes.get(pos..pos + 8).ok_or_else(ends_early)?;
        let len = u64::from_le_bytes(
            len_bytes
                .try_into()
                .map_err(|_| damaged(path, "bad length"))?,
        );
        let len = usize::try_from(len).map_err(|_| damaged(path, "a section is too large"))?;
        let start = pos + 8;
        let section = bytes
            .get(start..start.saturating_add(len))
            .ok_or_else(ends_early)?;
        pos = start + len;
        Ok(section)
    };
    let json = take()?;
    let weights = take()?;
    let optim = take()?;
    let bank = if version >= 3 { take()? } else { &[][..] };
    if version >= 2 {
        // The checksum follows the last section and ends the file.
        let stored = bytes.get(pos..).filter(|s| s.len() == CHECKSUM_BYTES);
        let matches = stored.is_some_and(|stored| Sha256::digest(&bytes[..pos])[..] == *stored);
        if !matches {
            return Err(damaged(
                path,
                "its checksum does not match its contents: a changed or corrupted copy (use the \
                 original file)",
            ));
        }
    }
    Ok((parse_header(path, json)?, weights, optim, bank))
}

/// Reads a bundle, building its model on `device`.
pub fn load(path: &Path, device: &Device) -> Result<LoadedBundle, BundleError> {
    let bytes = std::fs::read(path).map_err(|e| BundleError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    load_bytes(path, &bytes, device)
}

/// For the mutation tests: a bundle's bytes through everything [`load`] does (on the CPU),
/// with the checksum first made to match when `repair`, so the header and weights are reached.
#[cfg(test)]
pub(crate) fn parse_bytes(path: &Path, bytes: &[u8], repair: bool) -> Result<(), BundleError> {
    let mut bytes = bytes.to_vec();
    if repair && bytes.len() >= CHECKSUM_BYTES {
        let end = bytes.len() - CHECKSUM_BYTES;
        let digest = Sha256::digest(&bytes[..end]);
        bytes[end..].copy_from_slice(&digest);
    }
    load_bytes(path, &bytes, &Device::flex()).map(|_| ())
}

fn load_bytes(path: &Path, bytes: &[u8], device: &Device) -> Result<LoadedBundle, BundleError> {
    let (header, weights, optim, bank) = sections(path, bytes)?;
    let damaged = |reason: String| BundleError::Damaged {
        path: path.to_owned(),
        reason,
    };
    let mut model = header.model.init(device);
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(weights.to_vec())));
    let result = model
        .load_from(&mut store)
        .map_err(|e| damaged(format!("its weights are unreadable: {e}")))?;
    if !result.missing.is_empty() || !result.errors.is_empty() {
        return Err(damaged(format!(
            "its weights do not fit its header ({} missing, {} errors)",
            result.missing.len(),
            result.errors.len()
        )));
    }
    let optimizer = if optim.is_empty() {
        None
    } else {
        Some(
            burn::optim::OptimizerRecord::from_bytes(Bytes::from_bytes_vec(optim.to_vec()))
                .map_err(|e| damaged(format!("its optimizer state is unreadable: {e:?}")))?,
        )
    };
    let channels = header.model.conv_channels()[12];
    let typicality = match &header.typicality {
        Some(summary) if summary.dim != channels => {
            return Err(damaged(format!(
                "its training photos' features have {} values, but its network gives {channels}",
                summary.dim
            )));
        }
        Some(summary) => Some(
            crate::typical::Typicality::from_parts(summary.clone(), bank)
                .map_err(|reason| damaged(format!("its training photos' features: {reason}")))?,
        ),
        None if bank.is_empty() => None,
        None => {
            return Err(damaged(
                "it holds training photos' features its header does not describe".into(),
            ));
        }
    };
    Ok(LoadedBundle {
        header,
        model,
        optimizer,
        typicality,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> BundleHeader {
        BundleHeader {
            format_version: FORMAT_VERSION,
            vggtune_version: crate::VERSION.to_owned(),
            classes: vec!["cat".into(), "dog".into()],
            preprocessing: Preprocessing::caffe(),
            model: Vgg16Config {
                num_classes: 2,
                ..Vgg16Config::new(2)
            },
            trained: "head".into(),
            base_weights_sha256: String::new(),
            base_weights_file: None,
            train_config: serde_json::Value::Null,
            history: serde_json::Value::Null,
            next_epoch: 0,
            validation: None,
            mirror_tta: false,
            square_tta: false,
            stage_start: None,
            calibration: None,
            typicality: None,
        }
    }

    fn refused(change: impl FnOnce(&mut BundleHeader)) -> String {
        let mut h = header();
        change(&mut h);
        let json = serde_json::to_vec(&h).unwrap();
        parse_header(Path::new("m.vggtune"), &json)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn header_values_outside_the_limits_are_damage_named_with_the_file() {
        assert!(parse_header(Path::new("m"), &serde_json::to_vec(&header()).unwrap()).is_ok());
        let zero = refused(|h| {
            h.model.input_size = 0;
            h.preprocessing.input_size = 0;
        });
        assert!(
            zero.contains("m.vggtune") && zero.contains("input size 0"),
            "{zero}"
        );
        let huge = refused(|h| {
            h.model.input_size = 60000;
            h.preprocessing.input_size = 60000;
        });
        assert!(huge.contains("input size 60000"), "{huge}");
        let mismatch = refused(|h| h.preprocessing.input_size = 112);
        assert!(mismatch.contains("112 px"), "{mismatch}");
        let twice = refused(|h| h.classes = vec!["cat".into(), "cat".into()]);
        assert!(twice.contains("'cat' appears twice"), "{twice}");
        let empty = refused(|h| h.classes = vec!["cat".into(), " ".into()]);
        assert!(empty.contains("empty"), "{empty}");
        let one = refused(|h| {
            h.classes = vec!["cat".into()];
            h.model.num_classes = 1;
        });
        assert!(one.contains("class count 1"), "{one}");
        let outputs = refused(|h| h.model.num_classes = 3);
        assert!(
            outputs.contains("2 class names for a model with 3 outputs"),
            "{outputs}"
        );
        let divisor = refused(|h| h.model.width_divisor = 0);
        assert!(divisor.contains("width divisor 0"), "{divisor}");
    }
}
