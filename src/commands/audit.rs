//! `vggtune audit`: the training photos whose label looks wrong; `vggtune check`: that and
//! every other problem of a photo folder (duplicates, photos of no class, unusable photos, small
//! classes), in words or as JSON. One set of flags, one job, one progress for both.

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
    /// `check` only: also list this folder's photos that are copies of DATA's (a leak when a
    /// model trained on DATA is scored on it). Any layout; its labels are not read.
    #[arg(long, value_name = "FOLDER")]
    against: Option<PathBuf>,
    /// List at most this many photos (0: all of them).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    #[command(flatten)]
    recipe: super::HeadRecipe,
    #[command(flatten)]
    output: Output,
}

/// The job `args` ask for.
fn job_of(
    choice: DeviceChoice,
    args: &AuditArgs,
) -> anyhow::Result<vggtune::train::audit::AuditJob> {
    let dataset = Dataset::scan(&args.data)?;
    let weights = args.recipe.weights()?;
    let config = args.recipe.apply(choice, TrainConfig::default(), false);
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(vggtune::train::audit::AuditJob {
        dataset,
        weights,
        config,
        folds: args.folds,
        cache_root: args.recipe.cache_dir(),
        from_model: None,
    })
}

/// Runs `work` with the folds' progress shown as `out` says.
fn with_progress<T>(
    out: Output,
    work: impl FnOnce(&mut dyn FnMut(usize, usize, &TrainEvent)) -> Result<Option<T>, String>,
) -> anyhow::Result<T> {
    let bars = out.bars();
    let mut progress: Option<indicatif::ProgressBar> = None;
    let result = work(&mut |fold, folds, event| {
        if let TrainEvent::Started { .. } = event
            && !out.quiet
            && !out.json
        {
            if fold < folds {
                eprintln!("fold {} of {folds}", fold + 1);
            } else {
                eprintln!("the photos of the folder checked against");
            }
        }
        if !out.json {
            print_event(&out, bars, &mut progress, event);
        }
    });
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    result
        .map_err(anyhow::Error::msg)?
        .ok_or_else(|| anyhow::anyhow!("the check was stopped"))
}

fn limit_of(args: &AuditArgs) -> usize {
    if args.limit == 0 {
        usize::MAX
    } else {
        args.limit
    }
}

/// Lists every problem of a photo folder, grouped by kind.
pub fn check(choice: DeviceChoice, args: AuditArgs) -> anyhow::Result<()> {
    let job = job_of(choice, &args)?;
    let never = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let found = with_progress(args.output, |on_event| {
        vggtune::train::check::run(job, args.against.as_deref(), &never, on_event)
    })?;
    let limit = limit_of(&args);
    if args.output.json {
        let mut json = serde_json::to_value(&found)?;
        json["summary"] = found.summary().into();
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!(
        "{}: {} ({:.0} s)",
        args.data.display(),
        found.summary(),
        found.secs
    );
    println!("labels judged by {}", found.audit.judged_by());
    if let Some(against) = &found.against {
        println!(
            "checked against {}: {}{}",
            against.folder.display(),
            vggtune::words::photos(against.photos),
            match against.skipped.len() {
                0 => String::new(),
                n => format!(" ({n} other files skipped: not photos it can read)"),
            }
        );
    }
    for warning in found.audit.warnings() {
        println!("warning: {warning}");
    }
    let mut shown = std::collections::HashMap::new();
    let mut kind = None;
    for f in &found.findings {
        if kind != Some(f.kind) {
            kind = Some(f.kind);
            println!("{}:", f.kind.heading());
        }
        let n = shown.entry(f.kind).or_insert(0usize);
        *n += 1;
        if *n <= limit {
            println!("  {}  {}", f.rel, f.why);
        }
    }
    Ok(())
}

/// Lists the training photos whose label looks wrong.
pub fn audit(choice: DeviceChoice, args: AuditArgs) -> anyhow::Result<()> {
    if args.against.is_some() {
        anyhow::bail!("--against is for `vggtune check`: the label check compares no folders");
    }
    let job = job_of(choice, &args)?;
    let out = args.output;
    let never = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let found = with_progress(out, |on_event| {
        vggtune::train::audit::run(job, &never, on_event)
    })?;
    let limit = limit_of(&args);
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
