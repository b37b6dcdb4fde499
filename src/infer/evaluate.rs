//! Evaluating a model on any labelled folder: the folder's classes are matched to the model's by
//! name, loosely (letter case, surrounding spaces, singular or plural: a `cats/` folder is the
//! model's `cat`) or as the user maps them, and every match that was not exact is said.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Classifier, Unclassified};
use crate::data::Dataset;
use crate::metrics::EvaluatedImages;
use crate::typical::Judgement;

/// One folder class named as one of the model's classes (`--class-map FOLDER=MODEL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassMapping {
    /// The class as the folder names it.
    pub folder: String,
    /// The model's class it is.
    pub model: String,
}

impl std::str::FromStr for ClassMapping {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((folder, model)) if !folder.trim().is_empty() && !model.trim().is_empty() => {
                Ok(Self {
                    folder: folder.trim().to_owned(),
                    model: model.trim().to_owned(),
                })
            }
            _ => Err(format!("'{s}' is not FOLDER=MODEL (for example cats=cat)")),
        }
    }
}

/// A class name as loose matching compares it: trimmed, lower case, singular.
fn loose(name: &str) -> String {
    let n = name.trim().to_lowercase();
    if let Some(stem) = n.strip_suffix("ies").filter(|s| !s.is_empty()) {
        return format!("{stem}y");
    }
    for suffix in ["ches", "shes", "sses", "xes"] {
        if n.ends_with(suffix) {
            return n[..n.len() - 2].to_owned();
        }
    }
    match n.strip_suffix('s') {
        Some(stem) if !stem.is_empty() && !stem.ends_with('s') => stem.to_owned(),
        _ => n,
    }
}

/// For each of the folder's classes, the model's class it is; and, for each match that was not
/// exact, a sentence saying so. An error names the classes that match none and what to do.
pub fn match_classes(
    model: &[String],
    folder: &[String],
    mapping: &[ClassMapping],
) -> Result<(Vec<usize>, Vec<String>), String> {
    let mut indices = Vec::with_capacity(folder.len());
    let mut notes = Vec::new();
    let mut unmatched = Vec::new();
    let find_loose = |name: &str| -> Vec<usize> {
        let key = loose(name);
        (0..model.len())
            .filter(|&i| loose(&model[i]) == key)
            .collect()
    };
    for class in folder {
        if let Some(m) = mapping.iter().find(|m| m.folder == *class) {
            let found = model
                .iter()
                .position(|c| *c == m.model)
                .or_else(|| find_loose(&m.model).first().copied());
            match found {
                Some(i) => {
                    notes.push(format!(
                        "'{class}' is the model's '{}' (as mapped)",
                        model[i]
                    ));
                    indices.push(i);
                }
                None => {
                    return Err(format!(
                        "the mapping {class}={} names no class of the model ({})",
                        m.model,
                        model.join(", ")
                    ));
                }
            }
        } else if let Some(i) = model.iter().position(|c| c == class) {
            indices.push(i);
        } else if let [i] = find_loose(class)[..] {
            notes.push(format!("'{class}' is the model's '{}'", model[i]));
            indices.push(i);
        } else {
            unmatched.push(class.clone());
        }
    }
    if !unmatched.is_empty() {
        return Err(format!(
            "the folder's class{} {} match{} none of the model's classes ({}): name the class \
             folders like the model's classes, or map them (--class-map FOLDER=MODEL, or the \
             mapping in the Evaluate view)",
            if unmatched.len() == 1 { "" } else { "es" },
            unmatched
                .iter()
                .map(|c| format!("'{c}'"))
                .collect::<Vec<_>>()
                .join(", "),
            if unmatched.len() == 1 { "es" } else { "" },
            model.join(", ")
        ));
    }
    Ok((indices, notes))
}

/// A model evaluated on a labelled folder.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DatasetEvaluation {
    /// The folder evaluated.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub folder: PathBuf,
    /// How the folder's classes were matched to the model's, where not by exact name.
    pub matched: Vec<String>,
    /// The metrics and the per-photo numbers behind them.
    #[serde(flatten)]
    pub evaluated: EvaluatedImages,
    /// Photos that could not be classified: the scan's skipped files and decoding failures.
    pub unclassified: Vec<Unclassified>,
    /// True when the evaluation was cancelled before every photo was seen.
    pub cancelled: bool,
    /// Photos that are copies of the model's training photos (a leak: the accuracy above
    /// counts photos the model learned from), with the training photo each copies.
    pub leaks: Vec<Leak>,
    /// The accuracy without those copies (`None` when there are none).
    pub accuracy_without_leaks: Option<f64>,
}

/// An evaluated photo that is a copy of one of the model's training photos.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Leak {
    /// The evaluated photo.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub path: PathBuf,
    /// The training photo it copies, by its path in the training folder.
    pub training_photo: String,
}

impl Classifier {
    /// Evaluates the model on every usable photo of `dataset` (its `valid/` folder included),
    /// its classes matched to the model's by [`match_classes`]; `progress(done, total)` after
    /// each batch; stops early once `cancel` is set.
    pub fn evaluate(
        &self,
        dataset: &Dataset,
        batch_size: usize,
        mapping: &[ClassMapping],
        progress: impl FnMut(usize, usize),
        cancel: &AtomicBool,
    ) -> Result<DatasetEvaluation, String> {
        let classes = self.classes().to_vec();
        let (to_model, matched) = match_classes(&classes, &dataset.classes, mapping)
            .map_err(|e| format!("{}: {e}", dataset.root.display()))?;
        let mut paths = Vec::new();
        let mut truth = std::collections::HashMap::new();
        let explicit = dataset.explicit_valid.iter().flatten();
        for image in dataset.images.iter().chain(explicit) {
            truth.insert(image.path.clone(), to_model[image.label]);
            paths.push(image.path.clone());
        }
        let on = self.verdict.load(Ordering::Relaxed);
        let (scored, mut unclassified) = self.score_until(&paths, batch_size, progress, cancel);
        let cancelled = scored.len() + unclassified.len() < paths.len();
        // Judged whether or not the verdict is on: the leaks are found either way.
        let judged: Vec<Option<Judgement>> = scored
            .iter()
            .map(|s| self.judge(&s.features, true))
            .collect();
        let probs: Vec<Vec<f32>> = scored.iter().map(|s| s.probabilities.clone()).collect();
        let labels: Vec<usize> = scored.iter().map(|s| truth[&s.path]).collect();
        let typicality: Option<Vec<Judgement>> = judged.iter().copied().collect();
        let typicality = typicality.filter(|_| on);
        let images = scored.into_iter().map(|s| s.path).collect();
        unclassified.extend(dataset.skipped.iter().map(|s| Unclassified {
            path: s.path.clone(),
            reason: s.message.clone(),
        }));
        let evaluated = EvaluatedImages::new(&classes, images, labels, probs)
            .with_typicality(typicality.unwrap_or_default());
        let (leaks, accuracy_without_leaks) = self.leaks(&evaluated, &judged);
        Ok(DatasetEvaluation {
            folder: dataset.root.clone(),
            matched,
            evaluated,
            unclassified,
            cancelled,
            leaks,
            accuracy_without_leaks,
        })
    }

    /// The evaluated photos that copy a training photo of the model, and the accuracy without
    /// them.
    fn leaks(&self, e: &EvaluatedImages, judged: &[Option<Judgement>]) -> (Vec<Leak>, Option<f64>) {
        let names = self.typicality().map_or(&[][..], |t| &t.summary.names[..]);
        let leaks: Vec<(usize, Leak)> = judged
            .iter()
            .map(|j| j.as_ref())
            .enumerate()
            .filter_map(|(i, j)| {
                let name = names.get(j?.copy_of? as usize)?;
                Some((
                    i,
                    Leak {
                        path: e.images[i].clone(),
                        training_photo: name.clone(),
                    },
                ))
            })
            .collect();
        if leaks.is_empty() {
            return (Vec::new(), None);
        }
        let leaked: std::collections::HashSet<usize> = leaks.iter().map(|(i, _)| *i).collect();
        let accuracy = e.accuracy_where(|i| !leaked.contains(&i));
        (leaks.into_iter().map(|(_, l)| l).collect(), accuracy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn folder_classes_match_the_models_loosely_and_say_so() {
        let model = names(&["cat", "dog"]);
        let (indices, notes) = match_classes(&model, &names(&["Cats ", "dogs"]), &[]).unwrap();
        assert_eq!(indices, [0, 1]);
        assert_eq!(
            notes,
            [
                "'Cats ' is the model's 'cat'",
                "'dogs' is the model's 'dog'"
            ]
        );
        let (indices, notes) = match_classes(&model, &names(&["dog", "cat"]), &[]).unwrap();
        assert_eq!(
            (indices, notes.len()),
            (vec![1, 0], 0),
            "exact names need no note"
        );
        let (indices, _) = match_classes(
            &names(&["puppy", "box"]),
            &names(&["puppies", "boxes"]),
            &[],
        )
        .unwrap();
        assert_eq!(indices, [0, 1]);
    }

    #[test]
    fn unmatched_classes_are_named_and_a_mapping_fixes_them() {
        let model = names(&["cat", "dog"]);
        let folder = names(&["kitten", "dog"]);
        let err = match_classes(&model, &folder, &[]).unwrap_err();
        assert!(
            err.contains("'kitten'") && err.contains("--class-map"),
            "{err}"
        );
        let mapping: ClassMapping = "kitten=cat".parse().unwrap();
        let (indices, notes) = match_classes(&model, &folder, &[mapping]).unwrap();
        assert_eq!(indices, [0, 1]);
        assert_eq!(notes, ["'kitten' is the model's 'cat' (as mapped)"]);
        assert!("kitten".parse::<ClassMapping>().is_err());
        let wrong: ClassMapping = "kitten=horse".parse().unwrap();
        assert!(
            match_classes(&model, &folder, &[wrong])
                .unwrap_err()
                .contains("horse")
        );
    }
}
