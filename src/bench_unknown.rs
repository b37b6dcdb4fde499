//! The benchmark of the *none of these* verdict (`vggtune bench-unknown`): on photos like the
//! training photos and photos of none of the classes, the shipped score (the k-th nearest
//! training photo's distance, [`crate::typical`]) against the baselines, the maximum softmax
//! probability (Hendrycks & Gimpel 2017) and the energy score (Liu et al. 2020): AUROC, the
//! unknown photos caught while 95% of the known are kept and the reverse, and what the shipped
//! threshold does; plus the verdict's cost per photo.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::infer::{Classifier, Scored, collect_images};
use crate::typical::Typicality;

/// A set of photos and its name.
pub struct PhotoSet {
    /// Its name in the table.
    pub name: String,
    /// The photos.
    pub paths: Vec<PathBuf>,
    /// Their true classes (the model's indices), when the folder names them.
    pub labels: Option<std::collections::HashMap<PathBuf, usize>>,
}

impl PhotoSet {
    /// Every image under `dir`.
    pub fn of_folder(dir: &std::path::Path) -> Self {
        let (paths, _) = collect_images(&[dir.to_owned()]);
        Self {
            name: dir.display().to_string(),
            paths,
            labels: None,
        }
    }

    /// Every image under `dir`, with its class when the folder's classes are the model's
    /// (`classes`), so accuracy and calibration are measured on it too.
    pub fn labelled(dir: &std::path::Path, classes: &[String]) -> Self {
        let scanned = crate::data::Dataset::scan(dir).ok().and_then(|d| {
            let (to_model, _) = crate::infer::match_classes(classes, &d.classes, &[]).ok()?;
            Some(
                d.images
                    .iter()
                    .map(|i| (i.path.clone(), to_model[i.label]))
                    .collect(),
            )
        });
        match scanned {
            Some(labels) => {
                let labels: std::collections::HashMap<PathBuf, usize> = labels;
                let mut paths: Vec<PathBuf> = labels.keys().cloned().collect();
                paths.sort();
                Self {
                    name: dir.display().to_string(),
                    paths,
                    labels: Some(labels),
                }
            }
            None => Self::of_folder(dir),
        }
    }
}

/// Accuracy, log loss and calibration error of a labelled set, with the model's temperature
/// and without it (`calibrate(p, 1/T)` undoes it).
fn calibration_line(name: &str, scored: &[Scored], labels: &[usize], t: f32) -> String {
    use crate::calibration::{calibrate, reliability};
    let after: Vec<Vec<f32>> = scored.iter().map(|s| s.probabilities.clone()).collect();
    let before: Vec<Vec<f32>> = after.iter().map(|p| calibrate(p, 1.0 / t)).collect();
    let right = after
        .iter()
        .zip(labels)
        .filter(|(p, l)| crate::metrics::argmax(p) == **l)
        .count();
    format!(
        "Known {name}: accuracy {:.2}% ({right} of {}); log loss {:.4} → {:.4} and ECE {:.2}% → \
         {:.2}% with the temperature {t:.3}.\n",
        100.0 * right as f64 / labels.len().max(1) as f64,
        labels.len(),
        crate::metrics::log_loss(&before, labels),
        crate::metrics::log_loss(&after, labels),
        100.0 * reliability(&before, labels).ece,
        100.0 * reliability(&after, labels).ece,
    )
}

/// A score per photo: higher is more like the training photos.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Score {
    /// Minus the distance to the k-th nearest training photo.
    Knn(usize),
    /// The largest calibrated probability.
    MaxSoftmax,
    /// Minus the energy: the log-sum-exp of the logits.
    Energy,
}

impl Score {
    fn name(self) -> String {
        match self {
            Self::Knn(k) => format!("kNN distance, k = {k}"),
            Self::MaxSoftmax => "maximum softmax probability".into(),
            Self::Energy => "energy (log-sum-exp of the logits)".into(),
        }
    }

    fn of(self, s: &Scored, typical: &[(usize, Typicality)]) -> f64 {
        match self {
            Self::Knn(k) => typical
                .iter()
                .find(|(kk, _)| *kk == k)
                .map_or(f64::NAN, |(_, t)| -f64::from(t.distance(&s.features))),
            Self::MaxSoftmax => f64::from(s.probabilities.iter().copied().fold(0.0, f32::max)),
            Self::Energy => {
                let top = s.logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = s.logits.iter().map(|l| (l - top).exp()).sum();
                f64::from(top + sum.ln())
            }
        }
    }
}

/// The area under the ROC curve of telling `known` (positive) from `unknown` by score: the
/// chance that a random known photo scores above a random unknown one (ties count half).
pub fn auroc(known: &[f64], unknown: &[f64]) -> f64 {
    if known.is_empty() || unknown.is_empty() {
        return f64::NAN;
    }
    let mut wins = 0.0;
    for &k in known {
        for &u in unknown {
            wins += if k > u {
                1.0
            } else if k == u {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (known.len() * unknown.len()) as f64
}

/// The share of `unknown` scored below the threshold that keeps `keep` of `known`.
pub fn caught_at(known: &[f64], unknown: &[f64], keep: f64) -> f64 {
    let mut sorted = known.to_vec();
    sorted.sort_by(f64::total_cmp);
    let Some(&threshold) = sorted.get(((1.0 - keep) * sorted.len() as f64).floor() as usize) else {
        return f64::NAN;
    };
    unknown.iter().filter(|&&u| u < threshold).count() as f64 / unknown.len().max(1) as f64
}

/// The shares the training photos' own threshold gives, for each k and each share of training
/// photos kept (the threshold at that leave-one-out quantile): known photos called *none of
/// these*, and each unknown set's photos caught.
fn thresholds_table(
    by_k: &[(usize, Typicality)],
    known: &[Scored],
    unknown: &[PhotoSet],
    unknown_sets: &[Vec<Scored>],
) -> String {
    let mut out = String::from(
        "### The training photos' threshold, by k and by the share of training photos kept\n\n\
         | k | kept | threshold | known called none of these |",
    );
    for set in unknown {
        out.push_str(&format!(" {} caught |", set.name));
    }
    out.push_str("\n| --- | --- | --- | --- |");
    out.push_str(&" --- |".repeat(unknown.len()));
    out.push('\n');
    let beyond = |set: &[Scored], t: &Typicality, threshold: f32| {
        let n = set
            .iter()
            .filter(|s| t.distance(&s.features) > threshold)
            .count();
        100.0 * n as f64 / set.len().max(1) as f64
    };
    for (k, t) in by_k {
        for keep in [95usize, 98, 99] {
            let threshold = t.summary.quantiles[keep];
            out.push_str(&format!(
                "| {k} | {keep}% | {threshold:.4} | {:.1}% |",
                beyond(known, t, threshold)
            ));
            for set in unknown_sets {
                out.push_str(&format!(" {:.1}% |", beyond(set, t, threshold)));
            }
            out.push('\n');
        }
    }
    out.push('\n');
    out
}

/// Runs the benchmark and returns its report (Markdown).
pub fn run(
    classifier: &Classifier,
    known: &[PhotoSet],
    unknown: &[PhotoSet],
    ks: &[usize],
    mut progress: impl FnMut(&str),
) -> Result<String, String> {
    let typical = classifier
        .typicality()
        .ok_or_else(|| crate::typical::NO_FEATURES.to_owned())?;
    let never = AtomicBool::new(false);
    let mut scored_sets = Vec::new();
    let (mut predict_secs, mut photos) = (0.0, 0usize);
    for set in known.iter().chain(unknown) {
        progress(&format!(
            "scoring {} ({} photos)",
            set.name,
            set.paths.len()
        ));
        let started = Instant::now();
        let (scored, _) = classifier.score_until(&set.paths, 16, |_, _| {}, &never);
        predict_secs += started.elapsed().as_secs_f64();
        photos += scored.len();
        scored_sets.push(scored);
    }
    let by_k: Vec<(usize, Typicality)> = ks.iter().map(|&k| (k, typical.with_k(k))).collect();
    // The verdict's own cost: judging every scored photo once more.
    let started = Instant::now();
    let all = scored_sets.iter().flatten();
    let judgements: Vec<_> = all.map(|s| typical.judge(&s.features)).collect();
    let judged = judgements.len();
    let judge_secs = started.elapsed().as_secs_f64();
    let mut scores: Vec<Score> = ks.iter().map(|&k| Score::Knn(k)).collect();
    scores.extend([Score::MaxSoftmax, Score::Energy]);
    let values = |set: &[Scored], score: Score| -> Vec<f64> {
        set.iter().map(|s| score.of(s, &by_k)).collect()
    };
    let (known_sets, unknown_sets) = scored_sets.split_at(known.len());
    let known_all: Vec<Scored> = known_sets.iter().flatten().cloned().collect();
    let mut out = String::new();
    let s = &typical.summary;
    out.push_str(&format!(
        "Model: {} training features of {} photos; shipped k = {}, threshold {:.4} (the \
         leave-one-out distance {:.0}% of the training photos are within).\n\n",
        s.count,
        s.photos,
        s.k,
        s.threshold,
        100.0 * s.keep
    ));
    out.push_str("Known photos: ");
    let names: Vec<String> = known
        .iter()
        .zip(known_sets)
        .map(|(k, v)| format!("{} ({})", k.name, v.len()))
        .collect();
    out.push_str(&names.join(", "));
    out.push_str(".\n\n");
    for (set, scored) in unknown.iter().zip(unknown_sets) {
        out.push_str(&format!(
            "### Unknown: {} ({} photos)\n\n| score | AUROC | unknown caught, 95% of known \
             kept | known kept, 95% of unknown caught |\n| --- | --- | --- | --- |\n",
            set.name,
            scored.len()
        ));
        for &score in &scores {
            let (k, u) = (values(&known_all, score), values(scored, score));
            let flipped = |v: &[f64]| v.iter().map(|x| -x).collect::<Vec<f64>>();
            out.push_str(&format!(
                "| {} | {:.4} | {:.1}% | {:.1}% |\n",
                score.name(),
                auroc(&k, &u),
                100.0 * caught_at(&k, &u, 0.95),
                100.0 * caught_at(&flipped(&u), &flipped(&k), 0.95),
            ));
        }
        let caught = scored
            .iter()
            .filter(|x| !typical.judge(&x.features).known)
            .count();
        out.push_str(&format!(
            "\nThe shipped verdict (k = {}, the training photos' threshold): {} of {} called \
             none of these ({:.1}%).\n\n",
            s.k,
            caught,
            scored.len(),
            100.0 * caught as f64 / scored.len().max(1) as f64
        ));
    }
    out.push_str(&thresholds_table(&by_k, &known_all, unknown, unknown_sets));
    let t = classifier.header.temperature();
    let mut all_labels = Vec::new();
    let mut all_labelled = Vec::new();
    for (set, scored) in known.iter().zip(known_sets) {
        if let Some(labels) = &set.labels {
            let of: Vec<usize> = scored.iter().map(|s| labels[&s.path]).collect();
            out.push_str(&calibration_line(&set.name, scored, &of, t));
            all_labels.extend(of);
            all_labelled.extend(scored.iter().cloned());
        }
        let called = scored
            .iter()
            .filter(|x| !typical.judge(&x.features).known)
            .count();
        out.push_str(&format!(
            "Known {}: {} of {} called none of these ({:.1}%).\n",
            set.name,
            called,
            scored.len(),
            100.0 * called as f64 / scored.len().max(1) as f64
        ));
    }
    if known.iter().filter(|k| k.labels.is_some()).count() > 1 {
        out.push_str(&calibration_line(
            "photos, all together",
            &all_labelled,
            &all_labels,
            t,
        ));
    }
    out.push_str(&format!(
        "\nCost: predicting {photos} photos took {predict_secs:.1} s ({:.1} ms a photo); judging \
         {judged} took {:.3} s ({:.3} ms a photo, {:.2}% of a prediction).\n",
        1000.0 * predict_secs / photos.max(1) as f64,
        judge_secs,
        1000.0 * judge_secs / judged.max(1) as f64,
        100.0 * (judge_secs / judged.max(1) as f64) / (predict_secs / photos.max(1) as f64)
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_and_the_operating_points_count_what_they_say() {
        assert_eq!(auroc(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
        assert_eq!(auroc(&[1.0], &[1.0]), 0.5);
        assert_eq!(auroc(&[1.0, 3.0], &[2.0]), 0.5);
        let known: Vec<f64> = (0..100).map(f64::from).collect();
        // Keeping 95% of the known puts the threshold at 5: the unknown below it are caught.
        assert_eq!(caught_at(&known, &[0.0, 4.0, 5.0, 50.0], 0.95), 0.5);
    }
}
