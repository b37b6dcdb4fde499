//! A [`Classifier`]: a saved model that predicts image files and folders; and the writers of
//! prediction CSVs and Kaggle submissions.
//!
//! Uses the bundle's own preprocessing (the same function training used), so a model and the app
//! never disagree on how pixels are prepared.

mod evaluate;
pub mod heatmap;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::Module as _;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use rayon::prelude::*;

use crate::data::scan::{self, SkipReason};
use crate::data::{DecodeLimits, decode_prepared};
use crate::device::{self, ComputeDevice, DeviceChoice, DeviceError};
use crate::metrics::argmax;
use crate::model::Vgg16Config;
use crate::model::bundle::{self, BundleError, BundleHeader};
use crate::model::frozen::FrozenConvs;
use crate::model::host::to_host;
use crate::typical::{Judgement, NONE_OF_THESE, Typicality};

pub use crate::data::has_image_extension;
pub use evaluate::{ClassMapping, DatasetEvaluation, Leak, match_classes};
/// One image's prediction.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// The image.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub path: PathBuf,
    /// Probability per class, in the model's class order: calibrated with the model's
    /// temperature ([`crate::calibration`]).
    pub probabilities: Vec<f32>,
    /// The most likely class's index.
    pub class: usize,
    /// How typical the photo is of the training photos; `None` when the verdict is off or the
    /// model keeps no training features ([`Classifier::verdict_off`] says why).
    pub typicality: Option<Judgement>,
}

impl Prediction {
    /// Whether the photo is *none of these*: unlike the photos the model was trained on.
    pub fn is_unknown(&self) -> bool {
        self.typicality.is_some_and(|j| !j.known)
    }

    /// The verdict in words: the class's name, or [`NONE_OF_THESE`].
    pub fn verdict<'a>(&self, classes: &'a [String]) -> &'a str {
        if self.is_unknown() {
            NONE_OF_THESE
        } else {
            classes.get(self.class).map_or("", String::as_str)
        }
    }
}

/// One photo as a model sees it, for whoever compares ways of scoring it (the benchmark of
/// the *none of these* verdict): its calibrated probabilities, the photo view's logits and its
/// pooled block-5 features.
#[derive(Clone, Debug)]
pub struct Scored {
    /// The image.
    pub path: PathBuf,
    /// As [`Prediction::probabilities`].
    pub probabilities: Vec<f32>,
    /// The network's logits for the photo as it is.
    pub logits: Vec<f32>,
    /// Its pooled block-5 features (the global average of the base's output).
    pub features: Vec<f32>,
}

/// An image that could not be classified, and why.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Unclassified {
    /// The file.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// The device to predict with a model of this shape: `choice`, checked against the GPU's binding
/// limit for the model's largest weight and one image's activations (`auto` moves to the CPU
/// when they do not fit; a forced GPU is an error that says why).
pub fn device_for(choice: DeviceChoice, model: &Vgg16Config) -> Result<ComputeDevice, DeviceError> {
    device::select_fitting(choice, |limit| model.gpu_needs(13, 1, limit))
}

/// Why a saved model could not be loaded for predictions.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The device.
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// A loaded model, ready to predict.
pub struct Classifier {
    /// What the model is (classes, preprocessing, history).
    pub header: BundleHeader,
    /// The convolution base (the fast CPU path on the CPU) and, through it, the whole model.
    base: FrozenConvs,
    device: Device,
    /// The dense layers on the host, copied on the first heatmap.
    host_head: std::sync::OnceLock<heatmap::HostHead>,
    /// Predict with the test-time augmentation (the mean of each photo's views: its mirror
    /// image, and the photo made square the other way when the model says so); shared with
    /// whoever holds [`Self::mirror_switch`] (the window flips it without waiting for the
    /// model's lock).
    mirror: std::sync::Arc<AtomicBool>,
    /// Whether the test-time augmentation includes the other square (the model's
    /// `square_tta`, unless [`Self::set_square_tta`] turned it off).
    squares: bool,
    /// The training photos' features, when the model keeps them.
    typical: Option<Typicality>,
    /// Whether predictions carry the *none of these* verdict (shared like [`Self::mirror`]).
    verdict: std::sync::Arc<AtomicBool>,
}

impl Classifier {
    /// Loads a saved model onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self, BundleError> {
        let loaded = bundle::load(path, device)?;
        let header = loaded.header;
        let tta = header.mirror_tta || header.square_tta;
        Ok(Self {
            squares: header.square_tta,
            header,
            base: FrozenConvs::whole_base(loaded.model.valid()),
            device: device.clone(),
            host_head: std::sync::OnceLock::new(),
            mirror: std::sync::Arc::new(AtomicBool::new(tta)),
            typical: loaded.typicality,
            verdict: std::sync::Arc::new(AtomicBool::new(true)),
        })
    }

    /// Why predictions carry no *none of these* verdict, when they do not: the switch is off,
    /// or the model keeps no training photos' features.
    pub fn verdict_off(&self) -> Option<&'static str> {
        if self.typical.is_none() {
            Some(crate::typical::NO_FEATURES)
        } else if !self.verdict.load(Ordering::Relaxed) {
            Some("the none-of-these verdict is switched off")
        } else {
            None
        }
    }

    /// Turns the *none of these* verdict on or off (on by default); it applies from the next
    /// call.
    pub fn set_verdict(&self, on: bool) {
        self.verdict.store(on, Ordering::Relaxed);
    }

    /// The switch of the verdict, to flip from another thread.
    pub fn verdict_switch(&self) -> std::sync::Arc<AtomicBool> {
        self.verdict.clone()
    }

    /// The training photos' features, when the model keeps them.
    pub fn typicality(&self) -> Option<&Typicality> {
        self.typical.as_ref()
    }

    /// How typical a photo with these pooled features is, when the verdict is `on` (read once
    /// a call, as the views are, however the switch moves meanwhile).
    fn judge(&self, features: &[f32], on: bool) -> Option<Judgement> {
        self.typical
            .as_ref()
            .filter(|_| on)
            .map(|t| t.judge(features))
    }

    /// Loads a saved model onto the device `choice` gives for it ([`device_for`]: its header is
    /// read first, so a model too large for the GPU goes to the CPU or is refused with why).
    pub fn load_for(path: &Path, choice: DeviceChoice) -> Result<Self, LoadError> {
        let header = bundle::read_header(path)?;
        let chosen = device_for(choice, &header.model)?;
        Ok(Self::load(path, &chosen.device)?)
    }

    /// Whether predictions use the test-time augmentation (each photo with its mirror image,
    /// and made square the other way when the model says so).
    pub fn mirror_tta(&self) -> bool {
        self.mirror.load(Ordering::Relaxed)
    }

    /// Leaves the other square out of the test-time augmentation (or lets it in again, when the
    /// model has it): the ONNX export, whose input is already square, averages the mirror only.
    pub fn set_square_tta(&mut self, on: bool) {
        self.squares = on && self.header.square_tta;
    }

    /// The views the test-time augmentation averages now, besides the photo: (its mirror image,
    /// the other square). With the augmentation on and neither recorded in the model (models
    /// from before it, or trained without), the mirror.
    fn views(&self) -> (bool, bool) {
        if !self.mirror_tta() {
            return (false, false);
        }
        let recorded = self.header.mirror_tta || self.header.square_tta;
        (self.header.mirror_tta || !recorded, self.squares)
    }

    /// Turns the test-time augmentation (every view the model records: mirror image, other
    /// square) on or off (the model file says which is the default); it applies from the next
    /// call. Heatmaps always explain the photo as it is.
    pub fn set_mirror_tta(&self, on: bool) {
        self.mirror.store(on, Ordering::Relaxed);
    }

    /// The switch of the mirror test-time augmentation, to flip from another thread.
    pub fn mirror_switch(&self) -> std::sync::Arc<AtomicBool> {
        self.mirror.clone()
    }

    /// The class names.
    pub fn classes(&self) -> &[String] {
        &self.header.classes
    }

    /// Predicts decoded-or-not images in batches of `batch_size`; `progress(done, total)` after
    /// each batch.
    pub fn predict(
        &self,
        paths: &[PathBuf],
        batch_size: usize,
        progress: impl FnMut(usize, usize),
    ) -> (Vec<Prediction>, Vec<Unclassified>) {
        self.predict_until(paths, batch_size, progress, &AtomicBool::new(false))
    }

    /// [`Self::predict`] that stops before the next batch once `cancel` is set (the photos not
    /// reached get neither a prediction nor a reason).
    pub fn predict_until(
        &self,
        paths: &[PathBuf],
        batch_size: usize,
        progress: impl FnMut(usize, usize),
        cancel: &AtomicBool,
    ) -> (Vec<Prediction>, Vec<Unclassified>) {
        let on = self.verdict.load(Ordering::Relaxed);
        let (scored, failed) = self.score_until(paths, batch_size, progress, cancel);
        let predictions = scored
            .into_iter()
            .map(|s| {
                let judged = self.judge(&s.features, on);
                Prediction::new(s.path, s.probabilities, judged)
            })
            .collect();
        (predictions, failed)
    }

    /// Each photo's calibrated probabilities, logits and pooled features ([`Scored`]), as
    /// [`Self::predict_until`] computes them.
    pub fn score_until(
        &self,
        paths: &[PathBuf],
        batch_size: usize,
        progress: impl FnMut(usize, usize),
        cancel: &AtomicBool,
    ) -> (Vec<Scored>, Vec<Unclassified>) {
        let n = self.header.classes.len();
        let channels = self.header.model.conv_channels()[12].max(1);
        // One setting for the whole call, however the switch moves meanwhile.
        let (mirror, squares) = self.views();
        let mut scored = Vec::new();
        let batches = (batch_size, squares);
        let failed = self.for_each_batch(paths, batches, progress, cancel, |ok, x, other| {
            let out = self.outputs(x, other, mirror);
            let rows = out
                .probabilities
                .chunks(n)
                .zip(out.logits.chunks(n))
                .zip(out.features.chunks(channels));
            for (path, ((p, logits), features)) in ok.into_iter().zip(rows) {
                scored.push(Scored {
                    path,
                    probabilities: p.to_vec(),
                    logits: logits.to_vec(),
                    features: features.to_vec(),
                });
            }
        });
        (scored, failed)
    }

    /// [`Self::predict_until`] with the Grad-CAM heatmap of every class for each photo
    /// ([`heatmap::explain`]): the same forward pass, stopped at block 5's last activation, then
    /// the head and its backward pass on the host. The maps explain the photo as it is; the
    /// probabilities are the model's predictions (the mean over its views when the test-time
    /// augmentation is on).
    pub fn explain_until(
        &self,
        paths: &[PathBuf],
        batch_size: usize,
        progress: impl FnMut(usize, usize),
        cancel: &AtomicBool,
    ) -> (Vec<(Prediction, heatmap::ClassMaps)>, Vec<Unclassified>) {
        let head = self
            .host_head
            .get_or_init(|| heatmap::HostHead::of(self.base.model()));
        let (mirror, squares) = self.views();
        let on = self.verdict.load(Ordering::Relaxed);
        let n = self.header.classes.len();
        let mut explained = Vec::new();
        let batches = (batch_size, squares);
        let failed = self.for_each_batch(paths, batches, progress, cancel, |ok, x, other| {
            // The other views' predictions, averaged with the photo's below.
            let others: Vec<Vec<f32>> = view_inputs(x.clone(), other, mirror)
                .into_iter()
                .skip(1)
                .map(|v| self.forward_probabilities(v))
                .collect();
            let (a, shape) = self.base.last_activation(x);
            let per_image = shape.iter().product::<usize>().max(1);
            let mut results: Vec<heatmap::Explained> = a
                .par_chunks(per_image)
                .map(|a| heatmap::explain(head, a, shape))
                .collect();
            // The photo's probabilities through the head prediction runs (in bf16 where its
            // wide layers do), not the host copy that explains it, so both give one answer.
            let photo = self.head_probabilities(&results);
            for (i, e) in results.iter_mut().enumerate() {
                let mut views = vec![photo[i * n..(i + 1) * n].to_vec()];
                views.extend(others.iter().map(|o| o[i * n..(i + 1) * n].to_vec()));
                e.probabilities = mean_of_views(views);
            }
            for (path, e) in ok.into_iter().zip(results) {
                let pooled = crate::model::vgg::global_average(&e.pooled);
                let judged = self.judge(&pooled, on);
                let p = self.calibrated(e.probabilities);
                explained.push((Prediction::new(path, p, judged), e.maps));
            }
        });
        (explained, failed)
    }

    /// A batch's outputs (row-major): the class probabilities, the mean over each photo's
    /// views (the photo `x`, its mirror image with `mirror`, the photo made square the other
    /// way `other` with its own mirror image when `mirror`), calibrated; and the photo's own
    /// logits and pooled features.
    fn outputs(&self, x: Tensor<4>, other: Option<Tensor<4>>, mirror: bool) -> BatchOutputs {
        let mut views = view_inputs(x, other, mirror).into_iter();
        let Some(photo) = views.next() else {
            return BatchOutputs::default();
        };
        let base = self.base.forward(photo);
        let features = crate::model::vgg::global_average(&to_host(base.clone()));
        let logits = self.base.forward_head(base);
        let mut of_views = vec![to_host(softmax(logits.clone(), 1))];
        of_views.extend(views.map(|v| self.forward_probabilities(v)));
        let n = self.header.classes.len().max(1);
        let probabilities = mean_of_views(of_views)
            .chunks(n)
            .flat_map(|p| self.calibrated(p.to_vec()))
            .collect();
        BatchOutputs {
            probabilities,
            logits: to_host(logits),
            features,
        }
    }

    /// A photo's probabilities calibrated with the model's temperature.
    fn calibrated(&self, probabilities: Vec<f32>) -> Vec<f32> {
        match self.header.temperature() {
            1.0 => probabilities,
            t => crate::calibration::calibrate(&probabilities, t),
        }
    }

    /// The class probabilities (row-major) of explained photos, from their head inputs
    /// (`[C, 7, 7]` each) through [`FrozenConvs::forward_head`].
    fn head_probabilities(&self, explained: &[heatmap::Explained]) -> Vec<f32> {
        let side = crate::model::vgg::POOLED_SIDE;
        let len = explained.first().map_or(0, |e| e.pooled.len());
        let values: Vec<f32> = explained.iter().flat_map(|e| e.pooled.clone()).collect();
        let shape = [explained.len(), len / (side * side), side, side];
        let x = Tensor::<4>::from_data(TensorData::new(values, shape), &self.device);
        to_host(softmax(self.base.forward_head(x), 1))
    }

    /// One view's class probabilities for a batch (row-major).
    fn forward_probabilities(&self, x: Tensor<4>) -> Vec<f32> {
        to_host(softmax(self.base.forward_head(self.base.forward(x)), 1))
    }

    /// Decodes `paths` in batches of `batch_size` and hands each batch's readable photos, their
    /// input tensor and (with `squares`) their input made square the other way to `run`;
    /// returns the photos that could not be read, with why.
    fn for_each_batch(
        &self,
        paths: &[PathBuf],
        (batch_size, squares): (usize, bool),
        mut progress: impl FnMut(usize, usize),
        cancel: &AtomicBool,
        mut run: impl FnMut(Vec<PathBuf>, Tensor<4>, Option<Tensor<4>>),
    ) -> Vec<Unclassified> {
        let pre = self.header.preprocessing;
        let s = pre.input_size as usize;
        let mut failed = Vec::new();
        let mut done = 0;
        // The batches share the base's buffers; an idle model holds none (`model::buffers`).
        let _held = self.base.hold_buffers();
        for chunk in paths.chunks(batch_size.max(1)) {
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            let (mut values, mut other_values) = (Vec::new(), Vec::new());
            let mut ok = Vec::new();
            let chunk_paths: Vec<&Path> = chunk.iter().map(PathBuf::as_path).collect();
            // With the other square, each photo's two inputs one after the other.
            let prepared = decode_prepared(&chunk_paths, &DecodeLimits::default(), |_, photo| {
                let mut input = pre.apply(photo, None);
                if squares {
                    input.extend(pre.other_square().apply(photo, None));
                }
                input
            });
            for (path, photo) in chunk.iter().zip(prepared) {
                match photo {
                    Ok(input) => {
                        let (main, other) = input.split_at(3 * s * s);
                        values.extend_from_slice(main);
                        other_values.extend_from_slice(other);
                        ok.push(path.clone());
                    }
                    Err(e) => failed.push(Unclassified {
                        path: path.clone(),
                        reason: e.reason(),
                    }),
                }
            }
            if !ok.is_empty() {
                let shape = [ok.len(), 3, s, s];
                let x = Tensor::<4>::from_data(TensorData::new(values, shape), &self.device);
                let other = squares.then(|| {
                    Tensor::<4>::from_data(TensorData::new(other_values, shape), &self.device)
                });
                run(ok, x, other);
            }
            done += chunk.len();
            progress(done, paths.len());
        }
        failed
    }
}

/// A batch's views, the photo `x` first: its mirror image (with `mirror`), the photo made
/// square the other way (`other`) and that one's mirror image: the order of the run's
/// validation views (`View::predicted`).
fn view_inputs(x: Tensor<4>, other: Option<Tensor<4>>, mirror: bool) -> Vec<Tensor<4>> {
    let mut views = Vec::new();
    for square in std::iter::once(x).chain(other) {
        let mirrored = mirror.then(|| square.clone().flip([3]));
        views.push(square);
        views.extend(mirrored);
    }
    views
}

pub use crate::metrics::mean_of_views;

/// What [`Classifier::outputs`] gives for a batch.
#[derive(Default)]
struct BatchOutputs {
    probabilities: Vec<f32>,
    logits: Vec<f32>,
    features: Vec<f32>,
}

impl Prediction {
    fn new(path: PathBuf, probabilities: Vec<f32>, typicality: Option<Judgement>) -> Self {
        Self {
            class: argmax(&probabilities),
            probabilities,
            path,
            typicality,
        }
    }
}

/// The images among `inputs` that can be classified, and every other file with why: files as
/// given, folders walked in name order (links followed). Each candidate is checked as the scan
/// checks training photos (empty, not an image, unreadable or truncated, too many pixels,
/// permission, link loops and broken links, FIFOs and devices), on all cores, so every file
/// either gets a prediction or a reason, never silence.
pub fn collect_images(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<Unclassified>) {
    let (candidates, mut rejected) = candidates_in(inputs);
    let limits = DecodeLimits::default();
    let checked: Vec<Result<(), SkipReason>> = candidates
        .par_iter()
        .map(|p| scan::check_image(p, &limits))
        .collect();
    let mut images = Vec::with_capacity(candidates.len());
    for (path, check) in candidates.into_iter().zip(checked) {
        match check {
            Ok(()) => images.push(path),
            Err(reason) => rejected.push(Unclassified {
                reason: reason.to_string(),
                path,
            }),
        }
    }
    (images, rejected)
}

/// The usable photos under `folder` as a scan lists them (paths relative to it, sorted; the
/// label 0), each file checked once, and every other file with why: the second folder of a
/// check, the pool of a sort.
pub fn entries_under(folder: &Path) -> (Vec<crate::data::ImageEntry>, Vec<Unclassified>) {
    let (candidates, mut rejected) = candidates_in(&[folder.to_owned()]);
    let (mut entries, bad) = scan::entries_of(folder, candidates, 0, &DecodeLimits::default());
    rejected.extend(bad.into_iter().map(|s| Unclassified {
        reason: s.message,
        path: s.path,
    }));
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    (entries, rejected)
}

/// The files among `inputs` that may be images (files as given, folders walked in name
/// order, links followed), and every other entry with why.
fn candidates_in(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<Unclassified>) {
    let mut candidates = Vec::new();
    let mut rejected = Vec::new();
    let mut reject = |path: PathBuf, reason: &dyn std::fmt::Display| {
        rejected.push(Unclassified {
            reason: reason.to_string(),
            path,
        });
    };
    for input in inputs {
        match std::fs::metadata(input) {
            Ok(m) if m.is_dir() => {
                let walk = walkdir::WalkDir::new(input)
                    .follow_links(true)
                    .sort_by(|a, b| {
                        natural_cmp(
                            &a.file_name().to_string_lossy(),
                            &b.file_name().to_string_lossy(),
                        )
                    });
                for entry in walk {
                    match entry {
                        Ok(e) if e.file_type().is_dir() => {}
                        Ok(e) if e.file_type().is_file() && has_image_extension(e.path()) => {
                            candidates.push(e.into_path());
                        }
                        Ok(e) if e.file_type().is_file() => {
                            reject(e.into_path(), &SkipReason::NotAnImage);
                        }
                        Ok(e) => reject(e.into_path(), &SkipReason::NotAFile),
                        Err(e) => {
                            let path = e.path().map_or_else(|| input.clone(), Path::to_owned);
                            reject(path, &scan::walk_error_reason(&e));
                        }
                    }
                }
            }
            // A file named explicitly is tried whatever its extension: its content decides.
            Ok(m) if m.is_file() => candidates.push(input.clone()),
            Ok(_) => reject(input.clone(), &SkipReason::NotAFile),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && input.is_symlink() => {
                reject(input.clone(), &SkipReason::BrokenLink);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                reject(input.clone(), &"no such file or folder");
            }
            Err(e) => reject(input.clone(), &scan::io_reason(&e)),
        }
    }
    (candidates, rejected)
}

/// A probability as a percentage with the digits that tell it apart: "63.2%", but "99.97%" and
/// "0.03%" near the ends (where "100.0%" would hide a 0.03% chance).
pub fn confidence_text(p: f32) -> String {
    let percent = 100.0 * p;
    if (0.1..=99.9).contains(&percent) {
        format!("{percent:.1}%")
    } else {
        format!("{percent:.2}%")
    }
}

/// Orders names as people count: `2.jpg` before `10.jpg` (runs of digits compare by value).
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, _) => return std::cmp::Ordering::Less,
            (_, None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let run = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (run(a), run(b));
                let (da, db) = (&a[..na], &b[..nb]);
                // Compare by value: strip leading zeros, then by length, then digit by digit.
                let (ta, tb) = (strip_zeros(da), strip_zeros(db));
                let by_value = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                if by_value != std::cmp::Ordering::Equal {
                    return by_value;
                }
                (a, b) = (&a[na..], &b[nb..]);
            }
            (Some(x), Some(y)) => {
                let by_char = x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase());
                if by_char != std::cmp::Ordering::Equal {
                    return by_char;
                }
                (a, b) = (&a[1..], &b[1..]);
            }
        }
    }
}

/// A run of digits without its leading zeros.
fn strip_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros..]
}

/// Writes predictions as CSV (`path,predicted,<class probabilities…>,verdict,typicality`:
/// the most likely class, its calibrated probabilities, then the class or "none of these", and
/// the share of training photos less typical, empty when the verdict is off), atomically.
pub fn write_csv(
    path: &Path,
    classes: &[String],
    predictions: &[Prediction],
) -> std::io::Result<()> {
    let mut out = String::from("path,predicted");
    for c in classes {
        out.push(',');
        out.push_str(&csv_field(&format!("p_{c}")));
    }
    out.push_str(",verdict,typicality\n");
    for p in predictions {
        let class = classes
            .get(p.class)
            .filter(|_| p.probabilities.len() == classes.len());
        let Some(class) = class else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the predictions were made by another model: classify the photos again",
            ));
        };
        out.push_str(&csv_field(&p.path.display().to_string()));
        out.push(',');
        out.push_str(&csv_field(class));
        for v in &p.probabilities {
            out.push_str(&format!(",{v:.6}"));
        }
        out.push(',');
        out.push_str(&csv_field(p.verdict(classes)));
        out.push(',');
        if let Some(j) = p.typicality {
            out.push_str(&format!("{:.4}", j.typicality));
        }
        out.push('\n');
    }
    crate::fsutil::write_atomic(path, out.as_bytes())
}

pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Why a submission could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SubmissionError {
    /// The model has no "dog" class.
    #[error(
        "the model's classes {0:?} have no 'dog' (or 'dogs'): a Dogs vs. Cats submission needs one"
    )]
    NoDogClass(Vec<String>),
    /// A file name is not Kaggle's `N.jpg`.
    #[error("{0}: Kaggle test files are named by number (1.jpg, 2.jpg, …)")]
    NotAnId(PathBuf),
    /// A prediction was made by a model with other classes.
    #[error("{0}: this prediction was made by another model: classify the photos again")]
    OtherModel(PathBuf),
    /// The clip is outside [0, 0.5).
    #[error("clip {0} must be from 0 to below 0.5")]
    BadClip(f64),
    /// Writing failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The default clip of a Kaggle submission: P(dog) is written within [0.02, 0.98], so one
/// confident mistake costs at most −ln(0.02) ≈ 3.9 of log loss instead of up to 34.5.
pub const KAGGLE_CLIP: f64 = 0.02;

/// The rows of a Kaggle Dogs vs. Cats submission: (id, P(dog) clipped to [clip, 1 − clip]),
/// sorted by id.
pub fn kaggle_rows(
    classes: &[String],
    predictions: &[Prediction],
    clip: f64,
) -> Result<Vec<(u64, f64)>, SubmissionError> {
    if !(0.0..0.5).contains(&clip) {
        return Err(SubmissionError::BadClip(clip));
    }
    let dog = classes
        .iter()
        .position(|c| c.eq_ignore_ascii_case("dog") || c.eq_ignore_ascii_case("dogs"))
        .ok_or_else(|| SubmissionError::NoDogClass(classes.to_vec()))?;
    let mut rows = predictions
        .iter()
        .map(|p| {
            let id = p
                .path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| SubmissionError::NotAnId(p.path.clone()))?;
            let p_dog = p
                .probabilities
                .get(dog)
                .filter(|_| p.probabilities.len() == classes.len())
                .ok_or_else(|| SubmissionError::OtherModel(p.path.clone()))?;
            Ok((id, f64::from(*p_dog).clamp(clip, 1.0 - clip)))
        })
        .collect::<Result<Vec<_>, SubmissionError>>()?;
    rows.sort_by_key(|r| r.0);
    Ok(rows)
}

/// Writes a Kaggle submission (`id,label`), atomically.
pub fn write_submission(path: &Path, rows: &[(u64, f64)]) -> Result<(), SubmissionError> {
    let mut out = String::from("id,label\n");
    for (id, p) in rows {
        out.push_str(&format!("{id},{p:.6}\n"));
    }
    crate::fsutil::write_atomic(path, out.as_bytes()).map_err(|e| SubmissionError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidences_keep_the_digits_that_matter_and_names_sort_as_people_count() {
        assert_eq!(confidence_text(0.632), "63.2%");
        assert_eq!(confidence_text(0.9997), "99.97%");
        assert_eq!(confidence_text(0.0003), "0.03%");
        let mut names = vec![
            "10.jpg",
            "2.jpg",
            "1.jpg",
            "100.jpg",
            "Cat.3.jpg",
            "cat.20.jpg",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "1.jpg",
                "2.jpg",
                "10.jpg",
                "100.jpg",
                "Cat.3.jpg",
                "cat.20.jpg"
            ]
        );
        assert_eq!(natural_cmp("a01", "a1"), std::cmp::Ordering::Equal);
    }

    #[test]
    fn another_models_predictions_are_refused_not_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let three = vec!["a".into(), "b".into(), "dog".into()];
        let p = Prediction {
            path: PathBuf::from("1.jpg"),
            class: 2,
            probabilities: vec![0.1, 0.1, 0.8],
            typicality: None,
        };
        let two: Vec<String> = vec!["cat".into(), "dog".into()];
        assert!(write_csv(&dir.path().join("p.csv"), &two, std::slice::from_ref(&p)).is_err());
        assert!(matches!(
            kaggle_rows(&two, std::slice::from_ref(&p), KAGGLE_CLIP),
            Err(SubmissionError::OtherModel(_))
        ));
        assert!(kaggle_rows(&three, &[p], KAGGLE_CLIP).is_ok());
    }

    fn pred(name: &str, p_dog: f32) -> Prediction {
        Prediction {
            path: PathBuf::from(format!("test/{name}")),
            probabilities: vec![1.0 - p_dog, p_dog],
            class: usize::from(p_dog > 0.5),
            typicality: None,
        }
    }

    #[test]
    fn kaggle_rows_are_sorted_clipped_p_dog() {
        let classes = vec!["cat".to_owned(), "dog".to_owned()];
        let rows = kaggle_rows(
            &classes,
            &[
                pred("10.jpg", 0.999),
                pred("2.jpg", 0.3),
                pred("1.jpg", 0.0001),
            ],
            0.02,
        )
        .unwrap();
        assert_eq!(rows, vec![(1, 0.02), (2, 0.30000001192092896), (10, 0.98)]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("submission.csv");
        write_submission(&path, &rows).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "id,label\n1,0.020000\n2,0.300000\n10,0.980000\n"
        );
    }

    #[test]
    fn submissions_need_a_dog_class_and_numeric_ids() {
        let classes = vec!["ant".to_owned(), "bee".to_owned()];
        assert!(matches!(
            kaggle_rows(&classes, &[], 0.02),
            Err(SubmissionError::NoDogClass(_))
        ));
        let classes = vec!["cats".to_owned(), "dogs".to_owned()];
        assert!(matches!(
            kaggle_rows(&classes, &[pred("cat.1.jpg", 0.5)], 0.02),
            Err(SubmissionError::NotAnId(_))
        ));
        assert!(matches!(
            kaggle_rows(&classes, &[], 0.7),
            Err(SubmissionError::BadClip(_))
        ));
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
