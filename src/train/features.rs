//! Where a batch's input comes from: the feature pass that fills the cache with the frozen
//! convolutions' output for every photo (reading, hashing and decoding on all cores), the
//! features kept in memory for the epochs, and photos decoded, augmented and run through the
//! frozen convolutions when nothing is cached.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::cache::{FeatureCache, content_hash};
use super::config::TrainConfig;
use super::events::{Phase, PhaseProgress, TrainEvent};
use super::job::Emitter;
use super::seeds::{AUGMENT_STREAM, derive_seed};
use crate::data::decode::{check_file_size, decode_rgb_bytes};
use crate::data::{DecodeLimits, ImageEntry, Preprocessing, decode_prepared};
use crate::model::Vgg16Config;
use crate::model::frozen::FrozenConvs;

/// One usable image of the run, with where its frozen features are.
pub(super) struct Sample {
    pub path: PathBuf,
    pub label: usize,
    pub hash: Option<String>,
}

/// Which image of a photo a batch uses: the photo, or its mirror image (cached beside it when
/// the run uses mirror views), each made square the run's way or the other way (the second
/// square of the test-time augmentation, cached for validation photos).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum View {
    Photo,
    Mirror,
    OtherSquare,
    OtherSquareMirrored,
}

impl View {
    /// Whether the view is a mirror image.
    pub fn mirrored(self) -> bool {
        matches!(self, Self::Mirror | Self::OtherSquareMirrored)
    }

    /// How the view prepares a photo, from the run's `preprocessing`.
    pub fn preprocessing(self, preprocessing: Preprocessing) -> Preprocessing {
        match self {
            Self::Photo | Self::Mirror => preprocessing,
            Self::OtherSquare | Self::OtherSquareMirrored => preprocessing.other_square(),
        }
    }

    /// The views the model predicts with when it averages mirror images (`mirror`) and both
    /// squares (`squares`), the photo first.
    pub fn predicted(mirror: bool, squares: bool) -> Vec<Self> {
        [
            (Self::Photo, true),
            (Self::Mirror, mirror),
            (Self::OtherSquare, squares),
            (Self::OtherSquareMirrored, mirror && squares),
        ]
        .into_iter()
        .filter_map(|(view, on)| on.then_some(view))
        .collect()
    }
}

impl Sample {
    /// The cache key of `view` of this photo, once its content is hashed.
    fn key(&self, view: View) -> Option<String> {
        let hash = self.hash.as_deref()?;
        Some(view_key(hash, view))
    }
}

fn view_key(hash: &str, view: View) -> String {
    match view {
        View::Photo => hash.to_owned(),
        View::Mirror => format!("{hash}-mirror"),
        View::OtherSquare => format!("{hash}-square"),
        View::OtherSquareMirrored => format!("{hash}-square-mirror"),
    }
}

/// What every batch of a run needs: its settings, the frozen convolutions, the feature cache
/// (with the features kept in memory), and the way to report and to notice a stop.
pub(super) struct Context<'a> {
    pub emit: &'a Emitter,
    pub stop: &'a AtomicBool,
    pub config: &'a TrainConfig,
    pub preprocessing: Preprocessing,
    pub model_config: Vgg16Config,
    /// The convolutions that do not train, in front of the trainable part.
    pub frozen: FrozenConvs,
    pub cache: Option<FeatureCache>,
    /// Cached features kept in memory for the run (while they fit in [`MEMORY_BUDGET_BYTES`]),
    /// so epochs after the feature pass read no files.
    pub memory: std::sync::Mutex<(usize, std::collections::HashMap<String, Vec<f32>>)>,
    pub device: Device,
    pub limits: DecodeLimits,
}

/// How many bytes of cached features a run keeps in memory (the rest is read from disk).
const MEMORY_BUDGET_BYTES: usize = 2 << 30;

impl Context<'_> {
    /// Reports `done` of `total` images of a phase (epoch 1-based, 0 for the feature pass) that
    /// began at `started`.
    pub fn progress(
        &self,
        phase: Phase,
        epoch: usize,
        done: usize,
        total: usize,
        started: Instant,
    ) {
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-6);
        self.emit.send(TrainEvent::Progress(PhaseProgress {
            phase,
            epoch,
            done,
            total,
            images_per_sec: rate,
            // Unknown (not infinite) before the first photo is done.
            eta_secs: if done == 0 {
                f64::NAN
            } else {
                total.saturating_sub(done) as f64 / rate
            },
        }));
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Keeps `features` in memory when the budget allows (taking them: no copy).
    fn remember(&self, hash: &str, features: Vec<f32>) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = features.len() * 4;
        if memory.0 + bytes <= MEMORY_BUDGET_BYTES && !memory.1.contains_key(hash) {
            memory.0 += bytes;
            memory.1.insert(hash.to_owned(), features);
        }
    }

    /// Appends the cached features of `hash` to `out` (memory first, then disk).
    fn cached_features(&self, cache: &FeatureCache, hash: &str, out: &mut Vec<f32>) -> bool {
        {
            let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = memory.1.get(hash) {
                out.extend_from_slice(f);
                return true;
            }
        }
        match cache.get(hash) {
            Some(f) => {
                out.extend_from_slice(&f);
                true
            }
            None => false,
        }
    }

    /// The views the feature pass caches for each photo: the photo, and its mirror image when
    /// the run trains on mirror views (training photos); for validation photos, every view the
    /// model predicts with.
    fn views(&self, validation: bool) -> Vec<View> {
        if validation {
            View::predicted(self.config.mirror_tta, self.config.square_tta)
        } else {
            View::predicted(self.config.mirror_views, false)
        }
    }

    /// The batch's cached features on the host, `[kept, features]` (photo `i` as `views[i]`),
    /// and the positions in `batch` of the images they belong to; `None` when the run has no
    /// cache.
    pub fn cached_batch(
        &self,
        batch: &[&Sample],
        views: &[View],
    ) -> Option<(Vec<f32>, Vec<usize>)> {
        let cache = self.cache.as_ref()?;
        let mut values = Vec::new();
        let mut kept = Vec::new();
        for (i, s) in batch.iter().enumerate() {
            let view = views.get(i).copied().unwrap_or(View::Photo);
            if s.key(view)
                .is_some_and(|k| self.cached_features(cache, &k, &mut values))
            {
                kept.push(i);
            }
        }
        Some((values, kept))
    }

    /// The input of the trainable part for a batch: cached features, or preprocessed photos run
    /// through the frozen convolutions, and the positions in `batch` of the images it holds
    /// (images that fail to decode are dropped, with an event).
    pub fn batch_input(
        &self,
        batch: &[&Sample],
        augment: Option<(usize, &[usize])>,
        views: &[View],
        target: &Device,
    ) -> (Option<Tensor<4>>, Vec<usize>) {
        let frozen_convs = self.config.trainable.frozen_convs();
        if let Some((values, labels)) = self.cached_batch(batch, views) {
            if labels.is_empty() {
                return (None, labels);
            }
            let shape = frozen_output_shape(&self.model_config, frozen_convs);
            let x = Tensor::<4>::from_data(
                TensorData::new(values, [labels.len(), shape[0], shape[1], shape[2]]),
                target,
            );
            return (Some(x), labels);
        }
        let s = self.preprocessing.input_size as usize;
        let mut values = Vec::with_capacity(batch.len() * 3 * s * s);
        let mut labels = Vec::new();
        let (config, preprocessing) = (self.config, self.preprocessing);
        let paths: Vec<&Path> = batch.iter().map(|sample| sample.path.as_path()).collect();
        let prepared = decode_prepared(&paths, &self.limits, |i, photo| {
            let aug = augment.map(|(epoch, items)| {
                (
                    &config.augmentation,
                    derive_seed(config.seed, epoch, AUGMENT_STREAM, items[i]),
                )
            });
            let view = views.get(i).copied().unwrap_or(View::Photo);
            let mut input = view.preprocessing(preprocessing).apply(photo, aug);
            if view.mirrored() {
                Preprocessing::mirror(&mut input, preprocessing.input_size as usize);
            }
            input
        });
        for (i, (sample, input)) in batch.iter().zip(prepared).enumerate() {
            match input {
                Ok(input) => {
                    values.extend(input);
                    labels.push(i);
                }
                Err(e) => self.emit.send(TrainEvent::Skipped {
                    path: sample.path.clone(),
                    reason: e.reason(),
                }),
            }
        }
        if labels.is_empty() {
            return (None, labels);
        }
        let n = labels.len();
        if frozen_convs == 0 {
            let x = Tensor::from_data(TensorData::new(values, [n, 3, s, s]), target);
            return (Some(x), labels);
        }
        let y = self.frozen.forward_values(values, [n, 3, s, s]);
        let [c, h, w] = frozen_output_shape(&self.model_config, frozen_convs);
        (
            Some(Tensor::from_data(TensorData::new(y, [n, c, h, w]), target)),
            labels,
        )
    }
}

/// What the feature pass found for one photo.
enum Lookup {
    /// Its content hash, the cached features of the views found (by cache key), and the input
    /// of each view not found, for the frozen convolutions.
    Found {
        hash: String,
        cached: Vec<(String, Vec<f32>)>,
        missing: Vec<(String, Vec<f32>)>,
    },
    /// Why it cannot be decoded (the photo is skipped).
    Undecodable(String),
}

/// Reads a photo once for both its content hash and, when a view is not cached, its decoding.
/// An unreadable file fails the run (as before any epoch); an undecodable one is skipped.
fn look_up(
    cache: &FeatureCache,
    sample: &Sample,
    views: &[View],
    preprocessing: Preprocessing,
    limits: &DecodeLimits,
) -> Result<Lookup, String> {
    let io = |e: std::io::Error| format!("{}: {e}", sample.path.display());
    // A file too large to be a photo is skipped unread, as every decode does.
    let len = std::fs::metadata(&sample.path).map_err(io)?.len();
    if let Err(e) = check_file_size(&sample.path, len, limits) {
        return Ok(Lookup::Undecodable(e.reason()));
    }
    let bytes = std::fs::read(&sample.path).map_err(io)?;
    let hash = content_hash(&bytes);
    let (mut cached, mut absent) = (Vec::new(), Vec::new());
    for &view in views {
        let key = view_key(&hash, view);
        match cache.get(&key) {
            Some(features) => cached.push((key, features)),
            None => absent.push((key, view)),
        }
    }
    if absent.is_empty() {
        return Ok(Lookup::Found {
            hash,
            cached,
            missing: Vec::new(),
        });
    }
    let photo = match decode_rgb_bytes(&bytes, &sample.path, limits) {
        Ok(photo) => photo,
        Err(e) => return Ok(Lookup::Undecodable(e.reason())),
    };
    let side = preprocessing.input_size as usize;
    // Each way of making the photo square is prepared once; the last view that needs it takes
    // it, the others copy it.
    let mut prepared: Vec<(Preprocessing, Vec<f32>, usize)> = Vec::new();
    for (_, view) in &absent {
        let pre = view.preprocessing(preprocessing);
        match prepared.iter_mut().find(|(p, _, _)| *p == pre) {
            Some((_, _, uses)) => *uses += 1,
            None => prepared.push((pre, pre.apply(&photo, None), 1)),
        }
    }
    let mut missing = Vec::with_capacity(absent.len());
    for (key, view) in absent {
        let pre = view.preprocessing(preprocessing);
        let Some((_, input, uses)) = prepared.iter_mut().find(|(p, _, _)| *p == pre) else {
            unreachable!("every view's preparation was made above")
        };
        *uses -= 1;
        let mut view_input = if *uses == 0 {
            std::mem::take(input)
        } else {
            input.clone()
        };
        if view.mirrored() {
            Preprocessing::mirror(&mut view_input, side);
        }
        missing.push((key, view_input));
    }
    Ok(Lookup::Found {
        hash,
        cached,
        missing,
    })
}

/// The shape of the frozen part's output for one image.
pub(super) fn frozen_output_shape(config: &Vgg16Config, frozen_convs: usize) -> [usize; 3] {
    if frozen_convs >= 13 {
        return config.feature_shape();
    }
    let channels = config.conv_channels();
    let mut side = config.input_size as usize;
    for i in 0..frozen_convs {
        if crate::model::vgg::POOL_AFTER.contains(&i) {
            side /= 2;
        }
    }
    let c = if frozen_convs == 0 {
        3
    } else {
        channels[frozen_convs - 1]
    };
    [c, side, side]
}

/// The run's images as samples, features not yet looked up.
pub(super) fn samples_of(entries: &[ImageEntry]) -> Vec<Sample> {
    entries
        .iter()
        .map(|e| Sample {
            path: e.path.clone(),
            label: e.label,
            hash: None,
        })
        .collect()
}

/// Photos the feature pass looks up at once (hashing and decoding on every core).
const FEATURE_CHUNK_PHOTOS: usize = 8;
/// Views the feature pass sends through the frozen convolutions at once.
const FEATURE_PASS_VIEWS: usize = 16;

/// What the feature pass did.
pub(super) struct FeaturePass {
    /// Images whose features came from the cache.
    pub hits: usize,
    /// Images whose features were computed.
    pub misses: usize,
    /// Images left out because they could not be decoded.
    pub skipped: usize,
    /// Seconds of the whole pass.
    pub secs: f64,
}

/// Every image's frozen output, from the cache or computed once and cached; images that cannot
/// be decoded are reported and dropped from `train` and `valid`. `None` when the run was
/// stopped; without a cache there is nothing to do.
pub(super) fn feature_pass(
    ctx: &Context<'_>,
    train: &mut Vec<Sample>,
    valid: &mut Vec<Sample>,
) -> Result<Option<FeaturePass>, String> {
    let started = Instant::now();
    let mut pass = FeaturePass {
        hits: 0,
        misses: 0,
        skipped: 0,
        secs: 0.0,
    };
    let Some(cache) = &ctx.cache else {
        return Ok(Some(pass));
    };
    // The pass's batches share the frozen base's buffers (`model::buffers`).
    let _held = ctx.frozen.hold_buffers();
    let total = train.len() + valid.len();
    // Photos a look-up, and views a pass through the frozen convolutions: small enough that
    // progress moves and a stop is heard every few seconds on 2 cores, large enough to keep
    // every core busy (at 224 px the CPU base runs about 9 views a second there).
    let batch = ctx.config.batch_size.clamp(1, FEATURE_CHUNK_PHOTOS);
    // Views not in the cache: cache key and preprocessed pixels, up to a batch.
    let mut pending: Vec<(String, Vec<f32>)> = Vec::new();
    // Views sent through the network so far, and how many each photo has.
    let mut computed = 0usize;
    let (train_total, train_views, valid_views) =
        (train.len(), ctx.views(false).len(), ctx.views(true).len());
    for (list, views) in [
        (&mut *train, ctx.views(false)),
        (&mut *valid, ctx.views(true)),
    ] {
        for chunk in list.chunks_mut(batch) {
            if ctx.stopped() {
                return Ok(None);
            }
            look_up_chunk(ctx, (cache, &views), chunk, &mut pending, &mut pass)?;
            while pending.len() >= FEATURE_PASS_VIEWS {
                if ctx.stopped() {
                    return Ok(None);
                }
                let rest = pending.split_off(FEATURE_PASS_VIEWS);
                compute_features(ctx, cache, &mut pending)?;
                computed += FEATURE_PASS_VIEWS;
                pending = rest;
            }
            let done = pass.hits + pass.misses + pass.skipped;
            let secs = started.elapsed().as_secs_f64().max(1e-6);
            // The time left is what the views still to come cost if they need the network:
            // cached ones go by hundreds a second (counting them made a restarted pass say 25 s
            // with 12 minutes to go), and a validation photo has up to twice a training photo's
            // views (counting photos ran out before the validation photos were done).
            let views_left = train_total.saturating_sub(done) * train_views
                + (total - done.max(train_total)) * valid_views
                + pending.len();
            let per_view = if computed > 0 {
                secs / computed as f64
            } else {
                secs / (done.max(1) * train_views) as f64
            };
            ctx.emit.send(TrainEvent::Progress(PhaseProgress {
                phase: Phase::Features,
                epoch: 0,
                done,
                total,
                images_per_sec: done as f64 / secs,
                eta_secs: views_left as f64 * per_view,
            }));
        }
        computed += pending.len();
        compute_features(ctx, cache, &mut pending)?;
    }
    train.retain(|s| s.hash.is_some());
    valid.retain(|s| s.hash.is_some());
    pass.secs = started.elapsed().as_secs_f64();
    Ok(Some(pass))
}

/// Reads, hashes, looks up and (on a miss) decodes a chunk of photos on all cores; misses join
/// `pending` for the frozen convolutions.
fn look_up_chunk(
    ctx: &Context<'_>,
    (cache, views): (&FeatureCache, &[View]),
    chunk: &mut [Sample],
    pending: &mut Vec<(String, Vec<f32>)>,
    pass: &mut FeaturePass,
) -> Result<(), String> {
    let (preprocessing, limits) = (ctx.preprocessing, &ctx.limits);
    let looked_up: Vec<Result<Lookup, String>> = chunk
        .par_iter()
        .map(|sample| look_up(cache, sample, views, preprocessing, limits))
        .collect();
    for (sample, found) in chunk.iter_mut().zip(looked_up) {
        match found? {
            Lookup::Found {
                hash,
                cached,
                missing,
            } => {
                for (key, features) in cached {
                    ctx.remember(&key, features);
                }
                if missing.is_empty() {
                    pass.hits += 1;
                } else {
                    pass.misses += 1;
                }
                pending.extend(missing);
                sample.hash = Some(hash);
            }
            Lookup::Undecodable(reason) => {
                pass.skipped += 1;
                ctx.emit.send(TrainEvent::Skipped {
                    path: sample.path.clone(),
                    reason,
                });
            }
        }
    }
    Ok(())
}

/// Runs the frozen convolutions on the pending photos and writes their features to the cache.
fn compute_features(
    ctx: &Context<'_>,
    cache: &FeatureCache,
    pending: &mut Vec<(String, Vec<f32>)>,
) -> Result<(), String> {
    if pending.is_empty() {
        return Ok(());
    }
    let n = pending.len();
    let s = ctx.preprocessing.input_size as usize;
    let values: Vec<f32> = pending.iter().flat_map(|p| p.1.iter().copied()).collect();
    let y = ctx.frozen.forward_values(values, [n, 3, s, s]);
    let per = y.len() / n;
    for (i, p) in pending.iter().enumerate() {
        cache.put(&p.0, &y[i * per..(i + 1) * per]).map_err(|e| {
            format!(
                "{}: cannot write the feature cache: {e}",
                cache.dir().display()
            )
        })?;
    }
    pending.clear();
    Ok(())
}
