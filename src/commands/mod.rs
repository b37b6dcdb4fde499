//! The `train`, `evaluate`, `predict` and `submit` subcommands: argument structs and the thin
//! code that drives the library and prints. Progress bars go to stderr on a terminal; `--json`
//! prints machine-readable lines on stdout; `--quiet` prints only the result.

mod audit;
mod sort;
mod train;

pub use audit::{AuditArgs, audit, check};
pub use sort::{SortArgs, sort};
pub use train::train;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use vggtune::data::{Dataset, ResizeMode};
use vggtune::device::DeviceChoice;
use vggtune::infer::{self, Classifier};
use vggtune::model::HeadKind;
use vggtune::train::config::default_learning_rate;
use vggtune::train::{Evaluation, LrSchedule, OptimizerKind, TrainConfig, Trainable};

/// How results are printed.
#[derive(Args, Debug, Clone, Copy)]
pub struct Output {
    /// Print JSON (one object per line for events) instead of text.
    #[arg(long)]
    json: bool,
    /// Print only the result (no progress).
    #[arg(long, short)]
    quiet: bool,
}

impl Output {
    fn bars(&self) -> bool {
        !self.json && !self.quiet && std::io::stderr().is_terminal()
    }
}

/// `vggtune train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The photo folder (one sub-folder per class, or Kaggle's flat layout).
    data: PathBuf,
    /// What trains: head, dense, block5 or all.
    #[arg(long, default_value = "head")]
    trainable: Trainable,
    /// Optimizer: adam or sgd (momentum 0.9).
    #[arg(long, default_value = "adam")]
    optimizer: OptimizerKind,
    /// L2 weight decay.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    weight_decay: f64,
    /// Dropout between dense layers.
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    dropout: f64,
    /// Random flips, rotations, shifts and zooms (turns the feature cache off).
    #[arg(long)]
    augment: bool,
    /// Share of each class held out for validation.
    #[arg(long, default_value_t = 0.1, value_parser = valid_fraction, allow_negative_numbers = true)]
    valid_fraction: f64,
    /// Continue from this trained model (.vggtune) as a new stage: e.g. `--from head.vggtune
    /// --trainable block5 --lr 1e-5 --epochs 3` fine-tunes block 5 after the head. Its epochs
    /// come first in the history; --epochs more are trained. (Give it again with --resume.)
    #[arg(long, value_name = "MODEL")]
    from: Option<PathBuf>,
    /// A later stage in the same command (repeatable): TRAINABLE:EPOCHS[:LR] continues the model
    /// the stage before wrote, e.g. `--then block5:2` fine-tunes block 5 for 2 epochs (at 1e-5
    /// unless given) after the head. Stages before the last write OUT-stageK.vggtune; with
    /// --resume, a stage whose model is complete is skipped.
    #[arg(long, value_name = "TRAINABLE:EPOCHS[:LR]")]
    then: Vec<train::StageSpec>,
    /// Where to save the model.
    #[arg(long, default_value = "model.vggtune")]
    out: PathBuf,
    /// Continue from the checkpoint beside --out (MODEL.ckpt.vggtune) where it stopped.
    #[arg(long)]
    resume: bool,
    /// Stop once this many epochs are done (counted across resumes), keeping the checkpoint:
    /// `--resume` continues from there. For time-limited sessions.
    #[arg(long, value_name = "EPOCHS")]
    stop_after: Option<usize>,
    /// Write the checkpoint after an epoch once this many seconds of training have passed since
    /// the last one (0: after every epoch); it is always written after the last epoch and when
    /// the run stops.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30.0,
        allow_negative_numbers = true
    )]
    checkpoint_secs: f64,
    #[command(flatten)]
    recipe: HeadRecipe,
    #[command(flatten)]
    output: Output,
}

/// The flags of a run's recipe that `train` and `audit` share.
#[derive(Args, Debug)]
pub struct HeadRecipe {
    #[command(flatten)]
    base: BaseFlags,
    /// The head: pooled (global average of block 5, 512→256→N; the default), dense256 (light,
    /// the 2017 course's, 25088→256→N) or torchvision (25088→4096→4096→N). With --from: the
    /// model's.
    #[arg(long, value_parser = parse_head)]
    head: Option<HeadKind>,
    /// Passes over the training photos.
    #[arg(long, default_value_t = vggtune::train::config::DEFAULT_EPOCHS)]
    epochs: usize,
    /// Photos per step.
    #[arg(long, default_value_t = vggtune::train::config::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Learning rate (default: 1e-3 for the pooled head, 1e-4 for the others, 1e-5 when
    /// convolutions learn).
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Cosine decay of the learning rate over the run (`--cosine false`: a constant rate).
    #[arg(long, value_name = "BOOL", default_value_t = vggtune::train::config::DEFAULT_SCHEDULE == LrSchedule::Cosine, action = clap::ArgAction::Set)]
    cosine: bool,
    /// Cache each photo's mirror image too and train on one of the two each epoch (the cheap
    /// augmentation: the feature pass costs twice, the epochs nothing more). Default: true
    /// (with --resume: as the checkpoint's run).
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    mirror_views: Option<bool>,
    /// The model predicts each photo as the mean of it and its mirror image (recorded in the
    /// model file; the run's validation does the same). Default: true (with --resume: as the
    /// checkpoint's run).
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    mirror_tta: Option<bool>,
    /// With the test-time augmentation, the model also averages the photo made square the other
    /// way (squashed and centre-cropped both; recorded in the model file; the run's validation
    /// does the same). Default: true (with --resume: as the checkpoint's run).
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    square_tta: Option<bool>,
    /// Seed for the split, shuffling, dropout, augmentation and new layers.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// The base network's flags: its weights, how photos are prepared for it, and where its
/// features are cached (the commands that train and the sort share them).
#[derive(Args, Debug)]
pub struct BaseFlags {
    /// Base weights (.pth, .safetensors, .onnx); default: the cached torchvision VGG16;
    /// `none` starts from random weights.
    #[arg(long)]
    weights: Option<String>,
    /// Input side in pixels.
    #[arg(long, default_value_t = 224)]
    input_size: u32,
    /// Crop the centre square (torchvision) instead of squashing the photo (Keras).
    #[arg(long)]
    center_crop: bool,
    /// Divide every width of VGG16 by this (for quick experiments; 1 = VGG16).
    #[arg(long, default_value_t = 1, hide = true)]
    width_divisor: usize,
    /// The feature cache's folder (default: the platform cache).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

impl BaseFlags {
    /// `config` with these flags' input size, resizing and width.
    fn apply(&self, config: TrainConfig) -> TrainConfig {
        TrainConfig {
            input_size: self.input_size,
            resize: if self.center_crop {
                ResizeMode::ShorterSideCenterCrop
            } else {
                ResizeMode::Squash
            },
            width_divisor: self.width_divisor.max(1),
            ..config
        }
    }

    /// The base weights the flags name (`none`: random).
    fn weights(&self) -> anyhow::Result<Option<PathBuf>> {
        weights_arg(self.weights.as_deref())
    }

    /// The feature cache's folder.
    fn cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir.clone()
    }
}

impl HeadRecipe {
    /// `config` with these flags' settings (the seed seeds the split too).
    /// Settings not given follow `config`: a resumed checkpoint's run or a continued model's
    /// head, else the defaults; a learning rate not given is the resumed run's (`resumed`), or
    /// the default for the head and what trains.
    fn apply(&self, choice: DeviceChoice, config: TrainConfig, resumed: bool) -> TrainConfig {
        let head = self.head.unwrap_or(config.head);
        let learning_rate = self.lr.unwrap_or(if resumed && head == config.head {
            config.learning_rate
        } else {
            default_learning_rate(head, config.trainable)
        });
        let mut config = TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate,
            head,
            schedule: if self.cosine {
                LrSchedule::Cosine
            } else {
                LrSchedule::Constant
            },
            mirror_views: self.mirror_views.unwrap_or(config.mirror_views),
            mirror_tta: self.mirror_tta.unwrap_or(config.mirror_tta),
            square_tta: self.square_tta.unwrap_or(config.square_tta),
            device: choice,
            ..self.base.apply(config)
        };
        config.set_seed(self.seed);
        config
    }

    /// The base weights the flags name (`none`: random).
    fn weights(&self) -> anyhow::Result<Option<PathBuf>> {
        self.base.weights()
    }

    /// The feature cache's folder.
    fn cache_dir(&self) -> Option<PathBuf> {
        self.base.cache_dir()
    }
}

fn parse_head(s: &str) -> Result<HeadKind, String> {
    match s.to_ascii_lowercase().as_str() {
        "pooled" | "gap" => Ok(HeadKind::Pooled),
        "dense256" | "light" => Ok(HeadKind::Dense256),
        "torchvision" | "full" => Ok(HeadKind::Torchvision),
        other => Err(format!(
            "unknown head '{other}': use pooled, dense256 or torchvision"
        )),
    }
}

/// `vggtune evaluate`.
#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// The saved model (.vggtune).
    model: PathBuf,
    /// A labelled photo folder (every usable photo in it is evaluated). Its class folders are
    /// matched to the model's classes by name, loosely (case, spaces, plurals: cats/ is cat).
    data: PathBuf,
    /// Names a folder class as one of the model's, when the names differ more (repeatable).
    #[arg(long = "class-map", value_name = "FOLDER=MODEL")]
    class_map: Vec<infer::ClassMapping>,
    /// Photos per batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[command(flatten)]
    tta: TtaFlags,
    #[command(flatten)]
    verdict: VerdictFlag,
    #[command(flatten)]
    output: Output,
}

/// `vggtune predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// The saved model (.vggtune).
    model: PathBuf,
    /// Image files or folders.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Also write the predictions as CSV.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Photos per batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Also write, into this folder, each photo with a heatmap of why it got its class
    /// (Grad-CAM on the last convolution block) as PNG.
    #[arg(long)]
    heatmaps: Option<PathBuf>,
    /// The class the heatmaps explain (default: each photo's predicted class).
    #[arg(long, requires = "heatmaps")]
    heatmap_class: Option<String>,
    #[command(flatten)]
    tta: TtaFlags,
    #[command(flatten)]
    verdict: VerdictFlag,
    #[command(flatten)]
    output: Output,
}

/// `vggtune submit`.
#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The saved model (.vggtune), with a "dog" class.
    model: PathBuf,
    /// Kaggle's test folder (1.jpg, 2.jpg, …).
    test_dir: PathBuf,
    /// Where to write the submission.
    #[arg(long, default_value = "submission.csv")]
    out: PathBuf,
    /// Clip P(dog) to [clip, 1 − clip]: a confident mistake costs less log loss.
    #[arg(long, default_value_t = vggtune::infer::KAGGLE_CLIP, allow_negative_numbers = true)]
    clip: f64,
    /// Photos per batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[command(flatten)]
    tta: TtaFlags,
    #[command(flatten)]
    output: Output,
}

fn bar(len: u64, template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// The base weights a `--weights` flag names: `none` (random), a file, or the cached VGG16.
fn weights_arg(flag: Option<&str>) -> anyhow::Result<Option<PathBuf>> {
    Ok(match flag {
        Some("none") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => Some(default_weights().context(
            "no weights given and none cached: run `vggtune weights download`, pass --weights FILE, \
             or --weights none to start from random weights",
        )?),
    })
}

fn default_weights() -> Option<PathBuf> {
    let path = vggtune::model::download::cached_vgg16_path();
    path.is_file().then_some(path)
}

/// Test-time augmentation flags of the commands that predict.
#[derive(Args, Debug, Clone, Copy)]
pub struct TtaFlags {
    /// Predict each photo as the mean of the views its model records: its mirror image, and the
    /// photo made square both ways (squashed and centre-cropped); a model that records none
    /// takes the mirror (default: as the model file says).
    #[arg(long, conflicts_with = "no_tta")]
    tta: bool,
    /// Predict each photo as it is: one view, made square the model's way.
    #[arg(long)]
    no_tta: bool,
}

/// The *none of these* verdict's flag, of the commands that predict and evaluate.
#[derive(Args, Debug, Clone, Copy)]
pub struct VerdictFlag {
    /// Never say "none of these": give every photo one of the model's classes, however unlike
    /// the training photos it is (default: photos unlike them are "none of these").
    #[arg(long)]
    no_unknown: bool,
}

fn load_classifier(
    choice: DeviceChoice,
    path: &Path,
    tta: TtaFlags,
    verdict: Option<VerdictFlag>,
) -> anyhow::Result<Classifier> {
    let classifier = Classifier::load_for(path, choice)?;
    if tta.tta || tta.no_tta {
        classifier.set_mirror_tta(tta.tta);
    }
    classifier.set_verdict(verdict.is_some_and(|v| !v.no_unknown));
    if verdict.is_some_and(|v| !v.no_unknown)
        && let Some(why) = classifier.verdict_off()
    {
        eprintln!("note: {}: {why}", path.display());
    }
    Ok(classifier)
}

fn predict_with_bar(
    classifier: &Classifier,
    paths: &[PathBuf],
    batch_size: usize,
    output: Output,
) -> (Vec<infer::Prediction>, Vec<infer::Unclassified>) {
    with_bar(paths.len(), output, |progress| {
        classifier.predict(paths, batch_size, progress)
    })
}

/// Runs `work` with a progress bar of `total` photos (when bars are shown) that its
/// `progress(done, total)` callback moves.
fn with_bar<T>(
    total: usize,
    output: Output,
    work: impl FnOnce(&mut dyn FnMut(usize, usize)) -> T,
) -> T {
    let progress = output
        .bars()
        .then(|| bar(total as u64, "{bar:40} {pos}/{len} {per_sec} ETA {eta}"));
    let result = work(&mut |done, _| {
        if let Some(p) = &progress {
            p.set_position(done as u64);
        }
    });
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    result
}

/// The index of the model's class `name`, or an error that lists the classes.
fn class_index(classifier: &Classifier, name: &str) -> anyhow::Result<usize> {
    let classes = classifier.classes();
    classes.iter().position(|c| c == name).with_context(|| {
        format!(
            "the model has no class '{name}'; its classes: {}",
            classes.join(", ")
        )
    })
}

/// Writes one heatmap overlay per explained photo into `dir` (for `class`, or the photo's
/// predicted class); returns how many were written.
fn write_heatmaps(
    classifier: &Classifier,
    explained: &[(infer::Prediction, infer::heatmap::ClassMaps)],
    dir: &Path,
    class: Option<usize>,
) -> anyhow::Result<usize> {
    use infer::heatmap;
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let classes = classifier.classes();
    let chosen: Vec<usize> = explained
        .iter()
        .map(|(p, _)| class.unwrap_or(p.class))
        .collect();
    let photos: Vec<&Path> = explained.iter().map(|(p, _)| p.path.as_path()).collect();
    let names: Vec<&str> = chosen.iter().map(|&c| classes[c].as_str()).collect();
    let files = heatmap::overlay_names(&photos, &names);
    for (((prediction, maps), &c), name) in explained.iter().zip(&chosen).zip(&files) {
        heatmap::write_overlay(
            &prediction.path,
            maps,
            c,
            &classifier.header.preprocessing,
            &dir.join(name),
        )
        .map_err(anyhow::Error::msg)?;
    }
    Ok(files.len())
}

/// Prints an evaluation in words.
pub fn print_evaluation(e: &Evaluation) {
    println!("images:    {}", e.count);
    println!("accuracy:  {:.2}%", 100.0 * e.accuracy);
    println!("log loss:  {:.4}", e.log_loss);
    println!(
        "calibration error (ECE, {} bins): {:.2}%",
        vggtune::calibration::BINS,
        100.0 * e.reliability.ece
    );
    let width = e.classes.iter().map(String::len).max().unwrap_or(5).max(5);
    println!("confusion (rows: true class, columns: predicted):");
    print!("  {:width$}", "");
    for c in &e.classes {
        print!(" {c:>width$}");
    }
    println!();
    for (c, row) in e.classes.iter().zip(&e.confusion) {
        print!("  {c:width$}");
        for v in row {
            print!(" {v:>width$}");
        }
        println!();
    }
    println!("per class:");
    for m in &e.per_class {
        println!(
            "  {:width$}  precision {:.3}  recall {:.3}  F1 {:.3}  ({} images)",
            m.class, m.precision, m.recall, m.f1, m.support
        );
    }
}

/// The evaluation's photos judged *none of these*, and the accuracy without them.
fn print_unknown(e: &vggtune::metrics::EvaluatedImages) {
    let Some(unknown) = e.unknown() else {
        return;
    };
    let share = 100.0 * unknown.len() as f64 / e.images.len().max(1) as f64;
    println!(
        "{}: {} of {} ({share:.1}%, {})",
        vggtune::typical::NONE_OF_THESE,
        unknown.len(),
        e.images.len(),
        vggtune::typical::NONE_OF_THESE_MEANS
    );
    if let Some(accuracy) = e.accuracy_of_known().filter(|_| !unknown.is_empty()) {
        println!("accuracy without them: {:.2}%", 100.0 * accuracy);
    }
    for &i in &unknown {
        println!("  {}", e.images[i].display());
    }
}

/// Evaluates a saved model on a labelled folder.
pub fn evaluate(choice: DeviceChoice, args: EvaluateArgs) -> anyhow::Result<()> {
    let classifier = load_classifier(choice, &args.model, args.tta, Some(args.verdict))?;
    let dataset = Dataset::scan(&args.data)?;
    let progress = args
        .output
        .bars()
        .then(|| bar(0, "{bar:40} {pos}/{len} {per_sec} ETA {eta}"));
    let never = std::sync::atomic::AtomicBool::new(false);
    let result = classifier
        .evaluate(
            &dataset,
            args.batch_size,
            &args.class_map,
            |done, total| {
                if let Some(p) = &progress {
                    p.set_length(total as u64);
                    p.set_position(done as u64);
                }
            },
            &never,
        )
        .map_err(anyhow::Error::msg)?;
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    let evaluation = &result.evaluated.evaluation;
    let failed = &result.unclassified;
    if args.output.json {
        println!(
            "{}",
            // Paths that are not UTF-8 are written lossily (fsutil::lossy), never a panic.
            serde_json::to_string_pretty(&result)?
        );
        return Ok(());
    }
    println!("folder: {}", result.folder.display());
    for line in &result.matched {
        println!("classes: {line}");
    }
    print_evaluation(evaluation);
    print_unknown(&result.evaluated);
    if !result.leaks.is_empty() {
        println!(
            "copies of training photos: {} (a leak: the accuracy above counts photos the model \
             learned from)",
            result.leaks.len()
        );
        if let Some(a) = result.accuracy_without_leaks {
            println!("accuracy without them: {:.2}%", 100.0 * a);
        }
        for leak in &result.leaks {
            println!("  {} copies {}", leak.path.display(), leak.training_photo);
        }
    }
    for f in failed {
        eprintln!("skipped {}: {}", f.path.display(), f.reason);
    }
    Ok(())
}

/// Classifies images and folders.
pub fn predict(choice: DeviceChoice, args: PredictArgs) -> anyhow::Result<()> {
    let classifier = load_classifier(choice, &args.model, args.tta, Some(args.verdict))?;
    let (paths, mut rejected) = infer::collect_images(&args.inputs);
    let (predictions, failed) = match &args.heatmaps {
        None => predict_with_bar(&classifier, &paths, args.batch_size, args.output),
        Some(dir) => {
            let class = match &args.heatmap_class {
                None => None,
                Some(name) => Some(class_index(&classifier, name)?),
            };
            let (explained, failed) = with_bar(paths.len(), args.output, |progress| {
                let never = std::sync::atomic::AtomicBool::new(false);
                classifier.explain_until(&paths, args.batch_size, progress, &never)
            });
            let written = write_heatmaps(&classifier, &explained, dir, class)?;
            if !args.output.json {
                eprintln!("wrote {written} heatmaps to {}", dir.display());
            }
            (explained.into_iter().map(|(p, _)| p).collect(), failed)
        }
    };
    rejected.extend(failed);
    let classes = classifier.classes();
    if let Some(csv) = &args.csv {
        infer::write_csv(csv, classes, &predictions).with_context(|| csv.display().to_string())?;
    }
    if args.output.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "classes": classes,
                "verdict": classifier.verdict_off().map_or("on", |why| why),
                "predictions": predictions_json(classes, &predictions)?,
                "unclassified": rejected,
            }))?
        );
    } else {
        for p in &predictions {
            let probs: Vec<String> = classes
                .iter()
                .zip(&p.probabilities)
                .map(|(c, v)| format!("{c} {}", infer::confidence_text(*v)))
                .collect();
            let typical = p.typicality.map_or(String::new(), |j| {
                format!("; typical {}", infer::confidence_text(j.typicality))
            });
            println!(
                "{}: {} ({}{typical})",
                p.path.display(),
                p.verdict(classes),
                probs.join(", ")
            );
        }
        for r in &rejected {
            eprintln!("not classified {}: {}", r.path.display(), r.reason);
        }
    }
    anyhow::ensure!(
        !predictions.is_empty() || rejected.is_empty(),
        "no image could be classified"
    );
    Ok(())
}

/// Predictions as JSON, each with its verdict in words ("cat", or "none of these").
fn predictions_json(
    classes: &[String],
    predictions: &[infer::Prediction],
) -> anyhow::Result<Vec<serde_json::Value>> {
    predictions
        .iter()
        .map(|p| {
            let mut v = serde_json::to_value(p)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("verdict".into(), p.verdict(classes).into());
            }
            Ok(v)
        })
        .collect()
}

/// Writes a Kaggle submission.
pub fn submit(choice: DeviceChoice, args: SubmitArgs) -> anyhow::Result<()> {
    let classifier = load_classifier(choice, &args.model, args.tta, None)?;
    let (paths, rejected) = infer::collect_images(std::slice::from_ref(&args.test_dir));
    let (predictions, failed) = predict_with_bar(&classifier, &paths, args.batch_size, args.output);
    let rows = infer::kaggle_rows(classifier.classes(), &predictions, args.clip)?;
    infer::write_submission(&args.out, &rows)?;
    for r in rejected.iter().chain(&failed) {
        eprintln!("not in the submission {}: {}", r.path.display(), r.reason);
    }
    if args.output.json {
        println!(
            "{}",
            serde_json::json!({"out": args.out.to_string_lossy(), "rows": rows.len(), "unclassified": failed.len() + rejected.len()})
        );
    } else {
        println!("wrote {} rows to {}", rows.len(), args.out.display());
    }
    Ok(())
}

/// `--valid-fraction`: a number in [`vggtune::limits::VALID_FRACTION`] (a negative one is read as
/// a number and refused with the range, not taken for a flag).
fn valid_fraction(s: &str) -> Result<f64, String> {
    let value: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    vggtune::limits::check(
        "the validation fraction",
        value,
        &vggtune::limits::VALID_FRACTION,
    )?;
    Ok(value)
}
