//! VGG16 in Burn: the module, weight import/export, the download, and proof against onnxruntime.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use burn::module::Module as _;
use burn::tensor::{Device, Tensor, TensorData};
use vggtune::data::{Convention, DecodeLimits, Preprocessing, ResizeMode, decode_rgb};
use vggtune::model::bf16::Precision;
use vggtune::model::bundle::{self, BundleHeader};
use vggtune::model::cpu_base::{Algorithm, CpuConvBase, Tiling};
use vggtune::model::download::{DownloadError, download};
use vggtune::model::export::{ExportFormat, export_model};
use vggtune::model::frozen::FrozenConvs;
use vggtune::model::weights::{RawTensor, export_safetensors, torchvision_state_dict};
use vggtune::model::{HeadKind, Vgg16Config, WeightsError, apply_weights, read_weights};

fn cpu() -> Device {
    Device::flex()
}

fn tiny(classes: usize) -> Vgg16Config {
    Vgg16Config {
        num_classes: classes,
        input_size: 32,
        width_divisor: 16,
        head: HeadKind::Torchvision,
        dropout: 0.5,
    }
}

fn input(n: usize, size: usize, seed: u64) -> Tensor<4> {
    let mut rng = vggtune::rng::SplitMix64(seed);
    let values: Vec<f32> = (0..n * 3 * size * size)
        .map(|_| rng.next_f32() * 2.0 - 1.0)
        .collect();
    Tensor::from_data(TensorData::new(values, [n, 3, size, size]), &cpu())
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn full_vgg16_has_torchvisions_parameter_count() {
    let model = Vgg16Config::new(1000).init(&cpu());
    assert_eq!(model.num_params(), 138_357_544);
    assert_eq!(model.features.len(), 13);
    assert_eq!(model.classifier.len(), 3);
    assert_eq!(model.num_classes(), 1000);
}

#[test]
fn forward_shapes_for_the_base_and_the_head() {
    let config = tiny(3);
    let model = config.init(&cpu());
    let features = model.forward_features(input(2, 32, 1));
    assert_eq!(features.dims(), [2, 32, 7, 7]);
    assert_eq!(config.feature_len(), 32 * 49);
    let logits = model.forward_head(features);
    assert_eq!(logits.dims(), [2, 3]);
    // The light head has the same interface.
    let light = Vgg16Config {
        head: HeadKind::Dense256,
        ..config
    }
    .init(&cpu());
    assert_eq!(light.classifier.len(), 2);
    assert_eq!(light.forward(input(1, 32, 2)).dims(), [1, 3]);
}

#[test]
fn safetensors_export_round_trips_with_torchvision_names() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny(2);
    let model = config.init(&cpu());
    let path = dir.path().join("tiny.safetensors");
    export_safetensors(&model, Convention::Caffe, &path).unwrap();

    let file = read_weights(&path).unwrap();
    assert_eq!(file.convention, Convention::Caffe);
    let mut names: Vec<&String> = file.tensors.keys().collect();
    names.sort();
    assert!(names.contains(&&"features.28.weight".to_owned()));
    assert!(names.contains(&&"classifier.6.bias".to_owned()));
    assert_eq!(
        file.tensors["classifier.0.weight"].shape,
        vec![4096 / 16, 32 * 49]
    );
    assert_eq!(names.len(), 32);

    let mut fresh = config.init(&cpu());
    let report = apply_weights(&mut fresh, &config, &file, &cpu()).unwrap();
    assert_eq!(report.dense_loaded, vec![true, true, true]);
    assert!(report.full_classifier());
    let x = input(2, 32, 3);
    let a = values(model.forward(x.clone()));
    let b = values(fresh.forward(x));
    assert_eq!(a, b, "a round trip must give the same logits");
}

#[test]
fn a_base_only_file_loads_the_base_and_starts_the_head_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny(2);
    let source = config.init(&cpu());
    // A file whose classifier is for 5 classes.
    let other = Vgg16Config {
        num_classes: 5,
        ..config
    }
    .init(&cpu());
    let mut tensors = torchvision_state_dict(&source).unwrap();
    tensors.retain(|(k, _)| k.starts_with("features."));
    tensors.extend(
        torchvision_state_dict(&other)
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k.starts_with("classifier.")),
    );
    let path = dir.path().join("mixed.safetensors");
    write_safetensors(&path, &tensors);
    let file = read_weights(&path).unwrap();
    let mut model = config.init(&cpu());
    let report = apply_weights(&mut model, &config, &file, &cpu()).unwrap();
    assert_eq!(report.dense_loaded, vec![true, true, false]);
    assert!(
        report
            .messages
            .iter()
            .any(|m| m.contains("dense layer 3 is new") && m.contains("learns from your photos")),
        "{:?}",
        report.messages
    );
    let x = input(1, 32, 4);
    assert_eq!(
        values(model.forward_features(x.clone())),
        values(source.forward_features(x))
    );

    tensors.retain(|(k, _)| k.starts_with("features."));
    write_safetensors(&path, &tensors);
    let file = read_weights(&path).unwrap();
    let report = apply_weights(&mut config.init(&cpu()), &config, &file, &cpu()).unwrap();
    assert_eq!(report.dense_loaded, vec![false, false, false]);
    assert!(report.messages.iter().any(|m| m.contains("no classifier")));
}

fn write_safetensors(path: &Path, tensors: &[(String, RawTensor)]) {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                t.shape.clone(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, b, s)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn bad_weights_files_give_errors_naming_file_key_and_shape() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny(2);
    let mut tensors = torchvision_state_dict(&config.init(&cpu())).unwrap();

    // Wrong shape.
    let path = dir.path().join("wrong.safetensors");
    let mut wrong = tensors.clone();
    wrong[0].1 = RawTensor {
        shape: vec![5, 3, 3, 3],
        data: vec![0.0; 135],
    };
    write_safetensors(&path, &wrong);
    let file = read_weights(&path).unwrap();
    let err = apply_weights(&mut config.init(&cpu()), &config, &file, &cpu()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, WeightsError::Shape { .. }), "{msg}");
    assert!(
        msg.contains("wrong.safetensors")
            && msg.contains("features.0.weight")
            && msg.contains("[5, 3, 3, 3]"),
        "{msg}"
    );

    // Missing key.
    tensors.retain(|(k, _)| k != "features.14.bias");
    let path = dir.path().join("missing.safetensors");
    write_safetensors(&path, &tensors);
    let file = read_weights(&path).unwrap();
    let err = apply_weights(&mut config.init(&cpu()), &config, &file, &cpu()).unwrap_err();
    assert!(err.to_string().contains("features.14.bias"), "{err}");

    // Truncated file.
    let good = dir.path().join("good.safetensors");
    export_safetensors(&config.init(&cpu()), Convention::Torchvision, &good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = read_weights(&cut).unwrap_err();
    assert!(err.to_string().contains("cut.safetensors"), "{err}");

    // Not weights at all, under every extension.
    for name in [
        "notes.pth",
        "notes.safetensors",
        "notes.onnx",
        "notes.txt",
        "empty.pth",
    ] {
        let path = dir.path().join(name);
        let content: &[u8] = if name.starts_with("empty") {
            b""
        } else {
            b"just some text, not weights"
        };
        std::fs::write(&path, content).unwrap();
        let err = read_weights(&path).unwrap_err();
        assert!(err.to_string().contains(name), "{name}: {err}");
    }

    // A truncated ONNX file.
    let onnx = dir.path().join("cut.onnx");
    std::fs::write(&onnx, [0x08, 0x07, 0x3a, 0xff, 0xff, 0x03, 0x0a]).unwrap();
    assert!(read_weights(&onnx).is_err());
}

fn onnx_fixture() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/downloaded/vgg16_keras.onnx");
    assert!(
        path.is_file(),
        "{} is missing: run `bash tests/fetch-fixtures.sh` first (README.md)",
        path.display()
    );
    path
}

#[test]
fn real_imagenet_conv_base_from_onnx_matches_onnxruntime_on_real_photos() {
    let onnx = onnx_fixture();
    let file = read_weights(&onnx).unwrap();
    assert_eq!(
        file.convention,
        Convention::Caffe,
        "a Keras export wants Caffe preprocessing"
    );
    let size = 240;
    let config = Vgg16Config {
        input_size: size,
        ..Vgg16Config::new(2)
    };
    let mut model = config.init(&cpu());
    let report = apply_weights(&mut model, &config, &file, &cpu()).unwrap();
    assert_eq!(report.conv_layers_loaded, 13);
    // Its dense layers are an MRI classifier of other sizes: the head starts fresh.
    assert_eq!(report.dense_loaded, vec![false, false, false]);

    let train = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/dogscats/train");
    let photos = ["cat.1.jpg", "dog.2.jpg", "cat.3.jpg"];
    let preprocessing = Preprocessing {
        convention: Convention::Caffe,
        input_size: size,
        resize: ResizeMode::Squash,
    };
    let mut batch = Vec::new();
    for p in photos {
        let photo = decode_rgb(&train.join(p), &DecodeLimits::default()).unwrap();
        batch.extend(preprocessing.apply(&photo, None));
    }
    let n = photos.len();
    let s = size as usize;
    let dir = tempfile::tempdir().unwrap();
    let input_path = dir.path().join("input.bin");
    let out_path = dir.path().join("out.bin");
    std::fs::write(
        &input_path,
        batch
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/onnx_features.py");
    let out = std::process::Command::new(common::reference_python())
        .arg(&script)
        .arg(&onnx)
        .arg("functional_1/block5_pool_1/MaxPool2d:0")
        .arg(&input_path)
        .arg(n.to_string())
        .arg(size.to_string())
        .arg(&out_path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "onnxruntime reference failed (run `bash tests/fetch-fixtures.sh`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{n} 512 7 7")
    );
    let mut reference = Vec::new();
    std::fs::File::open(&out_path)
        .unwrap()
        .read_to_end(&mut reference)
        .unwrap();
    let reference: Vec<f32> = reference
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();

    // The forward paths: Burn's convolutions, and the CPU base that feature extraction and
    // prediction use on the CPU in both Winograd tilings (in f32 here; bf16 below).
    let fast = |tiling| {
        CpuConvBase::with_precision(&model, 0..13, Algorithm::Winograd(tiling), Precision::F32)
            .forward(&batch, [n, 3, s, s])
    };
    let x = Tensor::<4>::from_data(TensorData::new(batch.clone(), [n, 3, s, s]), &cpu());
    let ours = values(model.forward_features(x));
    let scale = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 1.0, "real ImageNet features are not all near zero");
    for (path, ours) in [
        ("Burn", ours),
        ("CPU base, F(2×2)", fast(Tiling::F2)),
        ("CPU base, F(4×4)", fast(Tiling::F4)),
    ] {
        let diff = max_abs_diff(&ours, &reference);
        eprintln!(
            "block-5 features ({path}): max |vggtune - onnxruntime| = {diff:e}, max |value| = {scale}"
        );
        assert!(
            diff <= 1e-4 * scale,
            "{path}: max abs diff {diff} exceeds 1e-4 of the largest value {scale}"
        );
    }
    bf16_stays_near_f32(&model, &batch, [n, 3, s, s]);
}

/// The base in bf16 (where this CPU runs it) against the base in f32 on real photos through
/// the real ImageNet weights: layer by layer within a relative error bound, and each photo's
/// pooled features (the mean of each channel of block 5, what the heads read) pointing the
/// same way.
fn bf16_stays_near_f32(model: &vggtune::model::Vgg16, batch: &[f32], shape: [usize; 4]) {
    if !vggtune::model::bf16::available() {
        eprintln!("this CPU has no bf16 products: the bf16 base is not checked here");
        return;
    }
    let l2 = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    for algorithm in [
        Algorithm::Winograd(Tiling::F2),
        Algorithm::Winograd(Tiling::F4),
        Algorithm::Im2col,
        Algorithm::Direct,
    ] {
        for layers in [1, 2, 4, 7, 10, 13] {
            let base =
                |precision| CpuConvBase::with_precision(model, 0..layers, algorithm, precision);
            let bf16 = base(Precision::Bf16);
            // The bound of the path that ran: without AMX, the direct path runs as Winograd.
            let per_layer = match bf16.algorithm() {
                Algorithm::Winograd(Tiling::F4) => BF16_ERROR_PER_LAYER_F4,
                _ => BF16_ERROR_PER_LAYER,
            };
            let (f, b) = (
                base(Precision::F32).forward(batch, shape),
                bf16.forward(batch, shape),
            );
            let diff: Vec<f32> = f.iter().zip(&b).map(|(x, y)| x - y).collect();
            let relative = l2(&diff) / l2(&f);
            eprintln!("bf16 {algorithm:?}, {layers} convolutions: relative error {relative:.2e}");
            assert!(
                relative <= BF16_ERROR + per_layer * layers as f64,
                "{algorithm:?}, {layers} convolutions: relative error {relative}"
            );
            if layers == 13 {
                let per_photo = f.len() / shape[0];
                for (photo, (fp, bp)) in f.chunks(per_photo).zip(b.chunks(per_photo)).enumerate() {
                    let pool = |x: &[f32]| -> Vec<f64> {
                        x.chunks(per_photo / 512)
                            .map(|c| c.iter().map(|v| f64::from(*v)).sum::<f64>())
                            .collect()
                    };
                    let (pf, pb) = (pool(fp), pool(bp));
                    let dot: f64 = pf.iter().zip(&pb).map(|(x, y)| x * y).sum();
                    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
                    let cosine = dot / (norm(&pf) * norm(&pb));
                    eprintln!("bf16 {algorithm:?}, photo {photo}: pooled cosine {cosine:.6}");
                    assert!(
                        cosine >= 0.999,
                        "{algorithm:?}, photo {photo}: cosine {cosine}"
                    );
                }
            }
        }
    }
}

/// The direct bf16 path (AMX) at VGG16's real widths on shapes the photo path never gives:
/// non-square and odd sizes (37×45 → 18×22 → 9×11 → 4×5 → 2×2 → 1×1, and 32×33 → 1×1, then
/// the adaptive pool growing to 7×7), more images than one pass takes, a range that stops
/// before block 5 and one that starts inside (256 channels in, no im2col), and the last
/// activation Grad-CAM reads, each against the f32 base.
#[test]
fn the_direct_bf16_base_follows_f32_on_odd_shapes() {
    if !vggtune::model::bf16::amx() {
        eprintln!("no AMX tiles here: the direct path is not run");
        return;
    }
    let config = Vgg16Config {
        width_divisor: 1,
        head: HeadKind::Pooled,
        ..tiny(2)
    };
    let model = config.init(&cpu());
    let l2 = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let relative = |a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len());
        let diff: Vec<f32> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        assert!(l2(a) > 0.0, "the f32 base gives all zeros");
        l2(&diff) / l2(a)
    };
    for (n, [c, h, w], range) in [
        (9, [3, 37, 45], 0..13),
        (2, [3, 30, 30], 0..10),
        (1, [3, 32, 33], 0..13),
        (3, [256, 13, 18], 7..13),
    ] {
        let mut rng = vggtune::rng::SplitMix64(h as u64);
        // Block 4's input comes out of a ReLU: never negative.
        let low = if c == 3 { -1.0 } else { 0.0 };
        let x: Vec<f32> = (0..n * c * h * w)
            .map(|_| low + rng.next_f32() * (1.0 - low))
            .collect();
        let shape = [n, c, h, w];
        let make = |algorithm, precision| {
            CpuConvBase::with_precision(&model, range.clone(), algorithm, precision)
        };
        let (f32_base, direct) = (
            make(Algorithm::Winograd(Tiling::F2), Precision::F32),
            make(Algorithm::Direct, Precision::Bf16),
        );
        assert_eq!(direct.algorithm(), Algorithm::Direct, "convs {range:?}");
        assert_eq!(direct.precision(), Precision::Bf16);
        let (f, d) = (f32_base.forward(&x, shape), direct.forward(&x, shape));
        let [oc, oh, ow] = direct.output_shape([c, h, w]);
        assert_eq!(d.len(), n * oc * oh * ow);
        let error = relative(&f, &d);
        eprintln!("direct bf16, {n} × {h}×{w}, convs {range:?}: relative error {error:.2e}");
        assert!(
            error <= 0.02,
            "{n} × {h}×{w}, convs {range:?}: relative error {error}"
        );
        let ((fa, fs), (da, ds)) = (
            f32_base.forward_last_activation(&x, shape),
            direct.forward_last_activation(&x, shape),
        );
        assert_eq!(fs, ds);
        let error = relative(&fa, &da);
        assert!(
            error <= 0.02,
            "{n} × {h}×{w}: last activation's relative error {error}"
        );
    }
}

/// The relative (L2) error of the bf16 base against f32 allowed: this much, and this much
/// more per convolution it runs (measured on an Intel Xeon with AMX: 0.42% after one
/// convolution, 0.93% after all 13 with Winograd F(2×2), 0.45% and 0.77% with the direct path; the
/// pooled features' cosine 0.99998 or more).
const BF16_ERROR: f64 = 0.005;
const BF16_ERROR_PER_LAYER: f64 = 0.001;
/// Winograd F(4×4, 3×3) in bf16 rounds values its transforms made up to 100 times larger, and
/// its output transform multiplies by up to 64: 2.16% after all 13 convolutions on the same
/// Xeon (pooled cosine 0.99993 or more), under the bound's 2.7%.
const BF16_ERROR_PER_LAYER_F4: f64 = 0.0017;

#[test]
fn the_cpu_base_gives_what_burns_convolutions_give() {
    // Widths ÷8, odd sizes on the way down (72 → 36 → 18 → 9 → 4 → 2), the adaptive pool
    // growing 2×2 to 7×7, a range that stops before block 5 and one that starts inside.
    let config = Vgg16Config {
        width_divisor: 8,
        ..tiny(2)
    };
    let model = config.init(&cpu());
    for algorithm in [
        Algorithm::Winograd(Tiling::F2),
        Algorithm::Winograd(Tiling::F4),
        Algorithm::Im2col,
    ] {
        for (size, n, range) in [
            (32, 3, 0..13),
            (72, 2, 0..13),
            (72, 2, 0..10),
            (40, 1, 0..4),
        ] {
            let x = input(n, size, size as u64);
            let dims = x.dims();
            let expected = values(model.forward_convs(x.clone(), range.clone()));
            let base = CpuConvBase::with_algorithm(&model, range.clone(), algorithm);
            let got = base.forward(&values(x), dims);
            let [c, h, w] = base.output_shape([3, size, size]);
            assert_eq!(got.len(), n * c * h * w);
            assert_eq!(got.len(), expected.len(), "size {size}, convs {range:?}");
            let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let diff = max_abs_diff(&got, &expected);
            assert!(scale > 0.0, "size {size}, convs {range:?}: all zero");
            assert!(
                diff <= 1e-5 * scale.max(1.0),
                "{algorithm:?}, size {size}, convs {range:?}: max abs diff {diff} (largest {scale})"
            );
        }
        // The block-5 part alone, from block 4's output (4×4 at 64 px).
        let x = model.forward_convs(input(2, 64, 7), 0..10);
        let dims = x.dims();
        let expected = values(model.forward_convs(x.clone(), 10..13));
        let got = CpuConvBase::with_algorithm(&model, 10..13, algorithm).forward(&values(x), dims);
        let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        assert!(
            max_abs_diff(&got, &expected) <= 1e-5 * scale,
            "{algorithm:?}, block 5"
        );
    }
}

#[test]
fn the_same_forward_on_wgpu_and_on_the_cpu_agree() {
    let (gpu, adapter) = vggtune::device::probe_wgpu().expect(
        "a wgpu adapter (lavapipe: apt-get install mesa-vulkan-drivers) is needed for this test",
    );
    eprintln!("wgpu adapter: {} ({})", adapter.name, adapter.graphics_api);
    let config = tiny(3);
    let model = config.init(&cpu());
    let x = input(2, 32, 9);
    let on_cpu = values(model.forward(x.clone()));
    let model_gpu = model.to_device(&gpu);
    let on_gpu = values(model_gpu.forward(x.to_device(&gpu)));
    let diff = max_abs_diff(&on_cpu, &on_gpu);
    assert!(diff < 1e-3, "cpu {on_cpu:?} vs wgpu {on_gpu:?}: {diff}");
}

#[test]
fn frozen_convolutions_on_wgpu_split_a_batch_to_fit_the_binding_limit_and_agree() {
    let (gpu, adapter) = vggtune::device::probe_wgpu().expect(
        "a wgpu adapter (lavapipe: apt-get install mesa-vulkan-drivers) is needed for this test",
    );
    let model = tiny(3).init(&cpu());
    let x = input(5, 32, 11);
    let on_cpu = values(FrozenConvs::whole_base(model.clone()).forward(x.clone()));
    let base = FrozenConvs::whole_base(model.to_device(&gpu));
    // The probe's own limit is used on the device (lavapipe: 128 MiB, all 5 images at once).
    assert_eq!(base.images_per_pass([5, 3, 32, 32]), 5, "{adapter:?}");
    // Per image: the first convolution's output 4 × 32 × 32 floats = 16 KiB, the largest.
    let base = base.with_binding_limit(Some(40_000));
    assert_eq!(base.images_per_pass([5, 3, 32, 32]), 2);
    let split = values(base.forward(x.clone().to_device(&gpu)));
    assert_eq!(split.len(), on_cpu.len());
    let diff = max_abs_diff(&split, &on_cpu);
    assert!(diff < 1e-3, "in passes of 2 on wgpu vs the CPU: {diff}");
    let from_values = base.forward_values(values(x), [5, 3, 32, 32]);
    assert!(max_abs_diff(&from_values, &on_cpu) < 1e-3);
    // A limit below one image still runs one image a pass rather than none.
    assert_eq!(
        base.with_binding_limit(Some(1_000))
            .images_per_pass([5, 3, 32, 32]),
        1
    );
}

/// A one-file HTTP server on 127.0.0.1 for the downloader, in one of several moods.
#[derive(Clone, Copy, PartialEq)]
enum Mood {
    Full,
    /// Sends half the body, then hangs up (the first time only).
    CutOnce,
    NotFound,
}

fn serve(
    body: Vec<u8>,
    mood: Mood,
    requests: usize,
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/vgg16.pth", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for i in 0..requests {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut range_start = 0usize;
            let mut request = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if let Some(r) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range_start = r.trim().trim_end_matches('-').parse().unwrap();
                }
                request.push_str(&line);
            }
            seen.push(request);
            if mood == Mood::NotFound {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                continue;
            }
            let rest = &body[range_start..];
            let head = if range_start > 0 {
                format!(
                    "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {}-{}/{}\r\nconnection: close\r\n\r\n",
                    rest.len(),
                    range_start,
                    body.len() - 1,
                    body.len()
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    rest.len()
                )
            };
            let _ = stream.write_all(head.as_bytes());
            let send = if mood == Mood::CutOnce && i == 0 {
                &rest[..rest.len() / 2]
            } else {
                rest
            };
            let _ = stream.write_all(send);
            let _ = stream.flush();
        }
        seen
    });
    (url, handle)
}

fn payload() -> (Vec<u8>, String) {
    let mut rng = vggtune::rng::SplitMix64(5);
    let body: Vec<u8> = (0..3_000_000).map(|_| rng.next_u64() as u8).collect();
    let path = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(path.path(), &body).unwrap();
    let sha = vggtune::model::weights::sha256_file(path.path()).unwrap();
    (body, sha[..8].to_owned())
}

#[test]
fn download_fetches_checks_the_hash_and_renames_atomically() {
    let (body, prefix) = payload();
    let (url, server) = serve(body.clone(), Mood::Full, 1);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("vgg16.pth");
    let mut reports = Vec::new();
    let got = download(
        &url,
        &dest,
        &prefix,
        |p| reports.push(p),
        &AtomicBool::new(false),
    )
    .unwrap();
    server.join().unwrap();
    assert_eq!(got, dest);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let last = reports.last().unwrap();
    assert_eq!(
        (last.bytes, last.total),
        (body.len() as u64, Some(body.len() as u64))
    );
    assert!(last.bytes_per_sec > 0.0);
    assert!(!dir.path().join("vgg16.pth.part").exists());
}

#[test]
fn an_interrupted_download_resumes_where_it_stopped() {
    let (body, prefix) = payload();
    let (url, server) = serve(body.clone(), Mood::CutOnce, 2);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("vgg16.pth");
    let first = download(&url, &dest, &prefix, |_| {}, &AtomicBool::new(false));
    assert!(
        matches!(first, Err(DownloadError::Network { .. })),
        "{first:?}"
    );
    let part = dir.path().join("vgg16.pth.part");
    assert_eq!(
        std::fs::metadata(&part).unwrap().len(),
        body.len() as u64 / 2
    );
    assert!(!dest.exists());
    download(&url, &dest, &prefix, |_| {}, &AtomicBool::new(false)).unwrap();
    let requests = server.join().unwrap();
    assert!(
        requests[1]
            .to_ascii_lowercase()
            .contains(&format!("range: bytes={}-", body.len() / 2)),
        "{requests:?}"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

#[test]
fn a_wrong_hash_deletes_the_file_and_says_so() {
    let (body, _) = payload();
    let (url, server) = serve(body, Mood::Full, 1);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("vgg16.pth");
    let err = download(&url, &dest, "397923af", |_| {}, &AtomicBool::new(false)).unwrap_err();
    server.join().unwrap();
    assert!(matches!(err, DownloadError::Hash { .. }), "{err}");
    assert!(err.to_string().contains("397923af"));
    assert!(!dest.exists() && !dir.path().join("vgg16.pth.part").exists());
}

#[test]
fn http_errors_and_a_gone_server_are_clear_errors() {
    let (url, server) = serve(Vec::new(), Mood::NotFound, 1);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("vgg16.pth");
    let err = download(&url, &dest, "00", |_| {}, &AtomicBool::new(false)).unwrap_err();
    server.join().unwrap();
    assert!(
        matches!(err, DownloadError::Status { status: 404, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("404"));

    let gone = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/vgg16.pth", l.local_addr().unwrap())
    };
    let err = download(&gone, &dest, "00", |_| {}, &AtomicBool::new(false)).unwrap_err();
    assert!(matches!(err, DownloadError::Network { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}

#[test]
fn imagenet_needs_the_1000_way_classifier() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.safetensors");
    export_safetensors(&tiny(2).init(&cpu()), Convention::Torchvision, &path).unwrap();
    let file = read_weights(&path).unwrap();
    assert!(!vggtune::model::imagenet::has_imagenet_classifier(&file));
    let err = vggtune::model::imagenet::imagenet_model(&file, &cpu()).unwrap_err();
    assert!(err.to_string().contains("1000-way"), "{err}");
}

fn torch_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch")
        .join(name)
}

/// The fixed input of `tests/fixtures/torch/make_fixtures.py`: element i is sin(0.01·i).
fn torch_fixture_input() -> Tensor<4> {
    let values: Vec<f32> = (0..2 * 3 * 32 * 32)
        .map(|i| (0.01 * i as f64).sin() as f32)
        .collect();
    Tensor::from_data(TensorData::new(values, [2, 3, 32, 32]), &cpu())
}

#[test]
fn pth_and_safetensors_written_by_pytorch_give_pytorchs_logits() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(torch_fixture("expected.json")).unwrap())
            .unwrap();
    let expected: Vec<f32> = expected["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    let config = tiny(3);
    for name in [
        "vgg16_div16_zip.pth",
        "vgg16_div16_legacy.pth",
        "vgg16_div16_checkpoint.pth",
        "vgg16_div16.safetensors",
    ] {
        let file = read_weights(&torch_fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(file.convention, Convention::Torchvision, "{name}");
        let mut model = config.init(&cpu());
        let report = apply_weights(&mut model, &config, &file, &cpu()).unwrap();
        assert!(report.full_classifier(), "{name}: {:?}", report.messages);
        let logits = values(model.forward(torch_fixture_input()));
        let diff = max_abs_diff(&logits, &expected);
        assert!(
            diff < 1e-5,
            "{name}: logits {logits:?} vs PyTorch {expected:?} ({diff})"
        );
    }
}

#[test]
fn full_size_vgg16_with_torchvisions_head_exports_to_one_onnx_file_that_onnxruntime_runs_alike() {
    // The largest model vggtune makes: 138 M parameters, torchvision's head and preprocessing
    // (here with the centre crop). It is written as one file, under protobuf's 2 GB limit.
    let config = Vgg16Config::new(2);
    let dir = tempfile::tempdir().unwrap();
    let model_path = dir.path().join("big.vggtune");
    let preprocessing = Preprocessing {
        resize: ResizeMode::ShorterSideCenterCrop,
        ..Preprocessing::torchvision()
    };
    let header = BundleHeader {
        format_version: bundle::FORMAT_VERSION,
        vggtune_version: vggtune::VERSION.to_owned(),
        classes: vec!["cat".into(), "dog".into()],
        preprocessing,
        model: config,
        trained: "all".into(),
        base_weights_sha256: "random".into(),
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
    };
    let mut model = config.init(&cpu());
    // Real ImageNet convolutions, so photos give different features whatever Burn's unseeded
    // initialisation draws for the head: the probabilities differ from 50% and from photo to
    // photo, so that agreeing on them means something.
    let file = read_weights(&onnx_fixture()).unwrap();
    apply_weights(&mut model, &config, &file, &cpu()).unwrap();
    // A head drawn from a fixed seed (Burn's own initialisation is unseeded), its last layer
    // steep enough that the photos' probabilities are far from 50% and from each other.
    let mut rng = vggtune::rng::SplitMix64(17);
    for (j, dense) in model.classifier.iter_mut().enumerate() {
        let [inputs, outputs] = dense.weight.shape().dims::<2>();
        let scale = (3.0 / inputs as f32).sqrt() * if j == 2 { 8.0 } else { 1.0 };
        let values: Vec<f32> = (0..inputs * outputs)
            .map(|_| (2.0 * rng.next_f32() - 1.0) * scale)
            .collect();
        dense.weight = burn::module::Param::from_tensor(Tensor::from_data(
            TensorData::new(values, [inputs, outputs]),
            &cpu(),
        ));
        dense.bias = Some(burn::module::Param::from_tensor(Tensor::zeros(
            [outputs],
            &cpu(),
        )));
    }
    let weight_bytes = 4 * model.num_params() as u64;
    bundle::save(&model_path, &header, &model, None).unwrap();
    drop(model);
    let onnx = dir.path().join("big.onnx");
    let said = export_model(&model_path, ExportFormat::Onnx, &onnx).unwrap();
    assert!(said.contains("2 classes: cat, dog"), "{said}");
    let size = std::fs::metadata(&onnx).unwrap().len();
    eprintln!("full-size ONNX export: {size} bytes");
    assert!(
        size > weight_bytes && size < weight_bytes + 100_000 && size < (1 << 31) - 1,
        "{size} bytes: one file holds all weights, under 2 GB"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() == 2,
        "no external data files and no temp file left"
    );

    let train = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/dogscats/train");
    let photos: Vec<PathBuf> = ["cat.7.jpg", "dog.8.jpg", "dog.9.jpg"]
        .iter()
        .map(|n| train.join(n))
        .collect();
    let (ours, theirs, info) = common::vggtune_and_onnxruntime(&model_path, &onnx, &photos, 3);
    let diff = max_abs_diff(&ours, &theirs);
    eprintln!("ONNX export, torchvision head: max |vggtune - onnxruntime| = {diff:e}; {ours:?}");
    assert!(diff <= 1e-4, "vggtune {ours:?} vs onnxruntime {theirs:?}");
    let spread = ours.iter().fold(0.0f32, |m, p| m.max((p - 0.5).abs()));
    assert!(spread > 0.05, "the probabilities say something: {ours:?}");
    let first: Vec<f32> = ours.iter().step_by(2).copied().collect();
    let range = first
        .iter()
        .fold(0.0f32, |m, a| m.max((a - first[0]).abs()));
    assert!(range > 1e-3, "photos get different probabilities: {ours:?}");
    assert_eq!(
        info["input"]["shape"],
        serde_json::json!(["batch", 3, 224, 224])
    );
    assert_eq!(info["result_shape"], serde_json::json!([3, 2]));
    assert!(
        info["metadata"]["resize"]
            .as_str()
            .unwrap()
            .contains("shorter side is 256 pixels"),
        "{info}"
    );

    // A model file that is not one is refused with its name; nothing is written.
    let not_a_model = dir.path().join("notes.vggtune");
    std::fs::write(&not_a_model, b"hello").unwrap();
    let out = dir.path().join("never.onnx");
    let err = export_model(&not_a_model, ExportFormat::Onnx, &out).unwrap_err();
    assert!(err.to_string().contains("notes.vggtune"), "{err}");
    assert!(!out.exists());
}

/// A protobuf field: key and length-delimited bytes.
fn pb_bytes(field: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = pb_varint((field << 3) | 2);
    out.extend(pb_varint(bytes.len() as u64));
    out.extend_from_slice(bytes);
    out
}

fn pb_varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8 & 0x7F) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

#[test]
fn a_crafted_onnx_whose_dimensions_overflow_is_refused_with_its_name() {
    // An initializer of dims [2^62 + 1, 4] (their product wraps to 4 in 64 bits) with 16 bytes,
    // used by a MatMul.
    let mut tensor = Vec::new();
    for d in [(1u64 << 62) + 1, 4] {
        tensor.extend(pb_varint(1 << 3));
        tensor.extend(pb_varint(d));
    }
    tensor.extend(pb_varint(2 << 3));
    tensor.extend(pb_varint(1));
    tensor.extend(pb_bytes(8, b"W"));
    tensor.extend(pb_bytes(9, &[0u8; 16]));
    let mut node = pb_bytes(1, b"x");
    node.extend(pb_bytes(1, b"W"));
    node.extend(pb_bytes(2, b"y"));
    node.extend(pb_bytes(4, b"MatMul"));
    let mut graph = pb_bytes(1, &node);
    graph.extend(pb_bytes(5, &tensor));
    let mut model = pb_varint(1 << 3);
    model.extend(pb_varint(7));
    model.extend(pb_bytes(7, &graph));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crafted.onnx");
    std::fs::write(&path, model).unwrap();
    let err = read_weights(&path).unwrap_err().to_string();
    assert!(
        err.contains("crafted.onnx") && err.contains("larger than any tensor of VGG16"),
        "{err}"
    );
}

#[test]
fn weights_import_refuses_a_file_without_a_vgg16_base_and_copies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let head_only = dir.path().join("head-only.safetensors");
    write_safetensors(
        &head_only,
        &[(
            "classifier.6.weight".to_owned(),
            RawTensor::new("classifier.6.weight", vec![2, 3], vec![0.5; 6]).unwrap(),
        )],
    );
    let err = vggtune::model::download::import_into_cache(&head_only, &cache)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("head-only.safetensors") && err.contains("features.0.weight"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(&cache).map_or(true, |mut d| d.next().is_none()),
        "nothing is copied into the cache"
    );
    // The same with a base whose block 3 has the wrong width.
    let file = read_weights(&torch_fixture("vgg16_div16.safetensors")).unwrap();
    let mut tensors: Vec<(String, RawTensor)> = file.tensors.into_iter().collect();
    for (name, t) in &mut tensors {
        if name == "features.10.weight" {
            *t = RawTensor::new(name, vec![16, 8, 3, 1], vec![0.0; 384]).unwrap();
        }
    }
    let bent = dir.path().join("bent.safetensors");
    write_safetensors(&bent, &tensors);
    let err = vggtune::model::download::import_into_cache(&bent, &cache)
        .unwrap_err()
        .to_string();
    assert!(err.contains("features.10.weight"), "{err}");
    // A real (divided) VGG16 base is taken.
    let ok = vggtune::model::download::import_into_cache(
        &torch_fixture("vgg16_div16.safetensors"),
        &cache,
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn a_pth_whose_tensor_claims_more_than_vgg16_holds_is_refused_before_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/craft_pth.py");
    for (file, dims, says) in [
        // 2^40 floats (4 TiB) in one tensor: burn-store's reader refuses past 10 GiB itself;
        // the next one, one float past VGG16's largest layer, is vggtune's own check.
        (
            "bomb.pth",
            vec!["1099511627776"],
            "above the 10737418240 byte limit",
        ),
        (
            "big.pth",
            vec!["25088", "4097"],
            "larger than any tensor of VGG16",
        ),
    ] {
        let path = dir.path().join(file);
        let made = std::process::Command::new(common::reference_python())
            .arg(&script)
            .arg(&path)
            .arg("features.0.weight")
            .args(&dims)
            .output()
            .expect("python runs");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let err = read_weights(&path).unwrap_err().to_string();
        assert!(err.contains(file) && err.contains(says), "{err}");
    }
}
