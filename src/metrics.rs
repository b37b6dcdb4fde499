//! Metrics of one evaluation pass: accuracy, log loss, confusion matrix, per-class precision,
//! recall and F1, and the fast.ai lesson's galleries (most confident mistakes, most uncertain,
//! most confident right), per class.
//!
//! Pure arithmetic on probabilities and labels: no tensors, no files.

/// Probabilities are clipped to [EPS, 1 − EPS] for the log loss, as Kaggle does.
pub const LOG_LOSS_EPS: f64 = 1e-15;

/// Precision, recall and F1 of one class.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassMetrics {
    /// The class.
    pub class: String,
    /// How many images truly are this class.
    pub support: usize,
    /// Of the images predicted as this class, the share that are.
    pub precision: f64,
    /// Of the images of this class, the share predicted as it.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

/// One image in a gallery.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GalleryItem {
    /// Index into the evaluated items.
    pub index: usize,
    /// Its true class.
    pub label: usize,
    /// The predicted class.
    pub predicted: usize,
    /// The probability of the predicted class.
    pub confidence: f32,
    /// The probability of the true class.
    pub p_true: f32,
}

/// The galleries of one class (images whose true class it is).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Galleries {
    /// Wrong, with the highest confidence first.
    pub confident_mistakes: Vec<GalleryItem>,
    /// The smallest margin between the two most likely classes first (|p − 0.5| for two classes).
    pub most_uncertain: Vec<GalleryItem>,
    /// Right, with the highest confidence first.
    pub confident_right: Vec<GalleryItem>,
}

/// An evaluation with the per-photo numbers behind it: what a run's validation, `vggtune
/// evaluate` and the window's Evaluate view (confusion-matrix cells, galleries) all use.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvaluatedImages {
    /// Every metric.
    pub evaluation: Evaluation,
    /// The evaluated photos, in the evaluation's order.
    #[serde(serialize_with = "crate::fsutil::lossy::list")]
    pub images: Vec<std::path::PathBuf>,
    /// Their true classes.
    pub labels: Vec<usize>,
    /// Their predicted probabilities.
    pub probs: Vec<Vec<f32>>,
    /// How typical each is of the model's training photos, in the same order; empty when
    /// the *none of these* verdict was off (or the model keeps no training features).
    #[serde(default)]
    pub typicality: Vec<crate::typical::Judgement>,
    /// Each photo's pooled block-5 features, when the pass that made it kept them (a run's
    /// validation pass: the label check and the *none of these* verdict read them); not saved.
    #[serde(skip)]
    pub features: Vec<Vec<f32>>,
    /// The same of each photo's mirror image, when the pass judged it (Check data finds a
    /// mirrored copy by them); not saved.
    #[serde(skip)]
    pub mirror_features: Vec<Vec<f32>>,
}

impl EvaluatedImages {
    /// Measures `probs` against `labels` for `images`.
    pub fn new(
        classes: &[String],
        images: Vec<std::path::PathBuf>,
        labels: Vec<usize>,
        probs: Vec<Vec<f32>>,
    ) -> Self {
        Self {
            evaluation: Evaluation::compute(classes, &probs, &labels, GALLERY_SIZE),
            images,
            labels,
            probs,
            typicality: Vec::new(),
            features: Vec::new(),
            mirror_features: Vec::new(),
        }
    }

    /// The same with each photo's typicality (one per photo, or it is left out).
    pub fn with_typicality(mut self, typicality: Vec<crate::typical::Judgement>) -> Self {
        if typicality.len() == self.images.len() {
            self.typicality = typicality;
        }
        self
    }

    /// The photos judged *none of these* (indices), when the photos were judged.
    pub fn unknown(&self) -> Option<Vec<usize>> {
        if self.typicality.is_empty() {
            return None;
        }
        let unknown = self.typicality.iter().enumerate();
        Some(unknown.filter(|(_, j)| !j.known).map(|(i, _)| i).collect())
    }

    /// Accuracy over the photos not judged *none of these* (`None` when not judged or none
    /// is left).
    pub fn accuracy_of_known(&self) -> Option<f64> {
        if self.typicality.is_empty() {
            return None;
        }
        self.accuracy_where(|i| self.typicality.get(i).is_some_and(|j| j.known))
    }

    /// Accuracy over the photos `keep` names by index (`None` when it keeps none).
    pub fn accuracy_where(&self, keep: impl Fn(usize) -> bool) -> Option<f64> {
        let kept = (0..self.labels.len().min(self.probs.len())).filter(|&i| keep(i));
        let (mut right, mut n) = (0usize, 0usize);
        for i in kept {
            n += 1;
            right += usize::from(argmax(&self.probs[i]) == self.labels[i]);
        }
        (n > 0).then(|| right as f64 / n as f64)
    }
}

/// Fewer photos of a class than this make its precision and recall say little.
pub const FEW_PHOTOS: usize = 10;

impl Evaluation {
    /// A warning for each class with fewer than [`FEW_PHOTOS`] photos evaluated.
    pub fn small_class_warnings(&self) -> Vec<String> {
        self.per_class
            .iter()
            .filter(|m| m.support < FEW_PHOTOS)
            .map(|m| {
                format!(
                    "Only {} photo{} of '{}': its recall and precision say little; evaluate on \
                     more (a larger validation share, or a folder of its own).",
                    m.support,
                    if m.support == 1 { "" } else { "s" },
                    m.class
                )
            })
            .collect()
    }
}

impl EvaluatedImages {
    /// The same evaluation, recomputed from its per-photo numbers once they are checked against
    /// `classes` (a model file's copy is not trusted: its galleries index the photos); `None`
    /// when they do not fit together.
    pub fn checked(self, classes: &[String]) -> Option<Self> {
        let n = self.images.len();
        let fits = self.labels.len() == n
            && self.probs.len() == n
            && self.labels.iter().all(|&l| l < classes.len())
            && self.probs.iter().all(|p| p.len() == classes.len());
        let typicality = self.typicality;
        fits.then(|| Self::new(classes, self.images, self.labels, self.probs))
            .map(|e| e.with_typicality(typicality))
    }
}

/// How many photos each gallery of an evaluation holds.
pub const GALLERY_SIZE: usize = 12;

/// Everything one evaluation pass measures.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// How many images were evaluated.
    pub count: usize,
    /// Share predicted right.
    pub accuracy: f64,
    /// Mean negative log probability of the true class (clipped).
    pub log_loss: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    /// Per-class precision, recall and F1.
    pub per_class: Vec<ClassMetrics>,
    /// Galleries per true class.
    pub galleries: Vec<Galleries>,
    /// Confidence against accuracy, and the expected calibration error.
    #[serde(default)]
    pub reliability: crate::calibration::Reliability,
}

/// The index of the largest value.
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// Mean log loss of `probs` (rows) against `labels`, clipped at [`LOG_LOSS_EPS`].
pub fn log_loss(probs: &[Vec<f32>], labels: &[usize]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    let total: f64 = probs
        .iter()
        .zip(labels)
        .map(|(p, &l)| -f64::from(p[l]).clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS).ln())
        .sum();
    total / labels.len() as f64
}

impl Evaluation {
    /// Computes every metric from per-image probabilities and true labels; each gallery keeps
    /// at most `gallery_size` images.
    pub fn compute(
        classes: &[String],
        probs: &[Vec<f32>],
        labels: &[usize],
        gallery_size: usize,
    ) -> Self {
        let n_classes = classes.len();
        let mut confusion = vec![vec![0usize; n_classes]; n_classes];
        let mut items = Vec::with_capacity(labels.len());
        for (index, (p, &label)) in probs.iter().zip(labels).enumerate() {
            let predicted = argmax(p);
            confusion[label][predicted] += 1;
            items.push(GalleryItem {
                index,
                label,
                predicted,
                confidence: p[predicted],
                p_true: p[label],
            });
        }
        let correct: usize = (0..n_classes).map(|c| confusion[c][c]).sum();
        let count = labels.len();
        let per_class = (0..n_classes)
            .map(|c| {
                let tp = confusion[c][c] as f64;
                let support: usize = confusion[c].iter().sum();
                let predicted: usize = (0..n_classes).map(|r| confusion[r][c]).sum();
                let precision = if predicted > 0 {
                    tp / predicted as f64
                } else {
                    0.0
                };
                let recall = if support > 0 {
                    tp / support as f64
                } else {
                    0.0
                };
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassMetrics {
                    class: classes[c].clone(),
                    support,
                    precision,
                    recall,
                    f1,
                }
            })
            .collect();
        let margin = |item: &GalleryItem| {
            let p = &probs[item.index];
            let mut sorted: Vec<f32> = p.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            sorted[0] - sorted.get(1).copied().unwrap_or(0.0)
        };
        let galleries = (0..n_classes)
            .map(|c| {
                let of_class: Vec<&GalleryItem> = items.iter().filter(|i| i.label == c).collect();
                let mut mistakes: Vec<GalleryItem> = of_class
                    .iter()
                    .filter(|i| i.predicted != c)
                    .map(|&i| i.clone())
                    .collect();
                mistakes.sort_by(|a, b| {
                    b.confidence
                        .total_cmp(&a.confidence)
                        .then(a.index.cmp(&b.index))
                });
                mistakes.truncate(gallery_size);
                // Each photo in one gallery: the mistakes, then the least sure half of the
                // rest (at most a gallery), then the surest of what is left.
                let mut rest: Vec<GalleryItem> = of_class
                    .iter()
                    .filter(|i| i.predicted == c)
                    .map(|&i| i.clone())
                    .collect();
                rest.sort_by(|a, b| margin(a).total_cmp(&margin(b)).then(a.index.cmp(&b.index)));
                let uncertain: Vec<GalleryItem> = rest
                    .drain(..rest.len().div_ceil(2).min(gallery_size))
                    .collect();
                let mut right = rest;
                right.sort_by(|a, b| {
                    b.confidence
                        .total_cmp(&a.confidence)
                        .then(a.index.cmp(&b.index))
                });
                right.truncate(gallery_size);
                Galleries {
                    confident_mistakes: mistakes,
                    most_uncertain: uncertain,
                    confident_right: right,
                }
            })
            .collect();
        Self {
            classes: classes.to_vec(),
            count,
            accuracy: if count > 0 {
                correct as f64 / count as f64
            } else {
                0.0
            },
            log_loss: log_loss(probs, labels),
            confusion,
            per_class,
            galleries,
            reliability: crate::calibration::reliability(probs, labels),
        }
    }

    /// Indices of the images in confusion-matrix cell (true, predicted).
    pub fn cell(
        &self,
        labels: &[usize],
        probs: &[Vec<f32>],
        truth: usize,
        predicted: usize,
    ) -> Vec<usize> {
        labels
            .iter()
            .zip(probs)
            .enumerate()
            .filter(|(_, (l, p))| **l == truth && argmax(p) == predicted)
            .map(|(i, _)| i)
            .collect()
    }
}

/// The mean of a photo's views' probabilities (its mirror image, the other square): the one
/// rule by which prediction, heatmaps' predictions and a run's validation combine views.
pub fn mean_of_views(views: Vec<Vec<f32>>) -> Vec<f32> {
    let count = views.len().max(1) as f32;
    let mut views = views.into_iter();
    let mut mean = views.next().unwrap_or_default();
    for view in views {
        for (m, v) in mean.iter_mut().zip(view) {
            *m += v;
        }
    }
    for m in &mut mean {
        *m /= count;
    }
    mean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Vec<String> {
        vec!["cat".into(), "dog".into()]
    }

    #[test]
    fn a_saved_evaluation_is_recomputed_only_when_its_numbers_fit_the_classes() {
        let images = vec!["a.jpg".into(), "b.jpg".into()];
        let good = EvaluatedImages::new(&classes(), images, vec![0, 1], vec![vec![0.9, 0.1]; 2]);
        assert_eq!(good.clone().checked(&classes()), Some(good.clone()));
        let mut bad_label = good.clone();
        bad_label.labels[1] = 7;
        assert_eq!(bad_label.checked(&classes()), None);
        let mut short_row = good.clone();
        short_row.probs[0].pop();
        assert_eq!(short_row.checked(&classes()), None);
        let mut fewer_images = good;
        fewer_images.images.pop();
        assert_eq!(fewer_images.checked(&classes()), None);
    }

    #[test]
    fn metrics_match_hand_computed_values() {
        // true: cat, cat, cat, dog, dog; predicted: cat, cat, dog, dog, cat.
        let probs = vec![
            vec![0.9, 0.1],
            vec![0.6, 0.4],
            vec![0.3, 0.7],
            vec![0.2, 0.8],
            vec![0.55, 0.45],
        ];
        let labels = vec![0, 0, 0, 1, 1];
        let e = Evaluation::compute(&classes(), &probs, &labels, 10);
        let warnings = e.small_class_warnings();
        assert!(
            !warnings.is_empty() && warnings[0].contains("say little"),
            "{warnings:?}"
        );
        assert_eq!(e.count, 5);
        assert!((e.accuracy - 0.6).abs() < 1e-12);
        let expected_loss =
            -(0.9f64.ln() + 0.6f64.ln() + 0.3f64.ln() + 0.8f64.ln() + 0.45f64.ln()) / 5.0;
        assert!(
            (e.log_loss - expected_loss).abs() < 1e-6,
            "{} vs {expected_loss}",
            e.log_loss
        );
        assert_eq!(e.confusion, vec![vec![2, 1], vec![1, 1]]);
        // cat: precision 2/3, recall 2/3; dog: precision 1/2, recall 1/2.
        assert!((e.per_class[0].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((e.per_class[0].recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((e.per_class[1].f1 - 0.5).abs() < 1e-12);
        assert_eq!(e.per_class[1].support, 2);
        // Galleries of cats, each photo in one: the one mistake (0.7 dog), the least sure
        // half of the rest (the 0.6/0.4 image, margin 0.2), and the surest right (0.9).
        let g = &e.galleries[0];
        assert_eq!(
            g.confident_mistakes
                .iter()
                .map(|i| i.index)
                .collect::<Vec<_>>(),
            vec![2]
        );
        assert_eq!(
            g.confident_right
                .iter()
                .map(|i| i.index)
                .collect::<Vec<_>>(),
            vec![0]
        );
        assert_eq!(
            g.most_uncertain.iter().map(|i| i.index).collect::<Vec<_>>(),
            vec![1]
        );
        let dogs = &e.galleries[1];
        assert_eq!(dogs.confident_mistakes[0].index, 4);
        assert!(
            dogs.most_uncertain.iter().all(|i| i.index != 4),
            "a mistake is shown once"
        );
        assert_eq!(e.cell(&labels, &probs, 1, 0), vec![4]);
    }

    #[test]
    fn log_loss_is_clipped() {
        let l = log_loss(&[vec![0.0, 1.0]], &[0]);
        assert!((l - (-(LOG_LOSS_EPS).ln())).abs() < 1e-6);
    }
}
