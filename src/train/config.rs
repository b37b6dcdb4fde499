//! What a training run does, as one serialisable value: saved with every checkpoint and model,
//! shown as controls in the window and as flags on the command line.

use crate::data::{Augmentation, ResizeMode, SplitConfig};
use crate::device::DeviceChoice;
use crate::model::HeadKind;

/// Which layers learn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trainable {
    /// Only the new last layer (with torchvision's head, ImageNet's dense layers stay frozen);
    /// with the light or the pooled head, both of its layers.
    #[default]
    Head,
    /// All dense layers (new where the weights had none).
    Dense,
    /// The dense layers and the last convolution block (block 5).
    Block5,
    /// Everything.
    All,
}

impl Trainable {
    /// All choices, in menu order.
    pub const ALL: [Self; 4] = [Self::Head, Self::Dense, Self::Block5, Self::All];

    /// How many of the 13 convolutions stay frozen.
    pub fn frozen_convs(self) -> usize {
        match self {
            Self::Head | Self::Dense => 13,
            Self::Block5 => 10,
            Self::All => 0,
        }
    }

    /// What learns, in a few words (menus, tables).
    pub fn label(self) -> &'static str {
        match self {
            Self::Head => "the head",
            Self::Dense => "the dense layers",
            Self::Block5 => "block 5 and the head",
            Self::All => "every layer",
        }
    }

    /// Words for menus and tooltips.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Head => "new head only (fastest; frozen features are cached)",
            Self::Dense => "all dense layers (frozen features are cached)",
            Self::Block5 => "dense layers and the last conv block",
            Self::All => "the whole network (slowest)",
        }
    }
}

impl std::str::FromStr for Trainable {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "head" => Ok(Self::Head),
            "dense" => Ok(Self::Dense),
            "block5" => Ok(Self::Block5),
            "all" => Ok(Self::All),
            other => Err(format!(
                "unknown trainable '{other}': use head, dense, block5 or all"
            )),
        }
    }
}

/// The optimiser.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (the 2017 course's choice for the head).
    #[default]
    Adam,
    /// SGD with momentum 0.9.
    Sgd,
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "adam" => Ok(Self::Adam),
            "sgd" => Ok(Self::Sgd),
            other => Err(format!("unknown optimizer '{other}': use adam or sgd")),
        }
    }
}

/// How the learning rate changes over the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum LrSchedule {
    /// The same rate every epoch.
    #[default]
    Constant,
    /// Cosine decay from the rate to zero over the run.
    Cosine,
    /// Multiply by `factor` every `every` epochs.
    Step {
        /// Epochs between drops.
        every: usize,
        /// The multiplier.
        factor: f64,
    },
}

impl LrSchedule {
    /// The rate during `epoch` (0-based) of `epochs`.
    pub fn rate(self, base: f64, epoch: usize, epochs: usize) -> f64 {
        match self {
            Self::Constant => base,
            Self::Cosine => {
                let t = epoch as f64 / epochs.max(1) as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Self::Step { every, factor } => base * factor.powi((epoch / every.max(1)) as i32),
        }
    }
}

/// Epochs when none are asked for: with cached features an epoch of the light head takes about
/// a second on 2 cores, and 10 did better than 20 in 5-fold cross-validation (BENCHMARKS.md).
pub const DEFAULT_EPOCHS: usize = 10;
/// The learning-rate schedule when none is asked for: cosine decay over the run had the lowest
/// log loss in 5-fold cross-validation (0.0416 against 0.0482 for a constant rate, at 10 epochs
/// with mirror views and mirror TTA; BENCHMARKS.md).
pub const DEFAULT_SCHEDULE: LrSchedule = LrSchedule::Cosine;
/// Photos per step when none is asked for: 64 had a lower log loss than 32 in three 5-fold
/// cross-validations (0.0411, 0.0419, 0.0446 against 0.0416, 0.0458, 0.0484), with the same
/// accuracy, and trains faster.
pub const DEFAULT_BATCH_SIZE: usize = 64;
/// Whether runs train on mirror views by default ([`TrainConfig::mirror_views`]): in 5-fold
/// cross-validation on the 1,999 Kaggle photos they took accuracy from 97.85% to 98.40%.
pub const MIRROR_VIEWS_DEFAULT: bool = true;
/// Whether models trained now predict with the mirror test-time augmentation by default
/// ([`TrainConfig::mirror_tta`]): in the same cross-validation, log loss 0.0624 → 0.0482 on top
/// of mirror views (0.0698 → 0.0521 without them).
pub const MIRROR_TTA_DEFAULT: bool = true;

/// The head when none is asked for: the pooled head. In three 5-fold cross-validations on the
/// 1,999 Kaggle photos it reached 98.53% (log loss 0.045) against the light head's 98.30%
/// (0.043), and its epochs take a fraction of a second (BENCHMARKS.md).
pub const DEFAULT_HEAD: HeadKind = HeadKind::Pooled;
/// The learning rate of a stage where convolutions learn (block 5 or more) and none is asked
/// for: small, so the ImageNet features are adjusted rather than overwritten.
pub const DEEPER_STAGE_LEARNING_RATE: f64 = 1e-5;

/// Epochs of the window's *Fine-tune deeper* stage: block 5 learns through the CPU's autodiff
/// at about 90 s an epoch on 2 cores, and 2 such epochs after the default head took one fold's
/// validation from 98.50% to 99.25% (BENCHMARKS.md, "Stages in one command").
pub const DEEPER_STAGE_EPOCHS: usize = 2;

/// The settings of a deeper stage after a run with `settings`: block 5 learns too (when less
/// did), at the deeper stages' rate, for [`DEEPER_STAGE_EPOCHS`].
pub fn deeper_stage(settings: &TrainConfig) -> TrainConfig {
    let mut config = settings.clone();
    if config.trainable.frozen_convs() > Trainable::Block5.frozen_convs() {
        config.trainable = Trainable::Block5;
    }
    config.learning_rate = default_learning_rate(config.head, config.trainable);
    config.epochs = DEEPER_STAGE_EPOCHS;
    config
}

/// The learning rate a run starts from when none is asked for: the head's own
/// ([`HeadKind::default_learning_rate`]), or [`DEEPER_STAGE_LEARNING_RATE`] when
/// convolutions learn.
pub fn default_learning_rate(head: HeadKind, trainable: Trainable) -> f64 {
    if trainable.frozen_convs() < 13 {
        DEEPER_STAGE_LEARNING_RATE
    } else {
        head.default_learning_rate()
    }
}

/// What changes with the head or with what trains: a learning rate left at the default of the
/// settings `before` follows the new settings' default ([`default_learning_rate`]).
pub fn rate_follows(config: &mut TrainConfig, (head, trainable): (HeadKind, Trainable)) {
    if config.learning_rate == default_learning_rate(head, trainable) {
        config.learning_rate = default_learning_rate(config.head, config.trainable);
    }
}

/// Whether models trained now also average both ways of making a photo square when they
/// predict ([`TrainConfig::square_tta`]): in three 5-fold cross-validations with the pooled
/// head, 98.53% → 98.67% and log loss 0.045 → 0.037 (seed 7: 98.48% → 98.70%, 0.045 → 0.037;
/// BENCHMARKS.md).
pub const SQUARE_TTA_DEFAULT: bool = true;

/// A view switch (`mirror_views`, `mirror_tta`, `square_tta`) of a saved run's configuration
/// (`train_config` of a model or checkpoint): off when the run was saved before the switch
/// existed.
pub fn saved_switch(train_config: &serde_json::Value, key: &str) -> bool {
    train_config
        .get(key)
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// The settings a stopped run was saved with (a checkpoint's header), for a resume that
/// continues it as it was: every setting but the device (`asked`'s), with `epochs` the stage's
/// own count; and the epoch its stage began at.
pub fn as_saved(
    header: &crate::model::bundle::BundleHeader,
    asked: &TrainConfig,
) -> Result<(TrainConfig, usize), String> {
    let mut saved: TrainConfig = serde_json::from_value(header.train_config.clone())
        .map_err(|e| format!("the checkpoint's settings cannot be read: {e}"))?;
    // A checkpoint's `epochs` is the epoch its run ends at; a stage's own come after the model
    // it continues.
    let stage_start = header.stage_start.unwrap_or(0);
    saved.epochs = saved
        .epochs
        .checked_sub(stage_start)
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            format!(
                "the checkpoint ends at epoch {} but its stage starts at epoch {stage_start}",
                saved.epochs
            )
        })?;
    saved.device = asked.device;
    Ok((saved, stage_start))
}

/// Everything about one training run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Which layers learn.
    pub trainable: Trainable,
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// The optimiser.
    pub optimizer: OptimizerKind,
    /// The learning rate.
    pub learning_rate: f64,
    /// How it changes over the run.
    pub schedule: LrSchedule,
    /// L2 weight decay (0 = none).
    pub weight_decay: f64,
    /// Dropout between dense layers.
    pub dropout: f64,
    /// Random flips, rotations, shifts and zooms of training images (bypasses the feature cache).
    pub augment: bool,
    /// The cheap augmentation: the frozen part's output of each photo and of its mirror image
    /// are both cached (the feature pass costs twice), and each epoch trains on one of the two,
    /// drawn from the seed (the epochs cost nothing more).
    pub mirror_views: bool,
    /// The model predicts each photo as the mean of it and its mirror image (test-time
    /// augmentation): recorded in the model file, and used by the run's validation. `--tta` /
    /// `--no-tta` and the window's Average views switch change it when predicting.
    pub mirror_tta: bool,
    /// With the test-time augmentation, the model also averages the photo made square the other
    /// way (squashed and centre-cropped both; with the mirror, four views in all): recorded in
    /// the model file, and used by the run's validation (runs saved before it: no).
    #[serde(default)]
    pub square_tta: bool,
    /// The augmentation's ranges.
    pub augmentation: Augmentation,
    /// The validation split.
    pub split: SplitConfig,
    /// Seed for shuffling, dropout, augmentation and new layers.
    pub seed: u64,
    /// The compute device.
    pub device: DeviceChoice,
    /// The head on top of the base.
    pub head: HeadKind,
    /// Input side in pixels (224 for ImageNet weights).
    pub input_size: u32,
    /// How photos are made square.
    pub resize: ResizeMode,
    /// Divides every width of the network; 1 is VGG16 (tests use more for tiny models).
    pub width_divisor: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            trainable: Trainable::Head,
            epochs: DEFAULT_EPOCHS,
            batch_size: DEFAULT_BATCH_SIZE,
            optimizer: OptimizerKind::Adam,
            learning_rate: DEFAULT_HEAD.default_learning_rate(),
            schedule: DEFAULT_SCHEDULE,
            weight_decay: 0.0,
            dropout: 0.5,
            augment: false,
            mirror_views: MIRROR_VIEWS_DEFAULT,
            mirror_tta: MIRROR_TTA_DEFAULT,
            square_tta: SQUARE_TTA_DEFAULT,
            augmentation: Augmentation::default(),
            split: SplitConfig::default(),
            seed: 42,
            device: DeviceChoice::Auto,
            head: DEFAULT_HEAD,
            input_size: 224,
            resize: ResizeMode::Squash,
            width_divisor: 1,
        }
    }
}

impl TrainConfig {
    /// Checks the values a user can type against [`crate::limits`]; the message says which one is
    /// wrong and why.
    pub fn validate(&self) -> Result<(), String> {
        use crate::limits::{self, check};
        check("epochs", self.epochs, &limits::EPOCHS)?;
        check("batch size", self.batch_size, &limits::BATCH_SIZE)?;
        check("learning rate", self.learning_rate, &limits::LEARNING_RATE)?;
        check("dropout", self.dropout, &limits::DROPOUT)?;
        check("weight decay", self.weight_decay, &limits::WEIGHT_DECAY)?;
        check(
            "validation fraction",
            self.split.valid_fraction,
            &limits::VALID_FRACTION,
        )?;
        check("input size", self.input_size, &limits::INPUT_SIZE)?;
        check("width divisor", self.width_divisor, &limits::WIDTH_DIVISOR)?;
        Ok(())
    }

    /// Sets the run's seed, which also seeds the validation split (one seed a user sets).
    pub fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
        self.split.seed = seed;
    }

    /// True when the frozen part's outputs can be cached: something is frozen and no
    /// augmentation changes the images between epochs.
    pub fn uses_feature_cache(&self) -> bool {
        !self.augment && self.trainable.frozen_convs() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_give_the_expected_rates() {
        assert_eq!(LrSchedule::Constant.rate(0.1, 5, 10), 0.1);
        assert!((LrSchedule::Cosine.rate(0.1, 0, 10) - 0.1).abs() < 1e-12);
        assert!((LrSchedule::Cosine.rate(0.1, 5, 10) - 0.05).abs() < 1e-12);
        let step = LrSchedule::Step {
            every: 2,
            factor: 0.5,
        };
        assert!((step.rate(0.1, 3, 10) - 0.05).abs() < 1e-12);
    }

    #[test]
    fn augmentation_bypasses_the_cache() {
        let mut c = TrainConfig::default();
        assert!(c.uses_feature_cache());
        c.augment = true;
        assert!(!c.uses_feature_cache());
        c.augment = false;
        c.trainable = Trainable::All;
        assert!(!c.uses_feature_cache());
    }

    #[test]
    fn a_rate_left_at_the_heads_default_follows_the_new_head_and_a_chosen_one_stays() {
        let mut c = TrainConfig::default();
        assert_eq!(c.head, HeadKind::Pooled);
        assert_eq!(c.learning_rate, 1e-3);
        c.head = HeadKind::Dense256;
        rate_follows(&mut c, (HeadKind::Pooled, Trainable::Head));
        assert_eq!(c.learning_rate, 1e-4);
        c.trainable = Trainable::Block5;
        rate_follows(&mut c, (HeadKind::Dense256, Trainable::Head));
        assert_eq!(
            c.learning_rate, DEEPER_STAGE_LEARNING_RATE,
            "convolutions learn slowly"
        );
        c.trainable = Trainable::Head;
        rate_follows(&mut c, (HeadKind::Dense256, Trainable::Block5));
        assert_eq!(c.learning_rate, 1e-4);
        c.learning_rate = 3e-4;
        c.head = HeadKind::Pooled;
        rate_follows(&mut c, (HeadKind::Dense256, Trainable::Head));
        assert_eq!(c.learning_rate, 3e-4, "a rate the user set is kept");
        assert_eq!(
            default_learning_rate(HeadKind::Pooled, Trainable::Block5),
            DEEPER_STAGE_LEARNING_RATE
        );
        assert_eq!(
            default_learning_rate(HeadKind::Dense256, Trainable::Dense),
            1e-4
        );
    }

    #[test]
    fn bad_values_are_named() {
        let c = TrainConfig {
            epochs: 0,
            ..TrainConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("epochs"));
        let c = TrainConfig {
            learning_rate: -1.0,
            ..TrainConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("learning rate"));
    }
}
