//! Check data: everything in a photo folder that silently spoils a model or its score, in one
//! run and one list. Beside the label check ([`super::audit`]: heads trained out of fold), on the
//! same pass's features (the pooled block-5 vectors of every photo, from the feature cache):
//! duplicates (the same photo twice: re-saved, resized, cropped a little), photos that belong to
//! no class (far from every other photo of the folder: [`crate::typical`]'s measure), unusable
//! photos (their pixels: [`crate::data::quality`]) and a class far smaller than the others.
//!
//! Thresholds, and where they come from, are constants here and in `data::quality`; README.md
//! ("Check data") states them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use rayon::prelude::*;

use super::audit::{self, Audit, AuditJob};
use super::events::TrainEvent;
use crate::data::quality::{self, Unusable};
use crate::data::{DecodeLimits, decode_rgb};

pub use crate::typical::DUPLICATE_SHARE_OF_MEDIAN;

/// Photos of no class: further from the 10th nearest photo of the class they are nearest to
/// than the third quartile of those distances plus this many interquartile ranges (Tukey's
/// fence for outliers). Class by class, so that a dozen flowers filed as cats cannot vouch for
/// each other; the nearest class, so that a cat filed as a dog is a wrong label, not a photo
/// of no class.
pub const NO_CLASS_FENCE_IQR: f32 = 1.5;

/// A small class: fewer photos than this share of an even split (Datalab's class imbalance
/// rule, 0.1).
pub const SMALL_CLASS_SHARE: f64 = 0.1;

/// The kinds of problem, in the order the list shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Filed under the wrong class.
    WrongLabel,
    /// The same photo as another in the folder.
    Duplicate,
    /// A photo of the folder checked against that is also in the checked folder.
    Leak,
    /// Like no photo of any class.
    NoClass,
    /// Unusable as a photo.
    Unusable,
    /// A class far smaller than the others.
    SmallClass,
}

impl Kind {
    /// The group's heading.
    pub fn heading(self) -> &'static str {
        match self {
            Self::WrongLabel => "Wrong label",
            Self::Duplicate => "Duplicate",
            Self::Leak => "Also in the checked folder (a leak)",
            Self::NoClass => "Belongs to no class",
            Self::Unusable => "Unusable photo",
            Self::SmallClass => "Small class",
        }
    }
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Finding {
    /// What kind.
    pub kind: Kind,
    /// The photo (for a small class, the class's first photo).
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub path: PathBuf,
    /// Its path in the folder.
    pub rel: String,
    /// The class it is filed under (index into [`Check::classes`]).
    pub class: usize,
    /// Why, in plain words.
    pub why: String,
    /// For a duplicate, the copy that stays (the first by name).
    #[serde(serialize_with = "crate::fsutil::lossy::option")]
    pub twin: Option<PathBuf>,
    /// For a wrong label, the class it looks like.
    pub looks_like: Option<usize>,
}

/// The thresholds a check used on this folder.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Thresholds {
    /// Duplicates: features closer than this.
    pub duplicate_below: f32,
    /// No class: the 10th nearest photo further than this.
    pub no_class_beyond: f32,
    /// The pixel checks dropped because they flagged over 10% of the folder.
    pub dropped: Vec<Unusable>,
}

/// The second folder of a check, whose copies of the checked folder's photos are leaks (the
/// folder a model trained on the first is scored on).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Against {
    /// The folder.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub folder: PathBuf,
    /// Its photos compared.
    pub photos: usize,
    /// Its files that are not usable photos, with why.
    pub skipped: Vec<crate::infer::Unclassified>,
}

/// What a check found.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Check {
    /// The folder's classes.
    pub classes: Vec<String>,
    /// Photos checked.
    pub photos: usize,
    /// Every problem, grouped by kind (in [`Kind`]'s order), the surest first in each.
    pub findings: Vec<Finding>,
    /// The label check's numbers.
    pub audit: Audit,
    /// What the thresholds came to.
    pub thresholds: Thresholds,
    /// The folder checked against for leaks, if one was.
    pub against: Option<Against>,
    /// Seconds the whole check took.
    pub secs: f64,
}

impl Check {
    /// How many findings of each kind, in words ("2 wrong labels, 1 duplicate").
    pub fn summary(&self) -> String {
        let mut counts: Vec<(Kind, usize)> = Vec::new();
        for f in &self.findings {
            match counts.last_mut() {
                Some((k, n)) if *k == f.kind => *n += 1,
                _ => counts.push((f.kind, 1)),
            }
        }
        if counts.is_empty() {
            return format!("{}: nothing found", crate::words::photos(self.photos));
        }
        let parts: Vec<String> = counts
            .iter()
            .map(|(k, n)| format!("{}: {n}", k.heading()))
            .collect();
        format!(
            "{}: {}",
            crate::words::photos(self.photos),
            parts.join(", ")
        )
    }
}

/// Runs the label check's folds, then every other check on their features and the photos'
/// pixels; with `against`, one more pass for that folder's features, whose photos that copy
/// the checked folder's are leaks. `on_event(fold, folds, event)` has `fold == folds` for that
/// pass. `Ok(None)` when `stop` was set.
pub fn run(
    job: AuditJob,
    against: Option<&Path>,
    stop: &Arc<AtomicBool>,
    mut on_event: impl FnMut(usize, usize, &TrainEvent),
) -> Result<Option<Check>, String> {
    let started = std::time::Instant::now();
    let dataset = job.dataset.clone();
    let leak_job = against.map(|folder| (folder, job.clone()));
    let Some(audit) = audit::run(job, stop, &mut on_event)? else {
        return Ok(None);
    };
    let kept = crate::data::curate::kept(&dataset.train_dir)?;
    let entry: HashMap<&std::path::Path, (&str, usize)> = dataset
        .images
        .iter()
        .map(|i| (i.path.as_path(), (i.rel.as_str(), i.label)))
        .collect();
    let finding = |kind, path: &PathBuf, why: String| {
        let (rel, class) = entry.get(path.as_path()).copied().unwrap_or(("", 0));
        Finding {
            kind,
            path: path.clone(),
            rel: rel.to_owned(),
            class,
            why,
            twin: None,
            looks_like: None,
        }
    };
    let mut findings: Vec<Finding> = audit
        .suspects
        .iter()
        .map(|s| Finding {
            looks_like: Some(s.looks_like),
            ..finding(
                Kind::WrongLabel,
                &s.path,
                format!(
                    "filed as {} but looks like {} ({} sure, judged by heads that never saw it)",
                    dataset.classes[s.given],
                    dataset.classes[s.looks_like],
                    crate::infer::confidence_text(s.looks_like_probability)
                ),
            )
        })
        .collect();
    let (paths, features): (Vec<PathBuf>, Vec<Vec<f32>>) = audit.features.iter().cloned().unzip();
    let labels: Vec<usize> = paths
        .iter()
        .map(|p| entry.get(p.as_path()).map_or(0, |e| e.1))
        .collect();
    let mirrors = &audit.mirror_features;
    let (by_features, thresholds) = feature_checks(&paths, (&features, mirrors, &labels), &finding);
    findings.extend(by_features);
    let (unusable, dropped) = unusable(&paths, &finding);
    findings.extend(unusable);
    findings.extend(small_classes(&dataset, &finding));
    findings.retain(|f| f.kind == Kind::SmallClass || !kept.contains(&f.rel));
    // One entry a photo where a plainer reason explains it: an unusable photo (a black
    // frame, a 24 px thumbnail) is also far from every photo of its class, and a photo of no
    // class looks more like the other class than its own to the label check.
    let unusable_photos = flagged(&findings, Kind::Unusable);
    findings.retain(|f| f.kind != Kind::NoClass || !unusable_photos.contains(&f.path));
    let explained: std::collections::HashSet<PathBuf> = unusable_photos
        .union(&flagged(&findings, Kind::NoClass))
        .cloned()
        .collect();
    findings.retain(|f| f.kind != Kind::WrongLabel || !explained.contains(&f.path));
    let against = match leak_job {
        Some((folder, job)) => {
            let data = (paths.as_slice(), features.as_slice(), mirrors.as_slice());
            let found = leaks(
                &job,
                folder,
                data,
                thresholds.duplicate_below,
                stop,
                on_event,
            )?;
            let Some((against, leaks)) = found else {
                return Ok(None);
            };
            findings.extend(leaks);
            Some(against)
        }
        None => None,
    };
    findings.sort_by_key(|f| f.kind);
    Ok(Some(Check {
        classes: dataset.classes.clone(),
        photos: paths.len(),
        findings,
        audit,
        thresholds: Thresholds {
            dropped,
            ..thresholds
        },
        against,
        secs: started.elapsed().as_secs_f64(),
    }))
}

/// The photos of `folder` that copy photos of the checked folder (`paths`, with their
/// features and mirror images' features): their features, from one more head run on the cache
/// with `folder`'s photos as its validation photos, closer than `below` to one of them.
fn leaks(
    job: &AuditJob,
    folder: &Path,
    (paths, features, mirrors): (&[PathBuf], &[Vec<f32>], &[Vec<f32>]),
    below: f32,
    stop: &Arc<AtomicBool>,
    mut on_event: impl FnMut(usize, usize, &TrainEvent),
) -> Result<Option<(Against, Vec<Finding>)>, String> {
    let (entries, rejected) = crate::infer::entries_under(folder);
    if entries.is_empty() {
        return Err(format!("{}: no photos to check against", folder.display()));
    }
    let rel: HashMap<PathBuf, String> = entries
        .iter()
        .map(|e| (e.path.clone(), e.rel.clone()))
        .collect();
    let photos = entries.len();
    let folds = job.folds;
    let train = job.dataset.images.clone();
    let rate = job.config.learning_rate;
    let held = audit::pass_over(job, train, entries, rate, stop, |e| {
        on_event(folds, folds, e)
    })
    .map_err(|e| format!("{}: {e}", folder.display()))?;
    let Some(held) = held else {
        return Ok(None);
    };
    let n = paths.len();
    let bank: Vec<Vec<f32>> = features.iter().chain(mirrors).cloned().collect();
    let nearest = crate::typical::nearest_in(&held.features, &bank, 1);
    let label: HashMap<&Path, (usize, &str)> = job
        .dataset
        .images
        .iter()
        .map(|i| (i.path.as_path(), (i.label, i.rel.as_str())))
        .collect();
    let mut leaks: Vec<(f32, Finding)> = Vec::new();
    for (photo, row) in held.images.iter().zip(nearest) {
        let Some(&(j, d)) = row.first().filter(|n| n.1 < below) else {
            continue;
        };
        let twin = &paths[j % n];
        let why = if twin == photo {
            "the same file as the checked folder's".to_owned()
        } else {
            format!(
                "the same photo as {}{} of the checked folder (features {d:.3} apart; copies \
                 are under {below:.3}): a model trained there is scored here on a photo it \
                 learned",
                label.get(twin.as_path()).map_or("", |l| l.1),
                if j >= n { " mirrored" } else { "" }
            )
        };
        leaks.push((
            d,
            Finding {
                kind: Kind::Leak,
                path: photo.clone(),
                rel: rel.get(photo).cloned().unwrap_or_default(),
                class: label.get(twin.as_path()).map_or(0, |l| l.0),
                why,
                twin: Some(twin.clone()),
                looks_like: None,
            },
        ));
    }
    leaks.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.rel.cmp(&b.1.rel)));
    let against = Against {
        folder: folder.to_owned(),
        photos,
        skipped: rejected,
    };
    Ok(Some((against, leaks.into_iter().map(|l| l.1).collect())))
}

/// The photos `findings` flag as `kind`.
fn flagged(findings: &[Finding], kind: Kind) -> std::collections::HashSet<PathBuf> {
    let of_kind = findings.iter().filter(|f| f.kind == kind);
    of_kind.map(|f| f.path.clone()).collect()
}

/// Duplicates and photos of no class, from the photos' features.
fn feature_checks(
    paths: &[PathBuf],
    (features, mirrors, labels): (&[Vec<f32>], &[Vec<f32>], &[usize]),
    finding: &dyn Fn(Kind, &PathBuf, String) -> Finding,
) -> (Vec<Finding>, Thresholds) {
    let k = crate::typical::K;
    let rows = crate::typical::nearest(features, k);
    let n = features.len();
    // Mirrored copies: each photo against the others' mirror images too (a photo's own
    // mirror image left out).
    let mirrored_rows: Vec<Vec<(usize, f32)>> = if mirrors.len() == n {
        let both: Vec<Vec<f32>> = features.iter().chain(mirrors).cloned().collect();
        crate::typical::nearest(&both, k + 1)
            .into_iter()
            .take(n)
            .enumerate()
            .map(|(i, row)| {
                let mapped = row.into_iter().map(|(j, d)| (j % n, d));
                mapped.filter(|&(j, _)| j != i).collect()
            })
            .collect()
    } else {
        rows.clone()
    };
    // A photo as the model sees it: the mean of it and its mirror image, when both are cached.
    let seen: Vec<Vec<f32>> = if mirrors.len() == n {
        features
            .iter()
            .zip(mirrors)
            .map(|(f, m)| {
                let (f, m) = (crate::typical::normalised(f), crate::typical::normalised(m));
                f.iter().zip(&m).map(|(a, b)| a + b).collect()
            })
            .collect()
    } else {
        features.to_vec()
    };
    let same_class = nearest_class_kth(&seen, labels, k);
    let mut nearest: Vec<f32> = rows.iter().filter_map(|r| r.first().map(|n| n.1)).collect();
    let mut kth: Vec<f32> = same_class.iter().filter_map(|d| *d).collect();
    nearest.sort_by(f32::total_cmp);
    kth.sort_by(f32::total_cmp);
    let at = |v: &[f32], q: f32| v.get((q * (v.len().max(1) - 1) as f32) as usize).copied();
    let duplicate_below = at(&nearest, 0.5).unwrap_or(0.0) * DUPLICATE_SHARE_OF_MEDIAN;
    let (q1, q3) = (at(&kth, 0.25).unwrap_or(0.0), at(&kth, 0.75).unwrap_or(0.0));
    let no_class_beyond = q3 + NO_CLASS_FENCE_IQR * (q3 - q1);
    let mut found = Vec::new();
    // Duplicates: groups of photos joined by near pairs; the first by name stays.
    for g in duplicate_groups(paths, &mirrored_rows, duplicate_below) {
        let first = &paths[g[0]];
        for &i in &g[1..] {
            let mut f = finding(
                Kind::Duplicate,
                &paths[i],
                format!(
                    "the same photo as {} (its nearest photo's features are {:.3} away; \
                     distinct photos' are {:.3} away at the median)",
                    first.file_name().map_or_else(
                        || first.display().to_string(),
                        |n| n.to_string_lossy().into_owned()
                    ),
                    mirrored_rows[i].first().map_or(0.0, |n| n.1),
                    at(&nearest, 0.5).unwrap_or(0.0)
                ),
            );
            f.twin = Some(first.clone());
            found.push(f);
        }
    }
    // Photos of no class, the furthest first.
    let mut far: Vec<(usize, f32)> = same_class
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.map(|d| (i, d)))
        .filter(|&(_, d)| d > no_class_beyond)
        .collect();
    far.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (i, d) in far {
        found.push(finding(
            Kind::NoClass,
            &paths[i],
            format!(
                "unlike the photos of every class: its {} nearest photo of the class it is \
                 nearest to is {d:.3} away, where most photos' is under {q3:.3}",
                crate::typical::ordinal(k)
            ),
        ));
    }
    let thresholds = Thresholds {
        duplicate_below,
        no_class_beyond,
        dropped: Vec::new(),
    };
    (found, thresholds)
}

/// The groups of photos joined by neighbours closer than `below` (each group sorted by path,
/// the groups by their first path; photos in no pair left out).
fn duplicate_groups(paths: &[PathBuf], rows: &[Vec<(usize, f32)>], below: f32) -> Vec<Vec<usize>> {
    fn root(group: &mut [usize], mut i: usize) -> usize {
        while group[i] != i {
            group[i] = group[group[i]];
            i = group[i];
        }
        i
    }
    let mut group: Vec<usize> = (0..paths.len()).collect();
    for (i, row) in rows.iter().enumerate() {
        for &(j, _) in row.iter().filter(|n| n.1 < below) {
            let (a, b) = (root(&mut group, i), root(&mut group, j));
            if a != b {
                group[a.max(b)] = a.min(b);
            }
        }
    }
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..paths.len() {
        let r = root(&mut group, i);
        members.entry(r).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = members.into_values().filter(|m| m.len() > 1).collect();
    for g in &mut groups {
        g.sort_by(|&a, &b| paths[a].cmp(&paths[b]));
    }
    groups.sort_by(|a, b| paths[a[0]].cmp(&paths[b[0]]));
    groups
}

/// Each photo's distance to its `k`-th nearest photo of the class it is nearest to: the
/// smallest, over the classes of more than `k` photos, of the `k`-th nearest photo of that
/// class (the photo itself left out). A mislabelled photo is near its true class; a photo of
/// no class is far from every class. `None` for the photos of a class of `k` photos or fewer
/// (they cannot be measured against their own class).
fn nearest_class_kth(features: &[Vec<f32>], labels: &[usize], k: usize) -> Vec<Option<f32>> {
    let mut out: Vec<Option<f32>> = vec![None; features.len()];
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut small = vec![false; classes];
    for (c, is_small) in small.iter_mut().enumerate() {
        let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        if members.len() <= k {
            *is_small = true;
            continue;
        }
        let of_class: Vec<Vec<f32>> = members.iter().map(|&i| features[i].clone()).collect();
        let rows = crate::typical::nearest_in(features, &of_class, k + 1);
        for (i, row) in rows.iter().enumerate() {
            // Its own photo is at distance 0 in its own class's row: skip it.
            let others = row.iter().filter(|n| members[n.0] != i);
            let Some(d) = others.map(|n| n.1).nth(k - 1) else {
                continue;
            };
            out[i] = Some(out[i].map_or(d, |o: f32| o.min(d)));
        }
    }
    for (i, &label) in labels.iter().enumerate() {
        if small[label] {
            out[i] = None;
        }
    }
    out
}

/// Photos unusable as photos, from their pixels (decoded on all cores), and the checks dropped
/// because they flagged too much of the folder.
fn unusable(
    paths: &[PathBuf],
    finding: &dyn Fn(Kind, &PathBuf, String) -> Finding,
) -> (Vec<Finding>, Vec<Unusable>) {
    let limits = DecodeLimits::default();
    let scored: Vec<Option<quality::Scores>> = paths
        .par_iter()
        .map(|p| {
            decode_rgb(p, &limits)
                .ok()
                .map(|photo| quality::scores(&photo))
        })
        .collect();
    let (index, scores): (Vec<usize>, Vec<quality::Scores>) = scored
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .unzip();
    let (problems, dropped) = quality::problems(&scores);
    let found = index
        .iter()
        .zip(&problems)
        .zip(&scores)
        .filter(|((_, p), _)| !p.is_empty())
        .map(|((&i, p), s)| {
            let words: Vec<&str> = p.iter().map(|u| u.words()).collect();
            let (w, h) = s.size;
            finding(
                Kind::Unusable,
                &paths[i],
                format!("{} ({w}×{h} px)", words.join("; ")),
            )
        })
        .collect();
    (found, dropped)
}

/// Classes with fewer photos than [`SMALL_CLASS_SHARE`] of an even split.
fn small_classes(
    dataset: &crate::data::Dataset,
    finding: &dyn Fn(Kind, &PathBuf, String) -> Finding,
) -> Vec<Finding> {
    let classes = dataset.classes.len().max(1);
    let mut counts = vec![0usize; classes];
    for i in &dataset.images {
        if let Some(c) = counts.get_mut(i.label) {
            *c += 1;
        }
    }
    let even = dataset.images.len() as f64 / classes as f64;
    (0..classes)
        .filter(|&c| (counts[c] as f64) < SMALL_CLASS_SHARE * even)
        .filter_map(|c| {
            let first = dataset.images.iter().find(|i| i.label == c)?;
            Some(finding(
                Kind::SmallClass,
                &first.path,
                format!(
                    "'{}' has {}, where an even split would give each class {even:.0}: the model \
                     will rarely say it",
                    dataset.classes[c],
                    crate::words::photos(counts[c])
                ),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn paths(n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| PathBuf::from(format!("p{i:03}.jpg")))
            .collect()
    }

    #[test]
    fn a_photo_filed_under_the_wrong_class_is_near_its_true_class_and_an_outlier_near_none() {
        let mut rng = SplitMix64(9);
        let mut point = |centre: f32| -> Vec<f32> {
            let mut v: Vec<f32> = (0..8)
                .map(|_| (rng.next_u64() % 1000) as f32 / 5000.0)
                .collect();
            v[(centre as usize) % 8] += 1.0;
            v
        };
        // 15 photos of class 0 around axis 0, 15 of class 1 around axis 1; photo 30 is of class
        // 0's kind filed as 1; photo 31, filed as 0, is near neither (axis 5).
        let mut features: Vec<Vec<f32>> = (0..30).map(|i| point((i / 15) as f32)).collect();
        features.push(point(0.0));
        features.push(point(5.0));
        let mut labels: Vec<usize> = (0..30).map(|i| i / 15).collect();
        labels.extend([1, 0]);
        let kth = nearest_class_kth(&features, &labels, 3);
        let typical = kth[..30].iter().map(|d| d.unwrap()).fold(0.0, f32::max);
        assert!(kth[30].unwrap() <= typical * 1.5, "{kth:?}");
        assert!(kth[31].unwrap() > typical * 2.0, "{kth:?}");
        // Its own class alone would call the mislabelled photo as far as the outlier.
        let own: Vec<Vec<f32>> = (15..31).map(|i| features[i].clone()).collect();
        let own_kth = crate::typical::nearest(&own, 3)[15].last().unwrap().1;
        assert!(own_kth > typical * 2.0, "{own_kth}");
    }

    #[test]
    fn near_copies_are_duplicates_of_the_first_and_outliers_belong_to_no_class() {
        let mut rng = SplitMix64(4);
        let mut noise = |scale: f32| (rng.next_u64() % 2001) as f32 / 1000.0 * scale - scale;
        let mut features: Vec<Vec<f32>> = (0..60)
            .map(|i| {
                (0..32)
                    .map(|d| if d % 2 == i % 2 { 1.0 } else { 0.2 } + noise(0.4))
                    .collect()
            })
            .collect();
        // p060 re-saves p003; p061 is far from everything.
        let copy: Vec<f32> = features[3].iter().map(|v| v * 1.01 + 0.001).collect();
        features.push(copy);
        features.push((0..32).map(|d| if d < 4 { 3.0 } else { -1.0 }).collect());
        let paths = paths(62);
        let finding = |kind, path: &PathBuf, why: String| Finding {
            kind,
            path: path.clone(),
            rel: path.display().to_string(),
            class: 0,
            why,
            twin: None,
            looks_like: None,
        };
        // Two classes, one a cluster each; the copy is of class 1 (as p003), the outlier of 0.
        let mut labels: Vec<usize> = (0..60).map(|i| i % 2).collect();
        labels.extend([1, 0]);
        let (found, t) = feature_checks(&paths, (&features, &[], &labels), &finding);
        let dups: Vec<&Finding> = found.iter().filter(|f| f.kind == Kind::Duplicate).collect();
        assert_eq!(dups.len(), 1, "{found:?}");
        assert_eq!(dups[0].rel, "p060.jpg");
        assert_eq!(
            dups[0].twin.as_deref(),
            Some(std::path::Path::new("p003.jpg"))
        );
        let far: Vec<&str> = found
            .iter()
            .filter(|f| f.kind == Kind::NoClass)
            .map(|f| f.rel.as_str())
            .collect();
        // The outlier first (the furthest); Tukey's fence lets a few of uniform noise's
        // corners through too.
        assert_eq!(far.first(), Some(&"p061.jpg"), "{t:?}");
        assert!(far.len() <= 3, "{far:?} {t:?}");
    }
}
