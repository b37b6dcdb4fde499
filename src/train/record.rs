//! What a run records beside its weights when it saves a model: the temperature that calibrates
//! its confidences, fitted on its validation photos ([`crate::calibration`]), and its training
//! photos' pooled block-5 features, which tell how typical a new photo is
//! ([`crate::typical`]).

use super::features::{Context, Sample, View};
use crate::calibration::Calibration;
use crate::metrics::EvaluatedImages;
use crate::model::Vgg16;
use crate::model::host::to_host;
use crate::model::vgg::global_average;
use crate::typical::Typicality;

/// The validation pass with calibrated confidences, and the calibration; as it was, with why
/// no temperature was fitted, when there are too few photos or mistakes to fit one on.
pub(super) fn calibrated(
    classes: &[String],
    evaluated: EvaluatedImages,
) -> (EvaluatedImages, Result<Calibration, String>) {
    let calibration = match Calibration::fit(&evaluated.probs, &evaluated.labels) {
        Ok(c) => c,
        Err(why) => return (evaluated, Err(why)),
    };
    let t = calibration.temperature;
    let probs = evaluated
        .probs
        .iter()
        .map(|p| crate::calibration::calibrate(p, t))
        .collect();
    let mut e = EvaluatedImages::new(classes, evaluated.images, evaluated.labels, probs);
    e.features = evaluated.features;
    e.mirror_features = evaluated.mirror_features;
    (e, Ok(calibration))
}

/// The validation pass with each photo judged by the training photos' features (as the saved
/// model will judge it), when the pass kept its photos' features.
pub(super) fn judged(
    evaluated: EvaluatedImages,
    typicality: Option<&Typicality>,
) -> EvaluatedImages {
    let Some(t) = typicality else {
        return evaluated;
    };
    let judgements = evaluated.features.iter().map(|f| t.judge(f)).collect();
    evaluated.with_typicality(judgements)
}

/// The training photos' features under `model` (the photo as it is, the run's square), at most
/// [`crate::limits::TYPICAL_BANK`] of them, spread evenly over the training photos (which are
/// in class order, so every class keeps its share). From the feature cache when the run has
/// one; block 5 runs on it when block 5 trained.
pub(super) fn training_features(
    ctx: &Context,
    model: &Vgg16,
    (train, root): (&[Sample], &std::path::Path),
) -> Option<Typicality> {
    let max = *crate::limits::TYPICAL_BANK.end();
    let n = train.len();
    let chosen: Vec<&Sample> = if n > max {
        (0..max).map(|i| &train[i * n / max]).collect()
    } else {
        train.iter().collect()
    };
    let frozen_convs = ctx.config.trainable.frozen_convs();
    let channels = ctx.model_config.conv_channels()[12];
    // The batches share the frozen base's buffers (`model::buffers`).
    let _held = ctx.frozen.hold_buffers();
    let mut features = Vec::with_capacity(chosen.len());
    let mut names = Vec::with_capacity(chosen.len());
    for chunk in chosen.chunks(ctx.config.batch_size.max(1)) {
        let views = vec![View::Photo; chunk.len()];
        let (Some(x), kept) = ctx.batch_input(chunk, None, &views, &ctx.device) else {
            continue;
        };
        // Each photo by its path in the training folder, `/` between folders.
        names.extend(kept.iter().map(|&i| {
            let path = &chunk[i].path;
            let rel = path.strip_prefix(root).unwrap_or(path);
            rel.to_string_lossy().replace('\\', "/")
        }));
        let pooled = if frozen_convs >= 13 {
            x
        } else {
            model.forward_convs(x, frozen_convs..13)
        };
        let averaged = global_average(&to_host(pooled));
        features.extend(averaged.chunks_exact(channels.max(1)).map(<[f32]>::to_vec));
    }
    Typicality::fit_named(&features, &names, ctx.config.seed)
}
