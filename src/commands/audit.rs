//! `vggtune audit`: the training photos whose label looks wrong, in words or as JSON.

use std::path::{Path, PathBuf};

use clap::Args;
use vggtune::data::Dataset;
use vggtune::device::DeviceChoice;
use vggtune::infer;
use vggtune::train::{TrainConfig, TrainEvent};

use super::Output;
use super::train::print_event;

/// `vggtune audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The photo folder (one sub-folder per class, or Kaggle's flat layout).
    data: PathBuf,
    /// Heads trained, each judging the photos it never saw.
    #[arg(long, default_value_t = vggtune::train::audit::DEFAULT_FOLDS, value_parser = folds)]
    folds: usize,
    /// List at most this many photos (0: all of them).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    #[command(flatten)]
    recipe: super::HeadRecipe,
    #[command(flatten)]
    output: Output,
}

/// Lists the training photos whose label looks wrong.
pub fn audit(choice: DeviceChoice, args: AuditArgs) -> anyhow::Result<()> {
    use vggtune::train::audit;
    let dataset = Dataset::scan(&args.data)?;
    let weights = args.recipe.weights()?;
    let config = args.recipe.apply(choice, TrainConfig::default(), false);
    config.validate().map_err(anyhow::Error::msg)?;
    let job = audit::AuditJob {
        dataset,
        weights,
        config,
        folds: args.folds,
        cache_root: args.recipe.cache_dir.clone(),
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

/// `--folds`: a count in [`vggtune::limits::FOLDS`].
fn folds(s: &str) -> Result<usize, String> {
    let value: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of folds"))?;
    vggtune::limits::check("folds", value, &vggtune::limits::FOLDS)?;
    Ok(value)
}
