//! Opening a sort: the pool's photos (any layout, sub-folders walked), their features from one
//! head pass over the feature cache, and a model's guesses when the sort starts from a model;
//! and the same for a labelled folder (the answers of a simulation, the photos it is scored on).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::{Photo, Session};
use crate::data::{Dataset, ImageEntry, Layout};
use crate::infer::Unclassified;
use crate::train::TrainConfig;
use crate::train::audit::{self, AuditJob};
use crate::train::events::TrainEvent;

/// The head pass's learning rate: the smallest allowed, so that a model's head says what it
/// said (the pass is for the features and the model's guesses).
const PASS_RATE: f64 = 1e-7;

/// What the sort's classes come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Start {
    /// Class names typed by the user.
    Classes(Vec<String>),
    /// A saved model: its classes, its base, and its guesses to begin with.
    Model(PathBuf),
}

/// How to open a sort.
#[derive(Clone, Debug)]
pub struct Opening {
    /// The folder of photos nobody has labelled.
    pub pool: PathBuf,
    pub start: Start,
    /// The base weights (with [`Start::Classes`]).
    pub weights: Option<PathBuf>,
    /// The head pass's settings (input size, preprocessing, device); the rest is forced.
    pub config: TrainConfig,
    pub cache_root: Option<PathBuf>,
    pub seed: u64,
}

/// An opened sort.
pub struct Opened {
    pub session: Session,
    /// The pool's files that are not usable photos, with why.
    pub skipped: Vec<Unclassified>,
}

impl Opening {
    /// The classes: typed, or the model's.
    pub fn classes(&self) -> Result<Vec<String>, String> {
        let classes = match &self.start {
            Start::Classes(c) if c.is_empty() => {
                return Err(
                    "type the classes, separated by commas (e.g. cat, dog), or start \
                            from a model"
                        .into(),
                );
            }
            Start::Classes(c) => c.clone(),
            Start::Model(m) => {
                crate::model::bundle::read_header(m)
                    .map_err(|e| format!("{}: {e}", m.display()))?
                    .classes
            }
        };
        for c in &classes {
            super::journal::check_class_name(c)?;
        }
        crate::limits::check("classes", classes.len(), &crate::limits::CLASSES)?;
        // Folders differing only in case are one folder on macOS and Windows.
        let mut unique: Vec<String> = classes.iter().map(|c| c.to_lowercase()).collect();
        unique.sort();
        unique.dedup();
        if unique.len() != classes.len() || classes.len() < 2 {
            return Err("sorting needs two or more classes, each named once (case aside)".into());
        }
        Ok(classes)
    }

    /// The head pass's settings: this opening's, with a model's shape and preprocessing when
    /// the sort starts from one (a run continuing a model must match it).
    fn config(&self) -> Result<TrainConfig, String> {
        let mut config = self.config.clone();
        if let Start::Model(m) = &self.start {
            let header = crate::model::bundle::read_header(m)
                .map_err(|e| format!("{}: {e}", m.display()))?;
            config.input_size = header.preprocessing.input_size;
            config.resize = header.preprocessing.resize;
            config.width_divisor = header.model.width_divisor;
            config.head = header.model.head;
        }
        Ok(config)
    }

    /// The job of a head pass in `root` with this opening's settings (the pass names its
    /// photos: [`audit::pass_over`]).
    fn job(&self, classes: &[String], root: &Path) -> Result<AuditJob, String> {
        Ok(AuditJob {
            dataset: Dataset {
                root: root.to_owned(),
                train_dir: root.to_owned(),
                layout: Layout::FoldersAsLabels,
                classes: classes.to_vec(),
                images: Vec::new(),
                explicit_valid: None,
                test_dir: None,
                skipped: Vec::new(),
                problems: Vec::new(),
            },
            weights: self.weights.clone(),
            config: self.config()?,
            folds: 1,
            cache_root: self.cache_root.clone(),
            from_model: match &self.start {
                Start::Model(m) => Some(m.clone()),
                Start::Classes(_) => None,
            },
        })
    }

    /// The pooled features (photo, mirror image) and probabilities of `images`, in their order.
    fn features(
        &self,
        classes: &[String],
        root: &Path,
        images: Vec<ImageEntry>,
        stop: &Arc<AtomicBool>,
        on_event: impl FnMut(&TrainEvent),
    ) -> Result<Option<Features>, String> {
        let job = self.job(classes, root)?;
        let Some(held) = audit::pass_over(
            &job,
            images.clone(),
            images.clone(),
            PASS_RATE,
            stop,
            on_event,
        )?
        else {
            return Ok(None);
        };
        let at: std::collections::HashMap<&Path, usize> = held
            .images
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_path(), i))
            .collect();
        let mut out = Features::default();
        let mirrors = held.mirror_features.len() == held.images.len();
        for image in &images {
            let Some(&i) = at.get(image.path.as_path()) else {
                continue;
            };
            out.entries.push(image.clone());
            out.features.push(held.features[i].clone());
            if mirrors {
                out.mirrors.push(held.mirror_features[i].clone());
            }
            out.probs.push(held.probs[i].clone());
        }
        Ok(Some(out))
    }

    /// Opens the sort: lists the pool, runs its photos through the base (cached), and starts a
    /// session. `Ok(None)` when `stop` was set.
    pub fn open(
        &self,
        stop: &Arc<AtomicBool>,
        on_event: impl FnMut(&TrainEvent),
    ) -> Result<Option<Opened>, String> {
        let classes = self.classes()?;
        let (entries, skipped) = photos_under(&self.pool, classes.len())?;
        let Some(f) = self.features(&classes, &self.pool, entries, stop, on_event)? else {
            return Ok(None);
        };
        let photos: Vec<Photo> = f
            .entries
            .iter()
            .map(|e| Photo {
                path: e.path.clone(),
                rel: e.rel.clone(),
            })
            .collect();
        let prior = matches!(self.start, Start::Model(_)).then_some(f.probs);
        let session = Session::new(classes, photos, (&f.features, &f.mirrors), prior, self.seed)?;
        Ok(Some(Opened { session, skipped }))
    }

    /// A labelled folder's features and labels (index into `classes`; `None` for a class the
    /// sort does not have), for a simulation's scoring.
    pub fn labelled(
        &self,
        classes: &[String],
        folder: &Path,
        stop: &Arc<AtomicBool>,
        on_event: impl FnMut(&TrainEvent),
    ) -> Result<Option<Labelled>, String> {
        let dataset = Dataset::scan(folder).map_err(|e| e.to_string())?;
        let images: Vec<ImageEntry> = dataset
            .images
            .iter()
            .map(|i| ImageEntry {
                label: i.label % classes.len(),
                ..i.clone()
            })
            .collect();
        let Some(f) = self.features(classes, &dataset.train_dir, images, stop, on_event)? else {
            return Ok(None);
        };
        let truth = labels_of(&dataset);
        let labels = f
            .entries
            .iter()
            .map(|e| {
                truth
                    .get(&e.rel)
                    .and_then(|name| classes.iter().position(|c| c == name))
            })
            .collect();
        Ok(Some(Labelled {
            features: f.features,
            mirrors: f.mirrors,
            labels,
        }))
    }
}

/// Photos with their features.
#[derive(Default)]
struct Features {
    entries: Vec<ImageEntry>,
    features: Vec<Vec<f32>>,
    mirrors: Vec<Vec<f32>>,
    probs: Vec<Vec<f32>>,
}

/// A labelled folder's photos as the sort sees them.
pub struct Labelled {
    pub features: Vec<Vec<f32>>,
    pub mirrors: Vec<Vec<f32>>,
    /// Each photo's class among the sort's (`None`: a class it does not have).
    pub labels: Vec<Option<usize>>,
}

/// Each photo's class name in a labelled folder, by its path in the folder.
pub fn labels_of(dataset: &Dataset) -> std::collections::HashMap<String, String> {
    dataset
        .images
        .iter()
        .map(|i| (i.rel.clone(), dataset.classes[i.label].clone()))
        .collect()
}

/// The usable photos under `pool` (labels spread over `classes`: the head pass needs some; they
/// mean nothing), and every other file with why.
pub fn photos_under(
    pool: &Path,
    classes: usize,
) -> Result<(Vec<ImageEntry>, Vec<Unclassified>), String> {
    if !pool.is_dir() {
        return Err(format!("{}: not a folder", pool.display()));
    }
    let (mut entries, skipped) = crate::infer::entries_under(pool);
    if entries.is_empty() {
        return Err(format!("{}: no photos to sort", pool.display()));
    }
    crate::limits::check("photos to sort", entries.len(), &crate::limits::SORT_PHOTOS)?;
    for (i, e) in entries.iter_mut().enumerate() {
        e.label = i % classes.max(1);
    }
    Ok((entries, skipped))
}

/// The oracle's answer for each photo of `session`: the class its namesake in `labelled` is
/// filed under (matched by path in the folder, else by file name); `None` (none of these) for a
/// photo it does not hold or a class the sort does not have.
pub fn oracle(session: &Session, labelled: &Path) -> Result<Vec<Option<usize>>, String> {
    let dataset = Dataset::scan(labelled).map_err(|e| e.to_string())?;
    let by_rel = labels_of(&dataset);
    let by_name: std::collections::HashMap<String, String> = by_rel
        .iter()
        .map(|(rel, c)| (rel.rsplit('/').next().unwrap_or(rel).to_owned(), c.clone()))
        .collect();
    Ok(session
        .photos
        .iter()
        .map(|p| {
            let name = p.rel.rsplit('/').next().unwrap_or(&p.rel);
            let class = by_rel.get(&p.rel).or_else(|| by_name.get(name))?;
            session.classes.iter().position(|c| c == class)
        })
        .collect())
}

/// Refuses a sorted folder inside the pool (its copies would be sorted again next time) or
/// the pool itself.
pub fn check_out(pool: &Path, out: &Path) -> Result<(), String> {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let (pool, out) = (abs(pool), abs(out));
    if out.starts_with(&pool) {
        return Err(format!(
            "{}: put the sorted photos outside the folder being sorted ({})",
            out.display(),
            pool.display()
        ));
    }
    Ok(())
}

/// Where the pool's photos go: `pool`'s files as `out/CLASS/NAME`.
pub fn plan(session: &Session, threshold: f32) -> Vec<(PathBuf, String)> {
    session
        .sorted(threshold)
        .into_iter()
        .map(|(i, c)| (session.photos[i].path.clone(), session.classes[c].clone()))
        .collect()
}
