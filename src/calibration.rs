//! Confidences that mean what they say: temperature scaling (Guo et al., ICML 2017, "On
//! calibration of modern neural networks") fitted on a run's validation photos, the reliability
//! diagram and the expected calibration error (ECE).
//!
//! The temperature divides the log of the model's probabilities (the mean over its views, as it
//! predicts): `softmax(ln p / T)`. For one view that is exactly Guo's `softmax(z / T)` (the
//! log-probabilities are the logits less a constant); for the mean of views it scales the
//! ensemble's log-probabilities, what the saved validation pass holds and what the ONNX export
//! computes. It never changes which class is the most likely, so accuracy stays as it was.
//!
//! Pure arithmetic on probabilities and labels: no tensors, no files.

/// The bins of the reliability diagram and the ECE: 15 equal widths of the top class's
/// confidence, as Guo et al.
pub const BINS: usize = 15;

/// The smallest probability whose log is taken (f32's smallest normal number).
const TINY: f32 = f32::MIN_POSITIVE;

/// `probabilities` calibrated with temperature `t` (1 leaves them as they are).
pub fn calibrate(probabilities: &[f32], t: f32) -> Vec<f32> {
    if t == 1.0 || !t.is_finite() || t <= 0.0 {
        return probabilities.to_vec();
    }
    let logs: Vec<f64> = probabilities
        .iter()
        .map(|&p| f64::from(p.max(TINY)).ln() / f64::from(t))
        .collect();
    let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logs.iter().map(|l| (l - top).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// The mean negative log-likelihood of `labels` under `probs` calibrated with `t`.
fn nll(probs: &[Vec<f32>], labels: &[usize], t: f32) -> f64 {
    let total: f64 = probs
        .iter()
        .zip(labels)
        .map(|(p, &l)| {
            let q = calibrate(p, t);
            -f64::from(q.get(l).copied().unwrap_or(0.0))
                .max(crate::metrics::LOG_LOSS_EPS)
                .ln()
        })
        .sum();
    total / labels.len().max(1) as f64
}

/// How far the temperature may move without strong evidence: a Gaussian prior on ln T with
/// this standard deviation, centred on 1 (the fit is the maximum a posteriori). A run's ~200
/// validation photos with a handful of mistakes moved an unregularised temperature by up to
/// ±12% on the default recipe, which raised the held-out log loss in 3 of 5 folds
/// (BENCHMARKS.md); a model whose logits are 4× too large still gets a temperature of 3–5 on
/// 2,000 photos (the tests).
pub const PRIOR_SIGMA: f64 = 0.2;

/// The temperature that minimises the validation photos' log loss plus the prior's
/// [`PRIOR_SIGMA`] penalty: a golden-section search over ln T in [ln 0.05, ln 20] (smooth, one
/// minimum in practice). 1 when there are no photos.
pub fn fit_temperature(probs: &[Vec<f32>], labels: &[usize]) -> f32 {
    if labels.is_empty() || probs.len() != labels.len() {
        return 1.0;
    }
    let weight = 1.0 / (2.0 * PRIOR_SIGMA * PRIOR_SIGMA * labels.len() as f64);
    let f = |log_t: f64| nll(probs, labels, log_t.exp() as f32) + weight * log_t * log_t;
    let (mut a, mut b) = (0.05f64.ln(), 20.0f64.ln());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - ratio * (b - a);
    let mut d = a + ratio * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..60 {
        if fc < fd {
            (b, d, fd) = (d, c, fc);
            c = b - ratio * (b - a);
            fc = f(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + ratio * (b - a);
            fd = f(d);
        }
    }
    let best = ((a + b) / 2.0).exp() as f32;
    // Never worse than no scaling.
    if f(f64::from(best).ln()) <= f(0.0) {
        best
    } else {
        1.0
    }
}

/// One bin of a reliability diagram.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bin {
    /// The lowest confidence in the bin.
    pub lower: f32,
    /// The highest.
    pub upper: f32,
    /// Photos in it.
    pub count: usize,
    /// Their mean confidence in the predicted class.
    pub confidence: f64,
    /// The share of them predicted right.
    pub accuracy: f64,
}

/// Confidence against accuracy, bin by bin, and the expected calibration error.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reliability {
    /// The bins, lowest confidence first (empty ones included).
    pub bins: Vec<Bin>,
    /// The expected calibration error: |accuracy − confidence| averaged over the bins, each
    /// weighted by its share of the photos (0 to 1).
    pub ece: f64,
}

/// The reliability diagram and ECE of `probs` against `labels`.
pub fn reliability(probs: &[Vec<f32>], labels: &[usize]) -> Reliability {
    let mut sums = vec![(0usize, 0.0f64, 0usize); BINS];
    for (p, &label) in probs.iter().zip(labels) {
        let predicted = crate::metrics::argmax(p);
        let confidence = p.get(predicted).copied().unwrap_or(0.0).clamp(0.0, 1.0);
        let bin = ((confidence * BINS as f32) as usize).min(BINS - 1);
        sums[bin].0 += 1;
        sums[bin].1 += f64::from(confidence);
        sums[bin].2 += usize::from(predicted == label);
    }
    let total = labels.len().max(1) as f64;
    let mut ece = 0.0;
    let bins = sums
        .iter()
        .enumerate()
        .map(|(i, &(count, confidence, right))| {
            let n = count.max(1) as f64;
            let (confidence, accuracy) = (confidence / n, right as f64 / n);
            ece += count as f64 / total * (accuracy - confidence).abs();
            Bin {
                lower: i as f32 / BINS as f32,
                upper: (i + 1) as f32 / BINS as f32,
                count,
                confidence,
                accuracy,
            }
        })
        .collect();
    Reliability { bins, ece }
}

/// What a run's temperature did on its validation photos, as the model file records it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    /// The temperature (above 1: the model was over-confident).
    pub temperature: f32,
    /// The validation photos it was fitted on.
    pub photos: usize,
    /// Their ECE before and after.
    pub ece_before: f64,
    /// After.
    pub ece_after: f64,
    /// Their log loss before and after.
    pub log_loss_before: f64,
    /// After.
    pub log_loss_after: f64,
}

/// Fewer validation photos than this say too little to fit a temperature on.
pub const MIN_PHOTOS: usize = 50;

/// With fewer mistakes than this among the validation photos, the log loss falls without end
/// as the temperature falls: no temperature is fitted (the confidences stay the network's).
pub const MIN_MISTAKES: usize = 2;

impl Calibration {
    /// Fits the temperature on `probs` and `labels` and measures both sides; refused, with
    /// why, with fewer than [`MIN_PHOTOS`] photos or [`MIN_MISTAKES`] mistakes.
    pub fn fit(probs: &[Vec<f32>], labels: &[usize]) -> Result<Self, String> {
        let mistakes = probs
            .iter()
            .zip(labels)
            .filter(|(p, l)| crate::metrics::argmax(p) != **l)
            .count();
        if labels.len() < MIN_PHOTOS || mistakes < MIN_MISTAKES {
            return Err(format!(
                "no temperature fitted: {} and {} among the validation photos (it needs {} \
                 and {}); the confidences are the network's own",
                crate::words::photos(labels.len()),
                crate::words::count(mistakes, "mistake", "mistakes"),
                MIN_PHOTOS,
                MIN_MISTAKES
            ));
        }
        let temperature = fit_temperature(probs, labels);
        let calibrated: Vec<Vec<f32>> = probs.iter().map(|p| calibrate(p, temperature)).collect();
        Ok(Self {
            temperature,
            photos: labels.len(),
            ece_before: reliability(probs, labels).ece,
            ece_after: reliability(&calibrated, labels).ece,
            log_loss_before: crate::metrics::log_loss(probs, labels),
            log_loss_after: crate::metrics::log_loss(&calibrated, labels),
        })
    }

    /// One line for the CLI and the window.
    pub fn describe(&self) -> String {
        format!(
            "temperature {:.2}, fitted on {}: calibration error {:.1}% → {:.1}%, log loss {:.4} → \
             {:.4}",
            self.temperature,
            crate::words::count(self.photos, "validation photo", "validation photos"),
            100.0 * self.ece_before,
            100.0 * self.ece_after,
            self.log_loss_before,
            self.log_loss_after
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Photos whose true class has probability `p_true` as a well-calibrated model would say it,
    /// then made over-confident by raising the logits' scale.
    fn over_confident(n: usize, scale: f32) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = SplitMix64(5);
        let mut probs = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..n {
            // A calibrated confidence from 0.55 to 0.99, right that often.
            let c = 0.55 + 0.44 * (rng.next_u64() % 1000) as f32 / 1000.0;
            let right = (rng.next_u64() % 10_000) as f32 / 10_000.0 < c;
            let label = (rng.next_u64() % 2) as usize;
            let predicted = if right { label } else { 1 - label };
            let logit = (c / (1.0 - c)).ln() * scale;
            let top = 1.0 / (1.0 + (-logit).exp());
            let mut p = vec![0.0; 2];
            p[predicted] = top;
            p[1 - predicted] = 1.0 - top;
            probs.push(p);
            labels.push(label);
        }
        (probs, labels)
    }

    #[test]
    fn the_temperature_lowers_an_over_confident_models_log_loss_and_calibration_error() {
        let (probs, labels) = over_confident(2000, 4.0);
        let c = Calibration::fit(&probs, &labels).unwrap();
        assert!(
            (3.0..5.0).contains(&c.temperature),
            "fitted {} for logits scaled by 4",
            c.temperature
        );
        assert!(c.log_loss_after < c.log_loss_before - 0.05, "{c:?}");
        assert!(c.ece_after < 0.03 && c.ece_before > 0.1, "{c:?}");
        // Accuracy is untouched: the same class is the most likely.
        for p in &probs {
            let q = calibrate(p, c.temperature);
            assert_eq!(crate::metrics::argmax(p), crate::metrics::argmax(&q));
            assert!((q.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        // A calibrated model keeps a temperature near 1.
        let (probs, labels) = over_confident(2000, 1.0);
        let t = fit_temperature(&probs, &labels);
        assert!((0.8..1.25).contains(&t), "{t}");
    }

    #[test]
    fn the_reliability_diagram_bins_confidence_against_accuracy() {
        let probs = vec![
            vec![0.95, 0.05],
            vec![0.9, 0.1],
            vec![0.4, 0.6],
            vec![0.02, 0.98],
        ];
        let labels = vec![0, 1, 1, 1];
        let r = reliability(&probs, &labels);
        assert_eq!(r.bins.len(), BINS);
        assert_eq!(r.bins.iter().map(|b| b.count).sum::<usize>(), 4);
        let top = r.bins.last().unwrap();
        // 0.95 and 0.98 (the last bin starts at 14/15 ≈ 0.933), both right.
        assert_eq!(top.count, 2);
        assert!((top.accuracy - 1.0).abs() < 1e-9);
        // |1 − 0.965|·2/4 + |0 − 0.9|·1/4 + |1 − 0.6|·1/4
        assert!(
            (r.ece - (0.035 * 0.5 + 0.9 * 0.25 + 0.4 * 0.25)).abs() < 1e-6,
            "{}",
            r.ece
        );
        assert_eq!(fit_temperature(&[], &[]), 1.0);
        // Four photos, or no mistakes: no temperature.
        assert!(
            Calibration::fit(&probs, &labels)
                .unwrap_err()
                .contains("4 photos")
        );
        let right: Vec<usize> = (0..60).map(|i| i % 2).collect();
        let sure: Vec<Vec<f32>> = right
            .iter()
            .map(|&l| {
                if l == 0 {
                    vec![0.9, 0.1]
                } else {
                    vec![0.1, 0.9]
                }
            })
            .collect();
        assert!(
            Calibration::fit(&sure, &right)
                .unwrap_err()
                .contains("0 mistakes")
        );
    }
}
