//! One training step, made by one of two steppers: the hand-written step of a two-layer head on
//! cached features on the CPU ([`host_head`]: same arithmetic, optimizer state and checkpoints,
//! a third of the time), or Burn's autodiff for everything else. Also what trains and what is
//! frozen, the optimizer, and the one cross-entropy the autodiff step and its tests use.

use burn::module::Module as _;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};

use super::config::{OptimizerKind, Trainable};
use super::features::{Context, Sample, View};
use super::host_head;
use crate::model::host::to_host;
use crate::model::{HeadKind, Vgg16};
use crate::rng::SplitMix64;

/// Which step a run takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stepper {
    /// [`host_head::step`]: a two-layer head (light or pooled) on cached features, on the CPU,
    /// with Adam.
    Host,
    /// Burn's autodiff: forward, [`cross_entropy`], backward, the optimizer's step.
    Autodiff,
}

/// What a step did.
pub(super) struct StepOutput {
    /// The true classes of the images the step used (images that failed to decode are left out).
    pub labels: Vec<usize>,
    /// The batch's mean loss.
    pub loss: f64,
    /// The logits, `[labels.len(), classes]` row-major.
    pub logits: Vec<f32>,
}

impl Stepper {
    /// The host step where it applies (the CPU, cached features of the whole base, Adam, the
    /// light or pooled head), autodiff elsewhere.
    pub fn choose(ctx: &Context<'_>, model: &Vgg16) -> Self {
        let config = ctx.config;
        if ctx.device == Device::flex()
            && ctx.cache.is_some()
            && config.trainable.frozen_convs() == 13
            && config.optimizer == OptimizerKind::Adam
            && host_head::handles(model)
        {
            Self::Host
        } else {
            Self::Autodiff
        }
    }

    /// One optimizer step on `batch` at learning rate `lr`, dropout drawn from `rng`;
    /// `augment` is the epoch and the batch's item numbers, when photos are augmented, and
    /// `views` which view of each photo to train on. Returns
    /// the model after the step and what it did (`None` when no image of the batch was usable).
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        self,
        ctx: &Context<'_>,
        model: Vgg16,
        optim: &mut ModuleOptimizer,
        lr: f64,
        batch: &[&Sample],
        (augment, views): (Option<(usize, &[usize])>, &[View]),
        rng: &mut SplitMix64,
    ) -> (Vgg16, Option<StepOutput>) {
        match self {
            Self::Host => {
                let Some((x, kept)) = ctx.cached_batch(batch, views) else {
                    unreachable!("the host step runs only with the cache")
                };
                if kept.is_empty() {
                    return (model, None);
                }
                let labels: Vec<usize> = kept.iter().map(|&i| batch[i].label).collect();
                let (model, out) = host_head::step(model, optim, lr, &x, &labels, rng);
                let out = StepOutput {
                    labels,
                    loss: out.loss,
                    logits: out.logits,
                };
                (model, Some(out))
            }
            Self::Autodiff => {
                let train_device = ctx.device.clone().autodiff();
                let (input, kept) = ctx.batch_input(batch, augment, views, &train_device);
                let Some(input) = input else {
                    return (model, None);
                };
                let labels: Vec<usize> = kept.iter().map(|&i| batch[i].label).collect();
                let frozen_convs = ctx.config.trainable.frozen_convs();
                let logits = forward_trainable(&model, input, frozen_convs, Some(rng));
                let loss = cross_entropy(logits.clone(), &labels);
                let batch_loss =
                    f64::from(to_host(loss.clone()).first().copied().unwrap_or(f32::NAN));
                let model = if batch_loss.is_finite() {
                    let grads = GradientsParams::from_grads(loss.backward(), &model);
                    optim.step(lr, model, grads)
                } else {
                    model
                };
                let out = StepOutput {
                    labels,
                    loss: batch_loss,
                    logits: to_host(logits),
                };
                (model, Some(out))
            }
        }
    }
}

/// The mean cross-entropy of `logits` `[batch, classes]` against the true classes `labels`.
pub fn cross_entropy(logits: Tensor<2>, labels: &[usize]) -> Tensor<1> {
    let [batch, classes] = logits.dims();
    let mut one_hot = vec![0.0f32; batch * classes];
    for (i, &l) in labels.iter().enumerate() {
        one_hot[i * classes + l] = 1.0;
    }
    let one_hot =
        Tensor::<2>::from_data(TensorData::new(one_hot, [batch, classes]), &logits.device());
    (log_softmax(logits, 1) * one_hot)
        .sum()
        .neg()
        .div_scalar(batch as f32)
}

/// Marks the layers that do not learn in this run as frozen.
pub(super) fn freeze(mut model: Vgg16, trainable: Trainable, head: HeadKind) -> Vgg16 {
    let frozen_convs = trainable.frozen_convs();
    for conv in model.features.iter_mut().take(frozen_convs) {
        *conv = conv.clone().no_grad();
    }
    if trainable == Trainable::Head && head == HeadKind::Torchvision {
        let last = model.classifier.len().saturating_sub(1);
        for dense in model.classifier.iter_mut().take(last) {
            *dense = dense.clone().no_grad();
        }
    }
    model
}

/// The trainable part's forward pass from the frozen part's output.
pub(super) fn forward_trainable(
    model: &Vgg16,
    x: Tensor<4>,
    frozen_convs: usize,
    rng: Option<&mut SplitMix64>,
) -> Tensor<2> {
    let pooled = if frozen_convs >= 13 {
        x
    } else {
        model.forward_convs(x, frozen_convs..13)
    };
    let flat = pooled.flatten(1, 3);
    match rng {
        Some(rng) => model.forward_head_train(flat, rng),
        None => model.forward_head_flat(flat),
    }
}
