//! `vggtune audit`: the training photos whose label looks wrong, in words or as JSON.

use std::path::{Path, PathBuf};

use clap::Args;
use vggtune::data::{Dataset, ResizeMode};
use vggtune::device::DeviceChoice;
use vggtune::infer;
use vggtune::model::HeadKind;
use vggtune::train::{TrainConfig, TrainEvent};

use super::{Output, parse_head, print_event, weights_arg};

/// `vggtune audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The photo folder (one sub-folder per class, or Kaggle's flat layout).
    data: PathBuf,
    /// Base weights (.pth, .safetensors, .onnx); default: the cached torchvision VGG16;
    /// `none` starts from random weights.
    #[arg(long)]
    weights: Option<String>,
    /// Heads trained, each judging the photos it never saw.
    #[arg(long, default_value_t = vggtune::train::audit::DEFAULT_FOLDS)]
    folds: usize,
    /// Passes of each head over its photos.
    #[arg(long, default_value_t = vggtune::train::config::DEFAULT_EPOCHS)]
    epochs: usize,
    /// Photos per step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// The head: dense256 (light, the 2017 course's) or torchvision (25088→4096→4096→N).
    #[arg(long, default_value = "dense256", value_parser = parse_head)]
    head: HeadKind,
    /// Seed for the folds, shuffling, dropout and new layers.
    #[arg(long, default_value_t = 42)]
    seed: u64,
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
    /// Cache each photo's mirror image too and train each head on one of the two each epoch.
    #[arg(long, value_name = "BOOL", default_value_t = vggtune::train::config::MIRROR_VIEWS_DEFAULT, action = clap::ArgAction::Set)]
    mirror_views: bool,
    /// Judge each photo as the mean of it and its mirror image.
    #[arg(long, value_name = "BOOL", default_value_t = vggtune::train::config::MIRROR_TTA_DEFAULT, action = clap::ArgAction::Set)]
    mirror_tta: bool,
    /// List at most this many photos (0: all of them).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    #[command(flatten)]
    output: Output,
}

/// Lists the training photos whose label looks wrong.
pub fn audit(choice: DeviceChoice, args: AuditArgs) -> anyhow::Result<()> {
    use vggtune::train::audit;
    let dataset = Dataset::scan(&args.data)?;
    let weights = weights_arg(args.weights.as_deref())?;
    let mut config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        head: args.head,
        input_size: args.input_size,
        resize: if args.center_crop {
            ResizeMode::ShorterSideCenterCrop
        } else {
            ResizeMode::Squash
        },
        width_divisor: args.width_divisor.max(1),
        mirror_views: args.mirror_views,
        mirror_tta: args.mirror_tta,
        device: choice,
        ..TrainConfig::default()
    };
    config.set_seed(args.seed);
    config.validate().map_err(anyhow::Error::msg)?;
    let job = audit::AuditJob {
        dataset,
        weights,
        config,
        folds: args.folds,
        cache_root: args.cache_dir,
    };
    let out = args.output;
    let bars = out.bars();
    let mut progress: Option<indicatif::ProgressBar> = None;
    let never = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let result = audit::run(job, &never, |fold, folds, event| {
        if let TrainEvent::Started { .. } = event
            && !out.quiet
            && !out.json
        {
            eprintln!("fold {} of {folds}", fold + 1);
        }
        if !out.json {
            print_event(&out, bars, &mut progress, event);
        }
    });
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    let Some(found) = result.map_err(anyhow::Error::msg)? else {
        anyhow::bail!("the audit was stopped");
    };
    let limit = if args.limit == 0 {
        usize::MAX
    } else {
        args.limit
    };
    if out.json {
        // The summary's counts are the whole audit's; the list is cut at --limit.
        let mut json = serde_json::to_value(&found)?;
        json["summary"] = found.summary().into();
        json["suspects_total"] = found.suspects.len().into();
        if let Some(list) = json["suspects"].as_array_mut() {
            list.truncate(limit);
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print_audit(&found, &args.data, limit);
    }
    Ok(())
}

fn print_audit(found: &vggtune::train::audit::Audit, data: &Path, limit: usize) {
    println!(
        "{}: {} out-of-fold heads, {:.0} s",
        data.display(),
        found.folds,
        found.secs
    );
    println!("{}", found.summary());
    for warning in found.warnings() {
        println!("warning: {warning}");
    }
    let classes = &found.classes;
    for (i, s) in found.suspects.iter().enumerate().take(limit) {
        println!(
            "{:>4}. {}  labelled {}, looks like {} ({} {}, {} {})",
            i + 1,
            s.rel,
            classes[s.given],
            classes[s.looks_like],
            classes[s.looks_like],
            infer::confidence_text(s.looks_like_probability),
            classes[s.given],
            infer::confidence_text(s.given_probability),
        );
    }
}
