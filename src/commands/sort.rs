//! `vggtune sort`: sorts a folder nobody has labelled into `OUT/CLASS/`, asking about the photos
//! the head is least sure of (at the terminal, or from a labelled copy: `--oracle`, the
//! simulation that measures the queue), then sorting every photo it is sure enough of;
//! `vggtune sort --undo OUT` takes the last sort back.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use clap::Args;
use vggtune::device::DeviceChoice;
use vggtune::sort::journal::{self, Mode};
use vggtune::sort::pool::{self, Opening, Start};
use vggtune::sort::{Answer, Order, Session};
use vggtune::train::{TrainConfig, TrainEvent};

use super::Output;
use super::train::print_event;

/// `vggtune sort`.
#[derive(Args, Debug)]
pub struct SortArgs {
    /// The folder of photos nobody has labelled (any layout; sub-folders are walked; nothing
    /// is moved before the end).
    #[arg(required_unless_present = "undo")]
    pool: Option<PathBuf>,
    /// Where the sorted photos go: OUT/CLASS/NAME.
    #[arg(long, value_name = "OUT")]
    into: Option<PathBuf>,
    /// Start from this model: its classes, its base, and its guesses.
    #[arg(long, conflicts_with = "classes", required_unless_present_any = ["classes", "undo"])]
    model: Option<PathBuf>,
    /// The classes, comma-separated (e.g. cat,dog).
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// Sort every photo the head is at least this sure of (its calibrated confidence).
    #[arg(long, default_value_t = vggtune::sort::DEFAULT_THRESHOLD, value_parser = threshold)]
    threshold: f32,
    /// Move the photos instead of copying them.
    #[arg(long = "move", conflicts_with = "copy")]
    move_photos: bool,
    /// Copy the photos (the default).
    #[arg(long)]
    copy: bool,
    /// Take answers from this labelled copy of the pool (class folders or Kaggle's flat names,
    /// matched by path, else by file name) instead of asking: the simulation that measures
    /// the queue.
    #[arg(long, value_name = "LABELLED", requires = "answers")]
    oracle: Option<PathBuf>,
    /// How many answers the oracle gives.
    #[arg(long)]
    answers: Option<usize>,
    /// With --oracle: which photo is answered next (queue: the least sure; random: the
    /// baseline).
    #[arg(long, value_enum, default_value_t = Order::Queue, requires = "oracle")]
    order: Order,
    /// With --oracle: score the head on this labelled folder after each fit.
    #[arg(long, value_name = "FOLDER", requires = "oracle")]
    score_on: Option<PathBuf>,
    /// Write the map of the pool (each photo a point, photos alike near each other) to this
    /// CSV: path,x,y.
    #[arg(long, value_name = "CSV")]
    map: Option<PathBuf>,
    /// With --oracle: answers between two fits of the head (the window and the terminal fit
    /// every 5, and at once when the head can first learn).
    #[arg(long, default_value_t = vggtune::sort::RETRAIN_EVERY)]
    every: usize,
    /// Takes back the last sort into this folder (from its journal), instead of sorting.
    #[arg(long, value_name = "OUT", conflicts_with_all = ["pool", "into"])]
    undo: Option<PathBuf>,
    #[command(flatten)]
    base: super::BaseFlags,
    /// Seed of the queue's first photos and the random order.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[command(flatten)]
    output: Output,
}

fn threshold(s: &str) -> Result<f32, String> {
    let t: f32 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a confidence"))?;
    vggtune::limits::check("threshold", t, &vggtune::limits::SORT_THRESHOLD)?;
    Ok(t)
}

/// Runs `vggtune sort`.
pub fn sort(choice: DeviceChoice, args: SortArgs) -> anyhow::Result<()> {
    if let Some(out) = &args.undo {
        return undo(out, args.output);
    }
    if args.into.is_none() && args.oracle.is_none() && args.map.is_none() {
        anyhow::bail!(
            "say where the sorted photos go (--into OUT): answers given without it would be lost"
        );
    }
    if let (Some(pool), Some(into)) = (&args.pool, &args.into) {
        pool::check_out(pool, into).map_err(anyhow::Error::msg)?;
    }
    let opening = opening(choice, &args)?;
    let out = args.output;
    let never = Arc::new(AtomicBool::new(false));
    let bars = out.bars();
    let mut progress = None;
    let mut on_event = |e: &TrainEvent| {
        if !out.json && !matches!(e, TrainEvent::Epoch(_) | TrainEvent::Finished(_)) {
            print_event(&out, bars, &mut progress, e);
        }
    };
    let opened = opening
        .open(&never, &mut on_event)
        .map_err(anyhow::Error::msg)?
        .context("stopped")?;
    if let Some(p) = progress.take() {
        p.finish_and_clear();
    }
    let mut session = opened.session;
    if !out.quiet && !out.json {
        eprintln!(
            "{}: {} to sort into {}{}",
            opening.pool.display(),
            vggtune::words::photos(session.photos.len()),
            session.classes.join(", "),
            match opened.skipped.len() {
                0 => String::new(),
                n => format!(" ({n} other files are not photos it can read)"),
            }
        );
    }
    if let Some(csv) = &args.map {
        let started = std::time::Instant::now();
        let points = session.map();
        let mut text = String::from("path,x,y\n");
        for (photo, p) in session.photos.iter().zip(&points) {
            text.push_str(&format!(
                "{},{:.5},{:.5}\n",
                vggtune::infer::csv_field(&photo.rel),
                p[0],
                p[1]
            ));
        }
        vggtune::fsutil::write_atomic(csv, text.as_bytes())
            .with_context(|| format!("cannot write {}", csv.display()))?;
        if !out.quiet && !out.json {
            eprintln!(
                "map of {} in {:.1} s: {}",
                vggtune::words::photos(points.len()),
                started.elapsed().as_secs_f64(),
                csv.display()
            );
        }
    }
    if let Some(labelled) = &args.oracle {
        simulate(&opening, &args, &mut session, labelled, &never)?;
    } else {
        ask(&mut session)?;
    }
    if let Some(into) = &args.into {
        sort_the_rest(&mut session, &args, into, &never)?;
    }
    Ok(())
}

/// `vggtune sort --undo OUT`.
fn undo(out: &std::path::Path, output: Output) -> anyhow::Result<()> {
    let undone = journal::undo(out).map_err(anyhow::Error::msg)?;
    if output.json {
        println!("{}", serde_json::to_string_pretty(&undone)?);
    } else {
        println!("{}: {}", out.display(), undone.summary());
        for (path, why) in &undone.kept {
            println!("  kept {}: {why}", path.display());
        }
    }
    Ok(())
}

/// The head fitted on every answer, then every photo it is sure enough of sorted into `into`.
fn sort_the_rest(
    session: &mut Session,
    args: &SortArgs,
    into: &std::path::Path,
    never: &AtomicBool,
) -> anyhow::Result<()> {
    if !session.is_fitted() {
        session.retrain();
    }
    let plan = pool::plan(session, args.threshold);
    let mode = if args.move_photos {
        Mode::Move
    } else {
        Mode::Copy
    };
    let report = journal::apply(into, &plan, mode, |_, _| {}, never).map_err(anyhow::Error::msg)?;
    if args.output.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "{}; {} left unsorted (under {}% sure, or none of these)",
        report.summary(into),
        session.photos.len() - report.sorted(),
        args.threshold * 100.0,
    );
    for (path, why) in &report.failed {
        println!("  not sorted {}: {why}", path.display());
    }
    println!("undo: vggtune sort --undo {:?}", into.display().to_string());
    Ok(())
}

fn opening(choice: DeviceChoice, args: &SortArgs) -> anyhow::Result<Opening> {
    let start = match &args.model {
        Some(m) => Start::Model(m.clone()),
        None => Start::Classes(args.classes.iter().map(|c| c.trim().to_owned()).collect()),
    };
    let weights = match start {
        Start::Model(_) => None,
        Start::Classes(_) => args.base.weights()?,
    };
    let mut config = args.base.apply(TrainConfig {
        device: choice,
        ..TrainConfig::default()
    });
    config.set_seed(args.seed);
    config.validate().map_err(anyhow::Error::msg)?;
    let pool = args.pool.clone().context("no folder to sort")?;
    Ok(Opening {
        pool,
        start,
        weights,
        config,
        cache_root: args.base.cache_dir(),
        seed: args.seed,
    })
}

/// The simulation: answers from `labelled`, the curve printed (and scored on --score-on).
fn simulate(
    opening: &Opening,
    args: &SortArgs,
    session: &mut Session,
    labelled: &std::path::Path,
    never: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let truth = pool::oracle(session, labelled).map_err(anyhow::Error::msg)?;
    let scored = match &args.score_on {
        Some(folder) => Some(
            opening
                .labelled(&session.classes, folder, never, |_| {})
                .map_err(anyhow::Error::msg)?
                .context("stopped")?,
        ),
        None => None,
    };
    // The scored photos of the sort's classes, picked once for every fit.
    let scored = scored.map(|l| {
        let known: Vec<usize> = (0..l.labels.len())
            .filter(|&i| l.labels[i].is_some())
            .collect();
        let features: Vec<Vec<f32>> = known.iter().map(|&i| l.features[i].clone()).collect();
        let mirrors: Vec<Vec<f32>> = known
            .iter()
            .filter_map(|&i| l.mirrors.get(i).cloned())
            .collect();
        let labels: Vec<usize> = known.iter().filter_map(|&i| l.labels[i]).collect();
        (features, mirrors, labels)
    });
    let score = |s: &Session| {
        let (features, mirrors, labels) = scored.as_ref()?;
        Some(s.accuracy_on(features, mirrors, labels))
    };
    let answers = args.answers.unwrap_or(0);
    let curve = vggtune::sort::simulate(session, &truth, (answers, args.every, args.order), &score);
    let sorted = session.sorted(args.threshold);
    let wrong = sorted.iter().filter(|&&(i, c)| truth[i] != Some(c)).count();
    if args.output.json {
        for point in &curve {
            println!("{}", serde_json::to_string(point)?);
        }
        let at = serde_json::json!({
            "threshold": args.threshold,
            "sorted": sorted.len(),
            "wrong": wrong,
            "photos": session.photos.len(),
        });
        println!("{at}");
        return Ok(());
    }
    println!("answers  accuracy  estimated (answered / rest)  temperature  fit");
    for p in &curve {
        println!(
            "{:>7}  {:>8}  {:>27}  {:>11}  {:.2} s",
            p.answers,
            p.accuracy
                .map_or("-".into(), |a| format!("{:.2}%", 100.0 * a)),
            p.estimate.map_or("-".into(), |e| format!(
                "{:.1}% / {:.1}%",
                100.0 * e.answered_accuracy,
                100.0 * e.expected_accuracy
            )),
            p.estimate
                .map_or("-".into(), |e| format!("{:.2}", e.temperature)),
            p.fit_secs
        );
    }
    println!(
        "at {}%: {} of {} would be sorted, {wrong} of them wrongly (by the oracle)",
        args.threshold * 100.0,
        sorted.len(),
        session.photos.len()
    );
    Ok(())
}

/// Asks at the terminal, one photo at a time, until the user finishes or nothing is left.
fn ask(session: &mut Session) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!("nothing to answer with: run it at a terminal, or give --oracle LABELLED");
    }
    let keys: Vec<String> = session
        .classes
        .iter()
        .enumerate()
        .take(9)
        .map(|(i, c)| format!("{} {c}", i + 1))
        .collect();
    eprintln!(
        "For each photo: {}, Enter the guess, 0 none of these, s skip, u undo, q sort the rest.",
        keys.join(", ")
    );
    let mut since = 0;
    let mut lines = stdin.lock().lines();
    loop {
        let Some(&i) = session.queue().first() else {
            return Ok(());
        };
        let guess = session.guess(i).map_or(String::new(), |(c, p)| {
            format!(
                " — looks like {} ({})",
                session.classes[c],
                vggtune::infer::confidence_text(p)
            )
        });
        eprint!(
            "[{} answered] {}{guess}: ",
            session.answered(),
            session.photos[i].path.display()
        );
        std::io::stderr().flush()?;
        let Some(line) = lines.next().transpose()? else {
            return Ok(());
        };
        let answer = match line.trim() {
            "q" => return Ok(()),
            "u" => {
                session.undo();
                continue;
            }
            "s" => Answer::Skipped,
            "0" => Answer::NoneOfThese,
            "" => match session.guess(i) {
                Some((c, _)) => Answer::Class(c),
                None => continue,
            },
            n => match n.parse::<usize>() {
                Ok(k) if (1..=session.classes.len()).contains(&k) => Answer::Class(k - 1),
                _ => continue,
            },
        };
        session.answer(i, answer);
        since += 1;
        if session.needs_fit(since) {
            session.retrain();
            since = 0;
        }
    }
}
