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
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use rayon::prelude::*;

use super::audit::{self, Audit, AuditJob};
use super::events::TrainEvent;
use crate::data::quality::{self, Unusable};
use crate::data::{DecodeLimits, decode_rgb};

pub use crate::typical::DUPLICATE_SHARE_OF_MEDIAN;

/// Photos of no class: further from their 10th nearest photo of the same class than the third
/// quartile of those distances plus this many interquartile ranges (Tukey's fence for
/// outliers). Within the class, so that a dozen flowers filed as cats cannot vouch for each
/// other.
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
/// pixels. `Ok(None)` when `stop` was set.
pub fn run(
    job: AuditJob,
    stop: &Arc<AtomicBool>,
    on_event: impl FnMut(usize, usize, &TrainEvent),
) -> Result<Option<Check>, String> {
    let started = std::time::Instant::now();
    let dataset = job.dataset.clone();
    let Some(audit) = audit::run(job, stop, on_event)? else {
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
        secs: started.elapsed().as_secs_f64(),
    }))
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
    let same_class = same_class_kth(features, labels, k);
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
                "unlike the other photos of its class: its {} nearest is {d:.3} away, where \
                 most photos' is under {q3:.3}",
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

/// Each photo's distance to its `k`-th nearest photo of the same class (`None` in a class of
/// `k` photos or fewer).
fn same_class_kth(features: &[Vec<f32>], labels: &[usize], k: usize) -> Vec<Option<f32>> {
    let mut out = vec![None; features.len()];
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    for c in 0..classes {
        let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        if members.len() <= k {
            continue;
        }
        let of_class: Vec<Vec<f32>> = members.iter().map(|&i| features[i].clone()).collect();
        for (row, &i) in crate::typical::nearest(&of_class, k).iter().zip(&members) {
            out[i] = row.last().map(|n| n.1);
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
