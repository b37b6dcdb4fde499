//! Helpers shared by the integration tests.

use std::path::Path;

use image::{DynamicImage, ImageFormat, RgbImage};

/// Writes `n` 40×40 PNG photos per class: "red" ones are reddish noise, "blue" ones bluish, so a
/// tiny network can learn to tell them apart in a few epochs.
#[allow(dead_code)]
pub fn colour_dataset(root: &Path, n: usize, seed: u64) {
    let mut rng = vggtune::rng::SplitMix64(seed);
    for (class, hue) in [("blue", 2usize), ("red", 0usize)] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let img = RgbImage::from_fn(40, 40, |_, _| {
                let mut px = [0u8; 3];
                for (c, v) in px.iter_mut().enumerate() {
                    let base = if c == hue { 150.0 } else { 60.0 };
                    *v = (base + rng.next_f32() * 100.0) as u8;
                }
                image::Rgb(px)
            });
            DynamicImage::ImageRgb8(img)
                .save_with_format(dir.join(format!("{i}.png")), ImageFormat::Png)
                .unwrap();
        }
    }
}

/// The Python that runs the reference implementations: the fixtures' virtual environment
/// (`tests/fetch-fixtures.sh`), or `python3`.
#[allow(dead_code)]
pub fn reference_python() -> std::path::PathBuf {
    let venv =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/downloaded/venv/bin/python");
    if venv.is_file() {
        venv
    } else {
        "python3".into()
    }
}

/// Runs an exported ONNX model on `photos` in onnxruntime (`tests/reference/onnx_classify.py`,
/// after `onnx.checker`): each photo is decoded and made square by vggtune's own resize, then
/// handed over as RGB pixels 0–255, which is what the export takes. Returns the model's
/// output (row-major) and the script's description of the file.
#[allow(dead_code)]
pub fn onnxruntime_outputs(
    onnx: &Path,
    photos: &[std::path::PathBuf],
    preprocessing: &vggtune::data::Preprocessing,
) -> (Vec<f32>, serde_json::Value) {
    reference_outputs("onnx_classify.py", onnx, photos, preprocessing)
}

/// Runs the reference script `script` (in `tests/reference`, with the arguments
/// `MODEL.onnx PIXELS.bin N SIZE OUT.bin`) on `photos` made square by vggtune's own resize;
/// returns the float32 values it wrote and the JSON line it printed.
#[allow(dead_code)]
pub fn reference_outputs(
    script: &str,
    onnx: &Path,
    photos: &[std::path::PathBuf],
    preprocessing: &vggtune::data::Preprocessing,
) -> (Vec<f32>, serde_json::Value) {
    let size = preprocessing.input_size as usize;
    let mut pixels = Vec::new();
    for photo in photos {
        let image =
            vggtune::data::decode_rgb(photo, &vggtune::data::DecodeLimits::default()).unwrap();
        let square = preprocessing.resize(&image);
        for c in 0..3 {
            pixels.extend(square.pixels().map(|p| f32::from(p[c])));
        }
    }
    assert_eq!(pixels.len(), photos.len() * 3 * size * size);
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("pixels.bin"), dir.path().join("out.bin"));
    let bytes: Vec<u8> = pixels.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input, bytes).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(script);
    let out = std::process::Command::new(reference_python())
        .arg(&script)
        .arg(onnx)
        .arg(&input)
        .arg(photos.len().to_string())
        .arg(size.to_string())
        .arg(&output)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{} failed on the export (run `bash tests/fetch-fixtures.sh` first): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let values = std::fs::read(&output)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (values, info)
}

/// A saved model's probabilities for `photos` by vggtune (the CPU, batches of `batch`) and by
/// onnxruntime from its ONNX export ([`onnxruntime_outputs`]), row-major, and the script's
/// description of the file.
#[allow(dead_code)]
pub fn vggtune_and_onnxruntime(
    model: &Path,
    onnx: &Path,
    photos: &[std::path::PathBuf],
    batch: usize,
) -> (Vec<f32>, Vec<f32>, serde_json::Value) {
    // The export is compared with vggtune's f32 path: bf16 (the default where the CPU has AMX)
    // differs from any f32 runtime by its rounding, not by the export. (Bases built from now
    // on in this test process are f32; no test here depends on the default.)
    vggtune::model::bf16::choose(vggtune::model::bf16::Choice::F32);
    let mut classifier =
        vggtune::infer::Classifier::load(model, &burn::tensor::Device::flex()).unwrap();
    // The graph's input is already square: it averages the mirror, not the other square.
    classifier.set_square_tta(false);
    let (predictions, failed) = classifier.predict(photos, batch, |_, _| {});
    assert!(failed.is_empty(), "{failed:?}");
    let ours: Vec<f32> = predictions
        .iter()
        .flat_map(|p| p.probabilities.clone())
        .collect();
    let (theirs, info) = onnxruntime_outputs(onnx, photos, &classifier.header.preprocessing);
    assert_eq!(ours.len(), theirs.len(), "{info}");
    // The graph's typicality distance, when it has one, is vggtune's.
    if let Some(distances) = info["distances"].as_array() {
        for (p, d) in predictions.iter().zip(distances) {
            let ours = p.typicality.expect("judged").distance;
            let theirs = d.as_f64().unwrap() as f32;
            assert!(
                (ours - theirs).abs() < 1e-3,
                "distance {ours} vs onnxruntime {theirs}"
            );
        }
    }
    (ours, theirs, info)
}

/// A model file of this version (3) as `version` 1 or 2 wrote it: its first three sections, no
/// training features or temperature in the header, and (version 2) the checksum of the rest.
#[allow(dead_code)]
pub fn as_old_format(bytes: &[u8], version: u32) -> Vec<u8> {
    use sha2::Digest as _;
    let section = |pos: usize| {
        let len = u64::from_le_bytes(bytes[pos..pos + 8].try_into().unwrap()) as usize;
        (&bytes[pos + 8..pos + 8 + len], pos + 8 + len)
    };
    let (json, next) = section(12);
    let (weights, next) = section(next);
    let (optim, _) = section(next);
    let mut header: serde_json::Value = serde_json::from_slice(json).unwrap();
    header["format_version"] = version.into();
    let fields = header.as_object_mut().unwrap();
    fields.remove("typicality");
    fields.remove("calibration");
    let json = serde_json::to_vec(&header).unwrap();
    let mut old = bytes[..8].to_vec();
    old.extend(version.to_le_bytes());
    for part in [&json[..], weights, optim] {
        old.extend((part.len() as u64).to_le_bytes());
        old.extend(part);
    }
    if version >= 2 {
        let digest = sha2::Sha256::digest(&old);
        old.extend(digest);
    }
    old
}
